/*
 * cmd_stdout_lib - a program using libedsagent with cmd_stdout, as an
 * application would: it leaves SIGPIPE at its default (a write to a pipe
 * whose reader closed kills the process unless the library keeps the signal
 * away). tests/integration/test_agent_cmd_limits.py (StdoutLibraryReaderClosesTest)
 * runs it with stdout a pipe the test closes.
 *
 * Usage: cmd_stdout_lib CONF N
 * Polls the agent; prints each command eds_agent_next_cmd takes to stderr as
 * "taken: JSON"; exits 0 once it has taken N (2 when 120 s pass first).
 */
#include "edsagent.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: cmd_stdout_lib CONF N\n");
        return 2;
    }
    char err[256];
    eds_agent *a = eds_agent_open(argv[1], err, sizeof(err));
    if (!a) {
        fprintf(stderr, "cmd_stdout_lib: %s\n", err);
        return 2;
    }
    long want = strtol(argv[2], NULL, 10), taken = 0;
    time_t end = time(NULL) + 120;
    char buf[65536];
    int64_t id;
    while (taken < want && time(NULL) < end) {
        eds_agent_poll(a, 100);
        while (taken < want && eds_agent_next_cmd(a, buf, sizeof(buf), &id) > 0) {
            fprintf(stderr, "taken: %s\n", buf);
            taken++;
        }
    }
    eds_agent_destroy(a);
    return taken == want ? 0 : 2;
}
