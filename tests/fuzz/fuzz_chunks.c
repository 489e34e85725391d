/*
 * fuzz_chunks.c -- libFuzzer harness for the order and line-item chunk decoders
 * (src/store/store_chunks.c).
 *
 * The first input byte picks the decoder (even: line items, odd: orders); the rest is
 * the chunk without its checksum, which the harness appends so that the fuzzer gets
 * past it to the structure checks (a chunk with a wrong checksum is refused before
 * anything else).  The chunk is decoded from a buffer of its exact size, so that
 * AddressSanitizer sees any read outside it.  Invariants checked: the decoder never
 * crashes and returns OK or DAMAGED (with a reason); a chunk that decodes is encoded
 * again in the current format, and that decodes to the same columns.  See README.md to
 * build and run.
 */
#include "store/store_chunks.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static store_items_dec di, di2;
static store_orders_dec od, od2;
static store_buf re;

static void same_items(const store_items *a, const store_items *b)
{
    if (a->n != b->n || a->runs != b->runs ||
        memcmp(a->run_hash, b->run_hash, 8 * (size_t)a->runs) != 0 ||
        memcmp(a->run_len, b->run_len, 4 * (size_t)a->runs) != 0 ||
        memcmp(a->sku, b->sku, 4 * (size_t)a->n) != 0 ||
        memcmp(a->category, b->category, 4 * (size_t)a->n) != 0 ||
        memcmp(a->brand, b->brand, 4 * (size_t)a->n) != 0 ||
        memcmp(a->qty, b->qty, 4 * (size_t)a->n) != 0 ||
        memcmp(a->price, b->price, 8 * (size_t)a->n) != 0)
        abort();
}

static void same_orders(const store_orders *a, const store_orders *b)
{
    size_t n = a->n;
    if (a->n != b->n || memcmp(a->ts, b->ts, 8 * n) != 0 ||
        memcmp(a->amount, b->amount, 8 * n) != 0 || memcmp(a->units, b->units, 8 * n) != 0 ||
        memcmp(a->hash, b->hash, 8 * n) != 0 || memcmp(a->member, b->member, 4 * n) != 0 ||
        memcmp(a->items, b->items, 4 * n) != 0 || memcmp(a->kind, b->kind, n) != 0 ||
        memcmp(a->channel, b->channel, 4 * n) != 0 || memcmp(a->store, b->store, 4 * n) != 0 ||
        memcmp(a->id_off, b->id_off, sizeof(size_t) * (n + 1)) != 0 ||
        memcmp(a->ids, b->ids, a->id_off[n]) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int items = (data[0] & 1) == 0;
    size_t len = size - 1 + 8;
    unsigned char *b = malloc(len);
    memcpy(b, data + 1, size - 1);
    uint64_t sum = XXH3_64bits(b, size - 1);
    memcpy(b + size - 1, &sum, 8);
    const char *why = NULL;
    int r = items ? store_items_decode(b, len, &di, &why)
                  : store_orders_decode(b, len, STORE_OC_ALL, &od, &why);
    if (r == STORE_CHUNK_DAMAGED && !why) abort();
    /* what decodes encodes again, and comes back the same (ids of the old order formats
     * point into b: it is freed after) */
    re.n = 0;
    if (r == STORE_CHUNK_OK && items) {
        if (store_items_encode(&di.c, &re) != 0 ||
            store_items_decode(re.p, re.n, &di2, &why) != STORE_CHUNK_OK)
            abort();
        same_items(&di.c, &di2.c);
    } else if (r == STORE_CHUNK_OK) {
        if (store_orders_encode(&od.c, &re) != 0 ||
            store_orders_decode(re.p, re.n, STORE_OC_ALL, &od2, &why) != STORE_CHUNK_OK)
            abort();
        same_orders(&od.c, &od2.c);
    }
    free(b);
    return 0;
}
