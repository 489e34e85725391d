/*
 * test_gammagamma.c -- the Gamma-Gamma spend model (src/models/gammagamma.c) on the CDNOW
 * repeat customers: the published estimates (Fader, Hardie & Lee 2005; CLVTools) and
 * Hardie's spreadsheet values of the conditional expected spend (lifetimes' test).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "models/gammagamma.h"
#include "models/summary.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static void near(double got, double want, double tol, const char *what)
{
    if (!(fabs(got - want) <= tol))
        fail_msg("%s = %.10g, want %.10g (tol %g)", what, got, want, tol);
}

static void test_cdnow(void **state)
{
    (void)state;
    const char *dir = getenv("PATRON_SHARED_DATA");
    char path[512];
    snprintf(path, sizeof path, "%s/cdnow/cdnow_cbs_btyd.csv", dir ? dir : "../shared/data");
    summary s;
    patron_error err = {0};
    if (summary_read(path, SUMMARY_BGNBD, "frequency=x,recency=t_x,T=T_cal,monetary_value=m_x",
                     &s, &err) != 0)
        fail_msg("%s", err.message);
    const double *x = s.col[0], *m = s.col[3];
    size_t used;
    gg_params pub = {6.25, 3.74, 15.44};
    near(gg_loglik(&pub, x, m, NULL, s.n, &used), -4055.919232, 1e-4, "ll at rounded params");
    assert_int_equal(used, 946);
    gg_params p;
    double ll;
    if (gg_fit(x, m, NULL, s.n, &p, &ll, &err) != 0)
        fail_msg("%s", err.message);
    near(p.p, 6.24957, 6.25e-3, "p");
    near(p.q, 3.74422, 3.74e-3, "q");
    near(p.gamma, 15.44352, 15.44e-3, "gamma");
    near(ll, -4055.9177, 1e-3, "loglik");
    /* Hardie's spreadsheet via lifetimes (atol 0.1): the first ten customers. */
    const double want[10] = {24.65, 18.91, 35.17, 35.17, 35.17, 71.46, 18.91, 35.17, 27.28, 35.17};
    for (int i = 0; i < 10; i++)
        near(gg_expected_spend(&p, x[i], m[i]), want[i], 0.01, "E[M]");
    summary_release(&s);
}

static void test_too_few(void **state)
{
    (void)state;
    double x[2] = {0, 3}, m[2] = {10, 5};
    gg_params p;
    patron_error err = {0};
    assert_int_equal(gg_fit(x, m, NULL, 2, &p, NULL, &err), PATRON_EINPUT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cdnow),
        cmocka_unit_test(test_too_few),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
