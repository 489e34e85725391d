/*
 * kmeans.c -- k-means (see kmeans.h).
 *
 * One Lloyd iteration is an E step (each row to its nearest centre, squared Euclidean
 * distance, lowest index on ties) fused with the M step's partial sums: rows are cut
 * into blocks of KM_BLOCK; a block's sums, counts, changed labels and inertia go to that
 * block's own slot, and the slots are added in block order afterwards.  Threads take
 * blocks t, t + T, t + 2T, ...; since each slot is a function of its block alone, any T
 * gives the same bits.  An empty cluster takes the row farthest from its centre (lowest
 * index on ties), as scikit-learn does, so k clusters always come back.
 */
#include "models/kmeans.h"

#include "base/err.h"
#include "base/mem.h"
#include "ingest/rng.h"

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#define KM_BLOCK 4096
#define KM_MAXTHREADS 16

void kmeans_opts_init(kmeans_opts *o, int k)
{
    o->k = k;
    o->restarts = 10;
    o->max_iter = 300;
    o->tol = 1e-4;
    o->seed = 1;
    o->threads = 2;
}

static inline double sqdist(const double *a, const double *b, size_t d)
{
    double s = 0.0;
    for (size_t j = 0; j < d; j++) {
        double t = a[j] - b[j];
        s += t * t;
    }
    return s;
}

int kmeans_seed(const double *X, size_t n, size_t d, int k, uint64_t seed, double *centers)
{
    double *dist = mem_alloc_array(n, sizeof *dist), *cand = mem_alloc_array(n, sizeof *cand);
    double *best = mem_alloc_array(n, sizeof *best);
    if (!dist || !cand || !best) {
        mem_free(dist), mem_free(cand), mem_free(best);
        return -1;
    }
    rng g;
    rng_seed(&g, seed);
    size_t first = (size_t)rng_below(&g, n);
    memcpy(centers, X + first * d, d * sizeof *centers);
    double pot = 0.0;
    for (size_t i = 0; i < n; i++) {
        dist[i] = sqdist(X + i * d, centers, d);
        pot += dist[i];
    }
    int trials = 2 + (int)log((double)k);
    for (int c = 1; c < k; c++) {
        double best_pot = DBL_MAX;
        size_t best_i = 0;
        for (int t = 0; t < trials; t++) {
            /* A row with probability proportional to its squared distance. */
            double u = rng_double(&g) * pot, acc = 0.0;
            size_t pick = n - 1;
            for (size_t i = 0; i < n; i++) {
                acc += dist[i];
                if (acc > u) {
                    pick = i;
                    break;
                }
            }
            double cp = 0.0;
            for (size_t i = 0; i < n; i++) {
                double dd = sqdist(X + i * d, X + pick * d, d);
                cand[i] = dd < dist[i] ? dd : dist[i];
                cp += cand[i];
            }
            if (cp < best_pot) {
                best_pot = cp;
                best_i = pick;
                double *s = best;
                best = cand;
                cand = s;
            }
        }
        memcpy(centers + (size_t)c * d, X + best_i * d, d * sizeof *centers);
        double *s = dist;
        dist = best;
        best = s;
        pot = best_pot;
    }
    mem_free(dist), mem_free(cand), mem_free(best);
    return 0;
}

typedef struct km_shared {
    const double *X;
    size_t n, d;
    int k;
    const double *centers;
    double *ct;       /* centres transposed and padded (d x kp), when kp > 0 */
    int kp;           /* 4, 8 or 16 (the smallest >= k), 0 for k > 16 */
    uint32_t *assign;
    double *dmin;     /* n: distance to the assigned centre */
    double *bsum;     /* nblocks x k x d */
    double *bcnt;     /* nblocks x k */
    double *binert;   /* nblocks */
    size_t *bchanged; /* nblocks */
    size_t nblocks;
    int threads;
} km_shared;

/*
 * Nearest centre for k <= KP, KP a constant: all KP distances at once over the centres
 * transposed and padded to KP columns (d x KP), in vectors of 4 doubles (GCC vector
 * extensions: native in estep's AVX2 and AVX-512 clones, two SSE2 halves otherwise).
 * Each distance still sums its coordinates in order 0..d-1, as sqdist does (no fused
 * multiply-add: ISO C mode keeps contraction off), so every clone gives the same bits;
 * the lowest index wins ties.  Always inlined, so each estep clone gets its own copy.
 */
typedef double km_v4 __attribute__((vector_size(32)));

#define KM_NEAREST(KP)                                                                             \
    static inline __attribute__((always_inline)) uint32_t nearest_##KP(                         \
        const double *x, const double *ct, size_t d, int k, double *bd_out)                      \
    {                                                                                              \
        km_v4 acc[KP / 4];                                                                         \
        memset(acc, 0, sizeof acc);                                                                \
        for (size_t q = 0; q < d; q++) {                                                           \
            const double *row = ct + q * KP;                                                       \
            km_v4 xq = {x[q], x[q], x[q], x[q]};                                                   \
            for (int v = 0; v < KP / 4; v++) {                                                     \
                km_v4 c, t;                                                                        \
                memcpy(&c, row + 4 * v, sizeof c);                                                 \
                t = xq - c;                                                                        \
                acc[v] += t * t;                                                                   \
            }                                                                                      \
        }                                                                                          \
        double dist[KP];                                                                           \
        memcpy(dist, acc, sizeof dist);                                                            \
        double bd = dist[0];                                                                       \
        uint32_t bc = 0;                                                                           \
        for (int c = 1; c < k; c++)                                                                \
            if (dist[c] < bd) {                                                                    \
                bd = dist[c];                                                                      \
                bc = (uint32_t)c;                                                                  \
            }                                                                                      \
        *bd_out = bd;                                                                              \
        return bc;                                                                                 \
    }
KM_NEAREST(4)
KM_NEAREST(8)
KM_NEAREST(16)

typedef struct km_job {
    km_shared *s;
    int t;
} km_job;

__attribute__((target_clones("avx512f", "avx2", "default"))) static void *estep(void *arg)
{
    km_job *j = arg;
    km_shared *s = j->s;
    size_t d = s->d;
    int k = s->k;
    for (size_t b = (size_t)j->t; b < s->nblocks; b += (size_t)s->threads) {
        double *sum = s->bsum + b * (size_t)k * d, *cnt = s->bcnt + b * (size_t)k;
        memset(sum, 0, (size_t)k * d * sizeof *sum);
        memset(cnt, 0, (size_t)k * sizeof *cnt);
        double inert = 0.0;
        size_t changed = 0;
        size_t end = (b + 1) * KM_BLOCK < s->n ? (b + 1) * KM_BLOCK : s->n;
        for (size_t i = b * KM_BLOCK; i < end; i++) {
            const double *x = s->X + i * d;
            double bd;
            uint32_t bc = 0;
            if (s->kp == 4) {
                bc = nearest_4(x, s->ct, d, k, &bd);
            } else if (s->kp == 8) {
                bc = nearest_8(x, s->ct, d, k, &bd);
            } else if (s->kp == 16) {
                bc = nearest_16(x, s->ct, d, k, &bd);
            } else {
                bd = sqdist(x, s->centers, d);
                for (int c = 1; c < k; c++) {
                    double dd = sqdist(x, s->centers + (size_t)c * d, d);
                    if (dd < bd) {
                        bd = dd;
                        bc = (uint32_t)c;
                    }
                }
            }
            changed += s->assign[i] != bc;
            s->assign[i] = bc;
            s->dmin[i] = bd;
            inert += bd;
            double *sc = sum + (size_t)bc * d;
            for (size_t q = 0; q < d; q++)
                sc[q] += x[q];
            cnt[bc] += 1.0;
        }
        s->binert[b] = inert;
        s->bchanged[b] = changed;
    }
    return NULL;
}

static void run_estep(km_shared *s)
{
    if (s->kp)
        for (int c = 0; c < s->k; c++)
            for (size_t q = 0; q < s->d; q++)
                s->ct[q * (size_t)s->kp + (size_t)c] = s->centers[(size_t)c * s->d + q];
    km_job jobs[KM_MAXTHREADS];
    pthread_t th[KM_MAXTHREADS];
    int ok[KM_MAXTHREADS] = {0};
    for (int t = 0; t < s->threads; t++) {
        jobs[t] = (km_job){s, t};
        if (t > 0)
            ok[t] = pthread_create(&th[t], NULL, estep, &jobs[t]) == 0;
    }
    estep(&jobs[0]);
    for (int t = 1; t < s->threads; t++) {
        if (ok[t])
            pthread_join(th[t], NULL);
        else
            estep(&jobs[t]);
    }
}

int kmeans_lloyd(const double *X, size_t n, size_t d, int k, double *centers, int max_iter,
                 double tol, int threads, uint32_t *assign, double *inertia)
{
    km_shared s = {X, n, d, k, centers, NULL, 0, assign, NULL, NULL, NULL, NULL, NULL, 0, 0};
    s.nblocks = (n + KM_BLOCK - 1) / KM_BLOCK;
    s.threads = threads < 1 ? 1 : threads > KM_MAXTHREADS ? KM_MAXTHREADS : threads;
    if ((size_t)s.threads > s.nblocks)
        s.threads = (int)(s.nblocks ? s.nblocks : 1);
    size_t kd = (size_t)k * d;
    s.dmin = mem_alloc_array(n, sizeof(double));
    s.bsum = mem_alloc_array(s.nblocks * kd, sizeof(double));
    s.bcnt = mem_alloc_array(s.nblocks * (size_t)k, sizeof(double));
    s.binert = mem_alloc_array(s.nblocks, sizeof(double));
    s.bchanged = mem_alloc_array(s.nblocks, sizeof(size_t));
    double *sum = mem_alloc_array(kd, sizeof(double)), *cnt = mem_alloc_array((size_t)k, sizeof(double));
    double *old = mem_alloc_array(kd, sizeof(double));
    int iters = -1;
    s.kp = k <= 4 ? 4 : k <= 8 ? 8 : k <= 16 ? 16 : 0;
    if (s.kp && !(s.ct = mem_calloc(d * (size_t)s.kp, sizeof(double))))
        goto out;
    if (!s.dmin || !s.bsum || !s.bcnt || !s.binert || !s.bchanged || !sum || !cnt || !old)
        goto out;
    /* tol is relative to the data's mean per-feature variance (scikit-learn's rule). */
    double var = 0.0;
    for (size_t q = 0; q < d; q++) {
        double m = 0.0, m2 = 0.0;
        for (size_t i = 0; i < n; i++)
            m += X[i * d + q];
        m /= (double)n;
        for (size_t i = 0; i < n; i++)
            m2 += (X[i * d + q] - m) * (X[i * d + q] - m);
        var += m2 / (double)n;
    }
    double tol_abs = tol >= 0 ? tol * var / (double)d : -1.0;
    for (size_t i = 0; i < n; i++)
        assign[i] = UINT32_MAX;
    iters = 0;
    for (;;) {
        run_estep(&s);
        size_t changed = 0;
        double inert = 0.0;
        memset(sum, 0, kd * sizeof *sum);
        memset(cnt, 0, (size_t)k * sizeof *cnt);
        for (size_t b = 0; b < s.nblocks; b++) {
            changed += s.bchanged[b];
            inert += s.binert[b];
            const double *bs = s.bsum + b * kd, *bc = s.bcnt + b * (size_t)k;
            for (size_t q = 0; q < kd; q++)
                sum[q] += bs[q];
            for (int c = 0; c < k; c++)
                cnt[c] += bc[c];
        }
        *inertia = inert;
        if (changed == 0 || iters >= max_iter)
            break;
        /* M step. */
        memcpy(old, centers, kd * sizeof *old);
        for (int c = 0; c < k; c++) {
            double *cc = centers + (size_t)c * d;
            if (cnt[c] > 0) {
                for (size_t q = 0; q < d; q++)
                    cc[q] = sum[(size_t)c * d + q] / cnt[c];
                continue;
            }
            size_t far = 0;
            for (size_t i = 1; i < n; i++)
                if (s.dmin[i] > s.dmin[far])
                    far = i;
            memcpy(cc, X + far * d, d * sizeof *cc);
            s.dmin[far] = 0.0;
        }
        iters++;
        double shift = 0.0;
        for (size_t q = 0; q < kd; q++)
            shift += (centers[q] - old[q]) * (centers[q] - old[q]);
        if (tol_abs >= 0 && shift <= tol_abs) {
            run_estep(&s); /* labels and inertia for the final centres */
            inert = 0.0;
            for (size_t b = 0; b < s.nblocks; b++)
                inert += s.binert[b];
            *inertia = inert;
            break;
        }
    }
out:
    mem_free(s.dmin), mem_free(s.bsum), mem_free(s.bcnt), mem_free(s.binert);
    mem_free(s.bchanged), mem_free(sum), mem_free(cnt), mem_free(old), mem_free(s.ct);
    return iters;
}

int kmeans_fit(const double *X, size_t n, size_t d, const kmeans_opts *o, double *centers,
               uint32_t *assign, double *inertia, patron_error *err)
{
    int k = o->k;
    if (k < 1 || (size_t)k > n)
        return err_set(err, PATRON_EINPUT, "k-means: k = %d needs at least %d rows (have %zu)",
                       k, k, n);
    size_t kd = (size_t)k * d;
    double *c = mem_alloc_array(kd, sizeof *c);
    uint32_t *a = mem_alloc_array(n, sizeof *a);
    if (!c || !a) {
        mem_free(c), mem_free(a);
        return err_set(err, PATRON_ENOMEM, "out of memory");
    }
    double best = DBL_MAX;
    int restarts = o->restarts < 1 ? 1 : o->restarts;
    int rc = PATRON_OK;
    for (int r = 0; r < restarts; r++) {
        uint64_t st = o->seed + (uint64_t)r * 0x9E3779B97F4A7C15ULL;
        double in;
        if (kmeans_seed(X, n, d, k, rng_splitmix64(&st), c) != 0 ||
            kmeans_lloyd(X, n, d, k, c, o->max_iter, o->tol, o->threads, a, &in) < 0) {
            rc = err_set(err, PATRON_ENOMEM, "out of memory");
            break;
        }
        if (in < best) {
            best = in;
            memcpy(centers, c, kd * sizeof *c);
            memcpy(assign, a, n * sizeof *a);
        }
    }
    mem_free(c), mem_free(a);
    if (rc == PATRON_OK)
        *inertia = best;
    return rc;
}

double kmeans_silhouette(const double *X, size_t n, size_t d, const uint32_t *assign, int k,
                         size_t sample, uint64_t seed)
{
    size_t m = n < sample ? n : sample;
    size_t *idx = mem_alloc_array(m ? m : 1, sizeof *idx);
    double *acc = mem_alloc_array((size_t)k, sizeof *acc), *cnt = mem_alloc_array((size_t)k, sizeof *cnt);
    if (!idx || !acc || !cnt) {
        mem_free(idx), mem_free(acc), mem_free(cnt);
        return NAN;
    }
    if (m == n) {
        for (size_t i = 0; i < n; i++)
            idx[i] = i;
    } else {
        /* Selection sampling (Knuth's algorithm S): m rows in index order. */
        rng g;
        rng_seed(&g, seed);
        size_t chosen = 0;
        for (size_t i = 0; i < n && chosen < m; i++)
            if ((double)(n - i) * rng_double(&g) < (double)(m - chosen))
                idx[chosen++] = i;
        m = chosen;
    }
    double total = 0.0;
    for (size_t p = 0; p < m; p++) {
        memset(acc, 0, (size_t)k * sizeof *acc);
        memset(cnt, 0, (size_t)k * sizeof *cnt);
        const double *x = X + idx[p] * d;
        for (size_t q = 0; q < m; q++) {
            if (q == p)
                continue;
            uint32_t c = assign[idx[q]];
            acc[c] += sqrt(sqdist(x, X + idx[q] * d, d));
            cnt[c] += 1.0;
        }
        uint32_t own = assign[idx[p]];
        if (cnt[own] == 0)
            continue; /* a singleton's silhouette is 0 */
        double a = acc[own] / cnt[own], b = DBL_MAX;
        for (int c = 0; c < k; c++)
            if ((uint32_t)c != own && cnt[c] > 0 && acc[c] / cnt[c] < b)
                b = acc[c] / cnt[c];
        if (b == DBL_MAX)
            continue;
        double mx = a > b ? a : b;
        total += mx > 0 ? (b - a) / mx : 0.0;
    }
    mem_free(idx), mem_free(acc), mem_free(cnt);
    return m ? total / (double)m : NAN;
}
