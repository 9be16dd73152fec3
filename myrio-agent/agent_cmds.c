#include "agent_cmds.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eds_bytes.h"
#include "eds_log.h"

#define FILE_NAME "cmds.pending"
#define TMP_NAME "cmds.pending.tmp"

static agent_cmd *at(agent_cmds *c, size_t i)
{
    return &c->q[(c->head + i) % AGENT_CMDS_MAX];
}

static bool was_taken(const agent_cmds *c, uint64_t uid)
{
    for (size_t i = 0; uid && i < AGENT_CMDS_TAKEN; i++)
        if (c->taken[i] == uid)
            return true;
    return false;
}

static void remember(agent_cmds *c, uint64_t uid)
{
    if (!uid || was_taken(c, uid))
        return;
    c->taken[c->taken_next] = uid;
    c->taken_next = (c->taken_next + 1) % AGENT_CMDS_TAKEN;
}

static int push(agent_cmds *c, int64_t id, uint64_t gen, uint64_t uid, const char *json, size_t len)
{
    if (c->n >= AGENT_CMDS_MAX || c->bytes + len > AGENT_CMDS_BYTES)
        return AGENT_CMD_FULL;
    char *copy = malloc(len + 1);
    if (!copy)
        return AGENT_CMD_FULL;
    memcpy(copy, json, len);
    copy[len] = '\0';
    *at(c, c->n) = (agent_cmd){id, gen, uid, copy, len};
    c->n++;
    c->bytes += len;
    return AGENT_CMD_QUEUED;
}

/* Rewrites the file: waiting commands, then the taken uids. A failure is logged: the
 * commands are still waiting in memory, and the gateway still has them. */
static void save(agent_cmds *c)
{
    if (!c->path)
        return;
    FILE *f = fopen(c->tmp, "w");
    if (!f) {
        eds_log_warning("%s: %s", c->tmp, strerror(errno));
        return;
    }
    for (size_t i = 0; i < c->n; i++)
        fprintf(f, "P %" PRIu64 " %s\n", at(c, i)->uid, at(c, i)->json);
    for (size_t i = 0; i < AGENT_CMDS_TAKEN; i++)
        if (c->taken[i])
            fprintf(f, "T %" PRIu64 "\n", c->taken[i]);
    bool ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(c->tmp, c->path) != 0)
        eds_log_warning("%s: %s", c->path, strerror(errno));
}

/* Loads what the file holds; a torn line ends it. Commands are stale: their ack waits
 * until the gateway sends them again. */
static void load(agent_cmds *c)
{
    FILE *f = fopen(c->path, "r");
    if (!f)
        return;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0 && line[n - 1] == '\n') {
        line[--n] = '\0';
        char *end;
        uint64_t uid = strtoull(line + 2, &end, 10);
        if (n > 2 && line[0] == 'T' && line[1] == ' ' && !*end)
            remember(c, uid);
        else if (n > 2 && line[0] == 'P' && line[1] == ' ' && *end == ' ')
            push(c, 0, AGENT_CMDS_STALE, uid, end + 1, strlen(end + 1));
        else
            break;
    }
    free(line);
    fclose(f);
    if (c->n)
        eds_log_notice("%zu downlink commands from before the restart wait for the application",
                       c->n);
}

int agent_cmds_open(agent_cmds *c, const char *dir, eds_error *err)
{
    (void)err;
    memset(c, 0, sizeof(*c));
    if (!dir)
        return EDS_OK;
    c->path = eds_path_join(dir, FILE_NAME);
    c->tmp = eds_path_join(dir, TMP_NAME);
    if (!c->path || !c->tmp) {
        agent_cmds_close(c);
        return EDS_ERR_NOMEM;
    }
    load(c);
    return EDS_OK;
}

void agent_cmds_close(agent_cmds *c)
{
    while (c->n) {
        free(at(c, 0)->json);
        c->head = (c->head + 1) % AGENT_CMDS_MAX;
        c->n--;
    }
    free(c->path);
    free(c->tmp);
    memset(c, 0, sizeof(*c));
}

int agent_cmds_offer(agent_cmds *c, int64_t id, uint64_t gen, uint64_t uid, const char *json,
                     size_t len)
{
    if (was_taken(c, uid))
        return AGENT_CMD_TAKEN_BEFORE;
    for (size_t i = 0; uid && i < c->n; i++) {
        agent_cmd *e = at(c, i);
        if (e->uid == uid) {
            e->id = id;
            e->gen = gen;
            return AGENT_CMD_UPDATED;
        }
    }
    int rc = push(c, id, gen, uid, json, len);
    if (rc == AGENT_CMD_QUEUED)
        save(c);
    return rc;
}

const agent_cmd *agent_cmds_head(const agent_cmds *c)
{
    return c->n ? &c->q[c->head] : NULL;
}

void agent_cmds_taken(agent_cmds *c)
{
    if (!c->n)
        return;
    agent_cmd *e = at(c, 0);
    remember(c, e->uid);
    c->bytes -= e->len;
    free(e->json);
    memset(e, 0, sizeof(*e));
    c->head = (c->head + 1) % AGENT_CMDS_MAX;
    c->n--;
    save(c);
}
