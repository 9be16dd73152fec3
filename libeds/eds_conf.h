/*
 * eds_conf.h - configuration files and command-line options from one table.
 *
 * A program declares its options once, as a table of eds_conf_opt rows
 * ({name, type, offsetof(struct, field), range, help}) ended by a row whose
 * name is NULL. The same table then serves three jobs:
 *   - eds_conf_load_file() reads a mosquitto.conf-style file into the struct;
 *   - eds_conf_set_arg() / eds_conf_set() apply command-line flags, e.g.
 *     `--max-clients 50` sets max_clients ('-' is read as '_');
 *   - eds_conf_print_help() prints the table as --help text.
 *
 * File syntax (the same as mosquitto.conf):
 *   - one option per line: `name value...`; name and value are separated by
 *     spaces or tabs; the value is the rest of the line, so it may contain
 *     spaces (paths) and '#' characters;
 *   - a line whose first non-blank character is '#' is a comment; a '#'
 *     anywhere else is part of the value (there are no trailing comments);
 *   - blank lines are ignored; leading and trailing spaces, tabs and CR are
 *     trimmed, so CRLF files and a missing final newline are fine;
 *   - a line may be at most EDS_CONF_MAX_LINE bytes, a file at most
 *     EDS_CONF_MAX_FILE bytes; a NUL byte anywhere is an error;
 *   - an option given twice keeps the last value (a file value is thus
 *     overridden by a later eds_conf_set() from the command line), except
 *     EDS_CONF_CUSTOM options, whose callback sees every occurrence.
 *
 * Errors return EDS_ERR_CONFIG (EDS_ERR_IO if the file cannot be read,
 * EDS_ERR_NOMEM) and say where and why in err, e.g.
 *   "gateway.conf:12: unknown option 'lisener' (did you mean 'listener'?)"
 *   "gateway.conf:7: max_clients: '-3' is out of range 1..1000000"
 *   "command line: max_clients: 'x' is not an integer"
 *
 * Numbers are parsed with strtoll/strtoull/strtod and fully checked (no
 * sign on sizes, no trailing junk, no overflow). Doubles are read in the C
 * locale: EDS programs never call setlocale().
 */
#ifndef EDS_CONF_H
#define EDS_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "eds_err.h"

#define EDS_CONF_MAX_LINE 4096          /* longest accepted line, without its newline */
#define EDS_CONF_MAX_FILE (1024 * 1024) /* largest accepted configuration file */

typedef enum eds_conf_type {
    EDS_CONF_STRING, /* char *: strdup'd, owned by the struct; free with eds_conf_free_strings */
    EDS_CONF_BOOL,   /* bool: `true` or `false` */
    EDS_CONF_INT,    /* int: decimal, within [min, max] */
    EDS_CONF_SIZE,   /* size_t: bytes, optional suffix k/K, m/M, g/G (x1024^n), within [min, max] */
    EDS_CONF_DOUBLE, /* double: e.g. `5` or `2.5` (seconds, ratios), finite, within [min, max] */
    EDS_CONF_CUSTOM, /* handled by opt->custom; for multi-word and repeatable options */
} eds_conf_type;

/*
 * Callback of an EDS_CONF_CUSTOM option. value is the rest of the line,
 * trimmed and never empty. Called once per occurrence, so it may append to
 * a list in target (memory it allocates is the caller's to free). On error
 * it returns a negative code with a reason in err (without file or line:
 * eds_conf adds "file:line: name: " in front).
 */
typedef int (*eds_conf_custom_fn)(void *target, const char *value, eds_error *err);

typedef struct eds_conf_opt {
    const char *name;          /* as written in the file, e.g. "max_clients"; NULL ends the table */
    eds_conf_type type;        /* decides the field type, see eds_conf_type */
    size_t offset;             /* offsetof(struct, field); unused for EDS_CONF_CUSTOM */
    long long min, max;        /* inclusive range for INT, SIZE and DOUBLE; min == max == 0: the
                                  whole range of the field type (SIZE: 0..SIZE_MAX) */
    eds_conf_custom_fn custom; /* EDS_CONF_CUSTOM only */
    const char *arg;           /* value placeholder for --help, e.g. "PORT [ADDRESS]"; NULL:
                                  derived from the type */
    const char *help;          /* one sentence for --help */
} eds_conf_opt;

/*
 * Reads the file at path and applies each option line to target (a struct
 * laid out as opts describes). Stops at the first error. Either way, target
 * may hold strings set so far: the caller releases them with
 * eds_conf_free_strings() (and its custom allocations itself). Error
 * messages name path as given.
 */
int eds_conf_load_file(const char *path, const eds_conf_opt *opts, void *target, eds_error *err);

/*
 * Applies one option. name may be the file name ("max_clients") or a
 * command-line flag ("--max-clients", "max-clients"): a leading "--" is
 * dropped and '-' is read as '_'. source names where the pair came from in
 * error messages (e.g. "command line"; NULL means that). value may be NULL
 * only for an EDS_CONF_BOOL option, where it means "true" (a bare flag).
 */
int eds_conf_set(const eds_conf_opt *opts, void *target, const char *name, const char *value,
                 const char *source, eds_error *err);

/*
 * Applies the command-line flag at argv[*index] and advances *index past
 * what it used: `--name VALUE` (two arguments), `--name=VALUE` (one), and
 * for EDS_CONF_BOOL options `--name` (true), `--name=false`, or `--name true`
 * / `--name false` (a BOOL takes the next argument only when it is one of
 * those two words). An EDS_CONF_CUSTOM option whose placeholder has several
 * words ("PORT [ADDRESS]", "PATTERN FILE") takes one argument per word, joined
 * by a space, so `--listener 5883 127.0.0.1` works unquoted as --help shows
 * it; a [bracketed] word takes the next argument only when that does not
 * start with '-' (the next flag), and one quoted argument "5883 127.0.0.1"
 * works too. Errors (source "command line"): an argument that
 * is not a `--` flag, an unknown flag, a missing or bad value. A program
 * handles its own flags (-c FILE, --help) first and hands the rest here,
 * after loading the file, so command-line values win.
 */
int eds_conf_set_arg(const eds_conf_opt *opts, void *target, int argc, char *const argv[],
                     int *index, eds_error *err);

/* The row for name (same spellings as eds_conf_set), or NULL. */
const eds_conf_opt *eds_conf_find(const eds_conf_opt *opts, const char *name);

/*
 * Prints one entry per option: the flag, its value type, range and default,
 * then the help sentence on the next line. defaults is a struct holding the
 * default values (the one the program starts from), or NULL to show none;
 * CUSTOM options show no default.
 */
void eds_conf_print_help(FILE *out, const eds_conf_opt *opts, const void *defaults);

/* Frees every EDS_CONF_STRING field of target and sets it to NULL.
 * Safe to call twice and on a struct whose strings are all NULL. */
void eds_conf_free_strings(const eds_conf_opt *opts, void *target);

/*
 * The line reader under eds_conf_load_file, shared with other line-based
 * files (the password file): reads the regular file at path (at most
 * max_size bytes), then calls fn for every line that is not blank and not a
 * '#' comment, with the line trimmed as described above, NUL-terminated
 * and writable, with its 1-based number. fn returns EDS_OK to go on or a
 * negative code with a reason in err; eds_conf_each_line then prefixes
 * "path:line: " to that reason and returns the code. Lines longer than
 * max_line bytes and NUL bytes are refused the same way (EDS_ERR_CONFIG).
 */
typedef int (*eds_conf_line_fn)(void *ctx, unsigned line_no, char *line, size_t len,
                                eds_error *err);
int eds_conf_each_line(const char *path, size_t max_size, size_t max_line, eds_conf_line_fn fn,
                       void *ctx, eds_error *err);

#endif
