"""Cross-compile C sources into a bare-metal ELF for a board, and measure it.

    elf = cross_compile(load_board("qemu-cortex-m4"), [Path("main.c")], [], out_dir, [])
    elf_sizes(board, elf)  # {"text": ..., "rodata": ..., "data": ..., "bss": ..., ...}

Every build uses ``-std=c99 -Wall -Wextra -Werror -ffp-contract=off`` plus the board's
cpu/fpu/abi flags, one section per function/object and ``--gc-sections``, and links the
board's startup sources and linker script. A program that overflows the board's RAM or flash
raises BoardDoesNotFitError (a CrossCompileError) with the linker's numbers.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from tinytrain.boards import Board, load_board

__all__ = [
    "BASE_CFLAGS",
    "CrossCompileError",
    "ToolchainMissingError",
    "BoardDoesNotFitError",
    "cross_compile",
    "compile_command",
    "elf_sizes",
    "toolchain_available",
]

BASE_CFLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off")
SECTION_FLAGS = ("-ffunction-sections", "-fdata-sections")


class CrossCompileError(RuntimeError):
    """The compiler or linker failed; the message holds the command and its output."""


class ToolchainMissingError(CrossCompileError):
    """The board's cross compiler (or its C library) is not installed."""


class BoardDoesNotFitError(CrossCompileError):
    """The program is larger than the board's RAM or flash."""


def _as_board(board: Board | str) -> Board:
    return board if isinstance(board, Board) else load_board(board)


def _install_hint(board: Board) -> str:
    return "apt-get install -y --no-install-recommends " + " ".join(board.toolchain.apt_packages)


def toolchain_available(board: Board | str) -> bool:
    """True when the board's ``<prefix>gcc`` is on PATH."""
    return shutil.which(_as_board(board).toolchain.cc) is not None


def _require_tool(board: Board, tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise ToolchainMissingError(
            f"{tool} not found (needed for board {board.name!r}); install it with:\n  {_install_hint(board)}"
        )
    return path


def _define_args(defines: Mapping[str, object] | Iterable[str]) -> list[str]:
    if isinstance(defines, Mapping):
        items = [k if v is None else f"{k}={v}" for k, v in defines.items()]
    else:
        items = list(defines)
    return [f"-D{d}" for d in items]


def compile_command(
    board: Board | str,
    sources: Sequence[Path | str],
    include_dirs: Sequence[Path | str],
    elf: Path,
    defines: Mapping[str, object] | Iterable[str] = (),
    opt: str = "-O2",
    *,
    extra_cflags: Sequence[str] = (),
    extra_ldflags: Sequence[str] = (),
) -> list[str]:
    """The exact compiler command cross_compile() runs (for logs and Makefiles)."""
    board = _as_board(board)
    stream_defines = [f"TT_UART_BASE={board.stream.base:#x}u", f"TT_UART_BAUD={board.stream.baud}u"]
    cmd = [board.toolchain.cc, *board.toolchain.cflags, *BASE_CFLAGS, opt, *SECTION_FLAGS, *extra_cflags]
    cmd += _define_args([*board.compile_defines(), *stream_defines])
    cmd += _define_args(defines)
    for d in [*include_dirs, *board.build.include_dirs]:
        cmd.append(f"-I{Path(d)}")
    cmd += [str(Path(s)) for s in sources]
    cmd += [str(s) for s in board.build.startup]
    cmd += ["-T", str(board.build.linker_script), f"-L{board.build.linker_script.parent}"]
    cmd += [f"-L{d}" for d in board.build.lib_dirs]
    cmd += [*board.toolchain.ldflags, *extra_ldflags]
    cmd += ["-Wl,--gc-sections", f"-Wl,-Map={elf.with_suffix('.map')}"]
    cmd += [f"-l{lib}" for lib in board.toolchain.libs]
    cmd += ["-o", str(elf)]
    return cmd


_OVERFLOW_RE = re.compile(r"region `(\w+)' overflowed by (\d+) bytes")


def cross_compile(
    board: Board | str,
    sources: Sequence[Path | str],
    include_dirs: Sequence[Path | str] = (),
    out_dir: Path | str = Path("build"),
    defines: Mapping[str, object] | Iterable[str] = (),
    opt: str = "-O2",
    *,
    name: str | None = None,
    extra_cflags: Sequence[str] = (),
    extra_ldflags: Sequence[str] = (),
    timeout_s: float = 120.0,
) -> Path:
    """Compile and link ``sources`` for ``board``; returns the ELF path.

    ``defines`` is a list of ``"NAME"`` / ``"NAME=VALUE"`` strings or a mapping. The ELF is
    ``out_dir/<name>.elf`` (``name`` defaults to the first source's stem) with a ``.map``
    beside it. Raises ToolchainMissingError (naming the apt packages), BoardDoesNotFitError
    or CrossCompileError.
    """
    board = _as_board(board)
    if not sources:
        raise ValueError("cross_compile needs at least one source file")
    for s in sources:
        if not Path(s).is_file():
            raise FileNotFoundError(f"source file not found: {s}")
    _require_tool(board, board.toolchain.cc)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    elf = out / f"{name or Path(sources[0]).stem}.elf"
    cmd = compile_command(
        board, sources, include_dirs, elf, defines, opt, extra_cflags=extra_cflags, extra_ldflags=extra_ldflags
    )
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise CrossCompileError(f"compiler timed out after {timeout_s:.0f} s:\n  {shlex.join(cmd)}") from None
    if proc.returncode != 0:
        log = (proc.stderr + proc.stdout).strip()
        if "picolibc.specs" in log and ("No such file" in log or "cannot read spec" in log):
            raise ToolchainMissingError(
                f"picolibc for {board.toolchain.prefix.rstrip('-')} is missing; "
                f"install it with:\n  {_install_hint(board)}"
            )
        if "nano.specs" in log and ("No such file" in log or "cannot read spec" in log):
            raise ToolchainMissingError(
                f"newlib for arm-none-eabi is missing; install it with:\n  {_install_hint(board)}"
            )
        overflows = _OVERFLOW_RE.findall(log)
        if overflows or "does not fit" in log:
            detail = ", ".join(f"{region} by {n} bytes" for region, n in overflows) or "RAM (stack/heap reserve)"
            raise BoardDoesNotFitError(
                f"program does not fit board {board.name!r}: overflows {detail} "
                f"(RAM {board.ram_bytes} B, model budget {board.model_ram_budget} B, "
                f"flash {board.flash_bytes} B)\n{log}"
            )
        raise CrossCompileError(f"cross compile for {board.name!r} failed:\n  {shlex.join(cmd)}\n{log}")
    return elf


_SECTION_RE = re.compile(
    r"^\s*\[\s*\d+\]\s+(?P<name>\S+)\s+(?P<type>\S+)\s+(?P<addr>[0-9a-f]+)\s+(?P<off>[0-9a-f]+)\s+"
    r"(?P<size>[0-9a-f]+)\s+(?P<es>[0-9a-f]+)\s+(?P<flags>[A-Za-z]*)\s+\d+\s+\d+\s+\d+\s*$"
)


def elf_sizes(board: Board | str, elf: Path | str) -> dict:
    """Sizes of the allocated sections of ``elf``, by kind.

    Returns ``{"text", "rodata", "data", "bss", "stack", "flash", "ram", "sections"}``:

    - text: executable sections; rodata: read-only data (vector table, init arrays too);
      data: initialised writable data; bss: zero-initialised; stack: a reserved ``.stack``
      section if the linker script has one (picolibc-style layouts);
    - flash: bytes of the stored image (all PROGBITS sections, ``.data``'s initial values
      included);
    - ram: bytes of allocated sections whose run address lies in the board's RAM
      (``[ram_origin, ram_origin + ram_bytes)``) — on the ESP32-C3, where rodata runs from
      SRAM, that includes rodata;
    - sections: every allocated section name -> size.

    Parsed from ``<prefix>readelf -S -W``.
    """
    board = _as_board(board)
    readelf = _require_tool(board, board.toolchain.tool("readelf"))
    proc = subprocess.run(
        [readelf, "-S", "-W", str(elf)], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30
    )
    if proc.returncode != 0:
        raise CrossCompileError(f"readelf failed on {elf}:\n{proc.stderr}")
    ram_lo = board.memory.ram_origin
    ram_hi = ram_lo + board.memory.ram_bytes
    sizes = {"text": 0, "rodata": 0, "data": 0, "bss": 0, "stack": 0, "flash": 0, "ram": 0}
    sections: dict[str, int] = {}
    for line in proc.stdout.splitlines():
        m = _SECTION_RE.match(line)
        if not m or "A" not in m["flags"]:
            continue
        name, size, flags, kind = m["name"], int(m["size"], 16), m["flags"], m["type"]
        addr = int(m["addr"], 16)
        if size == 0:
            continue
        if kind == "NOBITS" and "T" in flags:
            continue  # .tbss: its bytes are reserved again by .tbss_space
        sections[name] = size
        if name in (".stack", "._stack", ".heap"):
            sizes["stack"] += size
        elif "X" in flags:
            sizes["text"] += size
        elif kind == "NOBITS":
            sizes["bss"] += size
        elif "W" in flags and name not in _READ_ONLY_TABLES:
            sizes["data"] += size
        else:
            sizes["rodata"] += size
        if kind != "NOBITS":
            sizes["flash"] += size
        if ram_lo <= addr < ram_hi:
            sizes["ram"] += size
    return {**sizes, "sections": sections}


# Pointer tables the startup code only reads, though the linker marks them writable.
_READ_ONLY_TABLES = (".init_array", ".fini_array", ".preinit_array")
