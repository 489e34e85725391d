/*
 * fuzz_csv.c -- libFuzzer harness for the CSV reader, the line reader and the field
 * parsers that run on every cell (time_parse, num_parse_*).
 *
 * The first input byte is the delimiter when it is ';' '\t' '|' or ' ' (whitespace
 * mode), else ','; the rest is the file, read through csv_open_mem() (whose source hands
 * out small pieces, so records cross buffer ends), and again through lines_open_mem().
 * Every field and csv_raw() view is read in full so that AddressSanitizer sees any
 * out-of-bounds view.  Invariants checked: the reader never crashes, ends with 0 or a
 * negative status, a failure is sticky, record line numbers strictly increase, and
 * progress never exceeds the input.  Differential check: the input is also gzipped
 * here and read back through the inflate path, whose buffer boundaries fall elsewhere;
 * both reads must give the same records, raw bytes, lines and final status.  See
 * README.md to build and run.
 */
#include "base/err.h"
#include "base/num.h"
#include "base/time.h"
#include "ingest/input.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile unsigned sink;

/* FNV-1a over everything a read produced, to compare two reads of the same bytes. */
static volatile char slack_sink; /* reads past a field that no result depends on */

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ c[i]) * 1099511628211u;
    return h;
}

static void touch(const char *p, size_t n)
{
    sink += (unsigned)mix(0, p, n);
}

static void cell(const char *p, size_t n)
{
    int64_t v;
    int32_t d;
    double x;
    int b;
    touch(p, n);
    if (time_parse(p, n, &v) == 0)
        sink += (unsigned)v;
    if (time_parse_date(p, n, &d) == 0)
        sink += (unsigned)d;
    if (time_parse_duration(p, n, &v) == 0)
        sink += (unsigned)v;
    if (num_parse_money(p, n, &v) == 0)
        sink += (unsigned)v;
    if (num_parse_int(p, n, &v) == 0)
        sink += (unsigned)v;
    if (num_parse_double(p, n, &x) == 0)
        sink += (unsigned)(x != x);
    if (num_parse_bool(p, n, &b) == 0)
        sink += (unsigned)b;
}

/* Reads text as CSV then as lines; returns a digest of all it saw. */
static uint64_t read_all(const char *text, size_t n, char delim, int check_cells)
{
    uint64_t h = 14695981039346656037u;
    csv_reader *r;
    if (csv_open_mem("fuzz.csv", text, n, delim, &r, NULL) != 0)
        return 0;
    const csv_field *f;
    size_t nf;
    int rc;
    uint64_t last = 0;
    while ((rc = csv_next(r, &f, &nf, NULL)) == 1) {
        size_t rn;
        const char *raw = csv_raw(r, &rn);
        uint64_t line = csv_line(r);
        PATRON_ASSERT(line > last);
        last = line;
        h = mix(h, &line, sizeof line);
        h = mix(h, &nf, sizeof nf);
        h = mix(h, &rn, sizeof rn);
        h = mix(h, raw, rn);
        for (size_t i = 0; i < nf; i++) {
            /* CSV_FIELD_SLACK bytes from a field's start are readable (ASan checks) */
            for (size_t k = 0; k < CSV_FIELD_SLACK; k++)
                slack_sink ^= f[i].p[k];
            h = mix(h, &f[i].n, sizeof f[i].n);
            h = mix(h, f[i].p, f[i].n);
            if (check_cells)
                cell(f[i].p, f[i].n);
        }
    }
    PATRON_ASSERT(rc <= 0);
    h = mix(h, &rc, sizeof rc);
    if (rc < 0) {
        patron_error err;
        PATRON_ASSERT(csv_next(r, &f, &nf, &err) == rc && err.code == rc);
        h = mix(h, err.message, strlen(err.message));
    }
    PATRON_ASSERT(csv_consumed(r) <= n);
    csv_free(r);

    line_reader *lr;
    if (lines_open_mem("fuzz.csv", text, n, &lr, NULL) != 0)
        return 0;
    const char *line;
    size_t ln;
    while ((rc = lines_next(lr, &line, &ln, NULL)) == 1) {
        uint64_t no = lines_line(lr);
        h = mix(h, &no, sizeof no);
        h = mix(h, line, ln);
    }
    h = mix(h, &rc, sizeof rc);
    lines_free(lr);
    return h;
}

/* The gzip image of data[0..n) into a malloc'd buffer; NULL when zlib fails. */
static char *gzip_of(const char *data, size_t n, size_t *out_n)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 1, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return NULL;
    uLong cap = deflateBound(&z, (uLong)n);
    char *out = malloc(cap);
    if (!out) {
        deflateEnd(&z);
        return NULL;
    }
    z.next_in = (Bytef *)(uintptr_t)data;
    z.avail_in = (uInt)n;
    z.next_out = (Bytef *)out;
    z.avail_out = (uInt)cap;
    int rc = deflate(&z, Z_FINISH);
    *out_n = (size_t)z.total_out;
    deflateEnd(&z);
    if (rc != Z_STREAM_END) {
        free(out);
        return NULL;
    }
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    char delim = (char)data[0];
    if (delim != ';' && delim != '\t' && delim != '|' && delim != ' ')
        delim = ',';
    const char *text = (const char *)data + 1;
    size_t n = size - 1;

    uint64_t plain = read_all(text, n, delim, 1);
    if (n >= 2 && (unsigned char)text[0] == 0x1f && (unsigned char)text[1] == 0x8b)
        return 0; /* already gzip: nothing to compare with */
    size_t gn;
    char *gz = gzip_of(text, n, &gn);
    if (gz) {
        uint64_t viagz = read_all(gz, gn, delim, 0);
        if (viagz != plain)
            abort(); /* the two reads disagree */
        free(gz);
    }
    return 0;
}
