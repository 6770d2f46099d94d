/*
 * tt_ckpt_slots.c — power-safe two-slot checkpoint store (see tt_ckpt_slots.h).
 *
 * Slot layout (little endian):
 *   +0  u32 magic "TTCK"      +4  u16 format, u16 header bytes
 *   +8  u32 sequence          +12 u32 payload length
 *   +16 u32 payload CRC-32    +20 u32 CRC-32 of bytes +0..+19
 *   +24 payload
 */
#include "tt_ckpt_slots.h"

#include <string.h>

/* CRC-32 (IEEE, reflected 0xEDB88320), nibble table; same function as tt_frame_crc32,
 * kept private so this file stands alone. */
static const uint32_t tt_ckpt_crc_nibble[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u,
    0x4DB26158u, 0x5005713Cu, 0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu,
    0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu,
};

static uint32_t tt_ckpt_crc32(uint32_t crc, const uint8_t *data, uint32_t n)
{
    uint32_t reg = ~crc;
    uint32_t i;
    for (i = 0; i < n; ++i) {
        reg ^= data[i];
        reg = (reg >> 4) ^ tt_ckpt_crc_nibble[reg & 0xFu];
        reg = (reg >> 4) ^ tt_ckpt_crc_nibble[reg & 0xFu];
    }
    return ~reg;
}

static void tt_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)((v >> 8) & 0xFFu);
    p[2] = (uint8_t)((v >> 16) & 0xFFu);
    p[3] = (uint8_t)((v >> 24) & 0xFFu);
}

static uint32_t tt_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

typedef struct {
    uint32_t sequence;
    uint32_t length;
    uint32_t payload_crc;
} tt_ckpt_header;

/* Read and check a slot's header. 1 if valid. */
static int tt_ckpt_read_header(const tt_ckpt_store *s, int slot, tt_ckpt_header *h)
{
    uint8_t raw[TT_CKPT_HEADER_BYTES];
    uint32_t base = (uint32_t)slot * s->slot_bytes;
    if (s->io.read(s->io.ctx, base, raw, TT_CKPT_HEADER_BYTES) != 0) {
        return 0;
    }
    if (tt_get_u32(raw) != TT_CKPT_MAGIC || raw[4] != (uint8_t)TT_CKPT_FORMAT || raw[5] != 0u ||
        raw[6] != (uint8_t)TT_CKPT_HEADER_BYTES || raw[7] != 0u) {
        return 0;
    }
    if (tt_ckpt_crc32(0u, raw, 20u) != tt_get_u32(raw + 20)) {
        return 0;
    }
    h->sequence = tt_get_u32(raw + 8);
    h->length = tt_get_u32(raw + 12);
    h->payload_crc = tt_get_u32(raw + 16);
    return h->length <= s->slot_bytes - TT_CKPT_HEADER_BYTES;
}

/* CRC of a slot's payload, streamed through a small stack buffer. 1 if it matches. */
static int tt_ckpt_payload_ok(const tt_ckpt_store *s, int slot, const tt_ckpt_header *h)
{
    uint8_t chunk[64];
    uint32_t base = (uint32_t)slot * s->slot_bytes + TT_CKPT_HEADER_BYTES;
    uint32_t done = 0u;
    uint32_t crc = 0u;
    while (done < h->length) {
        uint32_t n = h->length - done;
        if (n > (uint32_t)sizeof chunk) {
            n = (uint32_t)sizeof chunk;
        }
        if (s->io.read(s->io.ctx, base + done, chunk, n) != 0) {
            return 0;
        }
        crc = tt_ckpt_crc32(crc, chunk, n);
        done += n;
    }
    return crc == h->payload_crc;
}

/* Sequence a is newer than b (serial-number arithmetic: survives wrap-around). */
static int tt_ckpt_newer(uint32_t a, uint32_t b)
{
    return (int32_t)(a - b) > 0;
}

tt_ckpt_status tt_ckpt_open(tt_ckpt_store *s, const tt_ckpt_io *io)
{
    tt_ckpt_header h[2];
    int valid[2];
    int slot;
    if (s == NULL || io == NULL || io->erase == NULL || io->write == NULL || io->read == NULL ||
        io->erase_block == 0u) {
        return TT_CKPT_BAD_ARG;
    }
    memset(s, 0, sizeof *s);
    s->io = *io;
    s->slot_bytes = io->region_bytes / 2u;
    s->active = -1;
    if (s->slot_bytes <= TT_CKPT_HEADER_BYTES || s->slot_bytes % io->erase_block != 0u) {
        return TT_CKPT_BAD_ARG;
    }
    for (slot = 0; slot < 2; ++slot) {
        valid[slot] = tt_ckpt_read_header(s, slot, &h[slot]) && tt_ckpt_payload_ok(s, slot, &h[slot]);
    }
    for (slot = 0; slot < 2; ++slot) {
        if (valid[slot] && (s->active < 0 || tt_ckpt_newer(h[slot].sequence, s->sequence))) {
            s->active = (int8_t)slot;
            s->sequence = h[slot].sequence;
            s->payload_len = h[slot].length;
        }
    }
    return TT_CKPT_OK;
}

uint32_t tt_ckpt_capacity(const tt_ckpt_store *s)
{
    return s->slot_bytes > TT_CKPT_HEADER_BYTES ? s->slot_bytes - TT_CKPT_HEADER_BYTES : 0u;
}

tt_ckpt_status tt_ckpt_save(tt_ckpt_store *s, const void *data, uint32_t len)
{
    uint8_t raw[TT_CKPT_HEADER_BYTES];
    int target;
    uint32_t base;
    uint32_t sequence;
    if (s == NULL || (data == NULL && len > 0u) || s->slot_bytes == 0u) {
        return TT_CKPT_BAD_ARG;
    }
    if (len > tt_ckpt_capacity(s)) {
        return TT_CKPT_TOO_BIG;
    }
    target = s->active == 0 ? 1 : 0;
    base = (uint32_t)target * s->slot_bytes;
    sequence = s->active < 0 ? 1u : s->sequence + 1u;

    if (s->io.erase(s->io.ctx, base, s->slot_bytes) != 0) {
        return TT_CKPT_IO;
    }
    if (len > 0u && s->io.write(s->io.ctx, base + TT_CKPT_HEADER_BYTES, data, len) != 0) {
        return TT_CKPT_IO;
    }
    tt_put_u32(raw, TT_CKPT_MAGIC);
    raw[4] = (uint8_t)TT_CKPT_FORMAT;
    raw[5] = 0u;
    raw[6] = (uint8_t)TT_CKPT_HEADER_BYTES;
    raw[7] = 0u;
    tt_put_u32(raw + 8, sequence);
    tt_put_u32(raw + 12, len);
    tt_put_u32(raw + 16, tt_ckpt_crc32(0u, (const uint8_t *)data, len));
    tt_put_u32(raw + 20, tt_ckpt_crc32(0u, raw, 20u));
    /* Commit point: the checkpoint exists once this header is fully written. */
    if (s->io.write(s->io.ctx, base, raw, TT_CKPT_HEADER_BYTES) != 0) {
        return TT_CKPT_IO;
    }
    s->active = (int8_t)target;
    s->sequence = sequence;
    s->payload_len = len;
    return TT_CKPT_OK;
}

tt_ckpt_status tt_ckpt_load(tt_ckpt_store *s, void *buf, uint32_t cap, uint32_t *len, uint32_t *sequence)
{
    tt_ckpt_header h;
    uint32_t base;
    if (s == NULL || (buf == NULL && cap > 0u)) {
        return TT_CKPT_BAD_ARG;
    }
    if (s->active < 0) {
        return TT_CKPT_NONE;
    }
    if (!tt_ckpt_read_header(s, s->active, &h)) {
        return TT_CKPT_NONE;
    }
    if (h.length > cap) {
        return TT_CKPT_TOO_BIG;
    }
    base = (uint32_t)s->active * s->slot_bytes + TT_CKPT_HEADER_BYTES;
    if (h.length > 0u && s->io.read(s->io.ctx, base, buf, h.length) != 0) {
        return TT_CKPT_IO;
    }
    if (tt_ckpt_crc32(0u, (const uint8_t *)buf, h.length) != h.payload_crc) {
        return TT_CKPT_NONE;
    }
    if (len != NULL) {
        *len = h.length;
    }
    if (sequence != NULL) {
        *sequence = h.sequence;
    }
    return TT_CKPT_OK;
}

const char *tt_ckpt_status_str(tt_ckpt_status st)
{
    switch (st) {
#define TT_CKPT_STATUS_CASE(name, value, msg)                                                    \
    case TT_CKPT_##name:                                                                         \
        return msg;
        TT_CKPT_STATUSES(TT_CKPT_STATUS_CASE)
#undef TT_CKPT_STATUS_CASE
    default:
        return "unknown status";
    }
}

/* ------------------------------------------------------------------ RAM-backed storage */

static int tt_ckpt_ram_erase(void *ctx, uint32_t offset, uint32_t len)
{
    tt_ckpt_ram *r = (tt_ckpt_ram *)ctx;
    if (offset > r->size || len > r->size - offset) {
        return -1;
    }
    memset(r->mem + offset, 0xFF, len);
    return 0;
}

static int tt_ckpt_ram_write(void *ctx, uint32_t offset, const void *data, uint32_t len)
{
    tt_ckpt_ram *r = (tt_ckpt_ram *)ctx;
    const uint8_t *src = (const uint8_t *)data;
    uint32_t i;
    if (offset > r->size || len > r->size - offset) {
        return -1;
    }
    for (i = 0; i < len; ++i) {
        r->mem[offset + i] &= src[i]; /* programming can only clear bits */
    }
    return 0;
}

static int tt_ckpt_ram_read(void *ctx, uint32_t offset, void *data, uint32_t len)
{
    tt_ckpt_ram *r = (tt_ckpt_ram *)ctx;
    if (offset > r->size || len > r->size - offset) {
        return -1;
    }
    memcpy(data, r->mem + offset, len);
    return 0;
}

void tt_ckpt_ram_io(tt_ckpt_io *io, tt_ckpt_ram *ram, uint8_t *mem, uint32_t size, uint32_t erase_block)
{
    ram->mem = mem;
    ram->size = size;
    io->erase = tt_ckpt_ram_erase;
    io->write = tt_ckpt_ram_write;
    io->read = tt_ckpt_ram_read;
    io->ctx = ram;
    io->region_bytes = size;
    io->erase_block = erase_block == 0u ? 1u : erase_block;
}
