/*
 * store.c -- the SQLite backend of the store interface.
 *
 * WAL mode, one transaction per import.  Schema migrations are a list of SQL scripts
 * indexed by version; meta.schema_version says how many have been applied.  Prepared
 * statements live as long as the connection.
 */
#include "store/store.h"

#include "base/err.h"
#include "base/hmap.h"
#include "base/mem.h"
#include "store/store_cells.h"
#include "store/store_chunks.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <xxhash.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *migrations[] = {
    /* 1 */
    "CREATE TABLE members(idx INTEGER PRIMARY KEY, member_id TEXT NOT NULL UNIQUE,"
    " enrolled_at INTEGER, phash INTEGER NOT NULL);"
    "CREATE TABLE profiles(idx INTEGER PRIMARY KEY, profile TEXT NOT NULL);"
    "CREATE TABLE dict(kind INTEGER NOT NULL, code INTEGER NOT NULL, value TEXT NOT NULL,"
    " PRIMARY KEY(kind, code));"
    "CREATE TABLE order_chunks(id INTEGER PRIMARY KEY, n INTEGER NOT NULL, data BLOB NOT NULL);"
    "CREATE TABLE voids(order_id TEXT PRIMARY KEY) WITHOUT ROWID;"
    "CREATE TABLE item_chunks(id INTEGER PRIMARY KEY, data BLOB NOT NULL);"
    "CREATE TABLE events(event_id TEXT PRIMARY KEY, type TEXT NOT NULL, member_idx INTEGER,"
    " ts INTEGER NOT NULL, hash INTEGER NOT NULL, body TEXT NOT NULL) WITHOUT ROWID;",
    /* 2: segments (members as a portable roaring bitmap) and their enter/exit history */
    "CREATE TABLE segments(name TEXT PRIMARY KEY, kind INTEGER NOT NULL, rule TEXT,"
    " created_at INTEGER NOT NULL, as_of INTEGER NOT NULL, members BLOB NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE segment_changes(id INTEGER PRIMARY KEY, name TEXT NOT NULL,"
    " ts_first INTEGER NOT NULL, ts_last INTEGER NOT NULL, data BLOB NOT NULL);"
    "CREATE INDEX segment_changes_by_name ON segment_changes(name, ts_last);",
    /* 3: a segment's members are a snapshot as of one change row, plus the changes after */
    "ALTER TABLE segments ADD COLUMN snap_change INTEGER NOT NULL DEFAULT 0;",
    /* 4: events as column chunks; their ids (with content hashes) in their own table for
     * exact duplicate detection; the rows of the events table move into chunks
     * (migrate_events) and the table is dropped */
    "CREATE TABLE event_chunks(id INTEGER PRIMARY KEY, n INTEGER NOT NULL, data BLOB NOT NULL);"
    "CREATE TABLE event_ids(event_id TEXT PRIMARY KEY, hash INTEGER NOT NULL) WITHOUT ROWID;"
    "INSERT INTO event_ids(event_id, hash) SELECT event_id, hash FROM events;",
    /* 5: profile cells (store_cells.h) as chunks of PROFILE_BLOCK members, with a row
     * table for members written since their chunk (migrate_profiles fills them) */
    "CREATE TABLE profile_chunks(first INTEGER PRIMARY KEY, data BLOB NOT NULL);"
    "CREATE TABLE profile_rows(idx INTEGER PRIMARY KEY, data BLOB NOT NULL);",
    /* 6: event cells (store_cells.h), one BLOB per event chunk, same id
     * (migrate_event_cells computes them for the chunks already stored) */
    "CREATE TABLE event_cells(id INTEGER PRIMARY KEY, data BLOB NOT NULL);",
};
#define N_MIGRATIONS ((int)(sizeof migrations / sizeof migrations[0]))

enum { ST_MEMBER_PUT, ST_MEMBER_PROFILE, ST_PROFILE_PUT, ST_DICT_PUT, ST_ORDER_PUT, ST_ORDER_VOID, ST_CHUNK_PUT, ST_EVENT_PUT,
       ST_EVENT_GET, ST_ECHUNK_PUT, ST_SEG_AS_OF, ST_SEG_CHANGE_PUT, ST__COUNT };
static const char *stmt_sql[ST__COUNT] = {
    "INSERT INTO members(idx, member_id, enrolled_at, phash) VALUES(?1,?2,?3,?4)"
    " ON CONFLICT(idx) DO UPDATE SET enrolled_at=excluded.enrolled_at, phash=excluded.phash",
    "SELECT profile FROM profiles WHERE idx=?1",
    "INSERT OR REPLACE INTO profiles(idx, profile) VALUES(?1,?2)",
    "INSERT OR REPLACE INTO dict(kind, code, value) VALUES(?1,?2,?3)",
    "INSERT INTO order_chunks(n, data) VALUES(?1,?2)",
    "INSERT OR IGNORE INTO voids(order_id) VALUES(?1)",
    "INSERT INTO item_chunks(data) VALUES(?1)",
    "INSERT INTO event_ids(event_id, hash) VALUES(?1,?2)",
    "SELECT hash FROM event_ids WHERE event_id=?1",
    "INSERT INTO event_chunks(n, data) VALUES(?1,?2)",
    "UPDATE segments SET as_of=?2 WHERE name=?1",
    "INSERT INTO segment_changes(name, ts_first, ts_last, data) VALUES(?1,?2,?3,?4)",
};

/* Orders written since store_begin() and not yet in a chunk, as the columns of one
 * (order i's id is ids[id_off[i]..id_off[i+1]); id_off[0] is 0). */
typedef struct pending_orders {
    int64_t *ts, *amount, *units;
    uint64_t *hash;
    int32_t *member, *items;
    uint8_t *kind;
    uint32_t *channel, *store;
    size_t *id_off;
    size_t n, cap;
    char *ids;
    size_t ids_cap;
} pending_orders;

/* Events written since store_begin() and not yet in a chunk (a chunk is written every
 * EVENT_CHUNK events and at commit, inside the transaction). */
typedef struct pending_events {
    int64_t *ts;
    uint64_t *hash;
    int32_t *member;
    uint8_t *type;
    uint32_t *id_len, *body_len;
    size_t n, cap;
    char *bytes; /* ids, then bodies, of each event in turn */
    size_t len, cap_bytes;
} pending_events;

/* Profile cells written since store_begin() (member index and record, in write order;
 * a later write of the same member wins). */
typedef struct pending_profiles {
    uint32_t *idx;
    size_t *off; /* record k is bytes.p[off[k]..off[k+1]) */
    size_t n, cap, cap_off;
    store_buf bytes;
} pending_profiles;

/* SQLite's page cache (KiB, as cache_size takes it).  Reads go through the memory map;
 * the cache holds the pages a write transaction changed until they go to the WAL.  A
 * bulk import's transaction (store_begin_bulk) writes hundreds of megabytes of chunks
 * once: with the usual cache its pages waited there until the commit, 256 MB of fresh
 * memory at M (costly here: about 1-2 s of page faults and zeroing per GB), so it gets
 * a small cache and they go to the WAL as they are made (M orders import: peak RSS
 * 2.12 -> 1.87 GB, and the writes after the parse no slower). */
#define CACHE_KIB      "-262144"
#define BULK_CACHE_KIB "-16384"

struct store {
    sqlite3 *db;
    sqlite3_stmt *st[ST__COUNT];
    char path[512];
    pending_orders pend;
    pending_events pev;
    pending_profiles ppr;
    int cells_ready; /* the event_cells table exists (schema 6; not during migrations) */
    int bulk;        /* in a store_begin_bulk transaction: SQLite's cache is the small one */
    int wal_fd;      /* bulk: the WAL, opened for store_bulk_tick (-1: not yet or cannot) */
    off_t wal_done;  /* bulk: WAL bytes whose write-back store_bulk_tick has started */
    sqlite3_stmt *mblock[2]; /* store_members_put: MEMBER_BLOCK members, their profiles */
    store_buf cells; /* an event cells chunk being built */
    store_buf chunk; /* an order or line-item chunk being built */
    uint64_t *split_hash; /* store_items_put: the runs of a chunk cut from a longer put */
    uint32_t *split_len;
};

static int migrate_events(store *s, patron_error *err);
static int migrate_profiles(store *s, patron_error *err);
static int migrate_event_cells(store *s, patron_error *err);

static int fail(store *s, patron_error *err, const char *what)
{
    return err_set(err, PATRON_ESTORE, "%s: %s: %s", s->path, what, sqlite3_errmsg(s->db));
}

static int exec(store *s, const char *sql, patron_error *err)
{
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        err_set(err, PATRON_ESTORE, "%s: %s", s->path, msg ? msg : "sqlite error");
        sqlite3_free(msg);
        return PATRON_ESTORE;
    }
    return PATRON_OK;
}

static int migrate(store *s, patron_error *err)
{
    int rc;
    if ((rc = exec(s, "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT)", err)))
        return rc;
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db, "SELECT value FROM meta WHERE key='schema_version'", -1, &q,
                           NULL) != SQLITE_OK)
        return fail(s, err, "reading schema version");
    int version = 0;
    if (sqlite3_step(q) == SQLITE_ROW)
        version = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    if (version > N_MIGRATIONS)
        return err_set(err, PATRON_ESTORE,
                       "%s: schema version %d is newer than this patron (%d)", s->path,
                       version, N_MIGRATIONS);
    for (int v = version; v < N_MIGRATIONS; v++) {
        char set[128];
        snprintf(set, sizeof set,
                 "INSERT OR REPLACE INTO meta(key, value) VALUES('schema_version', '%d')", v + 1);
        if ((rc = exec(s, "BEGIN", err)) || (rc = exec(s, migrations[v], err)) ||
            (v + 1 == 4 && (rc = migrate_events(s, err))) ||
            (v + 1 == 5 && (rc = migrate_profiles(s, err))) ||
            (v + 1 == 6 && (rc = migrate_event_cells(s, err))) || (rc = exec(s, set, err)) ||
            (rc = exec(s, "COMMIT", err))) {
            exec(s, "ROLLBACK", NULL);
            return rc;
        }
        s->cells_ready = v + 1 >= 6;
    }
    s->cells_ready = 1;
    return PATRON_OK;
}

int store_open(const char *path, store **out, patron_error *err)
{
    store *s = mem_calloc(1, sizeof *s);
    if (!s)
        return err_set(err, PATRON_ENOMEM, "out of memory");
    s->wal_fd = -1;
    snprintf(s->path, sizeof s->path, "%s", path);
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        int rc = err_set(err, PATRON_ESTORE, "cannot open '%s': %s", path,
                         s->db ? sqlite3_errmsg(s->db) : "out of memory");
        sqlite3_close(s->db);
        mem_free(s);
        return rc;
    }
    sqlite3_busy_timeout(s->db, 10000);
    int rc;
    /* Reads through a memory map (SQLite caps it at its compile-time maximum, 2 GB on
     * Debian): the view build reads the chunks once, and copying each page through
     * pread into the page cache cost as much system time as the decoding cost user
     * time (decision 0003).  Writes still go through the journal as before. */
    /* A new database gets 32 KiB pages (decision 0007: bulk imports write chunks of
     * megabytes, and SQLite's cost is per page); the pragma does nothing to one that
     * exists. */
    if ((rc = exec(s, "PRAGMA page_size=32768; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                      "PRAGMA cache_size=" CACHE_KIB "; PRAGMA temp_store=MEMORY;"
                      "PRAGMA mmap_size=17179869184",
                   err)) ||
        (rc = migrate(s, err))) {
        store_close(s);
        return rc;
    }
    for (int i = 0; i < ST__COUNT; i++) {
        if (sqlite3_prepare_v3(s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i],
                               NULL) != SQLITE_OK) {
            rc = fail(s, err, "preparing statements");
            store_close(s);
            return rc;
        }
    }
    *out = s;
    return PATRON_OK;
}

void store_close(store *s)
{
    if (!s)
        return;
    for (int i = 0; i < ST__COUNT; i++)
        sqlite3_finalize(s->st[i]);
    sqlite3_finalize(s->mblock[0]);
    sqlite3_finalize(s->mblock[1]);
    if (s->wal_fd >= 0)
        close(s->wal_fd);
    sqlite3_close(s->db);
    pending_orders *o = &s->pend;
    mem_free(o->ts);
    mem_free(o->amount);
    mem_free(o->units);
    mem_free(o->hash);
    mem_free(o->member);
    mem_free(o->items);
    mem_free(o->kind);
    mem_free(o->channel);
    mem_free(o->store);
    mem_free(o->id_off);
    mem_free(o->ids);
    mem_free(s->chunk.p);
    mem_free(s->split_hash);
    mem_free(s->split_len);
    pending_events *e = &s->pev;
    mem_free(e->ts);
    mem_free(e->hash);
    mem_free(e->member);
    mem_free(e->type);
    mem_free(e->id_len);
    mem_free(e->body_len);
    mem_free(e->bytes);
    mem_free(s->ppr.idx);
    mem_free(s->ppr.off);
    mem_free(s->ppr.bytes.p);
    mem_free(s->cells.p);
    mem_free(s);
}

static int flush_orders(store *s, patron_error *err);
static int flush_events(store *s, patron_error *err);
static int flush_profiles(store *s, patron_error *err);
static int profile_pend(store *s, uint32_t idx, const char *json, size_t n, int canon,
                        patron_error *err);
static int profile_pend_rec(store *s, uint32_t idx, const unsigned char *rec, size_t n,
                            patron_error *err);

/* Back to the usual cache after a bulk transaction (a failure only leaves the small
 * cache in place: slower, not wrong). */
static void bulk_end(store *s)
{
    if (s->bulk)
        (void)exec(s, "PRAGMA cache_size=" CACHE_KIB, NULL);
    s->bulk = 0;
    if (s->wal_fd >= 0)
        close(s->wal_fd);
    s->wal_fd = -1;
    s->wal_done = 0;
}

/*
 * A bulk transaction writes hundreds of MB to the WAL, and the checkpoint at its commit
 * first waits for all of them to reach the disk (fdatasync).  Starting the write-back of
 * every WAL_WRITEBACK bytes as they are written (Linux sync_file_range, which returns
 * at once) lets the disk work while the import computes, so the commit finds most of it
 * written.  Only a hint to the kernel: nothing depends on it for order or durability.
 */
#define WAL_WRITEBACK ((off_t)32 << 20)
void store_bulk_tick(store *s)
{
#ifdef SYNC_FILE_RANGE_WRITE
    if (!s->bulk)
        return;
    if (s->wal_fd < 0) {
        char p[sizeof s->path + 8];
        snprintf(p, sizeof p, "%s-wal", s->path);
        s->wal_fd = open(p, O_RDONLY | O_CLOEXEC);
        if (s->wal_fd < 0)
            return;
    }
    struct stat st;
    if (fstat(s->wal_fd, &st) != 0 || st.st_size - s->wal_done < WAL_WRITEBACK)
        return;
    (void)sync_file_range(s->wal_fd, s->wal_done, st.st_size - s->wal_done,
                          SYNC_FILE_RANGE_WRITE);
    s->wal_done = st.st_size;
#else
    (void)s;
#endif
}

static int begin(store *s, int bulk, patron_error *err)
{
    bulk_end(s);
    s->pend.n = 0;
    s->pev.n = s->pev.len = 0;
    s->ppr.n = s->ppr.bytes.n = 0;
    int rc = bulk ? exec(s, "PRAGMA cache_size=" BULK_CACHE_KIB, err) : PATRON_OK;
    s->bulk = bulk && rc == PATRON_OK;
    if (rc == PATRON_OK)
        rc = exec(s, "BEGIN IMMEDIATE", err);
    if (rc != PATRON_OK)
        bulk_end(s);
    return rc;
}

int store_begin(store *s, patron_error *err)
{
    return begin(s, 0, err);
}

int store_begin_bulk(store *s, patron_error *err)
{
    return begin(s, 1, err);
}

int store_commit(store *s, patron_error *err)
{
    int rc = flush_orders(s, err);
    if (rc == PATRON_OK)
        rc = flush_events(s, err);
    if (rc == PATRON_OK)
        rc = flush_profiles(s, err);
    if (rc != PATRON_OK)
        return rc;
    rc = exec(s, "COMMIT", err);
    if (rc == PATRON_OK)
        bulk_end(s);
    return rc;
}

int store_read_begin(store *s, patron_error *err)
{
    return exec(s, "BEGIN DEFERRED", err);
}

void store_read_end(store *s)
{
    exec(s, "COMMIT", NULL);
}

void store_rollback(store *s)
{
    s->pend.n = 0;
    s->pev.n = s->pev.len = 0;
    s->ppr.n = s->ppr.bytes.n = 0;
    exec(s, "ROLLBACK", NULL);
    bulk_end(s);
}

static int step_done(store *s, sqlite3_stmt *st, patron_error *err, const char *what)
{
    int r = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return r == SQLITE_DONE ? PATRON_OK : fail(s, err, what);
}

int store_member_put(store *s, uint32_t idx, const char *id, size_t idn, int64_t enrolled_at,
                     const char *profile_json, patron_error *err)
{
    sqlite3_stmt *st = s->st[ST_MEMBER_PUT];
    sqlite3_bind_int64(st, 1, idx);
    sqlite3_bind_text(st, 2, id, (int)idn, SQLITE_STATIC);
    if (enrolled_at == PATRON_NULL_TS)
        sqlite3_bind_null(st, 3);
    else
        sqlite3_bind_int64(st, 3, enrolled_at);
    sqlite3_bind_int64(st, 4, (int64_t)store_profile_hash(profile_json));
    int rc = step_done(s, st, err, "storing a member");
    if (rc != PATRON_OK)
        return rc;
    st = s->st[ST_PROFILE_PUT];
    sqlite3_bind_int64(st, 1, idx);
    sqlite3_bind_text(st, 2, profile_json, -1, SQLITE_STATIC);
    if ((rc = step_done(s, st, err, "storing a member's profile")) != PATRON_OK)
        return rc;
    return profile_pend(s, idx, profile_json, strlen(profile_json), 1, err); /* canonical */
}

/*
 * Many new members with one profile: the rows of n store_member_put calls, written
 * MEMBER_BLOCK to a statement.  One statement per member spent more in statement set-up
 * and tear-down than in the B-tree inserts (callgrind: ~15k instructions a member at S,
 * half of them outside the inserts); the profile's cells are encoded once.
 */
#define MEMBER_BLOCK 128

static int mblock_prepare(store *s, patron_error *err)
{
    if (s->mblock[0]) return PATRON_OK;
    const size_t cap = MEMBER_BLOCK * 16 + 256;
    char *sql = mem_alloc(cap);
    if (!sql) return err_set(err, PATRON_ENOMEM, "out of memory");
    for (int t = 0; t < 2; t++) {
        size_t w = (size_t)snprintf(sql, cap, "%s",
                                    t == 0 ? "INSERT INTO members(idx, member_id, enrolled_at,"
                                             " phash) VALUES"
                                           : "INSERT OR REPLACE INTO profiles(idx, profile)"
                                             " VALUES");
        for (int k = 0; k < MEMBER_BLOCK; k++)
            w += (size_t)snprintf(sql + w, cap - w, "%s%s", k ? "," : "",
                                  t == 0 ? "(?,?,?,?)" : "(?,?)");
        if (t == 0)
            snprintf(sql + w, cap - w,
                     " ON CONFLICT(idx) DO UPDATE SET"
                     " enrolled_at=excluded.enrolled_at, phash=excluded.phash");
        if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s->mblock[t], NULL) !=
            SQLITE_OK) {
            mem_free(sql);
            return fail(s, err, "preparing statements");
        }
    }
    mem_free(sql);
    return PATRON_OK;
}

int store_members_put(store *s, uint32_t first, size_t n, const char *const *ids,
                      const uint32_t *lens, const int64_t *enrolled_at, const char *profile_json,
                      patron_error *err)
{
    int rc = PATRON_OK;
    size_t k = 0;
    if (n >= MEMBER_BLOCK) rc = mblock_prepare(s, err);
    int64_t phash = (int64_t)store_profile_hash(profile_json);
    store_buf rec = {0};
    if (rc == PATRON_OK && store_profile_encode(profile_json, strlen(profile_json), &rec) != 0)
        rc = err_set(err, PATRON_ENOMEM, "out of memory");
    for (; rc == PATRON_OK && n - k >= MEMBER_BLOCK; k += MEMBER_BLOCK) {
        sqlite3_stmt *m = s->mblock[0], *p = s->mblock[1];
        for (int j = 0; j < MEMBER_BLOCK; j++) {
            size_t i = k + (size_t)j;
            int64_t idx = (int64_t)first + (int64_t)i;
            sqlite3_bind_int64(m, 4 * j + 1, idx);
            sqlite3_bind_text(m, 4 * j + 2, ids[i], (int)lens[i], SQLITE_STATIC);
            if (enrolled_at[i] == PATRON_NULL_TS)
                sqlite3_bind_null(m, 4 * j + 3);
            else
                sqlite3_bind_int64(m, 4 * j + 3, enrolled_at[i]);
            sqlite3_bind_int64(m, 4 * j + 4, phash);
            sqlite3_bind_int64(p, 2 * j + 1, idx);
            sqlite3_bind_text(p, 2 * j + 2, profile_json, -1, SQLITE_STATIC);
        }
        rc = step_done(s, m, err, "storing members");
        if (rc == PATRON_OK) rc = step_done(s, p, err, "storing members' profiles");
        for (int j = 0; j < MEMBER_BLOCK && rc == PATRON_OK; j++)
            rc = profile_pend_rec(s, first + (uint32_t)(k + (size_t)j), rec.p, rec.n, err);
    }
    mem_free(rec.p);
    for (; rc == PATRON_OK && k < n; k++)
        rc = store_member_put(s, first + (uint32_t)k, ids[k], lens[k], enrolled_at[k], profile_json,
                              err);
    return rc;
}

int store_members_each(store *s, store_member_fn fn, void *ctx, patron_error *err)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db, "SELECT idx, member_id, enrolled_at, phash FROM members"
                                  " ORDER BY idx", -1, &q, NULL) != SQLITE_OK)
        return fail(s, err, "reading members");
    int r, rc = PATRON_OK;
    while ((r = sqlite3_step(q)) == SQLITE_ROW) {
        int64_t en = sqlite3_column_type(q, 2) == SQLITE_NULL ? PATRON_NULL_TS
                                                              : sqlite3_column_int64(q, 2);
        const char *id = (const char *)sqlite3_column_text(q, 1);
        if ((rc = fn(ctx, (uint32_t)sqlite3_column_int64(q, 0), id,
                     (size_t)sqlite3_column_bytes(q, 1), en,
                     (uint64_t)sqlite3_column_int64(q, 3))) != 0)
            break;
    }
    if (rc == PATRON_OK && r != SQLITE_DONE)
        rc = fail(s, err, "reading members");
    sqlite3_finalize(q);
    if (rc > 0)
        rc = err_set(err, PATRON_ENOMEM, "out of memory loading members");
    return rc;
}

uint64_t store_profile_hash(const char *profile_json)
{
    return XXH3_64bits(profile_json, strlen(profile_json));
}

int store_member_profile(store *s, uint32_t idx, char **out, patron_error *err)
{
    sqlite3_stmt *st = s->st[ST_MEMBER_PROFILE];
    sqlite3_bind_int64(st, 1, idx);
    int r = sqlite3_step(st), rc = PATRON_OK;
    if (r == SQLITE_ROW) {
        *out = mem_strdup((const char *)sqlite3_column_text(st, 0));
        if (!*out)
            rc = err_set(err, PATRON_ENOMEM, "out of memory");
    } else {
        rc = r == SQLITE_DONE ? err_set(err, PATRON_ENOTFOUND, "no member with index %u", idx)
                              : fail(s, err, "reading a member");
    }
    sqlite3_reset(st);
    return rc;
}

int store_dict_put(store *s, int kind, uint32_t code, const char *v, size_t n, patron_error *err)
{
    sqlite3_stmt *st = s->st[ST_DICT_PUT];
    sqlite3_bind_int(st, 1, kind);
    sqlite3_bind_int64(st, 2, code);
    sqlite3_bind_text(st, 3, v, (int)n, SQLITE_STATIC);
    return step_done(s, st, err, "storing a dictionary entry");
}

int store_dict_each(store *s, store_dict_fn fn, void *ctx, patron_error *err)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db, "SELECT kind, code, value FROM dict ORDER BY kind, code", -1,
                           &q, NULL) != SQLITE_OK)
        return fail(s, err, "reading dictionaries");
    int r, rc = 0;
    while ((r = sqlite3_step(q)) == SQLITE_ROW) {
        if ((rc = fn(ctx, sqlite3_column_int(q, 0), (uint32_t)sqlite3_column_int64(q, 1),
                     (const char *)sqlite3_column_text(q, 2),
                     (size_t)sqlite3_column_bytes(q, 2))) != 0)
            break;
    }
    sqlite3_finalize(q);
    if (rc)
        return err_set(err, PATRON_ENOMEM, "out of memory loading dictionaries");
    return r == SQLITE_DONE || r == SQLITE_ROW ? PATRON_OK : fail(s, err, "reading dictionaries");
}

/*
 * Orders are kept as columns until STORE_ORDER_CHUNK of them are pending or the
 * transaction commits, then written as one chunk (store_chunks.c has the format).
 * Voids live in their own table: chunks are never rewritten.
 */
static int flush_orders(store *s, patron_error *err)
{
    pending_orders *p = &s->pend;
    for (size_t done = 0; done < p->n;) {
        size_t n = p->n - done < STORE_ORDER_CHUNK ? p->n - done : STORE_ORDER_CHUNK;
        store_orders c = {(uint32_t)n,       p->ts + done,      p->amount + done,
                          p->units + done,   p->hash + done,    p->member + done,
                          p->items + done,   p->kind + done,    p->channel + done,
                          p->store + done,   p->id_off + done,  p->ids,
                          NULL};
        s->chunk.n = 0;
        int e = store_orders_encode(&c, &s->chunk);
        if (e != 0)
            return e == -1 ? err_set(err, PATRON_ENOMEM, "out of memory")
                           : err_set(err, PATRON_EINPUT, "%s: order ids too large to store",
                                     s->path);
        sqlite3_stmt *st = s->st[ST_ORDER_PUT];
        sqlite3_bind_int64(st, 1, (int64_t)n);
        sqlite3_bind_blob64(st, 2, s->chunk.p, s->chunk.n, SQLITE_STATIC);
        int rc = step_done(s, st, err, "storing orders");
        if (rc != PATRON_OK)
            return rc;
        store_bulk_tick(s);
        done += n;
    }
    p->n = 0;
    return PATRON_OK;
}

/* Room for one more pending order in every column, and for idn more id bytes. */
static int orders_pend_room(pending_orders *p, size_t idn)
{
    if (p->n + 1 >= p->cap) {
        /* each column keeps its block until all have grown; id_off needs n + 2 */
        size_t c = p->cap ? p->cap * 2 : 1024;
        void **col[10] = {(void **)&p->ts,     (void **)&p->amount, (void **)&p->units,
                          (void **)&p->hash,   (void **)&p->member, (void **)&p->items,
                          (void **)&p->kind,   (void **)&p->channel, (void **)&p->store,
                          (void **)&p->id_off};
        static const size_t sz[10] = {8, 8, 8, 8, 4, 4, 1, 4, 4, sizeof(size_t)};
        for (int k = 0; k < 10; k++) {
            void *q = mem_realloc_array(*col[k], c, sz[k]);
            if (!q)
                return -1;
            *col[k] = q;
        }
        if (p->cap == 0)
            p->id_off[0] = 0;
        p->cap = c;
    }
    return MEM_GROW(p->ids, p->ids_cap, p->id_off[p->n] + idn + 1);
}

int store_order_put(store *s, const store_order *o, patron_error *err)
{
    pending_orders *p = &s->pend;
    if (orders_pend_room(p, o->idn) != 0)
        return err_set(err, PATRON_ENOMEM, "out of memory");
    size_t i = p->n, at = p->id_off[i];
    p->ts[i] = o->ts;
    p->amount[i] = o->amount;
    p->units[i] = o->units;
    p->hash[i] = o->hash;
    p->member[i] = (int32_t)o->member;
    p->items[i] = (int32_t)o->items;
    p->kind[i] = (uint8_t)o->kind;
    p->channel[i] = o->channel;
    p->store[i] = o->store;
    memcpy(p->ids + at, o->id, o->idn);
    p->id_off[i + 1] = at + o->idn;
    p->n++;
    /* A full chunk is written now rather than at commit (the same chunks, in the same
     * order): a bulk import then holds one chunk of orders here, not all of them. */
    return p->n == STORE_ORDER_CHUNK ? flush_orders(s, err) : PATRON_OK;
}

int store_order_void(store *s, const char *id, size_t idn, patron_error *err)
{
    sqlite3_stmt *st = s->st[ST_ORDER_VOID];
    sqlite3_bind_text(st, 1, id, (int)idn, SQLITE_STATIC);
    return step_done(s, st, err, "voiding an order");
}

static int blob_read(store *s, sqlite3_blob **bh, const char *table, long long id,
                     unsigned char **buf, size_t *cap, size_t *len, const char *what,
                     patron_error *err);

int store_order_chunks_each(store *s, int want, store_ochunk_fn fn, void *ctx,
                            patron_error *err)
{
    /* Voided ids first, as a set. */
    hmap voids;
    hmap_init(&voids);
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db, "SELECT order_id FROM voids", -1, &q, NULL) != SQLITE_OK)
        return fail(s, err, "reading voids");
    int r;
    while ((r = sqlite3_step(q)) == SQLITE_ROW)
        if (hmap_put(&voids, (const char *)sqlite3_column_text(q, 0),
                     (size_t)sqlite3_column_bytes(q, 0), 1) != 0) {
            sqlite3_finalize(q);
            hmap_release(&voids);
            return err_set(err, PATRON_ENOMEM, "out of memory loading voids");
        }
    sqlite3_finalize(q);
    if (sqlite3_prepare_v2(s->db, "SELECT id FROM order_chunks ORDER BY id", -1, &q, NULL) !=
        SQLITE_OK) {
        hmap_release(&voids);
        return fail(s, err, "reading orders");
    }
    store_orders_dec d;
    memset(&d, 0, sizeof d);
    unsigned char *b = NULL;
    size_t bcap = 0;
    sqlite3_blob *bh = NULL;
    int rc = PATRON_OK;
    while (rc == PATRON_OK && (r = sqlite3_step(q)) == SQLITE_ROW) {
        long long cid = (long long)sqlite3_column_int64(q, 0);
        size_t len;
        if ((rc = blob_read(s, &bh, "order_chunks", cid, &b, &bcap, &len, "reading orders", err)))
            break;
        const char *why = "";
        /* voided is looked up by id */
        int cols = want | (want & STORE_OC_VALUES && voids.count ? STORE_OC_IDS : 0);
        int dr = store_orders_decode(b, len, cols, &d, &why);
        if (dr != STORE_CHUNK_OK) {
            rc = dr == STORE_CHUNK_NOMEM
                         ? err_set(err, PATRON_ENOMEM, "out of memory reading orders")
                         : err_set(err, PATRON_ESTORE, "%s: order chunk %lld is damaged (%s)",
                                   s->path, cid, why);
            break;
        }
        for (uint32_t i = 0; want & STORE_OC_VALUES && voids.count && i < d.c.n; i++) {
            uint32_t one;
            d.voided[i] = (uint8_t)hmap_get(&voids, d.c.ids + d.c.id_off[i],
                                            d.c.id_off[i + 1] - d.c.id_off[i], &one);
        }
        int f = fn(ctx, &d.c);
        if (f == 2)
            rc = err_set(err, PATRON_ESTORE, "the store changed while open; reopen the database");
        else if (f < 0)
            rc = f;
        else if (f != 0)
            rc = err_set(err, PATRON_ENOMEM, "out of memory loading orders");
    }
    if (rc == PATRON_OK && r != SQLITE_DONE)
        rc = fail(s, err, "reading orders");
    sqlite3_blob_close(bh);
    sqlite3_finalize(q);
    hmap_release(&voids);
    store_orders_dec_release(&d);
    mem_free(b);
    return rc;
}

/* Encodes c (at most STORE_ITEM_CHUNK items) as one chunk and inserts it. */
static int put_item_chunk(store *s, const store_items *c, patron_error *err)
{
    s->chunk.n = 0;
    if (store_items_encode(c, &s->chunk) != 0)
        return err_set(err, PATRON_ENOMEM, "out of memory");
    sqlite3_stmt *st = s->st[ST_CHUNK_PUT];
    sqlite3_bind_blob64(st, 1, s->chunk.p, s->chunk.n, SQLITE_STATIC);
    int rc = step_done(s, st, err, "storing line items");
    store_bulk_tick(s);
    return rc;
}

int store_items_put(store *s, const store_items *c, patron_error *err)
{
    if (c->n <= STORE_ITEM_CHUNK)
        return c->n ? put_item_chunk(s, c, err) : PATRON_OK;
    if (!s->split_hash)
        s->split_hash = mem_alloc_array(STORE_ITEM_CHUNK, sizeof *s->split_hash);
    if (!s->split_len)
        s->split_len = mem_alloc_array(STORE_ITEM_CHUNK, sizeof *s->split_len);
    if (!s->split_hash || !s->split_len)
        return err_set(err, PATRON_ENOMEM, "out of memory");
    /* chunks of STORE_ITEM_CHUNK items; a run that crosses a boundary is cut in two */
    size_t r = 0, skip = 0; /* run r, of which skip items are in earlier chunks */
    int rc = PATRON_OK;
    for (size_t at = 0; at < c->n && rc == PATRON_OK;) {
        size_t want = c->n - at < STORE_ITEM_CHUNK ? c->n - at : STORE_ITEM_CHUNK, got = 0;
        uint32_t k = 0;
        while (got < want) {
            PATRON_ASSERT(r < c->runs && c->run_len[r] > skip);
            size_t take = c->run_len[r] - skip;
            if (take > want - got)
                take = want - got;
            s->split_hash[k] = c->run_hash[r];
            s->split_len[k++] = (uint32_t)take;
            got += take;
            skip += take;
            if (skip == c->run_len[r]) {
                r++;
                skip = 0;
            }
        }
        store_items piece = {(uint32_t)want,   k,
                             s->split_hash,    s->split_len,
                             c->sku + at,      c->category + at,
                             c->brand + at,    c->qty + at,
                             c->price + at};
        rc = put_item_chunk(s, &piece, err);
        at += want;
    }
    return rc;
}

/*
 * Event chunk, format 1 (one BLOB per up to EVENT_CHUNK events of one import, in the
 * order they were written): "PEC1", u32 n, then the columns i64 ts[n], u64 hash[n]
 * (content hash), i32 member[n] (member index, -1 = none), u32 id_len[n],
 * u32 body_len[n], u8 type[n] (store_event_type_code), the id bytes, the body bytes
 * (canonical JSON), and u64 XXH3 of everything before it.
 */
#define EVENT_CHUNK 65536

static const char *const event_type_names[] = {"order", "return",  "redemption", "points",
                                               "void",  "message", "survey",     "referral",
                                               "view",  "consent", "custom"};
#define N_EVENT_TYPES ((int)(sizeof event_type_names / sizeof event_type_names[0]))

int store_event_type_code(const char *type)
{
    for (int i = 0; i < N_EVENT_TYPES; i++)
        if (strcmp(type, event_type_names[i]) == 0)
            return i;
    return -1;
}

const char *store_event_type_name(int code)
{
    return code >= 0 && code < N_EVENT_TYPES ? event_type_names[code] : NULL;
}

/*
 * Event cells chunk, format 1 (schema 6; one BLOB per event chunk, same id): "PXC1",
 * u32 n, i64 ts[n], i32 member[n], u8 type[n], u32 off[n + 1] (event i's cells are
 * the record bytes off[i]..off[i+1]), the records (store_event_encode), and u64 XXH3
 * of everything before it.  The member view reads these instead of the event chunk.
 */
static int put_event_cells(store *s, int64_t id, size_t n, const int64_t *ts,
                           const int32_t *member, const uint8_t *type, const char *const *body,
                           const size_t *blen, int canon, patron_error *err)
{
    store_buf *b = &s->cells;
    size_t head = 8 + n * 13, offs = head + 4 * (n + 1);
    b->n = 0;
    if (MEM_GROW(b->p, b->cap, offs))
        return err_set(err, PATRON_ENOMEM, "out of memory");
    b->n = offs;
    uint32_t n32 = (uint32_t)n;
    memcpy(b->p, "PXC1", 4);
    memcpy(b->p + 4, &n32, 4);
    memcpy(b->p + 8, ts, 8 * n);
    memcpy(b->p + 8 + 8 * n, member, 4 * n);
    memcpy(b->p + 8 + 12 * n, type, n);
    for (size_t i = 0; i < n; i++) {
        uint32_t o = (uint32_t)(b->n - offs);
        memcpy(b->p + head + 4 * i, &o, 4);
        if ((canon ? store_event_encode_canon(type[i], body[i], blen[i], b)
                   : store_event_encode(type[i], body[i], blen[i], b)) != 0)
            return err_set(err, PATRON_ENOMEM, "out of memory");
    }
    if (b->n - offs > UINT32_MAX)
        return err_set(err, PATRON_ESTORE, "%s: the cells of event chunk %lld are too large",
                       s->path, (long long)id);
    uint32_t o = (uint32_t)(b->n - offs);
    memcpy(b->p + head + 4 * n, &o, 4);
    uint64_t sum = XXH3_64bits(b->p, b->n);
    if (MEM_GROW(b->p, b->cap, b->n + 8))
        return err_set(err, PATRON_ENOMEM, "out of memory");
    memcpy(b->p + b->n, &sum, 8);
    b->n += 8;
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db, "INSERT INTO event_cells(id, data) VALUES(?1,?2)", -1, &q, NULL) !=
        SQLITE_OK)
        return fail(s, err, "storing event cells");
    sqlite3_bind_int64(q, 1, id);
    sqlite3_bind_blob64(q, 2, b->p, b->n, SQLITE_STATIC);
    int rc = sqlite3_step(q) == SQLITE_DONE ? PATRON_OK : fail(s, err, "storing event cells");
    sqlite3_finalize(q);
    return rc;
}

static int flush_events(store *s, patron_error *err)
{
    pending_events *p = &s->pev;
    if (p->n == 0)
        return PATRON_OK;
    size_t n = p->n, len = 8 + n * (8 + 8 + 4 + 4 + 4 + 1) + p->len + 8;
    unsigned char *buf = mem_alloc(len), *w = buf;
    if (!buf)
        return err_set(err, PATRON_ENOMEM, "out of memory");
    uint32_t n32 = (uint32_t)n;
    memcpy(w, "PEC1", 4);
    memcpy(w + 4, &n32, 4);
    w += 8;
    memcpy(w, p->ts, 8 * n), w += 8 * n;
    memcpy(w, p->hash, 8 * n), w += 8 * n;
    memcpy(w, p->member, 4 * n), w += 4 * n;
    memcpy(w, p->id_len, 4 * n), w += 4 * n;
    memcpy(w, p->body_len, 4 * n), w += 4 * n;
    memcpy(w, p->type, n), w += n;
    /* the bytes are kept id, body, id, body…: the chunk has all ids, then all bodies */
    const char *r = p->bytes;
    size_t idbytes = 0;
    for (size_t i = 0; i < n; i++)
        idbytes += p->id_len[i];
    unsigned char *wb = w + idbytes;
    for (size_t i = 0; i < n; i++) {
        memcpy(w, r, p->id_len[i]), w += p->id_len[i], r += p->id_len[i];
        memcpy(wb, r, p->body_len[i]), wb += p->body_len[i], r += p->body_len[i];
    }
    uint64_t sum = XXH3_64bits(buf, len - 8);
    memcpy(buf + len - 8, &sum, 8);
    /* migrations run before the statements are prepared */
    sqlite3_stmt *st = s->st[ST_ECHUNK_PUT], *own = NULL;
    if (!st && sqlite3_prepare_v2(s->db, stmt_sql[ST_ECHUNK_PUT], -1, &own, NULL) != SQLITE_OK) {
        mem_free(buf);
        return fail(s, err, "storing events");
    }
    if (!st)
        st = own;
    sqlite3_bind_int64(st, 1, (int64_t)n);
    sqlite3_bind_blob64(st, 2, buf, len, SQLITE_STATIC);
    int rc = step_done(s, st, err, "storing events");
    store_bulk_tick(s);
    sqlite3_finalize(own);
    if (rc == PATRON_OK && s->cells_ready) {
        /* the chunk just written, read back from buf: bodies follow the ids */
        const char **body = mem_alloc_array(n, sizeof *body);
        size_t *blen = mem_alloc_array(n, sizeof *blen);
        if (!body || !blen) {
            rc = err_set(err, PATRON_ENOMEM, "out of memory");
        } else {
            const char *bp = (const char *)buf + 8 + n * 29 + idbytes;
            for (size_t i = 0; i < n; i++) {
                body[i] = bp;
                blen[i] = p->body_len[i];
                bp += p->body_len[i];
            }
            rc = put_event_cells(s, sqlite3_last_insert_rowid(s->db), n, p->ts, p->member, p->type,
                                 body, blen, 1, err); /* canonical: through store_event_put */
        }
        mem_free(body);
        mem_free(blen);
    }
    mem_free(buf);
    p->n = p->len = 0;
    return rc;
}

/* Adds one event to the pending chunk (written when full or at commit). */
static int event_pend(store *s, const char *id, size_t idn, int type, int64_t member, int64_t ts,
                      uint64_t hash, const char *body, size_t bodyn, patron_error *err)
{
    pending_events *p = &s->pev;
    if (idn > UINT32_MAX || bodyn > UINT32_MAX || member > INT32_MAX)
        return err_set(err, PATRON_EINPUT, "%s: event '%.*s' is too large to store", s->path,
                       (int)(idn < 64 ? idn : 64), id);
    if (p->n == p->cap) {
        /* every column has room for cap events; each keeps its block until all have grown */
        size_t c = p->cap ? p->cap * 2 : 1024;
        void **col[6] = {(void **)&p->ts, (void **)&p->hash, (void **)&p->member,
                         (void **)&p->type, (void **)&p->id_len, (void **)&p->body_len};
        static const size_t sz[6] = {8, 8, 4, 1, 4, 4};
        for (int k = 0; k < 6; k++) {
            void *q = mem_realloc_array(*col[k], c, sz[k]);
            if (!q)
                return err_set(err, PATRON_ENOMEM, "out of memory");
            *col[k] = q;
        }
        p->cap = c;
    }
    if (MEM_GROW(p->bytes, p->cap_bytes, p->len + idn + bodyn + 1))
        return err_set(err, PATRON_ENOMEM, "out of memory");
    p->ts[p->n] = ts;
    p->hash[p->n] = hash;
    p->member[p->n] = member < 0 ? -1 : (int32_t)member;
    p->type[p->n] = (uint8_t)type;
    p->id_len[p->n] = (uint32_t)idn;
    p->body_len[p->n] = (uint32_t)bodyn;
    memcpy(p->bytes + p->len, id, idn);
    memcpy(p->bytes + p->len + idn, body, bodyn);
    p->len += idn + bodyn;
    p->n++;
    return p->n >= EVENT_CHUNK ? flush_events(s, err) : PATRON_OK;
}

int store_event_put(store *s, const char *id, const char *type, int64_t member, int64_t ts,
                    uint64_t hash, const char *body, patron_error *err)
{
    int code = store_event_type_code(type);
    if (code < 0)
        return err_set(err, PATRON_EINPUT, "%s: cannot store event '%s': unknown type '%s'",
                       s->path, id, type);
    sqlite3_stmt *st = s->st[ST_EVENT_PUT];
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (int64_t)hash);
    int rc = step_done(s, st, err, "storing an event");
    if (rc != PATRON_OK)
        return rc;
    return event_pend(s, id, strlen(id), code, member, ts, hash, body, strlen(body), err);
}

/* Schema 4: the rows of the events table become chunks, in the order the member view
 * used to read them (member, ts, id), and the table is dropped. */
static int migrate_events(store *s, patron_error *err)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db, "SELECT event_id, type, member_idx, ts, hash, body FROM events"
                                  " ORDER BY member_idx, ts, event_id", -1, &q, NULL) != SQLITE_OK)
        return fail(s, err, "migrating events");
    int r, rc = PATRON_OK;
    s->pev.n = s->pev.len = 0;
    while (rc == PATRON_OK && (r = sqlite3_step(q)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(q, 0);
        const char *type = (const char *)sqlite3_column_text(q, 1);
        int code = type ? store_event_type_code(type) : -1;
        if (code < 0) {
            rc = err_set(err, PATRON_ESTORE, "%s: cannot migrate event '%s': unknown type '%s'",
                         s->path, id ? id : "", type ? type : "");
            break;
        }
        int64_t m = sqlite3_column_type(q, 2) == SQLITE_NULL ? -1 : sqlite3_column_int64(q, 2);
        const char *body = (const char *)sqlite3_column_text(q, 5);
        rc = event_pend(s, id, (size_t)sqlite3_column_bytes(q, 0), code, m,
                        sqlite3_column_int64(q, 3), (uint64_t)sqlite3_column_int64(q, 4),
                        body ? body : "", (size_t)sqlite3_column_bytes(q, 5), err);
    }
    if (rc == PATRON_OK && r != SQLITE_DONE)
        rc = fail(s, err, "migrating events");
    sqlite3_finalize(q);
    if (rc == PATRON_OK)
        rc = flush_events(s, err);
    if (rc == PATRON_OK)
        rc = exec(s, "DROP TABLE events", err);
    s->pev.n = s->pev.len = 0;
    return rc;
}

int store_event_get(store *s, const char *id, uint64_t *hash, patron_error *err)
{
    sqlite3_stmt *st = s->st[ST_EVENT_GET];
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int r = sqlite3_step(st), found = 0;
    if (r == SQLITE_ROW) {
        *hash = (uint64_t)sqlite3_column_int64(st, 0);
        found = 1;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (r != SQLITE_ROW && r != SQLITE_DONE)
        return fail(s, err, "reading an event");
    return found;
}

/*
 * Profile cells (schema 5).  Chunk format "PPC1": u32 first (member index of row 0, a
 * multiple of PROFILE_BLOCK), u32 n, u32 off[n + 1] (member first + i has the record
 * bytes[off[i]..off[i+1]), empty = no profile), the record bytes, then u64 XXH3 of
 * everything before it.  profile_rows holds single records (member index, record) that
 * override their chunk's; a commit that writes PROFILE_FOLD_MIN records or more folds
 * them into their blocks' chunks directly, and one that leaves more than
 * PROFILE_ROWS_MAX rows folds all the rows.  Either way the chunk of a block is
 * rewritten whole, inside the transaction.
 */
#define PROFILE_BLOCK 65536u
#define PROFILE_FOLD_MIN 1024
#define PROFILE_ROWS_MAX 65536
#define PROFILE_PENDING_MAX (4 * PROFILE_BLOCK)

static int profile_pend(store *s, uint32_t idx, const char *json, size_t n, int canon,
                        patron_error *err)
{
    pending_profiles *p = &s->ppr;
    if (MEM_GROW(p->idx, p->cap, p->n + 1) || MEM_GROW(p->off, p->cap_off, p->n + 2))
        return err_set(err, PATRON_ENOMEM, "out of memory");
    p->off[p->n] = p->bytes.n;
    if ((canon ? store_profile_encode_canon(json, n, &p->bytes)
               : store_profile_encode(json, n, &p->bytes)) != 0)
        return err_set(err, PATRON_ENOMEM, "out of memory");
    p->idx[p->n++] = idx;
    p->off[p->n] = p->bytes.n;
    /* bounded memory for a large import (~250 bytes a record): whole blocks of new
     * members are folded at once, so a block is not written twice in one import */
    return p->n >= PROFILE_PENDING_MAX ? flush_profiles(s, err) : PATRON_OK;
}

/* The same with the record already encoded (rec[0..n)). */
static int profile_pend_rec(store *s, uint32_t idx, const unsigned char *rec, size_t n,
                            patron_error *err)
{
    pending_profiles *p = &s->ppr;
    if (MEM_GROW(p->idx, p->cap, p->n + 1) || MEM_GROW(p->off, p->cap_off, p->n + 2) ||
        MEM_GROW(p->bytes.p, p->bytes.cap, p->bytes.n + n))
        return err_set(err, PATRON_ENOMEM, "out of memory");
    p->off[p->n] = p->bytes.n;
    memcpy(p->bytes.p + p->bytes.n, rec, n);
    p->bytes.n += n;
    p->idx[p->n++] = idx;
    p->off[p->n] = p->bytes.n;
    return p->n >= PROFILE_PENDING_MAX ? flush_profiles(s, err) : PATRON_OK;
}

static int prepare(store *s, const char *sql, sqlite3_stmt **q, patron_error *err)
{
    return sqlite3_prepare_v2(s->db, sql, -1, q, NULL) == SQLITE_OK
                   ? PATRON_OK
                   : fail(s, err, "preparing a profile statement");
}

/* Checks a profile chunk: its member count in *n and its offsets at *off (-1: damaged). */
static int pchunk_check(const unsigned char *b, size_t len, uint32_t *first, uint32_t *n,
                        const unsigned char **off, const unsigned char **bytes)
{
    uint64_t sum;
    if (len < 20 || memcmp(b, "PPC1", 4) != 0)
        return -1;
    memcpy(&sum, b + len - 8, 8);
    if (sum != XXH3_64bits(b, len - 8))
        return -1;
    memcpy(first, b + 4, 4);
    memcpy(n, b + 8, 4);
    if (*n > PROFILE_BLOCK || 12 + 4 * ((size_t)*n + 1) + 8 > len)
        return -1;
    *off = b + 12;
    *bytes = *off + 4 * ((size_t)*n + 1);
    uint32_t prev = 0, last;
    for (uint32_t i = 0; i <= *n; i++) {
        uint32_t o;
        memcpy(&o, *off + 4 * (size_t)i, 4);
        if (o < prev)
            return -1;
        prev = o;
    }
    memcpy(&last, *off + 4 * (size_t)*n, 4);
    return (size_t)(*bytes - b) + last + 8 == len ? 0 : -1;
}

/* One record of a fold: pending, row or chunk bytes. */
typedef struct prec {
    const unsigned char *p;
    size_t n;
} prec;

/* Rewrites the chunk of block blk with the rows of the block and the pending records
 * pidx[0..np) (sorted by index, one per member, all in blk), then drops those rows. */
static int fold_block(store *s, uint32_t blk, const uint32_t *pidx, const prec *prs, size_t np,
                      patron_error *err)
{
    uint32_t first = blk * PROFILE_BLOCK;
    prec *rec = mem_calloc(PROFILE_BLOCK, sizeof *rec);
    if (!rec)
        return err_set(err, PATRON_ENOMEM, "out of memory");
    sqlite3_stmt *qc = NULL, *qr = NULL, *qw = NULL, *qd = NULL;
    store_buf rows = {0};
    uint32_t *rows_i = NULL;
    size_t *rows_at = NULL, n_rows = 0, cap_i = 0, cap_at = 0;
    int rc = prepare(s, "SELECT data FROM profile_chunks WHERE first=?1", &qc, err);
    if (rc == PATRON_OK)
        rc = prepare(s, "SELECT idx, data FROM profile_rows WHERE idx>=?1 AND idx<?2 ORDER BY idx",
                     &qr, err);
    if (rc == PATRON_OK)
        rc = prepare(s, "INSERT OR REPLACE INTO profile_chunks(first, data) VALUES(?1,?2)", &qw, err);
    if (rc == PATRON_OK)
        rc = prepare(s, "DELETE FROM profile_rows WHERE idx>=?1 AND idx<?2", &qd, err);
    uint32_t n = 0;
    if (rc == PATRON_OK) {
        sqlite3_bind_int64(qc, 1, first);
        if (sqlite3_step(qc) == SQLITE_ROW) {
            const unsigned char *b = sqlite3_column_blob(qc, 0), *off, *bytes;
            uint32_t f, cn;
            if (pchunk_check(b, (size_t)sqlite3_column_bytes(qc, 0), &f, &cn, &off, &bytes) != 0 ||
                f != first)
                rc = err_set(err, PATRON_ESTORE, "%s: profile chunk %u is damaged (checksum)",
                             s->path, first);
            for (uint32_t i = 0; i < cn && rc == PATRON_OK; i++) {
                uint32_t o0, o1;
                memcpy(&o0, off + 4 * (size_t)i, 4);
                memcpy(&o1, off + 4 * (size_t)i + 4, 4);
                rec[i] = (prec){bytes + o0, o1 - o0};
            }
            n = cn;
        }
    }
    if (rc == PATRON_OK) {
        sqlite3_bind_int64(qr, 1, first);
        sqlite3_bind_int64(qr, 2, (int64_t)first + PROFILE_BLOCK);
        /* a row's bytes live until the next step: copied, then pointed at */
        int r;
        while (rc == PATRON_OK && (r = sqlite3_step(qr)) == SQLITE_ROW) {
            uint32_t i = (uint32_t)(sqlite3_column_int64(qr, 0) - first);
            size_t len = (size_t)sqlite3_column_bytes(qr, 1), at = rows.n;
            if (MEM_GROW(rows_i, cap_i, n_rows + 1) || MEM_GROW(rows_at, cap_at, n_rows + 2) ||
                MEM_GROW(rows.p, rows.cap, rows.n + len + 1)) {
                rc = err_set(err, PATRON_ENOMEM, "out of memory");
                break;
            }
            if (len)
                memcpy(rows.p + at, sqlite3_column_blob(qr, 1), len);
            rows.n += len;
            rows_i[n_rows] = i;
            rows_at[n_rows++] = at;
            rows_at[n_rows] = rows.n;
            if (i + 1 > n)
                n = i + 1;
        }
        if (rc == PATRON_OK && r != SQLITE_DONE)
            rc = fail(s, err, "reading profile rows");
        for (size_t k = 0; k < n_rows && rc == PATRON_OK; k++)
            rec[rows_i[k]] = (prec){rows.p + rows_at[k], rows_at[k + 1] - rows_at[k]};
    }
    for (size_t k = 0; k < np && rc == PATRON_OK; k++) {
        uint32_t i = pidx[k] - first;
        rec[i] = prs[k];
        if (i + 1 > n)
            n = i + 1;
    }
    unsigned char *buf = NULL;
    if (rc == PATRON_OK) {
        size_t total = 0;
        for (uint32_t i = 0; i < n; i++)
            total += rec[i].n;
        size_t len = 12 + 4 * ((size_t)n + 1) + total + 8;
        if (total > UINT32_MAX)
            rc = err_set(err, PATRON_ESTORE, "%s: profiles of block %u are too large", s->path, blk);
        else if (!(buf = mem_alloc(len)))
            rc = err_set(err, PATRON_ENOMEM, "out of memory");
        if (rc == PATRON_OK) {
            memcpy(buf, "PPC1", 4);
            memcpy(buf + 4, &first, 4);
            memcpy(buf + 8, &n, 4);
            unsigned char *off = buf + 12, *w = off + 4 * ((size_t)n + 1);
            uint32_t o = 0;
            for (uint32_t i = 0; i < n; i++) {
                memcpy(off + 4 * (size_t)i, &o, 4);
                if (rec[i].n)
                    memcpy(w + o, rec[i].p, rec[i].n);
                o += (uint32_t)rec[i].n;
            }
            memcpy(off + 4 * (size_t)n, &o, 4);
            uint64_t sum = XXH3_64bits(buf, len - 8);
            memcpy(buf + len - 8, &sum, 8);
            sqlite3_bind_int64(qw, 1, first);
            sqlite3_bind_blob64(qw, 2, buf, len, SQLITE_STATIC);
            if (sqlite3_step(qw) != SQLITE_DONE)
                rc = fail(s, err, "storing profiles");
            store_bulk_tick(s);
        }
    }
    if (rc == PATRON_OK) {
        sqlite3_bind_int64(qd, 1, first);
        sqlite3_bind_int64(qd, 2, (int64_t)first + PROFILE_BLOCK);
        if (sqlite3_step(qd) != SQLITE_DONE)
            rc = fail(s, err, "storing profiles");
    }
    mem_free(buf);
    sqlite3_finalize(qc);
    sqlite3_finalize(qr);
    sqlite3_finalize(qw);
    sqlite3_finalize(qd);
    mem_free(rec);
    mem_free(rows.p);
    mem_free(rows_i);
    mem_free(rows_at);
    return rc;
}

/* Pending records sort by (member index << 32 | write position): the last write of a
 * member comes last. */
static int u64_cmp(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? -1 : a > b;
}

/* Folds every block that has rows. */
static int fold_rows(store *s, patron_error *err)
{
    sqlite3_stmt *q;
    int rc = prepare(s, "SELECT DISTINCT idx / 65536 FROM profile_rows", &q, err);
    uint32_t *blk = NULL;
    size_t nb = 0, cap = 0;
    int r = SQLITE_DONE;
    while (rc == PATRON_OK && (r = sqlite3_step(q)) == SQLITE_ROW) {
        if (MEM_GROW(blk, cap, nb + 1))
            rc = err_set(err, PATRON_ENOMEM, "out of memory");
        else
            blk[nb++] = (uint32_t)sqlite3_column_int64(q, 0);
    }
    if (rc == PATRON_OK && r != SQLITE_DONE)
        rc = fail(s, err, "reading profile rows");
    sqlite3_finalize(q);
    for (size_t k = 0; k < nb && rc == PATRON_OK; k++)
        rc = fold_block(s, blk[k], NULL, NULL, 0, err);
    mem_free(blk);
    return rc;
}

static int flush_profiles(store *s, patron_error *err)
{
    pending_profiles *p = &s->ppr;
    if (p->n == 0)
        return PATRON_OK;
    uint64_t *ord = mem_alloc_array(p->n, sizeof *ord);
    uint32_t *uidx = mem_alloc_array(p->n, sizeof *uidx);
    prec *urec = mem_alloc_array(p->n, sizeof *urec);
    int rc = PATRON_OK;
    if (!ord || !uidx || !urec)
        rc = err_set(err, PATRON_ENOMEM, "out of memory");
    size_t nu = 0;
    if (rc == PATRON_OK) {
        for (size_t k = 0; k < p->n; k++) /* n <= PROFILE_PENDING_MAX: fits 32 bits */
            ord[k] = (uint64_t)p->idx[k] << 32 | (uint64_t)k;
        qsort(ord, p->n, sizeof *ord, u64_cmp);
        for (size_t k = 0; k < p->n; k++) {
            size_t j = (size_t)(ord[k] & 0xffffffffu);
            if (nu && uidx[nu - 1] == p->idx[j])
                nu--; /* a later write of the same member */
            uidx[nu] = p->idx[j];
            urec[nu++] = (prec){p->bytes.p + p->off[j], p->off[j + 1] - p->off[j]};
        }
    }
    if (rc == PATRON_OK && nu < PROFILE_FOLD_MIN) {
        sqlite3_stmt *q;
        rc = prepare(s, "INSERT OR REPLACE INTO profile_rows(idx, data) VALUES(?1,?2)", &q, err);
        for (size_t k = 0; k < nu && rc == PATRON_OK; k++) {
            sqlite3_bind_int64(q, 1, uidx[k]);
            sqlite3_bind_blob64(q, 2, urec[k].p, urec[k].n, SQLITE_STATIC);
            if (sqlite3_step(q) != SQLITE_DONE)
                rc = fail(s, err, "storing a member's profile");
            sqlite3_reset(q);
        }
        sqlite3_finalize(q);
        int64_t rows = 0;
        if (rc == PATRON_OK && (rc = prepare(s, "SELECT count(*) FROM profile_rows", &q, err)) == PATRON_OK) {
            if (sqlite3_step(q) == SQLITE_ROW)
                rows = sqlite3_column_int64(q, 0);
            sqlite3_finalize(q);
        }
        if (rc == PATRON_OK && rows > PROFILE_ROWS_MAX)
            rc = fold_rows(s, err);
    } else {
        for (size_t k = 0; k < nu && rc == PATRON_OK;) {
            uint32_t blk = uidx[k] / PROFILE_BLOCK;
            size_t e = k;
            while (e < nu && uidx[e] / PROFILE_BLOCK == blk)
                e++;
            rc = fold_block(s, blk, uidx + k, urec + k, e - k, err);
            k = e;
        }
    }
    mem_free(ord);
    mem_free(uidx);
    mem_free(urec);
    p->n = p->bytes.n = 0;
    return rc;
}

/* Yields the rows of qr (at *rr) with an index below `below` (-1: all). */
static int rows_before(sqlite3_stmt *qr, int *rr, int64_t below, store_pcells_fn fn, void *ctx)
{
    int f = 0;
    while (f == 0 && *rr == SQLITE_ROW && (below < 0 || sqlite3_column_int64(qr, 0) < below)) {
        f = fn(ctx, (uint32_t)sqlite3_column_int64(qr, 0), sqlite3_column_blob(qr, 1),
               (size_t)sqlite3_column_bytes(qr, 1));
        *rr = sqlite3_step(qr);
    }
    return f;
}

int store_profile_cells_each(store *s, store_pcells_fn fn, void *ctx, patron_error *err)
{
    /* Chunks are read with the incremental blob API into one buffer (as event chunks):
     * reading the column would allocate and fault in a fresh copy of each. */
    sqlite3_stmt *qc = NULL, *qr = NULL;
    sqlite3_blob *bh = NULL;
    unsigned char *b = NULL;
    size_t bcap = 0;
    int rc = prepare(s, "SELECT first FROM profile_chunks ORDER BY first", &qc, err);
    if (rc == PATRON_OK)
        rc = prepare(s, "SELECT idx, data FROM profile_rows ORDER BY idx", &qr, err);
    int rr = rc == PATRON_OK ? sqlite3_step(qr) : SQLITE_DONE, r = SQLITE_DONE, f = 0;
    while (rc == PATRON_OK && f == 0 && (r = sqlite3_step(qc)) == SQLITE_ROW) {
        long long cid = (long long)sqlite3_column_int64(qc, 0);
        if ((bh ? sqlite3_blob_reopen(bh, cid)
                : sqlite3_blob_open(s->db, "main", "profile_chunks", "data", cid, 0, &bh)) != SQLITE_OK) {
            rc = fail(s, err, "reading profiles");
            break;
        }
        size_t len = (size_t)sqlite3_blob_bytes(bh);
        if (MEM_GROW(b, bcap, len + 1)) {
            rc = err_set(err, PATRON_ENOMEM, "out of memory reading profiles");
            break;
        }
        if (sqlite3_blob_read(bh, b, (int)len, 0) != SQLITE_OK) {
            rc = fail(s, err, "reading profiles");
            break;
        }
        const unsigned char *off, *bytes;
        uint32_t first, n;
        if (pchunk_check(b, len, &first, &n, &off, &bytes) != 0 || first != cid) {
            rc = err_set(err, PATRON_ESTORE, "%s: profile chunk %lld is damaged (checksum)",
                         s->path, cid);
            break;
        }
        for (uint32_t i = 0; i < n && f == 0; i++) {
            int64_t idx = (int64_t)first + i;
            if ((f = rows_before(qr, &rr, idx, fn, ctx)) != 0)
                break;
            if (rr == SQLITE_ROW && sqlite3_column_int64(qr, 0) == idx) {
                f = rows_before(qr, &rr, idx + 1, fn, ctx); /* the row overrides the chunk */
                continue;
            }
            uint32_t o0, o1;
            memcpy(&o0, off + 4 * (size_t)i, 4);
            memcpy(&o1, off + 4 * (size_t)i + 4, 4);
            if (o1 > o0)
                f = fn(ctx, (uint32_t)idx, bytes + o0, o1 - o0);
        }
    }
    if (rc == PATRON_OK && f == 0 && r != SQLITE_DONE)
        rc = fail(s, err, "reading profiles");
    if (rc == PATRON_OK && f == 0)
        f = rows_before(qr, &rr, -1, fn, ctx);
    if (rc == PATRON_OK && f == 0 && rr != SQLITE_DONE)
        rc = fail(s, err, "reading profile rows");
    sqlite3_blob_close(bh);
    sqlite3_finalize(qc);
    sqlite3_finalize(qr);
    mem_free(b);
    if (rc == PATRON_OK && f != 0)
        rc = f < 0 ? f : err_set(err, PATRON_ENOMEM, "out of memory loading profiles");
    return rc;
}

/* Schema 5: the cells of every stored profile, folded into chunks block by block. */
static int migrate_profiles(store *s, patron_error *err)
{
    sqlite3_stmt *q;
    int rc = prepare(s, "SELECT idx, profile FROM profiles ORDER BY idx", &q, err), r = SQLITE_DONE;
    s->ppr.n = s->ppr.bytes.n = 0;
    while (rc == PATRON_OK && (r = sqlite3_step(q)) == SQLITE_ROW) {
        const char *text = (const char *)sqlite3_column_text(q, 1);
        rc = profile_pend(s, (uint32_t)sqlite3_column_int64(q, 0), text ? text : "",
                          (size_t)sqlite3_column_bytes(q, 1), 0, err);
    }
    if (rc == PATRON_OK && r != SQLITE_DONE)
        rc = fail(s, err, "migrating profiles");
    sqlite3_finalize(q);
    if (rc == PATRON_OK)
        rc = flush_profiles(s, err);
    s->ppr.n = s->ppr.bytes.n = 0;
    return rc;
}

int store_items_each(store *s, store_items_fn fn, void *ctx, patron_error *err)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db, "SELECT id FROM item_chunks ORDER BY id", -1, &q, NULL) !=
        SQLITE_OK)
        return fail(s, err, "reading line items");
    store_items_dec d;
    memset(&d, 0, sizeof d);
    unsigned char *b = NULL;
    size_t bcap = 0;
    sqlite3_blob *bh = NULL;
    int r, rc = PATRON_OK;
    while (rc == PATRON_OK && (r = sqlite3_step(q)) == SQLITE_ROW) {
        long long cid = (long long)sqlite3_column_int64(q, 0);
        size_t len;
        if ((rc = blob_read(s, &bh, "item_chunks", cid, &b, &bcap, &len, "reading line items",
                            err)))
            break;
        const char *why = "";
        int dr = store_items_decode(b, len, &d, &why);
        if (dr != STORE_CHUNK_OK) {
            rc = dr == STORE_CHUNK_NOMEM
                         ? err_set(err, PATRON_ENOMEM, "out of memory reading line items")
                         : err_set(err, PATRON_ESTORE, "%s: line-item chunk %lld is damaged (%s)",
                                   s->path, cid, why);
            break;
        }
        int f = fn(ctx, &d.c);
        if (f != 0)
            rc = f < 0 ? f : err_set(err, PATRON_ENOMEM, "out of memory loading line items");
    }
    if (rc == PATRON_OK && r != SQLITE_DONE)
        rc = fail(s, err, "reading line items");
    sqlite3_blob_close(bh);
    sqlite3_finalize(q);
    store_items_dec_release(&d);
    mem_free(b);
    return rc;
}

/* Reads the BLOB `data` of row id of table into *buf (grown as needed; one handle
 * reopened row after row); *len its size.  0 or a patron status. */
static int blob_read(store *s, sqlite3_blob **bh, const char *table, long long id,
                     unsigned char **buf, size_t *cap, size_t *len, const char *what,
                     patron_error *err)
{
    if ((*bh ? sqlite3_blob_reopen(*bh, id)
             : sqlite3_blob_open(s->db, "main", table, "data", id, 0, bh)) != SQLITE_OK)
        return fail(s, err, what);
    *len = (size_t)sqlite3_blob_bytes(*bh);
    if (MEM_GROW(*buf, *cap, *len + 1))
        return err_set(err, PATRON_ENOMEM, "out of memory %s", what);
    if (sqlite3_blob_read(*bh, *buf, (int)*len, 0) != SQLITE_OK)
        return fail(s, err, what);
    return PATRON_OK;
}

int store_event_chunks_each(store *s, store_echunk_fn fn, void *ctx, patron_error *err)
{
    sqlite3_stmt *q;
    /* Each chunk is read with the incremental blob API into one buffer: reading the
     * column would allocate (and fault in) a fresh copy of every multi-megabyte chunk. */
    if (sqlite3_prepare_v2(s->db, "SELECT id FROM event_chunks ORDER BY id", -1, &q, NULL) != SQLITE_OK)
        return fail(s, err, "reading events");
    store_echunk c;
    memset(&c, 0, sizeof c);
    size_t cap = 0, bcap = 0;
    unsigned char *b = NULL;
    sqlite3_blob *bh = NULL;
    int r, rc = PATRON_OK;
    while (rc == PATRON_OK && (r = sqlite3_step(q)) == SQLITE_ROW) {
        long long cid = (long long)sqlite3_column_int64(q, 0);
        size_t len;
        if ((rc = blob_read(s, &bh, "event_chunks", cid, &b, &bcap, &len, "reading events", err)))
            break;
        uint32_t n = 0;
        uint64_t sum;
        if (len >= 16)
            memcpy(&n, b + 4, 4);
        size_t fixed = 8 + (size_t)n * 29 + 8;
        if (len < fixed || memcmp(b, "PEC1", 4) != 0 ||
            (memcpy(&sum, b + len - 8, 8), sum != XXH3_64bits(b, len - 8))) {
            rc = err_set(err, PATRON_ESTORE, "%s: event chunk %lld is damaged (checksum)", s->path,
                         cid);
            break;
        }
        if (n + 1 > cap) {
            cap = n + 1;
            int64_t *ts = mem_realloc_array(c.ts, cap, 8);
            c.ts = ts ? ts : c.ts;
            uint64_t *h = ts ? mem_realloc_array(c.hash, cap, 8) : NULL;
            c.hash = h ? h : c.hash;
            int32_t *m = h ? mem_realloc_array(c.member, cap, 4) : NULL;
            c.member = m ? m : c.member;
            uint8_t *t = m ? mem_realloc_array(c.type, cap, 1) : NULL;
            c.type = t ? t : c.type;
            size_t *io = t ? mem_realloc_array(c.id_off, cap, sizeof *io) : NULL;
            c.id_off = io ? io : c.id_off;
            size_t *bo = io ? mem_realloc_array(c.body_off, cap, sizeof *bo) : NULL;
            c.body_off = bo ? bo : c.body_off;
            if (!bo) {
                cap = 0;
                rc = err_set(err, PATRON_ENOMEM, "out of memory reading events");
                break;
            }
        }
        const unsigned char *p = b + 8;
        c.n = n;
        memcpy(c.ts, p, 8 * (size_t)n), p += 8 * (size_t)n;
        memcpy(c.hash, p, 8 * (size_t)n), p += 8 * (size_t)n;
        memcpy(c.member, p, 4 * (size_t)n), p += 4 * (size_t)n;
        const unsigned char *idl = p, *bl = p + 4 * (size_t)n;
        p += 8 * (size_t)n;
        memcpy(c.type, p, n), p += n;
        size_t off = 0;
        for (uint32_t i = 0; i < n; i++) {
            uint32_t k;
            memcpy(&k, idl + 4 * (size_t)i, 4);
            c.id_off[i] = off;
            off += k;
        }
        c.id_off[n] = off;
        c.ids = (const char *)p;
        size_t room = len - 8 - (size_t)(p - b);
        if (off > room) {
            rc = err_set(err, PATRON_ESTORE, "%s: event chunk %lld is damaged (ids)", s->path, cid);
            break;
        }
        c.bodies = c.ids + off;
        room -= off;
        off = 0;
        for (uint32_t i = 0; i < n; i++) {
            uint32_t k;
            memcpy(&k, bl + 4 * (size_t)i, 4);
            c.body_off[i] = off;
            off += k;
        }
        c.body_off[n] = off;
        if (off != room) {
            rc = err_set(err, PATRON_ESTORE, "%s: event chunk %lld is damaged (bodies)", s->path,
                         cid);
            break;
        }
        c.id = cid;
        int f = fn(ctx, &c);
        if (f != 0)
            rc = f < 0 ? f : err_set(err, PATRON_ENOMEM, "out of memory loading events");
    }
    if (rc == PATRON_OK && r != SQLITE_DONE)
        rc = fail(s, err, "reading events");
    sqlite3_blob_close(bh);
    sqlite3_finalize(q);
    mem_free(b);
    mem_free(c.ts);
    mem_free(c.hash);
    mem_free(c.member);
    mem_free(c.type);
    mem_free(c.id_off);
    mem_free(c.body_off);
    return rc;
}

int store_segment_put(store *s, const store_segment *g, patron_error *err)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db, "INSERT OR REPLACE INTO segments(name, kind, rule, created_at,"
                                  " as_of, members, snap_change) VALUES(?1,?2,?3,?4,?5,?6,?7)", -1, &q,
                           NULL) != SQLITE_OK)
        return fail(s, err, "storing a segment");
    sqlite3_bind_text(q, 1, g->name, -1, SQLITE_STATIC);
    sqlite3_bind_int(q, 2, g->kind);
    if (g->rule)
        sqlite3_bind_text(q, 3, g->rule, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(q, 3);
    sqlite3_bind_int64(q, 4, g->created_at);
    sqlite3_bind_int64(q, 5, g->as_of);
    sqlite3_bind_blob64(q, 6, g->members ? g->members : "", g->members_n, SQLITE_STATIC);
    sqlite3_bind_int64(q, 7, g->snap_change);
    int r = sqlite3_step(q);
    sqlite3_finalize(q);
    return r == SQLITE_DONE ? PATRON_OK : fail(s, err, "storing a segment");
}

int store_segment_as_of(store *s, const char *name, int64_t as_of, patron_error *err)
{
    sqlite3_stmt *q = s->st[ST_SEG_AS_OF];
    sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, as_of);
    return step_done(s, q, err, "storing a segment");
}

int store_segment_drop(store *s, const char *name, patron_error *err)
{
    static const char *const sql[2] = {"DELETE FROM segments WHERE name=?1",
                                       "DELETE FROM segment_changes WHERE name=?1"};
    for (int i = 0; i < 2; i++) {
        sqlite3_stmt *q;
        if (sqlite3_prepare_v2(s->db, sql[i], -1, &q, NULL) != SQLITE_OK)
            return fail(s, err, "dropping a segment");
        sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
        int r = sqlite3_step(q);
        sqlite3_finalize(q);
        if (r != SQLITE_DONE)
            return fail(s, err, "dropping a segment");
    }
    return PATRON_OK;
}

int store_segments_each(store *s, store_segment_fn fn, void *ctx, patron_error *err)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db, "SELECT name, kind, rule, created_at, as_of, members, snap_change"
                                  " FROM segments ORDER BY name", -1, &q, NULL) != SQLITE_OK)
        return fail(s, err, "reading segments");
    int r, rc = 0;
    while ((r = sqlite3_step(q)) == SQLITE_ROW) {
        store_segment g;
        g.name = (const char *)sqlite3_column_text(q, 0);
        g.kind = sqlite3_column_int(q, 1);
        g.rule = (const char *)sqlite3_column_text(q, 2);
        g.created_at = sqlite3_column_int64(q, 3);
        g.as_of = sqlite3_column_int64(q, 4);
        g.members = sqlite3_column_blob(q, 5);
        g.members_n = (size_t)sqlite3_column_bytes(q, 5);
        g.snap_change = sqlite3_column_int64(q, 6);
        if ((rc = fn(ctx, &g)) != 0)
            break;
    }
    sqlite3_finalize(q);
    if (rc)
        return rc < 0 ? rc : err_set(err, PATRON_ESTORE, "%s: a stored segment is damaged", s->path);
    return r == SQLITE_DONE ? PATRON_OK : fail(s, err, "reading segments");
}

int store_segment_change_put(store *s, const char *name, int64_t ts_first, int64_t ts_last,
                             const void *data, size_t n, int64_t *id, patron_error *err)
{
    sqlite3_stmt *q = s->st[ST_SEG_CHANGE_PUT];
    sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, ts_first);
    sqlite3_bind_int64(q, 3, ts_last);
    sqlite3_bind_blob64(q, 4, data, n, SQLITE_STATIC);
    int rc = step_done(s, q, err, "storing segment changes");
    if (id)
        *id = sqlite3_last_insert_rowid(s->db);
    return rc;
}

/* The change blobs of a segment selected by sql (?1 name, ?2 a bound), in write order. */
static int changes_query(store *s, const char *sql, const char *name, int64_t bound,
                         store_blob_fn fn, void *ctx, patron_error *err)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db, sql, -1, &q, NULL) != SQLITE_OK)
        return fail(s, err, "reading segment changes");
    sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, bound);
    int r, rc = 0;
    while ((r = sqlite3_step(q)) == SQLITE_ROW)
        if ((rc = fn(ctx, sqlite3_column_blob(q, 0), (size_t)sqlite3_column_bytes(q, 0))) != 0)
            break;
    sqlite3_finalize(q);
    if (rc)
        return rc < 0 ? rc : err_set(err, PATRON_ESTORE, "%s: stored segment changes are damaged", s->path);
    return r == SQLITE_DONE ? PATRON_OK : fail(s, err, "reading segment changes");
}

int store_segment_changes_after(store *s, const char *name, int64_t after, store_blob_fn fn,
                                void *ctx, patron_error *err)
{
    return changes_query(s, "SELECT data FROM segment_changes WHERE name=?1 AND id>?2 ORDER BY id",
                         name, after, fn, ctx, err);
}

int store_segment_changes_each(store *s, const char *name, int64_t since, store_blob_fn fn,
                               void *ctx, patron_error *err)
{
    return changes_query(s, "SELECT data FROM segment_changes WHERE name=?1 AND ts_last>=?2"
                            " ORDER BY id", name, since, fn, ctx, err);
}

static int64_t count_of(store *s, const char *sql)
{
    sqlite3_stmt *q;
    int64_t n = 0;
    if (sqlite3_prepare_v2(s->db, sql, -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
        n = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return n;
}

int64_t store_event_count(store *s)
{
    return count_of(s, "SELECT coalesce(sum(n), 0) FROM event_chunks");
}

int64_t store_member_count(store *s)
{
    return count_of(s, "SELECT count(*) FROM members");
}

int64_t store_order_count(store *s)
{
    return count_of(s, "SELECT coalesce(sum(n), 0) FROM order_chunks");
}

sqlite3 *store_sqlite(store *s)
{
    return s->db;
}

/* ---- data version ----------------------------------------------------------------- */

int store_data_bump(store *s, patron_error *err)
{
    return exec(s, "INSERT INTO meta(key, value) VALUES('data_version', '1') ON CONFLICT(key) "
                   "DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)", err);
}

int store_data_version(store *s, int64_t *out, patron_error *err)
{
    sqlite3_stmt *q;
    *out = 0;
    if (sqlite3_prepare_v2(s->db, "SELECT CAST(value AS INTEGER) FROM meta WHERE key='data_version'",
                           -1, &q, NULL) != SQLITE_OK)
        return fail(s, err, "reading the data version");
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? PATRON_OK : fail(s, err, "reading the data version");
}

/* ---- small settings (meta) --------------------------------------------------------- */

int store_meta_get(store *s, const char *key, char *out, size_t cap, patron_error *err)
{
    sqlite3_stmt *q;
    if (cap)
        out[0] = '\0';
    if (sqlite3_prepare_v2(s->db, "SELECT value FROM meta WHERE key = ?1", -1, &q, NULL) != SQLITE_OK)
        return fail(s, err, "reading meta");
    sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q), found = 0;
    if (rc == SQLITE_ROW) {
        const unsigned char *v = sqlite3_column_text(q, 0);
        snprintf(out, cap, "%s", v ? (const char *)v : "");
        found = 1;
    }
    sqlite3_finalize(q);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return fail(s, err, "reading meta");
    return found;
}

int store_meta_put(store *s, const char *key, const char *value, patron_error *err)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db, "INSERT OR REPLACE INTO meta(key, value) VALUES(?1, ?2)", -1, &q,
                           NULL) != SQLITE_OK)
        return fail(s, err, "writing meta");
    sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, value, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    return rc == SQLITE_DONE ? PATRON_OK : fail(s, err, "writing meta");
}

/* Schema 6: the cells of every stored event, chunk by chunk. */
typedef struct cells_mig {
    store *s;
    patron_error *err;
    const char **body;
    size_t *blen, cap;
} cells_mig;

static int migrate_chunk_cells(void *ctx, const store_echunk *c)
{
    cells_mig *m = ctx;
    if (c->n > m->cap) {
        const char **b = mem_realloc_array(m->body, c->n, sizeof *b);
        if (b)
            m->body = b;
        size_t *l = b ? mem_realloc_array(m->blen, c->n, sizeof *l) : NULL;
        if (!l)
            return 1;
        m->blen = l;
        m->cap = c->n;
    }
    for (uint32_t i = 0; i < c->n; i++) {
        m->body[i] = c->bodies + c->body_off[i];
        m->blen[i] = c->body_off[i + 1] - c->body_off[i];
    }
    return put_event_cells(m->s, c->id, c->n, c->ts, c->member, c->type, m->body, m->blen, 0,
                           m->err);
}

static int migrate_event_cells(store *s, patron_error *err)
{
    cells_mig m = {s, err, NULL, NULL, 0};
    int rc = store_event_chunks_each(s, migrate_chunk_cells, &m, err);
    mem_free(m.body);
    mem_free(m.blen);
    return rc;
}

int store_event_cells_each(store *s, store_ecells_fn fn, void *ctx, patron_error *err)
{
    sqlite3_stmt *q;
    int64_t chunks = 0, cells = 0;
    if (sqlite3_prepare_v2(s->db, "SELECT (SELECT count(*) FROM event_chunks),"
                                  " (SELECT count(*) FROM event_cells)", -1, &q, NULL) != SQLITE_OK)
        return fail(s, err, "reading event cells");
    if (sqlite3_step(q) == SQLITE_ROW) {
        chunks = sqlite3_column_int64(q, 0);
        cells = sqlite3_column_int64(q, 1);
    }
    sqlite3_finalize(q);
    if (chunks != cells)
        return err_set(err, PATRON_ESTORE, "%s: %lld event chunks but %lld event cells chunks",
                       s->path, (long long)chunks, (long long)cells);
    if (sqlite3_prepare_v2(s->db, "SELECT id FROM event_cells ORDER BY id", -1, &q, NULL) != SQLITE_OK)
        return fail(s, err, "reading event cells");
    store_ecchunk c;
    memset(&c, 0, sizeof c);
    size_t cap = 0, bcap = 0;
    unsigned char *b = NULL;
    sqlite3_blob *bh = NULL;
    int r, rc = PATRON_OK;
    while (rc == PATRON_OK && (r = sqlite3_step(q)) == SQLITE_ROW) {
        long long cid = (long long)sqlite3_column_int64(q, 0);
        size_t len;
        if ((rc = blob_read(s, &bh, "event_cells", cid, &b, &bcap, &len, "reading event cells", err)))
            break;
        uint32_t n = 0, last = 0;
        uint64_t sum;
        if (len >= 16)
            memcpy(&n, b + 4, 4);
        size_t head = 8 + (size_t)n * 13, offs = head + 4 * ((size_t)n + 1);
        if (len < offs + 8 || memcmp(b, "PXC1", 4) != 0 ||
            (memcpy(&sum, b + len - 8, 8), sum != XXH3_64bits(b, len - 8)) ||
            (memcpy(&last, b + head + 4 * (size_t)n, 4), offs + last + 8 != len)) {
            rc = err_set(err, PATRON_ESTORE, "%s: event cells chunk %lld is damaged (checksum)",
                         s->path, cid);
            break;
        }
        if (n + 1 > cap) {
            cap = n + 1;
            int64_t *ts = mem_realloc_array(c.ts, cap, 8);
            c.ts = ts ? ts : c.ts;
            int32_t *m = ts ? mem_realloc_array(c.member, cap, 4) : NULL;
            c.member = m ? m : c.member;
            uint8_t *t = m ? mem_realloc_array(c.type, cap, 1) : NULL;
            c.type = t ? t : c.type;
            uint32_t *o = t ? mem_realloc_array(c.off, cap, 4) : NULL;
            c.off = o ? o : c.off;
            if (!o) {
                cap = 0;
                rc = err_set(err, PATRON_ENOMEM, "out of memory reading events");
                break;
            }
        }
        c.n = n;
        memcpy(c.ts, b + 8, 8 * (size_t)n);
        memcpy(c.member, b + 8 + 8 * (size_t)n, 4 * (size_t)n);
        memcpy(c.type, b + 8 + 12 * (size_t)n, n);
        memcpy(c.off, b + head, 4 * ((size_t)n + 1));
        for (uint32_t i = 0; i < n && rc == PATRON_OK; i++)
            if (c.off[i] > c.off[i + 1])
                rc = err_set(err, PATRON_ESTORE, "%s: event cells chunk %lld is damaged (offsets)",
                             s->path, cid);
        if (rc != PATRON_OK)
            break;
        c.rec = b + offs;
        int f = fn(ctx, &c);
        if (f != 0)
            rc = f < 0 ? f : err_set(err, PATRON_ENOMEM, "out of memory loading events");
    }
    if (rc == PATRON_OK && r != SQLITE_DONE)
        rc = fail(s, err, "reading event cells");
    sqlite3_blob_close(bh);
    sqlite3_finalize(q);
    mem_free(b);
    mem_free(c.ts);
    mem_free(c.member);
    mem_free(c.type);
    mem_free(c.off);
    return rc;
}
