"""The exported model on a board: build firmware, run it under QEMU, stream samples to it.

    img = build_firmware("out/", "qemu-cortex-m4", data=(x, y), steps=20)   # -> FirmwareImage
    print(img.memory.text())                                              # RAM / flash table
    run = run_on_board("out/", "qemu-rv32imafc", x, y, steps=20)           # -> BoardRun
    run.losses, run.params, run.instret_per_step                           # exact bits

The firmware is the exported project's own sources (manifest ``sources``: the generated
``tt_model.c`` and the runtime kernels), the board's startup, and one of the mains in
``boards/common/firmware`` chosen by ``mode``:

=============  =====================================================================
``train``      trains ``steps`` samples baked into flash (a generated header), reports
               every loss, instructions per step and per inference, and the trained
               parameters as raw float bits (semihosting file ``tt_result.bin``)
``infer``      inference on the baked samples (outputs, instructions per inference)
``stream``     trains on samples streamed over the board UART (frame protocol,
               docs/uart-protocol.md); host side: StreamSession / stream_train
``checkpoint`` trains with a power-safe two-slot checkpoint every ``checkpoint_every``
               steps and can be "power cut" at an instruction count (run_checkpointed)
=============  =====================================================================

Before compiling, the memory the model needs (manifest memory report + firmware buffers +
stack and code estimates) is checked against the board budget; a model that does not fit is
refused with the budget table and the overflow in bytes (BoardFitError). After linking,
``FirmwareImage.memory`` is measured from the ELF: symbol sizes of the model's static arrays
(``nm -S``), section sizes, and a worst-case stack depth from gcc's call-graph info.

ELF builds are cached by a hash of every input file's contents and the compiler flags (not
paths) under ``$TINYTRAIN_CACHE/firmware`` (default ``~/.cache/tinytrain``), like the host
simulator's shared libraries.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .boards import BOARDS_DIR, Board, BoardConfigError, UnknownBoardError, load_board
from .errors import BuildError, ShapeError, TinytrainError
from .sim.host import cache_dir, read_manifest

__all__ = [
    "MODES",
    "FIRMWARE_DIR",
    "DeviceError",
    "BoardFitError",
    "FirmwareBuildError",
    "DeviceRunError",
    "DeviceProtocolError",
    "MemoryRow",
    "MemoryTable",
    "FirmwareImage",
    "BoardRun",
    "InferRun",
    "CheckpointRun",
    "SaveRecord",
    "StepReply",
    "as_board",
    "estimate_memory",
    "code_estimate",
    "stack_estimate",
    "build_firmware",
    "run_on_board",
    "infer_on_board",
    "run_checkpointed",
    "CUT_NEVER",
    "parse_checkpoint_blob",
    "StreamSession",
    "stream_train",
    "emulated_link",
]

FIRMWARE_DIR = BOARDS_DIR / "common" / "firmware"
MODES = ("train", "infer", "stream", "checkpoint")
_MAIN = {"train": "tt_fw_train.c", "infer": "tt_fw_infer.c", "stream": "tt_fw_stream.c",
         "checkpoint": "tt_fw_checkpoint.c"}
# Bumped whenever the firmware contract changes, so stale cached ELFs are not reused.
_FW_CACHE_VERSION = "tt-fw-1"
# The firmware's result files and exit codes (boards/common/firmware/tt_fw.h).
FW_MAGIC, FW_FORMAT = 0x57465454, 1
FW_MODE = {"train": 1, "infer": 2, "stream": 3, "checkpoint": 4}
EXIT_CUT = 42

# Pre-build estimates (checked against what the linker and gcc report for the example models
# on every board: tests/device/test_device_build.py).
# Stack bytes: main -> tt_train_step -> kernel -> libc leaf. Measured on the example models:
# <= 0.9 KiB with a hardware FPU, <= 1.1 KiB with soft-float (libgcc's routines nest deeper).
STACK_ESTIMATE = 1024
STACK_ESTIMATE_SOFT_FLOAT = 1536
LIBC_DATA_ESTIMATE = 1024  # libc's own .data/.bss (stdio handles, errno, TLS)
# Bytes of .text for the train main and an MLP, by (arch, hardware float); soft-float cores
# link libgcc's float routines. Scaled by mode and for convolution kernels (code_estimate).
CODE_ESTIMATE = {("arm", True): 10 * 1024, ("arm", False): 22 * 1024,
                 ("riscv", True): 18 * 1024, ("riscv", False): 32 * 1024}
_MODE_CODE = {"infer": 0.6, "train": 1.0, "checkpoint": 1.2, "stream": 1.4}
ICOUNT = True  # emulated stream runs use -icount too, so STEP instruction counts are exact
LIBC_LEAF_STACK = 128  # stack of libc/libgcc leaves (memcpy, soft-float) gcc cannot see


def _runtime_dir() -> Path:
    from .codegen.emit import RUNTIME
    return RUNTIME


# --------------------------------------------------------------------------------- errors


class DeviceError(TinytrainError):
    """Something about the board, the firmware or the device went wrong (user-facing)."""


class BoardFitError(DeviceError):
    """The model does not fit the board's RAM or flash budget. ``table`` holds the budget
    table, ``ram_overflow`` / ``flash_overflow`` the missing bytes (0 when that one fits)."""

    def __init__(self, message: str, table: MemoryTable):
        super().__init__(message)
        self.table = table
        self.ram_overflow = table.ram_overflow
        self.flash_overflow = table.flash_overflow


class FirmwareBuildError(BuildError):
    """The cross compiler or linker failed, or the toolchain is missing."""


class DeviceRunError(DeviceError):
    """The firmware failed on the (emulated) board: fault, timeout, bad exit status."""


class DeviceProtocolError(DeviceError):
    """The device answered a stream frame with a NACK, or not at all."""


def as_board(board: Board | str) -> Board:
    """A Board, or the one named; unknown names become a DeviceError listing the boards."""
    if isinstance(board, Board):
        return board
    try:
        return load_board(board)
    except UnknownBoardError as e:
        raise DeviceError(str(e)) from None
    except BoardConfigError as e:
        raise DeviceError(f"board description is invalid: {e}") from None


# ---------------------------------------------------------------------------- memory table


@dataclass(frozen=True)
class MemoryRow:
    name: str
    bytes: int
    region: str  # "RAM" | "flash"
    note: str = ""


@dataclass(frozen=True)
class MemoryTable:
    """RAM and flash use of a firmware against a board's budget.

    ``model_ram`` (arena + trainable params + gradients + optimizer state) is checked against
    the board's model budget (``ram_bytes - ram_reserved_bytes``); ``ram_total`` (everything
    incl. firmware buffers, libc data and the stack estimate) against its whole RAM;
    ``flash_total`` against its flash. ``measured`` is False for the pre-build estimate.
    """

    board: str
    mode: str
    rows: tuple[MemoryRow, ...]
    model_ram: int
    model_ram_budget: int
    ram_total: int
    ram_bytes: int
    flash_total: int
    flash_budget: int
    measured: bool

    @property
    def ram_overflow(self) -> int:
        # The model share must fit its budget, and everything must fit the chip.
        return max(0, self.model_ram - self.model_ram_budget, self.ram_total - self.ram_bytes)

    @property
    def flash_overflow(self) -> int:
        return max(0, self.flash_total - self.flash_budget)

    @property
    def fits(self) -> bool:
        return self.ram_overflow == 0 and self.flash_overflow == 0

    def row(self, name: str) -> int:
        for r in self.rows:
            if r.name == name:
                return r.bytes
        raise KeyError(name)

    def as_dict(self) -> dict:
        return {"board": self.board, "mode": self.mode, "measured": self.measured,
                "rows": [[r.name, r.bytes, r.region, r.note] for r in self.rows],
                "model_ram": self.model_ram, "model_ram_budget": self.model_ram_budget,
                "ram_total": self.ram_total, "ram_bytes": self.ram_bytes,
                "flash_total": self.flash_total, "flash_budget": self.flash_budget}

    @classmethod
    def from_dict(cls, d: dict) -> MemoryTable:
        return cls(board=d["board"], mode=d["mode"], measured=d["measured"],
                   rows=tuple(MemoryRow(*r) for r in d["rows"]), model_ram=d["model_ram"],
                   model_ram_budget=d["model_ram_budget"], ram_total=d["ram_total"],
                   ram_bytes=d["ram_bytes"], flash_total=d["flash_total"],
                   flash_budget=d["flash_budget"])

    def _summary(self) -> list[tuple[str, int, int, int]]:
        return [("model RAM (arena + params + grads + optimizer)", self.model_ram,
                 self.model_ram_budget, self.model_ram - self.model_ram_budget),
                ("RAM total (incl. firmware, libc, stack)", self.ram_total, self.ram_bytes,
                 self.ram_total - self.ram_bytes),
                ("flash total", self.flash_total, self.flash_budget,
                 self.flash_total - self.flash_budget)]

    def text(self) -> str:
        """Plain-text table (for error messages and logs)."""
        kind = "measured from the ELF" if self.measured else "estimate before compiling"
        lines = [f"{self.board} ({self.mode} firmware), {kind}:"]
        w = max(len(r.name) for r in self.rows)
        w = max(w, *(len(s[0]) for s in self._summary()))
        for r in self.rows:
            note = f"  {r.note}" if r.note else ""
            lines.append(f"  {r.name:<{w}}  {r.bytes:>9,} B  {r.region:<5}{note}")
        lines.append("  " + "-" * (w + 20))
        for name, used, budget, over in self._summary():
            verdict = f"OVER by {over:,} B" if over > 0 else f"{budget - used:,} B free"
            lines.append(f"  {name:<{w}}  {used:>9,} B  of {budget:,} B budget: {verdict}")
        return "\n".join(lines)

    def render(self, title: str | None = None):
        """A rich Table."""
        from rich.table import Table
        kind = "measured from the ELF" if self.measured else "estimate"
        t = Table(title=title or f"{self.board}: {self.mode} firmware memory ({kind})",
                  title_justify="left")
        t.add_column("memory")
        t.add_column("bytes", justify="right")
        t.add_column("where")
        t.add_column("budget", justify="right")
        t.add_column("note")
        for r in self.rows:
            t.add_row(r.name, f"{r.bytes:,}", r.region, "", r.note)
        t.add_section()
        for name, used, budget, over in self._summary():
            style = "red" if over > 0 else ""
            t.add_row(name, f"[{style}]{used:,}[/{style}]" if style else f"{used:,}", "",
                      f"{budget:,}", f"[red]over by {over:,} B[/red]" if over > 0
                      else f"{budget - used:,} B free")
        return t


def _mode_buffers(manifest: dict, mode: str, steps: int, samples: int, ckpt_every: int) -> int:
    """Bytes of the firmware main's static buffers (see boards/common/firmware/*.c)."""
    out = _out_size(manifest)
    ck = int(manifest["checkpoint_bytes"])
    slot = -(-(ck + 24) // 256) * 256
    max_tr = max([p["size"] for p in manifest["params"] if p["trainable"]] or [1])
    if mode == "train":
        return steps * 16 + out * 4 + max_tr * 4
    if mode == "infer":
        return samples * (out * 4 + 12)
    if mode == "checkpoint":
        return 2 * slot + ck + steps * 8 + (steps // max(ckpt_every, 1) + 1) * 32
    label = 4 if manifest["label_dtype"] == "i32" else out * 4
    rx = 2 + label + _in_size(manifest) * 4
    return rx + 2 * (13 + 512 + 12) + _in_size(manifest) * 4 + label + ck + 2 * slot + 200


def _in_size(manifest: dict) -> int:
    return int(np.prod(manifest["input"]["shape"][1:]))


def _out_size(manifest: dict) -> int:
    return int(np.prod(manifest["output"]["shape"][1:]))


def stack_estimate(board: Board) -> int:
    """Bytes of stack the firmware needs, before compiling (an upper bound for the examples)."""
    return STACK_ESTIMATE if board.has_fpu else STACK_ESTIMATE_SOFT_FLOAT


def code_estimate(manifest: dict, board: Board, mode: str, project: Path | None = None) -> int:
    """Bytes of code the firmware will have, before compiling (within a factor ~2)."""
    base = CODE_ESTIMATE[(board.arch, board.has_fpu)] * _MODE_CODE[mode]
    model_c = Path(project) / "tt_model.c" if project is not None else None
    if model_c is not None and model_c.is_file() and "tt_conv2d" in model_c.read_text(errors="replace"):
        base *= 1.4  # the convolution kernels
    return int(base)


def estimate_memory(manifest: dict, board: Board | str, mode: str = "train", *, steps: int = 1,
                    samples: int = 1, checkpoint_every: int = 1, project=None) -> MemoryTable:
    """What the firmware will need, from the export's memory report, before compiling."""
    board = as_board(board)
    mem = manifest["memory"]
    label = 4 if manifest["label_dtype"] == "i32" else _out_size(manifest) * 4
    data = samples * (_in_size(manifest) * 4 + label) if mode in ("train", "infer", "checkpoint") else 0
    buffers = _mode_buffers(manifest, mode, steps, samples, checkpoint_every)
    rows = (
        MemoryRow("arena (activations + their gradients)", mem["arena"], "RAM"),
        MemoryRow("trainable parameters", mem["params_rw"], "RAM"),
        MemoryRow("parameter gradients", mem["grads"], "RAM"),
        MemoryRow("optimizer state", mem["opt_state"], "RAM"),
        MemoryRow("firmware buffers", buffers, "RAM", f"{mode} main"),
        MemoryRow("stack", stack_estimate(board), "RAM", "estimate"),
        MemoryRow("code", code_estimate(manifest, board, mode, project), "flash", "estimate"),
        MemoryRow("initial trainable parameters", mem["params_rw"], "flash"),
        MemoryRow("frozen parameters", mem["params_ro"], "flash"),
        MemoryRow("baked samples", data, "flash"),
    )
    model = mem["arena"] + mem["params_rw"] + mem["grads"] + mem["opt_state"]
    return MemoryTable(
        board=board.name, mode=mode, rows=rows, model_ram=model + stack_estimate(board),
        model_ram_budget=board.model_ram_budget,
        ram_total=model + buffers + stack_estimate(board) + LIBC_DATA_ESTIMATE,
        ram_bytes=board.ram_bytes,
        flash_total=sum(r.bytes for r in rows if r.region == "flash"),
        flash_budget=board.model_flash_budget, measured=False)


# The model's static arrays in tt_model.c, and the firmware's baked data.
_MODEL_SYMBOLS = {"tt_arena": "arena (activations + their gradients)",
                  "tt_params_rw": "trainable parameters", "tt_grads": "parameter gradients",
                  "tt_opt_state": "optimizer state"}
_FLASH_SYMBOLS = {"tt_params_init": "initial trainable parameters",
                  "tt_params_ro": "frozen parameters"}
_DATA_SYMBOLS = ("tt_fw_x", "tt_fw_label", "tt_fw_target")


def _run_tool(argv: list[str]) -> str:
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise FirmwareBuildError(f"{' '.join(argv)} failed:\n{proc.stderr.strip()}")
    return proc.stdout


def _symbols(board: Board, elf: Path) -> tuple[dict[str, int], set[str]]:
    """(sizes of the data symbols we account for, local statics included; names of all
    functions linked in), from ``nm -S``."""
    nm = shutil.which(board.toolchain.tool("nm"))
    if nm is None:
        raise FirmwareBuildError(f"{board.toolchain.tool('nm')} not found")
    sizes: dict[str, int] = {}
    funcs: set[str] = set()
    ram_lo, ram_hi = board.memory.ram_origin, board.memory.ram_origin + board.memory.ram_bytes
    for line in _run_tool([nm, "-S", "--defined-only", str(elf)]).splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[3] in (*_MODEL_SYMBOLS, *_FLASH_SYMBOLS, *_DATA_SYMBOLS):
            sizes[parts[3]] = sizes.get(parts[3], 0) + int(parts[1], 16)
            if ram_lo <= int(parts[0], 16) < ram_hi:
                sizes["ram:" + parts[3]] = 1  # const data that runs from RAM (ESP32-C3)
        if len(parts) >= 3 and parts[-2] in ("T", "t", "W"):
            funcs.add(parts[-1])
    return sizes, funcs


_CI_NODE = re.compile(r'node: \{ title: "([^"]+)" label: "([^"]*)"')
_CI_EDGE = re.compile(r'edge: \{ sourcename: "([^"]+)" targetname: "([^"]+)"')
_CI_BYTES = re.compile(r"(\d+) bytes \(([a-z, ]+)\)")


def stack_depth(ci_files: Iterable[Path], root: str = "main",
                linked: set[str] | None = None) -> tuple[int, str]:
    """Worst-case stack depth from ``root`` over gcc's call graph (``-fcallgraph-info=su``).

    Functions gcc cannot see (libc, libgcc) count LIBC_LEAF_STACK once at the leaf; an
    indirect call counts as the deepest function whose address may be taken: one that is
    linked in (``linked``: function names in the ELF) but has no direct caller. Returns
    (bytes, call chain). Recursion raises FirmwareBuildError.
    """
    frame: dict[str, int] = {}
    edges: dict[str, set[str]] = {}
    dynamic: list[str] = []
    for ci in ci_files:
        text = Path(ci).read_text(errors="replace")
        for name, label in _CI_NODE.findall(text):
            m = _CI_BYTES.search(label)
            if m:
                frame[name] = max(frame.get(name, 0), int(m.group(1)))
                if "dynamic" in m.group(2) and "bounded" not in m.group(2):
                    dynamic.append(name)
        for src, dst in _CI_EDGE.findall(text):
            edges.setdefault(src, set()).add(dst)
    called = {d for ds in edges.values() for d in ds}
    # Callers of root (the reset handler) are entry points, not callback candidates.
    reaches_root: set[str] = {root}
    changed = True
    while changed:
        changed = False
        for src, dsts in edges.items():
            if src not in reaches_root and dsts & reaches_root:
                reaches_root.add(src)
                changed = True
    roots_of_indirect = [f for f in frame if f not in called and f not in reaches_root
                         and (linked is None or f.rsplit(":", 1)[-1] in linked)]
    memo: dict[str, tuple[int, str]] = {}
    active: set[str] = set()

    def depth(f: str) -> tuple[int, str]:
        if f in memo:
            return memo[f]
        if f in active:
            raise FirmwareBuildError(f"recursion through {f}: no bound on the stack")
        if f not in frame:  # outside our sources: a libc / libgcc leaf
            return LIBC_LEAF_STACK, f
        active.add(f)
        best = (0, "")
        for g in edges.get(f, ()):
            if g == "__indirect_call":
                cands = [depth(c) for c in roots_of_indirect if c not in active]
                sub = max(cands, default=(0, ""))
            else:
                sub = depth(g)
            if sub[0] > best[0]:
                best = sub
        active.discard(f)
        shown = f.rsplit(":", 1)[-1]  # static functions are titled "path:name"
        memo[f] = (frame[f] + best[0], shown + (" > " + best[1] if best[1] else ""))
        return memo[f]

    if root not in frame:
        return STACK_ESTIMATE, "(no call graph)"
    total, chain = depth(root)
    if dynamic:
        chain += f" (dynamic frames: {', '.join(sorted(set(dynamic)))})"
    return total, chain


def elf_memory(board: Board, elf: Path, mode: str, ci_files: Sequence[Path] = ()) -> MemoryTable:
    """The memory table measured from a linked firmware ELF."""
    from .sim.cross import elf_sizes
    secs = elf_sizes(board, elf)
    syms, funcs = _symbols(board, elf)
    stack, chain = stack_depth(ci_files, linked=funcs) if ci_files else (STACK_ESTIMATE, "estimate")
    model = {label: syms.get(sym, 0) for sym, label in _MODEL_SYMBOLS.items()}
    flash_syms = {label: syms.get(sym, 0) for sym, label in _FLASH_SYMBOLS.items()}
    data = sum(syms.get(s, 0) for s in _DATA_SYMBOLS)
    where = {label: "RAM" if f"ram:{sym}" in syms else "flash" for sym, label in _FLASH_SYMBOLS.items()}
    data_where = "RAM" if any(f"ram:{s}" in syms for s in _DATA_SYMBOLS) else "flash"
    ram_static = secs["ram"] - secs["stack"]  # .data/.bss (and .tbss); the stack is estimated
    const_in_ram = sum(n for label, n in flash_syms.items() if where[label] == "RAM")
    const_in_ram += data if data_where == "RAM" else 0
    other_ram = max(0, ram_static - sum(model.values()) - const_in_ram)
    code = secs["text"]
    other_flash = max(0, secs["flash"] - code - sum(flash_syms.values()) - data)
    rows = (
        *(MemoryRow(label, n, "RAM") for label, n in model.items()),
        MemoryRow("firmware buffers, libc data", other_ram, "RAM", f"{mode} main"),
        MemoryRow("stack", stack, "RAM", f"worst call chain: {chain}" if ci_files else "estimate"),
        MemoryRow("code", code, "flash"),
        *(MemoryRow(label, n, where[label], "const, runs from RAM" if where[label] == "RAM" else "")
          for label, n in flash_syms.items()),
        MemoryRow("baked samples", data, data_where),
        MemoryRow("other constants, .data image", other_flash, "flash"),
    )
    return MemoryTable(
        board=board.name, mode=mode, rows=rows,
        # Parameters that are const but run from RAM (ESP32-C3) count against the budget too.
        model_ram=sum(model.values()) + stack + sum(n for label, n in flash_syms.items()
                                                    if where[label] == "RAM"),
        model_ram_budget=board.model_ram_budget, ram_total=ram_static + stack,
        ram_bytes=board.ram_bytes, flash_total=secs["flash"],
        flash_budget=board.model_flash_budget, measured=True)


# --------------------------------------------------------------------------------- build


@dataclass(frozen=True)
class FirmwareImage:
    """A linked firmware: the ELF, its measured memory table, and how it was made."""

    elf: Path
    board: Board
    mode: str
    memory: MemoryTable
    estimate: MemoryTable
    manifest: dict
    steps: int
    samples: int
    checkpoint_every: int
    cached: bool
    command: tuple[str, ...] = ()

    @property
    def sizes(self) -> MemoryTable:  # the name used in the issue
        return self.memory


def _prepare_data(manifest: dict, data, *, required: bool) -> tuple[np.ndarray, np.ndarray] | None:
    """(x [N, input size] float32, labels [N] int32 or targets [N, output size] float32)."""
    if data is None:
        if required:
            raise DeviceError("this firmware needs training data: pass data=(x, y) "
                              "(CLI: --data file.npz)")
        return None
    if isinstance(data, dict):
        x, y = data["x_train"], data["y_train"]
    else:
        x, y = data
    in_shape = tuple(manifest["input"]["shape"][1:])
    x = np.asarray(x, dtype=np.float32)
    if x.shape == in_shape:
        x = x[None]
    n = x.shape[0] if x.ndim else 0
    if x.ndim == 0 or int(np.prod(x.shape[1:])) != int(np.prod(in_shape)) or n == 0:
        raise ShapeError(f"samples must have shape (N, {', '.join(map(str, in_shape))}), "
                         f"got {np.shape(x)}")
    x = np.ascontiguousarray(x.reshape(n, -1))
    if not np.all(np.isfinite(x)):
        raise ShapeError("samples contain NaN or Inf; they cannot be baked into firmware")
    if manifest["label_dtype"] == "i32":
        lab = np.asarray(y).reshape(-1)
        if lab.shape[0] != n:
            raise ShapeError(f"got {lab.shape[0]} labels for {n} samples")
        k = _out_size(manifest)
        if np.any(lab != np.round(lab)) or lab.min() < 0 or lab.max() >= k:
            raise ShapeError(f"labels must be class indices in [0, {k}), got min {lab.min()} "
                             f"max {lab.max()}")
        lab = lab.astype(np.int32)
    else:
        lab = np.asarray(y, np.float32).reshape(n, -1)
        if lab.shape[1] != _out_size(manifest) or not np.all(np.isfinite(lab)):
            raise ShapeError(f"targets must be finite, {_out_size(manifest)} per sample")
    return x, lab


def _hexf(v: np.ndarray) -> str:
    # C99 hexadecimal float literals: exact, whatever the compiler's decimal conversion.
    return ", ".join(float(f).hex() + "f" for f in v)


def _config_header(manifest: dict, mode: str, data, steps: int, ckpt_every: int, board: str) -> str:
    lines = [f"/* Generated by tinytrain.device for board {board}, {mode} firmware: do not edit.",
             f" * model hash 0x{manifest['model_hash']} */",
             "#ifndef TT_FW_CONFIG_H", "#define TT_FW_CONFIG_H", "", "#include <stdint.h>", ""]
    trainable = [i for i, p in enumerate(manifest["params"]) if p["trainable"]]
    max_tr = max([manifest["params"][i]["size"] for i in trainable] or [1])
    n = 0 if data is None else data[0].shape[0]
    lines += [f"#define TT_FW_SAMPLES {max(n, 1)}u", f"#define TT_FW_STEPS {max(steps, 1)}u",
              f"#define TT_FW_CKPT_EVERY {max(ckpt_every, 1)}u",
              f"#define TT_FW_NUM_TRAINABLE {len(trainable)}u",
              f"#define TT_FW_MAX_TRAINABLE_FLOATS {max_tr}u", ""]
    # Only what the chosen main reads: an unused static const array is a -Werror warning.
    if mode == "train":
        lines.append("static const uint16_t tt_fw_trainable[TT_FW_NUM_TRAINABLE] = {"
                     + ", ".join(map(str, trainable)) + "};")
    if mode in ("train", "infer", "checkpoint"):
        x, lab = data
        lines.append("/* const: the samples stay in flash. */")
        lines.append("static const float tt_fw_x[TT_FW_SAMPLES][TT_INPUT_SIZE] = {")
        lines += ["    {" + _hexf(row) + "}," for row in x]
        lines.append("};")
    if mode in ("train", "checkpoint"):
        x, lab = data
        if lab.ndim == 1:
            lines.append("static const int32_t tt_fw_label[TT_FW_SAMPLES] = {"
                         + ", ".join(str(int(v)) for v in lab) + "};")
            lines.append("#define TT_FW_LABEL(k) (&tt_fw_label[(k)])")
        else:
            lines.append("static const float tt_fw_target[TT_FW_SAMPLES][TT_TARGET_SIZE] = {")
            lines += ["    {" + _hexf(row) + "}," for row in lab]
            lines.append("};")
            lines.append("#define TT_FW_LABEL(k) (tt_fw_target[(k)])")
    lines += ["", "#endif /* TT_FW_CONFIG_H */", ""]
    return "\n".join(lines)


def _firmware_inputs(project: Path, manifest: dict, board: Board, mode: str):
    """(sources, include dirs, files whose contents define the build)."""
    runtime = _runtime_dir()
    srcs = [project / s for s in manifest["sources"]]
    missing = [str(s) for s in srcs if not s.is_file()]
    if missing:
        raise DeviceError(f"exported project {project} is incomplete: missing {', '.join(missing)}; "
                          "export it again")
    srcs.append(FIRMWARE_DIR / _MAIN[mode])
    srcs.append(BOARDS_DIR / "common" / "tt_hostio.c")
    if mode in ("stream", "checkpoint"):
        srcs += [FIRMWARE_DIR / "tt_fw_flash.c", runtime / "src" / "tt_ckpt_slots.c"]
    if mode == "stream":
        srcs += [runtime / "src" / "tt_frame.c", board.stream.driver]
    # The project's headers first: they match the sources export copied.
    incs = [project, FIRMWARE_DIR, runtime / "include", BOARDS_DIR / "common" / "uart"]
    deps = set(srcs) | set(project.glob("*.h")) | set(FIRMWARE_DIR.glob("*.h"))
    deps |= set((runtime / "include").glob("*.h"))
    for d in (board.dir, BOARDS_DIR / "common", *board.build.include_dirs, *board.build.lib_dirs):
        deps |= {p for p in Path(d).rglob("*") if p.is_file() and p.suffix in (".c", ".h", ".ld", ".toml")}
    deps |= set(board.build.startup) | {board.build.linker_script}
    return srcs, incs, sorted(deps)


_INCLUDE_RE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def _included(src: Path, incs: Sequence[Path], seen: dict[str, Path]) -> None:
    """Every quoted header ``src`` includes, recursively (resolved like the compiler)."""
    for name in _INCLUDE_RE.findall(src.read_text(errors="replace")):
        if name in seen:
            continue
        for d in (src.parent, *incs):
            cand = Path(d) / name
            if cand.is_file():
                seen[name] = cand
                _included(cand, incs, seen)
                break


def _digest(parts: Iterable[bytes]) -> str:
    h = hashlib.sha256(_FW_CACHE_VERSION.encode())
    for part in parts:
        h.update(len(part).to_bytes(8, "little") + part)
    return h.hexdigest()[:24]


def _portable(cmd: Sequence[str]) -> list[bytes]:
    """A command line without its paths: they differ between checkouts and temp dirs, while
    names and contents define the output."""
    out = []
    for arg in cmd:
        if arg.startswith(("-I", "-L", "-Wl,-Map=")):
            arg = arg[:2] if not arg.startswith("-Wl") else "-Wl,-Map="
        elif "/" in arg and not arg.startswith("-"):
            arg = Path(arg).name
        out.append(arg.encode())
    return out


def _compile_prefix(board: Board, incs: Sequence[Path], defines: Sequence[str], opt: str,
                    cflags: Sequence[str]) -> list[str]:
    """The compile half of tinytrain.sim.cross.compile_command (flags, defines, -I)."""
    from .sim import cross
    full = cross.compile_command(board, [], incs, Path("x.elf"), defines, opt, extra_cflags=cflags)
    stop = {str(s) for s in board.build.startup} | {"-T"}
    # --specs files also choose the C library's headers (newlib-nano, picolibc).
    specs = [f for f in board.toolchain.ldflags if f.startswith("--specs=")]
    return full[:next(i for i, a in enumerate(full) if a in stop)] + specs


def _compile_objects(board: Board, srcs: Sequence[Path], incs: Sequence[Path], defines: Sequence[str],
                     opt: str, cflags: Sequence[str], cache: bool) -> list[tuple[Path, Path]]:
    """Compile each source to an object, cached by flags + the source's and its headers'
    contents: the runtime kernels are the same for every model, so only tt_model.c and the
    firmware main are compiled per export. Returns [(object, call-graph .ci)] in order."""
    from concurrent.futures import ThreadPoolExecutor
    prefix = _compile_prefix(board, incs, defines, opt, cflags)
    objdir = cache_dir() / "firmware" / "obj" / board.name
    objdir.mkdir(parents=True, exist_ok=True)

    def one(src: Path) -> tuple[Path, Path]:
        headers: dict[str, Path] = {}
        _included(src, incs, headers)
        key = _digest([*_portable(prefix), src.name.encode(), src.read_bytes(),
                       *(n.encode() + b"\0" + headers[n].read_bytes() for n in sorted(headers))])
        obj = objdir / f"{src.stem}-{key}.o"
        ci = obj.with_suffix(".ci")
        if cache and obj.is_file() and ci.is_file():
            return obj, ci
        tmp = Path(tempfile.mkdtemp(prefix=".obj-", dir=objdir))
        try:
            out = tmp / f"{src.stem}.o"
            cmd = [*prefix, "-c", str(src.resolve()), "-o", str(out)]
            proc = subprocess.run(cmd, cwd=tmp, stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, timeout=300)
            if proc.returncode != 0:
                raise FirmwareBuildError(f"compiling {src.name} for {board.name} failed:\n  "
                                         f"{' '.join(cmd)}\n{(proc.stderr + proc.stdout).strip()}")
            os.replace(out.with_suffix(".ci"), ci)
            os.replace(out, obj)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return obj, ci

    workers = max(1, min(len(srcs), os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, srcs))


def _libc_ldflags(board: Board) -> list[str]:
    # The firmware never formats floats; picolibc's crt0 fault handler prints only integers.
    # Its integer-only printf saves ~10 KiB of code (the ESP32-C3 has a 64 KiB code window).
    if "--specs=picolibc.specs" in board.toolchain.ldflags:
        return ["-DPICOLIBC_INTEGER_PRINTF_SCANF"]
    return []


def build_firmware(project_dir, board: Board | str, *, data=None, steps: int | None = None,
                   mode: str = "train", checkpoint_every: int = 4, out_dir=None,
                   opt: str = "-O2", extra_sources: Sequence[Path | str] = (),
                   check_fit: bool = True, cache: bool = True,
                   echo: Callable[[str], None] | None = None) -> FirmwareImage:
    """Cross-compile an exported project with a firmware main into an ELF for ``board``.

    ``data`` = (x, y) (or a dict with x_train / y_train) is baked into flash for the train,
    infer and checkpoint mains; ``steps`` training steps cycle through it (default: one pass).
    ``checkpoint_every``: optimizer steps between checkpoints (checkpoint mode).
    ``extra_sources`` are compiled in too (e.g. a replacement libm function).
    The ELF is copied to ``out_dir`` (default ``PROJECT/build/<board>-<mode>/firmware.elf``).

    Raises BoardFitError (with the budget table) when the model does not fit, before any
    compiling; FirmwareBuildError when the toolchain is missing or compiling fails.
    """
    from .sim import cross

    project = Path(project_dir).resolve()
    manifest = read_manifest(project)
    board = as_board(board)
    if mode not in MODES:
        raise DeviceError(f"unknown firmware mode {mode!r}; choose one of {', '.join(MODES)}")
    if mode != "infer" and not manifest.get("training", True):
        raise DeviceError(f"{project} was exported for inference only (nothing trainable); "
                          "only --mode infer can be built")
    if mode == "stream" and board.stream.driver is None:
        raise DeviceError(
            f"board {board.name!r} has no UART driver yet, so it cannot stream samples "
            f"({board.stream.uart} at {board.stream.base:#x}: {board.stream.notes}). "
            "Build the train or infer firmware, or add a driver (boards/common/uart/tt_uart.h).")
    prepared = _prepare_data(manifest, data, required=False)
    if mode in ("train", "infer", "checkpoint") and prepared is None:
        # Nothing to learn from: one all-zero sample, enough to check that it builds and fits.
        n_in = _in_size(manifest)
        lab = np.zeros(1, np.int32) if manifest["label_dtype"] == "i32" else \
            np.zeros((1, _out_size(manifest)), np.float32)
        prepared = (np.zeros((1, n_in), np.float32), lab)
    if prepared is not None and mode in ("train", "checkpoint") and steps is not None \
            and 0 < steps < prepared[0].shape[0]:
        prepared = (prepared[0][:steps], prepared[1][:steps])  # bake only what the run reads
    samples = 0 if prepared is None else prepared[0].shape[0]
    if steps is None:
        steps = samples if mode != "stream" else 0
    if mode in ("train", "checkpoint") and steps < 1:
        raise DeviceError(f"steps must be >= 1, got {steps}")
    if checkpoint_every < 1:
        raise DeviceError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
    if manifest.get("batch", 1) != 1 and mode == "checkpoint":
        raise DeviceError("the checkpoint firmware resumes at whole batches; export with --batch 1")

    estimate = estimate_memory(manifest, board, mode, steps=max(steps, 1), samples=max(samples, 1),
                               checkpoint_every=checkpoint_every, project=project)
    if check_fit and not estimate.fits:
        raise BoardFitError(_fit_message(board, estimate), estimate)

    config = _config_header(manifest, mode, prepared, steps, checkpoint_every, board.name)
    srcs, incs, deps = _firmware_inputs(project, manifest, board, mode)
    srcs += [Path(s).resolve() for s in extra_sources]
    defines = ["TT_FW_STORE_FILE=1"] if board.emulated else []
    cflags = ["-fcallgraph-info=su"]
    root = cache_dir() / "firmware"
    root.mkdir(parents=True, exist_ok=True)
    link_probe = cross.compile_command(board, srcs, incs, Path("firmware.elf"), defines, opt,
                                       extra_cflags=cflags, extra_ldflags=_libc_ldflags(board))
    inputs = sorted((p.name.encode() + b"\0" + p.read_bytes() for p in set(deps) | set(srcs)))
    key = _digest([*_portable(link_probe), config.encode(), *inputs])
    final = root / f"{board.name}-{mode}-{key}"
    cached = cache and (final / "firmware.elf").is_file() and (final / "memory.json").is_file()
    if not cached:
        if not cross.toolchain_available(board):
            raise FirmwareBuildError(
                f"{board.toolchain.cc} not found (needed for board {board.name!r}); install it with:\n"
                f"  apt-get install -y --no-install-recommends {' '.join(board.toolchain.apt_packages)}")
        work = Path(tempfile.mkdtemp(prefix=f".build-{key}-", dir=root))
        try:
            gen = work / "gen"
            gen.mkdir()
            (gen / "tt_fw_config.h").write_text(config)
            objs = _compile_objects(board, srcs, [gen, *incs], defines, opt, cflags, cache)
            try:
                elf = cross.cross_compile(board, [o for o, _ in objs], [gen, *incs], work, defines, opt,
                                          name="firmware", extra_cflags=cflags,
                                          extra_ldflags=_libc_ldflags(board))
            except cross.BoardDoesNotFitError as e:
                raise BoardFitError(_fit_message(board, estimate, linker=str(e)), estimate) from None
            except cross.CrossCompileError as e:
                raise FirmwareBuildError(str(e)) from None
            ci = [c for _, c in objs] + sorted(work.glob("*.ci"))
            table = elf_memory(board, elf, mode, ci)
            (work / "memory.json").write_text(json.dumps(table.as_dict()))
            (work / "command.txt").write_text(" ".join(
                [*_compile_prefix(board, [gen, *incs], defines, opt, cflags), *map(str, srcs)]))
            for p in list(work.glob("*.ci")) + list(work.glob("*.su")):
                p.unlink()
            try:
                os.replace(work, final)
            except OSError:  # another process built the same key first
                shutil.rmtree(work, ignore_errors=True)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    table = MemoryTable.from_dict(json.loads((final / "memory.json").read_text()))
    dest = Path(out_dir) if out_dir is not None else project / "build" / f"{board.name}-{mode}"
    dest.mkdir(parents=True, exist_ok=True)
    elf = dest / "firmware.elf"
    shutil.copyfile(final / "firmware.elf", elf)
    if (final / "firmware.map").is_file():
        shutil.copyfile(final / "firmware.map", dest / "firmware.map")
    (dest / "tt_fw_config.h").write_text(config)
    command = tuple((final / "command.txt").read_text().split()) if (final / "command.txt").is_file() else ()
    if check_fit and not table.fits:
        raise BoardFitError(_fit_message(board, table), table)
    if echo is not None:
        echo(f"{'cached' if cached else 'built'} {elf}")
    return FirmwareImage(elf=elf, board=board, mode=mode, memory=table, estimate=estimate,
                         manifest=manifest, steps=steps, samples=samples,
                         checkpoint_every=checkpoint_every, cached=cached, command=command)


def _fit_message(board: Board, table: MemoryTable, linker: str = "") -> str:
    parts = []
    if table.ram_overflow:
        parts.append(f"RAM by {table.ram_overflow:,} B")
    if table.flash_overflow:
        parts.append(f"flash by {table.flash_overflow:,} B")
    advice = ("Export with a smaller trainable set (--trainable last:1 or bias), SGD instead of "
              "Adam (no optimizer state), or choose a board with more RAM.")
    if linker:
        m = re.findall(r"overflows ([\w, ]+?by \d+ bytes)", linker)
        what = m[0] if m else "memory"
        return (f"the firmware does not fit board {board.name!r}: the linker reports that it "
                f"overflows {what}. The estimate before compiling was:\n{table.text()}\n{advice}\n"
                f"linker: {linker.splitlines()[0]}")
    over = " and ".join(parts)
    return f"the model does not fit board {board.name!r}: it overflows {over}.\n{table.text()}\n{advice}"


# ----------------------------------------------------------------------------------- run


@dataclass(frozen=True)
class BoardRun:
    """What one training run on an emulated board reported; floats as their exact bits."""

    board: str
    steps: int
    loss_bits: np.ndarray  # uint32 [steps]
    status: np.ndarray  # uint32 [steps] (tt_status of each tt_train_step)
    instret_per_step: np.ndarray  # int64 [steps], counter overhead subtracted
    instret_infer: int
    instret_unit: str
    output: np.ndarray  # float32 [output size]: tt_infer(sample 0) after training
    params: dict[str, np.ndarray]  # trainable parameters after training
    image: FirmwareImage
    elapsed_s: float
    stdout: str

    @property
    def losses(self) -> np.ndarray:
        return self.loss_bits.view(np.float32)

    @property
    def memory(self) -> MemoryTable:
        return self.image.memory


@dataclass(frozen=True)
class InferRun:
    board: str
    outputs: np.ndarray  # float32 [N, *output shape]
    status: np.ndarray
    instret_per_inference: np.ndarray
    instret_unit: str
    image: FirmwareImage
    elapsed_s: float


def _require_emulated(board: Board) -> None:
    from .sim.qemu import qemu_available
    if not board.emulated:
        raise DeviceError(f"board {board.name!r} is a real board: QEMU cannot run it. Flash it "
                          "(`tinytrain flash`) or stream to it (`tinytrain stream --port ...`); "
                          "emulated boards: qemu-cortex-m4, qemu-cortex-m7, qemu-rv32imac, "
                          "qemu-rv32imafc")
    if not qemu_available(board):
        raise DeviceError(f"{board.qemu.binary} is not installed; install it with:\n  "
                          f"apt-get install -y --no-install-recommends {board.qemu.apt_package}")


def _run(board: Board, elf: Path, timeout_s: float, input_files=None):
    from .sim.qemu import QemuError, QemuFaultError, QemuTimeoutError, run_qemu
    try:
        return run_qemu(board, elf, timeout_s=timeout_s, input_files=input_files)
    except QemuFaultError as e:
        raise DeviceRunError(f"the firmware crashed on {board.name}: {e}") from None
    except QemuTimeoutError as e:
        raise DeviceRunError(f"{e}\n(raise timeout_s / --timeout for long runs)") from None
    except QemuError as e:
        raise DeviceRunError(str(e)) from None


class _Reader:
    def __init__(self, data: bytes, what: str):
        self.data, self.pos, self.what = data, 0, what

    def take(self, fmt: str, count: int | None = None):
        if count is not None:
            dt = np.dtype(fmt)
            n = dt.itemsize * count
            self._need(n)
            a = np.frombuffer(self.data, dt, count, self.pos).copy()
            self.pos += n
            return a
        n = struct.calcsize(fmt)
        self._need(n)
        v = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += n
        return v if len(v) > 1 else v[0]

    def raw(self, n: int) -> bytes:
        self._need(n)
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def _need(self, n: int) -> None:
        if self.pos + n > len(self.data):
            raise DeviceRunError(f"{self.what} is truncated ({len(self.data)} bytes)")


def _result_file(res, board: Board, what: str = "tt_result.bin") -> bytes:
    if what not in res.files:
        raise DeviceRunError(f"the firmware on {board.name} exited with status {res.exit_code} "
                             f"without writing {what}; its output:\n{res.stdout.strip()}")
    return res.files[what]


def _header(r: _Reader, manifest: dict, mode: int) -> tuple:
    magic, fmt, got_mode, steps, samples, mhash, ntr, avail = r.take("<8I")
    if magic != FW_MAGIC or fmt != FW_FORMAT or got_mode != mode:
        raise DeviceRunError(f"{r.what}: not a tinytrain firmware result (magic {magic:#x}, "
                             f"format {fmt}, mode {got_mode})")
    if mhash != int(manifest["model_hash"], 16):
        raise DeviceRunError(f"{r.what}: model hash {mhash:08x} does not match the project "
                             f"({manifest['model_hash']})")
    return steps, samples, ntr, avail


def run_on_board(project_dir, board: Board | str, x, y, steps: int | None = None, *,
                 timeout_s: float = 120.0, opt: str = "-O2", extra_sources=(),
                 image: FirmwareImage | None = None) -> BoardRun:
    """Train ``steps`` samples (cycling through x, y) on an emulated board under QEMU.

    Returns a BoardRun: every loss and the final trainable parameters as exact bits, the
    instructions retired by each tt_train_step and by one tt_infer (sample 0, after
    training), and the firmware's memory table. The run uses QEMU's ``-icount``, so the
    counts are deterministic.
    """
    board = as_board(board)
    _require_emulated(board)
    if image is None:
        image = build_firmware(project_dir, board, data=(x, y), steps=steps, mode="train", opt=opt,
                               extra_sources=extra_sources)
    elif image.mode != "train" or image.board.name != board.name:
        raise DeviceError(f"run_on_board needs the train firmware for {board.name}, got the "
                          f"{image.mode} firmware for {image.board.name}")
    res = _run(board, image.elf, timeout_s)
    manifest = image.manifest
    r = _Reader(_result_file(res, board), f"result of {board.name}")
    nsteps, _samples, ntr, avail = _header(r, manifest, FW_MODE["train"])
    overhead, infer = r.take("<2Q")
    loss_bits = r.take("<u4", nsteps)
    status = r.take("<u4", nsteps)
    instret = r.take("<u8", nsteps).astype(np.int64) - int(overhead)
    output = r.take("<f4", _out_size(manifest)).reshape(manifest["output"]["shape"][1:])
    params = {}
    for _ in range(ntr):
        index, size = r.take("<2I")
        p = manifest["params"][index]
        if size != p["size"]:
            raise DeviceRunError(f"parameter {p['name']}: device sent {size} values, expected {p['size']}")
        params[p["name"]] = r.take("<f4", size).reshape(p["shape"])
    if res.exit_code != 0:
        bad = [i for i, s in enumerate(status) if s not in (0, 3)]
        raise DeviceRunError(f"training failed on {board.name} (exit {res.exit_code})"
                             + (f" at step {bad[0]}: tt_status {status[bad[0]]}" if bad else "")
                             + f"\n{res.stdout.strip()}")
    unit = board.instret.unit if avail else "none"
    return BoardRun(board=board.name, steps=nsteps, loss_bits=loss_bits, status=status,
                    instret_per_step=instret if avail else np.zeros(nsteps, np.int64),
                    instret_infer=int(infer) - int(overhead) if avail else 0, instret_unit=unit,
                    output=output, params=params, image=image, elapsed_s=res.elapsed_s,
                    stdout=res.stdout)


def infer_on_board(project_dir, board: Board | str, x, *, timeout_s: float = 60.0,
                   opt: str = "-O2") -> InferRun:
    """Inference on the samples x (baked into flash) on an emulated board."""
    board = as_board(board)
    _require_emulated(board)
    manifest = read_manifest(project_dir)
    x = np.asarray(x, np.float32)
    n = x.shape[0] if x.ndim > len(manifest["input"]["shape"]) - 1 else 1
    dummy = np.zeros(n, np.int32) if manifest["label_dtype"] == "i32" else \
        np.zeros((n, _out_size(manifest)), np.float32)
    image = build_firmware(project_dir, board, data=(x, dummy), mode="infer", opt=opt)
    res = _run(board, image.elf, timeout_s)
    r = _Reader(_result_file(res, board), f"result of {board.name}")
    _, samples, _, avail = _header(r, manifest, FW_MODE["infer"])
    overhead, _ = r.take("<2Q")
    status = r.take("<u4", samples)
    instret = r.take("<u8", samples).astype(np.int64) - int(overhead)
    outputs = r.take("<f4", samples * _out_size(manifest)).reshape(
        (samples, *manifest["output"]["shape"][1:]))
    return InferRun(board=board.name, outputs=outputs, status=status,
                    instret_per_inference=instret if avail else np.zeros(samples, np.int64),
                    instret_unit=board.instret.unit if avail else "none", image=image,
                    elapsed_s=res.elapsed_s)


# ---------------------------------------------------------------------- power-safe checkpoints


@dataclass(frozen=True)
class SaveRecord:
    step: int  # optimizer step the checkpoint holds
    sequence: int  # store sequence number it was committed under
    status: int  # tt_ckpt_status (0 = ok)
    start: int  # counter at the start / end of the save, relative to main()
    end: int


@dataclass(frozen=True)
class CheckpointRun:
    """One boot of the checkpoint firmware (possibly ended by a power cut)."""

    cut: bool
    exit_code: int
    flash: bytes  # the emulated flash after the run (what the next boot finds)
    restored: bytes | None  # checkpoint blob restored at boot (tt_checkpoint_save format)
    restored_sequence: int | None
    restored_step: int | None
    first_sample: int | None  # None after a cut (no result file)
    loss_bits: np.ndarray | None
    saves: tuple[SaveRecord, ...]
    total_instret: int | None
    final: bytes | None  # tt_checkpoint_save blob at the end of training
    stdout: str

    @property
    def losses(self) -> np.ndarray | None:
        return None if self.loss_bits is None else self.loss_bits.view(np.float32)


# A power-cut budget that never runs out but makes the firmware take the same code path as
# a real cut (the 64-bit counter compare costs a data-dependent number of instructions on a
# 32-bit core), so the save times a run reports are the times cuts see.
CUT_NEVER = 0xFFFF_FFFF


def run_checkpointed(image: FirmwareImage, *, flash: bytes | None = None, cut_at: int | None = None,
                     timeout_s: float = 60.0) -> CheckpointRun:
    """Boot the checkpoint firmware (build_firmware(mode="checkpoint")) once under QEMU.

    ``flash``: the emulated flash image left by the previous boot (None: a blank chip).
    ``cut_at``: cut the power once this many instructions have retired since main() began
    (< 2**32). Pass CUT_NEVER for an uncut run whose save times match those of cut runs.
    """
    from .sim.qemu import QemuError, QemuTimeoutError, run_qemu
    if image.mode != "checkpoint":
        raise DeviceError(f"run_checkpointed needs the checkpoint firmware, not {image.mode!r}")
    board = image.board
    _require_emulated(board)
    inputs = {}
    if flash is not None:
        inputs["tt_flash.img"] = bytes(flash)
    if cut_at is not None:
        inputs["tt_cut.bin"] = struct.pack("<Q", int(cut_at))
    try:
        res = run_qemu(board, image.elf, timeout_s=timeout_s, input_files=inputs)
    except QemuTimeoutError as e:
        raise DeviceRunError(str(e)) from None
    except QemuError as e:
        raise DeviceRunError(f"checkpoint firmware failed on {board.name}: {e}") from None
    cut = res.exit_code == EXIT_CUT
    if res.exit_code not in (0, EXIT_CUT):
        raise DeviceRunError(f"checkpoint firmware exited with {res.exit_code} on {board.name}:\n"
                             f"{res.stdout.strip()}")
    img = res.files.get("tt_flash.img", inputs.get("tt_flash.img"))
    if img is None:
        raise DeviceRunError("the checkpoint firmware did not write tt_flash.img")
    restored = res.files.get("tt_restored.bin")
    base = dict(cut=cut, exit_code=res.exit_code, flash=img, restored=restored, stdout=res.stdout)
    if cut:
        seq, step = (None, None)
        if restored is not None:
            step = struct.unpack_from("<I", restored, 16)[0]
        return CheckpointRun(**base, restored_sequence=seq, restored_step=step, first_sample=None,
                             loss_bits=None, saves=(), total_instret=None, final=None)
    r = _Reader(_result_file(res, board), f"checkpoint result of {board.name}")
    _header_ck = r.take("<13I")
    (magic, fmt, mode, _steps, _samples, mhash, was_restored, rseq, rstep, first, end, _every,
     nsaves) = _header_ck
    if magic != FW_MAGIC or mode != FW_MODE["checkpoint"] or mhash != int(image.manifest["model_hash"], 16):
        raise DeviceRunError("tt_result.bin is not a checkpoint result of this model")
    _overhead, total = r.take("<2Q")
    loss_bits = r.take("<u4", end - first)
    r.take("<u4", end - first)  # statuses (checked via exit code)
    saves = []
    for _ in range(nsaves):
        step, seq, st, _pad, start, stop = r.take("<4I2Q")
        saves.append(SaveRecord(step, seq, st, start, stop))
    n = r.take("<I")
    final = r.raw(n)
    return CheckpointRun(**base, restored_sequence=rseq if was_restored else None,
                         restored_step=rstep if was_restored else None, first_sample=first,
                         loss_bits=loss_bits, saves=tuple(saves), total_instret=int(total),
                         final=final)


def parse_checkpoint_blob(blob: bytes) -> dict:
    """Header fields of a tt_checkpoint_save blob: magic, version, model_hash, payload, step."""
    magic, version, mhash, payload, step = struct.unpack_from("<5I", blob)
    return {"magic": magic, "version": version, "model_hash": mhash, "payload": payload,
            "step": step}


# ------------------------------------------------------------------------------- streaming


_NACK_REASONS = {1: "header check mismatch", 2: "unsupported protocol version",
                 3: "unknown frame type", 4: "payload longer than the device's receive buffer",
                 5: "payload CRC mismatch", 0x10: "wrong payload size for this frame",
                 0x11: "STEP before a complete sample and label",
                 0x12: "class index out of range", 0x13: "tt_train_step failed",
                 0x14: "checkpoint store failed", 0x15: "frame type not accepted by the device"}


@dataclass(frozen=True)
class StepReply:
    status: int  # tt_status of the last step (0 ok, 3 NaN: batch dropped)
    step: int  # optimizer steps taken so far
    trained: int  # samples trained in total
    loss_bits: np.ndarray  # uint32 [n]
    instret: int  # instructions (or cycles) of the n steps

    @property
    def losses(self) -> np.ndarray:
        return self.loss_bits.view(np.float32)


class StreamSession:
    """Host side of the stream firmware (boards/common/firmware/tt_fw_stream.c).

    Stop-and-wait: every frame waits for its reply (ACK / NACK / REPORT with the same seq)
    and is resent on timeout; the device recognises a resent frame and repeats its reply
    instead of training twice.

        with StreamSession(open_link("tcp:127.0.0.1:5555"), manifest) as s:
            for xi, yi in zip(x, y):
                s.send_sample(xi, yi)
                s.step()
            blob = s.read_checkpoint()
    """

    def __init__(self, link, manifest: dict, *, timeout_s: float = 10.0, step_timeout_s: float = 120.0,
                 retries: int = 2, hello_timeout_s: float = 0.5):
        from .stream import FrameDecoder, open_link
        self.link = open_link(link)
        self.manifest = manifest
        self.timeout_s = timeout_s
        self.step_timeout_s = step_timeout_s
        self.retries = retries
        self.decoder = FrameDecoder()
        self._seq = 0
        # A device that is just booting announces itself (REPORT, seq 0) once its UART is up;
        # frames sent before that may be lost. One that booted earlier answers a REPORT.
        self.info = self._hello(hello_timeout_s) or self.status()
        want = int(manifest["model_hash"], 16)
        if self.info["model_hash"] != want:
            raise DeviceProtocolError(
                f"the device runs firmware for another model (hash {self.info['model_hash']:08x}, "
                f"this project is {want:08x}); build and flash this project's stream firmware")

    def __enter__(self) -> StreamSession:
        return self

    def __exit__(self, *exc) -> None:
        self.link.close()

    def _next_seq(self) -> int:
        self._seq = self._seq % 255 + 1  # 1..255; 0 is the device's unsolicited hello
        return self._seq

    def request(self, type_: int, payload: bytes = b"", *, timeout_s: float | None = None):
        """Send one frame and return the device's reply Frame (ACK or REPORT); a NACK raises
        DeviceProtocolError, silence after all retries too."""
        from .stream import Frame, FrameType, LinkError
        seq = self._next_seq()
        wire = Frame(type_, payload, seq).encode()
        timeout = self.timeout_s if timeout_s is None else timeout_s
        for _attempt in range(self.retries + 1):
            try:
                self.link.write(wire)
            except OSError as e:
                raise DeviceProtocolError(f"{self.link.name}: {e}") from None
            deadline = time.monotonic() + timeout
            resend = False
            while not resend and (left := deadline - time.monotonic()) > 0:
                try:
                    data = self.link.read(4096, left)
                except (LinkError, OSError) as e:
                    raise DeviceProtocolError(f"{self.link.name}: {e}") from None
                for ev in self.decoder.feed(data):
                    if not isinstance(ev, Frame) or ev.seq != seq:
                        continue
                    if ev.type == FrameType.NACK:
                        why = ev.payload[0] if ev.payload else 0
                        detail = ev.payload[1] if len(ev.payload) > 1 else 0
                        if why in (1, 2, 5):  # damaged on the wire: send it again
                            resend = True
                            break
                        raise DeviceProtocolError(
                            f"device refused {FrameType(type_).name} (seq {seq}): "
                            f"{_NACK_REASONS.get(why, f'reason {why:#x}')}"
                            + (f" (detail {detail})" if detail else ""))
                    if ev.type in (FrameType.ACK, FrameType.REPORT):
                        return ev
        raise DeviceProtocolError(f"{self.link.name}: no reply to {FrameType(type_).name} (seq {seq}) "
                                  f"after {self.retries + 1} attempts of {timeout:g} s")

    _STATUS_KEYS = ("model_hash", "input_size", "output_size", "label_bytes", "step", "trained",
                    "last_loss_bits", "nonfinite", "frames_ok", "frames_rejected", "store_sequence",
                    "checkpoint_bytes", "rx_capacity", "max_step_count", "restored")

    def _parse_status(self, payload: bytes) -> dict:
        keys = self._STATUS_KEYS
        if len(payload) != 1 + 4 * len(keys) or payload[0] != 0:
            raise DeviceProtocolError(f"unexpected status report ({len(payload)} bytes): is this "
                                      "the tinytrain stream firmware?")
        return dict(zip(keys, struct.unpack_from(f"<{len(keys)}I", payload, 1)))

    def _hello(self, timeout_s: float) -> dict | None:
        from .stream import Frame, FrameType, LinkError
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                data = self.link.read(4096, left)
            except (LinkError, OSError) as e:
                raise DeviceProtocolError(f"{self.link.name}: {e}") from None
            for ev in self.decoder.feed(data):
                if isinstance(ev, Frame) and ev.type == FrameType.REPORT and ev.seq == 0:
                    return self._parse_status(ev.payload)
        return None

    def status(self) -> dict:
        """The device's counters (see tt_fw_stream.c): model_hash, step, trained, ..."""
        from .stream import FrameType
        return self._parse_status(self.request(FrameType.REPORT, b"").payload)

    def _label_bytes(self, y) -> bytes:
        if self.manifest["label_dtype"] == "i32":
            k = int(np.asarray(y).reshape(-1)[0])
            return struct.pack("<i", k)
        return np.ascontiguousarray(np.asarray(y, "<f4").reshape(-1)).tobytes()

    def send_sample(self, x, y) -> None:
        from .stream import FrameType, sample_label_payload
        xb = np.ascontiguousarray(np.asarray(x, "<f4").reshape(-1))
        if xb.size != _in_size(self.manifest):
            raise ShapeError(f"a sample has {_in_size(self.manifest)} values, got {xb.size}")
        self.request(FrameType.SAMPLE_LABEL, sample_label_payload(self._label_bytes(y), xb.tobytes()))

    def step(self, count: int = 1) -> StepReply:
        from .stream import FrameType, step_payload
        rep = self.request(FrameType.STEP, step_payload(count), timeout_s=self.step_timeout_s)
        status, step, trained, n, lo, hi = struct.unpack_from("<6I", rep.payload)
        bits = np.frombuffer(rep.payload, "<u4", n, 24).copy()
        return StepReply(status=status, step=step, trained=trained, loss_bits=bits,
                         instret=lo | (hi << 32))

    def save_checkpoint(self) -> tuple[int, int]:
        """Commit a checkpoint to the device's two-slot store: (sequence, bytes)."""
        from .stream import FrameType
        rep = self.request(FrameType.SAVE_CHECKPOINT, b"", timeout_s=self.step_timeout_s)
        _st, seq, n = struct.unpack_from("<3I", rep.payload)
        return seq, n

    def read_checkpoint(self, chunk: int = 512) -> bytes:
        """The device model's current tt_checkpoint_save blob (params, optimizer state, step):
        loadable with HostModel.load_checkpoint."""
        from .stream import FrameType
        out = bytearray()
        total = None
        while total is None or len(out) < total:
            rep = self.request(FrameType.REPORT, struct.pack("<BII", 1, len(out), chunk))
            kind, offset, total, n = struct.unpack_from("<BIII", rep.payload)
            if kind != 1 or offset != len(out):
                raise DeviceProtocolError("unexpected checkpoint chunk from the device")
            out += rep.payload[13:13 + n]
            if n == 0 and len(out) < total:
                raise DeviceProtocolError("the device stopped sending the checkpoint")
        return bytes(out)

    def halt(self) -> None:
        """Ask the firmware to return from main (emulated boards: QEMU exits)."""
        from .stream import FrameType
        self.request(FrameType.REPORT, b"\x02")


def stream_train(session: StreamSession, x, y, *, steps_per_sample: int = 1,
                 checkpoint_every: int | None = None,
                 progress: Callable[[int, StepReply], None] | None = None) -> list[StepReply]:
    """Stream every sample (x[i], y[i]) and train on it ``steps_per_sample`` times; commit a
    device checkpoint every ``checkpoint_every`` samples. Returns the STEP replies."""
    manifest = session.manifest
    x = np.asarray(x, np.float32).reshape(-1, _in_size(manifest))
    y = np.asarray(y)
    if len(y) != len(x):
        raise ShapeError(f"got {len(y)} labels for {len(x)} samples")
    replies = []
    for i in range(len(x)):
        session.send_sample(x[i], y[i])
        rep = session.step(steps_per_sample)
        replies.append(rep)
        if progress is not None:
            progress(i, rep)
        if checkpoint_every and (i + 1) % checkpoint_every == 0:
            session.save_checkpoint()
    return replies


class emulated_link:
    """Start QEMU with a stream firmware and connect to its UART:

        with emulated_link(image) as (link, qemu):
            session = StreamSession(link, image.manifest)
            ...

    ``flash``: bytes for the emulated checkpoint store (``tt_ckpt.img``) from an earlier
    boot. On leaving, QEMU is stopped (ask the firmware to halt first to collect its files:
    ``qemu.wait()`` then returns the QemuResult with ``files["tt_ckpt.img"]``).
    """

    def __init__(self, image: FirmwareImage, *, flash: bytes | None = None, connect_timeout_s: float = 10.0):
        if image.mode != "stream":
            raise DeviceError(f"emulated_link needs the stream firmware, not {image.mode!r}")
        _require_emulated(image.board)
        self.image = image
        self.flash = flash
        self.connect_timeout_s = connect_timeout_s
        self.qemu = None
        self.link = None

    def __enter__(self):
        from .sim.qemu import start_qemu
        from .stream import open_link
        server = socket.create_server(("127.0.0.1", 0))
        server.settimeout(self.connect_timeout_s)
        port = server.getsockname()[1]
        inputs = {"tt_ckpt.img": self.flash} if self.flash is not None else None
        try:
            self.qemu = start_qemu(self.image.board, self.image.elf, serial=f"tcp:127.0.0.1:{port},nodelay=on", icount=ICOUNT,
                                   input_files=inputs)
            try:
                conn, _ = server.accept()
            except socket.timeout:
                self.qemu.kill()
                raise DeviceRunError(f"QEMU did not connect its UART within {self.connect_timeout_s:g} s") from None
        finally:
            server.close()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # frames are tiny: no Nagle
        self.link = open_link(conn)
        return self.link, self.qemu

    def __exit__(self, *exc) -> None:
        if self.link is not None:
            self.link.close()
        if self.qemu is not None:
            self.qemu.__exit__(*exc)
