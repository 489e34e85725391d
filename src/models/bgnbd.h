/*
 * bgnbd.h -- the BG/NBD model of repeat purchasing (Fader, Hardie & Lee 2005,
 * "Counting your customers the easy way").
 *
 * A customer is summarised by x (repeat purchases), t_x (time of the last purchase,
 * measured from the first) and T (time from the first purchase to the end of
 * observation), in one time unit throughout (days or weeks; the parameter alpha is in
 * that unit).  While alive a customer buys at Poisson rate lambda ~ Gamma(r, alpha);
 * after each purchase they drop out with probability p ~ Beta(a, b).
 *
 * The log-likelihood has no constant terms (the form all published sources use), and
 * is computed in log space so it stays accurate for heavy buyers (x in the hundreds).
 */
#ifndef PATRON_MODELS_BGNBD_H
#define PATRON_MODELS_BGNBD_H

#include "patron/patron.h"

#include <stddef.h>

typedef struct bgnbd_params {
    double r, alpha, a, b;
} bgnbd_params;

/* Customers for a fit: n rows of x, t_x, T and an optional weight (NULL = 1 each; a
 * weight is the number of customers with that row).  Borrowed. */
typedef struct bgnbd_data {
    const double *x, *t_x, *T, *w;
    size_t n;
} bgnbd_data;

/* One customer's log-likelihood. */
double bgnbd_loglik1(const bgnbd_params *p, double x, double t_x, double T);
/* Sum of (weighted) log-likelihoods. */
double bgnbd_loglik(const bgnbd_params *p, const bgnbd_data *d);

/* Maximum likelihood fit.  Rows must have x >= 0, 0 <= t_x <= T, T > 0, w >= 0 and
 * t_x = 0 when x = 0 (PATRON_EINPUT naming the row otherwise).  *ll receives the
 * log-likelihood at the optimum (NULL allowed). */
int bgnbd_fit(const bgnbd_data *d, bgnbd_params *out, double *ll, patron_error *err);

/* E[X(t)]: expected purchases in (0, t] of a customer just acquired at 0. */
double bgnbd_expected(const bgnbd_params *p, double t);
/* E[Y(t) | x, t_x, T]: expected purchases in (T, T + t] of a customer with that history. */
double bgnbd_conditional_expected(const bgnbd_params *p, double t, double x, double t_x,
                                  double T);
/* The factor of E[Y(t)|x,t_x,T] that does not depend on t_x:
 * E[Y] = P(alive) * bgnbd_conditional_factor(p, t, x, T).  It depends on (x, T) only,
 * so scoring many customers can compute it once per distinct pair. */
double bgnbd_conditional_factor(const bgnbd_params *p, double t, double x, double T);
/* P(alive at T | x, t_x, T). */
double bgnbd_p_alive(const bgnbd_params *p, double x, double t_x, double T);

#endif
