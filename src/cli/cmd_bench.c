/*
 * cmd_bench.c -- `patron bench-rules FILE`: times the compiled evaluator on every rule of
 * a benchmark file (bench/rules.txt: a rule line, then its SQL line) over all members.
 * Used by bench/rules.sh; prints one JSON object.
 */
#include "cli/cli.h"

#include "core/db.h"
#include "rules/eval.h"

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
    json_t *out = json_pack("{s:f,s:f,s:I}", "open_s", t1 - t0, "view_s", t2 - t1, "members",
                            (json_int_t)db->n_members);
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
        qsort(ms, repeat, sizeof *ms, cmp_dbl);
        json_array_append_new(arr, json_pack("{s:s,s:I,s:f,s:f}", "rule", line, "count",
                                             (json_int_t)roaring_bitmap_get_cardinality(b),
                                             "ms_min", ms[0], "ms_median", ms[repeat / 2]));
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
