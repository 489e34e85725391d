/*
 * loyalty.h -- what the rest of the engine sees of the loyalty ledger:
 *
 *  1. loyalty_on_import(): importers hand over each batch they are about to commit;
 *     orders, returns, voids and `points`, `redemption`, `survey`, `referral` events
 *     become ledger postings in the importer's own transaction (nothing when no
 *     program is configured).  An error makes the importer roll back everything.
 *
 *  2. Fields and streams for the rule engine (SPEC §3, §5), per member at a time now:
 *       points_balance      usable points: lots earned at or before now and not
 *                           expired at now (whether or not the expiry job ran)
 *       points_earned_365d  points earned in (now - 365 d, now], clawbacks deducted
 *       tier                tier name at now ("" when the program has no tiers)
 *       points stream       (ts, points, reason): every movement of the member's
 *                           points, oldest first (signed)
 *       redemptions stream  (ts, reward_id, points): redemptions not cancelled
 *     Call loyalty_refresh() once before a pass (it reloads the ledger when another
 *     process or an import changed it); then the accessors read memory only.
 *     loyalty_fields_compute() fills the three fields for every member in one pass
 *     (columns, like db_features_compute) for batch rule evaluation.
 */
#ifndef PATRON_LOYALTY_LOYALTY_H
#define PATRON_LOYALTY_LOYALTY_H

#include "base/hmap.h"
#include "patron/patron.h"
#include "store/store.h"

#include <stddef.h>
#include <stdint.h>

/* An event of an events import (strings borrowed for the duration of the call). */
typedef struct loyalty_event {
    const char *type;      /* SPEC §1.2 type name */
    const char *id;        /* order_id for order/return/void, else event_id or content hash */
    const char *member_id; /* the member's id as given */
    int64_t member;        /* member index (members created by this import included) */
    int64_t ts;
    const char *body;      /* canonical JSON of the event */
} loyalty_event;

/* An order or return of a CSV import, as the ledger reads it (40 bytes: at M an import
 * hands over millions, in memory that is written fresh for the purpose). */
typedef struct loyalty_order {
    const char *id;     /* NULL: not stored (a bad row, a duplicate) */
    int64_t ts, amount; /* money units; negative for a return */
    int32_t member;     /* member index, -1 for a guest sale */
    uint32_t idn;
    uint8_t kind;       /* 0 order, 1 return */
} loyalty_order;

/* The dictionary codes of a kind of line item. */
typedef struct loyalty_item_kind {
    uint32_t sku, category, brand;
} loyalty_item_kind;

/* One import batch, as stored by the importer in its open transaction. */
typedef struct loyalty_import {
    /* Orders and returns of a CSV import, indexed like the importer's batch. */
    const loyalty_order *orders;
    size_t n_orders;
    /* Line items of the batch (positive rows): order index, kind (kinds[k]: dictionary
     * codes), qty, price */
    const uint32_t *item_order, *item_kind;
    const loyalty_item_kind *kinds;
    const int32_t *item_qty;
    const int64_t *item_price;
    size_t n_items;
    /* Strings new to the dictionaries in this batch (code -> string via their values),
     * indexed by DB_DICT_*; NULL entries allowed. */
    const hmap *new_dict[4];
    /* Members created by this batch: index db->n_members + k has id new_member_ids[k]. */
    const char *const *new_member_ids;
    const uint32_t *new_member_lens;
    size_t n_new_members;
    /* Events of an events import, in file order. */
    const loyalty_event *events;
    size_t n_events;
} loyalty_import;

/* Posts the batch to the ledger inside the caller's transaction.  Work is done in time
 * order (ties in file order).  PATRON_EINPUT names the event or order that cannot be
 * posted (e.g. an imported redemption that would overdraw). */
int loyalty_on_import(patron_db *db, const loyalty_import *in, patron_error *err);

/* The same in two steps, so that an importer can overlap the ledger's arithmetic with
 * its own writes.  _start (the thread that owns the store connection, inside the
 * import's write transaction, after the batch's members are resolved: `in` and every
 * array it points to stay unchanged until _finish) loads the ledger if needed and, with
 * threaded = 1, runs on a thread of its own all of the batch that needs nothing from
 * the store (for a CSV batch of a program without promotion rules: every order and
 * return except those whose keys are stored already).  Until _finish the caller may
 * write its own rows to the store but must not call anything of the ledger or of this
 * module.  _finish (same thread as _start) waits for that thread, makes the rest, and
 * writes the ledger's rows in a savepoint of the transaction.  The result, the store
 * and every message are those of loyalty_on_import, whatever the threads' timing.
 * Pass the caller's status as rc: when it is not PATRON_OK the batch is dropped and rc
 * returned.  *job is NULL when there is nothing to post (no program); _finish(NULL, rc)
 * returns rc. */
typedef struct loyalty_job loyalty_job;
/* Before loyalty_import_start, on the importer's thread, for a two-thread orders import
 * of n orders from first_ts on: reserves the ledger batch's room (where the ledger's
 * thread finds it) and faults it in on a thread of its own while the importer resolves
 * the batch's members: the second core is idle then, and faulting in fresh memory is
 * most of what the ledger's records cost (decision 0008).  Nothing when no program is
 * applied; *pf NULL when no thread runs.  _stop(pf) stops and joins it at once (it
 * never holds up the ledger's start); faulting in changes no byte. */
typedef struct loyalty_prefault loyalty_prefault;
int loyalty_prefault_start(patron_db *db, size_t n, int64_t first_ts, loyalty_prefault **pf,
                           patron_error *err);
void loyalty_prefault_stop(loyalty_prefault *pf);
int loyalty_import_start(patron_db *db, const loyalty_import *in, int threaded, loyalty_job **job,
                         patron_error *err);
/* On the importer's thread, between loyalty_import_start and _finish (the importer
 * calls it once it has written the batch's rows, with its status rc): faults in the
 * memory the ledger's thread has yet to write, skipping what it has passed (its page
 * faults were a third of its time at M, while the importer's thread ended up waiting
 * for it), and, for a windowed batch, stores its journal chunks as the ledger's thread
 * makes them, until it is done.  Returns rc, or the status of storing a chunk.  Nothing
 * when the job runs on this thread. */
int loyalty_import_help(loyalty_job *j, int rc, patron_error *err);
/* On the importer's thread while it writes the batch's rows (before _help): stores the
 * journal chunks and lot rows a windowed batch's thread has made so far, without
 * waiting, so that their memory goes back to the ledger's thread to be used again
 * (fresh memory's page faults were a quarter of that thread's time at M).  Returns rc,
 * or the status of storing them; nothing when rc is not PATRON_OK, or the job has no
 * shared windowed batch (yet). */
int loyalty_import_poll(loyalty_job *j, int rc, patron_error *err);
/* How many orders the importer writes between two polls (65,536; tests lower it). */
extern size_t loyalty_poll_orders;
/* The work items from which a CSV batch is windowed (ledger_batch_window; 16,384):
 * smaller ones keep every record in memory, so a long-lived process need not reload the
 * ledger after them.  Tests lower it to window small files. */
extern size_t loyalty_window_min;
int loyalty_import_finish(loyalty_job *job, int rc, patron_error *err);

/* *wants = 1 when the program in force has promotion rules: an importer must then give
 * the batch to the model and the member view *before* loyalty_on_import (and reload the
 * model with db_model_reload if the import is rolled back), so that each rule sees the
 * member just before each order, earlier orders and events of the same batch included.
 * The member view must be built before the import's transaction begins. */
int loyalty_wants_view(patron_db *db, int *wants, patron_error *err);

/* Money and currencies (SPEC 1.3): the base currency (the program's, else "USD") and
 * the program's exchange rates (base units per unit, scaled by PROGRAM_SCALE). */
typedef struct loyalty_fx {
    char base[8];
    size_t n;
    char code[32][8];
    int64_t rate[32];
} loyalty_fx;
int loyalty_fx_get(patron_db *db, loyalty_fx *fx, patron_error *err);
/* The same from the stored program alone, without loading the ledger (which needs the
 * members): what an orders import parses with before its model is loaded. */
int loyalty_fx_stored(patron_db *db, loyalty_fx *fx, patron_error *err);
/* The rate of a currency cell (n bytes; empty = base; case ignored): PROGRAM_SCALE for
 * the base currency, 0 when no rate is configured. */
int64_t loyalty_fx_rate(const loyalty_fx *fx, const char *s, size_t n);
/* money x rate, rounded half away from zero to the cent; -1 on overflow. */
int loyalty_fx_convert(int64_t money, int64_t rate, int64_t *out);

/* Loads the ledger, or reloads it when the store changed since.  Call before a pass. */
int loyalty_refresh(patron_db *db, patron_error *err);

int64_t loyalty_points_balance(patron_db *db, uint32_t member, int64_t now);
int64_t loyalty_points_earned_365d(patron_db *db, uint32_t member, int64_t now);
/* The tier name (static storage of the program; "" without tiers or program). */
const char *loyalty_tier(patron_db *db, uint32_t member, int64_t now);

typedef struct loyalty_points_row {
    int64_t ts, points;
    const char *reason; /* borrowed until the next ledger write */
    size_t reasonn;
} loyalty_points_row;

typedef struct loyalty_redemption_row {
    int64_t ts, points;
    const char *reward_id; /* borrowed until the next ledger write */
    size_t reward_idn;
} loyalty_redemption_row;

/* The member's streams at now, oldest first, into *rows (caller frees with mem_free). */
int loyalty_points_stream(patron_db *db, uint32_t member, int64_t now, loyalty_points_row **rows,
                          size_t *n, patron_error *err);
int loyalty_redemptions_stream(patron_db *db, uint32_t member, int64_t now,
                               loyalty_redemption_row **rows, size_t *n, patron_error *err);

/* Columns for every member (arrays of db->n_members, caller's memory; NULL skips one):
 * points_balance, points_earned_365d, tier index into the program's tiers (0 = base). */
typedef struct loyalty_fields {
    int64_t *points_balance;
    int64_t *points_earned_365d;
    int32_t *tier;
} loyalty_fields;
void loyalty_fields_compute(patron_db *db, int64_t now, loyalty_fields *f);

#define LOYALTY_EARNED_WINDOW (365 * (int64_t)86400) /* points_earned_365d */

/* Attaches points_balance, points_earned_365d and tier as member columns the rule engine
 * reads (members/view.h extcol), computed from the ledger at the reader's now (VS_FN):
 * null without a program.  `now` is unused (kept for callers). */
int loyalty_attach(patron_db *db, int64_t now, patron_error *err);

/* The member view's build hook (db->view_hook): with a program, the `points` and
 * `redemptions` streams are the ledger's rows (ledger_stream_rows) instead of the
 * imported events. */
int loyalty_view_hook(patron_db *db, patron_error *err);

/* After a commit that wrote to the ledger (its own operations, or an import's batch):
 * marks the members whose ledger rows changed as touched (DB_SRC_LOYALTY and the two
 * streams) for live segments, and replaces their rows in the member view. */
void loyalty_after_commit(patron_db *db);
/* After an import rolled back: what its batch posted in memory is dropped (reloaded). */
void loyalty_after_rollback(patron_db *db);

#endif
