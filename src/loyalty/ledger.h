/*
 * ledger.h -- the loyalty points ledger (SPEC §5, docs/ledger.md): earning, redemptions
 * and their cancellation, adjustments, clawbacks on returns and voids, expiry, tiers.
 *
 * The store is the system of record (src/store/store_ledger.h): append-only journal
 * lines, each write under a unique idempotency key.  A ledger also keeps the whole state
 * in memory (lots, postings, tier history per member) and writes only after checking,
 * under the store's write lock, that its copy is current (a token in the store changes
 * with every ledger commit; a stale copy is reloaded first).  So two processes may write
 * at once: the second sees the first's effects before it decides anything.
 *
 * Every write:
 *  - runs in its own transaction with synchronous=FULL (acknowledged = durable), or,
 *    when the caller already holds a transaction (an import, ledger_group_begin), in a
 *    savepoint of it: either it applies whole or not at all;
 *  - takes an idempotency key: the same key again returns the first result
 *    (res->replayed = 1) and writes nothing; the same key with a different payload is
 *    refused with PATRON_EINPUT naming the field that differs;
 *  - is checked before anything changes: bad input leaves store and memory untouched.
 * Amounts are checked int64 (overflow is PATRON_EINPUT, never a wrap).
 *
 * Status codes: PATRON_EINPUT bad input or a refused write (overdraw, out of stock, no
 * program), PATRON_ENOTFOUND unknown member / reward / redemption, PATRON_ESTORE storage.
 */
#ifndef PATRON_LOYALTY_LEDGER_H
#define PATRON_LOYALTY_LEDGER_H

#include "loyalty/program.h"
#include "patron/patron.h"

#include <stddef.h>
#include <stdint.h>

typedef struct ledger ledger;

/* Kinds of writes (stored; never renumber). */
enum { LEDGER_EARN = 1, LEDGER_RETURN = 2, LEDGER_VOID = 3, LEDGER_REDEEM = 4,
       LEDGER_CANCEL = 5, LEDGER_ADJUST = 6, LEDGER_EXPIRE = 7, LEDGER_REVIEW = 8,
       LEDGER_BONUS = 9, LEDGER_REDEEM_EVENT = 10 };
/* Accounts of the journal. */
enum { LEDGER_ACC_MEMBER = 0, LEDGER_ACC_ISSUED = 1, LEDGER_ACC_REDEEMED = 2,
       LEDGER_ACC_EXPIRED = 3, LEDGER_ACC_ADJUSTED = 4 };

/* The ledger of a database, loaded on first use and owned by the patron_db (freed by
 * patron_close).  Never fails for a missing program: writes then report it. */
int ledger_get(patron_db *db, ledger **out, patron_error *err);
/* The program in force (NULL when none was applied) and its version. */
const program *ledger_program(ledger *l, int64_t *version);
/* The latest program stored in db, parsed, without loading the ledger (which needs the
 * members): 1 with *out (program_free), 0 when none was ever applied, or a status. */
int ledger_stored_program(patron_db *db, program **out, patron_error *err);
/* Stores p as the new program version (takes ownership of p in every case).  Applying
 * the configuration in force again changes nothing (*changed = 0). */
int ledger_program_apply(ledger *l, program *p, int64_t now, int64_t *version, int *changed,
                         patron_error *err);
/* 0: each single write commits with synchronous=NORMAL (tests); 1 (default): FULL. */
/* For tests: journal chunks are written in format fmt (store_ledger_chunk_new; 0 = the
 * current one), so that reading older databases stays tested. */
void ledger_set_chunk_format(ledger *l, int fmt);
void ledger_set_durable(ledger *l, int durable);
/* Runs many writes in one transaction (each still atomic on its own, in a savepoint). */
int ledger_group_begin(ledger *l, patron_error *err);
int ledger_group_end(ledger *l, int commit, patron_error *err);

typedef struct ledger_result {
    int replayed;       /* 1: the key was stored already; this is the first result */
    int kind;           /* LEDGER_* */
    int64_t seq;        /* the write's sequence number */
    int64_t member;     /* member index, -1 for jobs */
    int64_t ts;
    int64_t points;     /* points moved: earned, redeemed, clawed back, expired, ... */
    int64_t shortfall;  /* clawback points that had been spent (written off) */
    int64_t money;      /* order / return amount (money units) */
    int64_t balance;    /* the member's usable balance after the write, at ts */
    char ref[160];      /* order id, reward id, cancelled key, reason */
} ledger_result;

/* One line item / order handed to ledger_earn (strings borrowed). */
typedef struct ledger_item {
    const char *sku, *category;
    size_t skun, categoryn;
    int64_t amount; /* qty x price, money units */
} ledger_item;

typedef struct ledger_order {
    const char *id;
    size_t idn;
    uint32_t member;
    int64_t ts;
    int64_t amount;             /* money units; when items are given, their sum */
    const ledger_item *items;   /* NULL for an order-level receipt */
    size_t n_items;
} ledger_order;

/* Points for an order (key "order:ID").  Exact: see docs/ledger.md, "Earning". */
int ledger_earn(ledger *l, const ledger_order *o, ledger_result *res, patron_error *err);
/* A return of amount (money units, > 0) claws back points (key "return:ID"); original
 * (may be NULL) links it to its order. */
int ledger_return(ledger *l, const char *id, uint32_t member, int64_t ts, int64_t amount,
                  const char *original, ledger_result *res, patron_error *err);
/* Reverses everything an order or a return did in the ledger (key "void:ID"). */
int ledger_void(ledger *l, const char *id, int64_t ts, ledger_result *res, patron_error *err);
/* Redeems a catalog reward at now (key is the caller's idempotency key). */
int ledger_redeem(ledger *l, uint32_t member, const char *reward, const char *key, int64_t now,
                  ledger_result *res, patron_error *err);
/* Cancels the redemption made with key: points back into their lots (original expiry),
 * stock restored.  PATRON_ENOTFOUND for an unknown key. */
int ledger_cancel(ledger *l, const char *key, int64_t now, ledger_result *res, patron_error *err);
/* Adds (points > 0) or removes (< 0, refused when it would overdraw) points. */
int ledger_adjust(ledger *l, uint32_t member, int64_t points, const char *reason,
                  const char *key, int64_t now, ledger_result *res, patron_error *err);
/* Expires every lot whose expiry is <= now (key "expire@NOW": running it again with the
 * same now returns the first result; a later now expires only what is new). */
int ledger_expire(ledger *l, int64_t now, ledger_result *res, patron_error *err);
/* Tier review at now: each member gets the tier their qualification earns (up or down);
 * res->points is the number of members whose tier changed. */
int ledger_tiers_review(ledger *l, int64_t now, ledger_result *res, patron_error *err);

/* The birthday and enrollment bonuses due at now (docs/ledger.md), in one write
 * transaction: each member (index < n) gets the enrollment bonus once (key
 * "enrollment:ID", dated enrolled_at[m], when that is <= now), and the birthday bonus for
 * their latest birthday at or before now if it falls on or after the day they enrolled
 * (key "birthday:ID:YEAR", dated that day at 00:00 UTC); birth_days[m] is days since
 * 1970-01-01, INT32_MIN for none (no birthday bonus); birth_days may be NULL.  Running it
 * again posts nothing more.  counts[0] / counts[1]: birthday / enrollment bonuses posted. */
int ledger_bonuses(ledger *l, int64_t now, const int64_t *enrolled_at, const int32_t *birth_days,
                   size_t n, int64_t counts[2], patron_error *err);

/* Imported events (import.c, inside the import's transaction; see loyalty.h). */
int ledger_event_points(ledger *l, const char *event_id, uint32_t member, int64_t ts,
                        int64_t points, const char *reason, ledger_result *res, patron_error *err);
int ledger_event_redemption(ledger *l, const char *event_id, uint32_t member, int64_t ts,
                            const char *reward, int64_t points, ledger_result *res,
                            patron_error *err);
/* Bonus for a survey / referral event (PROGRAM_BONUS_*), key "bonus:EVENT_ID". */
int ledger_event_bonus(ledger *l, const char *event_id, uint32_t member, int64_t ts, int which,
                       ledger_result *res, patron_error *err);

/* The import batch (loyalty.c): one savepoint around many writes inside the importer's
 * transaction.  new_ids / new_lens name the members the importer creates in it
 * (indexes db->n_members + k).  ledger_batch_end(l, rc) releases the savepoint when rc
 * is PATRON_OK, else rolls it back; it returns the final status. */
int ledger_batch_begin(ledger *l, const char *const *new_ids, const uint32_t *new_lens,
                       size_t n_new, patron_error *err);
int ledger_batch_end(ledger *l, int rc, patron_error *err);
/* The same batch begun detached from the store, so that its arithmetic can run on another
 * thread while the caller's thread keeps writing its own rows in the transaction: no
 * savepoint, no store access at all until ledger_batch_attach (from the thread that
 * owns the connection, after the other has finished).  The caller must hold the store's
 * write transaction and have called ledger_get inside it (the memory copy is then
 * current and stays so), and the program must have no promotion rules (they read the
 * member view).  While detached, a write that needs the store (its key is stored
 * already: the stored request is read to compare) changes nothing and returns
 * LEDGER_DEFER; make it again after attaching.  Only earns and returns may be made
 * detached.  ledger_batch_end works before attaching too (it then only drops what the
 * batch did in memory, for an rc that is not PATRON_OK). */
#define LEDGER_DEFER 1
int ledger_batch_begin_detached(ledger *l, const char *const *new_ids, const uint32_t *new_lens,
                                size_t n_new, patron_error *err);
/* Opens the batch's savepoint, after checking that the store's ledger did not change. */
int ledger_batch_attach(ledger *l, patron_error *err);
/* 1 between ledger_batch_begin_detached and ledger_batch_attach (or _end). */
int ledger_detached(const ledger *l);
/* Makes the detached batch just begun a windowed one (1; 0: not, and nothing changed;
 * not unless ledger_set_window allowed it):
 * every LEDGER_CHUNK_MAX writes are encoded into a journal chunk and their write and
 * posting records dropped, and so are the lots and qualification rows of the members
 * finished by then (their spent lots kept as rows); the batch's keys are not indexed.
 * So its memory is about one window's, and member state (at M 1.1 GB less).  The caller
 * vouches that the batch holds CSV orders and returns only (unique keys; returns not
 * linked to an order), each member's in time order, none earlier than a journal line
 * the member already has (ledger_member_last_ts): nothing then reads a member's
 * postings during the batch.  Call ledger_batch_window_step after each work item.  The
 * in-memory ledger is dropped at ledger_batch_end (the next use reloads it). */
int ledger_batch_window(ledger *l);
int ledger_batch_window_step(ledger *l, patron_error *err);
/* The time of the member's latest journal line (INT64_MIN: none). */
int64_t ledger_member_last_ts(const ledger *l, uint32_t member);
/* 1 allows windowed batches (the default), 0 refuses them; the windows encoded in this
 * process so far.  ledger_window_default is what a new ledger object starts with (tests
 * compare imports with and without windows through it). */
void ledger_set_window(ledger *l, int on);
extern int ledger_window_default;
uint64_t ledger_windows(void);
/* An importer about to reserve room for a batch whose earliest order is at first_ts
 * (ledger_batch_reserve, before the batch begins): where windows are allowed and no
 * journal line is later than first_ts, the batch will surely be windowed (when big
 * enough), and room for a window's writes is enough. */
void ledger_batch_plan(ledger *l, int64_t first_ts);
/* A windowed batch whose chunks another thread stores as they are built (1; 0: not
 * windowed, nothing changed): call it on the thread making the batch, right after
 * ledger_batch_window, and ledger_batch_share_close on it once it makes no more writes
 * before attaching.  Meanwhile the thread that owns the store calls
 * ledger_batch_store_shared, which stores each chunk as it comes and returns once the
 * batch is closed (wait 1) or once it has stored those built so far (wait 0): a status;
 * on failure the batch must fail.  The chunks are stored in
 * the order and with the cut points of the flush; the rest are stored by the flush. */
int ledger_batch_share(ledger *l);
void ledger_batch_share_close(ledger *l);
int ledger_batch_store_shared(ledger *l, int wait, patron_error *err);
/* Makes room for n more writes in the batch (optional: saves the copies of growing). */
int ledger_batch_reserve(ledger *l, size_t n, patron_error *err);
/* After ledger_batch_reserve(l, n): the memory the batch's next n writes will write (up
 * to max regions, (*ptr)[k] of bytes[k], in the order they fill: the key index first,
 * written anywhere), for another thread to fault in ahead (mem_prefault).  The count. */
size_t ledger_batch_regions(const ledger *l, size_t n, char **ptr, size_t *bytes, size_t max);
int ledger_batch_earn(ledger *l, const ledger_order *o, patron_error *err);
/* The same with what the caller knows of each item already (known[i] for o->items[i]):
 * an importer sees the same SKUs and categories again and again and works these out
 * once per dictionary code.  The results are those of ledger_batch_earn. */
typedef struct ledger_item_known {
    int64_t mult;             /* program_item_mult(program in force, sku, category) */
    uint64_t skuh, categoryh; /* XXH3_64bits of sku and of category */
} ledger_item_known;
int ledger_batch_earn_known(ledger *l, const ledger_order *o, const ledger_item_known *known,
                            patron_error *err);
/* A hint: the batch will soon earn order id for member (its key slot and the member's
 * state are fetched into cache).  Changes nothing. */
void ledger_batch_prefetch(const ledger *l, uint32_t member, const char *id, size_t idn);
int ledger_batch_return(ledger *l, const char *id, uint32_t member, int64_t ts, int64_t amount,
                        const char *original, patron_error *err);
int ledger_batch_void(ledger *l, const char *id, int64_t ts, patron_error *err);
int ledger_batch_points(ledger *l, const char *event_id, uint32_t member, int64_t ts,
                        int64_t points, const char *reason, patron_error *err);
int ledger_batch_redemption(ledger *l, const char *event_id, uint32_t member, int64_t ts,
                            const char *reward, int64_t points, patron_error *err);
int ledger_batch_bonus(ledger *l, const char *event_id, uint32_t member, int64_t ts, int which,
                       patron_error *err);

/* Reads (no store access).  Usable balance at now: lots earned at or before now and not
 * expired at now, whatever the expiry job has done. */
int64_t ledger_balance(ledger *l, uint32_t member, int64_t now);
/* Points counted for tier qualification in (now - window, now] (earned minus clawed). */
int64_t ledger_qualifying(ledger *l, uint32_t member, int64_t now, int64_t window, int spend);
/* The member's tier at now (index into the program's tiers; 0 when none). */
int ledger_tier(ledger *l, uint32_t member, int64_t now);
/* Reward stock used (catalog redemptions not cancelled). */
int64_t ledger_stock_used(ledger *l, const char *reward);

/* One entry of a member's history: a write that moved their points. */
typedef struct ledger_history_row {
    int64_t seq, ts, points; /* signed for the member */
    int kind;
    const char *ref; /* borrowed from the ledger; valid until its next write */
    size_t refn;
    int64_t expires; /* for points credited: the expiry of the lot (INT64_MAX never) */
    int cancelled;   /* a redemption that was cancelled since */
} ledger_history_row;
/* The member's history at now, oldest first, into *rows (caller frees with mem_free). */
int ledger_history(ledger *l, uint32_t member, int64_t now, ledger_history_row **rows,
                   size_t *n, patron_error *err);

/* The member's `points` and `redemptions` streams as the rule engine reads them, oldest
 * first (ties in write order), every row whatever its time (a reader filters by now):
 * points: one row per write and instant with the member's signed points (kind says
 * why; ref is the reason of adjustments and bonuses), plus for each lot with points
 * left a row at its expiry taking them away (the expiry run posts the same amount at the
 * same instant); redemptions: catalog and imported redemptions not cancelled, points as
 * spent (> 0), ref = reward id.  Caller frees both with mem_free. */
typedef struct ledger_srow {
    int64_t seq, ts, points;
    int kind;
    const char *ref; /* borrowed until the next write */
    size_t refn;
} ledger_srow;
int ledger_stream_rows(ledger *l, uint32_t member, ledger_srow **pts, size_t *np, ledger_srow **red,
                       size_t *nr, patron_error *err);
/* The first instant after now at which the member's balance, tier or points earned in a
 * rolling window of `window` seconds may change without a new write (a lot expires, a
 * qualifying row leaves the window, a row dated after now arrives); INT64_MAX never. */
int64_t ledger_next_change(ledger *l, uint32_t member, int64_t now, int64_t window);
/* Members whose rows changed since ledger_changed_clear (written by this process, in
 * memory; the caller takes them after its commit).  *all = 1 when the list is
 * incomplete (out of memory).  A load starts a new epoch: anything derived from an older
 * one is stale as a whole. */
size_t ledger_changed(ledger *l, const uint32_t **members, int *all);
void ledger_changed_clear(ledger *l);
uint64_t ledger_epoch(const ledger *l);
int ledger_loaded(const ledger *l);

typedef struct ledger_verify_report {
    int ok;
    int64_t writes, postings, lots, members;
    int64_t debits, credits; /* Σ over the journal */
    char problem[512];       /* the first problem found */
} ledger_verify_report;
/* Checks the invariants (Σ debits = Σ credits per the journal, every member account =
 * Σ of its remaining lots >= 0, posting hashes), rebuilds the projections from the
 * journal in a transaction that is rolled back and compares them byte for byte with
 * the live ones, and compares the in-memory state too.  PATRON_OK with rep->ok = 0 on a
 * mismatch; an error status only when the check itself could not run. */
int ledger_verify(ledger *l, ledger_verify_report *rep, patron_error *err);
/* In-memory invariants, cheap enough to run after every write: Σ debits = Σ credits
 * (running totals of the journal), each member account = Σ of its lots' remaining
 * points >= 0, Σ member accounts = Σ balances.  1 ok, 0 broken (msg says what). */
int ledger_check(ledger *l, char *msg, size_t cap);
/* PRAGMA integrity_check through the store: 1 ok, 0 problem (in msg), < 0 error. */
int ledger_integrity(ledger *l, char *msg, size_t cap, patron_error *err);
/* A hash of the whole in-memory state (live == reloaded). */
uint64_t ledger_state_hash(ledger *l);
/* Drops the in-memory copy; the next call reloads it from the store. */
void ledger_invalidate(ledger *l);

#endif
