/*
 * eds_json.c - strict JSON parser into arena-allocated cJSON nodes. See
 * eds_json.h for what it accepts and why it exists.
 *
 * Recursive descent over the text with an explicit end pointer (the text need
 * not be NUL-terminated). The recursion depth is bounded by EDS_JSON_MAX_DEPTH.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strtod_l, newlocale */
#endif
#include "eds_json.h"

#include <limits.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ---- arena ------------------------------------------------------------------------------ */

struct eds_json_block {
    struct eds_json_block *next;
    size_t used, cap;
    max_align_t mem[];
};

#define BLOCK_MIN 2048
#define BLOCK_MAX (1u << 20)

/* Each thread keeps its last freed first-size block for the next document: a record
 * then costs no malloc at all (glibc serves 2 KiB blocks from its slower bins). The
 * key's destructor frees it when the thread ends. */
static pthread_key_t spare_key;
static bool spare_ok;
static pthread_once_t spare_once = PTHREAD_ONCE_INIT;

static void spare_destroy(void *block)
{
    free(block);
}

static void spare_init(void)
{
    spare_ok = pthread_key_create(&spare_key, spare_destroy) == 0;
}

/* When libeds goes away with its host library (libedsagent.so unloaded by LabVIEW), the
 * key must not outlive the destructor's code: the calling thread's block is freed and
 * the key deleted (other threads' spare blocks are then left to the process). */
__attribute__((destructor)) static void spare_fini(void)
{
    if (!spare_ok)
        return;
    free(pthread_getspecific(spare_key));
    pthread_setspecific(spare_key, NULL);
    pthread_key_delete(spare_key);
    spare_ok = false;
}

static struct eds_json_block *block_new(size_t cap)
{
    if (cap == BLOCK_MIN) {
        pthread_once(&spare_once, spare_init);
        struct eds_json_block *b = spare_ok ? pthread_getspecific(spare_key) : NULL;
        if (b) {
            pthread_setspecific(spare_key, NULL);
            return b;
        }
    }
    struct eds_json_block *b = malloc(sizeof(*b) + cap);
    if (b)
        b->cap = cap;
    return b;
}

static void block_release(struct eds_json_block *b)
{
    if (b->cap == BLOCK_MIN && spare_ok && !pthread_getspecific(spare_key) &&
        pthread_setspecific(spare_key, b) == 0)
        return;
    free(b);
}

/* Adds a block of at least n bytes to doc's arena; NULL when out of memory. */
static __attribute__((noinline)) struct eds_json_block *arena_grow(eds_json_doc *doc, size_t n)
{
    struct eds_json_block *b = doc->arena;
    size_t cap = b ? b->cap * 2 : BLOCK_MIN;
    if (cap > BLOCK_MAX)
        cap = BLOCK_MAX;
    if (cap < n)
        cap = n;
    struct eds_json_block *nb = block_new(cap);
    if (!nb)
        return NULL;
    nb->next = b;
    nb->used = 0;
    doc->arena = nb;
    return nb;
}

static inline void *arena_alloc(eds_json_doc *doc, size_t n)
{
    n = (n + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
    struct eds_json_block *b = doc->arena;
    if (__builtin_expect(!b || b->cap - b->used < n, 0) && !(b = arena_grow(doc, n)))
        return NULL;
    void *p = (char *)b->mem + b->used;
    b->used += n;
    return p;
}

void eds_json_doc_free(eds_json_doc *doc)
{
    struct eds_json_block *b = doc->arena;
    while (b) {
        struct eds_json_block *next = b->next;
        block_release(b);
        b = next;
    }
    memset(doc, 0, sizeof(*doc));
}

/* ---- parser state ----------------------------------------------------------------------- */

typedef struct parser {
    const char *start, *p, *end;
    eds_json_doc *doc;
    eds_error *err;
    int rc;    /* EDS_OK until the first error */
    size_t ws; /* white-space runs skipped so far (for span_ws) */
    int depth;
} parser;

static void *fail(parser *ps, int code, const char *what)
{
    if (ps->rc == EDS_OK) {
        ps->rc = code;
        if (code == EDS_ERR_NOMEM)
            eds_error_set(ps->err, code, "out of memory");
        else if (what)
            eds_error_set(ps->err, code, "%s", what);
        else
            eds_error_set(ps->err, code, "not valid JSON at byte %zu",
                          (size_t)(ps->p - ps->start) + 1);
    }
    return NULL;
}

static inline void skip_ws(parser *ps)
{
    const char *p = ps->p;
    if (p < ps->end && (unsigned char)*p > ' ')
        return; /* the common case: compact JSON */
    while (p < ps->end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    if (p != ps->p) {
        ps->ws++;
        ps->p = p;
    }
}

static inline cJSON *new_node(parser *ps, int type)
{
    cJSON *n = arena_alloc(ps->doc, sizeof(*n));
    if (!n)
        return fail(ps, EDS_ERR_NOMEM, NULL);
    memset(n, 0, sizeof(*n));
    n->type = type;
    return n;
}

/* ---- strings ---------------------------------------------------------------------------- */

static int hex4(const char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return -1;
    }
    return v;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length of the UTF-8 sequence at p (lead byte >= 0x80), or 0 when it is not
 * well-formed (overlong, surrogate, past U+10FFFF, cut short). */
static size_t utf8_seq(const unsigned char *p, const unsigned char *end)
{
    unsigned char c = p[0];
    size_t n;
    unsigned cp;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 1;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 2;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 3;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if ((size_t)(end - p) <= n)
        return 0;
    for (size_t k = 1; k <= n; k++) {
        if ((p[k] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[k] & 0x3F);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n + 1;
}

bool eds_utf8_valid(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str, *end = s + len;
    while (s < end) {
        /* ASCII eight bytes at a time: most records are all ASCII. */
        while (end - s >= 8) {
            uint64_t w;
            memcpy(&w, s, 8);
            if (w & 0x8080808080808080ULL)
                break;
            s += 8;
        }
        if (s >= end)
            break;
        if (*s < 0x80) {
            s++;
            continue;
        }
        size_t n = utf8_seq(s, end);
        if (!n)
            return false;
        s += n;
    }
    return true;
}

/* Bytes that may stand in a string as they are and need no closer look: printable
 * ASCII other than '"' and '\\'. */
// clang-format off
static const unsigned char plain_byte[256] = {
#define R16(v) v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v
    R16(0), R16(0), /* 0x00-0x1f: control characters */
    1,      1,      0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x20-0x2f: '"' */
    R16(1), R16(1), /* 0x30-0x4f */
    1,      1,      1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, /* 0x50-0x5f: '\\' */
    R16(1), R16(1), /* 0x60-0x7f */
    R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), /* 0x80-0xff */
#undef R16
};
// clang-format on

/* Parses the string at ps->p (== '"') into a NUL-terminated arena copy. */
static char *parse_string(parser *ps)
{
    const char *p = ps->p + 1, *end = ps->end;
    /* Scan first: the plain run needs no unescaping, and bounds the copy. */
    const char *q = p;
    while (q < end && plain_byte[(unsigned char)*q])
        q++;
    if (q < end && *q == '"') { /* the common case: plain ASCII */
        size_t n = (size_t)(q - p);
        char *s = arena_alloc(ps->doc, n + 1);
        if (!s)
            return fail(ps, EDS_ERR_NOMEM, NULL);
        memcpy(s, p, n);
        s[n] = '\0';
        ps->p = q + 1;
        return s;
    }
    /* Unescaped text is never longer than the escaped one: find the closing quote. */
    const char *close = q;
    while (close < end && *close != '"') {
        if (*close == '\\')
            close++;
        close++;
    }
    if (close >= end) {
        ps->p = end;
        return fail(ps, EDS_ERR_PARSE, "not valid JSON: unterminated string");
    }
    char *s = arena_alloc(ps->doc, (size_t)(close - p) + 1), *o = s;
    if (!s)
        return fail(ps, EDS_ERR_NOMEM, NULL);
    memcpy(o, p, (size_t)(q - p));
    o += q - p;
    p = q;
    while (*p != '"') {
        unsigned char c = (unsigned char)*p;
        if (c == '\\') {
            char e = p[1];
            p += 2;
            switch (e) {
            case '"':
            case '\\':
            case '/':
                *o++ = e;
                break;
            case 'b':
                *o++ = '\b';
                break;
            case 'f':
                *o++ = '\f';
                break;
            case 'n':
                *o++ = '\n';
                break;
            case 'r':
                *o++ = '\r';
                break;
            case 't':
                *o++ = '\t';
                break;
            case 'u': {
                int cp = close - p >= 4 ? hex4(p) : -1;
                if (cp < 0) {
                    ps->p = p;
                    return fail(ps, EDS_ERR_PARSE, "not valid JSON: bad \\u escape");
                }
                p += 4;
                if (cp == 0) {
                    ps->p = p;
                    return fail(ps, EDS_ERR_PARSE, "\\u0000 is not allowed in strings");
                }
                if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    ps->p = p;
                    return fail(ps, EDS_ERR_PARSE, "not valid JSON: lone surrogate escape");
                }
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    int lo = close - p >= 6 && p[0] == '\\' && p[1] == 'u' ? hex4(p + 2) : -1;
                    if (lo < 0xDC00 || lo > 0xDFFF) {
                        ps->p = p;
                        return fail(ps, EDS_ERR_PARSE, "not valid JSON: lone surrogate escape");
                    }
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    p += 6;
                }
                o += put_utf8(o, (unsigned)cp);
                break;
            }
            default:
                ps->p = p - 1;
                return fail(ps, EDS_ERR_PARSE, "not valid JSON: bad escape in string");
            }
        } else if (c < 0x20) {
            ps->p = p;
            return fail(ps, EDS_ERR_PARSE,
                        c ? "not valid JSON: control character in string" : "NUL byte in line");
        } else if (c < 0x80) {
            *o++ = (char)c;
            p++;
        } else {
            size_t n = utf8_seq((const unsigned char *)p, (const unsigned char *)close);
            if (!n) {
                ps->p = p;
                return fail(ps, EDS_ERR_PARSE, "line is not valid UTF-8");
            }
            memcpy(o, p, n);
            o += n;
            p += n;
        }
    }
    *o = '\0';
    ps->p = p + 1;
    return s;
}

/* ---- numbers ---------------------------------------------------------------------------- */

static const double pow10_exact[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                       1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                       1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void make_c_locale(void)
{
    c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
}

/* strtod in the C locale (a host such as LabVIEW may have set another one). */
static double slow_strtod(parser *ps, const char *s, size_t n, bool *ok)
{
    char buf[64], *copy = n < sizeof(buf) ? buf : arena_alloc(ps->doc, n + 1);
    *ok = copy != NULL;
    if (!copy)
        return 0;
    memcpy(copy, s, n);
    copy[n] = '\0';
    pthread_once(&c_locale_once, make_c_locale);
    return c_locale ? strtod_l(copy, NULL, c_locale) : strtod(copy, NULL);
}

static cJSON *parse_number(parser *ps)
{
    const char *p = ps->p, *end = ps->end, *s = p;
    bool neg = false;
    if (*p == '-') {
        neg = true;
        p++;
    }
    uint64_t mant = 0;
    int digits = 0; /* significant digits accumulated in mant */
    int exp10 = 0;
    bool exact = true;
    if (p < end && *p == '0') {
        p++;
    } else if (p < end && *p >= '1' && *p <= '9') {
        while (p < end && *p >= '0' && *p <= '9') {
            if (digits < 19) {
                mant = mant * 10 + (uint64_t)(*p - '0');
                digits++;
            } else {
                exact = false;
            }
            p++;
        }
    } else {
        ps->p = p;
        return fail(ps, EDS_ERR_PARSE, NULL);
    }
    if (p < end && *p == '.') {
        p++;
        if (p >= end || *p < '0' || *p > '9') {
            ps->p = p;
            return fail(ps, EDS_ERR_PARSE, NULL);
        }
        while (p < end && *p >= '0' && *p <= '9') {
            if (digits < 19) {
                if (mant || *p != '0')
                    digits++;
                mant = mant * 10 + (uint64_t)(*p - '0');
                /* Leading zeros of a fraction: far past the fast path. Once the count
                 * stops, exp10 no longer says where the digits stand: strtod decides. */
                if (exp10 > -100000)
                    exp10--;
                else
                    exact = false;
            } else {
                exact = false;
            }
            p++;
        }
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        bool eneg = false;
        if (p < end && (*p == '+' || *p == '-'))
            eneg = *p++ == '-';
        if (p >= end || *p < '0' || *p > '9') {
            ps->p = p;
            return fail(ps, EDS_ERR_PARSE, NULL);
        }
        int e = 0;
        while (p < end && *p >= '0' && *p <= '9') {
            if (e < 100000)
                e = e * 10 + (*p - '0');
            p++;
        }
        exp10 += eneg ? -e : e;
    }
    ps->p = p;
    double d;
    if (exact && mant <= (1ULL << 53) && exp10 >= -22 && exp10 <= 22) {
        /* Clinger's fast path: both operands are exact doubles, so one IEEE operation
         * gives the correctly rounded result. */
        d = (double)mant;
        d = exp10 < 0 ? d / pow10_exact[-exp10] : d * pow10_exact[exp10];
        if (neg)
            d = -d;
    } else if (exact && mant == 0) {
        d = neg ? -0.0 : 0.0;
    } else {
        bool ok;
        d = slow_strtod(ps, s, (size_t)(p - s), &ok);
        if (!ok)
            return fail(ps, EDS_ERR_NOMEM, NULL);
    }
    if (!isfinite(d))
        return fail(ps, EDS_ERR_PARSE, "number out of range");
    cJSON *n = new_node(ps, cJSON_Number);
    if (!n)
        return NULL;
    n->valuedouble = d;
    n->valueint = d >= INT_MAX ? INT_MAX : d <= (double)INT_MIN ? INT_MIN : (int)d;
    return n;
}

/* ---- values ----------------------------------------------------------------------------- */

static cJSON *parse_value(parser *ps);

static bool literal(parser *ps, const char *word, size_t n)
{
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
        return false;
    ps->p += n;
    return true;
}

static cJSON *parse_array(parser *ps)
{
    cJSON *arr = new_node(ps, cJSON_Array), *tail = NULL;
    if (!arr)
        return NULL;
    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == ']') {
        ps->p++;
        return arr;
    }
    for (;;) {
        cJSON *v = parse_value(ps);
        if (!v)
            return NULL;
        if (tail) {
            tail->next = v;
            v->prev = tail;
        } else {
            arr->child = v;
        }
        tail = v;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            skip_ws(ps);
            continue;
        }
        if (ps->p < ps->end && *ps->p == ']') {
            ps->p++;
            arr->child->prev = tail; /* as cJSON keeps it: the first's prev is the last */
            return arr;
        }
        return fail(ps, EDS_ERR_PARSE, NULL);
    }
}

static int cmp_key(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A duplicate key among obj's n members, or NULL; ps->rc set when out of memory. */
static const char *duplicate_key(parser *ps, const cJSON *obj, size_t n)
{
    if (n <= 16) {
        for (const cJSON *a = obj->child; a; a = a->next)
            for (const cJSON *b = a->next; b; b = b->next)
                if (a->string[0] == b->string[0] && strcmp(a->string, b->string) == 0)
                    return a->string;
        return NULL;
    }
    const char **names = malloc(n * sizeof(*names));
    if (!names) {
        fail(ps, EDS_ERR_NOMEM, NULL);
        return NULL;
    }
    size_t i = 0;
    for (const cJSON *c = obj->child; c; c = c->next)
        names[i++] = c->string;
    qsort(names, n, sizeof(*names), cmp_key);
    const char *dup = NULL;
    for (i = 1; i < n && !dup; i++)
        if (strcmp(names[i - 1], names[i]) == 0)
            dup = names[i];
    free(names);
    return dup;
}

static cJSON *parse_object(parser *ps, const char *capture)
{
    cJSON *obj = new_node(ps, cJSON_Object), *tail = NULL;
    if (!obj)
        return NULL;
    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == '}') {
        ps->p++;
        return obj;
    }
    size_t n = 0;
    for (;;) {
        if (ps->p >= ps->end || *ps->p != '"')
            return fail(ps, EDS_ERR_PARSE, NULL);
        char *key = parse_string(ps);
        if (!key)
            return NULL;
        skip_ws(ps);
        if (ps->p >= ps->end || *ps->p != ':')
            return fail(ps, EDS_ERR_PARSE, NULL);
        ps->p++;
        skip_ws(ps);
        const char *vstart = ps->p;
        size_t ws0 = ps->ws;
        cJSON *v = parse_value(ps);
        if (!v)
            return NULL;
        if (capture && strcmp(key, capture) == 0) {
            ps->doc->span = vstart;
            ps->doc->span_len = (size_t)(ps->p - vstart);
            ps->doc->span_ws = ps->ws != ws0;
        }
        v->string = key;
        if (tail) {
            tail->next = v;
            v->prev = tail;
        } else {
            obj->child = v;
        }
        tail = v;
        n++;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            skip_ws(ps);
            continue;
        }
        if (ps->p < ps->end && *ps->p == '}') {
            ps->p++;
            obj->child->prev = tail;
            break;
        }
        return fail(ps, EDS_ERR_PARSE, NULL);
    }
    if (n > 1) {
        const char *dup = duplicate_key(ps, obj, n);
        if (ps->rc != EDS_OK)
            return NULL;
        if (dup) {
            ps->rc = eds_error_set(ps->err, EDS_ERR_PARSE, "duplicate key \"%.64s\"", dup);
            return NULL;
        }
    }
    return obj;
}

static cJSON *parse_value(parser *ps)
{
    if (ps->p >= ps->end)
        return fail(ps, EDS_ERR_PARSE, NULL);
    switch (*ps->p) {
    case '{':
    case '[': {
        if (++ps->depth > EDS_JSON_MAX_DEPTH)
            return fail(ps, EDS_ERR_PARSE, "not valid JSON: nested too deeply");
        cJSON *v = *ps->p == '{' ? parse_object(ps, NULL) : parse_array(ps);
        ps->depth--;
        return v;
    }
    case '"': {
        cJSON *n = new_node(ps, cJSON_String);
        if (n && !(n->valuestring = parse_string(ps)))
            return NULL;
        return n;
    }
    case 't':
        if (literal(ps, "true", 4))
            return new_node(ps, cJSON_True);
        break;
    case 'f':
        if (literal(ps, "false", 5))
            return new_node(ps, cJSON_False);
        break;
    case 'n':
        if (literal(ps, "null", 4))
            return new_node(ps, cJSON_NULL);
        break;
    default:
        if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9'))
            return parse_number(ps);
    }
    return fail(ps, EDS_ERR_PARSE, NULL);
}

int eds_json_parse(const char *text, size_t len, const char *capture, eds_json_doc *doc,
                   eds_error *err)
{
    memset(doc, 0, sizeof(*doc));
    parser ps = {.start = text, .p = text, .end = text + len, .doc = doc, .err = err};
    skip_ws(&ps);
    cJSON *root;
    if (ps.p < ps.end && *ps.p == '{') {
        ps.depth = 1;
        root = parse_object(&ps, capture);
    } else {
        root = parse_value(&ps);
    }
    if (root) {
        skip_ws(&ps);
        if (ps.p != ps.end)
            root = fail(&ps, EDS_ERR_PARSE, NULL);
    }
    if (!root) {
        int rc = ps.rc;
        eds_json_doc_free(doc);
        return rc;
    }
    doc->root = root;
    return EDS_OK;
}

bool eds_json_is_value(const char *text, size_t len)
{
    eds_json_doc doc;
    bool ok = eds_json_parse(text, len, NULL, &doc, NULL) == EDS_OK;
    eds_json_doc_free(&doc);
    return ok;
}

size_t eds_json_minify(const char *in, size_t len, char *out)
{
    size_t n = 0;
    bool str = false;
    for (size_t i = 0; i < len; i++) {
        char ch = in[i];
        if (str) {
            out[n++] = ch;
            if (ch == '\\' && i + 1 < len)
                out[n++] = in[++i];
            else if (ch == '"')
                str = false;
        } else if (ch == '"') {
            str = true;
            out[n++] = ch;
        } else if (ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r') {
            out[n++] = ch;
        }
    }
    return n;
}

/* Past the minified JSON value at json[i] (valid JSON): its end index. */
static size_t skip_value(const char *json, size_t len, size_t i)
{
    int depth = 0;
    bool str = false;
    for (; i < len; i++) {
        char ch = json[i];
        if (str) {
            if (ch == '\\')
                i++;
            else if (ch == '"')
                str = false;
            else
                continue;
            if (!str && depth == 0)
                return i + 1;
        } else if (ch == '"') {
            str = true;
        } else if (ch == '{' || ch == '[') {
            depth++;
        } else if (ch == '}' || ch == ']' || ch == ',') {
            if (depth == 0)
                return i; /* the end of a scalar */
            if (ch != ',' && --depth == 0)
                return i + 1;
        }
    }
    return len;
}

bool eds_json_member_text(const char *json, size_t len, size_t n, const char **v, size_t *vlen)
{
    if (len < 2 || json[0] != '{')
        return false;
    size_t i = 1;
    for (size_t k = 0; i < len && json[i] == '"'; k++) {
        i = skip_value(json, len, i); /* the key */
        if (i >= len || json[i] != ':')
            return false;
        size_t start = ++i;
        i = skip_value(json, len, i);
        if (k == n) {
            *v = json + start;
            *vlen = i - start;
            return i > start;
        }
        if (i >= len || json[i] != ',')
            return false;
        i++;
    }
    return false;
}

bool eds_json_append_text(char *buf, size_t cap, size_t *len, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    bool utf8 = eds_utf8_valid(s, n);
    size_t o = *len;
    if (o >= cap || cap - o < 2)
        return false;
    buf[o++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        char esc = ch == '"'    ? '"'
                   : ch == '\\' ? '\\'
                   : ch == '\n' ? 'n'
                   : ch == '\r' ? 'r'
                   : ch == '\t' ? 't'
                                : 0;
        bool hexed = !esc && (ch < 0x20 || (ch >= 0x80 && !utf8));
        size_t need = esc ? 2 : hexed ? 6 : 1;
        if (cap - o < need + 1) /* and the closing quote */
            return false;
        if (esc) {
            buf[o++] = '\\';
            buf[o++] = esc;
        } else if (hexed) {
            memcpy(buf + o, "\\u00", 4);
            buf[o + 4] = hex[ch >> 4];
            buf[o + 5] = hex[ch & 15];
            o += 6;
        } else {
            buf[o++] = (char)ch;
        }
    }
    buf[o++] = '"';
    *len = o;
    return true;
}
