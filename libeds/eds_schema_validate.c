/*
 * eds_schema_validate.c - validates a cJSON document against a compiled
 * schema (eds_schema_compiled.h): no I/O, nothing allocated for a valid
 * document, errors built in Cerberus's layout.
 *
 * Error order follows Cerberus 1.3, which keeps its error list sorted by
 * document path and then schema path: fields come out sorted by name, list
 * items by index, and a field's messages by rule name (which is why the
 * checks below run in alphabetical order of their rule).
 */
#include "eds_schema_compiled.h"
#include "eds_schema_util.h"

#include <math.h>
#include <stdio.h>

/* Required fields tracked with a bitmap while walking a document; any
 * beyond this are looked up by name instead. */
#define REQ_BITS 1024

static const char MSG_NULL[] = "null value not allowed";
static const char MSG_EMPTY[] = "empty values not allowed";
static const char MSG_REQUIRED[] = "required field";
static const char MSG_UNKNOWN[] = "unknown field";
static const char MSG_DATETIME[] = "value is not a valid RFC 3339 date-time";
#define STR_(x) #x
#define STR(x) STR_(x)
static const char MSG_REGEX_LONG[] =
    "value too long to match against regex (over " STR(EDS_SCHEMA_REGEX_MAX_VALUE) " bytes)";

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
    eds_schema__buf_init(&b, EDS_SCHEMA_MSG_MAX);
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
    eds_schema__buf_init(&b, EDS_SCHEMA_MSG_MAX);
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
    eds_schema__buf_init(&b, EDS_SCHEMA_MSG_MAX);
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

/* `regex`: a value longer than EDS_SCHEMA_REGEX_MAX_VALUE is not matched
 * (matching costs time and memory in proportion to its length) and fails
 * with its own message; Cerberus has no such limit. */
static int check_regex(const rules *r, const char *s, cJSON **list)
{
    bool matched;
    int rc = eds_schema__rx_match(r->rx, s, strlen(s), &matched);
    if (rc == EDS_ERR_TOOLONG)
        return add_msg(list, MSG_REGEX_LONG);
    if (rc != EDS_OK)
        return rc;
    return matched ? EDS_OK : add_msg(list, r->regex_msg);
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
    if (r->rx && !skip && str && (rc = check_regex(r, v->valuestring, list)) != EDS_OK)
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
    uint32_t h = eds_schema__hash_name(name);
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
