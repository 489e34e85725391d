/*
 * cmd_bench.c -- `patron bench-rules FILE`: times the compiled evaluator on every rule of
 * a benchmark file (bench/rules.txt: a rule line, then its SQL line) over all members.
 * Used by bench/rules.sh; prints one JSON object.
 */
#include "cli/cli.h"

#include "core/db.h"
#include "rules/eval.h"
#include "segments/segments.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* in_segment("vip") in the benchmark rules: monetary > 1000. */
static int bench_segment(void *ctx, const char *name, const char **text, const void **members)
{
    (void)ctx;
    *members = NULL;
    if (strcmp(name, "vip") != 0)
        return 0;
    *text = "monetary > 1000";
    return 1;
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int cmd_bench_rules(cli_ctx *ctx, int argc, char **argv)
{
    const char *file = NULL;
    uint64_t repeat = 5, threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *v;
        int r;
        if (cli_is_help(argv[i])) {
            printf("usage: patron bench-rules FILE [--repeat K] [--threads N]\n");
            return CLI_OK;
        } else if ((r = cli_opt(argc, argv, &i, "--repeat", &v)) != 0) {
            if (r < 0 || cli_parse_u64("--repeat", v, &repeat) || repeat == 0 || repeat > 1000)
                return CLI_USAGE;
        } else if ((r = cli_opt(argc, argv, &i, "--threads", &v)) != 0) {
            if (r < 0 || cli_parse_u64("--threads", v, &threads) || threads > 64)
                return CLI_USAGE;
        } else if (!file) {
            file = argv[i];
        } else {
            cli_errorf("bench-rules: unexpected argument '%s'", argv[i]);
            return CLI_USAGE;
        }
    }
    if (!file) {
        cli_errorf("usage: patron bench-rules FILE [--repeat K]");
        return CLI_USAGE;
    }
    FILE *f = fopen(file, "r");
    if (!f) {
        cli_errorf("cannot open '%s'", file);
        return CLI_NOTFOUND;
    }
    double t0 = now_s();
    patron_db *db;
    int rc = cli_open_db(ctx, &db);
    if (rc) {
        fclose(f);
        return rc;
    }
    double t1 = now_s();
    patron_error err = {0};
    if (db_view_ensure(db, &err) != PATRON_OK) {
        fclose(f);
        patron_close(db);
        return cli_fail(&err);
    }
    double t2 = now_s();
    char vh[24];
    snprintf(vh, sizeof vh, "%016llx", (unsigned long long)view_hash(db));
    json_t *out = json_pack("{s:f,s:f,s:I,s:s}", "open_s", t1 - t0, "view_s", t2 - t1, "members",
                            (json_int_t)db->n_members, "view_hash", vh);
    json_t *arr = json_array();
    char line[8192];
    int want_rule = 1;
    rule_env env = {db, bench_segment, NULL};
    double *ms = calloc(repeat, sizeof *ms);
    roaring_bitmap_t *b = roaring_bitmap_create();
    while (rc == 0 && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '#' || line[0] == '\0')
            continue;
        if (!want_rule) {
            want_rule = 1;
            continue;
        }
        want_rule = 0;
        rule *r;
        if (rule_compile(line, &env, &r, &err) != PATRON_OK) {
            rc = cli_fail(&err);
            break;
        }
        for (uint64_t k = 0; k < repeat; k++) {
            double a = now_s();
            if (rule_eval_all(r, db, ctx->now, (int)threads, b, &err) != PATRON_OK) {
                rc = cli_fail(&err);
                break;
            }
            ms[k] = (now_s() - a) * 1000;
        }
        double first = ms[0]; /* builds the indexes the rule needs, if any */
        qsort(ms, repeat, sizeof *ms, cmp_dbl);
        json_array_append_new(arr, json_pack("{s:s,s:I,s:f,s:f,s:f}", "rule", line, "count",
                                             (json_int_t)roaring_bitmap_get_cardinality(b),
                                             "ms_min", ms[0], "ms_median", ms[repeat / 2],
                                             "ms_first", first));
        rule_free(r);
    }
    fclose(f);
    free(ms);
    roaring_bitmap_free(b);
    patron_close(db);
    json_object_set_new(out, "rules", arr);
    if (rc == 0) {
        char *t = json_dumps(out, JSON_INDENT(1));
        printf("%s\n", t);
        free(t);
    }
    json_decref(out);
    return rc;
}

static int cmp_d2(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/*
 * `patron bench-live EVENTS.jsonl --rules FILE [--segments 50] [--batch 1000]
 * [--count 200000] [--days 1]`: live segments under a stream of events.  Creates the segments
 * (the rules of FILE, cycled; "vip" first), builds their live state, then feeds the
 * events through patron_events_add() in batches, bringing every segment current after
 * each batch (patron_segments_sync), and finally advances the clock by one day at a time
 * for --days days (the first day and the mean over all are reported).  Event
 * ids get a prefix so a data set's own events count as new.  Works on the database given
 * with --db: use a copy.
 */
int cmd_bench_live(cli_ctx *ctx, int argc, char **argv)
{
    const char *file = NULL, *rules = NULL;
    uint64_t nseg = 50, batch = 1000, count = 200000, days = 1;
    for (int i = 1; i < argc; i++) {
        const char *v;
        int r;
        if (cli_is_help(argv[i])) {
            printf("usage: patron bench-live EVENTS.jsonl --rules FILE [--segments N] [--batch N] "
                   "[--count N] [--days N]\n");
            return CLI_OK;
        } else if ((r = cli_opt(argc, argv, &i, "--rules", &v)) != 0) {
            if (r < 0)
                return CLI_USAGE;
            rules = v;
        } else if ((r = cli_opt(argc, argv, &i, "--segments", &v)) != 0) {
            if (r < 0 || cli_parse_u64("--segments", v, &nseg) || nseg == 0 || nseg > 1000)
                return CLI_USAGE;
        } else if ((r = cli_opt(argc, argv, &i, "--batch", &v)) != 0) {
            if (r < 0 || cli_parse_u64("--batch", v, &batch) || batch == 0)
                return CLI_USAGE;
        } else if ((r = cli_opt(argc, argv, &i, "--days", &v)) != 0) {
            if (r < 0 || cli_parse_u64("--days", v, &days) || days == 0 || days > 3650)
                return CLI_USAGE;
        } else if ((r = cli_opt(argc, argv, &i, "--count", &v)) != 0) {
            if (r < 0 || cli_parse_u64("--count", v, &count) || count == 0)
                return CLI_USAGE;
        } else if (!file) {
            file = argv[i];
        } else {
            cli_errorf("bench-live: unexpected argument '%s'", argv[i]);
            return CLI_USAGE;
        }
    }
    if (!file || !rules) {
        cli_errorf("usage: patron bench-live EVENTS.jsonl --rules FILE [--segments N]");
        return CLI_USAGE;
    }
    /* the rule lines of FILE */
    FILE *rf = fopen(rules, "r");
    if (!rf) {
        cli_errorf("cannot open '%s'", rules);
        return CLI_NOTFOUND;
    }
    char *texts[256];
    int nt = 0, want = 1;
    char line[8192];
    while (fgets(line, sizeof line, rf) && nt < 256) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '#' || !line[0])
            continue;
        if (want)
            texts[nt++] = strdup(line);
        want = !want;
    }
    fclose(rf);
    FILE *ef = fopen(file, "r");
    if (!ef) {
        cli_errorf("cannot open '%s'", file);
        return CLI_NOTFOUND;
    }
    patron_db *db;
    int rc = cli_open_db(ctx, &db);
    if (rc) {
        fclose(ef);
        return rc;
    }
    patron_error err = {0};
    double t0 = now_s();
    if (db_view_ensure(db, &err) != PATRON_OK || segments_load(db, &err) != PATRON_OK ||
        cli_attach(ctx, db, &err) != PATRON_OK)
        goto fail;
    double t1 = now_s();
    if (!segment_find(db, "vip") && segment_create(db, "vip", "monetary > 1000", ctx->now, &err))
        goto fail;
    for (uint64_t i = 0; i < nseg; i++) {
        char name[32];
        snprintf(name, sizeof name, "live_%03llu", (unsigned long long)i);
        if (!segment_find(db, name) && segment_create(db, name, texts[i % (uint64_t)nt], ctx->now, &err))
            goto fail;
    }
    double t2 = now_s();
    if (segments_sync(db, ctx->now, &err)) /* builds every expiry index */
        goto fail;
    double t3 = now_s();
    size_t cap = batch * 512, len = 0;
    char *buf = malloc(cap);
    double *lat = calloc(count / batch + 2, sizeof *lat);
    uint64_t done = 0, nb = 0, dups = 0;
    double tin = 0, t_add = 0, first_ms = 0, steady = 0;
    uint64_t steady_n = 0;
    char l[65536];
    while (done < count && buf && lat) {
        len = 0;
        uint64_t k = 0;
        while (k < batch && done + k < count && fgets(l, sizeof l, ef)) {
            /* a new id for every event: "event_id":"X -> "event_id":"LX */
            char *p = strstr(l, "\"event_id\":\"");
            size_t ln = strlen(l);
            if (len + ln + 2 > cap)
                break;
            if (p) {
                size_t pre = (size_t)(p - l) + 12;
                memcpy(buf + len, l, pre);
                buf[len + pre] = 'L';
                memcpy(buf + len + pre + 1, l + pre, ln - pre);
                len += ln + 1;
            } else {
                memcpy(buf + len, l, ln);
                len += ln;
            }
            k++;
        }
        if (k == 0)
            break;
        patron_import_opts o;
        patron_import_opts_init(&o);
        o.now = ctx->now;
        o.max_errors = (long)k; /* generator lines are good; a few may repeat an order id */
        patron_import_result res;
        double a = now_s();
        int bad = patron_events_add(db, "stream", buf, len, &o, &res, &err) != PATRON_OK;
        double am = now_s();
        t_add += am - a;
        if (bad || patron_segments_sync(db, ctx->now, &err) != PATRON_OK) {
            free(buf);
            free(lat);
            goto fail;
        }
        double b = now_s();
        if (nb == 0)
            first_ms = (b - a) * 1000; /* loads the order-id index etc.: reported apart */
        else
            steady += b - a, steady_n += k;
        lat[nb++] = (b - a) * 1000;
        tin += b - a;
        done += k;
        dups += res.duplicates + res.bad_rows;
    }
    free(buf);
    /* one day later: only members whose windows move are evaluated */
    uint64_t ev0 = 0, ev1 = 0;
    uint64_t *seg_ev0 = calloc(db->segs->n + 1, sizeof *seg_ev0);
    for (size_t i = 0; i < db->segs->n; i++)
        ev0 += seg_ev0[i] = db->segs->s[i].evaluated;
    double ta = now_s();
    if (segments_sync(db, ctx->now + 86400, &err)) {
        free(lat);
        free(seg_ev0);
        goto fail;
    }
    double tb = now_s();
    for (size_t i = 0; i < db->segs->n; i++)
        ev1 += db->segs->s[i].evaluated;
    /* the days after: the steady cost of time passing */
    double tdays = tb - ta;
    uint64_t evdays;
    for (uint64_t d = 1; d < days; d++) {
        double tc = now_s();
        if (segments_sync(db, ctx->now + 86400 * (int64_t)(d + 1), &err)) {
            free(lat);
            free(seg_ev0);
            goto fail;
        }
        tdays += now_s() - tc;
    }
    uint64_t ev_end = 0;
    for (size_t i = 0; i < db->segs->n; i++)
        ev_end += db->segs->s[i].evaluated;
    evdays = ev_end - ev0;
    qsort(lat, nb, sizeof *lat, cmp_d2);
    json_t *out = json_pack("{s:I,s:I,s:f,s:f,s:f,s:I,s:I,s:I,s:f,s:f,s:f,s:f,s:f,s:I}", "members",
                            (json_int_t)db->n_members, "segments", (json_int_t)db->segs->n, "view_s",
                            t1 - t0, "create_s", t2 - t1, "index_s", t3 - t2, "events",
                            (json_int_t)done, "batch", (json_int_t)batch, "skipped", (json_int_t)dups,
                            "events_per_s", (double)done / (tin > 0 ? tin : 1), "batch_ms_p50",
                            nb ? lat[nb / 2] : 0.0, "batch_ms_p99", nb ? lat[(nb * 99) / 100] : 0.0,
                            "advance_1d_ms", (tb - ta) * 1000, "index_ms_per_segment",
                            (t3 - t2) * 1000 / (double)db->segs->n, "advance_evaluations", (json_int_t)(ev1 - ev0));
    free(lat);
    /* The advance's evaluations per rule (segments with the same rule added up). */
    json_t *by = json_object();
    for (size_t i = 0; i < db->segs->n; i++) {
        const segment *g = &db->segs->s[i];
        json_t *c = json_object_get(by, g->rule ? g->rule : g->name);
        json_int_t n = (json_int_t)(g->evaluated - seg_ev0[i]) + (c ? json_integer_value(c) : 0);
        json_object_set_new(by, g->rule ? g->rule : g->name, json_integer(n));
    }
    free(seg_ev0);
    json_object_set_new(out, "advance_evaluations_by_rule", by);
    json_object_set_new(out, "advance_days", json_integer((json_int_t)days));
    json_object_set_new(out, "advance_mean_ms", json_real(tdays * 1000 / (double)days));
    json_object_set_new(out, "advance_mean_evaluations", json_real((double)evdays / (double)days));
    json_object_set_new(out, "add_s", json_real(t_add));
    json_object_set_new(out, "first_batch_ms", json_real(first_ms));
    json_object_set_new(out, "steady_events_per_s", json_real((double)steady_n / (steady > 0 ? steady : 1)));
    json_object_set_new(out, "sync_s", json_real(tin - t_add));
    char *t = json_dumps(out, JSON_INDENT(1));
    printf("%s\n", t);
    free(t);
    json_decref(out);
    fclose(ef);
    for (int i = 0; i < nt; i++)
        free(texts[i]);
    patron_close(db);
    return CLI_OK;
fail:
    fclose(ef);
    for (int i = 0; i < nt; i++)
        free(texts[i]);
    patron_close(db);
    return cli_fail(&err);
}
