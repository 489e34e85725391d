/*
 * strdict.c -- string <-> dense code dictionary on top of hmap.
 */
#include "base/strdict.h"

#include "base/mem.h"

#include <string.h>

void strdict_init(strdict *d)
{
    memset(d, 0, sizeof *d);
    hmap_init(&d->map);
}

void strdict_release(strdict *d)
{
    hmap_release(&d->map);
    mem_free(d->off);
    mem_free(d->len);
    memset(d, 0, sizeof *d);
}

uint32_t strdict_find(const strdict *d, const char *s, size_t n)
{
    uint32_t code;
    return hmap_get(&d->map, s, n, &code) ? code : 0;
}

uint32_t strdict_intern(strdict *d, const char *s, size_t n)
{
    uint32_t code;
    if (hmap_get(&d->map, s, n, &code))
        return code;
    size_t c1 = d->cap, c2 = d->cap;
    if (MEM_GROW(d->off, c1, (size_t)d->n + 2) || MEM_GROW(d->len, c2, (size_t)d->n + 2))
        return 0;
    d->cap = c1 < c2 ? c1 : c2;
    code = d->n + 1;
    if (hmap_put(&d->map, s, n, code) != 0)
        return 0;
    /* Find where the map copied the key: the slot that now holds it. */
    size_t mask = d->map.cap - 1;
    for (size_t i = hmap_tag(hmap_hash(s, n)) & mask;; i = (i + 1) & mask) {
        const hmap_slot *sl = &d->map.slots[i];
        size_t kn;
        const char *k = hmap_slot_key(&d->map, sl, &kn);
        if (sl->tag && sl->value == code && kn == n && memcmp(k, s, n) == 0) {
            d->off[code] = (uint64_t)(k - d->map.arena);
            break;
        }
    }
    d->len[code] = (uint32_t)n;
    d->n = code;
    return code;
}

const char *strdict_str(const strdict *d, uint32_t code, size_t *n)
{
    if (code == 0 || code > d->n) {
        *n = 0;
        return "";
    }
    *n = d->len[code];
    return d->map.arena + d->off[code];
}
