"""tt_instret_now() on the emulated boards: monotone, and a loop of N iterations of a
2-instruction body costs 2*N instructions (+ a constant measuring overhead).

RISC-V (rdinstret, -icount shift=0): exact.
Cortex-M (MPS2 FPGAIO counter, -icount shift=7): the 25 MHz counter advances 3.2 ticks per
instruction, so instructions = ticks * 5 / 16; the slope must be 2 within the +-1
instruction quantisation of the conversion, and the tick/instruction ratio 3.2.
"""

from __future__ import annotations

import re

import pytest

from tt_boards_testlib import C_DIR, EMULATED_BOARDS, require_qemu
from tinytrain.sim.cross import cross_compile
from tinytrain.sim.qemu import run_qemu

pytestmark = pytest.mark.qemu


def _measure(name, build_root):
    board = require_qemu(name)
    elf = cross_compile(board, [C_DIR / "instret_loop.c"], [], build_root / name / "instret", [])
    out = run_qemu(board, elf, timeout_s=20).stdout
    rows = [tuple(map(int, m)) for m in re.findall(r"n (\d+) delta (\d+) ticks (\d+)", out)]
    assert len(rows) == 7, out
    return board, out, rows


@pytest.mark.parametrize("name", EMULATED_BOARDS)
def test_instruction_counter_is_linear_in_loop_length(name, build_root):
    board, out, rows = _measure(name, build_root)
    assert out.startswith(f"unit {board.instret.unit}\n")
    deltas = [d for _n, d, _t in rows]
    assert deltas == sorted(deltas) and deltas[0] > 0
    overhead = rows[0][1] - 2 * rows[0][0]
    assert 0 < overhead < 40
    # rdinstret is exact. The MPS2 counter converts ticks to instructions with +-1 rounding,
    # and both the overhead (first row) and each delta carry it: they can differ by 2.
    tolerance = 0 if board.instret.method == "rdinstret" else 2
    for n, delta, _ticks in rows:
        assert abs(delta - (2 * n + overhead)) <= tolerance, (n, delta, overhead)
    if board.instret.method == "mps2_fpgaio":
        # Raw 25 MHz ticks per loop instruction, from the difference of the two longest
        # runs (1,800,000 instructions apart), which cancels the measuring overhead.
        (n0, _d0, t0), (n1, _d1, t1) = rows[-2], rows[-1]
        ratio = (t1 - t0) / (2 * (n1 - n0))
        assert ratio == pytest.approx(board.instret.ticks_per_instruction, abs=2e-6)
        print(f"\n{name}: {t1 - t0} ticks / {2 * (n1 - n0)} instructions = {ratio:.7f} ticks per instruction")
