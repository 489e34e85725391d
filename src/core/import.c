/*
 * import.c -- the importers of SPEC §2: orders (line-item and order-level CSV), members
 * (CSV) and events (JSONL).
 *
 * Each import runs in three steps: parse and validate the whole file into a batch
 * (grouping line items by order_id wherever they are in the file), write the batch to
 * the store in one transaction, and only after the commit apply it to the in-memory
 * model.  A failure at any step leaves both store and model as they were.  Bad rows are
 * reported as "FILE:LINE: column 'X': reason"; a bad row rejects its whole order.  When
 * bad rows are tolerated (--max-errors) a second pass over the file copies them verbatim
 * into the rejects file with a reason column.
 */
#include "core/db.h"

#include "base/bytes.h"
#include "base/err.h"
#include "base/hmap.h"
#include "base/jcanon.h"
#include "base/jscan.h"
#include "base/mem.h"
#include "base/num.h"
#include "base/time.h"
#include "base/trace.h"
#include "ingest/input.h"
#include "loyalty/ledger.h"
#include "loyalty/loyalty.h"
#include "loyalty/program.h"
#include "members/view.h"

#include <ctype.h>
#include <jansson.h>
#include <pthread.h>
#include <sys/mman.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

void patron_import_opts_init(patron_import_opts *o)
{
    memset(o, 0, sizeof *o);
    o->now = PATRON_NULL_TS;
}

enum {
    F_ORDER_ID,
    F_MEMBER_ID,
    F_TS,
    F_SKU,
    F_QTY,
    F_PRICE,
    F_CATEGORY,
    F_BRAND,
    F_CHANNEL,
    F_STORE,
    F_CURRENCY,
    F_ORIGINAL,
    F_AMOUNT,
    F__COUNT
};
static const char *order_fields[F__COUNT] = {
    "order_id", "member_id",         "ts",    "sku",     "qty",
    "price",    "category",          "brand", "channel", "store",
    "currency", "original_order_id", "amount"};

/* The next FIELD=COLUMN entry of a --map list at *p (then moved past it) into field and
 * col (cap bytes each): 1, or 0 at the end.  Entries without '=' are skipped (validate_map
 * refuses them first). */
static int map_next(const char **p, char *field, char *col, size_t cap)
{
    while (*p && **p) {
        const char *s = *p, *end = strchr(s, ',');
        size_t n = end ? (size_t)(end - s) : strlen(s);
        const char *eq = memchr(s, '=', n);
        *p = end ? end + 1 : NULL;
        if (eq) {
            snprintf(field, cap, "%.*s", (int)(eq - s), s);
            snprintf(col, cap, "%.*s", (int)(n - (size_t)(eq - s) - 1), eq + 1);
            return 1;
        }
    }
    return 0;
}

/* Resolves "field=COLUMN,..." for one field name; returns the column name to look for. */
static int map_lookup(const char *map, const char *field, char *out, size_t cap)
{
    char f[128];
    for (const char *p = map; map_next(&p, f, out, cap);)
        if (strcmp(f, field) == 0)
            return 1;
    snprintf(out, cap, "%s", field);
    return 0;
}

static int validate_map(const char *map, const char *const *fields, int nfields, patron_error *err)
{
    for (const char *p = map; p && *p;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', n);
        if (!eq) return err_set(err, PATRON_EUSAGE, "--map: '%.*s' is not FIELD=COLUMN", (int)n, p);
        int ok = 0;
        for (int i = 0; i < nfields && !ok; i++)
            ok = strlen(fields[i]) == (size_t)(eq - p) &&
                 memcmp(fields[i], p, (size_t)(eq - p)) == 0;
        if (!ok && fields != order_fields) ok = 1; /* members and events take any field name */
        if (!ok)
            return err_set(err, PATRON_EUSAGE, "--map: unknown field '%.*s'", (int)(eq - p), p);
        p = end ? end + 1 : NULL;
    }
    return PATRON_OK;
}

typedef struct bad_list {
    uint64_t *lines;
    char **reasons;
    size_t n, cap;
} bad_list;

static int bad_add(bad_list *b, uint64_t line, const char *msg)
{
    if (MEM_GROW(b->lines, b->cap, b->n + 1) != 0) return -1;
    char **r = mem_realloc_array(b->reasons, b->cap, sizeof *r);
    if (!r) return -1;
    b->reasons = r;
    b->lines[b->n] = line;
    b->reasons[b->n] = mem_strdup(msg);
    b->n++;
    return 0;
}

static void bad_release(bad_list *b)
{
    for (size_t i = 0; i < b->n; i++)
        mem_free(b->reasons[i]);
    mem_free(b->lines);
    mem_free(b->reasons);
}

#define PREFETCH_AHEAD 8 /* big-map probes: keys prefetched this far ahead (hmap_prefetch) */

/* A cached dictionary string (up to 24 bytes, zero-padded) and its code; n = 0: empty.
 * Dictionaries are small (SKUs in the thousands) and every line item looks up three of
 * them: hashing and probing the maps was a fifth of an import's instructions. */
#define DCACHE_BITS 12
typedef struct dcache_slot {
    uint64_t w[3];
    uint32_t n, code;
} dcache_slot;

/* The strings -> kind cache of grouping: direct mapped, keyed by the three strings as
 * they sit side by side in a block's bytes (with their lengths), for keys of up to
 * KCACHE_KEY bytes; longer ones take the dictionaries every time.  16k slots (1 MB):
 * with 4k, the 3,430 SKUs of the generated data collided often enough that grouping
 * spent 35 instructions a row more on the dictionaries. */
#define KCACHE_BITS 14
#define KCACHE_KEY  56
typedef struct kcache_slot {
    uint32_t kind;
    uint8_t n[3];
    uint8_t used;
    char key[KCACHE_KEY];
} kcache_slot;

/* One order of the batch, built from its rows. */
typedef struct border { /* 120 bytes: millions at M (decision 0008) */
    uint64_t member_off; /* offset of member id in the batch arena */
    uint64_t id_off;
    int64_t ts;
    int64_t pos_amount, neg_amount, units, neg_units;
    uint64_t hash;
    uint64_t id_h, member_h; /* hmap_hash of the id and of the member id */
    uint64_t first_line;
    uint32_t member_len, id_len;
    uint32_t items, neg_items;
    uint32_t channel, store; /* dictionary codes of the first row that names them */
    uint8_t bad, dup;
} border;

typedef struct batch {
    border *orders;
    size_t n, cap;
    hmap ids;
    char *arena;
    size_t arena_len, arena_cap;
    bad_list bad;
    uint64_t bad_rows;
    const patron_import_opts *opts;
    const char *name;
    /* line items (positive rows of line-item files), in file order.  An item's kind is
     * its (sku, category, brand) codes, kept once per batch: at M 20M items have 3,430
     * kinds, so an item is 20 bytes instead of 28, and grouping looks up one kind per
     * row (row_kind) instead of three dictionary codes. */
    uint32_t *it_order, *it_kind;
    int32_t *it_qty;
    int64_t *it_price;
    size_t n_items, cap_items;
    loyalty_item_kind *kinds;
    size_t n_kinds, cap_kinds;
    hmap kmap; /* the three codes' bytes -> kind (a zeroed hmap is an empty one) */
    kcache_slot *kcache;
    /* per dictionary, a direct-mapped cache of short strings and their codes */
    dcache_slot *dcache[DB_DICT__N];
    /* strings new to the dictionaries: codes continue the stored ones */
    hmap dict[DB_DICT__N];
    uint64_t *new_off[DB_DICT__N];
    uint32_t *new_len[DB_DICT__N];
    size_t n_new[DB_DICT__N], cap_off[DB_DICT__N], cap_len[DB_DICT__N];
} batch;

static int arena_put(batch *b, const char *s, size_t n, uint64_t *off);
static int dict_new(batch *b, int kind, const char *s, size_t n);

/* A string of at most 24 bytes, zero-padded into three words, and its slot in a
 * dictionary's cache. */
static inline size_t dcache_key(const char *s, size_t n, uint64_t w[3])
{
    w[0] = w[1] = w[2] = 0;
    memcpy(w, s, n);
    uint64_t h = (w[0] * 0x9E3779B97F4A7C15ull) ^ (w[1] * 0xC2B2AE3D27D4EB4Full) ^
                 (w[2] * 0x165667B19E3779F9ull) ^ n;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    return (size_t)(h >> (64 - DCACHE_BITS));
}

/* The code of s in dictionary kind: stored, or new in this batch (continuing the stored
 * codes).  Returns 0, or -1 when out of memory. */
static int dict_code(patron_db *db, batch *b, int kind, const char *s, size_t n, uint32_t *code)
{
    if (n == 0) {
        *code = 0;
        return 0;
    }
    uint64_t w[3];
    dcache_slot *c = NULL;
    if (n <= sizeof w && b->dcache[kind]) {
        c = &b->dcache[kind][dcache_key(s, n, w)];
        if (c->n == n && c->w[0] == w[0] && c->w[1] == w[1] && c->w[2] == w[2]) {
            *code = c->code;
            return 0;
        }
    }
    uint64_t h = hmap_hash(s, n);
    if (!hmap_get_hashed(&db->dict[kind], s, n, h, code)) {
        uint32_t fresh = (uint32_t)(db->dict[kind].count + b->n_new[kind] + 1);
        int f = hmap_get_or_put_hashed(&b->dict[kind], s, n, h, fresh, code);
        if (f < 0) return -1;
        if (f == 0 && dict_new(b, kind, s, n) != 0) return -1;
    }
    if (c) {
        memcpy(c->w, w, sizeof w);
        c->n = (uint32_t)n;
        c->code = *code;
    }
    return 0;
}

/* Records s as the next new string of dictionary kind. */
static int dict_new(batch *b, int kind, const char *s, size_t n)
{
    uint64_t off;
    if (MEM_GROW(b->new_off[kind], b->cap_off[kind], b->n_new[kind] + 1) ||
        MEM_GROW(b->new_len[kind], b->cap_len[kind], b->n_new[kind] + 1) ||
        arena_put(b, s, n, &off))
        return -1;
    b->new_off[kind][b->n_new[kind]] = off;
    b->new_len[kind][b->n_new[kind]] = (uint32_t)n;
    b->n_new[kind]++;
    return 0;
}

static int dcache_init(batch *b)
{
    for (int k = 1; k < DB_DICT__N; k++)
        if (!(b->dcache[k] = mem_calloc((size_t)1 << DCACHE_BITS, sizeof(dcache_slot)))) return -1;
    if (!(b->kcache = mem_calloc((size_t)1 << KCACHE_BITS, sizeof(kcache_slot)))) return -1;
    return 0;
}

/* Makes room for n line items in all (the four columns grow together). */
static int items_reserve(batch *b, size_t n)
{
    if (n <= b->cap_items) return 0;
    size_t c[4] = {b->cap_items, b->cap_items, b->cap_items, b->cap_items};
    if (MEM_GROW(b->it_order, c[0], n) || MEM_GROW(b->it_kind, c[1], n) ||
        MEM_GROW(b->it_qty, c[2], n) || MEM_GROW(b->it_price, c[3], n))
        return -1;
    size_t m = c[0];
    for (int i = 1; i < 4; i++)
        if (c[i] < m) m = c[i];
    b->cap_items = m;
    return 0;
}

/* The kind of the codes (sku, cat, brand), made when new.  0, or -1 when out of memory. */
static int kind_code(batch *b, uint32_t sku, uint32_t cat, uint32_t brand, uint32_t *kind)
{
    const uint32_t key[3] = {sku, cat, brand};
    if (b->n_kinds >= UINT32_MAX - 1 || MEM_GROW(b->kinds, b->cap_kinds, b->n_kinds + 1) != 0)
        return -1;
    int found = hmap_get_or_put(&b->kmap, (const char *)key, sizeof key, (uint32_t)b->n_kinds, kind);
    if (found == 0) b->kinds[b->n_kinds++] = (loyalty_item_kind){sku, cat, brand};
    return found < 0 ? -1 : 0;
}

static int item_add_kind(batch *b, uint32_t order, uint32_t kind, int64_t qty, int64_t price)
{
    if (b->n_items == b->cap_items && items_reserve(b, b->n_items + 1) != 0) return -1;
    size_t k = b->n_items++;
    b->it_order[k] = order;
    b->it_kind[k] = kind;
    b->it_qty[k] = qty > INT32_MAX ? INT32_MAX : (int32_t)qty;
    b->it_price[k] = price;
    return 0;
}

static int item_add(batch *b, uint32_t order, uint32_t sku, uint32_t cat, uint32_t brand,
                    int64_t qty, int64_t price)
{
    uint32_t kind;
    return kind_code(b, sku, cat, brand, &kind) ? -1 : item_add_kind(b, order, kind, qty, price);
}

static void items_drop(batch *b)
{
    mem_free(b->it_order);
    mem_free(b->it_kind);
    mem_free(b->it_qty);
    mem_free(b->it_price);
    b->it_order = b->it_kind = NULL;
    b->it_qty = NULL;
    b->it_price = NULL;
    b->n_items = b->cap_items = 0;
}

static void batch_release(batch *b)
{
    mem_free(b->orders);
    hmap_release(&b->ids);
    mem_free(b->arena);
    bad_release(&b->bad);
    mem_free(b->it_order);
    mem_free(b->it_kind);
    mem_free(b->it_qty);
    mem_free(b->it_price);
    mem_free(b->kinds);
    hmap_release(&b->kmap);
    mem_free(b->kcache);
    for (int k = 0; k < DB_DICT__N; k++) {
        mem_free(b->dcache[k]);
        hmap_release(&b->dict[k]);
        mem_free(b->new_off[k]);
        mem_free(b->new_len[k]);
    }
}

/*
 * The stored line items of a batch (those of orders with order_ok[o] set) to the store,
 * as columns of up to STORE_ITEM_CHUNK items, in file order.  Items come in runs of one
 * order each (its id hashed once per run).  The code columns are spread out of the
 * items' kinds; the qty and price of a stretch with every item stored are handed over
 * in place, those of one with items of bad or duplicate orders are gathered first.
 */
static int write_item_chunks(patron_db *db, batch *b, const uint32_t *order_ok, loyalty_job *lj,
                             patron_error *err)
{
    uint64_t *run_hash = mem_alloc_array(STORE_ITEM_CHUNK, sizeof *run_hash);
    uint32_t *run_len = mem_alloc_array(STORE_ITEM_CHUNK, sizeof *run_len);
    uint32_t *codes = mem_alloc_array(STORE_ITEM_CHUNK, 3 * sizeof *codes);
    int32_t *qty = NULL;
    int64_t *price = NULL;
    int rc = run_hash && run_len && codes ? PATRON_OK : err_set(err, PATRON_ENOMEM, "out of memory");
    for (size_t i = 0; i < b->n_items && rc == PATRON_OK;) {
        size_t n = 0, start = i;
        for (; i < b->n_items && n < STORE_ITEM_CHUNK; i++)
            n += order_ok[b->it_order[i]] != 0;
        if (n == 0) break;
        store_items c = {(uint32_t)n,         0, run_hash, run_len, codes, codes + STORE_ITEM_CHUNK,
                         codes + 2 * STORE_ITEM_CHUNK, b->it_qty + start, b->it_price + start};
        int all = n == i - start;
        if (!all && !qty && (!(qty = mem_alloc_array(STORE_ITEM_CHUNK, sizeof *qty)) ||
                             !(price = mem_alloc_array(STORE_ITEM_CHUNK, sizeof *price)))) {
            rc = err_set(err, PATRON_ENOMEM, "out of memory");
            break;
        }
        size_t k = 0;
        for (size_t j = start; j < i; j++) {
            if (!all && !order_ok[b->it_order[j]]) continue;
            const loyalty_item_kind *d = &b->kinds[b->it_kind[j]];
            codes[k] = d->sku;
            codes[STORE_ITEM_CHUNK + k] = d->category;
            codes[2 * STORE_ITEM_CHUNK + k] = d->brand;
            if (!all) {
                qty[k] = b->it_qty[j];
                price[k] = b->it_price[j];
            }
            k++;
        }
        if (!all) { /* some items are not stored: the others' qty and price, gathered */
            c.qty = qty;
            c.price = price;
        }
        uint32_t last = UINT32_MAX;
        for (size_t j = start; j < i; j++) {
            uint32_t o = b->it_order[j];
            if (!order_ok[o]) continue;
            if (o != last) {
                const border *bo = &b->orders[o];
                run_hash[c.runs] = XXH3_64bits(b->arena + bo->id_off, bo->id_len);
                run_len[c.runs++] = 0;
                last = o;
            }
            run_len[c.runs - 1]++;
        }
        rc = store_items_put(db->st, &c, err);
        rc = loyalty_import_poll(lj, rc, err); /* the ledger's chunks so far, between */
    }
    mem_free(run_hash);
    mem_free(run_len);
    mem_free(codes);
    mem_free(qty);
    mem_free(price);
    return rc;
}

static int write_dicts(patron_db *db, batch *b, patron_error *err)
{
    int rc = PATRON_OK;
    for (int k = 1; k < DB_DICT__N && rc == PATRON_OK; k++)
        for (size_t i = 0; i < b->n_new[k] && rc == PATRON_OK; i++)
            rc = store_dict_put(db->st, k, (uint32_t)(db->dict[k].count + i + 1),
                                b->arena + b->new_off[k][i], b->new_len[k][i], err);
    return rc;
}

static int apply_dicts(patron_db *db, batch *b)
{
    for (int k = 1; k < DB_DICT__N; k++) {
        uint32_t base = (uint32_t)db->dict[k].count + 1;
        for (size_t i = 0; i < b->n_new[k]; i++) {
            if (hmap_put(&db->dict[k], b->arena + b->new_off[k][i], b->new_len[k][i],
                         base + (uint32_t)i))
                return PATRON_ENOMEM;
            view_dict_add(db, k, base + (uint32_t)i, b->arena + b->new_off[k][i], b->new_len[k][i]);
        }
    }
    return PATRON_OK;
}

/* Keeps n bytes of s in the arena, which keeps 16 bytes of slack after its last string
 * for bytes_eq16.  arena_put16: s has the slack of bytes.h too. */
static int arena_put(batch *b, const char *s, size_t n, uint64_t *off)
{
    if (MEM_GROW(b->arena, b->arena_cap, b->arena_len + n + 16) != 0) return -1;
    memcpy(b->arena + b->arena_len, s, n);
    *off = b->arena_len;
    b->arena_len += n;
    return 0;
}

static int arena_put16(batch *b, const char *s, size_t n, uint64_t *off)
{
    if (MEM_GROW(b->arena, b->arena_cap, b->arena_len + n + 16) != 0) return -1;
    bytes_copy16(b->arena + b->arena_len, s, n);
    *off = b->arena_len;
    b->arena_len += n;
    return 0;
}

/* A bad row's reason: fmt with the value (its first 64 bytes) for its "%.*s". */
static void reason_format(char *reason, size_t cap, const char *fmt, const char *v, size_t vn)
{
    snprintf(reason, cap, fmt, (int)(vn > 64 ? 64 : vn), v);
}

static void report_reason(batch *b, uint64_t line, const char *col, const char *reason)
{
    char msg[1024];
    snprintf(msg, sizeof msg, "%s:%llu: column '%s': %s", b->name, (unsigned long long)line, col,
             reason);
    if (b->opts->report) b->opts->report(b->opts->report_ctx, msg);
    bad_add(&b->bad, line, reason);
    b->bad_rows++;
}

static void report(batch *b, uint64_t line, const char *col, const char *fmt, const char *v,
                   size_t vn)
{
    char reason[512];
    reason_format(reason, sizeof reason, fmt, v, vn);
    report_reason(b, line, col, reason);
}

/* The base currency and exchange rates an import converts with, and the message (a
 * report() format) for a currency without a rate. */
static int fx_setup(patron_db *db, int stored, loyalty_fx *fx, char *msg, size_t cap,
                    patron_error *err)
{
    int rc = stored ? loyalty_fx_stored(db, fx, err) : loyalty_fx_get(db, fx, err);
    if (rc == PATRON_OK)
        snprintf(msg, cap, "'%%.*s' is not the base currency %s and the program has no "
                 "exchange rate for it", fx->base);
    return rc;
}

static int write_rejects(const char *path, char delim, const char *rejects, batch *b,
                         int order_level, const int *col, patron_error *err)
{
    FILE *f = fopen(rejects, "w");
    if (!f) return err_set(err, PATRON_EIO, "cannot write rejects file '%s'", rejects);
    csv_reader *r;
    int rc = csv_open(path, delim, &r, err);
    if (rc) {
        fclose(f);
        return rc;
    }
    const csv_field *fl;
    size_t nf;
    size_t bi = 0;
    int first = 1;
    while ((rc = csv_next(r, &fl, &nf, err)) == 1) {
        size_t rawn;
        const char *raw = csv_raw(r, &rawn);
        if (first) {
            fprintf(f, "%.*s%creason\n", (int)rawn, raw, delim ? delim : ',');
            first = 0;
            continue;
        }
        uint64_t line = csv_line(r);
        const char *reason = NULL;
        while (bi < b->bad.n && b->bad.lines[bi] < line)
            bi++;
        if (bi < b->bad.n && b->bad.lines[bi] == line)
            reason = b->bad.reasons[bi];
        else if (!order_level || col[F_ORDER_ID] >= 0) {
            uint32_t oi;
            if (col[F_ORDER_ID] >= 0 && (size_t)col[F_ORDER_ID] < nf &&
                hmap_get(&b->ids, fl[col[F_ORDER_ID]].p, fl[col[F_ORDER_ID]].n, &oi) &&
                b->orders[oi].bad)
                reason = "another row of this order is bad";
        }
        if (reason) {
            fprintf(f, "%.*s%c\"", (int)rawn, raw, delim ? delim : ',');
            for (const char *c = reason; *c; c++) {
                if (*c == '"') fputc('"', f);
                fputc(*c, f);
            }
            fputs("\"\n", f);
        }
    }
    csv_free(r);
    if (fclose(f) != 0 && rc == 0)
        return err_set(err, PATRON_EIO, "cannot write rejects file '%s'", rejects);
    return rc < 0 ? rc : PATRON_OK;
}

/* The bad lines of a JSONL file, one JSON object each: {"line": N, "reason": "...",
 * "record": "the line as it was"} (the record as a string: it may not be JSON at all). */
static int write_rejects_jsonl(const char *path, const char *rejects, const batch *b,
                               patron_error *err)
{
    FILE *f = fopen(rejects, "w");
    if (!f) return err_set(err, PATRON_EIO, "cannot write rejects file '%s'", rejects);
    line_reader *r;
    int rc = lines_open(path, &r, err);
    if (rc) {
        fclose(f);
        return rc;
    }
    const char *line;
    size_t n, bi = 0;
    while (bi < b->bad.n && (rc = lines_next(r, &line, &n, err)) == 1) {
        uint64_t ln = lines_line(r);
        while (bi < b->bad.n && b->bad.lines[bi] < ln)
            bi++;
        if (bi >= b->bad.n || b->bad.lines[bi] != ln)
            continue;
        json_t *o = json_pack("{s:I,s:s,s:s%}", "line", (json_int_t)ln, "reason",
                              b->bad.reasons[bi], "record", line, n);
        char *t = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        if (t) {
            fputs(t, f);
            fputc('\n', f);
        } else {
            rc = err_set(err, PATRON_ENOMEM, "out of memory writing '%s'", rejects);
        }
        free(t);
        json_decref(o);
        while (bi < b->bad.n && b->bad.lines[bi] == ln)
            bi++;
        if (rc < 0) break;
    }
    lines_free(r);
    if (fclose(f) != 0 && rc >= 0)
        return err_set(err, PATRON_EIO, "cannot write rejects file '%s'", rejects);
    return rc < 0 ? rc : PATRON_OK;
}

static char sniff_delim(const char *path, char d)
{
    if (d) return d;
    size_t n = strlen(path);
    if (n > 4 && strcmp(path + n - 4, ".txt") == 0) return ' ';
    return ',';
}

/* The stored form of a batch order: an order whose rows are all negative is a return
 * (its items are the returned rows); order-level files have no line items. */
static void border_to_store(const batch *b, const border *o, int order_level, int64_t member,
                            store_order *so)
{
    int ret = o->items == 0 && o->neg_items > 0;
    so->id = b->arena + o->id_off;
    so->idn = o->id_len;
    so->member = member;
    so->ts = o->ts;
    so->amount = o->pos_amount + o->neg_amount; /* both checked at parse: no overflow */
    so->kind = ret;
    so->items = order_level ? 0 : ret ? o->neg_items : o->items;
    so->units = order_level ? 0 : ret ? o->neg_units : o->units;
    so->hash = o->hash;
    so->voided = 0;
    so->channel = o->channel;
    so->store = o->store;
}

/* Opens a CSV file and reads its header row (required). */
static int open_with_header(const char *path, char delim, csv_reader **r, const csv_field **fl,
                            size_t *nf, patron_error *err)
{
    int rc = csv_open(path, delim, r, err);
    if (rc) return rc;
    rc = csv_next(*r, fl, nf, err);
    if (rc <= 0) {
        csv_free(*r);
        return rc < 0
                   ? rc
                   : err_set(err, PATRON_EINPUT, "%s: empty file (a header row is required)", path);
    }
    return PATRON_OK;
}

/* Applies a stored batch of orders to the model and the member view (members first:
 * orders reference them). */
static int apply_orders_batch(patron_db *db, batch *b, int order_level, char **new_ids,
                              const int64_t *new_en, const uint32_t *new_len, const uint64_t *new_h,
                              size_t n_new, patron_import_result *res, patron_error *err)
{
    uint32_t *dbidx = NULL;
    store_order so;
    int rc;
    rc = apply_dicts(db, b);
    dbidx = mem_alloc_array(b->n ? b->n : 1, sizeof *dbidx);
    if (rc == 0 && !dbidx) rc = PATRON_ENOMEM;
    /* Into a model without orders, a batch whose orders are all stored hands its
     * order-id map over: it holds exactly the ids, with their model indexes (the batch
     * indexes), so the 20M-key rebuild of it at M is skipped.  The model's map is marked
     * invalid while the orders are added so that db_order_add does not put them again. */
    size_t stored = 0;
    for (size_t i = 0; i < b->n; i++)
        stored += !b->orders[i].bad && !b->orders[i].dup;
    int handover = rc == 0 && db->order_ids_valid && db->n_orders == 0 &&
                   db->order_ids.count == 0 && stored == b->n && b->ids.count == b->n;
    if (handover) {
        hmap_release(&db->order_ids);
        db->order_ids = b->ids;
        hmap_init(&b->ids);
        db->order_ids_valid = 0;
    }
    if (rc == 0) rc = db_orders_reserve(db, b->n);
    if (rc == 0 && hmap_reserve(&db->member_ids, n_new, n_new * 12) != 0) rc = PATRON_ENOMEM;
    /* Apply to the model: members first (orders reference them). */
    uint64_t phash = store_profile_hash("{}");
    for (size_t k = 0; k < n_new && rc == 0; k++) {
        if (k + PREFETCH_AHEAD < n_new) hmap_prefetch(&db->member_ids, new_h[k + PREFETCH_AHEAD]);
        rc = db_member_add_hashed(db, new_ids[k], new_len[k], new_h[k], new_en[k], phash, NULL);
    }
    for (size_t i = 0; i < b->n && rc == 0; i++) {
        if (i + PREFETCH_AHEAD < b->n) {
            const border *a = &b->orders[i + PREFETCH_AHEAD];
            if (db->order_ids_valid) hmap_prefetch(&db->order_ids, a->id_h);
            if (a->member_len) hmap_prefetch(&db->member_ids, a->member_h);
        }
        border *o = &b->orders[i];
        if (o->bad || o->dup) continue;
        uint32_t mi = 0;
        int64_t member = -1;
        if (o->member_len && hmap_get_hashed(&db->member_ids, b->arena + o->member_off,
                                             o->member_len, o->member_h, &mi))
            member = mi;
        border_to_store(b, o, order_level, member, &so);
        rc = db_order_add_hashed(db, &so, o->id_h);
        if (rc == 0) {
            res->inserted++;
            res->items += (uint64_t)so.items;
            dbidx[i] = (uint32_t)(db->n_orders - 1);
            view_order(db, dbidx[i]);
        }
    }
    /* The member view takes the line items of the committed orders. */
    for (size_t j = 0; j < b->n_items && rc == 0 && db->view; j++) {
        border *o = &b->orders[b->it_order[j]];
        const loyalty_item_kind *d = &b->kinds[b->it_kind[j]];
        if (!o->bad && !o->dup)
            view_item(db, dbidx[b->it_order[j]], d->sku, d->category, d->brand, b->it_qty[j],
                      b->it_price[j]);
    }
    if (handover) db->order_ids_valid = 1;
    if (rc) rc = err_set(err, rc, "out of memory applying the import; reopen the database");
    res->members_created = n_new;
    mem_free(dbidx);
    return rc;
}

/* After a rolled-back import that had applied its batch to memory ahead of the commit. */
static void rollback_model(patron_db *db, patron_import_result *res, patron_error *err)
{
    patron_error e2 = {0};
    res->inserted = 0;
    res->items = 0;
    res->members_created = 0;
    if (db_model_reload(db, &e2) != PATRON_OK) {
        char first[sizeof err->message];
        memcpy(first, err->message, sizeof first);
        err_set(err, err->code ? err->code : PATRON_ESTORE,
                "%s; then reloading the model failed: %s (reopen the database)", first, e2.message);
    }
}

/* ---- the rows of an orders file: checked one by one, then grouped ------------------ */

/*
 * Rows are read in blocks.  row_check() does all that depends on one row alone --
 * parsing, validation with its reports, the row's share of the order's content hash --
 * and copies the strings grouping needs out of the reader's buffer; group_block() puts
 * checked rows into orders, line items and dictionaries in file order.  With two
 * threads a reader thread checks the next blocks while this one groups (the reader's
 * side, CSV included, was about half of the parse instructions); with one they take
 * turns.  Either way the batch is the same, and so are the reports and their order: a
 * row's own reports come before those of its grouping, as with one loop.
 */
#define ROW_BLOCK       4096
#define ROW_BLOCKS      64 /* blocks in flight between the two threads (decision 0009) */
#define ROWS_THREAD_MIN ((uint64_t)4 << 20) /* smaller files are read on one thread */

/* The strings of a row that grouping reads, in this order in the block's bytes. */
enum { RS_OID, RS_MID, RS_SKU, RS_CAT, RS_BRAND, RS_CHAN, RS_STORE, RS__N };
static const int rs_field[RS__N] = {F_ORDER_ID, F_MEMBER_ID, F_SKU,  F_CATEGORY,
                                    F_BRAND,    F_CHANNEL,   F_STORE};

typedef struct crow {
    uint64_t line;
    int64_t ts, qty, price, amount;
    uint64_t hash;         /* the row's term of its order's content hash (good rows) */
    uint64_t sku_h;        /* XXH3 of its SKU (good rows), for the kind cache */
    uint64_t oid_h, mid_h; /* hmap_hash of the order and member ids; 0: as the row before */
    size_t off;            /* string f is at the block's bytes + off + rel[f], len[f] bytes */
    uint32_t rel[RS__N], len[RS__N];
    uint32_t nrep; /* its own reports, the next nrep of the block's */
    int bad;
} crow;

typedef struct crep {
    const char *col;
    char reason[512];
} crep;

/* Bytes kept readable past a block's last string: row_kind compares up to 32 bytes from
 * a row's SKU with two 16-byte loads (bytes.h). */
#define ROW_SLACK 32

typedef struct rblock {
    crow *rows;
    size_t n;
    char *bytes;
    size_t nbytes, cap_bytes;
    crep *reps;
    size_t nreps, cap_reps;
    int end;          /* after these rows: 1 the input ends, < 0 reading failed */
    patron_error err; /* when end < 0 */
} rblock;

/* What row_check() reads with, owned by the reading side. */
typedef struct rreader {
    csv_reader *r;
    const int *col;
    int order_level;
    const loyalty_fx *fx;
    const char *curmsg;
    const patron_import_opts *opts;
    size_t need_nf;   /* a row with fewer fields is padded with empty ones, into pad */
    csv_field *pad;
    hmap occur;       /* content hash -> occurrences, order-level rows without an id */
    char last_ts[40]; /* the last timestamp parsed, and its value */
    size_t last_ts_n;
    int64_t last_ts_v;
    uint64_t rows;
} rreader;

/* The order and member ids of the row before (when short), for id_hash. */
typedef struct idmemo {
    char last_id[2][40];
    size_t last_id_n[2];
} idmemo;

/* hmap_hash of s, or 0 when s is the id kept in slot k (then kept as the new one). */
static uint64_t id_hash(idmemo *m, int k, const char *s, size_t n)
{
    if (n == m->last_id_n[k] && bytes_eq16(s, m->last_id[k], n)) return 0;
    m->last_id_n[k] = n <= sizeof m->last_id[k] ? n : SIZE_MAX;
    if (n <= sizeof m->last_id[k]) memcpy(m->last_id[k], s, n);
    return hmap_hash(s, n);
}

static int crow_report(rblock *k, crow *w, const char *col, const char *fmt, const char *v,
                       size_t vn)
{
    w->bad = 1;
    if (k->nreps == k->cap_reps && MEM_GROW(k->reps, k->cap_reps, k->nreps + 1) != 0) return -1;
    crep *e = &k->reps[k->nreps++];
    e->col = col;
    reason_format(e->reason, sizeof e->reason, fmt, v, vn);
    w->nrep++;
    return 0;
}

/* What FIELD() gives for a missing column: empty, with the slack of a CSV field. */
static const char no_field[CSV_FIELD_SLACK];

/* Checks one row into k->rows[k->n] (0, or -1 when out of memory). */
static int row_check(rreader *rd, rblock *k, const csv_field *fl, size_t nf, uint64_t line)
{
    const int *col = rd->col;
    crow *w = &k->rows[k->n];
    w->line = line;
    w->ts = w->price = w->amount = 0;
    w->qty = 1;
    w->hash = 0;
    w->nrep = 0;
    w->bad = 0;
    if (nf < rd->need_nf) { /* a short row: its missing fields are empty */
        for (size_t i = 0; i < rd->need_nf; i++)
            rd->pad[i] = i < nf ? fl[i] : (csv_field){no_field, 0};
        fl = rd->pad;
    }
#define FIELD(f) (col[f] >= 0 ? fl[col[f]] : (csv_field){no_field, 0})
#define BAD(f, fmt, v, vn)                                                                         \
    do {                                                                                           \
        if (crow_report(k, w, order_fields[f], fmt, v, vn) != 0) return -1;                        \
    } while (0)
    csv_field tsf = FIELD(F_TS), oid = FIELD(F_ORDER_ID);
    char idbuf[64];
    if (tsf.n == rd->last_ts_n && bytes_eq32(tsf.p, rd->last_ts, tsf.n)) {
        w->ts = rd->last_ts_v; /* the rows of an order usually repeat its timestamp */
    } else if (tsf.n == 0 || time_parse(tsf.p, tsf.n, &w->ts) != 0) {
        BAD(F_TS, "cannot parse '%.*s' as a timestamp", tsf.p, tsf.n);
    } else if (tsf.n <= sizeof rd->last_ts) {
        memcpy(rd->last_ts, tsf.p, tsf.n);
        rd->last_ts_n = tsf.n;
        rd->last_ts_v = w->ts;
    }
    csv_field cur = FIELD(F_CURRENCY);
    int64_t fxr = loyalty_fx_rate(rd->fx, cur.p, cur.n); /* prices below are converted */
    if (fxr == 0) BAD(F_CURRENCY, rd->curmsg, cur.p, cur.n);
    if (rd->order_level) {
        csv_field af = FIELD(F_AMOUNT);
        if (num_parse_money(af.p, af.n, &w->amount) != 0)
            BAD(F_AMOUNT, "cannot parse '%.*s' as an amount", af.p, af.n);
        else if (fxr > 0 && loyalty_fx_convert(w->amount, fxr, &w->amount) != 0)
            BAD(F_AMOUNT, "'%.*s' overflows in the base currency", af.p, af.n);
        if (col[F_ORDER_ID] < 0) {
            size_t rawn;
            const char *raw = csv_raw(rd->r, &rawn);
            uint64_t h = XXH3_64bits(raw, rawn);
            uint32_t cnt = 0;
            hmap_get(&rd->occur, (const char *)&h, sizeof h, &cnt);
            if (hmap_put(&rd->occur, (const char *)&h, sizeof h, cnt + 1) != 0) return -1;
            snprintf(idbuf, sizeof idbuf, "h%016llx-%u", (unsigned long long)h, cnt);
            oid.p = idbuf;
            oid.n = strlen(idbuf);
        }
    } else {
        csv_field q = FIELD(F_QTY), pr = FIELD(F_PRICE), sku = FIELD(F_SKU);
        if (num_parse_int(q.p, q.n, &w->qty) != 0)
            BAD(F_QTY, "cannot parse '%.*s' as a whole number", q.p, q.n);
        else if (w->qty == 0)
            BAD(F_QTY, "quantity '%.*s' is zero", q.p, q.n);
        if (num_parse_money(pr.p, pr.n, &w->price) != 0)
            BAD(F_PRICE, "cannot parse '%.*s' as a price", pr.p, pr.n);
        else if (w->price < 0)
            BAD(F_PRICE, "price '%.*s' is negative", pr.p, pr.n);
        else if (fxr > 0 && loyalty_fx_convert(w->price, fxr, &w->price) != 0)
            BAD(F_PRICE, "'%.*s' overflows in the base currency", pr.p, pr.n);
        if (sku.n == 0) BAD(F_SKU, "empty value%.*s", "", 0);
        if (!w->bad && num_mul_i64(w->qty, w->price, &w->amount) != 0)
            BAD(F_QTY, "amount of '%.*s' x price overflows", q.p, q.n);
    }
#undef BAD
    /* The strings are fields of the record (unescaped ones are shorter than they are in
     * it) or the id made above: room for the record and idbuf is room for them. */
    size_t most;
    (void)csv_raw(rd->r, &most);
    most += sizeof idbuf + ROW_SLACK;
    if (k->nbytes + most > k->cap_bytes && MEM_GROW(k->bytes, k->cap_bytes, k->nbytes + most) != 0)
        return -1;
    w->off = k->nbytes;
    char *at = k->bytes + k->nbytes;
    uint32_t rel = 0;
    for (int i = 0; i < RS__N; i++) {
        csv_field v = i == RS_OID ? oid : FIELD(rs_field[i]);
        w->rel[i] = rel;
        w->len[i] = (uint32_t)v.n;
        bytes_copy16(at + rel, v.p, v.n); /* fields have slack */
        rel += (uint32_t)v.n;
    }
    k->nbytes += rel;
#undef FIELD
    k->n++;
    return 0;
}

/* Reads and checks the next ROW_BLOCK rows (fewer at the end) into k. */
static void rblock_fill(rreader *rd, rblock *k)
{
    k->n = k->nbytes = k->nreps = 0;
    k->end = 0;
    const csv_field *fl;
    size_t nf;
    while (k->n < ROW_BLOCK) {
        int rc = csv_next(rd->r, &fl, &nf, &k->err);
        if (rc <= 0) {
            k->end = rc < 0 ? rc : 1;
            return;
        }
        if (row_check(rd, k, fl, nf, csv_line(rd->r)) != 0) {
            k->end = err_set(&k->err, PATRON_ENOMEM, "out of memory");
            return;
        }
        if (rd->opts->progress && (++rd->rows & 0xffff) == 0)
            rd->opts->progress(rd->opts->progress_ctx, csv_consumed(rd->r), csv_size(rd->r));
    }
}

/*
 * The hashes of the checked rows of k: each row's term of its order's content hash (good
 * rows), and the hmap hashes of its order and member ids (0: as the row before's).
 * Grouping works them out, not the reader: the reader is the longer side of the parse.
 */
static void block_hashes(rblock *k, idmemo *m)
{
    for (size_t i = 0; i < k->n; i++) {
        crow *w = &k->rows[i];
        const char *at = k->bytes + w->off;
        w->oid_h = id_hash(m, 0, at + w->rel[RS_OID], w->len[RS_OID]);
        w->mid_h = id_hash(m, 1, at + w->rel[RS_MID], w->len[RS_MID]);
        if (!w->bad) {
            int64_t hv[4] = {w->ts, w->qty, w->price, w->amount};
            w->sku_h = XXH3_64bits(at + w->rel[RS_SKU], w->len[RS_SKU]);
            w->hash = XXH3_64bits(hv, sizeof hv) ^ w->sku_h;
        }
    }
}

/* The kind of a good row's line item: from the cache, else from the dictionaries (and
 * then cached).  The SKU, category and brand are side by side in the block's bytes, in
 * that order (row_check).  0, or -1 when out of memory. */
static int row_kind(patron_db *db, batch *b, const crow *w, const char *const sp[RS__N],
                    uint32_t *kind)
{
    size_t ns = w->len[RS_SKU], nc = w->len[RS_CAT], nb = w->len[RS_BRAND], n = ns + nc + nb;
    kcache_slot *c = NULL;
    if (n <= KCACHE_KEY && nc < 256 && nb < 256) {
        uint64_t h = (w->sku_h ^ (nc * 0x9E3779B97F4A7C15ull + nb)) * 0xBF58476D1CE4E5B9ull;
        c = &b->kcache[h >> (64 - KCACHE_BITS)];
        if (c->used && c->n[0] == ns && c->n[1] == nc && c->n[2] == nb &&
            bytes_eq32(c->key, sp[RS_SKU], n)) {
            *kind = c->kind;
            return 0;
        }
    }
    uint32_t cs, cc, cb;
    if (dict_code(db, b, DB_DICT_SKU, sp[RS_SKU], ns, &cs) ||
        dict_code(db, b, DB_DICT_CATEGORY, sp[RS_CAT], nc, &cc) ||
        dict_code(db, b, DB_DICT_BRAND, sp[RS_BRAND], nb, &cb) || kind_code(b, cs, cc, cb, kind))
        return -1;
    if (c) {
        c->used = 1;
        c->n[0] = (uint8_t)ns;
        c->n[1] = (uint8_t)nc;
        c->n[2] = (uint8_t)nb;
        memcpy(c->key, sp[RS_SKU], n);
        c->kind = *kind;
    }
    return 0;
}

/* Puts the checked rows of k into the batch.  *last_oi: the order of the previous row;
 * *id_h: the hashes of the previous row's order and member ids; m: its ids. */
static int group_block(patron_db *db, batch *b, rblock *k, int order_level, uint32_t *last_oi,
                       uint64_t id_h[2], idmemo *m, patron_import_result *res, patron_error *err)
{
    block_hashes(k, m);
    const crep *rep = k->reps;
    for (size_t i = 0; i < k->n; i++) {
        const crow *w = &k->rows[i];
        uint64_t line = w->line;
        if (i + PREFETCH_AHEAD < k->n && w[PREFETCH_AHEAD].oid_h)
            hmap_prefetch(&b->ids, w[PREFETCH_AHEAD].oid_h);
        if (w->oid_h) id_h[0] = w->oid_h;
        if (w->mid_h) id_h[1] = w->mid_h;
        res->rows++;
        for (uint32_t j = 0; j < w->nrep; j++, rep++)
            report_reason(b, line, rep->col, rep->reason);
        const char *sp[RS__N];
        for (int f = 0; f < RS__N; f++)
            sp[f] = k->bytes + w->off + w->rel[f];
        size_t oidn = w->len[RS_OID], midn = w->len[RS_MID];
        if (oidn == 0) {
            report(b, line, order_fields[F_ORDER_ID], "empty value%.*s", "", 0);
            continue;
        }
        uint32_t oi;
        int found;
        if (*last_oi != UINT32_MAX && b->orders[*last_oi].id_len == oidn &&
            bytes_eq16(b->arena + b->orders[*last_oi].id_off, sp[RS_OID], oidn)) {
            oi = *last_oi; /* rows of an order are usually adjacent: no probe */
            found = 1;
        } else {
            found = hmap_get_or_put_hashed(&b->ids, sp[RS_OID], oidn, id_h[0], (uint32_t)b->n, &oi);
        }
        if (found < 0 || (!found && MEM_GROW(b->orders, b->cap, b->n + 1) != 0))
            return err_set(err, PATRON_ENOMEM, "out of memory");
        *last_oi = oi;
        if (!found) {
            b->n++;
            border *o = &b->orders[oi];
            memset(o, 0, sizeof *o);
            o->ts = w->ts;
            o->first_line = line;
            o->id_len = (uint32_t)oidn;
            o->member_len = (uint32_t)midn;
            o->id_h = id_h[0];
            o->member_h = id_h[1];
            if (arena_put16(b, sp[RS_OID], oidn, &o->id_off) ||
                arena_put16(b, sp[RS_MID], midn, &o->member_off))
                return err_set(err, PATRON_ENOMEM, "out of memory");
        }
        border *o = &b->orders[oi];
        if (midn != o->member_len || !bytes_eq16(b->arena + o->member_off, sp[RS_MID], midn)) {
            report(b, line, order_fields[F_MEMBER_ID],
                   "member '%.*s' differs from the member of the order's first row", sp[RS_MID],
                   midn);
            o->bad = 1;
            continue;
        }
        if (w->bad) {
            o->bad = 1;
            continue;
        }
        int64_t amount = w->amount, qty = w->qty;
        if (w->ts < o->ts) o->ts = w->ts;
        int64_t pos = o->pos_amount, neg = o->neg_amount, tot;
        if ((amount < 0 ? num_add_i64(neg, amount, &neg) : num_add_i64(pos, amount, &pos)) != 0 ||
            num_add_i64(pos, neg, &tot) != 0) {
            report(b, line, order_fields[order_level ? F_AMOUNT : F_QTY],
                   "the order's amount overflows at this row%.*s", "", 0);
            o->bad = 1;
            continue;
        }
        if ((amount < 0 ? o->neg_items : o->items) == UINT32_MAX) {
            report(b, line, order_fields[F_ORDER_ID],
                   "the order has more than 4294967295 rows at this row%.*s", "", 0);
            o->bad = 1;
            continue;
        }
        if (amount < 0) {
            o->neg_amount += amount;
            o->neg_units += qty;
            o->neg_items++;
        } else {
            o->pos_amount += amount;
            o->units += qty;
            o->items++;
            if (!order_level) {
                uint32_t kind;
                if (row_kind(db, b, w, sp, &kind) || item_add_kind(b, oi, kind, qty, w->price))
                    return err_set(err, PATRON_ENOMEM, "out of memory");
            }
        }
        if ((!o->channel && w->len[RS_CHAN] &&
             dict_code(db, b, DB_DICT_CHANNEL, sp[RS_CHAN], w->len[RS_CHAN], &o->channel)) ||
            (!o->store && w->len[RS_STORE] &&
             dict_code(db, b, DB_DICT_STORE, sp[RS_STORE], w->len[RS_STORE], &o->store)))
            return err_set(err, PATRON_ENOMEM, "out of memory");
        o->hash += w->hash;
    }
    return PATRON_OK;
}

#define PF_ARRAYS 4 /* the line-item columns */

/* Blocks handed from the reader thread to the grouping one. */
typedef struct rpipe {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    rblock blk[ROW_BLOCKS];
    int full[ROW_BLOCKS];
    int stop; /* grouping gave up: the reader stops too */
    rreader *rd;
    /* Prefaulting (prefault_piece): the batch's arrays as reserved before the reader
     * starts, how far grouping has filled them (published after each block), and how
     * far either side has faulted them in. */
    char *pf_item[PF_ARRAYS];
    size_t pf_item_size[PF_ARRAYS], pf_cap_items, pf_cap_orders;
    char *pf_orders, *pf_slots;
    size_t pf_slots_bytes;
    size_t items_at, orders_at;                 /* atomic */
    size_t items_done, orders_done, slots_done; /* faulted in (claimed), under mu */
    double waited[2]; /* seconds the reader and the grouping waited (PATRON_TRACE only) */
    double faulted[2]; /* of which faulting in (prefault_piece) */
} rpipe;

#define PF_ITEMS  ((size_t)1 << 19)  /* line items faulted in ahead of grouping (10 MB) */
#define PF_ORDERS ((size_t)1 << 17)  /* orders faulted in ahead (18 MB) */

/*
 * Fresh batch memory costs a page fault (and the zeroing of a page) where it is first
 * written, which is costly on this kind of virtual machine.  Whichever side of the parse
 * would wait (the reader when every block is full, grouping when none is) faults in a
 * piece of the batch's arrays instead: the window ahead of where grouping writes, then
 * the order-id map (written at random).  Faulting in changes no byte, so it needs no
 * ordering with the writes; it only moves where the faults are taken.  Pieces are
 * claimed under pp->mu (held on entry and on return) and done without it.
 */
#define PF_PIECE ((size_t)2 << 20) /* bytes of one piece, about */
static int prefault_piece(rpipe *pp, int side)
{
    size_t it = __atomic_load_n(&pp->items_at, __ATOMIC_RELAXED) + PF_ITEMS;
    size_t ot = __atomic_load_n(&pp->orders_at, __ATOMIC_RELAXED) + PF_ORDERS;
    if (it > pp->pf_cap_items) it = pp->pf_cap_items;
    if (ot > pp->pf_cap_orders) ot = pp->pf_cap_orders;
    char *p[PF_ARRAYS];
    size_t from[PF_ARRAYS], to[PF_ARRAYS], n = 0;
    if (it > pp->items_done) {
        size_t row = 0;
        for (int a = 0; a < PF_ARRAYS; a++)
            row += pp->pf_item_size[a];
        size_t end = pp->items_done + PF_PIECE / row;
        if (end > it) end = it;
        for (int a = 0; a < PF_ARRAYS; a++, n++) {
            p[n] = pp->pf_item[a];
            from[n] = pp->items_done * pp->pf_item_size[a];
            to[n] = end * pp->pf_item_size[a];
        }
        pp->items_done = end;
    } else if (ot > pp->orders_done) {
        size_t end = pp->orders_done + PF_PIECE / sizeof(border);
        if (end > ot) end = ot;
        p[n] = pp->pf_orders;
        from[n] = pp->orders_done * sizeof(border);
        to[n++] = end * sizeof(border);
        pp->orders_done = end;
    } else if (pp->slots_done < pp->pf_slots_bytes) {
        size_t end = pp->slots_done + PF_PIECE;
        if (end > pp->pf_slots_bytes) end = pp->pf_slots_bytes;
        p[n] = pp->pf_slots;
        from[n] = pp->slots_done;
        to[n++] = end;
        pp->slots_done = end;
    } else {
        return 0;
    }
    pthread_mutex_unlock(&pp->mu);
    double t0 = trace_now();
    for (size_t k = 0; k < n; k++)
        mem_prefault(p[k], from[k], to[k]);
    pp->faulted[side] += trace_now() - t0;
    pthread_mutex_lock(&pp->mu);
    return 1;
}

static void *reader_run(void *arg)
{
    rpipe *pp = arg;
    for (size_t k = 0;; k = (k + 1) % ROW_BLOCKS) {
        pthread_mutex_lock(&pp->mu);
        double w0 = trace_now();
        while (pp->full[k] && !pp->stop)
            if (!prefault_piece(pp, 0)) pthread_cond_wait(&pp->cv, &pp->mu);
        pp->waited[0] += trace_now() - w0;
        int stop = pp->stop;
        pthread_mutex_unlock(&pp->mu);
        if (stop) break;
        rblock_fill(pp->rd, &pp->blk[k]);
        pthread_mutex_lock(&pp->mu);
        pp->full[k] = 1;
        pthread_cond_broadcast(&pp->cv);
        pthread_mutex_unlock(&pp->mu);
        if (pp->blk[k].end) break;
    }
    return NULL;
}

/* Reads every row of rd's file into the batch: 0, or a negative status (a read error,
 * out of memory).  two: check rows on a reader thread while this one groups them. */
static int read_rows(patron_db *db, batch *b, rreader *rd, int two, patron_import_result *res,
                     patron_error *err)
{
    rpipe pp;
    memset(&pp, 0, sizeof pp);
    pp.rd = rd;
    int rc = PATRON_OK;
    size_t nblk = two ? ROW_BLOCKS : 1;
    for (size_t k = 0; k < nblk && rc == PATRON_OK; k++)
        if (!(pp.blk[k].rows = mem_alloc_array(ROW_BLOCK, sizeof(crow))))
            rc = err_set(err, PATRON_ENOMEM, "out of memory");
    uint32_t last_oi = UINT32_MAX;
    uint64_t id_h[2] = {0, 0};
    idmemo memo;
    memset(&memo, 0, sizeof memo);
    memo.last_id_n[0] = memo.last_id_n[1] = SIZE_MAX;
    pthread_t th;
    if (rc == PATRON_OK && two) {
        char *arr[PF_ARRAYS] = {(char *)b->it_order, (char *)b->it_kind, (char *)b->it_qty,
                                (char *)b->it_price};
        size_t sz[PF_ARRAYS] = {sizeof *b->it_order, sizeof *b->it_kind, sizeof *b->it_qty,
                                sizeof *b->it_price};
        memcpy(pp.pf_item, arr, sizeof arr);
        memcpy(pp.pf_item_size, sz, sizeof sz);
        pp.pf_cap_items = b->cap_items;
        pp.pf_orders = (char *)b->orders;
        pp.pf_cap_orders = b->cap;
        pp.pf_slots = (char *)b->ids.slots;
        pp.pf_slots_bytes = b->ids.cap * sizeof *b->ids.slots;
        pthread_mutex_init(&pp.mu, NULL);
        pthread_cond_init(&pp.cv, NULL);
        if (pthread_create(&th, NULL, reader_run, &pp) != 0) {
            pthread_mutex_destroy(&pp.mu);
            pthread_cond_destroy(&pp.cv);
            two = 0;
        }
    }
    for (size_t k = 0; rc == PATRON_OK; k = two ? (k + 1) % ROW_BLOCKS : 0) {
        rblock *blk = &pp.blk[k];
        if (two) {
            double w0 = trace_now();
            pthread_mutex_lock(&pp.mu);
            while (!pp.full[k])
                if (!prefault_piece(&pp, 1)) pthread_cond_wait(&pp.cv, &pp.mu);
            pthread_mutex_unlock(&pp.mu);
            pp.waited[1] += trace_now() - w0;
        } else {
            rblock_fill(rd, blk);
        }
        rc = group_block(db, b, blk, rd->order_level, &last_oi, id_h, &memo, res, err);
        if (two) {
            __atomic_store_n(&pp.items_at, b->n_items, __ATOMIC_RELAXED);
            __atomic_store_n(&pp.orders_at, b->n, __ATOMIC_RELAXED);
        }
        int end = blk->end;
        if (rc == PATRON_OK && end < 0) {
            *err = blk->err;
            rc = end;
        }
        if (two) {
            pthread_mutex_lock(&pp.mu);
            pp.full[k] = 0;
            pthread_cond_broadcast(&pp.cv);
            pthread_mutex_unlock(&pp.mu);
        }
        if (end) break;
    }
    if (two) {
        pthread_mutex_lock(&pp.mu);
        pp.stop = 1;
        pthread_cond_broadcast(&pp.cv);
        pthread_mutex_unlock(&pp.mu);
        pthread_join(th, NULL);
        trace_secs("reader waited", pp.waited[0]);
        trace_secs("  of which faulting in", pp.faulted[0]);
        trace_secs("grouping waited", pp.waited[1]);
        trace_secs("  of which faulting in", pp.faulted[1]);
        pthread_mutex_destroy(&pp.mu);
        pthread_cond_destroy(&pp.cv);
    }
    for (size_t k = 0; k < ROW_BLOCKS; k++) {
        mem_free(pp.blk[k].rows);
        mem_free(pp.blk[k].bytes);
        mem_free(pp.blk[k].reps);
    }
    return rc;
}

/* The end of an import's transaction, run on its own thread (commit_run). */
typedef struct commit_job {
    store *st;
    size_t stored; /* orders stored: the data version moves when > 0 */
    int rc;
    patron_error err;
} commit_job;

/* Imports of fewer orders commit before applying, on one thread: a thread costs more
 * than it saves there. */
#define COMMIT_OVERLAP_MIN 50000

static void *commit_run(void *arg)
{
    commit_job *j = arg;
    j->rc = j->stored ? store_data_bump(j->st, &j->err) : PATRON_OK;
    if (j->rc == PATRON_OK) j->rc = store_commit(j->st, &j->err);
    return NULL;
}

/* What an import needs of the model before its batch meets it: orders need the
 * order-id index (events load it when they meet an order, a return or a void; members
 * never do), and with promotion rules the member view is built before the batch.  Then
 * the model tracks what the import changes. */
static int import_prelude(patron_db *db, patron_import_kind kind, patron_error *err)
{
    int rc = kind == PATRON_IMPORT_ORDERS ? db_order_ids_ensure(db, err) : PATRON_OK;
    int wants = 0;
    if (rc == PATRON_OK && kind != PATRON_IMPORT_MEMBERS) rc = loyalty_wants_view(db, &wants, err);
    if (rc == PATRON_OK && wants) rc = db_view_ensure(db, err);
    if (rc == PATRON_OK) db->tracking = 1;
    return rc;
}

/* The members and orders of a store opened deferred, loaded on a thread of their own
 * while the import parses its file (which needs the dictionaries only). */
typedef struct model_job {
    patron_db *db;
    int rc;
    patron_error err;
} model_job;

static void *model_run(void *arg)
{
    model_job *j = arg;
    j->rc = db_model_load_rest(j->db, &j->err);
    return NULL;
}

static int import_orders(patron_db *db, const char *path, const patron_import_opts *opts,
                         patron_import_result *res, patron_error *err)
{
    int rc;
    double tt = trace_now();
    trace_secs("import begins", 0);
    if ((rc = validate_map(opts->map, order_fields, F__COUNT, err))) return rc;

    char delim = sniff_delim(path, opts->delimiter);
    csv_reader *r;
    const csv_field *fl;
    size_t nf;
    if ((rc = open_with_header(path, delim, &r, &fl, &nf, err))) return rc;
    int col[F__COUNT];
    for (int f = 0; f < F__COUNT; f++) {
        char want[256];
        map_lookup(opts->map, order_fields[f], want, sizeof want);
        col[f] = -1;
        for (size_t i = 0; i < nf; i++)
            if (fl[i].n == strlen(want) && memcmp(fl[i].p, want, fl[i].n) == 0) col[f] = (int)i;
    }
    int order_level = col[F_AMOUNT] >= 0 && col[F_SKU] < 0 && col[F_QTY] < 0 && col[F_PRICE] < 0;
    const int need_li[] = {F_ORDER_ID, F_MEMBER_ID, F_TS, F_SKU, F_QTY, F_PRICE};
    const int need_ol[] = {F_MEMBER_ID, F_TS, F_AMOUNT};
    const int *need = order_level ? need_ol : need_li;
    size_t nneed = order_level ? 3 : 6;
    for (size_t k = 0; k < nneed; k++)
        if (col[need[k]] < 0) {
            char want[256];
            map_lookup(opts->map, order_fields[need[k]], want, sizeof want);
            csv_free(r);
            return err_set(err, PATRON_EINPUT, "%s:1: missing required column '%s'%s", path, want,
                           order_level ? "" : " (or an 'amount' column for an order-level file)");
        }

    batch b;
    memset(&b, 0, sizeof b);
    hmap_init(&b.ids);
    b.opts = opts;
    b.name = path;
    /* Size the order map from the file: about one order per 400 bytes of line items
     * (the guess only saves rehashing; any file works). */
    uint64_t guess = csv_size(r) / 400;
    size_t rows_guess = (size_t)(csv_size(r) / 70) + 16;
    if ((guess > 1024 && hmap_reserve(&b.ids, (size_t)guess, (size_t)guess * 10) != 0) ||
        MEM_GROW(b.orders, b.cap, (size_t)guess + 16) || items_reserve(&b, rows_guess) ||
        dcache_init(&b)) {
        batch_release(&b);
        csv_free(r);
        return err_set(err, PATRON_ENOMEM, "out of memory");
    }
    loyalty_fx fx;
    char curmsg[160];
    int deferred = db->model_pending;
    if ((rc = fx_setup(db, deferred, &fx, curmsg, sizeof curmsg, err)) != PATRON_OK) {
        batch_release(&b);
        csv_free(r);
        return rc;
    }
    rreader rd;
    memset(&rd, 0, sizeof rd);
    rd.r = r;
    rd.col = col;
    rd.order_level = order_level;
    rd.fx = &fx;
    rd.curmsg = curmsg;
    rd.opts = opts;
    rd.last_ts_n = SIZE_MAX;
    for (int f = 0; f < F__COUNT; f++)
        if (col[f] >= 0 && (size_t)col[f] + 1 > rd.need_nf) rd.need_nf = (size_t)col[f] + 1;
    if (!(rd.pad = mem_alloc_array(rd.need_nf + 1, sizeof *rd.pad))) {
        batch_release(&b);
        csv_free(r);
        return err_set(err, PATRON_ENOMEM, "out of memory");
    }
    hmap_init(&rd.occur);
    int two = opts->threads == 2 || (opts->threads == 0 && csv_size(r) >= ROWS_THREAD_MIN);
    /* From here to the join, only the model's thread uses the store. */
    model_job mj = {db, PATRON_OK, {0}};
    pthread_t mth;
    int mjoin = deferred && two && pthread_create(&mth, NULL, model_run, &mj) == 0;
    rc = read_rows(db, &b, &rd, two, res, err);
    tt = trace_step("read and group", tt);
    if (mjoin) {
        pthread_join(mth, NULL);
        tt = trace_step("model loaded (join)", tt);
    } else if (deferred) {
        mj.rc = db_model_load_rest(db, &mj.err);
    }
    if (deferred && mj.rc != PATRON_OK && rc >= 0) {
        *err = mj.err;
        rc = mj.rc;
    }
    if (deferred && rc >= 0) rc = import_prelude(db, PATRON_IMPORT_ORDERS, err);
    csv_free(r);
    hmap_release(&rd.occur);
    mem_free(rd.pad);
    if (rc < 0) goto out;

    rc = PATRON_OK;

    /* Against the store: duplicates and conflicting ids. */
    for (size_t i = 0; i < b.n; i++) {
        border *o = &b.orders[i];
        if (o->bad) continue;
        uint64_t ch = o->hash ^ XXH3_64bits(b.arena + o->member_off, o->member_len);
        o->hash = ch ? ch : 1;
        uint32_t ex;
        if (hmap_get(&db->order_ids, b.arena + o->id_off, o->id_len, &ex)) {
            if (db->o_hash[ex] == o->hash) {
                o->dup = 1;
                res->duplicates++;
            } else {
                report(&b, o->first_line, order_fields[F_ORDER_ID],
                       "order '%.*s' is already stored with different content", b.arena + o->id_off,
                       o->id_len);
                o->bad = 1;
            }
        }
    }
    if (b.bad_rows > 0 && (long)b.bad_rows > opts->max_errors) {
        rc = err_set(err, PATRON_EINPUT,
                     "%s: %llu bad row%s (--max-errors %ld); nothing was imported", path,
                     (unsigned long long)b.bad_rows, b.bad_rows == 1 ? "" : "s", opts->max_errors);
        goto out;
    }
    res->bad_rows = b.bad_rows;

    tt = trace_step("dup check", tt);
    /* Write: new members, then orders, in one transaction. */
    hmap newm;
    hmap_init(&newm);
    char **new_ids = NULL;
    int64_t *new_en = NULL;
    uint32_t *new_len = NULL;
    uint64_t *new_h = NULL; /* hmap_hash of each new member id */
    size_t n_new = 0, cap_new = 0, cap_en = 0, cap_len = 0, cap_h = 0;
    const border *prev = NULL; /* the last order with a member, and its member */
    int64_t prev_member = -1;
    if ((rc = store_begin_bulk(db->st, err))) goto out;
    store_order so;
    /* What the ledger is handed, when a program earns points (without one it takes
     * nothing, and at M this copy of the orders was 0.4 GB). */
    ledger *lg;
    int earn = 0;
    if (rc == 0 && (rc = ledger_get(db, &lg, err)) == 0) earn = ledger_program(lg, NULL) != NULL;
    loyalty_order *lo = earn ? mem_calloc(b.n + 1, sizeof *lo) : NULL;
    if (earn && !lo) rc = err_set(err, PATRON_ENOMEM, "out of memory");
    /* With promotion rules the batch reaches the model and the view before the ledger
     * sees it (loyalty_wants_view); otherwise after the commit. */
    int pre = 0;
    if (rc == 0) rc = loyalty_wants_view(db, &pre, err);
    size_t stored = 0;
    int64_t first_ts = INT64_MAX;
    for (size_t i = 0; i < b.n; i++)
        if (!b.orders[i].bad && !b.orders[i].dup) {
            stored++;
            if (b.orders[i].ts < first_ts) first_ts = b.orders[i].ts;
        }
    int threaded = opts->threads == 2 || (opts->threads == 0 && stored >= COMMIT_OVERLAP_MIN);
    loyalty_prefault *lpf = NULL; /* the ledger's room, faulted in while members resolve */
    if (rc == 0 && lo && !pre && threaded) rc = loyalty_prefault_start(db, stored, first_ts, &lpf, err);
    for (size_t i = 0; i < b.n && rc == 0; i++) {
        if (i + PREFETCH_AHEAD < b.n && b.orders[i + PREFETCH_AHEAD].member_len) {
            hmap_prefetch(&db->member_ids, b.orders[i + PREFETCH_AHEAD].member_h);
            hmap_prefetch(&newm, b.orders[i + PREFETCH_AHEAD].member_h);
        }
        border *o = &b.orders[i];
        if (o->bad || o->dup) continue;
        int64_t member = -1;
        if (o->member_len) {
            uint32_t mi;
            const char *ms = b.arena + o->member_off;
            if (prev && prev->member_len == o->member_len &&
                memcmp(b.arena + prev->member_off, ms, o->member_len) == 0) {
                /* a member's orders are often next to each other */
                member = prev_member;
                mi = (uint32_t)member;
                if (mi >= db->n_members && o->ts < new_en[mi - db->n_members])
                    new_en[mi - db->n_members] = o->ts;
            } else if (hmap_get_hashed(&db->member_ids, ms, o->member_len, o->member_h, &mi)) {
                member = mi;
            } else if (hmap_get_hashed(&newm, ms, o->member_len, o->member_h, &mi)) {
                member = mi;
                if (o->ts < new_en[mi - db->n_members]) new_en[mi - db->n_members] = o->ts;
            } else {
                mi = (uint32_t)(db->n_members + n_new);
                if (MEM_GROW(new_ids, cap_new, n_new + 1) || MEM_GROW(new_en, cap_en, n_new + 1) ||
                    MEM_GROW(new_len, cap_len, n_new + 1) || MEM_GROW(new_h, cap_h, n_new + 1) ||
                    hmap_put_hashed(&newm, ms, o->member_len, o->member_h, mi)) {
                    rc = err_set(err, PATRON_ENOMEM, "out of memory");
                    break;
                }
                new_ids[n_new] = b.arena + o->member_off;
                new_en[n_new] = o->ts;
                new_len[n_new] = o->member_len;
                new_h[n_new] = o->member_h;
                n_new++;
                member = mi;
            }
            prev = o;
            prev_member = member;
        }
        border_to_store(&b, o, order_level, member, &so);
        if (lo) /* stored below, once the ledger has what it needs */
            lo[i] = (loyalty_order){so.id, so.ts, so.amount, (int32_t)member, (uint32_t)so.idn,
                                    (uint8_t)so.kind};
        else
            rc = store_order_put(db->st, &so, err);
    }
    loyalty_prefault_stop(lpf);
    tt = trace_step("members, orders to store", tt);
    /* The ledger's arithmetic on the second thread (idle now) while this one writes the
     * batch's rows; with promotion rules it comes after the model update, below. */
    loyalty_import li = {lo,
                         b.n,
                         b.it_order,
                         b.it_kind,
                         b.kinds,
                         b.it_qty,
                         b.it_price,
                         b.n_items,
                         {NULL, &b.dict[1], &b.dict[2], &b.dict[3]},
                         (const char *const *)new_ids,
                         new_len,
                         pre ? 0 : n_new, /* applied ahead: already db members */
                         NULL,
                         0};
    loyalty_job *lj = NULL;
    if (rc == 0 && earn && !pre) rc = loyalty_import_start(db, &li, threaded, &lj, err);
    for (size_t i = 0, poll = loyalty_poll_orders; lo && i < b.n && rc == 0; i++) {
        if (--poll == 0) {
            poll = loyalty_poll_orders;
            if ((rc = loyalty_import_poll(lj, rc, err))) break;
        }
        if (!lo[i].id) continue;
        border_to_store(&b, &b.orders[i], order_level, lo[i].member, &so);
        rc = store_order_put(db->st, &so, err);
    }
    tt = trace_step("ledger orders", tt);
    if (rc == 0 && n_new)
        rc = store_members_put(db->st, (uint32_t)db->n_members, n_new, (const char *const *)new_ids,
                               new_len, new_en, "{}", err);

    tt = trace_step("new members", tt);
    uint32_t *ok = NULL;
    if (rc == 0 && b.n_items) {
        ok = mem_calloc(b.n, sizeof *ok);
        if (!ok) rc = err_set(err, PATRON_ENOMEM, "out of memory");
        for (size_t i = 0; ok && i < b.n; i++)
            ok[i] = !b.orders[i].bad && !b.orders[i].dup;
        if (rc == 0) rc = write_dicts(db, &b, err);
        if (rc == 0) rc = write_item_chunks(db, &b, ok, lj, err);
    }
    tt = trace_step("dicts and item chunks", tt);

    /* Then the ledger's page faults here, ahead of where its thread writes, while it
     * computes, and the journal chunks and lot rows of a windowed batch stored as its
     * thread makes them.  Writing the batch's rows first and helping after (the thread
     * faults in for itself meanwhile) balances the two threads better than the other way
     * round: M, two alternating pairs, 3.37 -> 3.02 s and 3.44 -> 2.52 s from the
     * thread's start to the join. */
    rc = loyalty_import_help(lj, rc, err);
    mem_free(ok);
    rc = loyalty_import_finish(lj, rc, err);
    tt = trace_step("ledger finish", tt);
    if (rc == 0 && pre) {
        rc = apply_orders_batch(db, &b, order_level, new_ids, new_en, new_len, new_h, n_new, res,
                                err);
        view_after_import(db);
        if (rc == 0 && earn) rc = loyalty_on_import(db, &li, err);
    }

    mem_free(lo);
    /* The line items are in their chunks and with the ledger; only the member view still
     * takes them (apply_orders_batch).  Without one they go now: at M they are 0.56 GB
     * that would otherwise sit beside the model the batch is applied to. */
    if (!db->view) items_drop(&b);
    if (rc == 0 && !pre &&
        (opts->threads == 2 || (opts->threads == 0 && stored >= COMMIT_OVERLAP_MIN))) {
        /* The commit (and SQLite's checkpoint after it) on a second thread while this one
         * applies the batch to the model; a failed commit reloads the model, as the
         * promotion-rule path does. */
        commit_job job = {db->st, stored, PATRON_OK, {0}};
        pthread_t th;
        if (pthread_create(&th, NULL, commit_run, &job) == 0) {
            int arc = apply_orders_batch(db, &b, order_level, new_ids, new_en, new_len, new_h,
                                         n_new, res, err);
    tt = trace_step("apply (commit beside)", tt);
            pthread_join(th, NULL);
            tt = trace_step("commit join", tt);
            if (job.rc != PATRON_OK) {
                *err = job.err;
                rc = job.rc;
                store_rollback(db->st);
                rollback_model(db, res, err);
            } else {
                res->committed = 1;
                rc = arc;
            }
            goto written;
        }
    }
    if (rc == 0 && stored) rc = store_data_bump(db->st, err);
    if (rc == 0) rc = store_commit(db->st, err);

    if (rc) {
        store_rollback(db->st);
        if (pre) rollback_model(db, res, err);
    } else {
        res->committed = 1;
        if (!pre)
            rc = apply_orders_batch(db, &b, order_level, new_ids, new_en, new_len, new_h, n_new,
                                    res, err);
    }
written:

    hmap_release(&newm);
    mem_free(new_ids);
    mem_free(new_en);
    mem_free(new_len);
    mem_free(new_h);
    if (rc == 0 && b.bad_rows > 0) {
        if (opts->rejects_path)
            snprintf(res->rejects_path, sizeof res->rejects_path, "%s", opts->rejects_path);
        else
            snprintf(res->rejects_path, sizeof res->rejects_path, "%s.rejects", path);
        rc = write_rejects(path, delim, res->rejects_path, &b, order_level, col, err);
    }
out:
    batch_release(&b);

    return rc;
}

static const char *member_text_fields[] = {
    "email",  "phone", "first_name",  "last_name", "gender",         "country",
    "region", "city",  "postal_code", "language",  "signup_channel", "referred_by"};
static const char *channels[] = {"email", "sms", "push", "app", "web", "social", "mail"};
static const char *purposes[] = {"marketing", "profiling", "personalization"};

/* attributes.NAME: NAME in snake_case (lower case, runs of other characters -> '_'). */
static void snake_case(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    int us = 0;
    for (size_t i = 0; i < n && o + 1 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 'A' && c <= 'Z') {
            if (i > 0 && o > 0 && !us && s[i - 1] >= 'a' && s[i - 1] <= 'z') out[o++] = '_';
            out[o++] = (char)(c - 'A' + 'a');
            us = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
            out[o++] = (char)c;
            us = 0;
        } else if (o > 0 && !us) {
            out[o++] = '_';
            us = 1;
        }
    }
    while (o > 0 && out[o - 1] == '_')
        o--;
    out[o] = '\0';
}

/* What a members.csv column holds. */
enum {
    MC_TEXT,
    MC_ENROLLED_AT,
    MC_BIRTH_DATE,
    MC_INTERESTS,
    MC_CONSENT,
    MC_CONSENT_UPDATED_AT,
    MC_PREFERRED_CHANNEL,
    MC_ATTRIBUTE,
    MC_MEMBER_ID
};

typedef struct mcol {
    int kind;         /* MC_* */
    char name[128];   /* field or attribute name */
    char header[128]; /* the column as written in the file, for messages */
    int atype;        /* attributes: AT_* fixed by the first import, AT_NONE before */
    int seen[4];      /* attributes: values of each AT_* class in this file */
} mcol;

/* Attribute types (SPEC 2: fixed by the first import that has values for it). */
enum { AT_NONE, AT_NUMBER, AT_BOOL, AT_STRING };
static const char *const at_names[] = {"", "number", "bool", "string"};

static int attr_class(const char *s, size_t n)
{
    int bv;
    double d;
    int64_t iv;
    if (num_parse_i64(s, n, &iv) == 0 || num_parse_double(s, n, &d) == 0) return AT_NUMBER;
    if (num_parse_bool(s, n, &bv) == 0 && n > 1) return AT_BOOL;
    return AT_STRING;
}

static json_t *attr_value(const char *s, size_t n)
{
    int bv;
    double d;
    int64_t iv;
    if (num_parse_i64(s, n, &iv) == 0) return json_integer(iv);
    if (num_parse_double(s, n, &d) == 0) return json_real(d);
    if (num_parse_bool(s, n, &bv) == 0 && n > 1) return json_boolean(bv);
    return json_stringn(s, n);
}

/* A JSON text being written: the members importer writes the profile of a member new to
 * the store and to the file as text (entries ,"key":value) and has jcanon() put it in
 * canonical form, instead of building a jansson tree and dumping it sorted. */
typedef struct jw {
    jcbuf b;
    int failed; /* out of memory: the text is cut */
} jw;

static void jw_raw(jw *w, const char *s, size_t n)
{
    if (!w->failed && jcbuf_put(&w->b, s, n) != 0)
        w->failed = 1;
}

/* s[0..n) as a JSON string (the values of a members row are checked for UTF-8 first). */
static void jw_str(jw *w, const char *s, size_t n)
{
    if (!w->failed && jcbuf_str(&w->b, s, n) != 0)
        w->failed = 1;
}

static void jw_key(jw *w, const char *k)
{
    jw_raw(w, ",", 1);
    jw_str(w, k, strlen(k));
    jw_raw(w, ":", 1);
}

/* attr_value() as JSON text (jcanon() then writes it as jansson writes that value). */
static void attr_text(jw *w, const char *s, size_t n)
{
    int bv;
    double d;
    int64_t iv;
    char buf[40];
    if (num_parse_i64(s, n, &iv) == 0) {
        snprintf(buf, sizeof buf, "%lld", (long long)iv);
        jw_raw(w, buf, strlen(buf));
    } else if (num_parse_double(s, n, &d) == 0) {
        snprintf(buf, sizeof buf, "%.17g", d); /* reads back as d */
        jw_raw(w, buf, strlen(buf));
        if (!strpbrk(buf, ".e"))
            jw_raw(w, ".0", 2); /* a real stays a real */
    } else if (num_parse_bool(s, n, &bv) == 0 && n > 1) {
        jw_raw(w, bv ? "true" : "false", bv ? 4 : 5);
    } else {
        jw_str(w, s, n);
    }
}

/* One members row's values (columns checked and converted): into the jansson objects
 * upd, cons and attrs, or (fast) as entries of the texts top, cons_t and attrs_t.
 * member_row() returns 1 when a value is bad (reported to b), else 0. */
typedef struct mrow {
    int fast;
    json_t *upd, *cons, *attrs;
    jw top, cons_t, attrs_t;
} mrow;

/* The fast row's profile in canonical form into *text (malloc'd: free()): 0, 1 when it
 * is left to jansson (a key twice, text jscan refuses), -1 out of memory.  all is
 * scratch. */
static int member_text(const mrow *mr, jw *all, jcbuf *cb, char **text)
{
    all->b.n = 0;
    jw_raw(all, "{", 1);
    if (mr->top.b.n)
        jw_raw(all, mr->top.b.p + 1, mr->top.b.n - 1);
    if (mr->attrs_t.b.n) {
        jw_raw(all, &",\"attributes\":{"[mr->top.b.n ? 0 : 1], mr->top.b.n ? 15 : 14);
        jw_raw(all, mr->attrs_t.b.p + 1, mr->attrs_t.b.n - 1);
        jw_raw(all, "}", 1);
    }
    if (mr->cons_t.b.n) {
        int first = !mr->top.b.n && !mr->attrs_t.b.n;
        jw_raw(all, &",\"consent\":{"[first], first ? 11 : 12);
        jw_raw(all, mr->cons_t.b.p + 1, mr->cons_t.b.n - 1);
        jw_raw(all, "}", 1);
    }
    jw_raw(all, "}", 1);
    if (all->failed || mr->top.failed || mr->cons_t.failed || mr->attrs_t.failed)
        return -1;
    jsval doc;
    if (jscan_doc(all->b.p, all->b.n, &doc) != 0)
        return 1;
    cb->n = 0;
    int rc = jcanon(&doc, cb);
    if (rc)
        return rc;
    *text = malloc(cb->n + 1);
    if (!*text)
        return -1;
    memcpy(*text, cb->p, cb->n + 1);
    return 0;
}

/* key = the string s[0..n): an entry of the text t (fast) or a member of object o. */
static void row_str(mrow *mr, jw *t, json_t *o, const char *key, const char *s, size_t n)
{
    if (mr->fast) {
        jw_key(t, key);
        jw_str(t, s, n);
    } else {
        json_object_set_new(o, key, json_stringn(s, n));
    }
}

static int member_row(batch *b, uint64_t line, mcol *cols, size_t ncols, const csv_field *fl,
                      size_t nf, int64_t cts, mrow *mr)
{
    int bad = 0;
    json_t *upd = mr->upd, *cons = mr->cons, *attrs = mr->attrs;
    for (size_t i = 0; i < ncols && i < nf && !bad; i++) {
        const csv_field *f = &fl[i];
        if (f->n == 0) continue; /* an empty cell leaves the stored value unchanged */
        int32_t days;
        int bv;
        int text = cols[i].kind == MC_TEXT || cols[i].kind == MC_INTERESTS ||
                   cols[i].kind == MC_ATTRIBUTE;
        if (text && !jscan_utf8_valid(f->p, f->n)) {
            report(b, line, cols[i].header, "not UTF-8 text (or holds a NUL byte)%.*s", "", 0);
            bad = 1;
            break;
        }
        switch (cols[i].kind) {
        case MC_TEXT:
            row_str(mr, &mr->top, upd, cols[i].name, f->p, f->n);
            break;
        case MC_BIRTH_DATE:
            if (time_parse_date(f->p, f->n, &days) != 0) {
                report(b, line, cols[i].header, "cannot parse '%.*s' as a date", f->p, f->n);
                bad = 1;
            } else {
                char d[TIME_FMT_LEN];
                time_format_date(days, d);
                row_str(mr, &mr->top, upd, "birth_date", d, strlen(d));
            }
            break;
        case MC_INTERESTS: {
            json_t *tags = mr->fast ? NULL : json_array();
            int k = 0;
            if (mr->fast) {
                jw_key(&mr->top, "interests");
                jw_raw(&mr->top, "[", 1);
            }
            const char *p = f->p, *e = f->p + f->n;
            while (p < e) {
                const char *q = memchr(p, ';', (size_t)(e - p));
                if (!q) q = e;
                const char *a = p, *z = q;
                while (a < z && *a == ' ')
                    a++;
                while (z > a && z[-1] == ' ')
                    z--;
                if (z > a && mr->fast) {
                    if (k++)
                        jw_raw(&mr->top, ",", 1);
                    jw_str(&mr->top, a, (size_t)(z - a));
                } else if (z > a) {
                    json_array_append_new(tags, json_stringn(a, (size_t)(z - a)));
                }
                p = q + 1;
            }
            if (mr->fast)
                jw_raw(&mr->top, "]", 1);
            else
                json_object_set_new(upd, "interests", tags);
            break;
        }
        case MC_CONSENT:
            if (num_parse_bool(f->p, f->n, &bv) != 0) {
                report(b, line, cols[i].header, "cannot parse '%.*s' as true/false", f->p,
                       f->n);
                bad = 1;
            } else {
                char ts[TIME_FMT_LEN];
                time_format(cts, ts);
                if (mr->fast) {
                    static const char src[] = "{\"source\":\"import\",\"status\":";
                    jw_key(&mr->cons_t, cols[i].name);
                    jw_raw(&mr->cons_t, src, sizeof src - 1);
                    jw_str(&mr->cons_t, bv ? "granted" : "denied", bv ? 7 : 6);
                    jw_raw(&mr->cons_t, ",\"updated_at\":", 14);
                    jw_str(&mr->cons_t, ts, strlen(ts));
                    jw_raw(&mr->cons_t, "}", 1);
                } else {
                    json_object_set_new(cons, cols[i].name,
                                        json_pack("{s:s,s:s,s:s}", "status",
                                                  bv ? "granted" : "denied", "updated_at", ts,
                                                  "source", "import"));
                }
            }
            break;
        case MC_PREFERRED_CHANNEL: {
            int ok = 0;
            for (size_t k = 0; k < 7; k++)
                ok |= strlen(channels[k]) == f->n && memcmp(channels[k], f->p, f->n) == 0;
            if (!ok) {
                report(b, line, cols[i].header,
                       "'%.*s' is not a channel (email, sms, push, app, web, social, mail)",
                       f->p, f->n);
                bad = 1;
            } else {
                row_str(mr, &mr->top, upd, "preferred_channel", f->p, f->n);
            }
            break;
        }
        case MC_ATTRIBUTE: {
            int cl = attr_class(f->p, f->n);
            if (cols[i].atype == AT_NUMBER && cl != AT_NUMBER) {
                report(b, line, cols[i].header, "'%.*s' is not a number (the attribute "
                       "holds numbers since its first import)", f->p, f->n);
                bad = 1;
            } else if (cols[i].atype == AT_BOOL && cl != AT_BOOL) {
                report(b, line, cols[i].header, "'%.*s' is not true or false (the "
                       "attribute holds conditions since its first import)", f->p, f->n);
                bad = 1;
            } else if (cols[i].atype == AT_STRING) {
                row_str(mr, &mr->attrs_t, attrs, cols[i].name, f->p, f->n);
            } else {
                cols[i].seen[cl]++;
                if (mr->fast) {
                    jw_key(&mr->attrs_t, cols[i].name);
                    attr_text(&mr->attrs_t, f->p, f->n);
                } else {
                    json_object_set_new(attrs, cols[i].name, attr_value(f->p, f->n));
                }
            }
            break;
        }
        default:
            break;
        }
    }
    return bad;
}

static int import_members(patron_db *db, const char *path, const patron_import_opts *opts,
                          patron_import_result *res, patron_error *err)
{
    int rc;
    if ((rc = validate_map(opts->map, NULL, 0, err))) return rc;
    char delim = sniff_delim(path, opts->delimiter);
    csv_reader *r;
    const csv_field *fl;
    size_t nf;
    if ((rc = open_with_header(path, delim, &r, &fl, &nf, err))) return rc;
    /* Column roles: a --map entry FIELD=COLUMN renames COLUMN to FIELD. */
    size_t ncols = nf;
    mcol *cols = mem_calloc(ncols, sizeof *cols);
    int have_id = 0;
    for (size_t i = 0; i < ncols; i++) {
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)fl[i].n, fl[i].p);
        char mf[128], mc[128];
        for (const char *p = opts->map; map_next(&p, mf, mc, sizeof mf);)
            if (strcmp(mc, name) == 0)
                snprintf(name, sizeof name, "%s", mf);
        mcol *c = &cols[i];
        c->kind = MC_ATTRIBUTE;
        snprintf(c->header, sizeof c->header, "%.*s", (int)fl[i].n, fl[i].p);
        snprintf(c->name, sizeof c->name, "%s", name);
        if (strcmp(name, "member_id") == 0)
            c->kind = MC_MEMBER_ID, have_id = 1;
        else if (strcmp(name, "enrolled_at") == 0)
            c->kind = MC_ENROLLED_AT;
        else if (strcmp(name, "birth_date") == 0)
            c->kind = MC_BIRTH_DATE;
        else if (strcmp(name, "interests") == 0)
            c->kind = MC_INTERESTS;
        else if (strcmp(name, "consent_updated_at") == 0)
            c->kind = MC_CONSENT_UPDATED_AT;
        else if (strcmp(name, "preferred_channel") == 0)
            c->kind = MC_PREFERRED_CHANNEL;
        else if (strncmp(name, "consent_", 8) == 0) {
            for (size_t k = 0; k < 7; k++)
                if (strcmp(name + 8, channels[k]) == 0) c->kind = MC_CONSENT;
            for (size_t k = 0; k < 3; k++)
                if (strcmp(name + 8, purposes[k]) == 0) c->kind = MC_CONSENT;
            if (c->kind == MC_CONSENT) snprintf(c->name, sizeof c->name, "%s", name + 8);
        } else {
            for (size_t k = 0; k < sizeof member_text_fields / sizeof *member_text_fields; k++)
                if (strcmp(name, member_text_fields[k]) == 0) c->kind = MC_TEXT;
        }
        if (c->kind == MC_ATTRIBUTE) {
            char sn[128];
            snake_case(name, strlen(name), sn, sizeof sn);
            snprintf(c->name, sizeof c->name, "%s", sn);
        }
    }
    if (!have_id) {
        csv_free(r);
        mem_free(cols);
        return err_set(err, PATRON_EINPUT, "%s:1: missing required column 'member_id'", path);
    }
    for (size_t i = 0; i < ncols; i++) {
        if (cols[i].kind != MC_ATTRIBUTE)
            continue;
        char key[160], v[16];
        snprintf(key, sizeof key, "attr_type:%s", cols[i].name);
        int f = store_meta_get(db->st, key, v, sizeof v, err);
        if (f < 0) {
            csv_free(r);
            mem_free(cols);
            return f;
        }
        for (int t = AT_NUMBER; f == 1 && t <= AT_STRING; t++)
            if (strcmp(v, at_names[t]) == 0)
                cols[i].atype = t;
    }
    int64_t now = opts->now == PATRON_NULL_TS ? time_now() : opts->now;
    batch b;
    memset(&b, 0, sizeof b);
    b.opts = opts;
    b.name = path;
    /* Pending state: index -> profile object, for members touched by this file. */
    hmap pend;
    hmap_init(&pend);
    char **prof = NULL; /* profile text (jansson's malloc: free()) per touched member */
    int64_t *en = NULL;
    char **ids = NULL;
    uint32_t *idx = NULL;
    size_t np = 0, cp = 0, ce = 0, ci = 0, cx = 0;
    jw tw[4]; /* the fast path's texts, reused row after row */
    memset(tw, 0, sizeof tw);
    jcbuf cb = {0};
    while ((rc = csv_next(r, &fl, &nf, err)) == 1) {
        res->rows++;
        if (opts->progress && (res->rows & 0x3fff) == 0)
            opts->progress(opts->progress_ctx, csv_consumed(r), csv_size(r));
        uint64_t line = csv_line(r);
        csv_field id = {"", 0};
        int bad = 0;
        int64_t cts = now, ents = PATRON_NULL_TS;
        for (size_t i = 0; i < ncols && i < nf; i++) {
            const csv_field *f = &fl[i];
            if (cols[i].kind == MC_MEMBER_ID)
                id = *f;
            else if (cols[i].kind == MC_CONSENT_UPDATED_AT && f->n &&
                     time_parse(f->p, f->n, &cts) != 0) {
                report(&b, line, cols[i].header, "cannot parse '%.*s' as a timestamp", f->p, f->n);
                bad = 1;
            } else if (cols[i].kind == MC_ENROLLED_AT && f->n &&
                       time_parse(f->p, f->n, &ents) != 0) {
                report(&b, line, cols[i].header, "cannot parse '%.*s' as a timestamp", f->p, f->n);
                bad = 1;
            }
        }
        if (id.n == 0 || id.n > 128) {
            report(&b, line, "member_id",
                   id.n ? "'%.*s' is longer than 128 bytes" : "empty value%.*s", id.p, id.n);
            continue;
        }
        if (bad) continue;
        /* a member new to the store and to this file: its profile is written as text */
        uint32_t pi, mi;
        mrow mr = {0};
        mr.top = tw[0], mr.cons_t = tw[1], mr.attrs_t = tw[2];
        mr.top.b.n = mr.cons_t.b.n = mr.attrs_t.b.n = 0;
        mr.fast = !hmap_get(&pend, id.p, id.n, &pi) && !hmap_get(&db->member_ids, id.p, id.n, &mi);
        char *text = NULL; /* its canonical profile (free()) */
        if (mr.fast) {
            bad = member_row(&b, line, cols, ncols, fl, nf, cts, &mr);
            int t = bad ? 0 : member_text(&mr, &tw[3], &cb, &text);
            tw[0] = mr.top, tw[1] = mr.cons_t, tw[2] = mr.attrs_t; /* buffers kept */
            if (t < 0) {
                rc = err_set(err, PATRON_ENOMEM, "out of memory");
                break;
            }
            if (bad)
                continue;
            mr.fast = t == 0; /* declined: the row again, through jansson */
        }
        if (!mr.fast) {
            mr.upd = json_object(), mr.cons = json_object(), mr.attrs = json_object();
            bad = member_row(&b, line, cols, ncols, fl, nf, cts, &mr);
        }
        json_t *upd = mr.upd, *cons = mr.cons, *attrs = mr.attrs;
        if (bad) {
            json_decref(upd);
            json_decref(cons);
            json_decref(attrs);
            continue;
        }
        if (!hmap_get(&pend, id.p, id.n, &pi)) {
            if (MEM_GROW(prof, cp, np + 1) || MEM_GROW(en, ce, np + 1) ||
                MEM_GROW(ids, ci, np + 1) || MEM_GROW(idx, cx, np + 1) ||
                hmap_put(&pend, id.p, id.n, (uint32_t)np)) {
                rc = err_set(err, PATRON_ENOMEM, "out of memory");
                json_decref(upd);
                json_decref(cons);
                json_decref(attrs);
                free(text);
                break;
            }
            pi = (uint32_t)np++;
            ids[pi] = mem_strndup(id.p, id.n);
            prof[pi] = NULL;
            if (hmap_get(&db->member_ids, id.p, id.n, &mi)) {
                idx[pi] = mi;
                en[pi] = db->enrolled_at[mi];
                res->updated++;
            } else {
                idx[pi] = UINT32_MAX;
                en[pi] = now;
                res->inserted++;
            }
        }
        if (text) {
            if (ents != PATRON_NULL_TS) en[pi] = ents;
            prof[pi] = text;
            db->profiles_as_text++;
            continue;
        }
        /* The member as this file has left it so far: this file's text, else the stored
         * profile, else empty.  Only text is kept between rows (bounded memory). */
        json_error_t je;
        json_t *p = NULL;
        if (prof[pi]) {
            p = json_loads(prof[pi], 0, &je);
        } else if (idx[pi] != UINT32_MAX) {
            char *stored;
            if ((rc = store_member_profile(db->st, idx[pi], &stored, err)) != PATRON_OK) {
                json_decref(upd);
                json_decref(cons);
                json_decref(attrs);
                break;
            }
            p = json_loads(stored, 0, &je);
            mem_free(stored);
        }
        if (!p) p = json_object();
        json_object_update(p, upd);
        if (json_object_size(attrs)) {
            json_t *a = json_object_get(p, "attributes");
            if (!a) json_object_set_new(p, "attributes", a = json_object());
            json_object_update(a, attrs);
        }
        if (json_object_size(cons)) {
            json_t *c = json_object_get(p, "consent");
            if (!c) json_object_set_new(p, "consent", c = json_object());
            const char *k;
            json_t *v;
            json_object_foreach(cons, k, v)
            {
                json_t *old = json_object_get(c, k);
                /* The entry with the latest updated_at wins (ISO strings sort by time). */
                if (!old || strcmp(json_string_value(json_object_get(old, "updated_at")),
                                   json_string_value(json_object_get(v, "updated_at"))) <= 0)
                    json_object_set(c, k, v);
            }
        }
        if (ents != PATRON_NULL_TS) en[pi] = ents;
        free(prof[pi]);
        prof[pi] = json_dumps(p, JSON_SORT_KEYS | JSON_COMPACT);
        json_decref(p);
        json_decref(upd);
        json_decref(cons);
        json_decref(attrs);
    }
    csv_free(r);
    for (int k = 0; k < 4; k++)
        jcbuf_free(&tw[k].b);
    jcbuf_free(&cb);
    if (rc >= 0) rc = PATRON_OK;
    if (rc == PATRON_OK && b.bad_rows > 0 && (long)b.bad_rows > opts->max_errors)
        rc = err_set(err, PATRON_EINPUT,
                     "%s: %llu bad row%s (--max-errors %ld); nothing was imported", path,
                     (unsigned long long)b.bad_rows, b.bad_rows == 1 ? "" : "s", opts->max_errors);
    char **texts = prof;
    for (size_t i = 0; i < np && rc == PATRON_OK; i++)
        if (!texts[i]) rc = err_set(err, PATRON_ENOMEM, "out of memory");
    if (rc == PATRON_OK) {
        res->bad_rows = b.bad_rows;
        uint32_t next = db->n_members;
        for (size_t i = 0; i < np; i++) {
            if (idx[i] == UINT32_MAX) idx[i] = next++;
        }
        rc = store_begin_bulk(db->st, err);
        for (size_t i = 0; i < np && rc == PATRON_OK; i++)
            rc = store_member_put(db->st, idx[i], ids[i], strlen(ids[i]), en[i], texts[i], err);
        /* the first import with values for an attribute fixes its type */
        for (size_t i = 0; i < ncols && rc == PATRON_OK; i++) {
            const mcol *c = &cols[i];
            if (c->kind != MC_ATTRIBUTE || c->atype != AT_NONE)
                continue;
            int t = c->seen[AT_STRING] ? AT_STRING
                    : c->seen[AT_NUMBER] && c->seen[AT_BOOL] ? AT_STRING
                    : c->seen[AT_NUMBER] ? AT_NUMBER
                    : c->seen[AT_BOOL] ? AT_BOOL : AT_NONE;
            char key[160];
            snprintf(key, sizeof key, "attr_type:%s", c->name);
            if (t != AT_NONE) rc = store_meta_put(db->st, key, at_names[t], err);
        }
        if (rc == PATRON_OK && np) rc = store_data_bump(db->st, err);
        if (rc == PATRON_OK) rc = store_commit(db->st, err);
        if (rc != PATRON_OK) {
            store_rollback(db->st);
        } else {
            res->committed = 1;
            for (size_t i = 0; i < np && rc == PATRON_OK; i++) {
                if (idx[i] < db->n_members) {
                    db->profile_hash[idx[i]] = store_profile_hash(texts[i]);
                    db->enrolled_at[idx[i]] = en[i];
                    db_touch(db, idx[i], DB_SRC_PROFILE);
                } else {
                    rc = db_member_add(db, ids[i], strlen(ids[i]), en[i],
                                       store_profile_hash(texts[i]), NULL);
                }
                if (rc == PATRON_OK) view_profile(db, idx[i], texts[i]);
            }
        }
    }
    if (rc == PATRON_OK && b.bad_rows > 0) {
        int nocol[F__COUNT];
        for (int k = 0; k < F__COUNT; k++)
            nocol[k] = -1;
        if (opts->rejects_path)
            snprintf(res->rejects_path, sizeof res->rejects_path, "%s", opts->rejects_path);
        else
            snprintf(res->rejects_path, sizeof res->rejects_path, "%s.rejects", path);
        rc = write_rejects(path, delim, res->rejects_path, &b, 1, nocol, err);
    }
    for (size_t i = 0; i < np; i++) {
        mem_free(ids[i]);
        free(prof[i]);
    }
    mem_free(prof);
    mem_free(en);
    mem_free(ids);
    mem_free(idx);
    hmap_release(&pend);
    mem_free(cols);
    bad_release(&b.bad);
    return rc;
}

static const char *event_types[] = {"order", "return",  "redemption", "points",
                                    "void",  "message", "survey",     "referral",
                                    "view",  "consent", "custom"};

/* What an event of a type changes, for live segments (DB_SRC_*; event streams in the
 * order of members/view.h from ST_REDEMPTIONS on). */
static uint32_t event_sources(int type)
{
    switch (type) {
    case 2:
        return DB_SRC_EVENTS << 0; /* redemption */
    case 3:
        return DB_SRC_EVENTS << 1; /* points */
    case 5:
        return DB_SRC_EVENTS << 2; /* message */
    case 6:
        return (DB_SRC_EVENTS << 5) | DB_SRC_PROFILE; /* survey: also attributes */
    case 7:
        return DB_SRC_EVENTS << 4; /* referral */
    case 8:
        return DB_SRC_EVENTS << 3; /* view */
    case 9:
        return DB_SRC_PROFILE; /* consent */
    default:
        return DB_SRC_EVENTS << 6; /* custom */
    }
}

/* A parsed event kept until the batch commits. */
typedef struct bevent {
    char *body;  /* canonical JSON (jansson's malloc: free()) */
    char *id;
    char *member;
    int64_t ts;
    uint64_t hash;
    int type;
    int64_t amount, items, units; /* orders and returns, in the base currency */
    int64_t fxr;                  /* its currency's rate (PROGRAM_SCALE: the base) */
    uint32_t channel, store;      /* dictionary codes (orders and returns) */
} bevent;

static int event_money(json_t *v, int64_t *out)
{
    if (json_is_integer(v)) {
        return num_mul_i64(json_integer_value(v), PATRON_MONEY_SCALE, out);
    }
    if (json_is_real(v)) {
        char buf[64];
        snprintf(buf, sizeof buf, "%.6f", json_real_value(v));
        return num_parse_money(buf, strlen(buf), out);
    }
    if (json_is_string(v)) return num_parse_money(json_string_value(v), json_string_length(v), out);
    return -1;
}

/* Applies a stored batch of events to the model and the member view. */
static int apply_events_batch(patron_db *db, batch *b, bevent *ev, size_t nev, const size_t *ev_of,
                              uint32_t *order_ix, patron_import_result *res, patron_error *err)
{
    int rc = PATRON_OK;
    if (apply_dicts(db, b) != 0)
        rc = err_set(err, PATRON_ENOMEM, "out of memory applying the import; reopen the database");
    size_t next_b = 0; /* b->orders are in event order */
    for (size_t i = 0; i < nev && rc == PATRON_OK; i++) {
        bevent *e = &ev[i];
        uint32_t mi;
        if (!hmap_get(&db->member_ids, e->member, strlen(e->member), &mi))
            rc = db_member_add(db, e->member, strlen(e->member), e->ts,
                               store_profile_hash("{}"), &mi);
        if (rc) break;
        if (e->type <= 1) {
            store_order so = {
                e->id,    strlen(e->id),         mi, e->ts, e->amount, e->type, e->items,
                e->units, e->hash ? e->hash : 1, 0, e->channel, e->store};
            rc = db_order_add(db, &so);
            res->items += (uint64_t)e->items;
            if (rc == 0) view_order(db, (uint32_t)(db->n_orders - 1));
            if (rc == 0 && next_b < b->n && ev_of[next_b] == i)
                order_ix[next_b++] = (uint32_t)(db->n_orders - 1);
        } else if (e->type == 4) {
            uint32_t ex;
            if (hmap_get(&db->order_ids, e->id, strlen(e->id), &ex)) {
                view_void(db, ex);
                db->o_void[ex] = 1;
                if (db->o_member[ex] >= 0)
                    db_touch(db, (uint32_t)db->o_member[ex], DB_SRC_ORDERS);
            }
        } else {
            db_touch(db, mi, event_sources(e->type));
            view_event(db, mi, event_types[e->type], e->ts, e->body);
        }
        if (e->type > 1) db->n_events++;
        res->inserted++;
    }
    for (size_t j = 0; j < b->n_items && rc == PATRON_OK && db->view; j++) {
        const loyalty_item_kind *d = &b->kinds[b->it_kind[j]];
        view_item(db, order_ix[b->it_order[j]], d->sku, d->category, d->brand, b->it_qty[j],
                  b->it_price[j]);
    }
    return rc;
}

/* --map FIELD=KEY,... for JSONL: a top-level key KEY becomes FIELD.  Returns 0, or 1
 * when the object holds both FIELD and KEY (field and key are then set; the line is
 * refused). */
static int map_keys(json_t *o, const char *map, char *field, char *key, size_t cap)
{
    for (const char *p = map; map_next(&p, field, key, cap);) {
        json_t *v = strcmp(field, key) ? json_object_get(o, key) : NULL;
        if (v) {
            if (json_object_get(o, field))
                return 1;
            json_object_set(o, field, v);
            json_object_del(o, key);
        }
    }
    return 0;
}

/* The event on line ln (text[0..n)) read with jansson into *e (body, member and id
 * set): 0, 1 when the line is bad (reported to b), -1 out of memory.  The reference
 * reader: every line event_fast() declines comes here, and so does every error. */
static int event_slow(batch *b, uint64_t ln, const char *line, size_t n,
                      const patron_import_opts *opts, loyalty_fx *fx, const char *curmsg, bevent *e)
{
    json_error_t je;
    json_t *o = json_loadb(line, n, 0, &je);
    if (!json_is_object(o)) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s", o ? "not a JSON object" : je.text);
        report(b, ln, "(line)", "%.*s", msg, strlen(msg));
        json_decref(o);
        return 1;
    }
    char mfield[128], mkey[128];
    if (map_keys(o, opts->map, mfield, mkey, sizeof mfield)) {
        report(b, ln, mfield, "the line has both this key and '%.*s', which --map renames "
               "to it", mkey, strlen(mkey));
        json_decref(o);
        return 1;
    }
    json_t *t = json_object_get(o, "type"), *m = json_object_get(o, "member_id"),
           *ts = json_object_get(o, "ts");
    const char *bad_col = NULL, *why = NULL, *val = "";
    if (json_is_string(t))
        for (int k = 0; k < (int)(sizeof event_types / sizeof *event_types); k++)
            if (strcmp(json_string_value(t), event_types[k]) == 0) e->type = k;
    if (e->type < 0) {
        bad_col = "type", why = "unknown event type '%.*s'",
        val = json_is_string(t) ? json_string_value(t) : "";
    } else if (!json_is_string(m) || json_string_length(m) == 0 ||
               json_string_length(m) > 128) {
        bad_col = "member_id", why = "missing or not a string of 1-128 bytes%.*s";
    } else if (json_is_string(ts)
                   ? time_parse(json_string_value(ts), json_string_length(ts), &e->ts) != 0
                   : !json_is_integer(ts)) {
        bad_col = "ts", why = "cannot parse '%.*s' as a timestamp",
        val = json_is_string(ts) ? json_string_value(ts) : "";
    } else if (json_is_integer(ts)) {
        e->ts = json_integer_value(ts);
    }
    const char *idkey = (e->type == 0 || e->type == 1 || e->type == 4) ? "order_id" : "event_id";
    json_t *idv = json_object_get(o, idkey);
    if (!bad_col && (e->type == 0 || e->type == 1 || e->type == 4) && !json_is_string(idv))
        bad_col = idkey, why = "missing%.*s";
    int64_t fxr = PROGRAM_SCALE;
    if (!bad_col && (e->type == 0 || e->type == 1)) {
        json_t *cu = json_object_get(o, "currency");
        if (cu && (!json_is_string(cu) ||
                   !(fxr = loyalty_fx_rate(fx, json_string_value(cu), json_string_length(cu))))) {
            bad_col = "currency", why = curmsg;
            val = json_is_string(cu) ? json_string_value(cu) : "";
        }
    }
    e->fxr = fxr;
    if (!bad_col && (e->type == 0 || e->type == 1)) {
        json_t *items = json_object_get(o, "items"), *it;
        size_t k;
        int64_t sum = 0;
        json_array_foreach(items, k, it)
        {
            int64_t q = 0, pr = 0, a = 0;
            json_t *qv = json_object_get(it, "qty");
            if (!json_is_integer(qv) || (q = json_integer_value(qv)) == 0) {
                bad_col = "items.qty", why = "not a non-zero whole number%.*s";
                break;
            }
            if (event_money(json_object_get(it, "price"), &pr) != 0 || pr < 0) {
                bad_col = "items.price", why = "missing, negative or not a price%.*s";
                break;
            }
            if (loyalty_fx_convert(pr, fxr, &pr) != 0) {
                bad_col = "items.price", why = "the price overflows in the base currency%.*s";
                break;
            }
            if (num_mul_i64(q, pr, &a) != 0 || num_add_i64(sum, a, &sum) != 0) {
                bad_col = "items", why = "amount overflows%.*s";
                break;
            }
            e->items++;
            e->units += q;
        }
        json_t *am = json_object_get(o, "amount");
        if (!bad_col && am && event_money(am, &e->amount) != 0)
            bad_col = "amount", why = "cannot parse the amount%.*s";
        if (!bad_col && fxr != PROGRAM_SCALE && am &&
            loyalty_fx_convert(e->amount, fxr, &e->amount) != 0)
            bad_col = "amount", why = "the amount overflows in the base currency%.*s";
        else if (!am)
            e->amount = sum;
        if (!bad_col && e->type == 1 && e->amount > 0)
            e->amount = -e->amount; /* a return is money back */
        if (!bad_col && e->type == 0 && !am && e->items == 0)
            bad_col = "items", why = "an order needs items or an amount%.*s";
    }
    if (bad_col) {
        report(b, ln, bad_col, why, val, strlen(val));
        json_decref(o);
        return 1;
    }
    e->member = mem_strdup(json_string_value(m));
    /* Only the canonical text is kept until the commit (it is also what is stored). */
    e->body = json_dumps(o, JSON_SORT_KEYS | JSON_COMPACT);
    if (!e->member || !e->body) {
        json_decref(o);
        free(e->body);
        mem_free(e->member);
        return -1;
    }
    e->hash = XXH3_64bits(e->body, strlen(e->body));
    if (json_is_string(idv)) {
        e->id = mem_strdup(json_string_value(idv));
    } else {
        char hb[40];
        snprintf(hb, sizeof hb, "h%016llx", (unsigned long long)e->hash);
        e->id = mem_strdup(hb);
    }
    json_decref(o);
    if (!e->id) {
        free(e->body);
        mem_free(e->member);
        return -1;
    }
    return 0;
}

/* A string value decoded into a new NUL-terminated copy (mem_free it); NULL out of
 * memory. */
static char *js_dup(const jsval *v)
{
    if (!v->esc)
        return mem_strndup(v->p, v->n);
    char *s = mem_alloc(v->n + 1); /* decoding never lengthens */
    size_t n;
    if (s)
        jscan_str(v, s, v->n + 1, &n);
    return s;
}

/* The event on text[0..n) read without a tree, into *e, for the common lines: an event
 * that is not an order or a return, without --map, every field good.  0 read; 1 left to
 * event_slow() (which then reads it, or reports what is wrong with it); -1 out of
 * memory.  Whatever it reads, event_slow() would read the same: the canonical text is
 * jansson's (jcanon.h) and the checks are the ones there, in the same order. */
static int event_fast(const char *line, size_t n, const patron_import_opts *opts, jcbuf *cb,
                      bevent *e)
{
    jsval doc;
    if ((opts->map && *opts->map) || jscan_doc(line, n, &doc) != 0 || doc.kind != JS_OBJ)
        return 1;
    static const char *const keys[5] = {"type", "member_id", "ts", "order_id", "event_id"};
    jsval f[5];
    jscan_pick(&doc, keys, 5, f);
    const jsval t = f[0], m = f[1], ts = f[2];
    e->type = -1;
    for (int k = 2; t.kind == JS_STR && k < (int)(sizeof event_types / sizeof *event_types); k++)
        if (jscan_str_eq(&t, event_types[k])) e->type = k;
    if (e->type < 0)
        return 1; /* orders and returns, and unknown types */
    const jsval idv = f[e->type == 4 ? 3 : 4];
    if (m.kind != JS_STR || m.n == 0 || m.n > 128 || m.esc)
        return 1; /* escapes: the decoded length is checked by event_slow() */
    if (ts.kind == JS_STR) {
        char buf[64];
        size_t tn;
        if (ts.n >= sizeof buf)
            return 1;
        const char *tt = jscan_str(&ts, buf, sizeof buf, &tn);
        if (time_parse(tt, tn, &e->ts) != 0)
            return 1;
    } else if (ts.kind == JS_INT) {
        e->ts = jscan_int(&ts);
    } else {
        return 1;
    }
    if (e->type == 4 && idv.kind != JS_STR)
        return 1;
    cb->n = 0;
    int rc = jcanon(&doc, cb);
    if (rc)
        return rc; /* a key twice or an escaped key (1), or out of memory */
    e->fxr = PROGRAM_SCALE;
    e->member = mem_strndup(m.p, m.n);
    e->body = malloc(cb->n + 1); /* freed with free(), like jansson's text */
    if (!e->member || !e->body) {
        mem_free(e->member);
        free(e->body);
        return -1;
    }
    memcpy(e->body, cb->p, cb->n + 1);
    e->hash = XXH3_64bits(e->body, cb->n);
    if (idv.kind == JS_STR) {
        e->id = js_dup(&idv);
    } else {
        char hb[40];
        snprintf(hb, sizeof hb, "h%016llx", (unsigned long long)e->hash);
        e->id = mem_strdup(hb);
    }
    if (!e->id) {
        mem_free(e->member);
        free(e->body);
        return -1;
    }
    return 0;
}

/* prefix followed by id in the scratch buffer *buf (grown as needed; mem_free it):
 * the text, NUL-terminated, with its length in *len; NULL when out of memory. */
static const char *join_key(char **buf, size_t *cap, const char *prefix, const char *id,
                            size_t *len)
{
    size_t a = strlen(prefix), b = strlen(id);
    if (MEM_GROW(*buf, *cap, a + b + 1))
        return NULL;
    memcpy(*buf, prefix, a);
    memcpy(*buf + a, id, b + 1);
    *len = a + b;
    return *buf;
}

/* Events from the file at path, or (mem != NULL) from memory named path. */
static int import_events(patron_db *db, const char *path, const char *mem, size_t memn,
                         const patron_import_opts *opts, patron_import_result *res,
                         patron_error *err)
{
    int rc0 = validate_map(opts->map, NULL, 0, err);
    if (rc0) return rc0;
    line_reader *r;
    int rc = mem ? lines_open_mem(path, mem, memn, &r, err) : lines_open(path, &r, err);
    if (rc) return rc;
    batch b;
    memset(&b, 0, sizeof b);
    b.opts = opts;
    b.name = path;
    bevent *ev = NULL;
    size_t nev = 0, cev = 0;
    hmap seen; /* ids in this file -> index into ev */
    hmap_init(&seen);
    jcbuf cb = {0}; /* the canonical text of the line event_fast() reads */
    char *kbuf = NULL, *sbuf = NULL; /* keys of the duplicate checks */
    size_t kcap = 0, scap = 0;
    if ((rc = store_read_begin(db->st, err)) != PATRON_OK) {
        lines_free(r);
        hmap_release(&seen);
        return rc;
    }
    loyalty_fx fx;
    char curmsg[160];
    if ((rc = fx_setup(db, 0, &fx, curmsg, sizeof curmsg, err)) != PATRON_OK) {
        store_read_end(db->st);
        lines_free(r);
        hmap_release(&seen);
        return rc;
    }
    const char *line;
    size_t n;
    while ((rc = lines_next(r, &line, &n, err)) == 1) {
        uint64_t ln = lines_line(r);
        if (n == 0) continue;
        res->rows++;
        if (opts->progress && !mem && (res->rows & 0x3fff) == 0)
            opts->progress(opts->progress_ctx, lines_consumed(r), lines_size(r));
        bevent e;
        memset(&e, 0, sizeof e);
        e.type = -1;
        int fr = event_fast(line, n, opts, &cb, &e);
        if (fr == 1) {
            memset(&e, 0, sizeof e);
            e.type = -1;
            fr = event_slow(&b, ln, line, n, opts, &fx, curmsg, &e);
            if (fr == 1)
                continue;
        }
        if (fr < 0) {
            rc = err_set(err, PATRON_ENOMEM, "out of memory");
            break;
        }
        const char *idkey = (e.type == 0 || e.type == 1 || e.type == 4) ? "order_id" : "event_id";
        /* Duplicates: in this file, then in the store. */
        uint32_t prev;
        size_t keyn, skeyn;
        const char *kind = e.type == 4 ? "void:" : (e.type <= 1 ? "order:" : "ev:");
        const char *key = join_key(&kbuf, &kcap, kind, e.id, &keyn);
        const char *skey =
                key ? join_key(&sbuf, &scap, e.type == 4 ? "void:" : "", e.id, &skeyn) : NULL;
        if (!skey) {
            free(e.body);
            mem_free(e.member);
            mem_free(e.id);
            rc = err_set(err, PATRON_ENOMEM, "out of memory");
            break;
        }
        /* the order-id index, on the first order, return or void (loading it takes
         * seconds at a million members; streams of other events never need it) */
        if ((e.type <= 1 || e.type == 4) && (rc = db_order_ids_ensure(db, err)) != PATRON_OK) {
            free(e.body);
            mem_free(e.member);
            mem_free(e.id);
            break;
        }
        int dup = 0, conflict = 0;
        if (hmap_get(&seen, key, keyn, &prev)) {
            dup = ev[prev].hash == e.hash;
            conflict = !dup;
        } else if (e.type <= 1) {
            uint32_t ex;
            if (hmap_get(&db->order_ids, e.id, strlen(e.id), &ex)) {
                dup = db->o_hash[ex] == e.hash;
                conflict = !dup;
            }
        } else {
            uint64_t h;
            int f = store_event_get(db->st, skey, &h, err);
            if (f < 0) {
                rc = f;
                free(e.body);
                mem_free(e.member);
                mem_free(e.id);
                break;
            }
            if (f == 1) {
                dup = h == e.hash;
                conflict = !dup;
            }
        }
        if (dup || conflict) {
            if (conflict)
                report(&b, ln, idkey, "'%.*s' is already stored with different content", e.id,
                       strlen(e.id));
            else
                res->duplicates++;
            free(e.body);
            mem_free(e.member);
            mem_free(e.id);
            continue;
        }
        if (e.type == 4) {
            uint32_t ex;
            size_t okeyn;
            const char *okey = join_key(&sbuf, &scap, "order:", e.id, &okeyn);
            int known = hmap_get(&db->order_ids, e.id, strlen(e.id), &ex) ||
                        (okey && hmap_get(&seen, okey, okeyn, &ex));
            if (!known) {
                report(&b, ln, "order_id", "no stored order or return '%.*s' to void", e.id,
                       strlen(e.id));
                free(e.body);
                mem_free(e.member);
                mem_free(e.id);
                continue;
            }
        }
        if (MEM_GROW(ev, cev, nev + 1) || hmap_put(&seen, key, keyn, (uint32_t)nev)) {
            rc = err_set(err, PATRON_ENOMEM, "out of memory");
            free(e.body);
            mem_free(e.member);
            mem_free(e.id);
            break;
        }
        ev[nev++] = e;
    }
    store_read_end(db->st);
    lines_free(r);
    jcbuf_free(&cb);
    if (rc >= 0) rc = PATRON_OK;
    if (rc == PATRON_OK && b.bad_rows > 0 && (long)b.bad_rows > opts->max_errors)
        rc = err_set(err, PATRON_EINPUT,
                     "%s: %llu bad row%s (--max-errors %ld); nothing was imported", path,
                     (unsigned long long)b.bad_rows, b.bad_rows == 1 ? "" : "s", opts->max_errors);
    hmap newm;
    hmap_init(&newm);
    size_t n_new = 0;
    /* The line items of orders and returns: stored as item chunks and dictionary codes,
     * like those of order CSV files (b.orders[k] stands for event ev_of[k]). */
    size_t *ev_of = NULL, cap_of = 0;
    uint32_t *ok_all = NULL, *order_ix = NULL;
    for (size_t i = 0; i < nev && rc == PATRON_OK; i++) {
        if (ev[i].type > 1)
            continue;
        json_error_t je;
        json_t *o = json_loads(ev[i].body, 0, &je), *items = json_object_get(o, "items"), *it;
        json_t *chv = json_object_get(o, "channel"), *stv = json_object_get(o, "store");
        if ((json_is_string(chv) && dict_code(db, &b, DB_DICT_CHANNEL, json_string_value(chv),
                                              json_string_length(chv), &ev[i].channel)) ||
            (json_is_string(stv) && dict_code(db, &b, DB_DICT_STORE, json_string_value(stv),
                                              json_string_length(stv), &ev[i].store)))
            rc = err_set(err, PATRON_ENOMEM, "out of memory");
        if (ev[i].items == 0 || rc != PATRON_OK) {
            json_decref(o);
            continue;
        }
        size_t k;
        uint32_t bi = (uint32_t)b.n;
        if (MEM_GROW(b.orders, b.cap, b.n + 1) || MEM_GROW(ev_of, cap_of, b.n + 1)) {
            rc = err_set(err, PATRON_ENOMEM, "out of memory");
        } else {
            memset(&b.orders[bi], 0, sizeof b.orders[bi]);
            if (arena_put(&b, ev[i].id, strlen(ev[i].id), &b.orders[bi].id_off))
                rc = err_set(err, PATRON_ENOMEM, "out of memory");
            b.orders[bi].id_len = (uint32_t)strlen(ev[i].id);
            ev_of[bi] = i;
            b.n++;
        }
        json_array_foreach(items, k, it)
        {
            if (rc != PATRON_OK)
                break;
            int64_t q = json_integer_value(json_object_get(it, "qty")), pr = 0;
            uint32_t c[3] = {0, 0, 0};
            static const char *const keys[3] = {"sku", "category", "brand"};
            event_money(json_object_get(it, "price"), &pr); /* checked when read */
            loyalty_fx_convert(pr, ev[i].fxr, &pr);
            for (int d = 0; d < 3 && rc == PATRON_OK; d++) {
                json_t *v = json_object_get(it, keys[d]);
                if (json_is_string(v) &&
                    dict_code(db, &b, d + 1, json_string_value(v), json_string_length(v), &c[d]))
                    rc = err_set(err, PATRON_ENOMEM, "out of memory");
            }
            if (rc == PATRON_OK && item_add(&b, bi, c[0], c[1], c[2], q, pr))
                rc = err_set(err, PATRON_ENOMEM, "out of memory");
        }
        json_decref(o);
    }
    if (rc == PATRON_OK && b.n) {
        ok_all = mem_alloc_array(b.n, sizeof *ok_all);
        order_ix = mem_alloc_array(b.n, sizeof *order_ix);
        if (!ok_all || !order_ix)
            rc = err_set(err, PATRON_ENOMEM, "out of memory");
        for (size_t k = 0; ok_all && k < b.n; k++)
            ok_all[k] = 1;
    }
    if (rc == PATRON_OK) {
        res->bad_rows = b.bad_rows;
        rc = store_begin_bulk(db->st, err);
        int new_codes = 0;
        for (int k = 1; k < DB_DICT__N; k++)
            new_codes |= b.n_new[k] > 0;
        if (rc == PATRON_OK && new_codes)
            rc = write_dicts(db, &b, err);
        if (rc == PATRON_OK && b.n_items)
            rc = write_item_chunks(db, &b, ok_all, NULL, err);
        loyalty_event *le = mem_calloc(nev + 1, sizeof *le); /* what the ledger is handed */
        if (!le && rc == PATRON_OK) rc = err_set(err, PATRON_ENOMEM, "out of memory");
        for (size_t i = 0; i < nev && rc == PATRON_OK; i++) {
            bevent *e = &ev[i];
            uint32_t mi;
            int64_t member;
            if (hmap_get(&db->member_ids, e->member, strlen(e->member), &mi)) {
                member = mi;
            } else if (hmap_get(&newm, e->member, strlen(e->member), &mi)) {
                member = mi;
            } else {
                mi = (uint32_t)(db->n_members + n_new++);
                if (hmap_put(&newm, e->member, strlen(e->member), mi)) {
                    rc = err_set(err, PATRON_ENOMEM, "out of memory");
                    break;
                }
                rc = store_member_put(db->st, mi, e->member, strlen(e->member), e->ts, "{}", err);
                member = mi;
            }
            if (rc) break;
            if (e->type <= 1) {
                store_order so = {
                    e->id,    strlen(e->id),         member, e->ts, e->amount, e->type, e->items,
                    e->units, e->hash ? e->hash : 1, 0, e->channel, e->store};
                rc = store_order_put(db->st, &so, err);
            } else if (e->type == 4) {
                rc = store_order_void(db->st, e->id, strlen(e->id), err);
            }
            if (rc == PATRON_OK && e->type > 1) {
                size_t eidn;
                const char *eid = join_key(&sbuf, &scap, e->type == 4 ? "void:" : "", e->id, &eidn);
                rc = eid ? store_event_put(db->st, eid, event_types[e->type], member, e->ts,
                                           e->hash, e->body, err)
                         : err_set(err, PATRON_ENOMEM, "out of memory");
            }
            le[i] = (loyalty_event){event_types[e->type], e->id, e->member, member, e->ts, e->body};
        }
        /* With promotion rules the batch reaches the model and the view before the
         * ledger sees it (loyalty_wants_view); otherwise after the commit. */
        int pre = 0;
        if (rc == PATRON_OK) rc = loyalty_wants_view(db, &pre, err);
        if (rc == PATRON_OK && pre) {
            rc = apply_events_batch(db, &b, ev, nev, ev_of, order_ix, res, err);
            view_after_import(db);
        }
        if (rc == PATRON_OK) {
            loyalty_import li = {.events = le, .n_events = nev};
            rc = loyalty_on_import(db, &li, err);
        }
        mem_free(le);
        if (rc == PATRON_OK && nev) rc = store_data_bump(db->st, err);
        if (rc == PATRON_OK) rc = store_commit(db->st, err);
        if (rc != PATRON_OK) {
            store_rollback(db->st);
            if (pre) rollback_model(db, res, err);
        } else {
            res->committed = 1;
            res->members_created = n_new;
            if (!pre) rc = apply_events_batch(db, &b, ev, nev, ev_of, order_ix, res, err);
        }
    }
    if (rc == PATRON_OK && b.bad_rows > 0 && !mem) {
        if (opts->rejects_path)
            snprintf(res->rejects_path, sizeof res->rejects_path, "%s", opts->rejects_path);
        else
            snprintf(res->rejects_path, sizeof res->rejects_path, "%s.rejects", path);
        rc = write_rejects_jsonl(path, res->rejects_path, &b, err);
    }
    mem_free(kbuf);
    mem_free(sbuf);
    mem_free(ev_of);
    mem_free(ok_all);
    mem_free(order_ix);
    for (size_t i = 0; i < nev; i++) {
        free(ev[i].body);
        mem_free(ev[i].member);
        mem_free(ev[i].id);
    }
    mem_free(ev);
    hmap_release(&seen);
    hmap_release(&newm);
    batch_release(&b);
    return rc;
}

/* Every import: defaults, the order-id index, tracking what changed, and the member
 * view kept current.  mem != NULL: events from memory (path names them). */
static int import_any(patron_db *db, patron_import_kind kind, const char *path, const char *mem,
                      size_t memn, const patron_import_opts *opts, patron_import_result *res,
                      patron_error *err)
{
    patron_import_opts dflt;
    if (!opts) {
        patron_import_opts_init(&dflt);
        opts = &dflt;
    }
    memset(res, 0, sizeof *res);
    int rc = PATRON_OK;
    /* An orders import of a store opened deferred (db_open_deferred) loads the members
     * and orders beside its parse, then runs the prelude (import_orders); the others
     * load them first. */
    int deferred = db->model_pending && kind == PATRON_IMPORT_ORDERS;
    if (!deferred) {
        rc = db_model_load_rest(db, err);
        if (rc == PATRON_OK) rc = import_prelude(db, kind, err);
        if (rc != PATRON_OK) return rc;
    }
    switch (kind) {
    case PATRON_IMPORT_ORDERS:
        rc = import_orders(db, path, opts, res, err);
        break;
    case PATRON_IMPORT_MEMBERS:
        rc = import_members(db, path, opts, res, err);
        break;
    case PATRON_IMPORT_EVENTS:
        rc = import_events(db, path, mem, memn, opts, res, err);
        break;
    default:
        rc = err_set(err, PATRON_EUSAGE, "importing this kind of file is not built yet");
        break;
    }
    db->tracking = 0;
    if (db->model_pending) { /* the import stopped before loading the members */
        patron_error e2;
        int lrc = db_model_load_rest(db, &e2);
        if (rc == PATRON_OK && lrc != PATRON_OK) {
            *err = e2;
            rc = lrc;
        }
    }
    if (res->committed) {
        loyalty_after_commit(db); /* what the batch posted to the ledger */
        view_after_import(db);    /* the importers kept it current; rebind its columns */
    } else {
        loyalty_after_rollback(db);
    }
    return rc;
}

int patron_import(patron_db *db, patron_import_kind kind, const char *path,
                  const patron_import_opts *opts, patron_import_result *res, patron_error *err)
{
    return import_any(db, kind, path, NULL, 0, opts, res, err);
}

int patron_events_add(patron_db *db, const char *name, const char *jsonl, size_t n,
                      const patron_import_opts *opts, patron_import_result *res, patron_error *err)
{
    return import_any(db, PATRON_IMPORT_EVENTS, name ? name : "(events)", jsonl ? jsonl : "",
                      jsonl ? n : 0, opts, res, err);
}
