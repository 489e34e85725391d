/*
 * promo.c -- promotion rule conditions (promo.h): compiling a program's promotion rules
 * against the member view, refusing those that would read the ledger, and evaluating
 * one rule for one member just before an order.
 *
 * Evaluation uses the compiled evaluator on a single member at its own now; it is called
 * once per order and promotion whose other conditions (window, members, tiers,
 * min_amount) already hold, so orders outside every rule promotion cost nothing.
 */
#include "loyalty/promo.h"

#include "base/err.h"
#include "base/mem.h"
#include "core/db.h"
#include "members/view.h"
#include "rules/eval.h"
#include "rules/rule.h"
#include "segments/segments.h"

#include <roaring/roaring.h>
#include <stdio.h>
#include <string.h>

struct promo_rules {
    const program *prog;  /* the program the rules were compiled for (borrowed) */
    uint64_t prog_hash;
    uint64_t view_gen;
    const struct mview *view;
    rule **r;             /* one per promotion; NULL without a rule */
    size_t n;
    roaring_bitmap_t *out;
};

/* The first node that reads the ledger (a loyalty field or stream), or NULL. */
static const rnode *reads_ledger(const rnode *n)
{
    if (!n)
        return NULL;
    if (n->kind == N_FIELD && n->str &&
        (strcmp(n->str, "tier") == 0 || strcmp(n->str, "points_balance") == 0 ||
         strcmp(n->str, "points_earned_365d") == 0))
        return n;
    if (n->kind == N_AGG && (n->stream_id == ST_POINTS || n->stream_id == ST_REDEMPTIONS))
        return n;
    const rnode *hit = NULL;
    for (size_t i = 0; i < n->n_items && !hit; i++)
        hit = reads_ledger(n->items[i]);
    if (!hit)
        hit = reads_ledger(n->a);
    if (!hit)
        hit = reads_ledger(n->b);
    if (!hit)
        hit = reads_ledger(n->c);
    return hit;
}

/* Compiles promotion k's rule into *out; the error carries the rule's line:column. */
static int compile_one(patron_db *db, const program_promo *pr, rule **out, patron_error *err)
{
    rule_env env;
    segments_env(db, &env);
    int rc = rule_compile(pr->rule, &env, out, err);
    if (rc)
        return rc;
    const rnode *bad = reads_ledger((*out)->root);
    if (bad) {
        const rule *owner = *out;
        /* a node of an inlined in_segment rule points into that rule's text */
        for (size_t i = 0; i < owner->n_subs; i++)
            if (bad->so < strlen(owner->subs[i]->src) && reads_ledger(owner->subs[i]->root) == bad)
                owner = owner->subs[i];
        char what[64];
        rule_node_text(owner, bad, what, sizeof what);
        rule_error_at(owner->src, bad->so, err,
                      "a promotion rule cannot read '%s': it is evaluated while the ledger is "
                      "being written (for the tier before the order use the promotion's 'tiers')",
                      what);
        rule_free(*out);
        *out = NULL;
        return PATRON_EINPUT;
    }
    return PATRON_OK;
}

static int prepare(patron_db *db, patron_error *err)
{
    int rc = db_view_ensure(db, err);
    if (rc == PATRON_OK)
        rc = segments_load(db, err);
    return rc;
}

int promo_rules_check(patron_db *db, const program *p, const char *name, patron_error *err)
{
    if (!p->n_rule_promos)
        return PATRON_OK;
    int rc = prepare(db, err);
    for (size_t k = 0; k < p->n_promos && rc == PATRON_OK; k++) {
        if (!p->promos[k].rule)
            continue;
        rule *r = NULL;
        patron_error rerr = {0};
        rc = compile_one(db, &p->promos[k], &r, &rerr);
        rule_free(r);
        if (rc == PATRON_EINPUT)
            err_set(err, rc, "%s: key 'promotions[%zu].rule': %s", name, k, rerr.message);
        else if (rc)
            err_set(err, rc, "%s", rerr.message);
    }
    return rc;
}

static void release(promo_rules *c)
{
    for (size_t k = 0; k < c->n; k++)
        rule_free(c->r[k]);
    mem_free(c->r);
    c->r = NULL;
    c->n = 0;
    c->prog = NULL;
}

void promo_rules_free(promo_rules *c)
{
    if (!c)
        return;
    release(c);
    if (c->out)
        roaring_bitmap_free(c->out);
    mem_free(c);
}

static int compile_all(promo_rules *c, patron_db *db, const program *p, patron_error *err)
{
    release(c);
    if (!(c->r = mem_calloc(p->n_promos + 1, sizeof *c->r)))
        return err_set(err, PATRON_ENOMEM, "out of memory");
    c->n = p->n_promos;
    for (size_t k = 0; k < p->n_promos; k++) {
        if (!p->promos[k].rule)
            continue;
        patron_error rerr = {0};
        int rc = compile_one(db, &p->promos[k], &c->r[k], &rerr);
        if (rc) {
            release(c);
            return err_set(err, rc, "promotion '%s': rule: %s", p->promos[k].id, rerr.message);
        }
    }
    c->prog = p;
    c->prog_hash = p->hash;
    c->view_gen = db->view_gen;
    c->view = db->view;
    return PATRON_OK;
}

int promo_rule_holds(promo_rules **cache, patron_db *db, const program *p, size_t k,
                     uint32_t member, int64_t ts, int *holds, patron_error *err)
{
    *holds = 0;
    if (k >= p->n_promos || !p->promos[k].rule || ts == INT64_MIN)
        return PATRON_OK;
    promo_rules *c = *cache;
    if (!c) {
        if (!(c = mem_calloc(1, sizeof *c)) || !(c->out = roaring_bitmap_create())) {
            mem_free(c);
            return err_set(err, PATRON_ENOMEM, "out of memory");
        }
        *cache = c;
    }
    int rc = prepare(db, err);
    if (rc)
        return rc;
    if (c->prog != p || c->prog_hash != p->hash || c->view_gen != db->view_gen || c->view != db->view)
        if ((rc = compile_all(c, db, p, err)))
            return rc;
    if (member >= db->view->n)
        return PATRON_OK; /* not in the view: no history, no profile */
    roaring_bitmap_clear(c->out);
    rc = rule_eval_members_at(c->r[k], db, ts - 1, &member, NULL, 1, c->out, NULL, err);
    if (rc == PATRON_OK)
        *holds = roaring_bitmap_contains(c->out, member);
    return rc;
}
