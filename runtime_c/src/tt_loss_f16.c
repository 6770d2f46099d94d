/*
 * tt_loss_f16.c - softmax cross-entropy on half logits with a loss-scaled half gradient.
 * Specification in tt_fp16.h; exp / log are the plain float versions (tt_fp16.c).
 * The row is read completely (max, then the sums) before its gradient is written, so
 * glogits may equal logits.
 */
#include <stddef.h>

#include "tt_fp16.h"

#define H2F(h) tt_f16_to_f32_inl(h)
#define F2H(f) tt_f32_to_f16_inl(f)

tt_status tt_softmax_xent_f16(const uint16_t *logits, const int32_t *labels, int rows, int cols,
                              float scale, float *loss, uint16_t *glogits)
{
    float total = 0.0f, f, l;
    int r, j;
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
        const uint16_t *x = logits + (size_t)r * (size_t)cols;
        const int label = (int)labels[r];
        float m = H2F(x[0]), s = 0.0f, q = 0.0f, xl;
        for (j = 1; j < cols; ++j) {
            const float v = H2F(x[j]);
            m = (v > m) ? v : m;
        }
        for (j = 0; j < cols; ++j) {
            const float e = tt_expf_plain(H2F(x[j]) - m);
            s = s + e;
            if (j != label) {
                q = q + e;
            }
        }
        xl = H2F(x[label]) - m;
        l = tt_logf_plain(s) - xl;
        total = total + l;
        if (glogits != NULL) {
            uint16_t *g = glogits + (size_t)r * (size_t)cols;
            const float gl = -(q / s) * f;
            for (j = 0; j < cols; ++j) {
                if (j != label) {
                    const float e = tt_expf_plain(H2F(x[j]) - m);
                    g[j] = F2H((e / s) * f);
                }
            }
            g[label] = F2H(gl);
        }
    }
    l = total / (float)rows;
    if (loss != NULL) {
        *loss = l;
    }
    return (l - l == 0.0f) ? TT_OK : TT_ERR_NAN;
}
