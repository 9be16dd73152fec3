/*
 * eds_err.h - the one error convention of EDS.
 *
 * Every fallible function returns an int: EDS_OK (0) on success or one of
 * the negative codes below. Codes are append-only: never renumber one, a
 * log line or a test may have recorded it. eds_strerror() names a code.
 * Details (which file, which line, which field) go into a caller-owned
 * eds_error; leaf modules fill it in, the caller decides whether to log.
 */
#ifndef EDS_ERR_H
#define EDS_ERR_H

#include <stddef.h>

enum {
    EDS_OK = 0,
    EDS_ERR_NOMEM = -1,    /* allocation failed */
    EDS_ERR_INVAL = -2,    /* bad argument or bad value */
    EDS_ERR_IO = -3,       /* a system call failed; errno-derived text in eds_error */
    EDS_ERR_PARSE = -4,    /* input is not well-formed (JSON, config syntax) */
    EDS_ERR_TOOLONG = -5,  /* a line or value exceeds its limit */
    EDS_ERR_SCHEMA = -6,   /* a schema file is invalid */
    EDS_ERR_INVALID = -7,  /* a document failed validation */
    EDS_ERR_AUTH = -8,     /* authentication failed */
    EDS_ERR_NOTFOUND = -9, /* no such entry */
    EDS_ERR_AGAIN = -10,   /* would block / need more input; try later */
    EDS_ERR_CLOSED = -11,  /* the peer closed the connection */
    EDS_ERR_TLS = -12,     /* TLS handshake or I/O failed */
    EDS_ERR_BROKER = -13,  /* the MQTT broker refused or is unreachable */
    EDS_ERR_FULL = -14,    /* a bounded queue or buffer is full */
    EDS_ERR_TIMEOUT = -15, /* a deadline passed */
    EDS_ERR_PROTO = -16,   /* a well-formed message that breaks the protocol */
    EDS_ERR_CONFIG = -17,  /* a configuration file or option is wrong */
    EDS_ERR_CORRUPT = -18, /* stored data failed its checksum */
    EDS_ERR_STOP = -19,    /* a callback asked its caller to stop */
};

/* Static text for a code; never NULL, also for unknown codes. */
const char *eds_strerror(int code);

/* Details of the last error, owned by the caller (usually on its stack). */
typedef struct eds_error {
    int code;
    char msg[512];
} eds_error;

/* Formats msg into err (if err is not NULL) and returns code, so that a
 * leaf can write `return eds_error_set(err, EDS_ERR_INVAL, "...", ...);`. */
int eds_error_set(eds_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Clears err to EDS_OK and an empty message. */
void eds_error_clear(eds_error *err);

#endif
