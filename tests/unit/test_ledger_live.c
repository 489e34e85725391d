/*
 * test_ledger_live.c -- the ledger as the rule engine sees it, kept live.
 *
 * With a program in force, the `points` and `redemptions` streams are the ledger's rows
 * and tier / points_balance / points_earned_365d are read from the ledger at the
 * evaluation's instant.  After random sequences of imports that earn, redemptions (some
 * refused), cancellations, adjustments, expiry runs, tier reviews and clock advances:
 *  - the member view updated in place equals one rebuilt from the store (view_hash);
 *  - every live segment equals a full evaluation at the same now, and each step
 *    evaluated only members it touched or whose instant came;
 *  - Σ of a member's points rows up to now equals points_balance at now, at any now;
 *  - the streams hold what the ledger holds (loyalty_points_stream and
 *    loyalty_redemptions_stream at now give the same rows).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "testutil.h"

#include "base/time.h"
#include "core/db.h"
#include "ingest/rng.h"
#include "loyalty/ledger.h"
#include "loyalty/loyalty.h"
#include "loyalty/program.h"
#include "members/view.h"
#include "rules/eval.h"
#include "segments/segments.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256];

static const char *const program_json =
        "{\"points_per_unit\": 1,"
        " \"tiers\": {\"basis\": \"points\", \"window\": \"60d\", \"levels\": ["
        "   {\"name\": \"member\", \"threshold\": 0},"
        "   {\"name\": \"silver\", \"threshold\": 150, \"multiplier\": 1.5},"
        "   {\"name\": \"gold\", \"threshold\": 400, \"multiplier\": 2}]},"
        " \"expiry\": {\"policy\": \"days\", \"days\": 45},"
        " \"rewards\": [{\"id\": \"R1\", \"name\": \"one\", \"points\": 40},"
        "               {\"id\": \"R2\", \"name\": \"two\", \"points\": 120, \"stock\": 30}]}";

static const char *const rules[] = {
    "points_balance >= 100",
    "tier = \"silver\"",
    "tier = \"gold\" or points_earned_365d > 500",
    "points_earned_365d > 120 and points_balance < 60",
    "count(redemptions, 20d) >= 1",
    "sum(redemptions.points where reward_id = \"R2\") >= 120",
    "sum(points.points where reason = \"expiry\", 15d) < 0",
    "sum(points.points, 10d) > 80",
    "count(points where reason = \"goodwill\") >= 1 and points_balance > 0",
    "sum(points.points) != points_balance", /* never anyone */
};
#define NRULES (sizeof rules / sizeof *rules)

static int64_t now;
static int n_members = 120;
static int next_id = 0;

static void import(patron_db *db, patron_import_kind kind, const char *path)
{
    test_import_at(db, kind, path, now);
}

/* k orders (a few returns) of random members in the last `spread` seconds. */
static void write_orders(const char *path, rng *r, int k, int64_t spread)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "order_id,member_id,ts,sku,qty,price\n");
    for (int i = 0; i < k; i++) {
        char t[TIME_FMT_LEN];
        time_format(now - (int64_t)rng_below(r, (uint64_t)spread), t);
        int ret = rng_below(r, 10) == 0;
        fprintf(f, "O%06d,M%04d,%s,S%d,%d,%d.%02d\n", next_id++, (int)rng_below(r, (uint64_t)n_members),
                t, (int)rng_below(r, 4), ret ? -1 : 1 + (int)rng_below(r, 2), 5 + (int)rng_below(r, 90),
                (int)rng_below(r, 100));
    }
    fclose(f);
}

/* Imported points and redemption events (a redemption that would overdraw is refused:
 * the import stores nothing then, so those are kept small). */
static void write_events(const char *path, rng *r, int k)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < k; i++) {
        char t[TIME_FMT_LEN];
        time_format(now - (int64_t)rng_below(r, 3 * TIME_DAY), t);
        fprintf(f, "{\"type\":\"points\",\"member_id\":\"M%04d\",\"ts\":\"%s\",\"event_id\":\"P%d\","
                   "\"points\":%d,\"reason\":\"%s\"}\n",
                (int)rng_below(r, (uint64_t)n_members), t, next_id++, 10 + (int)rng_below(r, 150),
                rng_below(r, 2) ? "goodwill" : "review");
    }
    fclose(f);
}

/* The ledger's rows at t equal the view's rows at or before t, member by member. */
static void check_streams(patron_db *db, int64_t t)
{
    patron_error err = {0};
    const mview *v = db->view;
    const stream *sp = &v->streams[ST_POINTS], *sr = &v->streams[ST_REDEMPTIONS];
    const double *pts = sp->col[1], *rpts = sr->col[2];
    for (uint32_t m = 0; m < db->n_members; m++) {
        loyalty_points_row *pr;
        loyalty_redemption_row *rr;
        size_t np, nr;
        assert_int_equal(loyalty_points_stream(db, m, t, &pr, &np, &err), 0);
        assert_int_equal(loyalty_redemptions_stream(db, m, t, &rr, &nr, &err), 0);
        /* the points: every write up to t is in the view, summed per write (the view
         * also holds the expiry rows of lots not run yet, and splits an expiry run by
         * lot), so compare the totals up to t */
        double hist = 0, view = 0;
        for (size_t i = 0; i < np; i++)
            hist += (double)pr[i].points;
        for (uint32_t i = sp->beg[m]; i < sp->end[m]; i++)
            if (sp->ts[i] <= t)
                view += pts[i];
        double bal = (double)loyalty_points_balance(db, m, t);
        if (view != bal) {
            fprintf(stderr, "member %u at %lld: rows %g, balance %g\n", m, (long long)t, view, bal);
            for (uint32_t i = sp->beg[m]; i < sp->end[m]; i++)
                fprintf(stderr, "  %lld %g\n", (long long)sp->ts[i], pts[i]);
            for (size_t i = 0; i < np; i++)
                fprintf(stderr, "  hist %lld %lld %.*s\n", (long long)pr[i].ts, (long long)pr[i].points,
                        (int)pr[i].reasonn, pr[i].reason);
        }
        assert_true(view == bal);
        /* history rows count expired points only once the run posted them */
        assert_true(hist >= view);
        size_t k = 0;
        for (uint32_t i = sr->beg[m]; i < sr->end[m]; i++)
            if (sr->ts[i] <= t) {
                assert_true(k < nr);
                assert_true(rr[k].ts == sr->ts[i] && (double)rr[k].points == rpts[i]);
                k++;
            }
        assert_int_equal(k, nr);
        free(pr);
        free(rr);
    }
}

static void run(uint64_t seed, int steps)
{
    char path[512], dbp[512], key[64];
    snprintf(dbp, sizeof dbp, "%s/ll-%llu.db", dir, (unsigned long long)seed);
    unlink(dbp);
    rng r;
    rng_seed(&r, seed);
    now = 1700000000;
    next_id = 0;
    patron_error err = {0};
    patron_db *db;
    assert_int_equal(patron_open(dbp, &db, &err), 0);
    ledger *l;
    assert_int_equal(ledger_get(db, &l, &err), 0);
    ledger_set_durable(l, 0);
    program *p;
    assert_int_equal(program_parse(program_json, strlen(program_json), "test", &p, &err), 0);
    int64_t version;
    int changed;
    assert_int_equal(ledger_program_apply(l, p, now, &version, &changed, &err), 0);
    snprintf(path, sizeof path, "%s/o.csv", dir);
    write_orders(path, &r, 400, 90 * TIME_DAY);
    import(db, PATRON_IMPORT_ORDERS, path);
    assert_int_equal(db_view_ensure(db, &err), 0);
    assert_int_equal(segments_load(db, &err), 0);
    assert_int_equal(loyalty_attach(db, now, &err), 0);
    for (size_t i = 0; i < NRULES; i++) {
        char name[16];
        snprintf(name, sizeof name, "s%zu", i);
        int rc = segment_create(db, name, rules[i], now, &err);
        if (rc)
            fprintf(stderr, "%s: %s\n", rules[i], err.message);
        assert_int_equal(rc, 0);
    }
    assert_int_equal(segments_sync(db, now, &err), 0);
    int n_redeemed = 0, cheap = 0;
    for (int step = 0; step < steps; step++) {
        int kind = (int)rng_below(&r, 8);
        ledger_result res;
        uint32_t m = (uint32_t)rng_below(&r, db->n_members);
        if (kind <= 1) {
            now += 60 + (int64_t)rng_below(&r, (uint64_t)(kind ? 12 * TIME_DAY : 8 * 3600));
        } else if (kind == 2) {
            snprintf(path, sizeof path, "%s/o%d.csv", dir, step);
            write_orders(path, &r, 4 + (int)rng_below(&r, 20), 5 * TIME_DAY);
            import(db, PATRON_IMPORT_ORDERS, path);
        } else if (kind == 3) {
            snprintf(key, sizeof key, "r%d", n_redeemed);
            /* mostly a member who can afford it, sometimes anyone (refused) */
            int big = (int)rng_below(&r, 2);
            for (int k = 0; k < n_members && rng_below(&r, 5); k++, m = (m + 1) % db->n_members)
                if (ledger_balance(l, m, now) >= (big ? 120 : 40))
                    break;
            int rc = ledger_redeem(l, m, big ? "R2" : "R1", key, now, &res, &err);
            if (rc && getenv("LL_DEBUG"))
                fprintf(stderr, "redeem: %s\n", err.message);
            assert_true(rc == PATRON_OK || rc == PATRON_EINPUT); /* overdraw or out of stock */
            n_redeemed += rc == PATRON_OK;
        } else if (kind == 4 && n_redeemed) {
            snprintf(key, sizeof key, "r%d", (int)rng_below(&r, (uint64_t)n_redeemed));
            int rc = ledger_cancel(l, key, now, &res, &err);
            if (rc && getenv("LL_DEBUG"))
                fprintf(stderr, "cancel: %d %s\n", rc, err.message);
            assert_true(rc == PATRON_OK || rc == PATRON_EINPUT); /* cancelled before */
        } else if (kind == 5) {
            snprintf(key, sizeof key, "a%d", step);
            int64_t pts = rng_below(&r, 3) ? 20 + (int64_t)rng_below(&r, 100) : -10;
            int rc = ledger_adjust(l, m, pts, rng_below(&r, 2) ? "goodwill" : "fix", key, now, &res, &err);
            if (rc && getenv("LL_DEBUG"))
                fprintf(stderr, "adjust: %d %s\n", rc, err.message);
            assert_true(rc == PATRON_OK || rc == PATRON_EINPUT);
        } else if (kind == 6) {
            assert_int_equal(rng_below(&r, 2) ? ledger_expire(l, now, &res, &err)
                                              : ledger_tiers_review(l, now, &res, &err),
                             0);
        } else {
            snprintf(path, sizeof path, "%s/e%d.jsonl", dir, step);
            write_events(path, &r, 1 + (int)rng_below(&r, 4));
            import(db, PATRON_IMPORT_EVENTS, path);
        }
        /* The view kept in place equals a rebuild. */
        assert_true(db->view && db->view_valid && db->view->ledger_fed);
        uint64_t live = view_hash(db);
        db->view_valid = 0;
        assert_int_equal(db_view_ensure(db, &err), 0);
        assert_true(live == view_hash(db));
        check_streams(db, now);
        check_streams(db, now - 7 * TIME_DAY);
        /* Who may be evaluated: members whose instant came by now, and touched ones. */
        roaring_bitmap_t *allowed[NRULES];
        uint64_t ev0 = 0, ev1 = 0;
        for (size_t i = 0; i < db->segs->n; i++) {
            segment *g = &db->segs->s[i];
            ev0 += g->evaluated;
            allowed[i] = db->touched ? roaring_bitmap_copy(db->touched) : roaring_bitmap_create();
            for (uint32_t k = 0; k < g->n_due; k++)
                if (g->due[k] <= now)
                    roaring_bitmap_add(allowed[i], k);
            g->seen = roaring_bitmap_create();
        }
        assert_int_equal(segments_sync(db, now, &err), 0);
        for (size_t i = 0; i < db->segs->n; i++) {
            segment *g = &db->segs->s[i];
            ev1 += g->evaluated;
            assert_true(roaring_bitmap_is_subset(g->seen, allowed[i]));
            roaring_bitmap_free(g->seen);
            g->seen = NULL;
            roaring_bitmap_free(allowed[i]);
            roaring_bitmap_t *full = roaring_bitmap_create();
            assert_int_equal(rule_eval_all(g->r, db, now, 1, full, &err), 0);
            if (!roaring_bitmap_equals(full, g->members))
                fprintf(stderr, "seed %llu step %d kind %d: '%s' differs\n", (unsigned long long)seed,
                        step, kind, g->rule);
            assert_true(roaring_bitmap_equals(full, g->members));
            roaring_bitmap_free(full);
        }
        cheap += ev1 - ev0 < (uint64_t)n_members * NRULES / 4;
        segment *never = segment_find(db, "s9");
        assert_true(roaring_bitmap_is_empty(never->members));
    }
    for (size_t i = 0; getenv("LL_DEBUG") && i < db->segs->n; i++)
        fprintf(stderr, "%s: %llu members, %llu evaluations; %d redeemed\n", db->segs->s[i].rule,
                (unsigned long long)roaring_bitmap_get_cardinality(db->segs->s[i].members),
                (unsigned long long)db->segs->s[i].evaluated, n_redeemed);
    assert_true(cheap * 10 >= steps * 6);
    patron_close(db);
    unlink(dbp);
}

static void test_ledger_live(void **state)
{
    (void)state;
    int long_run = getenv("PATRON_LONG") != NULL;
    for (uint64_t seed = 1; seed <= (long_run ? 12u : 3u); seed++)
        run(seed, long_run ? 200 : 60);
}

/* Without a program the streams are the imported events, as before. */
static void test_no_program(void **state)
{
    (void)state;
    char path[512], dbp[512];
    snprintf(dbp, sizeof dbp, "%s/np.db", dir);
    unlink(dbp);
    patron_error err = {0};
    patron_db *db;
    assert_int_equal(patron_open(dbp, &db, &err), 0);
    now = 1700000000;
    snprintf(path, sizeof path, "%s/np.jsonl", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "{\"type\":\"points\",\"member_id\":\"A\",\"ts\":\"2023-11-10\",\"event_id\":\"e1\","
               "\"points\":30,\"reason\":\"welcome\"}\n"
               "{\"type\":\"redemption\",\"member_id\":\"A\",\"ts\":\"2023-11-11\",\"event_id\":\"e2\","
               "\"reward_id\":\"X\",\"points\":20}\n");
    fclose(f);
    import(db, PATRON_IMPORT_EVENTS, path);
    assert_int_equal(db_view_ensure(db, &err), 0);
    assert_int_equal(loyalty_attach(db, now, &err), 0);
    const char *const texts[] = {"sum(points.points where reason = \"welcome\") = 30",
                                 "count(redemptions where reward_id = \"X\") = 1", "points_balance >= 0"};
    const uint64_t want[] = {1, 1, 0}; /* points_balance is null without a program */
    rule_env env;
    segments_env(db, &env);
    for (size_t i = 0; i < 3; i++) {
        rule *ru;
        assert_int_equal(rule_compile(texts[i], &env, &ru, &err), 0);
        roaring_bitmap_t *b = roaring_bitmap_create();
        assert_int_equal(rule_eval_all(ru, db, now, 1, b, &err), 0);
        assert_int_equal(roaring_bitmap_get_cardinality(b), want[i]);
        roaring_bitmap_free(b);
        rule_free(ru);
    }
    assert_false(db->view->ledger_fed);
    patron_close(db);
    unlink(dbp);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/patron-ledger-live-%d", (int)getpid());
    char cmd[300];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
    if (system(cmd) != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ledger_live),
        cmocka_unit_test(test_no_program),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 1;
    return rc;
}
