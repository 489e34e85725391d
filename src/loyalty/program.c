/*
 * program.c -- parsing and validating the loyalty program configuration (program.h).
 *
 * The file is JSON read by jansson (an object at the top, no duplicate keys).  Unknown
 * keys are errors, so a typo never silently disables a rule.  Validation walks the tree
 * once, keeping the key path of the value it is looking at for messages; jansson does
 * not keep positions of values, so the line is given when the offending key's name
 * occurs exactly once in the file.  The canonical form (sorted keys, compact) is what
 * the ledger stores and hashes: applying the same configuration twice is one version.
 */
#include "loyalty/program.h"

#include "base/err.h"
#include "base/mem.h"
#include "base/time.h"
#include "rules/rule.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

typedef struct pctx {
    const char *name; /* file name for messages */
    const char *text;
    size_t n;
    patron_error *err;
    char path[512];
    size_t plen;
    const char *leaf; /* the last named key of path (for the line lookup) */
} pctx;

/* The line of `"key":` when it occurs exactly once in the text, else 0. */
static unsigned long key_line(const pctx *c, const char *key)
{
    size_t kn = strlen(key);
    unsigned long line = 1, found = 0, hits = 0;
    for (size_t i = 0; i + kn + 2 <= c->n; i++) {
        if (c->text[i] == '\n') {
            line++;
            continue;
        }
        if (c->text[i] != '"' || memcmp(c->text + i + 1, key, kn) != 0 || c->text[i + 1 + kn] != '"')
            continue;
        size_t j = i + kn + 2;
        while (j < c->n && (c->text[j] == ' ' || c->text[j] == '\t' || c->text[j] == '\r' || c->text[j] == '\n'))
            j++;
        if (j < c->n && c->text[j] == ':') {
            hits++;
            found = line;
        }
    }
    return hits == 1 ? found : 0;
}

static int bad(pctx *c, const char *fmt, ...) PATRON_PRINTF(2, 3);
static int bad(pctx *c, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    unsigned long line = c->leaf ? key_line(c, c->leaf) : 0;
    if (line)
        return err_set(c->err, PATRON_EINPUT, "%s:%lu: key '%s': %s", c->name, line, c->path, msg);
    return err_set(c->err, PATRON_EINPUT, "%s: key '%s': %s", c->name, c->path, msg);
}

/* Path helpers: push returns the length to restore with pop. */
static size_t push_key(pctx *c, const char *key)
{
    size_t old = c->plen;
    int w = snprintf(c->path + c->plen, sizeof c->path - c->plen, "%s%s", c->plen ? "." : "", key);
    if (w > 0)
        c->plen = c->plen + (size_t)w < sizeof c->path ? c->plen + (size_t)w : sizeof c->path - 1;
    c->leaf = key;
    return old;
}

static size_t push_index(pctx *c, size_t i)
{
    size_t old = c->plen;
    int w = snprintf(c->path + c->plen, sizeof c->path - c->plen, "[%zu]", i);
    if (w > 0)
        c->plen = c->plen + (size_t)w < sizeof c->path ? c->plen + (size_t)w : sizeof c->path - 1;
    return old;
}

static void pop(pctx *c, size_t old, const char *leaf)
{
    c->plen = old;
    c->path[old] = '\0';
    c->leaf = leaf;
}

/* Refuses keys of obj not in the NULL-terminated list. */
static int only_keys(pctx *c, json_t *obj, const char *const *allowed)
{
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v) {
        int ok = 0;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = strcmp(*a, k) == 0;
        if (!ok) {
            size_t old = push_key(c, k);
            int rc = bad(c, "unknown key (see docs/ledger.md)");
            pop(c, old, NULL);
            return rc;
        }
    }
    return PATRON_OK;
}

/* An exact decimal with at most four places, scaled by PROGRAM_SCALE, in [lo, hi]. */
static int get_decimal(pctx *c, json_t *v, int64_t lo, int64_t hi, int64_t *out)
{
    double scaled;
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i > hi / PROGRAM_SCALE || i < lo / PROGRAM_SCALE)
            return bad(c, "%lld is out of range", (long long)i);
        *out = (int64_t)i * PROGRAM_SCALE;
        return PATRON_OK;
    }
    if (!json_is_real(v))
        return bad(c, "expected a number");
    scaled = json_real_value(v) * PROGRAM_SCALE;
    double r = nearbyint(scaled);
    if (!isfinite(scaled) || r > (double)hi || r < (double)lo)
        return bad(c, "%g is out of range", json_real_value(v));
    if (fabs(scaled - r) > 1e-6 * (fabs(r) > 1 ? fabs(r) : 1))
        return bad(c, "%.10g has more than four decimal places", json_real_value(v));
    *out = (int64_t)r;
    return PATRON_OK;
}

static int get_int(pctx *c, json_t *v, int64_t lo, int64_t hi, int64_t *out)
{
    if (!json_is_integer(v))
        return bad(c, "expected a whole number");
    json_int_t i = json_integer_value(v);
    if (i < lo || i > hi)
        return bad(c, "%lld is out of range [%lld, %lld]", (long long)i, (long long)lo, (long long)hi);
    *out = (int64_t)i;
    return PATRON_OK;
}

static int get_string(pctx *c, json_t *v, size_t maxlen, char **out)
{
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > maxlen)
        return bad(c, "expected a string of 1-%zu bytes", maxlen);
    if (memchr(json_string_value(v), '\0', json_string_length(v)))
        return bad(c, "contains a NUL byte");
    *out = mem_strndup(json_string_value(v), json_string_length(v));
    return *out ? PATRON_OK : err_set(c->err, PATRON_ENOMEM, "out of memory");
}

static int get_ts(pctx *c, json_t *v, int64_t *out)
{
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return PATRON_OK;
    }
    if (!json_is_string(v) || time_parse(json_string_value(v), json_string_length(v), out) != 0)
        return bad(c, "cannot parse %s%s%s as a timestamp", json_is_string(v) ? "'" : "",
                   json_is_string(v) ? json_string_value(v) : "the value", json_is_string(v) ? "'" : "");
    return PATRON_OK;
}

static int get_duration(pctx *c, json_t *v, int64_t *out)
{
    if (!json_is_string(v) || time_parse_duration(json_string_value(v), json_string_length(v), out) != 0 ||
        *out <= 0)
        return bad(c, "expected a positive duration such as \"365d\", \"12mo\" or \"1y\"");
    return PATRON_OK;
}

static int get_string_list(pctx *c, json_t *v, char ***out, size_t *n)
{
    if (!json_is_array(v))
        return bad(c, "expected an array of strings");
    *out = mem_calloc(json_array_size(v) + 1, sizeof **out);
    if (!*out)
        return err_set(c->err, PATRON_ENOMEM, "out of memory");
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
        size_t old = push_index(c, i);
        int rc = get_string(c, e, 256, &(*out)[i]);
        pop(c, old, c->leaf);
        if (rc)
            return rc;
        (*n)++;
    }
    return PATRON_OK;
}

static int parse_mults(pctx *c, json_t *v, program_mult **out, size_t *n)
{
    if (!json_is_object(v))
        return bad(c, "expected an object of NAME: multiplier");
    *out = mem_calloc(json_object_size(v) + 1, sizeof **out);
    if (!*out)
        return err_set(c->err, PATRON_ENOMEM, "out of memory");
    const char *k;
    json_t *m;
    json_object_foreach(v, k, m) {
        const char *leaf = c->leaf;
        size_t old = push_key(c, k);
        program_mult *pm = &(*out)[*n];
        int rc = get_decimal(c, m, 0, PROGRAM_MAX_MULT, &pm->mult);
        if (rc == PATRON_OK && !(pm->key = mem_strdup(k)))
            rc = err_set(c->err, PATRON_ENOMEM, "out of memory");
        if (rc == PATRON_OK)
            pm->keyn = strlen(pm->key);
        pop(c, old, leaf);
        if (rc)
            return rc;
        (*n)++;
    }
    return PATRON_OK;
}

static int is_iso_code(const char *k)
{
    int ok = strlen(k) == 3;
    for (int i = 0; i < 3 && ok; i++)
        ok = k[i] >= 'A' && k[i] <= 'Z';
    return ok;
}

/* exchange_rates: {"EUR": 1.0834, ...}, base currency units per unit of CODE (exact, at
 * most four places, > 0); at most PROGRAM_MAX_RATES, never the base currency itself. */
static int parse_rates(pctx *c, json_t *v, program *p)
{
    if (json_is_object(v) && json_object_size(v) > PROGRAM_MAX_RATES)
        return bad(c, "at most %d exchange rates", PROGRAM_MAX_RATES);
    int rc = parse_mults(c, v, &p->rates, &p->n_rates);
    for (size_t i = 0; rc == PATRON_OK && i < p->n_rates; i++) {
        const char *leaf = c->leaf;
        size_t old = push_key(c, p->rates[i].key);
        if (!is_iso_code(p->rates[i].key))
            rc = bad(c, "'%s' is not a three-letter ISO 4217 code such as \"EUR\"", p->rates[i].key);
        else if (p->currency && strcmp(p->rates[i].key, p->currency) == 0)
            rc = bad(c, "'%s' is the base currency: it needs no rate", p->rates[i].key);
        else if (p->rates[i].mult <= 0)
            rc = bad(c, "an exchange rate must be above 0");
        pop(c, old, leaf);
    }
    return rc;
}

#define FIELD(obj, key, code)                                                                      \
    do {                                                                                           \
        json_t *v_ = json_object_get((obj), (key));                                                \
        if (v_) {                                                                                  \
            const char *leaf_ = c->leaf;                                                           \
            size_t old_ = push_key(c, (key));                                                      \
            json_t *v = v_;                                                                        \
            (void)v;                                                                               \
            int rc_ = (code);                                                                      \
            pop(c, old_, leaf_);                                                                   \
            if (rc_)                                                                               \
                return rc_;                                                                        \
        }                                                                                          \
    } while (0)

static int parse_tiers(pctx *c, program *p, json_t *t)
{
    static const char *const keys[] = {"basis", "window", "levels", NULL};
    if (!json_is_object(t))
        return bad(c, "expected an object with basis, window and levels");
    int rc = only_keys(c, t, keys);
    if (rc)
        return rc;
    p->window = 365 * (int64_t)TIME_DAY;
    FIELD(t, "basis", !json_is_string(v) ? bad(c, "expected \"points\" or \"spend\"")
                      : strcmp(json_string_value(v), "points") == 0 ? (p->basis = PROGRAM_BASIS_POINTS, 0)
                      : strcmp(json_string_value(v), "spend") == 0  ? (p->basis = PROGRAM_BASIS_SPEND, 0)
                                                                   : bad(c, "expected \"points\" or \"spend\", not '%s'", json_string_value(v)));
    FIELD(t, "window", get_duration(c, v, &p->window));
    json_t *levels = json_object_get(t, "levels");
    size_t old = push_key(c, "levels");
    if (!json_is_array(levels) || json_array_size(levels) == 0) {
        rc = bad(c, "expected a non-empty array of tiers");
        pop(c, old, NULL);
        return rc;
    }
    p->tiers = mem_calloc(json_array_size(levels), sizeof *p->tiers);
    if (!p->tiers)
        return err_set(c->err, PATRON_ENOMEM, "out of memory");
    size_t i;
    json_t *lv;
    json_array_foreach(levels, i, lv) {
        static const char *const lkeys[] = {"name", "threshold", "multiplier", NULL};
        size_t o2 = push_index(c, i);
        program_tier *tr = &p->tiers[i];
        tr->mult = PROGRAM_SCALE;
        if (!json_is_object(lv))
            return bad(c, "expected an object with name, threshold and multiplier");
        if ((rc = only_keys(c, lv, lkeys)))
            return rc;
        if (!json_object_get(lv, "name"))
            return bad(c, "missing 'name'");
        if (!json_object_get(lv, "threshold"))
            return bad(c, "missing 'threshold'");
        FIELD(lv, "name", get_string(c, v, 64, &tr->name));
        p->n_tiers = i + 1;
        FIELD(lv, "threshold",
              p->basis == PROGRAM_BASIS_SPEND
                  ? get_decimal(c, v, 0, PROGRAM_MAX_POINTS, &tr->threshold)
                  : get_int(c, v, 0, PROGRAM_MAX_POINTS, &tr->threshold));
        FIELD(lv, "multiplier", get_decimal(c, v, 0, PROGRAM_MAX_MULT, &tr->mult));
        if (i == 0 && tr->threshold != 0) {
            size_t o3 = push_key(c, "threshold");
            rc = bad(c, "the first tier is the base tier: its threshold must be 0");
            pop(c, o3, NULL);
            return rc;
        }
        if (i > 0 && tr->threshold <= p->tiers[i - 1].threshold) {
            size_t o3 = push_key(c, "threshold");
            rc = bad(c, "thresholds must increase from one tier to the next");
            pop(c, o3, NULL);
            return rc;
        }
        for (size_t k = 0; k < i; k++)
            if (strcmp(p->tiers[k].name, tr->name) == 0) {
                size_t o3 = push_key(c, "name");
                rc = bad(c, "tier '%s' is defined twice", tr->name);
                pop(c, o3, NULL);
                return rc;
            }
        pop(c, o2, "levels");
    }
    pop(c, old, NULL);
    return PATRON_OK;
}

static int parse_expiry(pctx *c, program *p, json_t *e)
{
    static const char *const keys[] = {"policy", "days", "months", "years", NULL};
    if (!json_is_object(e))
        return bad(c, "expected an object with a policy");
    int rc = only_keys(c, e, keys);
    if (rc)
        return rc;
    json_t *pol = json_object_get(e, "policy");
    const char *s = json_is_string(pol) ? json_string_value(pol) : "";
    const char *need = NULL;
    size_t old = push_key(c, "policy");
    if (strcmp(s, "never") == 0)
        p->expire_mode = PROGRAM_EXPIRE_NEVER;
    else if (strcmp(s, "days") == 0)
        p->expire_mode = PROGRAM_EXPIRE_DAYS, need = "days";
    else if (strcmp(s, "end_of_month") == 0)
        p->expire_mode = PROGRAM_EXPIRE_END_OF_MONTH, need = "months";
    else if (strcmp(s, "end_of_year") == 0)
        p->expire_mode = PROGRAM_EXPIRE_END_OF_YEAR, need = "years";
    else
        return bad(c, "expected \"never\", \"days\", \"end_of_month\" or \"end_of_year\"");
    pop(c, old, NULL);
    const char *all[] = {"days", "months", "years"};
    for (int k = 0; k < 3; k++) {
        json_t *v = json_object_get(e, all[k]);
        if (!v)
            continue;
        size_t o2 = push_key(c, all[k]);
        if (!need || strcmp(need, all[k]) != 0)
            rc = bad(c, "not used by policy '%s'", s);
        else
            rc = get_int(c, v, need[0] == 'd' ? 1 : 0, need[0] == 'd' ? 100000 : need[0] == 'm' ? 1200 : 100,
                         &p->expire_n);
        pop(c, o2, NULL);
        if (rc)
            return rc;
    }
    if (need && !json_object_get(e, need))
        return bad(c, "policy '%s' needs '%s'", s, need);
    return PATRON_OK;
}

static const char *const bonus_names[PROGRAM_BONUS__COUNT] = {"survey", "referral", "birthday",
                                                              "enrollment"};

static int parse_bonuses(pctx *c, program *p, json_t *b)
{
    static const char *const keys[] = {"survey", "referral", "birthday", "enrollment", NULL};
    if (!json_is_object(b))
        return bad(c, "expected an object of EVENT: points");
    int rc = only_keys(c, b, keys);
    if (rc)
        return rc;
    for (int k = 0; k < PROGRAM_BONUS__COUNT; k++)
        FIELD(b, bonus_names[k], get_int(c, v, 0, PROGRAM_MAX_POINTS, &p->bonus[k]));
    return PATRON_OK;
}

/* A promotion's rule: its text, checked for syntax here (names and types need the
 * member view: promo_rules_check).  The rule's own message keeps its line:column. */
static int get_rule(pctx *c, json_t *v, char **out)
{
    int rc = get_string(c, v, 4096, out);
    if (rc)
        return rc;
    rule *r = NULL;
    patron_error rerr = {0};
    rc = rule_parse(*out, &r, &rerr);
    rule_free(r);
    if (rc == PATRON_ENOMEM)
        return err_set(c->err, PATRON_ENOMEM, "out of memory");
    return rc ? bad(c, "%s", rerr.message) : PATRON_OK;
}

static int parse_promos(pctx *c, program *p, json_t *a)
{
    static const char *const keys[] = {"id", "from", "to", "multiplier", "bonus", "members",
                                       "categories", "tiers", "min_amount", "rule", NULL};
    if (!json_is_array(a))
        return bad(c, "expected an array of promotions");
    p->promos = mem_calloc(json_array_size(a) + 1, sizeof *p->promos);
    if (!p->promos)
        return err_set(c->err, PATRON_ENOMEM, "out of memory");
    size_t i;
    json_t *o;
    int rc;
    json_array_foreach(a, i, o) {
        size_t old = push_index(c, i);
        program_promo *pr = &p->promos[i];
        p->n_promos = i + 1;
        pr->mult = PROGRAM_SCALE;
        pr->from = INT64_MIN;
        pr->to = INT64_MAX;
        if (!json_is_object(o))
            return bad(c, "expected an object");
        if ((rc = only_keys(c, o, keys)))
            return rc;
        if (!json_object_get(o, "id"))
            return bad(c, "missing 'id'");
        FIELD(o, "rule", get_rule(c, v, &pr->rule));
        p->n_rule_promos += pr->rule != NULL;
        FIELD(o, "id", get_string(c, v, 128, &pr->id));
        FIELD(o, "from", get_ts(c, v, &pr->from));
        FIELD(o, "to", get_ts(c, v, &pr->to));
        FIELD(o, "multiplier", get_decimal(c, v, 0, PROGRAM_MAX_MULT, &pr->mult));
        FIELD(o, "bonus", get_int(c, v, 0, PROGRAM_MAX_POINTS, &pr->bonus));
        FIELD(o, "min_amount", get_decimal(c, v, 0, PROGRAM_MAX_POINTS * 100, &pr->min_amount));
        FIELD(o, "members", get_string_list(c, v, &pr->members, &pr->n_members));
        FIELD(o, "categories", get_string_list(c, v, &pr->categories, &pr->n_categories));
        json_t *tl = json_object_get(o, "tiers");
        if (tl) {
            char **names = NULL;
            size_t nn = 0;
            size_t o2 = push_key(c, "tiers");
            rc = get_string_list(c, tl, &names, &nn);
            if (rc == PATRON_OK && !(pr->tiers = mem_calloc(nn + 1, sizeof *pr->tiers)))
                rc = err_set(c->err, PATRON_ENOMEM, "out of memory");
            for (size_t k = 0; k < nn && rc == PATRON_OK; k++) {
                int t = program_tier_find(p, names[k], strlen(names[k]));
                if (t < 0) {
                    size_t o3 = push_index(c, k);
                    rc = bad(c, "no tier named '%s' (tiers must be defined)", names[k]);
                    pop(c, o3, NULL);
                }
                pr->tiers[pr->n_tiers++] = t;
            }
            for (size_t k = 0; names && names[k]; k++)
                mem_free(names[k]);
            mem_free(names);
            pop(c, o2, NULL);
            if (rc)
                return rc;
        }
        if (pr->from >= pr->to) {
            size_t o2 = push_key(c, "to");
            rc = bad(c, "the window is empty ('to' must be after 'from')");
            pop(c, o2, NULL);
            return rc;
        }
        if (!json_object_get(o, "multiplier") && !json_object_get(o, "bonus"))
            return bad(c, "a promotion needs a 'multiplier' or a 'bonus'");
        for (size_t k = 0; k < i; k++)
            if (strcmp(p->promos[k].id, pr->id) == 0)
                return bad(c, "promotion '%s' is defined twice", pr->id);
        pop(c, old, "promotions");
    }
    return PATRON_OK;
}

static int parse_rewards(pctx *c, program *p, json_t *a)
{
    static const char *const keys[] = {"id", "name", "points", "stock", NULL};
    if (!json_is_array(a))
        return bad(c, "expected an array of rewards");
    p->rewards = mem_calloc(json_array_size(a) + 1, sizeof *p->rewards);
    if (!p->rewards)
        return err_set(c->err, PATRON_ENOMEM, "out of memory");
    size_t i;
    json_t *o;
    int rc;
    json_array_foreach(a, i, o) {
        size_t old = push_index(c, i);
        program_reward *rw = &p->rewards[i];
        p->n_rewards = i + 1;
        rw->stock = -1;
        if (!json_is_object(o))
            return bad(c, "expected an object with id, name, points and stock");
        if ((rc = only_keys(c, o, keys)))
            return rc;
        if (!json_object_get(o, "id"))
            return bad(c, "missing 'id'");
        if (!json_object_get(o, "points"))
            return bad(c, "missing 'points'");
        FIELD(o, "id", get_string(c, v, 128, &rw->id));
        FIELD(o, "name", get_string(c, v, 256, &rw->name));
        FIELD(o, "points", get_int(c, v, 1, PROGRAM_MAX_POINTS, &rw->points));
        FIELD(o, "stock", json_is_null(v) ? 0 : get_int(c, v, 0, PROGRAM_MAX_POINTS, &rw->stock));
        if (!rw->name && !(rw->name = mem_strdup(rw->id)))
            return err_set(c->err, PATRON_ENOMEM, "out of memory");
        for (size_t k = 0; k < i; k++)
            if (strcmp(p->rewards[k].id, rw->id) == 0)
                return bad(c, "reward '%s' is defined twice", rw->id);
        pop(c, old, "rewards");
    }
    return PATRON_OK;
}

static int parse_root(pctx *c, program *p, json_t *root)
{
    static const char *const keys[] = {"name", "description", "currency", "exchange_rates",
                                       "time_zone", "points_per_unit", "category_multipliers",
                                       "sku_multipliers", "tiers", "expiry", "bonuses",
                                       "promotions", "rewards", NULL};
    int rc = only_keys(c, root, keys);
    if (rc)
        return rc;
    if (!json_object_get(root, "points_per_unit"))
        return err_set(c->err, PATRON_EINPUT, "%s: missing required key 'points_per_unit'", c->name);
    FIELD(root, "name", json_is_string(v) ? 0 : bad(c, "expected a string"));
    FIELD(root, "description", json_is_string(v) ? 0 : bad(c, "expected a string"));
    FIELD(root, "currency", get_string(c, v, 8, &p->currency));
    if (p->currency) {
        if (!is_iso_code(p->currency)) {
            size_t old = push_key(c, "currency");
            rc = bad(c, "'%s' is not a three-letter ISO 4217 code such as \"USD\"", p->currency);
            pop(c, old, NULL);
            return rc;
        }
    } else if (!(p->currency = mem_strdup("USD"))) {
        return err_set(c->err, PATRON_ENOMEM, "out of memory");
    }
    FIELD(root, "time_zone",
          json_is_string(v) && strcmp(json_string_value(v), "UTC") == 0
              ? 0
              : bad(c, "only \"UTC\" is supported for now (calendar expiry is computed in UTC)"));
    FIELD(root, "points_per_unit", get_decimal(c, v, 0, PROGRAM_MAX_RATE, &p->rate));
    FIELD(root, "exchange_rates", parse_rates(c, v, p));
    FIELD(root, "category_multipliers", parse_mults(c, v, &p->categories, &p->n_categories));
    FIELD(root, "sku_multipliers", parse_mults(c, v, &p->skus, &p->n_skus));
    FIELD(root, "tiers", parse_tiers(c, p, v));
    FIELD(root, "expiry", parse_expiry(c, p, v));
    FIELD(root, "bonuses", parse_bonuses(c, p, v));
    FIELD(root, "promotions", parse_promos(c, p, v));
    FIELD(root, "rewards", parse_rewards(c, p, v));
    return PATRON_OK;
}

int program_parse(const char *text, size_t n, const char *name, program **out, patron_error *err)
{
    json_error_t je;
    json_t *root = json_loadb(text, n, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return err_set(err, PATRON_EINPUT, "%s:%d:%d: %s", name, je.line, je.column, je.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return err_set(err, PATRON_EINPUT, "%s:1:1: the configuration must be a JSON object", name);
    }
    program *p = mem_calloc(1, sizeof *p);
    if (!p) {
        json_decref(root);
        return err_set(err, PATRON_ENOMEM, "out of memory");
    }
    pctx c = {name, text, n, err, "", 0, NULL};
    int rc = parse_root(&c, p, root);
    if (rc == PATRON_OK) {
        char *canon = json_dumps(root, JSON_SORT_KEYS | JSON_COMPACT);
        p->canonical = canon ? mem_strdup(canon) : NULL;
        free(canon);
        if (!p->canonical)
            rc = err_set(err, PATRON_ENOMEM, "out of memory");
        else
            p->hash = XXH3_64bits(p->canonical, strlen(p->canonical));
    }
    json_decref(root);
    if (rc) {
        program_free(p);
        return rc;
    }
    *out = p;
    return PATRON_OK;
}

int program_load_file(const char *path, program **out, patron_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return err_set(err, PATRON_ENOTFOUND, "cannot open '%s'", path);
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (MEM_GROW(buf, cap, len + 65536) != 0) {
            fclose(f);
            mem_free(buf);
            return err_set(err, PATRON_ENOMEM, "out of memory");
        }
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (r == 0)
            break;
    }
    int bad_read = ferror(f);
    fclose(f);
    int rc = bad_read ? err_set(err, PATRON_EIO, "cannot read '%s'", path)
                      : program_parse(buf, len, path, out, err);
    mem_free(buf);
    return rc;
}

static void free_list(char **l, size_t n)
{
    for (size_t i = 0; i < n; i++)
        mem_free(l[i]);
    mem_free(l);
}

void program_free(program *p)
{
    if (!p)
        return;
    mem_free(p->currency);
    for (size_t i = 0; i < p->n_categories; i++)
        mem_free(p->categories[i].key);
    for (size_t i = 0; i < p->n_skus; i++)
        mem_free(p->skus[i].key);
    mem_free(p->categories);
    mem_free(p->skus);
    for (size_t i = 0; i < p->n_rates; i++)
        mem_free(p->rates[i].key);
    mem_free(p->rates);
    for (size_t i = 0; i < p->n_tiers; i++)
        mem_free(p->tiers[i].name);
    mem_free(p->tiers);
    for (size_t i = 0; i < p->n_promos; i++) {
        program_promo *pr = &p->promos[i];
        mem_free(pr->id);
        free_list(pr->members, pr->n_members);
        free_list(pr->categories, pr->n_categories);
        mem_free(pr->tiers);
        mem_free(pr->rule);
    }
    mem_free(p->promos);
    for (size_t i = 0; i < p->n_rewards; i++) {
        mem_free(p->rewards[i].id);
        mem_free(p->rewards[i].name);
    }
    mem_free(p->rewards);
    mem_free(p->canonical);
    mem_free(p);
}

int64_t program_expiry(const program *p, int64_t ts)
{
    int64_t day = time_day_of(ts);
    int y, m, d;
    switch (p->expire_mode) {
    case PROGRAM_EXPIRE_DAYS: {
        int64_t e;
        if (__builtin_mul_overflow(p->expire_n, (int64_t)TIME_DAY, &e) || __builtin_add_overflow(ts, e, &e))
            return INT64_MAX;
        return e;
    }
    case PROGRAM_EXPIRE_END_OF_MONTH: {
        /* The first instant of the month after (earning month + n). */
        time_civil_from_days(day, &y, &m, &d);
        int64_t months = (int64_t)y * 12 + (m - 1) + p->expire_n + 1;
        return time_days_from_civil(months / 12, (unsigned)(months % 12 + 1), 1) * TIME_DAY;
    }
    case PROGRAM_EXPIRE_END_OF_YEAR:
        time_civil_from_days(day, &y, &m, &d);
        return time_days_from_civil((int64_t)y + p->expire_n + 1, 1, 1) * TIME_DAY;
    default:
        return INT64_MAX;
    }
}

int program_reward_find(const program *p, const char *id, size_t n)
{
    for (size_t i = 0; i < p->n_rewards; i++)
        if (strlen(p->rewards[i].id) == n && memcmp(p->rewards[i].id, id, n) == 0)
            return (int)i;
    return -1;
}

int program_tier_find(const program *p, const char *name, size_t n)
{
    for (size_t i = 0; i < p->n_tiers; i++)
        if (strlen(p->tiers[i].name) == n && memcmp(p->tiers[i].name, name, n) == 0)
            return (int)i;
    return -1;
}

int64_t program_item_mult(const program *p, const char *sku, size_t skun, const char *cat,
                          size_t catn)
{
    /* (the first byte before memcmp: most names of one length differ there) */
    for (size_t i = 0; i < p->n_skus && skun; i++)
        if (p->skus[i].keyn == skun && p->skus[i].key[0] == sku[0] &&
            memcmp(p->skus[i].key, sku, skun) == 0)
            return p->skus[i].mult;
    for (size_t i = 0; i < p->n_categories && catn; i++)
        if (p->categories[i].keyn == catn && p->categories[i].key[0] == cat[0] &&
            memcmp(p->categories[i].key, cat, catn) == 0)
            return p->categories[i].mult;
    return PROGRAM_SCALE;
}
