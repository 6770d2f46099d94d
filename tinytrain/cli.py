"""The `tinytrain` command line. Every user-caused error prints one readable paragraph and
exits with status 2; tracebacks are for bugs only (TINYTRAIN_DEBUG=1 shows them anyway)."""
from __future__ import annotations

import argparse
import os
import sys
import textwrap
from pathlib import Path


from . import __version__
from .errors import TinytrainError

DESCRIPTION = """\
tinytrain turns a small neural network (ONNX) into self-contained C99 that trains the model
on a microcontroller: forward pass, backpropagation, loss and optimizer over one static
memory arena, with no dynamic allocation. The same code runs on your PC (host simulation,
checked against a numpy reference) and on Cortex-M / RISC-V boards.

Typical flow:
  tinytrain inspect model.onnx                      what training would cost, layer by layer
  tinytrain train model.onnx --data d.npz           train in the numpy reference (no C)
  tinytrain export model.onnx -o out/ --trainable last:1 --lr 0.05
  tinytrain simulate out/ --data d.npz --epochs 5   train with the generated C on this PC
  tinytrain build out/ --board nucleo-l476rg        cross-compile; RAM/flash table vs budget
  tinytrain run out/ --board qemu-cortex-m4 --data d.npz --check-host
                                                    train on an emulated MCU, count instructions
  tinytrain flash out/ --board stm32f746g-disco --dry-run
  tinytrain stream out/ --port /dev/ttyACM0 --data d.npz   train on the device over UART
"""

EPILOG = """\
data files:
  .npz archives with x_train (float32, [N, *input shape]) and y_train (int class indices,
  or float targets for --loss mse); x_test / y_test are optional and used for accuracy.

trainable sets (--trainable):
  all        every parameter (default)
  last:N     the parameters of the last N layers (e.g. last:1 = the classifier)
  bias       biases only (TinyTL-style: tiny memory, no saved activations for weights)
  NAMES      comma-separated parameter names or regular expressions, e.g. 'fc2\\..*,conv1.bias'
  Layers before the first trainable one compute no input gradients, and frozen layers keep
  no activations for the backward pass: a smaller trainable set needs less RAM.
  With --algo zo / jvp the trainable set is also the set of perturbed parameters (sparse
  perturbation): random directions are drawn only for it, which lowers the estimator's
  variance and, for jvp, skips the tangents of every layer before it.

exit status:
  0 success, 1 training stopped on a numeric fault (weights kept), 2 bad input or usage.

environment:
  CC                 host C compiler for simulate (default: cc)
  TINYTRAIN_CACHE    where compiled host libraries are cached (default ~/.cache/tinytrain)
  TINYTRAIN_DEBUG=1  show Python tracebacks for errors
"""


def _add_train_options(p):
    g = p.add_argument_group("training options")
    g.add_argument("--trainable", default="all", metavar="SET",
                   help="which parameters learn: all | last:N | bias | names/regexes (default all)")
    g.add_argument("--loss", default="cross_entropy", choices=["cross_entropy", "mse"],
                   help="softmax cross-entropy over class logits, or mean squared error")
    g.add_argument("--optimizer", default="sgd", choices=["sgd", "momentum", "adam"])
    g.add_argument("--lr", type=float, default=0.01, help="learning rate (default 0.01)")
    g.add_argument("--momentum", type=float, default=0.9, help="momentum factor (default 0.9)")
    g.add_argument("--weight-decay", type=float, default=0.0, help="L2 weight decay (default 0)")
    g.add_argument("--schedule", default="constant", choices=["constant", "cosine", "step"],
                   help="learning-rate schedule over optimizer steps")
    g.add_argument("--total-steps", type=int, default=1000,
                   help="cosine schedule: optimizer steps to decay to zero (default 1000)")
    g.add_argument("--step-size", type=int, default=100,
                   help="step schedule: multiply by --gamma every this many steps")
    g.add_argument("--gamma", type=float, default=0.1)
    g.add_argument("--batch", type=int, default=1,
                   help="samples per optimizer step (the device accumulates gradients over "
                        "them; the arena still holds one sample)")
    z = p.add_argument_group("forward-gradient options (--algo zo / jvp)")
    z.add_argument("--perturbations", type=int, default=1, metavar="N",
                   help="random directions averaged per optimizer step (default 1)")
    z.add_argument("--eps", type=float, default=1e-3,
                   help="zo perturbation size: losses are taken at w + eps*z and w - eps*z")
    z.add_argument("--eps-halve-every", type=int, default=0, metavar="N",
                   help="zo eps schedule: halve eps every N optimizer steps (0: constant)")
    z.add_argument("--eps-halvings", type=int, default=4, metavar="H",
                   help="zo eps schedule: at most H halvings (default 4: eps/16)")
    z.add_argument("--zo-dist", default="rademacher", choices=["rademacher", "gaussian"],
                   help="distribution of the direction z / tangent v (default rademacher, +-1)")
    z.add_argument("--zo-estimator", default="spsa", choices=["spsa", "sign"],
                   help="spsa: step along d*z with d = (L+ - L-)/(2 eps) (zo) or dL.v (jvp); "
                        "sign: along sign(d)*z")
    z.add_argument("--zo-seed", type=int, default=0, help="seed of the perturbation PRNG")
    z.add_argument("--hybrid-bp-layers", type=int, default=0, metavar="N",
                   help="zo only: train the last N layers with parameters by backprop (from the "
                        "unperturbed pass) and only the earlier ones by zo (default 0)")
    z.add_argument("--sam-rho", type=float, default=0.0, metavar="R",
                   help="zo only: take each step's losses at a point moved a distance of about "
                        "R uphill, along the previous step's estimate, so training prefers flat "
                        "minima; no extra forward pass (default 0: off)")


def _config(args):
    from .passes import TrainConfig
    trainable = args.trainable
    return TrainConfig(loss=args.loss, optimizer=args.optimizer, lr=args.lr,
                       momentum=args.momentum, weight_decay=args.weight_decay,
                       schedule=args.schedule, total_steps=args.total_steps,
                       step_size=args.step_size, gamma=args.gamma, trainable=trainable,
                       batch=args.batch, algo=getattr(args, "algo", "bp"),
                       perturbations=args.perturbations, zo_eps=args.eps, zo_dist=args.zo_dist,
                       zo_estimator=args.zo_estimator, seed=args.zo_seed,
                       hybrid_bp_layers=args.hybrid_bp_layers,
                       zo_eps_halve_every=args.eps_halve_every, zo_eps_halvings=args.eps_halvings,
                       zo_sam_rho=args.sam_rho)


def _console():
    from rich.console import Console
    return Console(highlight=False, width=None if sys.stdout.isatty() else 120)


def _fmt_bytes(n: int) -> str:
    return f"{n:,} B" if n < 10_000 else f"{n / 1024:,.1f} KiB"


def memory_table(title, plan, naive=True):
    from rich.table import Table
    t = Table(title=title, title_justify="left")
    t.add_column("memory")
    t.add_column("bytes", justify="right")
    t.add_column("where")
    rep = plan.report()
    rows = [("arena (activations + their gradients)", rep["arena"], "RAM"),
            ("trainable parameters", rep["params_rw"], "RAM"),
            ("parameter gradients", rep["grads"], "RAM"),
            ("optimizer state", rep["opt_state"], "RAM"),
            ("frozen parameters", rep["params_ro"], "flash"),
            ("RAM total", rep["ram_total"], "")]
    for r in rows:
        t.add_row(r[0], _fmt_bytes(r[1]), r[2])
    if naive:
        t.add_row("[dim]naive (every tensor its own buffer)[/dim]",
                  f"[dim]{_fmt_bytes(rep['naive_total'])}[/dim]", "")
    return t


# ------------------------------------------------------------------------------- inspect
def cmd_inspect(args):
    from rich.table import Table
    from .ir import TensorRole, get_op
    from .pipeline import load_model, make_program
    from .passes.memory_plan import plan_arena
    con = _console()
    g = load_model(args.model)
    hy = args.hybrid_bp_layers or 1      # inspect has no --algo: only the hybrid row uses it
    args.hybrid_bp_layers = 0
    args.sam_rho = 0.0                   # zo only, and it adds no planned memory
    cfg = _config(args)
    program, plan = make_program(g, cfg)
    t = Table(title=f"{Path(args.model).name}: {len(g.nodes)} nodes, "
              f"{sum(g.tensors[p].size for p in g.params):,} parameters "
              f"({sum(g.tensors[p].size for p in program.trainable):,} trainable)",
              title_justify="left")
    for c, j in (("node", "left"), ("op", "left"), ("input", "left"), ("output", "left"),
                 ("params", "right"), ("fwd MACs", "right"), ("bwd MACs", "right"),
                 ("act. bytes", "right"), ("trains", "left")):
        t.add_column(c, justify=j)
    tot = [0, 0, 0]
    for n in g.nodes:
        op = get_op(n.op)
        shapes = [g.tensors[i].shape for i in n.inputs]
        out = g.tensors[n.outputs[0]]
        fwd = op.macs(shapes, out.shape, n.attrs)
        bwd = sum(op.backward_macs(s.wrt, shapes, out.shape, n.attrs)
                  for s in program.train_steps if s.kind == "vjp" and s.node == n.name)
        pars = [i for i in n.inputs if g.tensors.get(i) is not None and
                g.tensors[i].role is TensorRole.PARAM]
        npar = sum(g.tensors[i].size for i in pars)
        trains = ", ".join(p.split(".")[-1] for p in pars if p in program.trainable)
        tot[0] += npar
        tot[1] += fwd
        tot[2] += bwd
        t.add_row(n.name, n.op, "x".join(map(str, g.tensors[n.inputs[0]].shape)),
                  "x".join(map(str, out.shape)), f"{npar:,}" if npar else "",
                  f"{fwd:,}" if fwd else "", f"{bwd:,}" if bwd else "", f"{out.nbytes:,}",
                  trains or ("grad" if n.outputs[0] in {s.inputs[0].removesuffix('__grad') for s in program.train_steps if s.kind == 'vjp'} else ""))
    t.add_section()
    t.add_row("total", "", "", "", f"{tot[0]:,}", f"{tot[1]:,}", f"{tot[2]:,}", "", "")
    con.print(t)
    infer_plan = plan_arena(program, steps=program.forward_steps)
    con.print(memory_table(f"training memory (fp32, {cfg.algo}, trainable={cfg.trainable}, "
                           f"{cfg.optimizer})", plan))
    from dataclasses import replace as _replace
    from rich.table import Table as _Table
    from .passes import build_training_program
    modes = _Table(title="RAM by training algorithm (same trainable set, fp32)",
                   title_justify="left")
    for c in ("algorithm", "arena", "RAM total", "note"):
        modes.add_column(c, justify="left" if c in ("algorithm", "note") else "right")
    modes.add_row("inference only", _fmt_bytes(infer_plan.arena_bytes),
                  _fmt_bytes(infer_plan.arena_bytes + plan.section_bytes["params_rw"]),
                  "forward pass, trainable params in RAM")
    for algo, hybrid in (("bp", 0), ("zo", 0), ("jvp", 0), ("zo", hy)):
        opt = cfg.optimizer if algo == "bp" or cfg.optimizer != "adam" else "sgd"
        name = f"{algo} + bp last {hybrid}" if hybrid else algo
        try:
            pl = plan_arena(build_training_program(
                g, _replace(cfg, algo=algo, optimizer=opt, hybrid_bp_layers=hybrid)))
        except TinytrainError as e:
            modes.add_row(name, "", "", str(e))
            continue
        note = {"bp": "backprop: saved activations + gradients",
                "zo": "2 forward passes per direction, z regenerated, nothing saved",
                "jvp": "1 forward pass carrying tangents per direction, v regenerated"}[algo]
        if hybrid:
            note = f"zo, but the last {hybrid} layer(s) by backprop from the unperturbed pass"
        modes.add_row(f"{name} ({opt})", _fmt_bytes(pl.arena_bytes), _fmt_bytes(pl.ram_bytes),
                      note)
    con.print(modes)
    if args.arena_map:
        con.print(plan.ascii_map())
    return 0


# ------------------------------------------------------------------------------- train
def cmd_train(args):
    from rich.progress import Progress
    from rich.table import Table
    from .pipeline import load_model, load_npz, make_program
    from .reference import ReferenceTrainer
    from .trainloop import accuracy, fit, plot_history
    con = _console()
    g = load_model(args.model)
    data = load_npz(args.data)
    cfg = _config(args)
    program, plan = make_program(g, cfg)
    tr = ReferenceTrainer(program)
    classify = cfg.loss == "cross_entropy"
    if classify and data.get("x_test") is not None:
        con.print(f"before training: test accuracy {accuracy(tr, data['x_test'], data['y_test']):.1%}")
    table = Table(title="numpy reference training", title_justify="left")
    for c in ("epoch", "loss", "train acc", "test acc"):
        table.add_column(c, justify="right")
    with Progress(console=con, transient=True) as prog:
        h = fit(tr, data, epochs=args.epochs, batch=cfg.batch, seed=args.seed, classify=classify,
                progress=prog)
    for i, l in enumerate(h.epoch_loss):
        table.add_row(str(i + 1), f"{l:.4f}", f"{h.train_acc[i]:.1%}" if classify else "",
                      f"{h.test_acc[i]:.1%}" if classify else "")
    con.print(table)
    if args.output:
        from .frontend.onnx_export import export_onnx
        export_onnx(g, tr.params, args.output)
        con.print(f"trained weights written to {args.output}")
    if args.plot:
        plot_history(h, args.plot, f"{Path(args.model).name} (reference)")
        con.print(f"loss curve: {args.plot}")
    if h.stopped:
        con.print(f"[red]stopped:[/red] {h.stopped}")
        return 1
    return 0


# ------------------------------------------------------------------------------- export
def cmd_export(args):
    from .pipeline import export
    con = _console()
    cfg = _config(args)
    kw = {}
    if args.precision in ("int8", "int16"):
        from .passes.quantize import QuantConfig
        from .pipeline import load_npz
        if not args.calibration:
            raise TinytrainError(f"--precision {args.precision} needs --calibration DATA.npz: "
                                 "sample inputs (its x_train) to choose the activation scales")
        kw["calibration"] = load_npz(args.calibration)["x_train"]
        kw["quant"] = QuantConfig(bits=int(args.precision[3:]), calibration=args.calib_method,
                                  percentile=args.percentile, per_channel=not args.per_tensor,
                                  rounding=args.rounding, zo_weight_bits=args.zo_weight_bits,
                                  relu_mask=args.relu_mask,
                                  fewbit_codes=args.few_bit_backward,
                                  layer_bits=_layer_bits(args.layer_precision))
    elif args.layer_precision:
        raise TinytrainError(f"--layer-precision mixes int8 and int16 layers in a fixed-point "
                             f"export; with --precision {args.precision} every layer is "
                             f"{args.precision}. Use --precision int8 or int16.")
    res, program, plan = export(args.model, args.output, cfg, precision=args.precision,
                                algo=args.algo, **kw)
    con.print(f"wrote {len(res.files)} files to {res.out_dir}/ "
              f"(tt_model.c, tt_model.h, runtime kernels, Makefile, main.c, README.md)")
    for w in res.manifest.get("warnings", []):
        con.print(f"[yellow]warning:[/yellow] {w}")
    con.print(memory_table(f"memory plan ({args.precision})", plan))
    if args.precision != "fp32":
        con.print(precision_table(args.model, cfg, args.precision, plan))
    return 0


def _layer_bits(items) -> tuple:
    """--layer-precision LAYER=int8|int16 (the node name may itself contain '=')."""
    out = []
    for item in items:
        name, sep, width = item.rpartition("=")
        bits = {"int8": 8, "8": 8, "int16": 16, "16": 16}.get(width.strip().lower())
        if not sep or not name or bits is None:
            raise TinytrainError(f"--layer-precision {item!r}: expected LAYER=int8 or "
                                 "LAYER=int16 (LAYER is the ONNX node name)")
        out.append((name, bits))
    return tuple(out)


def precision_table(model, cfg, precision, plan):
    """The same training program in fp32 beside the exported precision: bytes saved."""
    from rich.table import Table
    from .pipeline import load_model, make_program
    _, p32 = make_program(load_model(model), cfg)
    a, b = p32.report(), plan.report()
    t = Table(title=f"{precision} vs fp32 (same model, trainable set and optimizer)",
              title_justify="left")
    for c in ("memory", "fp32", precision, "saved"):
        t.add_column(c, justify="left" if c == "memory" else "right")
    for key, label in (("arena", "arena"), ("params_rw", "trainable parameters (RAM)"),
                       ("grads", "parameter gradients"), ("opt_state", "optimizer state"),
                       ("params_ro", "frozen parameters (flash)"), ("ram_total", "RAM total")):
        saved = a[key] - b[key]
        t.add_row(label, _fmt_bytes(a[key]), _fmt_bytes(b[key]),
                  (f"{saved / a[key]:.0%}" if a[key] else "") if saved >= 0
                  else f"[red]+{_fmt_bytes(-saved)}[/red]")
    return t


# ------------------------------------------------------------------------------- simulate
def saturation_table(model):
    """Fixed-point runs: how often each tensor was clamped to its storage range."""
    from rich.table import Table
    sat = model.saturations
    t = Table(title=f"saturations ({model.manifest['precision']}): values clamped to their "
                    "storage range", title_justify="left")
    t.add_column("site")
    t.add_column("count", justify="right")
    rows = sorted(((n, c) for n, c in sat.items() if c), key=lambda r: -r[1])
    for n, c in rows[:12]:
        t.add_row(n, f"{c:,}")
    if not rows:
        t.add_row("[dim]none[/dim]", "0")
    elif len(rows) > 12:
        t.add_row(f"[dim]... {len(rows) - 12} more sites[/dim]", "")
    return t


def cmd_simulate(args):
    from rich.progress import Progress
    from rich.table import Table
    from .pipeline import load_npz
    from .sim.host import HostModel
    from .trainloop import accuracy, fit, plot_history
    con = _console()
    with con.status("compiling the generated C for this host..."):
        model = HostModel(args.project)
    data = load_npz(args.data)
    classify = model.manifest["loss"] == "SoftmaxCrossEntropy"
    batch = model.manifest["batch"]
    if classify and data.get("x_test") is not None:
        con.print(f"before training: test accuracy "
                  f"{accuracy(model, data['x_test'], data['y_test']):.1%}")
    with Progress(console=con, transient=True) as prog:
        h = fit(model, data, epochs=args.epochs, batch=batch, seed=args.seed,
                classify=classify, progress=prog)
    table = Table(title="host-simulated training (generated C)", title_justify="left")
    for c in ("epoch", "loss", "train acc", "test acc"):
        table.add_column(c, justify="right")
    for i, l in enumerate(h.epoch_loss):
        table.add_row(str(i + 1), f"{l:.4f}", f"{h.train_acc[i]:.1%}" if classify else "",
                      f"{h.test_acc[i]:.1%}" if classify else "")
    con.print(table)
    plot = args.plot or str(Path(args.project) / "loss_curve.png")
    plot_history(h, plot, f"{Path(args.project).name} (host C)")
    con.print(f"loss curve: {plot}")
    if model.manifest.get("precision") in ("int8", "int16"):
        con.print(saturation_table(model))
    if args.checkpoint:
        model.save_checkpoint(args.checkpoint)
        con.print(f"checkpoint: {args.checkpoint}")
    if h.stopped:
        con.print(f"[red]stopped:[/red] {h.stopped}")
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(prog="tinytrain", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=fmt)
    p.add_argument("--version", action="version", version=f"tinytrain {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("inspect", help="per-layer cost table and training-memory estimate",
                       formatter_class=fmt, description=textwrap.dedent("""\
        Print one row per node: op, input and output shapes, parameters, forward and backward
        multiply-accumulates, activation bytes, and what trains; then the memory the training
        step needs (planned arena, parameters, gradients, optimizer state) against inference.
        The backward MACs and memory depend on --trainable: try last:1 or bias."""))
    s.add_argument("model", help="ONNX model file")
    s.add_argument("--arena-map", action="store_true", help="print the arena plan as ASCII art")
    _add_train_options(s)
    s.set_defaults(func=cmd_inspect)

    s = sub.add_parser("train", help="train with the numpy reference executor (no C)",
                       formatter_class=fmt, description=textwrap.dedent("""\
        Train the model in numpy, exactly the computation the generated C performs (the
        reference the C is tested against). Prints per-epoch loss and accuracy and can save
        the trained weights as a new ONNX file."""))
    s.add_argument("model", help="ONNX model file")
    s.add_argument("--data", required=True, help=".npz with x_train, y_train [x_test, y_test]")
    s.add_argument("--epochs", type=int, default=5)
    s.add_argument("--seed", type=int, default=0, help="shuffling seed (default 0)")
    s.add_argument("-o", "--output", help="write the trained model to this ONNX file")
    s.add_argument("--algo", default="bp", choices=["bp", "zo", "jvp"],
                   help="bp = backpropagation, zo = zeroth-order forward gradient, jvp = "
                        "forward-mode forward gradient")
    s.add_argument("--plot", help="write a loss/accuracy curve PNG here")
    _add_train_options(s)
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("export", help="generate the C training project",
                       formatter_class=fmt, description=textwrap.dedent("""\
        Generate a self-contained C99 folder: tt_model.c/.h (the training step for this model
        with constant shapes and arena offsets), the runtime kernels it calls, a Makefile, an
        example main.c and a README of the API. The directory must be new, empty, or an
        earlier tinytrain export (only files tinytrain created are replaced)."""))
    s.add_argument("model", help="ONNX model file")
    s.add_argument("-o", "--output", required=True, help="output directory")
    s.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8", "int16"],
                   help="number format of the training graph: fp32; fp16 (binary16 storage, "
                        "fp32 arithmetic); int8 / int16 (symmetric fixed point, int32 / int64 "
                        "accumulators, integer SGD; needs --calibration)")
    s.add_argument("--calibration", metavar="DATA.npz",
                   help="int8/int16: sample inputs (x_train of this file, up to 512) used to "
                        "choose the activation scales")
    s.add_argument("--calib-method", default="minmax", choices=["minmax", "percentile"],
                   help="int8/int16: activation range = max |x| (minmax) or a percentile of |x|")
    s.add_argument("--percentile", type=float, default=99.99,
                   help="int8/int16 with --calib-method percentile (default 99.99)")
    s.add_argument("--per-tensor", action="store_true",
                   help="int8/int16: one scale per weight tensor everywhere (default: per "
                        "output channel where the integer backward pass allows it)")
    s.add_argument("--zo-weight-bits", type=int, default=16, choices=[8, 16],
                   help="int8 with --algo zo / jvp: bits of the trained weights; 16 = the 16w8a "
                        "format (int16 weights, int8 activations; default), 8 = 8w8a (updates "
                        "below one LSB; warned about)")
    s.add_argument("--layer-precision", action="append", default=[], metavar="LAYER=BITS",
                   help="int8/int16: store one Gemm / Conv layer (ONNX node name, as `tinytrain "
                        "inspect` lists them) at int8 or int16, e.g. --layer-precision "
                        "/3/Gemm=int16 in an int8 model; repeatable. Tensors crossing widths "
                        "are converted (and their gradients)")
    s.add_argument("--relu-mask", action="store_true",
                   help="int8/int16: keep a ReLU output for the backward pass as 1 bit per "
                        "element where nothing else needs it (exact; e.g. DS-CNN bias training: "
                        "arena 14.8 KB -> 11.3 KB)")
    s.add_argument("--few-bit-backward", type=int, default=0, choices=[0, 1, 2, 3, 4],
                   metavar="K",
                   help="int8/int16: keep a Sigmoid / Tanh output for the backward pass as a "
                        "K-bit code (1..4) of its input's interval where nothing else needs it "
                        "(Few-Bit Backward: piecewise-constant derivative, RMS error halves per "
                        "bit; 0 = keep the output, exact; default)")
    s.add_argument("--rounding", default="stochastic", choices=["stochastic", "nearest"],
                   help="int8/int16: rounding of the integer weight updates (stochastic is "
                        "unbiased: updates below one LSB still happen on average)")
    s.add_argument("--algo", default="bp", choices=["bp", "zo", "jvp"],
                   help="bp = backpropagation; zo = zeroth-order forward gradient (two "
                        "forward passes per random direction, no backward pass: the arena is "
                        "the inference arena); jvp = forward-mode forward gradient (one "
                        "forward pass carrying tangents per direction: about twice the "
                        "inference arena, exact directional derivatives)")
    _add_train_options(s)
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("simulate", help="train with the generated C on this computer",
                       formatter_class=fmt, description=textwrap.dedent("""\
        Compile an exported project with the host C compiler (-std=c99 -Wall -Wextra -Werror
        -ffp-contract=off), load it, and train it on a data file exactly as the device would:
        one sample at a time, the optimizer stepping every --batch samples (fixed at export).
        Writes a loss-curve PNG (default: PROJECT/loss_curve.png)."""))
    s.add_argument("project", help="directory written by `tinytrain export`")
    s.add_argument("--data", required=True, help=".npz with x_train, y_train [x_test, y_test]")
    s.add_argument("--epochs", type=int, default=5)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--plot", help="loss-curve PNG path")
    s.add_argument("--checkpoint", help="save a checkpoint of the trained model here")
    s.set_defaults(func=cmd_simulate)

    from .cli_boards import add_board_commands
    add_board_commands(sub)
    return p


def main(argv=None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if not getattr(args, "command", None):
        p.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except TinytrainError as e:
        if os.environ.get("TINYTRAIN_DEBUG"):
            raise
        print(f"tinytrain {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
