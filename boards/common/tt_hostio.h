/*
 * tt_hostio.h — moving bytes between the target and the host that runs it.
 *
 * Binary blobs (checkpoints, weight dumps, traces) go to the host as ordinary files through
 * semihosting SYS_OPEN/SYS_WRITE/SYS_CLOSE. QEMU creates the file relative to its working
 * directory; tinytrain.sim.qemu.run_qemu() runs QEMU in a scratch directory and returns every
 * file created there in QemuResult.files. This is byte-exact and needs no text encoding, so
 * it is robust against console buffering or interleaved printf output.
 *
 * On a real board the same calls work under a debugger with semihosting enabled (the file
 * appears in the debugger's working directory); without one they are not available
 * (see tt_semihost.h).
 */
#ifndef TT_HOSTIO_H
#define TT_HOSTIO_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Write `len` bytes to host file `name` (created or truncated). 0 on success, -1 on error. */
int tt_host_write_file(const char *name, const void *data, size_t len);

/* Read up to `cap` bytes of host file `name` into `buf`; the byte count goes to *out_len.
 * 0 on success, -1 if the file cannot be opened or read, -2 if it is larger than `cap`. */
int tt_host_read_file(const char *name, void *buf, size_t cap, size_t *out_len);

/* Write a NUL-terminated string to the host console without stdio (safe anywhere). */
void tt_host_puts(const char *s);

/* Stop the program with an exit status the host sees (QEMU's process exit code). */
void tt_host_exit(int code);

#ifdef __cplusplus
}
#endif

#endif /* TT_HOSTIO_H */
