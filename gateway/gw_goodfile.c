/*
 * gw_goodfile.c - the known-good addresses file (see gw_goodfile.h).
 *
 * One writer thread takes the newest snapshot the loop handed over (an older
 * one not yet taken is replaced: only the last state matters) and writes it
 * as tmp + fsync + rename; it reports the errno of each write back under the
 * lock, and the loop logs it, so the thread never logs.
 */
#include "gw_goodfile.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eds_bytes.h"
#include "eds_log.h"
#include "gw_syncer.h"

#define GOOD_FILE "known_good"
#define GOOD_TMP "known_good.tmp"
#define GOOD_LINE_MAX (INET6_ADDRSTRLEN + 24) /* "ADDRESS SECONDS\n" */

struct gw_goodfile {
    char *path, *tmp;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    /* under lock */
    char *pending; /* the snapshot to write next; NULL: none */
    size_t pending_len;
    bool stopping, have_result;
    int result; /* errno of the last write, 0: written */
    /* the loop's */
    int64_t due_ms; /* a snapshot is due then; 0: nothing to write */
    bool failing;   /* the last write failed (said once) */
};

/* ---- load ---------------------------------------------------------------- */

/* "ADDRESS SECONDS": the address in inet_ntop's form (the guard's key) and
 * the seconds; false for a malformed line. */
static bool parse_line(char *line, char *addr, long long *secs)
{
    char *sp = strchr(line, ' ');
    if (!sp)
        return false;
    *sp = '\0';
    unsigned char bin[sizeof(struct in6_addr)];
    int af = strchr(line, ':') ? AF_INET6 : AF_INET;
    if (inet_pton(af, line, bin) != 1 || !inet_ntop(af, bin, addr, INET6_ADDRSTRLEN))
        return false;
    char *end;
    errno = 0;
    *secs = strtoll(sp + 1, &end, 10);
    return errno == 0 && end != sp + 1 && *end == '\n';
}

static void load(const char *path, gw_guard *g, int64_t now_ms, time_t wall)
{
    FILE *fp = fopen(path, "r");
    if (!fp) {
        if (errno != ENOENT)
            eds_log_warning("%s: %s: every device counts as new until it logs in", path,
                            strerror(errno));
        return;
    }
    char line[GOOD_LINE_MAX + 2], addr[INET6_ADDRSTRLEN];
    size_t loaded = 0, bad = 0, lines = 0;
    while (loaded < GW_GUARD_MAX_GOOD && lines < 2 * GW_GUARD_MAX_GOOD &&
           fgets(line, sizeof(line), fp)) {
        lines++;
        long long secs;
        if (!parse_line(line, addr, &secs)) {
            bad++; /* torn, hand-edited, or over-long (its rest is skipped as a line too) */
            continue;
        }
        long long age_s = (long long)wall - secs;
        if (age_s < 0)
            age_s = 0; /* the clock went back: count it as a login now */
        if (age_s * 1000 > GW_GOOD_FORGET_MS)
            continue;
        if (gw_guard_restore_good(g, addr, now_ms - age_s * 1000))
            loaded++;
    }
    fclose(fp);
    if (bad)
        eds_log_warning("%s: skipped %zu malformed line(s)", path, bad);
    eds_log_info("known-good addresses: %zu loaded from %s", loaded, path);
}

/* ---- write --------------------------------------------------------------- */

/* Writes buf as the whole file: 0 or an errno. */
static int write_file(const gw_goodfile *f, const char *buf, size_t len)
{
    int fd = open(f->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0)
        return errno;
    int e = 0;
    for (size_t off = 0; off < len && !e;) {
        ssize_t w = write(fd, buf + off, len - off);
        if (w > 0)
            off += (size_t)w;
        else if (w < 0 && errno != EINTR)
            e = errno;
    }
    if (!e && fsync(fd) != 0)
        e = errno;
    if (close(fd) != 0 && !e)
        e = errno;
    if (!e && rename(f->tmp, f->path) != 0)
        e = errno;
    if (e) {
        unlink(f->tmp);
        return e;
    }
    gw_sync_dir(f->path);
    return 0;
}

static void *run(void *arg)
{
    gw_goodfile *f = arg;
    pthread_mutex_lock(&f->lock);
    for (;;) {
        while (!f->pending && !f->stopping)
            pthread_cond_wait(&f->cond, &f->lock);
        if (!f->pending)
            break; /* stopping, and nothing left to write */
        char *buf = f->pending;
        size_t len = f->pending_len;
        f->pending = NULL;
        pthread_mutex_unlock(&f->lock);
        int e = write_file(f, buf, len);
        free(buf);
        pthread_mutex_lock(&f->lock);
        f->result = e;
        f->have_result = true;
    }
    pthread_mutex_unlock(&f->lock);
    return NULL;
}

typedef struct snap {
    char *buf;
    size_t len, cap;
    int64_t now_ms;
    time_t wall;
} snap;

static void add_line(void *ctx, const gw_ip *ip)
{
    snap *s = ctx;
    long long secs = (long long)s->wall - (s->now_ms - ip->good_ms) / 1000;
    if (s->cap - s->len < GOOD_LINE_MAX)
        return; /* cannot happen: the buffer is sized for n_good lines */
    int k = snprintf(s->buf + s->len, s->cap - s->len, "%s %lld\n", ip->addr, secs);
    if (k > 0 && (size_t)k < s->cap - s->len)
        s->len += (size_t)k;
}

/* Hands a snapshot of g to the writer; false when out of memory. */
static bool hand_over(gw_goodfile *f, const gw_guard *g, int64_t now_ms, time_t wall)
{
    snap s = {.cap = (g->n_good + 1) * GOOD_LINE_MAX, .now_ms = now_ms, .wall = wall};
    if (!(s.buf = malloc(s.cap)))
        return false;
    gw_guard_each_good(g, add_line, &s);
    pthread_mutex_lock(&f->lock);
    free(f->pending); /* not taken yet: this one is newer */
    f->pending = s.buf;
    f->pending_len = s.len;
    pthread_cond_signal(&f->cond);
    pthread_mutex_unlock(&f->lock);
    return true;
}

/* ---- the loop's side ----------------------------------------------------- */

int gw_goodfile_open(const char *dir, gw_guard *g, int64_t now_ms, time_t wall, gw_goodfile **out,
                     eds_error *err)
{
    *out = NULL;
    gw_goodfile *f = calloc(1, sizeof(*f));
    if (!f)
        return EDS_ERR_NOMEM;
    f->path = eds_path_join(dir, GOOD_FILE);
    f->tmp = eds_path_join(dir, GOOD_TMP);
    if (!f->path || !f->tmp) {
        free(f->path);
        free(f->tmp);
        free(f);
        return EDS_ERR_NOMEM;
    }
    load(f->path, g, now_ms, wall);
    g->good_added = 0; /* what was just loaded is on disk already */
    g->good_seen = false;
    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->cond, NULL);
    if (gw_thread_start(&f->thread, run, f) != 0) {
        pthread_cond_destroy(&f->cond);
        pthread_mutex_destroy(&f->lock);
        free(f->path);
        free(f->tmp);
        free(f);
        return eds_error_set(err, EDS_ERR_IO, "known-good addresses: cannot start a thread");
    }
    *out = f;
    return EDS_OK;
}

/* Schedules a write for what changed in g since the last call. */
static void schedule(gw_goodfile *f, gw_guard *g, int64_t now_ms)
{
    int64_t due = 0;
    if (g->good_added)
        due = now_ms + GW_GOODFILE_BATCH_MS;
    else if (g->good_seen)
        due = now_ms + GW_GOODFILE_TOUCH_MS;
    g->good_added = 0;
    g->good_seen = false;
    if (due && (!f->due_ms || due < f->due_ms))
        f->due_ms = due;
}

void gw_goodfile_tick(gw_goodfile *f, gw_guard *g, int64_t now_ms, time_t wall)
{
    pthread_mutex_lock(&f->lock);
    bool have = f->have_result;
    int e = f->result;
    f->have_result = false;
    pthread_mutex_unlock(&f->lock);
    if (have && e && !f->failing) {
        eds_log_warning("known-good addresses: cannot write %s: %s (logins are not affected; "
                        "retried every %d s)",
                        f->path, strerror(e), GW_GOODFILE_RETRY_MS / 1000);
    } else if (have && !e && f->failing) {
        eds_log_notice("known-good addresses: %s written again", f->path);
    }
    if (have)
        f->failing = e != 0;
    if (have && e && !f->due_ms)
        f->due_ms = now_ms + GW_GOODFILE_RETRY_MS;
    schedule(f, g, now_ms);
    if (f->due_ms && now_ms >= f->due_ms && hand_over(f, g, now_ms, wall))
        f->due_ms = 0;
}

void gw_goodfile_close(gw_goodfile *f, gw_guard *g, int64_t now_ms, time_t wall)
{
    if (!f)
        return;
    schedule(f, g, now_ms);
    if (f->due_ms)
        hand_over(f, g, now_ms, wall);
    pthread_mutex_lock(&f->lock);
    f->stopping = true;
    pthread_cond_signal(&f->cond);
    pthread_mutex_unlock(&f->lock);
    pthread_join(f->thread, NULL);
    if (f->have_result && f->result)
        eds_log_warning("known-good addresses: cannot write %s: %s", f->path, strerror(f->result));
    free(f->pending);
    pthread_cond_destroy(&f->cond);
    pthread_mutex_destroy(&f->lock);
    free(f->path);
    free(f->tmp);
    free(f);
}
