/*
 * segments.c -- the segment catalog: create, update, drop, static lists, refresh with
 * enter/exit history.  See segments.h.
 */
#include "segments/segments.h"

#include "base/err.h"
#include "base/mem.h"
#include "base/rsort.h"
#include "base/time.h"
#include "ingest/input.h"
#include "rules/eval.h"

#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <xxhash.h>
#include <string.h>
#include <unistd.h>

/* ---- catalog --------------------------------------------------------------------- */

uint64_t segments_snapshot_slack = 65536;

static void q_clear(segment *g);

static void live_release(segment *g)
{
    rule_free(g->r);
    g->r = NULL;
    g->r_gen = 0;
    mem_free(g->due);
    g->due = NULL;
    g->n_due = 0;
    q_clear(g);
}

static void seg_release(segment *g)
{
    live_release(g);
    if (g->seen)
        roaring_bitmap_free(g->seen);
    mem_free(g->name);
    mem_free(g->rule);
    if (g->members)
        roaring_bitmap_free(g->members);
    memset(g, 0, sizeof *g);
}

void segments_free(patron_db *db)
{
    segcat *c = db->segs;
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        seg_release(&c->s[i]);
    mem_free(c->s);
    mem_free(c);
    db->segs = NULL;
}

static int load_one(void *ctx, const store_segment *g)
{
    segcat *c = ctx;
    if (MEM_GROW(c->s, c->cap, c->n + 1))
        return -1;
    segment *s = &c->s[c->n];
    memset(s, 0, sizeof *s);
    s->name = mem_strdup(g->name);
    s->rule = g->rule ? mem_strdup(g->rule) : NULL;
    s->kind = g->kind;
    s->created_at = g->created_at;
    s->as_of = g->as_of;
    s->snap_change = g->snap_change;
    s->members = roaring_bitmap_portable_deserialize_safe(g->members, g->members_n);
    if (!s->name || (g->rule && !s->rule) || !s->members) {
        int damaged = !s->members && s->name;
        seg_release(s);
        return damaged ? 1 : -1;
    }
    c->n++;
    return 0;
}

/* Walks one stored change blob ("SCH1", see put_changes): 0, 1 when damaged, or what fn
 * returned when not 0. */
typedef int (*sch_fn)(void *ctx, int64_t ts, uint32_t m, int enter);
static int sch_each(const unsigned char *b, size_t len, sch_fn fn, void *ctx)
{
    uint32_t n;
    uint64_t sum;
    if (len < 16 || memcmp(b, "SCH1", 4) != 0)
        return 1;
    memcpy(&n, b + 4, 4);
    if (len != 8 + (size_t)n * 13 + 8)
        return 1;
    memcpy(&sum, b + len - 8, 8);
    if (sum != XXH3_64bits(b, len - 8))
        return 1;
    for (uint32_t i = 0; i < n; i++) {
        int64_t ts;
        uint32_t m;
        memcpy(&ts, b + 8 + 8 * (size_t)i, 8);
        memcpy(&m, b + 8 + 8 * (size_t)n + 4 * (size_t)i, 4);
        int rc = fn(ctx, ts, m, b[8 + 12 * (size_t)n + i]);
        if (rc)
            return rc;
    }
    return 0;
}

typedef struct replay {
    roaring_bitmap_t *members;
    uint64_t n;
} replay;

static int replay_change(void *ctx, int64_t ts, uint32_t m, int enter)
{
    replay *r = ctx;
    (void)ts;
    if (enter)
        roaring_bitmap_add(r->members, m);
    else
        roaring_bitmap_remove(r->members, m);
    r->n++;
    return 0;
}

static int replay_one(void *ctx, const unsigned char *b, size_t len)
{
    return sch_each(b, len, replay_change, ctx);
}

int segments_load(patron_db *db, patron_error *err)
{
    if (db->segs)
        return PATRON_OK;
    segcat *c = mem_calloc(1, sizeof *c);
    if (!c)
        return err_set(err, PATRON_ENOMEM, "out of memory");
    db->segs = c;
    db->segs_free = segments_free;
    int rc = store_segments_each(db->st, load_one, c, err);
    if (rc == -1)
        rc = err_set(err, PATRON_ENOMEM, "out of memory loading segments");
    /* the stored set is a snapshot: replay the changes written after it */
    for (size_t i = 0; i < c->n && rc == PATRON_OK; i++) {
        replay r = {c->s[i].members, 0};
        rc = store_segment_changes_after(db->st, c->s[i].name, c->s[i].snap_change, replay_one, &r,
                                         err);
        c->s[i].unsnap = r.n;
    }
    if (rc != PATRON_OK)
        segments_free(db);
    return rc;
}

segment *segment_find(patron_db *db, const char *name)
{
    segcat *c = db->segs;
    for (size_t i = 0; c && i < c->n; i++)
        if (strcmp(c->s[i].name, name) == 0)
            return &c->s[i];
    return NULL;
}

/* in_segment() resolution: the catalog, with one name optionally overridden (the rule
 * being created or updated) or hidden (the segment being dropped). */
typedef struct envctx {
    patron_db *db;
    const char *override_name, *override_text;
    const char *hidden;
} envctx;

static int env_lookup(void *ctx, const char *name, const char **text, const void **members)
{
    envctx *e = ctx;
    if (e->hidden && strcmp(name, e->hidden) == 0)
        return 0;
    if (e->override_name && strcmp(name, e->override_name) == 0) {
        *text = e->override_text;
        *members = NULL;
        return 1;
    }
    segment *g = segment_find(e->db, name);
    if (!g) {
        for (int i = 0; i < e->db->n_builtin; i++)
            if (strcmp(e->db->builtin_name[i], name) == 0) {
                *text = NULL;
                *members = e->db->builtin_members[i];
                return 2;
            }
        return 0;
    }
    *text = g->kind == SEG_RULE ? g->rule : NULL;
    *members = g->members;
    return 1;
}

static int env_lookup_db(void *ctx, const char *name, const char **text, const void **members)
{
    envctx e = {ctx, NULL, NULL, NULL};
    return env_lookup(&e, name, text, members);
}

void segments_env(patron_db *db, rule_env *env)
{
    env->db = db;
    env->segment = env_lookup_db;
    env->ctx = db;
}

/* ---- helpers --------------------------------------------------------------------- */

static int valid_name(const char *name, patron_error *err)
{
    size_t n = strlen(name);
    if (n == 0 || n > 128)
        return err_set(err, PATRON_EUSAGE, "a segment name has 1 to 128 bytes");
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
            return err_set(err, PATRON_EUSAGE, "a segment name cannot hold control characters");
    return PATRON_OK;
}

static int serialize(const roaring_bitmap_t *b, char **out, size_t *n)
{
    roaring_bitmap_t *c = roaring_bitmap_copy(b);
    if (!c)
        return PATRON_ENOMEM;
    roaring_bitmap_run_optimize(c);
    *n = roaring_bitmap_portable_size_in_bytes(c);
    *out = mem_alloc(*n ? *n : 1);
    if (!*out) {
        roaring_bitmap_free(c);
        return PATRON_ENOMEM;
    }
    roaring_bitmap_portable_serialize(c, *out);
    roaring_bitmap_free(c);
    return PATRON_OK;
}

static int put_segment(patron_db *db, const segment *g, patron_error *err)
{
    char *blob;
    size_t n;
    if (serialize(g->members, &blob, &n) != PATRON_OK)
        return err_set(err, PATRON_ENOMEM, "out of memory");
    store_segment sg = {g->name, g->kind, g->rule, g->created_at, g->as_of, blob, n, g->snap_change};
    int rc = store_segment_put(db->st, &sg, err);
    mem_free(blob);
    return rc;
}

/* ---- change records ---------------------------------------------------------------- */

/* Enters and exits in the order they happened, kept until they are stored. */
typedef struct chbuf {
    int64_t *ts;
    uint32_t *m;
    uint8_t *enter;
    size_t n, cap;
    int failed;
} chbuf;

static void ch_add(chbuf *c, int64_t ts, uint32_t m, int enter)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 256;
        int64_t *a = mem_realloc_array(c->ts, cap, sizeof *a);
        if (a)
            c->ts = a;
        uint32_t *b = mem_realloc_array(c->m, cap, sizeof *b);
        if (b)
            c->m = b;
        uint8_t *e = mem_realloc_array(c->enter, cap, 1);
        if (e)
            c->enter = e;
        if (!a || !b || !e) {
            c->failed = 1;
            return;
        }
        c->cap = cap;
    }
    c->ts[c->n] = ts;
    c->m[c->n] = m;
    c->enter[c->n++] = (uint8_t)enter;
}

static void ch_free(chbuf *c)
{
    mem_free(c->ts);
    mem_free(c->m);
    mem_free(c->enter);
    memset(c, 0, sizeof *c);
}

/* Stores the buffered changes as one blob: "SCH1", u32 n, i64 ts[n], u32 member[n],
 * u8 enter[n], u64 XXH3 of everything before it. */
typedef struct chrow {
    int64_t ts;
    uint32_t m;
    uint8_t enter;
} chrow;

/* Puts the changes in time order, members in order within an instant (rounds record
 * them member by member; a member changes at most once per instant). */
static int ch_sort(chbuf *c)
{
    size_t n = c->n;
    chrow *r = mem_alloc_array(n ? n : 1, sizeof *r);
    chrow *t = mem_alloc_array(n ? n : 1, sizeof *t);
    if (!r || !t) {
        mem_free(r);
        mem_free(t);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        r[i] = (chrow){c->ts[i], c->m[i], c->enter[i]};
    static const rsort_key by[2] = {{offsetof(chrow, ts), 8, 1}, {offsetof(chrow, m), 4, 0}};
    const chrow *o = rsort(r, t, n, sizeof *r, by, 2);
    for (size_t i = 0; i < n; i++)
        c->ts[i] = o[i].ts, c->m[i] = o[i].m, c->enter[i] = o[i].enter;
    mem_free(r);
    mem_free(t);
    return 0;
}

static int put_changes(patron_db *db, const char *name, chbuf *c, int64_t *id, patron_error *err)
{
    if (c->failed)
        return err_set(err, PATRON_ENOMEM, "out of memory recording segment changes");
    if (c->n == 0)
        return PATRON_OK;
    if (ch_sort(c) != 0)
        return err_set(err, PATRON_ENOMEM, "out of memory");
    size_t len = 8 + c->n * 13 + 8;
    unsigned char *b = mem_alloc(len);
    if (!b)
        return err_set(err, PATRON_ENOMEM, "out of memory");
    uint32_t n32 = (uint32_t)c->n;
    memcpy(b, "SCH1", 4);
    memcpy(b + 4, &n32, 4);
    memcpy(b + 8, c->ts, c->n * 8);
    memcpy(b + 8 + c->n * 8, c->m, c->n * 4);
    memcpy(b + 8 + c->n * 12, c->enter, c->n);
    uint64_t sum = XXH3_64bits(b, len - 8);
    memcpy(b + len - 8, &sum, 8);
    int64_t first = c->ts[0], last = c->ts[0];
    for (size_t i = 1; i < c->n; i++) {
        first = c->ts[i] < first ? c->ts[i] : first;
        last = c->ts[i] > last ? c->ts[i] : last;
    }
    int rc = store_segment_change_put(db->st, name, first, last, b, len, id, err);
    mem_free(b);
    return rc;
}

/* Records every member of `to` not in `from` as entering, and the reverse, at ts. */
typedef struct diffctx {
    chbuf *c;
    int64_t ts;
    int enter;
} diffctx;

static bool diff_one(uint32_t m, void *p)
{
    diffctx *d = p;
    ch_add(d->c, d->ts, m, d->enter);
    return !d->c->failed;
}

static void ch_diff(chbuf *c, const roaring_bitmap_t *from, const roaring_bitmap_t *to, int64_t ts)
{
    roaring_bitmap_t *in = roaring_bitmap_andnot(to, from), *out = roaring_bitmap_andnot(from, to);
    if (!in || !out) {
        c->failed = 1;
    } else {
        diffctx e = {c, ts, 1}, x = {c, ts, 0};
        roaring_iterate(in, diff_one, &e);
        roaring_iterate(out, diff_one, &x);
    }
    if (in)
        roaring_bitmap_free(in);
    if (out)
        roaring_bitmap_free(out);
}

/* ---- live state ------------------------------------------------------------------ */

/* Compiles text for segment `name` (cycles through the catalog are found here). */
static int compile_for(patron_db *db, const char *name, const char *text, rule **out,
                       patron_error *err)
{
    int rc = db_view_ensure(db, err);
    if (rc != PATRON_OK)
        return rc;
    envctx e = {db, name, text, NULL};
    rule_env env = {db, env_lookup, &e};
    return rule_compile(text, &env, out, err);
}

static void deps_of(const rnode *n, uint32_t *deps)
{
    if (!n)
        return;
    switch (n->kind) {
    case N_FIELD:
        if (n->ref == REF_COMPUTED)
            *deps |= (n->which == F_AGE || n->which == F_DAYS_TO_BIRTHDAY || n->which == F_TENURE_DAYS)
                             ? DB_SRC_PROFILE
                             : DB_SRC_ORDERS;
        else if (n->ref == REF_COL && n->vc.st == VS_FN)
            *deps |= DB_SRC_LOYALTY;
        else if (n->ref != REF_NONE)
            *deps |= n->is_model ? DB_SRC_MODELS : DB_SRC_PROFILE;
        break;
    case N_AGG:
        *deps |= n->stream_id < ST_REDEMPTIONS ? DB_SRC_ORDERS
                                               : (uint32_t)DB_SRC_EVENTS << (n->stream_id - ST_REDEMPTIONS);
        break;
    case N_INSEG:
        if (!n->a)
            *deps |= SEG_DEP_STATIC;
        break;
    default:
        break;
    }
    deps_of(n->a, deps);
    deps_of(n->b, deps);
    deps_of(n->c, deps);
    for (size_t i = 0; i < n->n_items; i++)
        deps_of(n->items[i], deps);
}

/* ---- the expiry index: a calendar queue of day buckets ----
 * A sync only ever asks for "every entry at or before now", in any order (each member
 * has one current entry; rounds keep each member's instants in order), so entries go
 * into the bucket of their day, unsorted: a push is an append, and taking the entries up
 * to now walks the buckets from the first non-empty one.  A binary heap of a million
 * entries per segment cost a cache miss per level on every pop. */
#define Q_SPAN (1 << 17) /* buckets at most (~359 years); later entries wait in the last */

static int64_t q_day(int64_t t)
{
    return t >= 0 ? t / TIME_DAY : -((-t + TIME_DAY - 1) / TIME_DAY);
}

static void q_clear(segment *g)
{
    for (size_t i = 0; i < g->qn; i++)
        mem_free(g->qb[i].e);
    mem_free(g->qb);
    g->qb = NULL;
    g->qn = g->qfirst = g->qcount = 0;
}

static int q_push(segment *g, int64_t t, uint32_t m)
{
    if (t == INT64_MAX)
        return 0;
    int64_t d = q_day(t);
    if (g->qn == 0) { /* every entry is after the segment's as_of: start the days there */
        int64_t a = q_day(g->as_of);
        g->qbase = d < a ? d : a;
        g->qfirst = 0;
    }
    if (d < g->qbase) { /* earlier than every bucket so far: room at the front */
        size_t add = (size_t)(g->qbase - d);
        if (add > Q_SPAN || g->qn + add > Q_SPAN)
            return -1;
        seg_bucket *nb = mem_realloc_array(g->qb, g->qn + add, sizeof *nb);
        if (!nb)
            return -1;
        memmove(nb + add, nb, g->qn * sizeof *nb);
        memset(nb, 0, add * sizeof *nb);
        g->qb = nb;
        g->qn += add;
        g->qbase = d;
        g->qfirst += add;
    }
    size_t i = (size_t)(d - g->qbase) < Q_SPAN ? (size_t)(d - g->qbase) : Q_SPAN - 1;
    if (i >= g->qn) {
        size_t n = i + 1 > g->qn * 2 ? i + 1 : g->qn * 2;
        if (n > Q_SPAN)
            n = Q_SPAN;
        seg_bucket *nb = mem_realloc_array(g->qb, n, sizeof *nb);
        if (!nb)
            return -1;
        memset(nb + g->qn, 0, (n - g->qn) * sizeof *nb);
        g->qb = nb;
        g->qn = n;
    }
    seg_bucket *b = &g->qb[i];
    if (MEM_GROW(b->e, b->cap, b->n + 1))
        return -1;
    b->e[b->n++] = (seg_due){t, m};
    g->qcount++;
    if (i < g->qfirst)
        g->qfirst = i;
    return 0;
}

/* Moves every entry with t <= now out of the queue into fn(ctx, entry); entries in the
 * day of now that come later stay. */
typedef int (*q_fn)(void *ctx, seg_due e);
static int q_take(segment *g, int64_t now, q_fn fn, void *ctx)
{
    if (!g->qcount || q_day(now) < g->qbase)
        return 0;
    size_t last = (size_t)(q_day(now) - g->qbase);
    if (last >= g->qn)
        last = g->qn - 1;
    for (size_t i = g->qfirst; i <= last; i++) {
        seg_bucket *b = &g->qb[i];
        size_t w = 0;
        for (size_t k = 0; k < b->n; k++) {
            if (b->e[k].t > now) {
                b->e[w++] = b->e[k];
                continue;
            }
            g->qcount--;
            if (fn(ctx, b->e[k]) != 0) { /* keep the rest */
                for (size_t j = k + 1; j < b->n; j++)
                    b->e[w++] = b->e[j];
                b->n = w;
                return -1;
            }
        }
        b->n = w;
        if (w == 0 && i == g->qfirst)
            g->qfirst = i + 1;
        if (w == 0 && b->cap > 64) { /* a day gone: give its memory back */
            mem_free(b->e);
            b->e = NULL;
            b->cap = 0;
        }
    }
    return 0;
}


/* (Re)compiles g's rule against the current view when needed. */
static int live_compile(patron_db *db, segment *g, patron_error *err)
{
    if (g->r && g->r_gen == db->view_gen)
        return PATRON_OK;
    rule *r;
    int rc = compile_for(db, g->name, g->rule, &r, err);
    if (rc != PATRON_OK)
        return err_prefix(err, "segment '%s': ", g->name);
    rule_free(g->r);
    g->r = r;
    g->r_gen = db->view_gen;
    g->deps = 0;
    deps_of(r->root, &g->deps);
    return PATRON_OK;
}

/* Builds the expiry index: one evaluation pass over every member at the segment's as_of
 * (the stored member set stays what it is). */
static int live_build(patron_db *db, segment *g, patron_error *err)
{
    int rc = live_compile(db, g, err);
    if (rc != PATRON_OK || g->due)
        return rc;
    uint32_t n = db->n_members;
    int64_t *due = mem_alloc_array(n ? n : 1, sizeof *due);
    roaring_bitmap_t *tmp = roaring_bitmap_create();
    if (!due || !tmp) {
        mem_free(due);
        if (tmp)
            roaring_bitmap_free(tmp);
        return err_set(err, PATRON_ENOMEM, "out of memory");
    }
    rc = rule_eval_all_due(g->r, db, g->as_of, 0, tmp, due, err);
    roaring_bitmap_free(tmp);
    if (rc != PATRON_OK) {
        mem_free(due);
        return rc;
    }
    g->due = due;
    g->n_due = n;
    q_clear(g);
    for (uint32_t m = 0; m < n; m++)
        if (q_push(g, due[m], m) != 0)
            return err_set(err, PATRON_ENOMEM, "out of memory");
    return PATRON_OK;
}

/* Re-evaluates members ms[0..k) of g, each at its own instant ts[i] (or all at t when ts
 * is NULL): applies the answers to g->members, records the changes at those instants, and
 * schedules each member's next instant. */
static int reevaluate(patron_db *db, segment *g, const uint32_t *ms, const int64_t *ts, size_t k,
                      int64_t t, chbuf *ch, patron_error *err)
{
    if (k == 0)
        return PATRON_OK;
    int64_t *due = mem_alloc_array(k, sizeof *due);
    roaring_bitmap_t *hit = roaring_bitmap_create();
    int rc = PATRON_OK;
    if (!due || !hit)
        rc = err_set(err, PATRON_ENOMEM, "out of memory");
    if (rc == PATRON_OK)
        rc = rule_eval_members_at(g->r, db, t, ms, ts, k, hit, due, err);
    for (size_t i = 0; i < k && rc == PATRON_OK; i++) {
        uint32_t m = ms[i];
        int64_t at = ts ? ts[i] : t;
        int was = roaring_bitmap_contains(g->members, m), is = roaring_bitmap_contains(hit, m);
        if (was != is) {
            if (is)
                roaring_bitmap_add(g->members, m);
            else
                roaring_bitmap_remove(g->members, m);
            ch_add(ch, at, m, is);
        }
        int64_t nx = due[i] <= at ? at + 1 : due[i]; /* never schedule the past */
        if (m < g->n_due) {
            g->due[m] = nx == INT64_MAX ? INT64_MAX : nx;
            if (q_push(g, g->due[m], m) != 0)
                rc = err_set(err, PATRON_ENOMEM, "out of memory");
        }
    }
    g->evaluated += k;
    if (g->seen)
        roaring_bitmap_add_many(g->seen, k, ms);
    mem_free(due);
    if (hit)
        roaring_bitmap_free(hit);
    return rc;
}

/* Grows the expiry index to the current member count (new members are evaluated). */
static int live_grow(patron_db *db, segment *g, patron_error *err)
{
    uint32_t n = db->n_members;
    if (n <= g->n_due)
        return PATRON_OK;
    int64_t *d = mem_realloc_array(g->due, n, sizeof *d);
    if (!d)
        return err_set(err, PATRON_ENOMEM, "out of memory");
    for (uint32_t m = g->n_due; m < n; m++)
        d[m] = INT64_MAX;
    g->due = d;
    g->n_due = n;
    return PATRON_OK;
}

/* The members a round takes: current entries, not those whose data changed (they are
 * evaluated at now afterwards). */
typedef struct gather {
    segment *g;
    const roaring_bitmap_t *touched;
    uint32_t *m;
    int64_t *t;
    size_t n, cap, tcap;
} gather;

/* Sorts the pairs (m[i], t[i]) by member (each member appears once). */
static void sort_by_member(uint32_t *m, int64_t *t, size_t n)
{
    seg_due *p = mem_alloc_array(n, sizeof *p), *q = mem_alloc_array(n, sizeof *q);
    if (p && q) { /* else the order is only a matter of speed */
        for (size_t i = 0; i < n; i++)
            p[i] = (seg_due){t[i], m[i]};
        static const rsort_key by[1] = {{offsetof(seg_due, m), 4, 0}};
        const seg_due *o = rsort(p, q, n, sizeof *p, by, 1);
        for (size_t i = 0; i < n; i++)
            m[i] = o[i].m, t[i] = o[i].t;
    }
    mem_free(p);
    mem_free(q);
}

static int gather_one(void *ctx, seg_due e)
{
    gather *ga = ctx;
    segment *g = ga->g;
    if (e.m >= g->n_due || g->due[e.m] != e.t)
        return 0; /* superseded */
    if (ga->touched && roaring_bitmap_contains(ga->touched, e.m))
        return 0; /* its data changed: evaluated at now below */
    g->due[e.m] = INT64_MAX;
    if (MEM_GROW(ga->m, ga->cap, ga->n + 1) || MEM_GROW(ga->t, ga->tcap, ga->n + 1))
        return -1;
    ga->m[ga->n] = e.m;
    ga->t[ga->n++] = e.t;
    return 0;
}

/* One rule segment's share of a sync: set up by sync_prepare() one segment after the
 * other (building an expiry index or compiling a rule may change what segments share:
 * dictionaries, the view's indexes), then brought to now by sync_eval(), for several
 * segments at once: that part reads the view and writes only the segment's own state
 * (in_segment of a rule segment is inlined, so no segment reads another's members). */
typedef struct syncjob {
    patron_db *db;
    segment *g;
    int64_t now, was;
    const roaring_bitmap_t *touched; /* or NULL: g does not read what changed */
    uint32_t old_n;                  /* members before the ones created since */
    chbuf ch;
    patron_error err;
    int rc;
} syncjob;

/* Sets j up for segment g; `touched` lists members whose data changed (sources `src`),
 * re-evaluated at now when g reads any of those sources. */
static int sync_prepare(syncjob *j, patron_db *db, segment *g, int64_t now,
                        const roaring_bitmap_t *touched, uint32_t src, patron_error *err)
{
    int rc;
    memset(j, 0, sizeof *j);
    j->db = db, j->g = g, j->now = now, j->was = g->as_of;
    uint32_t old_n = g->due ? g->n_due : db->n_members;
    if ((rc = live_build(db, g, err)) != PATRON_OK || (rc = live_compile(db, g, err)) != PATRON_OK)
        return rc;
    if (!g->due || g->n_due < old_n)
        old_n = g->n_due;
    if ((rc = live_grow(db, g, err)) != PATRON_OK)
        return rc;
    j->old_n = old_n;
    /* touched members matter only for data this segment has not seen (one created after
     * the imports already reflects them) */
    j->touched = touched && (g->deps & src) && g->data_seen != db->data_version ? touched : NULL;
    return PATRON_OK;
}

/* Brings j's segment from as_of to now (its changes into j->ch): j->rc and j->err. */
static void sync_eval(syncjob *j)
{
    patron_db *db = j->db;
    segment *g = j->g;
    int64_t now = j->now;
    const roaring_bitmap_t *touched = j->touched;
    uint32_t old_n = j->old_n;
    int use_touched = touched != NULL;
    chbuf *ch = &j->ch;
    patron_error *err = &j->err;
    int rc = PATRON_OK;
    /* 1. time: in rounds.  A round takes every member whose instant has come by now
     * (its earliest one) and evaluates each at its own instant, in one batch; what that
     * schedules at or before now is the next round.  Each member's evaluations stay in
     * time order; members are independent of each other. */
    gather ga = {g, use_touched ? touched : NULL, NULL, NULL, 0, 0, 0};
    /* a round that takes nothing current evaluates nothing, so schedules nothing more */
    do {
        ga.n = 0;
        if (q_take(g, now, gather_one, &ga) != 0)
            rc = err_set(err, PATRON_ENOMEM, "out of memory");
        if (rc == PATRON_OK && ga.n > 1)
            sort_by_member(ga.m, ga.t, ga.n); /* member order: neighbouring memory */
        if (rc == PATRON_OK && ga.n)
            rc = reevaluate(db, g, ga.m, ga.t, ga.n, now, ch, err);
    } while (rc == PATRON_OK && ga.n);
    mem_free(ga.t);
    uint32_t *batch = ga.m;
    size_t bn = 0, bcap = ga.cap;
    /* 2. data: touched members (for the sources g reads) and members created since */
    bn = 0;
    if (rc == PATRON_OK && use_touched) {
        uint64_t k = roaring_bitmap_get_cardinality(touched);
        if (MEM_GROW(batch, bcap, k + 1))
            rc = err_set(err, PATRON_ENOMEM, "out of memory");
        else {
            roaring_bitmap_to_uint32_array(touched, batch);
            bn = (size_t)k;
            while (bn && batch[bn - 1] >= old_n) /* new members are added below */
                bn--;
        }
    }
    for (uint32_t m = old_n; m < db->n_members && rc == PATRON_OK; m++) {
        if (MEM_GROW(batch, bcap, bn + 1))
            rc = err_set(err, PATRON_ENOMEM, "out of memory");
        else
            batch[bn++] = m;
    }
    if (rc == PATRON_OK && g->full_pending) {
        bn = 0;
        if (MEM_GROW(batch, bcap, (size_t)db->n_members + 1))
            rc = err_set(err, PATRON_ENOMEM, "out of memory");
        for (uint32_t m = 0; m < db->n_members && rc == PATRON_OK; m++)
            batch[bn++] = m;
        g->full_pending = 0;
    }
    if (rc == PATRON_OK && bn)
        rc = reevaluate(db, g, batch, NULL, bn, now, ch, err);
    mem_free(batch);
    if (rc == PATRON_OK) {
        g->as_of = now;
        g->data_seen = db->data_version;
    }
    j->rc = rc;
}

/* Runs sync_eval() on the jobs, each taken once by whichever thread is free. */
typedef struct syncpool {
    syncjob *jobs;
    size_t n, next;
    pthread_mutex_t mu;
} syncpool;

static void *sync_worker(void *arg)
{
    syncpool *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        size_t i = p->next++;
        pthread_mutex_unlock(&p->mu);
        if (i >= p->n)
            return NULL;
        sync_eval(&p->jobs[i]);
    }
}

static void sync_eval_all(syncjob *jobs, size_t n)
{
    syncpool p = {jobs, n, 0, PTHREAD_MUTEX_INITIALIZER};
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    size_t threads = cores < 1 ? 1 : cores > 16 ? 16 : (size_t)cores;
    if (threads > n)
        threads = n;
    pthread_t tid[16];
    int started[16] = {0};
    for (size_t t = 1; t < threads; t++)
        started[t] = pthread_create(&tid[t], NULL, sync_worker, &p) == 0;
    sync_worker(&p); /* this thread too; it ends when every job is taken */
    for (size_t t = 1; t < threads; t++)
        if (started[t])
            pthread_join(tid[t], NULL);
    pthread_mutex_destroy(&p.mu);
}

static int evaluate(patron_db *db, const char *name, const char *text, int64_t now,
                    roaring_bitmap_t *out, patron_error *err)
{
    rule *r;
    int rc = compile_for(db, name, text, &r, err);
    if (rc != PATRON_OK)
        return rc;
    rc = rule_eval_all(r, db, now, 0, out, err);
    rule_free(r);
    return rc;
}

/* ---- operations ------------------------------------------------------------------ */

/* Stores g (as it is now in memory) and its changes in one transaction. */
static int persist(patron_db *db, segment *g, chbuf *ch, patron_error *err)
{
    int rc = store_begin(db->st, err);
    if (rc != PATRON_OK)
        return rc;
    int64_t id = 0;
    if ((rc = put_changes(db, g->name, ch, &id, err)) == PATRON_OK) {
        if (ch->n)
            g->snap_change = id; /* the snapshot below includes these changes */
        g->unsnap = 0;
        rc = put_segment(db, g, err);
    }
    if (rc == PATRON_OK)
        rc = store_commit(db->st, err);
    if (rc != PATRON_OK)
        store_rollback(db->st);
    return rc;
}

static int add_segment(patron_db *db, const char *name, int kind, const char *text, int64_t now,
                       roaring_bitmap_t *members, patron_error *err)
{
    segcat *c = db->segs;
    if (MEM_GROW(c->s, c->cap, c->n + 1)) {
        roaring_bitmap_free(members);
        return err_set(err, PATRON_ENOMEM, "out of memory");
    }
    segment g;
    memset(&g, 0, sizeof g);
    g.name = mem_strdup(name);
    g.kind = kind;
    g.rule = text ? mem_strdup(text) : NULL;
    g.created_at = g.as_of = now;
    g.members = members;
    g.data_seen = db->data_version;
    if (!g.name || (text && !g.rule)) {
        seg_release(&g);
        return err_set(err, PATRON_ENOMEM, "out of memory");
    }
    chbuf ch = {0};
    roaring_bitmap_t *none = roaring_bitmap_create();
    if (none)
        ch_diff(&ch, none, members, now);
    int rc = none ? persist(db, &g, &ch, err) : err_set(err, PATRON_ENOMEM, "out of memory");
    ch_free(&ch);
    if (none)
        roaring_bitmap_free(none);
    if (rc != PATRON_OK) {
        seg_release(&g);
        return rc;
    }
    c->s[c->n++] = g;
    return PATRON_OK;
}

int segment_create(patron_db *db, const char *name, const char *text, int64_t now,
                   patron_error *err)
{
    int rc;
    if ((rc = valid_name(name, err)) || (rc = segments_load(db, err)))
        return rc;
    if (segment_find(db, name))
        return err_set(err, PATRON_EINPUT,
                       "segment '%s' exists (use 'segment update' to change its rule)", name);
    roaring_bitmap_t *m = roaring_bitmap_create();
    if (!m)
        return err_set(err, PATRON_ENOMEM, "out of memory");
    if ((rc = evaluate(db, name, text, now, m, err)) != PATRON_OK) {
        roaring_bitmap_free(m);
        return rc;
    }
    return add_segment(db, name, SEG_RULE, text, now, m, err);
}

/* Swaps in a new member set for g at now (a new rule, or a new static list), storing
 * the difference; the live state is rebuilt on next need. */
static int replace_members(patron_db *db, segment *g, roaring_bitmap_t *now_members, int64_t now,
                           const char *new_rule, patron_error *err)
{
    chbuf ch = {0};
    ch_diff(&ch, g->members, now_members, now);
    char *rule_copy = new_rule ? mem_strdup(new_rule) : NULL;
    int rc = PATRON_OK;
    if (new_rule && !rule_copy)
        rc = err_set(err, PATRON_ENOMEM, "out of memory");
    segment ng = *g;
    ng.members = now_members;
    ng.as_of = now;
    ng.data_seen = db->data_version;
    if (rule_copy)
        ng.rule = rule_copy;
    if (rc == PATRON_OK)
        rc = persist(db, &ng, &ch, err);
    ch_free(&ch);
    if (rc != PATRON_OK) {
        mem_free(rule_copy);
        roaring_bitmap_free(now_members);
        return rc;
    }
    roaring_bitmap_free(g->members);
    if (rule_copy)
        mem_free(g->rule);
    live_release(&ng);
    *g = ng;
    if (g->kind == SEG_STATIC) { /* rule segments reading it are evaluated afresh */
        segcat *c = db->segs;
        for (size_t i = 0; i < c->n; i++)
            if (c->s[i].kind == SEG_RULE)
                c->s[i].full_pending = 1;
    }
    return PATRON_OK;
}

int segment_update(patron_db *db, const char *name, const char *text, int64_t now,
                   patron_error *err)
{
    int rc;
    if ((rc = segments_load(db, err)))
        return rc;
    segment *g = segment_find(db, name);
    if (!g)
        return err_set(err, PATRON_ENOTFOUND, "no segment named '%s'", name);
    if (g->kind != SEG_RULE)
        return err_set(err, PATRON_EINPUT, "segment '%s' is a static list; import it again instead",
                       name);
    roaring_bitmap_t *m = roaring_bitmap_create();
    if (!m)
        return err_set(err, PATRON_ENOMEM, "out of memory");
    if ((rc = evaluate(db, name, text, now, m, err)) != PATRON_OK) {
        roaring_bitmap_free(m);
        return rc;
    }
    return replace_members(db, g, m, now, text, err);
}

int segment_drop(patron_db *db, const char *name, patron_error *err)
{
    int rc;
    if ((rc = segments_load(db, err)))
        return rc;
    segment *g = segment_find(db, name);
    if (!g)
        return err_set(err, PATRON_ENOTFOUND, "no segment named '%s'", name);
    /* Refuse while another segment's rule uses it. */
    if ((rc = db_view_ensure(db, err)) != PATRON_OK)
        return rc;
    segcat *c = db->segs;
    for (size_t i = 0; i < c->n; i++) {
        segment *o = &c->s[i];
        if (o == g || o->kind != SEG_RULE)
            continue;
        envctx e = {db, NULL, NULL, name};
        rule_env env = {db, env_lookup, &e};
        rule *r;
        patron_error tmp = {0};
        if (rule_compile(o->rule, &env, &r, &tmp) != PATRON_OK) {
            if (strstr(tmp.message, "no segment named"))
                return err_set(err, PATRON_EINPUT,
                               "segment '%s' is used by segment '%s' (in_segment); drop or update that one first",
                               name, o->name);
        } else {
            rule_free(r);
        }
    }
    if ((rc = store_begin(db->st, err)) != PATRON_OK)
        return rc;
    if ((rc = store_segment_drop(db->st, name, err)) == PATRON_OK)
        rc = store_commit(db->st, err);
    if (rc != PATRON_OK) {
        store_rollback(db->st);
        return rc;
    }
    size_t k = (size_t)(g - c->s);
    seg_release(g);
    memmove(&c->s[k], &c->s[k + 1], (c->n - k - 1) * sizeof *c->s);
    c->n--;
    return PATRON_OK;
}

int segment_import(patron_db *db, const char *name, const char *path, int64_t now,
                   patron_error *err)
{
    int rc;
    if ((rc = valid_name(name, err)) || (rc = segments_load(db, err)))
        return rc;
    segment *g = segment_find(db, name);
    if (g && g->kind != SEG_STATIC)
        return err_set(err, PATRON_EINPUT, "segment '%s' is a rule segment; drop it first", name);
    csv_reader *r;
    if ((rc = csv_open(path, ',', &r, err)) != PATRON_OK)
        return rc;
    roaring_bitmap_t *m = roaring_bitmap_create();
    if (!m) {
        csv_free(r);
        return err_set(err, PATRON_ENOMEM, "out of memory");
    }
    const csv_field *f;
    size_t nf;
    size_t col = 0;
    int first = 1, bad = 0;
    while ((rc = csv_next(r, &f, &nf, err)) == 1) {
        if (first) {
            first = 0;
            /* A header naming member_id picks that column; otherwise the first column
             * holds ids, and a first row that is not a known id is taken as a header. */
            int hdr = 0;
            for (size_t i = 0; i < nf; i++)
                if (f[i].n == 9 && memcmp(f[i].p, "member_id", 9) == 0)
                    col = i, hdr = 1;
            uint32_t mi;
            if (hdr || (nf > 0 && !hmap_get(&db->member_ids, f[0].p, f[0].n, &mi)))
                continue;
        }
        if (col >= nf || f[col].n == 0)
            continue;
        uint32_t mi;
        if (!hmap_get(&db->member_ids, f[col].p, f[col].n, &mi)) {
            rc = err_set(err, PATRON_EINPUT, "%s:%llu: column 'member_id': no member '%.*s'", path,
                         (unsigned long long)csv_line(r), (int)(f[col].n > 128 ? 128 : f[col].n),
                         f[col].p);
            bad = 1;
            break;
        }
        roaring_bitmap_add(m, mi);
    }
    csv_free(r);
    if (bad || rc < 0) {
        roaring_bitmap_free(m);
        return rc < 0 ? rc : PATRON_EINPUT;
    }
    if (!g)
        return add_segment(db, name, SEG_STATIC, NULL, now, m, err);
    return replace_members(db, g, m, now, NULL, err);
}

static int sync_all(patron_db *db, int64_t now, int full, patron_error *err)
{
    int rc;
    if ((rc = segments_load(db, err)) || (rc = db_view_ensure(db, err)))
        return rc;
    const roaring_bitmap_t *touched = db->touched;
    uint32_t src = db->touched_sources;
    segcat *c = db->segs;
    /* every segment's new state in one transaction */
    if ((rc = store_begin(db->st, err)) != PATRON_OK)
        return rc;
    syncjob *jobs = mem_calloc(c->n + 1, sizeof *jobs);
    size_t nj = 0;
    if (!jobs)
        rc = err_set(err, PATRON_ENOMEM, "out of memory");
    for (size_t i = 0; i < c->n && rc == PATRON_OK; i++) {
        segment *g = &c->s[i];
        if (g->kind != SEG_RULE || g->as_of > now)
            continue;
        if (full) {
            syncjob *j = &jobs[nj++];
            memset(j, 0, sizeof *j);
            j->db = db, j->g = g, j->now = now, j->was = g->as_of;
            roaring_bitmap_t *m = roaring_bitmap_create();
            if (!m)
                rc = err_set(err, PATRON_ENOMEM, "out of memory");
            else if ((rc = live_compile(db, g, err)) == PATRON_OK &&
                     (rc = rule_eval_all(g->r, db, now, 0, m, err)) == PATRON_OK) {
                ch_diff(&j->ch, g->members, m, now);
                roaring_bitmap_free(g->members);
                g->members = m;
                g->as_of = now;
                g->data_seen = db->data_version;
                m = NULL;
                mem_free(g->due); /* the expiry index is rebuilt on next need */
                g->due = NULL;
                g->n_due = 0;
                q_clear(g);
            }
            if (m)
                roaring_bitmap_free(m);
        } else {
            rc = sync_prepare(&jobs[nj], db, g, now, touched, src, err);
            nj++;
        }
    }
    if (rc == PATRON_OK && !full)
        sync_eval_all(jobs, nj);
    /* the changes are stored in catalog order, whatever thread made them */
    for (size_t k = 0; k < nj && rc == PATRON_OK; k++) {
        syncjob *j = &jobs[k];
        segment *g = j->g;
        chbuf *ch = &j->ch;
        if (j->rc != PATRON_OK) {
            *err = j->err;
            rc = j->rc;
            break;
        }
        if (ch->n) {
            /* the changes always; a new snapshot of the set only once the changes since
             * the last one are a fair part of it (a load replays the changes after it) */
            int64_t id = 0;
            rc = put_changes(db, g->name, ch, &id, err);
            g->unsnap += ch->n;
            if (rc == PATRON_OK &&
                g->unsnap * 8 > roaring_bitmap_get_cardinality(g->members) + segments_snapshot_slack) {
                g->snap_change = id;
                g->unsnap = 0;
                rc = put_segment(db, g, err);
            } else if (rc == PATRON_OK) {
                rc = store_segment_as_of(db->st, g->name, g->as_of, err);
            }
        } else if (g->as_of != j->was) { /* only time moved */
            rc = store_segment_as_of(db->st, g->name, g->as_of, err);
        }
    }
    for (size_t k = 0; k < nj; k++)
        ch_free(&jobs[k].ch);
    mem_free(jobs);
    if (rc == PATRON_OK)
        rc = store_commit(db->st, err);
    if (rc != PATRON_OK) {
        store_rollback(db->st);
        /* memory ran ahead of the store: reload the catalog on next use */
        segments_free(db);
        return rc;
    }
    if (db->touched) {
        roaring_bitmap_clear(db->touched);
        db->touched_sources = 0;
    }
    return rc;
}

int segments_sync(patron_db *db, int64_t now, patron_error *err)
{
    return sync_all(db, now, 0, err);
}

int segments_recompute(patron_db *db, int64_t now, patron_error *err)
{
    return sync_all(db, now, 1, err);
}

int segment_members_at(patron_db *db, const char *name, int64_t now, roaring_bitmap_t **out,
                       patron_error *err)
{
    int rc;
    *out = NULL;
    if ((rc = segments_load(db, err)))
        return rc;
    segment *g = segment_find(db, name);
    for (int i = 0; !g && i < db->n_builtin; i++)
        if (strcmp(db->builtin_name[i], name) == 0) {
            *out = roaring_bitmap_copy(db->builtin_members[i]);
            return *out ? PATRON_OK : err_set(err, PATRON_ENOMEM, "out of memory");
        }
    if (!g)
        return err_set(err, PATRON_ENOTFOUND, "no segment named '%s'", name);
    if (g->kind == SEG_RULE && now < g->as_of) {
        roaring_bitmap_t *m = roaring_bitmap_create();
        if (!m)
            return err_set(err, PATRON_ENOMEM, "out of memory");
        if ((rc = evaluate(db, name, g->rule, now, m, err)) != PATRON_OK) {
            roaring_bitmap_free(m);
            return rc;
        }
        *out = m;
        return PATRON_OK;
    }
    if (g->kind == SEG_RULE && (now > g->as_of || (db->touched && db->touched_sources))) {
        if ((rc = segments_sync(db, now, err)) != PATRON_OK)
            return rc;
        g = segment_find(db, name);
    }
    *out = roaring_bitmap_copy(g->members);
    return *out ? PATRON_OK : err_set(err, PATRON_ENOMEM, "out of memory");
}

typedef struct chctx {
    segment_change_fn fn;
    void *ctx;
    int64_t since;
} chctx;

static int since_change(void *ctx, int64_t ts, uint32_t m, int enter)
{
    chctx *c = ctx;
    if (ts < c->since)
        return 0;
    return c->fn(c->ctx, ts, m, enter) != 0 ? -1 : 0;
}

static int one_change(void *ctx, const unsigned char *b, size_t len)
{
    return sch_each(b, len, since_change, ctx);
}

int segment_changes(patron_db *db, const char *name, int64_t since, segment_change_fn fn,
                    void *ctx, patron_error *err)
{
    int rc;
    if ((rc = segments_load(db, err)))
        return rc;
    if (!segment_find(db, name))
        return err_set(err, PATRON_ENOTFOUND, "no segment named '%s'", name);
    chctx c = {fn, ctx, since};
    rc = store_segment_changes_each(db->st, name, since, one_change, &c, err);
    if (rc == -1)
        rc = err_set(err, PATRON_EIO, "writing segment changes failed");
    return rc;
}

int patron_segments_sync(patron_db *db, int64_t now, patron_error *err)
{
    return segments_sync(db, now, err);
}
