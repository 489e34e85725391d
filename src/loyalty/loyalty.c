/*
 * loyalty.c -- the ledger seen from the rest of the engine (loyalty.h): the import hook
 * that turns a committed-to-be batch into postings, and the per-member fields and
 * streams for the rule engine.
 *
 * The hook orders the batch's work so that tiers and promotions see each member as they
 * were just before each order, then runs it in one savepoint of the importer's
 * transaction.  An events import's work is in time order (ties keep file order): its
 * redemptions share reward stock across members.  A CSV import's is member by member,
 * each member's in time order: its orders and returns touch their own member's state
 * only (points, lots, tier, qualification), so every member ends as in time order, and
 * the ledger's working set is one member at a time (at M its arithmetic went from
 * 7-11 s to 2.5-3.2 s; decision 0005).  Line items of CSV imports carry dictionary
 * codes: the hook builds code -> string tables from the stored dictionaries and the
 * batch's new entries, so multipliers and promotion categories match by name.
 */
#include "loyalty/loyalty.h"

#include "base/err.h"
#include "base/mem.h"
#include "base/rsort.h"
#include "base/trace.h"
#include "base/num.h"
#include "core/db.h"
#include "loyalty/ledger.h"
#include "loyalty/program.h"
#include "members/view.h"
#include "rules/eval.h"

#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* A work item: 16 bytes (millions at M).  An import has CSV orders and returns or
 * events, never both (loyalty_job.events); idx is also the item's place in the file. */
typedef struct work {
    int64_t ts;
    uint32_t idx;    /* order index or event index */
    uint32_t member; /* CSV orders and returns */
} work;

/* The order of a CSV import's work: member by member, each member's in time order, ties
 * in file order (the fallback of member_sort). */
static int work_cmp_member(const void *a, const void *b)
{
    const work *x = a, *y = b;
    if (x->member != y->member)
        return x->member < y->member ? -1 : 1;
    if (x->ts != y->ts)
        return x->ts < y->ts ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Sorts the n work items stably by keys (rsort.h).  -1 when out of memory. */
static int work_rsort(work *w, size_t n, const rsort_key *keys, int nkeys)
{
    work *tmp = mem_alloc_array(n, sizeof *tmp);
    if (!tmp)
        return -1;
    work *r = rsort(w, tmp, n, sizeof *w, keys, nkeys);
    if (r != w)
        memcpy(w, r, n * sizeof *w);
    mem_free(tmp);
    return 0;
}

/* Sorts a CSV import's work like work_cmp_member: a stable radix sort of records made in
 * file order, unless they are in that order already (a file written member by member,
 * members numbered in the order it names them). */
static void member_sort(work *w, size_t n)
{
    size_t i = 1;
    while (i < n && (w[i].member > w[i - 1].member ||
                     (w[i].member == w[i - 1].member && w[i].ts >= w[i - 1].ts)))
        i++;
    if (i >= n)
        return;
    static const rsort_key keys[2] = {{offsetof(work, member), 4, 0}, {offsetof(work, ts), 8, 1}};
    if (work_rsort(w, n, keys, 2) != 0)
        qsort(w, n, sizeof *w, work_cmp_member);
}

static int work_cmp(const void *a, const void *b)
{
    const work *x = a, *y = b;
    if (x->ts != y->ts)
        return x->ts < y->ts ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Sorts the batch's work like work_cmp, by a stable radix sort on ts (CSV rows and events
 * never mix in one import, and each kind is in file order already).  -1 when out of
 * memory. */
static int work_sort(work *w, size_t n)
{
    size_t i = 1;
    while (i < n && w[i].ts >= w[i - 1].ts)
        i++;
    if (i >= n)
        return 0;
    static const rsort_key key = {offsetof(work, ts), 8, 1};
    return work_rsort(w, n, &key, 1);
}

typedef struct strtab {
    const char **s;
    uint32_t *n;
    uint64_t *h; /* XXH3_64bits of each string (the ledger hashes items' strings) */
    size_t count;
} strtab;

static int tab_fill(strtab *t, const hmap *m)
{
    for (size_t i = 0; m && i < m->cap; i++) {
        const hmap_slot *sl = &m->slots[i];
        if (!sl->tag || sl->value >= t->count)
            continue;
        size_t n;
        t->s[sl->value] = hmap_slot_key(m, sl, &n);
        t->n[sl->value] = (uint32_t)n;
    }
    return 0;
}

static int tab_build(strtab *t, const hmap *stored, const hmap *fresh)
{
    t->count = stored->count + (fresh ? fresh->count : 0) + 1;
    t->s = mem_calloc(t->count, sizeof *t->s);
    t->n = mem_calloc(t->count, sizeof *t->n);
    t->h = mem_calloc(t->count, sizeof *t->h);
    if (!t->s || !t->n || !t->h)
        return -1;
    tab_fill(t, stored);
    tab_fill(t, fresh);
    for (size_t i = 0; i < t->count; i++)
        if (t->s[i])
            t->h[i] = XXH3_64bits(t->s[i], t->n[i]);
    return 0;
}

static void tab_release(strtab *t)
{
    mem_free(t->s);
    mem_free(t->n);
    mem_free(t->h);
}

/* Money from a JSON value as the importer reads it (number or string). */
static int json_money(json_t *v, int64_t *out)
{
    if (json_is_integer(v))
        return num_mul_i64(json_integer_value(v), PATRON_MONEY_SCALE, out);
    if (json_is_real(v)) {
        char buf[64];
        snprintf(buf, sizeof buf, "%.6f", json_real_value(v));
        return num_parse_money(buf, strlen(buf), out);
    }
    if (json_is_string(v))
        return num_parse_money(json_string_value(v), json_string_length(v), out);
    return -1;
}

static const char *jstr(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* One event of the batch. */
static void fx_of(const program *p, loyalty_fx *fx)
{
    memset(fx, 0, sizeof *fx);
    snprintf(fx->base, sizeof fx->base, "%s", p && p->currency ? p->currency : "USD");
    for (size_t i = 0; p && i < p->n_rates && i < PROGRAM_MAX_RATES; i++) {
        snprintf(fx->code[i], sizeof fx->code[i], "%s", p->rates[i].key);
        fx->rate[i] = p->rates[i].mult;
        fx->n++;
    }
}

static int post_event(ledger *l, const loyalty_event *e, ledger_item **items, size_t *cap,
                      patron_error *err)
{
    const char *t = e->type;
    int is_order = strcmp(t, "order") == 0, is_return = strcmp(t, "return") == 0;
    int is_void = strcmp(t, "void") == 0, is_points = strcmp(t, "points") == 0;
    int is_red = strcmp(t, "redemption") == 0, is_survey = strcmp(t, "survey") == 0;
    int is_ref = strcmp(t, "referral") == 0;
    if (!(is_order || is_return || is_void || is_points || is_red || is_survey || is_ref))
        return PATRON_OK;
    if (e->member < 0 || e->member >= UINT32_MAX)
        return PATRON_OK;
    uint32_t m = (uint32_t)e->member;
    if (is_void)
        return ledger_batch_void(l, e->id, e->ts, err);
    if (is_survey || is_ref)
        return ledger_batch_bonus(l, e->id, m, e->ts, is_survey ? PROGRAM_BONUS_SURVEY : PROGRAM_BONUS_REFERRAL,
                                  err);
    json_error_t je;
    json_t *o = json_loads(e->body, 0, &je);
    if (!o)
        return err_set(err, PATRON_EINTERNAL, "event '%s': stored body does not parse", e->id);
    int rc = PATRON_OK;
    if (is_points) {
        json_t *p = json_object_get(o, "points");
        const char *reason = jstr(o, "reason");
        if (!json_is_integer(p) || json_integer_value(p) == 0)
            rc = err_set(err, PATRON_EINPUT, "points event '%s': 'points' must be a non-zero whole number", e->id);
        else
            rc = ledger_batch_points(l, e->id, m, e->ts, json_integer_value(p), reason ? reason : "", err);
    } else if (is_red) {
        json_t *p = json_object_get(o, "points");
        const char *reward = jstr(o, "reward_id");
        if (!json_is_integer(p) || json_integer_value(p) <= 0 || !reward)
            rc = err_set(err, PATRON_EINPUT,
                         "redemption event '%s': needs 'reward_id' and a positive whole 'points'", e->id);
        else
            rc = ledger_batch_redemption(l, e->id, m, e->ts, reward, json_integer_value(p), err);
    } else {
        /* money in another currency is converted as the importer did (SPEC 1.3) */
        loyalty_fx fx;
        fx_of(ledger_program(l, NULL), &fx);
        const char *cu = jstr(o, "currency");
        int64_t fxr = cu ? loyalty_fx_rate(&fx, cu, strlen(cu)) : PROGRAM_SCALE;
        if (fxr == 0)
            rc = err_set(err, PATRON_EINPUT, "%s '%s': no exchange rate for '%s'", t, e->id, cu);
        json_t *arr = json_object_get(o, "items"), *it;
        size_t k, n = 0;
        int64_t sum = 0;
        json_array_foreach(arr, k, it) {
            if (rc != PATRON_OK)
                break;
            json_t *q = json_object_get(it, "qty");
            int64_t price, amt;
            if (!json_is_integer(q) || json_money(json_object_get(it, "price"), &price) != 0 ||
                loyalty_fx_convert(price, fxr, &price) != 0 ||
                num_mul_i64(json_integer_value(q), price, &amt) != 0 || num_add_i64(sum, amt, &sum) != 0) {
                rc = err_set(err, PATRON_EINPUT, "%s '%s': item %zu: bad qty or price", t, e->id, k);
                break;
            }
            if (MEM_GROW(*items, *cap, n + 1) != 0) {
                rc = err_set(err, PATRON_ENOMEM, "out of memory");
                break;
            }
            const char *sku = jstr(it, "sku"), *cat = jstr(it, "category");
            (*items)[n++] = (ledger_item){sku ? sku : "", cat ? cat : "", sku ? strlen(sku) : 0,
                                          cat ? strlen(cat) : 0, amt};
        }
        int64_t amount = sum;
        json_t *am = json_object_get(o, "amount");
        if (rc == PATRON_OK && am &&
            (json_money(am, &amount) != 0 || loyalty_fx_convert(amount, fxr, &amount) != 0))
            rc = err_set(err, PATRON_EINPUT, "%s '%s': cannot read the amount", t, e->id);
        if (rc == PATRON_OK && is_order) {
            ledger_order lo = {e->id, strlen(e->id), m, e->ts, amount, n ? *items : NULL, n};
            rc = ledger_batch_earn(l, &lo, err);
        } else if (rc == PATRON_OK) {
            if (amount < 0 && num_mul_i64(amount, -1, &amount) != 0)
                rc = err_set(err, PATRON_EINPUT, "return '%s': amount overflows", e->id);
            else
                rc = ledger_batch_return(l, e->id, m, e->ts, amount, jstr(o, "original_order_id"), err);
        }
    }
    json_decref(o);
    return rc;
}

/* One import batch on its way to the ledger (loyalty_import_start .. _finish). */
struct loyalty_job {
    patron_db *db;
    ledger *l;
    const program *prog; /* in force for the whole batch */
    loyalty_import in; /* the importer's arrays, borrowed until _finish */
    work *w;           /* the batch's work, in its order (see the top) */
    size_t nw, done;   /* work items made so far */
    int events;             /* the work is events (else CSV orders and returns) */
    uint32_t *first, *next; /* line items per order: first[o], then next[] (a list in file
                               order) or, when next is NULL, the run from first[o] */
    const char **ev_new;
    uint32_t *ev_len;
    ledger_item *items;
    ledger_item_known *known;
    size_t cap_items, cap_known;
    strtab sku, cat;
    /* the multiplier of each SKU code with the category code it was last seen with */
    uint32_t *mult_cat;
    int64_t *mult;
    int detach;   /* the batch is begun detached (CSV, no rules: nothing needs the store) */
    int begun;    /* the ledger batch was begun */
    int rc;       /* of the detached part */
    patron_error err;
    int threaded; /* the detached part runs on its own thread */
    int shared;   /* windowed, its chunks stored by the importer's thread as they come */
    pthread_t th;
    /* What the ledger's thread will write, for loyalty_import_help: published once
     * its room is reserved (pf_state 1; 2: never, the job failed first). */
    char *pf[8];
    size_t pf_bytes[8], n_pf;
    size_t nw_at; /* j->done as the thread goes (atomic) */
    int pf_state;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

size_t loyalty_window_min = (size_t)1 << 14;
size_t loyalty_poll_orders = (size_t)1 << 16;

/* Work list, dictionary tables and the detached ledger batch: memory only. */
static int job_prepare(loyalty_job *j)
{
    patron_db *db = j->db;
    const loyalty_import *in = &j->in;
    patron_error *err = &j->err;
    if (in->n_orders && in->n_events)
        return err_set(err, PATRON_EINTERNAL, "an import batch holds both orders and events");
    j->events = in->n_events > 0;
    j->w = mem_alloc_array(in->n_orders + in->n_events + 1, sizeof *j->w);
    if (!j->w)
        return err_set(err, PATRON_ENOMEM, "out of memory");
    work *w = j->w;
    size_t nw = 0;
    for (size_t i = 0; i < in->n_orders; i++) {
        const loyalty_order *o = &in->orders[i];
        if (o->id && o->member >= 0)
            w[nw++] = (work){o->ts, (uint32_t)i, (uint32_t)o->member};
    }
    int64_t max_member = -1;
    for (size_t i = 0; i < in->n_events; i++) {
        w[nw++] = (work){in->events[i].ts, (uint32_t)i, 0};
        if (in->events[i].member > max_member)
            max_member = in->events[i].member;
    }
    j->nw = nw;
    if (nw > 1 && !in->n_events)
        member_sort(w, nw);
    else if (nw > 1 && work_sort(w, nw) != 0)
        qsort(w, nw, sizeof *w, work_cmp); /* (no memory for the radix sort) */
    const char *const *new_ids = in->new_member_ids;
    const uint32_t *new_lens = in->new_member_lens;
    size_t n_new = in->n_new_members;
    if (in->n_events && max_member >= (int64_t)db->n_members) {
        /* Events name their members: index -> id for members this import creates. */
        n_new = (size_t)(max_member - db->n_members + 1);
        j->ev_new = mem_calloc(n_new, sizeof *j->ev_new);
        j->ev_len = mem_calloc(n_new, sizeof *j->ev_len);
        if (!j->ev_new || !j->ev_len)
            return err_set(err, PATRON_ENOMEM, "out of memory");
        for (size_t i = 0; i < in->n_events; i++) {
            int64_t k = in->events[i].member - (int64_t)db->n_members;
            if (k >= 0) {
                j->ev_new[k] = in->events[i].member_id;
                j->ev_len[k] = (uint32_t)strlen(in->events[i].member_id);
            }
        }
        for (size_t k = 0; k < n_new; k++)
            if (!j->ev_new[k])
                j->ev_new[k] = "?", j->ev_len[k] = 1;
        new_ids = j->ev_new;
        new_lens = j->ev_len;
    }
    if (in->n_items) {
        j->first = mem_alloc_array(in->n_orders + 1, sizeof *j->first);
        if (!j->first ||
            tab_build(&j->sku, &db->dict[DB_DICT_SKU], in->new_dict[DB_DICT_SKU]) ||
            tab_build(&j->cat, &db->dict[DB_DICT_CATEGORY], in->new_dict[DB_DICT_CATEGORY]) ||
            !(j->mult_cat = mem_alloc_array(j->sku.count, sizeof *j->mult_cat)) ||
            !(j->mult = mem_alloc_array(j->sku.count, sizeof *j->mult)))
            return err_set(err, PATRON_ENOMEM, "out of memory");
        for (size_t i = 0; i < j->sku.count; i++)
            j->mult_cat[i] = UINT32_MAX;
        /* An order's items: one run from first[o] (the usual file), else a list. */
        for (size_t i = 0; i < in->n_orders; i++)
            j->first[i] = UINT32_MAX;
        int runs = 1;
        for (size_t k = 0; k < in->n_items && runs; k++) {
            uint32_t oi = in->item_order[k];
            if (k && in->item_order[k - 1] == oi)
                continue;
            runs = j->first[oi] == UINT32_MAX;
            j->first[oi] = (uint32_t)k;
        }
        if (!runs) {
            if (!(j->next = mem_alloc_array(in->n_items + 1, sizeof *j->next)))
                return err_set(err, PATRON_ENOMEM, "out of memory");
            for (size_t i = 0; i < in->n_orders; i++)
                j->first[i] = UINT32_MAX;
            for (size_t k = in->n_items; k-- > 0;) { /* lists in file order */
                uint32_t oi = in->item_order[k];
                j->next[k] = j->first[oi];
                j->first[oi] = (uint32_t)k;
            }
        }
    }
    int rc = j->detach ? ledger_batch_begin_detached(j->l, new_ids, new_lens, n_new, err)
                       : ledger_batch_begin(j->l, new_ids, new_lens, n_new, err);
    if (rc != PATRON_OK)
        return rc;
    j->begun = 1;
    /* A big CSV batch may be windowed, where the ledger allows it (ledger_batch_window):
     * its work is member by member, each member's in time order; none of it may come
     * before a member's journal. */
    if (j->detach && !j->events && nw >= loyalty_window_min) {
        int ok = 1;
        for (size_t k = 0; k < nw && ok; k++)
            if (k == 0 || w[k].member != w[k - 1].member)
                ok = ledger_member_last_ts(j->l, w[k].member) <= w[k].ts;
        if (ok && ledger_batch_window(j->l) && j->threaded)
            j->shared = ledger_batch_share(j->l);
    }
    rc = ledger_batch_reserve(j->l, nw, err);
    if (rc == PATRON_OK && j->threaded)
        j->n_pf = ledger_batch_regions(j->l, nw, j->pf, j->pf_bytes, 8);
    return rc;
}

static void pf_publish(loyalty_job *j, int state)
{
    pthread_mutex_lock(&j->mu);
    if (!j->pf_state)
        j->pf_state = state;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

/* The item after `it` of order oi, or UINT32_MAX. */
static uint32_t item_next(const loyalty_job *j, uint32_t it, uint32_t oi)
{
    if (j->next)
        return j->next[it];
    return it + 1 < j->in.n_items && j->in.item_order[it + 1] == oi ? it + 1 : UINT32_MAX;
}

/* Makes work item k.  LEDGER_DEFER: it needs the store (detached batch; nothing done). */
static int job_step(loyalty_job *j, size_t k)
{
    const loyalty_import *in = &j->in;
    patron_error *err = &j->err;
    if (j->events && ledger_detached(j->l))
        return LEDGER_DEFER;
    if (j->events)
        return post_event(j->l, &in->events[j->w[k].idx], &j->items, &j->cap_items, err);
    const loyalty_order *o = &in->orders[j->w[k].idx];
    if (o->kind == 1) {
        char id[512];
        snprintf(id, sizeof id, "%.*s", (int)o->idn, o->id);
        return ledger_batch_return(j->l, id, (uint32_t)o->member, o->ts,
                                   o->amount < 0 ? -o->amount : o->amount, NULL, err);
    }
    size_t n = 0;
    int known = 1; /* every item's codes are in the tables */
    uint32_t oi = j->w[k].idx, it = j->first ? j->first[oi] : UINT32_MAX;
    for (; it != UINT32_MAX; it = item_next(j, it, oi)) {
        if (MEM_GROW(j->items, j->cap_items, n + 1) != 0 ||
            MEM_GROW(j->known, j->cap_known, n + 1) != 0)
            return err_set(err, PATRON_ENOMEM, "out of memory");
        const loyalty_item_kind *kd = &in->kinds[in->item_kind[it]];
        uint32_t sc = kd->sku, cc = kd->category;
        int sk = sc < j->sku.count && j->sku.s[sc], ck = cc < j->cat.count && j->cat.s[cc];
        ledger_item *li = &j->items[n];
        li->sku = sk ? j->sku.s[sc] : "";
        li->skun = sk ? j->sku.n[sc] : 0;
        li->category = ck ? j->cat.s[cc] : "";
        li->categoryn = ck ? j->cat.n[cc] : 0;
        li->amount = (int64_t)in->item_qty[it] * in->item_price[it]; /* checked at parse */
        known &= sk & ck;
        if (sk && ck) {
            if (j->mult_cat[sc] != cc) {
                j->mult_cat[sc] = cc;
                j->mult[sc] = program_item_mult(j->prog, li->sku, li->skun, li->category, li->categoryn);
            }
            j->known[n] = (ledger_item_known){j->mult[sc], j->sku.h[sc], j->cat.h[cc]};
        }
        n++;
    }
    ledger_order lo = {o->id, o->idn, (uint32_t)o->member, o->ts, o->amount, n ? j->items : NULL, n};
    return ledger_batch_earn_known(j->l, &lo, n && known ? j->known : NULL, err);
}

/*
 * Work is not in file order (time order; member order, which is file order only for
 * files written member by member), so each order's fields, its line items and its
 * member's ledger state can be cache misses (at M, 480 MB of items): they are fetched
 * ahead in three steps (the order and its item list's head; then its id bytes
 * and items; then, hashed, its key slot and member), since each step's address is
 * itself in memory the step before fetched.
 */
#define JOB_AHEAD 8
static void job_prefetch(loyalty_job *j, size_t k)
{
    const loyalty_import *in = &j->in;
    size_t far = k + 3 * JOB_AHEAD, mid = k + 2 * JOB_AHEAD, near = k + JOB_AHEAD;
    if (j->events)
        return;
    if (far < j->nw) {
        __builtin_prefetch(&in->orders[j->w[far].idx]);
        if (j->first)
            __builtin_prefetch(&j->first[j->w[far].idx]);
    }
    if (mid < j->nw) {
        const loyalty_order *o = &in->orders[j->w[mid].idx];
        if (o->id)
            __builtin_prefetch(o->id);
        uint32_t it = j->first ? j->first[j->w[mid].idx] : UINT32_MAX;
        if (it != UINT32_MAX) {
            __builtin_prefetch(&in->item_kind[it]);
            __builtin_prefetch(&in->item_qty[it]);
            __builtin_prefetch(&in->item_price[it]);
            if (j->next)
                __builtin_prefetch(&j->next[it]);
        }
    }
    if (near < j->nw) {
        const loyalty_order *o = &in->orders[j->w[near].idx];
        if (o->member >= 0 && o->kind == 0 && o->id)
            ledger_batch_prefetch(j->l, (uint32_t)o->member, o->id, o->idn);
    }
}

/* The batch up to the first work item that needs the store (detached), or all of it. */
static void *job_detached(void *arg)
{
    loyalty_job *j = arg;
    double t0 = trace_now();
    j->rc = job_prepare(j);
    trace_step("ledger: work list and room", t0);
    if (j->threaded)
        pf_publish(j, j->rc == PATRON_OK ? 1 : 2);
    while (j->rc == PATRON_OK && j->done < j->nw) {
        if ((j->done & 1023) == 0)
            __atomic_store_n(&j->nw_at, j->done, __ATOMIC_RELAXED);
        job_prefetch(j, j->done);
        int r = job_step(j, j->done);
        if (r == LEDGER_DEFER)
            break;
        j->rc = r;
        if (r == PATRON_OK) {
            j->done++;
            j->rc = ledger_batch_window_step(j->l, &j->err);
        }
    }
    if (j->shared)
        ledger_batch_share_close(j->l);
    trace_step("ledger: batch arithmetic", t0);
    return NULL;
}

static void job_free(loyalty_job *j)
{
    mem_free(j->w);
    mem_free(j->first);
    mem_free(j->next);
    mem_free(j->ev_new);
    mem_free(j->ev_len);
    mem_free(j->items);
    mem_free(j->known);
    mem_free(j->mult_cat);
    mem_free(j->mult);
    tab_release(&j->sku);
    tab_release(&j->cat);
    mem_free(j);
}

int loyalty_import_start(patron_db *db, const loyalty_import *in, int threaded, loyalty_job **job,
                         patron_error *err)
{
    *job = NULL;
    ledger *l;
    int rc = ledger_get(db, &l, err);
    if (rc != PATRON_OK)
        return rc;
    const program *pg = ledger_program(l, NULL);
    if (!pg)
        return PATRON_OK; /* no program: the ledger does not exist yet */
    loyalty_job *j = mem_calloc(1, sizeof *j);
    if (!j)
        return err_set(err, PATRON_ENOMEM, "out of memory");
    j->db = db;
    j->l = l;
    j->prog = pg;
    j->in = *in;
    /* events and promotion rules need the store: attached from the start, one thread */
    j->detach = !in->n_events && !pg->n_rule_promos;
    if (threaded && j->detach) {
        pthread_mutex_init(&j->mu, NULL);
        pthread_cond_init(&j->cv, NULL);
        j->threaded = 1; /* (read by job_prepare) */
        if (pthread_create(&j->th, NULL, job_detached, j) != 0) {
            j->threaded = 0;
            pthread_mutex_destroy(&j->mu);
            pthread_cond_destroy(&j->cv);
        }
    }
    *job = j;
    return PATRON_OK;
}

struct loyalty_prefault {
    char *p[8];
    size_t bytes[8], n;
    int stop; /* atomic */
    pthread_t th;
};

/* About the bytes faulted in between two looks at stop. */
#define PREFAULT_PIECE ((size_t)2 << 20)

/* Region 0 (the key index, written anywhere) first, then the others in the order the
 * ledger's thread writes them, a piece of each in turn. */
static void *prefault_run(void *arg)
{
    loyalty_prefault *pf = arg;
    size_t done[8] = {0};
    for (int more = 1; more;) {
        more = 0;
        for (size_t k = 0; k < pf->n; k++) {
            if (__atomic_load_n(&pf->stop, __ATOMIC_RELAXED))
                return NULL;
            if (done[k] >= pf->bytes[k])
                continue;
            size_t to = pf->bytes[k] - done[k] < PREFAULT_PIECE ? pf->bytes[k] : done[k] + PREFAULT_PIECE;
            mem_prefault(pf->p[k], done[k], to);
            done[k] = to;
            more = 1;
            if (k == 0)
                break; /* the key index before the others */
        }
    }
    return NULL;
}

int loyalty_prefault_start(patron_db *db, size_t n, int64_t first_ts, loyalty_prefault **out,
                           patron_error *err)
{
    *out = NULL;
    ledger *l;
    int rc = ledger_get(db, &l, err);
    if (rc != PATRON_OK || !ledger_program(l, NULL))
        return rc;
    ledger_batch_plan(l, first_ts); /* a windowed batch needs less room */
    if ((rc = ledger_batch_reserve(l, n, err)) != PATRON_OK)
        return rc;
    loyalty_prefault *pf = mem_calloc(1, sizeof *pf);
    if (!pf)
        return PATRON_OK; /* (only a help) */
    pf->n = ledger_batch_regions(l, n, pf->p, pf->bytes, 8);
    if (!pf->n || pthread_create(&pf->th, NULL, prefault_run, pf) != 0) {
        mem_free(pf);
        return PATRON_OK;
    }
    *out = pf;
    return PATRON_OK;
}

void loyalty_prefault_stop(loyalty_prefault *pf)
{
    if (!pf)
        return;
    __atomic_store_n(&pf->stop, 1, __ATOMIC_RELAXED);
    pthread_join(pf->th, NULL);
    mem_free(pf);
}

/* Whether the ledger's thread has reserved its room (pf_state 1), waiting for it to
 * decide when wait is set; 0 when it failed first, or (not waiting) has not decided. */
static int job_published(loyalty_job *j, int wait)
{
    pthread_mutex_lock(&j->mu);
    while (wait && !j->pf_state)
        pthread_cond_wait(&j->cv, &j->mu);
    int ok = j->pf_state == 1;
    pthread_mutex_unlock(&j->mu);
    return ok;
}

/* Pieces of the regions are faulted in, in the order the thread fills them, each
 * PF_STEP writes' worth; a piece the thread has already passed is skipped.  A shared
 * windowed batch's chunks are stored between pieces, and then as they come. */
#define PF_STEP 32768
int loyalty_import_help(loyalty_job *j, int rc, patron_error *err)
{
    if (!j || !j->threaded || rc != PATRON_OK)
        return rc;
    double t0 = trace_now();
    if (!job_published(j, 1))
        return rc;
    if (j->n_pf)
        mem_prefault(j->pf[0], 0, j->pf_bytes[0]); /* written anywhere (ledger_batch_regions) */
    size_t nw = j->nw ? j->nw : 1;
    for (size_t at = 0; j->n_pf && at < nw && rc == PATRON_OK; at += PF_STEP) {
        size_t done = __atomic_load_n(&j->nw_at, __ATOMIC_RELAXED);
        if (j->shared)
            rc = ledger_batch_store_shared(j->l, 0, err);
        if (at + PF_STEP <= done)
            continue; /* the thread is past it */
        for (size_t k = 1; k < j->n_pf; k++) {
            size_t per = j->pf_bytes[k] / nw; /* bytes per write of region k */
            size_t to = at + PF_STEP < nw ? (at + PF_STEP) * per : j->pf_bytes[k];
            mem_prefault(j->pf[k], at * per, to);
        }
    }
    if (j->shared && rc == PATRON_OK)
        rc = ledger_batch_store_shared(j->l, 1, err);
    trace_step("ledger: prefault (importer)", t0);
    return rc;
}

int loyalty_import_poll(loyalty_job *j, int rc, patron_error *err)
{
    if (!j || !j->threaded || rc != PATRON_OK)
        return rc;
    /* (j->shared is set before pf_state is published) */
    return job_published(j, 0) && j->shared ? ledger_batch_store_shared(j->l, 0, err) : rc;
}

int loyalty_import_finish(loyalty_job *j, int rc, patron_error *err)
{
    if (!j)
        return rc;
    double t0 = trace_now();
    if (j->threaded) {
        pthread_join(j->th, NULL);
        pthread_mutex_destroy(&j->mu);
        pthread_cond_destroy(&j->cv);
    } else if (rc == PATRON_OK) {
        job_detached(j);
    }
    t0 = trace_step("ledger: join", t0);
    if (rc == PATRON_OK && j->rc != PATRON_OK) {
        rc = j->rc;
        *err = j->err;
    }
    if (rc == PATRON_OK && ledger_detached(j->l))
        rc = ledger_batch_attach(j->l, err);
    for (; rc == PATRON_OK && j->done < j->nw; j->done++) { /* the rest, attached */
        rc = job_step(j, j->done);
        if (rc != PATRON_OK)
            *err = j->err;
    }
    if (j->begun)
        rc = ledger_batch_end(j->l, rc, err);
    trace_step("ledger: end (journal)", t0);
    job_free(j);
    return rc;
}

int loyalty_on_import(patron_db *db, const loyalty_import *in, patron_error *err)
{
    loyalty_job *j;
    int rc = loyalty_import_start(db, in, 0, &j, err);
    return rc == PATRON_OK ? loyalty_import_finish(j, PATRON_OK, err) : rc;
}

int loyalty_wants_view(patron_db *db, int *wants, patron_error *err)
{
    ledger *l;
    *wants = 0;
    int rc = ledger_get(db, &l, err);
    if (rc == PATRON_OK) {
        const program *p = ledger_program(l, NULL);
        *wants = p && p->n_rule_promos > 0;
    }
    return rc;
}

int loyalty_fx_get(patron_db *db, loyalty_fx *fx, patron_error *err)
{
    ledger *l;
    fx_of(NULL, fx);
    int rc = ledger_get(db, &l, err);
    if (rc == PATRON_OK)
        fx_of(ledger_program(l, NULL), fx);
    return rc;
}

int loyalty_fx_stored(patron_db *db, loyalty_fx *fx, patron_error *err)
{
    if (db->loyalty) /* the ledger's program is the stored one */
        return loyalty_fx_get(db, fx, err);
    program *p = NULL;
    int rc = ledger_stored_program(db, &p, err);
    fx_of(rc == 1 ? p : NULL, fx);
    program_free(p);
    return rc < 0 ? rc : PATRON_OK;
}

int64_t loyalty_fx_rate(const loyalty_fx *fx, const char *s, size_t n)
{
    char u[8];
    if (n == 0)
        return PROGRAM_SCALE;
    if (n >= sizeof u)
        return 0;
    for (size_t i = 0; i < n; i++)
        u[i] = (char)toupper((unsigned char)s[i]);
    u[n] = '\0';
    if (strcmp(u, fx->base) == 0)
        return PROGRAM_SCALE;
    for (size_t i = 0; i < fx->n; i++)
        if (strcmp(u, fx->code[i]) == 0)
            return fx->rate[i];
    return 0;
}

int loyalty_fx_convert(int64_t money, int64_t rate, int64_t *out)
{
    if (rate == PROGRAM_SCALE) {
        *out = money;
        return 0;
    }
    /* to the cent: money units are 1/PATRON_MONEY_SCALE, a cent is CENT of them */
    __extension__ typedef __int128 wide;
    const wide cent = PATRON_MONEY_SCALE / 100, d = (wide)PROGRAM_SCALE * cent;
    wide v = (wide)money * rate, h = d / 2;
    v = v >= 0 ? (v + h) / d : -((-v + h) / d);
    v *= cent;
    if (v > INT64_MAX || v < INT64_MIN)
        return -1;
    *out = (int64_t)v;
    return 0;
}

/* ---- rule engine interface ------------------------------------------------------------ */

int loyalty_refresh(patron_db *db, patron_error *err)
{
    ledger *l;
    return ledger_get(db, &l, err);
}

int64_t loyalty_points_balance(patron_db *db, uint32_t member, int64_t now)
{
    return db->loyalty ? ledger_balance(db->loyalty, member, now) : 0;
}

int64_t loyalty_points_earned_365d(patron_db *db, uint32_t member, int64_t now)
{
    return db->loyalty ? ledger_qualifying(db->loyalty, member, now, LOYALTY_EARNED_WINDOW, 0) : 0;
}

const char *loyalty_tier(patron_db *db, uint32_t member, int64_t now)
{
    if (!db->loyalty)
        return "";
    const program *p = ledger_program(db->loyalty, NULL);
    if (!p || !p->n_tiers)
        return "";
    return p->tiers[ledger_tier(db->loyalty, member, now)].name;
}

/* The `reason` of a points row: the reason given for adjustments and bonuses, else what
 * the write was. */
static const char *reason_name(int kind, const char *ref, size_t refn, size_t *n)
{
    static const char *const w[] = {"",       "order",  "return", "void",   "redemption", "cancel",
                                    "adjust", "expiry", "review", "bonus",  "redemption"};
    if (kind == LEDGER_ADJUST || kind == LEDGER_BONUS) {
        *n = refn;
        return ref;
    }
    const char *s = kind > 0 && kind <= LEDGER_REDEEM_EVENT ? w[kind] : "";
    *n = strlen(s);
    return s;
}

int loyalty_points_stream(patron_db *db, uint32_t member, int64_t now, loyalty_points_row **rows,
                          size_t *n, patron_error *err)
{
    *rows = NULL;
    *n = 0;
    if (!db->loyalty)
        return PATRON_OK;
    ledger_history_row *h;
    size_t hn;
    int rc = ledger_history(db->loyalty, member, now, &h, &hn, err);
    if (rc)
        return rc;
    loyalty_points_row *r = mem_alloc_array(hn + 1, sizeof *r);
    if (!r) {
        mem_free(h);
        return err_set(err, PATRON_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < hn; i++) {
        r[i].ts = h[i].ts;
        r[i].points = h[i].points;
        r[i].reason = reason_name(h[i].kind, h[i].ref, h[i].refn, &r[i].reasonn);
    }
    mem_free(h);
    *rows = r;
    *n = hn;
    return PATRON_OK;
}

int loyalty_redemptions_stream(patron_db *db, uint32_t member, int64_t now,
                               loyalty_redemption_row **rows, size_t *n, patron_error *err)
{
    *rows = NULL;
    *n = 0;
    if (!db->loyalty)
        return PATRON_OK;
    ledger_history_row *h;
    size_t hn, k = 0;
    int rc = ledger_history(db->loyalty, member, now, &h, &hn, err);
    if (rc)
        return rc;
    loyalty_redemption_row *r = mem_alloc_array(hn + 1, sizeof *r);
    if (!r) {
        mem_free(h);
        return err_set(err, PATRON_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < hn; i++)
        if ((h[i].kind == LEDGER_REDEEM || h[i].kind == LEDGER_REDEEM_EVENT) && !h[i].cancelled)
            r[k++] = (loyalty_redemption_row){h[i].ts, -h[i].points, h[i].ref, h[i].refn};
    mem_free(h);
    *rows = r;
    *n = k;
    return PATRON_OK;
}

void loyalty_fields_compute(patron_db *db, int64_t now, loyalty_fields *f)
{
    for (uint32_t m = 0; m < db->n_members; m++) {
        ledger *l = db->loyalty;
        if (f->points_balance)
            f->points_balance[m] = l ? ledger_balance(l, m, now) : 0;
        if (f->points_earned_365d)
            f->points_earned_365d[m] = l ? ledger_qualifying(l, m, now, LOYALTY_EARNED_WINDOW, 0) : 0;
        if (f->tier)
            f->tier[m] = l ? ledger_tier(l, m, now) : 0;
    }
}

/* The loyalty fields as columns computed at the reader's now: a rule evaluated at any
 * instant (a segment looking at a member when a lot expires) reads the ledger's answer
 * for that instant.  Null without a program. */
static ledger *prog_ledger(const vfn *f)
{
    patron_db *db = f->ctx;
    ledger *l = db->loyalty;
    return l && ledger_loaded(l) && ledger_program(l, NULL) ? l : NULL;
}

static double fn_balance(const vfn *f, uint32_t m, int64_t now)
{
    ledger *l = prog_ledger(f);
    return l ? (double)ledger_balance(l, m, now) : NAN;
}

static double fn_earned(const vfn *f, uint32_t m, int64_t now)
{
    ledger *l = prog_ledger(f);
    return l ? (double)ledger_qualifying(l, m, now, LOYALTY_EARNED_WINDOW, 0) : NAN;
}

static uint32_t fn_tier(const vfn *f, uint32_t m, int64_t now)
{
    ledger *l = prog_ledger(f);
    if (!l)
        return 0;
    int t = ledger_tier(l, m, now);
    return t >= 0 && (size_t)t < f->n_codes ? f->codes[t] : 0;
}

static int64_t fn_next(const vfn *f, uint32_t m, int64_t now)
{
    ledger *l = prog_ledger(f);
    return l ? ledger_next_change(l, m, now, LOYALTY_EARNED_WINDOW) : INT64_MAX;
}

int loyalty_attach(patron_db *db, int64_t now, patron_error *err)
{
    (void)now;
    rule_indexes_drop(db);
    int rc = loyalty_refresh(db, err);
    if (rc != PATRON_OK)
        return rc;
    extcol *bal = db_extcol(db, "points_balance", VT_NUM, 0),
           *earned = db_extcol(db, "points_earned_365d", VT_NUM, 0),
           *tier = db_extcol(db, "tier", VT_STR, 0);
    if (!bal || !earned || !tier)
        return err_set(err, PATRON_ENOMEM, "out of memory");
    bal->fn = (vfn){fn_balance, NULL, fn_next, db, NULL, 0};
    earned->fn = (vfn){fn_earned, NULL, fn_next, db, NULL, 0};
    /* tier index -> code in the column's dictionary (codes stay: rules compiled earlier
     * hold them) */
    const program *p = db->loyalty ? ledger_program(db->loyalty, NULL) : NULL;
    size_t nt = p ? p->n_tiers : 0;
    uint32_t *codes = mem_alloc_array(nt + 1, sizeof *codes);
    if (!codes)
        return err_set(err, PATRON_ENOMEM, "out of memory");
    for (size_t k = 0; k < nt; k++)
        if (!(codes[k] = strdict_intern(&tier->dict, p->tiers[k].name, strlen(p->tiers[k].name)))) {
            mem_free(codes);
            return err_set(err, PATRON_ENOMEM, "out of memory");
        }
    mem_free(tier->fn.codes);
    tier->fn = (vfn){NULL, fn_tier, fn_next, db, codes, nt};
    return PATRON_OK;
}

/* ---- the ledger in the member view and in live segments ------------------------------------- */

/* Members' ledger rows as the view takes them, appended member after member. */
typedef struct lrows {
    view_lrow *p, *r; /* points, redemptions */
    size_t np, nr, pcap, rcap;
} lrows;

static int lrows_add(ledger *l, uint32_t m, lrows *o, patron_error *err)
{
    ledger_srow *p, *r;
    size_t np, nr;
    int rc = ledger_stream_rows(l, m, &p, &np, &r, &nr, err);
    if (rc != PATRON_OK)
        return rc;
    if (MEM_GROW(o->p, o->pcap, o->np + np) || MEM_GROW(o->r, o->rcap, o->nr + nr)) {
        rc = err_set(err, PATRON_ENOMEM, "out of memory");
    } else {
        for (size_t i = 0; i < np; i++) {
            view_lrow *v = &o->p[o->np++];
            v->ts = p[i].ts;
            v->points = (double)p[i].points;
            v->s = reason_name(p[i].kind, p[i].ref, p[i].refn, &v->sn);
        }
        for (size_t i = 0; i < nr; i++)
            o->r[o->nr++] = (view_lrow){r[i].ts, (double)r[i].points, r[i].ref, r[i].refn};
    }
    mem_free(p);
    mem_free(r);
    return rc;
}

static void lrows_release(lrows *o)
{
    mem_free(o->p);
    mem_free(o->r);
}

/* Member m's ledger rows into the view's points and redemptions streams. */
static int member_rows(patron_db *db, ledger *l, uint32_t m, patron_error *err)
{
    lrows o = {0};
    int rc = lrows_add(l, m, &o, err);
    if (rc == PATRON_OK && view_ledger_rows(db, m, o.p, o.np, o.r, o.nr) != 0)
        rc = err_set(err, PATRON_ENOMEM, "out of memory");
    lrows_release(&o);
    return rc;
}

/* Every member's ledger rows into the view: gathered first, then laid out exactly (no
 * slice moves). */
static int fill_all(patron_db *db, ledger *l, patron_error *err)
{
    uint32_t n = db->n_members;
    size_t *poff = mem_alloc_array((size_t)n + 1, sizeof *poff),
           *roff = mem_alloc_array((size_t)n + 1, sizeof *roff);
    lrows o = {0};
    int rc = poff && roff ? PATRON_OK : err_set(err, PATRON_ENOMEM, "out of memory");
    for (uint32_t m = 0; m < n && rc == PATRON_OK; m++) {
        poff[m] = o.np;
        roff[m] = o.nr;
        rc = lrows_add(l, m, &o, err);
    }
    if (rc == PATRON_OK) {
        poff[n] = o.np;
        roff[n] = o.nr;
        if (view_ledger_all(db, poff, o.p, roff, o.r) != 0)
            rc = err_set(err, PATRON_ENOMEM, "out of memory");
    }
    mem_free(poff);
    mem_free(roff);
    lrows_release(&o);
    db->view->ledger_epoch = ledger_epoch(l);
    return rc;
}

int loyalty_view_hook(patron_db *db, patron_error *err)
{
    ledger *l;
    int rc = ledger_get(db, &l, err);
    if (rc != PATRON_OK || !ledger_program(l, NULL))
        return rc; /* without a program the imported events stand */
    return fill_all(db, l, err);
}

void loyalty_after_commit(patron_db *db)
{
    ledger *l = db->loyalty;
    if (!l || !ledger_loaded(l))
        return; /* reloaded on next use: a new epoch */
    const uint32_t *ms;
    int all;
    size_t n = ledger_changed(l, &ms, &all);
    mview *v = db->view && db->view_valid && !db->view->failed ? db->view : NULL;
    int fed = v && ledger_program(l, NULL);
    if (fed && (!v->ledger_fed || v->ledger_epoch != ledger_epoch(l)))
        all = 1; /* a program since the view was built, or a reload: every member */
    if (!n && !all)
        return;
    const uint32_t src = DB_SRC_LOYALTY | (uint32_t)DB_SRC_EVENTS << (ST_POINTS - ST_REDEMPTIONS) |
                         (uint32_t)DB_SRC_EVENTS << (ST_REDEMPTIONS - ST_REDEMPTIONS);
    int was = db->tracking;
    db->tracking = 1;
    patron_error e = {0};
    size_t count = all ? db->n_members : n;
    for (size_t i = 0; i < count; i++) {
        uint32_t m = all ? (uint32_t)i : ms[i];
        if (m >= db->n_members)
            continue;
        db_touch(db, m, src);
        if (fed && !all && member_rows(db, l, m, &e) != PATRON_OK)
            fed = 0; /* the view is marked failed: rebuilt on its next read */
    }
    if (fed && all && fill_all(db, l, &e) != PATRON_OK)
        v->failed = 1; /* rebuilt on its next read */
    db->tracking = was;
    if (v) {
        v->ledger_epoch = ledger_epoch(l);
        view_after_import(db); /* rebind the streams' columns */
    }
    ledger_changed_clear(l);
}

void loyalty_after_rollback(patron_db *db)
{
    if (db->loyalty)
        ledger_invalidate(db->loyalty);
}
