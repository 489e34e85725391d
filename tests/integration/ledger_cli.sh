#!/usr/bin/env bash
# The loyalty commands end to end: program check errors (file:line:col, key path, line),
# apply (versioned, idempotent), earning on import, redeem / retry / cancel, overdraw and
# unknown keys with their exit codes, expiry twice, tier review, ledger verify.
set -euo pipefail
P=${PATRON_BIN:?}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
cd "$T"
fail() { echo "FAIL: $*" >&2; exit 1; }

"$P" program check "$ROOT/examples/program.json" >/dev/null || fail "example program"
printf '{"points_per_unit": 1,\n  "tiers": 3 }' > bad1.json
printf '{"points_per_unit": 1,\n "x": }' > bad2.json
set +e
"$P" program check bad1.json 2> e1.txt; rc1=$?
"$P" program check bad2.json 2> e2.txt; rc2=$?
"$P" program check missing.json 2>/dev/null; rc3=$?
set -e
[ $rc1 -eq 2 ] && [ $rc2 -eq 2 ] && [ $rc3 -eq 3 ] || fail "check exit codes $rc1 $rc2 $rc3"
grep -q "bad1.json:2: key 'tiers'" e1.txt || fail "semantic error names key and line: $(cat e1.txt)"
grep -q "bad2.json:2:" e2.txt || fail "syntax error names line: $(cat e2.txt)"

cat > ev.jsonl <<'JS'
{"type":"order","order_id":"O1","member_id":"a1","ts":"2024-05-01T10:00:00Z","items":[{"sku":"S","category":"Shoes","qty":2,"price":50}]}
{"type":"order","order_id":"O2","member_id":"b2","ts":"2024-05-01T11:00:00Z","items":[{"sku":"B","category":"Books","qty":1,"price":10}]}
{"type":"survey","event_id":"sv1","member_id":"b2","ts":"2024-05-02","answers":{"size":"m"}}
JS
"$P" --db p.db --quiet program apply "$ROOT/examples/program.json"
"$P" --db p.db program apply "$ROOT/examples/program.json" | grep -q unchanged || fail "apply twice"
"$P" --db p.db --quiet import events ev.jsonl
# a1: 100.00 of Shoes x 2 = 200; b2: 10.00 of Books x 0.5 = 5, + survey 50
"$P" --db p.db --now 2024-05-03 --json points balance a1 | grep -q '"points_balance":200' || fail "a1 earned"
"$P" --db p.db --now 2024-05-03 --json points balance b2 | grep -q '"points_balance":55' || fail "b2 earned"
out=$("$P" --db p.db --now 2024-05-03 --json redeem a1 RWD-FREESHIP --key k1 2>&1 || true)
echo "$out" | grep -q 'overdraw' || fail "overdraw refused: $out"
set +e
"$P" --db p.db --now 2024-05-03 redeem a1 RWD-FREESHIP --key k1 2>/dev/null; rc=$?
"$P" --db p.db --now 2024-05-03 redeem a1 NO-SUCH --key k9 2>/dev/null; rc2=$?
"$P" --db p.db --now 2024-05-03 redeem nobody RWD-FREESHIP --key k8 2>/dev/null; rc3=$?
"$P" --db p.db redeem cancel never-made 2>/dev/null; rc4=$?
set -e
[ $rc -eq 2 ] && [ $rc2 -eq 3 ] && [ $rc3 -eq 3 ] && [ $rc4 -eq 3 ] || fail "exit codes $rc $rc2 $rc3 $rc4"
"$P" --db p.db --now 2024-05-03 --quiet points adjust a1 --points 100 --reason goodwill --key adj1
r1=$("$P" --db p.db --now 2024-05-04 --json redeem a1 RWD-FREESHIP --key k2)
r2=$("$P" --db p.db --now 2024-05-05 --json redeem a1 RWD-FREESHIP --key k2)
echo "$r1" | grep -q '"replayed":false' || fail "first redeem"
echo "$r2" | grep -q '"replayed":true' || fail "retry replays"
[ "${r1%\"replayed\"*}" = "${r2%\"replayed\"*}" ] || fail "retry returns the first result"
set +e
"$P" --db p.db redeem a1 RWD-05OFF --key k2 2> e3.txt; rc=$?
set -e
[ $rc -eq 2 ] && grep -q "'reward'" e3.txt || fail "same key, other reward"
"$P" --db p.db --now 2024-05-04 --json points balance a1 | grep -q '"points_balance":50' || fail "after redeem"
"$P" --db p.db --now 2024-05-06 --quiet redeem cancel k2
"$P" --db p.db --now 2024-05-06 --json points balance a1 | grep -q '"points_balance":300' || fail "cancel restores"
# end_of_month + 12: lots of May 2024 expire on 2025-06-01
"$P" --db p.db --now 2025-06-01 --json points balance a1 | grep -q '"points_balance":0' || fail "expired without the job"
e1=$("$P" --db p.db --now 2025-06-01 --json points expire)
e2=$("$P" --db p.db --now 2025-06-01 --json points expire)
echo "$e1" | grep -q '"points":355' || fail "expiry: $e1"
echo "$e2" | grep -q '"replayed":true' || fail "expiry twice"
"$P" --db p.db --now 2025-06-01 --json tiers review | grep -q '"changed":0' || fail "review"
"$P" --db p.db --now 2024-05-03 tier show a1 | grep -q "tier member" || fail "tier show"
"$P" --db p.db ledger verify >/dev/null || fail "verify"
"$P" --db p.db --json points history a1 | grep -q '"kind":"cancel"' || fail "history"
"$P" --db p.db --json rewards list | grep -q '"RWD-TOTE"' || fail "rewards list"
# Birthday and enrollment bonuses (100 each in the example program): once per member
# and birthday year; members without a birth date get no birthday bonus.
printf 'member_id,enrolled_at,birth_date\nbd1,2024-01-10,1990-03-05\nbd2,2024-06-01,\nbd3,2024-01-01,2000-02-29\n' > bm.csv
"$P" --db b.db --quiet import members bm.csv
"$P" --db b.db --quiet program apply "$ROOT/examples/program.json"
b1=$("$P" --db b.db --now 2025-03-10 --json points bonuses)
b2=$("$P" --db b.db --now 2025-03-10 --json points bonuses)
[ "$b1" = '{"birthday":2,"enrollment":3}' ] || fail "bonuses: $b1"
[ "$b2" = '{"birthday":0,"enrollment":0}' ] || fail "bonuses rerun: $b2"
"$P" --db b.db --now 2025-03-10 --json points balance bd2 | grep -q '"points_balance":100' || fail "no birth date: enrollment only"
"$P" --db b.db --now 2025-03-10 --json points history bd3 | grep -q '"ts":1740700800,"kind":"bonus","points":100,"ref":"birthday"' ||
    fail "29 February birthday on 28 February 2025"
b3=$("$P" --db b.db --now 2026-03-06 --json points bonuses)
[ "$b3" = '{"birthday":2,"enrollment":0}' ] || fail "next year's birthdays: $b3"
"$P" --db b.db ledger verify >/dev/null || fail "verify after bonuses"
for c in program points rewards redeem tier tiers ledger; do
    "$P" $c --help >/dev/null || fail "$c --help"
done
echo ok
