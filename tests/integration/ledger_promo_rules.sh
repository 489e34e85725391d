#!/usr/bin/env bash
# Promotion rule conditions (docs/ledger.md "Promotion rules"): a promotion applies when
# its rule holds for the member just before the order (the order itself and everything
# at or after its time invisible), for orders of one file and across files, CSV and
# JSONL; profile and window rules; bad rules refused with their position; a refused
# import that had shown its batch to the rules leaves nothing behind.
set -euo pipefail
P=${PATRON_BIN:?}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
cd "$T"
fail() { echo "FAIL: $*" >&2; exit 1; }
bal() { "$P" --db p.db --now 2025-01-01 --json points balance "$1" | sed 's/.*"points_balance":\([-0-9]*\).*/\1/'; }

cat > prog.json <<'JS'
{"points_per_unit": 1,
 "rewards": [{"id": "R1", "points": 1000}],
 "promotions": [
  {"id": "third-order", "rule": "frequency >= 2", "multiplier": 2},
  {"id": "lyon", "rule": "city = \"Lyon\"", "bonus": 7},
  {"id": "back-within-a-week", "rule": "count(orders, 7d) >= 1 -- an order in the 7 days before",
   "bonus": 3, "from": "2024-03-01"}
 ]}
JS
"$P" program check prog.json | grep -q "syntax only" || fail "check without a database says how deep it looked"
printf 'member_id,city\nm1,Lyon\nm2,Paris\n' > members.csv
"$P" --db p.db --quiet import members members.csv
"$P" --db p.db --quiet program apply prog.json
"$P" --db p.db program check prog.json | grep -q "3 promotions, 1 rewards)$" || fail "full check against the database"

H='order_id,member_id,ts,sku,qty,price,category,brand,channel,store,original_order_id'
# m2: three orders in one file, out of time order; m3: two orders at the same second, then
# one more; m4: one order here, two in the next file; m1 (Lyon): one order.
cat > o1.csv <<CSV
$H
A3,m2,2024-01-03T10:00:00Z,S,1,10.00,c,b,web,,
A1,m2,2024-01-01T10:00:00Z,S,1,10.00,c,b,web,,
A2,m2,2024-01-02T10:00:00Z,S,1,10.00,c,b,web,,
B1,m3,2024-01-05T10:00:00Z,S,1,10.00,c,b,web,,
B2,m3,2024-01-05T10:00:00Z,S,1,10.00,c,b,web,,
B3,m3,2024-01-05T10:00:01Z,S,1,10.00,c,b,web,,
C1,m4,2024-01-01T10:00:00Z,S,1,10.00,c,b,web,,
L1,m1,2024-01-01T10:00:00Z,S,1,10.00,c,b,web,,
CSV
"$P" --db p.db --quiet import orders o1.csv
# m2: 10, 10, 2 x 10 (the third sees two orders before it)
[ "$(bal m2)" = 40 ] || fail "m2 in one file: $(bal m2)"
# m3: B1 and B2 see nothing of each other (same second); B3 sees both
[ "$(bal m3)" = 40 ] || fail "m3 same-second orders: $(bal m3)"
[ "$(bal m1)" = 17 ] || fail "m1 profile rule (Lyon bonus 7): $(bal m1)"
[ "$(bal m4)" = 10 ] || fail "m4 first file: $(bal m4)"
cat > o2.csv <<CSV
$H
C2,m4,2024-01-02T10:00:00Z,S,1,10.00,c,b,web,,
C3,m4,2024-01-03T10:00:00Z,S,1,10.00,c,b,web,,
CSV
"$P" --db p.db --quiet import orders o2.csv
[ "$(bal m4)" = 40 ] || fail "m4 across files: $(bal m4)"

# Window rule from 2024-03-01: m5's second order is 10 days after the first (no bonus),
# the third 2 days after the second (bonus 3; frequency 2 doubles it too).  JSONL path.
cat > ev.jsonl <<'JS'
{"type":"order","order_id":"D1","member_id":"m5","ts":"2024-03-01T12:00:00Z","items":[{"sku":"S","category":"c","qty":1,"price":10}]}
{"type":"order","order_id":"D2","member_id":"m5","ts":"2024-03-11T12:00:00Z","items":[{"sku":"S","category":"c","qty":1,"price":10}]}
{"type":"order","order_id":"D3","member_id":"m5","ts":"2024-03-13T12:00:00Z","items":[{"sku":"S","category":"c","qty":1,"price":10}]}
JS
"$P" --db p.db --quiet import events ev.jsonl
[ "$(bal m5)" = 43 ] || fail "m5 window rule and events path: $(bal m5)"
"$P" --db p.db --now 2025-01-01 --json points history m5 | grep -q '"points":23' || fail "m5 third order earned 23"

# A refused import (an imported redemption that would overdraw) after its batch was
# applied ahead of the commit: nothing stays, not even in this process's later reads.
cat > bad.jsonl <<'JS'
{"type":"order","order_id":"E1","member_id":"m9","ts":"2024-04-01T12:00:00Z","items":[{"sku":"S","category":"c","qty":1,"price":10}]}
{"type":"order","order_id":"E2","member_id":"m9","ts":"2024-04-02T12:00:00Z","items":[{"sku":"S","category":"c","qty":1,"price":10}]}
{"type":"redemption","event_id":"X1","member_id":"m9","ts":"2024-04-03T12:00:00Z","reward_id":"R1","points":5000}
JS
if "$P" --db p.db --quiet import events bad.jsonl 2> bad.txt; then fail "overdrawing import accepted"; fi
grep -q "overdraw" bad.txt || fail "refusal names the cause: $(cat bad.txt)"
if "$P" --db p.db member show m9 >/dev/null 2>&1; then fail "member of a refused import exists"; fi
head -2 bad.jsonl > good.jsonl
"$P" --db p.db --quiet import events good.jsonl
# 10, then 10 + 3 (an order the day before): nothing of the refused batch was stored
[ "$(bal m9)" = 23 ] || fail "m9 after the refused import: $(bal m9)"
"$P" --db p.db ledger verify >/dev/null || fail "ledger verify"

# Bad rules: syntax (no database needed), unknown names and ledger fields (database).
printf '{"points_per_unit": 1, "promotions": [\n {"id": "p", "multiplier": 2,\n  "rule": "frequency >= "}]}' > r1.json
printf '{"points_per_unit": 1, "promotions": [{"id": "p", "bonus": 1, "rule": "contry = \\"FR\\""}]}' > r2.json
printf '{"points_per_unit": 1, "promotions": [{"id": "p", "bonus": 1, "rule": "frequency > 1 and points_balance > 10"}]}' > r3.json
if "$P" program check r1.json 2> e1.txt; then fail "syntax error accepted"; fi
grep -q "r1.json:3: key 'promotions\[0\].rule': 1:14:" e1.txt || fail "syntax error position: $(cat e1.txt)"
if "$P" --db p.db program apply r2.json 2> e2.txt; then fail "unknown field accepted"; fi
grep -q "r2.json: key 'promotions\[0\].rule': 1:1: unknown field 'contry'" e2.txt || fail "unknown field: $(cat e2.txt)"
grep -q "did you mean 'country'" e2.txt || fail "did-you-mean: $(cat e2.txt)"
if "$P" --db p.db program check r3.json 2> e3.txt; then fail "ledger field accepted"; fi
grep -q "1:19: a promotion rule cannot read 'points_balance'" e3.txt || fail "ledger field: $(cat e3.txt)"
"$P" --db p.db --json program show | grep -q 'third-order' || fail "the program in force is unchanged"
echo ok
