"""Build the portable FP32 kernel library (runtime_c) into a host shared library and load it
with cffi, so the tests call exactly the C API the generated code calls.

    def test_x(rt):                      # session fixture: compiled once per test run
        y = np.empty(4, np.float32)
        rt.ok(rt.lib.tt_relu_fwd_f32(rt.f32(x), rt.f32(y), 4))

Environment:
  TT_RT_SANITIZE=1   build with -fsanitize=address,undefined (the sanitizer test re-runs this
                     directory in a subprocess with it, libasan preloaded) and use the small grid.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tt_rt_build import SANITIZE, SANITIZE_FLAGS, build_shared, cdef_source


class Runtime:
    """The loaded library plus small helpers for passing numpy arrays."""

    def __init__(self, lib_path: Path):
        import cffi
        self.ffi = cffi.FFI()
        self.ffi.cdef(cdef_source())
        self.lib = self.ffi.dlopen(str(lib_path))
        self.path = lib_path

    # ---- arrays
    def f32(self, a: np.ndarray):
        assert a.dtype == np.float32 and a.flags.c_contiguous, (a.dtype, a.flags)
        return self.ffi.cast("float *", self.ffi.from_buffer(a))

    def i32(self, a: np.ndarray):
        assert a.dtype == np.int32 and a.flags.c_contiguous
        return self.ffi.cast("int32_t *", self.ffi.from_buffer(a))

    @property
    def null(self):
        return self.ffi.NULL

    # ---- structs
    def conv_params(self, **kw):
        return self.ffi.new("tt_conv2d_params *", kw)

    def pool_params(self, **kw):
        return self.ffi.new("tt_pool2d_params *", kw)

    def bcast(self, shape, a_stride, b_stride):
        return self.ffi.new("tt_bcast4 *", {"shape": list(shape), "a_stride": list(a_stride),
                                            "b_stride": list(b_stride)})

    # ---- comparisons (module-level functions, reachable without importing conftest)
    @staticmethod
    def rel_err(got, ref) -> float:
        return rel_err(got, ref)

    @staticmethod
    def assert_close(got, ref, rtol=1e-5, what=""):
        assert_close(got, ref, rtol, what)

    # ---- status
    def status_str(self, st) -> str:
        return self.ffi.string(self.lib.tt_status_str(st)).decode()

    def ok(self, st):
        assert st == self.lib.TT_OK, f"status {int(st)}: {self.status_str(st)}"


def rel_err(got, ref) -> float:
    """||got - ref||_2 / ||ref||_2 in float64 (absolute when ref is all zeros)."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    den = np.linalg.norm(ref)
    return float(np.linalg.norm(got - ref) / (den if den > 0 else 1.0))


def assert_close(got, ref, rtol=1e-5, what=""):
    e = rel_err(got, ref)
    assert np.all(np.isfinite(np.asarray(got, dtype=np.float64))), f"{what}: non-finite output"
    assert e <= rtol, f"{what}: relative error {e:.3e} > {rtol:.0e}"


def _runtime(tmp_path_factory, defines=()) -> Runtime:
    extra = list(SANITIZE_FLAGS if SANITIZE else []) + list(defines)
    cache = os.environ.get("TINYTRAIN_CACHE")  # set by tests/conftest.py; keyed by content hash
    out = Path(cache) / "runtime_c" if cache else tmp_path_factory.mktemp("rt_build")
    return Runtime(build_shared(out, extra))


@pytest.fixture(scope="session")
def rt(tmp_path_factory) -> Runtime:
    """The library as the host builds it by default (with TT_CONV_PAIRS=1 under the
    sanitizers, see rt_pairs)."""
    return _runtime(tmp_path_factory, ["-DTT_CONV_PAIRS=1"] if SANITIZE else [])


@pytest.fixture(scope="session")
def rt_pairs(tmp_path_factory, rt) -> Runtime:
    """The variant RV32 builds by default (TT_CONV_PAIRS=1: two reduction steps per loop
    iteration in some convolution loops), so its code paths are tested on the host too.
    Under the sanitizers both fixtures are this build (it runs every loop of the default one,
    the paired loops handle the even part of a range, the single-step loops the rest)."""
    return rt if SANITIZE else _runtime(tmp_path_factory, ["-DTT_CONV_PAIRS=1"])


@pytest.fixture(params=["default", "pairs"])
def rt_any(request) -> Runtime:
    """Both builds of the library: their results must be bit-identical."""
    return request.getfixturevalue("rt" if request.param == "default" else "rt_pairs")


@pytest.fixture
def rng():
    return np.random.default_rng(20240607)

