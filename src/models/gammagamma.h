/*
 * gammagamma.h -- the Gamma-Gamma model of spend per transaction (Fader, Hardie & Lee
 * 2005, "RFM and CLV"; Colombo & Jiang 1999).
 *
 * A customer's transaction values are Gamma(p, nu) with nu ~ Gamma(q, gamma) across
 * customers; the model sees each repeat customer's x (number of transactions) and m_x
 * (their mean value).  Customers with x = 0 or m_x <= 0 carry no information and are
 * left out of a fit; their expected spend is the population mean p gamma / (q - 1).
 */
#ifndef PATRON_MODELS_GAMMAGAMMA_H
#define PATRON_MODELS_GAMMAGAMMA_H

#include "patron/patron.h"

#include <stddef.h>

typedef struct gg_params {
    double p, q, gamma;
} gg_params;

/* One customer's log-likelihood (x > 0, m_x > 0), without constant terms. */
double gg_loglik1(const gg_params *p, double x, double m_x);
/* Sum over customers with x > 0 and m_x > 0 (w NULL = weight 1 each); *used (NULL
 * allowed) receives how many rows counted. */
double gg_loglik(const gg_params *p, const double *x, const double *m_x, const double *w,
                 size_t n, size_t *used);

/* Maximum likelihood fit over the rows with x > 0 and m_x > 0; PATRON_EINPUT when there
 * are fewer than 2 such rows. */
int gg_fit(const double *x, const double *m_x, const double *w, size_t n, gg_params *out,
           double *ll, patron_error *err);

/* E[M | x, m_x]: the expected mean transaction value of a customer, a weighted mean of
 * the population mean and their own (x = 0: the population mean; NAN when q <= 1). */
double gg_expected_spend(const gg_params *p, double x, double m_x);

#endif
