"""The board sub-commands (tinytrain/cli_boards.py) through an argparse parser like the main
CLI's: help, user errors as one readable message with exit status 2, and real runs."""
from __future__ import annotations

import argparse

import numpy as np
import pytest

from tinytrain.cli_boards import add_board_commands
from tinytrain.errors import TinytrainError
from tinytrain.sim.host import HostModel

from .devlib import adaptation_data, require_qemu, require_toolchain


def cli(argv, capsys):
    """Parse and run like tinytrain.cli.main: (exit status, stdout, stderr)."""
    p = argparse.ArgumentParser(prog="tinytrain")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    add_board_commands(sub)
    try:
        args = p.parse_args(argv)
        try:
            code = int(args.func(args) or 0)
        except TinytrainError as e:
            print(f"tinytrain {args.command}: error: {e}", file=__import__("sys").stderr)
            code = 2
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    x, y = adaptation_data(20)
    path = tmp_path_factory.mktemp("data") / "d.npz"
    np.savez(path, x_train=x, y_train=y)
    return path


@pytest.mark.parametrize("command,phrases", [
    ("build", ["budget table", "overflow in bytes", "--board", "--mode", "checkpoint"]),
    ("run", ["QEMU", "bit-identical", "--check-host", "instructions retired"]),
    ("flash", ["--dry-run", "pyocd", "openocd", "--port"]),
    ("stream", ["SAMPLE_LABEL", "--port", "tcp:HOST:PORT", "--checkpoint-every"]),
])
def test_help(command, phrases, capsys):
    code, out, _ = cli([command, "--help"], capsys)
    assert code == 0
    flat = " ".join(out.split())
    for phrase in phrases:
        assert phrase in flat, f"{command} --help lacks {phrase!r}"


def test_build_refuses_what_does_not_fit(projects, capsys):
    require_toolchain("hifive1-revb")
    code, out, err = cli(["build", str(projects.get("mlp", "sgd")), "--board", "hifive1-revb"], capsys)
    assert code == 2
    assert "does not fit board 'hifive1-revb'" in err and "overflows RAM by" in err
    assert "model RAM (arena + params + grads + optimizer)" in err and "10,240 B budget" in err
    code, out, err = cli(["build", str(projects.get("mlp", "sgd", "last:1")), "--board", "hifive1-revb"], capsys)
    assert code == 0, err
    assert "firmware.elf" in out and "measured from the ELF" in out


def test_unknown_board_and_emulated_flash(projects, capsys):
    proj = str(projects.get("mlp", "sgd"))
    code, _, err = cli(["build", proj, "--board", "stm32"], capsys)
    assert code == 2 and "unknown board 'stm32'" in err and "nucleo-l476rg" in err
    code, _, err = cli(["flash", proj, "--board", "qemu-cortex-m4", "--dry-run"], capsys)
    assert code == 2 and "emulated" in err


def test_flash_dry_run_prints_the_commands(projects, data_file, capsys):
    require_toolchain("nucleo-l476rg")
    proj = projects.get("mlp", "sgd", "last:1")
    code, out, err = cli(["flash", str(proj), "--board", "nucleo-l476rg", "--data", str(data_file),
                          "--steps", "5", "--dry-run"], capsys)
    assert code == 0, err
    assert "pyocd flash --target stm32l476rgtx" in out and "nucleo-l476rg-train/firmware.elf" in out
    assert "semihosting" in out  # the train firmware needs a debugger: said so


@pytest.mark.qemu
def test_run_reports_losses_instructions_memory(projects, data_file, capsys):
    require_qemu("qemu-rv32imafc")
    proj = projects.get("cnn", "sgd")
    code, out, err = cli(["run", str(proj), "--board", "qemu-rv32imafc", "--data", str(data_file),
                          "--steps", "10", "--check-host", "--all-losses"], capsys)
    assert code == 0, err
    flat = " ".join(out.split())
    assert "10 training steps" in flat and "instructions per training step: mean" in flat
    assert "bit-identical to the host simulator" in flat
    assert "0x" in out and "arena (activations" in out
    code, _, err = cli(["run", str(proj), "--board", "nrf52840-dk", "--data", str(data_file)], capsys)
    assert code == 2 and "real board" in err


@pytest.mark.qemu
def test_stream_on_an_emulated_board(projects, data_file, tmp_path, capsys):
    require_qemu("qemu-cortex-m4")
    proj = projects.get("mlp", "adam")
    ck = tmp_path / "ck.bin"
    code, out, err = cli(["stream", str(proj), "--board", "qemu-cortex-m4", "--data", str(data_file),
                          "--samples", "8", "--epochs", "2", "--checkpoint-every", "4",
                          "--save-checkpoint", str(ck)], capsys)
    assert code == 0, err
    assert "trained 16 streamed samples" in out and "optimizer step 16" in out
    m = HostModel(proj)
    m.load_checkpoint(ck)
    assert m.step == 16
    code, _, err = cli(["stream", str(proj), "--data", str(data_file)], capsys)
    assert code == 2 and "--port" in err
