/*
 * hmap.c -- linear-probing string map.  A 16-byte slot holds 32 bits of the key's hash
 * (its tag, which also gives its home slot), the key's place in the arena and the value,
 * so a probe touches one cache line and most probes compare an integer, not bytes.  The
 * load factor stays at most 7/10: at M an import's order-id map (4.6M keys) takes 128 MB
 * instead of the 384 MB of 24-byte slots under 1/2, and fresh memory is costly here
 * (page faults and zeroing: about 1-2 s per GB on the benchmark machine).
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

/* The most keys a map of cap slots holds. */
static size_t max_count(size_t cap)
{
    return cap / 10 * 7 + cap % 10 * 7 / 10;
}

static size_t find_slot(const hmap *m, const char *key, size_t n, uint64_t h)
{
    uint32_t tag = hmap_tag(h);
    size_t mask = m->cap - 1, i = tag & mask;
    uint64_t len = n;
    for (;;) {
        const hmap_slot *s = &m->slots[i];
        if (s->tag == 0)
            return i;
        if (s->tag == tag && (s->key & ((1u << HMAP_KEY_BITS) - 1)) == len &&
            memcmp(m->arena + (s->key >> HMAP_KEY_BITS), key, n) == 0)
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
    if (m->slots[i].tag == 0)
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
        if (!m->slots[i].tag)
            continue;
        size_t j = m->slots[i].tag & (ncap - 1);
        while (ns[j].tag)
            j = (j + 1) & (ncap - 1);
        ns[j] = m->slots[i];
    }
    mem_free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    return 0;
}

static int grow(hmap *m)
{
    if (m->cap > ((size_t)1 << 31))
        return -1; /* home slots come from 32-bit tags */
    return rehash(m, m->cap ? m->cap * 2 : 64);
}

int hmap_reserve(hmap *m, size_t n, size_t key_bytes)
{
    size_t cap = m->cap ? m->cap : 64;
    while (max_count(cap) < m->count + n) {
        if (cap > ((size_t)1 << 31))
            return -1; /* home slots come from 32-bit tags */
        cap *= 2;
    }
    if (cap != m->cap && rehash(m, cap) != 0)
        return -1;
    return MEM_GROW(m->arena, m->arena_cap, m->arena_len + key_bytes + 1);
}

static int insert_at(hmap *m, size_t i, const char *key, size_t n, uint64_t h, uint32_t value)
{
    if (n >= (1u << HMAP_KEY_BITS) || m->arena_len >= ((uint64_t)1 << (64 - HMAP_KEY_BITS)) ||
        MEM_GROW(m->arena, m->arena_cap, m->arena_len + n + 1) != 0)
        return -1;
    memcpy(m->arena + m->arena_len, key, n);
    hmap_slot *s = &m->slots[i];
    s->tag = hmap_tag(h);
    s->key = (uint64_t)m->arena_len << HMAP_KEY_BITS | n;
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
    if (m->count + 1 > max_count(m->cap) && grow(m) != 0) return -1;
    size_t i = find_slot(m, key, n, h);
    if (m->slots[i].tag) {
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
    if (m->count + 1 > max_count(m->cap) && grow(m) != 0) return -1;
    size_t i = find_slot(m, key, n, h);
    if (m->slots[i].tag) {
        m->slots[i].value = value;
        return 0;
    }
    return insert_at(m, i, key, n, h, value);
}
