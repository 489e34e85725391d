/*
 * test_personas.c -- persona features (src/models/personas.c) on a small hand-made
 * program whose every feature value is worked out by hand below: category shares of item
 * spend, purchase-channel shares, message response rates per channel, redemptions in the
 * last 365 days; orders after now and members without orders are left out.  Then a fit
 * over two well-separated groups, whose descriptions must name what sets each apart.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/hmap.h"
#include "base/mem.h"
#include "base/time.h"
#include "core/db.h"
#include "models/personas.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int feature(const personas_feats *fs, const char *name)
{
    for (int f = 0; f < fs->n; f++)
        if (strcmp(fs->name[f], name) == 0)
            return f;
    fail_msg("no feature %s", name);
    return -1;
}

static void test_features(void **state)
{
    (void)state;
    char dir[] = "/tmp/patron-test-personas-XXXXXX", path[512];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/members.csv", dir);
    write_file(path, "member_id,enrolled_at\n"
                     "M1,2024-01-01T00:00:00Z\n"
                     "M2,2023-07-01T00:00:00Z\n"
                     "M3,2024-04-01T00:00:00Z\n"
                     "M4,2024-04-01T00:00:00Z\n");
    snprintf(path, sizeof path, "%s/orders.csv", dir);
    write_file(path, "order_id,member_id,ts,sku,qty,price,category,brand,channel,store\n"
                     "O1,M1,2024-01-10T12:00:00Z,S1,2,50.00,shoes,B,app,\n"
                     "O1,M1,2024-01-10T12:00:00Z,S2,1,20.00,apparel,B,app,\n"
                     "O2,M1,2024-03-01T12:00:00Z,S1,1,80.00,shoes,B,app,\n"
                     "O3,M2,2024-02-01T12:00:00Z,S2,1,100.00,apparel,B,web,\n"
                     "O4,M2,2024-02-15T12:00:00Z,S3,1,50.00,books,B,store,ST1\n"
                     "O5,M3,2024-05-01T12:00:00Z,S2,3,10.00,apparel,B,store,ST1\n"
                     "O6,M1,2025-02-01T12:00:00Z,S3,9,10.00,books,B,store,ST1\n");
    snprintf(path, sizeof path, "%s/events.jsonl", dir);
    write_file(path,
               "{\"event_id\":\"E1\",\"type\":\"message\",\"member_id\":\"M1\",\"ts\":\"2024-02-01T10:00:00Z\",\"campaign_id\":\"C1\",\"channel\":\"push\",\"action\":\"sent\"}\n"
               "{\"event_id\":\"E2\",\"type\":\"message\",\"member_id\":\"M1\",\"ts\":\"2024-02-01T11:00:00Z\",\"campaign_id\":\"C1\",\"channel\":\"push\",\"action\":\"clicked\"}\n"
               "{\"event_id\":\"E3\",\"type\":\"message\",\"member_id\":\"M1\",\"ts\":\"2024-03-01T10:00:00Z\",\"campaign_id\":\"C2\",\"channel\":\"push\",\"action\":\"sent\"}\n"
               "{\"event_id\":\"E4\",\"type\":\"message\",\"member_id\":\"M1\",\"ts\":\"2024-03-01T10:00:00Z\",\"campaign_id\":\"C2\",\"channel\":\"email\",\"action\":\"sent\"}\n"
               "{\"event_id\":\"E5\",\"type\":\"message\",\"member_id\":\"M2\",\"ts\":\"2024-03-01T10:00:00Z\",\"campaign_id\":\"C2\",\"channel\":\"email\",\"action\":\"sent\"}\n"
               "{\"event_id\":\"E6\",\"type\":\"message\",\"member_id\":\"M2\",\"ts\":\"2024-03-01T10:30:00Z\",\"campaign_id\":\"C2\",\"channel\":\"email\",\"action\":\"clicked\"}\n"
               "{\"event_id\":\"E7\",\"type\":\"message\",\"member_id\":\"M2\",\"ts\":\"2024-04-01T10:00:00Z\",\"campaign_id\":\"C3\",\"channel\":\"email\",\"action\":\"sent\"}\n"
               "{\"event_id\":\"E8\",\"type\":\"message\",\"member_id\":\"M2\",\"ts\":\"2024-04-01T10:10:00Z\",\"campaign_id\":\"C3\",\"channel\":\"email\",\"action\":\"opened\"}\n"
               "{\"event_id\":\"E9\",\"type\":\"message\",\"member_id\":\"M2\",\"ts\":\"2024-04-01T10:20:00Z\",\"campaign_id\":\"C3\",\"channel\":\"email\",\"action\":\"converted\"}\n"
               "{\"event_id\":\"E10\",\"type\":\"redemption\",\"member_id\":\"M1\",\"ts\":\"2024-06-01T10:00:00Z\",\"reward_id\":\"R1\",\"points\":100}\n"
               "{\"event_id\":\"E11\",\"type\":\"redemption\",\"member_id\":\"M1\",\"ts\":\"2023-06-01T10:00:00Z\",\"reward_id\":\"R1\",\"points\":100}\n"
               "{\"event_id\":\"E12\",\"type\":\"message\",\"member_id\":\"M3\",\"ts\":\"2025-03-01T10:00:00Z\",\"campaign_id\":\"C9\",\"channel\":\"sms\",\"action\":\"sent\"}\n");
    patron_db *db;
    patron_error err = {0};
    snprintf(path, sizeof path, "%s/p.db", dir);
    assert_int_equal(patron_open(path, &db, &err), 0);
    patron_import_result res;
    static const char *const files[] = {"members.csv", "orders.csv", "events.jsonl"};
    static const int kinds[] = {PATRON_IMPORT_MEMBERS, PATRON_IMPORT_ORDERS,
                                PATRON_IMPORT_EVENTS};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        if (patron_import(db, kinds[i], path, NULL, &res, &err) != 0)
            fail_msg("import %s: %s", files[i], err.message);
    }
    int64_t now;
    assert_int_equal(time_parse("2024-12-31T00:00:00Z", 20, &now), 0);
    uint32_t m1, m2, m3, m4;
    assert_true(hmap_get(&db->member_ids, "M1", 2, &m1) && hmap_get(&db->member_ids, "M2", 2, &m2));
    assert_true(hmap_get(&db->member_ids, "M3", 2, &m3) && hmap_get(&db->member_ids, "M4", 2, &m4));
    uint8_t el[8] = {0};
    el[m1] = el[m2] = el[m3] = 1; /* M4 has no order */
    personas_feats fs;
    double *X;
    uint32_t *mem;
    size_t n;
    assert_int_equal(personas_features(db, now, el, &fs, &X, &mem, &n, &err), 0);
    assert_int_equal(n, 3);
    /* Categories by item spend at now: shoes 180, apparel 150, books 50 (O6 is after now);
     * order channels: app 2, store 2 (app first seen), web 1; message channels by sends:
     * email 3, push 2 (sms only after now); redemptions exist. */
    static const char *const want[] = {
        "monetary", "frequency", "recency_days", "aov", "tenure_days",
        "category_share:shoes", "category_share:apparel", "category_share:books",
        "channel_share:app", "channel_share:store", "channel_share:web",
        "response_rate:email", "response_rate:push", "redemptions_365d"};
    assert_int_equal(fs.n, 14);
    for (int f = 0; f < fs.n; f++)
        assert_string_equal(fs.name[f], want[f]);
    assert_string_equal(fs.label[feature(&fs, "category_share:shoes")], "shoes");
    const double *r1 = NULL, *r2 = NULL, *r3 = NULL;
    for (size_t i = 0; i < n; i++) {
        const double *r = X + i * (size_t)fs.n;
        if (mem[i] == m1)
            r1 = r;
        else if (mem[i] == m2)
            r2 = r;
        else if (mem[i] == m3)
            r3 = r;
    }
    assert_true(r1 && r2 && r3);
    const double day = 86400;
    /* M1: 200.00 over 2 orders; last order 2024-03-01 12:00; enrolled 2024-01-01. */
    assert_float_equal(r1[0], 200.0, 1e-9);
    assert_float_equal(r1[1], 2.0, 0);
    assert_float_equal(r1[2], (305 * day - 12 * 3600) / day, 1e-9);
    assert_float_equal(r1[3], 100.0, 1e-9);
    assert_float_equal(r1[4], 365.0, 1e-9);
    assert_float_equal(r1[5], 0.9, 1e-12);
    assert_float_equal(r1[6], 0.1, 1e-12);
    assert_float_equal(r1[7], 0.0, 0);
    assert_float_equal(r1[8], 1.0, 0);
    assert_float_equal(r1[9], 0.0, 0);
    assert_float_equal(r1[11], 0.0, 0);  /* one email sent, no response */
    assert_float_equal(r1[12], 0.5, 0);  /* two pushes, one clicked */
    assert_float_equal(r1[13], 1.0, 0);  /* 2023-06-01 is more than 365 days back */
    /* M2: apparel 100 + books 50; web and store; email 2 sent, clicked + converted. */
    assert_float_equal(r2[5], 0.0, 0);
    assert_float_equal(r2[6], 100.0 / 150.0, 1e-12);
    assert_float_equal(r2[7], 50.0 / 150.0, 1e-12);
    assert_float_equal(r2[9], 0.5, 0);
    assert_float_equal(r2[10], 0.5, 0);
    assert_float_equal(r2[11], 1.0, 0);
    assert_float_equal(r2[12], 0.0, 0);
    assert_float_equal(r2[13], 0.0, 0);
    /* M3: one store order of apparel, no messages before now. */
    assert_float_equal(r3[0], 30.0, 1e-9);
    assert_float_equal(r3[6], 1.0, 0);
    assert_float_equal(r3[9], 1.0, 0);
    assert_float_equal(r3[11] + r3[12] + r3[13], 0.0, 0);
    mem_free(X), mem_free(mem);
    patron_close(db);
    snprintf(path, sizeof path, "rm -rf '%s'", dir);
    assert_int_equal(system(path), 0);
}

/* Two groups apart on every optional feature: the descriptions say so. */
static void test_descriptions(void **state)
{
    (void)state;
    personas_feats fs;
    personas_feats_base(&fs);
    static const struct {
        int kind;
        const char *name, *label;
    } extra[] = {{PF_CATEGORY, "category_share:shoes", "shoes"},
                 {PF_CATEGORY, "category_share:books", "books"},
                 {PF_CHANNEL, "channel_share:app", "app"},
                 {PF_CHANNEL, "channel_share:store", "store"},
                 {PF_RESPONSE, "response_rate:push", "push"},
                 {PF_RESPONSE, "response_rate:email", "email"},
                 {PF_REDEEM, "redemptions_365d", "redemptions_365d"}};
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) {
        int f = fs.n++;
        fs.kind[f] = (uint8_t)extra[i].kind;
        snprintf(fs.name[f], sizeof fs.name[f], "%s", extra[i].name);
        snprintf(fs.label[f], sizeof fs.label[f], "%s", extra[i].label);
    }
    const size_t n = 400, d = (size_t)fs.n;
    double *X = calloc(n * d, sizeof *X);
    int16_t *id = calloc(n, sizeof *id);
    double redeem_a = 0; /* the mean redemptions of group a: its centre */
    for (size_t i = 0; i < n; i++) {
        double *r = X + i * d;
        int a = i % 2 == 0, jit = (int)(i % 7);
        /* a: big spenders, mostly shoes in the app, answer push, redeem */
        r[0] = a ? 3000 + 10 * jit : 200 + jit;
        r[1] = a ? 20 + jit % 3 : 2 + jit % 2;
        r[2] = a ? 10 + jit : 200 + jit;
        r[3] = r[0] / r[1];
        r[4] = 400 + 3 * jit;
        r[5] = a ? 0.8 + 0.01 * jit : 0.05;
        r[6] = a ? 0.05 : 0.7 + 0.01 * jit;
        r[7] = a ? 0.9 : 0.1;
        r[8] = a ? 0.1 : 0.9;
        r[9] = a ? 0.6 + 0.02 * jit : 0.0;
        r[10] = a ? 0.05 : 0.3;
        r[11] = a ? 3 + jit % 2 : 0;
        redeem_a += r[11] / (double)(n / 2);
    }
    personas_model pm;
    patron_error err = {0};
    assert_int_equal(personas_fit(X, n, &fs, 2, 5, &pm, id, &err), 0);
    assert_int_equal(pm.k, 2);
    assert_int_equal(pm.feat.n, fs.n);
    assert_int_equal(pm.p[0].size, 200);
    assert_int_equal(id[0], 1); /* the big spenders come first */
    const char *d1 = pm.p[0].description, *d2 = pm.p[1].description;
    assert_non_null(strstr(d1, "frequent high-spend"));
    assert_non_null(strstr(d1, "app shoppers"));
    assert_non_null(strstr(d1, "mostly shoes"));
    assert_non_null(strstr(d1, "respond to push"));
    assert_non_null(strstr(d1, "redeem rewards"));
    assert_non_null(strstr(d2, "store shoppers"));
    assert_non_null(strstr(d2, "mostly books"));
    assert_non_null(strstr(d2, "respond to email"));
    assert_null(strstr(d2, "redeem"));
    assert_float_equal(pm.p[0].centre[11], redeem_a, 1e-9);
    free(X), free(id);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_features),
        cmocka_unit_test(test_descriptions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
