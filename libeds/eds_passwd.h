/*
 * eds_passwd.h - device authentication against a Mosquitto password file.
 *
 * The gateway checks an agent's user name and password against the same
 * kind of file Mosquitto uses, written by the stock tool:
 *     mosquitto_passwd -c /etc/eds/passwd myrio-1      (asks for the password)
 *     mosquitto_passwd /etc/eds/passwd myrio-2          (adds or changes a user)
 * Lines are `user:hash`; both hashes mosquitto_passwd writes are accepted:
 *     $7$ITERATIONS$SALT$HASH   PBKDF2-HMAC-SHA512 (the default since 2.0)
 *     $6$SALT$HASH              SHA-512(password || salt) (`-H sha512`, 1.6 and older)
 * SALT and HASH are standard base64 of the raw bytes (padding optional);
 * the salt is 12 bytes (Mosquitto 2.0) or up to 64, the hash 64 bytes.
 * Blank lines and lines starting with '#' are skipped; CRLF is fine.
 * Refused with file:line and a reason: a line without ':', an empty user,
 * a user given twice, a plain-text password (hash it with
 * `mosquitto_passwd -U FILE`), an argon2id hash (Mosquitto 2.1: recreate the
 * entry with `-H sha512-pbkdf2`), more than EDS_PASSWD_MAX_ITERATIONS
 * iterations, bad base64 or wrong lengths. Messages name the user but never
 * contain a password or a hash.
 *
 * An eds_passwd is immutable once loaded, so eds_passwd_check() may be
 * called from any thread. To pick up edits, load again and swap pointers.
 */
#ifndef EDS_PASSWD_H
#define EDS_PASSWD_H

#include <stdbool.h>
#include <stddef.h>

#include "eds_err.h"

#define EDS_PASSWD_MAX_FILE (4 * 1024 * 1024) /* largest accepted password file */
#define EDS_PASSWD_MAX_LINE 1024              /* longest accepted line */
#define EDS_PASSWD_MAX_ITERATIONS 1000000     /* more would let one login stall the gateway */
#define EDS_PASSWD_DEFAULT_ITERATIONS 101     /* what mosquitto_passwd 2.0 writes */

typedef struct eds_passwd eds_passwd;

/*
 * Reads the password file at path. On EDS_OK *out is a new object the
 * caller releases with eds_passwd_destroy(). Errors: EDS_ERR_IO (cannot
 * read; errno text in err), EDS_ERR_CONFIG (bad content, "path:line: why"),
 * EDS_ERR_NOMEM. An empty file loads fine and accepts nobody.
 */
int eds_passwd_load(const char *path, eds_passwd **out, eds_error *err);

/* Releases p; NULL is fine. */
void eds_passwd_destroy(eds_passwd *p);

/* Number of users loaded. */
size_t eds_passwd_count(const eds_passwd *p);

/*
 * EDS_OK if user exists and password matches its hash, EDS_ERR_AUTH
 * otherwise (also for NULL arguments). The comparison is constant-time and
 * an unknown user costs the same hashing as a known one (against a dummy
 * entry shaped like the first entry of the file), so the answer time does
 * not tell which users exist. password is a C string: a caller that got it
 * with a length must refuse one containing a NUL byte first.
 */
int eds_passwd_check(const eds_passwd *p, const char *user, const char *password);

/* True if the file at path can be read by any user (mode o+r): the gateway
 * warns then, as the hashes are open to offline guessing. False if it
 * cannot be stat'ed. Note mosquitto_passwd creates files with mode 0644
 * under the usual umask 022: `chmod 600` (or 640 with a group) fixes it. */
bool eds_passwd_world_readable(const char *path);

/*
 * Reads a secret (a password) from the first line of the file at path, without
 * its line end, into *out (malloc'd; the caller frees it, ideally after
 * overwriting it). *exposed (if not NULL) is set when others than the owner may
 * read the file (mode & 077), for the caller to warn. what names the option in
 * messages, e.g. "password_file /etc/eds/agent.pw: the first line is empty".
 * Returns EDS_OK, EDS_ERR_IO (cannot open or read), EDS_ERR_CONFIG (empty first
 * line) or EDS_ERR_NOMEM.
 */
int eds_secret_read(const char *what, const char *path, char **out, bool *exposed, eds_error *err);

/*
 * Writes a new "$7$ITERATIONS$SALT$HASH" string (12-byte random salt, as
 * mosquitto_passwd does) for password into buf, to build `user:` lines in
 * tests and tools. iterations 0 means EDS_PASSWD_DEFAULT_ITERATIONS.
 * Returns EDS_OK, EDS_ERR_INVAL (iterations above the maximum), or
 * EDS_ERR_TOOLONG if size is below EDS_PASSWD_HASH_MAX.
 */
#define EDS_PASSWD_HASH_MAX 160
int eds_passwd_hash(const char *password, unsigned iterations, char *buf, size_t size,
                    eds_error *err);

#endif
