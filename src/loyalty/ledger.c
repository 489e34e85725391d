/*
 * ledger.c -- the loyalty ledger engine (ledger.h; policies in docs/ledger.md).
 *
 * State in memory mirrors the store's journal: writes (one per idempotency key),
 * postings (journal lines), lots (one per credit that creates points, with expiry and
 * remaining points), qualification rows (points earned / money spent for tiers) and
 * tier changes, each with a per-member list (newest first, linked by `prev`).  A write
 * goes: op_begin (transaction or savepoint; reload if another process committed since
 * our copy was made) -> the operation appends rows in memory -> flush (the new rows and
 * the projections they touched go to the store, plus a fresh token) -> commit/release.
 * Any failure after memory changed rolls the store back and drops the memory copy, so
 * the next call reloads it: the store stays the only truth.
 *
 * Invariants (checked by ledger_verify and the property test): every journal line moves
 * amount > 0 from one account to another; a lot's remaining points are the sum of the
 * member-account lines naming it and never negative; a member's balance is the sum of
 * their lots' remaining points.
 */
#include "loyalty/ledger.h"

#include "base/err.h"
#include "base/hmap.h"
#include "base/mem.h"
#include "base/num.h"
#include "base/time.h"
#include "base/trace.h"
#include "core/db.h"
#include "loyalty/loyalty.h"
#include "loyalty/promo.h"
#include "store/store_ledger.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
/* XXH3 inlined: an import hashes three short fields per line item and 72 bytes per
 * posting, and the library call's length dispatch cost as much as the hashing.  The
 * hashes are the library's, bit for bit (they are stored). */
#define XXH_INLINE_ALL
#include <xxhash.h>

#define NIL UINT32_MAX
#define EXP_DAYS 1024 /* days of lot expiry kept (lot_expiry) */

enum { W_VOIDED = 1, W_CANCELLED = 2 };

/* A write.  104 bytes: an import makes millions, and fresh memory costs a page fault per
 * 4 KiB; the ref has no offset of its own (w_ref). */
typedef struct lw {
    int64_t seq, ts, points, money, shortfall, balance;
    int64_t clawed, returned; /* earns: clawed back (with shortfall) and money returned */
    uint64_t key_off, pay_off;
    uint32_t key_len, p0, np, member;
    uint32_t ref_len : 31;
    uint32_t ref_tail : 1; /* the ref is the key's tail ("order:ID" and "ID"), else it
                              follows the key's NUL in the arena */
    uint16_t pay_len;      /* payload texts are built in buffers of 1 KiB at most */
    uint8_t kind, state;
} lw;

typedef struct lp { /* a journal line */
    int64_t seq, amount, ts;
    uint32_t write, member, lot, prev;
    uint8_t debit, credit;
} lp;

typedef struct llot {
    int64_t id, ts, expires, remaining;
    uint32_t member, prev;
    uint8_t dirty;
} llot;

typedef struct lq { /* tier qualification */
    int64_t seq, ts, points, spend;
    uint32_t write, member, prev;
} lq;

typedef struct lt { /* tier change */
    int64_t seq, ts;
    uint32_t write, member, prev;
    int tier;
} lt;

typedef struct lm { /* per member */
    uint32_t post, lot, qual, tier;
    int64_t balance;
    /* What of the balance has expired, as of gone_at: Σ remaining of the lots that expire
     * at or before it, and the earliest expiry of any lot after it (INT64_MAX: none).
     * So for gone_at <= now < next_exp the usable balance is balance - gone, and it is
     * recounted only when now passes an expiry (ledger_balance).  Kept by add_lot,
     * load_lot and add_posting. */
    int64_t gone_at, gone, next_exp;
    int64_t pos_points, pos_spend; /* Σ positive qualification ever (saturating) */
    uint8_t changed; /* in l->changed */
    /* 0 while the member's qualification rows, newest first along prev, go back in time
     * (a time-ordered import): ledger_qualifying then stops at the window's start.
     * qual_ts: the newest row's ts (read here: that row is a cache miss). */
    uint8_t qual_unsorted;
    int64_t qual_ts;
    /* The latest ts of the member's journal lines: at now >= it every lot's remaining
     * points are those at now, so the cache above answers (balance_after).  Per member,
     * not the ledger's latest: a CSV import posts member by member, each in time order,
     * and the next member's first order is earlier than the last one's last. */
    int64_t last_ts;
} lm;

typedef struct lstock {
    char *id;
    int64_t used;
    uint8_t dirty;
} lstock;

/* A slot of the key index (struct ledger, keys). */
typedef struct kslot {
    uint32_t tag; /* the low 32 bits of the key's XXH3, never 0; 0 = empty slot */
    uint32_t wi;  /* the write's index */
} kslot;

typedef struct cand { /* a lot that can be spent, for sorting */
    int64_t expires, ts, id;
    uint32_t idx;
} cand;

typedef struct op {
    int own;
} op;

/* A load indexes each write's key this many writes after it has fetched the key's slot
 * (the index is too big for the cache: one miss a key otherwise). */
#define LOAD_KEYS_AHEAD 16

struct ledger {
    patron_db *db;
    op batch; /* the import batch in progress */
    /* A detached batch (ledger_batch_begin_detached) until ledger_batch_attach: nothing
     * may touch the store, so a write that would (a replay) answers LEDGER_DEFER. */
    int detached;
    int sp_open; /* the batch's savepoint is open */
    store_ledger *sl;
    program *prog;
    int64_t prog_version;
    uint64_t token, counter;
    int loaded, durable, mutated;
    lw *w;
    lp *p;
    llot *lot;
    lq *q;
    lt *t;
    lm *m;
    lstock *stock;
    size_t n_w, n_p, n_lot, n_q, n_t, n_m, n_stock;
    size_t cap_w, cap_p, cap_lot, cap_q, cap_t, cap_m, cap_stock;
    /* Idempotency key -> write index.  Open addressing, linear probing, load at most 7/10.
     * The keys themselves are the writes' (key_off in the arena), so a slot is 8 bytes
     * and a key is stored once; a tag match is confirmed against the write's key.  The
     * probe for a new key is a cache miss in a table of millions: keeping it small
     * matters more than the rare extra compare (tags sharing the slot's low bits). */
    kslot *keys;
    size_t cap_keys, n_keys;
    char *arena;
    size_t arena_len, arena_cap;
    char *pay; /* payloads of writes not flushed yet */
    size_t pay_len, pay_cap;
    uint32_t *dirty_lots;
    size_t n_dl, cap_dl;
    size_t dl_kept; /* dirty_lots[0, dl_kept): a window found them not derivable from its
                       chunk, so none later can be (window_encode checks the rest only) */
    /* members whose rows changed since the engine last took them (ledger_changed) */
    uint32_t *changed;
    size_t n_ch, cap_ch;
    int ch_lost;     /* a member could not be listed (out of memory): take it as all */
    uint64_t epoch;  /* bumped by every load: what was derived from an older one is stale */
    size_t mark_w, mark_p, mark_q, mark_t;
    int64_t next_p, next_q, next_t, max_ts;
    int64_t acc_debit[5], acc_credit[5]; /* running Σ per account over the journal */
    int acc_overflow;
    cand *cands;
    size_t cap_cands;
    store_ledger_chunk *chunk; /* flush_chunks builds each chunk here */
    int chunk_fmt;             /* journal chunk format written (ledger_set_chunk_format) */
    uint32_t hint_w, hint_lot; /* load: the write and lot found last (the next is often next) */
    uint64_t load_kh[LOAD_KEYS_AHEAD]; /* load: the hashes of the keys not yet indexed */
    /* A windowed batch (ledger_batch_window): every LEDGER_CHUNK_MAX writes are encoded
     * into a journal chunk (kept in built[] until the flush stores them) and their write
     * and posting records dropped; the batch's keys are not indexed.  The in-memory
     * ledger is dropped after the batch (the next use reloads it). */
    int window, window_on; /* in one; windows allowed (ledger_set_window) */
    int64_t next_w;         /* the next write's seq */
    size_t win_arena;       /* the arena's length when the batch began */
    /* The lots and qualification rows before the windowed batch: a window keeps only
     * those the batch made for the member in progress, moved down to these (window_keep),
     * and the rows of the others' changed lots (lot_rows, stored by the flush). */
    size_t win_lot, win_q;
    store_ledger_lot *lot_rows;
    size_t n_lot_rows, cap_lot_rows;
    store_ledger_chunk **built;
    size_t n_built, cap_built;
    /* A shared windowed batch (ledger_batch_share): the importer's thread stores built[]
     * as the ledger's thread makes them.  built[0, n_stored) are stored (their slots
     * NULL); sh_mu guards built, n_built and sh_closed (no more windows). */
    int shared, sh_closed;
    size_t n_stored;
    /* chunk objects stored already, for the next windows (their buffers are warm: a new
     * one per window was 0.4 MB of fresh memory) */
    store_ledger_chunk **pool;
    size_t n_pool, cap_pool;
    pthread_mutex_t sh_mu;
    pthread_cond_t sh_cv;
    /* The importer expects a windowed batch (ledger_batch_plan): room for a window */
    int window_plan;
    /* members created by the import in progress (not yet in db->member_id) */
    const char *const *new_ids;
    const uint32_t *new_lens;
    size_t n_new;
    /* lot_expiry: the expiry of lots earned on day exp_day[d % EXP_DAYS] under program
     * exp_version (else exp_day is stale) */
    int64_t exp_day[EXP_DAYS], exp_value[EXP_DAYS], exp_version;
    /* promotion rules: compiled on need; rule_ok[k] for the order being earned */
    promo_rules *rules;
    uint8_t *rule_ok;
    size_t cap_rule_ok;
};

static uint64_t windows_made; /* windows encoded in this process (ledger_windows) */

static const char *const kind_names[] = {"",       "earn",   "return", "void",   "redeem", "cancel",
                                         "adjust", "expire", "review", "bonus",  "redeem-event"};

/* ---- memory helpers ------------------------------------------------------------- */

static int oom(patron_error *err)
{
    return err_set(err, PATRON_ENOMEM, "out of memory");
}

static int arena_add(ledger *l, const char *s, size_t n, uint64_t *off)
{
    if (MEM_GROW(l->arena, l->arena_cap, l->arena_len + n + 1) != 0)
        return -1;
    memcpy(l->arena + l->arena_len, s, n);
    l->arena[l->arena_len + n] = '\0';
    *off = l->arena_len;
    l->arena_len += n + 1;
    return 0;
}

static const char *w_ref(const ledger *l, const lw *w)
{
    return l->arena + w->key_off + (w->ref_tail ? w->key_len - w->ref_len : w->key_len + 1);
}

/* Stores a write's key and ref in the arena as w_ref reads them. */
static int arena_key_ref(ledger *l, lw *w, const char *key, size_t keyn, const char *ref, size_t refn)
{
    uint64_t off;
    if (refn > INT32_MAX || arena_add(l, key, keyn, &w->key_off))
        return -1;
    w->key_len = (uint32_t)keyn;
    w->ref_len = (uint32_t)refn & INT32_MAX;
    w->ref_tail = refn <= keyn && (ref == key + keyn - refn || memcmp(key + keyn - refn, ref, refn) == 0);
    if (w->ref_tail)
        return 0;
    if (arena_add(l, ref, refn, &off))
        return -1;
    PATRON_ASSERT(off == w->key_off + keyn + 1);
    return 0;
}

static const char *member_name(ledger *l, uint32_t m, size_t *n)
{
    patron_db *db = l->db;
    if (m < db->n_members) {
        *n = strlen(db->member_id[m]);
        return db->member_id[m];
    }
    size_t k = m - db->n_members;
    if (l->new_ids && k < l->n_new) {
        *n = l->new_lens[k];
        return l->new_ids[k];
    }
    *n = 1;
    return "?";
}

static int member_ensure(ledger *l, uint32_t m)
{
    if (m < l->n_m)
        return 0;
    if (MEM_GROW(l->m, l->cap_m, (size_t)m + 1) != 0)
        return -1;
    for (size_t i = l->n_m; i <= m; i++)
        l->m[i] = (lm){NIL, NIL, NIL, NIL, 0, INT64_MIN, 0, INT64_MAX, 0, 0, 0, 0, 0, INT64_MIN};
    l->n_m = (size_t)m + 1;
    return 0;
}

static void note_member(ledger *l, uint32_t m)
{
    if (l->m[m].changed)
        return;
    if (MEM_GROW(l->changed, l->cap_ch, l->n_ch + 1) != 0) {
        l->ch_lost = 1;
        return;
    }
    l->m[m].changed = 1;
    l->changed[l->n_ch++] = m;
}

static int mark_lot(ledger *l, uint32_t i)
{
    if (l->lot[i].dirty)
        return 0;
    if (MEM_GROW(l->dirty_lots, l->cap_dl, l->n_dl + 1) != 0)
        return -1;
    l->lot[i].dirty = 1;
    l->dirty_lots[l->n_dl++] = i;
    return 0;
}

/* Frees the chunks a windowed batch built (the array stays, for the next batch; the
 * slots of those stored already are NULL) and the pool. */
static void built_free(ledger *l)
{
    for (size_t k = 0; k < l->n_built; k++)
        store_ledger_chunk_free(l->built[k]);
    l->n_built = l->n_stored = 0;
    for (size_t k = 0; k < l->n_pool; k++)
        store_ledger_chunk_free(l->pool[k]);
    l->n_pool = 0;
}

static void release_state(ledger *l)
{
    mem_free(l->w);
    mem_free(l->p);
    mem_free(l->lot);
    mem_free(l->q);
    mem_free(l->t);
    mem_free(l->m);
    for (size_t i = 0; i < l->n_stock; i++)
        mem_free(l->stock[i].id);
    mem_free(l->stock);
    mem_free(l->keys);
    mem_free(l->arena);
    mem_free(l->pay);
    mem_free(l->dirty_lots);
    mem_free(l->changed);
    program_free(l->prog);
    l->w = NULL, l->p = NULL, l->lot = NULL, l->q = NULL, l->t = NULL, l->m = NULL, l->stock = NULL;
    l->arena = l->pay = NULL;
    l->keys = NULL;
    l->cap_keys = l->n_keys = 0;
    l->dirty_lots = l->changed = NULL;
    l->n_ch = l->cap_ch = 0;
    l->ch_lost = 0;
    l->prog = NULL;
    l->n_w = l->n_p = l->n_lot = l->n_q = l->n_t = l->n_m = l->n_stock = 0;
    l->cap_w = l->cap_p = l->cap_lot = l->cap_q = l->cap_t = l->cap_m = l->cap_stock = 0;
    l->arena_len = l->arena_cap = l->pay_len = l->pay_cap = 0;
    l->n_dl = l->cap_dl = l->dl_kept = 0;
    l->mark_w = l->mark_p = l->mark_q = l->mark_t = 0;
    l->next_p = l->next_q = l->next_t = 1;
    l->max_ts = INT64_MIN;
    l->exp_version = -1;
    l->loaded = 0;
    memset(l->acc_debit, 0, sizeof l->acc_debit);
    memset(l->acc_credit, 0, sizeof l->acc_credit);
    l->acc_overflow = 0;
}

static void account(ledger *l, int debit, int credit, int64_t amount)
{
    if (debit < 0 || debit > 4 || credit < 0 || credit > 4 ||
        num_add_i64(l->acc_debit[debit], amount, &l->acc_debit[debit]) ||
        num_add_i64(l->acc_credit[credit], amount, &l->acc_credit[credit]))
        l->acc_overflow = 1;
}

static void ledger_free_cb(void *p)
{
    ledger *l = p;
    if (!l)
        return;
    release_state(l);
    built_free(l);
    mem_free(l->built);
    mem_free(l->pool);
    mem_free(l->lot_rows);
    mem_free(l->cands);
    store_ledger_chunk_free(l->chunk);
    promo_rules_free(l->rules);
    mem_free(l->rule_ok);
    store_ledger_free(l->sl);
    mem_free(l);
}

/* ---- rows ------------------------------------------------------------------------ */

static lstock *stock_get(ledger *l, const char *id, size_t n, int create)
{
    for (size_t i = 0; i < l->n_stock; i++)
        if (strlen(l->stock[i].id) == n && memcmp(l->stock[i].id, id, n) == 0)
            return &l->stock[i];
    if (!create || MEM_GROW(l->stock, l->cap_stock, l->n_stock + 1) != 0)
        return NULL;
    lstock *s = &l->stock[l->n_stock];
    if (!(s->id = mem_strndup(id, n)))
        return NULL;
    s->used = 0;
    s->dirty = 0;
    l->n_stock++;
    return s;
}

/* ---- the key index ---------------------------------------------------------------- */

static uint64_t key_hash(const char *key, size_t n)
{
    return XXH3_64bits(key, n);
}

static uint32_t key_tag(uint64_t h)
{
    uint32_t t = (uint32_t)h;
    return t ? t : 1;
}

/* The slot holding key (returns its write index) or, when absent, the empty slot where
 * its probe ends (returns -1).  cap_keys > 0. */
static int key_probe(const ledger *l, const char *key, size_t n, uint32_t tag, size_t *slot)
{
    size_t mask = l->cap_keys - 1, i = tag & mask;
    for (;; i = (i + 1) & mask) {
        const kslot *s = &l->keys[i];
        if (s->tag == 0) {
            *slot = i;
            return -1;
        }
        if (s->tag == tag) {
            const lw *w = &l->w[s->wi];
            if (w->key_len == n && memcmp(l->arena + w->key_off, key, n) == 0) {
                *slot = i;
                return (int)s->wi;
            }
        }
    }
}

/* Room for `count` keys in all without passing the load factor (no rehash until then). */
static int keys_room(ledger *l, size_t count)
{
    if (count <= l->cap_keys / 10 * 7)
        return 0;
    size_t cap = l->cap_keys ? l->cap_keys : 64;
    while (cap / 10 * 7 < count)
        cap *= 2;
    if (cap > (size_t)UINT32_MAX + 1) /* tags place keys: 32 bits of index at most */
        return -1;
    kslot *ns = mem_calloc(cap, sizeof *ns);
    if (!ns)
        return -1;
    for (size_t i = 0; i < l->cap_keys; i++) {
        if (!l->keys[i].tag)
            continue;
        size_t j = l->keys[i].tag & (cap - 1);
        while (ns[j].tag)
            j = (j + 1) & (cap - 1);
        ns[j] = l->keys[i];
    }
    mem_free(l->keys);
    l->keys = ns;
    l->cap_keys = cap;
    return 0;
}

/* Asks the CPU for the slot where the probe for hash h starts (a miss in a big table). */
static void key_prefetch(const ledger *l, uint64_t h)
{
    if (l->cap_keys)
        __builtin_prefetch(&l->keys[key_tag(h) & (l->cap_keys - 1)]);
}

/* The write stored under key (h = key_hash(key, n)), or -1. */
static int find_key_h(const ledger *l, const char *key, size_t n, uint64_t h)
{
    size_t slot;
    return l->cap_keys ? key_probe(l, key, n, key_tag(h), &slot) : -1;
}

static int find_key(const ledger *l, const char *key, size_t n)
{
    return find_key_h(l, key, n, key_hash(key, n));
}

/* Indexes write wi under its key (the arena's copy, key_off / key_len set); a key
 * indexed already now names wi.  0 ok, -1 out of memory. */
static int key_put(ledger *l, uint32_t wi, uint64_t h)
{
    if (keys_room(l, l->n_keys + 1) != 0)
        return -1;
    const lw *w = &l->w[wi];
    uint32_t tag = key_tag(h);
    size_t slot;
    if (key_probe(l, l->arena + w->key_off, w->key_len, tag, &slot) < 0) {
        l->keys[slot].tag = tag;
        l->n_keys++;
    }
    l->keys[slot].wi = wi;
    return 0;
}

/* Appends a write (seq = its index + 1 in the journal order).  Returns the index or -1. */
static int64_t add_write_n(ledger *l, int kind, const char *key, size_t keyn, uint64_t keyh,
                           uint32_t member, int64_t ts, const char *ref, size_t refn,
                           const char *payload, size_t pn)
{
    if (MEM_GROW(l->w, l->cap_w, l->n_w + 1) != 0)
        return -1;
    lw *w = &l->w[l->n_w];
    memset(w, 0, sizeof *w);
    w->seq = l->window ? l->next_w++ : l->n_w ? l->w[l->n_w - 1].seq + 1 : 1;
    w->kind = (uint8_t)kind;
    w->member = member;
    w->ts = ts;
    w->p0 = (uint32_t)l->n_p;
    PATRON_ASSERT(pn <= UINT16_MAX);
    if (arena_key_ref(l, w, key, keyn, ref, refn) || MEM_GROW(l->pay, l->pay_cap, l->pay_len + pn + 1) != 0 ||
        (!l->window && key_put(l, (uint32_t)l->n_w, keyh) != 0))
        return -1;
    memcpy(l->pay + l->pay_len, payload, pn);
    w->pay_off = l->pay_len;
    w->pay_len = (uint16_t)pn;
    l->pay_len += pn;
    l->mutated = 1;
    return (int64_t)l->n_w++;
}

static int64_t add_write(ledger *l, int kind, const char *key, size_t keyn, uint32_t member,
                         int64_t ts, const char *ref, size_t refn, const char *payload)
{
    return add_write_n(l, kind, key, keyn, key_hash(key, keyn), member, ts, ref, refn, payload,
                       strlen(payload));
}

/* Appends a journal line and applies it to its lot and member.  The member side is the
 * lot's; amount > 0; a debit of the member never exceeds the lot's remaining points
 * (callers take at most that much). */
static int add_posting(ledger *l, uint32_t wi, int debit, int credit, int64_t amount, uint32_t li,
                       int64_t ts)
{
    PATRON_ASSERT(amount > 0 && debit != credit);
    PATRON_ASSERT(debit == LEDGER_ACC_MEMBER || credit == LEDGER_ACC_MEMBER);
    llot *lt_ = &l->lot[li];
    lm *mm = &l->m[lt_->member];
    int64_t delta = credit == LEDGER_ACC_MEMBER ? amount : -amount, rem, bal;
    if (num_add_i64(lt_->remaining, delta, &rem) || num_add_i64(mm->balance, delta, &bal))
        return -2;
    PATRON_ASSERT(rem >= 0 && bal >= 0);
    if (MEM_GROW(l->p, l->cap_p, l->n_p + 1) != 0 || mark_lot(l, li) != 0)
        return -1;
    lp *p = &l->p[l->n_p];
    p->seq = l->next_p++;
    p->amount = amount;
    p->ts = ts;
    p->write = wi;
    p->member = lt_->member;
    p->lot = li;
    p->debit = (uint8_t)debit;
    p->credit = (uint8_t)credit;
    p->prev = mm->post;
    mm->post = (uint32_t)l->n_p;
    lt_->remaining = rem;
    mm->balance = bal;
    if (lt_->expires <= mm->gone_at)
        mm->gone += delta;
    account(l, debit, credit, amount);
    note_member(l, lt_->member);
    l->w[wi].np++;
    if (ts > l->max_ts)
        l->max_ts = ts;
    if (ts > mm->last_ts)
        mm->last_ts = ts;
    l->n_p++;
    l->mutated = 1;
    return 0;
}

/* program_expiry for a lot earned at ts.  Calendar policies (end of month or year) give
 * every lot of a day the same expiry, and a batch asks about the same days many times
 * over (a time-ordered one about one day at a time, a member-ordered one about a
 * member's days): the answers for the last EXP_DAYS days asked are kept, by day (civil
 * date arithmetic was 3 % of earning). */
static int64_t lot_expiry(ledger *l, int64_t ts)
{
    int mode = l->prog->expire_mode;
    if (mode != PROGRAM_EXPIRE_END_OF_MONTH && mode != PROGRAM_EXPIRE_END_OF_YEAR)
        return program_expiry(l->prog, ts);
    if (l->exp_version != l->prog_version) {
        for (int d = 0; d < EXP_DAYS; d++)
            l->exp_day[d] = INT64_MIN;
        l->exp_version = l->prog_version;
    }
    int64_t day = time_day_of(ts);
    size_t k = (size_t)((uint64_t)day % EXP_DAYS);
    if (l->exp_day[k] != day) {
        l->exp_day[k] = day;
        l->exp_value[k] = program_expiry(l->prog, ts);
    }
    return l->exp_value[k];
}

/* A lot with that expiry and remaining points joins the member's (balance cache). */
static void lot_expiry_seen(lm *mm, int64_t expires, int64_t remaining)
{
    if (expires <= mm->gone_at)
        mm->gone += remaining;
    else if (expires < mm->next_exp)
        mm->next_exp = expires;
}

/* A new lot for the member, created by the next journal line. */
static int64_t add_lot(ledger *l, uint32_t member, int64_t ts, int64_t expires)
{
    if (member_ensure(l, member) != 0 || MEM_GROW(l->lot, l->cap_lot, l->n_lot + 1) != 0)
        return -1;
    llot *x = &l->lot[l->n_lot];
    x->id = l->next_p;
    x->ts = ts;
    x->expires = expires;
    x->remaining = 0;
    x->member = member;
    x->dirty = 0;
    x->prev = l->m[member].lot;
    l->m[member].lot = (uint32_t)l->n_lot;
    lot_expiry_seen(&l->m[member], expires, 0);
    l->mutated = 1;
    return (int64_t)l->n_lot++;
}

/* The member's positive qualification ever: no window can hold more (upgrade_check). */
static void qual_bound(lm *mm, int64_t points, int64_t spend)
{
    if (points > 0 && __builtin_add_overflow(mm->pos_points, points, &mm->pos_points))
        mm->pos_points = INT64_MAX;
    if (spend > 0 && __builtin_add_overflow(mm->pos_spend, spend, &mm->pos_spend))
        mm->pos_spend = INT64_MAX;
}

/* Makes row l->q[l->n_q] (its prev already the member's head) the member's newest. */
static void qual_link(ledger *l, uint32_t member)
{
    lm *mm = &l->m[member];
    const lq *x = &l->q[l->n_q];
    if (x->prev != NIL && x->ts < mm->qual_ts)
        mm->qual_unsorted = 1;
    mm->qual_ts = x->ts;
    mm->qual = (uint32_t)l->n_q++;
}

static int add_qual(ledger *l, uint32_t wi, uint32_t member, int64_t ts, int64_t points,
                    int64_t spend)
{
    if (points == 0 && spend == 0)
        return 0;
    if (member_ensure(l, member) != 0 || MEM_GROW(l->q, l->cap_q, l->n_q + 1) != 0)
        return -1;
    l->q[l->n_q] = (lq){l->next_q++, ts, points, spend, wi, member, l->m[member].qual};
    qual_link(l, member);
    qual_bound(&l->m[member], points, spend);
    note_member(l, member);
    l->mutated = 1;
    return 0;
}

static int add_tier(ledger *l, uint32_t wi, uint32_t member, int64_t ts, int tier)
{
    if (member_ensure(l, member) != 0 || MEM_GROW(l->t, l->cap_t, l->n_t + 1) != 0)
        return -1;
    l->t[l->n_t] = (lt){l->next_t++, ts, wi, member, l->m[member].tier, tier};
    l->m[member].tier = (uint32_t)l->n_t++;
    note_member(l, member);
    l->mutated = 1;
    return 0;
}

/* ---- reads -------------------------------------------------------------------------- */

int ledger_tier(ledger *l, uint32_t member, int64_t now)
{
    if (member >= l->n_m)
        return 0;
    int64_t best_ts = INT64_MIN, best_seq = -1;
    int tier = 0;
    for (uint32_t i = l->m[member].tier; i != NIL; i = l->t[i].prev) {
        const lt *x = &l->t[i];
        if (x->ts <= now && (x->ts > best_ts || (x->ts == best_ts && x->seq > best_seq))) {
            best_ts = x->ts;
            best_seq = x->seq;
            tier = x->tier;
        }
    }
    return tier;
}

int64_t ledger_qualifying(ledger *l, uint32_t member, int64_t now, int64_t window, int spend)
{
    if (member >= l->n_m)
        return 0;
    int64_t sum = 0, from;
    if (__builtin_sub_overflow(now, window, &from))
        from = INT64_MIN;
    int sorted = !l->m[member].qual_unsorted;
    for (uint32_t i = l->m[member].qual; i != NIL; i = l->q[i].prev) {
        const lq *x = &l->q[i];
        if (sorted && x->ts <= from)
            break; /* every older row is out of the window too */
        if (x->ts > from && x->ts <= now) {
            int64_t v = spend ? x->spend : x->points;
            if (__builtin_add_overflow(sum, v, &sum))
                return v > 0 ? INT64_MAX : INT64_MIN;
        }
    }
    return sum;
}

/* The usable balance at now >= the member's last_ts (every lot earned and every line
 * posted by now): the lots not expired at now.  With anchor = 1 a recount also moves
 * the member's cache to now (writers: a batch then recounts a member once per expiry it
 * passes, not once per write); readers leave it alone (rules read balances on several
 * threads). */
static int64_t balance_now(ledger *l, uint32_t member, int64_t now, int anchor)
{
    lm *mm = &l->m[member];
    if (now >= mm->gone_at && now < mm->next_exp)
        return mm->balance - mm->gone;
    int64_t gone = 0, next = INT64_MAX;
    for (uint32_t i = mm->lot; i != NIL; i = l->lot[i].prev) {
        const llot *x = &l->lot[i];
        if (x->expires <= now)
            gone += x->remaining; /* <= the member's balance: no overflow */
        else if (x->expires < next)
            next = x->expires;
    }
    if (anchor) {
        mm->gone_at = now;
        mm->gone = gone;
        mm->next_exp = next;
    }
    return mm->balance - gone;
}

/* ledger_balance for the member's own writes (anchoring the cache). */
static int64_t balance_after(ledger *l, uint32_t member, int64_t now)
{
    if (member < l->n_m && now >= l->m[member].last_ts)
        return balance_now(l, member, now, 1);
    return ledger_balance(l, member, now);
}

int64_t ledger_balance(ledger *l, uint32_t member, int64_t now)
{
    if (member >= l->n_m)
        return 0;
    int64_t sum = 0;
    if (now >= l->m[member].last_ts)
        return balance_now(l, member, now, 0);
    for (uint32_t i = l->m[member].post; i != NIL; i = l->p[i].prev) {
        const lp *p = &l->p[i];
        if (p->ts <= now && l->lot[p->lot].expires > now)
            sum += p->credit == LEDGER_ACC_MEMBER ? p->amount : -p->amount;
    }
    return sum;
}

int64_t ledger_stock_used(ledger *l, const char *reward)
{
    lstock *s = stock_get(l, reward, strlen(reward), 0);
    return s ? s->used : 0;
}

static int cand_cmp(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->expires != y->expires)
        return x->expires < y->expires ? -1 : 1;
    if (x->ts != y->ts)
        return x->ts < y->ts ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* The member's lots that can be spent at now, soonest-expiring first, oldest first on
 * ties; their sum in *avail.  Returns the count, or -1 when out of memory. */
static long spendable(ledger *l, uint32_t member, int64_t now, uint32_t skip, int64_t *avail)
{
    size_t n = 0;
    *avail = 0;
    if (member >= l->n_m)
        return 0;
    for (uint32_t i = l->m[member].lot; i != NIL; i = l->lot[i].prev) {
        const llot *x = &l->lot[i];
        if (i == skip || x->remaining <= 0 || x->ts > now || x->expires <= now)
            continue;
        if (MEM_GROW(l->cands, l->cap_cands, n + 1) != 0)
            return -1;
        l->cands[n++] = (cand){x->expires, x->ts, x->id, i};
        *avail += x->remaining;
    }
    if (n > 1)
        qsort(l->cands, n, sizeof *l->cands, cand_cmp);
    return (long)n;
}

/* Takes up to amount points from the member's spendable lots (first from lot `first`
 * when it is spendable) into account `to`.  *taken receives what was taken. */
static int take(ledger *l, uint32_t wi, uint32_t member, int64_t amount, int64_t now, int to,
                uint32_t first, int64_t *taken, patron_error *err)
{
    *taken = 0;
    if (first != NIL) {
        llot *x = &l->lot[first];
        if (x->remaining > 0 && x->ts <= now && x->expires > now && amount > 0) {
            int64_t a = x->remaining < amount ? x->remaining : amount;
            if (add_posting(l, wi, LEDGER_ACC_MEMBER, to, a, first, now))
                return oom(err);
            *taken += a;
            amount -= a;
        }
    }
    int64_t avail;
    long n = amount > 0 ? spendable(l, member, now, first, &avail) : 0;
    if (n < 0)
        return oom(err);
    for (long k = 0; k < n && amount > 0; k++) {
        uint32_t li = l->cands[k].idx;
        int64_t a = l->lot[li].remaining < amount ? l->lot[li].remaining : amount;
        if (add_posting(l, wi, LEDGER_ACC_MEMBER, to, a, li, now))
            return oom(err);
        *taken += a;
        amount -= a;
    }
    return PATRON_OK;
}

/* ---- loading ------------------------------------------------------------------------ */

static int tier_by_name(ledger *l, const char *name, size_t n)
{
    int t = l->prog ? program_tier_find(l->prog, name, n) : -1;
    return t < 0 ? 0 : t;
}

/* A bounded text builder for keys and payloads on the import path (snprintf was a
 * tenth of an import's time); output truncated at cap - 1, like snprintf. */
typedef struct pbuf {
    char *p;
    size_t n, cap;
} pbuf;

static void pb_str(pbuf *b, const char *s, size_t n)
{
    if (n > b->cap - 1 - b->n)
        n = b->cap - 1 - b->n;
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void pb_i64(pbuf *b, int64_t v)
{
    char t[24];
    size_t k = sizeof t;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        t[--k] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        t[--k] = '-';
    pb_str(b, t + k, sizeof t - k);
}

static void pb_hex16(pbuf *b, uint64_t v)
{
    char t[16];
    for (int k = 15; k >= 0; k--, v >>= 4)
        t[k] = "0123456789abcdef"[v & 15];
    pb_str(b, t, 16);
}

/* The payload of an earn: "op=earn\nmember=M\nts=T\namount=A\nitems=%016llx\n", built
 * without printf (an import makes one per order).  ih hashes the line items. */
static size_t earn_payload(ledger *l, uint32_t member, int64_t ts, int64_t amount, uint64_t ih,
                           char *out, size_t cap)
{
    size_t mn;
    const char *mid = member_name(l, member, &mn);
    pbuf pb = {out, 0, cap};
    pb_str(&pb, "op=earn\nmember=", 15);
    pb_str(&pb, mid, mn);
    pb_str(&pb, "\nts=", 4);
    pb_i64(&pb, ts);
    pb_str(&pb, "\namount=", 8);
    pb_i64(&pb, amount);
    pb_str(&pb, "\nitems=", 7);
    pb_hex16(&pb, ih);
    pb_str(&pb, "\n", 1);
    out[pb.n] = '\0';
    return pb.n;
}

/* An earn's payload is kept packed, in memory and in journal chunks: EARN_PACKED + the
 * 8-byte item hash, since earn_payload() rebuilds the text from the write's own fields
 * (two thirds of an import's journal bytes were these texts).  In a chunk its key
 * "order:ID" is stored as "" too (ID is the ref).  Readers expand both back
 * (unpack_key, unpack_payload); rows of ledger_writes keep the texts. */
#define EARN_PACKED '\x01'
#define EARN_PACKED_LEN 9

static void pack_key(store_ledger_write *sw)
{
    if (sw->kind == LEDGER_EARN && sw->keyn == sw->refn + 6 && memcmp(sw->key, "order:", 6) == 0 &&
        memcmp(sw->key + 6, sw->ref, sw->refn) == 0)
        sw->keyn = 0;
}

/* The payload text of a write record (a packed earn's is rebuilt into buf, cap 1024). */
static void unpack_payload(ledger *l, store_ledger_write *sw, char *buf, size_t cap)
{
    if (sw->kind != LEDGER_EARN || sw->payloadn != EARN_PACKED_LEN || sw->payload[0] != EARN_PACKED ||
        sw->member < 0)
        return;
    uint64_t ih = 0;
    for (int k = 7; k >= 0; k--)
        ih = ih << 8 | (unsigned char)sw->payload[1 + k];
    sw->payloadn = earn_payload(l, (uint32_t)sw->member, sw->ts, sw->money, ih, buf, cap);
    sw->payload = buf;
}

/* The stored key of a write (a packed earn's is rebuilt into buf). */
static const char *unpack_key(const store_ledger_write *sw, char *buf, size_t cap, size_t *n)
{
    if (sw->keyn || sw->kind != LEDGER_EARN || sw->refn + 6 >= cap) {
        *n = sw->keyn;
        return sw->key;
    }
    memcpy(buf, "order:", 6);
    memcpy(buf + 6, sw->ref, sw->refn);
    *n = sw->refn + 6;
    return buf;
}

static int load_write(void *ctx, const store_ledger_write *sw)
{
    ledger *l = ctx;
    if (MEM_GROW(l->w, l->cap_w, l->n_w + 1) != 0)
        return -1;
    lw *w = &l->w[l->n_w];
    memset(w, 0, sizeof *w);
    w->seq = sw->seq;
    w->kind = (uint8_t)sw->kind;
    w->member = sw->member < 0 ? NIL : (uint32_t)sw->member;
    w->ts = sw->ts;
    w->points = sw->points;
    w->money = sw->money;
    w->shortfall = sw->shortfall;
    w->balance = sw->balance;
    w->p0 = NIL;
    char kb[320];
    size_t kn;
    const char *key = unpack_key(sw, kb, sizeof kb, &kn);
    if (arena_key_ref(l, w, key, kn, sw->ref, sw->refn))
        return -1;
    uint64_t h = key_hash(key, kn);
    key_prefetch(l, h);
    size_t wi = l->n_w++, back = wi - LOAD_KEYS_AHEAD;
    if (wi >= LOAD_KEYS_AHEAD && key_put(l, (uint32_t)back, l->load_kh[back % LOAD_KEYS_AHEAD]) != 0)
        return -1;
    l->load_kh[wi % LOAD_KEYS_AHEAD] = h;
    return 0;
}

/* The keys load_write has yet to index. */
static int load_keys_flush(ledger *l)
{
    size_t from = l->n_w > LOAD_KEYS_AHEAD ? l->n_w - LOAD_KEYS_AHEAD : 0;
    for (size_t wi = from; wi < l->n_w; wi++)
        if (key_put(l, (uint32_t)wi, l->load_kh[wi % LOAD_KEYS_AHEAD]) != 0)
            return -1;
    return 0;
}

static int load_lot(void *ctx, const store_ledger_lot *sl)
{
    ledger *l = ctx;
    if (sl->member < 0 || sl->member >= UINT32_MAX || member_ensure(l, (uint32_t)sl->member) != 0 ||
        MEM_GROW(l->lot, l->cap_lot, l->n_lot + 1) != 0)
        return -1;
    uint32_t m = (uint32_t)sl->member;
    l->lot[l->n_lot] = (llot){sl->lot, sl->ts, sl->expires, sl->remaining, m, l->m[m].lot, 0};
    l->m[m].lot = (uint32_t)l->n_lot++;
    lot_expiry_seen(&l->m[m], sl->expires, sl->remaining);
    l->m[m].balance += sl->remaining;
    return 0;
}

/* The index of the record whose int64 field at offset off is v, in n records of size
 * stride sorted by it, or NIL.  *hint (the one found last; a load asks for the same or
 * the next one most of the time) is tried first, then a binary search. */
static uint32_t sorted_find(const void *base, size_t stride, size_t off, size_t n, int64_t v,
                            uint32_t *hint)
{
    const char *b = (const char *)base + off;
    int64_t x;
    for (size_t i = *hint; i < n && i <= (size_t)*hint + 1; i++) {
        memcpy(&x, b + i * stride, sizeof x);
        if (x == v)
            return *hint = (uint32_t)i;
    }
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        memcpy(&x, b + mid * stride, sizeof x);
        if (x < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < n)
        memcpy(&x, b + lo * stride, sizeof x);
    return lo < n && x == v ? (*hint = (uint32_t)lo) : NIL;
}

static uint32_t near_lot(ledger *l, int64_t id)
{
    return sorted_find(l->lot, sizeof *l->lot, offsetof(llot, id), l->n_lot, id, &l->hint_lot);
}

static uint32_t near_write(ledger *l, int64_t seq)
{
    return sorted_find(l->w, sizeof *l->w, offsetof(lw, seq), l->n_w, seq, &l->hint_w);
}

static int load_posting(void *ctx, const store_ledger_posting *sp)
{
    ledger *l = ctx;
    uint32_t li = near_lot(l, sp->lot), wi = near_write(l, sp->write);
    if (li == NIL || wi == NIL || MEM_GROW(l->p, l->cap_p, l->n_p + 1) != 0)
        return -1; /* reported as a damaged ledger by the caller */
    lm *mm = &l->m[l->lot[li].member];
    l->p[l->n_p] = (lp){sp->seq, sp->amount, sp->ts, wi, l->lot[li].member, li, mm->post,
                        (uint8_t)sp->debit, (uint8_t)sp->credit};
    mm->post = (uint32_t)l->n_p;
    if (l->w[wi].p0 == NIL)
        l->w[wi].p0 = (uint32_t)l->n_p;
    l->w[wi].np++;
    account(l, sp->debit, sp->credit, sp->amount);
    if (sp->ts > l->max_ts)
        l->max_ts = sp->ts;
    if (sp->ts > mm->last_ts)
        mm->last_ts = sp->ts;
    l->next_p = sp->seq + 1;
    l->n_p++;
    return 0;
}

static int load_qual(void *ctx, const store_ledger_qual *sq)
{
    ledger *l = ctx;
    uint32_t wi = near_write(l, sq->write);
    if (wi == NIL || sq->member < 0 || member_ensure(l, (uint32_t)sq->member) != 0 ||
        MEM_GROW(l->q, l->cap_q, l->n_q + 1) != 0)
        return -1;
    uint32_t m = (uint32_t)sq->member;
    l->q[l->n_q] = (lq){sq->seq, sq->ts, sq->points, sq->spend, wi, m, l->m[m].qual};
    qual_link(l, m);
    qual_bound(&l->m[m], sq->points, sq->spend);
    l->next_q = sq->seq + 1;
    return 0;
}

static int load_tier(void *ctx, const store_ledger_tier *st)
{
    ledger *l = ctx;
    uint32_t wi = near_write(l, st->write);
    if (wi == NIL || st->member < 0 || member_ensure(l, (uint32_t)st->member) != 0 ||
        MEM_GROW(l->t, l->cap_t, l->n_t + 1) != 0)
        return -1;
    uint32_t m = (uint32_t)st->member;
    l->t[l->n_t] = (lt){st->seq, st->ts, wi, m, l->m[m].tier, tier_by_name(l, st->tier, st->tiern)};
    l->m[m].tier = (uint32_t)l->n_t++;
    l->next_t = st->seq + 1;
    return 0;
}

static int load_stock(void *ctx, const char *reward, size_t n, int64_t used)
{
    ledger *l = ctx;
    lstock *s = stock_get(l, reward, n, 1);
    if (!s)
        return -1;
    s->used = used;
    return 0;
}

static lw *write_by_key(ledger *l, const char *prefix, const char *id, size_t idn)
{
    char key[320];
    int kn = snprintf(key, sizeof key, "%s%.*s", prefix, (int)idn, id);
    if (kn < 0 || (size_t)kn >= sizeof key)
        return NULL;
    int wi = find_key(l, key, (size_t)kn);
    return wi < 0 ? NULL : &l->w[wi];
}

/* Derived state of writes (earn clawed/returned, voided, cancelled): applied when a
 * write is made and replayed in journal order at load, by the same functions. */
static void derive_return(ledger *l, const lw *r)
{
    if (!r->ref_len)
        return;
    lw *e = write_by_key(l, "order:", w_ref(l, r), r->ref_len);
    if (e && e->kind == LEDGER_EARN && !(e->state & W_VOIDED)) {
        e->clawed += r->points + r->shortfall;
        e->returned += r->money;
    }
}

static void derive_void(ledger *l, const lw *v)
{
    int ti = find_key(l, w_ref(l, v), v->ref_len);
    if (ti < 0)
        return;
    lw *t = &l->w[ti];
    if (t->kind == LEDGER_EARN) {
        t->clawed = t->points;
        t->returned = t->money;
    } else if (t->kind == LEDGER_RETURN && t->ref_len) {
        lw *e = write_by_key(l, "order:", w_ref(l, t), t->ref_len);
        if (e && e->kind == LEDGER_EARN && !(e->state & W_VOIDED)) {
            e->clawed -= t->points + t->shortfall;
            e->returned -= t->money;
        }
    }
    t->state |= W_VOIDED;
}

static void derive_cancel(ledger *l, const lw *c)
{
    int ti = find_key(l, w_ref(l, c), c->ref_len);
    if (ti >= 0)
        l->w[ti].state |= W_CANCELLED;
}

static void derive(ledger *l, const lw *w)
{
    if (w->kind == LEDGER_RETURN)
        derive_return(l, w);
    else if (w->kind == LEDGER_VOID)
        derive_void(l, w);
    else if (w->kind == LEDGER_CANCEL)
        derive_cancel(l, w);
}

/* Reloads everything from the store (inside a transaction or read snapshot). */
/* The latest stored program, parsed: 1 with *out and *version, 0 when none was ever
 * applied, or a negative status. */
static int program_latest(store_ledger *sl, program **out, int64_t *version, patron_error *err)
{
    int64_t applied;
    char *body = NULL;
    int rc = store_ledger_program_latest(sl, version, &applied, &body, err);
    if (rc == 1) {
        char name[64];
        snprintf(name, sizeof name, "stored program v%lld", (long long)*version);
        rc = program_parse(body, strlen(body), name, out, err);
        rc = rc == PATRON_OK ? 1 : rc;
    }
    mem_free(body);
    return rc;
}

int ledger_stored_program(patron_db *db, program **out, patron_error *err)
{
    store_ledger *sl;
    int64_t version;
    int rc = store_ledger_open(db->st, &sl, err);
    if (rc != PATRON_OK)
        return rc;
    rc = program_latest(sl, out, &version, err);
    store_ledger_free(sl);
    return rc;
}

static int load(ledger *l, uint64_t token, patron_error *err)
{
    release_state(l);
    int64_t version;
    int rc = program_latest(l->sl, &l->prog, &version, err);
    if (rc < 0)
        return rc;
    l->prog_version = rc == 1 ? version : 0;
    if (member_ensure(l, l->db->n_members ? l->db->n_members - 1 : 0) != 0)
        return oom(err);
    /* Room for all of it at once: growing by doubling copied the arrays over and over
     * (about 0.4 GB at M, a quarter of a load's time there).  The counts are only a
     * hint: when they cannot be read, the arrays grow as before. */
    int64_t n[5];
    store_ledger_sizes(l->sl, n);
    l->hint_w = l->hint_lot = 0;
    if (n[0] > 0 && n[1] >= 0 && n[2] >= 0 && n[3] >= 0 && n[4] >= 0 &&
        (MEM_GROW(l->w, l->cap_w, (size_t)n[0]) || MEM_GROW(l->p, l->cap_p, (size_t)n[1] + 1) ||
         MEM_GROW(l->q, l->cap_q, (size_t)n[2] + 1) || MEM_GROW(l->t, l->cap_t, (size_t)n[3] + 1) ||
         MEM_GROW(l->lot, l->cap_lot, (size_t)n[4] + 1) || keys_room(l, (size_t)n[0])))
        return oom(err);
    if ((rc = store_ledger_writes_each(l->sl, load_write, l, err)) ||
        (rc = load_keys_flush(l) ? oom(err) : PATRON_OK) ||
        (rc = store_ledger_lots_each(l->sl, load_lot, l, err)))
        return rc;
    if ((rc = store_ledger_postings_each(l->sl, load_posting, l, err)) ||
        (rc = store_ledger_quals_each(l->sl, load_qual, l, err)) ||
        (rc = store_ledger_tiers_each(l->sl, load_tier, l, err)) ||
        (rc = store_ledger_stock_each(l->sl, load_stock, l, err))) {
        if (rc == PATRON_ENOMEM)
            err_set(err, PATRON_ESTORE, "the ledger in the store is damaged or memory ran out "
                                        "(run 'patron ledger verify')");
        return rc == PATRON_ENOMEM ? PATRON_ESTORE : rc;
    }
    for (size_t i = 0; i < l->n_w; i++) {
        if (l->w[i].p0 == NIL)
            l->w[i].p0 = 0;
        derive(l, &l->w[i]);
    }
    l->mark_w = l->n_w, l->mark_p = l->n_p, l->mark_q = l->n_q, l->mark_t = l->n_t;
    l->token = token;
    l->loaded = 1;
    l->epoch++;
    for (size_t i = 0; i < l->n_ch; i++) /* loading lists nothing: the epoch says it all */
        l->m[l->changed[i]].changed = 0;
    l->n_ch = 0;
    l->ch_lost = 0;
    return PATRON_OK;
}

static int refresh(ledger *l, patron_error *err)
{
    uint64_t tok;
    int rc = store_ledger_token_get(l->sl, &tok, err);
    if (rc)
        return rc;
    if (l->loaded && tok == l->token && l->n_m >= l->db->n_members)
        return PATRON_OK;
    if (l->loaded && tok == l->token)
        return member_ensure(l, l->db->n_members - 1) ? oom(err) : PATRON_OK; /* n_members > n_m >= 0 */
    return load(l, tok, err);
}

static int ensure_fresh(ledger *l, patron_error *err)
{
    if (store_ledger_in_txn(l->sl))
        return refresh(l, err);
    int rc = store_read_begin(l->db->st, err);
    if (rc)
        return rc;
    rc = refresh(l, err);
    store_read_end(l->db->st);
    return rc;
}

int ledger_get(patron_db *db, ledger **out, patron_error *err)
{
    ledger *l = db->loyalty;
    if (!l) {
        l = mem_calloc(1, sizeof *l);
        if (!l)
            return oom(err);
        l->db = db;
        l->durable = 1;
        l->next_p = l->next_q = l->next_t = 1;
        l->max_ts = INT64_MIN;
        l->exp_version = -1;
        l->window_on = ledger_window_default;
        int rc = store_ledger_open(db->st, &l->sl, err);
        if (rc) {
            mem_free(l);
            return rc;
        }
        db->loyalty = l;
        db->loyalty_free = ledger_free_cb;
    }
    int rc = ensure_fresh(l, err);
    if (rc)
        return rc;
    *out = l;
    return PATRON_OK;
}

void ledger_invalidate(ledger *l)
{
    l->loaded = 0;
}

const program *ledger_program(ledger *l, int64_t *version)
{
    if (version)
        *version = l->prog_version;
    return l->prog;
}

void ledger_set_chunk_format(ledger *l, int fmt)
{
    l->chunk_fmt = fmt;
    store_ledger_chunk_free(l->chunk);
    l->chunk = NULL;
}

void ledger_set_durable(ledger *l, int durable)
{
    l->durable = durable;
}

/* ---- writing ------------------------------------------------------------------------ */

static uint64_t new_token(ledger *l)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t v[5] = {(int64_t)getpid(), (int64_t)ts.tv_sec, (int64_t)ts.tv_nsec,
                    (int64_t)++l->counter, (int64_t)l->token};
    uint64_t t = XXH3_64bits(v, sizeof v);
    return t ? t : 1;
}

/* A flush with at least this many writes stores its journal rows as one chunk
 * (store_ledger.h): an import batch.  Below it, rows: a single write stays one small
 * row per table.  64: chunks cost one row plus encoding; at 64 writes a chunk is already
 * several times cheaper than the 250-odd rows it replaces (bench/ledger.sh). */
#define LEDGER_CHUNK_MIN 64

/* Whether lot li is a lot the chunk being flushed creates and its remaining points are
 * still that credit: the store derives such a lot from the posting, no row needed. */
static int lot_from_chunk(ledger *l, uint32_t li)
{
    if (l->mark_p >= l->n_p)
        return 0;
    const llot *x = &l->lot[li];
    int64_t first = l->p[l->mark_p].seq;
    if (x->id < first || x->id > l->p[l->n_p - 1].seq)
        return 0;
    const lp *c = &l->p[l->mark_p + (size_t)(x->id - first)];
    return c->seq == x->id && c->lot == li && c->credit == LEDGER_ACC_MEMBER && c->amount == x->remaining;
}

static void write_rec(const ledger *l, const lw *w, store_ledger_write *sw)
{
    *sw = (store_ledger_write){w->seq, l->arena + w->key_off, w->key_len, w->kind,
                               w->member == NIL ? -1 : (int64_t)w->member, w->ts,
                               w_ref(l, w), w->ref_len, w->points, w->money,
                               w->shortfall, w->balance, l->pay + w->pay_off, w->pay_len};
}

static void posting_rec(const ledger *l, const lp *p, store_ledger_posting *sp)
{
    const llot *x = &l->lot[p->lot];
    *sp = (store_ledger_posting){p->seq, l->w[p->write].seq, p->member, p->debit, p->credit,
                                 p->amount, x->id, p->ts, x->expires, 0};
}

static const char *tier_name(const ledger *l, int tier)
{
    return l->prog && tier < (int)l->prog->n_tiers ? l->prog->tiers[tier].name : "";
}

/* Builds the journal rows of writes [w0, w1) of this flush into c; *p, *q, *t walk the
 * postings, qualification rows and tier changes (made in write order).  Reads the
 * ledger's memory only.  0, or -1 when out of memory. */
static int chunk_build(const ledger *l, store_ledger_chunk *c, size_t w0, size_t w1, size_t *p,
                       size_t *q, size_t *t)
{
    int bad = 0;
    store_ledger_chunk_begin(c);
    for (size_t i = w0; i < w1 && !bad; i++) {
        store_ledger_write sw;
        write_rec(l, &l->w[i], &sw);
        pack_key(&sw);
        bad = store_ledger_chunk_write(c, &sw);
    }
    for (; *p < l->n_p && l->p[*p].write < w1 && !bad; (*p)++) {
        store_ledger_posting sp;
        posting_rec(l, &l->p[*p], &sp);
        bad = store_ledger_chunk_posting(c, &sp);
    }
    for (; *q < l->n_q && l->q[*q].write < w1 && !bad; (*q)++) {
        const lq *x = &l->q[*q];
        store_ledger_qual sq = {x->seq, l->w[x->write].seq, x->member, x->ts, x->points, x->spend};
        bad = store_ledger_chunk_qual(c, &sq);
    }
    for (; *t < l->n_t && l->t[*t].write < w1 && !bad; (*t)++) {
        const lt *x = &l->t[*t];
        const char *name = tier_name(l, x->tier);
        store_ledger_tier st = {x->seq, l->w[x->write].seq, x->member, x->ts, name, strlen(name)};
        bad = store_ledger_chunk_tier(c, &st);
    }
    return bad ? -1 : 0;
}

/* Writes per chunk at most: big enough that a chunk's row costs nothing per write,
 * small enough that its blobs stay in cache (a single blob for a whole import of
 * millions of orders made SQLite copy it around). */
#define LEDGER_CHUNK_MAX 4096

/*
 * A flush of many chunks builds them on a second thread while this one stores them
 * (building is most of the work, and only reads memory): chunk i is built into ring
 * slot i % CHUNK_RING once chunk i - CHUNK_RING is stored.
 */
#define CHUNK_RING       4
#define CHUNK_THREAD_MIN 4 /* chunks in a flush before a builder thread pays */
typedef struct chunk_pipe {
    const ledger *l;
    store_ledger_chunk *c[CHUNK_RING];
    size_t w0, w1, p, q, t; /* the writes of the flush; the builder's cursors */
    size_t n, built, stored;
    int stop, bad;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} chunk_pipe;

/* The end of the chunk that starts at write a, in a flush of writes up to w1. */
static size_t chunk_stop(size_t a, size_t w1)
{
    return w1 - a > LEDGER_CHUNK_MAX ? a + LEDGER_CHUNK_MAX : w1;
}

static void *chunk_builder(void *arg)
{
    chunk_pipe *cp = arg;
    for (size_t i = 0; i < cp->n; i++) {
        pthread_mutex_lock(&cp->mu);
        while (!cp->stop && i - cp->stored >= CHUNK_RING)
            pthread_cond_wait(&cp->cv, &cp->mu);
        int stop = cp->stop;
        pthread_mutex_unlock(&cp->mu);
        if (stop)
            break;
        size_t a = cp->w0 + i * LEDGER_CHUNK_MAX;
        int bad = chunk_build(cp->l, cp->c[i % CHUNK_RING], a, chunk_stop(a, cp->w1), &cp->p,
                              &cp->q, &cp->t);
        pthread_mutex_lock(&cp->mu);
        if (bad)
            cp->bad = cp->stop = 1;
        else
            cp->built = i + 1;
        pthread_cond_broadcast(&cp->cv);
        pthread_mutex_unlock(&cp->mu);
        if (bad)
            break;
    }
    return NULL;
}

/* Stores the writes [w0, w1) as chunks, built on a second thread.  1: no thread could be
 * started (nothing done); else 0 or a patron status. */
static int flush_chunks_threaded(ledger *l, size_t w0, size_t w1, patron_error *err)
{
    chunk_pipe cp;
    memset(&cp, 0, sizeof cp);
    cp.l = l;
    cp.w0 = w0;
    cp.w1 = w1;
    cp.p = l->mark_p, cp.q = l->mark_q, cp.t = l->mark_t;
    cp.n = (w1 - w0 + LEDGER_CHUNK_MAX - 1) / LEDGER_CHUNK_MAX;
    int rc = PATRON_OK;
    for (int k = 0; k < CHUNK_RING; k++)
        if (!(cp.c[k] = store_ledger_chunk_new(l->chunk_fmt)))
            rc = oom(err);
    pthread_t th;
    int started = 0;
    if (rc == PATRON_OK) {
        pthread_mutex_init(&cp.mu, NULL);
        pthread_cond_init(&cp.cv, NULL);
        started = pthread_create(&th, NULL, chunk_builder, &cp) == 0;
        if (!started) {
            pthread_mutex_destroy(&cp.mu);
            pthread_cond_destroy(&cp.cv);
            rc = 1;
        }
    }
    for (size_t i = 0; started && i < cp.n && rc == PATRON_OK; i++) {
        pthread_mutex_lock(&cp.mu);
        while (!cp.bad && cp.built <= i)
            pthread_cond_wait(&cp.cv, &cp.mu);
        int bad = cp.bad;
        pthread_mutex_unlock(&cp.mu);
        rc = bad ? oom(err) : store_ledger_chunk_end(l->sl, cp.c[i % CHUNK_RING], err);
        pthread_mutex_lock(&cp.mu);
        cp.stored = i + 1;
        if (rc != PATRON_OK)
            cp.stop = 1;
        pthread_cond_broadcast(&cp.cv);
        pthread_mutex_unlock(&cp.mu);
    }
    if (started) {
        pthread_join(th, NULL);
        pthread_mutex_destroy(&cp.mu);
        pthread_cond_destroy(&cp.cv);
    }
    for (int k = 0; k < CHUNK_RING; k++)
        store_ledger_chunk_free(cp.c[k]);
    return rc;
}

/* Stores the writes [w0, w1) as chunks on this thread. */
static int flush_chunks(ledger *l, size_t w0, size_t w1, patron_error *err)
{
    if (!l->chunk && !(l->chunk = store_ledger_chunk_new(l->chunk_fmt)))
        return oom(err);
    size_t cp = l->mark_p, cq = l->mark_q, ct = l->mark_t;
    int rc = PATRON_OK;
    for (size_t a = w0; a < w1 && rc == PATRON_OK; a += LEDGER_CHUNK_MAX)
        rc = chunk_build(l, l->chunk, a, chunk_stop(a, w1), &cp, &cq, &ct)
                     ? oom(err)
                     : store_ledger_chunk_end(l->sl, l->chunk, err);
    return rc;
}


/* The ledger's thread's side of a shared windowed batch: built, the pool and lot_rows
 * are the importer's too then (ledger_batch_store_shared); otherwise nothing to guard. */
static void sh_lock(ledger *l)
{
    if (l->shared)
        pthread_mutex_lock(&l->sh_mu);
}

static void sh_unlock(ledger *l)
{
    if (l->shared)
        pthread_mutex_unlock(&l->sh_mu);
}

/* Stores lot rows a window kept (window_keep). */
static int lot_rows_put(ledger *l, const store_ledger_lot *rows, size_t n, patron_error *err)
{
    int rc = PATRON_OK;
    for (size_t k = 0; k < n && rc == PATRON_OK; k++)
        rc = store_ledger_lot_put(l->sl, &rows[k], err);
    return rc;
}

/* Index i of an array of which [from, to) moved down to from - by: where it is now. */
static uint32_t moved(uint32_t i, size_t from, size_t to, size_t by)
{
    return i != NIL && i >= from && i < to ? (uint32_t)(i - by) : i;
}

/*
 * After a window (window_encode): the batch's lots and qualification rows of every
 * member but the one in progress (cur) are dropped, and cur's moved down to where the
 * batch's began, so that these arrays stay the size of a window instead of growing by a
 * lot and a row an order (fresh memory: decision 0008).  A windowed batch posts member by
 * member (ledger_batch_window), so nothing reads a finished member's again; its lots
 * that still need a row (spent since their credit, dirty and not derivable from their
 * chunk: window_encode left only those dirty) are kept as rows, stored by the flush.
 * cur's are a suffix of the batch's (made last), linked newest first down to those from
 * before the batch, which stay where they are.
 */
static int window_keep(ledger *l, uint32_t cur)
{
    size_t end = l->n_lot, k = end, endq = l->n_q, kq = endq;
    while (k > l->win_lot && l->lot[k - 1].member == cur)
        k--;
    while (kq > l->win_q && l->q[kq - 1].member == cur)
        kq--;
    size_t by = k - l->win_lot, byq = kq - l->win_q, o = 0, kept = 0;
    for (size_t d = 0; d < l->n_dl; d++) {
        uint32_t li = l->dirty_lots[d];
        if (li >= l->win_lot && li < k) { /* a finished member's: its row now */
            const llot *x = &l->lot[li];
            sh_lock(l);
            int grown = MEM_GROW(l->lot_rows, l->cap_lot_rows, l->n_lot_rows + 1) == 0;
            if (grown)
                l->lot_rows[l->n_lot_rows++] =
                    (store_ledger_lot){x->id, x->member, x->ts, x->expires, x->remaining};
            sh_unlock(l);
            if (!grown)
                return -1;
            continue;
        }
        l->dirty_lots[o++] = moved(li, k, end, by);
        if (d < l->dl_kept)
            kept = o;
    }
    l->n_dl = o;
    l->dl_kept = kept;
    if (by) {
        memmove(&l->lot[l->win_lot], &l->lot[k], (end - k) * sizeof *l->lot);
        l->n_lot = end - by;
        for (size_t i = l->win_lot; i < l->n_lot; i++)
            l->lot[i].prev = moved(l->lot[i].prev, k, end, by);
        l->m[cur].lot = moved(l->m[cur].lot, k, end, by);
#ifdef PATRON_POISON /* a stale index reads garbage (times far ahead, links out of bounds) */
        memset(&l->lot[l->n_lot], 0x25, (end - l->n_lot) * sizeof *l->lot);
#endif
    }
    if (byq) {
        memmove(&l->q[l->win_q], &l->q[kq], (endq - kq) * sizeof *l->q);
        l->n_q = l->mark_q = endq - byq;
        for (size_t i = l->win_q; i < l->n_q; i++)
            l->q[i].prev = moved(l->q[i].prev, kq, endq, byq);
        l->m[cur].qual = moved(l->m[cur].qual, kq, endq, byq);
#ifdef PATRON_POISON
        memset(&l->q[l->n_q], 0x25, (endq - l->n_q) * sizeof *l->q);
#endif
    }
    return 0;
}

/*
 * A windowed batch's full window: the writes [mark_w, n_w) (LEDGER_CHUNK_MAX of them,
 * the chunk a flush would cut there) become a journal chunk in memory; lots their
 * postings created and nothing changed since need no row (as in flush); then the
 * window's write and posting records, keys and payloads are dropped, and qualification
 * and tier rows count as written (they stay: tiers read them).  Postings' member lists
 * now lead to dropped records: nothing walks them during the batch (ledger_batch_window
 * checks), and the ledger is reloaded after it.
 */
static int window_encode(ledger *l)
{
    store_ledger_chunk *c = NULL;
    sh_lock(l);
    if (l->n_pool)
        c = l->pool[--l->n_pool];
    sh_unlock(l);
    if (!c)
        c = store_ledger_chunk_new(l->chunk_fmt);
    size_t p = l->mark_p, q = l->mark_q, t = l->mark_t;
    if (!c || chunk_build(l, c, l->mark_w, l->n_w, &p, &q, &t) != 0) {
        store_ledger_chunk_free(c);
        return -1;
    }
    PATRON_ASSERT(p == l->n_p && q == l->n_q && t == l->n_t);
    sh_lock(l);
    int grown = MEM_GROW(l->built, l->cap_built, l->n_built + 1) == 0;
    if (grown)
        l->built[l->n_built++] = c;
    if (l->shared)
        pthread_cond_broadcast(&l->sh_cv);
    sh_unlock(l);
    if (!grown) {
        store_ledger_chunk_free(c);
        return -1;
    }
    __atomic_add_fetch(&windows_made, 1, __ATOMIC_RELAXED);
    /* A lot this window's chunk can derive needs no row; the others stay dirty.  A lot an
     * earlier window kept has its credit in an earlier chunk (or before the batch), so it
     * stays kept: only the lots dirtied since are checked (rechecking them all made the
     * windows quadratic in the batch's returns). */
    size_t keep = l->dl_kept;
    for (size_t k = l->dl_kept; k < l->n_dl; k++) {
        uint32_t li = l->dirty_lots[k];
        if (lot_from_chunk(l, li))
            l->lot[li].dirty = 0;
        else
            l->dirty_lots[keep++] = li;
    }
    l->n_dl = l->dl_kept = keep;
    uint32_t cur = l->w[l->n_w - 1].member;
    l->n_w = l->mark_w;
    l->n_p = l->mark_p;
    l->mark_q = l->n_q;
    l->mark_t = l->n_t;
    l->arena_len = l->win_arena;
    l->pay_len = 0;
    return window_keep(l, cur);
}

int ledger_batch_window_step(ledger *l, patron_error *err)
{
    if (!l->window || l->n_w - l->mark_w < LEDGER_CHUNK_MAX)
        return PATRON_OK;
    return window_encode(l) ? oom(err) : PATRON_OK;
}

static int flush(ledger *l, patron_error *err)
{
    int rc = PATRON_OK;
    int chunk = l->n_w - l->mark_w + l->n_built * LEDGER_CHUNK_MAX >= LEDGER_CHUNK_MIN;
    double t0 = chunk ? trace_now() : 0;
    for (size_t k = l->n_stored; k < l->n_built && rc == PATRON_OK; k++) /* a windowed batch's */
        rc = store_ledger_chunk_end(l->sl, l->built[k], err);
    built_free(l);
    if (chunk && rc == PATRON_OK) {
        rc = 1;
        if (l->n_w - l->mark_w >= (size_t)CHUNK_THREAD_MIN * LEDGER_CHUNK_MAX)
            rc = flush_chunks_threaded(l, l->mark_w, l->n_w, err);
        if (rc == 1)
            rc = flush_chunks(l, l->mark_w, l->n_w, err);
        t0 = trace_step("ledger: journal chunks", t0);
    }
    for (size_t i = l->mark_w; i < l->n_w && rc == PATRON_OK && !chunk; i++) {
        store_ledger_write sw;
        char full[1024];
        write_rec(l, &l->w[i], &sw);
        unpack_payload(l, &sw, full, sizeof full); /* rows keep the text */
        rc = store_ledger_write_put(l->sl, &sw, err);
    }
    for (size_t i = l->mark_p; i < l->n_p && rc == PATRON_OK && !chunk; i++) {
        store_ledger_posting sp;
        posting_rec(l, &l->p[i], &sp);
        sp.hash = store_ledger_posting_hash(&sp); /* rows keep it; chunks have a checksum */
        rc = store_ledger_posting_put(l->sl, &sp, err);
    }
    for (size_t i = l->mark_q; i < l->n_q && rc == PATRON_OK && !chunk; i++) {
        lq *q = &l->q[i];
        store_ledger_qual sq = {q->seq, l->w[q->write].seq, q->member, q->ts, q->points, q->spend};
        rc = store_ledger_qual_put(l->sl, &sq, err);
    }
    for (size_t i = l->mark_t; i < l->n_t && rc == PATRON_OK && !chunk; i++) {
        lt *t = &l->t[i];
        const char *name = tier_name(l, t->tier);
        store_ledger_tier st = {t->seq, l->w[t->write].seq, t->member, t->ts, name, strlen(name)};
        rc = store_ledger_tier_put(l->sl, &st, err);
    }
    if (rc == PATRON_OK) /* a windowed batch's */
        rc = lot_rows_put(l, l->lot_rows, l->n_lot_rows, err);
    l->n_lot_rows = 0;
    for (size_t k = 0; k < l->n_dl && rc == PATRON_OK; k++) {
        llot *x = &l->lot[l->dirty_lots[k]];
        store_ledger_lot sx = {x->id, x->member, x->ts, x->expires, x->remaining};
        if (!(chunk && lot_from_chunk(l, l->dirty_lots[k])))
            rc = store_ledger_lot_put(l->sl, &sx, err);
        x->dirty = 0;
    }
    for (size_t k = 0; k < l->n_stock && rc == PATRON_OK; k++)
        if (l->stock[k].dirty) {
            rc = store_ledger_stock_put(l->sl, l->stock[k].id, strlen(l->stock[k].id),
                                        l->stock[k].used, err);
            l->stock[k].dirty = 0;
        }
    if (chunk)
        trace_step("ledger: lot and stock rows", t0);
    uint64_t tok = new_token(l);
    if (rc == PATRON_OK)
        rc = store_ledger_token_set(l->sl, tok, err);
    if (rc == PATRON_OK)
        l->token = tok;
    l->n_dl = l->dl_kept = 0;
    l->pay_len = 0;
    l->mark_w = l->n_w, l->mark_p = l->n_p, l->mark_q = l->n_q, l->mark_t = l->n_t;
    return rc;
}

static int op_begin(ledger *l, op *o, patron_error *err)
{
    int rc;
    o->own = !store_ledger_in_txn(l->sl);
    if (o->own) {
        if (l->durable && (rc = store_ledger_synchronous(l->sl, 1, err)))
            return rc;
        if ((rc = store_begin(l->db->st, err))) {
            if (l->durable)
                store_ledger_synchronous(l->sl, 0, NULL);
            return rc;
        }
    } else if ((rc = store_ledger_savepoint(l->sl, err))) {
        return rc;
    }
    l->mutated = 0;
    rc = refresh(l, err);
    if (rc) {
        if (o->own) {
            store_rollback(l->db->st);
            if (l->durable)
                store_ledger_synchronous(l->sl, 0, NULL);
        } else {
            store_ledger_rollback_to(l->sl);
        }
        l->loaded = 0;
    }
    return rc;
}

static int op_end(ledger *l, op *o, int rc, patron_error *err)
{
    if (rc == PATRON_OK && l->mutated)
        rc = flush(l, err);
    if (rc == PATRON_OK) {
        rc = o->own ? store_commit(l->db->st, err) : store_ledger_release(l->sl, err);
        if (rc) {
            if (o->own)
                store_rollback(l->db->st);
            else
                store_ledger_rollback_to(l->sl);
        }
    } else if (o->own) {
        store_rollback(l->db->st);
    } else {
        store_ledger_rollback_to(l->sl);
    }
    if (rc != PATRON_OK && l->mutated)
        l->loaded = 0; /* memory holds what the store did not keep: reload next time */
    if (o->own && l->durable)
        store_ledger_synchronous(l->sl, 0, NULL);
    l->mutated = 0;
    if (rc == PATRON_OK && o->own)
        loyalty_after_commit(l->db); /* (an import's batch: the importer, after its commit) */
    return rc;
}

int ledger_group_begin(ledger *l, patron_error *err)
{
    int rc = store_begin(l->db->st, err);
    if (rc == PATRON_OK && (rc = refresh(l, err)) != PATRON_OK)
        store_rollback(l->db->st);
    return rc;
}

int ledger_group_end(ledger *l, int commit, patron_error *err)
{
    int rc = PATRON_OK;
    if (commit) {
        rc = store_commit(l->db->st, err);
        if (rc)
            store_rollback(l->db->st);
    } else {
        store_rollback(l->db->st);
    }
    if (!commit || rc)
        l->loaded = 0;
    else
        loyalty_after_commit(l->db);
    return rc;
}

static void result_of(ledger *l, size_t wi, int replayed, ledger_result *res)
{
    if (!res)
        return;
    const lw *w = &l->w[wi];
    res->replayed = replayed;
    res->kind = w->kind;
    res->seq = w->seq;
    res->member = w->member == NIL ? -1 : (int64_t)w->member;
    res->ts = w->ts;
    res->points = w->points;
    res->shortfall = w->shortfall;
    res->money = w->money;
    res->balance = w->balance;
    snprintf(res->ref, sizeof res->ref, "%.*s", (int)w->ref_len, w_ref(l, w));
}

/* Shows a key to the user without the internal prefix of caller keys ("k:"). */
static const char *shown_key(const char *key)
{
    return strncmp(key, "k:", 2) == 0 ? key + 2 : key;
}

/* The key is stored: same payload -> the first result (1); different -> refused,
 * naming the first field that differs.  Payloads are "field=value\n" lines. */
static int replay(ledger *l, int wi, const char *key, size_t keyn, const char *payload,
                  ledger_result *res, patron_error *err)
{
    store_ledger_write sw;
    int f = store_ledger_write_get(l->sl, key, keyn, &sw, err);
    if (f == 0)
        f = store_ledger_write_get_seq(l->sl, l->w[wi].seq, &sw, err);
    if (f < 0)
        return f;
    if (f == 0) /* in memory but not stored: the memory copy is ahead of the store */
        return err_set(err, PATRON_EINTERNAL, "key '%s' is in memory but not in the store",
                       shown_key(key));
    char full[1024];
    unpack_payload(l, &sw, full, sizeof full);
    size_t pn = strlen(payload);
    if (sw.payloadn == pn && memcmp(sw.payload, payload, pn) == 0) {
        result_of(l, (size_t)wi, 1, res);
        return 1;
    }
    /* Find the field. */
    const char *a = payload;
    while (*a) {
        const char *eol = strchr(a, '\n');
        size_t ln = eol ? (size_t)(eol - a) : strlen(a);
        const char *eq = memchr(a, '=', ln);
        size_t nn = eq ? (size_t)(eq - a) : ln;
        /* the same field in the stored payload */
        const char *b = sw.payload, *end = sw.payload + sw.payloadn;
        const char *sv = NULL;
        size_t svn = 0;
        while (b < end) {
            const char *e2 = memchr(b, '\n', (size_t)(end - b));
            size_t l2 = e2 ? (size_t)(e2 - b) : (size_t)(end - b);
            if (l2 > nn && memcmp(b, a, nn) == 0 && b[nn] == '=') {
                sv = b + nn + 1;
                svn = l2 - nn - 1;
                break;
            }
            b += l2 + 1;
        }
        size_t vn = eq ? ln - nn - 1 : 0;
        if (!sv || svn != vn || memcmp(sv, eq + 1, vn) != 0)
            return err_set(err, PATRON_EINPUT,
                           "key '%s' was already used with a different '%.*s' ('%.*s', now '%.*s'); "
                           "a retry must repeat the request exactly",
                           shown_key(key), (int)nn, a, (int)(svn > 80 ? 80 : svn), sv ? sv : "",
                           (int)(vn > 80 ? 80 : vn), eq ? eq + 1 : "");
        a += ln + (eol ? 1 : 0);
    }
    return err_set(err, PATRON_EINPUT, "key '%s' was already used for a different request",
                   shown_key(key));
}

static int replay_rc(int r)
{
    return r < 0 ? r : PATRON_OK;
}

static int need_program(ledger *l, patron_error *err)
{
    if (!l->prog)
        return err_set(err, PATRON_EINPUT,
                       "no loyalty program is configured (apply one with 'patron program apply FILE')");
    return PATRON_OK;
}

static int member_check(ledger *l, uint32_t member, patron_error *err)
{
    if (member >= l->db->n_members + l->n_new)
        return err_set(err, PATRON_ENOTFOUND, "no member with index %u", member);
    return member_ensure(l, member) ? oom(err) : PATRON_OK;
}

/* ---- exact earning arithmetic ------------------------------------------------------------ */

__extension__ typedef __int128 i128;
typedef struct rat {
    i128 n, d; /* d > 0, reduced */
} rat;

static i128 gcd128(i128 a, i128 b)
{
    if (a < 0)
        a = -a;
    if (b < 0)
        b = -b;
    while (b) {
        i128 t = a % b;
        a = b;
        b = t;
    }
    return a ? a : 1;
}

/* r *= num / den (den > 0); -1 on overflow of 127 bits. */
static int rat_mul(rat *r, int64_t num, int64_t den)
{
    i128 g1 = gcd128(r->n, den), g2 = gcd128(num, r->d), n, d;
    if (__builtin_mul_overflow(r->n / g1, (i128)num / g2, &n) ||
        __builtin_mul_overflow(r->d / g2, (i128)den / g1, &d))
        return -1;
    r->n = n;
    r->d = d;
    return 0;
}

static int rat_add(rat *a, const rat *b)
{
    i128 g = gcd128(a->d, b->d), x, y, n, d;
    if (__builtin_mul_overflow(a->n, b->d / g, &x) || __builtin_mul_overflow(b->n, a->d / g, &y) ||
        __builtin_add_overflow(x, y, &n) || __builtin_mul_overflow(a->d / g, b->d, &d))
        return -1;
    i128 h = gcd128(n, d);
    a->n = n / h;
    a->d = d / h;
    return 0;
}

/* floor(r) into int64; -1 when it does not fit. */
static int rat_floor(const rat *r, int64_t *out)
{
    i128 q = r->n / r->d;
    if ((r->n % r->d) != 0 && r->n < 0)
        q--;
    if (q > INT64_MAX || q < INT64_MIN)
        return -1;
    *out = (int64_t)q;
    return 0;
}

static int name_in(const char *s, size_t n, char *const *list, size_t k)
{
    for (size_t i = 0; i < k; i++)
        if (strlen(list[i]) == n && memcmp(list[i], s, n) == 0)
            return 1;
    return 0;
}

/* Whether promotion pr applies to the member's order at ts (before categories). */
static int promo_applies(ledger *l, const program_promo *pr, uint32_t member, int64_t ts,
                         int64_t amount, int tier)
{
    if (ts < pr->from || ts >= pr->to || amount < pr->min_amount)
        return 0;
    if (pr->n_members) {
        size_t n;
        const char *id = member_name(l, member, &n);
        if (!name_in(id, n, pr->members, pr->n_members))
            return 0;
    }
    if (pr->n_tiers) {
        int ok = 0;
        for (size_t k = 0; k < pr->n_tiers && !ok; k++)
            ok = pr->tiers[k] == tier;
        if (!ok)
            return 0;
    }
    return !pr->rule || l->rule_ok[pr - l->prog->promos];
}

/* Evaluates, once per order, the rules of the promotions whose other conditions hold
 * (rule_ok[k]; promo_applies reads it).  The rule sees the member just before the order. */
static int order_rules(ledger *l, const ledger_order *o, int tier, patron_error *err)
{
    const program *pg = l->prog;
    if (!pg->n_rule_promos)
        return PATRON_OK;
    PATRON_ASSERT(!l->detached); /* rules read the member view: ledger_batch_begin_detached */
    if (MEM_GROW(l->rule_ok, l->cap_rule_ok, pg->n_promos) != 0)
        return oom(err);
    for (size_t k = 0; k < pg->n_promos; k++)
        l->rule_ok[k] = 1;
    for (size_t k = 0; k < pg->n_promos; k++) {
        const program_promo *pr = &pg->promos[k];
        if (!pr->rule || !promo_applies(l, pr, o->member, o->ts, o->amount, tier))
            continue; /* promo_applies ran with rule_ok[k] = 1: the other conditions */
        int holds = 0;
        int rc = promo_rule_holds(&l->rules, l->db, pg, k, o->member, o->ts, &holds, err);
        if (rc)
            return rc;
        l->rule_ok[k] = (uint8_t)holds;
    }
    return PATRON_OK;
}

/* Points of an order, SPEC §5: floor(Σ items amount x rate x item multiplier x matching
 * category promotions, x tier multiplier x order promotions) + bonuses; exact, as a
 * fraction reduced as it goes (any number of promotions, any sizes). */
/* An item's multiplier, from the caller's `known` when given (ledger_batch_earn_known). */
static int64_t item_mult(const program *pg, const ledger_order *o, const ledger_item_known *known,
                         size_t i)
{
    const ledger_item *it = &o->items[i];
    return known ? known[i].mult : program_item_mult(pg, it->sku, it->skun, it->category, it->categoryn);
}

static int order_points_exact(ledger *l, const ledger_order *o, const ledger_item_known *known,
                              int tier, int64_t *out, patron_error *err)
{
    const program *pg = l->prog;
    rat sum = {0, 1};
    int64_t bonus = 0;
    int ovf = 0;
    size_t nitems = o->items ? o->n_items : 0;
    for (size_t i = 0; i < nitems && !ovf; i++) {
        const ledger_item *it = &o->items[i];
        if (it->amount <= 0)
            continue;
        rat x = {it->amount, 1};
        ovf |= rat_mul(&x, pg->rate, (int64_t)PATRON_MONEY_SCALE * PROGRAM_SCALE);
        ovf |= rat_mul(&x, item_mult(pg, o, known, i), PROGRAM_SCALE);
        for (size_t k = 0; k < pg->n_promos && !ovf; k++) {
            const program_promo *pr = &pg->promos[k];
            if (pr->n_categories && name_in(it->category, it->categoryn, pr->categories, pr->n_categories) &&
                promo_applies(l, pr, o->member, o->ts, o->amount, tier))
                ovf |= rat_mul(&x, pr->mult, PROGRAM_SCALE);
        }
        ovf |= rat_add(&sum, &x);
    }
    if (!nitems && o->amount > 0) {
        sum.n = o->amount;
        ovf |= rat_mul(&sum, pg->rate, (int64_t)PATRON_MONEY_SCALE * PROGRAM_SCALE);
    }
    if (pg->n_tiers && tier < (int)pg->n_tiers)
        ovf |= rat_mul(&sum, pg->tiers[tier].mult, PROGRAM_SCALE);
    for (size_t k = 0; k < pg->n_promos && !ovf; k++) {
        const program_promo *pr = &pg->promos[k];
        if (!promo_applies(l, pr, o->member, o->ts, o->amount, tier))
            continue;
        int match = !pr->n_categories;
        for (size_t i = 0; i < nitems && !match; i++)
            match = name_in(o->items[i].category, o->items[i].categoryn, pr->categories, pr->n_categories);
        if (!match)
            continue;
        if (!pr->n_categories)
            ovf |= rat_mul(&sum, pr->mult, PROGRAM_SCALE);
        ovf |= num_add_i64(bonus, pr->bonus, &bonus);
    }
    int64_t pts = 0;
    if (ovf || rat_floor(&sum, &pts) != 0 || num_add_i64(pts, bonus, &pts) != 0)
        return err_set(err, PATRON_EINPUT, "points for order '%.*s' overflow", (int)o->idn, o->id);
    *out = pts < 0 ? 0 : pts;
    return PATRON_OK;
}

/* The same points, faster, for the common order no category promotion applies to:
 * every term then has the same denominator (money scale x PROGRAM_SCALE per factor), so
 * the sum is one 128-bit integer and the floor one division.  Equal to
 * order_points_exact whenever it answers; 1 = cannot (a category promotion applies, or
 * an intermediate would overflow): the caller falls back to the exact fractions. */
static int order_points_fast(ledger *l, const ledger_order *o, const ledger_item_known *known,
                             int tier, int64_t *out)
{
    const program *pg = l->prog;
    size_t nitems = o->items ? o->n_items : 0;
    for (size_t k = 0; k < pg->n_promos; k++) {
        const program_promo *pr = &pg->promos[k];
        if (!pr->n_categories || !promo_applies(l, pr, o->member, o->ts, o->amount, tier))
            continue;
        for (size_t i = 0; i < nitems; i++)
            if (name_in(o->items[i].category, o->items[i].categoryn, pr->categories, pr->n_categories))
                return 1;
    }
    i128 n = 0, d = (i128)PATRON_MONEY_SCALE * PROGRAM_SCALE * PROGRAM_SCALE, t;
    int ovf = 0;
    for (size_t i = 0; i < nitems; i++) {
        const ledger_item *it = &o->items[i];
        if (it->amount <= 0)
            continue;
        int64_t m = item_mult(pg, o, known, i);
        ovf |= __builtin_mul_overflow((i128)it->amount, (i128)m, &t) | __builtin_add_overflow(n, t, &n);
    }
    if (!nitems && o->amount > 0)
        n = (i128)o->amount * PROGRAM_SCALE;
    ovf |= __builtin_mul_overflow(n, (i128)pg->rate, &n);
    if (pg->n_tiers && tier < (int)pg->n_tiers)
        ovf |= __builtin_mul_overflow(n, (i128)pg->tiers[tier].mult, &n) |
               __builtin_mul_overflow(d, (i128)PROGRAM_SCALE, &d);
    int64_t bonus = 0;
    for (size_t k = 0; k < pg->n_promos && !ovf; k++) {
        const program_promo *pr = &pg->promos[k];
        if (pr->n_categories || !promo_applies(l, pr, o->member, o->ts, o->amount, tier))
            continue;
        ovf |= __builtin_mul_overflow(n, (i128)pr->mult, &n) |
               __builtin_mul_overflow(d, (i128)PROGRAM_SCALE, &d) | num_add_i64(bonus, pr->bonus, &bonus);
    }
    if (ovf || n / d > INT64_MAX)
        return 1;
    int64_t pts = (int64_t)(n / d); /* n >= 0: the quotient is the floor */
    if (num_add_i64(pts, bonus, &pts))
        return 1;
    *out = pts;
    return 0;
}

static int order_points(ledger *l, const ledger_order *o, const ledger_item_known *known, int tier,
                        int64_t *out, patron_error *err)
{
    int rc = order_rules(l, o, tier, err);
    if (rc)
        return rc;
    return order_points_fast(l, o, known, tier, out) == 0 ? PATRON_OK
                                                          : order_points_exact(l, o, known, tier, out, err);
}

/* Upgrade at once: after points or spend that count for qualification at ts. */
static int upgrade_check(ledger *l, uint32_t wi, uint32_t member, int64_t ts)
{
    const program *pg = l->prog;
    if (pg->n_tiers < 2)
        return 0;
    int cur = ledger_tier(l, member, ts);
    const lm *mm = &l->m[member];
    int64_t most = pg->basis == PROGRAM_BASIS_SPEND ? mm->pos_spend : mm->pos_points;
    if (cur + 1 >= (int)pg->n_tiers || most < pg->tiers[cur + 1].threshold)
        return 0; /* the top already, or not enough ever earned to reach the next tier */
    int64_t metric = ledger_qualifying(l, member, ts, pg->window, pg->basis == PROGRAM_BASIS_SPEND);
    int target = 0;
    for (size_t k = 0; k < pg->n_tiers; k++)
        if (metric >= pg->tiers[k].threshold)
            target = (int)k;
    if (target > cur)
        return add_tier(l, wi, member, ts, target);
    return 0;
}

/* ---- operations (inside an op) ------------------------------------------------------------ */

/* An earn's idempotency key, "order:ID", into key[EARN_KEY_CAP]: its length, or -1 when
 * the id is too long. */
#define EARN_KEY_CAP 320
static int earn_key(char *key, const char *id, size_t idn)
{
    if (idn + 6 >= EARN_KEY_CAP)
        return -1;
    memcpy(key, "order:", 6);
    memcpy(key + 6, id, idn);
    key[idn + 6] = '\0';
    return (int)(idn + 6);
}

static int earn_in(ledger *l, const ledger_order *o, const ledger_item_known *known,
                   ledger_result *res, patron_error *err)
{
    char key[EARN_KEY_CAP], payload[1024];
    int kn = earn_key(key, o->id, o->idn);
    if (kn < 0)
        return err_set(err, PATRON_EINPUT, "order id '%.40s...' is too long", o->id);
    /* (a windowed batch does not index its keys: with none stored, nothing to look up) */
    uint64_t kh = l->window && !l->n_keys ? 0 : key_hash(key, (size_t)kn);
    key_prefetch(l, kh); /* probed below, after the item hash: its miss overlaps that */
    int rc = member_check(l, o->member, err);
    if (rc)
        return rc;
    uint64_t ih = 0;
    for (size_t i = 0; o->items && i < o->n_items; i++) {
        const ledger_item *it = &o->items[i];
        int64_t v[1] = {it->amount};
        uint64_t hs = known ? known[i].skuh : XXH3_64bits(it->sku, it->skun);
        uint64_t hc = known ? known[i].categoryh : XXH3_64bits(it->category, it->categoryn);
        ih = ih * 31 + (hs ^ hc ^ XXH3_64bits(v, sizeof v));
    }
    int wi = l->n_keys ? find_key_h(l, key, (size_t)kn, kh) : -1;
    if (wi >= 0 && l->detached)
        return LEDGER_DEFER; /* the stored payload is read to compare */
    if (wi >= 0) {
        earn_payload(l, o->member, o->ts, o->amount, ih, payload, sizeof payload);
        return replay_rc(replay(l, wi, key, (size_t)kn, payload, res, err));
    }
    /* kept packed (unpack_payload) */
    char packed[EARN_PACKED_LEN];
    packed[0] = EARN_PACKED;
    for (int k = 0; k < 8; k++)
        packed[1 + k] = (char)(ih >> (8 * k));
    int tier = ledger_tier(l, o->member, o->ts);
    int64_t pts = 0;
    if ((rc = order_points(l, o, known, tier, &pts, err)))
        return rc;
    int64_t nw = add_write_n(l, LEDGER_EARN, key, (size_t)kn, kh, o->member, o->ts, key + 6, o->idn,
                             packed, sizeof packed);
    if (nw < 0)
        return oom(err);
    lw *w = &l->w[nw];
    w->points = pts;
    w->money = o->amount;
    if (pts > 0) {
        int64_t li = add_lot(l, o->member, o->ts, lot_expiry(l, o->ts));
        if (li < 0)
            return oom(err);
        int r = add_posting(l, (uint32_t)nw, LEDGER_ACC_ISSUED, LEDGER_ACC_MEMBER, pts, (uint32_t)li, o->ts);
        if (r == -2) {
            size_t mn;
            const char *mid = member_name(l, o->member, &mn);
            return err_set(err, PATRON_EINPUT, "order '%.*s': member '%.*s': balance overflows",
                           (int)o->idn, o->id, (int)mn, mid);
        }
        if (r)
            return oom(err);
    }
    if (add_qual(l, (uint32_t)nw, o->member, o->ts, pts, o->amount > 0 ? o->amount : 0) ||
        upgrade_check(l, (uint32_t)nw, o->member, o->ts))
        return oom(err);
    l->w[nw].balance = balance_after(l, o->member, o->ts);
    result_of(l, (size_t)nw, 0, res);
    return PATRON_OK;
}

/* The lot an earn created (NIL when it earned nothing). */
static uint32_t earn_lot(ledger *l, const lw *e)
{
    return e->np ? l->p[e->p0].lot : NIL;
}

static int return_in(ledger *l, const char *id, uint32_t member, int64_t ts, int64_t amount,
                     const char *original, ledger_result *res, patron_error *err)
{
    char key[320], payload[1024];
    size_t on = original ? strlen(original) : 0;
    int kn = snprintf(key, sizeof key, "return:%s", id);
    if (kn < 0 || (size_t)kn >= sizeof key)
        return err_set(err, PATRON_EINPUT, "return id '%.40s...' is too long", id);
    if (amount < 0 && num_mul_i64(amount, -1, &amount) != 0)
        return err_set(err, PATRON_EINPUT, "return '%s': amount overflows", id);
    int rc = member_check(l, member, err);
    if (rc)
        return rc;
    size_t mn;
    const char *mid = member_name(l, member, &mn);
    snprintf(payload, sizeof payload, "op=return\nmember=%.*s\nts=%lld\namount=%lld\noriginal=%.200s\n",
             (int)mn, mid, (long long)ts, (long long)amount, original ? original : "");
    int wi = find_key(l, key, (size_t)kn);
    if (wi >= 0 && l->detached)
        return LEDGER_DEFER;
    if (wi >= 0)
        return replay_rc(replay(l, wi, key, (size_t)kn, payload, res, err));
    lw *e = on ? write_by_key(l, "order:", original, on) : NULL;
    if (e && e->kind != LEDGER_EARN)
        e = NULL;
    size_t ei = e ? (size_t)(e - l->w) : 0;
    int64_t claw = 0;
    uint32_t from = member, first = NIL;
    if (e) {
        /* Proportional, cumulative: after returns totalling R of an order of amount A
         * that earned P, floor(P x min(R, A) / A) have been clawed back in all. */
        int64_t ret = e->returned, target = e->points;
        if (num_add_i64(ret, amount, &ret) != 0 || ret > e->money)
            ret = e->money;
        if (e->money > 0 && !(e->state & W_VOIDED))
            target = (int64_t)((i128)e->points * ret / e->money);
        else
            target = e->clawed; /* voided or nothing to proportion: nothing more */
        claw = target - e->clawed;
        if (claw < 0)
            claw = 0;
        from = e->member;
        first = earn_lot(l, e);
    } else {
        rat r = {amount, 1};
        if (rat_mul(&r, l->prog->rate, (int64_t)PATRON_MONEY_SCALE * PROGRAM_SCALE) ||
            rat_floor(&r, &claw))
            return err_set(err, PATRON_EINPUT, "return '%s': points overflow", id);
    }
    int64_t nw = add_write(l, LEDGER_RETURN, key, (size_t)kn, from, ts, original ? original : "", on,
                           payload);
    if (nw < 0)
        return oom(err);
    int64_t taken = 0;
    if (claw > 0 && (rc = take(l, (uint32_t)nw, from, claw, ts, LEDGER_ACC_ISSUED, first, &taken, err)))
        return rc;
    lw *w = &l->w[nw];
    w->points = taken;
    w->shortfall = claw - taken;
    if (e) {
        e = &l->w[ei]; /* the array may have moved */
        w->money = amount < e->money - e->returned ? amount : e->money - e->returned;
    } else {
        w->money = amount;
    }
    if (w->money < 0)
        w->money = 0;
    if (add_qual(l, (uint32_t)nw, from, ts, -claw, -w->money))
        return oom(err);
    derive(l, w);
    w->balance = balance_after(l, from, ts);
    result_of(l, (size_t)nw, 0, res);
    return PATRON_OK;
}

/* Puts back, into the same lots, what the target write's postings took from the member. */
static int restore(ledger *l, uint32_t wi, const lw *target, int64_t ts, int64_t *back,
                   patron_error *err)
{
    *back = 0;
    for (uint32_t k = 0; k < target->np; k++) {
        const lp p = l->p[target->p0 + k];
        if (p.debit != LEDGER_ACC_MEMBER)
            continue;
        if (add_posting(l, wi, p.credit, LEDGER_ACC_MEMBER, p.amount, p.lot, ts))
            return oom(err);
        *back += p.amount;
    }
    return PATRON_OK;
}

static int void_in(ledger *l, const char *id, int64_t ts, ledger_result *res, patron_error *err)
{
    char key[320], payload[512];
    size_t idn = strlen(id);
    int kn = snprintf(key, sizeof key, "void:%s", id);
    if (kn < 0 || (size_t)kn >= sizeof key)
        return err_set(err, PATRON_EINPUT, "void id '%.40s...' is too long", id);
    snprintf(payload, sizeof payload, "op=void\n"); /* the order id is the identity */
    int wi = find_key(l, key, (size_t)kn);
    if (wi >= 0)
        return replay_rc(replay(l, wi, key, (size_t)kn, payload, res, err));
    lw *t = write_by_key(l, "order:", id, idn);
    const char *tprefix = "order:";
    if (!t) {
        t = write_by_key(l, "return:", id, idn);
        tprefix = "return:";
    }
    if (!t) { /* nothing of it is in the ledger (e.g. stored before the program existed) */
        if (res)
            memset(res, 0, sizeof *res);
        return PATRON_OK;
    }
    size_t ti = (size_t)(t - l->w);
    char tkey[320];
    int tkn = snprintf(tkey, sizeof tkey, "%s%s", tprefix, id);
    int64_t nw = add_write(l, LEDGER_VOID, key, (size_t)kn, l->w[ti].member, ts, tkey, (size_t)tkn, payload);
    if (nw < 0)
        return oom(err);
    t = &l->w[ti];
    uint32_t member = t->member;
    int rc;
    int64_t moved = 0, shortfall = 0, qpts = 0, qspend = 0;
    if (t->state & W_VOIDED) {
        /* voided already (cannot happen through keys; kept for safety) */
    } else if (t->kind == LEDGER_EARN) {
        int64_t rest = t->points - t->clawed;
        if (rest > 0 && (rc = take(l, (uint32_t)nw, member, rest, ts, LEDGER_ACC_ISSUED, earn_lot(l, t), &moved, err)))
            return rc;
        shortfall = rest > moved ? rest - moved : 0;
        qpts = -(rest > 0 ? rest : 0);
        qspend = -(t->money - t->returned > 0 ? t->money - t->returned : 0);
        moved = -moved;
    } else if (t->kind == LEDGER_RETURN) {
        lw *e = t->ref_len ? write_by_key(l, "order:", w_ref(l, t), t->ref_len) : NULL;
        if (!(e && e->kind == LEDGER_EARN && (e->state & W_VOIDED))) {
            if ((rc = restore(l, (uint32_t)nw, &l->w[ti], ts, &moved, err)))
                return rc;
            t = &l->w[ti];
            qpts = t->points + t->shortfall;
            qspend = t->money;
        }
    }
    if (add_qual(l, (uint32_t)nw, member, ts, qpts, qspend))
        return oom(err);
    lw *w = &l->w[nw];
    w->points = moved;
    w->shortfall = shortfall;
    derive(l, w);
    w->balance = balance_after(l, member, ts);
    result_of(l, (size_t)nw, 0, res);
    return PATRON_OK;
}

/* Debits points from a member's spendable lots (redemptions, negative adjustments). */
static int spend_in(ledger *l, int kind, const char *key, size_t kn, uint32_t member, int64_t ts,
                    int64_t points, const char *ref, int to, const char *payload, int64_t *nw_out,
                    patron_error *err)
{
    int64_t avail;
    if (spendable(l, member, ts, NIL, &avail) < 0)
        return oom(err);
    if (avail < points) {
        size_t mn;
        const char *mid = member_name(l, member, &mn);
        return err_set(err, PATRON_EINPUT,
                       "member '%.*s' has %lld points at this time; %lld would overdraw the balance",
                       (int)mn, mid, (long long)avail, (long long)points);
    }
    int64_t nw = add_write(l, kind, key, kn, member, ts, ref, strlen(ref), payload), taken;
    if (nw < 0)
        return oom(err);
    int rc = take(l, (uint32_t)nw, member, points, ts, to, NIL, &taken, err);
    if (rc)
        return rc;
    PATRON_ASSERT(taken == points);
    l->w[nw].points = points;
    *nw_out = nw;
    return PATRON_OK;
}

/* Credits points in a new lot (adjustments and bonuses). */
static int credit_in(ledger *l, int kind, const char *key, size_t kn, uint32_t member, int64_t ts,
                     int64_t points, const char *ref, int from, const char *payload, int64_t *nw_out,
                     patron_error *err)
{
    int64_t nw = add_write(l, kind, key, kn, member, ts, ref, strlen(ref), payload);
    if (nw < 0)
        return oom(err);
    int64_t li = add_lot(l, member, ts, lot_expiry(l, ts));
    if (li < 0)
        return oom(err);
    int r = add_posting(l, (uint32_t)nw, from, LEDGER_ACC_MEMBER, points, (uint32_t)li, ts);
    if (r == -2)
        return err_set(err, PATRON_EINPUT, "%lld points overflow the member's balance", (long long)points);
    if (r)
        return oom(err);
    l->w[nw].points = points;
    *nw_out = nw;
    return PATRON_OK;
}

static int redeem_in(ledger *l, uint32_t member, const char *reward, int64_t points_given,
                     const char *key, size_t kn, int64_t now, ledger_result *res, patron_error *err)
{
    int rc = member_check(l, member, err);
    if (rc)
        return rc;
    size_t mn;
    const char *mid = member_name(l, member, &mn);
    char payload[1024];
    int catalog = points_given < 0;
    if (catalog) /* a retry may come later: its time is not part of the request */
        snprintf(payload, sizeof payload, "op=redeem\nmember=%.*s\nreward=%.200s\n", (int)mn, mid, reward);
    else
        snprintf(payload, sizeof payload, "op=redemption-event\nmember=%.*s\nreward=%.200s\npoints=%lld\nts=%lld\n",
                 (int)mn, mid, reward, (long long)points_given, (long long)now);
    int wi = find_key(l, key, kn);
    if (wi >= 0)
        return replay_rc(replay(l, wi, key, kn, payload, res, err));
    int64_t points = points_given;
    if (catalog) {
        int ri = program_reward_find(l->prog, reward, strlen(reward));
        if (ri < 0)
            return err_set(err, PATRON_ENOTFOUND, "no reward '%s' in the catalog (see 'patron rewards list')", reward);
        const program_reward *rw = &l->prog->rewards[ri];
        points = rw->points;
        lstock *st = stock_get(l, reward, strlen(reward), 0);
        if (rw->stock >= 0 && st && st->used >= rw->stock)
            return err_set(err, PATRON_EINPUT, "reward '%s' is out of stock", reward);
    } else if (points <= 0) {
        return err_set(err, PATRON_EINPUT, "redemption '%s': points must be positive", key);
    }
    int64_t nw;
    if ((rc = spend_in(l, catalog ? LEDGER_REDEEM : LEDGER_REDEEM_EVENT, key, kn, member, now, points,
                       reward, LEDGER_ACC_REDEEMED, payload, &nw, err)))
        return rc;
    if (catalog) {
        lstock *st = stock_get(l, reward, strlen(reward), 1);
        if (!st)
            return oom(err);
        st->used++;
        st->dirty = 1;
    }
    l->w[nw].balance = balance_after(l, member, now);
    result_of(l, (size_t)nw, 0, res);
    return PATRON_OK;
}

static int cancel_in(ledger *l, const char *ukey, int64_t now, ledger_result *res, patron_error *err)
{
    char rkey[320], key[320], payload[64];
    int rn = snprintf(rkey, sizeof rkey, "k:%s", ukey);
    int kn = snprintf(key, sizeof key, "cancel:%s", ukey);
    if (rn < 0 || (size_t)rn >= sizeof rkey || kn < 0 || (size_t)kn >= sizeof key)
        return err_set(err, PATRON_EINPUT, "key '%.40s...' is too long", ukey);
    snprintf(payload, sizeof payload, "op=cancel\n");
    int wi = find_key(l, key, (size_t)kn);
    if (wi >= 0)
        return replay_rc(replay(l, wi, key, (size_t)kn, payload, res, err));
    int ri = find_key(l, rkey, (size_t)rn);
    if (ri < 0 || l->w[ri].kind != LEDGER_REDEEM)
        return err_set(err, PATRON_ENOTFOUND, "no redemption was made with key '%s'", ukey);
    int64_t nw = add_write(l, LEDGER_CANCEL, key, (size_t)kn, l->w[ri].member, now, rkey, (size_t)rn, payload);
    if (nw < 0)
        return oom(err);
    int64_t back;
    int rc = restore(l, (uint32_t)nw, &l->w[ri], now, &back, err);
    if (rc)
        return rc;
    const lw *r = &l->w[ri];
    lstock *st = stock_get(l, w_ref(l, r), r->ref_len, 1);
    if (!st)
        return oom(err);
    st->used--;
    st->dirty = 1;
    lw *w = &l->w[nw];
    w->points = back;
    derive(l, w);
    w->balance = balance_after(l, w->member, now);
    result_of(l, (size_t)nw, 0, res);
    return PATRON_OK;
}

static int adjust_in(ledger *l, int kind, uint32_t member, int64_t points, const char *reason,
                     const char *key, size_t kn, int64_t now, int acct, ledger_result *res,
                     patron_error *err)
{
    int rc = member_check(l, member, err);
    if (rc)
        return rc;
    if (points == 0 || points == INT64_MIN || points > PROGRAM_MAX_POINTS * 1000 ||
        points < -PROGRAM_MAX_POINTS * 1000)
        return err_set(err, PATRON_EINPUT, "points %lld: must be non-zero and at most 1e18 in size",
                       (long long)points);
    size_t mn;
    const char *mid = member_name(l, member, &mn);
    char payload[1024];
    snprintf(payload, sizeof payload, "op=%s\nmember=%.*s\npoints=%lld\nreason=%.200s\n",
             kind_names[kind], (int)mn, mid, (long long)points, reason ? reason : "");
    int wi = find_key(l, key, kn);
    if (wi >= 0)
        return replay_rc(replay(l, wi, key, kn, payload, res, err));
    int64_t nw;
    if (points > 0)
        rc = credit_in(l, kind, key, kn, member, now, points, reason ? reason : "", acct, payload, &nw, err);
    else
        rc = spend_in(l, kind, key, kn, member, now, -points, reason ? reason : "", acct, payload, &nw, err);
    if (rc)
        return rc;
    if (kind == LEDGER_BONUS && (add_qual(l, (uint32_t)nw, member, now, points, 0) ||
                                 upgrade_check(l, (uint32_t)nw, member, now)))
        return oom(err);
    l->w[nw].points = points;
    l->w[nw].balance = balance_after(l, member, now);
    result_of(l, (size_t)nw, 0, res);
    return PATRON_OK;
}

/* ---- public operations ----------------------------------------------------------------------- */

#define OP(call)                                                                                   \
    do {                                                                                           \
        op o_;                                                                                     \
        int rc_ = op_begin(l, &o_, err);                                                           \
        if (rc_)                                                                                   \
            return rc_;                                                                            \
        rc_ = need_program(l, err);                                                                \
        if (rc_ == PATRON_OK)                                                                      \
            rc_ = (call);                                                                          \
        return op_end(l, &o_, rc_, err);                                                           \
    } while (0)

int ledger_earn(ledger *l, const ledger_order *o, ledger_result *res, patron_error *err)
{
    OP(earn_in(l, o, NULL, res, err));
}

int ledger_return(ledger *l, const char *id, uint32_t member, int64_t ts, int64_t amount,
                  const char *original, ledger_result *res, patron_error *err)
{
    OP(return_in(l, id, member, ts, amount, original, res, err));
}

int ledger_void(ledger *l, const char *id, int64_t ts, ledger_result *res, patron_error *err)
{
    OP(void_in(l, id, ts, res, err));
}

static int user_key(const char *key, char *buf, size_t cap, int *kn, patron_error *err)
{
    if (!key || !*key)
        return err_set(err, PATRON_EUSAGE, "an idempotency key is required (--key K)");
    size_t n = strlen(key);
    if (n > 200)
        return err_set(err, PATRON_EINPUT, "key '%.40s...' is longer than 200 bytes", key);
    *kn = snprintf(buf, cap, "k:%s", key);
    return PATRON_OK;
}

int ledger_redeem(ledger *l, uint32_t member, const char *reward, const char *key, int64_t now,
                  ledger_result *res, patron_error *err)
{
    char k[256];
    int kn = 0, rc = user_key(key, k, sizeof k, &kn, err);
    if (rc)
        return rc;
    OP(redeem_in(l, member, reward, -1, k, (size_t)kn, now, res, err));
}

int ledger_cancel(ledger *l, const char *key, int64_t now, ledger_result *res, patron_error *err)
{
    if (!key || !*key)
        return err_set(err, PATRON_EUSAGE, "which redemption? give its key");
    OP(cancel_in(l, key, now, res, err));
}

int ledger_adjust(ledger *l, uint32_t member, int64_t points, const char *reason,
                  const char *key, int64_t now, ledger_result *res, patron_error *err)
{
    char k[256];
    int kn = 0, rc = user_key(key, k, sizeof k, &kn, err);
    if (rc)
        return rc;
    OP(adjust_in(l, LEDGER_ADJUST, member, points, reason, k, (size_t)kn, now, LEDGER_ACC_ADJUSTED,
                 res, err));
}

int ledger_event_points(ledger *l, const char *event_id, uint32_t member, int64_t ts,
                        int64_t points, const char *reason, ledger_result *res, patron_error *err)
{
    char k[320];
    int kn = snprintf(k, sizeof k, "event:%s", event_id);
    if (kn < 0 || (size_t)kn >= sizeof k)
        return err_set(err, PATRON_EINPUT, "event id '%.40s...' is too long", event_id);
    OP(adjust_in(l, LEDGER_ADJUST, member, points, reason, k, (size_t)kn, ts, LEDGER_ACC_ADJUSTED,
                 res, err));
}

int ledger_event_redemption(ledger *l, const char *event_id, uint32_t member, int64_t ts,
                            const char *reward, int64_t points, ledger_result *res,
                            patron_error *err)
{
    char k[320];
    int kn = snprintf(k, sizeof k, "event:%s", event_id);
    if (kn < 0 || (size_t)kn >= sizeof k)
        return err_set(err, PATRON_EINPUT, "event id '%.40s...' is too long", event_id);
    if (points <= 0)
        return err_set(err, PATRON_EINPUT, "redemption '%s': points must be positive", event_id);
    OP(redeem_in(l, member, reward, points, k, (size_t)kn, ts, res, err));
}

int ledger_event_bonus(ledger *l, const char *event_id, uint32_t member, int64_t ts, int which,
                       ledger_result *res, patron_error *err)
{
    static const char *const why[] = {"survey", "referral", "birthday", "enrollment"};
    char k[320];
    int kn = snprintf(k, sizeof k, "bonus:%s", event_id);
    if (kn < 0 || (size_t)kn >= sizeof k || which < 0 || which >= PROGRAM_BONUS__COUNT)
        return err_set(err, PATRON_EINPUT, "bad bonus event '%.40s'", event_id);
    if (!l->prog || l->prog->bonus[which] <= 0) {
        if (res)
            memset(res, 0, sizeof *res);
        return PATRON_OK;
    }
    OP(adjust_in(l, LEDGER_BONUS, member, l->prog->bonus[which], why[which], k, (size_t)kn, ts,
                 LEDGER_ACC_ISSUED, res, err));
}

static int expire_in(ledger *l, int64_t now, ledger_result *res, patron_error *err)
{
    char key[64], payload[64];
    int kn = snprintf(key, sizeof key, "expire@%lld", (long long)now);
    snprintf(payload, sizeof payload, "op=expire\n");
    int wi = find_key(l, key, (size_t)kn);
    if (wi >= 0)
        return replay_rc(replay(l, wi, key, (size_t)kn, payload, res, err));
    int64_t nw = add_write(l, LEDGER_EXPIRE, key, (size_t)kn, NIL, now, "", 0, payload);
    if (nw < 0)
        return oom(err);
    int64_t total = 0;
    size_t n = l->n_lot;
    for (size_t i = 0; i < n; i++) {
        llot *x = &l->lot[i];
        if (x->remaining > 0 && x->expires <= now) {
            int64_t a = x->remaining;
            if (add_posting(l, (uint32_t)nw, LEDGER_ACC_MEMBER, LEDGER_ACC_EXPIRED, a, (uint32_t)i, x->expires))
                return oom(err);
            if (num_add_i64(total, a, &total))
                total = INT64_MAX;
        }
    }
    l->w[nw].points = total;
    result_of(l, (size_t)nw, 0, res);
    return PATRON_OK;
}

int ledger_expire(ledger *l, int64_t now, ledger_result *res, patron_error *err)
{
    op o;
    int rc = op_begin(l, &o, err);
    if (rc)
        return rc;
    return op_end(l, &o, expire_in(l, now, res, err), err);
}

static int review_in(ledger *l, int64_t now, ledger_result *res, patron_error *err)
{
    char key[64], payload[64];
    int kn = snprintf(key, sizeof key, "review@%lld", (long long)now);
    snprintf(payload, sizeof payload, "op=review\n");
    int wi = find_key(l, key, (size_t)kn);
    if (wi >= 0)
        return replay_rc(replay(l, wi, key, (size_t)kn, payload, res, err));
    int64_t nw = add_write(l, LEDGER_REVIEW, key, (size_t)kn, NIL, now, "", 0, payload);
    if (nw < 0)
        return oom(err);
    const program *pg = l->prog;
    int64_t changed = 0;
    for (uint32_t m = 0; m < l->n_m && pg->n_tiers > 1; m++) {
        if (l->m[m].qual == NIL && l->m[m].tier == NIL)
            continue;
        int64_t metric = ledger_qualifying(l, m, now, pg->window, pg->basis == PROGRAM_BASIS_SPEND);
        int target = 0;
        for (size_t k = 0; k < pg->n_tiers; k++)
            if (metric >= pg->tiers[k].threshold)
                target = (int)k;
        if (target != ledger_tier(l, m, now)) {
            if (add_tier(l, (uint32_t)nw, m, now, target))
                return oom(err);
            changed++;
        }
    }
    l->w[nw].points = changed;
    result_of(l, (size_t)nw, 0, res);
    return PATRON_OK;
}

int ledger_tiers_review(ledger *l, int64_t now, ledger_result *res, patron_error *err)
{
    OP(review_in(l, now, res, err));
}

int ledger_program_apply(ledger *l, program *p, int64_t now, int64_t *version, int *changed,
                         patron_error *err)
{
    op o;
    *changed = 0;
    int rc = promo_rules_check(l->db, p, "program", err);
    if (rc == PATRON_OK)
        rc = op_begin(l, &o, err);
    if (rc) {
        program_free(p);
        return rc;
    }
    if (l->prog && l->prog->hash == p->hash && strcmp(l->prog->canonical, p->canonical) == 0) {
        program_free(p);
        *version = l->prog_version;
        return op_end(l, &o, PATRON_OK, err);
    }
    int64_t v;
    rc = store_ledger_program_put(l->sl, now, p->hash, p->canonical, &v, err);
    if (rc) {
        program_free(p);
        return op_end(l, &o, rc, err);
    }
    program_free(l->prog);
    l->prog = p;
    l->prog_version = v;
    l->mutated = 1; /* a new token: other processes reload the program */
    *version = v;
    *changed = 1;
    return op_end(l, &o, PATRON_OK, err);
}

/* ---- batch entry points for the import hook (loyalty.c) ------------------------------------- */

int ledger_batch_begin(ledger *l, const char *const *new_ids, const uint32_t *new_lens, size_t n_new,
                       patron_error *err)
{
    l->new_ids = new_ids;
    l->new_lens = new_lens;
    l->n_new = n_new;
    l->detached = 0;
    l->window_plan = 0;
    int rc = op_begin(l, &l->batch, err);
    l->sp_open = rc == PATRON_OK;
    if (rc == PATRON_OK && n_new && member_ensure(l, (uint32_t)(l->db->n_members + n_new - 1)))
        rc = op_end(l, &l->batch, oom(err), err);
    if (rc) {
        l->new_ids = NULL;
        l->n_new = 0;
        l->sp_open = 0;
    }
    return rc;
}

int ledger_batch_begin_detached(ledger *l, const char *const *new_ids, const uint32_t *new_lens,
                                size_t n_new, patron_error *err)
{
    if (!l->loaded || !store_ledger_in_txn(l->sl) || (l->prog && l->prog->n_rule_promos))
        return err_set(err, PATRON_EINTERNAL, "a detached ledger batch needs a fresh ledger, the "
                                              "store's write transaction and no promotion rules");
    l->new_ids = new_ids;
    l->new_lens = new_lens;
    l->n_new = n_new;
    l->window_plan = 0; /* the batch now decides (ledger_batch_window) */
    l->batch.own = 0;
    l->mutated = 0;
    l->sp_open = 0;
    l->detached = 1;
    if (n_new && member_ensure(l, (uint32_t)(l->db->n_members + n_new - 1))) {
        l->detached = 0;
        l->new_ids = NULL;
        l->n_new = 0;
        return oom(err);
    }
    return PATRON_OK;
}

int ledger_batch_attach(ledger *l, patron_error *err)
{
    PATRON_ASSERT(l->detached);
    l->detached = 0;
    uint64_t tok;
    int rc = store_ledger_token_get(l->sl, &tok, err);
    if (rc == PATRON_OK && tok != l->token)
        rc = err_set(err, PATRON_EINTERNAL, "the ledger changed in the store during a batch that "
                                            "holds its write lock");
    if (rc == PATRON_OK)
        rc = store_ledger_savepoint(l->sl, err);
    l->sp_open = rc == PATRON_OK;
    return rc;
}

int ledger_detached(const ledger *l)
{
    return l->detached;
}

int ledger_batch_window(ledger *l)
{
    if (!l->detached || !l->window_on || l->n_built)
        return 0;
    l->window = 1;
    l->next_w = l->n_w ? l->w[l->n_w - 1].seq + 1 : 1;
    l->win_arena = l->arena_len;
    l->win_lot = l->n_lot;
    l->win_q = l->n_q;
    return 1;
}

int64_t ledger_member_last_ts(const ledger *l, uint32_t member)
{
    return member < l->n_m ? l->m[member].last_ts : INT64_MIN;
}

int ledger_window_default = 1;

void ledger_set_window(ledger *l, int on)
{
    l->window_on = on;
}

uint64_t ledger_windows(void)
{
    return __atomic_load_n(&windows_made, __ATOMIC_RELAXED);
}

/* The writes a batch of n holds in memory at once: all, or a window and some slack. */
static size_t held_writes(const ledger *l, size_t n)
{
    size_t room = LEDGER_CHUNK_MAX + 64;
    return (l->window || l->window_plan) && n > room ? room : n;
}

void ledger_batch_plan(ledger *l, int64_t first_ts)
{
    l->window_plan = l->window_on && l->max_ts <= first_ts;
}

int ledger_batch_share(ledger *l)
{
    if (!l->window || l->shared)
        return 0;
    pthread_mutex_init(&l->sh_mu, NULL);
    pthread_cond_init(&l->sh_cv, NULL);
    l->shared = 1;
    l->sh_closed = 0;
    return 1;
}

void ledger_batch_share_close(ledger *l)
{
    if (!l->shared)
        return;
    pthread_mutex_lock(&l->sh_mu);
    l->sh_closed = 1;
    pthread_cond_broadcast(&l->sh_cv);
    pthread_mutex_unlock(&l->sh_mu);
}

int ledger_batch_store_shared(ledger *l, int wait, patron_error *err)
{
    int rc = PATRON_OK;
    if (!l->shared)
        return rc;
    pthread_mutex_lock(&l->sh_mu);
    while (rc == PATRON_OK) {
        while (wait && l->n_stored == l->n_built && !l->sh_closed)
            pthread_cond_wait(&l->sh_cv, &l->sh_mu);
        if (l->n_lot_rows) { /* the lot rows the windows kept so far: taken, then stored */
            store_ledger_lot *rows = l->lot_rows;
            size_t n = l->n_lot_rows;
            l->lot_rows = NULL;
            l->n_lot_rows = l->cap_lot_rows = 0;
            pthread_mutex_unlock(&l->sh_mu);
            rc = lot_rows_put(l, rows, n, err);
            mem_free(rows);
            pthread_mutex_lock(&l->sh_mu);
            continue;
        }
        if (l->n_stored == l->n_built)
            break; /* all stored (closed, or not waiting) */
        store_ledger_chunk *c = l->built[l->n_stored];
        pthread_mutex_unlock(&l->sh_mu);
        rc = store_ledger_chunk_end(l->sl, c, err);
        pthread_mutex_lock(&l->sh_mu);
        if (MEM_GROW(l->pool, l->cap_pool, l->n_pool + 1) == 0)
            l->pool[l->n_pool++] = c;
        else
            store_ledger_chunk_free(c);
        l->built[l->n_stored] = NULL;
        if (rc == PATRON_OK) /* (else the batch fails: no flush comes) */
            l->n_stored++;
    }
    pthread_mutex_unlock(&l->sh_mu);
    return rc;
}

int ledger_batch_reserve(ledger *l, size_t n, patron_error *err)
{
    size_t nw = held_writes(l, n); /* (a window keeps lots and rows of one window too) */
    if (MEM_GROW(l->w, l->cap_w, l->n_w + nw) || MEM_GROW(l->p, l->cap_p, l->n_p + nw) ||
        MEM_GROW(l->lot, l->cap_lot, l->n_lot + nw) || MEM_GROW(l->q, l->cap_q, l->n_q + nw) ||
        MEM_GROW(l->arena, l->arena_cap, l->arena_len + nw * 32) ||
        MEM_GROW(l->pay, l->pay_cap, l->pay_len + nw * 96) ||
        MEM_GROW(l->dirty_lots, l->cap_dl, l->n_dl + nw) ||
        (!l->window && !l->window_plan && keys_room(l, l->n_keys + n) != 0))
        return oom(err);
    return PATRON_OK;
}

size_t ledger_batch_regions(const ledger *l, size_t n, char **ptr, size_t *bytes, size_t max)
{
    /* An earn makes a write, a posting, a lot, a qualification row and a dirty-lot
     * entry, its key in the arena (about 20 bytes) and a packed payload. */
    size_t nw = held_writes(l, n);
    if (nw > l->cap_w - l->n_w || nw > l->cap_p - l->n_p || nw > l->cap_lot - l->n_lot ||
        nw > l->cap_q - l->n_q || nw > l->cap_dl - l->n_dl || nw * 20 > l->arena_cap - l->arena_len ||
        nw * EARN_PACKED_LEN > l->pay_cap - l->pay_len)
        return 0; /* not reserved */
    /* The first region is faulted in at once (the key index is written anywhere; a
     * window's records are written over and over). */
    int win = l->window || l->window_plan;
    char *p[8] = {win ? (char *)(l->w + l->n_w) : (char *)l->keys,
                  (char *)(l->w + l->n_w), (char *)(l->p + l->n_p),
                  (char *)(l->lot + l->n_lot), (char *)(l->q + l->n_q),
                  (char *)(l->dirty_lots + l->n_dl), l->arena + l->arena_len, l->pay + l->pay_len};
    size_t b[8] = {win ? nw * sizeof *l->w : l->cap_keys * sizeof *l->keys, nw * sizeof *l->w,
                   nw * sizeof *l->p, nw * sizeof *l->lot, nw * sizeof *l->q,
                   nw * sizeof *l->dirty_lots, nw * 20, nw * EARN_PACKED_LEN};
    size_t k = 0;
    for (; k < 8 && k < max; k++) {
        ptr[k] = p[k];
        bytes[k] = b[k];
    }
    return k;
}

int ledger_batch_end(ledger *l, int rc, patron_error *err)
{
    if (l->sp_open) {
        rc = op_end(l, &l->batch, rc, err);
    } else { /* detached, never attached: memory only */
        PATRON_ASSERT(rc != PATRON_OK);
        if (l->mutated)
            l->loaded = 0;
        l->mutated = 0;
    }
    if (l->window) { /* its records are in the store, not here: reload on the next use */
        l->window = 0;
        built_free(l);
        l->n_lot_rows = 0;
        l->loaded = 0;
    }
    if (l->shared) {
        pthread_mutex_destroy(&l->sh_mu);
        pthread_cond_destroy(&l->sh_cv);
        l->shared = 0;
    }
    l->window_plan = 0;
    l->detached = 0;
    l->sp_open = 0;
    l->new_ids = NULL;
    l->new_lens = NULL;
    l->n_new = 0;
    return rc;
}

int ledger_batch_earn(ledger *l, const ledger_order *o, patron_error *err)
{
    return earn_in(l, o, NULL, NULL, err);
}

int ledger_batch_earn_known(ledger *l, const ledger_order *o, const ledger_item_known *known,
                            patron_error *err)
{
    return earn_in(l, o, known, NULL, err);
}

void ledger_batch_prefetch(const ledger *l, uint32_t member, const char *id, size_t idn)
{
    char key[EARN_KEY_CAP];
    int kn = l->n_keys ? earn_key(key, id, idn) : -1;
    if (kn >= 0)
        key_prefetch(l, key_hash(key, (size_t)kn));
    if (member < l->n_m) {
        const lm *mm = &l->m[member];
        __builtin_prefetch(mm);
        __builtin_prefetch((const char *)mm + sizeof *mm - 1);
    }
}

int ledger_batch_return(ledger *l, const char *id, uint32_t member, int64_t ts, int64_t amount,
                        const char *original, patron_error *err)
{
    return return_in(l, id, member, ts, amount, original, NULL, err);
}

int ledger_batch_void(ledger *l, const char *id, int64_t ts, patron_error *err)
{
    return void_in(l, id, ts, NULL, err);
}

int ledger_batch_points(ledger *l, const char *event_id, uint32_t member, int64_t ts, int64_t points,
                        const char *reason, patron_error *err)
{
    char k[320];
    int kn = snprintf(k, sizeof k, "event:%s", event_id);
    if (kn < 0 || (size_t)kn >= sizeof k)
        return err_set(err, PATRON_EINPUT, "event id '%.40s...' is too long", event_id);
    return adjust_in(l, LEDGER_ADJUST, member, points, reason, k, (size_t)kn, ts, LEDGER_ACC_ADJUSTED,
                     NULL, err);
}

int ledger_batch_redemption(ledger *l, const char *event_id, uint32_t member, int64_t ts,
                            const char *reward, int64_t points, patron_error *err)
{
    char k[320];
    int kn = snprintf(k, sizeof k, "event:%s", event_id);
    if (kn < 0 || (size_t)kn >= sizeof k)
        return err_set(err, PATRON_EINPUT, "event id '%.40s...' is too long", event_id);
    if (points <= 0)
        return err_set(err, PATRON_EINPUT, "redemption event '%s': points must be positive", event_id);
    return redeem_in(l, member, reward, points, k, (size_t)kn, ts, NULL, err);
}

int ledger_batch_bonus(ledger *l, const char *event_id, uint32_t member, int64_t ts, int which,
                       patron_error *err)
{
    static const char *const why[] = {"survey", "referral", "birthday", "enrollment"};
    char k[320];
    int kn = snprintf(k, sizeof k, "bonus:%s", event_id);
    if (kn < 0 || (size_t)kn >= sizeof k || which < 0 || which >= PROGRAM_BONUS__COUNT)
        return err_set(err, PATRON_EINPUT, "bad bonus event '%.40s'", event_id);
    if (l->prog->bonus[which] <= 0)
        return PATRON_OK;
    return adjust_in(l, LEDGER_BONUS, member, l->prog->bonus[which], why[which], k, (size_t)kn, ts,
                     LEDGER_ACC_ISSUED, NULL, err);
}

/* ---- birthday and enrollment bonuses ------------------------------------------------------ */

/* The member's latest birthday at or before now (its first second), from the birth date
 * in days; a 29 February birthday falls on 28 February in other years. */
static int64_t last_birthday(int32_t birth_days, int64_t now, int64_t *year)
{
    int by, bm, bd, y, m, d;
    time_civil_from_days(birth_days, &by, &bm, &bd);
    time_civil_from_days(time_day_of(now), &y, &m, &d);
    for (int back = 0; back < 2; back++, y--) {
        int64_t day = time_days_from_civil(y, (unsigned)bm, (unsigned)bd);
        int cy, cm, cd;
        time_civil_from_days(day, &cy, &cm, &cd);
        if (cm != bm) /* 29 February in a common year */
            day = time_days_from_civil(y, 2, 28);
        if (day * TIME_DAY <= now) {
            *year = y;
            return day * TIME_DAY;
        }
    }
    return INT64_MIN; /* not reached: last year's birthday is always before now */
}

static int bonuses_in(ledger *l, int64_t now, const int64_t *enrolled_at, const int32_t *birth_days,
                      size_t n, int64_t counts[2], patron_error *err)
{
    const program *pg = l->prog;
    int64_t eb = pg->bonus[PROGRAM_BONUS_ENROLLMENT], bb = pg->bonus[PROGRAM_BONUS_BIRTHDAY];
    for (size_t m = 0; m < n; m++) {
        size_t mn;
        const char *mid = member_name(l, (uint32_t)m, &mn);
        char key[320];
        int rc, kn;
        if (eb > 0 && enrolled_at[m] <= now) {
            kn = snprintf(key, sizeof key, "enrollment:%.*s", (int)mn, mid);
            if (find_key(l, key, (size_t)kn) < 0) { /* posted once, whatever the bonus is now */
                rc = adjust_in(l, LEDGER_BONUS, (uint32_t)m, eb, "enrollment", key, (size_t)kn,
                               enrolled_at[m], LEDGER_ACC_ISSUED, NULL, err);
                if (rc)
                    return rc;
                counts[1]++;
            }
        }
        if (bb > 0 && birth_days && birth_days[m] != INT32_MIN) {
            int64_t year, at = last_birthday(birth_days[m], now, &year);
            if (at == INT64_MIN || time_day_of(at) < time_day_of(enrolled_at[m]))
                continue; /* no birthday since they enrolled */
            kn = snprintf(key, sizeof key, "birthday:%.*s:%lld", (int)mn, mid, (long long)year);
            if (find_key(l, key, (size_t)kn) >= 0)
                continue;
            rc = adjust_in(l, LEDGER_BONUS, (uint32_t)m, bb, "birthday", key, (size_t)kn, at,
                           LEDGER_ACC_ISSUED, NULL, err);
            if (rc)
                return rc;
            counts[0]++;
        }
    }
    return PATRON_OK;
}

int ledger_bonuses(ledger *l, int64_t now, const int64_t *enrolled_at, const int32_t *birth_days,
                   size_t n, int64_t counts[2], patron_error *err)
{
    counts[0] = counts[1] = 0;
    op o;
    int rc = op_begin(l, &o, err);
    if (rc)
        return rc;
    rc = need_program(l, err);
    if (rc == PATRON_OK && n > 0 && member_ensure(l, (uint32_t)(n - 1)))
        rc = oom(err);
    if (rc == PATRON_OK)
        rc = bonuses_in(l, now, enrolled_at, birth_days, n, counts, err);
    rc = op_end(l, &o, rc, err);
    if (rc)
        counts[0] = counts[1] = 0;
    return rc;
}

/* ---- history -------------------------------------------------------------------------------- */

static int hist_cmp(const void *a, const void *b)
{
    const ledger_history_row *x = a, *y = b;
    if (x->ts != y->ts)
        return x->ts < y->ts ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

int ledger_history(ledger *l, uint32_t member, int64_t now, ledger_history_row **rows,
                   size_t *n, patron_error *err)
{
    *rows = NULL;
    *n = 0;
    if (member >= l->n_m)
        return PATRON_OK;
    size_t cap = 0, k = 0;
    ledger_history_row *r = NULL;
    uint32_t last_w = NIL;
    for (uint32_t i = l->m[member].post; i != NIL; i = l->p[i].prev) {
        const lp *p = &l->p[i];
        const lw *w = &l->w[p->write];
        if (w->ts > now)
            continue;
        int64_t signed_amt = p->credit == LEDGER_ACC_MEMBER ? p->amount : -p->amount;
        if (p->write == last_w) { /* postings of one write are adjacent in the list */
            r[k - 1].points += signed_amt;
            continue;
        }
        if (MEM_GROW(r, cap, k + 1) != 0) {
            mem_free(r);
            return oom(err);
        }
        r[k++] = (ledger_history_row){w->seq, w->ts, signed_amt, w->kind, w_ref(l, w),
                                      w->ref_len, l->lot[p->lot].expires, (w->state & W_CANCELLED) != 0};
        last_w = p->write;
    }
    if (k > 1)
        qsort(r, k, sizeof *r, hist_cmp);
    *rows = r;
    *n = k;
    return PATRON_OK;
}

/* ---- what the rule engine reads of a member (loyalty.c) ---------------------------------- */

static int srow_cmp(const void *a, const void *b)
{
    const ledger_srow *x = a, *y = b;
    if (x->ts != y->ts)
        return x->ts < y->ts ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

typedef struct lotsum {
    uint32_t lot;
    int64_t sum; /* Σ of the member's lines on the lot dated at or before its expiry */
} lotsum;

static int lotsum_cmp(const void *a, const void *b)
{
    uint32_t x = ((const lotsum *)a)->lot, y = ((const lotsum *)b)->lot;
    return (x > y) - (x < y);
}

static lotsum *lotsum_find(lotsum *s, size_t n, uint32_t lot)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s[mid].lot < lot)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && s[lo].lot == lot ? &s[lo] : NULL;
}

static int srow_add(ledger_srow **p, size_t *cap, size_t *k, ledger_srow r)
{
    if (MEM_GROW(*p, *cap, *k + 1) != 0)
        return -1;
    (*p)[(*k)++] = r;
    return 0;
}

int ledger_stream_rows(ledger *l, uint32_t member, ledger_srow **pts, size_t *np, ledger_srow **red,
                       size_t *nr, patron_error *err)
{
    *pts = *red = NULL;
    *np = *nr = 0;
    if (member >= l->n_m)
        return PATRON_OK;
    ledger_srow *p = NULL, *r = NULL;
    lotsum *ls = NULL;
    size_t pc = 0, rc = 0, k = 0, j = 0, nl = 0, lc = 0;
    for (uint32_t i = l->m[member].lot; i != NIL; i = l->lot[i].prev)
        if (l->lot[i].expires != INT64_MAX) {
            if (MEM_GROW(ls, lc, nl + 1) != 0)
                goto oom;
            ls[nl++] = (lotsum){i, 0};
        }
    if (nl > 1)
        qsort(ls, nl, sizeof *ls, lotsum_cmp);
    uint32_t last_w = NIL;
    int64_t last_ts = 0;
    size_t cur = 0; /* p[cur]: the row of (last_w, last_ts) */
    /* the journal lines, one row per write and instant (an expiry run posts each lot at
     * its own expiry) */
    for (uint32_t i = l->m[member].post; i != NIL; i = l->p[i].prev) {
        const lp *x = &l->p[i];
        const lw *w = &l->w[x->write];
        int64_t amt = x->credit == LEDGER_ACC_MEMBER ? x->amount : -x->amount;
        lotsum *s = lotsum_find(ls, nl, x->lot);
        if (s && x->ts <= l->lot[x->lot].expires)
            s->sum += amt;
        else if (s && srow_add(&p, &pc, &k, (ledger_srow){INT64_MAX, x->ts, -amt, LEDGER_EXPIRE, "", 0}))
            goto oom; /* into a lot expired already: gone at once */
        if (x->write == last_w && x->ts == last_ts) {
            p[cur].points += amt;
            if (j && r[j - 1].seq == w->seq)
                r[j - 1].points -= amt;
            continue;
        }
        cur = k;
        if (srow_add(&p, &pc, &k, (ledger_srow){w->seq, x->ts, amt, w->kind, w_ref(l, w), w->ref_len}))
            goto oom;
        if ((w->kind == LEDGER_REDEEM || w->kind == LEDGER_REDEEM_EVENT) && !(w->state & W_CANCELLED) &&
            !(j && r[j - 1].seq == w->seq) &&
            srow_add(&r, &rc, &j, (ledger_srow){w->seq, w->ts, -amt, w->kind, w_ref(l, w), w->ref_len}))
            goto oom;
        last_w = x->write;
        last_ts = x->ts;
    }
    /* what a lot holds at its expiry leaves at that instant, whether or not the expiry
     * run has posted it (points_balance never counts it either; a run's lines make the
     * sum 0) */
    for (size_t i = 0; i < nl; i++)
        if (ls[i].sum != 0 &&
            srow_add(&p, &pc, &k, (ledger_srow){INT64_MAX, l->lot[ls[i].lot].expires, -ls[i].sum, LEDGER_EXPIRE, "", 0}))
            goto oom;
    mem_free(ls);
    if (k > 1)
        qsort(p, k, sizeof *p, srow_cmp);
    if (j > 1)
        qsort(r, j, sizeof *r, srow_cmp);
    *pts = p, *np = k, *red = r, *nr = j;
    return PATRON_OK;
oom:
    mem_free(ls);
    mem_free(p);
    mem_free(r);
    return oom(err);
}

int64_t ledger_next_change(ledger *l, uint32_t member, int64_t now, int64_t window)
{
    if (member >= l->n_m)
        return INT64_MAX;
    int64_t t = INT64_MAX;
    for (uint32_t i = l->m[member].lot; i != NIL; i = l->lot[i].prev)
        if ((l->lot[i].remaining > 0 || l->max_ts > now) && l->lot[i].expires > now && l->lot[i].expires < t)
            t = l->lot[i].expires;
    for (uint32_t i = l->m[member].post; i != NIL; i = l->p[i].prev)
        if (l->p[i].ts > now && l->p[i].ts < t)
            t = l->p[i].ts;
    for (uint32_t i = l->m[member].qual; i != NIL; i = l->q[i].prev) {
        int64_t ts = l->q[i].ts, out;
        if (ts > now && ts < t)
            t = ts;
        if (!__builtin_add_overflow(ts, window, &out) && out > now && out < t)
            t = out; /* leaves (now - window, now] */
    }
    for (uint32_t i = l->m[member].tier; i != NIL; i = l->t[i].prev)
        if (l->t[i].ts > now && l->t[i].ts < t)
            t = l->t[i].ts;
    return t;
}

size_t ledger_changed(ledger *l, const uint32_t **members, int *all)
{
    *members = l->changed;
    *all = l->ch_lost;
    return l->n_ch;
}

void ledger_changed_clear(ledger *l)
{
    for (size_t i = 0; i < l->n_ch; i++)
        if (l->changed[i] < l->n_m)
            l->m[l->changed[i]].changed = 0;
    l->n_ch = 0;
    l->ch_lost = 0;
}

uint64_t ledger_epoch(const ledger *l)
{
    return l->epoch;
}

int ledger_loaded(const ledger *l)
{
    return l->loaded;
}

/* ---- verification --------------------------------------------------------------------------- */

typedef struct rb_lot {
    int64_t id, member, ts, expires, remaining;
} rb_lot;

typedef struct verify_ctx {
    ledger *l;
    rb_lot *lots;
    size_t n, cap;
    int64_t *bal; /* per member */
    uint8_t *has; /* member has a balance row */
    size_t n_bal;
    hmap redeem; /* redemption key -> reward slot */
    char **rewards;
    int64_t *used;
    size_t n_rw, cap_rw, cap_used;
    char problem[512];
    int64_t postings, writes;
    int64_t prev_seq;
    /* serialization */
    char *buf;
    size_t len, bcap;
} verify_ctx;

static void vproblem(verify_ctx *v, const char *fmt, ...) PATRON_PRINTF(2, 3);
static void vproblem(verify_ctx *v, const char *fmt, ...)
{
    if (v->problem[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->problem, sizeof v->problem, fmt, ap);
    va_end(ap);
}

static size_t rb_find(verify_ctx *v, int64_t id)
{
    size_t lo = 0, hi = v->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v->lots[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < v->n && v->lots[lo].id == id ? lo : SIZE_MAX;
}

static int v_posting(void *ctx, const store_ledger_posting *p)
{
    verify_ctx *v = ctx;
    v->postings++;
    if (p->seq <= v->prev_seq)
        vproblem(v, "posting %lld is out of order", (long long)p->seq);
    v->prev_seq = p->seq;
    if (store_ledger_posting_hash(p) != p->hash)
        vproblem(v, "posting %lld does not match its hash", (long long)p->seq);
    if (p->amount <= 0 || p->debit == p->credit ||
        (p->debit != LEDGER_ACC_MEMBER && p->credit != LEDGER_ACC_MEMBER))
        vproblem(v, "posting %lld is not a member line with a positive amount", (long long)p->seq);
    size_t k = rb_find(v, p->lot);
    if (k == SIZE_MAX) {
        if (p->lot != p->seq || p->credit != LEDGER_ACC_MEMBER) {
            vproblem(v, "posting %lld names lot %lld that no earlier credit created", (long long)p->seq,
                     (long long)p->lot);
            return 0;
        }
        if (MEM_GROW(v->lots, v->cap, v->n + 1) != 0)
            return -1;
        v->lots[v->n++] = (rb_lot){p->lot, p->member, p->ts, p->expires, 0};
        k = v->n - 1;
    }
    rb_lot *x = &v->lots[k];
    if (x->member != p->member || x->expires != p->expires)
        vproblem(v, "posting %lld disagrees with its lot %lld", (long long)p->seq, (long long)p->lot);
    int64_t d = p->credit == LEDGER_ACC_MEMBER ? p->amount : -p->amount;
    if (num_add_i64(x->remaining, d, &x->remaining) != 0 || x->remaining < 0)
        vproblem(v, "lot %lld goes negative at posting %lld", (long long)x->id, (long long)p->seq);
    return 0;
}

static int v_write(void *ctx, const store_ledger_write *w)
{
    verify_ctx *v = ctx;
    v->writes++;
    if (w->kind == LEDGER_REDEEM) {
        size_t i;
        for (i = 0; i < v->n_rw; i++)
            if (strlen(v->rewards[i]) == w->refn && memcmp(v->rewards[i], w->ref, w->refn) == 0)
                break;
        if (i == v->n_rw) {
            if (MEM_GROW(v->rewards, v->cap_rw, v->n_rw + 1) || MEM_GROW(v->used, v->cap_used, v->n_rw + 1) ||
                !(v->rewards[v->n_rw] = mem_strndup(w->ref, w->refn)))
                return -1;
            v->used[v->n_rw++] = 0;
        }
        v->used[i]++;
        if (hmap_put(&v->redeem, w->key, w->keyn, (uint32_t)i) != 0)
            return -1;
    } else if (w->kind == LEDGER_CANCEL) {
        uint32_t i;
        if (hmap_get(&v->redeem, w->ref, w->refn, &i))
            v->used[i]--;
        else
            vproblem(v, "cancellation '%.*s' names no redemption", (int)w->keyn, w->key);
    }
    return 0;
}

static int out_grow(verify_ctx *v, size_t more)
{
    return MEM_GROW(v->buf, v->bcap, v->len + more);
}

static int ser_lot(void *ctx, const store_ledger_lot *x)
{
    verify_ctx *v = ctx;
    if (out_grow(v, 128))
        return -1;
    v->len += (size_t)snprintf(v->buf + v->len, 128, "L %lld %lld %lld %lld %lld\n", (long long)x->lot,
                               (long long)x->member, (long long)x->ts, (long long)x->expires,
                               (long long)x->remaining);
    return 0;
}

static int ser_balance(void *ctx, int64_t member, int64_t balance)
{
    verify_ctx *v = ctx;
    if (out_grow(v, 64))
        return -1;
    v->len += (size_t)snprintf(v->buf + v->len, 64, "B %lld %lld\n", (long long)member, (long long)balance);
    return 0;
}

static int ser_stock(void *ctx, const char *reward, size_t n, int64_t used)
{
    verify_ctx *v = ctx;
    if (out_grow(v, n + 64))
        return -1;
    v->len += (size_t)snprintf(v->buf + v->len, n + 64, "S %.*s %lld\n", (int)n, reward, (long long)used);
    return 0;
}

static int serialize_store(ledger *l, verify_ctx *v, patron_error *err)
{
    v->len = 0;
    int rc;
    if ((rc = store_ledger_lots_each(l->sl, ser_lot, v, err)) ||
        (rc = store_ledger_balances_each(l->sl, ser_balance, v, err)) ||
        (rc = store_ledger_stock_each(l->sl, ser_stock, v, err)))
        return rc;
    return PATRON_OK;
}

static int stock_cmp(const void *a, const void *b)
{
    return strcmp(((const lstock *)a)->id, ((const lstock *)b)->id);
}

/* The in-memory projections, serialized like the store's (same order). */
static int serialize_memory(ledger *l, verify_ctx *v)
{
    v->len = 0;
    for (size_t i = 0; i < l->n_lot; i++) {
        const llot *x = &l->lot[i];
        store_ledger_lot s = {x->id, x->member, x->ts, x->expires, x->remaining};
        if (ser_lot(v, &s))
            return -1;
    }
    for (uint32_t m = 0; m < l->n_m; m++)
        if (l->m[m].lot != NIL && ser_balance(v, m, l->m[m].balance))
            return -1;
    lstock *copy = mem_alloc_array(l->n_stock + 1, sizeof *copy);
    if (!copy)
        return -1;
    if (l->n_stock)
        memcpy(copy, l->stock, l->n_stock * sizeof *copy);
    if (l->n_stock > 1)
        qsort(copy, l->n_stock, sizeof *copy, stock_cmp);
    int rc = 0;
    for (size_t k = 0; k < l->n_stock && !rc; k++)
        rc = ser_stock(v, copy[k].id, strlen(copy[k].id), copy[k].used);
    mem_free(copy);
    return rc;
}

static int rebuild_projections(ledger *l, verify_ctx *v, patron_error *err)
{
    int rc = store_ledger_projections_clear(l->sl, err);
    for (size_t i = 0; i < v->n && rc == PATRON_OK; i++) {
        rb_lot *x = &v->lots[i];
        store_ledger_lot s = {x->id, x->member, x->ts, x->expires, x->remaining};
        rc = store_ledger_lot_put(l->sl, &s, err);
        if (x->member >= 0 && (size_t)x->member < v->n_bal) {
            v->bal[x->member] += x->remaining;
            v->has[x->member] = 1;
        }
    }
    for (size_t m = 0; m < v->n_bal && rc == PATRON_OK; m++) {
        if (v->has[m] && v->bal[m] < 0)
            vproblem(v, "member %zu has a negative balance", m);
    }
    for (size_t i = 0; i < v->n_rw && rc == PATRON_OK; i++)
        rc = store_ledger_stock_put(l->sl, v->rewards[i], strlen(v->rewards[i]), v->used[i], err);
    return rc;
}

int ledger_verify(ledger *l, ledger_verify_report *rep, patron_error *err)
{
    memset(rep, 0, sizeof *rep);
    verify_ctx v;
    memset(&v, 0, sizeof v);
    v.l = l;
    hmap_init(&v.redeem);
    char *live = NULL;
    int rc = store_begin(l->db->st, err);
    if (rc)
        return rc;
    rc = refresh(l, err);
    int64_t deb[5], cred[5];
    if (rc == PATRON_OK)
        rc = store_ledger_account_sums(l->sl, deb, cred, err);
    if (rc == PATRON_OK) {
        int64_t net = 0;
        for (int k = 0; k < 5; k++) {
            rep->debits += deb[k];
            rep->credits += cred[k];
            net += cred[k] - deb[k];
        }
        if (rep->debits != rep->credits || net != 0)
            vproblem(&v, "debits (%lld) and credits (%lld) of the journal differ", (long long)rep->debits,
                     (long long)rep->credits);
    }
    if (rc == PATRON_OK)
        rc = store_ledger_postings_each(l->sl, v_posting, &v, err);
    if (rc == PATRON_OK)
        rc = store_ledger_writes_each(l->sl, v_write, &v, err);
    /* members that may hold points: the largest member index seen in lots */
    int64_t maxm = -1;
    for (size_t i = 0; i < v.n; i++)
        if (v.lots[i].member > maxm)
            maxm = v.lots[i].member;
    v.n_bal = (size_t)(maxm + 1);
    v.bal = mem_calloc(v.n_bal + 1, sizeof *v.bal);
    v.has = mem_calloc(v.n_bal + 1, 1);
    if (rc == PATRON_OK && (!v.bal || !v.has))
        rc = oom(err);
    if (rc == PATRON_OK)
        rc = serialize_store(l, &v, err);
    size_t live_len = v.len;
    if (rc == PATRON_OK && !(live = mem_alloc(live_len + 1)))
        rc = oom(err);
    if (rc == PATRON_OK) {
        if (live_len)
            memcpy(live, v.buf, live_len);
        rc = rebuild_projections(l, &v, err);
    }
    if (rc == PATRON_OK)
        rc = serialize_store(l, &v, err);
    if (rc == PATRON_OK) {
        int64_t member_acct = cred[LEDGER_ACC_MEMBER] - deb[LEDGER_ACC_MEMBER], sum = 0;
        for (size_t m = 0; m < v.n_bal; m++)
            sum += v.bal[m];
        if (sum != member_acct)
            vproblem(&v, "member accounts (%lld) differ from the sum of remaining lots (%lld)",
                     (long long)member_acct, (long long)sum);
        if (v.len != live_len || (live_len && memcmp(v.buf, live, live_len) != 0)) {
            size_t k = 0;
            while (k < live_len && k < v.len && live[k] == v.buf[k])
                k++;
            size_t ls = k;
            while (ls > 0 && live[ls - 1] != '\n')
                ls--;
            vproblem(&v, "projections rebuilt from the journal differ from the live ones at '%.60s' "
                         "(live) vs '%.60s' (rebuilt)", live + ls, v.buf + ls);
        }
        if (serialize_memory(l, &v) != 0)
            rc = oom(err);
        else if (v.len != live_len || (live_len && memcmp(v.buf, live, live_len) != 0))
            vproblem(&v, "the in-memory ledger differs from the store");
    }
    store_rollback(l->db->st); /* the rebuild was only for comparing */
    rep->writes = v.writes;
    rep->postings = v.postings;
    rep->lots = (int64_t)v.n;
    for (size_t m = 0; m < v.n_bal; m++)
        rep->members += v.has[m];
    rep->ok = rc == PATRON_OK && !v.problem[0];
    snprintf(rep->problem, sizeof rep->problem, "%s", v.problem);
    mem_free(live);
    mem_free(v.lots);
    mem_free(v.bal);
    mem_free(v.has);
    for (size_t i = 0; i < v.n_rw; i++)
        mem_free(v.rewards[i]);
    mem_free(v.rewards);
    mem_free(v.used);
    mem_free(v.buf);
    hmap_release(&v.redeem);
    return rc;
}

int ledger_check(ledger *l, char *msg, size_t cap)
{
    int64_t d = 0, c = 0, members = 0, lots = 0;
    int ovf = l->acc_overflow;
    for (int k = 0; k < 5; k++)
        ovf |= num_add_i64(d, l->acc_debit[k], &d) | num_add_i64(c, l->acc_credit[k], &c);
    if (ovf || d != c) {
        snprintf(msg, cap, "debits %lld != credits %lld", (long long)d, (long long)c);
        return 0;
    }
    for (uint32_t m = 0; m < l->n_m; m++) {
        int64_t sum = 0;
        for (uint32_t i = l->m[m].lot; i != NIL; i = l->lot[i].prev) {
            if (l->lot[i].remaining < 0) {
                snprintf(msg, cap, "lot %lld is negative", (long long)l->lot[i].id);
                return 0;
            }
            sum += l->lot[i].remaining;
        }
        if (sum != l->m[m].balance || l->m[m].balance < 0) {
            snprintf(msg, cap, "member %u: balance %lld, lots %lld", m, (long long)l->m[m].balance,
                     (long long)sum);
            return 0;
        }
        members += l->m[m].balance;
        lots += sum;
    }
    int64_t net = l->acc_credit[LEDGER_ACC_MEMBER] - l->acc_debit[LEDGER_ACC_MEMBER];
    if (net != members) {
        snprintf(msg, cap, "member accounts %lld != balances %lld", (long long)net, (long long)members);
        return 0;
    }
    return 1;
}

int ledger_integrity(ledger *l, char *msg, size_t cap, patron_error *err)
{
    return store_ledger_integrity(l->sl, msg, cap, err);
}

uint64_t ledger_state_hash(ledger *l)
{
    XXH3_state_t *s = XXH3_createState();
    if (!s)
        return 0;
    XXH3_64bits_reset(s);
    for (size_t i = 0; i < l->n_w; i++) {
        const lw *w = &l->w[i];
        int64_t v[12] = {w->seq, w->ts, w->points, w->money, w->shortfall, w->balance,
                         w->clawed, w->returned, w->np, w->member, w->kind, w->state};
        XXH3_64bits_update(s, v, sizeof v);
        XXH3_64bits_update(s, l->arena + w->key_off, w->key_len);
        XXH3_64bits_update(s, w_ref(l, w), w->ref_len);
    }
    for (size_t i = 0; i < l->n_p; i++) {
        const lp *p = &l->p[i];
        int64_t v[8] = {p->seq, p->amount, p->ts, l->w[p->write].seq, p->member, l->lot[p->lot].id,
                        p->debit, p->credit};
        XXH3_64bits_update(s, v, sizeof v);
    }
    for (size_t i = 0; i < l->n_lot; i++) {
        const llot *x = &l->lot[i];
        int64_t v[5] = {x->id, x->ts, x->expires, x->remaining, x->member};
        XXH3_64bits_update(s, v, sizeof v);
    }
    for (size_t i = 0; i < l->n_q; i++) {
        const lq *q = &l->q[i];
        int64_t v[6] = {q->seq, q->ts, q->points, q->spend, l->w[q->write].seq, q->member};
        XXH3_64bits_update(s, v, sizeof v);
    }
    for (size_t i = 0; i < l->n_t; i++) {
        const lt *t = &l->t[i];
        int64_t v[5] = {t->seq, t->ts, l->w[t->write].seq, t->member, t->tier};
        XXH3_64bits_update(s, v, sizeof v);
    }
    for (uint32_t m = 0; m < l->n_m; m++) {
        int64_t v[2] = {m, l->m[m].balance};
        if (l->m[m].lot != NIL)
            XXH3_64bits_update(s, v, sizeof v);
    }
    uint64_t h = XXH3_64bits_digest(s);
    XXH3_freeState(s);
    return h;
}
