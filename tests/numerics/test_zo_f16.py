"""Zeroth-order (SPSA) kernels on half weights with fp32 masters (tt_zo_f16.c): C == numpy twin
(fp16_kernels.zo_*) bit for bit on weights, masters, momentum state and generator states; the
master update is the fp32 zo update (passes/zeroth_order.zo_axpy) bit for bit; a perturbation
is one rounding of master + eps z, and the restore half(master) is exact."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from conftest import SANITIZE
from tinytrain.numerics import fp16, fp16_kernels as hk
from tinytrain.numerics.prng import Pcg32, stream_id
from tinytrain.passes.zeroth_order import GAUSS_SCALE, zo_axpy

SEED = st.integers(0, 2**32 - 1)
EX = dict(deadline=None, max_examples=10 if SANITIZE else 60)
DIST = st.sampled_from([hk.ZO_RADEMACHER, hk.ZO_GAUSS])
SIZE = st.integers(0, 150)
A = st.sampled_from([0.0, 1e-3, -2e-3, 0.5, -7.25, 3e-8, 1e4]) | st.floats(-4, 4, width=32)


def masters(seed, n, scale=1.0):
    r = np.random.default_rng(seed)
    m = (r.normal(0, scale, n) * np.exp(r.uniform(-6, 0, n))).astype(np.float32)
    if n > 3:
        m[:3] = [0.0, -0.0, 65500.0]
    return m


def same_gen(nl, st_c, gen):
    assert nl.lib.tt_prng_u32(st_c) == gen.next_u32()


def test_gauss_scale_is_the_fp32_zo_scale():
    assert hk.ZO_GAUSS_SCALE == GAUSS_SCALE == np.float32("0.00676587503")


@settings(**EX)
@given(seed=SEED, n=SIZE, a=A, dist=DIST, step=st.integers(0, 2**31 - 1), k=st.integers(0, 63))
def test_perturb_and_update_match_numpy_and_fp32(nl, seed, n, a, dist, step, k):
    sid = stream_id(step, k)
    m = masters(seed, n)
    w = np.zeros(n, np.uint16)
    st_c = nl.prng(seed, sid)
    nl.ok(nl.lib.tt_zo_perturb_f16(nl.ptr(m), nl.ptr(w), n, st_c, a, dist))
    g = Pcg32(seed, sid)
    np.testing.assert_array_equal(w, hk.zo_perturb(m, g, a, dist))
    same_gen(nl, st_c, g)
    # one rounding of the fp32 perturbation: half(fp32 zo's master + a z)
    m32 = m.copy()
    zo_axpy(m32, a, Pcg32(seed, sid), dist)
    np.testing.assert_array_equal(w, fp16.f32_to_f16(m32))

    mu = m.copy()
    st_c = nl.prng(seed, sid)
    nl.ok(nl.lib.tt_zo_update_f16(nl.ptr(mu), nl.ptr(w), n, st_c, a, dist))
    g = Pcg32(seed, sid)
    ref_m, ref_w = hk.zo_update(m, g, a, dist)
    np.testing.assert_array_equal(mu.view(np.uint32), ref_m.view(np.uint32))
    np.testing.assert_array_equal(w, ref_w)
    np.testing.assert_array_equal(mu.view(np.uint32), m32.view(np.uint32))  # the fp32 update
    same_gen(nl, st_c, g)


@settings(**EX)
@given(seed=SEED, n=SIZE, mu=st.sampled_from([1.0, 0.9, 0.0, 0.5]), a=A, b=A, dist=DIST,
       v32=st.booleans())
def test_momentum_match_numpy(nl, seed, n, mu, a, b, dist, v32):
    r = np.random.default_rng(seed)
    v0 = r.normal(0, 0.1, n).astype(np.float32)
    v = v0.copy() if v32 else fp16.f32_to_f16(v0)
    ref_v = v.copy()
    st_c = nl.prng(seed, 5)
    fn = nl.lib.tt_zo_mom_acc_f16_v32 if v32 else nl.lib.tt_zo_mom_acc_f16
    nl.ok(fn(nl.ptr(v), n, st_c, mu, a, dist))
    g = Pcg32(seed, 5)
    ref_v = hk.zo_mom_acc(ref_v, g, mu, a, dist, v32)
    np.testing.assert_array_equal(v.view(np.uint32 if v32 else np.uint16),
                                  ref_v.view(np.uint32 if v32 else np.uint16))
    same_gen(nl, st_c, g)
    if v32:   # = fp32 zo momentum: state *= mu (tt_scale_f32), then tt_zo_axpy_f32
        s32 = (np.float32(mu) * v0).astype(np.float32)
        zo_axpy(s32, a, Pcg32(seed, 5), dist)
        np.testing.assert_array_equal(v.view(np.uint32), s32.view(np.uint32))

    m = masters(seed + 1, n)
    w = np.zeros(n, np.uint16)
    ref_m, ref_w = hk.zo_mom_upd(m, v, b, v32)
    fn = nl.lib.tt_zo_mom_upd_f16_v32 if v32 else nl.lib.tt_zo_mom_upd_f16
    nl.ok(fn(nl.ptr(m), nl.ptr(w), nl.ptr(v), n, b))
    np.testing.assert_array_equal(m.view(np.uint32), ref_m.view(np.uint32))
    np.testing.assert_array_equal(w, ref_w)


def test_perturb_restore_cycles_are_exact(nl):
    """10^4 perturb (+eps, -eps) / restore cycles on one tensor: the halves come back to
    half(master) every time (a half += eps z, -= eps z would drift)."""
    n = 257
    m = masters(3, n, 0.3)
    w0 = fp16.f32_to_f16(m)
    w = w0.copy()
    for t in range(10_000 if not SANITIZE else 500):
        for a in (1e-3, -1e-3):
            nl.ok(nl.lib.tt_zo_perturb_f16(nl.ptr(m), nl.ptr(w), n,
                                           nl.prng(7, stream_id(t, 0)), a, t & 1))
        nl.ok(nl.lib.tt_f32_to_f16_n(nl.ptr(m), nl.ptr(w), n))
        assert np.array_equal(w, w0)
    # the lossy alternative, for the record: in-place half += eps z, -= eps z drifts
    h = w0.copy()
    for t in range(100):
        z = hk.zo_z(Pcg32(7, stream_id(t, 0)), n, 0)
        h = fp16.f32_to_f16(fp16.f16_to_f32(h) + np.float32(1e-3) * z)
        h = fp16.f32_to_f16(fp16.f16_to_f32(h) - np.float32(1e-3) * z)
    assert not np.array_equal(h, w0)


def test_bad_arguments(nl):
    m = np.zeros(4, np.float32)
    w = np.zeros(4, np.uint16)
    st_c = nl.prng(1, 2)
    err = nl.lib.TT_ERR_ARG
    assert nl.lib.tt_zo_perturb_f16(nl.ptr(m), nl.ptr(w), 4, st_c, 1.0, 2) == err
    assert nl.lib.tt_zo_perturb_f16(nl.NULL, nl.ptr(w), 4, st_c, 1.0, 0) == err
    assert nl.lib.tt_zo_update_f16(nl.ptr(m), nl.ptr(w), -1, st_c, 1.0, 0) == err
    assert nl.lib.tt_zo_update_f16(nl.ptr(m), nl.ptr(w), 4, nl.NULL, 1.0, 0) == err
    assert nl.lib.tt_zo_mom_acc_f16(nl.NULL, 4, st_c, 0.9, 1.0, 0) == err
    assert nl.lib.tt_zo_mom_upd_f16_v32(nl.ptr(m), nl.ptr(w), nl.NULL, 4, 1.0) == err
    nl.ok(nl.lib.tt_zo_perturb_f16(nl.NULL, nl.NULL, 0, st_c, 1.0, 1))
