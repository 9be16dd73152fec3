#include "gw_loop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define GW_LOOP_BATCH 256

struct gw_loop {
    int epfd;
    struct epoll_event events[GW_LOOP_BATCH];
};

int gw_loop_create(gw_loop **out, eds_error *err)
{
    gw_loop *l = calloc(1, sizeof(*l));
    if (!l)
        return EDS_ERR_NOMEM;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0) {
        free(l);
        return eds_error_set(err, EDS_ERR_IO, "epoll_create1: %s", strerror(errno));
    }
    *out = l;
    return EDS_OK;
}

void gw_loop_destroy(gw_loop *l)
{
    if (!l)
        return;
    close(l->epfd);
    free(l);
}

static int ctl(gw_loop *l, int op, int fd, uint32_t events, void *ptr)
{
    struct epoll_event ev = {0};
    ev.events = (events & GW_EV_READ ? EPOLLIN : 0) | (events & GW_EV_WRITE ? EPOLLOUT : 0);
    ev.data.ptr = ptr;
    return epoll_ctl(l->epfd, op, fd, &ev) == 0 ? EDS_OK : EDS_ERR_IO;
}

int gw_loop_add(gw_loop *l, int fd, uint32_t events, void *ptr)
{
    return ctl(l, EPOLL_CTL_ADD, fd, events, ptr);
}

int gw_loop_mod(gw_loop *l, int fd, uint32_t events, void *ptr)
{
    return ctl(l, EPOLL_CTL_MOD, fd, events, ptr);
}

void gw_loop_del(gw_loop *l, int fd)
{
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
}

int gw_loop_wait(gw_loop *l, int timeout_ms, gw_loop_fn fn, void *ctx)
{
    int n = epoll_wait(l->epfd, l->events, GW_LOOP_BATCH, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : EDS_ERR_IO;
    for (int i = 0; i < n; i++) {
        uint32_t e = l->events[i].events, ev = 0;
        if (e & EPOLLIN)
            ev |= GW_EV_READ;
        if (e & EPOLLOUT)
            ev |= GW_EV_WRITE;
        if (e & (EPOLLERR | EPOLLHUP))
            ev |= GW_EV_ERROR;
        fn(ctx, l->events[i].data.ptr, ev);
    }
    return n;
}
