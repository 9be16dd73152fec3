/*
 * agent_resolve() for the static myRIO eds-agent (agent_resolve.h): a static
 * glibc would dlopen() the NSS modules of the device's glibc for
 * getaddrinfo(), which fails across glibc versions, so this looks names up
 * itself: an IP address as is, then /etc/hosts, then DNS A and AAAA records
 * through glibc's stub resolver (res_search: the nameservers and search
 * domains of /etc/resolv.conf; no NSS involved). Multicast DNS (.local) is
 * not spoken: such a name must be in /etc/hosts.
 */
#include "agent_resolve.h"

#include <arpa/nameser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <resolv.h>
#include <string.h>
#include <strings.h>

#define HOSTS_FILE "/etc/hosts"

/* Appends the answers of one DNS query (type ns_t_a or ns_t_aaaa). */
static void dns_query(const char *host, ns_type type, int port, agent_addr *out, size_t cap,
                      size_t *n)
{
    unsigned char answer[4096];
    int len = res_search(host, ns_c_in, type, answer, sizeof(answer));
    /* An answer that did not fit (a large one over TCP) is cut to the buffer, but
     * res_search returns its full length: parse only what is in the buffer (a cut
     * message then fails to parse, and the name is reported as not found). */
    if (len > (int)sizeof(answer))
        len = (int)sizeof(answer);
    ns_msg msg;
    if (len < 0 || ns_initparse(answer, len, &msg) < 0)
        return;
    int count = ns_msg_count(msg, ns_s_an);
    for (int i = 0; i < count && *n < cap; i++) {
        ns_rr rr;
        if (ns_parserr(&msg, ns_s_an, i, &rr) != 0 || ns_rr_type(rr) != type)
            continue;
        agent_addr *a = &out[*n];
        memset(a, 0, sizeof(*a));
        if (type == ns_t_a && ns_rr_rdlen(rr) == 4) {
            struct sockaddr_in *v4 = (struct sockaddr_in *)&a->sa;
            v4->sin_family = AF_INET;
            v4->sin_port = htons((uint16_t)port);
            memcpy(&v4->sin_addr, ns_rr_rdata(rr), 4);
            a->len = sizeof(*v4);
        } else if (type == ns_t_aaaa && ns_rr_rdlen(rr) == 16) {
            struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&a->sa;
            v6->sin6_family = AF_INET6;
            v6->sin6_port = htons((uint16_t)port);
            memcpy(&v6->sin6_addr, ns_rr_rdata(rr), 16);
            a->len = sizeof(*v6);
        } else {
            continue;
        }
        (*n)++;
    }
}

static bool is_mdns(const char *host)
{
    size_t len = strlen(host);
    if (len > 0 && host[len - 1] == '.')
        len--;
    return len >= 6 && strncasecmp(host + len - 6, ".local", 6) == 0;
}

int agent_resolve(const char *host, int port, agent_addr *out, size_t cap, size_t *n,
                  eds_error *err)
{
    *n = 0;
    if (cap == 0)
        return eds_error_set(err, EDS_ERR_INVAL, "gateway %s: no room for an address", host);
    if (agent_addr_numeric(host, port, &out[0])) {
        *n = 1;
        return EDS_OK;
    }
    int rc = agent_hosts_lookup(HOSTS_FILE, host, port, out, cap, n, err);
    if (rc != EDS_OK || *n > 0)
        return rc;
    if (is_mdns(host))
        return eds_error_set(err, EDS_ERR_IO,
                             "gateway %s:%d: not in " HOSTS_FILE ", and this static eds-agent does "
                             "not resolve mDNS (.local) names: use the gateway's IP address or "
                             "add it to " HOSTS_FILE,
                             host, port);
    dns_query(host, ns_t_a, port, out, cap, n);
    dns_query(host, ns_t_aaaa, port, out, cap, n);
    if (*n == 0)
        return eds_error_set(err, EDS_ERR_IO,
                             "gateway %s:%d: not in " HOSTS_FILE " nor in DNS (%s)", host, port,
                             hstrerror(h_errno));
    return EDS_OK;
}
