/* Loaded (LD_PRELOAD) into the processes of gVisor sandboxes: the gVisor that Debian 12 ships
 * rejects AT_NO_AUTOMOUNT (0x800) in statx and newfstatat with EINVAL, for every path, so GNU
 * `ls -l`, `stat`, `cp -a` and `find -printf` fail there. There are no automounts in a sandbox,
 * so the flag means nothing: drop it and make the system call. Freestanding (raw system calls,
 * only __errno_location from the C library, which glibc and musl both export), x86_64 only. */
#define AT_NO_AUTOMOUNT 0x800
#define SYS_NEWFSTATAT 262
#define SYS_STATX 332

extern int *__errno_location(void);

static long syscall5(long n, long a, long b, long c, long d, long e) {
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8)
                     : "rcx", "r11", "memory");
    return ret;
}

static int result(long ret) {
    if (ret < 0 && ret > -4096) {
        *__errno_location() = (int)-ret;
        return -1;
    }
    return (int)ret;
}

int statx(int dirfd, const char *path, int flags, unsigned int mask, void *buf) {
    return result(syscall5(SYS_STATX, dirfd, (long)path, flags & ~AT_NO_AUTOMOUNT, mask, (long)buf));
}

int fstatat(int dirfd, const char *path, void *buf, int flags) {
    return result(syscall5(SYS_NEWFSTATAT, dirfd, (long)path, (long)buf, flags & ~AT_NO_AUTOMOUNT, 0));
}

int fstatat64(int dirfd, const char *path, void *buf, int flags) __attribute__((alias("fstatat")));
