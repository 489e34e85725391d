/*
 * store.h -- the durable store behind a narrow interface (SQLite today; a PostgreSQL
 * backend implements the same calls).  No SQLite call appears outside src/store/.
 *
 * Schema (version 6): meta, members, profiles (JSON), profile_chunks and profile_rows
 * (the profile fields the member view reads, as binary records: store_cells.h),
 * event_cells (the same for events, one BLOB per event chunk),
 * dict (string dictionaries),
 * order_chunks and voids (orders and returns as column BLOBs), item_chunks (line items of
 * one import batch as column BLOBs), event_chunks (every other event as column BLOBs)
 * and event_ids (their ids and content hashes), segments and segment_changes; see
 * docs/storage.md.
 * Every write happens inside store_begin()/store_commit(); nothing is acknowledged
 * before the commit.
 */
#ifndef PATRON_STORE_H
#define PATRON_STORE_H

#include "patron/patron.h"
#include "store/store_chunks.h"

#include <stddef.h>
#include <stdint.h>

typedef struct store store;

int store_open(const char *path, store **out, patron_error *err);
void store_close(store *s);

int store_begin(store *s, patron_error *err);
/* store_begin for a bulk import's transaction: SQLite keeps few of its changed pages in
 * memory (they go to the WAL as they are made) until the commit or rollback. */
int store_begin_bulk(store *s, patron_error *err);
/* In a bulk transaction, starts the write-back of what the WAL gained since the last
 * call, every 32 MB (a hint; called after each chunk the store writes, and by the
 * ledger after its journal chunks). */
void store_bulk_tick(store *s);
int store_commit(store *s, patron_error *err);
void store_rollback(store *s);
/* A read snapshot for many lookups (one lock instead of one per statement). */
int store_read_begin(store *s, patron_error *err);
void store_read_end(store *s);

/* Writes (or rewrites) member idx with its whole profile JSON (canonical, as jcanon.h
 * writes it); the profile's cells are computed here and stored at commit (as rows, or
 * folded into chunks for large writes). */
int store_member_put(store *s, uint32_t idx, const char *id, size_t idn, int64_t enrolled_at,
                     const char *profile_json, patron_error *err);
/* Writes the new members first..first+n-1 (ids[k] of lens[k] bytes, enrolled_at[k]),
 * all with the profile JSON profile_json: the same rows as n store_member_put calls,
 * in fewer statements (bulk imports creating members). */
int store_members_put(store *s, uint32_t first, size_t n, const char *const *ids,
                      const uint32_t *lens, const int64_t *enrolled_at, const char *profile_json,
                      patron_error *err);
/* Members are loaded without their profile text: the hash of it (store_profile_hash)
 * stands for it in memory; store_member_profile() reads the text when needed. */
typedef int (*store_member_fn)(void *ctx, uint32_t idx, const char *id, size_t idn,
                               int64_t enrolled_at, uint64_t profile_hash);
int store_members_each(store *s, store_member_fn fn, void *ctx, patron_error *err);
/* The member's profile JSON into *out (caller frees with mem_free). */
int store_member_profile(store *s, uint32_t idx, char **out, patron_error *err);
uint64_t store_profile_hash(const char *profile_json);

int store_dict_put(store *s, int kind, uint32_t code, const char *v, size_t n, patron_error *err);
typedef int (*store_dict_fn)(void *ctx, int kind, uint32_t code, const char *v, size_t n);
int store_dict_each(store *s, store_dict_fn fn, void *ctx, patron_error *err);

typedef struct store_order {
    const char *id;
    size_t idn;
    int64_t member;   /* member index, -1 for a guest sale */
    int64_t ts;
    int64_t amount;   /* money units; negative for a return */
    int kind;         /* 0 order, 1 return */
    int64_t items;    /* line items */
    int64_t units;    /* sum of qty */
    uint64_t hash;    /* content hash */
    int voided;       /* not stored by store_order_put (see store_order_void) */
    uint32_t channel, store; /* dictionary codes (kinds 4 and 5), 0 = none */
} store_order;
/* Adds an order (id copied) to the pending order chunk, written when it holds
 * STORE_ORDER_CHUNK orders and at commit.  member and items are kept as 32-bit. */
int store_order_put(store *s, const store_order *o, patron_error *err);
int store_order_void(store *s, const char *id, size_t idn, patron_error *err);
/* Every order chunk, checksum verified and decoded into columns (store_chunks.h): those
 * of want (STORE_OC_*; with STORE_OC_VALUES, voided[] is set from the voids table), in
 * write order.  The columns are valid during the callback only.  fn returns 0, 2 (the
 * caller's model no longer matches the store: reported as such), a negative patron
 * status (passed on) or another value (out of memory).  A chunk that fails to decode is
 * reported as "order chunk N is damaged". */
typedef int (*store_ochunk_fn)(void *ctx, const store_orders *c);
int store_order_chunks_each(store *s, int want, store_ochunk_fn fn, void *ctx,
                            patron_error *err);

/* Writes line items: c's columns (store_chunks.h) as chunks of up to STORE_ITEM_CHUNK
 * items, cutting a run at a chunk boundary when c holds more.  Inside a transaction;
 * the columns are only read. */
int store_items_put(store *s, const store_items *c, patron_error *err);

/* Events other than orders and returns.  Each id (with its content hash) goes to an
 * index for exact duplicate detection; the event itself is kept for a column chunk
 * written inside the transaction (every 65,536 events and at commit).  type is one of
 * store_event_type_name(); body is the event's canonical JSON. */
int store_event_put(store *s, const char *id, const char *type, int64_t member, int64_t ts,
                    uint64_t hash, const char *body, patron_error *err);
/* 1 when an event with that id is stored (its hash in *hash), 0 when not. */
int store_event_get(store *s, const char *id, uint64_t *hash, patron_error *err);
int64_t store_event_count(store *s);
/* Event types as chunks store them: a small code per name (-1 / NULL when unknown). */
int store_event_type_code(const char *type);
const char *store_event_type_name(int code);
/* Every member's profile cells (the record of store_cells.h, computed from the JSON
 * when the member was written), in index order; members never written are skipped.
 * The record is valid during the callback only.  fn returns 0, a negative patron
 * status (passed on) or > 0 (out of memory). */
typedef int (*store_pcells_fn)(void *ctx, uint32_t idx, const unsigned char *rec, size_t n);
int store_profile_cells_each(store *s, store_pcells_fn fn, void *ctx, patron_error *err);
/* Every line-item chunk, checksum verified and decoded into columns (store_chunks.h), in
 * write order.  The columns are valid during the callback only.  fn returns 0, a
 * negative patron status (passed on) or > 0 (out of memory).  A chunk that fails to
 * decode is reported as "line-item chunk N is damaged". */
typedef int (*store_items_fn)(void *ctx, const store_items *c);
int store_items_each(store *s, store_items_fn fn, void *ctx, patron_error *err);
/* A BLOB handed to a callback (segment changes). */
typedef int (*store_blob_fn)(void *ctx, const unsigned char *data, size_t n);
/* One chunk of stored events, decoded into aligned columns: event i has ts[i], hash[i],
 * member[i] (-1 when none), type[i] (a store_event_type_code), its id at
 * ids[id_off[i]..id_off[i+1]) and its canonical JSON at bodies[body_off[i]..body_off[i+1])
 * (neither NUL-terminated).  Valid during the callback only. */
typedef struct store_echunk {
    uint32_t n;
    int64_t *ts;
    uint64_t *hash;
    int32_t *member;
    uint8_t *type;
    size_t *id_off, *body_off;
    const char *ids, *bodies;
    int64_t id; /* the chunk's id */
} store_echunk;
/* Every event chunk, checksum verified, in write order (within a chunk: the order the
 * events were written).  fn returns 0, a negative patron status (passed on) or > 0 (out
 * of memory). */
typedef int (*store_echunk_fn)(void *ctx, const store_echunk *c);
int store_event_chunks_each(store *s, store_echunk_fn fn, void *ctx, patron_error *err);
/* The cells of one event chunk (store_cells.h): event i has ts[i], member[i] (-1 when
 * none), type[i] and its cells at rec[off[i]..off[i+1]).  Valid during the callback. */
typedef struct store_ecchunk {
    uint32_t n;
    int64_t *ts;
    int32_t *member;
    uint8_t *type;
    uint32_t *off;
    const unsigned char *rec;
} store_ecchunk;
/* Every event chunk's cells, checksum verified, in write order (the order of
 * store_event_chunks_each); the member view reads these, not the bodies.  fn returns
 * as for store_event_chunks_each. */
typedef int (*store_ecells_fn)(void *ctx, const store_ecchunk *c);
int store_event_cells_each(store *s, store_ecells_fn fn, void *ctx, patron_error *err);
/* Segments: a named rule (kind 0) or a static member list (kind 1); members is a
 * portable roaring bitmap of member indexes as of as_of. */
typedef struct store_segment {
    const char *name;
    int kind;
    const char *rule;
    int64_t created_at, as_of;
    const void *members;
    size_t members_n;
    int64_t snap_change; /* members is the set after change row snap_change (0: none) */
} store_segment;
int store_segment_put(store *s, const store_segment *g, patron_error *err);
/* Moves a segment's as_of (its members unchanged). */
int store_segment_as_of(store *s, const char *name, int64_t as_of, patron_error *err);
/* Drops the segment and its change history. */
int store_segment_drop(store *s, const char *name, patron_error *err);
typedef int (*store_segment_fn)(void *ctx, const store_segment *g);
int store_segments_each(store *s, store_segment_fn fn, void *ctx, patron_error *err);
/* A run of enters and exits of one segment between ts_first and ts_last (a blob written
 * by the segments module: "SCH1", n, ts[n], member[n], enter[n], checksum). */
int store_segment_change_put(store *s, const char *name, int64_t ts_first, int64_t ts_last,
                             const void *data, size_t n, int64_t *id, patron_error *err);
/* The change blobs of a segment written after change row `after`, in write order. */
int store_segment_changes_after(store *s, const char *name, int64_t after, store_blob_fn fn,
                                void *ctx, patron_error *err);
/* The change blobs of a segment with ts_last >= since, in write order. */
int store_segment_changes_each(store *s, const char *name, int64_t since, store_blob_fn fn,
                               void *ctx, patron_error *err);
/* Sizes for reserving memory before a load (0 when unknown). */
int64_t store_member_count(store *s);
int64_t store_order_count(store *s);

/* The SQLite connection, for the backend's other files (src/store/ only). */
struct sqlite3 *store_sqlite(store *s);

/* The data version: a counter every committed import bumps (inside its transaction), so
 * that what was derived from the data (model runs) can tell whether it is stale. */
int store_data_bump(store *s, patron_error *err);
int store_data_version(store *s, int64_t *out, patron_error *err);

/* A small setting in meta: get returns 1 (found, value in out), 0 (missing) or a patron
 * status; put replaces it (inside the caller's transaction when there is one). */
int store_meta_get(store *s, const char *key, char *out, size_t cap, patron_error *err);
int store_meta_put(store *s, const char *key, const char *value, patron_error *err);

#endif
