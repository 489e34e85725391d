/*
 * test_rfm.c -- RFM (src/models/rfm.c): the SPEC §4.1 score formula and its tie rule
 * against a direct O(n^2) count on data with many ties, the segment grid, eligibility.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "ingest/rng.h"
#include "models/rfm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void test_small(void **state)
{
    (void)state;
    double rec[5] = {5, 1, 1, 30, 100}, fr[5] = {1, 2, 2, 3, 10}, mon[5] = {7, 7, 7, 7, 7};
    uint8_t r[5], f[5], m[5], seg[5];
    int16_t sc[5];
    assert_int_equal(rfm_compute(rec, fr, mon, NULL, 5, r, f, m, sc, seg), 0);
    const uint8_t wr[5] = {3, 4, 4, 2, 1}, wf[5] = {1, 2, 2, 4, 5};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(r[i], wr[i]);
        assert_int_equal(f[i], wf[i]);
        assert_int_equal(m[i], 1); /* all equal: nobody is strictly worse */
        assert_int_equal(sc[i], 100 * wr[i] + 10 * wf[i] + 1);
    }
    /* Member 4: R 1, F 5 -> "Can't Lose"; member 1: R 4, F 2 -> "Potential Loyalists". */
    assert_string_equal(rfm_segment_name(seg[4] - 1), "Can't Lose");
    assert_string_equal(rfm_segment_name(seg[1] - 1), "Potential Loyalists");
}

static void test_grid(void **state)
{
    (void)state;
    const char *want[5][5] = {
        {"New Customers", "Potential Loyalists", "Potential Loyalists", "Champions", "Champions"},
        {"Promising", "Potential Loyalists", "Potential Loyalists", "Loyal Customers", "Loyal Customers"},
        {"About to Sleep", "About to Sleep", "Need Attention", "Loyal Customers", "Loyal Customers"},
        {"Hibernating", "Hibernating", "At Risk", "At Risk", "Can't Lose"},
        {"Hibernating", "Hibernating", "At Risk", "At Risk", "Can't Lose"},
    };
    for (int r = 5; r >= 1; r--)
        for (int f = 1; f <= 5; f++)
            assert_string_equal(rfm_segment_name(rfm_segment_of(r, f)), want[5 - r][f - 1]);
    assert_null(rfm_segment_name(10));
}

static int brute(const double *v, const uint8_t *ok, size_t n, size_t i, int smaller_better)
{
    size_t worse = 0, cnt = 0;
    for (size_t j = 0; j < n; j++) {
        if (!ok[j])
            continue;
        cnt++;
        if (smaller_better ? v[j] > v[i] : v[j] < v[i])
            worse++;
    }
    size_t s = 1 + 5 * worse / cnt;
    return (int)(s > 5 ? 5 : s);
}

static void test_random_ties(void **state)
{
    (void)state;
    enum { N = 3000 };
    double *rec = malloc(N * sizeof *rec), *fr = malloc(N * sizeof *fr), *mon = malloc(N * sizeof *mon);
    uint8_t *ok = malloc(N), *r = malloc(N), *f = malloc(N), *m = malloc(N), *seg = malloc(N);
    int16_t *sc = malloc(N * sizeof *sc);
    rng g;
    rng_seed(&g, 42);
    for (size_t i = 0; i < N; i++) {
        rec[i] = (double)rng_below(&g, 400) / 4.0; /* many ties */
        fr[i] = 1 + (double)rng_poisson(&g, 2.0);
        mon[i] = rng_below(&g, 10) == 0 ? -(double)rng_below(&g, 50) : (double)rng_below(&g, 500);
        ok[i] = rng_below(&g, 10) != 0;
    }
    mon[7] = -0.0;
    mon[8] = 0.0;
    ok[7] = ok[8] = 1;
    rec[9] = NAN; /* a NaN value makes the member ineligible */
    assert_int_equal(rfm_compute(rec, fr, mon, ok, N, r, f, m, sc, seg), 0);
    ok[9] = 0;
    for (size_t i = 0; i < N; i++) {
        if (!ok[i]) {
            assert_int_equal(r[i] | f[i] | m[i] | seg[i], 0);
            assert_int_equal(sc[i], 0);
            continue;
        }
        assert_int_equal(r[i], brute(rec, ok, N, i, 1));
        assert_int_equal(f[i], brute(fr, ok, N, i, 0));
        assert_int_equal(m[i], brute(mon, ok, N, i, 0));
        assert_int_equal(seg[i], 1 + rfm_segment_of(r[i], f[i]));
    }
    assert_int_equal(m[7], m[8]);
    free(rec), free(fr), free(mon), free(ok), free(r), free(f), free(m), free(seg), free(sc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small),
        cmocka_unit_test(test_grid),
        cmocka_unit_test(test_random_ties),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
