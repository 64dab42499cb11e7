/*
 * rofault.c: an LD_PRELOAD shim that makes one directory read-only, and writable again, under
 * a running process. A real filesystem cannot do that while SQLite holds its files open for
 * writing (a remount read-only fails with EBUSY; ext4's errors=remount-ro aborts the journal
 * for good), so the fault is injected at the C library instead: while the file named by
 * RUNSD_FAULT_RO exists, the calls below fail with EROFS for files under RUNSD_FAULT_DIR, as
 * the kernel would on a read-only mount. Removing the file heals the store at once.
 *
 *   write-type calls on a descriptor (its path read from /proc/self/fd):
 *     write writev pwrite pwrite64 pwritev pwritev64 pwritev2 fsync fdatasync
 *     ftruncate ftruncate64 fallocate fallocate64 posix_fallocate posix_fallocate64
 *     sync_file_range
 *   calls on a path (relative ones resolved against the cwd or the directory descriptor):
 *     open open64 openat openat64 creat creat64 (only with a write access mode, O_CREAT,
 *     O_TRUNC or O_TMPFILE), truncate truncate64, unlink unlinkat, rename renameat renameat2
 *
 * Reads, mmap and locks pass through (SQLite's WAL index in -shm is memory, not a write to
 * the store). The real functions come from dlsym(RTLD_NEXT), so under AddressSanitizer the
 * call still goes through ASan's own interceptor after ours. When RUNSD_FAULT_LOG names a
 * file, the first failure injected for each call is appended to it ("pwrite64 /path"), so a
 * test can prove the shim was loaded and see which calls the process really made.
 *
 * Test-only: built as a shared library, never linked into the daemon.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

/* ---- configuration ------------------------------------------------------------------------ */

static const char *flag_path(void)
{
    static const char *flag;
    static int done;
    if (!__atomic_load_n(&done, __ATOMIC_ACQUIRE)) {
        flag = getenv("RUNSD_FAULT_RO");
        __atomic_store_n(&done, 1, __ATOMIC_RELEASE);
    }
    return flag;
}

/* The directory, resolved once (the store's path may be given through a symlink). */
static const char *fault_dir(size_t *len)
{
    static char dir[PATH_MAX];
    static size_t dlen;
    static int done;
    if (!__atomic_load_n(&done, __ATOMIC_ACQUIRE)) {
        const char *d = getenv("RUNSD_FAULT_DIR");
        if (d && realpath(d, dir))
            dlen = strlen(dir);
        __atomic_store_n(&done, 1, __ATOMIC_RELEASE);
    }
    *len = dlen;
    return dlen ? dir : NULL;
}

/* The fault is on: the flag exists. One access(2) per call while configured. */
static int fault_on(void)
{
    const char *flag = flag_path();
    return flag && access(flag, F_OK) == 0;
}

static int under_dir(const char *path)
{
    size_t dlen;
    const char *dir = fault_dir(&dlen);
    return dir && strncmp(path, dir, dlen) == 0 && (path[dlen] == '/' || path[dlen] == '\0');
}

/* ---- the log of what was refused ------------------------------------------------------------ */

enum {
    C_WRITE,
    C_WRITEV,
    C_PWRITE,
    C_PWRITE64,
    C_PWRITEV,
    C_PWRITEV64,
    C_PWRITEV2,
    C_FSYNC,
    C_FDATASYNC,
    C_FTRUNCATE,
    C_FTRUNCATE64,
    C_FALLOCATE,
    C_FALLOCATE64,
    C_POSIX_FALLOCATE,
    C_POSIX_FALLOCATE64,
    C_SYNC_FILE_RANGE,
    C_OPEN,
    C_OPEN64,
    C_OPENAT,
    C_OPENAT64,
    C_CREAT,
    C_CREAT64,
    C_TRUNCATE,
    C_TRUNCATE64,
    C_UNLINK,
    C_UNLINKAT,
    C_RENAME,
    C_RENAMEAT,
    C_RENAMEAT2,
};
static const char *const call_names[] = {
    "write",           "writev",    "pwrite",      "pwrite64",        "pwritev",
    "pwritev64",       "pwritev2",  "fsync",       "fdatasync",       "ftruncate",
    "ftruncate64",     "fallocate", "fallocate64", "posix_fallocate", "posix_fallocate64",
    "sync_file_range", "open",      "open64",      "openat",          "openat64",
    "creat",           "creat64",   "truncate",    "truncate64",      "unlink",
    "unlinkat",        "rename",    "renameat",    "renameat2",
};

static ssize_t (*real_write)(int, const void *, size_t);
static int (*real_open)(const char *, int, ...);

static void *next(const char *name)
{
    return dlsym(RTLD_NEXT, name);
}

static void note(int call, const char *path)
{
    static unsigned long long seen;
    unsigned long long bit = 1ULL << call;
    if (__atomic_fetch_or(&seen, bit, __ATOMIC_RELAXED) & bit)
        return;
    const char *log = getenv("RUNSD_FAULT_LOG");
    if (!log)
        return;
    if (!real_open)
        real_open = next("open");
    if (!real_write)
        real_write = next("write");
    int fd = real_open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    char line[PATH_MAX + 64];
    int n = snprintf(line, sizeof line, "%s %s\n", call_names[call], path);
    if (n > 0)
        real_write(fd, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
    close(fd);
}

/* ---- the tests: a descriptor, a path ----------------------------------------------------------
 */

/* Refuse a write-type call on fd: sets errno and returns 1. */
static int refuse_fd(int call, int fd)
{
    if (fd < 0 || !fault_on())
        return 0;
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0)
        return 0;
    path[n] = '\0';
    if (!under_dir(path))
        return 0;
    note(call, path);
    errno = EROFS;
    return 1;
}

/* The absolute form of path relative to dirfd (AT_FDCWD: the cwd). 0, or -1 when unknown. */
static int absolute(int dirfd, const char *path, char *out, size_t len)
{
    char base[PATH_MAX];
    if (path[0] == '/')
        return snprintf(out, len, "%s", path) < (int)len ? 0 : -1;
    if (dirfd == AT_FDCWD) {
        if (!getcwd(base, sizeof base))
            return -1;
    } else {
        char link[64];
        snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
        ssize_t n = readlink(link, base, sizeof base - 1);
        if (n <= 0)
            return -1;
        base[n] = '\0';
    }
    return snprintf(out, len, "%s/%s", base, path) < (int)len ? 0 : -1;
}

/* Refuse a call that changes the directory entry at (dirfd, path): sets errno, returns 1.
 * The path is compared as given (made absolute, not resolved): a store path is not a link. */
static int refuse_path(int call, int dirfd, const char *path)
{
    char abs[PATH_MAX];
    if (!path || !fault_on() || absolute(dirfd, path, abs, sizeof abs) != 0 || !under_dir(abs))
        return 0;
    note(call, abs);
    errno = EROFS;
    return 1;
}

static int writes(int flags)
{
    return (flags & O_ACCMODE) != O_RDONLY || (flags & (O_CREAT | O_TRUNC)) ||
           (flags & O_TMPFILE) == O_TMPFILE;
}

/* ---- the interposed calls ----------------------------------------------------------------------
 */

#define REAL(type, name, params)                                                                   \
    static type(*real_##name) params;                                                              \
    if (!real_##name)                                                                              \
        real_##name = next(#name);

ssize_t write(int fd, const void *buf, size_t n)
{
    if (!real_write)
        real_write = next("write");
    return refuse_fd(C_WRITE, fd) ? -1 : real_write(fd, buf, n);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    REAL(ssize_t, writev, (int, const struct iovec *, int))
    return refuse_fd(C_WRITEV, fd) ? -1 : real_writev(fd, iov, cnt);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    REAL(ssize_t, pwrite, (int, const void *, size_t, off_t))
    return refuse_fd(C_PWRITE, fd) ? -1 : real_pwrite(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off)
{
    REAL(ssize_t, pwrite64, (int, const void *, size_t, off64_t))
    return refuse_fd(C_PWRITE64, fd) ? -1 : real_pwrite64(fd, buf, n, off);
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    REAL(ssize_t, pwritev, (int, const struct iovec *, int, off_t))
    return refuse_fd(C_PWRITEV, fd) ? -1 : real_pwritev(fd, iov, cnt, off);
}

ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off64_t off)
{
    REAL(ssize_t, pwritev64, (int, const struct iovec *, int, off64_t))
    return refuse_fd(C_PWRITEV64, fd) ? -1 : real_pwritev64(fd, iov, cnt, off);
}

ssize_t pwritev2(int fd, const struct iovec *iov, int cnt, off_t off, int flags)
{
    REAL(ssize_t, pwritev2, (int, const struct iovec *, int, off_t, int))
    return refuse_fd(C_PWRITEV2, fd) ? -1 : real_pwritev2(fd, iov, cnt, off, flags);
}

int fsync(int fd)
{
    REAL(int, fsync, (int))
    return refuse_fd(C_FSYNC, fd) ? -1 : real_fsync(fd);
}

int fdatasync(int fd)
{
    REAL(int, fdatasync, (int))
    return refuse_fd(C_FDATASYNC, fd) ? -1 : real_fdatasync(fd);
}

int ftruncate(int fd, off_t len)
{
    REAL(int, ftruncate, (int, off_t))
    return refuse_fd(C_FTRUNCATE, fd) ? -1 : real_ftruncate(fd, len);
}

int ftruncate64(int fd, off64_t len)
{
    REAL(int, ftruncate64, (int, off64_t))
    return refuse_fd(C_FTRUNCATE64, fd) ? -1 : real_ftruncate64(fd, len);
}

int fallocate(int fd, int mode, off_t off, off_t len)
{
    REAL(int, fallocate, (int, int, off_t, off_t))
    return refuse_fd(C_FALLOCATE, fd) ? -1 : real_fallocate(fd, mode, off, len);
}

int fallocate64(int fd, int mode, off64_t off, off64_t len)
{
    REAL(int, fallocate64, (int, int, off64_t, off64_t))
    return refuse_fd(C_FALLOCATE64, fd) ? -1 : real_fallocate64(fd, mode, off, len);
}

/* posix_fallocate returns the error number instead of setting errno. */
int posix_fallocate(int fd, off_t off, off_t len)
{
    REAL(int, posix_fallocate, (int, off_t, off_t))
    return refuse_fd(C_POSIX_FALLOCATE, fd) ? EROFS : real_posix_fallocate(fd, off, len);
}

int posix_fallocate64(int fd, off64_t off, off64_t len)
{
    REAL(int, posix_fallocate64, (int, off64_t, off64_t))
    return refuse_fd(C_POSIX_FALLOCATE64, fd) ? EROFS : real_posix_fallocate64(fd, off, len);
}

int sync_file_range(int fd, off64_t off, off64_t n, unsigned int flags)
{
    REAL(int, sync_file_range, (int, off64_t, off64_t, unsigned int))
    return refuse_fd(C_SYNC_FILE_RANGE, fd) ? -1 : real_sync_file_range(fd, off, n, flags);
}

/* The open family takes a mode only with O_CREAT or O_TMPFILE. */
#define OPEN_MODE(flags, mode)                                                                     \
    mode_t mode = 0;                                                                               \
    if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE) {                                   \
        va_list ap;                                                                                \
        va_start(ap, flags);                                                                       \
        mode = (mode_t)va_arg(ap, int);                                                            \
        va_end(ap);                                                                                \
    }

int open(const char *path, int flags, ...)
{
    OPEN_MODE(flags, mode)
    if (!real_open)
        real_open = next("open");
    if (writes(flags) && refuse_path(C_OPEN, AT_FDCWD, path))
        return -1;
    return real_open(path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
    OPEN_MODE(flags, mode)
    REAL(int, open64, (const char *, int, ...))
    if (writes(flags) && refuse_path(C_OPEN64, AT_FDCWD, path))
        return -1;
    return real_open64(path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...)
{
    OPEN_MODE(flags, mode)
    REAL(int, openat, (int, const char *, int, ...))
    if (writes(flags) && refuse_path(C_OPENAT, dirfd, path))
        return -1;
    return real_openat(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...)
{
    OPEN_MODE(flags, mode)
    REAL(int, openat64, (int, const char *, int, ...))
    if (writes(flags) && refuse_path(C_OPENAT64, dirfd, path))
        return -1;
    return real_openat64(dirfd, path, flags, mode);
}

int creat(const char *path, mode_t mode)
{
    REAL(int, creat, (const char *, mode_t))
    return refuse_path(C_CREAT, AT_FDCWD, path) ? -1 : real_creat(path, mode);
}

int creat64(const char *path, mode_t mode)
{
    REAL(int, creat64, (const char *, mode_t))
    return refuse_path(C_CREAT64, AT_FDCWD, path) ? -1 : real_creat64(path, mode);
}

int truncate(const char *path, off_t len)
{
    REAL(int, truncate, (const char *, off_t))
    return refuse_path(C_TRUNCATE, AT_FDCWD, path) ? -1 : real_truncate(path, len);
}

int truncate64(const char *path, off64_t len)
{
    REAL(int, truncate64, (const char *, off64_t))
    return refuse_path(C_TRUNCATE64, AT_FDCWD, path) ? -1 : real_truncate64(path, len);
}

int unlink(const char *path)
{
    REAL(int, unlink, (const char *))
    return refuse_path(C_UNLINK, AT_FDCWD, path) ? -1 : real_unlink(path);
}

int unlinkat(int dirfd, const char *path, int flags)
{
    REAL(int, unlinkat, (int, const char *, int))
    return refuse_path(C_UNLINKAT, dirfd, path) ? -1 : real_unlinkat(dirfd, path, flags);
}

int rename(const char *from, const char *to)
{
    REAL(int, rename, (const char *, const char *))
    if (refuse_path(C_RENAME, AT_FDCWD, from) || refuse_path(C_RENAME, AT_FDCWD, to))
        return -1;
    return real_rename(from, to);
}

int renameat(int fromfd, const char *from, int tofd, const char *to)
{
    REAL(int, renameat, (int, const char *, int, const char *))
    if (refuse_path(C_RENAMEAT, fromfd, from) || refuse_path(C_RENAMEAT, tofd, to))
        return -1;
    return real_renameat(fromfd, from, tofd, to);
}

int renameat2(int fromfd, const char *from, int tofd, const char *to, unsigned int flags)
{
    REAL(int, renameat2, (int, const char *, int, const char *, unsigned int))
    if (refuse_path(C_RENAMEAT2, fromfd, from) || refuse_path(C_RENAMEAT2, tofd, to))
        return -1;
    return real_renameat2(fromfd, from, tofd, to, flags);
}
