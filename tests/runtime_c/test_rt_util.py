"""Status strings, CRC-32, finite check and the portable elementary functions."""
import os
import re
import zlib
from pathlib import Path

import numpy as np
import pytest

SMALL = os.environ.get("TT_RT_SANITIZE") == "1"
HEADER = Path(__file__).resolve().parents[2] / "runtime_c" / "include" / "tt_status.h"


def test_status_codes_and_strings(rt):
    lib = rt.lib
    listed = re.findall(r"X\((TT_\w+),\s*(\d+),\s*\"([^\"]*)\"\)", HEADER.read_text())
    names = [n for n, _, _ in listed]
    for required in ["TT_OK", "TT_ERR_SHAPE", "TT_ERR_NAN", "TT_ERR_CHECKPOINT_CRC",
                     "TT_ERR_CHECKPOINT_SIZE", "TT_ERR_ARG"]:
        assert required in names
    assert lib.TT_OK == 0
    for name, value, text in listed:
        assert getattr(lib, name) == int(value)
        assert rt.status_str(int(value)) == text
    assert len({int(v) for _, v, _ in listed}) == len(listed)
    assert rt.status_str(999) == "unknown status"


def _crc(rt, data: bytes, crc=0):
    buf = rt.ffi.from_buffer(data) if data else rt.null
    return rt.lib.tt_crc32(buf, len(data), crc)


def test_crc32_matches_zlib_and_chains(rt, rng):
    assert _crc(rt, b"123456789") == 0xCBF43926
    assert _crc(rt, b"") == 0
    for n in [1, 2, 3, 15, 16, 17, 1000]:
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        assert _crc(rt, data) == zlib.crc32(data)
        cut = n // 3
        assert _crc(rt, data[cut:], _crc(rt, data[:cut])) == zlib.crc32(data)
    floats = rng.standard_normal(100).astype(np.float32)
    assert rt.lib.tt_crc32(rt.f32(floats), floats.nbytes, 0) == zlib.crc32(floats.tobytes())


def test_check_finite(rt):
    lib = rt.lib
    for n in [0, 1, 2, 7, 8]:
        x = np.linspace(-3e38, 3e38, n).astype(np.float32) if n else np.zeros(0, np.float32)
        assert lib.tt_check_finite_f32(rt.f32(x) if n else rt.null, n) == lib.TT_OK
        for bad in [np.nan, np.inf, -np.inf]:
            for pos in range(n):
                y = x.copy()
                y[pos] = bad
                assert lib.tt_check_finite_f32(rt.f32(y), n) == lib.TT_ERR_NAN
    x = np.array([np.float32(1e-45), -np.float32(0.0)], np.float32)  # subnormal, -0
    assert lib.tt_check_finite_f32(rt.f32(x), 2) == lib.TT_OK
    assert lib.tt_check_finite_f32(rt.null, 3) == lib.TT_ERR_ARG


# ------------------------------------------------------------------ elementary functions

def _ulp_err(got, ref):
    """|got - ref| in units of the float32 ulp at ref (ref in float64)."""
    got = np.asarray(got, np.float64)
    r32 = np.abs(ref).astype(np.float32)
    ulp = np.spacing(np.maximum(r32, np.finfo(np.float32).tiny)).astype(np.float64)
    return np.abs(got - ref) / ulp


def _call(rt, fn, xs):
    f = getattr(rt.lib, fn)
    return np.array([f(float(v)) for v in xs], np.float32)


N_MATH = 4000 if SMALL else 40000


def _samples(rng, lo, hi, n=N_MATH):
    return np.concatenate([rng.uniform(lo, hi, n), np.linspace(lo, hi, 2001)]).astype(np.float32)


def test_expf(rt, rng):
    x = _samples(rng, -87.0, 88.7)
    got = _call(rt, "tt_expf", x)
    assert _ulp_err(got, np.exp(x.astype(np.float64))).max() <= 1.5
    sub = _samples(rng, -103.9, -87.4, 2000)  # subnormal results: absolute accuracy
    got = _call(rt, "tt_expf", sub)
    assert np.all(np.abs(got - np.exp(sub.astype(np.float64))) <= 2 * 1.5e-45)
    special = _call(rt, "tt_expf", [0.0, -0.0, np.inf, -np.inf, 89.0, 88.8, -200.0, np.nan])
    assert list(special[:7]) == [1.0, 1.0, np.inf, 0.0, np.inf, np.inf, 0.0] and np.isnan(special[7])


def test_expm1f(rt, rng):
    x = np.concatenate([_samples(rng, -20.0, 60.0), _samples(rng, -1e-3, 1e-3, 5000),
                        np.float32([1e-30, -1e-30, 1e-8])])
    got = _call(rt, "tt_expm1f", x)
    assert _ulp_err(got, np.expm1(x.astype(np.float64))).max() <= 1.5
    special = _call(rt, "tt_expm1f", [0.0, -np.inf, np.inf, -50.0, np.nan])
    assert list(special[:4]) == [0.0, -1.0, np.inf, -1.0] and np.isnan(special[4])


def test_logf(rt, rng):
    e = rng.uniform(-149, 128, N_MATH)
    x = np.concatenate([np.exp2(e), _samples(rng, 0.5, 2.0)]).astype(np.float32)
    x = x[(x > 0) & np.isfinite(x)]
    got = _call(rt, "tt_logf", x)
    assert _ulp_err(got, np.log(x.astype(np.float64))).max() <= 1.5
    special = _call(rt, "tt_logf", [1.0, 0.0, -0.0, np.inf, -1.0, np.nan])
    assert list(special[:4]) == [0.0, -np.inf, -np.inf, np.inf] and np.isnan(special[4:]).all()


def test_log1pf(rt, rng):
    x = np.concatenate([_samples(rng, -0.999, 10.0), _samples(rng, -1e-4, 1e-4, 5000),
                        np.exp2(rng.uniform(-120, 100, 5000)).astype(np.float32)]).astype(np.float32)
    got = _call(rt, "tt_log1pf", x)
    assert _ulp_err(got, np.log1p(x.astype(np.float64))).max() <= 1.5
    special = _call(rt, "tt_log1pf", [0.0, -1.0, np.inf, -2.0, 1e30])
    assert list(special[:3]) == [0.0, -np.inf, np.inf] and np.isnan(special[3])
    assert special[4] == pytest.approx(np.log(1e30), rel=1e-7)
