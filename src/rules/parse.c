/*
 * parse.c -- lexer and recursive-descent parser for the rule language (SPEC §3 grammar).
 *
 * The lexer works on demand (one token of lookahead); the parser follows the grammar
 * one function per production.  Every node records its source span so errors and
 * --explain can show the text as written.
 */
#include "rules/rule.h"

#include "base/err.h"
#include "base/mem.h"
#include "base/num.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const rule_agg_names[6] = {"count", "sum", "avg", "min", "max", "count_distinct"};
const char *const rule_cmp_names[6] = {"=", "!=", "<", "<=", ">", ">="};

typedef enum tok {
    T_EOF, T_NUM, T_DUR, T_STR, T_IDENT, T_LP, T_RP, T_LB, T_RB, T_COMMA, T_DOTDOT,
    T_EQ, T_NE, T_LT, T_LE, T_GT, T_GE, T_PLUS, T_MINUS, T_STAR, T_SLASH, T_BAD
} tok;

typedef struct parser {
    rule *r;
    const char *s;
    size_t n, pos;
    /* current token */
    tok t;
    size_t ts, te; /* its span */
    size_t last_end; /* end of the token consumed last */
    double num;
    char *str; /* T_STR: unescaped value (owned until taken) */
    size_t slen;
    patron_error *err;
    int failed;
    int depth;
} parser;

/* ---- errors ------------------------------------------------------------------------ */

static void line_col(const char *s, size_t pos, int *line, int *col, size_t *ls)
{
    int l = 1;
    size_t start = 0;
    for (size_t i = 0; i < pos; i++)
        if (s[i] == '\n')
            l++, start = i + 1;
    *line = l;
    *col = (int)(pos - start) + 1;
    *ls = start;
}

/* Formats "L:C: message" plus the source line and a caret under column C. */
int rule_error_at(const char *src, size_t pos, patron_error *err, const char *fmt, ...)
{
    int line, col;
    size_t ls;
    line_col(src, pos, &line, &col, &ls);
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t le = ls;
    while (src[le] && src[le] != '\n')
        le++;
    char caret[256];
    size_t k = 0;
    for (size_t i = ls; i < ls + (size_t)(col - 1) && k + 2 < sizeof caret; i++)
        caret[k++] = src[i] == '\t' ? '\t' : ' ';
    caret[k++] = '^';
    caret[k] = '\0';
    return err_set(err, PATRON_EINPUT, "%d:%d: %s\n%.*s\n%s", line, col, msg,
                   (int)(le - ls > 200 ? 200 : le - ls), src + ls, caret);
}

static void perr(parser *p, size_t pos, const char *fmt, const char *a)
{
    if (p->failed)
        return;
    p->failed = 1;
    rule_error_at(p->s, pos, p->err, fmt, a);
}

/* ---- lexer ------------------------------------------------------------------------- */

static int ident_char(int c)
{
    return isalnum(c) || c == '_' || c == '.';
}

static void next(parser *p)
{
    const char *s = p->s;
    size_t i = p->pos;
    p->last_end = p->te;
    mem_free(p->str);
    p->str = NULL;
    for (;;) {
        while (i < p->n && isspace((unsigned char)s[i]))
            i++;
        if (i + 1 < p->n && s[i] == '-' && s[i + 1] == '-') { /* comment */
            while (i < p->n && s[i] != '\n')
                i++;
            continue;
        }
        break;
    }
    p->ts = i;
    if (i >= p->n) {
        p->t = T_EOF;
        p->te = p->pos = i;
        return;
    }
    unsigned char c = (unsigned char)s[i];
    if (isdigit(c) || (c == '.' && i + 1 < p->n && isdigit((unsigned char)s[i + 1]))) {
        size_t j = i;
        while (j < p->n && isdigit((unsigned char)s[j]))
            j++;
        if (j + 1 < p->n && s[j] == '.' && isdigit((unsigned char)s[j + 1])) {
            j++;
            while (j < p->n && isdigit((unsigned char)s[j]))
                j++;
        }
        if (num_parse_double(s + i, j - i, &p->num) != 0) {
            p->t = T_BAD;
            p->te = p->pos = j;
            return;
        }
        p->t = T_NUM;
        /* A duration: a unit right after the number. */
        double mul = 0;
        size_t k = j;
        if (k < p->n && s[k] == 'd')
            mul = 1, k++;
        else if (k < p->n && s[k] == 'w')
            mul = 7, k++;
        else if (k + 1 < p->n && s[k] == 'm' && s[k + 1] == 'o')
            mul = 30, k += 2;
        else if (k < p->n && s[k] == 'y')
            mul = 365, k++;
        if (mul != 0 && (k >= p->n || !(isalnum((unsigned char)s[k]) || s[k] == '_'))) {
            p->t = T_DUR;
            p->num *= mul;
            j = k;
        } else if (j < p->n && (isalpha((unsigned char)s[j]) || s[j] == '_')) {
            p->t = T_BAD;
            while (j < p->n && ident_char((unsigned char)s[j]))
                j++;
        }
        p->te = p->pos = j;
        return;
    }
    if (isalpha(c) || c == '_') {
        size_t j = i;
        while (j < p->n && ident_char((unsigned char)s[j]))
            j++;
        /* "x..y" never happens in names; a trailing '.' is not part of a name */
        while (j > i + 1 && s[j - 1] == '.')
            j--;
        p->t = T_IDENT;
        p->te = p->pos = j;
        return;
    }
    if (c == '"') {
        size_t j = i + 1;
        char *out = mem_alloc(p->n - i + 1);
        size_t k = 0;
        if (!out) {
            p->t = T_BAD;
            p->te = p->pos = p->n;
            return;
        }
        while (j < p->n && s[j] != '"') {
            if (s[j] == '\\' && j + 1 < p->n && (s[j + 1] == '"' || s[j + 1] == '\\')) {
                out[k++] = s[j + 1];
                j += 2;
            } else if (s[j] == '\\') {
                mem_free(out);
                p->t = T_BAD;
                p->ts = j;
                p->te = p->pos = j + 1;
                return;
            } else {
                out[k++] = s[j++];
            }
        }
        if (j >= p->n) {
            mem_free(out);
            p->t = T_BAD;
            p->te = p->pos = p->n;
            return;
        }
        out[k] = '\0';
        p->str = out;
        p->slen = k;
        p->t = T_STR;
        p->te = p->pos = j + 1;
        return;
    }
    size_t j = i + 1;
    switch (c) {
    case '(': p->t = T_LP; break;
    case ')': p->t = T_RP; break;
    case '[': p->t = T_LB; break;
    case ']': p->t = T_RB; break;
    case ',': p->t = T_COMMA; break;
    case '+': p->t = T_PLUS; break;
    case '-': p->t = T_MINUS; break;
    case '*': p->t = T_STAR; break;
    case '/': p->t = T_SLASH; break;
    case '=': p->t = T_EQ; break;
    case '.':
        if (j < p->n && s[j] == '.') {
            p->t = T_DOTDOT;
            j++;
        } else {
            p->t = T_BAD;
        }
        break;
    case '!':
        if (j < p->n && s[j] == '=') {
            p->t = T_NE;
            j++;
        } else {
            p->t = T_BAD;
        }
        break;
    case '<':
        if (j < p->n && s[j] == '=')
            p->t = T_LE, j++;
        else if (j < p->n && s[j] == '>')
            p->t = T_NE, j++;
        else
            p->t = T_LT;
        break;
    case '>':
        if (j < p->n && s[j] == '=')
            p->t = T_GE, j++;
        else
            p->t = T_GT;
        break;
    default:
        p->t = T_BAD;
        /* one whole UTF-8 character */
        while (j < p->n && ((unsigned char)s[j] & 0xC0) == 0x80)
            j++;
        break;
    }
    p->te = p->pos = j;
}

static int is_kw(const parser *p, const char *kw)
{
    size_t n = strlen(kw);
    return p->t == T_IDENT && p->te - p->ts == n && memcmp(p->s + p->ts, kw, n) == 0;
}

static const char *tok_desc(const parser *p, char *buf, size_t cap)
{
    if (p->t == T_EOF)
        return "the end of the rule";
    snprintf(buf, cap, "'%.*s'", (int)(p->te - p->ts > 40 ? 40 : p->te - p->ts), p->s + p->ts);
    return buf;
}

static void unexpected(parser *p, const char *wanted)
{
    char b[64], msg[160];
    if (p->t == T_BAD && p->ts < p->n && p->s[p->ts] == '"') {
        perr(p, p->ts, "%s", "unterminated string");
        return;
    }
    if (p->t == T_BAD) {
        snprintf(msg, sizeof msg, "unexpected %s", tok_desc(p, b, sizeof b));
        perr(p, p->ts, "%s", msg);
        return;
    }
    snprintf(msg, sizeof msg, "expected %s, found %s", wanted, tok_desc(p, b, sizeof b));
    perr(p, p->ts, "%s", msg);
}

/* ---- nodes ------------------------------------------------------------------------- */

static rnode *node(parser *p, nkind k, size_t so)
{
    rule *r = p->r;
    rnode *n = mem_calloc(1, sizeof *n);
    if (!n || MEM_GROW(r->nodes, r->cap_nodes, r->n_nodes + 1)) {
        mem_free(n);
        if (!p->failed) {
            p->failed = 1;
            err_set(p->err, PATRON_ENOMEM, "out of memory");
        }
        return NULL;
    }
    r->nodes[r->n_nodes++] = n;
    n->kind = k;
    n->so = so;
    n->eo = p->ts;
    size_t ls;
    line_col(p->s, so, &n->line, &n->col, &ls);
    return n;
}

/* Ends n's span at the end of the token consumed last. */
static void finish(parser *p, rnode *n)
{
    if (n)
        n->eo = p->last_end > n->so ? p->last_end : n->so;
}

static rnode *parse_or(parser *p);
static rnode *parse_value(parser *p);

static int expect(parser *p, tok t, const char *what)
{
    if (p->failed)
        return -1;
    if (p->t != t) {
        unexpected(p, what);
        return -1;
    }
    next(p);
    return 0;
}

static rnode *parse_window_into(parser *p, rnode *n)
{
    if (is_kw(p, "all")) {
        next(p);
        return n;
    }
    if (p->t != T_DUR) {
        unexpected(p, "a window (90d, 180d..90d or all)");
        return NULL;
    }
    double d1 = p->num, d2 = 0;
    size_t at = p->ts;
    next(p);
    if (p->t == T_DOTDOT) {
        next(p);
        if (p->t != T_DUR) {
            unexpected(p, "a duration after '..'");
            return NULL;
        }
        d2 = p->num;
        if (!(d1 > d2)) {
            perr(p, at, "%s", "a window d1..d2 needs d1 > d2 (e.g. 180d..90d)");
            return NULL;
        }
        next(p);
    }
    if (d1 <= 0) {
        perr(p, at, "%s", "a window must be longer than zero");
        return NULL;
    }
    n->has_window = 1;
    n->w_from = (int64_t)(d1 * 86400.0 + 0.5);
    n->w_to = (int64_t)(d2 * 86400.0 + 0.5);
    return n;
}

static int agg_kind(const parser *p)
{
    for (int k = 0; k < 6; k++)
        if (is_kw(p, rule_agg_names[k]))
            return k;
    return -1;
}

static char *take_text(parser *p, size_t a, size_t b)
{
    char *s = mem_strndup(p->s + a, b - a);
    if (!s && !p->failed) {
        p->failed = 1;
        err_set(p->err, PATRON_ENOMEM, "out of memory");
    }
    return s;
}

static rnode *parse_atom(parser *p)
{
    if (p->failed)
        return NULL;
    size_t so = p->ts;
    rnode *n = NULL;
    switch (p->t) {
    case T_NUM:
        if ((n = node(p, N_NUM, so)))
            n->num = p->num;
        next(p);
        break;
    case T_DUR:
        if ((n = node(p, N_DUR, so)))
            n->num = p->num;
        next(p);
        break;
    case T_STR:
        if ((n = node(p, N_STR, so))) {
            n->str = p->str;
            n->len = p->slen;
            p->str = NULL;
        }
        next(p);
        break;
    case T_LP:
        next(p);
        n = parse_or(p);
        if (expect(p, T_RP, "')'"))
            return NULL;
        if (n) { /* the span includes the parentheses */
            n->so = so;
            size_t ls;
            line_col(p->s, so, &n->line, &n->col, &ls);
        }
        break;
    case T_IDENT: {
        int ak = agg_kind(p);
        size_t ie = p->te;
        if (is_kw(p, "true") || is_kw(p, "false")) {
            if ((n = node(p, N_BOOL, so)))
                n->num = is_kw(p, "true");
            next(p);
            break;
        }
        if (is_kw(p, "null")) {
            n = node(p, N_NULL, so);
            next(p);
            break;
        }
        static const char *const reserved[] = {"and", "or", "not", "in", "is", "between",
                                               "where", "all"};
        for (size_t k = 0; k < sizeof reserved / sizeof *reserved; k++)
            if (is_kw(p, reserved[k])) {
                unexpected(p, "a value");
                return NULL;
            }
        int is_inseg = is_kw(p, "in_segment"), is_days = is_kw(p, "days_since");
        next(p);
        if (p->t == T_LP && ak >= 0) {
            next(p);
            if (p->t != T_IDENT) {
                unexpected(p, "a stream (orders, items, returns, …)");
                return NULL;
            }
            if (!(n = node(p, N_AGG, so)))
                return NULL;
            n->op = ak;
            const char *dot = memchr(p->s + p->ts, '.', p->te - p->ts);
            if (dot) {
                n->str = take_text(p, p->ts, (size_t)(dot - p->s));
                n->field_name = take_text(p, (size_t)(dot - p->s) + 1, p->te);
                n->num = (double)((size_t)(dot - p->s) + 1); /* where the field starts */
            } else {
                n->str = take_text(p, p->ts, p->te);
            }
            n->len = p->ts; /* where the stream name starts (for errors) */
            next(p);
            if (is_kw(p, "where")) {
                next(p);
                n->a = parse_or(p);
            }
            if (!p->failed && p->t == T_COMMA) {
                next(p);
                if (!parse_window_into(p, n))
                    return NULL;
            }
            if (expect(p, T_RP, "')' (or ', WINDOW' / 'where')"))
                return NULL;
        } else if (p->t == T_LP && is_inseg) {
            next(p);
            if (p->t != T_STR) {
                unexpected(p, "a segment name in quotes");
                return NULL;
            }
            if (!(n = node(p, N_INSEG, so)))
                return NULL;
            n->str = p->str;
            n->len = p->slen;
            p->str = NULL;
            next(p);
            if (expect(p, T_RP, "')'"))
                return NULL;
        } else if (p->t == T_LP && is_days) {
            next(p);
            if (!(n = node(p, N_DAYS_SINCE, so)))
                return NULL;
            n->a = parse_value(p);
            if (expect(p, T_RP, "')'"))
                return NULL;
        } else if (p->t == T_LP) {
            char name[64];
            snprintf(name, sizeof name, "%.*s", (int)(ie - so > 60 ? 60 : ie - so), p->s + so);
            perr(p, so,
                 "unknown function '%s' (functions: count, sum, avg, min, max, "
                 "count_distinct, in_segment, days_since)",
                 name);
            return NULL;
        } else {
            if ((n = node(p, N_FIELD, so))) {
                n->str = take_text(p, so, ie);
                n->len = ie - so;
            }
        }
        break;
    }
    case T_LB:
        unexpected(p, "a value (a list is only allowed after 'in')");
        return NULL;
    default:
        unexpected(p, "a value");
        return NULL;
    }
    finish(p, n);
    return n;
}

/* A prefix operator (the current token) applied to what `operand` parses. */
static rnode *parse_prefix(parser *p, nkind k, rnode *(*operand)(parser *))
{
    size_t so = p->ts;
    next(p);
    if (++p->depth > 200) {
        perr(p, so, "%s", "the rule is nested too deeply");
        return NULL;
    }
    rnode *a = operand(p);
    p->depth--;
    rnode *n = a ? node(p, k, so) : NULL;
    if (n) {
        n->a = a;
        finish(p, n);
    }
    return n;
}

static rnode *parse_unary(parser *p)
{
    return p->t == T_MINUS ? parse_prefix(p, N_NEG, parse_unary) : parse_atom(p);
}

/* Binary operators of one precedence level, left-associative: operand { OP operand }.
 * match() gives the operator of the current token (0: none); nesting counts against the
 * depth limit when guard is set. */
static rnode *parse_binary(parser *p, nkind k, rnode *(*operand)(parser *),
                           int (*match)(const parser *), int guard)
{
    size_t so = p->ts;
    if (guard && ++p->depth > 200) {
        perr(p, so, "%s", "the rule is nested too deeply");
        return NULL;
    }
    rnode *l = operand(p);
    int op;
    while (l && !p->failed && (op = match(p)) != 0) {
        next(p);
        rnode *r = operand(p);
        rnode *n = r ? node(p, k, so) : NULL;
        if (!n)
            return NULL;
        n->op = k == N_ARITH ? op : 0, n->a = l, n->b = r;
        finish(p, n);
        l = n;
    }
    if (guard)
        p->depth--;
    return l;
}

static int match_mul(const parser *p)
{
    return p->t == T_STAR ? '*' : p->t == T_SLASH ? '/' : 0;
}

static int match_add(const parser *p)
{
    return p->t == T_PLUS ? '+' : p->t == T_MINUS ? '-' : 0;
}

static int match_and(const parser *p)
{
    return is_kw(p, "and");
}

static int match_or(const parser *p)
{
    return is_kw(p, "or");
}

static rnode *parse_term(parser *p)
{
    return parse_binary(p, N_ARITH, parse_unary, match_mul, 0);
}

static rnode *parse_value(parser *p)
{
    return parse_binary(p, N_ARITH, parse_term, match_add, 1);
}

static rnode *parse_list(parser *p)
{
    size_t so = p->ts;
    next(p); /* [ */
    rnode *n = node(p, N_LIST, so);
    if (!n)
        return NULL;
    for (;;) {
        rnode *v = parse_value(p);
        if (!v)
            return NULL;
        rnode **it = mem_realloc_array(n->items, n->n_items + 1, sizeof *it);
        if (!it) {
            perr(p, so, "%s", "out of memory");
            return NULL;
        }
        n->items = it;
        n->items[n->n_items++] = v;
        if (p->t == T_COMMA) {
            next(p);
            continue;
        }
        if (expect(p, T_RB, "',' or ']'"))
            return NULL;
        break;
    }
    finish(p, n);
    return n;
}

static rnode *parse_pred(parser *p)
{
    size_t so = p->ts;
    rnode *a = parse_value(p);
    if (!a || p->failed)
        return NULL;
    rnode *n = NULL;
    if (p->t >= T_EQ && p->t <= T_GE) {
        int op = (int)(p->t - T_EQ);
        next(p);
        rnode *b = parse_value(p);
        if (!b || !(n = node(p, N_CMP, so)))
            return NULL;
        n->op = op, n->a = a, n->b = b;
    } else if (is_kw(p, "between")) {
        next(p);
        rnode *lo = parse_value(p);
        if (!lo || p->failed)
            return NULL;
        if (!is_kw(p, "and")) {
            unexpected(p, "'and' (x between LOW and HIGH)");
            return NULL;
        }
        next(p);
        rnode *hi = parse_value(p);
        if (!hi || !(n = node(p, N_BETWEEN, so)))
            return NULL;
        n->a = a, n->b = lo, n->c = hi;
    } else if (is_kw(p, "in") || is_kw(p, "not")) {
        int neg = is_kw(p, "not");
        next(p);
        if (neg && !is_kw(p, "in")) {
            unexpected(p, "'in' after 'not'");
            return NULL;
        }
        if (neg)
            next(p);
        rnode *b = p->t == T_LB ? parse_list(p) : parse_value(p);
        if (!b || !(n = node(p, N_IN, so)))
            return NULL;
        n->op = neg, n->a = a, n->b = b;
    } else if (is_kw(p, "is")) {
        next(p);
        int neg = 0;
        if (is_kw(p, "not"))
            neg = 1, next(p);
        if (!is_kw(p, "null")) {
            unexpected(p, "'null'");
            return NULL;
        }
        next(p);
        if (!(n = node(p, N_ISNULL, so)))
            return NULL;
        n->op = neg, n->a = a;
    } else {
        return a;
    }
    finish(p, n);
    return n;
}

static rnode *parse_not(parser *p)
{
    return is_kw(p, "not") ? parse_prefix(p, N_NOT, parse_not) : parse_pred(p);
}

static rnode *parse_and(parser *p)
{
    return parse_binary(p, N_AND, parse_not, match_and, 0);
}

static rnode *parse_or(parser *p)
{
    return parse_binary(p, N_OR, parse_and, match_or, 1);
}

void rule_free(rule *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_nodes; i++) {
        rnode *n = r->nodes[i];
        mem_free(n->str);
        mem_free(n->field_name);
        mem_free(n->items);
        mem_free(n);
    }
    mem_free(r->nodes);
    for (size_t i = 0; i < r->n_subs; i++)
        rule_free(r->subs[i]);
    mem_free(r->subs);
    mem_free(r->src);
    mem_free(r);
}

int rule_parse(const char *src, rule **out, patron_error *err)
{
    *out = NULL;
    rule *r = mem_calloc(1, sizeof *r);
    if (!r || !(r->src = mem_strdup(src))) {
        mem_free(r);
        return err_set(err, PATRON_ENOMEM, "out of memory");
    }
    parser p;
    memset(&p, 0, sizeof p);
    p.r = r;
    p.s = r->src;
    p.n = strlen(src);
    p.err = err;
    next(&p);
    if (p.t == T_EOF) {
        mem_free(p.str);
        rule_error_at(p.s, p.ts, err, "%s", "the rule is empty");
        rule_free(r);
        return PATRON_EINPUT;
    }
    r->root = parse_or(&p);
    if (!p.failed && p.t != T_EOF) {
        if (p.t == T_RP)
            perr(&p, p.ts, "%s", "unbalanced ')'");
        else
            unexpected(&p, "'and', 'or' or the end of the rule");
    }
    mem_free(p.str);
    if (p.failed || !r->root) {
        if (!p.failed)
            err_set(err, PATRON_EINPUT, "cannot parse the rule");
        rule_free(r);
        return err && err->code ? err->code : PATRON_EINPUT;
    }
    *out = r;
    return PATRON_OK;
}

void rule_node_text(const rule *r, const rnode *n, char *buf, size_t cap)
{
    size_t len = n->eo > n->so ? n->eo - n->so : 0;
    while (len && (r->src[n->so + len - 1] == ' ' || r->src[n->so + len - 1] == '\n'))
        len--;
    snprintf(buf, cap, "%.*s", (int)len, r->src + n->so);
}
