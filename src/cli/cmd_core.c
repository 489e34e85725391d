/*
 * cmd_core.c -- `patron import`, `patron stats`, `patron member show`, `patron features`
 * and `patron demo`: thin wrappers over the library that parse options and print.
 */
#include "cli/cli.h"

#include "base/err.h"
#include "base/num.h"
#include "base/time.h"
#include "core/db.h"
#include "ingest/generate.h"
#include "loyalty/loyalty.h"
#include "members/view.h"
#include "models/models.h"
#include "segments/segments.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void print_report(void *ctx, const char *msg)
{
    (void)ctx;
    fprintf(stderr, "%s\n", msg);
}

static void progress(void *ctx, uint64_t done, uint64_t total)
{
    (void)ctx;
    if (total)
        fprintf(stderr, "\rimporting: %3d%%", (int)(100.0 * (double)done / (double)total));
}

static int do_import(cli_ctx *ctx, patron_db *db, patron_import_kind kind, const char *file,
                     patron_import_opts *o)
{
    patron_import_result res;
    patron_error err = {0};
    o->report = print_report;
    if (!ctx->quiet && isatty(2))
        o->progress = progress;
    int rc = patron_import(db, kind, file, o, &res, &err);
    if (o->progress)
        fprintf(stderr, "\r              \r");
    if (rc != PATRON_OK)
        return cli_fail(&err);
    if (ctx->json)
        printf("{\"rows\":%llu,\"inserted\":%llu,\"items\":%llu,\"duplicates\":%llu,"
               "\"bad_rows\":%llu,\"members_created\":%llu,\"updated\":%llu}\n",
               (unsigned long long)res.rows, (unsigned long long)res.inserted,
               (unsigned long long)res.items, (unsigned long long)res.duplicates,
               (unsigned long long)res.bad_rows, (unsigned long long)res.members_created,
               (unsigned long long)res.updated);
    else if (!ctx->quiet)
        printf("%s: %llu rows, %llu new, %llu updated, %llu line items, %llu duplicates, "
               "%llu members created\n",
               file, (unsigned long long)res.rows, (unsigned long long)res.inserted,
               (unsigned long long)res.updated, (unsigned long long)res.items,
               (unsigned long long)res.duplicates, (unsigned long long)res.members_created);
    if (res.bad_rows)
        cli_errorf("warning: %llu bad rows written to %s", (unsigned long long)res.bad_rows,
                   res.rejects_path);
    return CLI_OK;
}

int cmd_import(cli_ctx *ctx, int argc, char **argv)
{
    patron_import_opts o;
    patron_import_opts_init(&o);
    const char *what = NULL, *file = NULL;
    for (int i = 1; i < argc; i++) {
        const char *v;
        int r;
        if (cli_is_help(argv[i])) {
            printf("usage: patron import members|orders|events FILE [--map FIELD=COLUMN,...]\n"
                   "       [--delimiter C] [--max-errors N] [--rejects PATH]\n");
            return CLI_OK;
        } else if ((r = cli_opt(argc, argv, &i, "--map", &v)) != 0) {
            if (r < 0)
                return CLI_USAGE;
            o.map = v;
        } else if ((r = cli_opt(argc, argv, &i, "--delimiter", &v)) != 0) {
            if (r < 0)
                return CLI_USAGE;
            o.delimiter = strcmp(v, "\\t") == 0 || strcmp(v, "tab") == 0 ? '\t' : v[0];
        } else if ((r = cli_opt(argc, argv, &i, "--max-errors", &v)) != 0) {
            uint64_t n;
            if (r < 0 || cli_parse_u64("--max-errors", v, &n))
                return CLI_USAGE;
            o.max_errors = (long)n;
        } else if ((r = cli_opt(argc, argv, &i, "--rejects", &v)) != 0) {
            if (r < 0)
                return CLI_USAGE;
            o.rejects_path = v;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            cli_errorf("import: unknown option '%s'", argv[i]);
            return CLI_USAGE;
        } else if (!what) {
            what = argv[i];
        } else if (!file) {
            file = argv[i];
        } else {
            cli_errorf("import: unexpected argument '%s'", argv[i]);
            return CLI_USAGE;
        }
    }
    if (!what || !file) {
        cli_errorf("usage: patron import members|orders|events FILE [options]");
        return CLI_USAGE;
    }
    patron_import_kind kind;
    if (strcmp(what, "orders") == 0)
        kind = PATRON_IMPORT_ORDERS;
    else if (strcmp(what, "members") == 0)
        kind = PATRON_IMPORT_MEMBERS;
    else if (strcmp(what, "events") == 0)
        kind = PATRON_IMPORT_EVENTS;
    else {
        cli_errorf("import: unknown kind '%s' (members, orders or events)", what);
        return CLI_USAGE;
    }
    o.now = ctx->now;
    if (strcmp(file, "-") != 0 && access(file, R_OK) != 0) {
        cli_errorf("cannot open '%s': no such file or not readable", file);
        return CLI_NOTFOUND;
    }
    patron_db *db;
    int rc;
    if (kind == PATRON_IMPORT_ORDERS) { /* the members load beside the parse (db.h) */
        patron_error err = {0, {0}};
        if (db_open_deferred(ctx->db_path, &db, &err) != PATRON_OK)
            return cli_fail(&err);
    } else if ((rc = cli_open_db(ctx, &db)) != 0) {
        return rc;
    }
    rc = do_import(ctx, db, kind, file, &o);
    if (rc == CLI_OK)
        rc = cli_refresh_segments(ctx, db);
    patron_close(db);
    return rc;
}

static void print_stats(cli_ctx *ctx, const patron_stats *s)
{
    char a[TIME_FMT_LEN] = "", b[TIME_FMT_LEN] = "", rev[NUM_FMT_LEN], mrev[NUM_FMT_LEN];
    if (s->first_ts != PATRON_NULL_TS) {
        time_format(s->first_ts, a);
        time_format(s->last_ts, b);
    }
    num_format_money(s->revenue, rev);
    num_format_money(s->member_revenue, mrev);
    double share = s->revenue ? (double)s->member_revenue / (double)s->revenue : 0.0;
    if (ctx->json) {
        printf("{\"members\":%llu,\"orders\":%llu,\"items\":%llu,\"returns\":%llu,"
               "\"guest_orders\":%llu,\"events\":%llu,\"first_ts\":\"%s\",\"last_ts\":\"%s\","
               "\"revenue\":%s,\"member_revenue\":%s,\"member_revenue_share\":%.6f}\n",
               (unsigned long long)s->members, (unsigned long long)s->orders,
               (unsigned long long)s->items, (unsigned long long)s->returns,
               (unsigned long long)s->guest_orders, (unsigned long long)s->events, a, b, rev, mrev,
               share);
        return;
    }
    printf("members            %llu\n", (unsigned long long)s->members);
    printf("orders             %llu (guest sales %llu)\n", (unsigned long long)s->orders,
           (unsigned long long)s->guest_orders);
    printf("line items         %llu\n", (unsigned long long)s->items);
    printf("returns            %llu\n", (unsigned long long)s->returns);
    printf("events             %llu\n", (unsigned long long)s->events);
    printf("date range         %s .. %s\n", a[0] ? a : "-", b[0] ? b : "-");
    printf("revenue (net)      %s\n", rev);
    printf("from members       %s (%.1f%%)\n", mrev, 100.0 * share);
}

int cmd_stats(cli_ctx *ctx, int argc, char **argv)
{
    if (argc > 1 && cli_is_help(argv[1])) {
        printf("usage: patron stats [--json]\n");
        return CLI_OK;
    }
    patron_db *db;
    int rc = cli_open_db(ctx, &db);
    if (rc)
        return rc;
    patron_stats s;
    patron_error err = {0};
    if ((rc = patron_stats_get(db, ctx->now, &s, &err)) == PATRON_OK)
        print_stats(ctx, &s);
    patron_close(db);
    return rc ? cli_fail(&err) : CLI_OK;
}

static double secs(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Prints member id's profile, behavioural, model and loyalty fields and segments as one
 * JSON object (the same for text and --json). */
static int print_member(cli_ctx *ctx, patron_db *db, const char *id)
{
    char *json;
    patron_error err = {0};
    int rc = patron_member_json(db, id, ctx->now, &json, &err);
    if (rc)
        return cli_fail(&err);
    json_error_t je;
    json_t *o = json_loads(json, 0, &je);
    free(json);
    json_t *segs = NULL;
    if ((rc = cli_member_segments(ctx, db, id, &segs)) != 0 || !o) {
        json_decref(o);
        json_decref(segs);
        return rc ? rc : CLI_INTERNAL;
    }
    json_object_set_new(o, "segments", segs);
    uint32_t m;
    if (hmap_get(&db->member_ids, id, strlen(id), &m)) {
        /* model fields of the last refresh (null without profiling consent) */
        models_state ms;
        if (models_load(db, &ms, &err) == PATRON_OK) {
            if (ms.as_of != PATRON_NULL_TS && !db_profiling_allowed(db, m, ctx->now)) {
                models_state_free(&ms);
                memset(&ms, 0, sizeof ms);
                ms.as_of = PATRON_NULL_TS;
            }
            models_member_json(&ms, m, o);
            models_state_free(&ms);
        }
        if (loyalty_refresh(db, &err) == PATRON_OK) {
            const char *tier = loyalty_tier(db, m, ctx->now);
            json_object_set_new(o, "points_balance", json_integer(loyalty_points_balance(db, m, ctx->now)));
            json_object_set_new(o, "points_earned_365d",
                                json_integer(loyalty_points_earned_365d(db, m, ctx->now)));
            json_object_set_new(o, "tier", tier && *tier ? json_string(tier) : json_null());
        }
    }
    char *t = json_dumps(o, JSON_SORT_KEYS | JSON_INDENT(2) | JSON_REAL_PRECISION(12));
    json_decref(o);
    printf("%s\n", t ? t : "{}");
    free(t);
    return t ? CLI_OK : CLI_INTERNAL;
}

int cmd_member(cli_ctx *ctx, int argc, char **argv)
{
    if (argc < 3 || cli_is_help(argv[1]) || strcmp(argv[1], "show") != 0) {
        printf("usage: patron member show MEMBER_ID [--json]\n");
        return argc > 1 && cli_is_help(argv[1]) ? CLI_OK : CLI_USAGE;
    }
    patron_db *db;
    int rc = cli_open_db(ctx, &db);
    if (rc)
        return rc;
    rc = print_member(ctx, db, argv[2]);
    patron_close(db);
    return rc;
}

/* The demo's second half: models, the classic segments, a day passing. */
static int demo_models_and_segments(cli_ctx *ctx, patron_db *db)
{
    patron_error err = {0};
    double t0 = secs();
    models_state ms;
    printf("== models (RFM, personas, BG/NBD + Gamma-Gamma)\n");
    if (models_refresh(db, ctx->now, &ms, &err) != PATRON_OK)
        return cli_fail(&err);
    printf("   %u members scored, personas: %s, CLV: %s (%.2f s)\n", ms.n,
           ms.have_personas ? "yes" : "no", ms.have_clv ? "yes" : "no", secs() - t0);
    models_state_free(&ms);
    personas_model pm;
    int64_t pas;
    if (models_personas_load(db, &pm, &pas, &err) == PATRON_OK) {
        printf("== personas (k-means over behaviour, categories, channels, responses)\n");
        for (int c = 0; c < pm.k; c++)
            printf("   %d  %6zu  %s\n", c + 1, pm.p[c].size, pm.p[c].description);
    }
    err_clear(&err);
    static const struct {
        const char *name, *rule;
    } demo_segments[] = {
        {"shoe lovers", "count(items where category = \"shoes\", 180d) >= 2"},
        {"eco-friendly", "\"eco-friendly\" in interests and consent.email"},
        {"millennials on the app",
         "birth_date between \"1981-01-01\" and \"1996-12-31\" and preferred_channel = \"app\""},
        {"high past spend, now declining", "sum(orders.amount, 180d..90d) > 300 and spend_trend <= -0.5"},
        {"lapsed", "frequency >= 1 and recency_days > 180"},
        {"champions", "rfm.segment = \"Champions\""},
        {"bought this month", "count(orders, 30d) >= 1"},
    };
    printf("== segments\n");
    t0 = secs();
    if (db_view_ensure(db, &err) != PATRON_OK || segments_load(db, &err) != PATRON_OK ||
        cli_attach(ctx, db, &err) != PATRON_OK)
        return cli_fail(&err);
    for (size_t i = 0; i < sizeof demo_segments / sizeof *demo_segments; i++) {
        if (segment_create(db, demo_segments[i].name, demo_segments[i].rule, ctx->now, &err))
            return cli_fail(&err);
        segment *g = segment_find(db, demo_segments[i].name);
        printf("   %-32s %7llu  %s\n", g->name,
               (unsigned long long)roaring_bitmap_get_cardinality(g->members), g->rule);
    }
    printf("   (built in %.2f s)\n", secs() - t0);
    t0 = secs();
    if (segments_sync(db, ctx->now + 86400, &err) != PATRON_OK)
        return cli_fail(&err);
    printf("== one day later (only members whose windows moved were looked at, %.3f s)\n",
           secs() - t0);
    for (size_t i = 0; i < db->segs->n; i++) {
        segment *g = &db->segs->s[i];
        printf("   %-32s %7llu  (%llu evaluations)\n", g->name,
               (unsigned long long)roaring_bitmap_get_cardinality(g->members),
               (unsigned long long)g->evaluated);
    }
    return 0;
}


static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int cmd_features(cli_ctx *ctx, int argc, char **argv)
{
    const char *out = NULL;
    uint64_t repeat = 5;
    for (int i = 1; i < argc; i++) {
        const char *v;
        int r;
        if (cli_is_help(argv[i])) {
            printf("usage: patron features [--out FILE.csv] [--repeat K] [--json]\n");
            return CLI_OK;
        } else if ((r = cli_opt(argc, argv, &i, "--out", &v)) != 0) {
            if (r < 0)
                return CLI_USAGE;
            out = v;
        } else if ((r = cli_opt(argc, argv, &i, "--repeat", &v)) != 0) {
            if (r < 0 || cli_parse_u64("--repeat", v, &repeat) || repeat == 0)
                return CLI_USAGE;
        } else {
            cli_errorf("features: unexpected argument '%s'", argv[i]);
            return CLI_USAGE;
        }
    }
    double t0 = secs();
    patron_db *db;
    int rc = cli_open_db(ctx, &db);
    if (rc)
        return rc;
    if (db_csr_build(db) != PATRON_OK) {
        patron_close(db);
        cli_errorf("out of memory");
        return CLI_INTERNAL;
    }
    double load = secs() - t0;
    size_t n = db->n_members ? db->n_members : 1;
    db_features f = {malloc(n * sizeof(double)), malloc(n * sizeof(int64_t)),
                     malloc(n * sizeof(int64_t))};
    double *times = malloc(repeat * sizeof(double));
    for (uint64_t k = 0; k < repeat; k++) {
        double a = secs();
        db_features_compute(db, ctx->now, &f);
        times[k] = (secs() - a) * 1000.0;
    }
    qsort(times, repeat, sizeof *times, cmp_d);
    if (out) {
        FILE *fo = fopen(out, "w");
        if (!fo) {
            cli_errorf("cannot write '%s'", out);
            rc = CLI_INTERNAL;
        } else {
            fprintf(fo, "member_id,recency_days,frequency,monetary,aov\n");
            for (uint32_t m = 0; m < db->n_members; m++) {
                char mon[NUM_FMT_LEN], aov[NUM_FMT_LEN] = "";
                num_format_money(f.monetary[m], mon);
                if (f.frequency[m])
                    num_format_money((int64_t)llround((double)f.monetary[m] / (double)f.frequency[m]), aov);
                if (isnan(f.recency_days[m]))
                    fprintf(fo, "%s,,%lld,%s,%s\n", db->member_id[m], (long long)f.frequency[m], mon, aov);
                else
                    fprintf(fo, "%s,%.8f,%lld,%s,%s\n", db->member_id[m], f.recency_days[m],
                            (long long)f.frequency[m], mon, aov);
            }
            fclose(fo);
        }
    }
    if (ctx->json) {
        long rss = 0;
        FILE *st = fopen("/proc/self/statm", "r");
        if (st) {
            long size;
            if (fscanf(st, "%ld %ld", &size, &rss) != 2)
                rss = 0;
            fclose(st);
        }
        uint64_t items = 0;
        for (size_t i = 0; i < db->n_orders; i++)
            items += (uint64_t)db->o_items[i];
        printf("{\"members\":%u,\"orders\":%zu,\"items\":%llu,\"load_s\":%.4f,"
               "\"pass_ms_min\":%.3f,\"pass_ms_median\":%.3f,\"rss_bytes\":%ld}\n",
               db->n_members, db->n_orders, (unsigned long long)items, load, times[0],
               times[repeat / 2], rss * sysconf(_SC_PAGESIZE));
    }
    free(times);
    free(f.recency_days);
    free(f.frequency);
    free(f.monetary);
    patron_close(db);
    return rc;
}

int cmd_demo(cli_ctx *ctx, int argc, char **argv)
{
    const char *dir = "demo-out";
    uint64_t members = 50000;
    for (int i = 1; i < argc; i++) {
        const char *v;
        int r;
        if (cli_is_help(argv[i])) {
            printf("usage: patron demo [--out DIR] [--members N]\n");
            return CLI_OK;
        } else if ((r = cli_opt(argc, argv, &i, "--out", &v)) != 0) {
            if (r < 0)
                return CLI_USAGE;
            dir = v;
        } else if ((r = cli_opt(argc, argv, &i, "--members", &v)) != 0) {
            if (r < 0 || cli_parse_u64("--members", v, &members))
                return CLI_USAGE;
        }
    }
    gen_opts g;
    gen_opts_init(&g);
    g.members = members;
    g.out = dir;
    patron_error err = {0};
    printf("== generating %llu members into %s\n", (unsigned long long)members, dir);
    if (gen_run(&g, &err))
        return cli_fail(&err);
    if (!ctx->now_given)
        ctx->now = g.end;
    char path[1024];
    /* The demo starts from an empty program each time. */
    static const char *suffixes[] = {"", "-wal", "-shm"};
    for (size_t k = 0; k < 3; k++) {
        snprintf(path, sizeof path, "%s%s", ctx->db_path, suffixes[k]);
        unlink(path);
    }
    patron_db *db;
    int rc = cli_open_db(ctx, &db);
    if (rc)
        return rc;
    patron_import_opts o;
    patron_import_opts_init(&o);
    static const struct {
        const char *file;
        patron_import_kind kind;
    } files[] = {{"members.csv", PATRON_IMPORT_MEMBERS},
                 {"orders.csv", PATRON_IMPORT_ORDERS},
                 {"events.jsonl", PATRON_IMPORT_EVENTS}};
    for (size_t f = 0; f < 3 && rc == 0; f++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[f].file);
        printf("== importing %s\n", path);
        double t0 = secs();
        rc = do_import(ctx, db, files[f].kind, path, &o);
        printf("   took %.2f s\n", secs() - t0);
    }
    if (rc == 0) {
        patron_stats s;
        patron_stats_get(db, ctx->now, &s, &err);
        printf("== stats\n");
        print_stats(ctx, &s);
        rc = demo_models_and_segments(ctx, db);
        for (uint32_t m = 0; rc == 0 && db->n_members && m < 3; m++) {
            const char *id = db->member_id[m * 7919 % db->n_members];
            printf("== member %s\n", id);
            rc = print_member(ctx, db, id);
        }
    }
    patron_close(db);
    return rc;
}
