/*
 * view.c -- building the member view from the store: profile columns from the profile
 * cells (binary records the store computes from each profile's JSON when it is written,
 * store_cells.h), line items from the item chunks, event streams from the order
 * columns and the event chunks.  See view.h.
 *
 * The build is a full pass over what is stored, on the first read that needs it after
 * open.  After that, importers apply what they committed (view_profile, view_event,
 * view_order, view_item, view_void) through the same functions the build uses, so the
 * incremental view and a rebuilt one hold the same rows (view_hash; tested).
 */
#include "members/view.h"

#include "base/err.h"
#include "base/mem.h"
#include "base/time.h"
#include "store/store_cells.h"
#include "store/store.h"

#include <roaring/roaring.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

const char *const mv_str_names[MV__NSTR] = {
    "email", "phone", "first_name", "last_name", "gender", "country", "region",
    "city", "postal_code", "language", "signup_channel", "preferred_channel", "referred_by"};
/* Profile cells hold the strings and consents in these orders (store_cells.h; the
 * lists agree, tests/unit/test_store_profiles.c). */
_Static_assert(MV__NSTR == STORE_PROFILE_NSTR && CK__N == STORE_CONSENT_N, "profile cell layout");
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

/* ---- storage ------------------------------------------------------------------------ */

/* Grows a per-member array from old to new room, filling new slots with fill bytes. */
static int grow_col(void **p, size_t elem, uint32_t used, uint32_t cap, int fill)
{
    void *q = mem_realloc_array(*p, cap ? cap : 1, elem);
    if (!q)
        return -1;
    if (cap > used)
        memset((char *)q + (size_t)used * elem, fill, (size_t)(cap - used) * elem);
    *p = q;
    return 0;
}

/* Makes room for members up to n (new members: no profile values, no rows). */
static int members_grow(mview *v, uint32_t n)
{
    if (n <= v->n)
        return 0;
    if (n > v->capm) {
        uint32_t cap = v->capm ? v->capm : 1024, used = v->capm;
        while (cap < n)
            cap *= 2;
        int rc = 0;
        for (int k = 0; k < MV__NSTR; k++)
            rc |= grow_col((void **)&v->str[k], 4, used, cap, 0);
        rc |= grow_col((void **)&v->birth_days, 4, used, cap, 0);
        rc |= grow_col((void **)&v->tag_beg, 4, used, cap, 0);
        rc |= grow_col((void **)&v->tag_end, 4, used, cap, 0);
        for (int k = 0; k < CK__N; k++) {
            rc |= grow_col((void **)&v->consent[k], 1, used, cap, 0);
            rc |= grow_col((void **)&v->consent_expires[k], 8, used, cap, 0);
            rc |= grow_col((void **)&v->consent_at[k], 8, used, cap, 0);
        }
        for (size_t i = 0; i < v->n_attr; i++) {
            mattr *a = &v->attr[i];
            rc |= grow_col((void **)&a->num, 8, used, cap, 0);
            rc |= grow_col((void **)&a->b, 1, used, cap, 2);
            rc |= grow_col((void **)&a->code, 4, used, cap, 0);
            rc |= grow_col((void **)&a->from_event, 1, used, cap, 0);
        }
        rc |= grow_col((void **)&v->bf_freq, 4, used, cap, 0);
        rc |= grow_col((void **)&v->bf_money, 8, used, cap, 0);
        rc |= grow_col((void **)&v->bf_last, 8, used, cap, 0);
        rc |= grow_col((void **)&v->bf_max, 8, used, cap, 0);
        for (int s = 0; s < ST__N; s++) {
            stream *st = &v->streams[s];
            rc |= grow_col((void **)&st->beg, 4, used, cap, 0);
            rc |= grow_col((void **)&st->end, 4, used, cap, 0);
            rc |= grow_col((void **)&st->cap, 4, used, cap, 0);
        }
        if (rc)
            return -1;
        v->capm = cap;
    }
    for (uint32_t m = v->n; m < n; m++) {
        v->birth_days[m] = INT32_MIN;
        v->bf_last[m] = v->bf_max[m] = PATRON_NULL_TS;
        for (int k = 0; k < CK__N; k++) {
            v->consent_expires[k][m] = PATRON_NULL_TS;
            v->consent_at[k][m] = PATRON_NULL_TS;
        }
        for (size_t i = 0; i < v->n_attr; i++)
            v->attr[i].num[m] = NAN;
    }
    v->n = n;
    return 0;
}

/* Inserts a row for member m at time ts (after rows with the same ts); vals[c] points at
 * the bytes of column c (c >= 1). */
static int stream_insert(stream *s, uint32_t m, int64_t ts, const void *const *vals)
{
    uint32_t b = s->beg[m], e = s->end[m], cap = s->cap[m];
    if (e - b == cap) {
        uint32_t ncap = cap ? cap * 2 : 4;
        int last = cap && (size_t)b + cap == s->nrows; /* the last slice grows in place */
        size_t need = last ? s->nrows + (ncap - cap) : s->nrows + ncap;
        if (need > UINT32_MAX - 1)
            return -1;
        if (need > s->caprows) {
            size_t nc = s->caprows ? s->caprows : 1024;
            while (nc < need)
                nc *= 2;
            for (int c = 0; c < s->ncols; c++) {
                void *q = mem_realloc_array(s->col[c], nc, s->colsz[c]);
                if (!q)
                    return -1;
                /* gaps are never read as rows, but keep them defined */
                memset((char *)q + s->caprows * s->colsz[c], 0, (nc - s->caprows) * s->colsz[c]);
                s->col[c] = q;
            }
            s->caprows = nc;
        }
        if (last) {
            s->nrows = need;
        } else {
            uint32_t nb = (uint32_t)s->nrows;
            for (int c = 0; c < s->ncols; c++)
                memcpy((char *)s->col[c] + (size_t)nb * s->colsz[c],
                       (char *)s->col[c] + (size_t)b * s->colsz[c], (size_t)(e - b) * s->colsz[c]);
            s->garbage += cap;
            s->beg[m] = nb;
            s->end[m] = nb + (e - b);
            b = nb;
            e = s->end[m];
            s->nrows += ncap;
        }
        s->cap[m] = ncap;
    }
    const int64_t *tsc = s->col[0];
    uint32_t p = e;
    while (p > b && tsc[p - 1] > ts) /* events mostly arrive in time order */
        p--;
    if (p == e) { /* the common case (every row of a build): an append, fixed-size stores */
        memcpy((char *)s->col[0] + (size_t)p * 8, &ts, 8);
        for (int c = 1; c < s->ncols; c++) {
            if (s->colsz[c] == 8)
                memcpy((char *)s->col[c] + (size_t)p * 8, vals[c], 8);
            else
                memcpy((char *)s->col[c] + (size_t)p * 4, vals[c], 4);
        }
        s->end[m] = e + 1;
        s->ts = s->col[0];
        return 0;
    }
    for (int c = 0; c < s->ncols; c++) {
        char *base = s->col[c];
        size_t z = s->colsz[c];
        memmove(base + (size_t)(p + 1) * z, base + (size_t)p * z, (size_t)(e - p) * z);
        memcpy(base + (size_t)p * z, c == 0 ? (const void *)&ts : vals[c], z);
    }
    s->end[m] = e + 1;
    s->ts = s->col[0];
    return 0;
}

/* Removes rows of member m for which col1 (a u32) equals key or, with map, map[key]. */
static void stream_remove(stream *s, uint32_t m, uint32_t key, const uint32_t *map)
{
    uint32_t b = s->beg[m], e = s->end[m], w = b;
    const uint32_t *k1 = s->col[1];
    for (uint32_t r = b; r < e; r++) {
        uint32_t k = map ? map[k1[r]] : k1[r];
        if (k == key)
            continue;
        if (w != r)
            for (int c = 0; c < s->ncols; c++)
                memcpy((char *)s->col[c] + (size_t)w * s->colsz[c],
                       (char *)s->col[c] + (size_t)r * s->colsz[c], s->colsz[c]);
        w++;
    }
    s->end[m] = w;
}

/* ---- stream definitions -------------------------------------------------------------- */

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

static const char *const stream_names[ST__N] = {
    "orders", "items", "returns", "redemptions", "points", "messages", "views", "referrals",
    "surveys", "custom"};

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

static void define_streams(mview *v)
{
    for (int i = 0; i < ST__N; i++) {
        v->streams[i].name = stream_names[i];
        v->streams[i].colsz[0] = 8;
        v->streams[i].ncols = 1;
    }
    stream *o = &v->streams[ST_ORDERS], *it = &v->streams[ST_ITEMS], *r = &v->streams[ST_RETURNS];
    o->ncols = 2, o->colsz[1] = 4;            /* order index */
    it->ncols = 4, it->colsz[1] = 4, it->colsz[2] = 8, it->colsz[3] = 4; /* item, qty x price, order */
    r->ncols = 3, r->colsz[1] = 4, r->colsz[2] = 8;    /* order index, money returned */
    for (size_t d = 0; d < N_EDEFS; d++) {
        stream *s = &v->streams[edefs[d].stream];
        for (int k = 0; k < 3 && edefs[d].keys[k]; k++) {
            s->colsz[k + 1] = edefs[d].types[k] == VT_NUM ? 8 : 4;
            s->ncols = k + 2;
        }
    }
}

/* Points every field at the current arrays (after anything may have moved them). */
static void bind_streams(const patron_db *db, mview *v)
{
    for (int i = 0; i < ST__N; i++) {
        v->streams[i].n_fields = 0;
        v->streams[i].ts = v->streams[i].col[0];
    }
    stream *s = &v->streams[ST_ORDERS];
    const uint32_t *ro = s->col[1];
    set_field(s, "amount", VT_NUM, VS_MONEY, db->o_amount, ro, NULL);
    set_field(s, "items", VT_NUM, VS_I32, db->o_items, ro, NULL);
    set_field(s, "units", VT_NUM, VS_I64, db->o_units, ro, NULL);
    set_field(s, "channel", VT_STR, VS_CODE, db->o_channel, ro, &v->items_dict[DB_DICT_CHANNEL]);
    set_field(s, "store", VT_STR, VS_CODE, db->o_store, ro, &v->items_dict[DB_DICT_STORE]);
    set_field(s, "ts", VT_TS, VS_TS, s->col[0], NULL, NULL);
    s = &v->streams[ST_ITEMS];
    ro = s->col[1];
    set_field(s, "sku", VT_STR, VS_CODE, v->it_sku, ro, &v->items_dict[DB_DICT_SKU]);
    set_field(s, "category", VT_STR, VS_CODE, v->it_cat, ro, &v->items_dict[DB_DICT_CATEGORY]);
    set_field(s, "brand", VT_STR, VS_CODE, v->it_brand, ro, &v->items_dict[DB_DICT_BRAND]);
    set_field(s, "qty", VT_NUM, VS_I32, v->it_qty, ro, NULL);
    set_field(s, "price", VT_NUM, VS_MONEY, v->it_price, ro, NULL);
    set_field(s, "amount", VT_NUM, VS_MONEY, s->col[2], NULL, NULL);
    set_field(s, "channel", VT_STR, VS_CODE, db->o_channel, s->col[3], &v->items_dict[DB_DICT_CHANNEL]);
    set_field(s, "store", VT_STR, VS_CODE, db->o_store, s->col[3], &v->items_dict[DB_DICT_STORE]);
    set_field(s, "ts", VT_TS, VS_TS, s->col[0], NULL, NULL);
    s = &v->streams[ST_RETURNS];
    set_field(s, "amount", VT_NUM, VS_MONEY, s->col[2], NULL, NULL);
    set_field(s, "items", VT_NUM, VS_I32, db->o_items, s->col[1], NULL);
    set_field(s, "ts", VT_TS, VS_TS, s->col[0], NULL, NULL);
    for (size_t d = 0; d < N_EDEFS; d++) {
        s = &v->streams[edefs[d].stream];
        for (int k = 0; k < 3 && edefs[d].keys[k]; k++) {
            if (edefs[d].types[k] == VT_NUM)
                set_field(s, edefs[d].keys[k], VT_NUM, VS_F64, s->col[k + 1], NULL, NULL);
            else
                set_field(s, edefs[d].keys[k], VT_STR, VS_CODE, s->col[k + 1], NULL, &v->estr);
        }
        set_field(s, "ts", VT_TS, VS_TS, s->col[0], NULL, NULL);
    }
}

/* ---- profiles ----------------------------------------------------------------------- */

static mattr *attr_get(mview *v, const char *name, size_t nn)
{
    for (size_t i = 0; i < v->n_attr; i++)
        if (strlen(v->attr[i].name) == nn && memcmp(v->attr[i].name, name, nn) == 0)
            return &v->attr[i];
    if (MEM_GROW(v->attr, v->cap_attr, v->n_attr + 1))
        return NULL;
    mattr *a = &v->attr[v->n_attr];
    memset(a, 0, sizeof *a);
    a->name = mem_alloc(nn + 1);
    if (a->name) {
        memcpy(a->name, name, nn);
        a->name[nn] = 0;
    }
    uint32_t cap = v->capm ? v->capm : 1;
    a->num = mem_alloc_array(cap, sizeof *a->num);
    a->b = mem_alloc_array(cap, 1);
    a->code = mem_calloc(cap, sizeof *a->code);
    a->from_event = mem_calloc(cap, 1);
    if (!a->name || !a->num || !a->b || !a->code || !a->from_event) {
        mem_free(a->name);
        mem_free(a->num);
        mem_free(a->b);
        mem_free(a->code);
        mem_free(a->from_event);
        return NULL;
    }
    for (uint32_t m = 0; m < cap; m++)
        a->num[m] = NAN;
    memset(a->b, 2, cap);
    a->type = VT_NUM;
    v->n_attr++;
    return a;
}

/* Sets attribute `name` of member m to a value of kind STORE_PA_* (i for INT, d for
 * REAL, text for STR); from_event: a survey answer.  STORE_PA_NONE (null, arrays,
 * objects) gives no value, but the attribute exists. */
static int attr_put(mview *v, uint32_t m, const char *name, size_t nn, int pk, int64_t i,
                    double d, const char *str, size_t sn, int from_event)
{
    mattr *a = attr_get(v, name, nn);
    if (!a)
        return -1;
    if (!from_event && a->from_event[m])
        return 0; /* survey answers are applied after profiles in a rebuild: they win */
    char buf[64];
    const char *text = NULL;
    size_t tn = 0;
    double num = NAN;
    uint8_t bv = 2;
    int kind;
    if (pk == STORE_PA_INT) {
        num = (double)i;
        snprintf(buf, sizeof buf, "%lld", (long long)i);
        text = buf, tn = strlen(buf), kind = 0;
    } else if (pk == STORE_PA_REAL) {
        num = d;
        snprintf(buf, sizeof buf, "%.17g", num);
        text = buf, tn = strlen(buf), kind = 0;
    } else if (pk == STORE_PA_TRUE || pk == STORE_PA_FALSE) {
        bv = pk == STORE_PA_TRUE ? 1 : 0;
        text = bv ? "true" : "false", tn = strlen(text), kind = 1;
    } else if (pk == STORE_PA_STR) {
        text = str, tn = sn, kind = 2;
    } else {
        return 0;
    }
    uint32_t c = strdict_intern(&v->pstr, text, tn);
    if (!c)
        return -1;
    a->num[m] = num;
    a->b[m] = bv;
    a->code[m] = c;
    a->from_event[m] |= (uint8_t)from_event;
    a->seen_num |= kind == 0;
    a->seen_bool |= kind == 1;
    a->seen_str |= kind == 2;
    a->type = a->seen_str || (a->seen_num && a->seen_bool) ? VT_STR
              : a->seen_bool                               ? VT_BOOL
                                                           : VT_NUM;
    return 0;
}

static void consent_apply(mview *v, uint32_t m, int k, int granted, int64_t at, int64_t expires)
{
    if (v->consent[k][m] != CONSENT_MISSING && v->consent_at[k][m] > at)
        return; /* the entry with the latest updated_at wins */
    v->consent[k][m] = granted ? CONSENT_GRANTED : CONSENT_DENIED;
    v->consent_expires[k][m] = expires;
    v->consent_at[k][m] = at;
}

/* Applies member m's whole profile from its cells (store_cells.h): the record the
 * store keeps beside the merged JSON. */
static int apply_cells(mview *v, uint32_t m, const store_pcells *c)
{
    if (!c->is_object)
        return 0; /* profiles are written by patron as JSON objects; skip anything else */
    int rc = 0;
    for (int k = 0; k < MV__NSTR && rc == 0; k++) {
        uint32_t code = 0;
        if (c->str[k].p && !(code = strdict_intern(&v->pstr, c->str[k].p, c->str[k].n)))
            rc = -1;
        v->str[k][m] = code;
    }
    v->birth_days[m] = c->birth_days;
    if (rc == 0 && (c->n_tags || v->tag_end[m] > v->tag_beg[m])) {
        /* the new list goes at the end (the old one, if any, becomes garbage) */
        if (MEM_GROW(v->tags, v->cap_tags, v->n_tags + c->n_tags + 1))
            rc = -1;
        uint32_t b = (uint32_t)v->n_tags;
        const unsigned char *pos = c->tags;
        for (uint32_t i = 0; i < c->n_tags && rc == 0; i++) {
            store_pstr t;
            store_pcells_tag(&pos, &t);
            uint32_t code = strdict_intern(&v->pstr, t.p, t.n);
            if (!code)
                rc = -1;
            v->tags[v->n_tags++] = code;
        }
        v->tag_beg[m] = b;
        v->tag_end[m] = (uint32_t)v->n_tags;
    }
    const unsigned char *pos = c->consent;
    for (uint32_t i = 0; i < c->n_consent; i++) {
        int k, granted;
        int64_t at, ex;
        store_pcells_consent(&pos, &k, &granted, &at, &ex);
        consent_apply(v, m, k, granted, at, ex);
    }
    pos = c->attr;
    for (uint32_t i = 0; i < c->n_attr && rc == 0; i++) {
        store_pstr name, str = {NULL, 0};
        int kind;
        int64_t x = 0;
        double d = 0;
        store_pcells_attr(&pos, &name, &kind, &x, &d, &str);
        rc = attr_put(v, m, name.p, name.n, kind, x, d, str.p, str.n, 0);
    }
    return rc;
}

/* Applies a profile record; -1 when it is damaged or memory ran out. */
static int apply_record(mview *v, uint32_t m, const unsigned char *rec, size_t n)
{
    store_pcells c;
    if (store_pcells_decode(rec, n, &c) != 0)
        return -2;
    return apply_cells(v, m, &c);
}

/* ---- events ------------------------------------------------------------------------- */

/* The edefs index of an event type, N_EDEFS for consent, -1 for a type the view skips. */
static int event_kind(const char *type)
{
    for (size_t d = 0; d < N_EDEFS; d++)
        if (strcmp(edefs[d].type, type) == 0)
            return (int)d;
    return strcmp(type, "consent") == 0 ? (int)N_EDEFS : -1;
}

/* The cells of a stream row of edefs[d] from the event's cells: numbers as doubles
 * (NAN when not a number), strings as codes in estr (integers written as text). */
static int event_row(mview *v, size_t d, const store_ecells *e, unsigned char cells[3][8])
{
    for (int k = 0; k < 3 && edefs[d].keys[k]; k++) {
        const store_pval *x = &e->val[k];
        if (edefs[d].types[k] == VT_NUM) {
            double num = x->kind == STORE_PA_INT ? (double)x->i : x->kind == STORE_PA_REAL ? x->d : NAN;
            memcpy(cells[k], &num, 8);
        } else {
            uint32_t code = 0;
            if (x->kind == STORE_PA_STR) {
                if (!(code = strdict_intern(&v->estr, x->s.p, x->s.n)))
                    return -1;
            } else if (x->kind == STORE_PA_INT) {
                char nb[32];
                snprintf(nb, sizeof nb, "%lld", (long long)x->i);
                if (!(code = strdict_intern(&v->estr, nb, strlen(nb))))
                    return -1;
            }
            memcpy(cells[k], &code, 4);
        }
    }
    return 0;
}

/* What a consent or survey event does to member m's profile columns. */
static int event_profile(mview *v, uint32_t m, int kind, int64_t ts, const store_ecells *e)
{
    if (kind == (int)N_EDEFS) {
        if (e->consent_key >= 0 && e->consent_status != 0)
            consent_apply(v, m, e->consent_key, e->consent_status == 1, ts, e->expires);
        return 0;
    }
    int rc = 0;
    if (edefs[kind].stream == ST_SURVEYS) { /* each answer also sets attributes.KEY */
        const unsigned char *pos = e->attr;
        for (uint32_t i = 0; i < e->n_attr && rc == 0; i++) {
            store_pstr name, str = {NULL, 0};
            int pk;
            int64_t x = 0;
            double d = 0;
            store_pcells_attr(&pos, &name, &pk, &x, &d, &str);
            rc = attr_put(v, m, name.p, name.n, pk, x, d, str.p, str.n, 1);
        }
    }
    return rc;
}

/* Applies one event (its canonical JSON text) as the importers commit it: the text is turned
 * into the same cells the store keeps, and applied as a rebuild applies them. */
static int apply_event(mview *v, uint32_t m, const char *type, int64_t ts, const char *body,
                       size_t n)
{
    int kind = event_kind(type), code = store_event_type_code(type);
    if (kind < 0 || code < 0)
        return 0;
    store_ecells e;
    v->pbuf.n = 0;
    if (store_event_encode_canon(code, body, n, &v->pbuf) != 0 ||
        store_ecells_decode(code, v->pbuf.p, v->pbuf.n, &e) != 0)
        return -1;
    if (!e.is_object)
        return 0;
    int rc = event_profile(v, m, kind, ts, &e);
    if (v->ledger_fed && kind < (int)N_EDEFS &&
        (edefs[kind].stream == ST_POINTS || edefs[kind].stream == ST_REDEMPTIONS))
        return rc; /* the ledger's rows stand for them */
    if (rc == 0 && kind < (int)N_EDEFS) {
        unsigned char cells[3][8];
        const void *vals[4] = {NULL, cells[0], cells[1], cells[2]};
        rc = event_row(v, (size_t)kind, &e, cells);
        if (rc == 0)
            rc = stream_insert(&v->streams[edefs[kind].stream], m, ts, vals);
    }
    return rc;
}

/* ---- orders and line items ------------------------------------------------------------ */

static int item_room(mview *v, size_t need)
{
    if (need <= v->cap_items)
        return 0;
    size_t cap = v->cap_items ? v->cap_items : 4096;
    while (cap < need)
        cap *= 2;
    void **cols[] = {(void **)&v->it_order, (void **)&v->it_sku, (void **)&v->it_cat,
                     (void **)&v->it_brand, (void **)&v->it_qty, (void **)&v->it_price};
    static const size_t size[] = {4, 4, 4, 4, 4, 8};
    for (size_t i = 0; i < sizeof cols / sizeof *cols; i++) {
        void *a = mem_realloc_array(*cols[i], cap, size[i]);
        if (!a)
            return -1;
        *cols[i] = a;
    }
    v->cap_items = cap;
    return 0;
}

/* Recomputes member m's behavioural totals from their order and return rows. */
static void behav_member(const patron_db *db, mview *v, uint32_t m)
{
    const stream *o = &v->streams[ST_ORDERS], *r = &v->streams[ST_RETURNS];
    const uint32_t *oi = o->col[1];
    const int64_t *ra = r->col[2];
    int64_t money = 0, last = PATRON_NULL_TS, mx = PATRON_NULL_TS;
    for (uint32_t k = o->beg[m]; k < o->end[m]; k++)
        money += db->o_amount[oi[k]];
    if (o->end[m] > o->beg[m])
        last = mx = o->ts[o->end[m] - 1];
    for (uint32_t k = r->beg[m]; k < r->end[m]; k++)
        money -= ra[k];
    if (r->end[m] > r->beg[m] && r->ts[r->end[m] - 1] > mx)
        mx = r->ts[r->end[m] - 1];
    v->bf_freq[m] = o->end[m] - o->beg[m];
    v->bf_money[m] = money;
    v->bf_last[m] = last;
    v->bf_max[m] = mx;
}

/* Adds order o's row to its member's orders or returns (voided orders count nowhere). */
static int apply_order(const patron_db *db, mview *v, uint32_t o)
{
    int32_t m = db->o_member[o];
    if (m < 0 || db->o_void[o])
        return 0;
    if (db->o_kind[o] == 0) {
        const void *vals[2] = {NULL, &o};
        return stream_insert(&v->streams[ST_ORDERS], (uint32_t)m, db->o_ts[o], vals);
    }
    int64_t back = -db->o_amount[o];
    const void *vals[3] = {NULL, &o, &back};
    return stream_insert(&v->streams[ST_RETURNS], (uint32_t)m, db->o_ts[o], vals);
}

/* Adds line item i (stored at v->it_*[i]) to the items stream when it is an item of an
 * order (a positive row of a non-return, not voided). */
static int apply_item(const patron_db *db, mview *v, uint32_t i)
{
    uint32_t o = v->it_order[i];
    int32_t m = db->o_member[o];
    if (m < 0 || db->o_void[o] || db->o_kind[o] != 0 || v->it_qty[i] <= 0)
        return 0;
    int64_t amount = (int64_t)v->it_qty[i] * v->it_price[i];
    const void *vals[4] = {NULL, &i, &amount, &o};
    return stream_insert(&v->streams[ST_ITEMS], (uint32_t)m, db->o_ts[o], vals);
}

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

static int hash_order_ids(void *ctx, const store_orders *o)
{
    ibuild *ib = ctx;
    if (o->n > ib->n_orders - ib->next)
        return 2; /* the store has more orders than memory: stale */
    for (uint32_t i = 0; i < o->n; i++)
        u64map_put(&ib->ids, XXH3_64bits(o->ids + o->id_off[i], o->id_off[i + 1] - o->id_off[i]),
                   ib->next++);
    return 0;
}

/* A chunk of line items into the view: each run's order is looked up once, and the
 * run's columns are copied whole. */
static int load_items(void *ctx, const store_items *c)
{
    ibuild *ib = ctx;
    mview *v = ib->v;
    if (item_room(v, v->n_items + c->n) != 0)
        return 1;
    size_t at = 0;
    for (uint32_t r = 0; r < c->runs; r++) {
        size_t len = c->run_len[r];
        uint32_t o;
        if (u64map_get(&ib->ids, c->run_hash[r], &o)) {
            size_t k = v->n_items;
            for (size_t j = 0; j < len; j++)
                v->it_order[k + j] = o;
            memcpy(v->it_sku + k, c->sku + at, len * sizeof *c->sku);
            memcpy(v->it_cat + k, c->category + at, len * sizeof *c->category);
            memcpy(v->it_brand + k, c->brand + at, len * sizeof *c->brand);
            memcpy(v->it_qty + k, c->qty + at, len * sizeof *c->qty);
            memcpy(v->it_price + k, c->price + at, len * sizeof *c->price);
            v->n_items += len;
        } /* else the order is not in memory (written after open) */
        at += len;
    }
    return 0;
}

static int load_item_dict(void *ctx, int kind, uint32_t code, const char *s, size_t n)
{
    mview *v = ctx;
    if (kind < 1 || kind >= DB_DICT__N)
        return 0;
    /* Codes are dense from 1 in the store, so interning in code order keeps them. */
    uint32_t c = strdict_intern(&v->items_dict[kind], s, n);
    return c == code ? 0 : 1;
}

/* Lays stream s out afresh (rows it held are dropped): member m gets room for exactly
 * cnt[m] rows, slices in member order, all empty.  cnt may be s->cap itself. */
static int stream_presize(stream *s, uint32_t n, const uint32_t *cnt)
{
    size_t off = 0;
    for (uint32_t m = 0; m < n; m++) {
        s->beg[m] = s->end[m] = (uint32_t)off;
        s->cap[m] = cnt[m];
        off += cnt[m];
        if (off > UINT32_MAX - 1)
            return -1;
    }
    for (int c = 0; c < s->ncols; c++) {
        void *q = mem_alloc_array(off ? off : 1, s->colsz[c]);
        if (!q)
            return -1;
        mem_free(s->col[c]);
        s->col[c] = q;
    }
    s->nrows = s->caprows = off;
    s->garbage = 0;
    s->ts = s->col[0];
    return 0;
}

/* Order rows and item rows, member by member in time order (so slices are contiguous). */
static int build_orders(patron_db *db, mview *v)
{
    uint32_t *ioff = mem_calloc(db->n_orders + 1, sizeof *ioff);
    uint32_t *iidx = mem_alloc_array(v->n_items ? v->n_items : 1, sizeof *iidx);
    int rc = 0;
    if (!ioff || !iidx)
        rc = -1;
    for (size_t i = 0; i < v->n_items && rc == 0; i++)
        ioff[v->it_order[i] + 1]++;
    for (size_t o = 0; o < db->n_orders && rc == 0; o++)
        ioff[o + 1] += ioff[o];
    uint32_t *fill = rc ? NULL : mem_alloc_array(db->n_orders + 1, sizeof *fill);
    if (!fill)
        rc = -1;
    if (rc == 0) {
        memcpy(fill, ioff, (db->n_orders + 1) * sizeof *fill);
        for (size_t i = 0; i < v->n_items; i++)
            iidx[fill[v->it_order[i]]++] = (uint32_t)i;
    }
    mem_free(fill);
    /* Each member's slices sized exactly first (the rows then go in place, in time
     * order): growing them row by row cost a realloc and a copy of the whole arrays at
     * every doubling. */
    uint32_t *cnt[3] = {NULL, NULL, NULL};
    static const int sts[3] = {ST_ORDERS, ST_RETURNS, ST_ITEMS};
    for (int k = 0; k < 3 && rc == 0; k++)
        if (!(cnt[k] = mem_calloc(v->n ? v->n : 1, sizeof *cnt[k])))
            rc = -1;
    for (uint32_t o = 0; o < db->n_orders && rc == 0; o++) {
        int32_t m = db->o_member[o];
        if (m < 0 || (uint32_t)m >= v->n || db->o_void[o])
            continue;
        if (db->o_kind[o] != 0) {
            cnt[1][m]++;
            continue;
        }
        cnt[0][m]++;
        for (uint32_t j = ioff[o]; j < ioff[o + 1]; j++)
            cnt[2][m] += v->it_qty[iidx[j]] > 0;
    }
    for (int k = 0; k < 3 && rc == 0; k++)
        rc = stream_presize(&v->streams[sts[k]], v->n, cnt[k]);
    for (int k = 0; k < 3; k++)
        mem_free(cnt[k]);
    for (uint32_t m = 0; m < v->n && rc == 0; m++) {
        for (uint32_t k = db->csr_off[m]; k < db->csr_off[m + 1] && rc == 0; k++) {
            uint32_t o = db->csr_ord[k];
            rc = apply_order(db, v, o);
            for (uint32_t j = ioff[o]; j < ioff[o + 1] && rc == 0; j++)
                rc = apply_item(db, v, iidx[j]);
        }
        if (rc == 0)
            behav_member(db, v, m);
    }
    mem_free(ioff);
    mem_free(iidx);
    return rc;
}

/* ---- building and freeing ---------------------------------------------------------------- */

static void view_free(mview *v)
{
    if (!v)
        return;
    if (v->idx_free)
        v->idx_free(v->idx, v->n_idx);
    strdict_release(&v->pstr);
    strdict_release(&v->estr);
    for (int k = 0; k < DB_DICT__N; k++)
        strdict_release(&v->items_dict[k]);
    for (int k = 0; k < MV__NSTR; k++)
        mem_free(v->str[k]);
    mem_free(v->birth_days);
    mem_free(v->tag_beg);
    mem_free(v->tag_end);
    mem_free(v->tags);
    for (int k = 0; k < CK__N; k++) {
        mem_free(v->consent[k]);
        mem_free(v->consent_expires[k]);
        mem_free(v->consent_at[k]);
    }
    for (size_t i = 0; i < v->n_attr; i++) {
        mem_free(v->attr[i].name);
        mem_free(v->attr[i].num);
        mem_free(v->attr[i].b);
        mem_free(v->attr[i].code);
        mem_free(v->attr[i].from_event);
    }
    mem_free(v->attr);
    mem_free(v->pbuf.p);
    mem_free(v->bf_freq);
    mem_free(v->bf_money);
    mem_free(v->bf_last);
    mem_free(v->bf_max);
    mem_free(v->it_order);
    mem_free(v->it_sku);
    mem_free(v->it_cat);
    mem_free(v->it_brand);
    mem_free(v->it_qty);
    mem_free(v->it_price);
    for (int s = 0; s < ST__N; s++) {
        stream *st = &v->streams[s];
        mem_free(st->beg);
        mem_free(st->end);
        mem_free(st->cap);
        for (int c = 0; c < STREAM_MAX_COLS; c++)
            mem_free(st->col[c]);
    }
    mem_free(v);
}

void db_view_free(patron_db *db)
{
    view_free(db->view);
    db->view = NULL;
    for (size_t i = 0; i < db->n_ext; i++) {
        mem_free(db->ext[i]->num);
        mem_free(db->ext[i]->code);
        mem_free(db->ext[i]->fn.codes);
        strdict_release(&db->ext[i]->dict);
        mem_free(db->ext[i]);
    }
    mem_free(db->ext);
    db->ext = NULL;
    db->n_ext = 0;
    for (int i = 0; i < db->n_builtin; i++)
        roaring_bitmap_free(db->builtin_members[i]);
    db->n_builtin = 0;
}

const extcol *db_extcol_find(const patron_db *db, const char *name)
{
    for (size_t i = 0; i < db->n_ext; i++)
        if (strcmp(db->ext[i]->name, name) == 0)
            return db->ext[i];
    return NULL;
}

extcol *db_extcol(patron_db *db, const char *name, vtype type, int is_model)
{
    extcol *c = (extcol *)db_extcol_find(db, name);
    if (!c) {
        extcol **a = mem_realloc_array(db->ext, db->n_ext + 1, sizeof *a);
        if (!a)
            return NULL;
        db->ext = a;
        if (!(c = mem_calloc(1, sizeof *c)))
            return NULL;
        db->ext[db->n_ext++] = c;
        snprintf(c->name, sizeof c->name, "%s", name);
        c->type = type;
        c->is_model = is_model;
        strdict_init(&c->dict);
    }
    uint32_t n = db->n_members;
    if (n > c->cap || !c->num) {
        uint32_t cap = n ? n : 1;
        double *d = mem_realloc_array(c->num, cap, sizeof *d);
        if (!d)
            return NULL;
        c->num = d;
        uint32_t *k = mem_realloc_array(c->code, cap, sizeof *k);
        if (!k)
            return NULL;
        c->code = k;
        c->cap = cap;
    }
    for (uint32_t m = c->n; m < n; m++) {
        c->num[m] = NAN;
        c->code[m] = 0;
    }
    c->n = n;
    return c;
}

typedef struct lctx {
    mview *v;
    patron_error *err;
} lctx;

static int load_profile(void *ctx, uint32_t m, const unsigned char *rec, size_t n)
{
    lctx *l = ctx;
    if (m >= l->v->n)
        return 0; /* written after this view was sized: the next build sees it */
    int rc = apply_record(l->v, m, rec, n);
    if (rc == -2)
        return err_set(l->err, PATRON_ESTORE, "the stored profile cells of member %u are damaged", m);
    return rc ? 1 : 0;
}

/*
 * Events from the event chunks.  A first pass over the chunks parses each event the
 * view reads once: a stream event becomes a row (member, stream, ts, cells); a consent
 * or survey event, whose effect on the profile columns depends on order, is kept (its
 * text copied) and applied after sorting by (member, ts, stored order) -- the order the
 * events were written, which for a database migrated from schema 3 is (member, ts, id),
 * the order earlier versions read them in.  The stream rows are then placed member by
 * member with one counting pass (each slice exactly full), not inserted one by one.
 */
typedef struct pevent {
    uint32_t member, seq;
    int64_t ts;
    int kind, type;
    size_t off, len; /* cells in ebuild.text */
} pevent;

typedef struct ebuild {
    mview *v;
    patron_error *err;
    int kind_of[256]; /* store type code -> event_kind() */
    size_t n, cap;    /* stream rows */
    uint32_t *member;
    uint8_t *stream;
    int64_t *ts;
    uint64_t *cell;   /* 3 per row */
    pevent *pe;       /* profile events */
    size_t npe, cap_pe;
    unsigned char *text;
    size_t text_len, text_cap;
} ebuild;

static int load_ecells(void *ctx, const store_ecchunk *c)
{
    ebuild *b = ctx;
    mview *v = b->v;
    for (uint32_t i = 0; i < c->n; i++) {
        int kind = b->kind_of[c->type[i]];
        int32_t m = c->member[i];
        if (kind < 0 || m < 0 || (uint32_t)m >= v->n)
            continue;
        const unsigned char *rec = c->rec + c->off[i];
        size_t rn = c->off[i + 1] - c->off[i];
        store_ecells e;
        if (store_ecells_decode(c->type[i], rec, rn, &e) != 0)
            return err_set(b->err, PATRON_ESTORE, "the stored cells of an event of member %d are damaged", m);
        if (!e.is_object)
            continue; /* as before: an event that is not a JSON object changes nothing */
        if (kind == (int)N_EDEFS || edefs[kind].stream == ST_SURVEYS) {
            if (MEM_GROW(b->pe, b->cap_pe, b->npe + 1) ||
                MEM_GROW(b->text, b->text_cap, b->text_len + rn + 1))
                return 1;
            b->pe[b->npe] = (pevent){(uint32_t)m, (uint32_t)b->npe, c->ts[i], kind, c->type[i],
                                     b->text_len, rn};
            memcpy(b->text + b->text_len, rec, rn);
            b->text_len += rn;
            b->npe++;
        }
        if (kind == (int)N_EDEFS)
            continue;
        if (b->n == b->cap) {
            size_t nc = b->cap ? b->cap * 2 : 65536;
            uint32_t *pm = mem_realloc_array(b->member, nc, 4);
            if (pm)
                b->member = pm;
            uint8_t *ps = pm ? mem_realloc_array(b->stream, nc, 1) : NULL;
            if (ps)
                b->stream = ps;
            int64_t *pt = ps ? mem_realloc_array(b->ts, nc, 8) : NULL;
            if (pt)
                b->ts = pt;
            uint64_t *pc = pt ? mem_realloc_array(b->cell, nc, 24) : NULL;
            if (!pc)
                return 1;
            b->cell = pc;
            b->cap = nc;
        }
        unsigned char cells[3][8];
        memset(cells, 0, sizeof cells);
        if (event_row(v, (size_t)kind, &e, cells) != 0)
            return 1;
        b->member[b->n] = (uint32_t)m;
        b->stream[b->n] = (uint8_t)edefs[kind].stream;
        b->ts[b->n] = c->ts[i];
        memcpy(b->cell + 3 * b->n, cells, 24);
        b->n++;
    }
    return 0;
}

static int pevent_cmp(const void *x, const void *y)
{
    const pevent *a = x, *b = y;
    if (a->member != b->member)
        return a->member < b->member ? -1 : 1;
    if (a->ts != b->ts)
        return a->ts < b->ts ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* Moves row `from` of stream s to `to` (to < from), shifting the rows between up. */
static void stream_rotate(stream *s, uint32_t to, uint32_t from)
{
    for (int c = 0; c < s->ncols; c++) {
        char *base = s->col[c], tmp[8];
        size_t z = s->colsz[c];
        memcpy(tmp, base + (size_t)from * z, z);
        memmove(base + (size_t)(to + 1) * z, base + (size_t)to * z, (size_t)(from - to) * z);
        memcpy(base + (size_t)to * z, tmp, z);
    }
}

/* Places the gathered rows into the event streams (empty so far), each member's slice
 * exactly full and in time order (rows with equal ts keep their stored order). */
static int fill_streams(mview *v, const ebuild *b)
{
    for (size_t r = 0; r < b->n; r++)
        v->streams[b->stream[r]].cap[b->member[r]]++;
    for (int k = ST_REDEMPTIONS; k < ST__N; k++)
        if (stream_presize(&v->streams[k], v->n, v->streams[k].cap) != 0)
            return -1;
    for (size_t r = 0; r < b->n; r++) {
        stream *s = &v->streams[b->stream[r]];
        uint32_t p = s->end[b->member[r]]++;
        memcpy((char *)s->col[0] + (size_t)p * 8, &b->ts[r], 8);
        for (int c = 1; c < s->ncols; c++)
            memcpy((char *)s->col[c] + (size_t)p * s->colsz[c], b->cell + 3 * r + (c - 1),
                   s->colsz[c]);
    }
    for (int k = ST_REDEMPTIONS; k < ST__N; k++) {
        stream *s = &v->streams[k];
        const int64_t *ts = s->col[0];
        for (uint32_t m = 0; m < v->n; m++)
            for (uint32_t i = s->beg[m] + 1; i < s->end[m]; i++) {
                if (ts[i] >= ts[i - 1])
                    continue;
                uint32_t j = i;
                while (j > s->beg[m] && ts[j - 1] > ts[i])
                    j--;
                stream_rotate(s, j, i);
            }
        s->ts = s->col[0];
    }
    return 0;
}

/* Every stored event into the view (after the profiles). */
static int load_events(patron_db *db, mview *v, patron_error *err)
{
    ebuild b;
    memset(&b, 0, sizeof b);
    b.v = v;
    b.err = err;
    for (int t = 0; t < 256; t++) {
        const char *name = store_event_type_name(t);
        b.kind_of[t] = name ? event_kind(name) : -1;
        /* the cells hold the values of the stream's keys by position */
        for (int k = 0; name && b.kind_of[t] >= 0 && b.kind_of[t] < (int)N_EDEFS && k < 3; k++) {
            const char *want = edefs[b.kind_of[t]].keys[k], *have = store_event_keys(t)[k];
            PATRON_ASSERT(want ? have && strcmp(want, have) == 0 : have == NULL);
            if (!want)
                break;
        }
    }
    int rc = store_event_cells_each(db->st, load_ecells, &b, err);
    if (rc == PATRON_OK) {
        if (b.npe)
            qsort(b.pe, b.npe, sizeof *b.pe, pevent_cmp);
        for (size_t i = 0; i < b.npe && rc == PATRON_OK; i++) {
            store_ecells e; /* checked when gathered */
            store_ecells_decode(b.pe[i].type, b.text + b.pe[i].off, b.pe[i].len, &e);
            if (event_profile(v, b.pe[i].member, b.pe[i].kind, b.pe[i].ts, &e) != 0)
                rc = err_set(err, PATRON_ENOMEM, "out of memory loading events");
        }
    }
    if (rc == PATRON_OK && fill_streams(v, &b) != 0)
        rc = err_set(err, PATRON_ENOMEM, "out of memory loading events");
    mem_free(b.member);
    mem_free(b.stream);
    mem_free(b.ts);
    mem_free(b.cell);
    mem_free(b.pe);
    mem_free(b.text);
    return rc;
}

int db_view_ensure(patron_db *db, patron_error *err)
{
    if (db->view && db->view_valid && !db->view->failed)
        return PATRON_OK;
    view_free(db->view); /* attached columns stay */
    db->view = NULL;
    int rc = db_csr_build(db);
    if (rc != PATRON_OK)
        return err_set(err, rc, "out of memory building the event index");
    mview *v = mem_calloc(1, sizeof *v);
    if (!v)
        return err_set(err, PATRON_ENOMEM, "out of memory");
    v->default_profiling = db->default_profiling ? db->default_profiling : CONSENT_GRANTED;
    v->default_personalization =
            db->default_personalization ? db->default_personalization : CONSENT_GRANTED;
    strdict_init(&v->pstr);
    strdict_init(&v->estr);
    for (int k = 0; k < DB_DICT__N; k++)
        strdict_init(&v->items_dict[k]);
    define_streams(v);
    if (members_grow(v, db->n_members) != 0) {
        view_free(v);
        return err_set(err, PATRON_ENOMEM, "out of memory building the member view");
    }
    lctx l = {v, err};
    if ((rc = store_read_begin(db->st, err)) != PATRON_OK) {
        view_free(v);
        return rc;
    }
    rc = store_profile_cells_each(db->st, load_profile, &l, err);
    if (rc == PATRON_OK)
        rc = load_events(db, v, err);
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
        rc = store_order_chunks_each(db->st, STORE_OC_IDS, hash_order_ids, &ib, err);
    if (rc == PATRON_OK) { /* room for every line item the orders count, at once */
        size_t want = 0;
        for (size_t o = 0; o < db->n_orders; o++)
            want += db->o_items[o] > 0 ? (size_t)db->o_items[o] : 0;
        if (item_room(v, want) != 0)
            rc = err_set(err, PATRON_ENOMEM, "out of memory");
    }
    if (rc == PATRON_OK)
        rc = store_items_each(db->st, load_items, &ib, err);
    store_read_end(db->st);
    mem_free(ib.ids.key);
    mem_free(ib.ids.val);
    if (rc == PATRON_OK && build_orders(db, v) != 0)
        rc = err_set(err, PATRON_ENOMEM, "out of memory building streams");
    if (rc != PATRON_OK) {
        view_free(v);
        return rc;
    }
    bind_streams(db, v);
    db->view = v;
    db->view_valid = 1;
    db->view_gen++;
    if (db->view_hook && (rc = db->view_hook(db, err)) == PATRON_OK && v->failed)
        rc = err_set(err, PATRON_ENOMEM, "out of memory building the member view");
    if (rc != PATRON_OK) {
        view_free(v);
        db->view = NULL;
        db->view_valid = 0;
        return rc;
    }
    bind_streams(db, v);
    return PATRON_OK;
}

/* ---- incremental maintenance ---------------------------------------------------------- */

static mview *live_view(patron_db *db)
{
    mview *v = db->view;
    if (!v || !db->view_valid || v->failed)
        return NULL;
    if (members_grow(v, db->n_members) != 0) {
        v->failed = 1;
        return NULL;
    }
    return v;
}

void view_profile(patron_db *db, uint32_t m, const char *json)
{
    mview *v = live_view(db);
    if (!v || m >= v->n)
        return;
    /* the same record the store keeps, applied the same way as in a rebuild */
    v->pbuf.n = 0;
    if (store_profile_encode_canon(json, strlen(json), &v->pbuf) != 0 ||
        apply_record(v, m, v->pbuf.p, v->pbuf.n) != 0)
        v->failed = 1;
}

void view_event(patron_db *db, uint32_t m, const char *type, int64_t ts, const char *json)
{
    mview *v = live_view(db);
    if (v && m < v->n && apply_event(v, m, type, ts, json, strlen(json)) != 0)
        v->failed = 1;
}

void view_dict_add(patron_db *db, int kind, uint32_t code, const char *s, size_t n)
{
    mview *v = live_view(db);
    if (v && kind >= 1 && kind < DB_DICT__N && strdict_intern(&v->items_dict[kind], s, n) != code)
        v->failed = 1;
}

void view_order(patron_db *db, uint32_t o)
{
    mview *v = live_view(db);
    if (v && apply_order(db, v, o) != 0)
        v->failed = 1;
    else if (v && db->o_member[o] >= 0)
        behav_member(db, v, (uint32_t)db->o_member[o]);
}

void view_item(patron_db *db, uint32_t o, uint32_t sku, uint32_t cat, uint32_t brand,
               int32_t qty, int64_t price)
{
    mview *v = live_view(db);
    if (!v)
        return;
    if (item_room(v, v->n_items + 1) != 0) {
        v->failed = 1;
        return;
    }
    uint32_t i = (uint32_t)v->n_items++;
    v->it_order[i] = o;
    v->it_sku[i] = sku;
    v->it_cat[i] = cat;
    v->it_brand[i] = brand;
    v->it_qty[i] = qty;
    v->it_price[i] = price;
    if (apply_item(db, v, i) != 0)
        v->failed = 1;
}

void view_void(patron_db *db, uint32_t o)
{
    mview *v = live_view(db);
    int32_t m = db->o_member[o];
    if (!v || m < 0)
        return;
    stream_remove(&v->streams[ST_ORDERS], (uint32_t)m, o, NULL);
    stream_remove(&v->streams[ST_RETURNS], (uint32_t)m, o, NULL);
    stream_remove(&v->streams[ST_ITEMS], (uint32_t)m, o, v->it_order);
    behav_member(db, v, (uint32_t)m);
}

void view_after_import(patron_db *db)
{
    mview *v = db->view;
    if (!v || !db->view_valid)
        return;
    if (members_grow(v, db->n_members) != 0)
        v->failed = 1;
    if (v->failed) {
        db->view_valid = 0; /* rebuilt on its next read */
        return;
    }
    bind_streams(db, v);
    db->view_gen++;
}

int view_ledger_rows(patron_db *db, uint32_t m, const view_lrow *pts, size_t np,
                     const view_lrow *red, size_t nr)
{
    mview *v = live_view(db);
    if (!v || m >= v->n)
        return 0;
    v->ledger_fed = 1;
    stream *sp = &v->streams[ST_POINTS], *sr = &v->streams[ST_REDEMPTIONS];
    sp->end[m] = sp->beg[m];
    sr->end[m] = sr->beg[m];
    for (size_t i = 0; i < np; i++) { /* points, reason */
        double pt = pts[i].points;
        uint32_t code = strdict_intern(&v->estr, pts[i].s, pts[i].sn);
        const void *vals[3] = {NULL, &pt, &code};
        if ((!code && pts[i].sn) || stream_insert(sp, m, pts[i].ts, vals) != 0)
            goto oom;
    }
    for (size_t i = 0; i < nr; i++) { /* reward_id, points */
        double pt = red[i].points;
        uint32_t code = strdict_intern(&v->estr, red[i].s, red[i].sn);
        const void *vals[3] = {NULL, &code, &pt};
        if ((!code && red[i].sn) || stream_insert(sr, m, red[i].ts, vals) != 0)
            goto oom;
    }
    return 0;
oom:
    v->failed = 1;
    return -1;
}

int view_ledger_all(patron_db *db, const size_t *poff, const view_lrow *pts, const size_t *roff,
                    const view_lrow *red)
{
    mview *v = live_view(db);
    if (!v)
        return 0;
    const int ks[2] = {ST_POINTS, ST_REDEMPTIONS};
    for (int j = 0; j < 2; j++) {
        stream *s = &v->streams[ks[j]];
        const size_t *off = j ? roff : poff;
        const view_lrow *rows = j ? red : pts;
        size_t total = off[v->n];
        if (total > UINT32_MAX - 1)
            goto oom;
        for (uint32_t m = 0; m < v->n; m++) /* the counts, then the exact layout */
            s->cap[m] = (uint32_t)(off[m + 1] - off[m]);
        if (stream_presize(s, v->n, s->cap) != 0)
            goto oom;
        for (uint32_t m = 0; m < v->n; m++)
            s->end[m] = s->beg[m] + s->cap[m];
        int64_t *ts = s->col[0];
        double *num = s->col[j ? 2 : 1];
        uint32_t *code = s->col[j ? 1 : 2];
        for (size_t r = 0; r < total; r++) {
            ts[r] = rows[r].ts;
            num[r] = rows[r].points;
            code[r] = strdict_intern(&v->estr, rows[r].s, rows[r].sn);
            if (!code[r])
                goto oom;
        }
        s->ts = s->col[0];
    }
    v->ledger_fed = 1;
    return 0;
oom:
    v->failed = 1;
    return -1;
}

/* ---- hashing (tests) -------------------------------------------------------------------- */

static uint64_t mix(uint64_t h, uint64_t x)
{
    h ^= x + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h;
}

static uint64_t str_hash(const strdict *d, uint32_t code)
{
    size_t n;
    const char *s = strdict_str(d, code, &n);
    return code ? XXH3_64bits(s, n) : 0;
}

uint64_t view_hash(const patron_db *db)
{
    const mview *v = db->view;
    if (!v)
        return 0;
    uint64_t h = v->n;
    for (uint32_t m = 0; m < v->n; m++) {
        uint64_t hm = m;
        for (int k = 0; k < MV__NSTR; k++)
            hm = mix(hm, str_hash(&v->pstr, v->str[k][m]));
        hm = mix(hm, (uint64_t)v->birth_days[m]);
        hm = mix(mix(mix(mix(hm, v->bf_freq[m]), (uint64_t)v->bf_money[m]), (uint64_t)v->bf_last[m]),
                 (uint64_t)v->bf_max[m]);
        uint64_t tags = 0; /* a set: order-insensitive */
        for (uint32_t i = v->tag_beg[m]; i < v->tag_end[m]; i++)
            tags += XXH3_64bits(&v->tags[i], 0) ^ str_hash(&v->pstr, v->tags[i]);
        hm = mix(hm, tags);
        for (int k = 0; k < CK__N; k++)
            hm = mix(mix(hm, v->consent[k][m]), (uint64_t)v->consent_expires[k][m]);
        for (size_t i = 0; i < v->n_attr; i++) {
            const mattr *a = &v->attr[i];
            hm = mix(hm, XXH3_64bits(a->name, strlen(a->name)) ^ str_hash(&v->pstr, a->code[m]));
        }
        for (int s = 0; s < ST__N; s++) {
            const stream *st = &v->streams[s];
            uint64_t rows = 0; /* rows: a multiset of (ts, field values) */
            for (uint32_t r = st->beg[m]; r < st->end[m]; r++) {
                uint64_t hr = (uint64_t)st->ts[r];
                for (size_t f = 0; f < st->n_fields; f++) {
                    const vcol *c = &st->fields[f].col;
                    if (c->type == VT_STR)
                        hr = mix(hr, str_hash(c->dict, vcol_code(c, r)));
                    else {
                        double x = vcol_num(c, r);
                        uint64_t bits;
                        memcpy(&bits, &x, 8);
                        hr = mix(hr, x == x ? bits : 1);
                    }
                }
                rows += XXH3_64bits(&hr, 8);
            }
            hm = mix(mix(hm, st->end[m] - st->beg[m]), rows);
        }
        h = mix(h, hm);
    }
    return h;
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
