/*
 * tt_jvp_q.c - integer kernels of forward-mode (JVP) training in fixed point: the fused Gemm /
 * Conv tangent (three terms recomputed per pass, directions regenerated in weight memory order),
 * the join of tangent terms into one int8 / int16 tangent with a power-of-two exponent, the max
 * pool tangent and the loss tangent dL . t. Specification in tt_qjvp.h.
 *
 * One body, three instantiations (the self-including template of tt_gemm_q.c) with
 *   TQ      data storage: x, tx, ty             TW      weight storage: w
 *   TACC_A  accumulator of A = tx (*) W          TACC_B  accumulator of B = x (*) Z
 *   TQ_NARROW_A / _B  1: that accumulator is int64 and narrowed to int32 tensor-wide
 *   TQ_BITS  width of ty                         TQ_FUSED_ONLY  1: the fused kernels only
 *   TQ_DOT_NMAX  tt_dot_q30_*'s limit on n (not with TQ_FUSED_ONLY)
 * as  _q8     int8 / int8  / int32 / int32 / 0 / 0 / 8   (every kernel)
 *     _q16    int16 / int16 / int64 / int64 / 1 / 1 / 16 (every kernel)
 *     _w16a8  int8 / int16 / int64 / int32 / 1 / 0 / 8   (tt_gemm_jvp, tt_conv2d_jvp)
 * The directions are drawn by next_z, the same sequence as tt_zo_perturb_* (tt_perturb_q.c)
 * and tt_prng_rademacher_i8 / tt_prng_gauss_i16.
 */
#ifndef TT_Q_TEMPLATE_PASS

#include <stddef.h>

#include "tt_qjvp.h"

/* z_i for i = 0, 1, ... of one tensor; *word / *left carry the Rademacher draw (32 values)
 * between the values of one pass over the tensor, starting from *left = 0 at its first value */
static int32_t next_z(tt_prng *rng, int dist, uint32_t *word, int *left)
{
    if (dist == TT_ZO_GAUSS) {
        const uint32_t u = tt_prng_u32(rng);
        return (int32_t)((u & 0xFFU) + ((u >> 8) & 0xFFU) + ((u >> 16) & 0xFFU) + (u >> 24)) -
               510;
    }
    if (*left == 0) {
        *word = tt_prng_u32(rng);
        *left = 32;
    }
    {
        const int32_t z = 1 - 2 * (int32_t)(*word & 1U);
        *word >>= 1;
        --*left;
        return z;
    }
}

static int dist_ok(int dist)
{
    return dist == TT_ZO_RADEMACHER || dist == TT_ZO_GAUSS;
}

static int imax(int a, int b)
{
    return a > b ? a : b;
}

static int imin(int a, int b)
{
    return a < b ? a : b;
}

static int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

static int64_t abs64(int64_t v)
{
    return v < 0 ? -v : v; /* callers' values are bounded well inside int64 */
}

/* the geometry check of tt_conv2d_fwd_* (tt_conv_q.c) */
static tt_status conv_check(const tt_conv2d_params *p)
{
    if (p == NULL) {
        return TT_ERR_ARG;
    }
    if (p->in_c <= 0 || p->in_h <= 0 || p->in_w <= 0 || p->out_c <= 0 || p->out_h <= 0 ||
        p->out_w <= 0 || p->k_h <= 0 || p->k_w <= 0 || p->stride_h <= 0 || p->stride_w <= 0 ||
        p->pad_top < 0 || p->pad_left < 0 || p->groups <= 0 || p->in_c % p->groups != 0 ||
        p->out_c % p->groups != 0) {
        return TT_ERR_SHAPE;
    }
    return TT_OK;
}

/* tap range [*lo, *hi) of a kernel of size k for output o: o*s - pad + t in [0, n_in) */
static void tap_range(int o, int s, int pad, int k, int n_in, int *lo, int *hi)
{
    const int start = o * s - pad;
    *lo = (start < 0) ? -start : 0;
    *hi = (start + k > n_in) ? n_in - start : k;
    if (*hi < *lo) {
        *hi = *lo;
    }
}

int tt_conv2d_jvp_scratch(const tt_conv2d_params *p)
{
    if (conv_check(p) != TT_OK) {
        return 0;
    }
    return (p->in_c / p->groups) * p->k_h * p->k_w;
}

/* ---------------------------------------------------------------------- tangent join */

typedef struct {
    int on;       /* the term is present */
    int64_t mult;
    int shift;    /* min(E - E_t + 2, 63) */
} join_term;

/* validate the present terms' multipliers and exponents, fill t[0..2] (a, b, c) and return
 * E + 2 in *e2 */
static tt_status join_setup(const int on[3], const int32_t mult[3], const int ex[3],
                            join_term t[3], int *e2)
{
    int i, e = 0, any = 0;
    for (i = 0; i < 3; ++i) {
        if (!on[i]) {
            continue;
        }
        if (mult[i] < 0 || ex[i] < -TT_QJVP_EXP_MAX || ex[i] > TT_QJVP_EXP_MAX) {
            return TT_ERR_ARG;
        }
        e = any ? imax(e, ex[i] - 31) : ex[i] - 31;
        any = 1;
    }
    if (!any) {
        return TT_ERR_ARG;
    }
    for (i = 0; i < 3; ++i) {
        t[i].on = on[i];
        t[i].mult = mult[i];
        t[i].shift = on[i] ? imin(e - (ex[i] - 31) + 2, 63) : 0;
    }
    *e2 = e + 2;
    return TT_OK;
}

/* S of one element in units of 2^(E + 2): the sum of Q_t = rdbpot(v_t * mult_t, shift_t) over
 * the present terms (an absent term's value is ignored). The one definition of S, shared by
 * tt_tangent_join_* and the fused kernels so that they cannot drift apart. */
static inline int64_t join_value(const join_term t[3], int32_t a, int32_t b, int32_t c)
{
    int64_t s = 0;
    if (t[0].on) {
        s += tt_rdbpot64((int64_t)a * t[0].mult, t[0].shift);
    }
    if (t[1].on) {
        s += tt_rdbpot64((int64_t)b * t[1].mult, t[1].shift);
    }
    if (t[2].on) {
        s += tt_rdbpot64((int64_t)c * t[2].mult, t[2].shift);
    }
    return s;
}

/* the output shift s for max |S| (|S| <= 3 * 2^60), or the narrowing shift of an int64 term
 * (bits 32): tt_grad_scale_pow2_q64 on the maximum */
static int pow2_shift(int64_t max_abs, int bits)
{
    int s = 0;
    (void)tt_grad_scale_pow2_q64(&max_abs, 1, bits, &s);
    return s;
}

/* ---------------------------------------------------------------------- fused Gemm / Conv
 * One pass of a fused kernel visits every output once, in memory order, with its three raw
 * terms and does one of three things with them. */
enum { JVP_MAX_ACC, JVP_MAX_S, JVP_WRITE };

typedef struct {
    int mode;
    join_term t[3];
    int rs_a, rs_b;         /* the tensor-wide narrowing shifts of A and B (0 if not narrowed) */
    int out_shift;          /* s of the join (JVP_WRITE) */
    int64_t max_a, max_b;   /* max |A|, max |B| (JVP_MAX_ACC) */
    int64_t max_s;          /* max |S| (JVP_MAX_S) */
} jvp_pass;

/* a copy of *g (a zero state for an absent generator, never restored) */
static tt_prng prng_save(const tt_prng *g)
{
    tt_prng c;
    if (g != NULL) {
        return *g;
    }
    c.state = 0U;
    c.inc = 0U;
    return c;
}

static void prng_restore(tt_prng *g, const tt_prng *saved)
{
    if (g != NULL) {
        *g = *saved;
    }
}

/* validation common to both layer types (pointers the layer type needs are checked by it) */
static tt_status jvp_args_ok(const tt_prng *zw, const tt_prng *zb, int has_a, int dist,
                             const tt_jvp_scales *s, const int *e_out)
{
    if (s == NULL || e_out == NULL || (!has_a && zw == NULL && zb == NULL)) {
        return TT_ERR_ARG;
    }
    if ((zw != NULL || zb != NULL) && !dist_ok(dist)) {
        return TT_ERR_ARG;
    }
    if (zw != NULL && zw == zb) {
        return TT_ERR_ARG;
    }
    return TT_OK;
}

static void jvp_scales_unpack(const tt_jvp_scales *s, int has_a, int has_b, int has_c, int on[3],
                              int32_t mult[3], int ex[3])
{
    on[0] = has_a;
    on[1] = has_b;
    on[2] = has_c;
    mult[0] = s->a_mult;
    mult[1] = s->b_mult;
    mult[2] = s->c_mult;
    ex[0] = s->a_exp;
    ex[1] = s->b_exp;
    ex[2] = s->c_exp;
}

#define TT_Q_CAT2(a, b) a##b
#define TT_Q_CAT(a, b) TT_Q_CAT2(a, b)
#define TT_Q(name) TT_Q_CAT(name, TQ_SUF)
#define TT_Q_TEMPLATE_PASS

#define TQ int8_t
#define TW int8_t
#define TACC_A int32_t
#define TACC_B int32_t
#define TQ_NARROW_A 0
#define TQ_NARROW_B 0
#define TQ_SUF _q8
#define TQ_BITS 8
#define TQ_FUSED_ONLY 0
#define TQ_DOT_NMAX (1L << 26)
#include "tt_jvp_q.c"
#undef TQ
#undef TW
#undef TACC_A
#undef TACC_B
#undef TQ_NARROW_A
#undef TQ_NARROW_B
#undef TQ_SUF
#undef TQ_BITS
#undef TQ_FUSED_ONLY
#undef TQ_DOT_NMAX

#define TQ int16_t
#define TW int16_t
#define TACC_A int64_t
#define TACC_B int64_t
#define TQ_NARROW_A 1
#define TQ_NARROW_B 1
#define TQ_SUF _q16
#define TQ_BITS 16
#define TQ_FUSED_ONLY 0
#define TQ_DOT_NMAX (1L << 18)
#include "tt_jvp_q.c"
#undef TQ
#undef TW
#undef TACC_A
#undef TACC_B
#undef TQ_NARROW_A
#undef TQ_NARROW_B
#undef TQ_SUF
#undef TQ_BITS
#undef TQ_FUSED_ONLY
#undef TQ_DOT_NMAX

/* int8 tx x int16 w: products up to 2^22 (-128 * -32768), at most 131071 of them: |A| < 2^39,
 * exact in int64 and narrowed like q16's A. int8 x x |z| <= 510: B stays q8's int32. */
#define TQ int8_t
#define TW int16_t
#define TACC_A int64_t
#define TACC_B int32_t
#define TQ_NARROW_A 1
#define TQ_NARROW_B 0
#define TQ_SUF _w16a8
#define TQ_BITS 8
#define TQ_FUSED_ONLY 1
#include "tt_jvp_q.c"

#else /* ======================================================== template body */

/* everything one pass of a fused kernel reads; p == NULL for gemm */
typedef struct {
    const tt_conv2d_params *p;
    const TQ *x, *tx;
    const TW *w;
    TQ *ty;
    int k, m;
    int16_t *zrow; /* |z| <= 510: int16 halves the scratch */
    tt_prng *zw, *zb;
    int dist;
} TT_Q(jvp_layer);

/* what a pass does with output o's raw terms a (A), b (B), c (C of its channel) */
static void TT_Q(jvp_out)(jvp_pass *ps, TACC_A a, TACC_B b, int32_t c, TQ *y)
{
    int32_t a32, b32;
    int64_t s;
    if (ps->mode == JVP_MAX_ACC) {
        ps->max_a = max64(ps->max_a, abs64((int64_t)a));
        ps->max_b = max64(ps->max_b, abs64((int64_t)b));
        return;
    }
    /* narrowed: |rdbpot(A, rs_A)| <= rdbpot(max |A|, rs_A) <= 2^31 - 1 by the choice of rs_A */
    a32 = TQ_NARROW_A ? (int32_t)tt_rdbpot64((int64_t)a, ps->rs_a) : (int32_t)a;
    b32 = TQ_NARROW_B ? (int32_t)tt_rdbpot64((int64_t)b, ps->rs_b) : (int32_t)b;
    s = join_value(ps->t, a32, b32, c);
    if (ps->mode == JVP_MAX_S) {
        ps->max_s = max64(ps->max_s, abs64(s));
    } else {
        *y = (TQ)tt_rdbpot64(s, ps->out_shift); /* |.| <= rdbpot(max |S|, s): never saturates */
    }
}

/* the terms a pass computes: all present ones, except that pass 1 (JVP_MAX_ACC) skips the
 * terms that are not narrowed (their MACs and draws; the generators are restored after it) */
static void TT_Q(jvp_todo)(const TT_Q(jvp_layer) *L, const jvp_pass *ps, int *do_a, int *do_b,
                           int *do_c)
{
    const int all = ps->mode != JVP_MAX_ACC;
    *do_a = L->tx != NULL && (all || TQ_NARROW_A);
    *do_b = L->zw != NULL && (all || TQ_NARROW_B);
    *do_c = L->zb != NULL && all;
}

/* gemm, batch 1: output j outer, kk inner; Z drawn in (j, kk) order, C in j order */
static void TT_Q(gemm_walk)(const TT_Q(jvp_layer) *L, jvp_pass *ps)
{
    uint32_t zw_word = 0U, zb_word = 0U;
    int zw_left = 0, zb_left = 0, j, kk, do_a, do_b, do_c;
    TT_Q(jvp_todo)(L, ps, &do_a, &do_b, &do_c);
    for (j = 0; j < L->m; ++j) {
        TACC_A a = 0;
        TACC_B b = 0;
        int32_t c = 0;
        if (do_a && L->k > 0) {
            const TW *wj = L->w + (size_t)j * (size_t)L->k;
            for (kk = 0; kk < L->k; ++kk) {
                a += (TACC_A)L->tx[kk] * wj[kk];
            }
        }
        if (do_b) {
            for (kk = 0; kk < L->k; ++kk) {
                b += (TACC_B)L->x[kk] * next_z(L->zw, L->dist, &zw_word, &zw_left);
            }
        }
        if (do_c) {
            c = next_z(L->zb, L->dist, &zb_word, &zb_left);
        }
        TT_Q(jvp_out)(ps, a, b, c, L->ty + j);
    }
}

/* conv: output channel outer (its direction row in zrow, its bias direction value), then
 * output-stationary over (oh, ow) with the taps clipped to the input as tt_conv2d_fwd_* */
static void TT_Q(conv_walk)(const TT_Q(jvp_layer) *L, jvp_pass *ps)
{
    const tt_conv2d_params *p = L->p;
    const int cin_g = p->in_c / p->groups, cout_g = p->out_c / p->groups;
    const size_t in_hw = (size_t)p->in_h * (size_t)p->in_w;
    const size_t khw = (size_t)p->k_h * (size_t)p->k_w;
    const size_t row = (size_t)cin_g * khw;
    uint32_t zw_word = 0U, zb_word = 0U;
    int zw_left = 0, zb_left = 0, oc, oh, ow, icg, kh, kw, do_a, do_b, do_c;
    TQ *y = L->ty;
    size_t r;
    TT_Q(jvp_todo)(L, ps, &do_a, &do_b, &do_c);
    for (oc = 0; oc < p->out_c; ++oc) {
        const size_t xg = (size_t)(oc / cout_g) * (size_t)cin_g * in_hw; /* group's inputs */
        const size_t wo = (size_t)oc * row;
        int32_t c = 0;
        if (do_b) {
            /* Z[oc][.][.][.]: the draws continue from the previous channel (mid word) */
            for (r = 0; r < row; ++r) {
                L->zrow[r] = (int16_t)next_z(L->zw, L->dist, &zw_word, &zw_left);
            }
        }
        if (do_c) {
            c = next_z(L->zb, L->dist, &zb_word, &zb_left);
        }
        for (oh = 0; oh < p->out_h; ++oh) {
            int kh0, kh1;
            const int ih0 = oh * p->stride_h - p->pad_top;
            tap_range(oh, p->stride_h, p->pad_top, p->k_h, p->in_h, &kh0, &kh1);
            for (ow = 0; ow < p->out_w; ++ow) {
                int kw0, kw1;
                const int iw0 = ow * p->stride_w - p->pad_left;
                TACC_A a = 0;
                TACC_B b = 0;
                tap_range(ow, p->stride_w, p->pad_left, p->k_w, p->in_w, &kw0, &kw1);
                for (icg = 0; icg < cin_g && kw0 < kw1; ++icg) {
                    for (kh = kh0; kh < kh1; ++kh) {
                        /* offsets of the first valid tap of this kernel row in x / tx and in
                         * w / zrow (pointers are formed only for present arrays) */
                        const size_t xo = xg + (size_t)icg * in_hw +
                                          (size_t)(ih0 + kh) * (size_t)p->in_w +
                                          (size_t)(iw0 + kw0);
                        const size_t zo = (size_t)icg * khw + (size_t)kh * (size_t)p->k_w +
                                          (size_t)kw0;
                        if (do_a) {
                            const TQ *tr = L->tx + xo;
                            const TW *wr = L->w + wo + zo;
                            for (kw = 0; kw < kw1 - kw0; ++kw) {
                                a += (TACC_A)tr[kw] * wr[kw];
                            }
                        }
                        if (do_b) {
                            const TQ *xr = L->x + xo;
                            const int16_t *zr = L->zrow + zo;
                            for (kw = 0; kw < kw1 - kw0; ++kw) {
                                b += (TACC_B)xr[kw] * zr[kw];
                            }
                        }
                    }
                }
                TT_Q(jvp_out)(ps, a, b, c, y++);
            }
        }
    }
}

static void TT_Q(jvp_walk)(const TT_Q(jvp_layer) *L, jvp_pass *ps)
{
    if (L->p != NULL) {
        TT_Q(conv_walk)(L, ps);
    } else {
        TT_Q(gemm_walk)(L, ps);
    }
}

/* the passes of a fused kernel (arguments validated by the caller) */
static tt_status TT_Q(jvp_fused)(const TT_Q(jvp_layer) *L, const tt_jvp_scales *s, int *e_out)
{
    const tt_prng zw0 = prng_save(L->zw), zb0 = prng_save(L->zb);
    jvp_pass ps;
    int on[3], ex[3], e2;
    int32_t mult[3];
    tt_status st;
    jvp_scales_unpack(s, L->tx != NULL, L->zw != NULL, L->zb != NULL, on, mult, ex);
    st = join_setup(on, mult, ex, ps.t, &e2);
    if (st != TT_OK) {
        return st;
    }
    ps.rs_a = ps.rs_b = ps.out_shift = 0;
    ps.max_a = ps.max_b = ps.max_s = 0;
    if ((TQ_NARROW_A && L->tx != NULL) || (TQ_NARROW_B && L->zw != NULL)) {
        /* pass 1 (only with a narrowed term present): the tensor-wide int64 -> int32
         * narrowing shifts; they move E and so every Q_t shift of the join */
        ps.mode = JVP_MAX_ACC;
        TT_Q(jvp_walk)(L, &ps);
        prng_restore(L->zw, &zw0);
        prng_restore(L->zb, &zb0);
        ps.rs_a = TQ_NARROW_A ? pow2_shift(ps.max_a, 32) : 0;
        ps.rs_b = TQ_NARROW_B ? pow2_shift(ps.max_b, 32) : 0;
        ex[0] += ps.rs_a;
        ex[1] += ps.rs_b;
        st = join_setup(on, mult, ex, ps.t, &e2);
        if (st != TT_OK) {
            return st;
        }
    }
    /* max |S| -> s, then recompute S and round it once (two passes instead of n int64) */
    ps.mode = JVP_MAX_S;
    TT_Q(jvp_walk)(L, &ps);
    prng_restore(L->zw, &zw0);
    prng_restore(L->zb, &zb0);
    ps.out_shift = pow2_shift(ps.max_s, TQ_BITS);
    ps.mode = JVP_WRITE;
    TT_Q(jvp_walk)(L, &ps); /* leaves zw / zb right after their tensors */
    *e_out = e2 + ps.out_shift;
    return TT_OK;
}

tt_status TT_Q(tt_gemm_jvp)(const TQ *x, const TQ *tx, const TW *w, TQ *TT_RESTRICT ty, int k,
                            int m, tt_prng *zw, tt_prng *zb, int dist, const tt_jvp_scales *s,
                            int *e_out)
{
    TT_Q(jvp_layer) L;
    const int mk = (m > 0 && k > 0);
    tt_status st = jvp_args_ok(zw, zb, tx != NULL, dist, s, e_out);
    if (st != TT_OK) {
        return st;
    }
    if (k < 0 || m < 0 || (m > 0 && ty == NULL) || (tx != NULL && mk && w == NULL) ||
        (zw != NULL && mk && x == NULL)) {
        return TT_ERR_ARG;
    }
    L.p = NULL;
    L.x = x;
    L.tx = tx;
    L.w = w;
    L.ty = ty;
    L.k = k;
    L.m = m;
    L.zrow = NULL;
    L.zw = zw;
    L.zb = zb;
    L.dist = dist;
    return TT_Q(jvp_fused)(&L, s, e_out);
}

tt_status TT_Q(tt_conv2d_jvp)(const tt_conv2d_params *p, const TQ *x, const TQ *tx, const TW *w,
                              TQ *TT_RESTRICT ty, tt_prng *zw, tt_prng *zb, int dist,
                              const tt_jvp_scales *s, int *e_out, int16_t *zrow)
{
    TT_Q(jvp_layer) L;
    tt_status st = conv_check(p);
    if (st != TT_OK) {
        return st;
    }
    st = jvp_args_ok(zw, zb, tx != NULL, dist, s, e_out);
    if (st != TT_OK) {
        return st;
    }
    if (ty == NULL || (tx != NULL && w == NULL) || (zw != NULL && (x == NULL || zrow == NULL))) {
        return TT_ERR_ARG;
    }
    L.p = p;
    L.x = x;
    L.tx = tx;
    L.w = w;
    L.ty = ty;
    L.k = L.m = 0;
    L.zrow = zrow;
    L.zw = zw;
    L.zb = zb;
    L.dist = dist;
    return TT_Q(jvp_fused)(&L, s, e_out);
}

#if !TQ_FUSED_ONLY

tt_status TT_Q(tt_tangent_join)(TQ *TT_RESTRICT ty, int n, int inner, const int32_t *a,
                                int32_t a_mult, int a_exp, const int32_t *b, int32_t b_mult,
                                int b_exp, const int32_t *c, int32_t c_mult, int c_exp,
                                int *e_out)
{
    join_term t[3];
    int on[3], ex[3], e2, s, i, j = 0, ic = 0;
    int32_t mult[3];
    int64_t m = 0;
    tt_status st;
    if (e_out == NULL || n < 0 || (n > 0 && ty == NULL)) {
        return TT_ERR_ARG;
    }
    if (c != NULL && (inner < 1 || n % inner != 0)) {
        return TT_ERR_ARG;
    }
    on[0] = a != NULL;
    on[1] = b != NULL;
    on[2] = c != NULL;
    mult[0] = a_mult;
    mult[1] = b_mult;
    mult[2] = c_mult;
    ex[0] = a_exp;
    ex[1] = b_exp;
    ex[2] = c_exp;
    st = join_setup(on, mult, ex, t, &e2);
    if (st != TT_OK) {
        return st;
    }
    /* pass 1: max |S_i| -> s; pass 2: recompute S_i (cheaper than n int64 of scratch) and
     * round it once. ic = i / inner indexes c. */
    for (i = 0; i < n; ++i) {
        const int64_t v = join_value(t, a ? a[i] : 0, b ? b[i] : 0, c ? c[ic] : 0);
        m = max64(m, abs64(v));
        if (c != NULL && ++j == inner) {
            j = 0;
            ++ic;
        }
    }
    s = pow2_shift(m, TQ_BITS);
    j = ic = 0;
    for (i = 0; i < n; ++i) {
        ty[i] = (TQ)tt_rdbpot64(join_value(t, a ? a[i] : 0, b ? b[i] : 0, c ? c[ic] : 0), s);
        if (c != NULL && ++j == inner) {
            j = 0;
            ++ic;
        }
    }
    *e_out = e2 + s;
    return TT_OK;
}

/* first maximum of the clipped window (row-major, strict >): tt_pool_q.c's window_argmax */
static int TT_Q(window_argmax)(const TQ *xc, int in_w, int h0, int h1, int w0, int w1)
{
    int best = h0 * in_w + w0, ih, iw;
    TQ m = xc[best];
    for (ih = h0; ih < h1; ++ih) {
        for (iw = w0; iw < w1; ++iw) {
            if (xc[ih * in_w + iw] > m) {
                m = xc[ih * in_w + iw];
                best = ih * in_w + iw;
            }
        }
    }
    return best;
}

tt_status TT_Q(tt_maxpool2d_jvp)(const tt_pool2d_params *p, const TQ *x, const TQ *tx,
                                 TQ *TT_RESTRICT ty)
{
    const tt_status st = tt_pool2d_check(p);
    int c, oh, ow;
    if (st != TT_OK) {
        return st;
    }
    if (x == NULL || tx == NULL || ty == NULL) {
        return TT_ERR_ARG;
    }
    for (c = 0; c < p->c; ++c) {
        const size_t off = (size_t)c * (size_t)(p->in_h * p->in_w);
        for (oh = 0; oh < p->out_h; ++oh) {
            const int hs = oh * p->stride_h - p->pad_top;
            const int h0 = imax(hs, 0), h1 = imin(hs + p->k_h, p->in_h);
            for (ow = 0; ow < p->out_w; ++ow) {
                const int ws = ow * p->stride_w - p->pad_left;
                const int w0 = imax(ws, 0), w1 = imin(ws + p->k_w, p->in_w);
                *ty++ = tx[off + (size_t)TT_Q(window_argmax)(x + off, p->in_w, h0, h1, w0, w1)];
            }
        }
    }
    return TT_OK;
}

tt_status TT_Q(tt_dot_q30)(const int32_t *g, const TQ *t, int n, int64_t *s)
{
    int64_t acc = 0;
    int i;
    if (n < 0 || (long)n >= TQ_DOT_NMAX || s == NULL || (n > 0 && (g == NULL || t == NULL))) {
        return TT_ERR_ARG;
    }
    for (i = 0; i < n; ++i) {
        acc += (int64_t)g[i] * t[i];
    }
    *s = acc;
    return TT_OK;
}

#endif /* !TQ_FUSED_ONLY */

#endif /* TT_Q_TEMPLATE_PASS */
