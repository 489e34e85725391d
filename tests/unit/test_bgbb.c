/*
 * test_bgbb.c -- BG/BB (src/models/bgbb.c) on the donations data of Fader, Hardie &
 * Shang (2010): the published estimates and log-likelihood (BTYD vignette), P(alive in
 * 2002) of FHS Table 6, and the BTYD vignette's expectations.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "models/bgbb.h"
#include "models/summary.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static void near(double got, double want, double tol, const char *what)
{
    if (!(fabs(got - want) <= tol))
        fail_msg("%s = %.10g, want %.10g (tol %g)", what, got, want, tol);
}

static void test_donations(void **state)
{
    (void)state;
    const char *dir = getenv("PATRON_SHARED_DATA");
    char path[512];
    snprintf(path, sizeof path, "%s/donations_bgbb/donations_rf_matrix_btyd.csv",
             dir ? dir : "../shared/data");
    summary s;
    patron_error err = {0};
    if (summary_read(path, SUMMARY_BGBB, "n=n_cal,count=custs", &s, &err) != 0)
        fail_msg("%s", err.message);
    assert_int_equal(s.n, 22);
    bgbb_data d = {s.col[0], s.col[1], s.col[2], s.col[3], s.n};
    bgbb_params p;
    double ll;
    if (bgbb_fit(&d, &p, &ll, &err) != 0)
        fail_msg("%s", err.message);
    near(p.alpha, 1.204, 1.204e-3, "alpha");
    near(p.beta, 0.750, 0.75e-3, "beta");
    near(p.gamma, 0.657, 0.657e-3, "gamma");
    near(p.delta, 2.783, 2.783e-3, "delta");
    near(ll, -33225.58, 5e-3, "loglik");
    /* FHS 2010 Table 6 (two decimals): P(alive in 2002) = one opportunity after 2001. */
    near(bgbb_p_alive(&p, 0, 0, 6, 1), 0.11, 0.005, "P(alive | 0, 0)");
    near(bgbb_p_alive(&p, 2, 4, 6, 1), 0.59, 0.005, "P(alive | 2, 4)");
    near(bgbb_p_alive(&p, 6, 6, 6, 1), 0.93, 0.005, "P(alive | 6, 6)");
    /* BTYD vignette at its estimates. */
    bgbb_params b = {1.203528, 0.7497260, 0.6567808, 2.783796};
    near(bgbb_expected(&b, 10), 3.179805, 1e-5, "E[X(10)]");
    near(bgbb_conditional_expected(&b, 10, 0, 0, 6), 0.1302169, 1e-6, "E[X(6,16) | A]");
    near(bgbb_conditional_expected(&b, 10, 4, 5, 6), 3.627858, 1e-5, "E[X(6,16) | B]");
    summary_release(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_donations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
