/*
 * mle.h -- maximum likelihood through NLopt, shared by the customer-base models.
 *
 * Parameters are optimised on the log scale (every model parameter is positive), with a
 * derivative-free local algorithm: Nelder-Mead from the start point, then restarted from
 * its own optimum with a fresh simplex until a restart no longer improves the objective
 * by more than 1e-10 (Nelder-Mead can stall on a flat ridge such as BG/NBD's; a restart
 * moves it on), and a final BOBYQA polish.  Deterministic: same data, same answer.
 */
#ifndef PATRON_MODELS_MLE_H
#define PATRON_MODELS_MLE_H

#include "patron/patron.h"

/* The negative log-likelihood at log-parameters theta[0..n). */
typedef double (*mle_objective)(const double *theta, void *ctx);

/* Minimises f from theta (log-parameters, overwritten with the optimum); *fmin receives
 * the minimum.  Log-parameters are kept in [-30, 30].  PATRON_EINTERNAL (with a message
 * naming what) when NLopt fails or the objective is not finite at the optimum. */
int mle_minimize(mle_objective f, void *ctx, unsigned n, double *theta, double *fmin,
                 const char *what, patron_error *err);

#endif
