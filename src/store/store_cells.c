/*
 * store_cells.c -- profile cells (see store_cells.h): the encoder, run once per
 * profile write, and the checked decoder the member view runs once per member.
 *
 * The encoder reads the JSON with jscan, the reader the view used before cells existed,
 * and keeps its rules: first occurrence of a top-level key, strings decoded, a birth
 * date or timestamp read from at most 63 or 127 bytes, consent keys and status as
 * strings, every attribute (null, arrays and objects too: they create the attribute
 * without a value).  A view built from cells therefore equals one built from the text.
 */
#include "store/store_cells.h"

#include "base/jscan.h"
#include "base/mem.h"
#include "base/time.h"
#include "patron/patron.h"

#include <string.h>

const char *const store_profile_str_names[STORE_PROFILE_NSTR] = {
    "email", "phone", "first_name", "last_name", "gender", "country", "region",
    "city", "postal_code", "language", "signup_channel", "preferred_channel", "referred_by"};
const char *const store_consent_names[STORE_CONSENT_N] = {
    "email", "sms", "push", "app", "web", "social", "mail", "marketing", "profiling",
    "personalization"};

/* ---- writing ------------------------------------------------------------------------ */

static int put(store_buf *b, const void *p, size_t n)
{
    if (MEM_GROW(b->p, b->cap, b->n + n))
        return -1;
    if (n)
        memcpy(b->p + b->n, p, n);
    b->n += n;
    return 0;
}

static int put_varint(store_buf *b, uint64_t x)
{
    unsigned char t[10];
    size_t k = 0;
    while (x >= 0x80) {
        t[k++] = (unsigned char)(x | 0x80);
        x >>= 7;
    }
    t[k++] = (unsigned char)x;
    return put(b, t, k);
}

/* A string value, decoded: without escapes the text itself, else decoded past the
 * longest possible length prefix and moved back behind the real one (decoding never
 * makes a string longer). */
static int put_str(store_buf *b, const jsval *s, int plus_one)
{
    if (!s->esc)
        return put_varint(b, (uint64_t)s->n + (uint64_t)plus_one) || put(b, s->p, s->n) ? -1 : 0;
    if (MEM_GROW(b->p, b->cap, b->n + 10 + s->n + 1))
        return -1;
    char *tmp = (char *)b->p + b->n + 10;
    size_t n;
    const char *d = jscan_str(s, tmp, s->n + 1, &n);
    if (d != tmp)
        memmove(tmp, d, n);
    put_varint(b, (uint64_t)n + (uint64_t)plus_one); /* room reserved above */
    memmove(b->p + b->n, tmp, n);
    b->n += n;
    return 0;
}

/* A timestamp value: an ISO 8601 string (read from at most 127 bytes) or an integer. */
static int64_t ts_of(const jsval *t)
{
    int64_t ts;
    char buf[128];
    if (t->kind == JS_STR) {
        size_t n;
        const char *s = jscan_str(t, buf, sizeof buf, &n);
        return time_parse(s, n, &ts) == 0 ? ts : PATRON_NULL_TS;
    }
    return t->kind == JS_INT ? jscan_int(t) : PATRON_NULL_TS;
}

/* Reserves a u32 count at the end of b; its offset in *at (patched by set_count). */
static int put_count(store_buf *b, size_t *at)
{
    uint32_t z = 0;
    *at = b->n;
    return put(b, &z, 4);
}

static void set_count(store_buf *b, size_t at, uint32_t n)
{
    memcpy(b->p + at, &n, 4);
}

static int consent_index(const jsval *s)
{
    char buf[32];
    if (s->kind != JS_STR || s->n >= sizeof buf)
        return -1;
    const char *k = jscan_cstr(s, buf, sizeof buf);
    for (int i = 0; i < STORE_CONSENT_N; i++)
        if (strcmp(k, store_consent_names[i]) == 0)
            return i;
    return -1;
}

/* A value: u8 kind (STORE_PA_*), then i64, f64 or a string for INT, REAL, STR. */
static int put_val(store_buf *b, const jsval *e)
{
    unsigned char kind = e->kind == JS_INT    ? STORE_PA_INT
                         : e->kind == JS_REAL ? STORE_PA_REAL
                         : e->kind == JS_TRUE ? STORE_PA_TRUE
                         : e->kind == JS_FALSE ? STORE_PA_FALSE
                         : e->kind == JS_STR  ? STORE_PA_STR
                                              : STORE_PA_NONE;
    if (put(b, &kind, 1))
        return -1;
    if (kind == STORE_PA_INT) {
        int64_t x = jscan_int(e);
        return put(b, &x, 8);
    }
    if (kind == STORE_PA_REAL) {
        double x = jscan_real(e);
        return put(b, &x, 8);
    }
    return kind == STORE_PA_STR ? put_str(b, e, 0) : 0;
}

/* The cells of a profile whose JSON is the object *pp (is_object 1) or is not (0). */
static int encode_profile(const jsval *pp, int is_object, store_buf *b)
{
    jsval p = *pp;
    unsigned char flag = (unsigned char)is_object;
    if (put(b, &flag, 1))
        return -1;
    if (!flag)
        return 0;
    enum { K_BIRTH = STORE_PROFILE_NSTR, K_INTERESTS, K_CONSENT, K_ATTRIBUTES, K__N };
    static const char *const extra[K__N - STORE_PROFILE_NSTR] = {"birth_date", "interests",
                                                                 "consent", "attributes"};
    jsval f[K__N], key, e, t;
    memset(f, 0, sizeof f);
    const char *pos = NULL;
    while (jscan_next(&p, &pos, &key, &e))
        for (int k = 0; k < K__N; k++)
            if (f[k].kind == JS_NONE &&
                jscan_str_eq(&key, k < STORE_PROFILE_NSTR ? store_profile_str_names[k]
                                                          : extra[k - STORE_PROFILE_NSTR])) {
                f[k] = e;
                break;
            }
    for (int k = 0; k < STORE_PROFILE_NSTR; k++)
        if (f[k].kind == JS_STR ? put_str(b, &f[k], 1) : put_varint(b, 0))
            return -1;
    int32_t days = INT32_MIN, d;
    char bbuf[64];
    size_t bn;
    const char *bs = f[K_BIRTH].kind == JS_STR ? jscan_str(&f[K_BIRTH], bbuf, sizeof bbuf, &bn) : NULL;
    if (bs && time_parse_date(bs, bn, &d) == 0)
        days = d;
    if (put(b, &days, 4))
        return -1;
    /* each list in one pass, its count patched in after */
    uint32_t cnt = 0;
    size_t at;
    if (put_count(b, &at))
        return -1;
    pos = NULL;
    while (f[K_INTERESTS].kind == JS_ARR && jscan_next(&f[K_INTERESTS], &pos, NULL, &t)) {
        if (t.kind != JS_STR)
            continue;
        if (put_str(b, &t, 0))
            return -1;
        cnt++;
    }
    set_count(b, at, cnt);
    if (put_count(b, &at))
        return -1;
    cnt = 0;
    pos = NULL;
    while (f[K_CONSENT].kind == JS_OBJ && jscan_next(&f[K_CONSENT], &pos, &key, &e)) {
        int k = consent_index(&key);
        if (k < 0 || e.kind != JS_OBJ)
            continue;
        /* the first status, updated_at and expires_at of the entry */
        jsval st = {0}, up = {0}, ex = {0}, ek, ev;
        const char *ep = NULL;
        while (jscan_next(&e, &ep, &ek, &ev)) {
            jsval *slot = jscan_str_eq(&ek, "status")       ? &st
                          : jscan_str_eq(&ek, "updated_at") ? &up
                          : jscan_str_eq(&ek, "expires_at") ? &ex
                                                            : NULL;
            if (slot && slot->kind == JS_NONE)
                *slot = ev;
        }
        if (st.kind != JS_STR)
            continue;
        unsigned char kg[2] = {(unsigned char)k, (unsigned char)jscan_str_eq(&st, "granted")};
        int64_t ts_up = ts_of(&up), ts_ex = ts_of(&ex);
        if (put(b, kg, 2) || put(b, &ts_up, 8) || put(b, &ts_ex, 8))
            return -1;
        cnt++;
    }
    set_count(b, at, cnt);
    if (put_count(b, &at))
        return -1;
    cnt = 0;
    pos = NULL;
    while (f[K_ATTRIBUTES].kind == JS_OBJ && jscan_next(&f[K_ATTRIBUTES], &pos, &key, &e)) {
        if (put_str(b, &key, 0) || put_val(b, &e))
            return -1;
        cnt++;
    }
    set_count(b, at, cnt);
    return 0;
}

int store_profile_encode(const char *text, size_t n, store_buf *b)
{
    jsval p;
    int is_object = jscan_doc(text, n, &p) == 0 && p.kind == JS_OBJ;
    return encode_profile(&p, is_object, b);
}

int store_profile_encode_canon(const char *text, size_t n, store_buf *b)
{
    if (n < 2 || text[0] != '{' || text[n - 1] != '}')
        return store_profile_encode(text, n, b);
    jsval p = {JS_OBJ, text, n, 0};
    return encode_profile(&p, 1, b);
}

/* Store type codes (store.c): 2 redemption, 3 points, 5 message, 6 survey, 7 referral,
 * 8 view, 9 consent, 10 custom. */
enum { T_SURVEY = 6, T_CONSENT = 9, T__N = 11 };
static const char *const event_keys[T__N][STORE_EVENT_KEYS + 1] = {
    [2] = {"reward_id", "points", NULL},
    [3] = {"points", "reason", NULL},
    [5] = {"campaign_id", "channel", "action", NULL},
    [7] = {"referred_member_id", NULL},
    [8] = {"sku", "category", NULL},
    [10] = {"name", NULL},
};

const char *const *store_event_keys(int type)
{
    static const char *const none[1] = {NULL};
    return type >= 0 && type < T__N ? event_keys[type] : none;
}


/* The cells of an event whose body o is a JSON object (is_object 1) or is not (0). */
static int encode_event(int type, const jsval *po, int is_object, store_buf *b)
{
    jsval o = *po;
    unsigned char flag = (unsigned char)is_object;
    if (put(b, &flag, 1))
        return -1;
    if (!flag)
        return 0;
    if (type == T_CONSENT) {
        static const char *const keys[4] = {"channel", "purpose", "status", "expires_at"};
        jsval f[4];
        jscan_pick(&o, keys, 4, f);
        int ck = f[0].kind == JS_STR ? consent_index(&f[0]) : consent_index(&f[1]);
        unsigned char ks[2] = {(unsigned char)(ck < 0 ? 0xff : ck),
                               (unsigned char)(f[2].kind != JS_STR         ? 0
                                               : jscan_str_eq(&f[2], "granted") ? 1
                                                                           : 2)};
        int64_t ex = ts_of(&f[3]);
        return put(b, ks, 2) || put(b, &ex, 8) ? -1 : 0;
    }
    if (type == T_SURVEY) {
        static const char *const keys[1] = {"answers"};
        jsval ans, key, e;
        jscan_pick(&o, keys, 1, &ans);
        uint32_t cnt = 0;
        size_t at;
        if (put_count(b, &at))
            return -1;
        const char *pos = NULL;
        while (ans.kind == JS_OBJ && jscan_next(&ans, &pos, &key, &e)) {
            if (put_str(b, &key, 0) || put_val(b, &e))
                return -1;
            cnt++;
        }
        set_count(b, at, cnt);
        return 0;
    }
    const char *const *keys = store_event_keys(type);
    int nk = 0;
    while (keys[nk])
        nk++;
    jsval f[STORE_EVENT_KEYS];
    jscan_pick(&o, keys, nk, f);
    for (int k = 0; k < nk; k++)
        if (put_val(b, &f[k]))
            return -1;
    return 0;
}

int store_event_encode(int type, const char *text, size_t n, store_buf *b)
{
    jsval o;
    int is_object = jscan_doc(text, n, &o) == 0 && o.kind == JS_OBJ;
    return encode_event(type, &o, is_object, b);
}

int store_event_encode_canon(int type, const char *text, size_t n, store_buf *b)
{
    if (n < 2 || text[0] != '{' || text[n - 1] != '}')
        return store_event_encode(type, text, n, b);
    jsval o = {JS_OBJ, text, n, 0};
    return encode_event(type, &o, 1, b);
}

/* ---- reading ------------------------------------------------------------------------ */

typedef struct rd {
    const unsigned char *p, *end;
    int bad;
} rd;

static uint64_t get_varint(rd *r)
{
    uint64_t x = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) {
            r->bad = 1;
            return 0;
        }
        unsigned char c = *r->p++;
        x |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80))
            return x;
    }
    r->bad = 1;
    return 0;
}

static const unsigned char *skip(rd *r, uint64_t n)
{
    if (r->bad || (uint64_t)(r->end - r->p) < n) {
        r->bad = 1;
        return r->p;
    }
    const unsigned char *at = r->p;
    r->p += n;
    return at;
}

static uint32_t get_u32(rd *r)
{
    uint32_t x = 0;
    const unsigned char *p = skip(r, 4);
    if (!r->bad)
        memcpy(&x, p, 4);
    return x;
}

/* A value (put_val) into *v. */
static void get_val(rd *r, store_pval *v)
{
    memset(v, 0, sizeof *v);
    const unsigned char *p = skip(r, 1);
    if (r->bad || *p > STORE_PA_STR) {
        r->bad = 1;
        return;
    }
    v->kind = *p;
    if (v->kind == STORE_PA_INT || v->kind == STORE_PA_REAL) {
        p = skip(r, 8);
        if (!r->bad)
            memcpy(v->kind == STORE_PA_INT ? (void *)&v->i : (void *)&v->d, p, 8);
    } else if (v->kind == STORE_PA_STR) {
        uint64_t len = get_varint(r);
        v->s.p = (const char *)skip(r, len);
        v->s.n = (size_t)len;
    }
}

/* Checks n attributes (name, value). */
static void check_attrs(rd *r, uint32_t n)
{
    store_pval v;
    for (uint32_t i = 0; i < n && !r->bad; i++) {
        skip(r, get_varint(r));
        get_val(r, &v);
    }
}

int store_pcells_decode(const unsigned char *rec, size_t n, store_pcells *c)
{
    memset(c, 0, sizeof *c);
    c->birth_days = INT32_MIN;
    rd r = {rec, rec + n, 0};
    if (n < 1 || rec[0] > 1)
        return -1;
    r.p++;
    c->is_object = rec[0];
    if (!c->is_object)
        return n == 1 ? 0 : -1;
    for (int k = 0; k < STORE_PROFILE_NSTR; k++) {
        uint64_t len = get_varint(&r);
        if (len) {
            c->str[k].p = (const char *)skip(&r, len - 1);
            c->str[k].n = (size_t)(len - 1);
        }
    }
    memcpy(&c->birth_days, skip(&r, 4), r.bad ? 0 : 4);
    uint32_t cnt = get_u32(&r);
    c->tags = r.p;
    for (uint32_t i = 0; i < cnt && !r.bad; i++)
        skip(&r, get_varint(&r));
    c->n_tags = cnt;
    c->n_consent = cnt = get_u32(&r);
    c->consent = r.p;
    for (uint32_t i = 0; i < cnt && !r.bad; i++) {
        const unsigned char *e = skip(&r, 18);
        if (!r.bad && e[0] >= STORE_CONSENT_N)
            r.bad = 1;
    }
    c->n_attr = cnt = get_u32(&r);
    c->attr = r.p;
    check_attrs(&r, cnt);
    return r.bad || r.p != r.end ? -1 : 0;
}

int store_ecells_decode(int type, const unsigned char *rec, size_t n, store_ecells *c)
{
    memset(c, 0, sizeof *c);
    c->consent_key = -1;
    c->expires = PATRON_NULL_TS;
    rd r = {rec, rec + n, 0};
    if (n < 1 || rec[0] > 1)
        return -1;
    r.p++;
    c->is_object = rec[0];
    if (!c->is_object)
        return n == 1 ? 0 : -1;
    if (type == T_CONSENT) {
        const unsigned char *p = skip(&r, 10);
        if (!r.bad) {
            c->consent_key = p[0] == 0xff ? -1 : p[0];
            c->consent_status = p[1];
            memcpy(&c->expires, p + 2, 8);
            if ((p[0] != 0xff && p[0] >= STORE_CONSENT_N) || p[1] > 2)
                r.bad = 1;
        }
    } else if (type == T_SURVEY) {
        c->n_attr = get_u32(&r);
        c->attr = r.p;
        check_attrs(&r, c->n_attr);
    } else {
        const char *const *keys = store_event_keys(type);
        for (int k = 0; k < STORE_EVENT_KEYS && keys[k] && !r.bad; k++)
            get_val(&r, &c->val[k]);
    }
    return r.bad || r.p != r.end ? -1 : 0;
}

/* The iterators run over a record store_pcells_decode has checked. */
static uint64_t varint_at(const unsigned char **pos)
{
    uint64_t x = 0;
    for (int shift = 0;; shift += 7) {
        unsigned char c = *(*pos)++;
        x |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80))
            return x;
    }
}

void store_pcells_tag(const unsigned char **pos, store_pstr *tag)
{
    tag->n = (size_t)varint_at(pos);
    tag->p = (const char *)*pos;
    *pos += tag->n;
}

void store_pcells_consent(const unsigned char **pos, int *key, int *granted, int64_t *at,
                          int64_t *expires)
{
    const unsigned char *p = *pos;
    *key = p[0];
    *granted = p[1];
    memcpy(at, p + 2, 8);
    memcpy(expires, p + 10, 8);
    *pos = p + 18;
}

void store_pcells_attr(const unsigned char **pos, store_pstr *name, int *kind, int64_t *i,
                       double *d, store_pstr *s)
{
    store_pcells_tag(pos, name);
    *kind = *(*pos)++;
    if (*kind == STORE_PA_INT) {
        memcpy(i, *pos, 8);
        *pos += 8;
    } else if (*kind == STORE_PA_REAL) {
        memcpy(d, *pos, 8);
        *pos += 8;
    } else if (*kind == STORE_PA_STR) {
        store_pcells_tag(pos, s);
    }
}
