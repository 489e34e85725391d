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

#include "base/err.h"
#include "base/hmap.h"
#include "base/mem.h"
#include "base/num.h"
#include "base/time.h"
#include "ingest/input.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

void patron_import_opts_init(patron_import_opts *o)
{
    memset(o, 0, sizeof *o);
    o->now = PATRON_NULL_TS;
}

enum { F_ORDER_ID, F_MEMBER_ID, F_TS, F_SKU, F_QTY, F_PRICE, F_CATEGORY, F_BRAND, F_CHANNEL,
       F_STORE, F_CURRENCY, F_ORIGINAL, F_AMOUNT, F__COUNT };
static const char *order_fields[F__COUNT] = {"order_id", "member_id", "ts", "sku", "qty",
                                             "price", "category", "brand", "channel", "store",
                                             "currency", "original_order_id", "amount"};

/* Resolves "field=COLUMN,..." for one field name; returns the column name to look for. */
static int map_lookup(const char *map, const char *field, char *out, size_t cap)
{
    size_t fn = strlen(field);
    for (const char *p = map; p && *p;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', n);
        if (eq && (size_t)(eq - p) == fn && memcmp(p, field, fn) == 0) {
            size_t vn = n - fn - 1;
            if (vn >= cap)
                vn = cap - 1;
            memcpy(out, eq + 1, vn);
            out[vn] = '\0';
            return 1;
        }
        p = end ? end + 1 : NULL;
    }
    snprintf(out, cap, "%s", field);
    return 0;
}

static int validate_map(const char *map, const char *const *fields, int nfields,
                        patron_error *err)
{
    for (const char *p = map; p && *p;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', n);
        if (!eq)
            return err_set(err, PATRON_EUSAGE, "--map: '%.*s' is not FIELD=COLUMN", (int)n, p);
        int ok = 0;
        for (int i = 0; i < nfields && !ok; i++)
            ok = strlen(fields[i]) == (size_t)(eq - p) && memcmp(fields[i], p, (size_t)(eq - p)) == 0;
        if (!ok && fields != order_fields)
            ok = 1; /* members and events take any field name */
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
    if (MEM_GROW(b->lines, b->cap, b->n + 1) != 0)
        return -1;
    char **r = mem_realloc_array(b->reasons, b->cap, sizeof *r);
    if (!r)
        return -1;
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

/* One order of the batch, built from its rows. */
typedef struct border {
    uint64_t member_off; /* offset of member id in the batch arena */
    uint32_t member_len;
    uint64_t id_off;
    uint32_t id_len;
    int64_t ts;
    int64_t pos_amount, neg_amount, units, neg_units;
    int64_t items, neg_items;
    uint64_t hash;
    uint64_t first_line;
    int bad;
    int dup;
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
} batch;

static int arena_put(batch *b, const char *s, size_t n, uint64_t *off)
{
    if (MEM_GROW(b->arena, b->arena_cap, b->arena_len + n + 1) != 0)
        return -1;
    memcpy(b->arena + b->arena_len, s, n);
    *off = b->arena_len;
    b->arena_len += n;
    return 0;
}

static void report(batch *b, uint64_t line, const char *col, const char *fmt, const char *v,
                   size_t vn)
{
    char reason[512], msg[1024];
    snprintf(reason, sizeof reason, fmt, (int)(vn > 64 ? 64 : vn), v);
    snprintf(msg, sizeof msg, "%s:%llu: column '%s': %s", b->name, (unsigned long long)line, col,
             reason);
    if (b->opts->report)
        b->opts->report(b->opts->report_ctx, msg);
    bad_add(&b->bad, line, reason);
    b->bad_rows++;
}

static int write_rejects(const char *path, char delim, const char *rejects, batch *b,
                         int order_level, const int *col, patron_error *err)
{
    FILE *f = fopen(rejects, "w");
    if (!f)
        return err_set(err, PATRON_EIO, "cannot write rejects file '%s'", rejects);
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
                if (*c == '"')
                    fputc('"', f);
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

static char sniff_delim(const char *path, char d)
{
    if (d)
        return d;
    size_t n = strlen(path);
    if (n > 4 && strcmp(path + n - 4, ".txt") == 0)
        return ' ';
    return ',';
}

static int import_orders(patron_db *db, const char *path, const patron_import_opts *opts,
                         patron_import_result *res, patron_error *err)
{
    int rc;
    if ((rc = validate_map(opts->map, order_fields, F__COUNT, err)))
        return rc;
    char delim = sniff_delim(path, opts->delimiter);
    csv_reader *r;
    if ((rc = csv_open(path, delim, &r, err)))
        return rc;
    const csv_field *fl;
    size_t nf;
    rc = csv_next(r, &fl, &nf, err);
    if (rc <= 0) {
        csv_free(r);
        return rc < 0 ? rc : err_set(err, PATRON_EINPUT, "%s: empty file (a header row is required)", path);
    }
    int col[F__COUNT];
    for (int f = 0; f < F__COUNT; f++) {
        char want[256];
        map_lookup(opts->map, order_fields[f], want, sizeof want);
        col[f] = -1;
        for (size_t i = 0; i < nf; i++)
            if (fl[i].n == strlen(want) && memcmp(fl[i].p, want, fl[i].n) == 0)
                col[f] = (int)i;
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
            return err_set(err, PATRON_EINPUT, "%s:1: missing required column '%s'%s", path,
                           want, order_level ? "" : " (or an 'amount' column for an order-level file)");
        }

    batch b;
    memset(&b, 0, sizeof b);
    hmap_init(&b.ids);
    b.opts = opts;
    b.name = path;
    hmap occur; /* content hash -> occurrences, for order-level rows without an id */
    hmap_init(&occur);
    while ((rc = csv_next(r, &fl, &nf, err)) == 1) {
        res->rows++;
        uint64_t line = csv_line(r);
        if (opts->progress && (res->rows & 0xffff) == 0)
            opts->progress(opts->progress_ctx, csv_consumed(r), csv_size(r));
#define FIELD(f) (col[f] >= 0 && (size_t)col[f] < nf ? fl[col[f]] : (csv_field){"", 0})
        csv_field oid = FIELD(F_ORDER_ID), mid = FIELD(F_MEMBER_ID), tsf = FIELD(F_TS);
        int64_t ts = 0, qty = 1, price = 0, amount = 0;
        int bad = 0;
        char idbuf[64];
        if (tsf.n == 0 || time_parse(tsf.p, tsf.n, &ts) != 0) {
            report(&b, line, order_fields[F_TS], "cannot parse '%.*s' as a timestamp", tsf.p, tsf.n);
            bad = 1;
        }
        if (order_level) {
            csv_field af = FIELD(F_AMOUNT);
            if (num_parse_money(af.p, af.n, &amount) != 0) {
                report(&b, line, order_fields[F_AMOUNT], "cannot parse '%.*s' as an amount", af.p, af.n);
                bad = 1;
            }
            if (col[F_ORDER_ID] < 0) {
                size_t rawn;
                const char *raw = csv_raw(r, &rawn);
                uint64_t h = XXH3_64bits(raw, rawn);
                uint32_t cnt = 0;
                hmap_get(&occur, (const char *)&h, sizeof h, &cnt);
                hmap_put(&occur, (const char *)&h, sizeof h, cnt + 1);
                snprintf(idbuf, sizeof idbuf, "h%016llx-%u", (unsigned long long)h, cnt);
                oid.p = idbuf;
                oid.n = strlen(idbuf);
            }
        } else {
            csv_field q = FIELD(F_QTY), pr = FIELD(F_PRICE), sku = FIELD(F_SKU);
            if (num_parse_int(q.p, q.n, &qty) != 0) {
                report(&b, line, order_fields[F_QTY], "cannot parse '%.*s' as a whole number", q.p, q.n);
                bad = 1;
            } else if (qty == 0) {
                report(&b, line, order_fields[F_QTY], "quantity '%.*s' is zero", q.p, q.n);
                bad = 1;
            }
            if (num_parse_money(pr.p, pr.n, &price) != 0) {
                report(&b, line, order_fields[F_PRICE], "cannot parse '%.*s' as a price", pr.p, pr.n);
                bad = 1;
            } else if (price < 0) {
                report(&b, line, order_fields[F_PRICE], "price '%.*s' is negative", pr.p, pr.n);
                bad = 1;
            }
            if (sku.n == 0) {
                report(&b, line, order_fields[F_SKU], "empty value%.*s", "", 0);
                bad = 1;
            }
            if (!bad && num_mul_i64(qty, price, &amount) != 0) {
                report(&b, line, order_fields[F_QTY], "amount of '%.*s' x price overflows", q.p, q.n);
                bad = 1;
            }
        }
        if (oid.n == 0) {
            report(&b, line, order_fields[F_ORDER_ID], "empty value%.*s", "", 0);
            continue;
        }
        uint32_t oi;
        if (!hmap_get(&b.ids, oid.p, oid.n, &oi)) {
            if (MEM_GROW(b.orders, b.cap, b.n + 1) != 0 ||
                hmap_put(&b.ids, oid.p, oid.n, (uint32_t)b.n) != 0) {
                rc = err_set(err, PATRON_ENOMEM, "out of memory");
                break;
            }
            oi = (uint32_t)b.n++;
            border *o = &b.orders[oi];
            memset(o, 0, sizeof *o);
            o->ts = ts;
            o->first_line = line;
            arena_put(&b, oid.p, oid.n, &o->id_off);
            o->id_len = (uint32_t)oid.n;
            arena_put(&b, mid.p, mid.n, &o->member_off);
            o->member_len = (uint32_t)mid.n;
        }
        border *o = &b.orders[oi];
        if (mid.n != o->member_len || memcmp(b.arena + o->member_off, mid.p, mid.n) != 0) {
            report(&b, line, order_fields[F_MEMBER_ID],
                   "member '%.*s' differs from the member of the order's first row", mid.p, mid.n);
            bad = 1;
        }
        if (bad) {
            o->bad = 1;
            continue;
        }
        if (ts < o->ts)
            o->ts = ts;
        if (amount < 0 || (order_level && amount < 0)) {
            o->neg_amount += amount;
            o->neg_units += qty;
            o->neg_items++;
        } else {
            o->pos_amount += amount;
            o->units += qty;
            o->items++;
        }
        int64_t hv[4] = {ts, qty, price, amount};
        csv_field sku = FIELD(F_SKU);
        o->hash += XXH3_64bits(hv, sizeof hv) ^ XXH3_64bits(sku.p, sku.n);
    }
#undef FIELD
    csv_free(r);
    hmap_release(&occur);
    if (rc < 0)
        goto out;
    rc = PATRON_OK;

    /* Against the store: duplicates and conflicting ids. */
    for (size_t i = 0; i < b.n; i++) {
        border *o = &b.orders[i];
        if (o->bad)
            continue;
        uint64_t ch = o->hash ^ XXH3_64bits(b.arena + o->member_off, o->member_len);
        o->hash = ch ? ch : 1;
        uint32_t ex;
        if (hmap_get(&db->order_ids, b.arena + o->id_off, o->id_len, &ex)) {
            if (db->o_hash[ex] == o->hash) {
                o->dup = 1;
                res->duplicates++;
            } else {
                report(&b, o->first_line, order_fields[F_ORDER_ID],
                       "order '%.*s' is already stored with different content",
                       b.arena + o->id_off, o->id_len);
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

    /* Write: new members, then orders, in one transaction. */
    hmap newm;
    hmap_init(&newm);
    char **new_ids = NULL;
    int64_t *new_en = NULL;
    uint32_t *new_len = NULL;
    size_t n_new = 0, cap_new = 0, cap_en = 0, cap_len = 0;
    if ((rc = store_begin(db->st, err)))
        goto out;
    store_order so;
    for (size_t i = 0; i < b.n && rc == 0; i++) {
        border *o = &b.orders[i];
        if (o->bad || o->dup)
            continue;
        int64_t member = -1;
        if (o->member_len) {
            uint32_t mi;
            const char *ms = b.arena + o->member_off;
            if (hmap_get(&db->member_ids, ms, o->member_len, &mi)) {
                member = mi;
            } else if (hmap_get(&newm, ms, o->member_len, &mi)) {
                member = mi;
                if (o->ts < new_en[mi - db->n_members])
                    new_en[mi - db->n_members] = o->ts;
            } else {
                mi = (uint32_t)(db->n_members + n_new);
                if (MEM_GROW(new_ids, cap_new, n_new + 1) || MEM_GROW(new_en, cap_en, n_new + 1) ||
                    MEM_GROW(new_len, cap_len, n_new + 1) ||
                    hmap_put(&newm, ms, o->member_len, mi)) {
                    rc = err_set(err, PATRON_ENOMEM, "out of memory");
                    break;
                }
                new_ids[n_new] = b.arena + o->member_off;
                new_en[n_new] = o->ts;
                new_len[n_new] = o->member_len;
                n_new++;
                member = mi;
            }
        }
        int ret = o->items == 0 && o->neg_items > 0;
        so.id = b.arena + o->id_off;
        so.idn = o->id_len;
        so.member = member;
        so.ts = o->ts;
        so.amount = o->pos_amount + o->neg_amount;
        so.kind = ret;
        so.items = ret ? o->neg_items : o->items;
        so.units = ret ? o->neg_units : o->units;
        so.hash = o->hash;
        so.voided = 0;
        rc = store_order_put(db->st, &so, err);
    }
    for (size_t k = 0; k < n_new && rc == 0; k++) {
        uint32_t len = new_len[k];
        rc = store_member_put(db->st, (uint32_t)(db->n_members + k), new_ids[k], len, new_en[k],
                              "{}", err);
    }
    if (rc == 0)
        rc = store_commit(db->st, err);
    if (rc) {
        store_rollback(db->st);
    } else {
        res->committed = 1;
        /* Apply to the model: members first (orders reference them). */
        for (size_t k = 0; k < n_new && rc == 0; k++) {
            uint32_t len = new_len[k];
            rc = db_member_add(db, new_ids[k], len, new_en[k], "{}", NULL);
        }
        for (size_t i = 0; i < b.n && rc == 0; i++) {
            border *o = &b.orders[i];
            if (o->bad || o->dup)
                continue;
            uint32_t mi = 0;
            int64_t member = -1;
            if (o->member_len && hmap_get(&db->member_ids, b.arena + o->member_off, o->member_len, &mi))
                member = mi;
            int ret = o->items == 0 && o->neg_items > 0;
            so.id = b.arena + o->id_off;
            so.idn = o->id_len;
            so.member = member;
            so.ts = o->ts;
            so.amount = o->pos_amount + o->neg_amount;
            so.kind = ret;
            so.items = ret ? o->neg_items : o->items;
            so.units = ret ? o->neg_units : o->units;
            so.hash = o->hash;
            so.voided = 0;
            rc = db_order_add(db, &so);
            if (rc == 0) {
                res->inserted++;
                res->items += (uint64_t)so.items;
            }
        }
        if (rc)
            rc = err_set(err, rc, "out of memory applying the import; reopen the database");
        res->members_created = n_new;
    }
    hmap_release(&newm);
    mem_free(new_ids);
    mem_free(new_en);
    mem_free(new_len);
    if (rc == 0 && b.bad_rows > 0) {
        if (opts->rejects_path)
            snprintf(res->rejects_path, sizeof res->rejects_path, "%s", opts->rejects_path);
        else
            snprintf(res->rejects_path, sizeof res->rejects_path, "%s.rejects", path);
        rc = write_rejects(path, delim, res->rejects_path, &b, order_level, col, err);
    }
out:
    mem_free(b.orders);
    hmap_release(&b.ids);
    mem_free(b.arena);
    bad_release(&b.bad);
    return rc;
}

int patron_import(patron_db *db, patron_import_kind kind, const char *path,
                  const patron_import_opts *opts, patron_import_result *res, patron_error *err)
{
    patron_import_opts dflt;
    if (!opts) {
        patron_import_opts_init(&dflt);
        opts = &dflt;
    }
    memset(res, 0, sizeof *res);
    switch (kind) {
    case PATRON_IMPORT_ORDERS:
        return import_orders(db, path, opts, res, err);
    default:
        return err_set(err, PATRON_EUSAGE, "importing this kind of file is not built yet");
    }
}
