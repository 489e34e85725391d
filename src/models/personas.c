/*
 * personas.c -- persona features, fit, stable ids and descriptions (see personas.h).
 *
 * Choosing k: on a deterministic sample of at most 20,000 members, k = 2..10 are each
 * fitted (3 restarts) and scored by the mean silhouette of 2,000 of them; the best k
 * (the smaller on a tie) is then fitted on everyone.  Descriptions name what sets a
 * persona apart: features whose centroid lies at least half a standard deviation from
 * the population, as words ("frequent high-spend shoppers, recent").
 */
#include "models/personas.h"

#include "base/err.h"
#include "base/mem.h"
#include "base/time.h"
#include "ingest/rng.h"
#include "members/view.h"
#include "models/kmeans.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { F_MONETARY, F_FREQUENCY, F_RECENCY, F_AOV, F_TENURE };

enum { TOP_CATEGORIES = 4, TOP_CHANNELS = 3, TOP_MESSAGE_CHANNELS = 3 };

void personas_feats_base(personas_feats *fs)
{
    static const char *const names[PERSONAS_BASEF] = {"monetary", "frequency", "recency_days",
                                                      "aov", "tenure_days"};
    static const uint8_t kinds[PERSONAS_BASEF] = {PF_LOG, PF_LOG, PF_PLAIN, PF_LOG, PF_PLAIN};
    memset(fs, 0, sizeof *fs);
    for (int f = 0; f < PERSONAS_BASEF; f++) {
        fs->kind[f] = kinds[f];
        snprintf(fs->name[f], sizeof fs->name[f], "%s", names[f]);
        snprintf(fs->label[f], sizeof fs->label[f], "%s", names[f]);
    }
    fs->n = PERSONAS_BASEF;
}

static void add_feat(personas_feats *fs, int kind, const char *prefix, const char *label,
                     size_t len)
{
    int f = fs->n++;
    if (len > 40)
        len = 40;
    fs->kind[f] = (uint8_t)kind;
    snprintf(fs->label[f], sizeof fs->label[f], "%.*s", (int)len, label);
    snprintf(fs->name[f], sizeof fs->name[f], "%s%.*s", prefix, (int)len, label);
}

/* The (at most `top`) codes 1..n with the largest positive total, largest first (code
 * order on ties), into out; their number. */
static int top_codes(const double *total, uint32_t n, int top, uint32_t *out)
{
    int got = 0;
    for (uint32_t c = 1; c <= n; c++) {
        if (!(total[c] > 0) || (got == top && !(total[c] > total[out[top - 1]])))
            continue;
        int i = got < top ? got++ : top - 1; /* full: the smallest makes room */
        while (i > 0 && total[c] > total[out[i - 1]]) {
            out[i] = out[i - 1];
            i--;
        }
        out[i] = c;
    }
    return got;
}

/* The slot of code c among the chosen codes, or -1. */
static int slot_of(const int *slot, uint32_t c, uint32_t n)
{
    return c && c <= n ? slot[c] : -1;
}

typedef struct feat_plan {
    uint32_t ncat, nch, nmsg;
    int *cat_slot, *ch_slot, *msg_slot; /* code -> feature index, -1 */
    uint32_t sent, clicked, converted;  /* message action codes (0 = none) */
    int redeem;                         /* feature index, -1 */
} feat_plan;

static void plan_release(feat_plan *p)
{
    mem_free(p->cat_slot), mem_free(p->ch_slot), mem_free(p->msg_slot);
}

/* Chooses the optional features from what the eligible members' data holds. */
static int plan_features(const patron_db *db, const mview *v, int64_t now,
                         const uint8_t *eligible, personas_feats *fs, feat_plan *p)
{
    personas_feats_base(fs);
    memset(p, 0, sizeof *p);
    p->redeem = -1;
    p->ncat = v->items_dict[DB_DICT_CATEGORY].n;
    p->nch = v->items_dict[DB_DICT_CHANNEL].n;
    p->nmsg = v->estr.n;
    p->sent = strdict_find(&v->estr, "sent", 4);
    p->clicked = strdict_find(&v->estr, "clicked", 7);
    p->converted = strdict_find(&v->estr, "converted", 9);
    p->cat_slot = mem_alloc_array(p->ncat + 1, sizeof(int));
    p->ch_slot = mem_alloc_array(p->nch + 1, sizeof(int));
    p->msg_slot = mem_alloc_array(p->nmsg + 1, sizeof(int));
    double *cat = mem_calloc(p->ncat + 1, sizeof(double));
    double *ch = mem_calloc(p->nch + 1, sizeof(double));
    double *msg = mem_calloc(p->nmsg + 1, sizeof(double));
    if (!p->cat_slot || !p->ch_slot || !p->msg_slot || !cat || !ch || !msg) {
        mem_free(cat), mem_free(ch), mem_free(msg);
        plan_release(p);
        return -1;
    }
    const stream *it = &v->streams[ST_ITEMS], *od = &v->streams[ST_ORDERS],
                 *ms = &v->streams[ST_MESSAGES], *rd = &v->streams[ST_REDEMPTIONS];
    const uint32_t *it_item = it->col[1], *od_order = od->col[1], *ms_ch = ms->col[2],
                   *ms_act = ms->col[3];
    const int64_t *it_amount = it->col[2];
    size_t redemptions = 0;
    for (uint32_t m = 0; m < v->n && m < db->n_members; m++) {
        if (!eligible[m])
            continue;
        for (uint32_t r = it->beg[m]; r < it->end[m] && it->ts[r] <= now; r++)
            cat[v->it_cat[it_item[r]]] += (double)it_amount[r];
        for (uint32_t r = od->beg[m]; r < od->end[m] && od->ts[r] <= now; r++)
            ch[db->o_channel[od_order[r]]] += 1;
        for (uint32_t r = ms->beg[m]; r < ms->end[m] && ms->ts[r] <= now; r++)
            if (p->sent && ms_act[r] == p->sent)
                msg[ms_ch[r]] += 1;
        for (uint32_t r = rd->beg[m]; r < rd->end[m] && rd->ts[r] <= now; r++)
            redemptions++;
    }
    uint32_t top[TOP_CATEGORIES];
    for (uint32_t c = 0; c <= p->ncat; c++)
        p->cat_slot[c] = -1;
    for (uint32_t c = 0; c <= p->nch; c++)
        p->ch_slot[c] = -1;
    for (uint32_t c = 0; c <= p->nmsg; c++)
        p->msg_slot[c] = -1;
    /* Shares say something only when there are at least two categories (channels). */
    int n = top_codes(cat, p->ncat, TOP_CATEGORIES, top);
    size_t len;
    for (int i = 0; i < n && n > 1; i++) {
        p->cat_slot[top[i]] = fs->n;
        const char *s = strdict_str(&v->items_dict[DB_DICT_CATEGORY], top[i], &len);
        add_feat(fs, PF_CATEGORY, "category_share:", s, len);
    }
    n = top_codes(ch, p->nch, TOP_CHANNELS, top);
    for (int i = 0; i < n && n > 1; i++) {
        p->ch_slot[top[i]] = fs->n;
        const char *s = strdict_str(&v->items_dict[DB_DICT_CHANNEL], top[i], &len);
        add_feat(fs, PF_CHANNEL, "channel_share:", s, len);
    }
    n = top_codes(msg, p->nmsg, TOP_MESSAGE_CHANNELS, top);
    for (int i = 0; i < n; i++) {
        p->msg_slot[top[i]] = fs->n;
        const char *s = strdict_str(&v->estr, top[i], &len);
        add_feat(fs, PF_RESPONSE, "response_rate:", s, len);
    }
    if (redemptions) {
        p->redeem = fs->n;
        add_feat(fs, PF_REDEEM, "", "redemptions_365d", 16);
    }
    mem_free(cat), mem_free(ch), mem_free(msg);
    return 0;
}

int personas_features(patron_db *db, int64_t now, const uint8_t *eligible,
                      personas_feats *fs, double **rows, uint32_t **members, size_t *n,
                      patron_error *err)
{
    *rows = NULL;
    *members = NULL;
    *n = 0;
    int vrc = db_view_ensure(db, err);
    if (vrc)
        return vrc;
    if (db_csr_build(db) != PATRON_OK)
        return err_set(err, PATRON_ENOMEM, "out of memory");
    const mview *v = db->view;
    feat_plan p;
    if (plan_features(db, v, now, eligible, fs, &p))
        return err_set(err, PATRON_ENOMEM, "out of memory");
    const size_t d = (size_t)fs->n;
    size_t nm = db->n_members, cnt = 0;
    for (size_t m = 0; m < nm; m++)
        cnt += eligible[m] != 0;
    double *X = mem_calloc(cnt ? cnt * d : 1, sizeof *X);
    uint32_t *mem = mem_alloc_array(cnt ? cnt : 1, sizeof *mem);
    double *sent = mem_calloc(d, sizeof *sent);
    if (!X || !mem || !sent) {
        mem_free(X), mem_free(mem), mem_free(sent);
        plan_release(&p);
        return err_set(err, PATRON_ENOMEM, "out of memory");
    }
    const stream *it = &v->streams[ST_ITEMS], *od = &v->streams[ST_ORDERS],
                 *ms = &v->streams[ST_MESSAGES], *rd = &v->streams[ST_REDEMPTIONS];
    const uint32_t *it_item = it->col[1], *od_order = od->col[1], *ms_ch = ms->col[2],
                   *ms_act = ms->col[3];
    const int64_t *it_amount = it->col[2];
    size_t i = 0;
    for (uint32_t m = 0; m < nm; m++) {
        if (!eligible[m])
            continue;
        int64_t first = PATRON_NULL_TS, last = PATRON_NULL_TS, freq = 0, money = 0;
        for (uint32_t k = db->csr_off[m]; k < db->csr_off[m + 1]; k++) {
            uint32_t o = db->csr_ord[k];
            if (db->o_ts[o] > now)
                break;
            if (db->o_void[o])
                continue;
            money += db->o_amount[o];
            if (db->o_kind[o] == 0) {
                if (first == PATRON_NULL_TS)
                    first = db->o_ts[o];
                last = db->o_ts[o];
                freq++;
            }
        }
        int64_t since = db->enrolled_at[m] != PATRON_NULL_TS ? db->enrolled_at[m] : first;
        if (since == PATRON_NULL_TS || (first != PATRON_NULL_TS && first < since))
            since = first;
        double *r = X + i * d;
        double mon = (double)money / PATRON_MONEY_SCALE;
        r[F_MONETARY] = mon;
        r[F_FREQUENCY] = (double)freq;
        r[F_RECENCY] = last == PATRON_NULL_TS ? 0.0 : (double)(now - last) / TIME_DAY;
        r[F_AOV] = freq ? mon / (double)freq : 0.0;
        r[F_TENURE] = since == PATRON_NULL_TS ? 0.0 : (double)(now - since) / TIME_DAY;
        if (m < v->n) {
            double total = 0;
            for (uint32_t q = it->beg[m]; q < it->end[m] && it->ts[q] <= now; q++) {
                total += (double)it_amount[q];
                int f = slot_of(p.cat_slot, v->it_cat[it_item[q]], p.ncat);
                if (f >= 0)
                    r[f] += (double)it_amount[q];
            }
            double orders = 0;
            for (uint32_t q = od->beg[m]; q < od->end[m] && od->ts[q] <= now; q++) {
                orders += 1;
                int f = slot_of(p.ch_slot, db->o_channel[od_order[q]], p.nch);
                if (f >= 0)
                    r[f] += 1;
            }
            memset(sent, 0, d * sizeof *sent);
            for (uint32_t q = ms->beg[m]; q < ms->end[m] && ms->ts[q] <= now; q++) {
                int f = slot_of(p.msg_slot, ms_ch[q], p.nmsg);
                if (f < 0)
                    continue;
                if (ms_act[q] == p.sent)
                    sent[f] += 1;
                else if (ms_act[q] && (ms_act[q] == p.clicked || ms_act[q] == p.converted))
                    r[f] += 1;
            }
            if (p.redeem >= 0)
                for (uint32_t q = rd->beg[m]; q < rd->end[m] && rd->ts[q] <= now; q++)
                    r[p.redeem] += rd->ts[q] > now - 365 * TIME_DAY;
            for (int f = PERSONAS_BASEF; f < fs->n; f++) {
                double *x = &r[f];
                if (fs->kind[f] == PF_CATEGORY)
                    *x = total > 0 ? *x / total : 0.0;
                else if (fs->kind[f] == PF_CHANNEL)
                    *x = orders > 0 ? *x / orders : 0.0;
                else if (fs->kind[f] == PF_RESPONSE)
                    *x = sent[f] > 0 ? (*x < sent[f] ? *x / sent[f] : 1.0) : 0.0;
            }
        }
        mem[i++] = m;
    }
    mem_free(sent);
    plan_release(&p);
    *rows = X;
    *members = mem;
    *n = cnt;
    return PATRON_OK;
}

static double transform(int kind, double v)
{
    return kind == PF_LOG || kind == PF_REDEEM ? log1p(v > 0 ? v : 0) : v;
}

/* Centroid order for ids: larger standardized spend first, then frequency, recency
 * (recent first), aov, tenure, then the other features in order. */
static const persona *sort_base;
static int sort_nfeat;
static int cmp_persona(const void *a, const void *b)
{
    const persona *x = &sort_base[*(const int *)a], *y = &sort_base[*(const int *)b];
    for (int f = 0; f < sort_nfeat; f++) {
        double u = f == F_RECENCY ? -x->centre_z[f] : x->centre_z[f];
        double v = f == F_RECENCY ? -y->centre_z[f] : y->centre_z[f];
        if (u != v)
            return u > v ? -1 : 1;
    }
    return *(const int *)a - *(const int *)b;
}

/* The feature of `kind` with the largest standardized centroid value, when it is at
 * least th; else -1. */
static int standout(const personas_feats *fs, const double *z, int kind, double th)
{
    int best = -1;
    for (int f = PERSONAS_BASEF; f < fs->n; f++)
        if (fs->kind[f] == kind && z[f] >= th && (best < 0 || z[f] > z[best]))
            best = f;
    return best;
}

static void describe(const personas_feats *fs, persona *p)
{
    const double th = 0.5;
    const double *z = p->centre_z;
    char head[120] = "", tail[240] = "";
    size_t hn = 0, tn = 0;
#define ADD(buf, n, word) (n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s", n ? " " : "", word))
    if (z[F_FREQUENCY] >= th)
        ADD(head, hn, "frequent");
    else if (z[F_FREQUENCY] <= -th)
        ADD(head, hn, "occasional");
    if (z[F_MONETARY] >= th)
        ADD(head, hn, "high-spend");
    else if (z[F_MONETARY] <= -th)
        ADD(head, hn, "low-spend");
    if (z[F_AOV] >= th)
        ADD(head, hn, "big-basket");
    else if (z[F_AOV] <= -th)
        ADD(head, hn, "small-basket");
    int f = standout(fs, z, PF_CHANNEL, th);
    if (f >= 0 && hn < sizeof head - 50)
        ADD(head, hn, fs->label[f]);
#undef ADD
#define ADDT(...) (tn += (size_t)snprintf(tail + tn, tn < sizeof tail ? sizeof tail - tn : 0, __VA_ARGS__))
    if ((f = standout(fs, z, PF_CATEGORY, th)) >= 0)
        ADDT(", %s %s", p->centre[f] >= 0.5 ? "mostly" : "often", fs->label[f]);
    if (z[F_RECENCY] <= -th)
        ADDT(", recent");
    else if (z[F_RECENCY] >= th)
        ADDT(", lapsed");
    if (z[F_TENURE] >= th)
        ADDT(", long-standing");
    else if (z[F_TENURE] <= -th)
        ADDT(", newly joined");
    if ((f = standout(fs, z, PF_RESPONSE, th)) >= 0) {
        ADDT(", respond to %s", fs->label[f]);
    } else {
        int any = 0, quiet = 1;
        for (int g = PERSONAS_BASEF; g < fs->n; g++)
            if (fs->kind[g] == PF_RESPONSE)
                any = 1, quiet &= z[g] <= -th;
        if (any && quiet)
            ADDT(", rarely respond to messages");
    }
    for (int g = PERSONAS_BASEF; g < fs->n; g++)
        if (fs->kind[g] == PF_REDEEM && z[g] >= th)
            ADDT(", redeem rewards");
#undef ADDT
    /* a description longer than its field is cut there (checked, so that the
     * compiler's truncation warning does not fire in -O0 sanitizer builds) */
    int w = snprintf(p->description, sizeof p->description, "%s shoppers%s", hn ? head : "typical",
                     tail);
    if (w < 0 || (size_t)w >= sizeof p->description)
        p->description[sizeof p->description - 1] = 0;
}

int personas_fit(const double *raw, size_t n, const personas_feats *fs, int k, uint64_t seed,
                 personas_model *pm, int16_t *id, patron_error *err)
{
    memset(pm, 0, sizeof *pm);
    if (k < 0 || k > PERSONAS_MAXK || k == 1)
        return err_set(err, PATRON_EUSAGE, "personas: k must be 2..%d or auto", PERSONAS_MAXK);
    if (n < (size_t)(k ? k : 2) || n < 2)
        return err_set(err, PATRON_EINPUT, "personas: %zu members with orders and profiling "
                       "consent; at least %d are needed", n, k ? k : 2);
    if (fs->n < PERSONAS_BASEF || fs->n > PERSONAS_MAXF)
        return err_set(err, PATRON_EINTERNAL, "personas: %d features", fs->n);
    pm->feat = *fs;
    const size_t d = (size_t)fs->n;
    double *Z = mem_alloc_array(n * d, sizeof *Z);
    uint32_t *assign = mem_alloc_array(n, sizeof *assign);
    double centers[PERSONAS_MAXK * PERSONAS_MAXF];
    if (!Z || !assign) {
        mem_free(Z), mem_free(assign);
        return err_set(err, PATRON_ENOMEM, "out of memory");
    }
    for (size_t f = 0; f < d; f++) {
        double m = 0, m2 = 0;
        for (size_t i = 0; i < n; i++)
            m += transform(fs->kind[f], raw[i * d + f]);
        m /= (double)n;
        for (size_t i = 0; i < n; i++) {
            double t = transform(fs->kind[f], raw[i * d + f]) - m;
            m2 += t * t;
        }
        double sd = sqrt(m2 / (double)n);
        pm->mean[f] = m;
        pm->sd[f] = sd > 0 ? sd : 1.0;
        for (size_t i = 0; i < n; i++)
            Z[i * d + f] = (transform(fs->kind[f], raw[i * d + f]) - m) / pm->sd[f];
    }
    int rc = PATRON_OK;
    pm->silhouette = NAN;
    if (k == 0) {
        pm->k_auto = 1;
        /* A deterministic sample of at most 20,000 rows (selection sampling). */
        size_t ns = n < 20000 ? n : 20000, got = 0;
        double *S = mem_alloc_array(ns * d, sizeof *S);
        uint32_t *sa = mem_alloc_array(ns, sizeof *sa);
        if (!S || !sa) {
            mem_free(S), mem_free(sa);
            rc = err_set(err, PATRON_ENOMEM, "out of memory");
            goto out;
        }
        rng g;
        rng_seed(&g, seed ^ 0x5eed5a3b1e5ULL);
        for (size_t i = 0; i < n && got < ns; i++)
            if ((double)(n - i) * rng_double(&g) < (double)(ns - got))
                memcpy(S + d * got++, Z + i * d, d * sizeof *S);
        double best = -2.0;
        int kmax = got < (size_t)PERSONAS_MAXK ? (int)got : PERSONAS_MAXK;
        for (int kk = 2; kk <= kmax && rc == PATRON_OK; kk++) {
            kmeans_opts o;
            kmeans_opts_init(&o, kk);
            o.restarts = 3;
            o.seed = seed;
            double in;
            rc = kmeans_fit(S, got, d, &o, centers, sa, &in, err);
            if (rc == PATRON_OK) {
                double s = kmeans_silhouette(S, got, d, sa, kk, 2000, seed);
                if (s > best + 1e-12) {
                    best = s;
                    k = kk;
                }
            }
        }
        mem_free(S), mem_free(sa);
        pm->silhouette = best;
        if (rc)
            goto out;
    }
    kmeans_opts o;
    kmeans_opts_init(&o, k);
    o.restarts = 4;
    o.seed = seed;
    if ((rc = kmeans_fit(Z, n, d, &o, centers, assign, &pm->inertia, err)))
        goto out;
    pm->k = k;
    pm->seed = seed;
    pm->members = n;
    persona tmp[PERSONAS_MAXK];
    memset(tmp, 0, sizeof tmp);
    for (int c = 0; c < k; c++)
        memcpy(tmp[c].centre_z, centers + (size_t)c * d, d * sizeof(double));
    for (size_t i = 0; i < n; i++) {
        persona *p = &tmp[assign[i]];
        p->size++;
        for (size_t f = 0; f < d; f++)
            p->centre[f] += raw[i * d + f];
    }
    int order[PERSONAS_MAXK], rank[PERSONAS_MAXK];
    for (int c = 0; c < k; c++)
        order[c] = c;
    sort_base = tmp;
    sort_nfeat = fs->n;
    qsort(order, (size_t)k, sizeof *order, cmp_persona);
    for (int r = 0; r < k; r++) {
        persona *p = &pm->p[r];
        *p = tmp[order[r]];
        rank[order[r]] = r;
        for (size_t f = 0; f < d; f++)
            p->centre[f] = p->size ? p->centre[f] / (double)p->size : NAN;
        describe(fs, p);
    }
    for (size_t i = 0; i < n; i++)
        id[i] = (int16_t)(1 + rank[assign[i]]);
out:
    mem_free(Z), mem_free(assign);
    return rc;
}
