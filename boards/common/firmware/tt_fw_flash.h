/*
 * tt_fw_flash.h — the storage behind the two-slot checkpoint store (tt_ckpt_slots.h) in the
 * firmware: a RAM image with NOR-flash semantics, optionally persisted as a host file.
 *
 * Emulated "flash": erase sets bytes to 0xFF, program ANDs bits in, both in units of
 * TT_FW_FLASH_UNIT bytes (8: the program granularity of common MCU flash). Before each unit
 * the power-cut check runs: when the instruction counter has reached the budget set with
 * tt_fw_flash_set_cut(), the image as it is at that instant is written to the host file and
 * the program exits with TT_FW_EXIT_CUT. Since the image changes only unit by unit and the
 * check precedes every unit, cutting there yields exactly the states a power loss at any
 * instruction could leave: the previous units done, the next one not started (a torn header
 * or payload included). The checks are deterministic (the counter counts instructions under
 * QEMU -icount), so a cut at budget B is reproducible.
 *
 * Persistence: with a host file name the image is read from that file at init (a missing
 * file is an erased chip) and written back by tt_fw_flash_persist(), on a cut, and by the
 * mains after every save and at the end. Without one (NULL) the store lives in RAM only.
 */
#ifndef TT_FW_FLASH_H
#define TT_FW_FLASH_H

#include <stdint.h>

#include "tt_ckpt_slots.h"

#define TT_FW_FLASH_UNIT 8u
#define TT_FW_FLASH_ERASE_BLOCK 256u

/* Bytes of one slot holding a payload of `payload` bytes (header + payload, whole blocks). */
#define TT_FW_SLOT_BYTES(payload)                                                           \
    ((((uint32_t)(payload) + TT_CKPT_HEADER_BYTES + TT_FW_FLASH_ERASE_BLOCK - 1u) /          \
      TT_FW_FLASH_ERASE_BLOCK) *                                                             \
     TT_FW_FLASH_ERASE_BLOCK)

typedef struct {
    uint8_t *mem;
    uint32_t size;
    const char *host_file; /* NULL: RAM only */
    uint64_t cut_start;    /* tt_fw_now() when the budget started */
    uint64_t cut_budget;   /* instructions after cut_start until the power cut; UINT64_MAX: never */
    uint32_t units;        /* erase/program units done since init (statistics) */
} tt_fw_flash;

/* Set up the image (`size` bytes at `mem`) and fill `io` for tt_ckpt_open. Returns 0, or -1
 * when the host file exists but cannot be read or has another size. */
int tt_fw_flash_init(tt_fw_flash *f, tt_ckpt_io *io, uint8_t *mem, uint32_t size, const char *host_file);

/* Power cut once `budget` instructions have retired after the counter read `start`. The
 * check compares the elapsed count, so budgets below 2^32 all take the same instructions on
 * a 32-bit core (an uncut reference run with budget 0xFFFFFFFF times its saves exactly as a
 * cut run experiences them). */
void tt_fw_flash_set_cut(tt_fw_flash *f, uint64_t start, uint64_t budget);

/* The cut check; also called by the mains between training steps. */
void tt_fw_flash_check_cut(tt_fw_flash *f);

/* Write the image to the host file (no-op without one). 0 on success. */
int tt_fw_flash_persist(const tt_fw_flash *f);

#endif /* TT_FW_FLASH_H */
