/*
 * eds_framer.h - protocol v1 line framing: bytes in, lines out, pulled.
 *
 * No sockets, no JSON, no callbacks (picohttpparser's way). The framer owns
 * one input buffer; the caller reads straight into it and then asks for
 * lines:
 *
 *     size_t room = eds_framer_space(&f, 16384, &p);   // read into p[0..room)
 *     eds_framer_commit(&f, n);                         // n bytes arrived
 *     while ((rc = eds_framer_next(&f, &line, &len)) == EDS_FRAMER_LINE)
 *         ...;                                          // or stop asking: a pause
 *
 * A line comes with the LF and a CR just before it removed; empty lines
 * (also "\r\n") are skipped. line points into the framer's buffer and stays
 * valid until the next call of eds_framer_next, _space, _feed or _free.
 * Pausing a connection is simply not asking for the next line: the unread
 * input stays where it is, and the next call of eds_framer_next carries on.
 *
 * Bounds: a line whose bytes, LF included, would exceed max_line is refused
 * with EDS_ERR_TOOLONG as soon as that is known, and the framer stays
 * failed. The buffer holds at most max_line - 1 + want bytes (want as given
 * to eds_framer_space); it is released once all input is consumed if it had
 * grown past a few KiB, and an unfinished line alone is moved out of a big
 * buffer into one of its own size, so an idle connection costs almost
 * nothing and a waiting one no more than its partial line.
 */
#ifndef EDS_FRAMER_H
#define EDS_FRAMER_H

#include <stdbool.h>
#include <stddef.h>

/* eds_framer_next: a line was handed out. */
#define EDS_FRAMER_LINE 1
/* eds_framer_next: no complete line held; read more input. */
#define EDS_FRAMER_MORE 0
/* eds_framer_next with skip_long: a line exceeded max_line; *line holds its first
 * max_line - 1 bytes, the rest is discarded up to the next LF. */
#define EDS_FRAMER_SKIPPED 2

typedef struct eds_framer {
    char *buf;       /* input; owned */
    size_t cap;      /* allocated size of buf */
    size_t start;    /* first unread byte */
    size_t end;      /* end of the input held */
    size_t scanned;  /* bytes from start known to hold no LF */
    size_t max_line; /* longest accepted line, LF included */
    bool failed;     /* a line was too long; every later call fails */
    bool skip_long;  /* set by the caller: a too-long line is skipped, not fatal */
    bool skipping;   /* discarding the rest of a too-long line, up to its LF */
    bool lent;       /* buf came from eds_framer_lend: kept when empty, for eds_framer_reclaim */
    char *back;      /* a lent buffer the framer is done with (an unfinished line moved out) */
    size_t back_cap;
} eds_framer;

/* Prepares f for lines of at most max_line bytes (LF included, >= 2). Allocates nothing. */
void eds_framer_init(eds_framer *f, size_t max_line);

/* Releases the buffer. f may be re-initialised afterwards. */
void eds_framer_free(eds_framer *f);

/*
 * Room for up to want more bytes after the input held: sets *p and returns
 * the room (== want), or 0 when out of memory or when the framer already
 * holds max_line bytes or more (ask for lines first). Moves the unread
 * input to the front of the buffer only when the room at its end is short.
 */
size_t eds_framer_space(eds_framer *f, size_t want, char **p);

/* Records that n bytes (<= the room just given) were written at *p. */
void eds_framer_commit(eds_framer *f, size_t n);

/*
 * Lending a read buffer, so that many connections can read through one
 * buffer in turn instead of each allocating and freeing its own per read:
 * eds_framer_lend hands the framer buf (malloc'd, cap bytes) when it holds
 * no buffer (true; the framer owns buf now) and does nothing otherwise
 * (false). The framer reads into it and hands out lines from it like from
 * its own; it does not free it when the input is consumed, and it moves an
 * unfinished line out of it into a buffer of the line's size. Then
 * eds_framer_reclaim gives it back (with its size, which grows if a line
 * needed more), or NULL while input is still held in it.
 */
bool eds_framer_lend(eds_framer *f, char *buf, size_t cap);
char *eds_framer_reclaim(eds_framer *f, size_t *cap);

/*
 * Copies len bytes of input in (for callers whose bytes are already in a
 * buffer of their own). Returns EDS_OK, EDS_ERR_NOMEM, or EDS_ERR_FULL
 * when the framer holds max_line bytes or more: ask for lines first.
 */
int eds_framer_feed(eds_framer *f, const char *data, size_t len);

/*
 * The next complete non-empty line: EDS_FRAMER_LINE with *line and *len
 * set; EDS_FRAMER_MORE when the input held has no complete line (the
 * partial one is kept); EDS_ERR_TOOLONG when a line exceeded max_line (for
 * good: the connection must close), or, with f->skip_long set,
 * EDS_FRAMER_SKIPPED with the line's start in *line and *len, after which
 * the framer drops input up to the next LF and carries on.
 */
int eds_framer_next(eds_framer *f, const char **line, size_t *len);

/* Bytes of input held and not handed out yet (an unfinished line, or lines
 * the caller has not asked for). */
static inline size_t eds_framer_pending(const eds_framer *f)
{
    return f->end - f->start;
}

#endif
