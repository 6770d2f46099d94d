/*
 * tt_prng.h - the one pseudo-random generator of tinytrain (C twin: tinytrain/numerics/prng.py).
 *
 * Generator: PCG32, variant XSH-RR (64-bit LCG state, 32-bit output), specified here once:
 *
 *   state' = state * 6364136223846793005 + inc            (mod 2^64; inc is odd)
 *   out    = rotr32((uint32)(((state >> 18) ^ state) >> 27), state >> 59)    (OLD state)
 *
 * Seeding, a keyed stream: tt_prng_seed(st, seed, stream) sets inc = (stream << 1) | 1,
 * state = 0, steps once, adds seed, steps once (the reference pcg32_srandom). Two streams with
 * different `stream` values (mod 2^63) are different sequences; the same (seed, stream) always
 * gives the same sequence on every target, so a perturbation can be regenerated instead of
 * stored. Forward-gradient code keys streams as tt_prng_stream_id(step, k) = step << 32 | k
 * (step < 2^31), with the user's seed.
 *
 * Derived draws (each documented as a function of the raw uint32 draws, so numpy reproduces
 * them exactly):
 *   below(bound)   (uint32)(((uint64)u * bound) >> 32)            one draw (bias < bound/2^32)
 *   rademacher     n values from ceil(n/32) draws: value i is +1 if bit (i % 32) of draw i/32
 *                  is 0, -1 if it is 1 (bits used LSB first).
 *   gauss          one draw per value: (b0 + b1 + b2 + b3) - 510 with b0..b3 the four bytes of
 *                  the draw. Integer only (Irwin-Hall, 4 terms): mean 0, range [-510, 510],
 *                  standard deviation sqrt(4 * (256^2 - 1) / 12) = sqrt(21845) = 147.80,
 *                  excess kurtosis -0.3. Scale by TT_PRNG_GAUSS_SD for a unit normal.
 *   stochastic rounding: tt_sr_rshift_i32/_i64(x, s, u) = floor((x + U) / 2^s) with
 *                  U = u >> (32 - s) (s <= 32) or U = u << (s - 32) (s > 32), i.e. the top s
 *                  bits of the draw; E[result] = x / 2^s exactly for s <= 32.
 *
 * Cost: one 64x64 multiply (3 MULs on a 32-bit core) per draw; no division, no tables.
 */
#ifndef TT_PRNG_H
#define TT_PRNG_H

#include <stdint.h>

#include "tt_status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    uint64_t state;
    uint64_t inc; /* always odd */
} tt_prng;

#define TT_PRNG_MULT 6364136223846793005ULL
/* standard deviation of tt_prng_gauss_i16 values: sqrt(21845) */
#define TT_PRNG_GAUSS_SD 147.80054127099805
#define TT_PRNG_GAUSS_MAX 510

/* Keyed stream; st must not be NULL. */
void tt_prng_seed(tt_prng *st, uint64_t seed, uint64_t stream);
/* (step, k) -> stream id for forward-gradient perturbations: step << 32 | k. */
uint64_t tt_prng_stream_id(uint32_t step, uint32_t k);
/* Next raw draw. */
uint32_t tt_prng_u32(tt_prng *st);
/* Jump ahead by delta draws in O(log delta) (as if tt_prng_u32 had been called delta times). */
void tt_prng_advance(tt_prng *st, uint64_t delta);
/* Uniform in [0, bound) by multiply-shift (one draw); bound 0 gives 0. */
uint32_t tt_prng_below(tt_prng *st, uint32_t bound);

/* Fills (n draws, or ceil(n/32) for rademacher). TT_ERR_ARG for NULL or n < 0. */
tt_status tt_prng_fill_u32(tt_prng *st, uint32_t *out, int n);
tt_status tt_prng_rademacher_i8(tt_prng *st, int8_t *out, int n);
tt_status tt_prng_gauss_i16(tt_prng *st, int16_t *out, int n);

/* Stochastic rounding of x / 2^s by the random word u (see above); s in [0, 62] for _i64,
 * [0, 31] for _i32 (the result of _i32 always fits). Out-of-range s returns x unchanged. */
int32_t tt_sr_rshift_i32(int32_t x, int s, uint32_t u);
int64_t tt_sr_rshift_i64(int64_t x, int s, uint32_t u);

#ifdef __cplusplus
}
#endif

#endif /* TT_PRNG_H */
