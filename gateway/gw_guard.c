#include "gw_guard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eds_bytes.h"
#include "eds_err.h"

#define GUARD_BUCKETS 4096

int gw_guard_init(gw_guard *g)
{
    g->n = 0;
    g->n_good = 0;
    g->good_added = 0;
    g->good_seen = false;
    g->fails = (gw_bucket){0};
    g->tab = calloc(GUARD_BUCKETS, sizeof(*g->tab));
    return g->tab ? EDS_OK : EDS_ERR_NOMEM;
}

void gw_guard_free(gw_guard *g)
{
    if (!g->tab)
        return;
    for (size_t i = 0; i < GUARD_BUCKETS; i++)
        while (g->tab[i]) {
            gw_ip *n = g->tab[i]->next;
            free(g->tab[i]);
            g->tab[i] = n;
        }
    free(g->tab);
    g->tab = NULL;
    g->n = 0;
    g->n_good = 0;
}

gw_ip *gw_guard_ip(gw_guard *g, const char *addr)
{
    gw_ip **b = &g->tab[eds_fnv1a(addr, strlen(addr)) & (GUARD_BUCKETS - 1)];
    for (gw_ip *ip = *b; ip; ip = ip->next)
        if (strcmp(ip->addr, addr) == 0)
            return ip;
    if (g->n >= GW_GUARD_MAX_ADDRS)
        return NULL;
    gw_ip *ip = calloc(1, sizeof(*ip));
    if (!ip)
        return NULL;
    g->n++;
    snprintf(ip->addr, sizeof(ip->addr), "%s", addr);
    ip->next = *b;
    *b = ip;
    return ip;
}

bool gw_guard_conn_allowed(const gw_ip *ip, uint32_t max_per_ip)
{
    return !ip || max_per_ip == 0 || ip->conns < max_per_ip;
}

void gw_guard_opened(gw_ip *ip, int64_t now)
{
    if (!ip)
        return;
    int64_t win = now / GW_OPENS_WINDOW_MS;
    if (ip->opens_win != win) {
        ip->opens_before = ip->opens_win == win - 1 ? ip->opens : 0;
        ip->opens = 0;
        ip->opens_win = win;
    }
    if (ip->opens < UINT32_MAX / 2)
        ip->opens++;
}

uint32_t gw_guard_recent_opens(const gw_ip *ip, int64_t now)
{
    if (!ip)
        return UINT32_MAX;
    int64_t win = now / GW_OPENS_WINDOW_MS;
    if (ip->opens_win == win)
        return ip->opens + ip->opens_before;
    return ip->opens_win == win - 1 ? ip->opens : 0;
}

int64_t gw_guard_login_failed(gw_ip *ip, int64_t now)
{
    if (!ip)
        return 0;
    ip->fails++;
    ip->last_fail_ms = now;
    if (ip->fails <= 1)
        return 0;
    int64_t delay = (int64_t)GW_LOGIN_DELAY_BASE_MS << (ip->fails > 7 ? 6 : ip->fails - 2);
    return delay > GW_LOGIN_DELAY_MAX_MS ? GW_LOGIN_DELAY_MAX_MS : delay;
}

bool gw_guard_fail_budget(gw_guard *g, double rate, int64_t now)
{
    if (gw_bucket_empty(&g->fails, rate, now))
        return false;
    gw_bucket_take(&g->fails, rate, now);
    return true;
}

static void forget_good(gw_guard *g, gw_ip *ip)
{
    ip->good = false;
    g->n_good--;
}

/* The known-good entry with the oldest good login. A scan of the table: it
 * runs only when GW_GUARD_MAX_GOOD devices' addresses are known already. */
static gw_ip *oldest_good(gw_guard *g)
{
    gw_ip *old = NULL;
    for (size_t i = 0; i < GUARD_BUCKETS; i++)
        for (gw_ip *ip = g->tab[i]; ip; ip = ip->next)
            if (ip->good && (!old || ip->good_ms < old->good_ms))
                old = ip;
    return old;
}

/* ip becomes known-good, making room when GW_GUARD_MAX_GOOD are known. */
static void make_good(gw_guard *g, gw_ip *ip)
{
    if (g->n_good >= GW_GUARD_MAX_GOOD) {
        gw_ip *old = oldest_good(g);
        if (old)
            forget_good(g, old);
    }
    ip->good = true;
    g->n_good++;
}

void gw_guard_login_ok(gw_guard *g, gw_ip *ip, int64_t now)
{
    if (!ip)
        return;
    ip->fails = 0;
    if (!ip->good) {
        make_good(g, ip);
        g->good_added++;
    } else {
        g->good_seen = true;
    }
    ip->good_ms = now;
}

bool gw_guard_restore_good(gw_guard *g, const char *addr, int64_t good_ms)
{
    gw_ip *ip = gw_guard_ip(g, addr);
    if (!ip)
        return false;
    if (!ip->good) {
        make_good(g, ip);
        ip->good_ms = good_ms;
    } else if (good_ms > ip->good_ms) {
        ip->good_ms = good_ms;
    }
    return true;
}

void gw_guard_each_good(const gw_guard *g, void (*fn)(void *ctx, const gw_ip *ip), void *ctx)
{
    for (size_t i = 0; i < GUARD_BUCKETS; i++)
        for (const gw_ip *ip = g->tab[i]; ip; ip = ip->next)
            if (ip->good)
                fn(ctx, ip);
}

bool gw_guard_known_good(const gw_ip *ip)
{
    return ip && ip->good;
}

void gw_guard_sweep(gw_guard *g, int64_t now)
{
    for (size_t i = 0; i < GUARD_BUCKETS; i++) {
        gw_ip **pp = &g->tab[i];
        while (*pp) {
            gw_ip *ip = *pp;
            if (ip->fails && now - ip->last_fail_ms > GW_LOGIN_FAIL_FORGET_MS)
                ip->fails = 0;
            if (ip->good && now - ip->good_ms > GW_GOOD_FORGET_MS)
                forget_good(g, ip);
            if (ip->conns == 0 && ip->fails == 0 && !ip->good &&
                gw_guard_recent_opens(ip, now) == 0) {
                *pp = ip->next;
                free(ip);
                g->n--;
            } else {
                pp = &ip->next;
            }
        }
    }
}

bool gw_bucket_empty(gw_bucket *b, double rate, int64_t now)
{
    if (rate <= 0)
        return false;
    double burst = rate < 1 ? 1 : rate; /* one second's worth */
    if (b->ms == 0)
        b->tokens = burst;
    else
        b->tokens += (double)(now - b->ms) * rate / 1000.0;
    if (b->tokens > burst)
        b->tokens = burst;
    b->ms = now;
    return b->tokens < 1;
}

void gw_bucket_take(gw_bucket *b, double rate, int64_t now)
{
    if (rate <= 0)
        return;
    gw_bucket_empty(b, rate, now);
    b->tokens -= 1;
}
