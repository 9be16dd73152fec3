/* The hosts file and numeric addresses, for agent_resolve_static.c (agent_resolve.h). */
#include "agent_resolve.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

bool agent_addr_numeric(const char *s, int port, agent_addr *out)
{
    memset(out, 0, sizeof(*out));
    struct sockaddr_in *v4 = (struct sockaddr_in *)&out->sa;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&out->sa;
    if (inet_pton(AF_INET, s, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        out->len = sizeof(*v4);
        return true;
    }
    if (inet_pton(AF_INET6, s, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        out->len = sizeof(*v6);
        return true;
    }
    return false;
}

/* Whether the hosts line (NUL-terminated, comment cut) names name; *addr
 * points at its address field. */
static bool line_names(char *line, const char *name, char **addr)
{
    const char *sep = " \t\r\n";
    char *save = NULL;
    *addr = strtok_r(line, sep, &save);
    if (!*addr)
        return false;
    for (char *tok = strtok_r(NULL, sep, &save); tok; tok = strtok_r(NULL, sep, &save)) {
        if (strcasecmp(tok, name) == 0)
            return true;
    }
    return false;
}

int agent_hosts_lookup(const char *path, const char *name, int port, agent_addr *out, size_t cap,
                       size_t *n, eds_error *err)
{
    *n = 0;
    FILE *f = fopen(path, "re");
    if (!f) {
        if (errno == ENOENT)
            return EDS_OK;
        return eds_error_set(err, EDS_ERR_IO, "%s: %s", path, strerror(errno));
    }
    char line[1024];
    bool skipping = false; /* inside an over-long line */
    /* A NUL byte in the file ends the string fgets returns early, so whether the
     * line's newline was read is looked up in the whole buffer, filled beforehand
     * with a byte that is not one (else the next line would count as the rest). */
    while (*n < cap) {
        memset(line, ' ', sizeof(line));
        if (!fgets(line, sizeof(line), f))
            break;
        bool complete = memchr(line, '\n', sizeof(line)) != NULL;
        bool was_skipping = skipping;
        skipping = !complete && !feof(f);
        if (was_skipping || skipping)
            continue;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *addr;
        if (line_names(line, name, &addr) && agent_addr_numeric(addr, port, &out[*n]))
            (*n)++;
    }
    int rc = ferror(f) ? eds_error_set(err, EDS_ERR_IO, "%s: read error", path) : EDS_OK;
    fclose(f);
    return rc;
}
