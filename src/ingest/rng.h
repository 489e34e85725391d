/*
 * rng.h -- a small deterministic random number generator and the samplers the data
 * generator needs (uniform, normal, log-normal, exponential, gamma, beta, Poisson, Zipf).
 *
 * The core is xoshiro256** (Blackman & Vigna) seeded through splitmix64, so any 64-bit
 * seed -- including 0 -- gives a well-mixed state.  An rng is a plain value in the
 * caller's memory: no globals, no locking, and two rngs seeded alike produce the same
 * sequence on the same build.  Samplers that need transcendental functions call libm, so
 * streams are byte-identical across runs of one build; another libm may round a last bit
 * differently.
 *
 * Independent streams: rng_seed_stream(r, seed, stream, index) derives a state from three
 * words, so "member 12345 of seed 7" has its own stream that can be regenerated on its
 * own (the generator uses this to recompute a member without remembering it).
 */
#ifndef PATRON_INGEST_RNG_H
#define PATRON_INGEST_RNG_H

#include <stdint.h>

typedef struct rng {
    uint64_t s[4];
    double spare; /* second normal deviate of the polar method */
    int has_spare;
} rng;

/* One splitmix64 step: advances *state and returns a mixed word. */
uint64_t rng_splitmix64(uint64_t *state);

void rng_seed(rng *r, uint64_t seed);
/* Seeds from (seed, stream, index): distinct triples give unrelated streams. */
void rng_seed_stream(rng *r, uint64_t seed, uint64_t stream, uint64_t index);

/* Uniform 64-bit word. */
uint64_t rng_u64(rng *r);
/* Uniform in [0, 1) with 53 random bits. */
double rng_double(rng *r);
/* Uniform integer in [0, n); n = 0 returns 0.  Unbiased (Lemire's method). */
uint64_t rng_below(rng *r, uint64_t n);
/* 1 with probability p. */
int rng_bernoulli(rng *r, double p);

/* Standard normal (Marsaglia's polar method). */
double rng_normal(rng *r);
/* exp(N(mu, sigma^2)). */
double rng_lognormal(rng *r, double mu, double sigma);
/* Exponential with the given rate (mean 1/rate); rate must be > 0. */
double rng_exp(rng *r, double rate);
/* Gamma with the given shape (> 0) and scale 1 (Marsaglia & Tsang; shape < 1 boosted). */
double rng_gamma(rng *r, double shape);
/* Beta(a, b), a, b > 0, as a ratio of gammas; exact 0 or 1 only for tiny shapes. */
double rng_beta(rng *r, double a, double b);
/* Poisson with the given mean (>= 0): multiplication method below 30, PTRS above. */
uint64_t rng_poisson(rng *r, double mean);

/* Zipf over 1..n with exponent s > 0 (P(k) proportional to k^-s), by Hörmann and
 * Derflinger's rejection-inversion: O(1) memory and expected time, no table. */
typedef struct rng_zipf {
    uint64_t n;
    double s;
    double h_x1, h_n, cut;
} rng_zipf;

void rng_zipf_init(rng_zipf *z, uint64_t n, double s);
uint64_t rng_zipf_next(rng *r, const rng_zipf *z);

#endif
