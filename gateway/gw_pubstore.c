/*
 * gw_pubstore.c - Paho's persistence as a hash table in memory plus an
 * append-only log on disk. See gw_pubstore.h for the format and guarantees.
 *
 * Entries live in a chained hash table and, for keys() (Paho restores in
 * key order it sorts itself, but a stable order makes tests readable), in an
 * insertion-ordered doubly linked list. Marks (one per device) are in a
 * list for iteration and a hash table for lookup.
 */
#include "gw_pubstore.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
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

#define LOG_NAME "mqtt-session.log"
#define COMPACT_MIN_BYTES (8u << 20)
#define SYNC_MS 2000 /* fdatasync at most every 2 s, off Paho's threads */
#define NBUCKETS 1024
#define HDR 8 /* u32 len, u32 crc */
#define MAX_DOOMED 4

typedef struct entry {
    struct entry *hnext;       /* bucket chain */
    struct entry *prev, *next; /* insertion order */
    char *data;
    size_t len;
    bool doomed; /* removed, but its 'R' waits for the next put of doomed_by */
    pthread_t doomed_by;
    char key[GW_PUBSTORE_KEY_MAX + 1];
} entry;

typedef struct mark {
    struct mark *next;  /* all marks */
    struct mark *hnext; /* bucket chain: one mark per device, 10,000 devices are common */
    gw_mark m;
} mark;

struct gw_pubstore {
    pthread_mutex_t lock;
    char *path; /* NULL in memory mode */
    int fd;
    size_t log_bytes, live_bytes, reserved; /* reserved: end of the space allocated ahead */
    size_t compact_at;                      /* log size that triggers compaction */
    bool failed;       /* a write failed: the file lags memory until a rewrite succeeds */
    gw_syncer *syncer; /* NULL in memory mode */
    entry *buckets[NBUCKETS];
    entry *first, *last;
    size_t count; /* entries not doomed */
    entry *doomed[MAX_DOOMED];
    mark *marks;
    mark *mark_buckets[NBUCKETS];
    void (*on_empty)(void *);
    void *on_empty_ctx;
    unsigned char *buf; /* scratch for one log record */
    size_t buf_cap;
};

/* ---- small helpers ---------------------------------------------------------------------- */

static uint32_t key_hash(const char *k)
{
    return eds_fnv1a(k, strlen(k)) % NBUCKETS;
}

/* Doomed entries included. */
static entry *find_any(gw_pubstore *st, const char *key)
{
    for (entry *e = st->buckets[key_hash(key)]; e; e = e->hnext)
        if (strcmp(e->key, key) == 0)
            return e;
    return NULL;
}

static entry *find(gw_pubstore *st, const char *key)
{
    entry *e = find_any(st, key);
    return e && !e->doomed ? e : NULL;
}

static void unlink_entry(gw_pubstore *st, entry *e)
{
    entry **pp = &st->buckets[key_hash(e->key)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    if (e->prev)
        e->prev->next = e->next;
    else
        st->first = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        st->last = e->prev;
    if (e->doomed) {
        for (int i = 0; i < MAX_DOOMED; i++)
            if (st->doomed[i] == e)
                st->doomed[i] = NULL;
    } else {
        st->count--;
    }
    st->live_bytes -= e->len + strlen(e->key);
    free(e->data);
    free(e);
}

/* Inserts or replaces key with data (ownership taken). */
static void set_entry(gw_pubstore *st, entry *e_new)
{
    entry *old = find_any(st, e_new->key);
    if (old)
        unlink_entry(st, old);
    uint32_t h = key_hash(e_new->key);
    e_new->hnext = st->buckets[h];
    st->buckets[h] = e_new;
    e_new->next = NULL;
    e_new->prev = st->last;
    if (st->last)
        st->last->next = e_new;
    else
        st->first = e_new;
    st->last = e_new;
    st->count++;
    st->live_bytes += e_new->len + strlen(e_new->key);
}

static void set_mark(gw_pubstore *st, const gw_mark *gm)
{
    uint32_t h = key_hash(gm->device);
    mark *m = st->mark_buckets[h];
    while (m && strcmp(m->m.device, gm->device) != 0)
        m = m->hnext;
    if (!m) {
        m = calloc(1, sizeof(*m));
        if (!m)
            return; /* a lost mark weakens crash recovery only; logged by the caller's put */
        m->next = st->marks;
        st->marks = m;
        m->hnext = st->mark_buckets[h];
        st->mark_buckets[h] = m;
    }
    m->m = *gm;
}

static void free_marks(gw_pubstore *st)
{
    while (st->marks) {
        mark *m = st->marks;
        st->marks = m->next;
        free(m);
    }
    memset(st->mark_buckets, 0, sizeof(st->mark_buckets));
}

/* ---- log records ------------------------------------------------------------------------ */

static unsigned char *scratch(gw_pubstore *st, size_t n)
{
    if (n > st->buf_cap) {
        unsigned char *b = realloc(st->buf, n);
        if (!b)
            return NULL;
        st->buf = b;
        st->buf_cap = n;
    }
    return st->buf;
}

static unsigned char *put_str16(unsigned char *p, const char *s, size_t n)
{
    eds_put_le16(p, (uint16_t)n);
    memcpy(p + 2, s, n);
    return p + 2 + n;
}

/* Frames body [HDR, HDR+blen) of st->buf and writes it to fd with one write. */
static int write_record(gw_pubstore *st, int fd, size_t blen, size_t *written)
{
    unsigned char *b = st->buf;
    eds_put_le32(b, (uint32_t)blen);
    eds_put_le32(b + 4, eds_crc32(0, b + HDR, blen));
    size_t n = HDR + blen, off = 0;
    while (off < n) {
        ssize_t w = write(fd, b + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return EDS_ERR_IO;
        off += (size_t)w;
    }
    *written += n;
    return EDS_OK;
}

static int compact(gw_pubstore *st, bool with_marks, eds_error *err);

/* After a failed write the file misses records (a removal: Paho would resend a finished
 * flow after a crash): a rewrite of all memory holds, in the scratch buffer (kept). */
static int resync(gw_pubstore *st, size_t blen, eds_error *err)
{
    if (!st->failed)
        return EDS_OK;
    unsigned char *keep = malloc(blen + 1);
    if (!keep)
        return eds_error_set(err, EDS_ERR_NOMEM, "out of memory");
    memcpy(keep, st->buf + HDR, blen); /* (a failed write left st->buf allocated) */
    int rc = compact(st, true, err);
    memcpy(st->buf + HDR, keep, blen); /* the buffer only grew */
    free(keep);
    if (rc == EDS_OK)
        eds_log_notice("mqtt session store %s: writable again", st->path);
    st->failed = rc != EDS_OK;
    return rc;
}

static int append(gw_pubstore *st, size_t blen)
{
    static eds_log_limit lim = EDS_LOG_LIMIT_INIT(10000);
    eds_error err;
    if (st->fd < 0)
        return EDS_OK;
    if (resync(st, blen, &err) != EDS_OK) {
        eds_log_limited(&lim, EDS_LOG_ERROR, "mqtt session store %s: %s", st->path, err.msg);
        return EDS_ERR_IO;
    }
    if (write_record(st, st->fd, blen, &st->log_bytes) != EDS_OK) {
        st->failed = true;
        eds_log_limited(&lim, EDS_LOG_ERROR, "mqtt session store %s: write failed: %s", st->path,
                        strerror(errno));
        /* A partial record would end the replay there and hide every later one. */
        if (ftruncate(st->fd, (off_t)st->log_bytes) != 0)
            eds_log_error("mqtt session store %s: truncate: %s", st->path, strerror(errno));
        return EDS_ERR_IO;
    }
    gw_syncer_dirty(st->syncer);
    return EDS_OK;
}

/* Size of MARK (see gw_pubstore.h); NULL: an empty one. */
static size_t mark_size(const gw_mark *m)
{
    return m ? 1 + strlen(m->device) + 1 + strlen(m->stream) + 8 : 1 + 1 + 8;
}

static unsigned char *put_mark(unsigned char *p, const gw_mark *m)
{
    size_t dl = m ? strlen(m->device) : 0, sl = m ? strlen(m->stream) : 0;
    *p++ = (unsigned char)dl;
    if (dl)
        memcpy(p, m->device, dl);
    p += dl;
    *p++ = (unsigned char)sl;
    if (sl)
        memcpy(p, m->stream, sl);
    p += sl;
    eds_put_le64(p, m ? m->seq : 0);
    return p + 8;
}

/* Writes a 'p' record for e (and the mark, if any) into st->buf, or a 'q' record when
 * gone names a key removed by the same record; returns its body length, 0 when out of
 * memory. */
static size_t encode_put(gw_pubstore *st, const entry *e, const gw_mark *gm, const char *gone)
{
    size_t klen = strlen(e->key), glen = gone ? strlen(gone) : 0;
    size_t blen = 1 + 2 + klen + 4 + e->len + mark_size(gm) + (gone ? 2 + glen : 0);
    unsigned char *b = scratch(st, HDR + blen);
    if (!b)
        return 0;
    unsigned char *p = b + HDR;
    *p++ = gone ? 'q' : 'p';
    p = put_str16(p, e->key, klen);
    eds_put_le32(p, (uint32_t)e->len);
    memcpy(p + 4, e->data, e->len);
    p = put_mark(p + 4 + e->len, gm);
    if (gone)
        put_str16(p, gone, glen);
    return blen;
}

static size_t encode_mark(gw_pubstore *st, const mark *m)
{
    size_t blen = 1 + mark_size(&m->m);
    unsigned char *b = scratch(st, HDR + blen);
    if (!b)
        return 0;
    b[HDR] = 'm';
    put_mark(b + HDR + 1, &m->m);
    return blen;
}

/* Reads a u16-prefixed string at *p (bounded by end) into out (cap bytes incl. NUL). */
static bool get_str16(const unsigned char **p, const unsigned char *end, char *out, size_t cap,
                      size_t *len_out)
{
    if (end - *p < 2)
        return false;
    size_t n = eds_get_le16(*p);
    if ((size_t)(end - *p - 2) < n || n >= cap)
        return false;
    memcpy(out, *p + 2, n);
    out[n] = '\0';
    *p += 2 + n;
    if (len_out)
        *len_out = n;
    return true;
}

/* Reads a MARK at *p; *present false for an empty one. False when it does not parse. */
static bool get_mark(const unsigned char **p, const unsigned char *end, gw_mark *m, bool *present)
{
    memset(m, 0, sizeof(*m));
    if (end - *p < 1 || (size_t)(end - *p - 1) < (size_t) * *p + 1 + 8 || **p > EDS_DEVICE_MAX)
        return false;
    size_t dl = *(*p)++;
    memcpy(m->device, *p, dl);
    *p += dl;
    size_t sl = *(*p)++;
    if (sl > EDS_STREAM_MAX || (size_t)(end - *p) < sl + 8)
        return false;
    memcpy(m->stream, *p, sl);
    *p += sl;
    m->seq = eds_get_le64(*p);
    *p += 8;
    *present = dl > 0;
    return !*present || gw_mark_valid(m);
}

/* A mark as files written before typed marks hold it: u16 device, u16 "STREAM SEQ".
 * One that does not convert is dropped (the gateway of then ignored it too). */
static bool get_legacy_mark(const unsigned char **p, const unsigned char *end, gw_mark *m,
                            bool *present)
{
    char name[256], value[256];
    size_t nl;
    memset(m, 0, sizeof(*m));
    *present = false;
    if (!get_str16(p, end, name, sizeof(name), &nl) ||
        !get_str16(p, end, value, sizeof(value), NULL))
        return false;
    const char *sp = strrchr(value, ' ');
    if (!nl || nl > EDS_DEVICE_MAX || !sp || (size_t)(sp - value) > EDS_STREAM_MAX || !sp[1] ||
        strlen(sp + 1) > 16)
        return true;
    uint64_t seq = 0;
    for (const char *d = sp + 1; *d; d++) {
        if (*d < '0' || *d > '9')
            return true;
        seq = seq * 10 + (uint64_t)(*d - '0');
    }
    memcpy(m->device, name, nl);
    memcpy(m->stream, value, (size_t)(sp - value));
    m->seq = seq;
    *present = gw_mark_valid(m);
    return true;
}

/* Applies one record body; false when it does not parse (treated like a torn tail). */
static bool replay_one(gw_pubstore *st, const unsigned char *p, const unsigned char *end)
{
    char key[GW_PUBSTORE_KEY_MAX + 1];
    gw_mark mk;
    bool marked = false;
    if (p >= end)
        return false;
    char type = (char)*p++;
    bool legacy = type == 'P' || type == 'Q' || type == 'M';
    switch (type) {
    case 'p':
    case 'q':
    case 'P':
    case 'Q': {
        char gone[GW_PUBSTORE_KEY_MAX + 1] = "";
        if (!get_str16(&p, end, key, sizeof(key), NULL) || !key[0] || end - p < 4)
            return false;
        size_t dlen = eds_get_le32(p);
        p += 4;
        if ((size_t)(end - p) < dlen)
            return false;
        entry *e = calloc(1, sizeof(*e));
        char *data = malloc(dlen ? dlen : 1);
        if (!e || !data) {
            free(e);
            free(data);
            return false;
        }
        memcpy(data, p, dlen);
        p += dlen;
        bool with_gone = type == 'q' || type == 'Q';
        if (!(legacy ? get_legacy_mark(&p, end, &mk, &marked) : get_mark(&p, end, &mk, &marked)) ||
            (with_gone && !get_str16(&p, end, gone, sizeof(gone), NULL)) || p != end) {
            free(e);
            free(data);
            return false;
        }
        snprintf(e->key, sizeof(e->key), "%s", key);
        e->data = data;
        e->len = dlen;
        entry *old = gone[0] ? find_any(st, gone) : NULL;
        if (old)
            unlink_entry(st, old);
        set_entry(st, e);
        if (marked)
            set_mark(st, &mk);
        return true;
    }
    case 'R':
        if (!get_str16(&p, end, key, sizeof(key), NULL) || p != end)
            return false;
        entry *e = find(st, key);
        if (e)
            unlink_entry(st, e);
        return true;
    case 'm':
    case 'M':
        if (!(legacy ? get_legacy_mark(&p, end, &mk, &marked) : get_mark(&p, end, &mk, &marked)) ||
            p != end)
            return false;
        if (marked)
            set_mark(st, &mk);
        return true;
    case 'C':
        while (st->first)
            unlink_entry(st, st->first);
        return p == end;
    default:
        return false;
    }
}

/* Replays the whole file; truncates it after the last good record. */
static int replay(gw_pubstore *st, eds_error *err)
{
    struct stat sb;
    if (fstat(st->fd, &sb) != 0)
        return eds_error_set(err, EDS_ERR_IO, "%s: %s", st->path, strerror(errno));
    size_t size = (size_t)sb.st_size, good = 0;
    unsigned char *all = size ? malloc(size) : NULL;
    if (size && !all)
        return eds_error_set(err, EDS_ERR_NOMEM, "%s: out of memory (%zu bytes)", st->path, size);
    size_t got = 0;
    while (got < size) {
        ssize_t r = pread(st->fd, all + got, size - got, (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) { /* an I/O error is not a torn tail: keep the file as it is */
            int e = errno;
            free(all);
            return eds_error_set(err, EDS_ERR_IO, "%s: read: %s", st->path, strerror(e));
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    while (good + HDR <= got) {
        size_t blen = eds_get_le32(all + good);
        if (blen > got - good - HDR)
            break;
        const unsigned char *body = all + good + HDR;
        if (eds_crc32(0, body, blen) != eds_get_le32(all + good + 4) ||
            !replay_one(st, body, body + blen))
            break;
        good += HDR + blen;
    }
    free(all);
    if (good < size) {
        eds_log_warning("mqtt session store %s: %zu bytes of torn or corrupt tail dropped",
                        st->path, size - good);
        if (ftruncate(st->fd, (off_t)good) != 0)
            return eds_error_set(err, EDS_ERR_IO, "%s: truncate: %s", st->path, strerror(errno));
    }
    if (lseek(st->fd, 0, SEEK_END) < 0)
        return eds_error_set(err, EDS_ERR_IO, "%s: %s", st->path, strerror(errno));
    st->log_bytes = good;
    return EDS_OK;
}

/* Rewrites the log as the live entries plus (with_marks) the marks. Lock held. */
static int compact(gw_pubstore *st, bool with_marks, eds_error *err)
{
    if (st->fd < 0)
        return EDS_OK;
    size_t plen = strlen(st->path);
    char *tmp = malloc(plen + 5);
    if (!tmp)
        return eds_error_set(err, EDS_ERR_NOMEM, "out of memory");
    memcpy(tmp, st->path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    int rc = EDS_OK;
    size_t written = 0;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = eds_error_set(err, EDS_ERR_IO, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    for (const entry *e = st->first; e && rc == EDS_OK; e = e->next) {
        size_t blen = encode_put(st, e, NULL, NULL);
        rc = blen ? write_record(st, fd, blen, &written) : EDS_ERR_NOMEM;
    }
    for (const mark *m = with_marks ? st->marks : NULL; m && rc == EDS_OK; m = m->next) {
        size_t blen = encode_mark(st, m);
        rc = blen ? write_record(st, fd, blen, &written) : EDS_ERR_NOMEM;
    }
    if (rc == EDS_OK && fsync(fd) != 0)
        rc = EDS_ERR_IO;
    if (rc != EDS_OK) {
        eds_error_set(err, rc, "%s: %s", tmp, rc == EDS_ERR_IO ? strerror(errno) : "out of memory");
        close(fd);
        unlink(tmp);
        goto out;
    }
    if (rename(tmp, st->path) != 0) {
        rc = eds_error_set(err, EDS_ERR_IO, "rename %s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        goto out;
    }
    gw_sync_dir(st->path); /* the rename itself survives a power cut */
    gw_syncer_set_fd(st->syncer, fd);
    close(st->fd);
    st->fd = fd;
    st->log_bytes = written;
    st->reserved = 0;
    if (lseek(st->fd, 0, SEEK_END) < 0)
        rc = eds_error_set(err, EDS_ERR_IO, "%s: %s", st->path, strerror(errno));
out:
    free(tmp);
    return rc;
}

static void maybe_compact(gw_pubstore *st)
{
    if (st->fd < 0 || st->log_bytes < st->compact_at || st->log_bytes < 4 * st->live_bytes)
        return;
    eds_error err;
    eds_error_clear(&err);
    if (compact(st, true, &err) != EDS_OK) {
        eds_log_error("mqtt session store: compaction failed: %s", err.msg);
        st->compact_at = st->log_bytes + COMPACT_MIN_BYTES; /* not again on every write */
    } else {
        st->compact_at = COMPACT_MIN_BYTES;
    }
}

/* ---- API -------------------------------------------------------------------------------- */

int gw_pubstore_open(const char *dir, gw_pubstore **out, eds_error *err)
{
    *out = NULL;
    gw_pubstore *st = calloc(1, sizeof(*st));
    if (!st)
        return eds_error_set(err, EDS_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&st->lock, NULL);
    st->fd = -1;
    st->compact_at = COMPACT_MIN_BYTES;
    if (dir) {
        size_t n = strlen(dir) + sizeof(LOG_NAME) + 1;
        st->path = malloc(n);
        if (!st->path) {
            gw_pubstore_close(st);
            return eds_error_set(err, EDS_ERR_NOMEM, "out of memory");
        }
        snprintf(st->path, n, "%s/%s", dir, LOG_NAME);
        if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
            int e = errno;
            gw_pubstore_close(st);
            return eds_error_set(err, EDS_ERR_IO, "%s: %s", dir, strerror(e));
        }
        st->fd = open(st->path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (st->fd < 0) {
            int e = errno;
            int rc = eds_error_set(err, EDS_ERR_IO, "%s: %s", st->path, strerror(e));
            gw_pubstore_close(st);
            return rc;
        }
        int rc = replay(st, err);
        if (rc == EDS_OK && (rc = gw_syncer_start(st->fd, SYNC_MS, &st->syncer)) != EDS_OK)
            eds_error_set(err, rc, "mqtt session store: cannot start its sync thread");
        if (rc != EDS_OK) {
            gw_pubstore_close(st);
            return rc;
        }
    }
    *out = st;
    return EDS_OK;
}

static int remove_now(gw_pubstore *st, entry *e);

void gw_pubstore_close(gw_pubstore *st)
{
    if (!st)
        return;
    if (st->fd >= 0) {
        /* Paho is gone: removals still waiting for a put (e.g. of a SUBSCRIBE command)
         * are final. */
        for (int i = 0; i < MAX_DOOMED; i++)
            if (st->doomed[i])
                remove_now(st, st->doomed[i]);
        gw_syncer_dirty(st->syncer);
        gw_syncer_stop(st->syncer); /* the last sync */
        close(st->fd);
    }
    while (st->first)
        unlink_entry(st, st->first);
    free_marks(st);
    free(st->buf);
    free(st->path);
    pthread_mutex_destroy(&st->lock);
    free(st);
}

/* Unlinks e and writes its 'R' record. Lock held. */
static int remove_now(gw_pubstore *st, entry *e)
{
    int rc = EDS_OK;
    if (st->fd >= 0) {
        size_t klen = strlen(e->key);
        unsigned char *b = scratch(st, HDR + 3 + klen);
        if (b) {
            b[HDR] = 'R';
            put_str16(b + HDR + 1, e->key, klen);
            rc = append(st, 3 + klen);
        } else {
            rc = EDS_ERR_NOMEM;
        }
    }
    unlink_entry(st, e);
    return rc;
}

/* Paho removes a queued command ("c-N") just before it puts the sent PUBLISH ("s-ID")
 * for it, on the same thread. Written as two records, a crash between them would leave
 * neither: the record handed to Paho (and marked) would be gone. So the command's
 * removal waits, invisible to readers but still in the file (compaction keeps it), and
 * goes out with the thread's next put in one 'q' record. Lock held; false when no slot
 * is free (then the caller removes it at once). */
static bool doom(gw_pubstore *st, entry *e)
{
    for (int i = 0; i < MAX_DOOMED; i++) {
        if (!st->doomed[i]) {
            st->doomed[i] = e;
            e->doomed = true;
            e->doomed_by = pthread_self();
            st->count--;
            return true;
        }
    }
    return false;
}

/* The calling thread's doomed entry, taken off the doomed list (still linked), or NULL. */
static entry *take_doomed(gw_pubstore *st)
{
    for (int i = 0; i < MAX_DOOMED; i++) {
        entry *e = st->doomed[i];
        if (e && pthread_equal(e->doomed_by, pthread_self())) {
            st->doomed[i] = NULL;
            return e;
        }
    }
    return NULL;
}

int gw_pubstore_put(gw_pubstore *st, const char *key, int n, char *const bufs[], const int lens[],
                    const gw_mark *gm)
{
    size_t klen = key ? strlen(key) : 0;
    if (!klen || klen > GW_PUBSTORE_KEY_MAX || n < 0 || (gm && !gw_mark_valid(gm)))
        return EDS_ERR_INVAL;
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        if (lens[i] < 0 || (lens[i] > 0 && !bufs[i]))
            return EDS_ERR_INVAL;
        total += (size_t)lens[i];
    }
    if (total > INT_MAX)
        return EDS_ERR_INVAL;
    entry *e = calloc(1, sizeof(*e));
    char *data = malloc(total ? total : 1);
    if (!e || !data) {
        free(e);
        free(data);
        return EDS_ERR_NOMEM;
    }
    for (int i = 0, off = 0; i < n; off += lens[i], i++)
        if (lens[i])
            memcpy(data + off, bufs[i], (size_t)lens[i]);
    memcpy(e->key, key, klen + 1);
    e->data = data;
    e->len = total;

    pthread_mutex_lock(&st->lock);
    int rc = EDS_OK;
    entry *gone = take_doomed(st);
    if (gone && strcmp(gone->key, e->key) == 0)
        gone = NULL; /* replaced by this put anyway */
    if (st->fd >= 0) {
        size_t blen = encode_put(st, e, gm, gone ? gone->key : NULL);
        rc = blen ? append(st, blen) : EDS_ERR_NOMEM;
    }
    if (gone)
        unlink_entry(st, gone);
    set_entry(st, e);
    if (gm)
        set_mark(st, gm);
    maybe_compact(st);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

int gw_pubstore_get(gw_pubstore *st, const char *key, void *(*alloc)(size_t), char **buf, int *len)
{
    *buf = NULL;
    *len = 0;
    pthread_mutex_lock(&st->lock);
    int rc = EDS_ERR_NOTFOUND;
    entry *e = key ? find(st, key) : NULL;
    if (e) {
        *buf = (alloc ? alloc : malloc)(e->len ? e->len : 1);
        if (*buf) {
            memcpy(*buf, e->data, e->len);
            *len = (int)e->len;
            rc = EDS_OK;
        } else {
            rc = EDS_ERR_NOMEM;
        }
    }
    pthread_mutex_unlock(&st->lock);
    return rc;
}

/* Calls the on_empty callback (store unlocked) when fire is set. */
static void after_shrink(gw_pubstore *st, bool fire)
{
    void (*fn)(void *) = st->on_empty;
    void *ctx = st->on_empty_ctx;
    pthread_mutex_unlock(&st->lock);
    if (fire && fn)
        fn(ctx);
}

int gw_pubstore_remove(gw_pubstore *st, const char *key)
{
    if (!key || !key[0] || strlen(key) > GW_PUBSTORE_KEY_MAX)
        return EDS_OK;
    pthread_mutex_lock(&st->lock);
    int rc = EDS_OK;
    entry *e = find(st, key);
    bool fire = false;
    if (e) {
        /* A doomed entry of this thread that no put took over: its removal goes now. */
        entry *prev = take_doomed(st);
        if (prev)
            rc = remove_now(st, prev);
        if (st->fd >= 0 && gw_pubstore_is_command(key) && doom(st, e)) {
            fire = st->count == 0;
        } else {
            int rc2 = remove_now(st, e);
            fire = st->count == 0;
            if (rc == EDS_OK)
                rc = rc2;
        }
        maybe_compact(st);
    }
    after_shrink(st, fire);
    return rc;
}

bool gw_pubstore_contains(gw_pubstore *st, const char *key)
{
    pthread_mutex_lock(&st->lock);
    bool found = key && find(st, key) != NULL;
    pthread_mutex_unlock(&st->lock);
    return found;
}

int gw_pubstore_keys(gw_pubstore *st, char ***keys, int *n)
{
    *keys = NULL;
    *n = 0;
    pthread_mutex_lock(&st->lock);
    int rc = EDS_OK;
    if (st->count) {
        char **k = calloc(st->count, sizeof(*k));
        int i = 0;
        for (const entry *e = st->first; k && e; e = e->next) {
            if (e->doomed)
                continue;
            if (!(k[i] = strdup(e->key)))
                break;
            i++;
        }
        if (!k || i < (int)st->count) {
            for (int j = 0; k && j < i; j++)
                free(k[j]);
            free(k);
            rc = EDS_ERR_NOMEM;
        } else {
            *keys = k;
            *n = i;
        }
    }
    pthread_mutex_unlock(&st->lock);
    return rc;
}

int gw_pubstore_clear(gw_pubstore *st)
{
    pthread_mutex_lock(&st->lock);
    bool fire = st->count > 0;
    while (st->first)
        unlink_entry(st, st->first);
    int rc = EDS_OK;
    if (st->fd >= 0 && scratch(st, HDR + 1)) {
        st->buf[HDR] = 'C';
        rc = append(st, 1);
    }
    after_shrink(st, fire);
    return rc;
}

size_t gw_pubstore_count(gw_pubstore *st)
{
    pthread_mutex_lock(&st->lock);
    size_t n = st->count;
    pthread_mutex_unlock(&st->lock);
    return n;
}

void gw_pubstore_on_empty(gw_pubstore *st, void (*fn)(void *ctx), void *ctx)
{
    pthread_mutex_lock(&st->lock);
    st->on_empty = fn;
    st->on_empty_ctx = ctx;
    pthread_mutex_unlock(&st->lock);
}

void gw_pubstore_each_mark(gw_pubstore *st, void (*fn)(void *ctx, const gw_mark *mark), void *ctx)
{
    pthread_mutex_lock(&st->lock);
    for (const mark *m = st->marks; m; m = m->next)
        fn(ctx, &m->m);
    pthread_mutex_unlock(&st->lock);
}

int gw_pubstore_forget_marks(gw_pubstore *st, eds_error *err)
{
    pthread_mutex_lock(&st->lock);
    free_marks(st);
    int rc = compact(st, false, err);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

int gw_pubstore_discard(const char *dir, eds_error *err)
{
    char path[4096];
    int n = snprintf(path, sizeof(path), "%s/%s", dir, LOG_NAME);
    if (n < 0 || (size_t)n >= sizeof(path))
        return eds_error_set(err, EDS_ERR_IO, "%s: path too long", dir);
    if (unlink(path) == 0)
        return EDS_OK;
    if (errno == ENOENT)
        return EDS_ERR_NOTFOUND;
    return eds_error_set(err, EDS_ERR_IO, "%s: %s", path, strerror(errno));
}

bool gw_pubstore_failed(gw_pubstore *st)
{
    eds_error err;
    pthread_mutex_lock(&st->lock);
    bool failed = st->fd >= 0 && resync(st, 0, &err) != EDS_OK;
    bool low = st->fd >= 0 && !failed && !gw_reserve_ahead(st->fd, st->log_bytes, &st->reserved);
    pthread_mutex_unlock(&st->lock);
    return failed || low;
}

size_t gw_pubstore_log_bytes(gw_pubstore *st)
{
    pthread_mutex_lock(&st->lock);
    size_t n = st->log_bytes;
    pthread_mutex_unlock(&st->lock);
    return n;
}
