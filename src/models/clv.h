/*
 * clv.h -- customer lifetime value from the members' own orders (SPEC §4.3): the
 * BG/NBD + Gamma-Gamma inputs built from the in-memory model, the fit, and per-member
 * scores (p_alive, expected_orders over a horizon, clv).
 *
 * Conventions (those of the published CDNOW analyses): orders only (returns and voided
 * orders are not purchases), several orders on one UTC calendar day are one purchase;
 * x = purchase days after the first, t_x = days from the first purchase day to the
 * last, T = time from the start of the first purchase day to now, all divided by the
 * unit (1 day or 7 days).  Spend per repeat purchase day (Gamma-Gamma's m_x) is the net
 * amount (orders and returns) dated after the first purchase day, divided by x.
 * Members without profiling consent or without an order at now are not included.
 */
#ifndef PATRON_MODELS_CLV_H
#define PATRON_MODELS_CLV_H

#include "core/db.h"
#include "models/bgnbd.h"
#include "models/gammagamma.h"

typedef struct clv_inputs {
    size_t n;
    uint32_t *member;         /* member index of row i */
    double *x, *t_x, *T, *m;  /* m: mean spend per repeat day in currency units; 0 if x = 0 */
    int64_t first_ts, last_ts; /* data range used (orders), PATRON_NULL_TS if none */
} clv_inputs;

/* Builds the inputs at now in unit seconds (TIME_DAY or 7 * TIME_DAY).  eligible
 * (n_members slots) says who may be included; NULL = everyone with profiling consent. */
int clv_inputs_build(patron_db *db, int64_t now, int64_t unit, const uint8_t *eligible,
                     clv_inputs *out, patron_error *err);
void clv_inputs_release(clv_inputs *in);

typedef struct clv_model {
    bgnbd_params bg;
    double ll;
    size_t n;      /* customers in the BG/NBD fit */
    int have_gg;   /* 0 when Gamma-Gamma could not be fitted (fewer than 2 repeaters) */
    gg_params gg;
    double gg_ll;
    size_t n_gg;   /* repeat customers in the Gamma-Gamma fit */
    int64_t unit;  /* seconds per time unit */
} clv_model;

/* Fits BG/NBD on all rows and Gamma-Gamma on rows with x > 0 and m > 0. */
int clv_fit(const clv_inputs *in, int64_t unit, clv_model *out, patron_error *err);

/* Per-row scores over horizon seconds with a continuous yearly discount rate (0 = none).
 * Arrays are caller-allocated with in->n slots. clv is in currency units. */
void clv_score(const clv_model *mod, const clv_inputs *in, int64_t horizon, double discount,
               double *p_alive, double *expected_orders, double *clv);

/*
 * Calibration / holdout validation (`patron clv validate --split DATE`): BG/NBD fitted on
 * the orders up to split (the calibration, conventions as above with now = split), then
 * compared with what happened in (split, now]:
 *  - per calibration frequency x = 0..6 and 7+: customers, mean actual repeat purchase
 *    days in the holdout, mean E[Y(holdout) | x, t_x, T];
 *  - the cumulative tracking curve per unit period since the earliest first purchase:
 *    actual repeat purchase days, and the expectation sum_i E[X(t - birth_i)] over the
 *    customers born by t (each customer's first purchase day is its birth), as in BTYD;
 *  - the mean absolute error per customer of holdout predictions.
 * Customers are those with a first purchase by split (and profiling consent).
 */
enum { CLV_VALIDATE_BINS = 8 };

typedef struct clv_validation {
    clv_model model;
    double holdout;                      /* holdout length in units */
    size_t bin_n[CLV_VALIDATE_BINS];     /* customers with calibration x = bin (7 = 7+) */
    double bin_actual[CLV_VALIDATE_BINS], bin_expected[CLV_VALIDATE_BINS]; /* means */
    double actual_total, expected_total; /* holdout repeat purchases, summed */
    double mae;                          /* mean |actual - expected| per customer */
    size_t periods;                      /* tracking curve: periods 1..periods */
    double *cum_actual, *cum_expected;   /* owned; clv_validation_release() */
    int64_t start;                       /* start of period 1 (the earliest first purchase day) */
} clv_validation;

int clv_validate(patron_db *db, int64_t split, int64_t now, int64_t unit, clv_validation *out,
                 patron_error *err);
void clv_validation_release(clv_validation *v);

#endif
