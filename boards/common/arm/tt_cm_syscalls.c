/*
 * tt_cm_syscalls.c — the newlib(-nano) system layer for Cortex-M boards.
 *
 * stdout/stderr go to the semihosting console: on the first write we open ":tt" once
 * (mode "w" for stdout, "a" for stderr, as the semihosting spec defines) and every later
 * write is a single SYS_WRITE of the whole buffer — one trap per printf line with newlib's
 * line-buffered stdout, not one per character.
 *
 * _exit() is SYS_EXIT_EXTENDED with the status, so QEMU's exit code is main()'s return value.
 * _sbrk() hands out the RAM between the end of .bss and the bottom of the reserved stack
 * (newlib's stdio allocates its buffers there; the model itself never calls malloc).
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "tt_semihost.h"

extern char __tt_heap_start;
extern char __tt_heap_end;

int _write(int fd, const void *buf, size_t len);
int _read(int fd, void *buf, size_t len);
int _close(int fd);
int _lseek(int fd, int offset, int whence);
int _fstat(int fd, struct stat *st);
int _isatty(int fd);
void *_sbrk(ptrdiff_t incr);
void _exit(int status);
int _kill(int pid, int sig);
int _getpid(void);

static intptr_t tt_console_handle[3] = {-1, -1, -1};

static intptr_t tt_console(int fd)
{
    if (tt_console_handle[fd] < 0) {
        static const char tt_name[] = ":tt";
        uintptr_t args[3];
        args[0] = (uintptr_t)tt_name;
        args[1] = fd == 0 ? TT_SH_MODE_R : (fd == 1 ? TT_SH_MODE_W : TT_SH_MODE_A);
        args[2] = sizeof(tt_name) - 1u;
        tt_console_handle[fd] = (intptr_t)tt_semihost_call(TT_SH_SYS_OPEN, (uintptr_t)args);
    }
    return tt_console_handle[fd];
}

int _write(int fd, const void *buf, size_t len)
{
    uintptr_t args[3];
    uintptr_t not_written;
    intptr_t handle;
    if (fd < 1 || fd > 2) {
        errno = EBADF;
        return -1;
    }
    handle = tt_console(fd);
    if (handle < 0) {
        errno = EIO;
        return -1;
    }
    args[0] = (uintptr_t)handle;
    args[1] = (uintptr_t)buf;
    args[2] = (uintptr_t)len;
    not_written = tt_semihost_call(TT_SH_SYS_WRITE, (uintptr_t)args);
    return (int)(len - (size_t)not_written);
}

int _read(int fd, void *buf, size_t len)
{
    uintptr_t args[3];
    uintptr_t not_read;
    intptr_t handle;
    if (fd != 0) {
        errno = EBADF;
        return -1;
    }
    handle = tt_console(0);
    if (handle < 0) {
        errno = EIO;
        return -1;
    }
    args[0] = (uintptr_t)handle;
    args[1] = (uintptr_t)buf;
    args[2] = (uintptr_t)len;
    not_read = tt_semihost_call(TT_SH_SYS_READ, (uintptr_t)args);
    return (int)(len - (size_t)not_read);
}

int _close(int fd)
{
    (void)fd;
    return 0;
}

int _lseek(int fd, int offset, int whence)
{
    (void)fd;
    (void)offset;
    (void)whence;
    errno = ESPIPE;
    return -1;
}

int _fstat(int fd, struct stat *st)
{
    (void)fd;
    st->st_mode = S_IFCHR;
    return 0;
}

int _isatty(int fd)
{
    return fd >= 0 && fd <= 2;
}

void *_sbrk(ptrdiff_t incr)
{
    static char *brk = &__tt_heap_start;
    char *prev = brk;
    if (incr < 0 || (size_t)(&__tt_heap_end - brk) < (size_t)incr) {
        errno = ENOMEM;
        return (void *)-1;
    }
    brk += incr;
    return prev;
}

void _exit(int status)
{
    tt_semihost_exit(status);
}

int _kill(int pid, int sig)
{
    (void)pid;
    (void)sig;
    errno = EINVAL;
    return -1;
}

int _getpid(void)
{
    return 1;
}
