"""Fixtures for tests/device. Firmware builds are cached by content under $TINYTRAIN_CACHE
(tests/conftest.py points it at .tt_cache/), so a second run compiles nothing."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from .devlib import Projects


@pytest.fixture(scope="session")
def projects(tmp_path_factory) -> Projects:
    return Projects(tmp_path_factory.mktemp("tt-device-projects"))


@pytest.fixture(scope="session")
def pool():
    """Worker threads for QEMU runs and cross builds (each is a subprocess)."""
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as ex:
        yield ex
