/*
 * gw_guard.h - the per-address guard: connections per source address, the
 * growing delay after failed logins, and the per-device max_rate bucket.
 * Pure: no I/O; the clock (monotonic milliseconds) is passed in.
 *
 * Owns the address table: at most GW_GUARD_MAX_ADDRS entries, so many
 * source addresses (an IPv6 prefix) cannot grow it without end; past that
 * an address goes untracked (no per-address cap, no login delay). An entry
 * lives while it has connections, a failed login younger than 10 minutes, a
 * connection opened in the last GW_OPENS_WINDOW_MS, or a good login younger
 * than a week (gw_guard_sweep frees the rest).
 *
 * Counts the connections each address opened lately (this window of
 * GW_OPENS_WINDOW_MS and the one before): pre-auth eviction closes a
 * connection of an address that keeps opening them before one of an address
 * that opened one (a device's first login from there).
 *
 * Also owns the known-good addresses: those a device logged in from with the
 * right password. Pre-auth eviction spares their connections while others
 * can go (gw_conn.c), so a device that got in once keeps getting in from
 * there during a flood of connections. At most GW_GUARD_MAX_GOOD of them;
 * past that the one whose last good login is oldest is forgotten. They are
 * kept across restarts by gw_goodfile.h, through gw_guard_restore_good,
 * gw_guard_each_good and the change marks below.
 */
#ifndef GW_GUARD_H
#define GW_GUARD_H

#include <arpa/inet.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GW_GUARD_MAX_ADDRS 65536
#define GW_LOGIN_DELAY_BASE_MS 200     /* second failed login from an address waits this long */
#define GW_LOGIN_DELAY_MAX_MS 10000    /* ... doubling up to this */
#define GW_LOGIN_FAIL_FORGET_MS 600000 /* an address's failures are forgotten after 10 min */
#define GW_GUARD_MAX_GOOD 16384        /* known-good addresses (a quarter of the table) */
#define GW_GOOD_FORGET_MS 604800000LL  /* a good login is remembered for a week */
#define GW_OPENS_WINDOW_MS 10000       /* connections opened: counted per 10 s */

/* The max_rate bucket of a device. */
typedef struct gw_bucket {
    double tokens; /* records that may arrive now */
    int64_t ms;    /* last refill; 0: never */
} gw_bucket;

/* One source address: connections now, recent failed logins. */
typedef struct gw_ip {
    char addr[INET6_ADDRSTRLEN];
    uint32_t conns;
    uint32_t preauth; /* of conns, those without a good hello yet (gw_conn.c counts) */
    uint32_t fails;
    int64_t last_fail_ms;
    bool good;                    /* a device logged in from here (known-good) */
    int64_t good_ms;              /* its last good login */
    int64_t opens_win;            /* window (now / GW_OPENS_WINDOW_MS) of opens */
    uint32_t opens, opens_before; /* connections opened in it and in the one before */
    struct gw_ip *next;
} gw_ip;

typedef struct gw_guard {
    gw_ip **tab; /* GUARD_BUCKETS chains */
    size_t n;
    size_t n_good; /* entries with good set, <= GW_GUARD_MAX_GOOD */
    /* Since the owner of the file last cleared them: addresses that became
     * known-good, and good logins from addresses known already. */
    uint32_t good_added;
    bool good_seen;
    gw_bucket fails; /* failed logins of all addresses together (max_auth_failures) */
} gw_guard;

/* EDS_OK or EDS_ERR_NOMEM. */
int gw_guard_init(gw_guard *g);
void gw_guard_free(gw_guard *g);

/* The entry of addr, created on first use; NULL when untracked (table full
 * or out of memory). The pointer stays valid while the entry has
 * connections (conns > 0). */
gw_ip *gw_guard_ip(gw_guard *g, const char *addr);

/* True when a new connection from ip is within max_per_ip (0: no limit). */
bool gw_guard_conn_allowed(const gw_ip *ip, uint32_t max_per_ip);

/* ip opened a connection at now. */
void gw_guard_opened(gw_ip *ip, int64_t now);

/* Connections ip opened in this window and the one before (NULL: untracked,
 * UINT32_MAX). */
uint32_t gw_guard_recent_opens(const gw_ip *ip, int64_t now);

/* A failed login from ip at now: the delay before answering it, in ms
 * (0 for the first failure; then 200 ms doubling up to 10 s). */
int64_t gw_guard_login_failed(gw_ip *ip, int64_t now);

/* A failed login against the global budget of rate per second (<= 0: none):
 * true when it is within it (it takes a token), false when it is over (the
 * caller answers it after GW_LOGIN_DELAY_MAX_MS). So addresses that rotate
 * (each one's first failure is not delayed) cannot have thousands of
 * passwords a second checked and answered. */
bool gw_guard_fail_budget(gw_guard *g, double rate, int64_t now);

/* A successful login from ip at now: the address's failures are forgotten
 * and it is known-good from now on (the oldest known-good address is
 * forgotten when GW_GUARD_MAX_GOOD are known already). */
void gw_guard_login_ok(gw_guard *g, gw_ip *ip, int64_t now);

/* Makes addr known-good with its last good login at good_ms (a restart:
 * gw_goodfile.h), unless it is known with a later one. Counts as no change.
 * False when addr cannot be tracked (table full, out of memory). */
bool gw_guard_restore_good(gw_guard *g, const char *addr, int64_t good_ms);

/* Calls fn for each known-good address (in table order). */
void gw_guard_each_good(const gw_guard *g, void (*fn)(void *ctx, const gw_ip *ip), void *ctx);

/* True when ip is known-good (NULL: untracked, not known). */
bool gw_guard_known_good(const gw_ip *ip);

/* Forgets failures older than 10 minutes and good logins older than a week,
 * and frees entries with no connection, no failure, no good login and no
 * recent opens left. */
void gw_guard_sweep(gw_guard *g, int64_t now);

/* max_rate (records per second, <= 0: none): refills the bucket up to one
 * second's worth (at least 1) and returns true while it is empty. */
bool gw_bucket_empty(gw_bucket *b, double rate, int64_t now);

/* Takes one record's token (after a refill); the bucket may go below 0. */
void gw_bucket_take(gw_bucket *b, double rate, int64_t now);

#endif
