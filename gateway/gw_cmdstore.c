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
#define R_HEAD (1 + 8 + 3 * 4 + 1)
#define D_SIZE (1 + 8 + 4) /* also an S record */

struct gw_cmdstore {
    char *path, *tmp;
    int fd, tmp_fd;
    bool tmp_failed;
    uint64_t next_uid;
    size_t file_size, tmp_size;
    size_t n_records, live;       /* records in the file; commands and results in it that are live:
                                     for the compaction decision */
    size_t tmp_records, tmp_live; /* the same for the rewrite under way */
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

/* Appends rec; on a failure (a full disk) cuts a partial record off again: it would
 * hide the records appended after it until the next open skips it. */
static int append(gw_cmdstore *s, const void *rec, size_t len, eds_error *err)
{
    if (write_all(s->fd, rec, len) == 0) {
        s->file_size += len;
        s->n_records++;
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

/* Copies n bytes of src (NULL ok when n is 0) to p; returns past them. */
static unsigned char *put(unsigned char *p, const void *src, size_t n)
{
    if (n)
        memcpy(p, src, n);
    return p + n;
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
    unsigned char *p = put(r + A_HEAD, device, devlen);
    p = put(p, c->json, c->len);
    p = put(p, gw_cmd_ref(c), c->ref_len);
    p = put(p, gw_cmd_rt(c), c->rt_len);
    put(p, gw_cmd_corr(c), c->corr_len);
    put_crc(r, n - 4);
    *len = n;
    return r;
}

/* The R record of result m, malloc'd; *len its size. */
static unsigned char *encode_result(const gw_outmsg *m, size_t *len)
{
    size_t devlen = strlen(m->device);
    size_t n = R_HEAD + devlen + m->len + m->rt_len + m->corr_len + 4;
    unsigned char *r = malloc(n);
    if (!r)
        return NULL;
    r[0] = 'R';
    eds_put_le64(r + 1, m->uid);
    eds_put_le32(r + 9, (uint32_t)m->len);
    eds_put_le32(r + 13, (uint32_t)m->rt_len);
    eds_put_le32(r + 17, (uint32_t)m->corr_len);
    r[21] = (unsigned char)devlen;
    unsigned char *p = put(r + R_HEAD, m->device, devlen);
    p = put(p, m->payload, m->len);
    p = put(p, m->rt, m->rt_len);
    put(p, m->corr, m->corr_len);
    put_crc(r, n - 4);
    *len = n;
    return r;
}

/* A D ("finished") or S ("sent to a cmd_results agent") record of uid. */
static void encode_mark(unsigned char rec[D_SIZE], char kind, uint64_t uid)
{
    rec[0] = (unsigned char)kind;
    eds_put_le64(rec + 1, uid);
    put_crc(rec, D_SIZE - 4);
}

/* ---- open: replay ------------------------------------------------------------ */

typedef struct entry {
    uint64_t uid;
    size_t off, len; /* the record in the file's text */
    char kind;       /* 'A', 'R', 'D', 'S' */
    bool live, with_agent;
} entry;

typedef struct replay {
    entry *e; /* every record in file order (the order the commands go out) */
    size_t n, cap;
    struct uid_at {
        uint64_t uid;
        size_t i;
    } * by_uid; /* (uid, index into e) sorted */
} replay;

/* The length of the record at p (avail bytes), or 0 when it is torn or corrupt. */
static size_t record_len(const unsigned char *p, size_t avail)
{
    uint64_t body;
    size_t head;
    if (avail >= D_SIZE && (p[0] == 'D' || p[0] == 'S')) {
        body = 0;
        head = D_SIZE - 4;
    } else if (avail >= A_HEAD && p[0] == 'A') {
        if (p[33] == 0 || p[33] > EDS_DEVICE_MAX)
            return 0;
        body = (uint64_t)eds_get_le32(p + 17) + eds_get_le32(p + 21) + eds_get_le32(p + 25) +
               eds_get_le32(p + 29) + p[33];
        head = A_HEAD;
    } else if (avail >= R_HEAD && p[0] == 'R') {
        if (p[21] == 0 || p[21] > EDS_DEVICE_MAX)
            return 0;
        body = (uint64_t)eds_get_le32(p + 9) + eds_get_le32(p + 13) + eds_get_le32(p + 17) + p[21];
        head = R_HEAD;
    } else {
        return 0;
    }
    if (body > avail)
        return 0;
    size_t n = head + (size_t)body + 4;
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

static int add_entry(replay *r, const unsigned char *p, size_t off, size_t len)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 256;
        entry *ne = realloc(r->e, cap * sizeof(*ne));
        if (!ne)
            return EDS_ERR_NOMEM;
        r->e = ne;
        r->cap = cap;
    }
    r->e[r->n++] =
        (entry){eds_get_le64(p + 1), off, len, (char)p[0], p[0] == 'A' || p[0] == 'R', false};
    return EDS_OK;
}

/* One uid's records (in file order): a D finishes all; an R (the first) replaces the
 * command; an S marks the command as the agent's. A record twice (never written so):
 * the first counts. */
static void settle(replay *r, const struct uid_at *idx, size_t k)
{
    entry *a = NULL, *res = NULL;
    bool done = false, sent = false;
    for (size_t i = 0; i < k; i++) {
        entry *e = &r->e[idx[i].i];
        if (e->kind == 'D')
            done = true;
        else if (e->kind == 'S')
            sent = true;
        else if (e->kind == 'A' && !a)
            a = e;
        else if (e->kind == 'R' && !res)
            res = e;
        e->live = false;
    }
    if (done)
        return;
    if (res)
        res->live = true;
    else if (a)
        a->live = true, a->with_agent = sent;
}

/* Reads every record; a corrupt one in the middle is skipped (to the next place a valid
 * record starts, its CRC checked) and the records after it are kept; a torn or corrupt
 * end (a crash in mid-write) is ignored. */
static int scan(gw_cmdstore *s, const unsigned char *buf, size_t size, replay *r)
{
    size_t pos = 0, len, skipped = 0, places = 0;
    while (pos < size) {
        if ((len = record_len(buf + pos, size - pos)) == 0) {
            size_t next = pos + 1;
            while (next < size && record_len(buf + next, size - next) == 0)
                next++;
            if (next == size) {
                eds_log_warning("%s: %zu bytes at the end are torn or corrupt (a crash in "
                                "mid-write); ignored",
                                s->path, size - pos);
                break;
            }
            skipped += next - pos;
            places++;
            pos = next;
            continue;
        }
        if (add_entry(r, buf + pos, pos, len) != EDS_OK)
            return EDS_ERR_NOMEM;
        uint64_t uid = r->e[r->n - 1].uid;
        if (uid >= s->next_uid)
            s->next_uid = uid + 1;
        pos += len;
    }
    if (places)
        eds_log_warning("%s: %zu bytes of corrupt records skipped in %zu places; the records "
                        "around them are kept (a command or result there is lost)",
                        s->path, skipped, places);
    r->by_uid = malloc((r->n ? r->n : 1) * sizeof(*r->by_uid));
    if (!r->by_uid)
        return EDS_ERR_NOMEM;
    for (size_t i = 0; i < r->n; i++)
        r->by_uid[i] = (struct uid_at){r->e[i].uid, i};
    qsort(r->by_uid, r->n, sizeof(*r->by_uid), by_uid);
    for (size_t i = 0, j; i < r->n; i = j) {
        for (j = i + 1; j < r->n && r->by_uid[j].uid == r->by_uid[i].uid; j++)
            ;
        settle(r, r->by_uid + i, j - i);
    }
    return EDS_OK;
}

static gw_cmd *restore_cmd(const unsigned char *p, uint64_t uid, size_t *budget, char *device)
{
    memcpy(device, p + A_HEAD, p[33]);
    device[p[33]] = '\0';
    gw_cmd_parts parts = {.uid = uid,
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
    return gw_cmd_create(&parts, budget);
}

static void restore_result(const unsigned char *p, uint64_t uid, const gw_cmdstore_fns *fns)
{
    char device[EDS_DEVICE_MAX + 1];
    memcpy(device, p + R_HEAD, p[21]);
    device[p[21]] = '\0';
    gw_result_parts parts = {.device = device,
                             .uid = uid,
                             .len = eds_get_le32(p + 9),
                             .rt_len = eds_get_le32(p + 13),
                             .corr_len = eds_get_le32(p + 17)};
    const char *q = (const char *)p + R_HEAD + p[21];
    parts.payload = q;
    parts.rt = q += parts.len;
    parts.corr = q + parts.rt_len;
    fns->result(fns->ctx, &parts);
}

/* Hands the live commands and results to fns, in file order. */
static int restore(const unsigned char *buf, replay *r, const gw_cmdstore_fns *fns, size_t *budget)
{
    for (size_t i = 0; i < r->n; i++) {
        const entry *e = &r->e[i];
        if (!e->live)
            continue;
        if (e->kind == 'R') {
            restore_result(buf + e->off, e->uid, fns);
            continue;
        }
        char device[EDS_DEVICE_MAX + 1];
        gw_cmd *cmd = restore_cmd(buf + e->off, e->uid, budget, device);
        if (!cmd)
            return EDS_ERR_NOMEM;
        cmd->with_agent = e->with_agent;
        fns->cmd(fns->ctx, device, cmd);
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

/* Appends len bytes to the rewrite's file; a failure shows at rewrite_end. */
static void tmp_write(gw_cmdstore *s, const void *rec, size_t len)
{
    if (write_all(s->tmp_fd, rec, len) != 0)
        s->tmp_failed = true;
    s->tmp_size += len;
    s->tmp_records++;
}

int gw_cmdstore_open(const char *dir, const gw_cmdstore_fns *fns, size_t *budget, gw_cmdstore **out,
                     eds_error *err)
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
        (rc = scan(s, buf, size, &r)) != EDS_OK || (rc = restore(buf, &r, fns, budget)) != EDS_OK)
        goto fail;
    /* The log from now on: only the live commands. */
    if ((rc = gw_cmdstore_rewrite_begin(s, err)) != EDS_OK)
        goto fail;
    for (size_t i = 0; i < r.n; i++) {
        if (!r.e[i].live)
            continue;
        tmp_write(s, buf + r.e[i].off, r.e[i].len);
        if (r.e[i].with_agent) {
            unsigned char mark[D_SIZE];
            encode_mark(mark, 'S', r.e[i].uid);
            tmp_write(s, mark, sizeof(mark));
        }
        s->tmp_live++;
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
    s->live++;
    return EDS_OK;
}

int gw_cmdstore_sent(gw_cmdstore *s, const gw_cmd *cmd, eds_error *err)
{
    if (!s || !cmd->uid)
        return EDS_OK;
    unsigned char rec[D_SIZE];
    encode_mark(rec, 'S', cmd->uid);
    return append(s, rec, sizeof(rec), err);
}

int gw_cmdstore_result(gw_cmdstore *s, gw_outmsg *m, eds_error *err)
{
    if (!s)
        return EDS_OK;
    bool fresh = !m->uid;
    uint64_t uid = fresh ? s->next_uid++ : m->uid;
    m->uid = uid;
    size_t len;
    unsigned char *rec = encode_result(m, &len);
    int rc = rec ? append(s, rec, len, err) : EDS_ERR_NOMEM;
    free(rec);
    if (rc != EDS_OK && fresh)
        m->uid = 0; /* in memory only */
    else if (rc == EDS_OK && fresh)
        s->live++;
    return rc;
}

int gw_cmdstore_del(gw_cmdstore *s, uint64_t uid, eds_error *err)
{
    if (!s || !uid)
        return EDS_OK;
    unsigned char rec[D_SIZE];
    encode_mark(rec, 'D', uid);
    s->live -= s->live ? 1 : 0;
    return append(s, rec, sizeof(rec), err);
}

bool gw_cmdstore_wants_compaction(const gw_cmdstore *s)
{
    return s && s->file_size > 4 * 1024 * 1024 && s->n_records > 4 * s->live + 64;
}

int gw_cmdstore_rewrite_begin(gw_cmdstore *s, eds_error *err)
{
    if (s->tmp_fd >= 0)
        close(s->tmp_fd);
    s->tmp_failed = false;
    s->tmp_size = 0;
    s->tmp_records = s->tmp_live = 0;
    s->tmp_fd = open(s->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (s->tmp_fd < 0)
        return eds_error_set(err, EDS_ERR_IO, "%s: %s", s->tmp, strerror(errno));
    return EDS_OK;
}

void gw_cmdstore_rewrite_put(gw_cmdstore *s, const char *device, const gw_cmd *cmd)
{
    if (s->tmp_fd < 0 || !cmd->uid)
        return;
    size_t len;
    unsigned char *rec = encode(device, cmd, &len);
    if (!rec)
        s->tmp_failed = true;
    else
        tmp_write(s, rec, len);
    free(rec);
    if (cmd->with_agent) {
        unsigned char mark[D_SIZE];
        encode_mark(mark, 'S', cmd->uid);
        tmp_write(s, mark, sizeof(mark));
    }
    s->tmp_live++;
}

void gw_cmdstore_rewrite_put_result(gw_cmdstore *s, const gw_outmsg *m)
{
    if (s->tmp_fd < 0 || !m->uid)
        return;
    size_t len;
    unsigned char *rec = encode_result(m, &len);
    if (!rec)
        s->tmp_failed = true;
    else
        tmp_write(s, rec, len);
    free(rec);
    s->tmp_live++;
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
    s->file_size = s->tmp_size;
    s->n_records = s->tmp_records;
    s->live = s->tmp_live;
    return EDS_OK;
}
