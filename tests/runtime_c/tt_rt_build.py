"""Build helpers for the runtime_c kernel tests (imported by conftest.py and test_rt_build.py;
a plain module so it is never confused with another directory's conftest)."""
from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RT_DIR = ROOT / "runtime_c"
INCLUDE = RT_DIR / "include"
SRC = RT_DIR / "src"
HEADERS = [INCLUDE / "tt_status.h", INCLUDE / "tt_kernels.h"]

STRICT_FLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic", "-ffp-contract=off"]
EXTRA_WARNINGS = ["-Wshadow", "-Wmissing-prototypes", "-Wstrict-prototypes", "-Wundef",
                  "-Wcast-qual", "-Wpointer-arith"]
SANITIZE_FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                  "-fno-omit-frame-pointer", "-g"]

SANITIZE = os.environ.get("TT_RT_SANITIZE") == "1"
SMALL = SANITIZE  # smaller parameter grids under the sanitizers


def kernel_sources() -> list[Path]:
    """The FP32 kernel library as an fp32 export ships it: every tt_*_f32.c, tt_util.c and
    tt_prng.c (the forward-gradient kernels draw from it)."""
    return sorted(SRC.glob("tt_*_f32.c")) + [SRC / "tt_util.c", SRC / "tt_prng.c"]


def host_cc() -> str:
    return os.environ.get("CC", "cc")


def host_fma_flags() -> list[str]:
    """-mfma on x86 hosts that have it, so fmaf is one instruction (results are identical
    either way: fmaf is correctly rounded in hardware and in libm)."""
    if platform.machine() not in ("x86_64", "AMD64", "i686", "i386"):
        return []
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    return ["-mfma"] if re.search(r"^flags\s*:.*\bfma\b", flags, re.M) else []


def sanitizer_available(cc: str | None = None) -> bool:
    """True when cc can build and run an address+undefined sanitized program."""
    cc = cc or host_cc()
    if shutil.which(cc) is None:
        return False
    with tempfile.TemporaryDirectory() as d:
        c = Path(d) / "t.c"
        c.write_text("int main(void) { return 0; }\n")
        exe = Path(d) / "t"
        r = subprocess.run([cc, *SANITIZE_FLAGS, str(c), "-o", str(exe)], capture_output=True)
        if r.returncode != 0:
            return False
        return subprocess.run([str(exe)], capture_output=True).returncode == 0


def cdef_source(cc: str | None = None) -> str:
    """The declarations of tt_status.h + tt_kernels.h in a form cffi parses: system includes
    dropped, macros (the status X-macro) expanded by the C preprocessor, restrict removed."""
    cc = cc or host_cc()
    text = []
    for h in HEADERS:
        for line in h.read_text().splitlines():
            if re.match(r"\s*#\s*include\b", line):
                continue
            text.append(line)
    r = subprocess.run([cc, "-E", "-P", "-std=c99", "-x", "c", "-"], input="\n".join(text),
                       capture_output=True, text=True, check=True)
    out = re.sub(r"\brestrict\b", "", r.stdout)
    return out


def build_shared(out_dir: Path, extra_flags=(), cc: str | None = None) -> Path:
    """Compile the kernel library into out_dir/libtt_kernels_<hash>.so and return its path."""
    cc = cc or host_cc()
    srcs = kernel_sources()
    flags = ["-shared", "-fPIC", *STRICT_FLAGS, *EXTRA_WARNINGS, *host_fma_flags(), *extra_flags,
             f"-I{INCLUDE}"]
    h = hashlib.sha256(" ".join([cc, *flags]).encode())
    for p in srcs + HEADERS:
        h.update(p.read_bytes())
    lib = out_dir / f"libtt_kernels_{h.hexdigest()[:12]}.so"
    if not lib.exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=lib.stem + ".", dir=out_dir))
        try:
            def compile_one(src: Path) -> Path:
                obj = tmp / (src.stem + ".o")
                cmd = [cc, *flags[1:], "-c", str(src), "-o", str(obj)]  # flags[0] = -shared
                r = subprocess.run(cmd, capture_output=True, text=True)
                if r.returncode != 0:
                    raise RuntimeError(f"build failed:\n{' '.join(cmd)}\n{r.stdout}{r.stderr}")
                return obj

            # one compiler per source, in parallel: the sanitizer build of tt_conv_f32.c alone
            # takes seconds
            with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
                objs = list(pool.map(compile_one, srcs))
            so = tmp / lib.name
            cmd = [cc, *flags, *map(str, objs), "-o", str(so), "-lm"]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"link failed:\n{' '.join(cmd)}\n{r.stdout}{r.stderr}")
            os.replace(so, lib)  # atomic: concurrent test sessions may share the cache
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return lib


