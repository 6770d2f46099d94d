"""build_training_program: forward graph + loss + trainable set + optimizer -> a step list.

The step list is what every back end runs: the numpy reference executes it, the memory planner
computes liveness over it, and the C generator emits one kernel call per step. Steps of one
training sample (``train_steps``) accumulate parameter gradients; ``update_steps`` run once per
batch and zero the gradients again, so batch N in C is N single-sample passes.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from ..errors import ConfigError
from ..ir import OUT, Graph, Tensor, TensorRole, get_op
from ..ops.loss import LOSSES
from .optimizer import SCHEDULES, state_names

GRAD = "__grad"


@dataclass(frozen=True)
class Step:
    """One kernel call. kind: "fwd" | "loss" | "vjp" | "update" | "scale" (fused SGD) |
    "tangent" | "jvp" | "loss_jvp" (forward mode, passes/forward_mode.py)."""
    kind: str
    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    node: str                      # source node (or parameter, for updates)
    attrs: Mapping = field(default_factory=dict)
    wrt: int | None = None         # vjp: which input of the forward node
    needs: tuple[int, ...] = ()    # vjp: forward-input indices (OUT = output) in inputs[1:]
    fwd_inputs: tuple[str, ...] = ()  # vjp: the forward node's inputs (for shapes)
    accumulate: bool = False       # vjp: add into the gradient instead of overwriting it
    tangents: tuple[int, ...] = ()   # jvp: forward inputs whose tangent tensor is in inputs
    generated: tuple[int, ...] = ()  # jvp: parameter inputs whose tangent the kernel draws


@dataclass(frozen=True)
class TrainConfig:
    loss: str = "cross_entropy"
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    schedule: str = "constant"
    total_steps: int = 1000        # cosine: steps to reach 0
    step_size: int = 100           # step: decay every step_size optimizer steps
    gamma: float = 0.1
    trainable: str | tuple[str, ...] = "all"
    batch: int = 1
    # Batch 1 + plain SGD: apply each weight gradient as it is computed (no gradient buffers).
    fuse_update: bool = True
    # Training algorithm: "bp" backpropagation, "zo" zeroth-order forward gradient (SPSA),
    # "jvp" forward-mode forward gradient (one forward pass carrying tangents).
    algo: str = "bp"
    perturbations: int = 1          # zo/jvp: random directions averaged per step
    zo_eps: float = 1e-3            # zo: perturbation scale
    zo_dist: str = "rademacher"     # zo/jvp: "rademacher" (+-1) or "gaussian"
    zo_estimator: str = "spsa"      # zo/jvp: "spsa" (magnitude) or "sign" (sign of d only)
    # zo: eps schedule — eps halves every zo_eps_halve_every optimizer steps (0: constant), at
    # most zo_eps_halvings times (a coarse perturbation first, a finer one as training settles)
    zo_eps_halve_every: int = 0
    zo_eps_halvings: int = 4
    seed: int = 0                   # PRNG seed of the perturbations
    # zo only (ElasticZO-style hybrid): the last N layers with parameters train by backprop
    # from the unperturbed pass, the earlier trainable layers by zo.
    hybrid_bp_layers: int = 0
    # zo only: sharpness-aware point — the losses of step t are taken at w + a, a step of
    # L2 length ~rho along the signs of step t-1's estimate (passes/zeroth_order.py); 0: off
    zo_sam_rho: float = 0.0

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ConfigError(f"unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}")
        state_names(self.optimizer)
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown learning-rate schedule {self.schedule!r}; choose one of "
                              f"{', '.join(SCHEDULES)}")
        if not self.lr > 0:
            raise ConfigError(f"learning rate must be positive, got {self.lr}")
        if int(self.batch) < 1:
            raise ConfigError(f"batch must be at least 1, got {self.batch}")
        if self.algo not in ("bp", "zo", "jvp"):
            raise ConfigError(f"unknown training algorithm {self.algo!r}; choose bp, zo or jvp")
        if int(self.hybrid_bp_layers) < 0:
            raise ConfigError(f"hybrid_bp_layers must be >= 0, got {self.hybrid_bp_layers}")
        if self.hybrid_bp_layers and self.algo != "zo":
            raise ConfigError("hybrid_bp_layers combines zo with backprop for the last layers; "
                              f"it needs algo 'zo', not {self.algo!r}")
        if not (self.zo_sam_rho >= 0 and math.isfinite(self.zo_sam_rho)):
            raise ConfigError(f"zo_sam_rho (--sam-rho) must be a finite value >= 0, got "
                              f"{self.zo_sam_rho}")
        if self.zo_sam_rho and self.algo != "zo":
            raise ConfigError("zo_sam_rho (--sam-rho) moves the points zo evaluates its losses "
                              f"at; it needs algo 'zo', not {self.algo!r}")
        if self.algo in ("zo", "jvp"):
            if self.optimizer not in ("sgd", "momentum"):
                raise ConfigError(f"{self.algo} training supports the sgd and momentum "
                                  f"optimizers, not {self.optimizer!r} (Adam would need a "
                                  "gradient buffer)")
            if not 1 <= int(self.perturbations) <= 64:
                raise ConfigError(f"perturbations must be 1..64, got {self.perturbations}")
            if not self.zo_eps > 0:
                raise ConfigError(f"zo_eps must be positive, got {self.zo_eps}")
            if self.zo_dist not in ("rademacher", "gaussian"):
                raise ConfigError(f"unknown perturbation distribution {self.zo_dist!r}; choose "
                                  "rademacher or gaussian")
            if self.zo_estimator not in ("spsa", "sign"):
                raise ConfigError(f"unknown zo estimator {self.zo_estimator!r}; choose spsa or sign")
            if self.weight_decay:
                raise ConfigError(f"weight decay is not available with {self.algo} training")
            if int(self.zo_eps_halve_every) < 0 or not 0 <= int(self.zo_eps_halvings) <= 16:
                raise ConfigError(f"zo eps schedule: halve_every must be >= 0 and halvings "
                                  f"0..16, got {self.zo_eps_halve_every} and "
                                  f"{self.zo_eps_halvings}")


@dataclass(frozen=True)
class TrainingProgram:
    graph: Graph
    config: TrainConfig
    tensors: Mapping[str, Tensor]
    forward_steps: tuple[Step, ...]
    train_steps: tuple[Step, ...]
    update_steps: tuple[Step, ...]
    trainable: tuple[str, ...]
    logits: str
    label: str
    loss: str
    # Parameters updated inside the backward pass (fused SGD): no gradient buffer, no update step.
    fused: tuple[str, ...] = ()
    # zo / jvp: the parameters the random directions perturb (all trainable ones, except the
    # backprop layers of a hybrid program, which train by train_steps/update_steps).
    fg_params: tuple[str, ...] = ()

    @property
    def input(self) -> str:
        return self.graph.inputs[0]

    def grad_of(self, name: str) -> str:
        return name + GRAD


def select_trainable(graph: Graph, spec) -> tuple[str, ...]:
    """Resolve a trainable-set spec to parameter names, in graph order.

    spec: "all" | "last:N" (params of the last N layers) | "bias" | "none" | a comma-separated
    string or a sequence of parameter names / regular expressions (full match)."""
    params = graph.params
    if isinstance(spec, str):
        s = spec.strip()
        if s == "all":
            return tuple(params)
        if s == "none":
            return ()
        if s == "bias":
            sel = [p for p in params if graph.tensors[p].param_kind == "bias"]
            if not sel:
                raise ConfigError("trainable set 'bias' selects nothing: the model has no bias "
                                  "parameters")
            return tuple(sel)
        m = re.fullmatch(r"last:(\d+)", s)
        if m:
            n = int(m.group(1))
            layers = graph.param_nodes()
            if n < 1 or n > len(layers):
                raise ConfigError(f"trainable set {s!r}: the model has {len(layers)} layers with "
                                  f"parameters; N must be 1..{len(layers)}")
            keep = {i for node in layers[-n:] for i in node.inputs}
            return tuple(p for p in params if p in keep)
        spec = [x.strip() for x in s.split(",") if x.strip()]
    sel: list[str] = []
    for pat in spec:
        try:
            rx = re.compile(pat)
        except re.error as e:
            raise ConfigError(f"trainable pattern {pat!r} is not a valid regular expression: {e}")
        hits = [p for p in params if p == pat or rx.fullmatch(p)]
        if not hits:
            raise ConfigError(f"trainable pattern {pat!r} matches no parameter; parameters are: "
                              f"{', '.join(params)}")
        sel += [h for h in hits if h not in sel]
    return tuple(p for p in params if p in sel)


def build_training_program(graph: Graph, cfg: TrainConfig) -> TrainingProgram:
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise ConfigError(f"training needs one input and one output; the model has inputs "
                          f"{list(graph.inputs)} and outputs {list(graph.outputs)}")
    trainable = select_trainable(graph, cfg.trainable)
    tensors = dict(graph.tensors)
    logits = graph.outputs[0]
    lt = tensors[logits]
    loss_op = LOSSES[cfg.loss]
    if loss_op == "SoftmaxCrossEntropy":
        if len(lt.shape) != 2:
            raise ConfigError(f"cross-entropy needs logits of shape [batch, classes]; output "
                              f"{logits!r} has shape {lt.shape}. Add a Flatten or use --loss mse.")
        label = Tensor("label", (lt.shape[0],), "i32", TensorRole.LABEL)
    else:
        label = Tensor("target", lt.shape, lt.dtype, TensorRole.LABEL)
    loss = Tensor("loss", (), "f32", TensorRole.LOSS)
    tensors[label.name] = label
    tensors[loss.name] = loss

    fwd = tuple(Step("fwd", n.op, n.inputs, n.outputs, n.name, n.attrs) for n in graph.nodes)
    if cfg.algo in ("zo", "jvp"):
        # Forward passes only: no gradients, no saved activations; the optimizer state (momentum)
        # is the only per-parameter memory beyond the weights.
        if not trainable:
            raise ConfigError(f"{cfg.algo} training needs at least one trainable parameter")
        if cfg.hybrid_bp_layers:
            return _hybrid_program(graph, cfg, trainable)
        for p in trainable:
            for st in state_names(cfg.optimizer):
                sn = f"{p}__{st}"
                tensors[sn] = Tensor(sn, tensors[p].shape, tensors[p].dtype, TensorRole.OPT_STATE)
        if cfg.algo == "jvp":
            from .forward_mode import build_jvp_steps
            fwd, steps = build_jvp_steps(graph, trainable, tensors, Step, loss_op, logits,
                                         label.name, loss.name)
        else:
            steps = fwd + (Step("loss", loss_op, (logits, label.name), (loss.name,), loss_op),)
        return TrainingProgram(graph=graph, config=cfg, tensors=tensors, forward_steps=fwd,
                               train_steps=steps, update_steps=(),
                               trainable=trainable, logits=logits, label=label.name,
                               loss=loss.name, fg_params=trainable)

    # Which tensors carry a gradient: trainable params and everything computed from them.
    requires = set(trainable)
    for n in graph.nodes:
        op = get_op(n.op)
        if any(n.inputs[i] in requires for i in op.differentiable if i < len(n.inputs)):
            requires.update(n.outputs)

    def grad(name: str) -> str:
        g = name + GRAD
        if g not in tensors:
            t = tensors[name]
            tensors[g] = Tensor(g, t.shape, t.dtype, TensorRole.GRADIENT)
        return g

    steps: list[Step] = []
    has_grad: set[str] = set()
    if logits in requires:
        steps.append(Step("loss", loss_op, (logits, label.name), (loss.name, grad(logits)),
                          loss_op))
        has_grad.add(logits)
    else:
        steps.append(Step("loss", loss_op, (logits, label.name), (loss.name,), loss_op))

    written: set[str] = set()
    for n in reversed(graph.nodes):
        y = n.outputs[0]
        if y not in has_grad:
            continue
        op = get_op(n.op)
        for i in op.differentiable:
            if i >= len(n.inputs) or not n.inputs[i] or n.inputs[i] not in requires:
                continue
            x = n.inputs[i]
            needs = op.vjp_needs[i]
            reads = tuple(y if j == OUT else n.inputs[j] for j in needs)
            gx = grad(x)
            is_param = tensors[x].role is TensorRole.PARAM
            # Parameter gradients always accumulate (over the samples of a batch, and over
            # several uses of one parameter); activation gradients accumulate from their
            # second contributor on (residual joins), so no separate sum buffer is needed.
            acc = is_param or gx in written
            steps.append(Step("vjp", n.op, (grad(y),) + reads, (gx,), n.name, n.attrs,
                              wrt=i, needs=tuple(needs), fwd_inputs=n.inputs, accumulate=acc))
            written.add(gx)
            if not is_param:
                has_grad.add(x)

    fused: tuple[str, ...] = ()
    if cfg.fuse_update and cfg.batch == 1 and cfg.optimizer == "sgd" and not cfg.weight_decay:
        steps, fused = fuse_sgd_updates(steps, tensors, graph, trainable)
        for p in fused:
            del tensors[p + GRAD]

    updates = []
    for p in trainable:
        if p in fused:
            continue
        if p + GRAD not in tensors:  # parameter does not reach the loss
            raise ConfigError(f"parameter {p!r} is trainable but does not influence the loss")
        states = []
        for s in state_names(cfg.optimizer):
            sn = f"{p}__{s}"
            t = tensors[p]
            tensors[sn] = Tensor(sn, t.shape, t.dtype, TensorRole.OPT_STATE)
            states.append(sn)
        ins = (p, p + GRAD, *states)
        updates.append(Step("update", cfg.optimizer, ins, (p, *states), p))

    return TrainingProgram(graph=graph, config=cfg, tensors=tensors, forward_steps=fwd,
                           train_steps=fwd + tuple(steps), update_steps=tuple(updates),
                           trainable=trainable, logits=logits, label=label.name, loss=loss.name,
                           fused=fused)


def _hybrid_program(graph: Graph, cfg: TrainConfig, trainable) -> TrainingProgram:
    """ElasticZO-style hybrid: the trainable parameters of the last ``hybrid_bp_layers`` layers
    train by backprop (train_steps/update_steps of a bp program restricted to them: the
    backward pass stops at the first of them and keeps only their activations), every other
    trainable parameter by zo (fg_params)."""
    from dataclasses import replace
    n = int(cfg.hybrid_bp_layers)
    layers = graph.param_nodes()
    if n > len(layers):
        raise ConfigError(f"hybrid_bp_layers={n}: the model has only {len(layers)} layers with "
                          "parameters")
    last = {i for node in layers[-n:] for i in node.inputs}
    bp = tuple(p for p in trainable if p in last)
    zo = tuple(p for p in trainable if p not in last)
    if not bp:
        raise ConfigError(f"hybrid_bp_layers={n}: none of the last {n} layers is trainable "
                          f"(trainable: {', '.join(trainable)})")
    if not zo:
        raise ConfigError(f"hybrid_bp_layers={n} covers every trainable parameter: nothing "
                          "is left for zo; use algo bp")
    sub = build_training_program(graph, replace(cfg, algo="bp", trainable=bp,
                                                hybrid_bp_layers=0, zo_sam_rho=0.0))
    tensors = dict(sub.tensors)
    for p in zo:
        for st in state_names(cfg.optimizer):
            sn = f"{p}__{st}"
            tensors[sn] = Tensor(sn, tensors[p].shape, tensors[p].dtype, TensorRole.OPT_STATE)
    return replace(sub, config=cfg, tensors=tensors, trainable=trainable, fg_params=zo)


def fuse_sgd_updates(steps, tensors, graph, trainable):
    """Batch-1 SGD without gradient buffers: w -= lr * dL/dw is applied while the backward pass
    runs. Every VJP is linear in the output gradient gy, so the weight VJP of (-lr * gy)
    accumulated straight into w *is* the update. Per layer: its input-gradient VJP runs first
    (it still needs the old weights), then gy is scaled by -lr once (in place when gy dies
    there), then the parameter VJPs accumulate into the parameters themselves.

    Cost of the trade: a NaN/Inf that appears in the middle of the backward pass (possible only
    through overflow, since a non-finite loss stops the step before any update) is caught by
    the scaling step of the layer it reaches, but layers nearer the output are already updated.
    """
    uses = {}
    for n in graph.nodes:
        for i in n.inputs:
            uses[i] = uses.get(i, 0) + 1
    fusable = {p for p in trainable if uses.get(p, 0) == 1}
    out: list[Step] = []
    fused: list[str] = []
    i = 0
    while i < len(steps):
        s = steps[i]
        if s.kind != "vjp":
            out.append(s)
            i += 1
            continue
        group = [s]
        while i + len(group) < len(steps) and steps[i + len(group)].kind == "vjp" and \
                steps[i + len(group)].node == s.node:
            group.append(steps[i + len(group)])
        i += len(group)
        params = [g for g in group if g.fwd_inputs[g.wrt] in fusable]
        if not params:
            out += group
            continue
        out += [g for g in group if g not in params]   # input gradients see the old weights
        gy = group[0].inputs[0]
        gs = gy + "__lr"
        tensors[gs] = tensors[gy].with_(name=gs)
        out.append(Step("scale", "Scale", (gy,), (gs,), s.node, {"by": "-lr"}))
        for g in params:
            p = g.fwd_inputs[g.wrt]
            out.append(Step("vjp", g.op, (gs,) + g.inputs[1:], (p,), g.node, g.attrs, wrt=g.wrt,
                            needs=g.needs, fwd_inputs=g.fwd_inputs, accumulate=True))
            fused.append(p)
    return out, tuple(p for p in trainable if p in fused)
