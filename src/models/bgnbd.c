/*
 * bgnbd.c -- BG/NBD likelihood, fit and predictions (see bgnbd.h).
 *
 * The likelihood of one customer is the sum of two terms (FHL 2005, eq. 6):
 *   A1 = B(a, b+x)/B(a, b)     * Gamma(r+x) alpha^r / (Gamma(r) (alpha+T)^(r+x))
 *   A2 = B(a+1, b+x-1)/B(a, b) * Gamma(r+x) alpha^r / (Gamma(r) (alpha+t_x)^(r+x)),  x > 0
 * Both are formed as logarithms and added with log-sum-exp: the ratio form used in the
 * paper's spreadsheet overflows for large x.
 *
 * Fitting first collapses identical (x, t_x, T) rows into weights, sorted by x so the
 * terms that depend on x alone are computed once per distinct x in each evaluation, and
 * uses the analytic gradient (digammas of the x-only terms, the softmax weights of the
 * two terms per row) so L-BFGS needs tens of evaluations, not the thousand a simplex
 * takes: a million customers fit in seconds.
 */
#include "models/bgnbd.h"

#include "base/err.h"
#include "base/mem.h"
#include "models/mle.h"
#include "models/special.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
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

static int dbl_cmp(const void *pa, const void *pb)
{
    double u = *(const double *)pa, v = *(const double *)pb;
    return u < v ? -1 : u > v;
}

/* Distinct customers sorted by x; each row's t_x and T as indexes into vals (the
 * distinct values of both), so log(alpha + v) is computed once per value per
 * evaluation instead of twice per row. */
typedef struct fit_ctx {
    size_t n, nvals;
    double *x, *w;
    uint32_t *itx, *iT;
    double *vals;
    double *lv, *iv; /* per evaluation: log(alpha + v), 1 / (alpha + v) */
} fit_ctx;

typedef struct half_job {
    const fit_ctx *c;
    double r, al, a, b;
    size_t from, to;
    int want_grad;
    double ll, g[4]; /* sums over the rows, gradient w.r.t. (r, alpha, a, b) */
} half_job;

/* Log-likelihood (and gradient) of rows [from, to).  Per distinct x: the x-only parts
 * of both terms, k1 and k2, and their derivatives (digammas); per row two table reads
 * and one log-sum-exp. */
static void *half_eval(void *arg)
{
    half_job *j = arg;
    const fit_ctx *c = j->c;
    double r = j->r, al = j->al, a = j->a, b = j->b;
    double lab = special_lbeta(a, b), lgr = lgamma(r), lal = log(al);
    double pab = special_digamma(a + b), pa = special_digamma(a), pb = special_digamma(b);
    double pr = special_digamma(r);
    double ll = 0, g0 = 0, g1 = 0, g2 = 0, g3 = 0;
    double cur = -1, k1 = 0, k2 = 0, dr = 0, da1 = 0, db1 = 0, da2 = 0, db2 = 0;
    for (size_t i = j->from; i < j->to; i++) {
        double x = c->x[i], w = c->w[i];
        if (x != cur) {
            cur = x;
            double common = lgamma(r + x) - lgr + r * lal;
            k1 = special_lbeta(a, b + x) - lab + common;
            k2 = x > 0 ? special_lbeta(a + 1.0, b + x - 1.0) - lab + common : 0.0;
            if (j->want_grad) {
                double pabx = special_digamma(a + b + x);
                dr = special_digamma(r + x) - pr + lal;
                da1 = pab - pabx;
                db1 = special_digamma(b + x) - pabx - pb + pab;
                if (x > 0) {
                    da2 = special_digamma(a + 1.0) - pabx - pa + pab;
                    db2 = special_digamma(b + x - 1.0) - pabx - pb + pab;
                }
            }
        }
        uint32_t iT = c->iT[i];
        double l1 = k1 - (r + x) * c->lv[iT];
        if (x <= 0) {
            ll += w * l1;
            if (j->want_grad) {
                g0 += w * (dr - c->lv[iT]);
                g1 += w * (r / al - (r + x) * c->iv[iT]);
                g2 += w * da1;
                g3 += w * db1;
            }
            continue;
        }
        uint32_t it = c->itx[i];
        double l2 = k2 - (r + x) * c->lv[it];
        double l = special_logaddexp(l1, l2);
        ll += w * l;
        if (j->want_grad) {
            double w1 = exp(l1 - l), w2 = 1.0 - w1;
            g0 += w * (dr - w1 * c->lv[iT] - w2 * c->lv[it]);
            g1 += w * (r / al - (r + x) * (w1 * c->iv[iT] + w2 * c->iv[it]));
            g2 += w * (w1 * da1 + w2 * da2);
            g3 += w * (w1 * db1 + w2 * db2);
        }
    }
    j->ll = ll;
    j->g[0] = g0, j->g[1] = g1, j->g[2] = g2, j->g[3] = g3;
    return NULL;
}

/* Negative log-likelihood at theta = log(r, alpha, a, b), and its gradient.  The rows
 * are always cut into the same two halves, added half 0 then half 1, whether the second
 * half ran on a thread or not: the result does not depend on scheduling. */
static double negll(const double *theta, double *grad, void *vctx)
{
    fit_ctx *c = vctx;
    double r = exp(theta[0]), al = exp(theta[1]), a = exp(theta[2]), b = exp(theta[3]);
    for (size_t v = 0; v < c->nvals; v++) {
        c->lv[v] = log(al + c->vals[v]);
        c->iv[v] = 1.0 / (al + c->vals[v]);
    }
    half_job h[2];
    for (int k = 0; k < 2; k++)
        h[k] = (half_job){c, r, al, a, b, c->n * (size_t)k / 2, c->n * (size_t)(k + 1) / 2,
                          grad != NULL, 0, {0, 0, 0, 0}};
    pthread_t th;
    int threaded = c->n > 20000 && pthread_create(&th, NULL, half_eval, &h[1]) == 0;
    half_eval(&h[0]);
    if (threaded)
        pthread_join(th, NULL);
    else
        half_eval(&h[1]);
    if (grad) {
        double p[4] = {r, al, a, b};
        for (int k = 0; k < 4; k++)
            grad[k] = -(h[0].g[k] + h[1].g[k]) * p[k];
    }
    return -(h[0].ll + h[1].ll);
}

static void fit_ctx_release(fit_ctx *c)
{
    mem_free(c->x), mem_free(c->w), mem_free(c->itx), mem_free(c->iT);
    mem_free(c->vals), mem_free(c->lv), mem_free(c->iv);
}

static uint32_t value_index(const double *vals, size_t n, double v)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (vals[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (uint32_t)lo;
}

int bgnbd_fit(const bgnbd_data *d, bgnbd_params *out, double *ll, patron_error *err)
{
    if (d->n == 0)
        return err_set(err, PATRON_EINPUT, "bg/nbd: no customers to fit");
    if (d->n > UINT32_MAX / 2)
        return err_set(err, PATRON_EINPUT, "bg/nbd: too many customers for one fit");
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
    fit_ctx c = {0};
    c.n = m;
    c.x = mem_alloc_array(m, sizeof(double));
    c.w = mem_alloc_array(m, sizeof(double));
    c.itx = mem_alloc_array(m, sizeof(uint32_t));
    c.iT = mem_alloc_array(m, sizeof(uint32_t));
    c.vals = mem_alloc_array(2 * m, sizeof(double));
    int rc = PATRON_OK;
    if (!c.x || !c.w || !c.itx || !c.iT || !c.vals) {
        rc = err_set(err, PATRON_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < m; i++) {
        c.vals[2 * i] = rows[i].t_x;
        c.vals[2 * i + 1] = rows[i].T;
    }
    qsort(c.vals, 2 * m, sizeof(double), dbl_cmp);
    for (size_t i = 0; i < 2 * m; i++)
        if (c.nvals == 0 || c.vals[c.nvals - 1] != c.vals[i])
            c.vals[c.nvals++] = c.vals[i];
    c.lv = mem_alloc_array(c.nvals, sizeof(double));
    c.iv = mem_alloc_array(c.nvals, sizeof(double));
    if (!c.lv || !c.iv) {
        rc = err_set(err, PATRON_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < m; i++) {
        c.x[i] = rows[i].x;
        c.w[i] = rows[i].w;
        c.itx[i] = value_index(c.vals, c.nvals, rows[i].t_x);
        c.iT[i] = value_index(c.vals, c.nvals, rows[i].T);
    }
    mem_free(rows);
    rows = NULL;
    if (getenv("PATRON_MLE_TRACE"))
        fprintf(stderr, "bg/nbd: %zu customers in %zu distinct rows, %zu distinct times\n",
                d->n, m, c.nvals);
    /* Start: r = 1 and alpha matching the mean purchase rate, a = b = 1. */
    double rate = sx > 0.0 ? sx / sT : 1.0 / sT;
    double theta[4] = {0.0, log(1.0 / rate), 0.0, 0.0};
    double fmin;
    if ((rc = mle_minimize(negll, &c, 4, 1, theta, &fmin, "bg/nbd fit", err)))
        goto out;
    out->r = exp(theta[0]);
    out->alpha = exp(theta[1]);
    out->a = exp(theta[2]);
    out->b = exp(theta[3]);
    if (ll)
        *ll = -fmin;
out:
    mem_free(rows);
    fit_ctx_release(&c);
    return rc;
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
double bgnbd_conditional_factor(const bgnbd_params *p, double t, double x, double T)
{
    if (t <= 0.0)
        return 0.0;
    double a = away_from_one(p->a), b = p->b, r = p->r;
    double z = t / (p->alpha + T + t);
    double f = special_hyp2f1(a + b - 1.0 - r, a - 1.0, a + b + x - 1.0, z);
    return (a + b + x - 1.0) / (a - 1.0) * (1.0 - pow(1.0 - z, a - 1.0) * f);
}

double bgnbd_conditional_expected(const bgnbd_params *p, double t, double x, double t_x,
                                  double T)
{
    if (t <= 0.0)
        return 0.0;
    return bgnbd_p_alive(p, x, t_x, T) * bgnbd_conditional_factor(p, t, x, T);
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
