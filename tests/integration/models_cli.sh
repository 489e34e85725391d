#!/usr/bin/env bash
# `patron models refresh|show`, `personas fit|show` and `rfm` through the CLI on a
# generated program: stored fields and models_as_of, personas identical for a seed,
# usage and not-found exit codes, and a damaged stored column refused (exit 4).
set -euo pipefail
P=${PATRON_BIN:?}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
NOW=2024-12-31T23:59:59Z
set +e; "$P" --db "$T/p.db" personas show 2>"$T/err"; rc=$?; set -e
[ $rc -eq 3 ] && grep -q "no personas stored yet" "$T/err"
"$P" --db "$T/p.db" --json models show | grep -q '"models_as_of":null'
"$P" generate --members 3000 --seed 5 --out "$T/g" >/dev/null
"$P" --db "$T/p.db" --quiet import members "$T/g/members.csv"
"$P" --db "$T/p.db" --quiet import orders "$T/g/orders.csv"
"$P" --db "$T/p.db" --now $NOW models refresh --k 3 --seed 9 > "$T/refresh.txt"
grep -q "models_as_of  2024-12-31T23:59:59Z" "$T/refresh.txt"
"$P" --db "$T/p.db" --json models show > "$T/show.json"
"$P" --db "$T/p.db" --now $NOW --json rfm > "$T/rfm.json"
"$P" --db "$T/p.db" --json personas show > "$T/p1.json"
"$P" --db "$T/p.db" --now $NOW --json personas fit --k 3 --seed 9 > "$T/p2.json"
"$P" --db "$T/p.db" --now $NOW --json personas fit --k auto --seed 4 > "$T/p3.json"
"$P" --db "$T/p.db" --now $NOW --json personas fit --k auto --seed 4 > "$T/p4.json"
cmp "$T/p3.json" "$T/p4.json"
/usr/bin/python3 - "$T" <<'PY'
import json, sys
t = sys.argv[1]
show, rfm = json.load(open(t + '/show.json')), json.load(open(t + '/rfm.json'))
p1, p2 = json.load(open(t + '/p1.json')), json.load(open(t + '/p2.json'))
assert show['models_as_of'] == '2024-12-31T23:59:59Z', show
assert show['rfm'] == rfm['members'] == show['personas'] == show['clv'] > 2000, (show, rfm['members'])
assert show['members'] == 3000 and show['clv_total'] > 0
# The refresh's personas (k 3, seed 9) and a personas fit with the same k and seed agree.
assert p1['personas'] == p2['personas'] and p1['k'] == 3, (p1, p2)
assert sum(p['size'] for p in p1['personas']) == show['personas']
assert all(p['description'].endswith(('shoppers',)) or 'shoppers,' in p['description'] for p in p1['personas'])
print('models cli: refresh, show, rfm and personas agree')
PY
# Usage errors exit 1.
for args in "models" "models frob" "personas fit --k 1" "personas fit --k 11" "rfm --bogus" \
            "models refresh --horizon soon" "clv" "clv fit --model pnbd"; do
    set +e; "$P" --db "$T/p.db" $args >/dev/null 2>&1; rc=$?; set -e
    [ $rc -eq 1 ] || { echo "'$args' exited $rc, want 1"; exit 1; }
done
# A damaged column is refused, not read.
sqlite3 "$T/p.db" "UPDATE model_columns SET data = substr(data, 1, 40) || x'ff' || substr(data, 42) WHERE name = 'clv'"
set +e; "$P" --db "$T/p.db" models show 2>"$T/err"; rc=$?; set -e
[ $rc -eq 4 ] && grep -q "model column 'clv' of run .* is damaged" "$T/err"
echo "models cli: usage errors and a damaged column refused"
