#!/usr/bin/env bash
# Model kernel benchmarks (not tests): RFM and CLV fit/scoring on 1M generated inputs,
# and k-means k=8 Lloyd iterations against scikit-learn from the same initial centres
# for the same iteration count on 2 threads.  Usage: bench/models.sh [N] [ITERS]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
ITERS=${2:-30}
B=${BUILD:-build}
OUT=$(mktemp -d); trap 'rm -rf "$OUT"' EXIT
cmake --build "$B" -j2 >/dev/null
cc -O2 -std=c11 -D_GNU_SOURCE -Isrc -Iinclude bench/models_bench.c "$B/libpatron.a" \
    $(pkg-config --libs nlopt sqlite3 zlib libzstd jansson libxxhash) -lroaring -lpthread -lm \
    -o "$OUT/models_bench"
"$OUT/models_bench" rfm "$N"
"$OUT/models_bench" clv "$N"
"$OUT/models_bench" kmeans "$N" 8 "$ITERS" "$OUT/km" 2 | tee "$OUT/patron.json"
/usr/bin/python3 bench/kmeans_sklearn.py "$OUT/km" "$N" 8 "$ITERS" 2 | tee "$OUT/sklearn.json"
/usr/bin/python3 - "$OUT/patron.json" "$OUT/sklearn.json" <<'PY'
import json, sys
p, s = (json.load(open(f)) for f in sys.argv[1:3])
print('k-means k=8, %d x %d iterations, 2 threads: patron %.3f s, scikit-learn %.3f s, '
      'ratio %.2fx; inertia %.6f vs %.6f (rel diff %.2e)'
      % (p['n'], p['iterations'], p['seconds'], s['seconds'], s['seconds'] / p['seconds'],
         p['inertia'], s['inertia'], abs(p['inertia'] - s['inertia']) / s['inertia']))
PY
