#!/usr/bin/env bash
# The ledger seen by rules and live segments, through the CLI: with a program the
# points and redemptions streams are the ledger's rows (earning, a redemption and its
# cancellation, expiry whether or not the expiry run has happened), points_balance and
# tier are read at the evaluation's now, and segments on them follow every ledger
# command and the clock, with each enter and exit at its instant.
set -euo pipefail
P=${PATRON_BIN:?}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
cd "$T"
fail() { echo "FAIL: $*" >&2; exit 1; }
db() { "$P" --db p.db "$@"; }

cat > ev.jsonl <<'JS'
{"type":"order","order_id":"O1","member_id":"a1","ts":"2024-05-01T10:00:00Z","items":[{"sku":"S","category":"Shoes","qty":2,"price":50}]}
{"type":"order","order_id":"O2","member_id":"b2","ts":"2024-05-01T11:00:00Z","items":[{"sku":"B","category":"Books","qty":1,"price":10}]}
{"type":"survey","event_id":"sv1","member_id":"b2","ts":"2024-05-02","answers":{"size":"m"}}
JS
db --quiet program apply "$ROOT/examples/program.json"
db --now 2024-04-30 --quiet segment create rich 'points_balance >= 150'
db --now 2024-04-30 --quiet segment create redeemers 'count(redemptions, 30d) >= 1'
db --now 2024-04-30 --quiet segment create expired 'count(points where reason = "expiry", 365d) >= 1'
db --now 2024-04-30 --quiet import events ev.jsonl
db --now 2024-05-03 --quiet segment refresh
[ "$(db --now 2024-05-03 segment members rich)" = a1 ] || fail "a1 earned 200"
[ "$(db --now 2024-05-03 query 'count(points where reason = "order") = 1' | tr '\n' ' ')" = "a1 b2 " ] || fail "order rows"
[ "$(db --now 2024-05-03 query 'sum(points.points where reason = "survey") = 50')" = b2 ] || fail "survey bonus row"
[ "$(db --now 2024-05-03 query 'tier = "member"' --count)" = 2 ] || fail "tier"
db --now 2024-05-03 --quiet points adjust a1 --points 100 --reason goodwill --key adj1
[ "$(db --now 2024-05-03 query 'sum(points.points where reason = "goodwill") = 100')" = a1 ] || fail "adjustment row"
db --now 2024-05-04 --quiet redeem a1 RWD-FREESHIP --key k2
# the redeem command brought the stored segments up to date: a1 left rich, joined redeemers
db --now 2024-05-04 segment changes rich --since 2024-05-04 | grep -q "^2024-05-04T00:00:00Z	exit	a1$" || fail "exit on redeem"
db --now 2024-05-04 segment changes redeemers --since 2024-05-04 | grep -q "enter	a1" || fail "enter redeemers"
[ "$(db --now 2024-05-04 query 'sum(redemptions.points where reward_id = "RWD-FREESHIP") = 250')" = a1 ] || fail "redemption row"
db --now 2024-05-06 --quiet redeem cancel k2
db --now 2024-05-06 segment changes redeemers --since 2024-05-05 | grep -q "exit	a1" || fail "a cancelled redemption leaves the stream"
db --now 2024-05-06 segment changes rich --since 2024-05-05 | grep -q "enter	a1" || fail "cancel gives the points back"
[ "$(db --now 2024-05-06 query 'count(points where reason = "cancel") = 1 and count(redemptions) = 0')" = a1 ] || fail "cancel row"
# End of month + 12: the lots of May 2024 expire at 2025-06-01T00:00:00Z, with or without
# the expiry run; the segment notes the exit at that instant.
db --now 2025-06-02 --quiet segment refresh
db --now 2025-06-02 segment changes rich --since 2025-01-01 | grep -q "^2025-06-01T00:00:00Z	exit	a1$" || fail "exit at expiry"
db --now 2025-06-02 segment changes expired --since 2025-01-01 | grep -q "^2025-06-01T00:00:00Z	enter	b2$" || fail "expiry row before the run"
exp() { db --now 2025-06-02 query 'sum(points.points where reason = "expiry") = -300 or sum(points.points where reason = "expiry") = -55' | tr '\n' ' '; }
[ "$(exp)" = "a1 b2 " ] || fail "expiry rows before the run: $(exp)"
db --now 2025-06-02 --quiet points expire
[ "$(exp)" = "a1 b2 " ] || fail "the expiry run changes nothing in the stream: $(exp)"
for t in 2024-05-01T10:00:00Z 2024-05-03 2024-05-05 2025-05-31T23:59:59Z 2025-06-01 2026-01-01; do
    [ "$(db --now $t query 'sum(points.points) != points_balance' --count)" = 0 ] || fail "stream sum = balance at $t"
done
db ledger verify >/dev/null || fail "verify"
# Without a program the streams are the imported events, and points_balance is null.
printf '{"type":"points","member_id":"z","ts":"2024-01-02","event_id":"p1","points":30,"reason":"welcome"}\n' > np.jsonl
"$P" --db np.db --quiet import events np.jsonl
[ "$("$P" --db np.db --now 2024-02-01 query 'sum(points.points where reason = "welcome") = 30')" = z ] || fail "event rows"
[ "$("$P" --db np.db --now 2024-02-01 query 'points_balance >= 0' --count)" = 0 ] || fail "null balance"
echo "ledger streams: ok"
