/*
 * input.h -- a buffered byte source over a file, a gzip file (detected by its magic
 * bytes, whatever the name) or standard input ("-"), plus the RFC 4180 CSV reader and
 * the line reader (JSONL) built on it.
 *
 * Records and fields returned are views into the reader's buffers: valid until the next
 * call on the same reader.  Line numbers are 1-based physical lines of the file (a quoted
 * field with newlines spans several); the header is line 1.
 */
#ifndef PATRON_INGEST_INPUT_H
#define PATRON_INGEST_INPUT_H

#include "patron/patron.h"

#include <stddef.h>
#include <stdint.h>

/* The CSV_FIELD_SLACK bytes from the start of a field are readable even where the field
 * is shorter (their values past it are unspecified): callers may copy or compare short
 * fields with whole 16-byte loads (base/bytes.h). */
#define CSV_FIELD_SLACK 32

typedef struct csv_field {
    const char *p; /* unquoted content ("" inside quotes becomes "); not NUL-terminated */
    size_t n;
} csv_field;

typedef struct csv_reader csv_reader;

/* delim: ',' ';' '\t' '|' ..., or ' ' meaning "runs of blanks separate fields; leading
 * blanks ignored" (whitespace files such as CDNOW_master.txt).  A UTF-8 BOM at the start
 * is skipped.  CRLF and LF line ends both work; a blank line is skipped (no record). */
int csv_open(const char *path, char delim, csv_reader **out, patron_error *err);
/* Same over a caller-owned memory buffer (tests, fuzzing); name is used in messages. */
int csv_open_mem(const char *name, const char *data, size_t n, char delim, csv_reader **out,
                 patron_error *err);
/* Next record: 1 with *fields and *nfields set, 0 at end of input, or a negative status
 * with err set to "NAME:LINE: reason" (unterminated quoted field, stray quote, i/o). */
int csv_next(csv_reader *r, const csv_field **fields, size_t *nfields, patron_error *err);
/* Line of the first byte of the record last returned. */
uint64_t csv_line(const csv_reader *r);
/* The raw bytes of the record last returned, as in the file, without its line end. */
const char *csv_raw(const csv_reader *r, size_t *n);
/* Progress: bytes consumed from the file on disk (compressed bytes for .gz), file size
 * (0 for stdin/pipes). */
uint64_t csv_consumed(const csv_reader *r);
uint64_t csv_size(const csv_reader *r);
/* The display name used in messages: the path as given. */
const char *csv_name(const csv_reader *r);
void csv_free(csv_reader *r);

/* Lines (JSONL): same file handling; returns lines without the line end, skipping none. */
typedef struct line_reader line_reader;
int lines_open(const char *path, line_reader **out, patron_error *err);
int lines_open_mem(const char *name, const char *data, size_t n, line_reader **out,
                   patron_error *err);
int lines_next(line_reader *r, const char **line, size_t *n, patron_error *err);
uint64_t lines_line(const line_reader *r);
uint64_t lines_consumed(const line_reader *r);
uint64_t lines_size(const line_reader *r);
const char *lines_name(const line_reader *r);
void lines_free(line_reader *r);

#endif
