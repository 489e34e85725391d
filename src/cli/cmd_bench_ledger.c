/*
 * cmd_bench_ledger.c -- `patron bench-ledger redeem|earn`: the ledger's benchmark
 * driver (bench/ledger.sh, docs/bench.md).  It needs a database with members and no
 * program yet; it applies a fixed benchmark program itself.
 *
 *   redeem --count N   credits points to the first members (one grouped transaction,
 *                      not timed), then makes N catalog redemptions one by one, each
 *                      its own durable transaction (synchronous=FULL), timing each:
 *                      operations/s, p50 and p99 latency.
 *   earn --count N     posts N synthetic orders of 4 line items as one import batch
 *                      (ledger_batch_*) in one transaction, timed from the first
 *                      posting to the commit: postings/s.
 * Prints one JSON object.
 */
#include "cli/cli.h"

#include "base/err.h"
#include "base/mem.h"
#include "core/db.h"
#include "loyalty/ledger.h"
#include "loyalty/program.h"
#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char bench_program[] =
    "{\"points_per_unit\": 1.25, \"category_multipliers\": {\"shoes\": 2, \"books\": 0.5},"
    " \"tiers\": {\"levels\": [{\"name\": \"base\", \"threshold\": 0},"
    " {\"name\": \"silver\", \"threshold\": 1000, \"multiplier\": 1.25}]},"
    " \"expiry\": {\"policy\": \"end_of_month\", \"months\": 12},"
    " \"rewards\": [{\"id\": \"RWD-BENCH\", \"points\": 10}]}";

static double clock_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int bench_fail(patron_db *db, const patron_error *err)
{
    int rc = cli_fail(err);
    patron_close(db);
    return rc;
}

static int bench_redeem(cli_ctx *ctx, patron_db *db, ledger *l, uint64_t count)
{
    patron_error err = {0};
    size_t members = db->n_members < 1000 ? db->n_members : 1000;
    int64_t each = (int64_t)(count / members + 1) * 10;
    int rc = ledger_group_begin(l, &err);
    for (size_t m = 0; m < members && rc == PATRON_OK; m++) {
        char key[64];
        snprintf(key, sizeof key, "bench-credit-%zu", m);
        rc = ledger_adjust(l, (uint32_t)m, each, "bench", key, ctx->now - 60, NULL, &err);
    }
    int grc = ledger_group_end(l, rc == PATRON_OK, rc == PATRON_OK ? &err : NULL);
    if (rc == PATRON_OK)
        rc = grc;
    if (rc)
        return bench_fail(db, &err);
    double *lat = mem_alloc_array(count, sizeof *lat);
    if (!lat) {
        patron_close(db);
        cli_errorf("out of memory");
        return CLI_INTERNAL;
    }
    ledger_set_durable(l, 1);
    double t0 = clock_s();
    for (uint64_t i = 0; i < count && rc == PATRON_OK; i++) {
        char key[64];
        snprintf(key, sizeof key, "bench-redeem-%llu", (unsigned long long)i);
        double s = clock_s();
        rc = ledger_redeem(l, (uint32_t)(i % members), "RWD-BENCH", key, ctx->now, NULL, &err);
        lat[i] = clock_s() - s;
    }
    double total = clock_s() - t0;
    if (rc) {
        mem_free(lat);
        return bench_fail(db, &err);
    }
    qsort(lat, count, sizeof *lat, cmp_double);
    printf("{\"mode\": \"redeem\", \"count\": %llu, \"members\": %zu, \"seconds\": %.4f,"
           " \"ops_per_s\": %.1f, \"p50_ms\": %.3f, \"p99_ms\": %.3f, \"max_ms\": %.3f}\n",
           (unsigned long long)count, members, total, (double)count / total,
           lat[count / 2] * 1e3, lat[(size_t)((double)count * 0.99)] * 1e3, lat[count - 1] * 1e3);
    mem_free(lat);
    patron_close(db);
    return CLI_OK;
}

static int bench_earn(cli_ctx *ctx, patron_db *db, ledger *l, uint64_t count)
{
    static const char *const cats[] = {"shoes", "books", "toys", "garden"};
    patron_error err = {0};
    /* the order ids are the input: made before the clock starts */
    char *ids = mem_alloc_array(count ? count : 1, 32);
    if (!ids) {
        err_set(&err, PATRON_ENOMEM, "out of memory");
        return bench_fail(db, &err);
    }
    for (uint64_t i = 0; i < count; i++)
        snprintf(ids + 32 * i, 32, "BENCH-%010llu", (unsigned long long)i);
    double t0 = clock_s();
    int rc = store_begin(db->st, &err);
    if (rc) {
        mem_free(ids);
        return bench_fail(db, &err);
    }
    rc = ledger_batch_begin(l, NULL, NULL, 0, &err);
    if (rc == PATRON_OK) /* as the importers do: the batch's size is known */
        rc = ledger_batch_reserve(l, (size_t)count, &err);
    if (rc) {
        mem_free(ids);
        store_rollback(db->st);
        return bench_fail(db, &err);
    }
    for (uint64_t i = 0; i < count && rc == PATRON_OK; i++) {
        const char *id = ids + 32 * i;
        size_t idn = strlen(id);
        ledger_item it[4];
        int64_t amount = 0;
        for (int k = 0; k < 4; k++) {
            const char *c = cats[(i + (uint64_t)k) % 4];
            it[k] = (ledger_item){"SKU", c, 3, strlen(c), (int64_t)(1000 + (i * 7 + (uint64_t)k * 13) % 9000)};
            amount += it[k].amount;
        }
        ledger_order o = {id, idn, (uint32_t)(i % db->n_members),
                          ctx->now - (int64_t)(count - i), amount, it, 4};
        rc = ledger_batch_earn(l, &o, &err);
    }
    rc = ledger_batch_end(l, rc, &err);
    mem_free(ids);
    if (rc == PATRON_OK)
        rc = store_commit(db->st, &err);
    if (rc) {
        store_rollback(db->st);
        return bench_fail(db, &err);
    }
    double total = clock_s() - t0;
    printf("{\"mode\": \"earn\", \"count\": %llu, \"seconds\": %.4f, \"postings_per_s\": %.1f}\n",
           (unsigned long long)count, total, (double)count / total);
    patron_close(db);
    return CLI_OK;
}

int cmd_bench_ledger(cli_ctx *ctx, int argc, char **argv)
{
    const char *usage = "usage: patron bench-ledger redeem|earn [--count N]";
    if (argc < 2 || cli_is_help(argv[1])) {
        printf("%s\n", usage);
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    const char *mode = argv[1];
    if (strcmp(mode, "redeem") != 0 && strcmp(mode, "earn") != 0) {
        cli_errorf("bench-ledger: unknown mode '%s' (redeem or earn)", mode);
        return CLI_USAGE;
    }
    uint64_t count = mode[0] == 'r' ? 2000 : 200000;
    for (int i = 2; i < argc; i++) {
        const char *v;
        int r = cli_opt(argc, argv, &i, "--count", &v);
        if (r == 0) {
            cli_errorf("bench-ledger: unexpected argument '%s'", argv[i]);
            return CLI_USAGE;
        }
        if (r < 0 || cli_parse_u64("--count", v, &count) || count == 0 || count > 100000000)
            return CLI_USAGE;
    }
    patron_db *db;
    int rc = cli_open_db(ctx, &db);
    if (rc)
        return rc;
    if (db->n_members == 0) {
        patron_close(db);
        cli_errorf("bench-ledger: the database has no members (import some first)");
        return CLI_BADINPUT;
    }
    patron_error err = {0};
    ledger *l;
    program *p;
    int64_t version;
    int changed;
    if ((rc = ledger_get(db, &l, &err)) ||
        (rc = program_parse(bench_program, strlen(bench_program), "bench program", &p, &err)) ||
        (rc = ledger_program_apply(l, p, ctx->now - 86400, &version, &changed, &err)))
        return bench_fail(db, &err);
    return mode[0] == 'r' ? bench_redeem(ctx, db, l, count) : bench_earn(ctx, db, l, count);
}
