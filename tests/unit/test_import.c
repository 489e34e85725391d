/*
 * test_import.c -- importers through the library: state built live from many small
 * batches equals the state reloaded from the store (hash of every column); re-importing
 * changes nothing; a bad row stores nothing; conflicting content is refused; the orders
 * importer's two-thread path stores exactly what its one-thread reference path stores,
 * with the same reports and rejects, on awkward CSV (quotes, newlines, CRLF, BOM, bad rows).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/mem.h"
#include "core/db.h"
#include "loyalty/ledger.h"
#include "loyalty/loyalty.h"
#include "loyalty/program.h"
#include "ingest/generate.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char dir[256];

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Generates a data set of that many members and seed into out, with options *g. */
static void gen_into(gen_opts *g, const char *out, uint64_t members, uint64_t seed)
{
    gen_opts_init(g);
    g->members = members;
    g->seed = seed;
    g->out = out;
    patron_error err = {0};
    assert_int_equal(gen_run(g, &err), 0);
}

static void test_live_equals_reload(void **state)
{
    (void)state;
    gen_opts g;
    gen_into(&g, dir, 400, 7);
    patron_error err = {0};
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

/* ---- the two-thread reader against the one-thread reference ---------------------- */

typedef struct strbuf {
    char *p;
    size_t n, cap;
} strbuf;

static void sb_add(strbuf *b, const void *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void collect(void *ctx, const char *message)
{
    sb_add(ctx, message, strlen(message));
    sb_add(ctx, "\n", 1);
}

/* Every row of every table of the store at path, in storage order, as bytes. */
static void store_dump(const char *path, strbuf *out)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *t;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT name FROM sqlite_master WHERE type='table' "
                                        "ORDER BY name",
                                        -1, &t, NULL),
                     SQLITE_OK);
    while (sqlite3_step(t) == SQLITE_ROW) {
        char sql[300];
        const char *name = (const char *)sqlite3_column_text(t, 0);
        if (strcmp(name, "ledger_meta") == 0) continue; /* its token is random by design */
        sb_add(out, name, strlen(name));
        snprintf(sql, sizeof sql, "SELECT * FROM \"%s\"", name);
        sqlite3_stmt *q;
        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
        while (sqlite3_step(q) == SQLITE_ROW)
            for (int c = 0; c < sqlite3_column_count(q); c++) {
                int type = sqlite3_column_type(q, c);
                const void *v = sqlite3_column_blob(q, c);
                int n = sqlite3_column_bytes(q, c);
                sb_add(out, &type, sizeof type);
                sb_add(out, &n, sizeof n);
                if (n) sb_add(out, v, (size_t)n);
            }
        sqlite3_finalize(q);
    }
    sqlite3_finalize(t);
    sqlite3_close(db);
}

static void file_read(const char *path, strbuf *out)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char buf[65536];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, f)) > 0)
        sb_add(out, buf, k);
    fclose(f);
}

/* A generated orders file made awkward: a BOM, CRLF line ends, quoted fields holding
 * commas, doubled quotes and newlines, whole rows quoted, bad rows of every kind, an
 * order whose rows are far apart, repeated identical rows. */
static void make_awkward(const char *src, const char *dst)
{
    FILE *in = fopen(src, "r"), *out = fopen(dst, "wb");
    assert_non_null(in);
    assert_non_null(out);
    char line[4096], first[4096] = "";
    fputs("\xEF\xBB\xBF", out);
    assert_non_null(fgets(line, sizeof line, in));
    line[strcspn(line, "\r\n")] = '\0';
    fprintf(out, "%s\r\n", line);
    for (long i = 0; fgets(line, sizeof line, in); i++) {
        line[strcspn(line, "\r\n")] = '\0';
        if (i == 0) snprintf(first, sizeof first, "%s", line);
        char *f[16];
        int nf = 0;
        for (char *p = line; nf < 16;) {
            f[nf++] = p;
            char *c = strchr(p, ',');
            if (!c) break;
            *c = '\0';
            p = c + 1;
        }
        assert_true(nf >= 8);
        char brand[128], cat[128];
        snprintf(brand, sizeof brand, "%s", f[7]);
        snprintf(cat, sizeof cat, "%s", f[6]);
        if (i % 11 == 3) snprintf(brand, sizeof brand, "\"%s, \"\"the\"\"\nbrand\"", f[7]);
        if (i % 17 == 5) snprintf(cat, sizeof cat, "\"%s,x\"", f[6]);
        f[6] = cat;
        f[7] = brand;
        if (i % 97 == 7) f[5] = "-1.00";
        if (i % 89 == 11) f[2] = "2024-13-45";
        if (i % 83 == 13) f[4] = "0";
        if (i % 101 == 17) f[1] = "M-other";
        if (i % 131 == 29) f[4] = "x2";
        for (int rep = 0; rep < (i % 61 == 23 ? 2 : 1); rep++) {
            for (int k = 0; k < nf; k++) {
                if (k) fputc(',', out);
                if (i % 53 == 19 && f[k][0] != '"')
                    fprintf(out, "\"%s\"", f[k]);
                else
                    fputs(f[k], out);
            }
            fputs("\r\n", out);
        }
    }
    fprintf(out, "%s\r\n", first); /* a row of the first order, at the end */
    fclose(in);
    fclose(out);
}

typedef struct run_out {
    int rc;
    patron_error err;
    patron_import_result res;
    uint64_t model; /* patron_model_hash after the import */
    strbuf msgs, store, rejects;
} run_out;

/* Imports csv into the store at db_path, opened as `patron import` opens it (deferred:
 * the members load beside the parse, db_open_deferred) or with patron_open. */
static void run_import_as(const char *db_path, const char *csv, const char *rejects, int threads,
                          long max_errors, int deferred, run_out *o)
{
    memset(o, 0, sizeof *o);
    patron_db *db;
    patron_error err = {0};
    if (deferred)
        assert_int_equal(db_open_deferred(db_path, &db, &err), 0);
    else
        assert_int_equal(patron_open(db_path, &db, &err), 0);
    patron_import_opts opts;
    patron_import_opts_init(&opts);
    opts.threads = threads;
    opts.max_errors = max_errors;
    opts.rejects_path = rejects;
    opts.report = collect;
    opts.report_ctx = &o->msgs;
    o->rc = patron_import(db, PATRON_IMPORT_ORDERS, csv, &opts, &o->res, &err);
    o->err = err;
    memset(o->res.rejects_path, 0, sizeof o->res.rejects_path);
    sb_add(&o->msgs, "", 0);
    assert_int_equal(db->model_pending, 0);
    o->model = patron_model_hash(db);
    patron_close(db);
    store_dump(db_path, &o->store);
    if (o->rc == 0 && o->res.bad_rows) file_read(rejects, &o->rejects);
}

static void run_import(const char *db_path, const char *csv, const char *rejects, int threads,
                       long max_errors, run_out *o)
{
    run_import_as(db_path, csv, rejects, threads, max_errors, 0, o);
}

static void assert_same(const run_out *a, const run_out *b)
{
    assert_int_equal(a->rc, b->rc);
    assert_string_equal(a->err.message, b->err.message);
    assert_true(a->model == b->model);
    assert_memory_equal(&a->res, &b->res, sizeof a->res);
    assert_int_equal(a->msgs.n, b->msgs.n);
    assert_string_equal(a->msgs.p, b->msgs.p);
    assert_int_equal(a->store.n, b->store.n);
    assert_memory_equal(a->store.p, b->store.p, a->store.n);
    assert_int_equal(a->rejects.n, b->rejects.n);
    if (a->rejects.n) assert_memory_equal(a->rejects.p, b->rejects.p, a->rejects.n);
}

static void run_release(run_out *o)
{
    free(o->msgs.p);
    free(o->store.p);
    free(o->rejects.p);
}

/* Every stored profile text, in member order. */
static void profiles_dump(const char *path, strbuf *out)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT idx, profile FROM profiles ORDER BY idx", -1,
                                        &q, NULL),
                     SQLITE_OK);
    while (sqlite3_step(q) == SQLITE_ROW) {
        char head[32];
        snprintf(head, sizeof head, "%lld ", (long long)sqlite3_column_int64(q, 0));
        sb_add(out, head, strlen(head));
        sb_add(out, sqlite3_column_text(q, 1), (size_t)sqlite3_column_bytes(q, 1));
        sb_add(out, "\n", 1);
    }
    sqlite3_finalize(q);
    sqlite3_close(db);
}

/* The members importer writes a new member's profile as text (put in canonical form by
 * jcanon) and merges into a stored profile with jansson.  Importing a file of awkward
 * values twice takes the first path, then the second over the same values: the stored
 * texts must not change.  A row with a value that is not UTF-8 is a bad row (its line
 * and column named), stored by neither path. */
static void test_member_profile_paths(void **state)
{
    (void)state;
    char db_path[512], f[512];
    snprintf(db_path, sizeof db_path, "%s/profiles.db", dir);
    snprintf(f, sizeof f, "%s/profiles.csv", dir);
    write_file(f,
               "member_id,enrolled_at,email,first_name,city,birth_date,interests,"
               "preferred_channel,consent_email,consent_marketing,consent_updated_at,"
               "Loyalty Card,household_size,score,nick\n"
               "a1,2024-01-01,a@x.org,\"Zo\"\"e\",\"K\xc3\xb6ln\",1980-02-29,\"run; yoga ;;\",app,"
               "true,false,2024-01-02T00:00:00Z,yes,2,1.50,\"back\\slash\ttab\"\n"
               "a2,,,\"bad \xff byte\",Berlin,,,,no,yes,,true,007,1e5,\"line\r\nbreak\"\n"
               "a3,2023-05-05T10:00:00Z,,\xe2\x82\xac,,,;,,,,,false,-0,-2.25e-3,\"{\"\"x\"\":1}\"\n"
               "a1,,,,,,fashion,,false,,2024-03-01T00:00:00Z,,3,,\n"
               "a4,,,,,,,,,,,,,0.1,\x01" "ctl\n");
    patron_db *db;
    patron_error err = {0};
    assert_int_equal(patron_open(db_path, &db, &err), 0);
    patron_import_result res;
    patron_import_opts o;
    patron_import_opts_init(&o);
    o.now = 1735689600; /* consents without consent_updated_at take it */
    assert_int_equal(patron_import(db, PATRON_IMPORT_MEMBERS, f, &o, &res, &err), PATRON_EINPUT);
    assert_non_null(strstr(err.message, "1 bad row")); /* a2: nothing stored */
    o.max_errors = 1;
    db->profiles_as_text = 0;
    if (patron_import(db, PATRON_IMPORT_MEMBERS, f, &o, &res, &err) != 0)
        fail_msg("import: %s", err.message);
    assert_int_equal(res.inserted, 3);
    assert_int_equal(res.bad_rows, 1);
    assert_int_equal(db->profiles_as_text, 3); /* a1's first row, a3, a4 */
    patron_close(db);
    strbuf first = {0}, second = {0};
    profiles_dump(db_path, &first);
    assert_non_null(strstr(first.p, "\"first_name\":\"Zo\\\"e\""));
    assert_non_null(strstr(first.p, "\"nick\":\"back\\\\slash\\ttab\""));
    assert_non_null(strstr(first.p, "\"score\":1.5"));
    assert_non_null(strstr(first.p, "\"interests\":[\"fashion\"]")); /* the later row */
    assert_null(strstr(first.p, "Berlin")); /* a2's row was refused whole */
    assert_int_equal(patron_open(db_path, &db, &err), 0);
    if (patron_import(db, PATRON_IMPORT_MEMBERS, f, &o, &res, &err) != 0)
        fail_msg("import: %s", err.message);
    assert_int_equal(res.updated, 3);
    patron_close(db);
    profiles_dump(db_path, &second);
    if (first.n != second.n || memcmp(first.p, second.p, first.n) != 0)
        fail_msg("profiles differ:\n%s\n--\n%s", first.p, second.p);
    free(first.p);
    free(second.p);
}

static void test_threads_same_store(void **state)
{
    (void)state;
    char sub[300], src[400], awk[400];
    snprintf(sub, sizeof sub, "%s/thr", dir);
    gen_opts g;
    gen_into(&g, sub, 1500, 11);
    snprintf(src, sizeof src, "%s/orders.csv", sub);
    snprintf(awk, sizeof awk, "%s/awkward.csv", sub);
    make_awkward(src, awk);
    const char *files[] = {src, awk};
    for (int fi = 0; fi < 2; fi++) {
        /* Bad rows beyond --max-errors: nothing stored, the same reports. */
        char d1[400], d2[400], r1[400], r2[400];
        snprintf(d1, sizeof d1, "%s/one%d.db", sub, fi);
        snprintf(d2, sizeof d2, "%s/two%d.db", sub, fi);
        snprintf(r1, sizeof r1, "%s/one%d.rejects", sub, fi);
        snprintf(r2, sizeof r2, "%s/two%d.rejects", sub, fi);
        run_out a, b;
        if (fi == 1) {
            run_import(d1, files[fi], r1, 1, 0, &a);
            run_import(d2, files[fi], r2, 2, 0, &b);
            assert_int_equal(a.rc, PATRON_EINPUT);
            assert_true(a.msgs.n > 0);
            assert_same(&a, &b);
            run_release(&a);
            run_release(&b);
        }
        /* Stored with the bad rows in the rejects file; then again, all duplicates; each
         * also into a store opened as `patron import` opens it, the members and orders
         * loading beside the parse (two threads) or after it (one). */
        char d3[400], d4[400], r3[400], r4[400];
        snprintf(d3, sizeof d3, "%s/def2-%d.db", sub, fi);
        snprintf(d4, sizeof d4, "%s/def1-%d.db", sub, fi);
        snprintf(r3, sizeof r3, "%s/def2-%d.rejects", sub, fi);
        snprintf(r4, sizeof r4, "%s/def1-%d.rejects", sub, fi);
        for (int again = 0; again < 2; again++) {
            run_out c, e;
            run_import(d1, files[fi], r1, 1, 100000, &a);
            run_import(d2, files[fi], r2, 2, 100000, &b);
            run_import_as(d3, files[fi], r3, 2, 100000, 1, &c);
            run_import_as(d4, files[fi], r4, 1, 100000, 1, &e);
            assert_int_equal(a.rc, 0);
            assert_true(a.res.rows > 3 * 4096); /* several blocks */
            assert_true(again ? a.res.inserted == 0 && a.res.duplicates > 0 : a.res.inserted > 0);
            if (fi == 1) assert_true(a.res.bad_rows > 100 && a.rejects.n > 0);
            assert_same(&a, &b);
            assert_same(&a, &c);
            assert_same(&a, &e);
            run_release(&a);
            run_release(&b);
            run_release(&c);
            run_release(&e);
        }
    }
}

/* An order-level file of orders [from, to): member M%04d (i % 300), times increasing
 * from 2024-01-01 with ties, amounts in cents. */
#define THL_T0 1704067200
static int64_t thl_ts(int i)
{
    return THL_T0 + (int64_t)(i / 3) * 9973;
}
static int64_t thl_cents(int i)
{
    return 500 + (i * 7919) % 40000;
}
static void thl_file(const char *path, int from, int to)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("order_id,member_id,ts,amount\n", f);
    for (int i = from; i < to; i++) {
        time_t t = (time_t)thl_ts(i);
        struct tm tm;
        gmtime_r(&t, &tm);
        char ts[32];
        strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
        fprintf(f, "T%06d,M%04d,%s,%lld.%02lld\n", i, i % 300, ts, (long long)(thl_cents(i) / 100),
                (long long)(thl_cents(i) % 100));
    }
    fclose(f);
}

/* A store with a program and the first file imported; variant 1 and 2 post order `key`
 * (of the second file) through the API first, with the request the import will make
 * (a replay) or with another amount (the import is refused). */
static void thl_prepare(const char *path, const char *first, int variant, int key)
{
    static const char prog[] =
        "{\"points_per_unit\": 1.25, \"tiers\": {\"levels\": ["
        "{\"name\": \"base\", \"threshold\": 0},"
        " {\"name\": \"silver\", \"threshold\": 2000, \"multiplier\": 1.5}]},"
        " \"expiry\": {\"policy\": \"end_of_month\", \"months\": 3}}";
    patron_db *db;
    patron_error err = {0};
    assert_int_equal(patron_open(path, &db, &err), 0);
    ledger *l;
    program *p;
    int64_t v;
    int changed;
    assert_int_equal(ledger_get(db, &l, &err), 0);
    assert_int_equal(program_parse(prog, strlen(prog), "t", &p, &err), 0);
    assert_int_equal(ledger_program_apply(l, p, THL_T0, &v, &changed, &err), 0);
    patron_import_opts opts;
    patron_import_opts_init(&opts);
    opts.threads = 1;
    patron_import_result res;
    assert_int_equal(patron_import(db, PATRON_IMPORT_ORDERS, first, &opts, &res, &err), 0);
    if (variant) {
        char id[32], mid[32];
        snprintf(id, sizeof id, "T%06d", key);
        snprintf(mid, sizeof mid, "M%04d", key % 300);
        uint32_t m;
        assert_true(hmap_get(&db->member_ids, mid, strlen(mid), &m));
        int64_t money = thl_cents(key) * (PATRON_MONEY_SCALE / 100) + (variant == 2);
        ledger_order o = {id, strlen(id), m, thl_ts(key), money, NULL, 0};
        ledger_set_durable(l, 0);
        assert_int_equal(ledger_earn(l, &o, NULL, &err), 0);
    }
    patron_close(db);
}

/* With a program, the ledger's arithmetic runs on the second thread during the import
 * (loyalty_import_start): one thread and two give the same store, messages and result,
 * also when a key of the batch is in the ledger already (that write and every later one
 * wait for the store: a replay, or a refusal). */
static void test_threads_same_ledger(void **state)
{
    (void)state;
    char sub[300], first[400], second[400];
    snprintf(sub, sizeof sub, "%s/thl", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    snprintf(first, sizeof first, "%s/first.csv", sub);
    snprintf(second, sizeof second, "%s/second.csv", sub);
    thl_file(first, 0, 900);
    thl_file(second, 900, 10000);
    size_t window_min = loyalty_window_min, poll_orders = loyalty_poll_orders;
    for (int variant = 0; variant < 3; variant++) {
        run_out r[6];
        /* 0-2: no windows; 3-5: the second file windowed (two windows of 4,096 writes;
         * with two threads the importer's thread stores the first as the ledger's thread
         * makes the second).  The key of variants 1 and 2 is member 200's first order of
         * the file (so the batch can still be windowed), after the first window in
         * member order. */
        for (int k = 0; k < 6; k++) {
            int th = k % 3 + 1; /* 3: two threads, opened as `patron import` does */
            ledger_window_default = k >= 3;
            loyalty_window_min = k >= 3 ? 1024 : window_min;
            loyalty_poll_orders = k >= 3 ? 256 : poll_orders; /* chunks stored early too */
            char path[400];
            snprintf(path, sizeof path, "%s/v%d-%d.db", sub, variant, k);
            thl_prepare(path, first, variant, 1100);
            uint64_t w0 = ledger_windows();
            run_import_as(path, second, NULL, th < 3 ? th : 2, 0, th == 3, &r[k]);
            assert_true(k < 3 ? ledger_windows() == w0 : ledger_windows() > w0);
        }
        ledger_window_default = 1;
        loyalty_window_min = window_min;
        loyalty_poll_orders = poll_orders;
        assert_int_equal(r[0].rc, variant == 2 ? PATRON_EINPUT : 0);
        if (variant == 2) assert_non_null(strstr(r[0].err.message, "T001100"));
        for (int k = 1; k < 6; k++)
            assert_same(&r[0], &r[k]);
        for (int k = 0; k < 6; k++)
            run_release(&r[k]);
    }
}

/* A store opened deferred (as `patron import` opens it) whose member load runs out of
 * memory at each allocation in turn: the load fails with ENOMEM and leaves the model
 * empty and still pending, with the dictionaries; loading again then gives the model
 * patron_open gives.  And an orders import that fails anywhere on such a store leaves
 * the model loaded (never pending) and the store as it was or with the whole file. */
static void test_deferred_faults(void **state)
{
    (void)state;
    char sub[300], db_path[400], src[400], members[400];
    snprintf(sub, sizeof sub, "%s/dfault", dir);
    gen_opts g;
    gen_into(&g, sub, 120, 5);
    patron_error err = {0};
    snprintf(db_path, sizeof db_path, "%s/d.db", sub);
    snprintf(src, sizeof src, "%s/orders.csv", sub);
    snprintf(members, sizeof members, "%s/members.csv", sub);
    patron_db *db;
    patron_import_result res;
    assert_int_equal(patron_open(db_path, &db, &err), 0);
    assert_int_equal(patron_import(db, PATRON_IMPORT_MEMBERS, members, NULL, &res, &err), 0);
    /* some orders already stored, so that the load has orders and dictionaries too */
    char first[400];
    snprintf(first, sizeof first, "%s/first.csv", sub);
    FILE *in = fopen(src, "r"), *out = fopen(first, "w");
    assert_non_null(in);
    assert_non_null(out);
    char line[4096];
    for (int i = 0; i < 400 && fgets(line, sizeof line, in); i++)
        fputs(line, out);
    fclose(in);
    fclose(out);
    assert_int_equal(patron_import(db, PATRON_IMPORT_ORDERS, first, NULL, &res, &err), 0);
    uint64_t want = patron_model_hash(db);
    uint32_t want_members = db->n_members;
    size_t want_orders = db->n_orders;
    patron_close(db);

    int ok = 0;
    long nth;
    for (nth = 1; nth < 100000 && !ok; nth++) {
        assert_int_equal(db_open_deferred(db_path, &db, &err), 0);
        assert_int_equal(db->model_pending, 1);
        mem_fail_after(nth);
        int rc = db_model_load_rest(db, &err);
        mem_fail_after(0);
        if (rc == PATRON_OK) {
            ok = 1;
        } else {
            assert_int_equal(rc, PATRON_ENOMEM);
            assert_int_equal(db->model_pending, 1);
            assert_int_equal(db->n_members, 0);
            assert_int_equal(db_model_load_rest(db, &err), 0);
        }
        assert_int_equal(db->model_pending, 0);
        assert_true(patron_model_hash(db) == want);
        patron_close(db);
    }
    assert_true(ok && nth > 20); /* the load allocates: the sweep went through them */

    /* The whole orders file, failing at each allocation in turn (one thread: the same
     * allocations in the same order each time), into a fresh copy of the store each
     * time.  A failure before the commit stores nothing; one after it (applying the
     * batch to the model, the rejects) leaves the whole file stored. */
    patron_import_opts o;
    patron_import_opts_init(&o);
    o.threads = 1;
    char copy[400];
    snprintf(copy, sizeof copy, "%s/c.db", sub);
    size_t whole = 0;
    ok = 0;
    for (nth = 1; nth < 1000000 && !ok; nth++) {
        FILE *a = fopen(db_path, "rb"), *b = fopen(copy, "wb");
        assert_non_null(a);
        assert_non_null(b);
        size_t k;
        while ((k = fread(line, 1, sizeof line, a)) > 0)
            assert_int_equal(fwrite(line, 1, k, b), k);
        fclose(a);
        fclose(b);
        assert_int_equal(db_open_deferred(copy, &db, &err), 0);
        mem_fail_after(nth);
        int rc = patron_import(db, PATRON_IMPORT_ORDERS, src, &o, &res, &err);
        mem_fail_after(0);
        assert_int_equal(db->model_pending, 0);
        patron_close(db);
        assert_int_equal(patron_open(copy, &db, &err), 0); /* as stored */
        if (rc == PATRON_OK) {
            ok = 1;
            assert_true(db->n_orders > want_orders);
            assert_true(whole == 0 || db->n_orders == whole);
        } else {
            assert_int_equal(rc, PATRON_ENOMEM);
            if (db->n_orders == want_orders) {
                assert_true(whole == 0); /* nothing stored, and never after a commit */
                assert_int_equal(db->n_members, want_members);
                assert_true(patron_model_hash(db) == want);
            } else {
                assert_true(whole == 0 || db->n_orders == whole);
                whole = db->n_orders;
            }
        }
        patron_close(db);
    }
    assert_true(ok && nth > 100);
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
        cmocka_unit_test(test_threads_same_store),
        cmocka_unit_test(test_member_profile_paths),
        cmocka_unit_test(test_threads_same_ledger),
        cmocka_unit_test(test_deferred_faults),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        return 1;
    return rc;
}
