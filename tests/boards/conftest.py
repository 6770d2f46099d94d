"""Fixtures for the board-layer tests (tests/boards). Helpers live in tt_boards_testlib.py."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import tt_boards_testlib  # noqa: E402,F401  (puts the repository on sys.path)


@pytest.fixture(scope="session")
def build_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tt-boards-build")


@pytest.fixture(scope="session")
def host_cc() -> str:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no host C compiler")
    return cc
