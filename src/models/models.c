/*
 * models.c -- the refresh that computes every member's model fields, their storage and
 * loading, spend_trend and "Declining high value" (see models.h).
 *
 * A refresh is one pass per model over the in-memory columns at now: behavioural
 * features (db_features_compute), RFM over the eligible members, personas (k-means),
 * BG/NBD + Gamma-Gamma fitted on day units and scored over the horizon.  The results go
 * to the store as one "refresh" run (parameters as JSON, fields as columns), so a later
 * process reads them back with models_load instead of refitting.
 */
#include "models/models.h"

#include "base/err.h"
#include "base/mem.h"
#include "base/time.h"
#include "models/clv.h"
#include "members/view.h"
#include "models/rfm.h"
#include "rules/eval.h"
#include "store/store_models.h"

#include <jansson.h>
#include <roaring/roaring.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *const models_rfm_segment_names[] = {
#define MODELS_X_NAME(i, s) s,
    RFM_SEGMENTS(MODELS_X_NAME)
#undef MODELS_X_NAME
};

void models_opts_init(models_opts *o)
{
    o->k = 0;
    o->seed = 1;
    o->horizon = 365 * (int64_t)TIME_DAY;
    o->discount = 0.0;
}

void models_state_free(models_state *ms)
{
    mem_free(ms->rfm_r), mem_free(ms->rfm_f), mem_free(ms->rfm_m);
    mem_free(ms->rfm_score), mem_free(ms->rfm_segment), mem_free(ms->persona);
    mem_free(ms->p_alive), mem_free(ms->expected_orders), mem_free(ms->clv);
    memset(ms, 0, sizeof *ms);
    ms->as_of = PATRON_NULL_TS;
}

static int state_alloc(models_state *ms, uint32_t n)
{
    memset(ms, 0, sizeof *ms);
    ms->as_of = PATRON_NULL_TS;
    ms->n = n;
    size_t c = n ? n : 1;
    ms->rfm_r = mem_calloc(c, 1);
    ms->rfm_f = mem_calloc(c, 1);
    ms->rfm_m = mem_calloc(c, 1);
    ms->rfm_score = mem_calloc(c, sizeof(int16_t));
    ms->rfm_segment = mem_calloc(c, 1);
    ms->persona = mem_alloc_array(c, sizeof(int16_t));
    ms->p_alive = mem_alloc_array(c, sizeof(double));
    ms->expected_orders = mem_alloc_array(c, sizeof(double));
    ms->clv = mem_alloc_array(c, sizeof(double));
    if (!ms->rfm_r || !ms->rfm_f || !ms->rfm_m || !ms->rfm_score || !ms->rfm_segment ||
        !ms->persona || !ms->p_alive || !ms->expected_orders || !ms->clv) {
        models_state_free(ms);
        return -1;
    }
    for (uint32_t i = 0; i < n; i++) {
        ms->persona[i] = -1;
        ms->p_alive[i] = ms->expected_orders[i] = ms->clv[i] = NAN;
    }
    return 0;
}

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- personas as JSON (the run's params) ------------------------------------------ */

static json_t *personas_json(const personas_model *pm)
{
    json_t *o = json_object(), *list = json_array(), *names = json_array();
    json_t *kinds = json_array(), *labels = json_array();
    const personas_feats *fs = &pm->feat;
    for (int f = 0; f < fs->n; f++) {
        json_array_append_new(names, json_string(fs->name[f]));
        json_array_append_new(kinds, json_integer(fs->kind[f]));
        json_array_append_new(labels, json_string(fs->label[f]));
    }
    json_object_set_new(o, "k", json_integer(pm->k));
    json_object_set_new(o, "k_auto", json_boolean(pm->k_auto));
    json_object_set_new(o, "seed", json_integer((json_int_t)pm->seed));
    json_object_set_new(o, "members", json_integer((json_int_t)pm->members));
    json_object_set_new(o, "inertia", json_real(pm->inertia));
    if (!isnan(pm->silhouette))
        json_object_set_new(o, "silhouette", json_real(pm->silhouette));
    json_object_set_new(o, "features", names);
    json_object_set_new(o, "feature_kinds", kinds);
    json_object_set_new(o, "feature_labels", labels);
    json_t *mean = json_array(), *sd = json_array();
    for (int f = 0; f < fs->n; f++) {
        json_array_append_new(mean, json_real(pm->mean[f]));
        json_array_append_new(sd, json_real(pm->sd[f]));
    }
    json_object_set_new(o, "mean", mean);
    json_object_set_new(o, "sd", sd);
    for (int c = 0; c < pm->k; c++) {
        const persona *p = &pm->p[c];
        json_t *e = json_object(), *ce = json_array(), *cz = json_array();
        for (int f = 0; f < fs->n; f++) {
            json_array_append_new(ce, json_real(isnan(p->centre[f]) ? 0.0 : p->centre[f]));
            json_array_append_new(cz, json_real(p->centre_z[f]));
        }
        json_object_set_new(e, "id", json_integer(c + 1));
        json_object_set_new(e, "size", json_integer((json_int_t)p->size));
        json_object_set_new(e, "centre", ce);
        json_object_set_new(e, "centre_z", cz);
        json_object_set_new(e, "description", json_string(p->description));
        json_array_append_new(list, e);
    }
    json_object_set_new(o, "personas", list);
    return o;
}

static int personas_from_json(json_t *o, personas_model *pm)
{
    memset(pm, 0, sizeof *pm);
    json_t *list = json_object_get(o, "personas");
    if (!json_is_array(list) || json_array_size(list) > PERSONAS_MAXK)
        return -1;
    pm->k = (int)json_array_size(list);
    pm->k_auto = json_is_true(json_object_get(o, "k_auto"));
    pm->seed = (uint64_t)json_integer_value(json_object_get(o, "seed"));
    pm->members = (size_t)json_integer_value(json_object_get(o, "members"));
    pm->inertia = json_number_value(json_object_get(o, "inertia"));
    json_t *s = json_object_get(o, "silhouette");
    pm->silhouette = s ? json_number_value(s) : NAN;
    /* Fits stored before the optional features have the 5 base ones and no kinds. */
    personas_feats *fs = &pm->feat;
    personas_feats_base(fs);
    json_t *names = json_object_get(o, "features"), *kinds = json_object_get(o, "feature_kinds"),
           *labels = json_object_get(o, "feature_labels");
    if (json_is_array(kinds)) {
        size_t nf = json_array_size(names);
        if (nf < PERSONAS_BASEF || nf > PERSONAS_MAXF || json_array_size(kinds) != nf ||
            json_array_size(labels) != nf)
            return -1;
        for (size_t f = 0; f < nf; f++) {
            const char *nm = json_string_value(json_array_get(names, f)),
                       *lb = json_string_value(json_array_get(labels, f));
            fs->kind[f] = (uint8_t)json_integer_value(json_array_get(kinds, f));
            snprintf(fs->name[f], sizeof fs->name[f], "%s", nm ? nm : "");
            snprintf(fs->label[f], sizeof fs->label[f], "%s", lb ? lb : "");
        }
        fs->n = (int)nf;
    }
    for (int f = 0; f < fs->n; f++) {
        pm->mean[f] = json_number_value(json_array_get(json_object_get(o, "mean"), (size_t)f));
        pm->sd[f] = json_number_value(json_array_get(json_object_get(o, "sd"), (size_t)f));
    }
    for (int c = 0; c < pm->k; c++) {
        json_t *e = json_array_get(list, (size_t)c);
        persona *p = &pm->p[c];
        p->size = (size_t)json_integer_value(json_object_get(e, "size"));
        for (int f = 0; f < fs->n; f++) {
            p->centre[f] = json_number_value(json_array_get(json_object_get(e, "centre"), (size_t)f));
            p->centre_z[f] = json_number_value(json_array_get(json_object_get(e, "centre_z"), (size_t)f));
        }
        const char *d = json_string_value(json_object_get(e, "description"));
        snprintf(p->description, sizeof p->description, "%s", d ? d : "");
    }
    return 0;
}

/* ---- refresh -------------------------------------------------------------------- */

/* Members eligible at now: profiling consent and at least one order. */
static uint8_t *eligible_members(patron_db *db, int64_t now, const db_features *f, size_t *n)
{
    uint8_t *el = mem_calloc(db->n_members ? db->n_members : 1, 1);
    if (!el)
        return NULL;
    size_t k = 0;
    for (uint32_t m = 0; m < db->n_members; m++) {
        el[m] = f->frequency[m] > 0 && db_profiling_allowed(db, m, now);
        k += el[m];
    }
    *n = k;
    return el;
}

static int fit_personas(patron_db *db, int64_t now, const uint8_t *el, int k, uint64_t seed,
                        personas_model *pm, int16_t *id, patron_error *err)
{
    double *rows;
    uint32_t *mem;
    size_t n;
    personas_feats fs;
    int rc = personas_features(db, now, el, &fs, &rows, &mem, &n, err);
    if (rc)
        return rc;
    int16_t *rid = mem_alloc_array(n ? n : 1, sizeof *rid);
    if (!rid) {
        rc = err_set(err, PATRON_ENOMEM, "out of memory");
    } else if ((rc = personas_fit(rows, n, &fs, k, seed, pm, rid, err)) == PATRON_OK && id) {
        for (uint32_t m = 0; m < db->n_members; m++)
            id[m] = -1;
        for (size_t i = 0; i < n; i++)
            id[mem[i]] = rid[i];
    }
    mem_free(rid), mem_free(rows), mem_free(mem);
    return rc;
}

static int store_state(patron_db *db, const models_state *ms, const char *kind, json_t *params,
                       int64_t data_from, int64_t data_to, size_t members, int64_t *run_id,
                       patron_error *err)
{
    const char *names[] = {"rfm_r", "rfm_f", "rfm_m", "rfm_score", "rfm_segment",
                           "persona", "p_alive", "expected_orders", "clv"};
    const void *data[] = {ms->rfm_r, ms->rfm_f, ms->rfm_m, ms->rfm_score, ms->rfm_segment,
                          ms->persona, ms->p_alive, ms->expected_orders, ms->clv};
    size_t elem[] = {1, 1, 1, 2, 1, 2, 8, 8, 8};
    size_t count[9];
    for (int i = 0; i < 9; i++)
        count[i] = ms->n;
    int only_persona = strcmp(kind, "personas") == 0;
    char *text = json_dumps(params, JSON_COMPACT | JSON_REAL_PRECISION(17));
    if (!text)
        return err_set(err, PATRON_ENOMEM, "out of memory");
    store_model_run run = {0, "", ms->as_of, (int64_t)time(NULL), data_from, data_to,
                           (int64_t)members, text};
    snprintf(run.kind, sizeof run.kind, "%s", kind);
    int rc = only_persona
                 ? store_model_run_put(db->st, &run, 1, names + 5, data + 5, count, elem + 5, run_id, err)
                 : store_model_run_put(db->st, &run, 9, names, data, count, elem, run_id, err);
    free(text);
    return rc;
}

int models_refresh_with(patron_db *db, int64_t now, const models_opts *o, models_state *ms,
                        models_report *rep, patron_error *err)
{
    {
        int vrc_ = db_view_ensure(db, err); /* consents (SPEC 1.5) live in the member view */
        if (vrc_ != PATRON_OK)
            return vrc_;
    }
    models_report local;
    if (!rep)
        rep = &local;
    memset(rep, 0, sizeof *rep);
    if (db_csr_build(db) != PATRON_OK)
        return err_set(err, PATRON_ENOMEM, "out of memory");
    /* Read first: data committed while this runs makes the run stale, never the reverse. */
    int64_t data_version;
    int rc0 = store_data_version(db->st, &data_version, err);
    if (rc0 != PATRON_OK)
        return rc0;
    uint32_t n = db->n_members;
    if (state_alloc(ms, n) != 0)
        return err_set(err, PATRON_ENOMEM, "out of memory");
    ms->as_of = now;
    double t0 = seconds();
    db_features f;
    f.recency_days = mem_alloc_array(n ? n : 1, sizeof(double));
    f.frequency = mem_alloc_array(n ? n : 1, sizeof(int64_t));
    f.monetary = mem_alloc_array(n ? n : 1, sizeof(int64_t));
    double *fr = mem_alloc_array(n ? n : 1, sizeof(double));
    double *mo = mem_alloc_array(n ? n : 1, sizeof(double));
    uint8_t *el = NULL;
    json_t *params = json_object();
    clv_inputs in = {0};
    int rc = PATRON_OK;
    if (!f.recency_days || !f.frequency || !f.monetary || !fr || !mo || !params) {
        rc = err_set(err, PATRON_ENOMEM, "out of memory");
        goto out;
    }
    db_features_compute(db, now, &f);
    for (uint32_t m = 0; m < n; m++) {
        fr[m] = (double)f.frequency[m];
        mo[m] = (double)f.monetary[m] / PATRON_MONEY_SCALE;
    }
    if (!(el = eligible_members(db, now, &f, &rep->eligible))) {
        rc = err_set(err, PATRON_ENOMEM, "out of memory");
        goto out;
    }
    double t1 = seconds();
    rep->t_features = t1 - t0;

    /* RFM */
    if (rfm_compute(f.recency_days, fr, mo, el, n, ms->rfm_r, ms->rfm_f, ms->rfm_m,
                    ms->rfm_score, ms->rfm_segment) != 0) {
        rc = err_set(err, PATRON_ENOMEM, "out of memory");
        goto out;
    }
    ms->have_rfm = 1;
    json_t *jr = json_object();
    json_object_set_new(jr, "members", json_integer((json_int_t)rep->eligible));
    json_object_set_new(params, "rfm", jr);
    double t2 = seconds();
    rep->t_rfm = t2 - t1;

    /* Personas: a failure (too few members) leaves the field null, not the refresh. */
    patron_error perr = {0};
    if (fit_personas(db, now, el, o->k, o->seed, &rep->personas, ms->persona, &perr) ==
        PATRON_OK) {
        ms->have_personas = 1;
        json_object_set_new(params, "personas", personas_json(&rep->personas));
    } else {
        if (perr.code == PATRON_ENOMEM) {
            rc = err_set(err, PATRON_ENOMEM, "out of memory");
            goto out;
        }
        json_object_set_new(params, "personas_error", json_string(perr.message));
    }
    double t3 = seconds();
    rep->t_personas = t3 - t2;

    /* CLV on day units. */
    if ((rc = clv_inputs_build(db, now, TIME_DAY, el, &in, err)))
        goto out;
    clv_model mod;
    patron_error cerr = {0};
    json_t *jc = json_object();
    json_object_set_new(jc, "unit", json_string("day"));
    json_object_set_new(jc, "horizon_days", json_real((double)o->horizon / TIME_DAY));
    json_object_set_new(jc, "discount_rate", json_real(o->discount));
    if (clv_fit(&in, TIME_DAY, &mod, &cerr) == PATRON_OK) {
        double t4 = seconds();
        rep->t_clv_fit = t4 - t3;
        double *pa = mem_alloc_array(in.n ? in.n : 1, sizeof(double));
        double *eo = mem_alloc_array(in.n ? in.n : 1, sizeof(double));
        double *cv = mem_alloc_array(in.n ? in.n : 1, sizeof(double));
        if (!pa || !eo || !cv) {
            mem_free(pa), mem_free(eo), mem_free(cv);
            json_decref(jc);
            rc = err_set(err, PATRON_ENOMEM, "out of memory");
            goto out;
        }
        clv_score(&mod, &in, o->horizon, o->discount, pa, eo, cv);
        for (size_t i = 0; i < in.n; i++) {
            uint32_t m = in.member[i];
            ms->p_alive[m] = pa[i];
            ms->expected_orders[m] = eo[i];
            ms->clv[m] = cv[i];
        }
        mem_free(pa), mem_free(eo), mem_free(cv);
        rep->t_clv_score = seconds() - t4;
        ms->have_clv = 1;
        rep->clv_ok = 1;
        rep->r = mod.bg.r, rep->alpha = mod.bg.alpha, rep->a = mod.bg.a, rep->b = mod.bg.b;
        rep->loglik = mod.ll;
        json_object_set_new(jc, "customers", json_integer((json_int_t)mod.n));
        json_object_set_new(jc, "r", json_real(mod.bg.r));
        json_object_set_new(jc, "alpha", json_real(mod.bg.alpha));
        json_object_set_new(jc, "a", json_real(mod.bg.a));
        json_object_set_new(jc, "b", json_real(mod.bg.b));
        json_object_set_new(jc, "loglik", json_real(mod.ll));
        if (mod.have_gg) {
            rep->gg_ok = 1;
            rep->p = mod.gg.p, rep->q = mod.gg.q, rep->gamma = mod.gg.gamma;
            rep->gg_loglik = mod.gg_ll;
            json_object_set_new(jc, "repeat_customers", json_integer((json_int_t)mod.n_gg));
            json_object_set_new(jc, "p", json_real(mod.gg.p));
            json_object_set_new(jc, "q", json_real(mod.gg.q));
            json_object_set_new(jc, "gamma", json_real(mod.gg.gamma));
            json_object_set_new(jc, "gg_loglik", json_real(mod.gg_ll));
        }
    } else {
        if (cerr.code == PATRON_ENOMEM) {
            json_decref(jc);
            rc = err_set(err, PATRON_ENOMEM, "out of memory");
            goto out;
        }
        snprintf(rep->clv_error, sizeof rep->clv_error, "%.200s", cerr.message);
        json_object_set_new(jc, "error", json_string(cerr.message));
    }
    json_object_set_new(params, "clv", jc);

    json_object_set_new(params, "data_version", json_integer((json_int_t)data_version));
    double t5 = seconds();
    rc = store_state(db, ms, "refresh", params, in.first_ts, in.last_ts, rep->eligible,
                     &rep->run_id, err);
    rep->t_store = seconds() - t5;
out:
    clv_inputs_release(&in);
    json_decref(params);
    mem_free(f.recency_days), mem_free(f.frequency), mem_free(f.monetary);
    mem_free(fr), mem_free(mo), mem_free(el);
    if (rc != PATRON_OK)
        models_state_free(ms);
    return rc;
}

int models_refresh(patron_db *db, int64_t now, models_state *ms, patron_error *err)
{
    models_opts o;
    models_opts_init(&o);
    return models_refresh_with(db, now, &o, ms, NULL, err);
}

int models_personas_fit(patron_db *db, int64_t now, int k, uint64_t seed, personas_model *pm,
                        int16_t *id, patron_error *err)
{
    {
        int vrc_ = db_view_ensure(db, err); /* consents (SPEC 1.5) live in the member view */
        if (vrc_ != PATRON_OK)
            return vrc_;
    }
    if (db_csr_build(db) != PATRON_OK)
        return err_set(err, PATRON_ENOMEM, "out of memory");
    uint32_t n = db->n_members;
    db_features f;
    f.recency_days = mem_alloc_array(n ? n : 1, sizeof(double));
    f.frequency = mem_alloc_array(n ? n : 1, sizeof(int64_t));
    f.monetary = mem_alloc_array(n ? n : 1, sizeof(int64_t));
    models_state ms;
    int rc = PATRON_OK;
    uint8_t *el = NULL;
    memset(&ms, 0, sizeof ms);
    if (!f.recency_days || !f.frequency || !f.monetary || state_alloc(&ms, n) != 0) {
        rc = err_set(err, PATRON_ENOMEM, "out of memory");
        goto out;
    }
    db_features_compute(db, now, &f);
    size_t ne;
    if (!(el = eligible_members(db, now, &f, &ne))) {
        rc = err_set(err, PATRON_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = fit_personas(db, now, el, k, seed, pm, ms.persona, err)))
        goto out;
    ms.as_of = now;
    json_t *params = json_object();
    json_object_set_new(params, "personas", personas_json(pm));
    rc = store_state(db, &ms, "personas", params, PATRON_NULL_TS, PATRON_NULL_TS, ne, NULL, err);
    json_decref(params);
    if (rc == PATRON_OK && id)
        memcpy(id, ms.persona, (size_t)n * sizeof *id);
out:
    mem_free(f.recency_days), mem_free(f.frequency), mem_free(f.monetary), mem_free(el);
    models_state_free(&ms);
    return rc;
}

/* ---- loading -------------------------------------------------------------------- */

static int load_col(patron_db *db, int64_t run, const char *name, size_t elem, uint32_t n,
                    void *dst, patron_error *err)
{
    void *data;
    size_t count;
    int rc = store_model_column_get(db->st, run, name, elem, &data, &count, err);
    if (rc)
        return rc;
    if (count != n) {
        mem_free(data);
        return err_set(err, PATRON_ESTORE, "model column '%s' has %zu values, the run %u", name,
                       count, n);
    }
    memcpy(dst, data, count * elem);
    mem_free(data);
    return PATRON_OK;
}

/* The later of the latest refresh run and the latest personas run, for personas. */
static int latest_personas_run(patron_db *db, store_model_run *out, patron_error *err)
{
    store_model_run a, b;
    int ra = store_model_run_latest(db->st, "refresh", &a, err);
    if (ra != PATRON_OK && ra != PATRON_ENOTFOUND)
        return ra;
    int rb = store_model_run_latest(db->st, "personas", &b, err);
    if (rb != PATRON_OK && rb != PATRON_ENOTFOUND) {
        store_model_run_release(&a);
        return rb;
    }
    if (ra == PATRON_ENOTFOUND && rb == PATRON_ENOTFOUND)
        return err_set(err, PATRON_ENOTFOUND,
                       "no personas stored yet (run 'patron personas fit' or 'patron models refresh')");
    if (rb == PATRON_ENOTFOUND || (ra == PATRON_OK && a.id > b.id)) {
        *out = a;
        if (rb == PATRON_OK)
            store_model_run_release(&b);
    } else {
        *out = b;
        if (ra == PATRON_OK)
            store_model_run_release(&a);
    }
    return PATRON_OK;
}

int models_personas_load(patron_db *db, personas_model *pm, int64_t *as_of, patron_error *err)
{
    store_model_run run;
    int rc = latest_personas_run(db, &run, err);
    if (rc)
        return rc;
    json_error_t je;
    json_t *o = json_loads(run.params, 0, &je);
    json_t *p = o ? json_object_get(o, "personas") : NULL;
    if (!p)
        rc = err_set(err, PATRON_ENOTFOUND, "the latest model run has no personas%s",
                     o && json_object_get(o, "personas_error") ? " (too few members)" : "");
    else if (personas_from_json(p, pm) != 0)
        rc = err_set(err, PATRON_ESTORE, "stored personas are damaged");
    if (as_of)
        *as_of = run.as_of;
    json_decref(o);
    store_model_run_release(&run);
    return rc;
}

int models_load(patron_db *db, models_state *ms, patron_error *err)
{
    memset(ms, 0, sizeof *ms);
    ms->as_of = PATRON_NULL_TS;
    store_model_run run;
    int rc = store_model_run_latest(db->st, "refresh", &run, err);
    if (rc == PATRON_ENOTFOUND) {
        err_clear(err);
        return PATRON_OK;
    }
    if (rc)
        return rc;
    uint32_t n = (uint32_t)0;
    json_error_t je;
    json_t *o = json_loads(run.params, 0, &je);
    void *probe;
    size_t count;
    /* The run's member count is that of its columns. */
    if ((rc = store_model_column_get(db->st, run.id, "rfm_r", 1, &probe, &count, err)) == PATRON_OK) {
        mem_free(probe);
        n = (uint32_t)count;
    }
    if (rc == PATRON_OK && state_alloc(ms, n) != 0)
        rc = err_set(err, PATRON_ENOMEM, "out of memory");
    if (rc == PATRON_OK) {
        ms->as_of = run.as_of;
        const char *names[9] = {"rfm_r", "rfm_f", "rfm_m", "rfm_score", "rfm_segment",
                                "persona", "p_alive", "expected_orders", "clv"};
        void *dst[9] = {ms->rfm_r, ms->rfm_f, ms->rfm_m, ms->rfm_score, ms->rfm_segment,
                        ms->persona, ms->p_alive, ms->expected_orders, ms->clv};
        const size_t elem[9] = {1, 1, 1, 2, 1, 2, 8, 8, 8};
        for (int i = 0; i < 9 && rc == PATRON_OK; i++)
            rc = load_col(db, run.id, names[i], elem[i], n, dst[i], err);
        ms->have_rfm = json_object_get(o, "rfm") != NULL;
        ms->have_personas = json_object_get(o, "personas") != NULL;
        json_t *c = json_object_get(o, "clv");
        ms->have_clv = c && json_object_get(c, "r") != NULL;
    }
    json_decref(o);
    /* A later `personas fit` replaces the persona field when it covers the same members. */
    store_model_run pr;
    if (rc == PATRON_OK && store_model_run_latest(db->st, "personas", &pr, NULL) == PATRON_OK) {
        if (pr.id > run.id) {
            int16_t *p;
            size_t pc;
            if (store_model_column_get(db->st, pr.id, "persona", 2, (void **)&p, &pc, NULL) ==
                    PATRON_OK) {
                if (pc == n) {
                    memcpy(ms->persona, p, n * sizeof *p);
                    ms->have_personas = 1;
                }
                mem_free(p);
            }
        }
        store_model_run_release(&pr);
    }
    store_model_run_release(&run);
    if (rc != PATRON_OK)
        models_state_free(ms);
    return rc;
}

/* ---- member fields as JSON -------------------------------------------------------- */

static json_t *num_or_null(double v)
{
    return isnan(v) ? json_null() : json_real(v);
}

void models_member_json(const models_state *ms, uint32_t m, json_t *o)
{
    int in = m < ms->n;
    json_object_set_new(o, "rfm.r", in && ms->rfm_r[m] ? json_integer(ms->rfm_r[m]) : json_null());
    json_object_set_new(o, "rfm.f", in && ms->rfm_f[m] ? json_integer(ms->rfm_f[m]) : json_null());
    json_object_set_new(o, "rfm.m", in && ms->rfm_m[m] ? json_integer(ms->rfm_m[m]) : json_null());
    json_object_set_new(o, "rfm.score",
                        in && ms->rfm_score[m] ? json_integer(ms->rfm_score[m]) : json_null());
    json_object_set_new(o, "rfm.segment",
                        in && ms->rfm_segment[m]
                            ? json_string(models_rfm_segment_names[ms->rfm_segment[m] - 1])
                            : json_null());
    json_object_set_new(o, "persona",
                        in && ms->persona[m] >= 0 ? json_integer(ms->persona[m]) : json_null());
    json_object_set_new(o, "clv", in ? num_or_null(ms->clv[m]) : json_null());
    json_object_set_new(o, "p_alive", in ? num_or_null(ms->p_alive[m]) : json_null());
    json_object_set_new(o, "expected_orders", in ? num_or_null(ms->expected_orders[m]) : json_null());
    char when[TIME_FMT_LEN];
    if (ms->as_of != PATRON_NULL_TS)
        time_format(ms->as_of, when);
    json_object_set_new(o, "models_as_of",
                        ms->as_of != PATRON_NULL_TS ? json_string(when) : json_null());
}

/* ---- RFM table ------------------------------------------------------------------ */

void models_rfm_table_release(models_rfm_table *t)
{
    mem_free(t->r), mem_free(t->f), mem_free(t->m), mem_free(t->segment), mem_free(t->score);
    memset(t, 0, sizeof *t);
}

int models_rfm_at(patron_db *db, int64_t now, models_rfm_table *t, double *secs,
                  patron_error *err)
{
    {
        int vrc_ = db_view_ensure(db, err); /* consents (SPEC 1.5) live in the member view */
        if (vrc_ != PATRON_OK)
            return vrc_;
    }
    memset(t, 0, sizeof *t);
    if (db_csr_build(db) != PATRON_OK)
        return err_set(err, PATRON_ENOMEM, "out of memory");
    uint32_t n = db->n_members;
    size_t c = n ? n : 1;
    db_features f;
    f.recency_days = mem_alloc_array(c, sizeof(double));
    f.frequency = mem_alloc_array(c, sizeof(int64_t));
    f.monetary = mem_alloc_array(c, sizeof(int64_t));
    double *fr = mem_alloc_array(c, sizeof(double)), *mo = mem_alloc_array(c, sizeof(double));
    t->r = mem_alloc(c), t->f = mem_alloc(c), t->m = mem_alloc(c), t->segment = mem_alloc(c);
    t->score = mem_alloc_array(c, sizeof(int16_t));
    uint8_t *el = NULL;
    int rc = PATRON_OK;
    if (!f.recency_days || !f.frequency || !f.monetary || !fr || !mo || !t->r || !t->f ||
        !t->m || !t->segment || !t->score) {
        rc = err_set(err, PATRON_ENOMEM, "out of memory");
        goto out;
    }
    db_features_compute(db, now, &f);
    for (uint32_t m = 0; m < n; m++) {
        fr[m] = (double)f.frequency[m];
        mo[m] = (double)f.monetary[m] / PATRON_MONEY_SCALE;
    }
    if (!(el = eligible_members(db, now, &f, &t->members))) {
        rc = err_set(err, PATRON_ENOMEM, "out of memory");
        goto out;
    }
    double t0 = seconds();
    if (rfm_compute(f.recency_days, fr, mo, el, n, t->r, t->f, t->m, t->score, t->segment)) {
        rc = err_set(err, PATRON_ENOMEM, "out of memory");
        goto out;
    }
    if (secs)
        *secs = seconds() - t0;
    for (uint32_t m = 0; m < n; m++) {
        if (!t->segment[m])
            continue;
        models_rfm_row *w = &t->rows[t->segment[m] - 1];
        w->members++;
        w->revenue += mo[m];
        w->mean_r += f.recency_days[m];
        w->mean_f += fr[m];
        w->mean_m += mo[m];
        t->revenue += mo[m];
    }
    for (int s = 0; s < RFM_NSEGMENTS; s++) {
        models_rfm_row *w = &t->rows[s];
        if (w->members) {
            w->mean_r /= (double)w->members;
            w->mean_f /= (double)w->members;
            w->mean_m /= (double)w->members;
        }
    }
out:
    mem_free(f.recency_days), mem_free(f.frequency), mem_free(f.monetary);
    mem_free(fr), mem_free(mo), mem_free(el);
    if (rc)
        models_rfm_table_release(t);
    return rc;
}

/* ---- declining value ------------------------------------------------------------ */

/* Net spend of member m in (now-180d, now-90d] and (now-90d, now], currency units. */
static void window_spend(const patron_db *db, uint32_t m, int64_t now, double *prior,
                         double *recent)
{
    int64_t p = 0, r = 0, cut = now - 90 * (int64_t)TIME_DAY, start = now - 180 * (int64_t)TIME_DAY;
    for (uint32_t k = db->csr_off[m]; k < db->csr_off[m + 1]; k++) {
        uint32_t o = db->csr_ord[k];
        int64_t ts = db->o_ts[o];
        if (ts > now)
            break;
        if (ts <= start || db->o_void[o])
            continue;
        if (ts > cut)
            r += db->o_amount[o];
        else
            p += db->o_amount[o];
    }
    *prior = (double)p / PATRON_MONEY_SCALE;
    *recent = (double)r / PATRON_MONEY_SCALE;
}

double models_spend_trend(const patron_db *db, uint32_t member, int64_t now)
{
    double prior, recent;
    window_spend(db, member, now, &prior, &recent);
    return (recent - prior) / (prior > 1.0 ? prior : 1.0);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int models_declining_high_value(patron_db *db, int64_t now, uint32_t *out, size_t *n_out,
                                patron_error *err)
{
    {
        int vrc_ = db_view_ensure(db, err); /* consents (SPEC 1.5) live in the member view */
        if (vrc_ != PATRON_OK)
            return vrc_;
    }
    *n_out = 0;
    if (db_csr_build(db) != PATRON_OK)
        return err_set(err, PATRON_ENOMEM, "out of memory");
    uint32_t n = db->n_members;
    double *prior = mem_alloc_array(n ? n : 1, sizeof *prior);
    double *recent = mem_alloc_array(n ? n : 1, sizeof *recent);
    double *sorted = mem_alloc_array(n ? n : 1, sizeof *sorted);
    if (!prior || !recent || !sorted) {
        mem_free(prior), mem_free(recent), mem_free(sorted);
        return err_set(err, PATRON_ENOMEM, "out of memory");
    }
    size_t k = 0;
    for (uint32_t m = 0; m < n; m++) {
        prior[m] = -1.0;
        if (!db_profiling_allowed(db, m, now))
            continue;
        window_spend(db, m, now, &prior[m], &recent[m]);
        if (prior[m] > 0)
            sorted[k++] = prior[m];
        else
            prior[m] = -1.0;
    }
    qsort(sorted, k, sizeof *sorted, cmp_double);
    for (uint32_t m = 0; m < n; m++) {
        if (prior[m] <= 0)
            continue;
        /* Members strictly below: the position of the first value >= prior[m]. */
        size_t lo = 0, hi = k;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (sorted[mid] < prior[m])
                lo = mid + 1;
            else
                hi = mid;
        }
        int top = 5 * (uint64_t)lo / k >= 4;
        double trend = (recent[m] - prior[m]) / (prior[m] > 1.0 ? prior[m] : 1.0);
        if (top && trend <= -0.5)
            out[(*n_out)++] = m;
    }
    mem_free(prior), mem_free(recent), mem_free(sorted);
    return PATRON_OK;
}

int models_attach(patron_db *db, patron_error *err)
{
    rule_indexes_drop(db); /* the columns are rewritten in place below */
    models_state ms;
    int rc = models_load(db, &ms, err);
    if (rc != PATRON_OK)
        return rc;
    static const char *const nums[] = {"rfm.r", "rfm.f", "rfm.m", "rfm.score", "persona",
                                       "clv", "p_alive", "expected_orders"};
    for (size_t k = 0; k < sizeof nums / sizeof *nums && rc == PATRON_OK; k++) {
        int rfm = k < 4, is_persona = k == 4;
        if ((rfm && !ms.have_rfm) || (is_persona && !ms.have_personas) || (k > 4 && !ms.have_clv))
            continue;
        extcol *c = db_extcol(db, nums[k], VT_NUM, 1);
        if (!c) {
            rc = err_set(err, PATRON_ENOMEM, "out of memory");
            break;
        }
        for (uint32_t m = 0; m < c->n; m++) {
            double v = NAN;
            if (m < ms.n) {
                switch (k) {
                case 0: v = ms.rfm_r[m] ? ms.rfm_r[m] : NAN; break;
                case 1: v = ms.rfm_f[m] ? ms.rfm_f[m] : NAN; break;
                case 2: v = ms.rfm_m[m] ? ms.rfm_m[m] : NAN; break;
                case 3: v = ms.rfm_score[m] ? ms.rfm_score[m] : NAN; break;
                case 4: v = ms.persona[m] >= 0 ? ms.persona[m] : NAN; break;
                case 5: v = ms.clv[m]; break;
                case 6: v = ms.p_alive[m]; break;
                default: v = ms.expected_orders[m]; break;
                }
            }
            c->num[m] = v;
        }
    }
    if (rc == PATRON_OK && ms.have_rfm) {
        extcol *c = db_extcol(db, "rfm.segment", VT_STR, 1);
        if (!c)
            rc = err_set(err, PATRON_ENOMEM, "out of memory");
        for (int k = 0; c && k < RFM_NSEGMENTS; k++) /* code = 1 + the segment's index */
            strdict_intern(&c->dict, models_rfm_segment_names[k], strlen(models_rfm_segment_names[k]));
        for (uint32_t m = 0; c && m < c->n; m++)
            c->code[m] = m < ms.n ? ms.rfm_segment[m] : 0;
    }
    /* The built-in segment "Declining high value" (SPEC 4.4), as of the refresh. */
    if (rc == PATRON_OK && ms.as_of != PATRON_NULL_TS) {
        uint32_t *list = mem_alloc_array(db->n_members ? db->n_members : 1, sizeof *list);
        size_t nd = 0;
        roaring_bitmap_t *b = roaring_bitmap_create();
        if (!list || !b)
            rc = err_set(err, PATRON_ENOMEM, "out of memory");
        else
            rc = models_declining_high_value(db, ms.as_of, list, &nd, err);
        if (rc == PATRON_OK) {
            roaring_bitmap_add_many(b, nd, list);
            int slot = -1;
            for (int i = 0; i < db->n_builtin; i++)
                if (strcmp(db->builtin_name[i], MODELS_DECLINING_SEGMENT) == 0)
                    slot = i;
            if (slot >= 0) {
                roaring_bitmap_free(db->builtin_members[slot]);
            } else if (db->n_builtin < 4) {
                slot = db->n_builtin++;
                db->builtin_name[slot] = MODELS_DECLINING_SEGMENT;
            }
            if (slot >= 0) {
                db->builtin_members[slot] = b;
                b = NULL;
            }
        }
        if (b)
            roaring_bitmap_free(b);
        mem_free(list);
    }
    models_state_free(&ms);
    return rc;
}

/* ---- lazy refresh ----------------------------------------------------------------- */

void models_touch_all(patron_db *db)
{
    int was = db->tracking;
    db->tracking = 1;
    for (uint32_t m = 0; m < db->n_members; m++)
        db_touch(db, m, DB_SRC_MODELS);
    db->tracking = was;
}

int models_stale(patron_db *db, int *stale, patron_error *err)
{
    *stale = 0;
    int64_t cur;
    int rc = store_data_version(db->st, &cur, err);
    if (rc != PATRON_OK)
        return rc;
    store_model_run run;
    rc = store_model_run_latest(db->st, "refresh", &run, err);
    if (rc == PATRON_ENOTFOUND) {
        err_clear(err);
        *stale = db->n_members > 0;
        return PATRON_OK;
    }
    if (rc != PATRON_OK)
        return rc;
    json_t *o = json_loads(run.params, 0, NULL);
    json_t *v = json_object_get(o, "data_version");
    *stale = !json_is_integer(v) || json_integer_value(v) != cur;
    json_decref(o);
    store_model_run_release(&run);
    return PATRON_OK;
}

int models_ensure(patron_db *db, int64_t now, int *refreshed, patron_error *err)
{
    *refreshed = 0;
    int stale;
    int rc = models_stale(db, &stale, err);
    if (rc != PATRON_OK || !stale)
        return rc;
    models_state ms;
    if ((rc = models_refresh(db, now, &ms, err)) != PATRON_OK)
        return rc;
    models_state_free(&ms);
    models_touch_all(db);
    *refreshed = 1;
    return models_attach(db, err);
}
