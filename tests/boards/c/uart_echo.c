/*
 * uart_echo.c — end-to-end firmware for the frame protocol over the emulated UART.
 *
 * On start it sends a REPORT frame "hello". Then, for every frame the parser delivers:
 *   - REPORT:  reply REPORT with the parser statistics (u32 LE: frames_ok, rejected[1..5],
 *              bytes_skipped) and exit(0);
 *   - other:   reply ACK (same seq) with payload: u8 type, u32 CRC-32 of the payload,
 *              u32 payload length; for SAMPLE_LABEL also u32 label length, u32 sample length.
 * Every rejected frame gets a NACK (seq of the frame if its header was intact, else 0xFF)
 * whose payload is the reject reason.
 */
#include <stdint.h>

#include "tt_frame.h"
#include "tt_hostio.h"
#include "tt_uart.h"

static uint8_t rx_buf[256];
static uint8_t tx_buf[64 + TT_FRAME_OVERHEAD];

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static void send(uint8_t type, uint8_t seq, const uint8_t *payload, uint32_t len)
{
    size_t n = tt_frame_encode(tx_buf, sizeof tx_buf, type, seq, payload, len);
    tt_uart_write(tx_buf, n);
}

int main(void)
{
    static const uint8_t hello[] = {'h', 'e', 'l', 'l', 'o'};
    tt_frame_parser parser;
    uint8_t reply[32];
    tt_uart_init();
    tt_frame_parser_init(&parser, rx_buf, sizeof rx_buf);
    send(TT_FRAME_REPORT, 0, hello, sizeof hello);
    for (;;) {
        tt_frame_event ev = tt_frame_parser_push(&parser, tt_uart_getc());
        if (ev == TT_FRAME_READY) {
            if (parser.type == TT_FRAME_REPORT) {
                int i;
                put_u32(reply, parser.frames_ok);
                for (i = 1; i < (int)TT_FRAME_REJECT_COUNT; ++i) {
                    put_u32(reply + 4 * i, parser.rejected[i]);
                }
                put_u32(reply + 4 * TT_FRAME_REJECT_COUNT, parser.bytes_skipped);
                send(TT_FRAME_REPORT, parser.seq, reply, 4u * (TT_FRAME_REJECT_COUNT + 1u));
                return 0;
            } else {
                uint32_t len = 9u;
                reply[0] = parser.type;
                put_u32(reply + 1, tt_frame_crc32(0u, rx_buf, parser.payload_len));
                put_u32(reply + 5, parser.payload_len);
                if (parser.type == TT_FRAME_SAMPLE_LABEL) {
                    const uint8_t *label;
                    const uint8_t *sample;
                    uint32_t label_len = 0xFFFFFFFFu;
                    uint32_t sample_len = 0xFFFFFFFFu;
                    (void)tt_frame_split_sample_label(rx_buf, parser.payload_len, &label, &label_len, &sample,
                                                      &sample_len);
                    put_u32(reply + 9, label_len);
                    put_u32(reply + 13, sample_len);
                    len = 17u;
                }
                send(TT_FRAME_ACK, parser.seq, reply, len);
            }
        } else if (ev == TT_FRAME_REJECTED) {
            reply[0] = (uint8_t)parser.last_reject;
            send(TT_FRAME_NACK, parser.seq_valid ? parser.seq : 0xFFu, reply, 1u);
        }
    }
}
