/*
 * test_rsort.c -- the radix sort against qsort: random records keyed by a signed 64-bit
 * time (negative ones too, and many equal) and an unsigned 32-bit member, of every
 * length around the pass boundaries; equal keys keep their input order (stable), which
 * qsort is made to reproduce by breaking ties on the input position.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/rsort.h"
#include "ingest/rng.h"

#include <stdlib.h>
#include <string.h>

typedef struct rec {
    int64_t ts;
    uint32_t m;
    uint16_t small;
    uint32_t pos; /* input position */
} rec;

static int cmp_rec(const void *a, const void *b)
{
    const rec *x = a, *y = b;
    if (x->ts != y->ts)
        return x->ts < y->ts ? -1 : 1;
    if (x->m != y->m)
        return x->m < y->m ? -1 : 1;
    if (x->small != y->small)
        return x->small < y->small ? -1 : 1;
    return (x->pos > y->pos) - (x->pos < y->pos);
}

static void test_against_qsort(void **state)
{
    (void)state;
    rng r;
    rng_seed(&r, 3);
    static const size_t sizes[] = {0, 1, 2, 3, 17, 255, 256, 257, 1000, 4096, 50000};
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        for (int shape = 0; shape < 4; shape++) {
            size_t n = sizes[si];
            rec *a = calloc(n + 1, sizeof *a), *t = calloc(n + 1, sizeof *t),
                *want = calloc(n + 1, sizeof *want);
            assert_true(a && t && want);
            for (size_t i = 0; i < n; i++) {
                /* shapes: one day of times, times of any sign, all equal, few members */
                int64_t ts = shape == 0   ? 1700000000 + (int64_t)rng_below(&r, 86400)
                             : shape == 1 ? (int64_t)rng_u64(&r)
                             : shape == 2 ? -5
                                          : (int64_t)rng_below(&r, 7) - 3;
                a[i] = (rec){ts, shape == 3 ? (uint32_t)rng_below(&r, 3) : (uint32_t)rng_u64(&r),
                             (uint16_t)rng_below(&r, 4), (uint32_t)i};
            }
            memcpy(want, a, n * sizeof *a);
            qsort(want, n, sizeof *want, cmp_rec);
            static const rsort_key by[3] = {{offsetof(rec, ts), 8, 1},
                                            {offsetof(rec, m), 4, 0},
                                            {offsetof(rec, small), 2, 0}};
            const rec *got = rsort(a, t, n, sizeof *a, by, 3);
            for (size_t i = 0; i < n; i++) {
                assert_true(got[i].ts == want[i].ts);
                assert_int_equal(got[i].m, want[i].m);
                assert_int_equal(got[i].small, want[i].small);
                assert_int_equal(got[i].pos, want[i].pos); /* stable */
            }
            free(a);
            free(t);
            free(want);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_qsort),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
