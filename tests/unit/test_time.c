/*
 * test_time.c -- timestamps, dates and durations (src/base/time.c, SPEC §1.3).
 *
 * Every accepted form, offsets, calendar validation, leap years, the epoch and negative
 * times, YYYYMMDD against Unix seconds, and a round trip of the civil-date arithmetic
 * over four centuries checked against the C library's own gmtime_r.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "base/time.h"

static int parse(const char *s, int64_t *out)
{
    return time_parse(s, strlen(s), out);
}

static int64_t ts_of(const char *s)
{
    int64_t v = -12345;
    assert_int_equal(parse(s, &v), 0);
    return v;
}

static void bad(const char *s)
{
    int64_t v = 777;
    if (parse(s, &v) != -1)
        fail_msg("'%s' was accepted as %lld", s, (long long)v);
    assert_int_equal(v, 777); /* untouched on failure */
}

#define T_2011_12_09_1250 INT64_C(1323435000) /* 2011-12-09T12:50:00Z */

static void test_iso_forms(void **state)
{
    (void)state;
    assert_int_equal(ts_of("2011-12-09T12:50:00Z"), T_2011_12_09_1250);
    assert_int_equal(ts_of("2011-12-09 12:50:00"), T_2011_12_09_1250);
    assert_int_equal(ts_of("2011-12-09T12:50:00"), T_2011_12_09_1250);
    assert_int_equal(ts_of("2011-12-09t12:50:00z"), T_2011_12_09_1250);
    assert_int_equal(ts_of("2011-12-09T12:50"), T_2011_12_09_1250);
    assert_int_equal(ts_of("2011-12-09T12:50Z"), T_2011_12_09_1250);
    assert_int_equal(ts_of("2011-12-09"), T_2011_12_09_1250 - 12 * 3600 - 50 * 60);
    assert_int_equal(ts_of("2011-12-09T12:50:00.123"), T_2011_12_09_1250);
    assert_int_equal(ts_of("2011-12-09T12:50:00.999999Z"), T_2011_12_09_1250);
    assert_int_equal(ts_of("2011-12-09T12:50:00,5"), T_2011_12_09_1250);
    assert_int_equal(ts_of("2011-12-09 23:59:59"), T_2011_12_09_1250 + 11 * 3600 + 9 * 60 + 59);
}

static void test_offsets(void **state)
{
    (void)state;
    /* 13:50 at +01:00 is 12:50 UTC. */
    assert_int_equal(ts_of("2011-12-09T13:50:00+01:00"), T_2011_12_09_1250);
    assert_int_equal(ts_of("2011-12-09T13:50:00+0100"), T_2011_12_09_1250);
    assert_int_equal(ts_of("2011-12-09T13:50:00+01"), T_2011_12_09_1250);
    assert_int_equal(ts_of("2011-12-09T07:50:00-05"), T_2011_12_09_1250);
    assert_int_equal(ts_of("2011-12-09T07:50:00-05:00"), T_2011_12_09_1250);
    assert_int_equal(ts_of("2011-12-09T07:20:00-05:30"), T_2011_12_09_1250);
    assert_int_equal(ts_of("2011-12-09T18:35:00.5+05:45"), T_2011_12_09_1250);
    assert_int_equal(ts_of("2011-12-09T12:50+00:00"), T_2011_12_09_1250);
    assert_int_equal(ts_of("2011-12-09 12:50:00-00"), T_2011_12_09_1250);
    /* An offset moves the instant across midnight. */
    assert_int_equal(ts_of("2012-01-01T00:30:00+01:00"), ts_of("2011-12-31T23:30:00Z"));
    bad("2011-12-09T12:50:00+1");
    bad("2011-12-09T12:50:00+01:0");
    bad("2011-12-09T12:50:00+010");
    bad("2011-12-09T12:50:00+01:000");
    bad("2011-12-09T12:50:00+24:00");
    bad("2011-12-09T12:50:00+01:60");
    bad("2011-12-09T12:50:00Z+01");
    bad("2011-12-09T12:50:00ZZ");
    bad("2011-12-09T12:50:00 +01:00");
    bad("2011-12-09Z"); /* an offset needs a time */
}

static void test_invalid(void **state)
{
    (void)state;
    bad("");
    bad(" ");
    bad("2011-13-45");
    bad("2011-00-10");
    bad("2011-12-00");
    bad("2011-12-32");
    bad("2011-04-31");
    bad("2011-02-29");
    bad("2011-12-9");
    bad("2011-1-09");
    bad("11-12-09");
    bad("2011/12/09");
    bad("2011-12-09T");
    bad("2011-12-09T12");
    bad("2011-12-09T12:5");
    bad("2011-12-09T24:00:00");
    bad("2011-12-09T12:60:00");
    bad("2011-12-09T12:50:60");
    bad("2011-12-09T12:50:00.");
    bad("2011-12-09T12:50.5");
    bad("2011-12-09X12:50:00");
    bad("2011-12-09  12:50:00");
    bad(" 2011-12-09");
    bad("2011-12-09 ");
    bad("2011-12-09T12:50:00 ");
    bad("12/09/2011");
    bad("abc");
    bad("-");
    bad("+");
    bad("12a");
    bad("1.5");
    bad("20111345");   /* 8 digits are always YYYYMMDD */
    bad("20110229");
    bad("99999999999999999999"); /* overflows int64 */
    bad("-9223372036854775809");
}

static void test_leap_years(void **state)
{
    (void)state;
    int64_t v;
    assert_int_equal(parse("2012-02-29", &v), 0);
    assert_int_equal(parse("2000-02-29", &v), 0);  /* divisible by 400 */
    assert_int_equal(parse("1600-02-29", &v), 0);
    assert_int_equal(parse("1900-02-29", &v), -1); /* divisible by 100 only */
    assert_int_equal(parse("2100-02-29", &v), -1);
    assert_int_equal(parse("2011-02-29", &v), -1);
    assert_int_equal(parse("20120229", &v), 0);
    assert_int_equal(ts_of("2012-03-01") - ts_of("2012-02-28"), 2 * TIME_DAY);
    assert_int_equal(ts_of("2011-03-01") - ts_of("2011-02-28"), 1 * TIME_DAY);
    assert_int_equal(ts_of("2001-01-01") - ts_of("2000-01-01"), 366 * TIME_DAY);
    assert_int_equal(ts_of("1901-01-01") - ts_of("1900-01-01"), 365 * TIME_DAY);
}

static void test_epoch_and_negative(void **state)
{
    (void)state;
    assert_int_equal(ts_of("1970-01-01T00:00:00Z"), 0);
    assert_int_equal(ts_of("1970-01-01"), 0);
    assert_int_equal(ts_of("19700101"), 0);
    assert_int_equal(ts_of("0"), 0);
    assert_int_equal(ts_of("1969-12-31T23:59:59Z"), -1);
    assert_int_equal(ts_of("1969-12-31"), -TIME_DAY);
    assert_int_equal(ts_of("1900-01-01"), INT64_C(-2208988800));
    assert_int_equal(ts_of("0000-03-01"), INT64_C(-62162035200));
    assert_int_equal(ts_of("9999-12-31T23:59:59Z"), INT64_C(253402300799));
    assert_int_equal(ts_of("-1"), -1);
    assert_int_equal(ts_of("-86400"), -TIME_DAY);
    assert_int_equal(ts_of("1970-01-01T00:30:00+01:00"), -1800);
}

static void test_integers(void **state)
{
    (void)state;
    /* Exactly 8 digits: a calendar date. */
    assert_int_equal(ts_of("19970101"), ts_of("1997-01-01"));
    assert_int_equal(ts_of("20111209"), ts_of("2011-12-09"));
    /* Anything else: Unix seconds. */
    assert_int_equal(ts_of("1323435000"), T_2011_12_09_1250);
    assert_int_equal(ts_of("+1323435000"), T_2011_12_09_1250);
    assert_int_equal(ts_of("1234567"), 1234567);      /* 7 digits */
    assert_int_equal(ts_of("123456789"), 123456789);  /* 9 digits */
    assert_int_equal(ts_of("00010101"), ts_of("0001-01-01"));
    assert_int_equal(ts_of("-2011120"), -2011120);    /* signed 8 chars: seconds */
    assert_int_equal(ts_of("9223372036854775807"), INT64_MAX);
    assert_int_equal(ts_of("-9223372036854775808"), INT64_MIN);
    /* 8 digits that are no date are refused, not read as seconds. */
    bad("01234567");
}

static void test_yyyymmdd_invalid(void **state)
{
    (void)state;
    bad("20111301");
    bad("20111200");
    bad("20110431");
    bad("00000000");
    bad("2011120a");
}

static void test_no_read_past_view(void **state)
{
    (void)state;
    /* Views are not NUL-terminated: the bytes after n must not matter. */
    const char *s = "2011-12-09T12:50:00Z,garbage";
    int64_t v;
    assert_int_equal(time_parse(s, 20, &v), 0);
    assert_int_equal(v, T_2011_12_09_1250);
    assert_int_equal(time_parse(s, 19, &v), 0);
    assert_int_equal(time_parse(s, 10, &v), 0);
    assert_int_equal(v, T_2011_12_09_1250 - 46200);
    assert_int_equal(time_parse(s, 21, &v), -1);
    assert_int_equal(time_parse("2011120912", 8, &v), 0);
    assert_int_equal(v, ts_of("2011-12-09"));
}

static void test_dates(void **state)
{
    (void)state;
    int32_t d = -1;
    assert_int_equal(time_parse_date("1970-01-01", 10, &d), 0);
    assert_int_equal(d, 0);
    assert_int_equal(time_parse_date("2011-12-09", 10, &d), 0);
    assert_int_equal(d, 15317);
    assert_int_equal(time_parse_date("20111209", 8, &d), 0);
    assert_int_equal(d, 15317);
    assert_int_equal(time_parse_date("1969-12-31", 10, &d), 0);
    assert_int_equal(d, -1);
    /* A full timestamp keeps its date as written, whatever the offset. */
    assert_int_equal(time_parse_date("2011-12-09T23:30:00-05:00", 25, &d), 0);
    assert_int_equal(d, 15317);
    assert_int_equal(time_parse_date("2011-12-09 12:50:00", 19, &d), 0);
    assert_int_equal(d, 15317);
    /* Unix seconds: the UTC day, floored for negatives. */
    assert_int_equal(time_parse_date("1323435000", 10, &d), 0);
    assert_int_equal(d, 15317);
    assert_int_equal(time_parse_date("-1", 2, &d), 0);
    assert_int_equal(d, -1);
    d = 99;
    assert_int_equal(time_parse_date("2011-02-29", 10, &d), -1);
    assert_int_equal(time_parse_date("2011-12-09T25:00", 16, &d), -1);
    assert_int_equal(time_parse_date("", 0, &d), -1);
    assert_int_equal(time_parse_date("9223372036854775807", 19, &d), -1); /* > int32 days */
    assert_int_equal(d, 99);
}

static void dur(const char *s, int64_t want)
{
    int64_t v = -1;
    if (time_parse_duration(s, strlen(s), &v) != 0)
        fail_msg("duration '%s' refused", s);
    assert_int_equal(v, want);
}

static void test_durations(void **state)
{
    (void)state;
    dur("90d", 90 * TIME_DAY);
    dur("12w", 12 * 7 * TIME_DAY);
    dur("6mo", 6 * 30 * TIME_DAY);
    dur("1y", 365 * TIME_DAY);
    dur("36h", 36 * 3600);
    dur("15m", 15 * 60);
    dur("30s", 30);
    dur("0d", 0);
    dur("007d", 7 * TIME_DAY);
    const char *badv[] = {"", "d", "90", "90x", "-5d", "+5d", "5 d", " 5d", "5d ", "5dd",
                          "5mon", "5M", "5D", "1.5d", "mo", "99999999999999999999s",
                          "106751991167301d" /* overflows int64 seconds */};
    for (size_t i = 0; i < sizeof badv / sizeof *badv; i++) {
        int64_t v = 5;
        if (time_parse_duration(badv[i], strlen(badv[i]), &v) != -1)
            fail_msg("duration '%s' accepted", badv[i]);
        assert_int_equal(v, 5);
    }
    dur("106751991167300d", INT64_C(106751991167300) * TIME_DAY);
}

static void test_civil_roundtrip(void **state)
{
    (void)state;
    /* Every day from 1800 to 2200 against gmtime_r. */
    int64_t first = time_days_from_civil(1800, 1, 1), last = time_days_from_civil(2200, 12, 31);
    for (int64_t d = first; d <= last; d++) {
        int y, m, dd;
        time_civil_from_days(d, &y, &m, &dd);
        assert_int_equal(time_days_from_civil(y, (unsigned)m, (unsigned)dd), d);
        time_t t = (time_t)(d * TIME_DAY);
        struct tm tm;
        gmtime_r(&t, &tm);
        if (tm.tm_year + 1900 != y || tm.tm_mon + 1 != m || tm.tm_mday != dd)
            fail_msg("day %lld: %d-%d-%d vs libc %d-%d-%d", (long long)d, y, m, dd,
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
    }
    assert_int_equal(time_days_from_civil(1970, 1, 1), 0);
    assert_int_equal(time_days_from_civil(2000, 3, 1), 11017);
    assert_int_equal(time_days_from_civil(-1, 12, 31), -719529);
    int y, m, d;
    time_civil_from_days(-719529, &y, &m, &d);
    assert_int_equal(y, -1);
    assert_int_equal(m, 12);
    assert_int_equal(d, 31);
}

static void test_day_of(void **state)
{
    (void)state;
    assert_int_equal(time_day_of(0), 0);
    assert_int_equal(time_day_of(86399), 0);
    assert_int_equal(time_day_of(86400), 1);
    assert_int_equal(time_day_of(-1), -1);
    assert_int_equal(time_day_of(-86400), -1);
    assert_int_equal(time_day_of(-86401), -2);
    assert_int_equal(time_day_of(INT64_MIN), INT64_MIN / 86400 - 1);
}

static void test_format(void **state)
{
    (void)state;
    char buf[TIME_FMT_LEN];
    time_format(T_2011_12_09_1250, buf);
    assert_string_equal(buf, "2011-12-09T12:50:00Z");
    time_format(0, buf);
    assert_string_equal(buf, "1970-01-01T00:00:00Z");
    time_format(-1, buf);
    assert_string_equal(buf, "1969-12-31T23:59:59Z");
    time_format(INT64_C(253402300799), buf);
    assert_string_equal(buf, "9999-12-31T23:59:59Z");
    time_format(INT64_MAX, buf); /* absurd, but bounded and terminated */
    assert_true(strlen(buf) < TIME_FMT_LEN);
    time_format(INT64_MIN, buf);
    assert_true(strlen(buf) < TIME_FMT_LEN);
    time_format_date(15317, buf);
    assert_string_equal(buf, "2011-12-09");
    time_format_date(-1, buf);
    assert_string_equal(buf, "1969-12-31");
    time_format_date(INT32_MIN, buf);
    assert_true(strlen(buf) < TIME_FMT_LEN);
    /* parse(format(x)) == x */
    for (int64_t t = -5000000000; t < 5000000000; t += 7777777) {
        int64_t back;
        time_format(t, buf);
        assert_int_equal(time_parse(buf, strlen(buf), &back), 0);
        assert_int_equal(back, t);
    }
}

static void test_now(void **state)
{
    (void)state;
    int64_t now = time_now();
    assert_true(now > ts_of("2020-01-01"));
    assert_true(now < ts_of("2200-01-01"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_iso_forms),
        cmocka_unit_test(test_offsets),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_leap_years),
        cmocka_unit_test(test_epoch_and_negative),
        cmocka_unit_test(test_integers),
        cmocka_unit_test(test_yyyymmdd_invalid),
        cmocka_unit_test(test_no_read_past_view),
        cmocka_unit_test(test_dates),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_civil_roundtrip),
        cmocka_unit_test(test_day_of),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_now),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
