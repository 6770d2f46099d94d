/*
 * bitexact_main.c - runs a fixed set of kernels on fixed pseudo-random inputs and prints one
 * CRC-32 per result ("name crc"). Built for the host, Cortex-M4F and RV32IMAFC by
 * tests/runtime_c/test_rt_targets.py, which requires the three outputs to be identical:
 * the kernels are bit-exact across targets (fmaf, fixed summation order, tt_expf/tt_logf).
 */
#include <stdio.h>

#include "tt_kernels.h"

#define N 4096
static float xa[N], xb[N], xc[N], out[N], out2[N];
static int32_t labels[4] = {3, 0, 9, 5};
static uint32_t lcg = 12345u;

static float rnd(void)
{
    lcg = lcg * 1664525u + 1013904223u;
    return (float)((int32_t)(lcg >> 8) - (1 << 23)) / (float)(1 << 21); /* [-4, 4) */
}

static int failures;

static void put(const char *name, tt_status st, const float *v, int n)
{
    if (st != TT_OK) {
        printf("%s status %d\n", name, (int)st);
        ++failures;
        return;
    }
    printf("%s %08lx\n", name, (unsigned long)tt_crc32(v, (size_t)n * sizeof(float), 0u));
}

static void conv(const char *name, int cin, int cout, int g, int h, int w, int k, int s, int p)
{
    tt_conv2d_params P;
    char nm[48];
    int nx, ny, nw;
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
    nx = cin * h * w;
    ny = cout * P.out_h * P.out_w;
    nw = cout * (cin / g) * k * k;
    snprintf(nm, sizeof nm, "%s.fwd", name);
    put(nm, tt_conv2d_fwd_f32(&P, xa, xb, xc, out), out, ny);
    snprintf(nm, sizeof nm, "%s.bwd_x", name);
    put(nm, tt_conv2d_bwd_x_f32(&P, xc, xb, out2, 0), out2, nx);
    snprintf(nm, sizeof nm, "%s.bwd_w", name);
    put(nm, tt_conv2d_bwd_w_f32(&P, xc, xa, out2, 0), out2, nw);
    snprintf(nm, sizeof nm, "%s.bwd_w_acc", name);
    put(nm, tt_conv2d_bwd_w_f32(&P, xc, xa, out2, 1), out2, nw);
}

int main(void)
{
    float loss = 0.0f;
    int i;
    for (i = 0; i < N; ++i) {
        xa[i] = rnd();
        xb[i] = rnd() * 0.25f;
        xc[i] = rnd();
    }
    conv("conv3x3s1", 5, 6, 1, 9, 11, 3, 1, 1);
    conv("conv3x3s2", 4, 8, 1, 10, 9, 3, 2, 1);
    conv("conv5x5", 3, 4, 1, 8, 8, 5, 1, 2);
    conv("dw3x3s1", 6, 6, 6, 9, 10, 3, 1, 1);
    conv("dw3x3s2", 6, 6, 6, 9, 10, 3, 2, 1);
    conv("pw", 9, 7, 1, 6, 7, 1, 1, 0);
    conv("groups2", 6, 4, 2, 7, 7, 3, 1, 1);
    put("gemm.fwd", tt_gemm_fwd_f32(xa, xb, xc, out, 2, 37, 19), out, 2 * 19);
    put("gemm.bwd_x", tt_gemm_bwd_x_f32(xc, xb, out, 2, 37, 19, 0), out, 2 * 37);
    put("gemm.bwd_w", tt_gemm_bwd_w_f32(xc, xa, out, 2, 37, 19, 0), out, 19 * 37);
    put("sigmoid", tt_sigmoid_fwd_f32(xa, out, 1000), out, 1000);
    put("tanh", tt_tanh_fwd_f32(xa, out, 1000), out, 1000);
    put("softmax", tt_softmax_fwd_f32(xa, out, 10, 100), out, 1000);
    put("softmax.bwd", tt_softmax_bwd_x_f32(xc, out, out2, 10, 100, 0), out2, 1000);
    put("xent.grad", tt_softmax_xent_f32(xa, labels, 4, 10, 0.25f, &loss, out), out, 40);
    put("xent.loss", TT_OK, &loss, 1);
    put("mse.grad", tt_mse_f32(xa, xb, 100, 0.5f, &loss, out), out, 100);
    put("mse.loss", TT_OK, &loss, 1);
    for (i = 0; i < 300; ++i) { /* w, and Adam's m and v starting at 0 */
        out[i] = xa[i];
        out2[i] = 0.0f;
        out2[300 + i] = 0.0f;
    }
    for (i = 1; i <= 3; ++i) {
        float g[300];
        int j;
        for (j = 0; j < 300; ++j) {
            g[j] = xc[j + 300 * i];
        }
        put("adam.w", tt_adam_upd_f32(out, g, out2, out2 + 300, 300, 1e-3f, 0.9f, 0.999f, 1e-8f,
                                      0.01f, i), out, 300);
    }
    for (i = 0; i < 64; ++i) {
        out[i] = tt_expf(xa[i] * 20.0f);
        out[64 + i] = tt_logf(xb[i] * xb[i] + 1e-30f);
        out[128 + i] = tt_expm1f(xa[i] * 1e-3f);
        out[192 + i] = tt_log1pf(xb[i] * 1e-3f);
    }
    put("elementary", TT_OK, out, 256);
    return failures;
}
