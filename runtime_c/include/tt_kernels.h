/*
 * tt_kernels.h - portable C99 FP32 training kernels of the tinytrain runtime.
 *
 * Conventions
 * -----------
 * - Batch is always 1: the generated code loops over the samples of a batch and accumulates
 *   gradients. Tensors are contiguous row-major float arrays; an image is CHW.
 * - Every kernel returns a tt_status; TT_ERR_ARG for a NULL pointer or an out-of-range scalar,
 *   TT_ERR_SHAPE for inconsistent dimensions. Nothing is written when an argument check fails.
 * - `int accumulate`: 0 overwrites the output, 1 adds into it (residual joins, weight gradients
 *   accumulated over a batch); any other value is TT_ERR_ARG.
 * - No kernel allocates, recurses or keeps state; none needs scratch memory.
 * - Pointers marked TT_RESTRICT must not overlap any other argument. Where a kernel may run in
 *   place, its comment says so, and its output is not TT_RESTRICT.
 *
 * Numerics: the summation order is part of the contract
 * ------------------------------------------------------
 * Every reduction is ONE sequential chain per output element, in the order documented per
 * kernel: acc = init; acc = fmaf(a_i, b_i, acc) for each term (plain `acc + t` where there is
 * no product). init is the bias, 0, or (accumulate = 1) the output's current value. fmaf is
 * correctly rounded everywhere and the code is compiled with -ffp-contract=off, so a result
 * does not depend on the compiler, the ISA or how a kernel is blocked: host, Cortex-M4F and
 * RV32F builds produce the same bits, and an optimised kernel (runtime_c/arch/...) must keep
 * the same chains. Kernels get their instruction-level parallelism by computing several
 * independent output chains at once, never by splitting one sum. Padding cells of a
 * convolution are skipped (adding fmaf(0, w, acc) would give the same bits for finite w).
 * The sign of a zero result is not part of the contract (fmaf(a, b, +0) vs a*b).
 * Transcendentals use the tt_*f functions below (not libm), which are built from +,-,*,/,
 * fmaf and bit operations only, so they are bit-identical across targets as well.
 */
#ifndef TT_KERNELS_H
#define TT_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <math.h>

#include "tt_status.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__cplusplus)
#  if defined(__GNUC__) || defined(__clang__) || defined(_MSC_VER)
#    define TT_RESTRICT __restrict
#  else
#    define TT_RESTRICT
#  endif
#else
#  define TT_RESTRICT restrict
#endif

/* Positive infinity as a float constant (the code generator emits it for unbounded Clip). */
/* Fused multiply-add, correctly rounded on every target. Cores with an FPU (Cortex-M4F/M7,
 * RV32F) and hosted C libraries compile fmaf to one instruction or a correct call; on cores
 * without one, picolibc's fmaf rounds twice (multiply, then add), which would break
 * host == device bit-exactness, so those targets use tt_fmaf_soft (tt_math_f32.c). */
#if (defined(__riscv) && !defined(__riscv_flen)) || (defined(__arm__) && !defined(__ARM_FP))
#  define TT_FMAF(a, b, c) tt_fmaf_soft((a), (b), (c))
#else
#  define TT_FMAF(a, b, c) fmaf((a), (b), (c))
#endif
float tt_fmaf_soft(float a, float b, float c);

#ifndef TT_INF
#  define TT_INF INFINITY
#endif

/* ------------------------------------------------------------------ parameter structs */

/* Conv1D is Conv2D with in_h = out_h = k_h = 1. pad_bottom / pad_right are implied by
 * out_h / out_w (they may even be negative: trailing input rows the windows never reach).
 * Dilation is always 1. Weights are [out_c][in_c/groups][k_h][k_w]. */
typedef struct {
    int in_c, in_h, in_w, out_c, out_h, out_w, k_h, k_w, stride_h, stride_w, pad_top, pad_left,
        groups;
} tt_conv2d_params;

/* Padding implied by out_h/out_w as for convolution. Every window must overlap the input:
 * pad_top < k_h, pad_left < k_w and the last window must start inside the input. */
typedef struct {
    int c, in_h, in_w, out_h, out_w, k_h, k_w, stride_h, stride_w, pad_top, pad_left;
    int count_include_pad;
} tt_pool2d_params;

/* Broadcasting elementwise ops: shapes are 4-D (left-padded with 1), the output is contiguous
 * with that shape, operand strides are in ELEMENTS and 0 on broadcast dimensions. */
typedef struct {
    int shape[4];
    int a_stride[4];
    int b_stride[4];
} tt_bcast4;

/* ------------------------------------------------------------------ GEMM and bias
 * y[n][m] = x[n][k] * w[m][k]^T + b[m]
 * fwd:   y[i][j]   chain over kk = 0..k-1 of x[i][kk]*w[j][kk], init b[j] (0 if b is NULL).
 * bwd_x: gx[i][kk] chain over j = 0..m-1 of gy[i][j]*w[j][kk].
 * bwd_w: gw[j][kk] chain over i = 0..n-1 of gy[i][j]*x[i][kk].
 * bias:  gb[ch]    chain (plain adds) over o = 0..outer-1, then t = 0..inner-1 of
 *                  gy[o][ch][t]. Linear bias: (n, m, 1); conv bias: (1, out_c, out_h*out_w). */
tt_status tt_gemm_fwd_f32(const float *x, const float *w, const float *b, float *TT_RESTRICT y,
                          int n, int k, int m);
tt_status tt_gemm_bwd_x_f32(const float *gy, const float *w, float *TT_RESTRICT gx, int n, int k,
                            int m, int accumulate);
tt_status tt_gemm_bwd_w_f32(const float *gy, const float *x, float *TT_RESTRICT gw, int n, int k,
                            int m, int accumulate);
tt_status tt_bias_bwd_f32(const float *gy, float *TT_RESTRICT gb, int outer, int c, int inner,
                          int accumulate);

/* ------------------------------------------------------------------ convolution
 * ic = g*(in_c/groups) + icg for output channel oc in group g; ih = oh*stride_h - pad_top + kh,
 * iw = ow*stride_w - pad_left + kw; taps outside the input are skipped.
 * fwd:   y[oc][oh][ow]     chain over (icg, kh, kw) in weight memory order, init b[oc] or 0.
 * bwd_x: gx[ic][ih][iw]    chain over (oc of the group, kh, kw), each ascending (oc outermost).
 * bwd_w: gw[oc][icg][kh][kw] chain over (oh, ow) ascending (row-major output order).
 * Fast paths (same chains): pointwise (1x1, stride 1, no padding), kernel width 3, depthwise
 * 3x3; the general path is blocked 4 channels x 4 columns. */
tt_status tt_conv2d_fwd_f32(const tt_conv2d_params *p, const float *x, const float *w,
                            const float *b, float *TT_RESTRICT y);
tt_status tt_conv2d_bwd_x_f32(const tt_conv2d_params *p, const float *gy, const float *w,
                              float *TT_RESTRICT gx, int accumulate);
tt_status tt_conv2d_bwd_w_f32(const tt_conv2d_params *p, const float *gy, const float *x,
                              float *TT_RESTRICT gw, int accumulate);

/* ------------------------------------------------------------------ pointwise activations
 * All may run in place: y may equal x, gx may equal gy (exactly the same pointer, or no
 * overlap at all). bwd with accumulate = 1 adds the local gradient into gx (fmaf where it is a
 * product). */
tt_status tt_relu_fwd_f32(const float *x, float *y, int n);
/* gx = gy where y > 0, else 0 */
tt_status tt_relu_bwd_x_f32(const float *gy, const float *y, float *gx, int n, int accumulate);
/* y = min(max(x, lo), hi); NaN stays NaN. */
tt_status tt_clip_fwd_f32(const float *x, float *y, int n, float lo, float hi);
/* gradient passes where lo < y < hi (strict, as torch hardtanh / ReLU6) */
tt_status tt_clip_bwd_x_f32(const float *gy, const float *y, float *gx, int n, float lo, float hi,
                            int accumulate);
/* y = x < 0 ? alpha*x : x (alpha may be negative or > 1) */
tt_status tt_leaky_relu_fwd_f32(const float *x, float *y, int n, float alpha);
/* slope alpha where x < 0, 1 where x >= 0 (reads the INPUT x) */
tt_status tt_leaky_relu_bwd_x_f32(const float *gy, const float *x, float *gx, int n, float alpha,
                                  int accumulate);
/* y = 1/(1+e^-x), computed as 1/(1+e) or e/(1+e) with e = tt_expf(-|x|) */
tt_status tt_sigmoid_fwd_f32(const float *x, float *y, int n);
/* gx = gy * ((1 - y) * y) */
tt_status tt_sigmoid_bwd_x_f32(const float *gy, const float *y, float *gx, int n, int accumulate);
/* y = -sign(x) * u / (u + 2) with u = tt_expm1f(-2|x|) */
tt_status tt_tanh_fwd_f32(const float *x, float *y, int n);
/* gx = gy * fmaf(-y, y, 1) */
tt_status tt_tanh_bwd_x_f32(const float *gy, const float *y, float *gx, int n, int accumulate);

/* softmax over the last dimension of [rows][cols]: e_j = tt_expf(x_j - max), s = chain of
 * plain adds over j ascending, y_j = e_j / s. y may equal x. */
tt_status tt_softmax_fwd_f32(const float *x, float *y, int rows, int cols);
/* gx_j = y_j * (gy_j - d), d = fmaf chain over j ascending of gy_j*y_j. gx may equal gy. */
tt_status tt_softmax_bwd_x_f32(const float *gy, const float *y, float *gx, int rows, int cols,
                               int accumulate);

/* ------------------------------------------------------------------ pooling (CHW)
 * Windows are visited in row-major order (kh, kw ascending); padding cells are skipped.
 * max: padding acts as -inf; the FIRST maximum wins (strict >); a NaN in the window makes the
 *      output NaN (as torch) and the first NaN takes the gradient.
 * avg: plain-add chain over the valid cells, then one division by
 *      k_h*k_w (count_include_pad = 1; windows never extend past the implied padding) or
 *      the number of valid cells (count_include_pad = 0).
 * bwd: gx is zeroed (accumulate = 0), then every output, in row-major (c, oh, ow) order, adds
 *      its gradient into its input cell(s): max recomputes the argmax from x (no index
 *      buffer); avg adds gy/divisor to each valid cell. */
/* TT_ERR_ARG for NULL, TT_ERR_SHAPE unless every window holds at least one input cell. */
tt_status tt_pool2d_check(const tt_pool2d_params *p);
tt_status tt_maxpool2d_fwd_f32(const tt_pool2d_params *p, const float *x, float *TT_RESTRICT y);
tt_status tt_maxpool2d_bwd_x_f32(const tt_pool2d_params *p, const float *gy, const float *x,
                                 float *TT_RESTRICT gx, int accumulate);
tt_status tt_avgpool2d_fwd_f32(const tt_pool2d_params *p, const float *x, float *TT_RESTRICT y);
tt_status tt_avgpool2d_bwd_x_f32(const tt_pool2d_params *p, const float *gy,
                                 float *TT_RESTRICT gx, int accumulate);
/* y[ch] = (plain-add chain over the hw values) / hw; bwd: gx[ch][t] (+)= gy[ch] / hw */
tt_status tt_global_avgpool_fwd_f32(const float *x, float *TT_RESTRICT y, int c, int hw);
tt_status tt_global_avgpool_bwd_x_f32(const float *gy, float *TT_RESTRICT gx, int c, int hw,
                                      int accumulate);

/* ------------------------------------------------------------------ broadcasting add / mul
 * fwd: y may equal a (or b) when that operand is not broadcast (same layout as y).
 * bwd: g[e] for each element e of the operand `which` (0: a, 1: b), in the operand's strides:
 *      chain over the output positions that read e, in ascending row-major order of y;
 *      add: plain adds of gy; mul: fmaf(gy, other, acc) where other is the other operand.
 *      g may equal gy when the operand is not broadcast; otherwise no overlap. */
tt_status tt_add_fwd_f32(const tt_bcast4 *p, const float *a, const float *b, float *y);
tt_status tt_add_bwd_f32(const tt_bcast4 *p, const float *gy, float *ga, int which, int accumulate);
tt_status tt_mul_fwd_f32(const tt_bcast4 *p, const float *a, const float *b, float *y);
tt_status tt_mul_bwd_f32(const tt_bcast4 *p, const float *gy, const float *other, float *g,
                         int which, int accumulate);
/* y[i] = a * x[i] (y may alias x). Returns TT_ERR_NAN, after writing, if any y is not finite:
   the fused SGD update scales a layer's output gradient by -lr with it and checks it before
   the gradient touches the weights. */
tt_status tt_scale_f32(const float *x, float *y, int n, float a);

/* ------------------------------------------------------------------ losses
 * Write the loss (mean over rows / elements) and d(loss)/d(input) * scale, where scale is
 * typically 1/batch so that per-sample gradients accumulate into a batch mean. The gradient
 * is always overwritten; it may equal the input pointer (computed in place), or be NULL
 * (loss only, e.g. forward-gradient modes); loss may be NULL (gradient only).
 * Return TT_ERR_NAN (after writing everything) when the loss is not finite.
 *
 * softmax cross-entropy, per row (torch.nn.CrossEntropyLoss, log-softmax stable form):
 *   m = max_j x_j; e_j = tt_expf(x_j - m); s = plain-add chain over j; r = chain over j != label;
 *   loss_row = tt_log1pf(r) if x_label == m else tt_logf(s) - (x_label - m);
 *   loss = (chain over rows of loss_row) / rows;
 *   g_j = (e_j / s) * f for j != label, g_label = -(r / s) * f, f = scale / rows.
 *   Labels must lie in [0, cols), else TT_ERR_ARG.
 * mse (torch.nn.MSELoss, mean): d_i = pred_i - target_i; loss = (fmaf chain of d_i*d_i) / n;
 *   g_i = d_i * (2*scale/n). */
tt_status tt_softmax_xent_f32(const float *logits, const int32_t *labels, int rows, int cols,
                              float scale, float *loss, float *glogits);
tt_status tt_mse_f32(const float *pred, const float *target, int n, float scale, float *loss,
                     float *gpred);

/* ------------------------------------------------------------------ optimizers
 * Update w in place, then ZERO g (ready for the next accumulation). torch.optim semantics
 * (L2 weight decay added to the gradient, dampening 0, no Nesterov, no amsgrad):
 *   d = fmaf(weight_decay, w, g)
 *   sgd:      w = fmaf(-lr, d, w)
 *   momentum: v = fmaf(momentum, v, d); w = fmaf(-lr, v, w)   (v starts at 0; torch's
 *             first-step v = g is the same thing)
 *   adam:     m = fmaf(beta1, m, (1-beta1)*d); v = fmaf(beta2, v, ((1-beta2)*d)*d);
 *             den = fmaf(sqrtf(v), 1/sqrtf(1-beta2^t), eps); w = fmaf(-(lr/(1-beta1^t)), m/den, w)
 *             beta^t by exact-order square-and-multiply in float; t >= 1 (TT_ERR_ARG else). */
tt_status tt_sgd_upd_f32(float *TT_RESTRICT w, float *TT_RESTRICT g, int n, float lr,
                         float weight_decay);
tt_status tt_momentum_upd_f32(float *TT_RESTRICT w, float *TT_RESTRICT g, float *TT_RESTRICT v,
                              int n, float lr, float momentum, float weight_decay);
tt_status tt_adam_upd_f32(float *TT_RESTRICT w, float *TT_RESTRICT g, float *TT_RESTRICT m,
                          float *TT_RESTRICT v, int n, float lr, float beta1, float beta2,
                          float eps, float weight_decay, int t);

/* ------------------------------------------------------------------ utilities */
/* TT_ERR_NAN if any of x[0..n) is NaN or +-Inf, else TT_OK (x may be NULL when n == 0). */
tt_status tt_check_finite_f32(const float *x, int n);

/* CRC-32 (IEEE 802.3 / zlib / PNG: reflected polynomial 0xEDB88320). The pre- and
 * post-inversion with 0xFFFFFFFF happen inside, so start with crc = 0 and chain:
 *   tt_crc32(b, nb, tt_crc32(a, na, 0)) == tt_crc32(a||b, na + nb, 0) == zlib.crc32(a||b).
 * tt_crc32("123456789", 9, 0) == 0xCBF43926. data may be NULL when n == 0. */
uint32_t tt_crc32(const void *data, size_t n, uint32_t crc);

/* ------------------------------------------------------------------ elementary functions
 * Portable replacements for libm, bit-identical on every IEEE-754 binary32 target
 * (libm expf/logf differ between glibc, newlib and picolibc). Error < 1.5 ulp over the whole
 * range (measured: exp 0.98, expm1 1.37, log 0.85, log1p 0.86); special values as C99 Annex F
 * (NaN in, NaN out, overflow to +inf, log(0) = -inf). */
float tt_expf(float x);
float tt_expm1f(float x);   /* e^x - 1, accurate near 0 */
float tt_logf(float x);
float tt_log1pf(float x);   /* log(1 + x), accurate near 0 */

#ifdef __cplusplus
}
#endif

#endif /* TT_KERNELS_H */
