/*
 * time.h -- timestamps, dates and durations (SPEC §1.3).
 *
 * A timestamp is int64 Unix seconds, UTC.  A date is int32 days since 1970-01-01.
 * Accepted timestamp forms: ISO 8601 `2011-12-09T12:50:00Z`, `2011-12-09 12:50:00`,
 * `2011-12-09T12:50`, `2011-12-09` (midnight), optional fractional seconds (dropped),
 * optional offset `Z`, `+01:00`, `+0100`, `-05` (no offset = UTC); `YYYYMMDD` (8 digits);
 * any other integer = Unix seconds.  Calendar fields are validated (2011-13-45 is bad,
 * 2011-02-29 is bad, 2012-02-29 is fine).  Leading/trailing blanks are not accepted.
 */
#ifndef PATRON_BASE_TIME_H
#define PATRON_BASE_TIME_H

#include <stddef.h>
#include <stdint.h>

#define TIME_DAY 86400

/* 0 on success, -1 when s[0..n) is not a timestamp. */
int time_parse(const char *s, size_t n, int64_t *out);
/* Dates: `YYYY-MM-DD` or `YYYYMMDD` (a full timestamp is accepted, its date kept). */
int time_parse_date(const char *s, size_t n, int32_t *days);
/* Durations `90d`, `12w`, `6mo` (30 d), `1y` (365 d), `36h`, `15m`, `30s` -> seconds. */
int time_parse_duration(const char *s, size_t n, int64_t *secs);

int64_t time_days_from_civil(int64_t y, unsigned m, unsigned d);
void time_civil_from_days(int64_t days, int *y, int *m, int *d);

/* `2011-12-09T12:50:00Z` into buf (at least TIME_FMT_LEN bytes, NUL-terminated). */
#define TIME_FMT_LEN 32
void time_format(int64_t ts, char *buf);
/* `2011-12-09` into buf (at least TIME_FMT_LEN bytes). */
void time_format_date(int32_t days, char *buf);

/* The system clock, seconds. */
int64_t time_now(void);
/* Floor division of a timestamp into days since the epoch (correct for negatives). */
int64_t time_day_of(int64_t ts);

#endif
