/*
 * check.c -- name resolution, type checking and constant folding for parsed rules.
 *
 * After rule_check every N_FIELD knows what it reads (a member column, a computed
 * field, a consent, a stream field), every node has a type, string literals compared
 * with a column carry that column's dictionary code, strings compared with timestamps
 * are timestamp constants, constant arithmetic is folded, and in_segment() holds the
 * referenced segment's checked rule (or its static member list).
 */
#include "rules/rule.h"

#include "base/err.h"
#include "base/mem.h"
#include "base/time.h"

/* Messages are cut to fit the error object on purpose. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

#include <math.h>
#include <stdio.h>
#include <string.h>

const char *const rule_computed_names[F__N] = {"age", "days_to_birthday", "tenure_days",
                                               "recency_days", "frequency", "monetary",
                                               "aov", "spend_trend"};

const char *const rule_member_fields[] = {
    "member_id", "enrolled_at", "birth_date", "interests", "email", "phone", "first_name",
    "last_name", "gender", "country", "region", "city", "postal_code", "language",
    "signup_channel", "preferred_channel", "referred_by", "age", "days_to_birthday",
    "tenure_days", "recency_days", "frequency", "monetary", "aov", "spend_trend",
    "consent.email", "consent.sms", "consent.push", "consent.app", "consent.web",
    "consent.social", "consent.mail", "consent.marketing", "consent.profiling",
    "consent.personalization", "tier", "points_balance", "points_earned_365d", "rfm.r",
    "rfm.f", "rfm.m", "rfm.score", "rfm.segment", "persona", "clv", "p_alive",
    "expected_orders", NULL};

/* Fields whose source is not built yet: they read as null. */
static const struct {
    const char *name;
    vtype type;
    int is_model;
} null_fields[] = {
    {"tier", VT_STR, 0},        {"points_balance", VT_NUM, 0},
    {"points_earned_365d", VT_NUM, 0}, {"rfm.r", VT_NUM, 1},
    {"rfm.f", VT_NUM, 1},       {"rfm.m", VT_NUM, 1},
    {"rfm.score", VT_NUM, 1},   {"rfm.segment", VT_STR, 1},
    {"persona", VT_NUM, 1},     {"clv", VT_NUM, 1},
    {"p_alive", VT_NUM, 1},     {"expected_orders", VT_NUM, 1},
};

typedef struct checker {
    rule *r;
    const rule_env *env;
    patron_db *db;
    mview *v;
    patron_error *err;
    const char *src; /* the text the current nodes come from */
    const char *stack[16]; /* in_segment names being inlined */
    int depth;
    const rnode *top;      /* the outermost in_segment call being inlined */
    int reported;          /* an error from inside an inlined rule is already worded */
} checker;

static const char *type_name(vtype t)
{
    switch (t) {
    case VT_NULL: return "null";
    case VT_NUM: return "a number";
    case VT_STR: return "a string";
    case VT_BOOL: return "a condition (true/false)";
    case VT_TS: return "a timestamp";
    case VT_TAGS: return "a tag set";
    case VT_DUR: return "a duration";
    case VT_LIST: return "a list";
    }
    return "?";
}

static int fail_at(checker *c, const rnode *n, const char *fmt, const char *a, const char *b)
{
    char msg[900];
    snprintf(msg, sizeof msg, fmt, a, b);
    return rule_error_at(c->src, n->so, c->err, "%s", msg);
}

/* ---- did you mean ------------------------------------------------------------------ */

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return 99;
    size_t d[64][64];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            size_t x = d[i - 1][j] + 1, y = d[i][j - 1] + 1,
                   z = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            d[i][j] = x < y ? (x < z ? x : z) : (y < z ? y : z);
        }
    return d[la][lb];
}

typedef struct suggest {
    const char *best;
    size_t dist;
    char buf[160];
} suggest;

static void consider(suggest *s, const char *name, const char *cand)
{
    size_t d = edit_distance(name, cand);
    size_t limit = strlen(name) <= 4 ? 1 : (strlen(name) <= 8 ? 2 : 3);
    if (d <= limit && (!s->best || d < s->dist)) {
        snprintf(s->buf, sizeof s->buf, "%s", cand);
        s->best = s->buf;
        s->dist = d;
    }
}

static const char *hint(const suggest *s, char *buf, size_t cap)
{
    if (!s->best)
        return "";
    snprintf(buf, cap, " (did you mean '%s'?)", s->best);
    return buf;
}

/* ---- fields ------------------------------------------------------------------------ */

static int resolve_member_field(checker *c, rnode *n)
{
    const char *name = n->str;
    mview *v = c->v;
    patron_db *db = c->db;
    n->ref = REF_COL;
    n->vc.via = NULL;
    n->vc.dict = NULL;
    if (strcmp(name, "member_id") == 0) {
        n->ref = REF_MEMBER_ID;
        n->type = VT_STR;
        return 0;
    }
    if (strcmp(name, "enrolled_at") == 0) {
        n->type = n->vc.type = VT_TS;
        n->vc.st = VS_TS;
        n->vc.data = db->enrolled_at;
        return 0;
    }
    if (strcmp(name, "birth_date") == 0) {
        n->type = n->vc.type = VT_TS;
        n->vc.st = VS_DAYS;
        n->vc.data = v->birth_days;
        return 0;
    }
    if (strcmp(name, "interests") == 0) {
        n->ref = REF_TAGS;
        n->type = VT_TAGS;
        n->vc.dict = &v->pstr;
        return 0;
    }
    for (int k = 0; k < MV__NSTR; k++)
        if (strcmp(name, mv_str_names[k]) == 0) {
            n->type = n->vc.type = VT_STR;
            n->vc.st = VS_CODE;
            n->vc.data = v->str[k];
            n->vc.dict = &v->pstr;
            return 0;
        }
    for (int k = 0; k < F__N; k++)
        if (strcmp(name, rule_computed_names[k]) == 0) {
            n->ref = REF_COMPUTED;
            n->which = k;
            n->type = VT_NUM;
            n->time_dependent = k != F_FREQUENCY && k != F_MONETARY && k != F_AOV;
            return 0;
        }
    if (strncmp(name, "consent.", 8) == 0) {
        for (int k = 0; k < CK__N; k++)
            if (strcmp(name + 8, mv_consent_names[k]) == 0) {
                n->ref = REF_CONSENT;
                n->which = k;
                n->type = VT_BOOL;
                n->time_dependent = 1; /* expires_at */
                return 0;
            }
        suggest s = {0};
        for (int k = 0; k < CK__N; k++) {
            char full[64];
            snprintf(full, sizeof full, "consent.%s", mv_consent_names[k]);
            consider(&s, name, full);
        }
        char h[200];
        return fail_at(c, n, "unknown consent '%s'%s", name, hint(&s, h, sizeof h));
    }
    if (strncmp(name, "attributes.", 11) == 0) {
        const mattr *a = view_attr(v, name + 11, strlen(name + 11));
        if (!a) {
            suggest s = {0};
            for (size_t i = 0; i < v->n_attr; i++) {
                char full[200];
                snprintf(full, sizeof full, "attributes.%s", v->attr[i].name);
                consider(&s, name, full);
            }
            /* An attribute no member has yet reads as null (like an unknown string). */
            if (s.best) {
                char h[200];
                return fail_at(c, n, "unknown attribute '%s'%s", name, hint(&s, h, sizeof h));
            }
            n->ref = REF_NONE;
            n->type = VT_NULL;
            return 0;
        }
        n->type = n->vc.type = a->type;
        if (a->type == VT_NUM) {
            n->vc.st = VS_F64;
            n->vc.data = a->num;
        } else if (a->type == VT_BOOL) {
            n->vc.st = VS_BOOL;
            n->vc.data = a->b;
        } else {
            n->vc.st = VS_CODE;
            n->vc.data = a->code;
            n->vc.dict = &v->pstr;
        }
        return 0;
    }
    const extcol *ec = db_extcol_find(db, name);
    if (ec) { /* attached by the models or the ledger; sized for every member now */
        extcol *w = db_extcol(db, name, ec->type, ec->is_model);
        if (!w)
            return err_set(c->err, PATRON_ENOMEM, "out of memory");
        n->type = n->vc.type = w->type;
        n->is_model = w->is_model;
        if (w->type == VT_STR) {
            n->vc.st = VS_CODE;
            n->vc.data = w->code;
            n->vc.dict = &w->dict;
        } else {
            n->vc.st = VS_F64;
            n->vc.data = w->num;
        }
        if (w->fn.num || w->fn.code) { /* computed at the reader's now */
            n->vc.st = VS_FN;
            n->vc.data = NULL;
            n->fn = &w->fn;
        }
        if (n->is_model)
            c->r->reads_models = 1;
        return 0;
    }
    for (size_t k = 0; k < sizeof null_fields / sizeof *null_fields; k++)
        if (strcmp(name, null_fields[k].name) == 0) {
            n->ref = REF_NONE;
            n->type = null_fields[k].type;
            n->is_model = null_fields[k].is_model;
            if (n->is_model)
                c->r->reads_models = 1;
            return 0;
        }
    suggest s = {0};
    for (size_t k = 0; rule_member_fields[k]; k++)
        consider(&s, name, rule_member_fields[k]);
    for (int k = 0; k < ST__N; k++)
        if (v->streams[k].name)
            consider(&s, name, v->streams[k].name);
    char h[200];
    if (view_stream(v, name, strlen(name)))
        return fail_at(c, n, "'%s' is a stream: use it in an aggregate, e.g. count(%s, 90d)", name, name);
    return fail_at(c, n, "unknown field '%s'%s", name, hint(&s, h, sizeof h));
}

static int resolve_event_field(checker *c, rnode *n, const stream *st)
{
    const sfield *f = stream_field(st, n->str, strlen(n->str));
    if (!f) {
        suggest s = {0};
        char list[300] = "";
        size_t k = 0;
        for (size_t i = 0; i < st->n_fields; i++) {
            consider(&s, n->str, st->fields[i].name);
            k += (size_t)snprintf(list + k, sizeof list - k, "%s%s", i ? ", " : "",
                                  st->fields[i].name);
            if (k >= sizeof list)
                break;
        }
        char h[200], msg[600];
        snprintf(msg, sizeof msg, "unknown field '%s' of stream '%s'%s; its fields are: %s",
                 n->str, st->name, hint(&s, h, sizeof h), list);
        return rule_error_at(c->src, n->so, c->err, "%s", msg);
    }
    n->ref = REF_EVENT;
    n->vc = f->col;
    n->type = f->col.type;
    return 0;
}

/* ---- types ------------------------------------------------------------------------- */

static int is_numeric(vtype t)
{
    return t == VT_NUM || t == VT_DUR;
}

static int check_node(checker *c, rnode *n, const stream *st);

/* Turns a string literal into a timestamp constant (compared with a timestamp). */
static int to_ts(checker *c, rnode *lit)
{
    int64_t ts;
    if (time_parse(lit->str, lit->len, &ts) != 0)
        return fail_at(c, lit, "cannot read \"%s\" as a date or timestamp%s", lit->str, "");
    lit->kind = N_TS;
    lit->type = VT_TS;
    lit->num = (double)ts;
    return 0;
}

/* Resolves a string literal against the column it is compared with. */
static void resolve_code(checker *c, rnode *lit, const rnode *field)
{
    lit->code = 0;
    if (field->ref == REF_MEMBER_ID) {
        uint32_t m;
        lit->dict = NULL;
        if (hmap_get(&c->db->member_ids, lit->str, lit->len, &m))
            lit->code = m + 1;
        return;
    }
    lit->dict = field->vc.dict;
    if (lit->dict)
        lit->code = strdict_find(lit->dict, lit->str, lit->len);
}

static const strdict *dict_of(const rnode *n)
{
    return n->ref == REF_MEMBER_ID ? NULL : n->vc.dict;
}

static int is_const(const rnode *n)
{
    return n->kind == N_NUM || n->kind == N_DUR || n->kind == N_STR || n->kind == N_BOOL ||
           n->kind == N_NULL || n->kind == N_TS;
}

/* Makes two operands of a comparison agree; both are checked. */
static int unify(checker *c, rnode *op, rnode *a, rnode *b, int ordering)
{
    if (a->type == VT_NULL || b->type == VT_NULL)
        return 0;
    if (is_numeric(a->type) && is_numeric(b->type))
        return 0;
    if (a->type == VT_TS && b->kind == N_STR)
        return to_ts(c, b);
    if (b->type == VT_TS && a->kind == N_STR)
        return to_ts(c, a);
    if (a->type == VT_TS && b->type == VT_TS)
        return 0;
    if (a->type == VT_STR && b->type == VT_STR) {
        if (ordering)
            return fail_at(c, op, "strings allow only =, != and in%s%s", "", "");
        if (a->kind == N_STR && b->kind != N_STR)
            resolve_code(c, a, b);
        else if (b->kind == N_STR && a->kind != N_STR)
            resolve_code(c, b, a);
        else if (a->kind != N_STR && b->kind != N_STR &&
                 (dict_of(a) != dict_of(b) || a->ref == REF_MEMBER_ID || b->ref == REF_MEMBER_ID))
            return fail_at(c, op, "cannot compare these two string fields (different sources)%s%s", "", "");
        return 0;
    }
    if (a->type == VT_BOOL && b->type == VT_BOOL) {
        if (ordering)
            return fail_at(c, op, "true/false values allow only = and !=%s%s", "", "");
        return 0;
    }
    if (a->type == VT_TAGS || b->type == VT_TAGS)
        return fail_at(c, op, "interests is a tag set: test it with \"TAG\" in interests%s%s", "", "");
    return fail_at(c, op, "cannot compare %s with %s", type_name(a->type), type_name(b->type));
}

static int need_bool(checker *c, rnode *n)
{
    if (n->type == VT_BOOL || n->type == VT_NULL)
        return 0;
    return fail_at(c, n, "expected a condition (true/false), found %s%s", type_name(n->type), "");
}

static void fold(rnode *n)
{
    if (n->kind == N_NEG && (n->a->kind == N_NUM || n->a->kind == N_DUR)) {
        n->kind = N_NUM;
        n->num = -n->a->num;
    } else if (n->kind == N_NEG && n->a->kind == N_NULL) {
        n->kind = N_NULL;
        n->type = VT_NULL;
    } else if (n->kind == N_ARITH && (n->a->kind == N_NULL || n->b->kind == N_NULL)) {
        n->kind = N_NULL;
        n->type = VT_NULL;
    } else if (n->kind == N_ARITH && (n->a->kind == N_NUM || n->a->kind == N_DUR) &&
               (n->b->kind == N_NUM || n->b->kind == N_DUR)) {
        double x = n->a->num, y = n->b->num, r;
        switch (n->op) {
        case '+': r = x + y; break;
        case '-': r = x - y; break;
        case '*': r = x * y; break;
        default:
            if (y == 0) {
                n->kind = N_NULL;
                n->type = VT_NULL;
                return;
            }
            r = x / y;
            break;
        }
        n->kind = N_NUM;
        n->num = r;
    }
}

static int inline_segment(checker *c, rnode *n)
{
    if (!c->env || !c->env->segment)
        return fail_at(c, n, "in_segment(\"%s\"): no segments here%s", n->str, "");
    for (int i = 0; i < c->depth; i++)
        if (strcmp(c->stack[i], n->str) == 0) {
            char chain[400];
            size_t k = 0;
            for (int j = i; j < c->depth && k < sizeof chain; j++)
                k += (size_t)snprintf(chain + k, sizeof chain - k, "%s -> ", c->stack[j]);
            if (k < sizeof chain)
                snprintf(chain + k, sizeof chain - k, "%s", n->str);
            c->reported = 1;
            char msg[600];
            snprintf(msg, sizeof msg, "in_segment cycle: %s", chain);
            return rule_error_at(c->r->src, c->top ? c->top->so : n->so, c->err, "%s", msg);
        }
    if (c->depth >= (int)(sizeof c->stack / sizeof *c->stack))
        return fail_at(c, n, "in_segment(\"%s\"): segments nest too deeply%s", n->str, "");
    const char *text = NULL;
    const void *members = NULL;
    int f = c->env->segment(c->env->ctx, n->str, &text, &members);
    if (f < 0)
        return err_set(c->err, PATRON_ESTORE, "reading segment '%s'", n->str);
    if (f == 0)
        return fail_at(c, n, "no segment named '%s'%s", n->str, "");
    n->type = VT_BOOL;
    if (!text) {
        n->bitmap = members;
        if (f == 2) { /* a set derived from models (SPEC 1.5: profiling consent) */
            n->is_model = 1;
            c->r->reads_models = 1;
        }
        return 0;
    }
    rule *sub;
    int rc = rule_parse(text, &sub, c->err);
    if (rc != PATRON_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", c->err->message);
        return fail_at(c, n, "segment '%s' does not parse: %s", n->str, msg);
    }
    rule **subs = mem_realloc_array(c->r->subs, c->r->n_subs + 1, sizeof *subs);
    if (!subs) {
        rule_free(sub);
        return err_set(c->err, PATRON_ENOMEM, "out of memory");
    }
    c->r->subs = subs;
    c->r->subs[c->r->n_subs++] = sub;
    const char *saved = c->src;
    if (c->depth == 0)
        c->top = n;
    c->stack[c->depth++] = n->str;
    c->src = sub->src;
    rule *outer = c->r;
    rc = check_node(c, sub->root, NULL);
    c->r = outer;
    c->src = saved;
    c->depth--;
    if (rc != 0) {
        if (c->err && c->err->code == PATRON_EINPUT && !c->reported) {
            /* Word it once, at the outermost call: the segment and its own message. */
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", c->err->message);
            c->reported = 1;
            return rule_error_at(c->r->src, c->top ? c->top->so : n->so, c->err,
                                 "segment '%s' no longer checks: %s", n->str, msg);
        }
        return rc;
    }
    if (sub->root->type != VT_BOOL && sub->root->type != VT_NULL)
        return fail_at(c, n, "segment '%s' is not a condition%s", n->str, "");
    n->a = sub->root;
    n->is_model = sub->reads_models || n->a->is_model;
    if (sub->reads_models)
        c->r->reads_models = 1;
    n->time_dependent = n->a->time_dependent;
    return 0;
}

/* Propagates is_model / time_dependent up from the children. */
static void inherit(rnode *n)
{
    rnode *k[3] = {n->a, n->b, n->c};
    for (int i = 0; i < 3; i++)
        if (k[i]) {
            n->is_model |= k[i]->is_model;
            n->time_dependent |= k[i]->time_dependent;
        }
    for (size_t i = 0; i < n->n_items; i++)
        n->is_model |= n->items[i]->is_model;
}

static int check_node(checker *c, rnode *n, const stream *st)
{
    int rc;
    switch (n->kind) {
    case N_NUM:
        n->type = VT_NUM;
        return 0;
    case N_DUR:
        n->type = VT_DUR;
        return 0;
    case N_STR:
        n->type = VT_STR;
        return 0;
    case N_BOOL:
        n->type = VT_BOOL;
        return 0;
    case N_NULL:
        n->type = VT_NULL;
        return 0;
    case N_TS:
        n->type = VT_TS;
        return 0;
    case N_LIST:
        return fail_at(c, n, "a list is only allowed after 'in'%s%s", "", "");
    case N_FIELD:
        if (st)
            return resolve_event_field(c, n, st);
        if ((rc = resolve_member_field(c, n)))
            return rc;
        if (n->is_model)
            c->r->reads_models = 1;
        return 0;
    case N_AGG: {
        const stream *s = view_stream(c->v, n->str, strlen(n->str));
        if (st)
            return fail_at(c, n, "aggregates cannot be nested inside 'where'%s%s", "", "");
        if (!s) {
            suggest sg = {0};
            char list[200] = "";
            size_t k = 0;
            for (int i = 0; i < ST__N; i++) {
                consider(&sg, n->str, c->v->streams[i].name);
                k += (size_t)snprintf(list + k, sizeof list - k, "%s%s", i ? ", " : "",
                                      c->v->streams[i].name);
            }
            char h[200], msg[500];
            snprintf(msg, sizeof msg, "unknown stream '%s'%s; streams are: %s", n->str,
                     hint(&sg, h, sizeof h), list);
            return rule_error_at(c->src, n->len, c->err, "%s", msg);
        }
        n->stream = s;
        n->stream_id = (int)(s - c->v->streams);
        if (n->field_name) {
            const sfield *f = stream_field(s, n->field_name, strlen(n->field_name));
            if (!f) {
                rnode tmp = *n;
                tmp.so = (size_t)n->num;
                tmp.str = n->field_name;
                return resolve_event_field(c, &tmp, s);
            }
            n->sfield = f;
        }
        int op = n->op;
        if (op != AGG_COUNT && !n->sfield)
            return fail_at(c, n, "%s needs a field, e.g. %s(orders.amount)", rule_agg_names[op],
                           rule_agg_names[op]);
        vtype ft = n->sfield ? n->sfield->col.type : VT_NUM;
        if ((op == AGG_SUM || op == AGG_AVG) && ft != VT_NUM)
            return fail_at(c, n, "%s needs a number field; this one is %s", rule_agg_names[op],
                           type_name(ft));
        if ((op == AGG_MIN || op == AGG_MAX) && ft != VT_NUM && ft != VT_TS)
            return fail_at(c, n, "%s needs a number or timestamp field; this one is %s",
                           rule_agg_names[op], type_name(ft));
        if (n->a) {
            if ((rc = check_node(c, n->a, s)))
                return rc;
            if ((rc = need_bool(c, n->a)))
                return rc;
        }
        n->type = (op == AGG_MIN || op == AGG_MAX) ? ft : VT_NUM;
        n->time_dependent = 1; /* windows move; "all" still hides the future */
        return 0;
    }
    case N_INSEG:
        if (st)
            return fail_at(c, n, "in_segment is about members, not %s rows: move it outside 'where'%s", st->name, "");
        return inline_segment(c, n);
    case N_DAYS_SINCE:
        if ((rc = check_node(c, n->a, st)))
            return rc;
        if (n->a->kind == N_STR && (rc = to_ts(c, n->a)))
            return rc;
        if (n->a->type != VT_TS && n->a->type != VT_NULL)
            return fail_at(c, n->a, "days_since needs a timestamp, found %s%s", type_name(n->a->type), "");
        n->type = VT_NUM;
        inherit(n);
        n->time_dependent = 1;
        return 0;
    case N_NEG:
        if ((rc = check_node(c, n->a, st)))
            return rc;
        if (!is_numeric(n->a->type) && n->a->type != VT_NULL)
            return fail_at(c, n->a, "'-' needs a number, found %s%s", type_name(n->a->type), "");
        n->type = VT_NUM;
        inherit(n);
        fold(n);
        return 0;
    case N_ARITH:
        if ((rc = check_node(c, n->a, st)) || (rc = check_node(c, n->b, st)))
            return rc;
        for (int i = 0; i < 2; i++) {
            rnode *x = i ? n->b : n->a;
            if (!is_numeric(x->type) && x->type != VT_NULL)
                return fail_at(c, x, "arithmetic needs numbers, found %s%s", type_name(x->type), "");
        }
        n->type = VT_NUM;
        inherit(n);
        fold(n);
        return 0;
    case N_CMP:
        if ((rc = check_node(c, n->a, st)) || (rc = check_node(c, n->b, st)))
            return rc;
        if ((rc = unify(c, n, n->a, n->b, n->op >= CMP_LT)))
            return rc;
        n->type = VT_BOOL;
        inherit(n);
        if (n->a->kind == N_NULL || n->b->kind == N_NULL) {
            n->kind = N_BOOL; /* a comparison with null is false */
            n->num = 0;
        } else if (is_const(n->a) && is_const(n->b)) {
            int r;
            if (n->a->type == VT_STR) {
                int eq = n->a->len == n->b->len && memcmp(n->a->str, n->b->str, n->a->len) == 0;
                r = n->op == CMP_EQ ? eq : !eq;
            } else {
                double x = n->a->num, y = n->b->num;
                r = n->op == CMP_EQ ? x == y : n->op == CMP_NE ? x != y : n->op == CMP_LT ? x < y
                    : n->op == CMP_LE ? x <= y : n->op == CMP_GT ? x > y : x >= y;
            }
            n->kind = N_BOOL;
            n->num = r;
        }
        return 0;
    case N_BETWEEN:
        if ((rc = check_node(c, n->a, st)) || (rc = check_node(c, n->b, st)) ||
            (rc = check_node(c, n->c, st)))
            return rc;
        if ((rc = unify(c, n, n->a, n->b, 1)) || (rc = unify(c, n, n->a, n->c, 1)))
            return rc;
        if (n->b->kind == N_STR && n->a->kind == N_STR)
            return fail_at(c, n, "strings allow only =, != and in%s%s", "", "");
        n->type = VT_BOOL;
        inherit(n);
        if (n->a->type == VT_NULL || n->b->type == VT_NULL || n->c->type == VT_NULL) {
            n->kind = N_BOOL; /* a comparison with null is false */
            n->num = 0;
        }
        return 0;
    case N_IN:
        if ((rc = check_node(c, n->a, st)))
            return rc;
        if (n->b->kind == N_LIST) {
            for (size_t i = 0; i < n->b->n_items; i++) {
                rnode *it = n->b->items[i];
                if ((rc = check_node(c, it, st)))
                    return rc;
                if (!is_const(it))
                    return fail_at(c, it, "list items must be constants%s%s", "", "");
                if ((rc = unify(c, n, n->a, it, 0)))
                    return rc;
            }
            n->b->type = VT_LIST;
            if (is_const(n->a)) { /* a constant in a list of constants: fold */
                int found = 0;
                for (size_t i = 0; i < n->b->n_items && !found; i++) {
                    const rnode *it = n->b->items[i];
                    if (n->a->kind == N_NULL || it->kind == N_NULL)
                        continue;
                    if (n->a->type == VT_STR)
                        found = it->kind == N_STR && it->len == n->a->len &&
                                memcmp(it->str, n->a->str, it->len) == 0;
                    else
                        found = it->num == n->a->num;
                }
                n->type = VT_BOOL;
                n->num = n->a->kind != N_NULL && found != n->op;
                n->kind = N_BOOL;
                inherit(n);
                return 0;
            }
        } else {
            if ((rc = check_node(c, n->b, st)))
                return rc;
            if (n->b->type != VT_TAGS)
                return fail_at(c, n->b, "'in' needs a list [..] or a tag set such as interests, found %s%s",
                               type_name(n->b->type), "");
            if (n->a->type != VT_STR && n->a->type != VT_NULL)
                return fail_at(c, n->a, "a tag is a string, found %s%s", type_name(n->a->type), "");
            if (n->a->kind == N_STR)
                resolve_code(c, n->a, n->b);
            else if (n->a->type == VT_STR && dict_of(n->a) != n->b->vc.dict)
                return fail_at(c, n->a, "cannot test this field against tags (different sources)%s%s", "", "");
        }
        n->type = VT_BOOL;
        inherit(n);
        return 0;
    case N_ISNULL:
        if ((rc = check_node(c, n->a, st)))
            return rc;
        if (n->a->type == VT_TAGS)
            return fail_at(c, n->a, "a tag set is never null; test a tag with \"TAG\" in interests%s%s", "", "");
        n->type = VT_BOOL;
        inherit(n);
        return 0;
    case N_NOT:
        if ((rc = check_node(c, n->a, st)) || (rc = need_bool(c, n->a)))
            return rc;
        n->type = VT_BOOL;
        inherit(n);
        return 0;
    case N_AND:
    case N_OR:
        if ((rc = check_node(c, n->a, st)) || (rc = check_node(c, n->b, st)) ||
            (rc = need_bool(c, n->a)) || (rc = need_bool(c, n->b)))
            return rc;
        n->type = VT_BOOL;
        inherit(n);
        return 0;
    }
    return err_set(c->err, PATRON_EINTERNAL, "unknown node kind %d", (int)n->kind);
}

int rule_check(rule *r, const rule_env *env, patron_error *err)
{
    checker c;
    memset(&c, 0, sizeof c);
    c.r = r;
    c.env = env;
    c.db = env->db;
    c.v = env->db->view;
    c.err = err;
    c.src = r->src;
    if (!c.v)
        return err_set(err, PATRON_EINTERNAL, "the member view is not built");
    int rc = check_node(&c, r->root, NULL);
    if (rc)
        return rc;
    if (r->root->type != VT_BOOL && r->root->type != VT_NULL)
        return rule_error_at(r->src, r->root->so, err,
                             "a rule must be a condition (true/false); this is %s",
                             type_name(r->root->type));
    r->time_dependent = r->root->time_dependent;
    r->reads_models |= r->root->is_model;
    return PATRON_OK;
}

int rule_compile(const char *src, const rule_env *env, rule **out, patron_error *err)
{
    int rc = rule_parse(src, out, err);
    if (rc != PATRON_OK)
        return rc;
    if ((rc = rule_check(*out, env, err)) != PATRON_OK) {
        rule_free(*out);
        *out = NULL;
    }
    return rc;
}
