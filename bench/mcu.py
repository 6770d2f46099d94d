"""Training on the emulated MCUs: instructions per training step and per inference, MACs,
MACs per instruction, and memory, per model x board x trainable set; plus the AIfES row.

    python bench/mcu.py [--steps 4] [--models mlp,cnn,dscnn,resnet8] [--boards ...]

A benchmark, not a test. Instruction counts are exact and deterministic (QEMU -icount:
rdinstret on RISC-V, the MPS2 FPGAIO counter on Cortex-M, see boards/README.md): the mean of
tt_train_step over --steps steps (batch 1, SGD, lr 0.01, samples of the digits adaptation
set) and one tt_infer, with the counter's own overhead subtracted. MACs come from the IR
(forward MACs of every node + backward MACs of every VJP step the trainable set needs, as
in `tinytrain inspect`), so MACs/instruction is the kernels' efficiency on each core.
Memory is measured from the firmware ELF (symbol sizes of the model's arrays, .text).

Prints rich tables and writes them as markdown to bench/results/mcu.md.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MODELS = ROOT / "examples" / "digits" / "models"
RESULTS = ROOT / "bench" / "results" / "mcu.md"

# AIfES 2.2.0, FP32 MLP 64-32-10, SGD, batch 1, Cortex-M4F (mps2-an386, -O2): DESIGN.md §8.
AIFES_STEP_INSTR = 289_689
AIFES_INFER_INSTR = 19_688
AIFES_RAM_BYTES = 36.6 * 1024
TARGET_RATIO, TARGET_RAM = 10.0, 13 * 1024


def step_macs(program) -> tuple[int, int]:
    """(MACs of one training step, MACs of one inference) from the IR, as cmd_inspect counts."""
    from tinytrain.ir import get_op
    g = program.graph
    fwd = bwd = 0
    for n in g.nodes:
        op = get_op(n.op)
        shapes = [g.tensors[i].shape for i in n.inputs]
        out = g.tensors[n.outputs[0]].shape
        fwd += op.macs(shapes, out, n.attrs)
        bwd += sum(op.backward_macs(s.wrt, shapes, out, n.attrs)
                   for s in program.train_steps if s.kind == "vjp" and s.node == n.name)
    return fwd + bwd, fwd


def measure(model: str, board: str, trainable: str, optimizer: str, steps: int, project: Path,
            macs: tuple[int, int], x, y) -> dict:
    from tinytrain.device import run_on_board
    t0 = time.perf_counter()
    run = run_on_board(project, board, x, y, steps, timeout_s=1800)
    step = float(run.instret_per_step.mean())
    mem = run.memory
    return {
        "model": model, "board": board, "trainable": trainable, "optimizer": optimizer,
        "instr_step": step, "instr_infer": run.instret_infer, "macs_step": macs[0],
        "macs_infer": macs[1], "macs_per_instr": macs[0] / step,
        "arena": mem.row("arena (activations + their gradients)"),
        "params_ram": mem.row("trainable parameters"),
        "params_flash": mem.row("frozen parameters"),
        "grads_opt": mem.row("parameter gradients") + mem.row("optimizer state"),
        "stack": mem.row("stack"), "code": mem.row("code"), "model_ram": mem.model_ram,
        "seconds": time.perf_counter() - t0,
    }


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:,.3f}" if v < 10 else f"{v:,.0f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


COLUMNS = [("model", "model"), ("board", "board"), ("trainable", "trainable"),
           ("instr/step", "instr_step"), ("instr/infer", "instr_infer"), ("MACs/step", "macs_step"),
           ("MACs/instr", "macs_per_instr"), ("arena B", "arena"), ("params RAM B", "params_ram"),
           ("params flash B", "params_flash"), ("grads+opt B", "grads_opt"), ("stack B", "stack"),
           ("code B", "code")]


def main(argv=None) -> int:
    from rich.console import Console
    from rich.table import Table

    from tinytrain.boards import list_boards, load_board
    from tinytrain.datasets import make_adaptation_data
    from tinytrain.passes import TrainConfig
    from tinytrain.pipeline import export

    emulated = [b for b in list_boards() if load_board(b).emulated]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=4, help="training steps per run (default 4)")
    ap.add_argument("--models", default="mlp,cnn,dscnn,resnet8")
    ap.add_argument("--boards", default=",".join(emulated))
    ap.add_argument("--trainable", default="all,last:1,bias")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--output", default=str(RESULTS), help="markdown file (default bench/results/mcu.md)")
    args = ap.parse_args(argv)
    con = Console(highlight=False, width=200)
    d = make_adaptation_data(0)
    x, y = d["x_train"][:args.steps], d["y_train"][:args.steps]
    root = Path(tempfile.mkdtemp(prefix="tt_bench_mcu_"))
    models, boards, sets = args.models.split(","), args.boards.split(","), args.trainable.split(",")
    jobs = [(m, b, tr, "sgd") for m in models for b in boards for tr in sets]
    if ("mlp", "qemu-cortex-m4", "all", "sgd") not in jobs:  # the AIfES row
        jobs.append(("mlp", "qemu-cortex-m4", "all", "sgd"))
    projects, macs = {}, {}
    for m, _b, tr, opt in jobs:
        if (m, tr, opt) not in projects:
            out = root / f"{m}-{tr.replace(':', '')}-{opt}"
            _res, program, _plan = export(MODELS / f"{m}.onnx", out,
                                          TrainConfig(trainable=tr, optimizer=opt, lr=0.01),
                                          command="bench/mcu.py")
            projects[(m, tr, opt)], macs[(m, tr, opt)] = out, step_macs(program)
    # Slowest first (soft-float rv32imac, big models), so the workers finish together.
    order = sorted(jobs, key=lambda j: -(100 if j[1] == "qemu-rv32imac" else 1) * (1 + ["mlp", "cnn", "dscnn", "resnet8"].index(j[0])))
    t0 = time.perf_counter()
    with con.status(f"{len(jobs)} runs on {len(boards)} emulated boards..."), ThreadPoolExecutor(args.jobs) as ex:
        futs = {j: ex.submit(measure, *j, args.steps, projects[(j[0], j[2], j[3])],
                             macs[(j[0], j[2], j[3])], x, y) for j in order}
        rows = {j: f.result() for j, f in futs.items()}
    elapsed = time.perf_counter() - t0

    title = (f"Training on emulated MCUs: batch 1, SGD, {args.steps} steps (mean), QEMU -icount "
             "instruction counts; memory from the ELF")
    t = Table(title=title, title_justify="left")
    for head, _ in COLUMNS:
        t.add_column(head, justify="left" if head in ("model", "board", "trainable") else "right")
    md = [f"# {title}", "", "Generated by `python bench/mcu.py` "
          f"({len(jobs)} runs, {elapsed:.0f} s). Instructions are retired instructions of "
          "`tt_train_step` / `tt_infer` (counter overhead subtracted); MACs from the IR "
          "(forward + the backward steps the trainable set needs).", "",
          "| " + " | ".join(h for h, _ in COLUMNS) + " |",
          "|" + "|".join("---" if h in ("model", "board", "trainable") else "---:" for h, _ in COLUMNS) + "|"]
    for j in jobs:
        if j[3] != "sgd" or j[0] not in models or j[2] not in sets or j[1] not in boards:
            continue
        r = rows[j]
        cells = [_fmt(r[k]) for _, k in COLUMNS]
        t.add_row(*cells)
        md.append("| " + " | ".join(cells) + " |")
    con.print(t)

    # AIfES comparison: MLP 64-32-10, SGD, batch 1, Cortex-M4F.
    a = rows[("mlp", "qemu-cortex-m4", "all", "sgd")]
    ratio = AIFES_STEP_INSTR / a["instr_step"]
    ram = a["model_ram"]
    at = Table(title="AIfES 2.2.0 comparison: FP32 MLP 64-32-10, SGD, batch 1, Cortex-M4F (mps2-an386)",
               title_justify="left")
    for c in ("", "instr/train step", "instr/inference", "training RAM", "target"):
        at.add_column(c, justify="right" if c else "left")
    at.add_row("AIfES 2.2.0 (DESIGN.md §8)", f"{AIFES_STEP_INSTR:,}", f"{AIFES_INFER_INSTR:,}",
               f"{AIFES_RAM_BYTES / 1024:.1f} KiB", "")
    at.add_row("tinytrain (this run)", f"{a['instr_step']:,.0f}", f"{a['instr_infer']:,}",
               f"{ram / 1024:.1f} KiB", "")
    verdict_i = "met" if ratio >= TARGET_RATIO else "NOT met"
    verdict_r = "met" if ram <= TARGET_RAM else "NOT met"
    at.add_row("ratio", f"{ratio:.1f}x fewer", f"{AIFES_INFER_INSTR / a['instr_infer']:.1f}x fewer",
               f"{AIFES_RAM_BYTES / ram:.1f}x less",
               f">= 10x fewer: {verdict_i}; <= 13 KiB: {verdict_r}")
    con.print(at)
    ram_parts = (f"arena {a['arena']:,} B + params {a['params_ram']:,} B + grads/optimizer "
                 f"{a['grads_opt']:,} B + stack {a['stack']:,} B")
    con.print(f"training RAM = {ram_parts}")
    md += ["", f"## {at.title}", "",
           "| | instr/train step | instr/inference | training RAM |", "|---|---:|---:|---:|",
           f"| AIfES 2.2.0 (DESIGN.md §8) | {AIFES_STEP_INSTR:,} | {AIFES_INFER_INSTR:,} | "
           f"{AIFES_RAM_BYTES / 1024:.1f} KiB |",
           f"| tinytrain | {a['instr_step']:,.0f} | {a['instr_infer']:,} | {ram / 1024:.1f} KiB |",
           f"| ratio | {ratio:.1f}x fewer | {AIFES_INFER_INSTR / a['instr_infer']:.1f}x fewer | "
           f"{AIFES_RAM_BYTES / ram:.1f}x less |", "",
           f"Targets (DESIGN.md §8): >= 10x fewer instructions per step: **{verdict_i}**; "
           f"<= 13 KiB RAM: **{verdict_r}**. Training RAM = {ram_parts} (the model's arrays as "
           "linked, plus the worst-case stack from gcc's call graph; the firmware's own result "
           "buffers are not counted, as AIfES's figure counts the model only).", ""]
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(md))
    con.print(f"markdown: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
