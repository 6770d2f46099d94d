/*
 * tt_act_lut_q.c - fixed-point Sigmoid / Tanh: table-driven forward, backward from the saved
 * output, Few-Bit Backward codes. Contract: tt_qact.h and tinytrain/numerics/qact.py.
 *
 * Everything is integer and exact, so the numpy twin reproduces it bit for bit:
 * - q16 interpolation: |x| <= 2^15 and mult < 2^31, so u * mult < 2^46 is exact in uint64;
 *   the interpolant table[j] (2^15 - f) + table[j+1] f is a convex combination of two uint16
 *   values in Q15, at most 65535 * 2^15 < 2^31, exact in uint32; one rounding (half up, the
 *   value is non-negative) turns it into the output.
 * - backward products: q8 |gy * d| <= 2^7 * 2^15 (any int8 y), q16 <= 2^15 * 2^31 (any int16
 *   y): exact in the int32 / int64 accumulators without saturation.
 * - codes: 8 codes of k bits fill exactly k bytes, so the stream is walked one group of 8
 *   elements at a time through a uint32 (8 * 4 bits at most).
 */
#include <stddef.h>

#include "tt_qact.h"

#define TT_ACT_FRAC 15
#define TT_ACT_NSEG_MAX 4096
#define TT_ACT_LEVEL_MAX_Q8 ((int32_t)1 << 23)

/* ------------------------------------------------------------------ shared pieces */

static int lut16_ok(const tt_act_lut16 *p)
{
    return p != NULL && p->table != NULL && p->n_seg >= 1 && p->n_seg <= TT_ACT_NSEG_MAX &&
           p->mult >= 0 && p->shift >= 0 && p->shift <= 62;
}

/* y of one int16 input: base +- round(interpolated g), clamped (see tt_qact.h) */
static int16_t lut16_one(const tt_act_lut16 *p, int is_tanh, int32_t x)
{
    const uint32_t u = (uint32_t)(x < 0 ? -x : x);
    const uint64_t pos = ((uint64_t)u * (uint64_t)(uint32_t)p->mult) >> p->shift;
    const int s = is_tanh ? 16 : 17;
    const int32_t base = is_tanh ? 0 : 16384;
    const int32_t lo = is_tanh ? -32768 : 0;
    uint32_t v;
    int32_t m, y;
    if (pos >= ((uint64_t)(uint32_t)p->n_seg << TT_ACT_FRAC)) {
        v = (uint32_t)p->table[p->n_seg] << TT_ACT_FRAC;
    } else {
        const uint32_t j = (uint32_t)(pos >> TT_ACT_FRAC);
        const uint32_t f = (uint32_t)pos & ((1U << TT_ACT_FRAC) - 1U);
        v = (uint32_t)p->table[j] * ((1U << TT_ACT_FRAC) - f) + (uint32_t)p->table[j + 1] * f;
    }
    m = (int32_t)((v + (1U << (s - 1))) >> s);
    y = (x < 0) ? base - m : base + m;
    return (int16_t)(y < lo ? lo : (y > 32767 ? 32767 : y));
}

/* #{j : u >= thr[j]} over 2^k - 1 thresholds, by binary search (exact for sorted thr) */
static uint32_t code_of(int32_t u, const int32_t *thr, int k)
{
    uint32_t c = 0U, b;
    for (b = 1U << (k - 1); b != 0U; b >>= 1) {
        if (u >= thr[c + b - 1U]) {
            c += b;
        }
    }
    return c;
}

/* bytes of a group of cnt (1..8) codes */
static int group_bytes(int cnt, int k)
{
    return (cnt * k + 7) >> 3;
}

static void put_group(uint8_t *dst, uint32_t bits, int cnt, int k)
{
    const int nb = group_bytes(cnt, k);
    int b;
    for (b = 0; b < nb; ++b) {
        dst[b] = (uint8_t)(bits >> (8 * b));
    }
}

static uint32_t get_group(const uint8_t *src, int cnt, int k)
{
    const int nb = group_bytes(cnt, k);
    uint32_t w = 0U;
    int b;
    for (b = 0; b < nb; ++b) {
        w |= (uint32_t)src[b] << (8 * b);
    }
    return w;
}

static int args_ok(int n, int k, const void *a, const void *b, const void *c)
{
    return n >= 0 && k >= 1 && k <= 4 && (n == 0 || (a != NULL && b != NULL && c != NULL));
}

/* ------------------------------------------------------------------ forward */

static tt_status lut8_fwd(const int8_t *table, const int8_t *x, int8_t *y, int n)
{
    int i;
    if (!args_ok(n, 1, table, x, y)) {
        return TT_ERR_ARG;
    }
    for (i = 0; i < n; ++i) {
        y[i] = table[(int)x[i] + 128];
    }
    return TT_OK;
}

static tt_status lut16_fwd(const tt_act_lut16 *p, int is_tanh, const int16_t *x, int16_t *y,
                           int n)
{
    int i;
    if (!args_ok(n, 1, x, y, x) || (n > 0 && !lut16_ok(p))) {
        return TT_ERR_ARG;
    }
    for (i = 0; i < n; ++i) {
        y[i] = lut16_one(p, is_tanh, x[i]);
    }
    return TT_OK;
}

tt_status tt_sigmoid_fwd_q8(const int8_t *table, const int8_t *x, int8_t *y, int n)
{
    return lut8_fwd(table, x, y, n);
}

tt_status tt_tanh_fwd_q8(const int8_t *table, const int8_t *x, int8_t *y, int n)
{
    return lut8_fwd(table, x, y, n);
}

tt_status tt_sigmoid_fwd_q16(const tt_act_lut16 *p, const int16_t *x, int16_t *y, int n)
{
    return lut16_fwd(p, 0, x, y, n);
}

tt_status tt_tanh_fwd_q16(const tt_act_lut16 *p, const int16_t *x, int16_t *y, int n)
{
    return lut16_fwd(p, 1, x, y, n);
}

/* ------------------------------------------------------------------ backward from y
 * d = f' * 2^(2 (bits-1)) exactly: sigmoid y (Y - y), tanh Y^2 - y^2 with Y = 2^(bits-1). */

static tt_status bwd8(int is_tanh, const int8_t *gy, const int8_t *y, int32_t *TT_RESTRICT gx,
                      int n)
{
    int i;
    if (!args_ok(n, 1, gy, y, gx)) {
        return TT_ERR_ARG;
    }
    for (i = 0; i < n; ++i) {
        const int32_t v = y[i];
        gx[i] = (int32_t)gy[i] * (is_tanh ? 16384 - v * v : v * (128 - v));
    }
    return TT_OK;
}

static tt_status bwd16(int is_tanh, const int16_t *gy, const int16_t *y,
                       int64_t *TT_RESTRICT gx, int n)
{
    int i;
    if (!args_ok(n, 1, gy, y, gx)) {
        return TT_ERR_ARG;
    }
    for (i = 0; i < n; ++i) {
        const int64_t v = y[i];
        gx[i] = (int64_t)gy[i] * (is_tanh ? ((int64_t)1 << 30) - v * v : v * (32768 - v));
    }
    return TT_OK;
}

tt_status tt_sigmoid_bwd_x_q8(const int8_t *gy, const int8_t *y, int32_t *TT_RESTRICT gx, int n)
{
    return bwd8(0, gy, y, gx, n);
}

tt_status tt_tanh_bwd_x_q8(const int8_t *gy, const int8_t *y, int32_t *TT_RESTRICT gx, int n)
{
    return bwd8(1, gy, y, gx, n);
}

tt_status tt_sigmoid_bwd_x_q16(const int16_t *gy, const int16_t *y, int64_t *TT_RESTRICT gx,
                               int n)
{
    return bwd16(0, gy, y, gx, n);
}

tt_status tt_tanh_bwd_x_q16(const int16_t *gy, const int16_t *y, int64_t *TT_RESTRICT gx, int n)
{
    return bwd16(1, gy, y, gx, n);
}

/* ------------------------------------------------------------------ few-bit codes */

static tt_status code8_fwd(const int8_t *table, const uint8_t *code_table, const int8_t *x,
                           int8_t *y, uint8_t *TT_RESTRICT codes, int n, int k)
{
    uint32_t mask;
    int i, j;
    if (!args_ok(n, k, table, code_table, x) || (n > 0 && (y == NULL || codes == NULL))) {
        return TT_ERR_ARG;
    }
    mask = (1U << k) - 1U; /* k validated: 1..4 */
    for (i = 0; i < n; i += 8) {
        const int cnt = (n - i < 8) ? n - i : 8;
        uint32_t bits = 0U;
        for (j = 0; j < cnt; ++j) {
            const int v = (int)x[i + j] + 128;
            bits |= ((uint32_t)code_table[v] & mask) << (j * k);
            y[i + j] = table[v];
        }
        put_group(codes + (size_t)(i >> 3) * (size_t)k, bits, cnt, k);
    }
    return TT_OK;
}

static tt_status code16_fwd(const tt_act_lut16 *p, int is_tanh, const int32_t *thr,
                            const int16_t *x, int16_t *y, uint8_t *TT_RESTRICT codes, int n,
                            int k)
{
    int i, j;
    if (!args_ok(n, k, thr, x, y) || (n > 0 && (codes == NULL || !lut16_ok(p)))) {
        return TT_ERR_ARG;
    }
    for (i = 0; i < n; i += 8) {
        const int cnt = (n - i < 8) ? n - i : 8;
        uint32_t bits = 0U;
        for (j = 0; j < cnt; ++j) {
            const int32_t v = x[i + j];
            bits |= code_of(v < 0 ? -v : v, thr, k) << (j * k);
            y[i + j] = lut16_one(p, is_tanh, v);
        }
        put_group(codes + (size_t)(i >> 3) * (size_t)k, bits, cnt, k);
    }
    return TT_OK;
}

static tt_status code_bwd8(const int8_t *gy, const uint8_t *codes, const int32_t *level,
                           int32_t *TT_RESTRICT gx, int n, int k)
{
    uint32_t mask;
    int i, j;
    if (!args_ok(n, k, gy, codes, gx) || (n > 0 && level == NULL)) {
        return TT_ERR_ARG;
    }
    mask = (1U << k) - 1U; /* k validated: 1..4 */
    for (i = 0; n > 0 && i < (1 << k); ++i) {
        if (level[i] > TT_ACT_LEVEL_MAX_Q8 || level[i] < -TT_ACT_LEVEL_MAX_Q8) {
            return TT_ERR_ARG;
        }
    }
    for (i = 0; i < n; i += 8) {
        const int cnt = (n - i < 8) ? n - i : 8;
        const uint32_t w = get_group(codes + (size_t)(i >> 3) * (size_t)k, cnt, k);
        for (j = 0; j < cnt; ++j) {
            gx[i + j] = (int32_t)gy[i + j] * level[(w >> (j * k)) & mask];
        }
    }
    return TT_OK;
}

static tt_status code_bwd16(const int16_t *gy, const uint8_t *codes, const int32_t *level,
                            int64_t *TT_RESTRICT gx, int n, int k)
{
    uint32_t mask;
    int i, j;
    if (!args_ok(n, k, gy, codes, gx) || (n > 0 && level == NULL)) {
        return TT_ERR_ARG;
    }
    mask = (1U << k) - 1U; /* k validated: 1..4 */
    for (i = 0; i < n; i += 8) {
        const int cnt = (n - i < 8) ? n - i : 8;
        const uint32_t w = get_group(codes + (size_t)(i >> 3) * (size_t)k, cnt, k);
        for (j = 0; j < cnt; ++j) {
            gx[i + j] = (int64_t)gy[i + j] * (int64_t)level[(w >> (j * k)) & mask];
        }
    }
    return TT_OK;
}

tt_status tt_sigmoid_code_fwd_q8(const int8_t *table, const uint8_t *code_table,
                                 const int8_t *x, int8_t *y, uint8_t *TT_RESTRICT codes, int n,
                                 int k)
{
    return code8_fwd(table, code_table, x, y, codes, n, k);
}

tt_status tt_tanh_code_fwd_q8(const int8_t *table, const uint8_t *code_table, const int8_t *x,
                              int8_t *y, uint8_t *TT_RESTRICT codes, int n, int k)
{
    return code8_fwd(table, code_table, x, y, codes, n, k);
}

tt_status tt_sigmoid_code_fwd_q16(const tt_act_lut16 *p, const int32_t *thr, const int16_t *x,
                                  int16_t *y, uint8_t *TT_RESTRICT codes, int n, int k)
{
    return code16_fwd(p, 0, thr, x, y, codes, n, k);
}

tt_status tt_tanh_code_fwd_q16(const tt_act_lut16 *p, const int32_t *thr, const int16_t *x,
                               int16_t *y, uint8_t *TT_RESTRICT codes, int n, int k)
{
    return code16_fwd(p, 1, thr, x, y, codes, n, k);
}

tt_status tt_sigmoid_bwd_x_code_q8(const int8_t *gy, const uint8_t *codes, const int32_t *level,
                                   int32_t *TT_RESTRICT gx, int n, int k)
{
    return code_bwd8(gy, codes, level, gx, n, k);
}

tt_status tt_tanh_bwd_x_code_q8(const int8_t *gy, const uint8_t *codes, const int32_t *level,
                                int32_t *TT_RESTRICT gx, int n, int k)
{
    return code_bwd8(gy, codes, level, gx, n, k);
}

tt_status tt_sigmoid_bwd_x_code_q16(const int16_t *gy, const uint8_t *codes,
                                    const int32_t *level, int64_t *TT_RESTRICT gx, int n, int k)
{
    return code_bwd16(gy, codes, level, gx, n, k);
}

tt_status tt_tanh_bwd_x_code_q16(const int16_t *gy, const uint8_t *codes, const int32_t *level,
                                 int64_t *TT_RESTRICT gx, int n, int k)
{
    return code_bwd16(gy, codes, level, gx, n, k);
}

tt_status tt_act_code_pack(const uint8_t *code, uint8_t *TT_RESTRICT packed, int n, int k)
{
    uint32_t mask;
    int i, j;
    if (!args_ok(n, k, code, packed, code)) {
        return TT_ERR_ARG;
    }
    mask = (1U << k) - 1U; /* k validated: 1..4 */
    for (i = 0; i < n; i += 8) {
        const int cnt = (n - i < 8) ? n - i : 8;
        uint32_t bits = 0U;
        for (j = 0; j < cnt; ++j) {
            bits |= ((uint32_t)code[i + j] & mask) << (j * k);
        }
        put_group(packed + (size_t)(i >> 3) * (size_t)k, bits, cnt, k);
    }
    return TT_OK;
}

tt_status tt_act_code_unpack(const uint8_t *packed, uint8_t *TT_RESTRICT code, int n, int k)
{
    uint32_t mask;
    int i, j;
    if (!args_ok(n, k, packed, code, packed)) {
        return TT_ERR_ARG;
    }
    mask = (1U << k) - 1U; /* k validated: 1..4 */
    for (i = 0; i < n; i += 8) {
        const int cnt = (n - i < 8) ? n - i : 8;
        const uint32_t w = get_group(packed + (size_t)(i >> 3) * (size_t)k, cnt, k);
        for (j = 0; j < cnt; ++j) {
            code[i + j] = (uint8_t)((w >> (j * k)) & mask);
        }
    }
    return TT_OK;
}
