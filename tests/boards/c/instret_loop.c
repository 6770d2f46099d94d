/*
 * instret_loop.c — calibrates tt_instret_now(): runs a loop of exactly two instructions per
 * iteration (decrement, branch) for several iteration counts and prints, per count, the
 * counter difference and (Cortex-M MPS2) the raw 25 MHz tick difference.
 * (ARMv6-M gets the C loop: the inline assembly is Thumb-2 unified syntax, and the M0+
 * board has no counter anyway.)
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>

#include "tt_instret.h"

static void spin(uint32_t n)
{
#if defined(__arm__) && !defined(__ARM_ARCH_6M__)
    __asm__ volatile("1:\n\t"
                     "subs %0, %0, #1\n\t"
                     "bne 1b\n"
                     : "+l"(n)
                     :
                     : "cc");
#elif defined(__riscv)
    __asm__ volatile("1:\n\t"
                     "addi %0, %0, -1\n\t"
                     "bnez %0, 1b\n"
                     : "+r"(n));
#else
    volatile uint32_t k = n;
    while (k != 0u) {
        k = k - 1u;
    }
#endif
}

int main(void)
{
    static const uint32_t counts[] = {1u, 10u, 100u, 1000u, 10000u, 100000u, 1000000u};
    unsigned i;
    tt_instret_init();
    printf("unit %s\n", TT_INSTRET_UNIT);
    for (i = 0; i < sizeof counts / sizeof counts[0]; ++i) {
        uint64_t a;
        uint64_t b;
#if defined(TT_INSTRET_MPS2_FPGAIO)
        uint32_t ta = tt_instret_raw32();
        a = tt_instret_now();
        spin(counts[i]);
        b = tt_instret_now();
        {
            uint32_t tb = tt_instret_raw32();
            printf("n %" PRIu32 " delta %" PRIu32 " ticks %" PRIu32 "\n", counts[i],
                   (uint32_t)(b - a), tb - ta);
        }
#else
        a = tt_instret_now();
        spin(counts[i]);
        b = tt_instret_now();
        printf("n %" PRIu32 " delta %" PRIu32 " ticks 0\n", counts[i], (uint32_t)(b - a));
#endif
    }
    return 0;
}
