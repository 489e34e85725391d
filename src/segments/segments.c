/*
 * segments.c -- the segment catalog: create, update, drop, static lists, refresh with
 * enter/exit history.  See segments.h.
 */
#include "segments/segments.h"

#include "base/err.h"
#include "base/mem.h"
#include "ingest/input.h"
#include "rules/eval.h"

#include <stdio.h>
#include <string.h>

/* ---- catalog --------------------------------------------------------------------- */

static void seg_release(segment *g)
{
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
    s->members = roaring_bitmap_portable_deserialize_safe(g->members, g->members_n);
    if (!s->name || (g->rule && !s->rule) || !s->members) {
        int damaged = !s->members && s->name;
        seg_release(s);
        return damaged ? 1 : -1;
    }
    c->n++;
    return 0;
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
    if (!g)
        return 0;
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
    store_segment sg = {g->name, g->kind, g->rule, g->created_at, g->as_of, blob, n};
    int rc = store_segment_put(db->st, &sg, err);
    mem_free(blob);
    return rc;
}

static int put_change(patron_db *db, const char *name, int64_t ts, const roaring_bitmap_t *enters,
                      const roaring_bitmap_t *exits, patron_error *err)
{
    if (roaring_bitmap_is_empty(enters) && roaring_bitmap_is_empty(exits))
        return PATRON_OK;
    char *eb = NULL, *xb = NULL;
    size_t en = 0, xn = 0;
    int rc = PATRON_OK;
    if (serialize(enters, &eb, &en) != PATRON_OK || serialize(exits, &xb, &xn) != PATRON_OK)
        rc = err_set(err, PATRON_ENOMEM, "out of memory");
    else
        rc = store_segment_change_put(db->st, name, ts, eb, en, xb, xn, err);
    mem_free(eb);
    mem_free(xb);
    return rc;
}

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

static int add_segment(patron_db *db, const char *name, int kind, const char *text, int64_t now,
                       roaring_bitmap_t *members, patron_error *err)
{
    segcat *c = db->segs;
    if (MEM_GROW(c->s, c->cap, c->n + 1)) {
        roaring_bitmap_free(members);
        return err_set(err, PATRON_ENOMEM, "out of memory");
    }
    segment g = {mem_strdup(name), kind, text ? mem_strdup(text) : NULL, now, now, members};
    if (!g.name || (text && !g.rule)) {
        seg_release(&g);
        return err_set(err, PATRON_ENOMEM, "out of memory");
    }
    roaring_bitmap_t *none = roaring_bitmap_create();
    int rc = none ? store_begin(db->st, err) : err_set(err, PATRON_ENOMEM, "out of memory");
    if (rc == PATRON_OK && (rc = put_segment(db, &g, err)) == PATRON_OK &&
        (rc = put_change(db, name, now, members, none, err)) == PATRON_OK)
        rc = store_commit(db->st, err);
    if (rc != PATRON_OK) {
        store_rollback(db->st);
        seg_release(&g);
    } else {
        c->s[c->n++] = g;
    }
    if (none)
        roaring_bitmap_free(none);
    return rc;
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

/* Swaps in a new member set for g at now, storing the difference. */
static int replace_members(patron_db *db, segment *g, roaring_bitmap_t *now_members, int64_t now,
                           const char *new_rule, patron_error *err)
{
    roaring_bitmap_t *enters = roaring_bitmap_andnot(now_members, g->members),
                     *exits = roaring_bitmap_andnot(g->members, now_members);
    char *rule_copy = new_rule ? mem_strdup(new_rule) : NULL;
    int rc = PATRON_OK;
    if (!enters || !exits || (new_rule && !rule_copy))
        rc = err_set(err, PATRON_ENOMEM, "out of memory");
    segment ng = *g;
    ng.members = now_members;
    ng.as_of = now;
    if (rule_copy)
        ng.rule = rule_copy;
    if (rc == PATRON_OK && (rc = store_begin(db->st, err)) == PATRON_OK) {
        if ((rc = put_segment(db, &ng, err)) == PATRON_OK &&
            (rc = put_change(db, g->name, now, enters, exits, err)) == PATRON_OK)
            rc = store_commit(db->st, err);
        if (rc != PATRON_OK)
            store_rollback(db->st);
    }
    if (rc == PATRON_OK) {
        roaring_bitmap_free(g->members);
        if (rule_copy)
            mem_free(g->rule);
        *g = ng;
    } else {
        mem_free(rule_copy);
        roaring_bitmap_free(now_members);
    }
    if (enters)
        roaring_bitmap_free(enters);
    if (exits)
        roaring_bitmap_free(exits);
    return rc;
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

int segments_refresh(patron_db *db, int64_t now, patron_error *err)
{
    int rc;
    if ((rc = segments_load(db, err)))
        return rc;
    segcat *c = db->segs;
    for (size_t i = 0; i < c->n; i++) {
        segment *g = &c->s[i];
        if (g->kind != SEG_RULE || g->as_of > now)
            continue;
        roaring_bitmap_t *m = roaring_bitmap_create();
        if (!m)
            return err_set(err, PATRON_ENOMEM, "out of memory");
        if ((rc = evaluate(db, g->name, g->rule, now, m, err)) != PATRON_OK) {
            roaring_bitmap_free(m);
            return err_prefix(err, "segment '%s': ", g->name);
        }
        if ((rc = replace_members(db, g, m, now, NULL, err)) != PATRON_OK)
            return rc;
    }
    return PATRON_OK;
}

int segment_members_at(patron_db *db, const char *name, int64_t now, roaring_bitmap_t **out,
                       patron_error *err)
{
    int rc;
    *out = NULL;
    if ((rc = segments_load(db, err)))
        return rc;
    segment *g = segment_find(db, name);
    if (!g)
        return err_set(err, PATRON_ENOTFOUND, "no segment named '%s'", name);
    if (g->kind == SEG_RULE && now > g->as_of) {
        roaring_bitmap_t *m = roaring_bitmap_create();
        if (!m)
            return err_set(err, PATRON_ENOMEM, "out of memory");
        if ((rc = evaluate(db, name, g->rule, now, m, err)) != PATRON_OK) {
            roaring_bitmap_free(m);
            return rc;
        }
        if ((rc = replace_members(db, g, m, now, NULL, err)) != PATRON_OK)
            return rc; /* m was freed */
    } else if (g->kind == SEG_RULE && now < g->as_of) {
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
    *out = roaring_bitmap_copy(g->members);
    return *out ? PATRON_OK : err_set(err, PATRON_ENOMEM, "out of memory");
}

typedef struct chctx {
    segment_change_fn fn;
    void *ctx;
} chctx;

static bool emit_enter(uint32_t v, void *p)
{
    void **a = p;
    chctx *c = a[0];
    const int64_t *ts = a[1];
    return c->fn(c->ctx, *ts, v, 1) == 0;
}

static bool emit_exit(uint32_t v, void *p)
{
    void **a = p;
    chctx *c = a[0];
    const int64_t *ts = a[1];
    return c->fn(c->ctx, *ts, v, 0) == 0;
}

static int one_change(void *ctx, int64_t ts, const void *enters, size_t en, const void *exits,
                      size_t xn)
{
    roaring_bitmap_t *e = roaring_bitmap_portable_deserialize_safe(enters, en),
                     *x = roaring_bitmap_portable_deserialize_safe(exits, xn);
    int rc = 0;
    if (!e || !x) {
        rc = 1;
    } else {
        void *a[2] = {ctx, &ts};
        if (!roaring_iterate(e, emit_enter, a) || !roaring_iterate(x, emit_exit, a))
            rc = -1;
    }
    if (e)
        roaring_bitmap_free(e);
    if (x)
        roaring_bitmap_free(x);
    return rc;
}

int segment_changes(patron_db *db, const char *name, int64_t since, segment_change_fn fn,
                    void *ctx, patron_error *err)
{
    int rc;
    if ((rc = segments_load(db, err)))
        return rc;
    if (!segment_find(db, name))
        return err_set(err, PATRON_ENOTFOUND, "no segment named '%s'", name);
    chctx c = {fn, ctx};
    rc = store_segment_changes_each(db->st, name, since, one_change, &c, err);
    if (rc == -1)
        rc = err_set(err, PATRON_EIO, "writing segment changes failed");
    return rc;
}
