/*
 * tt_fp16.h - IEEE binary16 storage, fp32 arithmetic: conversions and FP16 training kernels.
 * numpy twins: tinytrain/numerics/fp16.py (conversions, exp/log) and fp16_kernels.py.
 *
 * Storage and conversion
 * ----------------------
 * A half is stored as its bit pattern (uint16_t); no _Float16 / __fp16 is needed (riscv gcc 12
 * has none), so host, Cortex-M4F and RV32 (with or without F) produce the same bits.
 * float -> half rounds to nearest, ties to even, with subnormal halves, overflow to +-Inf
 * (|x| >= 65520), and NaN -> quiet NaN keeping the top 9 payload bits (sign | 0x7E00 |
 * payload >> 13), which is what the Arm VCVT and x86 F16C instructions do, so an optimised
 * path using them can match bit for bit. half -> float is exact (subnormals normalised);
 * NaNs come back quiet (bit 22 set) with the payload shifted up by 13.
 *
 * Kernel numerics: the summation order is part of the contract
 * ---------------------------------------------------------------
 * Same conventions and the same documented chains as the FP32 kernels (tt_kernels.h: batch 1,
 * CHW, accumulate flags, parameter structs), with three differences:
 * - every input half is widened to float, every reduction is ONE sequential float chain
 *   acc = acc + a*b: a separate, rounded fp32 multiply, then a rounded fp32 add. No fmaf: numpy
 *   has no fused multiply-add, and with separate operations (compiled -ffp-contract=off) the
 *   numpy twin reproduces every bit by running the same chain (loop over the reduction index,
 *   vectorised over the outputs).
 * - the result is rounded to half once, when it is stored. accumulate = 1 starts the chain
 *   from the stored half (widened), so a gradient accumulated over a batch is rounded to half
 *   once per kernel call.
 * - exp/log are tt_expf_plain / tt_logf_plain below: float mul/add/div and bit operations only
 *   (no fmaf, no libm), so numpy reproduces them bit for bit as well.
 *
 * Loss scaling: the loss kernel multiplies the logit gradient by `scale`, which should be
 * loss_scale / batch with loss_scale a power of two (exact in float), so small gradients do
 * not flush to zero in half. The update kernels take inv_scale = 1 / loss_scale and undo it
 * in fp32 before applying the learning rate; they refuse (TT_ERR_NAN, nothing updated, g
 * zeroed) when a gradient is Inf/NaN, the signal for dynamic loss scaling to halve the scale.
 */
#ifndef TT_FP16_H
#define TT_FP16_H

#include <stdint.h>
#include <string.h>

#include "tt_kernels.h"
#include "tt_prng.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ conversions */
static inline uint16_t tt_f32_to_f16_inl(float f)
{
    uint32_t x, ax, sign;
    memcpy(&x, &f, sizeof x);
    sign = (x >> 16) & 0x8000U;
    ax = x & 0x7FFFFFFFU;
    if (ax >= 0x7F800000U) { /* Inf, or NaN made quiet */
        return (uint16_t)(sign | 0x7C00U |
                          ((ax > 0x7F800000U) ? (0x0200U | ((ax >> 13) & 0x03FFU)) : 0U));
    }
    if (ax >= 0x477FF000U) { /* >= 65520 = halfway between 65504 and 2^16: rounds to Inf */
        return (uint16_t)(sign | 0x7C00U);
    }
    if (ax >= 0x38800000U) { /* normal half: rebias the exponent, round at bit 13 */
        uint32_t m = ax - 0x38000000U;
        m += 0x0FFFU + ((m >> 13) & 1U);
        return (uint16_t)(sign | (m >> 13));
    }
    if (ax <= 0x33000000U) { /* <= 2^-25: rounds to zero (2^-25 is a tie, even is 0) */
        return (uint16_t)sign;
    }
    { /* subnormal half: the 24-bit significand shifted right by 14..24, rounded to even */
        const uint32_t sh = 126U - (ax >> 23);
        const uint32_t mant = (ax & 0x007FFFFFU) | 0x00800000U;
        const uint32_t rem = mant & ((1U << sh) - 1U);
        const uint32_t half = 1U << (sh - 1U);
        uint32_t q = mant >> sh;
        if (rem > half || (rem == half && (q & 1U))) {
            ++q;
        }
        return (uint16_t)(sign | q);
    }
}

static inline float tt_f16_to_f32_inl(uint16_t h)
{
    const uint32_t sign = ((uint32_t)h & 0x8000U) << 16;
    const uint32_t e = ((uint32_t)h >> 10) & 0x1FU;
    uint32_t m = (uint32_t)h & 0x03FFU, bits;
    float f;
    if (e == 0x1FU) {
        bits = sign | 0x7F800000U | (m ? (0x00400000U | (m << 13)) : 0U);
    } else if (e != 0U) {
        bits = sign | ((e + 112U) << 23) | (m << 13);
    } else if (m == 0U) {
        bits = sign;
    } else {
        uint32_t ee = 113U;
        while (!(m & 0x0400U)) {
            m <<= 1;
            --ee;
        }
        bits = sign | (ee << 23) | ((m & 0x03FFU) << 13);
    }
    memcpy(&f, &bits, sizeof f);
    return f;
}

uint16_t tt_f32_to_f16(float x);
float tt_f16_to_f32(uint16_t h);
tt_status tt_f32_to_f16_n(const float *x, uint16_t *h, int n);
tt_status tt_f16_to_f32_n(const uint16_t *h, float *x, int n);

/* TT_ERR_NAN if any of h[0..n) is Inf or NaN (exponent field all ones), else TT_OK: the
 * overflow test of dynamic loss scaling, run on all gradients before any update. */
tt_status tt_check_finite_f16(const uint16_t *h, int n);

/* e^x and ln(x) from float +, -, *, / and bit operations only (no fmaf, no libm): about 2 ulp
 * (exp) and 3 ulp (log) over the whole range; NaN in, NaN out; exp overflows to +Inf above
 * 88.72 and flushes through the subnormals to +0 below -103.9; log(0) = -Inf, log(x<0) = NaN. */
float tt_expf_plain(float x);
float tt_logf_plain(float x);

/* ------------------------------------------------------------------ GEMM and bias
 * Shapes and chains exactly as the f32 kernels (acc = acc + a*b). fwd init: b[j] or +0. */
tt_status tt_gemm_fwd_f16(const uint16_t *x, const uint16_t *w, const uint16_t *b,
                          uint16_t *TT_RESTRICT y, int n, int k, int m);
tt_status tt_gemm_bwd_x_f16(const uint16_t *gy, const uint16_t *w, uint16_t *TT_RESTRICT gx,
                            int n, int k, int m, int accumulate);
tt_status tt_gemm_bwd_w_f16(const uint16_t *gy, const uint16_t *x, uint16_t *TT_RESTRICT gw,
                            int n, int k, int m, int accumulate);
tt_status tt_bias_bwd_f16(const uint16_t *gy, uint16_t *TT_RESTRICT gb, int outer, int c,
                          int inner, int accumulate);

/* ------------------------------------------------------------------ convolution
 * fwd:   y[oc][oh][ow]       chain over (icg, kh, kw) ascending, init b[oc] or +0.
 * bwd_x: gx[ic][ih][iw]      chain over (oc of the group, kh, kw) ascending.
 * bwd_w: gw[oc][icg][kh][kw] chain over (oh, ow) ascending.   Padding taps are skipped. */
tt_status tt_conv2d_fwd_f16(const tt_conv2d_params *p, const uint16_t *x, const uint16_t *w,
                            const uint16_t *b, uint16_t *TT_RESTRICT y);
tt_status tt_conv2d_bwd_x_f16(const tt_conv2d_params *p, const uint16_t *gy, const uint16_t *w,
                              uint16_t *TT_RESTRICT gx, int accumulate);
tt_status tt_conv2d_bwd_w_f16(const tt_conv2d_params *p, const uint16_t *gy, const uint16_t *x,
                              uint16_t *TT_RESTRICT gw, int accumulate);

/* ------------------------------------------------------------------ ReLU (bit tests only)
 * fwd: negative non-NaN values (not -0) become +0, everything else passes. May run in place.
 * bwd: gx = gy where y > 0 (positive, non-zero, not NaN), else +0; accumulate adds (rounded
 * to half) where y > 0. gx may equal gy. */
tt_status tt_relu_fwd_f16(const uint16_t *x, uint16_t *y, int n);
tt_status tt_relu_bwd_x_f16(const uint16_t *gy, const uint16_t *y, uint16_t *gx, int n,
                            int accumulate);

/* ------------------------------------------------------------------ pooling (CHW)
 * As the f32 kernels (first maximum wins, NaN wins; avg: plain-add chain, one division).
 * bwd: gx zeroed (accumulate = 0), then each output, in (c, oh, ow) order, adds into its
 * cell(s): gx[cell] = half(float(gx[cell]) + g) with g = gy (max) or float(gy) / divisor (avg)
 * - every partial sum is stored, so rounded to half. */
tt_status tt_maxpool2d_fwd_f16(const tt_pool2d_params *p, const uint16_t *x,
                               uint16_t *TT_RESTRICT y);
tt_status tt_maxpool2d_bwd_x_f16(const tt_pool2d_params *p, const uint16_t *gy,
                                 const uint16_t *x, uint16_t *TT_RESTRICT gx, int accumulate);
tt_status tt_avgpool2d_fwd_f16(const tt_pool2d_params *p, const uint16_t *x,
                               uint16_t *TT_RESTRICT y);
tt_status tt_avgpool2d_bwd_x_f16(const tt_pool2d_params *p, const uint16_t *gy,
                                 uint16_t *TT_RESTRICT gx, int accumulate);
/* y[c] = (chain over hw) / hw; bwd: gx[c][t] = half(init + float(gy[c]) / hw) */
tt_status tt_global_avgpool_fwd_f16(const uint16_t *x, uint16_t *TT_RESTRICT y, int c, int hw);
tt_status tt_global_avgpool_bwd_x_f16(const uint16_t *gy, uint16_t *TT_RESTRICT gx, int c,
                                      int hw, int accumulate);

/* ------------------------------------------------------------------ broadcasting add
 * fwd: y = half(float(a) + float(b)); y may equal a or b when that operand is not broadcast.
 * bwd: g[e] = chain (plain adds, float) over the output positions that read e, in ascending
 * row-major order of y, init g[e] (accumulate) or +0; stored once. g may equal gy only when
 * the operand is not broadcast. */
tt_status tt_add_fwd_f16(const tt_bcast4 *p, const uint16_t *a, const uint16_t *b, uint16_t *y);
tt_status tt_add_bwd_f16(const tt_bcast4 *p, const uint16_t *gy, uint16_t *g, int which,
                         int accumulate);

/* ------------------------------------------------------------------ loss
 * softmax cross-entropy over rows of half logits, in float:
 *   m = max_j x_j; e_j = tt_expf_plain(x_j - m); s = chain over j; r = chain over j != label;
 *   loss_row = tt_logf_plain(s) - (x_label - m); loss = (chain over rows) / rows;
 *   g_j = half((e_j / s) * f) (j != label), g_label = half(-(r / s) * f), f = scale / rows.
 * scale = loss_scale / batch (see top). glogits may equal logits or be NULL; loss may be
 * NULL. TT_ERR_NAN (after writing) when the loss is not finite; TT_ERR_ARG for a bad label. */
tt_status tt_softmax_xent_f16(const uint16_t *logits, const int32_t *labels, int rows, int cols,
                              float scale, float *loss, uint16_t *glogits);

/* ------------------------------------------------------------------ optimizers
 * All in float, per element i ascending, then g[i] is zeroed:
 *   w  = master ? master[i] : float(w16[i])
 *   d  = float(g[i]) * inv_scale;  if weight_decay != 0: d = d + weight_decay * w
 *   sgd:      w = w - lr * d
 *   momentum: v = momentum * v + d;  w = w - lr * v'   where v' is v as STORED (half for the
 *             _f16 state, float for _v32)
 *   master[i] = w (if master); w16[i] = half(w)
 * master (fp32 master weights, optional) may be NULL. Before anything is written the whole g
 * is checked: any Inf/NaN -> g zeroed, w / v untouched, TT_ERR_NAN (skip the step, lower the
 * loss scale). */
tt_status tt_sgd_upd_f16(uint16_t *TT_RESTRICT w, uint16_t *TT_RESTRICT g, float *TT_RESTRICT master,
                         int n, float lr, float weight_decay, float inv_scale);
tt_status tt_momentum_upd_f16(uint16_t *TT_RESTRICT w, uint16_t *TT_RESTRICT g,
                              uint16_t *TT_RESTRICT v, float *TT_RESTRICT master, int n, float lr,
                              float momentum, float weight_decay, float inv_scale);
tt_status tt_momentum_upd_f16_v32(uint16_t *TT_RESTRICT w, uint16_t *TT_RESTRICT g,
                                  float *TT_RESTRICT v, float *TT_RESTRICT master, int n,
                                  float lr, float momentum, float weight_decay, float inv_scale);

/* ------------------------------------------------------------------ zeroth order (SPSA)
 * Half weights w16 with fp32 master weights: a perturbation is computed from the master and
 * rounded once, w16 = half(master + a*z); the restore is tt_f32_to_f16_n(master, w16), exact
 * because the master never changes during the passes (adding a*z to a half and subtracting
 * it again would round twice). The update is applied to the master, in the fp32 zo's
 * operations (tt_zo.h), and rounded to the half the forward pass reads.
 * z is regenerated from st exactly as tt_zo_axpy_f32 draws it (tt_zo.h: dist
 * TT_ZO_RADEMACHER, value i from bit i % 32 of draw i / 32, +-1; TT_ZO_GAUSS, one draw per
 * value, Irwin-Hall byte sum - 510 times float(1 / sqrt(21845))), afresh for every call, and
 * st advances by the draws used. Per element i ascending, every operation a rounded float op:
 *   tt_zo_perturb_f16:     w16 = half(master + a*z)
 *   tt_zo_update_f16:      master = master + a*z;  w16 = half(master)     (sgd: a = -lr coef)
 *   tt_zo_mom_acc_f16_v32: v = mu*v + a*z          (float state; mu = momentum for the first
 *   tt_zo_mom_acc_f16:     v = half(mu*float(v) + a*z)   direction of a step, 1 after; a = coef)
 *   tt_zo_mom_upd_f16_v32 / _f16: master = master + a*v;  w16 = half(master)   (a = -lr)
 * TT_ERR_ARG for NULL, n < 0 or an unknown dist. */
#ifndef TT_ZO_RADEMACHER
#define TT_ZO_RADEMACHER 0
#define TT_ZO_GAUSS 1
#endif
tt_status tt_zo_perturb_f16(const float *master, uint16_t *TT_RESTRICT w, int n, tt_prng *st,
                            float a, int dist);
tt_status tt_zo_update_f16(float *TT_RESTRICT master, uint16_t *TT_RESTRICT w, int n, tt_prng *st,
                           float a, int dist);
tt_status tt_zo_mom_acc_f16_v32(float *v, int n, tt_prng *st, float mu, float a, int dist);
tt_status tt_zo_mom_acc_f16(uint16_t *v, int n, tt_prng *st, float mu, float a, int dist);
tt_status tt_zo_mom_upd_f16_v32(float *TT_RESTRICT master, uint16_t *TT_RESTRICT w,
                                const float *v, int n, float a);
tt_status tt_zo_mom_upd_f16(float *TT_RESTRICT master, uint16_t *TT_RESTRICT w,
                            const uint16_t *v, int n, float a);

/* ------------------------------------------------------------------ forward mode (jvp)
 * Forward-gradient training (tinytrain/passes/forward_mode.py; docs/fp16.md section 6): one
 * forward pass per direction k carries a tangent beside every activation that depends on a
 * perturbed parameter. Tangents are halves like the activations, each rounded once, when its
 * kernel stores it; in between everything is fp32 chains acc = acc + a*b (no fmaf). dL.v is
 * never stored as a half. The update is the zo update above, with z = v (tt_zo_update_f16,
 * tt_zo_mom_acc_f16[_v32], tt_zo_mom_upd_f16[_v32]).
 *
 * Parameter tangents are drawn, never stored. A tt_tangent_f16 is positioned at the first
 * value of one parameter tensor in the (seed, stream) PCG32 stream by skipping the draws of
 * the perturbed parameters before it, and then yields the tensor's values in memory order,
 * each exactly the z tt_zo_update_f16 / tt_zo_axpy_f32 use for it (rademacher +-1 from bit
 * i % 32 of draw i / 32; gaussian one draw per value, (b0 + b1 + b2 + b3 - 510) times
 * float(1 / sqrt(21845))). It is tt_jvp.h's tt_tangent for the fp16 runtime, which does not
 * ship the fp32 kernels.
 *
 * Chains (one per output element, rounded to half once when stored):
 *   gemm  ty[i][j]       = half(0 + chain over kk of tx[i][kk] * w[j][kk]
 *                                  + chain over kk of x[i][kk] * v[j][kk]  + vb[j])
 *   conv  ty[oc][oh][ow] = half(0 + chain over (icg, kh, kw) of tx * w
 *                                  + chain over (icg, kh, kw) of x * v     + vb[oc])
 * (taps outside the input skipped, their v drawn all the same). Each part is present only when
 * its tangent is: tx NULL = no input tangent (w unused, may be NULL), vw / vb NULL = frozen
 * weight / bias (x unused without vw). Rademacher x * (+-1) is exact, so it is a plain
 * add or subtract. The loops are output-stationary (the only way to keep every chain in fp32
 * without a float buffer): the weight tangents of one output row (gemm) or output channel
 * (conv) are re-drawn from a copy of the generator state for every batch row (gemm) or output
 * position (conv); the first TT_JVP_F16_VCACHE of a conv channel are kept in a stack cache.
 * At return each generator has advanced exactly past its tensor. ty must not overlap anything.
 */
#ifndef TT_JVP_F16_VCACHE
#define TT_JVP_F16_VCACHE 64 /* floats of stack per tt_conv2d_jvp_f16 call */
#endif

typedef struct {
    tt_prng st;
    uint32_t word; /* rademacher: the draw being consumed, already shifted */
    int bits;      /* rademacher: bits of `word` left (0: draw next) */
    int dist;      /* TT_ZO_RADEMACHER or TT_ZO_GAUSS */
} tt_tangent_f16;

/* Seed (seed, stream) and skip `skip` draws. TT_ERR_ARG for NULL or an unknown dist. */
tt_status tt_tangent_init_f16(tt_tangent_f16 *g, uint64_t seed, uint64_t stream, uint32_t skip,
                              int dist);
/* The next n tangent values, each rounded to half (a small parameter tangent, e.g. of a
 * trainable Add operand: rademacher values are exact, gaussian ones round once). */
tt_status tt_tangent_fill_f16(tt_tangent_f16 *g, uint16_t *v, int n);
tt_status tt_gemm_jvp_f16(const uint16_t *x, const uint16_t *tx, const uint16_t *w,
                          uint16_t *TT_RESTRICT ty, int n, int k, int m, tt_tangent_f16 *vw,
                          tt_tangent_f16 *vb);
tt_status tt_conv2d_jvp_f16(const tt_conv2d_params *p, const uint16_t *x, const uint16_t *tx,
                            const uint16_t *w, uint16_t *TT_RESTRICT ty, tt_tangent_f16 *vw,
                            tt_tangent_f16 *vb);
/* ty = tx at the window's argmax of x (first maximum, first NaN wins: the cell
 * tt_maxpool2d_bwd_x_f16 sends the gradient to). Exact: no arithmetic. */
tt_status tt_maxpool2d_jvp_f16(const tt_pool2d_params *p, const uint16_t *x, const uint16_t *tx,
                               uint16_t *TT_RESTRICT ty);
/* One operand tangent NULL (a frozen operand): ty = the other, broadcast to the output, bit
 * copies (ty may equal a non-broadcast operand). Both given: tt_add_fwd_f16. */
tt_status tt_add_jvp_f16(const tt_bcast4 *p, const uint16_t *ta, const uint16_t *tb, uint16_t *ty);
/* dL.t of the softmax cross-entropy, fp32 throughout: per row m, e_j, s, r exactly as
 * tt_softmax_xent_f16, f = 1 / rows, g_j = (e_j / s) * f (j != label), g_label = -(r / s) * f,
 * then *dl = chain over (row, j) ascending of g_j * float(t_j) from +0. The gradient is not
 * rounded to half (no loss scale needed). TT_ERR_NAN (after writing) when *dl is not finite,
 * TT_ERR_ARG for a bad label. */
tt_status tt_softmax_xent_jvp_f16(const uint16_t *logits, const int32_t *labels, int rows,
                                  int cols, const uint16_t *tlogits, float *dl);

#ifdef __cplusplus
}
#endif

#endif /* TT_FP16_H */
