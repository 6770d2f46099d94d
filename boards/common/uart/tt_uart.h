/*
 * tt_uart.h — the minimal polled UART interface the frame stream needs.
 *
 * One driver file per UART kind implements it (tt_uart_cmsdk.c for the MPS2 CMSDK APB
 * UART, tt_uart_ns16550.c for the NS16550A of QEMU's RISC-V virt machine). The board's
 * [stream] table names the driver; tinytrain.sim.cross passes TT_UART_BASE and TT_UART_BAUD
 * from the same table. Polled, no interrupts, no buffering beyond the hardware FIFO:
 * the frame parser consumes one byte at a time.
 */
#ifndef TT_UART_H
#define TT_UART_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void tt_uart_init(void);
void tt_uart_putc(uint8_t c);
void tt_uart_write(const uint8_t *data, size_t len);
/* Blocks until a byte arrives. */
uint8_t tt_uart_getc(void);
/* Returns the next byte, or -1 at once if none is waiting. */
int tt_uart_try_getc(void);

#ifdef __cplusplus
}
#endif

#endif /* TT_UART_H */
