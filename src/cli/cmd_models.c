/*
 * cmd_models.c -- `patron clv`, `patron rfm`, `patron personas` and `patron models`:
 * thin wrappers over src/models/ that parse options and print.
 */
#include "cli/cli.h"

#include "base/time.h"
#include "core/db.h"
#include "models/bgbb.h"
#include "models/clv.h"
#include "models/summary.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char clv_usage[] =
    "usage: patron clv fit [--summary FILE] [--unit day|week] [--model bgnbd|bgbb]\n"
    "                      [--map FIELD=COLUMN,...] [--json]\n"
    "  Without --summary: fits BG/NBD + Gamma-Gamma to the members' own orders at --now\n"
    "  (repeat purchase days; profiling consent required).  --summary FILE reads a CSV of\n"
    "  frequency,recency,T[,monetary_value] (bgbb: x,t_x,n,count) in the file's own unit.\n";

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
    rc = clv_inputs_build(db, ctx->now, u, &in, &err);
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

int cmd_clv(cli_ctx *ctx, int argc, char **argv)
{
    const char *summary_file = NULL, *unit = "day", *model = "bgnbd", *map = NULL;
    if (argc < 2 || cli_is_help(argv[1])) {
        fputs(clv_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    if (strcmp(argv[1], "fit") != 0) {
        cli_errorf("clv: unknown subcommand '%s' (see 'patron clv --help')", argv[1]);
        return CLI_USAGE;
    }
    for (int i = 2; i < argc; i++) {
        const char *v;
        int r;
        if (cli_is_help(argv[i])) {
            fputs(clv_usage, stdout);
            return CLI_OK;
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
            cli_errorf("clv fit: unknown argument '%s'", argv[i]);
            return CLI_USAGE;
        }
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
