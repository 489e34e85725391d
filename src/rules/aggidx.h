/*
 * aggidx.h -- derived indexes over one event stream's rows for the rule evaluator's
 * full passes (rules/eval.c): the rows an aggregate's `where` keeps, and from them
 *
 *   - per member, the time of its k-th latest kept row (k = 1..AGGIDX_KMAX): with every
 *     row at or before now, `count(S where P, W) >= k` holds exactly when that time is
 *     after now - W, so a windowed count compared with a constant becomes a range
 *     query over a column that does not move with now;
 *   - per member, the time at which its k-th distinct code (of a code column) appears
 *     going back from its latest kept row: the same for count_distinct;
 *   - prefix sums over the stream's rows of kept rows and of a money field of kept
 *     rows: a windowed count or sum is two binary searches and two subtractions;
 *   - the kept rows regrouped by blocks of consecutive members, each block in time
 *     order: a window's rows for all the members of a block are one range of it, so
 *     the windowed counts and sums of many neighbouring members are one pass over the
 *     rows inside the window, whatever their rows outside it.
 *
 * An aggidx belongs to one view generation (it is freed with the view's other indexes)
 * and reads the stream's arrays in place; nothing here depends on now.  Rows outside
 * every member's slice (the gaps of the gapped CSR) are never kept and add nothing.
 */
#ifndef PATRON_RULES_AGGIDX_H
#define PATRON_RULES_AGGIDX_H

#include "members/view.h"

#define AGGIDX_KMAX 8
#define AGGIDX_BLOCK_BITS 8 /* a block holds the rows of 256 members */

/* The kept rows of each block of members (block b: members b << AGGIDX_BLOCK_BITS
 * onwards), in time order within the block; rows of equal time keep the order of their
 * members, then of their rows.  Block b's rows are [off[b], off[b + 1]); mem is a row's
 * member minus the block's first, money its value of the index's money column. */
typedef struct aggblk {
    uint32_t nb;
    uint32_t *off;
    int64_t *ts;
    uint8_t *mem;
    int64_t *money; /* NULL: counts only */
} aggblk;

typedef struct aggidx {
    char *key; /* what the rows were filtered by (eval.c's signature) */
    const stream *s;
    uint32_t nm; /* members covered */
    size_t nrows;
    uint8_t *keep;                /* [nrows]: 1 when the row is in a slice and passes the filter */
    int64_t maxts;                /* latest time of any row in a slice; INT64_MIN when none */
    int64_t *tk[AGGIDX_KMAX + 1]; /* [nm], built on first use */
    uint32_t *pc;                 /* [nrows + 1]: kept rows before each row */
    uint64_t *ps;        /* [nrows + 1]: money units of kept rows before each row, mod 2^64 */
    const void *ps_data; /* the money column ps sums */
    const uint32_t *ps_via;
    int64_t *tkd[AGGIDX_KMAX + 1]; /* [nm]: count_distinct of the code column below */
    const void *cd_data;
    const uint32_t *cd_via;
    int64_t *tc;          /* [nm]: see aggidx_tsum */
    const void *tc_data;
    const uint32_t *tc_via;
    double tc_c;
    int tc_incl;
    aggblk blk;           /* built on first use: see aggidx_blocks */
    const void *blk_data;
    const uint32_t *blk_via;
} aggidx;

/* A new index over s for members [0, nm), keeping no row yet; the caller sets keep[r]
 * for rows in member slices only, then calls aggidx_seal().  Takes a copy of key.  NULL
 * when out of memory. */
aggidx *aggidx_new(const stream *s, uint32_t nm, const char *key);
/* Computes maxts once keep is filled. */
void aggidx_seal(aggidx *a);
void aggidx_free(aggidx *a);

/* The k-th latest kept row's time per member (PATRON_NULL_TS when fewer rows are kept);
 * 1 <= k <= AGGIDX_KMAX.  NULL when out of memory. */
const int64_t *aggidx_tk(aggidx *a, int k);
/* The time, per member, at which the k-th distinct non-null code of the code column c
 * appears going back from the latest kept row (PATRON_NULL_TS: fewer distinct codes).
 * An index serves one code column; NULL for another, or when out of memory. */
const int64_t *aggidx_tkd(aggidx *a, const vcol *c, uint32_t ncodes, int k);
/* For a money column c whose kept values are never negative: per member, the time of
 * the kept row at which the sum of its kept rows, added from the latest back, first
 * exceeds lim (incl: reaches it; in currency units, compared as the evaluator does);
 * PATRON_NULL_TS when it never does.  The sum of the kept rows after a time t then
 * exceeds lim exactly when that row is after t.  *neg is set (and NULL returned) when
 * some kept value is negative.  One column and limit per index; NULL for another, or
 * when out of memory. */
const int64_t *aggidx_tsum(aggidx *a, const vcol *c, double lim, int incl, int *neg);
/* Prefix counts of kept rows; NULL when out of memory. */
const uint32_t *aggidx_pc(aggidx *a);
/* Prefix sums of the money column c over kept rows (a null is 0: money is never null).
 * An index serves one money column; NULL for another, or when out of memory. */
const uint64_t *aggidx_ps(aggidx *a, const vcol *c);
/* The kept rows by blocks of members, with the money column c (a null is 0), or for
 * counts only when c is NULL (blocks built for counts get the money when first asked
 * for it), built on up to `threads` threads (the same blocks whatever the number).  An
 * index serves one money column: NULL when asked for another; NULL with *oom set when
 * out of memory. */
const aggblk *aggidx_blocks(aggidx *a, const vcol *c, int threads, int *oom);

#endif
