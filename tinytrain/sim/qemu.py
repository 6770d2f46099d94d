"""Run a board ELF under QEMU and collect what it printed, its exit code and its files.

    result = run_qemu(load_board("qemu-cortex-m4"), elf, timeout_s=10)
    result.stdout      # everything the program printed (semihosting console)
    result.exit_code   # main()'s return value (semihosting SYS_EXIT_EXTENDED)
    result.files       # files the program wrote with tt_host_write_file(), name -> bytes

Every run has stdin = /dev/null and a timeout, runs in a scratch working directory (where
semihosting file I/O lands), and uses ``-icount shift=<board's value>`` unless icount=False,
so instruction counts are deterministic. The semihosting console is routed through a QEMU
chardev to QEMU's stdout, so ``stdout`` holds the program's output in order for both
Cortex-M (newlib) and RISC-V (picolibc) and ``stderr`` holds only QEMU's own messages.

Errors: QemuNotFoundError (names the apt package), QemuTimeoutError (with the output so
far), QemuFaultError (the program hit a CPU fault: the fault line and output so far).
For programs that talk over the emulated UART, start_qemu() returns a running QemuProcess.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tinytrain.boards import Board, load_board

__all__ = [
    "FAULT_MARKERS",
    "QemuError",
    "QemuNotFoundError",
    "QemuTimeoutError",
    "QemuFaultError",
    "QemuResult",
    "QemuProcess",
    "qemu_available",
    "qemu_command",
    "run_qemu",
    "start_qemu",
]

# Lines our Cortex-M fault handlers (boards/common/arm/tt_cm_startup.c) and picolibc's
# RISC-V trap handler print before exiting.
FAULT_MARKERS = ("TT FAULT:", "RISCV fault")


class QemuError(RuntimeError):
    """Base class of QEMU run failures."""


class QemuNotFoundError(QemuError):
    """The qemu-system binary for the board is not installed."""


class QemuTimeoutError(QemuError):
    def __init__(self, message: str, stdout: str = "", stderr: str = ""):
        super().__init__(message)
        self.stdout = stdout
        self.stderr = stderr


class QemuFaultError(QemuError):
    def __init__(self, message: str, result: QemuResult):
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class QemuResult:
    stdout: str
    stderr: str
    exit_code: int
    elapsed_s: float
    files: dict[str, bytes] = field(default_factory=dict)
    command: tuple[str, ...] = ()

    @property
    def fault(self) -> str | None:
        """The fault line, if the program faulted."""
        for line in self.stdout.splitlines():
            if any(line.startswith(m) for m in FAULT_MARKERS):
                return line
        return None


def _as_board(board: Board | str) -> Board:
    return board if isinstance(board, Board) else load_board(board)


def _qemu_spec(board: Board):
    if board.qemu is None:
        raise QemuError(f"board {board.name!r} is not emulated (no [qemu] table); flash it instead")
    return board.qemu


def qemu_available(board: Board | str) -> bool:
    board = _as_board(board)
    return board.qemu is not None and shutil.which(board.qemu.binary) is not None


def qemu_command(
    board: Board | str,
    elf: Path | str,
    *,
    icount: bool = True,
    serial: str = "null",
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The QEMU command line run_qemu() uses. ``serial`` is a QEMU chardev spec for the
    board's first UART (``"null"``, ``"tcp:127.0.0.1:5555"``, ``"pty"``, ``"file:out.bin"``)."""
    board = _as_board(board)
    q = _qemu_spec(board)
    cmd = [q.binary, "-M", q.machine]
    if q.cpu:
        cmd += ["-cpu", q.cpu]
    cmd += ["-display", "none", "-monitor", "none", "-serial", serial]
    cmd += ["-chardev", "stdio,id=tt_console,signal=off"]
    cmd += ["-semihosting-config", "enable=on,target=native,chardev=tt_console"]
    if icount:
        cmd += ["-icount", f"shift={q.icount_shift}"]
    cmd += [*q.extra_args, *extra_args, "-kernel", str(Path(elf).resolve())]
    return cmd


def _require_binary(board: Board) -> None:
    q = _qemu_spec(board)
    if shutil.which(q.binary) is None:
        raise QemuNotFoundError(
            f"{q.binary} not found (needed for board {board.name!r}); install it with:\n"
            f"  apt-get install -y --no-install-recommends {q.apt_package}"
        )


class QemuProcess:
    """A running QEMU (from start_qemu). Use as a context manager: leaving the block kills
    QEMU if it is still running. ``wait()`` returns the QemuResult."""

    def __init__(self, board: Board, cmd: list[str], workdir: Path, own_workdir: bool, inputs: Mapping[str, bytes]):
        self.board = board
        self.command = tuple(cmd)
        self.workdir = workdir
        self._own_workdir = own_workdir
        self._inputs = dict(inputs)
        self._start = time.monotonic()
        self.proc = subprocess.Popen(
            cmd,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # our own process group: a timeout kills only QEMU
        )

    def poll(self) -> int | None:
        return self.proc.poll()

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def wait(self, timeout_s: float = 10.0, *, raise_on_fault: bool = True) -> QemuResult:
        try:
            out, err = self.proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            out, err = self.proc.communicate()
            self._cleanup()
            text = out.decode(errors="replace")
            raise QemuTimeoutError(
                f"QEMU ({self.board.name}) did not finish within {timeout_s:g} s; output so far:\n{_tail(text)}",
                stdout=text,
                stderr=err.decode(errors="replace"),
            ) from None
        elapsed = time.monotonic() - self._start
        files = self._collect_files()
        self._cleanup()
        result = QemuResult(
            stdout=out.decode(errors="replace"),
            stderr=err.decode(errors="replace"),
            exit_code=self.proc.returncode,
            elapsed_s=elapsed,
            files=files,
            command=self.command,
        )
        if raise_on_fault and result.fault is not None:
            raise QemuFaultError(
                f"program faulted on {self.board.name}: {result.fault}\n(exit code {result.exit_code})\n"
                f"{_tail(result.stdout)}",
                result,
            )
        binary = Path(self.command[0]).name
        qemu_errors = [ln for ln in result.stderr.splitlines() if ln.startswith(binary + ":")]
        if result.exit_code < 0 or (result.exit_code != 0 and qemu_errors and not result.stdout):
            # Killed by a signal, or QEMU refused to start (bad machine, unreadable ELF, ...).
            raise QemuError(f"QEMU failed on {self.board.name} (exit {result.exit_code}):\n{result.stderr.strip()}")
        return result

    def _collect_files(self) -> dict[str, bytes]:
        files = {}
        for p in sorted(self.workdir.rglob("*")):
            if not p.is_file():
                continue
            rel = p.relative_to(self.workdir).as_posix()
            data = p.read_bytes()
            if self._inputs.get(rel) != data:
                files[rel] = data
        return files

    def _cleanup(self) -> None:
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> QemuProcess:
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.kill()
            self.proc.communicate()
        self._cleanup()


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.splitlines()[-lines:])


def start_qemu(
    board: Board | str,
    elf: Path | str,
    *,
    icount: bool = True,
    serial: str = "null",
    extra_args: Sequence[str] = (),
    input_files: Mapping[str, bytes] | None = None,
    workdir: Path | str | None = None,
) -> QemuProcess:
    """Start QEMU without waiting (for UART conversations). ``input_files`` are written
    into the working directory first (the program can read them via tt_host_read_file)."""
    board = _as_board(board)
    _require_binary(board)
    if not Path(elf).is_file():
        raise FileNotFoundError(f"ELF not found: {elf}")
    own = workdir is None
    wd = Path(tempfile.mkdtemp(prefix=f"tt-qemu-{board.name}-")) if own else Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    inputs = dict(input_files or {})
    for name, data in inputs.items():
        target = wd / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    cmd = qemu_command(board, elf, icount=icount, serial=serial, extra_args=extra_args)
    return QemuProcess(board, cmd, wd, own, inputs)


def run_qemu(
    board: Board | str,
    elf: Path | str,
    timeout_s: float = 10.0,
    icount: bool = True,
    *,
    serial: str = "null",
    extra_args: Sequence[str] = (),
    input_files: Mapping[str, bytes] | None = None,
    workdir: Path | str | None = None,
    raise_on_fault: bool = True,
) -> QemuResult:
    """Run ``elf`` on the board's QEMU machine to completion (see the module docstring)."""
    with start_qemu(
        board, elf, icount=icount, serial=serial, extra_args=extra_args, input_files=input_files, workdir=workdir
    ) as proc:
        return proc.wait(timeout_s, raise_on_fault=raise_on_fault)
