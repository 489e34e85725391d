/*
 * jscan.h -- reading JSON text in place: no allocation, no tree.
 *
 * The member view reads millions of stored profiles and events, each a small object
 * whose few keys it needs.  Building a jansson tree for each cost most of the view build
 * (allocation per value); this reader validates a document once (jscan_doc) and then
 * answers lookups and iterations by walking the text.  It accepts what jansson's
 * json_loadb accepts for the text patron stores (RFC 8259; integers must fit int64,
 * reals must be finite, no \u0000), so both readers agree on every stored value;
 * jansson stays the writer and the importers' parser.
 *
 * A jsval is a view into the caller's text: valid while the text is.
 */
#ifndef PATRON_BASE_JSCAN_H
#define PATRON_BASE_JSCAN_H

#include <stddef.h>
#include <stdint.h>

typedef enum jskind { JS_NONE, JS_NULL, JS_FALSE, JS_TRUE, JS_INT, JS_REAL, JS_STR, JS_ARR, JS_OBJ } jskind;

typedef struct jsval {
    jskind kind;   /* JS_NONE: absent (a failed lookup) */
    const char *p; /* the value's text: a string without its quotes */
    size_t n;
    int esc;       /* JS_STR: the text holds escapes (read it with jscan_str) */
} jsval;

/* Validates text[0..n) as one JSON value (surrounding white space allowed) into *doc.
 * 0, or -1 when it is not JSON that jansson would load. */
int jscan_doc(const char *text, size_t n, jsval *doc);

/* The value of key in object obj (first match); kind JS_NONE when obj is not an object
 * or has no such key. */
jsval jscan_get(const jsval *obj, const char *key);

/* The values of keys[0..nk) in object obj, in one walk (first match of each; JS_NONE
 * for a key it lacks) into out[0..nk). */
void jscan_pick(const jsval *obj, const char *const *keys, int nk, jsval *out);

/* Iterates an object's members or an array's elements: start with *pos = NULL; each
 * call gives the next (key is left untouched for arrays) and returns 1, or 0 at the end
 * (or when v is neither an object nor an array). */
int jscan_next(const jsval *v, const char **pos, jsval *key, jsval *val);

/* A string's bytes: without escapes a view into the text, else decoded into buf (cap
 * bytes; longer strings are cut).  The result is not NUL-terminated unless buf is used,
 * in which case buf[*len] = 0. */
const char *jscan_str(const jsval *v, char *buf, size_t cap, size_t *len);
/* The string as a NUL-terminated C string in buf (cut at cap - 1). */
const char *jscan_cstr(const jsval *v, char *buf, size_t cap);
/* 1 when v is a string equal to s. */
int jscan_str_eq(const jsval *v, const char *s);

/* 1 when s[0..n) is UTF-8 a JSON string can hold as it is (shortest forms, no
 * surrogates, no NUL), else 0. */
int jscan_utf8_valid(const char *s, size_t n);

int64_t jscan_int(const jsval *v);  /* JS_INT */
double jscan_real(const jsval *v);  /* JS_REAL or JS_INT */

#endif
