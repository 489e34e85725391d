/*
 * hmap.h -- an open-addressing hash map from byte strings to uint32 values.
 *
 * Keys are copied into the map's own arena; lookups take (pointer, length) views so
 * fields straight out of the CSV reader need no copy.  Used for member ids, order ids
 * and dictionaries.  Not thread-safe.
 */
#ifndef PATRON_BASE_HMAP_H
#define PATRON_BASE_HMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct hmap {
    uint64_t *hashes;   /* 0 = empty slot */
    uint32_t *values;
    uint64_t *key_off;  /* offset of key in arena */
    uint32_t *key_len;
    size_t cap, count;
    char *arena;
    size_t arena_len, arena_cap;
} hmap;

void hmap_init(hmap *m);
void hmap_release(hmap *m);
/* Returns 1 and sets *value when key is present, else 0. */
int hmap_get(const hmap *m, const char *key, size_t n, uint32_t *value);
/* Inserts or overwrites.  0 ok, -1 out of memory. */
int hmap_put(hmap *m, const char *key, size_t n, uint32_t value);
uint64_t hmap_hash(const char *key, size_t n);

#endif
