/*
 * tt_qact.h - fixed-point Sigmoid and Tanh (tt_act_lut_q.c): table-driven forward, backward
 * from the saved output, and Few-Bit Backward derivative codes. numpy twin (bit for bit) and
 * the table builders: tinytrain/numerics/qact.py, whose docstring is the numerics contract.
 *
 * Output scale fixed by the function: y real = y_q * 2^-(bits-1); sigmoid y_q in
 * [0, 2^(bits-1) - 1], tanh in the full storage range.
 * q8 forward:  y = table[x + 128] (256 int8 entries built at export time from s_x).
 * q16 forward: u = |x|, p = (u * mult) >> shift (Q15 segments), j = p >> 15, f = p & 0x7FFF,
 *   v = table[n_seg] << 15 if j >= n_seg, else table[j] (2^15 - f) + table[j+1] f (< 2^31);
 *   m = (v + 2^(s-1)) >> s; y = clamp(base +- m) (minus for x < 0) with
 *   tanh:    s = 16, base = 0,     clamp [-32768, 32767]
 *   sigmoid: s = 17, base = 16384, clamp [0, 32767]
 * bwd_x (from the saved output y, into accumulators, exponent -2 (bits-1) added to gy's):
 *   sigmoid: gx = gy * y (2^(bits-1) - y)     tanh: gx = gy * (2^(2 bits-2) - y^2)
 *   q8 -> int32 (|gx| <= 2^21 for y in range), q16 -> int64.
 * Few-bit codes (k bits per element, k in 1..4): code_fwd writes y as fwd and the packed
 *   codes; q8: code = code_table[x + 128] & (2^k - 1); q16: code = #{j : |x| >= thr[j]}
 *   over 2^k - 1 ascending int32 thresholds, by the binary search c = 0; for b = 2^(k-1)
 *   down to 1: if (|x| >= thr[c + b - 1]) c += b. bwd_x_code: gx = gy * level[code]
 *   (2^k int32 levels; q8: |level| <= 2^23 so gx fits int32, else TT_ERR_ARG).
 * Packing: a little-endian bit stream, code i in stream bits [i k, i k + k), stream bit b is
 *   bit b % 8 of byte b / 8 (k = 3 straddles bytes; every 8 codes take k bytes);
 *   ceil(n k / 8) bytes, unused high bits of the last byte written as 0.
 * Every kernel returns TT_ERR_ARG, writing nothing, for n < 0, NULL pointers (n > 0), k outside
 * 1..4 or an invalid tt_act_lut16. y may equal x (element i is read before it is written);
 * gx, codes (written) are TT_RESTRICT. Sigmoid and tanh share the code kernels' arithmetic:
 * the two names exist so a generated call names its op.
 */
#ifndef TT_QACT_H
#define TT_QACT_H

#include <stdint.h>

#include "tt_kernels.h"
#include "tt_status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* q16 forward table (qact.build_act_table(fn, s_x, 16)): table has n_seg + 1 entries,
 * n_seg in [1, 4096], mult >= 0, shift in [0, 62]. */
typedef struct {
    const uint16_t *table;
    int n_seg;
    int32_t mult;
    int shift;
} tt_act_lut16;

/* ------------------------------------------------------------------ forward */
tt_status tt_sigmoid_fwd_q8(const int8_t *table, const int8_t *x, int8_t *y, int n);
tt_status tt_tanh_fwd_q8(const int8_t *table, const int8_t *x, int8_t *y, int n);
tt_status tt_sigmoid_fwd_q16(const tt_act_lut16 *p, const int16_t *x, int16_t *y, int n);
tt_status tt_tanh_fwd_q16(const tt_act_lut16 *p, const int16_t *x, int16_t *y, int n);

/* ------------------------------------------------------------------ backward from y */
tt_status tt_sigmoid_bwd_x_q8(const int8_t *gy, const int8_t *y, int32_t *TT_RESTRICT gx,
                              int n);
tt_status tt_tanh_bwd_x_q8(const int8_t *gy, const int8_t *y, int32_t *TT_RESTRICT gx, int n);
tt_status tt_sigmoid_bwd_x_q16(const int16_t *gy, const int16_t *y, int64_t *TT_RESTRICT gx,
                               int n);
tt_status tt_tanh_bwd_x_q16(const int16_t *gy, const int16_t *y, int64_t *TT_RESTRICT gx,
                            int n);

/* ------------------------------------------------------------------ few-bit backward */
tt_status tt_sigmoid_code_fwd_q8(const int8_t *table, const uint8_t *code_table,
                                 const int8_t *x, int8_t *y, uint8_t *TT_RESTRICT codes, int n,
                                 int k);
tt_status tt_tanh_code_fwd_q8(const int8_t *table, const uint8_t *code_table, const int8_t *x,
                              int8_t *y, uint8_t *TT_RESTRICT codes, int n, int k);
tt_status tt_sigmoid_code_fwd_q16(const tt_act_lut16 *p, const int32_t *thr, const int16_t *x,
                                  int16_t *y, uint8_t *TT_RESTRICT codes, int n, int k);
tt_status tt_tanh_code_fwd_q16(const tt_act_lut16 *p, const int32_t *thr, const int16_t *x,
                               int16_t *y, uint8_t *TT_RESTRICT codes, int n, int k);
tt_status tt_sigmoid_bwd_x_code_q8(const int8_t *gy, const uint8_t *codes, const int32_t *level,
                                   int32_t *TT_RESTRICT gx, int n, int k);
tt_status tt_tanh_bwd_x_code_q8(const int8_t *gy, const uint8_t *codes, const int32_t *level,
                                int32_t *TT_RESTRICT gx, int n, int k);
tt_status tt_sigmoid_bwd_x_code_q16(const int16_t *gy, const uint8_t *codes,
                                    const int32_t *level, int64_t *TT_RESTRICT gx, int n, int k);
tt_status tt_tanh_bwd_x_code_q16(const int16_t *gy, const uint8_t *codes, const int32_t *level,
                                 int64_t *TT_RESTRICT gx, int n, int k);

/* code[i] (low k bits) <-> the packed stream; code_unpack writes values 0 .. 2^k - 1 */
tt_status tt_act_code_pack(const uint8_t *code, uint8_t *TT_RESTRICT packed, int n, int k);
tt_status tt_act_code_unpack(const uint8_t *packed, uint8_t *TT_RESTRICT code, int n, int k);

#ifdef __cplusplus
}
#endif

#endif /* TT_QACT_H */
