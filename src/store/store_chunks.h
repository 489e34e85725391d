/*
 * store_chunks.h -- the byte formats of the order and line-item chunks, in one place.
 *
 * Orders and line items are stored as column chunks (DESIGN §2.6): one BLOB per up to
 * STORE_ORDER_CHUNK orders or STORE_ITEM_CHUNK items.  This file turns columns into a
 * chunk and a chunk back into columns; store.c only moves the BLOBs in and out of
 * SQLite, and the importer and the member view see columns, never bytes.
 *
 * Formats written: "PIC2" (line items) and "POC3" (orders): fixed header with the byte
 * size of every column, raw 64-bit hashes, the other columns as LEB128 varints
 * (zigzag for signed values, deltas for timestamps and member indexes, money divided
 * by a per-chunk unit, order ids front-coded), and XXH3-64 of everything before it.
 * Formats read as well: "PIC1", "POC1" and "POC2" (docs/storage.md lists all five).
 *
 * Decoding never trusts the bytes: every varint read is bounded by its column, every
 * column must end exactly where the header says, lengths and value ranges are checked,
 * and a chunk that fails any check is refused whole (the caller reports it as damaged).
 */
#ifndef PATRON_STORE_CHUNKS_H
#define PATRON_STORE_CHUNKS_H

#include "store/store_cells.h" /* store_buf */

#include <stddef.h>
#include <stdint.h>

#define STORE_ITEM_CHUNK  65536 /* items per line-item chunk, at most */
#define STORE_ORDER_CHUNK 65536 /* orders per order chunk, at most */

/*
 * Line items as columns.  Items come in runs: the items of one order are adjacent, and
 * run r is the next run_len[r] items, all of the order whose id hashes (XXH3-64) to
 * run_hash[r].  Two runs in a row may have the same hash (nothing merges them).  sku,
 * category and brand are dictionary codes (0 = no value).  All pointers are borrowed.
 */
typedef struct store_items {
    uint32_t n;    /* items */
    uint32_t runs; /* runs; each run_len[r] >= 1 and they add up to n */
    const uint64_t *run_hash;
    const uint32_t *run_len;
    const uint32_t *sku, *category, *brand;
    const int32_t *qty;
    const int64_t *price; /* 1/10000 currency units */
} store_items;

/*
 * Orders and returns as columns: order i has ts[i], amount[i] (1/10000 currency units,
 * negative for a return), units[i], hash[i] (content hash), member[i] (member index,
 * -1 = guest), items[i], kind[i] (0 order, 1 return), channel[i] and store[i]
 * (dictionary codes, 0 = none) and its id at ids[id_off[i]..id_off[i+1]).  voided is
 * filled by the store when it hands out a chunk (from the voids table; the chunk does
 * not hold it) and ignored when encoding.  All pointers are borrowed.
 */
typedef struct store_orders {
    uint32_t n;
    const int64_t *ts, *amount, *units;
    const uint64_t *hash;
    const int32_t *member, *items;
    const uint8_t *kind;
    const uint32_t *channel, *store;
    const size_t *id_off; /* n + 1 offsets */
    const char *ids;
    const uint8_t *voided;
} store_orders;

/* Appends one "PIC2" chunk holding c (c->n <= STORE_ITEM_CHUNK, runs as documented
 * above: a broken invariant, not input).  0, or -1 when out of memory. */
int store_items_encode(const store_items *c, store_buf *out);
/* Appends one "POC3" chunk holding c (c->n <= STORE_ORDER_CHUNK).  0, -1 when out of
 * memory, -2 when a column would pass 4 GB (ids far beyond any real order id). */
int store_orders_encode(const store_orders *c, store_buf *out);

/* Decoded columns of one chunk in arrays that this struct owns and reuses from chunk to
 * chunk (zero it to start; store_*_dec_release frees the arrays).  After a successful
 * decode, .c points into them until the next decode or release. */
typedef struct store_items_dec {
    store_items c;
    uint64_t *run_hash;
    uint32_t *run_len, *sku, *category, *brand;
    int32_t *qty;
    int64_t *price;
    size_t cap, cap_runs;
} store_items_dec;

typedef struct store_orders_dec {
    store_orders c;
    int64_t *ts, *amount, *units;
    uint64_t *hash;
    int32_t *member, *items;
    uint8_t *kind, *voided;
    uint32_t *channel, *store;
    size_t *id_off;
    char *ids;
    size_t cap, cap_ids;
} store_orders_dec;

/* Outcome of a decode. */
enum { STORE_CHUNK_OK = 0, STORE_CHUNK_DAMAGED = 1, STORE_CHUNK_NOMEM = -1 };

/* Decodes the line-item chunk b[0..len) ("PIC1" or "PIC2", checksum included) into d.
 * STORE_CHUNK_OK; STORE_CHUNK_DAMAGED with *why naming the first check that failed (a
 * static string: "checksum", "header", "runs", a column name...); STORE_CHUNK_NOMEM. */
int store_items_decode(const unsigned char *b, size_t len, store_items_dec *d, const char **why);
void store_items_dec_release(store_items_dec *d);

/* Columns of an order chunk to decode (hash and kind always come: they are copied, not
 * decoded).  A pass that needs only the ids, or only the values, skips the varints of
 * the others: they are neither read nor checked. */
enum {
    STORE_OC_VALUES = 1, /* ts, amount, units, member, items, channel, store */
    STORE_OC_IDS = 2,    /* id_off, ids */
    STORE_OC_ALL = 3
};

/* The same for an order chunk ("POC1", "POC2" or "POC3"), the columns of want
 * (STORE_OC_*) at least: the others may be left unset, and id_off and ids are NULL when
 * not decoded.  d->c.voided is set to an array of n zeros for the caller to fill.  The
 * ids of "POC1" and "POC2" point into b. */
int store_orders_decode(const unsigned char *b, size_t len, int want, store_orders_dec *d,
                        const char **why);
void store_orders_dec_release(store_orders_dec *d);

#endif
