/*
 * test_num.c -- strict number, money and boolean parsing (src/base/num.c).
 *
 * Money is checked on its fast path and its exact path (more than four decimals,
 * exponents, long digit strings), including rounding half away from zero, overflow at
 * the int64 edge and the sign; the fast and exact paths are also cross-checked on a
 * grid of generated values.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>

#include "base/num.h"

static void money(const char *s, int64_t want)
{
    int64_t v = -777;
    if (num_parse_money(s, strlen(s), &v) != 0)
        fail_msg("money '%s' refused", s);
    if (v != want)
        fail_msg("money '%s' = %lld, want %lld", s, (long long)v, (long long)want);
}

static void money_bad(const char *s)
{
    int64_t v = -777;
    if (num_parse_money(s, strlen(s), &v) != -1)
        fail_msg("money '%s' accepted as %lld", s, (long long)v);
    assert_int_equal(v, -777);
}

static void test_money_plain(void **state)
{
    (void)state;
    money("123.45", 1234500);
    money("12.5", 125000);
    money("-0.85", -8500);
    money("0", 0);
    money("-0", 0);
    money("0.0", 0);
    money("7", 70000);
    money("+7", 70000);
    money("2.55", 25500);
    money("1.2345", 12345);
    money("-1.2345", -12345);
    money(".5", 5000);
    money("5.", 50000);
    money("-.5", -5000);
    money("00012.50", 125000);
    money("99999999999999.9999", INT64_C(999999999999999999)); /* 14 digits: fast path */
}

static void test_money_rounding(void **state)
{
    (void)state;
    money("1.23455", 12346);   /* half away from zero */
    money("1.23454", 12345);
    money("1.234549999", 12345);
    money("1.23445", 12345);   /* not banker's rounding */
    money("-1.23455", -12346);
    money("-1.23454", -12345);
    money("0.00005", 1);
    money("0.00004999", 0);
    money("-0.00005", -1);
    money("-0.00004", 0);
    money("0.99995", 10000);
    money("9.99999999999", 100000);
    money("2.550000000000000000000000001", 25500);
    money("0.000000000000000000000000000000000000001", 0);
}

static void test_money_exponent(void **state)
{
    (void)state;
    money("1e3", 10000000);
    money("1E3", 10000000);
    money("1e+3", 10000000);
    money("1.5e2", 1500000);
    money("1e-4", 1);
    money("5e-5", 1);
    money("4e-5", 0);
    money("-5e-5", -1);
    money("1e-400", 0);
    money("0e999999999", 0);
    money("12345e-2", 1234500);
    money(".5e1", 50000);
    money("0.000123e4", 12300);
    money("9.2233720368547758e14", INT64_C(9223372036854775800));
    money_bad("1e15");   /* 10^19 units */
    money_bad("1e999999999999");
    money_bad("1e");
    money_bad("1e+");
    money_bad("1e-");
    money_bad("e5");
    money_bad("1e5.0");
    money_bad("1e 5");
    money_bad("1ee5");
}

static void test_money_overflow(void **state)
{
    (void)state;
    money("922337203685477.5807", INT64_MAX);
    money("-922337203685477.5807", -INT64_MAX);
    money("922337203685477.58074", INT64_MAX);
    money_bad("922337203685477.58075"); /* rounds past INT64_MAX */
    money_bad("922337203685477.5808");
    money_bad("-922337203685477.5808"); /* magnitudes are symmetric */
    money_bad("922337203685478");
    money_bad("99999999999999999999999999");
    money_bad("-99999999999999999999999999.5");
    money("000000000000000000000000000001.5", 15000); /* long, but small */
}

static void test_money_bad(void **state)
{
    (void)state;
    const char *bads[] = {"", "-", "+", ".", "-.", "+.", " 1", "1 ", "1,000.00", "1,5",
                          "$5", "5$", "abc", "1.2.3", "--1", "+-1", "1-", "nan", "inf",
                          "0x10", "1_000", "１"};
    for (size_t i = 0; i < sizeof bads / sizeof *bads; i++)
        money_bad(bads[i]);
    int64_t v;
    /* The view ends where n says. */
    assert_int_equal(num_parse_money("12.5,99", 4, &v), 0);
    assert_int_equal(v, 125000);
    assert_int_equal(num_parse_money("12.5,99", 5, &v), -1);
}

/* The fast path and the exact path must agree: "a.b" vs "ab e-k". */
static void test_money_paths_agree(void **state)
{
    (void)state;
    char a[64], b[64];
    for (int64_t whole = -3000; whole <= 3000; whole += 37) {
        for (int frac = 0; frac < 10000; frac += 97) {
            snprintf(a, sizeof a, "%s%lld.%04d", whole < 0 ? "-" : "", (long long)(whole < 0 ? -whole : whole), frac);
            snprintf(b, sizeof b, "%s%lld%04de-4", whole < 0 ? "-" : "", (long long)(whole < 0 ? -whole : whole), frac);
            int64_t x, y;
            assert_int_equal(num_parse_money(a, strlen(a), &x), 0);
            assert_int_equal(num_parse_money(b, strlen(b), &y), 0);
            if (x != y)
                fail_msg("'%s' = %lld but '%s' = %lld", a, (long long)x, b, (long long)y);
        }
    }
}

static void i64(const char *s, int64_t want)
{
    int64_t v = -777;
    if (num_parse_i64(s, strlen(s), &v) != 0)
        fail_msg("i64 '%s' refused", s);
    assert_int_equal(v, want);
}

static void test_i64(void **state)
{
    (void)state;
    i64("0", 0);
    i64("-0", 0);
    i64("42", 42);
    i64("+42", 42);
    i64("-42", -42);
    i64("007", 7);
    i64("9223372036854775807", INT64_MAX);
    i64("-9223372036854775808", INT64_MIN);
    i64("999999999999999999", 999999999999999999); /* 18 digits: the no-check loop */
    i64("-999999999999999999", -999999999999999999);
    i64("1000000000000000000", 1000000000000000000); /* 19: the checked one */
    i64("00000000000000000000000042", 42);
    /* Random digit strings of 1 to 20 digits, signed or not, against strtoll. */
    uint64_t x = 88172645463325252ull;
    for (int t = 0; t < 20000; t++) {
        char buf[32];
        size_t n = 0;
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        if (x % 3 == 0) buf[n++] = x % 2 ? '-' : '+';
        size_t nd = 1 + (size_t)(x >> 8) % 20;
        for (size_t k = 0; k < nd; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            buf[n++] = (char)('0' + x % 10);
        }
        buf[n] = '\0';
        errno = 0;
        long long want = strtoll(buf, NULL, 10);
        int64_t v = 5;
        int rc = num_parse_i64(buf, n, &v);
        if (errno == ERANGE) {
            assert_int_equal(rc, -1);
            assert_int_equal(v, 5);
        } else {
            assert_int_equal(rc, 0);
            assert_int_equal(v, want);
        }
    }
    const char *bads[] = {"", "-", "+", "9223372036854775808", "-9223372036854775809",
                          "99999999999999999999", "1.0", "1e3", " 1", "1 ", "0x1", "1a"};
    for (size_t i = 0; i < sizeof bads / sizeof *bads; i++) {
        int64_t v = 5;
        if (num_parse_i64(bads[i], strlen(bads[i]), &v) != -1)
            fail_msg("i64 '%s' accepted", bads[i]);
        assert_int_equal(v, 5);
    }
}

static void test_int(void **state)
{
    (void)state;
    int64_t v;
    assert_int_equal(num_parse_int("6", 1, &v), 0);
    assert_int_equal(v, 6);
    assert_int_equal(num_parse_int("6.0", 3, &v), 0);
    assert_int_equal(v, 6);
    assert_int_equal(num_parse_int("-2.00", 5, &v), 0);
    assert_int_equal(v, -2);
    assert_int_equal(num_parse_int("6.", 2, &v), 0);
    assert_int_equal(v, 6);
    assert_int_equal(num_parse_int("17850.0", 7, &v), 0);
    assert_int_equal(v, 17850);
    v = 9;
    assert_int_equal(num_parse_int("6.5", 3, &v), -1);
    assert_int_equal(num_parse_int("6.01", 4, &v), -1);
    assert_int_equal(num_parse_int(".0", 2, &v), -1);
    assert_int_equal(num_parse_int("-.0", 3, &v), -1);
    assert_int_equal(num_parse_int("6.0.0", 5, &v), -1);
    assert_int_equal(num_parse_int("1e3", 3, &v), -1);
    assert_int_equal(num_parse_int("", 0, &v), -1);
    assert_int_equal(num_parse_int("9223372036854775808.0", 21, &v), -1);
    assert_int_equal(v, 9);
}

static void dbl(const char *s, double want)
{
    double v = -777;
    if (num_parse_double(s, strlen(s), &v) != 0)
        fail_msg("double '%s' refused", s);
    assert_true(v == want);
}

static void test_double(void **state)
{
    (void)state;
    dbl("0", 0);
    dbl("1.5", 1.5);
    dbl("-1.5", -1.5);
    dbl("+2", 2);
    dbl(".25", 0.25);
    dbl("2.", 2);
    dbl("1e3", 1000);
    dbl("1.5E-3", 0.0015);
    dbl("1e-400", 0); /* underflow is fine */
    char longnum[200];
    memset(longnum, '1', sizeof longnum - 1);
    longnum[sizeof longnum - 1] = '\0';
    double v;
    assert_int_equal(num_parse_double(longnum, strlen(longnum), &v), 0); /* heap copy */
    assert_true(v > 1e198);
    const char *bads[] = {"", " 1", "1 ", "nan", "NaN", "inf", "-inf", "infinity", "0x1p3",
                          "1e", "e1", ".", "-", "1,5", "1e400", "-1e400", "1.2.3"};
    for (size_t i = 0; i < sizeof bads / sizeof *bads; i++) {
        v = 5;
        if (num_parse_double(bads[i], strlen(bads[i]), &v) != -1)
            fail_msg("double '%s' accepted", bads[i]);
        assert_true(v == 5);
    }
    /* Not NUL-terminated: "1.5" followed by more digits. */
    assert_int_equal(num_parse_double("1.59", 3, &v), 0);
    assert_true(v == 1.5);
}

static void test_bool(void **state)
{
    (void)state;
    const char *yes[] = {"true", "TRUE", "True", "yes", "YES", "1", "t", "T", "y", "Y"};
    const char *no[] = {"false", "FALSE", "no", "No", "0", "f", "F", "n", "N"};
    const char *bads[] = {"", "tru", "truee", "yess", "2", "-1", "on", "off", " true",
                          "true ", "nope", "10"};
    int v;
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) {
        v = -1;
        assert_int_equal(num_parse_bool(yes[i], strlen(yes[i]), &v), 0);
        assert_int_equal(v, 1);
    }
    for (size_t i = 0; i < sizeof no / sizeof *no; i++) {
        v = -1;
        assert_int_equal(num_parse_bool(no[i], strlen(no[i]), &v), 0);
        assert_int_equal(v, 0);
    }
    for (size_t i = 0; i < sizeof bads / sizeof *bads; i++) {
        v = -1;
        if (num_parse_bool(bads[i], strlen(bads[i]), &v) != -1)
            fail_msg("bool '%s' accepted", bads[i]);
        assert_int_equal(v, -1);
    }
    assert_int_equal(num_parse_bool("yes!", 3, &v), 0);
    assert_int_equal(v, 1);
}

static void fmt(int64_t v, const char *want)
{
    char buf[NUM_FMT_LEN];
    num_format_money(v, buf);
    assert_string_equal(buf, want);
}

static void test_format_money(void **state)
{
    (void)state;
    fmt(0, "0.00");
    fmt(12345600, "1234.56");
    fmt(125000, "12.50");
    fmt(-500, "-0.05");
    fmt(-8500, "-0.85");
    fmt(50, "0.01");    /* half away from zero */
    fmt(49, "0.00");
    fmt(-50, "-0.01");
    fmt(-49, "0.00");   /* no "-0.00" */
    fmt(12349, "1.23");
    fmt(12350, "1.24");
    fmt(999950, "100.00");
    fmt(INT64_MAX, "922337203685477.58");
    fmt(INT64_MIN, "-922337203685477.58");
}

static void test_checked(void **state)
{
    (void)state;
    int64_t r = 5;
    assert_int_equal(num_add_i64(2, 3, &r), 0);
    assert_int_equal(r, 5);
    assert_int_equal(num_add_i64(INT64_MAX, 1, &r), -1);
    assert_int_equal(num_add_i64(INT64_MIN, -1, &r), -1);
    assert_int_equal(r, 5);
    assert_int_equal(num_add_i64(INT64_MAX, INT64_MIN, &r), 0);
    assert_int_equal(r, -1);
    assert_int_equal(num_mul_i64(-4, 5, &r), 0);
    assert_int_equal(r, -20);
    r = 5;
    assert_int_equal(num_mul_i64(INT64_MAX / 2 + 1, 2, &r), -1);
    assert_int_equal(num_mul_i64(INT64_MIN, -1, &r), -1);
    assert_int_equal(r, 5);
    assert_int_equal(num_mul_i64(INT64_MIN, 1, &r), 0);
    assert_int_equal(r, INT64_MIN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_money_plain),
        cmocka_unit_test(test_money_rounding),
        cmocka_unit_test(test_money_exponent),
        cmocka_unit_test(test_money_overflow),
        cmocka_unit_test(test_money_bad),
        cmocka_unit_test(test_money_paths_agree),
        cmocka_unit_test(test_i64),
        cmocka_unit_test(test_int),
        cmocka_unit_test(test_double),
        cmocka_unit_test(test_bool),
        cmocka_unit_test(test_format_money),
        cmocka_unit_test(test_checked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
