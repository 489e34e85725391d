/*
 * ref.c -- the reference interpreter: a checked rule evaluated for one member by a plain
 * recursive walk of the tree.  It is the oracle the compiled evaluator (eval.c) is tested
 * against, so it is written to be obviously right rather than fast, and shares nothing
 * with eval.c: it reads the member view's arrays itself and computes the behavioural
 * fields (recency, frequency, monetary, …) from the event streams on the spot.
 *
 * Semantics, in one place (SPEC §3 and the decisions recorded in ref.h's callers):
 *   - a value is null or not; numbers, timestamps (seconds) and booleans (0/1) are
 *     doubles, strings are dictionary codes (literals keep their text as well);
 *   - events with ts > now are invisible; a window keeps rows with
 *     now - w_from < ts <= now - w_to;
 *   - comparisons, between and in are false when the left value (or, for comparisons
 *     and between, any operand) is null; arithmetic with null is null; x / 0 is null;
 *   - a null condition is false wherever a condition is used (not, and, or, where, the
 *     rule itself), so not/and/or always give true or false;
 *   - money is summed exactly in int64 and divided by PATRON_MONEY_SCALE once.
 */
#include "rules/ref.h"

#include "base/mem.h"
#include "base/time.h"

#include <math.h>
#include <roaring/roaring.h>
#include <stdlib.h>
#include <string.h>

/* A value.  Strings: code (0 never matches a stored value); lit is the literal node when
 * the value is a string constant (two constants compare by text). */
typedef struct rval {
    int null;
    double num;
    uint32_t code;
    const rnode *lit;
} rval;

/* Where evaluation stands: the member, the time, and inside an aggregate's where the
 * stream row being tested. */
typedef struct rctx {
    const patron_db *db;
    const mview *v;
    uint32_t m;
    int64_t now;
    const stream *st;
    uint32_t row;
} rctx;

static rval eval(const rctx *c, const rnode *n);

static rval v_null(void)
{
    rval r = {1, 0, 0, NULL};
    return r;
}

static rval v_num(double x)
{
    rval r = {0, x, 0, NULL};
    if (isnan(x))
        r.null = 1;
    return r;
}

static rval v_bool(int b)
{
    return v_num(b ? 1.0 : 0.0);
}

static rval v_code(uint32_t code)
{
    rval r = {code == 0, 0, code, NULL};
    return r;
}

static int truthy(rval x)
{
    return !x.null && x.num != 0;
}

/* ---- reading columns (independently of vcol_*) -------------------------------------- */

static size_t col_index(const vcol *c, uint32_t row)
{
    return c->via ? c->via[row] : row;
}

/* A numeric or timestamp cell as a double (timestamps in seconds); NAN when null. */
static double col_number(const vcol *c, uint32_t row)
{
    if (!c->data)
        return NAN;
    size_t i = col_index(c, row);
    switch (c->st) {
    case VS_F64:
        return ((const double *)c->data)[i];
    case VS_I64:
        return (double)((const int64_t *)c->data)[i];
    case VS_I32:
        return (double)((const int32_t *)c->data)[i];
    case VS_MONEY:
        return (double)((const int64_t *)c->data)[i] / PATRON_MONEY_SCALE;
    case VS_TS: {
        int64_t t = ((const int64_t *)c->data)[i];
        return t == PATRON_NULL_TS ? NAN : (double)t;
    }
    case VS_DAYS: {
        int32_t d = ((const int32_t *)c->data)[i];
        return d == INT32_MIN ? NAN : (double)d * 86400.0;
    }
    default:
        return NAN;
    }
}

static rval col_value(const vcol *c, vtype t, uint32_t row)
{
    if (!c->data || c->st == VS_NONE)
        return v_null();
    if (t == VT_STR)
        return c->st == VS_CODE ? v_code(((const uint32_t *)c->data)[col_index(c, row)]) : v_null();
    if (t == VT_BOOL) {
        if (c->st != VS_BOOL)
            return v_null();
        uint8_t b = ((const uint8_t *)c->data)[col_index(c, row)];
        return b == 2 ? v_null() : v_bool(b);
    }
    return v_num(col_number(c, row));
}

/* ---- computed member fields ----------------------------------------------------------- */

static const vcol *stream_col(const stream *s, const char *name)
{
    for (size_t i = 0; i < s->n_fields; i++)
        if (strcmp(s->fields[i].name, name) == 0)
            return &s->fields[i].col;
    return NULL;
}

/* Money of a VS_MONEY column cell. */
static int64_t col_money(const vcol *c, uint32_t row)
{
    return ((const int64_t *)c->data)[col_index(c, row)];
}

/* Net spend (orders minus returns) of member m over rows with lo < ts <= hi, money units. */
static int64_t net_spend(const rctx *c, int64_t lo, int64_t hi, int has_lo)
{
    int64_t sum = 0;
    const stream *o = &c->v->streams[ST_ORDERS], *r = &c->v->streams[ST_RETURNS];
    const vcol *oa = stream_col(o, "amount"), *ra = stream_col(r, "amount");
    for (uint32_t i = o->beg[c->m]; i < o->end[c->m]; i++)
        if (o->ts[i] <= hi && (!has_lo || o->ts[i] > lo))
            sum += col_money(oa, i);
    for (uint32_t i = r->beg[c->m]; i < r->end[c->m]; i++)
        if (r->ts[i] <= hi && (!has_lo || r->ts[i] > lo))
            sum -= col_money(ra, i);
    return sum;
}

static int is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static rval computed(const rctx *c, int which)
{
    const mview *v = c->v;
    uint32_t m = c->m;
    int64_t now = c->now;
    switch (which) {
    case F_AGE:
    case F_DAYS_TO_BIRTHDAY: {
        int32_t bd = v->birth_days[m];
        if (bd == INT32_MIN)
            return v_null();
        int by, bm, bdd, ny, nm, nd;
        int64_t today = time_day_of(now);
        time_civil_from_days(bd, &by, &bm, &bdd);
        time_civil_from_days(today, &ny, &nm, &nd);
        if (which == F_AGE) {
            int age = ny - by;
            if (nm < bm || (nm == bm && nd < bdd))
                age--;
            return v_num(age);
        }
        for (int y = ny;; y++) {
            int dd = (bm == 2 && bdd == 29 && !is_leap(y)) ? 28 : bdd;
            int64_t day = time_days_from_civil(y, (unsigned)bm, (unsigned)dd);
            if (day >= today)
                return v_num((double)(day - today));
        }
    }
    case F_TENURE_DAYS: {
        int64_t e = c->db->enrolled_at[m];
        if (e == PATRON_NULL_TS)
            return v_null();
        return v_num((double)(now - e) / 86400.0);
    }
    case F_RECENCY_DAYS: {
        const stream *o = &v->streams[ST_ORDERS];
        int64_t last = PATRON_NULL_TS;
        for (uint32_t i = o->beg[m]; i < o->end[m]; i++)
            if (o->ts[i] <= now && (last == PATRON_NULL_TS || o->ts[i] > last))
                last = o->ts[i];
        if (last == PATRON_NULL_TS)
            return v_null();
        return v_num((double)(now - last) / 86400.0);
    }
    case F_FREQUENCY:
    case F_AOV: {
        const stream *o = &v->streams[ST_ORDERS];
        int64_t f = 0;
        for (uint32_t i = o->beg[m]; i < o->end[m]; i++)
            if (o->ts[i] <= now)
                f++;
        if (which == F_FREQUENCY)
            return v_num((double)f);
        if (f == 0)
            return v_null();
        return v_num((double)net_spend(c, 0, now, 0) / PATRON_MONEY_SCALE / (double)f);
    }
    case F_MONETARY:
        return v_num((double)net_spend(c, 0, now, 0) / PATRON_MONEY_SCALE);
    case F_SPEND_TREND: {
        const int64_t d90 = 90 * 86400;
        double s1 = (double)net_spend(c, now - d90, now, 1) / PATRON_MONEY_SCALE;
        double s0 = (double)net_spend(c, now - 2 * d90, now - d90, 1) / PATRON_MONEY_SCALE;
        return v_num((s1 - s0) / (s0 > 1 ? s0 : 1));
    }
    default:
        return v_null();
    }
}

/* consent.X at now: granted and not expired; missing profiling/personalization take the
 * program defaults, every other missing consent is denied. */
static int consent_at(const mview *v, uint32_t m, int k, int64_t now)
{
    uint8_t s = v->consent[k][m];
    if (s == CONSENT_MISSING) {
        if (k == CK_PROFILING)
            return v->default_profiling == CONSENT_GRANTED;
        if (k == CK_PERSONALIZATION)
            return v->default_personalization == CONSENT_GRANTED;
        return 0;
    }
    if (s != CONSENT_GRANTED)
        return 0;
    int64_t ex = v->consent_expires[k][m];
    return ex == PATRON_NULL_TS || now < ex;
}

static rval field(const rctx *c, const rnode *n)
{
    switch (n->ref) {
    case REF_NONE:
        return v_null();
    case REF_COL:
        if (n->vc.st == VS_FN) {
            if (n->type == VT_STR) {
                uint32_t code = n->fn->code(n->fn, c->m, c->now);
                return code ? v_code(code) : v_null();
            }
            double d = n->fn->num(n->fn, c->m, c->now);
            return isnan(d) ? v_null() : v_num(d);
        }
        return col_value(&n->vc, n->type, c->m);
    case REF_MEMBER_ID:
        return v_code(c->m + 1);
    case REF_TAGS:
        return v_null(); /* only read through "in" */
    case REF_CONSENT:
        return v_bool(consent_at(c->v, c->m, n->which, c->now));
    case REF_COMPUTED:
        return computed(c, n->which);
    case REF_EVENT:
        if (!c->st)
            return v_null();
        return col_value(&n->vc, n->type, c->row);
    }
    return v_null();
}

/* ---- aggregates ------------------------------------------------------------------------- */

static int row_visible(const rnode *n, int64_t ts, int64_t now)
{
    if (n->has_window)
        return ts > now - n->w_from && ts <= now - n->w_to;
    return ts <= now;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static rval aggregate(const rctx *c, const rnode *n)
{
    const stream *s = n->stream;
    const vcol *fc = n->sfield ? &n->sfield->col : NULL;
    vtype ft = fc ? fc->type : VT_NUM;
    rctx rc = *c;
    rc.st = s;
    uint32_t lo = s->beg[c->m], hi = s->end[c->m];
    int64_t count = 0, money = 0;
    double sum = 0, best = NAN;
    double *vals = NULL;
    size_t n_vals = 0;
    int is_money = fc && fc->st == VS_MONEY;
    if (n->op == AGG_COUNT_DISTINCT && hi > lo)
        vals = mem_alloc_array(hi - lo, sizeof *vals);
    for (uint32_t r = lo; r < hi; r++) {
        if (!row_visible(n, s->ts[r], c->now))
            continue;
        rc.row = r;
        if (n->a && !truthy(eval(&rc, n->a)))
            continue;
        if (!fc) {
            count++;
            continue;
        }
        rval x = col_value(fc, ft, r);
        if (x.null)
            continue;
        double val = ft == VT_STR ? (double)x.code : x.num;
        count++;
        switch (n->op) {
        case AGG_SUM:
        case AGG_AVG:
            if (is_money)
                money += col_money(fc, r);
            else
                sum += val;
            break;
        case AGG_MIN:
            if (isnan(best) || val < best)
                best = val;
            break;
        case AGG_MAX:
            if (isnan(best) || val > best)
                best = val;
            break;
        case AGG_COUNT_DISTINCT:
            if (vals) {
                vals[n_vals++] = val;
            } else { /* no memory: count it unless an earlier qualifying row had it */
                int seen = 0;
                for (uint32_t q = lo; q < r && !seen; q++) {
                    rctx qc = rc;
                    qc.row = q;
                    if (!row_visible(n, s->ts[q], c->now) || (n->a && !truthy(eval(&qc, n->a))))
                        continue;
                    rval y = col_value(fc, ft, q);
                    seen = !y.null && (ft == VT_STR ? (double)y.code : y.num) == val;
                }
                if (seen)
                    count--;
            }
            break;
        default:
            break;
        }
    }
    if (is_money)
        sum = (double)money / PATRON_MONEY_SCALE;
    switch (n->op) {
    case AGG_COUNT:
        return v_num((double)count);
    case AGG_SUM:
        return v_num(sum);
    case AGG_AVG:
        return count ? v_num(sum / (double)count) : v_null();
    case AGG_MIN:
    case AGG_MAX:
        return v_num(best);
    case AGG_COUNT_DISTINCT:
        if (vals) {
            qsort(vals, n_vals, sizeof *vals, cmp_double);
            count = 0;
            for (size_t i = 0; i < n_vals; i++)
                if (i == 0 || vals[i] != vals[i - 1])
                    count++;
            mem_free(vals);
        }
        return v_num((double)count);
    }
    mem_free(vals);
    return v_null();
}

/* ---- operators ---------------------------------------------------------------------------- */

/* Equality of two non-null values of the same type. */
static int same(const rnode *ta, rval a, rval b)
{
    if (ta->type == VT_STR || a.lit || b.lit) {
        if (a.lit && b.lit)
            return a.lit->len == b.lit->len && memcmp(a.lit->str, b.lit->str, a.lit->len) == 0;
        return a.code == b.code;
    }
    return a.num == b.num;
}

static int compare(int op, const rnode *ta, rval a, rval b)
{
    if (a.null || b.null)
        return 0;
    switch (op) {
    case CMP_EQ: return same(ta, a, b);
    case CMP_NE: return !same(ta, a, b);
    case CMP_LT: return a.num < b.num;
    case CMP_LE: return a.num <= b.num;
    case CMP_GT: return a.num > b.num;
    case CMP_GE: return a.num >= b.num;
    }
    return 0;
}

static int has_tag(const mview *v, uint32_t m, uint32_t code)
{
    for (uint32_t i = v->tag_beg[m]; i < v->tag_end[m]; i++)
        if (v->tags[i] == code)
            return 1;
    return 0;
}

static rval eval(const rctx *c, const rnode *n)
{
    switch (n->kind) {
    case N_NUM:
    case N_DUR:
    case N_BOOL:
    case N_TS:
        return v_num(n->num);
    case N_STR: {
        rval r = {0, 0, n->code, n};
        return r;
    }
    case N_NULL:
    case N_LIST:
        return v_null();
    case N_FIELD:
        return field(c, n);
    case N_AGG: {
        rctx top = *c;
        top.st = NULL;
        return aggregate(&top, n);
    }
    case N_INSEG:
        if (!n->a)
            return v_bool(n->bitmap && roaring_bitmap_contains(n->bitmap, c->m));
        {
            rctx top = *c;
            top.st = NULL;
            return v_bool(truthy(eval(&top, n->a)));
        }
    case N_DAYS_SINCE: {
        rval t = eval(c, n->a);
        return t.null ? v_null() : v_num(((double)c->now - t.num) / 86400.0);
    }
    case N_NEG: {
        rval x = eval(c, n->a);
        return x.null ? x : v_num(-x.num);
    }
    case N_ARITH: {
        rval x = eval(c, n->a), y = eval(c, n->b);
        if (x.null || y.null)
            return v_null();
        switch (n->op) {
        case '+': return v_num(x.num + y.num);
        case '-': return v_num(x.num - y.num);
        case '*': return v_num(x.num * y.num);
        default: return y.num == 0 ? v_null() : v_num(x.num / y.num);
        }
    }
    case N_CMP:
        return v_bool(compare(n->op, n->a, eval(c, n->a), eval(c, n->b)));
    case N_BETWEEN: {
        rval x = eval(c, n->a), lo = eval(c, n->b), hi = eval(c, n->c);
        return v_bool(compare(CMP_GE, n->a, x, lo) && compare(CMP_LE, n->a, x, hi));
    }
    case N_IN: {
        rval x = eval(c, n->a);
        if (x.null)
            return v_bool(0);
        int found = 0;
        if (n->b->kind == N_LIST) {
            for (size_t i = 0; i < n->b->n_items && !found; i++)
                found = compare(CMP_EQ, n->a, x, eval(c, n->b->items[i]));
        } else {
            found = has_tag(c->v, c->m, x.code);
        }
        return v_bool(n->op ? !found : found);
    }
    case N_ISNULL: {
        int isnull = eval(c, n->a).null;
        return v_bool(n->op ? !isnull : isnull);
    }
    case N_NOT:
        return v_bool(!truthy(eval(c, n->a)));
    case N_AND:
        return v_bool(truthy(eval(c, n->a)) && truthy(eval(c, n->b)));
    case N_OR:
        return v_bool(truthy(eval(c, n->a)) || truthy(eval(c, n->b)));
    }
    return v_null();
}

int rule_ref_eval(const rule *r, const patron_db *db, uint32_t m, int64_t now)
{
    const mview *v = db->view;
    if (!v || m >= v->n || !r || !r->root)
        return 0;
    if (r->reads_models && !consent_at(v, m, CK_PROFILING, now))
        return 0; /* SPEC 1.5: no profiling consent, no model-derived segment */
    rctx c = {db, v, m, now, NULL, 0};
    return truthy(eval(&c, r->root));
}
