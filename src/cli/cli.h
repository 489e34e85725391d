/*
 * cli.h -- what every command of the `patron` CLI shares.
 *
 * main.c parses the global flags (--db, --now, --json, --quiet, --help; accepted before
 * or after the command), then calls the command's function with the remaining
 * arguments (argv[0] is the command name).  A command returns a process exit code
 * (SPEC §10: 0 ok, 1 usage, 2 bad input/data, 3 not found, 4 internal/storage error).
 * Only cli/ prints or exits.
 */
#ifndef PATRON_CLI_H
#define PATRON_CLI_H

#include "patron/patron.h"

#include <stdint.h>
#include <stdio.h>

typedef struct cli_ctx {
    const char *db_path; /* --db, $PATRON_DB, or ./patron.db */
    int64_t now;         /* --now, or the system clock */
    int now_given;       /* 1 when --now was on the command line */
    int json;            /* --json */
    int quiet;           /* --quiet */
} cli_ctx;

enum { CLI_OK = 0, CLI_USAGE = 1, CLI_BADINPUT = 2, CLI_NOTFOUND = 3, CLI_INTERNAL = 4 };

/* Maps a patron_status to the exit code of SPEC §10. */
int cli_exit_code(int status);
/* Prints "patron: MESSAGE" to stderr. */
void cli_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints the error object and returns its exit code. */
int cli_fail(const patron_error *err);
/* Opens ctx->db_path; on failure prints and returns non-zero (the exit code). */
int cli_open_db(const cli_ctx *ctx, patron_db **db);

/*
 * Option scanning for commands.  Usage in a command:
 *     for (int i = 1; i < argc; i++) {
 *         const char *v;
 *         if (cli_opt(argc, argv, &i, "--seed", &v)) seed = ...;       // --seed 5 / --seed=5
 *         else if (cli_flag(argv[i], "--bad-rows")) ...
 *         else positional...
 *     }
 * cli_opt returns 1 and sets *value when argv[*i] is NAME (consuming the next argument)
 * or NAME=VALUE; it returns -1 (after printing) when NAME has no value.
 */
int cli_opt(int argc, char **argv, int *i, const char *name, const char **value);
int cli_flag(const char *arg, const char *name);
/* Parses a whole non-negative integer / real / timestamp option; prints and returns -1 when bad. */
int cli_parse_u64(const char *opt, const char *s, uint64_t *out);
int cli_parse_double(const char *opt, const char *s, double *out);
int cli_parse_ts(const char *opt, const char *s, int64_t *out);
/* Returns 1 when arg is -h or --help (the command then prints its usage and returns 0). */
int cli_is_help(const char *arg);
/* The index of subcommand argv[1] in names (NULL-terminated); or -1 with *code set after
 * printing the usage (no subcommand: to stderr, exit 1; --help: to stdout, exit 0) or an
 * error naming the known subcommands. */
int cli_sub(int argc, char **argv, const char *usage, const char *const *names, int *code);
/* A command of one form, "NAME SUB [ARGS]" with argc == nargs: 1 when argv is that;
 * else 0 with *code set after printing usage (to stdout for --help, exit 0; else to
 * stderr, exit 1). */
int cli_fixed(int argc, char **argv, int nargs, const char *sub, const char *usage, int *code);

/* Commands: each lives in its own cmd_*.c file. */
int cmd_import(cli_ctx *ctx, int argc, char **argv);
int cmd_stats(cli_ctx *ctx, int argc, char **argv);
int cmd_member(cli_ctx *ctx, int argc, char **argv);
int cmd_query(cli_ctx *ctx, int argc, char **argv);
int cmd_segment(cli_ctx *ctx, int argc, char **argv);
int cmd_bench_rules(cli_ctx *ctx, int argc, char **argv);
int cmd_bench_live(cli_ctx *ctx, int argc, char **argv);
int cmd_bench_ledger(cli_ctx *ctx, int argc, char **argv);
/* Lazy model refresh (cmd_rules.c): refreshes stale models at ctx->now (a note on
 * stderr unless --quiet); *refreshed (may be NULL) says whether it did. */
int cli_models_ensure(cli_ctx *ctx, patron_db *db, int *refreshed, patron_error *err);
/* Attaches model and loyalty fields for rules (cmd_rules.c). */
int cli_attach(cli_ctx *ctx, patron_db *db, patron_error *err);
/* After an import: brings stored segments to ctx->now.  0 or an exit code. */
int cli_refresh_segments(cli_ctx *ctx, patron_db *db);
/* The segments a member is in at ctx->now, as a new JSON array in *out.  0 or an exit code. */
struct json_t;
int cli_member_segments(cli_ctx *ctx, patron_db *db, const char *id, struct json_t **out);
int cmd_generate(cli_ctx *ctx, int argc, char **argv);
int cmd_features(cli_ctx *ctx, int argc, char **argv);
int cmd_demo(cli_ctx *ctx, int argc, char **argv);
/* loyalty (cmd_loyalty.c) */
int cmd_program(cli_ctx *ctx, int argc, char **argv);
int cmd_points(cli_ctx *ctx, int argc, char **argv);
int cmd_rewards(cli_ctx *ctx, int argc, char **argv);
int cmd_redeem(cli_ctx *ctx, int argc, char **argv);
int cmd_tier(cli_ctx *ctx, int argc, char **argv);
int cmd_tiers(cli_ctx *ctx, int argc, char **argv);
int cmd_ledger(cli_ctx *ctx, int argc, char **argv);
int cmd_clv(cli_ctx *ctx, int argc, char **argv);
int cmd_rfm(cli_ctx *ctx, int argc, char **argv);
int cmd_personas(cli_ctx *ctx, int argc, char **argv);
int cmd_models(cli_ctx *ctx, int argc, char **argv);

#endif
