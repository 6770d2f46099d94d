"""Flash command construction for every real board (dry run), and clean failures."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tt_boards_testlib import REAL_BOARDS
from tinytrain.flash import FlashError, flash, flash_plan, main

ELF = Path("/tmp/tt-flash-test/fw.elf")

EXPECTED = {
    "stm32f746g-disco": [
        "openocd -f board/stm32f7discovery.cfg -c 'program /tmp/tt-flash-test/fw.elf verify reset exit'"
    ],
    "nucleo-l476rg": ["pyocd flash --target stm32l476rgtx /tmp/tt-flash-test/fw.elf"],
    "nrf52840-dk": ["pyocd flash --target nrf52840 /tmp/tt-flash-test/fw.elf"],
    "rpi-pico": ["picotool load --verify --execute -t elf /tmp/tt-flash-test/fw.elf"],
    "esp32-c3": [
        "esptool.py --chip esp32c3 elf2image --flash_mode dio --flash_freq 40m --flash_size 4MB "
        "-o /tmp/tt-flash-test/fw.bin /tmp/tt-flash-test/fw.elf",
        "esptool.py --chip esp32c3 -p /dev/ttyUSB0 -b 460800 write_flash 0x0 /tmp/tt-flash-test/fw.bin",
    ],
    "hifive1-revb": [
        "openocd -f board/sifive-hifive1-revb.cfg -c 'program /tmp/tt-flash-test/fw.elf verify reset exit'"
    ],
}


def test_every_real_board_has_a_recipe():
    assert set(EXPECTED) == set(REAL_BOARDS)


@pytest.mark.parametrize("name", REAL_BOARDS)
def test_dry_run_prints_the_exact_commands(name):
    printed = []
    plan = flash(name, ELF, port="/dev/ttyUSB0", echo=printed.append)
    assert plan.commands() == EXPECTED[name]
    assert all(cmd in printed[0] for cmd in EXPECTED[name])


def test_alternative_recipes_with_intermediate_files():
    nrf = flash_plan("nrf52840-dk", ELF, tool="nrfjprog")
    assert nrf.commands() == [
        "arm-none-eabi-objcopy -O ihex /tmp/tt-flash-test/fw.elf /tmp/tt-flash-test/fw.hex",
        "nrfjprog -f NRF52 --program /tmp/tt-flash-test/fw.hex --sectorerase --verify --reset",
    ]
    jlink = flash_plan("hifive1-revb", ELF, tool="JLinkExe")
    assert jlink.commands()[0] == (
        "riscv64-unknown-elf-objcopy -O ihex /tmp/tt-flash-test/fw.elf /tmp/tt-flash-test/fw.hex"
    )
    (script_path, script), = jlink.steps[1].writes
    assert script_path == Path("/tmp/tt-flash-test/fw.jlink")
    assert "loadfile /tmp/tt-flash-test/fw.hex" in script
    assert "-CommanderScript /tmp/tt-flash-test/fw.jlink" in jlink.commands()[1]
    pico = flash_plan("rpi-pico", ELF, tool="openocd")
    assert "target/rp2040.cfg" in pico.commands()[0]


def test_errors_without_traceback(tmp_path, monkeypatch, capsys):
    elf = tmp_path / "fw.elf"
    elf.write_bytes(b"\x7fELF")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(FlashError, match=r"pyocd is not installed\. Install it: pip install pyocd"):
        flash("nucleo-l476rg", elf, dry_run=False, echo=None)
    with pytest.raises(FlashError, match="needs a serial port"):
        flash_plan("esp32-c3", elf)
    with pytest.raises(FlashError, match="emulated"):
        flash_plan("qemu-cortex-m4", elf)
    with pytest.raises(FlashError, match="no flash recipe for 'jtagulator'"):
        flash_plan("nrf52840-dk", elf, tool="jtagulator")
    # The CLI turns every failure into one line on stderr and exit status 1.
    assert main(["nucleo-l476rg", str(elf), "--run"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: pyocd is not installed") and "Traceback" not in err
    assert main(["no-such-board", str(elf)]) == 1
    assert "Available boards" in capsys.readouterr().err


def test_missing_probe_is_explained(tmp_path, monkeypatch):
    """A tool that runs but finds no probe: FlashError says so (fake pyocd on PATH)."""
    fake = tmp_path / "bin" / "pyocd"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho '0000 C No connected debug probes' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    elf = tmp_path / "fw.elf"
    elf.write_bytes(b"\x7fELF")
    with pytest.raises(FlashError, match="found no debug probe / board for 'nucleo-l476rg'"):
        flash("nucleo-l476rg", elf, dry_run=False, echo=None)
