/*
 * jcanon.h -- the canonical text of a JSON value, written from validated text.
 *
 * Patron stores an event as the canonical text of its JSON object: keys sorted, no
 * white space, strings and numbers written as jansson writes them
 * (json_dumps(..., JSON_SORT_KEYS | JSON_COMPACT) of json_loadb's tree).  The text is
 * also what the content hash covers, so any other writer of it must agree with jansson
 * byte for byte.  This one works on text jscan_doc() has validated, without building a
 * tree; values it leaves to jansson (an object with a key twice, whose last value
 * jansson keeps; a key with escapes) make it answer 1, and the caller uses jansson.
 * test_jcanon compares the two on random documents.
 */
#ifndef PATRON_BASE_JCANON_H
#define PATRON_BASE_JCANON_H

#include <stddef.h>

#include "base/jscan.h"

typedef struct jcbuf {
    char *p;    /* NUL-terminated after jcanon(); mem_alloc'd */
    size_t n;   /* bytes written */
    size_t cap;
} jcbuf;

/* Appends the canonical text of v (from validated text) to out.  0, 1 when v holds
 * what is left to jansson (out then holds a partial text: reset n), -1 out of memory. */
int jcanon(const jsval *v, jcbuf *out);

/* Appends s[0..n) as it is; 0, or -1 out of memory (b is left as it was). */
int jcbuf_put(jcbuf *b, const char *s, size_t n);
/* Appends the bytes s[0..n) as a JSON string, escaped as jansson escapes them ('"', '\\',
 * \b \f \n \r \t, other bytes below 0x20 as \u00XX, every other byte as it is: s must
 * be UTF-8 for the text to be JSON); 0, or -1 out of memory. */
int jcbuf_str(jcbuf *b, const char *s, size_t n);

void jcbuf_free(jcbuf *b);

#endif
