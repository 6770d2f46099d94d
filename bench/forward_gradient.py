"""Forward-gradient training benchmark (fp32): bp vs zo (SPSA) vs jvp (forward mode) vs hybrid
(zo + backprop for the last layer), each enhancement on and off.

Scenarios: the digits on-device adaptation (pretrained MLP and CNN, trainable last:1 and all)
and scikit-learn's breast-cancer data (ships with the package; a 30-16-2 MLP built with
GraphBuilder, trained from scratch, standardised features, stratified 70/30 split).

Measured per scenario and method: test accuracy every 25 optimizer steps (SGD + momentum 0.9,
batch 4, 300 steps, numpy reference), plotted against steps and against forward passes;
forward passes and MACs per training sample; host C time per sample (generated C through the
cffi host simulator, -O2, this machine); planned memory (plan_arena) per algorithm and model.

Learning rates come from a coarse sweep (8 rates, 3e-5 .. 0.1) on these same scenarios, picked
by test accuracy at 300 steps: optimistic for every method alike. `--sweep` reruns it.
This is a benchmark, not a test.

    python bench/forward_gradient.py            # ~2-4 minutes; writes bench/results/
    python bench/forward_gradient.py --sweep    # the learning-rate sweep (slow)
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MODELS = ROOT / "examples" / "digits" / "models"
RESULTS = ROOT / "bench" / "results"
STEPS, BATCH, EVERY = 300, 4, 25


@dataclass(frozen=True)
class Method:
    name: str
    kw: dict
    lr: dict                      # scenario kind -> learning rate
    note: str = ""


@dataclass
class Scenario:
    name: str
    kind: str                     # key into Method.lr
    graph: object
    trainable: str
    data: dict
    curves: dict = field(default_factory=dict)


# enhancement on/off: directions n (1 -> 4), sign estimator, hybrid backprop head, and the
# sparse trainable set (last:1 vs all) through the scenarios. zo and jvp draw the same
# directions (same seed and streams), so at equal n their runs differ only by SPSA's
# finite-difference error.
METHODS = (
    Method("bp", dict(algo="bp"),
           {"last": 0.01, "all": 0.01, "cnn-all": 0.01, "scratch": 0.03}, "backprop"),
    Method("zo n=1", dict(algo="zo", perturbations=1, zo_eps=1e-2),
           {"last": 1e-3, "cnn-last": 1e-4, "all": 3e-4, "cnn-all": 3e-5, "scratch": 1e-3},
           "SPSA, 1 direction"),
    Method("zo n=4", dict(algo="zo", perturbations=4, zo_eps=1e-2),
           {"last": 3e-3, "cnn-last": 3e-4, "all": 3e-4, "cnn-all": 1e-4, "scratch": 3e-3},
           "SPSA, 4 directions"),
    Method("zo n=4 sign", dict(algo="zo", perturbations=4, zo_eps=1e-2, zo_estimator="sign"),
           {"last": 3e-3, "cnn-last": 1e-3, "all": 1e-3, "cnn-all": 3e-4, "scratch": 0.03},
           "sign-SPSA, 4 directions"),
    Method("jvp n=1", dict(algo="jvp", perturbations=1),
           {"last": 1e-3, "cnn-last": 1e-4, "all": 3e-4, "cnn-all": 3e-5, "scratch": 1e-3},
           "forward mode, 1 tangent"),
    Method("jvp n=4", dict(algo="jvp", perturbations=4),
           {"last": 3e-3, "cnn-last": 3e-4, "all": 3e-4, "cnn-all": 1e-4, "scratch": 3e-3},
           "forward mode, 4 tangents"),
    Method("hybrid zo n=4 sign + bp last 1",
           dict(algo="zo", perturbations=4, zo_eps=1e-2, zo_estimator="sign",
                hybrid_bp_layers=1),
           {"all": 1e-3, "cnn-all": 1e-3, "scratch": 0.01},
           "zo for all but the classifier"),
)


def cancer_scenario():
    from sklearn.datasets import load_breast_cancer
    from tinytrain.frontend.builder import GraphBuilder
    x, y = load_breast_cancer(return_X_y=True)
    rng = np.random.default_rng(0)
    test = np.concatenate([rng.choice(np.flatnonzero(y == k), size=int(0.3 * (y == k).sum()),
                                      replace=False) for k in (0, 1)])
    train = np.setdiff1d(np.arange(len(y)), test)
    mu, sd = x[train].mean(0), x[train].std(0) + 1e-8
    x = ((x - mu) / sd).astype(np.float32)
    b = GraphBuilder("cancer_mlp", seed=0)
    h = b.op("Relu", [b.gemm(b.input("x", (1, 30)), 16, "fc1")], name="act1")
    g = b.build(b.gemm(h, 2, "fc2"))
    order = rng.permutation(train)
    data = {"x_train": x[order], "y_train": y[order].astype(np.int64),
            "x_test": x[test], "y_test": y[test].astype(np.int64)}
    return Scenario("cancer MLP all (scratch)", "scratch", g, "all", data)


def scenarios():
    from tinytrain.datasets import make_adaptation_data
    from tinytrain.pipeline import load_model
    d = make_adaptation_data(0)
    out = []
    for m in ("mlp", "cnn"):
        g = load_model(MODELS / f"{m}.onnx")
        out.append(Scenario(f"digits {m.upper()} last:1", "cnn-last" if m == "cnn" else "last",
                            g, "last:1", d))
        out.append(Scenario(f"digits {m.upper()} all", "cnn-all" if m == "cnn" else "all",
                            g, "all", d))
    out.append(cancer_scenario())
    return out


def lr_for(method, sc):
    return method.lr.get(sc.kind, method.lr.get(sc.kind.removeprefix("cnn-")))


def config(method, sc, lr=None):
    from tinytrain.passes import TrainConfig
    return TrainConfig(trainable=sc.trainable, optimizer="momentum", batch=BATCH,
                       lr=lr if lr is not None else lr_for(method, sc), **method.kw)


def valid(method, sc):
    return not (method.kw.get("hybrid_bp_layers") and sc.trainable != "all")


def train_curve(method, sc, lr=None):
    """Test accuracy every EVERY steps (index 0 = before training); NaN after a fault."""
    from tinytrain.errors import NumericFaultError
    from tinytrain.passes import build_training_program
    from tinytrain.reference import ReferenceTrainer
    from tinytrain.trainloop import accuracy
    tr = ReferenceTrainer(build_training_program(sc.graph, config(method, sc, lr)))
    x, y = sc.data["x_train"], sc.data["y_train"]
    xt, yt = sc.data["x_test"], sc.data["y_test"]
    rng = np.random.default_rng(0)
    per_epoch = len(x) // BATCH
    acc = [accuracy(tr, xt, yt)]
    order = None
    for s in range(STEPS):
        if s % per_epoch == 0:
            order = rng.permutation(len(x))
        j = s % per_epoch
        idx = order[j * BATCH:(j + 1) * BATCH]
        try:
            tr.train_step(x[idx], y[idx])
        except NumericFaultError:
            acc += [float("nan")] * (STEPS // EVERY + 1 - len(acc))
            return acc
        if (s + 1) % EVERY == 0:
            acc.append(accuracy(tr, xt, yt))
    return acc


def cost_per_sample(method, sc):
    """(forward passes, MACs) per training sample. A jvp pass counts once (it carries the
    tangents); its MACs include the tangent work. bp MACs = forward + backward."""
    from tinytrain.ir import get_op
    from tinytrain.passes import build_training_program
    p = build_training_program(sc.graph, config(method, sc))
    g = p.graph
    fwd = sum(get_op(n.op).macs([g.tensors[i].shape for i in n.inputs],
                                g.tensors[n.outputs[0]].shape, n.attrs) for n in g.nodes)
    bwd = sum(get_op(s.op).backward_macs(s.wrt, [g.tensors[i].shape for i in s.fwd_inputs],
                                         _out_shape(p, s), s.attrs)
              for s in p.train_steps if s.kind == "vjp")
    n = int(p.config.perturbations)
    algo = p.config.algo
    if algo == "bp":
        return 1, fwd + bwd
    if algo == "zo":
        hy = bool(p.config.hybrid_bp_layers)
        return 2 * n + hy, 2 * n * fwd + (fwd + bwd if hy else 0)
    tan = 0
    for s in p.train_steps:
        if s.kind == "jvp":
            node_macs = get_op(s.op).macs([g.tensors[i].shape for i in s.fwd_inputs],
                                          _out_shape(p, s), s.attrs)
            if s.op in ("Gemm", "Conv"):
                tan += node_macs * (len(s.tangents) + (1 in s.generated))
            else:
                tan += node_macs
    return n, n * (fwd + tan)


def _out_shape(p, s):
    node = next(n for n in p.graph.nodes if n.name == s.node)
    return p.graph.tensors[node.outputs[0]].shape


def host_us_per_sample(method, sc, tmp):
    from tinytrain.pipeline import export
    from tinytrain.sim.host import HostModel
    cfg = replace(config(method, sc), lr=1e-6)   # timing only: keep it finite
    res, *_ = export(sc.graph, Path(tmp) / method.name.replace(" ", "_").replace("=", ""),
                     cfg, command="bench/forward_gradient.py")
    c = HostModel(res.out_dir)
    x, y = sc.data["x_train"][:64], sc.data["y_train"][:64]
    c.train_step(x[:8], y[:8])                    # warm up
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        c.train_step(x, y)
        best = min(best, (time.perf_counter() - t) / len(x))
    return best * 1e6


def memory_rows():
    from tinytrain.errors import ConfigError
    from tinytrain.passes import TrainConfig, build_training_program
    from tinytrain.passes.memory_plan import plan_arena
    from tinytrain.pipeline import load_model
    algos = [("inference", None), ("bp, SGD batch 1 (fused)", TrainConfig()),
             ("bp, momentum batch 4", TrainConfig(optimizer="momentum", batch=4)),
             ("zo, SGD", TrainConfig(algo="zo")),
             ("jvp, SGD", TrainConfig(algo="jvp")),
             ("zo, momentum", TrainConfig(algo="zo", optimizer="momentum")),
             ("jvp, momentum", TrainConfig(algo="jvp", optimizer="momentum")),
             ("hybrid zo + bp last 1, momentum batch 4",
              TrainConfig(algo="zo", optimizer="momentum", batch=4, hybrid_bp_layers=1)),
             ("hybrid zo + bp last 1, SGD batch 1",
              TrainConfig(algo="zo", hybrid_bp_layers=1))]
    models = ("mlp", "cnn", "dscnn", "resnet8")
    rows = {}
    for m in models:
        g = load_model(MODELS / f"{m}.onnx")
        for trainable in ("all", "last:1"):
            for name, cfg in algos:
                if cfg is None:
                    p = build_training_program(g, TrainConfig(trainable=trainable))
                    pl = plan_arena(p, steps=p.forward_steps)
                    ram = pl.arena_bytes + pl.section_bytes["params_rw"]
                    rows[(m, trainable, name)] = (pl.arena_bytes, ram)
                    continue
                try:
                    pl = plan_arena(build_training_program(g, replace(cfg, trainable=trainable)))
                except ConfigError:
                    rows[(m, trainable, name)] = None
                    continue
                rows[(m, trainable, name)] = (pl.arena_bytes, pl.ram_bytes)
    return models, [a for a, _ in algos], rows


def sweep():
    rates = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5)
    for sc in scenarios():
        for m in METHODS:
            if not valid(m, sc):
                continue
            accs = [train_curve(m, sc, lr)[-1] for lr in rates]
            best = rates[int(np.nanargmax(accs))] if not np.all(np.isnan(accs)) else None
            print(f"{sc.name:28} {m.name:32} best lr {best}: "
                  + " ".join(f"{a:.3f}" for a in accs), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sweep", action="store_true", help="run the learning-rate sweep only")
    ap.add_argument("--no-timing", action="store_true", help="skip the host C timing")
    args = ap.parse_args()
    if args.sweep:
        sweep()
        return 0
    from rich.console import Console
    from rich.table import Table
    con = Console(width=160)
    t0 = time.time()
    scs = scenarios()
    results = []      # (scenario, method, curve, passes, macs)
    for sc in scs:
        for m in METHODS:
            if not valid(m, sc):
                continue
            curve = train_curve(m, sc)
            passes, macs = cost_per_sample(m, sc)
            sc.curves[m.name] = (curve, passes)
            results.append((sc, m, curve, passes, macs))
            con.log(f"{sc.name}: {m.name}: {curve[0]:.3f} -> {curve[-1]:.3f}")

    timing = {}
    if not args.no_timing:
        with tempfile.TemporaryDirectory() as tmp:
            for sc in scs:
                if sc.trainable != "all" or not sc.name.startswith("digits"):
                    continue
                for m in METHODS:
                    timing[(sc.name, m.name)] = host_us_per_sample(m, sc, tmp)

    acc_tab = Table(title=f"accuracy (test) after {STEPS} steps of batch {BATCH} (SGD+momentum;"
                          " numpy reference); cost per training sample", title_justify="left")
    for c in ("scenario", "method", "lr", "start", f"@{STEPS // 3}", f"@{2 * STEPS // 3}",
              f"@{STEPS}", "best", "fwd passes", "MACs", "host C us"):
        acc_tab.add_column(c, justify="left" if c in ("scenario", "method") else "right")
    md_rows = []
    for sc, m, curve, passes, macs in results:
        k = len(curve) - 1
        pick = lambda i: "diverged" if np.isnan(curve[i]) else f"{curve[i]:.1%}"  # noqa: E731
        us = timing.get((sc.name, m.name))
        row = [sc.name, m.name, f"{lr_for(m, sc):g}", pick(0), pick(k // 3), pick(2 * k // 3),
               pick(k), f"{np.nanmax(curve):.1%}", str(passes), f"{macs:,}",
               f"{us:.1f}" if us else ""]
        acc_tab.add_row(*row)
        md_rows.append(row)
    con.print(acc_tab)

    models, algos, mem = memory_rows()
    mem_tab = Table(title="planned memory per algorithm, fp32 (arena / RAM total, bytes)",
                    title_justify="left")
    mem_tab.add_column("algorithm")
    mem_tab.add_column("trainable")
    for mdl in models:
        mem_tab.add_column(mdl, justify="right")
    mem_md = []
    for trainable in ("all", "last:1"):
        for a in algos:
            cells = []
            for mdl in models:
                v = mem[(mdl, trainable, a)]
                cells.append("n/a" if v is None else f"{v[0]:,} / {v[1]:,}")
            mem_tab.add_row(a, trainable, *cells)
            mem_md.append([a, trainable] + cells)
    con.print(mem_tab)

    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(scs, RESULTS / "forward_gradient.png")
    write_md(RESULTS / "forward_gradient.md", md_rows, mem_md, models, time.time() - t0)
    con.print(f"wrote {RESULTS / 'forward_gradient.md'} and forward_gradient.png "
              f"({time.time() - t0:.0f} s)")
    return 0


def plot(scs, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(2, len(scs), figsize=(4.2 * len(scs), 7.5), squeeze=False)
    steps = np.arange(0, STEPS + 1, EVERY)
    styles = {"bp": "k-", "zo": "--", "jvp": "-", "hybrid": ":"}
    for j, sc in enumerate(scs):
        for name, (curve, passes) in sc.curves.items():
            st = styles["bp"] if name == "bp" else styles[name.split()[0]]
            c = np.asarray(curve)
            ax[0, j].plot(steps, c, st, label=name, lw=1.4)
            ax[1, j].plot(steps * BATCH * passes, c, st, label=name, lw=1.4)
        ax[0, j].set_title(sc.name, fontsize=10)
        ax[0, j].set_xlabel("optimizer steps (batch 4)")
        ax[1, j].set_xlabel("forward passes (a jvp pass counts once)")
        ax[1, j].set_xlim(0, STEPS * BATCH * 2)
        for a in ax[:, j]:
            a.set_ylim(0, 1)
            a.grid(alpha=0.3)
    ax[0, 0].set_ylabel("test accuracy")
    ax[1, 0].set_ylabel("test accuracy")
    ax[0, -1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_md(path, rows, mem_rows, models, secs):
    head = ["scenario", "method", "lr", "start", f"@{STEPS // 3}", f"@{2 * STEPS // 3}",
            f"@{STEPS}", "best", "fwd passes / sample", "MACs / sample", "host C us / sample"]
    lines = [
        "# Forward-gradient training: bp vs zo vs jvp vs hybrid (fp32)",
        "",
        "Generated by `python bench/forward_gradient.py` "
        f"({secs:.0f} s on this machine). Test accuracy after optimizer steps of batch "
        f"{BATCH} (SGD + momentum 0.9, numpy reference, which the generated C tracks within "
        "1e-4), forward passes and MACs per training sample (a jvp pass carries the tangents "
        "and is counted once; its MACs include the tangent work; bp MACs = forward + "
        "backward), and host C time per sample (generated C, -O2, through the cffi "
        "simulator; trainable all). Learning rates from a coarse sweep (`--sweep`), picked by "
        "test accuracy: equally optimistic for every method. Plot: "
        "`forward_gradient.png` (accuracy vs steps, and vs forward passes).",
        "",
        "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += ["", "## Planned memory per algorithm (arena / RAM total, bytes; fp32)", "",
              "RAM total = arena + trainable parameters + gradient buffers + optimizer state "
              "(frozen parameters stay in flash). `inference` = forward arena + trainable "
              "parameters.", "",
              "| algorithm | trainable | " + " | ".join(models) + " |",
              "|" + "---|" * (2 + len(models))]
    lines += ["| " + " | ".join(r) + " |" for r in mem_rows]
    lines += ["", "## Reading it", "",
              "- zo (SPSA) and jvp draw the same directions from the same PRNG streams, so at "
              "equal n and lr their runs differ only by SPSA's finite-difference error (eps "
              "1e-2 here): their accuracy curves coincide to within a few test samples. jvp "
              "needs no eps and gives the exact directional derivative with one forward pass "
              "carrying tangents (about 2-2.7x the forward MACs) instead of two forward passes, "
              "at twice the inference arena; zo's arena is the inference arena.",
              "- More directions per step (n 1 -> 4) helps both at equal steps (not at equal "
              "forward passes: see the plot). The sign estimator did not beat magnitude SPSA "
              "here. Both estimators' variance grows with the number of perturbed parameters: "
              "`all` needs 3-10x smaller learning rates than the sparse `last:1`.",
              "- The hybrid (backprop for the classifier, zo n=4 sign for the rest) recovers "
              "clearly more than the same zo at equal steps on the digits scenarios and gets "
              "within 2-3 points of full backprop, for one more forward pass, the classifier's "
              "backward pass and its saved input (arena +40 B on the MLP, +0 on the CNN).",
              "- Memory: at batch 1 with SGD, backprop fuses the update into the backward pass "
              "and keeps no gradient buffers, so its RAM is close to jvp's (arena 2x inference "
              "either way on these small models); forward gradients pay off against bp with "
              "momentum/Adam or batches (gradient buffers) and, for zo, whenever the arena "
              "dominates. Host C time (noisy, shared 2-core machine): jvp and zo cost about "
              "the same per direction on the MLP; on the CNN jvp is 2x slower, its "
              "weight-stationary conv tangent kernel is not register-blocked like the "
              "forward kernels.",
              "- The breast-cancer task is easy: every method reaches 94-96 %.",
              "- Not done: the sharpness-aware evaluation point option."]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
