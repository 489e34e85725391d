/*
 * mem.c -- allocation wrappers with overflow checks and a failure hook for tests.
 *
 * Blocks of MEM_HUGE_MIN bytes or more (the member view's columns, chunk buffers) are
 * marked for transparent huge pages where the kernel offers them on request
 * (madvise): building the view touches gigabytes of fresh arrays at M, and with 4 KB
 * pages a third of its time went to page faults and TLB misses (decision 0003: S view
 * 1.4-1.7 s -> 0.9-1.1 s, M 17 s -> 12.4 s).  A failed madvise changes nothing.
 */
#include "base/mem.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define MEM_HUGE_MIN ((size_t)2 << 20)
#define MEM_PAGE ((uintptr_t)4096)

/* Asks for huge pages over the whole pages inside block p of n bytes; returns p. */
static void *huge(void *p, size_t n)
{
#ifdef MADV_HUGEPAGE
    if (p && n >= MEM_HUGE_MIN) {
        uintptr_t a = ((uintptr_t)p + MEM_PAGE - 1) & ~(MEM_PAGE - 1);
        uintptr_t e = ((uintptr_t)p + n) & ~(MEM_PAGE - 1);
        if (e > a)
            (void)madvise((void *)a, e - a, MADV_HUGEPAGE);
    }
#else
    (void)n;
#endif
    return p;
}

static long fail_countdown;

void mem_fail_after(long nth)
{
    fail_countdown = nth;
}

static int should_fail(void)
{
    if (fail_countdown <= 0)
        return 0;
    return --fail_countdown == 0;
}

void *mem_alloc(size_t n)
{
    if (should_fail())
        return NULL;
    return huge(malloc(n ? n : 1), n);
}

void *mem_calloc(size_t count, size_t size)
{
    if (should_fail())
        return NULL;
    void *p = calloc(count ? count : 1, size ? size : 1);
    return size && count <= SIZE_MAX / size ? huge(p, count * size) : p;
}

void *mem_alloc_array(size_t count, size_t size)
{
    if (size && count > SIZE_MAX / size)
        return NULL;
    return mem_alloc(count * size);
}

void *mem_realloc(void *p, size_t n)
{
    if (should_fail())
        return NULL;
    return huge(realloc(p, n ? n : 1), n);
}

void *mem_realloc_array(void *p, size_t count, size_t size)
{
    if (size && count > SIZE_MAX / size)
        return NULL;
    return mem_realloc(p, count * size);
}

void mem_free(void *p)
{
    free(p);
}

char *mem_strndup(const char *s, size_t n)
{
    char *d = mem_alloc(n + 1);
    if (!d)
        return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *mem_strdup(const char *s)
{
    return mem_strndup(s, strlen(s));
}

int mem_grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap : 16;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2)
            return -1;
        ncap *= 2;
    }
    void *np = mem_realloc_array(*p, ncap, elem);
    if (!np)
        return -1;
    *p = np;
    *cap = ncap;
    return 0;
}

void mem_prefault(void *p, size_t from, size_t to)
{
#ifdef MADV_POPULATE_WRITE
    if (!p || to <= from)
        return;
    uintptr_t a = ((uintptr_t)p + from) & ~(MEM_PAGE - 1);
    (void)madvise((void *)a, (uintptr_t)p + to - a, MADV_POPULATE_WRITE);
#else
    (void)p, (void)from, (void)to;
#endif
}
