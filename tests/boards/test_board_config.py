"""Every boards/*/board.toml loads, validates, and agrees with its linker script."""

from __future__ import annotations

import re
import shutil

import pytest

from tt_boards_testlib import ALL_BOARDS
from tinytrain.boards import BOARDS_DIR, BoardConfigError, UnknownBoardError, list_boards, load_board

EXPECTED = {
    "qemu-cortex-m4", "qemu-cortex-m7", "qemu-rv32imac", "qemu-rv32imafc",
    "stm32f746g-disco", "nucleo-l476rg", "nrf52840-dk", "rpi-pico", "esp32-c3", "hifive1-revb",
}


def test_all_boards_present():
    assert EXPECTED <= set(list_boards())


@pytest.mark.parametrize("name", ALL_BOARDS)
def test_board_loads_and_is_consistent(name):
    b = load_board(name)
    assert b.name == name and b.description
    assert b.arch in ("arm", "riscv")
    assert b.toolchain_prefix == {"arm": "arm-none-eabi-", "riscv": "riscv64-unknown-elf-"}[b.arch]
    assert b.linker_script.is_file()
    assert all(p.is_file() for p in b.startup_sources)
    assert 0 < b.model_ram_budget < b.ram_bytes
    assert b.emulated == (b.qemu is not None) == (b.flash is None)
    if b.arch == "arm":
        assert any(f.startswith("-mcpu=") for f in b.cflags)
        assert ("-mfloat-abi=hard" in b.cflags) == b.has_fpu
    else:
        march = next(f for f in b.cflags if f.startswith("-march="))
        assert ("f" in march.split("rv32")[1]) == b.has_fpu
    if b.instret.method == "mps2_fpgaio":
        assert b.instret.ticks_per_instruction == pytest.approx(3.2)


@pytest.mark.parametrize("name", ALL_BOARDS)
def test_linker_memory_matches_board_toml(name):
    """The RAM region the linker script gives the program lies inside the board's RAM."""
    b = load_board(name)
    text = b.linker_script.read_text()
    regions = {
        m["name"].lower(): (int(m["origin"], 0), _size(m["length"]))
        for m in re.finditer(
            r"^\s*(?P<name>\w+)\s*\([rwx!]+\)\s*:\s*ORIGIN\s*=\s*(?P<origin>0x[0-9A-Fa-f]+)\s*,"
            r"\s*LENGTH\s*=\s*(?P<length>[^\n]+?)\s*$",
            text,
            re.M,
        )
    }
    ram_name = next(n for n in regions if n in ("ram", "dram"))
    origin, length = regions[ram_name]
    assert b.memory.ram_origin <= origin
    assert origin + length <= b.memory.ram_origin + b.ram_bytes
    if b.name != "esp32-c3":  # ESP32-C3: code in SRAM, see its link.ld
        flash_origin, flash_len = regions["flash"]
        assert b.memory.flash_origin <= flash_origin
        assert flash_origin + flash_len <= b.memory.flash_origin + b.flash_bytes
        assert length == b.ram_bytes and origin == b.memory.ram_origin


def _size(expr: str) -> int:
    expr = expr.strip().rstrip(";")
    expr = re.sub(r"(\d+)K", lambda m: str(int(m[1]) * 1024), expr)
    expr = re.sub(r"(\d+)M", lambda m: str(int(m[1]) * 1024 * 1024), expr)
    return int(eval(expr, {"__builtins__": {}}))  # only numbers, + and - remain


def test_unknown_board_lists_the_available_ones():
    with pytest.raises(UnknownBoardError) as e:
        load_board("qemu-cortex-m5")
    msg = str(e.value)
    assert "qemu-cortex-m7" in msg and "Did you mean" in msg
    for n in EXPECTED:
        assert n in msg


def test_hifive1_is_the_does_not_fit_example():
    b = load_board("hifive1-revb")
    assert b.ram_bytes == 16 * 1024
    report = b.check_fit(ram_needed=13 * 1024)  # the DESIGN §8 MLP target
    assert not report.fits and "does NOT fit" in report.message
    assert load_board("nucleo-l476rg").check_fit(ram_needed=13 * 1024).fits


@pytest.fixture
def scratch_boards(tmp_path):
    src = BOARDS_DIR / "qemu-cortex-m4"
    dst = tmp_path / "qemu-cortex-m4"
    shutil.copytree(src, dst)
    shutil.copytree(BOARDS_DIR / "common", tmp_path / "common")
    return dst / "board.toml"


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.replace('arch = "arm"', 'arch = "mips"'), "arch"),
        (lambda s: s.replace("ram_reserved_bytes = 32768", "ram_reserved_bytes = 99999999"), "ram_reserved_bytes"),
        (lambda s: s.replace("flash_bytes = 4194304", 'flash_bytes = "4M"'), "flash_bytes"),
        (lambda s: s.replace('core = "cortex-m4f"', 'core = "cortex-m4f"\ncolour = "blue"'), "unknown key"),
        (lambda s: s.replace('linker_script = "link.ld"', 'linker_script = "nope.ld"'), "does not exist"),
        (lambda s: s.replace('method = "mps2_fpgaio"', 'method = "rdtsc"'), "method"),
        (lambda s: s.replace("[qemu]", "[qemu_]"), "qemu"),
        (lambda s: s.replace('name = "qemu-cortex-m4"', 'name = "other"'), "directory name"),
        (lambda s: s + "\n[[", "invalid TOML"),
    ],
)
def test_invalid_board_toml_is_reported(scratch_boards, edit, message):
    scratch_boards.write_text(edit(scratch_boards.read_text()))
    with pytest.raises(BoardConfigError, match=message):
        load_board("qemu-cortex-m4", boards_dir=scratch_boards.parent.parent)
