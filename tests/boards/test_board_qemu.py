"""The emulated boards under QEMU: bit-identical results to the host, exit codes, faults,
timeouts, host file I/O, a checkpoint that survives across runs."""

from __future__ import annotations

import re
import shutil
import struct

import pytest

from tt_boards_testlib import C_DIR, EMULATED_BOARDS, REPO, require_qemu, run_host_program
from tinytrain.sim.cross import cross_compile
from tinytrain.sim.qemu import QemuFaultError, QemuNotFoundError, QemuTimeoutError, qemu_command, run_qemu

pytestmark = pytest.mark.qemu

HOSTIO = REPO / "boards/common/tt_hostio.c"


@pytest.fixture(scope="module")
def host_selftest(host_cc, build_root):
    out = build_root / "host" / "selftest"
    out.parent.mkdir(parents=True, exist_ok=True)
    return run_host_program(host_cc, [C_DIR / "selftest.c"], out)


def _probe(board, mode: int, build_root):
    return cross_compile(board, [C_DIR / "probe.c", HOSTIO], [], build_root / board.name / f"probe{mode}",
                         [f"TT_PROBE={mode}"], name=f"probe{mode}")


@pytest.mark.parametrize("name", EMULATED_BOARDS)
def test_selftest_bit_identical_to_host(name, build_root, host_selftest):
    board = require_qemu(name)
    elf = cross_compile(board, [C_DIR / "selftest.c"], [], build_root / name / "selftest-run", [])
    result = run_qemu(board, elf, timeout_s=10)
    assert result.exit_code == 0
    assert result.stdout == host_selftest
    assert len(host_selftest.splitlines()) == 10
    print(f"\n{name}: QEMU run {result.elapsed_s * 1000:.0f} ms")


@pytest.mark.parametrize("name", EMULATED_BOARDS)
def test_exit_code_is_mains_return_value(name, build_root):
    board = require_qemu(name)
    result = run_qemu(board, _probe(board, 1, build_root))
    assert (result.exit_code, result.stdout) == (7, "about to exit with 7\n")


@pytest.mark.parametrize("name", EMULATED_BOARDS)
def test_fault_exits_with_a_message(name, build_root):
    board = require_qemu(name)
    elf = _probe(board, 2, build_root)
    with pytest.raises(QemuFaultError) as e:
        run_qemu(board, elf, timeout_s=10)
    result = e.value.result
    assert "about to fault" in result.stdout
    assert result.exit_code != 0
    if board.arch == "arm":
        # A precise BusFault; the stacked PC and the faulting address are shown.
        assert re.search(r"TT FAULT: BusFault exc=5 pc=0x[0-9a-f]{8} .*bfar=0xfffffff0", result.fault)
        assert result.exit_code == 128 + 5
    else:
        assert "RISCV fault" in result.fault and "mtval:    0xfffffff0" in result.stdout
    assert result.elapsed_s < 5  # the handler exits; it does not spin until the timeout
    # Without raise_on_fault the result comes back for inspection.
    assert run_qemu(board, elf, raise_on_fault=False).fault is not None


@pytest.mark.parametrize("name", EMULATED_BOARDS)
def test_trap_instruction_is_reported(name, build_root):
    board = require_qemu(name)
    with pytest.raises(QemuFaultError) as e:
        run_qemu(board, _probe(board, 6, build_root), timeout_s=10)
    expected = "TT FAULT: UsageFault exc=6" if board.arch == "arm" else "RISCV fault"
    assert e.value.result.fault.startswith(expected), e.value.result.stdout


def test_timeout_kills_qemu(build_root):
    board = require_qemu("qemu-cortex-m4")
    with pytest.raises(QemuTimeoutError, match="did not finish within 1 s"):
        run_qemu(board, _probe(board, 3, build_root), timeout_s=1.0)


@pytest.mark.parametrize("name", ["qemu-cortex-m4", "qemu-rv32imac"])
def test_binary_files_both_ways(name, build_root):
    board = require_qemu(name)
    blob = bytes(range(256)) * 5 + b"\x00\xff"
    result = run_qemu(board, _probe(board, 4, build_root), input_files={"input.bin": blob})
    assert result.exit_code == 0, result.stdout
    assert result.stdout == f"reversed {len(blob)} bytes\n"
    assert result.files == {"output.bin": blob[::-1]}


@pytest.mark.parametrize("name", EMULATED_BOARDS)
def test_fmaf_is_fused(name, build_root, host_cc):
    """fmaf() must round once (DESIGN §8 relies on it for host/target bit-identity)."""
    board = require_qemu(name)
    host = run_host_program(host_cc, [C_DIR / "probe.c"], build_root / "host" / "probe5",
                            ["-DTT_PROBE=5", f"-I{REPO / 'boards/common'}"])
    assert host == "fmaf 3a000400 unfused 3a000000\n"
    result = run_qemu(board, _probe(board, 5, build_root))
    if name == "qemu-rv32imac" and result.stdout != host:
        pytest.xfail("picolibc 1.8 (Debian 12) software fmaf is a*b+c with two roundings on cores without F")
    assert result.stdout == host


def test_missing_qemu_is_reported(monkeypatch, build_root):
    board = require_qemu("qemu-cortex-m4")
    elf = _probe(board, 1, build_root)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(QemuNotFoundError, match="apt-get install -y --no-install-recommends qemu-system-arm"):
        run_qemu(board, elf)


def test_qemu_command_line():
    cmd = qemu_command("qemu-rv32imafc", "/tmp/x.elf")
    joined = " ".join(cmd)
    assert cmd[0] == "qemu-system-riscv32"
    assert "-M virt" in joined and "-bios none" in joined and "-icount shift=0" in joined
    assert "enable=on,target=native,chardev=tt_console" in joined
    assert "-icount" not in qemu_command("qemu-cortex-m4", "/tmp/x.elf", icount=False)


CKPT_FW = r"""
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "tt_ckpt_slots.h"
#include "tt_hostio.h"

/* A 2 x 1 KiB "flash" region persisted in a host file between runs. */
static uint8_t region[2048];

int main(void)
{
    tt_ckpt_ram ram;
    tt_ckpt_io io;
    tt_ckpt_store store;
    uint32_t counter = 0, len = 0, seq = 0;
    size_t got = 0;
    memset(region, 0xFF, sizeof region);
    (void)tt_host_read_file("flash.bin", region, sizeof region, &got);
    tt_ckpt_ram_io(&io, &ram, region, sizeof region, 256);
    if (tt_ckpt_open(&store, &io) != TT_CKPT_OK) return 10;
    if (tt_ckpt_load(&store, &counter, sizeof counter, &len, &seq) != TT_CKPT_OK) counter = 0;
    counter += 1;
    if (tt_ckpt_save(&store, &counter, sizeof counter) != TT_CKPT_OK) return 11;
    printf("counter %u seq %u\n", (unsigned)counter, (unsigned)store.sequence);
    return tt_host_write_file("flash.bin", region, sizeof region) == 0 ? 0 : 12;
}
"""


def test_checkpoint_survives_qemu_runs(tmp_path, build_root):
    board = require_qemu("qemu-cortex-m4")
    src = tmp_path / "ckpt_fw.c"
    src.write_text(CKPT_FW)
    elf = cross_compile(board, [src, REPO / "runtime_c/src/tt_ckpt_slots.c", HOSTIO], [REPO / "runtime_c/include"],
                        build_root / "ckpt_fw", [])
    flash = {}
    for run in range(1, 4):
        result = run_qemu(board, elf, input_files=flash)
        assert result.exit_code == 0 and result.stdout == f"counter {run} seq {run}\n"
        flash = {"flash.bin": result.files["flash.bin"]}
    # Saves alternate slot 0, 1, 0: the third lives in slot 0 with sequence 3.
    magic, _fmt, seq, length = struct.unpack_from("<IIII", result.files["flash.bin"], 0)
    assert (magic, seq, length) == (0x4B435454, 3, 4)


M0_LINK = """
/* QEMU microbit (nRF51822, Cortex-M0): flash 256 KiB at 0, RAM 16 KiB at 0x20000000. */
MEMORY
{
    FLASH (rx)  : ORIGIN = 0x00000000, LENGTH = 256K
    RAM   (rwx) : ORIGIN = 0x20000000, LENGTH = 16K
}
__tt_stack_size = 2K;
__tt_min_heap_size = 2K;
INCLUDE tt_cortex_m.ld
"""


@pytest.fixture(scope="module")
def pico_on_m0(tmp_path_factory):
    """The rpi-pico board (Cortex-M0+ flags, soft float, newlib, our startup) retargeted at
    QEMU's microbit machine, an ARMv6-M Cortex-M0: the closest core QEMU 7.2 emulates."""
    import dataclasses

    from tinytrain.boards import QemuSpec, load_board

    require_qemu("qemu-cortex-m4")
    pico = load_board("rpi-pico")
    ld = tmp_path_factory.mktemp("m0") / "microbit.ld"
    ld.write_text(M0_LINK)
    build = dataclasses.replace(pico.build, linker_script=ld, lib_dirs=pico.build.lib_dirs)
    toolchain = dataclasses.replace(pico.toolchain, defines=("TT_CM_NUM_IRQ=32", "TT_CM_HAS_VTOR=0"))
    qemu = QemuSpec(binary="qemu-system-arm", apt_package="qemu-system-arm", machine="microbit",
                    icount_shift=7, extra_args=(), cpu=None)
    return dataclasses.replace(pico, name="rpi-pico-on-microbit", emulated=True, flash=None, qemu=qemu,
                               build=build, toolchain=toolchain)


def test_rpi_pico_build_runs_bit_identical_on_cortex_m0(pico_on_m0, build_root, host_selftest):
    elf = cross_compile(pico_on_m0, [C_DIR / "selftest.c"], [], build_root / "pico-m0", [])
    assert run_qemu(pico_on_m0, elf).stdout == host_selftest
    # QEMU's nRF51 ignores stores to unmapped addresses, so trap with an undefined
    # instruction instead; the Thumb-1 fault entry must report it.
    with pytest.raises(QemuFaultError, match=r"TT FAULT: HardFault exc=3 pc=0x"):
        run_qemu(pico_on_m0, _probe(pico_on_m0, 6, build_root))
