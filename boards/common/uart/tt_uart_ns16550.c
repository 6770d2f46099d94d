/*
 * tt_uart_ns16550.c — NS16550A UART with byte-wide registers (QEMU RISC-V virt: 0x10000000).
 *
 * Registers: RBR/THR +0 (DLL when LCR.DLAB), IER +1 (DLM when DLAB), FCR +2, LCR +3,
 * MCR +4, LSR +5 (bit 0 data ready, bit 5 THR empty). 8N1, FIFOs on, interrupts off.
 */
#include "tt_uart.h"

#ifndef TT_UART_BASE
#define TT_UART_BASE 0x10000000u
#endif
#ifndef TT_UART_BAUD
#define TT_UART_BAUD 115200u
#endif
#ifndef TT_UART_CLOCK_HZ
#define TT_UART_CLOCK_HZ 3686400u /* QEMU virt ignores the divisor; the usual 16550 crystal */
#endif

#define TT_UART_REG(off) (*(volatile uint8_t *)(uintptr_t)((TT_UART_BASE) + (off)))
#define TT_UART_RBR TT_UART_REG(0u)
#define TT_UART_THR TT_UART_REG(0u)
#define TT_UART_DLL TT_UART_REG(0u)
#define TT_UART_IER TT_UART_REG(1u)
#define TT_UART_DLM TT_UART_REG(1u)
#define TT_UART_FCR TT_UART_REG(2u)
#define TT_UART_LCR TT_UART_REG(3u)
#define TT_UART_MCR TT_UART_REG(4u)
#define TT_UART_LSR TT_UART_REG(5u)

#define TT_UART_LSR_DR 0x01u
#define TT_UART_LSR_THRE 0x20u

void tt_uart_init(void)
{
    uint32_t div = TT_UART_CLOCK_HZ / (16u * TT_UART_BAUD);
    TT_UART_IER = 0x00u;
    TT_UART_LCR = 0x80u; /* DLAB: expose the divisor latch */
    TT_UART_DLL = (uint8_t)(div & 0xFFu);
    TT_UART_DLM = (uint8_t)((div >> 8) & 0xFFu);
    TT_UART_LCR = 0x03u; /* 8 data bits, no parity, 1 stop bit */
    TT_UART_FCR = 0x07u; /* enable and reset both FIFOs */
    TT_UART_MCR = 0x03u; /* DTR, RTS */
}

void tt_uart_putc(uint8_t c)
{
    while ((TT_UART_LSR & TT_UART_LSR_THRE) == 0u) {
    }
    TT_UART_THR = c;
}

void tt_uart_write(const uint8_t *data, size_t len)
{
    size_t i;
    for (i = 0; i < len; ++i) {
        tt_uart_putc(data[i]);
    }
}

int tt_uart_try_getc(void)
{
    if ((TT_UART_LSR & TT_UART_LSR_DR) == 0u) {
        return -1;
    }
    return (int)TT_UART_RBR;
}

uint8_t tt_uart_getc(void)
{
    int c;
    do {
        c = tt_uart_try_getc();
    } while (c < 0);
    return (uint8_t)c;
}
