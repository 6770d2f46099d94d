"""Cross compilation for every board: strict flags, sizes, clear errors."""

from __future__ import annotations

import shutil

import pytest

from tt_boards_testlib import ALL_BOARDS, C_DIR, REPO, require_toolchain
from tinytrain.boards import load_board
from tinytrain.sim import cross
from tinytrain.sim.cross import BoardDoesNotFitError, CrossCompileError, ToolchainMissingError, cross_compile, elf_sizes


@pytest.mark.parametrize("name", ALL_BOARDS)
def test_selftest_builds_with_werror(name, build_root):
    board = require_toolchain(name)
    elf = cross_compile(board, [C_DIR / "selftest.c"], [], build_root / name / "selftest", [])
    assert elf.is_file() and elf.with_suffix(".map").is_file()
    sizes = elf_sizes(board, elf)
    assert sizes["text"] > 1000
    assert sizes["flash"] <= board.flash_bytes
    assert 0 < sizes["ram"] <= board.ram_bytes
    assert sizes["flash"] == sum(
        v for k, v in sizes["sections"].items() if k not in (".bss", ".stack", ".tbss_space")
    )


@pytest.mark.parametrize("name", ALL_BOARDS)
def test_board_runtime_sources_build(name, build_root):
    """The frame parser, checkpoint store, host I/O and instruction counter build for
    every board under the same strict flags (they are what firmware links)."""
    board = require_toolchain(name)
    sources = [
        C_DIR / "instret_loop.c",
        REPO / "runtime_c/src/tt_frame.c",
        REPO / "runtime_c/src/tt_ckpt_slots.c",
        REPO / "boards/common/tt_hostio.c",
    ]
    if board.stream.driver is not None:
        sources.append(board.stream.driver)
    elf = cross_compile(board, sources, [REPO / "runtime_c/include", REPO / "boards/common/uart"],
                        build_root / name / "runtime", [], opt="-Os")
    assert elf.is_file()


def test_compile_command_has_the_strict_flags():
    board = load_board("qemu-cortex-m4")
    from pathlib import Path

    cmd = cross.compile_command(board, [Path("a.c")], [], Path("out/a.elf"), {"FOO": 1, "BAR": None})
    for flag in ("-std=c99", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off", "-Wl,--gc-sections",
                 "-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-DFOO=1", "-DBAR", "-DTT_INSTRET_MPS2_FPGAIO=1"):
        assert flag in cmd


def test_warnings_are_errors(tmp_path, build_root):
    board = require_toolchain("qemu-cortex-m4")
    src = tmp_path / "warn.c"
    src.write_text("int main(void) { int unused; return 0; }\n")
    with pytest.raises(CrossCompileError, match="unused"):
        cross_compile(board, [src], [], build_root / "warn", [])


def test_program_too_big_for_hifive1(tmp_path, build_root):
    """32 KiB of model state fits the emulated M4 but not the 16 KiB HiFive1."""
    src = tmp_path / "big.c"
    src.write_text(
        "#include <stdint.h>\n"
        "static volatile uint8_t arena[32768];\n"
        "int main(void) { arena[100] = 1; return arena[100]; }\n"
    )
    require_toolchain("hifive1-revb")
    with pytest.raises(BoardDoesNotFitError, match="does not fit board 'hifive1-revb'"):
        cross_compile("hifive1-revb", [src], [], build_root / "big-hifive", [])
    require_toolchain("qemu-cortex-m4")
    elf = cross_compile("qemu-cortex-m4", [src], [], build_root / "big-m4", [])
    assert elf_sizes("qemu-cortex-m4", elf)["bss"] >= 32768


def test_missing_toolchain_names_the_apt_package(monkeypatch, tmp_path):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    src = tmp_path / "x.c"
    src.write_text("int main(void) { return 0; }\n")
    with pytest.raises(ToolchainMissingError) as e:
        cross_compile("qemu-rv32imafc", [src], [], tmp_path, [])
    msg = str(e.value)
    assert "riscv64-unknown-elf-gcc not found" in msg
    assert "gcc-riscv64-unknown-elf" in msg and "picolibc-riscv64-unknown-elf" in msg
