/*
 * bgbb.c -- BG/BB likelihood, fit and predictions (see bgbb.h).
 *
 * FHS 2010, eq. 5:
 *   L(x, t_x, n) = B(a+x, b+n-x)/B(a,b) B(g, d+n)/B(g,d)
 *                + sum_{i=0}^{n-t_x-1} B(a+x, b+t_x-x+i)/B(a,b) B(g+1, d+t_x+i)/B(g,d)
 * (a, b, g, d = alpha, beta, gamma, delta): alive through all n opportunities, or died
 * just after opportunity t_x + i.  Each term is a logarithm, added with log-sum-exp.
 */
#include "models/bgbb.h"

#include "base/err.h"
#include "models/mle.h"
#include "models/special.h"

#include <math.h>

double bgbb_loglik1(const bgbb_params *p, double x, double t_x, double n)
{
    double lab = special_lbeta(p->alpha, p->beta), lgd = special_lbeta(p->gamma, p->delta);
    double l = special_lbeta(p->alpha + x, p->beta + n - x) - lab +
               special_lbeta(p->gamma, p->delta + n) - lgd;
    long k = (long)(n - t_x);
    for (long i = 0; i < k; i++) {
        double di = (double)i;
        l = special_logaddexp(l, special_lbeta(p->alpha + x, p->beta + t_x - x + di) - lab +
                                     special_lbeta(p->gamma + 1.0, p->delta + t_x + di) - lgd);
    }
    return l;
}

double bgbb_loglik(const bgbb_params *p, const bgbb_data *d)
{
    double s = 0.0;
    for (size_t i = 0; i < d->rows; i++) {
        double w = d->count ? d->count[i] : 1.0;
        if (w != 0.0)
            s += w * bgbb_loglik1(p, d->x[i], d->t_x[i], d->n[i]);
    }
    return s;
}

static double negll(const double *theta, double *grad, void *ctx)
{
    (void)grad; /* derivative-free: a handful of cells */
    bgbb_params p = {exp(theta[0]), exp(theta[1]), exp(theta[2]), exp(theta[3])};
    return -bgbb_loglik(&p, ctx);
}

int bgbb_fit(const bgbb_data *d, bgbb_params *out, double *ll, patron_error *err)
{
    double total = 0.0;
    for (size_t i = 0; i < d->rows; i++) {
        double x = d->x[i], tx = d->t_x[i], n = d->n[i], w = d->count ? d->count[i] : 1.0;
        if (!(x >= 0 && x <= tx && tx <= n && n >= 1 && w >= 0 && x == floor(x) &&
              tx == floor(tx) && n == floor(n) && n < 1e6 && isfinite(w)) ||
            (x == 0 && tx != 0))
            return err_set(err, PATRON_EINPUT,
                           "bg/bb: row %zu: x=%g, t_x=%g, n=%g, count=%g is not a valid cell", i + 1,
                           x, tx, n, w);
        total += w;
    }
    if (total <= 0.0)
        return err_set(err, PATRON_EINPUT, "bg/bb: no customers to fit");
    double theta[4] = {0.0, 0.0, 0.0, 0.0};
    double fmin;
    int rc = mle_minimize(negll, (void *)d, 4, 0, theta, &fmin, "bg/bb fit", err);
    if (rc != PATRON_OK)
        return rc;
    out->alpha = exp(theta[0]);
    out->beta = exp(theta[1]);
    out->gamma = exp(theta[2]);
    out->delta = exp(theta[3]);
    if (ll)
        *ll = -fmin;
    return PATRON_OK;
}

/* Alive through opportunity n + m having made x of n: the first term of L with the
 * survival factor carried m more opportunities, over L (FHS 2010, eq. 11). */
double bgbb_p_alive(const bgbb_params *p, double x, double t_x, double n, double m)
{
    double l = special_lbeta(p->alpha + x, p->beta + n - x) - special_lbeta(p->alpha, p->beta) +
               special_lbeta(p->gamma, p->delta + n + m) - special_lbeta(p->gamma, p->delta);
    return exp(l - bgbb_loglik1(p, x, t_x, n));
}

/* FHS 2010, eq. 7: a/(a+b) d/(g-1) [1 - Gamma(g+d) Gamma(1+d+n) / (Gamma(g+d+n) Gamma(1+d))]. */
double bgbb_expected(const bgbb_params *p, double n)
{
    double g = p->gamma, d = p->delta;
    double lr = lgamma(g + d) - lgamma(g + d + n) + lgamma(1.0 + d + n) - lgamma(1.0 + d);
    return p->alpha / (p->alpha + p->beta) * d / (g - 1.0) * (1.0 - exp(lr));
}

/* FHS 2010, eq. 13: 1/L B(a+x+1, b+n-x)/B(a,b) d/(g-1) Gamma(g+d)/Gamma(1+d)
 *   [Gamma(1+d+n)/Gamma(g+d+n) - Gamma(1+d+n+n*)/Gamma(g+d+n+n*)]. */
double bgbb_conditional_expected(const bgbb_params *p, double n_star, double x, double t_x,
                                 double n)
{
    double g = p->gamma, d = p->delta;
    double lead = special_lbeta(p->alpha + x + 1.0, p->beta + n - x) -
                  special_lbeta(p->alpha, p->beta) + lgamma(g + d) - lgamma(1.0 + d) -
                  bgbb_loglik1(p, x, t_x, n);
    double u = lgamma(1.0 + d + n) - lgamma(g + d + n);
    double v = lgamma(1.0 + d + n + n_star) - lgamma(g + d + n + n_star);
    return d / (g - 1.0) * (exp(lead + u) - exp(lead + v));
}
