/*
 * main.c -- the `patron` command line: global flags, the command table, and the small
 * helpers every command shares (option scanning, error printing, exit codes).
 *
 * Global flags (--db, --now, --json, --quiet) are accepted before or after the command
 * name; they are removed from argv before the command sees it.
 */
#include "cli/cli.h"

#include "base/num.h"
#include "base/time.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef struct command {
    const char *name;
    int (*fn)(cli_ctx *ctx, int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"import", cmd_import, "import members, orders or events from CSV/JSONL (.gz too)"},
    {"stats", cmd_stats, "counts, date range and revenue of the program"},
    {"member", cmd_member, "show one member's profile and behavioural fields"},
    {"query", cmd_query, "print the members a rule matches (or --count, --explain)"},
    {"segment", cmd_segment, "named segments: create, update, members, export, changes, …"},
    {"features", cmd_features, "compute behavioural fields for every member (benchmarks)"},
    {"bench-rules", cmd_bench_rules, "time rules over all members (benchmarks)"},
    {"bench-live", cmd_bench_live, "live segments under a stream of events (benchmarks)"},
    {"bench-ledger", cmd_bench_ledger, "durable redemptions and batched earning (benchmarks)"},
    {"generate", cmd_generate, "write a realistic synthetic data set"},
    {"demo", cmd_demo, "generate, import and show a demo program"},
    {"program", cmd_program, "check, apply or show the loyalty program configuration"},
    {"points", cmd_points, "points balance, history, adjustments and expiry"},
    {"rewards", cmd_rewards, "the rewards catalog with stock"},
    {"redeem", cmd_redeem, "redeem a reward (or cancel a redemption)"},
    {"tier", cmd_tier, "a member's tier and qualification"},
    {"tiers", cmd_tiers, "tier review (downgrades happen only here)"},
    {"ledger", cmd_ledger, "verify the points ledger (invariants, rebuild = live)"},
    {"clv", cmd_clv, "fit customer lifetime value models (BG/NBD, Gamma-Gamma, BG/BB)"},
    {"rfm", cmd_rfm, "RFM scores and the segment table"},
    {"personas", cmd_personas, "fit or show k-means personas"},
    {"models", cmd_models, "refresh or show every member's model fields"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: patron [--db FILE] [--now TS] [--json] [--quiet] COMMAND [ARGS]\n\n"
               "commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nglobal flags:\n"
               "  --db FILE   the program's database (default $PATRON_DB or ./patron.db)\n"
               "  --now TS    evaluation time (default: the system clock)\n"
               "  --json      machine-readable output\n"
               "  --quiet     no progress output\n"
               "Every command takes --help.  Exit codes: 0 ok, 1 usage, 2 bad input,\n"
               "3 not found, 4 internal or storage error.\n");
}

int cli_exit_code(int status)
{
    switch (status) {
    case PATRON_OK:
        return CLI_OK;
    case PATRON_EUSAGE:
        return CLI_USAGE;
    case PATRON_EINPUT:
        return CLI_BADINPUT;
    case PATRON_ENOTFOUND:
        return CLI_NOTFOUND;
    default:
        return CLI_INTERNAL;
    }
}

void cli_errorf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("patron: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int cli_fail(const patron_error *err)
{
    cli_errorf("%s", err->message[0] ? err->message : patron_strerror(err->code));
    return cli_exit_code(err->code);
}

int cli_open_db(const cli_ctx *ctx, patron_db **db)
{
    patron_error err;
    err.code = 0;
    err.message[0] = '\0';
    int rc = patron_open(ctx->db_path, db, &err);
    if (rc != PATRON_OK)
        return cli_fail(&err);
    return 0;
}

int cli_opt(int argc, char **argv, int *i, const char *name, const char **value)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *value = a + n + 1;
        return 1;
    }
    if (a[n] != '\0')
        return 0;
    if (*i + 1 >= argc) {
        cli_errorf("option '%s' needs a value", name);
        return -1;
    }
    *value = argv[++*i];
    return 1;
}

int cli_flag(const char *arg, const char *name)
{
    return strcmp(arg, name) == 0;
}

int cli_is_help(const char *arg)
{
    return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0;
}

int cli_fixed(int argc, char **argv, int nargs, const char *sub, const char *usage, int *code)
{
    if (argc == nargs && strcmp(argv[1], sub) == 0)
        return 1;
    int help = argc >= 2 && cli_is_help(argv[1]);
    fputs(usage, help ? stdout : stderr);
    *code = help ? CLI_OK : CLI_USAGE;
    return 0;
}

int cli_sub(int argc, char **argv, const char *usage, const char *const *names, int *code)
{
    if (argc < 2 || cli_is_help(argv[1])) {
        fputs(usage, argc < 2 ? stderr : stdout);
        *code = argc < 2 ? CLI_USAGE : CLI_OK;
        return -1;
    }
    for (int i = 0; names[i]; i++)
        if (strcmp(argv[1], names[i]) == 0)
            return i;
    char list[256] = "";
    size_t n = 0;
    for (int i = 0; names[i]; i++)
        n += (size_t)snprintf(list + n, n < sizeof list ? sizeof list - n : 0, "%s%s",
                              i ? (names[i + 1] ? ", " : " or ") : "", names[i]);
    cli_errorf("%s: unknown subcommand '%s' (%s)", argv[0], argv[1], list);
    *code = CLI_USAGE;
    return -1;
}

int cli_parse_u64(const char *opt, const char *s, uint64_t *out)
{
    int64_t v;
    if (num_parse_i64(s, strlen(s), &v) != 0 || v < 0) {
        cli_errorf("option '%s': cannot parse '%s' as a non-negative integer", opt, s);
        return -1;
    }
    *out = (uint64_t)v;
    return 0;
}

int cli_parse_double(const char *opt, const char *s, double *out)
{
    if (num_parse_double(s, strlen(s), out) != 0) {
        cli_errorf("option '%s': cannot parse '%s' as a number", opt, s);
        return -1;
    }
    return 0;
}

int cli_parse_ts(const char *opt, const char *s, int64_t *out)
{
    if (time_parse(s, strlen(s), out) != 0) {
        cli_errorf("option '%s': cannot parse '%s' as a timestamp", opt, s);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    cli_ctx ctx = {0};
    ctx.db_path = getenv("PATRON_DB");
    if (!ctx.db_path || !*ctx.db_path)
        ctx.db_path = "patron.db";
    ctx.now = time_now();

    /* Pull the global flags out wherever they are; keep the rest in order. */
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    if (!rest)
        return CLI_INTERNAL;
    int nrest = 0;
    for (int i = 1; i < argc; i++) {
        const char *v;
        int r;
        if ((r = cli_opt(argc, argv, &i, "--db", &v)) != 0) {
            if (r < 0)
                return CLI_USAGE;
            ctx.db_path = v;
        } else if ((r = cli_opt(argc, argv, &i, "--now", &v)) != 0) {
            if (r < 0 || cli_parse_ts("--now", v, &ctx.now) != 0)
                return CLI_USAGE;
            ctx.now_given = 1;
        } else if (cli_flag(argv[i], "--json")) {
            ctx.json = 1;
        } else if (cli_flag(argv[i], "--quiet")) {
            ctx.quiet = 1;
        } else {
            rest[nrest++] = argv[i];
        }
    }
    if (nrest == 0) {
        usage(stderr);
        free(rest);
        return CLI_USAGE;
    }
    if (cli_is_help(rest[0]) || strcmp(rest[0], "help") == 0) {
        usage(stdout);
        free(rest);
        return CLI_OK;
    }
    for (size_t c = 0; c < sizeof commands / sizeof commands[0]; c++) {
        if (strcmp(commands[c].name, rest[0]) == 0) {
            int rc = commands[c].fn(&ctx, nrest, rest);
            free(rest);
            return rc;
        }
    }
    cli_errorf("unknown command '%s' (see 'patron --help')", rest[0]);
    free(rest);
    return CLI_USAGE;
}
