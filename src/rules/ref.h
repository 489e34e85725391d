/*
 * ref.h -- the reference interpreter: a plain tree walk over one member at a time,
 * written independently of the compiled evaluator (rules/eval.c) and kept as the
 * oracle that the differential tests compare it with.  Slow on purpose; never used
 * to serve queries.
 */
#ifndef PATRON_RULES_REF_H
#define PATRON_RULES_REF_H

#include "rules/rule.h"

/* 1 when member m satisfies r at now, else 0.  The member view must be built. */
int rule_ref_eval(const rule *r, const patron_db *db, uint32_t m, int64_t now);

#endif
