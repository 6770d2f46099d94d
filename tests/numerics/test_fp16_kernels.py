"""FP16-storage kernels: C (tt_*_f16.c) == numpy twin (tinytrain.numerics.fp16_kernels) bit
for bit, and both within fp16 tolerance of a float64 reference on the same half inputs."""
import numpy as np
from hypothesis import given, settings, strategies as st

from conftest import SANITIZE
from num_helpers import conv_params, pool_params, pool_ref, shapes, torch_conv
from tinytrain.numerics import fp16, fp16_kernels as hk
from tinytrain.numerics.chains import bcast_offsets

SEED = st.integers(0, 2**32 - 1)
EX = dict(deadline=None, max_examples=10 if SANITIZE else 50)
H = fp16.f16_to_f32


def rand_h(rng, shape, scale=1.0):
    return fp16.f32_to_f16((rng.normal(0, scale, shape)).astype(np.float32)).reshape(-1)


def assert_bits(got, ref):
    np.testing.assert_array_equal(np.asarray(got, np.uint16), np.asarray(ref, np.uint16))


def assert_close16(got_bits, ref, abs_terms, k):
    """fp32 chain of k terms (each op <= 2^-24 relative) + one rounding to half."""
    got = H(got_bits).astype(np.float64).reshape(np.shape(ref))
    tol = 2.0**-11 * np.abs(ref) + (k + 2) * 2.0**-23 * abs_terms + 2.0**-24
    assert np.all(np.abs(got - ref) <= tol), np.max(np.abs(got - ref) - tol)


# ---- GEMM ---------------------------------------------------------------------------------

@settings(**EX)
@given(seed=SEED, n=st.integers(1, 4), k=st.integers(0, 30), m=st.integers(1, 10),
       has_b=st.booleans(), accumulate=st.booleans())
def test_gemm(nl, seed, n, k, m, has_b, accumulate):
    rng = np.random.default_rng(seed)
    x, w, gy = rand_h(rng, (n, k)), rand_h(rng, (m, k)), rand_h(rng, (n, m))
    b = rand_h(rng, m) if has_b else None
    y = np.zeros(n * m, np.uint16)
    nl.ok(nl.lib.tt_gemm_fwd_f16(nl.ptr(x), nl.ptr(w), nl.ptr(b), nl.ptr(y), n, k, m))
    assert_bits(y, hk.gemm_fwd(x, w, b, n, k, m))
    X, W, G = (H(a).astype(np.float64) for a in (x.reshape(n, k), w.reshape(m, k), gy.reshape(n, m)))
    B = 0 if b is None else H(b).astype(np.float64)
    assert_close16(y, X @ W.T + B, np.abs(X) @ np.abs(W.T) + np.abs(B), k)

    ix = rand_h(rng, (n, k)) if accumulate else None
    iw = rand_h(rng, (m, k)) if accumulate else None
    gx = ix.copy() if accumulate else np.full(n * k, 0x3C00, np.uint16)
    gw = iw.copy() if accumulate else np.full(m * k, 0x3C00, np.uint16)
    nl.ok(nl.lib.tt_gemm_bwd_x_f16(nl.ptr(gy), nl.ptr(w), nl.ptr(gx), n, k, m, int(accumulate)))
    nl.ok(nl.lib.tt_gemm_bwd_w_f16(nl.ptr(gy), nl.ptr(x), nl.ptr(gw), n, k, m, int(accumulate)))
    assert_bits(gx, hk.gemm_bwd_x(gy, w, n, k, m, ix))
    assert_bits(gw, hk.gemm_bwd_w(gy, x, n, k, m, iw))
    IX = 0 if ix is None else H(ix).astype(np.float64).reshape(n, k)
    IW = 0 if iw is None else H(iw).astype(np.float64).reshape(m, k)
    assert_close16(gx, G @ W + IX, np.abs(G) @ np.abs(W) + np.abs(IX), m)
    assert_close16(gw, G.T @ X + IW, np.abs(G.T) @ np.abs(X) + np.abs(IW), n)


@settings(**EX)
@given(seed=SEED, outer=st.integers(1, 3), c=st.integers(1, 6), inner=st.integers(1, 20),
       accumulate=st.booleans())
def test_bias_bwd(nl, seed, outer, c, inner, accumulate):
    rng = np.random.default_rng(seed)
    gy = rand_h(rng, (outer, c, inner))
    init = rand_h(rng, c) if accumulate else None
    gb = init.copy() if accumulate else np.zeros(c, np.uint16)
    nl.ok(nl.lib.tt_bias_bwd_f16(nl.ptr(gy), nl.ptr(gb), outer, c, inner, int(accumulate)))
    assert_bits(gb, hk.bias_bwd(gy, outer, c, inner, init))
    G = H(gy).astype(np.float64).reshape(outer, c, inner)
    I = 0 if init is None else H(init).astype(np.float64)
    assert_close16(gb, G.sum(axis=(0, 2)) + I, np.abs(G).sum(axis=(0, 2)) + np.abs(I), outer * inner)


# ---- convolution --------------------------------------------------------------------------

@settings(**EX)
@given(p=conv_params(max_hw=7, max_c=3), seed=SEED, has_b=st.booleans(), accumulate=st.booleans())
def test_conv2d(nl, p, seed, has_b, accumulate):
    rng = np.random.default_rng(seed)
    xs, ws, ys = shapes(p)
    x, w, gy = rand_h(rng, xs), rand_h(rng, ws), rand_h(rng, ys)
    b = rand_h(rng, p["out_c"]) if has_b else None
    y = np.zeros(int(np.prod(ys)), np.uint16)
    nl.ok(nl.lib.tt_conv2d_fwd_f16(nl.conv(p), nl.ptr(x), nl.ptr(w), nl.ptr(b), nl.ptr(y)))
    assert_bits(y, hk.conv2d_fwd(p, x, w, b))
    X, W, G = H(x).reshape(xs), H(w).reshape(ws), H(gy).reshape(ys)
    B = None if b is None else H(b)
    ref, gx_ref, gw_ref = torch_conv(p, X, W, B, gy=G)
    absr, agx, agw = torch_conv(p, np.abs(X), np.abs(W), None if B is None else np.abs(B),
                                gy=np.abs(G))
    k = ws[1] * ws[2] * ws[3]
    assert_close16(y, ref, absr, k)

    ix = rand_h(rng, xs) if accumulate else None
    iw = rand_h(rng, ws) if accumulate else None
    gx = ix.copy() if accumulate else np.full(int(np.prod(xs)), 0x3C00, np.uint16)
    gw = iw.copy() if accumulate else np.full(int(np.prod(ws)), 0x3C00, np.uint16)
    nl.ok(nl.lib.tt_conv2d_bwd_x_f16(nl.conv(p), nl.ptr(gy), nl.ptr(w), nl.ptr(gx), int(accumulate)))
    nl.ok(nl.lib.tt_conv2d_bwd_w_f16(nl.conv(p), nl.ptr(gy), nl.ptr(x), nl.ptr(gw), int(accumulate)))
    assert_bits(gx, hk.conv2d_bwd_x(p, gy, w, ix))
    assert_bits(gw, hk.conv2d_bwd_w(p, gy, x, iw))
    IX = 0 if ix is None else H(ix).reshape(xs).astype(np.float64)
    IW = 0 if iw is None else H(iw).reshape(ws).astype(np.float64)
    assert_close16(gx, gx_ref + IX, agx + np.abs(IX), p["out_c"] * p["k_h"] * p["k_w"])
    assert_close16(gw, gw_ref + IW, agw + np.abs(IW), p["out_h"] * p["out_w"])


# ---- ReLU ----------------------------------------------------------------------------------

SPECIAL = np.array([0x0000, 0x8000, 0x7C00, 0xFC00, 0x7E00, 0xFE01, 0x7C01, 0x0001, 0x8001,
                    0x3C00, 0xBC00, 0x7BFF, 0xFBFF], np.uint16)


@settings(**EX)
@given(seed=SEED, n=st.integers(0, 60), accumulate=st.booleans())
def test_relu(nl, seed, n, accumulate):
    rng = np.random.default_rng(seed)
    x = np.concatenate([SPECIAL, rand_h(rng, n)])
    gy = np.concatenate([rand_h(rng, SPECIAL.size), rand_h(rng, n)])
    m = x.size
    y = np.zeros(m, np.uint16)
    nl.ok(nl.lib.tt_relu_fwd_f16(nl.ptr(x), nl.ptr(y), m))
    assert_bits(y, hk.relu_fwd(x))
    xf, yf = H(x), H(y)
    with np.errstate(invalid="ignore"):
        expect = np.where(xf < 0, 0.0, xf)
    np.testing.assert_array_equal(np.isnan(yf), np.isnan(xf))
    ok = ~np.isnan(xf)
    np.testing.assert_array_equal(yf[ok], expect[ok])
    init = rand_h(rng, m) if accumulate else None
    gx = init.copy() if accumulate else np.zeros(m, np.uint16)
    nl.ok(nl.lib.tt_relu_bwd_x_f16(nl.ptr(gy), nl.ptr(y), nl.ptr(gx), m, int(accumulate)))
    assert_bits(gx, hk.relu_bwd_x(gy, y, init))
    inplace = x.copy()
    nl.ok(nl.lib.tt_relu_fwd_f16(nl.ptr(inplace), nl.ptr(inplace), m))
    assert_bits(inplace, y)


# ---- pooling -------------------------------------------------------------------------------

@settings(**EX)
@given(p=pool_params(), seed=SEED, accumulate=st.booleans(), nans=st.booleans())
def test_maxpool(nl, p, seed, accumulate, nans):
    rng = np.random.default_rng(seed)
    n_in, n_out = p["c"] * p["in_h"] * p["in_w"], p["c"] * p["out_h"] * p["out_w"]
    x = rand_h(rng, n_in)
    x[rng.random(n_in) < 0.2] = 0x3C00                                  # ties
    if nans:
        x[rng.random(n_in) < 0.1] = 0x7E00
    gy = rand_h(rng, n_out)
    y = np.zeros(n_out, np.uint16)
    nl.ok(nl.lib.tt_maxpool2d_fwd_f16(nl.pool(p), nl.ptr(x), nl.ptr(y)))
    assert_bits(y, hk.maxpool2d_fwd(p, x))
    if not nans:
        yr, _ = pool_ref(p, H(x), "max")
        np.testing.assert_array_equal(H(y), yr.reshape(-1).astype(np.float32))
    init = rand_h(rng, n_in) if accumulate else None
    gx = init.copy() if accumulate else np.full(n_in, 0x3C00, np.uint16)
    nl.ok(nl.lib.tt_maxpool2d_bwd_x_f16(nl.pool(p), nl.ptr(gy), nl.ptr(x), nl.ptr(gx),
                                        int(accumulate)))
    assert_bits(gx, hk.maxpool2d_bwd_x(p, gy, x, init))


@settings(**EX)
@given(p=pool_params(), seed=SEED, accumulate=st.booleans())
def test_avgpool(nl, p, seed, accumulate):
    rng = np.random.default_rng(seed)
    n_in, n_out = p["c"] * p["in_h"] * p["in_w"], p["c"] * p["out_h"] * p["out_w"]
    x, gy = rand_h(rng, n_in), rand_h(rng, n_out)
    y = np.zeros(n_out, np.uint16)
    nl.ok(nl.lib.tt_avgpool2d_fwd_f16(nl.pool(p), nl.ptr(x), nl.ptr(y)))
    assert_bits(y, hk.avgpool2d_fwd(p, x))
    yr, _ = pool_ref(p, H(x), "avg")
    ya, _ = pool_ref(p, np.abs(H(x)), "avg")
    assert_close16(y, yr.reshape(-1), ya.reshape(-1), p["k_h"] * p["k_w"])
    init = rand_h(rng, n_in) if accumulate else None
    gx = init.copy() if accumulate else np.full(n_in, 0x3C00, np.uint16)
    nl.ok(nl.lib.tt_avgpool2d_bwd_x_f16(nl.pool(p), nl.ptr(gy), nl.ptr(gx), int(accumulate)))
    assert_bits(gx, hk.avgpool2d_bwd_x(p, gy, init))


@settings(**EX)
@given(seed=SEED, c=st.integers(1, 5), hw=st.integers(1, 50), accumulate=st.booleans())
def test_global_avgpool(nl, seed, c, hw, accumulate):
    rng = np.random.default_rng(seed)
    x, gy = rand_h(rng, c * hw), rand_h(rng, c)
    y = np.zeros(c, np.uint16)
    nl.ok(nl.lib.tt_global_avgpool_fwd_f16(nl.ptr(x), nl.ptr(y), c, hw))
    assert_bits(y, hk.global_avgpool_fwd(x, c, hw))
    X = H(x).astype(np.float64).reshape(c, hw)
    assert_close16(y, X.mean(axis=1), np.abs(X).mean(axis=1), hw)
    init = rand_h(rng, c * hw) if accumulate else None
    gx = init.copy() if accumulate else np.zeros(c * hw, np.uint16)
    nl.ok(nl.lib.tt_global_avgpool_bwd_x_f16(nl.ptr(gy), nl.ptr(gx), c, hw, int(accumulate)))
    assert_bits(gx, hk.global_avgpool_bwd_x(gy, c, hw, init))


# ---- add -----------------------------------------------------------------------------------

@st.composite
def bcast_case(draw):
    shape = [draw(st.integers(1, 4)) for _ in range(4)]
    def operand():
        keep = [draw(st.booleans()) or s == 1 for s in shape]
        oshape = [s if k else 1 for s, k in zip(shape, keep)]
        strides, acc = [0] * 4, 1
        for d in range(3, -1, -1):
            strides[d] = acc if oshape[d] > 1 else 0
            acc *= oshape[d]
        return strides, acc
    (sa, na), (sb, nb) = operand(), operand()
    return shape, sa, na, sb, nb


@settings(**EX)
@given(case=bcast_case(), seed=SEED)
def test_add(nl, case, seed):
    shape, sa, na, sb, nb = case
    rng = np.random.default_rng(seed)
    a, b = rand_h(rng, na), rand_h(rng, nb)
    ny = int(np.prod(shape))
    y = np.zeros(ny, np.uint16)
    nl.ok(nl.lib.tt_add_fwd_f16(nl.bcast(shape, sa, sb), nl.ptr(a), nl.ptr(b), nl.ptr(y)))
    assert_bits(y, hk.add_fwd(shape, sa, sb, a, b))
    ref = H(a)[bcast_offsets(shape, sa)].astype(np.float64) + H(b)[bcast_offsets(shape, sb)]
    assert_close16(y, ref.reshape(-1), np.abs(ref.reshape(-1)), 1)
    gy = rand_h(rng, ny)
    for which, (st_, n_op) in enumerate([(sa, na), (sb, nb)]):
        for accumulate in (0, 1):
            init = rand_h(rng, n_op)
            g = init.copy() if accumulate else np.full(n_op, 0x3C00, np.uint16)
            nl.ok(nl.lib.tt_add_bwd_f16(nl.bcast(shape, sa, sb), nl.ptr(gy), nl.ptr(g), which,
                                        accumulate))
            assert_bits(g, hk.add_bwd(shape, st_, gy, n_op, init if accumulate else None))


def test_add_bwd_in_place(nl):
    rng = np.random.default_rng(0)
    shape, s = [1, 2, 3, 4], [0, 12, 4, 1]
    gy = rand_h(rng, 24)
    ref = hk.add_bwd(shape, s, gy, 24)
    nl.ok(nl.lib.tt_add_bwd_f16(nl.bcast(shape, s, s), nl.ptr(gy), nl.ptr(gy), 0, 0))
    assert_bits(gy, ref)


# ---- loss ----------------------------------------------------------------------------------

@settings(**EX)
@given(seed=SEED, rows=st.integers(1, 4), cols=st.integers(1, 20),
       log2_scale=st.integers(0, 12), spread=st.floats(0.1, 8.0))
def test_softmax_xent(nl, seed, rows, cols, log2_scale, spread):
    rng = np.random.default_rng(seed)
    logits = rand_h(rng, (rows, cols), spread)
    labels = rng.integers(0, cols, rows).astype(np.int32)
    scale = float(2**log2_scale) / 3.0           # loss scale / batch
    loss = nl.ffi.new("float *")
    g = np.zeros(rows * cols, np.uint16)
    st_ = nl.lib.tt_softmax_xent_f16(nl.ptr(logits), nl.ptr(labels), rows, cols, scale, loss,
                                     nl.ptr(g))
    ref_loss, ref_g, bad = hk.softmax_xent(logits, labels, rows, cols, scale)
    assert st_ == (nl.lib.TT_ERR_NAN if bad else nl.lib.TT_OK)
    assert np.float32(loss[0]).view(np.uint32) == np.float32(ref_loss).view(np.uint32)
    assert_bits(g, ref_g)
    X = H(logits).astype(np.float64).reshape(rows, cols)
    Xs = X - X.max(axis=1, keepdims=True)
    lse = np.log(np.exp(Xs).sum(axis=1))
    lrow = lse - Xs[np.arange(rows), labels]
    assert abs(loss[0] - lrow.mean()) <= 1e-5 * (1 + lrow.mean())
    p = np.exp(Xs - lse[:, None])
    p[np.arange(rows), labels] -= 1
    exp_g = p * (np.float32(scale) / rows)
    assert_close16(g, exp_g.reshape(-1), np.abs(exp_g.reshape(-1)), cols * 4)
    # in place
    lg = logits.copy()
    nl.lib.tt_softmax_xent_f16(nl.ptr(lg), nl.ptr(labels), rows, cols, scale, nl.NULL, nl.ptr(lg))
    assert_bits(lg, ref_g)


# ---- optimizers ----------------------------------------------------------------------------

@settings(**EX)
@given(seed=SEED, n=st.integers(1, 50), master=st.booleans(), wd=st.sampled_from([0.0, 1e-3]),
       log2_ls=st.integers(0, 10), bad=st.booleans(), kind=st.sampled_from(["sgd", "v16", "v32"]))
def test_updates(nl, seed, n, master, wd, log2_ls, bad, kind):
    rng = np.random.default_rng(seed)
    w = rand_h(rng, n)
    g = rand_h(rng, n, 2.0**log2_ls * 1e-2)
    if bad:
        g[rng.integers(0, n)] = 0x7C00
    ms = H(w) + np.float32(1e-4) if master else None
    inv = 1.0 / 2**log2_ls
    lr, mom = 0.05, 0.9
    w_c, g_c = w.copy(), g.copy()
    ms_c = None if ms is None else ms.copy()
    if kind == "sgd":
        st_ = nl.lib.tt_sgd_upd_f16(nl.ptr(w_c), nl.ptr(g_c), nl.ptr(ms_c), n, lr, wd, inv)
        w_r, ms_r, ok = hk.sgd_upd(w, g, ms, lr, wd, inv)
    else:
        v32 = kind == "v32"
        v = rng.normal(0, 0.1, n).astype(np.float32) if v32 else rand_h(rng, n, 0.1)
        v_c = v.copy()
        fn = nl.lib.tt_momentum_upd_f16_v32 if v32 else nl.lib.tt_momentum_upd_f16
        st_ = fn(nl.ptr(w_c), nl.ptr(g_c), nl.ptr(v_c), nl.ptr(ms_c), n, lr, mom, wd, inv)
        w_r, v_r, ms_r, ok = hk.momentum_upd(w, g, v, ms, lr, mom, wd, inv, v32)
        np.testing.assert_array_equal(np.asarray(v_c).view(np.uint16 if not v32 else np.uint32),
                                      np.asarray(v_r).view(np.uint16 if not v32 else np.uint32))
    assert st_ == (nl.lib.TT_OK if ok else nl.lib.TT_ERR_NAN)
    assert ok == (not bad)
    assert_bits(w_c, w_r)
    assert np.all(g_c == 0)
    if master:
        np.testing.assert_array_equal(ms_c.view(np.uint32), ms_r.view(np.uint32))
    if kind == "sgd" and ok and not master:
        W = H(w).astype(np.float64)
        exp = W - lr * (H(g).astype(np.float64) * inv + wd * W)
        assert_close16(w_c, exp, np.abs(W) + np.abs(exp), 4)
