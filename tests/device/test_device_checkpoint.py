"""Power-safe checkpoints on the device: train with a two-slot checkpoint every k steps, cut
the power at many instruction counts (deterministic: an instruction budget checked before
every 8-byte flash unit and every step, under QEMU -icount), reboot on the flash image the
cut left, and check that the restored model is exactly one of the committed checkpoints (the
host simulator's checkpoint bytes at that step) and that training then finishes with the
same weights as an uninterrupted run."""
from __future__ import annotations

import random

import numpy as np
import pytest

from tinytrain.device import CUT_NEVER as NEVER
from tinytrain.device import build_firmware, run_checkpointed

from .devlib import adaptation_data, host_reference, require_qemu

pytestmark = pytest.mark.qemu

STEPS, EVERY, SAMPLES = 12, 3, 8
BOARDS = ("qemu-cortex-m4", "qemu-rv32imafc")


@pytest.fixture(scope="module")
def setup(projects):
    x, y = adaptation_data(SAMPLES)
    proj = projects.get("mlp", "adam")
    ref = host_reference(proj, x, y, STEPS, checkpoint_every=EVERY)
    return proj, x, y, ref


def _cut_points(full) -> list[int]:
    total = full.total_instret
    cuts = {total * k // 9 for k in range(1, 9)}
    for s in full.saves:
        d = s.end - s.start
        # Erase, payload, the 24-byte header in 3 units at the very end (the commit), after.
        cuts |= {s.start + 1, s.start + d // 2, s.end - 150, s.end - 40, s.end - 8, s.end + 2}
    return sorted(cuts)


def _expected(full, cut: int):
    """Steps a boot after a cut at `cut` may restore: the newest save finished before the
    cut, or the one in progress if the cut fell at its very end (±2 instructions: the Cortex-M
    counter converts 25 MHz ticks, so a reading can be one off)."""
    done = [s.step for s in full.saves if s.end <= cut - 2]
    allowed = {done[-1] if done else None}
    allowed |= {s.step for s in full.saves if s.start <= cut + 2 and s.end > cut - 2}
    return allowed


@pytest.mark.parametrize("board", BOARDS)
def test_power_cut_anywhere_restores_a_committed_checkpoint(board, setup, pool):
    require_qemu(board)
    proj, x, y, ref = setup
    img = build_firmware(proj, board, data=(x, y), steps=STEPS, mode="checkpoint", checkpoint_every=EVERY)
    full = run_checkpointed(img, cut_at=NEVER)
    assert not full.cut and full.restored is None
    assert [s.step for s in full.saves] == [3, 6, 9, 12]
    assert [s.sequence for s in full.saves] == [1, 2, 3, 4] and all(s.status == 0 for s in full.saves)
    assert np.array_equal(full.loss_bits, ref.loss_bits)
    assert full.final == ref.checkpoints[STEPS]

    def cut_and_reboot(cut):
        first = run_checkpointed(img, cut_at=cut)
        again = run_checkpointed(img, flash=first.flash, cut_at=NEVER)
        return cut, first, again

    results = list(pool.map(cut_and_reboot, _cut_points(full)))
    restored_steps = set()
    for cut, first, again in results:
        # The last check precedes the last flash unit of the last save: a budget running
        # out after it does not stop the run (which then simply completes).
        assert first.cut or cut > full.saves[-1].end - 1000, f"cut at {cut}: the run did not stop"
        step = again.restored_step
        assert step in _expected(full, cut), f"cut at {cut}: restored step {step}"
        if step is None:
            assert again.restored is None and again.first_sample == 0
        else:
            # Exactly the bytes the host simulator checkpointed at that step.
            assert again.restored == ref.checkpoints[step], f"cut at {cut}: restored blob differs"
            assert again.restored_sequence == step // EVERY
            assert again.first_sample == step
        restored_steps.add(step)
        # Resuming gives the uninterrupted run's losses and final state, bit for bit.
        s0 = again.first_sample
        assert np.array_equal(again.loss_bits, ref.loss_bits[s0:])
        assert again.final == ref.checkpoints[STEPS]
    # The cuts covered "nothing saved yet" and every committed checkpoint.
    assert restored_steps >= {None, 3, 6, 9}
    # A cut inside a save, before its header (the commit record) is written, never commits
    # it: the boot restores the previous checkpoint.
    inside = 0
    for cut, _first, again in results:
        for s in full.saves:
            if s.start < cut < s.end - 200:
                inside += 1
                assert again.restored_step == (s.step - EVERY or None), f"cut at {cut} inside save {s}"
    assert inside >= 2 * len(full.saves)


def test_cuts_are_deterministic(setup):
    board = require_qemu("qemu-cortex-m4")
    proj, x, y, _ref = setup
    img = build_firmware(proj, board, data=(x, y), steps=STEPS, mode="checkpoint", checkpoint_every=EVERY)
    full = run_checkpointed(img, cut_at=NEVER)
    cut = (full.saves[1].start + full.saves[1].end) // 2
    a = run_checkpointed(img, cut_at=cut)
    b = run_checkpointed(img, cut_at=cut)
    assert a.cut and b.cut and a.flash == b.flash and a.stdout == b.stdout


@pytest.mark.parametrize("board", BOARDS[:1])
def test_repeated_power_cuts_until_done(board, setup):
    """Cut, reboot, cut again (also during recovery), ... until training completes: the end
    state equals the uninterrupted one."""
    require_qemu(board)
    proj, x, y, ref = setup
    img = build_firmware(proj, board, data=(x, y), steps=STEPS, mode="checkpoint", checkpoint_every=EVERY)
    total = run_checkpointed(img, cut_at=NEVER).total_instret
    rng = random.Random(2024)
    flash = None
    cuts = 0
    for _ in range(40):
        boot = run_checkpointed(img, flash=flash, cut_at=rng.randrange(total // 6, total // 2))
        flash = boot.flash
        if boot.restored is not None:
            assert boot.restored == ref.checkpoints[boot.restored_step]
        if not boot.cut:
            break
        cuts += 1
    assert not boot.cut, "training never finished"
    assert cuts >= 3
    assert boot.final == ref.checkpoints[STEPS]
