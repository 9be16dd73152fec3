#include "agent_input.h"

#include "agent_sim.h"
#include "eds_clock.h"
#include "eds_log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#ifdef __linux__
#include <linux/sock_diag.h>
#endif

#define MAX_TCP_CLIENTS 8
#define UDP_BATCH 64   /* datagrams read per iteration, so one source cannot starve others */
#define SIM_BATCH 1000 /* simulated records per iteration at most */
#define READ_CHUNK 16384

/* An NDJSON byte stream (stdin or one TCP client). */
typedef struct line_src {
    int fd;        /* -1: closed */
    bool own_fd;   /* close fd at the end (not stdin) */
    bool eof;      /* no more bytes will come; flush the tail then close */
    bool held;     /* the first line in buf was refused with FULL */
    bool skipping; /* inside an over-long line: drop bytes up to the next LF */
    char *buf;
    size_t len, cap;
    const char *name;
} line_src;

struct agent_inputs {
    agent_inputs_config cfg;
    agent_accept_fn accept;
    void *ctx;
    line_src in_stdin;
    int tcp_fd, udp_fd;
    line_src clients[MAX_TCP_CLIENTS];
    char *dgram; /* UDP receive buffer, max_line bytes */
    bool sim_on, sim_held;
    agent_sim sim;
    char sim_rec[512];
    size_t sim_len;
    uint64_t sim_due_ms, sim_last_ms;
    uint64_t accepted;
    uint64_t udp_dropped, too_long;
    uint32_t udp_kernel_drops; /* the socket's drop counter, as last seen */
    bool stopped;
    /* which fds were handed to poll, in order */
    enum { FD_STDIN, FD_TCP, FD_UDP, FD_CLIENT } kinds[2 + 1 + MAX_TCP_CLIENTS];
    int idx[2 + 1 + MAX_TCP_CLIENTS];
    size_t npoll;
};

static void src_close(line_src *s)
{
    if (s->fd >= 0 && s->own_fd)
        close(s->fd);
    s->fd = -1;
    free(s->buf);
    s->buf = NULL;
    s->len = s->cap = 0;
    s->held = s->skipping = s->eof = false;
}

static bool src_open(const line_src *s)
{
    return s->fd >= 0;
}

static int listen_socket(int type, int port, eds_error *err)
{
    int fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return eds_error_set(err, EDS_ERR_IO, "socket: %s", strerror(errno));
    int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        (type == SOCK_STREAM && listen(fd, 16) != 0)) {
        int e = errno;
        close(fd);
        return eds_error_set(err, EDS_ERR_IO, "%s input on 127.0.0.1:%d: %s",
                             type == SOCK_STREAM ? "tcp" : "udp", port, strerror(e));
    }
    return fd;
}

int inputs_open(const agent_inputs_config *cfg, agent_accept_fn fn, void *ctx, agent_inputs **out,
                eds_error *err)
{
    *out = NULL;
    agent_inputs *in = calloc(1, sizeof(*in));
    if (!in)
        return EDS_ERR_NOMEM;
    in->cfg = *cfg;
    if (in->cfg.max_line < 2)
        in->cfg.max_line = 65536;
    in->accept = fn;
    in->ctx = ctx;
    in->tcp_fd = in->udp_fd = -1;
    in->in_stdin.fd = -1;
    for (size_t i = 0; i < MAX_TCP_CLIENTS; i++)
        in->clients[i].fd = -1;
    if (cfg->read_stdin) {
        in->in_stdin.fd = STDIN_FILENO;
        in->in_stdin.name = "stdin";
    }
    int rc;
    if (cfg->tcp_port > 0) {
        rc = listen_socket(SOCK_STREAM, cfg->tcp_port, err);
        if (rc < 0)
            goto fail;
        in->tcp_fd = rc;
        eds_log_info("reading NDJSON records from tcp 127.0.0.1:%d", cfg->tcp_port);
    }
    if (cfg->udp_port > 0) {
        in->dgram = malloc(in->cfg.max_line);
        if (!in->dgram) {
            rc = EDS_ERR_NOMEM;
            goto fail;
        }
        rc = listen_socket(SOCK_DGRAM, cfg->udp_port, err);
        if (rc < 0)
            goto fail;
        in->udp_fd = rc;
#ifdef SO_RXQ_OVFL
        int on = 1;
        setsockopt(in->udp_fd, SOL_SOCKET, SO_RXQ_OVFL, &on, sizeof(on));
#endif
        eds_log_info("reading JSON datagrams from udp 127.0.0.1:%d", cfg->udp_port);
    }
    if (cfg->simulate > 0) {
        in->sim_on = true;
        agent_sim_init(&in->sim, cfg->seed);
        in->sim_due_ms = in->sim_last_ms = eds_monotonic_ms();
        eds_log_info("simulating %g records/s", cfg->simulate);
    }
    *out = in;
    return EDS_OK;
fail:
    inputs_close(in);
    return rc;
}

static void poll_kernel_drops(agent_inputs *in);

void inputs_stop(agent_inputs *in)
{
    src_close(&in->in_stdin);
    for (size_t i = 0; i < MAX_TCP_CLIENTS; i++)
        src_close(&in->clients[i]);
    if (in->tcp_fd >= 0)
        close(in->tcp_fd);
    poll_kernel_drops(in);
    if (in->udp_fd >= 0) {
        /* Datagrams still waiting in the socket are never taken: count them. */
        uint64_t left = 0;
        char byte;
        while (left < 1000000 && recv(in->udp_fd, &byte, 1, MSG_DONTWAIT | MSG_TRUNC) >= 0)
            left++; /* bounded: a sender that never stops cannot hold the agent here */
        if (left) {
            in->udp_dropped += left;
            eds_log_warning("udp input: closed with %llu datagrams unread (counted as dropped)",
                            (unsigned long long)left);
        }
        close(in->udp_fd);
    }
    in->tcp_fd = in->udp_fd = -1;
    in->sim_on = in->sim_held = false;
    in->stopped = true;
}

void inputs_close(agent_inputs *in)
{
    if (!in)
        return;
    inputs_stop(in);
    free(in->dgram);
    free(in);
}

bool inputs_active(const agent_inputs *in)
{
    if (in->stopped)
        return false;
    if (src_open(&in->in_stdin) || in->tcp_fd >= 0 || in->udp_fd >= 0 || in->sim_on)
        return true;
    for (size_t i = 0; i < MAX_TCP_CLIENTS; i++)
        if (src_open(&in->clients[i]))
            return true;
    return false;
}

uint64_t inputs_udp_dropped(const agent_inputs *in)
{
    return in->udp_dropped;
}

uint64_t inputs_too_long(const agent_inputs *in)
{
    return in->too_long;
}

/* Counts an accepted record; at the --count limit every input closes. */
static void count_one(agent_inputs *in)
{
    in->accepted++;
    if (in->cfg.count > 0 && in->accepted >= (uint64_t)in->cfg.count) {
        eds_log_info("%llu record%s read (--count): closing the inputs", in->cfg.count,
                     eds_plural(in->cfg.count));
        inputs_stop(in);
    }
}

/* Hands complete lines of s to accept. Stops at a FULL (held) line. */
static void src_drain(agent_inputs *in, line_src *s)
{
    size_t pos = 0;
    s->held = false;
    while (!in->stopped && pos < s->len) {
        char *line = s->buf + pos;
        size_t avail = s->len - pos;
        char *nl = memchr(line, '\n', avail);
        size_t len = nl ? (size_t)(nl - line) : avail;
        size_t next = pos + len + (nl ? 1 : 0);
        if (s->skipping) { /* the rest of an over-long line: drop it */
            if (nl)
                s->skipping = false;
            pos = next;
            continue;
        }
        if (!nl && !s->eof)
            break;
        if (len > 0 && line[len - 1] == '\r')
            len--;
        if (len == 0) {
            pos = next;
            continue;
        }
        int rc = in->accept(in->ctx, line, len);
        if (rc == EDS_ERR_FULL) {
            s->held = true;
            break;
        }
        pos = next;
        if (rc == EDS_OK)
            count_one(in);
    }
    if (in->stopped)
        return;
    memmove(s->buf, s->buf + pos, s->len - pos);
    s->len -= pos;
    if (!s->held && s->len + 1 >= in->cfg.max_line) {
        /* No LF within max_line: refuse the line, skip to its end. */
        eds_log_warning("%s: record line longer than %zu bytes refused", s->name,
                        in->cfg.max_line - 1);
        in->too_long++;
        s->skipping = true;
        s->len = 0;
    }
    if (s->eof && !s->held) {
        s->len = 0;
        if (s == &in->in_stdin)
            eds_log_info("end of stdin");
        src_close(s);
    }
}

static void src_read(agent_inputs *in, line_src *s)
{
    if (!s->buf) {
        s->cap = in->cfg.max_line;
        s->buf = malloc(s->cap);
        if (!s->buf) {
            eds_log_error("%s: out of memory", s->name);
            src_close(s);
            return;
        }
    }
    size_t room = s->cap - s->len;
    if (room > READ_CHUNK)
        room = READ_CHUNK;
    ssize_t n = read(s->fd, s->buf + s->len, room);
    if (n < 0) {
        if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        eds_log_warning("%s: %s", s->name, strerror(errno));
        n = 0;
    }
    if (n == 0)
        s->eof = true;
    s->len += (size_t)n;
    src_drain(in, s);
}

static void tcp_accept(agent_inputs *in)
{
    for (;;) {
        int fd = accept4(in->tcp_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        line_src *slot = NULL;
        for (size_t i = 0; i < MAX_TCP_CLIENTS && !slot; i++)
            if (!src_open(&in->clients[i]))
                slot = &in->clients[i];
        if (!slot) {
            eds_log_warning("tcp input: more than %d clients, refusing one", MAX_TCP_CLIENTS);
            close(fd);
            continue;
        }
        memset(slot, 0, sizeof(*slot));
        slot->fd = fd;
        slot->own_fd = true;
        slot->name = "tcp input";
        eds_log_debug("tcp input: client connected");
    }
}

/* Counts datagrams the kernel dropped (receive buffer full while the agent was busy):
 * total is the socket's cumulative drop counter. */
static void note_kernel_drops(agent_inputs *in, uint32_t total)
{
    uint32_t d = total - in->udp_kernel_drops;
    if (d == 0 || d > 0x7fffffffu)
        return;
    in->udp_kernel_drops = total;
    uint64_t before = in->udp_dropped;
    in->udp_dropped += d;
    if (before == 0 || before / 1000 != in->udp_dropped / 1000)
        eds_log_warning("udp input: %" PRIu32 " datagrams dropped by the kernel (the agent did "
                        "not read them in time), %llu dropped so far",
                        d, (unsigned long long)in->udp_dropped);
}

/* The socket's drop counter now (also drops after the last datagram read). */
static void poll_kernel_drops(agent_inputs *in)
{
#if defined(SO_MEMINFO) && defined(SK_MEMINFO_DROPS)
    uint32_t mem[SK_MEMINFO_VARS];
    socklen_t len = sizeof(mem);
    if (in->udp_fd >= 0 && getsockopt(in->udp_fd, SOL_SOCKET, SO_MEMINFO, mem, &len) == 0 &&
        len >= (SK_MEMINFO_DROPS + 1) * sizeof(uint32_t))
        note_kernel_drops(in, mem[SK_MEMINFO_DROPS]);
#else
    (void)in;
#endif
}

static void udp_read(agent_inputs *in)
{
    for (int i = 0; i < UDP_BATCH && in->udp_fd >= 0; i++) {
        struct iovec iov = {.iov_base = in->dgram, .iov_len = in->cfg.max_line};
        union {
            char buf[CMSG_SPACE(sizeof(uint32_t))];
            struct cmsghdr align;
        } ctl;
        struct msghdr mh;
        memset(&mh, 0, sizeof(mh));
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        mh.msg_control = ctl.buf;
        mh.msg_controllen = sizeof(ctl.buf);
        ssize_t n = recvmsg(in->udp_fd, &mh, MSG_TRUNC);
        if (n < 0)
            break;
#ifdef SO_RXQ_OVFL
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
            if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SO_RXQ_OVFL) {
                uint32_t total;
                memcpy(&total, CMSG_DATA(cm), sizeof(total));
                note_kernel_drops(in, total);
            }
        }
#endif
        size_t len = (size_t)n;
        if (len >= in->cfg.max_line) {
            in->too_long++;
            eds_log_warning("udp input: datagram of %zu bytes refused (max %zu)", len,
                            in->cfg.max_line - 1);
            continue;
        }
        while (len > 0 && (in->dgram[len - 1] == '\n' || in->dgram[len - 1] == '\r'))
            len--;
        if (len == 0)
            continue;
        int rc = in->accept(in->ctx, in->dgram, len);
        if (rc == EDS_OK) {
            count_one(in);
        } else if (rc == EDS_ERR_FULL) {
            in->udp_dropped++;
            if (in->udp_dropped == 1 || in->udp_dropped % 1000 == 0)
                eds_log_warning("udp input: queue full, %llu datagrams dropped so far",
                                (unsigned long long)in->udp_dropped);
        }
    }
    poll_kernel_drops(in);
}

static void sim_run(agent_inputs *in, uint64_t now)
{
    double period = 1000.0 / in->cfg.simulate;
    if (now > in->sim_due_ms + 1000)
        in->sim_due_ms = now; /* after a stall: carry on, do not burst */
    for (int i = 0; i < SIM_BATCH && in->sim_on; i++) {
        if (!in->sim_held) {
            if (in->sim_due_ms > now)
                return;
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            double dt = now > in->sim_last_ms ? (double)(now - in->sim_last_ms) / 1000.0 : 0;
            in->sim_last_ms = now;
            in->sim_len = agent_sim_record(&in->sim, &ts, dt, in->sim_rec, sizeof(in->sim_rec));
        }
        int rc = in->accept(in->ctx, in->sim_rec, in->sim_len);
        if (rc == EDS_ERR_FULL) {
            in->sim_held = true;
            return;
        }
        in->sim_held = false;
        in->sim_due_ms += (uint64_t)(period > 1 ? period : 1);
        if (period < 1)
            in->sim_due_ms = now; /* more than 1000/s: as fast as the batch allows */
        if (rc == EDS_OK)
            count_one(in);
    }
}

int inputs_timeout_ms(const agent_inputs *in, uint64_t now_ms)
{
    if (!in->sim_on || in->sim_held)
        return -1;
    if (in->sim_due_ms <= now_ms)
        return 0;
    uint64_t d = in->sim_due_ms - now_ms;
    return d > 60000 ? 60000 : (int)d;
}

size_t inputs_pollfds(agent_inputs *in, struct pollfd *fds, size_t cap)
{
    size_t n = 0;
#define ADD(fd_, kind_, idx_)                                                                      \
    do {                                                                                           \
        if (n < cap) {                                                                             \
            fds[n].fd = (fd_);                                                                     \
            fds[n].events = POLLIN;                                                                \
            fds[n].revents = 0;                                                                    \
            in->kinds[n] = (kind_);                                                                \
            in->idx[n] = (idx_);                                                                   \
            n++;                                                                                   \
        }                                                                                          \
    } while (0)
    if (src_open(&in->in_stdin) && !in->in_stdin.held && !in->in_stdin.eof)
        ADD(in->in_stdin.fd, FD_STDIN, 0);
    if (in->tcp_fd >= 0)
        ADD(in->tcp_fd, FD_TCP, 0);
    if (in->udp_fd >= 0)
        ADD(in->udp_fd, FD_UDP, 0);
    for (int i = 0; i < MAX_TCP_CLIENTS; i++) {
        line_src *s = &in->clients[i];
        if (src_open(s) && !s->held && !s->eof)
            ADD(s->fd, FD_CLIENT, i);
    }
#undef ADD
    in->npoll = n;
    return n;
}

void inputs_handle(agent_inputs *in, const struct pollfd *fds, size_t n, uint64_t now_ms)
{
    /* Held records first: they are older than anything still unread. */
    if (in->in_stdin.held)
        src_drain(in, &in->in_stdin);
    for (size_t i = 0; i < MAX_TCP_CLIENTS; i++)
        if (in->clients[i].held)
            src_drain(in, &in->clients[i]);
    for (size_t i = 0; i < n && i < in->npoll && !in->stopped; i++) {
        if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        switch (in->kinds[i]) {
        case FD_STDIN:
            if (src_open(&in->in_stdin) && !in->in_stdin.held)
                src_read(in, &in->in_stdin);
            break;
        case FD_TCP:
            tcp_accept(in);
            break;
        case FD_UDP:
            udp_read(in);
            break;
        case FD_CLIENT: {
            line_src *s = &in->clients[in->idx[i]];
            if (src_open(s) && !s->held)
                src_read(in, s);
            break;
        }
        }
    }
    in->npoll = 0;
    if (in->sim_on)
        sim_run(in, now_ms);
}

/* Bytes fd's send buffer takes now without blocking (conservative: the kernel reports
 * SO_SNDBUF doubled for its bookkeeping). */
static size_t send_room(int fd)
{
    int size = 0, queued = 0;
    socklen_t sl = sizeof(size);
    if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, &sl) != 0 || ioctl(fd, SIOCOUTQ, &queued) != 0)
        return 0;
    size /= 2;
    return size > queued ? (size_t)(size - queued) : 0;
}

int inputs_send_line(agent_inputs *in, const char *line, size_t len)
{
    int rc = EDS_ERR_NOTFOUND;
    for (int i = 0; i < MAX_TCP_CLIENTS; i++) {
        line_src *s = &in->clients[i];
        if (!src_open(s) || s->eof)
            continue;
        if (rc == EDS_ERR_NOTFOUND)
            rc = EDS_ERR_AGAIN;
        if (send_room(s->fd) < len + 1)
            continue;
        struct iovec iov[2] = {{(void *)line, len}, {"\n", 1}};
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
        ssize_t n = sendmsg(s->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n == (ssize_t)len + 1) {
            rc = EDS_OK;
        } else if (n >= 0 || (errno != EAGAIN && errno != EINTR)) {
            /* A line cut in two, or a dead client: the stream is no good any more. */
            eds_log_warning("tcp input: a client did not take a command line (%s); closing it",
                            n >= 0 ? "partial write" : strerror(errno));
            src_close(s);
        }
    }
    return rc;
}
