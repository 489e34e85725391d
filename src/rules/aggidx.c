/*
 * aggidx.c -- derived indexes over a stream's kept rows (see aggidx.h).
 *
 * Every builder walks member slices only: rows in the gaps between slices hold stale
 * values and must never be read.  Prefix arrays run over all rows so that a member's
 * window [lo, hi) is pc[hi] - pc[lo] without knowing where its slice starts; the money
 * sums wrap modulo 2^64, which leaves the difference over a slice exact.
 *
 * The blocks of aggidx_blocks put the rows of a block's member slices into time order
 * by a stable radix sort, so equal times keep member order and the result depends on
 * nothing but the rows.
 */
#include "rules/aggidx.h"

#include "base/mem.h"

#include <pthread.h>
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
    mem_free(a->blk.off);
    mem_free(a->blk.ts);
    mem_free(a->blk.mem);
    mem_free(a->blk.money);
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

/* Puts the n times t of a block in order: perm[i] is the index in t of the i-th
 * earliest, equal times in index order.  A least significant digit first radix sort
 * of the times' offsets from the earliest, one byte a pass (as many passes as the span
 * of the times needs, a pass skipped when all its bytes are equal); key and perm hold
 * 2n entries each (the second half for the passes). */
static void sort_block(const int64_t *t, uint32_t n, uint64_t *key, uint32_t *perm)
{
    if (n == 0)
        return;
    int64_t lo = t[0], hi = t[0];
    for (uint32_t i = 1; i < n; i++) {
        lo = t[i] < lo ? t[i] : lo;
        hi = t[i] > hi ? t[i] : hi;
    }
    uint64_t span = (uint64_t)hi - (uint64_t)lo;
    uint64_t *ka = key, *kb = key + n;
    uint32_t *pa = perm, *pb = perm + n;
    for (uint32_t i = 0; i < n; i++) {
        ka[i] = (uint64_t)t[i] - (uint64_t)lo;
        pa[i] = i;
    }
    for (unsigned sh = 0; sh < 64 && (span >> sh) != 0; sh += 8) {
        uint32_t pos[256] = {0};
        for (uint32_t i = 0; i < n; i++)
            pos[(ka[i] >> sh) & 255]++;
        if (pos[(ka[0] >> sh) & 255] == n)
            continue; /* one digit for all: the order stands */
        uint32_t acc = 0;
        for (int d = 0; d < 256; d++) {
            uint32_t c = pos[d];
            pos[d] = acc;
            acc += c;
        }
        for (uint32_t i = 0; i < n; i++) {
            uint32_t o = pos[(ka[i] >> sh) & 255]++;
            kb[o] = ka[i];
            pb[o] = pa[i];
        }
        uint64_t *tk = ka;
        ka = kb;
        kb = tk;
        uint32_t *tp = pa;
        pa = pb;
        pb = tp;
    }
    if (pa != perm)
        memcpy(perm, pa, n * sizeof *perm);
}

/* A share of the blocks of k being filled from the index's kept rows (times, members,
 * and money from the money column c unless NULL), with its own room: a block's rows in
 * member order (bt: times, then money; bm: members) and the sort's (key, perm). */
typedef struct fill_share {
    const aggidx *a;
    aggblk *k;
    const vcol *c;
    uint32_t b0, b1;
    size_t room;
    int64_t *bt;
    uint8_t *bm;
    uint64_t *key;
    uint32_t *perm;
} fill_share;

static void *fill_blocks(void *arg)
{
    const fill_share *f = arg;
    const aggidx *a = f->a;
    const stream *s = a->s;
    aggblk *k = f->k;
    const int64_t *d = f->c ? f->c->data : NULL;
    const uint32_t *via = f->c ? f->c->via : NULL;
    int64_t *bt = f->bt, *bv = f->bt + f->room;
    for (uint32_t b = f->b0; b < f->b1; b++) {
        uint32_t n = 0, m0 = b << AGGIDX_BLOCK_BITS;
        for (uint32_t m = m0; m < a->nm && m - m0 < (1u << AGGIDX_BLOCK_BITS); m++)
            for (uint32_t r = s->beg[m]; r < s->end[m]; r++)
                if (a->keep[r]) {
                    bt[n] = s->ts[r];
                    f->bm[n] = (uint8_t)(m - m0);
                    bv[n] = d ? d[via ? via[r] : r] : 0;
                    n++;
                }
        sort_block(bt, n, f->key, f->perm);
        int64_t *ts = k->ts + k->off[b], *mv = d ? k->money + k->off[b] : NULL;
        uint8_t *mm = k->mem + k->off[b];
        for (uint32_t i = 0; i < n; i++) {
            uint32_t j = f->perm[i];
            ts[i] = bt[j];
            mm[i] = f->bm[j];
            if (mv)
                mv[i] = bv[j];
        }
    }
    return NULL;
}

/* Fills the blocks of k (off set, room for the rows) in shares of about equal rows on
 * up to `threads` threads (their arrays are fresh memory: at M most of the time is the
 * first touch of their pages).  Every allocation is made here, before any thread
 * starts.  0, or -1 when out of memory (nothing is written then). */
static int fill_all(const aggidx *a, aggblk *k, const vcol *c, int threads)
{
    enum { MAXT = 16 };
    fill_share sh[MAXT];
    pthread_t tid[MAXT];
    int nt = threads < 1 ? 1 : threads > MAXT ? MAXT : threads, rc = 0;
    size_t total = k->off[k->nb];
    uint32_t b = 0;
    for (int t = 0; t < nt; t++) {
        size_t upto = total * (size_t)(t + 1) / (size_t)nt, most = 0;
        fill_share *f = &sh[t];
        *f = (fill_share){a, k, c, b, b, 0, NULL, NULL, NULL, NULL};
        while (b < k->nb && (t == nt - 1 || k->off[b] < upto)) {
            size_t n = k->off[b + 1] - k->off[b];
            most = n > most ? n : most;
            b++;
        }
        f->b1 = b;
        f->room = most ? most : 1;
        f->bt = mem_alloc_array(f->room, 2 * sizeof *f->bt);
        f->bm = mem_alloc(f->room);
        f->key = mem_alloc_array(f->room, 2 * sizeof *f->key);
        f->perm = mem_alloc_array(f->room, 2 * sizeof *f->perm);
        if (!f->bt || !f->bm || !f->key || !f->perm)
            rc = -1;
    }
    int started[MAXT] = {0};
    for (int t = 1; rc == 0 && t < nt; t++)
        started[t] = pthread_create(&tid[t], NULL, fill_blocks, &sh[t]) == 0;
    if (rc == 0)
        fill_blocks(&sh[0]);
    for (int t = 0; t < nt; t++) {
        if (started[t])
            pthread_join(tid[t], NULL);
        else if (rc == 0 && t > 0)
            fill_blocks(&sh[t]); /* no thread: fill it here */
        mem_free(sh[t].bt);
        mem_free(sh[t].bm);
        mem_free(sh[t].key);
        mem_free(sh[t].perm);
    }
    return rc;
}

const aggblk *aggidx_blocks(aggidx *a, const vcol *c, int threads, int *oom)
{
    if (c && c->st != VS_MONEY)
        return NULL;
    if (a->blk.off && (!c || a->blk.money))
        return !c || (a->blk_data == c->data && a->blk_via == c->via) ? &a->blk : NULL;
    aggblk k = a->blk; /* built for counts and now asked for money: the same again, with it */
    if (!k.off) {
        const stream *s = a->s;
        k.nb = (a->nm + (1u << AGGIDX_BLOCK_BITS) - 1) >> AGGIDX_BLOCK_BITS;
        k.off = mem_alloc_array((size_t)k.nb + 1, sizeof *k.off);
        if (!k.off) {
            *oom = 1;
            return NULL;
        }
        size_t total = 0;
        for (uint32_t m = 0; m < a->nm; m++) {
            if ((m & ((1u << AGGIDX_BLOCK_BITS) - 1)) == 0)
                k.off[m >> AGGIDX_BLOCK_BITS] = (uint32_t)total;
            for (uint32_t r = s->beg[m]; r < s->end[m]; r++)
                total += a->keep[r];
        }
        k.off[k.nb] = (uint32_t)total;
        k.ts = mem_alloc_array(total ? total : 1, sizeof *k.ts);
        k.mem = mem_alloc(total ? total : 1);
    }
    size_t total = k.off[k.nb];
    if (c)
        k.money = mem_alloc_array(total ? total : 1, sizeof *k.money);
    if (!k.ts || !k.mem || (c && !k.money) || fill_all(a, &k, c, threads) != 0) {
        if (k.off != a->blk.off) {
            mem_free(k.off);
            mem_free(k.ts);
            mem_free(k.mem);
        }
        mem_free(k.money);
        *oom = 1;
        return NULL;
    }
    a->blk = k;
    a->blk_data = c ? c->data : NULL;
    a->blk_via = c ? c->via : NULL;
    return &a->blk;
}
