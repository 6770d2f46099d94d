"""The numpy reference executor: the one oracle the generated C is checked against.

It runs exactly the IR the C is generated from: the forward graph for inference, and the
step list of a TrainingProgram (forward, loss, VJP steps, optimizer updates) for training.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from .errors import ShapeError
from .ir import Graph, TensorRole, get_op


def _check_feed(graph: Graph, name: str, value) -> np.ndarray:
    t = graph.tensors[name]
    a = np.asarray(value)
    if a.ndim == len(t.shape) - 1:  # a single sample without its batch dimension
        a = a[None]
    if tuple(a.shape[1:]) != tuple(t.shape[1:]):
        raise ShapeError(f"input {name!r} must have shape (batch, {', '.join(map(str, t.shape[1:]))})"
                         f" but got {tuple(np.asarray(value).shape)}")
    return a


def run_forward(graph: Graph, feeds: Mapping[str, np.ndarray],
                params: Mapping[str, np.ndarray] | None = None,
                dtype=np.float32, keep_all: bool = False) -> dict[str, np.ndarray]:
    """Run the forward graph in numpy. ``feeds`` maps graph input names to batched arrays.
    Returns the graph outputs (or every tensor with keep_all)."""
    env: dict[str, np.ndarray] = {}
    for name, v in graph.initializers.items():
        env[name] = np.asarray(v, dtype=dtype)
    if params:
        for name, v in params.items():
            env[name] = np.asarray(v, dtype=dtype)
    for name in graph.inputs:
        if name not in feeds:
            raise ShapeError(f"missing input {name!r}; the model's inputs are {list(graph.inputs)}")
        env[name] = _check_feed(graph, name, feeds[name]).astype(dtype)
    for n in graph.nodes:
        op = get_op(n.op)
        xs = [env[i] if i else None for i in n.inputs]
        env[n.outputs[0]] = np.asarray(op.forward(xs, n.attrs)).astype(dtype, copy=False)
    if keep_all:
        return env
    return {o: env[o] for o in graph.outputs}


class ReferenceTrainer:
    """Executes a TrainingProgram in numpy: ``train_step`` runs the per-sample steps on a whole
    minibatch (the loss is the batch mean, exactly what N accumulated C samples compute) and
    then the optimizer updates."""

    def __init__(self, program, dtype=np.float32):
        from .passes.optimizer import state_names  # noqa: F401  (validates optimizer)
        self.program = program
        self.dtype = dtype
        self.reset()

    def reset(self) -> None:
        """Back to the exported weights, zero optimizer state, step 0 (what tt_init does)."""
        g, dtype = self.program.graph, self.dtype
        self.weights = {k: np.array(v, dtype=dtype) for k, v in g.initializers.items()}
        self.grads = {p: np.zeros_like(self.weights[p]) for p in self.program.trainable
                      if p + "__grad" in self.program.tensors}
        self.state = {n: np.zeros(t.shape, dtype) for n, t in self.program.tensors.items()
                      if t.role is TensorRole.OPT_STATE}
        self.step_count = 0
        # zo --sam-rho: (step, signs) recorded at the last optimizer update; transient
        self.sam_signs: tuple[int, tuple[int, ...]] | None = None

    def restore(self, weights: Mapping[str, np.ndarray], state: Mapping[str, np.ndarray],
                step: int) -> None:
        """What tt_checkpoint_load does: trainable weights, optimizer state and step from a
        checkpoint; gradients and the transient zo sharpness-aware signs are cleared."""
        for k in self.program.trainable:
            self.weights[k] = np.array(weights[k], dtype=self.dtype).reshape(self.weights[k].shape)
        for k in self.state:
            self.state[k] = np.array(state[k], dtype=self.dtype).reshape(self.state[k].shape)
        for g in self.grads.values():
            g[...] = 0
        self.step_count = int(step)
        self.sam_signs = None

    @property
    def params(self) -> dict[str, np.ndarray]:
        return {p: self.weights[p] for p in self.program.graph.params}

    def infer(self, x) -> np.ndarray:
        out = run_forward(self.program.graph, {self.program.input: x}, self.weights, self.dtype)
        return out[self.program.logits]

    def _labels(self, y, batch):
        p = self.program
        t = p.tensors[p.label]
        a = np.asarray(y)
        if t.dtype == "i32":
            a = a.astype(np.int64).reshape(-1)
            if a.shape[0] != batch:
                raise ShapeError(f"got {a.shape[0]} labels for a batch of {batch} samples")
            return a
        a = a.astype(self.dtype)
        if a.ndim == len(t.shape) - 1:
            a = a[None]
        if tuple(a.shape[1:]) != tuple(t.shape[1:]) or a.shape[0] != batch:
            raise ShapeError(f"targets must have shape ({batch}, "
                             f"{', '.join(map(str, t.shape[1:]))}), got {np.shape(y)}")
        return a

    def loss_and_grads(self, x, y) -> tuple[float, dict[str, np.ndarray]]:
        """Run forward + loss + backward on a minibatch; return the loss and the parameter
        gradients (accumulated into self.grads, as the C does until the next update)."""
        p = self.program
        env: dict[str, np.ndarray] = dict(self.weights)
        env.update({k + "__grad": v for k, v in self.grads.items()})
        xb = _check_feed(p.graph, p.input, x).astype(self.dtype)
        env[p.input] = xb
        env[p.label] = self._labels(y, xb.shape[0])
        for s in p.train_steps:
            op = get_op(s.op) if s.kind != "scale" else None
            if s.kind == "fwd":
                xs = [env[i] if i else None for i in s.inputs]
                env[s.outputs[0]] = np.asarray(op.forward(xs, s.attrs)).astype(self.dtype, copy=False)
            elif s.kind == "scale":  # fused SGD: the layer's gradient times -lr, checked
                from .passes.optimizer import lr_at
                v = (-self.dtype(lr_at(p.config, self.step_count, self.dtype))) * env[s.inputs[0]]
                if not np.all(np.isfinite(v)):
                    from .errors import NumericFaultError
                    raise NumericFaultError(
                        f"training step {self.step_count}: the gradient reaching {s.node!r} is "
                        "NaN/Inf; layers after it were already updated (fused SGD). Lower the "
                        "learning rate.")
                env[s.outputs[0]] = v.astype(self.dtype)
            elif s.kind == "loss":
                xs = [env[i] for i in s.inputs]
                loss = op.forward(xs, s.attrs)
                env[s.outputs[0]] = loss
                if not np.isfinite(loss):
                    from .errors import NumericFaultError
                    for g in self.grads.values():
                        g[...] = 0
                    raise NumericFaultError(
                        f"training step {self.step_count} produced a non-finite loss {loss}; "
                        "nothing was updated and the weights are the last good ones. Lower the "
                        "learning rate or check the data for NaN/Inf values.")
                if len(s.outputs) > 1:
                    env[s.outputs[1]] = op.vjp(0, np.asarray(1, self.dtype), xs, loss, s.attrs,
                                               [a.shape for a in xs]).astype(self.dtype)
            else:  # vjp
                xs: list = [None] * len(s.fwd_inputs)
                yv = None
                for j, name in zip(s.needs, s.inputs[1:]):
                    if j == -1:
                        yv = env[name]
                    else:
                        xs[j] = env[name]
                shapes = [env[n].shape if n in env else None for n in s.fwd_inputs]
                gx = np.asarray(op.vjp(s.wrt, env[s.inputs[0]], xs, yv, s.attrs, shapes),
                                dtype=self.dtype)
                out = s.outputs[0]
                if s.accumulate:
                    env[out] += gx  # param grads are self.grads arrays: accumulate in place
                else:
                    env[out] = gx
        return float(env[p.loss]), self.grads

    def loss(self, x, y) -> float:
        """Mean loss of a minibatch at the current weights (forward only)."""
        p = self.program
        xb = _check_feed(p.graph, p.input, x).astype(self.dtype)
        env = run_forward(p.graph, {p.input: xb}, self.weights, self.dtype)
        op = get_op(next(s.op for s in p.train_steps if s.kind in ("loss", "loss_jvp")))
        return float(op.forward([env[p.logits], self._labels(y, xb.shape[0])], {}))

    def _zo_step(self, x, y) -> float:
        """Zeroth-order step, exactly the sequence tt_train_step runs (passes/zeroth_order.py).
        Hybrid programs then run forward + backward at the unperturbed weights for their
        backprop layers (train_steps/update_steps) and return that pass's loss. With
        zo_sam_rho the pairs run at the sharpness-aware point w + a_t, removed right after."""
        from .errors import NumericFaultError
        from .passes.zeroth_order import DISTS, eps_at, perturb
        p, cfg = self.program, self.program.config
        f = self.dtype
        eps, dist, t = f(eps_at(cfg, self.step_count)), DISTS[cfg.zo_dist], self.step_count
        names = p.fg_params
        sam = self._sam_ascent(t)
        for k, a in sam:
            perturb(self.weights, names, cfg.seed, t - 1, k, a, dist)
        ds, first = [], None
        for k in range(int(cfg.perturbations)):
            perturb(self.weights, names, cfg.seed, t, k, eps, dist)
            lp = self.loss(x, y)
            perturb(self.weights, names, cfg.seed, t, k, -f(2) * eps, dist)
            lm = self.loss(x, y)
            perturb(self.weights, names, cfg.seed, t, k, eps, dist)
            if not (np.isfinite(lp) and np.isfinite(lm)):
                self._sam_remove(sam, t)
                raise NumericFaultError(
                    f"training step {t}: a perturbed loss is NaN/Inf; the weights were restored "
                    "and not updated. Lower eps or the learning rate.")
            ds.append(f(lp) - f(lm))
            if first is None:
                first = 0.5 * (lp + lm)
        self._sam_remove(sam, t)
        n = f(len(ds))
        coefs = [(f(np.sign(d)) if cfg.zo_estimator == "sign" else d / (f(2) * eps)) / n
                 for d in ds]
        if cfg.hybrid_bp_layers:   # the backprop layers, at the unperturbed weights
            first = self._bp_update(x, y, advance=False)
        if cfg.zo_sam_rho:         # recorded at the update, for step t + 1 only
            self.sam_signs = (t, tuple(int(np.sign(d)) for d in ds))
        self._fg_update(coefs)
        return float(first)

    def _sam_ascent(self, t: int) -> list:
        """(k, c s_k) of the sharpness-aware ascent of step t: [] when off, at step 0, after a
        reset/restore (no signs of step t - 1) or when every sign is 0."""
        from .passes.zeroth_order import sam_coefs
        p, cfg = self.program, self.program.config
        if not cfg.zo_sam_rho or t == 0 or self.sam_signs is None or self.sam_signs[0] != t - 1:
            return []
        size = sum(p.tensors[q].size for q in p.fg_params)
        return sam_coefs(self.sam_signs[1], cfg.zo_sam_rho, size)

    def _sam_remove(self, sam, t: int) -> None:
        from .passes.zeroth_order import DISTS, perturb
        p, cfg = self.program, self.program.config
        for k, a in sam:
            perturb(self.weights, p.fg_params, cfg.seed, t - 1, k, -a, DISTS[cfg.zo_dist])

    def directional_derivative(self, x, y, k: int = 0, step: int | None = None):
        """One forward pass carrying tangents (passes/forward_mode.py) for perturbation k of
        optimizer step `step` (default: the current one). Returns (loss, dL.v), both batch
        means, and leaves the weights untouched."""
        from .passes.forward_mode import TAN, draw_offsets, tangent
        from .passes.zeroth_order import DISTS
        p, cfg = self.program, self.program.config
        t = self.step_count if step is None else int(step)
        dist = DISTS[cfg.zo_dist]
        offs = draw_offsets(p.fg_params, p.tensors, dist)
        env: dict[str, np.ndarray] = dict(self.weights)
        xb = _check_feed(p.graph, p.input, x).astype(self.dtype)
        env[p.input] = xb
        env[p.label] = self._labels(y, xb.shape[0])

        def tan_of(q):
            return tangent(cfg.seed, t, k, offs[q], p.tensors[q].shape, dist).astype(self.dtype)

        loss = dl = None
        for s in p.train_steps:
            op = get_op(s.op) if s.kind != "tangent" else None
            if s.kind == "fwd":
                xs = [env[i] if i else None for i in s.inputs]
                env[s.outputs[0]] = np.asarray(op.forward(xs, s.attrs)).astype(self.dtype, copy=False)
            elif s.kind == "tangent":
                env[s.outputs[0]] = tan_of(s.node)
            elif s.kind == "jvp":
                nt = len(s.tangents)
                txs: list = [None] * len(s.fwd_inputs)
                for i, name in zip(s.tangents, s.inputs[:nt]):
                    txs[i] = env[name]
                for i in s.generated:
                    txs[i] = tan_of(s.fwd_inputs[i])
                # Only what the C kernel reads (the step's `needs`) plus the output's shape.
                xs: list = [None] * len(s.fwd_inputs)
                for j, name in zip(s.needs, s.inputs[nt:]):
                    if j != -1:
                        xs[j] = env[name]
                yv = env[s.outputs[0].removesuffix(TAN)]
                env[s.outputs[0]] = np.asarray(op.jvp(xs, txs, yv, s.attrs)).astype(
                    self.dtype, copy=False)
            elif s.kind == "loss_jvp":
                xs = [env[s.inputs[0]], env[s.inputs[1]]]
                loss = op.forward(xs, s.attrs)
                dl = op.jvp(xs, [env[s.inputs[2]], None], loss, s.attrs)
        return float(loss), float(dl)

    def _jvp_step(self, x, y) -> float:
        """Forward-mode step: n passes carrying tangents, g = sum_k d_k v_k / n, applied as
        tt_train_step does (passes/forward_mode.py)."""
        from .errors import NumericFaultError
        cfg = self.program.config
        f = self.dtype
        ds, first = [], None
        for k in range(int(cfg.perturbations)):
            loss, d = self.directional_derivative(x, y, k)
            if not (np.isfinite(loss) and np.isfinite(d)):
                raise NumericFaultError(
                    f"training step {self.step_count}: the loss or its directional derivative "
                    "is NaN/Inf; nothing was updated. Lower the learning rate or check the data.")
            ds.append(f(d))
            if first is None:
                first = loss
        n = f(len(ds))
        coefs = [(f(np.sign(d)) if cfg.zo_estimator == "sign" else d) / n for d in ds]
        self._fg_update(coefs)
        return float(first)

    def _fg_update(self, coefs) -> None:
        """w -= lr * sum_k coef_k v_k (momentum: m = mu m + sum_k coef_k v_k; w -= lr m), v_k
        regenerated per k over fg_params, in the order the C applies it."""
        from .passes.optimizer import lr_at
        from .passes.zeroth_order import DISTS, perturb
        p, cfg = self.program, self.program.config
        f = self.dtype
        dist, t, names = DISTS[cfg.zo_dist], self.step_count, p.fg_params
        lr = f(lr_at(cfg, t, f))
        if cfg.optimizer == "momentum":
            for q in names:
                self.state[q + "__mom"] *= f(cfg.momentum)
        for k, coef in enumerate(coefs):
            if cfg.optimizer == "momentum":
                perturb({q: self.state[q + "__mom"] for q in names}, names, cfg.seed, t, k,
                        coef, dist)
            else:
                perturb(self.weights, names, cfg.seed, t, k, -lr * coef, dist)
        if cfg.optimizer == "momentum":
            for q in names:
                self.weights[q] += -lr * self.state[q + "__mom"]
        self.step_count += 1

    def train_step(self, x, y) -> float:
        """One optimizer step on a minibatch. On NaN/Inf nothing is changed and
        NumericFaultError is raised: the weights stay the last good ones."""
        if self.program.config.algo == "zo":
            return self._zo_step(x, y)
        if self.program.config.algo == "jvp":
            return self._jvp_step(x, y)
        return self._bp_update(x, y)

    def _bp_update(self, x, y, advance: bool = True) -> float:
        from .errors import NumericFaultError
        from .passes.optimizer import apply_update
        loss, grads = self.loss_and_grads(x, y)
        bad = [k for k, g in grads.items() if not np.all(np.isfinite(g))]
        if not np.isfinite(loss) or bad:
            for g in grads.values():
                g[...] = 0
            what = f"loss {loss}" if not np.isfinite(loss) else f"gradient of {bad[0]!r}"
            raise NumericFaultError(
                f"training step {self.step_count} produced a non-finite {what}; the update was "
                "not applied and the weights are the last good ones. Lower the learning rate "
                "or check the data for NaN/Inf values.")
        cfg = self.program.config
        saved = {p: self.weights[p].copy() for p in self.program.trainable}
        for s in self.program.update_steps:
            pname = s.inputs[0]
            apply_update(s.op, cfg, self.weights[pname], self.grads[pname],
                         [self.state[n] for n in s.inputs[2:]], self.step_count)
        bad = [p for p in self.program.trainable if not np.all(np.isfinite(self.weights[p]))]
        if bad:
            self.weights.update(saved)
            raise NumericFaultError(
                f"training step {self.step_count}: the update made {bad[0]!r} non-finite; "
                "the weights were restored to the last good ones. Lower the learning rate.")
        if advance:
            self.step_count += 1
        return loss
