/*
 * bytes.h -- copying and comparing short byte strings with whole 16-byte loads.
 *
 * The import's ids and dictionary strings are mostly under 16 bytes, and a call to
 * memcpy or memcmp for each costs more than the bytes do (decision 0009).  These take
 * one or two unaligned 16-byte loads instead, so the caller must guarantee slack: every
 * byte in [s, s + 16) is readable (and, for bytes_copy16, [d, d + 16) writable) whatever
 * n is, [s, s + 32) for bytes_eq32.  Bytes past n are read, never used.
 */
#ifndef PATRON_BASE_BYTES_H
#define PATRON_BASE_BYTES_H

#include <stddef.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* Copies n bytes from s to d; with n <= 16 it writes all of d[0..16). */
static inline void bytes_copy16(char *d, const char *s, size_t n)
{
    if (n <= 16)
        memcpy(d, s, 16); /* a constant size: one load and one store */
    else
        memcpy(d, s, n);
}

/* 1 when the first n bytes of a and b are equal.  With n <= 16 both must have 16
 * readable bytes; longer strings are compared with memcmp. */
static inline int bytes_eq16(const char *a, const char *b, size_t n)
{
#ifdef __SSE2__
    if (n <= 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)a);
        __m128i y = _mm_loadu_si128((const __m128i *)(const void *)b);
        unsigned eq = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, y));
        unsigned need = (1u << n) - 1u;
        return (eq & need) == need;
    }
#endif
    return memcmp(a, b, n) == 0;
}

/* The same for n <= 32 with 32 readable bytes at a and b; longer strings: memcmp. */
static inline int bytes_eq32(const char *a, const char *b, size_t n)
{
    if (n <= 16)
        return bytes_eq16(a, b, n);
    if (n <= 32)
        return bytes_eq16(a, b, 16) && bytes_eq16(a + 16, b + 16, n - 16);
    return memcmp(a, b, n) == 0;
}

#endif
