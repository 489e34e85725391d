/*
 * test_import.c -- importers through the library: state built live from many small
 * batches equals the state reloaded from the store (hash of every column); re-importing
 * changes nothing; a bad row stores nothing; conflicting content is refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/db.h"
#include "ingest/generate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256];

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_live_equals_reload(void **state)
{
    (void)state;
    gen_opts g;
    gen_opts_init(&g);
    g.members = 400;
    g.seed = 7;
    g.out = dir;
    patron_error err = {0};
    assert_int_equal(gen_run(&g, &err), 0);
    char db_path[512], src[512], part[512];
    snprintf(db_path, sizeof db_path, "%s/live.db", dir);
    snprintf(src, sizeof src, "%s/orders.csv", dir);
    patron_db *db;
    assert_int_equal(patron_open(db_path, &db, &err), 0);
    snprintf(part, sizeof part, "%s/members.csv", dir);
    patron_import_result res;
    assert_int_equal(patron_import(db, PATRON_IMPORT_MEMBERS, part, NULL, &res, &err), 0);
    assert_int_equal(res.inserted, 400);

    /* Split orders.csv into parts of ~500 lines (orders may straddle parts: the part
     * files then hold different orders with the same id only if split mid-order, so
     * cut at order boundaries). */
    FILE *in = fopen(src, "r");
    assert_non_null(in);
    char header[512], line[4096], last_id[64] = "";
    assert_non_null(fgets(header, sizeof header, in));
    FILE *out = NULL;
    int nparts = 0, lines = 0;
    uint64_t total_items = 0;
    while (fgets(line, sizeof line, in)) {
        char id[64];
        size_t n = strcspn(line, ",");
        snprintf(id, sizeof id, "%.*s", (int)n, line);
        if (!out || (lines >= 500 && strcmp(id, last_id) != 0)) {
            if (out) {
                fclose(out);
                assert_int_equal(patron_import(db, PATRON_IMPORT_ORDERS, part, NULL, &res, &err), 0);
                total_items += res.items;
            }
            snprintf(part, sizeof part, "%s/part%d.csv", dir, nparts++);
            out = fopen(part, "w");
            fputs(header, out);
            lines = 0;
        }
        fputs(line, out);
        lines++;
        snprintf(last_id, sizeof last_id, "%s", id);
    }
    fclose(out);
    fclose(in);
    assert_int_equal(patron_import(db, PATRON_IMPORT_ORDERS, part, NULL, &res, &err), 0);
    total_items += res.items;
    assert_true(nparts > 5);
    assert_true(total_items > 1000);
    uint64_t live = patron_model_hash(db);
    patron_stats s1;
    patron_stats_get(db, g.end, &s1, &err);
    patron_close(db);

    assert_int_equal(patron_open(db_path, &db, &err), 0);
    assert_int_equal(patron_model_hash(db), live);
    /* Re-importing the whole file is a no-op. */
    assert_int_equal(patron_import(db, PATRON_IMPORT_ORDERS, src, NULL, &res, &err), 0);
    assert_int_equal(res.inserted, 0);
    assert_true(res.duplicates > 0);
    assert_int_equal(patron_model_hash(db), live);
    patron_stats s2;
    patron_stats_get(db, g.end, &s2, &err);
    assert_memory_equal(&s1, &s2, sizeof s1);
    patron_close(db);
}

static void test_bad_row_stores_nothing(void **state)
{
    (void)state;
    char db_path[512], f[512];
    snprintf(db_path, sizeof db_path, "%s/bad.db", dir);
    snprintf(f, sizeof f, "%s/bad.csv", dir);
    write_file(f, "order_id,member_id,ts,sku,qty,price\n"
                  "o1,m1,2024-01-01,A,1,2.50\n"
                  "o2,m2,2024-01-02,B,2,1.00\n"
                  "o2,m3,2024-01-02,C,1,1.00\n"
                  "o3,m1,2024-13-45,A,1,2.50\n");
    patron_db *db;
    patron_error err = {0};
    assert_int_equal(patron_open(db_path, &db, &err), 0);
    patron_import_result res;
    assert_int_equal(patron_import(db, PATRON_IMPORT_ORDERS, f, NULL, &res, &err), PATRON_EINPUT);
    assert_non_null(strstr(err.message, "2 bad rows"));
    patron_stats s;
    patron_stats_get(db, 2000000000, &s, &err);
    assert_int_equal(s.orders, 0);
    assert_int_equal(s.members, 0);
    patron_import_opts o;
    patron_import_opts_init(&o);
    o.max_errors = 2;
    assert_int_equal(patron_import(db, PATRON_IMPORT_ORDERS, f, &o, &res, &err), 0);
    patron_stats_get(db, 2000000000, &s, &err);
    assert_int_equal(s.orders, 1); /* o2 rejected whole, o3 bad */
    assert_int_equal(s.members, 1);
    FILE *rj = fopen(res.rejects_path, "r");
    assert_non_null(rj);
    int n = 0;
    char line[512];
    while (fgets(line, sizeof line, rj))
        n++;
    fclose(rj);
    assert_int_equal(n, 4); /* header + both rows of o2 + o3 */
    /* Same id, different content: a bad row, nothing stored. */
    write_file(f, "order_id,member_id,ts,sku,qty,price\no1,m1,2024-01-01,A,1,9.99\n");
    assert_int_equal(patron_import(db, PATRON_IMPORT_ORDERS, f, NULL, &res, &err), PATRON_EINPUT);
    patron_close(db);
}

static void test_returns_and_guests(void **state)
{
    (void)state;
    char db_path[512], f[512];
    snprintf(db_path, sizeof db_path, "%s/ret.db", dir);
    snprintf(f, sizeof f, "%s/ret.csv", dir);
    write_file(f, "order_id,member_id,ts,sku,qty,price\n"
                  "o1,m1,2024-01-01,A,2,10.00\n"
                  "g1,,2024-01-01,A,1,10.00\n"
                  "r1,m1,2024-01-05,A,-1,10.00\n"
                  "o2,m1,2024-01-03,B,1,5.00\n"
                  "o1,m1,2023-12-31T23:00:00Z,C,1,1.00\n"
                  "o2,m1,2024-01-03,A,-1,2.00\n");
    patron_db *db;
    patron_error err = {0};
    assert_int_equal(patron_open(db_path, &db, &err), 0);
    patron_import_result res;
    assert_int_equal(patron_import(db, PATRON_IMPORT_ORDERS, f, NULL, &res, &err), 0);
    patron_stats s;
    patron_stats_get(db, 1800000000, &s, &err);
    assert_int_equal(s.orders, 3);
    assert_int_equal(s.returns, 1);
    assert_int_equal(s.guest_orders, 1);
    assert_int_equal(s.items, 4); /* o1: 2 rows, g1: 1, o2: 1 positive row */
    assert_int_equal(s.revenue, (210000 + 100000 - 100000 + 30000) );
    assert_int_equal(s.member_revenue, 210000 - 100000 + 30000);
    char *json;
    assert_int_equal(patron_member_json(db, "m1", 1704326400 /* 2024-01-04 */, &json, &err), 0);
    assert_non_null(strstr(json, "\"frequency\": 2"));
    free(json);
    assert_int_equal(patron_member_json(db, "nobody", 0, &json, &err), PATRON_ENOTFOUND);
    patron_close(db);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/patron-test-import-XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_live_equals_reload),
        cmocka_unit_test(test_bad_row_stores_nothing),
        cmocka_unit_test(test_returns_and_guests),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        return 1;
    return rc;
}
