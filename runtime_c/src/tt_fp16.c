/*
 * tt_fp16.c - binary16 conversions and the plain (no fmaf, no libm) exp / log.
 *
 * tt_expf_plain / tt_logf_plain are written so that each line is one IEEE float operation
 * whose order numpy can repeat (tinytrain/numerics/fp16.py): constants are exact float
 * literals, products and sums are separate statements, no expression mixes float and double.
 */
#include "tt_fp16.h"

uint16_t tt_f32_to_f16(float x)
{
    return tt_f32_to_f16_inl(x);
}

float tt_f16_to_f32(uint16_t h)
{
    return tt_f16_to_f32_inl(h);
}

tt_status tt_f32_to_f16_n(const float *x, uint16_t *h, int n)
{
    int i;
    if (n < 0 || (n > 0 && (x == NULL || h == NULL))) {
        return TT_ERR_ARG;
    }
    for (i = 0; i < n; ++i) {
        h[i] = tt_f32_to_f16_inl(x[i]);
    }
    return TT_OK;
}

tt_status tt_f16_to_f32_n(const uint16_t *h, float *x, int n)
{
    int i;
    if (n < 0 || (n > 0 && (x == NULL || h == NULL))) {
        return TT_ERR_ARG;
    }
    for (i = 0; i < n; ++i) {
        x[i] = tt_f16_to_f32_inl(h[i]);
    }
    return TT_OK;
}

tt_status tt_check_finite_f16(const uint16_t *h, int n)
{
    unsigned acc = 0U;
    int i;
    if (n < 0 || (n > 0 && h == NULL)) {
        return TT_ERR_ARG;
    }
    for (i = 0; i < n; ++i) {
        acc |= ((h[i] & 0x7C00U) == 0x7C00U) ? 1U : 0U;
    }
    return acc ? TT_ERR_NAN : TT_OK;
}

static float f32_from_bits(uint32_t b)
{
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

static uint32_t bits_from_f32(float f)
{
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b;
}

/* 2^k for k in [-126, 127] */
static float pow2f(int k)
{
    return f32_from_bits((uint32_t)(k + 127) << 23);
}

/* e^x = 2^k * e^r, k = rint(x * log2(e)) by the 1.5 * 2^23 trick (valid for |.| < 2^22),
 * r = (x - k*LN2_HI) - k*LN2_LO with LN2_HI holding 15 significant bits (k*LN2_HI is exact),
 * e^r by the degree-7 Taylor polynomial in Horner form (|r| <= 0.347: truncation 5e-9),
 * then two multiplications by powers of two so 2^k never overflows while the result may be
 * subnormal. */
float tt_expf_plain(float x)
{
    const float LOG2E = 0x1.715476p+0f; /* 0x3FB8AA3B, log2(e) */
    const float LN2_HI = 0x1.62e4p-1f;   /* 0x3F317200 */
    const float LN2_LO = 0x1.7f7d1cp-20f; /* 0x35BFBE8E, ln2 - LN2_HI */
    const float MAGIC = 0x1.8p+23f;      /* 1.5 * 2^23 */
    float t, kf, r, p;
    int k, k1;
    if (x != x) {
        return x;
    }
    if (x > 0x1.62e43p+6f) {
        return f32_from_bits(0x7F800000U);
    }
    if (x < -0x1.9fe36ap+6f) {
        return 0.0f;
    }
    t = x * LOG2E;
    kf = t + MAGIC;
    kf = kf - MAGIC;
    r = kf * LN2_HI;
    r = x - r;
    t = kf * LN2_LO;
    r = r - t;
    p = 0x1.a01a02p-13f; /* 1/7! */
    p = p * r;
    p = p + 0x1.6c16c2p-10f; /* 1/6! */
    p = p * r;
    p = p + 0x1.111112p-7f; /* 1/5! */
    p = p * r;
    p = p + 0x1.555556p-5f; /* 1/4! */
    p = p * r;
    p = p + 0x1.555556p-3f; /* 1/3! */
    p = p * r;
    p = p + 0.5f;
    p = p * r;
    p = p + 1.0f;
    p = p * r;
    p = p + 1.0f;
    k = (int)kf;
    k1 = k / 2;
    p = p * pow2f(k1);
    p = p * pow2f(k - k1);
    return p;
}

/* ln x = e*ln2 + ln m with x = 2^e * m, m in [sqrt(1/2), sqrt(2)); ln m = 2 atanh(s),
 * s = f / (2 + f), f = m - 1 (exact): ln m = s * (2 + z * P(z)), z = s*s <= 0.0295,
 * P(z) = 2/3 + z*(2/5 + z*(2/7 + z*(2/9 + z*2/11))) (next term below 3e-11 relative). */
float tt_logf_plain(float x)
{
    const float LN2_HI = 0x1.62e4p-1f;
    const float LN2_LO = 0x1.7f7d1cp-20f;
    uint32_t b;
    int e = 0;
    float m, f, s, z, p, ef, hi, lo;
    if (x != x) {
        return x;
    }
    if (x < 0.0f) {
        return f32_from_bits(0x7FC00000U);
    }
    if (x == 0.0f) {
        return -f32_from_bits(0x7F800000U);
    }
    b = bits_from_f32(x);
    if (b == 0x7F800000U) {
        return x;
    }
    if (b < 0x00800000U) { /* subnormal: scale into the normal range (exact) */
        x = x * 8388608.0f; /* 2^23 */
        b = bits_from_f32(x);
        e = -23;
    }
    e += (int)(b >> 23) - 127;
    b = (b & 0x007FFFFFU) | 0x3F800000U; /* m in [1, 2) */
    if (b > 0x3FB504F3U) {                /* m > sqrt(2): use m / 2 */
        b -= 0x00800000U;
        e += 1;
    }
    m = f32_from_bits(b);
    f = m - 1.0f;
    s = f + 2.0f;
    s = f / s;
    z = s * s;
    p = 0x1.745d18p-3f; /* 2/11 */
    p = p * z;
    p = p + 0x1.c71c72p-3f; /* 2/9 */
    p = p * z;
    p = p + 0x1.24924ap-2f; /* 2/7 */
    p = p * z;
    p = p + 0x1.99999ap-2f; /* 2/5 */
    p = p * z;
    p = p + 0x1.555556p-1f; /* 2/3 */
    p = p * z;
    p = p + 2.0f;
    p = s * p;
    ef = (float)e;
    lo = ef * LN2_LO;
    p = p + lo;
    hi = ef * LN2_HI;
    return hi + p;
}
