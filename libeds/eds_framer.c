#include "eds_framer.h"

#include "eds_err.h"

#include <stdlib.h>
#include <string.h>

/* A buffer larger than this is freed once all input is consumed rather than
 * kept, so one big read does not pin memory on an idle connection. */
#define FRAMER_KEEP_CAP 4096

void eds_framer_init(eds_framer *f, size_t max_line)
{
    memset(f, 0, sizeof(*f));
    f->max_line = max_line < 2 ? 2 : max_line;
}

void eds_framer_free(eds_framer *f)
{
    free(f->buf);
    free(f->back);
    f->buf = f->back = NULL;
    f->cap = f->start = f->end = f->scanned = f->back_cap = 0;
    f->lent = false;
}

/* Everything held was handed out: start over at the front. */
static void consumed_all(eds_framer *f)
{
    f->start = f->end = f->scanned = 0;
    if (f->cap > FRAMER_KEEP_CAP && !f->lent) {
        free(f->buf);
        f->buf = NULL;
        f->cap = 0;
    }
}

/* Only an unfinished line is held: if it sits in a big read buffer, move it
 * to one of its own size, so a connection that waits for the rest of a line
 * pins the line, not a whole read (the copy is what a push framer did on
 * every feed that ended inside a line). */
static void keep_partial(eds_framer *f, size_t held)
{
    f->scanned = held;
    if (f->cap <= FRAMER_KEEP_CAP || held > f->cap / 4)
        return;
    char *nb = malloc(held);
    if (!nb)
        return; /* keep the big one */
    memcpy(nb, f->buf + f->start, held);
    if (f->lent && !f->back) {
        f->back = f->buf; /* for eds_framer_reclaim */
        f->back_cap = f->cap;
    } else {
        free(f->buf);
    }
    f->lent = false;
    f->buf = nb;
    f->cap = f->end = held;
    f->start = 0;
}

size_t eds_framer_space(eds_framer *f, size_t want, char **p)
{
    size_t held = f->end - f->start;
    if (f->failed || want == 0 || held >= f->max_line)
        return 0;
    if (f->cap - f->end < want) {
        if (f->start > 0) { /* only the unread rest moves, and only when short of room */
            memmove(f->buf, f->buf + f->start, held);
            f->start = 0;
            f->end = held;
        }
        if (f->cap - f->end < want) {
            char *nb = realloc(f->buf, held + want);
            if (!nb)
                return 0;
            f->buf = nb;
            f->cap = held + want;
        }
    }
    *p = f->buf + f->end;
    return want;
}

void eds_framer_commit(eds_framer *f, size_t n)
{
    f->end += n;
}

bool eds_framer_lend(eds_framer *f, char *buf, size_t cap)
{
    if (f->buf || f->back)
        return false;
    f->buf = buf;
    f->cap = cap;
    f->start = f->end = f->scanned = 0;
    f->lent = true;
    return true;
}

char *eds_framer_reclaim(eds_framer *f, size_t *cap)
{
    char *b = NULL;
    if (f->back) {
        b = f->back;
        *cap = f->back_cap;
        f->back = NULL;
        f->back_cap = 0;
    } else if (f->lent && f->start == f->end) {
        b = f->buf;
        *cap = f->cap;
        f->buf = NULL;
        f->cap = f->start = f->end = f->scanned = 0;
        f->lent = false;
    }
    return b;
}

int eds_framer_feed(eds_framer *f, const char *data, size_t len)
{
    if (len == 0)
        return EDS_OK;
    if (f->end - f->start >= f->max_line)
        return EDS_ERR_FULL;
    char *p;
    if (eds_framer_space(f, len, &p) == 0)
        return f->failed ? EDS_ERR_TOOLONG : EDS_ERR_NOMEM;
    memcpy(p, data, len);
    eds_framer_commit(f, len);
    return EDS_OK;
}

int eds_framer_next(eds_framer *f, const char **line, size_t *len)
{
    const size_t limit = f->max_line - 1; /* content bytes allowed before the LF */
    while (!f->failed) {
        size_t held = f->end - f->start;
        if (held == 0) { /* also when no buffer is held (lent back): no pointer arithmetic */
            consumed_all(f);
            return EDS_FRAMER_MORE;
        }
        const char *from = f->buf + f->start;
        const char *nl =
            held > f->scanned ? memchr(from + f->scanned, '\n', held - f->scanned) : NULL;
        size_t n = nl ? (size_t)(nl - from) : held;
        if (f->skipping) { /* the rest of a too-long line */
            f->start = nl ? f->start + n + 1 : f->end;
            f->scanned = 0;
            f->skipping = !nl;
            continue;
        }
        if (n > limit && f->skip_long) {
            *line = from; /* stays valid: the next call only moves start */
            *len = limit;
            f->start = nl ? f->start + n + 1 : f->end;
            f->scanned = 0;
            f->skipping = !nl;
            return EDS_FRAMER_SKIPPED;
        }
        if (n > limit) {
            f->failed = true;
            consumed_all(f);
            break;
        }
        if (!nl) {
            if (held == 0)
                consumed_all(f);
            else
                keep_partial(f, held);
            return EDS_FRAMER_MORE;
        }
        f->start += n + 1;
        f->scanned = 0;
        if (n > 0 && from[n - 1] == '\r')
            n--;
        if (n > 0) {
            *line = from;
            *len = n;
            return EDS_FRAMER_LINE;
        }
    }
    return EDS_ERR_TOOLONG;
}
