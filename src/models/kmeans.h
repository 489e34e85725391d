/*
 * kmeans.h -- k-means clustering: k-means++ seeding, Lloyd iterations parallel over
 * rows, several restarts with the best inertia kept, and a sampled silhouette for
 * choosing k.
 *
 * Data are row-major n x d doubles.  Results are deterministic for a seed and do not
 * depend on the number of threads: rows are cut into fixed blocks whose partial sums are
 * added in block order, whichever thread computed them.
 */
#ifndef PATRON_MODELS_KMEANS_H
#define PATRON_MODELS_KMEANS_H

#include "patron/patron.h"

#include <stddef.h>
#include <stdint.h>

typedef struct kmeans_opts {
    int k;
    int restarts;  /* k-means++ seedings tried (default 10) */
    int max_iter;  /* Lloyd iterations per restart (default 300) */
    double tol;    /* stop when the centres move less than tol x mean variance (1e-4) */
    uint64_t seed;
    int threads;   /* default 2 */
} kmeans_opts;

void kmeans_opts_init(kmeans_opts *o, int k);

/* Clusters X.  centers (k x d) and assign (n) are caller-allocated; *inertia receives
 * the sum of squared distances to the assigned centres.  PATRON_EINPUT when n < k or
 * k < 1. */
int kmeans_fit(const double *X, size_t n, size_t d, const kmeans_opts *o, double *centers,
               uint32_t *assign, double *inertia, patron_error *err);

/* k-means++ seeding alone (greedy, 2 + floor(ln k) candidates per step) into centers. */
int kmeans_seed(const double *X, size_t n, size_t d, int k, uint64_t seed, double *centers);

/* Lloyd iterations from the given centres (updated in place) for at most max_iter
 * iterations (tol as in kmeans_opts; tol < 0: run exactly max_iter unless labels stop
 * changing).  Returns the iterations done; assign and *inertia as in kmeans_fit. */
int kmeans_lloyd(const double *X, size_t n, size_t d, int k, double *centers, int max_iter,
                 double tol, int threads, uint32_t *assign, double *inertia);

/* Mean silhouette over a sample of at most `sample` rows (all rows when n <= sample),
 * computed among the sampled rows only; deterministic for the seed. */
double kmeans_silhouette(const double *X, size_t n, size_t d, const uint32_t *assign, int k,
                         size_t sample, uint64_t seed);

#endif
