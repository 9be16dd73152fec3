#include "eds_err.h"

#include <stdarg.h>
#include <stdio.h>

const char *eds_strerror(int code)
{
    switch (code) {
    case EDS_OK:
        return "success";
    case EDS_ERR_NOMEM:
        return "out of memory";
    case EDS_ERR_INVAL:
        return "invalid argument";
    case EDS_ERR_IO:
        return "input/output error";
    case EDS_ERR_PARSE:
        return "parse error";
    case EDS_ERR_TOOLONG:
        return "too long";
    case EDS_ERR_SCHEMA:
        return "invalid schema";
    case EDS_ERR_INVALID:
        return "validation failed";
    case EDS_ERR_AUTH:
        return "authentication failed";
    case EDS_ERR_NOTFOUND:
        return "not found";
    case EDS_ERR_AGAIN:
        return "try again";
    case EDS_ERR_CLOSED:
        return "connection closed";
    case EDS_ERR_TLS:
        return "TLS error";
    case EDS_ERR_BROKER:
        return "MQTT broker error";
    case EDS_ERR_FULL:
        return "queue full";
    case EDS_ERR_TIMEOUT:
        return "timed out";
    case EDS_ERR_PROTO:
        return "protocol error";
    case EDS_ERR_CONFIG:
        return "configuration error";
    case EDS_ERR_CORRUPT:
        return "corrupt data";
    case EDS_ERR_STOP:
        return "stopped";
    }
    return "unknown error";
}

int eds_error_set(eds_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
    }
    return code;
}

void eds_error_clear(eds_error *err)
{
    if (err) {
        err->code = EDS_OK;
        err->msg[0] = '\0';
    }
}
