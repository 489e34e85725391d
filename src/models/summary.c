/*
 * summary.c -- summary CSV reader for the CLV models (see summary.h).
 *
 * Built on the repository's CSV reader (ingest/input.h) and strict number parsing
 * (base/num.h): a cell must be exactly a number.  Row rules checked here, so a fit never
 * sees an impossible customer:
 *   BG/NBD: frequency >= 0, 0 <= recency <= T, T > 0, recency = 0 when frequency = 0,
 *           monetary_value >= 0;
 *   BG/BB:  x, t_x, n whole numbers with 0 <= x <= t_x <= n, n >= 1, t_x = 0 when
 *           x = 0, count >= 0.
 */
#include "models/summary.h"

#include "base/err.h"
#include "base/mem.h"
#include "base/num.h"
#include "ingest/input.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char *const bgnbd_fields[SUMMARY_MAXCOLS] = {"frequency", "recency", "T",
                                                          "monetary_value"};
static const char *const bgbb_fields[SUMMARY_MAXCOLS] = {"x", "t_x", "n", "count"};

const char *const *summary_fields(summary_kind kind)
{
    return kind == SUMMARY_BGBB ? bgbb_fields : bgnbd_fields;
}

void summary_release(summary *s)
{
    for (int c = 0; c < SUMMARY_MAXCOLS; c++) {
        mem_free(s->col[c]);
        s->col[c] = NULL;
    }
    s->n = 0;
}

/* The column named for field in map ("field=COLUMN,..."), or the field itself.  Returns
 * PATRON_EUSAGE for an entry without '=' or naming an unknown field. */
static int map_check(const char *map, const char *const *fields, patron_error *err)
{
    for (const char *p = map; p && *p;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', n);
        if (!eq)
            return err_set(err, PATRON_EUSAGE, "--map: '%.*s' is not FIELD=COLUMN", (int)n, p);
        size_t fn = (size_t)(eq - p);
        int ok = 0;
        for (int f = 0; f < SUMMARY_MAXCOLS && !ok; f++)
            ok = strlen(fields[f]) == fn && memcmp(fields[f], p, fn) == 0;
        if (!ok)
            return err_set(err, PATRON_EUSAGE,
                           "--map: unknown field '%.*s' (fields: %s, %s, %s, %s)", (int)fn, p,
                           fields[0], fields[1], fields[2], fields[3]);
        p = end ? end + 1 : NULL;
    }
    return PATRON_OK;
}

static void map_column(const char *map, const char *field, char *out, size_t cap)
{
    size_t fn = strlen(field);
    for (const char *p = map; p && *p;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', n);
        if (eq && (size_t)(eq - p) == fn && memcmp(p, field, fn) == 0) {
            snprintf(out, cap, "%.*s", (int)(n - fn - 1), eq + 1);
            return;
        }
        p = end ? end + 1 : NULL;
    }
    snprintf(out, cap, "%s", field);
}

static int is_whole(double v)
{
    return v == floor(v) && fabs(v) < 9e15;
}

/* Row rules; returns the index of the offending field and a reason, or -1. */
static int check_row(summary_kind kind, const double *v, int have_m, char *why, size_t cap)
{
    if (kind == SUMMARY_BGNBD) {
        if (v[0] < 0)
            return snprintf(why, cap, "frequency %g is negative", v[0]), 0;
        if (v[1] < 0)
            return snprintf(why, cap, "recency %g is negative", v[1]), 1;
        if (v[2] <= 0)
            return snprintf(why, cap, "T %g must be positive", v[2]), 2;
        if (v[1] > v[2])
            return snprintf(why, cap, "recency %g is greater than T %g", v[1], v[2]), 1;
        if (v[0] == 0 && v[1] != 0)
            return snprintf(why, cap, "recency %g must be 0 when frequency is 0", v[1]), 1;
        if (have_m && v[3] < 0)
            return snprintf(why, cap, "monetary value %g is negative", v[3]), 3;
        return -1;
    }
    for (int c = 0; c < 3; c++)
        if (!is_whole(v[c]) || v[c] < 0)
            return snprintf(why, cap, "%g is not a whole number >= 0", v[c]), c;
    if (v[2] < 1)
        return snprintf(why, cap, "n %g must be at least 1", v[2]), 2;
    if (v[0] > v[1])
        return snprintf(why, cap, "x %g is greater than t_x %g", v[0], v[1]), 0;
    if (v[1] > v[2])
        return snprintf(why, cap, "t_x %g is greater than n %g", v[1], v[2]), 1;
    if (v[0] == 0 && v[1] != 0)
        return snprintf(why, cap, "t_x %g must be 0 when x is 0", v[1]), 1;
    if (v[3] < 0)
        return snprintf(why, cap, "count %g is negative", v[3]), 3;
    return -1;
}

int summary_read(const char *path, summary_kind kind, const char *map, summary *out,
                 patron_error *err)
{
    const char *const *fields = summary_fields(kind);
    memset(out, 0, sizeof *out);
    int rc = map_check(map, fields, err);
    if (rc)
        return rc;
    if (strcmp(path, "-") != 0 && access(path, R_OK) != 0)
        return err_set(err, PATRON_ENOTFOUND, "cannot open '%s': %s", path, strerror(errno));
    csv_reader *r;
    if ((rc = csv_open(path, ',', &r, err)))
        return rc;
    const csv_field *fl;
    size_t nf;
    rc = csv_next(r, &fl, &nf, err);
    if (rc <= 0) {
        csv_free(r);
        return rc < 0 ? rc : err_set(err, PATRON_EINPUT, "%s:1: empty file (a header is needed)", path);
    }
    int col[SUMMARY_MAXCOLS];
    char name[SUMMARY_MAXCOLS][128];
    int ncols = SUMMARY_MAXCOLS;
    for (int f = 0; f < SUMMARY_MAXCOLS; f++) {
        map_column(map, fields[f], name[f], sizeof name[f]);
        col[f] = -1;
        for (size_t i = 0; i < nf; i++)
            if (fl[i].n == strlen(name[f]) && memcmp(fl[i].p, name[f], fl[i].n) == 0)
                col[f] = (int)i;
        if (col[f] < 0 && !(kind == SUMMARY_BGNBD && f == 3)) {
            csv_free(r);
            return err_set(err, PATRON_EINPUT, "%s:1: missing required column '%s'%s", path,
                           name[f], map ? "" : " (rename columns with --map FIELD=COLUMN)");
        }
    }
    if (col[3] < 0)
        ncols = 3;
    size_t cap = 0;
    while ((rc = csv_next(r, &fl, &nf, err)) > 0) {
        uint64_t line = csv_line(r);
        if (out->n + 1 > cap) {
            size_t ncap = cap ? cap * 2 : 1024;
            for (int c = 0; c < ncols; c++) {
                double *p = mem_realloc_array(out->col[c], ncap, sizeof *p);
                if (!p) {
                    rc = err_set(err, PATRON_ENOMEM, "out of memory");
                    goto done;
                }
                out->col[c] = p;
            }
            cap = ncap;
        }
        double v[SUMMARY_MAXCOLS] = {0};
        for (int c = 0; c < ncols; c++) {
            if ((size_t)col[c] >= nf) {
                rc = err_set(err, PATRON_EINPUT, "%s:%llu: column '%s': missing (the row has %zu fields)",
                             path, (unsigned long long)line, name[c], nf);
                goto done;
            }
            const csv_field *x = &fl[col[c]];
            if (num_parse_double(x->p, x->n, &v[c]) != 0 || !isfinite(v[c])) {
                rc = err_set(err, PATRON_EINPUT, "%s:%llu: column '%s': cannot parse '%.*s' as a number",
                             path, (unsigned long long)line, name[c], (int)(x->n > 64 ? 64 : x->n), x->p);
                goto done;
            }
        }
        char why[160];
        int bad = check_row(kind, v, ncols == 4, why, sizeof why);
        if (bad >= 0) {
            rc = err_set(err, PATRON_EINPUT, "%s:%llu: column '%s': %s", path,
                         (unsigned long long)line, name[bad], why);
            goto done;
        }
        for (int c = 0; c < ncols; c++)
            out->col[c][out->n] = v[c];
        out->n++;
    }
    if (rc == 0 && out->n == 0)
        rc = err_set(err, PATRON_EINPUT, "%s: no data rows", path);
done:
    csv_free(r);
    if (rc != 0)
        summary_release(out);
    return rc;
}
