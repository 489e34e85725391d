/*
 * rfm.c -- RFM scoring (see rfm.h).
 *
 * Each dimension is sorted once: values become order-preserving 64-bit keys (IEEE bits
 * with the sign handled), paired with the member index and sorted by an LSD radix sort
 * of 8-bit digits that skips a digit when every key shares it (frequency and most
 * monetary values need 2-4 of the 8 passes).  In ascending order the members strictly
 * below a value are the position of its tie group's first element; for recency, where
 * smaller is better, the strictly worse ones are those after its tie group's last.
 * Recency is sorted on one thread while frequency and monetary are on the caller's.
 */
#include "models/rfm.h"

#include "base/mem.h"

#include <math.h>
#include <pthread.h>
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

static uint64_t key_of(double v)
{
    v += 0.0; /* -0.0 -> +0.0 */
    uint64_t b;
    memcpy(&b, &v, sizeof b);
    return (b >> 63) ? ~b : b | 0x8000000000000000ULL;
}

typedef struct kv {
    uint64_t k;
    uint32_t i;
} kv;

/* Sorts a[0..n) by key (stable LSD radix); tmp has n slots.  Returns the sorted buffer. */
static kv *radix_sort(kv *a, kv *tmp, size_t n)
{
    size_t cnt[8][256];
    memset(cnt, 0, sizeof cnt);
    for (size_t i = 0; i < n; i++) {
        uint64_t k = a[i].k;
        for (int d = 0; d < 8; d++)
            cnt[d][(k >> (8 * d)) & 0xff]++;
    }
    for (int d = 0; d < 8; d++) {
        size_t *c = cnt[d];
        if (n && c[(a[0].k >> (8 * d)) & 0xff] == n)
            continue; /* every key has the same digit here */
        size_t sum = 0;
        for (int b = 0; b < 256; b++) {
            size_t t = c[b];
            c[b] = sum;
            sum += t;
        }
        for (size_t i = 0; i < n; i++)
            tmp[c[(a[i].k >> (8 * d)) & 0xff]++] = a[i];
        kv *s = a;
        a = tmp;
        tmp = s;
    }
    return a;
}

typedef struct dim_job {
    const double *v;
    const uint8_t *ok;
    size_t n, n_ok;
    int smaller_better;
    uint8_t *out;
    int failed;
} dim_job;

static void *score_dim(void *arg)
{
    dim_job *j = arg;
    kv *a = mem_alloc_array(j->n_ok ? j->n_ok : 1, sizeof *a);
    kv *tmp = mem_alloc_array(j->n_ok ? j->n_ok : 1, sizeof *tmp);
    if (!a || !tmp) {
        mem_free(a);
        mem_free(tmp);
        j->failed = 1;
        return NULL;
    }
    size_t k = 0;
    for (size_t i = 0; i < j->n; i++)
        if (j->ok[i])
            a[k++] = (kv){key_of(j->v[i]), (uint32_t)i};
    kv *s = radix_sort(a, tmp, k);
    uint64_t n = k;
    for (size_t g = 0; g < k;) {
        size_t e = g + 1;
        while (e < k && s[e].k == s[g].k)
            e++;
        uint64_t worse = j->smaller_better ? n - e : g;
        uint64_t sc = 1 + 5 * worse / n;
        uint8_t score = (uint8_t)(sc > 5 ? 5 : sc);
        for (size_t t = g; t < e; t++)
            j->out[s[t].i] = score;
        g = e;
    }
    mem_free(a);
    mem_free(tmp);
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
