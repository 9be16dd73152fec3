/*
 * eds_schema_load.c - loads a Cerberus-style schema (JSON) into its
 * compiled, immutable form (eds_schema_compiled.h), and frees it.
 *
 * Compiling does all the work that does not depend on the document: rule
 * values are checked, regexes checked against their limits and compiled,
 * messages formatted (numbers exactly as Python would print the schema's
 * values), fields indexed for lookup and allow_unknown resolved through
 * the levels. Every mistake is an EDS_ERR_SCHEMA naming the file, the
 * field path and the rule.
 */
#include "eds_schema_compiled.h"
#include "eds_schema_util.h"

#include <errno.h>
#include <stdarg.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>

/* A schema file larger than this is refused rather than read. */
#define SCHEMA_MAX_FILE (4u * 1024 * 1024)

static const struct {
    const char *name;
    unsigned bit;
} type_names[] = {
    {"string", TY_STRING},   {"integer", TY_INTEGER}, {"float", TY_FLOAT}, {"number", TY_NUMBER},
    {"boolean", TY_BOOLEAN}, {"dict", TY_DICT},       {"list", TY_LIST},
};

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
    eds_schema__rx_destroy(r->rx);
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
    eds_schema__buf_init(&b, EDS_SCHEMA_MSG_MAX);
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
    eds_schema__buf_init(&b, EDS_SCHEMA_MSG_MAX);
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
    /* Compiled alone first: if it compiles, and the check above refused a
     * ')' with no '(', its parentheses balance, so the anchored form below
     * cannot be escaped by a pattern like "a)|(b" or "a)|b". */
    regex_t probe;
    int rc = regcomp(&probe, v->valuestring, REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
        char why[128];
        regerror(rc, &probe, why, sizeof(why));
        return fail(c, rule, "invalid regular expression: %s", why);
    }
    regfree(&probe);
    rc = eds_schema__rx_create(v->valuestring, &r->rx);
    if (rc == EDS_ERR_NOMEM)
        return nomem(c);
    if (rc != EDS_OK) /* cannot happen after the probe; report it all the same */
        return fail(c, rule, "invalid regular expression");
    eds_schema_buf b;
    eds_schema__buf_init(&b, EDS_SCHEMA_MSG_MAX + strlen(v->valuestring));
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
        m->fields[i].hash = eds_schema__hash_name(m->fields[i].name);
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
