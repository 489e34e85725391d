/*
 * test_kmeans.c -- k-means (src/models/kmeans.c): the iris reference (k = 3, raw
 * features, the global optimum 78.8514414261 with sizes 50/62/38), results identical
 * for any thread count and for a seed, and a silhouette that prefers the true k.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "ingest/input.h"
#include "ingest/rng.h"
#include "models/kmeans.h"
#include "base/num.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_iris(void **state)
{
    (void)state;
    const char *dir = getenv("PATRON_SHARED_DATA");
    char path[512];
    snprintf(path, sizeof path, "%s/kmeans_reference/iris.csv", dir ? dir : "../shared/data");
    csv_reader *r;
    patron_error err = {0};
    assert_int_equal(csv_open(path, ',', &r, &err), 0);
    const csv_field *f;
    size_t nf, n = 0;
    double X[150 * 4];
    assert_int_equal(csv_next(r, &f, &nf, &err), 1); /* header */
    while (csv_next(r, &f, &nf, &err) == 1) {
        assert_true(n < 150 && nf == 5);
        for (int j = 0; j < 4; j++)
            assert_int_equal(num_parse_double(f[j].p, f[j].n, &X[n * 4 + j]), 0);
        n++;
    }
    csv_free(r);
    assert_int_equal(n, 150);
    kmeans_opts o;
    kmeans_opts_init(&o, 3);
    double c[12], inertia;
    uint32_t a[150];
    assert_int_equal(kmeans_fit(X, n, 4, &o, c, a, &inertia, &err), 0);
    if (fabs(inertia - 78.8514414261) > 1e-6)
        fail_msg("iris inertia %.10f, want 78.8514414261", inertia);
    int size[3] = {0, 0, 0};
    for (size_t i = 0; i < n; i++)
        size[a[i]]++;
    int s50 = 0, s62 = 0, s38 = 0;
    for (int k = 0; k < 3; k++) {
        s50 += size[k] == 50;
        s62 += size[k] == 62;
        s38 += size[k] == 38;
    }
    assert_true(s50 == 1 && s62 == 1 && s38 == 1);
    /* The setosa centre (5.006, 3.428, 1.462, 0.246). */
    int found = 0;
    for (int k = 0; k < 3; k++)
        found |= fabs(c[k * 4] - 5.006) < 1e-9 && fabs(c[k * 4 + 3] - 0.246) < 1e-9;
    assert_true(found);
}

/* Blobs around 5 centres in 6 dimensions. */
static double *blobs(size_t n, size_t d, uint64_t seed)
{
    double *X = malloc(n * d * sizeof *X);
    rng g;
    rng_seed(&g, seed);
    for (size_t i = 0; i < n; i++) {
        int c = (int)rng_below(&g, 5);
        for (size_t j = 0; j < d; j++)
            X[i * d + j] = 4.0 * (double)((c * 7 + (int)j * 3) % 5) + rng_normal(&g);
    }
    return X;
}

static void test_threads_and_seed(void **state)
{
    (void)state;
    size_t n = 30000, d = 6;
    double *X = blobs(n, d, 3);
    double c1[8 * 6], c2[8 * 6], c3[8 * 6], i1, i2, i3;
    uint32_t *a1 = malloc(n * 4), *a2 = malloc(n * 4), *a3 = malloc(n * 4);
    kmeans_opts o;
    kmeans_opts_init(&o, 8);
    o.restarts = 3;
    o.seed = 11;
    patron_error err = {0};
    o.threads = 1;
    assert_int_equal(kmeans_fit(X, n, d, &o, c1, a1, &i1, &err), 0);
    o.threads = 2;
    assert_int_equal(kmeans_fit(X, n, d, &o, c2, a2, &i2, &err), 0);
    o.threads = 3;
    assert_int_equal(kmeans_fit(X, n, d, &o, c3, a3, &i3, &err), 0);
    assert_memory_equal(c1, c2, sizeof c1);
    assert_memory_equal(c1, c3, sizeof c1);
    assert_memory_equal(a1, a2, n * 4);
    assert_memory_equal(a1, a3, n * 4);
    assert_true(i1 == i2 && i1 == i3);
    /* Silhouette: the 5 generating blobs beat 2 and 8 clusters. */
    double s[3];
    int ks[3] = {2, 5, 8};
    for (int t = 0; t < 3; t++) {
        kmeans_opts_init(&o, ks[t]);
        o.restarts = 3;
        assert_int_equal(kmeans_fit(X, n, d, &o, c1, a1, &i1, &err), 0);
        s[t] = kmeans_silhouette(X, n, d, a1, ks[t], 1500, 5);
    }
    assert_true(s[1] > s[0] && s[1] > s[2]);
    free(X), free(a1), free(a2), free(a3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_iris),
        cmocka_unit_test(test_threads_and_seed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
