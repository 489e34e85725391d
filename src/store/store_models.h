/*
 * store_models.h -- fitted models in the store: one row per model run (its kind, the
 * *now* it was computed at, when it was fitted, the data range it saw, its parameters
 * as JSON) and per-member result columns of a run as checksummed BLOBs.
 *
 * The tables are created on first use (CREATE TABLE IF NOT EXISTS from
 * store_models_ensure), not through store.c's migration list, so models can be added
 * without a schema version.  Only the latest run of each kind keeps its columns; older
 * runs keep their parameters (history).
 *
 * Column BLOB format 1: "PMC1", u32 element size, u64 element count, u64 XXH3 of the
 * payload, then the elements (little-endian, as in memory on the supported hosts).
 */
#ifndef PATRON_STORE_MODELS_H
#define PATRON_STORE_MODELS_H

#include "store/store.h"

#include <stddef.h>
#include <stdint.h>

typedef struct store_model_run {
    int64_t id;
    char kind[32];
    int64_t as_of, fitted_at;   /* Unix seconds */
    int64_t data_from, data_to; /* PATRON_NULL_TS when unknown */
    int64_t members;
    char *params; /* JSON text, owned (release with store_model_run_release) */
} store_model_run;

/* Creates the model tables when missing.  Every call below calls it first. */
int store_models_ensure(store *s, patron_error *err);

/* Writes a run and its columns in one transaction; *run_id (NULL allowed) receives its
 * id.  names[i] / data[i] / count[i] / elem[i] describe column i. */
int store_model_run_put(store *s, const store_model_run *run, size_t ncols,
                        const char *const *names, const void *const *data,
                        const size_t *count, const size_t *elem, int64_t *run_id,
                        patron_error *err);

/* The latest run of kind (NULL = of any kind) into *out; PATRON_ENOTFOUND when none. */
int store_model_run_latest(store *s, const char *kind, store_model_run *out,
                           patron_error *err);
void store_model_run_release(store_model_run *r);

/* Column name of run: *data (mem_alloc'd, caller frees), *count elements of elem bytes.
 * PATRON_ENOTFOUND when the run has no such column; PATRON_ESTORE when the BLOB fails
 * its checksum or has another element size. */
int store_model_column_get(store *s, int64_t run, const char *name, size_t elem, void **data,
                           size_t *count, patron_error *err);

#endif
