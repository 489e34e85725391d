/*
 * cmd_rules.c -- `patron query` and `patron segment …`: rules ad hoc and named segments.
 */
#include "cli/cli.h"

#include "base/time.h"
#include "core/db.h"
#include "rules/eval.h"
#include "segments/segments.h"
#include "models/models.h"
#include "loyalty/loyalty.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Model and loyalty fields as member columns for rules: every path that compiles rules
 * attaches the same ones, so a segment means the same wherever it is evaluated. */
int cli_attach(cli_ctx *ctx, patron_db *db, patron_error *err)
{
    int rc = models_attach(db, err);
    if (rc == PATRON_OK)
        rc = loyalty_attach(db, ctx->now, err);
    return rc;
}

int cli_models_ensure(cli_ctx *ctx, patron_db *db, int *refreshed, patron_error *err)
{
    int local;
    if (!refreshed)
        refreshed = &local;
    int rc = models_ensure(db, ctx->now, refreshed, err);
    if (rc == PATRON_OK && *refreshed && !ctx->quiet) {
        char when[TIME_FMT_LEN];
        time_format(ctx->now, when);
        fprintf(stderr, "patron: models refreshed as of %s (the data changed since the last "
                        "refresh)\n", when);
    }
    return rc;
}

/* 1 when the rule text compiles and reads model fields. */
static int text_reads_models(patron_db *db, const char *text)
{
    rule_env env;
    segments_env(db, &env);
    rule *r;
    patron_error e = {0};
    if (rule_compile(text, &env, &r, &e) != PATRON_OK)
        return 0;
    int reads = r->reads_models;
    rule_free(r);
    return reads;
}

/* Refreshes stale models when some stored rule segment reads them. */
static int ensure_models_for_segments(cli_ctx *ctx, patron_db *db, patron_error *err)
{
    for (size_t i = 0; i < db->segs->n; i++) {
        const segment *g = &db->segs->s[i];
        if (g->kind == SEG_RULE && g->rule && text_reads_models(db, g->rule))
            return cli_models_ensure(ctx, db, NULL, err);
    }
    return PATRON_OK;
}

/* Opens the db with the member view built. */
static int open_view(cli_ctx *ctx, patron_db **db)
{
    int rc = cli_open_db(ctx, db);
    if (rc)
        return rc;
    patron_error err = {0};
    if (db_view_ensure(*db, &err) != PATRON_OK || segments_load(*db, &err) != PATRON_OK ||
        cli_attach(ctx, *db, &err) != PATRON_OK) {
        patron_close(*db);
        return cli_fail(&err);
    }
    return 0;
}

typedef struct printer {
    patron_db *db;
    int json, first;
    FILE *f;
} printer;

static bool print_id(uint32_t m, void *p)
{
    printer *pr = p;
    if (pr->json) {
        json_t *s = json_string(pr->db->member_id[m]);
        char *t = json_dumps(s, JSON_ENCODE_ANY);
        fprintf(pr->f, "%s%s", pr->first ? "" : ",", t ? t : "null");
        free(t);
        json_decref(s);
        pr->first = 0;
    } else {
        fprintf(pr->f, "%s\n", pr->db->member_id[m]);
    }
    return true;
}

static void print_members(patron_db *db, const roaring_bitmap_t *b, int json, int count_only)
{
    uint64_t n = roaring_bitmap_get_cardinality(b);
    if (count_only) {
        if (json)
            printf("{\"count\":%llu}\n", (unsigned long long)n);
        else
            printf("%llu\n", (unsigned long long)n);
        return;
    }
    printer p = {db, json, 1, stdout};
    if (json)
        printf("{\"count\":%llu,\"members\":[", (unsigned long long)n);
    roaring_iterate(b, print_id, &p);
    if (json)
        printf("]}\n");
}

/* --explain: the condition tree with each clause's value for one member. */
static void explain(const rule *r, const rnode *n, patron_db *db, uint32_t m, int64_t now, int depth,
                    json_t *arr)
{
    char text[512], val[256];
    rule_node_text(r, n, text, sizeof text);
    rule_eval_node_text(r, n, db, m, now, val, sizeof val);
    json_t *o = NULL;
    if (arr) {
        o = json_pack("{s:s,s:s,s:i}", "clause", text, "value", val, "depth", depth);
        json_array_append_new(arr, o);
    } else {
        printf("%*s%s  =>  %s", depth * 2, "", text, val);
    }
    /* For a comparison, show the values compared. */
    const rnode *ops[3] = {NULL, NULL, NULL};
    if (n->kind == N_CMP || n->kind == N_BETWEEN || n->kind == N_IN || n->kind == N_ISNULL) {
        ops[0] = n->a;
        if (n->kind != N_ISNULL && n->b && n->b->kind != N_LIST && n->b->type != VT_TAGS)
            ops[1] = n->b;
        if (n->kind == N_BETWEEN)
            ops[2] = n->c;
    }
    json_t *vals = arr ? json_object() : NULL;
    int any = 0;
    for (int i = 0; i < 3; i++) {
        const rnode *k = ops[i];
        if (!k || k->kind == N_NUM || k->kind == N_STR || k->kind == N_DUR || k->kind == N_TS ||
            k->kind == N_BOOL || k->kind == N_NULL)
            continue;
        char kt[256], kv[256];
        rule_node_text(r, k, kt, sizeof kt);
        rule_eval_node_text(r, k, db, m, now, kv, sizeof kv);
        if (vals)
            json_object_set_new(vals, kt, json_string(kv));
        else
            printf("%s%s = %s", any ? ", " : "   (", kt, kv);
        any = 1;
    }
    if (vals) {
        if (any)
            json_object_set_new(o, "operands", vals);
        else
            json_decref(vals);
    } else {
        printf("%s\n", any ? ")" : "");
    }
    if (n->kind == N_AND || n->kind == N_OR) {
        explain(r, n->a, db, m, now, depth + 1, arr);
        explain(r, n->b, db, m, now, depth + 1, arr);
    } else if (n->kind == N_NOT) {
        explain(r, n->a, db, m, now, depth + 1, arr);
    }
}

int cmd_query(cli_ctx *ctx, int argc, char **argv)
{
    const char *text = NULL, *who = NULL;
    int count = 0;
    for (int i = 1; i < argc; i++) {
        const char *v;
        int r;
        if (cli_is_help(argv[i])) {
            printf("usage: patron query 'RULE' [--count] [--explain MEMBER_ID] [--json]\n"
                   "Prints the ids of the members the rule matches at --now, one per line.\n"
                   "The rule language is described in docs/rules.md.\n");
            return CLI_OK;
        } else if (cli_flag(argv[i], "--count")) {
            count = 1;
        } else if ((r = cli_opt(argc, argv, &i, "--explain", &v)) != 0) {
            if (r < 0)
                return CLI_USAGE;
            who = v;
        } else if (!text) {
            text = argv[i];
        } else {
            cli_errorf("query: unexpected argument '%s' (quote the rule)", argv[i]);
            return CLI_USAGE;
        }
    }
    if (!text) {
        cli_errorf("usage: patron query 'RULE' [--count] [--explain MEMBER_ID] [--json]");
        return CLI_USAGE;
    }
    patron_db *db;
    int rc = open_view(ctx, &db);
    if (rc)
        return rc;
    patron_error err = {0};
    rule_env env;
    segments_env(db, &env);
    rule *r;
    if ((rc = rule_compile(text, &env, &r, &err)) != PATRON_OK) {
        patron_close(db);
        return cli_fail(&err);
    }
    int refreshed = 0;
    if (r->reads_models) {
        /* Stale models are refreshed first; the rule then sees the new columns. */
        rc = cli_models_ensure(ctx, db, &refreshed, &err);
        if (rc == PATRON_OK && refreshed) {
            rule_free(r);
            r = NULL;
            rc = rule_compile(text, &env, &r, &err);
        }
        if (rc != PATRON_OK) {
            rule_free(r);
            patron_close(db);
            return cli_fail(&err);
        }
    }
    if (who) {
        uint32_t m;
        if (!hmap_get(&db->member_ids, who, strlen(who), &m)) {
            rule_free(r);
            patron_close(db);
            cli_errorf("no member '%s'", who);
            return CLI_NOTFOUND;
        }
        roaring_bitmap_t *one = roaring_bitmap_create();
        rc = rule_eval_members(r, db, ctx->now, &m, 1, one, &err);
        int held = rc == PATRON_OK && roaring_bitmap_contains(one, m);
        roaring_bitmap_free(one);
        if (rc == PATRON_OK) {
            json_t *arr = ctx->json ? json_array() : NULL;
            explain(r, r->root, db, m, ctx->now, 0, arr);
            int denied = r->reads_models && !db_profiling_allowed(db, m, ctx->now);
            if (arr) {
                json_t *o = json_pack("{s:s,s:b,s:o}", "member_id", who, "matches", held,
                                      "clauses", arr);
                if (denied)
                    json_object_set_new(o, "note", json_string("no profiling consent: rules that read model fields never match"));
                char *t = json_dumps(o, JSON_INDENT(2));
                printf("%s\n", t);
                free(t);
                json_decref(o);
            } else {
                if (denied)
                    printf("note: %s has no profiling consent; rules that read model fields never match\n", who);
                printf("member %s %s the rule\n", who, held ? "matches" : "does not match");
            }
        }
    } else {
        roaring_bitmap_t *b = roaring_bitmap_create();
        if ((rc = rule_eval_all(r, db, ctx->now, 0, b, &err)) == PATRON_OK)
            print_members(db, b, ctx->json, count);
        roaring_bitmap_free(b);
    }
    rule_free(r);
    patron_close(db);
    return rc == PATRON_OK ? CLI_OK : cli_fail(&err);
}

/* ---- segment ----------------------------------------------------------------------- */

static void segment_usage(FILE *f)
{
    fprintf(f,
            "usage: patron segment create NAME 'RULE'\n"
            "       patron segment update NAME 'RULE'\n"
            "       patron segment import NAME FILE      (a static list of member ids)\n"
            "       patron segment list | show NAME | members NAME | drop NAME\n"
            "       patron segment export NAME [--for CHANNEL] [--out FILE]\n"
            "       patron segment overlap A B [C …]\n"
            "       patron segment changes NAME [--since TS]\n"
            "       patron segment refresh [--full]    (brings every segment to --now;\n"
            "                                          --full evaluates every member afresh)\n");
}

typedef struct change_printer {
    patron_db *db;
    int json, first;
} change_printer;

static int print_change(void *ctx, int64_t ts, uint32_t m, int entered)
{
    change_printer *p = ctx;
    char t[TIME_FMT_LEN];
    time_format(ts, t);
    const char *id = m < p->db->n_members ? p->db->member_id[m] : "?";
    if (p->json) {
        json_t *o = json_pack("{s:s,s:s,s:s}", "ts", t, "member_id", id, "change",
                              entered ? "enter" : "exit");
        char *s = json_dumps(o, JSON_COMPACT);
        printf("%s\n", s ? s : "{}");
        free(s);
        json_decref(o);
    } else {
        printf("%s\t%s\t%s\n", t, entered ? "enter" : "exit", id);
    }
    return 0;
}

static const char *channel_names[] = {"email", "sms", "push", "app", "web", "social", "mail"};

static int export_csv(cli_ctx *ctx, patron_db *db, const roaring_bitmap_t *b, const char *channel,
                      const char *out)
{
    FILE *f = out ? fopen(out, "w") : stdout;
    if (!f) {
        cli_errorf("cannot write '%s'", out);
        return CLI_BADINPUT;
    }
    int ck = -1;
    for (int k = 0; channel && k < 7; k++)
        if (strcmp(channel, channel_names[k]) == 0)
            ck = k;
    const mview *v = db->view;
    /* The contact field a channel needs, when the profile has one. */
    int contact = ck == CK_EMAIL ? MV_EMAIL : ck == CK_SMS ? MV_PHONE : -1;
    fprintf(f, "member_id%s\n", contact == MV_EMAIL ? ",email" : contact == MV_PHONE ? ",phone" : "");
    roaring_uint32_iterator_t *it = roaring_create_iterator(b);
    uint64_t n = 0, dropped = 0;
    while (it->has_value) {
        uint32_t m = it->current_value;
        roaring_advance_uint32_iterator(it);
        if (ck >= 0 && !(db_consent(db, m, ck, ctx->now) && db_consent(db, m, CK_MARKETING, ctx->now))) {
            dropped++;
            continue;
        }
        const char *id = db->member_id[m];
        int quote = strpbrk(id, ",\"\n\r") != NULL;
        if (quote) {
            fputc('"', f);
            for (const char *p = id; *p; p++) {
                if (*p == '"')
                    fputc('"', f);
                fputc(*p, f);
            }
            fputc('"', f);
        } else {
            fputs(id, f);
        }
        if (contact >= 0) {
            size_t len;
            const char *s = strdict_str(&v->pstr, v->str[contact][m], &len);
            fprintf(f, ",%.*s", (int)len, s);
        }
        fputc('\n', f);
        n++;
    }
    roaring_free_uint32_iterator(it);
    if (out && fclose(f) != 0) {
        cli_errorf("writing '%s' failed", out);
        return CLI_INTERNAL;
    }
    if (!ctx->quiet && channel)
        fprintf(stderr, "exported %llu members; %llu left out without %s and marketing consent\n",
                (unsigned long long)n, (unsigned long long)dropped, channel);
    return CLI_OK;
}

static void print_segment_line(const segment *g, int json, json_t *arr)
{
    char t[TIME_FMT_LEN];
    time_format(g->as_of, t);
    uint64_t n = roaring_bitmap_get_cardinality(g->members);
    if (json) {
        json_array_append_new(arr, json_pack("{s:s,s:s,s:I,s:s,s:s?}", "name", g->name, "kind",
                                             g->kind == SEG_RULE ? "rule" : "static", "members",
                                             (json_int_t)n, "as_of", t, "rule", g->rule));
    } else {
        printf("%-24s %-6s %10llu  %s  %s\n", g->name, g->kind == SEG_RULE ? "rule" : "static",
               (unsigned long long)n, t, g->rule ? g->rule : "");
    }
}

int cmd_segment(cli_ctx *ctx, int argc, char **argv)
{
    if (argc < 2 || cli_is_help(argv[1])) {
        segment_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    const char *sub = argv[1];
    const char *pos[16];
    int npos = 0;
    const char *channel = NULL, *out = NULL, *since_s = NULL;
    int full = 0;
    for (int i = 2; i < argc; i++) {
        const char *v;
        int r;
        if (cli_is_help(argv[i])) {
            segment_usage(stdout);
            return CLI_OK;
        } else if ((r = cli_opt(argc, argv, &i, "--for", &v)) != 0) {
            if (r < 0)
                return CLI_USAGE;
            channel = v;
        } else if ((r = cli_opt(argc, argv, &i, "--out", &v)) != 0) {
            if (r < 0)
                return CLI_USAGE;
            out = v;
        } else if ((r = cli_opt(argc, argv, &i, "--since", &v)) != 0) {
            if (r < 0)
                return CLI_USAGE;
            since_s = v;
        } else if (cli_flag(argv[i], "--full")) {
            full = 1;
        } else if (npos < 16) {
            pos[npos++] = argv[i];
        } else {
            cli_errorf("segment: too many arguments");
            return CLI_USAGE;
        }
    }
    static const struct {
        const char *name;
        int min, max;
    } subs[] = {{"create", 2, 2}, {"update", 2, 2}, {"import", 2, 2}, {"list", 0, 0},
                {"show", 1, 1},   {"members", 1, 1}, {"drop", 1, 1},  {"export", 1, 1},
                {"overlap", 2, 16}, {"changes", 1, 1}, {"refresh", 0, 0}};
    int known = -1;
    for (size_t k = 0; k < sizeof subs / sizeof *subs; k++)
        if (strcmp(sub, subs[k].name) == 0)
            known = (int)k;
    if (known < 0) {
        cli_errorf("segment: unknown subcommand '%s'", sub);
        segment_usage(stderr);
        return CLI_USAGE;
    }
    if (npos < subs[known].min || npos > subs[known].max) {
        cli_errorf("segment %s: wrong number of arguments", sub);
        segment_usage(stderr);
        return CLI_USAGE;
    }
    if (channel) {
        int ok = 0;
        for (int k = 0; k < 7; k++)
            ok |= strcmp(channel, channel_names[k]) == 0;
        if (!ok) {
            cli_errorf("--for: '%s' is not a channel (email, sms, push, app, web, social, mail)", channel);
            return CLI_USAGE;
        }
    }
    int64_t since = INT64_MIN;
    if (since_s && cli_parse_ts("--since", since_s, &since))
        return CLI_USAGE;
    if (strcmp(sub, "import") == 0 && access(pos[1], R_OK) != 0) {
        cli_errorf("cannot open '%s': no such file or not readable", pos[1]);
        return CLI_NOTFOUND;
    }
    patron_db *db;
    int rc = open_view(ctx, &db);
    if (rc)
        return rc;
    patron_error err = {0};
    int64_t now = ctx->now;
    int code = CLI_OK;
    /* Models a segment reads are refreshed first when the data changed since. */
    if (strcmp(sub, "create") == 0 || strcmp(sub, "update") == 0)
        rc = text_reads_models(db, pos[1]) ? cli_models_ensure(ctx, db, NULL, &err) : PATRON_OK;
    else if (strcmp(sub, "list") && strcmp(sub, "drop") && strcmp(sub, "import"))
        rc = ensure_models_for_segments(ctx, db, &err);
    if (rc != PATRON_OK) {
        patron_close(db);
        return cli_fail(&err);
    }
    if (strcmp(sub, "create") == 0 || strcmp(sub, "update") == 0) {
        rc = sub[0] == 'c' ? segment_create(db, pos[0], pos[1], now, &err)
                           : segment_update(db, pos[0], pos[1], now, &err);
        if (rc == PATRON_OK && !ctx->quiet) {
            segment *g = segment_find(db, pos[0]);
            printf("segment '%s': %llu members\n", pos[0],
                   (unsigned long long)roaring_bitmap_get_cardinality(g->members));
        }
    } else if (strcmp(sub, "import") == 0) {
        rc = segment_import(db, pos[0], pos[1], now, &err);
        if (rc == PATRON_OK && !ctx->quiet) {
            segment *g = segment_find(db, pos[0]);
            printf("segment '%s': %llu members (static)\n", pos[0],
                   (unsigned long long)roaring_bitmap_get_cardinality(g->members));
        }
    } else if (strcmp(sub, "drop") == 0) {
        rc = segment_drop(db, pos[0], &err);
    } else if (strcmp(sub, "refresh") == 0) {
        rc = full ? segments_recompute(db, now, &err) : segments_sync(db, now, &err);
        if (rc == PATRON_OK && !ctx->quiet) {
            uint64_t ev = 0;
            for (size_t i = 0; i < db->segs->n; i++)
                ev += db->segs->s[i].evaluated;
            printf("%zu segments brought to --now (%llu member evaluations)\n", db->segs->n,
                   (unsigned long long)ev);
        }
    } else if (strcmp(sub, "list") == 0) {
        json_t *arr = ctx->json ? json_array() : NULL;
        for (size_t i = 0; i < db->segs->n; i++)
            print_segment_line(&db->segs->s[i], ctx->json, arr);
        if (arr) {
            char *t = json_dumps(arr, JSON_INDENT(2));
            printf("%s\n", t);
            free(t);
            json_decref(arr);
        }
    } else if (strcmp(sub, "show") == 0) {
        roaring_bitmap_t *b;
        if ((rc = segment_members_at(db, pos[0], now, &b, &err)) == PATRON_OK) {
            segment *g = segment_find(db, pos[0]);
            char c[TIME_FMT_LEN], a[TIME_FMT_LEN];
            time_format(g->created_at, c);
            time_format(now, a);
            uint64_t n = roaring_bitmap_get_cardinality(b);
            if (ctx->json) {
                json_t *o = json_pack("{s:s,s:s,s:s?,s:I,s:s,s:s}", "name", g->name, "kind",
                                      g->kind == SEG_RULE ? "rule" : "static", "rule", g->rule,
                                      "members", (json_int_t)n, "created_at", c, "as_of", a);
                char *t = json_dumps(o, JSON_INDENT(2));
                printf("%s\n", t);
                free(t);
                json_decref(o);
            } else {
                printf("name:       %s\nkind:       %s\n", g->name,
                       g->kind == SEG_RULE ? "rule" : "static");
                if (g->rule)
                    printf("rule:       %s\n", g->rule);
                printf("members:    %llu\ncreated_at: %s\nas_of:      %s\n", (unsigned long long)n, c, a);
            }
            roaring_bitmap_free(b);
        }
    } else if (strcmp(sub, "members") == 0 || strcmp(sub, "export") == 0) {
        roaring_bitmap_t *b;
        if ((rc = segment_members_at(db, pos[0], now, &b, &err)) == PATRON_OK) {
            if (sub[0] == 'm')
                print_members(db, b, ctx->json, 0);
            else
                code = export_csv(ctx, db, b, channel, out);
            roaring_bitmap_free(b);
        }
    } else if (strcmp(sub, "overlap") == 0) {
        roaring_bitmap_t *b[16] = {0};
        for (int i = 0; i < npos && rc == PATRON_OK; i++)
            rc = segment_members_at(db, pos[i], now, &b[i], &err);
        if (rc == PATRON_OK) {
            json_t *o = ctx->json ? json_object() : NULL, *pairs = ctx->json ? json_array() : NULL;
            for (int i = 0; i < npos; i++) {
                uint64_t n = roaring_bitmap_get_cardinality(b[i]);
                if (o)
                    json_object_set_new(o, pos[i], json_integer((json_int_t)n));
                else
                    printf("%-24s %llu\n", pos[i], (unsigned long long)n);
            }
            for (int i = 0; i < npos; i++)
                for (int j = i + 1; j < npos; j++) {
                    uint64_t n = roaring_bitmap_and_cardinality(b[i], b[j]);
                    if (pairs)
                        json_array_append_new(pairs, json_pack("{s:[s,s],s:I}", "segments", pos[i],
                                                               pos[j], "members", (json_int_t)n));
                    else
                        printf("%s & %s: %llu\n", pos[i], pos[j], (unsigned long long)n);
                }
            roaring_bitmap_t *all = roaring_bitmap_copy(b[0]);
            for (int i = 1; i < npos; i++)
                roaring_bitmap_and_inplace(all, b[i]);
            uint64_t na = roaring_bitmap_get_cardinality(all);
            roaring_bitmap_free(all);
            if (o) {
                json_object_set_new(o, "pairs", pairs);
                json_object_set_new(o, "all", json_integer((json_int_t)na));
                char *t = json_dumps(o, JSON_INDENT(2));
                printf("%s\n", t);
                free(t);
                json_decref(o);
            } else if (npos > 2) {
                printf("all %d: %llu\n", npos, (unsigned long long)na);
            }
        }
        for (int i = 0; i < npos; i++)
            if (b[i])
                roaring_bitmap_free(b[i]);
    } else if (strcmp(sub, "changes") == 0) {
        /* Bring the segment to now first, so the history is complete up to now. */
        roaring_bitmap_t *b;
        if ((rc = segment_members_at(db, pos[0], now, &b, &err)) == PATRON_OK) {
            roaring_bitmap_free(b);
            change_printer p = {db, ctx->json, 1};
            rc = segment_changes(db, pos[0], since, print_change, &p, &err);
        }
    }
    patron_close(db);
    if (rc != PATRON_OK)
        return cli_fail(&err);
    return code;
}

/* After an import: keep stored segments current.  Returns 0 or an exit code. */
int cli_refresh_segments(cli_ctx *ctx, patron_db *db)
{
    patron_error err = {0};
    if (segments_load(db, &err) != PATRON_OK)
        return cli_fail(&err);
    if (db->segs->n == 0)
        return 0;
    if (db_view_ensure(db, &err) != PATRON_OK || cli_attach(ctx, db, &err) != PATRON_OK ||
        segments_sync(db, ctx->now, &err) != PATRON_OK)
        return cli_fail(&err);
    return 0;
}

/* The names of the segments member m is in (for member show), as a JSON array. */
int cli_member_segments(cli_ctx *ctx, patron_db *db, const char *id, json_t **out)
{
    patron_error err = {0};
    *out = json_array();
    uint32_t m;
    if (!hmap_get(&db->member_ids, id, strlen(id), &m))
        return 0;
    if (db_view_ensure(db, &err) != PATRON_OK || segments_load(db, &err) != PATRON_OK ||
        cli_attach(ctx, db, &err) != PATRON_OK || cli_models_ensure(ctx, db, NULL, &err))
        return cli_fail(&err);
    for (size_t i = 0; i < db->segs->n; i++) {
        roaring_bitmap_t *b;
        if (segment_members_at(db, db->segs->s[i].name, ctx->now, &b, &err) != PATRON_OK)
            return cli_fail(&err);
        if (roaring_bitmap_contains(b, m))
            json_array_append_new(*out, json_string(db->segs->s[i].name));
        roaring_bitmap_free(b);
    }
    return 0;
}
