"""Build the numerics C files (PRNG, FP16, fixed point) into a host shared library and load it
with cffi (ABI mode), so the tests call exactly the C API the generated code calls.

    def test_x(nl):                       # session fixture: compiled once per run
        st = nl.lib.tt_relu_fwd_q8(nl.ptr(x), nl.ptr(y), n)

Environment: TT_NUM_SANITIZE=1 builds with -fsanitize=address,undefined (the sanitizer test
re-runs a subset of this directory in a subprocess with it).
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
INCLUDE = ROOT / "runtime_c" / "include"
SRC = ROOT / "runtime_c" / "src"
# dependency order, for the cffi declarations
HEADERS = ["tt_status.h", "tt_kernels.h", "tt_prng.h", "tt_fixed.h", "tt_fp16.h", "tt_qkernels.h",
           "tt_qact.h", "tt_qjvp.h"]

STRICT_FLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic", "-ffp-contract=off"]
EXTRA_WARNINGS = ["-Wshadow", "-Wmissing-prototypes", "-Wstrict-prototypes", "-Wundef",
                  "-Wcast-qual", "-Wpointer-arith"]
SANITIZE_FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                  "-fno-omit-frame-pointer", "-g"]
SANITIZE = os.environ.get("TT_NUM_SANITIZE") == "1"


def numerics_sources() -> list[Path]:
    """The files of the numerics layer plus tt_util.c (status strings)."""
    srcs = [SRC / "tt_prng.c", SRC / "tt_fp16.c", SRC / "tt_fixed.c"]
    srcs += sorted(SRC.glob("tt_*_q.c")) + sorted(SRC.glob("tt_*_f16.c"))
    return srcs + [SRC / "tt_util.c"]


def host_cc() -> str:
    return os.environ.get("CC", "cc")


def strip_inline_definitions(text: str) -> str:
    """Drop `static inline ... { ... }` bodies (cffi declares, it does not define)."""
    out, i = [], 0
    while True:
        j = text.find("static inline", i)
        if j < 0:
            out.append(text[i:])
            return "".join(out)
        out.append(text[i:j])
        k = text.index("{", j)
        depth = 0
        while True:
            if text[k] == "{":
                depth += 1
            elif text[k] == "}":
                depth -= 1
                if depth == 0:
                    break
            k += 1
        i = k + 1


def cdef_source(cc: str | None = None) -> str:
    cc = cc or host_cc()
    lines = []
    for h in HEADERS:
        for line in (INCLUDE / h).read_text().splitlines():
            if re.match(r"\s*#\s*include\b", line):
                continue
            lines.append(line)
    r = subprocess.run([cc, "-E", "-P", "-std=c99", "-x", "c", "-"], input="\n".join(lines),
                       capture_output=True, text=True, check=True)
    out = strip_inline_definitions(r.stdout)
    return re.sub(r"\brestrict\b", "", out)


def build_shared(out_dir: Path, extra_flags=(), cc: str | None = None) -> Path:
    cc = cc or host_cc()
    srcs = numerics_sources()
    flags = ["-shared", "-fPIC", *STRICT_FLAGS, *EXTRA_WARNINGS, *extra_flags, f"-I{INCLUDE}"]
    h = hashlib.sha256(" ".join([cc, *flags]).encode())
    for p in srcs + [INCLUDE / n for n in HEADERS]:
        h.update(p.read_bytes())
    tag = h.hexdigest()[:12]
    lib = out_dir / f"libtt_numerics_{tag}.so"
    if lib.exists():
        return lib
    work = out_dir / f"obj_{tag}_{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    # compile the translation units in parallel, then link
    jobs = []
    for src in srcs:
        obj = work / (src.stem + ".o")
        cmd = [cc, *flags[2:], "-fPIC", "-c", str(src), "-o", str(obj)]
        jobs.append((cmd, obj, subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                                stderr=subprocess.PIPE, text=True)))
    for cmd, _, proc in jobs:
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"build failed:\n{' '.join(cmd)}\n{out}{err}")
    tmp = work / lib.name
    cmd = [cc, *flags, *[str(o) for _, o, _ in jobs], "-o", str(tmp), "-lm"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"link failed:\n{' '.join(cmd)}\n{r.stdout}{r.stderr}")
    os.replace(tmp, lib)                       # atomic: parallel sessions may race
    shutil.rmtree(work, ignore_errors=True)
    return lib


_CTYPES = {np.int8: "int8_t *", np.int16: "int16_t *", np.int32: "int32_t *",
           np.int64: "int64_t *", np.uint8: "uint8_t *", np.uint16: "uint16_t *",
           np.uint32: "uint32_t *", np.float32: "float *"}


class NumLib:
    """The loaded library plus helpers for numpy arrays, structs and counters."""

    def __init__(self, path: Path):
        import cffi
        self.ffi = cffi.FFI()
        self.ffi.cdef(cdef_source())
        self.lib = self.ffi.dlopen(str(path))
        self.path = path

    def ptr(self, a: np.ndarray | None):
        """A typed pointer into a's buffer. The pointer does not keep `a` alive: pass arrays
        bound to a name, never a temporary expression."""
        if a is None:
            return self.ffi.NULL
        assert a.flags.c_contiguous, "arrays passed to C must be contiguous"
        return self.ffi.cast(_CTYPES[a.dtype.type], self.ffi.from_buffer(a))

    @property
    def NULL(self):
        return self.ffi.NULL

    def counter(self, v: int = 0):
        return self.ffi.new("uint32_t *", v)

    def conv(self, p: dict):
        return self.ffi.new("tt_conv2d_params *", p)

    def pool(self, p: dict):
        return self.ffi.new("tt_pool2d_params *", p)

    def bcast(self, shape, a_stride, b_stride):
        return self.ffi.new("tt_bcast4 *", {"shape": list(shape), "a_stride": list(a_stride),
                                            "b_stride": list(b_stride)})

    def requant(self, rq, bits: int, keep: list):
        """cffi tt_requant for a fixed.Requant; arrays are appended to `keep` (lifetime)."""
        mult = np.ascontiguousarray(rq.mult, dtype=np.int32)
        shift = np.ascontiguousarray(rq.shift, dtype=np.int32)
        fscale = np.ascontiguousarray(rq.fscale, dtype=np.float32)
        keep += [mult, shift, fscale]
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        return self.ffi.new("tt_requant *", {
            "mode": rq.mode, "per_channel": int(rq.per_channel), "mult": self.ptr(mult),
            "shift": self.ptr(shift), "fscale": self.ptr(fscale),
            "act_min": lo if rq.act_min is None else rq.act_min,
            "act_max": hi if rq.act_max is None else rq.act_max})

    def prng(self, seed: int, stream: int):
        st = self.ffi.new("tt_prng *")
        self.lib.tt_prng_seed(st, seed, stream)
        return st

    def ok(self, st):
        assert st == self.lib.TT_OK, f"status {int(st)}: " \
            f"{self.ffi.string(self.lib.tt_status_str(st)).decode()}"


@pytest.fixture(scope="session")
def nl(tmp_path_factory) -> NumLib:
    extra = SANITIZE_FLAGS if SANITIZE else []
    cache = os.environ.get("TINYTRAIN_CACHE")
    out = Path(cache) / "numerics" if cache else tmp_path_factory.mktemp("numerics_build")
    return NumLib(build_shared(out, extra))
