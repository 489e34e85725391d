/*
 * models.h -- the model fields of every member (SPEC §3, §4) as the rule engine reads
 * them: RFM, persona and CLV, computed by a refresh at some *now*, stored in the store
 * (store/store_models.h) and loaded back; plus spend_trend and the built-in "Declining
 * high value" set (SPEC §4.4), which are computed from orders at any now.
 *
 * Consent (SPEC §1.5): a member without profiling consent at the refresh's now gets null
 * fields and is left out of every fit and of RFM's population.
 */
#ifndef PATRON_MODELS_MODELS_H
#define PATRON_MODELS_MODELS_H

#include "core/db.h"
#include "models/personas.h"
#include "models/rfm.h"

#include <stddef.h>
#include <stdint.h>

typedef struct models_state {
    int64_t as_of; /* now of the last refresh; PATRON_NULL_TS = never */
    int have_rfm, have_personas, have_clv;
    uint32_t n;                     /* members covered (indexes 0..n-1; later ones: null) */
    uint8_t *rfm_r, *rfm_f, *rfm_m; /* 1..5; 0 = null */
    int16_t *rfm_score;             /* e.g. 545; 0 = null */
    uint8_t *rfm_segment;           /* 0 = null, else 1 + index into models_rfm_segment_names[] */
    int16_t *persona;               /* persona id 1..k; -1 = null */
    double *p_alive, *expected_orders, *clv; /* NAN = null; clv in currency units */
} models_state;

/* "Champions", "Loyal Customers", ... (RFM_NSEGMENTS = 10 names, see rfm.h). */
extern const char *const models_rfm_segment_names[];

typedef struct models_opts {
    int k;             /* personas: 2..10, or 0 = auto (default) */
    uint64_t seed;     /* personas (default 1) */
    int64_t horizon;   /* CLV horizon, seconds (default 365 d) */
    double discount;   /* continuous yearly discount rate (default 0) */
} models_opts;

void models_opts_init(models_opts *o);

/* What a refresh did, for printing: step times in seconds and the fitted models. */
typedef struct models_report {
    double t_features, t_rfm, t_personas, t_clv_fit, t_clv_score, t_store;
    size_t eligible;
    personas_model personas;
    int clv_ok;
    char clv_error[256];
    double r, alpha, a, b, loglik; /* BG/NBD, unit days */
    int gg_ok;
    double p, q, gamma, gg_loglik;
    int64_t run_id;
} models_report;

/* Loads the fields of the latest stored refresh (and of a later `personas fit`, which
 * replaces the persona field).  With none stored: PATRON_OK with as_of =
 * PATRON_NULL_TS and every have_* 0.  *ms is overwritten (free it with
 * models_state_free). */
int models_load(patron_db *db, models_state *ms, patron_error *err);
/* Computes RFM, personas and CLV at now with default options, stores the run and fills
 * *ms (overwritten). */
int models_refresh(patron_db *db, int64_t now, models_state *ms, patron_error *err);
int models_refresh_with(patron_db *db, int64_t now, const models_opts *o, models_state *ms,
                        models_report *rep, patron_error *err);
void models_state_free(models_state *ms);
/* Attaches the last stored refresh's fields (rfm.*, persona, clv, p_alive,
 * expected_orders) as member columns the rule engine reads (members/view.h extcol).
 * Without a stored refresh they stay null. */
int models_attach(patron_db *db, patron_error *err);
/* Lazy refresh (issue: "models refresh when data changed, on the first read that needs
 * them").  A refresh records the store's data version (store_data_bump: every committed
 * import bumps it); the models are stale when none is stored or the data changed since.
 * models_ensure refreshes stale models at now, marks every member touched for the
 * segments that read model fields (models_touch_all) and re-attaches the fields;
 * *refreshed says whether it did.  Time passing alone does not make models stale. */
int models_stale(patron_db *db, int *stale, patron_error *err);
int models_ensure(patron_db *db, int64_t now, int *refreshed, patron_error *err);
void models_touch_all(patron_db *db);
/* The built-in segment models_attach() registers (SPEC 4.4), usable in in_segment() and
 * `patron segment members`. */
#define MODELS_DECLINING_SEGMENT "Declining high value"

/* Fits personas alone at now, stores them as a "personas" run and returns the model;
 * persona ids of all members into id (n_members slots, -1 = none) when id is not NULL. */
int models_personas_fit(patron_db *db, int64_t now, int k, uint64_t seed, personas_model *pm,
                        int16_t *id, patron_error *err);
/* The latest stored personas (from a refresh or a personas fit); *as_of their now. */
int models_personas_load(patron_db *db, personas_model *pm, int64_t *as_of, patron_error *err);

/* Sets the model fields of member m on a JSON object, under the rule-language names
 * (SPEC §3): "rfm.r", "rfm.f", "rfm.m", "rfm.score", "rfm.segment", "persona", "clv",
 * "p_alive", "expected_orders" (null when not scored or m >= ms->n) and "models_as_of"
 * (null when never refreshed).  For `member show --json`.  o is a jansson json_t *. */
struct json_t;
void models_member_json(const models_state *ms, uint32_t m, struct json_t *o);

/* RFM at now without storing (for `patron rfm`): per-member scores (n_members slots,
 * 0 = not scored) and the segment table.  Revenue is the members' net spend. */
typedef struct models_rfm_row {
    size_t members;
    double revenue, mean_r, mean_f, mean_m; /* means of recency_days, frequency, monetary */
} models_rfm_row;
typedef struct models_rfm_table {
    size_t members;
    double revenue;
    models_rfm_row rows[RFM_NSEGMENTS]; /* by segment index */
    uint8_t *r, *f, *m, *segment;
    int16_t *score;
} models_rfm_table;
/* *seconds (NULL allowed) receives the time of the scoring step alone. */
int models_rfm_at(patron_db *db, int64_t now, models_rfm_table *t, double *seconds,
                  patron_error *err);
void models_rfm_table_release(models_rfm_table *t);

/* SPEC §4.4: (spend in (now-90d, now] - spend in (now-180d, now-90d]) /
 * max(spend in (now-180d, now-90d], 1), spend net of returns in currency units.  The
 * CSR index must be built (db_csr_build). */
double models_spend_trend(const patron_db *db, uint32_t member, int64_t now);

/* The built-in segment "Declining high value" (SPEC §4.4): among members with profiling
 * consent and prior-window spend > 0, those in the top quintile of prior-window spend
 * (by RFM's rule: at least 80% of them spent strictly less) whose spend_trend <= -0.5.
 * Member indexes in increasing order into out (n_members slots), their count into
 * *n_out. */
int models_declining_high_value(patron_db *db, int64_t now, uint32_t *out, size_t *n_out,
                                patron_error *err);

#endif
