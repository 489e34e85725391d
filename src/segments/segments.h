/*
 * segments.h -- named segments: rules whose member set is kept current, and static member
 * lists.  Every enter and exit is stored with the instant it happened.
 *
 * A rule segment keeps its members (a roaring bitmap) as of a time as_of, and in memory
 * its live state: the compiled rule, the sources it reads (DB_SRC_*), and for every
 * member the next instant its answer can change with time alone (an expiry index: a
 * min-heap of (instant, member)).  Bringing a segment to a later now (segments_sync)
 *   1. pops due members in time order and re-evaluates each at its instant, so a member
 *      leaves "bought in the last 30 days" at the second the 30 days run out;
 *   2. re-evaluates, at now, the members the last imports touched -- only for segments
 *      that read what changed -- and members created since;
 * and stores the new set and the changes in one transaction.  A fresh process builds the
 * live state with one evaluation pass at as_of.  Reads at an earlier now evaluate afresh
 * without storing anything.
 */
#ifndef PATRON_SEGMENTS_H
#define PATRON_SEGMENTS_H

#include "rules/rule.h"

#include <roaring/roaring.h>

enum { SEG_RULE = 0, SEG_STATIC = 1 };

typedef struct seg_due {
    int64_t t;
    uint32_t m;
} seg_due;

typedef struct seg_bucket {
    seg_due *e;
    size_t n, cap;
} seg_bucket;

typedef struct segment {
    char *name;
    int kind;
    char *rule; /* SEG_RULE */
    int64_t created_at, as_of;
    roaring_bitmap_t *members;
    /* live state (memory only) */
    rule *r;            /* compiled against view generation r_gen */
    uint64_t r_gen;
    uint32_t deps;      /* DB_SRC_* bits it reads; SEG_DEP_STATIC: a static segment */
    int64_t *due;       /* per member: next instant the answer can change (INT64_MAX never) */
    uint32_t n_due;     /* members the due array covers */
    /* the expiry index: (t, m) entries in buckets of one day (bucket qbase + i holds
     * the entries whose t falls on that day); an entry is current when due[m] == t */
    struct seg_bucket *qb;
    size_t qn;          /* buckets qbase .. qbase + qn - 1 */
    int64_t qbase;
    size_t qfirst;      /* buckets before it are empty */
    size_t qcount;      /* entries held (current or superseded) */
    int full_pending;   /* a static segment it reads changed: evaluate everyone */
    uint64_t data_seen; /* db->data_version its member set reflects */
    int64_t snap_change; /* the stored members are the set after this change row */
    uint64_t unsnap;     /* changes stored since that snapshot */
    uint64_t evaluated; /* member evaluations since loaded (tests check incrementality) */
    roaring_bitmap_t *seen; /* when a caller sets it: every member evaluated is added */
} segment;

#define SEG_DEP_STATIC (1u << 30)

typedef struct segcat {
    segment *s;
    size_t n, cap;
} segcat;

/* A new snapshot of a segment's set is stored once the changes since the last one exceed
 * an eighth of the set plus this many (tests lower it). */
extern uint64_t segments_snapshot_slack;

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
/* Brings every rule segment to now (see above), consuming db->touched.  Segments already
 * at or after now are left as they are. */
int segments_sync(patron_db *db, int64_t now, patron_error *err);
/* Evaluates every rule segment afresh at now (all members) and stores the differences:
 * the reference the incremental path is tested against. */
int segments_recompute(patron_db *db, int64_t now, patron_error *err);
/* The members of a segment at now into *out (caller frees): from the stored set when
 * as_of == now (after refreshing to a later now), evaluated afresh for an earlier now. */
int segment_members_at(patron_db *db, const char *name, int64_t now, roaring_bitmap_t **out,
                       patron_error *err);

typedef int (*segment_change_fn)(void *ctx, int64_t ts, uint32_t member, int entered);
/* Every enter and exit of a segment at or after since, in time order. */
int segment_changes(patron_db *db, const char *name, int64_t since, segment_change_fn fn,
                    void *ctx, patron_error *err);

#endif
