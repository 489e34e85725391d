/*
 * mle.c -- NLopt driver for the models' maximum likelihood fits (see mle.h).
 */
#include "models/mle.h"

#include "base/err.h"

#include <math.h>
#include <nlopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MLE_MAXN 8

typedef struct mle_call {
    mle_objective f;
    void *ctx;
    long evals;
} mle_call;

/* NLopt's objective: a non-finite value (a parameter pushed to an extreme) becomes a
 * large finite penalty, so the search walks back instead of NLopt stopping. */
static double nlopt_fn(unsigned n, const double *x, double *grad, void *data)
{
    mle_call *c = data;
    c->evals++;
    double v = c->f(x, grad, c->ctx);
    if (!isfinite(v)) {
        if (grad)
            for (unsigned i = 0; i < n; i++)
                grad[i] = 0.0;
        return 1e300;
    }
    return v;
}

static int run(nlopt_algorithm alg, mle_call *c, unsigned n, double *theta, double *fmin,
               double step, int maxeval)
{
    nlopt_opt o = nlopt_create(alg, n);
    if (!o)
        return -1;
    double lb[MLE_MAXN], ub[MLE_MAXN], dx[MLE_MAXN];
    for (unsigned i = 0; i < n; i++) {
        lb[i] = -30.0;
        ub[i] = 30.0;
        dx[i] = step;
        if (theta[i] < lb[i])
            theta[i] = lb[i];
        if (theta[i] > ub[i])
            theta[i] = ub[i];
    }
    nlopt_set_lower_bounds(o, lb);
    nlopt_set_upper_bounds(o, ub);
    nlopt_set_initial_step(o, dx);
    nlopt_set_min_objective(o, nlopt_fn, c);
    nlopt_set_ftol_rel(o, 1e-15);
    nlopt_set_xtol_rel(o, 1e-12);
    nlopt_set_maxeval(o, maxeval);
    nlopt_result r = nlopt_optimize(o, theta, fmin);
    nlopt_destroy(o);
    return r < 0 && r != NLOPT_ROUNDOFF_LIMITED ? -1 : 0;
}

int mle_minimize(mle_objective f, void *ctx, unsigned n, int has_grad, double *theta,
                 double *fmin, const char *what, patron_error *err)
{
    PATRON_ASSERT(n > 0 && n <= MLE_MAXN);
    mle_call c = {f, ctx, 0};
    double best = HUGE_VAL, cur, t[MLE_MAXN];
    if (has_grad) {
        if (run(NLOPT_LD_LBFGS, &c, n, theta, &best, 0.5, 2000) != 0)
            return err_set(err, PATRON_EINTERNAL, "%s: the optimizer failed", what);
    } else {
        if (run(NLOPT_LN_NELDERMEAD, &c, n, theta, &best, 0.5, 20000) != 0)
            return err_set(err, PATRON_EINTERNAL, "%s: the optimizer failed", what);
        for (int restart = 0; restart < 8; restart++) {
            memcpy(t, theta, n * sizeof *t);
            if (run(NLOPT_LN_NELDERMEAD, &c, n, t, &cur, 0.05, 20000) != 0)
                break;
            int improved = cur < best - 1e-10 * (1.0 + fabs(best));
            if (cur < best) {
                best = cur;
                memcpy(theta, t, n * sizeof *t);
            }
            if (!improved)
                break;
        }
    }
    memcpy(t, theta, n * sizeof *t);
    if (run(NLOPT_LN_BOBYQA, &c, n, t, &cur, has_grad ? 1e-3 : 0.01, has_grad ? 300 : 20000) ==
            0 &&
        cur < best) {
        best = cur;
        memcpy(theta, t, n * sizeof *t);
    }
    if (!isfinite(best) || best >= 1e300)
        return err_set(err, PATRON_EINTERNAL,
                       "%s: the likelihood is not finite at any parameter tried", what);
    *fmin = best;
    if (getenv("PATRON_MLE_TRACE"))
        fprintf(stderr, "%s: %ld evaluations, minimum %.10g\n", what, c.evals, best);
    return PATRON_OK;
}
