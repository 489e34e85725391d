/*
 * rsort.c -- a stable radix sort of fixed-size records (see rsort.h).
 */
#include "base/rsort.h"

#include <stdint.h>
#include <string.h>

/* Field k of record r as an unsigned number ordered like the field's values. */
static uint64_t key_of(const unsigned char *r, const rsort_key *k)
{
    uint64_t v;
    switch (k->bytes) {
    case 1: {
        uint8_t x;
        memcpy(&x, r + k->off, 1);
        v = x;
        break;
    }
    case 2: {
        uint16_t x;
        memcpy(&x, r + k->off, 2);
        v = x;
        break;
    }
    case 4: {
        uint32_t x;
        memcpy(&x, r + k->off, 4);
        v = x;
        break;
    }
    default:
        memcpy(&v, r + k->off, 8);
        break;
    }
    if (k->is_signed) /* the sign bit flipped: negatives first */
        v ^= UINT64_C(1) << (8 * (unsigned)k->bytes - 1);
    return v;
}

void *rsort(void *a, void *tmp, size_t n, size_t sz, const rsort_key *keys, int nkeys)
{
    unsigned char *src = a, *dst = tmp;
    if (n < 2)
        return a;
    for (int k = nkeys - 1; k >= 0; k--) {
        for (int byte = 0; byte < keys[k].bytes; byte++) {
            unsigned shift = 8 * (unsigned)byte;
            size_t count[256] = {0};
            for (size_t i = 0; i < n; i++)
                count[(key_of(src + i * sz, &keys[k]) >> shift) & 0xff]++;
            if (count[(key_of(src, &keys[k]) >> shift) & 0xff] == n)
                continue; /* every record has this byte */
            size_t at = 0;
            for (int d = 0; d < 256; d++) {
                size_t c = count[d];
                count[d] = at;
                at += c;
            }
            for (size_t i = 0; i < n; i++) {
                const unsigned char *r = src + i * sz;
                memcpy(dst + sz * count[(key_of(r, &keys[k]) >> shift) & 0xff]++, r, sz);
            }
            unsigned char *t = src;
            src = dst;
            dst = t;
        }
    }
    return src;
}
