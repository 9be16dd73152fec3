#include "eds_framer.h"

#include "eds_err.h"

#include <stdlib.h>
#include <string.h>

/* A partial-line buffer larger than this is freed after use rather than
 * kept, so one big record does not pin memory on an idle connection. */
#define FRAMER_KEEP_CAP 4096

void eds_framer_init(eds_framer *f, size_t max_line)
{
    memset(f, 0, sizeof(*f));
    f->max_line = max_line < 2 ? 2 : max_line;
}

void eds_framer_free(eds_framer *f)
{
    free(f->buf);
    f->buf = NULL;
    f->len = f->cap = 0;
}

/* Strips one CR before the (already removed) LF and emits non-empty lines. */
static int emit(const char *line, size_t len, eds_line_fn fn, void *ctx)
{
    if (len > 0 && line[len - 1] == '\r')
        len--;
    if (len == 0)
        return 0;
    return fn(ctx, line, len);
}

static int append(eds_framer *f, const char *data, size_t n)
{
    if (f->len + n > f->cap) {
        size_t cap = f->cap ? f->cap : 256;
        while (cap < f->len + n)
            cap *= 2;
        if (cap > f->max_line - 1)
            cap = f->max_line - 1;
        char *nb = realloc(f->buf, cap);
        if (!nb)
            return EDS_ERR_NOMEM;
        f->buf = nb;
        f->cap = cap;
    }
    memcpy(f->buf + f->len, data, n);
    f->len += n;
    return EDS_OK;
}

static void reset_buffer(eds_framer *f)
{
    f->len = 0;
    if (f->cap > FRAMER_KEEP_CAP)
        eds_framer_free(f);
}

int eds_framer_feed(eds_framer *f, const char *data, size_t len, eds_line_fn fn, void *ctx)
{
    if (f->failed)
        return EDS_ERR_TOOLONG;
    if (f->paused)
        return EDS_ERR_INVAL;
    const size_t limit = f->max_line - 1; /* content bytes allowed before the LF */
    while (len > 0) {
        const char *nl = memchr(data, '\n', len);
        size_t chunk = nl ? (size_t)(nl - data) : len;
        if (f->len + chunk > limit) {
            f->failed = true;
            reset_buffer(f);
            return EDS_ERR_TOOLONG;
        }
        if (!nl) {
            int rc = append(f, data, chunk);
            if (rc != EDS_OK)
                return rc;
            return EDS_OK;
        }
        int rc;
        if (f->len == 0) {
            rc = emit(data, chunk, fn, ctx); /* whole line inside data: no copy */
        } else {
            rc = append(f, data, chunk);
            if (rc != EDS_OK)
                return rc;
            rc = emit(f->buf, f->len, fn, ctx);
            reset_buffer(f);
        }
        data += chunk + 1;
        len -= chunk + 1;
        if (rc == EDS_FRAMER_PAUSE && len > 0) {
            /* Keep the rest; buf is empty here (its line was just emitted). */
            free(f->buf);
            f->buf = malloc(len);
            if (!f->buf) {
                f->cap = 0;
                return EDS_ERR_NOMEM;
            }
            memcpy(f->buf, data, len);
            f->len = f->cap = len;
            f->paused = true;
            return rc;
        }
        if (rc != 0)
            return rc;
    }
    return EDS_OK;
}

int eds_framer_resume(eds_framer *f, eds_line_fn fn, void *ctx)
{
    if (!f->paused)
        return EDS_OK;
    char *kept = f->buf;
    size_t n = f->len;
    f->buf = NULL;
    f->len = f->cap = 0;
    f->paused = false;
    int rc = eds_framer_feed(f, kept, n, fn, ctx);
    free(kept);
    return rc;
}
