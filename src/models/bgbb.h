/*
 * bgbb.h -- the BG/BB model for discrete transaction opportunities (Fader, Hardie &
 * Shang 2010, "Customer-base analysis in a discrete-time noncontractual setting").
 *
 * At each of n opportunities after acquisition (yearly donations, annual events) an
 * alive customer transacts with probability p ~ Beta(alpha, beta) and, before the next
 * opportunity, drops out with probability theta ~ Beta(gamma, delta).  A customer is
 * summarised by x (transactions in n opportunities) and t_x (the opportunity of the last
 * one, 0 if none).  Data are a weighted matrix: rows (x, t_x, n) with a count each.
 */
#ifndef PATRON_MODELS_BGBB_H
#define PATRON_MODELS_BGBB_H

#include "patron/patron.h"

#include <stddef.h>

typedef struct bgbb_params {
    double alpha, beta, gamma, delta;
} bgbb_params;

typedef struct bgbb_data {
    const double *x, *t_x, *n, *count; /* count NULL = 1 each; borrowed */
    size_t rows;
} bgbb_data;

double bgbb_loglik1(const bgbb_params *p, double x, double t_x, double n);
double bgbb_loglik(const bgbb_params *p, const bgbb_data *d);
/* Rows need whole x, t_x, n with 0 <= x <= t_x <= n, t_x = 0 when x = 0, count >= 0. */
int bgbb_fit(const bgbb_data *d, bgbb_params *out, double *ll, patron_error *err);

/* P(alive at opportunity n + m | x, t_x, n), m >= 1: the probability that the customer
 * is still alive at the m-th opportunity after the observed ones.  FHS 2010's
 * "P(alive in 2002)" for the donations data (n = 6 opportunities 1996..2001) is m = 1. */
double bgbb_p_alive(const bgbb_params *p, double x, double t_x, double n, double m);
/* E[X(n)]: expected transactions in the first n opportunities of a new customer. */
double bgbb_expected(const bgbb_params *p, double n);
/* E[X(n, n + n_star) | x, t_x, n]: expected transactions in the next n_star opportunities. */
double bgbb_conditional_expected(const bgbb_params *p, double n_star, double x, double t_x,
                                 double n);

#endif
