/*
 * input.c -- byte sources (file, gzip, stdin, memory), the RFC 4180 CSV reader and the
 * line reader built on them.
 *
 * Layering: an in_src produces bytes into a caller's window (plain read(2) in large
 * blocks, zlib inflate for gzip -- detected by the 1f 8b magic, whatever the name --, or
 * a memcpy from a caller's buffer).  An in_buf owns one growable buffer on top of it:
 * [pos, end) is unparsed data, buf[end] always holds a '\n' sentinel so that the field
 * scanners need no bounds test in their inner loop.  When a record runs into `end`
 * before the input is exhausted, the parser gives up on it (MORE), the buffer moves the
 * unparsed tail to the front (growing when the tail alone fills it) and reads more, and
 * the record is parsed again from its first byte; records never straddle in place.
 *
 * The CSV parser returns fields as views into the buffer.  Nothing is written into the
 * buffer, so csv_raw() can hand back the exact bytes of the record: the only fields that
 * need rewriting, quoted ones containing "", are unescaped into a per-reader scratch
 * buffer once the record is known to be complete.  The field array, the scratch buffer
 * and the data buffer are reused from record to record: the steady state allocates
 * nothing.
 *
 * Decisions the header leaves open: a quote inside an unquoted field is literal
 * (`12" vinyl`); text after a closing quote is an error; a lone CR is data (only CRLF
 * or LF end a line; a CR right before the end of input is dropped); in whitespace mode
 * (delim ' ') blanks are space, tab, CR, VT and FF, and trailing blanks make no empty
 * field; after a structural error the reader is stuck: every later call returns the
 * same error.  A single record may not exceed INPUT_MAX_RECORD bytes.
 */
#include "ingest/input.h"

#include "base/err.h"
#include "base/mem.h"

#include <errno.h>
#include <fcntl.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define INPUT_BLOCK (1u << 20)        /* data buffer and read size for files */
#define INPUT_ZBLOCK (256u << 10)     /* compressed bytes read per refill of zlib */
#define INPUT_MEM_CHUNK 509u          /* memory sources deliver odd-sized small pieces so
                                       * tests and fuzzing cross buffer ends constantly */
#define INPUT_MEM_START 1024u         /* initial buffer for memory sources */
#define INPUT_MAX_RECORD (256u << 20) /* one record (or line) may not exceed this */
#define INPUT_SLACK CSV_FIELD_SLACK   /* readable bytes past the buffer's end */

/* A buffer of n usable bytes plus the sentinel and the slack, the slack zeroed (it is
 * read, never used: see CSV_FIELD_SLACK). */
static char *buf_alloc(char *old, size_t n)
{
    char *p = mem_realloc(old, n + 1 + INPUT_SLACK);
    if (p) memset(p + n + 1, 0, INPUT_SLACK);
    return p;
}

/* ---- byte sources ---------------------------------------------------------------- */

typedef struct in_src {
    char *name;           /* owned copy of the display name */
    int fd;               /* -1 for memory */
    int close_fd;         /* 0 for stdin */
    const unsigned char *mem; /* memory source (caller's) */
    size_t mem_n, mem_off;
    z_stream *z;          /* non-NULL when the input is gzip */
    unsigned char *zin;   /* compressed block (file sources) */
    int zin_eof;          /* no more compressed bytes */
    int z_end;            /* last member ended and nothing follows */
    uint64_t raw_read;    /* bytes taken from the file / memory */
    uint64_t size;        /* file size, 0 when unknown */
} in_src;

typedef struct in_buf {
    in_src src;
    char *buf;       /* cap + 1 + INPUT_SLACK bytes: the sentinel, then slack */
    size_t cap, pos, end;
    int eof;         /* the source is exhausted: [pos, end) is all that is left */
    uint64_t line;   /* physical line number of buf[pos] */
    int bom_done;
    int csv;         /* for messages: records or lines */
    int status;      /* sticky failure, with its message in `failure` */
    patron_error failure;
} in_buf;

static voidpf z_alloc(voidpf opaque, uInt items, uInt size)
{
    (void)opaque;
    return mem_alloc_array(items, size);
}

static void z_free(voidpf opaque, voidpf p)
{
    (void)opaque;
    mem_free(p);
}

/* Reads raw bytes from the file or memory; 0 at end, -1 with errno on failure. */
static ssize_t raw_read(in_src *s, void *dst, size_t cap, size_t mem_chunk)
{
    if (s->fd < 0) {
        size_t k = s->mem_n - s->mem_off;
        if (k > cap)
            k = cap;
        if (k > mem_chunk)
            k = mem_chunk;
        memcpy(dst, s->mem + s->mem_off, k);
        s->mem_off += k;
        s->raw_read += k;
        return (ssize_t)k;
    }
    for (;;) {
        ssize_t k = read(s->fd, dst, cap);
        if (k < 0 && errno == EINTR)
            continue;
        if (k > 0)
            s->raw_read += (uint64_t)k;
        return k;
    }
}

static int io_error(in_src *s, patron_error *err, int e)
{
    return err_set(err, PATRON_EIO, "%s: read failed: %s", s->name, strerror(e));
}

/* Feeds zlib with compressed input when it has none; sets zin_eof at the end. */
static int z_feed(in_src *s, patron_error *err)
{
    if (s->z->avail_in || s->zin_eof)
        return 0;
    if (s->fd < 0) {
        /* Memory: hand zlib as much as one uInt can say, no copy. */
        size_t k = s->mem_n - s->mem_off;
        if (k > UINT32_MAX)
            k = UINT32_MAX;
        s->z->next_in = (Bytef *)(uintptr_t)(s->mem + s->mem_off);
        s->z->avail_in = (uInt)k;
        s->mem_off += k;
        s->raw_read += k;
        if (k == 0)
            s->zin_eof = 1;
        return 0;
    }
    ssize_t k = raw_read(s, s->zin, INPUT_ZBLOCK, SIZE_MAX);
    if (k < 0)
        return io_error(s, err, errno);
    s->z->next_in = s->zin;
    s->z->avail_in = (uInt)k;
    if (k == 0)
        s->zin_eof = 1;
    return 0;
}

/*
 * Inflates into dst[0..cap): the number of bytes produced (> 0), 0 at the clean end of
 * the last gzip member, or a negative status.  Concatenated members (cat a.gz b.gz)
 * are read as one stream, as gzip(1) does.
 */
static ssize_t z_read(in_src *s, char *dst, size_t cap, patron_error *err)
{
    z_stream *z = s->z;
    if (cap > UINT32_MAX)
        cap = UINT32_MAX;
    z->next_out = (Bytef *)dst;
    z->avail_out = (uInt)cap;
    while (z->avail_out == cap && !s->z_end) {
        int rc = z_feed(s, err);
        if (rc < 0)
            return rc;
        if (z->avail_in == 0 && s->zin_eof)
            return err_set(err, PATRON_EINPUT, "%s: truncated gzip data", s->name);
        rc = inflate(z, Z_NO_FLUSH);
        if (rc == Z_STREAM_END) {
            /* Another member follows unless the input is exhausted. */
            if ((rc = z_feed(s, err)) < 0)
                return rc;
            if (z->avail_in == 0 && s->zin_eof)
                s->z_end = 1;
            else if (inflateReset(z) != Z_OK)
                return err_set(err, PATRON_EINTERNAL, "%s: cannot reset zlib", s->name);
        } else if (rc == Z_MEM_ERROR) {
            return err_set(err, PATRON_ENOMEM, "%s: out of memory in zlib", s->name);
        } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
            return err_set(err, PATRON_EINPUT, "%s: corrupt gzip data (%s)", s->name,
                           z->msg ? z->msg : "unknown zlib error");
        }
    }
    return (ssize_t)(cap - z->avail_out);
}

/* Bytes into dst[0..cap): > 0, 0 at end of input, or a negative status. */
static ssize_t src_read(in_src *s, char *dst, size_t cap, patron_error *err)
{
    if (s->z)
        return z_read(s, dst, cap, err);
    ssize_t k = raw_read(s, dst, cap, INPUT_MEM_CHUNK);
    if (k < 0)
        return io_error(s, err, errno);
    return k;
}

static void src_release(in_src *s)
{
    if (s->z) {
        inflateEnd(s->z);
        mem_free(s->z);
    }
    mem_free(s->zin);
    if (s->fd >= 0 && s->close_fd)
        close(s->fd);
    mem_free(s->name);
}

static int oom(patron_error *err)
{
    return err_set(err, PATRON_ENOMEM, "out of memory");
}

static int z_start(in_src *s, patron_error *err)
{
    s->z = mem_calloc(1, sizeof *s->z);
    if (!s->z)
        return oom(err);
    s->z->zalloc = z_alloc;
    s->z->zfree = z_free;
    if (inflateInit2(s->z, 16 + MAX_WBITS) != Z_OK) {
        mem_free(s->z);
        s->z = NULL;
        return oom(err);
    }
    return 0;
}

/*
 * Opens path ("-" = stdin) into b, detecting gzip from the first two bytes.  Bytes
 * read while sniffing go to zlib's input or to the data buffer, never lost.
 */
static int buf_open_file(in_buf *b, const char *path, patron_error *err)
{
    in_src *s = &b->src;
    s->fd = -1;
    s->name = mem_strdup(path);
    if (!s->name)
        return oom(err);
    if (strcmp(path, "-") == 0) {
        s->fd = 0;
    } else {
        s->fd = open(path, O_RDONLY | O_CLOEXEC);
        if (s->fd < 0)
            return err_set(err, PATRON_EIO, "cannot open '%s': %s", path, strerror(errno));
        s->close_fd = 1;
    }
    struct stat st;
    if (fstat(s->fd, &st) == 0 && S_ISREG(st.st_mode)) {
        s->size = (uint64_t)st.st_size;
#ifdef POSIX_FADV_SEQUENTIAL
        posix_fadvise(s->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
    }
    b->cap = INPUT_BLOCK;
    b->buf = buf_alloc(NULL, b->cap);
    if (!b->buf)
        return oom(err);
    unsigned char head[2];
    size_t got = 0;
    while (got < 2) {
        ssize_t k = raw_read(s, head + got, 2 - got, SIZE_MAX);
        if (k < 0)
            return io_error(s, err, errno);
        if (k == 0)
            break;
        got += (size_t)k;
    }
    if (got == 2 && head[0] == 0x1f && head[1] == 0x8b) {
        s->zin = mem_alloc(INPUT_ZBLOCK);
        if (!s->zin)
            return oom(err);
        int rc = z_start(s, err);
        if (rc < 0)
            return rc;
        memcpy(s->zin, head, 2);
        s->z->next_in = s->zin;
        s->z->avail_in = 2;
    } else {
        memcpy(b->buf, head, got);
        b->end = got;
    }
    b->buf[b->end] = '\n';
    b->line = 1;
    return 0;
}

static int buf_open_mem(in_buf *b, const char *name, const char *data, size_t n,
                        patron_error *err)
{
    in_src *s = &b->src;
    s->fd = -1;
    s->mem = (const unsigned char *)data;
    s->mem_n = n;
    s->size = n;
    s->name = mem_strdup(name ? name : "(memory)");
    if (!s->name)
        return oom(err);
    b->cap = INPUT_MEM_START;
    b->buf = buf_alloc(NULL, b->cap);
    if (!b->buf)
        return oom(err);
    b->buf[0] = '\n';
    b->line = 1;
    if (n >= 2 && s->mem[0] == 0x1f && s->mem[1] == 0x8b)
        return z_start(s, err);
    return 0;
}

static void buf_release(in_buf *b)
{
    src_release(&b->src);
    mem_free(b->buf);
}

/*
 * Internal steps report into b->failure (so the message survives a NULL err); this
 * makes the failure sticky and hands a copy to the caller.
 */
static int buf_fail(in_buf *b, int status, patron_error *err)
{
    b->status = status;
    if (err)
        *err = b->failure;
    return status;
}

/*
 * Makes room and reads more: keeps [pos, end), moving it to the front, growing the
 * buffer when it is already full of it.  Sets eof when the source has nothing more.
 * The parser rescans that tail from its first byte, so this reads at least as many new
 * bytes as the tail holds (unless the buffer fills or the input ends): the rescans of
 * one record at least double in length each time, which keeps the total work linear
 * even for a huge record arriving in small pieces (pipes, memory sources).
 */
static int buf_refill(in_buf *b, patron_error *err)
{
    if (b->eof)
        return 0;
    size_t tail = b->end - b->pos, got = 0;
    if (b->pos) {
        memmove(b->buf, b->buf + b->pos, tail);
        b->end = tail;
        b->pos = 0;
    }
    if (b->end == b->cap) {
        if (b->cap >= INPUT_MAX_RECORD)
            return err_set(err, PATRON_EINPUT, "%s:%" PRIu64 ": %s longer than %u MiB%s",
                           b->src.name, b->line, b->csv ? "record" : "line",
                           INPUT_MAX_RECORD >> 20,
                           b->csv ? " (unterminated quoted field?)" : "");
        size_t ncap = b->cap * 2;
        char *nb = buf_alloc(b->buf, ncap);
        if (!nb)
            return oom(err);
        b->buf = nb;
        b->cap = ncap;
    }
    do {
        ssize_t k = src_read(&b->src, b->buf + b->end, b->cap - b->end, err);
        if (k < 0)
            return (int)k;
        if (k == 0) {
            b->eof = 1;
            break;
        }
        b->end += (size_t)k;
        got += (size_t)k;
    } while (got < tail && b->end < b->cap);
    b->buf[b->end] = '\n';
    return 0;
}

/* Skips a UTF-8 byte order mark at the very start of the data. */
static int buf_skip_bom(in_buf *b, patron_error *err)
{
    while (b->end - b->pos < 3 && !b->eof) {
        int rc = buf_refill(b, err);
        if (rc < 0)
            return rc;
    }
    if (b->end - b->pos >= 3 && memcmp(b->buf + b->pos, "\xEF\xBB\xBF", 3) == 0)
        b->pos += 3;
    b->bom_done = 1;
    return 0;
}

static uint64_t buf_consumed(const in_buf *b)
{
    const in_src *s = &b->src;
    if (s->z)
        return s->raw_read - s->z->avail_in;
    return s->raw_read - (b->end - b->pos);
}

/* ---- CSV ----------------------------------------------------------------------------- */

struct csv_reader {
    in_buf in;
    char delim;
    int ws;                    /* whitespace mode */
    unsigned char stop[256];   /* bytes that end an unquoted field */
    unsigned char blank[256];  /* whitespace mode: bytes of a separator run */
    csv_field *fields;
    size_t fcap, nfields;
    size_t *esc;               /* indexes of quoted fields holding "" in this record */
    size_t esc_cap, nesc;
    char *scratch;             /* unescaped copies of those fields */
    size_t scratch_cap;
    uint64_t rec_line;
    size_t raw_off, raw_n;     /* the last record, as an offset into the buffer */
};

enum { PARSE_END = 0, PARSE_RECORD = 1, PARSE_MORE = 2 };

static int csv_fail(csv_reader *r, patron_error *err, uint64_t line, const char *what)
{
    return err_set(err, PATRON_EINPUT, "%s:%" PRIu64 ": %s", r->in.src.name, line, what);
}

static inline int push_field(csv_reader *r, const char *p, size_t n)
{
    if (r->nfields == r->fcap && MEM_GROW(r->fields, r->fcap, r->nfields + 1) != 0)
        return -1;
    r->fields[r->nfields].p = p;
    r->fields[r->nfields].n = n;
    r->nfields++;
    return 0;
}

static size_t count_nl(const char *p, size_t n)
{
    size_t c = 0;
    const char *e = p + n;
    while ((p = memchr(p, '\n', (size_t)(e - p))) != NULL) {
        c++;
        p++;
    }
    return c;
}

/*
 * The fast path of csv_parse: a record with no quote in it, whose line end is in the
 * buffer (almost every record of a machine-written file).  One pass over the bytes,
 * sixteen at a time (SSE2), finds the line end, rules out quotes and splits at the
 * delimiters; the fields are exactly those the general parser would give.  Returns
 * PARSE_RECORD, PARSE_MORE when the record is not of that kind (the general parser
 * then takes it, from the same place), or a negative status.
 */
static int csv_parse_plain(csv_reader *r, const char *p)
{
    in_buf *b = &r->in;
    const char *end = b->buf + b->end, *q = p, *fs = p, *nl = NULL;
    const char delim = r->delim;
    csv_field *f = r->fields; /* kept in registers: stores to fields alias the reader */
    size_t nf = 0, fcap = r->fcap;
    r->nesc = 0;
    /* Room for `more` fields beyond nf (grown before a block of bytes, so that storing
     * each field found in it checks nothing). */
#define ROOM(more)                                                                                 \
    do {                                                                                           \
        if (nf + (more) > fcap) {                                                                  \
            if (MEM_GROW(r->fields, r->fcap, nf + (more)) != 0) return oom(&b->failure);           \
            f = r->fields;                                                                         \
            fcap = r->fcap;                                                                        \
        }                                                                                          \
    } while (0)
#define EMIT(at)                                                                                   \
    do {                                                                                           \
        f[nf].p = fs;                                                                              \
        f[nf].n = (size_t)((at)-fs);                                                               \
        nf++;                                                                                      \
        fs = (at) + 1;                                                                             \
    } while (0)
#ifdef __SSE2__
    const __m128i d16 = _mm_set1_epi8(delim), n16 = _mm_set1_epi8('\n'), q16 = _mm_set1_epi8('"');
    for (; end - q >= 16; q += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)q);
        unsigned md = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, d16));
        unsigned mn = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, n16));
        unsigned mq = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, q16));
        unsigned before = mn ? (mn & (0u - mn)) - 1 : 0xffffu; /* bytes before the line end */
        if (mq & before) return PARSE_MORE;
        md &= before;
        ROOM(16);
        for (; md; md &= md - 1)
            EMIT(q + __builtin_ctz(md));
        if (mn) {
            nl = q + __builtin_ctz(mn);
            break;
        }
    }
#endif
    for (; !nl && q < end; q++) {
        if (*q == '\n')
            nl = q;
        else if (*q == '"')
            return PARSE_MORE;
        else if (*q == delim) {
            ROOM(1);
            EMIT(q);
        }
    }
    if (!nl) return PARSE_MORE;
    const char *raw_end = nl > p && nl[-1] == '\r' ? nl - 1 : nl;
    ROOM(1);
    EMIT(raw_end);
#undef EMIT
#undef ROOM
    r->nfields = nf;
    r->rec_line = b->line;
    r->raw_off = (size_t)(p - b->buf);
    r->raw_n = (size_t)(raw_end - p);
    b->pos = (size_t)(nl + 1 - b->buf);
    b->line++;
    return PARSE_RECORD;
}

/*
 * Parses one record starting at buf[pos].  Returns PARSE_RECORD (fields set, pos and
 * line advanced past the line end), PARSE_END (nothing left), PARSE_MORE (ran into the
 * end of the buffer before the end of input: refill and call again; only skipped blank
 * lines have been consumed), or a negative status.
 */
static int csv_parse(csv_reader *r, patron_error *err)
{
    in_buf *b = &r->in;
    char *buf = b->buf;
    const char *p = buf + b->pos, *end = buf + b->end;
    const int eof = b->eof, ws = r->ws;
    const char delim = r->delim;
    const unsigned char *stop = r->stop, *blank = r->blank;

    /* Blank lines: consumed for good, even if the record after them needs more data. */
    const char *first;
    for (;;) {
        first = p;
        if (ws)
            while (first < end && blank[(unsigned char)*first])
                first++;
        else if (first < end && *first == '\r' && (first + 1 < end || eof))
            first++;
        if (first == end) {
            b->pos = (size_t)(p - buf);
            if (!eof)
                return PARSE_MORE;
            b->pos = b->end;
            return PARSE_END;
        }
        if (*first != '\n')
            break;
        p = first + 1;
        b->line++;
    }
    b->pos = (size_t)(p - buf);
    if (!ws) {
        int rc = csv_parse_plain(r, p);
        if (rc != PARSE_MORE) return rc;
    }

    const char *rec = p, *raw_end;
    uint64_t line = b->line;
    if (ws)
        p = first; /* leading blanks belong to the raw record, not to a field */
    r->nfields = 0;
    r->nesc = 0;
    for (;;) {
        const char *fs;
        size_t fn;
        int quoted = *p == '"' && p < end;
        if (quoted) {
            const char *q = p + 1, *c;
            int has_esc = 0;
            for (;;) {
                c = memchr(q, '"', (size_t)(end - q));
                if (!c) {
                    if (!eof)
                        return PARSE_MORE;
                    return csv_fail(r, err, line, "unterminated quoted field");
                }
                if (c + 1 == end && !eof)
                    return PARSE_MORE; /* cannot tell "" from a closing quote yet */
                if (c + 1 < end && c[1] == '"') {
                    has_esc = 1;
                    q = c + 2;
                    continue;
                }
                break;
            }
            fs = p + 1;
            fn = (size_t)(c - fs);
            line += count_nl(fs, fn);
            if (has_esc) {
                if (r->nesc == r->esc_cap && MEM_GROW(r->esc, r->esc_cap, r->nesc + 1) != 0)
                    return oom(err);
                r->esc[r->nesc++] = r->nfields;
            }
            p = c + 1;
            if (p < end && *p != '\n' && *p != delim && !(ws && blank[(unsigned char)*p])) {
                if (*p != '\r')
                    return csv_fail(r, err, line,
                                    "stray quote: text after the closing quote of a field");
                if (p + 1 == end && !eof)
                    return PARSE_MORE;
                if (p + 1 < end && p[1] != '\n')
                    return csv_fail(r, err, line,
                                    "stray quote: text after the closing quote of a field");
            }
        } else {
            fs = p;
            while (!stop[(unsigned char)*p])
                p++;
            if (p == end && !eof)
                return PARSE_MORE;
            fn = (size_t)(p - fs);
        }

        /* p is at a separator, a line end ('\n', or '\r' before one), or the end. */
        if (p == end || *p == '\n' || (*p == '\r' && !ws)) {
            raw_end = p;
            if (p < end && *p == '\r') /* only after a quoted field: CRLF or CR at end */
                p++;
            if (!quoted && raw_end > rec && raw_end[-1] == '\r') { /* the field ends in it */
                raw_end--;
                fn--;
            }
            if (push_field(r, fs, fn) != 0)
                return oom(err);
            if (p < end) {
                p++; /* the '\n' */
                line++;
            }
            break;
        }
        if (push_field(r, fs, fn) != 0)
            return oom(err);
        if (!ws) {
            p++;
            continue;
        }
        while (p < end && blank[(unsigned char)*p])
            p++;
        if (p == end && !eof)
            return PARSE_MORE;
        if (p == end || *p == '\n') {
            raw_end = p;
            if (raw_end > rec && raw_end[-1] == '\r')
                raw_end--;
            if (p < end) {
                p++;
                line++;
            }
            break;
        }
    }

    if (r->nesc) {
        size_t need = 0;
        for (size_t i = 0; i < r->nesc; i++)
            need += r->fields[r->esc[i]].n;
        if (MEM_GROW(r->scratch, r->scratch_cap, need + CSV_FIELD_SLACK) != 0)
            return oom(err);
        char *o = r->scratch;
        for (size_t i = 0; i < r->nesc; i++) {
            csv_field *f = &r->fields[r->esc[i]];
            const char *s = f->p, *e = s + f->n;
            char *start = o;
            while (s < e) {
                const char *q = memchr(s, '"', (size_t)(e - s));
                size_t k = (size_t)((q ? q + 1 : e) - s);
                memcpy(o, s, k);
                o += k;
                s += k + (q != NULL); /* skip the second quote of the pair */
            }
            f->p = start;
            f->n = (size_t)(o - start);
        }
    }
    r->rec_line = b->line;
    r->raw_off = (size_t)(rec - buf);
    r->raw_n = (size_t)(raw_end - rec);
    b->pos = (size_t)(p - buf);
    b->line = line;
    return PARSE_RECORD;
}

static int csv_setup(csv_reader *r, char delim, patron_error *err)
{
    if (delim == 0)
        delim = ',';
    if (delim == '"' || delim == '\n' || delim == '\r')
        return err_set(err, PATRON_EUSAGE, "invalid delimiter '%c'", delim == '"' ? '"' : '?');
    r->delim = delim;
    r->ws = delim == ' ';
    r->stop['\n'] = 1;
    if (r->ws) {
        static const char blanks[] = {' ', '\t', '\r', '\v', '\f'};
        for (size_t i = 0; i < sizeof blanks; i++)
            r->stop[(unsigned char)blanks[i]] = r->blank[(unsigned char)blanks[i]] = 1;
    } else {
        r->stop[(unsigned char)delim] = 1;
    }
    return 0;
}

int csv_open(const char *path, char delim, csv_reader **out, patron_error *err)
{
    *out = NULL;
    csv_reader *r = mem_calloc(1, sizeof *r);
    if (!r)
        return oom(err);
    r->in.csv = 1;
    int rc = csv_setup(r, delim, err);
    if (rc == 0)
        rc = buf_open_file(&r->in, path, err);
    if (rc < 0) {
        csv_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

int csv_open_mem(const char *name, const char *data, size_t n, char delim, csv_reader **out,
                 patron_error *err)
{
    *out = NULL;
    csv_reader *r = mem_calloc(1, sizeof *r);
    if (!r)
        return oom(err);
    r->in.csv = 1;
    int rc = csv_setup(r, delim, err);
    if (rc == 0)
        rc = buf_open_mem(&r->in, name, data, n, err);
    if (rc < 0) {
        csv_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

int csv_next(csv_reader *r, const csv_field **fields, size_t *nfields, patron_error *err)
{
    in_buf *b = &r->in;
    if (b->status) {
        if (err)
            *err = b->failure;
        return b->status;
    }
    if (!b->bom_done) {
        int rc = buf_skip_bom(b, &b->failure);
        if (rc < 0)
            return buf_fail(b, rc, err);
    }
    for (;;) {
        int rc = csv_parse(r, &b->failure);
        if (rc == PARSE_RECORD) {
            *fields = r->fields;
            *nfields = r->nfields;
            return 1;
        }
        if (rc == PARSE_END) {
            r->raw_n = 0;
            r->nfields = 0;
            return 0;
        }
        if (rc < 0)
            return buf_fail(b, rc, err);
        rc = buf_refill(b, &b->failure);
        if (rc < 0)
            return buf_fail(b, rc, err);
    }
}

uint64_t csv_line(const csv_reader *r)
{
    return r->rec_line;
}

const char *csv_raw(const csv_reader *r, size_t *n)
{
    *n = r->raw_n;
    return r->in.buf + r->raw_off;
}

uint64_t csv_consumed(const csv_reader *r)
{
    return buf_consumed(&r->in);
}

uint64_t csv_size(const csv_reader *r)
{
    return r->in.src.size;
}

const char *csv_name(const csv_reader *r)
{
    return r->in.src.name;
}

void csv_free(csv_reader *r)
{
    if (!r)
        return;
    buf_release(&r->in);
    mem_free(r->fields);
    mem_free(r->esc);
    mem_free(r->scratch);
    mem_free(r);
}

/* ---- lines --------------------------------------------------------------------------- */

struct line_reader {
    in_buf in;
    size_t scanned;    /* bytes after pos already known to hold no '\n' */
    uint64_t cur_line; /* line number of the line last returned */
};

static int lines_setup(line_reader *r, int rc, line_reader **out)
{
    if (rc < 0) {
        lines_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

int lines_open(const char *path, line_reader **out, patron_error *err)
{
    *out = NULL;
    line_reader *r = mem_calloc(1, sizeof *r);
    if (!r)
        return oom(err);
    return lines_setup(r, buf_open_file(&r->in, path, err), out);
}

int lines_open_mem(const char *name, const char *data, size_t n, line_reader **out,
                   patron_error *err)
{
    *out = NULL;
    line_reader *r = mem_calloc(1, sizeof *r);
    if (!r)
        return oom(err);
    return lines_setup(r, buf_open_mem(&r->in, name, data, n, err), out);
}

int lines_next(line_reader *r, const char **line, size_t *n, patron_error *err)
{
    in_buf *b = &r->in;
    if (b->status) {
        if (err)
            *err = b->failure;
        return b->status;
    }
    if (!b->bom_done) {
        int rc = buf_skip_bom(b, &b->failure);
        if (rc < 0)
            return buf_fail(b, rc, err);
    }
    for (;;) {
        char *s = b->buf + b->pos;
        size_t avail = b->end - b->pos;
        char *nl = memchr(s + r->scanned, '\n', avail - r->scanned);
        size_t k;
        if (nl) {
            k = (size_t)(nl - s);
            b->pos += k + 1;
        } else if (b->eof) {
            if (avail == 0)
                return 0;
            k = avail;
            b->pos = b->end;
        } else {
            r->scanned = avail;
            int rc = buf_refill(b, &b->failure);
            if (rc < 0)
                return buf_fail(b, rc, err);
            continue;
        }
        r->scanned = 0;
        if (k && s[k - 1] == '\r')
            k--;
        r->cur_line = b->line++;
        *line = s;
        *n = k;
        return 1;
    }
}

uint64_t lines_line(const line_reader *r)
{
    return r->cur_line;
}

uint64_t lines_consumed(const line_reader *r)
{
    return buf_consumed(&r->in);
}

uint64_t lines_size(const line_reader *r)
{
    return r->in.src.size;
}

const char *lines_name(const line_reader *r)
{
    return r->in.src.name;
}

void lines_free(line_reader *r)
{
    if (!r)
        return;
    buf_release(&r->in);
    mem_free(r);
}
