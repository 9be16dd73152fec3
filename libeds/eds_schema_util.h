/*
 * eds_schema_util.h - internal helpers of the schema validator (not a
 * public API; the unit tests use them directly).
 *
 * Cerberus writes rule values and document values into its messages with
 * Python's str()/repr(); these helpers reproduce that text for JSON values
 * ("0.0", "1e-05", "True", "'a'", "['string', 'integer']"), and check
 * RFC 3339 date-time strings for the `format` rule.
 */
#ifndef EDS_SCHEMA_UTIL_H
#define EDS_SCHEMA_UTIL_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

/* A growable text buffer with a fixed maximum (>= 3): text past it is cut
 * at a UTF-8 character boundary, "..." is appended and `cut` set; later
 * appends are ignored. Allocation failure sets `nomem`. */
typedef struct eds_schema_buf {
    char *p;
    size_t len;
    size_t cap;
    size_t max;
    bool cut;
    bool nomem;
} eds_schema_buf;

void eds_schema__buf_init(eds_schema_buf *b, size_t max);
void eds_schema__buf_free(eds_schema_buf *b);
void eds_schema__buf_add(eds_schema_buf *b, const char *s, size_t n);
void eds_schema__buf_adds(eds_schema_buf *b, const char *s);
/* Returns the NUL-terminated text (an empty string if nothing was added). */
const char *eds_schema__buf_str(eds_schema_buf *b);

/* Python's repr() of a float into buf (size >= 32): "0.0", "1e+16", "-inf". */
void eds_schema__float_repr(double v, char *buf, size_t size);

/* Python's repr() of a JSON number whose source text is tok[0..len): an
 * integer token (no '.', 'e' or 'E') stays as written, a float token is
 * printed as Python prints the float. */
void eds_schema__number_token_repr(const char *tok, size_t len, double v, eds_schema_buf *b);

/* Python repr()/str() of a document value: strings quoted (repr) or raw
 * (str), booleans True/False, null None, lists [..], objects {..}.
 * A document number has no source text here: an integral value below
 * 2^53 prints as an integer, any other as a Python float. */
void eds_schema__py_repr(const cJSON *v, eds_schema_buf *b);
void eds_schema__py_str(const cJSON *v, eds_schema_buf *b);
/* Python repr() of a string. */
void eds_schema__py_repr_string(const char *s, eds_schema_buf *b);

/* True when s[0..len) is an RFC 3339 date-time:
 * YYYY-MM-DD ("T"|"t") hh:mm:ss[.frac] ("Z"|"z"|(+|-)hh:mm). */
bool eds_schema__rfc3339_valid(const char *s, size_t len);

/* True when a `regex` pattern keeps the limits of eds_schema.h (repetition
 * counts, expanded size, nesting) and repeats no part that can match the
 * empty string, nor lets two alternatives match it: the shapes that make
 * glibc's regcomp take gigabytes or minutes. *size is set to its size once
 * repetitions are expanded. Otherwise false, with the reason in why. It does
 * not check the syntax: regcomp still must accept the pattern. */
bool eds_schema__regex_check(const char *pattern, size_t *size, char *why, size_t why_size);

/* A `regex` rule's compiled matcher: "^(PATTERN)$" plus the cache glibc
 * builds while matching, compiled afresh whenever the bytes matched since
 * the last compile would pass EDS_SCHEMA_REGEX_MATCH_BUDGET. Thread-safe. */
typedef struct eds_schema_rx eds_schema_rx;

/* Compiles pattern (checked by eds_schema__regex_check, and accepted by
 * regcomp alone). EDS_OK and *out set to a matcher the caller frees with
 * eds_schema__rx_destroy (NULL is fine); EDS_ERR_NOMEM; or EDS_ERR_SCHEMA
 * when regcomp refuses it. */
int eds_schema__rx_create(const char *pattern, eds_schema_rx **out);
void eds_schema__rx_destroy(eds_schema_rx *rx);

/* Matches the NUL-terminated s, of strlen len, as a whole. EDS_OK with
 * *matched set; EDS_ERR_TOOLONG when len > EDS_SCHEMA_REGEX_MAX_VALUE
 * (not matched at all); EDS_ERR_NOMEM when compiling afresh failed (the
 * next call tries again). */
int eds_schema__rx_match(eds_schema_rx *rx, const char *s, size_t len, bool *matched);

/* How many times rx was compiled afresh (for tests and benchmarks). */
size_t eds_schema__rx_recompiles(eds_schema_rx *rx);

#endif
