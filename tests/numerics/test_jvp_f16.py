"""Forward-mode (JVP) kernels on half storage (tt_jvp_f16.c): C == numpy twin
(fp16_kernels.*_jvp, TangentGen) bit for bit, generator states included; the tangent values are
the fp32 forward mode's (forward_mode.tangent) and the zo update's z; every tangent is within
fp16 tolerance of a float64 JVP of the same half inputs."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from conftest import SANITIZE
from num_helpers import conv_params, pool_params, pool_ref, shapes, torch_conv
from tinytrain.numerics import fp16, fp16_kernels as hk
from tinytrain.numerics.chains import bcast_offsets
from tinytrain.numerics.prng import Pcg32
from tinytrain.passes.forward_mode import tangent

SEED = st.integers(0, 2**32 - 1)
EX = dict(deadline=None, max_examples=10 if SANITIZE else 50)
DIST = st.sampled_from([hk.ZO_RADEMACHER, hk.ZO_GAUSS])
H = fp16.f16_to_f32


def rand_h(rng, shape, scale=1.0):
    return fp16.f32_to_f16(rng.normal(0, scale, shape).astype(np.float32)).reshape(-1)


def assert_bits(got, ref):
    np.testing.assert_array_equal(np.asarray(got, np.uint16), np.asarray(ref, np.uint16))


def assert_close16(got_bits, ref, abs_terms, k):
    """fp32 chain of k terms (each op <= 2^-24 relative) + one rounding to half."""
    got = H(got_bits).astype(np.float64).reshape(np.shape(ref))
    tol = 2.0**-11 * np.abs(ref) + (k + 2) * 2.0**-23 * abs_terms + 2.0**-24
    assert np.all(np.abs(got - ref) <= tol), np.max(np.abs(got - ref) - tol)


def c_gen(nl, seed, stream, skip, dist):
    g = nl.ffi.new("tt_tangent_f16 *")
    nl.ok(nl.lib.tt_tangent_init_f16(g, seed, stream, skip, dist))
    return g


def same_next(nl, g_c, g_py, n=40):
    """Both generators continue with the same values (same state, same leftover bits)."""
    got = np.zeros(n, np.uint16)
    nl.ok(nl.lib.tt_tangent_fill_f16(g_c, nl.ptr(got), n))
    assert_bits(got, hk.tangent_fill(g_py, n))


# ---- the generator ---------------------------------------------------------------------------

@settings(**EX)
@given(seed=SEED, stream=st.integers(0, 2**63), skip=st.integers(0, 10_000), dist=DIST,
       sizes=st.lists(st.integers(0, 70), min_size=1, max_size=4))
def test_tangent_values_are_the_fp32_tangents(nl, seed, stream, skip, dist, sizes):
    """Consecutive fills (leftover rademacher bits carried across calls) == TangentGen.take ==
    the fp32 forward mode's tangent of a tensor of that many values, rounded to half."""
    g_c, g_py = c_gen(nl, seed, stream, skip, dist), hk.TangentGen(seed, stream, skip, dist)
    allv = []
    for n in sizes:
        got = np.zeros(n, np.uint16)
        nl.ok(nl.lib.tt_tangent_fill_f16(g_c, nl.ptr(got), n))
        v = g_py.take(n)
        assert_bits(got, fp16.f32_to_f16(v))
        allv.append(v)
    one = hk.TangentGen(seed, stream, skip, dist).take(sum(sizes))
    np.testing.assert_array_equal(np.concatenate(allv).view(np.uint32), one.view(np.uint32))
    ref = tangent(seed, stream >> 32, stream & 0xFFFFFFFF, skip, (sum(sizes),), dist)
    np.testing.assert_array_equal(one.view(np.uint32), ref.view(np.uint32))
    same_next(nl, g_c, g_py)


def test_tangents_are_the_zo_update_z():
    """z of tt_zo_update_f16 over a tensor == the tangent the jvp pass used for it."""
    for dist in (hk.ZO_RADEMACHER, hk.ZO_GAUSS):
        z = hk.zo_z(Pcg32(5, 77), 100, dist)
        v = hk.TangentGen(5, 77, 0, dist).take(100)
        np.testing.assert_array_equal(z.view(np.uint32), v.view(np.uint32))


# ---- Gemm ------------------------------------------------------------------------------------

@settings(**EX)
@given(seed=SEED, n=st.integers(1, 3), k=st.integers(1, 40), m=st.integers(1, 9), dist=DIST,
       parts=st.sampled_from([(1, 1, 1), (1, 0, 0), (0, 1, 1), (0, 1, 0), (0, 0, 1), (1, 1, 0),
                              (1, 0, 1)]))
def test_gemm_jvp(nl, seed, n, k, m, dist, parts):
    has_tx, has_vw, has_vb = parts
    rng = np.random.default_rng(seed)
    x, w = rand_h(rng, (n, k)), rand_h(rng, (m, k), 0.3)
    tx = rand_h(rng, (n, k)) if has_tx else None
    ty = np.full(n * m, 0x7E00, np.uint16)
    gw_c = c_gen(nl, seed, 3, 11, dist) if has_vw else nl.NULL
    gb_c = c_gen(nl, seed, 3, 999, dist) if has_vb else nl.NULL
    gw = hk.TangentGen(seed, 3, 11, dist) if has_vw else None
    gb = hk.TangentGen(seed, 3, 999, dist) if has_vb else None
    nl.ok(nl.lib.tt_gemm_jvp_f16(nl.ptr(x), nl.ptr(tx), nl.ptr(w), nl.ptr(ty), n, k, m, gw_c,
                                 gb_c))
    assert_bits(ty, hk.gemm_jvp(x, tx, w, n, k, m, gw, gb))
    for g_c, g in ((gw_c, gw), (gb_c, gb)):
        if g is not None:
            same_next(nl, g_c, g)
    # float64 JVP of y = x W^T + b on the same halves and tangents
    X, W = H(x).astype(np.float64).reshape(n, k), H(w).astype(np.float64).reshape(m, k)
    V = hk.TangentGen(seed, 3, 11, dist).take(m * k).astype(np.float64).reshape(m, k)
    VB = hk.TangentGen(seed, 3, 999, dist).take(m).astype(np.float64)
    TX = H(tx).astype(np.float64).reshape(n, k) if has_tx else np.zeros((n, k))
    ref = TX @ W.T + (X @ V.T if has_vw else 0) + (VB if has_vb else 0)
    terms = np.abs(TX) @ np.abs(W.T) + (np.abs(X) @ np.abs(V.T) if has_vw else 0) + \
        (np.abs(VB) if has_vb else 0)
    assert_close16(ty, ref, terms, 2 * k + 1)


# ---- Conv ------------------------------------------------------------------------------------

@settings(**EX)
@given(p=conv_params(max_hw=7, max_c=9), seed=SEED, dist=DIST,
       parts=st.sampled_from([(1, 1, 1), (1, 0, 0), (0, 1, 1), (0, 1, 0), (1, 0, 1)]))
def test_conv2d_jvp(nl, p, seed, dist, parts):
    """Groups, depthwise, strides, asymmetric pads; channels of up to 144 weights, so the
    stack cache (TT_JVP_F16_VCACHE = 64 values) and the re-drawn remainder both run."""
    has_tx, has_vw, has_vb = parts
    rng = np.random.default_rng(seed)
    xs, ws, ys = shapes(p)
    x, w = rand_h(rng, xs), rand_h(rng, ws, 0.3)
    tx = rand_h(rng, xs) if has_tx else None
    ty = np.full(int(np.prod(ys)), 0x7E00, np.uint16)
    gw_c = c_gen(nl, seed, 9, 5, dist) if has_vw else nl.NULL
    gb_c = c_gen(nl, seed, 9, 5000, dist) if has_vb else nl.NULL
    gw = hk.TangentGen(seed, 9, 5, dist) if has_vw else None
    gb = hk.TangentGen(seed, 9, 5000, dist) if has_vb else None
    nl.ok(nl.lib.tt_conv2d_jvp_f16(nl.conv(p), nl.ptr(x), nl.ptr(tx), nl.ptr(w), nl.ptr(ty),
                                   gw_c, gb_c))
    assert_bits(ty, hk.conv2d_jvp(p, x, tx, w, gw, gb))
    for g_c, g in ((gw_c, gw), (gb_c, gb)):
        if g is not None:
            same_next(nl, g_c, g)
    X, W = H(x).astype(np.float64).reshape(xs), H(w).astype(np.float64).reshape(ws)
    V = hk.TangentGen(seed, 9, 5, dist).take(int(np.prod(ws))).astype(np.float64).reshape(ws)
    VB = hk.TangentGen(seed, 9, 5000, dist).take(p["out_c"]).astype(np.float64)
    TX = H(tx).astype(np.float64).reshape(xs) if has_tx else np.zeros(xs)
    ref = torch_conv(p, TX, W)[0] + (torch_conv(p, X, V)[0] if has_vw else 0) + \
        (VB[:, None, None] if has_vb else 0)
    terms = torch_conv(p, np.abs(TX), np.abs(W))[0] + \
        (torch_conv(p, np.abs(X), np.abs(V))[0] if has_vw else 0) + \
        (np.abs(VB)[:, None, None] if has_vb else 0)
    assert_close16(ty, ref, terms, 2 * int(np.prod(ws[1:])) + 1)


def test_conv2d_jvp_cache_boundary(nl):
    """Channels of 63, 64, 65 and 200 tangent values (cache full, exactly full, one re-drawn,
    most re-drawn): the same bits as drawing each channel once."""
    rng = np.random.default_rng(4)
    for cin, k in ((7, 3), (4, 4), (65, 1), (8, 5)):
        p = dict(in_c=cin, in_h=6, in_w=5, out_c=3, out_h=6, out_w=5, k_h=k, k_w=k, stride_h=1,
                 stride_w=1, pad_top=k // 2, pad_left=k // 2, groups=1)
        xs, ws, ys = shapes(p)
        x = rand_h(rng, xs)
        for dist in (hk.ZO_RADEMACHER, hk.ZO_GAUSS):
            ty = np.zeros(int(np.prod(ys)), np.uint16)
            g_c, g = c_gen(nl, 1, 2, 3, dist), hk.TangentGen(1, 2, 3, dist)
            nl.ok(nl.lib.tt_conv2d_jvp_f16(nl.conv(p), nl.ptr(x), nl.NULL, nl.NULL, nl.ptr(ty),
                                           g_c, nl.NULL))
            assert_bits(ty, hk.conv2d_jvp(p, x, None, None, g, None))
            same_next(nl, g_c, g)


# ---- MaxPool, Add, ReLU ------------------------------------------------------------------------

@settings(**EX)
@given(p=pool_params(), seed=SEED)
def test_maxpool_jvp(nl, p, seed):
    rng = np.random.default_rng(seed)
    n_in = p["c"] * p["in_h"] * p["in_w"]
    x = fp16.f32_to_f16(rng.integers(-3, 4, n_in).astype(np.float32))   # ties: first max
    tx = rand_h(rng, n_in)
    ty = np.zeros(p["c"] * p["out_h"] * p["out_w"], np.uint16)
    nl.ok(nl.lib.tt_maxpool2d_jvp_f16(nl.pool(p), nl.ptr(x), nl.ptr(tx), nl.ptr(ty)))
    assert_bits(ty, hk.maxpool2d_jvp(p, x, tx))
    _, arg = pool_ref(p, H(x), "max")
    t2 = tx.reshape(p["c"], -1)
    assert_bits(ty, np.take_along_axis(t2, arg.reshape(p["c"], -1), axis=1).reshape(-1))


@pytest.mark.parametrize("case", [
    ((2, 3, 4, 5), (60, 20, 5, 1), (0, 5, 0, 1)),      # b broadcast over dims 0 and 2
    ((1, 1, 4, 6), (0, 0, 6, 1), (0, 0, 6, 1)),        # same shape
    ((1, 2, 3, 4), (0, 1, 0, 0), (0, 12, 4, 1)),       # a per-channel scalar
])
def test_add_jvp(nl, case):
    shape, sa, sb = case
    rng = np.random.default_rng(0)
    d = nl.bcast(shape, sa, sb)
    na = max(int(bcast_offsets(shape, sa).max()) + 1, 1)
    nb = max(int(bcast_offsets(shape, sb).max()) + 1, 1)
    ta, tb = rand_h(rng, na), rand_h(rng, nb)
    n = int(np.prod(shape))
    for a, b in ((ta, tb), (ta, None), (None, tb)):
        ty = np.full(n, 0x7E00, np.uint16)
        nl.ok(nl.lib.tt_add_jvp_f16(d, nl.ptr(a), nl.ptr(b), nl.ptr(ty)))
        want = hk.add_jvp(shape, sa, sb, a, b)
        assert_bits(ty, want)
        if a is None or b is None:     # bit copies of the one tangent
            src, st_ = (a, sa) if a is not None else (b, sb)
            assert_bits(ty, src[bcast_offsets(shape, st_)].reshape(-1))
        else:
            assert_bits(ty, hk.add_fwd(shape, sa, sb, a, b))
    if na == n:                        # in place over a non-broadcast operand
        t = ta.copy()
        nl.ok(nl.lib.tt_add_jvp_f16(d, nl.ptr(t), nl.NULL, nl.ptr(t)))
        assert_bits(t, ta)
        nl.ok(nl.lib.tt_add_jvp_f16(d, nl.ptr(t), nl.ptr(tb), nl.ptr(t)))
        assert_bits(t, hk.add_fwd(shape, sa, sb, ta, tb))


def test_relu_tangent_is_the_vjp_kernel(nl):
    """ReLU's JVP is tt_relu_bwd_x_f16 with the tangent in the cotangent's place, in place."""
    rng = np.random.default_rng(1)
    y = hk.relu_fwd(rand_h(rng, 200))
    tx = rand_h(rng, 200)
    t = tx.copy()
    nl.ok(nl.lib.tt_relu_bwd_x_f16(nl.ptr(t), nl.ptr(y), nl.ptr(t), 200, 0))
    assert_bits(t, np.where(H(y) > 0, tx, 0))


# ---- the loss tangent --------------------------------------------------------------------------

@settings(**EX)
@given(seed=SEED, rows=st.integers(1, 3), cols=st.integers(2, 12),
       spread=st.sampled_from([1, 8, 30]))
def test_softmax_xent_jvp(nl, seed, rows, cols, spread):
    rng = np.random.default_rng(seed)
    logits, t = rand_h(rng, rows * cols, spread), rand_h(rng, rows * cols, 4)
    labels = rng.integers(0, cols, rows).astype(np.int32)
    dl = nl.ffi.new("float *")
    nl.ok(nl.lib.tt_softmax_xent_jvp_f16(nl.ptr(logits), nl.ptr(labels), rows, cols, nl.ptr(t),
                                         dl))
    ref, bad = hk.softmax_xent_jvp(logits, labels, rows, cols, t)
    assert not bad
    assert np.float32(dl[0]).view(np.uint32) == np.float32(ref).view(np.uint32)
    X = H(logits).astype(np.float64).reshape(rows, cols)
    T = H(t).astype(np.float64).reshape(rows, cols)
    P = np.exp(X - X.max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    P[np.arange(rows), labels] -= 1
    want = float((P * T).sum() / rows)
    assert abs(dl[0] - want) <= 1e-5 * (np.abs(P * T).sum() / rows) + 1e-7
    # the loss kernel's view of the same row: dL/dlogits . t with the gradient as halves
    g = np.zeros(rows * cols, np.uint16)
    l = nl.ffi.new("float *")
    nl.lib.tt_softmax_xent_f16(nl.ptr(logits), nl.ptr(labels), rows, cols, 1.0, l, nl.ptr(g))
    assert abs(float(H(g) @ H(t)) - want) <= 2.0**-10 * (np.abs(P * T).sum() / rows) + 1e-6


def test_nonfinite_tangent_gives_nan_status(nl):
    logits = fp16.f32_to_f16(np.array([1.0, 2.0, 0.5], np.float32))
    t = np.array([0x3C00, 0x7C00, 0x3C00], np.uint16)       # an overflowed (Inf) tangent
    labels = np.array([0], np.int32)
    dl = nl.ffi.new("float *")
    assert nl.lib.tt_softmax_xent_jvp_f16(nl.ptr(logits), nl.ptr(labels), 1, 3, nl.ptr(t),
                                          dl) == nl.lib.TT_ERR_NAN
    assert hk.softmax_xent_jvp(logits, labels, 1, 3, t)[1]


def test_bad_arguments(nl):
    err, shape = nl.lib.TT_ERR_ARG, nl.lib.TT_ERR_SHAPE
    g = nl.ffi.new("tt_tangent_f16 *")
    assert nl.lib.tt_tangent_init_f16(g, 1, 2, 0, 2) == err
    assert nl.lib.tt_tangent_init_f16(nl.NULL, 1, 2, 0, 0) == err
    g = c_gen(nl, 1, 2, 0, 0)
    h = np.zeros(4, np.uint16)
    assert nl.lib.tt_tangent_fill_f16(g, nl.ptr(h), -1) == err
    nl.ok(nl.lib.tt_tangent_fill_f16(g, nl.NULL, 0))
    # nothing to compute, or a tangent without what it multiplies
    assert nl.lib.tt_gemm_jvp_f16(nl.ptr(h), nl.NULL, nl.ptr(h), nl.ptr(h), 1, 2, 2, nl.NULL,
                                  nl.NULL) == err
    assert nl.lib.tt_gemm_jvp_f16(nl.ptr(h), nl.ptr(h), nl.NULL, nl.ptr(h), 1, 2, 2, nl.NULL,
                                  nl.NULL) == err
    assert nl.lib.tt_gemm_jvp_f16(nl.NULL, nl.NULL, nl.NULL, nl.ptr(h), 1, 2, 2, g,
                                  nl.NULL) == err
    assert nl.lib.tt_gemm_jvp_f16(nl.ptr(h), nl.NULL, nl.NULL, nl.ptr(h), 1, 0, 2, g,
                                  nl.NULL) == shape
    p = dict(in_c=1, in_h=2, in_w=2, out_c=1, out_h=2, out_w=2, k_h=1, k_w=1, stride_h=1,
             stride_w=1, pad_top=0, pad_left=0, groups=2)
    assert nl.lib.tt_conv2d_jvp_f16(nl.conv(p), nl.ptr(h), nl.NULL, nl.NULL, nl.ptr(h), g,
                                    nl.NULL) == shape
    assert nl.lib.tt_add_jvp_f16(nl.bcast((1, 1, 1, 4), (0, 0, 0, 1), (0, 0, 0, 1)), nl.NULL,
                                 nl.NULL, nl.ptr(h)) == err
    labels = np.array([3], np.int32)
    dl = nl.ffi.new("float *")
    assert nl.lib.tt_softmax_xent_jvp_f16(nl.ptr(h), nl.ptr(labels), 1, 3, nl.ptr(h),
                                          dl) == err
