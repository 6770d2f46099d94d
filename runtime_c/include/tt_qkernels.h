/*
 * tt_qkernels.h - fixed-point (int8 / int16) training kernels. numpy twin (bit for bit):
 * tinytrain/numerics/qkernels.py. Formats, scales and rounding: docs/fixed-point.md.
 *
 * Conventions (as tt_kernels.h: batch 1, CHW, accumulate flags, tt_conv2d_params /
 * tt_pool2d_params / tt_bcast4, every kernel returns a tt_status, nothing written on an
 * argument error, no allocation, no scratch):
 * - Names tt_<op>_<pass>_q8 / _q16. q8: int8 tensors, int32 accumulators and biases.
 *   q16: int16 tensors, int64 accumulators and biases.
 * - Symmetric quantization (zero point 0). The kernels never see a real scale: the forward
 *   kernels take a tt_requant (tt_fixed.h) that maps the accumulator (scale s_x*s_w) to the
 *   output (scale s_y); the backward kernels return raw accumulators (scale s_gy*s_w for
 *   bwd_x, s_gy*s_x for bwd_w, s_gy for bias) which the caller narrows with a dynamic
 *   power-of-two scale (tt_grad_quant_pow2_*) or feeds to an update kernel.
 * - Overflow bound: an accumulator holds at most 131071 (2^17 - 1) products, counting every
 *   term of every call made with accumulate = 1 (q8: 2^17 * 2^14 + |bias| < 2^31; q16:
 *   < 2^47, the range of tt_mbqm64). Shapes beyond it are the caller's error; they are not
 *   detected.
 * - uint32_t *sat: number of values clamped to the storage range is ADDED to *sat (may be
 *   NULL). Order of summation is irrelevant for integers; only the rounding points are
 *   specified, and they are documented per kernel.
 */
#ifndef TT_QKERNELS_H
#define TT_QKERNELS_H

#include <stdint.h>

#include "tt_fixed.h"
#include "tt_kernels.h"
#include "tt_prng.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ GEMM and bias
 * y[i][j] = requant(b[j] + sum_kk x[i][kk] * w[j][kk]) (rq channel j; b may be NULL)
 * gx[i][kk] (+)= sum_j gy[i][j] * w[j][kk];  gw[j][kk] (+)= sum_i gy[i][j] * x[i][kk]
 * gb[ch] (+)= sum_{o,t} gy[o][ch][t] (Linear: (n, m, 1); conv: (1, out_c, out_h*out_w)) */
tt_status tt_gemm_fwd_q8(const int8_t *x, const int8_t *w, const int32_t *b,
                         int8_t *TT_RESTRICT y, int n, int k, int m, const tt_requant *rq,
                         uint32_t *sat);
tt_status tt_gemm_fwd_q16(const int16_t *x, const int16_t *w, const int64_t *b,
                          int16_t *TT_RESTRICT y, int n, int k, int m, const tt_requant *rq,
                          uint32_t *sat);
tt_status tt_gemm_bwd_x_q8(const int8_t *gy, const int8_t *w, int32_t *TT_RESTRICT gx, int n,
                           int k, int m, int accumulate);
tt_status tt_gemm_bwd_x_q16(const int16_t *gy, const int16_t *w, int64_t *TT_RESTRICT gx, int n,
                            int k, int m, int accumulate);
tt_status tt_gemm_bwd_w_q8(const int8_t *gy, const int8_t *x, int32_t *TT_RESTRICT gw, int n,
                           int k, int m, int accumulate);
tt_status tt_gemm_bwd_w_q16(const int16_t *gy, const int16_t *x, int64_t *TT_RESTRICT gw, int n,
                            int k, int m, int accumulate);
tt_status tt_bias_bwd_q8(const int8_t *gy, int32_t *TT_RESTRICT gb, int outer, int c, int inner,
                         int accumulate);
tt_status tt_bias_bwd_q16(const int16_t *gy, int64_t *TT_RESTRICT gb, int outer, int c,
                          int inner, int accumulate);

/* ------------------------------------------------------------------ convolution
 * Geometry exactly as tt_conv2d_*_f32 (groups, depthwise, stride, pads, taps outside the
 * input skipped). fwd: requant per output channel oc. bwd_x / bwd_w: raw accumulators. */
tt_status tt_conv2d_fwd_q8(const tt_conv2d_params *p, const int8_t *x, const int8_t *w,
                           const int32_t *b, int8_t *TT_RESTRICT y, const tt_requant *rq,
                           uint32_t *sat);
tt_status tt_conv2d_fwd_q16(const tt_conv2d_params *p, const int16_t *x, const int16_t *w,
                            const int64_t *b, int16_t *TT_RESTRICT y, const tt_requant *rq,
                            uint32_t *sat);
tt_status tt_conv2d_bwd_x_q8(const tt_conv2d_params *p, const int8_t *gy, const int8_t *w,
                             int32_t *TT_RESTRICT gx, int accumulate);
tt_status tt_conv2d_bwd_x_q16(const tt_conv2d_params *p, const int16_t *gy, const int16_t *w,
                              int64_t *TT_RESTRICT gx, int accumulate);
tt_status tt_conv2d_bwd_w_q8(const tt_conv2d_params *p, const int8_t *gy, const int8_t *x,
                             int32_t *TT_RESTRICT gw, int accumulate);
tt_status tt_conv2d_bwd_w_q16(const tt_conv2d_params *p, const int16_t *gy, const int16_t *x,
                              int64_t *TT_RESTRICT gw, int accumulate);

/* ------------------------------------------------------------------ mixed precision: w16a8
 * Forward only, for zeroth-order (SPSA) training, where the weights take the perturbations and
 * the updates (int16: eps * z and sub-LSB steps fit) while activations stay int8.
 * _w16a8: int8 activations x and y, int16 weights, int64 accumulator and bias (products at
 * most 2^22, 2^17 of them below 2^39). Geometry, loops and bias exactly as the _q8 / _q16
 * kernels. Requantization: TT_RQ_TFLITE is TFLite's int64 form tt_mbqm64 (the 16x8 kernels;
 * shift in [-31, 14]) applied to the int64 accumulator, never narrowed to int32 first;
 * TT_RQ_POW2 / TT_RQ_FLOAT as for the other kernels. Then saturation to int8 (counted in
 * *sat), then the clamp to [act_min, act_max] (within int8).
 * tt_requant_check_acc64 / tt_requant_one_acc64 (tt_gemm_q.c): that requantization for any
 * output width (bits 8 or 16; for 16 they equal tt_requant_check / tt_requant_one). */
tt_status tt_gemm_fwd_w16a8(const int8_t *x, const int16_t *w, const int64_t *b,
                            int8_t *TT_RESTRICT y, int n, int k, int m, const tt_requant *rq,
                            uint32_t *sat);
tt_status tt_conv2d_fwd_w16a8(const tt_conv2d_params *p, const int8_t *x, const int16_t *w,
                              const int64_t *b, int8_t *TT_RESTRICT y, const tt_requant *rq,
                              uint32_t *sat);
tt_status tt_requant_check_acc64(const tt_requant *rq, int channels, int bits);
int32_t tt_requant_one_acc64(const tt_requant *rq, int ch, int64_t acc, int bits,
                             uint32_t *sat);

/* ------------------------------------------------------------------ ReLU and 1-bit masks
 * fwd: y = max(x, 0) (scale unchanged). bwd: gx = (y > 0) ? gy : 0. In place allowed.
 * A mask stores bit (i % 8) of byte i / 8 = (y[i] > 0); n bits in ceil(n/8) bytes, unused
 * high bits of the last byte are written as 0. bwd_x_mask is bwd_x reading the mask, so the
 * forward activation need not be kept: 1 bit instead of 8 / 16 per element. */
tt_status tt_relu_fwd_q8(const int8_t *x, int8_t *y, int n);
tt_status tt_relu_fwd_q16(const int16_t *x, int16_t *y, int n);
tt_status tt_relu_bwd_x_q8(const int8_t *gy, const int8_t *y, int8_t *gx, int n);
tt_status tt_relu_bwd_x_q16(const int16_t *gy, const int16_t *y, int16_t *gx, int n);
tt_status tt_relu_mask_pack_q8(const int8_t *y, uint8_t *TT_RESTRICT mask, int n);
tt_status tt_relu_mask_pack_q16(const int16_t *y, uint8_t *TT_RESTRICT mask, int n);
tt_status tt_relu_bwd_x_mask_q8(const int8_t *gy, const uint8_t *mask, int8_t *gx, int n);
tt_status tt_relu_bwd_x_mask_q16(const int16_t *gy, const uint8_t *mask, int16_t *gx, int n);
/* out[i] = bit i of the mask (0 or 1) */
tt_status tt_mask_unpack(const uint8_t *mask, uint8_t *TT_RESTRICT out, int n);

/* ------------------------------------------------------------------ pooling (CHW)
 * Window geometry as tt_pool2d_params (f32 kernels); scale unchanged through every pool.
 * max fwd: first maximum of the window (row-major). max bwd: gx zeroed (accumulate = 0), then
 *   every output in (c, oh, ow) order adds gy into its argmax cell, saturating (counted).
 * avg fwd: sum of the valid cells, d = k_h*k_w (count_include_pad) or the number of valid
 *   cells, y = round(sum / d) ties away from zero, computed as TFLite does:
 *   (sum > 0 ? sum + d/2 : sum - d/2) / d with C's truncating division.
 * avg bwd: into ACCUMULATORS with frac_bits fractional bits (scale s_gy * 2^-frac_bits):
 *   every output adds round((gy * 2^frac_bits) / d) (same rounding) to each valid cell.
 *   frac_bits in [0, 16].
 * global avg: the same with one window of hw cells per channel. */
tt_status tt_maxpool2d_fwd_q8(const tt_pool2d_params *p, const int8_t *x, int8_t *TT_RESTRICT y);
tt_status tt_maxpool2d_fwd_q16(const tt_pool2d_params *p, const int16_t *x,
                               int16_t *TT_RESTRICT y);
tt_status tt_maxpool2d_bwd_x_q8(const tt_pool2d_params *p, const int8_t *gy, const int8_t *x,
                                int8_t *TT_RESTRICT gx, int accumulate, uint32_t *sat);
tt_status tt_maxpool2d_bwd_x_q16(const tt_pool2d_params *p, const int16_t *gy, const int16_t *x,
                                 int16_t *TT_RESTRICT gx, int accumulate, uint32_t *sat);
tt_status tt_avgpool2d_fwd_q8(const tt_pool2d_params *p, const int8_t *x, int8_t *TT_RESTRICT y);
tt_status tt_avgpool2d_fwd_q16(const tt_pool2d_params *p, const int16_t *x,
                               int16_t *TT_RESTRICT y);
tt_status tt_avgpool2d_bwd_x_q8(const tt_pool2d_params *p, const int8_t *gy,
                                int32_t *TT_RESTRICT gx, int frac_bits, int accumulate);
tt_status tt_avgpool2d_bwd_x_q16(const tt_pool2d_params *p, const int16_t *gy,
                                 int64_t *TT_RESTRICT gx, int frac_bits, int accumulate);
tt_status tt_global_avgpool_fwd_q8(const int8_t *x, int8_t *TT_RESTRICT y, int c, int hw);
tt_status tt_global_avgpool_fwd_q16(const int16_t *x, int16_t *TT_RESTRICT y, int c, int hw);
tt_status tt_global_avgpool_bwd_x_q8(const int8_t *gy, int32_t *TT_RESTRICT gx, int c, int hw,
                                     int frac_bits, int accumulate);
tt_status tt_global_avgpool_bwd_x_q16(const int16_t *gy, int64_t *TT_RESTRICT gx, int c, int hw,
                                      int frac_bits, int accumulate);

/* ------------------------------------------------------------------ add (two scales)
 * TFLite ADD semantics (fixed.tflite_add_params computes the fields from s_a, s_b, s_y):
 *   a' = tt_mbqm(a * 2^left_shift, a_mult, a_shift); b' likewise;
 *   y  = clamp(sat(tt_mbqm(a' + b', y_mult, y_shift)), act_min, act_max)
 * left_shift 20 (q8) or 15 (q16) keeps the sum exact in int32. Also the way two gradient
 * branches with different exponents are joined. bwd: g[e] (+)= sum of gy over the output
 * positions that read e (the reduction over broadcast dimensions) into accumulators; for a
 * non-broadcast operand it is a copy of gy (scale unchanged). */
typedef struct {
    int left_shift;
    int32_t a_mult;
    int a_shift;
    int32_t b_mult;
    int b_shift;
    int32_t y_mult;
    int y_shift;
    int32_t act_min, act_max;
} tt_qadd_params;

tt_status tt_add_fwd_q8(const tt_bcast4 *p, const tt_qadd_params *q, const int8_t *a,
                        const int8_t *b, int8_t *y, uint32_t *sat);
tt_status tt_add_fwd_q16(const tt_bcast4 *p, const tt_qadd_params *q, const int16_t *a,
                         const int16_t *b, int16_t *y, uint32_t *sat);
tt_status tt_add_bwd_q8(const tt_bcast4 *p, const int8_t *gy, int32_t *TT_RESTRICT g, int which,
                        int accumulate);
tt_status tt_add_bwd_q16(const tt_bcast4 *p, const int16_t *gy, int64_t *TT_RESTRICT g,
                         int which, int accumulate);

/* ------------------------------------------------------------------ softmax cross-entropy
 * Integer only. Logits q with real scale s_x = x_mult * 2^(x_shift - 31) (quantize_multiplier).
 * Per row: d_j = q_j - max_j q_j <= 0; z_j = sat32(tt_shift_round64(d_j * x_mult, x_shift - 7))
 *   (Q24 = (x_j - max) in real units); e_j = tt_exp_q24_q30(z_j); S = sum_j e_j (int64, >= 2^30);
 *   loss_row = sat32(tt_log_q30_q24(S) - z_label) (Q24);
 *   p_j = floor((e_j * 2^30 + floor(S/2)) / S) (Q30); g_j = p_j - (j == label ? 2^30 : 0).
 * loss_q24 = round(sum of loss_row / rows) ties away; glogits [rows][cols] int32 Q30 is the
 * gradient of the SUM of the row losses (no 1/rows: fold the batch mean into the optimizer
 * multiplier); quantize it with tt_grad_quant_pow2_q32_*. Either output may be NULL.
 * TT_ERR_ARG for a label outside [0, cols) or x_shift outside [-31, 30]. */
tt_status tt_softmax_xent_q8(const int8_t *logits, const int32_t *labels, int rows, int cols,
                             int32_t x_mult, int x_shift, int32_t *loss_q24,
                             int32_t *glogits_q30);
tt_status tt_softmax_xent_q16(const int16_t *logits, const int32_t *labels, int rows, int cols,
                              int32_t x_mult, int x_shift, int32_t *loss_q24,
                              int32_t *glogits_q30);

/* ------------------------------------------------------------------ optimizers
 * Integer SGD on integer weights (int8 / int16 / int32 biases) from int32 gradients g (an
 * accumulator from bwd_w / bias_bwd, or a power-of-two-quantized gradient): per element i
 * ascending
 *   D = g[i] * mult (int64, exact), r = 31 - shift in [0, 62]
 *   delta = rdbpot64(D, r)                         rounding = TT_ROUND_NEAREST (ties away)
 *         = tt_sr_rshift_i64(D, r, tt_prng_u32(rng))  TT_ROUND_STOCHASTIC (one draw per
 *                                                  element, always, even when r = 0)
 *   w[i] = sat(w[i] - delta) (counted); g[i] = 0.
 * (mult, shift) encode lr * (gradient scale / weight scale), with QAS and the batch mean
 * folded in (fixed.qas_weight_multiplier); a dynamic gradient exponent is added to shift.
 * Momentum (int32 state v, scale of your choice s_v):
 *   gv = tt_shift_round64(g[i], g_shift)             (g rescaled to s_v)
 *   v[i] = sat32(rdbpot64(v[i] * beta_mult, 31) + gv)  (beta = beta_mult / 2^31; counted)
 *   delta = R(v[i] * lr_mult, 31 - lr_shift); w[i] = sat(w[i] - delta); g[i] = 0.
 * rng may be NULL for TT_ROUND_NEAREST. */
typedef enum {
    TT_ROUND_NEAREST = 0,
    TT_ROUND_STOCHASTIC = 1
} tt_round_mode;

typedef struct {
    int32_t lr_mult;
    int lr_shift;
    int32_t beta_mult;
    int g_shift;
    int rounding; /* tt_round_mode */
} tt_qmomentum;

tt_status tt_sgd_upd_q8(int8_t *TT_RESTRICT w, int32_t *TT_RESTRICT g, int n, int32_t mult,
                        int shift, int rounding, tt_prng *rng, uint32_t *sat);
tt_status tt_sgd_upd_q16(int16_t *TT_RESTRICT w, int32_t *TT_RESTRICT g, int n, int32_t mult,
                         int shift, int rounding, tt_prng *rng, uint32_t *sat);
tt_status tt_sgd_upd_q32(int32_t *TT_RESTRICT w, int32_t *TT_RESTRICT g, int n, int32_t mult,
                         int shift, int rounding, tt_prng *rng, uint32_t *sat);
tt_status tt_momentum_upd_q8(int8_t *TT_RESTRICT w, int32_t *TT_RESTRICT g,
                             int32_t *TT_RESTRICT v, int n, const tt_qmomentum *p, tt_prng *rng,
                             uint32_t *sat);
tt_status tt_momentum_upd_q16(int16_t *TT_RESTRICT w, int32_t *TT_RESTRICT g,
                              int32_t *TT_RESTRICT v, int n, const tt_qmomentum *p,
                              tt_prng *rng, uint32_t *sat);
tt_status tt_momentum_upd_q32(int32_t *TT_RESTRICT w, int32_t *TT_RESTRICT g,
                              int32_t *TT_RESTRICT v, int n, const tt_qmomentum *p,
                              tt_prng *rng, uint32_t *sat);

/* ------------------------------------------------------------------ forward gradient (SPSA)
 * The perturbation z is regenerated, never stored: seed a tt_prng with (seed,
 * tt_prng_stream_id(step, k)) before each use and the same z comes out, in the order of
 * tt_prng_rademacher_i8 (dist = TT_ZO_RADEMACHER: +-1, 32 per draw) or tt_prng_gauss_i16
 * (TT_ZO_GAUSS: integer Irwin-Hall, sd 147.8, one draw per element).
 * perturb: w_out[i] = sat(w[i] + eps * z_i) (counted), |eps| <= 65535. w_out may equal w,
 *   but a saturated element then cannot be restored by perturbing with -eps: perturb into a
 *   copy (e.g. one filter at a time), or keep |w| + |eps| * max|z| inside the range.
 * accum: g[i] = sat32(g[i] + tt_shift_round64(d * z_i, shift)) (counted): the gradient
 *   estimate d_k * z_k with d_k = (L+ - L-) / (2 eps) in any integer format, shift in
 *   [-62, 31] (ties away from zero). */
/* the same definitions as tt_zo.h (identical macro redefinitions are legal C), so the two
 * headers can be included together in either order */
#define TT_ZO_RADEMACHER 0
#define TT_ZO_GAUSS 1

tt_status tt_zo_perturb_q8(const int8_t *w, int8_t *w_out, int n, tt_prng *rng, int32_t eps,
                           int dist, uint32_t *sat);
tt_status tt_zo_perturb_q16(const int16_t *w, int16_t *w_out, int n, tt_prng *rng, int32_t eps,
                            int dist, uint32_t *sat);
tt_status tt_zo_accum_q32(int32_t *g, int n, tt_prng *rng, int32_t d, int shift, int dist,
                          uint32_t *sat);

/* Zeroth-order SGD step, z regenerated (never stored): with zrng seeded as for the
 * perturbation, element i ascending draws z_i exactly as tt_zo_perturb_* does (same values,
 * same draws consumed by a call of n elements: ceil(n/32) for Rademacher, n for Gauss), then
 *   D = c * z_i (int64 exact: |c| <= 2^40, |z| <= 510)
 *   delta = tt_rdbpot64(D, frac_bits)                      rounding = TT_ROUND_NEAREST
 *         = tt_sr_rshift_i64(D, frac_bits, tt_prng_u32(rrng))  TT_ROUND_STOCHASTIC (one rrng
 *                                                          draw per element, always)
 *   w[i] = clamp(w[i] - delta, lo, hi) (counted in *sat)
 * c is the step in units of 2^-frac_bits weight LSBs per unit of z (tt_zo_coef). TT_ERR_ARG,
 * nothing written and no draw, for |c| > 2^40, frac_bits outside [0, 62], lo / hi outside the
 * storage range or lo > hi, an unknown dist / rounding, zrng NULL, rrng NULL with
 * TT_ROUND_STOCHASTIC (rrng may be NULL for nearest), or rrng == zrng (the rounding draws
 * would shift z away from the perturbation's).
 * tt_zo_coef: c = round(d * mult * 2^(shift - 31 + frac_bits)) ties away from zero, exact in
 *   int64 (tt_shift_round64 of d * mult; an exponent below -63 gives 0, above 62 saturates),
 *   clamped to [-2^40, 2^40] (counted in *sat, may be NULL). d: the loss difference
 *   (L+ - L-); (mult, shift): lr / (2 eps) and the scales, as fixed.quantize_multiplier. */
tt_status tt_zo_update_q8(int8_t *w, int n, tt_prng *zrng, int dist, int64_t c, int frac_bits,
                          int rounding, tt_prng *rrng, int32_t lo, int32_t hi, uint32_t *sat);
tt_status tt_zo_update_q16(int16_t *w, int n, tt_prng *zrng, int dist, int64_t c,
                           int frac_bits, int rounding, tt_prng *rrng, int32_t lo, int32_t hi,
                           uint32_t *sat);
/* the same for int32 / int64 biases (lo, hi in the storage type; |eps| up to 2^24 for _q32
 * and 2^30 for _q64: a bias LSB is s_x * s_w, so its perturbation steps are large) */
tt_status tt_zo_perturb_q32(const int32_t *w, int32_t *w_out, int n, tt_prng *rng, int32_t eps,
                            int dist, uint32_t *sat);
tt_status tt_zo_perturb_q64(const int64_t *w, int64_t *w_out, int n, tt_prng *rng, int32_t eps,
                            int dist, uint32_t *sat);
tt_status tt_zo_update_q32(int32_t *w, int n, tt_prng *zrng, int dist, int64_t c, int frac_bits,
                           int rounding, tt_prng *rrng, int32_t lo, int32_t hi, uint32_t *sat);
tt_status tt_zo_update_q64(int64_t *w, int n, tt_prng *zrng, int dist, int64_t c, int frac_bits,
                           int rounding, tt_prng *rrng, int64_t lo, int64_t hi, uint32_t *sat);
int64_t tt_zo_coef(int32_t d, int32_t mult, int shift, int frac_bits, uint32_t *sat);


/* ------------------------------------------------------------------ training-step glue
 * (tt_train_q.c) What a generated fixed-point step calls around the kernels.
 * tt_quantize_f32: q[i] = sat(rne(x[i] * inv_scale[ch])) with ch = (i / inner) % channels;
 *   the product is one fp32 multiply, clamped to +-2^22, rounded to nearest even with the
 *   1.5 * 2^23 trick (the same bits on every IEEE target); bits 8 / 16, saturation counted.
 *   bits 32 / 64 (biases): the fp32 product widened to double, clamped to +-2^(bits-2)
 *   (counted), rounded half away from zero. TT_ERR_NAN, nothing written, if any x[i] is NaN.
 * tt_dequantize_f32: y[i] = (float)q[i] * scale[ch] (bits 8 / 16 / 32 / 64).
 * tt_sgd_upd_q64: tt_sgd_upd_q8 for int64 weights (the int32-gradient, int64-bias case of
 *   int16 models); saturation to the int64 range, counted.
 * tt_sgd_upd_pc: per-channel SGD. Channel c (the `inner` contiguous weights from c * inner)
 *   runs tt_sgd_upd_q<wbits> with (mult[c], shift[c] + e); e is the runtime exponent of the
 *   gradient. shift[c] + e < -31 or mult[c] == 0: the step is below the weights' resolution,
 *   the channel is skipped (g zeroed, no random draws). shift[c] + e > 31: clipped to 31 and
 *   `inner` saturations counted.
 * tt_grad_join_q8/_q16: a <- a + b for two gradients with exponents *ea and eb (real value
 *   q * 2^e): s_i = a_i * 2^(*ea - E + 16) + b_i * 2^(eb - E + 16) in int64 with
 *   E = max(*ea, eb) (tt_shift_round64, shifts below -62 clamped to -62), then the smallest
 *   rs >= 0 with rdbpot(max|s|, rs) <= 2^(bits-1) - 1, a_i = sat(rdbpot(s_i, rs)), and
 *   *ea = E - 16 + rs. Two passes, no scratch. */
tt_status tt_quantize_f32(const float *x, void *q, int bits, int n, const float *inv_scale,
                          int channels, int inner, uint32_t *sat);
tt_status tt_dequantize_f32(const void *q, int bits, float *y, int n, const float *scale,
                            int channels, int inner);
tt_status tt_sgd_upd_q64(int64_t *TT_RESTRICT w, int32_t *TT_RESTRICT g, int n, int32_t mult,
                         int shift, int rounding, tt_prng *rng, uint32_t *sat);
tt_status tt_sgd_upd_pc(void *w, int wbits, int32_t *g, int channels, int inner,
                        const int32_t *mult, const int32_t *shift, int e, int rounding,
                        tt_prng *rng, uint32_t *sat);
/* tt_momentum_upd_pc: per-channel SGD with momentum for int8 / int16 / int32 weights. The
 *   velocity v (int32) is in weight LSBs with TT_Q_MOM_FRAC fractional bits and includes the
 *   learning rate (v <- beta v + lr G / s_W, w <- w - v; the same steps as fp32 momentum with
 *   a constant lr). Per element, channel c = k / inner:
 *   gv = tt_shift_round64(g * mult[c], shift[c] + e + TT_Q_MOM_FRAC - 31) (shift clamped to
 *   [-62, 0]; > 0 is clipped to 0 and `inner` saturations counted once per channel),
 *   v = sat32(rdbpot64(v * beta_mult, 31) + gv) (counted), delta = R(v, TT_Q_MOM_FRAC)
 *   (rdbpot or stochastic with one draw), w = sat(w - delta) (counted), g = 0.
 *   beta = beta_mult / 2^31. */
#define TT_Q_MOM_FRAC 16
tt_status tt_momentum_upd_pc(void *w, int wbits, int32_t *g, int32_t *v, int channels,
                             int inner, const int32_t *mult, const int32_t *shift, int e,
                             int32_t beta_mult, int rounding, tt_prng *rng, uint32_t *sat);
tt_status tt_grad_join_q8(int8_t *a, int *ea, const int8_t *b, int eb, int n, uint32_t *sat);
tt_status tt_grad_join_q16(int16_t *a, int *ea, const int16_t *b, int eb, int n,
                           uint32_t *sat);
/*
 * Per-layer precision: a tensor crossing from an int8 layer to an int16 one (or back) is copied
 * at the other width.
 * tt_act_convert_q: y[i] = sat(mbqm(x[i], mult, shift)) with xbits, ybits in {8, 16}; mult /
 *   shift encode s_x / s_y (TFLite multiplier, shift may be positive); saturations counted.
 * tt_grad_widen_q8_q16: y[i] = x[i] * 256 (exact; the exponent drops by 8).
 * tt_grad_quant_pow2_q16_q8: y = rdbpot(g, rshift) with the smallest rshift >= 0 that fits
 *   int8 (*rshift is added to the exponent), as tt_grad_quant_pow2_q32_q8 does for int32.
 */
tt_status tt_act_convert_q(const void *x, int xbits, void *y, int ybits, int n, int32_t mult,
                           int shift, uint32_t *sat);
tt_status tt_grad_widen_q8_q16(const int8_t *x, int16_t *y, int n);
tt_status tt_grad_quant_pow2_q16_q8(const int16_t *g, int8_t *y, int n, int *rshift);

#ifdef __cplusplus
}
#endif

#endif /* TT_QKERNELS_H */
