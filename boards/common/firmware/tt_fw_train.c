/*
 * tt_fw_train.c — train TT_FW_STEPS samples baked into flash and report everything the host
 * needs to check the run bit for bit (tinytrain.device.run_on_board).
 *
 * Sample i of the run is baked sample i % TT_FW_SAMPLES (tt_fw_config.h, generated). Around
 * each tt_train_step and one tt_infer (sample 0, after training) the instruction counter is
 * read; the cost of a back-to-back pair of readings is measured once and reported, so the
 * host can subtract it.
 *
 * Result file "tt_result.bin" (native little endian):
 *   u32 magic "TTFW", u32 format, u32 mode (1), u32 steps, u32 samples, u32 model hash,
 *   u32 trainable tensors T, u32 instret available (0/1),
 *   u64 counter overhead (one empty interval), u64 tt_infer interval,
 *   u32 loss bits[steps], u32 status[steps], u64 tt_train_step interval[steps],
 *   f32 tt_infer output[TT_OUTPUT_SIZE],
 *   T times: u32 parameter index, u32 size, f32 values[size]   (trainable tensors only)
 * Exit status: 0, or TT_FW_EXIT_API when a call failed with anything but TT_ERR_NAN (a NaN
 * step is reported in status[] and training goes on, as the API specifies).
 */
#include <stdint.h>
#include <string.h>

#include "tt_fw.h"
#include "tt_instret.h"
#include "tt_model.h"

#include "tt_fw_config.h"

static uint32_t tt_fw_loss_bits[TT_FW_STEPS];
static uint32_t tt_fw_status[TT_FW_STEPS];
static uint64_t tt_fw_steps_instret[TT_FW_STEPS];
static float tt_fw_y[TT_OUTPUT_SIZE];
static float tt_fw_pbuf[TT_FW_MAX_TRAINABLE_FLOATS];

uint64_t tt_fw_now(void)
{
    return tt_instret_now();
}

static int tt_fw_write_result(uint64_t overhead, uint64_t infer_instret)
{
    intptr_t f = tt_fw_file_open("tt_result.bin", TT_SH_MODE_WB);
    int err = 0;
    uint32_t i;
    if (f < 0) {
        return -1;
    }
    err |= tt_fw_file_u32(f, TT_FW_MAGIC);
    err |= tt_fw_file_u32(f, TT_FW_FORMAT);
    err |= tt_fw_file_u32(f, TT_FW_MODE_TRAIN);
    err |= tt_fw_file_u32(f, TT_FW_STEPS);
    err |= tt_fw_file_u32(f, TT_FW_SAMPLES);
    err |= tt_fw_file_u32(f, TT_MODEL_HASH);
    err |= tt_fw_file_u32(f, TT_FW_NUM_TRAINABLE);
    err |= tt_fw_file_u32(f, TT_INSTRET_AVAILABLE);
    err |= tt_fw_file_write(f, &overhead, sizeof overhead);
    err |= tt_fw_file_write(f, &infer_instret, sizeof infer_instret);
    err |= tt_fw_file_write(f, tt_fw_loss_bits, sizeof tt_fw_loss_bits);
    err |= tt_fw_file_write(f, tt_fw_status, sizeof tt_fw_status);
    err |= tt_fw_file_write(f, tt_fw_steps_instret, sizeof tt_fw_steps_instret);
    err |= tt_fw_file_write(f, tt_fw_y, sizeof tt_fw_y);
    for (i = 0; i < TT_FW_NUM_TRAINABLE && err == 0; ++i) {
        const size_t index = tt_fw_trainable[i];
        const size_t n = tt_param_size(index);
        if (n > TT_FW_MAX_TRAINABLE_FLOATS || tt_param_read(index, tt_fw_pbuf, n) != TT_OK) {
            err = -1;
            break;
        }
        err |= tt_fw_file_u32(f, (uint32_t)index);
        err |= tt_fw_file_u32(f, (uint32_t)n);
        err |= tt_fw_file_write(f, tt_fw_pbuf, n * sizeof(float));
    }
    tt_fw_file_close(f);
    return err;
}

int main(void)
{
    tt_ctx ctx;
    uint64_t t0;
    uint64_t t1;
    uint64_t overhead;
    uint64_t infer_instret;
    uint32_t i;
    int failed = 0;
    char line[96];
    char *p;
    tt_status s;

    tt_instret_init();
    t0 = tt_fw_now();
    t1 = tt_fw_now();
    overhead = t1 - t0;
    if (tt_init(&ctx) != TT_OK) {
        tt_fw_puts("tt-fw train: tt_init failed\n");
        return TT_FW_EXIT_API;
    }
    for (i = 0; i < TT_FW_STEPS; ++i) {
        const uint32_t k = i % TT_FW_SAMPLES;
        float loss = 0.0f;
        t0 = tt_fw_now();
        s = tt_train_step(&ctx, tt_fw_x[k], TT_FW_LABEL(k), &loss);
        t1 = tt_fw_now();
        tt_fw_steps_instret[i] = t1 - t0;
        tt_fw_loss_bits[i] = tt_fw_float_bits(loss);
        tt_fw_status[i] = (uint32_t)s;
        if (s != TT_OK && s != TT_ERR_NAN) {
            failed = 1;
            break;
        }
    }
    t0 = tt_fw_now();
    s = tt_infer(&ctx, tt_fw_x[0], tt_fw_y);
    t1 = tt_fw_now();
    infer_instret = t1 - t0;
    if (s != TT_OK) {
        failed = 1;
    }
    if (tt_fw_write_result(overhead, infer_instret) != 0) {
        tt_fw_puts("tt-fw train: cannot write tt_result.bin\n");
        return TT_FW_EXIT_IO;
    }
    p = tt_fw_put_str(line, "tt-fw train: ");
    p = tt_fw_put_dec(p, i);
    p = tt_fw_put_str(p, " steps, step 0 took ");
    p = tt_fw_put_dec(p, tt_fw_steps_instret[0]);
    p = tt_fw_put_str(p, " " TT_INSTRET_UNIT "\n");
    *p = '\0';
    tt_fw_puts(line);
    return failed ? TT_FW_EXIT_API : TT_FW_EXIT_OK;
}
