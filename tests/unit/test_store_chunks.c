/*
 * test_store_chunks.c -- the order and line-item chunk formats (src/store/store_chunks.c).
 *
 * Columns with random and edge values (int64 limits, negative quantities and amounts,
 * code 0 and the largest codes, empty and binary ids, timestamps going backwards) are
 * encoded and decoded back exactly.  The formats of earlier versions ("PIC1", "POC1",
 * "POC2"; their encoders are kept here, test-only) decode to the same columns.  Every
 * truncation of a chunk, and single-byte changes with and without a matching checksum,
 * are refused or decoded without reading outside the chunk (each case gets a buffer of
 * its exact size, for AddressSanitizer).  Through the store: a put larger than a chunk
 * is cut into chunks and reads back whole.  A database whose chunks are rewritten into
 * the old formats loads the same model and member view as the one written now, also
 * after a further import adds chunks in the new formats beside them, and a damaged
 * chunk is reported by number.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/db.h"
#include "ingest/generate.h"
#include "members/view.h"
#include "store/store.h"
#include "store/store_chunks.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

static char dir[256];
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

/* A value of one of several magnitudes, so that every varint length shows up. */
static uint64_t rnd_mag(void)
{
    unsigned bits = (unsigned)(rnd() % 65);
    return bits == 64 ? rnd() : rnd() & ((1ull << bits) - 1);
}

/* ---- columns owned by the test ------------------------------------------------------ */

typedef struct items_cols {
    store_items c;
    uint64_t *run_hash;
    uint32_t *run_len, *sku, *cat, *brand;
    int32_t *qty;
    int64_t *price;
} items_cols;

static void items_alloc(items_cols *t, uint32_t n)
{
    size_t m = n ? n : 1;
    t->run_hash = calloc(m, 8);
    t->run_len = calloc(m, 4);
    t->sku = calloc(m, 4);
    t->cat = calloc(m, 4);
    t->brand = calloc(m, 4);
    t->qty = calloc(m, 4);
    t->price = calloc(m, 8);
    t->c = (store_items){n, 0, t->run_hash, t->run_len, t->sku, t->cat, t->brand, t->qty, t->price};
}

static void items_free(items_cols *t)
{
    free(t->run_hash);
    free(t->run_len);
    free(t->sku);
    free(t->cat);
    free(t->brand);
    free(t->qty);
    free(t->price);
}

static const uint32_t code_edges[] = {
    0, 1, 127, 128, 16383, 16384, 2097151, 2097152, UINT32_MAX - 1, UINT32_MAX};
static const int32_t qty_edges[] = {0,   1,   -1,        63,        64,
                                    -64, -65, INT32_MAX, INT32_MIN, INT32_MIN + 1};
static const int64_t money_edges[] = {0,
                                      1,
                                      -1,
                                      100,
                                      -100,
                                      10000,
                                      -10000,
                                      INT64_MAX,
                                      INT64_MIN,
                                      INT64_MAX - 1,
                                      INT64_MIN + 1,
                                      INT64_MAX / 10000 * 10000,
                                      INT64_MIN / 10000 * 10000};
#define N_OF(a) (sizeof(a) / sizeof(a)[0])

/* n items in runs of random length; mode 0: every kind of value, 1: prices in cents,
 * 2: whole prices (the largest unit), 3: small values only. */
static void items_fill(items_cols *t, uint32_t n, int mode)
{
    items_alloc(t, n);
    uint32_t runs = 0;
    for (uint32_t i = 0; i < n;) {
        uint32_t len = 1 + (uint32_t)(rnd() % (rnd() % 4 == 0 ? 40 : 6));
        if (len > n - i) len = n - i;
        t->run_hash[runs] = rnd() % 8 == 0 && runs ? t->run_hash[runs - 1] : rnd();
        t->run_len[runs++] = len;
        i += len;
    }
    t->c.runs = runs;
    for (uint32_t i = 0; i < n; i++) {
        int edge = mode == 0 && rnd() % 4 == 0;
        t->sku[i] = edge ? code_edges[rnd() % N_OF(code_edges)] : (uint32_t)(rnd() % 5000);
        t->cat[i] = edge ? code_edges[rnd() % N_OF(code_edges)] : (uint32_t)(rnd() % 20);
        t->brand[i] = mode == 0 ? (uint32_t)rnd_mag() : (uint32_t)(rnd() % 60);
        t->qty[i] = edge ? qty_edges[rnd() % N_OF(qty_edges)] : (int32_t)(rnd() % 9) - 2;
        switch (mode) {
        case 0:
            t->price[i] = edge ? money_edges[rnd() % N_OF(money_edges)] : (int64_t)rnd_mag();
            break;
        case 1:
            t->price[i] = (int64_t)(rnd() % 100000) * 100 - 1000000;
            break;
        case 2:
            t->price[i] = (int64_t)(rnd() % 1000) * 10000;
            break;
        default:
            t->price[i] = (int64_t)(rnd() % 100);
            break;
        }
    }
}

static void items_equal(const store_items *a, const store_items *b)
{
    assert_int_equal(a->n, b->n);
    assert_int_equal(a->runs, b->runs);
    size_t n = a->n, r = a->runs;
    if (r) {
        assert_memory_equal(a->run_hash, b->run_hash, 8 * r);
        assert_memory_equal(a->run_len, b->run_len, 4 * r);
    }
    if (n) {
        assert_memory_equal(a->sku, b->sku, 4 * n);
        assert_memory_equal(a->category, b->category, 4 * n);
        assert_memory_equal(a->brand, b->brand, 4 * n);
        assert_memory_equal(a->qty, b->qty, 4 * n);
        assert_memory_equal(a->price, b->price, 8 * n);
    }
}

typedef struct orders_cols {
    store_orders c;
    int64_t *ts, *amount, *units;
    uint64_t *hash;
    int32_t *member, *items;
    uint8_t *kind;
    uint32_t *channel, *store;
    size_t *id_off;
    char *ids;
} orders_cols;

static const char *const id_edges[] = {"",  "O000000001", "O000000002", "O0000000", "O00000000100",
                                       "x", "",           "",           "\xff\xfe", "O000000002"};

/* n orders; mode 0: every kind of value, 1: realistic (sorted members, ids counting). */
static void orders_fill(orders_cols *t, uint32_t n, int mode)
{
    size_t m = n ? n : 1;
    t->ts = calloc(m, 8);
    t->amount = calloc(m, 8);
    t->units = calloc(m, 8);
    t->hash = calloc(m, 8);
    t->member = calloc(m, 4);
    t->items = calloc(m, 4);
    t->kind = calloc(m, 1);
    t->channel = calloc(m, 4);
    t->store = calloc(m, 4);
    t->id_off = calloc(m + 1, sizeof(size_t));
    size_t cap = 64 * m + 1024, len = 0;
    t->ids = malloc(cap);
    int64_t ts = 1700000000;
    int32_t member = 0;
    for (uint32_t i = 0; i < n; i++) {
        int edge = mode == 0 && rnd() % 3 == 0;
        if (edge) {
            ts = money_edges[rnd() % N_OF(money_edges)];
        } else {
            /* mostly forward, sometimes back (the next member's first order); modulo
             * 2^64 after an edge value */
            uint64_t step = rnd() % 5 == 0 ? 0 - rnd() % 50000000 : rnd() % 3000000;
            ts = (int64_t)((uint64_t)ts + step);
        }
        t->ts[i] = ts;
        t->amount[i] = edge ? money_edges[rnd() % N_OF(money_edges)]
                            : (mode ? (int64_t)(rnd() % 50000) * 100 - 200000 : (int64_t)rnd_mag());
        t->units[i] = edge ? money_edges[rnd() % N_OF(money_edges)] : (int64_t)(rnd() % 30) - 3;
        t->hash[i] = rnd();
        if (edge)
            member = (int32_t)qty_edges[rnd() % N_OF(qty_edges)];
        else if (rnd() % 4 == 0)
            member = rnd() % 10 == 0 ? -1 : (int32_t)(rnd() % 1000000);
        t->member[i] = member;
        t->items[i] = edge ? qty_edges[rnd() % N_OF(qty_edges)] : (int32_t)(rnd() % 12);
        t->kind[i] = edge ? (uint8_t)rnd() : (uint8_t)(rnd() % 8 == 0);
        t->channel[i] = edge ? code_edges[rnd() % N_OF(code_edges)] : (uint32_t)(rnd() % 4);
        t->store[i] = edge ? code_edges[rnd() % N_OF(code_edges)] : (uint32_t)(rnd() % 50);
        char id[400];
        size_t idn;
        if (mode == 0 && rnd() % 4 == 0) {
            const char *e = id_edges[rnd() % N_OF(id_edges)];
            idn = strlen(e);
            memcpy(id, e, idn);
        } else if (mode == 0 && rnd() % 8 == 0) {
            idn = (size_t)(rnd() % 300); /* long, with NUL bytes */
            for (size_t k = 0; k < idn; k++)
                id[k] = (char)(rnd() % 4);
        } else {
            idn = (size_t)snprintf(id, sizeof id, "O%09u", 1000 + i);
        }
        memcpy(t->ids + len, id, idn);
        len += idn;
        t->id_off[i + 1] = len;
    }
    t->c = (store_orders){n,       t->ts,      t->amount, t->units,  t->hash, t->member, t->items,
                          t->kind, t->channel, t->store,  t->id_off, t->ids,  NULL};
}

static void orders_free(orders_cols *t)
{
    free(t->ts);
    free(t->amount);
    free(t->units);
    free(t->hash);
    free(t->member);
    free(t->items);
    free(t->kind);
    free(t->channel);
    free(t->store);
    free(t->id_off);
    free(t->ids);
}

static void orders_equal(const store_orders *a, const store_orders *b, int with_codes)
{
    assert_int_equal(a->n, b->n);
    size_t n = a->n;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(a->ts[i], b->ts[i]);
        assert_int_equal(a->amount[i], b->amount[i]);
        assert_int_equal(a->units[i], b->units[i]);
        assert_int_equal(a->hash[i], b->hash[i]);
        assert_int_equal(a->member[i], b->member[i]);
        assert_int_equal(a->items[i], b->items[i]);
        assert_int_equal(a->kind[i], b->kind[i]);
        assert_int_equal(b->channel[i], with_codes ? a->channel[i] : 0);
        assert_int_equal(b->store[i], with_codes ? a->store[i] : 0);
        size_t la = a->id_off[i + 1] - a->id_off[i], lb = b->id_off[i + 1] - b->id_off[i];
        assert_int_equal(la, lb);
        if (la) assert_memory_equal(a->ids + a->id_off[i], b->ids + b->id_off[i], la);
    }
}

/* ---- the formats of earlier versions (what they wrote, byte for byte) --------------- */

static void buf_put(store_buf *b, const void *p, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2;
        b->p = realloc(b->p, b->cap);
    }
    if (n) memcpy(b->p + b->n, p, n);
    b->n += n;
}

static void buf_sum(store_buf *b)
{
    uint64_t sum = XXH3_64bits(b->p, b->n);
    buf_put(b, &sum, 8);
}

static void pic1_encode(const store_items *c, store_buf *b)
{
    b->n = 0;
    buf_put(b, "PIC1", 4);
    buf_put(b, &c->n, 4);
    for (uint32_t r = 0; r < c->runs; r++)
        for (uint32_t k = 0; k < c->run_len[r]; k++)
            buf_put(b, &c->run_hash[r], 8);
    buf_put(b, c->sku, 4 * (size_t)c->n);
    buf_put(b, c->category, 4 * (size_t)c->n);
    buf_put(b, c->brand, 4 * (size_t)c->n);
    buf_put(b, c->qty, 4 * (size_t)c->n);
    buf_put(b, c->price, 8 * (size_t)c->n);
    buf_sum(b);
}

static void poc_old_encode(const store_orders *c, int v2, store_buf *b)
{
    b->n = 0;
    buf_put(b, v2 ? "POC2" : "POC1", 4);
    buf_put(b, &c->n, 4);
    buf_put(b, c->ts, 8 * (size_t)c->n);
    buf_put(b, c->amount, 8 * (size_t)c->n);
    buf_put(b, c->units, 8 * (size_t)c->n);
    buf_put(b, c->hash, 8 * (size_t)c->n);
    buf_put(b, c->member, 4 * (size_t)c->n);
    buf_put(b, c->items, 4 * (size_t)c->n);
    for (uint32_t i = 0; i < c->n; i++) {
        uint32_t l = (uint32_t)(c->id_off[i + 1] - c->id_off[i]);
        buf_put(b, &l, 4);
    }
    buf_put(b, c->kind, c->n);
    if (v2) {
        buf_put(b, c->channel, 4 * (size_t)c->n);
        buf_put(b, c->store, 4 * (size_t)c->n);
    }
    buf_put(b, c->ids + c->id_off[0], c->id_off[c->n] - c->id_off[0]);
    buf_sum(b);
}

/* ---- round trips -------------------------------------------------------------------- */

static void test_items_round_trip(void **state)
{
    (void)state;
    static const uint32_t sizes[] = {0, 1, 2, 7, 300, 5000, STORE_ITEM_CHUNK};
    store_buf b = {0}, old = {0};
    store_items_dec d = {0};
    const char *why = NULL;
    for (size_t s = 0; s < N_OF(sizes); s++) {
        for (int mode = 0; mode < 4; mode++) {
            items_cols t;
            items_fill(&t, sizes[s], mode);
            b.n = 0;
            assert_int_equal(store_items_encode(&t.c, &b), 0);
            assert_memory_equal(b.p, "PIC2", 4);
            assert_int_equal(store_items_decode(b.p, b.n, &d, &why), STORE_CHUNK_OK);
            items_equal(&t.c, &d.c);
            if (mode == 3 && sizes[s] > 100)
                assert_true(b.n < 9 * (size_t)sizes[s]); /* 32 bytes an item in "PIC1" */
            /* the first format: adjacent runs of one order become one run */
            pic1_encode(&t.c, &old);
            assert_int_equal(store_items_decode(old.p, old.n, &d, &why), STORE_CHUNK_OK);
            assert_int_equal(d.c.n, t.c.n);
            uint32_t at = 0, r2 = 0;
            for (uint32_t r = 0; r < d.c.runs; r++) {
                uint32_t len = 0;
                while (len < d.c.run_len[r]) {
                    assert_int_equal(t.c.run_hash[r2], d.c.run_hash[r]);
                    len += t.c.run_len[r2++];
                }
                assert_int_equal(len, d.c.run_len[r]);
                at += len;
            }
            assert_int_equal(r2, t.c.runs);
            assert_int_equal(at, t.c.n);
            if (t.c.n) {
                assert_memory_equal(d.c.sku, t.c.sku, 4 * (size_t)t.c.n);
                assert_memory_equal(d.c.price, t.c.price, 8 * (size_t)t.c.n);
                assert_memory_equal(d.c.qty, t.c.qty, 4 * (size_t)t.c.n);
            }
            items_free(&t);
        }
    }
    store_items_dec_release(&d);
    free(b.p);
    free(old.p);
}

static void test_orders_round_trip(void **state)
{
    (void)state;
    static const uint32_t sizes[] = {0, 1, 2, 9, 1000, STORE_ORDER_CHUNK};
    store_buf b = {0}, old = {0};
    store_orders_dec d = {0};
    const char *why = NULL;
    for (size_t s = 0; s < N_OF(sizes); s++) {
        for (int mode = 0; mode < 2; mode++) {
            orders_cols t;
            orders_fill(&t, sizes[s], mode);
            b.n = 0;
            assert_int_equal(store_orders_encode(&t.c, &b), 0);
            assert_memory_equal(b.p, "POC3", 4);
            assert_int_equal(store_orders_decode(b.p, b.n, STORE_OC_ALL, &d, &why), STORE_CHUNK_OK);
            orders_equal(&t.c, &d.c, 1);
            for (uint32_t i = 0; i < d.c.n; i++)
                assert_int_equal(d.c.voided[i], 0);
            /* a pass that wants only some columns gets those */
            assert_int_equal(store_orders_decode(b.p, b.n, STORE_OC_VALUES, &d, &why),
                             STORE_CHUNK_OK);
            assert_null(d.c.ids);
            assert_null(d.c.id_off);
            for (uint32_t i = 0; i < d.c.n; i++) {
                assert_int_equal(d.c.ts[i], t.c.ts[i]);
                assert_int_equal(d.c.amount[i], t.c.amount[i]);
                assert_int_equal(d.c.member[i], t.c.member[i]);
                assert_int_equal(d.c.store[i], t.c.store[i]);
                assert_int_equal(d.c.hash[i], t.c.hash[i]);
            }
            assert_int_equal(store_orders_decode(b.p, b.n, STORE_OC_IDS, &d, &why), STORE_CHUNK_OK);
            assert_non_null(d.c.ids);
            for (uint32_t i = 0; i < d.c.n; i++) {
                size_t l = t.c.id_off[i + 1] - t.c.id_off[i];
                assert_int_equal(d.c.id_off[i + 1] - d.c.id_off[i], l);
                if (l) assert_memory_equal(d.c.ids + d.c.id_off[i], t.c.ids + t.c.id_off[i], l);
                assert_int_equal(d.c.hash[i], t.c.hash[i]);
                assert_int_equal(d.c.kind[i], t.c.kind[i]);
            }
            if (mode == 1 && sizes[s] >= 1000) /* 63 bytes an order and the id in "POC2" */
                assert_true(b.n < 32 * (size_t)sizes[s]);
            for (int v2 = 0; v2 < 2; v2++) {
                poc_old_encode(&t.c, v2, &old);
                assert_int_equal(store_orders_decode(old.p, old.n, STORE_OC_ALL, &d, &why),
                                 STORE_CHUNK_OK);
                orders_equal(&t.c, &d.c, v2);
            }
            orders_free(&t);
        }
    }
    /* an encoder's view of a slice: offsets need not start at 0 */
    orders_cols t;
    orders_fill(&t, 50, 0);
    store_orders part = t.c;
    part.n = 20;
    part.ts += 30, part.amount += 30, part.units += 30, part.hash += 30, part.member += 30;
    part.items += 30, part.kind += 30, part.channel += 30, part.store += 30, part.id_off += 30;
    b.n = 0;
    assert_int_equal(store_orders_encode(&part, &b), 0);
    assert_int_equal(store_orders_decode(b.p, b.n, STORE_OC_ALL, &d, &why), STORE_CHUNK_OK);
    orders_equal(&part, &d.c, 1);
    orders_free(&t);
    store_orders_dec_release(&d);
    free(b.p);
    free(old.p);
}

/* ---- damage ------------------------------------------------------------------------- */

/* Decodes a copy of b[0..len) in a buffer of exactly len bytes.  Returns the outcome. */
static int decode_exact(int items, const unsigned char *b, size_t len, store_items_dec *di,
                        store_orders_dec *dord, const char **why)
{
    unsigned char *copy = malloc(len ? len : 1);
    if (len) memcpy(copy, b, len);
    int r = items ? store_items_decode(copy, len, di, why)
                  : store_orders_decode(copy, len, STORE_OC_ALL, dord, why);
    if (r == STORE_CHUNK_OK && !items) /* touch every id byte handed out */
        for (size_t i = 0; i < dord->c.id_off[dord->c.n]; i++)
            rng_state += (unsigned char)dord->c.ids[i];
    free(copy);
    return r;
}

static void refix_sum(unsigned char *b, size_t len)
{
    uint64_t sum = XXH3_64bits(b, len - 8);
    memcpy(b + len - 8, &sum, 8);
}

static void damage_one(int items, const store_buf *good)
{
    store_items_dec di = {0};
    store_orders_dec dord = {0};
    const char *why = NULL;
    size_t len = good->n;
    /* every truncation: refused */
    for (size_t cut = 0; cut < len; cut++)
        assert_int_equal(decode_exact(items, good->p, cut, &di, &dord, &why), STORE_CHUNK_DAMAGED);
    unsigned char *m = malloc(len);
    static const unsigned char vals[] = {0x00, 0x01, 0x7f, 0x80, 0xff};
    for (size_t at = 0; at < len; at++) {
        for (size_t v = 0; v < N_OF(vals); v++) {
            memcpy(m, good->p, len);
            if (m[at] == vals[v]) continue;
            m[at] = vals[v];
            /* a change the checksum does not cover is refused as such */
            why = NULL;
            assert_int_equal(decode_exact(items, m, len, &di, &dord, &why), STORE_CHUNK_DAMAGED);
            assert_string_equal(why, "checksum");
            /* with the checksum made to match, the structure checks decide; either way
             * nothing outside the chunk is read */
            if (at < len - 8) {
                refix_sum(m, len);
                int r = decode_exact(items, m, len, &di, &dord, &why);
                assert_true(r == STORE_CHUNK_OK || r == STORE_CHUNK_DAMAGED);
            }
        }
    }
    free(m);
    store_items_dec_release(&di);
    store_orders_dec_release(&dord);
}

static void test_damaged_chunks_are_refused(void **state)
{
    (void)state;
    store_buf b = {0};
    items_cols ti;
    items_fill(&ti, 40, 0);
    assert_int_equal(store_items_encode(&ti.c, &b), 0);
    damage_one(1, &b);
    pic1_encode(&ti.c, &b);
    damage_one(1, &b);
    orders_cols to;
    orders_fill(&to, 25, 0);
    b.n = 0;
    assert_int_equal(store_orders_encode(&to.c, &b), 0);
    damage_one(0, &b);
    poc_old_encode(&to.c, 1, &b);
    damage_one(0, &b);
    poc_old_encode(&to.c, 0, &b);
    damage_one(0, &b);

    /* damage that passes the checksum, by kind */
    store_items_dec di = {0};
    store_orders_dec dord = {0};
    const char *why = NULL;
    b.n = 0;
    assert_int_equal(store_items_encode(&ti.c, &b), 0);
    unsigned char *m = malloc(b.n);
    uint32_t v;
    memcpy(m, b.p, b.n);
    v = 41; /* n one more than the columns hold */
    memcpy(m + 4, &v, 4);
    refix_sum(m, b.n);
    assert_int_equal(decode_exact(1, m, b.n, &di, &dord, &why), STORE_CHUNK_DAMAGED);
    memcpy(m, b.p, b.n);
    v = 41; /* more runs than items */
    memcpy(m + 8, &v, 4);
    refix_sum(m, b.n);
    assert_int_equal(decode_exact(1, m, b.n, &di, &dord, &why), STORE_CHUNK_DAMAGED);
    assert_string_equal(why, "header");
    memcpy(m, b.p, b.n);
    m[44 + 8 * ti.c.runs] = 0; /* a run of no items */
    refix_sum(m, b.n);
    assert_int_equal(decode_exact(1, m, b.n, &di, &dord, &why), STORE_CHUNK_DAMAGED);
    assert_string_equal(why, "runs");
    memcpy(m, b.p, b.n);
    uint64_t unit = 0; /* a price unit of 0 */
    memcpy(m + 12, &unit, 8);
    refix_sum(m, b.n);
    assert_int_equal(decode_exact(1, m, b.n, &di, &dord, &why), STORE_CHUNK_DAMAGED);
    assert_string_equal(why, "price");
    free(m);
    /* prices whose product with the unit leaves int64 */
    items_cols big;
    items_fill(&big, 3, 3);
    big.price[0] = INT64_MAX / 10000 * 10000;
    big.price[1] = big.price[2] = 0;
    b.n = 0;
    assert_int_equal(store_items_encode(&big.c, &b), 0);
    m = malloc(b.n);
    memcpy(m, b.p, b.n);
    unit = 100000;
    memcpy(m + 12, &unit, 8);
    refix_sum(m, b.n);
    assert_int_equal(decode_exact(1, m, b.n, &di, &dord, &why), STORE_CHUNK_DAMAGED);
    assert_string_equal(why, "price");
    free(m);
    items_free(&big);

    /* an id said to share more bytes than the id before has */
    orders_cols t2;
    orders_fill(&t2, 2, 1);
    b.n = 0;
    assert_int_equal(store_orders_encode(&t2.c, &b), 0);
    m = malloc(b.n);
    memcpy(m, b.p, b.n);
    uint32_t sz[9];
    memcpy(sz, m + 16, sizeof sz);
    size_t id_len_at = 52 + 9 * 2;
    for (int k = 0; k < 7; k++)
        id_len_at += sz[k];
    assert_int_equal(m[id_len_at], 0); /* the first id shares nothing */
    m[id_len_at] = 1;
    refix_sum(m, b.n);
    assert_int_equal(decode_exact(0, m, b.n, &di, &dord, &why), STORE_CHUNK_DAMAGED);
    assert_string_equal(why, "ids");
    free(m);
    orders_free(&t2);

    items_free(&ti);
    orders_free(&to);
    store_items_dec_release(&di);
    store_orders_dec_release(&dord);
    free(b.p);
}

/* ---- through the store -------------------------------------------------------------- */

typedef struct gathered {
    items_cols t;
    uint32_t n, runs, chunks;
} gathered;

static int gather_items(void *ctx, const store_items *c)
{
    gathered *g = ctx;
    assert_true(c->n <= STORE_ITEM_CHUNK);
    memcpy(g->t.run_hash + g->runs, c->run_hash, 8 * (size_t)c->runs);
    memcpy(g->t.run_len + g->runs, c->run_len, 4 * (size_t)c->runs);
    memcpy(g->t.sku + g->n, c->sku, 4 * (size_t)c->n);
    memcpy(g->t.cat + g->n, c->category, 4 * (size_t)c->n);
    memcpy(g->t.brand + g->n, c->brand, 4 * (size_t)c->n);
    memcpy(g->t.qty + g->n, c->qty, 4 * (size_t)c->n);
    memcpy(g->t.price + g->n, c->price, 8 * (size_t)c->n);
    g->n += c->n;
    g->runs += c->runs;
    g->chunks++;
    return 0;
}

typedef struct ogathered {
    uint32_t n, chunks, voided;
    const orders_cols *want;
} ogathered;

static int gather_orders(void *ctx, const store_orders *c)
{
    ogathered *g = ctx;
    const orders_cols *w = g->want;
    store_orders part = w->c;
    part.n = c->n;
    part.ts += g->n, part.amount += g->n, part.units += g->n, part.hash += g->n;
    part.member += g->n, part.items += g->n, part.kind += g->n, part.channel += g->n;
    part.store += g->n, part.id_off += g->n;
    orders_equal(&part, c, 1);
    for (uint32_t i = 0; i < c->n; i++)
        g->voided += c->voided[i];
    g->n += c->n;
    g->chunks++;
    return 0;
}

static void test_store_cuts_chunks(void **state)
{
    (void)state;
    char path[300];
    snprintf(path, sizeof path, "%s/cut.db", dir);
    store *s;
    patron_error err = {0};
    assert_int_equal(store_open(path, &s, &err), PATRON_OK);
    items_cols t;
    uint32_t n = 2 * STORE_ITEM_CHUNK + 12345;
    items_fill(&t, n, 1);
    orders_cols o;
    uint32_t no = STORE_ORDER_CHUNK + 500;
    orders_fill(&o, no, 1);
    assert_int_equal(store_begin(s, &err), PATRON_OK);
    assert_int_equal(store_items_put(s, &t.c, &err), PATRON_OK);
    for (uint32_t i = 0; i < no; i++) {
        store_order so = {o.ids + o.id_off[i], o.id_off[i + 1] - o.id_off[i],
                          o.member[i],         o.ts[i],
                          o.amount[i],         o.kind[i],
                          o.items[i],          o.units[i],
                          o.hash[i],           0,
                          o.channel[i],        o.store[i]};
        assert_int_equal(store_order_put(s, &so, &err), PATRON_OK);
    }
    assert_int_equal(store_order_void(s, o.ids + o.id_off[7], o.id_off[8] - o.id_off[7], &err),
                     PATRON_OK);
    assert_int_equal(store_commit(s, &err), PATRON_OK);

    gathered g = {0};
    items_alloc(&g.t, n + 10);
    assert_int_equal(store_items_each(s, gather_items, &g, &err), PATRON_OK);
    assert_int_equal(g.chunks, 3);
    assert_int_equal(g.n, n);
    /* runs cut at a chunk boundary come back as two runs of the same order */
    uint32_t at = 0, r2 = 0;
    for (uint32_t r = 0; r < t.c.runs; r++) {
        uint32_t len = 0;
        while (len < t.c.run_len[r]) {
            assert_true(r2 < g.runs);
            assert_int_equal(g.t.run_hash[r2], t.c.run_hash[r]);
            len += g.t.run_len[r2++];
        }
        assert_int_equal(len, t.c.run_len[r]);
        at += len;
    }
    assert_int_equal(r2, g.runs);
    assert_true(g.runs <= t.c.runs + 2);
    assert_memory_equal(g.t.sku, t.c.sku, 4 * (size_t)n);
    assert_memory_equal(g.t.cat, t.c.category, 4 * (size_t)n);
    assert_memory_equal(g.t.brand, t.c.brand, 4 * (size_t)n);
    assert_memory_equal(g.t.qty, t.c.qty, 4 * (size_t)n);
    assert_memory_equal(g.t.price, t.c.price, 8 * (size_t)n);

    ogathered og = {0, 0, 0, &o};
    assert_int_equal(store_order_chunks_each(s, STORE_OC_ALL, gather_orders, &og, &err), PATRON_OK);
    assert_int_equal(og.n, no);
    assert_int_equal(og.chunks, 2);
    assert_int_equal(og.voided, 1);
    store_close(s);
    items_free(&g.t);
    items_free(&t);
    orders_free(&o);
}

/* ---- a database in the old formats -------------------------------------------------- */

static void exec_ok(sqlite3 *q, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(q, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) fprintf(stderr, "%s: %s\n", sql, msg);
    assert_int_equal(rc, SQLITE_OK);
}

/* Rewrites every order chunk as "POC2" and every line-item chunk as "PIC1" (what the
 * versions before this one wrote).  Returns the number of chunks rewritten. */
static int downgrade_chunks(const char *path)
{
    sqlite3 *q;
    assert_int_equal(sqlite3_open(path, &q), SQLITE_OK);
    exec_ok(q, "BEGIN");
    sqlite3_stmt *sel, *upd;
    store_buf b = {0};
    store_items_dec di = {0};
    store_orders_dec dord = {0};
    const char *why = NULL;
    int count = 0;
    for (int items = 0; items < 2; items++) {
        const char *table = items ? "item_chunks" : "order_chunks";
        char sql[200];
        snprintf(sql, sizeof sql, "SELECT id, data FROM %s ORDER BY id", table);
        assert_int_equal(sqlite3_prepare_v2(q, sql, -1, &sel, NULL), SQLITE_OK);
        snprintf(sql, sizeof sql, "UPDATE %s SET data = ?2 WHERE id = ?1", table);
        assert_int_equal(sqlite3_prepare_v2(q, sql, -1, &upd, NULL), SQLITE_OK);
        while (sqlite3_step(sel) == SQLITE_ROW) {
            const unsigned char *blob = sqlite3_column_blob(sel, 1);
            size_t len = (size_t)sqlite3_column_bytes(sel, 1);
            assert_memory_equal(blob, items ? "PIC2" : "POC3", 4);
            if (items) {
                assert_int_equal(store_items_decode(blob, len, &di, &why), STORE_CHUNK_OK);
                pic1_encode(&di.c, &b);
            } else {
                assert_int_equal(store_orders_decode(blob, len, STORE_OC_ALL, &dord, &why),
                                 STORE_CHUNK_OK);
                poc_old_encode(&dord.c, 1, &b);
            }
            sqlite3_bind_int64(upd, 1, sqlite3_column_int64(sel, 0));
            sqlite3_bind_blob64(upd, 2, b.p, b.n, SQLITE_TRANSIENT);
            assert_int_equal(sqlite3_step(upd), SQLITE_DONE);
            sqlite3_reset(upd);
            count++;
        }
        sqlite3_finalize(sel);
        sqlite3_finalize(upd);
    }
    exec_ok(q, "COMMIT");
    sqlite3_close(q);
    free(b.p);
    store_items_dec_release(&di);
    store_orders_dec_release(&dord);
    return count;
}

typedef struct loaded {
    uint64_t model, codes, view;
    size_t orders;
    patron_stats stats;
} loaded;

/* Opens path (a fresh process's load) and sums up what it holds. */
static loaded load(const char *path, int64_t now)
{
    patron_db *db;
    patron_error err = {0};
    loaded l;
    memset(&l, 0, sizeof l);
    assert_int_equal(patron_open(path, &db, &err), PATRON_OK);
    l.model = patron_model_hash(db);
    l.orders = db->n_orders;
    l.codes = XXH3_64bits(db->o_channel, db->n_orders * sizeof *db->o_channel) ^
              XXH3_64bits(db->o_store, db->n_orders * sizeof *db->o_store) * 3;
    assert_int_equal(patron_stats_get(db, now, &l.stats, &err), PATRON_OK);
    assert_int_equal(db_view_ensure(db, &err), PATRON_OK);
    l.view = view_hash(db);
    patron_close(db);
    return l;
}

static void same(const loaded *a, const loaded *b)
{
    assert_true(a->model == b->model);
    assert_true(a->codes == b->codes);
    assert_true(a->view == b->view);
    assert_int_equal(a->orders, b->orders);
    assert_memory_equal(&a->stats, &b->stats, sizeof a->stats);
}

static void test_old_formats_load_the_same(void **state)
{
    (void)state;
    gen_opts g;
    gen_opts_init(&g);
    g.members = 300;
    g.seed = 11;
    g.out = dir;
    patron_error err = {0};
    assert_int_equal(gen_run(&g, &err), 0);
    char a[300], b[300], members[300], orders[300], first[300], second[300], cmd[700];
    snprintf(a, sizeof a, "%s/new.db", dir);
    snprintf(b, sizeof b, "%s/old.db", dir);
    snprintf(members, sizeof members, "%s/members.csv", dir);
    snprintf(orders, sizeof orders, "%s/orders.csv", dir);
    snprintf(first, sizeof first, "%s/first.csv", dir);
    snprintf(second, sizeof second, "%s/second.csv", dir);
    /* the orders file in two halves, cut between orders */
    FILE *in = fopen(orders, "r"), *f1 = fopen(first, "w"), *f2 = fopen(second, "w");
    assert_non_null(in);
    char line[4096], header[1024], last[64] = "";
    assert_non_null(fgets(header, sizeof header, in));
    fputs(header, f1);
    fputs(header, f2);
    size_t lines = 0;
    FILE *to = f1;
    while (fgets(line, sizeof line, in)) {
        size_t k = strcspn(line, ",");
        if (to == f1 && lines > 1500 && (strlen(last) != k || memcmp(last, line, k) != 0)) to = f2;
        snprintf(last, sizeof last, "%.*s", (int)k, line);
        fputs(line, to);
        lines++;
    }
    fclose(in);
    fclose(f1);
    fclose(f2);
    assert_true(to == f2);

    patron_db *db;
    patron_import_result res;
    assert_int_equal(patron_open(a, &db, &err), PATRON_OK);
    assert_int_equal(patron_import(db, PATRON_IMPORT_MEMBERS, members, NULL, &res, &err),
                     PATRON_OK);
    assert_int_equal(patron_import(db, PATRON_IMPORT_ORDERS, first, NULL, &res, &err), PATRON_OK);
    assert_true(res.items > 1000);
    patron_close(db);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", a, b);
    assert_int_equal(system(cmd), 0);
    assert_true(downgrade_chunks(b) >= 2);
    loaded la = load(a, g.end), lb = load(b, g.end);
    same(&la, &lb);
    assert_true(la.stats.items > 1000);

    /* a further import beside the old chunks: live and reloaded, the same again */
    uint64_t live[2];
    const char *paths[2] = {a, b};
    for (int k = 0; k < 2; k++) {
        assert_int_equal(patron_open(paths[k], &db, &err), PATRON_OK);
        assert_int_equal(db_view_ensure(db, &err), PATRON_OK);
        assert_int_equal(patron_import(db, PATRON_IMPORT_ORDERS, second, NULL, &res, &err),
                         PATRON_OK);
        assert_true(res.inserted > 0);
        /* and the first half again: every order already stored (found through old chunks) */
        assert_int_equal(patron_import(db, PATRON_IMPORT_ORDERS, first, NULL, &res, &err),
                         PATRON_OK);
        assert_int_equal(res.inserted, 0);
        live[k] = view_hash(db);
        patron_close(db);
    }
    assert_true(live[0] == live[1]);
    la = load(a, g.end);
    lb = load(b, g.end);
    same(&la, &lb);
    assert_true(la.view == live[0]);

    /* a damaged chunk is named */
    sqlite3 *q;
    assert_int_equal(sqlite3_open(b, &q), SQLITE_OK);
    exec_ok(q, "UPDATE item_chunks SET data = CAST(substr(data, 1, 40) || x'00' || substr(data, "
               "42) AS BLOB)"
               " WHERE id = 1");
    sqlite3_close(q);
    assert_int_equal(patron_open(b, &db, &err), PATRON_OK);
    assert_int_equal(db_view_ensure(db, &err), PATRON_ESTORE);
    assert_non_null(strstr(err.message, "line-item chunk 1 is damaged (checksum)"));
    patron_close(db);
    assert_int_equal(sqlite3_open(b, &q), SQLITE_OK);
    exec_ok(q, "UPDATE order_chunks SET data = CAST(substr(data, 1, 40) || x'00' || substr(data, "
               "42) AS BLOB)"
               " WHERE id = 2");
    sqlite3_close(q);
    assert_int_equal(patron_open(b, &db, &err), PATRON_ESTORE);
    assert_non_null(strstr(err.message, "order chunk 2 is damaged (checksum)"));
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/patron-test-chunks-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_items_round_trip),
        cmocka_unit_test(test_orders_round_trip),
        cmocka_unit_test(test_damaged_chunks_are_refused),
        cmocka_unit_test(test_store_cuts_chunks),
        cmocka_unit_test(test_old_formats_load_the_same),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) return 1;
    return rc;
}
