/*
 * tt_act_f16.c - ReLU on binary16 bit patterns (integer tests only, no conversion on the
 * forward pass). In place is legal: element i is read before it is written.
 */
#include <stddef.h>

#include "tt_fp16.h"

/* negative, non-zero and not NaN */
static int is_neg(uint16_t h)
{
    return (h & 0x8000U) != 0U && (h & 0x7FFFU) != 0U && (h & 0x7FFFU) <= 0x7C00U;
}

/* positive, non-zero and not NaN */
static int is_pos(uint16_t h)
{
    return (h & 0x8000U) == 0U && h != 0U && h <= 0x7C00U;
}

tt_status tt_relu_fwd_f16(const uint16_t *x, uint16_t *y, int n)
{
    int i;
    if (n < 0 || (n > 0 && (x == NULL || y == NULL))) {
        return TT_ERR_ARG;
    }
    for (i = 0; i < n; ++i) {
        const uint16_t v = x[i];
        y[i] = is_neg(v) ? (uint16_t)0U : v;
    }
    return TT_OK;
}

tt_status tt_relu_bwd_x_f16(const uint16_t *gy, const uint16_t *y, uint16_t *gx, int n,
                            int accumulate)
{
    int i;
    if (n < 0 || (accumulate != 0 && accumulate != 1) ||
        (n > 0 && (gy == NULL || y == NULL || gx == NULL))) {
        return TT_ERR_ARG;
    }
    for (i = 0; i < n; ++i) {
        if (accumulate) {
            if (is_pos(y[i])) {
                gx[i] = tt_f32_to_f16_inl(tt_f16_to_f32_inl(gx[i]) + tt_f16_to_f32_inl(gy[i]));
            }
        } else {
            gx[i] = is_pos(y[i]) ? gy[i] : (uint16_t)0U;
        }
    }
    return TT_OK;
}
