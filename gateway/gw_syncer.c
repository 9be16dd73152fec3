/*
 * gw_syncer.c - one thread that fdatasyncs a file at most once per interval.
 *
 * Two locks: `lock` guards the dirty flag and is never held during a sync, so
 * gw_syncer_dirty() cannot wait for the disk; `sync_lock` is held for the
 * fdatasync and for swapping the fd, so set_fd() never lets the thread sync
 * a descriptor the owner is about to close.
 */
#include "gw_syncer.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "eds_log.h"
#include "eds_clock.h"

struct gw_syncer {
    pthread_mutex_t lock, sync_lock;
    pthread_cond_t cond;
    pthread_t thread;
    int fd;
    int64_t interval_ms;
    bool dirty, stopping;
    bool warned; /* under sync_lock */
};

static void sync_now(gw_syncer *s)
{
    pthread_mutex_lock(&s->sync_lock);
    /* A failed sync is worth a line (a dying SD card), but not one every interval. */
    if (s->fd >= 0 && fdatasync(s->fd) != 0 && !s->warned) {
        s->warned = true;
        eds_log_error("fdatasync: %s (data reaches the disk later, if at all)", strerror(errno));
    }
    pthread_mutex_unlock(&s->sync_lock);
}

static void *run(void *arg)
{
    gw_syncer *s = arg;
    pthread_mutex_lock(&s->lock);
    while (!s->stopping) {
        while (!s->dirty && !s->stopping)
            pthread_cond_wait(&s->cond, &s->lock);
        if (s->stopping)
            break;
        s->dirty = false;
        pthread_mutex_unlock(&s->lock);
        sync_now(s);
        /* At most one sync per interval: writes meanwhile set dirty again. */
        pthread_mutex_lock(&s->lock);
        struct timespec dl = eds_deadline_in(s->interval_ms);
        while (!s->stopping && pthread_cond_timedwait(&s->cond, &s->lock, &dl) != ETIMEDOUT)
            ;
    }
    bool last = s->dirty;
    pthread_mutex_unlock(&s->lock);
    if (last)
        sync_now(s);
    return NULL;
}

int gw_syncer_start(int fd, int64_t interval_ms, gw_syncer **out)
{
    *out = NULL;
    gw_syncer *s = calloc(1, sizeof(*s));
    if (!s)
        return EDS_ERR_NOMEM;
    s->fd = fd;
    s->interval_ms = interval_ms > 0 ? interval_ms : 1;
    eds_cond_init_monotonic(&s->cond);
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->sync_lock, NULL);
    if (gw_thread_start(&s->thread, run, s) != 0) {
        pthread_cond_destroy(&s->cond);
        pthread_mutex_destroy(&s->lock);
        pthread_mutex_destroy(&s->sync_lock);
        free(s);
        return EDS_ERR_IO;
    }
    *out = s;
    return EDS_OK;
}

void gw_syncer_dirty(gw_syncer *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    if (!s->dirty) {
        s->dirty = true;
        pthread_cond_signal(&s->cond);
    }
    pthread_mutex_unlock(&s->lock);
}

void gw_syncer_set_fd(gw_syncer *s, int fd)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->sync_lock);
    s->fd = fd;
    pthread_mutex_unlock(&s->sync_lock);
}

void gw_syncer_stop(gw_syncer *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->stopping = true;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->sync_lock);
    free(s);
}

int gw_thread_start(pthread_t *t, void *(*fn)(void *), void *arg)
{
    /* The gateway reads SIGTERM/SIGHUP from a signalfd, which only works while
     * every thread blocks them. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(t, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

void gw_sync_dir(const char *path)
{
    char *dir = strdup(path);
    char *slash = dir ? strrchr(dir, '/') : NULL;
    if (slash) {
        *slash = '\0';
        int dfd = open(dir[0] ? dir : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    }
    free(dir);
}

bool gw_reserve_ahead(int fd, size_t end, size_t *reserved)
{
    if (end + GW_RESERVE_BYTES / 2 <= *reserved)
        return true;
    if (fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)end, GW_RESERVE_BYTES) == 0) {
        *reserved = end + GW_RESERVE_BYTES;
        return true;
    }
    return errno == EOPNOTSUPP || errno == ENOSYS;
}
