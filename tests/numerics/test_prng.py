"""PCG32: C (tt_prng.c) and numpy (tinytrain.numerics.prng) produce identical sequences."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tinytrain.numerics.prng import GAUSS_SD, Pcg32, sr_rshift, stream_id

U64 = st.integers(0, 2**64 - 1)


def c_u32(nl, seed, stream, n):
    s = nl.prng(seed, stream)
    out = np.zeros(n, np.uint32)
    nl.ok(nl.lib.tt_prng_fill_u32(s, nl.ptr(out), n))
    return out, s


def test_known_answer_of_the_reference_pcg32():
    # the first outputs of the PCG reference demo (pcg32_srandom_r(&rng, 42, 54))
    ref = [0xa15c02b7, 0x7b47f409, 0xba1d3330, 0x83d2f293, 0xbfa4784b, 0xcbed606e]
    assert list(Pcg32(42, 54).u32(6)) == ref


@settings(max_examples=300, deadline=None)
@given(seed=U64, stream=U64, n=st.integers(0, 300))
def test_u32_sequences_identical(nl, seed, stream, n):
    c, s = c_u32(nl, seed, stream, n)
    g = Pcg32(seed, stream)
    np.testing.assert_array_equal(c, g.u32(n))
    assert (s.state, s.inc) == (g.state, g.inc)


def test_long_sequence_and_chunking(nl):
    c, _ = c_u32(nl, 7, 9, 100_000)
    g = Pcg32(7, 9)
    parts = [g.u32(k) for k in (1, 0, 31, 4096, 100_000 - 4128)]
    np.testing.assert_array_equal(c, np.concatenate(parts))
    h = Pcg32(7, 9)
    assert [h.next_u32() for _ in range(50)] == list(c[:50])


@settings(max_examples=100, deadline=None)
@given(seed=U64, stream=U64, delta=st.integers(0, 2**64 - 1))
def test_advance(nl, seed, stream, delta):
    s = nl.prng(seed, stream)
    nl.lib.tt_prng_advance(s, delta)
    g = Pcg32(seed, stream)
    g.advance(delta)
    assert s.state == g.state
    if delta < 5000:
        h = Pcg32(seed, stream)
        h.u32(delta)
        assert h.state == g.state


@settings(max_examples=100, deadline=None)
@given(seed=U64, step=st.integers(0, 2**31 - 1), k=st.integers(0, 2**32 - 1),
       n=st.integers(0, 200))
def test_keyed_streams_regenerate(nl, seed, step, k, n):
    sid = nl.lib.tt_prng_stream_id(step, k)
    assert sid == stream_id(step, k)
    a, _ = c_u32(nl, seed, sid, n)
    np.testing.assert_array_equal(a, Pcg32(seed, stream_id(step, k)).u32(n))
    np.testing.assert_array_equal(a, c_u32(nl, seed, sid, n)[0])   # regenerated, same


def test_streams_differ():
    a = Pcg32(1, stream_id(0, 0)).u32(64)
    b = Pcg32(1, stream_id(0, 1)).u32(64)
    c = Pcg32(1, stream_id(1, 0)).u32(64)
    assert not np.array_equal(a, b) and not np.array_equal(a, c) and not np.array_equal(b, c)


@settings(max_examples=150, deadline=None)
@given(seed=U64, stream=U64, n=st.integers(0, 200), bound=st.integers(0, 2**32 - 1))
def test_derived_draws_identical(nl, seed, stream, n, bound):
    s = nl.prng(seed, stream)
    g = Pcg32(seed, stream)
    z = np.zeros(n, np.int8)
    nl.ok(nl.lib.tt_prng_rademacher_i8(s, nl.ptr(z), n))
    np.testing.assert_array_equal(z, g.rademacher(n))
    q = np.zeros(n, np.int16)
    nl.ok(nl.lib.tt_prng_gauss_i16(s, nl.ptr(q), n))
    np.testing.assert_array_equal(q, g.gauss(n))
    below = [nl.lib.tt_prng_below(s, bound) for _ in range(min(n, 20))]
    np.testing.assert_array_equal(np.array(below, np.uint32), g.below(len(below), bound))
    assert (s.state, s.inc) == (g.state, g.inc)


def test_draw_statistics():
    g = Pcg32(2024, 1)
    z = g.rademacher(200_000).astype(np.float64)
    assert set(np.unique(z)) == {-1.0, 1.0} and abs(z.mean()) < 0.01
    q = g.gauss(200_000).astype(np.float64)
    assert q.min() >= -510 and q.max() <= 510
    assert abs(q.mean()) < 2.0 and abs(q.std() / GAUSS_SD - 1) < 0.01
    kurt = ((q - q.mean()) ** 4).mean() / q.var() ** 2
    assert abs(kurt - 2.7) < 0.05                       # Irwin-Hall(4): 3 - 6/(5*4)
    u = g.u32(200_000).astype(np.float64) / 2**32
    assert abs(u.mean() - 0.5) < 0.005
    b = g.below(100_000, 10)
    assert set(np.unique(b)) == set(range(10))


@settings(max_examples=300, deadline=None)
@given(x=st.integers(-2**63, 2**63 - 1), s=st.integers(0, 62), u=st.integers(0, 2**32 - 1))
def test_stochastic_rounding_i64(nl, x, s, u):
    c = nl.lib.tt_sr_rshift_i64(x, s, u)
    assert c == int(sr_rshift(np.array([x]), s, np.array([u], np.uint32))[0])
    # floor((x + U) / 2^s) with U the top s bits of u (exact Python ints)
    U = (u >> (32 - s)) if s <= 32 else (u << (s - 32))
    assert c == ((x + U) >> s) if s else c == x


@settings(max_examples=200, deadline=None)
@given(x=st.integers(-2**31, 2**31 - 1), s=st.integers(0, 31), u=st.integers(0, 2**32 - 1))
def test_stochastic_rounding_i32(nl, x, s, u):
    U = u >> (32 - s) if s else 0
    assert nl.lib.tt_sr_rshift_i32(x, s, u) == (x + U) >> s


def test_stochastic_rounding_is_unbiased():
    g = Pcg32(5, 5)
    x = np.full(200_000, 77, np.int64)          # 77 / 16 = 4.8125
    r = sr_rshift(x, 4, g.u32(x.size))
    assert set(np.unique(r)) == {4, 5}
    assert abs(r.mean() - 77 / 16) < 0.005
    r = sr_rshift(-x, 4, g.u32(x.size))
    assert abs(r.mean() + 77 / 16) < 0.005


def test_argument_errors(nl):
    s = nl.prng(1, 2)
    assert nl.lib.tt_prng_fill_u32(s, nl.NULL, 3) == nl.lib.TT_ERR_ARG
    assert nl.lib.tt_prng_fill_u32(nl.NULL, nl.NULL, 0) == nl.lib.TT_ERR_ARG
    assert nl.lib.tt_prng_gauss_i16(s, nl.NULL, -1) == nl.lib.TT_ERR_ARG
    assert nl.lib.tt_prng_rademacher_i8(s, nl.NULL, 0) == nl.lib.TT_OK


@pytest.mark.parametrize("n", [1, 31, 32, 33, 64, 65])
def test_rademacher_draw_count(nl, n):
    s = nl.prng(3, 3)
    z = np.zeros(n, np.int8)
    nl.lib.tt_prng_rademacher_i8(s, nl.ptr(z), n)
    g = Pcg32(3, 3)
    g.u32((n + 31) // 32)
    assert s.state == g.state
