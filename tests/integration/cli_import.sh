#!/usr/bin/env bash
# The CLI end to end on small files: members (upsert, consent precedence, attributes,
# bad rows with file/line/column), events (orders with items, returns, void, messages,
# duplicates), an order-level file without order ids (CDNOW), exit codes and --help.
set -euo pipefail
P=${PATRON_BIN:?}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
cd "$T"
fail() { echo "FAIL: $*" >&2; exit 1; }

printf 'member_id,first_name,birth_date,consent_email,consent_updated_at,Favourite Colour\n' > m1.csv
printf 'a1,Ann,1990-02-28,yes,2024-05-01,blue\n"b,2","Bo ""B""",,no,2024-05-01,\n' >> m1.csv
"$P" --db p.db --quiet import members m1.csv
# An older file must not re-grant a withdrawn consent; an empty cell keeps the value.
printf 'member_id,first_name,consent_email,consent_updated_at\na1,,no,2024-06-01\n' > m2.csv
printf 'member_id,first_name,consent_email,consent_updated_at\na1,,yes,2024-01-01\n' > m3.csv
"$P" --db p.db --quiet import members m2.csv
"$P" --db p.db --quiet import members m3.csv
out=$("$P" --db p.db --now 2025-02-28 member show a1)
echo "$out" | grep -q '"first_name": "Ann"' || fail "first_name kept"
echo "$out" | grep -A2 '"email"' | grep -q '"denied"' || fail "consent precedence"
echo "$out" | grep -q '"favourite_colour": "blue"' || fail "attribute"
echo "$out" | grep -q '"age": 35' || fail "age"
echo "$out" | grep -q '"days_to_birthday": 0' || fail "days_to_birthday"
"$P" --db p.db member show 'b,2' | grep -q 'Bo \\"B\\"' || fail "quoted member"

printf 'member_id,birth_date\nc1,1990-13-01\n' > bad.csv
set +e
"$P" --db p.db import members bad.csv 2> err.txt; rc=$?
"$P" --db p.db member show nobody 2>/dev/null; rc2=$?
"$P" --db p.db frobnicate 2>/dev/null; rc3=$?
"$P" --db p.db import orders no-such-file.csv 2>/dev/null; rc4=$?
set -e
[ $rc4 -eq 3 ] || fail "missing file exit $rc4"
set +e
"$P" --db p.db import events m1.csv --map member_id 2>/dev/null; rc5=$?
set -e
[ $rc5 -eq 1 ] || fail "a malformed --map is a usage error, exit $rc5"
[ $rc -eq 2 ] || fail "bad member exit $rc"
grep -q "bad.csv:2: column 'birth_date': cannot parse '1990-13-01' as a date" err.txt || fail "message"
[ $rc2 -eq 3 ] || fail "not found exit $rc2"
[ $rc3 -eq 1 ] || fail "usage exit $rc3"
for c in import stats member features generate demo; do
    "$P" $c --help >/dev/null || fail "$c --help"
done

cat > ev.jsonl <<'JS'
{"type":"order","order_id":"X1","member_id":"a1","ts":"2024-05-01T10:00:00Z","items":[{"sku":"A","qty":2,"price":5.5}]}
{"type":"order","order_id":"X2","member_id":"a1","ts":"2024-05-02T10:00:00Z","items":[{"sku":"B","qty":1,"price":10}]}
{"type":"return","order_id":"R1","member_id":"a1","ts":"2024-05-03","original_order_id":"X2","amount":4}
{"type":"void","order_id":"X1","member_id":"a1","ts":"2024-05-04","reason":"fraud"}
{"type":"message","event_id":"e1","member_id":"a1","ts":"2024-05-05","campaign_id":"c1","channel":"email","action":"opened"}
JS
"$P" --db p.db --quiet import events ev.jsonl
"$P" --db p.db --json import events ev.jsonl | grep -q '"inserted":0,"items":0,"duplicates":5' || fail "event dedupe"
out=$("$P" --db p.db --now 2025-01-01 --json member show a1)
echo "$out" | grep -q '"frequency": 1' || fail "void"
echo "$out" | grep -q '"monetary": 6.0' || fail "monetary after void and return"
"$P" --db p.db --now 2025-01-01 --json stats | grep -q '"events":2' || fail "events count"

# A JSONL file with bad lines: refused whole by default; with --max-errors the good lines
# are stored and each bad one goes to FILE.rejects with its line, reason and text.
cat > evbad.jsonl <<'JS'
{"type":"message","event_id":"e2","member_id":"a1","ts":"2024-05-06","campaign_id":"c1","channel":"email","action":"clicked"}
{"type":"message","event_id":"e3","member_id":"a1","ts":"not a time","campaign_id":"c1"}
this is not json
{"type":"view","event_id":"e4","member_id":"a2","ts":"2024-05-07","sku":"A"}
JS
if "$P" --db p.db --quiet import events evbad.jsonl 2>err.txt; then fail "bad events must be refused"; fi
grep -q "evbad.jsonl:2: column 'ts'" err.txt || fail "events bad ts message: $(cat err.txt)"
grep -q "evbad.jsonl:3:" err.txt || fail "events bad json message"
[ ! -e evbad.jsonl.rejects ] || fail "no rejects file when refused"
"$P" --db p.db --quiet import events evbad.jsonl --max-errors 2 2>err.txt || fail "--max-errors 2"
grep -q "2 bad rows written to evbad.jsonl.rejects" err.txt || fail "rejects warning: $(cat err.txt)"
/usr/bin/python3 - <<'PY' || fail "events rejects file"
import json
rows = [json.loads(l) for l in open('evbad.jsonl.rejects')]
src = open('evbad.jsonl').read().split('\n')
assert [r['line'] for r in rows] == [2, 3], rows
for r in rows:
    assert r['record'] == src[r['line'] - 1] and r['reason'], r
PY
"$P" --db p.db --now 2025-01-01 --json stats | grep -q '"events":4' || fail "good lines stored"

# Attribute types are fixed by the first import that has values: a later value of another
# type is a bad row; a string attribute takes anything.
printf 'member_id,size,vip,note\nt1,3,true,x\nt2,4,false,y\n' > at1.csv
printf 'member_id,size,vip,note\nt3,big,yes,1\nt4,5,maybe,z\nt5,6,no,7\n' > at2.csv
"$P" --db at.db --quiet import members at1.csv || fail "attributes first import"
if "$P" --db at.db --quiet import members at2.csv 2>err.txt; then fail "attribute type change accepted"; fi
grep -q "at2.csv:2: column 'size': 'big' is not a number" err.txt || fail "number attribute message: $(cat err.txt)"
grep -q "at2.csv:3: column 'vip': 'maybe' is not true or false" err.txt || fail "bool attribute message"
"$P" --db at.db --quiet import members at2.csv --max-errors 2 2>/dev/null || fail "attributes --max-errors"
[ "$("$P" --db at.db --now 2025-01-01 --quiet query 'attributes.size >= 4 and attributes.vip = false' --count)" = 2 ] ||
    fail "typed attributes after the second import"
[ "$("$P" --db at.db --now 2025-01-01 --quiet query 'attributes.note = "7"' --count)" = 1 ] ||
    fail "a string attribute keeps a numeric-looking value as text"

# Money is in the base currency (USD without a program; the program's when applied): a row
# or event in another currency is a bad row.
printf 'order_id,member_id,ts,sku,qty,price,currency\nC1,a1,2024-06-01,S,1,10,USD\nC2,a1,2024-06-02,S,1,10,eur\nC3,a1,2024-06-03,S,1,10,\n' > cur.csv
if "$P" --db cur.db --quiet import orders cur.csv 2>err.txt; then fail "another currency accepted"; fi
grep -q "cur.csv:3: column 'currency': 'eur' is not the base currency USD" err.txt || fail "currency message: $(cat err.txt)"
printf '{"type":"order","order_id":"C4","member_id":"a1","ts":"2024-06-04","currency":"GBP","amount":5}\n' > cur.jsonl
if "$P" --db cur.db --quiet import events cur.jsonl 2>err.txt; then fail "another currency accepted (events)"; fi
grep -q "cur.jsonl:1: column 'currency': 'GBP' is not the base currency USD" err.txt || fail "events currency message"
# With an exchange rate in the program, prices and amounts are converted (to the cent,
# half away from zero) at import, and points are earned on the converted money.
printf '{"points_per_unit": 1, "exchange_rates": {"EUR": 1.1, "GBP": 1.2345}}' > fxprog.json
"$P" --db cur.db --quiet program apply fxprog.json || fail "program with exchange rates"
"$P" --db cur.db --quiet import orders cur.csv || fail "EUR rows with a rate"
"$P" --db cur.db --quiet import events cur.jsonl || fail "GBP event with a rate"
# 10 USD + 10 EUR x 1.1 + 10 USD + 5 GBP x 1.2345 (6.1725 -> 6.17) = 37.17
"$P" --db cur.db --now 2025-01-01 --json member show a1 | grep -q '"monetary": 37.17' ||
    fail "converted money: $("$P" --db cur.db --now 2025-01-01 --json member show a1 | grep monetary)"
"$P" --db cur.db --now 2025-01-01 points history a1 | grep -q "+6  C4" || fail "points on converted money"
"$P" --db cur.db --quiet ledger verify || fail "ledger verify after conversions"
printf '{"points_per_unit": 1, "exchange_rates": {"USD": 1}}' > fxbad.json
if "$P" program check fxbad.json 2>err.txt; then fail "a rate for the base currency accepted"; fi
grep -q "key 'exchange_rates.USD': 'USD' is the base currency" err.txt || fail "base-currency rate message"

# --map renames top-level keys of JSONL events; a line holding both names is refused.
cat > evmap.jsonl <<'JS'
{"kind":"view","id":"v1","customer":"a1","when":"2024-05-08","sku":"A"}
{"kind":"view","id":"v2","customer":"a1","member_id":"a9","when":"2024-05-08","sku":"B"}
JS
M=type=kind,event_id=id,member_id=customer,ts=when
"$P" --db p.db --quiet import events evmap.jsonl --map "$M" --max-errors 1 2>err.txt || fail "events --map"
grep -q "evmap.jsonl:2: column 'member_id': the line has both this key and 'customer'" err.txt ||
    fail "--map clash message: $(cat err.txt)"
"$P" --db p.db --now 2025-01-01 --json stats | grep -q '"events":5' || fail "mapped event stored"
"$P" --db p.db --json import events evmap.jsonl --map "$M" --max-errors 1 2>/dev/null |
    grep -q '"duplicates":1' || fail "mapped re-import is a duplicate"

DATA=${PATRON_SHARED_DATA:?}/cdnow/cdnowElog.csv
if [ -f "$DATA" ]; then
    "$P" --db c.db --quiet import orders "$DATA" --map member_id=masterid,ts=date,amount=sales
    "$P" --db c.db --json import orders "$DATA" --map member_id=masterid,ts=date,amount=sales |
        grep -q '"inserted":0,"items":0,"duplicates":6919' || fail "cdnow re-import"
    s=$("$P" --db c.db --now 1998-07-01 --json stats)
    echo "$s" | grep -q '"members":2357,"orders":6919' || fail "cdnow counts: $s"
    echo "$s" | grep -q '"revenue":244091.94' || fail "cdnow revenue: $s"
fi
echo "cli import: ok"
