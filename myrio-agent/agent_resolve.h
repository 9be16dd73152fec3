/*
 * agent_resolve.h - the gateway's host name to the addresses to try.
 *
 * Two implementations of agent_resolve() share this header, and the build
 * links exactly one:
 *   agent_resolve.c         getaddrinfo(): the system's name service (NSS:
 *                           /etc/hosts, DNS, mDNS where configured). In
 *                           libedsagent.so (it runs inside LabVIEW, with the
 *                           device's own glibc) and in every host build.
 *   agent_resolve_static.c  the static myRIO eds-agent: a static glibc cannot
 *                           load the NSS modules of the device's (older) glibc,
 *                           so it reads the hosts file itself (below) and asks
 *                           DNS through glibc's stub resolver (/etc/resolv.conf).
 *                           mDNS (.local) names are refused with a clear error.
 * agent_hosts_lookup() and agent_addr_numeric() are pure helpers (no
 * network), shared by the static resolver and its unit test.
 */
#ifndef AGENT_RESOLVE_H
#define AGENT_RESOLVE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "eds_err.h"

/* At most this many addresses are tried per connect. */
#define AGENT_MAX_ADDRS 8

typedef struct agent_addr {
    struct sockaddr_storage sa;
    socklen_t len;
} agent_addr;

/* Resolves host for TCP port: fills out[0..*n) (at most cap, in the order
 * to try). EDS_OK with *n >= 1, or EDS_ERR_IO with err naming host and why. */
int agent_resolve(const char *host, int port, agent_addr *out, size_t cap, size_t *n,
                  eds_error *err);

/* A numeric IPv4 or IPv6 address (no brackets) with port: true and *out. */
bool agent_addr_numeric(const char *s, int port, agent_addr *out);

/* Looks name up in a hosts(5) file (path; the resolver passes /etc/hosts):
 * every address of every line that lists name as its host name or an alias
 * (case-insensitive), in file order, at most cap. Comments (#) and lines
 * longer than 1 KiB are skipped. EDS_OK with *n (0: not listed, or no such
 * file), EDS_ERR_IO when the file exists but cannot be read. */
int agent_hosts_lookup(const char *path, const char *name, int port, agent_addr *out, size_t cap,
                       size_t *n, eds_error *err);

#endif
