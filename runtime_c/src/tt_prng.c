/*
 * tt_prng.c - PCG32 (XSH-RR) and the integer draws built on it. Specification in tt_prng.h.
 */
#include <stddef.h>

#include "tt_prng.h"

static uint32_t pcg_output(uint64_t old)
{
    const uint32_t xs = (uint32_t)(((old >> 18) ^ old) >> 27);
    const uint32_t rot = (uint32_t)(old >> 59);
    return (xs >> rot) | (xs << ((32U - rot) & 31U));
}

uint32_t tt_prng_u32(tt_prng *st)
{
    const uint64_t old = st->state;
    st->state = old * TT_PRNG_MULT + st->inc;
    return pcg_output(old);
}

void tt_prng_seed(tt_prng *st, uint64_t seed, uint64_t stream)
{
    st->state = 0U;
    st->inc = (stream << 1) | 1U;
    (void)tt_prng_u32(st);
    st->state += seed;
    (void)tt_prng_u32(st);
}

uint64_t tt_prng_stream_id(uint32_t step, uint32_t k)
{
    return ((uint64_t)step << 32) | (uint64_t)k;
}

/* state after delta steps = A*state + C with (A, C) the delta-th power of the affine map
 * x -> a*x + inc, by square-and-multiply on (A, C) pairs (Brown, "Random number generation
 * with arbitrary strides", 1994). */
void tt_prng_advance(tt_prng *st, uint64_t delta)
{
    uint64_t acc_mult = 1U, acc_plus = 0U;
    uint64_t cur_mult = TT_PRNG_MULT, cur_plus = st->inc;
    while (delta > 0U) {
        if (delta & 1U) {
            acc_mult *= cur_mult;
            acc_plus = acc_plus * cur_mult + cur_plus;
        }
        cur_plus = (cur_mult + 1U) * cur_plus;
        cur_mult *= cur_mult;
        delta >>= 1;
    }
    st->state = acc_mult * st->state + acc_plus;
}

uint32_t tt_prng_below(tt_prng *st, uint32_t bound)
{
    return (uint32_t)(((uint64_t)tt_prng_u32(st) * (uint64_t)bound) >> 32);
}

tt_status tt_prng_fill_u32(tt_prng *st, uint32_t *out, int n)
{
    int i;
    if (st == NULL || n < 0 || (out == NULL && n > 0)) {
        return TT_ERR_ARG;
    }
    for (i = 0; i < n; ++i) {
        out[i] = tt_prng_u32(st);
    }
    return TT_OK;
}

tt_status tt_prng_rademacher_i8(tt_prng *st, int8_t *out, int n)
{
    int i = 0;
    if (st == NULL || n < 0 || (out == NULL && n > 0)) {
        return TT_ERR_ARG;
    }
    while (i < n) {
        uint32_t u = tt_prng_u32(st);
        const int end = (n - i < 32) ? n : i + 32;
        for (; i < end; ++i) {
            out[i] = (int8_t)(1 - 2 * (int)(u & 1U));
            u >>= 1;
        }
    }
    return TT_OK;
}

tt_status tt_prng_gauss_i16(tt_prng *st, int16_t *out, int n)
{
    int i;
    if (st == NULL || n < 0 || (out == NULL && n > 0)) {
        return TT_ERR_ARG;
    }
    for (i = 0; i < n; ++i) {
        const uint32_t u = tt_prng_u32(st);
        const int s = (int)(u & 0xFFU) + (int)((u >> 8) & 0xFFU) + (int)((u >> 16) & 0xFFU) +
                      (int)(u >> 24);
        out[i] = (int16_t)(s - 510);
    }
    return TT_OK;
}

/* floor((x + U) / 2^s) = floor(x / 2^s) + ((x mod 2^s) + U) >> s: no intermediate can
 * overflow, and no right shift of a negative value is needed (x mod 2^s is taken on the
 * two's-complement bits, which int64_t guarantees). */
int64_t tt_sr_rshift_i64(int64_t x, int s, uint32_t u)
{
    uint64_t ux, mask, low, add, q;
    if (s <= 0 || s > 62) {
        return x;
    }
    ux = (uint64_t)x;
    mask = ((uint64_t)1 << s) - 1U;
    low = ux & mask;
    add = (s <= 32) ? ((uint64_t)u >> (32 - s)) : ((uint64_t)u << (s - 32));
    /* floor(x / 2^s) without relying on >> of a negative number */
    q = (ux - low) >> s;                  /* (x - low) / 2^s as the low 64 - s bits */
    if (x < 0) {
        q |= ~(((uint64_t)1 << (64 - s)) - 1U); /* sign-extend */
    }
    q += (low + add) >> s;
    return (int64_t)q;
}

int32_t tt_sr_rshift_i32(int32_t x, int s, uint32_t u)
{
    if (s <= 0 || s > 31) {
        return x;
    }
    return (int32_t)tt_sr_rshift_i64((int64_t)x, s, u);
}
