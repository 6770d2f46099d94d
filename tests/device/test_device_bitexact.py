"""The acceptance matrix: every example model on every emulated board, SGD and Adam, batch 1,
trainable all: every loss, the trained parameters and an inference after training are
bit-identical to the host simulator (HostModel) trained on the same samples.

All selected runs are started at once in a thread pool (each is a QEMU subprocess), so the
matrix costs about (total QEMU time) / cores.
"""
from __future__ import annotations

import numpy as np
import pytest

from tinytrain.device import run_on_board

from .devlib import (EMULATED, MODELS, OPTIMIZERS, STEPS, adaptation_data, assert_matches_plan,
                     host_reference, mismatches, require_qemu)

pytestmark = pytest.mark.qemu

TEST_NAME = "test_training_bit_identical_to_host"


class Matrix:
    """Futures of the BoardRun per (model, optimizer, board)."""

    def __init__(self, projects, pool, wanted):
        self.x, self.y = adaptation_data(STEPS)
        self.refs = {}
        self.futures = {}
        # Export and compute the host references first (serially: HostModel builds are cached
        # per process), then start every QEMU run.
        for model, opt, _board in wanted:
            if (model, opt) not in self.refs:
                proj = projects.get(model, opt)
                self.refs[(model, opt)] = (proj, host_reference(proj, self.x, self.y, STEPS))
        # Longest first (soft-float rv32imac, bigger models), so the pool ends together.
        cost = {"qemu-rv32imac": 100}
        for key in sorted(wanted, key=lambda k: -(cost.get(k[2], 1) * (MODELS.index(k[0]) + 1))):
            self.futures[key] = pool.submit(self._job, *key)

    def _job(self, model, opt, board):
        proj, _ref = self.refs[(model, opt)]
        return run_on_board(proj, board, self.x, self.y, STEPS, timeout_s=600)

    def get(self, model, opt, board):
        return self.futures[(model, opt, board)].result()


@pytest.fixture(scope="module")
def matrix(request, projects, pool):
    wanted = []
    for item in request.session.items:
        if item.originalname == TEST_NAME and hasattr(item, "callspec"):
            p = item.callspec.params
            if p["board"] in EMULATED:
                try:
                    require_qemu(p["board"])
                except pytest.skip.Exception:
                    continue
                wanted.append((p["model"], p["opt"], p["board"]))
    return Matrix(projects, pool, wanted)


@pytest.mark.parametrize("board", EMULATED)
@pytest.mark.parametrize("opt", OPTIMIZERS)
@pytest.mark.parametrize("model", MODELS)
def test_training_bit_identical_to_host(model, opt, board, matrix):
    require_qemu(board)
    run = matrix.get(model, opt, board)
    _proj, ref = matrix.refs[(model, opt)]
    assert run.steps == STEPS and np.all(run.status == 0)
    # Instruction counts are real and per step: every step costs more than one inference.
    assert run.instret_unit == "instructions"
    assert run.instret_infer > 0 and np.all(run.instret_per_step > run.instret_infer)
    diff = mismatches(run, ref)
    assert not diff, f"{model}/{opt} on {board} differs from the host: {diff}"

def test_losses_change_and_memory_matches_manifest(projects):
    """One run in detail: training really moves the weights, and the ELF's arrays have
    exactly the sizes the export planned."""
    board = require_qemu("qemu-cortex-m4")
    x, y = adaptation_data(STEPS)
    proj = projects.get("cnn", "adam")
    run = run_on_board(proj, board, x, y, STEPS)
    from tinytrain.sim.host import HostModel
    init = HostModel(proj).params
    assert all(not np.array_equal(run.params[k], init[k]) for k in run.params)
    assert_matches_plan(run.memory, run.image.manifest["memory"])
    assert run.memory.row("baked samples") == STEPS * (64 + 1) * 4
