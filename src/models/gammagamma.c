/*
 * gammagamma.c -- Gamma-Gamma spend model: likelihood, fit, conditional expectation.
 *
 * Per customer (FHL 2005, appendix):
 *   ln L = lnGamma(px+q) - lnGamma(px) - lnGamma(q) + q ln gamma + (px-1) ln m_x
 *          + px ln x - (px+q) ln(gamma + x m_x)
 * (no x-only constants, the form CLVTools and lifetimes report).
 */
#include "models/gammagamma.h"

#include "base/err.h"
#include "models/mle.h"

#include <math.h>

double gg_loglik1(const gg_params *p, double x, double m_x)
{
    double px = p->p * x;
    return lgamma(px + p->q) - lgamma(px) - lgamma(p->q) + p->q * log(p->gamma) +
           (px - 1.0) * log(m_x) + px * log(x) - (px + p->q) * log(p->gamma + x * m_x);
}

double gg_loglik(const gg_params *p, const double *x, const double *m_x, const double *w,
                 size_t n, size_t *used)
{
    double s = 0.0;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!(x[i] > 0.0 && m_x[i] > 0.0))
            continue;
        double wi = w ? w[i] : 1.0;
        if (wi == 0.0)
            continue;
        s += wi * gg_loglik1(p, x[i], m_x[i]);
        k++;
    }
    if (used)
        *used = k;
    return s;
}

typedef struct gg_ctx {
    const double *x, *m, *w;
    size_t n;
} gg_ctx;

static double negll(const double *theta, void *vctx)
{
    const gg_ctx *c = vctx;
    gg_params p = {exp(theta[0]), exp(theta[1]), exp(theta[2])};
    return -gg_loglik(&p, c->x, c->m, c->w, c->n, NULL);
}

int gg_fit(const double *x, const double *m_x, const double *w, size_t n, gg_params *out,
           double *ll, patron_error *err)
{
    size_t used = 0;
    double mean = 0.0;
    for (size_t i = 0; i < n; i++)
        if (x[i] > 0.0 && m_x[i] > 0.0 && isfinite(m_x[i]) && (!w || w[i] > 0.0)) {
            used++;
            mean += m_x[i];
        }
    if (used < 2)
        return err_set(err, PATRON_EINPUT,
                       "gamma-gamma: %zu customers with repeat purchases and positive spend; "
                       "at least 2 are needed", used);
    mean /= (double)used;
    gg_ctx c = {x, m_x, w, n};
    /* Start: p = 1, q = 2 and gamma such that p gamma / (q - 1) is the mean spend. */
    double theta[3] = {0.0, log(2.0), log(mean)};
    double fmin;
    int rc = mle_minimize(negll, &c, 3, theta, &fmin, "gamma-gamma fit", err);
    if (rc != PATRON_OK)
        return rc;
    out->p = exp(theta[0]);
    out->q = exp(theta[1]);
    out->gamma = exp(theta[2]);
    if (ll)
        *ll = -fmin;
    return PATRON_OK;
}

/* (q-1)/(px+q-1) * p gamma/(q-1) + px/(px+q-1) * m_x = p (gamma + x m_x) / (px + q - 1). */
double gg_expected_spend(const gg_params *p, double x, double m_x)
{
    if (p->q <= 1.0)
        return NAN;
    if (!(x > 0.0))
        return p->p * p->gamma / (p->q - 1.0);
    return p->p * (p->gamma + x * m_x) / (p->p * x + p->q - 1.0);
}
