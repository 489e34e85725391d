/*
 * models_bench.c -- timings of the model kernels on generated inputs of size N (default
 * 1M): RFM scoring, BG/NBD + Gamma-Gamma fit and scoring on BG/NBD-simulated customers,
 * and k-means Lloyd iterations on a feature matrix written out for the scikit-learn
 * comparison (bench/models.sh).  Not a test: prints a table.
 *
 *   models_bench rfm N | clv N | kmeans N K ITERS FILE_PREFIX THREADS
 */
#include "base/time.h"
#include "core/db.h"
#include "ingest/rng.h"
#include "members/view.h"
#include "models/bgnbd.h"
#include "models/clv.h"
#include "models/gammagamma.h"
#include "models/kmeans.h"
#include "models/personas.h"
#include "models/rfm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int bench_rfm(size_t n)
{
    double *rec = malloc(n * 8), *fr = malloc(n * 8), *mon = malloc(n * 8);
    uint8_t *r = malloc(n), *f = malloc(n), *m = malloc(n), *seg = malloc(n);
    int16_t *sc = malloc(n * 2);
    rng g;
    rng_seed(&g, 1);
    for (size_t i = 0; i < n; i++) {
        rec[i] = rng_double(&g) * 730.0;
        fr[i] = 1 + (double)rng_poisson(&g, 3.0);
        mon[i] = round(rng_lognormal(&g, 5.0, 1.2) * 100) / 100;
    }
    double best = 1e9;
    for (int rep = 0; rep < 5; rep++) {
        double t = now_s();
        rfm_compute(rec, fr, mon, NULL, n, r, f, m, sc, seg);
        t = now_s() - t;
        if (t < best)
            best = t;
    }
    printf("rfm        n=%zu  best of 5: %.1f ms\n", n, best * 1000);
    free(rec), free(fr), free(mon), free(r), free(f), free(m), free(seg), free(sc);
    return 0;
}

/* Customers simulated from BG/NBD (r 0.75, alpha 45, a 0.9, b 5; days), first purchase
 * uniform over two years, observed to day 730; spend Gamma-Gamma (p 3, q 8, gamma 150). */
static int bench_clv(size_t n)
{
    clv_inputs in = {0};
    in.n = n;
    in.x = malloc(n * 8), in.t_x = malloc(n * 8), in.T = malloc(n * 8), in.m = malloc(n * 8);
    in.member = malloc(n * 4);
    rng g;
    rng_seed(&g, 2);
    for (size_t i = 0; i < n; i++) {
        double lam = rng_gamma(&g, 0.75) / 45.0, p = rng_beta(&g, 0.9, 5.0);
        double T = floor(rng_double(&g) * 729.0) + 1.0, t = 0, last = 0;
        double nu = rng_gamma(&g, 8.0) / 150.0, sum = 0;
        int x = 0;
        for (;;) {
            t += rng_exp(&g, lam);
            if (t > T)
                break;
            x++;
            last = floor(t);
            sum += rng_gamma(&g, 3.0) / nu;
            if (rng_bernoulli(&g, p))
                break;
        }
        in.member[i] = (uint32_t)i;
        in.x[i] = x;
        in.t_x[i] = x ? last : 0;
        in.T[i] = T;
        in.m[i] = x ? sum / x : 0;
    }
    clv_model mod;
    patron_error err = {0};
    double t0 = now_s();
    if (clv_fit(&in, 86400, &mod, &err)) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    double t1 = now_s();
    double *pa = malloc(n * 8), *eo = malloc(n * 8), *cv = malloc(n * 8);
    clv_score(&mod, &in, 365 * 86400, 0.0, pa, eo, cv);
    double t2 = now_s();
    printf("clv        n=%zu  fit %.3f s (r %.4f alpha %.3f a %.4f b %.4f; p %.3f q %.3f gamma %.2f)"
           "  scoring %.0f ms\n",
           n, t1 - t0, mod.bg.r, mod.bg.alpha, mod.bg.a, mod.bg.b, mod.gg.p, mod.gg.q,
           mod.gg.gamma, (t2 - t1) * 1000);
    return 0;
}

/* Features like the personas' (5 standardized columns, a mixture of 8 groups); writes
 * PREFIX.X.bin (n x 5 doubles) and PREFIX.C.bin (k-means++ initial centres), then runs
 * ITERS Lloyd iterations from those centres and prints time and inertia. */
static int bench_kmeans(size_t n, int k, int iters, const char *prefix, int threads, size_t d)
{
    double *X = malloc(n * d * 8), *C = malloc((size_t)k * d * 8);
    uint32_t *a = malloc(n * 4);
    rng g;
    rng_seed(&g, 3);
    for (size_t i = 0; i < n; i++) {
        int c = (int)rng_below(&g, 8);
        for (size_t j = 0; j < d; j++)
            X[i * d + j] = 0.8 * (double)((c * 5 + (int)j * 3) % 7 - 3) + rng_normal(&g);
    }
    kmeans_seed(X, n, d, k, 7, C);
    char path[512];
    snprintf(path, sizeof path, "%s.X.bin", prefix);
    FILE *fx = fopen(path, "wb");
    fwrite(X, 8, n * d, fx);
    fclose(fx);
    snprintf(path, sizeof path, "%s.C.bin", prefix);
    FILE *fc = fopen(path, "wb");
    fwrite(C, 8, (size_t)k * d, fc);
    fclose(fc);
    double inertia, t = now_s();
    int it = kmeans_lloyd(X, n, d, k, C, iters, -1.0, threads, a, &inertia);
    t = now_s() - t;
    printf("{\"engine\":\"patron\",\"n\":%zu,\"d\":%zu,\"k\":%d,\"iterations\":%d,"
           "\"threads\":%d,\"seconds\":%.4f,\"inertia\":%.6f}\n", n, d, k, it, threads, t,
           inertia);
    return 0;
}

/* RFM over a real program's features (eligibility = at least one order; consent is not
 * read here, so the timing is of the scoring alone). */
static int bench_rfm_db(const char *path, const char *when)
{
    patron_db *db;
    patron_error err = {0};
    int64_t now;
    if (time_parse(when, strlen(when), &now) || patron_open(path, &db, &err)) {
        fprintf(stderr, "cannot open %s: %s\n", path, err.message);
        return 1;
    }
    db_csr_build(db);
    size_t n = db->n_members;
    db_features f = {malloc(n * 8), malloc(n * 8), malloc(n * 8)};
    double *fr = malloc(n * 8), *mon = malloc(n * 8);
    uint8_t *el = malloc(n), *r = malloc(n), *fq = malloc(n), *m = malloc(n), *seg = malloc(n);
    int16_t *sc = malloc(n * 2);
    double t = now_s();
    db_features_compute(db, now, &f);
    double tf = now_s() - t;
    for (size_t i = 0; i < n; i++) {
        fr[i] = (double)f.frequency[i];
        mon[i] = (double)f.monetary[i] / PATRON_MONEY_SCALE;
        el[i] = f.frequency[i] > 0;
    }
    double best = 1e9;
    for (int rep = 0; rep < 5; rep++) {
        t = now_s();
        rfm_compute(f.recency_days, fr, mon, el, n, r, fq, m, sc, seg);
        t = now_s() - t;
        if (t < best)
            best = t;
    }
    printf("rfm (db)   n=%zu  features %.0f ms, RFM best of 5: %.1f ms\n", n, tf * 1000, best * 1000);
    patron_close(db);
    return 0;
}

/* personas_fit (k auto, or K) over a real program's members with orders. */
static int bench_personas(const char *path, const char *when, int k)
{
    patron_db *db;
    patron_error err = {0};
    int64_t now;
    if (time_parse(when, strlen(when), &now) || patron_open(path, &db, &err)) {
        fprintf(stderr, "cannot open %s: %s\n", path, err.message);
        return 1;
    }
    db_csr_build(db);
    size_t n = db->n_members;
    db_features f = {malloc(n * 8), malloc(n * 8), malloc(n * 8)};
    db_features_compute(db, now, &f);
    uint8_t *el = malloc(n);
    for (size_t i = 0; i < n; i++)
        el[i] = f.frequency[i] > 0;
    double *rows;
    uint32_t *mem;
    size_t nr;
    double tv = now_s();
    if (db_view_ensure(db, &err)) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    double t = now_s();
    fprintf(stderr, "member view built in %.1f s\n", t - tv);
    personas_feats fs;
    personas_features(db, now, el, &fs, &rows, &mem, &nr, &err);
    double t1 = now_s();
    int16_t *id = malloc(nr * 2);
    personas_model pm;
    if (personas_fit(rows, nr, &fs, k, 1, &pm, id, &err)) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    double t2 = now_s();
    printf("personas   n=%zu  features %.2f s, fit (k %s -> %d, silhouette %.3f) %.2f s\n", nr,
           t1 - t, k ? "given" : "auto", pm.k, pm.silhouette, t2 - t1);
    for (int c = 0; c < pm.k; c++)
        printf("  %d  %7zu  %s\n", c + 1, pm.p[c].size, pm.p[c].description);
    patron_close(db);
    return 0;
}

/* Opens a program's database at a time; NULL after printing why not. */
static patron_db *open_at(const char *path, const char *when, int64_t *now)
{
    patron_db *db;
    patron_error err = {0};
    if (time_parse(when, strlen(when), now) || patron_open(path, &db, &err)) {
        fprintf(stderr, "cannot open %s at %s: %s\n", path, when, err.message);
        return NULL;
    }
    return db;
}

/* k-means on a real program's persona feature matrix (the members with an order,
 * transformed and standardized as personas_fit does): writes PREFIX.X.bin and
 * PREFIX.C.bin for the scikit-learn peer, then ITERS Lloyd iterations from those
 * centres; prints JSON. */
static int bench_kmeans_db(const char *path, const char *when, int k, int iters,
                           const char *prefix, int threads)
{
    int64_t now;
    patron_db *db = open_at(path, when, &now);
    if (!db)
        return 1;
    patron_error err = {0};
    db_csr_build(db);
    size_t n = db->n_members;
    uint8_t *el = malloc(n);
    for (size_t i = 0; i < n; i++)
        el[i] = db->csr_off[i + 1] > db->csr_off[i];
    double *X;
    uint32_t *mem;
    size_t nr;
    personas_feats fs;
    if (personas_features(db, now, el, &fs, &X, &mem, &nr, &err)) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    const size_t d = (size_t)fs.n;
    for (size_t f = 0; f < d; f++) {
        int lg = fs.kind[f] == PF_LOG || fs.kind[f] == PF_REDEEM;
        double m = 0, m2 = 0;
        for (size_t i = 0; i < nr; i++) {
            double *v = &X[i * d + f];
            if (lg)
                *v = log1p(*v > 0 ? *v : 0);
            m += *v;
        }
        m /= (double)nr;
        for (size_t i = 0; i < nr; i++)
            m2 += (X[i * d + f] - m) * (X[i * d + f] - m);
        double sd = sqrt(m2 / (double)nr);
        for (size_t i = 0; i < nr; i++)
            X[i * d + f] = (X[i * d + f] - m) / (sd > 0 ? sd : 1);
    }
    double *C = malloc((size_t)k * d * 8);
    uint32_t *a = malloc(nr * 4);
    kmeans_seed(X, nr, d, k, 7, C);
    char fn[512];
    snprintf(fn, sizeof fn, "%s.X.bin", prefix);
    FILE *fx = fopen(fn, "wb");
    fwrite(X, 8, nr * d, fx);
    fclose(fx);
    snprintf(fn, sizeof fn, "%s.C.bin", prefix);
    FILE *fc = fopen(fn, "wb");
    fwrite(C, 8, (size_t)k * d, fc);
    fclose(fc);
    double inertia, t = now_s();
    int it = kmeans_lloyd(X, nr, d, k, C, iters, -1.0, threads, a, &inertia);
    t = now_s() - t;
    printf("{\"engine\":\"patron\",\"n\":%zu,\"d\":%zu,\"k\":%d,\"iterations\":%d,"
           "\"threads\":%d,\"seconds\":%.4f,\"inertia\":%.6f}\n",
           nr, d, k, it, threads, t, inertia);
    patron_close(db);
    return 0;
}

/* BG/NBD + Gamma-Gamma fit and scoring on a real program's members (SPEC 4.3
 * conventions, unit days, profiling consent from the member view). */
static int bench_clv_db(const char *path, const char *when)
{
    int64_t now;
    patron_db *db = open_at(path, when, &now);
    if (!db)
        return 1;
    patron_error err = {0};
    if (db_view_ensure(db, &err) || db_csr_build(db)) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    size_t n = db->n_members;
    uint8_t *el = malloc(n);
    for (size_t i = 0; i < n; i++)
        el[i] = db_profiling_allowed(db, (uint32_t)i, now);
    clv_inputs in;
    double t0 = now_s();
    if (clv_inputs_build(db, now, 86400, el, &in, &err)) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    double t1 = now_s();
    clv_model mod;
    if (clv_fit(&in, 86400, &mod, &err)) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    double t2 = now_s();
    double *pa = malloc(in.n * 8), *eo = malloc(in.n * 8), *cv = malloc(in.n * 8);
    clv_score(&mod, &in, 365 * 86400, 0.0, pa, eo, cv);
    double t3 = now_s();
    printf("clv (db)   customers=%zu  inputs %.0f ms, fit %.3f s (r %.4f alpha %.3f a %.4f b %.4f;"
           " p %.3f q %.3f gamma %.2f), scoring %.0f ms\n",
           in.n, (t1 - t0) * 1000, t2 - t1, mod.bg.r, mod.bg.alpha, mod.bg.a, mod.bg.b, mod.gg.p,
           mod.gg.q, mod.gg.gamma, (t3 - t2) * 1000);
    clv_inputs_release(&in);
    patron_close(db);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 7 && strcmp(argv[1], "kmeansdb") == 0)
        return bench_kmeans_db(argv[2], argv[3], atoi(argv[4]), atoi(argv[5]), argv[6],
                               atoi(argv[7]));
    if (argc > 3 && strcmp(argv[1], "clvdb") == 0)
        return bench_clv_db(argv[2], argv[3]);
    if (argc > 4 && strcmp(argv[1], "personas") == 0)
        return bench_personas(argv[2], argv[3], atoi(argv[4]));
    if (argc > 3 && strcmp(argv[1], "rfmdb") == 0)
        return bench_rfm_db(argv[2], argv[3]);
    size_t n = argc > 2 ? (size_t)atol(argv[2]) : 1000000;
    if (argc > 1 && strcmp(argv[1], "rfm") == 0)
        return bench_rfm(n);
    if (argc > 1 && strcmp(argv[1], "clv") == 0)
        return bench_clv(n);
    if (argc > 6 && strcmp(argv[1], "kmeans") == 0)
        return bench_kmeans(n, atoi(argv[3]), atoi(argv[4]), argv[5], atoi(argv[6]),
                            argc > 7 ? (size_t)atoi(argv[7]) : 5);
    fprintf(stderr, "usage: models_bench rfm N | clv N | kmeans N K ITERS PREFIX THREADS\n"
                    "       models_bench rfmdb DB NOW | clvdb DB NOW | personas DB NOW K\n"
                    "       models_bench kmeansdb DB NOW K ITERS PREFIX THREADS\n");
    return 1;
}
