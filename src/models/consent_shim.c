/*
 * consent_shim.c -- TEMPORARY (branch `models` only; delete at merge, with
 * consent_shim.h): SPEC §1.5 profiling consent read from the member's stored profile
 * JSON ("consent": {"profiling": {"status", "updated_at", "expires_at"?}}), one store
 * read per call.  Missing = granted (the program default out of the box); denied or
 * expired at now = not allowed.  The core's db_profiling_allowed() (consent columns in
 * memory) replaces it; this one is correct but slow (a query per member).
 */
#include "models/consent_shim.h"

#include "base/mem.h"
#include "base/time.h"

#include <jansson.h>
#include <string.h>

int db_profiling_allowed(const patron_db *db, uint32_t m, int64_t now)
{
    char *text = NULL;
    if (m >= db->n_members || store_member_profile(db->st, m, &text, NULL) != PATRON_OK)
        return 1;
    json_error_t je;
    json_t *o = json_loads(text, 0, &je);
    mem_free(text);
    json_t *p = json_object_get(json_object_get(o, "consent"), "profiling");
    int ok = 1;
    if (p) {
        const char *st = json_string_value(json_object_get(p, "status"));
        const char *ex = json_string_value(json_object_get(p, "expires_at"));
        int64_t exp;
        if (st && strcmp(st, "denied") == 0)
            ok = 0;
        else if (ex && time_parse(ex, strlen(ex), &exp) == 0 && exp <= now)
            ok = 0;
    }
    json_decref(o);
    return ok;
}
