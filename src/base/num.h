/*
 * num.h -- strict parsing and formatting of numbers, money and booleans from text fields.
 *
 * All parsers take a (pointer, length) view, accept nothing but the number (no blanks),
 * and return 0 on success, -1 when the text is not a number of that kind (including
 * overflow).  Money is int64 in 1/PATRON_MONEY_SCALE units (ten-thousandths):
 * "12.5" -> 125000, "-0.85" -> -8500; digits beyond the fourth decimal are rounded
 * half away from zero; exponents ("1e3") are accepted for money and doubles.
 */
#ifndef PATRON_BASE_NUM_H
#define PATRON_BASE_NUM_H

#include <stddef.h>
#include <stdint.h>

int num_parse_i64(const char *s, size_t n, int64_t *out);
/* An integer, also written with a zero fraction ("6", "6.0", "-2.00"). */
int num_parse_int(const char *s, size_t n, int64_t *out);
int num_parse_money(const char *s, size_t n, int64_t *out);
int num_parse_double(const char *s, size_t n, double *out);
/* true/false/yes/no/1/0/t/f/y/n, case-insensitive. */
int num_parse_bool(const char *s, size_t n, int *out);

/* Money rounded half away from zero to cents: "1234.56", "-0.05".  buf >= NUM_FMT_LEN. */
#define NUM_FMT_LEN 32
void num_format_money(int64_t v, char *buf);

/* Checked int64 arithmetic: 0 ok, -1 on overflow (out unchanged). */
int num_add_i64(int64_t a, int64_t b, int64_t *out);
int num_mul_i64(int64_t a, int64_t b, int64_t *out);

#endif
