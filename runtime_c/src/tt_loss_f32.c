/*
 * tt_loss_f32.c - softmax cross-entropy and mean squared error (loss and its gradient).
 *
 * Both may write the gradient over the input: each row / element is read completely before
 * the corresponding gradient is stored (cross-entropy keeps e_j = exp(x_j - max) in the
 * gradient buffer between its passes).
 */
#include "tt_kernels.h"

tt_status tt_softmax_xent_f32(const float *logits, const int32_t *labels, int rows, int cols,
                              float scale, float *loss, float *glogits)
{
    int r, j;
    float total = 0.0f, f, l;
    if (rows <= 0 || cols <= 0 || logits == NULL || labels == NULL) {
        return TT_ERR_ARG;
    }
    for (r = 0; r < rows; ++r) {
        if (labels[r] < 0 || labels[r] >= cols) {
            return TT_ERR_ARG;
        }
    }
    f = scale / (float)rows;
    for (r = 0; r < rows; ++r) {
        const float *xr = logits + (size_t)r * (size_t)cols;
        float *gr = (glogits != NULL) ? glogits + (size_t)r * (size_t)cols : NULL;
        const int lab = (int)labels[r];
        const float xl = xr[lab];
        float m = xr[0], s = 0.0f, o = 0.0f;
        for (j = 1; j < cols; ++j) {
            if (xr[j] > m) {
                m = xr[j];
            }
        }
        for (j = 0; j < cols; ++j) {
            const float e = tt_expf(xr[j] - m);
            s = s + e;
            if (j != lab) {
                o = o + e;
            }
            if (gr != NULL) {
                gr[j] = e;
            }
        }
        /* -log p_label. When the label holds the maximum, -log p = log(1 + o) with o the sum of
         * the other exponentials: log1p keeps full relative accuracy for confident, correct
         * predictions, where log(s) - 0 would lose it. Otherwise both terms are positive. */
        l = (xl == m) ? tt_log1pf(o) : tt_logf(s) - (xl - m);
        total = total + l;
        if (gr != NULL) {
            for (j = 0; j < cols; ++j) {
                gr[j] = (gr[j] / s) * f;
            }
            /* p_label - 1 = -o/s, without the cancellation of (e_label/s) - 1 */
            gr[lab] = -(o / s) * f;
        }
    }
    l = total / (float)rows;
    if (loss != NULL) {
        *loss = l;
    }
    return (l - l == 0.0f) ? TT_OK : TT_ERR_NAN;
}

tt_status tt_mse_f32(const float *pred, const float *target, int n, float scale, float *loss,
                     float *gpred)
{
    int i;
    float acc = 0.0f, l;
    if (n <= 0 || pred == NULL || target == NULL) {
        return TT_ERR_ARG;
    }
    if (gpred != NULL) {
        const float f = (2.0f * scale) / (float)n;
        for (i = 0; i < n; ++i) {
            const float d = pred[i] - target[i];
            acc = TT_FMAF(d, d, acc);
            gpred[i] = d * f;
        }
    } else {
        for (i = 0; i < n; ++i) {
            const float d = pred[i] - target[i];
            acc = TT_FMAF(d, d, acc);
        }
    }
    l = acc / (float)n;
    if (loss != NULL) {
        *loss = l;
    }
    return (l - l == 0.0f) ? TT_OK : TT_ERR_NAN;
}
