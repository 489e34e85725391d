/*
 * cmd_loyalty.c -- the loyalty commands: `patron program check|apply|show`,
 * `patron points balance|history|adjust|expire`, `patron rewards list`,
 * `patron redeem MEMBER REWARD --key K`, `patron redeem cancel K`, `patron tier show`,
 * `patron tiers review` and `patron ledger verify`.  Thin wrappers over
 * src/loyalty/ledger.h: parse options, call, print (text, or JSON with --json).
 */
#include "cli/cli.h"

#include "base/hmap.h"
#include "base/mem.h"
#include "base/num.h"
#include "base/time.h"
#include "core/db.h"
#include "loyalty/ledger.h"
#include "loyalty/program.h"
#include "loyalty/promo.h"
#include "members/view.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int fail_code(int rc, const patron_error *err)
{
    (void)rc;
    return cli_fail(err);
}

/* Opens the database and its ledger; prints and returns the exit code on failure. */
static int open_ledger(cli_ctx *ctx, patron_db **db, ledger **l)
{
    int rc = cli_open_db(ctx, db);
    if (rc)
        return rc;
    patron_error err = {0};
    if ((rc = ledger_get(*db, l, &err)) != PATRON_OK) {
        patron_close(*db);
        return fail_code(rc, &err);
    }
    return 0;
}

static int find_member(patron_db *db, const char *id, uint32_t *idx)
{
    if (!hmap_get(&db->member_ids, id, strlen(id), idx)) {
        cli_errorf("no member '%s'", id);
        return CLI_NOTFOUND;
    }
    return 0;
}

static void print_json_string(const char *s)
{
    json_t *j = json_string(s);
    char *t = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    fputs(t ? t : "\"\"", stdout);
    free(t);
    json_decref(j);
}

static void fmt_ts(int64_t ts, char *buf)
{
    if (ts == INT64_MAX)
        snprintf(buf, TIME_FMT_LEN, "never");
    else
        time_format(ts, buf);
}

/* ---- program ---------------------------------------------------------------------- */

static int program_usage(FILE *f)
{
    fprintf(f, "usage: patron program check FILE     validate a program configuration\n"
               "       patron program apply FILE     store it as the program in force (versioned)\n"
               "       patron program show [--json]  the program in force\n"
               "The format is described in docs/ledger.md (example: examples/program.json).\n");
    return f == stdout ? CLI_OK : CLI_USAGE;
}

int cmd_program(cli_ctx *ctx, int argc, char **argv)
{
    if (argc < 2 || cli_is_help(argv[1]))
        return program_usage(argc < 2 ? stderr : stdout);
    const char *sub = argv[1];
    patron_error err = {0};
    if (strcmp(sub, "check") == 0 || strcmp(sub, "apply") == 0) {
        if (argc != 3)
            return program_usage(stderr);
        program *p;
        int rc = program_load_file(argv[2], &p, &err);
        if (rc)
            return fail_code(rc, &err);
        if (sub[0] == 'c') {
            /* Promotion rules need the member view for names and types: checked fully
             * against the database when there is one, else for syntax only. */
            const char *depth = "";
            if (p->n_rule_promos && access(ctx->db_path, F_OK) == 0) {
                patron_db *db;
                if ((rc = cli_open_db(ctx, &db))) {
                    program_free(p);
                    return rc;
                }
                rc = promo_rules_check(db, p, argv[2], &err);
                patron_close(db);
                if (rc) {
                    program_free(p);
                    return fail_code(rc, &err);
                }
            } else if (p->n_rule_promos) {
                depth = "; promotion rules checked for syntax only: no database";
            }
            printf("%s: ok (%zu tiers, %zu promotions, %zu rewards%s)\n", argv[2], p->n_tiers,
                   p->n_promos, p->n_rewards, depth);
            program_free(p);
            return CLI_OK;
        }
        patron_db *db;
        ledger *l;
        if ((rc = open_ledger(ctx, &db, &l))) {
            program_free(p);
            return rc;
        }
        if ((rc = promo_rules_check(db, p, argv[2], &err))) {
            patron_close(db);
            program_free(p);
            return fail_code(rc, &err);
        }
        int64_t version;
        int changed;
        rc = ledger_program_apply(l, p, ctx->now, &version, &changed, &err);
        if (rc) {
            patron_close(db);
            return fail_code(rc, &err);
        }
        rc = changed ? cli_refresh_segments(ctx, db) : CLI_OK; /* the ledger streams now */
        patron_close(db);
        if (rc)
            return rc;
        if (!ctx->quiet)
            printf(changed ? "program version %lld applied\n"
                           : "program unchanged (version %lld is the same configuration)\n",
                   (long long)version);
        return CLI_OK;
    }
    if (strcmp(sub, "show") == 0) {
        patron_db *db;
        ledger *l;
        int rc = open_ledger(ctx, &db, &l);
        if (rc)
            return rc;
        int64_t version;
        const program *p = ledger_program(l, &version);
        if (!p) {
            patron_close(db);
            cli_errorf("no loyalty program is configured (apply one with 'patron program apply FILE')");
            return CLI_NOTFOUND;
        }
        json_error_t je;
        json_t *j = json_loads(p->canonical, 0, &je);
        char *t = j ? json_dumps(j, JSON_SORT_KEYS | (ctx->json ? JSON_COMPACT : JSON_INDENT(2))) : NULL;
        if (ctx->json)
            printf("{\"version\":%lld,\"program\":%s}\n", (long long)version, t ? t : "null");
        else
            printf("# program version %lld\n%s\n", (long long)version, t ? t : "");
        free(t);
        json_decref(j);
        patron_close(db);
        return CLI_OK;
    }
    cli_errorf("unknown 'program' subcommand '%s'", sub);
    return program_usage(stderr);
}

/* ---- points ----------------------------------------------------------------------- */

static const char *kind_word(int kind)
{
    static const char *const w[] = {"",       "earn",   "return", "void",   "redeem", "cancel",
                                    "adjust", "expire", "review", "bonus",  "redeem"};
    return kind > 0 && kind <= LEDGER_REDEEM_EVENT ? w[kind] : "?";
}

static void print_result(cli_ctx *ctx, const char *what, const char *member, const ledger_result *r)
{
    if (ctx->json) {
        printf("{\"op\":\"%s\",\"seq\":%lld,\"member\":", what, (long long)r->seq);
        if (member)
            print_json_string(member);
        else
            fputs("null", stdout);
        printf(",\"points\":%lld,\"balance\":%lld,\"shortfall\":%lld,\"ref\":", (long long)r->points,
               (long long)r->balance, (long long)r->shortfall);
        print_json_string(r->ref);
        printf(",\"ts\":%lld,\"replayed\":%s}\n", (long long)r->ts, r->replayed ? "true" : "false");
        return;
    }
    if (ctx->quiet)
        return;
    char ts[TIME_FMT_LEN];
    fmt_ts(r->ts, ts);
    if (!member) {
        printf("%s: %lld points (at %s)%s\n", what, (long long)r->points, ts,
               r->replayed ? " [already run at this time: first result]" : "");
        return;
    }
    printf("%s: %lld points for %s, balance %lld (at %s)%s%s\n", what, (long long)r->points, member,
           (long long)r->balance, ts, r->shortfall ? " [shortfall written off]" : "",
           r->replayed ? " [retry: first result]" : "");
}

static int points_usage(FILE *f)
{
    fprintf(f, "usage: patron points balance MEMBER\n"
               "       patron points history MEMBER\n"
               "       patron points adjust MEMBER --points N [--reason TEXT] --key K\n"
               "       patron points expire [--now TS]   expire lots due at now (idempotent)\n"
               "       patron points bonuses [--now TS]  post the birthday and enrollment bonuses due\n"
               "                                         at now (idempotent; run it daily)\n");
    return f == stdout ? CLI_OK : CLI_USAGE;
}

static int points_balance(cli_ctx *ctx, patron_db *db, ledger *l, const char *id)
{
    uint32_t m;
    int rc = find_member(db, id, &m);
    if (rc)
        return rc;
    const program *p = ledger_program(l, NULL);
    int64_t bal = ledger_balance(l, m, ctx->now);
    int64_t earned = ledger_qualifying(l, m, ctx->now, 365 * (int64_t)TIME_DAY, 0);
    int tier = ledger_tier(l, m, ctx->now);
    const char *tname = p && p->n_tiers ? p->tiers[tier].name : "";
    if (ctx->json) {
        printf("{\"member\":");
        print_json_string(id);
        printf(",\"points_balance\":%lld,\"points_earned_365d\":%lld,\"tier\":", (long long)bal,
               (long long)earned);
        print_json_string(tname);
        printf("}\n");
    } else {
        printf("%s: %lld points (earned in 365 days: %lld)%s%s\n", id, (long long)bal,
               (long long)earned, *tname ? ", tier " : "", tname);
    }
    return CLI_OK;
}

static int points_history(cli_ctx *ctx, patron_db *db, ledger *l, const char *id)
{
    uint32_t m;
    int rc = find_member(db, id, &m);
    if (rc)
        return rc;
    ledger_history_row *rows;
    size_t n;
    patron_error err = {0};
    if ((rc = ledger_history(l, m, ctx->now, &rows, &n, &err)))
        return fail_code(rc, &err);
    if (ctx->json)
        fputs("[", stdout);
    for (size_t i = 0; i < n; i++) {
        char ts[TIME_FMT_LEN], ex[TIME_FMT_LEN], ref[256];
        fmt_ts(rows[i].ts, ts);
        fmt_ts(rows[i].expires, ex);
        snprintf(ref, sizeof ref, "%.*s", (int)rows[i].refn, rows[i].ref);
        if (rows[i].kind == LEDGER_CANCEL && strncmp(ref, "k:", 2) == 0) /* the caller's key */
            memmove(ref, ref + 2, strlen(ref + 2) + 1);
        if (ctx->json) {
            printf("%s{\"seq\":%lld,\"ts\":%lld,\"kind\":\"%s\",\"points\":%lld,\"ref\":", i ? "," : "",
                   (long long)rows[i].seq, (long long)rows[i].ts, kind_word(rows[i].kind),
                   (long long)rows[i].points);
            print_json_string(ref);
            fputs("}", stdout);
        } else {
            printf("%s  %-7s %+12lld  %s%s%s\n", ts, kind_word(rows[i].kind), (long long)rows[i].points,
                   ref, rows[i].points > 0 && rows[i].kind != LEDGER_CANCEL ? "  expires " : "",
                   rows[i].points > 0 && rows[i].kind != LEDGER_CANCEL ? ex : "");
        }
    }
    if (ctx->json)
        fputs("]\n", stdout);
    mem_free(rows);
    return CLI_OK;
}

int cmd_points(cli_ctx *ctx, int argc, char **argv)
{
    if (argc < 2 || cli_is_help(argv[1]))
        return points_usage(argc < 2 ? stderr : stdout);
    const char *sub = argv[1], *member = NULL, *key = NULL, *reason = NULL, *pts = NULL;
    for (int i = 2; i < argc; i++) {
        const char *v;
        int r;
        if (cli_is_help(argv[i]))
            return points_usage(stdout);
        if ((r = cli_opt(argc, argv, &i, "--key", &v)) != 0) {
            if (r < 0)
                return CLI_USAGE;
            key = v;
        } else if ((r = cli_opt(argc, argv, &i, "--reason", &v)) != 0) {
            if (r < 0)
                return CLI_USAGE;
            reason = v;
        } else if ((r = cli_opt(argc, argv, &i, "--points", &v)) != 0) {
            if (r < 0)
                return CLI_USAGE;
            pts = v;
        } else if (!member && argv[i][0] != '-') {
            member = argv[i];
        } else {
            cli_errorf("unexpected argument '%s'", argv[i]);
            return points_usage(stderr);
        }
    }
    int is_expire = strcmp(sub, "expire") == 0 || strcmp(sub, "bonuses") == 0;
    int is_read = strcmp(sub, "balance") == 0 || strcmp(sub, "history") == 0;
    if (!is_expire && strcmp(sub, "balance") && strcmp(sub, "history") && strcmp(sub, "adjust")) {
        cli_errorf("unknown 'points' subcommand '%s'", sub);
        return points_usage(stderr);
    }
    if (!is_expire && !member) {
        cli_errorf("'points %s' needs a MEMBER", sub);
        return CLI_USAGE;
    }
    int64_t delta = 0;
    if (strcmp(sub, "adjust") == 0) {
        if (!pts || num_parse_i64(pts, strlen(pts), &delta) != 0 || delta == 0) {
            cli_errorf("option '--points': give a non-zero whole number of points (e.g. --points -50)");
            return CLI_USAGE;
        }
        if (!key) {
            cli_errorf("'points adjust' needs an idempotency key (--key K)");
            return CLI_USAGE;
        }
    }
    patron_db *db;
    ledger *l;
    int rc = open_ledger(ctx, &db, &l);
    if (rc)
        return rc;
    patron_error err = {0};
    ledger_result res;
    if (strcmp(sub, "balance") == 0) {
        rc = points_balance(ctx, db, l, member);
    } else if (strcmp(sub, "history") == 0) {
        rc = points_history(ctx, db, l, member);
    } else if (strcmp(sub, "bonuses") == 0) {
        int64_t counts[2];
        if ((rc = db_view_ensure(db, &err)) == PATRON_OK) {
            const int32_t *bd = db->view && db->view->n >= db->n_members ? db->view->birth_days : NULL;
            rc = ledger_bonuses(l, ctx->now, db->enrolled_at, bd, db->n_members, counts, &err);
        }
        if (rc != PATRON_OK)
            rc = fail_code(rc, &err);
        else if (ctx->json)
            printf("{\"birthday\":%lld,\"enrollment\":%lld}\n", (long long)counts[0], (long long)counts[1]);
        else if (!ctx->quiet)
            printf("bonuses posted: %lld birthday, %lld enrollment\n", (long long)counts[0],
                   (long long)counts[1]);
    } else if (is_expire) {
        if ((rc = ledger_expire(l, ctx->now, &res, &err)) == PATRON_OK)
            print_result(ctx, "expired", NULL, &res);
        else
            rc = fail_code(rc, &err);
    } else {
        uint32_t m;
        if ((rc = find_member(db, member, &m)) == 0) {
            if ((rc = ledger_adjust(l, m, delta, reason, key, ctx->now, &res, &err)) == PATRON_OK)
                print_result(ctx, "adjusted", member, &res);
            else
                rc = fail_code(rc, &err);
        }
    }
    if (rc == CLI_OK && !is_read)
        rc = cli_refresh_segments(ctx, db); /* live segments see the ledger's writes */
    patron_close(db);
    return rc;
}

/* ---- rewards and redemptions --------------------------------------------------------- */

int cmd_rewards(cli_ctx *ctx, int argc, char **argv)
{
    int code;
    if (!cli_fixed(argc, argv, 2, "list",
                   "usage: patron rewards list\n", &code))
        return code;
    patron_db *db;
    ledger *l;
    int rc = open_ledger(ctx, &db, &l);
    if (rc)
        return rc;
    const program *p = ledger_program(l, NULL);
    if (ctx->json)
        fputs("[", stdout);
    for (size_t i = 0; p && i < p->n_rewards; i++) {
        const program_reward *r = &p->rewards[i];
        int64_t used = ledger_stock_used(l, r->id), left = r->stock < 0 ? -1 : r->stock - used;
        if (left < -1)
            left = 0;
        if (ctx->json) {
            printf("%s{\"id\":", i ? "," : "");
            print_json_string(r->id);
            printf(",\"name\":");
            print_json_string(r->name);
            printf(",\"points\":%lld,\"stock\":%lld,\"redeemed\":%lld,\"available\":", (long long)r->points,
                   (long long)r->stock, (long long)used);
            if (left < 0)
                fputs("null}", stdout);
            else
                printf("%lld}", (long long)left);
        } else {
            char avail[32];
            if (left < 0)
                snprintf(avail, sizeof avail, "unlimited");
            else
                snprintf(avail, sizeof avail, "%lld left", (long long)left);
            printf("%-20s %8lld points  %-12s %s\n", r->id, (long long)r->points, avail, r->name);
        }
    }
    if (ctx->json)
        fputs("]\n", stdout);
    patron_close(db);
    return CLI_OK;
}

int cmd_redeem(cli_ctx *ctx, int argc, char **argv)
{
    const char *pos[3] = {NULL, NULL, NULL}, *key = NULL;
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *v;
        int r;
        if (cli_is_help(argv[i])) {
            printf("usage: patron redeem MEMBER REWARD --key K   redeem a catalog reward\n"
                   "       patron redeem cancel K                cancel that redemption\n"
                   "A retry with the same key returns the first result and redeems nothing more.\n");
            return CLI_OK;
        }
        if ((r = cli_opt(argc, argv, &i, "--key", &v)) != 0) {
            if (r < 0)
                return CLI_USAGE;
            key = v;
        } else if (npos < 3) {
            pos[npos++] = argv[i];
        } else {
            cli_errorf("unexpected argument '%s'", argv[i]);
            return CLI_USAGE;
        }
    }
    int cancel = npos == 2 && strcmp(pos[0], "cancel") == 0 && !key;
    if (!cancel && (npos != 2 || !key)) {
        cli_errorf("usage: patron redeem MEMBER REWARD --key K | patron redeem cancel K");
        return CLI_USAGE;
    }
    patron_db *db;
    ledger *l;
    int rc = open_ledger(ctx, &db, &l);
    if (rc)
        return rc;
    patron_error err = {0};
    ledger_result res;
    if (cancel) {
        if ((rc = ledger_cancel(l, pos[1], ctx->now, &res, &err)) == PATRON_OK) {
            const char *mid = res.member >= 0 && (uint64_t)res.member < db->n_members
                                  ? db->member_id[res.member] : NULL;
            print_result(ctx, "cancelled", mid, &res);
        }
    } else {
        uint32_t m;
        if ((rc = find_member(db, pos[0], &m)) != 0) {
            patron_close(db);
            return rc;
        }
        if ((rc = ledger_redeem(l, m, pos[1], key, ctx->now, &res, &err)) == PATRON_OK)
            print_result(ctx, "redeemed", pos[0], &res);
    }
    if (rc)
        rc = fail_code(rc, &err);
    else
        rc = cli_refresh_segments(ctx, db);
    patron_close(db);
    return rc;
}

/* ---- tiers ------------------------------------------------------------------------------- */

int cmd_tier(cli_ctx *ctx, int argc, char **argv)
{
    int code;
    if (!cli_fixed(argc, argv, 3, "show",
                   "usage: patron tier show MEMBER\n", &code))
        return code;
    patron_db *db;
    ledger *l;
    int rc = open_ledger(ctx, &db, &l);
    if (rc)
        return rc;
    uint32_t m;
    if ((rc = find_member(db, argv[2], &m)) == 0) {
        const program *p = ledger_program(l, NULL);
        int t = ledger_tier(l, m, ctx->now);
        int spend = p && p->basis == PROGRAM_BASIS_SPEND;
        int64_t window = p ? p->window : 365 * (int64_t)TIME_DAY;
        int64_t q = ledger_qualifying(l, m, ctx->now, window, spend);
        const char *name = p && p->n_tiers ? p->tiers[t].name : "";
        char qs[NUM_FMT_LEN];
        if (spend)
            num_format_money(q, qs);
        else
            snprintf(qs, sizeof qs, "%lld", (long long)q);
        if (ctx->json) {
            printf("{\"member\":");
            print_json_string(argv[2]);
            printf(",\"tier\":");
            print_json_string(name);
            printf(",\"qualifying\":%s,\"basis\":\"%s\",\"window_days\":%lld}\n", qs,
                   spend ? "spend" : "points", (long long)(window / TIME_DAY));
        } else {
            printf("%s: tier %s (qualifying %s: %s in the last %lld days)\n", argv[2],
                   *name ? name : "(none)", spend ? "spend" : "points", qs, (long long)(window / TIME_DAY));
        }
    }
    patron_close(db);
    return rc;
}

int cmd_tiers(cli_ctx *ctx, int argc, char **argv)
{
    int code;
    if (!cli_fixed(argc, argv, 2, "review",
                   "usage: patron tiers review [--now TS]\n"
                   "Moves every member to the tier their qualification earns (up or down).\n",
                   &code))
        return code;
    patron_db *db;
    ledger *l;
    int rc = open_ledger(ctx, &db, &l);
    if (rc)
        return rc;
    patron_error err = {0};
    ledger_result res;
    if ((rc = ledger_tiers_review(l, ctx->now, &res, &err)) != PATRON_OK) {
        rc = fail_code(rc, &err);
    } else if (ctx->json) {
        printf("{\"changed\":%lld,\"ts\":%lld,\"replayed\":%s}\n", (long long)res.points, (long long)res.ts,
               res.replayed ? "true" : "false");
    } else if (!ctx->quiet) {
        printf("tier review: %lld member%s changed tier%s\n", (long long)res.points, res.points == 1 ? "" : "s",
               res.replayed ? " (already reviewed at this time: first result)" : "");
    }
    if (rc == CLI_OK)
        rc = cli_refresh_segments(ctx, db);
    patron_close(db);
    return rc;
}

/* ---- ledger --------------------------------------------------------------------------------- */

int cmd_ledger(cli_ctx *ctx, int argc, char **argv)
{
    int code;
    if (!cli_fixed(argc, argv, 2, "verify",
                   "usage: patron ledger verify\n"
                   "Checks the ledger's invariants, rebuilds the balances from the journal and "
                   "compares\nthem byte for byte with the live ones; exits 4 on any mismatch.\n",
                   &code))
        return code;
    patron_db *db;
    ledger *l;
    int rc = open_ledger(ctx, &db, &l);
    if (rc)
        return rc;
    patron_error err = {0};
    ledger_verify_report rep;
    char integ[256] = "";
    int ok = ledger_integrity(l, integ, sizeof integ, &err);
    if (ok < 0) {
        rc = fail_code(ok, &err);
    } else if ((rc = ledger_verify(l, &rep, &err)) != PATRON_OK) {
        rc = fail_code(rc, &err);
    } else {
        int good = rep.ok && ok == 1;
        if (ctx->json) {
            printf("{\"ok\":%s,\"writes\":%lld,\"postings\":%lld,\"lots\":%lld,\"members\":%lld,"
                   "\"debits\":%lld,\"credits\":%lld,\"integrity\":",
                   good ? "true" : "false", (long long)rep.writes, (long long)rep.postings, (long long)rep.lots,
                   (long long)rep.members, (long long)rep.debits, (long long)rep.credits);
            print_json_string(integ);
            printf(",\"problem\":");
            print_json_string(rep.problem);
            printf("}\n");
        } else {
            printf("ledger: %lld writes, %lld postings, %lld lots, %lld members; debits %lld = credits %lld\n",
                   (long long)rep.writes, (long long)rep.postings, (long long)rep.lots, (long long)rep.members,
                   (long long)rep.debits, (long long)rep.credits);
            printf("integrity_check: %s\n", integ);
            printf(good ? "ok: projections rebuilt from the journal equal the live ones\n" : "MISMATCH: %s\n",
                   rep.problem);
        }
        rc = good ? CLI_OK : CLI_INTERNAL;
    }
    patron_close(db);
    return rc;
}
