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

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct gw_cmd {
    struct gw_cmd *next;
    int64_t id;         /* per connection, once sent */
    uint64_t uid;       /* in the command store (gw_cmdstore.h); 0: not stored */
    int64_t expires_at; /* wall clock, ms since the epoch; 0: never */
    bool with_agent;    /* sent to a cmd_results agent: its expiry is the agent's now */
    size_t len;
    /* After json: ref_len bytes of the payload's own "id" member (JSON text, for the
     * result's "ref"), then the MQTT 5 response topic and correlation data of the
     * publish, each NUL-terminated; gw_cmd_ref() etc. point at them. */
    uint32_t ref_len, rt_len, corr_len;
    char json[]; /* compact JSON, NUL-terminated */
} gw_cmd;

/* What a command is made of; pointers are copied from. */
typedef struct gw_cmd_parts {
    const char *json;
    size_t len;
    const char *ref; /* may be NULL (ref_len 0) */
    size_t ref_len;
    const char *rt; /* MQTT 5 response topic; may be NULL */
    size_t rt_len;
    const void *corr; /* MQTT 5 correlation data; may be NULL */
    size_t corr_len;
    int64_t expires_at;
    uint64_t uid;
} gw_cmd_parts;

static inline const char *gw_cmd_ref(const gw_cmd *c)
{
    return c->json + c->len + 1;
}
static inline const char *gw_cmd_rt(const gw_cmd *c)
{
    return gw_cmd_ref(c) + c->ref_len + 1;
}
static inline const char *gw_cmd_corr(const gw_cmd *c)
{
    return gw_cmd_rt(c) + c->rt_len + 1;
}

typedef struct gw_cmdq {
    gw_cmd *head, *tail;
    uint32_t n;
} gw_cmdq;

/* A command holding a copy of the parts; NULL when out of memory (or a part over
 * 4 GiB). Adds its size to *budget. */
gw_cmd *gw_cmd_create(const gw_cmd_parts *parts, size_t *budget);

/* Frees cmd and takes its size off *budget. NULL ok. */
void gw_cmd_free(gw_cmd *cmd, size_t *budget);

/* Bytes a command counts against the budget. */
static inline size_t gw_cmd_size(const gw_cmd_parts *p)
{
    return sizeof(gw_cmd) + p->len + p->ref_len + p->rt_len + p->corr_len + 4;
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
