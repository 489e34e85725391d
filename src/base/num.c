/*
 * num.c -- strict number, money and boolean parsing from (pointer, length) views, money
 * formatting and checked int64 arithmetic.
 *
 * Fields handed to these parsers come straight from the CSV buffer: they are not
 * NUL-terminated and may be followed by anything, so every parser reads exactly s[0..n).
 * num_parse_money() is on the import hot path: its fast path (optional sign, up to 14
 * integer digits, up to 4 decimals, no exponent) is one loop with no library call; other
 * shapes go through an exact decimal path that rounds half away from zero without ever
 * using floating point, so "0.00005" is 1 unit and "1e-4" is exactly 1 unit too.
 *
 * Invariants: accept all of the view or return -1 with *out untouched; no blanks, no
 * thousands separators, no "inf"/"nan"/hex; int64 overflow is a parse failure.  Money
 * magnitudes are symmetric (|v| <= INT64_MAX), so INT64_MIN is never produced.
 */
#include "base/num.h"

#include "base/mem.h"
#include "patron/patron.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MONEY_DIGITS 4 /* log10(PATRON_MONEY_SCALE) */

static inline int is_digit(char c)
{
    return (unsigned char)(c - '0') < 10;
}

int num_parse_i64(const char *s, size_t n, int64_t *out)
{
    size_t i = 0;
    int neg = 0;
    if (n && (s[0] == '-' || s[0] == '+')) {
        neg = s[0] == '-';
        i = 1;
    }
    if (i == n)
        return -1;
    uint64_t v = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    if (n - i <= 18) { /* cannot overflow: no division per digit */
        for (; i < n; i++) {
            unsigned d = (unsigned)(unsigned char)s[i] - '0';
            if (d > 9)
                return -1;
            v = v * 10 + d;
        }
        *out = neg ? (int64_t)(0 - v) : (int64_t)v;
        return 0;
    }
    for (; i < n; i++) {
        if (!is_digit(s[i]))
            return -1;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (lim - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

int num_parse_int(const char *s, size_t n, int64_t *out)
{
    size_t k = 0; /* the usual whole number: no '.' to look for past its digits */
    uint64_t v = 0;
    for (; k < n; k++) {
        unsigned d = (unsigned)(unsigned char)s[k] - '0';
        if (d > 9)
            break;
        v = v * 10 + d; /* wraps only past 19 digits: then num_parse_i64 decides */
    }
    if (k == n && n && n <= 18) {
        *out = (int64_t)v;
        return 0;
    }
    if (k == n && n)
        return num_parse_i64(s, n, out);
    const char *dot = memchr(s, '.', n);
    if (!dot)
        return num_parse_i64(s, n, out);
    k = (size_t)(dot - s);
    if (k == 0 || !is_digit(s[k - 1]))
        return -1; /* ".0", "-.0" */
    for (size_t i = k + 1; i < n; i++)
        if (s[i] != '0')
            return -1;
    return num_parse_i64(s, k, out);
}

/*
 * The exact path: digits d1 d2 ... with the decimal point after `point` of them, times
 * 10^exp10, scaled by 10^4, rounded half away from zero.  Leading zeros are dropped
 * first so that the first kept digit is non-zero; then the integer part of the scaled
 * value has k = point + exp10 + 4 digits, which must be at most 19 to fit.
 */
static int money_slow(const char *s, size_t n, int64_t *out)
{
    size_t i = 0;
    int neg = 0;
    if (i < n && (s[i] == '-' || s[i] == '+')) {
        neg = s[i] == '-';
        i++;
    }
    const char *dig = s + i; /* mantissa digits, with at most one '.' among them */
    size_t ndig = 0, mant_end;
    int64_t point = -1;
    for (; i < n; i++) {
        if (is_digit(s[i]))
            ndig++;
        else if (s[i] == '.' && point < 0)
            point = (int64_t)ndig;
        else
            break;
    }
    mant_end = i;
    if (ndig == 0)
        return -1;
    if (point < 0)
        point = (int64_t)ndig;
    int64_t exp10 = 0;
    if (i < n) {
        if (s[i] != 'e' && s[i] != 'E')
            return -1;
        i++;
        int eneg = 0;
        if (i < n && (s[i] == '-' || s[i] == '+')) {
            eneg = s[i] == '-';
            i++;
        }
        if (i == n)
            return -1;
        for (; i < n; i++) {
            if (!is_digit(s[i]))
                return -1;
            if (exp10 < 1000000) /* far beyond any int64 money; keeps the sum finite */
                exp10 = exp10 * 10 + (s[i] - '0');
        }
        if (eneg)
            exp10 = -exp10;
    }

    /* Walk the digits (skipping the '.') without copying them. */
    const char *p = dig;
    size_t left = ndig;
    while (left && (*p == '0' || *p == '.')) {
        if (*p == '0') {
            left--;
            point--;
        }
        p++;
    }
    if (left == 0) {
        *out = 0;
        return 0;
    }
    int64_t k = point + exp10 + MONEY_DIGITS;
    if (k > 19)
        return -1;
    uint64_t v = 0;
    int64_t taken = 0;
    int round_up = 0;
    for (; p < s + mant_end; p++) {
        if (*p == '.')
            continue;
        if (taken < k) {
            unsigned d = (unsigned)(*p - '0');
            if (v > (UINT64_MAX - d) / 10)
                return -1;
            v = v * 10 + d;
            taken++;
        } else {
            round_up = taken == k && *p >= '5';
            break;
        }
    }
    for (; taken < k; taken++) { /* digits ran out before the units place: pad zeros */
        if (v > UINT64_MAX / 10)
            return -1;
        v *= 10;
    }
    v += (uint64_t)round_up;
    if (v > (uint64_t)INT64_MAX)
        return -1;
    *out = neg ? -(int64_t)v : (int64_t)v;
    return 0;
}

int num_parse_money(const char *s, size_t n, int64_t *out)
{
    size_t i = 0;
    int neg = 0;
    if (n && (s[0] == '-' || s[0] == '+')) {
        neg = s[0] == '-';
        i = 1;
    }
    size_t start = i;
    uint64_t v = 0;
    for (; i < n; i++) {
        unsigned d = (unsigned)(unsigned char)s[i] - '0';
        if (d > 9)
            break;
        v = v * 10 + d;
    }
    size_t nint = i - start;
    if (nint > 14)
        return money_slow(s, n, out);
    unsigned frac = 0, nfrac = 0;
    if (i < n && s[i] == '.') {
        size_t fstart = ++i, fend = n - i > MONEY_DIGITS ? i + MONEY_DIGITS : n;
        for (; i < fend; i++) {
            unsigned d = (unsigned)(unsigned char)s[i] - '0';
            if (d > 9)
                break;
            frac = frac * 10 + d;
        }
        nfrac = (unsigned)(i - fstart);
    } else if (nint == 0) {
        return -1;
    }
    if (i != n || nint + nfrac == 0)
        return money_slow(s, n, out);
    static const unsigned pow10[] = {10000, 1000, 100, 10, 1};
    int64_t m = (int64_t)(v * PATRON_MONEY_SCALE + frac * pow10[nfrac]);
    *out = neg ? -m : m;
    return 0;
}

/* The grammar strtod would accept minus the parts we refuse: blanks, inf, nan, hex. */
static int decimal_shape(const char *s, size_t n)
{
    size_t i = 0, nd = 0;
    if (i < n && (s[i] == '-' || s[i] == '+'))
        i++;
    while (i < n && is_digit(s[i]))
        i++, nd++;
    if (i < n && s[i] == '.') {
        i++;
        while (i < n && is_digit(s[i]))
            i++, nd++;
    }
    if (nd == 0)
        return 0;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '-' || s[i] == '+'))
            i++;
        size_t e = i;
        while (i < n && is_digit(s[i]))
            i++;
        if (i == e)
            return 0;
    }
    return i == n;
}

int num_parse_double(const char *s, size_t n, double *out)
{
    if (!decimal_shape(s, n))
        return -1;
    char small[64], *tmp = small;
    if (n >= sizeof small) {
        tmp = mem_alloc(n + 1);
        if (!tmp)
            return -1;
    }
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    errno = 0;
    char *end;
    double d = strtod(tmp, &end);
    int ok = end == tmp + n && !(errno == ERANGE && isinf(d));
    if (tmp != small)
        mem_free(tmp);
    if (!ok)
        return -1;
    *out = d;
    return 0;
}

static int lower(char c)
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

static int word_is(const char *s, size_t n, const char *w)
{
    size_t i = 0;
    for (; i < n; i++)
        if (w[i] == '\0' || lower(s[i]) != w[i])
            return 0;
    return w[i] == '\0';
}

int num_parse_bool(const char *s, size_t n, int *out)
{
    static const char *const yes[] = {"true", "yes", "1", "t", "y"};
    static const char *const no[] = {"false", "no", "0", "f", "n"};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) {
        if (word_is(s, n, yes[i])) {
            *out = 1;
            return 0;
        }
        if (word_is(s, n, no[i])) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

void num_format_money(int64_t v, char *buf)
{
    uint64_t mag = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    uint64_t cents = mag / 100 + (mag % 100 >= 50);
    char tmp[NUM_FMT_LEN];
    size_t k = 0;
    unsigned c = (unsigned)(cents % 100);
    uint64_t units = cents / 100;
    do {
        tmp[k++] = (char)('0' + units % 10);
        units /= 10;
    } while (units);
    char *p = buf;
    if (v < 0 && cents != 0)
        *p++ = '-';
    while (k)
        *p++ = tmp[--k];
    *p++ = '.';
    *p++ = (char)('0' + c / 10);
    *p++ = (char)('0' + c % 10);
    *p = '\0';
}

int num_add_i64(int64_t a, int64_t b, int64_t *out)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r))
        return -1;
    *out = r;
    return 0;
}

int num_mul_i64(int64_t a, int64_t b, int64_t *out)
{
    int64_t r;
    if (__builtin_mul_overflow(a, b, &r))
        return -1;
    *out = r;
    return 0;
}
