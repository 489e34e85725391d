/*
 * program.h -- the loyalty program's configuration (SPEC §5): a JSON file the user edits,
 * validated here, stored versioned in the database by the ledger (ledger_program_apply).
 *
 * Every rate and multiplier is an exact decimal with at most four places, held as an
 * int64 scaled by PROGRAM_SCALE (1.25 -> 12500), so earning arithmetic stays exact.
 * Parse errors name FILE:LINE:COLUMN; semantic errors name the key path
 * (`tiers.levels[1].multiplier`) and, when that key occurs once in the file, its line.
 * docs/ledger.md is the reference for every key.  A parsed program is immutable.
 */
#ifndef PATRON_LOYALTY_PROGRAM_H
#define PATRON_LOYALTY_PROGRAM_H

#include "patron/patron.h"

#include <stddef.h>
#include <stdint.h>

#define PROGRAM_SCALE 10000
/* Bounds that keep every intermediate of the earning formula inside 127 bits. */
#define PROGRAM_MAX_RATE ((int64_t)1000000 * PROGRAM_SCALE)
#define PROGRAM_MAX_MULT ((int64_t)1000 * PROGRAM_SCALE)
#define PROGRAM_MAX_RATES 32
#define PROGRAM_MAX_POINTS ((int64_t)1000000000000000) /* 1e15 per bonus, reward, threshold */

enum { PROGRAM_BASIS_POINTS = 0, PROGRAM_BASIS_SPEND = 1 };
enum { PROGRAM_EXPIRE_NEVER = 0, PROGRAM_EXPIRE_DAYS, PROGRAM_EXPIRE_END_OF_MONTH,
       PROGRAM_EXPIRE_END_OF_YEAR };
enum { PROGRAM_BONUS_SURVEY, PROGRAM_BONUS_REFERRAL, PROGRAM_BONUS_BIRTHDAY,
       PROGRAM_BONUS_ENROLLMENT, PROGRAM_BONUS__COUNT };

typedef struct program_mult {
    char *key;    /* category or SKU, byte for byte */
    size_t keyn;  /* strlen(key) */
    int64_t mult; /* scaled by PROGRAM_SCALE */
} program_mult;

typedef struct program_tier {
    char *name;
    int64_t threshold; /* points earned, or money (PATRON_MONEY_SCALE) spent, in the window */
    int64_t mult;      /* scaled */
} program_tier;

typedef struct program_promo {
    char *id;
    int64_t mult;     /* scaled; PROGRAM_SCALE when the promotion only adds a bonus */
    int64_t bonus;    /* points added to a matching order */
    int64_t from, to; /* validity window [from, to); INT64_MIN / INT64_MAX when open */
    int64_t min_amount; /* order amount (money units) at least this; 0 = any */
    char **members;   /* member ids; none = every member */
    size_t n_members;
    char **categories; /* with categories the multiplier applies to matching items only */
    size_t n_categories;
    int *tiers; /* tier indexes the member must hold just before the order; none = any */
    size_t n_tiers;
    char *rule; /* a rule (SPEC §3) the member must satisfy just before the order; NULL = none.
                 * Syntax is checked here; names and types against the member view by
                 * promo_rules_check (src/loyalty/promo.h). */
} program_promo;

typedef struct program_reward {
    char *id;
    char *name;
    int64_t points;
    int64_t stock; /* -1 = unlimited */
} program_reward;

typedef struct program {
    char *currency;  /* ISO 4217 code, default "USD" */
    program_mult *rates; /* exchange_rates: CODE -> base units per unit of CODE (scaled) */
    size_t n_rates;
    int64_t rate;    /* points per currency unit, scaled */
    program_mult *categories, *skus;
    size_t n_categories, n_skus;
    int basis;       /* PROGRAM_BASIS_* */
    int64_t window;  /* tier qualification window, seconds */
    program_tier *tiers; /* ascending thresholds; tiers[0].threshold == 0 */
    size_t n_tiers;
    int expire_mode; /* PROGRAM_EXPIRE_* */
    int64_t expire_n; /* days, months or years */
    int64_t bonus[PROGRAM_BONUS__COUNT];
    program_promo *promos;
    size_t n_promos;
    size_t n_rule_promos; /* promotions with a rule */
    program_reward *rewards;
    size_t n_rewards;
    char *canonical; /* the configuration as canonical JSON (sorted keys, compact) */
    uint64_t hash;   /* XXH3 of canonical */
} program;

/* Parses and validates a configuration.  name is used in messages (a file path).  *out
 * is owned by the caller (program_free).  PATRON_EINPUT with a message on bad input. */
int program_parse(const char *text, size_t n, const char *name, program **out, patron_error *err);
/* Reads FILE and parses it; PATRON_ENOTFOUND when it cannot be opened. */
int program_load_file(const char *path, program **out, patron_error *err);
void program_free(program *p);

/* When a lot earned at ts expires (the first second it no longer counts); INT64_MAX for
 * never.  End of month/year is computed in UTC, the only time zone supported. */
int64_t program_expiry(const program *p, int64_t ts);
/* Index of the reward / tier with that id, or -1. */
int program_reward_find(const program *p, const char *id, size_t n);
int program_tier_find(const program *p, const char *name, size_t n);
/* Item multiplier (scaled): the SKU's if configured, else the category's, else 1. */
int64_t program_item_mult(const program *p, const char *sku, size_t skun, const char *cat,
                          size_t catn);

#endif
