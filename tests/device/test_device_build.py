"""Firmware builds for every board in boards/ (-std=c99 -Wall -Wextra -Werror), the fit check
before compiling, and the memory table measured from the ELF."""
from __future__ import annotations

import re

import pytest

from tinytrain.device import (BoardFitError, DeviceError, FirmwareBuildError, build_firmware,
                              estimate_memory, stack_depth, stack_estimate)
from tinytrain.sim.host import read_manifest

from .devlib import ALL_BOARDS, MODELS, adaptation_data, assert_matches_plan, require_toolchain

# The "does not fit" example of boards/README.md: 10 KiB for the model, less than any of the
# example models needs with every parameter trainable.
DOES_NOT_FIT = {("hifive1-revb", m) for m in MODELS}


@pytest.fixture(scope="module")
def all_builds(projects, pool):
    """Every board x every model (train firmware, 4 baked samples): the image or the error."""
    x, y = adaptation_data(4)
    jobs = {}
    for board in ALL_BOARDS:
        for model in MODELS:
            proj = projects.get(model, "sgd")

            def job(proj=proj, board=board):
                try:
                    return build_firmware(proj, board, data=(x, y), steps=4)
                except (BoardFitError, DeviceError, FirmwareBuildError) as e:
                    return e  # FirmwareBuildError: no toolchain (the test skips)
            jobs[(board, model)] = pool.submit(job)
    return {k: f.result() for k, f in jobs.items()}


@pytest.mark.parametrize("board", ALL_BOARDS)
def test_every_board_builds_or_refuses_with_the_budget(board, all_builds):
    require_toolchain(board)
    for model in MODELS:
        got = all_builds[(board, model)]
        if (board, model) in DOES_NOT_FIT or (isinstance(got, BoardFitError) and not got.table.measured
                                              and not got.table.fits):
            # Refused before compiling, from the plan: always with the budget table.
            assert isinstance(got, BoardFitError), f"{model} on {board}: {got}"
            msg = str(got)
            assert f"does not fit board '{board}'" in msg and "overflows RAM by" in msg
            over = int(re.search(r"overflows RAM by ([\d,]+) B", msg).group(1).replace(",", ""))
            assert over == got.ram_overflow > 0
            # The budget table is in the message: every planned buffer and the budget.
            for row in ("arena (activations + their gradients)", "trainable parameters",
                        "parameter gradients", "stack", "model RAM"):
                assert row in msg
            assert f"{got.table.model_ram_budget:,} B budget" in msg
            continue
        assert not isinstance(got, Exception), f"{model} on {board}: {got}"
        t = got.memory
        assert t.measured and t.fits
        assert_matches_plan(t, got.manifest["memory"])
        assert t.row("baked samples") == 4 * 65 * 4
        # The pre-build estimates bound what the ELF shows.
        assert 0 < t.row("stack") <= stack_estimate(got.board)
        assert 0.4 < t.row("code") / got.estimate.row("code") < 2.5


def test_hifive1_builds_the_mlp_with_only_the_classifier_trainable(projects):
    board = require_toolchain("hifive1-revb")
    proj = projects.get("mlp", "sgd", "last:1")
    x, y = adaptation_data(4)
    est = estimate_memory(read_manifest(proj), board, "train", steps=4, samples=4)
    assert est.fits
    img = build_firmware(proj, board, data=(x, y), steps=4)
    t = img.memory
    assert t.fits and t.model_ram <= board.model_ram_budget and t.ram_total <= board.ram_bytes
    assert_matches_plan(t, img.manifest["memory"])
    assert t.row("frozen parameters") > 0  # in flash
    # ... and the same model with Adam and everything trainable does not.
    with pytest.raises(BoardFitError) as e:
        build_firmware(projects.get("mlp", "adam"), board, data=(x, y), steps=4)
    assert e.value.ram_overflow > 0 and e.value.flash_overflow == 0


@pytest.mark.parametrize("board", ALL_BOARDS)
def test_stream_firmware_needs_a_uart_driver(board, projects):
    b = require_toolchain(board)
    proj = projects.get("mlp", "sgd", "last:1")
    if b.stream.driver is None:
        with pytest.raises(DeviceError, match="no UART driver"):
            build_firmware(proj, b, mode="stream")
    else:
        img = build_firmware(proj, b, mode="stream")
        assert img.memory.fits


@pytest.mark.parametrize("board", ["qemu-cortex-m7", "qemu-rv32imac", "nrf52840-dk", "rpi-pico", "esp32-c3"])
@pytest.mark.parametrize("mode", ["infer", "checkpoint"])
def test_other_modes_build(board, mode, projects):
    b = require_toolchain(board)
    x, y = adaptation_data(4)
    img = build_firmware(projects.get("cnn", "adam", "last:1"), b, data=(x, y), steps=4, mode=mode)
    assert img.elf.is_file() and img.memory.fits
    assert 0 < img.memory.row("stack") <= stack_estimate(b)
    assert 0.4 < img.memory.row("code") / img.estimate.row("code") < 2.5


def test_builds_are_cached_by_content(projects, tmp_path):
    board = require_toolchain("qemu-cortex-m4")
    x, y = adaptation_data(3)
    proj = projects.get("mlp", "sgd")
    a = build_firmware(proj, board, data=(x, y), steps=3, out_dir=tmp_path / "a", cache=False)
    b = build_firmware(proj, board, data=(x, y), steps=3, out_dir=tmp_path / "b")
    assert not a.cached and b.cached and a.elf.read_bytes() == b.elf.read_bytes()
    assert a.memory == b.memory
    c = build_firmware(proj, board, data=(x[::-1], y[::-1]), steps=3, out_dir=tmp_path / "c")
    assert c.elf.read_bytes() != a.elf.read_bytes()


def test_refusals_are_user_errors(projects, tmp_path):
    proj = projects.get("mlp", "sgd")
    with pytest.raises(DeviceError, match="unknown board 'qemu-cortex-m5'.*Did you mean"):
        build_firmware(proj, "qemu-cortex-m5")
    with pytest.raises(DeviceError, match="unknown firmware mode"):
        build_firmware(proj, "qemu-cortex-m4", mode="debug")
    with pytest.raises(Exception, match="not an exported tinytrain project"):
        build_firmware(tmp_path, "qemu-cortex-m4")
    x, y = adaptation_data(3)
    with pytest.raises(Exception, match="class indices"):
        build_firmware(proj, "qemu-cortex-m4", data=(x, y + 10))
    with pytest.raises(Exception, match="samples must have shape"):
        build_firmware(proj, "qemu-cortex-m4", data=(x.reshape(3, -1)[:, :5], y))


def test_stack_depth_follows_the_call_graph(tmp_path):
    ci = tmp_path / "a.ci"
    ci.write_text('''graph: { title: "a.c"
node: { title: "main" label: "main\\na.c:1:5\\n16 bytes (static)" }
node: { title: "f" label: "f\\na.c:2:5\\n100 bytes (static)" }
node: { title: "/x/a.c:g" label: "g\\na.c:3:12\\n40 bytes (static)" }
node: { title: "cb" label: "cb\\na.c:4:12\\n300 bytes (static)" }
node: { title: "unused" label: "unused\\na.c:5:12\\n9000 bytes (static)" }
node: { title: "memcpy" label: "memcpy" shape : ellipse }
node: { title: "__indirect_call" label: "Indirect Call Placeholder" shape : ellipse }
edge: { sourcename: "main" targetname: "f" label: "a.c:1:20" }
edge: { sourcename: "f" targetname: "/x/a.c:g" label: "a.c:2:20" }
edge: { sourcename: "/x/a.c:g" targetname: "memcpy" label: "a.c:3:20" }
edge: { sourcename: "f" targetname: "__indirect_call" label: "a.c:2:30" }
}''')
    # main 16 + f 100 + max(g 40 + libc leaf 128, callback cb 300); "unused" is not linked in.
    depth, chain = stack_depth([ci], linked={"main", "f", "g", "cb"})
    assert depth == 16 + 100 + 300 and chain == "main > f > cb"
    depth, chain = stack_depth([ci], linked={"main", "f", "g"})
    assert depth == 16 + 100 + 40 + 128 and chain == "main > f > g > memcpy"
