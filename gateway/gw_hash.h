/* gw_hash.h - FNV-1a over a NUL-terminated string, for the gateway's hash
 * tables (devices by id, addresses). Not for anything an attacker must not
 * collide: the tables bound their size instead. */
#ifndef GW_HASH_H
#define GW_HASH_H

#include <stdint.h>

static inline uint64_t gw_hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
    return h;
}

#endif
