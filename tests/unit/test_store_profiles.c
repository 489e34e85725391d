/*
 * test_store_profiles.c -- profile cells (schema 5): the fields of each profile the
 * member view reads, kept as binary records in chunks and rows beside the JSON.
 *
 * A schema-4 database (JSON only) migrates on open, and the view built from the cells
 * holds what the JSON says, for profiles written by the importer and for stored text
 * with escapes, repeated keys, values of every JSON kind and text that is not an
 * object; small writes go to rows and large ones fold rows and new records into the
 * block's chunk, and the view (live or rebuilt) always reads the latest write; `member
 * show` still reads the whole JSON; a damaged chunk is reported, not read.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/db.h"
#include "members/view.h"
#include "store/store.h"

#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256];

static void exec_ok(sqlite3 *q, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(q, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        fprintf(stderr, "%s: %s\n", sql, msg);
    assert_int_equal(rc, SQLITE_OK);
}

static int64_t count(patron_db *db, const char *sql)
{
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_prepare_v2(store_sqlite(db->st), sql, -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return n;
}

/* Members from..to-1 (ids M00000..), with `tag` in their email so that a rewrite shows. */
static void write_members(const char *path, int from, int to, const char *tag, const char *consent_at,
                          int flip)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "member_id,email,first_name,birth_date,interests,consent_email,consent_updated_at,"
               "household_size,Favourite Colour\n");
    for (int i = from; i < to; i++)
        fprintf(f, "M%05d,m%d.%s@example.com,N%d,19%02d-0%d-1%d,a;b%d,%s,%s,%d,c%d\n", i, i, tag,
                i % 7, 50 + i % 40, 1 + i % 9, i % 10, i % 3, (i + flip) % 2 ? "yes" : "no", consent_at,
                i % 5, i % 4);
    fclose(f);
}

static uint64_t rebuilt_hash(const char *path)
{
    patron_db *db;
    patron_error err = {0};
    assert_int_equal(patron_open(path, &db, &err), PATRON_OK);
    assert_int_equal(db_view_ensure(db, &err), PATRON_OK);
    uint64_t h = view_hash(db);
    patron_close(db);
    return h;
}

static const char *text(const strdict *d, uint32_t code)
{
    static char buf[256];
    size_t n;
    const char *s = strdict_str(d, code, &n);
    if (!code)
        return "";
    snprintf(buf, sizeof buf, "%.*s", (int)n, s);
    return buf;
}

static void test_rows_fold_into_chunks(void **state)
{
    (void)state;
    char f1[300], f2[300], f3[300], path[300];
    snprintf(f1, sizeof f1, "%s/m1.csv", dir);
    snprintf(f2, sizeof f2, "%s/m2.csv", dir);
    snprintf(f3, sizeof f3, "%s/m3.csv", dir);
    snprintf(path, sizeof path, "%s/a.db", dir);
    write_members(f1, 0, 5, "one", "2024-01-01", 0);
    write_members(f2, 3, 1503, "two", "2024-02-01", 0);
    write_members(f3, 1, 4, "three", "2023-12-01", 1); /* older, opposite consents: they lose */
    patron_db *db;
    patron_error err = {0};
    patron_import_result res;
    assert_int_equal(patron_open(path, &db, &err), PATRON_OK);
    assert_int_equal(patron_import(db, PATRON_IMPORT_MEMBERS, f1, NULL, &res, &err), PATRON_OK);
    assert_int_equal(count(db, "SELECT count(*) FROM profile_rows"), 5); /* a small write: rows */
    assert_int_equal(count(db, "SELECT count(*) FROM profile_chunks"), 0);
    assert_int_equal(db_view_ensure(db, &err), PATRON_OK);
    assert_int_equal(patron_import(db, PATRON_IMPORT_MEMBERS, f2, NULL, &res, &err), PATRON_OK);
    /* 1,500 records: folded with the 5 rows into block 0's chunk */
    assert_int_equal(count(db, "SELECT count(*) FROM profile_rows"), 0);
    assert_int_equal(count(db, "SELECT count(*) FROM profile_chunks"), 1);
    uint64_t live = view_hash(db);
    assert_int_equal(patron_import(db, PATRON_IMPORT_MEMBERS, f3, NULL, &res, &err), PATRON_OK);
    assert_int_equal(count(db, "SELECT count(*) FROM profile_rows"), 3); /* rows over the chunk */
    uint64_t live3 = view_hash(db);
    assert_true(live3 != live);
    const mview *v = db->view;
    assert_string_equal(text(&v->pstr, v->str[MV_EMAIL][0]), "m0.one@example.com");
    assert_string_equal(text(&v->pstr, v->str[MV_EMAIL][2]), "m2.three@example.com");
    assert_string_equal(text(&v->pstr, v->str[MV_EMAIL][4]), "m4.two@example.com");
    /* member 3: file two granted email consent on 2024-02-01; file three's denial is older */
    assert_int_equal(v->consent[CK_EMAIL][3], CONSENT_GRANTED);
    char *json = NULL;
    assert_int_equal(store_member_profile(db->st, 3, &json, &err), PATRON_OK);
    assert_non_null(strstr(json, "m3.three@example.com"));
    assert_non_null(strstr(json, "2024-02-01"));
    free(json);
    patron_close(db);
    assert_true(rebuilt_hash(path) == live3);
}

/* Stored text the importer would not write, put straight into a schema-4 database. */
static const char *const raw[] = {
    /* escapes, a repeated key (the first counts), a birth date that is not one */
    "{\"email\":\"caf\\u00e9@x\",\"email\":\"second@x\",\"first_name\":\"A\\\"B\","
    "\"birth_date\":\"1990-02-30\",\"interests\":[\"x\",1,null,\"y\\u00fc\",\"x\"]}",
    /* consents of every shape; attributes of every JSON kind; an escaped key */
    "{\"consent\":{\"sms\":{\"status\":\"granted\",\"updated_at\":\"2024-01-01T00:00:00Z\","
    "\"expires_at\":1900000000},\"nope\":{\"status\":\"granted\"},\"push\":{\"status\":1},"
    "\"em\\u0061il\":{\"status\":\"denied\",\"updated_at\":5}},"
    "\"attributes\":{\"n\":3,\"r\":2.5,\"t\":true,\"f\":false,\"s\":\"v\\n\",\"z\":null,"
    "\"a\":[1],\"o\":{},\"k\\u00e9y\":7},\"gender\":5,\"birth_date\":\"1980-05-06\"}",
    /* not an object: nothing applies */
    "[1,2,3]",
    "{}",
};

static void test_v4_migrates_to_cells(void **state)
{
    (void)state;
    /* the view reads the cells by position: both name lists agree */
    for (int k = 0; k < MV__NSTR; k++)
        assert_string_equal(mv_str_names[k], store_profile_str_names[k]);
    for (int k = 0; k < CK__N; k++)
        assert_string_equal(mv_consent_names[k], store_consent_names[k]);
    char f1[300], path[300];
    snprintf(f1, sizeof f1, "%s/m4.csv", dir);
    snprintf(path, sizeof path, "%s/b.db", dir);
    write_members(f1, 0, 10, "four", "2024-01-01", 0);
    patron_db *db;
    patron_error err = {0};
    patron_import_result res;
    assert_int_equal(patron_open(path, &db, &err), PATRON_OK);
    assert_int_equal(patron_import(db, PATRON_IMPORT_MEMBERS, f1, NULL, &res, &err), PATRON_OK);
    patron_close(db);
    sqlite3 *q;
    assert_int_equal(sqlite3_open(path, &q), SQLITE_OK);
    exec_ok(q, "BEGIN");
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(q, "UPDATE profiles SET profile=?2 WHERE idx=?1", -1, &st, NULL),
                     SQLITE_OK);
    for (int i = 0; i < 4; i++) {
        sqlite3_bind_int(st, 1, 6 + i);
        sqlite3_bind_text(st, 2, raw[i], -1, SQLITE_STATIC);
        assert_int_equal(sqlite3_step(st), SQLITE_DONE);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    exec_ok(q, "DROP TABLE profile_chunks; DROP TABLE profile_rows; DROP TABLE event_cells;"
               "UPDATE meta SET value='4' WHERE key='schema_version'; COMMIT");
    sqlite3_close(q);

    assert_int_equal(patron_open(path, &db, &err), PATRON_OK); /* migrates */
    assert_int_equal(count(db, "SELECT value FROM meta WHERE key='schema_version'"), 6);
    assert_int_equal(db_view_ensure(db, &err), PATRON_OK);
    const mview *v = db->view;
    /* written by the importer */
    assert_string_equal(text(&v->pstr, v->str[MV_EMAIL][5]), "m5.four@example.com");
    assert_int_equal(v->tag_end[5] - v->tag_beg[5], 2);
    assert_int_equal(v->consent[CK_EMAIL][5], CONSENT_GRANTED);
    const mattr *hs = view_attr(v, "household_size", 14);
    assert_non_null(hs);
    assert_true(hs->num[5] == 0);
    /* member 6 */
    assert_string_equal(text(&v->pstr, v->str[MV_EMAIL][6]), "caf\xc3\xa9@x");
    assert_string_equal(text(&v->pstr, v->str[MV_FIRST_NAME][6]), "A\"B");
    assert_int_equal(v->birth_days[6], INT32_MIN);
    assert_int_equal(v->tag_end[6] - v->tag_beg[6], 3);
    assert_string_equal(text(&v->pstr, v->tags[v->tag_beg[6] + 1]), "y\xc3\xbc");
    /* member 7 */
    assert_int_equal(v->str[MV_GENDER][7], 0);
    assert_int_equal(v->birth_days[7], 3778); /* 1980-05-06 */
    assert_int_equal(v->consent[CK_SMS][7], CONSENT_GRANTED);
    assert_true(v->consent_expires[CK_SMS][7] == 1900000000);
    assert_true(v->consent_at[CK_SMS][7] == 1704067200);
    assert_int_equal(v->consent[CK_PUSH][7], CONSENT_MISSING);
    assert_int_equal(v->consent[CK_EMAIL][7], CONSENT_DENIED);
    assert_true(v->consent_at[CK_EMAIL][7] == 5);
    const mattr *a;
    assert_non_null(a = view_attr(v, "n", 1));
    assert_true(a->num[7] == 3);
    assert_non_null(a = view_attr(v, "r", 1));
    assert_true(a->num[7] == 2.5);
    assert_non_null(a = view_attr(v, "t", 1));
    assert_int_equal(a->b[7], 1);
    assert_non_null(a = view_attr(v, "f", 1));
    assert_int_equal(a->b[7], 0);
    assert_non_null(a = view_attr(v, "s", 1));
    assert_string_equal(text(&v->pstr, a->code[7]), "v\n");
    assert_non_null(a = view_attr(v, "z", 1)); /* exists, no value */
    assert_int_equal(a->code[7], 0);
    assert_non_null(view_attr(v, "a", 1));
    assert_non_null(view_attr(v, "o", 1));
    assert_non_null(a = view_attr(v, "k\xc3\xa9y", 4));
    assert_true(a->num[7] == 7);
    /* members 8 and 9: nothing */
    for (int m = 8; m < 10; m++) {
        for (int k = 0; k < MV__NSTR; k++)
            assert_int_equal(v->str[k][m], 0);
        assert_int_equal(v->consent[CK_EMAIL][m], CONSENT_MISSING);
    }
    uint64_t migrated = view_hash(db);
    /* the live path reads the same cells: applying every stored profile again changes
     * nothing */
    for (uint32_t m = 0; m < 10; m++) {
        char *json = NULL;
        assert_int_equal(store_member_profile(db->st, m, &json, &err), PATRON_OK);
        view_profile(db, m, json);
        free(json);
    }
    view_after_import(db);
    assert_true(view_hash(db) == migrated);
    patron_close(db);
    assert_true(rebuilt_hash(path) == migrated);
}

static void test_damaged_chunk_is_reported(void **state)
{
    (void)state;
    char f1[300], path[300];
    snprintf(f1, sizeof f1, "%s/m5.csv", dir);
    snprintf(path, sizeof path, "%s/c.db", dir);
    write_members(f1, 0, 2000, "five", "2024-01-01", 0);
    patron_db *db;
    patron_error err = {0};
    patron_import_result res;
    assert_int_equal(patron_open(path, &db, &err), PATRON_OK);
    assert_int_equal(patron_import(db, PATRON_IMPORT_MEMBERS, f1, NULL, &res, &err), PATRON_OK);
    patron_close(db);
    sqlite3 *q;
    assert_int_equal(sqlite3_open(path, &q), SQLITE_OK);
    exec_ok(q, "UPDATE profile_chunks SET data = CAST(substr(data, 1, 40) || x'00' || substr(data, 42) AS BLOB)");
    sqlite3_close(q);
    assert_int_equal(patron_open(path, &db, &err), PATRON_OK);
    assert_int_equal(db_view_ensure(db, &err), PATRON_ESTORE);
    assert_non_null(strstr(err.message, "profile chunk 0 is damaged"));
    patron_close(db);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/patron-test-profiles-XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows_fold_into_chunks),
        cmocka_unit_test(test_v4_migrates_to_cells),
        cmocka_unit_test(test_damaged_chunk_is_reported),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        return 1;
    return rc;
}
