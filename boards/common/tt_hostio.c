/*
 * tt_hostio.c — semihosting file transfer and exit (see tt_hostio.h).
 * The same code serves Cortex-M and RISC-V: only tt_semihost_call() differs.
 */
#include "tt_hostio.h"

#include <stdint.h>
#include <string.h>

#include "tt_semihost.h"

#if !TT_HAVE_SEMIHOST
#error "tt_hostio.c needs a semihosting target (Cortex-M or RISC-V)"
#endif

static intptr_t tt_sh_open(const char *name, uintptr_t mode)
{
    uintptr_t args[3];
    args[0] = (uintptr_t)name;
    args[1] = mode;
    args[2] = (uintptr_t)strlen(name);
    return (intptr_t)tt_semihost_call(TT_SH_SYS_OPEN, (uintptr_t)args);
}

static void tt_sh_close(intptr_t handle)
{
    uintptr_t args[1];
    args[0] = (uintptr_t)handle;
    (void)tt_semihost_call(TT_SH_SYS_CLOSE, (uintptr_t)args);
}

int tt_host_write_file(const char *name, const void *data, size_t len)
{
    uintptr_t args[3];
    uintptr_t not_written;
    intptr_t handle = tt_sh_open(name, TT_SH_MODE_WB);
    if (handle < 0) {
        return -1;
    }
    args[0] = (uintptr_t)handle;
    args[1] = (uintptr_t)data;
    args[2] = (uintptr_t)len;
    /* SYS_WRITE returns the number of bytes NOT written. */
    not_written = len > 0 ? tt_semihost_call(TT_SH_SYS_WRITE, (uintptr_t)args) : 0;
    tt_sh_close(handle);
    return not_written == 0 ? 0 : -1;
}

int tt_host_read_file(const char *name, void *buf, size_t cap, size_t *out_len)
{
    uintptr_t args[3];
    intptr_t flen;
    uintptr_t not_read;
    intptr_t handle = tt_sh_open(name, TT_SH_MODE_RB);
    *out_len = 0;
    if (handle < 0) {
        return -1;
    }
    args[0] = (uintptr_t)handle;
    flen = (intptr_t)tt_semihost_call(TT_SH_SYS_FLEN, (uintptr_t)args);
    if (flen < 0) {
        tt_sh_close(handle);
        return -1;
    }
    if ((size_t)flen > cap) {
        tt_sh_close(handle);
        return -2;
    }
    args[0] = (uintptr_t)handle;
    args[1] = (uintptr_t)buf;
    args[2] = (uintptr_t)flen;
    /* SYS_READ returns the number of bytes NOT read. */
    not_read = flen > 0 ? tt_semihost_call(TT_SH_SYS_READ, (uintptr_t)args) : 0;
    tt_sh_close(handle);
    if (not_read > (uintptr_t)flen) {
        return -1;
    }
    *out_len = (size_t)flen - (size_t)not_read;
    return 0;
}

void tt_host_puts(const char *s)
{
    tt_semihost_write0(s);
}

void tt_host_exit(int code)
{
    tt_semihost_exit(code);
}
