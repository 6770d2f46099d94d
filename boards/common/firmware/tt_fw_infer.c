/*
 * tt_fw_infer.c — inference on the TT_FW_SAMPLES samples baked into flash.
 *
 * Result file "tt_result.bin" (native little endian):
 *   u32 magic "TTFW", u32 format, u32 mode (2), u32 0, u32 samples, u32 model hash,
 *   u32 0, u32 instret available (0/1),
 *   u64 counter overhead (one empty interval), u64 0,
 *   u32 status[samples], u64 tt_infer interval[samples], f32 outputs[samples][TT_OUTPUT_SIZE]
 */
#include <stdint.h>

#include "tt_fw.h"
#include "tt_instret.h"
#include "tt_model.h"

#include "tt_fw_config.h"

static float tt_fw_y[TT_FW_SAMPLES][TT_OUTPUT_SIZE];
static uint32_t tt_fw_status[TT_FW_SAMPLES];
static uint64_t tt_fw_infer_instret[TT_FW_SAMPLES];

uint64_t tt_fw_now(void)
{
    return tt_instret_now();
}

int main(void)
{
    tt_ctx ctx;
    uint64_t t0;
    uint64_t t1;
    uint64_t overhead;
    const uint64_t zero = 0u;
    uint32_t i;
    intptr_t f;
    int err = 0;
    int failed = 0;

    tt_instret_init();
    t0 = tt_fw_now();
    t1 = tt_fw_now();
    overhead = t1 - t0;
    if (tt_init(&ctx) != TT_OK) {
        return TT_FW_EXIT_API;
    }
    for (i = 0; i < TT_FW_SAMPLES; ++i) {
        tt_status s;
        t0 = tt_fw_now();
        s = tt_infer(&ctx, tt_fw_x[i], tt_fw_y[i]);
        t1 = tt_fw_now();
        tt_fw_infer_instret[i] = t1 - t0;
        tt_fw_status[i] = (uint32_t)s;
        failed |= s != TT_OK;
    }
    f = tt_fw_file_open("tt_result.bin", TT_SH_MODE_WB);
    if (f < 0) {
        return TT_FW_EXIT_IO;
    }
    err |= tt_fw_file_u32(f, TT_FW_MAGIC);
    err |= tt_fw_file_u32(f, TT_FW_FORMAT);
    err |= tt_fw_file_u32(f, TT_FW_MODE_INFER);
    err |= tt_fw_file_u32(f, 0u);
    err |= tt_fw_file_u32(f, TT_FW_SAMPLES);
    err |= tt_fw_file_u32(f, TT_MODEL_HASH);
    err |= tt_fw_file_u32(f, 0u);
    err |= tt_fw_file_u32(f, TT_INSTRET_AVAILABLE);
    err |= tt_fw_file_write(f, &overhead, sizeof overhead);
    err |= tt_fw_file_write(f, &zero, sizeof zero);
    err |= tt_fw_file_write(f, tt_fw_status, sizeof tt_fw_status);
    err |= tt_fw_file_write(f, tt_fw_infer_instret, sizeof tt_fw_infer_instret);
    err |= tt_fw_file_write(f, tt_fw_y, sizeof tt_fw_y);
    tt_fw_file_close(f);
    if (err != 0) {
        return TT_FW_EXIT_IO;
    }
    tt_fw_puts("tt-fw infer: done\n");
    return failed ? TT_FW_EXIT_API : TT_FW_EXIT_OK;
}
