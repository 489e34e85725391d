/*
 * test_jscan.c -- the in-place JSON reader against jansson, its oracle: on hand-picked
 * edge cases and on thousands of byte-level mutations of a stored profile, jscan_doc
 * accepts exactly what json_loadb accepts, and every member of an accepted object has
 * the kind, number and string jansson gives it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/jscan.h"
#include "ingest/rng.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* Compares one value with jansson's; recurses into arrays and objects. */
static void same_value(const jsval *v, json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        assert_int_equal(v->kind, JS_OBJ);
        const char *pos = NULL;
        jsval k, x;
        size_t n = 0;
        while (jscan_next(v, &pos, &k, &x)) {
            char key[256];
            size_t kn;
            const char *ks = jscan_str(&k, key, sizeof key, &kn);
            char name[256];
            assert_true(kn < sizeof name);
            memcpy(name, ks, kn);
            name[kn] = 0;
            json_t *jv = json_object_get(j, name);
            assert_non_null(jv);
            same_value(&x, jv);
            n++;
        }
        assert_int_equal(n, json_object_size(j));
        break;
    }
    case JSON_ARRAY: {
        assert_int_equal(v->kind, JS_ARR);
        const char *pos = NULL;
        jsval x;
        size_t n = 0;
        while (jscan_next(v, &pos, NULL, &x))
            same_value(&x, json_array_get(j, n++));
        assert_int_equal(n, json_array_size(j));
        break;
    }
    case JSON_STRING: {
        assert_int_equal(v->kind, JS_STR);
        char buf[4096];
        size_t n;
        const char *s = jscan_str(v, buf, sizeof buf, &n);
        assert_int_equal(n, json_string_length(j));
        assert_memory_equal(s, json_string_value(j), n);
        break;
    }
    case JSON_INTEGER:
        assert_int_equal(v->kind, JS_INT);
        assert_true(jscan_int(v) == json_integer_value(j));
        break;
    case JSON_REAL:
        assert_int_equal(v->kind, JS_REAL);
        assert_true(jscan_real(v) == json_real_value(j));
        break;
    case JSON_TRUE:
        assert_int_equal(v->kind, JS_TRUE);
        break;
    case JSON_FALSE:
        assert_int_equal(v->kind, JS_FALSE);
        break;
    case JSON_NULL:
        assert_int_equal(v->kind, JS_NULL);
        break;
    }
}

/* Both readers agree on text[0..n); returns 1 when it was accepted. */
static int agree(const char *text, size_t n)
{
    json_error_t je;
    json_t *j = json_loadb(text, n, JSON_DECODE_ANY, &je);
    jsval v;
    int ok = jscan_doc(text, n, &v) == 0;
    if (ok != (j != NULL))
        fprintf(stderr, "disagree (jscan %s): %.*s\n", ok ? "accepts" : "refuses", (int)n, text);
    assert_int_equal(ok, j != NULL);
    if (j)
        same_value(&v, j);
    json_decref(j);
    return ok;
}

static void test_edge_cases(void **state)
{
    (void)state;
    static const char *const docs[] = {
        "{}", "[]", " {\"a\" : [1, -2, 3.5e3, -0, 0.25, 1E-2, true, false, null] } ",
        "{\"s\":\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\\u00e9\\u20ac\\ud83d\\ude00\"}",
        "{\"caf\\u00e9\":1,\"k\":{\"x\":[{\"y\":\"}\"}]}}", "\"x\"", "12", "-1.5",
        "{\"big\":9223372036854775807,\"neg\":-9223372036854775808}",
        "{\"big\":9223372036854775808}", "{\"r\":1e400}", "{\"r\":1e-400}",
        "{\"a\":01}", "{\"a\":1.}", "{\"a\":.5}", "{\"a\":+1}", "{\"a\":1e}", "{\"a\":-}",
        "{\"a\":\"\\u0000\"}", "{\"a\":\"\\ud800\"}", "{\"a\":\"\\udc00x\"}", "{\"a\":\"\\x\"}",
        "{\"a\":\"tab\there\"}", "{\"a\":\"\xc3\xa9\"}", "{\"a\":\"\xc3\"}", "{\"a\":\"\xed\xa0\x80\"}",
        "{\"a\":\"\xc0\xaf\"}", "{\"a\":1,}", "[1,]", "{\"a\" 1}", "{a:1}", "{\"a\":1} x", "",
        "  ", "{\"a\":tru}", "{\"a\":nul}", "[[[[[[[[[[]]]]]]]]]]", "{\"a\":[1 2]}", "\xef\xbb\xbf{}",
    };
    int accepted = 0;
    for (size_t i = 0; i < sizeof docs / sizeof *docs; i++)
        accepted += agree(docs[i], strlen(docs[i]));
    assert_true(accepted >= 10); /* the valid ones were compared value by value */
}

static void test_mutated_profiles(void **state)
{
    (void)state;
    static const char seed[] =
            "{\"attributes\":{\"household_size\":2,\"loyalty_card\":true,\"score\":0.5},"
            "\"birth_date\":\"1970-07-09\",\"city\":\"Amsterdam\",\"consent\":{\"app\":{\"source\":"
            "\"import\",\"status\":\"granted\",\"updated_at\":\"2023-01-01T00:00:21Z\"}},"
            "\"country\":\"NL\",\"email\":\"s\\u00e9\\\"1@example.com\",\"interests\":[\"fashion\","
            "\"running\"],\"last_name\":\"de Vries\",\"phone\":null}";
    static const char alphabet[] = "{}[]\",:\\u0123456789.eE+-tfnrl aZ\xc3\xa9";
    rng r;
    rng_seed(&r, 7);
    char buf[sizeof seed + 8];
    int accepted = 0;
    for (int t = 0; t < 20000; t++) {
        size_t n = sizeof seed - 1;
        memcpy(buf, seed, n);
        int edits = 1 + (int)rng_below(&r, 3);
        for (int e = 0; e < edits; e++) {
            size_t at = (size_t)rng_below(&r, n);
            switch (rng_below(&r, 3)) {
            case 0: /* replace a byte */
                buf[at] = alphabet[rng_below(&r, sizeof alphabet - 1)];
                break;
            case 1: /* delete a byte */
                memmove(buf + at, buf + at + 1, n - at - 1);
                n--;
                break;
            default: /* insert a byte */
                if (n + 1 < sizeof buf) {
                    memmove(buf + at + 1, buf + at, n - at);
                    buf[at] = alphabet[rng_below(&r, sizeof alphabet - 1)];
                    n++;
                }
                break;
            }
        }
        accepted += agree(buf, n);
    }
    assert_true(accepted > 1000 && accepted < 19000); /* both sides of the line were tried */
}

static void test_lookup(void **state)
{
    (void)state;
    const char *t = "{\"a\":{\"b\":\"{x}\"},\"c\":[1,{\"d\":2}],\"e\":\"f\\u0067\",\"g\":7}";
    jsval doc;
    assert_int_equal(jscan_doc(t, strlen(t), &doc), 0);
    jsval g = jscan_get(&doc, "g"), e = jscan_get(&doc, "e"), none = jscan_get(&doc, "b");
    assert_int_equal(g.kind, JS_INT);
    assert_int_equal(jscan_int(&g), 7);
    assert_true(jscan_str_eq(&e, "fg"));
    assert_int_equal(none.kind, JS_NONE);
    jsval a = jscan_get(&doc, "a"), b = jscan_get(&a, "b");
    assert_true(jscan_str_eq(&b, "{x}"));
    assert_int_equal(jscan_get(&g, "x").kind, JS_NONE); /* not an object */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_edge_cases),
        cmocka_unit_test(test_mutated_profiles),
        cmocka_unit_test(test_lookup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
