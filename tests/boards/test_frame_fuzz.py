"""Fuzz the C frame parser under AddressSanitizer + UndefinedBehaviorSanitizer.

The parser is compiled with -fsanitize=address,undefined into a cffi module; a separate
Python process (with the ASan runtime preloaded) drives thousands of random and mutated
frames through it with hypothesis (frame_fuzz_driver.py). Any overrun of the receive
buffer, any UB, or any crash aborts that process and fails this test.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import tt_cffi_build

HERE = Path(__file__).resolve().parent
FUZZ_EXAMPLES = 600  # x 16 inputs each (frame_fuzz_driver.INPUTS_PER_EXAMPLE)
SAN_FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-O1", "-g"]


def _runtime(cc: str, name: str) -> str | None:
    out = subprocess.run([cc, f"-print-file-name={name}"], capture_output=True, text=True).stdout.strip()
    return out if out and os.path.isabs(out) and os.path.exists(out) else None


def test_parser_survives_fuzzing_under_sanitizers(tmp_path):
    cc = shutil.which("gcc")
    if cc is None:
        pytest.skip("gcc not installed")
    libasan = _runtime(cc, "libasan.so")
    if libasan is None:
        pytest.skip("libasan not available for gcc")
    try:
        # Not imported here: an ASan module can only load into a process that starts with
        # the ASan runtime.
        so_path = tt_cffi_build.build_frame(
            tmp_path / "san", extra_compile_args=SAN_FLAGS, extra_link_args=SAN_FLAGS[:1], import_it=False
        )
    except Exception as e:  # pragma: no cover - environment problem, not a parser bug
        pytest.skip(f"cannot build the sanitizer module: {e}")
    env = dict(os.environ)
    env["LD_PRELOAD"] = libasan
    env["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=1:allocator_may_return_null=1"
    env["UBSAN_OPTIONS"] = "halt_on_error=1:print_stacktrace=1"
    proc = subprocess.run(
        [sys.executable, str(HERE / "frame_fuzz_driver.py"), str(so_path), str(FUZZ_EXAMPLES)],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, (
        f"fuzz driver failed (rc={proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    )
    assert "ERROR: AddressSanitizer" not in proc.stderr and "runtime error" not in proc.stderr, proc.stderr[-4000:]
    m = re.search(r"FUZZ-STATS inputs=(\d+) bytes=(\d+) ready=(\d+) rejected=(\d+)", proc.stdout)
    assert m, proc.stdout
    inputs, nbytes, ready, rejected = map(int, m.groups())
    print(f"\nframe parser fuzz: {inputs} inputs, {nbytes} bytes, {ready} frames accepted, {rejected} rejected")
    assert inputs >= FUZZ_EXAMPLES * 16 * 0.9
    assert ready > 0 and rejected > 0
