"""Forward-gradient training benchmark: bp vs zo (SPSA) vs jvp (forward mode) vs hybrid (zo +
backprop for the last layer), each enhancement on and off; fp32 on the numpy reference, then
fp16 / int8 / int16 through the generated C.

Scenarios: the digits on-device adaptation (pretrained MLP and CNN, trainable last:1 and all)
and scikit-learn's breast-cancer data (ships with the package; a 30-16-2 MLP built with
GraphBuilder, trained from scratch, standardised features, stratified 70/30 split).

fp32 part (numpy reference). Per scenario and method: test accuracy every 25 optimizer steps
(SGD + momentum 0.9, batch 4, 300 steps), plotted against steps and against forward passes;
forward passes and MACs per training sample; host C time per sample (generated C through the
cffi host simulator, -O2, this machine); planned memory (plan_arena) per algorithm and model.
Learning rates come from a coarse sweep (8 rates, 3e-5 .. 0.1) on these same scenarios, picked
by test accuracy at 300 steps: optimistic for every method alike. `--sweep` reruns it.
Sharpness-aware evaluation point (TrainConfig.zo_sam_rho, lagged SAM; see
tinytrain/passes/zeroth_order.py): zo n=4 with and without it on every fp32 scenario, same lr,
rho in SAM_RHOS picked by mean validation accuracy on a third of the held-out pool, both arms
reported on the rest, seeds 0, 1, 2 (sample order and directions).

Generated-C part (issue 5, runs by default after the fp32 part): training through the
generated C (export + HostModel, batch 1, plain SGD, one sample order) on the digits
adaptation (MLP last:1, CNN last:1, MLP bias) and breast cancer (last:1), bp vs zo vs jvp in
fp32 and int8 side by side: fp32 bp, fp32 zo n=4, fp32 jvp n=4, int8 bp, int8 zo 16w8a
(n=1 / n=4, spsa / sign), int8 jvp n=1 / n=4 (rademacher, spsa; 16w8a like zo), int8 zo n=4
with the sharpness-aware point (rho swept at int8 zo n=4's lr and eps), int8 zo 8w8a n=4,
int16 zo n=4, int16 jvp n=4; on the MLP last:1 also fp16 bp / zo n=4 / jvp n=4. Two
trainable-all scenarios (digits MLP all, CNN all) run fp32 bp / zo n=4 / jvp n=4, int8 bp /
zo n=4 / jvp n=1 / jvp n=4 and the hybrid in fixed point (`hybrid_bp_layers=1`: integer
backprop for the last layer from the unperturbed pass, 16w8a zo for the earlier ones) next to
the fp32 hybrid. lr (and zo_eps for int8 zo n=4 and int16 zo, rho for SAM) picked per method
by a small sweep on a validation split of the held-out pool (jvp: lr only, on the zo grid);
reported on the rest (test): final accuracy and curves, forward passes per sample (a jvp pass
-- one forward pass carrying the tangents -- counts once, so jvp n = n passes; zo n = 2n),
host wall-clock per sample and the accuracy at an equal wall-clock budget (fp32 bp's full run)
against the issue's "within 3 pp of fp32 bp" target (marked for every int8 zo and int8 jvp
row, SAM and hybrid included), and the planned memory (plan.report(): arena, RAM total) of
every export. Appends a "Fixed point and fp16" section to forward_gradient.md (a bp / zo / jvp
summary in fp32 and int8, then two tables per scenario) and writes forward_gradient_fixed.png.

    python bench/forward_gradient.py            # fp32 ~1.5-2 min + generated C ~8-12 min
    python bench/forward_gradient.py --fixed-only   # generated-C part only (keeps the fp32 .md)
    python bench/forward_gradient.py --quick    # generated-C smoke run (~1-2 min), temp folder
    python bench/forward_gradient.py --sweep    # the fp32 learning-rate sweep (slow)
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


def config(method, sc, lr=None, seed=0):
    from tinytrain.passes import TrainConfig
    return TrainConfig(trainable=sc.trainable, optimizer="momentum", batch=BATCH, seed=seed,
                       lr=lr if lr is not None else lr_for(method, sc), **method.kw)


def valid(method, sc):
    return not (method.kw.get("hybrid_bp_layers") and sc.trainable != "all")


def train_curve(method, sc, lr=None):
    """Test accuracy every EVERY steps (index 0 = before training); NaN after a fault."""
    return reference_run(method, sc, lr)[1]


def reference_run(method, sc, lr=None, seed=0, every=EVERY):
    """Train STEPS optimizer steps on the numpy reference, the sample order (one permutation
    per epoch) and the zo / jvp directions drawn from `seed`. Returns (trainer, curve): the
    trainer (None after a numeric fault) and the test accuracy every `every` steps (index 0 =
    before training; NaN after a fault)."""
    from tinytrain.errors import NumericFaultError
    from tinytrain.passes import build_training_program
    from tinytrain.reference import ReferenceTrainer
    from tinytrain.trainloop import accuracy
    tr = ReferenceTrainer(build_training_program(sc.graph, config(method, sc, lr, seed)))
    x, y = sc.data["x_train"], sc.data["y_train"]
    xt, yt = sc.data["x_test"], sc.data["y_test"]
    rng = np.random.default_rng(seed)
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
            acc += [float("nan")] * (STEPS // every + 1 - len(acc))
            return None, acc
        if (s + 1) % every == 0:
            acc.append(accuracy(tr, xt, yt))
    return tr, acc


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


# ---- sharpness-aware evaluation point (fp32, numpy reference) -------------------------------
# zo_sam_rho on vs off for zo n=4 on every fp32 scenario. rho is a new hyperparameter, so it
# is picked on a validation split (a third of the held-out pool, as in the fixed-point part)
# and both arms are reported on the rest; three seeds (sample order and zo directions) because
# the differences are small. lr stays the zo n=4 rate of the table above.
SAM_RHOS = (0.01, 0.05, 0.2, 1.0)
SAM_SEEDS = (0, 1, 2)
SAM_BASE = "zo n=4"


@dataclass
class SamResult:
    scenario: str
    lr: float
    runs: dict                    # rho (0.0 = off) -> [(val, test) per seed]
    pick: float

    def mean(self, rho, k):
        return float(np.mean([r[k] for r in self.runs[rho]]))

    def sd(self, rho, k):
        return float(np.std([r[k] for r in self.runs[rho]]))


def sam_data(sc):
    d = sc.data
    return replace(sc, curves={}, data={
        "x_train": d["x_train"], "y_train": d["y_train"],
        **_split_holdout(d["x_test"], d["y_test"], round(len(d["y_test"]) / 3), 0)})


def sam_final(method, sc, seed):
    """(validation, test) accuracy after STEPS steps; NaN after a numeric fault."""
    from tinytrain.trainloop import accuracy
    tr, _ = reference_run(method, sc, seed=seed, every=STEPS)
    if tr is None:
        return float("nan"), float("nan")
    return (accuracy(tr, sc.data["x_val"], sc.data["y_val"]),
            accuracy(tr, sc.data["x_test"], sc.data["y_test"]))


def sam_compare(scs, con):
    base = next(m for m in METHODS if m.name == SAM_BASE)
    out = []
    for sc in scs:
        s2 = sam_data(sc)
        runs = {}
        for rho in (0.0,) + SAM_RHOS:
            m = replace(base, kw={**base.kw, "zo_sam_rho": rho})
            runs[rho] = [sam_final(m, s2, seed) for seed in SAM_SEEDS]
        val = {rho: np.nan_to_num(np.mean([v for v, _ in runs[rho]]), nan=-1.0)
               for rho in SAM_RHOS}
        pick = max(SAM_RHOS, key=lambda r: (val[r], -r))     # ties: the smaller rho
        res = SamResult(sc.name, lr_for(base, sc), runs, pick)
        out.append(res)
        con.log(f"{sc.name}: {SAM_BASE} SAM rho {pick:g}: test {res.mean(0.0, 1):.3f} (off) -> "
                f"{res.mean(pick, 1):.3f} (on)")
    return out


SAM_HEAD = ["scenario", "lr", "validation per ρ (mean of seeds)", "ρ picked", "val off → on",
            "test off (mean ± sd)", "test on (mean ± sd)", "Δ pp (on − off)",
            "Δ pp per seed"]


def sam_rows(sams):
    rows = []
    for s in sams:
        p = s.pick
        per_seed = [100 * (on[1] - off[1]) for on, off in zip(s.runs[p], s.runs[0.0])]
        rows.append([s.scenario, f"{s.lr:g}",
                     "  ".join(f"{r:g}: {s.mean(r, 0):.1%}" for r in SAM_RHOS), f"{p:g}",
                     f"{s.mean(0.0, 0):.1%} → {s.mean(p, 0):.1%}",
                     f"{s.mean(0.0, 1):.1%} ± {100 * s.sd(0.0, 1):.1f}",
                     f"{s.mean(p, 1):.1%} ± {100 * s.sd(p, 1):.1f}",
                     f"{100 * (s.mean(p, 1) - s.mean(0.0, 1)):+.1f}",
                     " / ".join(f"{d:+.1f}" for d in per_seed)])
    return rows


# ---- generated C: fixed point and fp16 (issue 5) -------------------------------------------
# Every run below trains the generated C (export(..., precision=...) + HostModel), one sample
# per tt_train_step: batch 1, plain SGD, constant learning rate (all that fixed point supports),
# the same sample order (seed 0, one permutation per epoch) for every method.
FX_LRS_BP = (0.01, 0.03, 0.1)
FX_LRS_ZO = (0.001, 0.003, 0.01)
FX_LRS_ALL = (3e-5, 1e-4, 3e-4, 1e-3)     # zo / hybrid lr grid when every layer trains (the
                                         # estimate's variance grows with the parameter count)
FX_EPS = (5e-3, 1e-2, 2e-2)
FX_RHOS = (0.01, 0.05, 0.2, 1.0)  # zo_sam_rho grid (swept at the int8 zo n=4 lr / eps)
FX_EVERY = 20                  # test / validation accuracy every 20 training samples
FX_TARGET_PP = 3.0             # issue 5: int8 zo within 3 pp of fp32 bp at equal wall-clock
FX_WORKERS = 2                 # sweep exports compile in parallel (the C compiler runs outside
                               # the GIL); the timed final runs are serial


@dataclass(frozen=True)
class FxMethod:
    name: str
    precision: str
    kw: dict
    eps: tuple = ()              # zo_eps grid swept jointly with lr; () = bp / jvp or eps_from
    eps_from: str = ""           # use the eps another method selected (lr swept alone)
    lr_from: str = ""            # use the lr and eps another method selected (rho swept alone)
    rho: tuple = ()              # zo_sam_rho grid (with lr_from)
    quant: dict = field(default_factory=dict)    # QuantConfig overrides
    target: bool = False         # the 3 pp target is marked (int8 zo and int8 jvp)

    @property
    def algo(self) -> str:
        return self.kw["algo"]

    @property
    def passes(self) -> int:
        """Forward passes per training sample: a bp sample counts one (its backward pass is
        not a forward pass), a zo sample 2n (+ the unperturbed one for the hybrid), a jvp
        sample n: one pass per direction, the forward calls with each node's tangent calls
        interleaved, counted once (its tangent work is in the host time, not in this count)."""
        n = int(self.kw.get("perturbations", 1))
        if self.algo == "zo":
            return 2 * n + (1 if self.kw.get("hybrid_bp_layers") else 0)
        return n if self.algo == "jvp" else 1

    @property
    def passes_cell(self) -> str:
        return f"{self.passes} (jvp)" if self.algo == "jvp" else str(self.passes)

    @property
    def depends(self) -> str:
        return self.eps_from or self.lr_from

    def grid(self, sc, quick=False):
        """lr grid: FX_LRS_BP for bp; the scenario's zo grid or FX_LRS_ZO otherwise (zo, jvp
        and the hybrid, whose one lr serves the zo layers and the bp head); quick: 2 rates."""
        bp = self.algo == "bp"
        g = FX_LRS_BP if bp else (sc.zo_lrs or FX_LRS_ZO)
        return g[1:3] if quick else g


FX_METHODS = (
    FxMethod("fp32 bp", "fp32", dict(algo="bp")),
    FxMethod("fp32 zo n=4", "fp32", dict(algo="zo", perturbations=4), eps=(1e-2,)),
    FxMethod("fp32 jvp n=4", "fp32", dict(algo="jvp", perturbations=4)),
    FxMethod("fp32 zo n=4 + bp last", "fp32",
             dict(algo="zo", perturbations=4, hybrid_bp_layers=1), eps=(1e-2,)),
    FxMethod("fp16 bp", "fp16", dict(algo="bp")),
    FxMethod("fp16 zo n=4", "fp16", dict(algo="zo", perturbations=4), eps=(1e-2,)),
    FxMethod("fp16 jvp n=4", "fp16", dict(algo="jvp", perturbations=4)),
    FxMethod("int8 bp", "int8", dict(algo="bp")),
    FxMethod("int8 zo n=4", "int8", dict(algo="zo", perturbations=4), eps=FX_EPS, target=True),
    # int8 jvp: the directions zo draws (rademacher, stream (seed, step, k)), dL.v exact up to
    # the integer tangents' rounding, no eps; trained weights int16 (16w8a, as int8 zo)
    FxMethod("int8 jvp n=4", "int8", dict(algo="jvp", perturbations=4, zo_dist="rademacher",
                                          zo_estimator="spsa"), target=True),
    FxMethod("int8 zo n=4 SAM", "int8", dict(algo="zo", perturbations=4),
             lr_from="int8 zo n=4", rho=FX_RHOS, target=True),
    FxMethod("int8 zo n=4 + bp last", "int8",
             dict(algo="zo", perturbations=4, hybrid_bp_layers=1), eps_from="int8 zo n=4",
             target=True),
    FxMethod("int8 zo n=4 sign", "int8", dict(algo="zo", perturbations=4, zo_estimator="sign"),
             eps_from="int8 zo n=4", target=True),
    FxMethod("int8 zo n=1", "int8", dict(algo="zo", perturbations=1), eps_from="int8 zo n=4",
             target=True),
    FxMethod("int8 jvp n=1", "int8", dict(algo="jvp", perturbations=1, zo_dist="rademacher",
                                          zo_estimator="spsa"), target=True),
    FxMethod("int8 zo n=1 sign", "int8", dict(algo="zo", perturbations=1, zo_estimator="sign"),
             eps_from="int8 zo n=4", target=True),
    FxMethod("int8 8w8a zo n=4", "int8", dict(algo="zo", perturbations=4),
             eps_from="int8 zo n=4", quant={"zo_weight_bits": 8}, target=True),
    # int16 activations carry far less rounding noise than int8: int16 zo gets its own eps
    # sweep, one decade lower included
    FxMethod("int16 zo n=4", "int16", dict(algo="zo", perturbations=4), eps=(1e-3, 1e-2)),
    FxMethod("int16 jvp n=4", "int16", dict(algo="jvp", perturbations=4)),
)
FX_BASE = ("fp32 bp", "fp32 zo n=4", "fp32 jvp n=4", "int8 bp", "int8 zo n=4", "int8 jvp n=4",
           "int8 zo n=4 SAM", "int8 zo n=4 sign", "int8 zo n=1", "int8 jvp n=1",
           "int8 zo n=1 sign", "int8 8w8a zo n=4", "int16 zo n=4", "int16 jvp n=4")
FX_FP16 = ("fp16 bp", "fp16 zo n=4", "fp16 jvp n=4")    # digits MLP last:1 only
FX_HYBRID = ("fp32 bp", "fp32 zo n=4", "fp32 jvp n=4", "fp32 zo n=4 + bp last", "int8 bp",
             "int8 zo n=4", "int8 jvp n=4", "int8 jvp n=1",
             "int8 zo n=4 + bp last")                    # the trainable-all scenarios
FX_QUICK = ("fp32 bp", "fp32 jvp n=4", "fp32 zo n=4 + bp last", "fp16 zo n=4", "fp16 jvp n=4",
            "int8 bp", "int8 zo n=4", "int8 jvp n=4", "int8 zo n=4 SAM", "int8 zo n=4 + bp last")
# the bp / zo / jvp summary at the top of the generated-C section: columns, and the rows' widths
FX_SUMMARY_COLS = ("bp", "zo n=1", "zo n=4", "jvp n=1", "jvp n=4")
FX_SUMMARY_PRECISIONS = ("fp32", "int8")


@dataclass
class FxScenario:
    name: str
    model: str                    # model label of the memory table
    graph: object
    trainable: str
    data: dict                    # x_train, y_train, x_val, y_val, x_test, y_test
    epochs: int
    note: str = ""
    methods: tuple = ()           # FxMethods run on this scenario, in table order
    zo_lrs: tuple = ()            # lr grid of zo / jvp / hybrid here; () = FX_LRS_ZO

    @property
    def samples(self) -> int:
        return self.epochs * len(self.data["x_train"])


@dataclass
class FxRun:
    """One trained export; the curves hold accuracy every FX_EVERY samples (index 0 = start)."""
    method: str
    lr: float
    eps: float | None
    rho: float | None = None
    out_dir: str = ""
    error: str = ""
    val: float = float("nan")
    warnings: tuple = ()
    mem: dict = field(default_factory=dict)
    fault: str = ""
    test_curve: list = field(default_factory=list)
    test_at: list = field(default_factory=list)    # samples trained at each curve point
    us: float = float("nan")     # host wall-clock per training sample (train_step only)


def _split_holdout(x, y, n_val, seed):
    """The held-out pool -> a validation split (selection) and the test split (reported)."""
    p = np.random.default_rng([seed, 0x5A1]).permutation(len(y))
    v, t = p[:n_val], p[n_val:]
    return {"x_val": x[v], "y_val": y[v], "x_test": x[t], "y_test": y[t]}


def _fx_methods(names, quick):
    return tuple(m for m in FX_METHODS if m.name in names and (not quick or m.name in FX_QUICK))


def fx_scenarios(quick=False):
    from tinytrain.datasets import make_adaptation_data
    from tinytrain.pipeline import load_model
    d = make_adaptation_data(0)
    dd = {"x_train": d["x_train"], "y_train": d["y_train"],
          **_split_holdout(d["x_test"], d["y_test"], 180, 0)}
    ep = 1 if quick else 8
    note = ("pretrained {}.onnx, 300 shifted adaptation samples, 180 shifted validation, 360 "
            "shifted test")
    digits = [(m, tr, FX_BASE + (FX_FP16 if (m, tr) == ("mlp", "last:1") else ()))
              for m, tr in (("mlp", "last:1"), ("cnn", "last:1"), ("mlp", "bias"))]
    hybrid = [(m, "all", FX_HYBRID) for m in ("mlp", "cnn")]
    out = []
    for m, tr, names in digits:
        if quick and (m, tr) != ("mlp", "last:1"):
            continue
        out.append(FxScenario(f"digits {m.upper()} {tr}", m, load_model(MODELS / f"{m}.onnx"), tr,
                              dd, ep, note.format(m), _fx_methods(names, quick)))
    c = cancer_scenario()
    cd = c.data
    out.append(FxScenario("cancer MLP last:1", "cancer 30-16-2", c.graph, "last:1",
                          {"x_train": cd["x_train"], "y_train": cd["y_train"],
                           **_split_holdout(cd["x_test"], cd["y_test"], 57, 0)},
                          1 if quick else 4, "the fp32 scenario above (random fc1, "
                          "standardised), 398 training, 57 validation, 114 test",
                          _fx_methods(FX_BASE, quick)))
    for m, tr, names in hybrid:
        if quick and m != "mlp":
            continue
        out.append(FxScenario(f"digits {m.upper()} {tr}", m, load_model(MODELS / f"{m}.onnx"), tr,
                              dd, ep, note.format(m) + "; every layer trains, so the hybrid "
                              "splits zo layers from the backprop head",
                              _fx_methods(names, quick), FX_LRS_ALL))
    return out


def _sample_order(n, seed=0):
    """The training sample sequence: one permutation per epoch, endless."""
    rng = np.random.default_rng(seed)
    while True:
        yield from rng.permutation(n)


def _fx_export(sc, m, lr, eps, rho, tmp):
    from tinytrain.passes import TrainConfig
    from tinytrain.passes.quantize import QuantConfig
    from tinytrain.pipeline import export
    kw = dict(m.kw)
    if eps is not None:
        kw["zo_eps"] = eps
    if rho is not None:
        kw["zo_sam_rho"] = rho
    cfg = TrainConfig(trainable=sc.trainable, optimizer="sgd", batch=1, lr=lr, **kw)
    tag = (f"{sc.name}_{m.name}_{lr:g}_{eps}_{rho}".replace(" ", "_").replace(":", "")
           .replace("=", "").replace("+", "p"))
    ex = {}
    if m.precision.startswith("int"):
        ex = {"calibration": sc.data["x_train"],
              "quant": QuantConfig(bits=int(m.precision[3:]), **m.quant)}
    res, prog, plan = export(sc.graph, Path(tmp) / tag, cfg, precision=m.precision, force=True,
                             command=f"bench/forward_gradient.py ({sc.name}, {m.name})", **ex)
    return res.out_dir, tuple(getattr(prog, "warnings", ()) or ()), plan.report()


def _err(e):
    return f"{type(e).__name__}: {' '.join(str(e).split())}"


def fx_sweep_one(sc, m, lr, eps, rho, tmp) -> FxRun:
    """Export, build, train the full run, validation accuracy at its end."""
    from tinytrain.errors import NumericFaultError
    from tinytrain.sim.host import HostModel
    from tinytrain.trainloop import accuracy
    r = FxRun(m.name, lr, eps, rho)
    try:
        r.out_dir, r.warnings, r.mem = _fx_export(sc, m, lr, eps, rho, tmp)
        hm = HostModel(r.out_dir)
        x, y = sc.data["x_train"], sc.data["y_train"]
        order = _sample_order(len(x))
        for k in range(sc.samples):
            i = next(order)
            try:
                hm.train_step(x[i:i + 1], y[i:i + 1])
            except NumericFaultError:
                r.fault = f"numeric fault at sample {k}"
                break
        r.val = accuracy(hm, sc.data["x_val"], sc.data["y_val"])
    except Exception as e:   # noqa: BLE001 - a failing export / build / step is a result
        r.error = _err(e)
    return r


def fx_final(sc, run: FxRun, n_samples: int, reps: int = 3):
    """The timed run of a selected export: reset, train n_samples one at a time (perf_counter
    around each train_step only), test accuracy every FX_EVERY samples (not timed). The run
    is deterministic; it is repeated reps - 1 more times without evaluations and the fastest
    repeat is the time (the host is a shared, noisy VM)."""
    _fx_curve(sc, run, n_samples)
    best = run.us
    for _ in range(reps - 1):
        best = min(best, _fx_time(sc, run, n_samples))
    run.us = best
    return run


def _fx_time(sc, run, n_samples):
    from tinytrain.errors import NumericFaultError
    from tinytrain.sim.host import HostModel
    hm = HostModel(run.out_dir)
    hm.reset()
    x, y = sc.data["x_train"], sc.data["y_train"]
    order = _sample_order(len(x))
    spent, done = 0.0, 0
    for _ in range(n_samples):
        i = next(order)
        t = time.perf_counter()
        try:
            hm.train_step(x[i:i + 1], y[i:i + 1])
        except NumericFaultError:
            break
        spent += time.perf_counter() - t
        done += 1
    return 1e6 * spent / max(done, 1)


def _fx_curve(sc, run, n_samples):
    from tinytrain.errors import NumericFaultError
    from tinytrain.sim.host import HostModel
    from tinytrain.trainloop import accuracy
    hm = HostModel(run.out_dir)
    hm.reset()
    x, y = sc.data["x_train"], sc.data["y_train"]
    xt, yt = sc.data["x_test"], sc.data["y_test"]
    order = _sample_order(len(x))
    curve, at, spent = [accuracy(hm, xt, yt)], [0], 0.0
    done = 0
    for k in range(n_samples):
        i = next(order)
        t = time.perf_counter()
        try:
            hm.train_step(x[i:i + 1], y[i:i + 1])
        except NumericFaultError:
            run.fault = f"numeric fault at sample {k}"
            break
        spent += time.perf_counter() - t
        done += 1
        if done % FX_EVERY == 0:
            curve.append(accuracy(hm, xt, yt))
            at.append(done)
    if at[-1] != done:
        curve.append(accuracy(hm, xt, yt))
        at.append(done)
    run.test_curve, run.test_at, run.us = curve, at, 1e6 * spent / max(done, 1)
    return run


def fx_pick(runs):
    """Best validation accuracy; ties -> the first in grid order (smallest lr, eps, rho)."""
    ok = [r for r in runs if not r.error and not np.isnan(r.val)]
    return max(ok, key=lambda r: r.val) if ok else (runs[0] if runs else None)


def fx_jobs(sc, m, sel, quick):
    """(method, lr, eps, rho) exports of m's sweep; a failed dependency -> a failed run."""
    if m.depends:
        src = sel.get(m.depends)
        if src is None or src.error:
            return [], FxRun(m.name, float("nan"), None,
                             error=f"ConfigError: needs the selection of {m.depends}, n/a")
        if m.lr_from:
            return [(m, src.lr, src.eps, rho) for rho in m.rho], None
        return [(m, lr, src.eps, None) for lr in m.grid(sc, quick)], None
    eps_grid = (m.eps if not quick or len(m.eps) < 2 else m.eps[1:]) or (None,)
    return [(m, lr, eps, None) for lr in m.grid(sc, quick) for eps in eps_grid], None


def fx_run_all(scs, con, tmp, quick=False):
    """{scenario: {method: (selected FxRun, [sweep FxRuns])}}"""
    from concurrent.futures import ThreadPoolExecutor
    out = {}
    for sc in scs:
        t0 = time.perf_counter()
        sel, sweeps = {}, {}
        for phase in (0, 1):
            jobs = []
            for m in sc.methods:
                if bool(m.depends) != bool(phase):
                    continue
                js, failed = fx_jobs(sc, m, sel, quick)
                jobs += js
                if failed:
                    sweeps[m.name] = [failed]
            with ThreadPoolExecutor(FX_WORKERS) as ex:
                res = list(ex.map(lambda j: fx_sweep_one(sc, *j, tmp), jobs))
            for (m, *_), r in zip(jobs, res):
                sweeps.setdefault(m.name, []).append(r)
            for m in sc.methods:
                if m.name in sweeps and m.name not in sel:
                    sel[m.name] = fx_pick(sweeps[m.name])
        t1 = time.perf_counter()
        # the timed runs: fp32 bp first (its time is the budget), then the others, extended
        # past the full run when they are faster than fp32 bp (capped at 3 full runs)
        for m in sc.methods:
            r = sel[m.name]
            if r.error:
                con.log(f"[red]{sc.name}: {m.name}: n/a ({r.error[:150]})[/red]")
                continue
            fx_final(sc, r, sc.samples)
            if m.name != "fp32 bp" and "fp32 bp" in sel and not sel["fp32 bp"].error:
                budget = sel["fp32 bp"].us * sc.samples / r.us
                if budget > sc.samples * 1.02 and not r.fault:
                    fx_final(sc, r, min(int(budget) + FX_EVERY, 3 * sc.samples))
            con.log(f"{sc.name}: {m.name} ({fx_hyper(r)}, val {r.val:.3f}): test "
                    f"{r.test_curve[0]:.3f} -> {fx_final_acc(sc, r):.3f}, "
                    f"{r.us:.1f} us/sample{', ' + r.fault if r.fault else ''}")
        out[sc.name] = {m.name: (sel[m.name], sweeps[m.name]) for m in sc.methods}
        con.log(f"{sc.name}: sweep {t1 - t0:.0f} s ({sum(map(len, sweeps.values()))} exports), "
                f"timed runs {time.perf_counter() - t1:.0f} s")
    return out


def fx_hyper(r):
    return (f"lr {r.lr:g}" + ("" if r.eps is None else f", eps {r.eps:g}")
            + ("" if r.rho is None else f", ρ {r.rho:g}"))


def fx_acc_at(run, n):
    """Test accuracy after n samples: the last evaluation at or before n (every FX_EVERY;
    the run's last point when it stopped earlier)."""
    import bisect
    if not run.test_curve:
        return float("nan")
    return run.test_curve[max(bisect.bisect_right(run.test_at, int(n)) - 1, 0)]


def fx_budget(sc, res, m):
    """(samples that fit in fp32 bp's full-run wall-clock, accuracy there)."""
    bp, r = res["fp32 bp"][0], res[m][0]
    if bp.error or r.error or np.isnan(r.us):
        return None, float("nan")
    b = int(bp.us * sc.samples / r.us)
    return b, fx_acc_at(r, b)


def fx_final_acc(sc, run):
    return fx_acc_at(run, sc.samples)


FX_ACC_HEAD = ["method", "lr", "zo_eps", "SAM ρ", "val (selection)", "test start",
               "test final", "Δ pp vs fp32 bp", "fwd passes / sample", "notes"]
FX_MEM_KEYS = ("arena", "params_rw", "grads", "opt_state", "ram_total", "params_ro")
FX_CLOCK_HEAD = ["method", "host us / sample", "speed vs fp32 bp", "samples in budget",
                 "test acc at budget", "Δ pp vs fp32 bp (full run)", f"≤ {FX_TARGET_PP:g} pp",
                 "arena B", "params_rw B", "grads B", "opt_state B", "RAM total B",
                 "params_ro (flash) B"]
FX_SWEEP_HEAD = ["scenario", "method", "validation accuracy per [eps/]lr or ρ", "selected"]
FX_SAM_HEAD = ["scenario", "lr, eps (int8 zo n=4)", "validation per ρ", "ρ picked",
               "val off → on", "test final off → on", "Δ pp (on − off)",
               "test at budget off → on"]


def _mem_cells(rep):
    return [f"{int(rep.get(k, 0)):,}" for k in FX_MEM_KEYS]


def _summary_head():
    """Column heads with the forward passes per sample (a jvp pass counted once)."""
    ms = {m.name: m for m in FX_METHODS}

    def col(c):
        m = ms[f"int8 {c}"]
        p = m.passes
        return f"{c} ({p} {'jvp ' if m.algo == 'jvp' else ''}pass{'es' if p > 1 else ''})"
    return ["scenario", "", *(col(c) for c in FX_SUMMARY_COLS)]


FX_SUM_HEAD = _summary_head()


def fx_summary(scs, results):
    """bp / zo / jvp side by side, one row per (scenario, precision): test accuracy (final /
    at fp32 bp's wall-clock budget, the 3 pp mark for int8 zo and jvp) and cost (host us per
    sample, planned arena / RAM total). '—' = not run on this scenario."""
    acc, cost = [], []
    for sc in scs:
        res = results[sc.name]
        bp = res["fp32 bp"][0]
        bp_acc = float("nan") if bp.error else fx_final_acc(sc, bp)
        for prec in FX_SUMMARY_PRECISIONS:
            ra, rc = [sc.name, prec], [sc.name, prec]
            for c in FX_SUMMARY_COLS:
                name = f"{prec} {c}"
                m = next((q for q in sc.methods if q.name == name), None)
                if m is None:
                    ra.append("—")
                    rc.append("—")
                    continue
                r = res[name][0]
                if r.error:
                    ra.append("n/a")
                    rc.append("n/a")
                    continue
                _, bacc = fx_budget(sc, res, name)
                mark = ""
                if m.target and not np.isnan(bacc):
                    mark = " ✓" if 100 * (bacc - bp_acc) >= -FX_TARGET_PP else " ✗"
                ra.append(f"{fx_final_acc(sc, r):.1%} / {bacc:.1%}{mark}")
                rc.append(f"{r.us:.1f} us; {int(r.mem.get('arena', 0)):,} / "
                          f"{int(r.mem.get('ram_total', 0)):,} B")
            acc.append(ra)
            cost.append(rc)
    return acc, cost


def fx_tables(scs, results):
    """Per scenario: accuracy rows and wall-clock + memory rows; the sweep rows, the target
    verdicts, the SAM on/off rows over all scenarios, and the bp / zo / jvp summary."""
    acc, clock, sweep, verdict, sam, errs = {}, {}, [], [], [], []
    for sc in scs:
        res = results[sc.name]
        bp = res["fp32 bp"][0]
        bp_acc = float("nan") if bp.error else fx_final_acc(sc, bp)
        acc[sc.name], clock[sc.name] = [], []
        for m in sc.methods:
            r, sw = res[m.name]
            errs += [f"{sc.name}, {m.name} ({fx_hyper(q)}): {q.error}" for q in sw
                     if q.error and q is not r]
            eps = "" if r.eps is None else f"{r.eps:g}"
            rho = "" if r.rho is None else f"{r.rho:g}"
            if r.error:
                acc[sc.name].append([m.name, "", eps, rho, "", "", f"n/a ({r.error[:90]})", "",
                                     m.passes_cell, ""])
                clock[sc.name].append([m.name, "", "", "", "n/a", "", ""] + [""] * 6)
                sweep.append([sc.name, m.name, "n/a", ""])
                continue
            a = fx_final_acc(sc, r)
            d = 100 * (a - bp_acc)
            notes = "; ".join(([r.fault] if r.fault else [])
                              + sorted({w.split(":")[0] + ": " + w.split(":")[1].strip()[:60]
                                        for w in r.warnings}))
            acc[sc.name].append([m.name, f"{r.lr:g}", eps, rho, f"{r.val:.1%}",
                                 f"{r.test_curve[0]:.1%}", f"{a:.1%}",
                                 "" if m.name == "fp32 bp" else f"{d:+.1f}", m.passes_cell,
                                 notes])
            b, bacc = fx_budget(sc, res, m.name)
            bd = 100 * (bacc - bp_acc)
            mark = ""
            if m.target and not np.isnan(bd):
                mark = "✓" if bd >= -FX_TARGET_PP else "✗"
                verdict.append((sc.name, m.name, bd, mark == "✓", m.algo))
            clock[sc.name].append(
                [m.name, f"{r.us:.1f}", f"{bp.us / r.us:.2f}",
                 f"{b:,} ({b / len(sc.data['x_train']):.1f} ep)", f"{bacc:.1%}",
                 "" if m.name == "fp32 bp" else f"{bd:+.1f}", mark] + _mem_cells(r.mem))
            cells = sorted(sw, key=lambda q: (q.rho or 0, q.eps or 0, q.lr))
            sweep.append([sc.name, m.name,
                          "  ".join((f"ρ {q.rho:g}" if q.rho is not None else
                                     ("" if q.eps is None else f"{q.eps:g}/") + f"{q.lr:g}")
                                    + ": " + ("n/a" if q.error else f"{q.val:.0%}")
                                    for q in cells), fx_hyper(r)])
        if "int8 zo n=4 SAM" in res and "int8 zo n=4" in res:
            on, sw = res["int8 zo n=4 SAM"]
            off = res["int8 zo n=4"][0]
            if not (on.error or off.error):
                a_on, a_off = fx_final_acc(sc, on), fx_final_acc(sc, off)
                b_on, b_off = fx_budget(sc, res, on.method)[1], fx_budget(sc, res, off.method)[1]
                sam.append([sc.name, f"{off.lr:g}, {off.eps:g}",
                            "  ".join(f"{q.rho:g}: " + ("n/a" if q.error else f"{q.val:.1%}")
                                      for q in sorted(sw, key=lambda q: q.rho)),
                            f"{on.rho:g}", f"{off.val:.1%} → {on.val:.1%}",
                            f"{a_off:.1%} → {a_on:.1%}", f"{100 * (a_on - a_off):+.1f}",
                            f"{b_off:.1%} → {b_on:.1%}"])
    return acc, clock, sweep, verdict, sam, errs, fx_summary(scs, results)


def fx_verdict_lines(verdict, scs):
    """The 3 pp target at equal host wall-clock: one count and per-scenario lines for the int8
    zo methods, the same for int8 jvp."""
    if not verdict:
        return ["int8 zo / jvp at equal wall-clock: not measured"]
    lines = []
    for algo, what in (("zo", "int8 zo methods (16w8a / 8w8a, n=1 / 4, spsa / sign, SAM, "
                               "+ bp last)"),
                       ("jvp", "int8 jvp (n=1 / 4, rademacher, spsa, 16w8a)")):
        va = [v for v in verdict if v[4] == algo]
        if not va:
            continue
        lines.append(f"{what} within {FX_TARGET_PP:g} pp of fp32 bp at equal host wall-clock: "
                     f"met in {sum(v[3] for v in va)} of {len(va)} (scenario, method) cells")
        for sc in scs:
            vs = [v for v in va if v[0] == sc.name]
            if not vs:
                continue
            if algo == "jvp":
                lines.append(f"{sc.name}: " + ", ".join(
                    f"{v[1]} {v[2]:+.1f} pp ({'met' if v[3] else 'not met'})" for v in vs))
                continue
            best = max(vs, key=lambda v: v[2])
            lines.append(f"{sc.name}: best int8 zo at the budget is {best[1]} at {best[2]:+.1f} pp "
                         f"({'met' if best[3] else 'not met'}); met by "
                         + (", ".join(v[1] for v in vs if v[3]) or "none"))
    return lines


def _fx_final(scs, results, sc_name, method):
    sc = next((s for s in scs if s.name == sc_name), None)
    r = results.get(sc_name, {}).get(method, (None,))[0]
    if sc is None or r is None or r.error:
        return None
    return fx_final_acc(sc, r)


def fx_reading(scs, results):
    """The "Reading it" bullets of the generated-C section; every number from this run."""
    def fin(s, m):
        return _fx_final(scs, results, s, m)

    def run(s, m):
        r = results.get(s, {}).get(m, (None,))[0]
        return None if r is None or r.error else r

    def pp(s, a, b):
        x, y = fin(s, a), fin(s, b)
        return None if x is None or y is None else 100 * (x - y)

    def desc(s, m):
        r = run(s, m)
        return (f"{m} {fin(s, m):.1%} ({r.us:.1f} us/sample, RAM "
                f"{int(r.mem.get('ram_total', 0)):,} B)")

    names = [sc.name for sc in scs]
    last = [s for s in names if not s.endswith(" all")]
    speed = [run(s, "fp32 bp").us / run(s, "int8 zo n=4").us for s in last
             if run(s, "fp32 bp") and run(s, "int8 zo n=4")]
    out = [
        "Equal wall-clock: on the host a zo sample costs 2n int8 forward passes (plus the "
        "perturb / restore / update sweeps) against fp32 bp's one forward and one backward "
        "pass of the trained layers; int8 zo n=4 ran at "
        f"{_span(speed, '{:.2f}', 'x')} fp32 bp's samples per second on the last:1 / bias / "
        "cancer scenarios, and it also learns less per sample: at equal samples it ended "
        f"{_span([pp(s, 'int8 zo n=4', 'fp32 bp') for s in last])} vs fp32 bp and "
        f"{_span([pp(s, 'int8 zo n=4', 'fp32 zo n=4') for s in last])} vs fp32 zo n=4 "
        "(the int8 arithmetic vs zo itself).",
        "Host wall-clock is the x86 simulator's, including the cffi call per sample (a few us, "
        "a large part of the MLP's per-sample time): it says little about an MCU, where the "
        "ratio follows MACs and memory traffic instead; the forward-pass axis of the plot is "
        "the machine-independent view.",
    ]
    out += fx_reading_jvp(names, run, pp)
    sam = [(s, run(s, "int8 zo n=4 SAM"), pp(s, "int8 zo n=4 SAM", "int8 zo n=4")) for s in names
           if run(s, "int8 zo n=4 SAM") and pp(s, "int8 zo n=4 SAM", "int8 zo n=4") is not None]
    if sam:
        slow = [r.us / run(s, "int8 zo n=4").us for s, r, _ in sam]
        out.append("Sharpness-aware point, int8 zo n=4 (ρ picked on validation at the int8 zo "
                   "n=4 lr and eps): final test accuracy on - off "
                   + ", ".join(f"{s} {d:+.1f} pp (ρ {r.rho:g})" for s, r, d in sam)
                   + ". One sample order: 1-2 pp is within run-to-run noise. Host time per "
                   f"sample on / off: {_span(slow, '{:.2f}', 'x')} (per direction one more sweep "
                   "over the zo weights to ascend and one to remove the ascent).")
    hy = [s for s in names if run(s, "int8 zo n=4 + bp last")]
    for s in hy:
        rs = {m: run(s, m) for m in ("int8 zo n=4 + bp last", "int8 zo n=4", "int8 bp",
                                     "fp32 zo n=4 + bp last", "fp32 bp")}
        acc = ", ".join(f"{m} {fin(s, m):.1%}" for m, r in rs.items() if r)
        ram = ", ".join(f"{m} {int(r.mem.get('arena', 0)):,} / {int(r.mem.get('ram_total', 0)):,}"
                        for m, r in rs.items() if r and m.startswith("int8"))
        out.append(f"Hybrid in fixed point, {s}: final test accuracy {acc}. Planned arena / RAM "
                   f"total (bytes): {ram}. The bp head keeps its weights at int8 while the zo "
                   "layers hold 16-bit ones (16w8a), so its params_rw is below int8 zo's; its "
                   "saved input for the backward pass sits in the arena.")
    f16 = [m for m in FX_FP16 if any(run(s, m) for s in names)]
    for s in names:
        have = [desc(s, m) for m in [*f16, "fp32 bp", "fp32 zo n=4", "fp32 jvp n=4"]
                if run(s, m)]
        if any(run(s, m) for m in f16):
            out.append(f"fp16, {s}: " + ", ".join(have) + ". fp16 keeps fp32 master weights "
                       "(opt_state) and, for bp, a gradient buffer (grads), where fp32 batch-1 "
                       "SGD needs neither.")
    w8 = [pp(s, "int8 8w8a zo n=4", "int8 zo n=4") for s in last]
    out.append("16w8a vs 8w8a: 8-bit weights halve params_rw; at equal samples 8w8a ended "
               f"{_span(w8)} vs 16w8a (updates below one LSB happen only through stochastic "
               "rounding). Sign-SPSA vs SPSA (n=4): "
               f"{_span([pp(s, 'int8 zo n=4 sign', 'int8 zo n=4') for s in last])}; n=1 vs "
               f"n=4: {_span([pp(s, 'int8 zo n=1', 'int8 zo n=4') for s in last])}.")
    zmem = [(s, run(s, "int8 zo n=4"), run(s, "int8 bp")) for s in names]
    out.append("Memory: zo keeps the inference arena but 16w8a stores the trainable weights as "
               "int16 (params_rw x2); int8 zo n=4 vs int8 bp RAM total (bytes): "
               + ", ".join(f"{s} {int(z.mem['ram_total']):,} vs {int(b.mem['ram_total']):,}"
                           for s, z, b in zmem if z and b) + ".")
    out.append("int16 zo: the int64 biases of int16 models have scales around 1e-8..1e-9, so "
               "their integer perturbation step is millions of LSBs; the kernels take steps up "
               "to 2^30 LSB for int64 (2^24 for int32), so the real perturbation is zo_eps as "
               "for the weights.")
    return out


def fx_reading_jvp(names, run, pp):
    """The jvp bullets: jvp vs zo vs bp at equal samples, host cost, planned memory."""
    def per(a, b):
        return _span([pp(s, a, b) for s in names])

    def ratio(a, b):
        return _span([run(s, a).us / run(s, b).us for s in names if run(s, a) and run(s, b)],
                     "{:.2f}", "x")

    def mem(s, m):
        r = run(s, m)
        return (f"{int(r.mem.get('arena', 0)):,} / {int(r.mem.get('ram_total', 0)):,}" if r
                else "—")

    if not any(run(s, "int8 jvp n=4") for s in names):
        return []
    return [
        "jvp vs zo at equal samples (final test accuracy, per scenario, min to max): int8 jvp "
        f"n=4 - int8 zo n=4 {per('int8 jvp n=4', 'int8 zo n=4')}, int8 jvp n=1 - int8 zo n=1 "
        f"{per('int8 jvp n=1', 'int8 zo n=1')}, fp32 jvp n=4 - fp32 zo n=4 "
        f"{per('fp32 jvp n=4', 'fp32 zo n=4')}, int16 jvp n=4 - int16 zo n=4 "
        f"{per('int16 jvp n=4', 'int16 zo n=4')}; int8 jvp n=4 - fp32 jvp n=4 (the integer "
        f"arithmetic) {per('int8 jvp n=4', 'fp32 jvp n=4')}; int8 jvp n=4 - int8 bp "
        f"{per('int8 jvp n=4', 'int8 bp')}; int8 jvp n=4 - fp32 bp "
        f"{per('int8 jvp n=4', 'fp32 bp')}. jvp and zo draw the same directions; the lr is "
        "selected per method, and both int8 zo and int8 jvp train 16-bit weights (16w8a).",
        "jvp host cost per sample: int8 jvp n=4 / int8 zo n=4 "
        f"{ratio('int8 jvp n=4', 'int8 zo n=4')}, int8 jvp n=1 / int8 zo n=1 "
        f"{ratio('int8 jvp n=1', 'int8 zo n=1')}, fp32 jvp n=4 / fp32 zo n=4 "
        f"{ratio('fp32 jvp n=4', 'fp32 zo n=4')}, int8 jvp n=4 / fp32 jvp n=4 "
        f"{ratio('int8 jvp n=4', 'fp32 jvp n=4')}, int8 jvp n=4 / fp32 bp "
        f"{ratio('int8 jvp n=4', 'fp32 bp')} (n jvp passes against 2n zo passes; an int8 "
        "Gemm / Conv tangent is computed in 2-3 passes over the layer).",
        "Planned arena / RAM total (bytes), int8 jvp n=4 vs int8 zo n=4 vs int8 bp vs fp32 jvp "
        "n=4: " + "; ".join(f"{s} {mem(s, 'int8 jvp n=4')} vs {mem(s, 'int8 zo n=4')} vs "
                           f"{mem(s, 'int8 bp')} vs {mem(s, 'fp32 jvp n=4')}" for s in names)
        + ". jvp keeps a value and its tangent live together, so its arena is zo's (the "
        "inference arena) or larger; the 16w8a format of int8 zo and jvp doubles the trained "
        "weights (params_rw) against int8 bp.",
    ]


def _rich_table(title, head, rows, left=("scenario", "method", "notes", "selected")):
    from rich.table import Table
    t = Table(title=title, title_justify="left")
    for c in head:
        t.add_column(c, justify="left" if c in left or c == FX_SWEEP_HEAD[2] else "right",
                     overflow="fold")
    for row in rows:
        t.add_row(*[c.replace("✓", "[green]✓[/green]").replace("✗", "[red]✗[/red]")
                    for c in row])
    return t


def fx_print(con, scs, results, secs):
    tables = fx_tables(scs, results)
    acc, clock, sweep, verdict, sam, errs, (sum_acc, sum_cost) = tables
    con.print(_rich_table("bp vs zo vs jvp, fp32 and int8: test accuracy final / at fp32 bp's "
                          "wall-clock budget", FX_SUM_HEAD, sum_acc))
    con.print(_rich_table("bp vs zo vs jvp, fp32 and int8: host us / sample; planned arena / "
                          "RAM total", FX_SUM_HEAD, sum_cost))
    for sc in scs:
        con.print(_rich_table(f"{sc.name}: final test accuracy after {sc.samples} samples "
                              "(generated C, batch 1 SGD)", FX_ACC_HEAD, acc[sc.name]))
        con.print(_rich_table(f"{sc.name}: host wall-clock, fp32 bp budget, planned memory",
                              FX_CLOCK_HEAD, clock[sc.name]))
    con.print(_rich_table("int8 zo n=4: SAM on vs off", FX_SAM_HEAD, sam))
    con.print(_rich_table("lr / zo_eps / ρ sweep (validation accuracy after the full run)",
                          FX_SWEEP_HEAD, sweep))
    for e in errs:
        con.print(f"  sweep n/a: {e}")
    reading = fx_reading(scs, results)
    for line in fx_verdict_lines(verdict, scs) + reading:
        con.print(f"  - {line}")
    con.print(f"  generated-C part: {secs:.0f} s")
    return tables + (reading,)


def _md_table(head, rows):
    esc = lambda s: str(s).replace("|", "\\|")   # noqa: E731
    return (["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            + ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows])


FX_MARK = "## Fixed point"


def fx_write_md(path, scs, tables, secs, quick):
    acc, clock, sweep, verdict, sam, errs, (sum_acc, sum_cost), reading = tables
    old = path.read_text() if path.exists() else "# Forward-gradient training\n"
    old = old.split("\n" + FX_MARK)[0].rstrip("\n")
    lines = [
        "",
        f"{FX_MARK} and fp16: forward-gradient training through the generated C (issue 5)",
        "",
        f"Generated by `python bench/forward_gradient.py{' --quick' if quick else ''}` "
        f"(this part {secs:.0f} s on this machine, 2 cores). Every run exports the model "
        "(`export(..., precision=...)`; int8/int16 calibrated on the adaptation inputs, default "
        "QuantConfig: minmax, stochastic rounding; int8 zo weights 16-bit = the 16w8a format "
        "unless marked 8w8a) and trains the generated C through the host simulator (HostModel), "
        "one sample per `tt_train_step`: batch 1, plain SGD, constant learning rate, "
        "cross-entropy, rademacher directions, the same sample order for every method (seed 0, "
        "one permutation per epoch). Full run: "
        + "; ".join(f"{sc.name} {sc.epochs} epochs = {sc.samples} samples" for sc in scs) + ".",
        "",
        "Methods: `zo n=4` = SPSA with 4 directions (8 forward passes per sample); `jvp n=4` = "
        "forward mode along the 4 directions zo draws (same PRNG streams; rademacher, spsa "
        "estimator, no eps); `SAM` = zo with the sharpness-aware evaluation point "
        "(`zo_sam_rho`); `+ bp last` = the "
        "hybrid (`hybrid_bp_layers=1`: the last layer trains by backprop from the unperturbed "
        "pass, the earlier trainable layers by zo n=4; in int8 by integer backprop and 16w8a "
        "zo); `sign` = sign-SPSA. int8 zo stores the weights it trains as int16 (16w8a) unless "
        "marked 8w8a; int8 jvp stores them as int16 too (16w8a).",
        "",
        "Forward passes per sample: bp 1 (plus its backward pass), zo 2n (+1 for the hybrid), "
        "jvp n. A jvp pass is one forward pass carrying the tangents (in fixed point each "
        "node's tangent calls interleaved with its forward calls) and is counted once. Its "
        "tangent work is not in the count: per Gemm / Conv on the tangent's path t_x W where "
        "the input carries a tangent, x V and v_b where the weight and bias train, which the "
        "int8 tangent kernels compute in 2 passes over the layer and the int16 ones in 3 (the "
        "tangent's power-of-two exponent comes from a first pass); the host time per sample is "
        "the cost to compare.",
        "",
        "Scenarios: " + "; ".join(f"**{sc.name}**: {sc.note}" for sc in scs) + ". The held-out "
        "pool of each scenario is split once into a validation part (selection) and the test "
        "part (reported), so the test images differ from the fp32 section above.",
        "",
        "Selection (per scenario and method, by validation accuracy after the full run; ties: "
        f"the smaller lr / eps / ρ): lr in {{{', '.join(f'{v:g}' for v in FX_LRS_BP)}}} (bp), "
        f"{{{', '.join(f'{v:g}' for v in FX_LRS_ZO)}}} (zo, jvp; on the trainable-all "
        f"scenarios {{{', '.join(f'{v:g}' for v in FX_LRS_ALL)}}} for zo, jvp and + bp last, "
        "whose one lr serves the zo layers and the bp head); jvp (fp32, fp16, int8, int16) has "
        "no eps and sweeps lr alone; "
        "int8 zo n=4 (spsa) jointly with zo_eps in "
        f"{{{', '.join(f'{v:g}' for v in FX_EPS)}}}, int16 zo with zo_eps in {{0.001, 0.01}}; "
        "the other int8 zo methods (sign, n=1, 8w8a, + bp last) reuse the int8 n=4 eps and "
        "sweep lr only; int8 zo n=4 SAM reuses the int8 n=4 lr and eps and sweeps ρ in "
        f"{{{', '.join(f'{v:g}' for v in FX_RHOS)}}}; fp32 and fp16 zo keep eps 0.01. The "
        "timed runs below are the selected exports rerun from tt_init (deterministic: the same "
        "curve). One sample order: differences of 1-2 pp are within run-to-run noise.",
        "",
        "Per scenario two tables: the final test accuracy after the full run (equal samples), "
        "and the host wall-clock with the equal-wall-clock comparison and the planned memory. "
        "Host wall-clock per training sample = `time.perf_counter()` around each "
        "`HostModel.train_step` (one sample: the cffi call and the C step; exports, builds and "
        "evaluations excluded), fastest of 3 repeats, this machine (-O2, noisy shared 2-core "
        "VM). Budget = the time fp32 bp takes for its full run; a method gets "
        "floor(budget / its us per sample) samples, continuing the same sample sequence "
        "(fewer samples when it is slower; more epochs, up to 3 full runs, when faster), and "
        f"its test accuracy is read at the last evaluation at or before that count (every "
        f"{FX_EVERY} samples). Δ = that accuracy minus fp32 bp's final accuracy; the issue's "
        f"target (≤ {FX_TARGET_PP:g} pp below) is marked for the int8 zo and int8 jvp methods. "
        "Memory from the export's `plan.report()`, bytes: RAM total = arena + params_rw "
        "(trainable parameters) + grads + opt_state; params_ro (frozen) stays in flash.",
        "",
        "### bp vs zo vs jvp, fp32 and int8 (summary)",
        "",
        "One row per scenario and precision; columns bp / zo / jvp with the forward passes per "
        "sample. Test accuracy: final after the full run (equal samples) / at fp32 bp's "
        f"wall-clock budget, ✓ / ✗ = the {FX_TARGET_PP:g} pp target (int8 zo and jvp). The "
        "per-scenario tables below have every method, the selected lr / eps and the sweeps; "
        "— = not run on that scenario.",
        "",
    ]
    lines += _md_table(FX_SUM_HEAD, sum_acc)
    lines += ["", "Host us per training sample; planned arena / RAM total (bytes):", ""]
    lines += _md_table(FX_SUM_HEAD, sum_cost)
    lines += [""]
    for sc in scs:
        lines += [f"### {sc.name}", "", f"Final test accuracy after {sc.samples} samples:", ""]
        lines += _md_table(FX_ACC_HEAD, acc[sc.name])
        lines += ["", "Host wall-clock, equal-wall-clock budget (fp32 bp's full run) and "
                  "planned memory:", ""]
        lines += _md_table(FX_CLOCK_HEAD, clock[sc.name])
        lines += [""]
    lines += ["### The 3 pp target (int8 zo / int8 jvp within 3 pp of fp32 bp at equal host "
              "wall-clock)",
              ""] + [f"- {s}" for s in fx_verdict_lines(verdict, scs)]
    lines += ["", "### Sharpness-aware point in int8 (int8 zo n=4, SAM on vs off)", "",
              "Same export settings, lr and eps as int8 zo n=4; ρ picked by validation "
              "accuracy; one sample order.", ""]
    lines += _md_table(FX_SAM_HEAD, sam)
    lines += ["", "### Sweep (validation accuracy after the full run)", ""]
    lines += _md_table(FX_SWEEP_HEAD, sweep)
    if errs:
        lines += ["", "n/a in the sweep (the export refused the setting):", ""]
        lines += [f"- {e}" for e in errs]
    lines += ["", "Plot: `forward_gradient_fixed.png` (per scenario: test accuracy vs training "
              "samples, vs forward passes (a jvp pass counted once), vs host wall-clock with "
              "fp32 bp's budget marked)."]
    lines += ["", "### Reading it", ""] + [f"- {s}" for s in reading]
    path.write_text(old + "\n" + "\n".join(lines) + "\n")


FX_STYLE = {"fp32 bp": ("k", "-", 2.0), "fp32 zo n=4": ("0.45", "--", 1.6),
            "fp32 zo n=4 + bp last": ("0.45", "-.", 1.6),
            "fp16 bp": ("#8c564b", "-", 1.3), "fp16 zo n=4": ("#8c564b", "--", 1.3),
            "fp16 jvp n=4": ("#8c564b", ":", 1.6),
            "int8 bp": ("#1f77b4", "-", 1.2), "int8 zo n=4": ("#d62728", "-", 1.8),
            "int8 zo n=4 SAM": ("#e377c2", "--", 1.6),
            "int8 zo n=4 + bp last": ("#17becf", "-", 1.8),
            "int8 zo n=4 sign": ("#ff7f0e", "-", 1.3), "int8 zo n=1": ("#d62728", ":", 1.5),
            "int8 zo n=1 sign": ("#ff7f0e", ":", 1.5),
            "int8 8w8a zo n=4": ("#9467bd", "-.", 1.3), "int16 zo n=4": ("#2ca02c", "--", 1.3),
            "fp32 jvp n=4": ("0.45", ":", 2.0), "int8 jvp n=4": ("#bcbd22", "-", 2.0),
            "int8 jvp n=1": ("#bcbd22", ":", 1.6), "int16 jvp n=4": ("#2ca02c", ":", 1.6)}


def fx_plot(scs, results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(3, len(scs), figsize=(4.4 * len(scs), 10.5), squeeze=False)
    handles = {}
    for j, sc in enumerate(scs):
        res = results[sc.name]
        bp = res["fp32 bp"][0]
        for m in sc.methods:
            r = res[m.name][0]
            if r.error or not r.test_curve:
                continue
            c, s = np.asarray(r.test_curve), np.asarray(r.test_at)
            col, ls, lw = FX_STYLE.get(m.name, ("c", "-", 1.0))
            kw = dict(color=col, ls=ls, lw=lw, label=m.name)
            ax[0, j].plot(s, c, **kw)
            ax[1, j].plot(s * m.passes, c, **kw)
            handles.setdefault(m.name, ax[2, j].plot(s * r.us / 1e3, c, **kw)[0])
        ax[0, j].set_xlim(0, sc.samples)
        ax[1, j].set_xlim(0, sc.samples * 2)
        if not bp.error:
            tb = bp.us * sc.samples / 1e3
            ax[2, j].axvline(tb, color="k", lw=0.8, ls=":")
            ax[2, j].set_xlim(0, 1.5 * tb)
            acc = fx_final_acc(sc, bp)
            handles.setdefault("band", ax[2, j].axhspan(
                acc - FX_TARGET_PP / 100, acc, color="green", alpha=0.1,
                label=f"fp32 bp −{FX_TARGET_PP:g} pp"))
        ax[0, j].set_title(sc.name, fontsize=10)
        ax[0, j].set_xlabel("training samples (batch 1)")
        ax[1, j].set_xlabel("forward passes (bp = 1, zo = 2n, jvp = n)")
        ax[2, j].set_xlabel("host train_step ms; dotted = fp32 bp budget")
        lo = min((min(res[m.name][0].test_curve) for m in sc.methods
                  if not res[m.name][0].error and res[m.name][0].test_curve), default=0)
        for a in ax[:, j]:
            a.set_ylim(max(0.0, lo - 0.05), 1.0)
            a.grid(alpha=0.3)
    for i in range(3):
        ax[i, 0].set_ylabel("test accuracy")
    order = [n for n in FX_STYLE if n in handles] + (["band"] if "band" in handles else [])
    fig.legend([handles[n] for n in order], [handles[n].get_label() for n in order],
               loc="lower center", ncol=min(len(order), 10), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run_fixed(con, quick, out):
    t0 = time.time()
    scs = fx_scenarios(quick)
    with tempfile.TemporaryDirectory(prefix="tt_fg_fixed_") as tmp:
        results = fx_run_all(scs, con, tmp, quick)
    secs = time.time() - t0
    tables = fx_print(con, scs, results, secs)
    out.mkdir(parents=True, exist_ok=True)
    fx_write_md(out / "forward_gradient.md", scs, tables, secs, quick)
    fx_plot(scs, results, out / "forward_gradient_fixed.png")
    con.print(f"wrote {out / 'forward_gradient.md'} (generated-C section) and "
              f"forward_gradient_fixed.png ({time.time() - t0:.0f} s)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sweep", action="store_true", help="run the learning-rate sweep only")
    ap.add_argument("--no-timing", action="store_true", help="skip the host C timing")
    ap.add_argument("--fixed-only", action="store_true",
                    help="run only the generated-C part (fixed point and fp16; keeps the fp32 "
                         "section of the .md)")
    ap.add_argument("--no-fixed", action="store_true", help="skip the generated-C part")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run of the generated-C part (digits MLP last:1 and all, "
                         "cancer; the FX_QUICK methods, 1 epoch, 2 learning rates; ~2 "
                         "minutes); writes to a temporary folder unless --out is given")
    ap.add_argument("--out", default=None, help="results folder (default bench/results)")
    args = ap.parse_args()
    if args.sweep:
        sweep()
        return 0
    from rich.console import Console
    con = Console(width=None if sys.stdout.isatty() else 200, highlight=False)
    out = (Path(args.out) if args.out else
           Path(tempfile.mkdtemp(prefix="tt_fg_quick_")) if args.quick else RESULTS)
    if not (args.quick or args.fixed_only):
        run_fp32(con, args, out)
    if not args.no_fixed:
        run_fixed(con, args.quick, out)
    return 0


def run_fp32(con, args, out):
    from rich.table import Table
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
    sams = sam_compare(scs, con)

    timing = {}
    if not args.no_timing:
        with tempfile.TemporaryDirectory() as tmp:
            for sc in scs:
                if sc.trainable != "all" or not sc.name.startswith("digits"):
                    continue
                for m in METHODS:
                    timing[(sc.name, m.name)] = host_us_per_sample(m, sc, tmp)

    md_rows = {}      # scenario -> rows
    for sc, m, curve, passes, macs in results:
        k = len(curve) - 1
        pick = lambda i: "diverged" if np.isnan(curve[i]) else f"{curve[i]:.1%}"  # noqa: E731
        us = timing.get((sc.name, m.name))
        md_rows.setdefault(sc.name, []).append(
            [m.name, f"{lr_for(m, sc):g}", pick(0), pick(k // 3), pick(2 * k // 3), pick(k),
             f"{np.nanmax(curve):.1%}", str(passes), f"{macs:,}", f"{us:.1f}" if us else ""])
    for name, rows in md_rows.items():
        t = Table(title=f"{name}: test accuracy after {STEPS} steps of batch {BATCH} "
                        "(SGD+momentum; numpy reference); cost per training sample",
                  title_justify="left")
        for c in FP32_HEAD:
            t.add_column(c, justify="left" if c == "method" else "right")
        for row in rows:
            t.add_row(*row)
        con.print(t)
    t = Table(title=f"sharpness-aware point: {SAM_BASE} with zo_sam_rho on vs off (validation-"
                    f"picked ρ, seeds {', '.join(map(str, SAM_SEEDS))})", title_justify="left")
    for c in SAM_HEAD:
        t.add_column(c, justify="left" if c == "scenario" else "right", overflow="fold")
    for row in sam_rows(sams):
        t.add_row(*row)
    con.print(t)

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
    reading = fp32_reading(results, timing, mem, sams)
    for line in reading:
        con.print(f"  - {line}")

    out.mkdir(parents=True, exist_ok=True)
    plot(scs, out / "forward_gradient.png")
    write_md(out / "forward_gradient.md", md_rows, sams, mem_md, models, reading,
             time.time() - t0)
    con.print(f"wrote {out / 'forward_gradient.md'} and forward_gradient.png "
              f"({time.time() - t0:.0f} s)")


FP32_HEAD = ["method", "lr", "start", f"@{STEPS // 3}", f"@{2 * STEPS // 3}", f"@{STEPS}",
             "best", "fwd passes / sample", "MACs / sample", "host C us / sample"]


def _span(vals, fmt="{:+.1f}", unit=" pp"):
    """'a' or 'a to b' over the finite values (min to max)."""
    v = [x for x in vals if x is not None and np.isfinite(x)]
    if not v:
        return "n/a"
    lo, hi = min(v), max(v)
    txt = fmt.format(lo) if np.isclose(lo, hi) else f"{fmt.format(lo)} to {fmt.format(hi)}"
    return txt + unit


def fp32_reading(results, timing, mem, sams):
    """The "Reading it" bullets of the fp32 section; every number from this run."""
    fin = {(sc.name, m.name): curve[-1] for sc, m, curve, _, _ in results}
    names = sorted({s for s, _ in fin}, key=lambda s: [sc.name for sc, *_ in results].index(s))
    pp = lambda a, b: 100 * (fin[a] - fin[b]) if a in fin and b in fin else None  # noqa: E731
    zj = [abs(pp((s, f"zo n={n}"), (s, f"jvp n={n}"))) for s in names for n in (1, 4)
          if pp((s, f"zo n={n}"), (s, f"jvp n={n}")) is not None]
    n14 = [pp((s, "zo n=4"), (s, "zo n=1")) for s in names]
    sign = [pp((s, "zo n=4 sign"), (s, "zo n=4")) for s in names]
    hy = [s for s in names if (s, "hybrid zo n=4 sign + bp last 1") in fin
          and s.startswith("digits")]
    hy_txt = "; ".join(f"{s}: hybrid {fin[(s, 'hybrid zo n=4 sign + bp last 1')]:.1%} vs zo n=4 "
                       f"sign {fin[(s, 'zo n=4 sign')]:.1%} vs bp {fin[(s, 'bp')]:.1%}"
                       for s in hy)
    arena_add = [mem[(m, "all", "hybrid zo + bp last 1, SGD batch 1")][0]
                 - mem[(m, "all", "zo, SGD")][0] for m in ("mlp", "cnn")]
    ram = lambda m, a: mem[(m, "all", a)][1]    # noqa: E731
    jz = {s: timing[(s, "jvp n=4")] / timing[(s, "zo n=4")] for s in names
          if (s, "jvp n=4") in timing and (s, "zo n=4") in timing}
    cancer = [v for (s, _), v in fin.items() if s.startswith("cancer")]
    sam_d = [100 * (x.mean(x.pick, 1) - x.mean(0.0, 1)) for x in sams]
    sam_seed = [100 * (on[1] - off[1]) for x in sams
                for on, off in zip(x.runs[x.pick], x.runs[0.0])]
    return [
        "zo (SPSA) and jvp draw the same directions from the same PRNG streams, so at equal n "
        "and lr their runs differ only by SPSA's finite-difference error (eps 1e-2 here): their "
        f"final accuracies differ by at most {max(zj):.1f} pp in this run. jvp needs no eps and "
        "gives the exact directional derivative with one forward pass carrying tangents "
        "instead of two forward passes, at a larger arena; zo's arena is the inference arena.",
        f"More directions per step (zo n=1 -> 4) changed the final accuracy by {_span(n14)} at "
        "equal steps (not at equal forward passes: see the plot). The sign estimator vs "
        f"magnitude SPSA (both n=4): {_span(sign)}. Both estimators' variance grows with the "
        "number of perturbed parameters, so the swept learning rates for `all` are smaller "
        "than for `last:1`.",
        f"Hybrid (backprop for the classifier, zo n=4 sign for the rest) on {hy_txt}; it costs "
        "one more forward pass, the classifier's backward pass and its saved input (planned "
        f"arena +{arena_add[0]} B on the MLP, +{arena_add[1]} B on the CNN, SGD batch 1).",
        "Memory (trainable all): bp at batch-1 SGD fuses the update into the backward pass "
        f"and keeps no gradient buffers (MLP RAM {ram('mlp', 'bp, SGD batch 1 (fused)'):,} B vs "
        f"jvp {ram('mlp', 'jvp, SGD'):,} B vs zo {ram('mlp', 'zo, SGD'):,} B); with momentum "
        f"and batch 4 bp needs {ram('mlp', 'bp, momentum batch 4'):,} B against zo's "
        f"{ram('mlp', 'zo, momentum'):,} B (gradient buffers). Host C time per sample (noisy, "
        "shared 2-core machine), jvp n=4 / zo n=4: "
        + (", ".join(f"{s} {r:.1f}x" for s, r in jz.items()) or "not measured") + ".",
        "On breast cancer (from scratch) every method ends at "
        f"{_span([100 * c for c in cancer], '{:.1f}', ' %')}.",
        "Sharpness-aware point (lagged SAM, zo n=4), ρ picked on validation: "
        + ", ".join(f"{x.scenario} ρ {x.pick:g}" for x in sams)
        + f". Mean test accuracy on - off: {_span(sam_d)} (per seed {_span(sam_seed)}); the "
        "seed-to-seed sd of the off arm is "
        f"{_span([100 * x.sd(0.0, 1) for x in sams], '{:.1f}')}. The ascent moves the "
        "evaluation point by about ρ in L2; the estimate there differs from the one at w "
        "only through the curvature along that step.",
    ]


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


def write_md(path, rows, sams, mem_rows, models, reading, secs):
    lines = [
        "# Forward-gradient training: bp vs zo vs jvp vs hybrid (fp32)",
        "",
        "Generated by `python bench/forward_gradient.py` "
        f"(this part {secs:.0f} s on this machine). Test accuracy after optimizer steps of "
        f"batch {BATCH} (SGD + momentum 0.9, numpy reference, which the generated C tracks "
        "within 1e-4; columns @N = after N steps, best = best of the evaluations every "
        f"{EVERY} steps), forward passes and MACs per training sample (a jvp pass carries the "
        "tangents and is counted once; its MACs include the tangent work; bp MACs = forward + "
        "backward), and host C time per sample in microseconds (generated C, -O2, through the "
        "cffi simulator; measured for the digits `all` scenarios only). Learning rates from a "
        "coarse sweep (`--sweep`), picked by test accuracy: equally optimistic for every "
        "method. Plot: `forward_gradient.png` (accuracy vs steps, and vs forward passes).",
        ""]
    for name, rs in rows.items():
        lines += [f"### {name}", ""] + _md_table(FP32_HEAD, rs) + [""]
    lines += [
        "## Sharpness-aware evaluation point (zo_sam_rho), on vs off", "",
        f"{SAM_BASE} with `TrainConfig(zo_sam_rho=ρ)` (lagged SAM: the pairs of step t run at "
        "w + ρ Σ_k sign(D_k) z_k(t-1) / sqrt(m D), see tinytrain/passes/zeroth_order.py) "
        "against the same method without it, same lr (the table above), same protocol "
        f"otherwise. ρ in {{{', '.join(f'{r:g}' for r in SAM_RHOS)}}} is picked per scenario "
        "by mean validation accuracy (ties: the smaller ρ); the held-out pool is split once "
        "into validation (a third) and test (the rest, reported here, so these test numbers "
        "differ from the tables above). Each arm runs seeds "
        f"{', '.join(map(str, SAM_SEEDS))} (sample order and zo directions); Δ per seed pairs "
        "equal seeds.", ""]
    lines += _md_table(SAM_HEAD, sam_rows(sams))
    lines += ["", "## Planned memory per algorithm (arena / RAM total, bytes; fp32)", "",
              "RAM total = arena + trainable parameters + gradient buffers + optimizer state "
              "(frozen parameters stay in flash). `inference` = forward arena + trainable "
              "parameters.", "",
              "| algorithm | trainable | " + " | ".join(models) + " |",
              "|" + "---|" * (2 + len(models))]
    lines += ["| " + " | ".join(r) + " |" for r in mem_rows]
    lines += ["", "## Reading it", ""] + [f"- {s}" for s in reading]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
