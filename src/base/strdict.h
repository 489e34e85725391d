/*
 * strdict.h -- a string dictionary: dense codes 1..n for distinct strings, and back.
 *
 * Code 0 is never assigned: columns use it for "no value".  Strings live in the hash
 * map's arena; strdict_str() returns a view that stays valid until the next intern.
 */
#ifndef PATRON_BASE_STRDICT_H
#define PATRON_BASE_STRDICT_H

#include "base/hmap.h"

typedef struct strdict {
    hmap map;
    uint64_t *off; /* code -> key offset in map.arena (index 0 unused) */
    uint32_t *len;
    size_t cap;
    uint32_t n; /* codes in use: 1..n */
} strdict;

void strdict_init(strdict *d);
void strdict_release(strdict *d);
/* The code of s, adding it when new; 0 when out of memory. */
uint32_t strdict_intern(strdict *d, const char *s, size_t n);
/* The code of s, or 0 when the dictionary does not hold it. */
uint32_t strdict_find(const strdict *d, const char *s, size_t n);
/* The string of a code (1..n); *n gets its length. */
const char *strdict_str(const strdict *d, uint32_t code, size_t *n);

#endif
