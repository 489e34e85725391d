/*
 * test_generate.c -- the synthetic data generator (src/ingest/generate.c) and its random
 * number generator (src/ingest/rng.c).
 *
 * The files are read back with the project's own CSV reader, number and time parsers,
 * and jansson for events.jsonl and params.json, so a data set that passes here is one
 * the importers can read.  Every test generates a few thousand members into its own
 * temporary directory and removes it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "base/mem.h"
#include "base/num.h"
#include "base/time.h"
#include "ingest/generate.h"
#include "ingest/input.h"
#include "ingest/rng.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const FILES[] = {"members.csv", "orders.csv", "events.jsonl", "params.json"};

/* ---- helpers ---------------------------------------------------------------------- */

static char *make_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[512];
    snprintf(tmpl, sizeof tmpl, "%s/patron-gen-XXXXXX", base && *base ? base : "/tmp");
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    return strdup(d);
}

static void remove_tmpdir(char *dir)
{
    char path[600];
    for (size_t i = 0; i < sizeof FILES / sizeof FILES[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, FILES[i]);
        unlink(path);
    }
    rmdir(dir);
    free(dir);
}

static void generate(const char *dir, uint64_t members, uint64_t seed, double bad_rows)
{
    gen_opts o;
    gen_opts_init(&o);
    o.members = members;
    o.seed = seed;
    o.out = dir;
    o.bad_rows = bad_rows;
    patron_error err = {0};
    int rc = gen_run(&o, &err);
    if (rc != PATRON_OK) fail_msg("gen_run: %s", err.message);
}

static char *slurp(const char *dir, const char *name, size_t *n)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)len + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
    buf[len] = '\0';
    fclose(f);
    *n = (size_t)len;
    return buf;
}

static json_t *load_params(const char *dir)
{
    char path[600];
    snprintf(path, sizeof path, "%s/params.json", dir);
    json_error_t jerr;
    json_t *p = json_load_file(path, 0, &jerr);
    if (!p) fail_msg("params.json: %s", jerr.text);
    return p;
}

static double num(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_number(v)) fail_msg("params.json: no number '%s'", key);
    return json_number_value(v);
}

static double count(json_t *params, const char *key)
{
    return num(json_object_get(params, "counts"), key);
}

static int64_t ts_of(json_t *params, const char *key)
{
    const char *s = json_string_value(json_object_get(params, key));
    assert_non_null(s);
    int64_t t;
    assert_int_equal(time_parse(s, strlen(s), &t), 0);
    return t;
}

static int field_eq(const csv_field *f, const char *s)
{
    return f->n == strlen(s) && memcmp(f->p, s, f->n) == 0;
}

/* What a pass over the files found.  A row is "bad" when it breaks a rule the importers
 * enforce (SPEC §2); every good row's timestamp must lie in the window. */
typedef struct scan {
    uint64_t member_rows, bad_member_rows;
    uint64_t order_rows, bad_order_rows, orders, returns, guest_orders, line_items, return_items;
    uint64_t events;
    uint64_t events_by_type[8];
} scan;

static void scan_members(const char *dir, int64_t start, int64_t end, scan *s)
{
    char path[600];
    snprintf(path, sizeof path, "%s/members.csv", dir);
    csv_reader *r;
    patron_error err = {0};
    assert_int_equal(csv_open(path, ',', &r, &err), PATRON_OK);
    const csv_field *f;
    size_t n;
    assert_int_equal(csv_next(r, &f, &n, &err), 1);
    assert_int_equal(n, 30);
    assert_true(field_eq(&f[0], "member_id") && field_eq(&f[29], "household_size"));
    char prev[160] = "";
    int rc;
    while ((rc = csv_next(r, &f, &n, &err)) == 1) {
        s->member_rows++;
        int64_t enrolled;
        int32_t day;
        int b;
        int bad = n != 30 || f[0].n == 0 || f[0].n > 128 ||
                  time_parse(f[1].p, f[1].n, &enrolled) != 0 ||
                  (f[6].n && time_parse_date(f[6].p, f[6].n, &day) != 0);
        for (size_t k = 17; !bad && k <= 26; k++)
            bad = f[k].n && num_parse_bool(f[k].p, f[k].n, &b) != 0;
        if (bad) {
            s->bad_member_rows++;
            continue;
        }
        assert_true(enrolled >= start && enrolled <= end);
        char id[160];
        memcpy(id, f[0].p, f[0].n);
        id[f[0].n] = '\0';
        assert_true(strcmp(id, prev) > 0); /* ids sort in file order */
        strcpy(prev, id);
        if (f[15].n) /* referred by an earlier member */
            assert_true(memcmp(f[15].p, id, f[15].n) < 0);
        assert_true(num_parse_bool(f[28].p, f[28].n, &b) == 0);
    }
    assert_int_equal(rc, 0);
    csv_free(r);
}

static void scan_orders(const char *dir, int64_t start, int64_t end, scan *s)
{
    char path[600];
    snprintf(path, sizeof path, "%s/orders.csv", dir);
    csv_reader *r;
    patron_error err = {0};
    assert_int_equal(csv_open(path, ',', &r, &err), PATRON_OK);
    const csv_field *f;
    size_t n;
    assert_int_equal(csv_next(r, &f, &n, &err), 1);
    assert_int_equal(n, 11);
    assert_true(field_eq(&f[0], "order_id") && field_eq(&f[10], "original_order_id"));
    char cur[64] = "", member[64] = "";
    int64_t last_o = 0, last_r = 0;
    int rc;
    while ((rc = csv_next(r, &f, &n, &err)) == 1) {
        s->order_rows++;
        assert_true(n >= 5 && f[0].n > 1 && f[0].n < sizeof cur);
        int is_return = f[0].p[0] == 'R';
        if (!field_eq(&f[0], cur)) { /* a new order: its rows are adjacent, ids ascend */
            memcpy(cur, f[0].p, f[0].n);
            cur[f[0].n] = '\0';
            memcpy(member, f[1].p, f[1].n);
            member[f[1].n] = '\0';
            int64_t idn;
            assert_int_equal(num_parse_i64(cur + 1, strlen(cur) - 1, &idn), 0);
            if (is_return) {
                assert_true(idn == last_r + 1);
                last_r = idn;
                s->returns++;
            } else {
                assert_true(cur[0] == 'O' && idn == last_o + 1);
                last_o = idn;
                s->orders++;
                s->guest_orders += f[1].n == 0;
            }
        }
        if (is_return)
            s->return_items++;
        else
            s->line_items++;
        int64_t ts, qty, price;
        int bad = n != 11 || f[2].n == 0 || time_parse(f[2].p, f[2].n, &ts) != 0 || f[3].n == 0 ||
                  num_parse_int(f[4].p, f[4].n, &qty) != 0 || qty == 0 ||
                  num_parse_money(f[5].p, f[5].n, &price) != 0 || price < 0 ||
                  !field_eq(&f[1], member);
        if (bad) {
            s->bad_order_rows++;
            continue;
        }
        assert_true(ts >= start && ts <= end);
        assert_true(is_return ? qty < 0 && f[10].n > 0 : qty > 0 && f[10].n == 0);
        assert_true(price > 0);
        assert_true(field_eq(&f[8], "web") || field_eq(&f[8], "app") || field_eq(&f[8], "store"));
        assert_true(field_eq(&f[8], "store") == (f[9].n > 0));
    }
    assert_int_equal(rc, 0);
    csv_free(r);
}

static void scan_events(const char *dir, int64_t start, int64_t end, scan *s)
{
    static const char *const types[8] = {"message",    "view",   "survey",  "referral",
                                         "redemption", "points", "consent", "custom"};
    size_t len;
    char *buf = slurp(dir, "events.jsonl", &len);
    char *line = buf;
    while (line < buf + len) {
        char *nl = memchr(line, '\n', (size_t)(buf + len - line));
        assert_non_null(nl);
        json_error_t jerr;
        json_t *e = json_loadb(line, (size_t)(nl - line), 0, &jerr);
        if (!e) fail_msg("events.jsonl: %s", jerr.text);
        s->events++;
        char want[32];
        snprintf(want, sizeof want, "E%09llu", (unsigned long long)s->events);
        assert_string_equal(json_string_value(json_object_get(e, "event_id")), want);
        const char *type = json_string_value(json_object_get(e, "type"));
        const char *ts = json_string_value(json_object_get(e, "ts"));
        const char *member = json_string_value(json_object_get(e, "member_id"));
        assert_non_null(type);
        assert_non_null(ts);
        assert_true(member && member[0] == 'M');
        int64_t t;
        assert_int_equal(time_parse(ts, strlen(ts), &t), 0);
        assert_true(t >= start && t <= end);
        int k = 0;
        while (k < 8 && strcmp(type, types[k]) != 0)
            k++;
        assert_true(k < 8);
        s->events_by_type[k]++;
        json_decref(e);
        line = nl + 1;
    }
    free(buf);
}

static void scan_all(const char *dir, scan *s)
{
    json_t *p = load_params(dir);
    int64_t start = ts_of(p, "start"), end = ts_of(p, "end");
    json_decref(p);
    memset(s, 0, sizeof *s);
    scan_members(dir, start, end, s);
    scan_orders(dir, start, end, s);
    scan_events(dir, start, end, s);
}

/* ---- rng ----------------------------------------------------------------------------- */

static void test_rng_streams(void **state)
{
    (void)state;
    rng a, b, c;
    rng_seed_stream(&a, 7, 1, 42);
    rng_seed_stream(&b, 7, 1, 42);
    rng_seed_stream(&c, 7, 1, 43);
    int differ = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t x = rng_u64(&a);
        assert_true(x == rng_u64(&b));
        differ += x != rng_u64(&c);
    }
    assert_true(differ > 990);
    rng_seed(&a, 0); /* seed 0 is fine */
    assert_true(rng_u64(&a) != 0 || rng_u64(&a) != 0);
}

static void test_rng_uniform(void **state)
{
    (void)state;
    rng r;
    rng_seed(&r, 1);
    enum { N = 200000 };
    double sum = 0;
    unsigned hist[10] = {0};
    for (int i = 0; i < N; i++) {
        double u = rng_double(&r);
        assert_true(u >= 0 && u < 1);
        sum += u;
        uint64_t k = rng_below(&r, 10);
        assert_true(k < 10);
        hist[k]++;
    }
    assert_true(fabs(sum / N - 0.5) < 0.005);
    for (int k = 0; k < 10; k++)
        assert_true(hist[k] > N / 10 * 0.95 && hist[k] < N / 10 * 1.05);
    assert_int_equal(rng_below(&r, 0), 0);
    assert_int_equal(rng_below(&r, 1), 0);
}

/* Sample mean and variance of a sampler against the exact ones. */
static void moments(double (*draw)(rng *, const double *), const double *arg, double mean,
                    double var)
{
    rng r;
    rng_seed(&r, 99);
    enum { N = 200000 };
    double s = 0, s2 = 0;
    for (int i = 0; i < N; i++) {
        double x = draw(&r, arg);
        s += x;
        s2 += x * x;
    }
    double m = s / N, v = s2 / N - m * m;
    double se = sqrt(var / N);
    if (fabs(m - mean) > 5 * se || fabs(v - var) > 0.05 * var)
        fail_msg("mean %g (want %g), variance %g (want %g)", m, mean, v, var);
}

static double draw_normal(rng *r, const double *a)
{
    (void)a;
    return rng_normal(r);
}
static double draw_gamma(rng *r, const double *a)
{
    return rng_gamma(r, a[0]);
}
static double draw_beta(rng *r, const double *a)
{
    return rng_beta(r, a[0], a[1]);
}
static double draw_exp(rng *r, const double *a)
{
    return rng_exp(r, a[0]);
}
static double draw_poisson(rng *r, const double *a)
{
    return (double)rng_poisson(r, a[0]);
}
static double draw_lognormal(rng *r, const double *a)
{
    return rng_lognormal(r, a[0], a[1]);
}

static void test_rng_distributions(void **state)
{
    (void)state;
    moments(draw_normal, NULL, 0, 1);
    const double g1[] = {0.75}, g2[] = {3.5};
    moments(draw_gamma, g1, 0.75, 0.75);
    moments(draw_gamma, g2, 3.5, 3.5);
    const double b1[] = {0.9, 5.0}, b2[] = {2, 2};
    moments(draw_beta, b1, 0.9 / 5.9, 0.9 * 5.0 / (5.9 * 5.9 * 6.9));
    moments(draw_beta, b2, 0.5, 4.0 / (16 * 5));
    const double e1[] = {2.0};
    moments(draw_exp, e1, 0.5, 0.25);
    const double p1[] = {1.7}, p2[] = {80.0};
    moments(draw_poisson, p1, 1.7, 1.7);
    moments(draw_poisson, p2, 80, 80); /* PTRS branch */
    const double l1[] = {1.0, 0.5};
    double lm = exp(1.0 + 0.125), lv = (exp(0.25) - 1) * exp(2.0 + 0.25);
    moments(draw_lognormal, l1, lm, lv);
}

static void test_rng_zipf(void **state)
{
    (void)state;
    const double exps[] = {1.07, 1.0, 0.6};
    for (int t = 0; t < 3; t++) {
        rng r;
        rng_zipf z;
        rng_seed(&r, 5);
        rng_zipf_init(&z, 100, exps[t]);
        enum { N = 300000 };
        unsigned hist[101] = {0};
        for (int i = 0; i < N; i++) {
            uint64_t k = rng_zipf_next(&r, &z);
            assert_true(k >= 1 && k <= 100);
            hist[k]++;
        }
        double h = 0;
        for (int k = 1; k <= 100; k++)
            h += pow(k, -exps[t]);
        const int ks[] = {1, 2, 5, 20};
        for (int i = 0; i < 4; i++) {
            double want = N * pow(ks[i], -exps[t]) / h;
            if (fabs(hist[ks[i]] - want) > 5 * sqrt(want))
                fail_msg("zipf s=%g: P(%d) count %u, want %.0f", exps[t], ks[i], hist[ks[i]], want);
        }
    }
    rng r;
    rng_zipf z;
    rng_seed(&r, 5);
    rng_zipf_init(&z, 1, 1.1);
    assert_int_equal(rng_zipf_next(&r, &z), 1);
}

/* ---- the generator ------------------------------------------------------------------ */

static void test_deterministic(void **state)
{
    (void)state;
    char *d1 = make_tmpdir(), *d2 = make_tmpdir(), *d3 = make_tmpdir();
    generate(d1, 2000, 11, 0.01);
    generate(d2, 2000, 11, 0.01);
    generate(d3, 2000, 12, 0.01);
    for (size_t i = 0; i < sizeof FILES / sizeof FILES[0]; i++) {
        size_t n1, n2, n3;
        char *a = slurp(d1, FILES[i], &n1), *b = slurp(d2, FILES[i], &n2),
             *c = slurp(d3, FILES[i], &n3);
        assert_true(n1 > 0);
        assert_true(n1 == n2 && memcmp(a, b, n1) == 0);
        assert_true(n1 != n3 || memcmp(a, c, n1) != 0); /* another seed, other data */
        free(a);
        free(b);
        free(c);
    }
    remove_tmpdir(d1);
    remove_tmpdir(d2);
    remove_tmpdir(d3);
}

static void test_headers(void **state)
{
    (void)state;
    char *d = make_tmpdir();
    generate(d, 50, 1, 0);
    size_t n;
    char *m = slurp(d, "members.csv", &n);
    const char *mh =
        "member_id,enrolled_at,email,phone,first_name,last_name,birth_date,gender,country,"
        "region,city,postal_code,language,signup_channel,preferred_channel,referred_by,"
        "interests,consent_email,consent_sms,consent_push,consent_app,consent_web,"
        "consent_social,consent_mail,consent_marketing,consent_profiling,"
        "consent_personalization,consent_updated_at,loyalty_card,household_size\n";
    assert_memory_equal(m, mh, strlen(mh));
    assert_memory_equal(m + strlen(mh), "M0000001,", 9);
    char *o = slurp(d, "orders.csv", &n);
    const char *oh =
        "order_id,member_id,ts,sku,qty,price,category,brand,channel,store,original_order_id\n";
    assert_memory_equal(o, oh, strlen(oh));
    char *e = slurp(d, "events.jsonl", &n);
    assert_memory_equal(e, "{\"event_id\":\"E000000001\",\"type\":", 32);
    free(m);
    free(o);
    free(e);
    remove_tmpdir(d);
}

/* The files agree with the counts in params.json, and the realised process with the
 * parameters it claims. */
static void test_process(void **state)
{
    (void)state;
    char *d = make_tmpdir();
    generate(d, 5000, 3, 0);
    scan s;
    scan_all(d, &s);
    json_t *p = load_params(d);
    assert_int_equal(s.member_rows, 5000);
    assert_int_equal(s.bad_member_rows, 0);
    assert_int_equal(s.bad_order_rows, 0);
    assert_int_equal(s.orders, (uint64_t)count(p, "orders"));
    assert_int_equal(s.guest_orders, (uint64_t)count(p, "guest_orders"));
    assert_int_equal(s.returns, (uint64_t)count(p, "returns"));
    assert_int_equal(s.line_items, (uint64_t)count(p, "line_items"));
    assert_int_equal(s.return_items, (uint64_t)count(p, "return_items"));
    assert_int_equal(s.events, (uint64_t)count(p, "events"));
    assert_int_equal(s.events_by_type[3], (uint64_t)count(p, "referrals"));
    for (int k = 0; k < 8; k++)
        assert_true(s.events_by_type[k] > 0);

    /* BG/NBD: realised member orders against the sum of each member's expectation given
     * its lambda, p and time from first purchase to the end; mean lambda and p against
     * r / alpha and a / (a + b) */
    double orders = (double)(s.orders - s.guest_orders);
    double expected = count(p, "expected_member_orders");
    if (fabs(orders / expected - 1) > 0.05)
        fail_msg("member orders %.0f, expected %.1f", orders, expected);
    double r = num(p, "r"), alpha = num(p, "alpha"), a = num(p, "a"), b = num(p, "b");
    assert_true(fabs(count(p, "mean_lambda") / (r / alpha) - 1) < 0.08);
    assert_true(fabs(count(p, "mean_p") / (a / (a + b)) - 1) < 0.08);
    double per_member = orders / 5000;
    assert_true(per_member > 3 && per_member < 6);

    /* returns and guests: a share of all orders */
    double all = (double)s.orders;
    double ret = (double)s.returns / all, guest = (double)s.guest_orders / all;
    if (fabs(ret - num(p, "return_rate")) > 0.008)
        fail_msg("return share %.4f, configured %.4f", ret, num(p, "return_rate"));
    if (fabs(guest - num(p, "guest_share")) > 0.008)
        fail_msg("guest share %.4f, configured %.4f", guest, num(p, "guest_share"));
    double items = (double)s.line_items / all;
    if (fabs(items / num(p, "items_per_order_mean") - 1) > 0.15)
        fail_msg("items per order %.2f, target %.2f", items, num(p, "items_per_order_mean"));
    double events = (double)s.events / 5000;
    assert_true(events >= 5 && events <= 10);
    json_decref(p);
    remove_tmpdir(d);
}

static void test_window(void **state)
{
    (void)state;
    char *d = make_tmpdir();
    gen_opts o;
    gen_opts_init(&o);
    o.members = 2000;
    o.out = d;
    o.start = time_days_from_civil(2024, 1, 1) * TIME_DAY;
    o.end = time_days_from_civil(2024, 3, 31) * TIME_DAY + TIME_DAY - 1;
    patron_error err = {0};
    assert_int_equal(gen_run(&o, &err), PATRON_OK);
    json_t *p = load_params(d);
    assert_true(ts_of(p, "start") == o.start && ts_of(p, "end") == o.end);
    json_decref(p);
    scan s;
    scan_all(d, &s); /* asserts every timestamp lies in the window */
    assert_true(s.orders > 1000);
    remove_tmpdir(d);
}

static void test_bad_rows(void **state)
{
    (void)state;
    char *good = make_tmpdir(), *d = make_tmpdir();
    generate(good, 3000, 5, 0);
    generate(d, 3000, 5, 0.05);
    scan s0, s;
    scan_all(good, &s0);
    scan_all(d, &s);
    json_t *p = load_params(d);
    /* every malformed row is caught by the importers' rules, and only those */
    assert_int_equal(s.bad_member_rows, (uint64_t)count(p, "bad_member_rows"));
    assert_int_equal(s.bad_order_rows, (uint64_t)count(p, "bad_order_rows"));
    assert_true(s.bad_member_rows > 0.02 * 3000 && s.bad_member_rows < 0.08 * 3000);
    assert_true(s.bad_order_rows > 0.03 * s.order_rows && s.bad_order_rows < 0.07 * s.order_rows);
    assert_true(count(p, "bad_orders") > 0 && count(p, "bad_orders") <= count(p, "bad_order_rows"));
    /* the rest is the well-formed data set: same rows, same orders, same events */
    assert_int_equal(s.member_rows, s0.member_rows);
    assert_int_equal(s.order_rows, s0.order_rows);
    assert_int_equal(s.orders, s0.orders);
    size_t n0, n1;
    char *e0 = slurp(good, "events.jsonl", &n0), *e1 = slurp(d, "events.jsonl", &n1);
    assert_true(n0 == n1 && memcmp(e0, e1, n0) == 0);
    free(e0);
    free(e1);
    json_decref(p);
    remove_tmpdir(good);
    remove_tmpdir(d);
}

static void test_errors(void **state)
{
    (void)state;
    char *d = make_tmpdir();
    gen_opts o;
    gen_opts_init(&o);
    o.members = 10;
    o.out = d;
    patron_error err = {0};
    o.start = o.end;
    assert_int_equal(gen_run(&o, &err), PATRON_EUSAGE);
    gen_opts_init(&o);
    o.out = d;
    o.bad_rows = 1.5;
    assert_int_equal(gen_run(&o, &err), PATRON_EUSAGE);
    o.bad_rows = NAN;
    assert_int_equal(gen_run(&o, &err), PATRON_EUSAGE);
    o.bad_rows = 0;
    o.out = "";
    assert_int_equal(gen_run(&o, &err), PATRON_EUSAGE);

    /* a directory that cannot be created: under a regular file */
    generate(d, 5, 1, 0);
    char under[600];
    snprintf(under, sizeof under, "%s/params.json/sub", d);
    o.out = under;
    o.members = 5;
    assert_int_equal(gen_run(&o, &err), PATRON_EIO);
    assert_non_null(strstr(err.message, "params.json"));

    /* nested directories are created */
    char nested[600], inner[600];
    snprintf(inner, sizeof inner, "%s/a", d);
    snprintf(nested, sizeof nested, "%s/a/b", d);
    o.out = nested;
    assert_int_equal(gen_run(&o, &err), PATRON_OK);
    char *dn = strdup(nested);
    remove_tmpdir(dn);
    rmdir(inner);
    remove_tmpdir(d);
}

/* Every allocation failure is reported as out of memory, and nothing leaks (ASan). */
static void test_out_of_memory(void **state)
{
    (void)state;
    char *d = make_tmpdir();
    gen_opts o;
    gen_opts_init(&o);
    o.members = 20;
    o.out = d;
    int ok = 0;
    for (long nth = 1; nth < 200 && !ok; nth++) {
        patron_error err = {0};
        mem_fail_after(nth);
        int rc = gen_run(&o, &err);
        mem_fail_after(0);
        if (rc == PATRON_OK)
            ok = 1;
        else
            assert_int_equal(rc, PATRON_ENOMEM);
    }
    assert_true(ok);
    remove_tmpdir(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rng_streams),       cmocka_unit_test(test_rng_uniform),
        cmocka_unit_test(test_rng_distributions), cmocka_unit_test(test_rng_zipf),
        cmocka_unit_test(test_deterministic),     cmocka_unit_test(test_headers),
        cmocka_unit_test(test_process),           cmocka_unit_test(test_window),
        cmocka_unit_test(test_bad_rows),          cmocka_unit_test(test_errors),
        cmocka_unit_test(test_out_of_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
