/*
 * hmap.c -- linear-probing string map.  Slots hold the full 64-bit hash (never 0: a
 * zero hash is remapped to 1) so most probes compare an integer, not bytes; the load
 * factor stays under 1/2.
 */
#include "base/hmap.h"

#include "base/mem.h"

#include <string.h>
#include <xxhash.h>

void hmap_init(hmap *m)
{
    memset(m, 0, sizeof *m);
}

void hmap_release(hmap *m)
{
    mem_free(m->hashes);
    mem_free(m->values);
    mem_free(m->key_off);
    mem_free(m->key_len);
    mem_free(m->arena);
    memset(m, 0, sizeof *m);
}

uint64_t hmap_hash(const char *key, size_t n)
{
    uint64_t h = XXH3_64bits(key, n);
    return h ? h : 1;
}

static size_t find_slot(const hmap *m, const char *key, size_t n, uint64_t h)
{
    size_t mask = m->cap - 1, i = (size_t)h & mask;
    for (;;) {
        if (m->hashes[i] == 0)
            return i;
        if (m->hashes[i] == h && m->key_len[i] == n && memcmp(m->arena + m->key_off[i], key, n) == 0)
            return i;
        i = (i + 1) & mask;
    }
}

int hmap_get(const hmap *m, const char *key, size_t n, uint32_t *value)
{
    if (m->cap == 0)
        return 0;
    size_t i = find_slot(m, key, n, hmap_hash(key, n));
    if (m->hashes[i] == 0)
        return 0;
    *value = m->values[i];
    return 1;
}

static int rehash(hmap *m, size_t ncap)
{
    hmap n = *m;
    n.cap = ncap;
    n.hashes = mem_calloc(ncap, sizeof *n.hashes);
    n.values = mem_alloc_array(ncap, sizeof *n.values);
    n.key_off = mem_alloc_array(ncap, sizeof *n.key_off);
    n.key_len = mem_alloc_array(ncap, sizeof *n.key_len);
    if (!n.hashes || !n.values || !n.key_off || !n.key_len) {
        mem_free(n.hashes);
        mem_free(n.values);
        mem_free(n.key_off);
        mem_free(n.key_len);
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->hashes[i])
            continue;
        size_t j = (size_t)m->hashes[i] & (ncap - 1);
        while (n.hashes[j])
            j = (j + 1) & (ncap - 1);
        n.hashes[j] = m->hashes[i];
        n.values[j] = m->values[i];
        n.key_off[j] = m->key_off[i];
        n.key_len[j] = m->key_len[i];
    }
    mem_free(m->hashes);
    mem_free(m->values);
    mem_free(m->key_off);
    mem_free(m->key_len);
    *m = n;
    return 0;
}

int hmap_put(hmap *m, const char *key, size_t n, uint32_t value)
{
    if ((m->count + 1) * 2 > m->cap && rehash(m, m->cap ? m->cap * 2 : 64) != 0)
        return -1;
    uint64_t h = hmap_hash(key, n);
    size_t i = find_slot(m, key, n, h);
    if (m->hashes[i]) {
        m->values[i] = value;
        return 0;
    }
    if (MEM_GROW(m->arena, m->arena_cap, m->arena_len + n + 1) != 0)
        return -1;
    memcpy(m->arena + m->arena_len, key, n);
    m->hashes[i] = h;
    m->values[i] = value;
    m->key_off[i] = m->arena_len;
    m->key_len[i] = (uint32_t)n;
    m->arena_len += n;
    m->count++;
    return 0;
}
