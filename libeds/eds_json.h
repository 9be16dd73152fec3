/*
 * eds_json.h - a strict RFC 8259 JSON parser that builds cJSON nodes in an
 * arena, and the JSON text helpers that go with it.
 *
 * Why not cJSON_Parse: cJSON accepts spellings RFC 8259 does not (`01`,
 * `-.5`, `1.`, `+1`, raw control characters in strings, white space other
 * than space/tab/CR/LF), which the gateway would then republish as invalid
 * JSON; and it costs one malloc per node and per string plus a strtod with
 * a localeconv call per number, most of the gateway's own CPU per record.
 * Here a document is one arena (a few blocks), numbers take an exact fast
 * path (Clinger: at most 19 digits of mantissa below 2^53 and a power of ten
 * up to 22, else strtod in the C locale), and the checks the protocol needs
 * are made while parsing: valid UTF-8, no NUL (raw or \u0000), no lone
 * surrogate, no duplicate key in any object, only finite numbers, nesting at
 * most EDS_JSON_MAX_DEPTH.
 *
 * The nodes are ordinary cJSON structs, so every read-only cJSON function
 * (getters, cJSON_Print*, cJSON_Compare) works on them. They belong to the
 * arena: never cJSON_Delete, detach or modify them; eds_json_doc_free()
 * releases them all.
 */
#ifndef EDS_JSON_H
#define EDS_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "eds_err.h"

/* Deepest nesting of arrays and objects accepted (cJSON's own limit). */
#define EDS_JSON_MAX_DEPTH 1000

struct eds_json_block;

/* A parsed document; embedded by the caller (eds_json_doc_free releases it). */
typedef struct eds_json_doc {
    cJSON *root;
    /* With a capture key: the raw text of the root object's member of that name, from
     * the first byte of its value to the last (pointers into the parsed text), or NULL
     * when the root is not an object or has no such member. */
    const char *span;
    size_t span_len;
    bool span_ws; /* the span holds white space between tokens */
    struct eds_json_block *arena;
} eds_json_doc;

/*
 * Parses text[0..len) as exactly one JSON value, white space allowed around it.
 * capture: NULL, or a key whose member value span in the root object to report.
 * Returns EDS_OK (doc filled; free it with eds_json_doc_free), EDS_ERR_PARSE (err
 * says why, e.g. "not valid JSON at byte 12", "duplicate key \"a\"", "number out of
 * range", "\u0000 is not allowed in strings") or EDS_ERR_NOMEM. On error doc is
 * empty (freeing it is harmless).
 */
int eds_json_parse(const char *text, size_t len, const char *capture, eds_json_doc *doc,
                   eds_error *err);

/* Releases the arena and zeroes doc; a zeroed doc is fine. */
void eds_json_doc_free(eds_json_doc *doc);

/* True when text[0..len) is exactly one strict JSON value (white space around it
 * allowed). Allocates only while checking; for payloads that are passed on as text. */
bool eds_json_is_value(const char *text, size_t len);

/* Copies JSON text (valid JSON) without the white space between tokens into out (at
 * least len bytes); returns the length written. Strings are copied as they are. */
size_t eds_json_minify(const char *in, size_t len, char *out);

/* The text of the value of the n-th member (0-based, in the order written) of the
 * minified JSON object json[0..len) (valid JSON, e.g. checked by eds_json_parse and passed
 * through eds_json_minify): *v points into json, *vlen its length. False when json is not
 * an object or has fewer members. */
bool eds_json_member_text(const char *json, size_t len, size_t n, const char **v, size_t *vlen);

/* Appends s[0..n) as a JSON string literal, quotes included, at buf+*len, bounded by
 * cap: '"', '\\' and control characters escaped (\n, \r, \t, else \u00XX). Bytes
 * from 0x80 up are copied when s is valid UTF-8, else each is written as \u00XX (the
 * text is then read as Latin-1), so the result is always valid JSON in UTF-8. Returns
 * false (and leaves *len) when it does not fit; at most 6 * n + 2 bytes are needed. */
bool eds_json_append_text(char *buf, size_t cap, size_t *len, const char *s, size_t n);

/* True when s[0..len) is well-formed UTF-8 (no overlongs, no surrogates). */
bool eds_utf8_valid(const char *s, size_t len);

#endif
