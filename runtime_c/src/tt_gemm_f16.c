/*
 * tt_gemm_f16.c - FP16-storage GEMM (forward, input gradient, weight gradient) and bias
 * gradient. Every output is one float chain acc = acc + a*b (rounded product, rounded sum;
 * build with -ffp-contract=off) in the order given in tt_fp16.h, rounded to half once.
 */
#include <stddef.h>

#include "tt_fp16.h"

#define H2F(h) tt_f16_to_f32_inl(h)
#define F2H(f) tt_f32_to_f16_inl(f)

tt_status tt_gemm_fwd_f16(const uint16_t *x, const uint16_t *w, const uint16_t *b,
                          uint16_t *TT_RESTRICT y, int n, int k, int m)
{
    int i, j, kk;
    if (n < 0 || k < 0 || m < 0 || (n > 0 && m > 0 && (x == NULL || w == NULL || y == NULL))) {
        return TT_ERR_ARG;
    }
    for (i = 0; i < n; ++i) {
        const uint16_t *xi = x + (size_t)i * (size_t)k;
        for (j = 0; j < m; ++j) {
            const uint16_t *wj = w + (size_t)j * (size_t)k;
            float acc = (b != NULL) ? H2F(b[j]) : 0.0f;
            for (kk = 0; kk < k; ++kk) {
                const float p = H2F(xi[kk]) * H2F(wj[kk]);
                acc = acc + p;
            }
            y[(size_t)i * (size_t)m + (size_t)j] = F2H(acc);
        }
    }
    return TT_OK;
}

tt_status tt_gemm_bwd_x_f16(const uint16_t *gy, const uint16_t *w, uint16_t *TT_RESTRICT gx,
                            int n, int k, int m, int accumulate)
{
    int i, j, kk;
    if (n < 0 || k < 0 || m < 0 || (accumulate != 0 && accumulate != 1) ||
        (n > 0 && k > 0 && (gy == NULL || w == NULL || gx == NULL))) {
        return TT_ERR_ARG;
    }
    for (i = 0; i < n; ++i) {
        const uint16_t *gyi = gy + (size_t)i * (size_t)m;
        uint16_t *gxi = gx + (size_t)i * (size_t)k;
        for (kk = 0; kk < k; ++kk) {
            float acc = accumulate ? H2F(gxi[kk]) : 0.0f;
            for (j = 0; j < m; ++j) {
                const float p = H2F(gyi[j]) * H2F(w[(size_t)j * (size_t)k + (size_t)kk]);
                acc = acc + p;
            }
            gxi[kk] = F2H(acc);
        }
    }
    return TT_OK;
}

tt_status tt_gemm_bwd_w_f16(const uint16_t *gy, const uint16_t *x, uint16_t *TT_RESTRICT gw,
                            int n, int k, int m, int accumulate)
{
    int i, j, kk;
    if (n < 0 || k < 0 || m < 0 || (accumulate != 0 && accumulate != 1) ||
        (m > 0 && k > 0 && (gy == NULL || x == NULL || gw == NULL))) {
        return TT_ERR_ARG;
    }
    for (j = 0; j < m; ++j) {
        uint16_t *gwj = gw + (size_t)j * (size_t)k;
        for (kk = 0; kk < k; ++kk) {
            float acc = accumulate ? H2F(gwj[kk]) : 0.0f;
            for (i = 0; i < n; ++i) {
                const float p = H2F(gy[(size_t)i * (size_t)m + (size_t)j]) *
                                H2F(x[(size_t)i * (size_t)k + (size_t)kk]);
                acc = acc + p;
            }
            gwj[kk] = F2H(acc);
        }
    }
    return TT_OK;
}

tt_status tt_bias_bwd_f16(const uint16_t *gy, uint16_t *TT_RESTRICT gb, int outer, int c,
                          int inner, int accumulate)
{
    int o, ch, t;
    if (outer < 0 || c < 0 || inner < 0 || (accumulate != 0 && accumulate != 1) ||
        (c > 0 && (gy == NULL || gb == NULL))) {
        return TT_ERR_ARG;
    }
    for (ch = 0; ch < c; ++ch) {
        float acc = accumulate ? H2F(gb[ch]) : 0.0f;
        for (o = 0; o < outer; ++o) {
            const uint16_t *p = gy + ((size_t)o * (size_t)c + (size_t)ch) * (size_t)inner;
            for (t = 0; t < inner; ++t) {
                acc = acc + H2F(p[t]);
            }
        }
        gb[ch] = F2H(acc);
    }
    return TT_OK;
}
