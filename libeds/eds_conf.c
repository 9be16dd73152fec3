/*
 * eds_conf.c - table-driven configuration: file reader, value parsers,
 * command-line mapping and --help text. See eds_conf.h for the syntax.
 */
#include "eds_conf.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NAME_MAX_LEN 128 /* longest option name looked up; longer is unknown */
#define ECHO_MAX 64      /* at most this many bytes of a bad value go into a message */

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* ---- reading a small line-based file ---- */

/* Reads all of fd, at most max_size bytes, into a NUL-terminated buffer. */
static int read_all(int fd, const char *path, size_t max_size, char **out, size_t *out_len,
                    eds_error *err)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return eds_error_set(err, EDS_ERR_IO, "%s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return eds_error_set(err, EDS_ERR_CONFIG, "%s: not a regular file", path);
    if ((unsigned long long)st.st_size > max_size)
        return eds_error_set(err, EDS_ERR_CONFIG, "%s: file is larger than %zu bytes", path,
                             max_size);

    /* Sized from fstat, one byte more to see EOF; grows (up to one byte over
     * the limit, to notice) only if the file grew meanwhile. */
    size_t cap = (size_t)st.st_size + 1;
    char *buf = malloc(cap + 1);
    if (!buf)
        return eds_error_set(err, EDS_ERR_NOMEM, "%s: out of memory", path);
    size_t len = 0;
    for (;;) {
        if (len == cap) {
            if (cap > max_size)
                break;
            size_t grown = cap > (max_size + 1) / 2 ? max_size + 1 : cap * 2;
            char *bigger = realloc(buf, grown + 1);
            if (!bigger) {
                free(buf);
                return eds_error_set(err, EDS_ERR_NOMEM, "%s: out of memory", path);
            }
            buf = bigger;
            cap = grown;
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int rc = eds_error_set(err, EDS_ERR_IO, "%s: %s", path, strerror(errno));
            free(buf);
            return rc;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    if (len > max_size) {
        free(buf);
        return eds_error_set(err, EDS_ERR_CONFIG, "%s: file is larger than %zu bytes", path,
                             max_size);
    }
    buf[len] = '\0';
    *out = buf;
    *out_len = len;
    return EDS_OK;
}

/* Calls fn for one raw line (without its LF); skips blanks and comments. */
static int each_line__one(char *line, size_t len, size_t max_line, unsigned line_no,
                          eds_conf_line_fn fn, void *ctx, eds_error *err)
{
    if (len > 0 && line[len - 1] == '\r')
        len--;
    if (len > max_line)
        return eds_error_set(err, EDS_ERR_CONFIG, "line is longer than %zu bytes", max_line);
    if (memchr(line, '\0', len))
        return eds_error_set(err, EDS_ERR_CONFIG, "line contains a NUL byte");
    while (len > 0 && is_blank(line[len - 1]))
        len--;
    line[len] = '\0';
    while (is_blank(*line)) {
        line++;
        len--;
    }
    if (len == 0 || line[0] == '#')
        return EDS_OK;
    return fn(ctx, line_no, line, len, err);
}

int eds_conf_each_line(const char *path, size_t max_size, size_t max_line, eds_conf_line_fn fn,
                       void *ctx, eds_error *err)
{
    /* O_NONBLOCK: a FIFO named by mistake must not hang us before fstat refuses it. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return eds_error_set(err, EDS_ERR_IO, "%s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t len = 0;
    int rc = read_all(fd, path, max_size, &buf, &len, err);
    close(fd);
    if (rc != EDS_OK)
        return rc;

    unsigned line_no = 0;
    size_t pos = 0;
    while (pos < len && rc == EDS_OK) {
        char *nl = memchr(buf + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - buf) : len;
        eds_error reason;
        eds_error_clear(&reason);
        line_no++;
        /* buf[end] is the LF or the terminating NUL: overwritten with NUL. */
        rc = each_line__one(buf + pos, end - pos, max_line, line_no, fn, ctx, &reason);
        if (rc != EDS_OK)
            eds_error_set(err, rc, "%s:%u: %s", path, line_no, reason.msg);
        pos = end + 1;
    }
    free(buf);
    return rc;
}

/* ---- option lookup ---- */

static const eds_conf_opt *find_exact(const eds_conf_opt *opts, const char *name)
{
    for (const eds_conf_opt *o = opts; o->name; o++) {
        if (strcmp(o->name, name) == 0)
            return o;
    }
    return NULL;
}

/* Copies a flag spelling ("--max-clients") as a table name ("max_clients")
 * into buf; false if it does not fit. */
static bool normalize_name(const char *name, char *buf, size_t size)
{
    if (strncmp(name, "--", 2) == 0)
        name += 2;
    size_t n = strlen(name);
    if (n >= size)
        return false;
    for (size_t i = 0; i < n; i++)
        buf[i] = name[i] == '-' ? '_' : name[i];
    buf[n] = '\0';
    return true;
}

const eds_conf_opt *eds_conf_find(const eds_conf_opt *opts, const char *name)
{
    char buf[NAME_MAX_LEN];
    if (!name || !normalize_name(name, buf, sizeof(buf)))
        return NULL;
    return find_exact(opts, buf);
}

/* Edit distance, for "did you mean" hints; names are short (< NAME_MAX_LEN). */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la >= NAME_MAX_LEN || lb >= NAME_MAX_LEN)
        return SIZE_MAX;
    size_t row[NAME_MAX_LEN + 1];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

static const eds_conf_opt *closest(const eds_conf_opt *opts, const char *name)
{
    const eds_conf_opt *best = NULL;
    size_t best_d = 3; /* suggest only for up to two typos */
    for (const eds_conf_opt *o = opts; o->name; o++) {
        size_t d = edit_distance(name, o->name);
        if (d < best_d) {
            best_d = d;
            best = o;
        }
    }
    return best;
}

/* name is looked up (table spelling), shown is what the user wrote. */
static int unknown_option(const eds_conf_opt *opts, const char *name, const char *shown,
                          bool as_flag, eds_error *err)
{
    const eds_conf_opt *hint = closest(opts, name);
    if (!hint)
        return eds_error_set(err, EDS_ERR_CONFIG, "unknown option '%.*s'", NAME_MAX_LEN, shown);
    char flag[NAME_MAX_LEN];
    snprintf(flag, sizeof(flag), "%s", hint->name);
    if (as_flag) {
        for (char *p = flag; *p; p++)
            *p = *p == '_' ? '-' : *p;
    }
    return eds_error_set(err, EDS_ERR_CONFIG, "unknown option '%.*s' (did you mean '%s%s'?)",
                         NAME_MAX_LEN, shown, as_flag ? "--" : "", flag);
}

/* ---- value parsers: each returns EDS_OK or a reason in err ---- */

static void range_of(const eds_conf_opt *o, long long lo_all, long long hi_all, long long *lo,
                     long long *hi)
{
    if (o->min == 0 && o->max == 0) {
        *lo = lo_all;
        *hi = hi_all;
    } else {
        *lo = o->min;
        *hi = o->max;
    }
}

static int out_of_range(const eds_conf_opt *o, const char *value, long long lo, long long hi,
                        eds_error *err)
{
    return eds_error_set(err, EDS_ERR_CONFIG, "%s: '%.*s' is out of range %lld..%lld", o->name,
                         ECHO_MAX, value, lo, hi);
}

static int parse_int(const eds_conf_opt *o, const char *value, int *out, eds_error *err)
{
    long long lo, hi;
    range_of(o, INT_MIN, INT_MAX, &lo, &hi);
    if (lo < INT_MIN)
        lo = INT_MIN;
    if (hi > INT_MAX)
        hi = INT_MAX;
    bool sign = value[0] == '-' || value[0] == '+';
    if (!is_digit(value[sign ? 1 : 0]))
        goto not_int;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(value, &end, 10);
    if (*end != '\0')
        goto not_int;
    if (errno == ERANGE || v < lo || v > hi)
        return out_of_range(o, value, lo, hi, err);
    *out = (int)v;
    return EDS_OK;
not_int:
    return eds_error_set(err, EDS_ERR_CONFIG, "%s: '%.*s' is not an integer", o->name, ECHO_MAX,
                         value);
}

static int parse_size(const eds_conf_opt *o, const char *value, size_t *out, eds_error *err)
{
    long long lo, hi;
    range_of(o, 0, LLONG_MAX, &lo, &hi);
    if (lo < 0)
        lo = 0;
    /* Unbounded sizes may reach SIZE_MAX, which a long long cannot show. */
    unsigned long long uhi = (o->min == 0 && o->max == 0) ? SIZE_MAX : (unsigned long long)hi;
    if (!is_digit(value[0]))
        goto not_size;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(value, &end, 10);
    unsigned long long mult = 1;
    switch (*end) {
    case '\0':
        break;
    case 'k':
    case 'K':
        mult = 1024ULL;
        break;
    case 'm':
    case 'M':
        mult = 1024ULL * 1024;
        break;
    case 'g':
    case 'G':
        mult = 1024ULL * 1024 * 1024;
        break;
    default:
        goto not_size;
    }
    if (*end != '\0' && end[1] != '\0')
        goto not_size;
    if (errno == ERANGE || v > ULLONG_MAX / mult)
        goto range;
    v *= mult;
    if (v < (unsigned long long)lo || v > uhi || v > SIZE_MAX)
        goto range;
    *out = (size_t)v;
    return EDS_OK;
range:
    return eds_error_set(err, EDS_ERR_CONFIG, "%s: '%.*s' is out of range %lld..%llu bytes",
                         o->name, ECHO_MAX, value, lo, uhi);
not_size:
    return eds_error_set(err, EDS_ERR_CONFIG,
                         "%s: '%.*s' is not a size (bytes, optional suffix k, M or G)", o->name,
                         ECHO_MAX, value);
}

static int parse_double(const eds_conf_opt *o, const char *value, double *out, eds_error *err)
{
    /* Only plain decimal notation: strtod alone would also take "nan",
     * "inf", hex floats and leading spaces. */
    if (value[strspn(value, "0123456789+-.eE")] != '\0')
        goto not_number;
    char *end = NULL;
    errno = 0;
    double v = strtod(value, &end);
    if (end == value || *end != '\0')
        goto not_number;
    bool bounded = !(o->min == 0 && o->max == 0);
    if (errno == ERANGE || !isfinite(v) ||
        (bounded && (v < (double)o->min || v > (double)o->max))) {
        if (bounded)
            return out_of_range(o, value, o->min, o->max, err);
        return eds_error_set(err, EDS_ERR_CONFIG, "%s: '%.*s' is out of range", o->name, ECHO_MAX,
                             value);
    }
    *out = v;
    return EDS_OK;
not_number:
    return eds_error_set(err, EDS_ERR_CONFIG, "%s: '%.*s' is not a number", o->name, ECHO_MAX,
                         value);
}

/* Applies a value (NULL: bare flag) to the field described by o. */
static int apply(const eds_conf_opt *o, void *target, const char *value, eds_error *err)
{
    char *field = (char *)target + o->offset;
    if (!value && o->type == EDS_CONF_BOOL)
        value = "true";
    if (!value || value[0] == '\0')
        return eds_error_set(err, EDS_ERR_CONFIG, "%s: missing value", o->name);

    switch (o->type) {
    case EDS_CONF_STRING: {
        char *copy = strdup(value);
        if (!copy)
            return eds_error_set(err, EDS_ERR_NOMEM, "%s: out of memory", o->name);
        char **slot = (char **)(void *)field;
        free(*slot);
        *slot = copy;
        return EDS_OK;
    }
    case EDS_CONF_BOOL:
        if (strcmp(value, "true") == 0) {
            *(bool *)(void *)field = true;
            return EDS_OK;
        }
        if (strcmp(value, "false") == 0) {
            *(bool *)(void *)field = false;
            return EDS_OK;
        }
        return eds_error_set(err, EDS_ERR_CONFIG, "%s: '%.*s' is not true or false", o->name,
                             ECHO_MAX, value);
    case EDS_CONF_INT:
        return parse_int(o, value, (int *)(void *)field, err);
    case EDS_CONF_SIZE:
        return parse_size(o, value, (size_t *)(void *)field, err);
    case EDS_CONF_DOUBLE:
        return parse_double(o, value, (double *)(void *)field, err);
    case EDS_CONF_CUSTOM: {
        if (!o->custom)
            return eds_error_set(err, EDS_ERR_INVAL, "%s: no handler", o->name);
        eds_error reason;
        eds_error_clear(&reason);
        int rc = o->custom(target, value, &reason);
        if (rc == EDS_OK)
            return EDS_OK;
        if (rc != EDS_ERR_NOMEM)
            rc = EDS_ERR_CONFIG;
        return eds_error_set(err, rc, "%s: %s", o->name, reason.msg[0] ? reason.msg : "invalid");
    }
    }
    return eds_error_set(err, EDS_ERR_INVAL, "%s: bad option type", o->name);
}

/* ---- files ---- */

typedef struct load_ctx {
    const eds_conf_opt *opts;
    void *target;
} load_ctx;

static int load_line(void *ctx, unsigned line_no, char *line, size_t len, eds_error *err)
{
    load_ctx *lc = ctx;
    size_t name_len = strcspn(line, " \t");
    char *value = line + name_len;
    if (*value != '\0') {
        *value++ = '\0';
        value += strspn(value, " \t");
    }
    const eds_conf_opt *o = find_exact(lc->opts, line);
    if (!o)
        return unknown_option(lc->opts, line, line, false, err);
    return apply(o, lc->target, value, err);
}

int eds_conf_load_file(const char *path, const eds_conf_opt *opts, void *target, eds_error *err)
{
    load_ctx lc = {opts, target};
    return eds_conf_each_line(path, EDS_CONF_MAX_FILE, EDS_CONF_MAX_LINE, load_line, &lc, err);
}

/* ---- command line ---- */

int eds_conf_set(const eds_conf_opt *opts, void *target, const char *name, const char *value,
                 const char *source, eds_error *err)
{
    if (!source)
        source = "command line";
    eds_error reason;
    eds_error_clear(&reason);
    char buf[NAME_MAX_LEN];
    int rc;
    if (!name || !normalize_name(name, buf, sizeof(buf))) {
        rc = eds_error_set(&reason, EDS_ERR_CONFIG, "unknown option '%.*s'", NAME_MAX_LEN,
                           name ? name : "(null)");
    } else {
        const eds_conf_opt *o = find_exact(opts, buf);
        if (o)
            rc = apply(o, target, value, &reason);
        else
            rc = unknown_option(opts, buf, name, true, &reason);
    }
    if (rc != EDS_OK)
        eds_error_set(err, rc, "%s: %s", source, reason.msg);
    return rc;
}

/* Words in o's placeholder: *required plain ones, *optional [bracketed] ones. */
static void count_words(const eds_conf_opt *o, int *required, int *optional)
{
    *required = 1;
    *optional = 0;
    if (o->type != EDS_CONF_CUSTOM || !o->arg)
        return; /* one value, even if its placeholder has spaces */
    *required = 0;
    for (const char *p = o->arg; *p;) {
        p += strspn(p, " ");
        if (!*p)
            break;
        if (*p == '[')
            (*optional)++;
        else
            (*required)++;
        p += strcspn(p, " ");
    }
    if (*required == 0) { /* "[X]" alone: the value itself is not optional */
        *required = 1;
        (*optional)--;
    }
}

/*
 * Applies option name with its value taken from argv[first] on: one argument,
 * or for an EDS_CONF_CUSTOM option whose placeholder has several words
 * ("PORT [ADDRESS]", "PATTERN FILE") one argument per word, joined by a
 * space, so `--listener 5883 127.0.0.1` works unquoted as --help shows it. A
 * [bracketed] word takes the next argument only when it does not start with
 * '-' (the next flag). *used: the arguments taken.
 */
static int set_words(const eds_conf_opt *opts, void *target, const char *name, int argc,
                     char *const argv[], int first, int *used, eds_error *err)
{
    const eds_conf_opt *o = eds_conf_find(opts, name);
    int required = 1, optional = 0;
    if (o)
        count_words(o, &required, &optional);
    char value[EDS_CONF_MAX_LINE + 1];
    size_t len = 0;
    int n = 0;
    while (first + n < argc &&
           (n < required || (n < required + optional && argv[first + n][0] != '-'))) {
        const char *word = argv[first + n];
        size_t wlen = strlen(word);
        if (len + (n > 0) + wlen > EDS_CONF_MAX_LINE)
            return eds_error_set(err, EDS_ERR_CONFIG, "command line: %.*s: value too long",
                                 NAME_MAX_LEN, name);
        if (n > 0)
            value[len++] = ' ';
        memcpy(value + len, word, wlen);
        len += wlen;
        n++;
    }
    value[len] = '\0';
    int rc = eds_conf_set(opts, target, name, n > 0 ? value : NULL, NULL, err);
    if (rc == EDS_OK)
        *used = n;
    return rc;
}

int eds_conf_set_arg(const eds_conf_opt *opts, void *target, int argc, char *const argv[],
                     int *index, eds_error *err)
{
    int i = *index;
    if (i < 0 || i >= argc)
        return eds_error_set(err, EDS_ERR_INVAL, "command line: no argument %d", i);
    const char *arg = argv[i];
    if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0')
        return eds_error_set(err, EDS_ERR_CONFIG, "command line: unexpected argument '%.*s'",
                             ECHO_MAX, arg);
    char name[NAME_MAX_LEN];
    const char *eq = strchr(arg, '=');
    size_t name_len = eq ? (size_t)(eq - arg) : strlen(arg);
    if (name_len >= sizeof(name))
        name_len = sizeof(name) - 1; /* too long to be known: reported as unknown */
    memcpy(name, arg, name_len);
    name[name_len] = '\0';

    const eds_conf_opt *o = eds_conf_find(opts, name);
    if (o && !eq && i + 1 < argc &&
        (o->type != EDS_CONF_BOOL || strcmp(argv[i + 1], "true") == 0 ||
         strcmp(argv[i + 1], "false") == 0)) {
        int used = 0;
        int rc = set_words(opts, target, name, argc, argv, i + 1, &used, err);
        if (rc == EDS_OK)
            *index = i + 1 + used;
        return rc;
    }
    int rc = eds_conf_set(opts, target, name, eq ? eq + 1 : NULL, NULL, err);
    if (rc == EDS_OK)
        *index = i + 1;
    return rc;
}

/* ---- help ---- */

static const char *placeholder(const eds_conf_opt *o)
{
    if (o->arg)
        return o->arg;
    switch (o->type) {
    case EDS_CONF_STRING:
        return "STRING";
    case EDS_CONF_BOOL:
        return "[=true|false]";
    case EDS_CONF_INT:
        return "N";
    case EDS_CONF_SIZE:
        return "BYTES[k|M|G]";
    case EDS_CONF_DOUBLE:
        return "NUMBER";
    case EDS_CONF_CUSTOM:
        return "VALUE";
    }
    return "VALUE";
}

/* Writes "default X" for o's field in defaults into buf (empty if none). */
static void describe_default(const eds_conf_opt *o, const void *defaults, char *buf, size_t size)
{
    buf[0] = '\0';
    if (!defaults)
        return;
    const char *field = (const char *)defaults + o->offset;
    switch (o->type) {
    case EDS_CONF_STRING: {
        const char *s = *(char *const *)(const void *)field;
        if (s)
            snprintf(buf, size, "default %s", s);
        else
            snprintf(buf, size, "no default");
        break;
    }
    case EDS_CONF_BOOL:
        snprintf(buf, size, "default %s", *(const bool *)(const void *)field ? "true" : "false");
        break;
    case EDS_CONF_INT:
        snprintf(buf, size, "default %d", *(const int *)(const void *)field);
        break;
    case EDS_CONF_SIZE:
        snprintf(buf, size, "default %zu", *(const size_t *)(const void *)field);
        break;
    case EDS_CONF_DOUBLE:
        snprintf(buf, size, "default %g", *(const double *)(const void *)field);
        break;
    case EDS_CONF_CUSTOM:
        break;
    }
}

void eds_conf_print_help(FILE *out, const eds_conf_opt *opts, const void *defaults)
{
    for (const eds_conf_opt *o = opts; o->name; o++) {
        char flag[NAME_MAX_LEN];
        snprintf(flag, sizeof(flag), "%s", o->name);
        for (char *p = flag; *p; p++)
            *p = *p == '_' ? '-' : *p;

        char range[80] = "";
        bool ranged =
            o->type == EDS_CONF_INT || o->type == EDS_CONF_SIZE || o->type == EDS_CONF_DOUBLE;
        if (ranged && !(o->min == 0 && o->max == 0))
            snprintf(range, sizeof(range), ", range %lld..%lld", o->min, o->max);
        char def[160];
        describe_default(o, defaults, def, sizeof(def));

        bool bare = o->type == EDS_CONF_BOOL && !o->arg;
        fprintf(out, "  --%s%s%s\n      %s (config file: %s%s%s%s)\n", flag, bare ? "" : " ",
                placeholder(o), o->help ? o->help : "", o->name, range, def[0] ? ", " : "", def);
    }
}

void eds_conf_free_strings(const eds_conf_opt *opts, void *target)
{
    for (const eds_conf_opt *o = opts; o->name; o++) {
        if (o->type != EDS_CONF_STRING)
            continue;
        char **slot = (char **)(void *)((char *)target + o->offset);
        free(*slot);
        *slot = NULL;
    }
}
