/*
 * tt_optim_f16.c - SGD and SGD+momentum on half weights, with loss-scale removal, optional
 * fp32 master weights and half or float momentum state. Specification in tt_fp16.h.
 */
#include <stddef.h>

#include "tt_fp16.h"

#define H2F(h) tt_f16_to_f32_inl(h)
#define F2H(f) tt_f32_to_f16_inl(f)

/* 1 if every g is finite; exponent field 31 is Inf or NaN */
static int all_finite16(const uint16_t *g, int n)
{
    int i;
    for (i = 0; i < n; ++i) {
        if ((g[i] & 0x7C00U) == 0x7C00U) {
            return 0;
        }
    }
    return 1;
}

static void zero16(uint16_t *g, int n)
{
    int i;
    for (i = 0; i < n; ++i) {
        g[i] = 0U;
    }
}

/* d = g * inv_scale (+ weight_decay * w) */
static float grad_term(uint16_t g, float w, float weight_decay, float inv_scale)
{
    float d = H2F(g) * inv_scale;
    if (weight_decay != 0.0f) {
        const float t = weight_decay * w;
        d = d + t;
    }
    return d;
}

tt_status tt_sgd_upd_f16(uint16_t *TT_RESTRICT w, uint16_t *TT_RESTRICT g, float *TT_RESTRICT master,
                         int n, float lr, float weight_decay, float inv_scale)
{
    int i;
    if (n < 0 || (n > 0 && (w == NULL || g == NULL))) {
        return TT_ERR_ARG;
    }
    if (!all_finite16(g, n)) {
        zero16(g, n);
        return TT_ERR_NAN;
    }
    for (i = 0; i < n; ++i) {
        float wf = master ? master[i] : H2F(w[i]);
        const float d = grad_term(g[i], wf, weight_decay, inv_scale);
        const float step = lr * d;
        wf = wf - step;
        if (master) {
            master[i] = wf;
        }
        w[i] = F2H(wf);
        g[i] = 0U;
    }
    return TT_OK;
}

tt_status tt_momentum_upd_f16(uint16_t *TT_RESTRICT w, uint16_t *TT_RESTRICT g,
                              uint16_t *TT_RESTRICT v, float *TT_RESTRICT master, int n, float lr,
                              float momentum, float weight_decay, float inv_scale)
{
    int i;
    if (n < 0 || (n > 0 && (w == NULL || g == NULL || v == NULL))) {
        return TT_ERR_ARG;
    }
    if (!all_finite16(g, n)) {
        zero16(g, n);
        return TT_ERR_NAN;
    }
    for (i = 0; i < n; ++i) {
        float wf = master ? master[i] : H2F(w[i]);
        const float d = grad_term(g[i], wf, weight_decay, inv_scale);
        float vf = momentum * H2F(v[i]), step;
        vf = vf + d;
        v[i] = F2H(vf);
        step = lr * H2F(v[i]);
        wf = wf - step;
        if (master) {
            master[i] = wf;
        }
        w[i] = F2H(wf);
        g[i] = 0U;
    }
    return TT_OK;
}

tt_status tt_momentum_upd_f16_v32(uint16_t *TT_RESTRICT w, uint16_t *TT_RESTRICT g,
                                  float *TT_RESTRICT v, float *TT_RESTRICT master, int n,
                                  float lr, float momentum, float weight_decay, float inv_scale)
{
    int i;
    if (n < 0 || (n > 0 && (w == NULL || g == NULL || v == NULL))) {
        return TT_ERR_ARG;
    }
    if (!all_finite16(g, n)) {
        zero16(g, n);
        return TT_ERR_NAN;
    }
    for (i = 0; i < n; ++i) {
        float wf = master ? master[i] : H2F(w[i]);
        const float d = grad_term(g[i], wf, weight_decay, inv_scale);
        float vf = momentum * v[i], step;
        vf = vf + d;
        v[i] = vf;
        step = lr * vf;
        wf = wf - step;
        if (master) {
            master[i] = wf;
        }
        w[i] = F2H(wf);
        g[i] = 0U;
    }
    return TT_OK;
}
