/*
 * tt_instret.h — a per-board instruction (or cycle) counter: tt_instret_now().
 *
 * The board selects the method with one define (board.toml [instret] method):
 *
 *   TT_INSTRET_RDINSTRET    RISC-V `instret` CSR, 64 bits read as instreth/instret/instreth
 *                           until the high word is stable. Exact retired instructions.
 *                           Under QEMU run with `-icount shift=0` so that time and the
 *                           counter are deterministic.
 *   TT_INSTRET_MPS2_FPGAIO  QEMU MPS2 (an386/an500): FPGAIO COUNTER at 0x40028018, a 32-bit
 *                           up-counter at the 25 MHz reference clock. QEMU 7.2 models no DWT
 *                           cycle counter, but under `-icount shift=7` each instruction
 *                           advances virtual time by 2^7 ns = 128 ns = 3.2 ticks, so
 *                           instructions = ticks * 5 / 16. Verified in
 *                           tests/boards/test_instret.py (see boards/README.md for the error).
 *                           The 32-bit counter is extended to 64 bits in software, which is
 *                           exact as long as two reads are < 2^32 ticks (~1.3e9 instructions)
 *                           apart.
 *   TT_INSTRET_DWT_CYCCNT   real Cortex-M3/M4/M7: DWT->CYCCNT. Counts CYCLES, not
 *                           instructions (TT_INSTRET_UNIT says so); extended like above.
 *   TT_INSTRET_ESP32C3_MPCCR ESP32-C3: the core has no instret CSR; its machine performance
 *                           counter (mpcer 0x7E0 = event select, bit 1 = instructions;
 *                           mpcmr 0x7E1 = enable; mpccr 0x7E2 = 32-bit count) counts retired
 *                           instructions. From the ESP32-C3 TRM, checked by building only.
 *   (none of the above)     tt_instret_now() returns 0 and TT_INSTRET_AVAILABLE is 0
 *                           (host builds, RP2040's M0+ which has no cycle counter).
 *
 * Call tt_instret_init() once before the first tt_instret_now() (it enables the counter
 * where that is needed and is a no-op elsewhere). Differences of two readings are what to
 * report; the absolute value has no meaning.
 *
 * Header only, all `static inline`. The 64-bit extension state is per translation unit.
 */
#ifndef TT_INSTRET_H
#define TT_INSTRET_H

#include <stdint.h>

#if defined(TT_INSTRET_RDINSTRET) && defined(__riscv)

#define TT_INSTRET_AVAILABLE 1
#define TT_INSTRET_UNIT "instructions"

static inline void tt_instret_init(void)
{
}

static inline uint64_t tt_instret_now(void)
{
#if __riscv_xlen == 32
    uint32_t hi;
    uint32_t lo;
    uint32_t hi2;
    do {
        __asm__ volatile(".option push\n"
                         ".option arch, +zicsr\n"
                         "csrr %0, instreth\n"
                         "csrr %1, instret\n"
                         "csrr %2, instreth\n"
                         ".option pop\n"
                         : "=r"(hi), "=r"(lo), "=r"(hi2));
    } while (hi != hi2);
    return ((uint64_t)hi << 32) | lo;
#else
    uint64_t v;
    __asm__ volatile(".option push\n"
                     ".option arch, +zicsr\n"
                     "csrr %0, instret\n"
                     ".option pop\n"
                     : "=r"(v));
    return v;
#endif
}

#elif defined(TT_INSTRET_MPS2_FPGAIO) || defined(TT_INSTRET_DWT_CYCCNT) || \
    defined(TT_INSTRET_ESP32C3_MPCCR)

#define TT_INSTRET_AVAILABLE 1

static inline uint32_t tt_instret_raw32(void);

/* 32 -> 64 bit extension: counts wraps between consecutive reads. */
static inline uint64_t tt_instret_extend(uint32_t now)
{
    static uint32_t last;
    static uint32_t wraps;
    if (now < last) {
        ++wraps;
    }
    last = now;
    return ((uint64_t)wraps << 32) | now;
}

#if defined(TT_INSTRET_MPS2_FPGAIO)
#define TT_INSTRET_UNIT "instructions"
#define TT_MPS2_FPGAIO_COUNTER (*(volatile uint32_t *)0x40028018u)

static inline void tt_instret_init(void)
{
}

static inline uint32_t tt_instret_raw32(void)
{
    return TT_MPS2_FPGAIO_COUNTER;
}

/* 25 MHz ticks at 128 ns per instruction: 3.2 ticks per instruction. */
static inline uint64_t tt_instret_now(void)
{
    return tt_instret_extend(tt_instret_raw32()) * 5u / 16u;
}

#elif defined(TT_INSTRET_DWT_CYCCNT)
#define TT_INSTRET_UNIT "cycles"
#define TT_DEMCR (*(volatile uint32_t *)0xE000EDFCu)
#define TT_DWT_CTRL (*(volatile uint32_t *)0xE0001000u)
#define TT_DWT_CYCCNT (*(volatile uint32_t *)0xE0001004u)
#define TT_DWT_LAR (*(volatile uint32_t *)0xE0001FB0u)

static inline void tt_instret_init(void)
{
    TT_DEMCR |= 1u << 24;      /* TRCENA: power the DWT */
    TT_DWT_LAR = 0xC5ACCE55u;  /* unlock (Cortex-M7 needs it; ignored elsewhere) */
    TT_DWT_CYCCNT = 0u;
    TT_DWT_CTRL |= 1u;         /* CYCCNTENA */
}

static inline uint32_t tt_instret_raw32(void)
{
    return TT_DWT_CYCCNT;
}

static inline uint64_t tt_instret_now(void)
{
    return tt_instret_extend(tt_instret_raw32());
}

#else /* TT_INSTRET_ESP32C3_MPCCR */
#define TT_INSTRET_UNIT "instructions"

static inline void tt_instret_init(void)
{
    __asm__ volatile(".option push\n"
                     ".option arch, +zicsr\n"
                     "csrw 0x7E0, %0\n" /* mpcer: count retired instructions */
                     "csrw 0x7E1, %1\n" /* mpcmr: counting enabled */
                     "csrw 0x7E2, zero\n"
                     ".option pop\n"
                     :
                     : "r"(2u), "r"(1u));
}

static inline uint32_t tt_instret_raw32(void)
{
    uint32_t v;
    __asm__ volatile(".option push\n"
                     ".option arch, +zicsr\n"
                     "csrr %0, 0x7E2\n"
                     ".option pop\n"
                     : "=r"(v));
    return v;
}

static inline uint64_t tt_instret_now(void)
{
    return tt_instret_extend(tt_instret_raw32());
}
#endif

#else

#define TT_INSTRET_AVAILABLE 0
#define TT_INSTRET_UNIT "none"

static inline void tt_instret_init(void)
{
}

static inline uint64_t tt_instret_now(void)
{
    return 0u;
}

#endif

#endif /* TT_INSTRET_H */
