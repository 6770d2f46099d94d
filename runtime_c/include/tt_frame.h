/*
 * tt_frame.h — the UART frame protocol, device side (format: docs/uart-protocol.md).
 *
 *   offset  size  field
 *   0       2     sync 0xA5 0x5A
 *   2       1     version (TT_FRAME_VERSION)
 *   3       1     type (tt_frame_type)
 *   4       1     seq (sender's sequence number; ACK/NACK echo it)
 *   5       2     payload length, little endian (0..65535)
 *   7       1     header check: CRC-8 (poly 0x07, init 0x00) of bytes 2..6
 *   8       len   payload
 *   8+len   4     CRC-32 (IEEE 802.3, as zlib.crc32) of bytes 2..8+len-1, little endian
 *
 * The parser takes one byte at a time (straight from a UART receive register), writes the
 * payload into a caller-provided buffer of fixed capacity and never past it: a length
 * larger than the capacity is rejected from the header alone. Rejected frames are counted
 * by reason; after a header-level rejection the parser re-scans the header bytes for a
 * sync pattern, so a spurious sync inside noise does not swallow the real frame behind it.
 * Pure C99, no malloc, no recursion; the parser state is one struct.
 */
#ifndef TT_FRAME_H
#define TT_FRAME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TT_FRAME_SYNC0 0xA5u
#define TT_FRAME_SYNC1 0x5Au
#define TT_FRAME_VERSION 1u
#define TT_FRAME_HEADER_BYTES 8u
#define TT_FRAME_CRC_BYTES 4u
#define TT_FRAME_OVERHEAD (TT_FRAME_HEADER_BYTES + TT_FRAME_CRC_BYTES)
#define TT_FRAME_MAX_PAYLOAD 65535u

/* Frame types: X(name, value, description). */
#define TT_FRAME_TYPES(X)                                                                   \
    X(SAMPLE, 0x01, "input sample (tensor bytes)")                                           \
    X(LABEL, 0x02, "label for the last sample")                                              \
    X(SAMPLE_LABEL, 0x03, "u16 label length, label bytes, sample bytes")                     \
    X(STEP, 0x04, "run training steps (u32 count, default 1)")                               \
    X(REPORT, 0x05, "statistics / metrics request or reply")                                 \
    X(SAVE_CHECKPOINT, 0x06, "save a checkpoint now")                                        \
    X(ACK, 0x07, "frame accepted (echoes seq; payload is type specific)")                    \
    X(NACK, 0x08, "frame rejected (echoes seq when known; payload[0] = reject reason)")

typedef enum {
#define TT_FRAME_TYPE_ENUM(name, value, desc) TT_FRAME_##name = value,
    TT_FRAME_TYPES(TT_FRAME_TYPE_ENUM)
#undef TT_FRAME_TYPE_ENUM
    TT_FRAME_TYPE_MAX = 0x08
} tt_frame_type;

/* Reasons a frame is rejected: X(name, value, message). Value 0 is "no rejection". */
#define TT_FRAME_REJECTS(X)                                                                 \
    X(HEADER_CHECK, 1, "header check byte mismatch")                                         \
    X(VERSION, 2, "unsupported protocol version")                                            \
    X(TYPE, 3, "unknown frame type")                                                         \
    X(LENGTH, 4, "payload longer than the receive buffer")                                   \
    X(CRC, 5, "payload CRC-32 mismatch")

typedef enum {
    TT_FRAME_REJECT_NONE = 0,
#define TT_FRAME_REJECT_ENUM(name, value, msg) TT_FRAME_REJECT_##name = value,
    TT_FRAME_REJECTS(TT_FRAME_REJECT_ENUM)
#undef TT_FRAME_REJECT_ENUM
    TT_FRAME_REJECT_COUNT = 6 /* one more than the largest value */
} tt_frame_reject;

typedef enum {
    TT_FRAME_NEED_MORE = 0, /* byte consumed, no frame finished */
    TT_FRAME_READY = 1,     /* a valid frame: type/seq/payload_len describe it, payload in buf */
    TT_FRAME_REJECTED = 2   /* a frame was dropped: see last_reject (and seq if header ok) */
} tt_frame_event;

typedef struct {
    /* Receive buffer, owned by the caller. */
    uint8_t *buf;
    uint32_t cap;

    /* Parser state (private). */
    uint8_t state;
    uint8_t hdr_len;
    uint8_t hdr[6]; /* version, type, seq, len_lo, len_hi, check */
    uint8_t crc_len;
    uint8_t crc_bytes[4];
    uint8_t replay[6];
    uint8_t replay_len;
    uint8_t replay_pos;
    uint32_t pos;
    uint32_t crc;

    /* The frame just completed (valid after READY; after REJECTED when the header was
     * intact, type/seq/payload_len describe the rejected frame). */
    uint8_t type;
    uint8_t seq;
    uint8_t seq_valid; /* 1 when seq belongs to the last event's frame */
    uint32_t payload_len;

    /* Statistics. */
    uint32_t frames_ok;
    uint32_t rejected[TT_FRAME_REJECT_COUNT];
    uint32_t bytes_skipped; /* bytes outside any frame while hunting for sync */
    tt_frame_reject last_reject;
} tt_frame_parser;

/* `buf` receives payloads of up to `cap` bytes (cap > 65535 is clamped). */
void tt_frame_parser_init(tt_frame_parser *p, uint8_t *buf, uint32_t cap);

/* Feed one received byte. */
tt_frame_event tt_frame_parser_push(tt_frame_parser *p, uint8_t byte);

/* Feed up to `n` bytes; stops after the first byte that completes or rejects a frame.
 * Returns the number of bytes consumed; the event goes to *event. */
size_t tt_frame_parser_feed(tt_frame_parser *p, const uint8_t *data, size_t n, tt_frame_event *event);

/* Total frames rejected for any reason. */
uint32_t tt_frame_parser_rejected_total(const tt_frame_parser *p);

/* Encode one frame into `out`. Returns the frame size, or 0 if `out_cap` is too small or
 * `len` exceeds TT_FRAME_MAX_PAYLOAD. `payload` may be NULL when len == 0. */
size_t tt_frame_encode(uint8_t *out, size_t out_cap, uint8_t type, uint8_t seq, const uint8_t *payload,
                       size_t len);

/* SAMPLE_LABEL payload: u16 label length (LE), label bytes, then sample bytes.
 * Returns 0 and sets the four outputs, or -1 if the payload is malformed. */
int tt_frame_split_sample_label(const uint8_t *payload, uint32_t len, const uint8_t **label,
                                uint32_t *label_len, const uint8_t **sample, uint32_t *sample_len);

/* CRC-32 (IEEE 802.3, reflected, poly 0xEDB88320): start with crc = 0, chain calls. */
uint32_t tt_frame_crc32(uint32_t crc, const uint8_t *data, size_t n);

/* CRC-8 (poly 0x07, init 0x00, no reflection, no final xor) used by the header check. */
uint8_t tt_frame_crc8(const uint8_t *data, size_t n);

const char *tt_frame_reject_str(tt_frame_reject reason);
const char *tt_frame_type_str(uint8_t type);

#ifdef __cplusplus
}
#endif

#endif /* TT_FRAME_H */
