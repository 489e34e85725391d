/*
 * eval.h -- the compiled evaluator: a checked rule evaluated over batches of members
 * into a roaring bitmap, on several threads.  Results never depend on the thread count.
 *
 * Member-level nodes compute one vector per batch of members; an aggregate gathers the
 * stream rows of the batch's members inside its window, evaluates its `where` over those
 * rows as vectors, and reduces per member.  String comparisons are code comparisons.
 */
#ifndef PATRON_RULES_EVAL_H
#define PATRON_RULES_EVAL_H

#include "rules/rule.h"

#include <roaring/roaring.h>

/* Evaluates r for every member at now; out is cleared first.  threads 0 = all cores.
 * The member view must be built and r checked against it. */
int rule_eval_all(const rule *r, patron_db *db, int64_t now, int threads, roaring_bitmap_t *out,
                  patron_error *err);
/* Evaluates r for the listed members only (ascending); adds the matches to out. */
int rule_eval_members(const rule *r, patron_db *db, int64_t now, const uint32_t *members,
                      size_t n, roaring_bitmap_t *out, patron_error *err);

/* The same, also writing the next instant each member's answer can change with time
 * alone (INT64_MAX: never): due[m] for every member m / due[i] for members[i].  Window
 * edges, future events becoming visible, birthdays, consent expiry and threshold
 * crossings of recency_days / tenure_days / days_since are exact to the second;
 * arithmetic between two moving values falls back to RULE_RECHECK_SECS. */
#define RULE_RECHECK_SECS 3600
int rule_eval_all_due(const rule *r, patron_db *db, int64_t now, int threads,
                      roaring_bitmap_t *out, int64_t *due, patron_error *err);
int rule_eval_members_due(const rule *r, patron_db *db, int64_t now, const uint32_t *members,
                          size_t n, roaring_bitmap_t *out, int64_t *due, patron_error *err);

/* The same with each member at its own time: members[i] evaluated at nows[i] (nows NULL:
 * all at now).  Used to advance segments through time in a few large batches. */
int rule_eval_members_at(const rule *r, patron_db *db, int64_t now, const uint32_t *members,
                         const int64_t *nows, size_t n, roaring_bitmap_t *out, int64_t *due,
                         patron_error *err);

/* The value of node n for member m at now, as text ("null", "true", "12.5", "\"DE\"",
 * "2024-01-01T00:00:00Z") -- for --explain. */
int rule_eval_node_text(const rule *r, const rnode *n, patron_db *db, uint32_t m, int64_t now,
                        char *buf, size_t cap);

/* Drops the bitmap and range indexes built over member columns: call after attached
 * columns (model and loyalty fields) are rewritten in place. */
void rule_indexes_drop(patron_db *db);

#endif
