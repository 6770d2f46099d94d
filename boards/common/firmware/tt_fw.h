/*
 * tt_fw.h — pieces shared by the firmware mains in this folder (built by tinytrain.device).
 *
 *   tt_fw_train.c       train N steps on samples baked into flash, report losses, instructions
 *                       per step and per inference, and the trained parameters
 *   tt_fw_infer.c       inference on the baked samples, outputs and instructions per inference
 *   tt_fw_stream.c      train from samples streamed over the board UART (frame protocol)
 *   tt_fw_checkpoint.c  train with power-safe checkpoints; a "power cut" at a given
 *                       instruction count; resume after reboot
 *
 * Results reach the host as binary files over semihosting (tt_fw_file_*), written with the
 * target's native byte order (every supported core is little endian), so float results come
 * back as their exact bits. tinytrain/device.py parses them; the layouts are documented at
 * each writer.
 *
 * Header only (static inline). Each main defines tt_fw_now(): all instruction-counter reads
 * go through that one translation unit, so the 32 -> 64 bit extension of tt_instret.h sees
 * every reading.
 */
#ifndef TT_FW_H
#define TT_FW_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "tt_semihost.h"

#define TT_FW_MAGIC 0x57465454u /* "TTFW" little endian */
#define TT_FW_FORMAT 1u

enum { TT_FW_MODE_TRAIN = 1, TT_FW_MODE_INFER = 2, TT_FW_MODE_STREAM = 3, TT_FW_MODE_CHECKPOINT = 4 };

/* Exit codes (QEMU's exit status). */
enum {
    TT_FW_EXIT_OK = 0,
    TT_FW_EXIT_API = 3, /* a tt_* call failed with something other than TT_ERR_NAN */
    TT_FW_EXIT_IO = 4,  /* a semihosting file operation failed */
    TT_FW_EXIT_CUT = 42 /* the instruction budget ran out: the simulated power cut */
};

/* The instruction (or cycle) counter, defined by each main over tt_instret_now(). */
uint64_t tt_fw_now(void);

#if TT_HAVE_SEMIHOST

/* A host file opened through semihosting; -1 when it cannot be opened. Modes are the
 * TT_SH_MODE_* indices ("rb" = 1, "wb" = 5). */
static inline intptr_t tt_fw_file_open(const char *name, uintptr_t mode)
{
    uintptr_t args[3];
    args[0] = (uintptr_t)name;
    args[1] = mode;
    args[2] = (uintptr_t)strlen(name);
    return (intptr_t)tt_semihost_call(TT_SH_SYS_OPEN, (uintptr_t)args);
}

/* 0 when all `len` bytes were written. */
static inline int tt_fw_file_write(intptr_t handle, const void *data, size_t len)
{
    uintptr_t args[3];
    if (len == 0u) {
        return 0;
    }
    args[0] = (uintptr_t)handle;
    args[1] = (uintptr_t)data;
    args[2] = (uintptr_t)len;
    return tt_semihost_call(TT_SH_SYS_WRITE, (uintptr_t)args) == 0u ? 0 : -1; /* bytes NOT written */
}

static inline void tt_fw_file_close(intptr_t handle)
{
    uintptr_t args[1];
    args[0] = (uintptr_t)handle;
    (void)tt_semihost_call(TT_SH_SYS_CLOSE, (uintptr_t)args);
}

static inline int tt_fw_file_u32(intptr_t handle, uint32_t v)
{
    return tt_fw_file_write(handle, &v, sizeof v);
}

static inline void tt_fw_puts(const char *s)
{
    tt_semihost_write0(s);
}

__attribute__((noreturn)) static inline void tt_fw_exit(int code)
{
    tt_semihost_exit(code);
}

#endif /* TT_HAVE_SEMIHOST */

/* Decimal text of v at p (no terminator); returns the end. For console lines without stdio
 * (printf would pull in tens of KiB of libc and its RAM buffers). */
static inline char *tt_fw_put_dec(char *p, uint64_t v)
{
    char tmp[20];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + (int)(v % 10u));
        v /= 10u;
    } while (v != 0u);
    while (n > 0) {
        *p++ = tmp[--n];
    }
    return p;
}

static inline char *tt_fw_put_str(char *p, const char *s)
{
    while (*s != '\0') {
        *p++ = *s++;
    }
    return p;
}

static inline uint32_t tt_fw_float_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline void tt_fw_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)((v >> 8) & 0xFFu);
    p[2] = (uint8_t)((v >> 16) & 0xFFu);
    p[3] = (uint8_t)((v >> 24) & 0xFFu);
}

static inline uint32_t tt_fw_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

#endif /* TT_FW_H */
