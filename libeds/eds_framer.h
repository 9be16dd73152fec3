/*
 * eds_framer.h - protocol v1 line framing: bytes in, lines out.
 *
 * No sockets, no JSON. Feed it bytes as they arrive, split anywhere; it
 * calls back once per complete line, with the LF and a CR just before it
 * removed. Empty lines (also "\r\n") are skipped. A line whose bytes,
 * LF included, would exceed max_line is refused with EDS_ERR_TOOLONG as
 * soon as that is known, and the framer never holds more than max_line - 1
 * bytes of a partial line.
 *
 * Memory: lines that arrive whole inside one feed are handed out as
 * pointers into the caller's data (no copy). Only an unfinished tail is
 * copied into the framer's own buffer, which grows on demand up to
 * max_line - 1 bytes and is released once the line completes if it had
 * grown large, so an idle connection costs almost nothing.
 */
#ifndef EDS_FRAMER_H
#define EDS_FRAMER_H

#include <stdbool.h>
#include <stddef.h>

/* Called once per line. line is not NUL-terminated and is valid only during
 * the call. Return 0 to go on; EDS_FRAMER_PAUSE to stop after this line and
 * keep the rest of the feed for eds_framer_resume(); or any other value to
 * stop feeding: the framer then returns that value and drops the rest. */
typedef int (*eds_line_fn)(void *ctx, const char *line, size_t len);

/* Returned by a callback (and then by feed/resume) to pause: the framer keeps
 * the unconsumed bytes, at most one feed's worth plus a partial line. */
#define EDS_FRAMER_PAUSE 1

typedef struct eds_framer {
    char *buf;       /* partial line carried between feeds; owned */
    size_t len;      /* bytes in buf */
    size_t cap;      /* allocated size of buf */
    size_t max_line; /* longest accepted line, LF included */
    bool failed;     /* a line was too long; every later feed fails */
    bool paused;     /* buf holds unconsumed input: call eds_framer_resume() */
} eds_framer;

/* Prepares f for lines of at most max_line bytes (LF included, >= 2). Allocates nothing. */
void eds_framer_init(eds_framer *f, size_t max_line);

/* Releases the partial-line buffer. f may be re-initialised afterwards. */
void eds_framer_free(eds_framer *f);

/*
 * Consumes len bytes of data, calling fn for each complete non-empty line.
 * Returns EDS_OK when all bytes were consumed, EDS_ERR_TOOLONG when a line
 * exceeded max_line (the framer stays failed: the connection must close),
 * EDS_ERR_NOMEM, or the non-zero value fn returned.
 */
int eds_framer_feed(eds_framer *f, const char *data, size_t len, eds_line_fn fn, void *ctx);

/*
 * Processes the input kept by a pause, as feed would. Returns what feed
 * returns (EDS_FRAMER_PAUSE again if the callback paused again). Calling
 * it when not paused does nothing and returns EDS_OK. Feeding while paused
 * is a caller error (EDS_ERR_INVAL).
 */
int eds_framer_resume(eds_framer *f, eds_line_fn fn, void *ctx);

/* Bytes of input currently held (an unfinished line, or what a pause kept). */
static inline size_t eds_framer_pending(const eds_framer *f)
{
    return f->len;
}

#endif
