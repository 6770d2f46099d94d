/*
 * tt_fw_checkpoint.c — training with power-safe checkpoints, and a simulated power cut.
 *
 * Boot: read the emulated flash from host file "tt_flash.img" (blank when missing), open the
 * two-slot store, and if it holds a valid checkpoint restore it with tt_checkpoint_load (and
 * copy the restored blob to host file "tt_restored.bin"). Then train baked samples
 * ctx.step * TT_BATCH .. TT_FW_STEPS - 1 (sample i is baked sample i % TT_FW_SAMPLES) and
 * after every TT_FW_CKPT_EVERY-th optimizer step save a checkpoint (tt_checkpoint_save ->
 * tt_ckpt_save). At the end write the flash image back and the result file.
 *
 * Power cut: when host file "tt_cut.bin" holds a u64 budget B, the run stops as if power
 * failed once B instructions have retired since main() started (checked before every flash
 * unit and every training step, see tt_fw_flash.h): the flash image at that instant goes to
 * "tt_flash.img" and the exit status is TT_FW_EXIT_CUT. Rebooting = running the same ELF
 * again on that image.
 *
 * Result file "tt_result.bin" (native little endian):
 *   u32 magic "TTFW", u32 format, u32 mode (4), u32 steps, u32 samples, u32 model hash,
 *   u32 restored (0/1), u32 restored store sequence, u32 restored optimizer step,
 *   u32 first sample, u32 end sample, u32 checkpoint every, u32 saves S,
 *   u64 counter overhead, u64 instructions of the whole run (from main),
 *   u32 loss bits[end - first], u32 status[end - first],
 *   S times: u32 optimizer step, u32 store sequence, u32 tt_ckpt status, u32 0,
 *            u64 counter at save start, u64 at save end (both relative to main's start),
 *   u32 n, u8 final checkpoint blob[n] (tt_checkpoint_save at the end).
 */
#include <stdint.h>
#include <string.h>

#include "tt_ckpt_slots.h"
#include "tt_fw.h"
#include "tt_fw_flash.h"
#include "tt_hostio.h"
#include "tt_instret.h"
#include "tt_model.h"

#include "tt_fw_config.h"

#define TT_FW_MAX_SAVES (TT_FW_STEPS / TT_FW_CKPT_EVERY + 1)

typedef struct {
    uint32_t step;
    uint32_t sequence;
    uint32_t status;
    uint32_t pad;
    uint64_t start;
    uint64_t end;
} tt_fw_save_record;

static uint8_t tt_fw_flash_mem[2u * TT_FW_SLOT_BYTES(TT_CHECKPOINT_BYTES)];
static uint8_t tt_fw_ckbuf[TT_CHECKPOINT_BYTES];
static uint32_t tt_fw_loss_bits[TT_FW_STEPS];
static uint32_t tt_fw_status[TT_FW_STEPS];
static tt_fw_save_record tt_fw_saves[TT_FW_MAX_SAVES];

uint64_t tt_fw_now(void)
{
    return tt_instret_now();
}

int main(void)
{
    tt_ctx ctx;
    tt_fw_flash flash;
    tt_ckpt_io io;
    tt_ckpt_store store;
    uint64_t t0;
    uint64_t overhead;
    uint64_t budget = 0u;
    uint64_t total;
    size_t got = 0u;
    size_t written = 0u;
    uint32_t restored = 0u;
    uint32_t restored_seq = 0u;
    uint32_t restored_step = 0u;
    uint32_t first;
    uint32_t i;
    uint32_t nsaves = 0u;
    uint32_t len = 0u;
    intptr_t f;
    int err = 0;

    tt_instret_init();
    t0 = tt_fw_now();
    overhead = tt_fw_now() - t0;
    if (tt_fw_flash_init(&flash, &io, tt_fw_flash_mem, sizeof tt_fw_flash_mem, "tt_flash.img") != 0) {
        tt_fw_puts("tt-fw checkpoint: tt_flash.img has the wrong size\n");
        return TT_FW_EXIT_IO;
    }
    if (tt_host_read_file("tt_cut.bin", &budget, sizeof budget, &got) == 0 && got == sizeof budget) {
        tt_fw_flash_set_cut(&flash, t0, budget);
    }
    if (tt_init(&ctx) != TT_OK || tt_ckpt_open(&store, &io) != TT_CKPT_OK) {
        return TT_FW_EXIT_API;
    }
    if (tt_ckpt_load(&store, tt_fw_ckbuf, sizeof tt_fw_ckbuf, &len, &restored_seq) == TT_CKPT_OK) {
        /* The store checked its CRC; tt_checkpoint_load checks model hash, size and CRC again. */
        if (tt_checkpoint_load(&ctx, tt_fw_ckbuf, len) != TT_OK) {
            tt_fw_puts("tt-fw checkpoint: the stored checkpoint belongs to another model\n");
            return TT_FW_EXIT_API;
        }
        if (tt_host_write_file("tt_restored.bin", tt_fw_ckbuf, len) != 0) {
            return TT_FW_EXIT_IO;
        }
        restored = 1u;
        restored_step = ctx.step;
    }
    first = ctx.step * (uint32_t)TT_BATCH;
    for (i = first; i < TT_FW_STEPS; ++i) {
        const uint32_t k = i % TT_FW_SAMPLES;
        float loss = 0.0f;
        tt_status s;
        tt_fw_flash_check_cut(&flash);
        s = tt_train_step(&ctx, tt_fw_x[k], TT_FW_LABEL(k), &loss);
        tt_fw_loss_bits[i - first] = tt_fw_float_bits(loss);
        tt_fw_status[i - first] = (uint32_t)s;
        if (s != TT_OK && s != TT_ERR_NAN) {
            return TT_FW_EXIT_API;
        }
        if (ctx.samples == 0u && ctx.step % TT_FW_CKPT_EVERY == 0u && nsaves < TT_FW_MAX_SAVES) {
            tt_fw_save_record *r = &tt_fw_saves[nsaves++];
            r->step = ctx.step;
            r->start = tt_fw_now() - t0;
            if (tt_checkpoint_save(&ctx, tt_fw_ckbuf, sizeof tt_fw_ckbuf, &written) != TT_OK) {
                return TT_FW_EXIT_API;
            }
            r->status = (uint32_t)tt_ckpt_save(&store, tt_fw_ckbuf, (uint32_t)written);
            r->sequence = store.sequence;
            r->pad = 0u;
            r->end = tt_fw_now() - t0;
        }
    }
    total = tt_fw_now() - t0;
    if (tt_checkpoint_save(&ctx, tt_fw_ckbuf, sizeof tt_fw_ckbuf, &written) != TT_OK) {
        return TT_FW_EXIT_API;
    }
    if (tt_fw_flash_persist(&flash) != 0) {
        return TT_FW_EXIT_IO;
    }
    f = tt_fw_file_open("tt_result.bin", TT_SH_MODE_WB);
    if (f < 0) {
        return TT_FW_EXIT_IO;
    }
    err |= tt_fw_file_u32(f, TT_FW_MAGIC);
    err |= tt_fw_file_u32(f, TT_FW_FORMAT);
    err |= tt_fw_file_u32(f, TT_FW_MODE_CHECKPOINT);
    err |= tt_fw_file_u32(f, TT_FW_STEPS);
    err |= tt_fw_file_u32(f, TT_FW_SAMPLES);
    err |= tt_fw_file_u32(f, TT_MODEL_HASH);
    err |= tt_fw_file_u32(f, restored);
    err |= tt_fw_file_u32(f, restored_seq);
    err |= tt_fw_file_u32(f, restored_step);
    err |= tt_fw_file_u32(f, first);
    err |= tt_fw_file_u32(f, TT_FW_STEPS > first ? TT_FW_STEPS : first);
    err |= tt_fw_file_u32(f, TT_FW_CKPT_EVERY);
    err |= tt_fw_file_u32(f, nsaves);
    err |= tt_fw_file_write(f, &overhead, sizeof overhead);
    err |= tt_fw_file_write(f, &total, sizeof total);
    if (TT_FW_STEPS > first) {
        err |= tt_fw_file_write(f, tt_fw_loss_bits, (TT_FW_STEPS - first) * sizeof(uint32_t));
        err |= tt_fw_file_write(f, tt_fw_status, (TT_FW_STEPS - first) * sizeof(uint32_t));
    }
    err |= tt_fw_file_write(f, tt_fw_saves, nsaves * sizeof(tt_fw_save_record));
    err |= tt_fw_file_u32(f, (uint32_t)written);
    err |= tt_fw_file_write(f, tt_fw_ckbuf, written);
    tt_fw_file_close(f);
    return err != 0 ? TT_FW_EXIT_IO : TT_FW_EXIT_OK;
}
