/*
 * tt_fw_flash.c — emulated NOR flash for the checkpoint store (see tt_fw_flash.h).
 */
#include "tt_fw_flash.h"

#include <string.h>

#include "tt_fw.h"
#include "tt_hostio.h"

void tt_fw_flash_check_cut(tt_fw_flash *f)
{
    char line[64];
    char *p;
    if (f->cut_budget == UINT64_MAX || tt_fw_now() - f->cut_start < f->cut_budget) {
        return;
    }
    /* Power is gone: what the flash holds now is what the next boot finds. */
    if (tt_fw_flash_persist(f) != 0) {
        tt_fw_exit(TT_FW_EXIT_IO);
    }
    p = tt_fw_put_str(line, "tt-fw: power cut after ");
    p = tt_fw_put_dec(p, f->units);
    p = tt_fw_put_str(p, " flash units\n");
    *p = '\0';
    tt_fw_puts(line);
    tt_fw_exit(TT_FW_EXIT_CUT);
}

static int tt_fw_flash_erase(void *ctx, uint32_t offset, uint32_t len)
{
    tt_fw_flash *f = (tt_fw_flash *)ctx;
    uint32_t done = 0u;
    if (offset > f->size || len > f->size - offset) {
        return -1;
    }
    while (done < len) {
        const uint32_t n = len - done < TT_FW_FLASH_UNIT ? len - done : TT_FW_FLASH_UNIT;
        tt_fw_flash_check_cut(f);
        memset(f->mem + offset + done, 0xFF, n);
        f->units++;
        done += n;
    }
    return 0;
}

static int tt_fw_flash_write(void *ctx, uint32_t offset, const void *data, uint32_t len)
{
    tt_fw_flash *f = (tt_fw_flash *)ctx;
    const uint8_t *src = (const uint8_t *)data;
    uint32_t done = 0u;
    if (offset > f->size || len > f->size - offset) {
        return -1;
    }
    while (done < len) {
        const uint32_t n = len - done < TT_FW_FLASH_UNIT ? len - done : TT_FW_FLASH_UNIT;
        uint32_t i;
        tt_fw_flash_check_cut(f);
        for (i = 0; i < n; ++i) {
            f->mem[offset + done + i] &= src[done + i]; /* NOR program: bits only go 1 -> 0 */
        }
        f->units++;
        done += n;
    }
    return 0;
}

static int tt_fw_flash_read(void *ctx, uint32_t offset, void *data, uint32_t len)
{
    const tt_fw_flash *f = (const tt_fw_flash *)ctx;
    if (offset > f->size || len > f->size - offset) {
        return -1;
    }
    memcpy(data, f->mem + offset, len);
    return 0;
}

int tt_fw_flash_init(tt_fw_flash *f, tt_ckpt_io *io, uint8_t *mem, uint32_t size, const char *host_file)
{
    f->mem = mem;
    f->size = size;
    f->host_file = host_file;
    f->cut_start = 0u;
    f->cut_budget = UINT64_MAX;
    f->units = 0u;
    io->erase = tt_fw_flash_erase;
    io->write = tt_fw_flash_write;
    io->read = tt_fw_flash_read;
    io->ctx = f;
    io->region_bytes = size;
    io->erase_block = TT_FW_FLASH_ERASE_BLOCK;
    memset(mem, 0xFF, size);
    if (host_file != NULL) {
        size_t got = 0u;
        int r = tt_host_read_file(host_file, mem, size, &got);
        if (r == -1) {
            memset(mem, 0xFF, size); /* no file yet: a blank chip */
        } else if (r != 0 || got != size) {
            return -1;
        }
    }
    return 0;
}

void tt_fw_flash_set_cut(tt_fw_flash *f, uint64_t start, uint64_t budget)
{
    f->cut_start = start;
    f->cut_budget = budget;
}

int tt_fw_flash_persist(const tt_fw_flash *f)
{
    if (f->host_file == NULL) {
        return 0;
    }
    return tt_host_write_file(f->host_file, f->mem, f->size);
}
