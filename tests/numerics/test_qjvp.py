"""Fixed-point forward-mode (JVP) kernels (tt_qjvp.h, tt_jvp_q.c): C == numpy twin
(tinytrain.numerics.qjvp) integer for integer, generator state for generator state, and both
== an independent reference (np.einsum on padded inputs, the directions drawn separately with
Pcg32, exact Python integers / Fractions for the narrowing and the tangent join, pool_ref for
the argmax). The fused Gemm / Conv tangent kernels are checked against the numpy composition
that defines them (raw accumulators, x . z, bias direction, q16 narrowing, join); the
composition's building blocks have numpy twins only (no C of their own). Formats: q8, q16 and
w16a8 (int8 data, int16 weights: A in int64, narrowed like q16's; B and C as q8's)."""
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from conftest import SANITIZE
from num_helpers import conv_params, pool_params, pool_ref, shapes
from tinytrain.numerics import fixed as fx, qjvp, qkernels as qk
from tinytrain.numerics.prng import MULT, Pcg32, _output, stream_id

EX = dict(deadline=None, max_examples=10 if SANITIZE else 60)
SEED = st.integers(0, 2**32 - 1)
BITS = st.sampled_from([8, 16])
FORMATS = [(8, 8), (16, 16), (8, 16)]            # (bits, wbits): q8, q16, w16a8
FMT_IDS = ["q8", "q16", "w16a8"]
FMT = st.sampled_from(FORMATS)
DIST = st.sampled_from([qk.ZO_RADEMACHER, qk.ZO_GAUSS])
MASK64 = (1 << 64) - 1


def qdt(bits):
    return np.int8 if bits == 8 else np.int16


def adt(bits, wbits=None):
    """the accumulator of A: int64 as soon as data or weights are int16"""
    return np.int32 if max(bits, wbits or bits) == 8 else np.int64


def fn(nl, name, bits, wbits=None):
    suffix = f"q{bits}" if wbits in (None, bits) else f"w{wbits}a{bits}"
    return getattr(nl.lib, f"tt_{name}_{suffix}")


def ints(rng, lo, hi, size, extremes):
    """Uniform in [lo, hi]; with `extremes`, half the values from the edges of the range."""
    v = rng.integers(lo, hi + 1, size, dtype=np.int64)
    if extremes and size:
        edge = np.array([lo, lo + 1, hi, hi - 1, 0, 1, -1], np.int64)
        pick = rng.random(size) < 0.5
        v[pick] = edge[rng.integers(0, edge.size, int(pick.sum()))]
    return v


def qdata(rng, bits, size, extremes):
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return ints(rng, lo, hi, size, extremes).astype(qdt(bits))


def z_of(seed, sid, n, dist):
    g = Pcg32(seed, sid)
    return (g.rademacher(n) if dist == qk.ZO_RADEMACHER else g.gauss(n)).astype(np.int64)


def draws(n, dist):
    return (n + 31) // 32 if dist == qk.ZO_RADEMACHER else n


def assert_same_generator(nl, cst, py, seed, sid, ndraws):
    """C and numpy generators in the same state, ndraws after the start, same next draw."""
    e = Pcg32(seed, sid)
    e.advance(ndraws)
    assert (cst.state, cst.inc) == (py.state, py.inc) == (e.state, e.inc)
    assert nl.lib.tt_prng_u32(cst) == py.next_u32()


def conv_ref(p, x, w):
    """Independent integer convolution: zero-padded input, one strided einsum per tap."""
    (ic, ih, iw), (oc, cin_g, kh, kw), (_, oh, ow) = shapes(p)
    sh, sw, pt, pl, g = p["stride_h"], p["stride_w"], p["pad_top"], p["pad_left"], p["groups"]
    hp = max(ih + pt, (oh - 1) * sh + kh)
    wp = max(iw + pl, (ow - 1) * sw + kw)
    xp = np.zeros((ic, hp, wp), np.int64)
    xp[:, pt:pt + ih, pl:pl + iw] = np.asarray(x, np.int64).reshape(ic, ih, iw)
    w = np.asarray(w, np.int64).reshape(oc, cin_g, kh, kw)
    acc = np.zeros((oc, oh, ow), np.int64)
    cout_g = oc // g
    for gi in range(g):
        xs = xp[gi * cin_g:(gi + 1) * cin_g]
        ws = w[gi * cout_g:(gi + 1) * cout_g]
        for a in range(kh):
            for b in range(kw):
                patch = xs[:, a:a + (oh - 1) * sh + 1:sh, b:b + (ow - 1) * sw + 1:sw]
                acc[gi * cout_g:(gi + 1) * cout_g] += np.einsum("oc,chw->ohw", ws[:, :, a, b],
                                                               patch)
    return acc.reshape(-1)


# ---- the composition's building blocks (numpy twins: the spec of the fused kernels) ---------

def z_at(seed, sid, skip, n, dist):
    """The n direction values of a tensor whose first value is `skip` draws into the stream."""
    g = Pcg32(seed, sid)
    g.advance(skip)
    return (g.rademacher(n) if dist == qk.ZO_RADEMACHER else g.gauss(n)).astype(np.int64)


@settings(**EX)
@given(fmt=FMT, seed=SEED, n=st.sampled_from([0, 1, 1, 2, 3, 5]), k=st.integers(0, 40),
       m=st.integers(0, 9), extremes=st.booleans())
def test_gemm_acc(fmt, seed, n, k, m, extremes):
    bits, wbits = fmt
    rng = np.random.default_rng(seed)
    x, w = qdata(rng, bits, n * k, extremes), qdata(rng, wbits, m * k, extremes)
    acc = qjvp.gemm_acc(x, w, n, k, m, bits, wbits)
    ref = np.einsum("ik,jk->ij", x.astype(np.int64).reshape(n, k),
                    w.astype(np.int64).reshape(m, k)).reshape(-1)
    assert acc.dtype == adt(bits, wbits)
    np.testing.assert_array_equal(acc, ref)


@settings(**EX)
@given(fmt=FMT, seed=SEED, p=conv_params(), extremes=st.booleans())
def test_conv2d_acc(fmt, seed, p, extremes):
    bits, wbits = fmt
    rng = np.random.default_rng(seed)
    xs, ws, ys = shapes(p)
    x = qdata(rng, bits, int(np.prod(xs)), extremes)
    w = qdata(rng, wbits, int(np.prod(ws)), extremes)
    acc = qjvp.conv2d_acc(p, x, w, bits, wbits)
    assert acc.dtype == adt(bits, wbits)
    np.testing.assert_array_equal(acc, conv_ref(p, x, w))
    # the forward kernel's accumulator (w16a8: tt_conv2d_fwd_w16a8's): the forward with a unit
    # POW2 scale is its saturation
    y, _ = qk.conv2d_fwd(p, x, w, None, fx.Requant(mode=fx.RQ_POW2), bits, wbits)
    np.testing.assert_array_equal(y, np.clip(acc, -(1 << (bits - 1)), (1 << (bits - 1)) - 1))


@settings(**EX)
@given(bits=BITS, dist=DIST, seed=SEED, n=st.sampled_from([0, 1, 1, 2, 4]),
       k=st.integers(0, 45), m=st.integers(0, 8), step=st.integers(0, 2**31 - 1),
       skip=st.integers(0, 1000), extremes=st.booleans())
def test_gemm_zx(bits, dist, seed, n, k, m, step, skip, extremes):
    """The caller positions the generator (seed + advance); the m*k values of the weight
    direction are drawn in (j, kk) order and the generator stops right after them."""
    rng = np.random.default_rng(seed)
    x = qdata(rng, bits, n * k, extremes)
    sid = stream_id(step, 3)
    py = Pcg32(seed, sid)
    py.advance(skip)
    acc = qjvp.gemm_zx(x, n, k, m, py, dist, bits)
    assert acc.dtype == adt(bits)
    z = z_at(seed, sid, skip, m * k, dist)
    ref = np.einsum("ik,jk->ij", x.astype(np.int64).reshape(n, k), z.reshape(m, k))
    np.testing.assert_array_equal(acc, ref.reshape(-1))
    e = Pcg32(seed, sid)
    e.advance(skip + draws(m * k, dist))
    assert (py.state, py.inc) == (e.state, e.inc)


@settings(**EX)
@given(bits=BITS, dist=DIST, seed=SEED, p=conv_params(), extremes=st.booleans())
def test_conv2d_zx(bits, dist, seed, p, extremes):
    rng = np.random.default_rng(seed)
    xs, ws, ys = shapes(p)
    x = qdata(rng, bits, int(np.prod(xs)), extremes)
    nw = int(np.prod(ws))
    sid = stream_id(int(rng.integers(0, 2**31)), 1)
    py = Pcg32(seed, sid)
    np.testing.assert_array_equal(qjvp.conv2d_zx(p, x, py, dist, bits),
                                  conv_ref(p, x, z_of(seed, sid, nw, dist)))
    e = Pcg32(seed, sid)
    e.advance(draws(nw, dist))
    assert (py.state, py.inc) == (e.state, e.inc)


@pytest.mark.parametrize("dist", [qk.ZO_RADEMACHER, qk.ZO_GAUSS])
def test_zx_direction_is_the_zo_perturbation(nl, dist):
    """x = I: gemm_zx returns Z^T, the very values tt_zo_perturb_q16 (C) adds (eps 1, zero
    weights) from the same key; and a 1x1 conv over a one-hot input picks Z[oc][ic]."""
    m, k, seed, sid = 7, 40, 123, stream_id(5, 2)
    x = np.eye(k, dtype=np.int8).reshape(-1)
    acc = qjvp.gemm_zx(x, k, k, m, Pcg32(seed, sid), dist, 8)
    w0, wz = np.zeros(m * k, np.int16), np.zeros(m * k, np.int16)
    nl.ok(nl.lib.tt_zo_perturb_q16(nl.ptr(w0), nl.ptr(wz), m * k, nl.prng(seed, sid), 1, dist,
                                   nl.NULL))
    np.testing.assert_array_equal(acc.reshape(k, m).T.reshape(-1), wz)
    p = dict(in_c=k, in_h=1, in_w=k, out_c=m, out_h=1, out_w=k, k_h=1, k_w=1, stride_h=1,
             stride_w=1, pad_top=0, pad_left=0, groups=1)
    xc = np.eye(k, dtype=np.int16).reshape(-1)              # channel ic hot at column ic
    np.testing.assert_array_equal(qjvp.conv2d_zx(p, xc, Pcg32(seed, sid), dist, 16), wz)


@settings(**EX)
@given(dist=DIST, seed=SEED, sizes=st.lists(st.integers(0, 70), min_size=1, max_size=4))
def test_zo_values_consecutive_tensors(dist, seed, sizes):
    """Tensors drawn one after the other from one generator: each starts its own Rademacher
    word, exactly as a caller that advances per tensor would find them."""
    py = Pcg32(seed, 9)
    total = 0
    for s in sizes:
        tw = qjvp.zo_values(py, s, dist)
        assert tw.dtype == np.int32
        np.testing.assert_array_equal(tw, z_at(seed, 9, total, s, dist))
        total += draws(s, dist)
    e = Pcg32(seed, 9)
    e.advance(total)
    assert (py.state, py.inc) == (e.state, e.inc)


def test_building_block_argument_errors():
    x = np.ones(12, np.int8)
    with pytest.raises(ValueError):
        qjvp.gemm_zx(x, 3, 4, 4, Pcg32(1, 2), 2, 8)
    with pytest.raises(ValueError):
        qjvp.zo_values(Pcg32(1, 2), 3, 3)
    with pytest.raises(ValueError):
        qjvp.zo_values(Pcg32(1, 2), -1, 0)
    with pytest.raises(ValueError):
        qjvp.gemm_acc(x, x, 3, 4, 1, bits=12)
    with pytest.raises(ValueError):
        qjvp.gemm_acc(x, x, 3, 4, 1, bits=16, wbits=8)            # no a16w8 format


# ---- tangent join ---------------------------------------------------------------------------

def join_exact(n, inner, terms, bits):
    """The algorithm of tt_qjvp.h in Python integers, and the exact real sum (Fraction) of
    every element. terms: list of (values, mult, exp, per_channel) for the PRESENT terms."""
    def rdb(x, s):                                  # round half away from zero of x / 2^s
        q, r = divmod(abs(x), 1 << s)
        return (q + (2 * r >= (1 << s))) * (1 if x >= 0 else -1)
    e = max(ex - 31 for _, _, ex, _ in terms)
    S, R = [0] * n, [Fraction(0)] * n
    for v, mult, ex, pc in terms:
        unit = Fraction(2) ** (ex - 31)             # once per term: exponents reach 2^24
        for i in range(n):
            val = int(v[i // inner] if pc else v[i])
            S[i] += rdb(val * mult, min(e - (ex - 31) + 2, 63))
            R[i] += val * mult * unit
    m = max((abs(s) for s in S), default=0)
    limit = (1 << (bits - 1)) - 1
    s = 0
    while rdb(m, s) > limit:
        s += 1
    return [rdb(v, s) for v in S], e + 2 + s, s, e, R


I32_EDGE = [-(1 << 31), (1 << 31) - 1, -(1 << 31) + 1, 0, 1, -1, 2, -2, 3, -3]
MULT_EDGE = [0, 1, 2, 3, (1 << 30), (1 << 31) - 1, (1 << 30) + 1, 1518500250]


@st.composite
def join_case(draw):
    n_ch = draw(st.integers(0, 6))
    inner = draw(st.integers(1, 5))
    n = n_ch * inner
    kind = draw(st.sampled_from(["random", "edge", "small"]))
    present = draw(st.lists(st.booleans(), min_size=3, max_size=3).filter(any))
    seed = draw(SEED)
    rng = np.random.default_rng(seed)
    e0 = draw(st.integers(-80, 40))
    terms = []
    for t in range(3):
        size = n_ch if t == 2 else n
        if not present[t]:
            terms.append((None, draw(st.integers(-5, 5)), draw(st.integers(-5, 5))))
            continue
        if kind == "edge":
            v = np.array([I32_EDGE[j] for j in rng.integers(0, len(I32_EDGE), size)], np.int32)
            mult = draw(st.sampled_from(MULT_EDGE))
        elif kind == "small":                       # many exact ties at every shift
            v = rng.integers(-9, 10, size).astype(np.int32)
            mult = draw(st.integers(0, 3))
        else:
            mag = draw(st.integers(0, 31))
            v = rng.integers(-(1 << mag), (1 << mag), size, endpoint=True).clip(
                -(1 << 31), (1 << 31) - 1).astype(np.int32)
            mult = draw(st.integers(0, (1 << 31) - 1))
        # exponent gaps from 0 to beyond 63 (a term below the rounding entirely)
        gap = draw(st.sampled_from([0, 0, 1, 2, 5, 17, 31, 60, 61, 62, 63, 64, 90]))
        ex = e0 - gap if draw(st.booleans()) else e0 + draw(st.integers(0, 3))
        terms.append((v, mult, ex))
    return n, inner, terms


@settings(**dict(EX, max_examples=10 if SANITIZE else 150))
@given(bits=BITS, case=join_case())
def test_tangent_join(nl, bits, case):
    n, inner, terms = case
    (a, am, ae), (b, bm, be), (c, cm, ce) = terms
    ty = np.full(n, 77, qdt(bits))
    e_out = nl.ffi.new("int *", -999)
    nl.ok(fn(nl, "tangent_join", bits)(nl.ptr(ty), n, inner, nl.ptr(a), am, ae, nl.ptr(b), bm,
                                       be, nl.ptr(c), cm, ce, e_out))
    tw, etw = qjvp.tangent_join(n, inner, a, am, ae, b, bm, be, c, cm, ce, bits)
    assert tw.dtype == qdt(bits)
    np.testing.assert_array_equal(ty, tw)
    assert e_out[0] == etw
    present = [(v, mlt, ex, t == 2) for t, (v, mlt, ex) in enumerate(terms) if v is not None]
    want, ew, s, e, R = join_exact(n, inner, present, bits)
    assert list(ty) == want and etw == ew
    # float sanity, exactly: |ty * 2^e_out - real sum| <= (s > 0) / 2 LSB + 1/2 * 2^(E+2)
    # per present term (<= 3/2 LSB); a non-zero result uses the format (>= 2^(bits-2) when
    # shifted)
    lsb = Fraction(2) ** ew
    bound = (Fraction(1, 2) * lsb if s > 0 else 0) + Fraction(len(present), 2) * Fraction(2) ** (e + 2)
    assert bound <= Fraction(3, 2) * lsb
    for q, r in zip(want, R):
        assert abs(q * lsb - r) <= bound
    if s > 0:
        assert max(abs(int(q)) for q in ty) >= 1 << (bits - 2)


def test_tangent_join_ties_and_far_terms(nl):
    """Hand cases: ties away from zero in Q_t and in the final shift, a term 61+ binades
    below the largest (shift 63: contributes exactly 0), n = 0."""
    e_out = nl.ffi.new("int *")
    cases = [  # (a, a_mult, a_exp, c, c_mult, c_exp, inner, bits, ty, e_out)
        # Q = rdbpot(v, 2): 2 -> 1 (0.5 away), -2 -> -1, 6 -> 2 (1.5 -> 2), -6 -> -2
        ([2, -2, 6, -6, 1, -1], 1, 31, None, 0, 0, 1, 8, [1, -1, 2, -2, 0, 0], 2),
        # a per-channel c (1 value, inner 2): S = [512, 0], s = 3 (rdbpot(512, 2) = 128 > 127)
        ([1 << 10, -(1 << 10)], 1, 31, [1 << 10], 1, 31, 2, 8, [64, 0], 5),
        # ties in the final shift: S = [386, -386, 2] -> s = 2, 96.5 -> 97, 0.5 -> 1
        ([386 * 4, -386 * 4, 8], 1, 31, None, 0, 0, 1, 8, [97, -97, 1], 4),
        # far term: P = (2^31 - 1)^2 < 2^62 at 61 binades below E -> shift 63 -> exactly 0
        # (its real value ~2 is then the rounding error: within 1/2 * 2^(E+2) per term)
        ([5], 1, 31, [(1 << 31) - 1], (1 << 31) - 1, 31 - 61, 1, 16, [1], 2),
        ([5], 1, 31, [(1 << 31) - 1], (1 << 31) - 1, 31 - 60, 1, 16, [2], 2),
    ]
    for a, am, ae, c, cm, ce, inner, bits, want, ew in cases:
        av = np.array(a, np.int32)
        cv = None if c is None else np.array(c, np.int32)
        ty = np.zeros(len(a), qdt(bits))
        nl.ok(fn(nl, "tangent_join", bits)(nl.ptr(ty), len(a), inner, nl.ptr(av), am, ae,
                                           nl.NULL, 0, 0, nl.ptr(cv), cm, ce, e_out))
        tw, et = qjvp.tangent_join(len(a), inner, av, am, ae, None, 0, 0, cv, cm, ce, bits)
        assert list(ty) == list(tw) and e_out[0] == et, (a, c)
        if want is not None:
            assert (list(ty), e_out[0]) == (want, ew), (a, c)
    nl.ok(nl.lib.tt_tangent_join_q8(nl.NULL, 0, 1, nl.NULL, 0, 0, nl.NULL, 0, 0,
                                    nl.ffi.new("int32_t[1]"), 5, 40, e_out))
    assert e_out[0] == 40 - 31 + 2
    assert qjvp.tangent_join(0, 1, None, 0, 0, None, 0, 0, np.zeros(0, np.int32), 5, 40, 8)[1] == 11


def test_tangent_join_argument_errors(nl):
    a = np.array([1, 2, 3, 4], np.int32)
    c = np.array([1, 2], np.int32)
    ty = np.full(4, 9, np.int8)
    e_out = nl.ffi.new("int *", 1234)
    big = 1 << 24
    bad = [  # (n, inner, a?, a_mult, a_exp, c?, c_mult, c_exp)
        (4, 1, False, 1, 0, False, 1, 0),          # no term
        (-1, 1, True, 1, 0, False, 1, 0),
        (4, 1, True, -1, 0, False, 1, 0),          # negative multiplier
        (4, 1, True, 1, big + 1, False, 1, 0),     # exponent range
        (4, 1, True, 1, -big - 1, False, 1, 0),
        (4, 0, True, 1, 0, True, 1, 0),            # c with inner 0
        (4, 3, False, 1, 0, True, 1, 0),           # n % inner
        (4, 2, True, 1, 0, True, -5, 0),           # c's multiplier
    ]
    for n, inner, ha, am, ae, hc, cm, ce in bad:
        assert nl.lib.tt_tangent_join_q8(nl.ptr(ty), n, inner, nl.ptr(a) if ha else nl.NULL, am,
                                         ae, nl.NULL, 0, 0, nl.ptr(c) if hc else nl.NULL, cm,
                                         ce, e_out) == nl.lib.TT_ERR_ARG, (n, inner, am, ae)
        if n >= 0:
            with pytest.raises(ValueError):
                qjvp.tangent_join(n, inner, a if ha else None, am, ae, None, 0, 0,
                                  c if hc else None, cm, ce, 8)
    # an absent term's mult / exp are ignored; bits extremes accepted
    nl.ok(nl.lib.tt_tangent_join_q8(nl.ptr(ty), 4, 0, nl.ptr(a), (1 << 31) - 1, big, nl.NULL, -7,
                                    -big * 4, nl.NULL, -1, 1 << 30, e_out))
    ty[:] = 9
    e_out[0] = 1234
    assert nl.lib.tt_tangent_join_q8(nl.NULL, 4, 1, nl.ptr(a), 1, 0, nl.NULL, 0, 0, nl.NULL, 0,
                                     0, e_out) == nl.lib.TT_ERR_ARG
    assert nl.lib.tt_tangent_join_q16(nl.ffi.new("int16_t[4]"), 4, 1, nl.ptr(a), 1, 0, nl.NULL,
                                      0, 0, nl.NULL, 0, 0, nl.NULL) == nl.lib.TT_ERR_ARG
    np.testing.assert_array_equal(ty, 9)
    assert e_out[0] == 1234


# ---- fused Gemm / Conv tangents == the numpy composition -------------------------------------

I32_MAX = (1 << 31) - 1
GAPS = [0, 0, 1, 2, 5, 17, 31, 60, 61, 62, 63, 64, 90]
GUARD = 16                                       # int16 canaries after zrow
CANARY = -0x5A5A


def rdb_int(x, s):
    """round half away from zero of x / 2^s, Python integers"""
    q, r = divmod(abs(x), 1 << s)
    return (q + (2 * r >= (1 << s))) * (1 if x >= 0 else -1)


def narrow_exact(v, wide):
    """An int64 (`wide`) accumulator's tensor-wide narrowing to int32 (smallest rs with
    rdbpot(max|v|, rs) <= 2^31 - 1), in Python integers; int32 ones are not narrowed."""
    if not wide:
        return v, 0
    m = max((abs(t) for t in v), default=0)
    rs = 0
    while rdb_int(m, rs) > I32_MAX:
        rs += 1
    return [rdb_int(t, rs) for t in v], rs


class Case:
    """One fused-kernel call: layer 'gemm' (geo = (k, m)) or 'conv' (geo = params), the data,
    which terms are present (tx, zw, zb) and where the directions start in stream sid."""

    def __init__(self, layer, geo, bits, dist, has, seed, rng, extremes, scales, skip_w=0,
                 gap_b=0, data=None, wbits=None):
        self.layer, self.geo, self.bits, self.dist, self.has = layer, geo, bits, dist, has
        self.wbits = bits if wbits is None else wbits
        self.seed, self.sid, self.scales = seed, stream_id(int(rng.integers(0, 2**31)), 7), scales
        if layer == "gemm":
            k, m = geo
            nx, nw, self.n, self.inner, self.n_ch = k, m * k, m, 1, m
        else:
            xs, ws, ys = shapes(geo)
            nx, nw = int(np.prod(xs)), int(np.prod(ws))
            self.n, self.inner, self.n_ch = int(np.prod(ys)), ys[1] * ys[2], ys[0]
        self.nw = nw
        if data is None:
            data = (qdata(rng, bits, nx, extremes), qdata(rng, bits, nx, extremes),
                    qdata(rng, self.wbits, nw, extremes))
        self.x, self.tx, self.w = data
        # the bias direction follows the weight's in the same stream (as the lowering lays
        # the parameters out), possibly after other tensors' draws
        self.skip_w = skip_w
        self.skip_b = skip_w + draws(nw, dist) + gap_b

    def arrays(self):
        """(x, tx, w) as the lowering passes them: x only for zw, tx and w only for tx."""
        return (self.x if self.has[1] else None, self.tx if self.has[0] else None,
                self.w if self.has[0] else None)

    def ends(self):
        return self.skip_w + draws(self.nw, self.dist), self.skip_b + draws(self.n_ch, self.dist)

    def c_gens(self, nl):
        out = []
        for on, skip in zip(self.has[1:], (self.skip_w, self.skip_b)):
            g = nl.prng(self.seed, self.sid) if on else nl.NULL
            if on:
                nl.lib.tt_prng_advance(g, skip)
            out.append(g)
        return out

    def py_gens(self):
        out = []
        for on, skip in zip(self.has[1:], (self.skip_w, self.skip_b)):
            g = Pcg32(self.seed, self.sid) if on else None
            if on:
                g.advance(skip)
            out.append(g)
        return out


def run_c(nl, c, zrow_size=None, scales=None):
    """(status, ty, e_out, zw, zb) of the C kernel; checks the zrow canaries."""
    x, tx, w = c.arrays()
    zw, zb = c.c_gens(nl)
    ty = np.full(c.n, 77, qdt(c.bits))
    e = nl.ffi.new("int *", -999)
    sc = nl.ffi.new("tt_jvp_scales *", c.scales if scales is None else scales)
    if c.layer == "gemm":
        st = fn(nl, "gemm_jvp", c.bits, c.wbits)(nl.ptr(x), nl.ptr(tx), nl.ptr(w), nl.ptr(ty),
                                                  *c.geo, zw, zb, c.dist, sc, e)
        return st, ty, e[0], zw, zb
    row = nl.lib.tt_conv2d_jvp_scratch(nl.conv(c.geo)) if zrow_size is None else zrow_size
    zrow = np.full(row + GUARD, CANARY, np.int16) if c.has[1] else None
    st = fn(nl, "conv2d_jvp", c.bits, c.wbits)(nl.conv(c.geo), nl.ptr(x), nl.ptr(tx), nl.ptr(w),
                                       nl.ptr(ty), zw, zb, c.dist, sc, e, nl.ptr(zrow))
    if zrow is not None:
        assert (zrow[row:] == CANARY).all(), "tt_conv2d_jvp wrote past its scratch row"
    return st, ty, e[0], zw, zb


def run_twin(c):
    x, tx, w = c.arrays()
    zw, zb = c.py_gens()
    if c.layer == "gemm":
        ty, e = qjvp.gemm_jvp(x, tx, w, *c.geo, zw, zb, c.dist, c.scales, c.bits, c.wbits)
    else:
        ty, e = qjvp.conv2d_jvp(c.geo, x, tx, w, zw, zb, c.dist, c.scales, c.bits, c.wbits)
    return ty, e, zw, zb


def raw_terms(c):
    """Independent A, B (int64, before narrowing) and C of a case, or None when absent."""
    def acc(x, w):
        if c.layer == "gemm":
            k, m = c.geo
            return np.asarray(w, np.int64).reshape(m, k) @ np.asarray(x, np.int64).reshape(k)
        return conv_ref(c.geo, x, w)
    A = acc(c.tx, c.w) if c.has[0] else None
    B = acc(c.x, z_at(c.seed, c.sid, c.skip_w, c.nw, c.dist)) if c.has[1] else None
    C = z_at(c.seed, c.sid, c.skip_b, c.n_ch, c.dist) if c.has[2] else None
    return A, B, C


def reference(c):
    """(ty, e_out, rs_A, rs_B): the composition in exact Python integers. Narrowed: A when
    data or weights are int16 (q16, w16a8), B when the data are (q16)."""
    A, B, C = raw_terms(c)
    s = {**{f"{t}_{f}": 0 for t in "abc" for f in ("mult", "exp")}, **c.scales}
    terms, rs = [], [0, 0]
    wide = (16 in (c.bits, c.wbits), c.bits == 16)
    for t, (v, key) in enumerate(((A, "a"), (B, "b"))):
        if v is not None:
            vn, rs[t] = narrow_exact([int(q) for q in v], wide[t])
            assert all(-(1 << 31) <= q <= I32_MAX for q in vn)
            terms.append((vn, s[key + "_mult"], s[key + "_exp"] + rs[t], False))
    if C is not None:
        terms.append(([int(q) for q in C], s["c_mult"], s["c_exp"], True))
    want, ew, *_ = join_exact(c.n, c.inner, terms, c.bits)
    return want, ew, rs[0], rs[1]


def check_case(nl, c):
    """C == twin == independent reference: ty, e_out, both generators' end states."""
    st_, ty, e, zw, zb = run_c(nl, c)
    nl.ok(st_)
    tw, etw, pw, pb = run_twin(c)
    assert tw.dtype == qdt(c.bits)
    np.testing.assert_array_equal(ty, tw)
    assert e == etw
    want, ew, ra, rb = reference(c)
    assert list(ty) == want and e == ew
    for cg, pg, end in zip((zw, zb), (pw, pb), c.ends()):
        if pg is not None:
            assert_same_generator(nl, cg, pg, c.seed, c.sid, end)
    return ty, e, ra, rb


@st.composite
def scales_st(draw):
    """multipliers from the edges or anywhere in [0, 2^31); exponents with gaps from 0 to
    beyond 63 binades (a term below the rounding entirely)."""
    e0 = draw(st.integers(-80, 40))
    out = {}
    for t in "abc":
        out[t + "_mult"] = draw(st.one_of(st.sampled_from(MULT_EDGE),
                                          st.integers(0, (1 << 31) - 1)))
        gap = draw(st.sampled_from(GAPS))
        out[t + "_exp"] = e0 - gap if draw(st.booleans()) else e0 + draw(st.integers(0, 3))
    return out


def balanced_scales(c, rng):
    """Scales that make every present term matter: each term's largest value maps near 2^0,
    with a random mantissa and a small random offset."""
    A, B, C = raw_terms(c)
    out = {}
    for key, v in (("a", A), ("b", B), ("c", C)):
        top = int(np.abs(v).max()) if v is not None and v.size else 1
        out[key + "_mult"] = int(rng.integers(1 << 30, 1 << 31))
        out[key + "_exp"] = 31 - max(top, 1).bit_length() + int(rng.integers(-2, 3))
    return out


@pytest.mark.parametrize("fmt", FORMATS, ids=FMT_IDS)
@settings(**dict(EX, max_examples=10 if SANITIZE else 100))
@given(dist=DIST, seed=SEED, k=st.integers(0, 45), m=st.integers(0, 9),
       mask=st.integers(1, 7), extremes=st.booleans(), skip_w=st.integers(0, 200),
       gap_b=st.integers(0, 50), scales=scales_st(), balanced=st.booleans())
def test_gemm_jvp(nl, fmt, dist, seed, k, m, mask, extremes, skip_w, gap_b, scales, balanced):
    rng = np.random.default_rng(seed)
    has = (bool(mask & 1), bool(mask & 2), bool(mask & 4))
    c = Case("gemm", (k, m), fmt[0], dist, has, seed, rng, extremes, scales, skip_w, gap_b,
             wbits=fmt[1])
    if balanced:
        c.scales = balanced_scales(c, rng)
    check_case(nl, c)


@pytest.mark.parametrize("fmt", FORMATS, ids=FMT_IDS)
@settings(**dict(EX, max_examples=10 if SANITIZE else 100))
@given(dist=DIST, seed=SEED, p=conv_params(), mask=st.integers(1, 7),
       extremes=st.booleans(), skip_w=st.integers(0, 200), gap_b=st.integers(0, 50),
       scales=scales_st(), balanced=st.booleans())
def test_conv2d_jvp(nl, fmt, dist, seed, p, mask, extremes, skip_w, gap_b, scales, balanced):
    """groups, depthwise, strides, asymmetric pads (conv_params); the direction row of each
    channel continues the previous channel's Rademacher word."""
    rng = np.random.default_rng(seed)
    has = (bool(mask & 1), bool(mask & 2), bool(mask & 4))
    c = Case("conv", p, fmt[0], dist, has, seed, rng, extremes, scales, skip_w, gap_b,
             wbits=fmt[1])
    if balanced:
        c.scales = balanced_scales(c, rng)
    check_case(nl, c)


CONV_27 = dict(in_c=6, in_h=7, in_w=6, out_c=8, out_h=4, out_w=3, k_h=3, k_w=3, stride_h=2,
               stride_w=2, pad_top=1, pad_left=1, groups=2)      # a 27-value row: mid-word
DEPTHWISE = dict(in_c=5, in_h=6, in_w=5, out_c=5, out_h=6, out_w=5, k_h=3, k_w=3, stride_h=1,
                 stride_w=1, pad_top=1, pad_left=1, groups=5)


@pytest.mark.parametrize("mask", range(1, 8), ids=lambda v: "abc" if v == 7 else
                         "".join(t for i, t in enumerate("abc") if v >> i & 1))
@pytest.mark.parametrize("dist", [qk.ZO_RADEMACHER, qk.ZO_GAUSS], ids=["rad", "gauss"])
@pytest.mark.parametrize("fmt", FORMATS, ids=FMT_IDS)
@pytest.mark.parametrize("layer", ["gemm", "conv27", "depthwise"])
def test_every_combination_of_terms(nl, layer, fmt, dist, mask):
    """All 7 combinations of present terms, both distributions and all three formats, with
    scales that make every term count; three seeds each, the generators starting mid-stream."""
    bits, wbits = fmt
    geo = {"gemm": (37, 11), "conv27": CONV_27, "depthwise": DEPTHWISE}[layer]
    has = (bool(mask & 1), bool(mask & 2), bool(mask & 4))
    for seed in (mask * 1000 + bits + 100 * (wbits != bits), 77 + dist, 2**32 - 1 - mask):
        rng = np.random.default_rng(seed)
        c = Case("gemm" if layer == "gemm" else "conv", geo, bits, dist, has, seed, rng,
                 seed % 2 == 0, {}, skip_w=int(rng.integers(0, 100)),
                 gap_b=int(rng.integers(0, 9)), wbits=wbits)
        c.scales = balanced_scales(c, rng)
        ty, _, _, _ = check_case(nl, c)
        assert np.abs(ty.astype(np.int64)).max() >= 1 << (bits - 2)   # the format is used


@pytest.mark.parametrize("dist", [qk.ZO_RADEMACHER, qk.ZO_GAUSS])
def test_q16_narrowing_of_both_terms(nl, dist):
    """int16 accumulators beyond int32: A at the storage extremes (k = 4096 products of 2^30:
    A = 2^42, rs_A = 12) and B with x aligned to the signs of the first row's directions;
    a_exp / b_exp move by rs_A / rs_B (the reference narrows in Python integers)."""
    k, m, seed = 4096, 3, 5
    rng = np.random.default_rng(seed)
    tx = np.full(k, -32768, np.int16)
    w = np.full(m * k, -32768, np.int16)
    w[k:2 * k] = 32767
    c = Case("gemm", (k, m), 16, dist, (True, True, True), seed, rng, False, {}, skip_w=3)
    z = z_at(seed, c.sid, c.skip_w, m * k, dist).reshape(m, k)
    x = np.where(z[0] >= 0, 32767, -32768).astype(np.int16)
    c.x, c.tx, c.w = x, tx, w
    c.scales = balanced_scales(c, rng)
    _, _, ra, rb = check_case(nl, c)
    assert ra == (k << 30).bit_length() - 31 == 12
    assert (rb > 0) == (dist == qk.ZO_GAUSS)      # Rademacher: |B| <= 4096 * 2^15 < 2^31
    # conv: 64 input channels of 3x3 at the extremes, A = 576 * 2^30 inside
    p = dict(in_c=64, in_h=4, in_w=4, out_c=2, out_h=4, out_w=4, k_h=3, k_w=3, stride_h=1,
             stride_w=1, pad_top=1, pad_left=1, groups=1)
    data = (np.full(64 * 16, 32767, np.int16), np.full(64 * 16, -32768, np.int16),
            np.full(2 * 576, -32768, np.int16))
    c = Case("conv", p, 16, dist, (True, True, False), seed, rng, False, {}, data=data)
    c.scales = balanced_scales(c, rng)
    _, _, ra, _ = check_case(nl, c)
    assert ra == (576 << 30).bit_length() - 31


@pytest.mark.parametrize("dist", [qk.ZO_RADEMACHER, qk.ZO_GAUSS])
def test_w16a8_narrows_a_only(nl, dist):
    """w16a8: int8 tx at -128 against int16 weights at -32768 / +32767 (products 2^22): A
    beyond int32 is narrowed (gemm k = 4096: A = 2^34, rs_A = 4; conv 64 x 3x3: 576 * 2^22,
    rs_A = 1), while B, even with x aligned to the signs of the directions (|B| <= 4096 * 128
    * 510 < 2^31), is q8's int32 and never narrowed (rs_B = 0)."""
    k, m, seed = 4096, 3, 6
    rng = np.random.default_rng(seed)
    tx = np.full(k, -128, np.int8)
    w = np.full(m * k, -32768, np.int16)
    w[k:2 * k] = 32767
    c = Case("gemm", (k, m), 8, dist, (True, True, True), seed, rng, False, {}, skip_w=3,
             wbits=16)
    z = z_at(seed, c.sid, c.skip_w, m * k, dist).reshape(m, k)
    c.x, c.tx, c.w = np.where(z[0] >= 0, 127, -128).astype(np.int8), tx, w
    c.scales = balanced_scales(c, rng)
    _, _, ra, rb = check_case(nl, c)
    assert (ra, rb) == (4, 0) and (k << 22).bit_length() - 31 == 4
    p = dict(in_c=64, in_h=4, in_w=4, out_c=2, out_h=4, out_w=4, k_h=3, k_w=3, stride_h=1,
             stride_w=1, pad_top=1, pad_left=1, groups=1)
    data = (np.full(64 * 16, 127, np.int8), np.full(64 * 16, -128, np.int8),
            np.full(2 * 576, -32768, np.int16))
    c = Case("conv", p, 8, dist, (True, True, False), seed, rng, False, {}, data=data,
             wbits=16)
    c.scales = balanced_scales(c, rng)
    _, _, ra, rb = check_case(nl, c)
    assert (ra, rb) == ((576 << 22).bit_length() - 31, 0) == (1, 0)


@settings(**dict(EX, max_examples=10 if SANITIZE else 40))
@given(dist=DIST, seed=SEED, layer=st.sampled_from(["gemm", "conv"]), mask=st.integers(1, 7),
       wide=st.integers(600, 3000), scales=scales_st(), balanced=st.booleans())
def test_w16a8_narrowing_random(nl, dist, seed, layer, mask, wide, scales, balanced):
    """w16a8 with enough taps (600..3000 in an output's full window) that int16 weights near
    their extremes push A past int32 (surely when the products share a sign: >= 600 * 2^21):
    the narrowing's rounding on random values, against the composition and the exact
    reference."""
    rng = np.random.default_rng(seed)
    has = (bool(mask & 1), bool(mask & 2), bool(mask & 4))
    if layer == "gemm":
        geo = (wide, int(rng.integers(1, 5)))
    else:
        cin, kk = wide // 9, 3
        geo = dict(in_c=2 * cin, in_h=4, in_w=3, out_c=4, out_h=2, out_w=2, k_h=kk, k_w=kk,
                   stride_h=2, stride_w=1, pad_top=1, pad_left=1, groups=2)
    c = Case(layer, geo, 8, dist, has, seed, rng, True, scales, skip_w=int(rng.integers(0, 99)),
             wbits=16)
    same_sign = rng.random() < 0.5               # the largest |A|
    if same_sign:
        c.tx = np.where(rng.random(c.tx.size) < 0.8, -128, -127).astype(np.int8)
        c.w = np.where(rng.random(c.w.size) < 0.9, -32768, -32767).astype(np.int16)
    if balanced:
        c.scales = balanced_scales(c, rng)
    _, _, ra, rb = check_case(nl, c)
    assert rb == 0 and (ra > 0 or not (same_sign and has[0]))


@pytest.mark.parametrize("fmt", FORMATS, ids=FMT_IDS)
def test_gemm_jvp_at_the_accumulator_bound(nl, fmt):
    """131071 products of lo(bits) * lo(wbits), the largest products (the documented bound):
    |A| = 131071 * 2^14 < 2^31 exact in int32 (q8); 131071 * 2^30 < 2^47 (q16) and
    131071 * 2^22 < 2^39 (w16a8: products <= 2^22) exact in the int64 accumulator, then
    narrowed. Every partial sum has the same sign and grows monotonically to |A|, so no
    intermediate exceeds the final value: the int64 sum cannot overflow within the bound."""
    bits, wbits = fmt
    k = 131071
    lo, wlo = -(1 << (bits - 1)), -(1 << (wbits - 1))
    rng = np.random.default_rng(1)
    data = (None, np.full(k, lo, qdt(bits)), np.full(k, wlo, qdt(wbits)))
    c = Case("gemm", (k, 1), bits, 0, (True, False, False), 1, rng, False,
             {"a_mult": 1 << 30, "a_exp": -20}, data=data, wbits=wbits)
    ty, e, ra, _ = check_case(nl, c)
    A = k * lo * wlo
    assert A < {(8, 8): 1 << 31, (16, 16): 1 << 47, (8, 16): 1 << 39}[fmt] < 1 << 63
    exact = Fraction(A) * Fraction(1, 2) * Fraction(2) ** -20
    assert abs(int(ty[0]) * Fraction(2) ** e - exact) <= Fraction(2) ** e
    assert ra == (0 if fmt == (8, 8) else A.bit_length() - 31)
    assert ra == {(8, 8): 0, (16, 16): 16, (8, 16): 8}[fmt]
    if fmt == (8, 16):
        # the same sum with mixed signs (+-32767 / -32768 weights, tx at both extremes)
        w = np.where(np.arange(k) % 3 == 0, 32767, -32768).astype(np.int16)
        tx = np.where(np.arange(k) % 5 == 0, 127, -128).astype(np.int8)
        c = Case("gemm", (k, 1), 8, 0, (True, False, False), 1, rng, False,
                 {"a_mult": (1 << 31) - 1, "a_exp": 0}, data=(None, tx, w), wbits=16)
        _, _, ra, _ = check_case(nl, c)
        assert ra == abs(int(tx.astype(np.int64) @ w.astype(np.int64))).bit_length() - 31


@settings(**dict(EX, max_examples=10 if SANITIZE else 60))
@given(dist=DIST, seed=SEED, geo=st.one_of(st.tuples(st.integers(0, 45), st.integers(0, 9)),
                                           conv_params()),
       mask=st.integers(1, 7), skip_w=st.integers(0, 200), scales=scales_st())
def test_w16a8_with_int8_range_weights_is_q8(nl, dist, seed, geo, mask, skip_w, scales):
    """Weights inside int8 keep |A| <= 131071 * 2^14 < 2^31, so rs_A = 0: tt_*_jvp_w16a8 then
    equals tt_*_jvp_q8 on the same values bit for bit (ty, e_out, generator end states)."""
    rng = np.random.default_rng(seed)
    has = (bool(mask & 1), bool(mask & 2), bool(mask & 4))
    layer = "gemm" if isinstance(geo, tuple) else "conv"
    c = Case(layer, geo, 8, dist, has, seed, rng, True, scales, skip_w=skip_w, wbits=16)
    c.w = c.w.clip(-128, 127)
    out = []
    for wb in (16, 8):
        c.wbits, c.w = wb, c.w.astype(qdt(wb))
        st_, ty, e, zw, zb = run_c(nl, c)
        nl.ok(st_)
        out.append((list(ty), e, [(g.state, g.inc) for g, on in zip((zw, zb), has[1:]) if on]))
    assert out[0] == out[1]


def test_gemm_jvp_empty_shapes(nl):
    """m = 0: nothing written, e_out = E + 2 (the join of n = 0), nothing drawn; k = 0: the
    A and B terms are 0, only the bias direction is left."""
    rng = np.random.default_rng(0)
    sc = {"a_mult": 5, "a_exp": 40, "b_mult": 1, "b_exp": 3, "c_mult": 1 << 30, "c_exp": 0}
    for bits, wbits in FORMATS:
        for k, m in ((4, 0), (0, 0), (0, 5)):
            c = Case("gemm", (k, m), bits, qk.ZO_RADEMACHER, (True, True, True), 3, rng, False,
                     sc, wbits=wbits)
            ty, e, _, _ = check_case(nl, c)
            assert ty.size == m
            if m == 0:
                assert e == 40 - 31 + 2
    # NULL arrays are fine where they would be empty
    e = nl.ffi.new("int *")
    s = nl.ffi.new("tt_jvp_scales *", sc)
    nl.ok(nl.lib.tt_gemm_jvp_q8(nl.NULL, nl.NULL, nl.NULL, nl.NULL, 4, 0, nl.prng(1, 2),
                                nl.prng(1, 3), 0, s, e))
    ty = np.zeros(3, np.int8)
    nl.ok(nl.lib.tt_gemm_jvp_q8(nl.NULL, nl.NULL, nl.NULL, nl.ptr(ty), 0, 3, nl.prng(1, 2),
                                nl.NULL, 0, s, e))
    nl.ok(nl.lib.tt_gemm_jvp_w16a8(nl.NULL, nl.NULL, nl.NULL, nl.NULL, 4, 0, nl.prng(1, 2),
                                   nl.prng(1, 3), 0, s, e))
    nl.ok(nl.lib.tt_gemm_jvp_w16a8(nl.NULL, nl.NULL, nl.NULL, nl.ptr(ty), 0, 3, nl.prng(1, 2),
                                   nl.NULL, 0, s, e))


def test_conv2d_jvp_scratch(nl):
    for p in (CONV_27, DEPTHWISE):
        want = p["in_c"] // p["groups"] * p["k_h"] * p["k_w"]
        assert nl.lib.tt_conv2d_jvp_scratch(nl.conv(p)) == want == qjvp.conv2d_jvp_scratch(p)
    assert nl.lib.tt_conv2d_jvp_scratch(nl.NULL) == 0
    bad = dict(CONV_27, groups=4)
    assert nl.lib.tt_conv2d_jvp_scratch(nl.conv(bad)) == 0 == qjvp.conv2d_jvp_scratch(bad)


@pytest.mark.parametrize("dist", [qk.ZO_RADEMACHER, qk.ZO_GAUSS])
def test_conv2d_jvp_uses_exactly_its_scratch_row(nl, dist):
    """zrow of exactly tt_conv2d_jvp_scratch elements (canaries behind it stay), and zrow /
    x may be NULL without zw, w without tx."""
    rng = np.random.default_rng(4)
    c = Case("conv", CONV_27, 8, dist, (True, True, True), 4, rng, True, {})
    c.scales = balanced_scales(c, rng)
    check_case(nl, c)                                    # run_c checks the canaries
    for has in ((True, False, True), (False, False, True), (False, True, False)):
        c2 = Case("conv", CONV_27, 16, dist, has, 4, rng, True, c.scales)
        check_case(nl, c2)
    for has in ((True, True, True), (True, False, True), (False, True, False)):
        c3 = Case("conv", CONV_27, 8, dist, has, 4, rng, True, c.scales, wbits=16)
        check_case(nl, c3)


def _craft_old(ones: bool, parity: int) -> int:
    """A PCG state whose output is 0xFFFFFFFF (ones) or 0: rotation 0 (bits 59..63 clear),
    bits 27..58 of old ^ (old >> 18) all `ones`, the free low bits setting the parity."""
    old = 0
    for b in range(58, 26, -1):
        hi = (old >> (b + 18)) & 1 if b + 18 < 64 else 0
        old |= ((1 if ones else 0) ^ hi) << b
    return old | parity


def _crafted(state, inc):
    g = Pcg32()
    g.state, g.inc = state, inc
    return g


@pytest.mark.parametrize("fmt", FORMATS, ids=FMT_IDS)
@pytest.mark.parametrize("pattern", [(True, False), (False, True), (True, True)])
def test_gauss_extremes_of_z(nl, fmt, pattern):
    """z = +510 / -510 (draws 0xFFFFFFFF / 0) against x at the storage extremes, through a
    crafted generator (state and inc chosen so that the first two draws are those words):
    the B term of the fused kernel (and its twin) with one output per row of x."""
    old0 = _craft_old(pattern[0], 0)
    old1 = _craft_old(pattern[1], 1)
    inc = (old1 - old0 * MULT) & MASK64
    assert inc & 1
    outs = _output(np.array([old0, old1], np.uint64))
    assert list(outs) == [0xFFFFFFFF if o else 0 for o in pattern]
    zv = [510 if o else -510 for o in pattern]
    bits, wbits = fmt
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    x = np.array([lo, hi, hi, lo, lo, lo, hi, hi], qdt(bits))          # 4 rows, k = 2
    want = x.astype(np.int64).reshape(4, 2) @ np.array(zv, np.int64)
    np.testing.assert_array_equal(qjvp.gemm_zx(x, 4, 2, 1, _crafted(old0, inc), qk.ZO_GAUSS,
                                               bits), want)
    sc = nl.ffi.new("tt_jvp_scales *", {"b_mult": 1 << 30, "b_exp": 0})
    e = nl.ffi.new("int *")
    for r in range(4):
        xr = np.ascontiguousarray(x[2 * r:2 * r + 2])
        ty = np.zeros(1, qdt(bits))
        cst = nl.ffi.new("tt_prng *", {"state": old0, "inc": inc})
        nl.ok(fn(nl, "gemm_jvp", bits, wbits)(nl.ptr(xr), nl.NULL, nl.NULL, nl.ptr(ty), 2, 1,
                                               cst, nl.NULL, qk.ZO_GAUSS, sc, e))
        py = _crafted(old0, inc)
        tw, etw = qjvp.gemm_jvp(xr, None, None, 2, 1, py, None, qk.ZO_GAUSS,
                                {"b_mult": 1 << 30, "b_exp": 0}, bits, wbits)
        assert ty[0] == tw[0] and e[0] == etw
        assert (cst.state, cst.inc) == (py.state, py.inc)
        # B = want[r] (|B| <= 2^bits * 510 < 2^31: no narrowing), times 1/2: exact up to 1 LSB
        assert abs(int(ty[0]) * Fraction(2) ** e[0] - Fraction(int(want[r]), 2)) <= \
            Fraction(2) ** e[0]
    assert list(qjvp.zo_values(_crafted(old0, inc), 2, qk.ZO_GAUSS)) == zv


def _error_calls(nl, bits, wbits, layer):
    """(description, call) pairs that must fail, and the state they must not touch."""
    E, S = nl.lib.TT_ERR_ARG, nl.lib.TT_ERR_SHAPE
    k, m = 4, 3
    p = dict(in_c=2, in_h=3, in_w=2, out_c=3, out_h=3, out_w=2, k_h=1, k_w=1, stride_h=1,
             stride_w=1, pad_top=0, pad_left=0, groups=1)
    n = m if layer == "gemm" else 18
    nx = k if layer == "gemm" else 12
    x, tx = np.ones(nx, qdt(bits)), np.ones(nx, qdt(bits))
    w = np.ones(m * k if layer == "gemm" else 6, qdt(wbits))
    ty = np.full(n, 9, qdt(bits))
    zrow = np.zeros(2, np.int16)
    e = nl.ffi.new("int *", 1234)
    zw, zb = nl.prng(1, 2), nl.prng(1, 3)
    good = {"a_mult": 1, "a_exp": 0, "b_mult": 1, "b_exp": 0, "c_mult": 1, "c_exp": 0}
    big = 1 << 24

    def sc(**kw):
        return nl.ffi.new("tt_jvp_scales *", dict(good, **kw))
    keep = []

    def call(X=x, TX=tx, W=w, TY=ty, ZW=zw, ZB=zb, dist=0, s=None, eo=e, K=k, M=m, P=p,
             ZR=zrow):
        s = sc() if s is None else s
        keep.append(s)
        P = nl.NULL if P is None else nl.conv(P)
        ptrs = [nl.ptr(a) if isinstance(a, np.ndarray) else a for a in (X, TX, W, TY)]
        if layer == "gemm":
            return fn(nl, "gemm_jvp", bits, wbits)(*ptrs, K, M, ZW, ZB, dist, s, eo)
        zr = nl.ptr(ZR) if isinstance(ZR, np.ndarray) else ZR
        return fn(nl, "conv2d_jvp", bits, wbits)(P, *ptrs, ZW, ZB, dist, s, eo, zr)
    N = nl.NULL
    bad = [("no term", E, dict(TX=N, ZW=N, ZB=N)),
           ("s NULL", E, dict(s=N)), ("e_out NULL", E, dict(eo=N)),
           ("zw == zb", E, dict(ZB=zw)),
           ("dist", E, dict(dist=2)), ("dist, bias only", E, dict(TX=N, ZW=N, dist=-1)),
           ("ty NULL", E, dict(TY=N)),
           ("w NULL with tx", E, dict(W=N)), ("x NULL with zw", E, dict(X=N)),
           ("a_mult < 0", E, dict(s=sc(a_mult=-1))), ("b_mult < 0", E, dict(s=sc(b_mult=-5))),
           ("c_mult < 0", E, dict(s=sc(c_mult=-(1 << 31)))),
           ("a_exp", E, dict(s=sc(a_exp=big + 1))), ("b_exp", E, dict(s=sc(b_exp=-big - 1))),
           ("c_exp", E, dict(s=sc(c_exp=big + 1)))]
    if layer == "gemm":
        bad += [("k < 0", E, dict(K=-1)), ("m < 0", E, dict(M=-1))]
    else:
        bad += [("p NULL", E, dict(P=None)), ("zrow NULL with zw", E, dict(ZR=N)),
                ("groups", S, dict(P=dict(p, groups=4))),
                ("stride 0, bias only", S, dict(P=dict(p, stride_h=0), TX=N, ZW=N))]
    return call, bad, (ty, e, zw, zb), good, sc, keep


@pytest.mark.parametrize("layer", ["gemm", "conv"])
@pytest.mark.parametrize("fmt", FORMATS, ids=FMT_IDS)
def test_fused_argument_errors_write_and_draw_nothing(nl, fmt, layer):
    call, bad, (ty, e, zw, zb), good, sc, keep = _error_calls(nl, *fmt, layer)
    s0 = (zw.state, zb.state)
    for what, status, kw in bad:
        assert call(**kw) == status, what
        assert (zw.state, zb.state) == s0, what
        np.testing.assert_array_equal(ty, 9)
        assert e[0] == 1234, what
    # an absent term's multiplier and exponent are ignored; dist is ignored without z
    nl.ok(call(ZW=nl.NULL, ZB=nl.NULL, dist=7, s=sc(b_mult=-1, b_exp=1 << 30, c_mult=-3)))
    nl.ok(call(TX=nl.NULL, W=nl.NULL, ZB=nl.NULL, s=sc(a_mult=-1, c_exp=-(1 << 30))))


@pytest.mark.parametrize("layer", ["gemm", "conv"])
def test_q16_exponent_overflow_after_narrowing(nl, layer):
    """a_exp = TT_QJVP_EXP_MAX is legal, but with rs_A > 0 the join's exponent leaves the
    range: TT_ERR_ARG found after pass 1; the generators are restored, nothing written. The
    twin raises and leaves its generators alone too. Gemm also for B (x aligned to the signs
    of the first row's Gaussian directions: |B| ~ 2^34)."""
    rng = np.random.default_rng(2)
    big = qjvp.EXP_MAX
    if layer == "gemm":
        geo, nx, nw = (1024, 2), 1024, 2048
    else:
        geo = dict(in_c=16, in_h=3, in_w=3, out_c=2, out_h=3, out_w=3, k_h=3, k_w=3,
                   stride_h=1, stride_w=1, pad_top=1, pad_left=1, groups=1)
        nx, nw = 144, 288
    data = (np.full(nx, 32767, np.int16), np.full(nx, -32768, np.int16),
            np.full(nw, -32768, np.int16))
    cases = [((True, True, True), {"a_mult": 1, "a_exp": big, "b_mult": 1, "c_mult": 1})]
    if layer == "gemm":
        cases.append(((False, True, True), {"b_mult": 1, "b_exp": big, "c_mult": 1}))
    for has, sc in cases:
        c = Case("gemm" if layer == "gemm" else "conv", geo, 16, qk.ZO_GAUSS, has, 2, rng,
                 False, sc, skip_w=5, data=data)
        if layer == "gemm":
            z = z_at(c.seed, c.sid, c.skip_w, c.nw, c.dist)[:nx]
            c.x = np.where(z >= 0, 32767, -32768).astype(np.int16)
        st_, ty, e, zw, zb = run_c(nl, c)
        assert st_ == nl.lib.TT_ERR_ARG
        np.testing.assert_array_equal(ty, 77)
        assert e == -999
        pw, pb = c.py_gens()
        assert (zw.state, zb.state) == (pw.state, pb.state)
        tw, tb = c.py_gens()
        x, tx, w = c.arrays()
        with pytest.raises(ValueError):
            if layer == "gemm":
                qjvp.gemm_jvp(x, tx, w, *geo, tw, tb, c.dist, sc, 16)
            else:
                qjvp.conv2d_jvp(geo, x, tx, w, tw, tb, c.dist, sc, 16)
        assert (tw.state, tb.state) == (pw.state, pb.state)
        # 40 binades lower it fits, with the exponents the reference computes
        c.scales = dict(sc, **({"a_exp": big - 40} if has[0] else {"b_exp": big - 40}))
        _, _, ra, rb = check_case(nl, c)
        assert (ra if has[0] else rb) > 0


@pytest.mark.parametrize("layer", ["gemm", "conv"])
def test_w16a8_exponent_overflow_after_narrowing(nl, layer):
    """w16a8: a_exp = TT_QJVP_EXP_MAX with A beyond int32 (gemm 1024 products of 2^22: rs_A =
    2; conv 64 x 3x3, one output per channel: rs_A = 1) is TT_ERR_ARG after pass 1, nothing
    written or drawn, and the twin raises; b_exp = TT_QJVP_EXP_MAX stays legal (B is never
    narrowed), also with x aligned to the directions' signs (gemm)."""
    rng = np.random.default_rng(3)
    big = qjvp.EXP_MAX
    if layer == "gemm":
        geo, nx, nw = (1024, 2), 1024, 2048
    else:
        geo = dict(in_c=64, in_h=3, in_w=3, out_c=2, out_h=1, out_w=1, k_h=3, k_w=3,
                   stride_h=1, stride_w=1, pad_top=0, pad_left=0, groups=1)
        nx, nw = 64 * 9, 2 * 576
    data = (np.full(nx, 127, np.int8), np.full(nx, -128, np.int8), np.full(nw, -32768, np.int16))
    sc = {"a_mult": 1, "a_exp": big, "b_mult": 1, "c_mult": 1}
    for dist in (qk.ZO_RADEMACHER, qk.ZO_GAUSS):
        c = Case("gemm" if layer == "gemm" else "conv", geo, 8, dist, (True, True, True), 2,
                 rng, False, sc, skip_w=5, data=data, wbits=16)
        if layer == "gemm":
            z = z_at(c.seed, c.sid, c.skip_w, c.nw, c.dist)[:nx]
            c.x = np.where(z >= 0, 127, -128).astype(np.int8)
        st_, ty, e, zw, zb = run_c(nl, c)
        assert st_ == nl.lib.TT_ERR_ARG
        np.testing.assert_array_equal(ty, 77)
        assert e == -999
        pw, pb = c.py_gens()
        assert (zw.state, zb.state) == (pw.state, pb.state)
        tw, tb = c.py_gens()
        x, tx, w = c.arrays()
        with pytest.raises(ValueError):
            if layer == "gemm":
                qjvp.gemm_jvp(x, tx, w, *geo, tw, tb, dist, sc, 8, 16)
            else:
                qjvp.conv2d_jvp(geo, x, tx, w, tw, tb, dist, sc, 8, 16)
        assert (tw.state, tb.state) == (pw.state, pb.state)
        c.scales = dict(sc, a_exp=big - 40, b_exp=big)
        _, _, ra, rb = check_case(nl, c)
        assert (ra, rb) == ((2, 0) if layer == "gemm" else (1, 0))
        c.has = (False, True, True)
        c.scales = {"b_mult": (1 << 31) - 1, "b_exp": big, "c_mult": 1, "c_exp": 0}
        check_case(nl, c)


def test_twin_argument_errors():
    x = np.ones(4, np.int8)
    w = np.ones(12, np.int8)
    g = Pcg32(1, 2)
    sc = {"a_mult": 1, "b_mult": 1, "c_mult": 1}
    with pytest.raises(ValueError):
        qjvp.gemm_jvp(x, None, None, 4, 3, None, None, 0, sc)            # no term
    with pytest.raises(ValueError):
        qjvp.gemm_jvp(x, None, None, 4, 3, g, g, 0, sc)                  # zw is zb
    with pytest.raises(ValueError):
        qjvp.gemm_jvp(x, x, w, 4, 3, None, None, 0, dict(sc, a_mult=-1))
    with pytest.raises(ValueError):
        qjvp.gemm_jvp(x, x, w, 4, 3, None, None, 0, dict(sc, a_exp=qjvp.EXP_MAX + 1))
    with pytest.raises(ValueError):
        qjvp.gemm_jvp(x, x, w, 4, 3, None, None, 0, dict(sc, d_mult=1))  # unknown field
    with pytest.raises(ValueError):
        qjvp.gemm_jvp(x, None, None, 4, 3, g, None, 5, sc)               # dist
    with pytest.raises(ValueError):
        qjvp.gemm_jvp(x, x, w, -1, 3, None, None, 0, sc)
    with pytest.raises(ValueError):
        qjvp.gemm_jvp(x, x, w, 4, 3, None, None, 0, sc, bits=16, wbits=8)  # no such format
    with pytest.raises(ValueError):
        qjvp.conv2d_jvp(CONV_27, x, x, w, None, None, 0, sc, bits=8, wbits=32)
    assert (g.state, g.inc) == (Pcg32(1, 2).state, Pcg32(1, 2).inc)
    p = dict(CONV_27, groups=4)
    with pytest.raises(ValueError):
        qjvp.conv2d_jvp(p, None, None, None, None, Pcg32(1, 3), 0, sc)
    # dist is not checked without a generator; a JvpScales works like its dict
    ty, e = qjvp.gemm_jvp(x, x, w, 4, 3, None, None, 9, qjvp.JvpScales(a_mult=1 << 30))
    ty2, e2 = qjvp.gemm_jvp(x, x, w, 4, 3, None, None, 0, {"a_mult": 1 << 30})
    np.testing.assert_array_equal(ty, ty2)
    assert e == e2


# ---- max pool, dot --------------------------------------------------------------------------

@settings(**EX)
@given(bits=BITS, seed=SEED, p=pool_params(), span=st.sampled_from([1, 2, 3, 256]))
def test_maxpool2d_jvp_picks_the_gradient_cell(nl, bits, seed, p, span):
    """ty = tx at the argmax of x: the first maximum (many ties with a small value span),
    the cell tt_maxpool2d_bwd_x sends the gradient to."""
    rng = np.random.default_rng(seed)
    size = p["c"] * p["in_h"] * p["in_w"]
    lo = -(1 << (bits - 1))
    x = (lo + rng.integers(0, span, size)).astype(qdt(bits)) if span < 256 else \
        qdata(rng, bits, size, True)
    tx = qdata(rng, bits, size, True)
    nout = p["c"] * p["out_h"] * p["out_w"]
    ty = np.zeros(nout, qdt(bits))
    nl.ok(fn(nl, "maxpool2d_jvp", bits)(nl.pool(p), nl.ptr(x), nl.ptr(tx), nl.ptr(ty)))
    np.testing.assert_array_equal(qjvp.maxpool2d_jvp(p, x, tx, bits), ty)
    _, arg = pool_ref(p, x.astype(np.float64), "max")
    hw = p["in_h"] * p["in_w"]
    want = tx.reshape(p["c"], hw)[np.arange(p["c"])[:, None], arg.reshape(p["c"], -1)]
    np.testing.assert_array_equal(ty, want.reshape(-1))
    # per output, a one-hot gy through the backward kernel lands on the same cell
    for o in rng.choice(nout, min(nout, 6), replace=False):
        gy = np.zeros(nout, qdt(bits))
        gy[o] = 1
        gx = np.zeros(size, qdt(bits))
        nl.ok(fn(nl, "maxpool2d_bwd_x", bits)(nl.pool(p), nl.ptr(gy), nl.ptr(x), nl.ptr(gx), 0,
                                              nl.NULL))
        (cell,) = np.flatnonzero(gx)
        assert ty[o] == tx[cell]


def test_maxpool2d_jvp_errors(nl):
    p = dict(c=1, in_h=2, in_w=2, out_h=1, out_w=1, k_h=2, k_w=2, stride_h=1, stride_w=1,
             pad_top=0, pad_left=0, count_include_pad=0)
    x = np.zeros(4, np.int8)
    ty = np.full(1, 3, np.int8)
    assert nl.lib.tt_maxpool2d_jvp_q8(nl.pool(p), nl.ptr(x), nl.NULL, nl.ptr(ty)) == \
        nl.lib.TT_ERR_ARG
    assert nl.lib.tt_maxpool2d_jvp_q8(nl.pool(dict(p, pad_top=2)), nl.ptr(x), nl.ptr(x),
                                      nl.ptr(ty)) == nl.lib.TT_ERR_SHAPE
    assert ty[0] == 3


@settings(**EX)
@given(bits=BITS, seed=SEED, n=st.integers(0, 300), extremes=st.booleans())
def test_dot_q30(nl, bits, seed, n, extremes):
    rng = np.random.default_rng(seed)
    g = ints(rng, -(1 << 30), 1 << 30, n, extremes).astype(np.int32)
    t = qdata(rng, bits, n, extremes)
    s = nl.ffi.new("int64_t *", 5)
    nl.ok(fn(nl, "dot_q30", bits)(nl.ptr(g), nl.ptr(t), n, s))
    exact = sum(int(a) * int(b) for a, b in zip(g, t))
    assert s[0] == exact == qjvp.dot_q30(g, t, bits)


@pytest.mark.parametrize("bits", [8, 16])
def test_dot_q30_extremes_and_limits(nl, bits):
    """The largest legal n at the extremes stays exact; one more is refused."""
    nmax = qjvp.DOT_NMAX[bits]
    lo = -(1 << (bits - 1))
    n = nmax - 1 if bits == 16 else 1 << 20               # q8's limit needs 2^26 * 5 bytes
    g = np.full(n, -(1 << 30), np.int32)
    t = np.full(n, lo, qdt(bits))
    s = nl.ffi.new("int64_t *")
    nl.ok(fn(nl, "dot_q30", bits)(nl.ptr(g), nl.ptr(t), n, s))
    assert s[0] == n * (1 << 30) * -lo == qjvp.dot_q30(g, t, bits)
    assert n * (1 << 30) * -lo < 1 << 63
    assert (nmax - 1) * (1 << 30) * (1 << (bits - 1)) < 1 << 63
    assert fn(nl, "dot_q30", bits)(nl.ptr(g), nl.ptr(t), nmax, s) == nl.lib.TT_ERR_ARG
    assert fn(nl, "dot_q30", bits)(nl.ptr(g), nl.ptr(t), -1, s) == nl.lib.TT_ERR_ARG
    assert fn(nl, "dot_q30", bits)(nl.ptr(g), nl.ptr(t), 1, nl.NULL) == nl.lib.TT_ERR_ARG
