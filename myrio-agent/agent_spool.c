#include "agent_spool.h"

#include "edsagent.h"
#include "eds_bytes.h"
#include "eds_log.h"
#include "eds_proto.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* Segments are rotated at max_bytes / SEG_PARTS, so at most about one
 * segment's worth of acked records occupies the disk budget. */
#define SEG_PARTS 8
#define SEG_MIN (4u * 1024u)
#define SEG_MAX (16u * 1024u * 1024u)

typedef struct spool_seg {
    uint64_t first_seq, last_seq; /* last_seq 0: no record yet */
    uint64_t count;               /* records */
    size_t size;                  /* bytes */
    size_t synced;                /* bytes known durable */
    int fd;
} spool_seg;

struct agent_spool {
    char *dir;
    int dirfd;
    int lockfd;
    int sync_policy;
    size_t max_bytes;
    size_t seg_max;
    char stream[EDS_STREAM_MAX + 1];
    uint64_t acked;
    bool acked_dirty;
    uint64_t last_seq;
    uint64_t unread;
    size_t bytes;
    spool_seg *segs;
    size_t nsegs, capsegs;
    bool writer_open; /* the last segment takes appends */
    /* read cursor */
    size_t rseg;
    size_t roff;
    uint64_t ridx; /* records of rseg already read */
};

static uint32_t record_crc(const unsigned char *seqbytes, const void *data, size_t len)
{
    return eds_crc32(eds_crc32(0, seqbytes, 8), data, len);
}

static void seg_name(char *buf, size_t cap, uint64_t first_seq)
{
    snprintf(buf, cap, "seg-%016" PRIx64 ".eds", first_seq);
}

static int io_err(eds_error *err, const char *what, const agent_spool *sp, const char *name)
{
    return eds_error_set(err, EDS_ERR_IO, "spool %s/%s: %s: %s", sp->dir, name, what,
                         strerror(errno));
}

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int read_full(int fd, void *buf, size_t len, off_t off)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = pread(fd, p, len, off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0)
            return 1; /* short */
        p += n;
        len -= (size_t)n;
        off += n;
    }
    return 0;
}

/* Writes name atomically: name.tmp, fsync, rename, fsync of the folder. */
static int write_atomic(agent_spool *sp, const char *name, const char *text, eds_error *err)
{
    char tmp[64];
    snprintf(tmp, sizeof(tmp), "%s.tmp", name);
    int fd = openat(sp->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return io_err(err, "create", sp, tmp);
    if (write_all(fd, text, strlen(text)) != 0 || fsync(fd) != 0) {
        int rc = io_err(err, "write", sp, tmp);
        close(fd);
        unlinkat(sp->dirfd, tmp, 0);
        return rc;
    }
    close(fd);
    if (renameat(sp->dirfd, tmp, sp->dirfd, name) != 0)
        return io_err(err, "rename", sp, name);
    if (fsync(sp->dirfd) != 0)
        return io_err(err, "fsync folder", sp, ".");
    return EDS_OK;
}

/* Reads a small text file; returns 1 when missing, 0 with buf filled, -1 on error. */
static int read_small(agent_spool *sp, const char *name, char *buf, size_t cap)
{
    int fd = openat(sp->dirfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 1 : -1;
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    return 0;
}

static int new_stream(agent_spool *sp, eds_error *err)
{
    unsigned char rnd[8];
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return eds_error_set(err, EDS_ERR_IO, "/dev/urandom: %s", strerror(errno));
    int rc = read_full(fd, rnd, sizeof(rnd), 0);
    close(fd);
    if (rc != 0)
        return eds_error_set(err, EDS_ERR_IO, "/dev/urandom: short read");
    for (size_t i = 0; i < sizeof(rnd); i++)
        snprintf(sp->stream + 2 * i, 3, "%02x", rnd[i]);
    char text[EDS_STREAM_MAX + 2];
    snprintf(text, sizeof(text), "%s\n", sp->stream);
    return write_atomic(sp, "stream", text, err);
}

static int load_meta(agent_spool *sp, eds_error *err)
{
    char buf[128];
    int rc = read_small(sp, "stream", buf, sizeof(buf));
    if (rc < 0)
        return io_err(err, "read", sp, "stream");
    if (rc == 0 && !eds_stream_id_valid(buf))
        return eds_error_set(err, EDS_ERR_CORRUPT, "spool %s/stream: not a valid stream id",
                             sp->dir);
    if (rc == 0) {
        snprintf(sp->stream, sizeof(sp->stream), "%.64s", buf);
    } else {
        rc = new_stream(sp, err);
        if (rc != EDS_OK)
            return rc;
        eds_log_notice("spool %s: new spool, stream %s", sp->dir, sp->stream);
    }
    rc = read_small(sp, "acked", buf, sizeof(buf));
    if (rc < 0)
        return io_err(err, "read", sp, "acked");
    if (rc == 0) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(buf, &end, 10);
        if (errno || end == buf || *end || buf[0] == '-')
            return eds_error_set(err, EDS_ERR_CORRUPT, "spool %s/acked: not a number: '%s'",
                                 sp->dir, buf);
        sp->acked = v;
    }
    return EDS_OK;
}

static int add_seg(agent_spool *sp, uint64_t first_seq, int fd)
{
    if (sp->nsegs == sp->capsegs) {
        size_t cap = sp->capsegs ? sp->capsegs * 2 : 16;
        spool_seg *n = realloc(sp->segs, cap * sizeof(*n));
        if (!n)
            return EDS_ERR_NOMEM;
        sp->segs = n;
        sp->capsegs = cap;
    }
    spool_seg *s = &sp->segs[sp->nsegs++];
    memset(s, 0, sizeof(*s));
    s->first_seq = first_seq;
    s->fd = fd;
    return EDS_OK;
}

static int cmp_seg(const void *a, const void *b)
{
    const spool_seg *x = a, *y = b;
    return x->first_seq < y->first_seq ? -1 : x->first_seq > y->first_seq;
}

/* Scans one segment, truncating it after its last good record. */
static int scan_seg(agent_spool *sp, spool_seg *s, uint64_t prev_seq, eds_error *err)
{
    char name[64];
    seg_name(name, sizeof(name), s->first_seq);
    struct stat st;
    if (fstat(s->fd, &st) != 0)
        return io_err(err, "stat", sp, name);
    size_t fsize = (size_t)st.st_size;
    size_t off = 0;
    char *buf = NULL;
    size_t bufcap = 0;
    const char *why = NULL;
    while (off < fsize) {
        unsigned char h[SPOOL_HEADER];
        if (fsize - off < SPOOL_HEADER) {
            why = "torn record header";
            break;
        }
        if (read_full(s->fd, h, SPOOL_HEADER, (off_t)off) != 0) {
            free(buf);
            return io_err(err, "read", sp, name);
        }
        uint32_t len = eds_get_le32(h), crc = eds_get_le32(h + 4);
        uint64_t seq = eds_get_le64(h + 8);
        if (len > SPOOL_MAX_RECORD) {
            why = "impossible record length";
            break;
        }
        if (fsize - off - SPOOL_HEADER < len) {
            why = "torn record";
            break;
        }
        if (len > bufcap) {
            char *nb = realloc(buf, len);
            if (!nb) {
                free(buf);
                return EDS_ERR_NOMEM;
            }
            buf = nb;
            bufcap = len;
        }
        if (len && read_full(s->fd, buf, len, (off_t)(off + SPOOL_HEADER)) != 0) {
            free(buf);
            return io_err(err, "read", sp, name);
        }
        if (record_crc(h + 8, buf, len) != crc) {
            why = "checksum mismatch";
            break;
        }
        if (seq <= prev_seq || seq == 0) {
            why = "seq out of order";
            break;
        }
        prev_seq = seq;
        if (s->count == 0)
            s->first_seq = seq;
        s->last_seq = seq;
        s->count++;
        if (seq > sp->acked)
            sp->unread++;
        off += SPOOL_HEADER + len;
    }
    free(buf);
    if (why) {
        eds_log_warning("spool %s/%s: %s at offset %zu: truncating, %zu bytes dropped (a crash "
                        "cut the last write, or the file is damaged)",
                        sp->dir, name, why, off, fsize - off);
        if (ftruncate(s->fd, (off_t)off) != 0 || fsync(s->fd) != 0)
            return io_err(err, "truncate", sp, name);
    }
    s->size = s->synced = off;
    return EDS_OK;
}

static void close_seg_fd(spool_seg *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

/* Removes segment i from disk and from the table, keeping the reader right. */
static int remove_seg(agent_spool *sp, size_t i, eds_error *err)
{
    spool_seg *s = &sp->segs[i];
    char name[64];
    seg_name(name, sizeof(name), s->first_seq);
    uint64_t unread = 0;
    if (i > sp->rseg)
        unread = s->count;
    else if (i == sp->rseg)
        unread = s->count - sp->ridx;
    sp->unread = sp->unread >= unread ? sp->unread - unread : 0;
    close_seg_fd(s);
    if (unlinkat(sp->dirfd, name, 0) != 0 && errno != ENOENT)
        return io_err(err, "delete", sp, name);
    sp->bytes -= s->size;
    if (i == sp->nsegs - 1)
        sp->writer_open = false;
    memmove(&sp->segs[i], &sp->segs[i + 1], (sp->nsegs - i - 1) * sizeof(*s));
    sp->nsegs--;
    if (sp->rseg > i) {
        sp->rseg--;
    } else if (sp->rseg == i) {
        sp->roff = 0;
        sp->ridx = 0;
    }
    return EDS_OK;
}

/* Deletes leading segments whose records are all acked (never the writer). */
static int reap(agent_spool *sp, eds_error *err)
{
    while (sp->nsegs > 0) {
        spool_seg *s = &sp->segs[0];
        bool writer = sp->writer_open && sp->nsegs == 1;
        if (writer || s->last_seq > sp->acked)
            break;
        int rc = spool_flush_acked(sp, err);
        if (rc == EDS_OK)
            rc = remove_seg(sp, 0, err);
        if (rc != EDS_OK)
            return rc;
    }
    return EDS_OK;
}

int spool_open(const char *dir, size_t max_bytes, int sync_policy, agent_spool **out,
               eds_error *err)
{
    *out = NULL;
    agent_spool *sp = calloc(1, sizeof(*sp));
    if (!sp)
        return EDS_ERR_NOMEM;
    sp->dirfd = sp->lockfd = -1;
    sp->sync_policy = sync_policy;
    sp->max_bytes = max_bytes;
    sp->seg_max = max_bytes / SEG_PARTS;
    if (sp->seg_max < SEG_MIN)
        sp->seg_max = SEG_MIN;
    if (sp->seg_max > SEG_MAX)
        sp->seg_max = SEG_MAX;
    int rc = EDS_ERR_NOMEM;
    DIR *d = NULL;
    sp->dir = strdup(dir);
    if (!sp->dir)
        goto fail;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        rc = eds_error_set(err, EDS_ERR_IO, "spool %s: cannot create: %s", dir, strerror(errno));
        goto fail;
    }
    sp->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (sp->dirfd < 0) {
        rc = eds_error_set(err, EDS_ERR_IO, "spool %s: %s", dir, strerror(errno));
        goto fail;
    }
    sp->lockfd = openat(sp->dirfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (sp->lockfd < 0) {
        rc = io_err(err, "create", sp, "lock");
        goto fail;
    }
    if (flock(sp->lockfd, LOCK_EX | LOCK_NB) != 0) {
        rc = eds_error_set(err, EDS_ERR_IO, "spool %s is in use by another eds-agent (%s)", dir,
                           strerror(errno));
        goto fail;
    }
    rc = load_meta(sp, err);
    if (rc != EDS_OK)
        goto fail;

    d = fdopendir(dup(sp->dirfd));
    if (!d) {
        rc = io_err(err, "list", sp, ".");
        goto fail;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        unsigned long long first;
        char tail[8];
        if (sscanf(de->d_name, "seg-%16llx.%4s", &first, tail) != 2 || strcmp(tail, "eds") != 0)
            continue;
        char name[64];
        seg_name(name, sizeof(name), first);
        if (strcmp(name, de->d_name) != 0)
            continue;
        int fd = openat(sp->dirfd, name, O_RDWR | O_APPEND | O_CLOEXEC);
        if (fd < 0) {
            rc = io_err(err, "open", sp, name);
            goto fail;
        }
        rc = add_seg(sp, first, fd);
        if (rc != EDS_OK) {
            close(fd);
            goto fail;
        }
    }
    closedir(d);
    d = NULL;
    if (sp->nsegs > 1)
        qsort(sp->segs, sp->nsegs, sizeof(*sp->segs), cmp_seg);

    uint64_t prev = 0;
    for (size_t i = 0; i < sp->nsegs; i++) {
        rc = scan_seg(sp, &sp->segs[i], prev, err);
        if (rc != EDS_OK)
            goto fail;
        sp->bytes += sp->segs[i].size;
        if (sp->segs[i].count)
            prev = sp->segs[i].last_seq;
    }
    sp->last_seq = prev > sp->acked ? prev : sp->acked;
    /* Drop empty segments and fully acked ones; the last one stays the writer. */
    for (size_t i = 0; i < sp->nsegs;) {
        if (sp->segs[i].count == 0) {
            rc = remove_seg(sp, i, err);
            if (rc != EDS_OK)
                goto fail;
            continue;
        }
        i++;
    }
    rc = reap(sp, err);
    if (rc != EDS_OK)
        goto fail;
    if (sp->nsegs > 0 && sp->segs[sp->nsegs - 1].size < sp->seg_max)
        sp->writer_open = true;
    if (sp->nsegs || sp->acked)
        eds_log_notice("spool %s: stream %s, %" PRIu64 " record%s to deliver (%zu bytes in %zu "
                       "segment%s), acked up to seq %" PRIu64,
                       dir, sp->stream, sp->unread, eds_plural(sp->unread), sp->bytes, sp->nsegs,
                       eds_plural(sp->nsegs), sp->acked);
    *out = sp;
    return EDS_OK;
fail:
    if (d)
        closedir(d);
    spool_close(sp);
    return rc;
}

void spool_close(agent_spool *sp)
{
    if (!sp)
        return;
    eds_error err;
    if (sp->dirfd >= 0 && sp->lockfd >= 0) {
        if (spool_sync(sp, &err) != EDS_OK || spool_flush_acked(sp, &err) != EDS_OK)
            eds_log_error("%s", err.msg);
    }
    for (size_t i = 0; i < sp->nsegs; i++)
        close_seg_fd(&sp->segs[i]);
    free(sp->segs);
    if (sp->lockfd >= 0)
        close(sp->lockfd);
    if (sp->dirfd >= 0)
        close(sp->dirfd);
    free(sp->dir);
    free(sp);
}

const char *spool_stream(const agent_spool *sp)
{
    return sp->stream;
}

uint64_t spool_last_seq(const agent_spool *sp)
{
    return sp->last_seq;
}

uint64_t spool_acked(const agent_spool *sp)
{
    return sp->acked;
}

size_t spool_bytes(const agent_spool *sp)
{
    return sp->bytes;
}

uint64_t spool_unread(const agent_spool *sp)
{
    return sp->unread;
}

size_t spool_segments(const agent_spool *sp)
{
    return sp->nsegs;
}

/* Makes the current writer read-only: synced, no more appends. */
static int seal_writer(agent_spool *sp, eds_error *err)
{
    if (!sp->writer_open)
        return EDS_OK;
    int rc = spool_sync(sp, err);
    sp->writer_open = false;
    return rc;
}

static int open_writer(agent_spool *sp, uint64_t first_seq, eds_error *err)
{
    char name[64];
    seg_name(name, sizeof(name), first_seq);
    int fd = openat(sp->dirfd, name, O_RDWR | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return io_err(err, "create", sp, name);
    if (sp->sync_policy != EDS_AGENT_SYNC_NONE && fsync(sp->dirfd) != 0) {
        int rc = io_err(err, "fsync folder", sp, ".");
        close(fd);
        unlinkat(sp->dirfd, name, 0);
        return rc;
    }
    int rc = add_seg(sp, first_seq, fd);
    if (rc != EDS_OK) {
        close(fd);
        unlinkat(sp->dirfd, name, 0);
        return rc;
    }
    sp->writer_open = true;
    return EDS_OK;
}

int spool_append(agent_spool *sp, uint64_t seq, const char *data, size_t len, eds_error *err)
{
    if (seq <= sp->last_seq || len > SPOOL_MAX_RECORD)
        return eds_error_set(err, EDS_ERR_INVAL, "spool: seq %" PRIu64 " after %" PRIu64, seq,
                             sp->last_seq);
    size_t need = SPOOL_HEADER + len;
    int rc;
    if (sp->bytes + need > sp->max_bytes && sp->writer_open &&
        sp->segs[sp->nsegs - 1].last_seq <= sp->acked) {
        /* The writer only holds acked records: start afresh. */
        if ((rc = seal_writer(sp, err)) != EDS_OK || (rc = reap(sp, err)) != EDS_OK)
            return rc;
    }
    if (sp->bytes + need > sp->max_bytes)
        return eds_error_set(err, EDS_ERR_FULL, "spool %s is full (%zu of %zu bytes)", sp->dir,
                             sp->bytes, sp->max_bytes);
    if (sp->writer_open && sp->segs[sp->nsegs - 1].size >= sp->seg_max) {
        if ((rc = seal_writer(sp, err)) != EDS_OK || (rc = reap(sp, err)) != EDS_OK)
            return rc;
    }
    if (!sp->writer_open && (rc = open_writer(sp, seq, err)) != EDS_OK)
        return rc;
    spool_seg *s = &sp->segs[sp->nsegs - 1];
    unsigned char h[SPOOL_HEADER];
    eds_put_le32(h, (uint32_t)len);
    eds_put_le64(h + 8, seq);
    eds_put_le32(h + 4, record_crc(h + 8, data, len));
    char name[64];
    seg_name(name, sizeof(name), s->first_seq);
    if (write_all(s->fd, h, sizeof(h)) != 0 || write_all(s->fd, data, len) != 0) {
        int e = errno;
        /* No room on the disk (or past RLIMIT_FSIZE) is a full spool: full_policy applies. */
        if (e == ENOSPC || e == EDQUOT || e == EFBIG)
            rc = eds_error_set(err, EDS_ERR_FULL, "spool %s: the disk is full (%s)", sp->dir,
                               strerror(e));
        else
            rc = io_err(err, "write", sp, name);
        /* Cut what was half-written so the next append starts clean. */
        if (ftruncate(s->fd, (off_t)s->size) != 0)
            sp->writer_open = false;
        return rc;
    }
    if (s->count == 0)
        s->first_seq = seq;
    s->last_seq = seq;
    s->count++;
    s->size += need;
    sp->bytes += need;
    sp->last_seq = seq;
    sp->unread++;
    if (sp->sync_policy == EDS_AGENT_SYNC_ALWAYS)
        return spool_sync(sp, err);
    if (sp->sync_policy == EDS_AGENT_SYNC_NONE)
        s->synced = s->size;
    return EDS_OK;
}

int spool_sync(agent_spool *sp, eds_error *err)
{
    if (sp->nsegs == 0)
        return EDS_OK;
    spool_seg *s = &sp->segs[sp->nsegs - 1];
    if (s->synced == s->size)
        return EDS_OK;
    if (sp->sync_policy != EDS_AGENT_SYNC_NONE && fdatasync(s->fd) != 0) {
        char name[64];
        seg_name(name, sizeof(name), s->first_seq);
        return io_err(err, "fdatasync", sp, name);
    }
    s->synced = s->size;
    return EDS_OK;
}

int spool_read_next(agent_spool *sp, uint64_t *seq, char **data, size_t *len, eds_error *err)
{
    while (sp->rseg < sp->nsegs) {
        spool_seg *s = &sp->segs[sp->rseg];
        if (sp->roff + SPOOL_HEADER > s->synced) {
            if (sp->rseg + 1 >= sp->nsegs)
                return EDS_ERR_AGAIN;
            sp->rseg++;
            sp->roff = 0;
            sp->ridx = 0;
            continue;
        }
        char name[64];
        seg_name(name, sizeof(name), s->first_seq);
        unsigned char h[SPOOL_HEADER];
        if (read_full(s->fd, h, SPOOL_HEADER, (off_t)sp->roff) != 0)
            return io_err(err, "read", sp, name);
        uint32_t n = eds_get_le32(h);
        uint64_t rs = eds_get_le64(h + 8);
        char *buf = NULL;
        bool bad = n > SPOOL_MAX_RECORD || sp->roff + SPOOL_HEADER + n > s->synced;
        if (!bad) {
            buf = malloc(n ? n : 1);
            if (!buf)
                return EDS_ERR_NOMEM;
            if (read_full(s->fd, buf, n, (off_t)(sp->roff + SPOOL_HEADER)) != 0) {
                free(buf);
                return io_err(err, "read", sp, name);
            }
            bad = record_crc(h + 8, buf, n) != eds_get_le32(h + 4);
        }
        if (bad) {
            free(buf);
            uint64_t lost = s->count - sp->ridx;
            eds_log_error("spool %s/%s: record at offset %zu fails its checksum: skipping the "
                          "rest of this segment (%" PRIu64 " record%s lost)",
                          sp->dir, name, sp->roff, lost, eds_plural(lost));
            sp->unread = sp->unread >= lost ? sp->unread - lost : 0;
            sp->ridx = s->count;
            sp->roff = s->synced;
            if (sp->rseg + 1 >= sp->nsegs)
                return EDS_ERR_AGAIN;
            continue;
        }
        sp->roff += SPOOL_HEADER + n;
        sp->ridx++;
        if (sp->unread)
            sp->unread--;
        if (rs <= sp->acked) {
            free(buf);
            continue;
        }
        *seq = rs;
        *data = buf;
        *len = n;
        return EDS_OK;
    }
    return EDS_ERR_AGAIN;
}

int spool_flush_acked(agent_spool *sp, eds_error *err)
{
    if (!sp->acked_dirty)
        return EDS_OK;
    char text[32];
    snprintf(text, sizeof(text), "%" PRIu64 "\n", sp->acked);
    int rc = write_atomic(sp, "acked", text, err);
    if (rc == EDS_OK)
        sp->acked_dirty = false;
    return rc;
}

int spool_set_acked(agent_spool *sp, uint64_t seq, eds_error *err)
{
    if (seq <= sp->acked)
        return EDS_OK;
    sp->acked = seq;
    sp->acked_dirty = true;
    if (seq > sp->last_seq)
        sp->last_seq = seq;
    return reap(sp, err);
}

int spool_drop_oldest(agent_spool *sp, uint64_t *upto, uint64_t *unread, eds_error *err)
{
    *upto = 0;
    *unread = 0;
    if (sp->nsegs == 0)
        return EDS_ERR_NOTFOUND;
    int rc;
    if (sp->nsegs == 1 && (rc = seal_writer(sp, err)) != EDS_OK)
        return rc;
    spool_seg *s = &sp->segs[0];
    *upto = s->last_seq;
    if (sp->rseg == 0)
        *unread = s->count - sp->ridx;
    else
        *unread = 0;
    if (s->last_seq > sp->acked) {
        sp->acked = s->last_seq;
        sp->acked_dirty = true;
    }
    if ((rc = spool_flush_acked(sp, err)) != EDS_OK)
        return rc;
    return remove_seg(sp, 0, err);
}
