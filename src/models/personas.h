/*
 * personas.h -- personas: k-means over standardized behavioural features of the members
 * with profiling consent and at least one order (SPEC §4.2).
 *
 * Features (what the in-memory model holds today): monetary (net spend), frequency
 * (orders), recency_days, aov (monetary / frequency) and tenure_days (now - enrolled_at).
 * Spend, frequency and AOV enter as log(1 + max(v, 0)) -- they are heavy-tailed, and a
 * few wholesale buyers would otherwise be clusters of their own -- then every feature is
 * standardized (population sd).  Category shares, channel engagement and redemption
 * activity join when line items and events are loaded into memory.
 *
 * Persona ids are 1..k, ordered by centroid (highest spend first, then frequency, ...),
 * so the same data and seed always give the same ids.
 */
#ifndef PATRON_MODELS_PERSONAS_H
#define PATRON_MODELS_PERSONAS_H

#include "core/db.h"

#include <stddef.h>
#include <stdint.h>

enum { PERSONAS_NFEAT = 5, PERSONAS_MAXK = 10 };

extern const char *const personas_feature_names[PERSONAS_NFEAT];

typedef struct persona {
    size_t size;
    double centre[PERSONAS_NFEAT];   /* mean of the members' original values */
    double centre_z[PERSONAS_NFEAT]; /* centroid in standardized units */
    char description[160]; /* "frequent high-spend shoppers, recent" */
} persona;

typedef struct personas_model {
    int k;
    int k_auto;       /* 1 when k was chosen by silhouette */
    uint64_t seed;
    double mean[PERSONAS_NFEAT], sd[PERSONAS_NFEAT]; /* of the transformed features */
    double inertia;   /* in standardized units */
    double silhouette; /* of the chosen k on the sample (NAN when k was given) */
    size_t members;
    persona p[PERSONAS_MAXK];
} personas_model;

/* Original feature values (n x PERSONAS_NFEAT, row-major) of the members with
 * eligible[m] (n_members slots), in member order; *rows and *members are mem_alloc'd. */
int personas_features(patron_db *db, int64_t now, const uint8_t *eligible, double **rows,
                      uint32_t **members, size_t *n, patron_error *err);

/* Fits k personas (k = 0: choose 2..10 by silhouette on a sample) over raw feature rows;
 * id[i] (caller's, n slots) receives the persona id 1..k of row i. */
int personas_fit(const double *raw, size_t n, int k, uint64_t seed, personas_model *pm,
                 int16_t *id, patron_error *err);

#endif
