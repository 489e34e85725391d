/*
 * store_models.c -- model runs and their result columns in SQLite (see store_models.h).
 */
#include "store/store_models.h"

#include "base/err.h"
#include "base/mem.h"

#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

sqlite3 *store_sqlite(store *s); /* store.c */

static int sql_fail(sqlite3 *db, patron_error *err, const char *what)
{
    return err_set(err, PATRON_ESTORE, "%s: %s: %s", sqlite3_db_filename(db, "main"), what,
                   sqlite3_errmsg(db));
}

int store_models_ensure(store *s, patron_error *err)
{
    sqlite3 *db = store_sqlite(s);
    char *msg = NULL;
    int rc = sqlite3_exec(db,
                          "CREATE TABLE IF NOT EXISTS model_runs(id INTEGER PRIMARY KEY,"
                          " kind TEXT NOT NULL, as_of INTEGER NOT NULL, fitted_at INTEGER NOT NULL,"
                          " data_from INTEGER, data_to INTEGER, members INTEGER NOT NULL,"
                          " params TEXT NOT NULL);"
                          "CREATE TABLE IF NOT EXISTS model_columns(run INTEGER NOT NULL,"
                          " name TEXT NOT NULL, data BLOB NOT NULL, PRIMARY KEY(run, name));",
                          NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        err_set(err, PATRON_ESTORE, "%s: creating model tables: %s",
                sqlite3_db_filename(db, "main"), msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return PATRON_ESTORE;
    }
    return PATRON_OK;
}

static void bind_ts(sqlite3_stmt *q, int i, int64_t v)
{
    if (v == PATRON_NULL_TS)
        sqlite3_bind_null(q, i);
    else
        sqlite3_bind_int64(q, i, v);
}

enum { HDR = 4 + 4 + 8 + 8 };

static int put_column(sqlite3 *db, sqlite3_stmt *q, int64_t run, const char *name,
                      const void *data, size_t count, size_t elem, patron_error *err)
{
    size_t payload = count * elem;
    unsigned char *blob = mem_alloc(HDR + payload);
    if (!blob)
        return err_set(err, PATRON_ENOMEM, "out of memory");
    uint32_t e32 = (uint32_t)elem;
    uint64_t c64 = count, h = XXH3_64bits(data, payload);
    memcpy(blob, "PMC1", 4);
    memcpy(blob + 4, &e32, 4);
    memcpy(blob + 8, &c64, 8);
    memcpy(blob + 16, &h, 8);
    if (payload)
        memcpy(blob + HDR, data, payload);
    sqlite3_reset(q);
    sqlite3_bind_int64(q, 1, run);
    sqlite3_bind_text(q, 2, name, -1, SQLITE_STATIC);
    sqlite3_bind_blob64(q, 3, blob, HDR + payload, SQLITE_STATIC);
    int rc = sqlite3_step(q) == SQLITE_DONE ? PATRON_OK : sql_fail(db, err, "writing a model column");
    sqlite3_clear_bindings(q);
    mem_free(blob);
    return rc;
}

int store_model_run_put(store *s, const store_model_run *run, size_t ncols,
                        const char *const *names, const void *const *data,
                        const size_t *count, const size_t *elem, int64_t *run_id,
                        patron_error *err)
{
    int rc = store_models_ensure(s, err);
    if (rc)
        return rc;
    sqlite3 *db = store_sqlite(s);
    if ((rc = store_begin(s, err)))
        return rc;
    sqlite3_stmt *q = NULL, *c = NULL;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO model_runs(kind, as_of, fitted_at, data_from, data_to,"
                           " members, params) VALUES(?1,?2,?3,?4,?5,?6,?7)",
                           -1, &q, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "INSERT INTO model_columns(run, name, data) VALUES(?1,?2,?3)", -1,
                           &c, NULL) != SQLITE_OK) {
        rc = sql_fail(db, err, "preparing model statements");
        goto fail;
    }
    sqlite3_bind_text(q, 1, run->kind, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, run->as_of);
    sqlite3_bind_int64(q, 3, run->fitted_at);
    bind_ts(q, 4, run->data_from);
    bind_ts(q, 5, run->data_to);
    sqlite3_bind_int64(q, 6, run->members);
    sqlite3_bind_text(q, 7, run->params ? run->params : "{}", -1, SQLITE_STATIC);
    if (sqlite3_step(q) != SQLITE_DONE) {
        rc = sql_fail(db, err, "writing a model run");
        goto fail;
    }
    int64_t id = sqlite3_last_insert_rowid(db);
    for (size_t i = 0; i < ncols; i++)
        if ((rc = put_column(db, c, id, names[i], data[i], count[i], elem[i], err)))
            goto fail;
    /* Only the latest run of a kind keeps its columns. */
    sqlite3_finalize(q);
    q = NULL;
    if (sqlite3_prepare_v2(db,
                           "DELETE FROM model_columns WHERE run IN (SELECT id FROM model_runs"
                           " WHERE kind = ?1 AND id < ?2)",
                           -1, &q, NULL) != SQLITE_OK) {
        rc = sql_fail(db, err, "pruning model columns");
        goto fail;
    }
    sqlite3_bind_text(q, 1, run->kind, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, id);
    if (sqlite3_step(q) != SQLITE_DONE) {
        rc = sql_fail(db, err, "pruning model columns");
        goto fail;
    }
    sqlite3_finalize(q);
    sqlite3_finalize(c);
    if ((rc = store_commit(s, err)))
        return rc;
    if (run_id)
        *run_id = id;
    return PATRON_OK;
fail:
    sqlite3_finalize(q);
    sqlite3_finalize(c);
    store_rollback(s);
    return rc;
}

void store_model_run_release(store_model_run *r)
{
    mem_free(r->params);
    r->params = NULL;
}

static int64_t col_ts(sqlite3_stmt *q, int i)
{
    return sqlite3_column_type(q, i) == SQLITE_NULL ? PATRON_NULL_TS : sqlite3_column_int64(q, i);
}

int store_model_run_latest(store *s, const char *kind, store_model_run *out,
                           patron_error *err)
{
    memset(out, 0, sizeof *out);
    int rc = store_models_ensure(s, err);
    if (rc)
        return rc;
    sqlite3 *db = store_sqlite(s);
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(db,
                           "SELECT id, kind, as_of, fitted_at, data_from, data_to, members, params"
                           " FROM model_runs WHERE ?1 IS NULL OR kind = ?1 ORDER BY id DESC LIMIT 1",
                           -1, &q, NULL) != SQLITE_OK)
        return sql_fail(db, err, "reading model runs");
    if (kind)
        sqlite3_bind_text(q, 1, kind, -1, SQLITE_STATIC);
    int st = sqlite3_step(q);
    if (st == SQLITE_ROW) {
        out->id = sqlite3_column_int64(q, 0);
        snprintf(out->kind, sizeof out->kind, "%s", (const char *)sqlite3_column_text(q, 1));
        out->as_of = sqlite3_column_int64(q, 2);
        out->fitted_at = sqlite3_column_int64(q, 3);
        out->data_from = col_ts(q, 4);
        out->data_to = col_ts(q, 5);
        out->members = sqlite3_column_int64(q, 6);
        out->params = mem_strdup((const char *)sqlite3_column_text(q, 7));
        rc = out->params ? PATRON_OK : err_set(err, PATRON_ENOMEM, "out of memory");
    } else if (st == SQLITE_DONE) {
        rc = err_set(err, PATRON_ENOTFOUND, "no %s model run stored yet%s", kind ? kind : "",
                     kind ? "" : " (run 'patron models refresh')");
    } else {
        rc = sql_fail(db, err, "reading model runs");
    }
    sqlite3_finalize(q);
    return rc;
}

int store_model_column_get(store *s, int64_t run, const char *name, size_t elem, void **data,
                           size_t *count, patron_error *err)
{
    sqlite3 *db = store_sqlite(s);
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(db, "SELECT data FROM model_columns WHERE run = ?1 AND name = ?2", -1,
                           &q, NULL) != SQLITE_OK)
        return sql_fail(db, err, "reading a model column");
    sqlite3_bind_int64(q, 1, run);
    sqlite3_bind_text(q, 2, name, -1, SQLITE_STATIC);
    int st = sqlite3_step(q), rc;
    if (st == SQLITE_DONE) {
        rc = err_set(err, PATRON_ENOTFOUND, "model run %lld has no column '%s'", (long long)run, name);
    } else if (st != SQLITE_ROW) {
        rc = sql_fail(db, err, "reading a model column");
    } else {
        const unsigned char *b = sqlite3_column_blob(q, 0);
        size_t n = (size_t)sqlite3_column_bytes(q, 0);
        uint32_t e32;
        uint64_t c64, h;
        rc = PATRON_ESTORE;
        if (n >= HDR && b && memcmp(b, "PMC1", 4) == 0) {
            memcpy(&e32, b + 4, 4);
            memcpy(&c64, b + 8, 8);
            memcpy(&h, b + 16, 8);
            if (e32 == elem && c64 <= (n - HDR) / (elem ? elem : 1) && c64 * elem == n - HDR &&
                XXH3_64bits(b + HDR, n - HDR) == h)
                rc = PATRON_OK;
        }
        if (rc != PATRON_OK) {
            err_set(err, PATRON_ESTORE, "%s: model column '%s' of run %lld is damaged",
                    sqlite3_db_filename(db, "main"), name, (long long)run);
        } else {
            *data = mem_alloc(n - HDR ? n - HDR : 1);
            if (!*data) {
                rc = err_set(err, PATRON_ENOMEM, "out of memory");
            } else {
                memcpy(*data, b + HDR, n - HDR);
                *count = (size_t)c64;
            }
        }
    }
    sqlite3_finalize(q);
    return rc;
}
