/*
 * test_jcanon.c -- the canonical writer against jansson, its oracle: for random JSON
 * objects (nested values, keys out of order, escapes, control bytes, UTF-8, integers at
 * the int64 edges, reals of every shape, random white space) and byte-level mutations of
 * a stored event, jcanon() writes exactly what json_dumps(JSON_SORT_KEYS | JSON_COMPACT)
 * writes for json_loadb's tree, or declines (answers 1) for what it leaves to jansson.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/jcanon.h"
#include "base/jscan.h"
#include "ingest/rng.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

/* Compares jcanon with jansson on text[0..n); returns 0 declined or not an object,
 * 1 compared. */
static int same(const char *text, size_t n, int *declined)
{
    json_error_t je;
    json_t *j = json_loadb(text, n, 0, &je);
    jsval v;
    int ok = jscan_doc(text, n, &v) == 0 && v.kind == JS_OBJ;
    assert_int_equal(ok, json_is_object(j));
    if (!ok) {
        json_decref(j);
        return 0;
    }
    jcbuf b = {0};
    int rc = jcanon(&v, &b);
    assert_true(rc == 0 || rc == 1);
    char *want = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);
    if (rc == 0) {
        if (strlen(want) != b.n || memcmp(want, b.p, b.n) != 0)
            fprintf(stderr, "input  %.*s\njansson %s\njcanon  %s\n", (int)n, text, want, b.p);
        assert_int_equal(strlen(want), b.n);
        assert_memory_equal(want, b.p, b.n);
    } else {
        (*declined)++;
    }
    free(want);
    jcbuf_free(&b);
    json_decref(j);
    return rc == 0;
}

typedef struct out {
    char buf[16384];
    size_t n;
} out;

static void emit(out *o, const char *s, size_t n)
{
    if (o->n + n < sizeof o->buf) {
        memcpy(o->buf + o->n, s, n);
        o->n += n;
    }
}

static void emits(out *o, const char *s)
{
    emit(o, s, strlen(s));
}

static void space(out *o, rng *r)
{
    static const char *const ws[] = {"", "", "", " ", "\n", "\t ", "\r\n"};
    emits(o, ws[rng_below(r, sizeof ws / sizeof *ws)]);
}

static void rand_string(out *o, rng *r, int key, int index)
{
    static const char *const atoms[] = {
        "a", "b", "z", "A", "_", "1", "/", " ", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
        "\\\"", "\\\\", "\\/", "\\b", "\\f", "\\n", "\\r", "\\t", "\\u00e9", "\\u0001",
        "\\u001f", "\\u007f", "\\u0041", "\\ud83d\\ude00", "\\u20AC", "\x7f"};
    emit(o, "\"", 1);
    int len = (int)rng_below(r, key ? 4 : 9);
    for (int i = 0; i < len; i++) {
        /* keys mostly plain, so that most objects are written and not declined */
        size_t k = key && rng_below(r, 100) ? rng_below(r, 11)
                                            : rng_below(r, sizeof atoms / sizeof *atoms);
        emits(o, atoms[k]);
    }
    if (key && index >= 0) { /* distinct keys, but for a rare repeat (index -1) */
        char b[16];
        snprintf(b, sizeof b, "%d", index);
        emits(o, b);
    }
    emit(o, "\"", 1);
}

static void rand_number(out *o, rng *r)
{
    static const char *const nums[] = {
        "0", "-0", "1", "-1", "42", "9223372036854775807", "-9223372036854775808",
        "0.1", "-0.0", "0.5", "12.25", "1e5", "1E5", "1e+5", "1e-5", "1.5e300", "-2.5E-300",
        "123456789012345678", "0.30000000000000004", "1e22", "1e21", "1e-7", "100.0",
        "3.141592653589793", "2e-320", "1e16", "123e-2"};
    if (rng_below(r, 3) == 0) {
        char b[64];
        long long x = (long long)(rng_u64(r) >> (1 + rng_below(r, 63)));
        snprintf(b, sizeof b, "%lld", rng_below(r, 2) ? x : -x);
        emits(o, b);
    } else if (rng_below(r, 2) == 0) {
        char b[64];
        snprintf(b, sizeof b, "%.*g", (int)(1 + rng_below(r, 17)), (rng_double(r) - 0.5) * 1e6);
        emits(o, b);
    } else {
        emits(o, nums[rng_below(r, sizeof nums / sizeof *nums)]);
    }
}

static void rand_value(out *o, rng *r, int depth);

static void rand_object(out *o, rng *r, int depth)
{
    emit(o, "{", 1);
    int n = (int)rng_below(r, depth ? 5 : 24);
    for (int i = 0; i < n; i++) {
        if (i)
            emit(o, ",", 1);
        space(o, r);
        rand_string(o, r, 1, rng_below(r, 400) ? i : -1);
        space(o, r);
        emit(o, ":", 1);
        space(o, r);
        rand_value(o, r, depth + 1);
        space(o, r);
    }
    emit(o, "}", 1);
}

static void rand_value(out *o, rng *r, int depth)
{
    unsigned k = (unsigned)rng_below(r, depth > 3 ? 6 : 8);
    switch (k) {
    case 0: rand_string(o, r, 0, 0); break;
    case 1: case 2: rand_number(o, r); break;
    case 3: emits(o, "true"); break;
    case 4: emits(o, "false"); break;
    case 5: emits(o, "null"); break;
    case 6: rand_object(o, r, depth); break;
    default: {
        emit(o, "[", 1);
        int n = (int)rng_below(r, 5);
        for (int i = 0; i < n; i++) {
            if (i)
                emit(o, ",", 1);
            space(o, r);
            rand_value(o, r, depth + 1);
        }
        emit(o, "]", 1);
        break;
    }
    }
}

static void test_random_documents(void **state)
{
    (void)state;
    rng r;
    rng_seed(&r, 11);
    static out o;
    int compared = 0, declined = 0;
    for (int t = 0; t < 20000; t++) {
        o.n = 0;
        space(&o, &r);
        rand_object(&o, &r, 0);
        space(&o, &r);
        compared += same(o.buf, o.n, &declined);
    }
    /* most were written byte for byte; some had a key twice or an escaped key */
    assert_true(compared > 15000);
    assert_true(declined > 10);
}

static void test_edge_cases(void **state)
{
    (void)state;
    static const char *const docs[] = {
        "{}", "{\"a\":{}}", "{\"a\":[]}", "{\"b\":1,\"a\":2}", "{\"ab\":1,\"a\":2,\"\":3}",
        "{\"a\":1,\"a\":2}", "{\"x\":{\"k\":1,\"k\":[]}}", "{\"\\u0061\":1}",
        "{\"r\":1e400}", "{\"r\":1e-400}", "{\"r\":-0.0}", "{\"r\":5e-324}",
        "{\"r\":1.7976931348623157e308}", "{\"i\":-0}", "{\"s\":\"\\u0000\"}",
        "{\"s\":\"\\ud83d\\ude00\\u00e9\\\"\\\\\\/\"}", "{\"s\":\"\x7f\"}",
        "{\"type\":\"view\",\"member_id\":\"M1\",\"ts\":\"2024-01-01T00:00:00Z\",\"sku\":\"S\"}",
    };
    int declined = 0, compared = 0;
    for (size_t i = 0; i < sizeof docs / sizeof *docs; i++)
        compared += same(docs[i], strlen(docs[i]), &declined);
    assert_int_equal(declined, 3); /* the two repeated keys and the escaped one */
    assert_int_equal(compared, 13);
}

static void test_mutated_events(void **state)
{
    (void)state;
    static const char seed[] =
            "{\"event_id\":\"E000000004\",\"type\":\"message\",\"member_id\":\"M0000001\","
            "\"ts\":\"2023-12-24T10:09:03Z\",\"campaign_id\":\"CMP-0026\",\"channel\":\"email\","
            "\"score\":4.5,\"tags\":[\"a\",{\"z\":1,\"y\":-2}],\"note\":\"caf\\u00e9 \\\"x\\\"\",\"ok\":true}";
    static const char alphabet[] = "{}[]\",:\\u0123456789.eE+-tfnrl aZ\xc3\xa9";
    rng r;
    rng_seed(&r, 5);
    char buf[sizeof seed + 8];
    int compared = 0, declined = 0;
    for (int t = 0; t < 20000; t++) {
        size_t n = sizeof seed - 1;
        memcpy(buf, seed, n);
        int edits = 1 + (int)rng_below(&r, 3);
        for (int e = 0; e < edits; e++) {
            size_t at = (size_t)rng_below(&r, n);
            switch (rng_below(&r, 3)) {
            case 0: buf[at] = alphabet[rng_below(&r, sizeof alphabet - 1)]; break;
            case 1:
                memmove(buf + at, buf + at + 1, n - at - 1);
                n--;
                break;
            default:
                if (n + 1 < sizeof buf) {
                    memmove(buf + at + 1, buf + at, n - at);
                    buf[at] = alphabet[rng_below(&r, sizeof alphabet - 1)];
                    n++;
                }
                break;
            }
        }
        compared += same(buf, n, &declined);
    }
    assert_true(compared > 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_edge_cases),
        cmocka_unit_test(test_random_documents),
        cmocka_unit_test(test_mutated_events),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
