/*
 * aggidx.c -- derived indexes over a stream's kept rows (see aggidx.h).
 *
 * Every builder walks member slices only: rows in the gaps between slices hold stale
 * values and must never be read.  Prefix arrays run over all rows so that a member's
 * window [lo, hi) is pc[hi] - pc[lo] without knowing where its slice starts; the money
 * sums wrap modulo 2^64, which leaves the difference over a slice exact.
 */
#include "rules/aggidx.h"

#include "base/mem.h"

#include <string.h>

aggidx *aggidx_new(const stream *s, uint32_t nm, const char *key)
{
    aggidx *a = mem_calloc(1, sizeof *a);
    if (!a) return NULL;
    a->s = s;
    a->nm = nm;
    a->nrows = s->nrows;
    a->key = mem_strdup(key);
    a->keep = mem_calloc(a->nrows ? a->nrows : 1, 1);
    if (!a->key || !a->keep) {
        aggidx_free(a);
        return NULL;
    }
    return a;
}

void aggidx_seal(aggidx *a)
{
    const stream *s = a->s;
    a->maxts = INT64_MIN;
    for (uint32_t m = 0; m < a->nm; m++) {
        uint32_t e = s->end[m];
        if (e > s->beg[m] && s->ts[e - 1] > a->maxts) a->maxts = s->ts[e - 1];
    }
}

void aggidx_free(aggidx *a)
{
    if (!a) return;
    mem_free(a->key);
    mem_free(a->keep);
    for (int k = 0; k <= AGGIDX_KMAX; k++) {
        mem_free(a->tk[k]);
        mem_free(a->tkd[k]);
    }
    mem_free(a->pc);
    mem_free(a->ps);
    mem_free(a->tc);
    mem_free(a);
}

const int64_t *aggidx_tk(aggidx *a, int k)
{
    if (k < 1 || k > AGGIDX_KMAX) return NULL;
    if (a->tk[k]) return a->tk[k];
    int64_t *t = mem_alloc_array(a->nm ? a->nm : 1, sizeof *t);
    if (!t) return NULL;
    const stream *s = a->s;
    for (uint32_t m = 0; m < a->nm; m++) {
        int64_t v = PATRON_NULL_TS;
        int c = 0;
        for (uint32_t r = s->end[m]; r > s->beg[m]; r--)
            if (a->keep[r - 1] && ++c == k) {
                v = s->ts[r - 1];
                break;
            }
        t[m] = v;
    }
    a->tk[k] = t;
    return t;
}

const int64_t *aggidx_tkd(aggidx *a, const vcol *c, uint32_t ncodes, int k)
{
    if (k < 1 || k > AGGIDX_KMAX || c->st != VS_CODE) return NULL;
    if (a->cd_data && (a->cd_data != c->data || a->cd_via != c->via)) return NULL;
    if (a->tkd[k]) return a->tkd[k];
    int64_t *t = mem_alloc_array(a->nm ? a->nm : 1, sizeof *t);
    uint32_t *mark = mem_calloc(ncodes ? ncodes : 1, sizeof *mark);
    if (!t || !mark) {
        mem_free(t);
        mem_free(mark);
        return NULL;
    }
    const stream *s = a->s;
    const uint32_t *codes = c->data, *via = c->via;
    for (uint32_t m = 0; m < a->nm; m++) {
        int64_t v = PATRON_NULL_TS;
        int d = 0;
        uint32_t stamp = m + 1;
        for (uint32_t r = s->end[m]; r > s->beg[m]; r--) {
            if (!a->keep[r - 1]) continue;
            uint32_t cd = codes[via ? via[r - 1] : r - 1];
            if (cd == 0 || cd >= ncodes || mark[cd] == stamp) continue;
            mark[cd] = stamp;
            if (++d == k) {
                v = s->ts[r - 1];
                break;
            }
        }
        t[m] = v;
    }
    mem_free(mark);
    a->cd_data = c->data;
    a->cd_via = c->via;
    a->tkd[k] = t;
    return t;
}

const int64_t *aggidx_tsum(aggidx *a, const vcol *c, double lim, int incl, int *neg)
{
    if (c->st != VS_MONEY)
        return NULL;
    if (a->tc)
        return a->tc_data == c->data && a->tc_via == c->via && a->tc_c == lim &&
                               a->tc_incl == incl
                   ? a->tc
                   : NULL;
    const stream *s = a->s;
    const int64_t *d = c->data;
    const uint32_t *via = c->via;
    for (uint32_t m = 0; m < a->nm; m++)
        for (uint32_t r = s->beg[m]; r < s->end[m]; r++)
            if (a->keep[r] && d[via ? via[r] : r] < 0) {
                *neg = 1;
                return NULL;
            }
    int64_t *t = mem_alloc_array(a->nm ? a->nm : 1, sizeof *t);
    if (!t)
        return NULL;
    for (uint32_t m = 0; m < a->nm; m++) {
        int64_t v = PATRON_NULL_TS, acc = 0;
        for (uint32_t r = s->end[m]; r > s->beg[m]; r--) {
            if (!a->keep[r - 1])
                continue;
            acc += d[via ? via[r - 1] : r - 1];
            double x = (double)acc / PATRON_MONEY_SCALE;
            if (incl ? x >= lim : x > lim) {
                v = s->ts[r - 1];
                break;
            }
        }
        t[m] = v;
    }
    a->tc = t;
    a->tc_data = c->data;
    a->tc_via = c->via;
    a->tc_c = lim;
    a->tc_incl = incl;
    return t;
}

const uint32_t *aggidx_pc(aggidx *a)
{
    if (a->pc) return a->pc;
    uint32_t *p = mem_alloc_array(a->nrows + 1, sizeof *p);
    if (!p) return NULL;
    uint32_t acc = 0;
    for (size_t r = 0; r < a->nrows; r++) {
        p[r] = acc;
        acc += a->keep[r];
    }
    p[a->nrows] = acc;
    a->pc = p;
    return p;
}

const uint64_t *aggidx_ps(aggidx *a, const vcol *c)
{
    if (c->st != VS_MONEY) return NULL;
    if (a->ps) return a->ps_data == c->data && a->ps_via == c->via ? a->ps : NULL;
    uint64_t *p = mem_alloc_array(a->nrows + 1, sizeof *p);
    if (!p) return NULL;
    const int64_t *d = c->data;
    const uint32_t *via = c->via;
    uint64_t acc = 0;
    for (size_t r = 0; r < a->nrows; r++) {
        p[r] = acc;
        if (a->keep[r]) acc += (uint64_t)d[via ? via[r] : r];
    }
    p[a->nrows] = acc;
    a->ps = p;
    a->ps_data = c->data;
    a->ps_via = c->via;
    return p;
}
