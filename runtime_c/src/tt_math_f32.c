/*
 * tt_math_f32.c - exp / expm1 / log / log1p for binary32, bit-identical on every target.
 *
 * libm's expf and logf are not correctly rounded and differ between glibc, newlib and
 * picolibc, which would make host and MCU results diverge in softmax, sigmoid, tanh and the
 * cross-entropy loss. These versions use only IEEE basic operations (+ - * /, correctly
 * rounded), fmaf (correctly rounded) and integer bit manipulation, evaluated in a fixed order,
 * so every conforming target computes the same bits. Accuracy is better than 1.5 ulp, far inside
 * the 1e-5 tolerance used against the float64 reference.
 *
 * exp:  x = n*ln2 + r, |r| <= ln2/2 (Cody-Waite: ln2 split so that n*LN2_HI is exact),
 *       e^r - 1 = r + r^2*q(r), q the Taylor polynomial up to r^7/7! (truncation < 1e-8
 *       relative on |r| <= 0.347), e^x = TT_FMAF(2^n, e^r - 1, 2^n): one rounding at the end.
 * log:  x = 2^e * m, m in [sqrt(1/2), sqrt(2)), f = m - 1 (exact), s = f/(2+f),
 *       log(1+f) = 2*atanh(s) = f - s*(f - R), R = 2s^2/3 + ... + 2s^8/9 (|s| <= 0.1716, the
 *       next term is < 2e-9 relative), log x = e*LN2_HI + (f + (e*LN2_LO - s*(f - R))).
 */
#include <string.h>

#include "tt_kernels.h"

#define TT_LOG2E 1.44269504088896341f
#define TT_LN2_HI 0.693145751953125f     /* 0x3f317200: n*LN2_HI exact for |n| < 512 */
#define TT_LN2_LO 1.42860682030941723e-6f /* ln2 - LN2_HI */

static float pow2i(int e) /* 2^e for -126 <= e <= 127, exact */
{
    const uint32_t u = (uint32_t)(e + 127) << 23;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Reduce x (finite, -104 <= x <= 89) to x = n*ln2 + r and return p = e^r - 1. */
static float exp_reduce(float x, int *n_out)
{
    const float kf = x * TT_LOG2E;
    const int n = (int)(kf < 0.0f ? kf - 0.5f : kf + 0.5f);
    const float nf = (float)n;
    float r = TT_FMAF(-nf, TT_LN2_HI, x); /* exact (Sterbenz) */
    float q, r2;
    r = TT_FMAF(-nf, TT_LN2_LO, r);
    r2 = r * r;
    q = TT_FMAF(r, 1.0f / 5040.0f, 1.0f / 720.0f);
    q = TT_FMAF(q, r, 1.0f / 120.0f);
    q = TT_FMAF(q, r, 1.0f / 24.0f);
    q = TT_FMAF(q, r, 1.0f / 6.0f);
    q = TT_FMAF(q, r, 0.5f);
    *n_out = n;
    return TT_FMAF(r2, q, r);
}

float tt_expf(float x)
{
    int n;
    float p, s;
    if (x != x) {
        return x;
    }
    if (x > 89.0f) {
        return INFINITY;
    }
    if (x < -104.0f) {
        return 0.0f;
    }
    p = exp_reduce(x, &n);
    if (n > 127) { /* only n = 128: may overflow to +inf, as it should */
        s = pow2i(n - 1);
        return TT_FMAF(s, p, s) * 2.0f;
    }
    if (n < -125) { /* result near or below the normal range: scale in two steps */
        s = pow2i(n + 64);
        return TT_FMAF(s, p, s) * 5.42101086e-20f; /* 2^-64 */
    }
    s = pow2i(n);
    return TT_FMAF(s, p, s);
}

float tt_expm1f(float x)
{
    int n;
    float p, s;
    if (x != x) {
        return x;
    }
    if (x > 89.0f) {
        return INFINITY;
    }
    if (x < -18.0f) { /* e^x < ulp(1)/2: -1 after rounding */
        return -1.0f;
    }
    p = exp_reduce(x, &n);
    if (n == 0) {
        return p;
    }
    if (n > 24) { /* 2^n - 1 not exact, and the -1 is below half an ulp anyway */
        if (n > 127) {
            s = pow2i(n - 1);
            return TT_FMAF(s, p, s) * 2.0f;
        }
        s = pow2i(n);
        return TT_FMAF(s, p, s);
    }
    s = pow2i(n);
    return TT_FMAF(s, p, s - 1.0f); /* 2^n - 1 is exact for -24 <= n <= 24 */
}

/* e*ln2 + log(1+f) + c for f in [sqrt(1/2)-1, sqrt(2)-1] and a tiny correction c.
 * With s = f/(2+f): log(1+f) = 2 atanh(s) = 2s + s*R, R = 2s^2/3 + 2s^4/5 + ..., and
 * 2s = f - f*s, so log(1+f) = f - s*(f - R): the leading term f is exact and every rounding
 * error sits in the correction s*(f - R), which is at most ~0.13*|f|. */
static float log_kernel(int e, float f, float c)
{
    const float s = f / (2.0f + f);
    const float z = s * s;
    const float ef = (float)e;
    float r;
    r = TT_FMAF(z, 2.0f / 9.0f, 2.0f / 7.0f);
    r = TT_FMAF(r, z, 2.0f / 5.0f);
    r = TT_FMAF(r, z, 2.0f / 3.0f);
    r = r * z;                    /* R */
    r = TT_FMAF(-s, f - r, c);       /* c - s*(f - R) */
    r = TT_FMAF(ef, TT_LN2_LO, r);
    r = r + f;
    return TT_FMAF(ef, TT_LN2_HI, r);
}

/* u > 0 finite -> u = 2^e * (1 + f), 1 + f in [sqrt(1/2), sqrt(2)), f exact */
static float split_log_arg(float u, int *e_out)
{
    uint32_t b;
    int e = 0;
    float m;
    if (u < 1.17549435e-38f) { /* subnormal: make it normal */
        u *= 8388608.0f;       /* 2^23 */
        e = -23;
    }
    memcpy(&b, &u, sizeof b);
    e += (int)(b >> 23) - 127;
    b = (b & 0x007fffffU) | 0x3f800000U;
    memcpy(&m, &b, sizeof m);
    if (m > 1.41421354f) {
        m *= 0.5f;
        e += 1;
    }
    *e_out = e;
    return m - 1.0f; /* exact (Sterbenz) */
}

float tt_logf(float x)
{
    int e;
    float f;
    if (x != x) {
        return x;
    }
    if (x < 0.0f) {
        return NAN;
    }
    if (x == 0.0f) {
        return -INFINITY;
    }
    if (x == INFINITY) {
        return x;
    }
    f = split_log_arg(x, &e);
    return log_kernel(e, f, 0.0f);
}

float tt_log1pf(float x)
{
    int e;
    float u, f, c;
    if (x != x) {
        return x;
    }
    if (x < -1.0f) {
        return NAN;
    }
    if (x == -1.0f) {
        return -INFINITY;
    }
    if (x == INFINITY) {
        return x;
    }
    if (x > -0.29289320f && x < 0.41421354f) { /* 1 + x in [sqrt(1/2), sqrt(2)): f = x exactly */
        return log_kernel(0, x, 0.0f);
    }
    /* u = 1 + x rounded; c = (x - (u - 1)) / u restores the lost low part to first order
     * (u - 1 is exact here; for x <= -1/2, u itself is exact and c = 0). */
    u = 1.0f + x;
    c = (x - (u - 1.0f)) / u;
    f = split_log_arg(u, &e);
    return log_kernel(e, f, c);
}

/* Correctly rounded a*b + c without an FPU fma. The product of two floats is exact in double
 * (48 significant bits); the sum is formed in double with round-to-odd (TwoSum gives the
 * rounding error e; if e != 0 and the last significand bit is 0, step one ulp towards e), and
 * a round-to-odd result with 53 >= 24 + 2 bits rounds to float exactly as the true sum would
 * (Boldo & Melquiond). Used on cores without hardware FMA, where it is slow but exact. */
float tt_fmaf_soft(float a, float b, float c)
{
    double p = (double)a * (double)b;
    double s = p + (double)c;
    double bb, e;
    uint64_t u;
    if (!(s - s == 0.0)) return (float)s; /* inf or nan */
    /* Double rounding can only go wrong when the double sum lands exactly on a float halfway
       point (low 29 significand bits 1000...0) or in float's subnormal range (fewer bits):
       everywhere else one conversion is already the correctly rounded result. */
    memcpy(&u, &s, sizeof u);
    if ((u & 0x1FFFFFFFu) != 0x10000000u && (s >= 1.1754943508222875e-38 ||
                                             s <= -1.1754943508222875e-38)) {
        return (float)s;
    }
    bb = s - p;
    e = (p - (s - bb)) + ((double)c - bb);
    if (e != 0.0) {
        memcpy(&u, &s, sizeof u);
        if ((u & 1u) == 0u) {
            if ((e > 0.0) == (s > 0.0)) ++u; else --u;
            memcpy(&s, &u, sizeof s);
        }
    }
    return (float)s;
}
