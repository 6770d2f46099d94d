/*
 * tt_util.c - status strings, CRC-32, finite check.
 */
#include "tt_kernels.h"

const char *tt_status_str(tt_status s)
{
    switch (s) {
#define TT_STATUS_CASE_(name, value, text) \
    case name:                             \
        return text;
        TT_STATUS_LIST(TT_STATUS_CASE_)
#undef TT_STATUS_CASE_
    default:
        break;
    }
    return "unknown status";
}

/* Half-byte table (64 bytes of const data instead of 1 KiB): entry i is the CRC register
 * contribution of the 4-bit value i shifted out through the reflected polynomial 0xEDB88320. */
uint32_t tt_crc32(const void *data, size_t n, uint32_t crc)
{
    static const uint32_t tab[16] = {
        0x00000000U, 0x1DB71064U, 0x3B6E20C8U, 0x26D930ACU, 0x76DC4190U, 0x6B6B51F4U,
        0x4DB26158U, 0x5005713CU, 0xEDB88320U, 0xF00F9344U, 0xD6D6A3E8U, 0xCB61B38CU,
        0x9B64C2B0U, 0x86D3D2D4U, 0xA00AE278U, 0xBDBDF21CU};
    const unsigned char *p = (const unsigned char *)data;
    uint32_t c = crc ^ 0xFFFFFFFFU;
    size_t i;
    for (i = 0; i < n; ++i) {
        c ^= p[i];
        c = (c >> 4) ^ tab[c & 15U];
        c = (c >> 4) ^ tab[c & 15U];
    }
    return c ^ 0xFFFFFFFFU;
}

/* x * 0 is NaN exactly when x is NaN or +-Inf, and NaN propagates through the sum: one fmaf
 * per element, no branch in the loop. Two chains to halve the dependency. */
tt_status tt_check_finite_f32(const float *x, int n)
{
    float a0 = 0.0f, a1 = 0.0f;
    int i;
    if (n < 0 || (x == NULL && n > 0)) {
        return TT_ERR_ARG;
    }
    for (i = 0; i + 1 < n; i += 2) {
        a0 = fmaf(x[i], 0.0f, a0);
        a1 = fmaf(x[i + 1], 0.0f, a1);
    }
    if (i < n) {
        a0 = fmaf(x[i], 0.0f, a0);
    }
    return (a0 + a1 == 0.0f) ? TT_OK : TT_ERR_NAN;
}

/* Shared by the pooling kernels of every precision: the geometry is valid and every window
 * contains at least one input cell. */
tt_status tt_pool2d_check(const tt_pool2d_params *p)
{
    if (p == NULL) {
        return TT_ERR_ARG;
    }
    if (p->c <= 0 || p->in_h <= 0 || p->in_w <= 0 || p->out_h <= 0 || p->out_w <= 0 ||
        p->k_h <= 0 || p->k_w <= 0 || p->stride_h <= 0 || p->stride_w <= 0 || p->pad_top < 0 ||
        p->pad_left < 0 || (p->count_include_pad != 0 && p->count_include_pad != 1)) {
        return TT_ERR_SHAPE;
    }
    /* every window must contain at least one input cell */
    if (p->pad_top >= p->k_h || p->pad_left >= p->k_w ||
        (p->out_h - 1) * p->stride_h - p->pad_top >= p->in_h ||
        (p->out_w - 1) * p->stride_w - p->pad_left >= p->in_w) {
        return TT_ERR_SHAPE;
    }
    return TT_OK;
}
