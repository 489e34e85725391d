/*
 * eval.c -- the compiled evaluator: checked rules over batches of members (see eval.h).
 *
 * Every node evaluates to a vector over the rows of a context: member indexes at the
 * member level, stream rows inside an aggregate's `where`.  Numbers and timestamps are
 * doubles (NAN = null), strings dictionary codes (0 = null), conditions bytes (0 false,
 * 1 true, 2 null).  `and` / `or` evaluate their right side only on the rows the left
 * side leaves open.  Vectors live in a per-thread arena reset after every batch, so the
 * hot path allocates nothing once warm.
 */
#include "rules/eval.h"

#include "rules/aggidx.h"

#include "base/err.h"
#include "base/mem.h"
#include "base/time.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BATCH 2048
/* Members looked ahead when the rows of members far apart are read at random (selected
 * members' window searches): their first rows are asked for this many members early. */
#define PREFETCH_AHEAD 8
#define NOT_A_CODE UINT32_MAX /* a literal no data holds: equal to nothing */

/* ---- arena ---------------------------------------------------------------------- */

typedef struct achunk {
    struct achunk *next;
    size_t used, cap;
    max_align_t data[];
} achunk;

typedef struct arena {
    achunk *head;
    int failed;
} arena;

static void *aalloc(arena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    achunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t want = c ? c->cap * 2 : ((size_t)1 << 14); /* grows with the working set */
        size_t cap = n > want ? n : want;
        achunk *nc = mem_alloc(sizeof *nc + cap);
        if (!nc) {
            a->failed = 1;
            return NULL;
        }
        nc->next = c;
        nc->used = 0;
        nc->cap = cap;
        a->head = c = nc;
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    return p;
}

/* Keeps the newest chunk (the biggest working set so far) and frees the rest. */
static void areset(arena *a)
{
    achunk *c = a->head;
    if (!c)
        return;
    achunk *r = c->next;
    while (r) {
        achunk *nx = r->next;
        mem_free(r);
        r = nx;
    }
    c->next = NULL;
    c->used = 0;
}

static void afree(arena *a)
{
    achunk *c = a->head;
    while (c) {
        achunk *nx = c->next;
        mem_free(c);
        c = nx;
    }
    a->head = NULL;
}

/* Scratch memory outlives a pass: the chunk a finished job grew is kept for the next
 * one (a clock advance runs a short pass per segment; fresh chunks of a few MB each
 * time were paid for in page faults and zeroed huge pages).  Shared by every database
 * of the process, behind a mutex; what a job reads from its arena it wrote first. */
#define ARENA_POOL 16
static pthread_mutex_t arena_mu = PTHREAD_MUTEX_INITIALIZER;
static achunk *arena_pool[ARENA_POOL];
static int arena_pooled;

static void arena_take(arena *a)
{
    a->head = NULL;
    a->failed = 0;
    pthread_mutex_lock(&arena_mu);
    if (arena_pooled > 0)
        a->head = arena_pool[--arena_pooled];
    pthread_mutex_unlock(&arena_mu);
}

/* Keeps the arena's newest (biggest) chunk in the pool and frees the rest. */
static void arena_give(arena *a)
{
    areset(a);
    achunk *c = a->head;
    a->head = NULL;
    if (!c)
        return;
    pthread_mutex_lock(&arena_mu);
    if (arena_pooled < ARENA_POOL) {
        arena_pool[arena_pooled++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&arena_mu);
    mem_free(c);
}

/* ---- context --------------------------------------------------------------------- */

/* A node's values over the context's rows.  With want_due, t[i] is the next instant
 * (seconds) at which row i's value can change with time alone (NEVER: it cannot), and
 * s[i] (when s is set) the rate at which a number grows per second (recency_days,
 * tenure_days and days_since grow at 1/86400): comparisons turn rates into the exact
 * second at which their answer flips. */
typedef struct vec {
    double *d;
    uint32_t *c;
    uint8_t *b;
    int64_t *t;
    double *s;
} vec;

#define NEVER INT64_MAX
/* Where arithmetic on time-moving values makes the crossing instant impractical, the
 * member is looked at again after this long (documented in docs/rules.md). */
#define RECHECK_SECS RULE_RECHECK_SECS

typedef struct ectx {
    patron_db *db;
    const mview *v;
    int64_t now;
    const uint32_t *rows; /* member indexes, or stream rows inside `where` */
    size_t n;
    int event;            /* 1 inside an aggregate's where */
    int want_due;         /* compute vec.t / vec.s */
    const int64_t *nows;  /* per row: each row's own now (NULL: now for every row) */
    arena *ar;
    /* today's civil date, for age and birthdays */
    int ny, nm, nd;
    int64_t today;
    /* full passes (eval_indexed): prefix arrays for aggregates of the rule, and for
     * spend_trend the money prefix sums of orders and returns (NULL: scan the rows) */
    const struct aggpre *pre;
    size_t n_pre;
    const uint64_t *ps_orders, *ps_returns;
    int64_t orders_max, returns_max; /* no row of the stream after (INT64_MAX: unknown) */
    const aggblk *blk_orders, *blk_returns; /* the same by blocks of members (or NULL) */
} ectx;

/* An aggregate whose windowed count or money sum reads prefix arrays (rules/aggidx.h). */
typedef struct aggpre {
    const rnode *n;
    const uint32_t *pc;
    const uint64_t *ps;  /* sum / avg of a money field */
    const aggblk *blk;   /* the kept rows by blocks of members (NULL: none) */
    int64_t maxts;       /* no row of the stream is after maxts */
} aggpre;

#define NOW(x, i) ((x)->nows ? (x)->nows[i] : (x)->now)

/* Row i's day and civil date (of its own now). */
static int64_t row_today(const ectx *x, size_t i, int *ny, int *nm, int *nd)
{
    if (!x->nows) {
        *ny = x->ny, *nm = x->nm, *nd = x->nd;
        return x->today;
    }
    int64_t t = time_day_of(x->nows[i]);
    time_civil_from_days(t, ny, nm, nd);
    return t;
}

static double *vd(ectx *x)
{
    return aalloc(x->ar, (x->n ? x->n : 1) * sizeof(double));
}
static uint32_t *vc(ectx *x)
{
    return aalloc(x->ar, (x->n ? x->n : 1) * sizeof(uint32_t));
}
static uint8_t *vb(ectx *x)
{
    return aalloc(x->ar, x->n ? x->n : 1);
}

/* Member slices up to this many rows are searched by counting (no chain of dependent
 * loads); longer ones by halving. */
#define SEARCH_LINEAR 16

/* First index in [lo, hi) with ts[i] > t, hi when none (rows are in time order).  No
 * data-dependent branch: member slices are short and their times unpredictable, so
 * counting (short slices) or a select while halving beats a mispredicted jump. */
static inline uint32_t upper(const int64_t *ts, uint32_t lo, uint32_t hi, int64_t t)
{
    uint32_t n = hi - lo;
    if (n <= SEARCH_LINEAR) {
        uint32_t c = 0;
        for (uint32_t k = lo; k < hi; k++)
            c += ts[k] <= t;
        return lo + c;
    }
    const int64_t *base = ts + lo;
    while (n > 1) {
        uint32_t half = n / 2;
        base += (size_t)(base[half - 1] <= t) * half;
        n -= half;
    }
    return (uint32_t)(base - ts) + (base[0] <= t);
}

/* ---- block passes -----------------------------------------------------------------
 *
 * A full pass evaluates its candidates in batches of members close together.  For such
 * a batch, a window's rows are read block by block from aggidx_blocks (each block's
 * rows in time order, so a window is one range per block) and added to the batch's
 * sums through a map from the blocks' members to the batch (rows of other members go
 * to a slot nobody reads): no search per member, and only the rows inside the window
 * are read.  A batch spread over too many blocks, or whose window holds too many rows,
 * takes the member by member path; both give the same sums.  The limits are per member
 * of the batch: at M the batches of the two benchmark rules that take this path span
 * 2.4 slots (at most 4.4) and read 1.5 rows (at most 2.6) a member for a sum, 4.0 slots
 * (at most 6.4) and 5.0 rows (at most 6.7) for spend_trend; the member by member path
 * costs 150 to 400 instructions (callgrind) and a few cache misses a member, a row a few
 * instructions. */
#define BLK_SLOTS 8 /* member slots of the blocks the batch spans (plus two blocks) */
#define BLK_ROWS 16 /* rows inside the window(s) */
#define BLK_AHEAD 2 /* blocks whose first rows are asked for early */

/* The blocks [*b0, *b1) holding the batch's members and, in map (from the arena), each
 * of their members' place in the batch plus one (0: not in it; a member twice in the
 * batch: its last place): 1, or 0 when they are too many for the batch (or rows have
 * nows of their own, or the arena is out of memory). */
static int blk_span(ectx *x, uint32_t *b0, uint32_t *b1, uint16_t **map)
{
    if (x->nows || x->n == 0 || x->n >= UINT16_MAX)
        return 0;
    uint32_t lo = UINT32_MAX, hi = 0;
    for (size_t i = 0; i < x->n; i++) {
        lo = x->rows[i] < lo ? x->rows[i] : lo;
        hi = x->rows[i] > hi ? x->rows[i] : hi;
    }
    *b0 = lo >> AGGIDX_BLOCK_BITS;
    *b1 = (hi >> AGGIDX_BLOCK_BITS) + 1;
    size_t slots = (size_t)(*b1 - *b0) << AGGIDX_BLOCK_BITS;
    if (slots > BLK_SLOTS * x->n + (2u << AGGIDX_BLOCK_BITS))
        return 0;
    if (!(*map = aalloc(x->ar, slots * sizeof **map)))
        return 0;
    memset(*map, 0, slots * sizeof **map);
    size_t base = (size_t)*b0 << AGGIDX_BLOCK_BITS;
    for (size_t i = 0; i < x->n; i++)
        (*map)[x->rows[i] - base] = (uint16_t)(i + 1);
    return 1;
}

/* The first row of each block [b0, b1) after time t, at or after from[] (NULL: the
 * block's first row); INT64_MIN: its first row, t >= maxts: its end.  The blocks are
 * searched side by side, one halving step of each at a time: their rows are far apart
 * in memory, and the steps of different blocks do not wait for each other.  len holds
 * b1 - b0 entries of scratch. */
static void blk_after(const aggblk *k, uint32_t b0, uint32_t b1, const uint32_t *from,
                      int64_t t, int64_t maxts, uint32_t *out, uint32_t *len)
{
    uint32_t nb = b1 - b0, more = 0;
    for (uint32_t i = 0; i < nb; i++) {
        uint32_t s = from ? from[i] : k->off[b0 + i], e = k->off[b0 + i + 1];
        out[i] = t >= maxts ? e : s;
        len[i] = t == INT64_MIN || t >= maxts ? 0 : e - s;
        more |= len[i] > 1;
    }
    const int64_t *ts = k->ts;
    while (more) { /* as upper(): out[i] + len[i] ends right after the last row <= t */
        more = 0;
        for (uint32_t i = 0; i < nb; i++) {
            uint32_t h = len[i] / 2;
            if (h == 0)
                continue;
            out[i] += (uint32_t)(ts[out[i] + h - 1] <= t) * h;
            len[i] -= h;
            more |= len[i] > 1;
        }
    }
    for (uint32_t i = 0; i < nb; i++)
        out[i] += len[i] == 1 && ts[out[i]] <= t;
}

/* Rows [from, to) of blocks [b0, b1), summed. */
static size_t blk_rows(uint32_t nb, const uint32_t *from, const uint32_t *to)
{
    size_t n = 0;
    for (uint32_t i = 0; i < nb; i++)
        n += to[i] - from[i];
    return n;
}

/* Adds the money (sum, modulo 2^64) or the number (cnt) of rows [from, to) of each
 * block [b0, b1) to their member's entry map[(block - b0) << AGGIDX_BLOCK_BITS | mem]
 * (see blk_span); neg: subtracts the money. */
static void blk_add(const aggblk *k, uint32_t b0, uint32_t b1, const uint32_t *from,
                    const uint32_t *to, const uint16_t *map, uint64_t *sum, uint32_t *cnt,
                    int neg)
{
    for (uint32_t b = b0; b < b1; b++) {
        size_t i = b - b0;
        if (b + BLK_AHEAD < b1) { /* later blocks' ranges start far from this one's */
            uint32_t r = from[i + BLK_AHEAD], e = to[i + BLK_AHEAD];
            for (int l = 0; l < 4 && r < e; l++, r += 8) {
                if (sum)
                    __builtin_prefetch(k->money + r);
                __builtin_prefetch(k->mem + r);
            }
        }
        const uint16_t *mp = map + (i << AGGIDX_BLOCK_BITS);
        if (sum && neg)
            for (uint32_t r = from[i]; r < to[i]; r++)
                sum[mp[k->mem[r]]] -= (uint64_t)k->money[r];
        else if (sum)
            for (uint32_t r = from[i]; r < to[i]; r++)
                sum[mp[k->mem[r]]] += (uint64_t)k->money[r];
        if (cnt)
            for (uint32_t r = from[i]; r < to[i]; r++)
                cnt[mp[k->mem[r]]]++;
    }
}

/* ---- columns --------------------------------------------------------------------- */

static void gather_num(const vcol *c, const uint32_t *rows, size_t n, double *out)
{
    const uint32_t *via = c->via;
    switch (c->st) {
    case VS_F64: {
        const double *d = c->data;
        for (size_t i = 0; i < n; i++)
            out[i] = d[via ? via[rows[i]] : rows[i]];
        break;
    }
    case VS_I64: {
        const int64_t *d = c->data;
        for (size_t i = 0; i < n; i++)
            out[i] = (double)d[via ? via[rows[i]] : rows[i]];
        break;
    }
    case VS_MONEY: {
        const int64_t *d = c->data;
        for (size_t i = 0; i < n; i++)
            out[i] = (double)d[via ? via[rows[i]] : rows[i]] / PATRON_MONEY_SCALE;
        break;
    }
    case VS_I32: {
        const int32_t *d = c->data;
        for (size_t i = 0; i < n; i++)
            out[i] = (double)d[via ? via[rows[i]] : rows[i]];
        break;
    }
    case VS_TS: {
        const int64_t *d = c->data;
        for (size_t i = 0; i < n; i++) {
            int64_t t = d[via ? via[rows[i]] : rows[i]];
            out[i] = t == PATRON_NULL_TS ? NAN : (double)t;
        }
        break;
    }
    case VS_DAYS: {
        const int32_t *d = c->data;
        for (size_t i = 0; i < n; i++) {
            int32_t t = d[via ? via[rows[i]] : rows[i]];
            out[i] = t == INT32_MIN ? NAN : (double)t * TIME_DAY;
        }
        break;
    }
    default:
        for (size_t i = 0; i < n; i++)
            out[i] = NAN;
        break;
    }
}

static void gather_code(const vcol *c, const uint32_t *rows, size_t n, uint32_t *out)
{
    if (c->st != VS_CODE) {
        memset(out, 0, n * sizeof *out);
        return;
    }
    const uint32_t *d = c->data, *via = c->via;
    for (size_t i = 0; i < n; i++)
        out[i] = d[via ? via[rows[i]] : rows[i]];
}

static void gather_bool(const vcol *c, const uint32_t *rows, size_t n, uint8_t *out)
{
    if (c->st != VS_BOOL) {
        memset(out, 2, n);
        return;
    }
    const uint8_t *d = c->data;
    const uint32_t *via = c->via;
    for (size_t i = 0; i < n; i++)
        out[i] = d[via ? via[rows[i]] : rows[i]];
}

/* ---- computed member fields ------------------------------------------------------- */

/* Net spend (orders minus returns) of member m in (from, to], money units. */
static int64_t net_spend(const ectx *x, uint32_t m, int64_t from, int64_t to)
{
    const mview *v = x->v;
    const patron_db *db = x->db;
    const stream *o = &v->streams[ST_ORDERS], *r = &v->streams[ST_RETURNS];
    int64_t s = 0;
    uint32_t a = upper(o->ts, o->beg[m], o->end[m], from),
             b = to >= x->orders_max ? o->end[m] : upper(o->ts, a, o->end[m], to);
    const uint32_t *oi = o->col[1];
    if (x->ps_orders)
        s += (int64_t)(x->ps_orders[b] - x->ps_orders[a]);
    else
        for (uint32_t k = a; k < b; k++)
            s += db->o_amount[oi[k]];
    const int64_t *ra = r->col[2];
    a = upper(r->ts, r->beg[m], r->end[m], from);
    b = to >= x->returns_max ? r->end[m] : upper(r->ts, a, r->end[m], to);
    if (x->ps_returns)
        s -= (int64_t)(x->ps_returns[b] - x->ps_returns[a]);
    else
        for (uint32_t k = a; k < b; k++)
            s -= ra[k];
    return s;
}

/* The net spend of member m in (now - 90d, now] (*s1) and (now - 180d, now - 90d] (*s0)
 * from the prefix sums: each stream searched once per window edge. */
static void spend_windows(const ectx *x, uint32_t m, int64_t now, int64_t *s1, int64_t *s0)
{
    const mview *v = x->v;
    const stream *o = &v->streams[ST_ORDERS], *r = &v->streams[ST_RETURNS];
    /* nothing in the last 90 days (bf_max: the latest order or return): no later edge
     * to look for */
    int quiet = v->bf_max[m] <= now - 90 * TIME_DAY;
    uint32_t a = upper(o->ts, o->beg[m], o->end[m], now - 180 * TIME_DAY);
    uint32_t b = quiet ? o->end[m] : upper(o->ts, a, o->end[m], now - 90 * TIME_DAY);
    uint32_t e = quiet || now >= x->orders_max ? o->end[m] : upper(o->ts, b, o->end[m], now);
    *s1 = (int64_t)(x->ps_orders[e] - x->ps_orders[b]);
    *s0 = (int64_t)(x->ps_orders[b] - x->ps_orders[a]);
    if (r->end[m] == r->beg[m])
        return;
    a = upper(r->ts, r->beg[m], r->end[m], now - 180 * TIME_DAY);
    b = quiet ? r->end[m] : upper(r->ts, a, r->end[m], now - 90 * TIME_DAY);
    e = quiet || now >= x->returns_max ? r->end[m] : upper(r->ts, b, r->end[m], now);
    *s1 -= (int64_t)(x->ps_returns[e] - x->ps_returns[b]);
    *s0 -= (int64_t)(x->ps_returns[b] - x->ps_returns[a]);
}

/* spend_trend from the net spend of the last 90 days (s1) and the 90 before (s0), in
 * money units: (s1 - s0) / max(s0, 1 unit of currency). */
static double trend_of(int64_t s1, int64_t s0)
{
    double d0 = (double)s0 / PATRON_MONEY_SCALE;
    return ((double)(s1 - s0) / PATRON_MONEY_SCALE) / (d0 > 1 ? d0 : 1);
}

/* The comparison with its operands swapped: c < f is f > c. */
static int cmp_mirror(int op)
{
    return op == CMP_LT ? CMP_GT : op == CMP_GT ? CMP_LT : op == CMP_LE ? CMP_GE
           : op == CMP_GE ? CMP_LE : op;
}

/* spend_trend of the batch from the blocks of orders and returns (see block passes): 1
 * done, 0 when the batch takes the member by member path. */
static int spend_blocks(ectx *x, double *out)
{
    uint32_t b0, b1;
    uint16_t *map;
    if (!blk_span(x, &b0, &b1, &map))
        return 0;
    const aggblk *ko = x->blk_orders, *kr = x->blk_returns;
    uint32_t nb = b1 - b0;
    uint32_t *w = aalloc(x->ar, 7 * (size_t)nb * sizeof *w);
    if (!w)
        return 0;
    uint32_t *o2 = w, *o1 = w + nb, *o0 = w + 2 * nb, *r2 = w + 3 * nb, *r1 = w + 4 * nb,
             *r0 = w + 5 * nb, *len = w + 6 * nb;
    int64_t now = x->now;
    blk_after(ko, b0, b1, NULL, now - 180 * TIME_DAY, x->orders_max, o2, len);
    blk_after(ko, b0, b1, o2, now - 90 * TIME_DAY, x->orders_max, o1, len);
    blk_after(ko, b0, b1, o1, now, x->orders_max, o0, len);
    blk_after(kr, b0, b1, NULL, now - 180 * TIME_DAY, x->returns_max, r2, len);
    blk_after(kr, b0, b1, r2, now - 90 * TIME_DAY, x->returns_max, r1, len);
    blk_after(kr, b0, b1, r1, now, x->returns_max, r0, len);
    if (blk_rows(nb, o2, o0) + blk_rows(nb, r2, r0) > BLK_ROWS * x->n)
        return 0;
    size_t ns = x->n + 1; /* entry 0: rows of members not in the batch */
    uint64_t *s1 = aalloc(x->ar, 2 * ns * sizeof *s1), *s0 = s1 + ns;
    if (!s1)
        return 0;
    memset(s1, 0, 2 * ns * sizeof *s1);
    blk_add(ko, b0, b1, o2, o1, map, s0, NULL, 0);
    blk_add(ko, b0, b1, o1, o0, map, s1, NULL, 0);
    blk_add(kr, b0, b1, r2, r1, map, s0, NULL, 1);
    blk_add(kr, b0, b1, r1, r0, map, s1, NULL, 1);
    size_t base = (size_t)b0 << AGGIDX_BLOCK_BITS;
    for (size_t i = 0; i < x->n; i++) {
        uint16_t j = map[x->rows[i] - base];
        out[i] = trend_of((int64_t)s1[j], (int64_t)s0[j]);
    }
    return 1;
}

static void computed(ectx *x, int which, double *out)
{
    if (which == F_SPEND_TREND && x->blk_orders && spend_blocks(x, out))
        return;
    const mview *v = x->v;
    const patron_db *db = x->db;
    const stream *o = &v->streams[ST_ORDERS];
    for (size_t i = 0; i < x->n; i++) {
        uint32_t m = x->rows[i];
        int64_t now = NOW(x, i);
        double r = NAN;
        if (which == F_SPEND_TREND && x->ps_orders && i + PREFETCH_AHEAD < x->n) {
            uint32_t pm = x->rows[i + PREFETCH_AHEAD], pb = o->beg[pm];
            __builtin_prefetch(o->ts + pb);
            __builtin_prefetch(x->ps_orders + pb);
            __builtin_prefetch(v->bf_max + pm);
        }
        switch (which) {
        case F_TENURE_DAYS:
            if (db->enrolled_at[m] != PATRON_NULL_TS)
                r = (double)(now - db->enrolled_at[m]) / TIME_DAY;
            break;
        case F_AGE:
        case F_DAYS_TO_BIRTHDAY: {
            int32_t bd = v->birth_days[m];
            if (bd == INT32_MIN)
                break;
            int by, bm, bdd, ny, nm, nd;
            time_civil_from_days(bd, &by, &bm, &bdd);
            int64_t today = row_today(x, i, &ny, &nm, &nd);
            if (which == F_AGE) {
                r = ny - by - ((nm < bm || (nm == bm && nd < bdd)) ? 1 : 0);
                break;
            }
            for (int y = ny; y <= ny + 1; y++) {
                int dd = bdd;
                if (bm == 2 && dd == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
                    dd = 28;
                int64_t cand = time_days_from_civil(y, (unsigned)bm, (unsigned)dd);
                if (cand >= today) {
                    r = (double)(cand - today);
                    break;
                }
            }
            break;
        }
        case F_RECENCY_DAYS: {
            if (v->bf_max[m] == PATRON_NULL_TS || v->bf_max[m] <= now) { /* every event visible */
                if (v->bf_last[m] != PATRON_NULL_TS)
                    r = (double)(now - v->bf_last[m]) / TIME_DAY;
                break;
            }
            uint32_t e = upper(o->ts, o->beg[m], o->end[m], now);
            if (e > o->beg[m])
                r = (double)(now - o->ts[e - 1]) / TIME_DAY;
            break;
        }
        case F_FREQUENCY:
            if (v->bf_max[m] == PATRON_NULL_TS || v->bf_max[m] <= now)
                r = (double)v->bf_freq[m];
            else
                r = (double)(upper(o->ts, o->beg[m], o->end[m], now) - o->beg[m]);
            break;
        case F_MONETARY:
            if (v->bf_max[m] == PATRON_NULL_TS || v->bf_max[m] <= now)
                r = (double)v->bf_money[m] / PATRON_MONEY_SCALE;
            else
                r = (double)net_spend(x, m, INT64_MIN, now) / PATRON_MONEY_SCALE;
            break;
        case F_AOV: {
            if (v->bf_max[m] == PATRON_NULL_TS || v->bf_max[m] <= now) {
                if (v->bf_freq[m])
                    r = (double)v->bf_money[m] / PATRON_MONEY_SCALE / v->bf_freq[m];
                break;
            }
            uint32_t f = upper(o->ts, o->beg[m], o->end[m], now) - o->beg[m];
            if (f)
                r = (double)net_spend(x, m, INT64_MIN, now) / PATRON_MONEY_SCALE / f;
            break;
        }
        case F_SPEND_TREND: {
            /* nothing in the last 180 days (bf_max: the latest order or return): 0 */
            if (v->bf_max[m] == PATRON_NULL_TS || v->bf_max[m] <= now - 180 * TIME_DAY) {
                r = 0;
                break;
            }
            if (x->ps_orders) {
                int64_t s1, s0;
                spend_windows(x, m, now, &s1, &s0);
                r = trend_of(s1, s0);
                break;
            }
            r = trend_of(net_spend(x, m, now - 90 * TIME_DAY, now),
                         net_spend(x, m, now - 180 * TIME_DAY, now - 90 * TIME_DAY));
            break;
        }
        default:
            break;
        }
        out[i] = r;
    }
}

/* ---- nodes ----------------------------------------------------------------------- */

static vec eval(ectx *x, const rnode *n);
static int64_t stream_enter(const stream *s, uint32_t m, int64_t now, int64_t w_to);
static int64_t stream_next(const stream *s, uint32_t m, int64_t now, int has_window,
                           int64_t w_from, int64_t w_to);
static int64_t *tnew(ectx *x);
static void ctx_init(ectx *x, const rule *r, patron_db *db, int64_t now, arena *ar);
static int64_t min64(int64_t a, int64_t b);
static void tmin(int64_t *dst, const int64_t *src, size_t n);

static uint32_t lit_code(const rnode *n)
{
    return n->code ? n->code : NOT_A_CODE;
}

static void fill_null(ectx *x, vec *r)
{
    r->d = vd(x);
    r->c = vc(x);
    r->b = vb(x);
    if (!r->d || !r->c || !r->b)
        return;
    for (size_t i = 0; i < x->n; i++)
        r->d[i] = NAN;
    memset(r->c, 0, x->n * sizeof *r->c);
    memset(r->b, 2, x->n);
}

static int cmp_d(int op, double a, double b)
{
    switch (op) {
    case CMP_EQ: return a == b;
    case CMP_NE: return a != b && !isnan(a) && !isnan(b);
    case CMP_LT: return a < b;
    case CMP_LE: return a <= b;
    case CMP_GT: return a > b;
    default: return a >= b;
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* The batch's values of ap->n (a windowed count, or sum or average of money) from its
 * blocks (see block passes): 1 done, 0 when the batch takes the member by member path. */
static int blk_values(ectx *x, const aggpre *ap, double *out)
{
    uint32_t b0, b1;
    uint16_t *map;
    if (!blk_span(x, &b0, &b1, &map))
        return 0;
    const rnode *n = ap->n;
    int64_t hi = x->now, lo = INT64_MIN;
    if (n->has_window) {
        lo = hi - n->w_from;
        hi -= n->w_to;
    }
    uint32_t nb = b1 - b0;
    uint32_t *from = aalloc(x->ar, 3 * (size_t)nb * sizeof *from), *to = from + nb,
             *len = to + nb;
    if (!from)
        return 0;
    blk_after(ap->blk, b0, b1, NULL, lo, INT64_MAX, from, len);
    blk_after(ap->blk, b0, b1, from, hi, ap->maxts, to, len);
    if (blk_rows(nb, from, to) > BLK_ROWS * x->n)
        return 0;
    size_t ns = x->n + 1; /* entry 0: rows of members not in the batch */
    int money = ap->ps != NULL, need_c = !money || n->op != AGG_SUM;
    uint64_t *sum = money ? aalloc(x->ar, ns * sizeof *sum) : NULL;
    uint32_t *cnt = need_c ? aalloc(x->ar, ns * sizeof *cnt) : NULL;
    if ((money && !sum) || (need_c && !cnt))
        return 0;
    if (sum)
        memset(sum, 0, ns * sizeof *sum);
    if (cnt)
        memset(cnt, 0, ns * sizeof *cnt);
    blk_add(ap->blk, b0, b1, from, to, map, sum, cnt, 0);
    size_t base = (size_t)b0 << AGGIDX_BLOCK_BITS;
    for (size_t i = 0; i < x->n; i++) {
        uint16_t j = map[x->rows[i] - base];
        uint32_t c = cnt ? cnt[j] : 0;
        if (!money) {
            out[i] = (double)c;
            continue;
        }
        double v = (double)(int64_t)sum[j] / PATRON_MONEY_SCALE;
        out[i] = n->op == AGG_SUM ? v : (c ? v / c : NAN);
    }
    return 1;
}

/* With first_kept (nm slots, where aggregates only): the time of each member's earliest
 * row in the window that passes the where, PATRON_NULL_TS when none does. */
static vec eval_agg_values(ectx *x, const rnode *n, int64_t *first_kept)
{
    vec r = {0};
    const stream *s = n->stream;
    size_t nm = x->n;
    r.d = vd(x);
    uint32_t *seg = aalloc(x->ar, (nm + 1) * sizeof *seg);
    if (!r.d || !seg)
        return r;
    int64_t hi_t = x->now, lo_t = INT64_MIN;
    for (size_t p = 0; !first_kept && p < x->n_pre; p++) {
        const aggpre *ap = &x->pre[p];
        if (ap->n != n)
            continue;
        if (ap->blk && blk_values(x, ap, r.d))
            return r;
        int need_c = !ap->ps || n->op != AGG_SUM;
        for (size_t i = 0; i < nm; i++) { /* counts and sums from the prefix arrays */
            if (i + PREFETCH_AHEAD < nm) { /* the rows a later member's search reads */
                uint32_t pb = s->beg[x->rows[i + PREFETCH_AHEAD]];
                __builtin_prefetch(s->ts + pb);
                __builtin_prefetch(ap->ps ? (const void *)(ap->ps + pb) : (const void *)(ap->pc + pb));
            }
            uint32_t m = x->rows[i], a = s->beg[m], b = s->end[m];
            hi_t = NOW(x, i);
            if (n->has_window) {
                lo_t = hi_t - n->w_from;
                hi_t -= n->w_to;
            }
            uint32_t e = hi_t >= ap->maxts ? b : upper(s->ts, a, b, hi_t);
            uint32_t st = lo_t == INT64_MIN ? a : upper(s->ts, a, e, lo_t);
            uint32_t c = need_c ? ap->pc[e] - ap->pc[st] : 0;
            if (!ap->ps) {
                r.d[i] = (double)c;
                continue;
            }
            double v = (double)(int64_t)(ap->ps[e] - ap->ps[st]) / PATRON_MONEY_SCALE;
            r.d[i] = n->op == AGG_SUM ? v : (c ? v / c : NAN);
        }
        return r;
    }
    /* Gather the rows in the window of every member of the batch. */
    size_t total = 0;
    uint32_t *lo = aalloc(x->ar, (nm ? nm : 1) * sizeof *lo);
    uint32_t *hi = aalloc(x->ar, (nm ? nm : 1) * sizeof *hi);
    if (!lo || !hi)
        return r;
    for (size_t i = 0; i < nm; i++) {
        uint32_t m = x->rows[i], a = s->beg[m], b = s->end[m];
        hi_t = NOW(x, i);
        if (n->has_window) {
            lo_t = hi_t - n->w_from;
            hi_t -= n->w_to;
        }
        uint32_t e = upper(s->ts, a, b, hi_t);
        uint32_t st = lo_t == INT64_MIN ? a : upper(s->ts, a, e, lo_t);
        lo[i] = st;
        hi[i] = e;
        seg[i] = (uint32_t)total;
        total += e - st;
    }
    seg[nm] = (uint32_t)total;
    const vcol *fc0 = n->sfield ? &n->sfield->col : NULL;
    if (!n->a && !fc0) { /* count of rows in the window: no row is looked at */
        for (size_t i = 0; i < nm; i++)
            r.d[i] = (double)(hi[i] - lo[i]);
        return r;
    }
    if (!n->a && fc0->st == VS_MONEY && (n->op == AGG_SUM || n->op == AGG_AVG)) {
        const int64_t *d = fc0->data; /* exact sums straight off the rows */
        const uint32_t *via = fc0->via;
        for (size_t i = 0; i < nm; i++) {
            int64_t sum = 0;
            if (via)
                for (uint32_t k = lo[i]; k < hi[i]; k++)
                    sum += d[via[k]];
            else
                for (uint32_t k = lo[i]; k < hi[i]; k++)
                    sum += d[k];
            double v = (double)sum / PATRON_MONEY_SCALE;
            uint32_t c = hi[i] - lo[i];
            r.d[i] = n->op == AGG_SUM ? v : (c ? v / c : NAN);
        }
        return r;
    }
    uint32_t *erows = aalloc(x->ar, (total ? total : 1) * sizeof *erows);
    if (!erows)
        return r;
    for (size_t i = 0; i < nm; i++)
        for (uint32_t k = lo[i]; k < hi[i]; k++)
            erows[seg[i] + (k - lo[i])] = k;
    uint8_t *keep = NULL;
    if (n->a && total) {
        ectx sub = *x;
        sub.rows = erows;
        sub.n = total;
        sub.event = 1;
        sub.want_due = 0;
        if (x->nows) { /* each event row takes its member's now */
            int64_t *en = aalloc(x->ar, (total ? total : 1) * sizeof *en);
            if (!en)
                return r;
            for (size_t i = 0; i < nm; i++)
                for (uint32_t k = seg[i]; k < seg[i + 1]; k++)
                    en[k] = x->nows[i];
            sub.nows = en;
        }
        vec w = eval(&sub, n->a);
        keep = w.b;
        if (!keep)
            return r;
    }
    if (first_kept)
        for (size_t i = 0; i < nm; i++) {
            first_kept[i] = PATRON_NULL_TS;
            for (uint32_t k = seg[i]; k < seg[i + 1]; k++)
                if (!keep || keep[k] == 1) {
                    first_kept[i] = s->ts[erows[k]];
                    break;
                }
        }
    const vcol *fc = n->sfield ? &n->sfield->col : NULL;
    int op = n->op;
    if (!fc) { /* count of rows */
        for (size_t i = 0; i < nm; i++) {
            uint32_t c = 0;
            for (uint32_t k = seg[i]; k < seg[i + 1]; k++)
                c += !keep || keep[k] == 1;
            r.d[i] = (double)c;
        }
        return r;
    }
    if (fc->type == VT_STR || fc->type == VT_BOOL) { /* count / count_distinct */
        uint32_t *codes = aalloc(x->ar, (total ? total : 1) * sizeof *codes);
        if (!codes)
            return r;
        if (fc->type == VT_STR) {
            gather_code(fc, erows, total, codes);
        } else {
            uint8_t *bb = aalloc(x->ar, total ? total : 1);
            if (!bb)
                return r;
            gather_bool(fc, erows, total, bb);
            for (size_t k = 0; k < total; k++)
                codes[k] = bb[k] == 2 ? 0 : (uint32_t)bb[k] + 1;
        }
        /* count_distinct over dictionary codes: a mark per code, stamped per member */
        uint32_t ncodes = fc->type == VT_STR && fc->dict ? fc->dict->n + 1 : 3;
        uint32_t *mark = op == AGG_COUNT_DISTINCT && ncodes <= (1u << 22)
                                 ? aalloc(x->ar, (size_t)ncodes * sizeof *mark)
                                 : NULL;
        if (mark) {
            memset(mark, 0, (size_t)ncodes * sizeof *mark);
            for (size_t i = 0; i < nm; i++) {
                uint32_t d = 0, stamp = (uint32_t)i + 1;
                for (uint32_t k = seg[i]; k < seg[i + 1]; k++) {
                    uint32_t cd = codes[k];
                    if ((!keep || keep[k] == 1) && cd && cd < ncodes && mark[cd] != stamp) {
                        mark[cd] = stamp;
                        d++;
                    }
                }
                r.d[i] = (double)d;
            }
            return r;
        }
        for (size_t i = 0; i < nm; i++) {
            uint32_t c = 0, w = seg[i];
            for (uint32_t k = seg[i]; k < seg[i + 1]; k++)
                if ((!keep || keep[k] == 1) && codes[k])
                    codes[w++] = codes[k];
            c = w - seg[i];
            if (op == AGG_COUNT_DISTINCT && c > 1) {
                qsort(codes + seg[i], c, sizeof *codes, cmp_u32);
                uint32_t d = 1;
                for (uint32_t k = seg[i] + 1; k < w; k++)
                    d += codes[k] != codes[k - 1];
                c = d;
            }
            r.d[i] = (double)c;
        }
        return r;
    }
    /* Numbers and timestamps.  Money sums are exact: summed in money units. */
    if (fc->st == VS_MONEY && (op == AGG_SUM || op == AGG_AVG)) {
        const int64_t *d = fc->data;
        for (size_t i = 0; i < nm; i++) {
            int64_t sum = 0;
            uint32_t c = 0;
            for (uint32_t k = seg[i]; k < seg[i + 1]; k++)
                if (!keep || keep[k] == 1) {
                    sum += d[fc->via ? fc->via[erows[k]] : erows[k]];
                    c++;
                }
            double v = (double)sum / PATRON_MONEY_SCALE;
            r.d[i] = op == AGG_SUM ? v : (c ? v / c : NAN);
        }
        return r;
    }
    double *vals = aalloc(x->ar, (total ? total : 1) * sizeof *vals);
    if (!vals)
        return r;
    gather_num(fc, erows, total, vals);
    for (size_t i = 0; i < nm; i++) {
        double acc = op == AGG_MIN ? INFINITY : op == AGG_MAX ? -INFINITY : 0;
        uint32_t c = 0, w = seg[i];
        for (uint32_t k = seg[i]; k < seg[i + 1]; k++) {
            if ((keep && keep[k] != 1) || isnan(vals[k]))
                continue;
            double v = vals[k];
            c++;
            if (op == AGG_MIN)
                acc = v < acc ? v : acc;
            else if (op == AGG_MAX)
                acc = v > acc ? v : acc;
            else if (op == AGG_COUNT_DISTINCT)
                vals[w++] = v;
            else
                acc += v;
        }
        switch (op) {
        case AGG_COUNT:
            r.d[i] = (double)c;
            break;
        case AGG_SUM:
            r.d[i] = acc;
            break;
        case AGG_AVG:
            r.d[i] = c ? acc / c : NAN;
            break;
        case AGG_MIN:
        case AGG_MAX:
            r.d[i] = c ? acc : NAN;
            break;
        default: {
            uint32_t d = c ? 1 : 0;
            if (c > 1) {
                qsort(vals + seg[i], c, sizeof *vals, cmp_double);
                for (uint32_t k = seg[i] + 1; k < w; k++)
                    d += vals[k] != vals[k - 1];
            }
            r.d[i] = (double)d;
            break;
        }
        }
    }
    return r;
}

static vec eval_agg(ectx *x, const rnode *n)
{
    /* A `where` that moves with time (days_since(ts) …) is looked at again later; one
     * that does not makes only the exits of the rows it keeps matter. */
    int moving = n->a && n->a->time_dependent;
    int64_t *fk = x->want_due && n->a && !moving && n->has_window
                      ? aalloc(x->ar, (x->n ? x->n : 1) * sizeof *fk)
                      : NULL;
    for (size_t i = 0; fk && i < x->n; i++)
        fk[i] = PATRON_NULL_TS;
    vec r = eval_agg_values(x, n, fk);
    if (!x->want_due || !r.d || !(r.t = tnew(x)))
        return r;
    for (size_t i = 0; i < x->n; i++) {
        int64_t t;
        if (fk) {
            t = stream_enter(n->stream, x->rows[i], NOW(x, i), n->w_to);
            if (fk[i] != PATRON_NULL_TS)
                t = min64(t, fk[i] + n->w_from);
        } else {
            t = stream_next(n->stream, x->rows[i], NOW(x, i), n->has_window, n->w_from, n->w_to);
        }
        r.t[i] = moving ? min64(t, NOW(x, i) + RECHECK_SECS) : t;
    }
    return r;
}

/* and / or: the right side runs only on the rows the left side leaves undecided. */
static vec eval_logic(ectx *x, const rnode *n)
{
    vec r = {0};
    vec l = eval(x, n->a);
    if (!l.b || !(r.b = vb(x)))
        return r;
    int is_and = n->kind == N_AND;
    uint32_t *open = aalloc(x->ar, (x->n ? x->n : 1) * sizeof *open);
    uint32_t *idx = aalloc(x->ar, (x->n ? x->n : 1) * sizeof *idx);
    if (!open || !idx)
        return (vec){0};
    size_t k = 0;
    for (size_t i = 0; i < x->n; i++) {
        int t = l.b[i] == 1;
        r.b[i] = (uint8_t)t;
        if (t == is_and) { /* and: left true -> ask right; or: left false -> ask right */
            open[k] = x->rows[i];
            idx[k++] = (uint32_t)i;
        }
    }
    if (k == 0) {
        r.t = l.t;
        return r;
    }
    ectx sub = *x;
    sub.rows = open;
    sub.n = k;
    if (x->nows) {
        int64_t *sn = aalloc(x->ar, k * sizeof *sn);
        if (!sn)
            return (vec){0};
        for (size_t j = 0; j < k; j++)
            sn[j] = x->nows[idx[j]];
        sub.nows = sn;
    }
    vec rr = eval(&sub, n->b);
    if (!rr.b)
        return (vec){0};
    for (size_t j = 0; j < k; j++)
        r.b[idx[j]] = rr.b[j] == 1;
    if (x->want_due && (l.t || rr.t)) {
        /* Rows the left side decided change only when the left side does.  Where the right
         * side decides alone -- and: it is not true; or: it is true -- the answer holds
         * until the right side changes, whatever the left side does meanwhile. */
        if (!(r.t = tnew(x)))
            return (vec){0};
        tmin(r.t, l.t, x->n);
        for (size_t j = 0; j < k; j++) {
            int64_t rt = rr.t ? rr.t[j] : NEVER;
            r.t[idx[j]] = (rr.b[j] == 1) != is_and ? rt : min64(r.t[idx[j]], rt);
        }
    }
    return r;
}

static vec eval_node(ectx *x, const rnode *n, vec *ch)
{
    vec r = {0};
    size_t nn = x->n;
    switch (n->kind) {
    case N_NUM:
    case N_DUR:
    case N_TS:
        if ((r.d = vd(x)))
            for (size_t i = 0; i < nn; i++)
                r.d[i] = n->num;
        return r;
    case N_STR:
        if ((r.c = vc(x)))
            for (size_t i = 0; i < nn; i++)
                r.c[i] = lit_code(n);
        return r;
    case N_BOOL:
        if ((r.b = vb(x)))
            memset(r.b, n->num != 0, nn);
        return r;
    case N_NULL:
    case N_LIST:
        fill_null(x, &r);
        return r;
    case N_FIELD:
        switch (n->ref) {
        case REF_COL:
            if (n->vc.st == VS_FN) { /* computed at each row's now */
                const vfn *f = n->fn;
                if (n->type == VT_STR && (r.c = vc(x))) {
                    for (size_t i = 0; i < nn; i++)
                        r.c[i] = f->code(f, x->rows[i], NOW(x, i));
                } else if (n->type != VT_STR && (r.d = vd(x))) {
                    for (size_t i = 0; i < nn; i++)
                        r.d[i] = f->num(f, x->rows[i], NOW(x, i));
                }
                return r;
            }
            /* fall through */
        case REF_EVENT:
            if (n->type == VT_STR) {
                if ((r.c = vc(x)))
                    gather_code(&n->vc, x->rows, nn, r.c);
            } else if (n->type == VT_BOOL) {
                if ((r.b = vb(x)))
                    gather_bool(&n->vc, x->rows, nn, r.b);
            } else if ((r.d = vd(x))) {
                gather_num(&n->vc, x->rows, nn, r.d);
            }
            return r;
        case REF_MEMBER_ID:
            if ((r.c = vc(x)))
                for (size_t i = 0; i < nn; i++)
                    r.c[i] = x->rows[i] + 1;
            return r;
        case REF_CONSENT:
            if ((r.b = vb(x)))
                for (size_t i = 0; i < nn; i++)
                    r.b[i] = (uint8_t)db_consent(x->db, x->rows[i], n->which, NOW(x, i));
            return r;
        case REF_COMPUTED:
            if ((r.d = vd(x)))
                computed(x, n->which, r.d);
            return r;
        default:
            fill_null(x, &r);
            return r;
        }
    case N_AGG:
        return eval_agg(x, n);
    case N_INSEG:
        if (n->a)
            return ch[0] = eval(x, n->a);
        if ((r.b = vb(x)))
            for (size_t i = 0; i < nn; i++)
                r.b[i] = n->bitmap &&
                         roaring_bitmap_contains((const roaring_bitmap_t *)n->bitmap, x->rows[i]);
        return r;
    case N_DAYS_SINCE: {
        vec a = eval(x, n->a);
        ch[0] = a;
        if (!a.d || !(r.d = vd(x)))
            return (vec){0};
        for (size_t i = 0; i < nn; i++)
            r.d[i] = ((double)NOW(x, i) - a.d[i]) / TIME_DAY;
        return r;
    }
    case N_NEG: {
        vec a = eval(x, n->a);
        ch[0] = a;
        if (!a.d || !(r.d = vd(x)))
            return (vec){0};
        for (size_t i = 0; i < nn; i++)
            r.d[i] = -a.d[i];
        return r;
    }
    case N_ARITH: {
        vec a = eval(x, n->a), b = eval(x, n->b);
        ch[0] = a, ch[1] = b;
        if (!a.d || !b.d || !(r.d = vd(x)))
            return (vec){0};
        switch (n->op) {
        case '+':
            for (size_t i = 0; i < nn; i++)
                r.d[i] = a.d[i] + b.d[i];
            break;
        case '-':
            for (size_t i = 0; i < nn; i++)
                r.d[i] = a.d[i] - b.d[i];
            break;
        case '*':
            for (size_t i = 0; i < nn; i++)
                r.d[i] = a.d[i] * b.d[i];
            break;
        default:
            for (size_t i = 0; i < nn; i++)
                r.d[i] = b.d[i] == 0 ? NAN : a.d[i] / b.d[i];
            break;
        }
        return r;
    }
    case N_CMP: {
        vec a = eval(x, n->a), b = eval(x, n->b);
        ch[0] = a, ch[1] = b;
        if (!(r.b = vb(x)))
            return r;
        vtype t = n->a->type == VT_NULL ? n->b->type : n->a->type;
        if (t == VT_STR) {
            if (!a.c || !b.c)
                return (vec){0};
            int ne = n->op == CMP_NE;
            for (size_t i = 0; i < nn; i++)
                r.b[i] = a.c[i] && b.c[i] && ((a.c[i] == b.c[i]) != ne);
        } else if (t == VT_BOOL) {
            if (!a.b || !b.b)
                return (vec){0};
            int ne = n->op == CMP_NE;
            for (size_t i = 0; i < nn; i++)
                r.b[i] = a.b[i] != 2 && b.b[i] != 2 && ((a.b[i] == b.b[i]) != ne);
        } else {
            if (!a.d || !b.d)
                return (vec){0};
            const double *p = a.d, *q = b.d;
            switch (n->op) { /* one loop per operator: no call or switch per row */
            case CMP_EQ:
                for (size_t i = 0; i < nn; i++)
                    r.b[i] = p[i] == q[i];
                break;
            case CMP_LT:
                for (size_t i = 0; i < nn; i++)
                    r.b[i] = p[i] < q[i];
                break;
            case CMP_LE:
                for (size_t i = 0; i < nn; i++)
                    r.b[i] = p[i] <= q[i];
                break;
            case CMP_GT:
                for (size_t i = 0; i < nn; i++)
                    r.b[i] = p[i] > q[i];
                break;
            case CMP_GE:
                for (size_t i = 0; i < nn; i++)
                    r.b[i] = p[i] >= q[i];
                break;
            default:
                for (size_t i = 0; i < nn; i++)
                    r.b[i] = (uint8_t)cmp_d(n->op, p[i], q[i]);
                break;
            }
        }
        return r;
    }
    case N_BETWEEN: {
        vec a = eval(x, n->a), lo = eval(x, n->b), hi = eval(x, n->c);
        ch[0] = a, ch[1] = lo, ch[2] = hi;
        if (!a.d || !lo.d || !hi.d || !(r.b = vb(x)))
            return (vec){0};
        for (size_t i = 0; i < nn; i++)
            r.b[i] = a.d[i] >= lo.d[i] && a.d[i] <= hi.d[i];
        return r;
    }
    case N_IN: {
        vec a = eval(x, n->a);
        ch[0] = a;
        if (!(r.b = vb(x)))
            return r;
        int neg = n->op;
        if (n->b->kind != N_LIST) { /* tag membership */
            const mview *v = x->v;
            if (!a.c)
                return (vec){0};
            for (size_t i = 0; i < nn; i++) {
                uint32_t m = x->rows[i], code = a.c[i];
                if (code == 0) {
                    r.b[i] = 0;
                    continue;
                }
                int found = 0;
                for (uint32_t k = v->tag_beg[m]; k < v->tag_end[m] && !found; k++)
                    found = v->tags[k] == code;
                r.b[i] = (uint8_t)(found != neg);
            }
            return r;
        }
        const rnode *l = n->b;
        vtype t = n->a->type;
        if (t == VT_STR) {
            if (!a.c)
                return (vec){0};
            for (size_t i = 0; i < nn; i++) {
                int found = 0;
                for (size_t k = 0; k < l->n_items && !found; k++)
                    found = l->items[k]->kind == N_STR && l->items[k]->code == a.c[i];
                r.b[i] = a.c[i] != 0 && found != neg;
            }
        } else if (t == VT_BOOL) {
            if (!a.b)
                return (vec){0};
            for (size_t i = 0; i < nn; i++) {
                int found = 0;
                for (size_t k = 0; k < l->n_items && !found; k++)
                    found = l->items[k]->kind == N_BOOL && (l->items[k]->num != 0) == (a.b[i] == 1);
                r.b[i] = a.b[i] != 2 && found != neg;
            }
        } else if (t == VT_NULL) {
            memset(r.b, 0, nn);
        } else {
            if (!a.d)
                return (vec){0};
            for (size_t i = 0; i < nn; i++) {
                int found = 0;
                for (size_t k = 0; k < l->n_items && !found; k++)
                    found = l->items[k]->kind != N_NULL && l->items[k]->num == a.d[i];
                r.b[i] = !isnan(a.d[i]) && found != neg;
            }
        }
        return r;
    }
    case N_ISNULL: {
        vec a = eval(x, n->a);
        ch[0] = a;
        if (!(r.b = vb(x)))
            return r;
        int neg = n->op;
        vtype t = n->a->type;
        for (size_t i = 0; i < nn; i++) {
            int isnull = t == VT_NULL ? 1
                         : t == VT_STR ? (a.c && a.c[i] == 0)
                         : t == VT_BOOL ? (a.b && a.b[i] == 2)
                                        : (a.d && isnan(a.d[i]));
            r.b[i] = (uint8_t)(isnull != neg);
        }
        if ((t == VT_STR && !a.c) || (t == VT_BOOL && !a.b) ||
            ((t == VT_NUM || t == VT_TS || t == VT_DUR) && !a.d))
            return (vec){0};
        return r;
    }
    case N_NOT: {
        vec a = eval(x, n->a);
        ch[0] = a;
        if (!a.b || !(r.b = vb(x)))
            return (vec){0};
        for (size_t i = 0; i < nn; i++)
            r.b[i] = a.b[i] != 1;
        return r;
    }
    case N_AND:
    case N_OR:
        return eval_logic(x, n);
    }
    return r;
}

/* ---- when values change with time alone ------------------------------------------- */

static int64_t *tnew(ectx *x)
{
    int64_t *t = aalloc(x->ar, (x->n ? x->n : 1) * sizeof *t);
    if (t)
        for (size_t i = 0; i < x->n; i++)
            t[i] = NEVER;
    return t;
}

static void tmin(int64_t *dst, const int64_t *src, size_t n)
{
    if (dst && src)
        for (size_t i = 0; i < n; i++)
            dst[i] = src[i] < dst[i] ? src[i] : dst[i];
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* The next instant after now at which member m's rows of stream s in the window
 * (now - w_from, now - w_to] change: a row leaves at ts + w_from, enters at ts + w_to
 * (a future row, ts > now, becomes visible at ts). */
static int64_t stream_next(const stream *s, uint32_t m, int64_t now, int has_window,
                           int64_t w_from, int64_t w_to)
{
    uint32_t a = s->beg[m], b = s->end[m];
    if (a == b)
        return NEVER;
    const int64_t *ts = s->ts;
    int64_t best = NEVER;
    if (!has_window) {
        uint32_t f = upper(ts, a, b, now);
        return f < b ? ts[f] : NEVER;
    }
    uint32_t e = upper(ts, a, b, now - w_from);
    if (e < b)
        best = ts[e] + w_from;
    uint32_t g = upper(ts, a, b, now - w_to);
    if (g < b)
        best = min64(best, ts[g] + w_to);
    return best;
}

/* The next instant after now at which a row of member m comes into the window
 * (now - w_from, now - w_to]: at ts + w_to. */
static int64_t stream_enter(const stream *s, uint32_t m, int64_t now, int64_t w_to)
{
    uint32_t g = upper(s->ts, s->beg[m], s->end[m], now - w_to);
    return g < s->end[m] ? s->ts[g] + w_to : NEVER;
}

/* The first second after now at which a (rate sa) compared with b (rate sb) can flip:
 * the crossing instant, and the two seconds after it (re-evaluating a second early is
 * harmless; rounding in the values cannot make the flip be missed). */
static int64_t crossing(int64_t now, double a, double b, double sa, double sb)
{
    double ds = sa - sb;
    if (ds == 0 || isnan(a) || isnan(b) || isnan(ds))
        return NEVER;
    double at = (double)now + (b - a) / ds;
    if (!(at < 9.0e18) || !(at > -9.0e18))
        return NEVER;
    double f = floor(at);
    for (int k = 0; k < 3; k++)
        if (f + k > (double)now)
            return (int64_t)(f + k);
    return NEVER;
}

static void field_due(ectx *x, const rnode *n, vec *r)
{
    const mview *v = x->v;
    size_t nn = x->n;
    if (n->ref == REF_CONSENT) {
        if (!(r->t = tnew(x)))
            return;
        for (size_t i = 0; i < nn; i++) {
            int64_t now = NOW(x, i);
            uint32_t m = x->rows[i];
            int64_t ex = v->consent_expires[n->which][m];
            if (v->consent[n->which][m] == CONSENT_GRANTED && ex != PATRON_NULL_TS && ex > now)
                r->t[i] = ex;
        }
        return;
    }
    if (n->ref == REF_COL && n->vc.st == VS_FN && n->fn->next) {
        if (!(r->t = tnew(x)))
            return;
        const vfn *f = n->fn;
        for (size_t i = 0; i < nn; i++)
            r->t[i] = f->next(f, x->rows[i], NOW(x, i));
        return;
    }
    if (n->ref != REF_COMPUTED)
        return;
    if (!(r->t = tnew(x)))
        return;
    const stream *o = &v->streams[ST_ORDERS], *rt = &v->streams[ST_RETURNS];
    int rate = n->which == F_RECENCY_DAYS || n->which == F_TENURE_DAYS;
    if (rate && !(r->s = aalloc(x->ar, (nn ? nn : 1) * sizeof *r->s)))
        return;
    for (size_t i = 0; i < nn; i++) {
        uint32_t m = x->rows[i];
        int64_t t = NEVER, now = NOW(x, i);
        int ny, nm, nd;
        int64_t today = row_today(x, i, &ny, &nm, &nd);
        switch (n->which) {
        case F_FREQUENCY:
        case F_RECENCY_DAYS:
            t = stream_next(o, m, now, 0, 0, 0);
            break;
        case F_MONETARY:
        case F_AOV:
            t = min64(stream_next(o, m, now, 0, 0, 0), stream_next(rt, m, now, 0, 0, 0));
            break;
        case F_SPEND_TREND:
            t = min64(min64(stream_next(o, m, now, 1, 90 * TIME_DAY, 0),
                            stream_next(o, m, now, 1, 180 * TIME_DAY, 90 * TIME_DAY)),
                      min64(stream_next(rt, m, now, 1, 90 * TIME_DAY, 0),
                            stream_next(rt, m, now, 1, 180 * TIME_DAY, 90 * TIME_DAY)));
            break;
        case F_DAYS_TO_BIRTHDAY:
            if (v->birth_days[m] != INT32_MIN)
                t = (today + 1) * TIME_DAY;
            break;
        case F_AGE: {
            int32_t bd = v->birth_days[m];
            if (bd == INT32_MIN)
                break;
            int by, bm, bdd;
            time_civil_from_days(bd, &by, &bm, &bdd);
            for (int y = ny; y <= ny + 1 && t == NEVER; y++) {
                int dd = bdd;
                if (bm == 2 && dd == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
                    dd = 28;
                int64_t cand = time_days_from_civil(y, (unsigned)bm, (unsigned)dd);
                if (cand > today)
                    t = cand * TIME_DAY;
            }
            break;
        }
        default:
            break;
        }
        r->t[i] = t;
        if (rate)
            r->s[i] = isnan(r->d[i]) ? 0 : 1.0 / TIME_DAY;
    }
}

/* days_to_birthday of a member born on day bd, on day `day`. */
static int64_t dtb_on(int32_t bd, int64_t day)
{
    int by, bm, bdd, ny, nm, nd;
    time_civil_from_days(bd, &by, &bm, &bdd);
    time_civil_from_days(day, &ny, &nm, &nd);
    for (int y = ny; y <= ny + 1; y++) {
        int dd = bdd;
        if (bm == 2 && dd == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
            dd = 28;
        int64_t cand = time_days_from_civil(y, (unsigned)bm, (unsigned)dd);
        if (cand >= day)
            return cand - day;
    }
    return 0;
}

static int cmp_holds(int op, double a, double b)
{
    switch (op) {
    case CMP_EQ: return a == b;
    case CMP_NE: return a != b;
    case CMP_LT: return a < b;
    case CMP_LE: return a <= b;
    case CMP_GT: return a > b;
    default: return a >= b;
    }
}

/* `days_to_birthday CMP c`: the value counts down one a day and jumps back after the
 * birthday, so the answer can only flip on a few days around (birthday - c) and the
 * birthday: the first of those on which it differs from today's is the next instant. */
static int64_t dtb_flip(int32_t bd, int64_t today, int op, double c, int swapped)
{
    int64_t b = today + dtb_on(bd, today); /* next birthday (today if it is today) */
    int64_t cc = (int64_t)floor(c);
    int64_t cands[8] = {b - cc - 1, b - cc, b - cc + 1, b + 1, b, b - cc + 365, b - cc + 366, b + 366};
    double v0 = (double)dtb_on(bd, today);
    int now_holds = swapped ? cmp_holds(op, c, v0) : cmp_holds(op, v0, c);
    int64_t best = NEVER;
    for (int i = 0; i < 8; i++) {
        int64_t d = cands[i];
        if (d <= today || d * TIME_DAY >= best)
            continue;
        double v = (double)dtb_on(bd, d);
        int h = swapped ? cmp_holds(op, c, v) : cmp_holds(op, v, c);
        if (h != now_holds)
            best = d * TIME_DAY;
    }
    return best;
}

static int is_dtb(const rnode *n)
{
    return n->kind == N_FIELD && n->ref == REF_COMPUTED && n->which == F_DAYS_TO_BIRTHDAY;
}

static int is_num_const(const rnode *n)
{
    return n->kind == N_NUM || n->kind == N_DUR;
}

/* A windowed count of a stream's rows (no field, no where). */
static int is_plain_count(const rnode *n)
{
    return n->kind == N_AGG && n->op == AGG_COUNT && !n->sfield && !n->a && n->has_window;
}

/* A windowed sum of a money field (no where). */
static int is_plain_money_sum(const rnode *n)
{
    return n->kind == N_AGG && n->op == AGG_SUM && n->sfield && n->sfield->col.st == VS_MONEY &&
           !n->a && n->has_window;
}

static int flip_known(const rnode *n)
{
    return is_plain_count(n) || is_plain_money_sum(n);
}

static int is_trend(const rnode *n)
{
    return n->kind == N_FIELD && n->ref == REF_COMPUTED && n->which == F_SPEND_TREND;
}

/* A windowed max or min of a number field (no where). */
static int is_plain_extremum(const rnode *n)
{
    return n->kind == N_AGG && (n->op == AGG_MAX || n->op == AGG_MIN) && n->sfield &&
           n->sfield->col.type == VT_NUM && !n->a && n->has_window;
}

/* A sweep of a member's rows through time: each run is a slice [j, end) of a stream
 * whose rows each do something at ts + off (come into a window, or leave it), in time
 * order; sweep_next is the earliest instant of any run. */
typedef struct srun {
    const int64_t *ts;
    uint32_t j, end;
    int64_t off;
} srun;

static int64_t sweep_next(const srun *r, int n)
{
    int64_t t = NEVER;
    for (int i = 0; i < n; i++)
        if (r[i].j < r[i].end)
            t = min64(t, r[i].ts[r[i].j] + r[i].off);
    return t;
}

/* `spend_trend CMP c`: the trend compares the net spend of the last 90 days (s1) with
 * the 90 before (s0).  Without new rows, a row moves from s1 to s0 at ts + 90d and
 * leaves s0 at ts + 180d, and the trend changes only then: the first of those instants
 * at which the answer flips -- unless a row comes in first -- is the next one.  The
 * value is computed as computed() does, so the answer is the same bits. */
static int64_t trend_flip(const ectx *x, uint32_t m, int64_t now, int op, double c, int swapped)
{
    const mview *v = x->v;
    const stream *o = &v->streams[ST_ORDERS], *rt = &v->streams[ST_RETURNS];
    const int64_t w1 = 90 * TIME_DAY, w2 = 180 * TIME_DAY;
    const uint32_t *oi = o->col[1];
    const int64_t *ra = rt->col[2];
    uint32_t ob = o->end[m], rb = rt->end[m];
    uint32_t o2 = upper(o->ts, o->beg[m], ob, now - w2), o1 = upper(o->ts, o2, ob, now - w1),
             o0 = upper(o->ts, o1, ob, now);
    uint32_t r2 = upper(rt->ts, rt->beg[m], rb, now - w2), r1 = upper(rt->ts, r2, rb, now - w1),
             r0 = upper(rt->ts, r1, rb, now);
    int64_t enter = min64(o0 < ob ? o->ts[o0] : NEVER, r0 < rb ? rt->ts[r0] : NEVER);
    int64_t s1 = 0, s0 = 0;
    for (uint32_t j = o2; j < o0; j++)
        *(j < o1 ? &s0 : &s1) += x->db->o_amount[oi[j]];
    for (uint32_t j = r2; j < r0; j++)
        *(j < r1 ? &s0 : &s1) -= ra[j];
    /* runs: into s0 (orders, returns), out of s0 (orders, returns) */
    srun run[4] = {{o->ts, o1, o0, w1}, {rt->ts, r1, r0, w1}, {o->ts, o2, o0, w2}, {rt->ts, r2, r0, w2}};
    double tr = trend_of(s1, s0);
    int holds = swapped ? cmp_holds(op, c, tr) : cmp_holds(op, tr, c);
    for (;;) {
        int64_t t = sweep_next(run, 4);
        if (t >= enter)
            return enter; /* NEVER when nothing is left */
        for (int k = 0; k < 4; k++)
            for (srun *q = &run[k]; q->j < q->end && q->ts[q->j] + q->off == t; q->j++) {
                int64_t amt = k % 2 == 0 ? x->db->o_amount[oi[q->j]] : -ra[q->j];
                if (k < 2)
                    s1 -= amt, s0 += amt;
                else
                    s0 -= amt;
            }
        tr = trend_of(s1, s0);
        if ((swapped ? cmp_holds(op, c, tr) : cmp_holds(op, tr, c)) != holds)
            return t;
    }
}

/* ---- arithmetic over windowed counts and money sums ----
 * `sum(orders.amount, 90d) < 0.5 * sum(orders.amount, 180d..90d)` and the like: both
 * sides built from constants, + - * /, negation and windowed counts or money sums (no
 * where).  Each aggregate changes only when one of the member's rows enters its window
 * (at ts + w_to) or leaves it (at ts + w_from); sweeping those instants in order and
 * computing the comparison as the evaluator does finds the first at which it flips. */
enum { WX_MAXAGG = 4 };

static int wx_collect(const rnode *n, const rnode **aggs, int *na)
{
    switch (n->kind) {
    case N_NUM:
    case N_DUR:
        return 1;
    case N_NEG:
        return wx_collect(n->a, aggs, na);
    case N_ARITH:
        return wx_collect(n->a, aggs, na) && wx_collect(n->b, aggs, na);
    case N_AGG:
        if (!flip_known(n) || *na >= WX_MAXAGG)
            return 0;
        aggs[(*na)++] = n;
        return 1;
    default:
        return 0;
    }
}

static double wx_value(const rnode *n, const rnode *const *aggs, const int64_t *acc, int na)
{
    switch (n->kind) {
    case N_NEG:
        return -wx_value(n->a, aggs, acc, na);
    case N_ARITH: {
        double a = wx_value(n->a, aggs, acc, na), b = wx_value(n->b, aggs, acc, na);
        switch (n->op) {
        case '+': return a + b;
        case '-': return a - b;
        case '*': return a * b;
        default: return b == 0 ? NAN : a / b;
        }
    }
    case N_AGG:
        for (int i = 0; i < na; i++)
            if (aggs[i] == n)
                return n->op == AGG_SUM ? (double)acc[i] / PATRON_MONEY_SCALE : (double)acc[i];
        return NAN;
    default:
        return n->num;
    }
}

static int64_t wx_row(const rnode *agg, uint32_t j)
{
    if (agg->op != AGG_SUM)
        return 1;
    const vcol *f = &agg->sfield->col;
    return ((const int64_t *)f->data)[f->via ? f->via[j] : j];
}

static int64_t wx_flip(uint32_t m, int64_t now, const rnode *cmp, const rnode *const *aggs, int na)
{
    int64_t acc[WX_MAXAGG] = {0};
    srun run[2 * WX_MAXAGG]; /* per aggregate: rows leaving, rows coming in */
    for (int i = 0; i < na; i++) {
        const rnode *g = aggs[i];
        const stream *s = g->stream;
        uint32_t b = s->end[m];
        uint32_t first = upper(s->ts, s->beg[m], b, now - g->w_from);
        uint32_t last = upper(s->ts, first, b, now - g->w_to);
        for (uint32_t j = first; j < last; j++)
            acc[i] += wx_row(g, j);
        run[2 * i] = (srun){s->ts, first, b, g->w_from};
        run[2 * i + 1] = (srun){s->ts, last, b, g->w_to};
    }
    int holds = cmp_d(cmp->op, wx_value(cmp->a, aggs, acc, na), wx_value(cmp->b, aggs, acc, na));
    for (;;) {
        int64_t t = sweep_next(run, 2 * na);
        if (t == NEVER)
            return NEVER;
        for (int k = 0; k < 2 * na; k++)
            for (srun *q = &run[k]; q->j < q->end && q->ts[q->j] + q->off == t; q->j++)
                acc[k / 2] += k % 2 ? wx_row(aggs[k / 2], q->j) : -wx_row(aggs[k / 2], q->j);
        if (cmp_d(cmp->op, wx_value(cmp->a, aggs, acc, na), wx_value(cmp->b, aggs, acc, na)) != holds)
            return t;
    }
}

static int is_age(const rnode *n)
{
    return n->kind == N_FIELD && n->ref == REF_COMPUTED && n->which == F_AGE;
}

/* Midnight (UTC) of the day a member born on day bd turns `age`: the birthday, or 1 March
 * for 29 February in a common year (as computed() counts ages). */
static int64_t age_instant(int32_t bd, int64_t age)
{
    int by, bm, bdd;
    time_civil_from_days(bd, &by, &bm, &bdd);
    int64_t y = by + age;
    if (bm == 2 && bdd == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return time_days_from_civil((int)y, 3, 1) * TIME_DAY;
    return time_days_from_civil((int)y, (unsigned)bm, (unsigned)bdd) * TIME_DAY;
}

/* `age CMP c` and `age between lo and hi` with constants: age grows by one at each
 * birthday, so the answer changes only when it crosses a bound: the first such birthday
 * is the member's next instant. */
static int64_t age_flip(const ectx *x, size_t i, const rnode *n)
{
    int32_t bd = x->v->birth_days[x->rows[i]];
    if (bd == INT32_MIN)
        return NEVER;
    int by, bm, bdd, ny, nm, nd;
    time_civil_from_days(bd, &by, &bm, &bdd);
    row_today(x, i, &ny, &nm, &nd);
    int64_t a = ny - by - ((nm < bm || (nm == bm && nd < bdd)) ? 1 : 0);
    double bounds[2];
    int nb = 0, swapped = 0;
    if (n->kind == N_BETWEEN) {
        bounds[nb++] = n->b->num;
        bounds[nb++] = n->c->num;
    } else {
        swapped = is_age(n->b);
        bounds[nb++] = swapped ? n->a->num : n->b->num;
    }
#define AGE_HOLDS(A)                                                                               \
    (n->kind == N_BETWEEN ? ((double)(A) >= bounds[0] && (double)(A) <= bounds[1])                 \
     : swapped             ? cmp_d(n->op, bounds[0], (double)(A))                                 \
                           : cmp_d(n->op, (double)(A), bounds[0]))
    int now_holds = AGE_HOLDS(a);
    int64_t best = INT64_MAX;
    for (int k = 0; k < nb; k++) {
        if (!(fabs(bounds[k]) < 1e6))
            continue;
        int64_t f = (int64_t)floor(bounds[k]);
        for (int64_t cand = f - 1; cand <= f + 2; cand++)
            if (cand > a && cand < best && AGE_HOLDS(cand) != now_holds)
                best = cand;
    }
#undef AGE_HOLDS
    return best == INT64_MAX ? NEVER : age_instant(bd, best);
}

/* A windowed count_distinct of a string field (no where). */
static int is_plain_distinct(const rnode *n)
{
    return n->kind == N_AGG && n->op == AGG_COUNT_DISTINCT && n->sfield &&
           n->sfield->col.type == VT_STR && !n->a && n->has_window;
}

/* `count_distinct(S.f, w) CMP c`: the distinct count changes only when a row brings a
 * value the window does not hold, or the last row of a value leaves; sweeping the rows'
 * entries (ts + w_to) and exits (ts + w_from) in order with a count per value finds the
 * first instant at which the answer flips. */
/* The slot of code in an open-addressing table of `slots` (a power of two) entries,
 * claimed with count 0 when new; the table never fills (callers bound the codes). */
static uint32_t dslot(uint32_t *key, int32_t *cnt, uint32_t slots, uint32_t code)
{
    uint32_t h = (code * 2654435761u) & (slots - 1);
    while (key[h] && key[h] != code)
        h = (h + 1) & (slots - 1);
    if (!key[h])
        key[h] = code, cnt[h] = 0;
    return h;
}

static int64_t distinct_flip(uint32_t m, int64_t now, const rnode *agg, int op, double c,
                             int swapped)
{
    const stream *s = agg->stream;
    const vcol *f = &agg->sfield->col;
    uint32_t b = s->end[m];
    uint32_t first = upper(s->ts, s->beg[m], b, now - agg->w_from);
    uint32_t last = upper(s->ts, first, b, now - agg->w_to);
    enum { SLOTS = 1024 };
    if (b - first > SLOTS / 2)
        return stream_next(s, m, now, 1, agg->w_from, agg->w_to); /* many rows: every edge */
    uint32_t key[SLOTS];
    int32_t cnt[SLOTS];
    memset(key, 0, sizeof key);
    int64_t d = 0;
    for (uint32_t j = first; j < last; j++) {
        uint32_t code = vcol_code(f, j);
        if (code)
            d += cnt[dslot(key, cnt, SLOTS, code)]++ == 0;
    }
    srun run[2] = {{s->ts, first, b, agg->w_from}, {s->ts, last, b, agg->w_to}};
    int holds = swapped ? cmp_d(op, c, (double)d) : cmp_d(op, (double)d, c);
    for (;;) {
        int64_t t = sweep_next(run, 2);
        if (t == NEVER)
            return NEVER;
        for (int k = 0; k < 2; k++)
            for (srun *q = &run[k]; q->j < q->end && q->ts[q->j] + q->off == t; q->j++) {
                uint32_t code = vcol_code(f, q->j);
                if (!code)
                    continue; /* null: not a value */
                int32_t *n = &cnt[dslot(key, cnt, SLOTS, code)];
                if (k == 1)
                    d += (*n)++ == 0;
                else
                    d -= --(*n) == 0;
            }
        if ((swapped ? cmp_d(op, c, (double)d) : cmp_d(op, (double)d, c)) != holds)
            return t;
    }
}

/* `max(S.f, w) CMP c` (or min), CMP one of < <= > >=: with rows only leaving (oldest
 * first), the answer (true, false, or null once no value is left) is a function of
 * whether a "witness" row is left (max > c: a row > c; max < c: a row >= c; min mirrored)
 * and whether any non-null row is: it changes at the exit of the last witness when there
 * is one, else when the last value leaves -- unless a row comes in first. */
static int64_t extremum_flip(const stream *s, uint32_t m, int64_t now, const rnode *agg, int op,
                             double c, int swapped)
{
    if (swapped) /* c CMP agg  ==  agg CMP' c */
        op = cmp_mirror(op);
    if (op == CMP_EQ || op == CMP_NE)
        return stream_next(s, m, now, 1, agg->w_from, agg->w_to);
    const int64_t *ts = s->ts;
    uint32_t a = s->beg[m], b = s->end[m];
    uint32_t first = upper(ts, a, b, now - agg->w_from), last = upper(ts, a, b, now - agg->w_to);
    int64_t enter = last < b ? ts[last] + agg->w_to : NEVER;
    /* a witness is a row that decides the answer while it is in the window */
    /* max: a row above c (> c for > and <=, >= c for >= and <); min: below, mirrored */
    int up = agg->op == AGG_MAX;
    int incl = up ? op == CMP_GE || op == CMP_LT : op == CMP_LE || op == CMP_GT;
    int64_t last_wit = PATRON_NULL_TS, last_val = PATRON_NULL_TS;
    for (uint32_t j = first; j < last; j++) {
        double val = vcol_num(&agg->sfield->col, j);
        if (isnan(val))
            continue;
        last_val = ts[j];
        if (up ? (incl ? val >= c : val > c) : (incl ? val <= c : val < c))
            last_wit = ts[j];
    }
    if (last_val == PATRON_NULL_TS)
        return enter; /* null until a row comes in */
    int64_t t = (last_wit != PATRON_NULL_TS ? last_wit : last_val) + agg->w_from;
    return min64(t, enter);
}

/* `F CMP c` (either side) for which the instant the answer flips can be found. */
typedef int64_t (*flip_fn)(const ectx *x, size_t k, const rnode *f, int op, double c,
                           int swapped);

static int64_t flip_distinct(const ectx *x, size_t k, const rnode *f, int op, double c, int sw)
{
    return distinct_flip(x->rows[k], NOW(x, k), f, op, c, sw);
}

static int64_t flip_trend(const ectx *x, size_t k, const rnode *f, int op, double c, int sw)
{
    (void)f;
    return trend_flip(x, x->rows[k], NOW(x, k), op, c, sw);
}

static int64_t flip_extremum(const ectx *x, size_t k, const rnode *f, int op, double c, int sw)
{
    return extremum_flip(f->stream, x->rows[k], NOW(x, k), f, op, c, sw);
}

static int64_t flip_dtb(const ectx *x, size_t k, const rnode *f, int op, double c, int sw)
{
    (void)f;
    int32_t bd = x->v->birth_days[x->rows[k]];
    int ny, nm, nd;
    return bd == INT32_MIN ? NEVER : dtb_flip(bd, row_today(x, k, &ny, &nm, &nd), op, c, sw);
}

static const struct {
    int (*is)(const rnode *n);
    flip_fn fn;
} flips[] = {{is_plain_distinct, flip_distinct},
             {is_trend, flip_trend},
             {is_plain_extremum, flip_extremum},
             {is_dtb, flip_dtb}};

static void due_node(ectx *x, const rnode *n, vec *r, const vec *ch)
{
    if (n->kind == N_CMP && n->a->type == VT_NUM && n->b->type == VT_NUM) {
        const rnode *aggs[WX_MAXAGG];
        int na = 0;
        if (wx_collect(n->a, aggs, &na) && wx_collect(n->b, aggs, &na) && na > 0) {
            if (!(r->t = tnew(x)))
                return;
            for (size_t k = 0; k < x->n; k++)
                r->t[k] = wx_flip(x->rows[k], NOW(x, k), n, aggs, na);
            return;
        }
    }
    if ((n->kind == N_CMP && ((is_age(n->a) && is_num_const(n->b)) ||
                              (is_age(n->b) && is_num_const(n->a)))) ||
        (n->kind == N_BETWEEN && is_age(n->a) && is_num_const(n->b) && is_num_const(n->c))) {
        if (!(r->t = tnew(x)))
            return;
        for (size_t k = 0; k < x->n; k++)
            r->t[k] = age_flip(x, k, n);
        return;
    }
    if (n->kind == N_CMP) {
        for (size_t j = 0; j < sizeof flips / sizeof *flips; j++) {
            int swapped = flips[j].is(n->b) && is_num_const(n->a);
            if (!swapped && !(flips[j].is(n->a) && is_num_const(n->b)))
                continue;
            const rnode *f = swapped ? n->b : n->a;
            double c = swapped ? n->a->num : n->b->num;
            if (!(r->t = tnew(x)))
                return;
            for (size_t k = 0; k < x->n; k++)
                r->t[k] = flips[j].fn(x, k, f, n->op, c, swapped);
            return;
        }
    }
    size_t nn = x->n;
    switch (n->kind) {
    case N_FIELD:
        field_due(x, n, r);
        return;
    case N_DAYS_SINCE:
        r->t = ch[0].t;
        if ((r->s = aalloc(x->ar, (nn ? nn : 1) * sizeof *r->s)))
            for (size_t i = 0; i < nn; i++)
                r->s[i] = isnan(r->d[i]) ? 0 : 1.0 / TIME_DAY;
        return;
    case N_NEG:
        r->t = ch[0].t;
        if (ch[0].s && (r->s = aalloc(x->ar, (nn ? nn : 1) * sizeof *r->s)))
            for (size_t i = 0; i < nn; i++)
                r->s[i] = -ch[0].s[i];
        return;
    case N_ARITH: {
        const vec *a = &ch[0], *b = &ch[1];
        if (!a->t && !b->t && !a->s && !b->s)
            return;
        if (!(r->t = tnew(x)))
            return;
        tmin(r->t, a->t, nn);
        tmin(r->t, b->t, nn);
        if (!a->s && !b->s)
            return;
        if (!(r->s = aalloc(x->ar, (nn ? nn : 1) * sizeof *r->s)))
            return;
        for (size_t i = 0; i < nn; i++) {
            double sa = a->s ? a->s[i] : 0, sb = b->s ? b->s[i] : 0, s = 0;
            int nonlinear = 0;
            switch (n->op) {
            case '+': s = sa + sb; break;
            case '-': s = sa - sb; break;
            case '*':
                if (sa != 0 && sb != 0)
                    nonlinear = 1;
                else
                    s = sa * b->d[i] + sb * a->d[i];
                break;
            default:
                if (sb != 0)
                    nonlinear = 1;
                else if (b->d[i] != 0)
                    s = sa / b->d[i];
                break;
            }
            if (isnan(s) || nonlinear) {
                s = 0;
                r->t[i] = min64(r->t[i], NOW(x, i) + RECHECK_SECS);
            }
            r->s[i] = s;
        }
        return;
    }
    case N_CMP:
    case N_BETWEEN: {
        int k = n->kind == N_CMP ? 2 : 3;
        int any = 0;
        for (int j = 0; j < k; j++)
            any |= ch[j].t != NULL || ch[j].s != NULL;
        if (!any || !ch[0].d)
            return;
        if (!(r->t = tnew(x)))
            return;
        for (int j = 0; j < k; j++)
            tmin(r->t, ch[j].t, nn);
        for (int j = 1; j < k; j++) {
            if (!ch[0].s && !ch[j].s)
                continue;
            for (size_t i = 0; i < nn; i++)
                r->t[i] = min64(r->t[i], crossing(NOW(x, i), ch[0].d[i], ch[j].d[i],
                                                  ch[0].s ? ch[0].s[i] : 0,
                                                  ch[j].s ? ch[j].s[i] : 0));
        }
        return;
    }
    case N_IN:
        r->t = ch[0].t;
        if (ch[0].s) {
            if (!(r->t = tnew(x)))
                return;
            tmin(r->t, ch[0].t, nn);
            for (size_t i = 0; i < nn; i++)
                if (ch[0].s[i] != 0)
                    r->t[i] = min64(r->t[i], NOW(x, i) + RECHECK_SECS);
        }
        return;
    case N_ISNULL:
    case N_NOT:
        r->t = ch[0].t;
        return;
    default: /* constants, and nodes that set their own (and, or, aggregates, in_segment) */
        return;
    }
}

static vec eval(ectx *x, const rnode *n)
{
    vec ch[3];
    memset(ch, 0, sizeof ch);
    vec r = eval_node(x, n, ch);
    if (x->want_due && (r.d || r.c || r.b))
        due_node(x, n, &r, ch);
    return r;
}

/* ---- bitmap indexes ----------------------------------------------------------------
 *
 * Conditions on dictionary-coded member columns (country = "DE", language in [..],
 * "eco-friendly" in interests, rfm.segment = "Champions") are answered from a bitmap
 * per code, built on first use for the current view generation.  A rule made only of
 * such conditions (with and/or/not) is bitmap algebra; in an `and` chain they narrow
 * the members the other conditions are evaluated on.  The vector path gives the same
 * answers (the differential test runs both).
 */
struct colidx {
    const void *data; /* the column (or the tag array) it indexes */
    uint64_t gen;
    uint32_t ncodes;
    roaring_bitmap_t **by_code; /* [ncodes]; NULL = no member has the code */
    roaring_bitmap_t *nonnull;
    /* a range index (numbers and times): the non-null members sorted by value, and
     * cum[b] = the members of the first b * bin of them (b = 0..nb) */
    int range;        /* 1: a range index; 2: only maxv (the latest of a column) */
    int64_t maxv;
    uint32_t nv, bin, nb;
    double *val;
    uint32_t *mem;
    roaring_bitmap_t **cum;
    aggidx *agg;      /* range 3: a stream's kept rows and what derives from them */
};

/* Frees what one index holds (not the index itself: it lives in the view's array). */
static void colidx_clear(struct colidx *x)
{
    for (uint32_t c = 0; x->by_code && c < x->ncodes; c++)
        if (x->by_code[c])
            roaring_bitmap_free(x->by_code[c]);
    mem_free(x->by_code);
    if (x->nonnull)
        roaring_bitmap_free(x->nonnull);
    for (uint32_t b = 0; x->cum && b <= x->nb; b++)
        if (x->cum[b])
            roaring_bitmap_free(x->cum[b]);
    mem_free(x->cum);
    mem_free(x->val);
    mem_free(x->mem);
    aggidx_free(x->agg);
    memset(x, 0, sizeof *x);
}

static void colidx_free(struct colidx *idx, size_t n)
{
    for (size_t i = 0; i < n; i++)
        colidx_clear(&idx[i]);
    mem_free(idx);
}

void rule_indexes_drop(patron_db *db)
{
    mview *v = db->view;
    if (!v || !v->n_idx)
        return;
    colidx_free(v->idx, v->n_idx);
    v->idx = NULL;
    v->n_idx = 0;
}

/* Indexes are valid for one view generation: older ones are dropped. */
static void idx_current(patron_db *db)
{
    if (db->view->n_idx && db->view->idx[0].gen != db->view_gen)
        rule_indexes_drop(db);
}

/* Room for one more index of the current generation, zeroed, for data: the caller fills
 * it and counts it (v->n_idx++) once it is complete.  NULL when out of memory. */
static struct colidx *idx_slot(patron_db *db, const void *data, int range)
{
    mview *v = db->view;
    struct colidx *a = mem_realloc_array(v->idx, v->n_idx + 1, sizeof *a);
    if (!a)
        return NULL;
    v->idx = a;
    v->idx_free = colidx_free;
    struct colidx *x = &v->idx[v->n_idx];
    memset(x, 0, sizeof *x);
    x->data = data;
    x->gen = db->view_gen;
    x->range = range;
    return x;
}

/* The index of a code column (member rows, no indirection) or, with tags, of interests. */
static const struct colidx *colidx_get(patron_db *db, const uint32_t *codes, int tags, uint32_t ncodes)
{
    mview *v = db->view;
    idx_current(db);
    for (size_t i = 0; i < v->n_idx; i++)
        if (!v->idx[i].range &&
            v->idx[i].data == (tags ? (const void *)v->tags : (const void *)codes) &&
            v->idx[i].gen == db->view_gen && v->idx[i].ncodes == ncodes)
            return &v->idx[i];
    struct colidx *x = idx_slot(db, tags ? (const void *)v->tags : (const void *)codes, 0);
    if (!x)
        return NULL;
    x->ncodes = ncodes;
    x->by_code = mem_calloc(ncodes ? ncodes : 1, sizeof *x->by_code);
    x->nonnull = roaring_bitmap_create();
    /* members grouped by code (a counting sort), then one add_many per code */
    uint32_t n = v->n;
    uint32_t *cnt = mem_calloc((size_t)ncodes + 1, sizeof *cnt), *list = NULL;
    size_t total = 0;
    if (x->by_code && x->nonnull && cnt) {
        for (uint32_t m = 0; m < n; m++) {
            if (tags) {
                for (uint32_t k = v->tag_beg[m]; k < v->tag_end[m]; k++)
                    if (v->tags[k] < ncodes)
                        cnt[v->tags[k] + 1]++, total++;
            } else if (codes[m] && codes[m] < ncodes) {
                cnt[codes[m] + 1]++, total++;
            }
        }
        for (uint32_t c = 0; c < ncodes; c++)
            cnt[c + 1] += cnt[c];
        list = mem_alloc_array(total ? total : 1, sizeof *list);
    }
    if (!list) {
        mem_free(cnt);
        x->ncodes = 0;
        colidx_clear(x);
        return NULL;
    }
    for (uint32_t m = 0; m < n; m++) {
        if (tags) {
            for (uint32_t k = v->tag_beg[m]; k < v->tag_end[m]; k++)
                if (v->tags[k] < ncodes)
                    list[cnt[v->tags[k]]++] = m;
        } else if (codes[m] && codes[m] < ncodes) {
            list[cnt[codes[m]]++] = m;
        }
    }
    int ok = 1;
    for (uint32_t c = 1; c < ncodes && ok; c++) { /* cnt[c] is now the end of code c */
        uint32_t b = cnt[c - 1], e = cnt[c];
        if (e > b) {
            ok = (x->by_code[c] = roaring_bitmap_create()) != NULL;
            if (ok)
                roaring_bitmap_add_many(x->by_code[c], e - b, list + b);
        }
    }
    if (ok && !tags)
        for (uint32_t c = 1; c < ncodes; c++)
            if (x->by_code[c])
                roaring_bitmap_or_inplace(x->nonnull, x->by_code[c]);
    mem_free(cnt);
    mem_free(list);
    if (!ok) {
        colidx_clear(x);
        return NULL;
    }
    v->n_idx++;
    return x;
}

typedef struct vpair {
    double v;
    uint32_t m;
} vpair;

static int cmp_vpair(const void *a, const void *b)
{
    const vpair *x = a, *y = b;
    if (x->v != y->v)
        return x->v < y->v ? -1 : 1;
    return (x->m > y->m) - (x->m < y->m);
}

/* The range index of a numeric member column (no indirection), built on first use for
 * the current view generation. */
static const struct colidx *rangeidx_get(patron_db *db, const vcol *c)
{
    mview *v = db->view;
    idx_current(db);
    for (size_t i = 0; i < v->n_idx; i++)
        if (v->idx[i].range == 1 && v->idx[i].data == c->data)
            return &v->idx[i];
    struct colidx *x = idx_slot(db, c->data, 1);
    if (!x)
        return NULL;
    vpair *p = mem_alloc_array(v->n ? v->n : 1, sizeof *p);
    if (!p)
        return NULL;
    uint32_t k = 0;
    for (uint32_t m = 0; m < v->n; m++) {
        double d = vcol_num(c, m);
        if (!isnan(d))
            p[k++] = (vpair){d, m};
    }
    qsort(p, k, sizeof *p, cmp_vpair);
    x->nv = k;
    x->bin = k / 256 > 1024 ? k / 256 : 1024;
    x->nb = (k + x->bin - 1) / x->bin;
    x->val = mem_alloc_array(k ? k : 1, sizeof *x->val);
    x->mem = mem_alloc_array(k ? k : 1, sizeof *x->mem);
    x->cum = mem_calloc((size_t)x->nb + 1, sizeof *x->cum);
    int ok = x->val && x->mem && x->cum;
    for (uint32_t i = 0; ok && i < k; i++)
        x->val[i] = p[i].v, x->mem[i] = p[i].m;
    mem_free(p);
    for (uint32_t b = 0; ok && b <= x->nb; b++) {
        x->cum[b] = b ? roaring_bitmap_copy(x->cum[b - 1]) : roaring_bitmap_create();
        ok = x->cum[b] != NULL;
        if (ok && b) {
            uint32_t lo = (b - 1) * x->bin, hi = b * x->bin < k ? b * x->bin : k;
            roaring_bitmap_add_many(x->cum[b], hi - lo, x->mem + lo);
            roaring_bitmap_run_optimize(x->cum[b]);
        }
    }
    if (!ok) {
        colidx_clear(x);
        return NULL;
    }
    v->n_idx++;
    return x;
}

/* First entry with value > t (incl = 0) or >= t (incl = 1). */
static uint32_t range_lower(const struct colidx *x, double t, int incl)
{
    uint32_t lo = 0, hi = x->nv;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (incl ? x->val[mid] < t : x->val[mid] <= t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The members of sorted entries [i0, i1): whole bins from the cumulative bitmaps, the
 * ends added one by one. */
static roaring_bitmap_t *range_slice(const struct colidx *x, uint32_t i0, uint32_t i1)
{
    if (i0 >= i1)
        return roaring_bitmap_create();
    uint32_t b0 = (i0 + x->bin - 1) / x->bin, b1 = i1 / x->bin;
    roaring_bitmap_t *r;
    if (b0 < b1) {
        r = roaring_bitmap_andnot(x->cum[b1], x->cum[b0]);
        if (r) {
            roaring_bitmap_add_many(r, b0 * x->bin - i0, x->mem + i0);
            roaring_bitmap_add_many(r, i1 - b1 * x->bin, x->mem + b1 * x->bin);
        }
    } else if ((r = roaring_bitmap_create())) {
        roaring_bitmap_add_many(r, i1 - i0, x->mem + i0);
    }
    return r;
}

/* The members whose value is in [lo, hi] (each end open when its flag is 0). */
static roaring_bitmap_t *range_members(const struct colidx *x, double lo, int lo_incl, double hi,
                                       int hi_incl)
{
    return range_slice(x, range_lower(x, lo, lo_incl), range_lower(x, hi, !hi_incl));
}

/* A numeric member column a range index can answer for (no indirection). */
static const rnode *range_field(const rnode *n)
{
    return n->kind == N_FIELD && n->ref == REF_COL && (n->type == VT_NUM || n->type == VT_TS) &&
                   !n->vc.via && n->vc.st != VS_BOOL && n->vc.st != VS_CODE && n->vc.st != VS_NONE &&
                   n->vc.st != VS_FN
               ? n
               : NULL;
}

static int range_const(const rnode *n)
{
    return (n->kind == N_NUM || n->kind == N_TS) && !isnan(n->num);
}

/* Behavioural fields a range index answers while every event is visible at now (the
 * totals kept per member are then the fields): monetary, frequency, recency_days. */
static int behav_field(const rnode *n)
{
    return n->kind == N_FIELD && n->ref == REF_COMPUTED &&
           (n->which == F_MONETARY || n->which == F_FREQUENCY || n->which == F_RECENCY_DAYS);
}

static int uses_behav(const rnode *n)
{
    if (!n)
        return 0;
    if (behav_field(n))
        return 1;
    if (uses_behav(n->a) || uses_behav(n->b) || uses_behav(n->c))
        return 1;
    return 0;
}

/* 1 when no member has an order or return after now (built once per view generation). */
static int all_visible(patron_db *db, int64_t now)
{
    mview *v = db->view;
    idx_current(db);
    for (size_t i = 0; i < v->n_idx; i++)
        if (v->idx[i].range == 2 && v->idx[i].data == v->bf_max)
            return v->idx[i].maxv <= now;
    struct colidx *x = idx_slot(db, v->bf_max, 2);
    if (!x)
        return 0;
    v->n_idx++;
    x->maxv = INT64_MIN;
    for (uint32_t m = 0; m < v->n; m++)
        if (v->bf_max[m] != PATRON_NULL_TS && v->bf_max[m] > x->maxv)
            x->maxv = v->bf_max[m];
    return x->maxv <= now;
}

static const rnode *code_field(const rnode *n)
{
    return n->kind == N_FIELD && n->ref == REF_COL && n->type == VT_STR && n->vc.st == VS_CODE &&
                           !n->vc.via && n->vc.dict
                   ? n
                   : NULL;
}

static int indexable(const rnode *n)
{
    switch (n->kind) {
    case N_BOOL:
        return 1;
    case N_BETWEEN:
        return (range_field(n->a) || is_age(n->a) || behav_field(n->a)) && range_const(n->b) &&
               range_const(n->c);
    case N_CMP:
        if ((range_field(n->a) || is_age(n->a) || behav_field(n->a)) && range_const(n->b))
            return 1;
        if ((range_field(n->b) || is_age(n->b) || behav_field(n->b)) && range_const(n->a))
            return 1;
        return (n->op == CMP_EQ || n->op == CMP_NE) &&
               ((code_field(n->a) && n->b->kind == N_STR) || (code_field(n->b) && n->a->kind == N_STR));
    case N_IN:
        if (n->b->kind == N_LIST) {
            if (!code_field(n->a))
                return 0;
            for (size_t i = 0; i < n->b->n_items; i++)
                if (n->b->items[i]->kind != N_STR && n->b->items[i]->kind != N_NULL)
                    return 0;
            return 1;
        }
        return n->a->kind == N_STR && n->b->kind == N_FIELD && n->b->ref == REF_TAGS;
    case N_NOT:
        return indexable(n->a);
    case N_INSEG:
        return !n->a || indexable(n->a);
    case N_AND:
    case N_OR:
        return indexable(n->a) && indexable(n->b);
    default:
        return 0;
    }
}

static roaring_bitmap_t *all_members(uint32_t n)
{
    roaring_bitmap_t *b = roaring_bitmap_create();
    if (b && n)
        roaring_bitmap_add_range(b, 0, n);
    return b;
}

static roaring_bitmap_t *code_bitmap(const struct colidx *x, uint32_t code)
{
    return code && code < x->ncodes && x->by_code[code] ? roaring_bitmap_copy(x->by_code[code])
                                                        : roaring_bitmap_create();
}

/* The last birth day (as a vcol_num value: days * TIME_DAY) of a member who is at least
 * `age` on day (ny, nm, nd): the same calendar day `age` years earlier, or 28 February
 * when that day is 29 February of a common year (as computed() counts ages). */
static double age_bound(int ny, int nm, int nd, int64_t age)
{
    int64_t y = ny - age;
    int d = nd;
    if (nm == 2 && nd == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        d = 28;
    return (double)time_days_from_civil((int)y, (unsigned)nm, (unsigned)d) * TIME_DAY;
}

/* `field CMP c` / `field between lo and hi` over a range index; age conditions become
 * birth-day ranges at now (an age is a whole number). */
static roaring_bitmap_t *range_eval(patron_db *db, const rnode *n, int64_t now)
{
    const rnode *f = n->a;
    double lo = n->kind == N_BETWEEN ? n->b->num : -INFINITY, hi = INFINITY;
    int lo_in = 1, hi_in = 1, op = CMP_GE;
    if (n->kind == N_BETWEEN) {
        hi = n->c->num;
    } else {
        int swapped = !(range_field(n->a) || is_age(n->a) || behav_field(n->a));
        f = swapped ? n->b : n->a;
        double c = swapped ? n->a->num : n->b->num;
        op = n->op;
        if (swapped) /* c CMP f  ==  f CMP' c */
            op = cmp_mirror(op);
        switch (op) {
        case CMP_LT: hi = c, hi_in = 0; break;
        case CMP_LE: hi = c; break;
        case CMP_GT: lo = c, lo_in = 0; break;
        case CMP_GE: lo = c; break;
        default: lo = hi = c; break; /* = and != (the complement below) */
        }
    }
    vcol bc;
    const mview *v = db->view;
    if (behav_field(f) && f->which == F_RECENCY_DAYS) {
        /* recency = (now - last) / 1 day falls as last grows: the entries (sorted by last)
         * whose recency is in [lo, hi] are a run, found with the evaluator's formula */
        bc = (vcol){VT_TS, VS_TS, v->bf_last, NULL, NULL};
        const struct colidx *x = rangeidx_get(db, &bc);
        if (!x)
            return NULL;
        uint32_t a = 0, b = x->nv;
        while (a < b) { /* first entry with recency <= hi (< hi) */
            uint32_t mid = a + (b - a) / 2;
            double rd = (double)(now - (int64_t)x->val[mid]) / TIME_DAY;
            if (hi_in ? rd <= hi : rd < hi)
                b = mid;
            else
                a = mid + 1;
        }
        uint32_t i0 = a;
        b = x->nv;
        while (a < b) { /* first entry with recency below lo (at lo when lo is open) */
            uint32_t mid = a + (b - a) / 2;
            double rd = (double)(now - (int64_t)x->val[mid]) / TIME_DAY;
            if (lo_in ? rd < lo : rd <= lo)
                b = mid;
            else
                a = mid + 1;
        }
        roaring_bitmap_t *r = range_slice(x, i0, a);
        if (r && n->kind == N_CMP && op == CMP_NE) {
            roaring_bitmap_t *ne = roaring_bitmap_andnot(x->cum[x->nb], r);
            roaring_bitmap_free(r);
            r = ne;
        }
        return r;
    }
    if (behav_field(f) && f->which == F_MONETARY) {
        bc = (vcol){VT_NUM, VS_MONEY, v->bf_money, NULL, NULL};
    } else if (behav_field(f)) {
        bc = (vcol){VT_NUM, VS_I32, v->bf_freq, NULL, NULL};
    } else if (is_age(f)) { /* age in [lo, hi]  ==  birth day in (bound(amax + 1), bound(amin)] */
        double amin = lo_in ? ceil(lo) : floor(lo) + 1, amax = hi_in ? floor(hi) : ceil(hi) - 1;
        int ny, nmo, nd;
        time_civil_from_days(time_day_of(now), &ny, &nmo, &nd);
        lo = amax >= 1e4 ? -INFINITY : age_bound(ny, nmo, nd, (int64_t)amax + 1);
        hi = amin <= -1e4 ? INFINITY : age_bound(ny, nmo, nd, (int64_t)amin);
        if (amin > amax)
            lo = INFINITY, hi = -INFINITY;
        lo_in = 0, hi_in = 1;
        bc = (vcol){VT_TS, VS_DAYS, db->view->birth_days, NULL, NULL};
    } else {
        bc = f->vc;
    }
    const struct colidx *x = rangeidx_get(db, &bc);
    if (!x)
        return NULL;
    roaring_bitmap_t *r = range_members(x, lo, lo_in, hi, hi_in);
    if (r && n->kind == N_CMP && op == CMP_NE) {
        roaring_bitmap_t *ne = roaring_bitmap_andnot(x->cum[x->nb], r);
        roaring_bitmap_free(r);
        r = ne;
    }
    return r;
}

/* The members n holds for (n indexable) at now; NULL when out of memory. */
static roaring_bitmap_t *index_eval(patron_db *db, const rnode *n, int64_t now)
{
    uint32_t nm = db->view->n;
    switch (n->kind) {
    case N_BOOL:
        return n->num != 0 ? all_members(nm) : roaring_bitmap_create();
    case N_BETWEEN:
        return range_eval(db, n, now);
    case N_CMP: {
        if (!code_field(n->a) && !code_field(n->b))
            return range_eval(db, n, now);
        const rnode *f = code_field(n->a) ? n->a : n->b, *lit = f == n->a ? n->b : n->a;
        const struct colidx *x = colidx_get(db, f->vc.data, 0, f->vc.dict->n + 1);
        if (!x)
            return NULL;
        roaring_bitmap_t *eq = code_bitmap(x, lit->code);
        if (eq && n->op == CMP_NE) {
            roaring_bitmap_t *ne = roaring_bitmap_andnot(x->nonnull, eq);
            roaring_bitmap_free(eq);
            return ne;
        }
        return eq;
    }
    case N_IN: {
        if (n->b->kind != N_LIST) { /* "tag" in interests */
            const struct colidx *x = colidx_get(db, NULL, 1, db->view->pstr.n + 1);
            if (!x)
                return NULL;
            roaring_bitmap_t *in = code_bitmap(x, n->a->code);
            if (in && n->op) {
                roaring_bitmap_t *all = all_members(nm);
                if (all)
                    roaring_bitmap_andnot_inplace(all, in);
                roaring_bitmap_free(in);
                return all;
            }
            return in;
        }
        const struct colidx *x = colidx_get(db, n->a->vc.data, 0, n->a->vc.dict->n + 1);
        roaring_bitmap_t *in = x ? roaring_bitmap_create() : NULL;
        for (size_t i = 0; in && i < n->b->n_items; i++) {
            const rnode *it = n->b->items[i];
            if (it->kind == N_STR && it->code && it->code < x->ncodes && x->by_code[it->code])
                roaring_bitmap_or_inplace(in, x->by_code[it->code]);
        }
        if (in && n->op) {
            roaring_bitmap_t *out = roaring_bitmap_andnot(x->nonnull, in);
            roaring_bitmap_free(in);
            return out;
        }
        return in;
    }
    case N_INSEG:
        if (n->a)
            return index_eval(db, n->a, now);
        return n->bitmap ? roaring_bitmap_copy((const roaring_bitmap_t *)n->bitmap)
                         : roaring_bitmap_create();
    case N_NOT: {
        roaring_bitmap_t *a = index_eval(db, n->a, now), *all = a ? all_members(nm) : NULL;
        if (all)
            roaring_bitmap_andnot_inplace(all, a);
        if (a)
            roaring_bitmap_free(a);
        return all;
    }
    case N_AND:
    case N_OR: {
        roaring_bitmap_t *a = index_eval(db, n->a, now), *b = a ? index_eval(db, n->b, now) : NULL;
        if (a && b) {
            if (n->kind == N_AND)
                roaring_bitmap_and_inplace(a, b);
            else
                roaring_bitmap_or_inplace(a, b);
        }
        if (b)
            roaring_bitmap_free(b);
        else if (a) {
            roaring_bitmap_free(a);
            a = NULL;
        }
        return a;
    }
    default:
        return NULL;
    }
}

/* ---- aggregate indexes -------------------------------------------------------------
 *
 * Full passes answer windowed aggregates from indexes over a stream's kept rows
 * (rules/aggidx.h), built on first use for the current view generation:
 *
 *   - `count(S [where P], W) CMP c`, `count_distinct(S.f [where P], W) CMP c` and
 *     `max` / `min` compared with a constant are exact member sets when W ends at now
 *     and no row of S is after now: "at least k kept rows in W" is "the k-th latest kept
 *     row is in W", a range query over a column that does not move with now (a max above
 *     c is at least one row above c);
 *   - any other condition on aggregates that is false when all its aggregates are over
 *     no rows narrows the members to those with a kept row since the earliest start of
 *     its windows, and is then evaluated on those only;
 *   - windowed counts and money sums of those read prefix arrays.
 *
 * The `where` must read only event fields and constants (it is then evaluated once over
 * all rows).  The vector path gives the same answers (test_rules_index, test_rules_diff).
 */

/* What a kept row must also satisfy: nothing, a non-null field, or field CMP c; or, with
 * op -2, -3 or -4, nothing (the index then serves count_distinct of f, or the sum of f
 * above c / at least c: one column, or column and limit, per index). */
typedef struct rpred {
    const vcol *f; /* NULL: nothing */
    int op;        /* CMP_*, -1: f is not null, < -1: no condition */
    double c;
} rpred;

static int sig_put(char *buf, size_t cap, size_t *k, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static int sig_put(char *buf, size_t cap, size_t *k, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(buf + *k, cap - *k, fmt, ap);
    va_end(ap);
    if (w < 0 || (size_t)w >= cap - *k)
        return -1;
    *k += (size_t)w;
    return 0;
}

/* Writes the signature of a `where` made only of event fields and constants; -1 when it
 * reads anything else (member fields, time, segments) or does not fit. */
static int where_sig(const rnode *n, char *buf, size_t cap, size_t *k)
{
    if (!n)
        return sig_put(buf, cap, k, "-");
    if (n->time_dependent)
        return -1;
    switch (n->kind) {
    case N_NUM:
    case N_DUR:
    case N_TS:
    case N_BOOL:
        return sig_put(buf, cap, k, "(%d %a)", (int)n->kind, n->num);
    case N_NULL:
        return sig_put(buf, cap, k, "(null)");
    case N_STR:
        return sig_put(buf, cap, k, "(s %u)", lit_code(n));
    case N_FIELD:
        if (n->ref == REF_NONE)
            return sig_put(buf, cap, k, "(none %d)", (int)n->type);
        if (n->ref != REF_EVENT)
            return -1;
        return sig_put(buf, cap, k, "(f %d %d %p %p)", (int)n->type, (int)n->vc.st, n->vc.data,
                       (const void *)n->vc.via);
    case N_LIST:
        if (sig_put(buf, cap, k, "(l"))
            return -1;
        for (size_t i = 0; i < n->n_items; i++)
            if (where_sig(n->items[i], buf, cap, k))
                return -1;
        return sig_put(buf, cap, k, ")");
    case N_IN:
        if (n->b->kind != N_LIST)
            return -1;
        /* fall through */
    case N_NEG:
    case N_ARITH:
    case N_CMP:
    case N_BETWEEN:
    case N_ISNULL:
    case N_NOT:
    case N_AND:
    case N_OR:
        if (sig_put(buf, cap, k, "(%d %d %d", (int)n->kind, n->op, (int)n->type))
            return -1;
        if ((n->a && where_sig(n->a, buf, cap, k)) || (n->b && where_sig(n->b, buf, cap, k)) ||
            (n->c && where_sig(n->c, buf, cap, k)))
            return -1;
        return sig_put(buf, cap, k, ")");
    default:
        return -1;
    }
}

/* Does row r's field satisfy p? */
static int pred_holds(const rpred *p, uint32_t r)
{
    if (!p->f || p->op < -1)
        return 1;
    if (p->f->type == VT_STR)
        return vcol_code(p->f, r) != 0;
    if (p->f->type == VT_BOOL)
        return vcol_bool(p->f, r) != 2;
    double v = vcol_num(p->f, r);
    return p->op < 0 ? !isnan(v) : cmp_d(p->op, v, p->c);
}

/* The index of stream s's rows kept by where (NULL: all) and p (NULL: nothing more),
 * built on first use for the current view generation.  NULL when where cannot be
 * indexed or when out of memory (*oom set). */
static aggidx *aggidx_get(patron_db *db, const stream *s, const rnode *where, const rpred *p,
                          int *oom)
{
    mview *v = db->view;
    char key[1024];
    size_t k = 0;
    if (sig_put(key, sizeof key, &k, "%d|", (int)(s - v->streams)) ||
        where_sig(where, key, sizeof key, &k))
        return NULL;
    if (p && p->f && sig_put(key, sizeof key, &k, "|%d %p %p %d %a", (int)p->f->st, p->f->data,
                             (const void *)p->f->via, p->op, p->c))
        return NULL;
    idx_current(db);
    for (size_t i = 0; i < v->n_idx; i++)
        if (v->idx[i].range == 3 && strcmp(v->idx[i].agg->key, key) == 0)
            return v->idx[i].agg;
    aggidx *a = aggidx_new(s, v->n, key);
    arena ar = {0};
    enum { CHUNK = 4096 };
    uint32_t *rows = a ? mem_alloc_array(CHUNK, sizeof *rows) : NULL;
    int ok = rows != NULL;
    ectx x;
    ctx_init(&x, NULL, db, 0, &ar);
    x.event = 1;
    x.rows = rows;
    size_t n = 0;
    for (uint32_t m = 0; ok && m <= v->n; m++) {
        uint32_t b = m < v->n ? s->beg[m] : 0, e = m < v->n ? s->end[m] : 0;
        for (uint32_t r = b; ok; r++) {
            if (n == CHUNK || (m == v->n && n)) { /* evaluate what is gathered */
                x.n = n;
                vec w = where ? eval(&x, where) : (vec){0};
                if ((where && !w.b) || ar.failed)
                    ok = 0;
                for (size_t i = 0; ok && i < n; i++)
                    a->keep[rows[i]] = (uint8_t)((!where || w.b[i] == 1) &&
                                                 (!p || pred_holds(p, rows[i])));
                areset(&ar);
                n = 0;
            }
            if (r >= e)
                break;
            rows[n++] = r;
        }
    }
    afree(&ar);
    mem_free(rows);
    struct colidx *slot = ok ? idx_slot(db, s, 3) : NULL;
    if (!slot) {
        aggidx_free(a);
        *oom = 1;
        return NULL;
    }
    aggidx_seal(a);
    slot->agg = a;
    v->n_idx++;
    return a;
}

/* The members whose time in t (a column of k-th latest times) is after now - w_from
 * (any time at all without a window). */
static roaring_bitmap_t *tk_members(patron_db *db, const int64_t *t, int64_t now,
                                    const rnode *agg)
{
    vcol tc = {VT_TS, VS_TS, t, NULL, NULL};
    const struct colidx *x = rangeidx_get(db, &tc);
    if (!x)
        return NULL;
    if (!agg->has_window)
        return range_members(x, -INFINITY, 1, INFINITY, 1);
    return range_members(x, (double)(now - agg->w_from), 0, INFINITY, 1);
}

/* Members with at least k (k <= 0: any number of) kept rows, or distinct codes of cd,
 * in agg's window; the index a must have no row after now. */
static roaring_bitmap_t *at_least(patron_db *db, aggidx *a, const vcol *cd, long k, int64_t now,
                                  const rnode *agg)
{
    if (k <= 0)
        return all_members(db->view->n);
    const int64_t *t = cd ? aggidx_tkd(a, cd, cd->dict ? cd->dict->n + 1 : 0, (int)k)
                          : aggidx_tk(a, (int)k);
    return t ? tk_members(db, t, now, agg) : NULL;
}

/* a and not b, both freed; NULL when either is. */
static roaring_bitmap_t *bm_andnot(roaring_bitmap_t *a, roaring_bitmap_t *b)
{
    if (a && b)
        roaring_bitmap_andnot_inplace(a, b);
    if (b)
        roaring_bitmap_free(b);
    if (a && !b) {
        roaring_bitmap_free(a);
        a = NULL;
    }
    return a;
}

/* `sum(S.f …) CMP c` (either way round) with f money, CMP an order and c a number the
 * sum of no rows does not pass (c >= 0 for >, c > 0 for >=): 1 and its parts, else 0.
 * *incl: the sum must reach c (>= or <), else exceed it (> or <=). */
static int sum_cmp(const rnode *n, const rnode **agg, int *op, double *c, int *incl)
{
    if (n->kind != N_CMP)
        return 0;
    int swapped = n->b->kind == N_AGG;
    const rnode *a = swapped ? n->b : n->a, *cn = swapped ? n->a : n->b;
    if (a->kind != N_AGG || a->op != AGG_SUM || !a->sfield || a->sfield->col.st != VS_MONEY ||
        cn->kind != N_NUM || isnan(cn->num))
        return 0;
    *op = swapped ? cmp_mirror(n->op) : n->op;
    if (*op == CMP_EQ || *op == CMP_NE)
        return 0;
    *incl = *op == CMP_GE || *op == CMP_LT;
    *agg = a;
    *c = cn->num;
    return *incl ? *c > 0 : *c >= 0;
}

/* The members whose kept rows of agg since the start of its window (ignoring where the
 * window ends) sum above c (reach it: incl), from the sum thresholds of aggidx.h.  NULL
 * with *oom = 0 when some kept value is negative or the where cannot be indexed. */
static roaring_bitmap_t *sum_since(patron_db *db, const rnode *agg, double c, int incl,
                                   int64_t now, int need_visible, int *oom)
{
    const vcol *f = &agg->sfield->col;
    rpred key = {f, incl ? -4 : -3, c};
    aggidx *a = aggidx_get(db, agg->stream, agg->a, &key, oom);
    if (!a || (need_visible && a->maxts > now))
        return NULL;
    int neg = 0;
    const int64_t *t = aggidx_tsum(a, f, c, incl, &neg);
    if (!t) {
        *oom = !neg;
        return NULL;
    }
    roaring_bitmap_t *b = tk_members(db, t, now, agg);
    *oom = b == NULL;
    return b;
}

/* `sum(S.f …, W) CMP c` with W ending at now and no row after now: 1 answered (*out
 * set), 0 when it cannot be answered so, -1 out of memory. */
static int sum_exact(patron_db *db, const rnode *n, int64_t now, roaring_bitmap_t **out)
{
    const rnode *agg;
    int op, incl, oom = 0;
    double c;
    if (!sum_cmp(n, &agg, &op, &c, &incl) || (agg->has_window && agg->w_to != 0))
        return 0;
    roaring_bitmap_t *b = sum_since(db, agg, c, incl, now, 1, &oom);
    if (!b)
        return oom ? -1 : 0;
    *out = op == CMP_GT || op == CMP_GE ? b : bm_andnot(all_members(db->view->n), b);
    return *out ? 1 : -1;
}

/* `agg CMP c` (either way round) over k-th latest times: 1 answered (*out set), 0 when
 * this form cannot be answered so, -1 out of memory. */
static int agg_exact(patron_db *db, const rnode *n, int64_t now, roaring_bitmap_t **out)
{
    if (n->kind != N_CMP)
        return 0;
    int swapped = n->b->kind == N_AGG;
    const rnode *agg = swapped ? n->b : n->a, *cn = swapped ? n->a : n->b;
    if (agg->kind != N_AGG || (cn->kind != N_NUM && cn->kind != N_TS) || isnan(cn->num))
        return 0;
    if (agg->has_window && agg->w_to != 0)
        return 0;
    int op = swapped ? cmp_mirror(n->op) : n->op, oom = 0;
    double c = cn->num;
    const vcol *f = agg->sfield ? &agg->sfield->col : NULL;
    if (agg->op == AGG_COUNT || (agg->op == AGG_COUNT_DISTINCT && f && f->st == VS_CODE && f->dict)) {
        /* count >= k for the k this comparison needs (a count is a whole number >= 0) */
        if (c > AGGIDX_KMAX)
            return 0;
        if (c < -1)
            c = -1;
        long kge = (long)ceil(c), kgt = (long)floor(c) + 1;
        int integral = c == floor(c);
        long need = op == CMP_GE || op == CMP_LT ? kge : op == CMP_GT || op == CMP_LE ? kgt
                                                                                      : (long)c + 1;
        if ((op == CMP_EQ || op == CMP_NE) && (!integral || c < 0)) {
            *out = op == CMP_EQ ? roaring_bitmap_create() : all_members(db->view->n);
            return *out ? 1 : -1;
        }
        if (need > AGGIDX_KMAX)
            return 0;
        int distinct = agg->op == AGG_COUNT_DISTINCT;
        rpred nn = {f, distinct ? -2 : -1, 0};
        aggidx *a = aggidx_get(db, agg->stream, agg->a, f ? &nn : NULL, &oom);
        if (!a)
            return oom ? -1 : 0;
        if (a->maxts > now)
            return 0;
        const vcol *cd = distinct ? f : NULL;
        switch (op) {
        case CMP_GE: *out = at_least(db, a, cd, kge, now, agg); break;
        case CMP_GT: *out = at_least(db, a, cd, kgt, now, agg); break;
        case CMP_LT: *out = bm_andnot(all_members(db->view->n), at_least(db, a, cd, kge, now, agg)); break;
        case CMP_LE: *out = bm_andnot(all_members(db->view->n), at_least(db, a, cd, kgt, now, agg)); break;
        default: {
            roaring_bitmap_t *eq = bm_andnot(at_least(db, a, cd, (long)c, now, agg),
                                             at_least(db, a, cd, (long)c + 1, now, agg));
            *out = op == CMP_EQ ? eq : bm_andnot(all_members(db->view->n), eq);
            break;
        }
        }
        return *out ? 1 : -1;
    }
    if (agg->op == AGG_SUM)
        return sum_exact(db, n, now, out);
    if ((agg->op != AGG_MAX && agg->op != AGG_MIN) || !f || op == CMP_EQ || op == CMP_NE)
        return 0;
    /* max > c: some row above c; max < c: some row, and none at or above c (min alike) */
    int is_max = agg->op == AGG_MAX, upward = op == CMP_GT || op == CMP_GE;
    int any_op = is_max == upward ? op
                 : op == CMP_GT ? CMP_LE : op == CMP_GE ? CMP_LT : op == CMP_LT ? CMP_GE : CMP_GT;
    rpred pa = {f, any_op, c}, pn = {f, -1, 0};
    aggidx *a = aggidx_get(db, agg->stream, agg->a, &pa, &oom);
    aggidx *b = a && is_max != upward ? aggidx_get(db, agg->stream, agg->a, &pn, &oom) : NULL;
    if (!a || (is_max != upward && !b))
        return oom ? -1 : 0;
    if (a->maxts > now || (b && b->maxts > now))
        return 0;
    roaring_bitmap_t *some = at_least(db, a, NULL, 1, now, agg);
    *out = b ? bm_andnot(at_least(db, b, NULL, 1, now, agg), some) : some;
    return *out ? 1 : -1;
}

/* The value of a numeric node when every aggregate in it is over no rows; *ok = 0 when
 * it reads anything else. */
static double empty_num(const rnode *n, int *ok)
{
    switch (n->kind) {
    case N_NUM:
    case N_DUR:
        return n->num;
    case N_AGG:
        return n->op == AGG_COUNT || n->op == AGG_SUM || n->op == AGG_COUNT_DISTINCT ? 0 : NAN;
    case N_NEG:
        return -empty_num(n->a, ok);
    case N_ARITH: {
        double a = empty_num(n->a, ok), b = empty_num(n->b, ok);
        switch (n->op) {
        case '+': return a + b;
        case '-': return a - b;
        case '*': return a * b;
        default: return b == 0 ? NAN : a / b;
        }
    }
    default:
        *ok = 0;
        return NAN;
    }
}

/* The truth of a condition when every aggregate in it is over no rows: 1 true, 0 not
 * true, -1 unknown (it reads something else). */
static int empty_truth(const rnode *n)
{
    int ok = 1, a, b;
    switch (n->kind) {
    case N_BOOL:
        return n->num != 0;
    case N_CMP: {
        if (n->a->type == VT_STR || n->a->type == VT_BOOL || n->b->type == VT_STR ||
            n->b->type == VT_BOOL)
            return -1;
        double x = empty_num(n->a, &ok), y = empty_num(n->b, &ok);
        return ok ? cmp_d(n->op, x, y) : -1;
    }
    case N_BETWEEN: {
        double x = empty_num(n->a, &ok), lo = empty_num(n->b, &ok), hi = empty_num(n->c, &ok);
        return ok ? x >= lo && x <= hi : -1;
    }
    case N_NOT:
        a = empty_truth(n->a);
        return a < 0 ? -1 : !a;
    case N_AND:
        a = empty_truth(n->a), b = empty_truth(n->b);
        return a == 0 || b == 0 ? 0 : a < 0 || b < 0 ? -1 : 1;
    case N_OR:
        a = empty_truth(n->a), b = empty_truth(n->b);
        return a == 1 || b == 1 ? 1 : a < 0 || b < 0 ? -1 : 0;
    default:
        return -1;
    }
}

/* Adds to *u the members with a row kept by agg's where (all rows when it cannot be
 * indexed) since the start of its window, for every aggregate under n (not inside a
 * where).  0 ok, -1 out of memory. */
static int agg_any(patron_db *db, const rnode *n, int64_t now, roaring_bitmap_t *u)
{
    if (!n)
        return 0;
    if (n->kind != N_AGG)
        return agg_any(db, n->a, now, u) || agg_any(db, n->b, now, u) || agg_any(db, n->c, now, u)
                   ? -1
                   : 0;
    int oom = 0;
    aggidx *a = aggidx_get(db, n->stream, n->a, NULL, &oom);
    if (!a && !oom)
        a = aggidx_get(db, n->stream, NULL, NULL, &oom);
    const int64_t *t = a ? aggidx_tk(a, 1) : NULL;
    roaring_bitmap_t *b = t ? tk_members(db, t, now, n) : NULL;
    if (!b)
        return -1;
    roaring_bitmap_or_inplace(u, b);
    roaring_bitmap_free(b);
    return 0;
}

/* The members a condition on aggregates can hold for (see above); NULL with *oom = 0
 * when it cannot narrow them. */
static roaring_bitmap_t *agg_candidates(patron_db *db, const rnode *n, int64_t now, int *oom)
{
    const rnode *agg;
    int op, incl;
    double c;
    if (sum_cmp(n, &agg, &op, &c, &incl) && (op == CMP_GT || op == CMP_GE)) {
        /* with no negative value, the sum over the window is at most the sum since its
         * start */
        roaring_bitmap_t *b = sum_since(db, agg, c, incl, now, 0, oom);
        if (b || *oom)
            return b;
    }
    if (empty_truth(n) != 0)
        return NULL;
    roaring_bitmap_t *u = roaring_bitmap_create();
    if (!u || agg_any(db, n, now, u)) {
        if (u)
            roaring_bitmap_free(u);
        *oom = 1;
        return NULL;
    }
    return u;
}

/* Prefix arrays and blocks for the windowed counts and money sums under n (not inside a
 * where), appended to pre (room for cap); spend_trend's into x.  Blocks are built on up
 * to `threads` threads.  0 ok, -1 out of memory. */
static int agg_prepare(patron_db *db, const rnode *n, ectx *x, aggpre *pre, size_t *np, size_t cap,
                       int threads)
{
    if (!n)
        return 0;
    if (n->kind == N_FIELD && n->ref == REF_COMPUTED && n->which == F_SPEND_TREND &&
        !x->ps_orders) {
        const stream *o = &db->view->streams[ST_ORDERS], *r = &db->view->streams[ST_RETURNS];
        const sfield *fo = stream_field(o, "amount", 6), *fr = stream_field(r, "amount", 6);
        int oom = 0;
        aggidx *ao = fo ? aggidx_get(db, o, NULL, NULL, &oom) : NULL;
        aggidx *ar = fr && ao ? aggidx_get(db, r, NULL, NULL, &oom) : NULL;
        if (oom)
            return -1;
        if (ar) {
            x->ps_orders = aggidx_ps(ao, &fo->col);
            x->ps_returns = aggidx_ps(ar, &fr->col);
            x->orders_max = ao->maxts;
            x->returns_max = ar->maxts;
            if (!x->ps_orders || !x->ps_returns) {
                x->ps_orders = x->ps_returns = NULL;
                x->orders_max = x->returns_max = INT64_MAX;
                return 0;
            }
            x->blk_orders = aggidx_blocks(ao, &fo->col, threads, &oom);
            x->blk_returns = x->blk_orders ? aggidx_blocks(ar, &fr->col, threads, &oom) : NULL;
            if (!x->blk_returns)
                x->blk_orders = NULL; /* the member by member path */
            if (oom)
                return -1;
        }
        return 0;
    }
    if (n->kind != N_AGG)
        return agg_prepare(db, n->a, x, pre, np, cap, threads) ||
                       agg_prepare(db, n->b, x, pre, np, cap, threads) ||
                       agg_prepare(db, n->c, x, pre, np, cap, threads)
                   ? -1
                   : 0;
    const vcol *f = n->sfield ? &n->sfield->col : NULL;
    int count = n->op == AGG_COUNT && !f;
    int money = (n->op == AGG_SUM || n->op == AGG_AVG) && f && f->st == VS_MONEY;
    if ((!count && !money) || *np == cap)
        return 0;
    int oom = 0;
    aggidx *a = aggidx_get(db, n->stream, n->a, NULL, &oom);
    if (!a)
        return oom ? -1 : 0;
    const uint32_t *pc = aggidx_pc(a);
    const uint64_t *ps = money ? aggidx_ps(a, f) : NULL;
    if (!pc || (money && !ps))
        return money && pc && a->ps ? 0 : -1; /* ps of another column: scan the rows */
    const aggblk *blk = aggidx_blocks(a, money ? f : NULL, threads, &oom);
    if (oom)
        return -1;
    pre[(*np)++] = (aggpre){n, pc, ps, blk, a->maxts};
    return 0;
}

/* The conjuncts of an and-chain (or the node itself), up to cap. */
static size_t conjuncts(const rnode *n, const rnode **out, size_t k, size_t cap)
{
    if (n->kind == N_AND) {
        k = conjuncts(n->a, out, k, cap);
        return conjuncts(n->b, out, k, cap);
    }
    if (k < cap)
        out[k] = n;
    return k + 1;
}

/* A rough cost per member of evaluating n on the vector path: aggregates that scan
 * rows and computed fields that search the streams cost more than column reads. */
static int node_cost(const ectx *x, const rnode *n)
{
    if (!n)
        return 0;
    int c = 1;
    if (n->kind == N_AGG) {
        for (size_t p = 0; p < x->n_pre; p++)
            if (x->pre[p].n == n)
                return 4;
        return 20;
    }
    if (n->kind == N_FIELD && n->ref == REF_COMPUTED)
        c = n->which == F_SPEND_TREND ? 8 : 4;
    return c + node_cost(x, n->a) + node_cost(x, n->b) + node_cost(x, n->c);
}

/* One thread's share of the members the indexes selected. */
typedef struct rjob {
    const rule *r;
    const ectx *proto;
    const rnode *const *rest;
    size_t nr;
    const uint32_t *ms;
    size_t k;
    roaring_bitmap_t *out;
    int failed;
} rjob;

/* Keeps the members of the share for which every rest condition is true. */
static void *run_rest(void *arg)
{
    rjob *j = arg;
    arena ar = {0};
    ectx x = *j->proto;
    x.ar = &ar;
    uint32_t open[BATCH];
    for (size_t i = 0; !j->failed && i < j->k; i += BATCH) {
        size_t n = j->k - i < BATCH ? j->k - i : BATCH;
        memcpy(open, j->ms + i, n * sizeof *open);
        for (size_t c = 0; c < j->nr && n; c++) {
            x.rows = open;
            x.n = n;
            vec v = eval(&x, j->rest[c]);
            if (!v.b || ar.failed) {
                j->failed = 1;
                break;
            }
            size_t h = 0;
            for (size_t t = 0; t < n; t++) { /* no branch: kept or not is a coin toss */
                open[h] = open[t];
                h += v.b[t] == 1;
            }
            n = h;
        }
        size_t h = 0;
        for (size_t t = 0; !j->failed && t < n; t++)
            if (!j->r->reads_models || db_profiling_allowed(x.db, open[t], x.now))
                open[h++] = open[t];
        if (!j->failed && h)
            roaring_bitmap_add_many(j->out, h, open);
        areset(&ar);
    }
    afree(&ar);
    return NULL;
}

static int n_cores(void);

/* The index path of rule_eval_all: 1 when it answered (out filled), 0 when the rule has
 * no conjunct an index answers or narrows (or too many conjuncts), -1 when out of
 * memory.  Conjuncts no index answers run on the selected members, each on those the
 * previous ones kept. */
static int eval_indexed(const rule *r, patron_db *db, int64_t now, int threads,
                        roaring_bitmap_t *out)
{
    const rnode *c[64];
    size_t nc = conjuncts(r->root, c, 0, 64);
    if (nc > 64)
        return 0;
    roaring_bitmap_t *sel = NULL;
    const rnode *rest[64];
    size_t nr = 0;
    int visible = -1; /* behavioural fields: known once asked */
    int agg_off = getenv("PATRON_NO_AGG_INDEX") != NULL;
    for (size_t i = 0; i < nc; i++) {
        int ok = indexable(c[i]);
        if (ok && uses_behav(c[i])) {
            if (visible < 0)
                visible = all_visible(db, now);
            ok = visible;
        }
        roaring_bitmap_t *b = NULL;
        int oom = 0;
        if (ok) {
            oom = !(b = index_eval(db, c[i], now));
        } else if (!agg_off) {
            int ex = agg_exact(db, c[i], now, &b);
            oom = ex < 0;
            if (ex == 0) {
                rest[nr++] = c[i];
                b = agg_candidates(db, c[i], now, &oom);
            }
        } else {
            rest[nr++] = c[i];
        }
        if (oom) {
            if (sel)
                roaring_bitmap_free(sel);
            return -1;
        }
        if (!b)
            continue;
        if (sel) {
            roaring_bitmap_and_inplace(sel, b);
            roaring_bitmap_free(b);
        } else {
            sel = b;
        }
    }
    if (!sel)
        return 0;
    if (nr == 0 && !r->reads_models) { /* bitmap algebra alone */
        roaring_bitmap_overwrite(out, sel);
        roaring_bitmap_free(sel);
        return 1;
    }
    /* the other conditions, on the selected members only: cheapest first, on
     * contiguous shares of them per thread */
    ectx x;
    ctx_init(&x, r, db, now, NULL);
    aggpre pre[32];
    size_t npre = 0;
    int rc = 1;
    if (threads <= 0)
        threads = n_cores();
    for (size_t j = 0; !agg_off && j < nr && rc == 1; j++)
        if (agg_prepare(db, rest[j], &x, pre, &npre, 32, threads))
            rc = -1;
    x.pre = pre;
    x.n_pre = npre;
    for (size_t j = 1; j < nr; j++) /* a stable insertion sort by cost */
        for (size_t i = j; i > 0 && node_cost(&x, rest[i]) < node_cost(&x, rest[i - 1]); i--) {
            const rnode *t = rest[i];
            rest[i] = rest[i - 1];
            rest[i - 1] = t;
        }
    uint64_t k = roaring_bitmap_get_cardinality(sel);
    uint32_t *ms = rc == 1 ? mem_alloc_array(k ? k : 1, sizeof *ms) : NULL;
    if (!ms)
        rc = -1;
    else
        roaring_bitmap_to_uint32_array(sel, ms);
    roaring_bitmap_free(sel);
    roaring_bitmap_clear(out);
    if (threads <= 0)
        threads = n_cores();
    if ((uint64_t)threads > k / BATCH + 1)
        threads = (int)(k / BATCH + 1);
    rjob jobs[64];
    pthread_t tid[64];
    int started[64] = {0};
    if (rc != 1)
        threads = 0;
    for (int t = 0; t < threads; t++) {
        jobs[t] = (rjob){r, &x, rest, nr, ms + k * (uint64_t)t / (uint64_t)threads,
                         (size_t)(k * (uint64_t)(t + 1) / (uint64_t)threads -
                                  k * (uint64_t)t / (uint64_t)threads),
                         t == 0 ? out : roaring_bitmap_create(), 0};
        if (!jobs[t].out)
            jobs[t].failed = 1;
        else if (t > 0)
            started[t] = pthread_create(&tid[t], NULL, run_rest, &jobs[t]) == 0;
    }
    if (threads > 0 && jobs[0].out)
        run_rest(&jobs[0]);
    for (int t = 0; t < threads; t++) {
        if (t > 0 && started[t])
            pthread_join(tid[t], NULL);
        else if (t > 0 && jobs[t].out)
            run_rest(&jobs[t]);
        if (jobs[t].failed)
            rc = -1;
        if (t > 0 && jobs[t].out) {
            roaring_bitmap_or_inplace(out, jobs[t].out);
            roaring_bitmap_free(jobs[t].out);
        }
    }
    mem_free(ms);
    return rc;
}

/* ---- driving --------------------------------------------------------------------- */

static void ctx_init(ectx *x, const rule *r, patron_db *db, int64_t now, arena *ar)
{
    (void)r;
    memset(x, 0, sizeof *x);
    x->db = db;
    x->v = db->view;
    x->now = now;
    x->ar = ar;
    x->today = time_day_of(now);
    time_civil_from_days(x->today, &x->ny, &x->nm, &x->nd);
    x->orders_max = x->returns_max = INT64_MAX;
}

/* Evaluates one batch of members; adds the matches to out.  With due, due[i] gets the
 * next instant rows[i]'s answer can change with time alone.  0 ok, -1 out of memory. */
static int run_batch(const rule *r, ectx *x, const uint32_t *rows, const int64_t *nows, size_t n,
                     roaring_bitmap_t *out, int64_t *due)
{
    x->rows = rows;
    x->nows = nows;
    x->n = n;
    x->event = 0;
    x->want_due = due != NULL;
    vec v = eval(x, r->root);
    if (!v.b || x->ar->failed) {
        areset(x->ar);
        return -1;
    }
    uint32_t hits[BATCH];
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (v.b[i] == 1 && (!r->reads_models || db_profiling_allowed(x->db, rows[i], NOW(x, i))))
            hits[k++] = rows[i];
    if (k)
        roaring_bitmap_add_many(out, k, hits);
    if (due)
        for (size_t i = 0; i < n; i++)
            due[i] = v.t ? v.t[i] : NEVER;
    areset(x->ar);
    return 0;
}

/* One thread's share of a pass: a range of members [begin, end) (members == NULL; due
 * indexed by member), or a list of n members, each at nows[i] (due indexed like it). */
typedef struct job {
    const rule *r;
    patron_db *db;
    int64_t now;
    uint32_t begin, end;
    const uint32_t *members;
    const int64_t *nows; /* or NULL */
    size_t n;
    roaring_bitmap_t *out;
    int64_t *due; /* or NULL */
    int failed;
} job;

static void *run_job(void *arg)
{
    job *j = arg;
    arena ar;
    arena_take(&ar);
    ectx x;
    ctx_init(&x, j->r, j->db, j->now, &ar);
    if (j->members) {
        for (size_t i = 0; i < j->n && !j->failed; i += BATCH) {
            size_t k = j->n - i < BATCH ? j->n - i : BATCH;
            if (run_batch(j->r, &x, j->members + i, j->nows ? j->nows + i : NULL, k, j->out,
                          j->due ? j->due + i : NULL) != 0)
                j->failed = 1;
        }
    } else {
        uint32_t rows[BATCH];
        for (uint32_t m = j->begin; m < j->end && !j->failed;) {
            size_t n = 0;
            while (n < BATCH && m < j->end)
                rows[n++] = m++;
            if (run_batch(j->r, &x, rows, NULL, n, j->out, j->due ? j->due + rows[0] : NULL) != 0)
                j->failed = 1;
        }
    }
    arena_give(&ar);
    return NULL;
}

/* Runs jobs[0..threads): job 0 here, the others on threads of their own, each with a
 * bitmap of its own OR-ed into jobs[0].out after.  0, or -1 when one ran out of memory. */
static int run_jobs(job *jobs, int threads)
{
    pthread_t tid[64];
    int started[64] = {0};
    for (int t = 1; t < threads; t++) {
        jobs[t].out = roaring_bitmap_create();
        if (!jobs[t].out)
            jobs[t].failed = 1;
        else
            started[t] = pthread_create(&tid[t], NULL, run_job, &jobs[t]) == 0;
    }
    run_job(&jobs[0]);
    int failed = jobs[0].failed;
    for (int t = 1; t < threads; t++) {
        if (started[t])
            pthread_join(tid[t], NULL);
        else if (jobs[t].out)
            run_job(&jobs[t]); /* could not start a thread: its share is done here */
        failed |= jobs[t].failed;
        if (jobs[t].out) {
            roaring_bitmap_or_inplace(jobs[0].out, jobs[t].out);
            roaring_bitmap_free(jobs[t].out);
        }
    }
    return failed ? -1 : 0;
}

static int n_cores(void)
{
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    return c < 1 ? 1 : (c > 64 ? 64 : (int)c);
}

int rule_eval_all(const rule *r, patron_db *db, int64_t now, int threads, roaring_bitmap_t *out,
                  patron_error *err)
{
    return rule_eval_all_due(r, db, now, threads, out, NULL, err);
}

int rule_eval_all_due(const rule *r, patron_db *db, int64_t now, int threads,
                      roaring_bitmap_t *out, int64_t *due, patron_error *err)
{
    roaring_bitmap_clear(out);
    if (!db->view)
        return err_set(err, PATRON_EINTERNAL, "the member view is not built");
    if (!due && !getenv("PATRON_NO_INDEX")) {
        int ix = eval_indexed(r, db, now, threads, out);
        if (ix < 0)
            return err_set(err, PATRON_ENOMEM, "out of memory evaluating the rule");
        if (ix > 0)
            return PATRON_OK;
    }
    uint32_t n = db->view->n;
    if (threads <= 0)
        threads = n_cores();
    if ((uint32_t)threads > n / BATCH + 1)
        threads = (int)(n / BATCH + 1);
    job jobs[64];
    for (int t = 0; t < threads; t++)
        jobs[t] = (job){.r = r, .db = db, .now = now, .out = out, .due = due,
                        .begin = (uint32_t)((uint64_t)n * (uint64_t)t / (uint64_t)threads),
                        .end = (uint32_t)((uint64_t)n * (uint64_t)(t + 1) / (uint64_t)threads)};
    if (run_jobs(jobs, threads) != 0)
        return err_set(err, PATRON_ENOMEM, "out of memory evaluating the rule");
    return PATRON_OK;
}

int rule_eval_members(const rule *r, patron_db *db, int64_t now, const uint32_t *members,
                      size_t n, roaring_bitmap_t *out, patron_error *err)
{
    return rule_eval_members_due(r, db, now, members, n, out, NULL, err);
}

int rule_eval_members_due(const rule *r, patron_db *db, int64_t now, const uint32_t *members,
                          size_t n, roaring_bitmap_t *out, int64_t *due, patron_error *err)
{
    return rule_eval_members_at(r, db, now, members, NULL, n, out, due, err);
}

/* Lists of a few batches or more are shared between the cores, in contiguous shares
 * (members are independent, so the answer is the same for any number of threads). */
int rule_eval_members_at(const rule *r, patron_db *db, int64_t now, const uint32_t *members,
                         const int64_t *nows, size_t n, roaring_bitmap_t *out, int64_t *due,
                         patron_error *err)
{
    if (!db->view)
        return err_set(err, PATRON_EINTERNAL, "the member view is not built");
    int threads = n >= 2 * BATCH ? n_cores() : 1;
    if ((size_t)threads > n / BATCH)
        threads = n / BATCH > 1 ? (int)(n / BATCH) : 1;
    job jobs[64];
    for (int t = 0; t < threads; t++) {
        size_t b = n * (size_t)t / (size_t)threads, e = n * (size_t)(t + 1) / (size_t)threads;
        jobs[t] = (job){.r = r, .db = db, .now = now, .members = members + b,
                        .nows = nows ? nows + b : NULL, .n = e - b, .out = out,
                        .due = due ? due + b : NULL};
    }
    if (run_jobs(jobs, threads) != 0)
        return err_set(err, PATRON_ENOMEM, "out of memory evaluating the rule");
    return PATRON_OK;
}

int rule_eval_node_text(const rule *r, const rnode *n, patron_db *db, uint32_t m, int64_t now,
                        char *buf, size_t cap)
{
    arena ar = {0};
    ectx x;
    ctx_init(&x, r, db, now, &ar);
    x.rows = &m;
    x.n = 1;
    vec v = eval(&x, n);
    int rc = PATRON_OK;
    if (n->type == VT_BOOL) {
        if (!v.b)
            rc = PATRON_ENOMEM;
        else
            snprintf(buf, cap, "%s", v.b[0] == 2 ? "null" : v.b[0] ? "true" : "false");
    } else if (n->type == VT_STR) {
        size_t len = 0;
        const char *s = "";
        if (!v.c) {
            rc = PATRON_ENOMEM;
        } else if (v.c[0] == 0) {
            snprintf(buf, cap, "null");
        } else {
            const strdict *d = n->kind == N_STR ? NULL : n->vc.dict;
            if (n->kind == N_FIELD && n->ref == REF_MEMBER_ID)
                s = db->member_id[m], len = strlen(s);
            else if (n->kind == N_STR)
                s = n->str, len = n->len;
            else if (d)
                s = strdict_str(d, v.c[0], &len);
            snprintf(buf, cap, "\"%.*s\"", (int)len, s);
        }
    } else if (n->type == VT_TS) {
        if (!v.d)
            rc = PATRON_ENOMEM;
        else if (isnan(v.d[0]))
            snprintf(buf, cap, "null");
        else {
            char t[TIME_FMT_LEN];
            time_format((int64_t)v.d[0], t);
            snprintf(buf, cap, "%s", t);
        }
    } else if (n->type == VT_NUM || n->type == VT_DUR) {
        if (!v.d)
            rc = PATRON_ENOMEM;
        else if (isnan(v.d[0]))
            snprintf(buf, cap, "null");
        else
            snprintf(buf, cap, "%.10g", v.d[0]);
    } else {
        snprintf(buf, cap, "null");
    }
    afree(&ar);
    return rc;
}
