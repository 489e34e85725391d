/*
 * db.c -- opening a program, the in-memory member model, and the reads built on it
 * (stats, member view, behavioural fields, the model hash).
 *
 * The model is loaded from the store at open and extended by db_member_add /
 * db_order_add after each committed import, the same calls the loader uses, so live
 * state and reloaded state cannot drift apart.  Behavioural fields are computed, never
 * stored: recency_days, frequency, monetary and aov are a pure function of the member's
 * orders and *now* (orders with ts > now are invisible; voided orders never count).
 */
#include "core/db.h"

#include "base/err.h"
#include "base/mem.h"
#include "base/num.h"
#include "base/time.h"
#include "loyalty/loyalty.h"
#include "members/view.h"

#include <jansson.h>
#include <roaring/roaring.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

void db_touch(patron_db *db, uint32_t m, uint32_t sources)
{
    if (!db->tracking)
        return;
    if (!db->touched)
        db->touched = roaring_bitmap_create();
    if (db->touched)
        roaring_bitmap_add(db->touched, m);
    db->touched_sources |= sources;
    db->data_version++;
}

int db_member_add(patron_db *db, const char *id, size_t n, int64_t enrolled_at,
                  uint64_t profile_hash, uint32_t *idx)
{
    return db_member_add_hashed(db, id, n, hmap_hash(id, n), enrolled_at, profile_hash, idx);
}

int db_member_add_hashed(patron_db *db, const char *id, size_t n, uint64_t id_hash,
                         int64_t enrolled_at, uint64_t profile_hash, uint32_t *idx)
{
    size_t cap = db->cap_members;
    if (db->n_members + 1 > cap) {
        size_t ncap = cap ? cap * 2 : 1024;
        char **a = mem_realloc_array(db->member_id, ncap, sizeof *a);
        if (!a)
            return PATRON_ENOMEM;
        db->member_id = a;
        int64_t *b = mem_realloc_array(db->enrolled_at, ncap, sizeof *b);
        if (!b)
            return PATRON_ENOMEM;
        db->enrolled_at = b;
        uint64_t *c = mem_realloc_array(db->profile_hash, ncap, sizeof *c);
        if (!c)
            return PATRON_ENOMEM;
        db->profile_hash = c;
        db->cap_members = ncap;
    }
    uint32_t i = db->n_members;
    db->member_id[i] = mem_strndup(id, n);
    db->profile_hash[i] = profile_hash;
    if (!db->member_id[i] || hmap_put_hashed(&db->member_ids, id, n, id_hash, i) != 0) {
        mem_free(db->member_id[i]);
        return PATRON_ENOMEM;
    }
    db->enrolled_at[i] = enrolled_at;
    db->n_members++;
    db_touch(db, i, DB_SRC_PROFILE);
    db->csr_valid = 0;
    if (idx)
        *idx = i;
    return PATRON_OK;
}

#define GROW_COL(col, ncap)                                                                        \
    do {                                                                                           \
        void *p_ = mem_realloc_array(db->col, ncap, sizeof *db->col);                             \
        if (!p_)                                                                                   \
            return PATRON_ENOMEM;                                                                  \
        db->col = p_;                                                                              \
    } while (0)

int db_orders_reserve(patron_db *db, size_t more)
{
    size_t need = db->n_orders + more;
    if (db->order_ids_valid && hmap_reserve(&db->order_ids, more, more * 12) != 0)
        return PATRON_ENOMEM;
    if (need <= db->cap_orders)
        return PATRON_OK;
    size_t ncap = db->cap_orders ? db->cap_orders : 4096;
    while (ncap < need)
        ncap *= 2;
    GROW_COL(o_member, ncap);
    GROW_COL(o_ts, ncap);
    GROW_COL(o_amount, ncap);
    GROW_COL(o_units, ncap);
    GROW_COL(o_items, ncap);
    GROW_COL(o_kind, ncap);
    GROW_COL(o_channel, ncap);
    GROW_COL(o_store, ncap);
    GROW_COL(o_void, ncap);
    GROW_COL(o_hash, ncap);
    db->cap_orders = ncap;
    return PATRON_OK;
}

int db_order_add(patron_db *db, const store_order *o)
{
    return db_order_add_hashed(db, o, db->order_ids_valid ? hmap_hash(o->id, o->idn) : 0);
}

int db_order_add_hashed(patron_db *db, const store_order *o, uint64_t id_hash)
{
    if (db->n_orders + 1 > db->cap_orders && db_orders_reserve(db, 1) != PATRON_OK)
        return PATRON_ENOMEM;
    size_t i = db->n_orders;
    if (db->order_ids_valid &&
        hmap_put_hashed(&db->order_ids, o->id, o->idn, id_hash, (uint32_t)i) != 0)
        return PATRON_ENOMEM;
    db->o_member[i] = (int32_t)o->member;
    if (o->member >= 0)
        db_touch(db, (uint32_t)o->member, DB_SRC_ORDERS);
    db->o_ts[i] = o->ts;
    db->o_amount[i] = o->amount;
    db->o_units[i] = o->units;
    db->o_items[i] = (int32_t)o->items;
    db->o_kind[i] = (uint8_t)o->kind;
    db->o_channel[i] = o->channel;
    db->o_store[i] = o->store;
    db->o_void[i] = (uint8_t)o->voided;
    db->o_hash[i] = o->hash;
    db->n_orders++;
    db->csr_valid = 0;
    return PATRON_OK;
}

typedef struct ids_ctx {
    patron_db *db;
    size_t next;
} ids_ctx;

static int load_order_ids(void *ctx, const store_orders *o)
{
    ids_ctx *c = ctx;
    for (uint32_t i = 0; i < o->n; i++) {
        if (c->next >= c->db->n_orders || c->db->o_hash[c->next] != o->hash[i])
            return 2; /* the store changed under this handle */
        if (hmap_put(&c->db->order_ids, o->ids + o->id_off[i], o->id_off[i + 1] - o->id_off[i],
                     (uint32_t)c->next++))
            return 1;
    }
    return 0;
}

int db_order_ids_ensure(patron_db *db, patron_error *err)
{
    if (db->order_ids_valid)
        return PATRON_OK;
    if (hmap_reserve(&db->order_ids, db->n_orders, db->n_orders * 12) != 0)
        return err_set(err, PATRON_ENOMEM, "out of memory");
    ids_ctx c = {db, 0};
    int rc = store_order_chunks_each(db->st, STORE_OC_IDS, load_order_ids, &c, err);
    if (rc == PATRON_OK && c.next != db->n_orders)
        rc = err_set(err, PATRON_ESTORE, "the store changed while open; reopen the database");
    if (rc != PATRON_OK) {
        hmap_release(&db->order_ids);
        hmap_init(&db->order_ids);
        return rc;
    }
    db->order_ids_valid = 1;
    return PATRON_OK;
}

static int load_member(void *ctx, uint32_t idx, const char *id, size_t idn, int64_t en,
                       uint64_t profile_hash)
{
    patron_db *db = ctx;
    if (idx != db->n_members)
        return PATRON_EINTERNAL;
    return db_member_add(db, id, idn, en, profile_hash, NULL) ? 1 : 0;
}

/* A chunk of stored orders onto the model's columns: copied whole when nothing else
 * is kept per order (the usual case at open), else order by order through
 * db_order_add_hashed. */
static int load_orders(void *ctx, const store_orders *o)
{
    patron_db *db = ctx;
    if (db_orders_reserve(db, o->n) != PATRON_OK)
        return 1;
    if (db->order_ids_valid || db->tracking) {
        for (uint32_t i = 0; i < o->n; i++) {
            store_order so = {o->ids + o->id_off[i], o->id_off[i + 1] - o->id_off[i],
                              o->member[i],          o->ts[i],
                              o->amount[i],          o->kind[i],
                              o->items[i],           o->units[i],
                              o->hash[i],            o->voided[i],
                              o->channel[i],         o->store[i]};
            if (db_order_add(db, &so) != PATRON_OK)
                return 1;
        }
        return 0;
    }
    size_t at = db->n_orders, n = o->n;
    if (n == 0)
        return 0;
    memcpy(db->o_member + at, o->member, n * sizeof *o->member);
    memcpy(db->o_ts + at, o->ts, n * sizeof *o->ts);
    memcpy(db->o_amount + at, o->amount, n * sizeof *o->amount);
    memcpy(db->o_units + at, o->units, n * sizeof *o->units);
    memcpy(db->o_items + at, o->items, n * sizeof *o->items);
    memcpy(db->o_kind + at, o->kind, n * sizeof *o->kind);
    memcpy(db->o_channel + at, o->channel, n * sizeof *o->channel);
    memcpy(db->o_store + at, o->store, n * sizeof *o->store);
    memcpy(db->o_void + at, o->voided, n * sizeof *o->voided);
    memcpy(db->o_hash + at, o->hash, n * sizeof *o->hash);
    db->n_orders += n;
    db->csr_valid = 0;
    return 0;
}

static int load_dict(void *ctx, int kind, uint32_t code, const char *v, size_t n)
{
    patron_db *db = ctx;
    if (kind < 1 || kind >= DB_DICT__N)
        return 0; /* a kind this version does not use */
    return hmap_put(&db->dict[kind], v, n, code) ? 1 : 0;
}

static void rest_release(patron_db *db);

/* Loads members and orders from the store into an empty model. */
static int model_load_rest(patron_db *db, patron_error *err)
{
    int rc = PATRON_OK;
    size_t nm = (size_t)store_member_count(db->st), no = (size_t)store_order_count(db->st);
    if (hmap_reserve(&db->member_ids, nm, nm * 12) != 0 || db_orders_reserve(db, no) != PATRON_OK)
        rc = err_set(err, PATRON_ENOMEM, "out of memory");
    if (rc == PATRON_OK)
        rc = store_members_each(db->st, load_member, db, err);
    if (rc == PATRON_OK)
        rc = store_order_chunks_each(db->st, db->order_ids_valid || db->tracking ? STORE_OC_ALL
                                                                                  : STORE_OC_VALUES,
                                     load_orders, db, err);
    db->n_events = (uint64_t)store_event_count(db->st);
    return rc;
}

/* Loads members, orders and dictionaries from the store into an empty model. */
static int model_load(patron_db *db, patron_error *err)
{
    int rc = model_load_rest(db, err);
    if (rc == PATRON_OK)
        rc = store_dict_each(db->st, load_dict, db, err);
    return rc;
}

int db_model_load_rest(patron_db *db, patron_error *err)
{
    if (!db->model_pending)
        return PATRON_OK;
    db->model_pending = 0;
    int rc = model_load_rest(db, err);
    if (rc != PATRON_OK) { /* the dictionaries stay; not half of the rest */
        rest_release(db);
        db->model_pending = 1;
    }
    return rc;
}

static int open_db(const char *path, int deferred, patron_db **out, patron_error *err)
{
    patron_db *db = mem_calloc(1, sizeof *db);
    if (!db)
        return err_set(err, PATRON_ENOMEM, "out of memory");
    hmap_init(&db->member_ids);
    hmap_init(&db->order_ids);
    db->view_hook = loyalty_view_hook;
    for (int k = 0; k < DB_DICT__N; k++)
        hmap_init(&db->dict[k]);
    int rc = store_open(path, &db->st, err);
    if (rc == PATRON_OK && deferred) {
        rc = store_dict_each(db->st, load_dict, db, err);
        db->model_pending = 1;
    } else if (rc == PATRON_OK) {
        rc = model_load(db, err);
    }
    if (rc != PATRON_OK) {
        patron_close(db);
        return rc;
    }
    *out = db;
    return PATRON_OK;
}

int patron_open(const char *path, patron_db **out, patron_error *err)
{
    return open_db(path, 0, out, err);
}

int db_open_deferred(const char *path, patron_db **out, patron_error *err)
{
    return open_db(path, 1, out, err);
}

/* Frees the members and orders of the model (and the CSR), leaving them empty. */
static void rest_release(patron_db *db)
{
    for (uint32_t i = 0; i < db->n_members; i++)
        mem_free(db->member_id[i]);
    mem_free(db->member_id);
    mem_free(db->enrolled_at);
    mem_free(db->profile_hash);
    db->member_id = NULL;
    db->enrolled_at = NULL;
    db->profile_hash = NULL;
    db->n_members = 0;
    db->cap_members = 0;
    hmap_release(&db->member_ids);
    hmap_release(&db->order_ids);
    hmap_init(&db->member_ids);
    hmap_init(&db->order_ids);
    db->order_ids_valid = 0;
    void **cols[] = {(void **)&db->o_member, (void **)&db->o_ts,      (void **)&db->o_amount,
                     (void **)&db->o_units,  (void **)&db->o_items,   (void **)&db->o_kind,
                     (void **)&db->o_channel, (void **)&db->o_store,  (void **)&db->o_void,
                     (void **)&db->o_hash,   (void **)&db->csr_off,   (void **)&db->csr_ord};
    for (size_t k = 0; k < sizeof cols / sizeof *cols; k++) {
        mem_free(*cols[k]);
        *cols[k] = NULL;
    }
    db->n_orders = 0;
    db->cap_orders = 0;
    db->csr_valid = 0;
}

/* Frees the member model (members, orders, dictionaries, CSR), leaving it empty. */
static void model_release(patron_db *db)
{
    rest_release(db);
    for (int k = 0; k < DB_DICT__N; k++) {
        hmap_release(&db->dict[k]);
        hmap_init(&db->dict[k]);
    }
}

int db_model_reload(patron_db *db, patron_error *err)
{
    db_view_free(db);
    model_release(db);
    int rc = model_load(db, err);
    if (rc == PATRON_OK)
        rc = db_order_ids_ensure(db, err);
    if (db->touched && db->n_members < UINT32_MAX)
        roaring_bitmap_remove_range((roaring_bitmap_t *)db->touched, db->n_members,
                                    (uint64_t)UINT32_MAX + 1);
    for (size_t k = 0; k < db->n_ext; k++)
        if (db->ext[k]->n > db->n_members)
            db->ext[k]->n = db->n_members; /* slots of members that no longer exist */
    return rc;
}

void patron_close(patron_db *db)
{
    if (!db)
        return;
    if (db->loyalty_free)
        db->loyalty_free(db->loyalty); /* before the store: it holds statements */
    store_close(db->st);
    db_view_free(db);
    if (db->touched)
        roaring_bitmap_free(db->touched);
    if (db->segs_free)
        db->segs_free(db);
    for (uint32_t i = 0; i < db->n_members; i++) {
        mem_free(db->member_id[i]);
    }
    mem_free(db->member_id);
    mem_free(db->enrolled_at);
    mem_free(db->profile_hash);
    hmap_release(&db->member_ids);
    hmap_release(&db->order_ids);
    for (int k = 0; k < DB_DICT__N; k++)
        hmap_release(&db->dict[k]);
    mem_free(db->o_member);
    mem_free(db->o_ts);
    mem_free(db->o_amount);
    mem_free(db->o_units);
    mem_free(db->o_items);
    mem_free(db->o_kind);
    mem_free(db->o_channel);
    mem_free(db->o_store);
    mem_free(db->o_void);
    mem_free(db->o_hash);
    mem_free(db->csr_off);
    mem_free(db->csr_ord);
    mem_free(db);
}

/* Counting sort of orders by member, then by (ts, insertion) inside each slice. */
static int cmp_by_ts(const void *a, const void *b, void *ctx)
{
    const int64_t *sort_ts = ctx;
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    if (sort_ts[x] != sort_ts[y])
        return sort_ts[x] < sort_ts[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

int db_csr_build(patron_db *db)
{
    if (db->csr_valid)
        return PATRON_OK;
    uint32_t *off = mem_calloc((size_t)db->n_members + 1, sizeof *off);
    uint32_t *ord = mem_alloc_array(db->n_orders ? db->n_orders : 1, sizeof *ord);
    if (!off || !ord) {
        mem_free(off);
        mem_free(ord);
        return PATRON_ENOMEM;
    }
    for (size_t i = 0; i < db->n_orders; i++)
        if (db->o_member[i] >= 0)
            off[db->o_member[i] + 1]++;
    for (uint32_t m = 0; m < db->n_members; m++)
        off[m + 1] += off[m];
    uint32_t *fill = mem_alloc_array((size_t)db->n_members + 1, sizeof *fill);
    if (!fill) {
        mem_free(off);
        mem_free(ord);
        return PATRON_ENOMEM;
    }
    memcpy(fill, off, ((size_t)db->n_members + 1) * sizeof *fill);
    for (size_t i = 0; i < db->n_orders; i++)
        if (db->o_member[i] >= 0)
            ord[fill[db->o_member[i]]++] = (uint32_t)i;
    mem_free(fill);
    for (uint32_t m = 0; m < db->n_members; m++) {
        uint32_t a = off[m], b = off[m + 1];
        int sorted = 1;
        for (uint32_t k = a + 1; k < b && sorted; k++)
            sorted = cmp_by_ts(&ord[k - 1], &ord[k], db->o_ts) <= 0;
        if (!sorted)
            qsort_r(ord + a, b - a, sizeof *ord, cmp_by_ts, db->o_ts);
    }
    mem_free(db->csr_off);
    mem_free(db->csr_ord);
    db->csr_off = off;
    db->csr_ord = ord;
    db->csr_valid = 1;
    return PATRON_OK;
}

/* The behavioural basics of member m at now: time of the last order (PATRON_NULL_TS if
 * none), number of orders, net spend.  The CSR index must be built. */
static inline void member_basics(const patron_db *db, uint32_t m, int64_t now, int64_t *last_out,
                                 int64_t *freq_out, int64_t *money_out)
{
    const int64_t *ts = db->o_ts, *amt = db->o_amount;
    const uint8_t *kind = db->o_kind, *vd = db->o_void;
    int64_t last = PATRON_NULL_TS, freq = 0, money = 0;
    for (uint32_t k = db->csr_off[m]; k < db->csr_off[m + 1]; k++) {
        uint32_t o = db->csr_ord[k];
        if (ts[o] > now)
            break; /* time order: the rest are in the future too */
        if (vd[o])
            continue;
        money += amt[o];
        if (kind[o] == 0) {
            freq++;
            last = ts[o];
        }
    }
    *last_out = last;
    *freq_out = freq;
    *money_out = money;
}

void db_features_compute(patron_db *db, int64_t now, db_features *f)
{
    for (uint32_t m = 0; m < db->n_members; m++) {
        int64_t last, freq, money;
        member_basics(db, m, now, &last, &freq, &money);
        f->frequency[m] = freq;
        f->monetary[m] = money;
        f->recency_days[m] = last == PATRON_NULL_TS ? NAN : (double)(now - last) / TIME_DAY;
    }
}

int patron_stats_get(patron_db *db, int64_t now, patron_stats *s, patron_error *err)
{
    (void)err;
    memset(s, 0, sizeof *s);
    s->members = db->n_members;
    s->events = db->n_events;
    s->first_ts = s->last_ts = PATRON_NULL_TS;
    for (size_t i = 0; i < db->n_orders; i++) {
        if (db->o_void[i] || db->o_ts[i] > now)
            continue;
        if (db->o_kind[i] == 0) {
            s->orders++;
            s->items += (uint64_t)db->o_items[i];
            if (db->o_member[i] < 0)
                s->guest_orders++;
        } else {
            s->returns++;
        }
        s->revenue += db->o_amount[i];
        if (db->o_member[i] >= 0)
            s->member_revenue += db->o_amount[i];
        if (s->first_ts == PATRON_NULL_TS || db->o_ts[i] < s->first_ts)
            s->first_ts = db->o_ts[i];
        if (s->last_ts == PATRON_NULL_TS || db->o_ts[i] > s->last_ts)
            s->last_ts = db->o_ts[i];
    }
    return PATRON_OK;
}

static json_t *money_json(int64_t v)
{
    return json_real((double)v / PATRON_MONEY_SCALE);
}

int patron_member_json(patron_db *db, const char *member_id, int64_t now, char **out,
                       patron_error *err)
{
    uint32_t m;
    if (!hmap_get(&db->member_ids, member_id, strlen(member_id), &m))
        return err_set(err, PATRON_ENOTFOUND, "member '%s' not found", member_id);
    if (db_csr_build(db) != PATRON_OK)
        return err_set(err, PATRON_ENOMEM, "out of memory");
    json_error_t je;
    char *text;
    int rc = store_member_profile(db->st, m, &text, err);
    if (rc != PATRON_OK)
        return rc;
    json_t *o = json_loads(text, 0, &je);
    mem_free(text);
    if (!o)
        o = json_object();
    json_object_set_new(o, "member_id", json_string(db->member_id[m]));
    char buf[TIME_FMT_LEN];
    if (db->enrolled_at[m] != PATRON_NULL_TS) {
        time_format(db->enrolled_at[m], buf);
        json_object_set_new(o, "enrolled_at", json_string(buf));
        json_object_set_new(o, "tenure_days",
                            json_real((double)(now - db->enrolled_at[m]) / TIME_DAY));
    }
    /* birth_date -> age and days_to_birthday */
    json_t *bd = json_object_get(o, "birth_date");
    int32_t days;
    if (json_is_string(bd) &&
        time_parse_date(json_string_value(bd), strlen(json_string_value(bd)), &days) == 0) {
        int by, bm, bdd, ny, nm, nd;
        time_civil_from_days(days, &by, &bm, &bdd);
        time_civil_from_days(time_day_of(now), &ny, &nm, &nd);
        int age = ny - by - ((nm < bm || (nm == bm && nd < bdd)) ? 1 : 0);
        json_object_set_new(o, "age", json_integer(age));
        int64_t today = time_day_of(now), next = -1;
        for (int y = ny; y <= ny + 1 && next < 0; y++) {
            int mm = bm, dd = bdd;
            if (mm == 2 && dd == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
                dd = 28;
            int64_t cand = time_days_from_civil(y, (unsigned)mm, (unsigned)dd);
            if (cand >= today)
                next = cand - today;
        }
        json_object_set_new(o, "days_to_birthday", json_integer(next));
    }
    int64_t last, freq, money;
    member_basics(db, m, now, &last, &freq, &money);
    json_object_set_new(o, "frequency", json_integer(freq));
    json_object_set_new(o, "monetary", money_json(money));
    json_object_set_new(o, "recency_days",
                        last == PATRON_NULL_TS ? json_null()
                                               : json_real((double)(now - last) / TIME_DAY));
    json_object_set_new(o, "aov", freq ? json_real((double)money / PATRON_MONEY_SCALE /
                                                   (double)freq)
                                       : json_null());
    *out = json_dumps(o, JSON_SORT_KEYS | JSON_INDENT(2) | JSON_REAL_PRECISION(12));
    json_decref(o);
    return *out ? PATRON_OK : err_set(err, PATRON_ENOMEM, "out of memory");
}

uint64_t patron_model_hash(patron_db *db)
{
    /* Members by index; orders as an order-independent sum keyed by their id hash. */
    uint64_t h = XXH3_64bits(&db->n_members, sizeof db->n_members);
    for (uint32_t m = 0; m < db->n_members; m++) {
        h ^= XXH3_64bits_withSeed(db->member_id[m], strlen(db->member_id[m]), m);
        h ^= XXH3_64bits_withSeed(&db->profile_hash[m], sizeof(uint64_t), m + 1ULL) * 3;
        h += XXH3_64bits_withSeed(&db->enrolled_at[m], sizeof(int64_t), m);
    }
    uint64_t sum = 0;
    for (size_t i = 0; i < db->n_orders; i++) {
        int64_t row[7] = {db->o_member[i], db->o_ts[i], db->o_amount[i], db->o_units[i],
                          db->o_items[i], db->o_kind[i] * 2 + db->o_void[i],
                          (int64_t)db->o_hash[i]};
        sum += XXH3_64bits(row, sizeof row);
    }
    return h ^ (sum * 0x9E3779B97F4A7C15ULL);
}
