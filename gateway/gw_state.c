#include "gw_state.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "eds_bytes.h"
#include "eds_log.h"
#include "eds_proto.h"
#include "gw_syncer.h"

#define STATE_FILE "state.log"
#define STATE_TMP "state.tmp"
#define STATE_SYNC_MS 2000       /* fdatasync at most every 2 s, off the loop */
#define STATE_BUF_MAX (4u << 20) /* pending lines while writes fail */
#define STATE_LINE_MAX (EDS_DEVICE_MAX + EDS_STREAM_MAX + 24)

struct gw_state {
    char *dir;
    int fd;
    char *buf; /* pending lines */
    size_t len, cap;
    size_t file_size;
    gw_syncer *syncer;
};

/* Parses "DEVICE STREAM SEQ"; returns 0 or -1 for a malformed (torn) line. */
static int parse_line(char *line, gw_state_entry_fn fn, void *ctx)
{
    char *dev = strtok(line, " ");
    char *stream = strtok(NULL, " ");
    char *seq = strtok(NULL, " ");
    if (!dev || !stream || !seq || strtok(NULL, " "))
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(seq, &end, 10);
    if (errno || *end || v > EDS_SEQ_MAX || !eds_device_id_valid(dev) ||
        !eds_stream_id_valid(stream))
        return -1;
    fn(ctx, dev, stream, (uint64_t)v);
    return 0;
}

/* *size: bytes read; *good: the end of the last complete line. */
static int replay(const char *path, gw_state_entry_fn fn, void *ctx, size_t *size, size_t *good,
                  bool *torn, eds_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        if (errno == ENOENT)
            return EDS_OK;
        return eds_error_set(err, EDS_ERR_IO, "%s: %s", path, strerror(errno));
    }
    char line[STATE_LINE_MAX + 2];
    unsigned bad = 0;
    while (fgets(line, sizeof(line), f)) {
        size_t n = strlen(line);
        *size += n;
        if (n == 0 || line[n - 1] != '\n') {
            bad++; /* torn or over-long: skip (the rest of an over-long line too) */
            *torn = feof(f);
            continue;
        }
        *torn = false;
        *good = *size;
        line[n - 1] = '\0';
        if (parse_line(line, fn, ctx) != 0)
            bad++;
    }
    fclose(f);
    if (bad)
        fprintf(stderr, "eds-gateway: warning: %s: skipped %u malformed line(s)\n", path, bad);
    return EDS_OK;
}

int gw_state_open(const char *dir, gw_state_entry_fn fn, void *ctx, gw_state **out, eds_error *err)
{
    *out = NULL;
    if (mkdir(dir, 0750) != 0 && errno != EEXIST)
        return eds_error_set(err, EDS_ERR_IO, "state_dir %s: %s", dir, strerror(errno));
    gw_state *st = calloc(1, sizeof(*st));
    if (!st)
        return EDS_ERR_NOMEM;
    st->fd = -1;
    st->dir = strdup(dir);
    char *path = eds_path_join(dir, STATE_FILE);
    int rc = EDS_ERR_NOMEM;
    if (!st->dir || !path)
        goto err;
    bool torn = false;
    size_t good = 0;
    rc = replay(path, fn, ctx, &st->file_size, &good, &torn, err);
    if (rc != EDS_OK)
        goto err;
    st->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (st->fd < 0) {
        rc = eds_error_set(err, EDS_ERR_IO, "%s: %s", path, strerror(errno));
        goto err;
    }
    /* A crash mid-write (or a full disk: a partial write) leaves part of a
     * line at the end. Cut it off: ended by a newline it would be read at the
     * next replay, and "dev s 12" torn from "dev s 1234" is a valid entry with
     * a wrong seq. Where cutting fails, end it (pending like an entry, so that
     * a full disk only delays it): the next entry is not glued to it. */
    if (torn && ftruncate(st->fd, (off_t)good) == 0) {
        st->file_size = good;
    } else if (torn) {
        rc = EDS_ERR_NOMEM;
        if (!(st->buf = malloc(4096)))
            goto err;
        st->cap = 4096;
        st->buf[st->len++] = '\n';
        if (gw_state_flush(st, NULL) != EDS_OK)
            fprintf(stderr,
                    "eds-gateway: warning: %s: cannot end the torn last line yet: "
                    "retried with the next entry\n",
                    path);
    }
    if ((rc = gw_syncer_start(st->fd, STATE_SYNC_MS, &st->syncer)) != EDS_OK) {
        eds_error_set(err, rc, "state journal: cannot start its sync thread");
        goto err;
    }
    free(path);
    *out = st;
    return EDS_OK;
err:
    free(path);
    gw_state_close(st);
    return rc;
}

void gw_state_close(gw_state *st)
{
    if (!st)
        return;
    if (st->fd >= 0)
        gw_state_flush(st, NULL);
    gw_syncer_stop(st->syncer); /* syncs what is unsynced */
    if (st->fd >= 0)
        close(st->fd);
    free(st->buf);
    free(st->dir);
    free(st);
}

int gw_state_append(gw_state *st, const char *device, const char *stream, uint64_t last_seq)
{
    if (st->len > STATE_BUF_MAX)
        return EDS_ERR_FULL; /* writes keep failing: do not grow without end */
    if (st->cap - st->len < STATE_LINE_MAX) {
        size_t cap = st->cap ? st->cap * 2 : 4096;
        char *nb = realloc(st->buf, cap);
        if (!nb)
            return EDS_ERR_NOMEM;
        st->buf = nb;
        st->cap = cap;
    }
    int k = snprintf(st->buf + st->len, st->cap - st->len, "%s %s %" PRIu64 "\n", device, stream,
                     last_seq);
    if (k > 0 && (size_t)k < st->cap - st->len)
        st->len += (size_t)k;
    return EDS_OK;
}

int gw_state_flush(gw_state *st, eds_error *err)
{
    size_t off = 0;
    while (off < st->len) {
        ssize_t w = write(st->fd, st->buf + off, st->len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            /* Keep the unwritten rest for the next try. */
            memmove(st->buf, st->buf + off, st->len - off);
            st->len -= off;
            return eds_error_set(err, EDS_ERR_IO, "state journal: %s", strerror(errno));
        }
        off += (size_t)w;
    }
    st->file_size += st->len;
    if (st->len)
        gw_syncer_dirty(st->syncer);
    st->len = 0;
    return EDS_OK;
}

void gw_state_sync(gw_state *st)
{
    if (st->fd >= 0 && fdatasync(st->fd) != 0)
        eds_log_error("state journal: fdatasync: %s", strerror(errno));
}

int gw_state_wants_compaction(const gw_state *st, size_t live_entries)
{
    size_t live_bytes = live_entries * 48 + 4096;
    return st->file_size > 1024 * 1024 && st->file_size > 8 * live_bytes;
}

int gw_state_compact(gw_state *st, gw_state_iter_fn next, void *ctx, eds_error *err)
{
    int rc = gw_state_flush(st, err);
    if (rc != EDS_OK)
        return rc;
    char *tmp = eds_path_join(st->dir, STATE_TMP);
    char *path = eds_path_join(st->dir, STATE_FILE);
    FILE *f = NULL;
    rc = EDS_ERR_NOMEM;
    if (!tmp || !path)
        goto out;
    f = fopen(tmp, "w");
    if (!f) {
        rc = eds_error_set(err, EDS_ERR_IO, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    const char *dev, *stream;
    uint64_t seq;
    size_t size = 0;
    while (next(ctx, &dev, &stream, &seq)) {
        int k = fprintf(f, "%s %s %" PRIu64 "\n", dev, stream, seq);
        if (k > 0)
            size += (size_t)k;
    }
    /* ferror: glibc drops a buffer it failed to write (ENOSPC) and a later fflush of
     * an empty buffer succeeds, so a snapshot missing lines would replace the journal. */
    int werr = ferror(f) ? (errno ? errno : EIO) : 0;
    if (werr || fflush(f) != 0 || fsync(fileno(f)) != 0) {
        rc = eds_error_set(err, EDS_ERR_IO, "%s: %s", tmp, strerror(werr ? werr : errno));
        unlink(tmp);
        goto out;
    }
    /* The descriptor for the new journal before the rename: failing to open it after
     * (EMFILE in a connection flood) would leave appends going to the replaced file. */
    int fd = open(tmp, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd < 0) {
        rc = eds_error_set(err, EDS_ERR_IO, "%s: %s", tmp, strerror(errno));
        unlink(tmp);
        goto out;
    }
    if (rename(tmp, path) != 0) {
        rc = eds_error_set(err, EDS_ERR_IO, "rename %s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        goto out;
    }
    gw_syncer_set_fd(st->syncer, fd);
    close(st->fd);
    st->fd = fd;
    st->file_size = size;
    rc = EDS_OK;
out:
    if (f)
        fclose(f);
    free(tmp);
    free(path);
    return rc;
}
