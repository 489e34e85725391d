#!/usr/bin/env bash
# Model benchmarks (not tests).
#   bench/models.sh [N] [ITERS]          synthetic: RFM and CLV fit/scoring on N generated
#                                        inputs; k-means k=8 on an N x 5 mixture
#   bench/models.sh --db SIZE [ITERS]    on the program bench/rules.sh imported for SIZE
#                                        (bench/data/SIZE-s1/rules.db, at its now): RFM,
#                                        BG/NBD + Gamma-Gamma fit and scoring, personas
#                                        --k auto, and k-means k=8 on the persona feature
#                                        matrix
# k-means runs against scikit-learn from the same initial centres for the same iteration
# count on 2 threads (tol 0), and the two inertias are compared.
set -euo pipefail
cd "$(dirname "$0")/.."
DB=
if [ "${1:-}" = "--db" ]; then
    SIZE=${2:?usage: bench/models.sh --db SIZE [ITERS]}
    DB=bench/data/$SIZE-s1/rules.db
    [ -f "$DB" ] || { echo "run bench/rules.sh $SIZE first (it builds $DB)" >&2; exit 2; }
    NOW=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["now"])' \
        "bench/data/$SIZE-s1/params.json")
    ITERS=${3:-30}
else
    N=${1:-1000000}
    ITERS=${2:-30}
fi
B=${BUILD:-build}
OUT=$(mktemp -d); trap 'rm -rf "$OUT"' EXIT
cmake --build "$B" -j2 >/dev/null
cc -O2 -std=c11 -D_GNU_SOURCE -Isrc -Iinclude bench/models_bench.c "$B/libpatron.a" \
    $(pkg-config --libs nlopt sqlite3 zlib libzstd jansson libxxhash) -lroaring -lpthread -lm \
    -o "$OUT/models_bench"
if [ -n "$DB" ]; then
    # a copy: the benchmark must not change the cached database
    cp "$DB" "$OUT/p.db"
    "$OUT/models_bench" rfmdb "$OUT/p.db" "$NOW"
    "$OUT/models_bench" clvdb "$OUT/p.db" "$NOW"
    "$OUT/models_bench" personas "$OUT/p.db" "$NOW" 0
    "$OUT/models_bench" kmeansdb "$OUT/p.db" "$NOW" 8 "$ITERS" "$OUT/km" 2 | tee "$OUT/patron.json"
    N=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["n"])' "$OUT/patron.json")
else
    "$OUT/models_bench" rfm "$N"
    "$OUT/models_bench" clv "$N"
    "$OUT/models_bench" kmeans "$N" 8 "$ITERS" "$OUT/km" 2 | tee "$OUT/patron.json"
fi
/usr/bin/python3 bench/kmeans_sklearn.py "$OUT/km" "$N" 8 "$ITERS" 2 | tee "$OUT/sklearn.json"
/usr/bin/python3 - "$OUT/patron.json" "$OUT/sklearn.json" <<'PY'
import json, sys
p, s = (json.load(open(f)) for f in sys.argv[1:3])
print('k-means k=8, %d x %d features x %d iterations, 2 threads: patron %.3f s, scikit-learn '
      '%.3f s, ratio %.2fx; inertia %.6f vs %.6f (rel diff %.2e)'
      % (p['n'], p.get('d', 5), p['iterations'], p['seconds'], s['seconds'],
         s['seconds'] / p['seconds'], p['inertia'], s['inertia'],
         abs(p['inertia'] - s['inertia']) / s['inertia']))
PY
