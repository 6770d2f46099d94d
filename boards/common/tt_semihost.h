/*
 * tt_semihost.h — ARM-compatible semihosting calls for Cortex-M and RISC-V.
 *
 * One primitive, tt_semihost_call(op, arg), per architecture:
 *   Cortex-M: `bkpt 0xAB`, op in r0, arg in r1, result in r0.
 *   RISC-V:   the three-instruction sequence `slli x0,x0,0x1f; ebreak; srai x0,x0,7`
 *             (uncompressed, kept inside one 16-byte aligned block so it never straddles
 *             a page), op in a0, arg in a1, result in a0.
 *
 * QEMU answers these when started with `-semihosting-config enable=on,target=native`.
 * On a real board the calls need an attached debugger with semihosting enabled
 * (openocd `arm semihosting enable`, pyocd `--semihosting`); without one a Cortex-M
 * escalates the BKPT to HardFault and a RISC-V core takes a breakpoint exception.
 *
 * Header only: every definition is `static inline`.
 */
#ifndef TT_SEMIHOST_H
#define TT_SEMIHOST_H

#include <stddef.h>
#include <stdint.h>

/* Operation numbers from the ARM semihosting specification v2. */
enum {
    TT_SH_SYS_OPEN = 0x01,
    TT_SH_SYS_CLOSE = 0x02,
    TT_SH_SYS_WRITEC = 0x03,
    TT_SH_SYS_WRITE0 = 0x04,
    TT_SH_SYS_WRITE = 0x05,
    TT_SH_SYS_READ = 0x06,
    TT_SH_SYS_FLEN = 0x0C,
    TT_SH_SYS_EXIT = 0x18,
    TT_SH_SYS_EXIT_EXTENDED = 0x20
};

/* SYS_OPEN modes (index into the fopen mode table "r","rb","r+","r+b","w","wb",...). */
enum {
    TT_SH_MODE_R = 0,
    TT_SH_MODE_RB = 1,
    TT_SH_MODE_W = 4,
    TT_SH_MODE_WB = 5,
    TT_SH_MODE_A = 8
};

/* Reason code for a normal application exit (ADP_Stopped_ApplicationExit). */
#define TT_SH_ADP_APPLICATION_EXIT 0x20026u

#if defined(__arm__)

static inline uintptr_t tt_semihost_call(uintptr_t op, uintptr_t arg)
{
    register uintptr_t r0 __asm__("r0") = op;
    register uintptr_t r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

#elif defined(__riscv)

static inline uintptr_t tt_semihost_call(uintptr_t op, uintptr_t arg)
{
    register uintptr_t a0 __asm__("a0") = op;
    register uintptr_t a1 __asm__("a1") = arg;
    /* Align while compressed NOPs are still allowed (a 2-byte aligned position needs
     * one), then switch compression off for the three-instruction sequence. */
    __asm__ volatile(".option push\n"
                     ".balign 16\n"
                     ".option norvc\n"
                     "slli x0, x0, 0x1f\n"
                     "ebreak\n"
                     "srai x0, x0, 7\n"
                     ".option pop\n"
                     : "+r"(a0)
                     : "r"(a1)
                     : "memory");
    return a0;
}

#endif

#if defined(__arm__) || defined(__riscv)
#define TT_HAVE_SEMIHOST 1

/* Write a NUL-terminated string to the debug console (no stdio involved: safe in
 * fault handlers). */
static inline void tt_semihost_write0(const char *s)
{
    (void)tt_semihost_call(TT_SH_SYS_WRITE0, (uintptr_t)s);
}

/* Terminate the program; QEMU exits with `code` as its process exit status. */
__attribute__((noreturn)) static inline void tt_semihost_exit(int code)
{
    uintptr_t block[2];
    block[0] = TT_SH_ADP_APPLICATION_EXIT;
    block[1] = (uintptr_t)(unsigned)code;
    (void)tt_semihost_call(TT_SH_SYS_EXIT_EXTENDED, (uintptr_t)block);
    /* Only reached when no debugger answers the call. */
    for (;;) {
    }
}

#else
#define TT_HAVE_SEMIHOST 0
#endif

#endif /* TT_SEMIHOST_H */
