/*
 * jcanon.c -- the canonical text of a JSON value (see jcanon.h).
 *
 * What jansson writes, with JSON_SORT_KEYS | JSON_COMPACT and no other flag:
 *   objects   keys in byte order (memcmp, then length), "k":v joined by ','
 *   strings   the decoded bytes, with '"' '\\' \b \f \n \r \t escaped as such and any
 *             other byte below 0x20 as \u00XX; everything else (UTF-8, '/') as is
 *   integers  decimal
 *   reals     "%.17g"; ".0" appended when that has neither '.' nor 'e'; the exponent
 *             without '+' and without leading zeros
 */
#include "base/jcanon.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"

/* Room for more bytes and the closing NUL. */
static int reserve(jcbuf *b, size_t more)
{
    return MEM_GROW(b->p, b->cap, b->n + more + 1);
}

static void put(jcbuf *b, const char *s, size_t n)
{
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

int jcbuf_put(jcbuf *b, const char *s, size_t n)
{
    if (reserve(b, n))
        return -1;
    put(b, s, n);
    b->p[b->n] = 0;
    return 0;
}

int jcbuf_str(jcbuf *b, const char *s, size_t n)
{
    if (reserve(b, 6 * n + 2))
        return -1;
    static const char hex[] = "0123456789ABCDEF";
    b->p[b->n++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char *o = b->p + b->n;
        if (c >= 0x20 && c != '"' && c != '\\') {
            *o = (char)c;
            b->n++;
            continue;
        }
        o[0] = '\\';
        switch (c) {
        case '"': o[1] = '"'; break;
        case '\\': o[1] = '\\'; break;
        case '\b': o[1] = 'b'; break;
        case '\f': o[1] = 'f'; break;
        case '\n': o[1] = 'n'; break;
        case '\r': o[1] = 'r'; break;
        case '\t': o[1] = 't'; break;
        default:
            o[1] = 'u', o[2] = '0', o[3] = '0', o[4] = hex[c >> 4], o[5] = hex[c & 15];
            b->n += 4;
            break;
        }
        b->n += 2;
    }
    b->p[b->n++] = '"';
    b->p[b->n] = 0;
    return 0;
}

static int put_string(jcbuf *b, const jsval *v)
{
    if (!v->esc) { /* nothing in it needs escaping: validated text has no raw control byte */
        if (reserve(b, v->n + 2))
            return -1;
        b->p[b->n++] = '"';
        put(b, v->p, v->n);
        b->p[b->n++] = '"';
        return 0;
    }
    char stack[256], *tmp = v->n < sizeof stack ? stack : mem_alloc(v->n + 1);
    if (!tmp)
        return -1;
    size_t n;
    const char *s = jscan_str(v, tmp, v->n + 1, &n); /* decoded is never longer */
    int rc = jcbuf_str(b, s, n);
    if (tmp != stack)
        mem_free(tmp);
    return rc;
}

static int put_int(jcbuf *b, const jsval *v)
{
    if (reserve(b, 24))
        return -1;
    long long x = (long long)jscan_int(v);
    unsigned long long u = x < 0 ? 0ULL - (unsigned long long)x : (unsigned long long)x;
    char d[24];
    int k = 0;
    do {
        d[k++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (x < 0)
        b->p[b->n++] = '-';
    while (k)
        b->p[b->n++] = d[--k];
    return 0;
}

static int put_real(jcbuf *b, const jsval *v)
{
    char s[64];
    int len = snprintf(s, sizeof s - 3, "%.17g", jscan_real(v));
    if (len < 0 || (size_t)len >= sizeof s - 3)
        return 1;
    size_t n = (size_t)len;
    if (!strchr(s, '.') && !strchr(s, 'e'))
        s[n++] = '.', s[n++] = '0', s[n] = 0;
    char *e = strchr(s, 'e');
    if (e) { /* "1e+07" -> "1e7", "1e-07" -> "1e-7" */
        char *start = e + 1, *end = e + 2;
        if (*start == '-')
            start++;
        while (*end == '0')
            end++;
        if (end != start) {
            memmove(start, end, (size_t)(s + n - end) + 1);
            n -= (size_t)(end - start);
        }
    }
    if (reserve(b, n))
        return -1;
    put(b, s, n);
    return 0;
}

typedef struct member {
    jsval k, v;
} member;

static int key_cmp(const member *a, const member *b)
{
    size_t n = a->k.n < b->k.n ? a->k.n : b->k.n;
    int c = memcmp(a->k.p, b->k.p, n);
    return c ? c : (a->k.n > b->k.n) - (a->k.n < b->k.n);
}

static int cmp_member(const void *a, const void *b)
{
    return key_cmp(a, b);
}

static int put_value(const jsval *v, jcbuf *b);

static int put_object(const jsval *v, jcbuf *b)
{
    member stack[32], *m = stack;
    size_t n = 0, cap = sizeof stack / sizeof *stack;
    const char *pos = NULL;
    jsval k, x;
    int rc = 0;
    while (jscan_next(v, &pos, &k, &x)) {
        if (k.esc) {
            rc = 1; /* sorted by their decoded bytes: left to jansson */
            goto out;
        }
        if (n == cap) {
            member *g = mem_alloc_array(cap * 2, sizeof *g);
            if (!g) {
                rc = -1;
                goto out;
            }
            memcpy(g, m, n * sizeof *m);
            if (m != stack)
                mem_free(m);
            m = g;
            cap *= 2;
        }
        m[n].k = k;
        m[n++].v = x;
    }
    if (n <= 16) { /* the usual small object */
        for (size_t i = 1; i < n; i++) {
            member t = m[i];
            size_t j = i;
            for (; j > 0 && key_cmp(&m[j - 1], &t) > 0; j--)
                m[j] = m[j - 1];
            m[j] = t;
        }
    } else {
        qsort(m, n, sizeof *m, cmp_member);
    }
    for (size_t i = 1; i < n; i++)
        if (key_cmp(&m[i - 1], &m[i]) == 0) {
            rc = 1; /* a key twice: jansson keeps the last value */
            goto out;
        }
    if (reserve(b, 1)) {
        rc = -1;
        goto out;
    }
    b->p[b->n++] = '{';
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (reserve(b, m[i].k.n + 4)) {
            rc = -1;
            break;
        }
        if (i)
            b->p[b->n++] = ',';
        b->p[b->n++] = '"';
        put(b, m[i].k.p, m[i].k.n);
        b->p[b->n++] = '"';
        b->p[b->n++] = ':';
        rc = put_value(&m[i].v, b);
    }
    if (rc == 0 && reserve(b, 1) == 0)
        b->p[b->n++] = '}';
    else if (rc == 0)
        rc = -1;
out:
    if (m != stack)
        mem_free(m);
    return rc;
}

static int put_array(const jsval *v, jcbuf *b)
{
    const char *pos = NULL;
    jsval x;
    int rc = reserve(b, 1);
    if (rc)
        return rc;
    b->p[b->n++] = '[';
    for (int first = 1; rc == 0 && jscan_next(v, &pos, NULL, &x); first = 0) {
        if (!first) {
            if (reserve(b, 1))
                return -1;
            b->p[b->n++] = ',';
        }
        rc = put_value(&x, b);
    }
    if (rc == 0 && reserve(b, 1))
        return -1;
    if (rc == 0)
        b->p[b->n++] = ']';
    return rc;
}

static int put_lit(jcbuf *b, const char *s)
{
    size_t n = strlen(s);
    if (reserve(b, n))
        return -1;
    put(b, s, n);
    return 0;
}

static int put_value(const jsval *v, jcbuf *b)
{
    switch (v->kind) {
    case JS_OBJ: return put_object(v, b);
    case JS_ARR: return put_array(v, b);
    case JS_STR: return put_string(b, v);
    case JS_INT: return put_int(b, v);
    case JS_REAL: return put_real(b, v);
    case JS_TRUE: return put_lit(b, "true");
    case JS_FALSE: return put_lit(b, "false");
    case JS_NULL: return put_lit(b, "null");
    default: return 1;
    }
}

int jcanon(const jsval *v, jcbuf *out)
{
    int rc = put_value(v, out);
    if (rc == 0 && out->p)
        out->p[out->n] = 0; /* reserve() always leaves room for it */
    return rc;
}

void jcbuf_free(jcbuf *b)
{
    mem_free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}
