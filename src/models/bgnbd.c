/*
 * bgnbd.c -- BG/NBD likelihood, fit and predictions (see bgnbd.h).
 *
 * The likelihood of one customer is the sum of two terms (FHL 2005, eq. 6):
 *   A1 = B(a, b+x)/B(a, b)     * Gamma(r+x) alpha^r / (Gamma(r) (alpha+T)^(r+x))
 *   A2 = B(a+1, b+x-1)/B(a, b) * Gamma(r+x) alpha^r / (Gamma(r) (alpha+t_x)^(r+x)),  x > 0
 * Both are formed as logarithms and added with log-sum-exp: the ratio form used in the
 * paper's spreadsheet overflows for large x.
 *
 * Fitting first collapses identical (x, t_x, T) rows into weights (with day-level data
 * most customers share a few thousand distinct rows), sorted by x so the terms that
 * depend on x alone are computed once per distinct x in each evaluation.
 */
#include "models/bgnbd.h"

#include "base/err.h"
#include "base/mem.h"
#include "models/mle.h"
#include "models/special.h"

#include <math.h>
#include <stdlib.h>

double bgnbd_loglik1(const bgnbd_params *p, double x, double t_x, double T)
{
    double r = p->r, al = p->alpha, a = p->a, b = p->b;
    double lab = special_lbeta(a, b);
    double common = lgamma(r + x) - lgamma(r) + r * log(al);
    double l1 = special_lbeta(a, b + x) - lab + common - (r + x) * log(al + T);
    if (x <= 0.0)
        return l1;
    double l2 = special_lbeta(a + 1.0, b + x - 1.0) - lab + common - (r + x) * log(al + t_x);
    return special_logaddexp(l1, l2);
}

double bgnbd_loglik(const bgnbd_params *p, const bgnbd_data *d)
{
    double s = 0.0;
    for (size_t i = 0; i < d->n; i++) {
        double w = d->w ? d->w[i] : 1.0;
        if (w != 0.0)
            s += w * bgnbd_loglik1(p, d->x[i], d->t_x[i], d->T[i]);
    }
    return s;
}

typedef struct row {
    double x, t_x, T, w;
} row;

static int row_cmp(const void *pa, const void *pb)
{
    const row *u = pa, *v = pb;
    if (u->x != v->x)
        return u->x < v->x ? -1 : 1;
    if (u->t_x != v->t_x)
        return u->t_x < v->t_x ? -1 : 1;
    if (u->T != v->T)
        return u->T < v->T ? -1 : 1;
    return 0;
}

typedef struct fit_ctx {
    const row *rows;
    size_t n;
} fit_ctx;

/* Negative log-likelihood over rows sorted by x; theta = log(r, alpha, a, b). */
static double negll(const double *theta, void *vctx)
{
    const fit_ctx *c = vctx;
    double r = exp(theta[0]), al = exp(theta[1]), a = exp(theta[2]), b = exp(theta[3]);
    double lab = special_lbeta(a, b), lgr = lgamma(r), lal = log(al);
    double s = 0.0, cur_x = -1.0, k1 = 0.0, k2 = 0.0;
    for (size_t i = 0; i < c->n; i++) {
        const row *q = &c->rows[i];
        if (q->x != cur_x) {
            cur_x = q->x;
            double common = lgamma(r + cur_x) - lgr + r * lal;
            k1 = special_lbeta(a, b + cur_x) - lab + common;
            k2 = cur_x > 0.0 ? special_lbeta(a + 1.0, b + cur_x - 1.0) - lab + common : 0.0;
        }
        double l1 = k1 - (r + q->x) * log(al + q->T);
        double l = q->x > 0.0 ? special_logaddexp(l1, k2 - (r + q->x) * log(al + q->t_x)) : l1;
        s += q->w * l;
    }
    return -s;
}

int bgnbd_fit(const bgnbd_data *d, bgnbd_params *out, double *ll, patron_error *err)
{
    if (d->n == 0)
        return err_set(err, PATRON_EINPUT, "bg/nbd: no customers to fit");
    row *rows = mem_alloc_array(d->n, sizeof *rows);
    if (!rows)
        return err_set(err, PATRON_ENOMEM, "out of memory");
    double sx = 0.0, sT = 0.0, sw = 0.0;
    for (size_t i = 0; i < d->n; i++) {
        row q = {d->x[i], d->t_x[i], d->T[i], d->w ? d->w[i] : 1.0};
        if (!(q.x >= 0.0 && q.t_x >= 0.0 && q.t_x <= q.T && q.T > 0.0 && q.w >= 0.0 &&
              isfinite(q.x) && isfinite(q.T) && isfinite(q.w)) ||
            (q.x == 0.0 && q.t_x != 0.0)) {
            mem_free(rows);
            return err_set(err, PATRON_EINPUT,
                           "bg/nbd: customer %zu: x=%g, t_x=%g, T=%g is not a valid summary "
                           "(need x >= 0, 0 <= t_x <= T, T > 0, t_x = 0 when x = 0)",
                           i + 1, q.x, q.t_x, q.T);
        }
        rows[i] = q;
        sx += q.w * q.x;
        sT += q.w * q.T;
        sw += q.w;
    }
    if (sw <= 0.0) {
        mem_free(rows);
        return err_set(err, PATRON_EINPUT, "bg/nbd: all customers have weight 0");
    }
    qsort(rows, d->n, sizeof *rows, row_cmp);
    size_t m = 0;
    for (size_t i = 0; i < d->n; i++) {
        if (m > 0 && row_cmp(&rows[m - 1], &rows[i]) == 0)
            rows[m - 1].w += rows[i].w;
        else
            rows[m++] = rows[i];
    }
    fit_ctx c = {rows, m};
    /* Start: r = 1 and alpha matching the mean purchase rate, a = b = 1. */
    double rate = sx > 0.0 ? sx / sT : 1.0 / sT;
    double theta[4] = {0.0, log(1.0 / rate), 0.0, 0.0};
    double fmin;
    int rc = mle_minimize(negll, &c, 4, theta, &fmin, "bg/nbd fit", err);
    mem_free(rows);
    if (rc != PATRON_OK)
        return rc;
    out->r = exp(theta[0]);
    out->alpha = exp(theta[1]);
    out->a = exp(theta[2]);
    out->b = exp(theta[3]);
    if (ll)
        *ll = -fmin;
    return PATRON_OK;
}

/* a = 1 makes (a+b-1)/(a-1) and the 2F1 factor 0/0; the limit is approached from a
 * hair away, far below any fitted precision. */
static double away_from_one(double a)
{
    return fabs(a - 1.0) < 1e-9 ? 1.0 + 1e-9 : a;
}

/*
 * E[X(t)] = (a+b-1)/(a-1) [1 - (alpha/(alpha+t))^r 2F1(r, b; a+b-1; z)], z = t/(alpha+t).
 * Euler's transformation 2F1(A,B;C;z) = (1-z)^(C-A-B) 2F1(C-A, C-B; C; z) with
 * 1 - z = alpha/(alpha+t) folds the power in:
 *   (alpha/(alpha+t))^r 2F1(...) = (1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b-1; z),
 * a series with small parameters whatever r.
 */
double bgnbd_expected(const bgnbd_params *p, double t)
{
    if (t <= 0.0)
        return 0.0;
    double a = away_from_one(p->a), b = p->b, r = p->r;
    double z = t / (p->alpha + t);
    double f = special_hyp2f1(a + b - 1.0 - r, a - 1.0, a + b - 1.0, z);
    return (a + b - 1.0) / (a - 1.0) * (1.0 - pow(1.0 - z, a - 1.0) * f);
}

/*
 * E[Y(t)|x,t_x,T] = P(alive) (a+b+x-1)/(a-1)
 *                   [1 - ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x; a+b+x-1; z)],
 * z = t/(alpha+T+t).  The same transformation turns the bracket into
 * 1 - (1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z): no huge (1-z)^(-x) growth of the
 * original series for heavy buyers, and c grows with x so it converges faster.
 */
double bgnbd_conditional_expected(const bgnbd_params *p, double t, double x, double t_x,
                                  double T)
{
    if (t <= 0.0)
        return 0.0;
    double a = away_from_one(p->a), b = p->b, r = p->r;
    double z = t / (p->alpha + T + t);
    double f = special_hyp2f1(a + b - 1.0 - r, a - 1.0, a + b + x - 1.0, z);
    double bracket = 1.0 - pow(1.0 - z, a - 1.0) * f;
    return bgnbd_p_alive(p, x, t_x, T) * (a + b + x - 1.0) / (a - 1.0) * bracket;
}

/* P(alive) = 1 / (1 + a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x)) for x > 0, else 1; the
 * odds are formed as a logarithm so a heavy buyer long gone gives 0, not inf/inf. */
double bgnbd_p_alive(const bgnbd_params *p, double x, double t_x, double T)
{
    if (x <= 0.0)
        return 1.0;
    double lo = log(p->a / (p->b + x - 1.0)) +
                (p->r + x) * (log(p->alpha + T) - log(p->alpha + t_x));
    if (lo > 700.0)
        return 0.0;
    return 1.0 / (1.0 + exp(lo));
}
