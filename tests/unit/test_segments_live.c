/*
 * test_segments_live.c -- live segments: after random sequences of small imports
 * (orders, returns, profile and consent changes) and clock advances, every segment kept
 * incrementally equals a full evaluation at the same now; each step evaluated only the
 * members it touched or whose instant came (a counter, so "recompute everything" fails
 * the test); and every recorded exit/enter happened at its instant (the member's answer
 * at ts differs from its answer one second before).  After every import the member view
 * the importer updated in place equals one rebuilt from the store.
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
#include "members/view.h"
#include "rules/eval.h"
#include "segments/segments.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256];

static const char *const rules[] = {
    "count(orders, 30d) >= 1",
    "sum(orders.amount, 60d..30d) > 50 and recency_days > 10",
    "recency_days <= 45 or tenure_days < 20",
    "days_to_birthday <= 10 and frequency >= 1",
    "age >= 30 and country = \"DE\"",
    "consent.email and count(orders, 90d) >= 2",
    "days_since(max(orders.ts)) between 5 and 40",
    "recency_days * 2 > frequency + 30 and not in_segment(\"s4\")",
    "count(returns, 20d) = 0 and monetary > 100",
    "spend_trend <= -0.5",
    "count_distinct(items.sku where qty >= 2, 45d) >= 2 or \"running\" in interests",
    "count(messages where action = \"clicked\", 20d) >= 1 or attributes.pet = \"cat\"",
    "sum(points.points, 30d) > 300 or count(views where sku = \"S3\", 10d) >= 1",
    "sum(orders.amount, 45d) >= 80 and sum(returns.amount, 60d..10d) < 30",
    "not (sum(items.amount, 20d) > 40)",
    "max(orders.amount, 40d) > 60 or min(items.price, 30d..5d) <= 12",
    "not (max(orders.amount, 25d) < 40) and spend_trend > 0",
    "min(orders.amount, 50d) >= 30 and count(items where qty >= 2, 35d..10d) >= 1",
    "spend_trend <= -0.5 and sum(orders.amount, 60d..20d) > 50",
    "sum(orders.amount, 30d) < 0.5 * sum(orders.amount, 60d..30d)",
    "count(orders, 20d) + count(returns, 40d..10d) >= 2 or not (sum(items.amount, 15d) / 2 > 30)",
    "count_distinct(items.category, 40d..5d) >= 2",
    "3 > count_distinct(items.sku, 30d) and frequency >= 1",
    "age between 30 and 45.5 or 60 < age",
};
#define NRULES (sizeof rules / sizeof *rules)

static int64_t now;
static int n_members = 300;
static int next_order = 0;

static void write_members(const char *path, rng *r, int first, int count, int update)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "member_id,country,birth_date,consent_email,interests\n");
    for (int i = first; i < first + count; i++) {
        int y = 1950 + (int)rng_below(r, 55), m = 1 + (int)rng_below(r, 12), d = 1 + (int)rng_below(r, 28);
        fprintf(f, "M%04d,%s,%04d-%02d-%02d,%s,%s\n", update ? (int)rng_below(r, (uint64_t)n_members) : i,
                rng_below(r, 3) == 0 ? "DE" : "FR", y, m, d, rng_below(r, 2) ? "true" : "false",
                rng_below(r, 4) == 0 ? "running" : "");
    }
    fclose(f);
}

/* k orders (some returns, some in the future of now) for random members. */
static void write_orders(const char *path, rng *r, int k, int64_t around, int64_t spread)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "order_id,member_id,ts,sku,qty,price\n");
    for (int i = 0; i < k; i++) {
        int m = (int)rng_below(r, (uint64_t)n_members);
        int64_t ts = around - (int64_t)rng_below(r, (uint64_t)spread) + (rng_below(r, 10) == 0 ? 3 * TIME_DAY : 0);
        char t[TIME_FMT_LEN];
        time_format(ts, t);
        int ret = rng_below(r, 12) == 0;
        int lines = 1 + (int)rng_below(r, 3);
        for (int l = 0; l < lines; l++)
            fprintf(f, "O%06d,M%04d,%s,S%d,%d,%d.%02d\n", next_order, m, t, (int)rng_below(r, 6),
                    (ret ? -1 : 1) * (1 + (int)rng_below(r, 3)), (int)rng_below(r, 90), (int)rng_below(r, 100));
        next_order++;
    }
    fclose(f);
}

static void write_consents(const char *path, rng *r, int k)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < k; i++) {
        char t[TIME_FMT_LEN], e[TIME_FMT_LEN];
        time_format(now - 10, t);
        time_format(now + (int64_t)rng_below(r, 20 * TIME_DAY), e);
        fprintf(f, "{\"type\":\"consent\",\"member_id\":\"M%04d\",\"ts\":\"%s\",\"channel\":\"email\","
                   "\"status\":\"granted\",\"expires_at\":\"%s\",\"event_id\":\"C%d\"}\n",
                (int)rng_below(r, (uint64_t)n_members), t, e, next_order++);
    }
    fclose(f);
}

static unsigned char voided[100000];

/* Messages, views, survey answers (attributes), points, and voids of earlier orders. */
static void write_events(const char *path, rng *r, int k)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    static const char *const actions[] = {"sent", "opened", "clicked"};
    for (int i = 0; i < k; i++) {
        char t[TIME_FMT_LEN];
        time_format(now - (int64_t)rng_below(r, 40 * TIME_DAY), t);
        int m = (int)rng_below(r, (uint64_t)n_members), id = next_order++;
        switch (rng_below(r, 6)) {
        case 4: /* an order as an event, with line items */
            fprintf(f, "{\"type\":\"order\",\"member_id\":\"M%04d\",\"ts\":\"%s\",\"order_id\":\"J%d\","
                       "\"items\":[{\"sku\":\"S%d\",\"category\":\"c%d\",\"qty\":%d,\"price\":%d}]}\n",
                    m, t, id, (int)rng_below(r, 6), (int)rng_below(r, 3), 1 + (int)rng_below(r, 3),
                    1 + (int)rng_below(r, 60));
            break;
        case 0:
            fprintf(f, "{\"type\":\"message\",\"member_id\":\"M%04d\",\"ts\":\"%s\",\"event_id\":\"E%d\","
                       "\"campaign_id\":\"C1\",\"channel\":\"email\",\"action\":\"%s\"}\n",
                    m, t, id, actions[rng_below(r, 3)]);
            break;
        case 1:
            fprintf(f, "{\"type\":\"survey\",\"member_id\":\"M%04d\",\"ts\":\"%s\",\"event_id\":\"E%d\","
                       "\"answers\":{\"pet\":\"%s\"}}\n", m, t, id, rng_below(r, 2) ? "cat" : "dog");
            break;
        case 2:
            fprintf(f, "{\"type\":\"view\",\"member_id\":\"M%04d\",\"ts\":\"%s\",\"event_id\":\"E%d\","
                       "\"sku\":\"S%d\"}\n", m, t, id, (int)rng_below(r, 6));
            break;
        case 3:
            fprintf(f, "{\"type\":\"points\",\"member_id\":\"M%04d\",\"ts\":\"%s\",\"event_id\":\"E%d\","
                       "\"points\":%d,\"reason\":\"bonus\"}\n", m, t, id, (int)rng_below(r, 500));
            break;
        default: {
            int o = (int)rng_below(r, 900); /* an order of the first import */
            if (voided[o])
                break;
            voided[o] = 1;
            fprintf(f, "{\"type\":\"void\",\"member_id\":\"M0000\",\"ts\":\"%s\",\"order_id\":\"O%06d\","
                       "\"reason\":\"fraud\"}\n", t, o);
            break;
        }
        }
    }
    fclose(f);
}

static void import(patron_db *db, patron_import_kind kind, const char *path)
{
    test_import_at(db, kind, path, now);
}

typedef struct seen {
    int64_t ts[4096];
    uint32_t m[4096];
    int enter[4096];
    int n;
} seen;

static int collect(void *ctx, int64_t ts, uint32_t m, int entered)
{
    seen *s = ctx;
    if (s->n < 4096) {
        s->ts[s->n] = ts;
        s->m[s->n] = m;
        s->enter[s->n++] = entered;
    }
    return 0;
}

static int answer(patron_db *db, segment *g, uint32_t m, int64_t t)
{
    roaring_bitmap_t *b = roaring_bitmap_create();
    patron_error err = {0};
    assert_int_equal(rule_eval_members(g->r, db, t, &m, 1, b, &err), 0);
    int in = roaring_bitmap_contains(b, m);
    roaring_bitmap_free(b);
    return in;
}

static void run(uint64_t seed, int steps)
{
    char path[512], dbp[512];
    snprintf(dbp, sizeof dbp, "%s/live-%llu.db", dir, (unsigned long long)seed);
    unlink(dbp);
    rng r;
    rng_seed(&r, seed);
    now = 1700000000;
    next_order = 0;
    memset(voided, 0, sizeof voided);
    patron_error err = {0};
    patron_db *db;
    assert_int_equal(patron_open(dbp, &db, &err), 0);
    snprintf(path, sizeof path, "%s/m.csv", dir);
    write_members(path, &r, 0, n_members, 0);
    import(db, PATRON_IMPORT_MEMBERS, path);
    snprintf(path, sizeof path, "%s/o.csv", dir);
    write_orders(path, &r, 900, now, 200 * TIME_DAY);
    import(db, PATRON_IMPORT_ORDERS, path);
    assert_int_equal(segments_load(db, &err), 0);
    for (size_t i = 0; i < NRULES; i++) {
        char name[16];
        snprintf(name, sizeof name, "s%zu", i);
        int rc = segment_create(db, name, rules[i], now, &err);
        if (rc)
            fprintf(stderr, "%s: %s\n", rules[i], err.message);
        assert_int_equal(rc, 0);
    }
    assert_int_equal(segments_sync(db, now, &err), 0); /* builds the expiry index */
    uint64_t full_cost = (uint64_t)n_members * NRULES;
    int cheap_steps = 0;
    for (int step = 0; step < steps; step++) {
        int kind = (int)rng_below(&r, 6);
        int64_t before = now;
        uint64_t due_count = 0, ev0 = 0;
        uint64_t touched = 0;
        if (kind <= 1) {
            now += 60 + (int64_t)rng_below(&r, (uint64_t)(kind ? 20 * TIME_DAY : 6 * 3600));
        } else if (kind == 2) {
            snprintf(path, sizeof path, "%s/o%d.csv", dir, step);
            write_orders(path, &r, 1 + (int)rng_below(&r, 6), now, 60 * TIME_DAY);
            import(db, PATRON_IMPORT_ORDERS, path);
        } else if (kind == 3) {
            snprintf(path, sizeof path, "%s/m%d.csv", dir, step);
            write_members(path, &r, 0, 1 + (int)rng_below(&r, 3), 1);
            import(db, PATRON_IMPORT_MEMBERS, path);
        } else if (kind == 4) {
            snprintf(path, sizeof path, "%s/c%d.jsonl", dir, step);
            write_consents(path, &r, 1 + (int)rng_below(&r, 3));
            import(db, PATRON_IMPORT_EVENTS, path);
        } else {
            snprintf(path, sizeof path, "%s/e%d.jsonl", dir, step);
            write_events(path, &r, 1 + (int)rng_below(&r, 5));
            import(db, PATRON_IMPORT_EVENTS, path);
        }
        if (kind >= 2) {
            /* The importer kept the member view current: it equals a rebuild. */
            assert_true(db->view && db->view_valid);
            uint64_t live = view_hash(db);
            db->view_valid = 0;
            assert_int_equal(db_view_ensure(db, &err), 0);
            assert_true(live == view_hash(db));
        }
        if (db->touched)
            touched = roaring_bitmap_get_cardinality(db->touched);
        /* Who may be evaluated: members whose instant comes by now, and touched ones. */
        roaring_bitmap_t *allowed[NRULES];
        for (size_t i = 0; i < db->segs->n; i++) {
            segment *g = &db->segs->s[i];
            ev0 += g->evaluated;
            allowed[i] = db->touched ? roaring_bitmap_copy(db->touched) : roaring_bitmap_create();
            for (uint32_t m = 0; m < g->n_due; m++)
                if (g->due[m] <= now) {
                    roaring_bitmap_add(allowed[i], m);
                    due_count++;
                }
            g->seen = roaring_bitmap_create();
        }
        assert_int_equal(segments_sync(db, now, &err), 0);
        uint64_t ev1 = 0;
        for (size_t i = 0; i < db->segs->n; i++) {
            segment *g = &db->segs->s[i];
            ev1 += g->evaluated;
            /* Each step evaluated only the members it touched or whose instant came. */
            assert_true(roaring_bitmap_is_subset(g->seen, allowed[i]));
            roaring_bitmap_free(g->seen);
            g->seen = NULL;
            roaring_bitmap_free(allowed[i]);
        }
        (void)touched;
        cheap_steps += ev1 - ev0 < full_cost / 4;
        /* Incremental == full evaluation at now, for every segment. */
        for (size_t i = 0; i < db->segs->n; i++) {
            segment *g = &db->segs->s[i];
            roaring_bitmap_t *full = roaring_bitmap_create();
            assert_int_equal(rule_eval_all(g->r, db, now, 1, full, &err), 0);
            if (!roaring_bitmap_equals(full, g->members)) {
                roaring_bitmap_t *d = roaring_bitmap_xor(full, g->members);
                fprintf(stderr, "seed %llu step %d kind %d: segment '%s' (%s) differs on %llu members, e.g. %u\n",
                        (unsigned long long)seed, step, kind, g->name, g->rule,
                        (unsigned long long)roaring_bitmap_get_cardinality(d), roaring_bitmap_minimum(d));
                roaring_bitmap_free(d);
            }
            assert_true(roaring_bitmap_equals(full, g->members));
            roaring_bitmap_free(full);
            /* On a clock advance every change happened at its own instant. */
            if (kind <= 1) {
                seen *s = calloc(1, sizeof *s);
                assert_int_equal(segment_changes(db, g->name, before + 1, collect, s, &err), 0);
                for (int k = 0; k < s->n && k < 40; k++) {
                    assert_int_equal(answer(db, g, s->m[k], s->ts[k]), s->enter[k]);
                    assert_int_equal(answer(db, g, s->m[k], s->ts[k] - 1), !s->enter[k]);
                }
                free(s);
            }
        }
    }
    /* Most steps are far cheaper than recomputing everything. */
    assert_true(cheap_steps * 10 >= steps * 7);
    /* The store holds the same sets: a snapshot plus the changes written after it. */
    size_t ns = db->segs->n;
    roaring_bitmap_t **mem = calloc(ns, sizeof *mem);
    char **names = calloc(ns, sizeof *names);
    for (size_t i = 0; i < ns; i++) {
        mem[i] = roaring_bitmap_copy(db->segs->s[i].members);
        names[i] = strdup(db->segs->s[i].name);
    }
    segments_free(db);
    assert_int_equal(segments_load(db, &err), 0);
    assert_int_equal(db->segs->n, ns);
    for (size_t i = 0; i < ns; i++) {
        segment *g = segment_find(db, names[i]);
        assert_non_null(g);
        assert_true(roaring_bitmap_equals(mem[i], g->members));
        roaring_bitmap_free(mem[i]);
        free(names[i]);
    }
    free(names);
    free(mem);
    patron_close(db);
    unlink(dbp);
}

static void test_incremental_equals_full(void **state)
{
    (void)state;
    segments_snapshot_slack = 16; /* both ways of storing a set: snapshots and replays */
    int seeds = getenv("PATRON_LONG") ? 40 : 4, steps = getenv("PATRON_LONG") ? 120 : 60;
    for (int s = 0; s < seeds; s++)
        run(1000 + (uint64_t)s, steps);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/patron-live-XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_incremental_equals_full)};
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        rc = rc ? rc : 1;
    return rc;
}
