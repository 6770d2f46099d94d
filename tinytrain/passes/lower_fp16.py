"""lower_fp16: a backprop TrainingProgram -> Fp16Program, the FP16 training step as a flat
list of runtime_c kernel calls with every constant resolved (docs/fp16.md).

One lowering, two interpreters: ``tinytrain/reference_fp16.py`` runs the calls with the numpy
twins (``numerics/fp16_kernels.py``), ``codegen/emit_fp16.py`` prints the same calls as C. A
call's ``args`` are the C argument list in order (tensor references, integers, float32
constants, parameter structs, the run-time learning rate), so both read the same numbers and
C == numpy bit for bit.

Numerics (binary16 storage, fp32 arithmetic):
  - activations, activation gradients, parameters and parameter gradients are halves; the
    float input is rounded to half by the first call (``tt_f32_to_f16_n``);
  - static loss scaling: the logit gradient is multiplied by loss_scale / batch before it is
    stored as a half (a power of two, so the scaling never rounds); the updates multiply by
    1 / loss_scale in fp32;
  - fp32 master weights (option ``master_weights``, default on) for every TRAINABLE parameter,
    placed in the opt_state section: the update is applied to the master and rounded to the
    half the forward pass reads. Momentum state is fp32 (``tt_momentum_upd_f16_v32``) or, with
    ``fp16_state``, half;
  - parameter gradients accumulate as halves (accumulate = 1) over the samples of a batch,
    rounded once per kernel call;
  - the learning rate is computed in fp32 by ``lr_at`` here and by ``tt_lr_at`` in the C, with
    the same operations in the same order (the cosine schedule uses a fixed polynomial whose
    float32 coefficients both print from ``COS_PI_COEFFS``).

Zeroth order (``algo="zo"``, SPSA, docs/fp16.md section 5): the perturbed half is computed
from the fp32 master, w16 = half(master + eps_t z) (one rounding); the restore is
w16 = half(master), exact because the master is unchanged; the update is the fp32 zo update
applied to the master (sgd: master += -lr coef z; momentum: v = mu v + coef z,
master += -lr v), then w16 = half(master). z is regenerated from (seed, step, k) by the
kernels, as the fp32 zo draws it. eps_t = zo_eps * 2^-h, h = min(t // zo_eps_halve_every,
zo_eps_halvings) (zeroth_order.eps_at: one multiply by an exact power of two, the same in the
C). Only forward passes and the loss run, so the arena is the inference arena;
``Fp16Program.zo`` holds the call lists (``ZoSpec``).

Forward mode (``algo="jvp"``, docs/fp16.md section 6): per sample and direction k ONE forward
pass carries a tangent beside every activation that depends on a perturbed parameter
(passes/forward_mode.py builds the step list; ``Fp16Program.jvp`` holds it as calls,
``JvpSpec``). Where rounding happens -- the same points in the numpy twins and the C:
  - a tangent tensor is a half, rounded once, when its kernel stores it, exactly like an
    activation: Gemm / Conv: half(fp32 chain of tx . W, continued by x . v_w, then + v_b);
    AveragePool / GlobalAveragePool / Add of two tangents: their forward kernels on the
    tangents (one rounding per output); ReLU, MaxPool, Reshape and Add with one frozen
    operand: bit copies (no rounding); a materialised parameter tangent (a trainable Add
    operand): half(v), exact for rademacher;
  - the weight tangents v of Gemm / Conv are drawn inside the kernels in fp32 and never stored;
  - dL.v is fp32 from the half logits and their half tangent (the softmax gradient is never
    rounded to half, so no loss scale is involved); dsum[k] += dL.v in fp32;
  - the update is the zo update with z = v on the fp32 masters, coef = dsum / batch / n (spsa)
    or sign(dsum) / n, then w16 = half(master).
A pass that produces a non-finite loss or dL.v drops the batch (weights untouched, TT_ERR_NAN).
Nothing is saved for a backward pass and a tangent lives as long as its activation: the arena
is planned over the pass exactly as fp32 jvp's (about twice the inference arena).

Memory: the tensor table gives every tensor its storage dtype, so ``plan_arena`` sizes the
sections in fp16 bytes. Reshape stays a view; where the planner lets a gradient share bytes
with the gradient it is copied from (Add / Reshape backward), or a tangent with the tangent it
is reshaped from, the call becomes a "view": no C statement, a bit copy in numpy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Mapping

import numpy as np

from ..errors import ConfigError, ExportError
from ..ir import OUT, Tensor, TensorRole
from ..numerics.fp16 import f32_to_f16
from ..ops.geometry import CONV_FIELDS, POOL_FIELDS, bcast4, conv_geometry, pool_geometry, spatial
from .forward_mode import TAN, draw_offsets
from .memory_plan import MemoryPlan, plan_arena
from .training import Step, TrainConfig, TrainingProgram, build_training_program
from .zeroth_order import DISTS

F32 = np.float32
MASTER = "__master"
MOM = "__mom"
INPUT16 = "__f16"

SUPPORTED_OPS = ("Gemm", "Conv", "Relu", "MaxPool", "AveragePool", "GlobalAveragePool", "Add",
                 "Reshape")
OPTIMIZERS = ("sgd", "momentum")
SCHEDULES = ("constant", "step", "cosine")

# cos(pi f), f in [0, 1/2] after folding, by a fixed even polynomial in x = pi f (Horner from
# the highest term), float32 everywhere; printed into the C with c_float, so both sides use
# the same float32 values. |error| < 1e-6 against double precision.
PI_F32 = F32(3.14159265)
COS_PI_COEFFS = tuple(F32(c) for c in (1.0, -0.5, 4.16666667e-2, -1.38888889e-3,
                                       2.48015873e-5, -2.75573192e-7, 2.08767570e-9))


@dataclass(frozen=True)
class Fp16Config(TrainConfig):
    """TrainConfig plus the FP16 options. A plain TrainConfig lowers with the defaults."""
    loss_scale: float = 1024.0     # static loss scale, a power of two in [1, 2^24]
    master_weights: bool = True    # fp32 master copy of every trainable parameter
    fp16_state: bool = False       # momentum state as halves instead of fp32

    def __post_init__(self):
        super().__post_init__()
        _check_loss_scale(self.loss_scale)


def _check_loss_scale(s) -> None:
    m, e = math.frexp(float(s)) if s and math.isfinite(float(s)) else (0.0, 0)
    if m != 0.5 or not 1 <= e <= 25:
        raise ConfigError(f"fp16 loss_scale must be a power of two between 1 and 2^24 (so "
                          f"scaling and unscaling never round), got {s!r}")


def fp16_options(cfg) -> tuple[float, bool, bool]:
    """(loss_scale, master_weights, fp16_state) of a TrainConfig or Fp16Config."""
    s = float(getattr(cfg, "loss_scale", 1024.0))
    _check_loss_scale(s)
    return s, bool(getattr(cfg, "master_weights", True)), bool(getattr(cfg, "fp16_state", False))


# ---------------------------------------------------------------- calls
@dataclass(frozen=True)
class Ref:
    """A pointer argument: the tensor's storage (the C macro / the numpy env entry)."""
    name: str


@dataclass(frozen=True)
class Struct:
    """A constant parameter struct passed by address (tt_conv2d_params, tt_pool2d_params,
    tt_bcast4). values: ints, or tuples of ints for array members, in C field order."""
    ctype: str
    key: str
    values: tuple


@dataclass(frozen=True)
class Sym:
    """A run-time value: "lr" (this optimizer step's learning rate), "loss" (&l, the loss
    output of the loss kernel)."""
    name: str


LR, LOSS_OUT = Sym("lr"), Sym("loss")
# zo / jvp updates: "z" (&z, the generator of direction k, seeded with (seed, stream_id(step,
# k)) by the enclosing C function), "a" (the coefficient of the call list), "mu" (momentum
# decay: the momentum for the first direction of a step, 1 for the others)
ZSTATE, COEF, MU = Sym("z"), Sym("a"), Sym("mu")
# jvp pass: "stream" (stream_id(step, k) of the pass), "dl" (&dl, the output of dL.v)
STREAM, DL_OUT = Sym("stream"), Sym("dl")


@dataclass(frozen=True)
class Gen:
    """A parameter-tangent generator of the jvp pass (a tt_tangent_f16 variable, passed by
    address; numpy: a fp16_kernels.TangentGen), positioned by a tt_tangent_init_f16 call."""
    var: str


@dataclass(frozen=True)
class Call:
    """One runtime_c call. kind: "cast" | "fwd" | "loss" | "vjp" | "update"; op is the IR op
    (what plan_arena reads for in-place and view rules); kernel the C function, or "view"
    (same bytes: nothing to do) / "copy" (memcpy of halves)."""
    kind: str
    op: str
    kernel: str
    args: tuple
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    node: str
    accumulate: bool = False
    wrt: int | None = None


@dataclass(frozen=True)
class FgSpec:
    """The forward-gradient update zo and jvp share (docs/fp16.md sections 5 and 6). Every
    `batch` samples, per direction k (z_k = v_k regenerated from (seed, stream_id(step, k))
    over `params` in export order): coef = (dsum[k] / scale) / n_f (spsa; scale = 2 eps_t
    batch for zo, batch for jvp) or sign(dsum[k]) / n_f (sign); sgd: `update` with
    a = -lr coef; momentum: `update` with mu (momentum for k = 0, 1 after) and a = coef, then
    `apply` with a = -lr. The call lists use the symbols ZSTATE, COEF, MU."""
    n: int
    seed: int
    dist: int                      # 0 rademacher, 1 gaussian (TT_ZO_RADEMACHER / TT_ZO_GAUSS)
    sign: bool
    n_f: np.float32
    batch_f: np.float32
    momentum: np.float32 | None
    params: tuple[str, ...]        # the perturbed parameters, draw order
    update: tuple[Call, ...]       # sgd: tt_zo_update_f16; momentum: tt_zo_mom_acc_f16[_v32]
    apply: tuple[Call, ...]        # momentum: tt_zo_mom_upd_f16[_v32]; sgd: ()

    def coef(self, d, scale) -> np.float32:
        """coef_k of tt_fg_update: float32 operation for operation (the C's sign test maps
        -0 to +0, as here)."""
        d = F32(d)
        if self.sign:
            return F32(F32(1.0 if d > 0 else -1.0 if d < 0 else 0.0) / self.n_f)
        return F32(F32(d / F32(scale)) / self.n_f)


@dataclass(frozen=True)
class ZoSpec:
    """The fp16 SPSA step (docs/fp16.md section 5). Per sample and direction k:
    perturb (a = +eps_t), loss, perturb (a = -eps_t), loss, restore; dsum[k] += L+ - L-,
    then `fg` with scale = (2 eps_t) batch. eps_t = eps * 2^-h, h = min(t // halve_every,
    halvings) (zeroth_order.eps_at; halve_every 0: constant)."""
    fg: FgSpec
    eps: np.float32                # eps of step 0
    halve_every: int
    halvings: int
    perturb: tuple[Call, ...]
    restore: tuple[Call, ...]
    loss: Call                     # the loss kernel without gradient

    def scale(self, eps_t) -> np.float32:
        """2 eps_t batch, as the C's (2.0f * eps * (float)TT_BATCH)."""
        return F32(F32(F32(2.0) * F32(eps_t)) * self.fg.batch_f)


@dataclass(frozen=True)
class JvpSpec:
    """The fp16 forward-mode step (docs/fp16.md section 6). Per sample and direction k: `calls`
    (the input cast, the forward pass with its tangents, the loss and dL.v; generators keyed
    with STREAM = stream_id(step, k)); dsum[k] += dL.v; then `fg` with scale = batch."""
    fg: FgSpec
    calls: tuple[Call, ...]
    gens: tuple[str, ...]          # the tt_tangent_f16 variables the pass declares


@dataclass(frozen=True)
class Fp16Program:
    source: TrainingProgram
    config: TrainConfig                 # the training hyperparameters (lr, batch, ...)
    tensors: Mapping[str, Tensor]
    forward_calls: tuple[Call, ...]     # input cast + forward: inference
    sample_calls: tuple[Call, ...]      # loss + backward of one sample
    update_calls: tuple[Call, ...]      # once per batch
    trainable: tuple[str, ...]
    params: tuple[str, ...]             # every parameter, export order
    input: str                          # the caller's float input
    input16: str                        # its half copy in the arena
    label: str
    loss: str
    logits: str
    masters: Mapping[str, str]          # trainable parameter -> its fp32 master
    init: Mapping[str, np.ndarray]      # parameter -> uint16 halves (exported values)
    loss_scale: float
    grad_scale: np.float32              # loss kernel scale: loss_scale / batch
    inv_scale: np.float32               # 1 / loss_scale
    fp16_state: bool
    plan: MemoryPlan = field(default=None, compare=False)
    zo: ZoSpec | None = None            # algo zo: the SPSA step (no sample / update calls)
    jvp: JvpSpec | None = None          # algo jvp: the forward-mode step (likewise)

    @property
    def training(self) -> bool:
        return bool(self.sample_calls) or self.zo is not None or self.jvp is not None

    @property
    def fg(self) -> FgSpec | None:
        """The forward-gradient update of a zo or jvp program."""
        spec = self.zo or self.jvp
        return None if spec is None else spec.fg

    @property
    def train_steps(self) -> tuple[Call, ...]:
        """The per-sample call list (what plan_arena plans)."""
        if self.zo is not None:
            return self.forward_calls + (self.zo.loss,)
        if self.jvp is not None:
            return self.jvp.calls
        return self.forward_calls + self.sample_calls


def lr_at(cfg, t: int) -> np.float32:
    """Learning rate of optimizer step t in float32, operation for operation as tt_lr_at in
    tt_model_fp16.c.j2 (compiled with -ffp-contract=off)."""
    lr = F32(cfg.lr)
    if cfg.schedule == "constant":
        return lr
    if cfg.schedule == "step":
        g = F32(cfg.gamma)
        for _ in range(int(t) // max(int(cfg.step_size), 1)):
            lr = F32(lr * g)
        return lr
    total = max(int(cfg.total_steps), 1)
    f = F32(1.0) if t >= total else F32(t) / F32(total)
    return F32(F32(F32(0.5) * lr) * F32(F32(1.0) + cos_pi(f)))


def cos_pi(f) -> np.float32:
    """tt_cos_pi: cos(pi f) for f in [0, 1], float32 Horner polynomial (see COS_PI_COEFFS)."""
    f, sign = F32(f), F32(1.0)
    if f > F32(0.5):
        f, sign = F32(F32(1.0) - f), F32(-1.0)
    x = F32(PI_F32 * f)
    x2 = F32(x * x)
    c = COS_PI_COEFFS
    p = c[-1]
    for k in c[-2::-1]:
        p = F32(k + F32(x2 * p))
    return F32(sign * p)


# ---------------------------------------------------------------- lowering
def _n(shape) -> int:
    return int(np.prod(shape, dtype=np.int64)) if shape else 1


class _Lowering:
    def __init__(self, program: TrainingProgram, tensors):
        self.p = program
        self.t = tensors

    def shape(self, name):
        return self.t[name].shape

    # ---- parameter structs (ops/geometry.py: one definition for every back end); keyed by
    # node, so a layer's forward and tangent calls share one constant struct
    def conv_params(self, s, x, w, y) -> Struct:
        p = conv_geometry(s.attrs, self.shape(x), self.shape(w), self.shape(y))
        return Struct("tt_conv2d_params", "conv_" + s.node, tuple(int(p[k]) for k in CONV_FIELDS))

    def pool_params(self, s, x, y) -> Struct:
        p = pool_geometry(s.node, s.attrs, self.shape(x), self.shape(y))
        return Struct("tt_pool2d_params", "pool_" + s.node, tuple(int(p[k]) for k in POOL_FIELDS))

    def bcast(self, s, a, b, y) -> Struct:
        dims, sa, sb = bcast4(s.node, self.shape(a), self.shape(b), self.shape(y))
        return Struct("tt_bcast4", "bcast_" + s.node,
                      tuple(tuple(int(v) for v in t) for t in (dims, sa, sb)))

    # ---- forward ----------------------------------------------------------------------------
    def fwd(self, s: Step) -> Call:
        op, x, y = s.op, s.inputs[0], s.outputs[0]
        call = lambda kernel, args: Call("fwd", op, kernel, tuple(args),  # noqa: E731
                                         tuple(i for i in s.inputs if i), s.outputs, s.node)
        if op == "Gemm":
            w = s.inputs[1]
            b = Ref(s.inputs[2]) if len(s.inputs) > 2 and s.inputs[2] else None
            n, k = self.shape(x)
            return call("tt_gemm_fwd_f16", [Ref(x), Ref(w), b, Ref(y), n, k, self.shape(w)[0]])
        if op == "Conv":
            w = s.inputs[1]
            b = Ref(s.inputs[2]) if len(s.inputs) > 2 and s.inputs[2] else None
            p = self.conv_params(s, x, w, y)
            return call("tt_conv2d_fwd_f16", [p, Ref(x), Ref(w), b, Ref(y)])
        if op == "Relu":
            return call("tt_relu_fwd_f16", [Ref(x), Ref(y), _n(self.shape(x))])
        if op in ("MaxPool", "AveragePool"):
            p = self.pool_params(s, x, y)
            kern = "tt_maxpool2d_fwd_f16" if op == "MaxPool" else "tt_avgpool2d_fwd_f16"
            return call(kern, [p, Ref(x), Ref(y)])
        if op == "GlobalAveragePool":
            c, h, w = spatial(self.shape(x))
            return call("tt_global_avgpool_fwd_f16", [Ref(x), Ref(y), c, h * w])
        if op == "Add":
            d = self.bcast(s, s.inputs[0], s.inputs[1], y)
            return call("tt_add_fwd_f16", [d, Ref(s.inputs[0]), Ref(s.inputs[1]), Ref(y)])
        if op == "Reshape":   # a view when the planner gives it the input's bytes (always here)
            return call("copy", [Ref(y), Ref(x), _n(self.shape(x))])
        raise _unsupported(s)

    # ---- backward ---------------------------------------------------------------------------
    def vjp(self, s: Step) -> Call:
        gy, gx = s.inputs[0], s.outputs[0]
        saved = dict(zip(s.needs, s.inputs[1:]))
        acc = 1 if s.accumulate else 0
        call = lambda kernel, args: Call("vjp", s.op, kernel, tuple(args), s.inputs,  # noqa: E731
                                         s.outputs, s.node, s.accumulate, s.wrt)
        op = s.op
        if op == "Gemm":
            x, w = s.fwd_inputs[0], s.fwd_inputs[1]
            n, k = self.shape(x)
            m = self.shape(w)[0]
            if s.wrt == 0:
                return call("tt_gemm_bwd_x_f16", [Ref(gy), Ref(saved[1]), Ref(gx), n, k, m, acc])
            if s.wrt == 1:
                return call("tt_gemm_bwd_w_f16", [Ref(gy), Ref(saved[0]), Ref(gx), n, k, m, acc])
            return call("tt_bias_bwd_f16", [Ref(gy), Ref(gx), n, m, 1, acc])
        if op == "Conv":
            x, w = s.fwd_inputs[0], s.fwd_inputs[1]
            p = self.conv_params(s, x, w, gy)
            if s.wrt == 0:
                return call("tt_conv2d_bwd_x_f16", [p, Ref(gy), Ref(saved[1]), Ref(gx), acc])
            if s.wrt == 1:
                return call("tt_conv2d_bwd_w_f16", [p, Ref(gy), Ref(saved[0]), Ref(gx), acc])
            oc, oh, ow = spatial(self.shape(gy))
            return call("tt_bias_bwd_f16", [Ref(gy), Ref(gx), 1, oc, oh * ow, acc])
        if op == "Relu":
            return call("tt_relu_bwd_x_f16", [Ref(gy), Ref(saved[-1]), Ref(gx),
                                              _n(self.shape(gy)), acc])
        if op == "MaxPool":
            p = self.pool_params(s, s.fwd_inputs[0], gy)
            return call("tt_maxpool2d_bwd_x_f16", [p, Ref(gy), Ref(saved[0]), Ref(gx), acc])
        if op == "AveragePool":
            p = self.pool_params(s, s.fwd_inputs[0], gy)
            return call("tt_avgpool2d_bwd_x_f16", [p, Ref(gy), Ref(gx), acc])
        if op == "GlobalAveragePool":
            c, h, w = spatial(self.shape(s.fwd_inputs[0]))
            return call("tt_global_avgpool_bwd_x_f16", [Ref(gy), Ref(gx), c, h * w, acc])
        if op == "Add":
            a, b = s.fwd_inputs
            d = self.bcast(s, a, b, gy)
            return call("tt_add_bwd_f16", [d, Ref(gy), Ref(gx), s.wrt, acc])
        if op == "Reshape":
            n = _n(self.shape(gy))
            if s.accumulate:
                d = Struct("tt_bcast4", "bcast_acc_" + s.node, ((1, 1, 1, n), (0, 0, 0, 1),
                                                                 (0, 0, 0, 1)))
                return call("tt_add_bwd_f16", [d, Ref(gy), Ref(gx), 0, 1])
            return call("copy", [Ref(gx), Ref(gy), n])
        raise _unsupported(s)

    # ---- forward mode -----------------------------------------------------------------------
    def tangent_gen(self, var: str, param: str, fg: dict) -> Call:
        """Position generator `var` at the first tangent value of `param` in this pass's
        (seed, stream) stream (skipping the draws of the perturbed parameters before it)."""
        args = (Gen(var), np.uint64(fg["seed"]), STREAM, np.uint32(fg["offsets"][param]),
                fg["dist"])
        return Call("gen", "Tangent", "tt_tangent_init_f16", args, (), (), param)

    def tangent(self, s: Step, fg: dict) -> list[Call]:
        """A small parameter tangent (a trainable Add operand), materialised as halves."""
        p, t = s.node, s.outputs[0]
        return [self.tangent_gen("v_p", p, fg),
                Call("tangent", "Tangent", "tt_tangent_fill_f16",
                     (Gen("v_p"), Ref(t), _n(self.shape(p))), (p,), (t,), p)]

    def jvp(self, s: Step, fg: dict) -> list[Call]:
        """The tangent of one node's output (forward_mode.build_jvp_steps: inputs are the
        input tangents, then the forward values the Jacobian reads, then the parameters whose
        tangents the kernel draws)."""
        op, y = s.op, s.outputs[0]
        nt = len(s.tangents)
        tans = dict(zip(s.tangents, s.inputs[:nt]))
        reads = dict(zip(s.needs, s.inputs[nt:]))
        call = lambda kernel, args: Call("jvp", op, kernel, tuple(args),  # noqa: E731
                                         tuple(i for i in s.inputs if i), s.outputs, s.node)
        if op in ("Gemm", "Conv"):
            if set(tans) - {0}:
                raise ExportError(f"node {s.node!r} ({op}): a tangent on a weight or bias input "
                                  "that is not a parameter has no fp16 C kernel (fp16 jvp "
                                  "supports tangents on the input and drawn parameter tangents)")
            x, w = s.fwd_inputs[0], s.fwd_inputs[1]
            out, gens = [], []
            for i, var in ((1, "v_w"), (2, "v_b")):
                if i in s.generated:
                    out.append(self.tangent_gen(var, s.fwd_inputs[i], fg))
                    gens.append(Gen(var))
                else:
                    gens.append(None)
            tx = Ref(tans[0]) if 0 in tans else None
            xr = Ref(x) if 1 in s.generated else None    # read only for x . v_w
            wr = Ref(w) if 0 in tans else None           # read only for tx . W
            if op == "Gemm":
                n, k = self.shape(x)
                args = [xr, tx, wr, Ref(y), n, k, self.shape(w)[0]]
                return out + [call("tt_gemm_jvp_f16", args + gens)]
            args = [self.conv_params(s, x, w, y), xr, tx, wr, Ref(y)]
            return out + [call("tt_conv2d_jvp_f16", args + gens)]
        tx = tans.get(0)
        if op == "Relu":     # diagonal Jacobian: the VJP kernel with the tangent for gy
            return [call("tt_relu_bwd_x_f16", [Ref(tx), Ref(reads[OUT]), Ref(y),
                                               _n(self.shape(y)), 0])]
        if op == "MaxPool":
            p = self.pool_params(s, s.fwd_inputs[0], y)
            return [call("tt_maxpool2d_jvp_f16", [p, Ref(reads[0]), Ref(tx), Ref(y)])]
        if op == "AveragePool":   # linear: the op itself on the tangent
            p = self.pool_params(s, s.fwd_inputs[0], y)
            return [call("tt_avgpool2d_fwd_f16", [p, Ref(tx), Ref(y)])]
        if op == "GlobalAveragePool":
            c, h, w = spatial(self.shape(s.fwd_inputs[0]))
            return [call("tt_global_avgpool_fwd_f16", [Ref(tx), Ref(y), c, h * w])]
        if op == "Add":
            a, b = s.fwd_inputs
            d = self.bcast(s, a, b, y)
            ta, tb = (Ref(tans[i]) if i in tans else None for i in (0, 1))
            return [call("tt_add_jvp_f16", [d, ta, tb, Ref(y)])]
        if op == "Reshape":   # a view when the planner gives it the tangent's bytes (always)
            return [call("copy", [Ref(y), Ref(tx), _n(self.shape(tx))])]
        raise _unsupported(s)


def _unsupported(s) -> ExportError:
    return ExportError(f"node {s.node!r} ({s.op}): no fp16 C kernel for this op; fp16 export "
                       f"supports {', '.join(SUPPORTED_OPS)} (use precision fp32 for this model)")


def check_fp16_config(cfg) -> None:
    """Refuse, with what is supported, every option the fp16 path does not implement."""
    if cfg.algo not in ("bp", "zo", "jvp") or cfg.hybrid_bp_layers:
        raise ConfigError(f"fp16 training supports backpropagation (algo 'bp'), zeroth order "
                          f"(algo 'zo') and forward mode (algo 'jvp'), not {cfg.algo!r}"
                          f"{' with hybrid_bp_layers' if cfg.hybrid_bp_layers else ''}"
                          "; use precision fp32 for the zo + backprop hybrid")
    if getattr(cfg, "zo_sam_rho", 0.0):
        raise ConfigError("the zo sharpness-aware point (zo_sam_rho, --sam-rho) is not available "
                          "in fp16; use precision fp32 or fixed point")
    if cfg.optimizer not in OPTIMIZERS:
        raise ConfigError(f"fp16 training supports the optimizers {' and '.join(OPTIMIZERS)} "
                          f"(momentum state fp32, or half with fp16_state), not "
                          f"{cfg.optimizer!r}; Adam needs an fp16 update kernel that does not "
                          "exist yet (use precision fp32 for Adam)")
    if cfg.loss != "cross_entropy":
        raise ConfigError(f"fp16 training supports the cross_entropy loss only (the runtime "
                          f"has no fp16 kernel for {cfg.loss!r}); use precision fp32")
    if cfg.schedule not in SCHEDULES:
        raise ConfigError(f"fp16 training supports the learning-rate schedules "
                          f"{', '.join(SCHEDULES)}, not {cfg.schedule!r}")
    fp16_options(cfg)


def _halves(name, value) -> np.ndarray:
    v = np.asarray(value, np.float32).reshape(-1)
    if not np.all(np.isfinite(v)):
        raise ExportError(f"parameter {name!r} contains NaN or Inf; cannot export")
    h = f32_to_f16(v)
    if np.any((h & 0x7C00) == 0x7C00):
        raise ExportError(f"parameter {name!r} has values beyond the fp16 range (|w| >= 65520: "
                          f"max |w| = {np.abs(v).max():.6g}); export it in fp32")
    return h


@dataclass(frozen=True)
class _PlanInput:
    """What plan_arena reads from a program."""
    tensors: Mapping[str, Tensor]
    trainable: tuple[str, ...]
    input: str
    label: str
    loss: str
    train_steps: tuple


def lower_fp16(program: TrainingProgram, cfg=None) -> Fp16Program:
    """Lower a backprop TrainingProgram to FP16 kernel calls and plan its memory.
    cfg: the config with the fp16 options (Fp16Config); default program.config."""
    cfg = program.config if cfg is None else cfg
    check_fp16_config(cfg)
    check_fp16_config(program.config)
    loss_scale, use_master, fp16_state = fp16_options(cfg)
    algo = program.config.algo
    zo, jvp = algo == "zo", algo == "jvp"
    if zo and not use_master:
        raise ConfigError("fp16 zo needs the fp32 master weights (master_weights=True): the "
                          "perturbation is computed from them, so the restore is exact")
    if jvp and not use_master:
        raise ConfigError("fp16 jvp needs the fp32 master weights (master_weights=True): its "
                          "update lr * coef * v is applied to them (most updates are below "
                          "half a half-ulp of the weight)")
    if program.fused:   # fused SGD updates the halves inside the backward pass: no master
        program = build_training_program(program.graph, replace(program.config,
                                                                fuse_update=False))
    src = program.tensors
    graph = program.graph
    training = zo or jvp or any(s.kind == "loss" and len(s.outputs) > 1
                                for s in program.train_steps)
    mom = program.config.optimizer == "momentum"

    # ---- tensor table: storage dtypes; opt_state f32 tensors first, then f16 ones
    tensors: dict[str, Tensor] = {}
    for name, t in src.items():
        if t.role is TensorRole.OPT_STATE:
            continue
        if t.role in (TensorRole.INPUT, TensorRole.LABEL, TensorRole.LOSS):
            tensors[name] = t
        else:
            tensors[name] = t.with_(dtype="f16")
    x16 = program.input + INPUT16
    if x16 in src:
        raise ExportError(f"internal: the model already has a tensor named {x16!r}")
    tensors[x16] = src[program.input].with_(name=x16, dtype="f16", role=TensorRole.ACTIVATION)
    masters: dict[str, str] = {}
    states: dict[str, str] = {}
    upd_params = (list(program.fg_params) if zo or jvp
                  else [s.inputs[0] for s in program.update_steps])
    for p in upd_params:
        if use_master:
            masters[p] = p + MASTER
            tensors[p + MASTER] = src[p].with_(name=p + MASTER, dtype="f32",
                                               role=TensorRole.OPT_STATE)
        if mom and not fp16_state:
            states[p] = p + MOM
            tensors[p + MOM] = src[p].with_(name=p + MOM, dtype="f32", role=TensorRole.OPT_STATE)
    if mom and fp16_state:
        for p in upd_params:
            states[p] = p + MOM
            tensors[p + MOM] = src[p].with_(name=p + MOM, dtype="f16", role=TensorRole.OPT_STATE)

    low = _Lowering(program, tensors)
    cast = Call("cast", "CastF16", "tt_f32_to_f16_n",
                (Ref(program.input), Ref(x16), _n(src[program.input].shape)),
                (program.input,), (x16,), program.input)

    def rename(s: Step) -> Step:   # every read of the float input reads its half copy
        def r(names):
            return tuple(x16 if n == program.input else n for n in names)
        return replace(s, inputs=r(s.inputs), fwd_inputs=r(s.fwd_inputs))

    forward = [cast] + [low.fwd(rename(s)) for s in program.forward_steps]
    sample: list[Call] = []
    updates: list[Call] = []
    batch = int(program.config.batch)
    grad_scale = F32(F32(loss_scale) / F32(batch))
    inv_scale = F32(1.0 / loss_scale)
    zspec = jspec = None
    if zo:
        zspec = _zo_spec(program, src, masters, states, fp16_state)
    elif jvp:
        jspec = _jvp_spec(program, low, rename, cast, masters, states, fp16_state)
    elif training:
        rest = program.train_steps[len(program.forward_steps):]
        ls = rest[0]
        logits, label = ls.inputs
        rows, cols = src[logits].shape
        sample.append(Call("loss", ls.op, "tt_softmax_xent_f16",
                           (Ref(logits), Ref(label), rows, cols, grad_scale, LOSS_OUT,
                            Ref(ls.outputs[1])), ls.inputs, ls.outputs, ls.node))
        for s in rest[1:]:
            if s.kind != "vjp":
                raise ExportError(f"internal: step kind {s.kind!r} in an fp16 backward pass")
            sample.append(low.vjp(rename(s)))
        wd = F32(program.config.weight_decay)
        for s in program.update_steps:
            p, g = s.inputs[0], s.inputs[1]
            n = _n(src[p].shape)
            m = Ref(masters[p]) if p in masters else None
            extra = (masters[p],) if p in masters else ()
            if s.op == "sgd":
                args = (Ref(p), Ref(g), m, n, LR, wd, inv_scale)
                ins, outs = (p, g) + extra, (p, g) + extra
                kern = "tt_sgd_upd_f16"
            else:
                v = states[p]
                kern = "tt_momentum_upd_f16" if fp16_state else "tt_momentum_upd_f16_v32"
                args = (Ref(p), Ref(g), Ref(v), m, n, LR, F32(program.config.momentum), wd,
                        inv_scale)
                ins, outs = (p, g, v) + extra, (p, g, v) + extra
            updates.append(Call("update", s.op, kern, args, ins, outs, p))

    init = {p: _halves(p, graph.initializers[p]) for p in graph.params}
    for name, t in src.items():
        if t.role is TensorRole.CONST:
            init[name] = _halves(name, graph.initializers[name])
    if jspec is not None:
        planned = list(jspec.calls)
    else:
        planned = forward + ([zspec.loss] if zspec is not None else sample)
    plan = plan_arena(_PlanInput(tensors, program.trainable, program.input, program.label,
                                 program.loss, tuple(planned)))

    def resolve(c: Call) -> Call:
        """Copies between tensors the planner gave the same bytes are views."""
        if c.kernel == "copy" or (c.kernel == "tt_add_bwd_f16" and not c.accumulate):
            a, b = c.outputs[0], c.inputs[0]
            pa, pb = plan.placements.get(a), plan.placements.get(b)
            if pa is not None and pb is not None and (pa.section, pa.offset) == \
                    (pb.section, pb.offset):
                return replace(c, kernel="view", args=(Ref(a), Ref(b)))
        return c

    forward = [resolve(c) for c in forward]
    sample = [resolve(c) for c in sample]
    if jspec is not None:
        jspec = replace(jspec, calls=tuple(resolve(c) for c in jspec.calls))
    return Fp16Program(
        source=program, config=program.config, tensors=tensors, forward_calls=tuple(forward),
        sample_calls=tuple(sample), update_calls=tuple(updates),
        trainable=tuple(program.trainable),
        params=tuple(graph.params), input=program.input, input16=x16, label=program.label,
        loss=program.loss, logits=program.logits, masters=masters, init=init,
        loss_scale=loss_scale, grad_scale=grad_scale, inv_scale=inv_scale,
        fp16_state=fp16_state, plan=plan, zo=zspec, jvp=jspec)


def _fg_spec(program: TrainingProgram, src, masters, states, fp16_state) -> FgSpec:
    """The forward-gradient update over program.fg_params (export order = draw order): the fp32
    zo update applied to the masters, then w16 = half(master)."""
    cfg = program.config
    mom = cfg.optimizer == "momentum"
    update, apply = [], []
    for p in program.fg_params:
        n, m = _n(src[p].shape), masters[p]
        if mom:
            v = states[p]
            sfx = "" if fp16_state else "_v32"
            update.append(Call("zo", "Momentum", "tt_zo_mom_acc_f16" + sfx,
                               (Ref(v), n, ZSTATE, MU, COEF, DISTS[cfg.zo_dist]), (v,), (v,), p))
            apply.append(Call("update", "momentum", "tt_zo_mom_upd_f16" + sfx,
                              (Ref(m), Ref(p), Ref(v), n, COEF), (m, v), (m, p), p))
        else:
            update.append(Call("update", "sgd", "tt_zo_update_f16",
                               (Ref(m), Ref(p), n, ZSTATE, COEF, DISTS[cfg.zo_dist]), (m,),
                               (m, p), p))
    return FgSpec(n=int(cfg.perturbations), seed=int(cfg.seed), dist=DISTS[cfg.zo_dist],
                  sign=cfg.zo_estimator == "sign", n_f=F32(int(cfg.perturbations)),
                  batch_f=F32(int(cfg.batch)), momentum=F32(cfg.momentum) if mom else None,
                  params=tuple(program.fg_params), update=tuple(update), apply=tuple(apply))


def _xent_call(program: TrainingProgram, src) -> Call:
    """The loss of one sample without its gradient (scale 1: the loss value only)."""
    logits, label = program.logits, program.label
    rows, cols = src[logits].shape
    loss_op = next(s.op for s in program.train_steps if s.kind in ("loss", "loss_jvp"))
    return Call("loss", loss_op, "tt_softmax_xent_f16",
                (Ref(logits), Ref(label), rows, cols, F32(1.0), LOSS_OUT, None),
                (logits, label), (program.loss,), loss_op)


def _zo_spec(program: TrainingProgram, src, masters, states, fp16_state) -> ZoSpec:
    """The fp16 SPSA call lists over program.fg_params (export order = draw order)."""
    cfg = program.config
    dist = DISTS[cfg.zo_dist]
    perturb, restore = [], []
    for p in program.fg_params:
        n, m = _n(src[p].shape), masters[p]
        perturb.append(Call("zo", "Perturb", "tt_zo_perturb_f16",
                            (Ref(m), Ref(p), n, ZSTATE, COEF, dist), (m,), (p,), p))
        restore.append(Call("zo", "Restore", "tt_f32_to_f16_n", (Ref(m), Ref(p), n), (m,),
                            (p,), p))
    return ZoSpec(fg=_fg_spec(program, src, masters, states, fp16_state), eps=F32(cfg.zo_eps),
                  halve_every=int(cfg.zo_eps_halve_every), halvings=int(cfg.zo_eps_halvings),
                  perturb=tuple(perturb), restore=tuple(restore),
                  loss=_xent_call(program, src))


def _jvp_spec(program: TrainingProgram, low: _Lowering, rename, cast: Call, masters, states,
              fp16_state) -> JvpSpec:
    """The fp16 forward-mode pass: forward_mode.build_jvp_steps' step list as calls."""
    cfg = program.config
    src = program.tensors
    fg = {"seed": int(cfg.seed), "dist": DISTS[cfg.zo_dist],
          "offsets": draw_offsets(program.fg_params, src, DISTS[cfg.zo_dist])}
    calls = [cast]
    for s in program.train_steps:
        s = rename(s)
        if s.kind == "fwd":
            calls.append(low.fwd(s))
        elif s.kind == "tangent":
            calls += low.tangent(s, fg)
        elif s.kind == "jvp":
            calls += low.jvp(s, fg)
        elif s.kind == "loss_jvp":
            logits, label, tlogits = s.inputs
            rows, cols = src[logits].shape
            calls.append(_xent_call(program, src))
            calls.append(Call("loss_jvp", s.op, "tt_softmax_xent_jvp_f16",
                              (Ref(logits), Ref(label), rows, cols, Ref(tlogits), DL_OUT),
                              (logits, label, tlogits), (program.loss + TAN,), s.op))
        else:
            raise ExportError(f"internal: step kind {s.kind!r} in an fp16 jvp pass")
    gens = sorted({a.var for c in calls for a in c.args if isinstance(a, Gen)})
    return JvpSpec(fg=_fg_spec(program, src, masters, states, fp16_state), calls=tuple(calls),
                   gens=tuple(gens))
