/* Unit tests for the static agent's name lookup helpers (agent_resolve.h):
 * numeric addresses, and the hosts file as the myRIO's /etc/hosts is
 * written (comments, aliases, tabs, IPv6, case), with its bounds: cap, an
 * over-long line, a missing or unreadable file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent_resolve.h"

static char path[64];

static void write_hosts_n(const char *text, size_t len)
{
    snprintf(path, sizeof(path), "/tmp/eds-hosts-test-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
}

static void write_hosts(const char *text)
{
    write_hosts_n(text, strlen(text));
}

static int teardown(void **state)
{
    if (path[0])
        unlink(path);
    path[0] = '\0';
    return 0;
}

/* "a.b.c.d:port" or "[v6]:port" of an address, for readable asserts. */
static const char *show(const agent_addr *a)
{
    static char buf[80];
    char host[INET6_ADDRSTRLEN];
    if (a->sa.ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)&a->sa;
        assert_int_equal(a->len, sizeof(*v4));
        inet_ntop(AF_INET, &v4->sin_addr, host, sizeof(host));
        snprintf(buf, sizeof(buf), "%s:%u", host, ntohs(v4->sin_port));
    } else {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)&a->sa;
        assert_int_equal(a->sa.ss_family, AF_INET6);
        assert_int_equal(a->len, sizeof(*v6));
        inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof(host));
        snprintf(buf, sizeof(buf), "[%s]:%u", host, ntohs(v6->sin6_port));
    }
    return buf;
}

static void test_numeric(void **state)
{
    agent_addr a;
    assert_true(agent_addr_numeric("192.168.1.10", 5884, &a));
    assert_string_equal(show(&a), "192.168.1.10:5884");
    assert_true(agent_addr_numeric("::1", 5883, &a));
    assert_string_equal(show(&a), "[::1]:5883");
    assert_false(agent_addr_numeric("eds-pi.local", 5883, &a));
    assert_false(agent_addr_numeric("192.168.1", 5883, &a));
    assert_false(agent_addr_numeric("[::1]", 5883, &a));
    assert_false(agent_addr_numeric("", 5883, &a));
}

static void test_hosts_names_aliases_comments(void **state)
{
    write_hosts("# static table\n"
                "127.0.0.1\tlocalhost\n"
                "192.168.1.10  eds-pi eds-pi.local   # the gateway\n"
                "#192.168.1.11 eds-pi\n"
                "fd00::10\tEDS-PI.local\n"
                "   \n"
                "bogus-address eds-pi\n"
                "10.0.0.1 other\n");
    agent_addr out[AGENT_MAX_ADDRS];
    size_t n = 99;
    eds_error err;
    assert_int_equal(agent_hosts_lookup(path, "eds-pi.local", 5884, out, AGENT_MAX_ADDRS, &n, &err),
                     EDS_OK);
    assert_int_equal(n, 2);
    assert_string_equal(show(&out[0]), "192.168.1.10:5884");
    assert_string_equal(show(&out[1]), "[fd00::10]:5884");

    /* A name in a comment, or only as a prefix of another, is not a match. */
    assert_int_equal(agent_hosts_lookup(path, "eds", 1, out, AGENT_MAX_ADDRS, &n, &err), EDS_OK);
    assert_int_equal(n, 0);
    assert_int_equal(agent_hosts_lookup(path, "the", 1, out, AGENT_MAX_ADDRS, &n, &err), EDS_OK);
    assert_int_equal(n, 0);
    /* The line with an unparsable address is skipped, the good one kept. */
    assert_int_equal(agent_hosts_lookup(path, "eds-pi", 7, out, AGENT_MAX_ADDRS, &n, &err), EDS_OK);
    assert_int_equal(n, 1);
    assert_string_equal(show(&out[0]), "192.168.1.10:7");
}

static void test_hosts_cap_and_long_lines(void **state)
{
    /* A 3000-byte line naming the host (skipped whole, not read as three lines), then
     * four short ones: at most cap of them come back. */
    size_t len = 4000;
    char *text = malloc(len);
    assert_non_null(text);
    size_t off = (size_t)snprintf(text, len, "10.9.9.9 gw ");
    memset(text + off, 'x', 3000);
    off += 3000;
    off += (size_t)snprintf(text + off, len - off,
                            " 10.9.9.8 gw\n10.0.0.1 gw\n10.0.0.2 gw\n10.0.0.3 gw\n10.0.0.4 gw\n");
    write_hosts(text);
    free(text);
    agent_addr out[3];
    size_t n = 0;
    eds_error err;
    assert_int_equal(agent_hosts_lookup(path, "gw", 1, out, 3, &n, &err), EDS_OK);
    assert_int_equal(n, 3);
    assert_string_equal(show(&out[0]), "10.0.0.1:1");
    assert_string_equal(show(&out[2]), "10.0.0.3:1");
}

static void test_hosts_nul_byte_and_last_line(void **state)
{
    /* A NUL byte cuts its own line short but must not hide the next one; the last
     * line counts without a newline. */
    static const char text[] = "10.0.0.9 junk\0 gw\n10.0.0.1 gw\n10.0.0.2 gw";
    write_hosts_n(text, sizeof(text) - 1);
    agent_addr out[AGENT_MAX_ADDRS];
    size_t n = 0;
    eds_error err;
    assert_int_equal(agent_hosts_lookup(path, "gw", 1, out, AGENT_MAX_ADDRS, &n, &err), EDS_OK);
    assert_int_equal(n, 2);
    assert_string_equal(show(&out[0]), "10.0.0.1:1");
    assert_string_equal(show(&out[1]), "10.0.0.2:1");
}

static void test_hosts_missing_or_unreadable(void **state)
{
    agent_addr out[2];
    size_t n = 5;
    eds_error err;
    assert_int_equal(agent_hosts_lookup("/nonexistent/hosts", "gw", 1, out, 2, &n, &err), EDS_OK);
    assert_int_equal(n, 0);
    /* A folder cannot be read as a file: an error naming it, not a silent miss. */
    eds_error_clear(&err);
    int rc = agent_hosts_lookup("/", "gw", 1, out, 2, &n, &err);
    assert_int_equal(rc, EDS_ERR_IO);
    assert_int_equal(n, 0);
    assert_non_null(strstr(err.msg, "/"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_numeric),
        cmocka_unit_test_teardown(test_hosts_names_aliases_comments, teardown),
        cmocka_unit_test_teardown(test_hosts_cap_and_long_lines, teardown),
        cmocka_unit_test_teardown(test_hosts_nul_byte_and_last_line, teardown),
        cmocka_unit_test(test_hosts_missing_or_unreadable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
