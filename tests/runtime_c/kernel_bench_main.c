/*
 * kernel_bench_main.c - MACs per retired instruction of the FP32 kernels on an emulated core.
 * Run by tests/runtime_c/test_rt_bench.py (TT_RT_BENCH=1), which compares the RV32IMAFC
 * numbers with 1.5x the best PULP-TrainLib variants (DESIGN.md section 8). Prints one line per
 * measurement: "<layer> <pass> <macs> <instructions>".
 */
#include <stdint.h>
#include <stdio.h>

#include "tt_instret.h"
#include "tt_kernels.h"

#define NBUF 40000
static float A[NBUF], B[NBUF], C[NBUF], D[NBUF];
static uint32_t seed = 1u;

static float rnd(void)
{
    seed = seed * 1664525u + 1013904223u;
    return (float)((int32_t)(seed >> 9) - (1 << 22)) / (float)(1 << 22);
}

static void report(const char *layer, const char *pass, long macs, uint64_t t0, uint64_t t1,
                   tt_status st)
{
    if (st != TT_OK) {
        printf("%s %s status %d\n", layer, pass, (int)st);
        return;
    }
    printf("%s %s %ld %lu\n", layer, pass, macs, (unsigned long)(t1 - t0));
}

#define MEASURE(layer, pass, macs, call)                                                        \
    do {                                                                                        \
        const uint64_t t0_ = tt_instret_now();                                                  \
        const tt_status st_ = (call);                                                           \
        const uint64_t t1_ = tt_instret_now();                                                  \
        report(layer, pass, macs, t0_, t1_, st_);                                               \
    } while (0)

static void conv(const char *layer, int cin, int cout, int g, int h, int w, int k, int s, int p)
{
    tt_conv2d_params P;
    long macs;
    P.in_c = cin;
    P.in_h = h;
    P.in_w = w;
    P.out_c = cout;
    P.k_h = k;
    P.k_w = k;
    P.stride_h = s;
    P.stride_w = s;
    P.pad_top = p;
    P.pad_left = p;
    P.groups = g;
    P.out_h = (h + 2 * p - k) / s + 1;
    P.out_w = (w + 2 * p - k) / s + 1;
    macs = (long)cout * P.out_h * P.out_w * (cin / g) * k * k;
    MEASURE(layer, "fwd", macs, tt_conv2d_fwd_f32(&P, A, B, C, D));
    MEASURE(layer, "bwd_x", macs, tt_conv2d_bwd_x_f32(&P, D, B, A, 0));
    MEASURE(layer, "bwd_w", macs, tt_conv2d_bwd_w_f32(&P, D, A, B, 0));
    MEASURE(layer, "bwd_w_acc", macs, tt_conv2d_bwd_w_f32(&P, D, A, B, 1));
}

int main(void)
{
    int i;
    tt_instret_init();
    for (i = 0; i < NBUF; ++i) {
        A[i] = rnd();
        B[i] = rnd();
        C[i] = rnd();
        D[i] = rnd();
    }
    MEASURE("linear_256x64", "fwd", 256L * 64, tt_gemm_fwd_f32(A, B, C, D, 1, 256, 64));
    MEASURE("linear_256x64", "bwd_x", 256L * 64, tt_gemm_bwd_x_f32(D, B, A, 1, 256, 64, 0));
    MEASURE("linear_256x64", "bwd_w", 256L * 64, tt_gemm_bwd_w_f32(D, A, B, 1, 256, 64, 0));
    MEASURE("linear_256x64", "bwd_w_acc", 256L * 64, tt_gemm_bwd_w_f32(D, A, B, 1, 256, 64, 1));
    conv("conv3x3_16to16_16x16_p1", 16, 16, 1, 16, 16, 3, 1, 1);
    conv("conv3x3_8to8_32x32_p1", 8, 8, 1, 32, 32, 3, 1, 1);
    conv("conv3x3s2_16to32_16x16_p1", 16, 32, 1, 16, 16, 3, 2, 1);
    conv("dw3x3_32_16x16_p1", 32, 32, 32, 16, 16, 3, 1, 1);
    conv("dw3x3s2_32_16x16_p1", 32, 32, 32, 16, 16, 3, 2, 1);
    conv("pw_32to32_16x16", 32, 32, 1, 16, 16, 1, 1, 0);
    conv("conv5x5_8to8_16x16_p2", 8, 8, 1, 16, 16, 5, 1, 2);
    return 0;
}
