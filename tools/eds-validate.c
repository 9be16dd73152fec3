/*
 * eds-validate - checks NDJSON records against an EDS schema, offline,
 * with the same validator the gateway runs.
 *
 *   eds-validate [--json] [--max-line BYTES] SCHEMA [FILE...]
 *
 * Reads FILEs (or stdin; "-" is stdin too) one JSON object per line and
 * prints one verdict per non-empty line. Exit status: 0 every line valid,
 * 1 some line invalid, 2 usage, schema or I/O error (reason on stderr).
 * docs/schema.md describes the output.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "eds_err.h"
#include "eds_framer.h"
#include "eds_schema.h"

#define DEFAULT_MAX_LINE (1024u * 1024u)
#define READ_CHUNK 65536

typedef struct run {
    const eds_schema *schema;
    bool json;
    uint64_t line;    /* number of the line being read, from 1 */
    bool emitted;     /* the framer handed out the current line */
    bool any_invalid; /* exit 1 */
    bool fatal;       /* exit 2 (out of memory, write error) */
} run;

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: eds-validate [--json] [--max-line BYTES] SCHEMA [FILE...]\n"
        "\n"
        "Validates newline-delimited JSON objects against SCHEMA (a Cerberus-style\n"
        "schema written as JSON, see docs/schema.md). Reads each FILE in turn, or\n"
        "stdin when none is given (\"-\" also means stdin). Lines are numbered from 1\n"
        "across all inputs, counting every line read; empty lines print nothing.\n"
        "\n"
        "Per line it prints:\n"
        "  N: ok                       the object is valid\n"
        "  N: invalid ERRORS           ERRORS: Cerberus's error dict, compact JSON\n"
        "  N: invalid bad_json         the line is not a JSON object\n"
        "  N: invalid line_too_long    the line exceeds --max-line\n"
        "With --json, one JSON object per line instead:\n"
        "  {\"line\":N,\"valid\":true}\n"
        "  {\"line\":N,\"valid\":false,\"errors\":{...}}\n"
        "  {\"line\":N,\"valid\":false,\"error\":\"bad_json\"}  (or \"line_too_long\")\n"
        "\n"
        "Options:\n"
        "  --json            machine-readable output\n"
        "  --max-line BYTES  longest line accepted, LF included (default %u)\n"
        "  --help            this text\n"
        "\n"
        "Exit status: 0 every line valid, 1 some line invalid, 2 usage, schema or\n"
        "I/O error (reason on stderr).\n"
        "\n"
        "Example:\n"
        "  $ printf '%%s\\n' '{\"timestamp\":\"2026-11-24T10:00:01Z\",\"day-ahead-price\":-3}' \\\n"
        "      | eds-validate schemas/energy.json\n"
        "  1: invalid {\"day-ahead-price\":[\"min value is 0.0\"]}\n",
        DEFAULT_MAX_LINE);
}

static void verdict(run *r, const char *error, const cJSON *errors)
{
    char *text = NULL;
    if (errors && !(text = cJSON_PrintUnformatted(errors))) {
        r->fatal = true;
        return;
    }
    if (r->json) {
        if (!error && !errors)
            printf("{\"line\":%" PRIu64 ",\"valid\":true}\n", r->line);
        else if (error)
            printf("{\"line\":%" PRIu64 ",\"valid\":false,\"error\":\"%s\"}\n", r->line, error);
        else
            printf("{\"line\":%" PRIu64 ",\"valid\":false,\"errors\":%s}\n", r->line, text);
    } else {
        if (!error && !errors)
            printf("%" PRIu64 ": ok\n", r->line);
        else
            printf("%" PRIu64 ": invalid %s\n", r->line, error ? error : text);
    }
    if (error || errors)
        r->any_invalid = true;
    free(text);
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int on_line(run *r, const char *line, size_t len)
{
    r->emitted = true;
    const char *end = NULL;
    cJSON *doc = cJSON_ParseWithLengthOpts(line, len, &end, 0);
    if (doc) {
        while (end < line + len && is_ws(*end))
            end++;
    }
    if (!doc || end != line + len || !cJSON_IsObject(doc)) {
        cJSON_Delete(doc);
        verdict(r, "bad_json", NULL);
        return r->fatal ? EDS_ERR_NOMEM : 0;
    }
    cJSON *errors = NULL;
    int rc = eds_schema_validate(r->schema, doc, &errors);
    cJSON_Delete(doc);
    if (rc == EDS_ERR_NOMEM) {
        r->fatal = true;
        return rc;
    }
    verdict(r, NULL, errors);
    cJSON_Delete(errors);
    return r->fatal ? EDS_ERR_NOMEM : 0;
}

/* Hands bytes to the framer and checks the lines it gives back: EDS_OK, or
 * what on_line or the framer refused with. */
static int feed(eds_framer *f, const char *data, size_t len, run *r)
{
    int rc = eds_framer_feed(f, data, len);
    const char *line;
    size_t n;
    while (rc == EDS_OK && (rc = eds_framer_next(f, &line, &n)) == EDS_FRAMER_LINE)
        rc = on_line(r, line, n);
    return rc == EDS_FRAMER_MORE ? EDS_OK : rc;
}

/*
 * Feeds the framer one line at a time (each piece ends at an LF), so every
 * line read is counted, also the empty ones the framer skips. A line over
 * the limit is reported once and the rest of it skipped.
 */
static int process_fd(run *r, int fd, size_t max_line)
{
    static char buf[READ_CHUNK];
    eds_framer f;
    eds_framer_init(&f, max_line);
    bool skipping = false; /* inside a line already reported as too long */
    int rc = EDS_OK;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = EDS_ERR_IO;
            break;
        }
        if (n == 0)
            break;
        const char *p = buf;
        size_t left = (size_t)n;
        while (left > 0 && rc == EDS_OK) {
            const char *nl = memchr(p, '\n', left);
            size_t piece = nl ? (size_t)(nl - p) + 1 : left;
            if (skipping) {
                if (nl) {
                    skipping = false;
                    r->line++;
                }
            } else {
                r->emitted = false;
                rc = feed(&f, p, piece, r);
                if (rc == EDS_ERR_TOOLONG) {
                    verdict(r, "line_too_long", NULL);
                    eds_framer_free(&f);
                    eds_framer_init(&f, max_line);
                    rc = r->fatal ? EDS_ERR_NOMEM : EDS_OK;
                    if (nl)
                        r->line++;
                    else
                        skipping = true;
                } else if (nl) {
                    r->line++; /* an empty line if nothing was emitted */
                }
            }
            p += piece;
            left -= piece;
        }
        if (rc != EDS_OK)
            break;
    }
    if (rc == EDS_OK && !skipping && eds_framer_pending(&f) > 0) {
        /* The last line has no LF: end it. */
        rc = feed(&f, "\n", 1, r);
        if (rc == EDS_ERR_TOOLONG) {
            verdict(r, "line_too_long", NULL);
            rc = EDS_OK;
        }
        r->line++;
    } else if (skipping) {
        r->line++;
    }
    eds_framer_free(&f);
    return rc;
}

static bool parse_size(const char *s, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < 2 || v > (1ull << 30))
        return false;
    *out = (size_t)v;
    return true;
}

int main(int argc, char **argv)
{
    run r = {.line = 1};
    size_t max_line = DEFAULT_MAX_LINE;
    int i = 1;
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--json") == 0) {
            r.json = true;
        } else if (strcmp(argv[i], "--max-line") == 0) {
            if (i + 1 >= argc || !parse_size(argv[i + 1], &max_line)) {
                fprintf(stderr, "eds-validate: --max-line needs a size in bytes, 2 .. 2^30\n");
                return 2;
            }
            i++;
        } else if (strncmp(argv[i], "--max-line=", 11) == 0) {
            if (!parse_size(argv[i] + 11, &max_line)) {
                fprintf(stderr, "eds-validate: --max-line needs a size in bytes, 2 .. 2^30\n");
                return 2;
            }
        } else if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            fprintf(stderr, "eds-validate: unknown option '%s' (see --help)\n", argv[i]);
            return 2;
        } else {
            break;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return 2;
    }
    eds_schema *schema = NULL;
    eds_error err = {0};
    if (eds_schema_load_file(argv[i], &schema, &err) != EDS_OK) {
        fprintf(stderr, "eds-validate: %s\n", err.msg);
        return 2;
    }
    r.schema = schema;
    i++;

    int status = 0;
    int nfiles = argc - i;
    for (int k = 0; k < (nfiles ? nfiles : 1) && status == 0; k++) {
        const char *name = nfiles ? argv[i + k] : "-";
        bool is_stdin = strcmp(name, "-") == 0;
        int fd = is_stdin ? STDIN_FILENO : open(name, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            fprintf(stderr, "eds-validate: %s: %s\n", name, strerror(errno));
            status = 2;
            break;
        }
        int rc = process_fd(&r, fd, max_line);
        int saved = errno;
        if (!is_stdin)
            close(fd);
        if (rc == EDS_ERR_IO) {
            fprintf(stderr, "eds-validate: %s: %s\n", is_stdin ? "stdin" : name, strerror(saved));
            status = 2;
        } else if (rc != EDS_OK || r.fatal) {
            fprintf(stderr, "eds-validate: %s\n", eds_strerror(rc ? rc : EDS_ERR_NOMEM));
            status = 2;
        }
    }
    eds_schema_destroy(schema);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "eds-validate: cannot write output: %s\n", strerror(errno));
        return 2;
    }
    if (status)
        return status;
    return r.any_invalid ? 1 : 0;
}
