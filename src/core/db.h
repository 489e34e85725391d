/*
 * db.h -- the inside of a patron_db: the store handle and the columnar member model.
 *
 * Members are dense indexes 0..n_members-1.  Orders (and returns) are columns indexed
 * by load order; the CSR index (csr_off/csr_ord) lists each member's orders in time
 * order and is rebuilt lazily after a batch is applied.  Everything here is a pure
 * function of the store's contents: state built live equals state loaded at start.
 */
#ifndef PATRON_CORE_DB_H
#define PATRON_CORE_DB_H

#include "base/hmap.h"
#include "patron/patron.h"
#include "store/store.h"

enum { DB_DICT_SKU = 1, DB_DICT_CATEGORY = 2, DB_DICT_BRAND = 3, DB_DICT_CHANNEL = 4, DB_DICT_STORE = 5,
       DB_DICT__N = 6 };

struct patron_db {
    store *st;
    /* members */
    uint32_t n_members;
    size_t cap_members;
    hmap member_ids;
    char **member_id;
    int64_t *enrolled_at;
    uint64_t *profile_hash; /* hash of the stored profile JSON (text stays in the store) */
    /* orders and returns */
    size_t n_orders, cap_orders;
    int32_t *o_member; /* -1 = guest */
    int64_t *o_ts, *o_amount, *o_units;
    uint32_t *o_channel, *o_store; /* dictionary codes (DB_DICT_CHANNEL/STORE), 0 = none */
    int32_t *o_items;
    uint8_t *o_kind, *o_void;
    uint64_t *o_hash;
    hmap order_ids;     /* order id -> order index; built on first need (imports) */
    int order_ids_valid;
    /* dictionaries of item strings (DB_DICT_*): string -> code; codes are dense */
    hmap dict[DB_DICT__N];
    uint64_t n_items_stored;
    /* CSR: orders per member in time order */
    int csr_valid;
    uint32_t *csr_off, *csr_ord;
    uint64_t n_events;
    int model_pending;         /* db_open_deferred: members and orders not loaded yet */
    uint64_t profiles_as_text; /* members imported on the text path (import.c), for tests */
    /* the member view (members/view.h): profile columns and event streams, built on need */
    struct mview *view;
    int view_valid;
    uint64_t view_gen;  /* bumped at every build: what was compiled against an older one is stale */
    /* What the last committed imports changed, for live segments: member indexes (a
     * roaring_bitmap_t, created on need) and DB_SRC_* bits.  Cleared by the reader. */
    void *touched;
    uint32_t touched_sources;
    int tracking;                        /* 1 while an import applies a committed batch */
    uint64_t data_version;               /* bumped by every db_touch batch (see segments) */
    /* built-in segments computed by higher layers (models: "Declining high value"):
     * roaring bitmaps, model-derived; owned here */
    const char *builtin_name[4];
    void *builtin_members[4];
    int n_builtin;
    struct extcol **ext;                 /* members/view.h: attached columns (stable addresses) */
    size_t n_ext;
    struct segcat *segs;                 /* segments/segments.h, loaded on need */
    void (*segs_free)(patron_db *db);    /* set by the segments module */
    uint8_t default_profiling, default_personalization; /* 0 = program default (granted) */
    /* the loyalty ledger's in-memory state (src/loyalty/), loaded on first use */
    void *loyalty;
    void (*loyalty_free)(void *loyalty);
    /* called at the end of every member view build (set by the loyalty module: the
     * ledger's points and redemptions streams replace the imported events) */
    int (*view_hook)(patron_db *db, patron_error *err);
};

/* Sources a rule can read; an import says which it changed. */
enum {
    DB_SRC_PROFILE = 1u << 0,  /* profile columns, consents, attributes, enrollment */
    DB_SRC_ORDERS = 1u << 1,   /* orders, items, returns and the behavioural fields */
    DB_SRC_EVENTS = 1u << 2,   /* bit (DB_SRC_EVENTS << k) for event stream k (ST_* - 3) */
    DB_SRC_MODELS = 1u << 20,  /* model fields (a models refresh) */
    DB_SRC_LOYALTY = 1u << 21, /* tier, points_balance, points_earned_365d (ledger writes) */
};
/* Marks member m (and the sources) as changed by the import being applied. */
void db_touch(patron_db *db, uint32_t m, uint32_t sources);


typedef struct db_features {
    double *recency_days; /* NAN when no order */
    int64_t *frequency;
    int64_t *monetary;
} db_features;

int db_member_add(patron_db *db, const char *id, size_t n, int64_t enrolled_at,
                  uint64_t profile_hash, uint32_t *idx);
int db_order_add(patron_db *db, const store_order *o);
/* The same with the key's hmap_hash already known (id_hash of the member id, of the
 * order id), for bulk loops that prefetch the id maps' slots ahead. */
int db_member_add_hashed(patron_db *db, const char *id, size_t n, uint64_t id_hash,
                         int64_t enrolled_at, uint64_t profile_hash, uint32_t *idx);
int db_order_add_hashed(patron_db *db, const store_order *o, uint64_t id_hash);
/* Makes room for `more` orders (columns and id index) so a batch applies without regrowth. */
int db_orders_reserve(patron_db *db, size_t more);
int db_csr_build(patron_db *db);
/* Drops the member model and the member view and loads them again from the store: after
 * an import that applied its batch to memory ahead of its commit (to show promotion
 * rules the batch) was rolled back.  Touched members and attached columns beyond the
 * reloaded members are dropped.  A status when the reload fails (reopen the database). */
int db_model_reload(patron_db *db, patron_error *err);
/* Opens the store and loads the dictionaries only: the members and orders come with
 * db_model_load_rest(), which patron_import() calls first (an orders import calls it
 * on a thread of its own, beside the parse of the file, which needs no member).  Used
 * by `patron import`; until then the model is empty and model_pending is set. */
int db_open_deferred(const char *path, patron_db **out, patron_error *err);
/* Loads what db_open_deferred left (nothing when nothing is pending).  On failure the
 * model stays empty and pending. */
int db_model_load_rest(patron_db *db, patron_error *err);
/* Builds db->order_ids from the store when it is not built yet (cold load skips it:
 * only importers need it). */
int db_order_ids_ensure(patron_db *db, patron_error *err);
/* One pass over all members at now; arrays are caller-allocated with n_members slots. */
void db_features_compute(patron_db *db, int64_t now, db_features *f);

#endif
