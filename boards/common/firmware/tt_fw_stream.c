/*
 * tt_fw_stream.c — on-device training from samples streamed over the board UART.
 *
 * Frames (docs/uart-protocol.md) and what this firmware does with them; all integers little
 * endian, floats as their IEEE binary32 bits:
 *
 *   SAMPLE_LABEL  u16 label length, label, sample. Sample: TT_INPUT_SIZE floats. Label: an
 *                 i32 class index (classification) or TT_TARGET_SIZE floats (regression).
 *                 Stored as the current sample.                         -> ACK u32 0
 *   SAMPLE, LABEL the two halves of SAMPLE_LABEL.                        -> ACK u32 0
 *   STEP          u32 n (empty: 1), 1 <= n <= TT_FW_MAX_STEP_COUNT: n tt_train_step calls
 *                 on the current sample.
 *                 -> ACK u32 last status, u32 optimizer step, u32 samples trained in total,
 *                    u32 n, u64 instructions of the n steps, u32 loss bits[n]
 *   REPORT        empty or kind 0: status.
 *                 -> REPORT u8 0, u32 model hash, input size, output size, label bytes,
 *                    optimizer step, samples trained, last loss bits, non-finite batches,
 *                    frames ok, frames rejected, store sequence (0 = none), checkpoint bytes,
 *                    receive capacity, max step count, restored at boot (0/1)
 *                 kind 1, u32 offset, u32 count: read the model's checkpoint blob
 *                 (tt_checkpoint_save; taken fresh when offset == 0).
 *                 -> REPORT u8 1, u32 offset, u32 total bytes, u32 n, n blob bytes
 *                    (n <= TT_FW_CHUNK)
 *                 kind 2: halt (returns from main: QEMU exits; the host tool's "done").
 *                 -> REPORT u8 2
 *   SAVE_CHECKPOINT  tt_checkpoint_save into the two-slot store (tt_ckpt_slots).
 *                 -> ACK u32 0, u32 store sequence, u32 bytes
 *
 * Frames the parser rejects get NACK [reason] (tt_frame_reject, 1..5) with the frame's seq
 * (0xFF when its header was broken); frames it accepts but cannot act on get NACK
 * [TT_FW_NACK_*, detail]. A frame equal to the previous one (same seq, type and payload CRC)
 * is a retransmission after a lost reply: the previous reply is sent again, nothing is
 * executed twice.
 *
 * At boot the store is opened (emulated flash, persisted to host file "tt_ckpt.img" when
 * TT_FW_STORE_FILE is 1, i.e. under QEMU) and the newest checkpoint is restored, so training
 * resumes after a reset; then an unsolicited REPORT status (seq 0) announces the device.
 */
#include <stdint.h>
#include <string.h>

#include "tt_ckpt_slots.h"
#include "tt_frame.h"
#include "tt_fw.h"
#include "tt_fw_flash.h"
#include "tt_instret.h"
#include "tt_model.h"
#include "tt_uart.h"

#include "tt_fw_config.h"

#ifdef TT_NUM_CLASSES
#define TT_FW_LABEL_BYTES 4u
#else
#define TT_FW_LABEL_BYTES (TT_TARGET_SIZE * 4u)
#endif
#define TT_FW_SAMPLE_BYTES (TT_INPUT_SIZE * 4u)
#define TT_FW_RX_CAP (2u + TT_FW_LABEL_BYTES + TT_FW_SAMPLE_BYTES)
#define TT_FW_MAX_STEP_COUNT 64u
#define TT_FW_CHUNK 512u
/* Largest reply payload: a STEP ACK with TT_FW_MAX_STEP_COUNT losses, or a checkpoint chunk. */
#define TT_FW_STEP_ACK_MAX (24u + 4u * TT_FW_MAX_STEP_COUNT)
#define TT_FW_CHUNK_MAX (13u + TT_FW_CHUNK)
#define TT_FW_TX_PAYLOAD (TT_FW_STEP_ACK_MAX > TT_FW_CHUNK_MAX ? TT_FW_STEP_ACK_MAX : TT_FW_CHUNK_MAX)

#ifndef TT_FW_STORE_FILE
#define TT_FW_STORE_FILE 0
#endif

/* Application NACK reasons (payload[0]); 1..5 are the parser's tt_frame_reject values. */
enum {
    TT_FW_NACK_PAYLOAD = 0x10,   /* wrong payload size for this frame type */
    TT_FW_NACK_NO_SAMPLE = 0x11, /* STEP before a complete sample and label */
    TT_FW_NACK_LABEL = 0x12,     /* class index outside 0..TT_NUM_CLASSES-1 */
    TT_FW_NACK_TRAIN = 0x13,     /* tt_train_step failed; payload[1] = tt_status */
    TT_FW_NACK_STORE = 0x14,     /* checkpoint store failed; payload[1] = tt_ckpt_status */
    TT_FW_NACK_UNEXPECTED = 0x15 /* a frame type the device does not take (ACK/NACK) */
};

static uint8_t tt_fw_rx[TT_FW_RX_CAP];
static uint8_t tt_fw_tx[TT_FW_TX_PAYLOAD + TT_FRAME_OVERHEAD];
static uint8_t tt_fw_reply[TT_FW_TX_PAYLOAD];
static size_t tt_fw_tx_len;
static float tt_fw_x[TT_INPUT_SIZE];
#ifdef TT_NUM_CLASSES
static int32_t tt_fw_label[1];
#else
static float tt_fw_label[TT_TARGET_SIZE];
#endif
static uint8_t tt_fw_ckbuf[TT_CHECKPOINT_BYTES];
static uint8_t tt_fw_flash_mem[2u * TT_FW_SLOT_BYTES(TT_CHECKPOINT_BYTES)];

typedef struct {
    tt_ctx ctx;
    tt_frame_parser parser;
    tt_fw_flash flash;
    tt_ckpt_store store;
    uint32_t have; /* bit 0: sample, bit 1: label */
    uint32_t trained;
    uint32_t last_loss;
    uint32_t restored;
    uint32_t ck_len; /* bytes of the blob snapshot in tt_fw_ckbuf */
    /* The previous frame, to recognise a retransmission. */
    int prev_valid;
    uint8_t prev_type;
    uint8_t prev_seq;
    uint32_t prev_crc;
} tt_fw_stream;

uint64_t tt_fw_now(void)
{
    return tt_instret_now();
}

static void tt_fw_send(uint8_t type, uint8_t seq, const uint8_t *payload, uint32_t len)
{
    tt_fw_tx_len = tt_frame_encode(tt_fw_tx, sizeof tt_fw_tx, type, seq, payload, len);
    tt_uart_write(tt_fw_tx, tt_fw_tx_len);
}

static void tt_fw_nack(uint8_t seq, uint8_t reason, uint8_t detail)
{
    uint8_t p[2];
    p[0] = reason;
    p[1] = detail;
    tt_fw_send(TT_FRAME_NACK, seq, p, 2u);
}

static uint32_t tt_fw_status_report(const tt_fw_stream *d, uint8_t *p)
{
    const uint32_t v[15] = {
        TT_MODEL_HASH,
        TT_INPUT_SIZE,
        TT_OUTPUT_SIZE,
        TT_FW_LABEL_BYTES,
        d->ctx.step,
        d->trained,
        d->last_loss,
        d->ctx.nonfinite,
        d->parser.frames_ok,
        tt_frame_parser_rejected_total(&d->parser),
        d->store.active < 0 ? 0u : d->store.sequence,
        TT_CHECKPOINT_BYTES,
        TT_FW_RX_CAP,
        TT_FW_MAX_STEP_COUNT,
        d->restored,
    };
    uint32_t i;
    p[0] = 0u;
    for (i = 0; i < 15u; ++i) {
        tt_fw_put_u32(p + 1 + 4u * i, v[i]);
    }
    return 1u + 4u * 15u;
}

static int tt_fw_set_label(const uint8_t *label, uint32_t len)
{
    if (len != TT_FW_LABEL_BYTES) {
        return TT_FW_NACK_PAYLOAD;
    }
#ifdef TT_NUM_CLASSES
    {
        const int32_t k = (int32_t)tt_fw_get_u32(label);
        if (k < 0 || k >= TT_NUM_CLASSES) {
            return TT_FW_NACK_LABEL;
        }
        tt_fw_label[0] = k;
    }
#else
    memcpy(tt_fw_label, label, len);
#endif
    return 0;
}

static void tt_fw_handle(tt_fw_stream *d, uint8_t type, uint8_t seq, const uint8_t *pl, uint32_t len)
{
    uint8_t *r = tt_fw_reply;
    switch (type) {
    case TT_FRAME_SAMPLE_LABEL: {
        const uint8_t *label;
        const uint8_t *sample;
        uint32_t label_len;
        uint32_t sample_len;
        int why;
        if (tt_frame_split_sample_label(pl, len, &label, &label_len, &sample, &sample_len) != 0 ||
            sample_len != TT_FW_SAMPLE_BYTES) {
            tt_fw_nack(seq, TT_FW_NACK_PAYLOAD, 0u);
            return;
        }
        why = tt_fw_set_label(label, label_len);
        if (why != 0) {
            tt_fw_nack(seq, (uint8_t)why, 0u);
            return;
        }
        memcpy(tt_fw_x, sample, sample_len);
        d->have = 3u;
        tt_fw_put_u32(r, 0u);
        tt_fw_send(TT_FRAME_ACK, seq, r, 4u);
        return;
    }
    case TT_FRAME_SAMPLE:
        if (len != TT_FW_SAMPLE_BYTES) {
            tt_fw_nack(seq, TT_FW_NACK_PAYLOAD, 0u);
            return;
        }
        memcpy(tt_fw_x, pl, len);
        d->have |= 1u;
        tt_fw_put_u32(r, 0u);
        tt_fw_send(TT_FRAME_ACK, seq, r, 4u);
        return;
    case TT_FRAME_LABEL: {
        const int why = tt_fw_set_label(pl, len);
        if (why != 0) {
            tt_fw_nack(seq, (uint8_t)why, 0u);
            return;
        }
        d->have |= 2u;
        tt_fw_put_u32(r, 0u);
        tt_fw_send(TT_FRAME_ACK, seq, r, 4u);
        return;
    }
    case TT_FRAME_STEP: {
        uint32_t n = 1u;
        uint32_t i;
        uint64_t t0;
        uint64_t t1;
        tt_status s = TT_OK;
        if (len == 4u) {
            n = tt_fw_get_u32(pl);
        } else if (len != 0u) {
            n = 0u;
        }
        if (n == 0u || n > TT_FW_MAX_STEP_COUNT) {
            tt_fw_nack(seq, TT_FW_NACK_PAYLOAD, 0u);
            return;
        }
        if (d->have != 3u) {
            tt_fw_nack(seq, TT_FW_NACK_NO_SAMPLE, 0u);
            return;
        }
        t0 = tt_fw_now();
        for (i = 0; i < n; ++i) {
            float loss = 0.0f;
            s = tt_train_step(&d->ctx, tt_fw_x, tt_fw_label, &loss);
            if (s != TT_OK && s != TT_ERR_NAN) {
                break;
            }
            d->trained++;
            d->last_loss = tt_fw_float_bits(loss);
            tt_fw_put_u32(r + 24 + 4u * i, d->last_loss);
        }
        t1 = tt_fw_now();
        if (i < n) {
            tt_fw_nack(seq, TT_FW_NACK_TRAIN, (uint8_t)s);
            return;
        }
        tt_fw_put_u32(r, (uint32_t)s);
        tt_fw_put_u32(r + 4, d->ctx.step);
        tt_fw_put_u32(r + 8, d->trained);
        tt_fw_put_u32(r + 12, n);
        tt_fw_put_u32(r + 16, (uint32_t)(t1 - t0));
        tt_fw_put_u32(r + 20, (uint32_t)((t1 - t0) >> 32));
        tt_fw_send(TT_FRAME_ACK, seq, r, 24u + 4u * n);
        return;
    }
    case TT_FRAME_REPORT: {
        const uint8_t kind = len == 0u ? 0u : pl[0];
        if (kind == 0u && len <= 1u) {
            tt_fw_send(TT_FRAME_REPORT, seq, r, tt_fw_status_report(d, r));
        } else if (kind == 1u && len == 9u) {
            const uint32_t offset = tt_fw_get_u32(pl + 1);
            uint32_t count = tt_fw_get_u32(pl + 5);
            if (offset == 0u) {
                size_t written = 0u;
                if (tt_checkpoint_save(&d->ctx, tt_fw_ckbuf, sizeof tt_fw_ckbuf, &written) != TT_OK) {
                    tt_fw_nack(seq, TT_FW_NACK_STORE, 0u);
                    return;
                }
                d->ck_len = (uint32_t)written;
            }
            if (offset > d->ck_len) {
                tt_fw_nack(seq, TT_FW_NACK_PAYLOAD, 0u);
                return;
            }
            if (count > d->ck_len - offset) {
                count = d->ck_len - offset;
            }
            if (count > TT_FW_CHUNK) {
                count = TT_FW_CHUNK;
            }
            r[0] = 1u;
            tt_fw_put_u32(r + 1, offset);
            tt_fw_put_u32(r + 5, d->ck_len);
            tt_fw_put_u32(r + 9, count);
            memcpy(r + 13, tt_fw_ckbuf + offset, count);
            tt_fw_send(TT_FRAME_REPORT, seq, r, 13u + count);
        } else if (kind == 2u && len == 1u) {
            r[0] = 2u;
            tt_fw_send(TT_FRAME_REPORT, seq, r, 1u);
        } else {
            tt_fw_nack(seq, TT_FW_NACK_PAYLOAD, 0u);
        }
        return;
    }
    case TT_FRAME_SAVE_CHECKPOINT: {
        size_t written = 0u;
        tt_ckpt_status cs;
        if (tt_checkpoint_save(&d->ctx, tt_fw_ckbuf, sizeof tt_fw_ckbuf, &written) != TT_OK) {
            tt_fw_nack(seq, TT_FW_NACK_STORE, 0u);
            return;
        }
        d->ck_len = (uint32_t)written;
        cs = tt_ckpt_save(&d->store, tt_fw_ckbuf, (uint32_t)written);
        if (cs != TT_CKPT_OK || tt_fw_flash_persist(&d->flash) != 0) {
            tt_fw_nack(seq, TT_FW_NACK_STORE, (uint8_t)(cs != TT_CKPT_OK ? cs : TT_CKPT_IO));
            return;
        }
        tt_fw_put_u32(r, 0u);
        tt_fw_put_u32(r + 4, d->store.sequence);
        tt_fw_put_u32(r + 8, (uint32_t)written);
        tt_fw_send(TT_FRAME_ACK, seq, r, 12u);
        return;
    }
    default:
        tt_fw_nack(seq, TT_FW_NACK_UNEXPECTED, 0u);
        return;
    }
}

int main(void)
{
    static tt_fw_stream d;
    tt_ckpt_io io;
    uint32_t len = 0u;
    uint8_t *r = tt_fw_reply;

    tt_instret_init();
    tt_uart_init();
    tt_frame_parser_init(&d.parser, tt_fw_rx, sizeof tt_fw_rx);
    if (tt_init(&d.ctx) != TT_OK ||
        tt_fw_flash_init(&d.flash, &io, tt_fw_flash_mem, sizeof tt_fw_flash_mem,
                         TT_FW_STORE_FILE ? "tt_ckpt.img" : NULL) != 0 ||
        tt_ckpt_open(&d.store, &io) != TT_CKPT_OK) {
        return TT_FW_EXIT_API;
    }
    if (tt_ckpt_load(&d.store, tt_fw_ckbuf, sizeof tt_fw_ckbuf, &len, NULL) == TT_CKPT_OK &&
        tt_checkpoint_load(&d.ctx, tt_fw_ckbuf, len) == TT_OK) {
        d.restored = 1u;
    }
    tt_fw_send(TT_FRAME_REPORT, 0u, r, tt_fw_status_report(&d, r));
    for (;;) {
        const tt_frame_event ev = tt_frame_parser_push(&d.parser, tt_uart_getc());
        if (ev == TT_FRAME_READY) {
            const uint8_t type = d.parser.type;
            const uint8_t seq = d.parser.seq;
            const uint32_t crc = tt_frame_crc32(0u, tt_fw_rx, d.parser.payload_len);
            if (d.prev_valid && type == d.prev_type && seq == d.prev_seq && crc == d.prev_crc) {
                tt_uart_write(tt_fw_tx, tt_fw_tx_len); /* our reply was lost: repeat it */
                continue;
            }
            tt_fw_handle(&d, type, seq, tt_fw_rx, d.parser.payload_len);
            d.prev_valid = 1;
            d.prev_type = type;
            d.prev_seq = seq;
            d.prev_crc = crc;
            if (type == TT_FRAME_REPORT && d.parser.payload_len == 1u && tt_fw_rx[0] == 2u) {
                return TT_FW_EXIT_OK;
            }
        } else if (ev == TT_FRAME_REJECTED) {
            d.prev_valid = 0;
            tt_fw_nack(d.parser.seq_valid ? d.parser.seq : 0xFFu, (uint8_t)d.parser.last_reject, 0u);
        }
    }
}
