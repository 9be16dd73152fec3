/* Unit tests for the agent engine's protocol state machine, driven through
 * the public API (edsagent.h) against a fake gateway in this process on a
 * loopback socket: the hello it sends, the send window, ack/nack, welcome's
 * last_seq, resending after a reconnect, duplicates, downlink commands,
 * ping and a dead connection, auth_failed backing off, record validation,
 * the full policies, and a restart on the same spool. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent_cmds.h"
#include "edsagent.h"
#include "eds_log.h"
#include "eds_proto.h"

#define DEADLINE_MS 5000

typedef struct fake_gw {
    int lfd; /* listener */
    int cfd; /* the agent's connection, -1 none */
    int port;
    char buf[1 << 16];
    size_t len;
} fake_gw;

typedef struct fixture {
    fake_gw gw;
    char dir[64];
    char pwfile[128];
    eds_agent_config cfg;
    eds_agent *a;
} fixture;

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void gw_listen(fake_gw *g)
{
    g->cfd = -1;
    g->len = 0;
    g->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(g->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(g->lfd, 4), 0);
    socklen_t sl = sizeof(sa);
    assert_int_equal(getsockname(g->lfd, (struct sockaddr *)&sa, &sl), 0);
    g->port = ntohs(sa.sin_port);
}

static void gw_drop(fake_gw *g)
{
    if (g->cfd >= 0)
        close(g->cfd);
    g->cfd = -1;
    g->len = 0;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/eds-engine-test-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->pwfile, sizeof(f->pwfile), "%s/pw", f->dir);
    FILE *fp = fopen(f->pwfile, "w");
    fputs("s3cret\n", fp);
    fclose(fp);
    chmod(f->pwfile, 0600);
    gw_listen(&f->gw);
    eds_agent_config_init(&f->cfg);
    f->cfg.gateway_host = "127.0.0.1";
    f->cfg.gateway_port = f->gw.port;
    f->cfg.device = "myrio-01";
    f->cfg.password_file = f->pwfile;
    f->cfg.schema = EDS_SOURCE_DIR "/schemas/energy.json";
    f->cfg.window = 4;
    f->cfg.queue_max = 100;
    f->cfg.reconnect_min = 0.02;
    f->cfg.reconnect_max = 0.1;
    *state = f;
    return 0;
}

static void rm_tree(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        struct stat st;
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
            rm_tree(path);
        else
            unlink(path);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

static int teardown(void **state)
{
    fixture *f = *state;
    eds_agent_destroy(f->a);
    gw_drop(&f->gw);
    close(f->gw.lfd);
    rm_tree(f->dir);
    free(f);
    return 0;
}

static void create_agent(fixture *f)
{
    eds_error err;
    eds_error_clear(&err);
    int rc = eds_agent_create(&f->cfg, &f->a, &err);
    if (rc != EDS_OK)
        fail_msg("eds_agent_create: %s", err.msg);
}

/* Runs the agent until the fake gateway has accepted its connection. */
static void gw_accept(fixture *f)
{
    uint64_t end = mono_ms() + DEADLINE_MS;
    while (f->gw.cfd < 0) {
        assert_int_equal(eds_agent_poll(f->a, 10), EDS_OK);
        f->gw.cfd = accept4(f->gw.lfd, NULL, NULL, SOCK_NONBLOCK);
        if (mono_ms() > end)
            fail_msg("the agent did not connect");
    }
    f->gw.len = 0;
}

/* Runs the agent until it has sent one line to the fake gateway (NUL-terminated into out).
 * Returns 0, or -1 if the agent closed the connection first. */
static int gw_line_within(fixture *f, char *out, size_t cap, uint64_t ms)
{
    uint64_t end = mono_ms() + ms;
    for (;;) {
        char *nl = memchr(f->gw.buf, '\n', f->gw.len);
        if (nl) {
            size_t n = (size_t)(nl - f->gw.buf);
            assert_true(n < cap);
            memcpy(out, f->gw.buf, n);
            out[n] = '\0';
            memmove(f->gw.buf, nl + 1, f->gw.len - n - 1);
            f->gw.len -= n + 1;
            return 0;
        }
        if (mono_ms() > end)
            return -2;
        assert_int_equal(eds_agent_poll(f->a, 5), EDS_OK);
        ssize_t r = recv(f->gw.cfd, f->gw.buf + f->gw.len, sizeof(f->gw.buf) - f->gw.len, 0);
        if (r == 0)
            return -1;
        if (r < 0 && errno != EAGAIN)
            return -1;
        if (r > 0)
            f->gw.len += (size_t)r;
    }
}

static void gw_line(fixture *f, char *out, size_t cap)
{
    int rc = gw_line_within(f, out, cap, DEADLINE_MS);
    if (rc == -1)
        fail_msg("the agent closed the connection");
    if (rc == -2)
        fail_msg("no line from the agent");
}

static void gw_send(fixture *f, const char *line)
{
    size_t n = strlen(line);
    assert_int_equal(send(f->gw.cfd, line, n, MSG_NOSIGNAL), (ssize_t)n);
}

static void gw_sendf(fixture *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void gw_sendf(fixture *f, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    gw_send(f, line);
}

/* Accepts, checks the hello, sends welcome last_seq. */
static void gw_session(fixture *f, uint64_t last_seq)
{
    gw_accept(f);
    char line[1024];
    gw_line(f, line, sizeof(line));
    eds_msg m;
    eds_error err;
    assert_int_equal(eds_msg_parse(line, strlen(line), EDS_TO_GATEWAY, &m, &err), EDS_OK);
    assert_int_equal(m.type, EDS_MSG_HELLO);
    eds_msg_free(&m);
    gw_sendf(f, "{\"type\":\"welcome\",\"proto\":1,\"last_seq\":%llu}\n",
             (unsigned long long)last_seq);
}

/* Reads a data line; returns its seq and the value of "sample" in its data. */
static uint64_t gw_data(fixture *f, int *sample)
{
    char line[2048];
    gw_line(f, line, sizeof(line));
    eds_msg m;
    eds_error err;
    if (eds_msg_parse(line, strlen(line), EDS_TO_GATEWAY, &m, &err) != EDS_OK)
        fail_msg("bad line from agent: %s: %s", err.msg, line);
    if (m.type != EDS_MSG_DATA)
        fail_msg("expected data, got %s", line);
    uint64_t seq = m.seq;
    if (sample) {
        cJSON *s = cJSON_GetObjectItemCaseSensitive(m.data, "sample");
        assert_true(cJSON_IsNumber(s));
        *sample = s->valueint;
    }
    eds_msg_free(&m);
    return seq;
}

static void send_record(fixture *f, int sample)
{
    char rec[256];
    int n = snprintf(rec, sizeof(rec),
                     "{\"timestamp\":\"2026-11-24T10:00:%02dZ\",\"day-ahead-price\":81.4,"
                     "\"power_factor\":0.97,\"sample\":%d}",
                     sample % 60, sample);
    eds_error err;
    int rc = eds_agent_send(f->a, rec, (size_t)n, &err);
    if (rc != EDS_OK)
        fail_msg("eds_agent_send: %s: %s", eds_strerror(rc), err.msg);
}

/* Pumps the agent until cond, with a deadline. */
#define RUN_UNTIL(f, cond)                                                                         \
    do {                                                                                           \
        uint64_t end_ = mono_ms() + DEADLINE_MS;                                                   \
        while (!(cond)) {                                                                          \
            if (mono_ms() > end_)                                                                  \
                fail_msg("timed out waiting for %s", #cond);                                       \
            assert_int_equal(eds_agent_poll((f)->a, 5), EDS_OK);                                   \
        }                                                                                          \
    } while (0)

static void test_hello_carries_device_password_stream(void **state)
{
    fixture *f = *state;
    f->cfg.stream = "feed01";
    create_agent(f);
    assert_string_equal(eds_agent_stream(f->a), "feed01");
    gw_accept(f);
    char line[1024];
    gw_line(f, line, sizeof(line));
    assert_string_equal(
        line, "{\"type\":\"hello\",\"device\":\"myrio-01\",\"password\":\"s3cret\","
              "\"stream\":\"feed01\",\"proto\":1,\"cmd_results\":true,\"max_line\":65536}");
}

static void test_window_order_and_acks(void **state)
{
    fixture *f = *state;
    create_agent(f);
    gw_session(f, 0);
    for (int i = 1; i <= 10; i++)
        send_record(f, i);
    int next = 1;
    while (next <= 10) {
        /* the agent sends at most `window` records ahead of the acks */
        int batch = 0, sample;
        while (batch < 4 && next + batch <= 10) {
            uint64_t seq = gw_data(f, &sample);
            assert_int_equal(seq, (uint64_t)(next + batch));
            assert_int_equal(sample, next + batch);
            batch++;
        }
        char extra[2048];
        assert_int_equal(gw_line_within(f, extra, sizeof(extra), 100), -2);
        for (int k = 0; k < batch; k++)
            gw_sendf(f, "{\"type\":\"ack\",\"seq\":%d}\n", next + k);
        next += batch;
    }
    RUN_UNTIL(f, eds_agent_pending(f->a) == 0);
    eds_agent_stats st;
    eds_agent_get_stats(f->a, &st);
    assert_int_equal(st.accepted, 10);
    assert_int_equal(st.acked, 10);
    assert_true(eds_agent_connected(f->a));
}

static void test_welcome_last_seq_drops_handled(void **state)
{
    fixture *f = *state;
    /* On a spool the records may have reached the gateway in an earlier run. */
    char spool[128];
    snprintf(spool, sizeof(spool), "%s/spool", f->dir);
    f->cfg.spool = spool;
    create_agent(f);
    for (int i = 1; i <= 5; i++)
        send_record(f, i);
    gw_session(f, 3);
    assert_int_equal(gw_data(f, NULL), 4);
    assert_int_equal(gw_data(f, NULL), 5);
    gw_send(f, "{\"type\":\"ack\",\"seq\":4}\n{\"type\":\"ack\",\"seq\":5}\n");
    RUN_UNTIL(f, eds_agent_pending(f->a) == 0);
    eds_agent_stats st;
    eds_agent_get_stats(f->a, &st);
    assert_int_equal(st.welcome_skipped, 3);
    assert_int_equal(st.acked, 2);
}

/* Reads samples 1..n as seqs last_seq + 1.., acks each, until nothing is pending. */
static void expect_renumbered(fixture *f, int n, uint64_t last_seq)
{
    int sample;
    for (int want = 1; want <= n; want++) {
        uint64_t seq = last_seq + (uint64_t)want;
        assert_int_equal(gw_data(f, &sample), seq);
        assert_int_equal(sample, want);
        gw_sendf(f, "{\"type\":\"ack\",\"seq\":%llu}\n", (unsigned long long)seq);
    }
    RUN_UNTIL(f, eds_agent_pending(f->a) == 0);
}

/* Regression: with a fixed stream and no spool, a second run starts again at seq 1 while
 * the gateway already has a higher last_seq for that stream. The records this run queued
 * were never sent: they must go out (numbered after last_seq), not be dropped as handled. */
static void test_welcome_beyond_own_seq_keeps_memory_records(void **state)
{
    fixture *f = *state;
    f->cfg.stream = "feed01";
    create_agent(f);
    for (int i = 1; i <= 3; i++)
        send_record(f, i);
    gw_session(f, 1000);
    expect_renumbered(f, 3, 1000);
    send_record(f, 4); /* the counter continues after them */
    int sample;
    assert_int_equal(gw_data(f, &sample), 1004);
    assert_int_equal(sample, 4);
    eds_agent_stats st;
    eds_agent_get_stats(f->a, &st);
    assert_int_equal(st.acked, 3);
    assert_int_equal(st.welcome_skipped, 0);
}

/* Regression: the same with last_seq below the agent's counter: a second run on a fixed
 * stream without a spool queued seqs 1..5, the gateway has 1..3 from the first run. None
 * of the five was sent by this run, so none may be dropped as handled. */
static void test_fixed_stream_rerun_keeps_unsent_records(void **state)
{
    fixture *f = *state;
    f->cfg.stream = "feed01";
    create_agent(f);
    for (int i = 1; i <= 5; i++)
        send_record(f, i);
    gw_session(f, 3);
    expect_renumbered(f, 5, 3);
    /* what this run did send is trusted to the gateway's count after a cut */
    send_record(f, 6);
    send_record(f, 7);
    assert_int_equal(gw_data(f, NULL), 9);
    assert_int_equal(gw_data(f, NULL), 10);
    gw_drop(&f->gw);
    RUN_UNTIL(f, !eds_agent_connected(f->a));
    gw_session(f, 9);
    int sample;
    assert_int_equal(gw_data(f, &sample), 10);
    assert_int_equal(sample, 7);
    eds_agent_stats st;
    eds_agent_get_stats(f->a, &st);
    assert_int_equal(st.welcome_skipped, 1);
}

static void test_nack_drops_record(void **state)
{
    fixture *f = *state;
    create_agent(f);
    gw_session(f, 0);
    send_record(f, 1);
    send_record(f, 2);
    assert_int_equal(gw_data(f, NULL), 1);
    assert_int_equal(gw_data(f, NULL), 2);
    gw_send(f, "{\"type\":\"nack\",\"seq\":1,\"errors\":{\"power_factor\":[\"max value is "
               "1.0\"]}}\n{\"type\":\"ack\",\"seq\":2}\n");
    RUN_UNTIL(f, eds_agent_pending(f->a) == 0);
    eds_agent_stats st;
    eds_agent_get_stats(f->a, &st);
    assert_int_equal(st.nacked, 1);
    assert_int_equal(st.acked, 1);
    /* a nacked record is never sent again, also not after a reconnect */
    gw_drop(&f->gw);
    gw_session(f, 0);
    char line[256];
    assert_int_equal(gw_line_within(f, line, sizeof(line), 200), -2);
}

static void test_reconnect_resends_unacked_in_order(void **state)
{
    fixture *f = *state;
    create_agent(f);
    gw_session(f, 0);
    for (int i = 1; i <= 3; i++)
        send_record(f, i);
    for (uint64_t s = 1; s <= 3; s++)
        assert_int_equal(gw_data(f, NULL), s);
    gw_send(f, "{\"type\":\"ack\",\"seq\":1}\n");
    RUN_UNTIL(f, eds_agent_pending(f->a) == 2);
    gw_drop(&f->gw); /* the gateway goes away with 2 and 3 unanswered */
    RUN_UNTIL(f, !eds_agent_connected(f->a));
    send_record(f, 4); /* queued while disconnected */
    gw_session(f, 2);  /* 2 made it to the broker before the cut */
    assert_int_equal(gw_data(f, NULL), 3);
    assert_int_equal(gw_data(f, NULL), 4);
    /* an ack marked duplicate still completes the record */
    gw_send(f, "{\"type\":\"ack\",\"seq\":3,\"duplicate\":true}\n{\"type\":\"ack\",\"seq\":4}\n");
    RUN_UNTIL(f, eds_agent_pending(f->a) == 0);
    eds_agent_stats st;
    eds_agent_get_stats(f->a, &st);
    assert_int_equal(st.acked, 3);
    assert_int_equal(st.duplicates, 1);
    assert_int_equal(st.welcome_skipped, 1);
    assert_int_equal(st.connects, 2);
}

static void test_cmd_handed_over_then_acked(void **state)
{
    fixture *f = *state;
    create_agent(f);
    gw_session(f, 0);
    gw_send(f, "{\"type\":\"cmd\",\"id\":7,\"data\":{\"day-ahead-price\":77.5}}\n");
    char buf[256];
    int64_t id = 0;
    int n = 0;
    RUN_UNTIL(f, (n = eds_agent_next_cmd(f->a, buf, sizeof(buf), &id)) != 0);
    assert_int_equal(n, (int)strlen("{\"day-ahead-price\":77.5}"));
    assert_string_equal(buf, "{\"day-ahead-price\":77.5}");
    assert_int_equal(id, 7);
    char line[256];
    gw_line(f, line, sizeof(line));
    assert_string_equal(line, "{\"type\":\"ack\",\"id\":7}");
    assert_int_equal(eds_agent_next_cmd(f->a, buf, sizeof(buf), &id), 0);
    /* too small a buffer leaves the command queued */
    gw_send(f, "{\"type\":\"cmd\",\"id\":8,\"data\":[1,2,3]}\n");
    RUN_UNTIL(f, eds_agent_next_cmd(f->a, buf, 4, &id) == EDS_ERR_TOOLONG);
    assert_int_equal(eds_agent_next_cmd(f->a, buf, sizeof(buf), &id), 7);
    assert_string_equal(buf, "[1,2,3]");
    assert_int_equal(id, 8);
}

/* The agent's command counters: handed over, and refused/expired/dropped. */
static void expect_cmd_stats(fixture *f, uint64_t cmds, uint64_t refused)
{
    eds_agent_stats st;
    eds_agent_get_stats(f->a, &st);
    assert_int_equal(st.cmds, cmds);
    assert_int_equal(st.cmds_refused, refused);
}

/* The application takes the next command (its data want); the gateway gets ack `ack`. */
static void expect_taken_and_acked(fixture *f, const char *want, const char *ack)
{
    char buf[256], line[256];
    int64_t id = 0;
    RUN_UNTIL(f, eds_agent_next_cmd(f->a, buf, sizeof(buf), &id) > 0);
    assert_string_equal(buf, want);
    gw_line(f, line, sizeof(line));
    assert_string_equal(line, ack);
}

/* The gateway gets answer `line` and the application nothing (a resend, say). */
static void expect_answer_only(fixture *f, const char *want)
{
    char buf[256], line[256];
    int64_t id = 0;
    gw_line(f, line, sizeof(line));
    assert_string_equal(line, want);
    assert_int_equal(eds_agent_next_cmd(f->a, buf, sizeof(buf), &id), 0);
}

/* A gateway that offers command results: a command the agent cannot parse is refused
 * with a nack for its id, the connection stays; a command sent again with the same uid
 * (after a reconnect) is not handed over twice, only acked. */
static void test_cmd_refused_and_resent_uid_taken_once(void **state)
{
    fixture *f = *state;
    create_agent(f);
    gw_accept(f);
    char line[1024];
    gw_line(f, line, sizeof(line)); /* hello */
    gw_send(f, "{\"type\":\"welcome\",\"proto\":1,\"last_seq\":0,\"cmd_results\":true}\n");
    gw_send(f, "{\"type\":\"cmd\",\"id\":1,\"data\":{\"a\":1,\"a\":2}}\n");
    gw_line(f, line, sizeof(line));
    assert_string_equal(line, "{\"type\":\"nack\",\"id\":1,\"errors\":{\"cmd\":[\"not valid JSON: "
                              "duplicate key \\\"a\\\"\"]}}");
    gw_send(f, "{\"type\":\"cmd\",\"id\":2,\"uid\":42,\"data\":{\"p\":77.0}}\n");
    /* as sent: 77.0 stays 77.0 */
    expect_taken_and_acked(f, "{\"p\":77.0}", "{\"type\":\"ack\",\"id\":2}");
    /* The same command again (its ack lost, say): acked, not handed over again. */
    gw_send(f, "{\"type\":\"cmd\",\"id\":3,\"uid\":42,\"data\":{\"p\":77.0}}\n");
    expect_answer_only(f, "{\"type\":\"ack\",\"id\":3}");
    expect_cmd_stats(f, 1, 1);
}

/* ttl 0 is expired already (nack expired; a finished uid gets its remembered answer);
 * a ttl that is negative, not whole or past 2^32-1 refuses that command, the connection
 * stays. */
static void gw_results_session(fixture *f);

static void test_cmd_ttl_zero_expired_bad_ttl_refused(void **state)
{
    fixture *f = *state;
    create_agent(f);
    gw_results_session(f);
    char line[1024];
    const char *expired = "{\"type\":\"nack\",\"id\":%d,\"status\":\"expired\",";
    char want[128];
    for (int id = 1; id <= 2; id++) { /* the second: the same uid again */
        gw_sendf(f, "{\"type\":\"cmd\",\"id\":%d,\"uid\":60,\"ttl\":0,\"data\":{}}\n", id);
        gw_line(f, line, sizeof(line));
        snprintf(want, sizeof(want), expired, id);
        assert_memory_equal(line, want, strlen(want));
    }
    const char *bad[] = {"-1", "1.5", "4294967296", "\"60\"", "1e300"};
    for (int i = 0; i < 5; i++) {
        gw_sendf(f, "{\"type\":\"cmd\",\"id\":%d,\"uid\":%d,\"ttl\":%s,\"data\":{}}\n", 10 + i,
                 70 + i, bad[i]);
        gw_line(f, line, sizeof(line));
        snprintf(want, sizeof(want),
                 "{\"type\":\"nack\",\"id\":%d,\"errors\":{\"cmd\":[\"ttl must be a whole number "
                 "of seconds from 0 to 4294967295\"]}}",
                 10 + i);
        assert_string_equal(line, want);
    }
    /* The connection stayed: a command with a ttl is handed over; sent again with ttl 0
     * (its ack lost), it gets its ack again, not expired. */
    gw_send(f, "{\"type\":\"cmd\",\"id\":20,\"uid\":80,\"ttl\":4294967295,\"data\":[1]}\n");
    expect_taken_and_acked(f, "[1]", "{\"type\":\"ack\",\"id\":20}");
    gw_send(f, "{\"type\":\"cmd\",\"id\":21,\"uid\":80,\"ttl\":0,\"data\":[1]}\n");
    expect_answer_only(f, "{\"type\":\"ack\",\"id\":21}");
    expect_cmd_stats(f, 1, 6);
}

/* Regression: while the gateway is slow to read (the agent's output buffer full of data
 * lines), the acks of commands taken meanwhile were dropped ("output buffer full"): the
 * gateway then holds them unacked (its command flow stalls at 64) and sends them again
 * after a reconnect. Every command taken must be acked. */
static void test_cmd_acks_not_lost_while_output_full(void **state)
{
    fixture *f = *state;
    enum { NREC = 80000, NCMD = 64 };
    int small = 4096;
    assert_int_equal(setsockopt(f->gw.lfd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    f->cfg.schema = NULL;
    f->cfg.max_line = 4096;
    f->cfg.window = NREC;
    f->cfg.queue_max = NREC;
    create_agent(f);
    gw_session(f, 0);
    static char rec[100];
    memset(rec, 'x', sizeof(rec));
    memcpy(rec, "{\"pad\":\"", 8);
    memcpy(rec + sizeof(rec) - 2, "\"}", 2);
    eds_error err;
    for (int i = 0; i < NREC; i++)
        assert_int_equal(eds_agent_send(f->a, rec, sizeof(rec), &err), EDS_OK);
    /* 8 MB for a gateway that does not read: the socket and the output buffer fill
     * (each round adds at most one output buffer, 12 KiB) */
    for (int i = 0; i < 3000; i++)
        assert_int_equal(eds_agent_poll(f->a, 0), EDS_OK);
    for (int id = 1; id <= NCMD; id++)
        gw_sendf(f, "{\"type\":\"cmd\",\"id\":%d,\"data\":{}}\n", id);
    char buf[64];
    int64_t id = 0;
    int taken = 0;
    uint64_t end = mono_ms() + DEADLINE_MS;
    while (taken < NCMD && mono_ms() < end) {
        assert_int_equal(eds_agent_poll(f->a, 5), EDS_OK);
        while (eds_agent_next_cmd(f->a, buf, sizeof(buf), &id) > 0)
            assert_int_equal(id, ++taken);
    }
    assert_int_equal(taken, NCMD);
    int big = 1 << 20;
    assert_int_equal(setsockopt(f->gw.cfd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big)), 0);
    /* the gateway catches up: every command's ack arrives, in order */
    static char line[8192];
    int acks = 0, data = 0;
    while (acks < NCMD) {
        if (gw_line_within(f, line, sizeof(line), DEADLINE_MS) != 0)
            fail_msg("%d of %d command acks arrived (%d data lines)", acks, NCMD, data);
        if (strncmp(line, "{\"type\":\"ack\",", 14) == 0) {
            char want[64];
            snprintf(want, sizeof(want), "{\"type\":\"ack\",\"id\":%d}", acks + 1);
            assert_string_equal(line, want);
            acks++;
        } else {
            data++;
        }
    }
}

/* A cmd_results session: hello read, welcome offering command results sent. */
static void gw_results_session(fixture *f)
{
    char line[1024];
    gw_accept(f);
    gw_line(f, line, sizeof(line)); /* hello */
    gw_send(f, "{\"type\":\"welcome\",\"proto\":1,\"last_seq\":0,\"cmd_results\":true}\n");
    RUN_UNTIL(f, eds_agent_connected(f->a));
}

/* Contract items 1 and 4 (protocol.md): a cmd line longer than the agent's max_line is
 * skipped to its LF and nacked "dropped", commands past the agent's bound are nacked
 * "dropped", and the connection stays: records are still sent and acked. */
static void test_cmd_too_long_and_queue_full_keep_the_connection(void **state)
{
    fixture *f = *state;
    f->cfg.max_line = 1024;
    create_agent(f);
    gw_results_session(f);
    char *big = malloc(4096);
    int k = snprintf(big, 4096, "{\"type\":\"cmd\",\"id\":5,\"uid\":50,\"data\":\"");
    memset(big + k, 'x', 3000);
    strcpy(big + k + 3000, "\"}\n");
    gw_send(f, big);
    free(big);
    char line[1024];
    gw_line(f, line, sizeof(line));
    assert_string_equal(line, "{\"type\":\"nack\",\"id\":5,\"status\":\"dropped\",\"reason\":"
                              "\"cmd line longer than the agent's max_line (1024 bytes)\","
                              "\"errors\":{\"cmd\":[\"cmd line longer than the agent's max_line "
                              "(1024 bytes)\"]}}");
    for (int i = 0; i < AGENT_CMDS_MAX + 3; i++)
        gw_sendf(f, "{\"type\":\"cmd\",\"id\":%d,\"uid\":%d,\"data\":%d}\n", 100 + i, 1000 + i, i);
    for (int i = AGENT_CMDS_MAX; i < AGENT_CMDS_MAX + 3; i++) {
        char want[256];
        snprintf(want, sizeof(want),
                 "{\"type\":\"nack\",\"id\":%d,\"status\":\"dropped\",\"reason\":\"agent "
                 "queue full\",\"errors\":{\"cmd\":[\"agent queue full\"]}}",
                 100 + i);
        gw_line(f, line, sizeof(line));
        assert_string_equal(line, want);
    }
    /* the same uid again (its nack was lost): the same answer, nothing queued */
    gw_sendf(f, "{\"type\":\"cmd\",\"id\":900,\"uid\":%d,\"data\":0}\n", 1000 + AGENT_CMDS_MAX);
    gw_line(f, line, sizeof(line));
    assert_non_null(strstr(line, "\"id\":900,\"status\":\"dropped\""));
    send_record(f, 1);
    int sample = 0;
    uint64_t seq = gw_data(f, &sample);
    gw_sendf(f, "{\"type\":\"ack\",\"seq\":%llu}\n", (unsigned long long)seq);
    RUN_UNTIL(f, eds_agent_pending(f->a) == 0);
    assert_true(eds_agent_connected(f->a));
    eds_agent_stats st;
    eds_agent_get_stats(f->a, &st);
    assert_int_equal(st.connects, 1);
    assert_int_equal(st.cmds_refused, 4);
    char buf[64];
    int64_t id;
    assert_int_equal(eds_agent_next_cmd(f->a, buf, sizeof(buf), &id), 1);
    assert_string_equal(buf, "0");
    assert_int_equal(id, 100);
}

/* Contract item 2: a command with a ttl is never handed over past it; it is nacked
 * "expired" (without anyone asking), and a resend of it gets the same nack. */
static void test_cmd_ttl_expires_unconsumed(void **state)
{
    fixture *f = *state;
    create_agent(f);
    gw_results_session(f);
    gw_send(f, "{\"type\":\"cmd\",\"id\":1,\"uid\":11,\"ttl\":1,\"data\":{\"p\":1}}\n");
    char line[1024];
    static const char expired[] =
        "\"status\":\"expired\",\"reason\":\"expired on the agent before the application took "
        "it\",\"errors\":{\"cmd\":[\"expired on the agent before the application took it\"]}}";
    assert_int_equal(gw_line_within(f, line, sizeof(line), 5000), 0);
    assert_string_equal(line + strlen("{\"type\":\"nack\",\"id\":1,"), expired);
    char buf[64];
    int64_t id;
    assert_int_equal(eds_agent_next_cmd(f->a, buf, sizeof(buf), &id), 0);
    gw_send(f, "{\"type\":\"cmd\",\"id\":2,\"uid\":11,\"ttl\":1,\"data\":{\"p\":1}}\n");
    gw_line(f, line, sizeof(line));
    assert_string_equal(line + strlen("{\"type\":\"nack\",\"id\":2,"), expired);
    assert_int_equal(eds_agent_next_cmd(f->a, buf, sizeof(buf), &id), 0);
}

static void test_ping_and_dead_connection(void **state)
{
    fixture *f = *state;
    f->cfg.ping_interval = 0.1;
    f->cfg.ping_timeout = 0.2;
    create_agent(f);
    gw_session(f, 0);
    char line[256];
    gw_line(f, line, sizeof(line));
    assert_string_equal(line, "{\"type\":\"ping\"}");
    gw_send(f, "{\"type\":\"pong\"}\n");
    /* answered: the next thing is another ping, not a disconnect */
    gw_line(f, line, sizeof(line));
    assert_string_equal(line, "{\"type\":\"ping\"}");
    /* unanswered: the agent gives the connection up and connects again */
    assert_int_equal(gw_line_within(f, line, sizeof(line), DEADLINE_MS), -1);
    gw_drop(&f->gw);
    gw_session(f, 0);
    RUN_UNTIL(f, eds_agent_connected(f->a));
}

static void test_auth_failed_backs_off_long(void **state)
{
    fixture *f = *state;
    create_agent(f);
    gw_accept(f);
    char line[256];
    gw_line(f, line, sizeof(line));
    gw_send(f, "{\"type\":\"error\",\"code\":\"auth_failed\",\"message\":\"bad password\"}\n");
    gw_drop(&f->gw);
    RUN_UNTIL(f, !eds_agent_connected(f->a));
    /* a normal reconnect would come within reconnect_max (0.1 s); this one must not */
    uint64_t end = mono_ms() + 1000;
    while (mono_ms() < end) {
        assert_int_equal(eds_agent_poll(f->a, 10), EDS_OK);
        int fd = accept4(f->gw.lfd, NULL, NULL, SOCK_NONBLOCK);
        if (fd >= 0)
            fail_msg("reconnected right after auth_failed");
    }
}

static void test_replaced_reconnects_after_the_longest_delay(void **state)
{
    fixture *f = *state;
    f->cfg.reconnect_min = 0.01;
    f->cfg.reconnect_max = 0.3;
    create_agent(f);
    gw_session(f, 0);
    RUN_UNTIL(f, eds_agent_connected(f->a));
    gw_send(f, "{\"type\":\"error\",\"code\":\"replaced\",\"message\":\"new connection\"}\n");
    gw_drop(&f->gw);
    RUN_UNTIL(f, !eds_agent_connected(f->a));
    /* not the 10 ms of a first retry, but reconnect_max (with jitter: >= half of it) */
    uint64_t t0 = mono_ms();
    gw_accept(f);
    uint64_t waited = mono_ms() - t0;
    assert_true(waited >= 140);
    assert_true(waited < 2000);
}

static void test_records_validated_before_queueing(void **state)
{
    fixture *f = *state;
    create_agent(f);
    eds_error err;
    const char *bad_schema = "{\"timestamp\":\"2026-11-24T10:00:00Z\",\"day-ahead-price\":-3,"
                             "\"power_factor\":1.2}";
    assert_int_equal(eds_agent_send(f->a, bad_schema, strlen(bad_schema), &err), EDS_ERR_INVALID);
    assert_non_null(strstr(err.msg, "\"power_factor\":[\"must be between 0.0 and 1.0\"]"));
    assert_non_null(strstr(err.msg, "\"day-ahead-price\":[\"min value is 0.0\"]"));
    const char *bad[] = {"{",
                         "[1,2]",
                         "{\"a\":1,\"a\":2}",
                         "{\"x\":1e999}",
                         "\"str\"",
                         "{\"a\":1},\"x\":{",
                         "{\"a\":1} {\"b\":2}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(eds_agent_send(f->a, bad[i], strlen(bad[i]), &err), EDS_ERR_PARSE);
    /* pretty-printed JSON is fine and is sent compact, on one line */
    const char *pretty = "{\n  \"timestamp\": \"2026-11-24T10:00:00Z\",\n  \"sample\": 9\n}";
    assert_int_equal(eds_agent_send(f->a, pretty, strlen(pretty), &err), EDS_OK);
    eds_agent_stats st;
    eds_agent_get_stats(f->a, &st);
    assert_int_equal(st.invalid, 8);
    assert_int_equal(st.accepted, 1);
    gw_session(f, 0);
    char line[512];
    gw_line(f, line, sizeof(line));
    assert_string_equal(line, "{\"type\":\"data\",\"seq\":1,\"data\":{\"timestamp\":\"2026-11-"
                              "24T10:00:00Z\",\"sample\":9}}");
}

static void test_full_block_and_drop_oldest(void **state)
{
    fixture *f = *state;
    f->cfg.queue_max = 3;
    f->cfg.window = 3;
    create_agent(f);
    for (int i = 1; i <= 3; i++)
        send_record(f, i);
    eds_error err;
    const char *rec = "{\"timestamp\":\"2026-11-24T10:00:00Z\",\"sample\":4}";
    assert_int_equal(eds_agent_send(f->a, rec, strlen(rec), &err), EDS_ERR_FULL);
    assert_int_equal(eds_agent_pending(f->a), 3);
    eds_agent_destroy(f->a);
    f->a = NULL;

    f->cfg.full_policy = EDS_AGENT_FULL_DROP_OLDEST;
    create_agent(f);
    for (int i = 1; i <= 5; i++)
        send_record(f, i);
    assert_int_equal(eds_agent_pending(f->a), 3);
    eds_agent_stats st;
    eds_agent_get_stats(f->a, &st);
    assert_int_equal(st.dropped, 2);
    gw_session(f, 0);
    int sample;
    for (int want = 3; want <= 5; want++) {
        gw_data(f, &sample);
        assert_int_equal(sample, want);
    }
}

/* A spool whose disk is full follows full_policy like a spool at spool_max: block keeps
 * every record and refuses the new one (EDS_ERR_FULL, not an I/O error); drop-oldest
 * drops the oldest segment and takes it. RLIMIT_FSIZE stands in for the full disk. */
static void test_full_disk_follows_full_policy(void **state)
{
    fixture *f = *state;
    static char spool[128]; /* outlives the loop: the fixture keeps the pointer */
    snprintf(spool, sizeof(spool), "%s/spool", f->dir);
    f->cfg.spool = spool;
    for (int policy = 0; policy < 2; policy++) {
        f->cfg.full_policy = policy ? EDS_AGENT_FULL_DROP_OLDEST : EDS_AGENT_FULL_BLOCK;
        create_agent(f);
        uint64_t before = eds_agent_pending(f->a);
        for (int i = 1; i <= 5; i++) /* about 110 bytes each on disk */
            send_record(f, i);
        struct rlimit saved, lim;
        struct sigaction ign = {.sa_handler = SIG_IGN}, old_act;
        assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved), 0);
        lim = saved;
        lim.rlim_cur = 300; /* the open segment is past it; a new one has room */
        assert_int_equal(sigaction(SIGXFSZ, &ign, &old_act), 0);
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
        const char *rec = "{\"timestamp\":\"2026-11-24T10:00:06Z\",\"sample\":6}";
        eds_error err;
        int rc = eds_agent_send(f->a, rec, strlen(rec), &err);
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &saved), 0);
        assert_int_equal(sigaction(SIGXFSZ, &old_act, NULL), 0);
        eds_agent_stats st;
        eds_agent_get_stats(f->a, &st);
        if (policy == 0) {
            assert_int_equal(rc, EDS_ERR_FULL);
            assert_int_equal(eds_agent_pending(f->a), before + 5);
            assert_int_equal(st.dropped, 0);
        } else {
            assert_int_equal(rc, EDS_OK);
            assert_int_equal(st.dropped, before + 5);
            assert_int_equal(eds_agent_pending(f->a), 1);
        }
        eds_agent_destroy(f->a);
        f->a = NULL;
    }
}

static void test_restart_on_spool(void **state)
{
    fixture *f = *state;
    char spool[128];
    snprintf(spool, sizeof(spool), "%s/spool", f->dir);
    f->cfg.spool = spool;
    create_agent(f);
    char stream[80];
    snprintf(stream, sizeof(stream), "%s", eds_agent_stream(f->a));
    for (int i = 1; i <= 5; i++)
        send_record(f, i);
    gw_session(f, 0);
    assert_int_equal(gw_data(f, NULL), 1);
    gw_send(f, "{\"type\":\"ack\",\"seq\":1}\n");
    RUN_UNTIL(f, eds_agent_pending(f->a) == 4);
    eds_agent_destroy(f->a); /* power cut with 2..5 unacked */
    f->a = NULL;
    gw_drop(&f->gw);

    create_agent(f);
    assert_string_equal(eds_agent_stream(f->a), stream);
    assert_int_equal(eds_agent_pending(f->a), 4);
    send_record(f, 6); /* takes seq 6: the counter survived */
    gw_session(f, 2);
    int sample;
    for (int want = 3; want <= 6; want++) {
        assert_int_equal(gw_data(f, &sample), (uint64_t)want);
        assert_int_equal(sample, want);
        gw_sendf(f, "{\"type\":\"ack\",\"seq\":%d}\n", want);
    }
    RUN_UNTIL(f, eds_agent_pending(f->a) == 0);
}

static void test_config_checks(void **state)
{
    fixture *f = *state;
    eds_agent *a = NULL;
    eds_error err;
    f->cfg.device = "bad/device";
    assert_int_equal(eds_agent_create(&f->cfg, &a, &err), EDS_ERR_CONFIG);
    assert_null(a);
    f->cfg.device = "myrio-01";
    f->cfg.password_file = "/nonexistent/pw";
    assert_int_equal(eds_agent_create(&f->cfg, &a, &err), EDS_ERR_IO);
    assert_non_null(strstr(err.msg, "/nonexistent/pw"));

    eds_agent_config c;
    eds_agent_config_init(&c);
    assert_int_equal(eds_agent_config_set(&c, "--gateway", "10.0.0.5:6000", NULL, &err), EDS_OK);
    assert_string_equal(c.gateway_host, "10.0.0.5");
    assert_int_equal(c.gateway_port, 6000);
    assert_int_equal(eds_agent_config_set(&c, "gateway", "[::1]:7000", NULL, &err), EDS_OK);
    assert_string_equal(c.gateway_host, "::1");
    assert_int_equal(c.gateway_port, 7000);
    assert_int_equal(eds_agent_config_set(&c, "--full-policy", "drop-oldest", NULL, &err), EDS_OK);
    assert_int_equal(c.full_policy, EDS_AGENT_FULL_DROP_OLDEST);
    assert_int_equal(eds_agent_config_set(&c, "--spool-max", "2m", NULL, &err), EDS_OK);
    assert_int_equal(c.spool_max, 2 * 1024 * 1024);
    assert_int_equal(eds_agent_config_set(&c, "--gateway", "host:99999", NULL, &err),
                     EDS_ERR_CONFIG);
    assert_int_equal(eds_agent_config_set(&c, "--spool-sync", "sometimes", NULL, &err),
                     EDS_ERR_CONFIG);
    assert_true(eds_agent_config_is_flag("--cmd-stdout"));
    assert_false(eds_agent_config_is_flag("--udp"));
    assert_false(eds_agent_config_known("--password"));
    eds_agent_config_free(&c);
}

/* One round of a caller's own poll loop: the agent's fds plus one of ours. */
static short external_round(fixture *f, int own_fd)
{
    struct pollfd fds[EDS_AGENT_MAX_FDS + 1];
    int wait = 50;
    int n = eds_agent_pollfds(f->a, fds, EDS_AGENT_MAX_FDS, &wait);
    assert_true(n >= 0);
    assert_true(wait >= 0 && wait <= 50);
    fds[n].fd = own_fd;
    fds[n].events = POLLIN;
    fds[n].revents = 0;
    assert_true(poll(fds, (nfds_t)n + 1, wait) >= 0);
    assert_int_equal(eds_agent_dispatch(f->a, fds, (size_t)n), EDS_OK);
    return fds[n].revents;
}

static void test_caller_owned_poll_loop(void **state)
{
    fixture *f = *state;
    create_agent(f);
    send_record(f, 1);
    uint64_t end = mono_ms() + DEADLINE_MS;
    /* the agent connects while only the caller's loop runs */
    while (!(external_round(f, f->gw.lfd) & POLLIN))
        assert_true(mono_ms() < end);
    f->gw.cfd = accept4(f->gw.lfd, NULL, NULL, SOCK_NONBLOCK);
    assert_true(f->gw.cfd >= 0);
    char buf[4096];
    size_t len = 0;
    int lines = 0;
    while (lines < 1) { /* hello */
        if (external_round(f, f->gw.cfd) & POLLIN) {
            ssize_t r = recv(f->gw.cfd, buf + len, sizeof(buf) - len, 0);
            assert_true(r > 0);
            len += (size_t)r;
            lines = memchr(buf, '\n', len) != NULL;
        }
        assert_true(mono_ms() < end);
    }
    assert_non_null(strstr(buf, "\"type\":\"hello\""));
    gw_send(f, "{\"type\":\"welcome\",\"proto\":1,\"last_seq\":0}\n");
    len = 0;
    while (!memmem(buf, len, "\"seq\":1", 7)) {
        if (external_round(f, f->gw.cfd) & POLLIN) {
            ssize_t r = recv(f->gw.cfd, buf + len, sizeof(buf) - len, 0);
            assert_true(r > 0);
            len += (size_t)r;
        }
        assert_true(mono_ms() < end);
    }
    gw_send(f, "{\"type\":\"ack\",\"seq\":1}\n");
    while (eds_agent_pending(f->a) != 0) {
        external_round(f, f->gw.cfd);
        assert_true(mono_ms() < end);
    }
    /* handing back a different set is refused */
    struct pollfd fds[EDS_AGENT_MAX_FDS];
    int wait = 0;
    int n = eds_agent_pollfds(f->a, fds, EDS_AGENT_MAX_FDS, &wait);
    assert_int_equal(eds_agent_dispatch(f->a, fds, (size_t)n + 1), EDS_ERR_INVAL);
}

/* The shipped examples must load: they are what operators copy. */
static void test_example_configs_load(void **state)
{
    const char *files[] = {EDS_SOURCE_DIR "/myrio-agent/eds-agent.conf.example",
                           EDS_SOURCE_DIR "/deploy/eds-agent.conf"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        if (i > 0 && access(files[i], R_OK) != 0)
            continue; /* deploy/ is optional for this test */
        eds_agent_config c;
        eds_agent_config_init(&c);
        eds_error err;
        eds_error_clear(&err);
        if (eds_agent_config_load(&c, files[i], &err) != EDS_OK)
            fail_msg("%s", err.msg);
        assert_string_equal(c.device, "myrio-01");
        assert_string_equal(c.gateway_host, "192.168.1.10");
        assert_int_equal(c.gateway_port, 5883);
        assert_string_equal(c.spool, "/var/lib/eds-agent");
        assert_int_equal(c.spool_max, 64 * 1024 * 1024);
        assert_int_equal(c.tcp_port, 6000);
        assert_int_equal(c.udp_port, 6001);
        assert_int_equal(c.cmd_udp, 6002);
        eds_agent_config_free(&c);
    }
    eds_agent_config c;
    eds_agent_config_init(&c);
    eds_error err;
    assert_int_equal(eds_agent_config_set(&c, "log_level", "info", NULL, &err), EDS_OK);
    assert_int_equal(c.log_level, EDS_LOG_INFO);
    assert_int_equal(eds_agent_config_set(&c, "--log-level", "loud", NULL, &err), EDS_ERR_CONFIG);
    eds_agent_config_free(&c);
}

int main(void)
{
    eds_log_init("test_agent_engine", EDS_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_hello_carries_device_password_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_window_order_and_acks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_welcome_last_seq_drops_handled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_welcome_beyond_own_seq_keeps_memory_records, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_fixed_stream_rerun_keeps_unsent_records, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_nack_drops_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reconnect_resends_unacked_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cmd_handed_over_then_acked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cmd_refused_and_resent_uid_taken_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cmd_acks_not_lost_while_output_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cmd_too_long_and_queue_full_keep_the_connection, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cmd_ttl_expires_unconsumed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ping_and_dead_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_failed_backs_off_long, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replaced_reconnects_after_the_longest_delay, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_records_validated_before_queueing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_block_and_drop_oldest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_on_spool, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_checks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_disk_follows_full_policy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_caller_owned_poll_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cmd_ttl_zero_expired_bad_ttl_refused, setup, teardown),
        cmocka_unit_test(test_example_configs_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
