/*
 * rsort.h -- a stable radix sort of fixed-size records by integer fields.
 *
 * For the lists live segments sort on every clock advance (members due, changes by
 * time): tens of thousands of records, where qsort's comparator calls were a fifth of
 * the work.  Least significant digit first, a byte per pass; a pass over a byte that
 * every record shares is skipped, so times within one day cost three passes, not eight.
 * test_rsort compares it with qsort.
 */
#ifndef PATRON_BASE_RSORT_H
#define PATRON_BASE_RSORT_H

#include <stddef.h>

/* A key field: `bytes` (1, 2, 4 or 8) at offset `off` in each record, an unsigned or a
 * two's complement signed integer in the machine's byte order. */
typedef struct rsort_key {
    size_t off;
    int bytes;
    int is_signed;
} rsort_key;

/* Sorts the n records of sz bytes at a by keys[0], then keys[1] among equals, and so
 * on (nkeys of them), stably, using tmp (room for n records).  Returns where the sorted
 * records are: a or tmp. */
void *rsort(void *a, void *tmp, size_t n, size_t sz, const rsort_key *keys, int nkeys);

#endif
