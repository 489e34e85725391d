/*
 * rule.h -- the segment rule language (SPEC §3): the syntax tree, the parser, and name
 * resolution with type checking.  Evaluation lives elsewhere: the compiled batch
 * evaluator (rules/eval.h) and the reference interpreter (rules/ref.h) both walk the
 * checked tree this file produces and share nothing else.
 *
 * Pipeline: rule_parse() -> rule_check() (resolves names against the member view,
 * assigns types, folds constants, resolves string literals to dictionary codes,
 * inlines in_segment rules with cycle detection) -> evaluate.
 *
 * Errors carry the line and column of the offending token and a caret line, e.g.
 *     1:1: unknown field 'contry' (did you mean 'country'?)
 *     contry = "DE"
 *     ^
 */
#ifndef PATRON_RULES_RULE_H
#define PATRON_RULES_RULE_H

#include "members/view.h"

typedef enum nkind {
    N_NUM,        /* num */
    N_STR,        /* str/len; code once checked against a column's dictionary */
    N_BOOL,       /* num = 0 or 1 */
    N_NULL,
    N_DUR,        /* num = days; as a value it is its number of days */
    N_TS,         /* a timestamp constant (a string compared with a timestamp): num = seconds */
    N_LIST,       /* items[n_items] */
    N_FIELD,      /* str = the dotted name as written; ref filled by rule_check */
    N_AGG,        /* op = AGG_*; stream; field (or NULL); a = where (or NULL); window */
    N_INSEG,      /* str = segment name; a = the inlined rule (or NULL for a static segment) */
    N_DAYS_SINCE, /* a = the timestamp */
    N_NEG,        /* a */
    N_ARITH,      /* op = '+', '-', '*', '/'; a, b */
    N_CMP,        /* op = CMP_*; a, b */
    N_BETWEEN,    /* a between b and c */
    N_IN,         /* a in b (b a list or a tag set); op = 1 for "not in" */
    N_ISNULL,     /* a is null; op = 1 for "is not null" */
    N_NOT,        /* a */
    N_AND,        /* a, b */
    N_OR,         /* a, b */
} nkind;

enum { CMP_EQ, CMP_NE, CMP_LT, CMP_LE, CMP_GT, CMP_GE };
enum { AGG_COUNT, AGG_SUM, AGG_AVG, AGG_MIN, AGG_MAX, AGG_COUNT_DISTINCT };
extern const char *const rule_agg_names[6];
extern const char *const rule_cmp_names[6];

/* What a resolved field reads. */
typedef enum refkind {
    REF_NONE,      /* always null (a field whose source does not exist yet: tier, models…) */
    REF_COL,       /* a member column: col (VS_* storage, row = member index) */
    REF_MEMBER_ID, /* member_id: code = member index + 1 */
    REF_TAGS,      /* interests */
    REF_CONSENT,   /* consent.NAME: which = CK_* */
    REF_COMPUTED,  /* which = F_*: a value computed from events/profile and now */
    REF_EVENT,     /* a field of the enclosing aggregate's stream: col (row = stream row) */
} refkind;

/* Computed member fields. */
enum { F_AGE, F_DAYS_TO_BIRTHDAY, F_TENURE_DAYS, F_RECENCY_DAYS, F_FREQUENCY, F_MONETARY,
       F_AOV, F_SPEND_TREND, F__N };
extern const char *const rule_computed_names[F__N];

typedef struct rnode rnode;
struct rnode {
    nkind kind;
    vtype type;          /* after rule_check */
    int line, col;       /* where the node starts in the source (1-based) */
    size_t so, eo;       /* its source text: src[so..eo) */
    int op;
    rnode *a, *b, *c;
    rnode **items;       /* N_LIST */
    size_t n_items;
    double num;
    char *str;           /* N_STR value / N_FIELD name / N_INSEG name (NUL-terminated) */
    size_t len;
    /* N_STR after checking against a column: its code in that column's dictionary,
     * 0 when the dictionary does not hold the string (yet): it then matches nothing. */
    uint32_t code;
    const strdict *dict; /* the dictionary code refers to (NULL: compare as text) */
    /* N_AGG */
    const stream *stream;
    int stream_id;       /* ST_* */
    const sfield *sfield; /* the aggregated field, or NULL (count of events) */
    char *field_name;
    int has_window;      /* 0: all */
    int64_t w_from, w_to; /* window (now - w_from, now - w_to], seconds, w_from > w_to >= 0 */
    /* N_FIELD after checking */
    refkind ref;
    int which;
    vcol vc;             /* REF_COL / REF_EVENT: the column read */
    const vfn *fn;       /* REF_COL with vc.st == VS_FN: computed at the reader's now */
    int is_model;        /* reads a model field (SPEC 1.5: profiling consent) */
    const void *bitmap;  /* N_INSEG of a static segment: its members (roaring_bitmap_t) */
    int time_dependent;  /* its value can change with now alone */
};

typedef struct rule {
    rnode *root;
    char *src;
    int reads_models;    /* some field, directly or through in_segment, is a model field */
    int time_dependent;
    /* rules inlined by in_segment (their text must outlive the nodes) */
    struct rule **subs;
    size_t n_subs;
    /* every node, for freeing */
    rnode **nodes;
    size_t n_nodes, cap_nodes;
} rule;

/* Looks up a named segment for in_segment(): returns 1 and its rule text (static
 * segments: *text = NULL and *members = its member list bitmap as an opaque pointer),
 * 2 for a static set derived from models (rules reading it need profiling consent), 0
 * when there is no such segment. */
typedef struct rule_env {
    patron_db *db;
    int (*segment)(void *ctx, const char *name, const char **text, const void **members);
    void *ctx;
} rule_env;

/* Parses src into *out (caller frees with rule_free).  Syntax errors only. */
int rule_parse(const char *src, rule **out, patron_error *err);
/* Resolves names, checks types, folds constants, inlines in_segment.  The member view
 * must be built (db_view_ensure). */
int rule_check(rule *r, const rule_env *env, patron_error *err);
/* Both in one. */
int rule_compile(const char *src, const rule_env *env, rule **out, patron_error *err);
void rule_free(rule *r);

/* Formats "L:C: message", the source line and a caret under the column of src[pos] into
 * err (PATRON_EINPUT); returns PATRON_EINPUT. */
int rule_error_at(const char *src, size_t pos, patron_error *err, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

/* Writes a node back as source text (for --explain), into buf (truncated to cap). */
void rule_node_text(const rule *r, const rnode *n, char *buf, size_t cap);

/* All names a rule may use at member level and in each stream (for docs, did-you-mean
 * and the random rule generator): NULL-terminated lists. */
extern const char *const rule_member_fields[];

#endif
