/*
 * jscan.c -- reading JSON text in place (see jscan.h).
 *
 * jscan_doc() is a full validating pass (recursive descent, depth limited like
 * jansson's parser); the accessors then trust the text and only skip over values, so a
 * lookup costs a walk over the object's text and nothing else.
 */
#include "base/jscan.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define JSCAN_MAX_DEPTH 2048

/* The first byte in [p, end) that is '"' or '\\', or end.  Sixteen bytes at a time
 * where SSE2 is there (every x86-64); the byte loop is the reference and the tail. */
static const char *find_quote_bs(const char *p, const char *end)
{
#ifdef __SSE2__
    const __m128i q = _mm_set1_epi8('"'), b = _mm_set1_epi8('\\');
    for (; end - p >= 16; p += 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
        unsigned m = (unsigned)_mm_movemask_epi8(
                _mm_or_si128(_mm_cmpeq_epi8(x, q), _mm_cmpeq_epi8(x, b)));
        if (m)
            return p + __builtin_ctz(m);
    }
#endif
    while (p < end && *p != '"' && *p != '\\')
        p++;
    return p;
}

/* The first byte in [p, end) that a string's plain run cannot hold as is: '"', '\\', a
 * control byte or a byte of a multi-byte UTF-8 sequence (>= 0x80); or end. */
static const char *find_special(const char *p, const char *end)
{
#ifdef __SSE2__
    const __m128i q = _mm_set1_epi8('"'), b = _mm_set1_epi8('\\'), sp = _mm_set1_epi8(0x20);
    for (; end - p >= 16; p += 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
        /* signed: bytes >= 0x80 are negative, so "< 0x20" holds them and the controls */
        __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, q), _mm_cmpeq_epi8(x, b)),
                                   _mm_cmplt_epi8(x, sp));
        unsigned m = (unsigned)_mm_movemask_epi8(hit);
        if (m)
            return p + __builtin_ctz(m);
    }
#endif
    while (p < end) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80)
            break;
        p++;
    }
    return p;
}

typedef struct rd {
    const char *p, *end;
} rd;

static void ws(rd *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
        r->p++;
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

/* Length of the UTF-8 sequence at p (valid, shortest form, no surrogates), or 0. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    size_t n;
    unsigned min, cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2, min = 0x80, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3, min = 0x800, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4, min = 0x10000, cp = c & 0x07;
    else
        return 0;
    if ((size_t)(end - p) < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

int jscan_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    while (p < end) {
        size_t k = *p ? utf8_len(p, end) : 0;
        if (!k)
            return 0;
        p += k;
    }
    return 1;
}

/* A string starting after its opening quote; on success r->p is past the closing quote. */
static int v_string(rd *r, int *esc)
{
    *esc = 0;
    while (r->p < r->end) {
        r->p = find_special(r->p, r->end);
        if (r->p >= r->end)
            break;
        unsigned char c = (unsigned char)*r->p;
        if (c == '"') {
            r->p++;
            return 0;
        }
        if (c < 0x20)
            return -1;
        if (c == '\\') {
            *esc = 1;
            if (r->end - r->p < 2)
                return -1;
            char e = r->p[1];
            if (e == 'u') {
                unsigned u, lo;
                if (r->end - r->p < 6 || hex4(r->p + 2, &u))
                    return -1;
                r->p += 6;
                if (u == 0)
                    return -1; /* jansson refuses NUL unless asked to allow it */
                if (u >= 0xDC00 && u <= 0xDFFF)
                    return -1;
                if (u >= 0xD800 && u <= 0xDBFF) {
                    if (r->end - r->p < 6 || r->p[0] != '\\' || r->p[1] != 'u' ||
                        hex4(r->p + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF)
                        return -1;
                    r->p += 6;
                }
                continue;
            }
            if (!strchr("\"\\/bfnrt", e) || e == 0)
                return -1;
            r->p += 2;
            continue;
        }
        size_t n = utf8_len((const unsigned char *)r->p, (const unsigned char *)r->end);
        if (!n)
            return -1;
        r->p += n;
    }
    return -1;
}

/* A number; *kind gets JS_INT or JS_REAL (checked for range as jansson does). */
static int v_number(rd *r, jskind *kind)
{
    const char *s = r->p;
    int real = 0;
    if (r->p < r->end && *r->p == '-')
        r->p++;
    if (r->p >= r->end || *r->p < '0' || *r->p > '9')
        return -1;
    if (*r->p == '0') {
        r->p++;
        if (r->p < r->end && *r->p >= '0' && *r->p <= '9')
            return -1;
    } else {
        while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
            r->p++;
    }
    if (r->p < r->end && *r->p == '.') {
        real = 1;
        r->p++;
        if (r->p >= r->end || *r->p < '0' || *r->p > '9')
            return -1;
        while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
            r->p++;
    }
    if (r->p < r->end && (*r->p == 'e' || *r->p == 'E')) {
        real = 1;
        r->p++;
        if (r->p < r->end && (*r->p == '+' || *r->p == '-'))
            r->p++;
        if (r->p >= r->end || *r->p < '0' || *r->p > '9')
            return -1;
        while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
            r->p++;
    }
    char buf[512];
    size_t n = (size_t)(r->p - s);
    if (n >= sizeof buf)
        return -1; /* longer than any number patron writes */
    memcpy(buf, s, n);
    buf[n] = 0;
    errno = 0;
    if (real) {
        double d = strtod(buf, NULL);
        if (errno == ERANGE && (d == HUGE_VAL || d == -HUGE_VAL))
            return -1;
    } else {
        (void)strtoll(buf, NULL, 10);
        if (errno == ERANGE)
            return -1;
    }
    *kind = real ? JS_REAL : JS_INT;
    return 0;
}

static int lit(rd *r, const char *w, size_t n)
{
    if ((size_t)(r->end - r->p) < n || memcmp(r->p, w, n) != 0)
        return -1;
    r->p += n;
    return 0;
}

static int v_value(rd *r, jsval *out, int depth)
{
    if (depth > JSCAN_MAX_DEPTH)
        return -1;
    ws(r);
    if (r->p >= r->end)
        return -1;
    const char *s = r->p;
    jsval v = {JS_NONE, s, 0, 0};
    switch (*r->p) {
    case '{':
    case '[': {
        char close = *r->p == '{' ? '}' : ']';
        v.kind = close == '}' ? JS_OBJ : JS_ARR;
        r->p++;
        ws(r);
        if (r->p < r->end && *r->p == close) {
            r->p++;
            break;
        }
        for (;;) {
            jsval x;
            if (v.kind == JS_OBJ) {
                ws(r);
                if (r->p >= r->end || *r->p != '"')
                    return -1;
                r->p++;
                int esc;
                if (v_string(r, &esc))
                    return -1;
                ws(r);
                if (r->p >= r->end || *r->p != ':')
                    return -1;
                r->p++;
            }
            if (v_value(r, &x, depth + 1))
                return -1;
            ws(r);
            if (r->p < r->end && *r->p == ',') {
                r->p++;
                continue;
            }
            if (r->p < r->end && *r->p == close) {
                r->p++;
                break;
            }
            return -1;
        }
        break;
    }
    case '"':
        r->p++;
        if (v_string(r, &v.esc))
            return -1;
        v.kind = JS_STR;
        v.p = s + 1;
        v.n = (size_t)(r->p - s - 2);
        *out = v;
        return 0;
    case 't':
        if (lit(r, "true", 4))
            return -1;
        v.kind = JS_TRUE;
        break;
    case 'f':
        if (lit(r, "false", 5))
            return -1;
        v.kind = JS_FALSE;
        break;
    case 'n':
        if (lit(r, "null", 4))
            return -1;
        v.kind = JS_NULL;
        break;
    default:
        if (v_number(r, &v.kind))
            return -1;
        break;
    }
    v.n = (size_t)(r->p - s);
    *out = v;
    return 0;
}

int jscan_doc(const char *text, size_t n, jsval *doc)
{
    rd r = {text, text + n};
    if (v_value(&r, doc, 0))
        return -1;
    ws(&r);
    return r.p == r.end ? 0 : -1;
}

/* ---- walking validated text ---------------------------------------------------------- */

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* Past the closing quote of a string whose text starts after the opening one. */
static const char *skip_str(const char *p, const char *end)
{
    for (;;) {
        p = find_quote_bs(p, end);
        if (p >= end || *p == '"')
            return p + 1;
        p += 2; /* an escape: the next byte is never the closing quote */
    }
}

/* The value at p (validated text) into *v; returns the position after it. */
static const char *read_value(const char *p, const char *end, jsval *v)
{
    p = skip_ws(p, end);
    const char *s = p;
    v->esc = 0;
    switch (*p) {
    case '"': {
        const char *q = p + 1;
        for (;;) {
            q = find_quote_bs(q, end);
            if (q >= end || *q == '"')
                break;
            v->esc = 1;
            q += 2;
        }
        v->kind = JS_STR;
        v->p = p + 1;
        v->n = (size_t)(q - p - 1);
        return q + 1;
    }
    case '{':
    case '[': {
        int depth = 0;
        do {
            if (*p == '"')
                p = skip_str(p + 1, end);
            else {
                if (*p == '{' || *p == '[')
                    depth++;
                else if (*p == '}' || *p == ']')
                    depth--;
                p++;
            }
        } while (depth > 0 && p < end);
        v->kind = *s == '{' ? JS_OBJ : JS_ARR;
        break;
    }
    case 't':
        v->kind = JS_TRUE, p += 4;
        break;
    case 'f':
        v->kind = JS_FALSE, p += 5;
        break;
    case 'n':
        v->kind = JS_NULL, p += 4;
        break;
    default:
        v->kind = JS_INT;
        while (p < end && ((*p >= '0' && *p <= '9') || *p == '-' || *p == '+' || *p == '.' ||
                           *p == 'e' || *p == 'E')) {
            if (*p == '.' || *p == 'e' || *p == 'E')
                v->kind = JS_REAL;
            p++;
        }
        break;
    }
    v->p = s;
    v->n = (size_t)(p - s);
    return p;
}

int jscan_next(const jsval *v, const char **pos, jsval *key, jsval *val)
{
    if (v->kind != JS_OBJ && v->kind != JS_ARR)
        return 0;
    const char *end = v->p + v->n - 1; /* the closing bracket */
    const char *p = *pos ? *pos : v->p + 1;
    p = skip_ws(p, end);
    if (*pos && p < end && *p == ',')
        p = skip_ws(p + 1, end);
    if (p >= end)
        return 0;
    if (v->kind == JS_OBJ) {
        jsval k;
        p = read_value(p, end, &k);
        if (key)
            *key = k;
        p = skip_ws(p, end) + 1; /* the colon */
    }
    *pos = read_value(p, end, val);
    return 1;
}

static size_t utf8_put(unsigned cp, char *o)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

const char *jscan_str(const jsval *v, char *buf, size_t cap, size_t *len)
{
    if (v->kind != JS_STR || !v->esc) {
        *len = v->kind == JS_STR ? v->n : 0;
        return v->kind == JS_STR ? v->p : "";
    }
    size_t w = 0;
    const char *p = v->p, *end = v->p + v->n;
    while (p < end) {
        char tmp[4];
        size_t k = 1;
        if (*p != '\\') {
            tmp[0] = *p++;
        } else {
            char e = p[1];
            p += 2;
            switch (e) {
            case 'b': tmp[0] = '\b'; break;
            case 'f': tmp[0] = '\f'; break;
            case 'n': tmp[0] = '\n'; break;
            case 'r': tmp[0] = '\r'; break;
            case 't': tmp[0] = '\t'; break;
            case 'u': {
                unsigned u = 0, lo = 0;
                hex4(p, &u);
                p += 4;
                if (u >= 0xD800 && u <= 0xDBFF) {
                    hex4(p + 2, &lo);
                    p += 6;
                    u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
                }
                k = utf8_put(u, tmp);
                break;
            }
            default: tmp[0] = e; break;
            }
        }
        if (w + k >= cap)
            break;
        memcpy(buf + w, tmp, k);
        w += k;
    }
    if (cap)
        buf[w] = 0;
    *len = w;
    return buf;
}

const char *jscan_cstr(const jsval *v, char *buf, size_t cap)
{
    size_t n;
    const char *s = jscan_str(v, buf, cap, &n);
    if (s != buf && cap) {
        if (n >= cap)
            n = cap - 1;
        memcpy(buf, s, n);
        buf[n] = 0;
    }
    return buf;
}

int jscan_str_eq(const jsval *v, const char *s)
{
    if (v->kind != JS_STR)
        return 0;
    size_t n = strlen(s);
    if (!v->esc)
        return v->n == n && memcmp(v->p, s, n) == 0;
    char buf[256];
    size_t m;
    const char *t = jscan_str(v, buf, sizeof buf, &m);
    return m == n && m < sizeof buf - 1 && memcmp(t, s, n) == 0;
}

jsval jscan_get(const jsval *obj, const char *key)
{
    jsval none = {JS_NONE, "", 0, 0}, k, v;
    const char *pos = NULL;
    if (obj->kind != JS_OBJ)
        return none;
    while (jscan_next(obj, &pos, &k, &v))
        if (jscan_str_eq(&k, key))
            return v;
    return none;
}

void jscan_pick(const jsval *obj, const char *const *keys, int nk, jsval *out)
{
    for (int k = 0; k < nk; k++)
        out[k] = (jsval){JS_NONE, "", 0, 0};
    jsval key, val;
    const char *pos = NULL;
    int left = nk;
    if (obj->kind != JS_OBJ)
        return;
    while (left > 0 && jscan_next(obj, &pos, &key, &val))
        for (int k = 0; k < nk; k++)
            if (out[k].kind == JS_NONE && jscan_str_eq(&key, keys[k])) {
                out[k] = val;
                left--;
                break;
            }
}

int64_t jscan_int(const jsval *v)
{
    char buf[64];
    size_t n = v->n < sizeof buf - 1 ? v->n : sizeof buf - 1;
    memcpy(buf, v->p, n);
    buf[n] = 0;
    return strtoll(buf, NULL, 10);
}

double jscan_real(const jsval *v)
{
    char buf[512];
    size_t n = v->n < sizeof buf - 1 ? v->n : sizeof buf - 1;
    memcpy(buf, v->p, n);
    buf[n] = 0;
    return v->kind == JS_INT ? (double)strtoll(buf, NULL, 10) : strtod(buf, NULL);
}
