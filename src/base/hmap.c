/*
 * hmap.c -- linear-probing string map.  A slot holds the full 64-bit hash (never 0: a
 * zero hash is remapped to 1), the key's place in the arena and the value, so a probe
 * touches one cache line and most probes compare an integer, not bytes.  The load
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
    mem_free(m->slots);
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
        const hmap_slot *s = &m->slots[i];
        if (s->hash == 0)
            return i;
        if (s->hash == h && s->key_len == n && memcmp(m->arena + s->key_off, key, n) == 0)
            return i;
        i = (i + 1) & mask;
    }
}

int hmap_get(const hmap *m, const char *key, size_t n, uint32_t *value)
{
    return hmap_get_hashed(m, key, n, hmap_hash(key, n), value);
}

int hmap_get_hashed(const hmap *m, const char *key, size_t n, uint64_t h, uint32_t *value)
{
    if (m->cap == 0)
        return 0;
    size_t i = find_slot(m, key, n, h);
    if (m->slots[i].hash == 0)
        return 0;
    *value = m->slots[i].value;
    return 1;
}

static int rehash(hmap *m, size_t ncap)
{
    hmap_slot *ns = mem_calloc(ncap, sizeof *ns);
    if (!ns)
        return -1;
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slots[i].hash)
            continue;
        size_t j = (size_t)m->slots[i].hash & (ncap - 1);
        while (ns[j].hash)
            j = (j + 1) & (ncap - 1);
        ns[j] = m->slots[i];
    }
    mem_free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    return 0;
}

int hmap_reserve(hmap *m, size_t n, size_t key_bytes)
{
    size_t cap = m->cap ? m->cap : 64;
    while (cap < 2 * (m->count + n))
        cap *= 2;
    if (cap != m->cap && rehash(m, cap) != 0)
        return -1;
    return MEM_GROW(m->arena, m->arena_cap, m->arena_len + key_bytes + 1);
}

static int insert_at(hmap *m, size_t i, const char *key, size_t n, uint64_t h, uint32_t value)
{
    if (n >= (1u << 24) || MEM_GROW(m->arena, m->arena_cap, m->arena_len + n + 1) != 0)
        return -1;
    memcpy(m->arena + m->arena_len, key, n);
    hmap_slot *s = &m->slots[i];
    s->hash = h;
    s->key_off = m->arena_len;
    s->key_len = (uint32_t)n;
    s->value = value;
    m->arena_len += n;
    m->count++;
    return 0;
}

int hmap_get_or_put(hmap *m, const char *key, size_t n, uint32_t fresh, uint32_t *value)
{
    return hmap_get_or_put_hashed(m, key, n, hmap_hash(key, n), fresh, value);
}

int hmap_get_or_put_hashed(hmap *m, const char *key, size_t n, uint64_t h, uint32_t fresh,
                           uint32_t *value)
{
    if ((m->count + 1) * 2 > m->cap && rehash(m, m->cap ? m->cap * 2 : 64) != 0) return -1;
    size_t i = find_slot(m, key, n, h);
    if (m->slots[i].hash) {
        *value = m->slots[i].value;
        return 1;
    }
    if (insert_at(m, i, key, n, h, fresh) != 0)
        return -1;
    *value = fresh;
    return 0;
}

int hmap_put(hmap *m, const char *key, size_t n, uint32_t value)
{
    return hmap_put_hashed(m, key, n, hmap_hash(key, n), value);
}

int hmap_put_hashed(hmap *m, const char *key, size_t n, uint64_t h, uint32_t value)
{
    if ((m->count + 1) * 2 > m->cap && rehash(m, m->cap ? m->cap * 2 : 64) != 0) return -1;
    size_t i = find_slot(m, key, n, h);
    if (m->slots[i].hash) {
        m->slots[i].value = value;
        return 0;
    }
    return insert_at(m, i, key, n, h, value);
}
