/*
 * rng.c -- xoshiro256** and the samplers built on it (see rng.h).
 *
 * Every sampler consumes a sequence of rng_u64() words that depends only on the state
 * and its arguments, so a stream replays exactly.  Rejection loops terminate with
 * probability one and need few iterations on average (gamma ~1.03, Zipf < 1.2, PTRS
 * ~1.1).
 */
#include "ingest/rng.h"

#include <math.h>

uint64_t rng_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void rng_seed(rng *r, uint64_t seed)
{
    uint64_t st = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = rng_splitmix64(&st);
    r->has_spare = 0;
    r->spare = 0.0;
}

void rng_seed_stream(rng *r, uint64_t seed, uint64_t stream, uint64_t index)
{
    /* Mix the three words through splitmix64 one after the other, so neighbouring
     * indexes or streams do not give related states. */
    uint64_t st = seed;
    uint64_t h = rng_splitmix64(&st);
    st = h ^ (stream * 0xd1b54a32d192ed03ULL);
    h = rng_splitmix64(&st);
    st = h ^ (index * 0x8cb92ba72f3d8dd7ULL);
    h = rng_splitmix64(&st);
    rng_seed(r, h);
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t rng_u64(rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double rng_double(rng *r)
{
    return (double)(rng_u64(r) >> 11) * 0x1.0p-53;
}

uint64_t rng_below(rng *r, uint64_t n)
{
    if (n == 0) return 0;
#if defined(__SIZEOF_INT128__)
    /* Lemire: the high word of x * n is uniform once the low word is past the bias zone. */
    __uint128_t m = (__uint128_t)rng_u64(r) * n;
    uint64_t lo = (uint64_t)m;
    if (lo < n) {
        uint64_t thresh = (0 - n) % n;
        while (lo < thresh) {
            m = (__uint128_t)rng_u64(r) * n;
            lo = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
#else
    uint64_t thresh = (0 - n) % n;
    for (;;) {
        uint64_t x = rng_u64(r);
        if (x >= thresh) return x % n;
    }
#endif
}

int rng_bernoulli(rng *r, double p)
{
    return rng_double(r) < p;
}

double rng_normal(rng *r)
{
    if (r->has_spare) {
        r->has_spare = 0;
        return r->spare;
    }
    double u, v, s;
    do {
        u = 2.0 * rng_double(r) - 1.0;
        v = 2.0 * rng_double(r) - 1.0;
        s = u * u + v * v;
    } while (s >= 1.0 || s == 0.0);
    double f = sqrt(-2.0 * log(s) / s);
    r->spare = v * f;
    r->has_spare = 1;
    return u * f;
}

double rng_lognormal(rng *r, double mu, double sigma)
{
    return exp(mu + sigma * rng_normal(r));
}

double rng_exp(rng *r, double rate)
{
    /* 1 - u is in (0, 1], so the log is finite. */
    return -log(1.0 - rng_double(r)) / rate;
}

double rng_gamma(rng *r, double shape)
{
    if (shape < 1.0) {
        /* Gamma(k) = Gamma(k + 1) * U^(1/k) (Marsaglia & Tsang's boost). */
        double g = rng_gamma(r, shape + 1.0);
        double u = 1.0 - rng_double(r);
        return g * pow(u, 1.0 / shape);
    }
    double d = shape - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x, v;
        do {
            x = rng_normal(r);
            v = 1.0 + c * x;
        } while (v <= 0.0);
        v = v * v * v;
        double u = rng_double(r);
        double x2 = x * x;
        if (u < 1.0 - 0.0331 * x2 * x2) return d * v;
        if (u > 0.0 && log(u) < 0.5 * x2 + d * (1.0 - v + log(v))) return d * v;
    }
}

double rng_beta(rng *r, double a, double b)
{
    double x = rng_gamma(r, a), y = rng_gamma(r, b);
    if (x + y <= 0.0) /* both underflowed: only possible for very small shapes */
        return rng_double(r) < a / (a + b) ? 1.0 : 0.0;
    return x / (x + y);
}

uint64_t rng_poisson(rng *r, double mean)
{
    if (!(mean > 0.0)) return 0;
    if (mean < 30.0) {
        double limit = exp(-mean), p = 1.0;
        uint64_t k = 0;
        for (;;) {
            p *= rng_double(r);
            if (p <= limit) return k;
            k++;
        }
    }
    /* PTRS, Hörmann (1993), "The transformed rejection method for generating Poisson
     * random variables". */
    double slam = sqrt(mean), loglam = log(mean);
    double b = 0.931 + 2.53 * slam, a = -0.059 + 0.02483 * b;
    double invalpha = 1.1239 + 1.1328 / (b - 3.4), vr = 0.9277 - 3.6224 / (b - 2.0);
    for (;;) {
        double u = rng_double(r) - 0.5, v = rng_double(r);
        double us = 0.5 - fabs(u);
        double k = floor((2.0 * a / us + b) * u + mean + 0.43);
        if (us >= 0.07 && v <= vr) return (uint64_t)k;
        if (k < 0.0 || (us < 0.013 && v > us)) continue;
        if (v > 0.0 &&
            log(v) + log(invalpha) - log(a / (us * us) + b) <= -mean + k * loglam - lgamma(k + 1.0))
            return (uint64_t)k;
    }
}

/* ---- Zipf by rejection-inversion (Hörmann & Derflinger 1996) ---- */

/* log1p(x)/x and expm1(x)/x, with their limits near 0. */
static double helper1(double x)
{
    return fabs(x) > 1e-8 ? log1p(x) / x : 1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x));
}

static double helper2(double x)
{
    return fabs(x) > 1e-8 ? expm1(x) / x : 1.0 + x * 0.5 * (1.0 + x / 3.0 * (1.0 + 0.25 * x));
}

/* H(x) = integral of x^-s, shifted so that it is continuous in s at s = 1. */
static double zipf_hint(double s, double x)
{
    double lx = log(x);
    return helper2((1.0 - s) * lx) * lx;
}

static double zipf_h(double s, double x)
{
    return exp(-s * log(x));
}

static double zipf_hint_inv(double s, double x)
{
    double t = x * (1.0 - s);
    if (t < -1.0) t = -1.0;
    return exp(helper1(t) * x);
}

void rng_zipf_init(rng_zipf *z, uint64_t n, double s)
{
    z->n = n ? n : 1;
    z->s = s;
    z->h_x1 = zipf_hint(s, 1.5) - 1.0;
    z->h_n = zipf_hint(s, (double)z->n + 0.5);
    z->cut = 2.0 - zipf_hint_inv(s, zipf_hint(s, 2.5) - zipf_h(s, 2.0));
}

uint64_t rng_zipf_next(rng *r, const rng_zipf *z)
{
    if (z->n == 1) return 1;
    for (;;) {
        double u = z->h_n + rng_double(r) * (z->h_x1 - z->h_n);
        double x = zipf_hint_inv(z->s, u);
        double kd = floor(x + 0.5);
        if (kd < 1.0)
            kd = 1.0;
        else if (kd > (double)z->n)
            kd = (double)z->n;
        if (kd - x <= z->cut || u >= zipf_hint(z->s, kd + 0.5) - zipf_h(z->s, kd))
            return (uint64_t)kd;
    }
}
