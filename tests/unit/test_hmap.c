/*
 * test_hmap.c -- the string map against a plain array model: random keys (with repeats,
 * empty and long ones) put, got, got-or-put and walked slot by slot across many
 * growths; keys that share their whole tag (a hash given by hand) are told apart by
 * their bytes; a hash whose low 32 bits are 0 (tag remapped to 1) is found again; a
 * reserved map does not move its slots while it fills up to what was reserved.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/hmap.h"
#include "ingest/rng.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UNIVERSE 60000

/* Key number k as text: "" for 0, long keys for some, else short ones. */
static size_t key_of(uint32_t k, char *buf, size_t cap)
{
    if (k == 0)
        return 0;
    if (k % 97 == 0) {
        int n = snprintf(buf, cap, "long-key-%u-", k);
        size_t len = (size_t)n;
        while (len + 8 < cap - 1 && len < 200)
            buf[len++] = (char)('a' + k % 26);
        buf[len] = '\0';
        return len;
    }
    return (size_t)snprintf(buf, cap, "k%u", k);
}

static void test_against_model(void **state)
{
    (void)state;
    rng r;
    rng_seed(&r, 11);
    hmap m;
    hmap_init(&m);
    int64_t *model = malloc(UNIVERSE * sizeof *model); /* -1: absent, else the value */
    assert_non_null(model);
    for (size_t i = 0; i < UNIVERSE; i++)
        model[i] = -1;
    size_t present = 0;
    char buf[256];
    for (int op = 0; op < 300000; op++) {
        uint32_t k = (uint32_t)rng_below(&r, UNIVERSE);
        size_t n = key_of(k, buf, sizeof buf);
        uint32_t v = (uint32_t)rng_u64(&r), got = 0;
        switch (rng_below(&r, 4)) {
        case 0:
            assert_int_equal(hmap_put(&m, buf, n, v), 0);
            present += model[k] < 0;
            model[k] = v;
            break;
        case 1: {
            int rc = hmap_get_or_put(&m, buf, n, v, &got);
            assert_int_equal(rc, model[k] >= 0);
            if (model[k] < 0) {
                model[k] = v;
                present++;
            }
            assert_int_equal(got, (uint32_t)model[k]);
            break;
        }
        default:
            assert_int_equal(hmap_get(&m, buf, n, &got), model[k] >= 0);
            if (model[k] >= 0)
                assert_int_equal(got, (uint32_t)model[k]);
        }
        assert_int_equal(m.count, present);
    }
    /* Every used slot holds a key of the model, at most 7/10 of the slots are used. */
    size_t used = 0;
    for (size_t i = 0; i < m.cap; i++) {
        const hmap_slot *s = &m.slots[i];
        if (!s->tag)
            continue;
        used++;
        size_t n;
        const char *key = hmap_slot_key(&m, s, &n);
        uint32_t k = 0;
        if (n) {
            assert_true(sscanf(key, key[0] == 'k' ? "k%u" : "long-key-%u-", &k) == 1);
        }
        assert_true(k < UNIVERSE && model[k] >= 0);
        assert_int_equal(s->value, (uint32_t)model[k]);
        assert_int_equal(n, key_of(k, buf, sizeof buf));
        assert_memory_equal(key, buf, n);
    }
    assert_int_equal(used, present);
    assert_true(used * 10 <= m.cap * 7);
    hmap_release(&m);
    free(model);
}

static void test_same_tag(void **state)
{
    (void)state;
    hmap m;
    hmap_init(&m);
    char buf[32];
    /* 500 keys under one hash: one probe run, told apart by their bytes. */
    for (uint32_t i = 0; i < 500; i++) {
        size_t n = (size_t)snprintf(buf, sizeof buf, "same-%u", i);
        assert_int_equal(hmap_put_hashed(&m, buf, n, 0x1234567800000005ull, i), 0);
    }
    for (uint32_t i = 0; i < 500; i++) {
        size_t n = (size_t)snprintf(buf, sizeof buf, "same-%u", i);
        uint32_t v = 0;
        assert_true(hmap_get_hashed(&m, buf, n, 0x1234567800000005ull, &v));
        assert_int_equal(v, i);
    }
    assert_false(hmap_get_hashed(&m, "same-500", 8, 0x1234567800000005ull, &(uint32_t){0}));
    /* A hash whose low 32 bits are 0 gets tag 1: still found, and the slot is used. */
    assert_int_equal(hmap_tag(0xabcdef0000000000ull), 1u);
    assert_int_equal(hmap_put_hashed(&m, "zero", 4, 0xabcdef0000000000ull, 77), 0);
    uint32_t v = 0;
    assert_true(hmap_get_hashed(&m, "zero", 4, 0xabcdef0000000000ull, &v));
    assert_int_equal(v, 77);
    assert_int_equal(m.count, 501);
    hmap_release(&m);
}

static void test_reserve_keeps_slots(void **state)
{
    (void)state;
    hmap m;
    hmap_init(&m);
    assert_int_equal(hmap_reserve(&m, 10000, 10000 * 8), 0);
    const hmap_slot *slots = m.slots;
    const char *arena = m.arena;
    assert_true(m.cap * 7 / 10 >= 10000);
    assert_true(m.cap / 2 * 7 / 10 < 10000); /* the smallest power of two that holds them */
    char buf[32];
    for (uint32_t i = 0; i < 10000; i++) {
        size_t n = (size_t)snprintf(buf, sizeof buf, "r%07u", i);
        assert_int_equal(hmap_put(&m, buf, n, i), 0);
    }
    assert_ptr_equal(m.slots, slots);
    assert_ptr_equal(m.arena, arena);
    for (uint32_t i = 0; i < 10000; i++) {
        size_t n = (size_t)snprintf(buf, sizeof buf, "r%07u", i);
        uint32_t v = 0;
        assert_true(hmap_get(&m, buf, n, &v));
        assert_int_equal(v, i);
    }
    hmap_release(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_model),
        cmocka_unit_test(test_same_tag),
        cmocka_unit_test(test_reserve_keeps_slots),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
