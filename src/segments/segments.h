/*
 * segments.h -- named segments: rules whose member set is kept and refreshed, and static
 * member lists.  Each refresh stores the members who entered and left, with the time.
 *
 * Membership is a roaring bitmap of member indexes as of the segment's as_of.  A refresh
 * at a later now re-evaluates the rule (today: every member; the incremental path with a
 * dependency index and an expiry index is the next step of issue 4) and records the
 * difference.  Reads at an earlier now evaluate without storing anything.
 */
#ifndef PATRON_SEGMENTS_H
#define PATRON_SEGMENTS_H

#include "rules/rule.h"

#include <roaring/roaring.h>

enum { SEG_RULE = 0, SEG_STATIC = 1 };

typedef struct segment {
    char *name;
    int kind;
    char *rule; /* SEG_RULE */
    int64_t created_at, as_of;
    roaring_bitmap_t *members;
} segment;

typedef struct segcat {
    segment *s;
    size_t n, cap;
} segcat;

/* Loads the catalog from the store when not loaded yet (kept in db->segs). */
int segments_load(patron_db *db, patron_error *err);
void segments_free(patron_db *db);
segment *segment_find(patron_db *db, const char *name);

/* A rule_env whose in_segment() resolves against the catalog. */
void segments_env(patron_db *db, rule_env *env);

int segment_create(patron_db *db, const char *name, const char *text, int64_t now,
                   patron_error *err);
int segment_update(patron_db *db, const char *name, const char *text, int64_t now,
                   patron_error *err);
int segment_drop(patron_db *db, const char *name, patron_error *err);
/* A static segment from a file of member ids (one per line, or a CSV with a member_id
 * column).  Unknown ids are bad rows: FILE:LINE. */
int segment_import(patron_db *db, const char *name, const char *path, int64_t now,
                   patron_error *err);
/* Brings every rule segment to now (storing enters/exits); no-op for those at now. */
int segments_refresh(patron_db *db, int64_t now, patron_error *err);
/* The members of a segment at now into *out (caller frees): from the stored set when
 * as_of == now (after refreshing to a later now), evaluated afresh for an earlier now. */
int segment_members_at(patron_db *db, const char *name, int64_t now, roaring_bitmap_t **out,
                       patron_error *err);

typedef int (*segment_change_fn)(void *ctx, int64_t ts, uint32_t member, int entered);
/* Every enter and exit of a segment at or after since, in time order. */
int segment_changes(patron_db *db, const char *name, int64_t since, segment_change_fn fn,
                    void *ctx, patron_error *err);

#endif
