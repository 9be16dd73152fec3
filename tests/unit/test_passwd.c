/* Unit tests for eds_passwd: files written by the real mosquitto_passwd
 * ($7$ and $6$), hand-made entries checked against OpenSSL and a published
 * PBKDF2-HMAC-SHA512 vector, malformed lines with file:line, the
 * world-readable check, unknown-user timing and many users. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "eds_err.h"
#include "eds_passwd.h"

#define MOSQUITTO_PASSWD "/usr/bin/mosquitto_passwd"

extern char **environ;

static char dir[64];

static int setup(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/eds-test-passwd-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *tmp_path(const char *name)
{
    static char path[128];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return path;
}

static const char *write_file(const char *name, const char *content)
{
    const char *path = tmp_path(name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(content, 1, strlen(content), f), strlen(content));
    assert_int_equal(fclose(f), 0);
    return path;
}

/* Reads a whole small file into a static buffer. */
static const char *read_text(const char *path)
{
    static char buf[4096];
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* Runs mosquitto_passwd with args (NULL-terminated, argv[0] included). */
static void run_mosquitto_passwd(char *const argv[])
{
    if (access(MOSQUITTO_PASSWD, X_OK) != 0)
        fail_msg("%s is missing: install the mosquitto package (scripts/install-deps.sh)",
                 MOSQUITTO_PASSWD);
    pid_t pid;
    assert_int_equal(posix_spawn(&pid, MOSQUITTO_PASSWD, NULL, NULL, argv, environ), 0);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static eds_passwd *load_ok(const char *path)
{
    eds_passwd *p = NULL;
    eds_error err;
    eds_error_clear(&err);
    int rc = eds_passwd_load(path, &p, &err);
    if (rc != EDS_OK)
        fail_msg("load %s: %s", path, err.msg);
    assert_non_null(p);
    return p;
}

static void b64(const unsigned char *in, size_t len, char *out)
{
    EVP_EncodeBlock((unsigned char *)out, in, (int)len);
}

typedef struct check_case {
    const char *user, *password;
    int rc;
} check_case;

/* Runs eds_passwd_check for each case and names the first that differs. */
static void expect_checks(const eds_passwd *p, const check_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int rc = eds_passwd_check(p, cases[i].user, cases[i].password);
        if (rc != cases[i].rc)
            fail_msg("check(%s, %s): %d, want %d", cases[i].user ? cases[i].user : "NULL",
                     cases[i].password ? cases[i].password : "NULL", rc, cases[i].rc);
    }
}
#define EXPECT_CHECKS(p, ...)                                                                      \
    do {                                                                                           \
        static const check_case cases_[] = {__VA_ARGS__};                                          \
        expect_checks((p), cases_, sizeof(cases_) / sizeof(cases_[0]));                            \
    } while (0)

static void test_mosquitto_passwd_file(void **state)
{
    char path[128];
    snprintf(path, sizeof(path), "%s", tmp_path("mosq.passwd"));
    run_mosquitto_passwd(
        (char *const[]){"mosquitto_passwd", "-c", "-b", path, "alice", "s3cret", NULL});
    run_mosquitto_passwd(
        (char *const[]){"mosquitto_passwd", "-b", path, "bob", "with spaces:and:colons $7$", NULL});
    run_mosquitto_passwd((char *const[]){"mosquitto_passwd", "-H", "sha512", "-b", path, "carol",
                                         "old-style", NULL});
    /* Make sure both hash types really are in the file. */
    const char *text = read_text(path);
    assert_non_null(strstr(text, "alice:$7$101$"));
    assert_non_null(strstr(text, "bob:$7$101$"));
    assert_non_null(strstr(text, "carol:$6$"));

    eds_passwd *p = load_ok(path);
    assert_int_equal(eds_passwd_count(p), 3);
    EXPECT_CHECKS(p, {"alice", "s3cret", EDS_OK}, {"alice", "s3cret ", EDS_ERR_AUTH},
                  {"alice", "s3cre", EDS_ERR_AUTH}, {"alice", "S3cret", EDS_ERR_AUTH},
                  {"alice", "", EDS_ERR_AUTH}, {"alice", NULL, EDS_ERR_AUTH},
                  {"bob", "with spaces:and:colons $7$", EDS_OK}, {"bob", "s3cret", EDS_ERR_AUTH},
                  {"carol", "old-style", EDS_OK}, {"carol", "old-stylE", EDS_ERR_AUTH},
                  /* Unknown users fail whatever the password, also another user's. */
                  {"mallory", "s3cret", EDS_ERR_AUTH}, {"Alice", "s3cret", EDS_ERR_AUTH},
                  {"", "s3cret", EDS_ERR_AUTH}, {NULL, "s3cret", EDS_ERR_AUTH});
    assert_int_equal(eds_passwd_check(NULL, "alice", "s3cret"), EDS_ERR_AUTH);
    eds_passwd_destroy(p);

    /* After `mosquitto_passwd -D` the user is gone. */
    run_mosquitto_passwd((char *const[]){"mosquitto_passwd", "-D", path, "alice", NULL});
    p = load_ok(path);
    assert_int_equal(eds_passwd_count(p), 2);
    assert_int_equal(eds_passwd_check(p, "alice", "s3cret"), EDS_ERR_AUTH);
    assert_int_equal(eds_passwd_check(p, "carol", "old-style"), EDS_OK);
    eds_passwd_destroy(p);
    eds_passwd_destroy(NULL);
}

static void test_hand_made_entries(void **state)
{
    /* $6$: SHA-512(password || salt), computed here with OpenSSL directly. */
    const unsigned char salt6[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0xff};
    const char *pw6 = "dave-pw";
    unsigned char h6[64];
    unsigned int h6_len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    assert_non_null(ctx);
    assert_int_equal(EVP_DigestInit_ex(ctx, EVP_sha512(), NULL), 1);
    assert_int_equal(EVP_DigestUpdate(ctx, pw6, strlen(pw6)), 1);
    assert_int_equal(EVP_DigestUpdate(ctx, salt6, sizeof(salt6)), 1);
    assert_int_equal(EVP_DigestFinal_ex(ctx, h6, &h6_len), 1);
    EVP_MD_CTX_free(ctx);
    char salt6_b64[32], h6_b64[100];
    b64(salt6, sizeof(salt6), salt6_b64);
    b64(h6, sizeof(h6), h6_b64);

    /* $7$ with a 64-byte salt and 1000 iterations (Mosquitto 2.1 style). */
    unsigned char salt7[64];
    for (size_t i = 0; i < sizeof(salt7); i++)
        salt7[i] = (unsigned char)(i * 7 + 3);
    const char *pw7 = "erin-pw";
    unsigned char h7[64];
    assert_int_equal(PKCS5_PBKDF2_HMAC(pw7, (int)strlen(pw7), salt7, sizeof(salt7), 1000,
                                       EVP_sha512(), sizeof(h7), h7),
                     1);
    char salt7_b64[100], h7_b64[100];
    b64(salt7, sizeof(salt7), salt7_b64);
    b64(h7, sizeof(h7), h7_b64);
    /* Drop the base64 padding: other tools leave it out. */
    h7_b64[strcspn(h7_b64, "=")] = '\0';

    /* Published PBKDF2-HMAC-SHA512 vector: P="password", S="salt", c=1. */
    const char *vector = "hn9wzxreAs/zdSWZo6U9xK80x6ZpgVrl1RNVThyM8lLALUcKKFoFAbrZmb/pQ8CP"
                         "BQI119aLHaVeY/c7YKV/zg==";

    char text[1024];
    snprintf(text, sizeof(text),
             "# hand-made\r\n\r\n  dave:$6$%s$%s\r\nerin:$7$1000$%s$%s\n\t\nfrank:$7$1$c2FsdA==$%s",
             salt6_b64, h6_b64, salt7_b64, h7_b64, vector);
    eds_passwd *p = load_ok(write_file("hand.passwd", text));
    assert_int_equal(eds_passwd_count(p), 3);
    EXPECT_CHECKS(p, {"dave", "dave-pw", EDS_OK}, {"dave", "erin-pw", EDS_ERR_AUTH},
                  {"erin", "erin-pw", EDS_OK}, {"erin", "dave-pw", EDS_ERR_AUTH},
                  {"frank", "password", EDS_OK}, {"frank", "passwore", EDS_ERR_AUTH});
    eds_passwd_destroy(p);
}

static void test_hash_round_trip(void **state)
{
    char hash[EDS_PASSWD_HASH_MAX];
    eds_error err;
    assert_int_equal(eds_passwd_hash("gw-test", 0, hash, sizeof(hash), &err), EDS_OK);
    assert_int_equal(strncmp(hash, "$7$101$", 7), 0);
    /* 12-byte salt -> 16 base64 chars, 64-byte hash -> 88. */
    assert_int_equal(strlen(hash), strlen("$7$101$") + 16 + 1 + 88);
    char hash2[EDS_PASSWD_HASH_MAX];
    assert_int_equal(eds_passwd_hash("gw-test", 2000, hash2, sizeof(hash2), &err), EDS_OK);
    assert_int_equal(strncmp(hash2, "$7$2000$", 8), 0);

    char text[512];
    snprintf(text, sizeof(text), "gw:%s\nother:%s\n", hash, hash2);
    eds_passwd *p = load_ok(write_file("made.passwd", text));
    assert_int_equal(eds_passwd_check(p, "gw", "gw-test"), EDS_OK);
    assert_int_equal(eds_passwd_check(p, "other", "gw-test"), EDS_OK);
    assert_int_equal(eds_passwd_check(p, "gw", "gw-tesT"), EDS_ERR_AUTH);
    eds_passwd_destroy(p);

    char small[EDS_PASSWD_HASH_MAX - 1];
    assert_int_equal(eds_passwd_hash("x", 0, small, sizeof(small), &err), EDS_ERR_TOOLONG);
    assert_int_equal(eds_passwd_hash("x", EDS_PASSWD_MAX_ITERATIONS + 1, hash, sizeof(hash), &err),
                     EDS_ERR_INVAL);
}

static void test_malformed_lines(void **state)
{
    char good[EDS_PASSWD_HASH_MAX];
    eds_error err;
    assert_int_equal(eds_passwd_hash("pw", 0, good, sizeof(good), &err), EDS_OK);
    const char *salt = "AAECAwQFBgcICQoL"; /* 12 bytes */
    const char *h64 = good + strlen(good) - 88;
    char long_user[1100];
    memset(long_user, 'u', sizeof(long_user) - 1);
    long_user[sizeof(long_user) - 1] = '\0';

    struct {
        char line[1200];
        const char *msg;
    } cases[] = {
        {"", "2: expected user:hash"},
        {"", "2: empty user name"},
        {"", "2: user 'u' has no password hash"},
        {"", "2: user 'u': password is not hashed (hash the file with mosquitto_passwd -U FILE)"},
        {"", "2: user 'u': argon2 hashes are not supported; recreate the entry with "
             "mosquitto_passwd -H sha512-pbkdf2"},
        {"", "2: user 'u': unknown hash type (expected $6$ or $7$)"},
        {"", "2: user 'u': iteration count must be 1..1000000"},
        {"", "2: user 'u': iteration count must be 1..1000000"},
        {"", "2: user 'u': iteration count must be 1..1000000"},
        {"", "2: user 'u': malformed $7$ hash"},
        {"", "2: user 'u': malformed $7$ hash"},
        {"", "2: user 'u': malformed $6$ hash"},
        {"", "2: user 'u': salt is not base64 of 1..64 bytes"},
        {"", "2: user 'u': salt is not base64 of 1..64 bytes"},
        {"", "2: user 'u': hash is not base64 of 64 bytes"},
        {"", "2: user 'u': hash is not base64 of 64 bytes"},
        {"", "2: line is longer than 1024 bytes"},
        {"", "3: user 'first' is listed again (first on line 1)"},
    };
    size_t i = 0;
    snprintf(cases[i++].line, sizeof(cases[0].line), "u%s", good);
    snprintf(cases[i++].line, sizeof(cases[0].line), ":%s", good);
    snprintf(cases[i++].line, sizeof(cases[0].line), "u:");
    snprintf(cases[i++].line, sizeof(cases[0].line), "u:plain-text-password");
    snprintf(cases[i++].line, sizeof(cases[0].line),
             "u:$argon2id$v=19$m=47104,t=1,p=1$c2FsdA$aGFzaA");
    snprintf(cases[i++].line, sizeof(cases[0].line), "u:$5$%s$%s", salt, h64);
    snprintf(cases[i++].line, sizeof(cases[0].line), "u:$7$0$%s$%s", salt, h64);
    snprintf(cases[i++].line, sizeof(cases[0].line), "u:$7$1000001$%s$%s", salt, h64);
    snprintf(cases[i++].line, sizeof(cases[0].line), "u:$7$-5$%s$%s", salt, h64);
    snprintf(cases[i++].line, sizeof(cases[0].line), "u:$7$101$%s", salt);
    snprintf(cases[i++].line, sizeof(cases[0].line), "u:$7$101$%s$%s$x", salt, h64);
    snprintf(cases[i++].line, sizeof(cases[0].line), "u:$6$%s", h64);
    snprintf(cases[i++].line, sizeof(cases[0].line), "u:$7$101$AA!A$%s", h64);
    snprintf(cases[i++].line, sizeof(cases[0].line), "u:$7$101$$%s", h64);
    snprintf(cases[i++].line, sizeof(cases[0].line), "u:$7$101$%s$%s", salt, salt);
    snprintf(cases[i++].line, sizeof(cases[0].line), "u:$7$101$%s$%.87s", salt, h64);
    snprintf(cases[i++].line, sizeof(cases[0].line), "%s:%s", long_user, good);
    snprintf(cases[i++].line, sizeof(cases[0].line), "second:%s\nfirst:%s", good, good);
    assert_int_equal(i, sizeof(cases) / sizeof(cases[0]));

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[2600];
        snprintf(text, sizeof(text), "first:%s\n%.1200s\n", good, cases[i].line);
        const char *path = write_file("bad.passwd", text);
        char expected[600];
        snprintf(expected, sizeof(expected), "%s:%s", path, cases[i].msg);
        eds_passwd *p = (eds_passwd *)&p; /* must be reset to NULL on failure */
        eds_error_clear(&err);
        int rc = eds_passwd_load(path, &p, &err);
        if (rc != EDS_ERR_CONFIG || strcmp(err.msg, expected) != 0)
            fail_msg("case %zu (%s): rc %d, got \"%s\", want \"%s\"", i, cases[i].line, rc, err.msg,
                     expected);
        assert_null(p);
        /* Never a hash in an error message. */
        assert_null(strstr(err.msg, h64));
        assert_null(strstr(err.msg, salt));
    }
}

static void test_missing_file(void **state)
{
    eds_passwd *p = NULL;
    eds_error err;
    const char *path = tmp_path("nope.passwd");
    assert_int_equal(eds_passwd_load(path, &p, &err), EDS_ERR_IO);
    assert_null(p);
    char expected[200];
    snprintf(expected, sizeof(expected), "%s: No such file or directory", path);
    assert_string_equal(err.msg, expected);
}

static void test_empty_file_accepts_nobody(void **state)
{
    eds_passwd *p = load_ok(write_file("empty.passwd", "# nobody yet\n\n"));
    assert_int_equal(eds_passwd_count(p), 0);
    assert_int_equal(eds_passwd_check(p, "alice", "s3cret"), EDS_ERR_AUTH);
    assert_int_equal(eds_passwd_check(p, "", ""), EDS_ERR_AUTH);
    eds_passwd_destroy(p);
}

static void test_world_readable(void **state)
{
    const char *path = write_file("mode.passwd", "");
    char copy[128];
    snprintf(copy, sizeof(copy), "%s", path);
    assert_int_equal(chmod(copy, 0644), 0);
    assert_true(eds_passwd_world_readable(copy));
    assert_int_equal(chmod(copy, 0604), 0);
    assert_true(eds_passwd_world_readable(copy));
    assert_int_equal(chmod(copy, 0600), 0);
    assert_false(eds_passwd_world_readable(copy));
    assert_int_equal(chmod(copy, 0640), 0);
    assert_false(eds_passwd_world_readable(copy));
    assert_false(eds_passwd_world_readable(tmp_path("missing.passwd")));
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* An unknown user is hashed against a dummy shaped like the first entry, so
 * its answer costs the same (timing is measured in bench/, not here: a
 * timed unit test flakes on a loaded machine). What a unit test can check:
 * the dummy never matches, whatever the password. */
static void test_unknown_user_never_matches(void **state)
{
    char hash[EDS_PASSWD_HASH_MAX];
    eds_error err;
    assert_int_equal(eds_passwd_hash("pw", 1000, hash, sizeof(hash), &err), EDS_OK);
    char text[256];
    snprintf(text, sizeof(text), "known:%s\n", hash);
    eds_passwd *p = load_ok(write_file("timing.passwd", text));
    assert_int_equal(eds_passwd_check(p, "known", "pw"), EDS_OK);
    assert_int_equal(eds_passwd_check(p, "unknown", "pw"), EDS_ERR_AUTH);
    assert_int_equal(eds_passwd_check(p, "unknown", ""), EDS_ERR_AUTH);
    assert_int_equal(eds_passwd_check(p, "", "pw"), EDS_ERR_AUTH);
    assert_int_equal(eds_passwd_check(p, "knownx", "pw"), EDS_ERR_AUTH);
    assert_int_equal(eds_passwd_check(p, "know", "pw"), EDS_ERR_AUTH);
    eds_passwd_destroy(p);
}

static void test_many_users(void **state)
{
    enum { USERS = 1000 };
    const char *path = tmp_path("many.passwd");
    char copy[128];
    snprintf(copy, sizeof(copy), "%s", path);
    FILE *f = fopen(copy, "wb");
    assert_non_null(f);
    eds_error err;
    for (int i = 0; i < USERS; i++) {
        char hash[EDS_PASSWD_HASH_MAX], pw[32];
        snprintf(pw, sizeof(pw), "pw-%d", i);
        assert_int_equal(eds_passwd_hash(pw, 1, hash, sizeof(hash), &err), EDS_OK);
        fprintf(f, "myrio-%04d:%s\n", (i * 7919) % USERS, hash); /* unsorted order */
    }
    assert_int_equal(fclose(f), 0);

    double start = now_s();
    eds_passwd *p = load_ok(copy);
    double load_time = now_s() - start;
    assert_int_equal(eds_passwd_count(p), USERS);
    start = now_s();
    for (int i = 0; i < USERS; i++) {
        char user[32], pw[32];
        snprintf(user, sizeof(user), "myrio-%04d", (i * 7919) % USERS);
        snprintf(pw, sizeof(pw), "pw-%d", i);
        assert_int_equal(eds_passwd_check(p, user, pw), EDS_OK);
        snprintf(pw, sizeof(pw), "pw-%d", i + 1);
        assert_int_equal(eds_passwd_check(p, user, pw), EDS_ERR_AUTH);
    }
    double check_time = now_s() - start;
    print_message("%d users: load %.2f ms, %d checks (1 iteration) %.2f ms\n", USERS,
                  load_time * 1e3, 2 * USERS, check_time * 1e3);
    eds_passwd_destroy(p);
}

static void write_secret(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

static void test_secret_read(void **state)
{
    (void)state;
    char path[] = "/tmp/eds-test-secret-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    char *pw = NULL;
    bool exposed = true;
    eds_error err;
    write_secret(path, "s3cret\r\nsecond line\n", 0600);
    assert_int_equal(eds_secret_read("password_file", path, &pw, &exposed, &err), EDS_OK);
    assert_string_equal(pw, "s3cret");
    assert_false(exposed);
    free(pw);
    write_secret(path, "no newline", 0644);
    assert_int_equal(eds_secret_read("password_file", path, &pw, &exposed, &err), EDS_OK);
    assert_string_equal(pw, "no newline");
    assert_true(exposed);
    free(pw);
    write_secret(path, "\nsecond", 0600);
    assert_int_equal(eds_secret_read("password_file", path, &pw, NULL, &err), EDS_ERR_CONFIG);
    assert_null(pw);
    assert_non_null(strstr(err.msg, "password_file /tmp/eds-test-secret-"));
    assert_non_null(strstr(err.msg, "the first line is empty"));
    unlink(path);
    assert_int_equal(eds_secret_read("broker_password_file", path, &pw, NULL, &err), EDS_ERR_IO);
    assert_non_null(strstr(err.msg, "broker_password_file"));
    assert_non_null(strstr(err.msg, "No such file"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mosquitto_passwd_file),
        cmocka_unit_test(test_secret_read),
        cmocka_unit_test(test_hand_made_entries),
        cmocka_unit_test(test_hash_round_trip),
        cmocka_unit_test(test_malformed_lines),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_empty_file_accepts_nobody),
        cmocka_unit_test(test_world_readable),
        cmocka_unit_test(test_unknown_user_never_matches),
        cmocka_unit_test(test_many_users),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
