/*
 * gw_paho_store.c - Paho's persistence callbacks on a gw_pubstore. See
 * gw_paho_store.h. Buffers handed to Paho come from its allocator
 * (MQTTAsync_malloc): Paho frees them with its own heap tracking, and a plain
 * malloc'd buffer would be silently leaked.
 */
#include "gw_paho_store.h"

#include "eds_log.h"

#include <stdlib.h>
#include <string.h>

static int ps_open(void **handle, const char *client_id, const char *uri, void *ctx)
{
    (void)client_id;
    (void)uri;
    *handle = ctx;
    return 0;
}

static int ps_close(void *handle)
{
    (void)handle; /* the publisher closes the store after the client is gone */
    return 0;
}

static int ps_put(void *handle, char *key, int n, char *bufs[], int lens[])
{
    gw_paho_store *ps = handle;
    gw_mark mark;
    bool marked = false;
    if (gw_pubstore_is_command(key)) {
        pthread_mutex_lock(&ps->lock);
        if (ps->mark_set && pthread_equal(ps->mark_thread, pthread_self())) {
            mark = ps->mark;
            marked = true;
            ps->mark_set = false;
        }
        pthread_mutex_unlock(&ps->lock);
    }
    int rc = gw_pubstore_put(ps->store, key, n, bufs, lens, marked ? &mark : NULL);
    /* EDS_ERR_IO: logged, and held in memory; the session goes on. */
    return rc == EDS_OK || rc == EDS_ERR_IO ? 0 : MQTTCLIENT_PERSISTENCE_ERROR;
}

static int ps_get(void *handle, char *key, char **buffer, int *buflen)
{
    gw_paho_store *ps = handle;
    return gw_pubstore_get(ps->store, key, MQTTAsync_malloc, buffer, buflen) == EDS_OK
               ? 0
               : MQTTCLIENT_PERSISTENCE_ERROR;
}

static int ps_remove(void *handle, char *key)
{
    gw_paho_store *ps = handle;
    gw_pubstore_remove(ps->store, key); /* a failed write is logged; memory is right */
    return 0;
}

static int ps_keys(void *handle, char ***keys, int *nkeys)
{
    gw_paho_store *ps = handle;
    char **k;
    int n;
    *keys = NULL;
    *nkeys = 0;
    if (gw_pubstore_keys(ps->store, &k, &n) != EDS_OK)
        return MQTTCLIENT_PERSISTENCE_ERROR;
    char **pk = n ? MQTTAsync_malloc((size_t)n * sizeof(*pk)) : NULL;
    int made = 0;
    for (; pk && made < n; made++) {
        size_t len = strlen(k[made]) + 1;
        if (!(pk[made] = MQTTAsync_malloc(len)))
            break;
        memcpy(pk[made], k[made], len);
    }
    for (int i = 0; i < n; i++)
        free(k[i]);
    free(k);
    if (made < n) {
        for (int i = 0; pk && i < made; i++)
            MQTTAsync_free(pk[i]);
        MQTTAsync_free(pk);
        return MQTTCLIENT_PERSISTENCE_ERROR;
    }
    *keys = pk;
    *nkeys = n;
    return 0;
}

static int ps_clear(void *handle)
{
    gw_paho_store *ps = handle;
    gw_pubstore_clear(ps->store);
    return 0;
}

static int ps_containskey(void *handle, char *key)
{
    gw_paho_store *ps = handle;
    return gw_pubstore_contains(ps->store, key) ? 0 : MQTTCLIENT_PERSISTENCE_ERROR;
}

void gw_paho_store_init(gw_paho_store *ps, gw_pubstore *store)
{
    memset(ps, 0, sizeof(*ps));
    ps->store = store;
    pthread_mutex_init(&ps->lock, NULL);
    ps->paho = (MQTTClient_persistence){
        .context = ps,
        .popen = ps_open,
        .pclose = ps_close,
        .pput = ps_put,
        .pget = ps_get,
        .premove = ps_remove,
        .pkeys = ps_keys,
        .pclear = ps_clear,
        .pcontainskey = ps_containskey,
    };
}

void gw_paho_store_free(gw_paho_store *ps)
{
    if (ps->store)
        pthread_mutex_destroy(&ps->lock);
    memset(ps, 0, sizeof(*ps));
}

void gw_paho_store_expect_mark(gw_paho_store *ps, const gw_mark *mark)
{
    pthread_mutex_lock(&ps->lock);
    ps->mark_set = mark != NULL;
    if (mark) {
        ps->mark = *mark;
        ps->mark_thread = pthread_self();
    }
    pthread_mutex_unlock(&ps->lock);
}

void gw_paho_store_discard_logged(const char *dir)
{
    eds_error err;
    eds_error_clear(&err);
    int rc = gw_pubstore_discard(dir, &err);
    if (rc == EDS_OK)
        eds_log_notice("mqtt: clean session (qos is not 2): deleted the session store of an "
                       "earlier qos 2 run in %s; agents resend what it held",
                       dir);
    else if (rc != EDS_ERR_NOTFOUND)
        eds_log_warning("mqtt: %s", err.msg);
}

/* ---- gw_paho_mem: the same callbacks on a gw_memstore ---- */

static int mem_put(void *handle, char *key, int n, char *bufs[], int lens[])
{
    gw_paho_mem *m = handle;
    pthread_mutex_lock(&m->lock);
    int rc = gw_memstore_put(&m->tab, key, n, bufs, lens);
    pthread_mutex_unlock(&m->lock);
    return rc == EDS_OK ? 0 : MQTTCLIENT_PERSISTENCE_ERROR;
}

static int mem_get(void *handle, char *key, char **buffer, int *buflen)
{
    gw_paho_mem *m = handle;
    pthread_mutex_lock(&m->lock);
    int rc = gw_memstore_get(&m->tab, key, MQTTAsync_malloc, buffer, buflen);
    pthread_mutex_unlock(&m->lock);
    return rc == EDS_OK ? 0 : MQTTCLIENT_PERSISTENCE_ERROR;
}

static int mem_remove(void *handle, char *key)
{
    gw_paho_mem *m = handle;
    pthread_mutex_lock(&m->lock);
    gw_memstore_remove(&m->tab, key);
    pthread_mutex_unlock(&m->lock);
    return 0;
}

static int mem_keys(void *handle, char ***keys, int *nkeys)
{
    gw_paho_mem *m = handle;
    pthread_mutex_lock(&m->lock);
    int rc = gw_memstore_keys(&m->tab, MQTTAsync_malloc, MQTTAsync_free, keys, nkeys);
    pthread_mutex_unlock(&m->lock);
    return rc == EDS_OK ? 0 : MQTTCLIENT_PERSISTENCE_ERROR;
}

static int mem_clear(void *handle)
{
    gw_paho_mem *m = handle;
    pthread_mutex_lock(&m->lock);
    gw_memstore_clear(&m->tab);
    pthread_mutex_unlock(&m->lock);
    return 0;
}

static int mem_containskey(void *handle, char *key)
{
    gw_paho_mem *m = handle;
    pthread_mutex_lock(&m->lock);
    bool found = gw_memstore_contains(&m->tab, key);
    pthread_mutex_unlock(&m->lock);
    return found ? 0 : MQTTCLIENT_PERSISTENCE_ERROR;
}

int gw_paho_mem_open(gw_paho_mem *m, size_t hint, eds_error *err)
{
    memset(m, 0, sizeof(*m));
    if (gw_memstore_init(&m->tab, hint) != EDS_OK)
        return eds_error_set(err, EDS_ERR_NOMEM, "mqtt: out of memory");
    pthread_mutex_init(&m->lock, NULL);
    m->paho = (MQTTClient_persistence){
        .context = m,
        .popen = ps_open,
        .pclose = ps_close,
        .pput = mem_put,
        .pget = mem_get,
        .premove = mem_remove,
        .pkeys = mem_keys,
        .pclear = mem_clear,
        .pcontainskey = mem_containskey,
    };
    m->open = true;
    return EDS_OK;
}

void gw_paho_mem_close(gw_paho_mem *m)
{
    if (!m->open)
        return;
    gw_memstore_free(&m->tab);
    pthread_mutex_destroy(&m->lock);
    m->open = false;
}
