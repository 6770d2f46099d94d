/*
 * tt_frame.c — byte-at-a-time parser and encoder for the UART frame protocol (tt_frame.h,
 * docs/uart-protocol.md). tinytrain/stream.py implements the same state machine in Python;
 * tests/boards/test_frame_protocol.py checks that both agree event for event.
 */
#include "tt_frame.h"

#include <string.h>

enum { TT_FS_HUNT0 = 0, TT_FS_HUNT1, TT_FS_HEADER, TT_FS_PAYLOAD, TT_FS_CRC };

/* CRC-32, reflected polynomial 0xEDB88320, four bits per step (16-entry table: 64 bytes of
 * rodata instead of 1 KiB, two lookups per byte). */
static const uint32_t tt_crc32_nibble[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u,
    0x4DB26158u, 0x5005713Cu, 0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu,
    0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu,
};

static uint32_t tt_crc32_step(uint32_t reg, uint8_t byte)
{
    reg ^= byte;
    reg = (reg >> 4) ^ tt_crc32_nibble[reg & 0xFu];
    reg = (reg >> 4) ^ tt_crc32_nibble[reg & 0xFu];
    return reg;
}

uint32_t tt_frame_crc32(uint32_t crc, const uint8_t *data, size_t n)
{
    uint32_t reg = ~crc;
    size_t i;
    for (i = 0; i < n; ++i) {
        reg = tt_crc32_step(reg, data[i]);
    }
    return ~reg;
}

uint8_t tt_frame_crc8(const uint8_t *data, size_t n)
{
    uint8_t crc = 0u;
    size_t i;
    int bit;
    for (i = 0; i < n; ++i) {
        crc ^= data[i];
        for (bit = 0; bit < 8; ++bit) {
            crc = (uint8_t)((crc & 0x80u) != 0u ? (uint8_t)(crc << 1) ^ 0x07u : (uint8_t)(crc << 1));
        }
    }
    return crc;
}

void tt_frame_parser_init(tt_frame_parser *p, uint8_t *buf, uint32_t cap)
{
    memset(p, 0, sizeof *p);
    p->buf = buf;
    p->cap = buf == NULL ? 0u : (cap > TT_FRAME_MAX_PAYLOAD ? TT_FRAME_MAX_PAYLOAD : cap);
    p->state = TT_FS_HUNT0;
}

static tt_frame_event tt_frame_reject_frame(tt_frame_parser *p, tt_frame_reject reason, int replay_header)
{
    p->rejected[reason] += 1u;
    p->last_reject = reason;
    p->state = TT_FS_HUNT0;
    if (replay_header && p->replay_pos >= p->replay_len) {
        /* The sync pair may have been noise: look for a real sync inside the 6 header
         * bytes. They cannot complete a header on their own (a header needs 2 + 6 bytes),
         * so replaying them never produces an event or a nested replay. */
        memcpy(p->replay, p->hdr, sizeof p->replay);
        p->replay_len = (uint8_t)sizeof p->replay;
        p->replay_pos = 0u;
    }
    return TT_FRAME_REJECTED;
}

static tt_frame_event tt_frame_step(tt_frame_parser *p, uint8_t byte)
{
    switch (p->state) {
    case TT_FS_HUNT0:
        if (byte == TT_FRAME_SYNC0) {
            p->state = TT_FS_HUNT1;
        } else {
            p->bytes_skipped += 1u;
        }
        return TT_FRAME_NEED_MORE;

    case TT_FS_HUNT1:
        if (byte == TT_FRAME_SYNC1) {
            p->state = TT_FS_HEADER;
            p->hdr_len = 0u;
        } else if (byte == TT_FRAME_SYNC0) {
            p->bytes_skipped += 1u; /* the previous 0xA5 was noise; this one may start a frame */
        } else {
            p->bytes_skipped += 2u;
            p->state = TT_FS_HUNT0;
        }
        return TT_FRAME_NEED_MORE;

    case TT_FS_HEADER: {
        uint32_t len;
        p->hdr[p->hdr_len] = byte;
        p->hdr_len = (uint8_t)(p->hdr_len + 1u);
        if (p->hdr_len < sizeof p->hdr) {
            return TT_FRAME_NEED_MORE;
        }
        p->seq_valid = 0u;
        if (tt_frame_crc8(p->hdr, 5u) != p->hdr[5]) {
            return tt_frame_reject_frame(p, TT_FRAME_REJECT_HEADER_CHECK, 1);
        }
        len = (uint32_t)p->hdr[3] | ((uint32_t)p->hdr[4] << 8);
        p->type = p->hdr[1];
        p->seq = p->hdr[2];
        p->seq_valid = 1u;
        p->payload_len = len;
        if (p->hdr[0] != TT_FRAME_VERSION) {
            return tt_frame_reject_frame(p, TT_FRAME_REJECT_VERSION, 1);
        }
        if (p->type == 0u || p->type > (uint8_t)TT_FRAME_TYPE_MAX) {
            return tt_frame_reject_frame(p, TT_FRAME_REJECT_TYPE, 1);
        }
        if (len > p->cap) {
            return tt_frame_reject_frame(p, TT_FRAME_REJECT_LENGTH, 1);
        }
        p->crc = tt_frame_crc32(0u, p->hdr, sizeof p->hdr) ^ 0xFFFFFFFFu;
        p->pos = 0u;
        p->crc_len = 0u;
        p->state = len > 0u ? TT_FS_PAYLOAD : TT_FS_CRC;
        return TT_FRAME_NEED_MORE;
    }

    case TT_FS_PAYLOAD:
        /* pos < payload_len <= cap: checked when the header was accepted. */
        p->buf[p->pos] = byte;
        p->pos += 1u;
        p->crc = tt_crc32_step(p->crc, byte);
        if (p->pos >= p->payload_len) {
            p->state = TT_FS_CRC;
        }
        return TT_FRAME_NEED_MORE;

    case TT_FS_CRC: {
        uint32_t received;
        p->crc_bytes[p->crc_len] = byte;
        p->crc_len = (uint8_t)(p->crc_len + 1u);
        if (p->crc_len < sizeof p->crc_bytes) {
            return TT_FRAME_NEED_MORE;
        }
        received = (uint32_t)p->crc_bytes[0] | ((uint32_t)p->crc_bytes[1] << 8) |
                   ((uint32_t)p->crc_bytes[2] << 16) | ((uint32_t)p->crc_bytes[3] << 24);
        if (received != (p->crc ^ 0xFFFFFFFFu)) {
            return tt_frame_reject_frame(p, TT_FRAME_REJECT_CRC, 0);
        }
        p->frames_ok += 1u;
        p->last_reject = TT_FRAME_REJECT_NONE;
        p->state = TT_FS_HUNT0;
        return TT_FRAME_READY;
    }

    default:
        /* Corrupted state (should not happen): start over. */
        p->state = TT_FS_HUNT0;
        return TT_FRAME_NEED_MORE;
    }
}

tt_frame_event tt_frame_parser_push(tt_frame_parser *p, uint8_t byte)
{
    tt_frame_event ev = tt_frame_step(p, byte);
    while (p->replay_pos < p->replay_len) {
        uint8_t b = p->replay[p->replay_pos];
        p->replay_pos = (uint8_t)(p->replay_pos + 1u);
        (void)tt_frame_step(p, b);
    }
    return ev;
}

size_t tt_frame_parser_feed(tt_frame_parser *p, const uint8_t *data, size_t n, tt_frame_event *event)
{
    size_t i;
    *event = TT_FRAME_NEED_MORE;
    for (i = 0; i < n; ++i) {
        tt_frame_event ev = tt_frame_parser_push(p, data[i]);
        if (ev != TT_FRAME_NEED_MORE) {
            *event = ev;
            return i + 1u;
        }
    }
    return n;
}

uint32_t tt_frame_parser_rejected_total(const tt_frame_parser *p)
{
    uint32_t total = 0u;
    int i;
    for (i = 0; i < (int)TT_FRAME_REJECT_COUNT; ++i) {
        total += p->rejected[i];
    }
    return total;
}

size_t tt_frame_encode(uint8_t *out, size_t out_cap, uint8_t type, uint8_t seq, const uint8_t *payload,
                       size_t len)
{
    uint32_t crc;
    size_t total = TT_FRAME_OVERHEAD + len;
    if (len > TT_FRAME_MAX_PAYLOAD || out_cap < total || (payload == NULL && len > 0u)) {
        return 0u;
    }
    out[0] = TT_FRAME_SYNC0;
    out[1] = TT_FRAME_SYNC1;
    out[2] = TT_FRAME_VERSION;
    out[3] = type;
    out[4] = seq;
    out[5] = (uint8_t)(len & 0xFFu);
    out[6] = (uint8_t)((len >> 8) & 0xFFu);
    out[7] = tt_frame_crc8(out + 2, 5u);
    if (len > 0u) {
        memmove(out + TT_FRAME_HEADER_BYTES, payload, len);
    }
    crc = tt_frame_crc32(0u, out + 2, 6u + len);
    out[8 + len] = (uint8_t)(crc & 0xFFu);
    out[9 + len] = (uint8_t)((crc >> 8) & 0xFFu);
    out[10 + len] = (uint8_t)((crc >> 16) & 0xFFu);
    out[11 + len] = (uint8_t)((crc >> 24) & 0xFFu);
    return total;
}

int tt_frame_split_sample_label(const uint8_t *payload, uint32_t len, const uint8_t **label,
                                uint32_t *label_len, const uint8_t **sample, uint32_t *sample_len)
{
    uint32_t n;
    if (len < 2u) {
        return -1;
    }
    n = (uint32_t)payload[0] | ((uint32_t)payload[1] << 8);
    if (n > len - 2u) {
        return -1;
    }
    *label = payload + 2;
    *label_len = n;
    *sample = payload + 2 + n;
    *sample_len = len - 2u - n;
    return 0;
}

const char *tt_frame_reject_str(tt_frame_reject reason)
{
    switch (reason) {
    case TT_FRAME_REJECT_NONE:
        return "ok";
#define TT_FRAME_REJECT_CASE(name, value, msg)                                                   \
    case TT_FRAME_REJECT_##name:                                                                 \
        return msg;
        TT_FRAME_REJECTS(TT_FRAME_REJECT_CASE)
#undef TT_FRAME_REJECT_CASE
    default:
        return "unknown reject reason";
    }
}

const char *tt_frame_type_str(uint8_t type)
{
    switch (type) {
#define TT_FRAME_TYPE_CASE(name, value, desc)                                                    \
    case value:                                                                                  \
        return #name;
        TT_FRAME_TYPES(TT_FRAME_TYPE_CASE)
#undef TT_FRAME_TYPE_CASE
    default:
        return "UNKNOWN";
    }
}
