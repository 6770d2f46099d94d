"""Flash an ELF onto a real board with the board's tool (pyocd, openocd, picotool, esptool,
nrfjprog, J-Link), or just show the exact commands.

    plan = flash("nucleo-l476rg", elf)                 # dry run: prints the commands
    flash("nucleo-l476rg", elf, dry_run=False)         # runs them
    flash("esp32-c3", elf, port="/dev/ttyUSB0", tool="esptool")

Command templates come from the board's ``[flash]`` table (``steps`` plus
``[[flash.alternatives]]``); placeholders: {elf} {hex} {bin} (next to the ELF), {objcopy}
(the board toolchain's objcopy), {port} (serial port), {jlink_script} (a J-Link Commander
script written next to the ELF). Failures — tool not installed, no probe/board found, a
step failing — raise FlashError with a one-paragraph explanation; ``python -m
tinytrain.flash`` prints that message without a traceback.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tinytrain.boards import Board, BoardConfigError, UnknownBoardError, load_board

__all__ = ["FlashError", "FlashStep", "FlashPlan", "flash_plan", "flash", "main"]

# Output fragments by which the tools say "no probe / no device".
_NO_DEVICE_HINTS = (
    "No connected debug probes",
    "No available debug probes",
    "no probe",
    "unable to find a matching CMSIS-DAP device",
    "unable to find an ST-Link",
    "open failed",
    "No J-Link device found",
    "Cannot connect to J-Link",
    "Connecting to J-Link via USB...FAILED",
    "No accessible RP2040 devices in BOOTSEL mode were found",
    "No accessible RP-series devices in BOOTSEL mode were found",
    "Could not open port",
    "Failed to connect to ESP32",
    "could not find port",
    "LIBUSB_ERROR",
    "There is no debugger connected",
    "No debugger",
)


class FlashError(RuntimeError):
    """Flashing is not possible or failed; the message says why and what to do."""


@dataclass(frozen=True)
class FlashStep:
    argv: tuple[str, ...]
    writes: tuple[tuple[Path, str], ...] = ()  # files created before the command runs

    def __str__(self) -> str:
        return shlex.join(self.argv)


@dataclass(frozen=True)
class FlashPlan:
    board: str
    tool: str
    install: str
    steps: tuple[FlashStep, ...]
    notes: str

    def commands(self) -> list[str]:
        return [str(s) for s in self.steps]

    def describe(self) -> str:
        lines = [f"# flash {self.board} with {self.tool}"]
        if self.notes:
            lines.append(f"# {self.notes}")
        for step in self.steps:
            for path, content in step.writes:
                lines.append(f"# write {path}:")
                lines += [f"#   {ln}" for ln in content.splitlines()]
            lines.append(str(step))
        return "\n".join(lines)


def _as_board(board: Board | str) -> Board:
    return board if isinstance(board, Board) else load_board(board)


def flash_plan(board: Board | str, elf: Path | str, *, port: str | None = None, tool: str | None = None) -> FlashPlan:
    """The exact commands that flash ``elf`` onto ``board`` (nothing is run).

    ``tool`` picks one of the board's alternatives by tool name (default: the primary).
    """
    board = _as_board(board)
    if board.flash is None:
        raise FlashError(f"board {board.name!r} is emulated: run it with tinytrain.sim.qemu.run_qemu instead")
    spec = board.flash
    options = [(spec.tool, spec.steps, spec.install, spec.notes)]
    options += [(a.tool, a.steps, a.install, a.notes) for a in spec.alternatives]
    if tool is not None:
        matching = [o for o in options if o[0] == tool]
        if not matching:
            raise FlashError(
                f"board {board.name!r} has no flash recipe for {tool!r}; "
                f"choose one of: {', '.join(o[0] for o in options)}"
            )
        chosen = matching[0]
    else:
        chosen = options[0]
    tool_name, step_templates, install, notes = chosen

    elf = Path(elf).resolve()
    values = {
        "elf": str(elf),
        "hex": str(elf.with_suffix(".hex")),
        "bin": str(elf.with_suffix(".bin")),
        "objcopy": board.toolchain.tool("objcopy"),
        "port": port or "",
        "jlink_script": str(elf.with_suffix(".jlink")),
    }
    steps = []
    for template in step_templates:
        text = " ".join(template)
        if "{port}" in text and not port:
            raise FlashError(
                f"flashing {board.name!r} with {tool_name} needs a serial port: pass port=... "
                "(e.g. /dev/ttyUSB0 or /dev/ttyACM0)"
            )
        writes = ()
        if "{jlink_script}" in text:
            if spec.jlink_script is None:
                raise BoardConfigError(
                    f"{board.dir / 'board.toml'}: flash uses {{jlink_script}} but defines no jlink_script"
                )
            writes = ((Path(values["jlink_script"]), spec.jlink_script.format(**values)),)
        steps.append(FlashStep(tuple(arg.format(**values) for arg in template), writes))
    return FlashPlan(board=board.name, tool=tool_name, install=install, steps=tuple(steps), notes=notes)


def flash(
    board: Board | str,
    elf: Path | str,
    dry_run: bool = True,
    *,
    port: str | None = None,
    tool: str | None = None,
    echo: Callable[[str], None] | None = print,
    timeout_s: float = 300.0,
) -> FlashPlan:
    """Show (dry_run=True, the default) or run the commands that flash ``elf``.

    Returns the FlashPlan. Without dry run, raises FlashError when the ELF or a tool is
    missing (with the install command), when no probe/board answers, or when a step fails.
    """
    board = _as_board(board)
    plan = flash_plan(board, elf, port=port, tool=tool)
    if echo is not None:
        echo(plan.describe())
    if dry_run:
        return plan
    if not Path(elf).is_file():
        raise FlashError(f"ELF not found: {elf}")
    for step in plan.steps:
        exe = step.argv[0]
        if shutil.which(exe) is None:
            alts = [a.tool for a in board.flash.alternatives if a.tool != plan.tool] + (
                [board.flash.tool] if plan.tool != board.flash.tool else []
            )
            other = f" Other recipes for this board: {', '.join(alts)} (tool=...)." if alts else ""
            raise FlashError(f"{exe} is not installed. Install it: {plan.install}.{other}")
    for step in plan.steps:
        for path, content in step.writes:
            path.write_text(content)
        try:
            proc = subprocess.run(
                list(step.argv), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout_s
            )
        except subprocess.TimeoutExpired:
            raise FlashError(f"{step.argv[0]} did not finish within {timeout_s:.0f} s: {step}") from None
        output = (proc.stdout + proc.stderr).strip()
        if proc.returncode != 0:
            tail = "\n".join(output.splitlines()[-15:])
            if any(h.lower() in output.lower() for h in _NO_DEVICE_HINTS):
                raise FlashError(
                    f"{step.argv[0]} found no debug probe / board for {board.name!r}. Is it connected and powered "
                    f"(and, for picotool, in BOOTSEL mode)? Do you have USB permissions (udev rules)?\n{tail}"
                )
            raise FlashError(f"flash step failed (exit {proc.returncode}): {step}\n{tail}")
        if echo is not None and output:
            echo(output)
    return plan


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tinytrain.flash BOARD ELF [--run] [--port P] [--tool T]``."""
    ap = argparse.ArgumentParser(prog="python -m tinytrain.flash", description="Flash an ELF onto a board.")
    ap.add_argument("board")
    ap.add_argument("elf")
    ap.add_argument("--run", action="store_true", help="run the commands (default: only print them)")
    ap.add_argument("--port", help="serial port, for boards flashed over UART (esp32-c3)")
    ap.add_argument("--tool", help="use one of the board's alternative flash tools")
    args = ap.parse_args(argv)
    try:
        flash(args.board, args.elf, dry_run=not args.run, port=args.port, tool=args.tool)
    except (FlashError, UnknownBoardError, BoardConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
