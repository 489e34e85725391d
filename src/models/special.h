/*
 * special.h -- the special functions the customer-base models need: log Beta,
 * log-sum-exp and the Gauss hypergeometric function 2F1 by its power series.
 *
 * Everything works in log space where the models' terms can overflow (BG/NBD and BG/BB
 * likelihoods of heavy buyers reach Gamma(200)); 2F1 is summed directly and is meant for
 * the Euler-transformed forms the callers use, where c is large and the series
 * converges geometrically in z.
 */
#ifndef PATRON_MODELS_SPECIAL_H
#define PATRON_MODELS_SPECIAL_H

/* ln B(a, b) = lnGamma(a) + lnGamma(b) - lnGamma(a + b), for a, b > 0. */
double special_lbeta(double a, double b);

/* The digamma function psi(x) = d/dx lnGamma(x), for x > 0 (recurrence up to x >= 6,
 * then the asymptotic series; absolute error below 1e-14). */
double special_digamma(double x);

/* ln(e^u + e^v) without overflow; -inf arguments are fine. */
double special_logaddexp(double u, double v);

/* 2F1(a, b; c; z) for 0 <= z < 1 and c not a non-positive integer, by summing the
 * series until a term no longer changes the sum (relative 1e-16) and the terms are
 * shrinking.  Returns NAN when it has not converged after 10^6 terms (z too close to 1
 * for a direct sum) or when z is out of range. */
double special_hyp2f1(double a, double b, double c, double z);

#endif
