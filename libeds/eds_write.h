/*
 * eds_write.h - write(2) to a pipe or file without SIGPIPE, for library code.
 *
 * A library must not change the process's signal dispositions, yet a write to
 * a pipe whose reader closed raises SIGPIPE, which kills a program that did not
 * ignore it. eds_write blocks SIGPIPE in the calling thread for the write, and
 * if the write failed with EPIPE consumes the SIGPIPE it raised (unless one was
 * pending before), then restores the thread's signal mask. Sockets need none of
 * this: send(MSG_NOSIGNAL).
 */
#ifndef EDS_WRITE_H
#define EDS_WRITE_H

#include <stddef.h>
#include <sys/types.h>

/* write(fd, buf, len), with errno as write left it (EPIPE instead of a signal). */
ssize_t eds_write(int fd, const void *buf, size_t len);

#endif
