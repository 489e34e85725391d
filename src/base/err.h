/*
 * err.h -- error objects and invariant checks shared by every module.
 *
 * err_set() fills a caller's patron_error (NULL allowed) and returns the code, so a
 * failing path reads `return err_set(err, PATRON_EINPUT, "cannot parse '%s'", s);`.
 * PATRON_ASSERT is always on: it is for broken invariants, never for validating input.
 */
#ifndef PATRON_BASE_ERR_H
#define PATRON_BASE_ERR_H

#include "patron/patron.h"

#if defined(__GNUC__)
#define PATRON_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define PATRON_NORETURN __attribute__((noreturn))
#else
#define PATRON_PRINTF(a, b)
#define PATRON_NORETURN
#endif

int err_set(patron_error *err, int code, const char *fmt, ...) PATRON_PRINTF(3, 4);
/* Prefixes an existing message: "context: old message". */
int err_prefix(patron_error *err, const char *fmt, ...) PATRON_PRINTF(2, 3);
void err_clear(patron_error *err);

PATRON_NORETURN void err_bug(const char *file, int line, const char *expr);
#define PATRON_ASSERT(e) ((e) ? (void)0 : err_bug(__FILE__, __LINE__, #e))

#endif
