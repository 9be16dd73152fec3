#include "eds_write.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <time.h>
#include <unistd.h>

ssize_t eds_write(int fd, const void *buf, size_t len)
{
    sigset_t pipe_set, old, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    /* A SIGPIPE pending already (blocked by the caller) is the caller's: left as it is. */
    bool was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1;
    bool blocked = pthread_sigmask(SIG_BLOCK, &pipe_set, &old) == 0;
    ssize_t w = write(fd, buf, len);
    int e = errno;
    if (blocked) {
        if (w < 0 && e == EPIPE && !was_pending) {
            /* The write raised SIGPIPE for this thread (it is pending, blocked): take it. */
            const struct timespec zero = {0, 0};
            while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
                ;
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    errno = e;
    return w;
}
