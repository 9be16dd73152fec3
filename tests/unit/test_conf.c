/* Unit tests for eds_conf: every value type, range and syntax errors with
 * file:line, custom repeated options, file syntax (comments, blanks, CRLF,
 * no final newline, long lines, NUL bytes), command-line flags and --help. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "eds_conf.h"
#include "eds_err.h"

#define MAX_LISTENERS 4

typedef struct listener {
    long port;
    char addr[64];
} listener;

typedef struct test_cfg {
    char *name;
    char *path;
    bool verbose;
    int max_clients;
    int offset; /* unbounded int */
    size_t max_line;
    size_t buffer; /* unbounded size */
    double timeout;
    double ratio; /* unbounded double */
    listener listeners[MAX_LISTENERS];
    size_t n_listeners;
} test_cfg;

/* `listener PORT [ADDRESS]`, repeatable: the shape the gateway needs. */
static int parse_listener(void *target, const char *value, eds_error *err)
{
    test_cfg *c = target;
    if (c->n_listeners == MAX_LISTENERS)
        return eds_error_set(err, EDS_ERR_CONFIG, "at most %d listeners", MAX_LISTENERS);
    char *end = NULL;
    errno = 0;
    long port = strtol(value, &end, 10);
    if (end == value || (*end != '\0' && *end != ' ' && *end != '\t') || errno == ERANGE ||
        port < 1 || port > 65535)
        return eds_error_set(err, EDS_ERR_CONFIG, "port must be 1..65535");
    listener *l = &c->listeners[c->n_listeners];
    l->port = port;
    end += strspn(end, " \t");
    snprintf(l->addr, sizeof(l->addr), "%s", *end ? end : "any");
    c->n_listeners++;
    return EDS_OK;
}

static const eds_conf_opt opts[] = {
    {"name", EDS_CONF_STRING, offsetof(test_cfg, name), 0, 0, NULL, NULL, "Name of this node."},
    {"path", EDS_CONF_STRING, offsetof(test_cfg, path), 0, 0, NULL, "FILE", "A file."},
    {"verbose", EDS_CONF_BOOL, offsetof(test_cfg, verbose), 0, 0, NULL, NULL, "Say more."},
    {"max_clients", EDS_CONF_INT, offsetof(test_cfg, max_clients), 1, 1000000, NULL, NULL,
     "Most agents at once."},
    {"offset", EDS_CONF_INT, offsetof(test_cfg, offset), 0, 0, NULL, NULL, "Any int."},
    {"max_line", EDS_CONF_SIZE, offsetof(test_cfg, max_line), 2, 1048576, NULL, NULL,
     "Longest record line."},
    {"buffer", EDS_CONF_SIZE, offsetof(test_cfg, buffer), 0, 0, NULL, NULL, "Any size."},
    {"timeout", EDS_CONF_DOUBLE, offsetof(test_cfg, timeout), 0, 3600, NULL, "SECONDS",
     "Idle timeout."},
    {"ratio", EDS_CONF_DOUBLE, offsetof(test_cfg, ratio), 0, 0, NULL, NULL, "Any number."},
    {"listener", EDS_CONF_CUSTOM, 0, 0, 0, parse_listener, "PORT [ADDRESS]",
     "Accept agents on PORT."},
    {NULL, 0, 0, 0, 0, NULL, NULL, NULL},
};

static const test_cfg defaults = {.max_clients = 64, .max_line = 65536, .timeout = 30.0};

static char dir[64];

static int setup(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/eds-test-conf-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Writes len bytes of content to dir/name; returns the path (static buffer). */
static const char *write_file_n(const char *name, const char *content, size_t len)
{
    static char path[128];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(content, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    return path;
}

static const char *write_file(const char *name, const char *content)
{
    return write_file_n(name, content, strlen(content));
}

static void test_every_type_and_syntax(void **state)
{
    const char *path = write_file("all.conf", "# a comment line\n"
                                              "\n"
                                              "   \t\n"
                                              "  # an indented comment\n"
                                              "name   gateway # one\r\n"
                                              "path\t/var/lib/eds/a b.json  \t\r\n"
                                              "verbose true\n"
                                              "max_clients 50\r\n"
                                              "offset -12\n"
                                              "max_line 64k\n"
                                              "buffer 3M\n"
                                              "timeout 2.5\n"
                                              "ratio -1e3\n"
                                              "listener 1883\n"
                                              "listener 8883 127.0.0.1\n"
                                              "name final");
    test_cfg c = defaults;
    eds_error err;
    eds_error_clear(&err);
    assert_int_equal(eds_conf_load_file(path, opts, &c, &err), EDS_OK);
    assert_string_equal(err.msg, "");
    assert_string_equal(c.name, "final"); /* last one wins, last line had no newline */
    assert_string_equal(c.path, "/var/lib/eds/a b.json");
    assert_true(c.verbose);
    assert_int_equal(c.max_clients, 50);
    assert_int_equal(c.offset, -12);
    assert_int_equal(c.max_line, 64 * 1024);
    assert_int_equal(c.buffer, 3 * 1024 * 1024);
    assert_true(c.timeout == 2.5);
    assert_true(c.ratio == -1000.0);
    assert_int_equal(c.n_listeners, 2);
    assert_int_equal(c.listeners[0].port, 1883);
    assert_string_equal(c.listeners[0].addr, "any");
    assert_int_equal(c.listeners[1].port, 8883);
    assert_string_equal(c.listeners[1].addr, "127.0.0.1");
    eds_conf_free_strings(opts, &c);
    assert_null(c.name);
    assert_null(c.path);
    eds_conf_free_strings(opts, &c); /* twice is fine */
}

static void test_hash_inside_value_is_kept(void **state)
{
    const char *path = write_file("hash.conf", "name a#b # not a comment\n");
    test_cfg c = defaults;
    eds_error err;
    assert_int_equal(eds_conf_load_file(path, opts, &c, &err), EDS_OK);
    assert_string_equal(c.name, "a#b # not a comment");
    eds_conf_free_strings(opts, &c);
}

static void test_empty_file_keeps_defaults(void **state)
{
    const char *path = write_file("empty.conf", "");
    test_cfg c = defaults;
    eds_error err;
    assert_int_equal(eds_conf_load_file(path, opts, &c, &err), EDS_OK);
    assert_int_equal(c.max_clients, 64);
    assert_int_equal(c.max_line, 65536);
    assert_null(c.name);
}

/* Loads content and expects EDS_ERR_CONFIG with exactly "<path>:<msg>". */
static void expect_file_error(const char *content, const char *msg)
{
    const char *path = write_file("bad.conf", content);
    char expected[700];
    snprintf(expected, sizeof(expected), "%s:%s", path, msg);
    test_cfg c = defaults;
    eds_error err;
    eds_error_clear(&err);
    assert_int_equal(eds_conf_load_file(path, opts, &c, &err), EDS_ERR_CONFIG);
    assert_int_equal(err.code, EDS_ERR_CONFIG);
    assert_string_equal(err.msg, expected);
    eds_conf_free_strings(opts, &c);
}

static void test_range_error_names_file_and_line(void **state)
{
    expect_file_error("# gateway\n\nname x\r\n\n\nverbose false\nmax_clients -3\nname y\n",
                      "7: max_clients: '-3' is out of range 1..1000000");
    expect_file_error("max_clients 1000001",
                      "1: max_clients: '1000001' is out of range 1..1000000");
    expect_file_error("\n\nmax_line 1", "3: max_line: '1' is out of range 2..1048576 bytes");
    expect_file_error("timeout 3600.5", "1: timeout: '3600.5' is out of range 0..3600");
}

static void test_unknown_option(void **state)
{
    expect_file_error("listener 1883\n\nlisener 8883\n",
                      "3: unknown option 'lisener' (did you mean 'listener'?)");
    expect_file_error("frobnicate 1\n", "1: unknown option 'frobnicate'");
    /* Names are exact in files: flag spelling is for the command line. */
    expect_file_error("max-clients 5\n",
                      "1: unknown option 'max-clients' (did you mean 'max_clients'?)");
}

static void test_syntax_errors(void **state)
{
    expect_file_error("verbose\n", "1: verbose: missing value");
    expect_file_error("name\t \r\n", "1: name: missing value");
    expect_file_error("\nlistener 70000 ::1\n", "2: listener: port must be 1..65535");
    expect_file_error("listener 1\nlistener 2\nlistener 3\nlistener 4\nlistener 5\n",
                      "5: listener: at most 4 listeners");
}

static void test_long_lines_and_nul(void **state)
{
    /* A line of exactly EDS_CONF_MAX_LINE bytes (CRLF not counted) is fine... */
    static char text[EDS_CONF_MAX_LINE + 64];
    size_t prefix = strlen("name ");
    memcpy(text, "name ", prefix);
    memset(text + prefix, 'v', EDS_CONF_MAX_LINE - prefix);
    memcpy(text + EDS_CONF_MAX_LINE, "\r\n", 3);
    const char *path = write_file("long.conf", text);
    test_cfg c = defaults;
    eds_error err;
    assert_int_equal(eds_conf_load_file(path, opts, &c, &err), EDS_OK);
    assert_int_equal(strlen(c.name), EDS_CONF_MAX_LINE - prefix);
    eds_conf_free_strings(opts, &c);

    /* ...one byte more is refused, naming the right line. */
    memcpy(text, "\nname ", prefix + 1);
    memset(text + prefix + 1, 'v', EDS_CONF_MAX_LINE + 1 - prefix);
    memcpy(text + EDS_CONF_MAX_LINE + 2, "\n", 2);
    assert_int_equal(strlen(text), EDS_CONF_MAX_LINE + 3);
    char msg[64];
    snprintf(msg, sizeof(msg), "2: line is longer than %d bytes", EDS_CONF_MAX_LINE);
    expect_file_error(text, msg);

    static const char with_nul[] = "verbose true\nname a\0b\n";
    path = write_file_n("nul.conf", with_nul, sizeof(with_nul) - 1);
    c = defaults;
    assert_int_equal(eds_conf_load_file(path, opts, &c, &err), EDS_ERR_CONFIG);
    char expected[200];
    snprintf(expected, sizeof(expected), "%s:2: line contains a NUL byte", path);
    assert_string_equal(err.msg, expected);
    eds_conf_free_strings(opts, &c);
}

static void test_file_size_limit(void **state)
{
    size_t len = EDS_CONF_MAX_FILE + 1;
    char *big = malloc(len);
    assert_non_null(big);
    memset(big, '\n', len);
    const char *path = write_file_n("big.conf", big, len);
    free(big);
    test_cfg c = defaults;
    eds_error err;
    assert_int_equal(eds_conf_load_file(path, opts, &c, &err), EDS_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "file is larger than"));
}

static void test_missing_file(void **state)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/does-not-exist.conf", dir);
    test_cfg c = defaults;
    eds_error err;
    assert_int_equal(eds_conf_load_file(path, opts, &c, &err), EDS_ERR_IO);
    char expected[200];
    snprintf(expected, sizeof(expected), "%s: No such file or directory", path);
    assert_string_equal(err.msg, expected);

    /* A directory or a FIFO is refused at once (a FIFO must not block). */
    assert_int_equal(eds_conf_load_file(dir, opts, &c, &err), EDS_ERR_CONFIG);
    snprintf(expected, sizeof(expected), "%s: not a regular file", dir);
    assert_string_equal(err.msg, expected);
    snprintf(path, sizeof(path), "%s/fifo.conf", dir);
    assert_int_equal(mkfifo(path, 0600), 0);
    assert_int_equal(eds_conf_load_file(path, opts, &c, &err), EDS_ERR_CONFIG);
    snprintf(expected, sizeof(expected), "%s: not a regular file", path);
    assert_string_equal(err.msg, expected);
}

static int count_line(void *ctx, unsigned line_no, char *line, size_t len, eds_error *err)
{
    size_t *n = ctx;
    assert_int_equal(strlen(line), len);
    (*n)++;
    return EDS_OK;
}

/* /proc files claim size 0: the reader must grow its buffer past fstat's size. */
static void test_file_of_unknown_size(void **state)
{
    const char *path = "/proc/self/limits";
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[512];
    size_t want = 0;
    while (fgets(line, sizeof(line), f))
        want++;
    fclose(f);
    assert_true(want > 5);
    size_t got = 0;
    eds_error err;
    assert_int_equal(eds_conf_each_line(path, 65536, 4096, count_line, &got, &err), EDS_OK);
    assert_int_equal(got, want);
    /* Over the size limit it is refused even though fstat said 0. */
    assert_int_equal(eds_conf_each_line(path, 100, 4096, count_line, &got, &err), EDS_ERR_CONFIG);
    assert_string_equal(err.msg, "/proc/self/limits: file is larger than 100 bytes");
}

/* eds_conf_set() with a bad value fails with "test: <msg>" and leaves the field. */
static void expect_set_error(const char *name, const char *value, const char *msg)
{
    test_cfg c = defaults;
    test_cfg before = c;
    eds_error err;
    eds_error_clear(&err);
    assert_int_equal(eds_conf_set(opts, &c, name, value, "test", &err), EDS_ERR_CONFIG);
    char expected[300];
    snprintf(expected, sizeof(expected), "test: %s", msg);
    assert_string_equal(err.msg, expected);
    assert_memory_equal(&c, &before, sizeof(c));
}

static void test_bad_values(void **state)
{
    static const struct {
        const char *name, *value, *msg;
    } cases[] = {
        {"verbose", "yes", "verbose: 'yes' is not true or false"},
        {"verbose", "TRUE", "verbose: 'TRUE' is not true or false"},
        {"max_clients", "abc", "max_clients: 'abc' is not an integer"},
        {"max_clients", "12x", "max_clients: '12x' is not an integer"},
        {"max_clients", " 12", "max_clients: ' 12' is not an integer"},
        {"max_clients", "1.5", "max_clients: '1.5' is not an integer"},
        {"max_clients", "0x10", "max_clients: '0x10' is not an integer"},
        {"max_clients", "", "max_clients: missing value"},
        {"offset", "99999999999999999999",
         "offset: '99999999999999999999' is out of range -2147483648..2147483647"},
        {"offset", "2147483648", "offset: '2147483648' is out of range -2147483648..2147483647"},
        {"max_line", "-1", "max_line: '-1' is not a size (bytes, optional suffix k, M or G)"},
        {"max_line", "10X", "max_line: '10X' is not a size (bytes, optional suffix k, M or G)"},
        {"max_line", "1kk", "max_line: '1kk' is not a size (bytes, optional suffix k, M or G)"},
        {"max_line", "2M", "max_line: '2M' is out of range 2..1048576 bytes"},
        {"timeout", "nan", "timeout: 'nan' is not a number"},
        {"timeout", "inf", "timeout: 'inf' is not a number"},
        {"timeout", "0x10", "timeout: '0x10' is not a number"},
        {"timeout", "5s", "timeout: '5s' is not a number"},
        {"timeout", "-0.5", "timeout: '-0.5' is out of range 0..3600"},
        {"ratio", "1e999", "ratio: '1e999' is out of range"},
        {"ratio", "1..2", "ratio: '1..2' is not a number"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_set_error(cases[i].name, cases[i].value, cases[i].msg);

    /* A size whose k/M/G multiplication overflows. */
    char huge[64];
    snprintf(huge, sizeof(huge), "%lluG", (unsigned long long)SIZE_MAX / 2);
    char msg[200];
    snprintf(msg, sizeof(msg), "buffer: '%s' is out of range 0..%llu bytes", huge,
             (unsigned long long)SIZE_MAX);
    expect_set_error("buffer", huge, msg);
}

static void test_good_edge_values(void **state)
{
    test_cfg c = defaults;
    eds_error err;
    assert_int_equal(eds_conf_set(opts, &c, "max_clients", "1", NULL, &err), EDS_OK);
    assert_int_equal(c.max_clients, 1);
    assert_int_equal(eds_conf_set(opts, &c, "max_clients", "+1000000", NULL, &err), EDS_OK);
    assert_int_equal(c.max_clients, 1000000);
    assert_int_equal(eds_conf_set(opts, &c, "offset", "-2147483648", NULL, &err), EDS_OK);
    assert_int_equal(c.offset, -2147483647 - 1);
    assert_int_equal(eds_conf_set(opts, &c, "max_line", "1M", NULL, &err), EDS_OK);
    assert_int_equal(c.max_line, 1048576);
    assert_int_equal(eds_conf_set(opts, &c, "max_line", "2", NULL, &err), EDS_OK);
    assert_int_equal(c.max_line, 2);
    assert_int_equal(eds_conf_set(opts, &c, "buffer", "0", NULL, &err), EDS_OK);
    assert_int_equal(c.buffer, 0);
    assert_int_equal(eds_conf_set(opts, &c, "buffer", "2g", NULL, &err), EDS_OK);
    assert_int_equal(c.buffer, 2ULL * 1024 * 1024 * 1024);
    assert_int_equal(eds_conf_set(opts, &c, "timeout", "3600", NULL, &err), EDS_OK);
    assert_true(c.timeout == 3600.0);
    assert_int_equal(eds_conf_set(opts, &c, "timeout", ".25", NULL, &err), EDS_OK);
    assert_true(c.timeout == 0.25);
    assert_int_equal(eds_conf_set(opts, &c, "verbose", "false", NULL, &err), EDS_OK);
    assert_false(c.verbose);
}

static void test_command_line(void **state)
{
    const char *path = write_file("cl.conf", "max_clients 10\nname from-file\n");
    test_cfg c = defaults;
    eds_error err;
    assert_int_equal(eds_conf_load_file(path, opts, &c, &err), EDS_OK);

    /* Command-line values are applied after the file and win. */
    assert_int_equal(eds_conf_set(opts, &c, "--max-clients", "50", NULL, &err), EDS_OK);
    assert_int_equal(c.max_clients, 50);
    assert_int_equal(eds_conf_set(opts, &c, "--name", "from-argv", NULL, &err), EDS_OK);
    assert_string_equal(c.name, "from-argv");
    assert_int_equal(eds_conf_set(opts, &c, "max-line", "4k", NULL, &err), EDS_OK);
    assert_int_equal(c.max_line, 4096);
    assert_int_equal(eds_conf_set(opts, &c, "--verbose", NULL, NULL, &err), EDS_OK);
    assert_true(c.verbose);
    assert_int_equal(eds_conf_set(opts, &c, "--listener", "1884 ::1", NULL, &err), EDS_OK);
    assert_int_equal(c.n_listeners, 1);
    assert_string_equal(c.listeners[0].addr, "::1");

    assert_int_equal(eds_conf_set(opts, &c, "--max-client", "5", NULL, &err), EDS_ERR_CONFIG);
    assert_string_equal(
        err.msg, "command line: unknown option '--max-client' (did you mean '--max-clients'?)");
    assert_int_equal(eds_conf_set(opts, &c, "--max-clients", "0", NULL, &err), EDS_ERR_CONFIG);
    assert_string_equal(err.msg, "command line: max_clients: '0' is out of range 1..1000000");
    assert_int_equal(eds_conf_set(opts, &c, "--max-clients", NULL, NULL, &err), EDS_ERR_CONFIG);
    assert_string_equal(err.msg, "command line: max_clients: missing value");
    assert_int_equal(c.max_clients, 50);

    assert_ptr_equal(eds_conf_find(opts, "--max-clients"), &opts[3]);
    assert_ptr_equal(eds_conf_find(opts, "max_clients"), &opts[3]);
    assert_int_equal(eds_conf_find(opts, "--verbose")->type, EDS_CONF_BOOL);
    assert_null(eds_conf_find(opts, "--nope"));
    eds_conf_free_strings(opts, &c);
}

static void test_argv(void **state)
{
    char *argv[] = {"eds-gateway",     "--max-clients", "50",         "--verbose",
                    "--name=a b",      "--max-line=1k", "--listener", "1885 ::1",
                    "--verbose=false", "--timeout",     "7",          "--ratio"};
    int argc = (int)(sizeof(argv) / sizeof(argv[0]));
    test_cfg c = defaults;
    eds_error err;
    eds_error_clear(&err);
    int i = 1;
    static const int stops[] = {3, 4, 5, 6, 8, 9, 11};
    for (size_t k = 0; k < sizeof(stops) / sizeof(stops[0]); k++) {
        assert_int_equal(eds_conf_set_arg(opts, &c, argc, argv, &i, &err), EDS_OK);
        assert_int_equal(i, stops[k]);
    }
    assert_int_equal(c.max_clients, 50);
    assert_false(c.verbose); /* set, then cleared by --verbose=false */
    assert_string_equal(c.name, "a b");
    assert_int_equal(c.max_line, 1024);
    assert_int_equal(c.n_listeners, 1);
    assert_int_equal(c.listeners[0].port, 1885);
    assert_true(c.timeout == 7.0);
    /* A BOOL takes the next argument only when it is "true" or "false". */
    char *bools[] = {"prog",  "--verbose", "true",      "--verbose",
                     "false", "--verbose", "--timeout", "3"};
    int j = 1;
    assert_int_equal(eds_conf_set_arg(opts, &c, 8, bools, &j, &err), EDS_OK);
    assert_int_equal(j, 3);
    assert_true(c.verbose);
    assert_int_equal(eds_conf_set_arg(opts, &c, 8, bools, &j, &err), EDS_OK);
    assert_int_equal(j, 5);
    assert_false(c.verbose);
    assert_int_equal(eds_conf_set_arg(opts, &c, 8, bools, &j, &err), EDS_OK);
    assert_int_equal(j, 6); /* "--timeout" is not a value of --verbose */
    assert_true(c.verbose);
    assert_int_equal(eds_conf_set_arg(opts, &c, 8, bools, &j, &err), EDS_OK);
    assert_int_equal(j, 8);
    assert_true(c.timeout == 3.0);
    /* "--ratio" is last: its value is missing; the index does not move. */
    assert_int_equal(eds_conf_set_arg(opts, &c, argc, argv, &i, &err), EDS_ERR_CONFIG);
    assert_string_equal(err.msg, "command line: ratio: missing value");
    assert_int_equal(i, 11);

    char *bad[] = {"prog", "stray", "--", "--frobnicate=1", "--verbose=maybe", "--max-clients="};
    static const char *const msgs[] = {
        "command line: unexpected argument 'stray'",
        "command line: unexpected argument '--'",
        "command line: unknown option '--frobnicate'",
        "command line: verbose: 'maybe' is not true or false",
        "command line: max_clients: missing value",
    };
    for (int k = 1; k < 6; k++) {
        i = k;
        assert_int_equal(eds_conf_set_arg(opts, &c, 6, bad, &i, &err), EDS_ERR_CONFIG);
        assert_string_equal(err.msg, msgs[k - 1]);
        assert_int_equal(i, k);
    }
    eds_conf_free_strings(opts, &c);
}

/* `--listener 5883 127.0.0.1` unquoted, as --help writes it: one argument per
 * word of the placeholder, the [optional] one only if it is not the next flag. */
static void test_argv_multi_word(void **state)
{
    char *argv[] = {"prog", "--listener", "5883",       "127.0.0.1", "--listener",
                    "5884", "--verbose",  "--listener", "5885 ::1",  "--max-clients",
                    "7",    "--listener", "5886"};
    int argc = (int)(sizeof(argv) / sizeof(argv[0]));
    test_cfg c = defaults;
    eds_error err;
    eds_error_clear(&err);
    int i = 1;
    static const int stops[] = {4, 6, 7, 9, 11, 13};
    for (size_t k = 0; k < sizeof(stops) / sizeof(stops[0]); k++) {
        assert_int_equal(eds_conf_set_arg(opts, &c, argc, argv, &i, &err), EDS_OK);
        assert_int_equal(i, stops[k]);
    }
    assert_int_equal(c.n_listeners, 4);
    assert_int_equal(c.listeners[0].port, 5883);
    assert_string_equal(c.listeners[0].addr, "127.0.0.1");
    assert_int_equal(c.listeners[1].port, 5884);
    assert_string_equal(c.listeners[1].addr, "any"); /* --verbose is not its address */
    assert_true(c.verbose);
    assert_string_equal(c.listeners[2].addr, "::1"); /* quoted as one: still fine */
    assert_int_equal(c.max_clients, 7);
    assert_string_equal(c.listeners[3].addr, "any"); /* last argument: nothing follows */

    /* The table is full now: the parser's own error comes through. */
    char *five[] = {"prog", "--listener", "5888", "::1"};
    i = 1;
    assert_int_equal(eds_conf_set_arg(opts, &c, 4, five, &i, &err), EDS_ERR_CONFIG);
    assert_string_equal(err.msg, "command line: listener: at most 4 listeners");
    assert_int_equal(i, 1);
    eds_conf_free_strings(opts, &c);

    test_cfg d = defaults;
    char *more[] = {"prog", "--listener", "5887", "10.0.0.1", "extra", "--offset", "-3"};
    i = 1;
    assert_int_equal(eds_conf_set_arg(opts, &d, 7, more, &i, &err), EDS_OK);
    assert_int_equal(i, 4); /* PORT [ADDRESS]: "extra" is not taken */
    assert_string_equal(d.listeners[0].addr, "10.0.0.1");
    /* A single-word option takes one argument, even one that starts with '-'. */
    i = 5;
    assert_int_equal(eds_conf_set_arg(opts, &d, 7, more, &i, &err), EDS_OK);
    assert_int_equal(i, 7);
    assert_int_equal(d.offset, -3);
    eds_conf_free_strings(opts, &d);
}

static void test_help_lists_every_option(void **state)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    test_cfg d = defaults;
    d.name = "edge-1";
    eds_conf_print_help(out, opts, &d);
    assert_int_equal(fclose(out), 0);

    for (const eds_conf_opt *o = opts; o->name; o++) {
        char flag[64];
        snprintf(flag, sizeof(flag), "  --%s", o->name);
        for (char *p = flag; *p; p++)
            *p = *p == '_' ? '-' : *p;
        const char *at = strstr(text, flag);
        assert_non_null(at);
        char after = at[strlen(flag)];
        assert_true(after == ' ' || after == '[');
        assert_non_null(strstr(text, o->help));
        char file_name[64];
        snprintf(file_name, sizeof(file_name), "config file: %s", o->name);
        assert_non_null(strstr(text, file_name));
    }
    assert_non_null(strstr(text, "  --max-clients N\n      Most agents at once. (config file: "
                                 "max_clients, range 1..1000000, default 64)\n"));
    assert_non_null(strstr(text, "--listener PORT [ADDRESS]\n"));
    assert_non_null(strstr(text, "--timeout SECONDS\n"));
    assert_non_null(strstr(text, "default 30)"));
    assert_non_null(strstr(text, "--max-line BYTES[k|M|G]\n"));
    assert_non_null(strstr(text, "default 65536)"));
    assert_non_null(strstr(text, "  --verbose[=true|false]\n"));
    assert_non_null(strstr(text, "default false)"));
    assert_non_null(strstr(text, "default edge-1)"));
    assert_non_null(strstr(text, "(config file: path, no default)"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_type_and_syntax),
        cmocka_unit_test(test_hash_inside_value_is_kept),
        cmocka_unit_test(test_empty_file_keeps_defaults),
        cmocka_unit_test(test_range_error_names_file_and_line),
        cmocka_unit_test(test_unknown_option),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_long_lines_and_nul),
        cmocka_unit_test(test_file_size_limit),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_file_of_unknown_size),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_good_edge_values),
        cmocka_unit_test(test_command_line),
        cmocka_unit_test(test_argv),
        cmocka_unit_test(test_argv_multi_word),
        cmocka_unit_test(test_help_lists_every_option),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
