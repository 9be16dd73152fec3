/*
 * eds_schema_compiled.h - the compiled form of a schema, shared by the
 * loader (eds_schema_load.c builds and frees it) and the validator
 * (eds_schema_validate.c only reads it). Not a public API.
 *
 * A schema is a tree of mappings (field name -> rules) and rules; every
 * message a rule can report is formatted at load. Names, `allowed` and
 * `forbidden` lists point into the parsed schema (eds_schema.tree), which
 * lives as long as the schema.
 */
#ifndef EDS_SCHEMA_COMPILED_H
#define EDS_SCHEMA_COMPILED_H

#include "eds_schema.h"
#include "eds_schema_util.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Longest message built from a value ("unallowed value ...", "must be of ... type"). */
#define EDS_SCHEMA_MSG_MAX 4096
/* A free slot of mapping.slots. */
#define SLOT_EMPTY UINT32_MAX

enum {
    TY_STRING = 1 << 0,
    TY_INTEGER = 1 << 1,
    TY_FLOAT = 1 << 2,
    TY_NUMBER = 1 << 3,
    TY_BOOLEAN = 1 << 4,
    TY_DICT = 1 << 5,
    TY_LIST = 1 << 6,
};

typedef struct mapping mapping;
typedef struct rules rules;

typedef struct bound {
    bool on;
    double v;
    char *msg;
} bound;

struct rules {
    unsigned types; /* TY_* bits; 0 when there is no type rule */
    bool nullable;
    bool has_empty, empty;
    bool required;
    int allow_unknown; /* -1: not set here */
    bool has_between, has_format;
    double lo, hi;
    bound min, max, minlen, maxlen;
    char *type_msg, *between_msg, *regex_msg;
    eds_schema_rx *rx;      /* the `regex` rule's matcher; NULL when there is none */
    const cJSON *allowed;   /* array inside the schema's parsed tree */
    const cJSON *forbidden; /* idem */
    mapping *map;           /* `schema` for a dict value */
    rules *items;           /* `schema` for the items of a list value */
};

typedef struct field {
    const char *name; /* points into the schema's parsed tree */
    uint32_t hash;    /* of name */
    size_t req_idx;   /* position in mapping.req when required */
    rules r;
} field;

struct mapping {
    field *fields; /* sorted by name */
    size_t n;
    uint32_t *slots; /* open-addressing index into fields; SLOT_EMPTY when free */
    size_t mask;     /* slots has mask + 1 entries, a power of two >= 2n */
    size_t *req;     /* indexes of the required fields */
    size_t nreq;
    bool allow_unknown;
};

struct eds_schema {
    char *name;
    cJSON *tree; /* the parsed schema; rules point into it */
    mapping *top;
};

/* Field lookup hashes every key of every document, so the hash reads only
 * the length and three bytes (strlen is vectorised; a byte-wise hash of the
 * whole key was most of the validation time). Names that collide only cost
 * a strcmp each. */
static inline uint32_t eds_schema__hash_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0)
        return 0;
    uint32_t h = (uint32_t)n * 0x9E3779B1u;
    h ^= ((uint32_t)(unsigned char)s[0] << 16 | (uint32_t)(unsigned char)s[n / 2] << 8 |
          (uint32_t)(unsigned char)s[n - 1]) *
         0x85EBCA6Bu;
    return h ^ (h >> 15);
}

#endif
