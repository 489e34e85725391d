/*
 * view.c -- building the member view from the store: profile columns from the profiles
 * table, line items from the item chunks, event streams from the order columns and the
 * events table.  See view.h.
 *
 * The build is a full pass over what is stored (no incremental path yet): it runs on the
 * first read that needs it after open or after an import, never inside an import.
 */
#include "members/view.h"

#include "base/err.h"
#include "base/mem.h"
#include "base/time.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

const char *const mv_str_names[MV__NSTR] = {
    "email", "phone", "first_name", "last_name", "gender", "country", "region",
    "city", "postal_code", "language", "signup_channel", "preferred_channel", "referred_by"};
const char *const mv_consent_names[CK__N] = {"email", "sms", "push", "app", "web", "social",
                                             "mail", "marketing", "profiling",
                                             "personalization"};

/* ---- reading one value ------------------------------------------------------------ */

double vcol_num(const vcol *c, uint32_t row)
{
    size_t r = c->via ? c->via[row] : row;
    switch (c->st) {
    case VS_F64:
        return ((const double *)c->data)[r];
    case VS_I64:
        return (double)((const int64_t *)c->data)[r];
    case VS_MONEY:
        return (double)((const int64_t *)c->data)[r] / PATRON_MONEY_SCALE;
    case VS_I32:
        return (double)((const int32_t *)c->data)[r];
    case VS_TS: {
        int64_t v = ((const int64_t *)c->data)[r];
        return v == PATRON_NULL_TS ? NAN : (double)v;
    }
    case VS_DAYS: {
        int32_t v = ((const int32_t *)c->data)[r];
        return v == INT32_MIN ? NAN : (double)v * TIME_DAY;
    }
    default:
        return NAN;
    }
}

uint32_t vcol_code(const vcol *c, uint32_t row)
{
    if (c->st != VS_CODE)
        return 0;
    return ((const uint32_t *)c->data)[c->via ? c->via[row] : row];
}

int vcol_bool(const vcol *c, uint32_t row)
{
    if (c->st != VS_BOOL)
        return 2;
    return ((const uint8_t *)c->data)[c->via ? c->via[row] : row];
}

/* ---- profiles ----------------------------------------------------------------------- */

typedef struct attr_acc {
    mattr a;
    int seen_num, seen_bool, seen_str;
} attr_acc;

typedef struct build {
    patron_db *db;
    mview *v;
    uint32_t n;
    /* tags */
    uint32_t *tags;
    size_t n_tags, cap_tags;
    uint32_t next_tag_member;
    attr_acc *attrs;
    size_t n_attrs, cap_attrs;
    /* consent updated_at, to apply events after profiles */
    int64_t *consent_at[CK__N];
    int failed;
} build;

static int consent_key(const char *k)
{
    for (int i = 0; i < CK__N; i++)
        if (strcmp(k, mv_consent_names[i]) == 0)
            return i;
    return -1;
}

static attr_acc *attr_get(build *b, const char *name)
{
    for (size_t i = 0; i < b->n_attrs; i++)
        if (strcmp(b->attrs[i].a.name, name) == 0)
            return &b->attrs[i];
    if (MEM_GROW(b->attrs, b->cap_attrs, b->n_attrs + 1))
        return NULL;
    attr_acc *x = &b->attrs[b->n_attrs];
    memset(x, 0, sizeof *x);
    x->a.name = mem_strdup(name);
    x->a.num = mem_alloc_array(b->n ? b->n : 1, sizeof *x->a.num);
    x->a.b = mem_alloc_array(b->n ? b->n : 1, 1);
    x->a.code = mem_calloc(b->n ? b->n : 1, sizeof *x->a.code);
    if (!x->a.name || !x->a.num || !x->a.b || !x->a.code) {
        mem_free(x->a.name);
        mem_free(x->a.num);
        mem_free(x->a.b);
        mem_free(x->a.code);
        return NULL;
    }
    for (uint32_t m = 0; m < b->n; m++)
        x->a.num[m] = NAN;
    memset(x->a.b, 2, b->n);
    b->n_attrs++;
    return x;
}

/* Sets attribute `name` of member m from a JSON value. */
static int attr_set(build *b, uint32_t m, const char *name, json_t *val)
{
    attr_acc *x = attr_get(b, name);
    if (!x)
        return -1;
    char buf[64];
    const char *text = NULL;
    size_t tn = 0;
    x->a.num[m] = NAN;
    x->a.b[m] = 2;
    x->a.code[m] = 0;
    if (json_is_integer(val)) {
        x->a.num[m] = (double)json_integer_value(val);
        snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(val));
        text = buf, tn = strlen(buf), x->seen_num = 1;
    } else if (json_is_real(val)) {
        x->a.num[m] = json_real_value(val);
        snprintf(buf, sizeof buf, "%.17g", json_real_value(val));
        text = buf, tn = strlen(buf), x->seen_num = 1;
    } else if (json_is_boolean(val)) {
        x->a.b[m] = json_is_true(val) ? 1 : 0;
        text = x->a.b[m] ? "true" : "false", tn = strlen(text), x->seen_bool = 1;
    } else if (json_is_string(val)) {
        text = json_string_value(val), tn = json_string_length(val), x->seen_str = 1;
    } else {
        return 0; /* null, arrays, objects: no value */
    }
    uint32_t c = strdict_intern(&b->v->pstr, text, tn);
    if (!c)
        return -1;
    x->a.code[m] = c;
    return 0;
}

static void consent_apply(build *b, uint32_t m, int k, const char *status, int64_t at,
                          int64_t expires)
{
    mview *v = b->v;
    if (v->consent[k][m] != CONSENT_MISSING && b->consent_at[k][m] > at)
        return; /* the entry with the latest updated_at wins */
    v->consent[k][m] = strcmp(status, "granted") == 0 ? CONSENT_GRANTED : CONSENT_DENIED;
    v->consent_expires[k][m] = expires;
    b->consent_at[k][m] = at;
}

static int64_t json_ts(json_t *o, const char *key)
{
    json_t *t = json_object_get(o, key);
    int64_t ts;
    if (json_is_string(t) && time_parse(json_string_value(t), json_string_length(t), &ts) == 0)
        return ts;
    if (json_is_integer(t))
        return json_integer_value(t);
    return PATRON_NULL_TS;
}

static int fill_tags_upto(build *b, uint32_t m)
{
    while (b->next_tag_member <= m)
        b->v->tag_off[b->next_tag_member++] = (uint32_t)b->n_tags;
    return 0;
}

static int load_profile(void *ctx, uint32_t m, const char *text, size_t n)
{
    build *b = ctx;
    mview *v = b->v;
    if (m >= b->n)
        return 0; /* written after this view was sized: the next build sees it */
    json_error_t je;
    json_t *p = json_loadb(text, n, 0, &je);
    if (!json_is_object(p)) {
        json_decref(p);
        return 0; /* profiles are written by patron as JSON objects; skip anything else */
    }
    int rc = 0;
    for (int k = 0; k < MV__NSTR && rc == 0; k++) {
        json_t *s = json_object_get(p, mv_str_names[k]);
        if (json_is_string(s)) {
            uint32_t c = strdict_intern(&v->pstr, json_string_value(s), json_string_length(s));
            if (!c)
                rc = -1;
            v->str[k][m] = c;
        }
    }
    json_t *bd = json_object_get(p, "birth_date");
    int32_t days;
    if (json_is_string(bd) &&
        time_parse_date(json_string_value(bd), json_string_length(bd), &days) == 0)
        v->birth_days[m] = days;
    fill_tags_upto(b, m);
    json_t *tags = json_object_get(p, "interests"), *t;
    size_t i;
    json_array_foreach(tags, i, t) {
        if (!json_is_string(t) || rc)
            continue;
        uint32_t c = strdict_intern(&v->pstr, json_string_value(t), json_string_length(t));
        if (!c || MEM_GROW(b->tags, b->cap_tags, b->n_tags + 1)) {
            rc = -1;
            break;
        }
        b->tags[b->n_tags++] = c;
    }
    json_t *cons = json_object_get(p, "consent"), *e;
    const char *key;
    json_object_foreach(cons, key, e) {
        int k = consent_key(key);
        json_t *st = json_object_get(e, "status");
        if (k < 0 || !json_is_string(st))
            continue;
        consent_apply(b, m, k, json_string_value(st), json_ts(e, "updated_at"),
                      json_ts(e, "expires_at"));
    }
    json_t *attrs = json_object_get(p, "attributes");
    json_object_foreach(attrs, key, e) {
        if (rc == 0 && attr_set(b, m, key, e) != 0)
            rc = -1;
    }
    json_decref(p);
    return rc ? 1 : 0;
}

/* ---- events ------------------------------------------------------------------------- */

/* Event streams read from the events table: the stream, its JSON keys, the column types. */
typedef struct estream_def {
    int stream;
    const char *type;
    const char *keys[3];
    vtype types[3];
} estream_def;

static const estream_def edefs[] = {
    {ST_REDEMPTIONS, "redemption", {"reward_id", "points", NULL}, {VT_STR, VT_NUM, 0}},
    {ST_POINTS, "points", {"points", "reason", NULL}, {VT_NUM, VT_STR, 0}},
    {ST_MESSAGES, "message", {"campaign_id", "channel", "action"}, {VT_STR, VT_STR, VT_STR}},
    {ST_VIEWS, "view", {"sku", "category", NULL}, {VT_STR, VT_STR, 0}},
    {ST_REFERRALS, "referral", {"referred_member_id", NULL, NULL}, {VT_STR, 0, 0}},
    {ST_SURVEYS, "survey", {NULL, NULL, NULL}, {0, 0, 0}},
    {ST_CUSTOM, "custom", {"name", NULL, NULL}, {VT_STR, 0, 0}},
};
#define N_EDEFS (sizeof edefs / sizeof edefs[0])

typedef struct erows {
    uint32_t *member;
    int64_t *ts;
    double *num[3];
    uint32_t *code[3];
    size_t n, cap;
} erows;

typedef struct ebuild {
    build *b;
    erows rows[N_EDEFS];
} ebuild;

static int load_event(void *ctx, const char *type, int64_t member, int64_t ts, const char *body,
                      size_t n)
{
    ebuild *eb = ctx;
    build *b = eb->b;
    if (member < 0 || member >= b->n)
        return 0;
    uint32_t m = (uint32_t)member;
    int is_consent = strcmp(type, "consent") == 0, is_survey = strcmp(type, "survey") == 0;
    size_t d = 0;
    while (d < N_EDEFS && strcmp(edefs[d].type, type) != 0)
        d++;
    if (d == N_EDEFS && !is_consent)
        return 0;
    json_error_t je;
    json_t *o = json_loadb(body, n, 0, &je);
    if (!json_is_object(o)) {
        json_decref(o);
        return 0;
    }
    int rc = 0;
    if (is_consent) {
        json_t *ch = json_object_get(o, "channel"), *pu = json_object_get(o, "purpose"),
               *st = json_object_get(o, "status");
        const char *k = json_is_string(ch) ? json_string_value(ch)
                        : json_is_string(pu) ? json_string_value(pu) : "";
        int ck = consent_key(k);
        if (ck >= 0 && json_is_string(st))
            consent_apply(b, m, ck, json_string_value(st), ts, json_ts(o, "expires_at"));
    }
    if (is_survey) { /* each answer also sets attributes.KEY */
        json_t *ans = json_object_get(o, "answers"), *v;
        const char *key;
        json_object_foreach(ans, key, v) {
            if (rc == 0 && attr_set(b, m, key, v) != 0)
                rc = -1;
        }
    }
    if (d < N_EDEFS && rc == 0) {
        erows *r = &eb->rows[d];
        size_t c1 = r->cap;
        if (MEM_GROW(r->member, c1, r->n + 1)) {
            json_decref(o);
            return 1;
        }
        size_t c = r->cap;
        rc |= MEM_GROW(r->ts, c, r->n + 1);
        for (int k = 0; k < 3 && edefs[d].keys[k]; k++) {
            c = r->cap;
            if (edefs[d].types[k] == VT_NUM)
                rc |= MEM_GROW(r->num[k], c, r->n + 1);
            else
                rc |= MEM_GROW(r->code[k], c, r->n + 1);
        }
        r->cap = c1;
        if (rc == 0) {
            r->member[r->n] = m;
            r->ts[r->n] = ts;
            for (int k = 0; k < 3 && edefs[d].keys[k]; k++) {
                json_t *f = json_object_get(o, edefs[d].keys[k]);
                if (edefs[d].types[k] == VT_NUM) {
                    r->num[k][r->n] = json_is_number(f) ? json_number_value(f) : NAN;
                } else {
                    uint32_t code = 0;
                    if (json_is_string(f))
                        code = strdict_intern(&b->v->estr, json_string_value(f),
                                              json_string_length(f));
                    else if (json_is_integer(f)) {
                        char nb[32];
                        snprintf(nb, sizeof nb, "%lld", (long long)json_integer_value(f));
                        code = strdict_intern(&b->v->estr, nb, strlen(nb));
                    }
                    r->code[k][r->n] = code;
                }
            }
            r->n++;
        }
    }
    json_decref(o);
    return rc ? 1 : 0;
}

/* ---- line items --------------------------------------------------------------------- */

/* order id hash -> order index (open addressing; key 0 is remapped to 1). */
typedef struct u64map {
    uint64_t *key;
    uint32_t *val;
    size_t mask;
} u64map;

static uint64_t key_fix(uint64_t k)
{
    return k ? k : 1;
}

static void u64map_put(u64map *mp, uint64_t k, uint32_t v)
{
    k = key_fix(k);
    size_t i = (size_t)(k ^ (k >> 29)) & mp->mask;
    while (mp->key[i] && mp->key[i] != k)
        i = (i + 1) & mp->mask;
    mp->key[i] = k;
    mp->val[i] = v;
}

static int u64map_get(const u64map *mp, uint64_t k, uint32_t *v)
{
    k = key_fix(k);
    size_t i = (size_t)(k ^ (k >> 29)) & mp->mask;
    while (mp->key[i]) {
        if (mp->key[i] == k) {
            *v = mp->val[i];
            return 1;
        }
        i = (i + 1) & mp->mask;
    }
    return 0;
}

typedef struct ibuild {
    mview *v;
    u64map ids;
    uint32_t next;
    size_t n_orders;
} ibuild;

static int hash_order_id(void *ctx, const store_order *o)
{
    ibuild *ib = ctx;
    if (ib->next >= ib->n_orders)
        return 2; /* the store has more orders than memory: stale */
    u64map_put(&ib->ids, XXH3_64bits(o->id, o->idn), ib->next++);
    return 0;
}

static int load_items(void *ctx, const unsigned char *b, size_t len)
{
    ibuild *ib = ctx;
    mview *v = ib->v;
    uint32_t n;
    memcpy(&n, b + 4, 4);
    size_t per = 8 + 4 + 4 + 4 + 4 + 8;
    if (len != 8 + (size_t)n * per)
        return 1;
    const unsigned char *oh = b + 8, *sku = oh + 8 * (size_t)n, *cat = sku + 4 * (size_t)n,
                        *brand = cat + 4 * (size_t)n, *qty = brand + 4 * (size_t)n,
                        *price = qty + 4 * (size_t)n;
    size_t need = v->n_items + n, c;
    c = v->n_items;
    (void)c;
    uint32_t *a1 = mem_realloc_array(v->it_order, need, 4), *a2, *a3, *a4;
    if (!a1)
        return -1;
    v->it_order = a1;
    if (!(a2 = mem_realloc_array(v->it_sku, need, 4)))
        return -1;
    v->it_sku = a2;
    if (!(a3 = mem_realloc_array(v->it_cat, need, 4)))
        return -1;
    v->it_cat = a3;
    if (!(a4 = mem_realloc_array(v->it_brand, need, 4)))
        return -1;
    v->it_brand = a4;
    int32_t *q = mem_realloc_array(v->it_qty, need, 4);
    if (!q)
        return -1;
    v->it_qty = q;
    int64_t *pr = mem_realloc_array(v->it_price, need, 8);
    if (!pr)
        return -1;
    v->it_price = pr;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t h;
        uint32_t o;
        memcpy(&h, oh + 8 * (size_t)i, 8);
        if (!u64map_get(&ib->ids, h, &o))
            continue; /* the order is not in memory (written after open) */
        size_t k = v->n_items++;
        v->it_order[k] = o;
        memcpy(&v->it_sku[k], sku + 4 * (size_t)i, 4);
        memcpy(&v->it_cat[k], cat + 4 * (size_t)i, 4);
        memcpy(&v->it_brand[k], brand + 4 * (size_t)i, 4);
        memcpy(&v->it_qty[k], qty + 4 * (size_t)i, 4);
        memcpy(&v->it_price[k], price + 8 * (size_t)i, 8);
    }
    return 0;
}

static int load_item_dict(void *ctx, int kind, uint32_t code, const char *s, size_t n)
{
    mview *v = ctx;
    if (kind < 1 || kind > 3)
        return 0;
    /* Codes are dense from 1 in the store, so interning in code order keeps them. */
    uint32_t c = strdict_intern(&v->items_dict[kind], s, n);
    return c == code ? 0 : 1;
}

/* ---- assembling streams ------------------------------------------------------------- */

static void set_field(stream *s, const char *name, vtype t, vstore st, const void *data,
                      const uint32_t *via, const strdict *dict)
{
    sfield *f = &s->fields[s->n_fields++];
    f->name = name;
    f->col.type = t;
    f->col.st = st;
    f->col.data = data;
    f->col.via = via;
    f->col.dict = dict;
}

static int build_order_streams(patron_db *db, mview *v)
{
    uint32_t n = v->n;
    /* Per order: its items (positive rows of orders), as a CSR over order indexes. */
    uint32_t *ioff = mem_calloc(db->n_orders + 1, sizeof *ioff);
    uint32_t *iidx = mem_alloc_array(v->n_items ? v->n_items : 1, sizeof *iidx);
    if (!ioff || !iidx) {
        mem_free(ioff);
        mem_free(iidx);
        return PATRON_ENOMEM;
    }
    for (size_t i = 0; i < v->n_items; i++)
        if (v->it_qty[i] > 0)
            ioff[v->it_order[i] + 1]++;
    for (size_t o = 0; o < db->n_orders; o++)
        ioff[o + 1] += ioff[o];
    {
        uint32_t *fill = mem_alloc_array(db->n_orders + 1, sizeof *fill);
        if (!fill) {
            mem_free(ioff);
            mem_free(iidx);
            return PATRON_ENOMEM;
        }
        memcpy(fill, ioff, (db->n_orders + 1) * sizeof *fill);
        for (size_t i = 0; i < v->n_items; i++)
            if (v->it_qty[i] > 0)
                iidx[fill[v->it_order[i]]++] = (uint32_t)i;
        mem_free(fill);
    }
    /* Count rows per member. */
    uint32_t *off[3];
    for (int k = 0; k < 3; k++)
        off[k] = mem_calloc((size_t)n + 1, sizeof *off[k]);
    int rc = PATRON_OK;
    if (!off[0] || !off[1] || !off[2])
        rc = PATRON_ENOMEM;
    for (uint32_t m = 0; m < n && rc == PATRON_OK; m++) {
        uint32_t c[3] = {0, 0, 0};
        for (uint32_t k = db->csr_off[m]; k < db->csr_off[m + 1]; k++) {
            uint32_t o = db->csr_ord[k];
            if (db->o_void[o])
                continue;
            if (db->o_kind[o] == 0) {
                c[0]++;
                c[1] += ioff[o + 1] - ioff[o];
            } else {
                c[2]++;
            }
        }
        for (int s = 0; s < 3; s++)
            off[s][m + 1] = off[s][m] + c[s];
    }
    size_t nr[3] = {0, 0, 0};
    if (rc == PATRON_OK)
        for (int s = 0; s < 3; s++) {
            nr[s] = off[s][n];
            v->row_order[s] = mem_alloc_array(nr[s] ? nr[s] : 1, sizeof(uint32_t));
            v->row_ts[s] = mem_alloc_array(nr[s] ? nr[s] : 1, sizeof(int64_t));
            if (!v->row_order[s] || !v->row_ts[s])
                rc = PATRON_ENOMEM;
        }
    int64_t *ret_amount = NULL;
    if (rc == PATRON_OK) {
        v->row_amount_items = mem_alloc_array(nr[1] ? nr[1] : 1, sizeof(int64_t));
        ret_amount = mem_alloc_array(nr[2] ? nr[2] : 1, sizeof(int64_t));
        if (!v->row_amount_items || !ret_amount)
            rc = PATRON_ENOMEM;
    }
    for (uint32_t m = 0; m < n && rc == PATRON_OK; m++) {
        uint32_t w[3] = {off[0][m], off[1][m], off[2][m]};
        for (uint32_t k = db->csr_off[m]; k < db->csr_off[m + 1]; k++) {
            uint32_t o = db->csr_ord[k];
            if (db->o_void[o])
                continue;
            if (db->o_kind[o] == 0) {
                v->row_order[0][w[0]] = o;
                v->row_ts[0][w[0]++] = db->o_ts[o];
                for (uint32_t j = ioff[o]; j < ioff[o + 1]; j++) {
                    uint32_t it = iidx[j];
                    v->row_order[1][w[1]] = it;
                    v->row_ts[1][w[1]] = db->o_ts[o];
                    v->row_amount_items[w[1]++] = (int64_t)v->it_qty[it] * v->it_price[it];
                }
            } else {
                v->row_order[2][w[2]] = o;
                v->row_ts[2][w[2]] = db->o_ts[o];
                ret_amount[w[2]++] = -db->o_amount[o];
            }
        }
    }
    mem_free(ioff);
    mem_free(iidx);
    if (rc != PATRON_OK) {
        for (int k = 0; k < 3; k++)
            mem_free(off[k]);
        mem_free(ret_amount);
        return rc;
    }
    v->ecols[ST_RETURNS][0] = ret_amount;
    stream *s = &v->streams[ST_ORDERS];
    s->name = "orders";
    s->off = off[0];
    s->ts = v->row_ts[0];
    const uint32_t *ro = v->row_order[0];
    set_field(s, "amount", VT_NUM, VS_MONEY, db->o_amount, ro, NULL);
    set_field(s, "items", VT_NUM, VS_I32, db->o_items, ro, NULL);
    set_field(s, "units", VT_NUM, VS_I64, db->o_units, ro, NULL);
    set_field(s, "channel", VT_STR, VS_NONE, NULL, NULL, &v->estr);
    set_field(s, "store", VT_STR, VS_NONE, NULL, NULL, &v->estr);
    set_field(s, "ts", VT_TS, VS_TS, s->ts, NULL, NULL);
    s = &v->streams[ST_ITEMS];
    s->name = "items";
    s->off = off[1];
    s->ts = v->row_ts[1];
    ro = v->row_order[1];
    set_field(s, "sku", VT_STR, VS_CODE, v->it_sku, ro, &v->items_dict[DB_DICT_SKU]);
    set_field(s, "category", VT_STR, VS_CODE, v->it_cat, ro, &v->items_dict[DB_DICT_CATEGORY]);
    set_field(s, "brand", VT_STR, VS_CODE, v->it_brand, ro, &v->items_dict[DB_DICT_BRAND]);
    set_field(s, "qty", VT_NUM, VS_I32, v->it_qty, ro, NULL);
    set_field(s, "price", VT_NUM, VS_MONEY, v->it_price, ro, NULL);
    set_field(s, "amount", VT_NUM, VS_MONEY, v->row_amount_items, NULL, NULL);
    set_field(s, "channel", VT_STR, VS_NONE, NULL, NULL, &v->estr);
    set_field(s, "ts", VT_TS, VS_TS, s->ts, NULL, NULL);
    s = &v->streams[ST_RETURNS];
    s->name = "returns";
    s->off = off[2];
    s->ts = v->row_ts[2];
    set_field(s, "amount", VT_NUM, VS_MONEY, ret_amount, NULL, NULL);
    set_field(s, "items", VT_NUM, VS_I32, db->o_items, v->row_order[2], NULL);
    set_field(s, "ts", VT_TS, VS_TS, s->ts, NULL, NULL);
    return PATRON_OK;
}

static const char *const estream_names[ST__N] = {
    "orders", "items", "returns", "redemptions", "points", "messages", "views", "referrals",
    "surveys", "custom"};

static int build_event_streams(mview *v, ebuild *eb)
{
    for (size_t d = 0; d < N_EDEFS; d++) {
        erows *r = &eb->rows[d];
        stream *s = &v->streams[edefs[d].stream];
        s->name = estream_names[edefs[d].stream];
        s->off = mem_calloc((size_t)v->n + 1, sizeof *s->off);
        if (!s->off)
            return PATRON_ENOMEM;
        /* Rows arrive in (member, ts) order from the store: the CSR is their prefix counts. */
        for (size_t i = 0; i < r->n; i++)
            s->off[r->member[i] + 1]++;
        for (uint32_t m = 0; m < v->n; m++)
            s->off[m + 1] += s->off[m];
        v->row_ts[edefs[d].stream] = r->ts;
        s->ts = r->ts ? r->ts : (const int64_t *)v->row_ts[ST_ORDERS];
        r->ts = NULL;
        for (int k = 0; k < 3 && edefs[d].keys[k]; k++) {
            if (edefs[d].types[k] == VT_NUM) {
                set_field(s, edefs[d].keys[k], VT_NUM, VS_F64, r->num[k], NULL, NULL);
                v->ecols[edefs[d].stream][k] = r->num[k];
                r->num[k] = NULL;
            } else {
                set_field(s, edefs[d].keys[k], VT_STR, VS_CODE, r->code[k], NULL, &v->estr);
                v->ecols[edefs[d].stream][k] = r->code[k];
                r->code[k] = NULL;
            }
        }
        set_field(s, "ts", VT_TS, VS_TS, s->ts, NULL, NULL);
    }
    return PATRON_OK;
}

static void erows_free(ebuild *eb)
{
    for (size_t d = 0; d < N_EDEFS; d++) {
        erows *r = &eb->rows[d];
        mem_free(r->member);
        mem_free(r->ts);
        for (int k = 0; k < 3; k++) {
            mem_free(r->num[k]);
            mem_free(r->code[k]);
        }
    }
}

/* ---- the whole view ----------------------------------------------------------------- */

static void view_free(mview *v)
{
    if (!v)
        return;
    strdict_release(&v->pstr);
    strdict_release(&v->estr);
    for (int k = 0; k < 4; k++)
        strdict_release(&v->items_dict[k]);
    for (int k = 0; k < MV__NSTR; k++)
        mem_free(v->str[k]);
    mem_free(v->birth_days);
    mem_free(v->tag_off);
    mem_free(v->tags);
    for (int k = 0; k < CK__N; k++) {
        mem_free(v->consent[k]);
        mem_free(v->consent_expires[k]);
    }
    for (size_t i = 0; i < v->n_attr; i++) {
        mem_free(v->attr[i].name);
        mem_free(v->attr[i].num);
        mem_free(v->attr[i].b);
        mem_free(v->attr[i].code);
    }
    mem_free(v->attr);
    mem_free(v->it_order);
    mem_free(v->it_sku);
    mem_free(v->it_cat);
    mem_free(v->it_brand);
    mem_free(v->it_qty);
    mem_free(v->it_price);
    for (int s = 0; s < ST__N; s++) {
        mem_free(v->streams[s].off);
        mem_free(v->row_ts[s]);
        for (int k = 0; k < 4; k++)
            mem_free(v->ecols[s][k]);
    }
    for (int k = 0; k < 3; k++)
        mem_free(v->row_order[k]);
    mem_free(v->row_amount_items);
    mem_free(v);
}

void db_view_free(patron_db *db)
{
    view_free(db->view);
    db->view = NULL;
}

int db_view_ensure(patron_db *db, patron_error *err)
{
    if (db->view && db->view_valid)
        return PATRON_OK;
    db_view_free(db);
    int rc = db_csr_build(db);
    if (rc != PATRON_OK)
        return err_set(err, rc, "out of memory building the event index");
    mview *v = mem_calloc(1, sizeof *v);
    if (!v)
        return err_set(err, PATRON_ENOMEM, "out of memory");
    uint32_t n = db->n_members;
    v->n = n;
    v->default_profiling = db->default_profiling ? db->default_profiling : CONSENT_GRANTED;
    v->default_personalization =
            db->default_personalization ? db->default_personalization : CONSENT_GRANTED;
    strdict_init(&v->pstr);
    strdict_init(&v->estr);
    for (int k = 0; k < 4; k++)
        strdict_init(&v->items_dict[k]);
    build b;
    memset(&b, 0, sizeof b);
    b.db = db;
    b.v = v;
    b.n = n;
    size_t nn = n ? n : 1;
    for (int k = 0; k < MV__NSTR && rc == PATRON_OK; k++)
        if (!(v->str[k] = mem_calloc(nn, sizeof(uint32_t))))
            rc = PATRON_ENOMEM;
    if (rc == PATRON_OK && (!(v->birth_days = mem_alloc_array(nn, sizeof(int32_t))) ||
                            !(v->tag_off = mem_calloc(nn + 1, sizeof(uint32_t)))))
        rc = PATRON_ENOMEM;
    for (int k = 0; k < CK__N && rc == PATRON_OK; k++)
        if (!(v->consent[k] = mem_calloc(nn, 1)) ||
            !(v->consent_expires[k] = mem_alloc_array(nn, sizeof(int64_t))) ||
            !(b.consent_at[k] = mem_alloc_array(nn, sizeof(int64_t))))
            rc = PATRON_ENOMEM;
    if (rc != PATRON_OK) {
        rc = err_set(err, PATRON_ENOMEM, "out of memory building the member view");
        goto out;
    }
    for (uint32_t m = 0; m < n; m++)
        v->birth_days[m] = INT32_MIN;
    for (int k = 0; k < CK__N; k++)
        for (uint32_t m = 0; m < n; m++)
            v->consent_expires[k][m] = PATRON_NULL_TS;
    if ((rc = store_read_begin(db->st, err)) != PATRON_OK)
        goto out;
    rc = store_profiles_each(db->st, load_profile, &b, err);
    if (rc == PATRON_OK) {
        fill_tags_upto(&b, n);
        v->tags = b.tags;
        b.tags = NULL;
    }
    ebuild eb;
    memset(&eb, 0, sizeof eb);
    eb.b = &b;
    if (rc == PATRON_OK)
        rc = store_events_each(db->st, load_event, &eb, err);
    if (rc == PATRON_OK)
        rc = store_dict_each(db->st, load_item_dict, v, err);
    ibuild ib;
    memset(&ib, 0, sizeof ib);
    ib.v = v;
    ib.n_orders = db->n_orders;
    if (rc == PATRON_OK) {
        size_t cap = 16;
        while (cap < db->n_orders * 2)
            cap *= 2;
        ib.ids.mask = cap - 1;
        ib.ids.key = mem_calloc(cap, sizeof *ib.ids.key);
        ib.ids.val = mem_alloc_array(cap, sizeof *ib.ids.val);
        if (!ib.ids.key || !ib.ids.val)
            rc = err_set(err, PATRON_ENOMEM, "out of memory");
    }
    if (rc == PATRON_OK)
        rc = store_orders_each(db->st, hash_order_id, &ib, err);
    if (rc == PATRON_OK)
        rc = store_item_chunks_each(db->st, load_items, &ib, err);
    store_read_end(db->st);
    mem_free(ib.ids.key);
    mem_free(ib.ids.val);
    if (rc == PATRON_OK && (rc = build_order_streams(db, v)) != PATRON_OK)
        rc = err_set(err, rc, "out of memory building streams");
    if (rc == PATRON_OK && (rc = build_event_streams(v, &eb)) != PATRON_OK)
        rc = err_set(err, rc, "out of memory building streams");
    erows_free(&eb);
    if (rc == PATRON_OK) {
        /* Attribute types: all numbers -> number, all booleans -> bool, else string. */
        v->attr = mem_calloc(b.n_attrs ? b.n_attrs : 1, sizeof *v->attr);
        if (!v->attr)
            rc = err_set(err, PATRON_ENOMEM, "out of memory");
        for (size_t i = 0; i < b.n_attrs && rc == PATRON_OK; i++) {
            attr_acc *x = &b.attrs[i];
            x->a.type = x->seen_str || (x->seen_num && x->seen_bool) ? VT_STR
                        : x->seen_bool                               ? VT_BOOL
                                                                     : VT_NUM;
            v->attr[v->n_attr++] = x->a;
            memset(&x->a, 0, sizeof x->a);
        }
    }
out:
    for (size_t i = 0; i < b.n_attrs; i++) {
        mem_free(b.attrs[i].a.name);
        mem_free(b.attrs[i].a.num);
        mem_free(b.attrs[i].a.b);
        mem_free(b.attrs[i].a.code);
    }
    mem_free(b.attrs);
    mem_free(b.tags);
    for (int k = 0; k < CK__N; k++)
        mem_free(b.consent_at[k]);
    if (rc != PATRON_OK) {
        view_free(v);
        return rc;
    }
    db->view = v;
    db->view_valid = 1;
    db->view_gen++;
    return PATRON_OK;
}

int db_consent(const patron_db *db, uint32_t m, int k, int64_t now)
{
    const mview *v = db->view;
    if (!v || m >= v->n)
        return 0;
    uint8_t st = v->consent[k][m];
    if (st == CONSENT_MISSING) {
        if (k == CK_PROFILING)
            st = v->default_profiling;
        else if (k == CK_PERSONALIZATION)
            st = v->default_personalization;
        return st == CONSENT_GRANTED;
    }
    if (st != CONSENT_GRANTED)
        return 0;
    int64_t ex = v->consent_expires[k][m];
    return ex == PATRON_NULL_TS || now < ex;
}

int db_profiling_allowed(const patron_db *db, uint32_t m, int64_t now)
{
    return db_consent(db, m, CK_PROFILING, now);
}

const stream *view_stream(const mview *v, const char *name, size_t n)
{
    for (int s = 0; s < ST__N; s++)
        if (v->streams[s].name && strlen(v->streams[s].name) == n &&
            memcmp(v->streams[s].name, name, n) == 0)
            return &v->streams[s];
    return NULL;
}

const sfield *stream_field(const stream *s, const char *name, size_t n)
{
    for (size_t i = 0; i < s->n_fields; i++)
        if (strlen(s->fields[i].name) == n && memcmp(s->fields[i].name, name, n) == 0)
            return &s->fields[i];
    return NULL;
}

const mattr *view_attr(const mview *v, const char *name, size_t n)
{
    for (size_t i = 0; i < v->n_attr; i++)
        if (strlen(v->attr[i].name) == n && memcmp(v->attr[i].name, name, n) == 0)
            return &v->attr[i];
    return NULL;
}
