/*
 * personas.h -- personas: k-means over standardized behavioural features of the members
 * with profiling consent and at least one order (SPEC §4.2).
 *
 * Features: monetary (net spend), frequency (orders), recency_days, aov (monetary /
 * frequency) and tenure_days (now - enrolled_at), always; then, when the data holds them,
 * the share of item spend in each of the (at most 4) categories with the most spend, the
 * share of orders in each of the (at most 3) busiest purchase channels, the response rate
 * (clicked or converted / sent) on each of the (at most 3) message channels with the most
 * sends, and the redemptions of the last 365 days.  Spend, frequency, AOV and
 * redemptions enter as log(1 + max(v, 0)) -- they are heavy-tailed, and a few wholesale
 * buyers would otherwise be clusters of their own -- then every feature is standardized
 * (population sd).
 *
 * Persona ids are 1..k, ordered by centroid (highest spend first, then frequency, ...),
 * so the same data and seed always give the same ids.
 */
#ifndef PATRON_MODELS_PERSONAS_H
#define PATRON_MODELS_PERSONAS_H

#include "core/db.h"

#include <stddef.h>
#include <stdint.h>

enum { PERSONAS_BASEF = 5, PERSONAS_MAXF = 16, PERSONAS_MAXK = 10 };

/* What a feature measures (how it is transformed and described). */
enum { PF_LOG, PF_PLAIN, PF_CATEGORY, PF_CHANNEL, PF_RESPONSE, PF_REDEEM };

/* The features of a fit: the 5 base ones first (monetary, frequency, recency_days, aov,
 * tenure_days), then those the data supports. */
typedef struct personas_feats {
    int n;
    uint8_t kind[PERSONAS_MAXF];
    char name[PERSONAS_MAXF][72];  /* "category_share:Shoes", "response_rate:push", ... */
    char label[PERSONAS_MAXF][48]; /* "Shoes", "push" (for descriptions) */
} personas_feats;

typedef struct persona {
    size_t size;
    double centre[PERSONAS_MAXF];   /* mean of the members' original values */
    double centre_z[PERSONAS_MAXF]; /* centroid in standardized units */
    char description[384]; /* "frequent high-spend app shoppers, mostly Shoes, respond to push" */
} persona;

typedef struct personas_model {
    int k;
    int k_auto;       /* 1 when k was chosen by silhouette */
    uint64_t seed;
    personas_feats feat;
    double mean[PERSONAS_MAXF], sd[PERSONAS_MAXF]; /* of the transformed features */
    double inertia;   /* in standardized units */
    double silhouette; /* of the chosen k on the sample (NAN when k was given) */
    size_t members;
    persona p[PERSONAS_MAXK];
} personas_model;

/* Chooses the features (*fs) and computes their original values (n x fs->n, row-major)
 * for the members with eligible[m] (n_members slots), in member order; *rows and
 * *members are mem_alloc'd.  Needs the member view (db_view_ensure). */
int personas_features(patron_db *db, int64_t now, const uint8_t *eligible,
                      personas_feats *fs, double **rows, uint32_t **members, size_t *n,
                      patron_error *err);

/* The 5 base features alone (fits stored before the others existed). */
void personas_feats_base(personas_feats *fs);

/* Fits k personas (k = 0: choose 2..10 by silhouette on a sample) over raw feature rows
 * with the features fs; id[i] (caller's, n slots) receives the persona id 1..k of row i. */
int personas_fit(const double *raw, size_t n, const personas_feats *fs, int k, uint64_t seed,
                 personas_model *pm, int16_t *id, patron_error *err);

#endif
