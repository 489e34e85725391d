/*
 * summary.h -- reading customer summary files for the CLV models (`patron clv fit
 * --summary FILE`).
 *
 * A summary is a CSV with one row per customer (BG/NBD: frequency, recency, T and an
 * optional monetary_value) or per cell of a recency/frequency matrix (BG/BB: x, t_x, n
 * and count).  Column names are the field names unless --map renames them
 * ("frequency=x,recency=t_x,T=T_cal").  The whole file is validated before anything is
 * fitted: the first bad value is an error "FILE:LINE: column 'X': reason".
 */
#ifndef PATRON_MODELS_SUMMARY_H
#define PATRON_MODELS_SUMMARY_H

#include "patron/patron.h"

#include <stddef.h>

typedef enum summary_kind {
    SUMMARY_BGNBD, /* frequency, recency, T [, monetary_value] */
    SUMMARY_BGBB   /* x, t_x, n, count */
} summary_kind;

enum { SUMMARY_MAXCOLS = 4 };

typedef struct summary {
    size_t n;
    /* Columns in the kind's field order; col[3] is NULL for a BG/NBD file without
     * monetary_value.  Owned; release with summary_release(). */
    double *col[SUMMARY_MAXCOLS];
} summary;

/* The field names of a kind, in column order (4 names). */
const char *const *summary_fields(summary_kind kind);

/* Reads and validates path.  map may be NULL.  PATRON_EUSAGE for a malformed --map,
 * PATRON_ENOTFOUND when the file cannot be opened, PATRON_EINPUT for a missing column or
 * a bad value (message "FILE:LINE: column 'X': reason"). */
int summary_read(const char *path, summary_kind kind, const char *map, summary *out,
                 patron_error *err);
void summary_release(summary *s);

#endif
