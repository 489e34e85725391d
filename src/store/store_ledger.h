/*
 * store_ledger.h -- the loyalty ledger's tables in the store (SQLite calls stay in
 * src/store/).  The ledger engine (src/loyalty/ledger.c) decides what to write; this
 * file only stores and reads rows.
 *
 * Tables (created on first use with CREATE TABLE IF NOT EXISTS, outside the schema
 * migrations list):
 *   ledger_meta      key -> integer (`token`: changes with every ledger commit, so a
 *                    process can tell whether its in-memory copy is current)
 *   ledger_programs  versioned program configurations (canonical JSON)
 *   ledger_writes    one row per acknowledged write: its idempotency key (unique), kind,
 *                    member, time, reference, result and the canonical payload
 *   ledger_postings  append-only double-entry journal lines: one account debited, one
 *                    credited, amount > 0, the lot the member side touches, a hash of the
 *                    row; never updated or deleted
 *   ledger_qual      points earned / money spent for tier qualification (append-only)
 *   ledger_tiers     tier changes (append-only)
 *   ledger_chunks    the journal rows of one large write (an import batch) packed into
 *                    one checksummed blob: its writes, postings, qualification rows and
 *                    tier changes, each a contiguous run of sequence numbers
 *                    (append-only too); the readers below merge them with the rows of
 *                    the tables above, in sequence order, so callers never see the
 *                    difference.  Keys of chunk writes are not in the UNIQUE index of
 *                    ledger_writes: the ledger checks keys in memory under the write lock.
 *   ledger_lots, ledger_stock   projections: rebuildable from the rows (balances are
 *                    derived from the lots; ledger_balances is no longer written)
 *                    above, rewritten in place.  A lot created by a posting of a chunk
 *                    needs no ledger_lots row while its remaining points equal that
 *                    credit: the lot reader derives it from the posting; a row, once
 *                    written, takes precedence.
 * Every write runs inside the caller's transaction (store_begin or a savepoint).
 */
#ifndef PATRON_STORE_LEDGER_H
#define PATRON_STORE_LEDGER_H

#include "store/store.h"

#include <stddef.h>
#include <stdint.h>

typedef struct store_ledger store_ledger;

/* Creates the tables if needed and prepares statements.  Owned by the caller; release
 * with store_ledger_free() before the store is closed. */
int store_ledger_open(store *s, store_ledger **out, patron_error *err);
void store_ledger_free(store_ledger *sl);

/* 1 when a transaction is open on the connection. */
int store_ledger_in_txn(store_ledger *sl);
/* PRAGMA synchronous=FULL (full=1) or NORMAL; only outside a transaction. */
int store_ledger_synchronous(store_ledger *sl, int full, patron_error *err);
int store_ledger_savepoint(store_ledger *sl, patron_error *err);
int store_ledger_release(store_ledger *sl, patron_error *err);
void store_ledger_rollback_to(store_ledger *sl);

int store_ledger_token_get(store_ledger *sl, uint64_t *token, patron_error *err);
int store_ledger_token_set(store_ledger *sl, uint64_t token, patron_error *err);

/* Stores a program version; *version receives its number. */
int store_ledger_program_put(store_ledger *sl, int64_t applied_at, uint64_t hash,
                             const char *body, int64_t *version, patron_error *err);
/* The latest program: 1 with *version and *body (caller frees with mem_free), 0 when
 * none was ever applied. */
int store_ledger_program_latest(store_ledger *sl, int64_t *version, int64_t *applied_at,
                                char **body, patron_error *err);

typedef struct store_ledger_write {
    int64_t seq;
    const char *key;
    size_t keyn;
    int kind;
    int64_t member, ts;
    const char *ref;
    size_t refn;
    int64_t points, money, shortfall, balance;
    const char *payload;
    size_t payloadn;
} store_ledger_write;

typedef struct store_ledger_posting {
    int64_t seq, write, member;
    int debit, credit; /* accounts: 0 member, 1 issued, 2 redeemed, 3 expired, 4 adjusted */
    int64_t amount, lot, ts, expires;
    uint64_t hash;
} store_ledger_posting;
/* The hash a posting row keeps (its fields; hash itself not read).  Postings in chunks
 * of format 2 are covered by the chunk's checksum and read back with this hash. */
uint64_t store_ledger_posting_hash(const store_ledger_posting *p);

typedef struct store_ledger_qual {
    int64_t seq, write, member, ts, points, spend;
} store_ledger_qual;

typedef struct store_ledger_tier {
    int64_t seq, write, member, ts;
    const char *tier;
    size_t tiern;
} store_ledger_tier;

typedef struct store_ledger_lot {
    int64_t lot, member, ts, expires, remaining;
} store_ledger_lot;

int store_ledger_write_put(store_ledger *sl, const store_ledger_write *w, patron_error *err);
/* Looks a key up: 1 and *w (strings valid until the next call) when stored, 0 when not.
 * Writes stored in chunks are found by their sequence number instead (below). */
int store_ledger_write_get(store_ledger *sl, const char *key, size_t keyn,
                           store_ledger_write *w, patron_error *err);
/* The write with that sequence number, from a chunk: 1 and *w (strings valid until the
 * next call), 0 when no chunk holds it. */
int store_ledger_write_get_seq(store_ledger *sl, int64_t seq, store_ledger_write *w,
                               patron_error *err);

/* A chunk is built in a store_ledger_chunk by chunk_begin and the add calls (each kind
 * in increasing seq order, seqs contiguous per kind), and stored by chunk_end in the
 * caller's transaction.  Building touches no store, so it may run on another thread
 * than the one storing (one chunk object per thread).  The add calls copy what they are
 * given; they fail only when out of memory. */
typedef struct store_ledger_chunk store_ledger_chunk;
/* fmt: the chunk format to write, 0 for the current one (4); 1 to 3 are earlier
 * formats, still read (and written for tests).  Formats 3 and 4 store a posting's, a
 * qualification row's and (4) a tier row's fields as deltas from those of their write
 * when the chunk holds it, and format 4 stores an earn's posting and qualification row
 * as a byte or two when they follow from their write: add a chunk's writes before its
 * postings, qualification rows and tier rows. */
store_ledger_chunk *store_ledger_chunk_new(int fmt);
void store_ledger_chunk_free(store_ledger_chunk *c);
void store_ledger_chunk_begin(store_ledger_chunk *c);
int store_ledger_chunk_write(store_ledger_chunk *c, const store_ledger_write *w);
int store_ledger_chunk_posting(store_ledger_chunk *c, const store_ledger_posting *p);
int store_ledger_chunk_qual(store_ledger_chunk *c, const store_ledger_qual *q);
int store_ledger_chunk_tier(store_ledger_chunk *c, const store_ledger_tier *t);
int store_ledger_chunk_end(store_ledger *sl, const store_ledger_chunk *c, patron_error *err);
int store_ledger_posting_put(store_ledger *sl, const store_ledger_posting *p, patron_error *err);
int store_ledger_qual_put(store_ledger *sl, const store_ledger_qual *q, patron_error *err);
int store_ledger_tier_put(store_ledger *sl, const store_ledger_tier *t, patron_error *err);
/* Projections: insert or replace. */
int store_ledger_lot_put(store_ledger *sl, const store_ledger_lot *l, patron_error *err);
int store_ledger_stock_put(store_ledger *sl, const char *reward, size_t n, int64_t used,
                           patron_error *err);
/* Empties the projection tables (inside a transaction: for rebuilds). */
int store_ledger_projections_clear(store_ledger *sl, patron_error *err);

/* Readers, in seq (or key) order.  A callback returning non-zero stops the walk; the
 * reader then returns PATRON_ENOMEM (callbacks fail only when out of memory). */
typedef int (*store_ledger_write_fn)(void *ctx, const store_ledger_write *w);
typedef int (*store_ledger_posting_fn)(void *ctx, const store_ledger_posting *p);
typedef int (*store_ledger_qual_fn)(void *ctx, const store_ledger_qual *q);
typedef int (*store_ledger_tier_fn)(void *ctx, const store_ledger_tier *t);
typedef int (*store_ledger_lot_fn)(void *ctx, const store_ledger_lot *l);
typedef int (*store_ledger_balance_fn)(void *ctx, int64_t member, int64_t balance);
typedef int (*store_ledger_stock_fn)(void *ctx, const char *reward, size_t n, int64_t used);
int store_ledger_writes_each(store_ledger *sl, store_ledger_write_fn fn, void *ctx, patron_error *err);
int store_ledger_postings_each(store_ledger *sl, store_ledger_posting_fn fn, void *ctx, patron_error *err);
int store_ledger_quals_each(store_ledger *sl, store_ledger_qual_fn fn, void *ctx, patron_error *err);
int store_ledger_tiers_each(store_ledger *sl, store_ledger_tier_fn fn, void *ctx, patron_error *err);
int store_ledger_lots_each(store_ledger *sl, store_ledger_lot_fn fn, void *ctx, patron_error *err);
/* Each member with lots and the Σ of their remaining points, in member order (derived
 * from the lots projection; the ledger_balances table is no longer written). */
int store_ledger_balances_each(store_ledger *sl, store_ledger_balance_fn fn, void *ctx, patron_error *err);
int store_ledger_stock_each(store_ledger *sl, store_ledger_stock_fn fn, void *ctx, patron_error *err);

/* Σ amount debited and credited per account (0..4), computed by SQL over the journal. */
int store_ledger_account_sums(store_ledger *sl, int64_t debits[5], int64_t credits[5],
                              patron_error *err);
/* PRAGMA integrity_check: 1 when the database reports "ok", 0 otherwise (the first
 * problem in msg), negative on failure to run it. */
int store_ledger_integrity(store_ledger *sl, char *msg, size_t cap, patron_error *err);
/* The journal's records, rows and chunks together: writes, postings, qualification
 * rows, tier changes, and at most how many lots (lot rows + chunk postings).  For sizing
 * what a load fills; -1 each on failure. */
void store_ledger_sizes(store_ledger *sl, int64_t n[5]);
/* Rows of one journal table (for reports; records packed in chunks are not counted). */
int64_t store_ledger_count(store_ledger *sl, const char *table);

#endif
