/*
 * agent_create.c - eds_agent_create / _destroy / _open (edsagent.h): checks the
 * config, copies it, and opens what the engine uses (password, schema, spool,
 * downlink, TLS, inputs); destroy releases the same in reverse.
 */
#include "agent_engine.h"

#include "eds_clock.h"
#include "eds_log.h"
#include "eds_passwd.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- create / destroy ------------------------------------------------ */

static int read_password(const char *path, char **out, eds_error *err)
{
    bool exposed;
    int rc = eds_secret_read("password_file", path, out, &exposed, err);
    if (rc == EDS_OK && exposed)
        eds_log_warning("password_file %s can be read by other users (chmod 600 it)", path);
    return rc;
}

#define AGENT_CONFIG_STRINGS 12

/* The string fields of a config, which the agent owns copies of. */
static void config_strings(eds_agent_config *c, char **out[AGENT_CONFIG_STRINGS])
{
    char **all[AGENT_CONFIG_STRINGS] = {
        &c->gateway_host, &c->device, &c->password,    &c->password_file,
        &c->stream,       &c->schema, &c->spool,       &c->cafile,
        &c->cert,         &c->key,    &c->server_name, &c->cmd_schema,
    };
    memcpy(out, all, sizeof(all));
}

static int dup_str(char **dst, const char *src)
{
    *dst = NULL;
    if (!src)
        return EDS_OK;
    *dst = strdup(src);
    return *dst ? EDS_OK : EDS_ERR_NOMEM;
}

static uint64_t seed_from_urandom(void)
{
    uint64_t seed = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (read(fd, &seed, sizeof(seed)) != (ssize_t)sizeof(seed))
            seed = 0;
        close(fd);
    }
    if (seed == 0)
        seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    return seed;
}

static int check_config(const eds_agent_config *c, eds_error *err)
{
    if (!c->gateway_host || !c->gateway_host[0])
        return eds_error_set(err, EDS_ERR_CONFIG, "no gateway given (--gateway HOST:PORT)");
    if (!c->device || !eds_device_id_valid(c->device))
        return eds_error_set(err, EDS_ERR_CONFIG,
                             "device id '%s' is missing or invalid: 1-64 letters, digits, _ . -, "
                             "starting with a letter or digit",
                             c->device ? c->device : "");
    if (c->stream && !eds_stream_id_valid(c->stream))
        return eds_error_set(err, EDS_ERR_CONFIG, "stream id '%s' is invalid", c->stream);
    if (c->window < 1 || c->queue_max < 1 || c->max_line < 256)
        return eds_error_set(err, EDS_ERR_CONFIG, "window, queue_max and max_line must be set");
    if (c->spool && c->spool_max < 65536)
        return eds_error_set(err, EDS_ERR_CONFIG, "spool_max must be at least 64k");
    return EDS_OK;
}

int eds_agent_create(const eds_agent_config *cfg, eds_agent **out, eds_error *err)
{
    *out = NULL;
    int rc = check_config(cfg, err);
    if (rc != EDS_OK)
        return rc;
    eds_agent *a = calloc(1, sizeof(*a));
    if (!a)
        return eds_error_set(err, EDS_ERR_NOMEM, "out of memory");
    a->dl.udp_fd = -1;
    a->polled_conn = -1;
    a->cfg = *cfg;
    /* Deep-copy every string so the caller's config can go away. */
    char **strs[AGENT_CONFIG_STRINGS];
    const char *srcs[AGENT_CONFIG_STRINGS];
    config_strings(&a->cfg, strs);
    for (size_t i = 0; i < AGENT_CONFIG_STRINGS; i++) {
        srcs[i] = *strs[i];
        *strs[i] = NULL;
    }
    for (size_t i = 0; i < AGENT_CONFIG_STRINGS; i++) {
        if (dup_str(strs[i], srcs[i]) != EDS_OK) {
            rc = eds_error_set(err, EDS_ERR_NOMEM, "out of memory");
            goto fail;
        }
    }
    if (a->cfg.password) {
        a->password = strdup(a->cfg.password);
        if (!a->password) {
            rc = eds_error_set(err, EDS_ERR_NOMEM, "out of memory");
            goto fail;
        }
    } else if (a->cfg.password_file) {
        rc = read_password(a->cfg.password_file, &a->password, err);
        if (rc != EDS_OK)
            goto fail;
    }
    if (a->cfg.window > (int)a->cfg.queue_max && !a->cfg.spool)
        a->cfg.window = (int)a->cfg.queue_max;
    a->scratch = malloc(a->cfg.max_line + 64);
    a->out_cap = a->out_base = 2 * a->cfg.max_line + 4 * OUT_SLACK;
    a->out = malloc(a->out_cap);
    if (!a->scratch || !a->out) {
        rc = eds_error_set(err, EDS_ERR_NOMEM, "out of memory");
        goto fail;
    }
    rc = agq_init(&a->q, a->cfg.queue_max);
    if (rc != EDS_OK) {
        rc = eds_error_set(err, rc, "out of memory for queue_max %zu", a->cfg.queue_max);
        goto fail;
    }
    if (a->cfg.schema) {
        rc = eds_schema_load_file(a->cfg.schema, &a->schema, err);
        if (rc != EDS_OK)
            goto fail;
    }
    uint64_t seed = seed_from_urandom();
    if (a->cfg.spool) {
        rc = spool_open(a->cfg.spool, a->cfg.spool_max, a->cfg.spool_sync, &a->spool, err);
        if (rc != EDS_OK)
            goto fail;
        snprintf(a->stream, sizeof(a->stream), "%s", spool_stream(a->spool));
        a->next_seq = spool_last_seq(a->spool) + 1;
    } else {
        snprintf(a->stream, sizeof(a->stream), "%016" PRIx64, seed_from_urandom());
        a->next_seq = 1;
    }
    if (a->cfg.stream)
        snprintf(a->stream, sizeof(a->stream), "%s", a->cfg.stream);
    if (a->cfg.tls) {
        eds_tls_client_opts topts = {
            .cafile = a->cfg.cafile,
            .certfile = a->cfg.cert,
            .keyfile = a->cfg.key,
            .server_name = a->cfg.server_name ? a->cfg.server_name : a->cfg.gateway_host,
        };
        rc = eds_tls_client_ctx_create(&topts, &a->tls, err);
        if (rc != EDS_OK)
            goto fail;
    }
    /* Commands waiting for the application survive a power cycle with the spool. */
    agent_dl_config dc = {
        .cmd_schema = a->cfg.cmd_schema,
        .dir = a->cfg.spool,
        .to_stdout = a->cfg.cmd_stdout,
        .udp_port = a->cfg.cmd_udp,
        .to_tcp = a->cfg.cmd_tcp,
        .max_line = a->cfg.max_line,
    };
    if ((rc = agent_dl_init(&a->dl, &dc, err)) != EDS_OK)
        goto fail;
    eds_backoff_init(&a->bo, (uint32_t)secs_ms(a->cfg.reconnect_min),
                     (uint32_t)secs_ms(a->cfg.reconnect_max), seed);
    if (a->cfg.read_stdin || a->cfg.tcp_port > 0 || a->cfg.udp_port > 0 || a->cfg.simulate > 0) {
        agent_inputs_config ic = {
            .read_stdin = a->cfg.read_stdin,
            .tcp_port = a->cfg.tcp_port,
            .udp_port = a->cfg.udp_port,
            .simulate = a->cfg.simulate,
            .count = a->cfg.count,
            .max_line = a->cfg.max_line - 64,
            .seed = seed ^ 0x5bd1e995u,
        };
        rc = inputs_open(&ic, agent_accept_record, a, &a->in, err);
        if (rc != EDS_OK)
            goto fail;
    }
    a->st = ST_IDLE;
    a->reconnect_at_ms = eds_monotonic_ms();
    a->acked_flush_at = eds_monotonic_ms() + ACKED_FLUSH_MS;
    eds_log_info("agent %s: gateway %s:%d, stream %s, next seq %" PRIu64 ", %s", a->cfg.device,
                 a->cfg.gateway_host, a->cfg.gateway_port, a->stream, a->next_seq,
                 a->spool ? "spool on disk" : "memory queue only");
    *out = a;
    return EDS_OK;
fail:
    eds_agent_destroy(a);
    return rc;
}

void eds_agent_destroy(eds_agent *a)
{
    if (!a)
        return;
    inputs_close(a->in);
    conn_close(a->conn);
    eds_tls_ctx_destroy(a->tls);
    eds_framer_free(&a->fr);
    spool_close(a->spool);
    agq_free(&a->q);
    eds_schema_destroy(a->schema);
    agent_dl_free(&a->dl);
    if (a->password) {
        memset(a->password, 0, strlen(a->password));
        free(a->password);
    }
    char **strs[AGENT_CONFIG_STRINGS];
    config_strings(&a->cfg, strs);
    for (size_t i = 0; i < AGENT_CONFIG_STRINGS; i++)
        free(*strs[i]);
    free(a->scratch);
    free(a->rx);
    free(a->out);
    free(a);
}

eds_agent *eds_agent_open(const char *conf_path, char *errbuf, size_t errcap)
{
    eds_agent_config cfg;
    eds_agent_config_init(&cfg);
    eds_error err;
    eds_error_clear(&err);
    eds_agent *a = NULL;
    int rc = eds_agent_config_load(&cfg, conf_path, &err);
    if (rc == EDS_OK && cfg.log_level >= 0)
        eds_log_init("edsagent", (enum eds_log_level)cfg.log_level);
    if (rc == EDS_OK)
        rc = eds_agent_create(&cfg, &a, &err);
    eds_agent_config_free(&cfg);
    if (rc != EDS_OK && errbuf && errcap)
        snprintf(errbuf, errcap, "%s", err.msg);
    return rc == EDS_OK ? a : NULL;
}
