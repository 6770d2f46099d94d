"""The board sub-commands of the `tinytrain` command line: build, run, flash, stream.

``add_board_commands(subparsers)`` registers them on the main parser's sub-parsers; each
handler returns an exit status and raises TinytrainError subclasses (DeviceError and
friends) for everything a user can cause, which the main CLI prints as one paragraph.
"""
from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

import numpy as np

from .errors import TinytrainError

__all__ = ["add_board_commands", "cmd_build", "cmd_run", "cmd_flash", "cmd_stream"]

_BOARDS_HELP = ("emulated: qemu-cortex-m4, qemu-cortex-m7, qemu-rv32imac, qemu-rv32imafc; "
                "real: stm32f746g-disco, nucleo-l476rg, nrf52840-dk, rpi-pico, esp32-c3, "
                "hifive1-revb (boards/README.md)")

_MODES_EPILOG = """\
firmware modes (--mode):
  train       train --steps samples baked into flash from --data (cycling through them),
              then report every loss, instructions per training step and per inference,
              and the trained parameters (semihosting: QEMU, or a debugger on a real board)
  infer       inference on the baked samples
  stream      train on samples sent over the board's UART (`tinytrain stream`); needs a
              UART driver for the board (the four QEMU boards have one)
  checkpoint  train with a power-safe two-slot checkpoint every --checkpoint-every steps;
              after a reset it resumes from the newest complete checkpoint
"""


def _console():
    from rich.console import Console
    return Console(highlight=False, width=None if sys.stdout.isatty() else 120)


def _device_errors(fn):
    """Turn the board layer's own exceptions into TinytrainError subclasses."""
    def wrapper(args):
        from .boards import BoardConfigError, UnknownBoardError
        from .device import DeviceError
        from .flash import FlashError
        from .sim.qemu import QemuError
        from .stream import LinkError
        try:
            return fn(args)
        except (UnknownBoardError, BoardConfigError, FlashError, QemuError, LinkError) as e:
            raise DeviceError(str(e)) from None
    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


def _load_data(path, limit: int | None = None):
    from .pipeline import load_npz
    if path is None:
        return None
    d = load_npz(path)
    x, y = d["x_train"], d["y_train"]
    if limit is not None:
        if limit < 1:
            raise TinytrainError(f"--samples must be >= 1, got {limit}")
        x, y = x[:limit], y[:limit]
    return x, y


# ----------------------------------------------------------------------------------- build
@_device_errors
def cmd_build(args):
    from .device import build_firmware
    con = _console()
    data = _load_data(args.data, args.samples)
    if data is None and args.mode in ("train", "infer", "checkpoint"):
        con.print("[yellow]no --data: baking one all-zero sample (enough to check that the "
                  "firmware builds and fits)[/yellow]")
    with con.status(f"cross-compiling for {args.board}..."):
        img = build_firmware(args.project, args.board, data=data, steps=args.steps, mode=args.mode,
                             checkpoint_every=args.checkpoint_every, out_dir=args.output,
                             opt=args.opt, check_fit=not args.no_fit_check)
    con.print(f"{img.elf} ({'from cache' if img.cached else 'built'}; {args.mode} firmware for "
              f"{img.board.name}, {img.board.core})")
    con.print(img.memory.render())
    return 0


# ------------------------------------------------------------------------------------- run
@_device_errors
def cmd_run(args):
    from rich.table import Table
    from .device import DeviceError, build_firmware, run_on_board
    con = _console()
    data = _load_data(args.data, args.samples)
    x, y = data
    steps = args.steps if args.steps is not None else len(x)
    with con.status(f"cross-compiling for {args.board}..."):
        img = build_firmware(args.project, args.board, data=(x, y), steps=steps, mode="train",
                             opt=args.opt)
    with con.status(f"training {steps} steps on {args.board} (QEMU)..."):
        run = run_on_board(args.project, args.board, x, y, steps, image=img, timeout_s=args.timeout)
    losses = run.losses.astype(np.float64)
    k = max(1, min(5, len(losses) // 2))
    con.print(f"{run.board}: {run.steps} training steps in {run.elapsed_s:.2f} s of emulation")
    con.print(f"loss: first {losses[0]:.6g}, last {losses[-1]:.6g}; mean of the first {k} "
              f"{losses[:k].mean():.6g}, of the last {k} {losses[-k:].mean():.6g}")
    nan = int(np.sum(run.status == 3))
    if nan:
        con.print(f"[red]{nan} steps hit NaN/Inf (their batches were dropped)[/red]")
    unit = run.instret_unit
    if unit != "none":
        ips = run.instret_per_step
        con.print(f"{unit} per training step: mean {ips.mean():,.0f} (min {ips.min():,}, max "
                  f"{ips.max():,}); per inference: {run.instret_infer:,}")
    if args.all_losses:
        t = Table(title="every loss (exact float32 bits)", title_justify="left")
        for c in ("step", "loss", "bits", unit if unit != "none" else "status"):
            t.add_column(c, justify="right")
        for i in range(run.steps):
            t.add_row(str(i), f"{losses[i]:.9g}", f"0x{int(run.loss_bits[i]):08x}",
                      f"{int(run.instret_per_step[i]):,}" if unit != "none" else str(int(run.status[i])))
        con.print(t)
    con.print(run.memory.render())
    if args.check_host:
        from .sim.host import HostModel
        with con.status("training the same samples with the host simulator..."):
            host = HostModel(args.project)
            hl = np.array([host.train_step(x[i % len(x)], y[i % len(x):i % len(x) + 1])
                           for i in range(steps)], np.float32)
            hp = host.params
        same_l = np.array_equal(hl.view(np.uint32), run.loss_bits)
        diff = [n for n, v in run.params.items() if not np.array_equal(v.view(np.uint32), hp[n].view(np.uint32))]
        if same_l and not diff:
            con.print(f"[green]bit-identical to the host simulator[/green]: {steps} losses, "
                      f"{len(run.params)} parameter tensors")
        else:
            first = int(np.argmax(hl.view(np.uint32) != run.loss_bits)) if not same_l else None
            raise DeviceError(
                f"{run.board} differs from the host simulator: "
                + (f"losses from step {first} ({run.losses[first]!r} vs {hl[first]!r})" if first is not None else "")
                + (f"{'; ' if first is not None else ''}parameters {', '.join(diff)}" if diff else ""))
    if nan:
        return 1
    return 0


# ----------------------------------------------------------------------------------- flash
@_device_errors
def cmd_flash(args):
    from .device import as_board, build_firmware
    from .flash import flash
    con = _console()
    board = as_board(args.board)
    if board.emulated:
        raise TinytrainError(f"board {board.name!r} is emulated: nothing to flash. Use "
                             f"`tinytrain run {args.project} --board {board.name} --data ...`.")
    mode = args.mode or ("stream" if board.stream.driver is not None else "train")
    data = _load_data(args.data, args.samples)
    with con.status(f"cross-compiling for {board.name}..."):
        img = build_firmware(args.project, board, data=data, steps=args.steps, mode=mode,
                             checkpoint_every=args.checkpoint_every, opt=args.opt)
    con.print(f"{img.elf}: {mode} firmware for {board.name}")
    con.print(img.memory.render())
    if mode != "stream":
        con.print("[yellow]note: this firmware reports through semihosting: run it under a "
                  "debugger with semihosting enabled (openocd `arm semihosting enable`, pyocd "
                  "--semihosting), or it stops at its first report[/yellow]")
    plan = flash(board, img.elf, dry_run=args.dry_run, port=args.port, tool=args.tool,
                 echo=con.print if args.dry_run else None)
    if not args.dry_run:
        con.print(f"flashed {board.name} with {plan.tool}")
    return 0


# ---------------------------------------------------------------------------------- stream
@_device_errors
def cmd_stream(args):
    from rich.progress import Progress
    from .device import StreamSession, as_board, build_firmware, emulated_link, stream_train
    from .sim.host import read_manifest
    from .stream import open_link
    con = _console()
    manifest = read_manifest(args.project)
    x, y = _load_data(args.data, args.samples)
    x = np.concatenate([x] * args.epochs)
    y = np.concatenate([y] * args.epochs)
    if args.port is None and args.board is None:
        raise TinytrainError("say where the device is: --port PORT (serial device, pty or "
                             "tcp:HOST:PORT), or --board qemu-... to start an emulated one")
    board = as_board(args.board) if args.board else None
    qemu_ctx = None
    if args.port is None:
        if not board.emulated:
            raise TinytrainError(f"board {board.name!r} is real: flash it (`tinytrain flash "
                                 f"{args.project} --board {board.name}`) and pass --port")
        with con.status(f"cross-compiling the stream firmware for {board.name}..."):
            img = build_firmware(args.project, board, mode="stream", opt=args.opt)
        qemu_ctx = emulated_link(img)
        link, qemu = qemu_ctx.__enter__()
        con.print(f"started QEMU ({board.name}) with the stream firmware")
    else:
        baud = args.baud or (board.stream.baud if board else 115200)
        link = open_link(args.port, baud=baud)
    try:
        session = StreamSession(link, manifest, timeout_s=args.timeout,
                                step_timeout_s=max(args.timeout, 60.0),
                                hello_timeout_s=10.0 if qemu_ctx is not None else 0.5)
        info = session.info
        con.print(f"device: model {info['model_hash']:08x}, optimizer step {info['step']}"
                  + (", resumed from its checkpoint" if info["restored"] else ""))
        losses = []
        with Progress(console=con, transient=True) as prog:
            task = prog.add_task("streaming samples", total=len(x))

            def progress(_i, rep):
                losses.extend(rep.losses.tolist())
                prog.advance(task)

            stream_train(session, x, y, steps_per_sample=args.steps_per_sample,
                         checkpoint_every=args.checkpoint_every, progress=progress)
        status = session.status()
        con.print(f"trained {len(x)} streamed samples ({len(losses)} steps); device optimizer "
                  f"step {status['step']}, non-finite batches {status['nonfinite']}")
        if losses:
            k = max(1, min(10, len(losses) // 2))
            con.print(f"loss: mean of the first {k} {np.mean(losses[:k]):.6g}, of the last {k} "
                      f"{np.mean(losses[-k:]):.6g}")
        if args.save_checkpoint:
            blob = session.read_checkpoint()
            Path(args.save_checkpoint).write_bytes(blob)
            con.print(f"device checkpoint ({len(blob):,} bytes) written to {args.save_checkpoint} "
                      "(load it with `tinytrain simulate --checkpoint` / HostModel.load_checkpoint)")
        if qemu_ctx is not None:
            session.halt()
            qemu.wait(10)
    finally:
        if qemu_ctx is not None:
            qemu_ctx.__exit__(None, None, None)
        else:
            link.close()
    return 0


# ------------------------------------------------------------------------------- registration
def _common(s, *, data_required=False):
    s.add_argument("project", help="directory written by `tinytrain export`")
    s.add_argument("--data", required=data_required, metavar="FILE.npz",
                   help=".npz with x_train, y_train (samples and labels / targets)")
    s.add_argument("--samples", type=int, metavar="N",
                   help="use only the first N samples of --data")
    s.add_argument("--opt", default="-O2", help="optimisation flag for the cross compiler (default -O2)")


def add_board_commands(subparsers) -> None:
    """Register build, run, flash and stream on the `tinytrain` sub-parsers."""
    fmt = argparse.RawDescriptionHelpFormatter

    s = subparsers.add_parser(
        "build", help="cross-compile an exported project into firmware for a board",
        formatter_class=fmt, epilog=_MODES_EPILOG + textwrap.dedent("""
        examples:
          tinytrain build out/ --board nucleo-l476rg
          tinytrain build out/ --board qemu-cortex-m4 --data d.npz --steps 50
          tinytrain build out/ --board hifive1-revb --mode infer
        """),
        description=textwrap.dedent("""\
        Cross-compile the exported project (its tt_model.c and runtime kernels) with a
        firmware main for the board (-std=c99 -Wall -Wextra -Werror -ffp-contract=off and
        the board's cpu/fpu flags, the board's startup code and linker script) into an ELF,
        written to PROJECT/build/BOARD-MODE/firmware.elf unless -o says otherwise.

        Before compiling, the RAM and flash the model needs (planned arena, trainable
        parameters, gradients, optimizer state, firmware buffers, stack and code
        estimates) are checked against the board's budget; a model that does not fit is
        refused with the budget table and the overflow in bytes. After linking, the table
        is printed again as measured from the ELF: the model's arrays by symbol size, code
        by section size, and the stack as the worst call chain in gcc's call graph.
        Builds are cached by content ($TINYTRAIN_CACHE/firmware)."""))
    _common(s)
    s.add_argument("--board", required=True, metavar="NAME", help=_BOARDS_HELP)
    s.add_argument("--mode", default="train", choices=["train", "infer", "stream", "checkpoint"],
                   help="which firmware main (default train; see below)")
    s.add_argument("--steps", type=int, metavar="N",
                   help="training steps the train/checkpoint firmware runs (default: one pass "
                        "over the baked samples)")
    s.add_argument("--checkpoint-every", type=int, default=4, metavar="K",
                   help="checkpoint firmware: optimizer steps between checkpoints (default 4)")
    s.add_argument("-o", "--output", metavar="DIR", help="where to write firmware.elf")
    s.add_argument("--no-fit-check", action="store_true",
                   help="build even if the estimate says the model does not fit (the linker "
                        "still refuses a program larger than the memory)")
    s.set_defaults(func=cmd_build)

    s = subparsers.add_parser(
        "run", help="train on an emulated board (QEMU) and report losses, instructions, memory",
        formatter_class=fmt, epilog=textwrap.dedent("""\
        examples:
          tinytrain run out/ --board qemu-cortex-m4 --data d.npz --steps 20
          tinytrain run out/ --board qemu-rv32imafc --data d.npz --steps 20 --check-host

        exit status:
          0 success, 1 some steps hit NaN/Inf (their batches were dropped), 2 error.
        """),
        description=textwrap.dedent("""\
        Build the train firmware with the --data samples baked into flash, run it under QEMU
        (-icount: instruction counts are deterministic) for --steps training steps, one
        sample per step, cycling through the samples, and print a summary of the losses,
        the instructions retired per training step and per inference (tt_train_step /
        tt_infer measured on the core's instruction counter: rdinstret on RISC-V, the MPS2
        FPGAIO counter on Cortex-M), and the RAM/flash table.

        Every loss and the trained parameters come back as exact float32 bits (semihosting
        file transfer); --check-host trains the same samples with the host simulator and
        checks that both are bit-identical."""))
    _common(s, data_required=True)
    s.add_argument("--board", required=True, metavar="NAME",
                   help="an emulated board: qemu-cortex-m4, qemu-cortex-m7, qemu-rv32imac, "
                        "qemu-rv32imafc")
    s.add_argument("--steps", type=int, metavar="N", help="training steps (default: one pass)")
    s.add_argument("--timeout", type=float, default=300.0, metavar="S",
                   help="stop QEMU after S seconds (default 300)")
    s.add_argument("--all-losses", action="store_true", help="print every loss with its bits")
    s.add_argument("--check-host", action="store_true",
                   help="compare losses and parameters bit for bit with the host simulator")
    s.set_defaults(func=cmd_run)

    s = subparsers.add_parser(
        "flash", help="build firmware for a real board and flash it (or show how)",
        formatter_class=fmt, epilog=_MODES_EPILOG + textwrap.dedent("""
        examples:
          tinytrain flash out/ --board nucleo-l476rg --dry-run
          tinytrain flash out/ --board esp32-c3 --port /dev/ttyUSB0
          tinytrain flash out/ --board hifive1-revb --tool JLinkExe
        """),
        description=textwrap.dedent("""\
        Build the firmware (as `tinytrain build`) and flash it with the board's tool:
        pyocd, openocd, picotool, esptool, nrfjprog or J-Link, as its board.toml says.
        --dry-run prints the exact commands instead of running them. The default mode is
        stream when the board has a UART driver, else train (which reports through
        semihosting, so it needs a debugger attached)."""))
    _common(s)
    s.add_argument("--board", required=True, metavar="NAME", help=_BOARDS_HELP)
    s.add_argument("--mode", choices=["train", "infer", "stream", "checkpoint"],
                   help="firmware main (default: stream if the board has a UART driver, else train)")
    s.add_argument("--steps", type=int, metavar="N", help="train/checkpoint firmware: training steps")
    s.add_argument("--checkpoint-every", type=int, default=4, metavar="K",
                   help="checkpoint firmware: optimizer steps between checkpoints (default 4)")
    s.add_argument("--port", help="serial port, for boards flashed over UART (esp32-c3)")
    s.add_argument("--tool", help="use one of the board's alternative flash recipes (e.g. openocd)")
    s.add_argument("--dry-run", action="store_true", help="print the flash commands, run nothing")
    s.set_defaults(func=cmd_flash)

    s = subparsers.add_parser(
        "stream", help="train on the device from samples sent over its UART",
        formatter_class=fmt, epilog=textwrap.dedent("""\
        protocol:
          frames as in docs/uart-protocol.md: SAMPLE_LABEL (f32 sample, i32 class or f32
          target), STEP (n steps), REPORT (status, checkpoint read), SAVE_CHECKPOINT;
          stop-and-wait, resent on timeout, and the device answers a resent frame without
          executing it twice.

        examples:
          tinytrain stream out/ --board qemu-cortex-m4 --data d.npz
          tinytrain stream out/ --port /dev/ttyACM0 --data d.npz --checkpoint-every 50
          tinytrain stream out/ --port tcp:127.0.0.1:5555 --data d.npz --save-checkpoint ck.bin
        """),
        description=textwrap.dedent("""\
        The host side of the stream firmware (`tinytrain build --mode stream`, or `flash`):
        send every sample of --data with its label over the UART, let the device train on
        it (tt_train_step, --steps-per-sample times), and print the losses it reports.
        With --checkpoint-every the device commits a power-safe checkpoint to its two-slot
        store every K samples; after a reset it resumes from the newest one.

        --port is a serial device (/dev/ttyACM0), a pty or tcp:HOST:PORT. Without --port,
        --board qemu-... starts the emulated board with the stream firmware and talks to
        its emulated UART. The device must run firmware built from this PROJECT (the model
        hash is checked). UART drivers exist for the four QEMU boards; the real boards'
        [stream] tables in boards/*/board.toml describe what a driver needs."""))
    _common(s, data_required=True)
    s.add_argument("--port", metavar="PORT", help="serial device, pty, or tcp:HOST:PORT")
    s.add_argument("--board", metavar="NAME",
                   help="with --port: the board (for its baud rate); without: an emulated board to start")
    s.add_argument("--baud", type=int, help="baud rate (default: the board's, else 115200)")
    s.add_argument("--epochs", type=int, default=1, help="passes over the samples (default 1)")
    s.add_argument("--steps-per-sample", type=int, default=1, metavar="N",
                   help="training steps on each sample (default 1)")
    s.add_argument("--checkpoint-every", type=int, metavar="K",
                   help="commit a device checkpoint every K samples")
    s.add_argument("--save-checkpoint", metavar="FILE",
                   help="at the end, read the device's model checkpoint into FILE")
    s.add_argument("--timeout", type=float, default=10.0, metavar="S",
                   help="seconds to wait for each reply before resending (default 10)")
    s.set_defaults(func=cmd_stream)
