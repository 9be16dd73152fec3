#include "gw_cmdq.h"

#include <stdlib.h>
#include <string.h>

/* Copies n bytes of src (may be NULL when n is 0) and a NUL to p; returns past it. */
static char *put(char *p, const void *src, size_t n)
{
    if (n)
        memcpy(p, src, n);
    p[n] = '\0';
    return p + n + 1;
}

gw_cmd *gw_cmd_create(const gw_cmd_parts *in, size_t *budget)
{
    if (in->ref_len > UINT32_MAX || in->rt_len > UINT32_MAX || in->corr_len > UINT32_MAX)
        return NULL;
    size_t size = gw_cmd_size(in);
    gw_cmd *cmd = malloc(size);
    if (!cmd)
        return NULL;
    cmd->next = NULL;
    cmd->id = 0;
    cmd->uid = in->uid;
    cmd->expires_at = in->expires_at;
    cmd->with_agent = false;
    cmd->len = in->len;
    cmd->ref_len = (uint32_t)in->ref_len;
    cmd->rt_len = (uint32_t)in->rt_len;
    cmd->corr_len = (uint32_t)in->corr_len;
    char *p = put(cmd->json, in->json, in->len);
    p = put(p, in->ref, in->ref_len);
    p = put(p, in->rt, in->rt_len);
    put(p, in->corr, in->corr_len);
    *budget += size;
    return cmd;
}

void gw_cmd_free(gw_cmd *cmd, size_t *budget)
{
    if (!cmd)
        return;
    *budget -= sizeof(gw_cmd) + cmd->len + cmd->ref_len + cmd->rt_len + cmd->corr_len + 4;
    free(cmd);
}

void gw_cmdq_push(gw_cmdq *q, gw_cmd *cmd)
{
    cmd->next = NULL;
    if (q->tail)
        q->tail->next = cmd;
    else
        q->head = cmd;
    q->tail = cmd;
    q->n++;
}

gw_cmd *gw_cmdq_pop(gw_cmdq *q)
{
    gw_cmd *cmd = q->head;
    if (!cmd)
        return NULL;
    q->head = cmd->next;
    if (!q->head)
        q->tail = NULL;
    q->n--;
    cmd->next = NULL;
    return cmd;
}

gw_cmd *gw_cmdq_take(gw_cmdq *q, int64_t id)
{
    gw_cmd **pp = &q->head, *prev = NULL;
    for (gw_cmd *cmd = q->head; cmd; prev = cmd, pp = &cmd->next, cmd = cmd->next) {
        if (cmd->id == id) {
            *pp = cmd->next;
            if (q->tail == cmd)
                q->tail = prev;
            q->n--;
            cmd->next = NULL;
            return cmd;
        }
    }
    return NULL;
}

void gw_cmdq_prepend(gw_cmdq *q, gw_cmdq *from)
{
    if (!from->head)
        return;
    from->tail->next = q->head;
    if (!q->head)
        q->tail = from->tail;
    q->head = from->head;
    q->n += from->n;
    from->head = from->tail = NULL;
    from->n = 0;
}

void gw_cmdq_clear(gw_cmdq *q, size_t *budget)
{
    gw_cmd *cmd;
    while ((cmd = gw_cmdq_pop(q)) != NULL)
        gw_cmd_free(cmd, budget);
}
