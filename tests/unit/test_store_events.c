/*
 * test_store_events.c -- events stored as column chunks (schema 4) with their cells
 * (schema 6: what the member view reads of each event).
 *
 * A database in the old layout (schema 3: one `events` row per event, written here the
 * way that version wrote them) migrates on open, and the member view built from the
 * chunks hashes equal to the view of the same events imported fresh; duplicate
 * detection by event id stays exact across the migration (v3 -> v6: chunks, then the
 * cells computed from them); a damaged chunk or cells chunk is reported, not read.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/time.h"
#include "core/db.h"
#include "members/view.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256];

/* Every event type the view reads, with values of every JSON kind: survey answers as
 * integer, real, condition, string, null and with escapes; consents by channel and by
 * purpose, two of them at the same instant (ids in file order); orders, a return and a
 * void; events for members not seen before. */
static void write_events(const char *path, int variant)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < 60; i++) {
        int m = i % 7, id = variant * 1000 + i;
        char t[TIME_FMT_LEN];
        time_format(1700000000 + (int64_t)(i % 13) * 86400, t);
        switch (i % 10) {
        case 0:
            fprintf(f, "{\"type\":\"survey\",\"member_id\":\"M%d\",\"ts\":\"%s\",\"event_id\":\"E%05d\","
                       "\"answers\":{\"pets\":%d,\"score\":%d.5,\"vip\":%s,\"caf\\u00e9\":\"na\\\"me\","
                       "\"none\":null}}\n",
                    m, t, id, i, i, i % 2 ? "true" : "false");
            break;
        case 1:
            fprintf(f, "{\"type\":\"consent\",\"member_id\":\"M%d\",\"ts\":\"%s\",\"event_id\":\"E%05d\","
                       "\"channel\":\"email\",\"status\":\"granted\",\"expires_at\":\"2031-01-01T00:00:00Z\"}\n"
                       "{\"type\":\"consent\",\"member_id\":\"M%d\",\"ts\":\"%s\",\"event_id\":\"E%05dz\","
                       "\"channel\":\"email\",\"status\":\"denied\"}\n",
                    m, t, id, m, t, id);
            break;
        case 2:
            fprintf(f, "{\"type\":\"consent\",\"member_id\":\"M%d\",\"ts\":\"%s\",\"event_id\":\"E%05d\","
                       "\"purpose\":\"profiling\",\"status\":\"%s\"}\n",
                    m, t, id, i % 3 ? "granted" : "denied");
            break;
        case 3:
            fprintf(f, "{\"type\":\"message\",\"member_id\":\"M%d\",\"ts\":\"%s\",\"event_id\":\"E%05d\","
                       "\"campaign_id\":%d,\"channel\":\"sms\",\"action\":\"opened\"}\n", m, t, id, i);
            break;
        case 4:
            fprintf(f, "{\"type\":\"points\",\"member_id\":\"M%d\",\"ts\":\"%s\",\"event_id\":\"E%05d\","
                       "\"points\":%d,\"reason\":\"bonus\"}\n", m, t, id, 10 * i);
            break;
        case 5:
            fprintf(f, "{\"type\":\"redemption\",\"member_id\":\"M%d\",\"ts\":\"%s\",\"event_id\":\"E%05d\","
                       "\"reward_id\":\"R%d\",\"points\":%d.25}\n", m, t, id, i % 3, i);
            fprintf(f, "{\"type\":\"referral\",\"member_id\":\"M%d\",\"ts\":\"%s\",\"event_id\":\"F%05d\","
                       "\"referred_member_id\":\"M%d\"}\n", m, t, id, m + 1);
            break;
        case 6:
            fprintf(f, "{\"type\":\"view\",\"member_id\":\"M%d\",\"ts\":\"%s\",\"event_id\":\"E%05d\","
                       "\"sku\":\"S%d\",\"category\":\"c\\u00fc\"}\n", m, t, id, i % 4);
            fprintf(f, "{\"type\":\"custom\",\"member_id\":\"M%d\",\"ts\":\"%s\",\"event_id\":\"F%05d\","
                       "\"name\":\"wish\",\"properties\":{\"a\":[1,2,{\"b\":\"}\"}]}}\n", m, t, id);
            break;
        case 7:
            fprintf(f, "{\"type\":\"order\",\"member_id\":\"M%d\",\"ts\":\"%s\",\"order_id\":\"O%05d\","
                       "\"items\":[{\"sku\":\"S1\",\"qty\":2,\"price\":3.5}]}\n", m, t, id);
            break;
        case 8:
            fprintf(f, "{\"type\":\"void\",\"member_id\":\"M%d\",\"ts\":\"%s\",\"order_id\":\"O%05d\"}\n",
                    (i - 1) % 7, t, id - 1);
            break;
        default:
            fprintf(f, "{\"type\":\"return\",\"member_id\":\"M%d\",\"ts\":\"%s\",\"order_id\":\"R%05d\","
                       "\"amount\":4}\n", m, t, id);
            break;
        }
    }
    fclose(f);
}

typedef struct row {
    char *id, *body;
    const char *type;
    int64_t member, ts;
    uint64_t hash;
} row;

typedef struct rows {
    row *r;
    size_t n, cap;
} rows;

static int collect(void *ctx, const store_echunk *c)
{
    rows *a = ctx;
    for (uint32_t i = 0; i < c->n; i++) {
        if (a->n == a->cap) {
            a->cap = a->cap ? 2 * a->cap : 64;
            a->r = realloc(a->r, a->cap * sizeof *a->r);
        }
        row *w = &a->r[a->n++];
        w->id = strndup(c->ids + c->id_off[i], c->id_off[i + 1] - c->id_off[i]);
        w->body = strndup(c->bodies + c->body_off[i], c->body_off[i + 1] - c->body_off[i]);
        w->type = store_event_type_name(c->type[i]);
        w->member = c->member[i];
        w->ts = c->ts[i];
        w->hash = c->hash[i];
    }
    return 0;
}

static void exec_ok(sqlite3 *q, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(q, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        fprintf(stderr, "%s: %s\n", sql, msg);
    assert_int_equal(rc, SQLITE_OK);
}

/* Rewrites the database at path into schema 3: the events of the chunks as rows of
 * the old events table (in reverse order, so the migration must sort them). */
static void downgrade(const char *path, const rows *a)
{
    sqlite3 *q;
    assert_int_equal(sqlite3_open(path, &q), SQLITE_OK);
    exec_ok(q, "BEGIN");
    exec_ok(q, "CREATE TABLE events(event_id TEXT PRIMARY KEY, type TEXT NOT NULL, member_idx INTEGER,"
               " ts INTEGER NOT NULL, hash INTEGER NOT NULL, body TEXT NOT NULL) WITHOUT ROWID");
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(q, "INSERT INTO events VALUES(?1,?2,?3,?4,?5,?6)", -1, &st, NULL),
                     SQLITE_OK);
    for (size_t k = a->n; k-- > 0;) {
        const row *w = &a->r[k];
        sqlite3_bind_text(st, 1, w->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, w->type, -1, SQLITE_STATIC);
        if (w->member < 0)
            sqlite3_bind_null(st, 3);
        else
            sqlite3_bind_int64(st, 3, w->member);
        sqlite3_bind_int64(st, 4, w->ts);
        sqlite3_bind_int64(st, 5, (int64_t)w->hash);
        sqlite3_bind_text(st, 6, w->body, -1, SQLITE_STATIC);
        assert_int_equal(sqlite3_step(st), SQLITE_DONE);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    exec_ok(q, "DROP TABLE event_chunks; DROP TABLE event_ids;"
               "DROP TABLE profile_chunks; DROP TABLE profile_rows; DROP TABLE event_cells;"
               "UPDATE meta SET value='3' WHERE key='schema_version'; COMMIT");
    sqlite3_close(q);
}

static void report(void *ctx, const char *message)
{
    snprintf(ctx, 512, "%s", message);
}

static uint64_t rebuilt_hash(const char *db_path, uint64_t *n_events)
{
    patron_db *db;
    patron_error err = {0};
    assert_int_equal(patron_open(db_path, &db, &err), PATRON_OK);
    assert_int_equal(db_view_ensure(db, &err), PATRON_OK);
    uint64_t h = view_hash(db);
    *n_events = db->n_events;
    patron_close(db);
    return h;
}

static void test_v3_migrates_to_the_same_view(void **state)
{
    (void)state;
    char ev1[300], ev2[300], a[300], b[300];
    snprintf(ev1, sizeof ev1, "%s/ev1.jsonl", dir);
    snprintf(ev2, sizeof ev2, "%s/ev2.jsonl", dir);
    snprintf(a, sizeof a, "%s/a.db", dir);
    snprintf(b, sizeof b, "%s/b.db", dir);
    write_events(ev1, 0);
    write_events(ev2, 1);
    patron_db *db;
    patron_error err = {0};
    patron_import_result res;
    assert_int_equal(patron_open(a, &db, &err), PATRON_OK);
    assert_int_equal(patron_import(db, PATRON_IMPORT_EVENTS, ev1, NULL, &res, &err), PATRON_OK);
    assert_int_equal(db_view_ensure(db, &err), PATRON_OK); /* the second import is applied live */
    assert_int_equal(patron_import(db, PATRON_IMPORT_EVENTS, ev2, NULL, &res, &err), PATRON_OK);
    uint64_t live = view_hash(db);
    rows all = {0};
    assert_int_equal(store_event_chunks_each(db->st, collect, &all, &err), PATRON_OK);
    assert_int_equal(all.n, db->n_events);
    patron_close(db);
    uint64_t n_a, n_b;
    uint64_t fresh = rebuilt_hash(a, &n_a);
    assert_true(fresh == live);
    assert_int_equal(n_a, all.n);

    char cmd[700];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", a, b);
    assert_int_equal(system(cmd), 0);
    downgrade(b, &all);
    assert_true(rebuilt_hash(b, &n_b) == fresh); /* opening migrates */
    assert_int_equal(n_b, n_a);
    assert_true(rebuilt_hash(b, &n_b) == fresh); /* and a second open reads the chunks */

    /* Exact duplicates after the migration: the same files change nothing... */
    assert_int_equal(patron_open(b, &db, &err), PATRON_OK);
    assert_int_equal(patron_import(db, PATRON_IMPORT_EVENTS, ev1, NULL, &res, &err), PATRON_OK);
    assert_int_equal(res.inserted, 0);
    assert_true(res.duplicates > 0);
    /* ... and an id stored with other content is a bad row naming it */
    const char *conflict = "{\"type\":\"points\",\"member_id\":\"M1\",\"ts\":\"2024-01-01T00:00:00Z\","
                           "\"event_id\":\"E00004\",\"points\":1}\n";
    patron_import_opts opts;
    patron_import_opts_init(&opts);
    opts.report = report;
    char said[512] = "";
    opts.report_ctx = said;
    assert_int_equal(patron_events_add(db, "x.jsonl", conflict, strlen(conflict), &opts, &res, &err),
                     PATRON_EINPUT);
    assert_non_null(strstr(said, "x.jsonl:1: column 'event_id': 'E00004' is already stored"));
    patron_close(db);
    assert_true(rebuilt_hash(b, &n_b) == fresh);
    for (size_t k = 0; k < all.n; k++) {
        free(all.r[k].id);
        free(all.r[k].body);
    }
    free(all.r);
}

static void test_damaged_chunk_is_reported(void **state)
{
    (void)state;
    char ev[300], path[300];
    snprintf(ev, sizeof ev, "%s/ev3.jsonl", dir);
    snprintf(path, sizeof path, "%s/c.db", dir);
    write_events(ev, 2);
    patron_db *db;
    patron_error err = {0};
    patron_import_result res;
    assert_int_equal(patron_open(path, &db, &err), PATRON_OK);
    assert_int_equal(patron_import(db, PATRON_IMPORT_EVENTS, ev, NULL, &res, &err), PATRON_OK);
    patron_close(db);
    sqlite3 *q;
    assert_int_equal(sqlite3_open(path, &q), SQLITE_OK);
    exec_ok(q, "UPDATE event_chunks SET data = CAST(substr(data, 1, 40) || x'00' || substr(data, 42) AS BLOB)");
    /* the view reads the cells; the chunk's reader (exports, migrations) sees the damage */
    assert_int_equal(patron_open(path, &db, &err), PATRON_OK);
    rows all = {0};
    assert_int_equal(store_event_chunks_each(db->st, collect, &all, &err), PATRON_ESTORE);
    assert_non_null(strstr(err.message, "event chunk 1 is damaged"));
    assert_int_equal(all.n, 0);
    patron_close(db);
    exec_ok(q, "UPDATE event_cells SET data = CAST(substr(data, 1, 40) || x'00' || substr(data, 42) AS BLOB)");
    sqlite3_close(q);
    assert_int_equal(patron_open(path, &db, &err), PATRON_OK);
    assert_int_equal(db_view_ensure(db, &err), PATRON_ESTORE);
    assert_non_null(strstr(err.message, "event cells chunk 1 is damaged"));
    patron_close(db);
    /* a chunk without its cells is an error, not a silent loss of events */
    assert_int_equal(sqlite3_open(path, &q), SQLITE_OK);
    exec_ok(q, "DELETE FROM event_cells");
    sqlite3_close(q);
    assert_int_equal(patron_open(path, &db, &err), PATRON_OK);
    assert_int_equal(db_view_ensure(db, &err), PATRON_ESTORE);
    assert_non_null(strstr(err.message, "1 event chunks but 0 event cells chunks"));
    patron_close(db);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/patron-test-evstore-XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v3_migrates_to_the_same_view),
        cmocka_unit_test(test_damaged_chunk_is_reported),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        return 1;
    return rc;
}
