/*
 * eds_schema.h - the schema validator: a cJSON document in, a verdict out.
 *
 * A schema is a JSON file written in the Cerberus dialect described in
 * docs/schema.md (field name -> rules object). It is loaded and compiled
 * once: every rule value is checked, regexes are compiled, error texts are
 * pre-formatted and fields are sorted for binary search. The compiled
 * eds_schema is immutable, so one instance may be shared by any number of
 * threads validating at the same time.
 *
 * Validation does no I/O and, for a valid document, allocates nothing
 * (a `regex` rule calls glibc's regexec, which may allocate internally, and
 * now and then compiles its pattern afresh to drop what regexec kept).
 * An invalid document gets a new cJSON object in Cerberus's error layout:
 *   {"power_factor": ["must be between 0.0 and 1.0"],
 *    "meter": [{"phase": ["required field"]}],
 *    "readings": [{"1": [{"a": ["must be of integer type"]}]}]}
 * with keys in the order Cerberus gives them (sorted; list items by index).
 */
#ifndef EDS_SCHEMA_H
#define EDS_SCHEMA_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "eds_err.h"

/* Deepest nesting of `schema` rules in a schema file (and so the deepest
 * level of a document the validator descends into). */
#define EDS_SCHEMA_MAX_DEPTH 64

/* Limits on a `regex` rule's pattern (docs/schema.md, "Regex limits"): beyond
 * them glibc's regcomp takes gigabytes or minutes, so the load fails. */
#define EDS_SCHEMA_REGEX_MAX_REPEAT 255  /* largest count in x{n} / x{n,m} */
#define EDS_SCHEMA_REGEX_MAX_SIZE 1000   /* atoms once repetitions are expanded */
#define EDS_SCHEMA_REGEX_MAX_NESTING 32  /* groups inside groups */
#define EDS_SCHEMA_REGEX_MAX_TOTAL 10000 /* sizes of all regex rules of a schema */
/* ...and on matching it, which glibc's cache of matcher states makes cost
 * time and memory in proportion to the bytes matched: a longer string value
 * fails the rule unmatched, and a rule's pattern is compiled afresh (its
 * cache dropped) before the bytes matched since its last compile pass the
 * budget. */
#define EDS_SCHEMA_REGEX_MAX_VALUE 4096    /* bytes of a value matched against a regex */
#define EDS_SCHEMA_REGEX_MATCH_BUDGET 8192 /* bytes matched between two compiles */

/* Opaque, immutable after load but for each `regex` rule's matcher cache,
 * which a lock guards: shareable across threads. */
typedef struct eds_schema eds_schema;

/*
 * Loads and compiles the schema file at path. On success returns EDS_OK and
 * sets *out to a new schema the caller frees with eds_schema_destroy().
 * Otherwise returns EDS_ERR_IO (the file cannot be read), EDS_ERR_SCHEMA
 * (not valid JSON, or a rule is wrong) or EDS_ERR_NOMEM; err->msg names
 * the file, the field path and the rule, e.g.
 *   "schemas/x.json: field 'meter.phase': rule 'min': expected a number".
 */
int eds_schema_load_file(const char *path, eds_schema **out, eds_error *err);

/* Same from memory (text need not be NUL-terminated); name is used in
 * messages and returned by eds_schema_name(). */
int eds_schema_load_json(const char *text, size_t len, const char *name, eds_schema **out,
                         eds_error *err);

/* Frees s; NULL is fine. */
void eds_schema_destroy(eds_schema *s);

/*
 * Validates doc, which must be a cJSON object (EDS_ERR_INVAL otherwise).
 * Returns EDS_OK when valid (nothing is allocated on this path, *errors is
 * set to NULL), EDS_ERR_INVALID when not, with *errors set to a NEW cJSON
 * object in Cerberus's error layout that the caller frees with
 * cJSON_Delete, or EDS_ERR_NOMEM (then *errors is NULL). Reentrant; s and
 * doc are not modified.
 */
int eds_schema_validate(const eds_schema *s, const cJSON *doc, cJSON **errors);

/* The file name/path given at load; owned by s. */
const char *eds_schema_name(const eds_schema *s);

#endif
