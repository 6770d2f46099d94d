/*
 * tt_cm_startup.c — one startup for every Cortex-M board (M0+, M4F, M7).
 *
 * Reset: enable the FPU (when the build uses one), point VTOR at our table, copy .data,
 * zero .bss, run main(), and leave through exit() so stdio is flushed; newlib's exit()
 * ends in _exit() (tt_cm_syscalls.c), i.e. semihosting SYS_EXIT_EXTENDED with main's return
 * code — QEMU's exit status.
 *
 * Faults (NMI, HardFault, MemManage, BusFault, UsageFault — the last three enabled in SHCSR
 * on ARMv7-M —, unexpected IRQs) print one line
 * "TT FAULT: <name> exc=<n> pc=<stacked pc> lr=<stacked lr> ..." through SYS_WRITE0 (no
 * stdio: the fault may have happened inside it) and exit with status 128 + exception number.
 * They never spin, so a crashed emulated run ends at once instead of at its timeout.
 *
 * Board parameters come from the board's defines:
 *   TT_CM_NUM_IRQ   number of external interrupt vectors (default 32)
 *   TT_CM_HAS_VTOR  0 for cores without a vector table offset register (default 1)
 * Linker symbols (boards/common/arm/tt_cortex_m.ld): __tt_stack_top, __tt_data_load,
 * __tt_data_start, __tt_data_end, __tt_bss_start, __tt_bss_end.
 */
#include <stdint.h>
#include <stdlib.h>

#include "tt_semihost.h"

#ifndef TT_CM_NUM_IRQ
#define TT_CM_NUM_IRQ 32
#endif
#ifndef TT_CM_HAS_VTOR
#define TT_CM_HAS_VTOR 1
#endif

#define TT_SCB_VTOR (*(volatile uint32_t *)0xE000ED08u)
#define TT_SCB_CPACR (*(volatile uint32_t *)0xE000ED88u)
#define TT_SCB_SHCSR (*(volatile uint32_t *)0xE000ED24u)
#define TT_SCB_CFSR (*(volatile uint32_t *)0xE000ED28u)
#define TT_SCB_HFSR (*(volatile uint32_t *)0xE000ED2Cu)
#define TT_SCB_MMFAR (*(volatile uint32_t *)0xE000ED34u)
#define TT_SCB_BFAR (*(volatile uint32_t *)0xE000ED38u)

extern uint32_t __tt_stack_top;
extern uint32_t __tt_data_load;
extern uint32_t __tt_data_start;
extern uint32_t __tt_data_end;
extern uint32_t __tt_bss_start;
extern uint32_t __tt_bss_end;

int main(void);
void tt_reset_handler(void);
void tt_fault_entry(void);
void tt_fault_report(const uint32_t *frame, uint32_t exc);

typedef void (*tt_vector_fn)(void);

/* Vector table: initial SP, reset, 14 system exceptions, then the board's IRQs. Every
 * entry except reset goes to the one fault reporter; the exception number (IPSR) tells
 * which one fired. */
__attribute__((section(".isr_vector"), used))
const tt_vector_fn tt_vectors[16 + TT_CM_NUM_IRQ] = {
    [0] = (tt_vector_fn)(uintptr_t)&__tt_stack_top,
    [1] = tt_reset_handler,
    [2 ... 15 + TT_CM_NUM_IRQ] = tt_fault_entry,
};

__attribute__((noreturn, used)) void tt_reset_handler(void)
{
    uint32_t *src;
    uint32_t *dst;

#if defined(__ARM_FP)
    /* CP10 and CP11 full access: must precede the first floating-point instruction. */
    TT_SCB_CPACR |= 0xFu << 20;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
#if TT_CM_HAS_VTOR
    TT_SCB_VTOR = (uint32_t)(uintptr_t)tt_vectors;
#endif
#if defined(__ARM_ARCH_7M__) || defined(__ARM_ARCH_7EM__)
    /* Enable the MemManage, BusFault and UsageFault exceptions so faults are reported by
     * their own name instead of all escalating to HardFault. */
    TT_SCB_SHCSR |= (1u << 16) | (1u << 17) | (1u << 18);
#endif
    src = &__tt_data_load;
    for (dst = &__tt_data_start; dst < &__tt_data_end; ++dst, ++src) {
        *dst = *src;
    }
    for (dst = &__tt_bss_start; dst < &__tt_bss_end; ++dst) {
        *dst = 0u;
    }
    exit(main());
}

/* Pick the stack the exception frame was pushed to (EXC_RETURN bit 2) and hand it, with
 * the exception number, to the C reporter. Thumb-1 only, so it also assembles for M0+. */
__attribute__((naked, used)) void tt_fault_entry(void)
{
    __asm__ volatile("movs r0, #4\n\t"
                     "mov r1, lr\n\t"
                     "tst r0, r1\n\t"
                     "beq 1f\n\t"
                     "mrs r0, psp\n\t"
                     "b 2f\n"
                     "1:\n\t"
                     "mrs r0, msp\n"
                     "2:\n\t"
                     "mrs r1, ipsr\n\t"
                     "ldr r2, =tt_fault_report\n\t"
                     "bx r2\n\t"
                     ".ltorg\n");
}

static char *tt_put_str(char *p, const char *s)
{
    while (*s != '\0') {
        *p++ = *s++;
    }
    return p;
}

static char *tt_put_hex(char *p, uint32_t v)
{
    static const char digits[] = "0123456789abcdef";
    int shift;
    *p++ = '0';
    *p++ = 'x';
    for (shift = 28; shift >= 0; shift -= 4) {
        *p++ = digits[(v >> shift) & 0xFu];
    }
    return p;
}

static char *tt_put_dec(char *p, uint32_t v)
{
    char tmp[10];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v != 0u);
    while (n > 0) {
        *p++ = tmp[--n];
    }
    return p;
}

static const char *tt_exception_name(uint32_t exc)
{
    switch (exc) {
    case 2:
        return "NMI";
    case 3:
        return "HardFault";
    case 4:
        return "MemManage";
    case 5:
        return "BusFault";
    case 6:
        return "UsageFault";
    case 11:
        return "SVCall";
    case 14:
        return "PendSV";
    case 15:
        return "SysTick";
    default:
        return exc >= 16u ? "unexpected IRQ" : "reserved exception";
    }
}

__attribute__((noreturn, used)) void tt_fault_report(const uint32_t *frame, uint32_t exc)
{
    char line[200];
    char *p = line;
    exc &= 0x1FFu;
    p = tt_put_str(p, "TT FAULT: ");
    p = tt_put_str(p, tt_exception_name(exc));
    p = tt_put_str(p, " exc=");
    p = tt_put_dec(p, exc);
    /* Exception frame: r0 r1 r2 r3 r12 lr pc xpsr. */
    p = tt_put_str(p, " pc=");
    p = tt_put_hex(p, frame[6]);
    p = tt_put_str(p, " lr=");
    p = tt_put_hex(p, frame[5]);
#if defined(__ARM_ARCH_7M__) || defined(__ARM_ARCH_7EM__)
    /* Fault status registers exist on ARMv7-M only. */
    p = tt_put_str(p, " cfsr=");
    p = tt_put_hex(p, TT_SCB_CFSR);
    p = tt_put_str(p, " hfsr=");
    p = tt_put_hex(p, TT_SCB_HFSR);
    p = tt_put_str(p, " mmfar=");
    p = tt_put_hex(p, TT_SCB_MMFAR);
    p = tt_put_str(p, " bfar=");
    p = tt_put_hex(p, TT_SCB_BFAR);
#endif
    *p++ = '\n';
    *p = '\0';
    tt_semihost_write0(line);
    tt_semihost_exit(128 + (int)exc);
}
