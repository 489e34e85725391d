/*
 * store_cells.h -- profile cells and event cells: what of a member's profile JSON, or
 * of an event's JSON, the member view reads, in a compact binary record, so that
 * building the view decodes bytes instead of scanning JSON text.
 *
 * The store computes the record when a profile is written (store_member_put) and keeps
 * it beside the JSON (which stays the full profile that `member show` prints and the
 * members importer merges into).  The record holds exactly the view's inputs, in the
 * order the view applies them:
 *
 *   u8 flags            1 = the profile is a JSON object (else nothing follows and the
 *                       view applies nothing, as for text that is not an object)
 *   13 strings          varint (length + 1) then the bytes; 0 = not a string.  The keys
 *                       of store_profile_str_names, first occurrence of each key.
 *   i32 birth_days      days since 1970-01-01 of birth_date, INT32_MIN = none
 *   u32 n, n tags       the string elements of interests (varint length, bytes)
 *   u32 n, n consents   u8 key (store_consent_names index), u8 granted, i64 updated_at,
 *                       i64 expires_at (PATRON_NULL_TS = none), in JSON order; entries
 *                       whose key is not a consent key or whose status is not a string
 *                       are left out (they change nothing)
 *   u32 n, n attrs      varint name length, name, u8 kind (STORE_PA_*), then the value:
 *                       i64 (INT), f64 (REAL), varint length + bytes (STR), none else
 *
 * Strings are decoded (no JSON escapes).  All integers are little-endian.
 */
#ifndef PATRON_STORE_PROFILE_H
#define PATRON_STORE_PROFILE_H

#include <stddef.h>
#include <stdint.h>

#define STORE_PROFILE_NSTR 13
#define STORE_CONSENT_N 10
extern const char *const store_profile_str_names[STORE_PROFILE_NSTR];
extern const char *const store_consent_names[STORE_CONSENT_N];

enum { STORE_PA_NONE, STORE_PA_INT, STORE_PA_REAL, STORE_PA_TRUE, STORE_PA_FALSE, STORE_PA_STR };

/* A growable byte buffer (mem_free(p) releases it). */
typedef struct store_buf {
    unsigned char *p;
    size_t n, cap;
} store_buf;

/* Appends the cells of profile JSON text[0..n) to b.  0, or -1 when out of memory. */
int store_profile_encode(const char *text, size_t n, store_buf *b);
/* The same for canonical JSON (jcanon.h: what the importers store), read without
 * validating it again. */
int store_profile_encode_canon(const char *text, size_t n, store_buf *b);

/* A string of a record: p == NULL when absent. */
typedef struct store_pstr {
    const char *p;
    size_t n;
} store_pstr;

/* A record, checked and split into its parts; the lists are read with the iterators
 * below (each starts at the given position and advances it). */
typedef struct store_pcells {
    int is_object;
    store_pstr str[STORE_PROFILE_NSTR];
    int32_t birth_days;
    uint32_t n_tags, n_consent, n_attr;
    const unsigned char *tags, *consent, *attr;
} store_pcells;

/* 0, or -1 when rec[0..n) is not a well-formed record (damaged). */
int store_pcells_decode(const unsigned char *rec, size_t n, store_pcells *c);
void store_pcells_tag(const unsigned char **pos, store_pstr *tag);
void store_pcells_consent(const unsigned char **pos, int *key, int *granted, int64_t *at,
                          int64_t *expires);
/* kind is STORE_PA_*; i for INT, d for REAL, s for STR. */
void store_pcells_attr(const unsigned char **pos, store_pstr *name, int *kind, int64_t *i,
                       double *d, store_pstr *s);

/*
 * Event cells: what the member view reads of an event's JSON, per event type (the
 * store's type codes, store_event_type_code), computed when the event is written:
 *
 *   u8 flags            1 = the body is a JSON object (else nothing follows)
 *   stream types        for each of store_event_keys(type): u8 kind (STORE_PA_*) and
 *                       the value as in a profile attribute (i64, f64 or string)
 *   survey              u32 n, then n answers as profile attributes (name, kind, value)
 *   consent             u8 key (store_consent_names index of `channel` when it is a
 *                       string, else of `purpose`; 0xff = none), u8 status (0 = not a
 *                       string, 1 = "granted", 2 = another string), i64 expires_at
 *   other types         nothing
 */
#define STORE_EVENT_KEYS 3
/* The keys whose values a stream event's cells hold (NULL-terminated, at most 3);
 * an empty list for types without stream values. */
const char *const *store_event_keys(int type);

/* Appends the cells of an event of type `type` with body JSON text[0..n) to b.  0, or
 * -1 when out of memory. */
int store_event_encode(int type, const char *text, size_t n, store_buf *b);
/* The same for a body known to be canonical JSON (jcanon.h: what the importers store),
 * read without validating it again. */
int store_event_encode_canon(int type, const char *text, size_t n, store_buf *b);

typedef struct store_pval {
    int kind; /* STORE_PA_* */
    int64_t i;
    double d;
    store_pstr s;
} store_pval;

typedef struct store_ecells {
    int is_object;
    store_pval val[STORE_EVENT_KEYS];
    int consent_key;    /* -1 = none */
    int consent_status; /* 0 not a string, 1 granted, 2 another string */
    int64_t expires;
    uint32_t n_attr;
    const unsigned char *attr; /* read with store_pcells_attr */
} store_ecells;

/* 0, or -1 when rec[0..n) is not well-formed cells of an event of that type. */
int store_ecells_decode(int type, const unsigned char *rec, size_t n, store_ecells *c);

#endif
