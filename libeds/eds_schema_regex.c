/*
 * eds_schema_regex.c - a `regex` rule: the limits its pattern must keep
 * before glibc's regcomp sees it, and its compiled matcher, whose memory is
 * bounded (at the end of this file).
 *
 * regcomp copies a repeated part once per repetition (a{999}{999} is a
 * million copies) and computes, for every node, the set of nodes reachable
 * without reading a character; when a part that can match the empty string
 * is repeated, or two alternatives can both match it, that computation grows
 * out of all proportion: (a?)* written 40 times takes minutes, (a?|b?)
 * written 160 times a gigabyte, and 100,000 nested parentheses overflow the
 * stack. Such a schema is refused at load instead.
 *
 * The check parses the POSIX extended syntax just enough to measure it
 * (groups, alternatives, bracket expressions, escapes, repetitions); it
 * accepts nothing regcomp would refuse, since regcomp still compiles the
 * pattern afterwards. Measures (see eds_schema.h for the limits):
 *   size      atoms once repetitions are expanded (x{n,m} counts m copies,
 *             x{n,} n + 1, x+ 2), so nested repetitions multiply;
 *   nullable  whether a part can match the empty string.
 */
#include "eds_schema.h"
#include "eds_schema_util.h"

#include <pthread.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct rx {
    const char *p; /* next byte to read */
    int depth;     /* groups open around p */
    char *why;
    size_t why_size;
} rx;

typedef struct part {
    size_t size;
    bool nullable;
} part;

static bool refuse(rx *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool refuse(rx *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->why, r->why_size, fmt, ap);
    va_end(ap);
    return false;
}

/* Sizes saturate just past the limit, so no product can overflow. */
static size_t cap(size_t n)
{
    return n > EDS_SCHEMA_REGEX_MAX_SIZE ? EDS_SCHEMA_REGEX_MAX_SIZE + 1 : n;
}

/* Skips a bracket expression; p is just past its '['. An unterminated one
 * runs to the end (regcomp refuses it). */
static void skip_bracket(rx *r)
{
    if (*r->p == '^')
        r->p++;
    if (*r->p == ']')
        r->p++; /* a leading ']' is a member, not the end */
    while (*r->p && *r->p != ']') {
        char c = r->p[1];
        if (*r->p == '[' && (c == ':' || c == '.' || c == '=')) {
            const char *end = r->p + 2;
            while (*end && !(end[0] == c && end[1] == ']'))
                end++;
            r->p = *end ? end + 2 : end;
        } else {
            r->p++;
        }
    }
    if (*r->p)
        r->p++;
}

static size_t read_count(const char **p, bool *given)
{
    size_t n = 0;
    *given = false;
    while (**p >= '0' && **p <= '9') {
        if (n <= 100000)
            n = n * 10 + (size_t)(**p - '0');
        (*p)++;
        *given = true;
    }
    return n;
}

/* Reads "{m}", "{m,}", "{m,n}" or "{,n}" at p (GNU reads {,n} as {0,n}).
 * Anything else is not an interval: regcomp will refuse it. */
static bool read_interval(const char *p, size_t *lo, size_t *hi, bool *unbounded, const char **end)
{
    bool has_lo, has_hi = false;
    p++;
    *lo = read_count(&p, &has_lo);
    *hi = *lo;
    *unbounded = false;
    if (*p == ',') {
        p++;
        *hi = read_count(&p, &has_hi);
        *unbounded = !has_hi;
    }
    if (*p != '}' || (!has_lo && !has_hi))
        return false;
    *end = p + 1;
    return true;
}

static bool alternatives(rx *r, part *out);

/* One atom: a group, a bracket expression, an escape or a character. */
static bool atom(rx *r, part *out)
{
    char c = *r->p++;
    out->size = 1;
    out->nullable = false;
    if (c == '(') {
        if (++r->depth > EDS_SCHEMA_REGEX_MAX_NESTING)
            return refuse(r, "groups nested deeper than %d", EDS_SCHEMA_REGEX_MAX_NESTING);
        if (!alternatives(r, out))
            return false;
        if (*r->p == ')')
            r->p++;
        r->depth--;
        if (out->size == 0)
            out->size = 1;
    } else if (c == '[') {
        skip_bracket(r);
    } else if (c == '\\') {
        /* The loader compiles the pattern inside a group, "^(...)$", which
         * would renumber every back-reference; glibc's matcher is also
         * exponential with them. */
        if (*r->p >= '1' && *r->p <= '9')
            return refuse(r, "back-reference '\\%c' (not supported)", *r->p);
        if (*r->p)
            r->p++;
    } else if (c == ')') {
        /* glibc reads a ')' with no '(' as a character, but in "^(...)$" it
         * would close the loader's group: "a)|b" would then match "a)x". */
        return refuse(r, "')' without a '(' (write \\) for the character)");
    } else if (c == '^' || c == '$') {
        out->nullable = true; /* an anchor matches no character */
    }
    return true;
}

/* Applies the repetitions that follow an atom. */
static bool repetitions(rx *r, part *pt)
{
    for (;;) {
        char c = *r->p;
        size_t lo, hi;
        bool unbounded;
        const char *end;
        if (c == '*' || c == '+' || c == '?') {
            end = r->p + 1;
            lo = c == '+';
            hi = c == '+' ? 2 : 1; /* regcomp writes x+ as x x* */
            unbounded = c != '?';
        } else if (c == '{' && read_interval(r->p, &lo, &hi, &unbounded, &end)) {
            if (lo > EDS_SCHEMA_REGEX_MAX_REPEAT ||
                (!unbounded && hi > EDS_SCHEMA_REGEX_MAX_REPEAT))
                return refuse(r, "repetition count above %d in '%.*s'", EDS_SCHEMA_REGEX_MAX_REPEAT,
                              (int)(end - r->p), r->p);
            if (unbounded)
                hi = lo + 1;
        } else {
            return true;
        }
        if (pt->nullable)
            return refuse(r,
                          "'%.*s' repeats a part that can match the empty string; "
                          "repeat a part that cannot (write (a|b)* for (a?|b?)*)",
                          (int)(end - r->p), r->p);
        pt->size = cap(pt->size * (hi ? hi : 1));
        pt->nullable = lo == 0;
        r->p = end;
    }
}

/* A sequence of atoms, each with its repetitions; stops at '|', ')' or the end. */
static bool branch(rx *r, part *out)
{
    out->size = 0;
    out->nullable = true;
    while (*r->p && *r->p != '|' && !(*r->p == ')' && r->depth > 0)) {
        part pt;
        if (!atom(r, &pt) || !repetitions(r, &pt))
            return false;
        out->size = cap(out->size + pt.size);
        out->nullable = out->nullable && pt.nullable;
    }
    return true;
}

static bool alternatives(rx *r, part *out)
{
    int nullable = 0;
    out->size = 0;
    for (;;) {
        part b;
        if (!branch(r, &b))
            return false;
        out->size = cap(out->size + b.size);
        nullable += b.nullable;
        if (nullable > 1)
            return refuse(r, "two alternatives can match the empty string; "
                             "let at most one (write (a|b)? for (a?|b?))");
        if (*r->p != '|')
            break;
        r->p++;
    }
    out->nullable = nullable > 0;
    return true;
}

bool eds_schema__regex_check(const char *pattern, size_t *size, char *why, size_t why_size)
{
    rx r = {.p = pattern, .why = why, .why_size = why_size};
    part all;
    if (!alternatives(&r, &all))
        return false;
    *size = all.size;
    if (*size > EDS_SCHEMA_REGEX_MAX_SIZE)
        return refuse(&r, "larger than %d elements once repetitions are expanded",
                      EDS_SCHEMA_REGEX_MAX_SIZE);
    return true;
}

/* ---------------------------------------------------------------------- */
/* The matcher                                                             */

/* glibc's regexec builds its DFA states lazily, from the values it reads,
 * and keeps every one until regfree: a pattern like [ab]*a[ab]{20} makes a
 * new state for nearly every byte of a new value (about 3 KB each), so the
 * cache grew without end. The bytes matched since the last compile stand in
 * for the cache's size; past EDS_SCHEMA_REGEX_MATCH_BUDGET the pattern is
 * compiled afresh, which the pattern limits above keep cheap. The schema is
 * otherwise immutable and may be shared by threads: the lock makes that
 * true of this cache too (glibc's regexec locks the regex_t anyway). */
struct eds_schema_rx {
    pthread_mutex_t lock;
    regex_t re;
    bool compiled;     /* false only after a recompile ran out of memory */
    size_t matched;    /* bytes given to regexec since re was compiled */
    size_t recompiles; /* times re was compiled afresh */
    char anchored[];   /* "^(PATTERN)$" */
};

int eds_schema__rx_create(const char *pattern, eds_schema_rx **out)
{
    *out = NULL;
    size_t n = strlen(pattern);
    eds_schema_rx *m = calloc(1, sizeof(*m) + n + 5);
    if (!m)
        return EDS_ERR_NOMEM;
    snprintf(m->anchored, n + 5, "^(%s)$", pattern);
    int rc = regcomp(&m->re, m->anchored, REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
        free(m);
        return rc == REG_ESPACE ? EDS_ERR_NOMEM : EDS_ERR_SCHEMA;
    }
    if (pthread_mutex_init(&m->lock, NULL) != 0) {
        regfree(&m->re);
        free(m);
        return EDS_ERR_NOMEM;
    }
    m->compiled = true;
    *out = m;
    return EDS_OK;
}

void eds_schema__rx_destroy(eds_schema_rx *m)
{
    if (!m)
        return;
    if (m->compiled)
        regfree(&m->re);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

int eds_schema__rx_match(eds_schema_rx *m, const char *s, size_t len, bool *matched)
{
    *matched = false;
    if (len > EDS_SCHEMA_REGEX_MAX_VALUE)
        return EDS_ERR_TOOLONG;
    int rc = EDS_OK;
    pthread_mutex_lock(&m->lock);
    /* Recompiled before a value would take the count past the budget, so
     * the states come from at most max(budget, longest value) bytes. */
    if (m->compiled && m->matched > 0 && m->matched + len > EDS_SCHEMA_REGEX_MATCH_BUDGET) {
        regfree(&m->re); /* first: the memory may be what the new one needs */
        m->compiled = false;
        m->recompiles++;
    }
    if (!m->compiled) {
        /* The pattern compiled at load, so only memory can fail here. */
        m->compiled = regcomp(&m->re, m->anchored, REG_EXTENDED | REG_NOSUB) == 0;
        m->matched = 0;
    }
    if (m->compiled) {
        *matched = regexec(&m->re, s, 0, NULL, 0) == 0;
        m->matched += len;
    } else {
        rc = EDS_ERR_NOMEM;
    }
    pthread_mutex_unlock(&m->lock);
    return rc;
}

size_t eds_schema__rx_recompiles(eds_schema_rx *m)
{
    pthread_mutex_lock(&m->lock);
    size_t n = m->recompiles;
    pthread_mutex_unlock(&m->lock);
    return n;
}
