/*
 * mem.h -- the one allocation seam.  Every module allocates through mem_*; tests can
 * install a hook that fails the Nth allocation (fault injection).  Sizes are checked:
 * mem_alloc_array() refuses a product that overflows size_t.
 */
#ifndef PATRON_BASE_MEM_H
#define PATRON_BASE_MEM_H

#include <stddef.h>

void *mem_alloc(size_t n);
void *mem_calloc(size_t count, size_t size);
void *mem_alloc_array(size_t count, size_t size);
void *mem_realloc(void *p, size_t n);
void *mem_realloc_array(void *p, size_t count, size_t size);
void mem_free(void *p);
char *mem_strndup(const char *s, size_t n);
char *mem_strdup(const char *s);

/* Faults in bytes [from, to) of p (whole pages, outward) for writing, contents
 * unchanged: a thread with time to spare takes the page faults of memory another will
 * write soon.  Does nothing where the kernel cannot (it is only a hint). */
void mem_prefault(void *p, size_t from, size_t to);

/* Fault injection: the nth allocation from now on (1-based) fails; 0 disables. */
void mem_fail_after(long nth);

/* Grows *p (an array of elem-sized items with capacity *cap) to hold at least need
 * items, doubling.  Returns 0, or -1 when out of memory (the array is unchanged). */
int mem_grow(void **p, size_t *cap, size_t need, size_t elem);
/* 0 when arr has room for need elements (growing it when not), -1 out of memory.  The
 * common case, room already there, costs one comparison (need and cap are read twice). */
#define MEM_GROW(arr, cap, need) \
    ((size_t)(need) <= (size_t)(cap) ? 0 : mem_grow((void **)&(arr), &(cap), (need), sizeof *(arr)))

#endif
