/*
 * tt_uart_cmsdk.c — ARM CMSDK APB UART (MPS2 boards; UART0 at 0x40004000).
 *
 * Registers (CMSDK APB UART TRM): DATA +0x00, STATE +0x04 (bit 0 TX buffer full, bit 1 RX
 * buffer full), CTRL +0x08 (bit 0 TX enable, bit 1 RX enable), INTSTATUS +0x0C,
 * BAUDDIV +0x10 (APB clock / baud, minimum 16). QEMU drops bytes while the transmitter
 * or receiver is disabled, so init must set both enables.
 */
#include "tt_uart.h"

#ifndef TT_UART_BASE
#define TT_UART_BASE 0x40004000u
#endif
#ifndef TT_UART_BAUD
#define TT_UART_BAUD 115200u
#endif
#ifndef TT_UART_CLOCK_HZ
#define TT_UART_CLOCK_HZ 25000000u /* MPS2 APB clock */
#endif

#define TT_UART_REG(off) (*(volatile uint32_t *)(uintptr_t)((TT_UART_BASE) + (off)))
#define TT_UART_DATA TT_UART_REG(0x00u)
#define TT_UART_STATE TT_UART_REG(0x04u)
#define TT_UART_CTRL TT_UART_REG(0x08u)
#define TT_UART_BAUDDIV TT_UART_REG(0x10u)

#define TT_UART_STATE_TXFULL 0x1u
#define TT_UART_STATE_RXFULL 0x2u

void tt_uart_init(void)
{
    TT_UART_BAUDDIV = TT_UART_CLOCK_HZ / TT_UART_BAUD;
    TT_UART_CTRL = 0x3u; /* TX and RX enabled, no interrupts */
}

void tt_uart_putc(uint8_t c)
{
    while ((TT_UART_STATE & TT_UART_STATE_TXFULL) != 0u) {
    }
    TT_UART_DATA = c;
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
    if ((TT_UART_STATE & TT_UART_STATE_RXFULL) == 0u) {
        return -1;
    }
    return (int)(TT_UART_DATA & 0xFFu);
}

uint8_t tt_uart_getc(void)
{
    int c;
    do {
        c = tt_uart_try_getc();
    } while (c < 0);
    return (uint8_t)c;
}
