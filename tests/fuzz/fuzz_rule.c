/*
 * fuzz_rule.c -- libFuzzer harness for the rule language front end: rule_parse() and
 * rule_check() (name resolution, types, folding, in_segment inlining with cycles) against
 * a small fixed program, then the reference interpreter over its members and
 * rule_node_text() over every node of what checked.
 *
 * The input is the rule text (cut at the first NUL).  Invariants: never crash; a rule is
 * either accepted or refused with PATRON_EINPUT (or ENOMEM) and a message of the form
 * "L:C: ..." whose line and column lie inside the input; an accepted rule has a
 * condition (or null) at its root.  The program is built once, in a temporary directory,
 * through the public importers.  With FUZZ_RULE_DIFF=1 in the environment it also
 * compares the compiled evaluator with the reference at a few values of now and aborts
 * on a difference.  See README.md to build and run.
 */
#include "core/db.h"
#include "rules/eval.h"
#include "rules/ref.h"
#include "rules/rule.h"

#include "base/err.h"

#include <roaring/roaring.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static patron_db *db;
static roaring_bitmap_t *picked;
static volatile unsigned sink;

static int segment(void *ctx, const char *name, const char **text, const void **members)
{
    (void)ctx;
    *text = NULL;
    *members = NULL;
    if (strcmp(name, "vip") == 0)
        *text = "monetary > 100 and count(orders, 90d) >= 1";
    else if (strcmp(name, "a") == 0)
        *text = "in_segment(\"b\") or country = \"DE\"";
    else if (strcmp(name, "b") == 0)
        *text = "in_segment(\"a\")";
    else if (strcmp(name, "model") == 0)
        *text = "p_alive < 0.5";
    else if (strcmp(name, "broken") == 0)
        *text = "contry = ";
    else if (strcmp(name, "picked") == 0)
        *members = picked;
    else
        return 0;
    return 1;
}

static void put(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f)
        abort();
    fputs(text, f);
    fclose(f);
}

static void import(const char *dir, patron_import_kind kind, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    patron_import_result res;
    patron_error err = {0};
    if (patron_import(db, kind, path, NULL, &res, &err) != 0) {
        fprintf(stderr, "fuzz_rule: import %s: %s\n", name, err.message);
        abort();
    }
}

static void setup(void)
{
    char dir[] = "/tmp/patron-fuzz-rule-XXXXXX";
    if (!mkdtemp(dir))
        abort();
    char path[512];
    snprintf(path, sizeof path, "%s/fuzz.db", dir);
    patron_error err = {0};
    if (patron_open(path, &db, &err) != 0)
        abort();
    put(dir, "members.csv",
        "member_id,enrolled_at,birth_date,country,city,preferred_channel,interests,"
        "consent_email,consent_profiling,vip,score,tier_hint\n"
        "a,2023-01-01,1990-06-15,DE,Berlin,app,eco-friendly;running,true,true,true,10,gold\n"
        "b,2024-01-01,2000-02-29,FR,,email,books,false,false,false,,silver\n"
        "c,,,,,,,,,,,\n");
    import(dir, PATRON_IMPORT_MEMBERS, "members.csv");
    put(dir, "orders.csv",
        "order_id,member_id,ts,sku,qty,price,category,brand\n"
        "O1,a,2024-03-17T12:00:00Z,S1,1,100,shoes,acme\n"
        "O2,a,2024-06-15T12:00:00Z,S2,2,10,shirts,\n"
        "O3,b,2023-11-28,S3,1,50,books,zenith\n"
        "R1,b,2024-06-05,S1,-1,30,shoes,acme\n");
    import(dir, PATRON_IMPORT_ORDERS, "orders.csv");
    put(dir, "events.jsonl",
        "{\"type\":\"message\",\"member_id\":\"b\",\"ts\":\"2024-06-10\",\"campaign_id\":\"k1\","
        "\"channel\":\"email\",\"action\":\"clicked\"}\n"
        "{\"type\":\"view\",\"member_id\":\"a\",\"ts\":\"2024-06-01\",\"sku\":\"S1\",\"category\":\"shoes\"}\n"
        "{\"type\":\"points\",\"member_id\":\"a\",\"ts\":\"2024-06-01\",\"points\":50,\"reason\":\"bonus\"}\n"
        "{\"type\":\"redemption\",\"member_id\":\"a\",\"ts\":\"2024-06-02\",\"reward_id\":\"r1\",\"points\":20}\n"
        "{\"type\":\"referral\",\"member_id\":\"a\",\"ts\":\"2024-05-01\",\"referred_member_id\":\"b\"}\n"
        "{\"type\":\"survey\",\"member_id\":\"c\",\"ts\":\"2024-05-01\",\"answers\":{\"nps\":9}}\n"
        "{\"type\":\"custom\",\"member_id\":\"c\",\"ts\":\"2024-05-02\",\"name\":\"app_open\"}\n"
        "{\"type\":\"consent\",\"member_id\":\"c\",\"ts\":\"2024-05-02\",\"channel\":\"sms\","
        "\"status\":\"granted\",\"expires_at\":\"2024-07-01\"}\n");
    import(dir, PATRON_IMPORT_EVENTS, "events.jsonl");
    if (db_view_ensure(db, &err) != 0)
        abort();
    picked = roaring_bitmap_create();
    roaring_bitmap_add(picked, 1);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir); /* the store stays open: unlinked is fine */
    if (system(cmd) != 0)
        abort();
}

/* "L:C: ..." with L and C inside the text (C may be one past the end of a line). */
static void check_position(const char *src, const char *msg)
{
    int line, col;
    if (sscanf(msg, "%d:%d:", &line, &col) != 2) {
        /* in_segment errors name the segment's own text; everything else has a position */
        if (!strstr(msg, "segment"))
            abort();
        return;
    }
    int l = 1;
    const char *p = src;
    while (l < line && (p = strchr(p, '\n')))
        p++, l++;
    if (!p || line < 1 || col < 1)
        abort();
    size_t len = strcspn(p, "\n");
    if ((size_t)col > len + 1)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!db)
        setup();
    char *src = malloc(size + 1);
    if (!src)
        return 0;
    memcpy(src, data, size);
    src[size] = '\0';
    rule_env env = {db, segment, NULL};
    rule *r;
    patron_error err = {0};
    int rc = rule_compile(src, &env, &r, &err);
    if (rc != PATRON_OK) {
        if (rc != PATRON_EINPUT && rc != PATRON_ENOMEM)
            abort();
        if (rc == PATRON_EINPUT)
            check_position(src, err.message);
        free(src);
        return 0;
    }
    PATRON_ASSERT(r->root && (r->root->type == VT_BOOL || r->root->type == VT_NULL));
    char buf[256];
    for (size_t i = 0; i < r->n_nodes; i++) {
        rule_node_text(r, r->nodes[i], buf, sizeof buf);
        sink += (unsigned)strlen(buf);
    }
    static const int64_t nows[] = {1718452800 /* 2024-06-15T12:00:00Z */, 1710676800,
                                   1717588800, 1893456000};
    const char *diff = getenv("FUZZ_RULE_DIFF");
    roaring_bitmap_t *out = diff && *diff == '1' ? roaring_bitmap_create() : NULL;
    for (size_t k = 0; k < (out ? 4 : 1); k++) {
        if (out && rule_eval_all(r, db, nows[k], 1, out, &err) != 0) {
            fprintf(stderr, "fuzz_rule: rule_eval_all failed on <%s>: %s\n", src, err.message);
            abort();
        }
        for (uint32_t m = 0; m < db->n_members; m++) {
            int ref = rule_ref_eval(r, db, m, nows[k]);
            sink += (unsigned)ref;
            if (out && ref != (int)roaring_bitmap_contains(out, m)) {
                fprintf(stderr, "fuzz_rule: evaluators disagree on <%s>, member %s, now %lld: "
                                "reference %d\n", src, db->member_id[m], (long long)nows[k], ref);
                abort();
            }
        }
    }
    roaring_bitmap_free(out);
    rule_free(r);
    free(src);
    return 0;
}
