/*
 * mle.h -- maximum likelihood through NLopt, shared by the customer-base models.
 *
 * Parameters are optimised on the log scale (every model parameter is positive).
 * Objectives with an analytic gradient are minimised by L-BFGS (tens of evaluations,
 * which is what makes a fit on a million customers take seconds) and then polished by a
 * short BOBYQA run; without a gradient, Nelder-Mead from the start point, restarted from
 * its own optimum with a fresh simplex until a restart no longer improves the objective
 * by 1e-10 (Nelder-Mead can stall on a flat ridge such as BG/NBD's), then BOBYQA.
 * Deterministic: same data, same answer.  PATRON_MLE_TRACE=1 in the environment prints
 * evaluation counts to stderr.
 */
#ifndef PATRON_MODELS_MLE_H
#define PATRON_MODELS_MLE_H

#include "patron/patron.h"

/* The negative log-likelihood at log-parameters theta[0..n); when grad is not NULL it
 * also receives the gradient with respect to theta. */
typedef double (*mle_objective)(const double *theta, double *grad, void *ctx);

/* Minimises f from theta (log-parameters, overwritten with the optimum); *fmin receives
 * the minimum.  has_grad: f fills grad when asked.  Log-parameters are kept in
 * [-30, 30].  PATRON_EINTERNAL (with a message naming what) when NLopt fails or the
 * objective is not finite at the optimum. */
int mle_minimize(mle_objective f, void *ctx, unsigned n, int has_grad, double *theta,
                 double *fmin, const char *what, patron_error *err);

#endif
