/*
 * patron.h -- the public interface of libpatron, the loyalty-program engine.
 *
 * A patron_db is one program: the durable store (an SQLite file by default) and the
 * in-memory columnar member model loaded from it.  Every call that can fail returns a
 * patron_status (PATRON_OK = 0, failures negative) and, when the caller passes a
 * patron_error, fills it with a message that says what failed and where.  The library
 * never prints and never exits; the CLI (src/cli/) is a thin layer over these calls.
 *
 * Units: timestamps are int64 Unix seconds, UTC.  Money is int64 in ten-thousandths of
 * the program's base currency (PATRON_MONEY_SCALE), so qty x price is exact for prices
 * with up to four decimals; it is printed rounded to cents.
 */
#ifndef PATRON_H
#define PATRON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes.  One list; patron_strerror() names each. */
#define PATRON_STATUS_LIST(X)                                                                      \
    X(PATRON_OK, 0, "ok")                                                                          \
    X(PATRON_EUSAGE, -1, "usage error")                                                            \
    X(PATRON_EINPUT, -2, "bad input")                                                              \
    X(PATRON_ENOTFOUND, -3, "not found")                                                           \
    X(PATRON_ESTORE, -4, "storage error")                                                          \
    X(PATRON_ENOMEM, -5, "out of memory")                                                          \
    X(PATRON_EIO, -6, "i/o error")                                                                 \
    X(PATRON_EINTERNAL, -7, "internal error")

typedef enum patron_status {
#define PATRON_X_ENUM(name, value, text) name = value,
    PATRON_STATUS_LIST(PATRON_X_ENUM)
#undef PATRON_X_ENUM
} patron_status;

/* Returns a static, lower-case description of a status code. */
const char *patron_strerror(int status);

/* An error: the status and a message (what failed and where).  Caller's memory; a NULL
 * patron_error * is accepted by every call and means "do not tell me". */
typedef struct patron_error {
    int code;
    char message[1024];
} patron_error;

#define PATRON_MONEY_SCALE 10000
#define PATRON_NULL_TS INT64_MIN

typedef struct patron_db patron_db;

/* Opens (creating if needed, migrating to the current schema) the store at path and
 * loads the member model.  *out is owned by the caller; release with patron_close(). */
int patron_open(const char *path, patron_db **out, patron_error *err);
/* Closes the store and frees everything; NULL is fine. */
void patron_close(patron_db *db);

/* ---- importing ------------------------------------------------------------------- */

typedef enum patron_import_kind {
    PATRON_IMPORT_MEMBERS,
    PATRON_IMPORT_ORDERS,
    PATRON_IMPORT_EVENTS
} patron_import_kind;

/* Progress callback: bytes of input consumed so far and the total (0 if unknown). */
typedef void (*patron_progress_fn)(void *ctx, uint64_t done, uint64_t total);

typedef struct patron_import_opts {
    const char *map;          /* "field=COLUMN,..." or NULL */
    char delimiter;           /* 0 = ',' (or whitespace-sniffed for .txt) */
    long max_errors;          /* bad rows tolerated; 0 = any bad row stores nothing */
    const char *rejects_path; /* NULL = FILE.rejects */
    int64_t now;              /* import time (default stamps); PATRON_NULL_TS = clock */
    patron_progress_fn progress;
    void *progress_ctx;
    /* Report callback for each bad row message ("FILE:LINE: column 'X': reason"). */
    void (*report)(void *ctx, const char *message);
    void *report_ctx;
    /* Orders imports: 0 uses a second thread where the file is large enough to pay;
     * 1 runs on one thread (the reference path); 2 always uses two.  The result is the
     * same either way. */
    int threads;
} patron_import_opts;

typedef struct patron_import_result {
    uint64_t rows;        /* data rows read */
    uint64_t bad_rows;    /* rows rejected (written to the rejects file when allowed) */
    uint64_t duplicates;  /* orders/events/rows already stored with the same content */
    uint64_t inserted;    /* orders, events or members newly stored */
    uint64_t updated;     /* members updated */
    uint64_t members_created;
    uint64_t items;       /* line items stored */
    int committed;        /* 1 when the import's transaction committed */
    char rejects_path[512];
} patron_import_result;

void patron_import_opts_init(patron_import_opts *o);

/* Imports FILE into the store in one transaction, then applies it to the in-memory
 * model.  With bad rows beyond opts->max_errors nothing is stored and PATRON_EINPUT is
 * returned; each bad row has been passed to opts->report. */
int patron_import(patron_db *db, patron_import_kind kind, const char *path,
                  const patron_import_opts *opts, patron_import_result *res, patron_error *err);

/* Adds events given as JSONL text in memory (one event object per line, SPEC 1.2), the
 * same way `import events` reads a file: one transaction, duplicates skipped, bad lines
 * reported as NAME:LINE.  For streaming: call it per batch, then patron_segments_sync(). */
int patron_events_add(patron_db *db, const char *name, const char *jsonl, size_t n,
                      const patron_import_opts *opts, patron_import_result *res,
                      patron_error *err);

/* Brings every stored segment to now: members whose time-dependent answer changed by now
 * are re-evaluated at their instant, members the last imports touched at now; the
 * changes are stored.  See docs/rules.md. */
int patron_segments_sync(patron_db *db, int64_t now, patron_error *err);

/* ---- reading ------------------------------------------------------------------- */

typedef struct patron_stats {
    uint64_t members;
    uint64_t orders;
    uint64_t items;
    uint64_t returns;
    uint64_t guest_orders;
    uint64_t events; /* non-order events stored */
    int64_t first_ts, last_ts;  /* over orders and returns; PATRON_NULL_TS if none */
    int64_t revenue;            /* net: orders - returns, members and guests, money units */
    int64_t member_revenue;     /* net revenue attributed to members */
} patron_stats;

int patron_stats_get(patron_db *db, int64_t now, patron_stats *out, patron_error *err);

/* Writes the member's profile, behavioural fields and consents as one JSON object into a
 * malloc'd string (*json, caller frees).  PATRON_ENOTFOUND for an unknown id. */
int patron_member_json(patron_db *db, const char *member_id, int64_t now, char **json,
                       patron_error *err);

/* A hash of every column of the in-memory model (order-independent of load path), so
 * that state built live can be compared with state rebuilt from the store. */
uint64_t patron_model_hash(patron_db *db);

#ifdef __cplusplus
}
#endif
#endif
