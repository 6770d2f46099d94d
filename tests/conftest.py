import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "examples" / "digits" / "models"

# Keep compiled host libraries of the test run in one place (cached across tests by hash).
os.environ.setdefault("TINYTRAIN_CACHE", str(ROOT / ".tt_cache"))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
