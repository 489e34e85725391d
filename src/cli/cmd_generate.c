/*
 * cmd_generate.c -- `patron generate`: writes a synthetic data set (members.csv,
 * orders.csv, events.jsonl, params.json) with gen_run() (src/ingest/generate.h) and
 * prints what it wrote, read back from params.json.
 */
#include "cli/cli.h"
#include "ingest/generate.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fputs("usage: patron generate [--members N] [--seed S] [--out DIR]\n"
          "                       [--start DATE --end DATE] [--bad-rows RATE]\n"
          "\n"
          "Writes a synthetic loyalty-program data set into DIR (default: .; created if\n"
          "missing): members.csv, orders.csv (one row per line item), events.jsonl and\n"
          "params.json (the generating parameters and the counts realised).\n"
          "\n"
          "  --members N      number of members (default 10000)\n"
          "  --seed S         random seed (default 1); same options -> same bytes\n"
          "  --out DIR        output directory (default .)\n"
          "  --start DATE     first possible event time (default 2023-01-01)\n"
          "  --end DATE       last possible event time, the data set's now (default\n"
          "                   2024-12-31; a date alone means the end of that day)\n"
          "  --bad-rows RATE  share of rows of members.csv and orders.csv to malform\n"
          "                   (0..1, default 0), for testing importers\n",
          f);
}

/* A bare date (YYYY-MM-DD or YYYYMMDD) given as --end means the last second of that day. */
static int is_bare_date(const char *s)
{
    size_t n = strlen(s);
    if (n == 10) return s[4] == '-' && s[7] == '-';
    if (n == 8) {
        for (size_t i = 0; i < n; i++)
            if (s[i] < '0' || s[i] > '9') return 0;
        return 1;
    }
    return 0;
}

static void progress(void *ctx, uint64_t done, uint64_t total)
{
    (void)ctx;
    fprintf(stderr, "\rgenerating: %llu / %llu members", (unsigned long long)done,
            (unsigned long long)total);
    if (done >= total) fputc('\n', stderr);
    fflush(stderr);
}

static unsigned long long count_of(json_t *counts, const char *key)
{
    json_t *v = json_object_get(counts, key);
    return json_is_integer(v) ? (unsigned long long)json_integer_value(v) : 0;
}

/* Prints the summary from DIR/params.json; 0, or an exit code. */
static int report(const cli_ctx *ctx, const char *dir)
{
    char path[4096];
    int n = snprintf(path, sizeof path, "%s/params.json", dir);
    if (n < 0 || (size_t)n >= sizeof path) {
        cli_errorf("generate: output path '%s' is too long", dir);
        return CLI_USAGE;
    }
    json_error_t jerr;
    json_t *params = json_load_file(path, 0, &jerr);
    if (!params) {
        cli_errorf("generate: cannot read '%s': %s", path, jerr.text);
        return CLI_INTERNAL;
    }
    json_t *counts = json_object_get(params, "counts");
    if (ctx->json) {
        json_t *out =
            json_pack("{s:s, s:[s,s,s,s], s:O}", "out", dir, "files", "members.csv", "orders.csv",
                      "events.jsonl", "params.json", "counts", counts ? counts : json_null());
        char *text = out ? json_dumps(out, JSON_INDENT(2) | JSON_REAL_PRECISION(10)) : NULL;
        if (text) puts(text);
        free(text);
        json_decref(out);
    } else if (!ctx->quiet) {
        printf("wrote %llu members, %llu orders (%llu line items; %llu by guests), %llu returns "
               "and %llu events to %s\n",
               count_of(counts, "members"), count_of(counts, "orders"),
               count_of(counts, "line_items"), count_of(counts, "guest_orders"),
               count_of(counts, "returns"), count_of(counts, "events"), dir);
    }
    json_decref(params);
    return CLI_OK;
}

int cmd_generate(cli_ctx *ctx, int argc, char **argv)
{
    gen_opts o;
    gen_opts_init(&o);
    int start_given = 0, end_given = 0;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int k;
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return CLI_OK;
        }
        if ((k = cli_opt(argc, argv, &i, "--members", &v)) != 0) {
            if (k < 0 || cli_parse_u64("--members", v, &o.members) != 0) return CLI_USAGE;
        } else if ((k = cli_opt(argc, argv, &i, "--seed", &v)) != 0) {
            if (k < 0 || cli_parse_u64("--seed", v, &o.seed) != 0) return CLI_USAGE;
        } else if ((k = cli_opt(argc, argv, &i, "--out", &v)) != 0) {
            if (k < 0) return CLI_USAGE;
            o.out = v;
        } else if ((k = cli_opt(argc, argv, &i, "--start", &v)) != 0) {
            if (k < 0 || cli_parse_ts("--start", v, &o.start) != 0) return CLI_USAGE;
            start_given = 1;
        } else if ((k = cli_opt(argc, argv, &i, "--end", &v)) != 0) {
            if (k < 0 || cli_parse_ts("--end", v, &o.end) != 0) return CLI_USAGE;
            if (is_bare_date(v)) o.end += 86399;
            end_given = 1;
        } else if ((k = cli_opt(argc, argv, &i, "--bad-rows", &v)) != 0) {
            if (k < 0 || cli_parse_double("--bad-rows", v, &o.bad_rows) != 0) return CLI_USAGE;
            if (!(o.bad_rows >= 0 && o.bad_rows <= 1)) {
                cli_errorf("generate: --bad-rows must be between 0 and 1");
                return CLI_USAGE;
            }
        } else {
            cli_errorf("generate: unexpected argument '%s'", argv[i]);
            usage(stderr);
            return CLI_USAGE;
        }
    }
    if (o.members == 0) {
        cli_errorf("generate: --members must be at least 1");
        return CLI_USAGE;
    }
    if (o.start >= o.end) {
        cli_errorf("generate: %s must be before %s",
                   start_given ? "--start" : "the default start (2023-01-01)",
                   end_given ? "--end" : "the default end (2024-12-31)");
        return CLI_USAGE;
    }
    if (!o.out[0]) {
        cli_errorf("generate: --out must not be empty");
        return CLI_USAGE;
    }
    if (!ctx->quiet && !ctx->json && isatty(2)) {
        o.progress = progress;
        o.progress_ctx = NULL;
    }
    patron_error err = {0};
    if (gen_run(&o, &err) != PATRON_OK) return cli_fail(&err);
    return report(ctx, o.out);
}
