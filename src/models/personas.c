/*
 * personas.c -- persona features, fit, stable ids and descriptions (see personas.h).
 *
 * Choosing k: on a deterministic sample of at most 20,000 members, k = 2..10 are each
 * fitted (3 restarts) and scored by the mean silhouette of 2,000 of them; the best k
 * (the smaller on a tie) is then fitted on everyone.  Descriptions name what sets a
 * persona apart: features whose centroid lies at least half a standard deviation from
 * the population, as words ("frequent high-spend shoppers, recent").
 */
#include "models/personas.h"

#include "base/err.h"
#include "base/mem.h"
#include "base/time.h"
#include "ingest/rng.h"
#include "models/kmeans.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { F_MONETARY, F_FREQUENCY, F_RECENCY, F_AOV, F_TENURE };

const char *const personas_feature_names[PERSONAS_NFEAT] = {"monetary", "frequency",
                                                            "recency_days", "aov", "tenure_days"};

static const int logged[PERSONAS_NFEAT] = {1, 1, 0, 1, 0};

int personas_features(patron_db *db, int64_t now, const uint8_t *eligible, double **rows,
                      uint32_t **members, size_t *n, patron_error *err)
{
    *rows = NULL;
    *members = NULL;
    *n = 0;
    if (db_csr_build(db) != PATRON_OK)
        return err_set(err, PATRON_ENOMEM, "out of memory");
    size_t nm = db->n_members, cnt = 0;
    for (size_t m = 0; m < nm; m++)
        cnt += eligible[m] != 0;
    double *X = mem_alloc_array(cnt ? cnt * PERSONAS_NFEAT : 1, sizeof *X);
    uint32_t *mem = mem_alloc_array(cnt ? cnt : 1, sizeof *mem);
    if (!X || !mem) {
        mem_free(X), mem_free(mem);
        return err_set(err, PATRON_ENOMEM, "out of memory");
    }
    size_t i = 0;
    for (uint32_t m = 0; m < nm; m++) {
        if (!eligible[m])
            continue;
        int64_t first = PATRON_NULL_TS, last = PATRON_NULL_TS, freq = 0, money = 0;
        for (uint32_t k = db->csr_off[m]; k < db->csr_off[m + 1]; k++) {
            uint32_t o = db->csr_ord[k];
            if (db->o_ts[o] > now)
                break;
            if (db->o_void[o])
                continue;
            money += db->o_amount[o];
            if (db->o_kind[o] == 0) {
                if (first == PATRON_NULL_TS)
                    first = db->o_ts[o];
                last = db->o_ts[o];
                freq++;
            }
        }
        int64_t since = db->enrolled_at[m] != PATRON_NULL_TS ? db->enrolled_at[m] : first;
        if (since == PATRON_NULL_TS || (first != PATRON_NULL_TS && first < since))
            since = first;
        double *r = X + i * PERSONAS_NFEAT;
        double mon = (double)money / PATRON_MONEY_SCALE;
        r[F_MONETARY] = mon;
        r[F_FREQUENCY] = (double)freq;
        r[F_RECENCY] = last == PATRON_NULL_TS ? 0.0 : (double)(now - last) / TIME_DAY;
        r[F_AOV] = freq ? mon / (double)freq : 0.0;
        r[F_TENURE] = since == PATRON_NULL_TS ? 0.0 : (double)(now - since) / TIME_DAY;
        mem[i++] = m;
    }
    *rows = X;
    *members = mem;
    *n = cnt;
    return PATRON_OK;
}

static double transform(int f, double v)
{
    return logged[f] ? log1p(v > 0 ? v : 0) : v;
}

/* Centroid order for ids: larger standardized spend first, then frequency, ... */
static const persona *sort_base;
static int cmp_persona(const void *a, const void *b)
{
    const persona *x = &sort_base[*(const int *)a], *y = &sort_base[*(const int *)b];
    for (int f = 0; f < PERSONAS_NFEAT; f++) {
        double u = f == F_RECENCY ? -x->centre_z[f] : x->centre_z[f];
        double v = f == F_RECENCY ? -y->centre_z[f] : y->centre_z[f];
        if (u != v)
            return u > v ? -1 : 1;
    }
    return *(const int *)a - *(const int *)b;
}

static void describe(persona *p)
{
    const double th = 0.5;
    const double *z = p->centre_z;
    char head[64] = "", tail[64] = "";
    size_t hn = 0, tn = 0;
#define ADD(buf, n, word) (n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s", n ? " " : "", word))
    if (z[F_FREQUENCY] >= th)
        ADD(head, hn, "frequent");
    else if (z[F_FREQUENCY] <= -th)
        ADD(head, hn, "occasional");
    if (z[F_MONETARY] >= th)
        ADD(head, hn, "high-spend");
    else if (z[F_MONETARY] <= -th)
        ADD(head, hn, "low-spend");
    if (z[F_AOV] >= th)
        ADD(head, hn, "big-basket");
    else if (z[F_AOV] <= -th)
        ADD(head, hn, "small-basket");
#undef ADD
#define ADDT(word) (tn += (size_t)snprintf(tail + tn, sizeof tail - tn, ", %s", word))
    if (z[F_RECENCY] <= -th)
        ADDT("recent");
    else if (z[F_RECENCY] >= th)
        ADDT("lapsed");
    if (z[F_TENURE] >= th)
        ADDT("long-standing");
    else if (z[F_TENURE] <= -th)
        ADDT("newly joined");
#undef ADDT
    snprintf(p->description, sizeof p->description, "%s shoppers%s", hn ? head : "typical", tail);
}

int personas_fit(const double *raw, size_t n, int k, uint64_t seed, personas_model *pm,
                 int16_t *id, patron_error *err)
{
    memset(pm, 0, sizeof *pm);
    if (k < 0 || k > PERSONAS_MAXK || k == 1)
        return err_set(err, PATRON_EUSAGE, "personas: k must be 2..%d or auto", PERSONAS_MAXK);
    if (n < (size_t)(k ? k : 2) || n < 2)
        return err_set(err, PATRON_EINPUT, "personas: %zu members with orders and profiling "
                       "consent; at least %d are needed", n, k ? k : 2);
    const size_t d = PERSONAS_NFEAT;
    double *Z = mem_alloc_array(n * d, sizeof *Z);
    uint32_t *assign = mem_alloc_array(n, sizeof *assign);
    double centers[PERSONAS_MAXK * PERSONAS_NFEAT];
    if (!Z || !assign) {
        mem_free(Z), mem_free(assign);
        return err_set(err, PATRON_ENOMEM, "out of memory");
    }
    for (size_t f = 0; f < d; f++) {
        double m = 0, m2 = 0;
        for (size_t i = 0; i < n; i++)
            m += transform((int)f, raw[i * d + f]);
        m /= (double)n;
        for (size_t i = 0; i < n; i++) {
            double t = transform((int)f, raw[i * d + f]) - m;
            m2 += t * t;
        }
        double sd = sqrt(m2 / (double)n);
        pm->mean[f] = m;
        pm->sd[f] = sd > 0 ? sd : 1.0;
        for (size_t i = 0; i < n; i++)
            Z[i * d + f] = (transform((int)f, raw[i * d + f]) - m) / pm->sd[f];
    }
    int rc = PATRON_OK;
    pm->silhouette = NAN;
    if (k == 0) {
        pm->k_auto = 1;
        /* A deterministic sample of at most 20,000 rows (selection sampling). */
        size_t ns = n < 20000 ? n : 20000, got = 0;
        double *S = mem_alloc_array(ns * d, sizeof *S);
        uint32_t *sa = mem_alloc_array(ns, sizeof *sa);
        if (!S || !sa) {
            mem_free(S), mem_free(sa);
            rc = err_set(err, PATRON_ENOMEM, "out of memory");
            goto out;
        }
        rng g;
        rng_seed(&g, seed ^ 0x5eed5a3b1e5ULL);
        for (size_t i = 0; i < n && got < ns; i++)
            if ((double)(n - i) * rng_double(&g) < (double)(ns - got))
                memcpy(S + d * got++, Z + i * d, d * sizeof *S);
        double best = -2.0;
        int kmax = got < (size_t)PERSONAS_MAXK ? (int)got : PERSONAS_MAXK;
        for (int kk = 2; kk <= kmax && rc == PATRON_OK; kk++) {
            kmeans_opts o;
            kmeans_opts_init(&o, kk);
            o.restarts = 3;
            o.seed = seed;
            double in;
            rc = kmeans_fit(S, got, d, &o, centers, sa, &in, err);
            if (rc == PATRON_OK) {
                double s = kmeans_silhouette(S, got, d, sa, kk, 2000, seed);
                if (s > best + 1e-12) {
                    best = s;
                    k = kk;
                }
            }
        }
        mem_free(S), mem_free(sa);
        pm->silhouette = best;
        if (rc)
            goto out;
    }
    kmeans_opts o;
    kmeans_opts_init(&o, k);
    o.restarts = 4;
    o.seed = seed;
    if ((rc = kmeans_fit(Z, n, d, &o, centers, assign, &pm->inertia, err)))
        goto out;
    pm->k = k;
    pm->seed = seed;
    pm->members = n;
    persona tmp[PERSONAS_MAXK];
    memset(tmp, 0, sizeof tmp);
    for (int c = 0; c < k; c++)
        memcpy(tmp[c].centre_z, centers + (size_t)c * d, d * sizeof(double));
    for (size_t i = 0; i < n; i++) {
        persona *p = &tmp[assign[i]];
        p->size++;
        for (size_t f = 0; f < d; f++)
            p->centre[f] += raw[i * d + f];
    }
    int order[PERSONAS_MAXK], rank[PERSONAS_MAXK];
    for (int c = 0; c < k; c++)
        order[c] = c;
    sort_base = tmp;
    qsort(order, (size_t)k, sizeof *order, cmp_persona);
    for (int r = 0; r < k; r++) {
        persona *p = &pm->p[r];
        *p = tmp[order[r]];
        rank[order[r]] = r;
        for (size_t f = 0; f < d; f++)
            p->centre[f] = p->size ? p->centre[f] / (double)p->size : NAN;
        describe(p);
    }
    for (size_t i = 0; i < n; i++)
        id[i] = (int16_t)(1 + rank[assign[i]]);
out:
    mem_free(Z), mem_free(assign);
    return rc;
}
