/*
 * gw_loop.h - the event loop: the only file that calls epoll_*.
 *
 * Level-triggered. Each registered fd carries an opaque pointer that is
 * handed back with its events; the loop does not own the fds.
 */
#ifndef GW_LOOP_H
#define GW_LOOP_H

#include <stdint.h>

#include "eds_err.h"

#define GW_EV_READ 1u
#define GW_EV_WRITE 2u
#define GW_EV_ERROR 4u /* hang-up or error: read to find out */

typedef struct gw_loop gw_loop;

typedef void (*gw_loop_fn)(void *ctx, void *ptr, uint32_t events);

int gw_loop_create(gw_loop **out, eds_error *err);
void gw_loop_destroy(gw_loop *l); /* NULL ok */

/* Registers fd for events (GW_EV_READ|GW_EV_WRITE, possibly 0). EDS_OK or EDS_ERR_IO. */
int gw_loop_add(gw_loop *l, int fd, uint32_t events, void *ptr);
int gw_loop_mod(gw_loop *l, int fd, uint32_t events, void *ptr);
void gw_loop_del(gw_loop *l, int fd);

/* Waits up to timeout_ms (-1 forever) and calls fn for each ready fd.
 * Returns the number of fds handled, or EDS_ERR_IO. */
int gw_loop_wait(gw_loop *l, int timeout_ms, gw_loop_fn fn, void *ctx);

#endif
