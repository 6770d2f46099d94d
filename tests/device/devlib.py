"""Helpers shared by tests/device: exports of the example models, host-simulator references,
comparisons with exact bits."""
from __future__ import annotations

import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tinytrain.boards import list_boards, load_board
from tinytrain.datasets import make_adaptation_data
from tinytrain.passes import TrainConfig
from tinytrain.pipeline import export
from tinytrain.sim.cross import toolchain_available
from tinytrain.sim.host import HostModel
from tinytrain.sim.qemu import qemu_available

ROOT = Path(__file__).resolve().parents[2]
MODELS_DIR = ROOT / "examples" / "digits" / "models"
MODELS = ("mlp", "cnn", "dscnn", "resnet8")
OPTIMIZERS = ("sgd", "adam")
ALL_BOARDS = tuple(list_boards())
EMULATED = tuple(b for b in ALL_BOARDS if load_board(b).emulated)
STEPS = 12  # training steps of the bit-exactness runs (batch 1: 12 optimizer steps)



def require_toolchain(board: str):
    b = load_board(board)
    if not toolchain_available(b):
        pytest.skip(f"{b.toolchain.cc} not installed")
    return b


def require_qemu(board: str):
    b = require_toolchain(board)
    if not qemu_available(b):
        pytest.skip(f"{b.qemu.binary} not installed")
    return b


def adaptation_data(n: int = 20):
    d = make_adaptation_data(0)
    return d["x_train"][:n], d["y_train"][:n]


class Projects:
    """Exports of the example models, made once per test session (thread safe)."""

    def __init__(self, root: Path):
        self.root = root
        self._lock = threading.Lock()
        self._done: dict[tuple, Path] = {}

    def get(self, model: str, optimizer: str = "sgd", trainable: str = "all", **kw) -> Path:
        key = (model, optimizer, trainable, tuple(sorted(kw.items())))
        with self._lock:
            if key not in self._done:
                name = f"{model}-{optimizer}-{trainable.replace(':', '')}"
                name += "".join(f"-{k}{v}" for k, v in sorted(kw.items()))
                out = self.root / name
                cfg = TrainConfig(optimizer=optimizer, trainable=trainable, lr=0.01, **kw)
                export(MODELS_DIR / f"{model}.onnx", out, cfg, command="tests/device")
                self._done[key] = out
            return self._done[key]


@dataclass(frozen=True)
class HostRef:
    loss_bits: np.ndarray
    params: dict[str, np.ndarray]  # trainable parameters
    output: np.ndarray  # infer(sample 0) after training
    checkpoints: dict[int, bytes]  # optimizer step -> tt_checkpoint_save blob


def host_reference(project: Path, x, y, steps: int, checkpoint_every: int | None = None) -> HostRef:
    """Train the host simulator exactly as the firmware does (sample i = i mod N)."""
    m = HostModel(project)
    losses = []
    ckpts = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ck.bin"
        m.save_checkpoint(path)
        ckpts[0] = path.read_bytes()
        for i in range(steps):
            k = i % len(x)
            losses.append(m.train_step(x[k], y[k:k + 1]))
            if checkpoint_every and m.step % checkpoint_every == 0:
                m.save_checkpoint(path)
                ckpts[m.step] = path.read_bytes()
    trainable = {p["name"] for p in m.manifest["params"] if p["trainable"]}
    params = {k: v for k, v in m.params.items() if k in trainable}
    out = m.infer(x[0])[0]
    return HostRef(np.array(losses, np.float32).view(np.uint32), params, out, ckpts)


def mismatches(run, ref: HostRef) -> list[str]:
    """What differs, bit for bit, between a BoardRun and the host reference (empty: nothing)."""
    out = []
    if not np.array_equal(run.loss_bits, ref.loss_bits):
        i = int(np.argmax(run.loss_bits != ref.loss_bits))
        out.append(f"loss of step {i}: device {run.losses[i]!r} host {ref.loss_bits.view(np.float32)[i]!r}")
    if set(run.params) != set(ref.params):
        out.append(f"parameter names {sorted(run.params)} != {sorted(ref.params)}")
    for k in sorted(set(run.params) & set(ref.params)):
        a, b = run.params[k].view(np.uint32), ref.params[k].view(np.uint32)
        if not np.array_equal(a, b):
            out.append(f"{k}: {int(np.sum(a != b))} of {a.size} values differ")
    if not np.array_equal(run.output.view(np.uint32), ref.output.view(np.uint32)):
        out.append("tt_infer output after training differs")
    return out


def same_size(elf_bytes: int, planned: int) -> bool:
    """An array the plan leaves empty is a one-word placeholder in tt_model.c (C has no
    zero-length arrays), or absent."""
    return elf_bytes == planned or (planned == 0 and elf_bytes <= 4)


def assert_matches_plan(t, mem: dict) -> None:
    """The ELF's model arrays have exactly the sizes the export planned."""
    for row, key in (("arena (activations + their gradients)", "arena"),
                     ("trainable parameters", "params_rw"), ("parameter gradients", "grads"),
                     ("optimizer state", "opt_state"), ("initial trainable parameters", "params_rw"),
                     ("frozen parameters", "params_ro")):
        assert same_size(t.row(row), mem[key]), f"{row}: ELF {t.row(row)} B, plan {mem[key]} B"
