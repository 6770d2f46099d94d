/* tt_jvp.h - forward-mode (JVP) kernels for forward-gradient training, FP32.
 *
 * A training pass carries a tangent t beside every activation that depends on a trainable
 * parameter; the tangents v of the parameters themselves are drawn from the PRNG, never
 * stored across steps (tinytrain/passes/forward_mode.py is the numpy twin).
 *
 * Parameter tangents: a tt_tangent generator is positioned at the first value of one
 * parameter tensor in the (seed, tt_prng_stream_id(step, k)) stream by skipping the draws of
 * the trainable parameters before it (tt_prng_advance), and then yields the tensor's values in
 * memory order, each exactly the z value tt_zo_axpy_f32 would add for it (tt_zo.h):
 *   TT_ZO_RADEMACHER  value i = +1 / -1 from bit i % 32 of draw i / 32 (LSB first)
 *   TT_ZO_GAUSS       value i = (Irwin-Hall byte sum - 510) * float(1/sqrt(21845)), one draw
 * The Gemm and Conv JVP kernels consume the weight tangent in weight memory order while they
 * accumulate x . v_w (weight-stationary loops), so no tangent tensor is ever materialised.
 *
 * Summation order (part of the contract, as in tt_kernels.h): every tangent output is one
 * chain. Gemm / Conv: init = the forward kernel's chain on t_x with W (0 when t_x is NULL),
 * then fmaf(x, v, acc) over the weight elements of that output in weight memory order
 * (Conv: (icg, kh, kw) ascending, taps outside the input skipped), then + v_b. A Rademacher v
 * is applied as acc + x or acc - x, which is the same bits as fmaf(x, +-1, acc).
 */
#ifndef TT_JVP_H
#define TT_JVP_H

#include <stdint.h>

#include "tt_kernels.h"
#include "tt_prng.h"
#include "tt_zo.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    tt_prng st;
    uint32_t word; /* Rademacher: draw being consumed, already shifted */
    int bits;      /* Rademacher: bits of `word` left (0: draw next) */
    int dist;      /* TT_ZO_RADEMACHER or TT_ZO_GAUSS */
} tt_tangent;

/* Position g at the first tangent value of a parameter tensor: seed the (seed, stream) state
 * and skip `skip` draws. TT_ERR_ARG for NULL or an unknown dist. */
tt_status tt_tangent_init(tt_tangent *g, uint64_t seed, uint64_t stream, uint32_t skip, int dist);
/* The next n tangent values (materialises a small parameter tangent, e.g. of a Mul scale). */
tt_status tt_tangent_fill_f32(tt_tangent *g, float *v, int n);

/* ty = tx W^T + x V^T + v_b for y = x W^T + b (x [n][k], W [m][k]); tx NULL: no input
 * tangent (W unused, may be NULL), vw / vb NULL: frozen weight / bias (x unused without vw).
 * ty must not overlap any other argument. */
tt_status tt_gemm_jvp_f32(const float *x, const float *tx, const float *w, float *TT_RESTRICT ty,
                          int n, int k, int m, tt_tangent *vw, tt_tangent *vb);
/* ty = conv(tx, W) + conv(x, V) + v_b (one chain per output, see above); NULLs as for Gemm. */
tt_status tt_conv2d_jvp_f32(const tt_conv2d_params *p, const float *x, const float *tx,
                            const float *w, float *TT_RESTRICT ty, tt_tangent *vw, tt_tangent *vb);
/* ty[c][oh][ow] = tx at the window's argmax of x (the first maximum; padding never wins; the
 * first NaN wins), the same cell tt_maxpool2d_bwd_x_f32 sends the gradient to. */
tt_status tt_maxpool2d_jvp_f32(const tt_pool2d_params *p, const float *x, const float *tx,
                               float *TT_RESTRICT ty);
/* ty = ta + tb (broadcast as in tt_add_fwd_f32); one of ta / tb may be NULL (zero tangent):
 * ty is then that operand broadcast to the output. ty may equal a non-broadcast operand. */
tt_status tt_add_jvp_f32(const tt_bcast4 *p, const float *ta, const float *tb, float *ty);
/* ty = ta * b + a * tb: acc = ta*b (rounded), then fmaf(a, tb, acc); ta or tb may be NULL.
 * ty may equal a non-broadcast ta or tb. */
tt_status tt_mul_jvp_f32(const tt_bcast4 *p, const float *a, const float *b, const float *ta,
                         const float *tb, float *ty);
/* *out = fmaf chain over i ascending of a[i] * b[i] (the loss tangent dL . t). */
tt_status tt_dot_f32(const float *a, const float *b, int n, float *out);

#ifdef __cplusplus
}
#endif
#endif /* TT_JVP_H */
