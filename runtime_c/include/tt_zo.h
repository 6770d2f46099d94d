/* tt_zo.h - zeroth-order (forward-gradient) training helpers, FP32.
 *
 * The perturbation z is never stored: every kernel that needs it regenerates it from a PRNG
 * state seeded with (seed, tt_prng_stream_id(step, k)), walking the trainable parameters in
 * export order, so "perturb", "restore" and "update" all see the same z.
 *   dist TT_ZO_RADEMACHER: z = +-1, value i from bit i % 32 of draw i / 32 (per tensor)
 *   dist TT_ZO_GAUSS:      z = tt_prng_gauss_i16 * (1 / TT_PRNG_GAUSS_SD) (one draw per value)
 * Arithmetic is plain float (z*a rounded, then the add), no fma, so the numpy twin
 * (tinytrain/passes/zeroth_order.py) reproduces it bit for bit.
 */
#ifndef TT_ZO_H
#define TT_ZO_H

#include "tt_prng.h"
#include "tt_status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TT_ZO_RADEMACHER 0
#define TT_ZO_GAUSS 1

/* y[i] += a * z[i], z drawn from st (advances st exactly as the numpy twin does). */
tt_status tt_zo_axpy_f32(float *y, int n, float a, tt_prng *st, int dist);
/* y[i] += a * x[i] */
tt_status tt_axpy_f32(float *y, const float *x, int n, float a);

#ifdef __cplusplus
}
#endif
#endif /* TT_ZO_H */
