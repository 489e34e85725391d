/*
 * err.c -- status names, error objects and the always-on invariant check.
 */
#include "base/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *patron_strerror(int status)
{
    switch (status) {
#define PATRON_X_CASE(name, value, text)                                                           \
    case value:                                                                                    \
        return text;
        PATRON_STATUS_LIST(PATRON_X_CASE)
#undef PATRON_X_CASE
    }
    return "unknown status";
}

int err_set(patron_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

int err_prefix(patron_error *err, const char *fmt, ...)
{
    if (!err)
        return PATRON_EINTERNAL;
    char head[512], old[sizeof err->message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    memcpy(old, err->message, sizeof old);
    size_t hn = strlen(head), on = strnlen(old, sizeof old - 1), cap = sizeof err->message - 1;
    if (hn > cap)
        hn = cap;
    memcpy(err->message, head, hn);
    size_t at = hn;
    if (at + 2 <= cap) {
        memcpy(err->message + at, ": ", 2);
        at += 2;
    }
    if (on > cap - at)
        on = cap - at;
    memcpy(err->message + at, old, on);
    err->message[at + on] = '\0';
    return err->code;
}

void err_clear(patron_error *err)
{
    if (err) {
        err->code = PATRON_OK;
        err->message[0] = '\0';
    }
}

void err_bug(const char *file, int line, const char *expr)
{
    fprintf(stderr, "patron: BUG at %s:%d: assertion '%s' failed\n", file, line, expr);
    abort();
}
