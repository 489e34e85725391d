/*
 * promo.h -- promotion rule conditions (SPEC §5, docs/ledger.md "Promotion rules"): a
 * promotion may carry a rule of the segment language; it applies to an order only when
 * the member satisfies the rule just before the order, i.e. at now = order time - 1 s,
 * so the order itself and everything at or after its time are invisible.
 *
 * Rules are compiled against the member view (names, types, dictionary codes), so a
 * compiled rule is valid for one view generation and one program: the cache below
 * recompiles when either changes.  A promotion rule may not read the ledger itself
 * (`tier`, `points_balance`, `points_earned_365d`, the `points` and `redemptions`
 * streams): it is evaluated while the ledger is being written.  The tier just before the
 * order is the promotion's `tiers` key.
 */
#ifndef PATRON_LOYALTY_PROMO_H
#define PATRON_LOYALTY_PROMO_H

#include "loyalty/program.h"
#include "patron/patron.h"

#include <stddef.h>
#include <stdint.h>

typedef struct promo_rules promo_rules;

/* Compiles every promotion rule of p against db's member view (built when missing).
 * PATRON_EINPUT names the promotion: "NAME: key 'promotions[1].rule': 1:9: unknown field
 * 'contry' (did you mean 'country'?)" followed by the rule's line and a caret. */
int promo_rules_check(patron_db *db, const program *p, const char *name, patron_error *err);

/* Whether promotion k of p (which has a rule) holds for member just before ts: *holds
 * 0 or 1.  *cache is created on first use and owned by the caller (promo_rules_free);
 * it is recompiled when p or the view generation changes.  The view must cover every
 * order and event before ts that is to be seen (importers apply their batch to the view
 * first when the program has rule promotions: loyalty_wants_view). */
int promo_rule_holds(promo_rules **cache, patron_db *db, const program *p, size_t k,
                     uint32_t member, int64_t ts, int *holds, patron_error *err);
void promo_rules_free(promo_rules *c);

#endif
