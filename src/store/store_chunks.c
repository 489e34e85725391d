/*
 * store_chunks.c -- encoding and decoding of order and line-item chunks (the formats
 * are described in store_chunks.h and docs/storage.md; decision 0006 has the figures
 * behind them).
 *
 * A chunk written today is a fixed header (magic, counts, a money unit and the byte
 * size of every column), the columns one after the other, and XXH3-64 of everything
 * before the checksum.  Columns that are 64-bit hashes stay raw (they do not shrink);
 * the others are LEB128 varints, written with room reserved up front so that the
 * encoding loops never check capacity.  Decoding checks the checksum, then that the
 * column sizes add up to the chunk exactly, then reads each column with every varint
 * bounded by the column's end and the column ending exactly there.  Nothing in a chunk
 * is trusted until it has passed these checks, so a damaged chunk is refused before
 * any value reaches a caller.
 *
 * Invariant: a chunk round-trips exactly.  Every int64 value (timestamps, money,
 * units) survives, including INT64_MIN and INT64_MAX: deltas are taken modulo 2^64 and
 * money is divided by a unit only when every value of the chunk is a multiple of it.
 */
#include "store/store_chunks.h"

#include "base/err.h"
#include "base/mem.h"

#include <string.h>
#include <xxhash.h>

/* ---- varints ------------------------------------------------------------------------ */

/* Worst-case bytes of a varint holding a 32-bit and a 64-bit value. */
#define V32 5
#define V64 10

/* Varints are written and read a byte at a time.  Reading and writing a whole 8-byte
 * word without a branch per byte measured slower on columns like these, whose values
 * have similar lengths (decision 0006: 2-4 ns a value against 1-3 ns). */
static inline unsigned char *put_v(unsigned char *w, uint64_t x)
{
    while (x >= 0x80) {
        *w++ = (unsigned char)(x | 0x80);
        x >>= 7;
    }
    *w++ = (unsigned char)x;
    return w;
}

/* Reads one varint from p (not past end) into *x: the byte after it, or NULL when the
 * varint runs past end or holds more than 64 bits. */
static inline const unsigned char *get_v(const unsigned char *p, const unsigned char *end,
                                         uint64_t *x)
{
    if (end - p >= 2) { /* one and two bytes: most values of most columns */
        if (p[0] < 0x80) {
            *x = p[0];
            return p + 1;
        }
        if (p[1] < 0x80) {
            *x = (uint64_t)(p[0] & 0x7f) | (uint64_t)p[1] << 7;
            return p + 2;
        }
    }
    uint64_t v = 0;
    for (unsigned s = 0; p < end && s < 64; s += 7) {
        unsigned c = *p++;
        if (s == 63 && c > 1) return NULL;
        v |= (uint64_t)(c & 0x7f) << s;
        if (c < 0x80) {
            *x = v;
            return p;
        }
    }
    return NULL;
}

static inline uint64_t zz(int64_t v)
{
    return v < 0 ? ~((uint64_t)v << 1) : (uint64_t)v << 1;
}

static inline int64_t unzz(uint64_t u)
{
    return (int64_t)((u >> 1) ^ (0 - (u & 1)));
}

static inline uint32_t rd32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline uint64_t rd64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline void wr32(unsigned char *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

static inline void wr64(unsigned char *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

/* ---- money units -------------------------------------------------------------------- */

/* Money is in 1/10000 currency units, so prices and amounts are usually multiples of 100
 * (cents) or more; a chunk stores them divided by the largest power of ten up to 10^4
 * that divides all of them (a byte less per value at S).  The divisions are by
 * constants so that the compiler turns them into multiplications. */
static const int64_t money_units[5] = {1, 10, 100, 1000, 10000};

static inline int multiple_of(int64_t v, int k)
{
    switch (k) {
    case 4:
        return v % 10000 == 0;
    case 3:
        return v % 1000 == 0;
    case 2:
        return v % 100 == 0;
    case 1:
        return v % 10 == 0;
    default:
        return 1;
    }
}

static inline int64_t div_pow10(int64_t v, int k)
{
    switch (k) {
    case 4:
        return v / 10000;
    case 3:
        return v / 1000;
    case 2:
        return v / 100;
    case 1:
        return v / 10;
    default:
        return v;
    }
}

/* The exponent of the money unit of v[0..n). */
static int money_exp(const int64_t *v, size_t n)
{
    int k = 4;
    for (size_t i = 0; i < n && k > 0; i++)
        while (k > 0 && !multiple_of(v[i], k))
            k--;
    return k;
}

/* Writes the varints of v[0..n) / 10^k (zigzag) from w; returns the end. */
static unsigned char *put_money(unsigned char *w, const int64_t *v, size_t n, int k)
{
    if (k == 0) {
        for (size_t i = 0; i < n; i++)
            w = put_v(w, zz(v[i]));
        return w;
    }
    for (size_t i = 0; i < n; i++)
        w = put_v(w, zz(div_pow10(v[i], k)));
    return w;
}

/* ---- reading columns ---------------------------------------------------------------- */

/* A column being read: its bytes are p..end. */
typedef struct col {
    const unsigned char *p, *end;
} col;

/* Splits the columns off the chunk: k of them, their sizes the u32s at sizes, the
 * first starting at byte at.  Fails (-1) unless they end exactly at limit. */
static int cols_split(const unsigned char *b, const unsigned char *sizes, int k, size_t at,
                      size_t limit, col *c)
{
    if (at > limit) return -1;
    for (int j = 0; j < k; j++) {
        uint32_t sz = rd32(sizes + 4 * j);
        if (sz > limit - at) return -1;
        c[j].p = b + at;
        c[j].end = b + at + sz;
        at += sz;
    }
    return at == limit ? 0 : -1;
}

/* Each reader takes n values from its column and fails (-1) unless they fill it
 * exactly. */
static int read_u32(col c, uint32_t *out, size_t n)
{
    const unsigned char *p = c.p;
    for (size_t i = 0; i < n; i++) {
        uint64_t x;
        if (!(p = get_v(p, c.end, &x)) || x > UINT32_MAX) return -1;
        out[i] = (uint32_t)x;
    }
    return p == c.end ? 0 : -1;
}

static int read_i32(col c, int32_t *out, size_t n)
{
    const unsigned char *p = c.p;
    for (size_t i = 0; i < n; i++) {
        uint64_t x;
        if (!(p = get_v(p, c.end, &x))) return -1;
        int64_t v = unzz(x);
        if (v < INT32_MIN || v > INT32_MAX) return -1;
        out[i] = (int32_t)v;
    }
    return p == c.end ? 0 : -1;
}

static int read_i64(col c, int64_t *out, size_t n)
{
    const unsigned char *p = c.p;
    for (size_t i = 0; i < n; i++) {
        uint64_t x;
        if (!(p = get_v(p, c.end, &x))) return -1;
        out[i] = unzz(x);
    }
    return p == c.end ? 0 : -1;
}

/* Money: the values times unit, refused when a product leaves int64. */
static int read_money(col c, int64_t *out, size_t n, uint64_t unit)
{
    if (unit == 0 || unit > INT64_MAX || read_i64(c, out, n) != 0) return -1;
    if (unit == 1) return 0;
    for (size_t i = 0; i < n; i++)
        if (__builtin_mul_overflow(out[i], (int64_t)unit, &out[i])) return -1;
    return 0;
}

/* Values stored as differences from the value before (the first from 0), modulo 2^64. */
static int read_delta(col c, int64_t *out, size_t n)
{
    if (read_i64(c, out, n) != 0) return -1;
    uint64_t prev = 0;
    for (size_t i = 0; i < n; i++)
        out[i] = (int64_t)(prev += (uint64_t)out[i]);
    return 0;
}

/* ---- line items --------------------------------------------------------------------- */

/*
 * "PIC2": "PIC2", u32 n, u32 runs, u64 price_unit, u32 size[6] (bytes of the varint
 * columns below), u64 run_hash[runs], then the varint columns run_len[runs], sku[n],
 * category[n], brand[n], qty[n] (zigzag), price[n] (zigzag, divided by price_unit),
 * then u64 XXH3-64 of everything before it.
 */
#define PIC2_HEAD 44
enum { IC_RUN_LEN, IC_SKU, IC_CAT, IC_BRAND, IC_QTY, IC_PRICE, IC__N };

int store_items_encode(const store_items *c, store_buf *out)
{
    size_t n = c->n, runs = c->runs, total = 0;
    PATRON_ASSERT(n <= STORE_ITEM_CHUNK && runs <= n);
    for (size_t r = 0; r < runs; r++) {
        PATRON_ASSERT(c->run_len[r] > 0);
        total += c->run_len[r];
    }
    PATRON_ASSERT(total == n);
    size_t most = PIC2_HEAD + runs * (8 + V32) + n * (4 * V32 + V64) + 8;
    if (MEM_GROW(out->p, out->cap, out->n + most)) return -1;
    unsigned char *b = out->p + out->n, *w = b + PIC2_HEAD, *start[IC__N + 1];
    int k = money_exp(c->price, n);
    memcpy(b, "PIC2", 4);
    wr32(b + 4, (uint32_t)n);
    wr32(b + 8, (uint32_t)runs);
    wr64(b + 12, (uint64_t)money_units[k]);
    if (runs) memcpy(w, c->run_hash, 8 * runs);
    w += 8 * runs;
    start[IC_RUN_LEN] = w;
    for (size_t r = 0; r < runs; r++)
        w = put_v(w, c->run_len[r]);
    start[IC_SKU] = w;
    for (size_t i = 0; i < n; i++)
        w = put_v(w, c->sku[i]);
    start[IC_CAT] = w;
    for (size_t i = 0; i < n; i++)
        w = put_v(w, c->category[i]);
    start[IC_BRAND] = w;
    for (size_t i = 0; i < n; i++)
        w = put_v(w, c->brand[i]);
    start[IC_QTY] = w;
    for (size_t i = 0; i < n; i++)
        w = put_v(w, zz(c->qty[i]));
    start[IC_PRICE] = w;
    w = put_money(w, c->price, n, k);
    start[IC__N] = w;
    for (int j = 0; j < IC__N; j++)
        wr32(b + 20 + 4 * j, (uint32_t)(start[j + 1] - start[j]));
    wr64(w, XXH3_64bits(b, (size_t)(w - b)));
    out->n += (size_t)(w + 8 - b);
    return 0;
}

/* Room for n items and runs runs in every array of d (never NULL after it: an empty
 * chunk still hands out arrays). */
static int items_room(store_items_dec *d, size_t n, size_t runs)
{
    n = n ? n : 1;
    runs = runs ? runs : 1;
    if (n > d->cap) {
        void **arr[6] = {(void **)&d->run_len, (void **)&d->sku, (void **)&d->category,
                         (void **)&d->brand,   (void **)&d->qty, (void **)&d->price};
        static const size_t sz[6] = {4, 4, 4, 4, 4, 8};
        /* run_len is sized by items: a chunk has at most as many runs as items */
        for (int j = 0; j < 6; j++) {
            void *q = mem_realloc_array(*arr[j], n, sz[j]);
            if (!q) return -1;
            *arr[j] = q;
        }
        d->cap = n;
    }
    if (runs > d->cap_runs) {
        uint64_t *h = mem_realloc_array(d->run_hash, runs, sizeof *h);
        if (!h) return -1;
        d->run_hash = h;
        d->cap_runs = runs;
    }
    return 0;
}

static void items_point(store_items_dec *d, uint32_t n, uint32_t runs)
{
    store_items *c = &d->c;
    c->n = n;
    c->runs = runs;
    c->run_hash = d->run_hash;
    c->run_len = d->run_len;
    c->sku = d->sku;
    c->category = d->category;
    c->brand = d->brand;
    c->qty = d->qty;
    c->price = d->price;
}

/* "PIC1": "PIC1", u32 n, u64 order_hash[n], u32 sku[n], u32 category[n], u32 brand[n],
 * i32 qty[n], i64 price[n], checksum.  Runs are the stretches of equal hashes. */
static int pic1_decode(const unsigned char *b, size_t len, store_items_dec *d, const char **why)
{
    uint32_t n = rd32(b + 4);
    if (n > STORE_ITEM_CHUNK || (uint64_t)len != 16 + 32 * (uint64_t)n) {
        *why = "header";
        return STORE_CHUNK_DAMAGED;
    }
    if (items_room(d, n, n) != 0) return STORE_CHUNK_NOMEM;
    const unsigned char *oh = b + 8, *p = oh + 8 * (size_t)n;
    uint32_t runs = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t h = rd64(oh + 8 * (size_t)i);
        if (runs == 0 || d->run_hash[runs - 1] != h) {
            d->run_hash[runs] = h;
            d->run_len[runs++] = 0;
        }
        d->run_len[runs - 1]++;
    }
    memcpy(d->sku, p, 4 * (size_t)n), p += 4 * (size_t)n;
    memcpy(d->category, p, 4 * (size_t)n), p += 4 * (size_t)n;
    memcpy(d->brand, p, 4 * (size_t)n), p += 4 * (size_t)n;
    memcpy(d->qty, p, 4 * (size_t)n), p += 4 * (size_t)n;
    memcpy(d->price, p, 8 * (size_t)n);
    items_point(d, n, runs);
    return STORE_CHUNK_OK;
}

static int pic2_decode(const unsigned char *b, size_t len, store_items_dec *d, const char **why)
{
    if (len < PIC2_HEAD + 8) {
        *why = "header";
        return STORE_CHUNK_DAMAGED;
    }
    uint32_t n = rd32(b + 4), runs = rd32(b + 8);
    uint64_t unit = rd64(b + 12);
    col c[IC__N];
    size_t limit = len - 8;
    /* the hashes fit, the columns fill the rest exactly, and every value takes a byte
     * at least: so n and runs are bounded by the chunk's size before anything is sized
     * by them */
    if (n > STORE_ITEM_CHUNK || runs > n || (uint64_t)runs * 8 > limit - PIC2_HEAD ||
        cols_split(b, b + 20, IC__N, PIC2_HEAD + 8 * (size_t)runs, limit, c) != 0 ||
        (size_t)(c[IC_RUN_LEN].end - c[IC_RUN_LEN].p) < runs ||
        (size_t)(c[IC_SKU].end - c[IC_SKU].p) < n) {
        *why = "header";
        return STORE_CHUNK_DAMAGED;
    }
    if (items_room(d, n, runs) != 0) return STORE_CHUNK_NOMEM;
    memcpy(d->run_hash, b + PIC2_HEAD, 8 * (size_t)runs);
    uint64_t total = 0;
    int empty = 0;
    if (read_u32(c[IC_RUN_LEN], d->run_len, runs) != 0) {
        *why = "runs";
        return STORE_CHUNK_DAMAGED;
    }
    for (uint32_t r = 0; r < runs; r++) {
        empty |= d->run_len[r] == 0;
        total += d->run_len[r];
    }
    if (empty || total != n) {
        *why = "runs";
        return STORE_CHUNK_DAMAGED;
    }
    if (read_u32(c[IC_SKU], d->sku, n) != 0 || read_u32(c[IC_CAT], d->category, n) != 0 ||
        read_u32(c[IC_BRAND], d->brand, n) != 0) {
        *why = "codes";
        return STORE_CHUNK_DAMAGED;
    }
    if (read_i32(c[IC_QTY], d->qty, n) != 0) {
        *why = "qty";
        return STORE_CHUNK_DAMAGED;
    }
    if (read_money(c[IC_PRICE], d->price, n, unit) != 0) {
        *why = "price";
        return STORE_CHUNK_DAMAGED;
    }
    items_point(d, n, runs);
    return STORE_CHUNK_OK;
}

/* The checksum and the magic: 1 for the first format, 2 for the second, 0 neither. */
static int check_magic(const unsigned char *b, size_t len, const char *m1, const char *m2,
                       const char *m3)
{
    if (len < 16 || rd64(b + len - 8) != XXH3_64bits(b, len - 8)) return 0;
    if (memcmp(b, m1, 4) == 0) return 1;
    if (memcmp(b, m2, 4) == 0) return 2;
    return m3 && memcmp(b, m3, 4) == 0 ? 3 : 0;
}

int store_items_decode(const unsigned char *b, size_t len, store_items_dec *d, const char **why)
{
    switch (check_magic(b, len, "PIC1", "PIC2", NULL)) {
    case 1:
        return pic1_decode(b, len, d, why);
    case 2:
        return pic2_decode(b, len, d, why);
    default:
        *why = "checksum";
        return STORE_CHUNK_DAMAGED;
    }
}

void store_items_dec_release(store_items_dec *d)
{
    mem_free(d->run_hash);
    mem_free(d->run_len);
    mem_free(d->sku);
    mem_free(d->category);
    mem_free(d->brand);
    mem_free(d->qty);
    mem_free(d->price);
    memset(d, 0, sizeof *d);
}

/* ---- orders ------------------------------------------------------------------------- */

/*
 * "POC3": "POC3", u32 n, u64 amount_unit, u32 size[9] (bytes of the columns after
 * kind), u64 hash[n], u8 kind[n], then the varint columns ts[n] (zigzag difference from
 * the order before, the first from 0, modulo 2^64), amount[n] (zigzag, divided by
 * amount_unit), units[n] (zigzag), member[n] (zigzag difference, as ts), items[n]
 * (zigzag), channel[n], store[n], id_len[2n] (for each id: the number of leading bytes
 * it shares with the id before, then the number of bytes after them), then those
 * remaining bytes of every id, then u64 XXH3-64 of everything before it.
 */
#define POC3_HEAD 52
enum {
    OC_TS,
    OC_AMOUNT,
    OC_UNITS,
    OC_MEMBER,
    OC_ITEMS,
    OC_CHANNEL,
    OC_STORE,
    OC_ID_LEN,
    OC_IDS,
    OC__N
};

/* Bytes at the start of id[0..n) equal to the start of prev[0..pn). */
static inline size_t shared_prefix(const char *prev, size_t pn, const char *id, size_t n)
{
    size_t s = 0, m = n < pn ? n : pn;
    for (; s + 8 <= m; s += 8) {
        uint64_t a, b;
        memcpy(&a, prev + s, 8);
        memcpy(&b, id + s, 8);
        if (a != b) return s + (size_t)(__builtin_ctzll(a ^ b) >> 3);
    }
    while (s < m && id[s] == prev[s])
        s++;
    return s;
}

int store_orders_encode(const store_orders *c, store_buf *out)
{
    size_t n = c->n, idbytes = c->id_off[n] - c->id_off[0];
    PATRON_ASSERT(n <= STORE_ORDER_CHUNK);
    size_t most = POC3_HEAD + n * (8 + 1 + 5 * V64 + 2 * V32 + 2 * V64) + idbytes + 8;
    if (MEM_GROW(out->p, out->cap, out->n + most)) return -1;
    unsigned char *b = out->p + out->n, *w = b + POC3_HEAD, *start[OC__N + 1];
    int k = money_exp(c->amount, n);
    memcpy(b, "POC3", 4);
    wr32(b + 4, (uint32_t)n);
    wr64(b + 8, (uint64_t)money_units[k]);
    if (n) {
        memcpy(w, c->hash, 8 * n);
        memcpy(w + 8 * n, c->kind, n);
    }
    w += 9 * n;
    start[OC_TS] = w;
    uint64_t prev = 0;
    for (size_t i = 0; i < n; i++) {
        w = put_v(w, zz((int64_t)((uint64_t)c->ts[i] - prev)));
        prev = (uint64_t)c->ts[i];
    }
    start[OC_AMOUNT] = w;
    w = put_money(w, c->amount, n, k);
    start[OC_UNITS] = w;
    for (size_t i = 0; i < n; i++)
        w = put_v(w, zz(c->units[i]));
    start[OC_MEMBER] = w;
    int64_t pm = 0;
    for (size_t i = 0; i < n; i++) {
        w = put_v(w, zz((int64_t)c->member[i] - pm));
        pm = c->member[i];
    }
    start[OC_ITEMS] = w;
    for (size_t i = 0; i < n; i++)
        w = put_v(w, zz(c->items[i]));
    start[OC_CHANNEL] = w;
    for (size_t i = 0; i < n; i++)
        w = put_v(w, c->channel[i]);
    start[OC_STORE] = w;
    for (size_t i = 0; i < n; i++)
        w = put_v(w, c->store[i]);
    /* ids front-coded: consecutive ids usually share most of their bytes */
    for (int pass = 0; pass < 2; pass++) {
        start[pass ? OC_IDS : OC_ID_LEN] = w;
        const char *pid = c->ids;
        size_t pn = 0;
        for (size_t i = 0; i < n; i++) {
            const char *id = c->ids + c->id_off[i];
            size_t idn = c->id_off[i + 1] - c->id_off[i], s = shared_prefix(pid, pn, id, idn);
            if (pass == 0) {
                w = put_v(put_v(w, s), idn - s);
            } else {
                memcpy(w, id + s, idn - s);
                w += idn - s;
            }
            pid = id;
            pn = idn;
        }
    }
    start[OC__N] = w;
    for (int j = 0; j < OC__N; j++) {
        if ((size_t)(start[j + 1] - start[j]) > UINT32_MAX) return -2;
        wr32(b + 16 + 4 * j, (uint32_t)(start[j + 1] - start[j]));
    }
    wr64(w, XXH3_64bits(b, (size_t)(w - b)));
    out->n += (size_t)(w + 8 - b);
    return 0;
}

static int orders_room(store_orders_dec *d, size_t n)
{
    if (d->ts && n <= d->cap) return 0;
    void **arr[11] = {(void **)&d->ts,    (void **)&d->amount, (void **)&d->units,
                      (void **)&d->hash,  (void **)&d->member, (void **)&d->items,
                      (void **)&d->kind,  (void **)&d->voided, (void **)&d->channel,
                      (void **)&d->store, (void **)&d->id_off};
    static const size_t sz[11] = {8, 8, 8, 8, 4, 4, 1, 1, 4, 4, sizeof(size_t)};
    for (int j = 0; j < 11; j++) {
        /* id_off has n + 1 entries; the others n (at least 1, so none is NULL) */
        void *q = mem_realloc_array(*arr[j], n + 1, sz[j]);
        if (!q) return -1;
        *arr[j] = q;
    }
    d->cap = n;
    return 0;
}

static void orders_point(store_orders_dec *d, uint32_t n, const char *ids)
{
    store_orders *c = &d->c;
    c->n = n;
    c->ts = d->ts;
    c->amount = d->amount;
    c->units = d->units;
    c->hash = d->hash;
    c->member = d->member;
    c->items = d->items;
    c->kind = d->kind;
    c->channel = d->channel;
    c->store = d->store;
    c->id_off = ids ? d->id_off : NULL;
    c->ids = ids;
    memset(d->voided, 0, n);
    c->voided = d->voided;
}

/* "POC1" / "POC2": "POC1", u32 n, i64 ts[n], i64 amount[n], i64 units[n], u64 hash[n],
 * i32 member[n], i32 items[n], u32 id_len[n], u8 kind[n], the id bytes, checksum;
 * "POC2" adds u32 channel[n], u32 store[n] after kind.  The ids are read in place. */
static int poc12_decode(const unsigned char *b, size_t len, int v2, store_orders_dec *d,
                        const char **why)
{
    uint32_t n = rd32(b + 4);
    uint64_t fixed = 16 + (uint64_t)n * (8 * 4 + 4 * (v2 ? 5u : 3u) + 1);
    if (n > STORE_ORDER_CHUNK || len < fixed) {
        *why = "header";
        return STORE_CHUNK_DAMAGED;
    }
    if (orders_room(d, n) != 0) return STORE_CHUNK_NOMEM;
    size_t N = n;
    const unsigned char *p = b + 8;
    memcpy(d->ts, p, 8 * N), p += 8 * N;
    memcpy(d->amount, p, 8 * N), p += 8 * N;
    memcpy(d->units, p, 8 * N), p += 8 * N;
    memcpy(d->hash, p, 8 * N), p += 8 * N;
    memcpy(d->member, p, 4 * N), p += 4 * N;
    memcpy(d->items, p, 4 * N), p += 4 * N;
    const unsigned char *idl = p;
    p += 4 * N;
    memcpy(d->kind, p, N), p += N;
    if (v2) {
        memcpy(d->channel, p, 4 * N), p += 4 * N;
        memcpy(d->store, p, 4 * N), p += 4 * N;
    } else {
        memset(d->channel, 0, 4 * N);
        memset(d->store, 0, 4 * N);
    }
    size_t room = len - 8 - (size_t)(p - b), off = 0;
    d->id_off[0] = 0;
    for (size_t i = 0; i < N; i++) {
        uint32_t k = rd32(idl + 4 * i);
        if (k > room - off) {
            *why = "ids";
            return STORE_CHUNK_DAMAGED;
        }
        off += k;
        d->id_off[i + 1] = off;
    }
    if (off != room) {
        *why = "ids";
        return STORE_CHUNK_DAMAGED;
    }
    orders_point(d, n, (const char *)p);
    return STORE_CHUNK_OK;
}

/* The value columns of a "POC3" chunk (c: its columns, split and sized): the name of
 * the first that fails, or NULL. */
static const char *poc3_values(const col *c, size_t n, uint64_t unit, store_orders_dec *d)
{
    int64_t *tmp = d->ts; /* member differences are read through ts, before ts itself */
    if (read_delta(c[OC_MEMBER], tmp, n) != 0) return "member";
    for (size_t i = 0; i < n; i++) {
        if (tmp[i] < INT32_MIN || tmp[i] > INT32_MAX) return "member";
        d->member[i] = (int32_t)tmp[i];
    }
    if (read_delta(c[OC_TS], d->ts, n) != 0) return "ts";
    if (read_money(c[OC_AMOUNT], d->amount, n, unit) != 0) return "amount";
    if (read_i64(c[OC_UNITS], d->units, n) != 0) return "units";
    if (read_i32(c[OC_ITEMS], d->items, n) != 0) return "items";
    if (read_u32(c[OC_CHANNEL], d->channel, n) != 0 || read_u32(c[OC_STORE], d->store, n) != 0)
        return "codes";
    return NULL;
}

/* The ids of a "POC3" chunk, each the first bytes of the one before and then its own:
 * STORE_CHUNK_OK, _DAMAGED or _NOMEM. */
static int poc3_ids(const col *c, size_t n, store_orders_dec *d)
{
    const unsigned char *lp = c[OC_ID_LEN].p, *rp = c[OC_IDS].p;
    size_t total = 0, prev = 0;
    d->id_off[0] = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t s, r;
        if (!(lp = get_v(lp, c[OC_ID_LEN].end, &s)) || !(lp = get_v(lp, c[OC_ID_LEN].end, &r)) ||
            s > prev || r > (size_t)(c[OC_IDS].end - rp))
            return STORE_CHUNK_DAMAGED;
        if (MEM_GROW(d->ids, d->cap_ids, total + s + r + 1)) return STORE_CHUNK_NOMEM;
        memcpy(d->ids + total, d->ids + total - prev, s);
        memcpy(d->ids + total + s, rp, r);
        rp += r;
        prev = s + r;
        total += prev;
        d->id_off[i + 1] = total;
    }
    return lp == c[OC_ID_LEN].end && rp == c[OC_IDS].end ? STORE_CHUNK_OK : STORE_CHUNK_DAMAGED;
}

static int poc3_decode(const unsigned char *b, size_t len, int want, store_orders_dec *d,
                       const char **why)
{
    if (len < POC3_HEAD + 8) {
        *why = "header";
        return STORE_CHUNK_DAMAGED;
    }
    uint32_t n = rd32(b + 4);
    uint64_t unit = rd64(b + 8);
    size_t limit = len - 8, N = n;
    col c[OC__N];
    if (n > STORE_ORDER_CHUNK || (uint64_t)n * 9 > limit - POC3_HEAD ||
        cols_split(b, b + 16, OC__N, POC3_HEAD + 9 * N, limit, c) != 0 ||
        (size_t)(c[OC_TS].end - c[OC_TS].p) < N) {
        *why = "header";
        return STORE_CHUNK_DAMAGED;
    }
    if (orders_room(d, n) != 0) return STORE_CHUNK_NOMEM;
    memcpy(d->hash, b + POC3_HEAD, 8 * N);
    memcpy(d->kind, b + POC3_HEAD + 8 * N, N);
    if (want & STORE_OC_VALUES && (*why = poc3_values(c, N, unit, d)) != NULL)
        return STORE_CHUNK_DAMAGED;
    if (want & STORE_OC_IDS) {
        int r = poc3_ids(c, N, d);
        if (r != STORE_CHUNK_OK) {
            *why = "ids";
            return r;
        }
    }
    orders_point(d, n, want & STORE_OC_IDS ? (d->ids ? d->ids : "") : NULL);
    return STORE_CHUNK_OK;
}

int store_orders_decode(const unsigned char *b, size_t len, int want, store_orders_dec *d,
                        const char **why)
{
    switch (check_magic(b, len, "POC1", "POC2", "POC3")) {
    case 1:
        return poc12_decode(b, len, 0, d, why);
    case 2:
        return poc12_decode(b, len, 1, d, why);
    case 3:
        return poc3_decode(b, len, want, d, why);
    default:
        *why = "checksum";
        return STORE_CHUNK_DAMAGED;
    }
}

void store_orders_dec_release(store_orders_dec *d)
{
    mem_free(d->ts);
    mem_free(d->amount);
    mem_free(d->units);
    mem_free(d->hash);
    mem_free(d->member);
    mem_free(d->items);
    mem_free(d->kind);
    mem_free(d->voided);
    mem_free(d->channel);
    mem_free(d->store);
    mem_free(d->id_off);
    mem_free(d->ids);
    memset(d, 0, sizeof *d);
}
