/*
 * test_rules_diff.c -- differential test of the rule evaluators: random members and
 * events go through the public importers into a temporary store, thousands of random
 * well-typed rules are generated from the grammar (SPEC §3), and for several values of
 * now the compiled evaluator (rule_eval_all) must give, for every member, what the
 * reference interpreter (rule_ref_eval) gives.
 *
 * The generator learns the schema from the checked view itself (member fields from
 * rule_member_fields, typed by compiling "NAME is null"; stream fields from the view),
 * and draws string literals both from the dictionaries (present) and from a list of
 * strings no data holds (absent).  Timestamps cluster at the edges that matter: exactly
 * now - 90d, now - 180d, now, one second either side, and the future.
 *
 * Fixed seed, fast by default; PATRON_LONG=1 runs more seeds and rules.  A mismatch
 * prints the rule, the member and now, and fails.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/time.h"
#include "core/db.h"
#include "rules/eval.h"
#include "rules/ref.h"
#include "rules/rule.h"

#include <math.h>
#include <roaring/roaring.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256];

/* ---- random numbers (splitmix64: reproducible everywhere) ---------------------------- */

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rnext(rng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static int rint_(rng *r, int n) /* 0..n-1 */
{
    return (int)(rnext(r) % (uint64_t)n);
}

static int chance(rng *r, int pct)
{
    return rint_(r, 100) < pct;
}

#define PICK(r, arr) ((arr)[rint_((r), (int)(sizeof(arr) / sizeof *(arr)))])

/* ---- the data set --------------------------------------------------------------------- */

#define DAY 86400
#define N_NOWS 4

typedef struct dataset {
    int n_members;
    int64_t nows[N_NOWS];
} dataset;

/* What the test wrote, kept to check the reference against the raw data: one entry per
 * order or return (CSV and JSONL), money in units of 1/PATRON_MONEY_SCALE. */
typedef struct lrow {
    char member[16]; /* "" = guest */
    int64_t ts, money;
    int is_return, voided;
} lrow;

static lrow *ledger;
static size_t n_ledger, cap_ledger;

static lrow *ledger_add(const char *member, int64_t ts, int is_return)
{
    if (n_ledger == cap_ledger) {
        cap_ledger = cap_ledger ? 2 * cap_ledger : 1024;
        ledger = realloc(ledger, cap_ledger * sizeof *ledger);
        assert_non_null(ledger);
    }
    lrow *l = &ledger[n_ledger++];
    snprintf(l->member, sizeof l->member, "%s", member);
    l->ts = ts;
    l->money = 0;
    l->is_return = is_return;
    l->voided = 0;
    return l;
}

static const char *const countries[] = {"DE", "FR", "US", "GB", "es"};
static const char *const cities[] = {"Berlin", "Paris", "Austin", "Leeds", "Köln"};
static const char *const genders[] = {"f", "m", "x"};
static const char *const langs[] = {"de", "en", "fr"};
static const char *const channels[] = {"email", "sms", "push", "app", "web", "social", "mail"};
static const char *const tags[] = {"eco-friendly", "running", "books", "tech", "vegan"};
static const char *const skus[] = {"SKU1", "SKU2", "SKU3", "SKU4", "SKU5", "SKU6", "SKU7", "SKU8"};
static const char *const cats[] = {"shoes", "shirts", "books", "toys", ""};
static const char *const brands[] = {"acme", "zenith", "Acme", ""};
static const char *const tiers[] = {"gold", "silver", "bronze", "x y"};
static const char *const actions[] = {"sent", "delivered", "opened", "clicked", "converted",
                                      "unsubscribed", "bounced"};
static const char *const consent_vals[] = {"true", "false", "", "yes", "0"};

/* A timestamp near one of the nows: mostly spread over the last ~400 days, often exactly
 * on a window edge, sometimes in the future. */
static int64_t rand_ts(rng *r, const dataset *d)
{
    int64_t now = d->nows[rint_(r, N_NOWS)];
    static const int64_t edges[] = {0, 90 * DAY, 180 * DAY, 30 * DAY, 7 * DAY, 365 * DAY,
                                    60 * DAY};
    switch (rint_(r, 10)) {
    case 0:
    case 1:
        return now - PICK(r, edges) + (rint_(r, 3) - 1); /* on an edge, or a second off */
    case 2:
        return now + 1 + rint_(r, 40 * DAY); /* the future */
    default:
        return now - rint_(r, 400 * DAY);
    }
}

static void write_members(rng *r, dataset *d, const char *path)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("member_id,enrolled_at,birth_date,gender,country,city,language,preferred_channel,"
          "signup_channel,email,interests,consent_email,consent_sms,consent_push,"
          "consent_marketing,consent_profiling,consent_personalization,consent_updated_at,"
          "vip,score,tier_hint,Lucky Number\n",
          f);
    for (int i = 0; i < d->n_members; i++) {
        fprintf(f, "M%d,", i);
        if (chance(r, 85))
            fprintf(f, "%lld", (long long)(d->nows[0] - rint_(r, 1500) * (int64_t)DAY - rint_(r, DAY)));
        fputc(',', f);
        if (chance(r, 80)) {
            int y, m, dd;
            int k = rint_(r, 10);
            if (k == 0) { /* a leap-day birthday */
                y = PICK(r, ((const int[]){1992, 1996, 2000, 2004}));
                m = 2, dd = 29;
            } else if (k <= 2) { /* a birthday on, just before or just after one of the nows */
                time_civil_from_days(time_day_of(d->nows[rint_(r, N_NOWS)]) + rint_(r, 3) - 1,
                                     &y, &m, &dd);
                y = 1950 + rint_(r, 60);
                if (m == 2 && dd == 29)
                    dd = 28;
            } else {
                y = 1940 + rint_(r, 75), m = 1 + rint_(r, 12), dd = 1 + rint_(r, 28);
            }
            fprintf(f, "%04d-%02d-%02d", y, m, dd);
        }
        fprintf(f, ",%s,%s,%s,%s,%s,%s,", chance(r, 85) ? PICK(r, genders) : "",
                chance(r, 90) ? PICK(r, countries) : "", chance(r, 70) ? PICK(r, cities) : "",
                chance(r, 80) ? PICK(r, langs) : "", chance(r, 70) ? PICK(r, channels) : "",
                chance(r, 60) ? PICK(r, ((const char *const[]){"web", "app", "store"})) : "");
        if (chance(r, 70))
            fprintf(f, "m%d@example.com", i);
        fputc(',', f);
        int nt = rint_(r, 4);
        for (int t = 0; t < nt; t++)
            fprintf(f, "%s%s", t ? ";" : "", PICK(r, tags));
        for (int k = 0; k < 6; k++)
            fprintf(f, ",%s", PICK(r, consent_vals));
        fprintf(f, ",%lld,", (long long)(d->nows[0] - rint_(r, 800) * (int64_t)DAY));
        if (chance(r, 70))
            fputs(chance(r, 50) ? "true" : "false", f);
        fputc(',', f);
        if (chance(r, 75)) {
            if (chance(r, 50))
                fprintf(f, "%d", rint_(r, 200) - 50);
            else
                fprintf(f, "%d.%d", rint_(r, 100), rint_(r, 10));
        }
        fprintf(f, ",%s,", chance(r, 60) ? PICK(r, tiers) : "");
        if (chance(r, 50))
            fprintf(f, "%d", rint_(r, 10));
        fputc('\n', f);
    }
    fclose(f);
}

/* A price as text into buf; returns it in money units. */
static int64_t price(rng *r, char *buf, size_t cap)
{
    int a, b;
    if (chance(r, 30)) {
        a = rint_(r, 80), b = rint_(r, 10000);
        snprintf(buf, cap, "%d.%04d", a, b);
        return (int64_t)a * 10000 + b;
    }
    a = rint_(r, 120), b = rint_(r, 100);
    snprintf(buf, cap, "%d.%02d", a, b);
    return (int64_t)a * 10000 + (int64_t)b * 100;
}

/* Orders as CSV line items: orders of 1-4 items, some with a returned (negative) row
 * inside, returns (all rows negative), guest sales. */
static int write_orders(rng *r, const dataset *d, const char *path, int n_orders)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("order_id,member_id,ts,sku,qty,price,category,brand\n", f);
    for (int o = 0; o < n_orders; o++) {
        int member = chance(r, 5) ? -1 : rint_(r, d->n_members);
        int64_t ts = rand_ts(r, d);
        int is_return = chance(r, 10);
        int lines = 1 + rint_(r, 4);
        char mid[32] = "";
        if (member >= 0)
            snprintf(mid, sizeof mid, "M%d", member);
        lrow *lr = ledger_add(mid, ts, is_return); /* entry o */
        for (int l = 0; l < lines; l++) {
            char pr[32];
            int64_t money = price(r, pr, sizeof pr);
            int qty = 1 + rint_(r, 3);
            if (is_return)
                qty = -qty;
            else if (l > 0 && chance(r, 10)) {
                int c = rint_(r, 100);
                qty = -1;
                snprintf(pr, sizeof pr, "0.%02d", c);
                money = (int64_t)c * 100;
            }
            lr->money += (is_return ? -qty : qty) * money;
            fprintf(f, "%s%d,%s,%lld,%s,%d,%s,%s,%s\n", is_return ? "R" : "O", o, mid,
                    (long long)ts, PICK(r, skus), qty, pr, PICK(r, cats), PICK(r, brands));
            if (!is_return && chance(r, 5)) { /* an identical row: a separate line item */
                fprintf(f, "O%d,%s,%lld,SKU1,1,%s,,\n", o, mid, (long long)ts, pr);
                lr->money += money;
            }
        }
    }
    fclose(f);
    return n_orders;
}

static void write_events(rng *r, const dataset *d, const char *path, int n_events)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int e = 0; e < n_events; e++) {
        /* A few members exist only through events. */
        char mid[32];
        if (chance(r, 3))
            snprintf(mid, sizeof mid, "E%d", rint_(r, 20));
        else
            snprintf(mid, sizeof mid, "M%d", rint_(r, d->n_members));
        long long ts = (long long)rand_ts(r, d);
        fprintf(f, "{\"type\":");
        switch (rint_(r, 12)) {
        case 0:
        case 1:
        case 2:
            fprintf(f, "\"message\",\"campaign_id\":\"c%d\",\"channel\":\"%s\"", rint_(r, 5),
                    PICK(r, channels));
            if (chance(r, 90))
                fprintf(f, ",\"action\":\"%s\"", PICK(r, actions));
            break;
        case 3:
        case 4:
            fprintf(f, "\"view\",\"sku\":\"%s\"", PICK(r, skus));
            if (chance(r, 70))
                fprintf(f, ",\"category\":\"%s\"", PICK(r, cats));
            break;
        case 5:
            fprintf(f, "\"referral\",\"referred_member_id\":\"M%d\"", rint_(r, d->n_members));
            break;
        case 6:
            fprintf(f, "\"survey\",\"answers\":{\"nps\":%d,\"fav_color\":\"%s\"}", rint_(r, 11),
                    chance(r, 50) ? "blue" : "green");
            break;
        case 7:
            fprintf(f, "\"custom\",\"name\":\"%s\"", chance(r, 50) ? "app_open" : "wishlist");
            break;
        case 8:
            fprintf(f, "\"points\",\"reason\":\"%s\"", chance(r, 50) ? "bonus" : "adjust");
            if (chance(r, 90))
                fprintf(f, ",\"points\":%d", rint_(r, 400) - 100);
            break;
        case 9:
            fprintf(f, "\"redemption\",\"reward_id\":\"r%d\",\"points\":%d", rint_(r, 3),
                    rint_(r, 500));
            break;
        case 10: {
            int purpose = chance(r, 40);
            fprintf(f, "\"consent\",\"%s\":\"%s\",\"status\":\"%s\"",
                    purpose ? "purpose" : "channel",
                    purpose ? PICK(r, ((const char *const[]){"marketing", "profiling",
                                                            "personalization"}))
                            : PICK(r, channels),
                    chance(r, 60) ? "granted" : "denied");
            if (chance(r, 50))
                fprintf(f, ",\"expires_at\":%lld", (long long)rand_ts(r, d));
            break;
        }
        default:
            /* an order or return given as an amount (no line items) */
        {
            int ret = !chance(r, 70), a = rint_(r, ret ? 60 : 300), b = rint_(r, 100);
            if (ret)
                fprintf(f, "\"return\",\"order_id\":\"JR%d\",\"amount\":\"%d.%02d\"", e, a, b);
            else
                fprintf(f, "\"order\",\"order_id\":\"J%d\",\"amount\":\"%d.%02d\",\"channel\":\"web\"",
                        e, a, b);
            ledger_add(mid, (int64_t)ts, ret)->money = (int64_t)a * 10000 + (int64_t)b * 100;
            break;
        }
        }
        fprintf(f, ",\"member_id\":\"%s\",\"ts\":%lld,\"event_id\":\"e%d\"}\n", mid, ts, e);
    }
    fclose(f);
}

/* ---- the store ------------------------------------------------------------------------- */

static patron_db *build_db(rng *r, dataset *d, int n_members, int n_orders, int n_events)
{
    d->n_members = n_members;
    n_ledger = 0;
    int64_t base;
    assert_int_equal(time_parse("2024-06-15T12:00:00Z", 20, &base), 0);
    d->nows[0] = base;
    d->nows[1] = base - 90 * DAY;        /* an earlier look: many events are its future */
    d->nows[2] = base + 37 * DAY + 3601; /* later, off the day boundary */
    d->nows[3] = base - 1;
    char path[600], db_path[600];
    snprintf(db_path, sizeof db_path, "%s/diff-%llu.db", dir, (unsigned long long)r->s);
    unlink(db_path);
    patron_db *db;
    patron_error err = {0};
    assert_int_equal(patron_open(db_path, &db, &err), 0);
    patron_import_opts o;
    patron_import_opts_init(&o);
    o.now = base - 400 * DAY;
    patron_import_result res;

    snprintf(path, sizeof path, "%s/members.csv", dir);
    write_members(r, d, path);
    if (patron_import(db, PATRON_IMPORT_MEMBERS, path, &o, &res, &err) != 0)
        fail_msg("members import: %s", err.message);
    snprintf(path, sizeof path, "%s/orders.csv", dir);
    write_orders(r, d, path, n_orders);
    if (patron_import(db, PATRON_IMPORT_ORDERS, path, &o, &res, &err) != 0)
        fail_msg("orders import: %s", err.message);
    snprintf(path, sizeof path, "%s/events.jsonl", dir);
    write_events(r, d, path, n_events);
    if (patron_import(db, PATRON_IMPORT_EVENTS, path, &o, &res, &err) != 0)
        fail_msg("events import: %s", err.message);
    /* Voids: some stored orders and returns (CSV and JSONL) no longer count. */
    snprintf(path, sizeof path, "%s/voids.jsonl", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int k = 0; k < n_orders / 15; k++) {
        int o2 = rint_(r, n_orders), ret = chance(r, 15);
        fprintf(f, "{\"type\":\"void\",\"order_id\":\"%s%d\",\"member_id\":\"M0\",\"ts\":%lld,"
                   "\"reason\":\"fraud\"}\n",
                ret ? "R" : "O", o2, (long long)base);
        if (ledger[o2].is_return == ret) /* else no such id: a bad row, skipped */
            ledger[o2].voided = 1;
    }
    fclose(f);
    o.max_errors = n_orders; /* a void of an id that is not an order (R vs O) is a bad row */
    if (patron_import(db, PATRON_IMPORT_EVENTS, path, &o, &res, &err) != 0)
        fail_msg("voids import: %s", err.message);
    assert_int_equal(db_view_ensure(db, &err), 0);
    return db;
}

/* ---- segments for in_segment ------------------------------------------------------------ */

typedef struct segs {
    roaring_bitmap_t *stat;
} segs;

static const char *const seg_names[] = {"buyers", "recent_de", "nested", "model", "static",
                                        "with_agg"};

static int seg_lookup(void *ctx, const char *name, const char **text, const void **members)
{
    segs *s = ctx;
    *text = NULL;
    *members = NULL;
    if (strcmp(name, "buyers") == 0)
        *text = "frequency >= 2 -- repeat buyers";
    else if (strcmp(name, "recent_de") == 0)
        *text = "country = \"DE\" and recency_days <= 90";
    else if (strcmp(name, "nested") == 0)
        *text = "in_segment(\"buyers\") or not consent.email";
    else if (strcmp(name, "model") == 0)
        *text = "p_alive is null and in_segment(\"buyers\")";
    else if (strcmp(name, "with_agg") == 0)
        *text = "count(items where category = \"shoes\", 180d..30d) >= 1 or "
                "sum(returns.amount) > 10";
    else if (strcmp(name, "static") == 0)
        *members = s->stat;
    else
        return 0;
    return 1;
}

/* ---- the schema, as the checker sees it ------------------------------------------------ */

typedef struct mfield {
    const char *name;
    vtype type;
    const strdict *dict; /* strings: which values compare with it */
    int is_id;           /* member_id */
    vcol col;            /* strings: its column, to draw literals the data holds */
} mfield;

typedef struct schema {
    patron_db *db;
    mview *v;
    rule_env env;
    mfield f[128];
    size_t nf;
    char attr_names[32][80];
} schema;

static void schema_learn(schema *s, patron_db *db, segs *sg)
{
    s->db = db;
    s->v = db->view;
    s->env.db = db;
    s->env.segment = seg_lookup;
    s->env.ctx = sg;
    const char *names[128];
    size_t n = 0;
    for (size_t i = 0; rule_member_fields[i]; i++)
        if (strcmp(rule_member_fields[i], "interests") != 0)
            names[n++] = rule_member_fields[i];
    for (size_t i = 0; i < s->v->n_attr && i < 30; i++) {
        snprintf(s->attr_names[i], sizeof s->attr_names[i], "attributes.%s", s->v->attr[i].name);
        names[n++] = s->attr_names[i];
    }
    names[n++] = "attributes.qqq_never_seen_zz"; /* no member has it: always null */
    s->nf = 0;
    for (size_t i = 0; i < n; i++) {
        char src[200];
        snprintf(src, sizeof src, "%s is null", names[i]);
        rule *r;
        patron_error err = {0};
        if (rule_compile(src, &s->env, &r, &err) != 0)
            fail_msg("probing field %s: %s", names[i], err.message);
        const rnode *fn = r->root->a;
        mfield *mf = &s->f[s->nf++];
        mf->name = names[i];
        mf->type = fn->type;
        mf->is_id = fn->ref == REF_MEMBER_ID;
        mf->dict = fn->ref == REF_MEMBER_ID ? NULL : fn->vc.dict;
        mf->col = fn->vc;
        if (fn->ref != REF_COL)
            mf->col.data = NULL;
        rule_free(r);
    }
}

/* ---- the rule generator ------------------------------------------------------------------- */

typedef struct gen {
    rng *r;
    schema *s;
    const stream *st; /* inside an aggregate's where: its stream */
    char *buf;
    size_t n, cap;
    int depth;
} gen;

static void put(gen *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(gen *g, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(g->buf + g->n, g->cap - g->n, fmt, ap);
    va_end(ap);
    assert_true(k >= 0 && (size_t)k < g->cap - g->n);
    g->n += (size_t)k;
}

static void put_quoted(gen *g, const char *s, size_t n)
{
    put(g, "\"");
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\')
            put(g, "\\");
        put(g, "%c", s[i]);
    }
    put(g, "\"");
}

static const char *const absent[] = {"XX", "nope", "Zürich", "SKU999", "", "gold ", "de"};

/* A string literal that compares with dict: present in it (most of the time) or not. */
static void gen_str_lit(gen *g, const strdict *dict, int is_id);

/* A literal some row of col holds (col has nrows rows), else any literal for dict. */
static void gen_str_lit_from(gen *g, const vcol *col, uint32_t nrows, const strdict *dict, int is_id)
{
    if (col && col->data && col->st == VS_CODE && dict && nrows && chance(g->r, 60)) {
        uint32_t row = (uint32_t)rint_(g->r, (int)nrows);
        uint32_t code = ((const uint32_t *)col->data)[col->via ? col->via[row] : row];
        if (code) {
            size_t len;
            const char *t = strdict_str(dict, code, &len);
            put_quoted(g, t, len);
            return;
        }
    }
    gen_str_lit(g, dict, is_id);
}

static void gen_str_lit(gen *g, const strdict *dict, int is_id)
{
    if (is_id) {
        if (chance(g->r, 80)) {
            uint32_t m = (uint32_t)rint_(g->r, (int)g->s->db->n_members);
            const char *id = g->s->db->member_id[m];
            put_quoted(g, id, strlen(id));
        } else {
            put(g, "\"M99999\"");
        }
        return;
    }
    if (dict && dict->n && chance(g->r, 75)) {
        size_t len;
        const char *t = strdict_str(dict, 1 + (uint32_t)rint_(g->r, (int)dict->n), &len);
        put_quoted(g, t, len);
        return;
    }
    const char *a = PICK(g->r, absent);
    put_quoted(g, a, strlen(a));
}

static void gen_bool(gen *g);
static void gen_num(gen *g);

/* The member fields (or, inside where, the stream's fields) of type t. */
static const vcol *picked_col;
static uint32_t picked_rows;

static int pick_field(gen *g, vtype t, const char **name, const strdict **dict, int *is_id)
{
    const char *cand[128];
    const strdict *cd[128];
    const vcol *cc[128];
    int cid[128];
    int n = 0;
    if (g->st) {
        for (size_t i = 0; i < g->st->n_fields; i++)
            if (g->st->fields[i].col.type == t) {
                cand[n] = g->st->fields[i].name;
                cd[n] = g->st->fields[i].col.dict;
                cc[n] = &g->st->fields[i].col;
                cid[n++] = 0;
            }
    } else {
        for (size_t i = 0; i < g->s->nf; i++)
            if (g->s->f[i].type == t || (g->s->f[i].type == VT_NULL && chance(g->r, 10))) {
                cand[n] = g->s->f[i].name;
                cd[n] = g->s->f[i].dict;
                cc[n] = &g->s->f[i].col;
                cid[n++] = g->s->f[i].is_id;
            }
    }
    if (n == 0)
        return 0;
    int k = rint_(g->r, n);
    *name = cand[k];
    picked_col = cc[k];
    picked_rows = g->st ? (uint32_t)g->st->nrows : g->s->db->n_members;
    if (dict)
        *dict = cd[k];
    if (is_id)
        *is_id = cid[k];
    return 1;
}

static const stream *pick_stream(gen *g)
{
    return &g->s->v->streams[rint_(g->r, ST__N)];
}

static void gen_window(gen *g)
{
    static const char *const windows[] = {"90d", "30d", "180d..90d", "all", "365d..30d",
                                          "1y",  "2w",  "6mo",       "90d..0d", "0.5d",
                                          "7d",  "1d..0.5d", "60d..59d", "400d"};
    put(g, ", %s", PICK(g->r, windows));
}

/* agg(stream[.field] [where B] [, W]) with a field of a type the aggregate accepts. */
static void gen_agg(gen *g, int want_ts)
{
    const stream *s = pick_stream(g);
    int op;
    const sfield *f = NULL;
    for (int tries = 0;; tries++) {
        op = want_ts ? (chance(g->r, 50) ? AGG_MIN : AGG_MAX) : rint_(g->r, 6);
        f = NULL;
        if (s->n_fields && (op != AGG_COUNT || chance(g->r, 40)))
            f = &s->fields[rint_(g->r, (int)s->n_fields)];
        vtype t = f ? f->col.type : VT_NUM;
        int ok = (op == AGG_COUNT) || (op == AGG_COUNT_DISTINCT && f) ||
                 ((op == AGG_SUM || op == AGG_AVG) && f && t == VT_NUM) ||
                 ((op == AGG_MIN || op == AGG_MAX) && f && (want_ts ? t == VT_TS : t == VT_NUM));
        if (ok)
            break;
        if (tries > 20) {
            s = &g->s->v->streams[ST_ORDERS];
            f = &s->fields[0]; /* amount */
            op = AGG_SUM;
            if (want_ts) {
                op = AGG_MAX;
                f = NULL;
                for (size_t i = 0; i < s->n_fields; i++)
                    if (s->fields[i].col.type == VT_TS)
                        f = &s->fields[i];
            }
            break;
        }
    }
    put(g, "%s(%s", rule_agg_names[op], s->name);
    if (f)
        put(g, ".%s", f->name);
    if (chance(g->r, 45) && g->depth < 4) {
        put(g, " where ");
        const stream *saved = g->st;
        g->st = s;
        g->depth++;
        gen_bool(g);
        g->depth--;
        g->st = saved;
    }
    if (chance(g->r, 70))
        gen_window(g);
    put(g, ")");
}

static void gen_ts_lit(gen *g)
{
    static const char *const lits[] = {"2024-01-01", "2023-06-15T08:30:00Z", "2024-06-15",
                                       "2024-03-17T12:00:00Z", "2024-03-17 12:00:01",
                                       "1990-02-28", "20240615", "2024-06-15T12:00:00+02:00"};
    put(g, "\"%s\"", PICK(g->r, lits));
}

static void gen_ts(gen *g)
{
    const char *name;
    if (!g->st && chance(g->r, 35)) {
        gen_agg(g, 1);
        return;
    }
    if (pick_field(g, VT_TS, &name, NULL, NULL))
        put(g, "%s", name);
    else
        gen_agg(g, 1);
}

static void gen_num_lit(gen *g)
{
    switch (rint_(g->r, 8)) {
    case 0: put(g, "0"); break;
    case 1: put(g, "%d", rint_(g->r, 5)); break;
    case 2: put(g, "%d.%d", rint_(g->r, 100), rint_(g->r, 10)); break;
    case 3: put(g, "%d", 50 * rint_(g->r, 20)); break;
    case 4: put(g, "%s", PICK(g->r, ((const char *const[]){"90d", "2w", "1mo", "1y", "0.5d"}))); break;
    case 5: put(g, "0.%d", rint_(g->r, 100)); break;
    case 6: put(g, "%d", 30 * rint_(g->r, 13)); break;
    default: put(g, "%d", rint_(g->r, 1000)); break;
    }
}

static void gen_num(gen *g)
{
    const char *name;
    int k = rint_(g->r, g->depth >= 4 ? 3 : 11);
    if (k == 2 && g->st)
        k = 0;
    g->depth++;
    switch (k) {
    case 0:
        gen_num_lit(g);
        break;
    case 1:
        if (pick_field(g, VT_NUM, &name, NULL, NULL))
            put(g, "%s", name);
        else
            gen_num_lit(g);
        break;
    case 2:
    case 3:
        if (g->st)
            gen_num_lit(g);
        else
            gen_agg(g, 0);
        break;
    case 4:
    case 5:
    case 6: {
        static const char *const ops[] = {"+", "-", "*", "/"};
        put(g, "(");
        gen_num(g);
        put(g, " %s ", PICK(g->r, ops));
        gen_num(g);
        put(g, ")");
        break;
    }
    case 7:
        put(g, "(");
        gen_num(g);
        put(g, chance(g->r, 50) ? " / 0)" : " / (1 - 1))");
        break;
    case 8:
        put(g, "-(");
        gen_num(g);
        put(g, ")");
        break;
    case 9:
        put(g, "days_since(");
        if (chance(g->r, 20))
            gen_ts_lit(g);
        else
            gen_ts(g);
        put(g, ")");
        break;
    default:
        put(g, "%s", g->st || chance(g->r, 30) ? "null" : "frequency");
        break;
    }
    g->depth--;
}

static void gen_cmp_op(gen *g, int ordering)
{
    static const char *const all[] = {"=", "!=", "<", "<=", ">", ">=", "<>"};
    put(g, " %s ", ordering ? PICK(g->r, all) : (chance(g->r, 50) ? "=" : "!="));
}

/* A comparison or membership test over strings. */
static void gen_str_pred(gen *g)
{
    const char *name = NULL;
    const strdict *dict = NULL;
    int is_id = 0;
    if (!pick_field(g, VT_STR, &name, &dict, &is_id)) {
        gen_str_lit(g, NULL, 0);
        put(g, " in [");
        gen_str_lit(g, NULL, 0);
        put(g, ", ");
        gen_str_lit(g, NULL, 0);
        put(g, "]");
        return;
    }
    const vcol *col = picked_col;
    uint32_t rows = picked_rows;
    switch (rint_(g->r, 7)) {
    case 0:
        put(g, "%s", name);
        gen_cmp_op(g, 0);
        gen_str_lit_from(g, col, rows, dict, is_id);
        break;
    case 1:
        gen_str_lit_from(g, col, rows, dict, is_id);
        gen_cmp_op(g, 0);
        put(g, "%s", name);
        break;
    case 2: { /* two fields over the same dictionary */
        const char *other = NULL;
        const strdict *d2 = NULL;
        int id2 = 0;
        for (int t = 0; t < 10; t++)
            if (pick_field(g, VT_STR, &other, &d2, &id2) && d2 == dict && !id2 && !is_id)
                break;
        if (d2 != dict || id2 || is_id)
            other = name;
        if (is_id) { /* member_id compares with literals only */
            put(g, "%s", name);
            gen_cmp_op(g, 0);
            gen_str_lit_from(g, col, rows, dict, is_id);
            break;
        }
        put(g, "%s", name);
        gen_cmp_op(g, 0);
        put(g, "%s", other);
        break;
    }
    case 3:
    case 4: {
        put(g, "%s %sin [", name, chance(g->r, 30) ? "not " : "");
        int n = 1 + rint_(g->r, 4);
        for (int i = 0; i < n; i++) {
            if (i)
                put(g, ", ");
            if (chance(g->r, 10))
                put(g, "null");
            else
                gen_str_lit_from(g, col, rows, dict, is_id);
        }
        put(g, "]");
        break;
    }
    case 5:
        gen_str_lit_from(g, col, rows, dict, is_id);
        put(g, " %sin [", chance(g->r, 30) ? "not " : "");
        gen_str_lit_from(g, col, rows, dict, is_id);
        put(g, ", ");
        gen_str_lit_from(g, col, rows, dict, is_id);
        put(g, "]");
        break;
    default:
        gen_str_lit_from(g, col, rows, dict, is_id);
        gen_cmp_op(g, 0);
        gen_str_lit_from(g, col, rows, dict, is_id);
        break;
    }
}

static void gen_bool(gen *g)
{
    const char *name;
    int k = rint_(g->r, g->depth >= 4 ? 10 : 22);
    g->depth++;
    switch (k) {
    case 0:
    case 1:
        gen_num(g);
        gen_cmp_op(g, 1);
        gen_num(g);
        break;
    case 10: { /* a plain threshold: what marketers write */
        const char *nm;
        if (!g->st && chance(g->r, 60))
            gen_agg(g, 0);
        else if (pick_field(g, VT_NUM, &nm, NULL, NULL))
            put(g, "%s", nm);
        else
            put(g, "0");
        gen_cmp_op(g, 1);
        put(g, "%s", PICK(g->r, ((const char *const[]){"0", "1", "2", "3", "10", "50", "100.5",
                                                       "0.5", "30", "90", "-1", "365"})));
        break;
    }
    case 2:
        gen_ts(g);
        gen_cmp_op(g, 1);
        if (chance(g->r, 60))
            gen_ts_lit(g);
        else
            gen_ts(g);
        break;
    case 3:
    case 11:
        gen_str_pred(g);
        break;
    case 4:
        gen_num(g);
        put(g, " between ");
        gen_num(g);
        put(g, " and ");
        gen_num(g);
        break;
    case 5:
        gen_ts(g);
        put(g, " between ");
        gen_ts_lit(g);
        put(g, " and ");
        if (chance(g->r, 50))
            gen_ts_lit(g);
        else
            gen_ts(g);
        break;
    case 6: {
        gen_num(g);
        put(g, " %sin [", chance(g->r, 30) ? "not " : "");
        int n = 1 + rint_(g->r, 4);
        for (int i = 0; i < n; i++) {
            if (i)
                put(g, ", ");
            if (chance(g->r, 10))
                put(g, "null");
            else if (chance(g->r, 10))
                put(g, "-%d", rint_(g->r, 5));
            else
                gen_num_lit(g);
        }
        put(g, "]");
        break;
    }
    case 7:
        if (g->st) {
            gen_str_pred(g);
            break;
        }
        if (chance(g->r, 75)) {
            gen_str_lit(g, &g->s->v->pstr, 0);
        } else if (chance(g->r, 50)) {
            put(g, "null");
        } else {
            const char *f2;
            const strdict *d2;
            int id2;
            if (pick_field(g, VT_STR, &f2, &d2, &id2) && d2 == &g->s->v->pstr)
                put(g, "%s", f2);
            else
                put(g, "\"running\"");
        }
        put(g, " %sin interests", chance(g->r, 30) ? "not " : "");
        break;
    case 8: {
        int t = rint_(g->r, 4);
        if (t == 0)
            gen_num(g);
        else if (t == 1)
            gen_ts(g);
        else if (t == 2 && pick_field(g, VT_STR, &name, NULL, NULL))
            put(g, "%s", name);
        else if (pick_field(g, VT_BOOL, &name, NULL, NULL))
            put(g, "%s", name);
        else
            gen_num(g);
        put(g, " is %snull", chance(g->r, 50) ? "not " : "");
        break;
    }
    case 9:
        if (pick_field(g, VT_BOOL, &name, NULL, NULL))
            put(g, "%s", name);
        else
            put(g, "%s", chance(g->r, 50) ? "true" : "false");
        break;
    case 12:
    case 13:
        put(g, "not (");
        gen_bool(g);
        put(g, ")");
        break;
    case 14:
    case 15:
    case 16:
    case 17:
        put(g, "(");
        gen_bool(g);
        put(g, chance(g->r, 50) ? ")%s and (" : ")%s or (", chance(g->r, 10) ? " -- note\n" : "");
        gen_bool(g);
        put(g, ")");
        break;
    case 18: /* in_segment is about members: not inside where */
        if (g->st)
            put(g, "ts is not null");
        else
            put(g, "in_segment(\"%s\")", PICK(g->r, seg_names));
        break;
    case 19:
        put(g, "%s", PICK(g->r, ((const char *const[]){"true", "false", "null"})));
        break;
    case 20: /* booleans compared with each other */
        put(g, "(");
        gen_bool(g);
        put(g, ")");
        gen_cmp_op(g, 0);
        if (chance(g->r, 50)) {
            put(g, "%s", chance(g->r, 50) ? "true" : "false");
        } else {
            put(g, "(");
            gen_bool(g);
            put(g, ")");
        }
        break;
    default:
        if (pick_field(g, VT_BOOL, &name, NULL, NULL))
            put(g, "%s %sin [%s]", name, chance(g->r, 30) ? "not " : "",
                PICK(g->r, ((const char *const[]){"true", "false", "true, null", "false, true"})));
        else
            put(g, "true");
        break;
    }
    g->depth--;
}

/* ---- comparing the evaluators ------------------------------------------------------------ */

/* The compiled evaluator lands separately (rules/eval.c); until it is in this tree the
 * test runs the generator and the reference on their own. */
#ifndef PATRON_TEST_COMPILED
#define PATRON_TEST_COMPILED 1
#endif

typedef struct totals {
    uint64_t rules, evals, matches, mismatches, rejected;
    uint64_t kinds[N_OR + 1], aggs[6], windows[3], static_seg, model_rules;
} totals;

/* The rule on one line ("\n" for line breaks), to copy into PATRON_DIFF_RULE. */
static const char *one_line(const char *src, char *buf, size_t cap)
{
    size_t k = 0;
    for (; *src && k + 3 < cap; src++) {
        if (*src == '\n')
            buf[k++] = '\\', buf[k++] = 'n';
        else
            buf[k++] = *src;
    }
    buf[k] = '\0';
    return buf;
}

static void report_mismatch(const schema *s, const char *src, uint32_t m, int64_t now, int ref,
                            int compiled)
{
    char when[TIME_FMT_LEN], line[9000];
    time_format(now, when);
    print_message("MISMATCH rule: %s\n  member %s (index %u) now %s: reference %d, compiled %d\n",
                  one_line(src, line, sizeof line), s->db->member_id[m], m, when, ref, compiled);
}

static void tally(totals *t, const rule *r)
{
    for (size_t i = 0; i < r->n_nodes; i++) {
        const rnode *n = r->nodes[i];
        t->kinds[n->kind]++;
        if (n->kind == N_AGG) {
            t->aggs[n->op]++;
            t->windows[!n->has_window ? 0 : n->w_to == 0 ? 1 : 2]++;
        }
        if (n->kind == N_INSEG && n->bitmap)
            t->static_seg++;
    }
    t->model_rules += (uint64_t)r->reads_models;
}

/* Checks one rule at every now over every member; returns the number of mismatches. */
static uint64_t check_rule(schema *s, const dataset *d, const char *src, totals *t)
{
    rule *r, *neg;
    patron_error err = {0};
    if (rule_compile(src, &s->env, &r, &err) != 0) {
        print_message("generated rule does not compile: %s\n%s\n", src, err.message);
        t->rejected++;
        return 1;
    }
    tally(t, r);
    /* The reference against itself: "not (R)" is R's complement unless consent hides
     * the member from a model-reading rule altogether. */
    char nsrc[8300];
    snprintf(nsrc, sizeof nsrc, "not (%s\n)", src);
    if (rule_compile(nsrc, &s->env, &neg, &err) != 0) {
        print_message("negated rule does not compile: %s\n%s\n", nsrc, err.message);
        rule_free(r);
        t->rejected++;
        return 1;
    }
    uint64_t bad = 0;
    roaring_bitmap_t *out = roaring_bitmap_create();
    for (int k = 0; k < N_NOWS; k++) {
        int64_t now = d->nows[k];
#if PATRON_TEST_COMPILED
        err.code = 0;
        /* Two threads at the first now (threads only split work above one batch of
         * members); one at the others, which keeps the sanitizer build quick. */
        if (rule_eval_all(r, s->db, now, k == 0 ? 2 : 1, out, &err) != 0) {
            char line[9000];
            print_message("rule_eval_all failed on %s: %s\n", one_line(src, line, sizeof line),
                          err.message);
            bad++;
            continue;
        }
#endif
#if PATRON_TEST_COMPILED
        /* rule_eval_members over every other member must agree too (and add no others);
         * for every fourth rule, which keeps the sanitizer build quick. */
        if (k == 0 && t->rules % 4 == 0) {
            uint32_t n = s->db->n_members, *sub = malloc(((size_t)n / 2 + 1) * sizeof *sub), ns = 0;
            assert_non_null(sub);
            for (uint32_t m = 1; m < n; m += 2)
                sub[ns++] = m;
            roaring_bitmap_t *part = roaring_bitmap_create();
            if (rule_eval_members(r, s->db, now, sub, ns, part, &err) != 0) {
                print_message("rule_eval_members failed on %s: %s\n", src, err.message);
                bad++;
            }
            for (uint32_t m = 0; m < n; m++) {
                int want = (m & 1) && rule_ref_eval(r, s->db, m, now);
                if (want != (int)roaring_bitmap_contains(part, m)) {
                    if (bad == 0) {
                        print_message("rule_eval_members: ");
                        report_mismatch(s, src, m, now, want, !want);
                    }
                    bad++;
                }
            }
            roaring_bitmap_free(part);
            free(sub);
        }
#endif
        for (uint32_t m = 0; m < s->db->n_members; m++) {
            int ref = rule_ref_eval(r, s->db, m, now);
            int nref = rule_ref_eval(neg, s->db, m, now);
            int hidden = r->reads_models && !db_profiling_allowed(s->db, m, now);
            if (hidden ? (ref || nref) : ref == nref) {
                print_message("reference inconsistent on %s: member %u now %lld: R=%d, not R=%d\n",
                              src, m, (long long)now, ref, nref);
                bad++;
            }
            t->evals++;
            t->matches += (uint64_t)ref;
#if PATRON_TEST_COMPILED
            int got = roaring_bitmap_contains(out, m);
            if (ref != got) {
                if (bad < 1)
                    report_mismatch(s, src, m, now, ref, got);
                bad++;
            }
#else
            (void)report_mismatch;
#endif
        }
    }
    roaring_bitmap_free(out);
    rule_free(neg);
    rule_free(r);
    t->rules++;
    t->mismatches += bad;
    return bad;
}

static void gen_rule(gen *g, char *buf, size_t cap)
{
    g->buf = buf;
    g->cap = cap;
    g->n = 0;
    g->depth = 0;
    g->st = NULL;
    if (chance(g->r, 5))
        put(g, "-- a generated rule\n");
    gen_bool(g);
    if (chance(g->r, 5))
        put(g, "  -- trailing comment");
}

static void run_seed(uint64_t seed, int n_members, int n_orders, int n_events, int n_rules,
                     totals *t)
{
    rng r = {seed};
    dataset d;
    patron_db *db = build_db(&r, &d, n_members, n_orders, n_events);
    segs sg;
    sg.stat = roaring_bitmap_create();
    for (uint32_t m = 0; m < db->n_members; m += 3)
        roaring_bitmap_add(sg.stat, m);
    schema *s = calloc(1, sizeof *s);
    assert_non_null(s);
    schema_learn(s, db, &sg);
    if (getenv("PATRON_DIFF_SHOW"))
        for (int k = 0; k < ST__N; k++)
            print_message("stream %s: %u rows\n", db->view->streams[k].name,
                          (unsigned)db->view->streams[k].nrows);
    gen g = {&r, s, NULL, NULL, 0, 0, 0};
    char buf[8192];
    const char *one = getenv("PATRON_DIFF_RULE"); /* check this rule only (debugging) */
    if (one && *one) {
        check_rule(s, &d, one, t);
        n_rules = 0;
    }
    uint64_t failing = 0;
    for (int i = 0; i < n_rules && failing < 20; i++) {
        gen_rule(&g, buf, sizeof buf);
        if (getenv("PATRON_DIFF_SHOW") && i < 40)
            print_message("rule: %s\n", buf);
        if (check_rule(s, &d, buf, t))
            failing++;
    }
    free(s);
    roaring_bitmap_free(sg.stat);
    patron_close(db);
}

static void test_compiled_equals_reference(void **state)
{
    (void)state;
    const char *lg = getenv("PATRON_LONG");
    int longrun = lg && *lg && strcmp(lg, "0") != 0;
    totals t;
    memset(&t, 0, sizeof t);
    int seeds = longrun ? 6 : 1;
    for (int k = 0; k < seeds; k++)
        run_seed(20240615u + 7919u * (uint64_t)k, longrun ? 500 : 220, longrun ? 2500 : 700,
                 longrun ? 6000 : 2000, longrun ? 5000 : 450, &t);
    /* More members than one batch of the compiled evaluator (2048), so a batch edge and
     * two threads are crossed. */
    run_seed(777, longrun ? 6000 : 2600, longrun ? 12000 : 5000, longrun ? 25000 : 8000,
             longrun ? 1000 : 40, &t);
    print_message("rules %llu, rule x member x now evaluations %llu, matches %.1f%%, "
                  "mismatches %llu, rejected %llu, model-reading rules %llu, static in_segment %llu\n",
                  (unsigned long long)t.rules, (unsigned long long)t.evals,
                  t.evals ? 100.0 * (double)t.matches / (double)t.evals : 0.0,
                  (unsigned long long)t.mismatches, (unsigned long long)t.rejected,
                  (unsigned long long)t.model_rules, (unsigned long long)t.static_seg);
    assert_int_equal(t.rejected, 0);
    assert_int_equal(t.mismatches, 0);
    /* The generator reaches every node kind, aggregate and window form. */
    for (int k = 0; k <= N_OR; k++) {
        if (t.kinds[k] == 0)
            print_message("no rule had a node of kind %d\n", k);
        assert_true(t.kinds[k] > 0);
    }
    for (int k = 0; k < 6; k++)
        assert_true(t.aggs[k] > 0);
    for (int k = 0; k < 3; k++)
        assert_true(t.windows[k] > 0);
    assert_true(t.static_seg > 0 && t.model_rules > 0);
    /* Not degenerate: rules both match and miss. */
    assert_true(t.matches > t.evals / 20 && t.matches < t.evals - t.evals / 20);
}


/* The reference against the raw data the test wrote (not through the member view):
 * frequency, monetary, windowed counts and sums, recency -- at every now, for every
 * member, including voids, returns, guests, JSONL orders and future rows. */
static void test_reference_matches_the_data(void **state)
{
    (void)state;
    rng r = {4242};
    dataset d;
    patron_db *db = build_db(&r, &d, 200, 900, 1500);
    static const char *const rules[] = {
        "frequency >= 2",       "monetary > 100",
        "monetary < 0",         "count(orders, 90d) >= 1",
        "sum(returns.amount, 180d..90d) > 0", "recency_days <= 30",
        "frequency = 0 and recency_days is null",
        "sum(orders.amount, 30d) - sum(returns.amount, 30d) > 20",
    };
    enum { N_RULES = sizeof rules / sizeof *rules };
    rule *compiled[N_RULES];
    rule_env env = {db, seg_lookup, NULL};
    patron_error err = {0};
    for (int i = 0; i < N_RULES; i++)
        if (rule_compile(rules[i], &env, &compiled[i], &err) != 0)
            fail_msg("%s: %s", rules[i], err.message);
    uint64_t checked = 0, hits[N_RULES] = {0};
    const int64_t D = 86400;
    for (int k = 0; k < N_NOWS; k++) {
        int64_t now = d.nows[k];
        for (uint32_t m = 0; m < db->n_members; m++) {
            int64_t freq = 0, net = 0, cnt90 = 0, ret_mid = 0, net30 = 0, last = INT64_MIN;
            for (size_t i = 0; i < n_ledger; i++) {
                const lrow *l = &ledger[i];
                if (l->voided || l->ts > now || strcmp(l->member, db->member_id[m]) != 0)
                    continue;
                int in90 = l->ts > now - 90 * D, in30 = l->ts > now - 30 * D;
                int in_mid = l->ts > now - 180 * D && l->ts <= now - 90 * D;
                if (l->is_return) {
                    net -= l->money;
                    ret_mid += in_mid ? l->money : 0;
                    net30 -= in30 ? l->money : 0;
                } else {
                    freq++;
                    net += l->money;
                    cnt90 += in90;
                    net30 += in30 ? l->money : 0;
                    last = l->ts > last ? l->ts : last;
                }
            }
            int want[N_RULES] = {
                freq >= 2,        net > 100 * 10000,
                net < 0,          cnt90 >= 1,
                ret_mid > 0,      last != INT64_MIN && now - last <= 30 * D,
                freq == 0,        net30 > 20 * 10000,
            };
            for (int i = 0; i < N_RULES; i++) {
                int got = rule_ref_eval(compiled[i], db, m, now);
                if (got != want[i])
                    fail_msg("%s: member %s at now #%d: reference %d, the data says %d", rules[i],
                             db->member_id[m], k, got, want[i]);
                hits[i] += (uint64_t)got;
                checked++;
            }
        }
    }
    for (int i = 0; i < N_RULES; i++) {
        assert_true(hits[i] > 0); /* each rule selects someone at some now */
        rule_free(compiled[i]);
    }
    print_message("rule x member x now checks against the raw data: %llu\n",
                  (unsigned long long)checked);
    patron_close(db);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/patron-test-rules-diff-XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_matches_the_data),
        cmocka_unit_test(test_compiled_equals_reference),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    free(ledger);
    if (system(cmd) != 0)
        return 1;
    return rc;
}
