/*
 * consent_shim.c -- TEMPORARY (branch `models` only; delete at merge, with
 * consent_shim.h): SPEC §1.5 profiling consent read from the member's stored profile
 * JSON ("consent": {..., "profiling": {"status", "updated_at", "expires_at"?, ...}}),
 * one store read per call.  Missing = granted (the program default out of the box);
 * denied, or expired at now = not allowed.  The entry is found by scanning the text (the
 * importer writes it compactly, one flat object per channel/purpose) rather than by
 * parsing the whole profile.  The core's db_profiling_allowed() (consent columns in
 * memory) replaces this.
 */
#include "models/consent_shim.h"

#include "base/mem.h"
#include "base/time.h"

#include <string.h>

static int entry_allowed(const char *e, size_t n, int64_t now)
{
    const char *st = memmem(e, n, "\"status\":\"", 10);
    if (st && (size_t)(e + n - st) >= 16 && memcmp(st + 10, "denied", 6) == 0)
        return 0;
    const char *ex = memmem(e, n, "\"expires_at\":\"", 14);
    if (ex) {
        const char *v = ex + 14, *q = memchr(v, '"', (size_t)(e + n - v));
        int64_t t;
        if (q && time_parse(v, (size_t)(q - v), &t) == 0 && t <= now)
            return 0;
    }
    return 1;
}

int db_profiling_allowed(const patron_db *db, uint32_t m, int64_t now)
{
    char *text = NULL;
    if (m >= db->n_members || store_member_profile(db->st, m, &text, NULL) != PATRON_OK)
        return 1;
    int ok = 1;
    const char *c = strstr(text, "\"consent\":{");
    const char *p = c ? strstr(c, "\"profiling\":{") : NULL;
    const char *end = p ? strchr(p, '}') : NULL;
    if (end)
        ok = entry_allowed(p, (size_t)(end - p), now);
    mem_free(text);
    return ok;
}
