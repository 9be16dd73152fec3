/*
 * eds_schema_fmt.c - Python's str()/repr() of JSON values, so that error
 * texts read exactly as Cerberus writes them ("min value is 0.0",
 * "unallowed values ('x', 'y')").
 */
#include "eds_schema_util.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void eds_schema__buf_init(eds_schema_buf *b, size_t max)
{
    memset(b, 0, sizeof(*b));
    b->max = max;
}

void eds_schema__buf_free(eds_schema_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

static bool buf_reserve(eds_schema_buf *b, size_t n)
{
    if (b->len + n + 1 <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + n + 1)
        cap *= 2;
    char *np = realloc(b->p, cap);
    if (!np) {
        b->nomem = true;
        return false;
    }
    b->p = np;
    b->cap = cap;
    return true;
}

void eds_schema__buf_add(eds_schema_buf *b, const char *s, size_t n)
{
    if (b->nomem || b->cut)
        return;
    bool cut = false;
    if (n > b->max - b->len) {
        /* Keep room for "...", and never split a UTF-8 sequence: the text
         * ends up in JSON that other programs decode. */
        size_t room = b->max - b->len;
        n = room > 3 ? room - 3 : 0;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
        cut = true;
    }
    if (!buf_reserve(b, n + 3))
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    if (cut) {
        memcpy(b->p + b->len, "...", 3);
        b->len += 3;
        b->cut = true;
    }
    b->p[b->len] = '\0';
}

void eds_schema__buf_adds(eds_schema_buf *b, const char *s)
{
    eds_schema__buf_add(b, s, strlen(s));
}

const char *eds_schema__buf_str(eds_schema_buf *b)
{
    return b->p ? b->p : "";
}

/*
 * Python's float repr: the shortest digit string that reads back as the
 * same double; scientific notation when the decimal exponent is below -4
 * or at least 16 ("1e-05", "1e+16"), otherwise fixed with at least one
 * digit after the point ("100.0").
 */
void eds_schema__float_repr(double v, char *buf, size_t size)
{
    if (isnan(v)) {
        snprintf(buf, size, "nan");
        return;
    }
    if (isinf(v)) {
        snprintf(buf, size, v < 0 ? "-inf" : "inf");
        return;
    }
    char sci[40];
    for (int prec = 0; prec < 17; prec++) {
        snprintf(sci, sizeof(sci), "%.*e", prec, v);
        if (strtod(sci, NULL) == v)
            break;
    }
    /* sci is "[-]d[.ddd]e[+-]XX": split it into sign, digits and exponent. */
    const char *p = sci;
    bool neg = false;
    if (*p == '-') {
        neg = true;
        p++;
    }
    char digits[24];
    size_t nd = 0;
    for (; *p && *p != 'e'; p++) {
        if (*p != '.' && nd < sizeof(digits) - 1)
            digits[nd++] = *p;
    }
    digits[nd] = '\0';
    while (nd > 1 && digits[nd - 1] == '0') /* "%.0e" never leaves these, but be sure */
        digits[--nd] = '\0';
    long exp10 = *p == 'e' ? strtol(p + 1, NULL, 10) : 0;

    char out[64];
    size_t o = 0;
    if (neg)
        out[o++] = '-';
    if (exp10 < -4 || exp10 >= 16) {
        out[o++] = digits[0];
        if (nd > 1) {
            out[o++] = '.';
            memcpy(out + o, digits + 1, nd - 1);
            o += nd - 1;
        }
        snprintf(out + o, sizeof(out) - o, "e%c%02ld", exp10 < 0 ? '-' : '+',
                 exp10 < 0 ? -exp10 : exp10);
    } else if (exp10 < 0) {
        out[o++] = '0';
        out[o++] = '.';
        for (long i = -1; i > exp10; i--)
            out[o++] = '0';
        memcpy(out + o, digits, nd);
        o += nd;
        out[o] = '\0';
    } else {
        size_t intlen = (size_t)exp10 + 1;
        for (size_t i = 0; i < intlen; i++)
            out[o++] = i < nd ? digits[i] : '0';
        out[o++] = '.';
        if (nd > intlen) {
            memcpy(out + o, digits + intlen, nd - intlen);
            o += nd - intlen;
        } else {
            out[o++] = '0';
        }
        out[o] = '\0';
    }
    snprintf(buf, size, "%s", out);
}

void eds_schema__number_token_repr(const char *tok, size_t len, double v, eds_schema_buf *b)
{
    bool is_float = false;
    for (size_t i = 0; i < len; i++) {
        if (tok[i] == '.' || tok[i] == 'e' || tok[i] == 'E')
            is_float = true;
    }
    if (!is_float) {
        /* Python's int(): "-0" is 0; other JSON integers print as written. */
        if (len == 2 && tok[0] == '-' && tok[1] == '0')
            eds_schema__buf_adds(b, "0");
        else
            eds_schema__buf_add(b, tok, len);
        return;
    }
    char tmp[64];
    eds_schema__float_repr(v, tmp, sizeof(tmp));
    eds_schema__buf_adds(b, tmp);
}

static void number_repr(double v, eds_schema_buf *b)
{
    char tmp[64];
    if (isfinite(v) && v > -9007199254740992.0 && v < 9007199254740992.0 &&
        v == (double)(int64_t)v) {
        snprintf(tmp, sizeof(tmp), "%.0f", v == 0 ? 0.0 : v);
    } else {
        eds_schema__float_repr(v, tmp, sizeof(tmp));
    }
    eds_schema__buf_adds(b, tmp);
}

void eds_schema__py_repr_string(const char *s, eds_schema_buf *b)
{
    /* Python prefers single quotes, double ones when the text has a ' and no ". */
    char q = '\'';
    if (strchr(s, '\'') && !strchr(s, '"'))
        q = '"';
    eds_schema__buf_add(b, &q, 1);
    const unsigned char *u = (const unsigned char *)s;
    const unsigned char *run = u;
    for (; *u; u++) {
        const char *esc = NULL;
        char hex[8];
        if (*u == '\\')
            esc = "\\\\";
        else if (*u == (unsigned char)q)
            esc = q == '\'' ? "\\'" : "\\\"";
        else if (*u == '\n')
            esc = "\\n";
        else if (*u == '\r')
            esc = "\\r";
        else if (*u == '\t')
            esc = "\\t";
        else if (*u < 0x20 || *u == 0x7f) {
            snprintf(hex, sizeof(hex), "\\x%02x", *u);
            esc = hex;
        } else if (*u == 0xc2 && u[1] >= 0x80 && u[1] <= 0xa0) {
            /* U+0080..U+00A0 are not printable for Python: \x80 .. \xa0 */
            eds_schema__buf_add(b, (const char *)run, (size_t)(u - run));
            snprintf(hex, sizeof(hex), "\\x%02x", u[1]);
            eds_schema__buf_adds(b, hex);
            u++;
            run = u + 1;
            continue;
        }
        if (esc) {
            eds_schema__buf_add(b, (const char *)run, (size_t)(u - run));
            eds_schema__buf_adds(b, esc);
            run = u + 1;
        }
    }
    eds_schema__buf_add(b, (const char *)run, (size_t)(u - run));
    eds_schema__buf_add(b, &q, 1);
}

/* Deeper containers print as "..." (Python would print them whole; the
 * message is cut at its maximum length anyway). */
#define REPR_MAX_DEPTH 64

static void py_repr(const cJSON *v, eds_schema_buf *b, int depth)
{
    if (cJSON_IsString(v)) {
        eds_schema__py_repr_string(v->valuestring, b);
    } else if (cJSON_IsNumber(v)) {
        number_repr(v->valuedouble, b);
    } else if (cJSON_IsTrue(v)) {
        eds_schema__buf_adds(b, "True");
    } else if (cJSON_IsFalse(v)) {
        eds_schema__buf_adds(b, "False");
    } else if ((cJSON_IsArray(v) || cJSON_IsObject(v)) && depth >= REPR_MAX_DEPTH) {
        eds_schema__buf_adds(b, "...");
    } else if (cJSON_IsArray(v) || cJSON_IsObject(v)) {
        bool obj = cJSON_IsObject(v);
        eds_schema__buf_adds(b, obj ? "{" : "[");
        for (const cJSON *c = v->child; c && !b->cut && !b->nomem; c = c->next) {
            if (c != v->child)
                eds_schema__buf_adds(b, ", ");
            if (obj) {
                eds_schema__py_repr_string(c->string ? c->string : "", b);
                eds_schema__buf_adds(b, ": ");
            }
            py_repr(c, b, depth + 1);
        }
        eds_schema__buf_adds(b, obj ? "}" : "]");
    } else {
        eds_schema__buf_adds(b, "None");
    }
}

void eds_schema__py_repr(const cJSON *v, eds_schema_buf *b)
{
    py_repr(v, b, 0);
}

void eds_schema__py_str(const cJSON *v, eds_schema_buf *b)
{
    if (cJSON_IsString(v))
        eds_schema__buf_adds(b, v->valuestring);
    else
        eds_schema__py_repr(v, b);
}
