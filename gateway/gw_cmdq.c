#include "gw_cmdq.h"

#include <stdlib.h>
#include <string.h>

gw_cmd *gw_cmd_create(const char *json, size_t len, size_t *budget)
{
    gw_cmd *cmd = malloc(sizeof(*cmd) + len + 1);
    if (!cmd)
        return NULL;
    cmd->next = NULL;
    cmd->id = 0;
    cmd->len = len;
    memcpy(cmd->json, json, len);
    cmd->json[len] = '\0';
    *budget += gw_cmd_size(len);
    return cmd;
}

void gw_cmd_free(gw_cmd *cmd, size_t *budget)
{
    if (!cmd)
        return;
    *budget -= gw_cmd_size(cmd->len);
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
