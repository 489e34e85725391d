/*
 * cmd_models.c -- `patron clv`, `patron rfm`, `patron personas` and `patron models`:
 * thin wrappers over src/models/ that parse options and print.
 */
#include "cli/cli.h"

#include "base/time.h"
#include "core/db.h"
#include "models/bgbb.h"
#include "models/clv.h"
#include "models/clv_report.h"
#include "models/models.h"
#include "models/rfm.h"
#include "models/summary.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char clv_usage[] =
    "usage: patron clv fit [--summary FILE] [--unit day|week] [--model bgnbd|bgbb]\n"
    "                      [--map FIELD=COLUMN,...] [--json]\n"
    "  Without --summary: fits BG/NBD + Gamma-Gamma to the members' own orders at --now\n"
    "  (repeat purchase days; profiling consent required).  --summary FILE reads a CSV of\n"
    "  frequency,recency,T[,monetary_value] (bgbb: x,t_x,n,count) in the file's own unit.\n"
    "       patron clv validate --split DATE [--unit day|week] [--html FILE] [--json]\n"
    "  Fits on the orders up to DATE and compares with (DATE, --now]: mean holdout repeat\n"
    "  purchases by calibration frequency, the cumulative tracking curve, MAE; --html FILE\n"
    "  also writes them as a page with two charts (self-contained, nothing fetched).\n";

static void print_bgnbd(const cli_ctx *ctx, const char *unit, size_t n, const bgnbd_params *p,
                        double ll, int have_gg, size_t n_gg, const gg_params *g, double gg_ll)
{
    if (ctx->json) {
        printf("{\"model\":\"bgnbd\",\"unit\":\"%s\",\"customers\":%zu,\"r\":%.10g,"
               "\"alpha\":%.10g,\"a\":%.10g,\"b\":%.10g,\"loglik\":%.10g",
               unit, n, p->r, p->alpha, p->a, p->b, ll);
        if (have_gg)
            printf(",\"repeat_customers\":%zu,\"p\":%.10g,\"q\":%.10g,\"gamma\":%.10g,"
                   "\"gg_loglik\":%.10g",
                   n_gg, g->p, g->q, g->gamma, gg_ll);
        printf("}\n");
        return;
    }
    printf("BG/NBD (unit: %s, %zu customers)\n", unit, n);
    printf("  r         %.6f\n  alpha     %.6f\n  a         %.6f\n  b         %.6f\n", p->r,
           p->alpha, p->a, p->b);
    printf("  loglik    %.6f\n", ll);
    if (have_gg) {
        printf("Gamma-Gamma (%zu repeat customers)\n", n_gg);
        printf("  p         %.6f\n  q         %.6f\n  gamma     %.6f\n", g->p, g->q, g->gamma);
        printf("  loglik    %.6f\n", gg_ll);
        if (g->q > 1)
            printf("  mean spend per purchase  %.4f\n", g->p * g->gamma / (g->q - 1));
    }
}

static int clv_fit_summary(const cli_ctx *ctx, const char *file, const char *model,
                           const char *unit, const char *map)
{
    patron_error err = {0};
    summary s;
    int bgbb = strcmp(model, "bgbb") == 0;
    int rc = summary_read(file, bgbb ? SUMMARY_BGBB : SUMMARY_BGNBD, map, &s, &err);
    if (rc)
        return cli_fail(&err);
    if (bgbb) {
        bgbb_data d = {s.col[0], s.col[1], s.col[2], s.col[3], s.n};
        bgbb_params p;
        double ll;
        rc = bgbb_fit(&d, &p, &ll, &err);
        if (rc == PATRON_OK) {
            double total = 0;
            for (size_t i = 0; i < s.n; i++)
                total += s.col[3][i];
            if (ctx->json)
                printf("{\"model\":\"bgbb\",\"customers\":%.0f,\"alpha\":%.10g,\"beta\":%.10g,"
                       "\"gamma\":%.10g,\"delta\":%.10g,\"loglik\":%.10g}\n",
                       total, p.alpha, p.beta, p.gamma, p.delta, ll);
            else
                printf("BG/BB (%.0f customers in %zu cells)\n  alpha     %.6f\n  beta      %.6f\n"
                       "  gamma     %.6f\n  delta     %.6f\n  loglik    %.6f\n",
                       total, s.n, p.alpha, p.beta, p.gamma, p.delta, ll);
        }
    } else {
        bgnbd_data d = {s.col[0], s.col[1], s.col[2], NULL, s.n};
        bgnbd_params p;
        double ll, gg_ll = 0;
        gg_params g = {0, 0, 0};
        size_t n_gg = 0;
        rc = bgnbd_fit(&d, &p, &ll, &err);
        int have_gg = 0;
        if (rc == PATRON_OK && s.col[3]) {
            rc = gg_fit(s.col[0], s.col[3], NULL, s.n, &g, &gg_ll, &err);
            have_gg = rc == PATRON_OK;
            gg_loglik(&g, s.col[0], s.col[3], NULL, s.n, &n_gg);
        }
        if (rc == PATRON_OK)
            print_bgnbd(ctx, unit, s.n, &p, ll, have_gg, n_gg, &g, gg_ll);
    }
    summary_release(&s);
    return rc ? cli_fail(&err) : CLI_OK;
}

static int clv_fit_events(const cli_ctx *ctx, const char *unit)
{
    patron_db *db;
    int rc = cli_open_db(ctx, &db);
    if (rc)
        return rc;
    patron_error err = {0};
    int64_t u = strcmp(unit, "week") == 0 ? 7 * (int64_t)TIME_DAY : TIME_DAY;
    clv_inputs in;
    clv_model mod;
    rc = clv_inputs_build(db, ctx->now, u, NULL, &in, &err);
    if (rc == PATRON_OK) {
        rc = clv_fit(&in, u, &mod, &err);
        if (rc == PATRON_OK)
            print_bgnbd(ctx, unit, mod.n, &mod.bg, mod.ll, mod.have_gg, mod.n_gg, &mod.gg,
                        mod.gg_ll);
        clv_inputs_release(&in);
    }
    patron_close(db);
    return rc ? cli_fail(&err) : CLI_OK;
}

static int clv_validate_cmd(const cli_ctx *ctx, int64_t split, const char *unit,
                           const char *html)
{
    patron_db *db;
    int rc = cli_open_db(ctx, &db);
    if (rc)
        return rc;
    patron_error err = {0};
    int64_t u = strcmp(unit, "week") == 0 ? 7 * (int64_t)TIME_DAY : TIME_DAY;
    clv_validation v;
    rc = clv_validate(db, split, ctx->now, u, &v, &err);
    if (rc) {
        patron_close(db);
        return cli_fail(&err);
    }
    if (html && (rc = clv_validation_html(&v, split, unit, html, &err)) != 0) {
        clv_validation_release(&v);
        patron_close(db);
        return cli_fail(&err);
    }
    const bgnbd_params *p = &v.model.bg;
    char s0[TIME_FMT_LEN];
    time_format(v.start, s0);
    if (ctx->json) {
        printf("{\"unit\":\"%s\",\"customers\":%zu,\"r\":%.10g,\"alpha\":%.10g,\"a\":%.10g,"
               "\"b\":%.10g,\"loglik\":%.10g,\"holdout\":%.10g,\"actual_total\":%.0f,"
               "\"expected_total\":%.6f,\"mae\":%.8f,\"bins\":[",
               unit, v.model.n, p->r, p->alpha, p->a, p->b, v.model.ll, v.holdout, v.actual_total,
               v.expected_total, v.mae);
        for (int b = 0; b < CLV_VALIDATE_BINS; b++)
            printf("%s{\"x\":\"%d%s\",\"customers\":%zu,\"actual\":%.8f,\"expected\":%.8f}",
                   b ? "," : "", b, b == CLV_VALIDATE_BINS - 1 ? "+" : "", v.bin_n[b],
                   v.bin_actual[b], v.bin_expected[b]);
        printf("],\"tracking_start\":\"%s\",\"tracking\":[", s0);
        for (size_t i = 0; i < v.periods; i++)
            printf("%s{\"period\":%zu,\"actual\":%.0f,\"expected\":%.6f}", i ? "," : "", i + 1,
                   v.cum_actual[i], v.cum_expected[i]);
        printf("]}\n");
    } else {
        printf("BG/NBD fitted on %zu customers up to the split (unit %s): r %.6f alpha %.6f a %.6f "
               "b %.6f, LL %.6f\n",
               v.model.n, unit, p->r, p->alpha, p->a, p->b, v.model.ll);
        printf("holdout: %.4f %ss; repeat purchases actual %.0f, expected %.2f; MAE per customer "
               "%.4f\n\n",
               v.holdout, unit, v.actual_total, v.expected_total, v.mae);
        printf("%-6s %9s %12s %12s\n", "x", "customers", "actual", "expected");
        for (int b = 0; b < CLV_VALIDATE_BINS; b++)
            printf("%d%-5s %9zu %12.6f %12.6f\n", b, b == CLV_VALIDATE_BINS - 1 ? "+" : "",
                   v.bin_n[b], v.bin_actual[b], v.bin_expected[b]);
        printf("\ncumulative repeat purchases by %s since %s\n%6s %10s %12s\n", unit, s0,
               "period", "actual", "expected");
        for (size_t i = 0; i < v.periods; i++)
            printf("%6zu %10.0f %12.3f\n", i + 1, v.cum_actual[i], v.cum_expected[i]);
    }
    clv_validation_release(&v);
    patron_close(db);
    return CLI_OK;
}

int cmd_clv(cli_ctx *ctx, int argc, char **argv)
{
    const char *summary_file = NULL, *unit = "day", *model = "bgnbd", *map = NULL, *html = NULL;
    int64_t split = PATRON_NULL_TS;
    static const char *const subs[] = {"fit", "validate", NULL};
    int code, sub = cli_sub(argc, argv, clv_usage, subs, &code);
    if (sub < 0)
        return code;
    int validate = sub == 1;
    for (int i = 2; i < argc; i++) {
        const char *v;
        int r;
        if (cli_is_help(argv[i])) {
            fputs(clv_usage, stdout);
            return CLI_OK;
        } else if (validate && (r = cli_opt(argc, argv, &i, "--split", &v)) != 0) {
            if (r < 0 || cli_parse_ts("--split", v, &split))
                return CLI_USAGE;
        } else if (validate && (r = cli_opt(argc, argv, &i, "--html", &v)) != 0) {
            if (r < 0)
                return CLI_USAGE;
            html = v;
        } else if ((r = cli_opt(argc, argv, &i, "--summary", &v)) != 0) {
            if (r < 0)
                return CLI_USAGE;
            summary_file = v;
        } else if ((r = cli_opt(argc, argv, &i, "--unit", &v)) != 0) {
            if (r < 0)
                return CLI_USAGE;
            if (strcmp(v, "day") && strcmp(v, "week") && strcmp(v, "days") && strcmp(v, "weeks")) {
                cli_errorf("clv: --unit must be 'day' or 'week', not '%s'", v);
                return CLI_USAGE;
            }
            unit = v[0] == 'd' ? "day" : "week";
        } else if ((r = cli_opt(argc, argv, &i, "--model", &v)) != 0) {
            if (r < 0)
                return CLI_USAGE;
            if (strcmp(v, "bgnbd") && strcmp(v, "bgbb")) {
                cli_errorf("clv: --model must be 'bgnbd' or 'bgbb', not '%s'", v);
                return CLI_USAGE;
            }
            model = v;
        } else if ((r = cli_opt(argc, argv, &i, "--map", &v)) != 0) {
            if (r < 0)
                return CLI_USAGE;
            map = v;
        } else {
            cli_errorf("clv %s: unknown argument '%s'", argv[1], argv[i]);
            return CLI_USAGE;
        }
    }
    if (validate) {
        if (split == PATRON_NULL_TS || summary_file || map || strcmp(model, "bgnbd") != 0) {
            cli_errorf("usage: patron clv validate --split DATE [--unit day|week] [--html FILE] "
                       "[--json]");
            return CLI_USAGE;
        }
        if (split >= ctx->now) {
            cli_errorf("clv validate: --split must be before --now");
            return CLI_USAGE;
        }
        return clv_validate_cmd(ctx, split, unit, html);
    }
    if (summary_file)
        return clv_fit_summary(ctx, summary_file, model, unit, map);
    if (strcmp(model, "bgbb") == 0) {
        cli_errorf("clv fit: --model bgbb needs --summary FILE (a recency/frequency matrix)");
        return CLI_USAGE;
    }
    if (map) {
        cli_errorf("clv fit: --map applies to --summary files only");
        return CLI_USAGE;
    }
    return clv_fit_events(ctx, unit);
}

/* ---- patron rfm ----------------------------------------------------------------- */

static const char rfm_usage[] =
    "usage: patron rfm [--members] [--json]\n"
    "  RFM at --now over members with an order and profiling consent (SPEC 4.1): the\n"
    "  segment table (members, share, revenue share, mean recency days / frequency /\n"
    "  monetary), or with --members one CSV row per scored member.\n";

int cmd_rfm(cli_ctx *ctx, int argc, char **argv)
{
    int per_member = 0;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            fputs(rfm_usage, stdout);
            return CLI_OK;
        } else if (cli_flag(argv[i], "--members")) {
            per_member = 1;
        } else {
            cli_errorf("rfm: unknown argument '%s'", argv[i]);
            return CLI_USAGE;
        }
    }
    patron_db *db;
    int rc = cli_open_db(ctx, &db);
    if (rc)
        return rc;
    patron_error err = {0};
    models_rfm_table t;
    double secs = 0;
    rc = models_rfm_at(db, ctx->now, &t, &secs, &err);
    if (rc) {
        patron_close(db);
        return cli_fail(&err);
    }
    if (per_member) {
        printf("member_id,r,f,m,score,segment\n");
        for (uint32_t m = 0; m < db->n_members; m++)
            if (t.r[m])
                printf("%s,%u,%u,%u,%d,%s\n", db->member_id[m], t.r[m], t.f[m], t.m[m],
                       t.score[m], models_rfm_segment_names[t.segment[m] - 1]);
    } else if (ctx->json) {
        printf("{\"members\":%zu,\"revenue\":%.2f,\"segments\":[", t.members, t.revenue);
        for (int s = 0; s < RFM_NSEGMENTS; s++) {
            const models_rfm_row *w = &t.rows[s];
            printf("%s{\"segment\":\"%s\",\"members\":%zu,\"share\":%.6f,\"revenue_share\":%.6f,"
                   "\"mean_recency_days\":%.4f,\"mean_frequency\":%.4f,\"mean_monetary\":%.4f}",
                   s ? "," : "", models_rfm_segment_names[s], w->members,
                   t.members ? (double)w->members / (double)t.members : 0.0,
                   t.revenue != 0 ? w->revenue / t.revenue : 0.0, w->mean_r, w->mean_f, w->mean_m);
        }
        printf("]}\n");
    } else {
        printf("%-20s %9s %7s %8s %9s %9s %11s\n", "segment", "members", "share", "revenue",
               "recency_d", "frequency", "monetary");
        for (int s = 0; s < RFM_NSEGMENTS; s++) {
            const models_rfm_row *w = &t.rows[s];
            printf("%-20s %9zu %6.1f%% %7.1f%% %9.1f %9.2f %11.2f\n", models_rfm_segment_names[s],
                   w->members, t.members ? 100.0 * (double)w->members / (double)t.members : 0.0,
                   t.revenue != 0 ? 100.0 * w->revenue / t.revenue : 0.0, w->mean_r, w->mean_f,
                   w->mean_m);
        }
        printf("%-20s %9zu   (RFM over %.0f ms)\n", "total", t.members, secs * 1000);
    }
    models_rfm_table_release(&t);
    patron_close(db);
    return CLI_OK;
}

/* ---- patron personas ------------------------------------------------------------ */

static const char personas_usage[] =
    "usage: patron personas fit [--k N|auto] [--seed S] [--json]\n"
    "       patron personas show [--json]\n"
    "  k-means personas over standardized behavioural features of the members with an\n"
    "  order and profiling consent (SPEC 4.2); fit stores them, show prints the stored ones.\n";

static void print_personas(const cli_ctx *ctx, const personas_model *pm, int64_t as_of)
{
    char when[TIME_FMT_LEN];
    time_format(as_of, when);
    if (ctx->json) {
        json_t *o = json_object(), *list = json_array();
        json_object_set_new(o, "as_of", json_string(when));
        json_object_set_new(o, "k", json_integer(pm->k));
        json_object_set_new(o, "k_auto", json_boolean(pm->k_auto));
        json_object_set_new(o, "seed", json_integer((json_int_t)pm->seed));
        json_object_set_new(o, "members", json_integer((json_int_t)pm->members));
        json_object_set_new(o, "inertia", json_real(pm->inertia));
        if (!isnan(pm->silhouette))
            json_object_set_new(o, "silhouette", json_real(pm->silhouette));
        json_t *names = json_array();
        for (int f = 0; f < pm->feat.n; f++)
            json_array_append_new(names, json_string(pm->feat.name[f]));
        json_object_set_new(o, "features", names);
        for (int c = 0; c < pm->k; c++) {
            const persona *p = &pm->p[c];
            json_t *e = json_object(), *ce = json_object();
            json_object_set_new(e, "id", json_integer(c + 1));
            json_object_set_new(e, "size", json_integer((json_int_t)p->size));
            json_object_set_new(e, "description", json_string(p->description));
            for (int f = 0; f < pm->feat.n; f++)
                json_object_set_new(ce, pm->feat.name[f],
                                    json_real(isfinite(p->centre[f]) ? p->centre[f] : 0.0));
            json_object_set_new(e, "centre", ce);
            json_array_append_new(list, e);
        }
        json_object_set_new(o, "personas", list);
        json_dumpf(o, stdout, JSON_PRESERVE_ORDER | JSON_COMPACT | JSON_REAL_PRECISION(10));
        putchar('\n');
        json_decref(o);
        return;
    }
    printf("personas as of %s: k = %d%s, %zu members", when, pm->k, pm->k_auto ? " (auto)" : "",
           pm->members);
    if (!isnan(pm->silhouette))
        printf(", silhouette %.3f", pm->silhouette);
    printf("\n%3s %9s %6s %10s %9s %9s %9s %9s  %s\n", "id", "members", "share", "monetary",
           "frequency", "recency_d", "aov", "tenure_d", "description");
    for (int c = 0; c < pm->k; c++) {
        const persona *p = &pm->p[c];
        printf("%3d %9zu %5.1f%% %10.2f %9.2f %9.1f %9.2f %9.1f  %s\n", c + 1, p->size,
               pm->members ? 100.0 * (double)p->size / (double)pm->members : 0.0, p->centre[0],
               p->centre[1], p->centre[2], p->centre[3], p->centre[4], p->description);
    }
}

int cmd_personas(cli_ctx *ctx, int argc, char **argv)
{
    static const char *const subs[] = {"fit", "show", NULL};
    int code, sub = cli_sub(argc, argv, personas_usage, subs, &code);
    if (sub < 0)
        return code;
    int fit = sub == 0;
    int k = 0;
    uint64_t seed = 1;
    for (int i = 2; i < argc; i++) {
        const char *v;
        int r;
        if (cli_is_help(argv[i])) {
            fputs(personas_usage, stdout);
            return CLI_OK;
        } else if (fit && (r = cli_opt(argc, argv, &i, "--k", &v)) != 0) {
            uint64_t kv;
            if (r < 0)
                return CLI_USAGE;
            if (strcmp(v, "auto") == 0) {
                k = 0;
            } else if (cli_parse_u64("--k", v, &kv) || kv < 2 || kv > PERSONAS_MAXK) {
                cli_errorf("personas: --k must be 2..%d or auto", PERSONAS_MAXK);
                return CLI_USAGE;
            } else {
                k = (int)kv;
            }
        } else if (fit && (r = cli_opt(argc, argv, &i, "--seed", &v)) != 0) {
            if (r < 0 || cli_parse_u64("--seed", v, &seed))
                return CLI_USAGE;
        } else {
            cli_errorf("personas %s: unknown argument '%s'", argv[1], argv[i]);
            return CLI_USAGE;
        }
    }
    patron_db *db;
    int rc = cli_open_db(ctx, &db);
    if (rc)
        return rc;
    patron_error err = {0};
    personas_model pm;
    int64_t as_of = ctx->now;
    rc = fit ? models_personas_fit(db, ctx->now, k, seed, &pm, NULL, &err)
             : models_personas_load(db, &pm, &as_of, &err);
    if (rc == PATRON_OK)
        print_personas(ctx, &pm, as_of);
    patron_close(db);
    return rc ? cli_fail(&err) : CLI_OK;
}

/* ---- patron models -------------------------------------------------------------- */

static const char models_usage[] =
    "usage: patron models refresh [--k N|auto] [--seed S] [--horizon 365d] [--discount-rate R]\n"
    "       patron models show\n"
    "  refresh computes RFM, personas and CLV (p_alive, expected_orders over the horizon,\n"
    "  clv) for every member at --now and stores them; show prints what is stored.\n";

static int models_show(const cli_ctx *ctx, patron_db *db)
{
    patron_error err = {0};
    models_state ms;
    int rc = models_load(db, &ms, &err);
    if (rc)
        return cli_fail(&err);
    char when[TIME_FMT_LEN] = "never";
    if (ms.as_of != PATRON_NULL_TS)
        time_format(ms.as_of, when);
    size_t rfm = 0, per = 0, clv = 0;
    double clv_sum = 0;
    for (uint32_t m = 0; m < ms.n; m++) {
        rfm += ms.rfm_score[m] != 0;
        per += ms.persona[m] >= 0;
        if (!isnan(ms.clv[m])) {
            clv++;
            clv_sum += ms.clv[m];
        }
    }
    if (ctx->json)
        printf("{\"models_as_of\":%s%s%s,\"members\":%u,\"rfm\":%zu,\"personas\":%zu,\"clv\":%zu,"
               "\"clv_total\":%.2f}\n",
               ms.as_of != PATRON_NULL_TS ? "\"" : "", ms.as_of != PATRON_NULL_TS ? when : "null",
               ms.as_of != PATRON_NULL_TS ? "\"" : "", ms.n, rfm, per, clv, clv_sum);
    else
        printf("models_as_of  %s\nmembers       %u\nwith rfm      %zu\nwith persona  %zu\n"
               "with clv      %zu (total %.2f)\n",
               when, ms.n, rfm, per, clv, clv_sum);
    models_state_free(&ms);
    return CLI_OK;
}

int cmd_models(cli_ctx *ctx, int argc, char **argv)
{
    static const char *const subs[] = {"refresh", "show", NULL};
    int code, sub = cli_sub(argc, argv, models_usage, subs, &code);
    if (sub < 0)
        return code;
    int refresh = sub == 0;
    models_opts o;
    models_opts_init(&o);
    for (int i = 2; i < argc; i++) {
        const char *v;
        int r;
        if (cli_is_help(argv[i])) {
            fputs(models_usage, stdout);
            return CLI_OK;
        } else if (refresh && (r = cli_opt(argc, argv, &i, "--k", &v)) != 0) {
            uint64_t kv;
            if (r < 0)
                return CLI_USAGE;
            if (strcmp(v, "auto") == 0)
                o.k = 0;
            else if (cli_parse_u64("--k", v, &kv) || kv < 2 || kv > PERSONAS_MAXK) {
                cli_errorf("models: --k must be 2..%d or auto", PERSONAS_MAXK);
                return CLI_USAGE;
            } else
                o.k = (int)kv;
        } else if (refresh && (r = cli_opt(argc, argv, &i, "--seed", &v)) != 0) {
            if (r < 0 || cli_parse_u64("--seed", v, &o.seed))
                return CLI_USAGE;
        } else if (refresh && (r = cli_opt(argc, argv, &i, "--horizon", &v)) != 0) {
            if (r < 0)
                return CLI_USAGE;
            if (time_parse_duration(v, strlen(v), &o.horizon) != 0 || o.horizon <= 0) {
                cli_errorf("models: --horizon: cannot parse '%s' as a duration (e.g. 365d)", v);
                return CLI_USAGE;
            }
        } else if (refresh && (r = cli_opt(argc, argv, &i, "--discount-rate", &v)) != 0) {
            if (r < 0 || cli_parse_double("--discount-rate", v, &o.discount))
                return CLI_USAGE;
            if (o.discount < 0) {
                cli_errorf("models: --discount-rate must be >= 0");
                return CLI_USAGE;
            }
        } else {
            cli_errorf("models %s: unknown argument '%s'", argv[1], argv[i]);
            return CLI_USAGE;
        }
    }
    patron_db *db;
    int rc = cli_open_db(ctx, &db);
    if (rc)
        return rc;
    if (!refresh) {
        rc = models_show(ctx, db);
        patron_close(db);
        return rc;
    }
    patron_error err = {0};
    models_state ms;
    models_report rep;
    rc = models_refresh_with(db, ctx->now, &o, &ms, &rep, &err);
    if (rc) {
        patron_close(db);
        return cli_fail(&err);
    }
    /* Segments that read model fields take the new values (every member, those only). */
    models_touch_all(db);
    if ((rc = cli_refresh_segments(ctx, db)) != 0) {
        patron_close(db);
        return rc;
    }
    char when[TIME_FMT_LEN];
    time_format(ms.as_of, when);
    if (ctx->json) {
        printf("{\"models_as_of\":\"%s\",\"members\":%u,\"eligible\":%zu,\"personas\":%d,"
               "\"clv\":%s,\"seconds\":{\"features\":%.4f,\"rfm\":%.4f,\"personas\":%.4f,"
               "\"clv_fit\":%.4f,\"clv_score\":%.4f,\"store\":%.4f}}\n",
               when, ms.n, rep.eligible, ms.have_personas ? rep.personas.k : 0,
               rep.clv_ok ? "true" : "false", rep.t_features, rep.t_rfm, rep.t_personas,
               rep.t_clv_fit, rep.t_clv_score, rep.t_store);
    } else {
        printf("models_as_of  %s (run %lld)\n", when, (long long)rep.run_id);
        printf("members       %u, %zu with an order and profiling consent\n", ms.n, rep.eligible);
        printf("rfm           %.3f s\n", rep.t_rfm);
        if (ms.have_personas)
            printf("personas      k = %d%s, %.3f s\n", rep.personas.k,
                   rep.personas.k_auto ? " (auto)" : "", rep.t_personas);
        else
            printf("personas      not fitted\n");
        if (rep.clv_ok) {
            printf("clv           BG/NBD (days) r %.4f alpha %.4f a %.4f b %.4f, LL %.3f; fit %.3f s, "
                   "scoring %.3f s\n",
                   rep.r, rep.alpha, rep.a, rep.b, rep.loglik, rep.t_clv_fit, rep.t_clv_score);
            if (rep.gg_ok)
                printf("              Gamma-Gamma p %.4f q %.4f gamma %.4f, LL %.3f\n", rep.p,
                       rep.q, rep.gamma, rep.gg_loglik);
        } else {
            printf("clv           not fitted: %s\n", rep.clv_error);
        }
        printf("stored        %.3f s\n", rep.t_store);
    }
    models_state_free(&ms);
    patron_close(db);
    return CLI_OK;
}
