/*
 * consent_shim.c -- TEMPORARY (branch `models` only; delete at merge): every member
 * counts as having granted profiling (the program default of SPEC §1.5) until the core
 * keeps consent columns in memory and defines db_profiling_allowed() itself.
 */
#include "models/consent_shim.h"

int db_profiling_allowed(const patron_db *db, uint32_t m, int64_t now)
{
    (void)db;
    (void)m;
    (void)now;
    return 1;
}
