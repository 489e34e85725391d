/*
 * test_csv.c -- the byte sources, the CSV reader and the line reader (src/ingest/input.c).
 *
 * Most cases run over csv_open_mem(), whose source hands out small odd-sized pieces, so
 * records cross the buffer end all the time; file cases (plain, gzip written here with
 * zlib, concatenated gzip, stdin) run over a temporary directory.  Each case states the
 * records it expects as text: one line per record, "LINE:" then the fields separated
 * by '|', so that a failure shows the whole parse.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmocka.h>
#include <zlib.h>

#include "base/mem.h"
#include "ingest/input.h"

/* ---- helpers ------------------------------------------------------------------------- */

typedef struct text {
    char *p;
    size_t n, cap;
} text;

static void text_add(text *t, const char *s, size_t n)
{
    if (t->n + n + 1 > t->cap) {
        t->cap = (t->n + n + 1) * 2;
        t->p = realloc(t->p, t->cap);
        assert_non_null(t->p);
    }
    memcpy(t->p + t->n, s, n);
    t->n += n;
    t->p[t->n] = '\0';
}

static void text_addf(text *t, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    text_add(t, tmp, (size_t)k);
}

/* Reads every record; returns the final status, the dump in *out (caller frees). */
static int dump_reader(csv_reader *r, char **out, patron_error *err)
{
    text t = {0};
    text_add(&t, "", 0);
    const csv_field *f;
    size_t nf;
    int rc;
    while ((rc = csv_next(r, &f, &nf, err)) == 1) {
        text_addf(&t, "%llu:", (unsigned long long)csv_line(r));
        for (size_t i = 0; i < nf; i++) {
            if (i)
                text_add(&t, "|", 1);
            text_add(&t, f[i].p, f[i].n);
        }
        text_add(&t, "\n", 1);
    }
    *out = t.p;
    return rc;
}

static char *dump_mem(const char *data, size_t n, char delim)
{
    csv_reader *r;
    patron_error err;
    assert_int_equal(csv_open_mem("t.csv", data, n, delim, &r, &err), 0);
    char *out;
    int rc = dump_reader(r, &out, &err);
    if (rc != 0)
        fail_msg("unexpected failure: %s", err.message);
    csv_free(r);
    return out;
}

static void expect(const char *data, char delim, const char *want)
{
    char *got = dump_mem(data, strlen(data), delim);
    if (strcmp(got, want) != 0)
        fail_msg("input:\n%s\n--- got:\n%s--- want:\n%s", data, got, want);
    free(got);
}

/* Expects the input to fail with exactly this message, and to stay failed. */
static void expect_error(const char *data, char delim, const char *message)
{
    csv_reader *r;
    patron_error err;
    assert_int_equal(csv_open_mem("t.csv", data, strlen(data), delim, &r, &err), 0);
    char *out;
    int rc = dump_reader(r, &out, &err);
    free(out);
    assert_int_equal(rc, PATRON_EINPUT);
    assert_int_equal(err.code, PATRON_EINPUT);
    assert_string_equal(err.message, message);
    const csv_field *f;
    size_t nf;
    memset(&err, 0, sizeof err);
    assert_int_equal(csv_next(r, &f, &nf, &err), PATRON_EINPUT);
    assert_string_equal(err.message, message);
    assert_int_equal(csv_next(r, &f, &nf, NULL), PATRON_EINPUT);
    csv_free(r);
}

static char tmpdir[64];

static int make_tmpdir(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/patron_test_csv_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_tmpdir(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *tmp_path(const char *name)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    return path;
}

static void write_file(const char *path, const char *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static void write_gz(const char *path, const char *mode, const char *data, size_t n)
{
    gzFile g = gzopen(path, mode);
    assert_non_null(g);
    while (n) {
        unsigned k = n > (1u << 30) ? 1u << 30 : (unsigned)n;
        assert_int_equal(gzwrite(g, data, k), (int)k);
        data += k;
        n -= k;
    }
    assert_int_equal(gzclose(g), Z_OK);
}

static char *dump_file(const char *path, char delim)
{
    csv_reader *r;
    patron_error err;
    if (csv_open(path, delim, &r, &err) != 0)
        fail_msg("open: %s", err.message);
    char *out;
    int rc = dump_reader(r, &out, &err);
    if (rc != 0)
        fail_msg("unexpected failure: %s", err.message);
    assert_int_equal(csv_consumed(r), csv_size(r));
    csv_free(r);
    return out;
}

/* ---- RFC 4180 ------------------------------------------------------------------------ */

static void test_basic(void **state)
{
    (void)state;
    expect("a,b,c\n1,2,3\n", ',', "1:a|b|c\n2:1|2|3\n");
    expect("a\n", ',', "1:a\n");
    expect("", ',', "");
    expect(",\n", ',', "1:|\n");
    expect("a,,c,\n", ',', "1:a||c|\n");
    expect(" a , b \n", ',', "1: a | b \n"); /* blanks are data in delimiter mode */
    expect("a,b\n1\n1,2,3\n", ',', "1:a|b\n2:1\n3:1|2|3\n"); /* widths are the caller's */
}

static void test_quoted(void **state)
{
    (void)state;
    expect("\"a,b\",c\n", ',', "1:a,b|c\n");
    expect("\"\",x\n", ',', "1:|x\n");
    expect("\"he said \"\"hi\"\"\",2\n", ',', "1:he said \"hi\"|2\n");
    expect("\"\"\"\"\n", ',', "1:\"\n");
    expect("\"\"\"\"\"\"\n", ',', "1:\"\"\n");
    expect("\"a\"\"\",\"\"\"b\",\"c\"\n", ',', "1:a\"|\"b|c\n");
    expect("x,\"\"\n", ',', "1:x|\n");
    expect("\"a\",\n", ',', "1:a|\n");
    /* A quote inside an unquoted field is data. */
    expect("12\" vinyl,a\"\"b\n", ',', "1:12\" vinyl|a\"\"b\n");
    /* Several escaped fields in one record, each unescaped on its own. */
    expect("\"1\"\"\",\"2\"\"\"\"\",\"3\"\n", ',', "1:1\"|2\"\"|3\n");
}

static void test_embedded_newlines(void **state)
{
    (void)state;
    expect("h1,h2\n\"multi\nline\",2\nnext,3\n", ',', "1:h1|h2\n2:multi\nline|2\n4:next|3\n");
    expect("\"a\n\n\nb\",\"c\nd\"\nz\n", ',', "1:a\n\n\nb|c\nd\n6:z\n");
    expect("\"x\r\ny\"\r\nz\r\n", ',', "1:x\r\ny\n3:z\n"); /* CRLF inside quotes is kept */
}

static void test_crlf(void **state)
{
    (void)state;
    expect("a,b\r\n1,2\r\n", ',', "1:a|b\n2:1|2\n");
    expect("a,b\r\n1,\r\n", ',', "1:a|b\n2:1|\n");
    expect("\"a\"\r\n\"b\",\"c\"\r\n", ',', "1:a\n2:b|c\n");
    expect("a\rb,c\r\n", ',', "1:a\rb|c\n"); /* a lone CR is data */
    expect("a,b\r", ',', "1:a|b\n");          /* CR at end of input */
    expect("\"a\"\r", ',', "1:a\n");
    expect("a,b\r\r\n", ',', "1:a|b\r\n");    /* only the CR before LF is the line end */
}

static void test_bom(void **state)
{
    (void)state;
    expect("\xEF\xBB\xBFid,name\n1,x\n", ',', "1:id|name\n2:1|x\n");
    expect("\xEF\xBB\xBF\"id\",name\n", ',', "1:id|name\n");
    expect("\xEF\xBB\xBF", ',', "");
    expect("\xEF\xBB", ',', "1:\xEF\xBB\n");
    expect("a,\xEF\xBB\xBF\n", ',', "1:a|\xEF\xBB\xBF\n"); /* only at the very start */
}

static void test_blank_lines(void **state)
{
    (void)state;
    expect("\n\na\n\n\nb\n\n", ',', "3:a\n6:b\n");
    expect("\r\n\r\na\r\n\r\nb\r\n", ',', "3:a\n5:b\n");
    expect("\n", ',', "");
    expect("\n\r\n\n", ',', "");
    expect("a\n\r", ',', "1:a\n");
    expect("\"\"\n", ',', "1:\n"); /* an empty quoted field is a record */
}

static void test_no_final_newline(void **state)
{
    (void)state;
    expect("a,b\n1,2", ',', "1:a|b\n2:1|2\n");
    expect("a,b\n1,", ',', "1:a|b\n2:1|\n");
    expect("a,\"b\"", ',', "1:a|b\n");
    expect("\"multi\nline\"", ',', "1:multi\nline\n");
    expect("x", ',', "1:x\n");
    expect("\"\"", ',', "1:\n");
}

static void test_unterminated(void **state)
{
    (void)state;
    expect_error("a,b\n1,\"open\n2,3\n", ',', "t.csv:2: unterminated quoted field");
    expect_error("a\n\n\n\"x", ',', "t.csv:4: unterminated quoted field");
    expect_error("\"a\nb\nc\",\"d\ne", ',', "t.csv:3: unterminated quoted field");
    expect_error("\"", ',', "t.csv:1: unterminated quoted field");
    expect_error("\"\"\"", ',', "t.csv:1: unterminated quoted field");
    /* The good records before the error are still delivered. */
    csv_reader *r;
    const char *d = "a\nb\n\"c";
    assert_int_equal(csv_open_mem("orders.csv", d, strlen(d), ',', &r, NULL), 0);
    const csv_field *f;
    size_t nf;
    assert_int_equal(csv_next(r, &f, &nf, NULL), 1);
    assert_int_equal(csv_next(r, &f, &nf, NULL), 1);
    assert_int_equal(csv_next(r, &f, &nf, NULL), PATRON_EINPUT); /* NULL err is fine */
    patron_error err;
    assert_int_equal(csv_next(r, &f, &nf, &err), PATRON_EINPUT);
    assert_string_equal(err.message, "orders.csv:3: unterminated quoted field");
    csv_free(r);
}

static void test_stray_quote(void **state)
{
    (void)state;
    const char *msg = "t.csv:2: stray quote: text after the closing quote of a field";
    expect_error("a\n\"b\"c\n", ',', msg);
    expect_error("a\n\"b\"\"\n", ',', "t.csv:2: unterminated quoted field");
    expect_error("a\n\"ab\"\"c\"d,e\n", ',', msg);
    expect_error("a\n\"b\" ,c\n", ',', msg);
    expect_error("a\n\"b\"\rc\n", ',', msg);
    expect_error("a\n\"x\ny\"z\n", ',', "t.csv:3: stray quote: text after the closing quote of a field");
    expect_error("a\n\"b\"\"c\"\"\"x\n", ',', msg);
}

static void test_delimiters(void **state)
{
    (void)state;
    expect("a;b;\"c;d\"\n1;2;3\n", ';', "1:a|b|c;d\n2:1|2|3\n");
    expect("a\tb\t\"c\td\"\n1\t\t3\n", '\t', "1:a|b|c\td\n2:1||3\n");
    expect("a|b,c|d\n", '|', "1:a|b,c|d\n");
    expect("a,b\n", 0, "1:a|b\n"); /* 0 means ',' */
    csv_reader *r = (csv_reader *)1;
    patron_error err;
    assert_int_equal(csv_open_mem("t", "a", 1, '"', &r, &err), PATRON_EUSAGE);
    assert_null(r);
    assert_int_equal(csv_open_mem("t", "a", 1, '\n', &r, NULL), PATRON_EUSAGE);
}

static void test_whitespace_mode(void **state)
{
    (void)state;
    /* CDNOW_master.txt: leading blanks, runs of spaces, CRLF. */
    expect("   00001 19970101  1   11.77\r\n   00002 19970112  1   12.00\r\n", ' ',
           "1:00001|19970101|1|11.77\n2:00002|19970112|1|12.00\n");
    expect("a  b\t\tc \t \n", ' ', "1:a|b|c\n");            /* trailing blanks: no field */
    expect("  \n \t \r\n\nx y\n", ' ', "4:x|y\n");           /* blank-only lines skipped */
    expect(" \"a b\"  \"\"  c\n", ' ', "1:a b||c\n");        /* quoting still works */
    expect("x\r\n", ' ', "1:x\n");
    expect("  x  y", ' ', "1:x|y\n");
    expect("  x  y   ", ' ', "1:x|y\n");
    expect("   ", ' ', "");
    expect_error(" \"a\"b\n", ' ', "t.csv:1: stray quote: text after the closing quote of a field");
}

static void test_raw(void **state)
{
    (void)state;
    const char *d = "h1,h2\r\n\"a,\"\"b\"\"\",\"multi\r\nline\"\r\n\n  plain , x\nlast,\"q\"";
    const char *want_raw[] = {"h1,h2", "\"a,\"\"b\"\"\",\"multi\r\nline\"", "  plain , x",
                              "last,\"q\""};
    const uint64_t want_line[] = {1, 2, 5, 6};
    csv_reader *r;
    assert_int_equal(csv_open_mem("t.csv", d, strlen(d), ',', &r, NULL), 0);
    const csv_field *f;
    size_t nf, n;
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(csv_next(r, &f, &nf, NULL), 1);
        const char *raw = csv_raw(r, &n);
        assert_int_equal(n, strlen(want_raw[i]));
        assert_memory_equal(raw, want_raw[i], n);
        assert_int_equal(csv_line(r), want_line[i]);
        if (i == 1) {
            assert_int_equal(nf, 2);
            assert_int_equal(f[0].n, 5);
            assert_memory_equal(f[0].p, "a,\"b\"", 5);
            assert_memory_equal(f[1].p, "multi\r\nline", 11);
        }
    }
    assert_int_equal(csv_next(r, &f, &nf, NULL), 0);
    assert_int_equal(csv_next(r, &f, &nf, NULL), 0); /* end stays end */
    csv_free(r);

    /* Whitespace mode keeps the leading blanks in the raw record. */
    d = "   00001 19970101  1   11.77\r\n";
    assert_int_equal(csv_open_mem("t", d, strlen(d), ' ', &r, NULL), 0);
    assert_int_equal(csv_next(r, &f, &nf, NULL), 1);
    const char *raw = csv_raw(r, &n);
    assert_int_equal(n, strlen(d) - 2);
    assert_memory_equal(raw, d, n);
    csv_free(r);
}

/* ---- sizes and sources ----------------------------------------------------------------- */

/* Builds n records "i,<quoted text with "" and maybe a newline>,<i*7>" */
static char *make_records(size_t n, size_t *len)
{
    text t = {0};
    text_add(&t, "id,text,val\n", 12);
    for (size_t i = 0; i < n; i++) {
        if (i % 3 == 0)
            text_addf(&t, "%zu,\"say \"\"%zu\"\"\",%zu\n", i, i, i * 7);
        else if (i % 3 == 1)
            text_addf(&t, "%zu,\"two\nlines\",%zu\r\n", i, i * 7);
        else
            text_addf(&t, "%zu,plain%zu,%zu\n", i, i, i * 7);
    }
    *len = t.n;
    return t.p;
}

static void check_records(csv_reader *r, size_t n)
{
    const csv_field *f;
    size_t nf;
    char want[64];
    uint64_t line = 2;
    assert_int_equal(csv_next(r, &f, &nf, NULL), 1);
    for (size_t i = 0; i < n; i++) {
        patron_error err;
        int rc = csv_next(r, &f, &nf, &err);
        if (rc != 1)
            fail_msg("record %zu: rc %d %s", i, rc, rc < 0 ? err.message : "");
        assert_int_equal(nf, 3);
        assert_int_equal(csv_line(r), line);
        int k = snprintf(want, sizeof want, "%zu", i);
        assert_int_equal(f[0].n, (size_t)k);
        assert_memory_equal(f[0].p, want, (size_t)k);
        if (i % 3 == 0)
            k = snprintf(want, sizeof want, "say \"%zu\"", i);
        else if (i % 3 == 1)
            k = snprintf(want, sizeof want, "two\nlines");
        else
            k = snprintf(want, sizeof want, "plain%zu", i);
        assert_int_equal(f[1].n, (size_t)k);
        assert_memory_equal(f[1].p, want, (size_t)k);
        k = snprintf(want, sizeof want, "%zu", i * 7);
        assert_int_equal(f[2].n, (size_t)k);
        assert_memory_equal(f[2].p, want, (size_t)k);
        line += i % 3 == 1 ? 2 : 1;
    }
    assert_int_equal(csv_next(r, &f, &nf, NULL), 0);
}

static void test_many_records(void **state)
{
    (void)state;
    size_t len, n = 200000;
    char *d = make_records(n, &len);
    csv_reader *r;
    assert_int_equal(csv_open_mem("t.csv", d, len, ',', &r, NULL), 0);
    check_records(r, n);
    assert_int_equal(csv_consumed(r), len);
    csv_free(r);
    /* The same through a file (1 MiB blocks) and through gzip. */
    write_file(tmp_path("many.csv"), d, len);
    assert_int_equal(csv_open(tmp_path("many.csv"), ',', &r, NULL), 0);
    assert_int_equal(csv_size(r), len);
    check_records(r, n);
    assert_int_equal(csv_consumed(r), len);
    csv_free(r);
    write_gz(tmp_path("many.csv.gz"), "wb", d, len);
    assert_int_equal(csv_open(tmp_path("many.csv.gz"), ',', &r, NULL), 0);
    check_records(r, n);
    assert_int_equal(csv_consumed(r), csv_size(r));
    assert_true(csv_size(r) < len);
    csv_free(r);
    free(d);
}

static void test_big_field(void **state)
{
    (void)state;
    /* Fields far larger than the file block (1 MiB), quoted and not. */
    size_t big = 3u << 20;
    text t = {0};
    text_add(&t, "a,b\n1,", 6);
    char *blob = malloc(big);
    memset(blob, 'x', big);
    text_add(&t, blob, big);
    text_add(&t, "\n2,\"", 4);
    for (size_t i = 0; i < big; i += 1000) {
        blob[i] = '"';
        blob[i + 1] = '"';
    }
    text_add(&t, blob, big);
    text_add(&t, "\"\n3,z\n", 6);
    free(blob);

    for (int pass = 0; pass < 2; pass++) {
        csv_reader *r;
        if (pass == 0) {
            assert_int_equal(csv_open_mem("t.csv", t.p, t.n, ',', &r, NULL), 0);
        } else {
            write_file(tmp_path("big.csv"), t.p, t.n);
            assert_int_equal(csv_open(tmp_path("big.csv"), ',', &r, NULL), 0);
        }
        const csv_field *f;
        size_t nf, n;
        assert_int_equal(csv_next(r, &f, &nf, NULL), 1);
        assert_int_equal(csv_next(r, &f, &nf, NULL), 1);
        assert_int_equal(f[1].n, big);
        assert_int_equal(f[1].p[0], 'x');
        assert_int_equal(f[1].p[big - 1], 'x');
        assert_int_equal(csv_next(r, &f, &nf, NULL), 1);
        assert_int_equal(csv_line(r), 3);
        assert_int_equal(f[1].n, big - big / 1000 - 1);
        assert_int_equal(f[1].p[0], '"');
        assert_int_equal(f[1].p[1], 'x');
        csv_raw(r, &n);
        assert_int_equal(n, big + 4);
        assert_int_equal(csv_next(r, &f, &nf, NULL), 1);
        assert_int_equal(csv_line(r), 4);
        assert_memory_equal(f[1].p, "z", 1);
        assert_int_equal(csv_next(r, &f, &nf, NULL), 0);
        csv_free(r);
    }
    free(t.p);
}

static void test_wide_record(void **state)
{
    (void)state;
    text t = {0};
    for (int i = 0; i < 10000; i++)
        text_addf(&t, i ? ",%d" : "%d", i);
    text_add(&t, "\n", 1);
    csv_reader *r;
    assert_int_equal(csv_open_mem("t.csv", t.p, t.n, ',', &r, NULL), 0);
    const csv_field *f;
    size_t nf;
    assert_int_equal(csv_next(r, &f, &nf, NULL), 1);
    assert_int_equal(nf, 10000);
    assert_memory_equal(f[9999].p, "9999", 4);
    csv_free(r);
    free(t.p);
}

static void test_plain_file(void **state)
{
    (void)state;
    const char *d = "\xEF\xBB\xBFid,v\r\n1,\"a\nb\"\r\n\r\n2,c";
    write_file(tmp_path("plain.csv"), d, strlen(d));
    char *got = dump_file(tmp_path("plain.csv"), ',');
    assert_string_equal(got, "1:id|v\n2:1|a\nb\n5:2|c\n");
    free(got);
    csv_reader *r;
    assert_int_equal(csv_open(tmp_path("plain.csv"), ',', &r, NULL), 0);
    assert_string_equal(csv_name(r), tmp_path("plain.csv"));
    assert_int_equal(csv_size(r), strlen(d));
    csv_free(r);
    write_file(tmp_path("empty.csv"), "", 0);
    got = dump_file(tmp_path("empty.csv"), ',');
    assert_string_equal(got, "");
    free(got);
    write_file(tmp_path("one.csv"), "\x1f", 1); /* half a gzip magic */
    got = dump_file(tmp_path("one.csv"), ',');
    assert_string_equal(got, "1:\x1f\n");
    free(got);
}

static void test_open_errors(void **state)
{
    (void)state;
    csv_reader *r = (csv_reader *)1;
    patron_error err;
    assert_int_equal(csv_open(tmp_path("missing.csv"), ',', &r, &err), PATRON_EIO);
    assert_null(r);
    assert_non_null(strstr(err.message, "cannot open '"));
    assert_non_null(strstr(err.message, "missing.csv'"));
    /* A directory opens but cannot be read. */
    assert_int_equal(csv_open(tmpdir, ',', &r, &err), PATRON_EIO);
    line_reader *lr = (line_reader *)1;
    assert_int_equal(lines_open(tmp_path("missing.jsonl"), &lr, &err), PATRON_EIO);
    assert_null(lr);
    csv_free(NULL);
    lines_free(NULL);
}

static void test_gzip(void **state)
{
    (void)state;
    const char *d = "\xEF\xBB\xBFid,v\r\n1,\"a\nb\"\r\n2,c\n";
    /* Detected by magic, whatever the name. */
    write_gz(tmp_path("data.csv"), "wb", d, strlen(d));
    char *got = dump_file(tmp_path("data.csv"), ',');
    assert_string_equal(got, "1:id|v\n2:1|a\nb\n4:2|c\n");
    free(got);
    /* Concatenated members read as one stream, like gzip -d. */
    write_gz(tmp_path("multi.gz"), "wb", "a,b\n1,", 6);
    write_gz(tmp_path("multi.gz"), "ab", "2\n3,4\n", 6);
    got = dump_file(tmp_path("multi.gz"), ',');
    assert_string_equal(got, "1:a|b\n2:1|2\n3:3|4\n");
    free(got);
    /* An empty compressed file. */
    write_gz(tmp_path("empty.gz"), "wb", "", 0);
    got = dump_file(tmp_path("empty.gz"), ',');
    assert_string_equal(got, "");
    free(got);

    /* Truncated and corrupt data are input errors. */
    size_t len;
    char *many = make_records(1000, &len);
    write_gz(tmp_path("trunc.gz"), "wb", many, len);
    free(many);
    FILE *fp = fopen(tmp_path("trunc.gz"), "rb");
    char buf[65536];
    size_t k = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    write_file(tmp_path("trunc.gz"), buf, k / 2);
    csv_reader *r;
    patron_error err;
    assert_int_equal(csv_open(tmp_path("trunc.gz"), ',', &r, &err), 0);
    char *out;
    assert_int_equal(dump_reader(r, &out, &err), PATRON_EINPUT);
    assert_non_null(strstr(err.message, "trunc.gz: truncated gzip data"));
    free(out);
    csv_free(r);
    buf[k / 3] ^= 0x55;
    buf[k / 3 + 1] ^= 0x55;
    buf[k / 3 + 2] ^= 0x55;
    write_file(tmp_path("bad.gz"), buf, k);
    assert_int_equal(csv_open(tmp_path("bad.gz"), ',', &r, &err), 0);
    int rc = dump_reader(r, &out, &err);
    free(out);
    assert_int_equal(rc, PATRON_EINPUT);
    csv_free(r);

    /* A gzip image in memory. */
    FILE *g = fopen(tmp_path("data.csv"), "rb");
    k = fread(buf, 1, sizeof buf, g);
    fclose(g);
    got = dump_mem(buf, k, ',');
    assert_string_equal(got, "1:id|v\n2:1|a\nb\n4:2|c\n");
    free(got);
}

static void test_stdin(void **state)
{
    (void)state;
    const char *d = "a,b\n1,2\n";
    write_gz(tmp_path("stdin.gz"), "wb", d, strlen(d));
    write_file(tmp_path("stdin.csv"), d, strlen(d));
    int saved = dup(0);
    assert_true(saved >= 0);
    for (int pass = 0; pass < 2; pass++) {
        int fd = open(tmp_path(pass ? "stdin.gz" : "stdin.csv"), O_RDONLY);
        assert_true(fd >= 0);
        assert_int_equal(dup2(fd, 0), 0);
        close(fd);
        csv_reader *r;
        assert_int_equal(csv_open("-", ',', &r, NULL), 0);
        assert_string_equal(csv_name(r), "-");
        char *out;
        assert_int_equal(dump_reader(r, &out, NULL), 0);
        assert_string_equal(out, "1:a|b\n2:1|2\n");
        free(out);
        csv_free(r);
    }
    assert_int_equal(dup2(saved, 0), 0);
    close(saved);
}

static void test_fault_injection(void **state)
{
    (void)state;
    const char *d = "a,\"b\"\"c\"\n\"x\ny\",2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20\n";
    size_t len = strlen(d);
    int ok = 0;
    for (long nth = 1; nth < 50 && !ok; nth++) {
        mem_fail_after(nth);
        csv_reader *r;
        patron_error err;
        int rc = csv_open_mem("t.csv", d, len, ',', &r, &err);
        if (rc == 0) {
            char *out;
            rc = dump_reader(r, &out, &err);
            free(out);
            csv_free(r);
        }
        mem_fail_after(0);
        if (rc == 0)
            ok = 1;
        else
            assert_int_equal(rc, PATRON_ENOMEM);
    }
    assert_true(ok);
}

static void test_real_files(void **state)
{
    (void)state;
    const char *root = getenv("PATRON_SHARED_DATA");
    if (!root)
        skip();
    char path[512];
    snprintf(path, sizeof path, "%s/cdnow/CDNOW_master.txt", root);
    csv_reader *r;
    patron_error err;
    if (csv_open(path, ' ', &r, &err) != 0)
        skip();
    const csv_field *f;
    size_t nf, n = 0;
    int rc;
    while ((rc = csv_next(r, &f, &nf, &err)) == 1) {
        assert_int_equal(nf, 4);
        n++;
    }
    assert_int_equal(rc, 0);
    assert_int_equal(n, 69660);
    csv_free(r);

    snprintf(path, sizeof path, "%s/online_retail/online_retail.csv.gz", root);
    if (csv_open(path, ',', &r, &err) != 0)
        skip();
    n = 0;
    while ((rc = csv_next(r, &f, &nf, &err)) == 1) {
        assert_int_equal(nf, 8);
        n++;
    }
    assert_int_equal(rc, 0);
    assert_int_equal(n, 541910);
    assert_int_equal(csv_consumed(r), csv_size(r));
    csv_free(r);
}

/* ---- lines ----------------------------------------------------------------------------- */

static char *dump_lines(line_reader *r)
{
    text t = {0};
    text_add(&t, "", 0);
    const char *l;
    size_t n;
    int rc;
    while ((rc = lines_next(r, &l, &n, NULL)) == 1) {
        text_addf(&t, "%llu:", (unsigned long long)lines_line(r));
        text_add(&t, l, n);
        text_add(&t, "\n", 1);
    }
    assert_int_equal(rc, 0);
    return t.p;
}

static void expect_lines(const char *data, const char *want)
{
    line_reader *r;
    assert_int_equal(lines_open_mem("t.jsonl", data, strlen(data), &r, NULL), 0);
    char *got = dump_lines(r);
    if (strcmp(got, want) != 0)
        fail_msg("input:\n%s\n--- got:\n%s--- want:\n%s", data, got, want);
    assert_int_equal(lines_consumed(r), strlen(data));
    assert_int_equal(lines_size(r), strlen(data));
    assert_string_equal(lines_name(r), "t.jsonl");
    free(got);
    lines_free(r);
}

static void test_lines(void **state)
{
    (void)state;
    expect_lines("{\"a\":1}\n{\"b\":2}\n", "1:{\"a\":1}\n2:{\"b\":2}\n");
    expect_lines("a\r\nb\r\n", "1:a\n2:b\n");
    expect_lines("a\nb", "1:a\n2:b\n");
    expect_lines("a\r\nb\r", "1:a\n2:b\n");
    expect_lines("a\n\nb\n\n", "1:a\n2:\n3:b\n4:\n"); /* skipping none */
    expect_lines("", "");
    expect_lines("\n", "1:\n");
    expect_lines("\xEF\xBB\xBF{}\n", "1:{}\n");
    expect_lines("a\rb\n", "1:a\rb\n");

    /* Long lines, files and gzip. */
    size_t big = 3u << 20;
    char *d = malloc(big + 16);
    memset(d, 'y', big);
    memcpy(d + big, "\r\nend", 6);
    line_reader *r;
    assert_int_equal(lines_open_mem("t", d, big + 5, &r, NULL), 0);
    const char *l;
    size_t n;
    assert_int_equal(lines_next(r, &l, &n, NULL), 1);
    assert_int_equal(n, big);
    assert_int_equal(lines_next(r, &l, &n, NULL), 1);
    assert_int_equal(n, 3);
    assert_int_equal(lines_line(r), 2);
    assert_int_equal(lines_next(r, &l, &n, NULL), 0);
    lines_free(r);
    write_gz(tmp_path("big.jsonl.gz"), "wb", d, big + 5);
    assert_int_equal(lines_open(tmp_path("big.jsonl.gz"), &r, NULL), 0);
    assert_int_equal(lines_next(r, &l, &n, NULL), 1);
    assert_int_equal(n, big);
    assert_int_equal(lines_next(r, &l, &n, NULL), 1);
    assert_memory_equal(l, "end", 3);
    assert_int_equal(lines_next(r, &l, &n, NULL), 0);
    assert_int_equal(lines_consumed(r), lines_size(r));
    lines_free(r);
    write_file(tmp_path("plain.jsonl"), "x\ny\n", 4);
    assert_int_equal(lines_open(tmp_path("plain.jsonl"), &r, NULL), 0);
    char *got = dump_lines(r);
    assert_string_equal(got, "1:x\n2:y\n");
    free(got);
    lines_free(r);
    free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_quoted),
        cmocka_unit_test(test_embedded_newlines),
        cmocka_unit_test(test_crlf),
        cmocka_unit_test(test_bom),
        cmocka_unit_test(test_blank_lines),
        cmocka_unit_test(test_no_final_newline),
        cmocka_unit_test(test_unterminated),
        cmocka_unit_test(test_stray_quote),
        cmocka_unit_test(test_delimiters),
        cmocka_unit_test(test_whitespace_mode),
        cmocka_unit_test(test_raw),
        cmocka_unit_test(test_many_records),
        cmocka_unit_test(test_big_field),
        cmocka_unit_test(test_wide_record),
        cmocka_unit_test(test_plain_file),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_gzip),
        cmocka_unit_test(test_stdin),
        cmocka_unit_test(test_fault_injection),
        cmocka_unit_test(test_real_files),
        cmocka_unit_test(test_lines),
    };
    return cmocka_run_group_tests(tests, make_tmpdir, remove_tmpdir);
}
