"""Build hygiene of the numerics C: cross compilers (Cortex-M4F, RV32 without and with F) with
-Werror and no libm calls; headers usable from C and C++; the kernel tests re-run under
AddressSanitizer + UndefinedBehaviorSanitizer (signed overflow, shifts, out-of-bounds)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import (EXTRA_WARNINGS, INCLUDE, SANITIZE_FLAGS, STRICT_FLAGS, host_cc,
                      numerics_sources)

HERE = Path(__file__).resolve().parent
OURS = [p for p in numerics_sources() if p.name != "tt_util.c"]

CROSS = {
    "cortex-m4f": ("arm-none-eabi-", ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard",
                                      "-mfpu=fpv4-sp-d16"]),
    "rv32imac": ("riscv64-unknown-elf-", ["-march=rv32imac", "-mabi=ilp32",
                                          "--specs=picolibc.specs"]),
    "rv32imafc": ("riscv64-unknown-elf-", ["-march=rv32imafc", "-mabi=ilp32f",
                                           "--specs=picolibc.specs"]),
}


@pytest.mark.parametrize("target", list(CROSS))
def test_cross_compiles_with_werror(tmp_path, target):
    prefix, flags = CROSS[target]
    cc = prefix + "gcc"
    if shutil.which(cc) is None:
        pytest.skip(f"{cc} not installed")
    objs = []
    for src in OURS:
        obj = tmp_path / (src.stem + ".o")
        cmd = [cc, *STRICT_FLAGS, *EXTRA_WARNINGS, *flags, f"-I{INCLUDE}", "-c", str(src),
               "-o", str(obj)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stderr}"
        objs.append(obj)
    nm = shutil.which(prefix + "nm")
    if nm is None:
        return
    undefined = set(subprocess.run([nm, "-u", *map(str, objs)], capture_output=True, text=True,
                                   check=True).stdout.split()) - {"U"}
    undefined = {u for u in undefined if not u.endswith(":") and u}
    # only our own functions, compiler-runtime helpers (__aeabi_*, __divdi3, soft float)
    # and memset / memcpy: no libm, so every target computes the same bits
    foreign = {u for u in undefined
               if not (u.startswith("tt_") or u.startswith("__") or u in ("memset", "memcpy"))}
    assert not foreign, f"{target}: unexpected external symbols {sorted(foreign)}"


def test_template_files_instantiate_every_declared_kernel(tmp_path):
    """Every _q8 / _q16 / _f16 name in the headers is defined (the self-including template
    files make that easy to get wrong)."""
    import re
    cc = host_cc()
    objs = []
    for src in OURS:
        obj = tmp_path / (src.stem + ".o")
        subprocess.run([cc, *STRICT_FLAGS, f"-I{INCLUDE}", "-c", str(src), "-o", str(obj)],
                       check=True)
        objs.append(str(obj))
    defined = set(subprocess.run(["nm", "--defined-only", *objs], capture_output=True,
                                 text=True, check=True).stdout.split())
    # this directory's conftest by path: a bare `import conftest` may find another directory's
    import importlib.util
    spec = importlib.util.spec_from_file_location("numerics_conftest",
                                                  Path(__file__).with_name("conftest.py"))
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)

    def names(headers):
        saved = conftest.HEADERS
        conftest.HEADERS = headers
        try:
            return set(re.findall(r"\b(tt_\w+)\s*\(", conftest.cdef_source(cc)))
        finally:
            conftest.HEADERS = saved
    declared = names(conftest.HEADERS) - names(["tt_status.h", "tt_kernels.h"])
    missing = sorted(d for d in declared if d not in defined and not d.endswith("_inl"))
    assert not missing, missing


def test_headers_compile_as_c_and_cplusplus(tmp_path):
    cc = host_cc()
    a, main = tmp_path / "a.c", tmp_path / "main.c"
    inc = "".join(f'#include "{h}"\n' for h in ("tt_qkernels.h", "tt_fp16.h", "tt_fixed.h",
                                                   "tt_prng.h", "tt_qkernels.h", "tt_fp16.h"))
    a.write_text(inc + "int tu_a(void);\nint tu_a(void) { return (int)tt_f32_to_f16_inl(1.0f); }\n")
    main.write_text(inc + "int tu_a(void);\nint main(void) { return tu_a() == 0x3C00 && "
                    "tt_mbqm(3, 1 << 30, 0) == 2 ? 0 : 1; }\n")
    r = subprocess.run([cc, *STRICT_FLAGS, *EXTRA_WARNINGS, f"-I{INCLUDE}", str(a), str(main),
                        "-o", str(tmp_path / "t")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert subprocess.run([str(tmp_path / "t")]).returncode == 0
    cxx = shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    cpp = tmp_path / "t.cpp"
    cpp.write_text(inc + "int f(const int8_t *x, int8_t *y) { return (int)tt_relu_fwd_q8(x, y, 1); }\n")
    r = subprocess.run([cxx, "-std=c++11", "-Wall", "-Wextra", "-Werror", "-pedantic",
                        f"-I{INCLUDE}", "-fsyntax-only", str(cpp)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_every_runtime_header_together(tmp_path):
    """Our headers next to every other runtime_c header in one translation unit, in both
    orders (e.g. tt_zo.h shares the TT_ZO_* distribution macros with tt_qkernels.h)."""
    cc = host_cc()
    names = sorted(p.name for p in INCLUDE.glob("*.h"))
    for order in (names, names[::-1]):
        src = tmp_path / "all.c"
        src.write_text("".join(f'#include "{n}"\n' for n in order) +
                       "int tt_all_headers(void);\nint tt_all_headers(void) { return 0; }\n")
        r = subprocess.run([cc, *STRICT_FLAGS, *EXTRA_WARNINGS, f"-I{INCLUDE}", "-c", str(src),
                            "-o", str(tmp_path / "all.o")], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr


def _sanitizer_ok(cc):
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        c = Path(d) / "t.c"
        c.write_text("int main(void) { return 0; }\n")
        r = subprocess.run([cc, *SANITIZE_FLAGS, str(c), "-o", str(Path(d) / "t")],
                           capture_output=True)
        return r.returncode == 0 and subprocess.run([str(Path(d) / "t")]).returncode == 0


@pytest.mark.skipif(os.environ.get("TT_NUM_SANITIZE") == "1", reason="already the sanitizer run")
def test_kernels_under_asan_and_ubsan():
    cc = host_cc()
    if shutil.which(cc) is None or not _sanitizer_ok(cc):
        pytest.skip("address/undefined sanitizer runtime not available")
    libasan = subprocess.run([cc, "-print-file-name=libasan.so"], capture_output=True,
                             text=True).stdout.strip()
    if not os.path.isabs(libasan) or not os.path.exists(libasan):
        pytest.skip("libasan.so not found (needed to preload into python)")
    env = dict(os.environ, TT_NUM_SANITIZE="1", LD_PRELOAD=libasan,
               ASAN_OPTIONS="detect_leaks=0:abort_on_error=1",
               UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1")
    cmd = [sys.executable, "-m", "pytest", "-o", "addopts=", "-q", "-x", "-s", "-p",
           "no:cacheprovider", str(HERE / "test_qkernels.py"), str(HERE / "test_fp16_kernels.py"),
           str(HERE / "test_fixed.py"), str(HERE / "test_qact.py"), str(HERE / "test_qjvp.py"),
           "-k",
           "not test_fixed or requant_arrays or grad_quant or rescale or requant_float"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600,
                       cwd=str(HERE.parents[1]))
    tail = (r.stdout + r.stderr)[-6000:]
    assert r.returncode == 0, tail
    assert " passed" in r.stdout, tail

