/*
 * testutil.h -- small helpers shared by unit tests (include after <cmocka.h>).
 */
#ifndef PATRON_TESTS_TESTUTIL_H
#define PATRON_TESTS_TESTUTIL_H

#include "patron/patron.h"

#include <stdio.h>

/* Imports the file at `now` with default options; the test fails (naming the file and the
 * error) unless the import succeeds. */
static inline void test_import_at(patron_db *db, patron_import_kind kind, const char *path, int64_t now)
{
    patron_import_opts o;
    patron_import_opts_init(&o);
    o.now = now;
    patron_import_result res;
    patron_error err = {0};
    int rc = patron_import(db, kind, path, &o, &res, &err);
    if (rc)
        fprintf(stderr, "import %s: %s\n", path, err.message);
    assert_int_equal(rc, 0);
}

#endif
