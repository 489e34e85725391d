/*
 * test_rules_index.c -- the index path of rule_eval_all (bitmap indexes of coded
 * columns, range indexes of numbers, times and ages) gives, for every member, the answer
 * of the vector path (rule_eval_members, which never uses an index): conditions on
 * attributes, enrolled_at, birth_date and age (as birth-day ranges, also on and around
 * 29 February), monetary, frequency and recency_days (indexed only when no order is after
 * now), alone, negated, and combined with coded columns; aggregates over orders, line
 * items, returns and messages answered from k-th latest times, narrowed to members with
 * rows in their windows, or summed from prefix arrays or block passes (rules/aggidx.h),
 * at nows before, between and after the events, with 1, 2 and 3 threads; and a full
 * pass that runs out of memory at any of its allocations while building those indexes
 * fails cleanly or answers right.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/mem.h"
#include "base/time.h"
#include "core/db.h"
#include "ingest/rng.h"
#include "rules/eval.h"
#include "rules/rule.h"

#include <roaring/roaring.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const rules[] = {
    "age between 25 and 40",
    "age > 30.5",
    "age < 22 or age >= 70",
    "not (age <= 45)",
    "50 > age",
    "age = 33",
    "age != 33",
    "age between 40.5 and 40.9",
    "age between 28 and 28 and country = \"DE\"",
    "enrolled_at >= \"2024-01-01\" and city != \"Berlin\"",
    "enrolled_at < \"2023-06-15T12:00:00Z\"",
    "\"2024-03-01\" <= enrolled_at",
    "attributes.size >= 3",
    "attributes.size = 2",
    "attributes.size != 2",
    "3 < attributes.size",
    "attributes.size between 1.5 and 3",
    "not (attributes.size > 2) and country in [\"FR\", \"DE\"]",
    "birth_date between \"1984-02-29\" and \"1996-12-31\"",
    "birth_date > \"2000-02-28\"",
    "monetary > 100",
    "frequency >= 3 and recency_days <= 90",
    "recency_days > 365 or frequency = 0",
    "not (recency_days between 30 and 400)",
    "monetary between 50 and 120.5 and country = \"DE\"",
    "recency_days != 10.5 and 2 < frequency",
    /* aggregate indexes: k-th latest times, candidates, prefix sums */
    "count(orders, 90d) >= 2",
    "count(orders, 90d) > 1.5 and country = \"DE\"",
    "count(orders, 200d) = 0",
    "count(orders, 200d) = 1",
    "count(orders, 365d) != 2",
    "count(orders, 365d) < 3",
    "3 >= count(orders, 365d)",
    "count(orders, 365d) = 2.5",
    "count(orders) >= 4",
    "count(orders, 90d) >= 12",
    "count(orders.amount, 90d) >= 1",
    "count(items where category = \"shoes\", 365d) >= 2",
    "count(items where category = \"shoes\" and qty >= 2, 180d) = 0 and count(items, 180d) > 0",
    "count(items where category in [\"shoes\", \"bags\"] and not (brand = \"Zed\"), 400d) >= 1",
    "count(items where category = \"nothing-yet\", 365d) = 0",
    "count_distinct(items.category, 365d) >= 2",
    "count_distinct(items.brand, 500d) = 1",
    "count_distinct(items.category where qty > 1) < 2",
    "max(orders.amount, 180d) > 300",
    "max(orders.amount, 365d) <= 150",
    "max(items.price where category = \"bags\", 365d) < 40",
    "min(orders.amount, 365d) < 50",
    "min(orders.amount, 365d) >= 50",
    "min(items.qty, 400d) > 1",
    "200 < max(orders.amount, 400d)",
    "max(orders.ts, 400d) > \"2024-06-01\"",
    "sum(items.amount where category = \"shoes\", 365d) > 200",
    "sum(orders.amount, 90d) >= 100",
    "sum(orders.amount, 180d) < 150",
    "150 >= sum(orders.amount, 400d)",
    "sum(orders.amount) > 300",
    "sum(orders.amount, 365d) > 0",
    "sum(orders.amount, 365d) >= 0",
    "sum(returns.amount, 365d) >= 30",
    "sum(items.price where brand = \"Zed\", 200d..20d) > 50",
    "sum(items.amount where qty >= 2, 300d) > 99.99 and country != \"US\"",
    "sum(orders.amount, 90d) < 0.5 * sum(orders.amount, 180d..90d)",
    "sum(orders.amount, 180d..90d) > 100 and spend_trend <= -0.5",
    "avg(items.amount where brand = \"Acme\", 300d) >= 80",
    "count(orders, 180d..30d) >= 1 and count(orders, 30d) = 0",
    "sum(items.amount where days_since(ts) < 100, 365d) > 50",
    "count(messages where channel = \"email\" and action = \"clicked\", 60d) = 0 and "
    "count(messages where channel = \"email\", 60d) > 0",
    "sum(returns.amount, 365d) > 20 or count(orders, 30d) >= 1",
    "not (count(orders, 90d) >= 1) and count(orders, 365d) >= 1",
    "count(orders, 90d) - count(orders, 180d) < 0",
    /* the block passes (rules/aggidx.h): windows ending before now, none, averages,
     * counts, kept rows of a where; candidates close together or spread out */
    "spend_trend > 0.2 and count(orders, 365d) >= 1",
    "spend_trend <= -0.5 and count(orders, 180d..90d) >= 2",
    "avg(orders.amount, 365d..30d) > 40 and count(orders, 400d) >= 2",
    "sum(orders.amount) > 2 * sum(orders.amount, 365d) and count(orders) >= 3",
    "sum(items.amount where category = \"shoes\", 300d..30d) > 20 and "
    "count(items where category = \"shoes\", 30d) = 0",
    "attributes.size = 5 and sum(orders.amount, 400d..10d) > 30",
    "country = \"FR\" and attributes.size = 1 and spend_trend < 0 and count(orders, 200d) >= 1",
};

static void test_index_equals_vector(void **state)
{
    (void)state;
    char dir[] = "/tmp/patron-test-rules-index-XXXXXX", path[512];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/members.csv", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("member_id,enrolled_at,birth_date,country,city,size\n", f);
    static const char *const countries[] = {"DE", "FR", "US"}, *const cities[] = {"Berlin", "Paris", "Lyon"};
    rng r;
    rng_seed(&r, 42);
    for (int i = 0; i < 4600; i++) { /* more than two batches: lists are shared by threads */
        int y = 1940 + (int)rng_below(&r, 70), mo = 1 + (int)rng_below(&r, 12),
            d = 1 + (int)rng_below(&r, 28);
        if (i % 50 == 0) /* leap-day births, and the days around them */
            y = 1984 + 4 * (int)rng_below(&r, 8), mo = 2, d = 29;
        else if (i % 50 == 1)
            y = 1985 + (int)rng_below(&r, 30), mo = 2 + (int)rng_below(&r, 2), d = mo == 2 ? 28 : 1;
        char size[16] = "";
        if (rng_below(&r, 5))
            snprintf(size, sizeof size, "%d", (int)rng_below(&r, 6));
        fprintf(f, "M%05d,202%d-%02d-%02dT%02d:00:00Z,", i, 2 + (int)rng_below(&r, 3),
                1 + (int)rng_below(&r, 12), 1 + (int)rng_below(&r, 28), (int)rng_below(&r, 24));
        if (i % 17)
            fprintf(f, "%04d-%02d-%02d", y, mo, d);
        fprintf(f, ",%s,%s,%s\n", countries[rng_below(&r, 3)], cities[rng_below(&r, 3)], size);
    }
    fclose(f);
    /* orders for most members, some after every now below but the last */
    char opath[512];
    snprintf(opath, sizeof opath, "%s/orders.csv", dir);
    f = fopen(opath, "w");
    assert_non_null(f);
    fputs("order_id,member_id,ts,sku,qty,price,category,brand\n", f);
    static const char *const cats[] = {"shoes", "bags", "hats", "socks", ""},
                             *const brands[] = {"Acme", "Zed", "Uno"};
    int oid = 0;
    for (int i = 0; i < 4000; i++) {
        int k = (int)rng_below(&r, 6);
        if (i % 97 == 0) /* a few members with many orders */
            k = 20 + (int)rng_below(&r, 30);
        for (int j = 0; j < k; j++) {
            int64_t day = time_days_from_civil(2023, 1, 1) + (int64_t)rng_below(&r, 1390);
            int y, mo, d;
            time_civil_from_days(day, &y, &mo, &d);
            int h = (int)rng_below(&r, 24), mi = (int)rng_below(&r, 60);
            int lines = 1 + (int)rng_below(&r, 3);
            for (int l = 0; l < lines; l++) /* one order, several line items */
                fprintf(f, "O%d,M%05d,%04d-%02d-%02dT%02d:%02d:00Z,S%d,%d,%d.%02d,%s,%s\n", oid, i,
                        y, mo, d, h, mi, (int)rng_below(&r, 9), 1 + (int)rng_below(&r, 3),
                        (int)rng_below(&r, 90), (int)rng_below(&r, 100), cats[rng_below(&r, 5)],
                        brands[rng_below(&r, 3)]);
            oid++;
        }
        /* orders at the same second for many members of a block (and of the block
         * passes' windows: exactly now - 180d, now - 90d and now of a now below), and
         * a few decades apart (times too far apart for 32 bits) */
        static const char *const edges[] = {"2024-06-30T00:00:00Z", "2024-09-02T00:00:00Z",
                                            "2024-12-01T00:00:00Z", "2025-03-01T00:00:00Z",
                                            "1931-05-01T08:00:00Z", "2150-01-01T00:00:00Z"};
        if (i % 7 == 0 || i % 500 == 3)
            fprintf(f, "O%d,M%05d,%s,S1,1,%d.50,shoes,Acme\n", oid++, i,
                    edges[i % 500 == 3 ? 4 + (i / 500) % 2 : (i / 7) % 4],
                    5 + (int)rng_below(&r, 80));
    }
    fclose(f);
    /* messages and returns */
    char epath[512];
    snprintf(epath, sizeof epath, "%s/events.jsonl", dir);
    f = fopen(epath, "w");
    assert_non_null(f);
    static const char *const chans[] = {"email", "sms"}, *const acts[] = {"opened", "clicked", "sent"};
    for (int i = 0; i < 6000; i++) {
        int64_t day = time_days_from_civil(2023, 1, 1) + (int64_t)rng_below(&r, 1390);
        int y, mo, d;
        time_civil_from_days(day, &y, &mo, &d);
        int m = (int)rng_below(&r, 4000);
        if (i % 4 == 0)
            fprintf(f, "{\"type\":\"return\",\"member_id\":\"M%05d\",\"ts\":\"%04d-%02d-%02dT10:00:00Z\","
                       "\"order_id\":\"R%d\",\"amount\":%d}\n", m, y, mo, d, i, 1 + (int)rng_below(&r, 60));
        else
            fprintf(f, "{\"type\":\"message\",\"member_id\":\"M%05d\",\"ts\":\"%04d-%02d-%02dT%02d:00:00Z\","
                       "\"event_id\":\"E%d\",\"campaign_id\":\"C1\",\"channel\":\"%s\",\"action\":\"%s\"}\n",
                    m, y, mo, d, (int)rng_below(&r, 24), i, chans[rng_below(&r, 2)], acts[rng_below(&r, 3)]);
    }
    fclose(f);
    patron_db *db;
    patron_error err = {0};
    char dbp[512];
    snprintf(dbp, sizeof dbp, "%s/p.db", dir);
    assert_int_equal(patron_open(dbp, &db, &err), 0);
    patron_import_result res;
    if (patron_import(db, PATRON_IMPORT_MEMBERS, path, NULL, &res, &err) != 0)
        fail_msg("import: %s", err.message);
    if (patron_import(db, PATRON_IMPORT_ORDERS, opath, NULL, &res, &err) != 0)
        fail_msg("orders import: %s", err.message);
    if (patron_import(db, PATRON_IMPORT_EVENTS, epath, NULL, &res, &err) != 0)
        fail_msg("events import: %s", err.message);
    assert_int_equal(db_view_ensure(db, &err), 0);
    uint32_t n = db->n_members, *all = malloc(n * sizeof *all);
    for (uint32_t m = 0; m < n; m++)
        all[m] = m;
    static const char *const nows[] = {"2024-02-28T12:00:00Z", "2024-02-29T00:00:00Z",
                                       "2024-03-01T00:00:00Z", "2025-02-28T23:59:59Z",
                                       "2025-03-01T00:00:00Z", "2026-11-23T08:00:00Z",
                                       "2027-01-01T00:00:00Z"};
    rule_env env = {db, NULL, NULL};
    size_t checked = 0;
    for (size_t i = 0; i < sizeof rules / sizeof *rules; i++) {
        rule *ru;
        if (rule_compile(rules[i], &env, &ru, &err) != 0)
            fail_msg("%s: %s", rules[i], err.message);
        for (size_t k = 0; k < sizeof nows / sizeof *nows; k++) {
            int64_t now;
            assert_int_equal(time_parse(nows[k], strlen(nows[k]), &now), 0);
            roaring_bitmap_t *a = roaring_bitmap_create(), *b = roaring_bitmap_create();
            if (rule_eval_all(ru, db, now, 2, a, &err) != 0)
                fail_msg("%s at %s: %s", rules[i], nows[k], err.message);
            for (int threads = 1; threads <= 3; threads += 2) { /* shares differ, answer not */
                roaring_bitmap_t *t = roaring_bitmap_create();
                if (rule_eval_all(ru, db, now, threads, t, &err) != 0)
                    fail_msg("%s at %s: %s", rules[i], nows[k], err.message);
                if (!roaring_bitmap_equals(a, t))
                    fail_msg("%s at %s: %d threads differ", rules[i], nows[k], threads);
                roaring_bitmap_free(t);
            }
            assert_int_equal(rule_eval_members(ru, db, now, all, n, b, &err), 0);
            if (!roaring_bitmap_equals(a, b))
                fail_msg("%s at %s: index %llu members, vector %llu", rules[i], nows[k],
                         (unsigned long long)roaring_bitmap_get_cardinality(a),
                         (unsigned long long)roaring_bitmap_get_cardinality(b));
            checked += roaring_bitmap_get_cardinality(b) > 0;
            roaring_bitmap_free(a);
            roaring_bitmap_free(b);
        }
        rule_free(ru);
    }
    /* a list of members evaluated each at its own instant, with the instant each answer
     * changes next (the live path): one call over the whole list, shared between the
     * threads, gives what one call per member gives */
    static const char *const at_rules[] = {
        "count(orders, 90d) >= 1 and monetary > 30",
        "sum(orders.amount, 90d) < 0.5 * sum(orders.amount, 180d..90d)",
        "count_distinct(items.category, 365d) >= 2 or age between 30 and 45",
    };
    int64_t *tnow = malloc(n * sizeof *tnow), *due = malloc(n * sizeof *due), one_due;
    int at_matched = 0;
    assert_true(n >= 4096 && tnow && due);
    for (size_t i = 0; i < sizeof at_rules / sizeof *at_rules; i++) {
        rule *ru;
        if (rule_compile(at_rules[i], &env, &ru, &err) != 0)
            fail_msg("%s: %s", at_rules[i], err.message);
        for (uint32_t m = 0; m < n; m++)
            tnow[m] = 1700000000 + (int64_t)m * 86413; /* from 2023 to 2035 */
        roaring_bitmap_t *all_hits = roaring_bitmap_create(), *one = roaring_bitmap_create();
        assert_int_equal(rule_eval_members_at(ru, db, tnow[0], all, tnow, n, all_hits, due, &err),
                         0);
        for (uint32_t m = 0; m < n; m++) {
            roaring_bitmap_clear(one);
            assert_int_equal(rule_eval_members_at(ru, db, tnow[m], &all[m], &tnow[m], 1, one,
                                                  &one_due, &err),
                             0);
            if (roaring_bitmap_contains(all_hits, m) != roaring_bitmap_contains(one, m) ||
                due[m] != one_due)
                fail_msg("%s: member %u differs between the list and one call", at_rules[i], m);
        }
        at_matched += roaring_bitmap_get_cardinality(all_hits) > 0;
        roaring_bitmap_free(all_hits);
        roaring_bitmap_free(one);
        rule_free(ru);
    }
    free(tnow);
    free(due);
    assert_int_equal(at_matched, 3);
    /* out of memory at every allocation of a full pass that builds its indexes: the
     * pass fails cleanly or gives the vector path's answer (ASan finds what leaks) */
    static const char *const oom_rules[] = {
        "count(items where category = \"shoes\", 365d) >= 2 and max(orders.amount, 180d) < 60",
        "count_distinct(items.category, 365d) >= 2 and sum(orders.amount, 180d..90d) > 20",
        "sum(orders.amount, 90d) < 0.5 * sum(orders.amount, 180d..90d) and spend_trend <= -0.5",
        "avg(items.amount where category = \"shoes\", 365d..30d) > 20 and "
        "count(orders, 200d..20d) >= 1",
    };
    int64_t onow;
    assert_int_equal(time_parse("2027-01-01T00:00:00Z", 20, &onow), 0);
    for (size_t i = 0; i < sizeof oom_rules / sizeof *oom_rules; i++) {
        rule *ru;
        if (rule_compile(oom_rules[i], &env, &ru, &err) != 0)
            fail_msg("%s: %s", oom_rules[i], err.message);
        roaring_bitmap_t *want = roaring_bitmap_create();
        assert_int_equal(rule_eval_members(ru, db, onow, all, n, want, &err), 0);
        int failed = 0, passed = 0;
        for (long nth = 1; nth <= 400 && !passed; nth++) {
            rule_indexes_drop(db);
            roaring_bitmap_t *got = roaring_bitmap_create();
            mem_fail_after(nth);
            int rc = rule_eval_all(ru, db, onow, 2, got, &err);
            mem_fail_after(0);
            if (rc == 0) {
                assert_true(roaring_bitmap_equals(got, want));
                passed = 1;
            } else {
                assert_int_equal(rc, PATRON_ENOMEM);
                failed++;
            }
            roaring_bitmap_free(got);
        }
        assert_true(passed && failed > 5);
        roaring_bitmap_free(want);
        rule_free(ru);
    }
    /* most rules hold for someone: the comparison is not between two empty sets */
    assert_true(checked * 10 >= (sizeof rules / sizeof *rules) * (sizeof nows / sizeof *nows) * 8);
    free(all);
    patron_close(db);
    snprintf(path, sizeof path, "rm -rf '%s'", dir);
    assert_int_equal(system(path), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_index_equals_vector)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
