"""The numpy reference of FP16 training: runs the calls of an Fp16Program (passes/lower_fp16.py)
with the numpy twins of the C kernels (numerics/fp16_kernels.py).

The generated C runs the very same call list, so every loss, half weight, fp32 master and
momentum word matches the C bit for bit. Tensors live in a dict here, not in the planned
arena, so a wrong arena plan shows up as a difference instead of being reproduced.

``Fp16Trainer`` has the executor interface of HostModel and ReferenceTrainer (``train_step``,
``infer``, ``params``), so trainloop.fit drives it as well; the step / sample / nonfinite
counters and the NaN contract follow tt_train_step exactly. For jvp programs
``directional_derivative`` returns one pass's (loss, dL.v) without changing anything.
"""
from __future__ import annotations

import numpy as np

from .errors import NumericFaultError, ShapeError, TinytrainError
from .ir import TensorRole
from .numerics import fp16_kernels as hk
from .numerics.fp16 import all_finite_f16, f16_to_f32, f32_to_f16
from .numerics.prng import Pcg32, stream_id
from .passes.lower_fp16 import (COEF, CONV_FIELDS, DL_OUT, LOSS_OUT, LR, MU, POOL_FIELDS, STREAM,
                                ZSTATE, FgSpec, Fp16Program, Gen, Ref, Struct, lower_fp16, lr_at)
from .passes.zeroth_order import eps_at

_NP = {"f16": np.uint16, "f32": np.float32, "i32": np.int32}


def _conv(s: Struct) -> dict:
    return dict(zip(CONV_FIELDS, s.values))


def _pool(s: Struct) -> dict:
    return dict(zip(POOL_FIELDS, s.values))


# One entry per C kernel: (resolved args in C order, env) -> {output tensor: new value}.
# Ref arguments arrive as their tensor names; `env[name]` is the current value.
def _k_cast(a, env):
    x, y, n = a
    return {y: f32_to_f16(np.asarray(env[x], np.float32).reshape(-1)[:n])}


def _k_view(a, env):
    dst, src = a
    return {dst: env[src]}


def _k_copy(a, env):
    dst, src, n = a
    return {dst: np.array(env[src], copy=True)}


def _init(env, name, acc):
    return env[name] if acc else None


def _k_gemm_fwd(a, env):
    x, w, b, y, n, k, m = a
    return {y: hk.gemm_fwd(env[x], env[w], None if b is None else env[b], n, k, m)}


def _k_gemm_bwd_x(a, env):
    gy, w, gx, n, k, m, acc = a
    return {gx: hk.gemm_bwd_x(env[gy], env[w], n, k, m, _init(env, gx, acc))}


def _k_gemm_bwd_w(a, env):
    gy, x, gw, n, k, m, acc = a
    return {gw: hk.gemm_bwd_w(env[gy], env[x], n, k, m, _init(env, gw, acc))}


def _k_bias_bwd(a, env):
    gy, gb, outer, c, inner, acc = a
    return {gb: hk.bias_bwd(env[gy], outer, c, inner, _init(env, gb, acc))}


def _k_conv_fwd(a, env):
    p, x, w, b, y = a
    return {y: hk.conv2d_fwd(_conv(p), env[x], env[w], None if b is None else env[b])}


def _k_conv_bwd_x(a, env):
    p, gy, w, gx, acc = a
    return {gx: hk.conv2d_bwd_x(_conv(p), env[gy], env[w], _init(env, gx, acc))}


def _k_conv_bwd_w(a, env):
    p, gy, x, gw, acc = a
    return {gw: hk.conv2d_bwd_w(_conv(p), env[gy], env[x], _init(env, gw, acc))}


def _k_relu_fwd(a, env):
    x, y, n = a
    return {y: hk.relu_fwd(env[x])}


def _k_relu_bwd(a, env):
    gy, y, gx, n, acc = a
    return {gx: hk.relu_bwd_x(env[gy], env[y], _init(env, gx, acc))}


def _k_maxpool_fwd(a, env):
    p, x, y = a
    return {y: hk.maxpool2d_fwd(_pool(p), env[x])}


def _k_maxpool_bwd(a, env):
    p, gy, x, gx, acc = a
    return {gx: hk.maxpool2d_bwd_x(_pool(p), env[gy], env[x], _init(env, gx, acc))}


def _k_avgpool_fwd(a, env):
    p, x, y = a
    return {y: hk.avgpool2d_fwd(_pool(p), env[x])}


def _k_avgpool_bwd(a, env):
    p, gy, gx, acc = a
    return {gx: hk.avgpool2d_bwd_x(_pool(p), env[gy], _init(env, gx, acc))}


def _k_gap_fwd(a, env):
    x, y, c, hw = a
    return {y: hk.global_avgpool_fwd(env[x], c, hw)}


def _k_gap_bwd(a, env):
    gy, gx, c, hw, acc = a
    return {gx: hk.global_avgpool_bwd_x(env[gy], c, hw, _init(env, gx, acc))}


def _k_add_fwd(a, env):
    d, x, y, out = a
    shape, sa, sb = d.values
    return {out: hk.add_fwd(shape, sa, sb, env[x], env[y])}


def _k_add_bwd(a, env, sizes):
    d, gy, g, which, acc = a
    shape, sa, sb = d.values
    return {g: hk.add_bwd(shape, (sa, sb)[which], env[gy], sizes[g], _init(env, g, acc))}


def _k_xent(a, env):
    logits, label, rows, cols, scale, _loss, glogits = a
    loss, g, _ = hk.softmax_xent(env[logits], env[label], rows, cols, scale)
    out = {"__loss__": np.float32(loss)}
    if glogits is not None:
        out[glogits] = g
    return out


def _k_sgd(a, env):
    w, g, master, n, lr, wd, inv_scale = a
    wn, mn, ok = hk.sgd_upd(env[w], env[g], None if master is None else env[master], lr, wd,
                            inv_scale)
    assert ok, "gradients are checked finite before the update"
    out = {w: wn, g: np.zeros_like(env[g])}
    if master is not None:
        out[master] = mn
    return out


def _momentum(v32):
    def f(a, env):
        w, g, v, master, n, lr, mu, wd, inv_scale = a
        wn, vn, mn, ok = hk.momentum_upd(env[w], env[g], env[v],
                                         None if master is None else env[master], lr, mu, wd,
                                         inv_scale, v32)
        assert ok, "gradients are checked finite before the update"
        out = {w: wn, g: np.zeros_like(env[g]), v: vn}
        if master is not None:
            out[master] = mn
        return out
    return f


def _k_zo_perturb(a, env):
    m, w, n, gen, coef, dist = a
    return {w: hk.zo_perturb(env[m], gen, coef, dist)}


def _k_zo_update(a, env):
    m, w, n, gen, coef, dist = a
    mn, wn = hk.zo_update(env[m], gen, coef, dist)
    return {m: mn, w: wn}


def _zo_mom_acc(v32):
    def f(a, env):
        v, n, gen, mu, coef, dist = a
        return {v: hk.zo_mom_acc(env[v], gen, mu, coef, dist, v32)}
    return f


def _k_tangent_init(a, env):
    gen, seed, stream, skip, dist = a
    return {gen: hk.TangentGen(seed, stream, skip, dist)}


def _k_tangent_fill(a, env):
    gen, v, n = a
    return {v: hk.tangent_fill(env[gen], n)}


def _opt(env, name):
    return None if name is None else env[name]


def _k_gemm_jvp(a, env):
    x, tx, w, ty, n, k, m, vw, vb = a
    return {ty: hk.gemm_jvp(_opt(env, x), _opt(env, tx), _opt(env, w), n, k, m, _opt(env, vw),
                            _opt(env, vb))}


def _k_conv_jvp(a, env):
    p, x, tx, w, ty, vw, vb = a
    return {ty: hk.conv2d_jvp(_conv(p), _opt(env, x), _opt(env, tx), _opt(env, w),
                              _opt(env, vw), _opt(env, vb))}


def _k_maxpool_jvp(a, env):
    p, x, tx, ty = a
    return {ty: hk.maxpool2d_jvp(_pool(p), env[x], env[tx])}


def _k_add_jvp(a, env):
    d, ta, tb, ty = a
    shape, sa, sb = d.values
    return {ty: hk.add_jvp(shape, sa, sb, _opt(env, ta), _opt(env, tb))}


def _k_xent_jvp(a, env):
    logits, label, rows, cols, tlogits, _dl = a
    dl, _ = hk.softmax_xent_jvp(env[logits], env[label], rows, cols, env[tlogits])
    return {"__dl__": np.float32(dl)}


def _zo_mom_upd(v32):
    def f(a, env):
        m, w, v, n, coef = a
        mn, wn = hk.zo_mom_upd(env[m], env[v], coef, v32)
        return {m: mn, w: wn}
    return f


KERNELS = {
    "tt_f32_to_f16_n": _k_cast, "view": _k_view, "copy": _k_copy,
    "tt_gemm_fwd_f16": _k_gemm_fwd, "tt_gemm_bwd_x_f16": _k_gemm_bwd_x,
    "tt_gemm_bwd_w_f16": _k_gemm_bwd_w, "tt_bias_bwd_f16": _k_bias_bwd,
    "tt_conv2d_fwd_f16": _k_conv_fwd, "tt_conv2d_bwd_x_f16": _k_conv_bwd_x,
    "tt_conv2d_bwd_w_f16": _k_conv_bwd_w,
    "tt_relu_fwd_f16": _k_relu_fwd, "tt_relu_bwd_x_f16": _k_relu_bwd,
    "tt_maxpool2d_fwd_f16": _k_maxpool_fwd, "tt_maxpool2d_bwd_x_f16": _k_maxpool_bwd,
    "tt_avgpool2d_fwd_f16": _k_avgpool_fwd, "tt_avgpool2d_bwd_x_f16": _k_avgpool_bwd,
    "tt_global_avgpool_fwd_f16": _k_gap_fwd, "tt_global_avgpool_bwd_x_f16": _k_gap_bwd,
    "tt_add_fwd_f16": _k_add_fwd, "tt_add_bwd_f16": _k_add_bwd,
    "tt_softmax_xent_f16": _k_xent, "tt_sgd_upd_f16": _k_sgd,
    "tt_momentum_upd_f16": _momentum(False), "tt_momentum_upd_f16_v32": _momentum(True),
    "tt_zo_perturb_f16": _k_zo_perturb, "tt_zo_update_f16": _k_zo_update,
    "tt_zo_mom_acc_f16": _zo_mom_acc(False), "tt_zo_mom_acc_f16_v32": _zo_mom_acc(True),
    "tt_zo_mom_upd_f16": _zo_mom_upd(False), "tt_zo_mom_upd_f16_v32": _zo_mom_upd(True),
    "tt_tangent_init_f16": _k_tangent_init, "tt_tangent_fill_f16": _k_tangent_fill,
    "tt_gemm_jvp_f16": _k_gemm_jvp, "tt_conv2d_jvp_f16": _k_conv_jvp,
    "tt_maxpool2d_jvp_f16": _k_maxpool_jvp, "tt_add_jvp_f16": _k_add_jvp,
    "tt_softmax_xent_jvp_f16": _k_xent_jvp,
}
GEN_KEY = "gen:"   # env key prefix of a pass's tangent generators (never state)


class Fp16Trainer:
    """Executes an Fp16Program (or lowers a TrainingProgram first, with cfg's fp16 options)."""

    def __init__(self, program, cfg=None):
        self.lowered: Fp16Program = (program if isinstance(program, Fp16Program)
                                     else lower_fp16(program, cfg))
        lp = self.lowered
        self.cfg = lp.config
        self.sizes = {n: t.size for n, t in lp.tensors.items()}
        self.in_shape = tuple(lp.tensors[lp.input].shape[1:])
        self.reset()

    # ---- state ------------------------------------------------------------------------------
    def reset(self):
        """tt_init: exported halves, masters widened from them, zero gradients and state."""
        lp = self.lowered
        self.state: dict[str, np.ndarray] = {n: h.copy() for n, h in lp.init.items()}
        for name, t in lp.tensors.items():
            if t.role is TensorRole.OPT_STATE or (t.role is TensorRole.GRADIENT
                                                  and name in lp.plan.placements
                                                  and lp.plan.placements[name].section == "grads"):
                self.state[name] = np.zeros(t.size, _NP[t.dtype])
        for p, m in lp.masters.items():
            self.state[m] = f16_to_f32(self.state[p])
        self.step = self.samples = self.nonfinite = 0
        self.fg_dsum = np.zeros(lp.fg.n if lp.fg else 0, np.float32)

    @property
    def raw_params(self) -> dict[str, np.ndarray]:
        t = self.lowered.tensors
        return {p: self.state[p].reshape(t[p].shape).copy() for p in self.lowered.params}

    @property
    def params(self) -> dict[str, np.ndarray]:
        """Every parameter as float32: the halves the forward pass reads, widened."""
        return {p: f16_to_f32(v) for p, v in self.raw_params.items()}

    @property
    def masters(self) -> dict[str, np.ndarray]:
        t = self.lowered.tensors
        return {p: self.state[m].reshape(t[p].shape).copy()
                for p, m in self.lowered.masters.items()}

    def set_params(self, values: dict):
        """tt_param_write: the value becomes the fp32 master, its rounding the half."""
        lp = self.lowered
        for p, v in values.items():
            if p not in lp.trainable:
                raise TinytrainError(f"parameter {p!r} is frozen (flash) or unknown")
            a = np.asarray(v, np.float32).reshape(-1)
            if a.size != self.sizes[p]:
                raise ShapeError(f"parameter {p!r} needs {self.sizes[p]} values, got {a.size}")
            self.state[p] = f32_to_f16(a)
            if p in lp.masters:
                self.state[lp.masters[p]] = a.copy()

    def section_bytes(self, section: str) -> bytes:
        """A planned section (params_rw, opt_state, ...) as the C holds it in memory (little
        endian): what tt_checkpoint_save copies after its header."""
        plan = self.lowered.plan
        buf = np.zeros(plan.section_bytes[section], np.uint8)
        for name, pl in plan.placements.items():
            if pl.section == section:
                dt = _NP[self.lowered.tensors[name].dtype]
                raw = np.asarray(self.state[name], dtype=np.dtype(dt).newbyteorder("<"))
                buf[pl.offset:pl.offset + pl.nbytes] = np.frombuffer(raw.tobytes(), np.uint8)
        return buf.tobytes()

    def checkpoint_payload(self) -> bytes:
        return self.section_bytes("params_rw") + self.section_bytes("opt_state")

    # ---- execution --------------------------------------------------------------------------
    def _run(self, calls, env, lr=None, **syms) -> np.float32 | None:
        """Run calls on env; the loss of the last loss kernel (None without one)."""
        return self._run_scalars(calls, env, lr, **syms).get("__loss__")

    def _run_scalars(self, calls, env, lr=None, **syms) -> dict:
        """Run calls on env; the scalar outputs ("__loss__", "__dl__")."""
        with np.errstate(all="ignore"):   # Inf / NaN propagate silently, as in the C
            return self._run_calls(calls, env, lr, syms)

    def _run_calls(self, calls, env, lr, syms):
        scalars = {}
        for c in calls:
            args = []
            for a in c.args:
                if isinstance(a, Ref):
                    args.append(a.name)
                elif isinstance(a, Gen):
                    args.append(GEN_KEY + a.var)
                elif a is LR:
                    args.append(lr)
                elif a is LOSS_OUT or a is DL_OUT:
                    args.append(None)
                elif a is ZSTATE:
                    args.append(syms["z"])
                elif a is COEF:
                    args.append(syms["a"])
                elif a is MU:
                    args.append(syms["mu"])
                elif a is STREAM:
                    args.append(syms["stream"])
                else:
                    args.append(a)
            fn = KERNELS[c.kernel]
            out = fn(args, env, self.sizes) if c.kernel == "tt_add_bwd_f16" else fn(args, env)
            for key in ("__loss__", "__dl__"):
                if key in out:
                    scalars[key] = out.pop(key)
            env.update(out)
        return scalars

    def _batch(self, x) -> np.ndarray:
        a = np.asarray(x, dtype=np.float32)
        if a.shape == self.in_shape:
            a = a[None]
        if tuple(a.shape[1:]) != self.in_shape:
            raise ShapeError(f"input must have shape {self.in_shape} or (batch, "
                             f"{', '.join(map(str, self.in_shape))}), got {np.shape(x)}")
        return a.reshape(a.shape[0], -1)

    def infer(self, x) -> np.ndarray:
        lp = self.lowered
        xb = self._batch(x)
        out = []
        for i in range(xb.shape[0]):
            env = dict(self.state)
            env[lp.input] = xb[i]
            self._run(lp.forward_calls, env)
            out.append(f16_to_f32(env[lp.logits]))
        shape = tuple(lp.tensors[lp.logits].shape[1:])
        return np.stack(out).reshape((xb.shape[0],) + shape)

    def train_step(self, x, y) -> float:
        """One sample or several, each as one tt_train_step (the optimizer steps every
        `batch` samples). Returns the mean loss; NumericFaultError as HostModel raises it."""
        lp = self.lowered
        if not lp.training:
            raise TinytrainError("this program was lowered for inference only (nothing "
                                 "trainable)")
        xb = self._batch(x)
        lab = np.asarray(y).astype(np.int32).reshape(-1)
        if lab.shape[0] != xb.shape[0]:
            raise ShapeError(f"got {lab.shape[0]} labels for {xb.shape[0]} samples")
        ncls = lp.tensors[lp.logits].size
        if lab.min() < 0 or lab.max() >= ncls:
            raise ShapeError(f"labels must be class indices in [0, {ncls}), got "
                             f"min {lab.min()} max {lab.max()}")
        total = 0.0
        for i in range(xb.shape[0]):
            total += float(self._sample(xb[i], lab[i:i + 1], i))
        return total / xb.shape[0]

    def _grad_names(self):
        return [n for n, pl in self.lowered.plan.placements.items() if pl.section == "grads"]

    def _zero_grads(self):
        for g in self._grad_names():
            self.state[g] = np.zeros_like(self.state[g])

    def _sample(self, x, label, i) -> np.float32:
        lp = self.lowered
        if lp.zo is not None:
            return self._zo_sample(x, label, i)
        if lp.jvp is not None:
            return self._jvp_sample(x, label, i)
        env = dict(self.state)
        env[lp.input] = x
        env[lp.label] = label
        self._run(lp.forward_calls, env)
        loss = self._run(lp.sample_calls, env)
        if not np.isfinite(loss):
            self._zero_grads()
            self.samples = 0
            self.nonfinite += 1
            raise NumericFaultError(
                f"sample {i} of optimizer step {self.step}: the loss or a gradient is NaN/Inf; "
                "the batch was discarded and the weights are the last good ones. Lower the "
                "learning rate or check the data.")
        for g in self._grad_names():
            self.state[g] = env[g]
        self.samples += 1
        if self.samples < int(self.cfg.batch):
            return loss
        self.samples = 0
        if not all(all_finite_f16(self.state[g]) for g in self._grad_names()):
            self._zero_grads()
            self.nonfinite += 1
            raise NumericFaultError(
                f"sample {i} of optimizer step {self.step}: the loss or a gradient is NaN/Inf; "
                "the batch was discarded and the weights are the last good ones. Lower the "
                "learning rate or check the data.")
        env = dict(self.state)
        self._run(lp.update_calls, env, lr=lr_at(self.cfg, self.step))
        for name in self.state:
            self.state[name] = env[name]
        self.step += 1
        return loss

    # ---- zeroth order (tt_train_step of an fp16 zo export) -------------------------------
    def _zo_loss(self, x, label) -> np.float32:
        lp = self.lowered
        env = dict(self.state)
        env[lp.input] = x
        env[lp.label] = label
        self._run(lp.forward_calls, env)
        return self._run((lp.zo.loss,), env)

    def _fg_calls(self, calls, k, **syms):
        """Run zo / jvp update calls on the state with direction k's generator (a fresh one per
        list, as each C helper seeds its own)."""
        env = dict(self.state)
        gen = Pcg32(self.lowered.fg.seed, stream_id(self.step, k))
        self._run(calls, env, z=gen, **syms)
        self.state.update(env)

    def _drop(self, i, why):
        """tt_fg_drop: the batch is discarded, nothing is updated."""
        self.fg_dsum[:] = 0
        self.samples = 0
        self.nonfinite += 1
        raise NumericFaultError(f"sample {i} of optimizer step {self.step}: {why}")

    def _zo_sample(self, x, label, i) -> np.float32:
        zs = self.lowered.zo
        eps = eps_at(self.cfg, self.step)
        l0 = None
        for k in range(zs.fg.n):
            self._fg_calls(zs.perturb, k, a=eps)
            lp = self._zo_loss(x, label)
            self._fg_calls(zs.perturb, k, a=-eps)
            lm = self._zo_loss(x, label)
            self._fg_calls(zs.restore, k)
            if not (np.isfinite(lp) and np.isfinite(lm)):
                self._drop(i, "a perturbed loss is NaN/Inf; the batch was discarded and the "
                              "weights were restored (not updated). Lower eps or the learning "
                              "rate, or check the data.")
            with np.errstate(all="ignore"):
                self.fg_dsum[k] = np.float32(self.fg_dsum[k] + np.float32(lp - lm))
                if k == 0:
                    l0 = np.float32(np.float32(0.5) * np.float32(lp + lm))
        self.samples += 1
        if self.samples < int(self.cfg.batch):
            return l0
        self.samples = 0
        self._fg_update(zs.fg, zs.scale(eps))
        return l0

    # ---- forward mode (tt_train_step of an fp16 jvp export) ------------------------------
    def directional_derivative(self, x, label, k: int = 0, step: int | None = None):
        """One tt_jvp_pass: (loss, dL.v_k) of one sample at the current weights, for direction
        k of optimizer step `step` (default the current one), float32; nothing changes."""
        lp = self.lowered
        if lp.jvp is None:
            raise TinytrainError("directional_derivative needs a program lowered with algo jvp")
        xb = self._batch(x)
        if xb.shape[0] != 1:
            raise ShapeError(f"directional_derivative takes one sample, got {xb.shape[0]}")
        lab = np.asarray(label).astype(np.int32).reshape(-1)[:1]
        return self._jvp_pass(xb[0], lab, k, self.step if step is None else int(step))

    def _jvp_pass(self, x, label, k, step):
        lp = self.lowered
        env = dict(self.state)
        env[lp.input] = x
        env[lp.label] = label
        out = self._run_scalars(lp.jvp.calls, env, stream=stream_id(step, k))
        return out.get("__loss__"), out.get("__dl__")

    def _jvp_sample(self, x, label, i) -> np.float32:
        js = self.lowered.jvp
        l0 = None
        for k in range(js.fg.n):
            loss, dl = self._jvp_pass(x, label, k, self.step)
            if loss is None or dl is None or not (np.isfinite(loss) and np.isfinite(dl)):
                self._drop(i, "the loss or its directional derivative dL.v is NaN/Inf; the "
                              "batch was discarded and the weights are untouched. Lower the "
                              "learning rate or check the data.")
            with np.errstate(all="ignore"):
                self.fg_dsum[k] = np.float32(self.fg_dsum[k] + np.float32(dl))
            if k == 0:
                l0 = np.float32(loss)
        self.samples += 1
        if self.samples < int(self.cfg.batch):
            return l0
        self.samples = 0
        self._fg_update(js.fg, js.fg.batch_f)
        return l0

    def _fg_update(self, fg: FgSpec, scale):
        """tt_fg_update: the fp32 forward-gradient update (tt_fg_update.c.j2) applied to the
        masters, coef_k from dsum[k] / scale."""
        lr = lr_at(self.cfg, self.step)
        with np.errstate(all="ignore"):
            for k in range(fg.n):
                coef = fg.coef(self.fg_dsum[k], scale)
                if fg.momentum is None:
                    self._fg_calls(fg.update, k, a=np.float32(-lr * coef))
                else:
                    mu = fg.momentum if k == 0 else np.float32(1.0)
                    self._fg_calls(fg.update, k, a=coef, mu=mu)
                self.fg_dsum[k] = 0
            if fg.momentum is not None:
                env = dict(self.state)
                self._run(fg.apply, env, a=np.float32(-lr))
                self.state.update(env)
        self.step += 1
