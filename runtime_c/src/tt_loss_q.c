/*
 * tt_loss_q.c - integer softmax cross-entropy on int8 / int16 logits (no floating point, so it
 * runs bit-identically on cores without an FPU). Specification in tt_qkernels.h; the integer
 * exp / log are tt_exp_q24_q30 / tt_log_q30_q24 (tt_fixed.c).
 *
 * Instantiated twice (see tt_gemm_q.c): _q8 and _q16 (only the logit type differs).
 */
#ifndef TT_Q_TEMPLATE_PASS

#include <stddef.h>

#include "tt_qkernels.h"

/* round(s / d) ties away from zero, d > 0 */
static int64_t div_round(int64_t s, int64_t d)
{
    return (s > 0) ? (s + d / 2) / d : (s - d / 2) / d;
}

#define TT_Q_CAT2(a, b) a##b
#define TT_Q_CAT(a, b) TT_Q_CAT2(a, b)
#define TT_Q(name) TT_Q_CAT(name, TQ_SUF)
#define TT_Q_TEMPLATE_PASS

#define TQ int8_t
#define TQ_SUF _q8
#include "tt_loss_q.c"
#undef TQ
#undef TQ_SUF

#define TQ int16_t
#define TQ_SUF _q16
#include "tt_loss_q.c"

#else /* ======================================================== template body */

tt_status TT_Q(tt_softmax_xent)(const TQ *logits, const int32_t *labels, int rows, int cols,
                                int32_t x_mult, int x_shift, int32_t *loss_q24,
                                int32_t *glogits_q30)
{
    int64_t total = 0;
    int r, j;
    if (rows <= 0 || cols <= 0 || logits == NULL || labels == NULL || x_mult < 0 ||
        x_shift < -31 || x_shift > 30) {
        return TT_ERR_ARG;
    }
    for (r = 0; r < rows; ++r) {
        if (labels[r] < 0 || labels[r] >= cols) {
            return TT_ERR_ARG;
        }
    }
    for (r = 0; r < rows; ++r) {
        const TQ *x = logits + (size_t)r * (size_t)cols;
        const int label = (int)labels[r];
        int32_t mx = x[0], z_label;
        int64_t s = 0;
        for (j = 1; j < cols; ++j) {
            mx = (x[j] > mx) ? x[j] : mx;
        }
        /* pass 1: S = sum of e^(z_j) */
        for (j = 0; j < cols; ++j) {
            const int64_t d = (int64_t)x[j] - mx;
            s += tt_exp_q24_q30(tt_sat32(tt_shift_round64(d * x_mult, x_shift - 7)));
        }
        z_label = tt_sat32(tt_shift_round64(((int64_t)x[label] - mx) * x_mult, x_shift - 7));
        total += tt_sat32((int64_t)tt_log_q30_q24(s) - z_label);
        /* pass 2: gradient p_j - onehot_j (recomputes e_j rather than storing it) */
        if (glogits_q30 != NULL) {
            int32_t *g = glogits_q30 + (size_t)r * (size_t)cols;
            for (j = 0; j < cols; ++j) {
                const int64_t d = (int64_t)x[j] - mx;
                const int64_t e =
                    tt_exp_q24_q30(tt_sat32(tt_shift_round64(d * x_mult, x_shift - 7)));
                const int64_t p = (e * ((int64_t)1 << 30) + s / 2) / s;
                g[j] = (int32_t)(p - (j == label ? ((int64_t)1 << 30) : 0));
            }
        }
    }
    if (loss_q24 != NULL) {
        *loss_q24 = tt_sat32(div_round(total, rows));
    }
    return TT_OK;
}

#endif /* TT_Q_TEMPLATE_PASS */
