/*
 * gw_mark.h - the recovery mark: which record of which device and stream was
 * handed to the broker last. With qos 2 the publisher stores one with each
 * record's publish in the session store (gw_pubstore.h); after a crash the
 * server raises each device's last_seq to its mark (see gw_server.c,
 * apply_session_marks). A plain value: no strings to format or parse back.
 */
#ifndef GW_MARK_H
#define GW_MARK_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "eds_proto.h"

typedef struct gw_mark {
    char device[EDS_DEVICE_MAX + 1]; /* a valid device id (eds_device_id_valid) */
    char stream[EDS_STREAM_MAX + 1]; /* a valid stream id (eds_stream_id_valid) */
    uint64_t seq;
} gw_mark;

/* Both ids terminated and valid. */
static inline bool gw_mark_valid(const gw_mark *m)
{
    return memchr(m->device, '\0', sizeof(m->device)) &&
           memchr(m->stream, '\0', sizeof(m->stream)) && eds_device_id_valid(m->device) &&
           eds_stream_id_valid(m->stream);
}

#endif
