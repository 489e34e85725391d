/*
 * test_ledger.c -- the loyalty ledger (src/loyalty/ledger.c) against what issue 6 must
 * hold:
 *  - a property test: random sequences of earn, return, void, redeem, cancel, adjust,
 *    expire, tier review and retries with an injected clock, run against the engine and
 *    against a small independent model written here (exact points with one common
 *    denominator, lots as plain arrays); after every operation the engine's invariants
 *    hold (Σ debits = Σ credits, balance = Σ remaining lots >= 0) and every member's
 *    balance, qualification and tier equal the model's; the store is verified (rebuild
 *    = live, byte for byte) and reloaded (reload = live) at the end of every seed.
 *    Default: 100 seeds x 1000 operations; PATRON_LONG=1: 1000 x 2000.
 *  - retries 1-5 times return the first result and write nothing; a different payload
 *    under the same key is refused naming the field;
 *  - two processes redeeming a member's whole balance at once: exactly one succeeds;
 *  - crash safety: a writer process SIGKILLed at random points (hundreds of times);
 *    afterwards integrity_check passes, every acknowledged write is there once, the
 *    ledger verifies;
 *  - amounts near the int64 limits: overflow is an error; fractional rates are exact;
 *  - an orders import posted member by member ends every member as posting its orders
 *    one by one in time order does.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/mem.h"
#include "base/time.h"
#include "core/db.h"
#include "loyalty/ledger.h"
#include "loyalty/loyalty.h"
#include "loyalty/program.h"
#include "members/view.h"
#include "store/store.h"
#include "store/store_ledger.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char dir[256];
static int long_run;

#define DAY 86400
#define T0 1700000000 /* 2023-11-14 */
#define NM 8

static uint64_t rng_state;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static int64_t below(int64_t n)
{
    return (int64_t)(rnd() % (uint64_t)n);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* A fresh database with members m0..m(n-1) (indexes 0..n-1) and the program text. */
static patron_db *fresh_db(const char *name, int members, const char *prog_text)
{
    char path[512], csv[600];
    snprintf(path, sizeof path, "%s/%s.db", dir, name);
    unlink(path);
    snprintf(csv, sizeof csv, "%s-wal", path);
    unlink(csv);
    snprintf(csv, sizeof csv, "%s-shm", path);
    unlink(csv);
    snprintf(csv, sizeof csv, "%s/%s-members.csv", dir, name);
    FILE *f = fopen(csv, "w");
    assert_non_null(f);
    fputs("member_id\n", f);
    for (int i = 0; i < members; i++)
        fprintf(f, "m%d\n", i);
    fclose(f);
    patron_db *db;
    patron_error err = {0};
    assert_int_equal(patron_open(path, &db, &err), 0);
    patron_import_result res;
    assert_int_equal(patron_import(db, PATRON_IMPORT_MEMBERS, csv, NULL, &res, &err), 0);
    if (prog_text) {
        program *p;
        int rc = program_parse(prog_text, strlen(prog_text), "test", &p, &err);
        if (rc)
            fail_msg("program: %s", err.message);
        ledger *l;
        assert_int_equal(ledger_get(db, &l, &err), 0);
        ledger_set_durable(l, 0);
        int64_t v;
        int changed;
        assert_int_equal(ledger_program_apply(l, p, T0, &v, &changed, &err), 0);
        assert_int_equal(changed, 1);
    }
    return db;
}

static void verify_ok(ledger *l)
{
    patron_error err = {0};
    ledger_verify_report rep;
    int rc = ledger_verify(l, &rep, &err);
    if (rc)
        fail_msg("verify: %s", err.message);
    if (!rep.ok)
        fail_msg("verify: %s", rep.problem);
    char msg[256];
    assert_int_equal(ledger_integrity(l, msg, sizeof msg, &err), 1);
}

/* ---- the reference model ----------------------------------------------------------- */

static const char prop_program[] =
    "{\"points_per_unit\": 1.25, \"category_multipliers\": {\"A\": 2, \"B\": 0.5},"
    " \"tiers\": {\"basis\": \"points\", \"window\": \"30d\", \"levels\": ["
    "  {\"name\": \"base\", \"threshold\": 0, \"multiplier\": 1},"
    "  {\"name\": \"silver\", \"threshold\": 300, \"multiplier\": 1.5},"
    "  {\"name\": \"gold\", \"threshold\": 1000, \"multiplier\": 2}]},"
    " \"expiry\": {\"policy\": \"days\", \"days\": 60},"
    " \"promotions\": [{\"id\": \"gold-extra\", \"tiers\": [\"gold\"], \"multiplier\": 1.1},"
    "  {\"id\": \"b-week\", \"categories\": [\"B\"], \"multiplier\": 1.5, \"bonus\": 7,"
    "   \"from\": 1700864000, \"to\": 1703456000}],"
    " \"rewards\": [{\"id\": \"R1\", \"points\": 100}, {\"id\": \"R2\", \"points\": 250, \"stock\": 3}]}";
#define PROMO_FROM 1700864000
#define PROMO_TO 1703456000
#define WINDOW (30 * DAY)
#define EXPIRY (60 * DAY)

typedef struct mlot {
    int64_t ts, exp, rem;
    int member;
} mlot;

typedef struct mtake {
    int lot;
    int64_t amt;
} mtake;

typedef struct mrec {
    int kind; /* LEDGER_* */
    char id[48];
    int member;
    int64_t points, money, shortfall, clawed, returned;
    int lot, state, reward; /* state: 1 voided / cancelled */
    char orig[48];
    mtake *takes;
    int n_takes;
} mrec;

typedef struct model {
    mlot *lots;
    int n_lots, cap_lots;
    mrec *recs;
    int n_recs, cap_recs;
    struct { int member; int64_t ts, points; } *q;
    int n_q, cap_q;
    struct { int member, tier; int64_t ts; } *t;
    int n_t, cap_t;
    int64_t stock_used[2];
    int64_t expired_at[4096], reviewed_at[4096];
    int n_exp, n_rev;
} model;

#define GROW(arr, n, cap)                                                                          \
    do {                                                                                           \
        if ((n) >= (cap)) {                                                                        \
            (cap) = (cap) ? 2 * (cap) : 64;                                                        \
            (arr) = realloc((arr), (size_t)(cap) * sizeof *(arr));                                 \
            assert_non_null(arr);                                                                  \
        }                                                                                          \
    } while (0)

static int m_tier(model *m, int member, int64_t now)
{
    int tier = 0;
    int64_t best = INT64_MIN;
    for (int i = 0; i < m->n_t; i++)
        if (m->t[i].member == member && m->t[i].ts <= now && m->t[i].ts >= best) {
            best = m->t[i].ts;
            tier = m->t[i].tier;
        }
    return tier;
}

static int64_t m_qual(model *m, int member, int64_t now)
{
    int64_t s = 0;
    for (int i = 0; i < m->n_q; i++)
        if (m->q[i].member == member && m->q[i].ts > now - WINDOW && m->q[i].ts <= now)
            s += m->q[i].points;
    return s;
}

static int m_has_qual(model *m, int member)
{
    for (int i = 0; i < m->n_q; i++)
        if (m->q[i].member == member)
            return 1;
    for (int i = 0; i < m->n_t; i++)
        if (m->t[i].member == member)
            return 1;
    return 0;
}

static void m_add_qual(model *m, int member, int64_t ts, int64_t pts, int64_t spend)
{
    if (pts == 0 && spend == 0)
        return;
    GROW(m->q, m->n_q, m->cap_q);
    m->q[m->n_q].member = member;
    m->q[m->n_q].ts = ts;
    m->q[m->n_q++].points = pts;
}

static void m_set_tier(model *m, int member, int64_t ts, int tier)
{
    GROW(m->t, m->n_t, m->cap_t);
    m->t[m->n_t].member = member;
    m->t[m->n_t].ts = ts;
    m->t[m->n_t++].tier = tier;
}

static int target_tier(int64_t metric)
{
    return metric >= 1000 ? 2 : metric >= 300 ? 1 : 0;
}

static int64_t m_balance(model *m, int member, int64_t now)
{
    int64_t s = 0;
    for (int i = 0; i < m->n_lots; i++)
        if (m->lots[i].member == member && m->lots[i].ts <= now && m->lots[i].exp > now)
            s += m->lots[i].rem;
    return s;
}

static int m_new_lot(model *m, int member, int64_t ts, int64_t pts)
{
    GROW(m->lots, m->n_lots, m->cap_lots);
    m->lots[m->n_lots] = (mlot){ts, ts + EXPIRY, pts, member};
    return m->n_lots++;
}

static mrec *m_new_rec(model *m, int kind, const char *id, int member)
{
    GROW(m->recs, m->n_recs, m->cap_recs);
    mrec *r = &m->recs[m->n_recs++];
    memset(r, 0, sizeof *r);
    r->kind = kind;
    snprintf(r->id, sizeof r->id, "%s", id);
    r->member = member;
    r->lot = -1;
    return r;
}

static mrec *m_find(model *m, int kind, const char *id)
{
    for (int i = 0; i < m->n_recs; i++)
        if (m->recs[i].kind == kind && strcmp(m->recs[i].id, id) == 0)
            return &m->recs[i];
    return NULL;
}

static void m_take_one(model *m, mrec *r, int lot, int64_t amt)
{
    m->lots[lot].rem -= amt;
    r->takes = realloc(r->takes, (size_t)(r->n_takes + 1) * sizeof *r->takes);
    r->takes[r->n_takes++] = (mtake){lot, amt};
}

/* Takes up to amount from lot `first` then the soonest-expiring (oldest on ties). */
static int64_t m_take(model *m, mrec *r, int member, int64_t amount, int64_t now, int first)
{
    int64_t taken = 0;
    if (first >= 0 && m->lots[first].rem > 0 && m->lots[first].exp > now && amount > 0) {
        int64_t a = m->lots[first].rem < amount ? m->lots[first].rem : amount;
        m_take_one(m, r, first, a);
        taken += a;
        amount -= a;
    }
    while (amount > 0) {
        int best = -1;
        for (int i = 0; i < m->n_lots; i++) {
            mlot *x = &m->lots[i];
            if (i == first || x->member != member || x->rem <= 0 || x->ts > now || x->exp <= now)
                continue;
            if (best < 0 || x->exp < m->lots[best].exp ||
                (x->exp == m->lots[best].exp && x->ts < m->lots[best].ts))
                best = i;
        }
        if (best < 0)
            break;
        int64_t a = m->lots[best].rem < amount ? m->lots[best].rem : amount;
        m_take_one(m, r, best, a);
        taken += a;
        amount -= a;
    }
    return taken;
}

static void m_release(model *m)
{
    for (int i = 0; i < m->n_recs; i++)
        free(m->recs[i].takes);
    free(m->lots);
    free(m->recs);
    free(m->q);
    free(m->t);
    memset(m, 0, sizeof *m);
}

/* Points of an order in the model: one common denominator (10^24), one floor. */
static int64_t m_points(int tier, int64_t ts, int n, const int *cat, const int64_t *amt)
{
    static const int64_t catm[3] = {20000, 5000, 10000};
    static const int64_t tierm[3] = {10000, 15000, 20000};
    __int128 num = 0, den = 1;
    for (int k = 0; k < 6; k++)
        den *= 10000;
    int in_window = ts >= PROMO_FROM && ts < PROMO_TO, any_b = 0;
    for (int i = 0; i < n; i++) {
        int64_t pb = cat[i] == 1 && in_window ? 15000 : 10000;
        any_b |= cat[i] == 1;
        num += (__int128)amt[i] * 12500 * catm[cat[i]] * pb;
    }
    num = num * tierm[tier] * (tier == 2 ? 11000 : 10000);
    return (int64_t)(num / den) + (in_window && any_b ? 7 : 0);
}

/* ---- the property test ------------------------------------------------------------- */

typedef struct world {
    patron_db *db;
    ledger *l;
    model m;
    int64_t now;
    int n_orders, n_returns, n_keys;
    char keys[256][32]; /* user keys of redemptions / adjustments made */
    int key_kind[256], key_member[256], key_reward[256];
    int64_t key_points[256], key_result[256];
    int n_user;
} world;

static void check_world(world *w, const char *after)
{
    char msg[256];
    if (!ledger_check(w->l, msg, sizeof msg))
        fail_msg("after %s: %s", after, msg);
    for (int i = 0; i < NM; i++) {
        int64_t eb = ledger_balance(w->l, (uint32_t)i, w->now), mb = m_balance(&w->m, i, w->now);
        if (eb != mb)
            fail_msg("after %s: member %d balance engine %lld model %lld", after, i, (long long)eb, (long long)mb);
        int64_t eq = ledger_qualifying(w->l, (uint32_t)i, w->now, WINDOW, 0), mq = m_qual(&w->m, i, w->now);
        if (eq != mq)
            fail_msg("after %s: member %d qualifying engine %lld model %lld", after, i, (long long)eq, (long long)mq);
        assert_int_equal(ledger_tier(w->l, (uint32_t)i, w->now), m_tier(&w->m, i, w->now));
    }
    assert_int_equal(ledger_stock_used(w->l, "R2"), w->m.stock_used[1]);
}

static void op_earn(world *w)
{
    int member = (int)below(NM), n = 1 + (int)below(3), cat[3];
    int64_t amt[3], total = 0;
    ledger_item items[3];
    static const char *const cats[3] = {"A", "B", "C"};
    for (int i = 0; i < n; i++) {
        cat[i] = (int)below(3);
        amt[i] = (1 + below(20000)) * 100; /* 0.01 .. 200.00 */
        total += amt[i];
        items[i] = (ledger_item){"sku", cats[cat[i]], 3, 1, amt[i]};
    }
    char id[48];
    snprintf(id, sizeof id, "o%d", w->n_orders++);
    ledger_order o = {id, strlen(id), (uint32_t)member, w->now, total, items, (size_t)n};
    ledger_result res;
    patron_error err = {0};
    int rc = ledger_earn(w->l, &o, &res, &err);
    if (rc)
        fail_msg("earn: %s", err.message);
    model *m = &w->m;
    int tier = m_tier(m, member, w->now);
    int64_t pts = m_points(tier, w->now, n, cat, amt);
    assert_int_equal(res.points, pts);
    mrec *r = m_new_rec(m, LEDGER_EARN, id, member);
    r->points = pts;
    r->money = total;
    if (pts > 0)
        r->lot = m_new_lot(m, member, w->now, pts);
    m_add_qual(m, member, w->now, pts, total);
    int target = target_tier(m_qual(m, member, w->now));
    if (target > m_tier(m, member, w->now))
        m_set_tier(m, member, w->now, target);
}

static void op_return(world *w)
{
    model *m = &w->m;
    ledger_result res;
    patron_error err = {0};
    char id[48];
    snprintf(id, sizeof id, "ret%d", w->n_returns++);
    mrec *e = NULL;
    if (w->n_orders && below(4) != 0) {
        char oid[48];
        snprintf(oid, sizeof oid, "o%lld", (long long)below(w->n_orders));
        e = m_find(m, LEDGER_EARN, oid);
    }
    int member = e ? e->member : (int)below(NM);
    int64_t amount = (1 + below(e ? e->money / 100 + 50 : 5000)) * 100;
    int rc = ledger_return(w->l, id, (uint32_t)member, w->now, amount, e ? e->id : NULL, &res, &err);
    if (rc)
        fail_msg("return: %s", err.message);
    int ei = e ? (int)(e - m->recs) : -1;
    mrec *r = m_new_rec(m, LEDGER_RETURN, id, member);
    int64_t claw, money;
    if (e) {
        e = &m->recs[ei]; /* m_new_rec may have moved the array */
        snprintf(r->orig, sizeof r->orig, "%s", e->id);
        int64_t ret = e->returned + amount > e->money ? e->money : e->returned + amount;
        int64_t target = e->state ? e->clawed : (int64_t)((__int128)e->points * ret / e->money);
        claw = target - e->clawed > 0 ? target - e->clawed : 0;
        money = amount < e->money - e->returned ? amount : e->money - e->returned;
        int64_t taken = m_take(m, r, member, claw, w->now, e->lot);
        e = &m->recs[ei];
        r->points = taken;
        r->shortfall = claw - taken;
        if (!e->state) {
            e->clawed += claw;
            e->returned += money;
        }
    } else {
        claw = amount * 12500 / 100000000;
        money = amount;
        int64_t taken = m_take(m, r, member, claw, w->now, -1);
        r->points = taken;
        r->shortfall = claw - taken;
    }
    r->money = money;
    m_add_qual(m, member, w->now, -claw, -money);
    assert_int_equal(res.points, r->points);
    assert_int_equal(res.shortfall, r->shortfall);
}

static void op_void(world *w)
{
    model *m = &w->m;
    int is_ret = w->n_returns && below(3) == 0;
    if (!is_ret && !w->n_orders)
        return;
    char id[48];
    if (is_ret)
        snprintf(id, sizeof id, "ret%lld", (long long)below(w->n_returns));
    else
        snprintf(id, sizeof id, "o%lld", (long long)below(w->n_orders));
    ledger_result res;
    patron_error err = {0};
    int rc = ledger_void(w->l, id, w->now, &res, &err);
    if (rc)
        fail_msg("void: %s", err.message);
    mrec *t = m_find(m, is_ret ? LEDGER_RETURN : LEDGER_EARN, id);
    assert_non_null(t);
    if (m_find(m, LEDGER_VOID, id)) {
        assert_int_equal(res.replayed, 1);
        return;
    }
    int ti = (int)(t - m->recs);
    mrec *v = m_new_rec(m, LEDGER_VOID, id, t->member);
    t = &m->recs[ti];
    if (!is_ret) {
        int64_t rest = t->points - t->clawed;
        int64_t taken = rest > 0 ? m_take(m, v, t->member, rest, w->now, t->lot) : 0;
        t = &m->recs[ti];
        m_add_qual(m, t->member, w->now, -(rest > 0 ? rest : 0),
                   -(t->money - t->returned > 0 ? t->money - t->returned : 0));
        t->clawed = t->points;
        t->returned = t->money;
        assert_int_equal(res.points, -taken);
        assert_int_equal(res.shortfall, rest > taken ? rest - taken : 0);
    } else {
        mrec *e = t->orig[0] ? m_find(m, LEDGER_EARN, t->orig) : NULL;
        if (!(e && e->state)) {
            int64_t back = 0;
            for (int k = 0; k < t->n_takes; k++) {
                m->lots[t->takes[k].lot].rem += t->takes[k].amt;
                back += t->takes[k].amt;
            }
            m_add_qual(m, t->member, w->now, t->points + t->shortfall, t->money);
            if (e) {
                e->clawed -= t->points + t->shortfall;
                e->returned -= t->money;
            }
            assert_int_equal(res.points, back);
        }
    }
    t->state = 1;
}

static void op_redeem(world *w, int retry)
{
    model *m = &w->m;
    ledger_result res;
    patron_error err = {0};
    if (retry) {
        if (!w->n_user)
            return;
        int k = (int)below(w->n_user);
        int rc = w->key_kind[k] == LEDGER_REDEEM
                     ? ledger_redeem(w->l, (uint32_t)w->key_member[k], w->key_reward[k] ? "R2" : "R1",
                                     w->keys[k], w->now, &res, &err)
                     : ledger_adjust(w->l, (uint32_t)w->key_member[k], w->key_points[k], "r", w->keys[k],
                                     w->now, &res, &err);
        if (rc)
            fail_msg("retry: %s", err.message);
        assert_int_equal(res.replayed, 1);
        assert_int_equal(res.points, w->key_result[k]);
        /* the same key with another payload names the field */
        rc = w->key_kind[k] == LEDGER_REDEEM
                 ? ledger_redeem(w->l, (uint32_t)((w->key_member[k] + 1) % NM), "R1", w->keys[k], w->now, &res, &err)
                 : ledger_adjust(w->l, (uint32_t)w->key_member[k], w->key_points[k] * 2, "r", w->keys[k],
                                 w->now, &res, &err);
        assert_int_equal(rc, PATRON_EINPUT);
        assert_non_null(strstr(err.message, w->key_kind[k] == LEDGER_REDEEM ? "'member'" : "'points'"));
        return;
    }
    int member = (int)below(NM), reward = (int)below(2);
    int64_t cost = reward ? 250 : 100;
    char key[32];
    snprintf(key, sizeof key, "rk%d", w->n_keys++);
    int rc = ledger_redeem(w->l, (uint32_t)member, reward ? "R2" : "R1", key, w->now, &res, &err);
    int64_t avail = m_balance(m, member, w->now);
    int ok = avail >= cost && !(reward && m->stock_used[1] >= 3);
    if (!ok) {
        assert_int_equal(rc, PATRON_EINPUT);
        return;
    }
    if (rc)
        fail_msg("redeem: %s", err.message);
    mrec *r = m_new_rec(m, LEDGER_REDEEM, key, member);
    r->reward = reward;
    r->points = cost;
    assert_int_equal(m_take(m, r, member, cost, w->now, -1), cost);
    m->stock_used[reward]++;
    assert_int_equal(res.points, cost);
    assert_int_equal(res.balance, m_balance(m, member, w->now));
    if (w->n_user < 256) {
        int k = w->n_user++;
        snprintf(w->keys[k], sizeof w->keys[k], "%s", key);
        w->key_kind[k] = LEDGER_REDEEM;
        w->key_member[k] = member;
        w->key_reward[k] = reward;
        w->key_result[k] = cost;
    }
}

static void op_cancel(world *w)
{
    model *m = &w->m;
    if (!w->n_keys)
        return;
    char key[32];
    snprintf(key, sizeof key, "rk%lld", (long long)below(w->n_keys));
    ledger_result res;
    patron_error err = {0};
    int rc = ledger_cancel(w->l, key, w->now, &res, &err);
    mrec *r = m_find(m, LEDGER_REDEEM, key);
    if (!r) {
        assert_int_equal(rc, PATRON_ENOTFOUND);
        return;
    }
    if (rc)
        fail_msg("cancel: %s", err.message);
    if (r->state) {
        assert_int_equal(res.replayed, 1);
        return;
    }
    for (int k = 0; k < r->n_takes; k++)
        m->lots[r->takes[k].lot].rem += r->takes[k].amt;
    m->stock_used[r->reward]--;
    r->state = 1;
    assert_int_equal(res.points, r->points);
}

static void op_adjust(world *w)
{
    model *m = &w->m;
    int member = (int)below(NM);
    int64_t pts = below(3) ? 1 + below(400) : -(1 + below(300));
    char key[32];
    snprintf(key, sizeof key, "ak%d", w->n_keys++);
    ledger_result res;
    patron_error err = {0};
    int rc = ledger_adjust(w->l, (uint32_t)member, pts, "r", key, w->now, &res, &err);
    if (pts < 0 && m_balance(m, member, w->now) < -pts) {
        assert_int_equal(rc, PATRON_EINPUT);
        return;
    }
    if (rc)
        fail_msg("adjust: %s", err.message);
    mrec *r = m_new_rec(m, LEDGER_ADJUST, key, member);
    if (pts > 0)
        m_new_lot(m, member, w->now, pts);
    else
        assert_int_equal(m_take(m, r, member, -pts, w->now, -1), -pts);
    assert_int_equal(res.points, pts);
    if (w->n_user < 256) {
        int k = w->n_user++;
        snprintf(w->keys[k], sizeof w->keys[k], "%s", key);
        w->key_kind[k] = LEDGER_ADJUST;
        w->key_member[k] = member;
        w->key_points[k] = pts;
        w->key_result[k] = pts;
    }
}

static void op_expire(world *w)
{
    model *m = &w->m;
    ledger_result res;
    patron_error err = {0};
    int rc = ledger_expire(w->l, w->now, &res, &err);
    if (rc)
        fail_msg("expire: %s", err.message);
    for (int i = 0; i < m->n_exp; i++)
        if (m->expired_at[i] == w->now) {
            assert_int_equal(res.replayed, 1);
            return;
        }
    int64_t total = 0;
    for (int i = 0; i < m->n_lots; i++)
        if (m->lots[i].rem > 0 && m->lots[i].exp <= w->now) {
            total += m->lots[i].rem;
            m->lots[i].rem = 0;
        }
    assert_int_equal(res.points, total);
    if (m->n_exp < 4096)
        m->expired_at[m->n_exp++] = w->now;
}

static void op_review(world *w)
{
    model *m = &w->m;
    ledger_result res;
    patron_error err = {0};
    int rc = ledger_tiers_review(w->l, w->now, &res, &err);
    if (rc)
        fail_msg("review: %s", err.message);
    for (int i = 0; i < m->n_rev; i++)
        if (m->reviewed_at[i] == w->now) {
            assert_int_equal(res.replayed, 1);
            return;
        }
    int changed = 0;
    for (int i = 0; i < NM; i++) {
        if (!m_has_qual(m, i))
            continue;
        int target = target_tier(m_qual(m, i, w->now));
        if (target != m_tier(m, i, w->now)) {
            m_set_tier(m, i, w->now, target);
            changed++;
        }
    }
    assert_int_equal(res.points, changed);
    if (m->n_rev < 4096)
        m->reviewed_at[m->n_rev++] = w->now;
}

static void run_seed(uint64_t seed, int ops, long *done)
{
    world *w = calloc(1, sizeof *w);
    assert_non_null(w);
    rng_state = seed * 0x9E3779B97F4A7C15ULL + 1;
    char name[64];
    snprintf(name, sizeof name, "prop%d", (int)(seed % 4));
    w->db = fresh_db(name, NM, prop_program);
    patron_error err = {0};
    assert_int_equal(ledger_get(w->db, &w->l, &err), 0);
    ledger_set_durable(w->l, 0);
    w->now = T0;
    assert_int_equal(ledger_group_begin(w->l, &err), 0);
    for (int i = 0; i < ops; i++) {
        if (below(3) == 0)
            w->now += below(3 * DAY);
        int r = (int)below(100);
        const char *what;
        if (r < 30)
            op_earn(w), what = "earn";
        else if (r < 38)
            op_return(w), what = "return";
        else if (r < 43)
            op_void(w), what = "void";
        else if (r < 58)
            op_redeem(w, 0), what = "redeem";
        else if (r < 63)
            op_cancel(w), what = "cancel";
        else if (r < 76)
            op_adjust(w), what = "adjust";
        else if (r < 82)
            op_expire(w), what = "expire";
        else if (r < 88)
            op_review(w), what = "review";
        else
            op_redeem(w, 1), what = "retry";
        check_world(w, what);
        if (i % 250 == 249) { /* commit now and then: the store must follow */
            assert_int_equal(ledger_group_end(w->l, 1, &err), 0);
            assert_int_equal(ledger_group_begin(w->l, &err), 0);
        }
    }
    assert_int_equal(ledger_group_end(w->l, 1, &err), 0);
    *done += ops;
    verify_ok(w->l);
    uint64_t live = ledger_state_hash(w->l);
    ledger_invalidate(w->l);
    assert_int_equal(ledger_get(w->db, &w->l, &err), 0);
    assert_int_equal(ledger_state_hash(w->l), live);
    check_world(w, "reload");
    patron_close(w->db);
    m_release(&w->m);
    free(w);
}

static void test_property(void **state)
{
    (void)state;
    int seeds = long_run ? 1000 : 100, ops = long_run ? 2000 : 1000;
#ifdef __SANITIZE_ADDRESS__
    if (!long_run) /* the normal build runs the full 100k; the sanitizer build a third */
        seeds = 34;
#endif
    long done = 0;
    for (int s = 1; s <= seeds; s++)
        run_seed((uint64_t)s, ops, &done);
    print_message("property: %ld operations over %d seeds\n", done, seeds);
#ifndef __SANITIZE_ADDRESS__
    assert_true(done >= 100000);
#endif
}

/* ---- idempotency -------------------------------------------------------------------- */

static void test_retries(void **state)
{
    (void)state;
    patron_db *db = fresh_db("retry", 3, prop_program);
    patron_error err = {0};
    ledger *l;
    assert_int_equal(ledger_get(db, &l, &err), 0);
    ledger_set_durable(l, 0);
    ledger_item it = {"s", "A", 1, 1, 1000000};
    ledger_order o = {"X1", 2, 0, T0, 1000000, &it, 1};
    ledger_result first, again;
    assert_int_equal(ledger_earn(l, &o, &first, &err), 0);
    assert_int_equal(first.points, 250); /* 100.00 x 1.25 x 2 */
    assert_int_equal(ledger_adjust(l, 1, 500, "gift", "adj-1", T0, &first, &err), 0);
    for (int kind = 0; kind < 7; kind++) {
        ledger_verify_report before, after;
        int rc = 0;
        int64_t now = T0 + DAY;
        switch (kind) {
        case 0: rc = ledger_redeem(l, 0, "R1", "red-1", now, &first, &err); break;
        case 1: rc = ledger_adjust(l, 0, -20, "fix", "adj-2", now, &first, &err); break;
        case 2: rc = ledger_cancel(l, "red-1", now, &first, &err); break;
        case 3: rc = ledger_return(l, "RT1", 0, now, 250000, "X1", &first, &err); break;
        case 4: rc = ledger_void(l, "RT1", now, &first, &err); break;
        case 5: rc = ledger_expire(l, T0 + 100 * DAY, &first, &err); break;
        default: rc = ledger_tiers_review(l, now, &first, &err); break;
        }
        if (rc)
            fail_msg("kind %d: %s", kind, err.message);
        assert_int_equal(first.replayed, 0);
        assert_int_equal(ledger_verify(l, &before, &err), 0);
        uint64_t h = ledger_state_hash(l);
        int tries = 1 + kind % 5;
        for (int t = 0; t < tries; t++) {
            switch (kind) {
            case 0: rc = ledger_redeem(l, 0, "R1", "red-1", now + t, &again, &err); break;
            case 1: rc = ledger_adjust(l, 0, -20, "fix", "adj-2", now + t, &again, &err); break;
            case 2: rc = ledger_cancel(l, "red-1", now + t, &again, &err); break;
            case 3: rc = ledger_return(l, "RT1", 0, now, 250000, "X1", &again, &err); break;
            case 4: rc = ledger_void(l, "RT1", now, &again, &err); break;
            case 5: rc = ledger_expire(l, T0 + 100 * DAY, &again, &err); break;
            default: rc = ledger_tiers_review(l, now, &again, &err); break;
            }
            assert_int_equal(rc, 0);
            assert_int_equal(again.replayed, 1);
            assert_int_equal(again.points, first.points);
            assert_int_equal(again.balance, first.balance);
            assert_int_equal(again.seq, first.seq);
        }
        assert_int_equal(ledger_state_hash(l), h);
        assert_int_equal(ledger_verify(l, &after, &err), 0);
        assert_int_equal(after.postings, before.postings);
        assert_int_equal(after.writes, before.writes);
    }
    /* Same key, different payload: refused, naming the field. */
    assert_int_equal(ledger_redeem(l, 0, "R2", "red-1", T0, &again, &err), PATRON_EINPUT);
    assert_non_null(strstr(err.message, "'reward'"));
    assert_int_equal(ledger_adjust(l, 1, 501, "gift", "adj-1", T0, &again, &err), PATRON_EINPUT);
    assert_non_null(strstr(err.message, "'points'"));
    assert_int_equal(ledger_adjust(l, 1, 500, "other", "adj-1", T0, &again, &err), PATRON_EINPUT);
    assert_non_null(strstr(err.message, "'reason'"));
    assert_int_equal(ledger_adjust(l, 2, 500, "gift", "adj-1", T0, &again, &err), PATRON_EINPUT);
    assert_non_null(strstr(err.message, "'member'"));
    assert_int_equal(ledger_redeem(l, 1, "R1", "adj-1", T0, &again, &err), PATRON_EINPUT);
    assert_non_null(strstr(err.message, "'op'"));
    ledger_item it2 = {"s", "A", 1, 1, 2000000};
    ledger_order o2 = {"X1", 2, 0, T0, 2000000, &it2, 1};
    assert_int_equal(ledger_earn(l, &o2, &again, &err), PATRON_EINPUT);
    assert_non_null(strstr(err.message, "'amount'"));
    assert_int_equal(ledger_cancel(l, "nope", T0, &again, &err), PATRON_ENOTFOUND);
    verify_ok(l);
    patron_close(db);
}

/* ---- exactness and overflow --------------------------------------------------------- */

static void test_overflow_and_rounding(void **state)
{
    (void)state;
    patron_error err = {0};
    program *p;
    /* Rates with four decimals are exact; a fifth is refused. */
    assert_int_equal(program_parse("{\"points_per_unit\": 0.0001}", 27, "t", &p, &err), 0);
    assert_int_equal(p->rate, 1);
    program_free(p);
    const char *bad = "{\"points_per_unit\": 0.00001}";
    assert_int_equal(program_parse(bad, strlen(bad), "t", &p, &err), PATRON_EINPUT);
    assert_non_null(strstr(err.message, "points_per_unit"));
    const char *nested = "{\"points_per_unit\": 1,\n \"tiers\": {\"levels\": [\n  {\"name\": \"a\", \"threshold\": 0, \"multiplier\": \"x\"}]}}";
    assert_int_equal(program_parse(nested, strlen(nested), "f.json", &p, &err), PATRON_EINPUT);
    assert_non_null(strstr(err.message, "f.json:3: key 'tiers.levels[0].multiplier'"));
    const char *syntax = "{\"points_per_unit\": 1,\n  \"x\" 2}";
    assert_int_equal(program_parse(syntax, strlen(syntax), "f.json", &p, &err), PATRON_EINPUT);
    assert_non_null(strstr(err.message, "f.json:2:"));

    patron_db *db = fresh_db("ovf", 2,
                             "{\"points_per_unit\": 0.3333, \"category_multipliers\": {\"X\": 1.0001}}");
    ledger *l;
    assert_int_equal(ledger_get(db, &l, &err), 0);
    ledger_set_durable(l, 0);
    ledger_result res;
    /* 3 items of 0.01 at 0.3333 x 1.0001: each item alone floors to 0, the order's single
     * floor of the exact sum: floor(3 x 100 x 3333 x 10001 / 10^12) = 0; 10000.00 ->
     * floor(10^8 x 3333 x 10001 / 10^12) = 3333. */
    ledger_item items[3] = {{"s", "X", 1, 1, 100}, {"s", "X", 1, 1, 100}, {"s", "X", 1, 1, 100}};
    ledger_order o = {"r1", 2, 0, T0, 300, items, 3};
    assert_int_equal(ledger_earn(l, &o, &res, &err), 0);
    assert_int_equal(res.points, 0);
    ledger_item big = {"s", "X", 1, 1, 100000000};
    ledger_order o2 = {"r2", 2, 0, T0, 100000000, &big, 1};
    assert_int_equal(ledger_earn(l, &o2, &res, &err), 0);
    assert_int_equal(res.points, 3333); /* 3333.3333 floored once */
    /* Four items of 1.00: 4 x 0.33333333 = 1.33333332 -> 1 (per-item floors would give 0). */
    ledger_item four[4] = {{"s", "X", 1, 1, 10000}, {"s", "X", 1, 1, 10000}, {"s", "X", 1, 1, 10000},
                           {"s", "X", 1, 1, 10000}};
    ledger_order o3 = {"r3", 2, 0, T0, 40000, four, 4};
    assert_int_equal(ledger_earn(l, &o3, &res, &err), 0);
    assert_int_equal(res.points, 1);
    /* An amount near INT64_MAX at this rate is 3e14 points: fine; at a rate of 10^6 it
     * overflows int64 and is refused, nothing stored. */
    ledger_item huge = {"s", "", 1, 0, INT64_MAX};
    ledger_order o4 = {"r4", 2, 1, T0, INT64_MAX, &huge, 1};
    assert_int_equal(ledger_earn(l, &o4, &res, &err), 0);
    assert_int_equal(res.points, (int64_t)((__int128)INT64_MAX * 3333 / 100000000));
    patron_close(db);

    db = fresh_db("ovf2", 2, "{\"points_per_unit\": 1000000}");
    assert_int_equal(ledger_get(db, &l, &err), 0);
    ledger_set_durable(l, 0);
    ledger_verify_report rep;
    ledger_order o5 = {"r5", 2, 0, T0, INT64_MAX, &huge, 1};
    assert_int_equal(ledger_earn(l, &o5, &res, &err), PATRON_EINPUT);
    assert_non_null(strstr(err.message, "overflow"));
    assert_int_equal(ledger_verify(l, &rep, &err), 0);
    assert_int_equal(rep.writes, 0);
    /* Balances: adjustments that would pass INT64_MAX are refused, never wrapped. */
    int64_t total = 0;
    char key[32];
    int refused = 0;
    for (int i = 0; i < 12; i++) {
        snprintf(key, sizeof key, "big%d", i);
        int rc = ledger_adjust(l, 1, 1000000000000000000LL, "big", key, T0, &res, &err);
        if (rc == PATRON_OK)
            total += 1000000000000000000LL;
        else {
            assert_int_equal(rc, PATRON_EINPUT);
            assert_non_null(strstr(err.message, "overflow"));
            refused++;
        }
    }
    assert_int_equal(refused, 3);
    assert_int_equal(ledger_balance(l, 1, T0), total);
    assert_int_equal(ledger_adjust(l, 1, INT64_MIN, "x", "min", T0, &res, &err), PATRON_EINPUT);
    verify_ok(l);
    patron_close(db);
}

/* ---- policies: clawback when points were spent, cancel restores expiry --------------- */

static void test_policies(void **state)
{
    (void)state;
    patron_db *db = fresh_db("policy", 2, prop_program);
    patron_error err = {0};
    ledger *l;
    assert_int_equal(ledger_get(db, &l, &err), 0);
    ledger_set_durable(l, 0);
    ledger_result res;
    ledger_item it = {"s", "C", 1, 1, 800000}; /* 80.00 x 1.25 = 100 points */
    ledger_order o = {"P1", 2, 0, T0, 800000, &it, 1};
    assert_int_equal(ledger_earn(l, &o, &res, &err), 0);
    assert_int_equal(res.points, 100);
    assert_int_equal(ledger_redeem(l, 0, "R1", "k1", T0 + 10, &res, &err), 0);
    assert_int_equal(ledger_balance(l, 0, T0 + 10), 0);
    /* Half the order returned after the points were spent: 50 points clawed back, none
     * left to take, written off (the balance never goes negative). */
    assert_int_equal(ledger_return(l, "PR1", 0, T0 + 20, 400000, "P1", &res, &err), 0);
    assert_int_equal(res.points, 0);
    assert_int_equal(res.shortfall, 50);
    assert_int_equal(ledger_balance(l, 0, T0 + 20), 0);
    /* ... but tier qualification loses them all the same. */
    assert_int_equal(ledger_qualifying(l, 0, T0 + 20, WINDOW, 0), 50);
    /* Cancelling the redemption puts the points back in their lot (same expiry); the
     * clawback was written off, so they are all usable again. */
    assert_int_equal(ledger_cancel(l, "k1", T0 + 30, &res, &err), 0);
    assert_int_equal(ledger_balance(l, 0, T0 + 30), 100);
    assert_int_equal(ledger_balance(l, 0, T0 + EXPIRY - 1), 100);
    assert_int_equal(ledger_balance(l, 0, T0 + EXPIRY), 0); /* expired, job or not */
    /* A void then takes back what the order still stands for: 100 - 50 = 50. */
    assert_int_equal(ledger_void(l, "P1", T0 + 40, &res, &err), 0);
    assert_int_equal(res.points, -50);
    assert_int_equal(ledger_balance(l, 0, T0 + 40), 50);
    assert_int_equal(ledger_qualifying(l, 0, T0 + 40, WINDOW, 0), 0);
    /* Stock: R2 has 3. */
    assert_int_equal(ledger_adjust(l, 1, 2000, "gift", "g", T0, &res, &err), 0);
    for (int i = 0; i < 4; i++) {
        char k[16];
        snprintf(k, sizeof k, "s%d", i);
        int rc = ledger_redeem(l, 1, "R2", k, T0 + 1, &res, &err);
        assert_int_equal(rc, i < 3 ? PATRON_OK : PATRON_EINPUT);
    }
    assert_non_null(strstr(err.message, "out of stock"));
    assert_int_equal(ledger_cancel(l, "s0", T0 + 2, &res, &err), 0);
    assert_int_equal(ledger_redeem(l, 1, "R2", "s4", T0 + 3, &res, &err), 0);
    verify_ok(l);
    patron_close(db);
}

/* ---- two processes -------------------------------------------------------------------- */

static void test_concurrent_redeem(void **state)
{
    (void)state;
    int rounds = long_run ? 50 : 10;
    patron_db *db = fresh_db("conc", 2, prop_program);
    patron_error err = {0};
    ledger *l;
    assert_int_equal(ledger_get(db, &l, &err), 0);
    char path[512];
    snprintf(path, sizeof path, "%s/conc.db", dir);
    patron_close(db);
    for (int r = 0; r < rounds; r++) {
        /* top up to exactly one R1 (100 points) */
        assert_int_equal(patron_open(path, &db, &err), 0);
        assert_int_equal(ledger_get(db, &l, &err), 0);
        char key[32];
        snprintf(key, sizeof key, "top%d", r);
        int64_t bal = ledger_balance(l, 0, T0 + r);
        assert_int_equal(bal, 0);
        ledger_result res;
        assert_int_equal(ledger_adjust(l, 0, 100, "top", key, T0 + r, &res, &err), 0);
        patron_close(db);
        int go[2], out[2];
        assert_int_equal(pipe(go), 0);
        assert_int_equal(pipe(out), 0);
        pid_t kids[2];
        for (int k = 0; k < 2; k++) {
            kids[k] = fork();
            assert_true(kids[k] >= 0);
            if (kids[k] == 0) {
                patron_db *cdb;
                ledger *cl;
                patron_error cerr = {0};
                char c;
                int code = 9;
                if (patron_open(path, &cdb, &cerr) == 0 && ledger_get(cdb, &cl, &cerr) == 0) {
                    close(go[1]);
                    if (read(go[0], &c, 1) != 1) /* both start together */
                        _exit(8);
                    char ck[32];
                    snprintf(ck, sizeof ck, "c%d-%d", r, k);
                    ledger_result cres;
                    int rc = ledger_redeem(cl, 0, "R1", ck, T0 + r, &cres, &cerr);
                    code = rc == PATRON_OK ? 0 : rc == PATRON_EINPUT ? 1 : 7;
                    patron_close(cdb);
                }
                char b = (char)('0' + code);
                if (write(out[1], &b, 1) != 1)
                    _exit(6);
                _exit(0);
            }
        }
        close(go[0]);
        close(out[1]);
        usleep(20000);
        if (write(go[1], "gg", 2) != 2)
            fail_msg("pipe");
        close(go[1]);
        int ok = 0, refused = 0;
        char b;
        while (read(out[0], &b, 1) == 1) {
            ok += b == '0';
            refused += b == '1';
        }
        close(out[0]);
        for (int k = 0; k < 2; k++)
            waitpid(kids[k], NULL, 0);
        assert_int_equal(ok, 1);
        assert_int_equal(refused, 1);
    }
    assert_int_equal(patron_open(path, &db, &err), 0);
    assert_int_equal(ledger_get(db, &l, &err), 0);
    assert_int_equal(ledger_balance(l, 0, T0 + rounds), 0);
    verify_ok(l);
    patron_close(db);
}

/* ---- crash safety ------------------------------------------------------------------- */

/* The writer: adjust and redeem with fresh keys, forever; each acknowledgement ("key
 * points\n") is written after the write returned, i.e. after its commit. */
static void crash_writer(const char *path, int round, int fd)
{
    patron_db *db;
    ledger *l;
    patron_error err = {0};
    if (patron_open(path, &db, &err) || ledger_get(db, &l, &err))
        _exit(3);
    if (write(fd, "ready\n", 6) != 6) /* the parent's clock starts now */
        _exit(4);
    for (int i = 0;; i++) {
        char key[48], line[96];
        ledger_result res;
        int member = i % 3, rc;
        snprintf(key, sizeof key, "w%d-%d", round, i);
        if (i % 3 == 2)
            rc = ledger_redeem(l, (uint32_t)member, "R1", key, T0 + round, &res, &err);
        else
            rc = ledger_adjust(l, (uint32_t)member, 40 + i % 7, "crash", key, T0 + round, &res, &err);
        if (rc == PATRON_OK) {
            int n = snprintf(line, sizeof line, "%s %d %lld\n", key, i % 3 == 2 ? 1 : 0, (long long)res.points);
            if (write(fd, line, (size_t)n) != n)
                _exit(4);
        } else if (rc != PATRON_EINPUT) {
            _exit(5);
        }
    }
}

static void test_crash(void **state)
{
    (void)state;
    int rounds = long_run ? 1000 : 200;
#ifdef __SANITIZE_ADDRESS__
    if (!long_run)
        rounds = 100;
#endif
    patron_db *db;
    char path[512];
    srand(12345);
    long acked_total = 0, kills = 0;
    for (int r = 0; r < rounds; r++) {
        if (r % 25 == 0) { /* a fresh database now and then keeps each round's checks small */
            char name[32];
            snprintf(name, sizeof name, "crash%d", r / 25);
            db = fresh_db(name, 3, prop_program);
            snprintf(path, sizeof path, "%s/%s.db", dir, name);
            patron_close(db);
        }
        int fd[2];
        assert_int_equal(pipe(fd), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fd[0]);
            crash_writer(path, r, fd[1]);
        }
        close(fd[1]);
        char buf[1 << 16];
        size_t len = 0;
        ssize_t n;
        while (len < 6 && (n = read(fd[0], buf + len, 6 - len)) > 0)
            len += (size_t)n;
        assert_memory_equal(buf, "ready\n", 6);
        len = 0;
        usleep((useconds_t)(rand() % 5000));
        kill(pid, SIGKILL);
        int st;
        waitpid(pid, &st, 0);
        kills += WIFSIGNALED(st);
        if (WIFEXITED(st))
            fail_msg("writer exited with %d", WEXITSTATUS(st));
        /* Read the acknowledgements. */
        while ((n = read(fd[0], buf + len, sizeof buf - 1 - len)) > 0)
            len += (size_t)n;
        close(fd[0]);
        buf[len] = '\0';
        patron_error err = {0};
        ledger *l;
        assert_int_equal(patron_open(path, &db, &err), 0);
        assert_int_equal(ledger_get(db, &l, &err), 0);
        ledger_set_durable(l, 0);
        char msg[256];
        assert_int_equal(ledger_integrity(l, msg, sizeof msg, &err), 1);
        /* Every acknowledged write is there, with its first result: a retry replays. */
        char *save = NULL;
        for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            char key[48];
            int is_red;
            long long pts;
            if (sscanf(line, "%47s %d %lld", key, &is_red, &pts) != 3)
                continue; /* the last line may be cut by the kill: not acknowledged */
            int i = atoi(strchr(key, '-') + 1);
            ledger_result res;
            int rc = is_red ? ledger_redeem(l, (uint32_t)(i % 3), "R1", key, T0 + r, &res, &err)
                            : ledger_adjust(l, (uint32_t)(i % 3), 40 + i % 7, "crash", key, T0 + r, &res, &err);
            if (rc)
                fail_msg("round %d: acknowledged %s: %s", r, key, err.message);
            if (!res.replayed)
                fail_msg("round %d: acknowledged write %s was lost", r, key);
            assert_int_equal(res.points, pts);
            acked_total++;
        }
        char m2[256];
        assert_int_equal(ledger_check(l, m2, sizeof m2), 1);
        if (r % 25 == 24 || r == rounds - 1)
            verify_ok(l); /* no write half applied: projections = journal */
        patron_close(db);
    }
    print_message("crash: %ld kills, %ld acknowledged writes checked\n", kills, acked_total);
    assert_true(kills >= rounds * 9 / 10);
    assert_true(acked_total > 0);
}

/* ---- imports earn in their transaction -------------------------------------------------- */

static void test_import_earns(void **state)
{
    (void)state;
    patron_db *db = fresh_db("imp", 2, prop_program);
    patron_error err = {0};
    char ev[512], orders[512];
    snprintf(ev, sizeof ev, "%s/imp.jsonl", dir);
    snprintf(orders, sizeof orders, "%s/imp.csv", dir);
    write_file(orders, "order_id,member_id,ts,sku,qty,price,category\n"
                       "C1,m0,2023-11-15,x,2,40,A\n"
                       "C1,m0,2023-11-15,y,1,8,C\n"
                       "C2,new1,2023-11-16,y,1,8,C\n"
                       "CR,m0,2023-11-17,x,-1,40,A\n");
    patron_import_result res;
    assert_int_equal(patron_import(db, PATRON_IMPORT_ORDERS, orders, NULL, &res, &err), 0);
    ledger *l;
    assert_int_equal(ledger_get(db, &l, &err), 0);
    /* C1: 80 x 1.25 x 2 + 8 x 1.25 = 210; CR (unlinked in CSV): floor(40 x 1.25) = 50 */
    assert_int_equal(ledger_balance(l, 0, T0 + 5 * DAY), 160);
    uint32_t nm;
    assert_true(hmap_get(&db->member_ids, "new1", 4, &nm));
    assert_int_equal(ledger_balance(l, nm, T0 + 5 * DAY), 10);
    write_file(ev, "{\"type\":\"points\",\"event_id\":\"p1\",\"member_id\":\"m1\",\"ts\":\"2023-11-15\",\"points\":300,\"reason\":\"welcome\"}\n"
                   "{\"type\":\"order\",\"order_id\":\"E1\",\"member_id\":\"m1\",\"ts\":\"2023-11-16\",\"items\":[{\"sku\":\"z\",\"category\":\"B\",\"qty\":1,\"price\":16}]}\n"
                   "{\"type\":\"return\",\"order_id\":\"ER\",\"member_id\":\"m1\",\"ts\":\"2023-11-17\",\"original_order_id\":\"E1\",\"amount\":8}\n"
                   "{\"type\":\"redemption\",\"event_id\":\"rd1\",\"member_id\":\"m1\",\"ts\":\"2023-11-18\",\"reward_id\":\"R1\",\"points\":100}\n"
                   "{\"type\":\"void\",\"order_id\":\"C2\",\"member_id\":\"new1\",\"ts\":\"2023-11-19\",\"reason\":\"fraud\"}\n");
    assert_int_equal(patron_import(db, PATRON_IMPORT_EVENTS, ev, NULL, &res, &err), 0);
    assert_int_equal(ledger_get(db, &l, &err), 0);
    /* E1: 16 x 1.25 x 0.5 = 10 (before the promotion window); ER: half -> 5 back. */
    assert_int_equal(ledger_balance(l, 1, T0 + 5 * DAY), 300 + 10 - 5 - 100);
    assert_int_equal(ledger_balance(l, nm, T0 + 6 * DAY), 0);
    /* An overdrawing redemption fails the whole import: nothing of it is stored. */
    write_file(ev, "{\"type\":\"points\",\"event_id\":\"p2\",\"member_id\":\"m1\",\"ts\":\"2023-11-20\",\"points\":5,\"reason\":\"x\"}\n"
                   "{\"type\":\"redemption\",\"event_id\":\"rd2\",\"member_id\":\"m1\",\"ts\":\"2023-11-21\",\"reward_id\":\"R1\",\"points\":9999}\n");
    assert_int_equal(patron_import(db, PATRON_IMPORT_EVENTS, ev, NULL, &res, &err), PATRON_EINPUT);
    assert_non_null(strstr(err.message, "overdraw"));
    assert_int_equal(ledger_get(db, &l, &err), 0);
    assert_int_equal(ledger_balance(l, 1, T0 + 8 * DAY), 205);
    verify_ok(l);
    /* Streams for the rule engine. */
    loyalty_points_row *pr;
    loyalty_redemption_row *rr;
    size_t n;
    assert_int_equal(loyalty_refresh(db, &err), 0);
    assert_int_equal(loyalty_points_stream(db, 1, T0 + 8 * DAY, &pr, &n, &err), 0);
    int64_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += pr[i].points;
    assert_int_equal(n, 4);
    assert_int_equal(sum, 205);
    mem_free(pr);
    assert_int_equal(loyalty_redemptions_stream(db, 1, T0 + 8 * DAY, &rr, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(rr[0].points, 100);
    assert_memory_equal(rr[0].reward_id, "R1", 2);
    mem_free(rr);
    assert_int_equal(loyalty_points_balance(db, 1, T0 + 8 * DAY), 205);
    assert_string_equal(loyalty_tier(db, 1, T0 + 8 * DAY), "base");
    patron_close(db);
}

/* ---- member order ------------------------------------------------------------------ */

typedef struct morder {
    int member, ret, nitems;
    int64_t ts;
    char sku[4][4], cat[4][4];
    int qty[4], price[4];
    size_t pos; /* in the file */
} morder;

static int morder_time_cmp(const void *a, const void *b)
{
    const morder *x = a, *y = b;
    if (x->ts != y->ts)
        return x->ts < y->ts ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* Rows k0 .. k1-1 of an order. */
static void morder_rows(FILE *f, const morder *o, int id, int k0, int k1)
{
    char when[32];
    time_t t = (time_t)o->ts;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    for (int k = k0; k < k1; k++)
        fprintf(f, "O%04d,m%d,%s,%s,%d,%d,%s\n", id, o->member, when, o->sku[k],
                o->ret ? -o->qty[k] : o->qty[k], o->price[k], o->cat[k]);
}

typedef struct hrow {
    int64_t ts, points, expires;
    int kind;
    char ref[32];
} hrow;

static int hrow_cmp(const void *a, const void *b)
{
    const hrow *x = a, *y = b;
    if (x->ts != y->ts)
        return x->ts < y->ts ? -1 : 1;
    if (x->kind != y->kind)
        return x->kind - y->kind;
    return strcmp(x->ref, y->ref);
}

/* A member's history at now as rows without their sequence numbers, sorted. */
static size_t member_rows(ledger *l, uint32_t m, int64_t now, hrow *out, size_t cap)
{
    ledger_history_row *r;
    size_t n;
    patron_error err = {0};
    assert_int_equal(ledger_history(l, m, now, &r, &n, &err), 0);
    assert_true(n <= cap);
    for (size_t i = 0; i < n; i++) {
        out[i] = (hrow){r[i].ts, r[i].points, r[i].expires, r[i].kind, {0}};
        snprintf(out[i].ref, sizeof out[i].ref, "%.*s", (int)r[i].refn, r[i].ref);
    }
    mem_free(r);
    qsort(out, n, sizeof *out, hrow_cmp);
    return n;
}

/* Every member of la and lb at each of the nows: the same history (each write's points,
 * the expiry of each lot), balance, tier and qualification.  Returns the rows compared. */
static size_t same_members(ledger *la, ledger *lb, uint32_t members, const int64_t *nows,
                           size_t n_nows, size_t cap)
{
    hrow *ra = malloc(cap * sizeof *ra), *rb = malloc(cap * sizeof *rb);
    assert_true(ra && rb);
    size_t rows = 0;
    for (uint32_t m = 0; m < members; m++)
        for (size_t t = 0; t < n_nows; t++) {
            size_t na = member_rows(la, m, nows[t], ra, cap);
            size_t nb = member_rows(lb, m, nows[t], rb, cap);
            assert_int_equal(na, nb);
            for (size_t i = 0; i < na; i++) {
                assert_int_equal(ra[i].ts, rb[i].ts);
                assert_int_equal(ra[i].kind, rb[i].kind);
                assert_string_equal(ra[i].ref, rb[i].ref);
                assert_int_equal(ra[i].points, rb[i].points);
                assert_int_equal(ra[i].expires, rb[i].expires);
            }
            rows += na;
            assert_int_equal(ledger_balance(la, m, nows[t]), ledger_balance(lb, m, nows[t]));
            assert_int_equal(ledger_tier(la, m, nows[t]), ledger_tier(lb, m, nows[t]));
            assert_int_equal(ledger_qualifying(la, m, nows[t], WINDOW, 0),
                             ledger_qualifying(lb, m, nows[t], WINDOW, 0));
        }
    free(ra);
    free(rb);
    return rows;
}

/*
 * An orders CSV import posts its orders and returns member by member, each member's in
 * time order (ties in file order).  The reference goes through the ledger in time order:
 * the same orders imported one file per order, oldest first.  Every member must end
 * with the same history (each write's points, the expiry of each lot), balances, tiers
 * and qualification at several times, whatever the file order.  The program has tiers
 * on a 30-day window, 60-day expiry, tier and category promotions with a date window:
 * all of them see the member as they were just before each order.
 */
static void test_member_order(void **state)
{
    (void)state;
    enum { MEMBERS = 24, ORDERS = 420 };
    rng_state = 0x5eed0001;
    morder *o = calloc(ORDERS, sizeof *o);
    assert_non_null(o);
    static const char *skus[] = {"x", "y", "z", "w"}, *cats[] = {"A", "B", "C"};
    for (int i = 0; i < ORDERS; i++) {
        o[i].member = (int)below(MEMBERS);
        o[i].ts = T0 - 120 * DAY + below(240 * DAY);
        if (i && below(10) == 0)
            o[i].ts = o[i - 1].ts; /* ties */
        o[i].ret = below(12) == 0;
        o[i].nitems = 1 + (int)below(4);
        for (int k = 0; k < o[i].nitems; k++) {
            snprintf(o[i].sku[k], sizeof o[i].sku[k], "%s", skus[below(4)]);
            snprintf(o[i].cat[k], sizeof o[i].cat[k], "%s", cats[below(3)]);
            o[i].qty[k] = 1 + (int)below(3);
            o[i].price[k] = 1 + (int)below(90);
        }
    }
    /* One file in a random order (an order's rows together, but for some orders whose
     * last row comes at the end of the file), the order ids fixed. */
    int *perm = malloc(ORDERS * sizeof *perm);
    assert_non_null(perm);
    for (int i = 0; i < ORDERS; i++)
        perm[i] = i;
    for (int i = ORDERS - 1; i > 0; i--) {
        int j = (int)below(i + 1), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    char path[512];
    snprintf(path, sizeof path, "%s/mord-all.csv", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("order_id,member_id,ts,sku,qty,price,category\n", f);
    int split[ORDERS], nsplit = 0;
    for (int p = 0; p < ORDERS; p++) {
        const morder *x = &o[perm[p]];
        o[perm[p]].pos = (size_t)p;
        int last = x->nitems > 1 && below(8) == 0 ? x->nitems - 1 : x->nitems;
        morder_rows(f, x, perm[p], 0, last);
        if (last < x->nitems)
            split[nsplit++] = perm[p];
    }
    for (int k = 0; k < nsplit; k++)
        morder_rows(f, &o[split[k]], split[k], o[split[k]].nitems - 1, o[split[k]].nitems);
    assert_true(nsplit > 0);
    fclose(f);
    patron_error err = {0};
    patron_import_result res;
    patron_db *a = fresh_db("mord-a", MEMBERS, prop_program);
    if (patron_import(a, PATRON_IMPORT_ORDERS, path, NULL, &res, &err) != 0)
        fail_msg("import: %s", err.message);
    /* The reference: one import per order, in time order (ties in file order). */
    patron_db *b = fresh_db("mord-b", MEMBERS, prop_program);
    morder *byt = malloc(ORDERS * sizeof *byt);
    assert_non_null(byt);
    /* The id goes with its order through the sort: pos x ORDERS + id sorts as pos. */
    for (int i = 0; i < ORDERS; i++) {
        byt[i] = o[i];
        byt[i].pos = o[i].pos * ORDERS + (size_t)i;
    }
    qsort(byt, ORDERS, sizeof *byt, morder_time_cmp);
    for (int i = 0; i < ORDERS; i++) {
        f = fopen(path, "w");
        assert_non_null(f);
        fputs("order_id,member_id,ts,sku,qty,price,category\n", f);
        morder_rows(f, &byt[i], (int)(byt[i].pos % ORDERS), 0, byt[i].nitems);
        fclose(f);
        if (patron_import(b, PATRON_IMPORT_ORDERS, path, NULL, &res, &err) != 0)
            fail_msg("import %d: %s", i, err.message);
    }
    ledger *la, *lb;
    assert_int_equal(ledger_get(a, &la, &err), 0);
    assert_int_equal(ledger_get(b, &lb, &err), 0);
    verify_ok(la);
    verify_ok(lb);
    const int64_t nows[] = {T0 - 60 * DAY, T0, T0 + 45 * DAY, T0 + 121 * DAY, T0 + 400 * DAY};
    size_t posted = same_members(la, lb, MEMBERS, nows, sizeof nows / sizeof *nows, ORDERS * 4);
    assert_true(posted > ORDERS); /* the histories were not empty */
    free(byt);
    free(perm);
    free(o);
    patron_close(a);
    patron_close(b);
}

/*
 * A big CSV import is windowed (ledger_batch_window): its journal chunks are made as it
 * goes and its write and posting records dropped.  Against the same import with
 * windows refused: the same history, balance, tier and qualification for every member
 * at several times, in the same process after it (the ledger reloads), and again after
 * a redemption and a second, small import into both.
 */
static void test_window(void **state)
{
    (void)state;
    /* HEAVY orders of one member (more than a window: its lots and qualification rows
     * are kept across windows, and it stays below gold, so every order walks them) */
    enum { MEMBERS = 300, ORDERS = 20000, HEAVY = 6000 };
    rng_state = 0x5eed0002;
    char path[512];
    snprintf(path, sizeof path, "%s/win.csv", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("order_id,member_id,ts,sku,qty,price,category\n", f);
    static const char *cats[] = {"A", "B", "C"};
    for (int i = 0; i < ORDERS + HEAVY; i++) {
        morder o = {0};
        o.member = (int)below(MEMBERS - 1);
        o.ts = T0 - 150 * DAY + below(300 * DAY);
        o.ret = below(15) == 0;
        if (i >= ORDERS) { /* the last member: many small orders, silver but never gold */
            o.member = MEMBERS - 1;
            o.ts = T0 - 150 * DAY + (int64_t)(i - ORDERS) * (300 * DAY / HEAVY);
            o.ret = i % 50 == 0;
            o.nitems = 1;
            snprintf(o.sku[0], sizeof o.sku[0], "s1");
            snprintf(o.cat[0], sizeof o.cat[0], "C");
            o.qty[0] = 1;
            o.price[0] = 1;
            morder_rows(f, &o, i, 0, 1);
            continue;
        }
        o.nitems = 1 + (int)below(3);
        for (int k = 0; k < o.nitems; k++) {
            snprintf(o.sku[k], sizeof o.sku[k], "s%d", (int)below(9));
            snprintf(o.cat[k], sizeof o.cat[k], "%s", cats[below(3)]);
            o.qty[k] = 1 + (int)below(2);
            o.price[k] = 1 + (int)below(60);
        }
        morder_rows(f, &o, i, 0, o.nitems);
    }
    fclose(f);
    patron_error err = {0};
    patron_import_result res;
    patron_db *a = fresh_db("win-a", MEMBERS, prop_program);
    patron_db *b = fresh_db("win-b", MEMBERS, prop_program);
    ledger *la, *lb;
    assert_int_equal(ledger_get(a, &la, &err), 0);
    assert_int_equal(ledger_get(b, &lb, &err), 0);
    ledger_set_window(la, 1); /* (the default) */
    ledger_set_window(lb, 0); /* b: no windows */
    uint64_t before = ledger_windows();
    assert_int_equal(patron_import(a, PATRON_IMPORT_ORDERS, path, NULL, &res, &err), 0);
    assert_true(ledger_windows() >= before + ORDERS / 4096); /* it was windowed */
    before = ledger_windows();
    assert_int_equal(patron_import(b, PATRON_IMPORT_ORDERS, path, NULL, &res, &err), 0);
    assert_int_equal(ledger_windows(), before);
    const int64_t nows[] = {T0 - 100 * DAY, T0, T0 + 151 * DAY};
    /* c: windowed on two threads, the importer's storing the chunks as they come */
    patron_db *c = fresh_db("win-c", MEMBERS, prop_program);
    patron_import_opts two;
    patron_import_opts_init(&two);
    two.threads = 2;
    before = ledger_windows();
    assert_int_equal(patron_import(c, PATRON_IMPORT_ORDERS, path, &two, &res, &err), 0);
    assert_true(ledger_windows() >= before + ORDERS / 4096);
    ledger *lc;
    assert_int_equal(ledger_get(c, &lc, &err), 0);
    assert_int_equal(ledger_get(b, &lb, &err), 0);
    verify_ok(lc);
    assert_true(same_members(lc, lb, MEMBERS, nows, sizeof nows / sizeof *nows, ORDERS) > ORDERS);
    patron_close(c);
    for (int round = 0; round < 2; round++) {
        assert_int_equal(ledger_get(a, &la, &err), 0);
        assert_int_equal(ledger_get(b, &lb, &err), 0);
        verify_ok(la);
        verify_ok(lb);
        assert_true(same_members(la, lb, MEMBERS, nows, sizeof nows / sizeof *nows, ORDERS) >
                    ORDERS);
        if (round)
            break;
        /* Then a redemption and a second import (its keys must be found: a re-import of
         * the first file stores nothing new), into both. */
        uint32_t rich = 0;
        for (uint32_t m = 1; m < MEMBERS; m++)
            if (ledger_balance(la, m, T0 + 151 * DAY) > ledger_balance(la, rich, T0 + 151 * DAY))
                rich = m;
        assert_true(ledger_balance(la, rich, T0 + 151 * DAY) >= 100);
        ledger_result r1, r2;
        assert_int_equal(ledger_redeem(la, rich, "R1", "win-red", T0 + 151 * DAY, &r1, &err), 0);
        assert_int_equal(ledger_redeem(lb, rich, "R1", "win-red", T0 + 151 * DAY, &r2, &err), 0);
        assert_int_equal(r1.balance, r2.balance);
        assert_int_equal(patron_import(a, PATRON_IMPORT_ORDERS, path, NULL, &res, &err), 0);
        assert_int_equal(res.inserted, 0);
        write_file(path, "order_id,member_id,ts,sku,qty,price,category\n"
                         "W1,m3,2024-05-01T10:00:00Z,s1,2,30,A\n"
                         "W2,m4,2024-05-02T10:00:00Z,s2,1,80,B\n");
        assert_int_equal(patron_import(a, PATRON_IMPORT_ORDERS, path, NULL, &res, &err), 0);
        assert_int_equal(patron_import(b, PATRON_IMPORT_ORDERS, path, NULL, &res, &err), 0);
    }
    patron_close(a);
    patron_close(b);
}

/* ---- promotion rules ------------------------------------------------------------------ */

static const char rule_program[] =
    "{\"points_per_unit\": 1, \"rewards\": [{\"id\": \"R1\", \"points\": 1000}],"
    " \"promotions\": [{\"id\": \"third\", \"rule\": \"frequency >= 2\", \"multiplier\": 2}]}";

/* In one process: an import refused after its batch was shown to the rules leaves the
 * model and the view as before (no member, no orders, view = rebuilt); the same member's
 * orders imported next earn as if the refused import never happened; a write through
 * ledger_earn (no import) evaluates the rule too. */
static void test_promo_rules(void **state)
{
    (void)state;
    patron_db *db = fresh_db("prule", 2, rule_program);
    patron_error err = {0};
    patron_import_result res;
    char ev[512];
    snprintf(ev, sizeof ev, "%s/prule.jsonl", dir);
    assert_int_equal(db_view_ensure(db, &err), 0);
    size_t orders_before = db->n_orders;
    write_file(ev, "{\"type\":\"order\",\"order_id\":\"E1\",\"member_id\":\"n1\",\"ts\":\"2024-01-01\",\"amount\":10}\n"
                   "{\"type\":\"order\",\"order_id\":\"E2\",\"member_id\":\"n1\",\"ts\":\"2024-01-02\",\"amount\":10}\n"
                   "{\"type\":\"redemption\",\"event_id\":\"x\",\"member_id\":\"n1\",\"ts\":\"2024-01-03\",\"reward_id\":\"R1\",\"points\":500}\n");
    assert_int_equal(patron_import(db, PATRON_IMPORT_EVENTS, ev, NULL, &res, &err), PATRON_EINPUT);
    assert_non_null(strstr(err.message, "overdraw"));
    uint32_t nm;
    assert_false(hmap_get(&db->member_ids, "n1", 2, &nm));
    assert_int_equal(db->n_members, 2);
    assert_int_equal(db->n_orders, orders_before);
    write_file(ev, "{\"type\":\"order\",\"order_id\":\"E1\",\"member_id\":\"n1\",\"ts\":\"2024-01-01\",\"amount\":10}\n"
                   "{\"type\":\"order\",\"order_id\":\"E2\",\"member_id\":\"n1\",\"ts\":\"2024-01-02\",\"amount\":10}\n"
                   "{\"type\":\"order\",\"order_id\":\"E3\",\"member_id\":\"n1\",\"ts\":\"2024-01-03\",\"amount\":10}\n");
    assert_int_equal(patron_import(db, PATRON_IMPORT_EVENTS, ev, NULL, &res, &err), 0);
    assert_true(hmap_get(&db->member_ids, "n1", 2, &nm));
    ledger *l;
    assert_int_equal(ledger_get(db, &l, &err), 0);
    int64_t now = 1704067200 + 10 * DAY; /* 2024-01-11 */
    assert_int_equal(ledger_balance(l, nm, now), 10 + 10 + 20);
    /* the view kept in place equals one built from the store */
    assert_int_equal(db_view_ensure(db, &err), 0);
    uint64_t live = view_hash(db);
    db_view_free(db);
    assert_int_equal(db_view_ensure(db, &err), 0);
    assert_int_equal(view_hash(db), live);
    /* ledger_earn: n1 has three orders before, m0 none */
    ledger_result r;
    ledger_order o1 = {"W1", 2, nm, now, 10 * PATRON_MONEY_SCALE, NULL, 0};
    ledger_order o2 = {"W2", 2, 0, now, 10 * PATRON_MONEY_SCALE, NULL, 0};
    assert_int_equal(ledger_earn(l, &o1, &r, &err), 0);
    assert_int_equal(r.points, 20);
    assert_int_equal(ledger_earn(l, &o2, &r, &err), 0);
    assert_int_equal(r.points, 10);
    verify_ok(l);
    patron_close(db);
}

/* ---- import batches stored as chunks ------------------------------------------------ */

/* The same writes, once as an import batch (one journal chunk) and once one by one
 * (rows): the two ledgers are identical (state hash), reload to the same state, verify,
 * and a retry of a write stored in a chunk replays it or names the field that differs. */
static void chunk_ops_n(ledger *l, int batch, patron_db *db, int n)
{
    patron_error err = {0};
    static const char *const cats[] = {"A", "B", "C"};
    if (batch) {
        assert_int_equal(store_begin(db->st, &err), 0);
        assert_int_equal(ledger_batch_begin(l, NULL, NULL, 0, &err), 0);
    }
    for (int i = 0; i < n; i++) { /* 4,200 orders: 4,620 writes, more than one chunk */
        char id[32];
        int idn = snprintf(id, sizeof id, "CH%d", i);
        ledger_item it[2] = {{"s", cats[i % 3], 1, 1, 10000 * (1 + i % 7)},
                             {"t", cats[(i + 1) % 3], 1, 1, 30000 * (1 + i % 5)}};
        ledger_order o = {id, (size_t)idn, (uint32_t)(i % 12), T0 + i * 600, it[0].amount + it[1].amount,
                          it, 2};
        ledger_result r;
        assert_int_equal(batch ? ledger_batch_earn(l, &o, &err) : ledger_earn(l, &o, &r, &err), 0);
        if (i % 10 == 9) { /* a linked return: spends from a lot of this batch */
            char rid[32];
            snprintf(rid, sizeof rid, "CHR%d", i);
            int rc = batch ? ledger_batch_return(l, rid, (uint32_t)(i % 12), o.ts + 60, 10000, id, &err)
                           : ledger_return(l, rid, (uint32_t)(i % 12), o.ts + 60, 10000, id, &r, &err);
            assert_int_equal(rc, 0);
        }
    }
    if (batch) {
        assert_int_equal(ledger_batch_end(l, PATRON_OK, &err), 0);
        assert_int_equal(store_commit(db->st, &err), 0);
    }
}

static void chunk_ops(ledger *l, int batch, patron_db *db)
{
    chunk_ops_n(l, batch, db, 4200);
}

/* A batch of more chunks than a flush builds on one thread: built on a second thread
 * while stored, the same ledger as one write at a time. */
static void test_chunks_threaded(void **state)
{
    (void)state;
    patron_error err = {0};
    patron_db *a = fresh_db("chunkt-a", 12, prop_program), *b = fresh_db("chunkt-b", 12, prop_program);
    ledger *la, *lb;
    assert_int_equal(ledger_get(a, &la, &err), 0);
    assert_int_equal(ledger_get(b, &lb, &err), 0);
    ledger_set_durable(la, 0);
    ledger_set_durable(lb, 0);
    chunk_ops_n(la, 1, a, 16000); /* 17,600 writes: 5 chunks */
    chunk_ops_n(lb, 0, b, 16000);
    uint64_t ha = ledger_state_hash(la);
    assert_int_equal(ha, ledger_state_hash(lb));
    ledger_invalidate(la);
    assert_int_equal(ledger_get(a, &la, &err), 0);
    assert_int_equal(ledger_state_hash(la), ha);
    verify_ok(la);
    patron_close(a);
    patron_close(b);
}

static void test_chunks(void **state)
{
    (void)state;
    patron_error err = {0};
    patron_db *a = fresh_db("chunk-a", 12, prop_program), *b = fresh_db("chunk-b", 12, prop_program);
    patron_db *c = fresh_db("chunk-c", 12, prop_program); /* chunks in the first format */
    patron_db *d = fresh_db("chunk-d", 12, prop_program); /* and in the second */
    ledger *la, *lb, *lc, *ld;
    assert_int_equal(ledger_get(a, &la, &err), 0);
    assert_int_equal(ledger_get(b, &lb, &err), 0);
    assert_int_equal(ledger_get(c, &lc, &err), 0);
    assert_int_equal(ledger_get(d, &ld, &err), 0);
    ledger_set_durable(la, 0);
    ledger_set_durable(lb, 0);
    ledger_set_durable(lc, 0);
    ledger_set_durable(ld, 0);
    ledger_set_chunk_format(lc, 1);
    ledger_set_chunk_format(ld, 2);
    chunk_ops(la, 1, a);
    chunk_ops(lb, 0, b);
    chunk_ops(lc, 1, c);
    chunk_ops(ld, 1, d);
    uint64_t ha = ledger_state_hash(la);
    assert_int_equal(ha, ledger_state_hash(lb));
    verify_ok(la);
    ledger_invalidate(la);
    assert_int_equal(ledger_get(a, &la, &err), 0);
    assert_int_equal(ledger_state_hash(la), ha);
    /* read back from format-1 chunks: the same ledger, and verify checks their hashes */
    ledger_invalidate(lc);
    assert_int_equal(ledger_get(c, &lc, &err), 0);
    assert_int_equal(ledger_state_hash(lc), ha);
    verify_ok(lc);
    patron_close(c);
    ledger_invalidate(ld);
    assert_int_equal(ledger_get(d, &ld, &err), 0);
    assert_int_equal(ledger_state_hash(ld), ha);
    verify_ok(ld);
    patron_close(d);
    for (uint32_t m = 0; m < 12; m++)
        assert_int_equal(ledger_balance(la, m, T0 + 20 * DAY), ledger_balance(lb, m, T0 + 20 * DAY));
    /* Retries of writes the chunk holds. */
    ledger_item it[2] = {{"s", "A", 1, 1, 10000}, {"t", "B", 1, 1, 30000}};
    ledger_order o = {"CH0", 3, 0, T0, 40000, it, 2};
    ledger_result first, again;
    assert_int_equal(ledger_earn(lb, &o, &first, &err), 0);
    assert_int_equal(ledger_earn(la, &o, &again, &err), 0);
    assert_int_equal(again.replayed, 1);
    assert_int_equal(again.points, first.points);
    assert_int_equal(again.seq, first.seq);
    o.amount = 40001;
    assert_int_equal(ledger_earn(la, &o, &again, &err), PATRON_EINPUT);
    assert_non_null(strstr(err.message, "'amount'"));
    /* (a chunk stores an earn's key and payload packed: the retry above saw them rebuilt) */
    o.amount = 40000;
    it[1].amount = 30001;
    assert_int_equal(ledger_earn(la, &o, &again, &err), PATRON_EINPUT);
    assert_non_null(strstr(err.message, "'items'"));
    it[1].amount = 30000;
    /* Spending lots the chunk created: their rows now override the derived ones. */
    int64_t now = T0 + 4200 * 600;
    for (uint32_t m = 0; m < 12; m++) {
        char key[32];
        snprintf(key, sizeof key, "spend-%u", m);
        ledger_result ra, rb;
        int rca = ledger_adjust(la, m, -ledger_balance(la, m, now) / 2 - 1, "spend", key, now, &ra, &err);
        int rcb = ledger_adjust(lb, m, -ledger_balance(lb, m, now) / 2 - 1, "spend", key, now, &rb, &err);
        assert_int_equal(rca, 0);
        assert_int_equal(rcb, 0);
        assert_int_equal(ra.balance, rb.balance);
    }
    ha = ledger_state_hash(la);
    assert_int_equal(ha, ledger_state_hash(lb));
    verify_ok(la);
    verify_ok(lb);
    ledger_invalidate(la);
    assert_int_equal(ledger_get(a, &la, &err), 0);
    assert_int_equal(ledger_state_hash(la), ha);
    patron_close(a);
    patron_close(b);
}

/* ---- journal chunk codec ----------------------------------------------------------------- */

/* Every chunk format, written and read back through the store: awkward values too
 * (refs numeric or not, with long prefixes and more digits than a number holds, members
 * absent, times and amounts at the int64 limits, writes out of order for postings,
 * postings and qualification rows that do and do not follow from their write). */
#define CX_W 700
typedef struct cx_rec {
    store_ledger_write w[CX_W];
    store_ledger_posting p[3 * CX_W];
    store_ledger_qual q[CX_W];
    store_ledger_tier t[CX_W];
    size_t np, nq, nt, at;
    char refs[CX_W][64], keys[CX_W][32], pays[CX_W][16];
} cx_rec;

static int cx_w(void *ctx, const store_ledger_write *w)
{
    cx_rec *x = ctx;
    const store_ledger_write *e = &x->w[x->at++];
    assert_int_equal(w->seq, e->seq);
    assert_int_equal(w->kind, e->kind);
    assert_int_equal(w->member, e->member);
    assert_int_equal(w->ts, e->ts);
    assert_int_equal(w->points, e->points);
    assert_int_equal(w->money, e->money);
    assert_int_equal(w->shortfall, e->shortfall);
    assert_int_equal(w->balance, e->balance);
    assert_int_equal(w->keyn, e->keyn);
    assert_memory_equal(w->key, e->key, e->keyn);
    assert_int_equal(w->refn, e->refn);
    assert_memory_equal(w->ref, e->ref, e->refn);
    assert_int_equal(w->payloadn, e->payloadn);
    assert_memory_equal(w->payload, e->payload, e->payloadn);
    return 0;
}

static int cx_p(void *ctx, const store_ledger_posting *p)
{
    cx_rec *x = ctx;
    const store_ledger_posting *e = &x->p[x->at++];
    int64_t got[9] = {p->seq, p->write, p->member, p->debit, p->credit, p->amount, p->lot, p->ts, p->expires};
    int64_t want[9] = {e->seq, e->write, e->member, e->debit, e->credit, e->amount, e->lot, e->ts, e->expires};
    assert_memory_equal(got, want, sizeof got);
    assert_int_equal(p->hash, store_ledger_posting_hash(e));
    return 0;
}

static int cx_q(void *ctx, const store_ledger_qual *q)
{
    cx_rec *x = ctx;
    const store_ledger_qual *e = &x->q[x->at++];
    int64_t got[6] = {q->seq, q->write, q->member, q->ts, q->points, q->spend};
    int64_t want[6] = {e->seq, e->write, e->member, e->ts, e->points, e->spend};
    assert_memory_equal(got, want, sizeof got);
    return 0;
}

static int cx_t(void *ctx, const store_ledger_tier *t)
{
    cx_rec *x = ctx;
    const store_ledger_tier *e = &x->t[x->at++];
    int64_t got[4] = {t->seq, t->write, t->member, t->ts}, want[4] = {e->seq, e->write, e->member, e->ts};
    assert_memory_equal(got, want, sizeof got);
    assert_int_equal(t->tiern, e->tiern);
    assert_memory_equal(t->tier, e->tier, e->tiern);
    return 0;
}

static int64_t wadd(int64_t a, int64_t b)
{
    return (int64_t)((uint64_t)a + (uint64_t)b);
}

static void cx_fill(cx_rec *x)
{
    static const char *const odd_refs[] = {
        "", "abc", "0", "007", "CH5", "CHR9", "O000000123", "12345678901234567890123",
        "18446744073709551615", "9999999999999999999", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx12",
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx7", "a-1", "a-01", "\xc3\xa9t\xc3\xa9-42"};
    size_t n_odd = sizeof odd_refs / sizeof *odd_refs;
    int64_t member = 3, ts = T0, bal = 0;
    x->np = x->nq = x->nt = 0;
    for (size_t i = 0; i < CX_W; i++) {
        store_ledger_write *w = &x->w[i];
        memset(w, 0, sizeof *w);
        w->seq = 1000 + (int64_t)i;
        if (below(5) == 0) { /* the next member (sometimes none, sometimes back) */
            member = below(9) == 0 ? -1 : below(7) == 0 ? member - 2 : member + 1 + below(3);
            bal = 0;
        }
        ts += below(8) == 0 ? -below(DAY * 400) : below(DAY * 60);
        w->member = member;
        w->ts = i == 17 ? INT64_MAX : i == 18 ? INT64_MIN : ts;
        int earn = below(4) != 0;
        w->kind = earn ? 1 : (int)below(7) - 1;
        if (i == 40)
            w->kind = 200;
        if (i % 5 == 0)
            snprintf(x->refs[i], sizeof x->refs[i], "%s", odd_refs[(i / 5) % n_odd]);
        else
            snprintf(x->refs[i], sizeof x->refs[i], "O%09lld", (long long)below(5000000));
        w->ref = x->refs[i];
        w->refn = strlen(x->refs[i]);
        w->key = x->keys[i];
        w->keyn = earn ? 0 : (size_t)snprintf(x->keys[i], sizeof x->keys[i], "k:%zu", i);
        w->points = earn ? below(900) : -below(500);
        w->money = below(10) == 0 ? -below(90000) : below(90000);
        w->shortfall = below(6) == 0 ? below(300) : 0;
        bal = below(10) == 0 ? below(100000) : bal + w->points; /* mostly as an earn moves it */
        w->balance = bal;
        if (i == 23)
            w->points = INT64_MIN, w->money = INT64_MAX, w->balance = INT64_MAX;
        if (earn && below(10) != 0) { /* a packed earn's */
            x->pays[i][0] = 1;
            for (int k = 1; k < 9; k++)
                x->pays[i][k] = (char)below(256);
            w->payloadn = 9;
        } else {
            w->payloadn = (size_t)below(12);
            for (size_t k = 0; k < w->payloadn; k++)
                x->pays[i][k] = (char)below(256);
        }
        w->payload = x->pays[i];
        /* its postings: mostly the one an earn implies */
        int64_t life = below(3) == 0 ? 365 * DAY : below(2) ? 30 * DAY * below(13) : below(DAY * 500);
        int64_t n_post = earn && w->points > 0 ? 1 + below(2) : below(3);
        for (int64_t k = 0; k < n_post; k++) {
            store_ledger_posting *p = &x->p[x->np];
            int64_t seq = 5000 + (int64_t)x->np++;
            int implied = k == 0 && earn && w->points > 0 && below(5) != 0;
            *p = (store_ledger_posting){seq, w->seq, w->member, 1, 0, w->points, seq, w->ts,
                                        wadd(w->ts, life), 0};
            if (!implied) {
                p->debit = (int)below(5);
                p->credit = (p->debit + 1 + (int)below(4)) % 5;
                p->amount = 1 + below(1000);
                p->lot = seq - below(50);
                p->member = below(4) ? w->member : below(100);
                p->ts = wadd(w->ts, -below(3));
                p->expires = below(3) == 0 ? INT64_MIN + below(5) : wadd(p->ts, life);
            }
            if (x->np == 30) /* a posting of a write before the chunk's */
                p->write = 1;
            if (x->np > 31 && below(40) == 0) /* and one out of order */
                p->write = p[-1].write - 1 - below(3);
        }
        if (below(6) != 0) {
            store_ledger_qual *q = &x->q[x->nq];
            int64_t seq = 9000 + (int64_t)x->nq++;
            *q = (store_ledger_qual){seq, w->seq, w->member, w->ts, w->points, w->money};
            if (below(4) == 0)
                q->spend = 0, q->points = wadd(0, -below(99));
            if (x->nq == 5)
                q->write = 2;
        }
        if (below(20) == 0) {
            static const char *const names[] = {"silver", "gold", ""};
            store_ledger_tier *t = &x->t[x->nt];
            t->seq = 20000 + (int64_t)x->nt++;
            t->write = below(9) == 0 ? 3 : w->seq;
            t->member = w->member;
            t->ts = wadd(w->ts, below(2));
            t->tier = names[below(3)];
            t->tiern = strlen(t->tier);
        }
    }
}

static void test_chunk_codec(void **state)
{
    (void)state;
    static cx_rec x;
    patron_error err = {0};
    for (int fmt = 1; fmt <= 4; fmt++) {
        rng_state = 77; /* the same records in every format */
        cx_fill(&x);
        char name[32];
        snprintf(name, sizeof name, "codec-%d", fmt);
        patron_db *db = fresh_db(name, 1, NULL);
        store_ledger *sl;
        assert_int_equal(store_ledger_open(db->st, &sl, &err), 0);
        store_ledger_chunk *c = store_ledger_chunk_new(fmt);
        assert_non_null(c);
        store_ledger_chunk_begin(c);
        for (size_t i = 0; i < CX_W; i++)
            assert_int_equal(store_ledger_chunk_write(c, &x.w[i]), 0);
        for (size_t i = 0; i < x.np; i++)
            assert_int_equal(store_ledger_chunk_posting(c, &x.p[i]), 0);
        for (size_t i = 0; i < x.nq; i++)
            assert_int_equal(store_ledger_chunk_qual(c, &x.q[i]), 0);
        for (size_t i = 0; i < x.nt; i++)
            assert_int_equal(store_ledger_chunk_tier(c, &x.t[i]), 0);
        assert_int_equal(store_begin(db->st, &err), 0);
        assert_int_equal(store_ledger_chunk_end(sl, c, &err), 0);
        assert_int_equal(store_commit(db->st, &err), 0);
        store_ledger_chunk_free(c);
        x.at = 0;
        assert_int_equal(store_ledger_writes_each(sl, cx_w, &x, &err), 0);
        assert_int_equal(x.at, CX_W);
        x.at = 0;
        assert_int_equal(store_ledger_postings_each(sl, cx_p, &x, &err), 0);
        assert_int_equal(x.at, x.np);
        x.at = 0;
        assert_int_equal(store_ledger_quals_each(sl, cx_q, &x, &err), 0);
        assert_int_equal(x.at, x.nq);
        x.at = 0;
        assert_int_equal(store_ledger_tiers_each(sl, cx_t, &x, &err), 0);
        assert_int_equal(x.at, x.nt);
        /* a write read back on its own (the key lookup of a retry) */
        for (size_t i = 0; i < CX_W; i += 37) {
            store_ledger_write w;
            assert_int_equal(store_ledger_write_get_seq(sl, x.w[i].seq, &w, &err), 1);
            x.at = i;
            cx_w(&x, &w);
        }
        store_ledger_free(sl);
        patron_close(db);
    }
}

/* ---- birthday and enrollment bonuses ------------------------------------------------ */

static void test_bonuses(void **state)
{
    (void)state;
    static const char prog[] = "{\"points_per_unit\": 1, \"bonuses\": {\"birthday\": 40, \"enrollment\": 15},"
                               " \"tiers\": {\"levels\": [{\"name\": \"base\", \"threshold\": 0},"
                               " {\"name\": \"vip\", \"threshold\": 50}]}}";
    patron_db *db = fresh_db("bonus", 4, prog);
    patron_error err = {0};
    ledger *l;
    assert_int_equal(ledger_get(db, &l, &err), 0);
    ledger_set_durable(l, 0);
    /* m0: born 1990-03-05; m1: no birth date; m2: born 29 February; m3 enrolls later. */
    int64_t enrolled[4] = {T0, T0, T0, T0 + 200 * DAY};
    int32_t birth[4] = {(int32_t)time_days_from_civil(1990, 3, 5), INT32_MIN,
                        (int32_t)time_days_from_civil(2000, 2, 29), (int32_t)time_days_from_civil(1980, 1, 2)};
    int64_t now = time_days_from_civil(2024, 3, 10) * DAY, c[2];
    assert_int_equal(ledger_bonuses(l, now, enrolled, birth, 4, c, &err), 0);
    assert_int_equal(c[0], 2); /* m0 and m2; m3 has not enrolled yet */
    assert_int_equal(c[1], 3);
    assert_int_equal(ledger_balance(l, 0, now), 55);
    assert_int_equal(ledger_balance(l, 1, now), 15);
    assert_int_equal(ledger_balance(l, 3, now), 0);
    assert_int_equal(ledger_tier(l, 0, now), 1); /* bonuses count for qualification */
    assert_int_equal(ledger_tier(l, 1, now), 0);
    /* 2024 is a leap year: 29 February itself. */
    assert_int_equal(ledger_balance(l, 2, time_days_from_civil(2024, 2, 29) * DAY), 55);
    assert_int_equal(ledger_balance(l, 2, time_days_from_civil(2024, 2, 29) * DAY - 1), 15);
    uint64_t h = ledger_state_hash(l);
    for (int k = 0; k < 3; k++) { /* again: nothing more */
        assert_int_equal(ledger_bonuses(l, now + k * DAY, enrolled, birth, 4, c, &err), 0);
        assert_int_equal(c[0] + c[1], 0);
    }
    assert_int_equal(ledger_state_hash(l), h);
    /* A year on: every member with a birth date gets the next one (m3: enrolled, then
     * 2025-01-02); 2025 is common: m2 on 28 February. */
    now = time_days_from_civil(2025, 3, 6) * DAY;
    assert_int_equal(ledger_bonuses(l, now, enrolled, birth, 4, c, &err), 0);
    assert_int_equal(c[0], 3);
    assert_int_equal(c[1], 1);
    assert_int_equal(ledger_balance(l, 2, time_days_from_civil(2025, 2, 28) * DAY) -
                         ledger_balance(l, 2, time_days_from_civil(2025, 2, 28) * DAY - 1),
                     40);
    assert_int_equal(ledger_balance(l, 1, now), 15);
    verify_ok(l);
    patron_close(db);
}

int main(void)
{
    /* tmpfs when there is one: the crash test kills processes, not the machine, so page
     * cache durability is what it checks, and fsync there costs nothing. */
    const char *tmp = getenv("TMPDIR");
    if (access("/dev/shm", W_OK) == 0)
        tmp = "/dev/shm";
    snprintf(dir, sizeof dir, "%s/patron-ledger-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir))
        return 1;
    long_run = getenv("PATRON_LONG") && *getenv("PATRON_LONG") == '1';
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_overflow_and_rounding),
        cmocka_unit_test(test_policies),
        cmocka_unit_test(test_retries),
        cmocka_unit_test(test_import_earns),
        cmocka_unit_test(test_member_order),
        cmocka_unit_test(test_window),
        cmocka_unit_test(test_promo_rules),
        cmocka_unit_test(test_chunks),
        cmocka_unit_test(test_chunks_threaded),
        cmocka_unit_test(test_chunk_codec),
        cmocka_unit_test(test_bonuses),
        cmocka_unit_test(test_concurrent_redeem),
        cmocka_unit_test(test_crash),
        cmocka_unit_test(test_property),
    };
    if (getenv("PATRON_TEST_FILTER")) /* e.g. PATRON_TEST_FILTER=test_crash */
        cmocka_set_test_filter(getenv("PATRON_TEST_FILTER"));
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        rc = rc ? rc : 1;
    return rc;
}
