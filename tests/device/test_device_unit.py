"""Pieces of tinytrain.device that need neither a cross compiler nor QEMU."""
from __future__ import annotations

import re

import numpy as np
import pytest

from tinytrain.boards import load_board
from tinytrain.device import (BoardFitError, DeviceError, MemoryRow, MemoryTable, _config_header,
                              _prepare_data, estimate_memory)
from tinytrain.errors import ShapeError, TinytrainError
from tinytrain.sim.host import read_manifest


def test_baked_samples_are_exact_hex_floats(projects):
    manifest = read_manifest(projects.get("mlp", "sgd"))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 1, 8, 8)).astype(np.float32)
    x[0, 0, 0, :4] = [0.0, -0.0, np.float32(1e-45), np.float32(3.4e38)]  # zeros, subnormal, huge
    data = _prepare_data(manifest, (x, [1, 2, 9]), required=True)
    text = _config_header(manifest, "train", data, 5, 2, "qemu-cortex-m4")
    lits = re.findall(r"(-?0x[0-9a-f.]+p[+-]\d+)f", text)
    back = np.array([float.fromhex(v) for v in lits], np.float32)
    assert np.array_equal(back.view(np.uint32), x.reshape(-1).view(np.uint32))  # -0.0 kept too
    assert "static const int32_t tt_fw_label[TT_FW_SAMPLES] = {1, 2, 9};" in text
    assert "#define TT_FW_STEPS 5u" in text and "tt_fw_trainable" in text
    # Each main gets only the arrays it reads (an unused static const is a -Werror warning).
    assert "tt_fw_x" not in _config_header(manifest, "stream", None, 0, 1, "b")
    infer = _config_header(manifest, "infer", data, 0, 1, "b")
    assert "tt_fw_x" in infer and "tt_fw_label" not in infer and "tt_fw_trainable" not in infer


def test_data_is_checked(projects):
    manifest = read_manifest(projects.get("mlp", "sgd"))
    x = np.zeros((4, 64), np.float32)
    assert _prepare_data(manifest, (x, [0, 1, 2, 3]), required=True)[0].shape == (4, 64)
    with pytest.raises(ShapeError, match="class indices in \\[0, 10\\)"):
        _prepare_data(manifest, (x, [0, 1, 2, 10]), required=True)
    with pytest.raises(ShapeError, match="4 samples"):
        _prepare_data(manifest, (x, [0, 1]), required=True)
    with pytest.raises(ShapeError, match="NaN or Inf"):
        _prepare_data(manifest, (np.full((1, 64), np.nan, np.float32), [0]), required=True)
    with pytest.raises(DeviceError, match="needs training data"):
        _prepare_data(manifest, None, required=True)


def test_fit_estimate_and_table(projects):
    manifest = read_manifest(projects.get("resnet8", "adam"))
    board = load_board("hifive1-revb")
    t = estimate_memory(manifest, board, "train", steps=10, samples=10)
    assert not t.fits and not t.measured
    m = manifest["memory"]
    assert t.model_ram - t.row("stack") == m["arena"] + m["params_rw"] + m["grads"] + m["opt_state"]
    assert t.ram_overflow == max(t.model_ram - board.model_ram_budget, t.ram_total - board.ram_bytes)
    text = t.text()
    assert "estimate before compiling" in text and f"OVER by {t.model_ram - 10240:,} B" in text
    big = estimate_memory(manifest, load_board("stm32f746g-disco"), "train", steps=10, samples=10)
    assert big.fits
    assert issubclass(BoardFitError, TinytrainError) and issubclass(DeviceError, TinytrainError)
    d = MemoryTable.from_dict(t.as_dict())
    assert d == t and isinstance(d.rows[0], MemoryRow)


def test_python_and_firmware_constants_agree():
    """The result-file constants and NACK reasons exist once in C; the host's copies must
    not drift from them."""
    from tinytrain.device import _NACK_REASONS, EXIT_CUT, FIRMWARE_DIR, FW_FORMAT, FW_MAGIC, FW_MODE
    fw_h = (FIRMWARE_DIR / "tt_fw.h").read_text()
    assert int(re.search(r"#define TT_FW_MAGIC (0x[0-9A-Fa-f]+)u", fw_h).group(1), 16) == FW_MAGIC
    assert f"#define TT_FW_FORMAT {FW_FORMAT}u" in fw_h
    for name, value in FW_MODE.items():
        assert f"TT_FW_MODE_{name.upper()} = {value}" in fw_h
    assert f"TT_FW_EXIT_CUT = {EXIT_CUT}" in fw_h
    stream_c = (FIRMWARE_DIR / "tt_fw_stream.c").read_text()
    app = {int(v, 16) for v in re.findall(r"TT_FW_NACK_\w+ = (0x[0-9a-fA-F]+)", stream_c)}
    assert app and app <= set(_NACK_REASONS)
    from tinytrain.stream import RejectReason
    assert {int(r) for r in RejectReason} <= set(_NACK_REASONS)
