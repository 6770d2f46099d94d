"""Host simulator: compile an exported folder with the host C compiler and drive it via cffi.

The object you test is the object you ship: ``HostModel.train_step`` calls the generated
``tt_train_step`` of the very sources a board would compile. Builds are cached by a hash of the
sources and flags, so repeated tests do not recompile.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..errors import BuildError, CheckpointError, ShapeError, NumericFaultError, TinytrainError

HOST_CFLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic", "-ffp-contract=off"]
SANITIZE_FLAGS = ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                  "-fno-omit-frame-pointer"]
# Stable status codes of runtime_c/include/tt_status.h.
TT_ERR_NAN, TT_ERR_CHECKPOINT_CRC, TT_ERR_CHECKPOINT_SIZE = 3, 4, 5


def find_cc() -> str:
    for cand in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cand and shutil.which(cand):
            return shutil.which(cand)
    raise BuildError("no C compiler found (looked for $CC, cc, gcc, clang). Install one, e.g. "
                     "`apt-get install build-essential`, or set CC=/path/to/compiler.")


def _host_fma_flag() -> list[str]:
    # fmaf() is a libm call without hardware FMA; the same bits either way (it is correctly
    # rounded), but -mfma makes host runs fast.
    try:
        if os.uname().machine in ("x86_64", "amd64") and " fma " in Path("/proc/cpuinfo").read_text():
            return ["-mfma"]
    except OSError:
        pass
    return []


def cache_dir() -> Path:
    d = Path(os.environ.get("TINYTRAIN_CACHE", Path.home() / ".cache" / "tinytrain"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def read_manifest(out_dir) -> dict:
    mf = Path(out_dir) / "tt_manifest.json"
    if not mf.exists():
        raise TinytrainError(f"{out_dir} is not an exported tinytrain project (no tt_manifest.json);"
                             " create one with `tinytrain export model.onnx -o DIR`.")
    return json.loads(mf.read_text())


def _sources(out_dir: Path, manifest: dict) -> list[Path]:
    srcs = [out_dir / s for s in manifest["sources"]]
    missing = [str(s) for s in srcs if not s.exists()]
    if missing:
        raise BuildError(f"exported project {out_dir} is incomplete: missing {', '.join(missing)}")
    return srcs


def _compile_objects(cc, flags, srcs, include_dir) -> list[Path]:
    """Compile each source to an object cached by its content, its headers and the flags:
    the runtime kernels are the same in every export, so they compile once per machine."""
    hdrs = hashlib.sha256()
    for f in sorted(include_dir.glob("*.h")):
        hdrs.update(f.name.encode())
        hdrs.update(f.read_bytes())
    objs = []
    for src in srcs:
        h = hashlib.sha256(" ".join([cc] + flags).encode())
        h.update(hdrs.digest())
        h.update(src.read_bytes())
        obj = cache_dir() / f"{src.stem}_{h.hexdigest()[:20]}.o"
        if not obj.exists():
            tmp = obj.with_suffix(f".{os.getpid()}.tmp")
            cmd = [cc, *flags, "-fPIC", "-I", str(include_dir), "-c", "-o", str(tmp), str(src)]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise BuildError(f"compiling {src} failed:\n{' '.join(cmd)}\n{r.stderr.strip()}")
            os.replace(tmp, obj)
        objs.append(obj)
    return objs


def build_shared(out_dir, sanitize: bool = False, extra_flags=()) -> Path:
    out_dir = Path(out_dir)
    manifest = read_manifest(out_dir)
    srcs = _sources(out_dir, manifest)
    cc = find_cc()
    flags = HOST_CFLAGS + _host_fma_flag() + (SANITIZE_FLAGS if sanitize else []) + list(extra_flags)
    objs = _compile_objects(cc, flags, srcs, out_dir)
    h = hashlib.sha256(" ".join(map(str, objs)).encode())
    so = cache_dir() / f"tt_{h.hexdigest()[:20]}.so"
    if so.exists():
        return so
    tmp = so.with_suffix(f".{os.getpid()}.tmp")
    cmd = [cc, *flags, "-fPIC", "-shared", "-Wl,-Bsymbolic", "-o", str(tmp), *map(str, objs), "-lm"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise BuildError(f"linking {out_dir} failed:\n{' '.join(cmd)}\n{r.stderr.strip()}")
    os.replace(tmp, so)
    return so


def _cdef(manifest) -> str:
    label = "const int32_t *" if manifest["label_dtype"] == "i32" else "const float *"
    return f"""
    typedef int tt_status;
    typedef struct {{ uint32_t step; uint32_t samples; uint32_t nonfinite; }} tt_ctx;
    tt_status tt_init(tt_ctx *ctx);
    tt_status tt_infer(tt_ctx *ctx, const float *x, float *y);
    tt_status tt_train_step(tt_ctx *ctx, const float *x, {label} label, float *loss);
    tt_status tt_get_params(float *dst, size_t n);
    tt_status tt_set_params(const float *src, size_t n);
    size_t tt_param_size(size_t index);
    tt_status tt_param_read(size_t index, float *dst, size_t n);
    tt_status tt_param_write(size_t index, const float *src, size_t n);
    tt_status tt_checkpoint_save(const tt_ctx *ctx, uint8_t *buf, size_t cap, size_t *written);
    tt_status tt_checkpoint_load(tt_ctx *ctx, const uint8_t *buf, size_t len);
    const char *tt_status_str(tt_status s);
    """ + (FIXED_CDEF if manifest.get("precision") in ("int8", "int16") else "")


FIXED_CDEF = """
    tt_status tt_param_read_raw(size_t index, void *dst, size_t nbytes);
    tt_status tt_saturations(uint32_t *dst, size_t n);
"""
_RAW_DTYPES = {"i8": np.int8, "i16": np.int16, "i32": np.int32, "i64": np.int64}


class HostModel:
    """The compiled C model. Arrays in, arrays out; one sample at a time inside."""

    def __init__(self, out_dir, extra_flags=()):
        import cffi
        self.out_dir = Path(out_dir)
        self.manifest = read_manifest(self.out_dir)
        self.so_path = build_shared(self.out_dir, extra_flags=extra_flags)
        self.ffi = cffi.FFI()
        self.ffi.cdef(_cdef(self.manifest))
        self.lib = self.ffi.dlopen(str(self.so_path))
        self.ctx = self.ffi.new("tt_ctx *")
        self.in_shape = tuple(self.manifest["input"]["shape"][1:])
        self.out_shape = tuple(self.manifest["output"]["shape"][1:])
        self.in_size = int(np.prod(self.in_shape))
        self.out_size = int(np.prod(self.out_shape))
        self._check(self.lib.tt_init(self.ctx), "tt_init")

    # ---- helpers ----------------------------------------------------------------------------
    def _status(self, s) -> str:
        return self.ffi.string(self.lib.tt_status_str(s)).decode()

    def _check(self, s, what):
        if s != 0:
            raise TinytrainError(f"{what} failed: {self._status(s)}")

    def _batch(self, x) -> np.ndarray:
        a = np.asarray(x, dtype=np.float32)
        if a.shape == self.in_shape:
            a = a[None]
        if tuple(a.shape[1:]) != self.in_shape:
            raise ShapeError(f"input must have shape {self.in_shape} or (batch, "
                             f"{', '.join(map(str, self.in_shape))}), got {np.shape(x)}")
        return np.ascontiguousarray(a.reshape(a.shape[0], -1))

    def _ptr(self, a, ctype="float *"):
        return self.ffi.cast(ctype, self.ffi.from_buffer(a))

    # ---- API -------------------------------------------------------------------------------
    @property
    def step(self) -> int:
        return int(self.ctx.step)

    def reset(self):
        self._check(self.lib.tt_init(self.ctx), "tt_init")

    def infer(self, x) -> np.ndarray:
        xb = self._batch(x)
        y = np.empty((xb.shape[0], self.out_size), np.float32)
        for i in range(xb.shape[0]):
            self._check(self.lib.tt_infer(self.ctx, self._ptr(xb[i]), self._ptr(y[i])), "tt_infer")
        return y.reshape((xb.shape[0],) + self.out_shape)

    def train_step(self, x, y) -> float:
        """Train on one sample or a batch of samples (each goes through tt_train_step; the
        optimizer steps every `batch` samples as exported). Returns the mean loss."""
        if not self.manifest.get("training", True):
            raise TinytrainError(f"{self.out_dir} was exported for inference only (nothing "
                                 "trainable); export again with --trainable")
        xb = self._batch(x)
        n = xb.shape[0]
        if self.manifest["label_dtype"] == "i32":
            lab = np.ascontiguousarray(np.asarray(y).astype(np.int32).reshape(-1))
            if lab.shape[0] != n:
                raise ShapeError(f"got {lab.shape[0]} labels for {n} samples")
            ncls = self.out_size
            if lab.min() < 0 or lab.max() >= ncls:
                raise ShapeError(f"labels must be class indices in [0, {ncls}), got "
                                 f"min {lab.min()} max {lab.max()}")
            lab_rows = [lab[i:i + 1] for i in range(n)]
            ctype = "int32_t *"
        else:
            t = np.asarray(y, np.float32).reshape(n, -1)
            if t.shape[1] != self.out_size:
                raise ShapeError(f"targets must have {self.out_size} values per sample")
            lab_rows = [np.ascontiguousarray(t[i]) for i in range(n)]
            ctype = "float *"
        loss = self.ffi.new("float *")
        total = 0.0
        for i in range(n):
            s = self.lib.tt_train_step(self.ctx, self._ptr(xb[i]), self._ptr(lab_rows[i], ctype), loss)
            if s != 0:
                name = self._status(s)
                if s == TT_ERR_NAN:
                    raise NumericFaultError(
                        f"sample {i} of optimizer step {self.step}: the loss or a gradient is "
                        "NaN/Inf; the batch was discarded and the weights are the last good "
                        "ones. Lower the learning rate or check the data.")
                raise TinytrainError(f"tt_train_step failed: {name}")
            total += float(loss[0])
        return total / n

    @property
    def params(self) -> dict[str, np.ndarray]:
        out = {}
        for i, p in enumerate(self.manifest["params"]):
            a = np.empty(p["size"], np.float32)
            self._check(self.lib.tt_param_read(i, self._ptr(a), a.size), "tt_param_read")
            out[p["name"]] = a.reshape(p["shape"])
        return out

    @property
    def raw_params(self) -> dict[str, np.ndarray]:
        """Fixed-point exports: the integer storage of every parameter."""
        self._need_fixed()
        out = {}
        for i, p in enumerate(self.manifest["params"]):
            a = np.empty(p["size"], _RAW_DTYPES[p["dtype"]])
            self._check(self.lib.tt_param_read_raw(i, self._ptr(a, "void *"), a.nbytes),
                        "tt_param_read_raw")
            out[p["name"]] = a.reshape(p["shape"])
        return out

    @property
    def saturations(self) -> dict[str, int]:
        """Fixed-point exports: values clamped to their storage range since reset, by site."""
        self._need_fixed()
        names = self.manifest["saturation_counters"]
        a = np.zeros(max(len(names), 1), np.uint32)
        self._check(self.lib.tt_saturations(self._ptr(a, "uint32_t *"), a.size), "tt_saturations")
        return {n: int(v) for n, v in zip(names, a)}

    def _need_fixed(self):
        if self.manifest.get("precision") not in ("int8", "int16"):
            raise TinytrainError(f"{self.out_dir} is a {self.manifest.get('precision', 'fp32')} "
                                 "export; raw integer parameters and saturation counters exist "
                                 "only for int8 / int16 exports")

    def set_params(self, values: dict):
        for i, p in enumerate(self.manifest["params"]):
            if p["name"] not in values:
                continue
            a = np.ascontiguousarray(np.asarray(values[p["name"]], np.float32).reshape(-1))
            if a.size != p["size"]:
                raise ShapeError(f"parameter {p['name']!r} needs {p['size']} values, got {a.size}")
            if not p["trainable"]:
                raise TinytrainError(f"parameter {p['name']!r} is frozen (flash); it cannot be set")
            self._check(self.lib.tt_param_write(i, self._ptr(a), a.size), "tt_param_write")

    def save_checkpoint(self, path):
        buf = np.zeros(self.manifest["checkpoint_bytes"], np.uint8)
        n = self.ffi.new("size_t *")
        self._check(self.lib.tt_checkpoint_save(self.ctx, self._ptr(buf, "uint8_t *"), buf.size, n),
                    "tt_checkpoint_save")
        Path(path).write_bytes(buf[: n[0]].tobytes())

    def load_checkpoint(self, path):
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror}") from None
        buf = np.frombuffer(data, np.uint8).copy()
        if buf.size == 0:
            raise CheckpointError(f"checkpoint {path} is empty")
        s = self.lib.tt_checkpoint_load(self.ctx, self._ptr(buf, "uint8_t *"), buf.size)
        if s != 0:
            name = self._status(s)
            why = {TT_ERR_CHECKPOINT_CRC: "its CRC32 does not match: the file is corrupt",
                   TT_ERR_CHECKPOINT_SIZE: f"its size or header does not match this model "
                   f"(expected {self.manifest['checkpoint_bytes']} bytes, got {buf.size}); it is "
                   "truncated or belongs to another model"}.get(s, name)
            raise CheckpointError(f"checkpoint {path} refused: {why}. The model is unchanged.")


_SANITIZE_MAIN = r"""
/* Sanitizer harness: train and infer on deterministic pseudo-random data. */
#include <stdio.h>
#include <stdlib.h>
#include "tt_model.h"

static uint32_t lcg(uint32_t *s) { *s = *s * 1664525u + 1013904223u; return *s >> 8; }

int main(int argc, char **argv)
{
    static float x[TT_INPUT_SIZE], y[TT_OUTPUT_SIZE];
    static uint8_t ck[TT_CHECKPOINT_BYTES];
    tt_ctx ctx;
    uint32_t seed = 1;
    int steps = argc > 1 ? atoi(argv[1]) : 20, i;
    size_t k, n = 0;
    float loss = 0.0f;
    if (tt_init(&ctx) != TT_OK) return 3;
    for (i = 0; i < steps; ++i) {
#ifdef TT_NUM_CLASSES
        int32_t label = (int32_t)(lcg(&seed) % TT_NUM_CLASSES);
#else
        static float label[TT_TARGET_SIZE];
        for (k = 0; k < TT_TARGET_SIZE; ++k) label[k] = (float)(lcg(&seed) % 1000) / 1000.0f;
#endif
        for (k = 0; k < TT_INPUT_SIZE; ++k) x[k] = (float)(lcg(&seed) % 2000) / 1000.0f - 1.0f;
#ifdef TT_NUM_CLASSES
        if (tt_train_step(&ctx, x, &label, &loss) != TT_OK) return 4;
#else
        if (tt_train_step(&ctx, x, label, &loss) != TT_OK) return 4;
#endif
    }
    if (tt_checkpoint_save(&ctx, ck, sizeof ck, &n) != TT_OK) return 5;
    if (tt_checkpoint_load(&ctx, ck, n) != TT_OK) return 6;
    if (tt_infer(&ctx, x, y) != TT_OK) return 7;
    printf("ok %d steps, loss %g\n", steps, (double)loss);
    return 0;
}
"""


def run_sanitized(out_dir, steps: int = 20, timeout: float = 300) -> str:
    """Build the exported project with ASan + UBSan into an executable and train `steps`
    samples on pseudo-random data. Returns its output; raises BuildError on any report."""
    out_dir = Path(out_dir)
    manifest = read_manifest(out_dir)
    srcs = _sources(out_dir, manifest)
    cc = find_cc()
    with tempfile.TemporaryDirectory(prefix="tt_asan_") as tmp:
        main = Path(tmp) / "tt_sanitize_main.c"
        main.write_text(_SANITIZE_MAIN)
        exe = Path(tmp) / "tt_sanitize"
        cmd = [cc, *HOST_CFLAGS, *SANITIZE_FLAGS, "-I", str(out_dir), "-o", str(exe),
               *map(str, srcs), str(main), "-lm"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise BuildError(f"sanitizer build of {out_dir} failed:\n{r.stderr.strip()}")
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0",
                   UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
        r = subprocess.run([str(exe), str(steps)], capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL, env=env)
        if r.returncode != 0 or "runtime error" in r.stderr or "Sanitizer" in r.stderr:
            raise BuildError(f"sanitizer run of {out_dir} failed (exit {r.returncode}):\n"
                             f"{r.stdout}\n{r.stderr}")
        return r.stdout
