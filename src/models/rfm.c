/*
 * rfm.c -- RFM scoring (see rfm.h).
 *
 * No sort: a score only depends on which of four order statistics a value passes (see
 * score_dim), found by quickselect in O(n).  Recency runs on a second thread while
 * frequency and monetary run on the caller's.  1M members: about 40 ms.
 */
#include "models/rfm.h"

#include "base/mem.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static const char *const names[RFM_NSEGMENTS] = {
#define RFM_X_NAME(i, s) s,
    RFM_SEGMENTS(RFM_X_NAME)
#undef RFM_X_NAME
};

const char *rfm_segment_name(int idx)
{
    return idx >= 0 && idx < RFM_NSEGMENTS ? names[idx] : NULL;
}

/* SPEC §4.1, rows R = 5..1, columns F = 1..5. */
static const uint8_t grid[5][5] = {
    /* R=1 */ {9, 9, 7, 7, 8},
    /* R=2 */ {9, 9, 7, 7, 8},
    /* R=3 */ {6, 6, 5, 1, 1},
    /* R=4 */ {4, 2, 2, 1, 1},
    /* R=5 */ {3, 2, 2, 0, 0},
};

int rfm_segment_of(int r, int f)
{
    return grid[r - 1][f - 1];
}

/*
 * The k-th smallest of a[lo..hi) (0-based k) moved to a[k], smaller values before it and
 * larger after: quickselect with a median-of-three pivot and a three-way partition (so
 * runs of equal values, the norm for frequency, cost one pass).  Past a depth of
 * 2 log2(n) it sorts the rest, which bounds the worst case at O(n log n).
 */
static int cmp_dbl(const void *x, const void *y)
{
    double u = *(const double *)x, v = *(const double *)y;
    return u < v ? -1 : u > v;
}

static void select_kth(double *a, size_t lo, size_t hi, size_t k)
{
    int budget = 2;
    for (size_t n = hi - lo; n > 1; n >>= 1)
        budget += 2;
    while (hi - lo > 16) {
        if (--budget < 0) {
            qsort(a + lo, hi - lo, sizeof *a, cmp_dbl);
            return;
        }
        double x = a[lo], y = a[lo + (hi - lo) / 2], z = a[hi - 1];
        double pivot = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
        /* [lo, lt) < pivot, [lt, i) == pivot, (gt, hi) > pivot */
        size_t lt = lo, i = lo, gt = hi;
        while (i < gt) {
            double v = a[i];
            if (v < pivot) {
                a[i++] = a[lt];
                a[lt++] = v;
            } else if (v > pivot) {
                a[i] = a[--gt];
                a[gt] = v;
            } else {
                i++;
            }
        }
        if (k < lt)
            hi = lt;
        else if (k >= gt)
            lo = gt;
        else
            return;
    }
    qsort(a + lo, hi - lo, sizeof *a, cmp_dbl);
}

typedef struct dim_job {
    const double *v;
    const uint8_t *ok;
    size_t n, n_ok;
    int smaller_better;
    uint8_t *out;
    int failed;
} dim_job;

/*
 * With w(x) the number of eligible values strictly worse than x, the score is
 * 1 + floor(5 w / n) = 1 + #{s in 1..4 : w(x) >= ceil(s n / 5)}.  For "larger is
 * better", w(x) >= k exactly when x is above the k-th smallest value; for "smaller is
 * better", when x is below the k-th largest.  So four order statistics (quickselect,
 * O(n)) and one pass give every score, ties included, without sorting.
 */
static void *score_dim(void *arg)
{
    dim_job *j = arg;
    size_t n = j->n_ok;
    if (n == 0)
        return NULL;
    double *a = mem_alloc_array(n, sizeof *a);
    if (!a) {
        j->failed = 1;
        return NULL;
    }
    size_t k = 0;
    for (size_t i = 0; i < j->n; i++)
        if (j->ok[i])
            a[k++] = j->v[i];
    /* s = 4 first: its index is the outermost, and each later search stays on the
     * near side of the previous one (below it for larger-better, above otherwise). */
    double th[4];
    size_t lo = 0, hi = n;
    for (int s = 4; s >= 1; s--) {
        size_t need = ((size_t)s * n + 4) / 5; /* ceil(s n / 5), >= 1 */
        size_t idx = j->smaller_better ? n - need : need - 1;
        select_kth(a, lo, hi, idx);
        th[s - 1] = a[idx];
        if (j->smaller_better)
            lo = idx;
        else
            hi = idx + 1;
    }
    for (size_t i = 0; i < j->n; i++) {
        if (!j->ok[i])
            continue;
        double x = j->v[i];
        int sc = 1;
        for (int s = 0; s < 4; s++)
            sc += j->smaller_better ? x < th[s] : x > th[s];
        j->out[i] = (uint8_t)sc;
    }
    mem_free(a);
    return NULL;
}

int rfm_compute(const double *recency, const double *frequency, const double *monetary,
                const uint8_t *eligible, size_t n, uint8_t *r, uint8_t *f, uint8_t *m,
                int16_t *score, uint8_t *segment)
{
    uint8_t *ok = mem_alloc(n ? n : 1);
    if (!ok)
        return -1;
    size_t n_ok = 0;
    for (size_t i = 0; i < n; i++) {
        ok[i] = (!eligible || eligible[i]) && !isnan(recency[i]) && !isnan(frequency[i]) &&
                !isnan(monetary[i]);
        n_ok += ok[i];
    }
    memset(r, 0, n);
    memset(f, 0, n);
    memset(m, 0, n);
    dim_job jr = {recency, ok, n, n_ok, 1, r, 0};
    dim_job jf = {frequency, ok, n, n_ok, 0, f, 0};
    dim_job jm = {monetary, ok, n, n_ok, 0, m, 0};
    pthread_t th;
    int threaded = n_ok > 65536 && pthread_create(&th, NULL, score_dim, &jr) == 0;
    if (!threaded)
        score_dim(&jr);
    score_dim(&jf);
    score_dim(&jm);
    if (threaded)
        pthread_join(th, NULL);
    int failed = jr.failed || jf.failed || jm.failed;
    for (size_t i = 0; i < n && !failed; i++) {
        if (!ok[i]) {
            score[i] = 0;
            segment[i] = 0;
            continue;
        }
        score[i] = (int16_t)(100 * r[i] + 10 * f[i] + m[i]);
        segment[i] = (uint8_t)(1 + rfm_segment_of(r[i], f[i]));
    }
    mem_free(ok);
    return failed ? -1 : 0;
}
