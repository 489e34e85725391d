#!/usr/bin/env bash
# Live segments benchmark: 50 segments (the rules of bench/rules.txt, cycled) kept
# current while a stream of events (a second generated data set over the same member
# ids, seed 2) arrives through the library's event API in batches of 1,000; then one day
# of clock advance.  Uses a copy of the database bench/rules.sh built for SIZE.
#
#   bench/live.sh SIZE [COUNT] [DAYS]   SIZE = T, S or M; COUNT events (200000); then
#                                       DAYS one-day clock advances (1)
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
SIZE=${1:?usage: bench/live.sh T|S|M [COUNT]}
COUNT=${2:-200000}
DAYS=${3:-1}
P=${PATRON_BIN:-$ROOT/build/patron}
DATA=$BENCH_DIR/data/$SIZE-s1
[ -f "$DATA/rules.db" ] || { echo "run bench/rules.sh $SIZE first (it builds $DATA/rules.db)" >&2; exit 2; }
STREAM=$BENCH_DIR/data/stream-s2
[ -f "$STREAM/events.jsonl" ] || "$P" --quiet generate --members 100000 --seed 2 --out "$STREAM" >/dev/null
NOW=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["now"])' "$DATA/params.json")
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
cp "$DATA/rules.db" "$W/live.db"
sync # the copy's write-back is not part of what is timed
mkdir -p "$BENCH_DIR/results"
"$P" --db "$W/live.db" --now "$NOW" bench-live "$STREAM/events.jsonl" --rules "$BENCH_DIR/rules.txt" \
    --segments 50 --batch 1000 --count "$COUNT" --days "$DAYS" | tee "$BENCH_DIR/results/live-$SIZE.json"
