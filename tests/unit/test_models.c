/*
 * test_models.c -- the model refresh over a generated program (src/models/models.c):
 * BG/NBD fitted to `patron generate` output recovers the parameters the generator wrote
 * (params.json; 20,000 members, within 12%); a refresh stored and loaded back is the
 * same state; members without profiling consent get null fields and are left out of
 * RFM's population and the fits; personas are deterministic for a seed; spend_trend and
 * "Declining high value" equal a direct computation over the order columns.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/hmap.h"
#include "base/time.h"
#include "core/db.h"
#include "ingest/generate.h"
#include "ingest/input.h"
#include "models/clv.h"
#include "models/models.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256];
static patron_db *db;
static int64_t now;
static uint8_t *denied; /* per member index: consent_profiling=false in members.csv */

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/patron-test-models-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    gen_opts g;
    gen_opts_init(&g);
    g.members = 20000;
    g.seed = 3;
    g.out = dir;
    patron_error err = {0};
    if (gen_run(&g, &err) != 0)
        return -1;
    now = g.end;
    char path[512];
    snprintf(path, sizeof path, "%s/p.db", dir);
    if (patron_open(path, &db, &err) != 0)
        return -1;
    patron_import_result res;
    snprintf(path, sizeof path, "%s/members.csv", dir);
    if (patron_import(db, PATRON_IMPORT_MEMBERS, path, NULL, &res, &err) != 0)
        return -1;
    snprintf(path, sizeof path, "%s/orders.csv", dir);
    if (patron_import(db, PATRON_IMPORT_ORDERS, path, NULL, &res, &err) != 0)
        return -1;
    /* Who denied profiling, read from the generated file (not from the engine). */
    denied = calloc(db->n_members, 1);
    csv_reader *r;
    snprintf(path, sizeof path, "%s/members.csv", dir);
    if (csv_open(path, ',', &r, &err) != 0)
        return -1;
    const csv_field *f;
    size_t nf, cid = 0, cpro = 0;
    csv_next(r, &f, &nf, &err);
    for (size_t i = 0; i < nf; i++) {
        if (f[i].n == 9 && memcmp(f[i].p, "member_id", 9) == 0)
            cid = i;
        if (f[i].n == 17 && memcmp(f[i].p, "consent_profiling", 17) == 0)
            cpro = i;
    }
    while (csv_next(r, &f, &nf, &err) == 1) {
        uint32_t m;
        if (hmap_get(&db->member_ids, f[cid].p, f[cid].n, &m) && f[cpro].n == 5 &&
            memcmp(f[cpro].p, "false", 5) == 0)
            denied[m] = 1;
    }
    csv_free(r);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    patron_close(db);
    free(denied);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static double param(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    assert_non_null(v);
    return json_number_value(v);
}

static void test_bgnbd_recovers_generator(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/params.json", dir);
    json_error_t je;
    json_t *p = json_load_file(path, 0, &je);
    assert_non_null(p);
    assert_string_equal(json_string_value(json_object_get(p, "time_unit")), "day");
    clv_inputs in;
    clv_model mod;
    patron_error err = {0};
    assert_int_equal(clv_inputs_build(db, now, TIME_DAY, NULL, &in, &err), 0);
    assert_true(in.n > 15000);
    assert_int_equal(clv_fit(&in, TIME_DAY, &mod, &err), 0);
    const char *names[4] = {"r", "alpha", "a", "b"};
    double got[4] = {mod.bg.r, mod.bg.alpha, mod.bg.a, mod.bg.b};
    for (int i = 0; i < 4; i++) {
        double want = param(p, names[i]);
        if (fabs(got[i] - want) > 0.12 * want)
            fail_msg("%s = %g, generated with %g (tolerance 12%%)", names[i], got[i], want);
    }
    clv_inputs_release(&in);
    json_decref(p);
}

static void test_refresh_load_consent(void **state)
{
    (void)state;
    models_state a, b;
    patron_error err = {0};
    models_opts o;
    models_opts_init(&o);
    o.k = 4;
    models_report rep;
    if (models_refresh_with(db, now, &o, &a, &rep, &err) != 0)
        fail_msg("%s", err.message);
    assert_true(a.have_rfm && a.have_personas && a.have_clv);
    assert_int_equal(a.n, db->n_members);
    if (models_load(db, &b, &err) != 0)
        fail_msg("%s", err.message);
    assert_true(b.as_of == now && b.n == a.n && b.have_rfm && b.have_personas && b.have_clv);
    size_t n = a.n;
    assert_memory_equal(a.rfm_r, b.rfm_r, n);
    assert_memory_equal(a.rfm_f, b.rfm_f, n);
    assert_memory_equal(a.rfm_m, b.rfm_m, n);
    assert_memory_equal(a.rfm_score, b.rfm_score, n * 2);
    assert_memory_equal(a.rfm_segment, b.rfm_segment, n);
    assert_memory_equal(a.persona, b.persona, n * 2);
    assert_memory_equal(a.p_alive, b.p_alive, n * 8);
    assert_memory_equal(a.expected_orders, b.expected_orders, n * 8);
    assert_memory_equal(a.clv, b.clv, n * 8);
    /* Consent: denied members are null everywhere; consenting buyers are scored. */
    assert_int_equal(db_csr_build(db), 0);
    size_t n_denied_buyers = 0, eligible = 0;
    for (uint32_t m = 0; m < n; m++) {
        int buyer = 0;
        for (uint32_t k = db->csr_off[m]; k < db->csr_off[m + 1]; k++) {
            uint32_t ord = db->csr_ord[k];
            buyer |= db->o_kind[ord] == 0 && !db->o_void[ord] && db->o_ts[ord] <= now;
        }
        if (denied[m] || !buyer) {
            n_denied_buyers += denied[m] && buyer;
            assert_int_equal(a.rfm_r[m] | a.rfm_f[m] | a.rfm_m[m] | a.rfm_segment[m], 0);
            assert_int_equal(a.rfm_score[m], 0);
            assert_int_equal(a.persona[m], -1);
            assert_true(isnan(a.p_alive[m]) && isnan(a.expected_orders[m]) && isnan(a.clv[m]));
        } else {
            eligible++;
            assert_true(a.rfm_score[m] >= 111 && a.rfm_score[m] <= 555 && a.rfm_segment[m] >= 1);
            assert_true(a.persona[m] >= 1 && a.persona[m] <= 4);
            assert_true(a.p_alive[m] >= 0 && a.p_alive[m] <= 1 && a.expected_orders[m] >= 0);
        }
    }
    assert_true(n_denied_buyers > 100);
    /* The JSON view of one scored and one denied member (for member show). */
    for (uint32_t m = 0, seen = 0; m < n && seen != 3; m++) {
        int scored = a.rfm_score[m] != 0;
        if (seen & (scored ? 1 : 2))
            continue;
        seen |= scored ? 1 : 2;
        json_t *js = json_object();
        models_member_json(&b, m, js);
        assert_true(json_is_string(json_object_get(js, "models_as_of")));
        if (scored) {
            assert_int_equal(json_integer_value(json_object_get(js, "rfm.score")), a.rfm_score[m]);
            assert_string_equal(json_string_value(json_object_get(js, "rfm.segment")),
                                models_rfm_segment_names[a.rfm_segment[m] - 1]);
            assert_true(json_is_real(json_object_get(js, "p_alive")));
        } else {
            assert_true(json_is_null(json_object_get(js, "rfm.segment")));
            assert_true(json_is_null(json_object_get(js, "persona")));
            assert_true(json_is_null(json_object_get(js, "clv")));
        }
        json_decref(js);
    }
    assert_int_equal(rep.eligible, eligible);
    assert_int_equal(rep.personas.members, eligible);
    /* RFM's population excludes them: the top recency score holds about a fifth of the
     * consenting buyers, not of all buyers (checked exactly in test_rfm / rfm_online_retail). */
    models_state_free(&a);
    models_state_free(&b);
}

static void test_personas_deterministic(void **state)
{
    (void)state;
    personas_model p1, p2, p3;
    int16_t *a = malloc(db->n_members * 2), *b = malloc(db->n_members * 2);
    patron_error err = {0};
    assert_int_equal(models_personas_fit(db, now, 0, 7, &p1, a, &err), 0);
    assert_int_equal(models_personas_fit(db, now, 0, 7, &p2, b, &err), 0);
    assert_memory_equal(a, b, db->n_members * 2);
    assert_int_equal(p1.k, p2.k);
    assert_true(p1.k >= 2 && p1.k <= 10 && p1.k_auto);
    assert_memory_equal(p1.p, p2.p, sizeof p1.p);
    int64_t as_of;
    assert_int_equal(models_personas_load(db, &p3, &as_of, &err), 0);
    assert_true(as_of == now && p3.k == p1.k);
    for (int c = 0; c < p1.k; c++) {
        assert_int_equal(p3.p[c].size, p1.p[c].size);
        assert_string_equal(p3.p[c].description, p1.p[c].description);
    }
    /* A later personas fit replaces the loaded persona field. */
    models_state ms;
    assert_int_equal(models_load(db, &ms, &err), 0);
    assert_memory_equal(ms.persona, a, db->n_members * 2);
    models_state_free(&ms);
    free(a), free(b);
}

static void test_declining(void **state)
{
    (void)state;
    int64_t d90 = 90 * (int64_t)TIME_DAY;
    size_t n = db->n_members;
    double *prior = calloc(n, sizeof *prior), *recent = calloc(n, sizeof *recent);
    for (size_t o = 0; o < db->n_orders; o++) {
        int32_t m = db->o_member[o];
        int64_t ts = db->o_ts[o];
        if (m < 0 || db->o_void[o] || ts > now || ts <= now - 2 * d90)
            continue;
        double v = (double)db->o_amount[o] / PATRON_MONEY_SCALE;
        if (ts > now - d90)
            recent[m] += v;
        else
            prior[m] += v;
    }
    assert_int_equal(db_csr_build(db), 0);
    size_t pos = 0;
    for (size_t m = 0; m < n; m++) {
        double want = (recent[m] - prior[m]) / (prior[m] > 1 ? prior[m] : 1);
        assert_true(fabs(models_spend_trend(db, (uint32_t)m, now) - want) < 1e-9 * (1 + fabs(want)));
        pos += !denied[m] && prior[m] > 0;
    }
    uint32_t *out = malloc(n * sizeof *out);
    size_t got;
    patron_error err = {0};
    assert_int_equal(models_declining_high_value(db, now, out, &got, &err), 0);
    size_t want_n = 0, j = 0;
    for (size_t m = 0; m < n; m++) {
        if (denied[m] || prior[m] <= 0)
            continue;
        size_t below = 0;
        for (size_t q = 0; q < n; q++)
            below += !denied[q] && prior[q] > 0 && prior[q] < prior[m];
        int top = 5 * below / pos >= 4;
        if (top && (recent[m] - prior[m]) / (prior[m] > 1 ? prior[m] : 1) <= -0.5) {
            want_n++;
            assert_true(j < got && out[j] == m);
            j++;
        }
    }
    assert_int_equal(got, want_n);
    assert_true(want_n > 10);
    free(prior), free(recent), free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bgnbd_recovers_generator),
        cmocka_unit_test(test_refresh_load_consent),
        cmocka_unit_test(test_personas_deterministic),
        cmocka_unit_test(test_declining),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
