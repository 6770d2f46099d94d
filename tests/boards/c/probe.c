/*
 * probe.c — small programs that exercise the board runtime, selected by TT_PROBE:
 *   1 exit code:  prints a line, returns 7
 *   2 fault:      stores to an unmapped address (bus fault / store access fault)
 *   3 hang:       never returns (timeout handling)
 *   4 host I/O:   reads "input.bin" from the host, writes its bytes reversed to
 *                 "output.bin", prints the length, returns 0
 *   5 fmaf:       prints the bits of fmaf() for operands where a fused and an unfused
 *                 multiply-add differ
 *   6 trap:       executes an undefined / trapping instruction (__builtin_trap)
 */
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "tt_hostio.h"

#ifndef TT_PROBE
#define TT_PROBE 1
#endif

int main(void)
{
#if TT_PROBE == 1
    printf("about to exit with 7\n");
    return 7;
#elif TT_PROBE == 2
    volatile uint32_t *bad = (volatile uint32_t *)(uintptr_t)0xFFFFFFF0u;
    printf("about to fault\n");
    fflush(stdout);
    *bad = 1u;
    return (int)*bad;
#elif TT_PROBE == 3
    volatile uint32_t spin = 0u;
    for (;;) {
        spin = spin + 1u;
    }
#elif TT_PROBE == 4
    static uint8_t buf[4096];
    static uint8_t rev[4096];
    size_t n = 0;
    size_t i;
    int rc = tt_host_read_file("input.bin", buf, sizeof buf, &n);
    if (rc != 0) {
        printf("read failed %d\n", rc);
        return 2;
    }
    for (i = 0; i < n; ++i) {
        rev[i] = buf[n - 1u - i];
    }
    if (tt_host_write_file("output.bin", rev, n) != 0) {
        printf("write failed\n");
        return 3;
    }
    printf("reversed %u bytes\n", (unsigned)n);
    return 0;
#elif TT_PROBE == 5
    /* a * b = 1 + 2^-11 + 2^-24 exactly; rounding it to float first loses 2^-24. */
    volatile float a = 1.0f + 0x1p-12f;
    volatile float b = 1.0f + 0x1p-12f;
    volatile float c = -1.0f;
    float fused = fmaf(a, b, c);
    float unfused = a * b + c;
    uint32_t fu;
    uint32_t uu;
    memcpy(&fu, &fused, sizeof fu);
    memcpy(&uu, &unfused, sizeof uu);
    printf("fmaf %08" PRIx32 " unfused %08" PRIx32 "\n", fu, uu);
    return 0;
#elif TT_PROBE == 6
    printf("about to trap\n");
    fflush(stdout);
    __builtin_trap();
#endif
}
