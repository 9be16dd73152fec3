/*
 * glibc_compat.c - keeps libedsagent.so loadable with glibc 2.24 (NI Linux
 * Real-Time on the myRIO and ARM cRIOs), although it is linked against
 * Debian 12's glibc 2.36. Only in the EDS_SELF_CONTAINED (myRIO) build.
 *
 * A reference binds to the newest version of a glibc symbol at link time,
 * and several are newer than 2.24: fcntl64 (2.28), stat64/fstat64 (2.33,
 * when stat stopped being an inline wrapper), getentropy (2.25), and the
 * pthread_* and dl* functions that moved into libc.so.6 in 2.34 (pthread_sigmask
 * in 2.32). Most come
 * from the statically linked libcrypto.a, whose objects we do not compile,
 * so a header with .symver lines would not reach them. Instead the link
 * renames every reference to NAME into __wrap_NAME (ld --wrap=NAME, the list
 * is taken from this file by myrio-agent/CMakeLists.txt), and each
 * __wrap_NAME below calls the implementation glibc 2.24 has, by its old
 * version (on ARM EABI glibc's first version is GLIBC_2.4). The pthread and
 * dl functions were in libpthread.so.0 and libdl.so.2 then: the library
 * names both as NEEDED so the loader of an older glibc finds them there.
 *
 * scripts/check-abi.sh fails the build's test when anything newer than 2.24
 * is still referenced, so a symbol new to this list shows up there first.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* EDS_PIN: __wrap_NAME(params) calls NAME@GLIBC_2.4 with args. */
#define EDS_PIN(ret, name, params, args)                                                           \
    extern ret eds_old_##name params;                                                              \
    __asm__(".symver eds_old_" #name ", " #name "@GLIBC_2.4");                                     \
    ret __wrap_##name params;                                                                      \
    ret __wrap_##name params                                                                       \
    {                                                                                              \
        return eds_old_##name args;                                                                \
    }

EDS_PIN(int, pthread_once, (pthread_once_t * o, void (*f)(void)), (o, f))
EDS_PIN(int, pthread_key_create, (pthread_key_t * k, void (*d)(void *)), (k, d))
EDS_PIN(int, pthread_key_delete, (pthread_key_t k), (k))
EDS_PIN(void *, pthread_getspecific, (pthread_key_t k), (k))
EDS_PIN(int, pthread_setspecific, (pthread_key_t k, const void *v), (k, v))
EDS_PIN(int, pthread_rwlock_init, (pthread_rwlock_t * l, const pthread_rwlockattr_t *a), (l, a))
EDS_PIN(int, pthread_rwlock_destroy, (pthread_rwlock_t * l), (l))
EDS_PIN(int, pthread_rwlock_rdlock, (pthread_rwlock_t * l), (l))
EDS_PIN(int, pthread_rwlock_wrlock, (pthread_rwlock_t * l), (l))
EDS_PIN(int, pthread_rwlock_unlock, (pthread_rwlock_t * l), (l))
EDS_PIN(int, pthread_sigmask, (int how, const sigset_t *set, sigset_t *old), (how, set, old))
EDS_PIN(void *, dlopen, (const char *file, int mode), (file, mode))
EDS_PIN(void *, dlsym, (void *h, const char *name), (h, name))
EDS_PIN(int, dlclose, (void *h), (h))
EDS_PIN(char *, dlerror, (void), ())
EDS_PIN(int, dladdr, (const void *addr, Dl_info *info), (addr, info))

/* fcntl64 (2.28) is what fcntl() becomes with 64-bit file offsets; the old
 * fcntl took the same F_*64 commands straight to the fcntl64 system call.
 * Like glibc, pass the optional third argument on as a pointer-sized word. */
extern int eds_old_fcntl(int fd, int cmd, ...);
__asm__(".symver eds_old_fcntl, fcntl@GLIBC_2.4");
int __wrap_fcntl64(int fd, int cmd, ...);
int __wrap_fcntl64(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return eds_old_fcntl(fd, cmd, arg);
}

/* Before 2.33, stat64() and fstat64() were inline calls of __xstat64 and
 * __fxstat64 with the struct version (3, _STAT_VER_LINUX, on ARM). */
#define EDS_STAT_VER_LINUX 3
extern int eds_old_xstat64(int ver, const char *path, struct stat64 *st);
extern int eds_old_fxstat64(int ver, int fd, struct stat64 *st);
__asm__(".symver eds_old_xstat64, __xstat64@GLIBC_2.4");
__asm__(".symver eds_old_fxstat64, __fxstat64@GLIBC_2.4");
int __wrap_stat64(const char *path, struct stat64 *st);
int __wrap_stat64(const char *path, struct stat64 *st)
{
    return eds_old_xstat64(EDS_STAT_VER_LINUX, path, st);
}
int __wrap_fstat64(int fd, struct stat64 *st);
int __wrap_fstat64(int fd, struct stat64 *st)
{
    return eds_old_fxstat64(EDS_STAT_VER_LINUX, fd, st);
}

/* getentropy (2.25) is OpenSSL's first entropy source: the getrandom system
 * call it wraps (Linux 3.17; NI Linux RT's kernels are 4.x). Without it
 * (ENOSYS) OpenSSL falls back to /dev/urandom. */
int __wrap_getentropy(void *buf, size_t len);
int __wrap_getentropy(void *buf, size_t len)
{
    if (len > 256) {
        errno = EIO;
        return -1;
    }
    size_t done = 0;
    while (done < len) {
        long r = syscall(SYS_getrandom, (char *)buf + done, len - done, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        done += (size_t)r;
    }
    return 0;
}
