/*
 * generate.h -- the synthetic data generator behind `patron generate` (SPEC §2).
 *
 * Writes members.csv, orders.csv (one row per line item), events.jsonl and params.json
 * (the generating parameters) into a directory, streaming: memory stays bounded whatever
 * the member count (10M works).  Same options and seed -> byte-identical files.
 */
#ifndef PATRON_INGEST_GENERATE_H
#define PATRON_INGEST_GENERATE_H

#include "patron/patron.h"

#include <stdint.h>

typedef struct gen_opts {
    uint64_t members;  /* number of members */
    uint64_t seed;     /* RNG seed */
    const char *out;   /* output directory (created if missing) */
    int64_t start;     /* first possible event time (Unix s) */
    int64_t end;       /* last possible event time (Unix s); the data set's "now" */
    double bad_rows;   /* share of malformed rows to add (0 = none) */
    patron_progress_fn progress; /* called now and then with members done / total */
    void *progress_ctx;
} gen_opts;

/* Defaults: 10000 members, seed 1, out ".", 2023-01-01 .. 2024-12-31, no bad rows. */
void gen_opts_init(gen_opts *o);
int gen_run(const gen_opts *o, patron_error *err);

#endif
