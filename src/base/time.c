/*
 * time.c -- parsing and formatting of timestamps, dates and durations (SPEC §1.3).
 *
 * time_parse() runs once per imported row (tens of millions of times), so it is written
 * by hand: fixed-position digit checks, no sscanf/strptime/mktime, no locale and no time
 * zone database.  Calendar arithmetic is the proleptic Gregorian calendar done with the
 * era-of-400-years method (days_from_civil / civil_from_days): exact for every int64
 * day count whose year fits in int64, and branch-light.
 *
 * Invariants: a timestamp is int64 seconds since 1970-01-01T00:00:00Z; a date is days
 * since 1970-01-01; every parser reads exactly s[0..n) (never past it, never needs NUL)
 * and either accepts all of it or returns -1 without touching *out.  Decisions the
 * header leaves open: exactly 8 unsigned digits are always YYYYMMDD (an invalid calendar
 * date there is an error, not Unix seconds); seconds may not be 60; fractional seconds
 * need seconds and at least one digit; offsets are at most 23:59.
 */
#include "base/time.h"

#include <stdio.h>
#include <time.h>

static inline int is_digit(char c)
{
    return (unsigned char)(c - '0') < 10;
}

/* Two digits at s (already checked) as a number. */
static inline unsigned two(const char *s)
{
    return (unsigned)(s[0] - '0') * 10u + (unsigned)(s[1] - '0');
}

static inline int all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!is_digit(s[i]))
            return 0;
    return 1;
}

static inline int is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned days_in_month(int64_t y, unsigned m)
{
    static const unsigned char mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29u : mdays[m - 1];
}

/*
 * Counts days from 1970-01-01 to y-m-d.  The year is shifted to start in March so the
 * leap day is the last day of the shifted year; an era is 400 years = 146097 days; the
 * day of the shifted year comes from the 153-days-per-5-months pattern of month lengths
 * (31 30 31 30 31 | 31 30 31 30 31 | 31 28/29).  719468 is the day number of
 * 1970-01-01 counted from 0000-03-01.
 */
int64_t time_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    if (m <= 2)
        y -= 1;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;                                      /* [0, 399] */
    int64_t mp = m > 2 ? (int64_t)m - 3 : (int64_t)m + 9;             /* March = 0 */
    int64_t doy = (153 * mp + 2) / 5 + (int64_t)d - 1;                /* [0, 365] */
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;              /* [0, 146096] */
    return era * 146097 + doe - 719468;
}

/* The inverse, with an int64 year so that formatting never overflows. */
static void civil64(int64_t days, int64_t *y, unsigned *m, unsigned *d)
{
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;                                   /* [0, 146096] */
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* [0, 399] */
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);            /* [0, 365] */
    int64_t mp = (5 * doy + 2) / 153;                                 /* [0, 11] */
    *d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
    *m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

void time_civil_from_days(int64_t days, int *y, int *m, int *d)
{
    int64_t yy;
    unsigned mm, dd;
    civil64(days, &yy, &mm, &dd);
    *y = (int)yy;
    *m = (int)mm;
    *d = (int)dd;
}

int64_t time_day_of(int64_t ts)
{
    int64_t q = ts / TIME_DAY;
    return ts % TIME_DAY < 0 ? q - 1 : q;
}

int64_t time_now(void)
{
    struct timespec t;
    if (clock_gettime(CLOCK_REALTIME, &t) != 0)
        return (int64_t)time(NULL);
    return (int64_t)t.tv_sec;
}

/* Plain decimal integer with optional sign, overflow-checked; the whole view. */
static int parse_i64(const char *s, size_t n, int64_t *out)
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
    for (; i < n; i++) {
        if (!is_digit(s[i]))
            return -1;
        unsigned dg = (unsigned)(s[i] - '0');
        if (v > (lim - dg) / 10)
            return -1;
        v = v * 10 + dg;
    }
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

/* YYYY-MM-DD at s (at least 10 bytes): days, or -1. */
static int parse_ymd_dashed(const char *s, int64_t *days)
{
    if (!is_digit(s[0]) || !is_digit(s[1]) || !is_digit(s[2]) || !is_digit(s[3]) ||
        s[4] != '-' || !is_digit(s[5]) || !is_digit(s[6]) || s[7] != '-' || !is_digit(s[8]) ||
        !is_digit(s[9]))
        return -1;
    int64_t y = (int64_t)(two(s) * 100 + two(s + 2));
    unsigned m = two(s + 5), d = two(s + 8);
    if (m < 1 || m > 12 || d < 1 || d > days_in_month(y, m))
        return -1;
    *days = time_days_from_civil(y, m, d);
    return 0;
}

/* YYYYMMDD (8 digits, checked by the caller): days, or -1. */
static int parse_ymd_compact(const char *s, int64_t *days)
{
    int64_t y = (int64_t)(two(s) * 100 + two(s + 2));
    unsigned m = two(s + 4), d = two(s + 6);
    if (m < 1 || m > 12 || d < 1 || d > days_in_month(y, m))
        return -1;
    *days = time_days_from_civil(y, m, d);
    return 0;
}

/*
 * The ISO 8601 forms, s[0..n) with n >= 10 and a dash at s[4].  *days gets the date as
 * written (before any offset is applied) so that time_parse_date() can keep it.
 */
static int parse_iso(const char *s, size_t n, int64_t *out, int64_t *days)
{
    if (parse_ymd_dashed(s, days) != 0)
        return -1;
    int64_t secs = 0;
    size_t i = 10;
    if (i < n) {
        if (s[i] != 'T' && s[i] != 't' && s[i] != ' ')
            return -1;
        i++;
        if (n - i < 5 || !is_digit(s[i]) || !is_digit(s[i + 1]) || s[i + 2] != ':' ||
            !is_digit(s[i + 3]) || !is_digit(s[i + 4]))
            return -1;
        unsigned hh = two(s + i), mi = two(s + i + 3), ss = 0;
        i += 5;
        if (i < n && s[i] == ':') {
            if (n - i < 3 || !is_digit(s[i + 1]) || !is_digit(s[i + 2]))
                return -1;
            ss = two(s + i + 1);
            i += 3;
            if (i < n && (s[i] == '.' || s[i] == ',')) {
                size_t f = ++i;
                while (i < n && is_digit(s[i]))
                    i++;
                if (i == f)
                    return -1;
            }
        }
        if (hh > 23 || mi > 59 || ss > 59)
            return -1;
        secs = (int64_t)(hh * 3600 + mi * 60 + ss);
        if (i < n) {
            if (s[i] == 'Z' || s[i] == 'z') {
                i++;
            } else if (s[i] == '+' || s[i] == '-') {
                int64_t sign = s[i] == '-' ? -1 : 1;
                size_t rest = n - i - 1;
                const char *o = s + i + 1;
                unsigned oh, om = 0;
                if (rest == 2 && is_digit(o[0]) && is_digit(o[1])) {
                    oh = two(o);
                } else if (rest == 4 && all_digits(o, 4)) {
                    oh = two(o);
                    om = two(o + 2);
                } else if (rest == 5 && is_digit(o[0]) && is_digit(o[1]) && o[2] == ':' &&
                           is_digit(o[3]) && is_digit(o[4])) {
                    oh = two(o);
                    om = two(o + 3);
                } else {
                    return -1;
                }
                if (oh > 23 || om > 59)
                    return -1;
                secs -= sign * (int64_t)(oh * 3600 + om * 60);
                i = n;
            }
            if (i != n)
                return -1;
        }
    }
    *out = *days * TIME_DAY + secs;
    return 0;
}

int time_parse(const char *s, size_t n, int64_t *out)
{
    int64_t days;
    if (n >= 10 && s[4] == '-')
        return parse_iso(s, n, out, &days);
    if (n == 8 && all_digits(s, 8)) {
        if (parse_ymd_compact(s, &days) != 0)
            return -1;
        *out = days * TIME_DAY;
        return 0;
    }
    return parse_i64(s, n, out);
}

int time_parse_date(const char *s, size_t n, int32_t *days)
{
    int64_t d, ts;
    if (n >= 10 && s[4] == '-') {
        if (parse_iso(s, n, &ts, &d) != 0)
            return -1;
    } else if (n == 8 && all_digits(s, 8)) {
        if (parse_ymd_compact(s, &d) != 0)
            return -1;
    } else {
        if (parse_i64(s, n, &ts) != 0)
            return -1;
        d = time_day_of(ts);
    }
    if (d < INT32_MIN || d > INT32_MAX)
        return -1;
    *days = (int32_t)d;
    return 0;
}

int time_parse_duration(const char *s, size_t n, int64_t *secs)
{
    size_t i = 0;
    uint64_t v = 0;
    while (i < n && is_digit(s[i])) {
        if (v > (uint64_t)INT64_MAX / 10)
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
        i++;
    }
    if (i == 0 || i == n)
        return -1;
    uint64_t unit;
    const char *u = s + i;
    size_t un = n - i;
    if (un == 1) {
        switch (u[0]) {
        case 's': unit = 1; break;
        case 'm': unit = 60; break;
        case 'h': unit = 3600; break;
        case 'd': unit = TIME_DAY; break;
        case 'w': unit = 7 * TIME_DAY; break;
        case 'y': unit = 365 * TIME_DAY; break;
        default: return -1;
        }
    } else if (un == 2 && u[0] == 'm' && u[1] == 'o') {
        unit = 30 * TIME_DAY;
    } else {
        return -1;
    }
    if (v > (uint64_t)INT64_MAX / unit)
        return -1;
    *secs = (int64_t)(v * unit);
    return 0;
}

static inline void put2(char *p, unsigned v)
{
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
}

/* YYYY-MM-DD into buf, returning the length written (no NUL). */
static int format_days(int64_t days, char *buf)
{
    int64_t y;
    unsigned m, d;
    civil64(days, &y, &m, &d);
    if (y < 0 || y > 9999)
        return snprintf(buf, TIME_FMT_LEN, "%lld-%02u-%02u", (long long)y, m, d);
    put2(buf, (unsigned)(y / 100));
    put2(buf + 2, (unsigned)(y % 100));
    buf[4] = '-';
    put2(buf + 5, m);
    buf[7] = '-';
    put2(buf + 8, d);
    return 10;
}

void time_format_date(int32_t days, char *buf)
{
    buf[format_days(days, buf)] = '\0';
}

void time_format(int64_t ts, char *buf)
{
    int64_t days = time_day_of(ts), r = ts % TIME_DAY;
    unsigned sod = (unsigned)(r < 0 ? r + TIME_DAY : r);
    int k = format_days(days, buf);
    if (k < 0 || k > TIME_FMT_LEN - 11) {
        buf[TIME_FMT_LEN - 1] = '\0';
        return;
    }
    char *p = buf + k;
    p[0] = 'T';
    put2(p + 1, sod / 3600);
    p[3] = ':';
    put2(p + 4, sod / 60 % 60);
    p[6] = ':';
    put2(p + 7, sod % 60);
    p[9] = 'Z';
    p[10] = '\0';
}
