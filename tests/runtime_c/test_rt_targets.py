"""Host, Cortex-M4F and RV32IMAFC compute the same bits: bitexact_main.c runs a set of kernels
on fixed inputs and prints a CRC-32 per result; the host build and the two emulated builds
(QEMU, through tinytrain.sim) must print the same lines."""
import os
import subprocess
from pathlib import Path

import pytest

from tt_rt_build import INCLUDE, STRICT_FLAGS, host_cc, host_fma_flags, kernel_sources

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "bitexact_main.c"
pytestmark = pytest.mark.skipif(os.environ.get("TT_RT_SANITIZE") == "1",
                                reason="cross builds are not affected by the sanitizer run")


@pytest.fixture(scope="module")
def host_lines(tmp_path_factory):
    exe = tmp_path_factory.mktemp("bitexact") / "bitexact"
    cmd = [host_cc(), *STRICT_FLAGS, *host_fma_flags(), f"-I{INCLUDE}", str(DRIVER),
           *map(str, kernel_sources()), "-o", str(exe), "-lm"]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout
    lines = out.stdout.splitlines()
    assert len(lines) > 40 and all(len(ln.split()) == 2 for ln in lines)
    return lines


@pytest.mark.parametrize("board", ["qemu-cortex-m4", "qemu-rv32imafc"])
def test_emulated_targets_match_host_bit_for_bit(tmp_path, host_lines, board):
    try:
        from tinytrain.boards import load_board
        from tinytrain.sim.cross import ToolchainMissingError, cross_compile, toolchain_available
        from tinytrain.sim.qemu import qemu_available, run_qemu
    except ImportError as e:  # pragma: no cover
        pytest.skip(f"tinytrain.sim not importable: {e}")
    b = load_board(board)
    if not toolchain_available(b) or not qemu_available(b):
        pytest.skip(f"cross toolchain or QEMU for {board} not installed")
    try:
        elf = cross_compile(b, [DRIVER, *kernel_sources()], [INCLUDE], tmp_path, name="bitexact")
    except ToolchainMissingError as e:
        pytest.skip(str(e))
    r = run_qemu(b, elf, timeout_s=60)
    assert r.exit_code == 0, r.stdout
    got = r.stdout.splitlines()
    assert got == host_lines, "\n".join(
        f"{h:40s} | {g}" for h, g in zip(host_lines, got) if h != g) or "line count differs"
