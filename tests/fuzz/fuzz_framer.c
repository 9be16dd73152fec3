/*
 * fuzz_framer - the line framer against a model of protocol v1 framing.
 *
 * Input layout: byte 0 picks max_line (2..513), byte 1 how often the
 * reader pauses (stops asking for lines and reads more; 0: never), bytes
 * 2-3 seed the split sizes; the rest is the byte stream, read in pieces of
 * 1..64 bytes or, now and then, a big chunk. Whatever the splits and
 * pauses, the lines handed out must be the ones the model cuts from the
 * whole stream, a line too long must be refused exactly when the model says
 * so, the framer must never hold more than max_line - 1 bytes of a partial
 * line, and its buffer never more than max_line - 1 + one read, also when
 * it reads through a lent buffer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "eds_err.h"
#include "eds_framer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct sink {
    char *out;
    size_t len;
    size_t max_line;
    unsigned lines;
    unsigned pause_every;
} sink;

static void on_line(sink *s, const char *line, size_t len)
{
    if (len == 0 || len > s->max_line - 1 || memchr(line, '\n', len))
        abort();
    memcpy(s->out + s->len, line, len);
    s->len += len;
    s->out[s->len++] = '\n';
    s->lines++;
}

/* The model: split at LF, refuse a segment (LF-terminated or the final
 * tail) longer than max_line - 1, strip one CR, drop empty lines. Returns
 * EDS_ERR_TOOLONG or EDS_OK; *tail is the unterminated rest. */
static int model(const char *d, size_t n, size_t max_line, sink *out, size_t *tail)
{
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        bool end = i == n;
        if (!end && d[i] != '\n')
            continue;
        size_t len = i - start;
        if (len > max_line - 1)
            return EDS_ERR_TOOLONG;
        if (end) {
            *tail = len;
            break;
        }
        if (len > 0 && d[i - 1] == '\r')
            len--;
        if (len > 0) {
            memcpy(out->out + out->len, d + start, len);
            out->len += len;
            out->out[out->len++] = '\n';
        }
        start = i + 1;
    }
    return EDS_OK;
}

/* Asks for lines like a connection does: until the framer wants more input,
 * or (a pause) after every pause_every lines. EDS_FRAMER_PAUSE then. */
#define PAUSED 2
static int ask(eds_framer *f, sink *s)
{
    const char *line;
    size_t len;
    int rc;
    while ((rc = eds_framer_next(f, &line, &len)) == EDS_FRAMER_LINE) {
        on_line(s, line, len);
        if (s->pause_every && s->lines % s->pause_every == 0)
            return PAUSED;
    }
    return rc;
}

/* Reads n bytes the way a socket read does (straight into the framer), then
 * asks for lines. While the framer refuses room (max_line bytes held during
 * a pause), it first asks for the lines held. */
static int feed(eds_framer *f, const char *d, size_t n, size_t max_piece, sink *s)
{
    char *p;
    size_t room;
    if (!f->buf && n % 2) { /* now and then through a lent buffer, as the gateway reads */
        char *lent = malloc(max_piece);
        if (!lent || !eds_framer_lend(f, lent, max_piece))
            abort();
    }
    while ((room = eds_framer_space(f, n, &p)) == 0) {
        int rc = ask(f, s);
        if (rc < 0)
            return rc;
    }
    if (room != n || f->cap > s->max_line - 1 + max_piece)
        abort();
    memcpy(p, d, n);
    eds_framer_commit(f, n);
    int rc = ask(f, s);
    size_t cap;
    free(eds_framer_reclaim(f, &cap)); /* NULL while input is held in it */
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    size_t max_line = 2 + (size_t)data[0] * 2;
    unsigned pause_every = data[1] % 5;
    uint32_t rng = (uint32_t)data[2] << 8 | data[3] | 1u << 16;
    const char *d = (const char *)data + 4;
    size_t n = size - 4;

    sink want = {.out = malloc(n + 1), .max_line = max_line};
    sink got = {.out = malloc(n + 1), .max_line = max_line, .pause_every = pause_every};
    if (!want.out || !got.out)
        abort();
    size_t tail = 0;
    int want_rc = model(d, n, max_line, &want, &tail);

    eds_framer f;
    eds_framer_init(&f, max_line);
    int rc = EDS_OK;
    size_t off = 0;
    while (off < n && rc == EDS_OK) {
        rng ^= rng << 13; /* xorshift32 */
        rng ^= rng >> 17;
        rng ^= rng << 5;
        size_t piece = rng % 8 == 0 ? 1 + rng % 4096 : 1 + rng % 64;
        if (piece > n - off)
            piece = n - off;
        rc = feed(&f, d + off, piece, 4096, &got);
        off += piece;
        if (rc == EDS_FRAMER_MORE && eds_framer_pending(&f) > max_line - 1)
            abort();
        if (rc == PAUSED || rc == EDS_FRAMER_MORE)
            rc = EDS_OK;
    }
    while (rc == EDS_OK && (rc = ask(&f, &got)) == PAUSED) /* the lines still held */
        rc = EDS_OK;
    if (rc == EDS_FRAMER_MORE)
        rc = EDS_OK;
    if (rc != want_rc)
        abort();
    /* Lines before the refusal (or all of them) are the model's. */
    if (got.len > want.len || memcmp(got.out, want.out, got.len) != 0)
        abort();
    if (rc == EDS_OK && (got.len != want.len || eds_framer_pending(&f) != tail))
        abort();
    /* A failed framer stays failed. */
    const char *line;
    size_t len;
    if (rc == EDS_ERR_TOOLONG && (eds_framer_feed(&f, "x\n", 2) != EDS_ERR_TOOLONG ||
                                  eds_framer_next(&f, &line, &len) != EDS_ERR_TOOLONG))
        abort();
    eds_framer_free(&f);
    free(want.out);
    free(got.out);
    return 0;
}
