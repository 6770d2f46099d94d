"""MACs per retired instruction on the emulated cores (a benchmark, run on request):

    TT_RT_BENCH=1 python -m pytest tests/runtime_c/test_rt_bench.py -s

prints a table for qemu-rv32imafc and qemu-cortex-m4 and, on RV32IMAFC, checks the DESIGN.md
section 8 target: at least 1.5x the MAC/instruction of the best PULP-TrainLib variant for each
layer type and pass (Linear fwd 0.22, weight-grad 0.17, input-grad 0.28; Conv2D 3x3 pad 1 fwd
0.22, weight-grad 0.23, input-grad 0.22; depthwise 3x3 0.14; pointwise 0.32)."""
import os
from pathlib import Path

import pytest

from tt_rt_build import INCLUDE, ROOT, kernel_sources

HERE = Path(__file__).resolve().parent
pytestmark = pytest.mark.skipif(os.environ.get("TT_RT_BENCH") != "1",
                                reason="benchmark: set TT_RT_BENCH=1")

PULP_BEST = {  # (layer prefix, pass) -> best PULP-TrainLib MAC/instruction
    ("linear", "fwd"): 0.22, ("linear", "bwd_w"): 0.17, ("linear", "bwd_w_acc"): 0.17,
    ("linear", "bwd_x"): 0.28,
    ("conv3x3_", "fwd"): 0.22, ("conv3x3_", "bwd_w"): 0.23, ("conv3x3_", "bwd_w_acc"): 0.23,
    ("conv3x3_", "bwd_x"): 0.22,
    ("dw3x3_", "fwd"): 0.14, ("dw3x3_", "bwd_x"): 0.14, ("dw3x3_", "bwd_w"): 0.14,
    ("dw3x3_", "bwd_w_acc"): 0.14,
    ("pw_", "fwd"): 0.32, ("pw_", "bwd_x"): 0.32, ("pw_", "bwd_w"): 0.32, ("pw_", "bwd_w_acc"): 0.32,
}

BOARDS = {"qemu-rv32imafc": "TT_INSTRET_RDINSTRET", "qemu-cortex-m4": "TT_INSTRET_MPS2_FPGAIO"}


@pytest.mark.parametrize("board", list(BOARDS))
def test_mac_per_instruction(tmp_path, board):
    from tinytrain.boards import load_board
    from tinytrain.sim.cross import cross_compile, toolchain_available
    from tinytrain.sim.qemu import qemu_available, run_qemu
    b = load_board(board)
    if not toolchain_available(b) or not qemu_available(b):
        pytest.skip(f"toolchain or QEMU for {board} missing")
    elf = cross_compile(b, [HERE / "kernel_bench_main.c", *kernel_sources()],
                        [INCLUDE, ROOT / "boards" / "common"], tmp_path, defines=[BOARDS[board]],
                        name="kernel_bench")
    r = run_qemu(b, elf, timeout_s=120)
    assert r.exit_code == 0, r.stdout
    misses = []
    print(f"\n{board}: MAC per instruction")
    for line in r.stdout.splitlines():
        layer, pas, macs, instr = line.split()
        ratio = int(macs) / int(instr)
        target = next((1.5 * v for (pre, p), v in PULP_BEST.items()
                       if layer.startswith(pre) and p == pas), None)
        print(f"  {layer:28s} {pas:10s} {ratio:5.3f}" + (f"  (target {target:.3f})" if target else ""))
        if target and board == "qemu-rv32imafc" and ratio < target:
            misses.append(f"{layer} {pas}: {ratio:.3f} < {target:.3f}")
    assert not misses, "\n".join(misses)
