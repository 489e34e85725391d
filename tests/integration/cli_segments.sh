#!/usr/bin/env bash
# Segments through the CLI: create/update/list/show/members/overlap/drop, static lists,
# in_segment cycles, export --for CHANNEL (consent), the enter/exit history as time
# passes (an order exactly at now - 30d is outside "30d"), and refresh on import.
set -euo pipefail
P=${PATRON_BIN:?}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
cat > "$T/members.csv" <<'EOF'
member_id,country,email,consent_email,consent_marketing,interests
m1,DE,m1@example.com,true,true,eco-friendly;running
m2,DE,m2@example.com,true,false,running
m3,FR,m3@example.com,true,true,
EOF
cat > "$T/orders.csv" <<'EOF'
order_id,member_id,ts,sku,qty,price,category,channel,store
o1,m1,2024-01-01T00:00:00Z,A,1,10.00,shoes,app,
o2,m2,2024-01-20T00:00:00Z,B,2,5.00,apparel,store,S7
o2,m2,2024-01-20T00:00:00Z,C,1,1.00,apparel,store,S7
o3,m3,2023-12-01T00:00:00Z,A,1,10.00,shoes,web,
EOF
db() { "$P" --db "$T/p.db" --quiet "$@"; }
db --now 2024-01-25 import members "$T/members.csv"
db --now 2024-01-25 import orders "$T/orders.csv"
db --now 2024-01-25 segment create recent 'count(orders, 30d) >= 1'
db --now 2024-01-25 segment create de 'country = "DE"'
db --now 2024-01-25 segment create de_recent 'in_segment("de") and in_segment("recent")'
[ "$(db --now 2024-01-25 segment members recent | sort | tr '\n' ' ')" = "m1 m2 " ]
# Purchase channel and store are kept (orders and their items).
[ "$(db --now 2024-01-25 query 'count(orders where channel = "app") = 1')" = m1 ]
[ "$(db --now 2024-01-25 query 'count(items where store = "S7" and channel = "store") = 2')" = m2 ]
[ "$(db --now 2024-01-25 query 'count(orders where channel = "web" or store = "S7") >= 1' --count)" = 2 ]
[ "$(db --now 2024-01-25 query 'in_segment("de_recent")' --count)" = 2 ]
# A cycle is refused at create/update time, naming it.
set +e
db --now 2024-01-25 segment update recent 'count(orders, 30d) >= 1 or in_segment("de_recent")' 2>"$T/err"; rc=$?
set -e
[ $rc -eq 2 ] && grep -q "in_segment cycle" "$T/err"
# Still the old rule.
db --now 2024-01-25 --json segment show recent | grep -q '"rule": "count(orders, 30d) >= 1"'
# Time passes: one second before the window edge m1 is in, at the edge it is out.
[ "$(db --now 2024-01-30T23:59:59Z segment members recent | sort | tr '\n' ' ')" = "m1 m2 " ]
[ "$(db --now 2024-01-31T00:00:00Z segment members recent | sort | tr '\n' ' ')" = "m2 " ]
db --now 2024-01-31T00:00:00Z segment changes recent --since 2024-01-26 > "$T/ch"
[ "$(cat "$T/ch")" = "$(printf '2024-01-31T00:00:00Z\texit\tm1')" ]
db --now 2024-01-31 --json segment changes recent | grep -c '"change":"enter"' | grep -qx 2
# Export for activation keeps only members with the channel and marketing consent.
db --now 2024-01-31 segment export de --for email --out "$T/de.csv"
[ "$(cat "$T/de.csv")" = "$(printf 'member_id,email\nm1,m1@example.com')" ]
[ "$(db --now 2024-01-31 segment export de | wc -l)" -eq 3 ]
# Static segments; an unknown id is a bad row with its line.
printf 'member_id\nm3\nm1\n' > "$T/vip.csv"
db --now 2024-01-31 segment import vip "$T/vip.csv"
[ "$(db --now 2024-01-31 query 'in_segment("vip") and country = "FR"')" = m3 ]
printf 'member_id\nm3\nnobody\n' > "$T/bad.csv"
set +e
db --now 2024-01-31 segment import vip2 "$T/bad.csv" 2>"$T/err"; rc=$?
set -e
[ $rc -eq 2 ] && grep -q "bad.csv:3: column 'member_id': no member 'nobody'" "$T/err"
db --now 2024-01-31 --json segment overlap de vip | grep -q '"all": 1'
# A segment used by another cannot be dropped; the user is told which.
set +e
db --now 2024-01-31 segment drop de 2>"$T/err"; rc=$?
set -e
[ $rc -eq 2 ] && grep -q "used by segment 'de_recent'" "$T/err"
db --now 2024-01-31 segment drop de_recent
db --now 2024-01-31 segment drop de
[ "$(db --now 2024-01-31 segment list | wc -l)" -eq 2 ]
# member show lists the segments.
db --now 2024-01-31 --json member show m2 | /usr/bin/python3 -c 'import json,sys; assert json.load(sys.stdin)["segments"] == ["recent"]'
# An import refreshes stored segments: m3 buys and enters "recent".
printf 'order_id,member_id,ts,sku,qty,price\no4,m3,2024-02-01T10:00:00Z,A,1,3.50\n' > "$T/o2.csv"
db --now 2024-02-02 import orders "$T/o2.csv"
db --now 2024-02-02 segment changes recent --since 2024-02-01 | grep -q "enter	m3"
# Orders arriving as JSONL events keep their line items (sku, category, brand) too.
cat > "$T/ev.jsonl" <<'EOF2'
{"type":"order","order_id":"j1","member_id":"m2","ts":"2024-02-01T09:00:00Z","channel":"app","items":[{"sku":"Z9","category":"toys","brand":"Acme","qty":2,"price":"4.50"},{"sku":"A","category":"shoes","qty":1,"price":10}]}
EOF2
db --now 2024-02-02 import events "$T/ev.jsonl"
[ "$(db --now 2024-02-02 query 'count(items where sku = "Z9" and category = "toys" and brand = "Acme" and qty = 2) = 1')" = m2 ]
[ "$(db --now 2024-02-02 query 'sum(items.amount where category = "shoes", 30d) = 10')" = m2 ]
[ "$(db --now 2024-02-02 query 'count(orders where channel = "app", 7d) = 1 and count(items where channel = "app") = 2')" = m2 ]
db --now 2024-02-02 --json import events "$T/ev.jsonl" | grep -q '"duplicates":1'
[ "$(db --now 2024-02-02 query 'count(items where sku = "Z9") >= 1' --count)" = 1 ]
# Errors: unknown subcommand, missing segment, bad rule.
set +e
db segment frobnicate 2>/dev/null; [ $? -eq 1 ] || exit 1
db segment show nope 2>/dev/null; [ $? -eq 3 ] || exit 1
db segment create x 'country > 3' 2>"$T/err"; [ $? -eq 2 ] || exit 1
set -e
grep -q "1:1: cannot compare a string with a number" "$T/err"
echo "segments: ok"
