/* agent_resolve() through getaddrinfo(), the system's name service (agent_resolve.h). */
#include "agent_resolve.h"

#include <netdb.h>
#include <stdio.h>
#include <string.h>

int agent_resolve(const char *host, int port, agent_addr *out, size_t cap, size_t *n,
                  eds_error *err)
{
    *n = 0;
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", port);
    struct addrinfo hints, *list = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int gai = getaddrinfo(host, portstr, &hints, &list);
    if (gai != 0)
        return eds_error_set(err, EDS_ERR_IO, "gateway %s:%d: %s", host, port, gai_strerror(gai));
    for (const struct addrinfo *ai = list; ai && *n < cap; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof(out[*n].sa))
            continue;
        memset(&out[*n], 0, sizeof(out[*n]));
        memcpy(&out[*n].sa, ai->ai_addr, ai->ai_addrlen);
        out[*n].len = ai->ai_addrlen;
        (*n)++;
    }
    freeaddrinfo(list);
    if (*n == 0)
        return eds_error_set(err, EDS_ERR_IO, "gateway %s:%d: no usable address", host, port);
    return EDS_OK;
}
