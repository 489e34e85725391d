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

/* A slot: 16 bytes.  The tag is the low 32 bits of the key's hash (0 remapped to 1; a
 * tag of 0 is an empty slot), and the slot's home is tag & (cap - 1), so growing the
 * map needs no key hashed again (cap <= 2^32).  The key is in the arena: offset << 24 |
 * length (keys under 16 MiB, arenas under 1 TiB). */
typedef struct hmap_slot {
    uint32_t tag;
    uint32_t value;
    uint64_t key;
} hmap_slot;

#define HMAP_KEY_BITS 24

typedef struct hmap {
    hmap_slot *slots;
    size_t cap, count;
    char *arena;
    size_t arena_len, arena_cap;
} hmap;

void hmap_init(hmap *m);
/* The key of a used slot (tag != 0) and its length. */
static inline const char *hmap_slot_key(const hmap *m, const hmap_slot *s, size_t *n)
{
    *n = (size_t)(s->key & ((1u << HMAP_KEY_BITS) - 1));
    return m->arena + (s->key >> HMAP_KEY_BITS);
}
void hmap_release(hmap *m);
/* Makes room for n keys in all (key bytes: about key_bytes) without rehashing. */
int hmap_reserve(hmap *m, size_t n, size_t key_bytes);
/* Returns 1 and sets *value when key is present, else 0. */
int hmap_get(const hmap *m, const char *key, size_t n, uint32_t *value);
/* Inserts or overwrites.  0 ok, -1 out of memory (or a key over 16 MiB). */
int hmap_put(hmap *m, const char *key, size_t n, uint32_t value);
/* Looks key up; when absent inserts it with value `fresh`.  Sets *value to the stored
 * value and returns 1 when it was present, 0 when inserted, -1 when out of memory. */
int hmap_get_or_put(hmap *m, const char *key, size_t n, uint32_t fresh, uint32_t *value);
/* The hash the map uses for key (never 0).  The _hashed variants take it precomputed
 * (h must be hmap_hash(key, n)): a caller that probes several maps with one key, or
 * hashes on another thread, hashes once. */
uint64_t hmap_hash(const char *key, size_t n);
int hmap_get_hashed(const hmap *m, const char *key, size_t n, uint64_t h, uint32_t *value);
int hmap_put_hashed(hmap *m, const char *key, size_t n, uint64_t h, uint32_t value);
/* Asks the CPU for the slot where a probe for hash h starts.  Bulk loops over keys that
 * hit big maps at random hash a few keys ahead and prefetch: a probe of a map of
 * millions of keys is a cache (and TLB) miss, most of the cost of grouping a large
 * import before this was done. */
static inline uint32_t hmap_tag(uint64_t h)
{
    return (uint32_t)h ? (uint32_t)h : 1;
}
static inline void hmap_prefetch(const hmap *m, uint64_t h)
{
    if (m->cap) __builtin_prefetch(&m->slots[hmap_tag(h) & (m->cap - 1)]);
}
int hmap_get_or_put_hashed(hmap *m, const char *key, size_t n, uint64_t h, uint32_t fresh,
                           uint32_t *value);

#endif
