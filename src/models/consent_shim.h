/*
 * consent_shim.h -- TEMPORARY (branch `models` only): the profiling-consent test the
 * models are written against.  The lead adds the same declaration to src/core/db.h with
 * the real implementation (profile consent columns in memory); at merge delete
 * consent_shim.c and this header, and include core/db.h instead.
 */
#ifndef PATRON_MODELS_CONSENT_SHIM_H
#define PATRON_MODELS_CONSENT_SHIM_H

#include "core/db.h"

/* 1 when member m may be scored by models at now (SPEC §1.5 `profiling`). */
int db_profiling_allowed(const patron_db *db, uint32_t m, int64_t now);

#endif
