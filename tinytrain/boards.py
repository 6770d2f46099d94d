"""Board descriptions: ``boards/<name>/board.toml`` loaded into frozen dataclasses.

A board says how to build for it (toolchain prefix and flags, linker script, startup
sources), how much memory the model may use (``ram_bytes - ram_reserved_bytes``), how to
run it (``[qemu]`` for emulated boards) or flash it (``[flash]`` for real ones), how to
count instructions (``[instret]``) and which UART carries the frame stream (``[stream]``).
The field reference is ``boards/README.md``.

    >>> from tinytrain.boards import load_board, list_boards
    >>> b = load_board("qemu-cortex-m4")
    >>> b.model_ram_budget
    4161536
"""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "Board",
    "BoardConfigError",
    "UnknownBoardError",
    "Toolchain",
    "Memory",
    "Build",
    "Instret",
    "QemuSpec",
    "FlashSpec",
    "FlashAlternative",
    "StreamSpec",
    "FitReport",
    "BOARDS_DIR",
    "list_boards",
    "load_board",
]

BOARDS_DIR = Path(__file__).resolve().parent.parent / "boards"

ARCHES = ("arm", "riscv")
INSTRET_METHODS = ("rdinstret", "mps2_fpgaio", "dwt_cyccnt", "esp32c3_mpccr", "none")
INSTRET_UNITS = ("instructions", "cycles", "none")
CONSOLE_BACKENDS = ("semihosting",)
FLASH_PLACEHOLDERS = ("elf", "hex", "bin", "objcopy", "port", "jlink_script")


class BoardConfigError(ValueError):
    """A board.toml is malformed or refers to files that do not exist."""


class UnknownBoardError(KeyError):
    """No board of that name; the message lists the available boards."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


@dataclass(frozen=True)
class Toolchain:
    prefix: str  # e.g. "arm-none-eabi-"
    apt_packages: tuple[str, ...]
    cflags: tuple[str, ...]  # cpu / fpu / abi
    ldflags: tuple[str, ...]
    defines: tuple[str, ...]
    libs: tuple[str, ...]

    @property
    def cc(self) -> str:
        return self.prefix + "gcc"

    def tool(self, name: str) -> str:
        """``tool("size")`` -> ``"arm-none-eabi-size"``."""
        return self.prefix + name


@dataclass(frozen=True)
class Memory:
    flash_origin: int
    flash_bytes: int
    ram_origin: int
    ram_bytes: int
    ram_reserved_bytes: int  # stack + libc/system share: NOT available to the model
    flash_reserved_bytes: int
    notes: str


@dataclass(frozen=True)
class Build:
    linker_script: Path
    startup: tuple[Path, ...]
    include_dirs: tuple[Path, ...]
    lib_dirs: tuple[Path, ...]


@dataclass(frozen=True)
class Instret:
    method: str  # one of INSTRET_METHODS
    unit: str  # "instructions" | "cycles" | "none"
    ticks_per_instruction: float | None  # mps2_fpgaio only
    notes: str

    @property
    def define(self) -> str | None:
        """The C define that selects the method in boards/common/tt_instret.h."""
        return None if self.method == "none" else f"TT_INSTRET_{self.method.upper()}=1"


@dataclass(frozen=True)
class QemuSpec:
    binary: str
    apt_package: str
    machine: str
    icount_shift: int
    extra_args: tuple[str, ...]
    cpu: str | None


@dataclass(frozen=True)
class FlashAlternative:
    tool: str
    steps: tuple[tuple[str, ...], ...]
    install: str
    notes: str


@dataclass(frozen=True)
class FlashSpec:
    tool: str
    steps: tuple[tuple[str, ...], ...]  # argv templates with {elf} {hex} {bin} ... placeholders
    install: str
    notes: str
    jlink_script: str | None  # J-Link Commander script template, when a step needs one
    alternatives: tuple[FlashAlternative, ...]


@dataclass(frozen=True)
class StreamSpec:
    uart: str  # peripheral kind, e.g. "cmsdk_apb_uart", "ns16550a", "stm32_usart"
    base: int
    baud: int
    driver: Path | None  # C driver implementing boards/common/uart/tt_uart.h, if we ship one
    pins: str
    notes: str


@dataclass(frozen=True)
class FitReport:
    fits: bool
    ram_needed: int
    ram_budget: int
    flash_needed: int
    flash_budget: int
    message: str


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    core: str
    arch: str  # "arm" | "riscv"
    fpu: str  # "none" or the -mfpu / F-extension name
    emulated: bool
    toolchain: Toolchain
    memory: Memory
    build: Build
    console: str
    instret: Instret
    qemu: QemuSpec | None
    flash: FlashSpec | None
    stream: StreamSpec
    dir: Path

    # Flat views of the fields most callers want.
    @property
    def toolchain_prefix(self) -> str:
        return self.toolchain.prefix

    @property
    def cflags(self) -> tuple[str, ...]:
        return self.toolchain.cflags

    @property
    def ram_bytes(self) -> int:
        return self.memory.ram_bytes

    @property
    def flash_bytes(self) -> int:
        return self.memory.flash_bytes

    @property
    def ram_reserved_bytes(self) -> int:
        return self.memory.ram_reserved_bytes

    @property
    def model_ram_budget(self) -> int:
        """RAM the model (arena, parameters, optimizer state) may use."""
        return self.memory.ram_bytes - self.memory.ram_reserved_bytes

    @property
    def model_flash_budget(self) -> int:
        return self.memory.flash_bytes - self.memory.flash_reserved_bytes

    @property
    def linker_script(self) -> Path:
        return self.build.linker_script

    @property
    def startup_sources(self) -> tuple[Path, ...]:
        return self.build.startup

    @property
    def has_fpu(self) -> bool:
        return self.fpu != "none"

    def compile_defines(self) -> tuple[str, ...]:
        """Board defines plus the instruction-counter selector."""
        extra = (self.instret.define,) if self.instret.define else ()
        return self.toolchain.defines + extra

    def check_fit(self, ram_needed: int, flash_needed: int = 0) -> FitReport:
        """Does a model needing this much RAM (and flash) fit the board's budget?"""
        ok = ram_needed <= self.model_ram_budget and flash_needed <= self.model_flash_budget
        parts = [
            f"RAM {ram_needed} of {self.model_ram_budget} B budget "
            f"({self.ram_bytes} B SRAM - {self.ram_reserved_bytes} B reserved)",
            f"flash {flash_needed} of {self.model_flash_budget} B",
        ]
        verdict = "fits" if ok else "does NOT fit"
        return FitReport(
            fits=ok,
            ram_needed=ram_needed,
            ram_budget=self.model_ram_budget,
            flash_needed=flash_needed,
            flash_budget=self.model_flash_budget,
            message=f"{self.name}: {verdict}: " + "; ".join(parts),
        )


# --------------------------------------------------------------------------- loading


def list_boards(boards_dir: Path | None = None) -> list[str]:
    """Names of all boards (directories holding a board.toml), sorted."""
    root = Path(boards_dir) if boards_dir is not None else BOARDS_DIR
    if not root.is_dir():
        return []
    return sorted(p.parent.name for p in root.glob("*/board.toml"))


def load_board(name: str, boards_dir: Path | None = None) -> Board:
    """Load and validate ``boards/<name>/board.toml``.

    Raises UnknownBoardError (listing the available boards) or BoardConfigError.
    """
    root = Path(boards_dir) if boards_dir is not None else BOARDS_DIR
    path = root / name / "board.toml"
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", name) or not path.is_file():
        available = list_boards(root)
        close = difflib.get_close_matches(name, available, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownBoardError(
            f"unknown board {name!r}.{hint} Available boards: {', '.join(available) or '(none)'}"
            f" (from {root})"
        )
    try:
        with path.open("rb") as f:
            raw = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise BoardConfigError(f"{path}: invalid TOML: {e}") from None
    return _parse_board(raw, path)


class _Table:
    """Typed access to one TOML table that reports the file and key on error and rejects
    keys nobody reads (typos)."""

    def __init__(self, data: Any, path: Path, where: str):
        if not isinstance(data, dict):
            raise BoardConfigError(f"{path}: [{where}] must be a table")
        self.data = data
        self.path = path
        self.where = where
        self.seen: set[str] = set()

    def _err(self, key: str, msg: str) -> BoardConfigError:
        loc = f"{self.where}.{key}" if self.where else key
        return BoardConfigError(f"{self.path}: {loc}: {msg}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        self.seen.add(key)
        if key not in self.data:
            if default is ...:
                raise self._err(key, "missing")
            return default
        value = self.data[key]
        if isinstance(value, bool) and kind in (int, float):
            raise self._err(key, f"expected {kind.__name__}, got a boolean")
        if kind is float and isinstance(value, int):
            value = float(value)
        if not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            raise self._err(key, f"expected {names}, got {type(value).__name__}")
        return value

    def str_list(self, key: str, default: Any = ...) -> tuple[str, ...]:
        value = self.get(key, list, default)
        if not all(isinstance(v, str) for v in value):
            raise self._err(key, "expected a list of strings")
        return tuple(value)

    def table(self, key: str, required: bool = True) -> _Table | None:
        self.seen.add(key)
        if key not in self.data:
            if required:
                raise self._err(key, "missing table")
            return None
        return _Table(self.data[key], self.path, f"{self.where}.{key}" if self.where else key)

    def positive(self, key: str, default: Any = ...) -> int:
        value = self.get(key, int, default)
        if value <= 0:
            raise self._err(key, "must be > 0")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: Any = ...) -> str:
        value = self.get(key, str, default)
        if value not in choices:
            raise self._err(key, f"{value!r} is not one of {', '.join(choices)}")
        return value

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            raise self._err(unknown[0], f"unknown key (known: {', '.join(sorted(self.seen))})")


def _board_file(t: _Table, key: str, rel: str, board_dir: Path) -> Path:
    p = (board_dir / rel).resolve()
    if not p.exists():
        raise t._err(key, f"{rel!r} does not exist (resolved to {p})")
    return p


def _steps(t: _Table, key: str) -> tuple[tuple[str, ...], ...]:
    value = t.get(key, list)
    if not value or not all(
        isinstance(step, list) and step and all(isinstance(a, str) for a in step) for step in value
    ):
        raise t._err(key, "expected a non-empty list of argv lists, e.g. [[\"pyocd\", \"flash\", \"{elf}\"]]")
    for step in value:
        for arg in step:
            for ph in re.findall(r"\{([^}]*)\}", arg):
                if ph not in FLASH_PLACEHOLDERS:
                    raise t._err(key, f"unknown placeholder {{{ph}}} (known: {', '.join(FLASH_PLACEHOLDERS)})")
    return tuple(tuple(step) for step in value)


def _parse_board(raw: dict, path: Path) -> Board:
    board_dir = path.parent
    top = _Table(raw, path, "")
    name = top.get("name", str)
    if name != board_dir.name:
        raise top._err("name", f"{name!r} must equal the directory name {board_dir.name!r}")
    description = top.get("description", str)
    core = top.get("core", str)
    arch = top.choice("arch", ARCHES)
    fpu = top.get("fpu", str)
    emulated = top.get("emulated", bool)

    tc = top.table("toolchain")
    toolchain = Toolchain(
        prefix=tc.get("prefix", str),
        apt_packages=tc.str_list("apt_packages"),
        cflags=tc.str_list("cflags"),
        ldflags=tc.str_list("ldflags", []),
        defines=tc.str_list("defines", []),
        libs=tc.str_list("libs", []),
    )
    tc.done()
    expected_prefix = {"arm": "arm-none-eabi-", "riscv": "riscv64-unknown-elf-"}[arch]
    if toolchain.prefix != expected_prefix:
        raise tc._err("prefix", f"arch {arch!r} expects {expected_prefix!r}")

    mt = top.table("memory")
    memory = Memory(
        flash_origin=mt.get("flash_origin", int),
        flash_bytes=mt.positive("flash_bytes"),
        ram_origin=mt.get("ram_origin", int),
        ram_bytes=mt.positive("ram_bytes"),
        ram_reserved_bytes=mt.get("ram_reserved_bytes", int),
        flash_reserved_bytes=mt.get("flash_reserved_bytes", int, 0),
        notes=mt.get("notes", str, ""),
    )
    mt.done()
    if not 0 <= memory.ram_reserved_bytes < memory.ram_bytes:
        raise mt._err("ram_reserved_bytes", "must be >= 0 and < ram_bytes")
    if not 0 <= memory.flash_reserved_bytes < memory.flash_bytes:
        raise mt._err("flash_reserved_bytes", "must be >= 0 and < flash_bytes")

    bt = top.table("build")
    build = Build(
        linker_script=_board_file(bt, "linker_script", bt.get("linker_script", str), board_dir),
        startup=tuple(_board_file(bt, "startup", s, board_dir) for s in bt.str_list("startup")),
        include_dirs=tuple(_board_file(bt, "include_dirs", s, board_dir) for s in bt.str_list("include_dirs", [])),
        lib_dirs=tuple(_board_file(bt, "lib_dirs", s, board_dir) for s in bt.str_list("lib_dirs", [])),
    )
    bt.done()

    ct = top.table("console")
    console = ct.choice("backend", CONSOLE_BACKENDS)
    ct.get("notes", str, "")
    ct.done()

    it = top.table("instret")
    instret = Instret(
        method=it.choice("method", INSTRET_METHODS),
        unit=it.choice("unit", INSTRET_UNITS),
        ticks_per_instruction=it.get("ticks_per_instruction", float, None),
        notes=it.get("notes", str, ""),
    )
    it.done()
    if (instret.method == "mps2_fpgaio") != (instret.ticks_per_instruction is not None):
        raise it._err("ticks_per_instruction", "required for (and only for) method = \"mps2_fpgaio\"")
    if (instret.method == "none") != (instret.unit == "none"):
        raise it._err("unit", "must be \"none\" exactly when method = \"none\"")

    qemu = None
    qt = top.table("qemu", required=False)
    if qt is not None:
        qemu = QemuSpec(
            binary=qt.get("binary", str),
            apt_package=qt.get("apt_package", str),
            machine=qt.get("machine", str),
            icount_shift=qt.get("icount_shift", int),
            extra_args=qt.str_list("extra_args", []),
            cpu=qt.get("cpu", str, None),
        )
        qt.done()
        if not 0 <= qemu.icount_shift <= 10:
            raise qt._err("icount_shift", "must be in 0..10")

    flash = None
    ft = top.table("flash", required=False)
    if ft is not None:
        alts = []
        for i, alt in enumerate(ft.get("alternatives", list, [])):
            at = _Table(alt, path, f"flash.alternatives[{i}]")
            alts.append(
                FlashAlternative(
                    tool=at.get("tool", str),
                    steps=_steps(at, "steps"),
                    install=at.get("install", str),
                    notes=at.get("notes", str, ""),
                )
            )
            at.done()
        flash = FlashSpec(
            tool=ft.get("tool", str),
            steps=_steps(ft, "steps"),
            install=ft.get("install", str),
            notes=ft.get("notes", str, ""),
            jlink_script=ft.get("jlink_script", str, None),
            alternatives=tuple(alts),
        )
        ft.done()

    if emulated and qemu is None:
        raise top._err("qemu", "an emulated board needs a [qemu] table")
    if not emulated and flash is None:
        raise top._err("flash", "a real board needs a [flash] table")
    if emulated and flash is not None:
        raise top._err("flash", "an emulated board has nothing to flash")

    st = top.table("stream")
    driver_rel = st.get("driver", str, "")
    stream = StreamSpec(
        uart=st.get("uart", str),
        base=st.get("base", int),
        baud=st.positive("baud"),
        driver=_board_file(st, "driver", driver_rel, board_dir) if driver_rel else None,
        pins=st.get("pins", str, ""),
        notes=st.get("notes", str, ""),
    )
    st.done()
    top.done()

    return Board(
        name=name,
        description=description,
        core=core,
        arch=arch,
        fpu=fpu,
        emulated=emulated,
        toolchain=toolchain,
        memory=memory,
        build=build,
        console=console,
        instret=instret,
        qemu=qemu,
        flash=flash,
        stream=stream,
        dir=board_dir.resolve(),
    )
