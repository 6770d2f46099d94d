"""Build hygiene of the kernel library: cross compilers with -Werror, fmaf as an instruction,
header rules (guards, C++, no definitions), and the whole runtime_c test directory re-run under
AddressSanitizer + UndefinedBehaviorSanitizer."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tt_rt_build import (EXTRA_WARNINGS, INCLUDE, STRICT_FLAGS, host_cc, kernel_sources,
                      sanitizer_available)

HERE = Path(__file__).resolve().parent

CROSS = {
    "cortex-m4f": ("arm-none-eabi-", ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard",
                                      "-mfpu=fpv4-sp-d16"]),
    "rv32imafc": ("riscv64-unknown-elf-", ["-march=rv32imafc", "-mabi=ilp32f",
                                           "--specs=picolibc.specs"]),
}


@pytest.mark.parametrize("target", list(CROSS))
def test_cross_compiles_with_werror_and_inline_fma(tmp_path, target):
    prefix, flags = CROSS[target]
    cc = prefix + "gcc"
    if shutil.which(cc) is None:
        pytest.skip(f"{cc} not installed")
    objs = []
    for src in kernel_sources():
        obj = tmp_path / (src.stem + ".o")
        cmd = [cc, *STRICT_FLAGS, *EXTRA_WARNINGS, *flags, f"-I{INCLUDE}", "-c", str(src),
               "-o", str(obj)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stderr}"
        objs.append(obj)
    nm = shutil.which(prefix + "nm")
    if nm is None:
        return
    undefined = subprocess.run([nm, "-u", *map(str, objs)], capture_output=True, text=True,
                               check=True).stdout.split()
    # fmaf must compile to vfma.f32 / fmadd.s (one instruction), never a libm call;
    # exp/log come from tt_math_f32.c, not libm.
    for fn in ("fmaf", "expf", "logf", "tanhf", "powf", "exp", "log"):
        assert fn not in undefined, f"{target}: call to {fn}()"


def test_headers_are_clean_c_and_cplusplus(tmp_path):
    cc = host_cc()
    a, b, main = tmp_path / "a.c", tmp_path / "b.c", tmp_path / "main.c"
    # included twice (guards) in two translation units linked together (no definitions)
    a.write_text('#include "tt_kernels.h"\n#include "tt_kernels.h"\n#include "tt_status.h"\n'
                 "int tu_a(void);\nint tu_a(void) { return (int)TT_ERR_NAN; }\n")
    b.write_text('#include "tt_status.h"\n#include "tt_kernels.h"\n'
                 "int tu_b(void);\nint tu_b(void) { return (int)TT_OK; }\n")
    main.write_text("int tu_a(void);\nint tu_b(void);\n"
                    "int main(void) { return tu_a() + tu_b() == 3 ? 0 : 1; }\n")
    r = subprocess.run([cc, *STRICT_FLAGS, *EXTRA_WARNINGS, f"-I{INCLUDE}", str(a), str(b),
                        str(main), "-o", str(tmp_path / "t")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert subprocess.run([str(tmp_path / "t")]).returncode == 0
    cxx = shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    cpp = tmp_path / "t.cpp"
    cpp.write_text('#include "tt_kernels.h"\n'
                   "static_assert(sizeof(tt_conv2d_params) == 13 * sizeof(int), \"layout\");\n"
                   "int f(const float *x, float *y) { return (int)tt_relu_fwd_f32(x, y, 1); }\n")
    r = subprocess.run([cxx, "-std=c++11", "-Wall", "-Wextra", "-Werror", "-pedantic",
                        f"-I{INCLUDE}", "-fsyntax-only", str(cpp)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.skipif(os.environ.get("TT_RT_SANITIZE") == "1", reason="already the sanitizer run")
def test_all_kernel_tests_pass_under_asan_and_ubsan():
    cc = host_cc()
    if not sanitizer_available(cc):
        pytest.skip("address/undefined sanitizer runtime not available")
    libasan = subprocess.run([cc, "-print-file-name=libasan.so"], capture_output=True, text=True)
    libasan = libasan.stdout.strip()
    if not os.path.isabs(libasan) or not os.path.exists(libasan):
        pytest.skip("libasan.so not found (needed to preload into python)")
    env = dict(os.environ, TT_RT_SANITIZE="1", LD_PRELOAD=libasan,
               ASAN_OPTIONS="detect_leaks=0:abort_on_error=1",
               UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1")
    # -s: a sanitizer report is printed by the process that then aborts, so pytest's capture
    # would swallow it
    cmd = [sys.executable, "-m", "pytest", "-o", "addopts=", "-q", "-x", "-s", "-p",
           "no:cacheprovider", str(HERE),
           "--ignore", str(HERE / "test_rt_build.py")]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300,
                       cwd=str(HERE.parents[1]))
    tail = (r.stdout + r.stderr)[-6000:]
    assert r.returncode == 0, tail
    assert " passed" in r.stdout, tail
