/*
 * tt_ckpt_slots.h — power-safe two-slot checkpoint store.
 *
 * The store spans a caller-provided "flash" region split into two equal slots. A save
 * always goes to the slot that does NOT hold the newest valid checkpoint:
 *
 *   1. erase the inactive slot,
 *   2. write the payload (after the header area),
 *   3. write the 24-byte header last: magic, version, sequence = newest + 1, length,
 *      payload CRC-32, header CRC-32.
 *
 * The header is the commit record. A power cut before step 3 completes leaves the slot
 * without a valid header (erased bytes or a torn header fail the magic/CRC checks), so on
 * boot tt_ckpt_open() still finds the previous checkpoint in the other slot; after step 3
 * the new one wins by its higher sequence number (compared modulo 2^32). The active slot is
 * never touched while a save is in progress, so at every instant at least one committed
 * checkpoint (if any was ever committed) survives.
 *
 * Storage goes through callbacks so a board can plug in its flash driver; the contract is
 * NOR-flash-like: erase sets a range to 0xFF, write may only be called on erased bytes.
 * tt_ckpt_ram_io() provides a RAM-backed implementation with those semantics (host tests,
 * QEMU; a firmware can persist the RAM image with tt_host_write_file()).
 *
 * Pure C99, no malloc.
 */
#ifndef TT_CKPT_SLOTS_H
#define TT_CKPT_SLOTS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TT_CKPT_MAGIC 0x4B435454u /* "TTCK" little endian */
#define TT_CKPT_FORMAT 1u
#define TT_CKPT_HEADER_BYTES 24u

/* Status codes: X(name, value, message). */
#define TT_CKPT_STATUSES(X)                                                                 \
    X(OK, 0, "ok")                                                                           \
    X(NONE, 1, "no valid checkpoint")                                                        \
    X(TOO_BIG, 2, "checkpoint larger than a slot or the caller's buffer")                    \
    X(IO, 3, "storage callback failed")                                                      \
    X(BAD_ARG, 4, "invalid argument or region geometry")

typedef enum {
#define TT_CKPT_STATUS_ENUM(name, value, msg) TT_CKPT_##name = value,
    TT_CKPT_STATUSES(TT_CKPT_STATUS_ENUM)
#undef TT_CKPT_STATUS_ENUM
} tt_ckpt_status;

/* Storage callbacks. Offsets are relative to the start of the region. Each returns 0 on
 * success, non-zero on failure. */
typedef struct {
    int (*erase)(void *ctx, uint32_t offset, uint32_t len);
    int (*write)(void *ctx, uint32_t offset, const void *data, uint32_t len);
    int (*read)(void *ctx, uint32_t offset, void *data, uint32_t len);
    void *ctx;
    uint32_t region_bytes; /* whole region: two slots of region_bytes / 2 */
    uint32_t erase_block;  /* slot size must be a multiple of it (1 if no constraint) */
} tt_ckpt_io;

typedef struct {
    tt_ckpt_io io;
    uint32_t slot_bytes;
    int8_t active;        /* slot holding the newest valid checkpoint, -1 if none */
    uint32_t sequence;    /* its sequence number */
    uint32_t payload_len; /* its payload length */
} tt_ckpt_store;

/* Scan both slots and remember the newest valid one. TT_CKPT_OK even when the store is
 * empty (then tt_ckpt_load returns TT_CKPT_NONE). */
tt_ckpt_status tt_ckpt_open(tt_ckpt_store *s, const tt_ckpt_io *io);

/* Largest payload a slot can hold. */
uint32_t tt_ckpt_capacity(const tt_ckpt_store *s);

/* Save into the inactive slot and commit it (see the header comment for the order). */
tt_ckpt_status tt_ckpt_save(tt_ckpt_store *s, const void *data, uint32_t len);

/* Copy the newest valid checkpoint into buf; its length and sequence go to the outputs
 * (either may be NULL). The payload CRC is checked again while reading. */
tt_ckpt_status tt_ckpt_load(tt_ckpt_store *s, void *buf, uint32_t cap, uint32_t *len, uint32_t *sequence);

const char *tt_ckpt_status_str(tt_ckpt_status st);

/* RAM-backed storage with NOR-flash semantics (erase -> 0xFF, write ANDs bits in). */
typedef struct {
    uint8_t *mem;
    uint32_t size;
} tt_ckpt_ram;

void tt_ckpt_ram_io(tt_ckpt_io *io, tt_ckpt_ram *ram, uint8_t *mem, uint32_t size, uint32_t erase_block);

#ifdef __cplusplus
}
#endif

#endif /* TT_CKPT_SLOTS_H */
