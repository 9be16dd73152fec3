/*
 * eds-agent - the EDS agent for NI myRIO: a thin front end over libedsagent.
 * Reads options (config file, then flags), runs the engine until the inputs
 * end and everything is delivered, and maps the outcome to an exit code:
 * 0 delivered, 1 not everything delivered (or a runtime failure), 2 usage.
 */
#include "edsagent.h"

#include "eds_log.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef EDS_VERSION
#define EDS_VERSION "dev"
#endif

static eds_agent *running;

static void on_signal(int sig)
{
    (void)sig;
    if (running)
        eds_agent_stop(running);
}

static void usage(FILE *out)
{
    fputs("Usage: eds-agent [-c FILE] [OPTIONS] [-]\n"
          "\n"
          "Sends JSON measurement records from this myRIO to an EDS gateway, which\n"
          "publishes them to MQTT. Each record is checked against the schema, queued\n"
          "(in memory, or in a crash-safe spool with --spool) and kept until the\n"
          "gateway has acked it. Records come from stdin (NDJSON, the default, or '-'),\n"
          "a local TCP port (NDJSON), a local UDP port (one record per datagram) or the\n"
          "built-in simulator. Downlink commands from the gateway are written to stdout\n"
          "as one JSON line each (or sent to --cmd-udp PORT) and then acked.\n"
          "\n"
          "General:\n"
          "  -c, --config FILE\n"
          "      Read options from FILE (`key value` lines, # comments); flags given on\n"
          "      the command line override it.\n"
          "  -v, --verbose\n"
          "      Log more (once: info, twice: debug). Logs go to stderr.\n"
          "  --log-level error|warning|notice|info|debug\n"
          "      Same as the log_level option below.\n"
          "  -h, --help     This text.\n"
          "  -V, --version  The version (and the OpenSSL it was built with).\n"
          "  -              Read NDJSON records from stdin (also with other inputs).\n"
          "\n"
          "Options (flag form; in the config file write the name with '_' and no '--'):\n",
          out);
    eds_agent_config_help(out);
    fputs("\n"
          "Exit status: 0 when the inputs ended and every record was acked; 1 when some\n"
          "records were not delivered before --drain-timeout (with --spool they stay\n"
          "there for the next start) or the agent failed; 2 for a usage or config error.\n"
          "SIGINT/SIGTERM stop the agent (with a spool at once, without one after\n"
          "delivering what is queued).\n"
          "\n"
          "Examples:\n"
          "  # one record from a shell\n"
          "  echo '{\"timestamp\":\"2026-11-24T10:00:00Z\",\"day-ahead-price\":81.4,"
          "\"power_factor\":0.97}' |\n"
          "    eds-agent --gateway 192.168.1.10:5883 --device myrio-01 \\\n"
          "              --password-file /etc/eds/agent.pw --schema /etc/eds/energy.json\n"
          "\n"
          "  # service on a myRIO: LabVIEW writes to TCP 127.0.0.1:6000 or UDP 6001\n"
          "  eds-agent -c /etc/eds/eds-agent.conf --spool /var/lib/eds-agent \\\n"
          "            --tcp 6000 --udp 6001 --cmd-udp 6002\n"
          "\n"
          "  # demo: 10 simulated energy records per second, stop after 100\n"
          "  eds-agent -c /etc/eds/eds-agent.conf --simulate 10 --count 100\n",
          out);
}

/* Applies -c FILE first so that every flag overrides the file. */
static int load_config_files(int argc, char **argv, eds_agent_config *cfg)
{
    for (int i = 1; i < argc; i++) {
        const char *path = NULL;
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc)
            path = argv[++i];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            path = argv[i] + 9;
        if (!path)
            continue;
        eds_error err;
        eds_error_clear(&err);
        if (eds_agent_config_load(cfg, path, &err) != EDS_OK) {
            fprintf(stderr, "eds-agent: %s\n", err.msg);
            return -1;
        }
    }
    return 0;
}

/* Started with fd 0, 1 or 2 closed, the first file or socket the agent opens would take
 * it: log lines (stderr) or commands (stdout) would then go into the gateway connection
 * or a spool file. Such fds get /dev/null instead. */
static int open_std_fds(void)
{
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) != -1 || errno != EBADF)
            continue;
        int n = open("/dev/null", O_RDWR);
        if (n < 0)
            return -1;
        if (n != fd) {
            dup2(n, fd);
            close(n);
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (open_std_fds() != 0)
        return 2;
    enum eds_log_level level = EDS_LOG_NOTICE;
    bool level_given = false;
    eds_agent_config cfg;
    eds_agent_config_init(&cfg);
    int status = 2;
    eds_agent *a = NULL;
    eds_error err;
    eds_error_clear(&err);

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(argv[i], "-V") == 0 || strcmp(argv[i], "--version") == 0) {
            printf("eds-agent %s (%s)\n", EDS_VERSION, OpenSSL_version(OPENSSL_VERSION));
            return 0;
        }
    }
    if (load_config_files(argc, argv, &cfg) != 0)
        goto out;
    /* The program's own flags, then the option table's (eds_agent_config_set_arg). */
    for (int i = 1; i < argc;) {
        const char *arg = argv[i];
        if (strcmp(arg, "-c") == 0 || strcmp(arg, "--config") == 0) {
            i += 2;
        } else if (strncmp(arg, "--config=", 9) == 0) {
            i++;
        } else if (strcmp(arg, "-") == 0) {
            cfg.read_stdin = true;
            i++;
        } else if (strcmp(arg, "-v") == 0 || strcmp(arg, "--verbose") == 0) {
            level = level < EDS_LOG_INFO ? EDS_LOG_INFO : EDS_LOG_DEBUG;
            level_given = true;
            i++;
        } else if (strcmp(arg, "-vv") == 0) {
            level = EDS_LOG_DEBUG;
            level_given = true;
            i++;
        } else if (strcmp(arg, "--password") == 0 || strncmp(arg, "--password=", 11) == 0) {
            fprintf(stderr, "eds-agent: a password is never given on the command line (other "
                            "users can read it there): use --password-file FILE\n");
            goto out;
        } else if (eds_agent_config_set_arg(&cfg, argc, argv, &i, &err) != EDS_OK) {
            fprintf(stderr, "eds-agent: %s (try --help)\n", err.msg);
            goto out;
        }
    }
    if (!level_given && cfg.log_level >= 0)
        level = (enum eds_log_level)cfg.log_level;
    eds_log_init("eds-agent", level);
    if (!cfg.read_stdin && cfg.tcp_port == 0 && cfg.udp_port == 0 && cfg.simulate <= 0)
        cfg.read_stdin = true;
    if (!cfg.cmd_stdout && cfg.cmd_udp == 0 && !cfg.cmd_tcp)
        cfg.cmd_stdout = true;

    int crc = eds_agent_create(&cfg, &a, &err);
    if (crc != EDS_OK) {
        eds_log_error("%s", err.msg);
        /* A failure at run time (spool in use or unwritable, an input port taken) is 1,
         * which the init script retries; 2 (it gives up) is for usage and config errors. */
        if (crc == EDS_ERR_IO || crc == EDS_ERR_NOMEM || crc == EDS_ERR_CORRUPT)
            status = 1;
        goto out;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    running = a;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int rc = eds_agent_run(a);
    running = NULL;
    eds_agent_stats st;
    eds_agent_get_stats(a, &st);
    eds_log_notice("records: %llu accepted, %llu acked (%llu duplicates), %llu nacked, %llu "
                   "invalid, %llu dropped, %llu udp dropped, %llu pending; %llu commands",
                   (unsigned long long)st.accepted, (unsigned long long)st.acked,
                   (unsigned long long)st.duplicates, (unsigned long long)st.nacked,
                   (unsigned long long)st.invalid, (unsigned long long)st.dropped,
                   (unsigned long long)st.udp_dropped, (unsigned long long)st.pending,
                   (unsigned long long)st.cmds);
    status = rc == EDS_OK ? 0 : 1;
out:
    eds_agent_destroy(a);
    eds_agent_config_free(&cfg);
    return status;
}
