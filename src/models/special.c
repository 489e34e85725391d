/*
 * special.c -- log Beta, log-sum-exp and the 2F1 series (see special.h).
 */
#include "models/special.h"

#include <math.h>

double special_lbeta(double a, double b)
{
    return lgamma(a) + lgamma(b) - lgamma(a + b);
}

double special_digamma(double x)
{
    double acc = 0.0;
    while (x < 6.0) {
        acc -= 1.0 / x;
        x += 1.0;
    }
    double f = 1.0 / (x * x);
    /* psi(x) ~ ln x - 1/(2x) - sum B_2k / (2k x^2k) */
    double t = f * (-1.0 / 12 + f * (1.0 / 120 + f * (-1.0 / 252 + f * (1.0 / 240 +
                f * (-1.0 / 132 + f * (691.0 / 32760 + f * (-1.0 / 12)))))));
    return acc + log(x) - 0.5 / x + t;
}

double special_logaddexp(double u, double v)
{
    if (u < v) {
        double t = u;
        u = v;
        v = t;
    }
    if (isinf(u) && u < 0)
        return u; /* both -inf */
    return u + log1p(exp(v - u));
}

/*
 * Term k+1 = term k * (a+k)(b+k) / ((c+k)(k+1)) * z.  The ratio tends to z, so once
 * k is past the point where |(a+k)(b+k)| < |(c+k)(k+1)| the terms shrink geometrically
 * and the first one below 1e-16 of the sum ends the loop.  Before that point a term can
 * be tiny by accident (a or b near a non-positive integer), which is why the stop also
 * asks for k beyond the parameters' size.  A terminating series (a or b a non-positive
 * integer) ends on an exact zero term.
 */
double special_hyp2f1(double a, double b, double c, double z)
{
    if (!(z >= 0.0 && z < 1.0))
        return NAN;
    double term = 1.0, sum = 1.0;
    double kmin = fabs(a) + fabs(b) + fabs(c) + 2.0;
    for (long k = 0; k < 1000000; k++) {
        double kd = (double)k;
        term *= (a + kd) * (b + kd) / ((c + kd) * (kd + 1.0)) * z;
        sum += term;
        if (term == 0.0)
            return sum;
        if (kd > kmin && fabs(term) <= 1e-16 * fabs(sum))
            return sum;
    }
    return NAN;
}
