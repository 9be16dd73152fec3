#include "gw_cmdstore.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "eds_bytes.h"
#include "eds_log.h"
#include "eds_proto.h"
#include "gw_syncer.h"

#define STORE_FILE "cmds.log"
#define STORE_TMP "cmds.tmp"
#define STORE_SYNC_MS 2000
#define STORE_MAX_FILE (1024u * 1024 * 1024) /* refused on open: not ours to hold */
#define A_HEAD (1 + 8 + 8 + 4 * 4 + 1)       /* up to the device */
#define D_SIZE (1 + 8 + 4)

struct gw_cmdstore {
    char *path, *tmp;
    int fd, tmp_fd;
    bool tmp_failed;
    uint64_t next_uid;
    size_t file_size, tmp_size;
    size_t live_bytes; /* A records of live commands, roughly (device length not known at
                          del): for the compaction decision only */
    gw_syncer *syncer;
};

static size_t a_size(const gw_cmd *c, size_t devlen)
{
    return A_HEAD + devlen + c->len + c->ref_len + c->rt_len + c->corr_len + 4;
}

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Appends rec; on a failure (a full disk) cuts a partial record off again: it would end
 * the replay there and hide every record appended after it. */
static int append(gw_cmdstore *s, const void *rec, size_t len, eds_error *err)
{
    if (write_all(s->fd, rec, len) == 0) {
        s->file_size += len;
        gw_syncer_dirty(s->syncer);
        return EDS_OK;
    }
    int rc = eds_error_set(err, EDS_ERR_IO, "%s: %s", s->path, strerror(errno));
    if (ftruncate(s->fd, (off_t)s->file_size) != 0)
        eds_log_error("%s: truncate: %s", s->path, strerror(errno));
    return rc;
}

static void put_crc(unsigned char *rec, size_t body)
{
    eds_put_le32(rec + body, eds_crc32(0, rec, body));
}

/* The D record (removal) of uid. */
static void encode_del(unsigned char rec[D_SIZE], uint64_t uid)
{
    rec[0] = 'D';
    eds_put_le64(rec + 1, uid);
    put_crc(rec, D_SIZE - 4);
}

/* The A record of cmd for device, malloc'd; *len its size. */
static unsigned char *encode(const char *device, const gw_cmd *c, size_t *len)
{
    size_t devlen = strlen(device);
    size_t n = a_size(c, devlen);
    unsigned char *r = malloc(n);
    if (!r)
        return NULL;
    r[0] = 'A';
    eds_put_le64(r + 1, c->uid);
    eds_put_le64(r + 9, (uint64_t)c->expires_at);
    eds_put_le32(r + 17, (uint32_t)c->len);
    eds_put_le32(r + 21, c->ref_len);
    eds_put_le32(r + 25, c->rt_len);
    eds_put_le32(r + 29, c->corr_len);
    r[33] = (unsigned char)devlen;
    unsigned char *p = r + A_HEAD;
    memcpy(p, device, devlen);
    p += devlen;
    memcpy(p, c->json, c->len);
    p += c->len;
    memcpy(p, gw_cmd_ref(c), c->ref_len);
    p += c->ref_len;
    memcpy(p, gw_cmd_rt(c), c->rt_len);
    p += c->rt_len;
    memcpy(p, gw_cmd_corr(c), c->corr_len);
    put_crc(r, n - 4);
    *len = n;
    return r;
}

/* ---- open: replay ------------------------------------------------------------ */

typedef struct entry {
    uint64_t uid;
    size_t off, len; /* the A record in the file's text */
    bool live;
} entry;

typedef struct replay {
    entry *e; /* the A records in file order (the order the commands go out) */
    size_t n, cap;
    struct uid_at {
        uint64_t uid;
        size_t i;
    } * by_uid; /* (uid, index into e) sorted, for the D records */
} replay;

/* The length of the record at p (avail bytes), or 0 when it is torn or corrupt. */
static size_t record_len(const unsigned char *p, size_t avail)
{
    size_t n;
    if (avail >= D_SIZE && p[0] == 'D') {
        n = D_SIZE;
    } else if (avail >= A_HEAD && p[0] == 'A') {
        if (p[33] == 0 || p[33] > EDS_DEVICE_MAX)
            return 0;
        uint64_t body = (uint64_t)eds_get_le32(p + 17) + eds_get_le32(p + 21) +
                        eds_get_le32(p + 25) + eds_get_le32(p + 29) + p[33];
        if (body > avail)
            return 0;
        n = A_HEAD + (size_t)body + 4;
    } else {
        return 0;
    }
    if (n > avail || eds_get_le32(p + n - 4) != eds_crc32(0, p, n - 4))
        return 0;
    return n;
}

static int by_uid(const void *a, const void *b)
{
    const struct uid_at *x = a, *y = b;
    if (x->uid != y->uid)
        return x->uid < y->uid ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

static entry *find(replay *r, uint64_t uid)
{
    size_t lo = 0, hi = r->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->by_uid[mid].uid < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < r->n && r->by_uid[lo].uid == uid ? &r->e[r->by_uid[lo].i] : NULL;
}

/* Two passes: the A records (a compaction writes them in sending order, which is not
 * uid order: a device's older commands, then the next device's), then the D records
 * against them by uid. */
static int scan(gw_cmdstore *s, const unsigned char *buf, size_t size, replay *r)
{
    size_t pos = 0, len;
    while (pos < size && (len = record_len(buf + pos, size - pos)) != 0) {
        uint64_t uid = eds_get_le64(buf + pos + 1);
        if (buf[pos] == 'A') {
            if (r->n == r->cap) {
                size_t cap = r->cap ? r->cap * 2 : 256;
                entry *ne = realloc(r->e, cap * sizeof(*ne));
                if (!ne)
                    return EDS_ERR_NOMEM;
                r->e = ne;
                r->cap = cap;
            }
            r->e[r->n++] = (entry){uid, pos, len, true};
        }
        if (uid >= s->next_uid)
            s->next_uid = uid + 1;
        pos += len;
    }
    if (pos < size)
        eds_log_warning("%s: %zu bytes at the end are torn or corrupt (a crash in mid-write); "
                        "ignored",
                        s->path, size - pos);
    size_t end = pos;
    r->by_uid = malloc((r->n ? r->n : 1) * sizeof(*r->by_uid));
    if (!r->by_uid)
        return EDS_ERR_NOMEM;
    for (size_t i = 0; i < r->n; i++)
        r->by_uid[i] = (struct uid_at){r->e[i].uid, i};
    qsort(r->by_uid, r->n, sizeof(*r->by_uid), by_uid);
    for (size_t i = 1; i < r->n; i++) /* a uid twice (never written so): the first counts */
        if (r->by_uid[i].uid == r->by_uid[i - 1].uid)
            r->e[r->by_uid[i].i].live = false;
    for (pos = 0; pos < end; pos += record_len(buf + pos, end - pos)) {
        entry *e;
        if (buf[pos] == 'D' && (e = find(r, eds_get_le64(buf + pos + 1))) != NULL)
            e->live = false;
    }
    return EDS_OK;
}

/* Hands the live commands to fn and keeps their records for the rewrite. */
static int restore(const unsigned char *buf, replay *r, gw_cmdstore_restore_fn fn, void *ctx,
                   size_t *budget)
{
    for (size_t i = 0; i < r->n; i++) {
        if (!r->e[i].live)
            continue;
        const unsigned char *p = buf + r->e[i].off;
        char device[EDS_DEVICE_MAX + 1];
        memcpy(device, p + A_HEAD, p[33]);
        device[p[33]] = '\0';
        gw_cmd_parts parts = {.uid = r->e[i].uid,
                              .expires_at = (int64_t)eds_get_le64(p + 9),
                              .len = eds_get_le32(p + 17),
                              .ref_len = eds_get_le32(p + 21),
                              .rt_len = eds_get_le32(p + 25),
                              .corr_len = eds_get_le32(p + 29)};
        const char *q = (const char *)p + A_HEAD + p[33];
        parts.json = q;
        parts.ref = q += parts.len;
        parts.rt = q += parts.ref_len;
        parts.corr = q + parts.rt_len;
        gw_cmd *cmd = gw_cmd_create(&parts, budget);
        if (!cmd)
            return EDS_ERR_NOMEM;
        fn(ctx, device, cmd);
    }
    return EDS_OK;
}

static int read_file(gw_cmdstore *s, unsigned char **buf, size_t *size, eds_error *err)
{
    struct stat st;
    if (fstat(s->fd, &st) != 0)
        return eds_error_set(err, EDS_ERR_IO, "%s: %s", s->path, strerror(errno));
    if ((uint64_t)st.st_size > STORE_MAX_FILE)
        return eds_error_set(err, EDS_ERR_IO, "%s: %lld bytes, more than a command store holds",
                             s->path, (long long)st.st_size);
    *size = (size_t)st.st_size;
    *buf = malloc(*size + 1);
    if (!*buf)
        return EDS_ERR_NOMEM;
    size_t got = 0;
    while (got < *size) {
        ssize_t n = pread(s->fd, *buf + got, *size - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return eds_error_set(err, EDS_ERR_IO, "%s: %s", s->path,
                                 n < 0 ? strerror(errno) : "short read");
        got += (size_t)n;
    }
    return EDS_OK;
}

int gw_cmdstore_open(const char *dir, gw_cmdstore_restore_fn fn, void *ctx, size_t *budget,
                     gw_cmdstore **out, eds_error *err)
{
    *out = NULL;
    gw_cmdstore *s = calloc(1, sizeof(*s));
    if (!s)
        return EDS_ERR_NOMEM;
    s->fd = s->tmp_fd = -1;
    s->next_uid = 1;
    unsigned char *buf = NULL;
    size_t size = 0;
    replay r = {0};
    int rc = EDS_ERR_NOMEM;
    s->path = eds_path_join(dir, STORE_FILE);
    s->tmp = eds_path_join(dir, STORE_TMP);
    if (!s->path || !s->tmp)
        goto fail;
    s->fd = open(s->path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (s->fd < 0) {
        rc = eds_error_set(err, EDS_ERR_IO, "%s: %s", s->path, strerror(errno));
        goto fail;
    }
    if ((rc = read_file(s, &buf, &size, err)) != EDS_OK ||
        (rc = scan(s, buf, size, &r)) != EDS_OK ||
        (rc = restore(buf, &r, fn, ctx, budget)) != EDS_OK)
        goto fail;
    /* The log from now on: only the live commands. */
    if ((rc = gw_cmdstore_rewrite_begin(s, err)) != EDS_OK)
        goto fail;
    for (size_t i = 0; i < r.n; i++) {
        if (!r.e[i].live)
            continue;
        if (write_all(s->tmp_fd, buf + r.e[i].off, r.e[i].len) != 0)
            s->tmp_failed = true;
        s->tmp_size += r.e[i].len;
    }
    if ((rc = gw_cmdstore_rewrite_end(s, err)) != EDS_OK)
        goto fail;
    if ((rc = gw_syncer_start(s->fd, STORE_SYNC_MS, &s->syncer)) != EDS_OK)
        goto fail;
    free(buf);
    free(r.e);
    free(r.by_uid);
    *out = s;
    return EDS_OK;
fail:
    free(buf);
    free(r.e);
    free(r.by_uid);
    gw_cmdstore_close(s);
    return rc;
}

void gw_cmdstore_close(gw_cmdstore *s)
{
    if (!s)
        return;
    gw_syncer_stop(s->syncer);
    if (s->tmp_fd >= 0)
        close(s->tmp_fd);
    if (s->fd >= 0)
        close(s->fd);
    free(s->path);
    free(s->tmp);
    free(s);
}

/* ---- running ------------------------------------------------------------------- */

int gw_cmdstore_add(gw_cmdstore *s, const char *device, gw_cmd *cmd, eds_error *err)
{
    if (!s)
        return EDS_OK;
    cmd->uid = s->next_uid++;
    size_t len;
    unsigned char *rec = encode(device, cmd, &len);
    if (!rec) {
        cmd->uid = 0;
        return EDS_ERR_NOMEM;
    }
    int rc = append(s, rec, len, err);
    free(rec);
    if (rc != EDS_OK) {
        cmd->uid = 0; /* in memory only: no removal record will follow */
        return rc;
    }
    s->live_bytes += len;
    return EDS_OK;
}

int gw_cmdstore_del(gw_cmdstore *s, const gw_cmd *cmd, eds_error *err)
{
    if (!s || !cmd->uid)
        return EDS_OK;
    unsigned char rec[D_SIZE];
    encode_del(rec, cmd->uid);
    size_t live = a_size(cmd, 0);
    s->live_bytes -= live < s->live_bytes ? live : s->live_bytes;
    return append(s, rec, sizeof(rec), err);
}

bool gw_cmdstore_wants_compaction(const gw_cmdstore *s)
{
    return s && s->file_size > 4 * 1024 * 1024 && s->file_size > 4 * s->live_bytes;
}

int gw_cmdstore_rewrite_begin(gw_cmdstore *s, eds_error *err)
{
    if (s->tmp_fd >= 0)
        close(s->tmp_fd);
    s->tmp_failed = false;
    s->tmp_size = 0;
    s->tmp_fd = open(s->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (s->tmp_fd < 0)
        return eds_error_set(err, EDS_ERR_IO, "%s: %s", s->tmp, strerror(errno));
    if (s->next_uid > 1) {
        /* A uid never given, as a removal of nothing: the open after this rewrite
         * continues after it even when no command is left (an agent answers a uid it
         * finished again without handing the command over: uids must never repeat). */
        unsigned char rec[D_SIZE];
        encode_del(rec, s->next_uid++);
        if (write_all(s->tmp_fd, rec, sizeof(rec)) != 0)
            s->tmp_failed = true;
        s->tmp_size += sizeof(rec);
    }
    return EDS_OK;
}

void gw_cmdstore_rewrite_put(gw_cmdstore *s, const char *device, const gw_cmd *cmd)
{
    if (s->tmp_fd < 0 || !cmd->uid)
        return;
    size_t len;
    unsigned char *rec = encode(device, cmd, &len);
    if (!rec || write_all(s->tmp_fd, rec, len) != 0)
        s->tmp_failed = true;
    free(rec);
    s->tmp_size += len;
}

int gw_cmdstore_rewrite_end(gw_cmdstore *s, eds_error *err)
{
    int rc = EDS_OK;
    if (s->tmp_fd < 0)
        return eds_error_set(err, EDS_ERR_IO, "%s: not open", s->tmp);
    if (s->tmp_failed || fsync(s->tmp_fd) != 0)
        rc = eds_error_set(err, EDS_ERR_IO, "%s: %s", s->tmp,
                           s->tmp_failed ? "write failed" : strerror(errno));
    close(s->tmp_fd);
    s->tmp_fd = -1;
    if (rc == EDS_OK && rename(s->tmp, s->path) != 0)
        rc = eds_error_set(err, EDS_ERR_IO, "rename %s: %s", s->tmp, strerror(errno));
    int fd = rc == EDS_OK ? open(s->path, O_RDWR | O_APPEND | O_CLOEXEC) : -1;
    if (rc == EDS_OK && fd < 0)
        rc = eds_error_set(err, EDS_ERR_IO, "%s: %s", s->path, strerror(errno));
    if (rc != EDS_OK) {
        unlink(s->tmp);
        return rc;
    }
    gw_syncer_set_fd(s->syncer, fd);
    close(s->fd);
    s->fd = fd;
    s->file_size = s->live_bytes = s->tmp_size;
    return EDS_OK;
}
