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
#include "base/mem.h"
#include "models/mle.h"
#include "models/special.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>

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

/* Repeat customers sorted by x, with what each row needs precomputed. */
typedef struct gg_row {
    double x, w, lm, lx, xm; /* x, weight, ln m_x, ln x, x m_x */
} gg_row;

typedef struct gg_ctx {
    gg_row *rows;
    size_t n;
} gg_ctx;

typedef struct gg_half {
    const gg_ctx *c;
    double p, q, g;
    size_t from, to;
    int want_grad;
    double ll, d[3];
} gg_half;

static void *gg_half_eval(void *arg)
{
    gg_half *h = arg;
    double p = h->p, q = h->q, g = h->g, lg = log(g), lgq = lgamma(q), pq = special_digamma(q);
    double ll = 0, d0 = 0, d1 = 0, d2 = 0, cur = -1, A = 0, dA = 0, ppq = 0;
    for (size_t i = h->from; i < h->to; i++) {
        const gg_row *r = &h->c->rows[i];
        double px = p * r->x;
        if (r->x != cur) {
            cur = r->x;
            A = lgamma(px + q) - lgamma(px);
            if (h->want_grad) {
                ppq = special_digamma(px + q);
                dA = ppq - special_digamma(px);
            }
        }
        double L = log(g + r->xm);
        ll += r->w * (A - lgq + q * lg + (px - 1.0) * r->lm + px * r->lx - (px + q) * L);
        if (h->want_grad) {
            d0 += r->w * r->x * (dA + r->lm + r->lx - L);
            d1 += r->w * (ppq - pq + lg - L);
            d2 += r->w * (q / g - (px + q) / (g + r->xm));
        }
    }
    h->ll = ll;
    h->d[0] = d0, h->d[1] = d1, h->d[2] = d2;
    return NULL;
}

/* theta = log(p, q, gamma); two fixed halves added in order (see bgnbd.c). */
static double negll(const double *theta, double *grad, void *vctx)
{
    const gg_ctx *c = vctx;
    double p = exp(theta[0]), q = exp(theta[1]), g = exp(theta[2]);
    gg_half h[2];
    for (int k = 0; k < 2; k++)
        h[k] = (gg_half){c, p, q, g, c->n * (size_t)k / 2, c->n * (size_t)(k + 1) / 2,
                         grad != NULL, 0, {0, 0, 0}};
    pthread_t th;
    int threaded = c->n > 20000 && pthread_create(&th, NULL, gg_half_eval, &h[1]) == 0;
    gg_half_eval(&h[0]);
    if (threaded)
        pthread_join(th, NULL);
    else
        gg_half_eval(&h[1]);
    if (grad) {
        double v[3] = {p, q, g};
        for (int k = 0; k < 3; k++)
            grad[k] = -(h[0].d[k] + h[1].d[k]) * v[k];
    }
    return -(h[0].ll + h[1].ll);
}

static int gg_row_cmp(const void *a, const void *b)
{
    const gg_row *u = a, *v = b;
    return u->x < v->x ? -1 : u->x > v->x;
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
    gg_ctx c = {mem_alloc_array(used, sizeof(gg_row)), 0};
    if (!c.rows)
        return err_set(err, PATRON_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        if (x[i] > 0.0 && m_x[i] > 0.0 && isfinite(m_x[i]) && (!w || w[i] > 0.0))
            c.rows[c.n++] = (gg_row){x[i], w ? w[i] : 1.0, log(m_x[i]), log(x[i]), x[i] * m_x[i]};
    qsort(c.rows, c.n, sizeof *c.rows, gg_row_cmp);
    /* Start: p = 1, q = 2 and gamma such that p gamma / (q - 1) is the mean spend. */
    double theta[3] = {0.0, log(2.0), log(mean)};
    double fmin;
    int rc = mle_minimize(negll, &c, 3, 1, theta, &fmin, "gamma-gamma fit", err);
    mem_free(c.rows);
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
