#!/usr/bin/env bash
# Rule benchmark: the 20 rules of bench/rules.txt (profile, behavioural, aggregates with
# where and windows, in_segment) evaluated over all members by Patron's compiled
# evaluator and, as SQL, by DuckDB over in-memory tables of the same generated data.
# Checks that every member count agrees and reports per-rule times and ratios.
#
#   bench/rules.sh SIZE       SIZE = T, S or M (data generated/cached as bench/run does)
#
# Environment: PATRON_BIN, BENCH_REPEAT (runs per rule, 5; the fastest is reported),
# BENCH_THREADS (threads for both engines, 2).
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
SIZE=${1:?usage: bench/rules.sh T|S|M}
case "$SIZE" in T) N=10000 ;; S) N=100000 ;; M) N=1000000 ;; *) echo "bad size" >&2; exit 2 ;; esac
P=${PATRON_BIN:-$ROOT/build/patron}
REPEAT=${BENCH_REPEAT:-5}
THREADS=${BENCH_THREADS:-2}
DATA=$BENCH_DIR/data/$SIZE-s1
[ -f "$DATA/orders.csv" ] || "$P" --quiet generate --members "$N" --seed 1 --out "$DATA"
NOW=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["now"])' "$DATA/params.json")
DB=$DATA/rules.db
if [ ! -f "$DB" ]; then
    "$P" --db "$DB.tmp" --now "$NOW" --quiet import members "$DATA/members.csv"
    "$P" --db "$DB.tmp" --now "$NOW" --quiet import orders "$DATA/orders.csv"
    "$P" --db "$DB.tmp" --now "$NOW" --quiet import events "$DATA/events.jsonl"
    mv "$DB.tmp" "$DB"; rm -f "$DB.tmp-wal" "$DB.tmp-shm"
fi
OUT=$BENCH_DIR/results
mkdir -p "$OUT"
"$P" --db "$DB" --now "$NOW" bench-rules "$BENCH_DIR/rules.txt" --repeat "$REPEAT" --threads "$THREADS" > "$OUT/rules-$SIZE.patron.json"
(cd "$BENCH_DIR" && node rules_peer.mjs "$DATA" rules.txt "$NOW" --repeat "$REPEAT" --threads "$THREADS") > "$OUT/rules-$SIZE.duckdb.json"
/usr/bin/python3 - "$OUT/rules-$SIZE" "$SIZE" <<'PY'
import json, sys
base, size = sys.argv[1], sys.argv[2]
p = json.load(open(base + '.patron.json')); d = json.load(open(base + '.duckdb.json'))
rows, bad = [], 0
for a, b in zip(p['rules'], d['rules']):
    agree = a['count'] == b['count']
    bad += not agree
    rows.append((a['rule'], a['count'], b['count'], a['ms_min'], b['ms_min'], b['ms_min'] / a['ms_min'], agree, a.get('ms_first', a['ms_min'])))
md = ['# Rule benchmark, size %s (%d members)' % (size, p['members']), '',
      'Patron: view build %.1f s (store -> member view, once per process); DuckDB: table load %.1f s.' % (p['view_s'], d['load_s']),
      'Times are the fastest of the runs, whole evaluation over all members, %s threads each.' % d['threads'],
      'Patron first: the first run, which builds the indexes the rule needs for this view generation.', '',
      '| rule | members | Patron ms | Patron first ms | DuckDB ms | ratio | agree |', '|---|---|---|---|---|---|---|']
for r in rows:
    md.append('| `%s` | %d | %.2f | %.1f | %.2f | %.1fx | %s |' % (r[0].replace('|', '\\|'), r[1], r[3], r[7], r[4], r[5], 'yes' if r[6] else 'NO (DuckDB %d)' % r[2]))
open(base + '.md', 'w').write('\n'.join(md) + '\n')
print('\n'.join(md))
if bad:
    print('bench: %d rules disagree with DuckDB' % bad, file=sys.stderr)
    sys.exit(1)
PY
