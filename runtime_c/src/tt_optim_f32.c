/*
 * tt_optim_f32.c - SGD, SGD with momentum, Adam (torch.optim semantics). Each updates the
 * parameters in place and then zeroes the gradient, so the next batch can accumulate into it.
 * With weight_decay = 0 the decay term TT_FMAF(0, w, g) == g for every finite w, so the
 * loops below skip it without changing any result.
 */
#include "tt_kernels.h"

#define TT_CHECK_OPT(n) \
    do {                \
        if ((n) < 0) {  \
            return TT_ERR_ARG; \
        }               \
    } while (0)

tt_status tt_sgd_upd_f32(float *TT_RESTRICT w, float *TT_RESTRICT g, int n, float lr,
                         float weight_decay)
{
    const float nlr = -lr;
    int i;
    TT_CHECK_OPT(n);
    if (n > 0 && (w == NULL || g == NULL)) {
        return TT_ERR_ARG;
    }
    if (weight_decay != 0.0f) {
        for (i = 0; i < n; ++i) {
            const float wi = w[i];
            w[i] = TT_FMAF(nlr, TT_FMAF(weight_decay, wi, g[i]), wi);
            g[i] = 0.0f;
        }
    } else {
        for (i = 0; i < n; ++i) {
            w[i] = TT_FMAF(nlr, g[i], w[i]);
            g[i] = 0.0f;
        }
    }
    return TT_OK;
}

tt_status tt_momentum_upd_f32(float *TT_RESTRICT w, float *TT_RESTRICT g, float *TT_RESTRICT v,
                              int n, float lr, float momentum, float weight_decay)
{
    const float nlr = -lr;
    int i;
    TT_CHECK_OPT(n);
    if (n > 0 && (w == NULL || g == NULL || v == NULL)) {
        return TT_ERR_ARG;
    }
    for (i = 0; i < n; ++i) {
        const float wi = w[i];
        const float d = (weight_decay != 0.0f) ? TT_FMAF(weight_decay, wi, g[i]) : g[i];
        const float vi = TT_FMAF(momentum, v[i], d);
        v[i] = vi;
        w[i] = TT_FMAF(nlr, vi, wi);
        g[i] = 0.0f;
    }
    return TT_OK;
}

/* beta^t by square-and-multiply over the bits of t, most significant first: a fixed sequence
 * of correctly rounded multiplications, so every target gets the same bits (powf does not). */
static float pow_int(float beta, int t)
{
    float r = 1.0f;
    int bit = 30;
    while (bit >= 0 && ((t >> bit) & 1) == 0) {
        --bit;
    }
    for (; bit >= 0; --bit) {
        r = r * r;
        if ((t >> bit) & 1) {
            r = r * beta;
        }
    }
    return r;
}

tt_status tt_adam_upd_f32(float *TT_RESTRICT w, float *TT_RESTRICT g, float *TT_RESTRICT m,
                          float *TT_RESTRICT v, int n, float lr, float beta1, float beta2,
                          float eps, float weight_decay, int t)
{
    const float omb1 = 1.0f - beta1, omb2 = 1.0f - beta2;
    float bc1, bc2, step, inv_bc2_sqrt;
    int i;
    TT_CHECK_OPT(n);
    if (t < 1 || (n > 0 && (w == NULL || g == NULL || m == NULL || v == NULL))) {
        return TT_ERR_ARG;
    }
    bc1 = 1.0f - pow_int(beta1, t);
    bc2 = 1.0f - pow_int(beta2, t);
    step = lr / bc1;
    inv_bc2_sqrt = 1.0f / sqrtf(bc2);
    for (i = 0; i < n; ++i) {
        const float wi = w[i];
        const float d = (weight_decay != 0.0f) ? TT_FMAF(weight_decay, wi, g[i]) : g[i];
        const float mi = TT_FMAF(beta1, m[i], omb1 * d);
        const float vi = TT_FMAF(beta2, v[i], (omb2 * d) * d);
        const float den = TT_FMAF(sqrtf(vi), inv_bc2_sqrt, eps);
        m[i] = mi;
        v[i] = vi;
        w[i] = TT_FMAF(-step, mi / den, wi);
        g[i] = 0.0f;
    }
    return TT_OK;
}
