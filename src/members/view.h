/*
 * view.h -- the member model as the rule engine and the models read it: profile columns
 * (dictionary-encoded strings, tag sets, consents, typed attributes) and event streams
 * (per-member, time-ordered slices with typed columns).
 *
 * The view is built from the store on first need (db_view_ensure) and dropped when an
 * import changes what it covers, so it always equals what a fresh load would give.
 * Everything is columnar: member fields are arrays indexed by member, a stream is a CSR
 * (off[m]..off[m+1] are member m's events, oldest first) with one array per field.
 */
#ifndef PATRON_MEMBERS_VIEW_H
#define PATRON_MEMBERS_VIEW_H

#include "base/strdict.h"
#include "core/db.h"
#include "store/store_cells.h"

/* Value types the rule language knows. */
typedef enum vtype { VT_NULL, VT_NUM, VT_STR, VT_BOOL, VT_TS, VT_TAGS, VT_DUR, VT_LIST } vtype;

/* How a column's values are stored. */
typedef enum vstore {
    VS_F64,    /* double, NAN = null */
    VS_I64,    /* int64 count */
    VS_MONEY,  /* int64 money units (÷ PATRON_MONEY_SCALE) */
    VS_I32,    /* int32 */
    VS_TS,     /* int64 seconds, PATRON_NULL_TS = null */
    VS_CODE,   /* uint32 dictionary code, 0 = null */
    VS_BOOL,   /* uint8: 0 false, 1 true, 2 null */
    VS_DAYS,   /* int32 days since 1970-01-01, INT32_MIN = null (a date) */
    VS_NONE,   /* always null (a field whose source does not exist yet) */
    VS_FN,     /* a member column computed at the reader's now (vfn below) */
} vstore;

/* A member column whose value depends on now and is computed on read (the loyalty
 * fields: the ledger answers for any instant).  Reads are concurrent: the functions must
 * only read.  next() is the first instant after now at which the value may change
 * (INT64_MAX: not before new data). */
typedef struct vfn {
    double (*num)(const struct vfn *f, uint32_t m, int64_t now);   /* VT_NUM; NAN = null */
    uint32_t (*code)(const struct vfn *f, uint32_t m, int64_t now); /* VT_STR; 0 = null */
    int64_t (*next)(const struct vfn *f, uint32_t m, int64_t now);
    void *ctx;
    uint32_t *codes; /* for code(): its own table (freed with the column), e.g. index -> code */
    size_t n_codes;
} vfn;

/* One column: row r's value is data[via ? via[r] : r] (VS_FN: see the rule node's fn). */
typedef struct vcol {
    vtype type;
    vstore st;
    const void *data;
    const uint32_t *via;
    const strdict *dict; /* VT_STR: the dictionary of its codes */
} vcol;

double vcol_num(const vcol *c, uint32_t row);     /* NUM/TS/DAYS as a double; NAN = null */
uint32_t vcol_code(const vcol *c, uint32_t row);  /* STR code; 0 = null */
int vcol_bool(const vcol *c, uint32_t row);       /* 0, 1, or 2 = null */

enum {
    MV_EMAIL, MV_PHONE, MV_FIRST_NAME, MV_LAST_NAME, MV_GENDER, MV_COUNTRY, MV_REGION,
    MV_CITY, MV_POSTAL_CODE, MV_LANGUAGE, MV_SIGNUP_CHANNEL, MV_PREFERRED_CHANNEL,
    MV_REFERRED_BY, MV__NSTR
};
extern const char *const mv_str_names[MV__NSTR];

/* Consent keys: the channels of SPEC 1.4, then the purposes. */
enum { CK_EMAIL, CK_SMS, CK_PUSH, CK_APP, CK_WEB, CK_SOCIAL, CK_MAIL, CK_MARKETING,
       CK_PROFILING, CK_PERSONALIZATION, CK__N };
extern const char *const mv_consent_names[CK__N];
enum { CONSENT_MISSING = 0, CONSENT_GRANTED = 1, CONSENT_DENIED = 2 };

typedef struct mattr {
    char *name;      /* snake_case, without "attributes." */
    vtype type;      /* VT_NUM, VT_BOOL or VT_STR: number when every value is a number,
                      * condition when every value is true/false, else string */
    double *num;
    uint8_t *b;
    uint32_t *code;  /* in pstr: every value as text (so a type change needs no rewrite) */
    uint8_t *from_event; /* 1: set by a survey answer (a profile does not override it) */
    int seen_num, seen_bool, seen_str;
} mattr;

/* A stream field: its name and its column over the stream's rows. */
typedef struct sfield {
    const char *name;
    vcol col;
} sfield;

enum { ST_ORDERS, ST_ITEMS, ST_RETURNS, ST_REDEMPTIONS, ST_POINTS, ST_MESSAGES, ST_VIEWS,
       ST_REFERRALS, ST_SURVEYS, ST_CUSTOM, ST__N };
#define STREAM_MAX_FIELDS 10
#define STREAM_MAX_COLS 4

/* A stream: per member a slice of rows [beg[m], end[m]) in time order, with room for
 * cap[m] rows from beg[m] (a gapped CSR: an event for a member appends in place, or
 * moves the member's rows to the end of the arrays with twice the room).  Row storage is
 * col[0] = ts (int64) and up to three more columns (see view.c). */
typedef struct stream {
    const char *name;
    uint32_t *beg, *end, *cap;
    const int64_t *ts;
    size_t n_fields;
    sfield fields[STREAM_MAX_FIELDS];
    void *col[STREAM_MAX_COLS];
    uint8_t colsz[STREAM_MAX_COLS];
    int ncols;
    size_t nrows, caprows, garbage;
} stream;

typedef struct mview {
    uint32_t n, capm;        /* members covered, room */
    strdict pstr;            /* profile strings, tags, attribute strings */
    uint32_t *str[MV__NSTR];
    int32_t *birth_days;
    uint32_t *tag_beg, *tag_end, *tags; /* interests of m: tags[tag_beg[m]..tag_end[m]) */
    size_t n_tags, cap_tags;
    uint8_t *consent[CK__N];
    int64_t *consent_expires[CK__N], *consent_at[CK__N];
    uint8_t default_profiling, default_personalization; /* CONSENT_GRANTED or _DENIED */
    mattr *attr;
    size_t n_attr, cap_attr;
    /* line items, in stored order: it_order is the order index */
    size_t n_items, cap_items;
    uint32_t *it_order, *it_sku, *it_cat, *it_brand;
    int32_t *it_qty;
    int64_t *it_price;
    strdict items_dict[DB_DICT__N]; /* DB_DICT_SKU.. codes as stored (channel, store too) */
    strdict estr;            /* strings of non-order events */
    stream streams[ST__N];
    /* behavioural totals over all of a member's orders and returns, kept with them: at any
     * now >= bf_max[m] (the latest of those events) they are the behavioural fields */
    uint32_t *bf_freq;
    int64_t *bf_money, *bf_last, *bf_max; /* PATRON_NULL_TS when none */
    store_buf pbuf;          /* a profile's or an event's cells (live updates) */
    int failed;              /* an incremental update ran out of memory: rebuild */
    int ledger_fed;          /* points/redemptions hold the ledger's rows (view_ledger_rows) */
    uint64_t ledger_epoch;   /* the ledger load they came from (loyalty.c) */
    /* bitmap indexes of code columns built by the rule evaluator (rules/eval.c), each
     * valid for one view generation; freed with the view */
    struct colidx *idx;
    size_t n_idx;
    void (*idx_free)(struct colidx *idx, size_t n);
} mview;

/* Member columns computed above this layer (model fields, loyalty fields) and attached
 * for the rule engine by name ("rfm.segment", "points_balance", …).  A column covers
 * n members; members added later read as null until it is attached again. */
typedef struct extcol {
    char name[40];
    vtype type;      /* VT_NUM or VT_STR */
    int is_model;    /* SPEC 1.5: read only with profiling consent */
    uint32_t n, cap;
    double *num;     /* VT_NUM: NAN = null */
    uint32_t *code;  /* VT_STR: codes in dict, 0 = null */
    strdict dict;
    vfn fn;          /* fn.num or fn.code set: computed at the reader's now instead */
} extcol;

/* The column `name`, created when missing, sized for every member now (new slots null).
 * NULL when out of memory. */
extcol *db_extcol(patron_db *db, const char *name, vtype type, int is_model);
const extcol *db_extcol_find(const patron_db *db, const char *name);

/* Builds the view when it is missing or stale.  0 or a patron status. */
int db_view_ensure(patron_db *db, patron_error *err);
void db_view_free(patron_db *db);

/* 1 when member m may be profiled at now (SPEC 1.5); needs db_view_ensure first. */
int db_profiling_allowed(const patron_db *db, uint32_t m, int64_t now);
/* Consent k (CK_*) of member m at now: 1 granted and not expired, else 0. */
int db_consent(const patron_db *db, uint32_t m, int k, int64_t now);

/* Incremental maintenance, called by the importers after their commit (no-ops when no
 * view is built).  They keep the view equal to what a rebuild from the store gives;
 * view_after_import() rebinds the columns and bumps db->view_gen (rules compiled
 * against the view must be compiled again).  On failure the view is marked stale. */
void view_profile(patron_db *db, uint32_t m, const char *json);
void view_event(patron_db *db, uint32_t m, const char *type, int64_t ts, const char *json);
void view_dict_add(patron_db *db, int kind, uint32_t code, const char *s, size_t n);
void view_order(patron_db *db, uint32_t o);
/* A line item of order o (already given to view_order). */
void view_item(patron_db *db, uint32_t o, uint32_t sku, uint32_t cat, uint32_t brand,
               int32_t qty, int64_t price);
void view_void(patron_db *db, uint32_t o);
void view_after_import(patron_db *db);

/* The ledger's rows for member m (loyalty module): they replace m's `points` and
 * `redemptions` slices, and from then on imported points/redemption events no longer
 * enter those streams (the ledger posts them).  Rows in time order.  0, or -1 when out
 * of memory (the view is then marked for a rebuild). */
typedef struct view_lrow {
    int64_t ts;
    double points;
    const char *s; /* reason (points) or reward_id (redemptions) */
    size_t sn;
} view_lrow;
int view_ledger_rows(patron_db *db, uint32_t m, const view_lrow *pts, size_t np,
                     const view_lrow *red, size_t nr);
/* Every member's rows at once (a fill after a build, or after a reload): member m's
 * points rows are pts[poff[m] .. poff[m + 1]), its redemptions red[roff[m] .. roff[m + 1]);
 * the offsets have db->n_members + 1 entries. */
int view_ledger_all(patron_db *db, const size_t *poff, const view_lrow *pts, const size_t *roff,
                    const view_lrow *red);
/* A hash of everything the view holds, order-insensitive among rows of one member with
 * the same timestamp (tests: incremental == rebuilt). */
uint64_t view_hash(const patron_db *db);

const stream *view_stream(const mview *v, const char *name, size_t n);
const sfield *stream_field(const stream *s, const char *name, size_t n);
const mattr *view_attr(const mview *v, const char *name, size_t n);

#endif
