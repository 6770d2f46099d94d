/*
 * tt_qjvp.h - integer kernels of forward-mode (JVP) training in fixed point (int8 / int16).
 * numpy twin, bit for bit: tinytrain/numerics/qjvp.py. Kernels: runtime_c/src/tt_jvp_q.c.
 *
 * A forward-gradient step carries a tangent beside every activation that depends on a
 * trainable parameter. The parameter directions z are integers regenerated from the PRNG,
 * never stored, exactly as the zeroth-order kernels draw them (tt_qkernels.h):
 *   TT_ZO_RADEMACHER  value i = +1 / -1 from bit i % 32 of draw i / 32 (LSB first, 0 -> +1)
 *   TT_ZO_GAUSS       value i = (sum of the four bytes of draw i) - 510, in [-510, 510]
 * where i counts the values of ONE tensor from its first value, in the tensor's memory order.
 * The caller positions the generator at the tensor's first value (tt_prng_seed +
 * tt_prng_advance over the draws of the tensors before it); the kernels below draw exactly the
 * `size` values of each tensor they use, one generator per tensor (ceil(size / 32) draws for
 * Rademacher, size for Gauss) and leave each generator right after its tensor. A tensor is
 * never split across calls.
 *
 * The tangent of y = x W^T + b (or conv) is  ty = tx W^T + x Z^T + z_b: three terms with
 * three different real scales (s_tx s_w, s_x, 1 for z_b in units of the bias direction).
 * tt_gemm_jvp_* / tt_conv2d_jvp_* compute the three raw terms and join them with their real
 * multipliers (tt_tangent_join_*) into one int8 / int16 tangent with a dynamic power-of-two
 * exponent, in ONE kernel with O(1) extra memory: no accumulator tensor is stored, each pass
 * recomputes the terms (and redraws the directions) instead.
 *
 * Conventions as tt_qkernels.h: batch 1, CHW; q8 = int8 data, int32 accumulators; q16 =
 * int16 data, int64 accumulators; w16a8 (fused Gemm / Conv only) = int8 data with int16
 * weights (tt_gemm_fwd_w16a8's format), an int64 accumulator for tx W; every kernel returns
 * a tt_status and writes nothing (and draws nothing) on an error: TT_ERR_ARG for NULL
 * pointers / out-of-range values, TT_ERR_SHAPE for a convolution / pooling geometry the
 * forward kernels refuse. Integer sums are exact, so loop order never changes a result; only
 * the join (tt_tangent_join_*, and the q16 / w16a8 narrowing of tt_gemm_jvp_* /
 * tt_conv2d_jvp_*) rounds.
 * TT_RESTRICT outputs must not overlap any other argument.
 */
#ifndef TT_QJVP_H
#define TT_QJVP_H

#include <stdint.h>

#include "tt_kernels.h"
#include "tt_prng.h"
#include "tt_qkernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ fused Gemm / Conv tangents
 * ty, *e_out = the tangent of y = x W^T + b (gemm, batch 1: x [k], w [m][k], ty [m]) or of
 * y = conv(x, W) + b (conv: CHW, geometry of tt_conv2d_fwd_*: groups, depthwise, stride, pads,
 * taps outside the input skipped, dilation 1; ty [out_c][out_h][out_w]) as the join of up to
 * three terms, each present iff its pointer is non-NULL:
 *   A (tx)  A[o] = sum tx * w over the taps of output o        the tangent through x, tx W^T
 *   B (zw)  B[o] = sum x * z over the taps of output o         the weight direction, x Z^T:
 *           Z the next m*k (gemm) / out_c*(in_c/groups)*k_h*k_w (conv) direction values of
 *           zw in weight memory order ((j, kk) / (oc, icg, kh, kw) ascending)
 *   C (zb)  C[ch] = the next value of zb for output channel ch = 0, 1, ...   the bias direction
 * with the factors  A: a_mult 2^(a_exp - 31),  B: b_mult 2^(b_exp - 31),  C: c_mult
 * 2^(c_exp - 31) (C per channel: inner = 1 for gemm, out_h * out_w for conv). Directions are
 * drawn as every drawing kernel here draws them (top of this file): the caller positions zw
 * at the weight tensor's first value and zb at the bias's; on return zw / zb are advanced
 * past exactly their tensor (ceil(size / 32) or size draws), as if the whole tensor had been
 * drawn once in memory order. zw and zb must be different generators.
 * Result, bit for bit (the numpy twin qjvp.gemm_jvp / conv2d_jvp is written as this
 * composition of raw accumulators, narrowing and tt_tangent_join_*):
 *   q8:    A, B are int32 accumulators (exact under the bounds below);
 *   q16:   A, B are int64 accumulators, each narrowed to int32 TENSOR-WIDE before the join:
 *          rs_A = the smallest rs >= 0 with rdbpot(max_o |A[o]|, rs) <= 2^31 - 1 (as
 *          tt_grad_scale_pow2_q64 with bits 32; 0 for an all-zero A), A32 =
 *          tt_rdbpot64(A, rs_A), and rs_A is added to a_exp; the same for B and b_exp;
 *   w16a8: x, tx, ty int8 (ty's range and final rounding those of q8), w int16: A is an int64
 *          accumulator narrowed exactly as q16's A (rs_A added to a_exp); B (int8 x, |z| <=
 *          510) and C as q8's: int32, never narrowed (rs_B = 0);
 *   ty, *e_out = tt_tangent_join_*(n, inner, A32, a_mult, a_exp (+ rs_A), B32, b_mult,
 *        b_exp (+ rs_B), C, c_mult, c_exp)  with n = m (gemm) / out_c * out_h * out_w (conv)
 *        (w16a8: tt_tangent_join_q8).
 * Method: output-stationary; the generator states are saved at entry and restored at the
 * start of every pass. Pass 1, only when a narrowed term is present (q16: A or B, w16a8: A),
 * computes just the narrowed terms: max |A|, max |B| -> rs_A, rs_B; then (every format) a
 * pass for max |S| of the join and a pass that recomputes S and writes tt_rdbpot64(S, s). So
 * the MACs and direction draws of a term are done 2x (q8; w16a8's B, C) / 3x (q16's A, B;
 * w16a8's A) instead of once, and no n-sized int32 / int64 term tensor exists (the
 * composition stored A, B, C and the int32 copies of the narrowed ones). Conv: per output
 * channel, zrow (tt_conv2d_jvp_scratch(p) int16) is filled with that channel's
 * (in_c/groups)*k_h*k_w direction values (the draws of Z continue across channels, also mid
 * Rademacher word), then reused by the channel's every output.
 * Bounds (not detected): |tx w| <= 2^14 (q8) / 2^30 (q16) / 2^22 (w16a8: 128 * 32768),
 * |x z| <= 128 * 510 (q8, w16a8) / 32768 * 510 (q16); an output sums at most 131071 products
 * for A (so |A| < 2^31 (q8) / 2^47 (q16) / 2^39 (w16a8): the int64 sums never overflow) and
 * at most 32896 (Gaussian) / 2^24 (Rademacher) products for B in q8 and w16a8.
 * Arguments: s holds the six multipliers / exponents (those of an absent term are ignored).
 * tx present: tx, w non-NULL (gemm: unless k = 0 or m = 0); zw present: x non-NULL (gemm:
 * unless k = 0 or m = 0) and, for conv, zrow non-NULL; without zw, x and zrow may be NULL,
 * without tx, w. ty may be NULL only when n = 0. dist is checked only when zw or zb is
 * present. zrow is scratch: its contents on return are unspecified. ty must not overlap x, tx,
 * w or zrow. An error writes nothing to ty / *e_out and leaves zw / zb where they were:
 * TT_ERR_ARG for no term present, s / e_out NULL, a missing array, zw == zb, k or m < 0, dist
 * not TT_ZO_RADEMACHER / TT_ZO_GAUSS, a present mult outside [0, 2^31) or exp outside
 * [-TT_QJVP_EXP_MAX, TT_QJVP_EXP_MAX], for q16 also a_exp + rs_A or b_exp + rs_B above
 * TT_QJVP_EXP_MAX, for w16a8 a_exp + rs_A (found after pass 1; the generators are then
 * restored); TT_ERR_SHAPE for a geometry tt_conv2d_fwd_* refuses (checked even without tx and
 * zw). gemm with m = 0 writes nothing and sets *e_out = E + 2 (the join's n = 0). */
typedef struct {
    int32_t a_mult;
    int a_exp;
    int32_t b_mult;
    int b_exp;
    int32_t c_mult;
    int c_exp;
} tt_jvp_scales;

tt_status tt_gemm_jvp_q8(const int8_t *x, const int8_t *tx, const int8_t *w,
                         int8_t *TT_RESTRICT ty, int k, int m, tt_prng *zw, tt_prng *zb, int dist,
                         const tt_jvp_scales *s, int *e_out);
tt_status tt_gemm_jvp_q16(const int16_t *x, const int16_t *tx, const int16_t *w,
                          int16_t *TT_RESTRICT ty, int k, int m, tt_prng *zw, tt_prng *zb,
                          int dist, const tt_jvp_scales *s, int *e_out);
tt_status tt_conv2d_jvp_q8(const tt_conv2d_params *p, const int8_t *x, const int8_t *tx,
                           const int8_t *w, int8_t *TT_RESTRICT ty, tt_prng *zw, tt_prng *zb,
                           int dist, const tt_jvp_scales *s, int *e_out, int16_t *zrow);
tt_status tt_conv2d_jvp_q16(const tt_conv2d_params *p, const int16_t *x, const int16_t *tx,
                            const int16_t *w, int16_t *TT_RESTRICT ty, tt_prng *zw, tt_prng *zb,
                            int dist, const tt_jvp_scales *s, int *e_out, int16_t *zrow);
tt_status tt_gemm_jvp_w16a8(const int8_t *x, const int8_t *tx, const int16_t *w,
                            int8_t *TT_RESTRICT ty, int k, int m, tt_prng *zw, tt_prng *zb,
                            int dist, const tt_jvp_scales *s, int *e_out);
tt_status tt_conv2d_jvp_w16a8(const tt_conv2d_params *p, const int8_t *x, const int8_t *tx,
                              const int16_t *w, int8_t *TT_RESTRICT ty, tt_prng *zw,
                              tt_prng *zb, int dist, const tt_jvp_scales *s, int *e_out,
                              int16_t *zrow);
/* int16 elements of tt_conv2d_jvp_*'s zrow: (in_c / groups) * k_h * k_w; 0 for p NULL or a
 * geometry the kernels refuse (TT_ERR_SHAPE). */
int tt_conv2d_jvp_scratch(const tt_conv2d_params *p);

/* ------------------------------------------------------------------ tangent join
 * ty (n values, int8 / int16) with exponent *e_out := the sum of up to three terms whose
 * element i has the real value  v_t[i'] * mult_t * 2^(exp_t - 31)  (so that ty[i] *
 * 2^*e_out approximates the sum): a and b have n values (i' = i), c has n / inner values
 * (i' = i / inner: a per-channel term such as a bias direction, inner = out_h * out_w for a
 * CHW conv output, 1 for a Linear output of one row). Any of a, b, c may be NULL (absent;
 * its mult and exp are then ignored); at least one must be present. Exact integer algorithm
 * (int64 only, no division):
 *   P_t = (int64)v_t * mult_t                  exact: |v| <= 2^31, mult < 2^31, |P| < 2^62
 *   E_t = exp_t - 31;  E = max of E_t over the PRESENT terms
 *   Q_t = tt_rdbpot64(P_t, min(E - E_t + 2, 63))   ties away from zero. Q_t is in units of
 *         2^(E + 2): the 2 spare bits keep the sum in range. A shift of 63 (E - E_t >= 61)
 *         gives exactly 0, as tt_rdbpot64 does for every |P| < 2^62.
 *   S = sum of the present Q_t                 |Q_t| <= 2^60, |S| <= 3 * 2^60: no overflow
 *   s = the smallest s >= 0 with rdbpot(max_i |S_i|, s) <= 127 (q8) / 32767 (q16), chosen by
 *       tt_grad_scale_pow2_q64 (an all-zero or empty S gives s = 0)
 *   ty[i] = tt_rdbpot64(S_i, s) (never saturates: |ty| <= rdbpot(max |S|, s));
 *   *e_out = E + 2 + s
 * Error: |ty[i] * 2^*e_out - exact sum| <= 1/2 * 2^(E+2) per present term (at most 3/2
 * output LSB when s = 0) plus 1/2 output LSB of the final rounding when s > 0: <= 3/2 LSB.
 * Two passes over the terms (max |S|, then the output), no scratch; ty must not overlap them.
 * TT_ERR_ARG for: no term present; n < 0; ty NULL with n > 0; e_out NULL; a present mult
 * outside [0, 2^31); a present exp outside [-TT_QJVP_EXP_MAX, TT_QJVP_EXP_MAX] (keeps every
 * exponent sum inside int); c present with inner < 1 or n % inner != 0. n = 0 is legal
 * (*e_out = E + 2, nothing written). */
#define TT_QJVP_EXP_MAX 16777216 /* 2^24 */
tt_status tt_tangent_join_q8(int8_t *TT_RESTRICT ty, int n, int inner, const int32_t *a,
                             int32_t a_mult, int a_exp, const int32_t *b, int32_t b_mult, int b_exp,
                             const int32_t *c, int32_t c_mult, int c_exp, int *e_out);
tt_status tt_tangent_join_q16(int16_t *TT_RESTRICT ty, int n, int inner, const int32_t *a,
                              int32_t a_mult, int a_exp, const int32_t *b, int32_t b_mult,
                              int b_exp, const int32_t *c, int32_t c_mult, int c_exp, int *e_out);

/* ------------------------------------------------------------------ max pooling, dot
 * tt_maxpool2d_jvp_*: ty[c][oh][ow] = tx at the argmax of x in the window: the first maximum
 *   in row-major order of the window clipped to the input (strict >, padding never wins),
 *   exactly the cell tt_maxpool2d_bwd_x_* sends the gradient to. Scale and exponent of tx
 *   unchanged. Geometry as tt_pool2d_check.
 * tt_dot_q30_*: *s = sum_i (int64)g[i] * t[i], g the Q30 loss gradient of
 *   tt_softmax_xent_* (|g| <= 2^30): the loss tangent dL . t in units of 2^-30 * (scale of t).
 *   Exact in int64: |g * t| <= 2^37 (q8) / 2^45 (q16), so n < 2^26 (q8) / 2^18 (q16);
 *   larger n is TT_ERR_ARG. */
tt_status tt_maxpool2d_jvp_q8(const tt_pool2d_params *p, const int8_t *x, const int8_t *tx,
                              int8_t *TT_RESTRICT ty);
tt_status tt_maxpool2d_jvp_q16(const tt_pool2d_params *p, const int16_t *x, const int16_t *tx,
                               int16_t *TT_RESTRICT ty);
tt_status tt_dot_q30_q8(const int32_t *g, const int8_t *t, int n, int64_t *s);
tt_status tt_dot_q30_q16(const int32_t *g, const int16_t *t, int n, int64_t *s);

#ifdef __cplusplus
}
#endif

#endif /* TT_QJVP_H */
