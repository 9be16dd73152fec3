/*
 * eds_passwd.c - Mosquitto password files: parse, look up, verify.
 *
 * Entries live in one array sorted by user name (bsearch for lookups); the
 * file is read and split into lines by eds_conf_each_line().
 */
#include "eds_passwd.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "eds_conf.h"

#define HASH_LEN 64 /* SHA-512 output: what both hash types store */
#define SALT_MAX 64 /* Mosquitto 2.0 writes 12 bytes, 2.1 writes 64 */
#define SALT_NEW 12 /* salt length eds_passwd_hash() writes, as mosquitto_passwd 2.0 */
#define MAX_ENTRIES 100000

enum hash_kind {
    KIND_SHA512 = 6, /* $6$: SHA-512(password || salt) */
    KIND_PBKDF2 = 7, /* $7$: PBKDF2-HMAC-SHA512 */
};

typedef struct entry {
    char *user;
    unsigned line_no;
    enum hash_kind kind;
    unsigned iterations; /* KIND_PBKDF2 only */
    size_t salt_len;
    unsigned char salt[SALT_MAX];
    unsigned char hash[HASH_LEN];
} entry;

struct eds_passwd {
    entry *entries; /* sorted by user once loaded */
    size_t n, cap;
    entry dummy; /* what an unknown user is hashed against; never matches */
};

/* ---- base64 (standard alphabet, padding optional) ---- */

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Decodes in[0..len) into out (at most cap bytes); false on bad input. */
static bool b64_decode(const char *in, size_t len, unsigned char *out, size_t cap, size_t *out_len)
{
    if (len % 4 == 0 && len > 0 && in[len - 1] == '=') {
        len--;
        if (in[len - 1] == '=')
            len--;
    }
    if (len % 4 == 1)
        return false;
    size_t n = 0;
    uint32_t acc = 0;
    unsigned bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value((unsigned char)in[i]);
        if (v < 0)
            return false;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n == cap)
                return false;
            out[n++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    *out_len = n;
    return true;
}

/* ---- hashing ---- */

/* Computes e's hash of password into out; false if OpenSSL failed. */
static bool compute(const entry *e, const char *password, unsigned char out[HASH_LEN])
{
    size_t len = strlen(password);
    if (len > INT_MAX)
        return false;
    if (e->kind == KIND_PBKDF2) {
        return PKCS5_PBKDF2_HMAC(password, (int)len, e->salt, (int)e->salt_len, (int)e->iterations,
                                 EVP_sha512(), HASH_LEN, out) == 1;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int out_len = 0;
    bool ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha512(), NULL) == 1 &&
              EVP_DigestUpdate(ctx, password, len) == 1 &&
              EVP_DigestUpdate(ctx, e->salt, e->salt_len) == 1 &&
              EVP_DigestFinal_ex(ctx, out, &out_len) == 1 && out_len == HASH_LEN;
    EVP_MD_CTX_free(ctx);
    return ok;
}

/* ---- parsing ---- */

/* Splits s at '$' into at most max fields (s is modified); returns the count,
 * or max + 1 if there are more. */
static size_t split_dollar(char *s, char **fields, size_t max)
{
    size_t n = 0;
    for (;;) {
        if (n == max)
            return max + 1;
        fields[n++] = s;
        char *d = strchr(s, '$');
        if (!d)
            return n;
        *d = '\0';
        s = d + 1;
    }
}

static int parse_iterations(const char *s, unsigned *out)
{
    if (s[0] < '0' || s[0] > '9' || strlen(s) > 10)
        return -1;
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (*end != '\0' || errno == ERANGE || v < 1 || v > EDS_PASSWD_MAX_ITERATIONS)
        return -1;
    *out = (unsigned)v;
    return 0;
}

/* Fills e from a "$6$..." or "$7$..." string (modified in place). */
static int parse_hash(entry *e, char *hash, eds_error *err)
{
    const char *u = e->user;
    if (hash[0] == '\0')
        return eds_error_set(err, EDS_ERR_CONFIG, "user '%s' has no password hash", u);
    if (strncmp(hash, "$argon2", 7) == 0)
        return eds_error_set(err, EDS_ERR_CONFIG,
                             "user '%s': argon2 hashes are not supported; recreate the entry "
                             "with mosquitto_passwd -H sha512-pbkdf2",
                             u);
    if (hash[0] != '$')
        return eds_error_set(err, EDS_ERR_CONFIG,
                             "user '%s': password is not hashed (hash the file with "
                             "mosquitto_passwd -U FILE)",
                             u);
    char *f[4];
    size_t nf;
    const char *salt_b64, *hash_b64;
    if (strncmp(hash, "$7$", 3) == 0) {
        nf = split_dollar(hash + 3, f, 3);
        if (nf != 3)
            goto malformed;
        if (parse_iterations(f[0], &e->iterations) != 0)
            return eds_error_set(err, EDS_ERR_CONFIG, "user '%s': iteration count must be 1..%d", u,
                                 EDS_PASSWD_MAX_ITERATIONS);
        e->kind = KIND_PBKDF2;
        salt_b64 = f[1];
        hash_b64 = f[2];
    } else if (strncmp(hash, "$6$", 3) == 0) {
        nf = split_dollar(hash + 3, f, 2);
        if (nf != 2)
            goto malformed;
        e->kind = KIND_SHA512;
        salt_b64 = f[0];
        hash_b64 = f[1];
    } else {
        return eds_error_set(err, EDS_ERR_CONFIG,
                             "user '%s': unknown hash type (expected $6$ or $7$)", u);
    }
    size_t len = 0;
    if (!b64_decode(salt_b64, strlen(salt_b64), e->salt, sizeof(e->salt), &len) || len == 0)
        return eds_error_set(err, EDS_ERR_CONFIG, "user '%s': salt is not base64 of 1..%d bytes", u,
                             SALT_MAX);
    e->salt_len = len;
    if (!b64_decode(hash_b64, strlen(hash_b64), e->hash, sizeof(e->hash), &len) || len != HASH_LEN)
        return eds_error_set(err, EDS_ERR_CONFIG, "user '%s': hash is not base64 of %d bytes", u,
                             HASH_LEN);
    return EDS_OK;
malformed:
    return eds_error_set(err, EDS_ERR_CONFIG, "user '%s': malformed %.3s hash", u, hash);
}

static void entry_wipe(entry *e)
{
    free(e->user);
    OPENSSL_cleanse(e, sizeof(*e));
}

static int load_line(void *ctx, unsigned line_no, char *line, size_t len, eds_error *err)
{
    eds_passwd *p = ctx;
    char *colon = strchr(line, ':');
    if (!colon)
        return eds_error_set(err, EDS_ERR_CONFIG, "expected user:hash");
    if (colon == line)
        return eds_error_set(err, EDS_ERR_CONFIG, "empty user name");
    *colon = '\0';
    if (p->n == p->cap) {
        if (p->n == MAX_ENTRIES)
            return eds_error_set(err, EDS_ERR_CONFIG, "more than %d users", MAX_ENTRIES);
        size_t cap = p->cap ? p->cap * 2 : 16;
        if (cap > MAX_ENTRIES)
            cap = MAX_ENTRIES;
        entry *grown = realloc(p->entries, cap * sizeof(*grown));
        if (!grown)
            return eds_error_set(err, EDS_ERR_NOMEM, "out of memory");
        p->entries = grown;
        p->cap = cap;
    }
    entry *e = &p->entries[p->n];
    memset(e, 0, sizeof(*e));
    e->user = strdup(line);
    if (!e->user)
        return eds_error_set(err, EDS_ERR_NOMEM, "out of memory");
    e->line_no = line_no;
    int rc = parse_hash(e, colon + 1, err);
    if (rc != EDS_OK) {
        entry_wipe(e);
        return rc;
    }
    p->n++;
    return EDS_OK;
}

static int by_user(const void *a, const void *b)
{
    return strcmp(((const entry *)a)->user, ((const entry *)b)->user);
}

/* The dummy copies the parameters of the first entry in the file (so an
 * unknown user costs what a known one does) with a random salt and hash. */
static int make_dummy(eds_passwd *p, eds_error *err)
{
    entry *d = &p->dummy;
    memset(d, 0, sizeof(*d));
    if (p->n > 0) {
        d->kind = p->entries[0].kind;
        d->iterations = p->entries[0].iterations;
        d->salt_len = p->entries[0].salt_len;
    } else {
        d->kind = KIND_PBKDF2;
        d->iterations = EDS_PASSWD_DEFAULT_ITERATIONS;
        d->salt_len = SALT_NEW;
    }
    if (RAND_bytes(d->salt, (int)d->salt_len) != 1 || RAND_bytes(d->hash, HASH_LEN) != 1)
        return eds_error_set(err, EDS_ERR_IO, "random number generator failed");
    return EDS_OK;
}

int eds_passwd_load(const char *path, eds_passwd **out, eds_error *err)
{
    *out = NULL;
    eds_passwd *p = calloc(1, sizeof(*p));
    if (!p)
        return eds_error_set(err, EDS_ERR_NOMEM, "out of memory");
    int rc = eds_conf_each_line(path, EDS_PASSWD_MAX_FILE, EDS_PASSWD_MAX_LINE, load_line, p, err);
    if (rc != EDS_OK)
        goto fail;
    rc = make_dummy(p, err); /* before sorting: entries[0] is the file's first */
    if (rc != EDS_OK)
        goto fail;
    if (p->n > 1)
        qsort(p->entries, p->n, sizeof(*p->entries), by_user);
    for (size_t i = 1; i < p->n; i++) {
        const entry *a = &p->entries[i - 1], *b = &p->entries[i];
        if (strcmp(a->user, b->user) == 0) {
            unsigned first = a->line_no < b->line_no ? a->line_no : b->line_no;
            unsigned again = a->line_no < b->line_no ? b->line_no : a->line_no;
            rc = eds_error_set(err, EDS_ERR_CONFIG,
                               "%s:%u: user '%s' is listed again (first "
                               "on line %u)",
                               path, again, a->user, first);
            goto fail;
        }
    }
    *out = p;
    return EDS_OK;
fail:
    eds_passwd_destroy(p);
    return rc;
}

void eds_passwd_destroy(eds_passwd *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++)
        entry_wipe(&p->entries[i]);
    free(p->entries);
    OPENSSL_cleanse(&p->dummy, sizeof(p->dummy));
    free(p);
}

size_t eds_passwd_count(const eds_passwd *p)
{
    return p ? p->n : 0;
}

int eds_passwd_check(const eds_passwd *p, const char *user, const char *password)
{
    if (!p)
        return EDS_ERR_AUTH;
    const entry *found = NULL;
    if (user && p->n > 0) {
        entry key = {.user = (char *)user};
        found = bsearch(&key, p->entries, p->n, sizeof(*p->entries), by_user);
    }
    const entry *e = found ? found : &p->dummy;
    unsigned char got[HASH_LEN];
    bool computed = compute(e, password ? password : "", got);
    bool same = CRYPTO_memcmp(got, e->hash, HASH_LEN) == 0;
    OPENSSL_cleanse(got, sizeof(got));
    return (found && password && computed && same) ? EDS_OK : EDS_ERR_AUTH;
}

int eds_secret_read(const char *what, const char *path, char **out, bool *exposed, eds_error *err)
{
    *out = NULL;
    if (exposed)
        *exposed = false;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return eds_error_set(err, EDS_ERR_IO, "%s %s: %s", what, path, strerror(errno));
    struct stat st;
    if (exposed && fstat(fd, &st) == 0 && (st.st_mode & 0077))
        *exposed = true;
    char buf[1024];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    int e = errno;
    close(fd);
    if (n < 0)
        return eds_error_set(err, EDS_ERR_IO, "%s %s: %s", what, path, strerror(e));
    buf[n] = '\0';
    size_t len = strcspn(buf, "\r\n");
    buf[len] = '\0';
    if (len == 0)
        return eds_error_set(err, EDS_ERR_CONFIG, "%s %s: the first line is empty", what, path);
    *out = strdup(buf);
    OPENSSL_cleanse(buf, sizeof(buf));
    return *out ? EDS_OK : eds_error_set(err, EDS_ERR_NOMEM, "out of memory");
}

bool eds_passwd_world_readable(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && (st.st_mode & S_IROTH);
}

int eds_passwd_hash(const char *password, unsigned iterations, char *buf, size_t size,
                    eds_error *err)
{
    if (iterations == 0)
        iterations = EDS_PASSWD_DEFAULT_ITERATIONS;
    if (iterations > EDS_PASSWD_MAX_ITERATIONS)
        return eds_error_set(err, EDS_ERR_INVAL, "iterations must be 1..%d",
                             EDS_PASSWD_MAX_ITERATIONS);
    if (size < EDS_PASSWD_HASH_MAX)
        return eds_error_set(err, EDS_ERR_TOOLONG, "buffer smaller than %d bytes",
                             EDS_PASSWD_HASH_MAX);
    entry e = {.kind = KIND_PBKDF2, .iterations = iterations, .salt_len = SALT_NEW};
    if (RAND_bytes(e.salt, SALT_NEW) != 1)
        return eds_error_set(err, EDS_ERR_IO, "random number generator failed");
    int rc = EDS_OK;
    if (!compute(&e, password, e.hash)) {
        rc = eds_error_set(err, EDS_ERR_IO, "PBKDF2 failed");
    } else {
        /* EVP_EncodeBlock writes padded base64 plus a NUL: 4 * ceil(n / 3) + 1. */
        unsigned char salt64[4 * ((SALT_NEW + 2) / 3) + 1];
        unsigned char hash64[4 * ((HASH_LEN + 2) / 3) + 1];
        EVP_EncodeBlock(salt64, e.salt, SALT_NEW);
        EVP_EncodeBlock(hash64, e.hash, HASH_LEN);
        snprintf(buf, size, "$7$%u$%s$%s", iterations, (const char *)salt64, (const char *)hash64);
    }
    OPENSSL_cleanse(&e, sizeof(e));
    return rc;
}
