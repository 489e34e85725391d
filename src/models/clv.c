/*
 * clv.c -- CLV inputs from the member model, fit and scoring (see clv.h).
 *
 * Scoring runs E[Y(t)|x,t_x,T] per member (a 2F1 series of a few hundred terms, memoised
 * per distinct (x, T)), split across two threads over member ranges; each row's result
 * depends only on that row, so the thread count cannot change it.  With a discount rate the horizon is cut
 * into 30-day steps and each step's expected orders are discounted at its end.
 */
#include "models/clv.h"

#include "base/err.h"
#include "base/mem.h"
#include "base/time.h"
#include "members/view.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

void clv_inputs_release(clv_inputs *in)
{
    mem_free(in->member);
    mem_free(in->x);
    mem_free(in->t_x);
    mem_free(in->T);
    mem_free(in->m);
    memset(in, 0, sizeof *in);
}

int clv_inputs_build(patron_db *db, int64_t now, int64_t unit, const uint8_t *eligible,
                     clv_inputs *out, patron_error *err)
{
    {
        int vrc_ = db_view_ensure(db, err); /* consents (SPEC 1.5) live in the member view */
        if (vrc_ != PATRON_OK)
            return vrc_;
    }
    memset(out, 0, sizeof *out);
    out->first_ts = out->last_ts = PATRON_NULL_TS;
    if (db_csr_build(db) != PATRON_OK)
        return err_set(err, PATRON_ENOMEM, "out of memory");
    size_t cap = db->n_members ? db->n_members : 1;
    out->member = mem_alloc_array(cap, sizeof *out->member);
    out->x = mem_alloc_array(cap, sizeof(double));
    out->t_x = mem_alloc_array(cap, sizeof(double));
    out->T = mem_alloc_array(cap, sizeof(double));
    out->m = mem_alloc_array(cap, sizeof(double));
    if (!out->member || !out->x || !out->t_x || !out->T || !out->m) {
        clv_inputs_release(out);
        return err_set(err, PATRON_ENOMEM, "out of memory");
    }
    double u = (double)unit;
    for (uint32_t mi = 0; mi < db->n_members; mi++) {
        if (eligible ? !eligible[mi] : !db_profiling_allowed(db, mi, now))
            continue;
        int64_t first_day = INT64_MIN, last_day = INT64_MIN, x = 0, repeat_money = 0;
        for (uint32_t k = db->csr_off[mi]; k < db->csr_off[mi + 1]; k++) {
            uint32_t o = db->csr_ord[k];
            int64_t ts = db->o_ts[o];
            if (ts > now)
                break;
            if (db->o_void[o])
                continue;
            int64_t day = time_day_of(ts);
            if (db->o_kind[o] == 0) {
                if (first_day == INT64_MIN) {
                    first_day = last_day = day;
                    if (out->first_ts == PATRON_NULL_TS || ts < out->first_ts)
                        out->first_ts = ts;
                } else if (day != last_day) {
                    x++;
                    last_day = day;
                }
                if (out->last_ts == PATRON_NULL_TS || ts > out->last_ts)
                    out->last_ts = ts;
            }
            if (first_day != INT64_MIN && day > first_day)
                repeat_money += db->o_amount[o];
        }
        if (first_day == INT64_MIN)
            continue;
        size_t i = out->n++;
        out->member[i] = mi;
        out->x[i] = (double)x;
        out->t_x[i] = (double)((last_day - first_day) * TIME_DAY) / u;
        out->T[i] = (double)(now - first_day * TIME_DAY) / u;
        out->m[i] = x > 0 ? (double)repeat_money / PATRON_MONEY_SCALE / (double)x : 0.0;
    }
    return PATRON_OK;
}

int clv_fit(const clv_inputs *in, int64_t unit, clv_model *out, patron_error *err)
{
    memset(out, 0, sizeof *out);
    out->unit = unit;
    bgnbd_data d = {in->x, in->t_x, in->T, NULL, in->n};
    int rc = bgnbd_fit(&d, &out->bg, &out->ll, err);
    if (rc != PATRON_OK)
        return rc;
    out->n = in->n;
    patron_error gerr;
    if (gg_fit(in->x, in->m, NULL, in->n, &out->gg, &out->gg_ll, &gerr) == PATRON_OK) {
        out->have_gg = 1;
        gg_loglik(&out->gg, in->x, in->m, NULL, in->n, &out->n_gg);
    }
    return PATRON_OK;
}

typedef struct score_job {
    const clv_model *mod;
    const clv_inputs *in;
    size_t from, to;
    double horizon; /* in units */
    double discount; /* per unit */
    double *p_alive, *eo, *clv;
} score_job;

/* E[Y]'s (x, T) factor is memoised in a direct-mapped cache per thread: with day units
 * a million members share a few tens of thousands of (x, T) pairs.  A hit returns the
 * value the computation would, so caching cannot change a result. */
enum { CACHE_BITS = 16 };
typedef struct cache_slot {
    double x, T, v;
} cache_slot;

static void *score_range(void *arg)
{
    score_job *j = arg;
    const bgnbd_params *bg = &j->mod->bg;
    double step = 30.0 * TIME_DAY / (double)j->mod->unit;
    cache_slot *cache = mem_alloc_array((size_t)1 << CACHE_BITS, sizeof *cache);
    if (cache)
        for (size_t s = 0; s < (size_t)1 << CACHE_BITS; s++)
            cache[s].x = -1.0;
    for (size_t i = j->from; i < j->to; i++) {
        double x = j->in->x[i], tx = j->in->t_x[i], T = j->in->T[i];
        double fac;
        if (cache) {
            uint64_t hx, hT;
            memcpy(&hx, &x, 8);
            memcpy(&hT, &T, 8);
            uint64_t h = (hx * 0x9E3779B97F4A7C15ULL) ^ (hT * 0xC2B2AE3D27D4EB4FULL);
            cache_slot *s = &cache[h >> (64 - CACHE_BITS)];
            if (s->x == x && s->T == T) {
                fac = s->v;
            } else {
                fac = bgnbd_conditional_factor(bg, j->horizon, x, T);
                *s = (cache_slot){x, T, fac};
            }
        } else {
            fac = bgnbd_conditional_factor(bg, j->horizon, x, T);
        }
        double pa = bgnbd_p_alive(bg, x, tx, T);
        double ey = pa * fac;
        j->p_alive[i] = pa;
        j->eo[i] = ey;
        double spend = j->mod->have_gg ? gg_expected_spend(&j->mod->gg, x, j->in->m[i]) : NAN;
        if (j->discount > 0.0) {
            double prev = 0.0, disc = 0.0;
            for (double t = step;; t += step) {
                double tt = t < j->horizon ? t : j->horizon;
                double e = bgnbd_conditional_expected(bg, tt, x, tx, T);
                disc += (e - prev) * exp(-j->discount * tt);
                prev = e;
                if (tt >= j->horizon)
                    break;
            }
            ey = disc;
        }
        j->clv[i] = ey * spend;
    }
    mem_free(cache);
    return NULL;
}

void clv_score(const clv_model *mod, const clv_inputs *in, int64_t horizon, double discount,
               double *p_alive, double *expected_orders, double *clv)
{
    enum { THREADS = 2 };
    score_job jobs[THREADS];
    pthread_t th[THREADS];
    int started[THREADS] = {0};
    double per_unit = discount * (double)mod->unit / (365.0 * TIME_DAY);
    for (int t = 0; t < THREADS; t++) {
        jobs[t] = (score_job){mod, in, in->n * (size_t)t / THREADS,
                              in->n * (size_t)(t + 1) / THREADS, (double)horizon / (double)mod->unit,
                              per_unit, p_alive, expected_orders, clv};
        if (t > 0)
            started[t] = pthread_create(&th[t], NULL, score_range, &jobs[t]) == 0;
    }
    score_range(&jobs[0]);
    for (int t = 1; t < THREADS; t++) {
        if (started[t])
            pthread_join(th[t], NULL);
        else
            score_range(&jobs[t]); /* no thread: do it here, same result */
    }
}

void clv_validation_release(clv_validation *v)
{
    mem_free(v->cum_actual);
    mem_free(v->cum_expected);
    v->cum_actual = v->cum_expected = NULL;
}

int clv_validate(patron_db *db, int64_t split, int64_t now, int64_t unit, clv_validation *out,
                 patron_error *err)
{
    {
        int vrc_ = db_view_ensure(db, err); /* consents (SPEC 1.5) live in the member view */
        if (vrc_ != PATRON_OK)
            return vrc_;
    }
    memset(out, 0, sizeof *out);
    if (split >= now)
        return err_set(err, PATRON_EUSAGE, "clv validate: --split must be before --now");
    clv_inputs in;
    int rc = clv_inputs_build(db, split, unit, NULL, &in, err);
    if (rc)
        return rc;
    if ((rc = clv_fit(&in, unit, &out->model, err))) {
        clv_inputs_release(&in);
        return rc;
    }
    double u = (double)unit;
    out->holdout = (double)(now - split) / u;
    /* Earliest first purchase day: the start of the tracking curve. */
    int64_t start_day = INT64_MAX;
    for (size_t i = 0; i < in.n; i++) {
        int64_t first = time_day_of(split - (int64_t)llround(in.T[i] * u));
        if (first < start_day)
            start_day = first;
    }
    out->start = start_day * TIME_DAY;
    out->periods = (size_t)ceil((double)(now - out->start) / u - 1e-9);
    out->cum_actual = mem_calloc(out->periods ? out->periods : 1, sizeof(double));
    out->cum_expected = mem_calloc(out->periods ? out->periods : 1, sizeof(double));
    /* Births (first purchase days) counted per day since start_day, for the expectation. */
    size_t ndays = (size_t)((split / TIME_DAY) - start_day + 2);
    double *born = mem_calloc(ndays, sizeof(double));
    if (!out->cum_actual || !out->cum_expected || !born) {
        mem_free(born);
        clv_inputs_release(&in);
        clv_validation_release(out);
        return err_set(err, PATRON_ENOMEM, "out of memory");
    }
    const bgnbd_params *bg = &out->model.bg;
    double abs_err = 0.0;
    for (size_t i = 0; i < in.n; i++) {
        uint32_t m = in.member[i];
        int64_t first_day = time_day_of(split - (int64_t)llround(in.T[i] * u)), last_day = first_day;
        born[first_day - start_day] += 1.0;
        size_t hold = 0;
        for (uint32_t k = db->csr_off[m]; k < db->csr_off[m + 1]; k++) {
            uint32_t o = db->csr_ord[k];
            int64_t ts = db->o_ts[o];
            if (ts > now)
                break;
            if (db->o_void[o] || db->o_kind[o] != 0)
                continue;
            int64_t day = time_day_of(ts);
            if (day == last_day || day == first_day)
                continue;
            last_day = day;
            /* A repeat purchase day: counted in the period its day starts in. */
            size_t per = (size_t)((double)(day * TIME_DAY - out->start) / u);
            if (per < out->periods)
                out->cum_actual[per] += 1.0;
            if (ts > split)
                hold++;
        }
        double e = bgnbd_conditional_expected(bg, out->holdout, in.x[i], in.t_x[i], in.T[i]);
        size_t bin = in.x[i] >= CLV_VALIDATE_BINS - 1 ? CLV_VALIDATE_BINS - 1 : (size_t)in.x[i];
        out->bin_n[bin]++;
        out->bin_actual[bin] += (double)hold;
        out->bin_expected[bin] += e;
        out->actual_total += (double)hold;
        out->expected_total += e;
        abs_err += fabs((double)hold - e);
    }
    for (int b = 0; b < CLV_VALIDATE_BINS; b++)
        if (out->bin_n[b]) {
            out->bin_actual[b] /= (double)out->bin_n[b];
            out->bin_expected[b] /= (double)out->bin_n[b];
        }
    out->mae = in.n ? abs_err / (double)in.n : NAN;
    for (size_t p = 1; p < out->periods; p++)
        out->cum_actual[p] += out->cum_actual[p - 1];
    /* Expected cumulative repeat purchases at the end of period p: every customer born
     * on day s by then contributes E[X(t_p - s)], t_p = p units after start. */
    for (size_t p = 0; p < out->periods; p++) {
        double t = (double)(p + 1);
        double sum = 0.0;
        for (size_t dd = 0; dd < ndays; dd++) {
            if (born[dd] == 0.0)
                continue;
            double birth = (double)dd * TIME_DAY / u;
            if (birth < t)
                sum += born[dd] * bgnbd_expected(bg, t - birth);
        }
        out->cum_expected[p] = sum;
    }
    mem_free(born);
    clv_inputs_release(&in);
    return PATRON_OK;
}
