/*
 * store_ledger.c -- SQLite tables of the loyalty ledger (see store_ledger.h).
 *
 * The tables are created with CREATE TABLE IF NOT EXISTS the first time a ledger is
 * opened on a connection, so this file needs no entry in store.c's migrations.
 * Statements are prepared once per store_ledger; every call binds, steps and resets.
 * The journal tables are INSERT-only: no statement here updates or deletes a row of
 * ledger_writes, ledger_postings, ledger_qual, ledger_tiers or ledger_chunks.
 *
 * Chunks: a large write (an import batch of thousands of orders) would cost five SQLite
 * rows per order, several times the cost of importing the order itself.  Its journal
 * rows are packed instead into one ledger_chunks row: four blobs (writes, postings,
 * qualification rows, tier changes), each a run of records in increasing seq order with
 * integers as zigzag varints (seq as the delta from the previous record; from format 4
 * not stored, the seqs being contiguous) and strings as a varint length and the bytes,
 * plus an XXH3 checksum over the four blobs that every read checks (formats: below).  Readers merge chunk records with table rows by seq: the rows of a
 * chunk are contiguous per kind and later than every row committed before it.
 */
#include "store/store_ledger.h"

#include "base/err.h"
#include "base/mem.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS ledger_meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL)"
    " WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS ledger_programs(version INTEGER PRIMARY KEY,"
    " applied_at INTEGER NOT NULL, hash INTEGER NOT NULL, body TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS ledger_writes(seq INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE,"
    " kind INTEGER NOT NULL, member INTEGER NOT NULL, ts INTEGER NOT NULL, ref TEXT NOT NULL,"
    " points INTEGER NOT NULL, money INTEGER NOT NULL, shortfall INTEGER NOT NULL,"
    " balance INTEGER NOT NULL, payload TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS ledger_postings(seq INTEGER PRIMARY KEY, write INTEGER NOT NULL,"
    " member INTEGER NOT NULL, debit INTEGER NOT NULL, credit INTEGER NOT NULL,"
    " amount INTEGER NOT NULL CHECK(amount > 0), lot INTEGER NOT NULL, ts INTEGER NOT NULL,"
    " expires INTEGER NOT NULL, hash INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS ledger_qual(seq INTEGER PRIMARY KEY, write INTEGER NOT NULL,"
    " member INTEGER NOT NULL, ts INTEGER NOT NULL, points INTEGER NOT NULL,"
    " spend INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS ledger_tiers(seq INTEGER PRIMARY KEY, write INTEGER NOT NULL,"
    " member INTEGER NOT NULL, ts INTEGER NOT NULL, tier TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS ledger_lots(lot INTEGER PRIMARY KEY, member INTEGER NOT NULL,"
    " ts INTEGER NOT NULL, expires INTEGER NOT NULL, remaining INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS ledger_balances(member INTEGER PRIMARY KEY,"
    " balance INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS ledger_stock(reward TEXT PRIMARY KEY, used INTEGER NOT NULL)"
    " WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS ledger_chunks(w0 INTEGER PRIMARY KEY, nw INTEGER NOT NULL,"
    " p0 INTEGER NOT NULL, np INTEGER NOT NULL, q0 INTEGER NOT NULL, nq INTEGER NOT NULL,"
    " t0 INTEGER NOT NULL, nt INTEGER NOT NULL, bw BLOB NOT NULL, bp BLOB NOT NULL,"
    " bq BLOB NOT NULL, bt BLOB NOT NULL, hash INTEGER NOT NULL);"
    "CREATE TRIGGER IF NOT EXISTS ledger_chunks_append_only BEFORE UPDATE ON ledger_chunks"
    " BEGIN SELECT RAISE(ABORT, 'ledger chunks are append-only'); END;"
    "CREATE TRIGGER IF NOT EXISTS ledger_chunks_no_delete BEFORE DELETE ON ledger_chunks"
    " BEGIN SELECT RAISE(ABORT, 'ledger chunks are append-only'); END;"
    "CREATE TRIGGER IF NOT EXISTS ledger_postings_append_only BEFORE UPDATE ON ledger_postings"
    " BEGIN SELECT RAISE(ABORT, 'ledger postings are append-only'); END;"
    "CREATE TRIGGER IF NOT EXISTS ledger_postings_no_delete BEFORE DELETE ON ledger_postings"
    " BEGIN SELECT RAISE(ABORT, 'ledger postings are append-only'); END;"
    "CREATE TRIGGER IF NOT EXISTS ledger_writes_append_only BEFORE UPDATE ON ledger_writes"
    " BEGIN SELECT RAISE(ABORT, 'ledger writes are append-only'); END;"
    "CREATE TRIGGER IF NOT EXISTS ledger_writes_no_delete BEFORE DELETE ON ledger_writes"
    " BEGIN SELECT RAISE(ABORT, 'ledger writes are append-only'); END;";

enum { Q_TOKEN_GET, Q_TOKEN_SET, Q_PROG_PUT, Q_PROG_LATEST, Q_WRITE_PUT, Q_WRITE_GET,
       Q_POSTING_PUT, Q_QUAL_PUT, Q_TIER_PUT, Q_LOT_PUT, Q_STOCK_PUT,
       Q_CHUNK_PUT, Q_CHUNK_AT, Q__COUNT };

static const char *const sql[Q__COUNT] = {
    "SELECT value FROM ledger_meta WHERE key='token'",
    "INSERT OR REPLACE INTO ledger_meta(key, value) VALUES('token', ?1)",
    "INSERT INTO ledger_programs(applied_at, hash, body) VALUES(?1,?2,?3)",
    "SELECT version, applied_at, body FROM ledger_programs ORDER BY version DESC LIMIT 1",
    "INSERT INTO ledger_writes(seq, key, kind, member, ts, ref, points, money, shortfall, balance,"
    " payload) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)",
    "SELECT seq, key, kind, member, ts, ref, points, money, shortfall, balance, payload"
    " FROM ledger_writes WHERE key=?1",
    "INSERT INTO ledger_postings(seq, write, member, debit, credit, amount, lot, ts, expires, hash)"
    " VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)",
    "INSERT INTO ledger_qual(seq, write, member, ts, points, spend) VALUES(?1,?2,?3,?4,?5,?6)",
    "INSERT INTO ledger_tiers(seq, write, member, ts, tier) VALUES(?1,?2,?3,?4,?5)",
    "INSERT OR REPLACE INTO ledger_lots(lot, member, ts, expires, remaining) VALUES(?1,?2,?3,?4,?5)",
    "INSERT OR REPLACE INTO ledger_stock(reward, used) VALUES(?1,?2)",
    "INSERT INTO ledger_chunks(w0, nw, p0, np, q0, nq, t0, nt, bw, bp, bq, bt, hash)"
    " VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13)",
    "SELECT w0, nw, p0, np, q0, nq, t0, nt, bw, bp, bq, bt, hash FROM ledger_chunks"
    " WHERE w0 <= ?1 ORDER BY w0 DESC LIMIT 1",
};

#define CHUNK_COLS "w0, nw, p0, np, q0, nq, t0, nt, bw, bp, bq, bt, hash"
enum { SEC_W, SEC_P, SEC_Q, SEC_T, SEC__COUNT };

typedef struct bbuf {
    uint8_t *p;
    size_t n, cap;
} bbuf;

struct store_ledger {
    store *s;
    sqlite3 *db;
    sqlite3_stmt *q[Q__COUNT];
    bbuf got; /* the chunk section store_ledger_write_get_seq answered from */
};

static int fail(store_ledger *sl, patron_error *err, const char *what)
{
    return err_set(err, PATRON_ESTORE, "ledger: %s: %s", what, sqlite3_errmsg(sl->db));
}

static int exec(store_ledger *sl, const char *text, patron_error *err, const char *what)
{
    return sqlite3_exec(sl->db, text, NULL, NULL, NULL) == SQLITE_OK ? PATRON_OK
                                                                     : fail(sl, err, what);
}

int store_ledger_open(store *s, store_ledger **out, patron_error *err)
{
    store_ledger *sl = mem_calloc(1, sizeof *sl);
    if (!sl)
        return err_set(err, PATRON_ENOMEM, "out of memory");
    sl->s = s;
    sl->db = store_sqlite(s);
    int rc = PATRON_OK;
    /* Creating tables needs the write lock: only when one is missing. */
    sqlite3_stmt *chk;
    int have = 0;
    if (sqlite3_prepare_v2(sl->db, "SELECT count(*) FROM sqlite_master WHERE name LIKE 'ledger_%'",
                           -1, &chk, NULL) == SQLITE_OK &&
        sqlite3_step(chk) == SQLITE_ROW)
        have = sqlite3_column_int(chk, 0);
    sqlite3_finalize(chk);
    if (have < 16)
        rc = exec(sl, schema, err, "creating the ledger tables");
    for (int i = 0; i < Q__COUNT && rc == PATRON_OK; i++)
        if (sqlite3_prepare_v3(sl->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &sl->q[i], NULL) !=
            SQLITE_OK)
            rc = fail(sl, err, "preparing statements");
    if (rc) {
        store_ledger_free(sl);
        return rc;
    }
    *out = sl;
    return PATRON_OK;
}

void store_ledger_free(store_ledger *sl)
{
    if (!sl)
        return;
    for (int i = 0; i < Q__COUNT; i++)
        sqlite3_finalize(sl->q[i]);
    mem_free(sl->got.p);
    mem_free(sl);
}

int store_ledger_in_txn(store_ledger *sl)
{
    return !sqlite3_get_autocommit(sl->db);
}

int store_ledger_synchronous(store_ledger *sl, int full, patron_error *err)
{
    return exec(sl, full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL", err,
                "setting synchronous");
}

int store_ledger_savepoint(store_ledger *sl, patron_error *err)
{
    return exec(sl, "SAVEPOINT ledger_op", err, "savepoint");
}

int store_ledger_release(store_ledger *sl, patron_error *err)
{
    return exec(sl, "RELEASE ledger_op", err, "releasing a savepoint");
}

void store_ledger_rollback_to(store_ledger *sl)
{
    sqlite3_exec(sl->db, "ROLLBACK TO ledger_op; RELEASE ledger_op", NULL, NULL, NULL);
}

/* Steps a write statement to completion and resets it. */
static int done(store_ledger *sl, sqlite3_stmt *st, patron_error *err, const char *what)
{
    int r = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return r == SQLITE_DONE ? PATRON_OK : fail(sl, err, what);
}

int store_ledger_token_get(store_ledger *sl, uint64_t *token, patron_error *err)
{
    sqlite3_stmt *st = sl->q[Q_TOKEN_GET];
    int r = sqlite3_step(st);
    *token = r == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    return r == SQLITE_ROW || r == SQLITE_DONE ? PATRON_OK : fail(sl, err, "reading the token");
}

int store_ledger_token_set(store_ledger *sl, uint64_t token, patron_error *err)
{
    sqlite3_stmt *st = sl->q[Q_TOKEN_SET];
    sqlite3_bind_int64(st, 1, (int64_t)token);
    return done(sl, st, err, "writing the token");
}

int store_ledger_program_put(store_ledger *sl, int64_t applied_at, uint64_t hash,
                             const char *body, int64_t *version, patron_error *err)
{
    sqlite3_stmt *st = sl->q[Q_PROG_PUT];
    sqlite3_bind_int64(st, 1, applied_at);
    sqlite3_bind_int64(st, 2, (int64_t)hash);
    sqlite3_bind_text(st, 3, body, -1, SQLITE_STATIC);
    int rc = done(sl, st, err, "storing the program");
    if (rc == PATRON_OK)
        *version = sqlite3_last_insert_rowid(sl->db);
    return rc;
}

int store_ledger_program_latest(store_ledger *sl, int64_t *version, int64_t *applied_at,
                                char **body, patron_error *err)
{
    sqlite3_stmt *st = sl->q[Q_PROG_LATEST];
    int r = sqlite3_step(st), rc = 0;
    if (r == SQLITE_ROW) {
        *version = sqlite3_column_int64(st, 0);
        *applied_at = sqlite3_column_int64(st, 1);
        *body = mem_strdup((const char *)sqlite3_column_text(st, 2));
        rc = *body ? 1 : err_set(err, PATRON_ENOMEM, "out of memory");
    } else if (r != SQLITE_DONE) {
        rc = fail(sl, err, "reading the program");
    }
    sqlite3_reset(st);
    return rc;
}

int store_ledger_write_put(store_ledger *sl, const store_ledger_write *w, patron_error *err)
{
    sqlite3_stmt *st = sl->q[Q_WRITE_PUT];
    sqlite3_bind_int64(st, 1, w->seq);
    sqlite3_bind_text(st, 2, w->key, (int)w->keyn, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, w->kind);
    sqlite3_bind_int64(st, 4, w->member);
    sqlite3_bind_int64(st, 5, w->ts);
    sqlite3_bind_text(st, 6, w->ref, (int)w->refn, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, w->points);
    sqlite3_bind_int64(st, 8, w->money);
    sqlite3_bind_int64(st, 9, w->shortfall);
    sqlite3_bind_int64(st, 10, w->balance);
    sqlite3_bind_text(st, 11, w->payload, (int)w->payloadn, SQLITE_STATIC);
    return done(sl, st, err, "storing a write");
}

static void write_from_row(sqlite3_stmt *st, store_ledger_write *w)
{
    w->seq = sqlite3_column_int64(st, 0);
    w->key = (const char *)sqlite3_column_text(st, 1);
    w->keyn = (size_t)sqlite3_column_bytes(st, 1);
    w->kind = sqlite3_column_int(st, 2);
    w->member = sqlite3_column_int64(st, 3);
    w->ts = sqlite3_column_int64(st, 4);
    w->ref = (const char *)sqlite3_column_text(st, 5);
    w->refn = (size_t)sqlite3_column_bytes(st, 5);
    w->points = sqlite3_column_int64(st, 6);
    w->money = sqlite3_column_int64(st, 7);
    w->shortfall = sqlite3_column_int64(st, 8);
    w->balance = sqlite3_column_int64(st, 9);
    w->payload = (const char *)sqlite3_column_text(st, 10);
    w->payloadn = (size_t)sqlite3_column_bytes(st, 10);
}

int store_ledger_write_get(store_ledger *sl, const char *key, size_t keyn,
                           store_ledger_write *w, patron_error *err)
{
    sqlite3_stmt *st = sl->q[Q_WRITE_GET];
    sqlite3_reset(st); /* strings of the previous answer stay valid until now */
    sqlite3_bind_text(st, 1, key, (int)keyn, SQLITE_TRANSIENT);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        write_from_row(st, w);
        return 1;
    }
    sqlite3_reset(st);
    return r == SQLITE_DONE ? 0 : fail(sl, err, "reading a write");
}

int store_ledger_posting_put(store_ledger *sl, const store_ledger_posting *p, patron_error *err)
{
    sqlite3_stmt *st = sl->q[Q_POSTING_PUT];
    sqlite3_bind_int64(st, 1, p->seq);
    sqlite3_bind_int64(st, 2, p->write);
    sqlite3_bind_int64(st, 3, p->member);
    sqlite3_bind_int(st, 4, p->debit);
    sqlite3_bind_int(st, 5, p->credit);
    sqlite3_bind_int64(st, 6, p->amount);
    sqlite3_bind_int64(st, 7, p->lot);
    sqlite3_bind_int64(st, 8, p->ts);
    sqlite3_bind_int64(st, 9, p->expires);
    sqlite3_bind_int64(st, 10, (int64_t)p->hash);
    return done(sl, st, err, "storing a posting");
}

int store_ledger_qual_put(store_ledger *sl, const store_ledger_qual *q, patron_error *err)
{
    sqlite3_stmt *st = sl->q[Q_QUAL_PUT];
    sqlite3_bind_int64(st, 1, q->seq);
    sqlite3_bind_int64(st, 2, q->write);
    sqlite3_bind_int64(st, 3, q->member);
    sqlite3_bind_int64(st, 4, q->ts);
    sqlite3_bind_int64(st, 5, q->points);
    sqlite3_bind_int64(st, 6, q->spend);
    return done(sl, st, err, "storing a qualification row");
}

int store_ledger_tier_put(store_ledger *sl, const store_ledger_tier *t, patron_error *err)
{
    sqlite3_stmt *st = sl->q[Q_TIER_PUT];
    sqlite3_bind_int64(st, 1, t->seq);
    sqlite3_bind_int64(st, 2, t->write);
    sqlite3_bind_int64(st, 3, t->member);
    sqlite3_bind_int64(st, 4, t->ts);
    sqlite3_bind_text(st, 5, t->tier, (int)t->tiern, SQLITE_STATIC);
    return done(sl, st, err, "storing a tier change");
}

int store_ledger_lot_put(store_ledger *sl, const store_ledger_lot *l, patron_error *err)
{
    sqlite3_stmt *st = sl->q[Q_LOT_PUT];
    sqlite3_bind_int64(st, 1, l->lot);
    sqlite3_bind_int64(st, 2, l->member);
    sqlite3_bind_int64(st, 3, l->ts);
    sqlite3_bind_int64(st, 4, l->expires);
    sqlite3_bind_int64(st, 5, l->remaining);
    return done(sl, st, err, "storing a lot");
}

int store_ledger_stock_put(store_ledger *sl, const char *reward, size_t n, int64_t used,
                           patron_error *err)
{
    sqlite3_stmt *st = sl->q[Q_STOCK_PUT];
    sqlite3_bind_text(st, 1, reward, (int)n, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, used);
    return done(sl, st, err, "storing reward stock");
}

/* ---- chunks ------------------------------------------------------------------------ */

static int bb_grow(bbuf *b, size_t more)
{
    return MEM_GROW(b->p, b->cap, b->n + more);
}

/* Varints without a room check: callers make room for a whole record first (10 bytes
 * per number at most).  The v* forms write at a cursor and return it past what they
 * wrote (an import encodes millions of records: the buffer's length is stored once a
 * record); the p* forms append to a buffer. */
static inline uint8_t *vu(uint8_t *o, uint64_t v)
{
    while (v >= 0x80) {
        *o++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *o++ = (uint8_t)v;
    return o;
}

static inline uint64_t zz(int64_t v)
{
    uint64_t u = (uint64_t)v << 1;
    return v < 0 ? ~u : u;
}

static inline uint8_t *vi(uint8_t *o, int64_t v)
{
    return vu(o, zz(v));
}

static inline uint8_t *vs(uint8_t *o, const char *s, size_t n)
{
    o = vu(o, n);
    if (n)
        memcpy(o, s, n);
    return o + n;
}

static void pu(bbuf *b, uint64_t v)
{
    b->n = (size_t)(vu(b->p + b->n, v) - b->p);
}

static void pi(bbuf *b, int64_t v)
{
    b->n = (size_t)(vi(b->p + b->n, v) - b->p);
}

static void pis(bbuf *b, const int64_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        pi(b, v[i]);
}

static void ps(bbuf *b, const char *s, size_t n)
{
    b->n = (size_t)(vs(b->p + b->n, s, n) - b->p);
}

typedef struct rd {
    const uint8_t *p, *end;
    int bad;
} rd;

static uint64_t get_u(rd *r)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end)
            break;
        uint8_t c = *r->p++;
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80))
            return v;
    }
    r->bad = 1;
    return 0;
}

static int64_t unzz(uint64_t u)
{
    return (u & 1) ? (int64_t)~(u >> 1) : (int64_t)(u >> 1);
}

static int64_t get_i(rd *r)
{
    return unzz(get_u(r));
}

static const char *get_s(rd *r, size_t *n)
{
    uint64_t len = get_u(r);
    if (r->bad || len > (uint64_t)(r->end - r->p)) {
        r->bad = 1;
        *n = 0;
        return "";
    }
    const char *s = (const char *)r->p;
    r->p += len;
    *n = (size_t)len;
    return s;
}

/* a - b as a delta that undoes exactly (wrapping as unsigned; und() adds it back) */
static int64_t dlt(int64_t a, int64_t b)
{
    return (int64_t)((uint64_t)a - (uint64_t)b);
}

static int64_t und(int64_t base, int64_t d)
{
    return (int64_t)((uint64_t)base + (uint64_t)d);
}

/*
 * Chunk formats.  Each section is a run of records, each starting with its seq as a
 * delta from the previous record's (zigzag varint), then its fields as varints
 * (integers zigzag) and strings as length + bytes:
 *   format 1  writes    key, kind, member, ts, ref, points, money, shortfall, balance,
 *                       payload
 *             postings  write, member, debit, credit, amount, lot, ts, expires, hash
 *             quals     write, member, ts, points, spend
 *             tiers     write, member, ts, tier
 *   format 2  the same fields, smaller: a write's ts, and a posting's or qualification
 *             row's write, ts (and a posting's expires) are deltas from the previous
 *             record's in the section; debit and credit are one number (debit x 8 +
 *             credit); a posting's lot is a delta from its own seq (0 for the credit
 *             that creates the lot); a posting's hash is not stored (the chunk's
 *             checksum covers it; readers compute it).  Tiers as format 1.
 *   format 3  as format 2, smaller again (a quarter fewer bytes for an import's earns):
 *             a write's member is a delta from the previous write's; its payload is
 *             length x 2 then the bytes, except a packed earn's (9 bytes, the first 1:
 *             ledger.c), which is its 9 bytes as they are (the first byte, odd, tells
 *             it); a posting's and a qualification row's member and ts are deltas from
 *             those of their write (0 when the write is not in the chunk), a posting's
 *             expires is expires - ts as a delta from the previous posting's, and a
 *             qualification row's points and spend are deltas from its write's points
 *             and money.  Readers of postings and qualification rows walk the chunk's
 *             writes alongside.
 *   format 4  as format 3, smaller again (half the bytes of an import's earns):
 *             records carry no seq (each is the one before's + 1; the first is the
 *             row's column); every record starts with a head varint, its low bits flags:
 *     writes    head = kind (zigzag) x 8 + 4 if the ref is numeric + 2 if a shortfall
 *               is stored (else 0) + 1 if the key is stored (else empty); then the
 *               member and ts as in format 3; the ref, numeric (a prefix and D <= 19
 *               trailing digits: D x 2 + 1 if the prefix is the previous numeric ref's,
 *               else + 0 and the prefix as a string; then the digits' value as a delta
 *               from the previous numeric ref's) or as a string; points, money,
 *               [shortfall]; the balance as balance - points - (the previous write's
 *               balance when it is the same member's, else 0); the payload as format 3
 *     postings  head bit 0 set: implied by its write (issued -> member, amount = the
 *               write's points, member and ts the write's, lot = its own seq; the write
 *               in the chunk); head = write delta x 8 + mode x 2 + 1, mode 0: expires as
 *               a delta from the previous posting's, in seconds, follows; 1: the same in
 *               days; 2: expires - ts as the previous posting's (nothing follows).
 *               Bit 0 clear (the head is 0): the write delta, then member, account
 *               pair, amount, lot, ts as format 3 and expires as a delta from the
 *               previous posting's
 *     quals     head = write delta x 2 + 1: implied by its write (member, ts, points and
 *               money the write's); head 0: the write delta, then member, ts, points,
 *               spend as format 3
 *     tiers     write as a delta from the previous tier row's, member and ts as deltas
 *               from the write's, the tier name
 * The format is not a column: a chunk's checksum is seeded with it (format 1: 0), so
 * a reader tries format 4's seed, then 3's, 2's and 1's.
 */
#define CHUNK_FMT 4
static const uint64_t chunk_seed[5] = {0, 0, 0x50434832u, 0x50434833u, 0x50434834u};

/* Format 4: the longest prefix of a numeric ref remembered for the next (a longer one
 * is stored each time), and the trailing digits taken at most. */
#define REF_PFX_MAX 32
#define REF_DIGITS  19
/* Format 4: a write delta a posting's or qualification row's head holds at most. */
#define HEAD_DELTA_MAX ((int64_t)1 << 56)

/* What a posting or qualification row of format 3 or 4 takes from its write. */
typedef struct wfacts {
    int64_t member, ts, points, money;
} wfacts;

struct store_ledger_chunk {
    bbuf sec[SEC__COUNT];
    int64_t first[SEC__COUNT], last[SEC__COUNT], count[SEC__COUNT];
    int fmt;
    /* format 2 to 4: the previous record's */
    int64_t w_ts, w_member, p_write, p_ts, p_exp, q_write, q_ts;
    /* format 4: the previous write's balance, numeric ref (value, prefix), posting's
     * life and tier row's write */
    int64_t w_bal, p_life, t_write;
    uint64_t w_num;
    size_t pfxn; /* SIZE_MAX: none */
    char pfx[REF_PFX_MAX];
    wfacts *wf; /* formats 3 and 4: of the chunk's writes, by seq - first[SEC_W] */
    size_t cap_wf;
};

store_ledger_chunk *store_ledger_chunk_new(int fmt)
{
    store_ledger_chunk *c = mem_calloc(1, sizeof(store_ledger_chunk));
    if (c)
        c->fmt = fmt >= 1 && fmt <= CHUNK_FMT ? fmt : CHUNK_FMT;
    return c;
}

uint64_t store_ledger_posting_hash(const store_ledger_posting *p)
{
    int64_t v[9] = {p->seq, p->write, p->member, p->debit, p->credit, p->amount, p->lot, p->ts,
                    p->expires};
    return XXH3_64bits(v, sizeof v);
}

void store_ledger_chunk_free(store_ledger_chunk *c)
{
    if (!c)
        return;
    for (int k = 0; k < SEC__COUNT; k++)
        mem_free(c->sec[k].p);
    mem_free(c->wf);
    mem_free(c);
}

void store_ledger_chunk_begin(store_ledger_chunk *c)
{
    for (int k = 0; k < SEC__COUNT; k++) {
        c->sec[k].n = 0;
        c->first[k] = c->last[k] = c->count[k] = 0;
    }
    c->w_ts = c->w_member = c->p_write = c->p_ts = c->p_exp = c->q_write = c->q_ts = 0;
    c->w_bal = c->p_life = c->t_write = 0;
    c->w_num = 0;
    c->pfxn = SIZE_MAX;
}

/* Format 3 and 4: the facts of write seq of the chunk (zeros when it is not in the
 * chunk, and *in 0). */
static wfacts wfacts_of(const store_ledger_chunk *c, int64_t seq, int *in)
{
    int64_t i = seq - c->first[SEC_W];
    *in = c->count[SEC_W] > 0 && i >= 0 && i < c->count[SEC_W];
    return *in ? c->wf[i] : (wfacts){0, 0, 0, 0};
}

/* Starts a record of section k with its seq (delta from the previous one), with room
 * for `more` bytes after it. */
static int rec(store_ledger_chunk *c, int k, int64_t seq, size_t more)
{
    PATRON_ASSERT(c->count[k] == 0 || seq == c->last[k] + 1);
    if (bb_grow(&c->sec[k], 10 + more))
        return -1;
    if (c->count[k] == 0)
        c->first[k] = seq;
    if (c->fmt < 4)
        pi(&c->sec[k], seq - c->last[k]);
    c->last[k] = seq;
    c->count[k]++;
    return 0;
}

/* The trailing digits of a ref that format 4 stores as a number: their count (at most
 * REF_DIGITS) and *num their value; 0 when there are none or the prefix before them is
 * too long. */
static size_t ref_digits(const char *s, size_t n, uint64_t *num)
{
    size_t d = 0;
    uint64_t v = 0, pow = 1;
    for (; d < n && d < REF_DIGITS; d++, pow *= 10) {
        unsigned c = (unsigned char)s[n - 1 - d] - (unsigned)'0';
        if (c > 9)
            break;
        v += c * pow;
    }
    *num = v;
    return n - d <= REF_PFX_MAX ? d : 0;
}

/* Format 4: a write record up to its payload (format 3's). */
static uint8_t *write4(store_ledger_chunk *c, uint8_t *o, const store_ledger_write *w)
{
    uint64_t num;
    size_t d = ref_digits(w->ref, w->refn, &num);
    o = vu(o, zz(w->kind) << 3 | (d ? 4u : 0u) | (w->shortfall ? 2u : 0u) | (w->keyn ? 1u : 0u));
    if (w->keyn)
        o = vs(o, w->key, w->keyn);
    o = vi(vi(o, dlt(w->member, c->w_member)), dlt(w->ts, c->w_ts));
    if (d) {
        size_t pn = w->refn - d;
        int same = c->pfxn == pn && memcmp(c->pfx, w->ref, pn) == 0;
        o = vu(o, (uint64_t)d * 2 + (uint64_t)same);
        if (!same) {
            o = vs(o, w->ref, pn);
            memcpy(c->pfx, w->ref, pn);
            c->pfxn = pn;
        }
        o = vu(o, zz((int64_t)(num - c->w_num)));
        c->w_num = num;
    } else {
        o = vs(o, w->ref, w->refn);
    }
    o = vi(vi(o, w->points), w->money);
    if (w->shortfall)
        o = vi(o, w->shortfall);
    int64_t base = w->member == c->w_member ? c->w_bal : 0;
    o = vi(o, dlt(dlt(w->balance, w->points), base));
    c->w_member = w->member;
    c->w_ts = w->ts;
    c->w_bal = w->balance;
    return o;
}

/* Formats 1 to 3: a write record up to its payload. */
static uint8_t *write123(store_ledger_chunk *c, uint8_t *o, const store_ledger_write *w)
{
    int64_t ts = w->ts, member = w->member;
    if (c->fmt >= 2) {
        ts = dlt(w->ts, c->w_ts);
        c->w_ts = w->ts;
    }
    if (c->fmt == 3) {
        member = dlt(w->member, c->w_member);
        c->w_member = w->member;
    }
    o = vs(o, w->key, w->keyn);
    o = vi(vi(vi(o, w->kind), member), ts);
    o = vs(o, w->ref, w->refn);
    return vi(vi(vi(vi(o, w->points), w->money), w->shortfall), w->balance);
}

int store_ledger_chunk_write(store_ledger_chunk *c, const store_ledger_write *w)
{
    bbuf *b = &c->sec[SEC_W];
    if (rec(c, SEC_W, w->seq, 100 + w->keyn + w->refn + w->payloadn))
        return -1;
    uint8_t *o = c->fmt == 4 ? write4(c, b->p + b->n, w) : write123(c, b->p + b->n, w);
    if (c->fmt < 3) {
        b->n = (size_t)(vs(o, w->payload, w->payloadn) - b->p);
        return 0;
    }
    if (w->payloadn == 9 && w->payload[0] == '\x01') { /* a packed earn's, as it is */
        memcpy(o, w->payload, 9);
        o += 9;
    } else {
        o = vu(o, (uint64_t)w->payloadn * 2);
        memcpy(o, w->payload, w->payloadn);
        o += w->payloadn;
    }
    b->n = (size_t)(o - b->p);
    size_t i = (size_t)(c->count[SEC_W] - 1);
    if (MEM_GROW(c->wf, c->cap_wf, i + 1))
        return -1;
    c->wf[i] = (wfacts){w->member, w->ts, w->points, w->money};
    return 0;
}

int store_ledger_chunk_posting(store_ledger_chunk *c, const store_ledger_posting *p)
{
    bbuf *b = &c->sec[SEC_P];
    if (rec(c, SEC_P, p->seq, 90))
        return -1;
    if (c->fmt == 1) {
        pis(b, (const int64_t[]){p->write, p->member, p->debit, p->credit, p->amount, p->lot, p->ts,
                                 p->expires}, 8);
        pu(b, store_ledger_posting_hash(p));
        return 0;
    }
    int64_t acc = (int64_t)((uint64_t)p->debit * 8 + (uint64_t)p->credit);
    if (c->fmt == 4) {
        int in;
        wfacts f = wfacts_of(c, p->write, &in);
        int64_t dw = dlt(p->write, c->p_write), life = dlt(p->expires, p->ts);
        int64_t de = dlt(p->expires, c->p_exp);
        uint8_t *o = b->p + b->n;
        if (in && dw >= 0 && dw < HEAD_DELTA_MAX && p->debit == 1 && p->credit == 0 &&
            p->member == f.member && p->ts == f.ts && p->amount == f.points && p->lot == p->seq) {
            uint64_t head = (uint64_t)dw << 3 | 1;
            if (life == c->p_life)
                o = vu(o, head | 2u << 1);
            else if (de % 86400 == 0)
                o = vi(vu(o, head | 1u << 1), de / 86400);
            else
                o = vi(vu(o, head), de);
        } else {
            o = vi(vi(vu(o, 0), dw), dlt(p->member, f.member));
            o = vi(vi(vi(o, acc), p->amount), dlt(p->lot, p->seq));
            o = vi(vi(o, dlt(p->ts, f.ts)), de);
        }
        b->n = (size_t)(o - b->p);
        c->p_write = p->write;
        c->p_exp = p->expires;
        c->p_life = life;
        return 0;
    }
    if (c->fmt == 3) {
        int in;
        wfacts f = wfacts_of(c, p->write, &in);
        int64_t life = dlt(p->expires, p->ts);
        uint8_t *o = vi(vi(b->p + b->n, dlt(p->write, c->p_write)), dlt(p->member, f.member));
        o = vi(vi(vi(o, acc), p->amount), dlt(p->lot, p->seq));
        o = vi(vi(o, dlt(p->ts, f.ts)), dlt(life, c->p_exp));
        b->n = (size_t)(o - b->p);
        c->p_write = p->write;
        c->p_exp = life;
        return 0;
    }
    pis(b, (const int64_t[]){dlt(p->write, c->p_write), p->member, acc, p->amount,
                             dlt(p->lot, p->seq), dlt(p->ts, c->p_ts), dlt(p->expires, c->p_exp)}, 7);
    c->p_write = p->write;
    c->p_ts = p->ts;
    c->p_exp = p->expires;
    return 0;
}

int store_ledger_chunk_qual(store_ledger_chunk *c, const store_ledger_qual *q)
{
    bbuf *b = &c->sec[SEC_Q];
    if (rec(c, SEC_Q, q->seq, 50))
        return -1;
    if (c->fmt == 1) {
        pis(b, (const int64_t[]){q->write, q->member, q->ts, q->points, q->spend}, 5);
        return 0;
    }
    if (c->fmt == 4) {
        int in;
        wfacts f = wfacts_of(c, q->write, &in);
        int64_t dw = dlt(q->write, c->q_write);
        uint8_t *o = b->p + b->n;
        if (in && dw >= 0 && dw < HEAD_DELTA_MAX && q->member == f.member && q->ts == f.ts &&
            q->points == f.points && q->spend == f.money) {
            o = vu(o, (uint64_t)dw << 1 | 1);
        } else {
            o = vi(vi(vu(o, 0), dw), dlt(q->member, f.member));
            o = vi(vi(vi(o, dlt(q->ts, f.ts)), dlt(q->points, f.points)), dlt(q->spend, f.money));
        }
        b->n = (size_t)(o - b->p);
        c->q_write = q->write;
        return 0;
    }
    if (c->fmt == 3) {
        int in;
        wfacts f = wfacts_of(c, q->write, &in);
        uint8_t *o = vi(vi(b->p + b->n, dlt(q->write, c->q_write)), dlt(q->member, f.member));
        o = vi(vi(vi(o, dlt(q->ts, f.ts)), dlt(q->points, f.points)), dlt(q->spend, f.money));
        b->n = (size_t)(o - b->p);
        c->q_write = q->write;
        return 0;
    }
    pis(b, (const int64_t[]){dlt(q->write, c->q_write), q->member, dlt(q->ts, c->q_ts), q->points,
                             q->spend}, 5);
    c->q_write = q->write;
    c->q_ts = q->ts;
    return 0;
}

int store_ledger_chunk_tier(store_ledger_chunk *c, const store_ledger_tier *t)
{
    bbuf *b = &c->sec[SEC_T];
    if (rec(c, SEC_T, t->seq, 40 + t->tiern))
        return -1;
    if (c->fmt == 4) {
        int in;
        wfacts f = wfacts_of(c, t->write, &in);
        pis(b, (const int64_t[]){dlt(t->write, c->t_write), dlt(t->member, f.member), dlt(t->ts, f.ts)}, 3);
        c->t_write = t->write;
    } else {
        pis(b, (const int64_t[]){t->write, t->member, t->ts}, 3);
    }
    ps(b, t->tier, t->tiern);
    return 0;
}

static uint64_t chunk_hash(const void *const blob[SEC__COUNT], const size_t len[SEC__COUNT],
                           int fmt)
{
    uint64_t h = chunk_seed[fmt];
    for (int k = 0; k < SEC__COUNT; k++)
        h = XXH3_64bits_withSeed(blob[k], len[k], h);
    return h;
}

int store_ledger_chunk_end(store_ledger *sl, const store_ledger_chunk *c, patron_error *err)
{
    PATRON_ASSERT(c->count[SEC_W] > 0);
    sqlite3_stmt *st = sl->q[Q_CHUNK_PUT];
    const void *blob[SEC__COUNT];
    size_t len[SEC__COUNT];
    for (int k = 0; k < SEC__COUNT; k++) {
        blob[k] = c->sec[k].n ? (const void *)c->sec[k].p : (const void *)"";
        len[k] = c->sec[k].n;
        sqlite3_bind_int64(st, 1 + 2 * k, c->first[k]);
        sqlite3_bind_int64(st, 2 + 2 * k, c->count[k]);
        sqlite3_bind_blob(st, 9 + k, blob[k], (int)len[k], SQLITE_STATIC);
    }
    sqlite3_bind_int64(st, 13, (int64_t)chunk_hash(blob, len, c->fmt));
    int rc = done(sl, st, err, "storing a journal chunk");
    store_bulk_tick(sl->s);
    return rc;
}

/* The four blobs of the chunk row st is on (columns as CHUNK_COLS), checked against
 * its checksum, which tells its format.  The format (1 or 2), or -1 when damaged. */
static int chunk_blobs(sqlite3_stmt *st, const void *blob[SEC__COUNT], size_t len[SEC__COUNT])
{
    for (int k = 0; k < SEC__COUNT; k++) {
        len[k] = (size_t)sqlite3_column_bytes(st, 8 + k);
        blob[k] = sqlite3_column_blob(st, 8 + k);
        if (!blob[k])
            blob[k] = "";
    }
    uint64_t want = (uint64_t)sqlite3_column_int64(st, 12);
    for (int fmt = CHUNK_FMT; fmt >= 1; fmt--)
        if (chunk_hash(blob, len, fmt) == want)
            return fmt;
    return -1;
}

/* What decoding a section of a chunk carries from record to record. */
typedef struct dstate {
    int fmt;
    int64_t seq, write, ts, exp, member;
    /* format 4: the previous write's balance and numeric ref (value, prefix), the
     * previous posting's life; the ref of the write just read when numeric */
    int64_t bal, life;
    uint64_t num;
    size_t pfxn; /* SIZE_MAX: none */
    char pfx[REF_PFX_MAX], ref[REF_PFX_MAX + REF_DIGITS];
} dstate;

/* The state a section's decoding starts from; first: its first record's seq. */
static void dstate_start(dstate *d, int fmt, int64_t first)
{
    d->fmt = fmt;
    d->seq = fmt == 4 ? first - 1 : 0; /* (format 4's records hold no seq) */
    d->write = d->ts = d->exp = d->member = d->bal = d->life = 0;
    d->num = 0;
    d->pfxn = SIZE_MAX;
}

/* That, and for postings, qualification rows and tier rows of format 3 and 4 a reader
 * over the chunk's writes with its own state, and the facts of the write it is on
 * (seq 0: none yet). */
typedef struct dst {
    dstate s;
    rd wr;
    const uint8_t *wstart;
    int64_t w0;
    dstate ws;
    int64_t wseq;
    wfacts wf;
} dst;

/* Section k of the chunk row ch is on (columns as CHUNK_COLS, checksum checked): its
 * record count, a reader over its bytes and the decoding state of its format.  0, or
 * -1 when the chunk is damaged. */
static int section_open(sqlite3_stmt *ch, int k, int64_t *n, rd *r, dst *d)
{
    const void *blob[SEC__COUNT];
    size_t len[SEC__COUNT];
    int fmt = chunk_blobs(ch, blob, len);
    if (fmt < 0)
        return -1;
    *n = sqlite3_column_int64(ch, 2 * k + 1);
    *r = (rd){blob[k], (const uint8_t *)blob[k] + len[k], 0};
    d->w0 = sqlite3_column_int64(ch, 0);
    dstate_start(&d->s, fmt, sqlite3_column_int64(ch, 2 * k));
    dstate_start(&d->ws, fmt, d->w0);
    d->wr = (rd){blob[SEC_W], (const uint8_t *)blob[SEC_W] + len[SEC_W], 0};
    d->wstart = d->wr.p;
    d->wseq = 0;
    d->wf = (wfacts){0, 0, 0, 0};
    return 0;
}

/* A payload of format 3 and 4. */
static void dec_payload(rd *r, store_ledger_write *w)
{
    if (r->p < r->end && *r->p == 1) { /* a packed earn's 9 bytes */
        if (r->end - r->p < 9) {
            r->bad = 1;
            w->payload = "";
            w->payloadn = 0;
            return;
        }
        w->payload = (const char *)r->p;
        w->payloadn = 9;
        r->p += 9;
        return;
    }
    uint64_t n2 = get_u(r);
    if (r->bad || (n2 & 1) || n2 / 2 > (uint64_t)(r->end - r->p)) {
        r->bad = 1;
        w->payload = "";
        w->payloadn = 0;
        return;
    }
    w->payload = (const char *)r->p;
    w->payloadn = (size_t)(n2 / 2);
    r->p += w->payloadn;
}

/* Format 4: a numeric ref into d->ref. */
static void dec_ref4(rd *r, dstate *d, store_ledger_write *w)
{
    uint64_t h = get_u(r);
    size_t digits = (size_t)(h / 2);
    w->ref = "";
    w->refn = 0;
    if (r->bad || digits < 1 || digits > REF_DIGITS || ((h & 1) && d->pfxn == SIZE_MAX)) {
        r->bad = 1;
        return;
    }
    if (!(h & 1)) {
        size_t pn;
        const char *p = get_s(r, &pn);
        if (pn > REF_PFX_MAX) {
            r->bad = 1;
            return;
        }
        memcpy(d->pfx, p, pn);
        d->pfxn = pn;
    }
    d->num += (uint64_t)get_i(r);
    uint64_t v = d->num;
    memcpy(d->ref, d->pfx, d->pfxn);
    for (size_t i = digits; i-- > 0; v /= 10)
        d->ref[d->pfxn + i] = (char)('0' + v % 10);
    if (v != 0) /* more digits than it says */
        r->bad = 1;
    w->ref = d->ref;
    w->refn = d->pfxn + digits;
}

/* Format 4's write record. */
static void dec_write4(rd *r, dstate *d, store_ledger_write *w)
{
    w->seq = ++d->seq;
    uint64_t head = get_u(r);
    w->kind = (int)unzz(head >> 3);
    w->key = "";
    w->keyn = 0;
    if (head & 1)
        w->key = get_s(r, &w->keyn);
    int64_t prev = d->member;
    w->member = d->member = und(d->member, get_i(r));
    w->ts = d->ts = und(d->ts, get_i(r));
    if (head & 4)
        dec_ref4(r, d, w);
    else
        w->ref = get_s(r, &w->refn);
    w->points = get_i(r);
    w->money = get_i(r);
    w->shortfall = head & 2 ? get_i(r) : 0;
    int64_t base = w->member == prev ? d->bal : 0;
    w->balance = d->bal = und(und(get_i(r), w->points), base);
    dec_payload(r, w);
}

static void dec_write(rd *r, dstate *d, store_ledger_write *w)
{
    if (d->fmt == 4) {
        dec_write4(r, d, w);
        return;
    }
    d->seq += get_i(r);
    w->seq = d->seq;
    w->key = get_s(r, &w->keyn);
    w->kind = (int)get_i(r);
    w->member = get_i(r);
    w->ts = get_i(r);
    if (d->fmt >= 2)
        w->ts = d->ts = und(d->ts, w->ts);
    if (d->fmt == 3)
        w->member = d->member = und(d->member, w->member);
    w->ref = get_s(r, &w->refn);
    w->points = get_i(r);
    w->money = get_i(r);
    w->shortfall = get_i(r);
    w->balance = get_i(r);
    if (d->fmt < 3)
        w->payload = get_s(r, &w->payloadn);
    else
        dec_payload(r, w);
}

/* Formats 3 and 4: the facts of write seq, walking the chunk's writes forward to it (a
 * record names a write at or after the one before's; else the walk starts over); zeros
 * and *in 0 when the chunk does not hold it. */
static wfacts dec_wfacts(dst *d, int64_t seq, rd *r, int *in)
{
    if (seq < d->wseq) {
        d->wr.p = d->wstart;
        dstate_start(&d->ws, d->ws.fmt, d->w0);
        d->wseq = 0;
    }
    while (d->wseq < seq && d->wr.p < d->wr.end && !d->wr.bad) {
        store_ledger_write w;
        dec_write(&d->wr, &d->ws, &w);
        d->wseq = w.seq;
        d->wf = (wfacts){w.member, w.ts, w.points, w.money};
    }
    if (d->wr.bad)
        r->bad = 1;
    *in = d->wseq == seq;
    return *in ? d->wf : (wfacts){0, 0, 0, 0};
}

/* Format 4's write delta after a head whose bit 0 is clear (the head is 0). */
static int64_t explicit_write4(rd *r, uint64_t head)
{
    if (head != 0)
        r->bad = 1;
    return get_i(r);
}

static void dec_posting4(rd *r, dst *dd, store_ledger_posting *p)
{
    dstate *d = &dd->s;
    int in;
    p->seq = ++d->seq;
    uint64_t head = get_u(r);
    if (head & 1) { /* implied by its write */
        p->write = d->write = und(d->write, (int64_t)(head >> 3));
        wfacts f = dec_wfacts(dd, p->write, r, &in);
        if (!in)
            r->bad = 1;
        p->member = f.member;
        p->ts = f.ts;
        p->debit = 1;
        p->credit = 0;
        p->amount = f.points;
        p->lot = p->seq;
        switch ((head >> 1) & 3) {
        case 0: p->expires = und(d->exp, get_i(r)); break;
        case 1: p->expires = und(d->exp, (int64_t)((uint64_t)get_i(r) * 86400u)); break;
        case 2: p->expires = und(p->ts, d->life); break;
        default: r->bad = 1; p->expires = 0;
        }
    } else {
        p->write = d->write = und(d->write, explicit_write4(r, head));
        wfacts f = dec_wfacts(dd, p->write, r, &in);
        p->member = und(f.member, get_i(r));
        uint64_t dc = (uint64_t)get_i(r);
        p->debit = dc / 8 > 7 ? -1 : (int)(dc / 8);
        p->credit = (int)(dc % 8);
        p->amount = get_i(r);
        p->lot = und(p->seq, get_i(r));
        p->ts = und(f.ts, get_i(r));
        p->expires = und(d->exp, get_i(r));
    }
    d->exp = p->expires;
    d->life = dlt(p->expires, p->ts);
    p->hash = store_ledger_posting_hash(p);
}

static void dec_posting(rd *r, dst *dd, store_ledger_posting *p)
{
    dstate *d = &dd->s;
    if (d->fmt == 4) {
        dec_posting4(r, dd, p);
        return;
    }
    d->seq += get_i(r);
    p->seq = d->seq;
    if (d->fmt == 1) {
        p->write = get_i(r);
        p->member = get_i(r);
        p->debit = (int)get_i(r);
        p->credit = (int)get_i(r);
        p->amount = get_i(r);
        p->lot = get_i(r);
        p->ts = get_i(r);
        p->expires = get_i(r);
        p->hash = get_u(r);
        return;
    }
    p->write = d->write = und(d->write, get_i(r));
    p->member = get_i(r);
    uint64_t dc = (uint64_t)get_i(r);
    p->debit = dc / 8 > 7 ? -1 : (int)(dc / 8); /* (out of range: an unknown account) */
    p->credit = (int)(dc % 8);
    p->amount = get_i(r);
    p->lot = und(p->seq, get_i(r));
    if (d->fmt == 3) {
        int in;
        wfacts f = dec_wfacts(dd, p->write, r, &in);
        p->member = und(f.member, p->member);
        p->ts = und(f.ts, get_i(r));
        d->exp = und(d->exp, get_i(r));
        p->expires = und(p->ts, d->exp);
    } else {
        p->ts = d->ts = und(d->ts, get_i(r));
        p->expires = d->exp = und(d->exp, get_i(r));
    }
    p->hash = store_ledger_posting_hash(p);
}

static void dec_qual(rd *r, dst *dd, store_ledger_qual *q)
{
    dstate *d = &dd->s;
    int in;
    if (d->fmt == 4) {
        q->seq = ++d->seq;
        uint64_t head = get_u(r);
        int implied = head & 1;
        q->write = d->write = und(d->write, implied ? (int64_t)(head >> 1) : explicit_write4(r, head));
        wfacts f = dec_wfacts(dd, q->write, r, &in);
        if (implied && !in)
            r->bad = 1;
        q->member = implied ? f.member : und(f.member, get_i(r));
        q->ts = implied ? f.ts : und(f.ts, get_i(r));
        q->points = implied ? f.points : und(f.points, get_i(r));
        q->spend = implied ? f.money : und(f.money, get_i(r));
        return;
    }
    d->seq += get_i(r);
    q->seq = d->seq;
    q->write = get_i(r);
    q->member = get_i(r);
    q->ts = get_i(r);
    if (d->fmt >= 2)
        q->write = d->write = und(d->write, q->write);
    if (d->fmt == 2)
        q->ts = d->ts = und(d->ts, q->ts);
    q->points = get_i(r);
    q->spend = get_i(r);
    if (d->fmt == 3) {
        wfacts f = dec_wfacts(dd, q->write, r, &in);
        q->member = und(f.member, q->member);
        q->ts = und(f.ts, q->ts);
        q->points = und(f.points, q->points);
        q->spend = und(f.money, q->spend);
    }
}

static void dec_tier(rd *r, dst *dd, store_ledger_tier *t)
{
    dstate *d = &dd->s;
    if (d->fmt == 4) {
        int in;
        t->seq = ++d->seq;
        t->write = d->write = und(d->write, get_i(r));
        wfacts f = dec_wfacts(dd, t->write, r, &in);
        t->member = und(f.member, get_i(r));
        t->ts = und(f.ts, get_i(r));
    } else {
        d->seq += get_i(r);
        t->seq = d->seq;
        t->write = get_i(r);
        t->member = get_i(r);
        t->ts = get_i(r);
    }
    t->tier = get_s(r, &t->tiern);
}

static int damaged(patron_error *err, int64_t w0)
{
    return err_set(err, PATRON_ESTORE,
                   "ledger: the journal chunk starting at write %lld is damaged (checksum or "
                   "encoding); run 'patron ledger verify'",
                   (long long)w0);
}

int store_ledger_write_get_seq(store_ledger *sl, int64_t seq, store_ledger_write *w,
                               patron_error *err)
{
    sqlite3_stmt *st = sl->q[Q_CHUNK_AT];
    sqlite3_bind_int64(st, 1, seq);
    int r = sqlite3_step(st), rc = 0;
    if (r == SQLITE_ROW) {
        int64_t w0 = sqlite3_column_int64(st, 0), nw = sqlite3_column_int64(st, 1);
        const void *blob[SEC__COUNT];
        size_t len[SEC__COUNT];
        int fmt = seq >= w0 + nw ? 0 : chunk_blobs(st, blob, len);
        if (seq >= w0 + nw) {
            rc = 0;
        } else if (fmt < 0) {
            rc = damaged(err, w0);
        } else {
            sl->got.n = 0;
            /* the blob, then room for a numeric ref (format 4 spells it out) */
            size_t refcap = REF_PFX_MAX + REF_DIGITS;
            if (bb_grow(&sl->got, len[SEC_W] + refcap)) {
                rc = err_set(err, PATRON_ENOMEM, "out of memory");
            } else {
                memcpy(sl->got.p, blob[SEC_W], len[SEC_W]);
                rd d = {sl->got.p, sl->got.p + len[SEC_W], 0};
                dstate s;
                dstate_start(&s, fmt, w0);
                for (int64_t i = 0; i < nw && !d.bad; i++) {
                    dec_write(&d, &s, w);
                    if (w->seq == seq)
                        break;
                }
                rc = d.bad || w->seq != seq ? damaged(err, w0) : 1;
                if (rc == 1 && w->ref == s.ref) {
                    char *ref = (char *)sl->got.p + len[SEC_W];
                    memcpy(ref, s.ref, w->refn);
                    w->ref = ref;
                }
            }
        }
    } else if (r != SQLITE_DONE) {
        rc = fail(sl, err, "reading a journal chunk");
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

int store_ledger_projections_clear(store_ledger *sl, patron_error *err)
{
    return exec(sl, "DELETE FROM ledger_lots; DELETE FROM ledger_balances; DELETE FROM ledger_stock",
                err, "clearing projections");
}

/* Runs a SELECT and hands each row to row(); one helper for every reader. */
typedef int (*row_fn)(sqlite3_stmt *st, void *fn, void *ctx);

static int each(store_ledger *sl, const char *text, row_fn row, void *fn, void *ctx,
                patron_error *err, const char *what)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(sl->db, text, -1, &st, NULL) != SQLITE_OK)
        return fail(sl, err, what);
    int r, rc = PATRON_OK;
    while ((r = sqlite3_step(st)) == SQLITE_ROW)
        if (row(st, fn, ctx) != 0) {
            rc = err_set(err, PATRON_ENOMEM, "out of memory %s", what);
            break;
        }
    if (rc == PATRON_OK && r != SQLITE_DONE)
        rc = fail(sl, err, what);
    sqlite3_finalize(st);
    return rc;
}

static int row_write(sqlite3_stmt *st, void *fn, void *ctx)
{
    store_ledger_write w;
    write_from_row(st, &w);
    return ((store_ledger_write_fn)fn)(ctx, &w);
}

static int row_posting(sqlite3_stmt *st, void *fn, void *ctx)
{
    store_ledger_posting p = {
        sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1), sqlite3_column_int64(st, 2),
        sqlite3_column_int(st, 3),   sqlite3_column_int(st, 4),   sqlite3_column_int64(st, 5),
        sqlite3_column_int64(st, 6), sqlite3_column_int64(st, 7), sqlite3_column_int64(st, 8),
        (uint64_t)sqlite3_column_int64(st, 9)};
    return ((store_ledger_posting_fn)fn)(ctx, &p);
}

static int row_qual(sqlite3_stmt *st, void *fn, void *ctx)
{
    store_ledger_qual q = {sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
                           sqlite3_column_int64(st, 2), sqlite3_column_int64(st, 3),
                           sqlite3_column_int64(st, 4), sqlite3_column_int64(st, 5)};
    return ((store_ledger_qual_fn)fn)(ctx, &q);
}

static int row_tier(sqlite3_stmt *st, void *fn, void *ctx)
{
    store_ledger_tier t = {sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
                           sqlite3_column_int64(st, 2), sqlite3_column_int64(st, 3),
                           (const char *)sqlite3_column_text(st, 4),
                           (size_t)sqlite3_column_bytes(st, 4)};
    return ((store_ledger_tier_fn)fn)(ctx, &t);
}

static int row_lot(sqlite3_stmt *st, void *fn, void *ctx)
{
    store_ledger_lot l = {sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
                          sqlite3_column_int64(st, 2), sqlite3_column_int64(st, 3),
                          sqlite3_column_int64(st, 4)};
    return ((store_ledger_lot_fn)fn)(ctx, &l);
}

static int row_stock(sqlite3_stmt *st, void *fn, void *ctx)
{
    return ((store_ledger_stock_fn)fn)(ctx, (const char *)sqlite3_column_text(st, 0),
                                       (size_t)sqlite3_column_bytes(st, 0),
                                       sqlite3_column_int64(st, 1));
}

typedef void (*dec_fn)(rd *r, dst *d, void *rec);
typedef int (*call_fn)(void *fn, void *ctx, const void *rec);

typedef union anyrec {
    store_ledger_write w;
    store_ledger_posting p;
    store_ledger_qual q;
    store_ledger_tier t;
} anyrec;

static void dec_w(rd *r, dst *d, void *rec) { dec_write(r, &d->s, rec); }
static void dec_p(rd *r, dst *d, void *rec) { dec_posting(r, d, rec); }
static void dec_q(rd *r, dst *d, void *rec) { dec_qual(r, d, rec); }
static void dec_t(rd *r, dst *d, void *rec) { dec_tier(r, d, rec); }
static int call_w(void *fn, void *ctx, const void *rec) { return ((store_ledger_write_fn)fn)(ctx, rec); }
static int call_p(void *fn, void *ctx, const void *rec) { return ((store_ledger_posting_fn)fn)(ctx, rec); }
static int call_q(void *fn, void *ctx, const void *rec) { return ((store_ledger_qual_fn)fn)(ctx, rec); }
static int call_t(void *fn, void *ctx, const void *rec) { return ((store_ledger_tier_fn)fn)(ctx, rec); }

/* The chunks holding records of section k, in order. */
static int chunks_prepare(store_ledger *sl, int k, sqlite3_stmt **ch)
{
    char q[160];
    snprintf(q, sizeof q, "SELECT " CHUNK_COLS " FROM ledger_chunks WHERE n%c > 0 ORDER BY w0",
             "wpqt"[k]);
    return sqlite3_prepare_v2(sl->db, q, -1, ch, NULL) == SQLITE_OK ? 0 : -1;
}

/* Walks the rows of a journal table (text selects seq first, in seq order) merged with
 * the records of section k of every chunk, in seq order. */
static int merged(store_ledger *sl, const char *text, row_fn row, int k, dec_fn dec, call_fn call,
                  void *fn, void *ctx, patron_error *err, const char *what)
{
    sqlite3_stmt *st = NULL, *ch = NULL;
    if (sqlite3_prepare_v2(sl->db, text, -1, &st, NULL) != SQLITE_OK || chunks_prepare(sl, k, &ch)) {
        int rc = fail(sl, err, what);
        sqlite3_finalize(st);
        return rc;
    }
    int rr = sqlite3_step(st), rc_ = sqlite3_step(ch), rc = PATRON_OK;
    anyrec u;
    while (rc == PATRON_OK && (rr == SQLITE_ROW || rc_ == SQLITE_ROW)) {
        if (rr == SQLITE_ROW &&
            (rc_ != SQLITE_ROW || sqlite3_column_int64(st, 0) < sqlite3_column_int64(ch, 2 * k))) {
            if (row(st, fn, ctx) != 0)
                rc = err_set(err, PATRON_ENOMEM, "out of memory %s", what);
            rr = sqlite3_step(st);
            continue;
        }
        int64_t n;
        rd d;
        dst seq;
        if (section_open(ch, k, &n, &d, &seq) != 0) {
            rc = damaged(err, sqlite3_column_int64(ch, 0));
            break;
        }
        for (int64_t i = 0; i < n && rc == PATRON_OK; i++) {
            dec(&d, &seq, &u);
            if (d.bad)
                rc = damaged(err, sqlite3_column_int64(ch, 0));
            else if (call(fn, ctx, &u) != 0)
                rc = err_set(err, PATRON_ENOMEM, "out of memory %s", what);
        }
        rc_ = sqlite3_step(ch);
    }
    if (rc == PATRON_OK && (rr != SQLITE_DONE || rc_ != SQLITE_DONE))
        rc = fail(sl, err, what);
    sqlite3_finalize(st);
    sqlite3_finalize(ch);
    return rc;
}

int store_ledger_writes_each(store_ledger *sl, store_ledger_write_fn fn, void *ctx, patron_error *err)
{
    return merged(sl,
                  "SELECT seq, key, kind, member, ts, ref, points, money, shortfall, balance, payload"
                  " FROM ledger_writes ORDER BY seq",
                  row_write, SEC_W, dec_w, call_w, (void *)fn, ctx, err, "reading ledger writes");
}

int store_ledger_postings_each(store_ledger *sl, store_ledger_posting_fn fn, void *ctx, patron_error *err)
{
    return merged(sl,
                  "SELECT seq, write, member, debit, credit, amount, lot, ts, expires, hash"
                  " FROM ledger_postings ORDER BY seq",
                  row_posting, SEC_P, dec_p, call_p, (void *)fn, ctx, err, "reading ledger postings");
}

int store_ledger_quals_each(store_ledger *sl, store_ledger_qual_fn fn, void *ctx, patron_error *err)
{
    return merged(sl, "SELECT seq, write, member, ts, points, spend FROM ledger_qual ORDER BY seq",
                  row_qual, SEC_Q, dec_q, call_q, (void *)fn, ctx, err, "reading tier qualification");
}

int store_ledger_tiers_each(store_ledger *sl, store_ledger_tier_fn fn, void *ctx, patron_error *err)
{
    return merged(sl, "SELECT seq, write, member, ts, tier FROM ledger_tiers ORDER BY seq", row_tier,
                  SEC_T, dec_t, call_t, (void *)fn, ctx, err, "reading tier changes");
}

int store_ledger_lots_each(store_ledger *sl, store_ledger_lot_fn fn, void *ctx, patron_error *err)
{
    /* Rows, merged by lot id with the lots chunk postings create (a row wins). */
    sqlite3_stmt *st = NULL, *ch = NULL;
    const char *what = "reading lots";
    if (sqlite3_prepare_v2(sl->db, "SELECT lot, member, ts, expires, remaining FROM ledger_lots ORDER BY lot",
                           -1, &st, NULL) != SQLITE_OK ||
        chunks_prepare(sl, SEC_P, &ch)) {
        int rc = fail(sl, err, what);
        sqlite3_finalize(st);
        return rc;
    }
    int rr = sqlite3_step(st), rc_ = sqlite3_step(ch), rc = PATRON_OK;
    while (rc == PATRON_OK && rc_ == SQLITE_ROW) {
        int64_t n;
        rd d;
        dst seq;
        if (section_open(ch, SEC_P, &n, &d, &seq) != 0) {
            rc = damaged(err, sqlite3_column_int64(ch, 0));
            break;
        }
        for (int64_t i = 0; i < n && rc == PATRON_OK; i++) {
            store_ledger_posting p;
            dec_posting(&d, &seq, &p);
            if (d.bad) {
                rc = damaged(err, sqlite3_column_int64(ch, 0));
                break;
            }
            if (p.lot != p.seq || p.credit != 0)
                continue; /* not the credit that created a lot */
            while (rc == PATRON_OK && rr == SQLITE_ROW && sqlite3_column_int64(st, 0) < p.lot) {
                if (row_lot(st, (void *)fn, ctx) != 0)
                    rc = err_set(err, PATRON_ENOMEM, "out of memory %s", what);
                rr = sqlite3_step(st);
            }
            if (rc != PATRON_OK || (rr == SQLITE_ROW && sqlite3_column_int64(st, 0) == p.lot))
                continue; /* its row comes next */
            store_ledger_lot x = {p.lot, p.member, p.ts, p.expires, p.amount};
            if (fn(ctx, &x) != 0)
                rc = err_set(err, PATRON_ENOMEM, "out of memory %s", what);
        }
        rc_ = sqlite3_step(ch);
    }
    while (rc == PATRON_OK && rr == SQLITE_ROW) {
        if (row_lot(st, (void *)fn, ctx) != 0)
            rc = err_set(err, PATRON_ENOMEM, "out of memory %s", what);
        rr = sqlite3_step(st);
    }
    if (rc == PATRON_OK && (rr != SQLITE_DONE || rc_ != SQLITE_DONE))
        rc = fail(sl, err, what);
    sqlite3_finalize(st);
    sqlite3_finalize(ch);
    return rc;
}

/* Balances are Σ remaining of each member's lots: read from the lots (rows and the lots
 * chunks create), summed per member in member order.  (No table is written per batch: a
 * member's row per import was most of an import's ledger cost at M.) */
typedef struct balsum {
    int64_t member, remaining;
} balsum;

typedef struct balctx {
    balsum *v;
    size_t n, cap;
} balctx;

static int bal_lot(void *ctx, const store_ledger_lot *l)
{
    balctx *b = ctx;
    if (MEM_GROW(b->v, b->cap, b->n + 1))
        return -1;
    b->v[b->n++] = (balsum){l->member, l->remaining};
    return 0;
}

static int balsum_cmp(const void *a, const void *b)
{
    int64_t x = ((const balsum *)a)->member, y = ((const balsum *)b)->member;
    return (x > y) - (x < y);
}

int store_ledger_balances_each(store_ledger *sl, store_ledger_balance_fn fn, void *ctx, patron_error *err)
{
    balctx b = {NULL, 0, 0};
    int rc = store_ledger_lots_each(sl, bal_lot, &b, err);
    if (rc == PATRON_OK && b.n > 1)
        qsort(b.v, b.n, sizeof *b.v, balsum_cmp); /* stable enough: sums do not care */
    for (size_t i = 0; i < b.n && rc == PATRON_OK;) {
        int64_t m = b.v[i].member, sum = 0;
        for (; i < b.n && b.v[i].member == m; i++)
            if (__builtin_add_overflow(sum, b.v[i].remaining, &sum))
                rc = err_set(err, PATRON_ESTORE, "member %lld: the lots' points overflow", (long long)m);
        if (rc == PATRON_OK && fn(ctx, m, sum) != 0)
            rc = err_set(err, PATRON_ENOMEM, "out of memory reading balances");
    }
    mem_free(b.v);
    return rc;
}

int store_ledger_stock_each(store_ledger *sl, store_ledger_stock_fn fn, void *ctx, patron_error *err)
{
    return each(sl, "SELECT reward, used FROM ledger_stock ORDER BY reward", row_stock, (void *)fn,
                ctx, err, "reading reward stock");
}

/* Adds the postings of every chunk to the per-account sums (overflow is an error, as
 * SQLite's integer sum() makes it for the table rows). */
static int chunk_sums(store_ledger *sl, int64_t debits[5], int64_t credits[5], patron_error *err)
{
    sqlite3_stmt *ch;
    if (chunks_prepare(sl, SEC_P, &ch))
        return fail(sl, err, "summing accounts");
    int r, rc = PATRON_OK;
    while (rc == PATRON_OK && (r = sqlite3_step(ch)) == SQLITE_ROW) {
        int64_t n;
        rd d;
        dst seq;
        if (section_open(ch, SEC_P, &n, &d, &seq) != 0) {
            rc = damaged(err, sqlite3_column_int64(ch, 0));
            break;
        }
        for (int64_t i = 0; i < n && rc == PATRON_OK; i++) {
            store_ledger_posting p;
            dec_posting(&d, &seq, &p);
            if (d.bad)
                rc = damaged(err, sqlite3_column_int64(ch, 0));
            else if (p.debit < 0 || p.debit > 4 || p.credit < 0 || p.credit > 4)
                rc = err_set(err, PATRON_ESTORE, "ledger: a posting names unknown account %d",
                             p.debit < 0 || p.debit > 4 ? p.debit : p.credit);
            else if (__builtin_add_overflow(debits[p.debit], p.amount, &debits[p.debit]) ||
                     __builtin_add_overflow(credits[p.credit], p.amount, &credits[p.credit]))
                rc = err_set(err, PATRON_ESTORE, "ledger: summing accounts: integer overflow");
        }
    }
    if (rc == PATRON_OK && r != SQLITE_DONE)
        rc = fail(sl, err, "summing accounts");
    sqlite3_finalize(ch);
    return rc;
}

int store_ledger_account_sums(store_ledger *sl, int64_t debits[5], int64_t credits[5],
                              patron_error *err)
{
    for (int k = 0; k < 5; k++)
        debits[k] = credits[k] = 0;
    sqlite3_stmt *st;
    /* Integer sums: SQLite raises "integer overflow" rather than wrapping. */
    if (sqlite3_prepare_v2(sl->db,
                           "SELECT 0, debit, sum(amount) FROM ledger_postings GROUP BY debit"
                           " UNION ALL SELECT 1, credit, sum(amount) FROM ledger_postings GROUP BY credit",
                           -1, &st, NULL) != SQLITE_OK)
        return fail(sl, err, "summing accounts");
    int r, rc = PATRON_OK;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        int side = sqlite3_column_int(st, 0), acct = sqlite3_column_int(st, 1);
        if (acct < 0 || acct > 4) {
            rc = err_set(err, PATRON_ESTORE, "ledger: a posting names unknown account %d", acct);
            break;
        }
        (side ? credits : debits)[acct] = sqlite3_column_int64(st, 2);
    }
    if (rc == PATRON_OK && r != SQLITE_DONE)
        rc = fail(sl, err, "summing accounts");
    sqlite3_finalize(st);
    if (rc == PATRON_OK)
        rc = chunk_sums(sl, debits, credits, err);
    return rc;
}

int store_ledger_integrity(store_ledger *sl, char *msg, size_t cap, patron_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(sl->db, "PRAGMA integrity_check", -1, &st, NULL) != SQLITE_OK)
        return fail(sl, err, "integrity check");
    int r = sqlite3_step(st), ok = -1;
    if (r == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(st, 0);
        ok = t && strcmp(t, "ok") == 0;
        if (msg && cap)
            snprintf(msg, cap, "%s", t ? t : "");
    }
    sqlite3_finalize(st);
    return ok < 0 ? fail(sl, err, "integrity check") : ok;
}

void store_ledger_sizes(store_ledger *sl, int64_t n[5])
{
    static const char q[] =
        "SELECT (SELECT count(*) FROM ledger_writes) + c.w, (SELECT count(*) FROM ledger_postings) + c.p,"
        " (SELECT count(*) FROM ledger_qual) + c.q, (SELECT count(*) FROM ledger_tiers) + c.t,"
        " (SELECT count(*) FROM ledger_lots) + c.p FROM (SELECT coalesce(sum(nw), 0) AS w,"
        " coalesce(sum(np), 0) AS p, coalesce(sum(nq), 0) AS q, coalesce(sum(nt), 0) AS t"
        " FROM ledger_chunks) AS c";
    sqlite3_stmt *st;
    int ok = sqlite3_prepare_v2(sl->db, q, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW;
    for (int k = 0; k < 5; k++)
        n[k] = ok ? sqlite3_column_int64(st, k) : -1;
    sqlite3_finalize(st);
}

int64_t store_ledger_count(store_ledger *sl, const char *table)
{
    static const char *const known[] = {"ledger_writes", "ledger_postings", "ledger_lots",
                                        "ledger_qual", "ledger_tiers", NULL};
    int ok = 0;
    for (const char *const *k = known; *k && !ok; k++)
        ok = strcmp(*k, table) == 0;
    if (!ok)
        return -1;
    char q[96];
    snprintf(q, sizeof q, "SELECT count(*) FROM %s", table);
    sqlite3_stmt *st;
    int64_t n = -1;
    if (sqlite3_prepare_v2(sl->db, q, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}
