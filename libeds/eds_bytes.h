/*
 * eds_bytes.h - little-endian integers and CRC-32 for the on-disk formats
 * (the agent's spool, the gateway's MQTT session store).
 *
 * Files are written little-endian whatever the host, so a spool or a state
 * directory moved between an ARM myRIO and an x86 test box still reads.
 */
#ifndef EDS_BYTES_H
#define EDS_BYTES_H

#include <stddef.h>
#include <stdint.h>

static inline void eds_put_le16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static inline void eds_put_le32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static inline void eds_put_le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static inline uint16_t eds_get_le16(const unsigned char *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t eds_get_le32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static inline uint64_t eds_get_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* CRC-32/ISO-HDLC (zlib's crc32): start with crc = 0 and chain calls over
 * consecutive pieces. Thread-safe. */
uint32_t eds_crc32(uint32_t crc, const void *data, size_t len);

/* 32-bit FNV-1a of len bytes: a hash for small tables (not for untrusted keys an
 * attacker may choose to collide). */
static inline uint32_t eds_fnv1a(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

/* "dir/name", malloc'd (the caller frees it); NULL when out of memory. */
char *eds_path_join(const char *dir, const char *name);

#endif
