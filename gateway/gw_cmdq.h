/*
 * gw_cmdq.h - a FIFO of downlink commands, and the byte budget they share.
 * Pure: no I/O.
 *
 * A command is one heap block (header + compact JSON). A queue owns the
 * commands in it; gw_cmdq_pop hands one to the caller, who then owns it.
 * gw_cmd_create/gw_cmd_free keep *budget (the bytes of every command alive,
 * gw_downlink's max_held_bytes) right.
 */
#ifndef GW_CMDQ_H
#define GW_CMDQ_H

#include <stddef.h>
#include <stdint.h>

typedef struct gw_cmd {
    struct gw_cmd *next;
    int64_t id; /* per connection, once sent */
    size_t len;
    char json[]; /* compact JSON, NUL-terminated */
} gw_cmd;

typedef struct gw_cmdq {
    gw_cmd *head, *tail;
    uint32_t n;
} gw_cmdq;

/* A command holding a copy of json[0..len); NULL when out of memory. Adds
 * its size to *budget. */
gw_cmd *gw_cmd_create(const char *json, size_t len, size_t *budget);

/* Frees cmd and takes its size off *budget. NULL ok. */
void gw_cmd_free(gw_cmd *cmd, size_t *budget);

/* Bytes a command of len JSON bytes counts against the budget. */
static inline size_t gw_cmd_size(size_t len)
{
    return sizeof(gw_cmd) + len;
}

/* Appends cmd at the tail. */
void gw_cmdq_push(gw_cmdq *q, gw_cmd *cmd);

/* Removes and returns the head, or NULL when empty. */
gw_cmd *gw_cmdq_pop(gw_cmdq *q);

/* Removes the command with this id and returns it, or NULL. */
gw_cmd *gw_cmdq_take(gw_cmdq *q, int64_t id);

/* Moves all of from, in order, in front of q (from ends up empty). */
void gw_cmdq_prepend(gw_cmdq *q, gw_cmdq *from);

/* Frees every command of q. */
void gw_cmdq_clear(gw_cmdq *q, size_t *budget);

#endif
