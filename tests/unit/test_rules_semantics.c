/*
 * test_rules_semantics.c -- the rule language's meaning on a small hand-made program,
 * with every expected member set worked out by hand from the data below: null
 * semantics, division by zero, window edges (an order exactly at now - 90d is outside
 * `90d`, one exactly at now is inside, future orders are invisible), empty streams,
 * strings no data holds (and the same rule once such data arrives), consent enforcement
 * for model fields, in_segment and its cycles, and the error messages (line:column,
 * caret, did-you-mean, type errors).
 *
 * Each rule is evaluated by the reference interpreter and, where it is built, by the
 * compiled evaluator; both must give the expected members.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/time.h"
#include "core/db.h"
#include "rules/eval.h"
#include "rules/ref.h"
#include "rules/rule.h"

#include <roaring/roaring.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef PATRON_TEST_COMPILED
#define PATRON_TEST_COMPILED 1
#endif

static char dir[256];
static patron_db *db;
static int64_t now;

static void write_file(const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void import(patron_import_kind kind, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    patron_import_opts o;
    patron_import_opts_init(&o);
    o.now = now - 30 * 86400; /* c's enrolled_at */
    patron_import_result res;
    patron_error err = {0};
    if (patron_import(db, kind, path, &o, &res, &err) != 0)
        fail_msg("import %s: %s", name, err.message);
}

/* Segments for in_segment: two that name each other, one static, one plain. */
static roaring_bitmap_t *static_members;

static int segment(void *ctx, const char *name, const char **text, const void **members)
{
    (void)ctx;
    *text = NULL;
    *members = NULL;
    if (strcmp(name, "loop_a") == 0)
        *text = "frequency > 0 and in_segment(\"loop_b\")";
    else if (strcmp(name, "loop_b") == 0)
        *text = "in_segment(\"loop_a\")";
    else if (strcmp(name, "self") == 0)
        *text = "in_segment(\"self\")";
    else if (strcmp(name, "germans") == 0)
        *text = "country = \"DE\"";
    else if (strcmp(name, "modelled") == 0)
        *text = "clv is null";
    else if (strcmp(name, "picked") == 0)
        *members = static_members;
    else
        return 0;
    return 1;
}

static rule_env env(void)
{
    rule_env e = {db, segment, NULL};
    return e;
}

/* The members (ids, comma-separated, in index order) that src selects at now. */
static void members_of(const char *src, char *out, size_t cap)
{
    patron_error err = {0};
    rule_env e = env();
    rule *r;
    assert_int_equal(db_view_ensure(db, &err), 0);
    if (rule_compile(src, &e, &r, &err) != 0)
        fail_msg("rule does not compile: %s\n%s", src, err.message);
    size_t k = 0;
    out[0] = '\0';
    int disagree = -1, disagree_ref = 0; /* the first member the evaluators disagree on */
#if PATRON_TEST_COMPILED
    roaring_bitmap_t *bm = roaring_bitmap_create();
    int rc = rule_eval_all(r, db, now, 2, bm, &err);
#endif
    for (uint32_t m = 0; m < db->n_members; m++) {
        int hit = rule_ref_eval(r, db, m, now);
#if PATRON_TEST_COMPILED
        if (disagree < 0 && hit != (int)roaring_bitmap_contains(bm, m))
            disagree = (int)m, disagree_ref = hit;
#endif
        if (hit)
            k += (size_t)snprintf(out + k, cap - k, "%s%s", k ? "," : "", db->member_id[m]);
    }
#if PATRON_TEST_COMPILED
    roaring_bitmap_free(bm);
    if (rc != 0) {
        rule_free(r);
        fail_msg("compiled evaluation of %s failed: %s", src, err.message);
    }
#endif
    rule_free(r);
    if (disagree >= 0)
        fail_msg("evaluators disagree on %s for member %s: reference %d", src,
                 db->member_id[disagree], disagree_ref);
}

#define EXPECT(src, want)                                                                      \
    do {                                                                                       \
        char got_[512];                                                                        \
        members_of((src), got_, sizeof got_);                                                  \
        if (strcmp(got_, (want)) != 0)                                                         \
            fail_msg("%s\n  expected {%s}, got {%s}", (src), (want), got_);                    \
    } while (0)

/* The error message compiling src gives (fails when it compiles). */
static void error_of(const char *src, char *out, size_t cap)
{
    patron_error err = {0};
    rule_env e = env();
    rule *r = NULL;
    assert_int_equal(db_view_ensure(db, &err), 0);
    int rc = rule_compile(src, &e, &r, &err);
    if (rc == 0) {
        rule_free(r);
        fail_msg("expected an error for: %s", src);
    }
    assert_int_equal(rc, PATRON_EINPUT);
    snprintf(out, cap, "%s", err.message);
}

#define EXPECT_ERROR(src, part)                                                                \
    do {                                                                                       \
        char msg_[1024];                                                                       \
        error_of((src), msg_, sizeof msg_);                                                    \
        if (!strstr(msg_, (part)))                                                             \
            fail_msg("%s\n  expected an error containing '%s', got:\n%s", (src), (part), msg_); \
    } while (0)

/*
 * The program, at now = 2024-06-15T12:00:00Z (now - 90d = 2024-03-17T12:00:00Z):
 *   a: DE, app, eco-friendly;running, email granted, profiling granted, vip, score 10,
 *      born 1990-06-15 (birthday today), enrolled 2023-01-01;
 *      O1 at now - 90d exactly: S1 shoes 1 x 100
 *      O3 at now - 90d + 1s:    S1 shoes 1 x 5
 *      O2 at now exactly:       S2 shirts 2 x 10
 *      O4 at now + 1s (future): S9 toys 1 x 1000
 *   b: FR, books, email denied, profiling denied, vip false, no score, born 2000-02-29,
 *      enrolled 2024-01-01; O5 at now - 200d: S3 books 1 x 50; return R1 at now - 10d:
 *      S1 1 x 30; messages: email sent (now - 5d), email clicked (now - 70d).
 *   c: no profile fields, no orders (empty streams), enrolled at the import time.
 */
static int setup(void **state)
{
    (void)state;
    assert_int_equal(time_parse("2024-06-15T12:00:00Z", 20, &now), 0);
    char path[512];
    snprintf(path, sizeof path, "%s/sem.db", dir);
    unlink(path);
    patron_error err = {0};
    assert_int_equal(patron_open(path, &db, &err), 0);
    write_file("members.csv",
               "member_id,enrolled_at,birth_date,country,preferred_channel,interests,"
               "consent_email,consent_profiling,vip,score\n"
               "a,2023-01-01,1990-06-15,DE,app,eco-friendly;running,true,true,true,10\n"
               "b,2024-01-01,2000-02-29,FR,,books,false,false,false,\n"
               "c,,,,,,,,,\n");
    import(PATRON_IMPORT_MEMBERS, "members.csv");
    char orders[1024];
    snprintf(orders, sizeof orders,
             "order_id,member_id,ts,sku,qty,price,category\n"
             "O1,a,%lld,S1,1,100,shoes\n"
             "O3,a,%lld,S1,1,5,shoes\n"
             "O2,a,%lld,S2,2,10,shirts\n"
             "O4,a,%lld,S9,1,1000,toys\n"
             "O5,b,%lld,S3,1,50,books\n"
             "R1,b,%lld,S1,-1,30,shoes\n",
             (long long)(now - 90 * 86400), (long long)(now - 90 * 86400 + 1), (long long)now,
             (long long)(now + 1), (long long)(now - 200 * 86400), (long long)(now - 10 * 86400));
    write_file("orders.csv", orders);
    import(PATRON_IMPORT_ORDERS, "orders.csv");
    char events[1024];
    snprintf(events, sizeof events,
             "{\"type\":\"message\",\"member_id\":\"b\",\"ts\":%lld,\"campaign_id\":\"k1\","
             "\"channel\":\"email\",\"action\":\"sent\"}\n"
             "{\"type\":\"message\",\"member_id\":\"b\",\"ts\":%lld,\"campaign_id\":\"k0\","
             "\"channel\":\"email\",\"action\":\"clicked\"}\n",
             (long long)(now - 5 * 86400), (long long)(now - 70 * 86400));
    write_file("events.jsonl", events);
    import(PATRON_IMPORT_EVENTS, "events.jsonl");
    assert_int_equal(db_view_ensure(db, &err), 0);
    static_members = roaring_bitmap_create();
    roaring_bitmap_add(static_members, 2); /* c */
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    patron_close(db);
    roaring_bitmap_free(static_members);
    return 0;
}

static void test_window_edges(void **state)
{
    (void)state;
    /* O1 (exactly now - 90d) is out of 90d, O3 (one second later) and O2 (now) are in. */
    EXPECT("count(orders, 90d) = 2", "a");
    EXPECT("sum(orders.amount, 90d) = 25", "a");
    /* ...and O1 is inside 180d..90d, whose upper edge is included. */
    EXPECT("count(orders, 180d..90d) = 1", "a");
    EXPECT("sum(orders.amount, 180d..90d) = 100", "a");
    EXPECT("count(orders, 90d..0d) = 2", "a");
    /* The future order O4 counts nowhere, not even in "all" or frequency. */
    EXPECT("count(orders) = 3 and frequency = 3", "a");
    EXPECT("max(orders.amount) = 100", "a");
    EXPECT("count(items where sku = \"S9\") = 0 and count(items, all) = 3", "a");
    EXPECT("recency_days = 0 and days_since(max(orders.ts)) = 0", "a");
    EXPECT("min(orders.ts) = \"2024-03-17T12:00:00Z\"", "a");
    EXPECT("sum(items.amount where category = \"shoes\", 365d) = 105", "a");
    EXPECT("count_distinct(items.sku) = 2", "a");
    EXPECT("count(orders, 0.5d) = 1", "a");
}

static void test_behaviour(void **state)
{
    (void)state;
    /* monetary is net of returns; returns read as positive amounts. */
    EXPECT("monetary = 125", "a");
    EXPECT("monetary = 20 and sum(returns.amount) = 30", "b");
    EXPECT("monetary = 0 and frequency = 0", "c");
    EXPECT("aov > 41.66 and aov < 41.67", "a");
    EXPECT("aov = 20", "b");
    EXPECT("recency_days = 200", "b");
    /* spend_trend = (S1 - S0) / max(S0, 1): a (25 - 100) / 100, b (-30 - 0) / 1, c 0. */
    EXPECT("spend_trend = -0.75", "a");
    EXPECT("spend_trend = -30", "b");
    EXPECT("spend_trend = 0", "c");
    EXPECT("age = 34 and days_to_birthday = 0", "a");
    /* Born on Feb 29: the next birthday is 2025-02-28 (not a leap year). */
    EXPECT("age = 24 and days_to_birthday = 258", "b");
    EXPECT("tenure_days > 531 and tenure_days < 532", "a");
    EXPECT("tenure_days = 30", "c");
    EXPECT("count(messages where channel = \"email\" and action = \"clicked\", 60d) = 0", "a,b,c");
    EXPECT("count(messages where channel = \"email\" and action = \"clicked\", 90d) = 1", "b");
    EXPECT("enrolled_at >= \"2024-01-01\"", "b,c");
    EXPECT("birth_date < \"1995-01-01\"", "a");
}

static void test_empty_streams(void **state)
{
    (void)state;
    EXPECT("count(orders) = 0 and sum(orders.amount) = 0 and count_distinct(items.sku) = 0",
           "c");
    EXPECT("avg(orders.amount) is null and min(orders.ts) is null and max(orders.amount) is null",
           "c");
    EXPECT("recency_days is null and aov is null", "c");
    EXPECT("avg(orders.amount) > 0", "a,b");
    EXPECT("avg(orders.amount, 90d) is null", "b,c");
    EXPECT("count(redemptions) = 0 and sum(points.points) = 0", "a,b,c");
}

static void test_nulls(void **state)
{
    (void)state;
    /* Comparisons with null are false either way; "not" of a false comparison holds. */
    EXPECT("country = \"DE\"", "a");
    EXPECT("country != \"DE\"", "b");
    EXPECT("not (country = \"DE\")", "b,c");
    EXPECT("country is null", "c");
    EXPECT("country is not null", "a,b");
    EXPECT("country in [\"DE\", \"FR\"]", "a,b");
    EXPECT("country not in [\"DE\"]", "b");
    EXPECT("null in [1, 2] or null = null or null != 1", "");
    /* A null boolean is false as a condition. */
    EXPECT("attributes.vip", "a");
    EXPECT("not attributes.vip", "b,c");
    EXPECT("attributes.vip = false", "b");
    EXPECT("attributes.vip is null", "c");
    EXPECT("attributes.score > 5", "a");
    EXPECT("attributes.score + 1 is null", "b,c");
    EXPECT("attributes.score between 0 and 100", "a");
    EXPECT("attributes.score + null is null and -attributes.score = -10", "a");
    EXPECT("age between 20 and 40", "a,b");
    /* An attribute no member has reads as null. */
    EXPECT("attributes.never_heard_of_it is null", "a,b,c");
    /* Model fields are null until models run. */
    EXPECT("p_alive < 0.3 or rfm.segment in [\"At Risk\"]", "");
    EXPECT("preferred_channel = \"app\"", "a");
    EXPECT("preferred_channel != \"app\"", "");
}

static void test_division_by_zero(void **state)
{
    (void)state;
    EXPECT("frequency / 0 is null", "a,b,c");
    EXPECT("(monetary / frequency) is null", "c");
    EXPECT("monetary / frequency > 0", "a,b");
    EXPECT("1 / (frequency - frequency) = 1 / 0", "");
    EXPECT("not (frequency / 0 > 1)", "a,b,c");
    EXPECT("sum(orders.amount, 90d) < 0.5 * sum(orders.amount, 180d..90d)", "a");
    EXPECT("10 / 4 = 2.5 and 2w = 14 and recency_days <= 2w", "a");
}

static void test_unknown_strings(void **state)
{
    (void)state;
    /* A string no data holds matches nothing, and "!=" it holds for every non-null value. */
    EXPECT("country = \"XX\"", "");
    EXPECT("country != \"XX\"", "a,b");
    EXPECT("\"XX\" in interests", "");
    EXPECT("\"XX\" not in interests", "a,b,c");
    EXPECT("\"eco-friendly\" in interests", "a");
    EXPECT("\"eco-friendly\" not in interests", "b,c");
    EXPECT("count(items where category = \"hats\") = 0", "a,b,c");
    EXPECT("member_id = \"b\" or member_id = \"nobody\"", "b");
    EXPECT("\"XX\" in [\"XX\"] and \"XX\" != \"YY\"", "a,b,c");
    /* Once such data arrives, the same rule (compiled again) matches it. */
    write_file("more.csv", "member_id,country,interests\nd,XX,XX\n");
    import(PATRON_IMPORT_MEMBERS, "more.csv");
    write_file("hats.csv", "order_id,member_id,ts,sku,qty,price,category\n"
                           "H1,d,2024-06-01,S4,1,3,hats\n");
    import(PATRON_IMPORT_ORDERS, "hats.csv");
    EXPECT("country = \"XX\"", "d");
    EXPECT("\"XX\" in interests", "d");
    EXPECT("count(items where category = \"hats\") = 1", "d");
}

static void test_consent(void **state)
{
    (void)state;
    EXPECT("consent.email", "a");
    EXPECT("not consent.email", "b,c");
    EXPECT("consent.profiling", "a,c"); /* missing profiling takes the default: granted */
    EXPECT("consent.sms", "");
    /* SPEC 1.5: a rule that reads a model field never selects a member without profiling
     * consent -- not even when the rule is true for them, directly or via in_segment. */
    EXPECT("p_alive is null", "a,c");
    EXPECT("clv is null or true", "a,c");
    EXPECT("in_segment(\"modelled\") and frequency >= 0", "a,c");
    EXPECT("not (p_alive > 0)", "a,c");
}

static void test_segments(void **state)
{
    (void)state;
    EXPECT("in_segment(\"germans\")", "a");
    EXPECT("not in_segment(\"germans\")", "b,c");
    EXPECT("in_segment(\"picked\")", "c");
    EXPECT("in_segment(\"picked\") or in_segment(\"germans\")", "a,c");
    EXPECT_ERROR("in_segment(\"loop_a\")", "cycle");
    EXPECT_ERROR("frequency > 1 or in_segment(\"self\")", "cycle");
    EXPECT_ERROR("in_segment(\"nope\")", "no segment named 'nope'");
}

static void test_errors(void **state)
{
    (void)state;
    char msg[1024];
    error_of("contry = \"DE\"", msg, sizeof msg);
    assert_string_equal(msg, "1:1: unknown field 'contry' (did you mean 'country'?)\n"
                             "contry = \"DE\"\n"
                             "^");
    error_of("frequency > 1\n  and contry = \"DE\"", msg, sizeof msg);
    assert_non_null(strstr(msg, "2:7: unknown field 'contry' (did you mean 'country'?)"));
    assert_non_null(strstr(msg, "\n  and contry = \"DE\"\n      ^"));
    EXPECT_ERROR("count(ordres, 90d) > 1", "did you mean 'orders'?");
    EXPECT_ERROR("sum(orders.amout) > 1", "did you mean 'amount'?");
    EXPECT_ERROR("consent.emial", "did you mean 'consent.email'?");
    EXPECT_ERROR("frequency > 1 and", "1:18: expected a value, found the end of the rule");
    EXPECT_ERROR("frequency >", "1:12:");
    EXPECT_ERROR("(frequency > 1", "expected ')'");
    EXPECT_ERROR("frequency > 1)", "unbalanced ')'");
    EXPECT_ERROR("country = \"DE", "unterminated string");
    EXPECT_ERROR("", "the rule is empty");
    EXPECT_ERROR("-- only a comment", "the rule is empty");
    EXPECT_ERROR("count(orders, 90d..180d) > 1", "d1 > d2");
    EXPECT_ERROR("foo(1) > 2", "unknown function 'foo'");
    /* Types. */
    EXPECT_ERROR("country > 3", "cannot compare a string with a number");
    EXPECT_ERROR("country > \"DE\"", "strings allow only =, != and in");
    EXPECT_ERROR("sum(orders) > 1", "sum needs a field");
    EXPECT_ERROR("sum(items.sku) > 1", "needs a number field");
    EXPECT_ERROR("frequency = \"x\"", "cannot compare a number with a string");
    EXPECT_ERROR("frequency + 1", "a rule must be a condition");
    EXPECT_ERROR("not frequency", "expected a condition");
    EXPECT_ERROR("country + 1 > 2", "arithmetic needs numbers");
    EXPECT_ERROR("enrolled_at > \"last tuesday\"", "cannot read \"last tuesday\"");
    EXPECT_ERROR("orders > 1", "is a stream");
    EXPECT_ERROR("count(orders where count(items) > 1) > 1", "cannot be nested");
    EXPECT_ERROR("interests = \"x\"", "tag set");
    EXPECT_ERROR("frequency in [recency_days]", "list items must be constants");
}

static void test_comments_and_layout(void **state)
{
    (void)state;
    EXPECT("-- frequent buyers\nfrequency >= 3 -- at least three orders\n  and country = \"DE\"", "a");
    EXPECT("frequency>=3 and(country=\"DE\")", "a");
    EXPECT("count ( orders , 90d ) >= 2", "a");
    EXPECT("monetary > 100 -- and country = \"FR\"", "a");
    EXPECT("country = \"a -- b\" or frequency = 3", "a");
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/patron-test-rules-sem-XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    /* test_unknown_strings imports more data: it runs last among the value tests. */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_window_edges),   cmocka_unit_test(test_behaviour),
        cmocka_unit_test(test_empty_streams),  cmocka_unit_test(test_nulls),
        cmocka_unit_test(test_division_by_zero), cmocka_unit_test(test_consent),
        cmocka_unit_test(test_segments),       cmocka_unit_test(test_errors),
        cmocka_unit_test(test_comments_and_layout), cmocka_unit_test(test_unknown_strings),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        return 1;
    return rc;
}
