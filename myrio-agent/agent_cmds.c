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

static const agent_cmd_done *find_done(const agent_cmds *c, uint64_t uid)
{
    for (size_t i = 0; uid && i < AGENT_CMDS_DONE; i++)
        if (c->done[i].uid == uid)
            return &c->done[i];
    return NULL;
}

bool agent_cmds_finished(const agent_cmds *c, uint64_t uid, agent_cmd_outcome *outcome)
{
    const agent_cmd_done *d = find_done(c, uid);
    if (d)
        *outcome = (agent_cmd_outcome)d->outcome;
    return d != NULL;
}

void agent_cmds_finish(agent_cmds *c, uint64_t uid, agent_cmd_outcome outcome)
{
    if (!uid || find_done(c, uid))
        return;
    c->done[c->done_next] = (agent_cmd_done){uid, (char)outcome};
    c->done_next = (c->done_next + 1) % AGENT_CMDS_DONE;
    c->dirty = true;
}

static int push(agent_cmds *c, int64_t id, uint64_t gen, uint64_t uid, int64_t deadline_ms,
                const char *json, size_t len)
{
    if (c->n >= AGENT_CMDS_MAX || c->bytes + len > AGENT_CMDS_BYTES)
        return AGENT_CMD_FULL;
    char *copy = malloc(len + 1);
    if (!copy)
        return AGENT_CMD_FULL;
    memcpy(copy, json, len);
    copy[len] = '\0';
    *at(c, c->n) = (agent_cmd){id, gen, uid, deadline_ms, copy, len};
    c->n++;
    c->bytes += len;
    c->dirty = true;
    return AGENT_CMD_QUEUED;
}

/* Removes the i-th waiting command; the later ones move up. */
static void remove_at(agent_cmds *c, size_t i)
{
    agent_cmd *e = at(c, i);
    if (i == 0)
        c->head_busy = false;
    c->bytes -= e->len;
    free(e->json);
    for (; i + 1 < c->n; i++)
        *at(c, i) = *at(c, i + 1);
    memset(at(c, c->n - 1), 0, sizeof(agent_cmd));
    c->n--;
    c->dirty = true;
}

/* Retried on every sync until it works (a full disk): logged at most once a minute. */
static void sync_failed(const char *path)
{
    static eds_log_limit lim = EDS_LOG_LIMIT_INIT(60000);
    eds_log_limited(&lim, EDS_LOG_WARNING, "%s: %s (commands still wait in memory)", path,
                    strerror(errno));
}

void agent_cmds_sync(agent_cmds *c)
{
    if (!c->path || !c->dirty)
        return;
    FILE *f = fopen(c->tmp, "w");
    if (!f) {
        sync_failed(c->tmp);
        return;
    }
    for (size_t i = 0; i < c->n; i++) {
        const agent_cmd *e = at(c, i);
        if (e->uid) /* one without cannot be recognised after a restart */
            fprintf(f, "W %" PRIu64 " %" PRId64 " %s\n", e->uid, e->deadline_ms, e->json);
    }
    for (size_t k = 0; k < AGENT_CMDS_DONE; k++) {
        const agent_cmd_done *d = &c->done[(c->done_next + k) % AGENT_CMDS_DONE]; /* oldest first */
        if (d->uid && d->outcome == AGENT_DONE_ACKED)
            fprintf(f, "T %" PRIu64 "\n", d->uid);
        else if (d->uid)
            fprintf(f, "F %" PRIu64 " %c\n", d->uid, d->outcome);
    }
    bool ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(c->tmp, c->path) != 0)
        sync_failed(c->path);
    else
        c->dirty = false;
}

static bool is_outcome(char o)
{
    return o == AGENT_DONE_ACKED || o == AGENT_DONE_EXPIRED || o == AGENT_DONE_FULL ||
           o == AGENT_DONE_LONG;
}

/* One line of the file (without its LF); false if it cannot be read. */
static bool load_line(agent_cmds *c, char *line, size_t n)
{
    if (n < 3 || line[1] != ' ' || line[2] < '0' || line[2] > '9')
        return false;
    char *end;
    errno = 0;
    uint64_t uid = strtoull(line + 2, &end, 10);
    if (errno || !uid)
        return false;
    switch (line[0]) {
    case 'T':
        if (*end)
            return false;
        agent_cmds_finish(c, uid, AGENT_DONE_ACKED);
        return true;
    case 'F':
        if (end[0] != ' ' || !is_outcome(end[1]) || end[2])
            return false;
        agent_cmds_finish(c, uid, (agent_cmd_outcome)end[1]);
        return true;
    case 'P': /* an older agent's line: no deadline */
        return *end == ' ' && end[1] &&
               push(c, 0, AGENT_CMDS_STALE, uid, 0, end + 1, strlen(end + 1)) == AGENT_CMD_QUEUED;
    case 'W': {
        if (*end != ' ')
            return false;
        char *json;
        long long deadline = strtoll(end + 1, &json, 10);
        return json != end + 1 && *json == ' ' && json[1] && deadline >= 0 &&
               push(c, 0, AGENT_CMDS_STALE, uid, deadline, json + 1, strlen(json + 1)) ==
                   AGENT_CMD_QUEUED;
    }
    default:
        return false;
    }
}

/* Loads what the file holds. Commands are stale: their answer waits until the gateway
 * sends them again. */
static void load(agent_cmds *c)
{
    FILE *f = fopen(c->path, "r");
    if (!f)
        return;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0) {
        bool whole = line[n - 1] == '\n';
        if (whole)
            line[--n] = '\0';
        if (!whole || memchr(line, '\0', (size_t)n) || !load_line(c, line, (size_t)n))
            c->skipped++;
    }
    free(line);
    fclose(f);
    c->dirty = false;
    if (c->skipped)
        eds_log_warning("%s: %zu line%s could not be read and were skipped", c->path, c->skipped,
                        eds_plural(c->skipped));
    if (c->n)
        eds_log_notice("%zu downlink command%s from before the restart wait for the application",
                       c->n, eds_plural(c->n));
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
    for (size_t i = 0; i < c->n; i++)
        free(at(c, i)->json);
    free(c->path);
    free(c->tmp);
    memset(c, 0, sizeof(*c));
}

int agent_cmds_offer(agent_cmds *c, int64_t id, uint64_t gen, uint64_t uid, int64_t deadline_ms,
                     const char *json, size_t len, agent_cmd_outcome *outcome)
{
    if (agent_cmds_finished(c, uid, outcome))
        return AGENT_CMD_FINISHED;
    for (size_t i = 0; uid && i < c->n; i++) {
        agent_cmd *e = at(c, i);
        if (e->uid == uid) {
            e->id = id;
            e->gen = gen;
            if (deadline_ms && (!e->deadline_ms || deadline_ms < e->deadline_ms)) {
                e->deadline_ms = deadline_ms;
                c->dirty = true;
            }
            return AGENT_CMD_UPDATED;
        }
    }
    return push(c, id, gen, uid, deadline_ms, json, len);
}

const agent_cmd *agent_cmds_head(const agent_cmds *c)
{
    return c->n ? &c->q[c->head] : NULL;
}

void agent_cmds_taken(agent_cmds *c)
{
    if (!c->n)
        return;
    agent_cmds_finish(c, at(c, 0)->uid, AGENT_DONE_ACKED);
    remove_at(c, 0);
}

bool agent_cmds_expire(agent_cmds *c, int64_t now_ms, int64_t *id, uint64_t *gen, uint64_t *uid)
{
    for (size_t i = c->head_busy ? 1 : 0; i < c->n; i++) {
        agent_cmd *e = at(c, i);
        if (e->deadline_ms && now_ms >= e->deadline_ms) {
            *id = e->id;
            *gen = e->gen;
            *uid = e->uid;
            agent_cmds_finish(c, e->uid, AGENT_DONE_EXPIRED);
            remove_at(c, i);
            return true;
        }
    }
    return false;
}

int64_t agent_cmds_next_deadline(const agent_cmds *c)
{
    int64_t first = 0;
    for (size_t i = 0; i < c->n; i++) {
        int64_t d = c->q[(c->head + i) % AGENT_CMDS_MAX].deadline_ms;
        if (d && (!first || d < first))
            first = d;
    }
    return first;
}

void agent_cmds_forget_anonymous(agent_cmds *c)
{
    for (size_t i = c->n; i-- > 0;)
        if (!at(c, i)->uid)
            remove_at(c, i);
}
