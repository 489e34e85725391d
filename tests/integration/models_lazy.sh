#!/usr/bin/env bash
# Lazy model refresh: a command that reads model fields refreshes the models first when
# none are stored or the data changed since the last refresh (every committed import
# bumps the store's data version); it does not when nothing changed, when the rule reads
# no model field, or when an import stored nothing new (a re-import of the same file).
set -euo pipefail
P=${PATRON_BIN:?}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
"$P" --quiet generate --members 1200 --seed 5 --out "$T/d" >/dev/null
NOW=2024-12-31T23:59:59Z
db() { "$P" --db "$T/p.db" --now "$NOW" "$@"; }
refreshed() { grep -q "models refreshed as of" "$T/err"; }
not_refreshed() { if refreshed; then echo "unexpected refresh" >&2; exit 1; fi; }
# Orders in two halves by time, so the second import adds data.
/usr/bin/python3 - "$T/d/orders.csv" "$T/o1.csv" "$T/o2.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
cut = '2024-07-01'
for path, keep in ((sys.argv[2], lambda r: r['ts'] < cut), (sys.argv[3], lambda r: r['ts'] >= cut)):
    with open(path, 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=rows[0].keys()); w.writeheader()
        w.writerows(r for r in rows if keep(r) and not r['original_order_id'])
PY
db --quiet import members "$T/d/members.csv"
db --quiet import orders "$T/o1.csv"
# No refresh stored yet: a rule that reads no model field leaves them alone ...
db query 'frequency >= 1' --count > /dev/null 2> "$T/err"; not_refreshed
db --quiet models show | grep -q "models_as_of  never"
# ... one that reads them refreshes first, and its answer is the refreshed one.
n1=$(db query 'rfm.score is not null' --count 2> "$T/err"); refreshed
[ "$n1" = "$(db --quiet query 'frequency >= 1 and consent.profiling' --count)" ]
db --json models show > "$T/s1.json"
# Nothing changed: no second refresh (also for segments and member show).
db query 'rfm.score is not null' --count > /dev/null 2> "$T/err"; not_refreshed
db segment create champs 'rfm.segment = "Champions"' > /dev/null 2> "$T/err"; not_refreshed
c1=$(db --quiet segment members champs | wc -l)
m=$(db --quiet query 'rfm.segment = "Champions"' | head -1)
db member show "$m" > /dev/null 2> "$T/err"; not_refreshed
# The second half of the orders: the next read of a model field refreshes.
db --quiet import orders "$T/o2.csv"
db query 'frequency >= 1' --count > /dev/null 2> "$T/err"; not_refreshed
db segment members champs > "$T/champs2" 2> "$T/err"; refreshed
db --json models show > "$T/s2.json"
n2=$(db --quiet query 'rfm.score is not null' --count)
[ "$n2" = "$(db --quiet query 'frequency >= 1 and consent.profiling' --count)" ]
[ "$n2" -gt "$n1" ]
# The segment followed the refresh: its members equal the rule's answer now.
[ "$(sort "$T/champs2")" = "$(db --quiet query 'rfm.segment = "Champions"' | sort)" ]
# Re-importing a file already stored adds nothing, so nothing becomes stale.
db --quiet import orders "$T/o2.csv" > /dev/null 2>&1 || true
db query 'p_alive >= 0' --count > /dev/null 2> "$T/err"; not_refreshed
/usr/bin/python3 - "$T/s1.json" "$T/s2.json" "$c1" <<'PY'
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
print('models lazy: refreshed on first read, again after new data only', file=sys.stderr)
assert a != b, 'the second refresh stored a new run'
PY
echo "models lazy: ok"
