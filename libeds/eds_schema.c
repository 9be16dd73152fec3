/*
 * eds_schema.c - loads a Cerberus-style schema (JSON) into a compiled,
 * immutable form, and validates cJSON documents against it.
 *
 * Compiling does all the work that does not depend on the document: rule
 * values are checked, regexes compiled, messages formatted (numbers exactly
 * as Python would print the schema's values), fields sorted for binary
 * search and allow_unknown resolved through the levels. Validating then
 * only walks the document; it allocates only to report errors.
 *
 * Error order follows Cerberus 1.3, which keeps its error list sorted by
 * document path and then schema path: fields come out sorted by name, list
 * items by index, and a field's messages by rule name (which is why the
 * checks below run in alphabetical order of their rule).
 */
#include "eds_schema.h"

#include "eds_schema_util.h"

#include <errno.h>
#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A schema file larger than this is refused rather than read. */
#define SCHEMA_MAX_FILE (4u * 1024 * 1024)
/* Longest message built from a document value ("unallowed value ..."). */
#define MSG_MAX 4096
/* Required fields tracked with a bitmap while walking a document; any
 * beyond this are looked up by name instead. */
#define REQ_BITS 1024
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

static const struct {
    const char *name;
    unsigned bit;
} type_names[] = {
    {"string", TY_STRING},   {"integer", TY_INTEGER}, {"float", TY_FLOAT}, {"number", TY_NUMBER},
    {"boolean", TY_BOOLEAN}, {"dict", TY_DICT},       {"list", TY_LIST},
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
    bool has_between, has_regex, has_format;
    double lo, hi;
    bound min, max, minlen, maxlen;
    char *type_msg, *between_msg, *regex_msg;
    regex_t re;
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

static const char MSG_NULL[] = "null value not allowed";
static const char MSG_EMPTY[] = "empty values not allowed";
static const char MSG_REQUIRED[] = "required field";
static const char MSG_UNKNOWN[] = "unknown field";
static const char MSG_DATETIME[] = "value is not a valid RFC 3339 date-time";

/* ---------------------------------------------------------------------- */
/* Freeing                                                                 */

static void mapping_free(mapping *m);

static void rules_free(rules *r)
{
    free(r->type_msg);
    free(r->min.msg);
    free(r->max.msg);
    free(r->between_msg);
    free(r->minlen.msg);
    free(r->maxlen.msg);
    free(r->regex_msg);
    if (r->has_regex)
        regfree(&r->re);
    mapping_free(r->map);
    if (r->items) {
        rules_free(r->items);
        free(r->items);
    }
    memset(r, 0, sizeof(*r));
}

static void mapping_free(mapping *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++)
        rules_free(&m->fields[i].r);
    free(m->fields);
    free(m->req);
    free(m->slots);
    free(m);
}

void eds_schema_destroy(eds_schema *s)
{
    if (!s)
        return;
    mapping_free(s->top);
    cJSON_Delete(s->tree);
    free(s->name);
    free(s);
}

const char *eds_schema_name(const eds_schema *s)
{
    return s->name;
}

/* ---------------------------------------------------------------------- */
/* Compiling                                                               */

/* Where a number of the schema was written, so messages can print it the
 * way Python prints the value json.load gives ("0.0" stays "0.0"). */
typedef struct numtok {
    const cJSON *node;
    const char *tok;
    size_t len;
} numtok;

typedef struct cctx {
    const char *name;
    eds_error *err;
    numtok *toks; /* sorted by node */
    size_t ntoks;
    char path[512]; /* dotted field path of the rules being compiled */
    size_t plen;
    size_t regex_total; /* expanded size of the regex rules so far */
} cctx;

static int fail(cctx *c, const char *rule, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Reports "<file>: field '<path>': rule '<rule>': <what>". */
static int fail(cctx *c, const char *rule, const char *fmt, ...)
{
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (rule)
        return eds_error_set(c->err, EDS_ERR_SCHEMA, "%s: field '%s': rule '%s': %s", c->name,
                             c->path, rule, what);
    return eds_error_set(c->err, EDS_ERR_SCHEMA, "%s: field '%s': %s", c->name, c->path, what);
}

static int nomem(cctx *c)
{
    return eds_error_set(c->err, EDS_ERR_NOMEM, "%s: out of memory", c->name);
}

/* Appends ".name" (or "name" at the top) or "[]" to the path; returns the
 * old length for path_pop. A path too long for the buffer is cut. */
static size_t path_push(cctx *c, const char *seg, bool item)
{
    size_t old = c->plen;
    int n;
    if (item)
        n = snprintf(c->path + c->plen, sizeof(c->path) - c->plen, "[]");
    else
        n = snprintf(c->path + c->plen, sizeof(c->path) - c->plen, "%s%s", c->plen ? "." : "", seg);
    if (n > 0)
        c->plen += (size_t)n;
    if (c->plen >= sizeof(c->path))
        c->plen = sizeof(c->path) - 1;
    return old;
}

static void path_pop(cctx *c, size_t old)
{
    c->plen = old;
    c->path[old] = '\0';
}

static int cmp_numtok(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)((const numtok *)a)->node;
    uintptr_t y = (uintptr_t)((const numtok *)b)->node;
    return x < y ? -1 : x > y;
}

static void collect_number_nodes(const cJSON *n, numtok *out, size_t max, size_t *count)
{
    for (; n; n = n->next) {
        if (cJSON_IsNumber(n)) {
            if (*count < max)
                out[*count].node = n;
            (*count)++;
        }
        if (n->child)
            collect_number_nodes(n->child, out, max, count);
    }
}

/* Pairs every number node of tree with its token in text: both are met in
 * the same order, the text scanned outside strings, the tree in pre-order. */
static int map_number_tokens(cctx *c, const char *text, size_t len, const cJSON *tree)
{
    size_t ntext = 0;
    for (int pass = 0; pass < 2; pass++) {
        size_t k = 0;
        for (size_t i = 0; i < len;) {
            char ch = text[i];
            if (ch == '"') {
                for (i++; i < len && text[i] != '"'; i++) {
                    if (text[i] == '\\')
                        i++;
                }
                i++;
            } else if (ch == '-' || (ch >= '0' && ch <= '9')) {
                size_t start = i;
                while (i < len && strchr("0123456789+-.eE", text[i]) && text[i] != '\0')
                    i++;
                if (pass == 1 && k < c->ntoks) {
                    c->toks[k].tok = text + start;
                    c->toks[k].len = i - start;
                }
                k++;
            } else {
                i++;
            }
        }
        if (pass == 0) {
            ntext = k;
            c->toks = calloc(ntext ? ntext : 1, sizeof(*c->toks));
            if (!c->toks)
                return nomem(c);
            size_t nnodes = 0;
            collect_number_nodes(tree, c->toks, ntext, &nnodes);
            if (nnodes != ntext) {
                /* Cannot happen for text cJSON accepted; fall back to float repr. */
                free(c->toks);
                c->toks = NULL;
                return EDS_OK;
            }
            c->ntoks = ntext;
        }
    }
    /* Tokens were stored in text order, nodes in the same order: now sort by node. */
    qsort(c->toks, c->ntoks, sizeof(*c->toks), cmp_numtok);
    return EDS_OK;
}

static void number_repr(const cctx *c, const cJSON *n, eds_schema_buf *b)
{
    numtok key = {.node = n};
    const numtok *t =
        c->toks ? bsearch(&key, c->toks, c->ntoks, sizeof(*c->toks), cmp_numtok) : NULL;
    if (t) {
        eds_schema__number_token_repr(t->tok, t->len, n->valuedouble, b);
    } else {
        char tmp[64];
        eds_schema__float_repr(n->valuedouble, tmp, sizeof(tmp));
        eds_schema__buf_adds(b, tmp);
    }
}

/* Returns a malloc'ed "<prefix><value><suffix>", value as Python prints it. */
static char *msg_with_number(const cctx *c, const char *prefix, const cJSON *n, const char *mid,
                             const cJSON *n2)
{
    eds_schema_buf b;
    eds_schema__buf_init(&b, MSG_MAX);
    eds_schema__buf_adds(&b, prefix);
    number_repr(c, n, &b);
    if (mid) {
        eds_schema__buf_adds(&b, mid);
        number_repr(c, n2, &b);
    }
    if (b.nomem || !b.p) {
        eds_schema__buf_free(&b);
        return NULL;
    }
    return b.p;
}

static bool is_integer_token(const cctx *c, const cJSON *n)
{
    numtok key = {.node = n};
    const numtok *t =
        c->toks ? bsearch(&key, c->toks, c->ntoks, sizeof(*c->toks), cmp_numtok) : NULL;
    if (!t)
        return false;
    for (size_t i = 0; i < t->len; i++) {
        if (t->tok[i] == '.' || t->tok[i] == 'e' || t->tok[i] == 'E')
            return false;
    }
    return true;
}

static int compile_mapping(cctx *c, const cJSON *obj, mapping **out, bool allow_unknown, int depth,
                           bool top);
static int compile_rules(cctx *c, const cJSON *obj, rules *r, bool allow_unknown, int depth);

typedef int (*rule_fn)(cctx *c, const char *rule, const cJSON *v, rules *r);

static int rule_type(cctx *c, const char *rule, const cJSON *v, rules *r)
{
    if ((cJSON_IsArray(v) && !v->child) || (!cJSON_IsArray(v) && !cJSON_IsString(v)))
        return fail(c, rule, "expected a type name or a non-empty list of type names");
    eds_schema_buf b;
    eds_schema__buf_init(&b, MSG_MAX);
    eds_schema__buf_adds(&b, "must be of ");
    if (cJSON_IsArray(v))
        eds_schema__buf_adds(&b, "[");
    const cJSON *t = cJSON_IsArray(v) ? v->child : v;
    for (; t; t = cJSON_IsArray(v) ? t->next : NULL) {
        if (!cJSON_IsString(t)) {
            eds_schema__buf_free(&b);
            return fail(c, rule, "expected a type name or a non-empty list of type names");
        }
        unsigned bit = 0;
        for (size_t i = 0; i < sizeof(type_names) / sizeof(type_names[0]); i++) {
            if (strcmp(t->valuestring, type_names[i].name) == 0)
                bit = type_names[i].bit;
        }
        if (!bit) {
            eds_schema__buf_free(&b);
            return fail(c, rule,
                        "unknown type '%s' (known: string, integer, float, number, boolean, "
                        "dict, list)",
                        t->valuestring);
        }
        r->types |= bit;
        if (cJSON_IsArray(v)) {
            if (t != v->child)
                eds_schema__buf_adds(&b, ", ");
            eds_schema__py_repr_string(t->valuestring, &b);
        } else {
            eds_schema__buf_adds(&b, t->valuestring);
        }
    }
    if (cJSON_IsArray(v))
        eds_schema__buf_adds(&b, "]");
    eds_schema__buf_adds(&b, " type");
    if (b.nomem) {
        eds_schema__buf_free(&b);
        return nomem(c);
    }
    r->type_msg = b.p;
    return EDS_OK;
}

static int rule_bool(cctx *c, const char *rule, const cJSON *v, rules *r)
{
    if (!cJSON_IsBool(v))
        return fail(c, rule, "expected true or false");
    bool on = cJSON_IsTrue(v);
    if (strcmp(rule, "required") == 0) {
        r->required = on;
    } else if (strcmp(rule, "nullable") == 0) {
        r->nullable = on;
    } else if (strcmp(rule, "empty") == 0) {
        r->has_empty = true;
        r->empty = on;
    } else {
        r->allow_unknown = on;
    }
    return EDS_OK;
}

/* One limit of min, max, minlength or maxlength, with its message. */
static int set_bound(cctx *c, bound *b, const char *prefix, const cJSON *v)
{
    b->msg = msg_with_number(c, prefix, v, NULL, NULL);
    if (!b->msg)
        return nomem(c);
    b->on = true;
    b->v = v->valuedouble;
    return EDS_OK;
}

static int rule_minmax(cctx *c, const char *rule, const cJSON *v, rules *r)
{
    if (!cJSON_IsNumber(v))
        return fail(c, rule, "expected a number");
    if (strcmp(rule, "min") == 0)
        return set_bound(c, &r->min, "min value is ", v);
    return set_bound(c, &r->max, "max value is ", v);
}

static int rule_between(cctx *c, const char *rule, const cJSON *v, rules *r)
{
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2 || !cJSON_IsNumber(v->child) ||
        !cJSON_IsNumber(v->child->next))
        return fail(c, rule, "expected a list of two numbers [low, high]");
    const cJSON *lo = v->child, *hi = v->child->next;
    if (lo->valuedouble > hi->valuedouble)
        return fail(c, rule, "low bound is above high bound");
    r->between_msg = msg_with_number(c, "must be between ", lo, " and ", hi);
    if (!r->between_msg)
        return nomem(c);
    r->has_between = true;
    r->lo = lo->valuedouble;
    r->hi = hi->valuedouble;
    return EDS_OK;
}

static int rule_length(cctx *c, const char *rule, const cJSON *v, rules *r)
{
    if (!cJSON_IsNumber(v) || !is_integer_token(c, v) || v->valuedouble < 0 ||
        v->valuedouble > 9007199254740991.0)
        return fail(c, rule, "expected a non-negative integer");
    if (strcmp(rule, "minlength") == 0)
        return set_bound(c, &r->minlen, "min length is ", v);
    return set_bound(c, &r->maxlen, "max length is ", v);
}

static int rule_values(cctx *c, const char *rule, const cJSON *v, rules *r)
{
    if (!cJSON_IsArray(v))
        return fail(c, rule, "expected a list of values");
    if (strcmp(rule, "allowed") == 0)
        r->allowed = v;
    else
        r->forbidden = v;
    return EDS_OK;
}

static int rule_regex(cctx *c, const char *rule, const cJSON *v, rules *r)
{
    if (!cJSON_IsString(v))
        return fail(c, rule, "expected a string");
    size_t size;
    char refused[160];
    if (!eds_schema__regex_check(v->valuestring, &size, refused, sizeof(refused)))
        return fail(c, rule, "regular expression refused: %s", refused);
    c->regex_total += size;
    if (c->regex_total > EDS_SCHEMA_REGEX_MAX_TOTAL)
        return fail(c, rule,
                    "the schema's regular expressions together are larger than %d elements "
                    "once repetitions are expanded",
                    EDS_SCHEMA_REGEX_MAX_TOTAL);
    /* Compiled alone first: if it compiles, its parentheses balance, so the
     * anchored form below cannot be escaped by a pattern like "a)|(b". */
    regex_t probe;
    int rc = regcomp(&probe, v->valuestring, REG_EXTENDED | REG_NOSUB);
    if (rc == 0) {
        regfree(&probe);
        size_t n = strlen(v->valuestring);
        char *anchored = malloc(n + 5);
        if (!anchored)
            return nomem(c);
        snprintf(anchored, n + 5, "^(%s)$", v->valuestring);
        rc = regcomp(&r->re, anchored, REG_EXTENDED | REG_NOSUB);
        free(anchored);
        if (rc != 0) /* cannot happen after the probe; report it all the same */
            return fail(c, rule, "invalid regular expression");
    }
    if (rc != 0) {
        char why[128];
        regerror(rc, &probe, why, sizeof(why));
        return fail(c, rule, "invalid regular expression: %s", why);
    }
    r->has_regex = true;
    eds_schema_buf b;
    eds_schema__buf_init(&b, MSG_MAX + strlen(v->valuestring));
    eds_schema__buf_adds(&b, "value does not match regex '");
    eds_schema__buf_adds(&b, v->valuestring);
    eds_schema__buf_adds(&b, "'");
    if (b.nomem)
        return nomem(c);
    r->regex_msg = b.p;
    return EDS_OK;
}

static int rule_format(cctx *c, const char *rule, const cJSON *v, rules *r)
{
    if (!cJSON_IsString(v) || strcmp(v->valuestring, "date-time") != 0)
        return fail(c, rule, "expected \"date-time\" (the only format known)");
    r->has_format = true;
    return EDS_OK;
}

static int rule_ignore(cctx *c, const char *rule, const cJSON *v, rules *r)
{
    return EDS_OK;
}

/* `schema` is compiled after the other rules, once `type` and
 * `allow_unknown` are known; the table only records that it is there. */
static int rule_schema(cctx *c, const char *rule, const cJSON *v, rules *r)
{
    if (!cJSON_IsObject(v))
        return fail(c, rule,
                    "expected an object (field rules for a dict, or item rules for a "
                    "list)");
    return EDS_OK;
}

static const struct {
    const char *name;
    rule_fn fn;
} rule_table[] = {
    {"allow_unknown", rule_bool}, {"allowed", rule_values},   {"between", rule_between},
    {"empty", rule_bool},         {"forbidden", rule_values}, {"format", rule_format},
    {"max", rule_minmax},         {"maxlength", rule_length}, {"meta", rule_ignore},
    {"min", rule_minmax},         {"minlength", rule_length}, {"nullable", rule_bool},
    {"regex", rule_regex},        {"required", rule_bool},    {"schema", rule_schema},
    {"type", rule_type},
};

static int compile_schema_rule(cctx *c, const cJSON *v, rules *r, bool allow_unknown, int depth)
{
    if (depth + 1 > EDS_SCHEMA_MAX_DEPTH)
        return fail(c, "schema", "nested deeper than %d levels", EDS_SCHEMA_MAX_DEPTH);
    bool can_dict = !r->types || (r->types & TY_DICT);
    bool can_list = !r->types || (r->types & TY_LIST);
    if (!can_dict && !can_list)
        return fail(c, "schema", "applies only to a dict or a list; add one to 'type'");
    bool map_unknown = r->allow_unknown >= 0 ? r->allow_unknown : allow_unknown;
    int rc_map = EDS_OK;
    eds_error map_err = {0};
    if (can_dict) {
        rc_map = compile_mapping(c, v, &r->map, map_unknown, depth + 1, false);
        if (rc_map == EDS_ERR_NOMEM)
            return rc_map;
        if (rc_map != EDS_OK && !can_list)
            return rc_map;
        if (rc_map != EDS_OK && c->err)
            map_err = *c->err;
    }
    if (can_list) {
        r->items = calloc(1, sizeof(*r->items));
        if (!r->items)
            return nomem(c);
        size_t old = path_push(c, NULL, true);
        /* List items inherit allow_unknown from this level, as in Cerberus. */
        int rc = compile_rules(c, v, r->items, allow_unknown, depth + 1);
        path_pop(c, old);
        if (rc != EDS_OK) {
            rules_free(r->items);
            free(r->items);
            r->items = NULL;
            if (rc == EDS_ERR_NOMEM || !can_dict)
                return rc;
            if (rc_map != EDS_OK) {
                /* Neither reading fits: report the field-mapping one. */
                if (c->err)
                    *c->err = map_err;
                return rc_map;
            }
        }
    }
    if (c->err)
        eds_error_clear(c->err);
    return EDS_OK;
}

static int compile_rules(cctx *c, const cJSON *obj, rules *r, bool allow_unknown, int depth)
{
    memset(r, 0, sizeof(*r));
    r->allow_unknown = -1;
    if (!cJSON_IsObject(obj))
        return fail(c, NULL, "rules must be a JSON object");
    const cJSON *schema = NULL;
    for (const cJSON *it = obj->child; it; it = it->next) {
        for (const cJSON *prev = obj->child; prev != it; prev = prev->next) {
            if (strcmp(prev->string, it->string) == 0)
                return fail(c, it->string, "given twice");
        }
        rule_fn fn = NULL;
        for (size_t i = 0; i < sizeof(rule_table) / sizeof(rule_table[0]); i++) {
            if (strcmp(it->string, rule_table[i].name) == 0)
                fn = rule_table[i].fn;
        }
        if (!fn)
            return fail(c, it->string, "unknown rule");
        int rc = fn(c, it->string, it, r);
        if (rc != EDS_OK)
            return rc;
        if (strcmp(it->string, "schema") == 0)
            schema = it;
    }
    if (schema)
        return compile_schema_rule(c, schema, r, allow_unknown, depth);
    return EDS_OK;
}

/* Field lookup hashes every key of every document, so the hash reads only
 * the length and three bytes (strlen is vectorised; a byte-wise hash of the
 * whole key was most of the validation time). Names that collide only cost
 * a strcmp each. */
static uint32_t hash_name(const char *s)
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

static int index_fields(mapping *m)
{
    size_t cap = 4;
    while (cap < 2 * m->n)
        cap *= 2;
    m->slots = malloc(cap * sizeof(*m->slots));
    if (!m->slots)
        return EDS_ERR_NOMEM;
    for (size_t i = 0; i < cap; i++)
        m->slots[i] = SLOT_EMPTY;
    m->mask = cap - 1;
    for (size_t i = 0; i < m->n; i++) {
        m->fields[i].hash = hash_name(m->fields[i].name);
        size_t k = m->fields[i].hash & m->mask;
        while (m->slots[k] != SLOT_EMPTY)
            k = (k + 1) & m->mask;
        m->slots[k] = (uint32_t)i;
    }
    return EDS_OK;
}

static int cmp_field(const void *a, const void *b)
{
    return strcmp(((const field *)a)->name, ((const field *)b)->name);
}

static int compile_mapping(cctx *c, const cJSON *obj, mapping **out, bool allow_unknown, int depth,
                           bool top)
{
    *out = NULL;
    size_t n = 0;
    for (const cJSON *it = obj->child; it; it = it->next)
        n++;
    mapping *m = calloc(1, sizeof(*m));
    if (!m)
        return nomem(c);
    m->allow_unknown = allow_unknown;
    m->fields = calloc(n ? n : 1, sizeof(*m->fields));
    if (!m->fields) {
        free(m);
        return nomem(c);
    }
    int rc = EDS_OK;
    for (const cJSON *it = obj->child; it; it = it->next) {
        if (top && it->string[0] == '$')
            continue; /* schema options, read by the caller */
        field *f = &m->fields[m->n];
        f->name = it->string;
        size_t old = path_push(c, it->string, false);
        rc = compile_rules(c, it, &f->r, allow_unknown, depth);
        m->n++;
        if (rc == EDS_OK && f->r.required)
            m->nreq++;
        if (rc != EDS_OK) {
            mapping_free(m);
            path_pop(c, old);
            return rc;
        }
        path_pop(c, old);
    }
    qsort(m->fields, m->n, sizeof(*m->fields), cmp_field);
    for (size_t i = 1; i < m->n; i++) {
        if (strcmp(m->fields[i - 1].name, m->fields[i].name) == 0) {
            size_t old = path_push(c, m->fields[i].name, false);
            rc = fail(c, NULL, "field given twice");
            path_pop(c, old);
            mapping_free(m);
            return rc;
        }
    }
    m->req = calloc(m->nreq ? m->nreq : 1, sizeof(*m->req));
    if (!m->req || index_fields(m) != EDS_OK) {
        mapping_free(m);
        return nomem(c);
    }
    for (size_t i = 0, k = 0; i < m->n; i++) {
        if (m->fields[i].r.required) {
            m->fields[i].req_idx = k;
            m->req[k++] = i;
        }
    }
    *out = m;
    return EDS_OK;
}

static int top_options(cctx *c, const cJSON *tree, bool *allow_unknown)
{
    *allow_unknown = true;
    for (const cJSON *it = tree->child; it; it = it->next) {
        if (it->string[0] != '$')
            continue;
        if (strcmp(it->string, "$allow_unknown") != 0)
            return eds_error_set(c->err, EDS_ERR_SCHEMA,
                                 "%s: unknown schema option '%s' (known: $allow_unknown)", c->name,
                                 it->string);
        if (!cJSON_IsBool(it))
            return eds_error_set(c->err, EDS_ERR_SCHEMA,
                                 "%s: schema option '$allow_unknown': expected true or false",
                                 c->name);
        *allow_unknown = cJSON_IsTrue(it);
    }
    return EDS_OK;
}

static void line_col(const char *text, const char *at, size_t *line, size_t *col)
{
    *line = 1;
    *col = 1;
    for (const char *p = text; p < at; p++) {
        if (*p == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

int eds_schema_load_json(const char *text, size_t len, const char *name, eds_schema **out,
                         eds_error *err)
{
    *out = NULL;
    if (!name)
        name = "(schema)";
    cctx c = {.name = name, .err = err};
    eds_schema *s = calloc(1, sizeof(*s));
    if (!s || !(s->name = strdup(name))) {
        free(s);
        return nomem(&c);
    }
    int rc;
    const char *end = NULL;
    s->tree = len ? cJSON_ParseWithLengthOpts(text, len, &end, 0) : NULL;
    if (s->tree) {
        while (end < text + len && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r'))
            end++;
    }
    if (!s->tree || end != text + len) {
        size_t line, col;
        if (!end || end < text || end > text + len)
            end = text + len;
        line_col(text, end, &line, &col);
        rc = eds_error_set(err, EDS_ERR_SCHEMA, "%s: %s at line %zu, column %zu", name,
                           s->tree ? "text after the JSON value" : "not valid JSON", line, col);
        goto err;
    }
    if (!cJSON_IsObject(s->tree)) {
        rc = eds_error_set(err, EDS_ERR_SCHEMA,
                           "%s: a schema must be a JSON object of field name -> rules", name);
        goto err;
    }
    rc = map_number_tokens(&c, text, (size_t)(end - text), s->tree);
    if (rc != EDS_OK)
        goto err;
    bool allow_unknown;
    rc = top_options(&c, s->tree, &allow_unknown);
    if (rc != EDS_OK)
        goto err;
    rc = compile_mapping(&c, s->tree, &s->top, allow_unknown, 1, true);
    if (rc != EDS_OK)
        goto err;
    free(c.toks);
    *out = s;
    return EDS_OK;
err:
    free(c.toks);
    eds_schema_destroy(s);
    return rc;
}

int eds_schema_load_file(const char *path, eds_schema **out, eds_error *err)
{
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return eds_error_set(err, EDS_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char *buf = malloc(SCHEMA_MAX_FILE + 1);
    if (!buf) {
        fclose(fp);
        return eds_error_set(err, EDS_ERR_NOMEM, "%s: out of memory", path);
    }
    size_t n = fread(buf, 1, SCHEMA_MAX_FILE + 1, fp);
    int rc;
    if (ferror(fp)) {
        rc = eds_error_set(err, EDS_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
    } else if (n > SCHEMA_MAX_FILE) {
        rc = eds_error_set(err, EDS_ERR_SCHEMA, "%s: larger than %u bytes", path, SCHEMA_MAX_FILE);
    } else {
        rc = eds_schema_load_json(buf, n, path, out, err);
    }
    free(buf);
    fclose(fp);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* Validating                                                              */

static int add_item(cJSON **list, cJSON *item)
{
    if (!item)
        return EDS_ERR_NOMEM;
    if (!*list && !(*list = cJSON_CreateArray())) {
        cJSON_Delete(item);
        return EDS_ERR_NOMEM;
    }
    if (!cJSON_AddItemToArray(*list, item)) {
        cJSON_Delete(item);
        return EDS_ERR_NOMEM;
    }
    return EDS_OK;
}

static int add_msg(cJSON **list, const char *msg)
{
    return add_item(list, cJSON_CreateString(msg));
}

/* Adds "<prefix><text of b>"; b is freed. */
static int add_buf_msg(cJSON **list, eds_schema_buf *b)
{
    int rc = b->nomem ? EDS_ERR_NOMEM : add_msg(list, eds_schema__buf_str(b));
    eds_schema__buf_free(b);
    return rc;
}

static int attach(cJSON **obj, const char *key, cJSON *list)
{
    if (!*obj && !(*obj = cJSON_CreateObject())) {
        cJSON_Delete(list);
        return EDS_ERR_NOMEM;
    }
    if (!cJSON_AddItemToObject(*obj, key, list)) {
        cJSON_Delete(list);
        return EDS_ERR_NOMEM;
    }
    return EDS_OK;
}

/* cJSON's type tests, inline: they run for every value of every document. */
static inline bool j_kind(const cJSON *v, int kind)
{
    return (v->type & 0xFF) == kind;
}
static inline bool j_string(const cJSON *v)
{
    return j_kind(v, cJSON_String);
}
static inline bool j_number(const cJSON *v)
{
    return j_kind(v, cJSON_Number);
}
static inline bool j_array(const cJSON *v)
{
    return j_kind(v, cJSON_Array);
}
static inline bool j_object(const cJSON *v)
{
    return j_kind(v, cJSON_Object);
}
static inline bool j_null(const cJSON *v)
{
    return j_kind(v, cJSON_NULL);
}
static inline bool j_bool(const cJSON *v)
{
    return j_kind(v, cJSON_True) || j_kind(v, cJSON_False);
}

/* 1 and 1.0 are both integers in this dialect (JSON has one number type). */
static bool is_integral(double d)
{
    if (!isfinite(d))
        return false;
    if (d > -9007199254740992.0 && d < 9007199254740992.0)
        return d == (double)(int64_t)d;
    return true; /* every double this large is a whole number */
}

static bool type_ok(unsigned types, const cJSON *v)
{
    if ((types & TY_STRING) && j_string(v))
        return true;
    if ((types & (TY_FLOAT | TY_NUMBER)) && j_number(v))
        return true;
    if ((types & TY_INTEGER) && j_number(v) && is_integral(v->valuedouble))
        return true;
    if ((types & TY_BOOLEAN) && j_bool(v))
        return true;
    if ((types & TY_DICT) && j_object(v))
        return true;
    if ((types & TY_LIST) && j_array(v))
        return true;
    return false;
}

static size_t utf8_length(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* Length as Python's len(): characters of a string, items of a list,
 * members of a dict; false for other values. */
static bool sized_length(const cJSON *v, size_t *n)
{
    if (j_string(v)) {
        *n = utf8_length(v->valuestring);
        return true;
    }
    if (j_array(v) || j_object(v)) {
        size_t k = 0;
        for (const cJSON *c = v->child; c; c = c->next)
            k++;
        *n = k;
        return true;
    }
    return false;
}

/* JSON equality as Python's ==, except that booleans are not numbers. */
static bool json_equal(const cJSON *a, const cJSON *b)
{
    if (j_number(a) && j_number(b))
        return a->valuedouble == b->valuedouble;
    if ((a->type & 0xFF) != (b->type & 0xFF))
        return false;
    if (j_string(a))
        return strcmp(a->valuestring, b->valuestring) == 0;
    if (j_array(a)) {
        const cJSON *x = a->child, *y = b->child;
        for (; x && y; x = x->next, y = y->next) {
            if (!json_equal(x, y))
                return false;
        }
        return !x && !y;
    }
    if (j_object(a)) {
        size_t na = 0, nb = 0;
        for (const cJSON *x = a->child; x; x = x->next)
            na++;
        for (const cJSON *y = b->child; y; y = y->next)
            nb++;
        if (na != nb)
            return false;
        for (const cJSON *x = a->child; x; x = x->next) {
            const cJSON *y = cJSON_GetObjectItemCaseSensitive(b, x->string);
            if (!y || !json_equal(x, y))
                return false;
        }
        return true;
    }
    return true; /* same literal: true, false or null */
}

static bool in_values(const cJSON *list, const cJSON *v)
{
    for (const cJSON *c = list->child; c; c = c->next) {
        if (json_equal(c, v))
            return true;
    }
    return false;
}

static bool str_in_values(const cJSON *list, const char *s)
{
    for (const cJSON *c = list->child; c; c = c->next) {
        if (j_string(c) && strcmp(c->valuestring, s) == 0)
            return true;
    }
    return false;
}

/* Whether item c of a list (key: the key of member c of a dict) is in values. */
static bool member_in(const cJSON *values, const cJSON *c, bool key)
{
    return key ? str_in_values(values, c->string) : in_values(values, c);
}

static void member_repr(const cJSON *c, bool key, eds_schema_buf *b)
{
    if (key)
        eds_schema__py_repr_string(c->string, b);
    else
        eds_schema__py_repr(c, b);
}

/* "unallowed value X", X as Python's str() of the value. */
static int add_unallowed_value(cJSON **list, const cJSON *v)
{
    eds_schema_buf b;
    eds_schema__buf_init(&b, MSG_MAX);
    eds_schema__buf_adds(&b, "unallowed value ");
    eds_schema__py_str(v, &b);
    return add_buf_msg(list, &b);
}

/* `allowed`: a list or dict checks each item (a dict: each key) and
 * reports "unallowed values ('a', 'b')" (a Python tuple); any other value
 * "unallowed value a". */
static int check_allowed(const cJSON *allowed, const cJSON *v, cJSON **list)
{
    if (!j_array(v) && !j_object(v))
        return in_values(allowed, v) ? EDS_OK : add_unallowed_value(list, v);
    bool key = j_object(v);
    size_t bad = 0;
    for (const cJSON *c = v->child; c; c = c->next)
        bad += !member_in(allowed, c, key);
    if (!bad)
        return EDS_OK;
    eds_schema_buf b;
    eds_schema__buf_init(&b, MSG_MAX);
    eds_schema__buf_adds(&b, "unallowed values (");
    size_t k = 0;
    for (const cJSON *c = v->child; c; c = c->next) {
        if (member_in(allowed, c, key))
            continue;
        if (k++)
            eds_schema__buf_adds(&b, ", ");
        member_repr(c, key, &b);
    }
    eds_schema__buf_adds(&b, bad == 1 ? ",)" : ")");
    return add_buf_msg(list, &b);
}

/* `forbidden`: a list reports the forbidden items it holds, once each in
 * document order, as a Python list "unallowed values ['a']"; any other
 * value (a dict too, as in Cerberus) "unallowed value a". */
static int check_forbidden(const cJSON *forbidden, const cJSON *v, cJSON **list)
{
    if (!j_array(v))
        return in_values(forbidden, v) ? add_unallowed_value(list, v) : EDS_OK;
    eds_schema_buf b;
    eds_schema__buf_init(&b, MSG_MAX);
    size_t k = 0;
    for (const cJSON *c = v->child; c; c = c->next) {
        if (!in_values(forbidden, c))
            continue;
        bool seen = false; /* a set in Cerberus: each value once */
        for (const cJSON *p = v->child; p != c && !seen; p = p->next)
            seen = json_equal(p, c);
        if (seen)
            continue;
        eds_schema__buf_adds(&b, k++ ? ", " : "unallowed values [");
        eds_schema__py_repr(c, &b);
    }
    if (!k) {
        eds_schema__buf_free(&b);
        return EDS_OK;
    }
    eds_schema__buf_adds(&b, "]");
    return add_buf_msg(list, &b);
}

static int validate_mapping(const mapping *m, const cJSON *doc, cJSON **obj);

/* Checks v against r, adding messages (and a nested error dict last) to *list. */
static int validate_value(const rules *r, const cJSON *v, cJSON **list)
{
    int rc;
    if (j_null(v))
        return r->nullable ? EDS_OK : add_msg(list, MSG_NULL);
    if (r->types && !type_ok(r->types, v))
        return add_msg(list, r->type_msg);

    /* An empty value skips the content rules when `empty` is given. */
    bool skip = false;
    size_t len = 0;
    bool sized = (r->has_empty || r->minlen.on || r->maxlen.on) && sized_length(v, &len);
    if (r->has_empty && sized && len == 0) {
        skip = true;
        if (!r->empty && (rc = add_msg(list, MSG_EMPTY)) != EDS_OK)
            return rc;
    }
    bool num = j_number(v);
    double d = num ? v->valuedouble : 0;
    bool str = j_string(v);

    /* `between` first: in Cerberus it is a custom rule, whose error has no
     * rule in its schema path and so sorts before the others. */
    if (r->has_between && num && (d < r->lo || d > r->hi) &&
        (rc = add_msg(list, r->between_msg)) != EDS_OK)
        return rc;
    /* Then alphabetical by rule name: the order Cerberus lists a field's messages. */
    if (r->allowed && !skip && (rc = check_allowed(r->allowed, v, list)) != EDS_OK)
        return rc;
    if (r->forbidden && !skip && (rc = check_forbidden(r->forbidden, v, list)) != EDS_OK)
        return rc;
    if (r->has_format && !skip && str &&
        !eds_schema__rfc3339_valid(v->valuestring, strlen(v->valuestring)) &&
        (rc = add_msg(list, MSG_DATETIME)) != EDS_OK)
        return rc;
    if (r->max.on && num && d > r->max.v && (rc = add_msg(list, r->max.msg)) != EDS_OK)
        return rc;
    if (r->maxlen.on && !skip && sized && (double)len > r->maxlen.v &&
        (rc = add_msg(list, r->maxlen.msg)) != EDS_OK)
        return rc;
    if (r->min.on && num && d < r->min.v && (rc = add_msg(list, r->min.msg)) != EDS_OK)
        return rc;
    if (r->minlen.on && !skip && sized && (double)len < r->minlen.v &&
        (rc = add_msg(list, r->minlen.msg)) != EDS_OK)
        return rc;
    if (r->has_regex && !skip && str && regexec(&r->re, v->valuestring, 0, NULL, 0) != 0 &&
        (rc = add_msg(list, r->regex_msg)) != EDS_OK)
        return rc;

    cJSON *sub = NULL;
    if (r->map && j_object(v)) {
        rc = validate_mapping(r->map, v, &sub);
    } else if (r->items && j_array(v)) {
        rc = EDS_OK;
        size_t i = 0;
        for (const cJSON *it = v->child; it && rc == EDS_OK; it = it->next, i++) {
            cJSON *il = NULL;
            rc = validate_value(r->items, it, &il);
            if (il) {
                char key[24];
                snprintf(key, sizeof(key), "%zu", i);
                int rc2 = attach(&sub, key, il);
                if (rc == EDS_OK)
                    rc = rc2;
            }
        }
    } else {
        return EDS_OK;
    }
    if (sub) {
        int rc2 = add_item(list, sub);
        if (rc == EDS_OK)
            rc = rc2;
    }
    return rc;
}

/* Stable merge sort of a linked list of object members by key. */
static cJSON *sort_members(cJSON *head, size_t n)
{
    if (n < 2) {
        if (head)
            head->next = NULL;
        return head;
    }
    cJSON *mid = head;
    for (size_t i = 0; i < n / 2; i++)
        mid = mid->next;
    cJSON *a = sort_members(head, n / 2);
    cJSON *b = sort_members(mid, n - n / 2);
    cJSON dummy = {0};
    cJSON *t = &dummy;
    while (a && b) {
        if (strcmp(b->string, a->string) < 0) {
            t->next = b;
            b = b->next;
        } else {
            t->next = a;
            a = a->next;
        }
        t = t->next;
    }
    t->next = a ? a : b;
    return dummy.next;
}

/* Sorts obj's members by key (Cerberus's order) and keeps only the first
 * entry of a key a document gave twice. */
static void sort_errors(cJSON *obj)
{
    size_t n = 0;
    for (cJSON *c = obj->child; c; c = c->next)
        n++;
    if (n < 2)
        return;
    cJSON *head = sort_members(obj->child, n);
    cJSON *prev = NULL;
    for (cJSON *c = head; c;) {
        cJSON *next = c->next;
        if (prev && strcmp(prev->string, c->string) == 0) {
            prev->next = next;
            c->next = c->prev = NULL;
            cJSON_Delete(c);
        } else {
            c->prev = prev;
            prev = c;
        }
        c = next;
    }
    head->prev = prev; /* cJSON keeps the tail in the head's prev */
    obj->child = head;
}

static const field *find_field(const mapping *m, const char *name)
{
    uint32_t h = hash_name(name);
    for (size_t k = h & m->mask; m->slots[k] != SLOT_EMPTY; k = (k + 1) & m->mask) {
        const field *f = &m->fields[m->slots[k]];
        if (f->hash == h && strcmp(f->name, name) == 0)
            return f;
    }
    return NULL;
}

static int validate_mapping(const mapping *m, const cJSON *doc, cJSON **obj)
{
    uint64_t seen[REQ_BITS / 64] = {0};
    int rc = EDS_OK;
    for (const cJSON *c = doc->child; c && rc == EDS_OK; c = c->next) {
        const char *key = c->string ? c->string : "";
        const field *f = find_field(m, key);
        cJSON *list = NULL;
        if (!f) {
            if (!m->allow_unknown)
                rc = add_msg(&list, MSG_UNKNOWN);
        } else {
            if (f->r.required && f->req_idx < REQ_BITS)
                seen[f->req_idx / 64] |= UINT64_C(1) << (f->req_idx % 64);
            rc = validate_value(&f->r, c, &list);
        }
        if (list) {
            int rc2 = attach(obj, key, list);
            if (rc == EDS_OK)
                rc = rc2;
        }
    }
    for (size_t k = 0; k < m->nreq && rc == EDS_OK; k++) {
        const field *f = &m->fields[m->req[k]];
        bool present = k < REQ_BITS ? (seen[k / 64] >> (k % 64)) & 1
                                    : cJSON_GetObjectItemCaseSensitive(doc, f->name) != NULL;
        if (!present) {
            cJSON *list = NULL;
            rc = add_msg(&list, MSG_REQUIRED);
            if (rc == EDS_OK)
                rc = attach(obj, f->name, list);
        }
    }
    if (*obj && rc == EDS_OK)
        sort_errors(*obj);
    return rc;
}

int eds_schema_validate(const eds_schema *s, const cJSON *doc, cJSON **errors)
{
    *errors = NULL;
    if (!j_object(doc))
        return EDS_ERR_INVAL;
    cJSON *obj = NULL;
    int rc = validate_mapping(s->top, doc, &obj);
    if (rc != EDS_OK) {
        cJSON_Delete(obj);
        return rc;
    }
    if (!obj)
        return EDS_OK;
    *errors = obj;
    return EDS_ERR_INVALID;
}
