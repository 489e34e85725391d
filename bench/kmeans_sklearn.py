"""k-means peer for bench/models.sh: scikit-learn KMeans (Lloyd) from the same initial
centres and for the same iteration count as patron's run, on the same feature matrix.
Usage: kmeans_sklearn.py PREFIX N K ITERS THREADS   (reads PREFIX.X.bin and PREFIX.C.bin)"""
import json, sys, time
import numpy as np
from threadpoolctl import threadpool_limits
from sklearn.cluster import KMeans

prefix, n, k, iters, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
X = np.fromfile(prefix + '.X.bin', dtype=np.float64).reshape(n, -1)
C = np.fromfile(prefix + '.C.bin', dtype=np.float64).reshape(k, -1)
with threadpool_limits(limits=threads):
    km = KMeans(n_clusters=k, init=C, n_init=1, max_iter=iters, tol=0.0, algorithm='lloyd')
    t = time.perf_counter()
    km.fit(X)
    t = time.perf_counter() - t
print(json.dumps({'engine': 'sklearn', 'n': n, 'k': k, 'iterations': int(km.n_iter_),
                  'threads': threads, 'seconds': round(t, 4), 'inertia': float(km.inertia_)}))
