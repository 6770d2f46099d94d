"""Helpers shared by the board-layer tests (tests/boards). A uniquely named module rather
than conftest.py so that `import` cannot pick up another directory's conftest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tinytrain.boards import list_boards, load_board  # noqa: E402
from tinytrain.sim.cross import toolchain_available  # noqa: E402
from tinytrain.sim.qemu import qemu_available  # noqa: E402

HERE = Path(__file__).resolve().parent
ALL_BOARDS = list_boards()
EMULATED_BOARDS = [n for n in ALL_BOARDS if load_board(n).emulated]
REAL_BOARDS = [n for n in ALL_BOARDS if not load_board(n).emulated]
C_DIR = HERE / "c"


def require_toolchain(name: str):
    board = load_board(name)
    if not toolchain_available(board):
        pytest.skip(f"{board.toolchain.cc} not installed (apt-get install {' '.join(board.toolchain.apt_packages)})")
    return board


def require_qemu(name: str):
    board = require_toolchain(name)
    if not qemu_available(board):
        pytest.skip(f"{board.qemu.binary} not installed (apt-get install {board.qemu.apt_package})")
    return board


def run_host_program(cc: str, sources: list[Path], out: Path, extra: list[str] = ()) -> str:
    """Compile with the same strict flags as the cross builds and return stdout."""
    cmd = [cc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off", "-O2", *extra,
           *map(str, sources), "-lm", "-o", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return subprocess.run([str(out)], check=True, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=30).stdout
