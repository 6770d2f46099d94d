/*
 * selftest.c — the board smoke test: float arithmetic, an integer checksum and printed
 * results. The same source is compiled for the host and for every board; on the emulated
 * boards the printed lines must be byte-identical to the host's.
 *
 * Floats are printed as their IEEE-754 bit patterns so "identical" means identical bits.
 * Only correctly rounded operations are used (+ - * / sqrtf, float<->int conversion), so
 * every conforming implementation must produce the same bits; libm functions such as expf
 * are not correctly rounded and legitimately differ between libcs. fmaf() is checked
 * separately (probe.c, TT_PROBE=5): picolibc's software fmaf is not fused.
 */
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static uint32_t f2u(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* xorshift32: deterministic inputs without libc rand(). */
static uint32_t xs32(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *s = x;
    return x;
}

/* FNV-1a over 32-bit words. */
static uint32_t fnv1a(uint32_t h, uint32_t w)
{
    int i;
    for (i = 0; i < 4; ++i) {
        h ^= (w >> (8 * i)) & 0xFFu;
        h *= 16777619u;
    }
    return h;
}

static float uniform(uint32_t *s)
{
    /* 24 random bits -> [-1, 1) exactly representable. */
    return (float)(int32_t)(xs32(s) >> 8) / 8388608.0f - 1.0f;
}

int main(void)
{
    volatile float vin[64];
    float acc = 0.0f;
    float dot = 0.0f;
    float prod = 1.0f;
    float root = 0.0f;
    float quot = 0.0f;
    float denorm;
    uint32_t seed = 0x12345678u;
    uint32_t hash = 2166136261u;
    uint64_t isum = 0;
    int32_t imix = 0;
    int i;

    for (i = 0; i < 64; ++i) {
        vin[i] = uniform(&seed);
    }
    for (i = 0; i < 64; ++i) {
        float a = vin[i];
        float b = vin[63 - i];
        acc += a;
        dot += a * b;
        prod *= (1.0f + 0.01f * a);
        root += sqrtf(a * a + 0.5f);
        quot += a / (b + 3.0f);
        hash = fnv1a(hash, f2u(acc));
        hash = fnv1a(hash, f2u(dot));
    }
    denorm = 1.0e-38f;
    for (i = 0; i < 10; ++i) {
        denorm *= 0.5f; /* walks through the subnormal range */
    }
    for (i = 0; i < 1000; ++i) {
        uint32_t r = xs32(&seed);
        isum += r;
        imix = (int32_t)(imix * 31 + (int32_t)(r >> 16)) ^ (int32_t)(r & 0xFFFFu);
        hash = fnv1a(hash, r);
    }

    printf("sum      %08" PRIx32 "\n", f2u(acc));
    printf("dot      %08" PRIx32 "\n", f2u(dot));
    printf("prod     %08" PRIx32 "\n", f2u(prod));
    printf("sqrt     %08" PRIx32 "\n", f2u(root));
    printf("quot     %08" PRIx32 "\n", f2u(quot));
    printf("denorm   %08" PRIx32 "\n", f2u(denorm));
    printf("f2i      %" PRId32 "\n", (int32_t)(quot * 1000.0f));
    printf("isum     %08" PRIx32 "%08" PRIx32 "\n", (uint32_t)(isum >> 32), (uint32_t)isum);
    printf("imix     %" PRId32 "\n", imix);
    printf("hash     %08" PRIx32 "\n", hash);
    return 0;
}
