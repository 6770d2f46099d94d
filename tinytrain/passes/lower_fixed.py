"""lower_fixed: a float TrainingProgram + calibration -> a fixed-point program (int8 / int16).

The result is a flat list of kernel calls with every integer constant resolved (requant
multipliers, pool / conv geometry, update multipliers, saturation-counter slots). ONE lowering,
TWO interpreters: ``tinytrain.fixed_reference`` runs the calls with the numpy twins
(numerics/qkernels.py) and ``codegen.emit_fixed`` prints the same calls as C. That is why the
device and the laptop agree bit for bit: they execute the same integer program.

Numerics (docs/fixed-point.md, "Training graphs"):
- activations: static per-tensor scales from calibration; forward requantization TFLite-style;
  a Gemm / Conv whose output only feeds ReLUs clamps at 0 in its requant (fused ReLU).
- activation gradients: int8 / int16 with a per-tensor power-of-two exponent chosen at run time
  from the tensor's max (real = q * 2^e). bwd_x accumulators carry the weight scale s_w, which
  one multiplier rescale folds in (mantissa of s_w in [0.5, 1); its exponent goes to e), so every
  gradient is a pure power-of-two and two contributions join with shifts only.
- weight updates: integer SGD with QAS (Lin et al. 2022): the integer step on W = s_W * Wbar is
  lr * G_W / s_W (= the QAS-scaled G~ = G_Wbar / s_W^2 times lr) — per output channel
  multipliers, the runtime gradient exponent added to the shift, stochastic (default) or
  nearest rounding. Batch 1: each weight gradient is applied right after it is computed (the
  layer's input gradient is computed first, from the old weights).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Mapping

import numpy as np

from ..errors import ConfigError, ExportError
from ..ir import Tensor, TensorRole
from ..numerics import fixed as fx
from ..numerics import qact
from ..ops.geometry import bcast4, conv_geometry, pool_geometry, spatial
from .quantize import (QuantConfig, activation_scale, calibrate, quantize_values, relu_only,
                       weight_scales)
from .forward_mode import draw_offsets
from .training import GRAD, TrainConfig, build_training_program

FIXED_OPS = ("Gemm", "Conv", "Relu", "Sigmoid", "Tanh", "MaxPool", "AveragePool",
             "GlobalAveragePool", "Add", "Reshape")
AVG_FRAC_BITS = 16
ZO_FRAC_BITS = 16            # zo update coefficient: 2^-16 weight LSBs per unit of z
UPDATE_STREAM = 0xFFFFFFFF   # PRNG stream k of the stochastic rounding draws of step t


@dataclass(frozen=True)
class QCall:
    """One kernel call. ``fn`` names the kernel family (the interpreters' switch); ``args``
    holds the constants; ``exp`` = (out var, input vars, constant, adds the kernel's rshift):
    the runtime exponent the call defines. kind / op / accumulate serve the memory planner
    (in-place and view decisions), exactly as for float steps."""
    fn: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    node: str
    args: Mapping = field(default_factory=dict)
    exp: tuple | None = None
    kind: str = "q"
    op: str = ""
    accumulate: bool = False


@dataclass
class FixedProgram:
    program: object                 # the float TrainingProgram it was lowered from
    qcfg: QuantConfig
    tensors: dict                   # name -> Tensor (storage dtypes)
    scales: dict                    # name -> float64 array [channels] (real scale per channel)
    layout: dict                    # name -> (channels, inner) of the scale table
    forward: tuple                  # QCalls of the forward pass (input quantization first)
    train: tuple                    # QCalls after the forward: loss, backward, updates
    sat_sites: tuple                # names of the saturation counters, by slot
    exps: tuple                     # runtime exponent variables
    qinput: str                     # the quantized input tensor
    logits: str
    trainable: tuple
    input: str
    label: str
    loss: str = "loss"
    seed: int = 0
    lr: float = 0.0
    initial: dict = field(default_factory=dict)   # param -> int64 array (quantized values)
    zo: dict | None = None          # fixed-point SPSA step (lower_fixed._Lowering.zo_spec)
    jvp: dict | None = None         # fixed-point forward mode (lower_fixed._Lowering.jvp_spec)
    warnings: tuple = ()            # what the user should know (sub-LSB perturbations, 8w8a)

    @property
    def bits(self) -> int:
        return self.qcfg.bits

    @property
    def train_steps(self):
        """What plan_arena walks (zo: the forward pass, which quantizes the caller's float
        input again each time, so nothing lives across passes: arena = inference arena; jvp:
        one pass of forward and tangent calls interleaved)."""
        return self.jvp["pass"] if self.jvp else self.forward + self.train

    @property
    def params(self) -> list[str]:
        return [n for n, t in self.tensors.items() if t.role in (TensorRole.PARAM, TensorRole.CONST)]


def _sdt(bits):
    return "i8" if bits == 8 else "i16"


def _adt(bits):
    return "i32" if bits == 8 else "i64"


def _multiplier(real: float) -> tuple[int, int]:
    """real = mult * 2^(shift - 31), mult in [2^30, 2^31), any shift (the runtime exponent is
    added before the range check); real == 0 -> (0, 0)."""
    if real <= 0:
        return 0, 0
    m, e = math.frexp(real)
    mult = int(math.floor(m * (1 << 31) + 0.5))
    if mult == 1 << 31:
        mult, e = 1 << 30, e + 1
    return mult, e


def _mantissa(real: float) -> tuple[int, int]:
    """real = (mult / 2^31) * 2^ex with mult / 2^31 in [0.5, 1): (mult, ex). The rescale by
    mult never overflows (factor < 1)."""
    m, e = math.frexp(real)
    mult = min(int(math.floor(m * (1 << 31) + 0.5)), (1 << 31) - 1)
    return mult, e


def conv_params(node, xs, ws, ys) -> dict:
    return conv_geometry(node.attrs, xs, ws, ys)


def pool_params(node, xs, ys) -> dict:
    return pool_geometry(node.name, node.attrs, xs, ys)


def check_fixed_config(cfg: TrainConfig, trainable):
    if not trainable:
        return
    if cfg.loss != "cross_entropy":
        raise ConfigError(f"fixed-point training supports the cross_entropy loss (integer "
                          f"softmax cross-entropy), not {cfg.loss!r}")
    fg = cfg.algo in ("zo", "jvp")
    if cfg.optimizer not in ("sgd", "momentum") or (fg and cfg.optimizer != "sgd"):
        raise ConfigError(f"fixed-point training supports the sgd and momentum optimizers "
                          f"(integer SGD with QAS; zo and jvp: sgd), not {cfg.optimizer!r}"
                          f"{f' with {cfg.algo}' if fg else ''}")
    if cfg.batch != 1:
        raise ConfigError(f"fixed-point training runs at batch 1 (each sample's integer "
                          f"gradient is applied at once); got batch {cfg.batch}")
    if cfg.schedule != "constant":
        raise ConfigError(f"fixed-point training folds the learning rate into integer "
                          f"multipliers: only the constant schedule is available, not "
                          f"{cfg.schedule!r}")
    if cfg.weight_decay:
        raise ConfigError("weight decay is not available in fixed-point training")


def lower_fixed(graph, cfg: TrainConfig, qcfg: QuantConfig, calib_samples,
                scales: Mapping | None = None) -> FixedProgram:
    """``scales``: known scales that override calibration (an already-quantized model: QDQ /
    QLinear import) — activation tensor -> float, weight parameter -> float or per-output-
    channel array. With scales for every activation, calib_samples may be None."""
    for n in graph.nodes:
        if n.op not in FIXED_OPS:
            raise ExportError(f"node {n.name!r} has op type {n.op}, which has no fixed-point "
                              f"kernel; fixed-point export supports {', '.join(FIXED_OPS)}. "
                              "Export this model with --precision fp32 or fp16.")
    program = build_training_program(graph, replace(cfg, fuse_update=False))
    check_fixed_config(cfg, program.trainable)
    scales = dict(scales or {})
    ranges = calibrate(graph, calib_samples, qcfg) if calib_samples is not None else {}
    return _Lowering(graph, program, cfg, qcfg, ranges, scales).run()


class _Lowering:
    def __init__(self, graph, program, cfg, qcfg, ranges, known=None):
        self.g, self.p, self.cfg, self.q, self.ranges = graph, program, cfg, qcfg, ranges
        self.known = known or {}
        # storage bits of the node being lowered (per-layer precision); every call records it
        self.bits = qcfg.bits
        self.layer_bits = dict(qcfg.layer_bits)
        ops = {n.name: n.op for n in graph.nodes}
        for name in self.layer_bits:
            if ops.get(name) not in ("Gemm", "Conv"):
                what = f"is a {ops[name]} node" if name in ops else "is not a node of the model"
                layers = ", ".join(n for n, o in ops.items() if o in ("Gemm", "Conv"))
                raise ConfigError(f"per-layer precision for {name!r}: it {what}; layers with "
                                  f"weights (Gemm, Conv) can be set: {layers}")
        self.tbits: dict[str, int] = {}       # activation -> its storage bits
        self.node_bits: dict[str, int] = {}
        self.node_ins: dict[str, list] = {}   # node -> the inputs it reads (converted copies)
        self.orig: dict[str, str] = {}        # copy / quantized input -> calibrated tensor
        self.tensors: dict[str, Tensor] = {}
        self.scales: dict[str, np.ndarray] = {}
        self.layout: dict[str, tuple[int, int]] = {}
        self.sites: list[str] = []
        self.exps: list[str] = []
        self.initial: dict[str, np.ndarray] = {}
        self.calls: list[QCall] = []
        self.warnings: list[str] = []
        self.masks: dict[str, str] = {}       # ReLU output -> its 1-bit mask (--relu-mask)
        self.codes: dict[str, tuple] = {}     # Sigmoid/Tanh output -> (codes, ActCodes)
        self.tables: dict[str, object] = {}   # Sigmoid/Tanh node -> its qact.ActTable
        self.trainable = set(program.trainable)
        self.zo = cfg.algo == "zo"
        self.jvp = cfg.algo == "jvp"
        # parameters a forward gradient (zo or jvp) moves: one scale per tensor (one step size);
        # a zo hybrid trains its last layers by backprop, they are not among them
        self.fg_params = set(program.fg_params)
        self.spans: dict[str, tuple[int, int]] = {}   # node -> its forward calls
        # activations computed from a trainable parameter: their ranges move during training
        self.downstream: set[str] = set()
        for n in graph.nodes:
            if any(i in self.trainable or i in self.downstream for i in n.inputs):
                self.downstream.update(n.outputs)
        # layers whose input gradient is computed need one weight scale (module doc)
        self.backprops = {s.node for s in program.train_steps if s.kind == "vjp" and s.wrt == 0}

    # ---- tensors -----------------------------------------------------------------------------
    def add(self, name, shape, dtype, role=TensorRole.ACTIVATION, kind=None):
        t = Tensor(name, tuple(shape), dtype, role, kind)
        prev = self.tensors.get(name)
        if prev is not None and (prev.shape, prev.dtype) != (t.shape, t.dtype):
            raise ExportError(f"internal: tensor {name!r} lowered twice with different types")
        self.tensors[name] = t
        return name

    def site(self, name) -> int:
        self.sites.append(name)
        return len(self.sites) - 1

    def evar(self, name) -> str:
        v = "e:" + name
        if v not in self.exps:
            self.exps.append(v)
        return v

    def shape(self, name):
        return self.p.tensors[name].shape

    def act(self, name):
        """Activation tensor in storage type with its static scale."""
        if name not in self.tensors:
            self.add(name, self.shape(name), _sdt(self.bits))
            self.tbits[name] = self.bits
        return name

    def convert(self, x, bits):
        """x as the current layer reads it: itself, or (once) a copy at the other width with
        the scale calibration gives the tensor at that width."""
        if self.tbits[x] == bits:
            return x
        y = f"{x}__q{bits}"
        if y not in self.tensors:
            src = self.orig.get(x, x)
            s = self.act_scale_of(src, bits)
            self.add(y, self.tensors[x].shape, _sdt(bits))
            self.tbits[y], self.orig[y] = bits, src
            self.set_scale(y, s)
            mult, shift = fx.quantize_multiplier(self.a_scale(x) / s)
            self.emit("act_convert", (x,), (y,), "convert " + x,
                      {"n": self.tensors[y].size, "xbits": self.tbits[x], "bits": bits,
                       "mult": mult, "shift": shift, "sat": self.site("output " + y)})
        return y

    def consumer_bits(self, tensor) -> int:
        """Bits of the first layer that reads `tensor` through shape-only / elementwise ops
        (the graph input is quantized at the width its first layer computes in)."""
        seen = tensor
        while True:
            cons = self.g.consumers(seen)
            if len(cons) != 1:
                return self.q.bits
            n = cons[0]
            if n.op in ("Gemm", "Conv"):
                return self.layer_bits.get(n.name, self.q.bits)
            if n.op not in ("Relu", "MaxPool", "AveragePool", "GlobalAveragePool", "Reshape"):
                return self.q.bits
            seen = n.outputs[0]

    def set_scale(self, name, s):
        self.scales[name] = np.array([float(s)])
        self.layout[name] = (1, 1)

    def a_scale(self, name) -> float:
        return float(self.scales[name][0])

    def emit(self, fn, inputs, outputs, node, args=None, **k):
        args = dict(args or {})
        args.setdefault("bits", self.bits)
        self.calls.append(QCall(fn, inputs, outputs, node, args, **k))

    # ---- parameters --------------------------------------------------------------------------
    def param(self, node, name, x_in=None):
        """Quantize a weight (dim 0 = output channel) or a bias (scale s_x * s_w[c])."""
        if name in self.tensors:
            return name
        role = TensorRole.PARAM if self.p.tensors[name].role is TensorRole.PARAM else TensorRole.CONST
        v = np.asarray(self.g.initializers[name], np.float64)
        trainable = name in self.trainable
        w_name = node.inputs[1]
        wb = self.wbits(node)
        if name == w_name:
            # zo perturbs whole tensors with one step size: one scale per trainable tensor
            # jvp: a layer whose input carries a tangent scales it by s_W, one mantissa
            per_ch = self.q.per_channel and node.name not in self.backprops and not any(
                i in self.fg_params for i in node.inputs[1:]) and not (
                self.jvp and node.inputs[0] in self.downstream)
            head = 1.0 if not trainable else (
                self.q.trainable_headroom if wb == 8 else max(self.q.trainable_headroom,
                                                              self.q.wide_headroom))
            s = weight_scales(v, per_ch, head, replace(self.q, bits=wb))
            if name in self.known:
                s = np.broadcast_to(np.asarray(self.known[name], np.float64).reshape(-1),
                                    (v.shape[0],)).copy()
            q = quantize_values(v, s, wb)
            self.add(name, v.shape, _sdt(wb), role, "weight")
            self.layout[name] = (v.shape[0], int(v.size // v.shape[0]))
        else:
            sw = self.scales[self.param(node, w_name)]
            s = self.a_scale(x_in) * sw
            q = np.rint(v / s).astype(np.int64)
            wide = self.bits == 16 or wb == 16
            lim = (1 << 47) if wide else (1 << 31) - 1
            q = np.clip(q, -lim, lim)
            self.add(name, v.shape, "i64" if wide else "i32", role, "bias")
            self.layout[name] = (v.shape[0], 1)
        self.scales[name] = np.asarray(s, np.float64)
        self.initial[name] = q
        return name

    def act_scale_of(self, tensor, bits=None) -> float:
        """A known scale (imported model) as given; else the calibrated range with headroom."""
        bits = bits or self.bits
        if tensor in self.known and bits == self.q.bits:
            return float(np.asarray(self.known[tensor]).reshape(-1)[0])
        if tensor in self.known and tensor not in self.ranges:   # at the other width
            return float(np.asarray(self.known[tensor]).reshape(-1)[0]) * \
                ((1 << (self.q.bits - 1)) - 1) / ((1 << (bits - 1)) - 1)
        if tensor not in self.ranges:
            raise ConfigError(f"no scale for tensor {tensor!r}: pass calibration samples "
                              "(--calibration) or import a quantized model that has one")
        return activation_scale(self.ranges[tensor] * self.headroom(tensor, bits),
                                replace(self.q, bits=bits))

    def headroom(self, tensor, bits=None) -> float:
        """Range headroom of an activation the training changes (quantize.QuantConfig)."""
        if tensor not in self.downstream:
            return 1.0
        h = self.q.act_headroom(bits or self.bits)
        return max(h, self.q.logits_headroom) if tensor in self.g.outputs else h

    def only_own_vjp_reads(self, node) -> bool:
        """The node's output is read by the backward pass only through the node's own VJP,
        so a compressed form can replace it there (--relu-mask, --few-bit-backward)."""
        y = node.outputs[0]
        readers = [s for s in self.p.train_steps if s.kind == "vjp" and y in s.inputs[1:]]
        return bool(readers) and all(s.node == node.name and s.op == node.op for s in readers)

    def mask_relu(self, node) -> bool:
        """--relu-mask: a ReLU's output is needed only as y > 0: one packed bit per element."""
        return self.q.relu_mask and self.only_own_vjp_reads(node)

    def wbits(self, node) -> int:
        """Weight bits of a layer: 16 for a forward-gradient-trained (zo or jvp) layer of an
        int8 model in the 16w8a format — an 8-bit weight cannot hold a perturbation or an
        update below one LSB — else the layer's bits."""
        if self.bits == 8 and self.q.zo_weight_bits == 16 and node.inputs[1] in self.fg_params:
            return 16
        return self.bits

    # ---- forward -----------------------------------------------------------------------------
    def requant(self, node, x, w, y, fused_relu):
        sx, sy = self.a_scale(x), self.a_scale(y)
        sw = self.scales[w]
        per = self.layout[w][0] if len(set(sw.tolist())) > 1 else 1
        mults, shifts = [], []
        for c in range(per):
            m, sh = fx.tflite_output_multiplier(sx, float(sw[c]), sy)
            mults.append(m)
            shifts.append(sh)
        return {"mult": tuple(mults), "shift": tuple(shifts), "per_channel": per > 1,
                "act_min": 0 if fused_relu else None}

    def forward(self):
        g = self.g
        xin = g.inputs[0]
        qin = xin + "__q"
        self.bits = self.consumer_bits(xin)
        self.add(qin, self.shape(xin), _sdt(self.bits))
        self.tbits[qin], self.orig[qin] = self.bits, xin
        self.set_scale(qin, self.act_scale_of(xin))
        self.set_scale(xin, self.a_scale(qin))
        self.emit("quantize", (xin,), (qin,), "input",
                  {"inv_scale": float(np.float32(1.0 / self.a_scale(qin))),
                   "sat": self.site("input " + xin)})
        self.alias = {xin: qin}
        for n in g.nodes:
            ins = [self.alias.get(i, i) for i in n.inputs]
            y = n.outputs[0]
            op = n.op
            start = len(self.calls)
            if op in ("Gemm", "Conv"):
                self.bits = self.layer_bits.get(n.name, self.q.bits)
                ins[0] = self.convert(ins[0], self.bits)
            elif op == "Add":
                self.bits = max(self.tbits.get(i, self.q.bits) for i in ins)
                ins = [self.convert(i, self.bits) if i in self.tbits else i for i in ins]
            elif ins[0] in self.tbits:
                self.bits = self.tbits[ins[0]]
            self.node_bits[n.name], self.node_ins[n.name] = self.bits, list(ins)
            bits = self.bits
            if op in ("Gemm", "Conv"):
                x = ins[0]
                if ins[1] not in self.p.tensors or self.p.tensors[ins[1]].role not in (
                        TensorRole.PARAM, TensorRole.CONST):
                    raise ExportError(f"node {n.name!r} ({op}): the weight must be a parameter "
                                      "or constant in fixed-point export")
                fused = relu_only(g, y)
                self.set_scale(y, self.act_scale_of(y))
                self.act(y)
                w = self.param(n, ins[1])
                b = self.param(n, ins[2], x) if len(ins) > 2 and ins[2] else None
                rq = self.requant(n, x, w, y, fused)
                args = {"rq": rq, "sat": self.site("output " + y), "wbits": self.wbits(n)}
                if op == "Gemm":
                    nn, k = self.shape(n.inputs[0])
                    args.update(n=nn, k=k, m=self.shape(n.inputs[1])[0])
                    self.emit("gemm_fwd", (x, w) + ((b,) if b else ()), (y,), n.name, args,
                              kind="fwd", op="Gemm")
                else:
                    args["conv"] = conv_params(n, self.shape(n.inputs[0]), self.shape(n.inputs[1]),
                                               self.shape(y))
                    self.emit("conv2d_fwd", (x, w) + ((b,) if b else ()), (y,), n.name, args,
                              kind="fwd", op="Conv")
            elif op in ("Relu", "MaxPool", "AveragePool", "GlobalAveragePool", "Reshape"):
                # the scale passes through unchanged (a ReLU's input is calibrated on its
                # positive side, see quantize.relu_only)
                x = ins[0]
                self.scales[y] = self.scales[x]
                self.layout[y] = (1, 1)
                self.act(y)
                if op == "Relu":
                    self.emit("relu_fwd", (x,), (y,), n.name, {"n": self.tensors[y].size},
                              kind="fwd", op="Relu")
                    if self.mask_relu(n):
                        size = self.tensors[y].size
                        self.masks[y] = self.add(y + "__mask", ((size + 7) // 8,), "u8")
                        self.emit("relu_mask_pack", (y,), (self.masks[y],), n.name, {"n": size})
                elif op == "Reshape":
                    self.emit("copy", (x,), (y,), n.name, {"n": self.tensors[y].size},
                              kind="fwd", op="Reshape")
                elif op == "GlobalAveragePool":
                    c, h, w = spatial(self.shape(n.inputs[0]))
                    self.emit("global_avgpool_fwd", (x,), (y,), n.name, {"c": c, "hw": h * w})
                else:
                    pp = pool_params(n, self.shape(n.inputs[0]), self.shape(y))
                    self.emit("maxpool2d_fwd" if op == "MaxPool" else "avgpool2d_fwd", (x,), (y,),
                              n.name, {"pool": pp})
            elif op in ("Sigmoid", "Tanh"):
                self.lut_act(n, ins[0], y)
            elif op == "Add":
                a, b = ins[0], ins[1]
                for t in (a, b):
                    if t not in self.scales or self.p.tensors.get(t, None) is not None and \
                            self.p.tensors[t].role in (TensorRole.PARAM, TensorRole.CONST):
                        raise ExportError(f"node {n.name!r} (Add): fixed-point Add joins two "
                                          "activations; adding a parameter or constant is not "
                                          "supported")
                self.set_scale(y, self.act_scale_of(y))
                self.act(y)
                dims, sa, sb = bcast4(n.name, self.shape(n.inputs[0]), self.shape(n.inputs[1]),
                                      self.shape(y))
                ap = fx.tflite_add_params(self.a_scale(a), self.a_scale(b), self.a_scale(y), bits)
                self.emit("add_fwd", (a, b), (y,), n.name,
                          {"dims": dims, "sa": sa, "sb": sb, "add": ap,
                           "act_min": 0 if relu_only(g, y) else None,
                           "sat": self.site("output " + y)})
            self.spans[n.name] = (start, len(self.calls))
        return list(self.calls)

    def lut_act(self, node, x, y):
        """Sigmoid / Tanh: a table of the input scale; the output scale is fixed by the
        function (2^-(bits-1), numerics/qact.py). With --few-bit-backward K the forward also
        writes K-bit interval codes, which the backward reads instead of y."""
        fn, bits = node.op.lower(), self.bits
        tab = qact.build_act_table(fn, self.a_scale(x), bits)
        self.tables[node.name] = tab
        self.set_scale(y, tab.y_scale)
        self.act(y)
        size = self.tensors[y].size
        args = {"fn": fn, "n": size, "table": tab}
        k = self.q.fewbit_codes
        if k and self.only_own_vjp_reads(node):
            codes = qact.build_act_codes(fn, self.a_scale(x), bits, k)
            c = self.add(y + "__codes", (qact.code_bytes(size, k),), "u8")
            self.codes[y] = (c, codes)
            self.emit("act_code_fwd", (x,), (y, c), node.name, {**args, "codes": codes},
                      kind="fwd", op=node.op)
        else:
            self.emit("act_fwd", (x,), (y,), node.name, args, kind="fwd", op=node.op)

    # ---- backward ----------------------------------------------------------------------------
    def to_grad(self, node, acc, gx, factor, e_terms):
        """Accumulator (scale factor * 2^sum(e_terms)) -> pure power-of-two gradient gx."""
        bits = self.bits
        src, terms = acc, tuple(e_terms)
        if bits == 16:
            acc32 = self.add(acc + "__32", self.tensors[acc].shape, "i32")
            ev = self.evar(acc32)
            self.emit("narrow", (acc,), (acc32,), node, {"n": self.tensors[acc].size},
                      exp=(ev, terms, 0, True))
            src, terms = acc32, (ev,)
        const = 0
        if factor != 1.0:
            mult, ex = _mantissa(factor)
            self.emit("rescale", (src,), (src,), node,
                      {"n": self.tensors[src].size, "mult": mult, "sat": self.site("grad " + gx)})
            const = ex
        self.emit("grad_quant", (src,), (gx,), node, {"n": self.tensors[gx].size},
                  exp=(self.evar(gx), terms, const, True))

    def grad_target(self, gx, accumulate, node, bits):
        """Where a contribution to gradient gx goes: gx itself, or a part joined afterwards."""
        self.add(gx, self.p.tensors[gx].shape, _sdt(bits), TensorRole.GRADIENT)
        if not accumulate:
            return gx, None
        self.part += 1
        part = self.add(f"{gx}__part{self.part}", self.p.tensors[gx].shape, _sdt(bits),
                        TensorRole.GRADIENT)
        return part, (lambda: self.emit(
            "grad_join", (gx, part), (gx,), node,
            {"n": self.tensors[gx].size, "sat": self.site("grad " + gx), "bits": bits},
            exp=(self.evar(gx), (self.evar(gx), self.evar(part)), 0, False)))

    def convert_grad(self, src, dst, node, from_bits, to_bits):
        """The gradient of a width-converted copy, back at the width of its source tensor:
        8 -> 16 exact (x256, exponent - 8), 16 -> 8 by the power of two that fits the max."""
        n = self.tensors[dst].size
        if to_bits == 16:
            self.emit("grad_widen", (src,), (dst,), node, {"n": n, "bits": to_bits},
                      exp=(self.evar(dst), (self.evar(src),), -8, False))
        else:
            self.emit("grad_narrow", (src,), (dst,), node, {"n": n, "bits": to_bits},
                      exp=(self.evar(dst), (self.evar(src),), 0, True))

    def update(self, node, pname, acc, e_terms, x_in):
        """SGD on parameter pname from its gradient accumulator (scale s_x or 1, times 2^e)."""
        bits = self.bits
        t = self.tensors[pname]
        src, terms = acc, tuple(e_terms)
        if bits == 16:
            acc32 = self.add(acc + "__32", self.tensors[acc].shape, "i32")
            ev = self.evar(acc32)
            self.emit("narrow", (acc,), (acc32,), node, {"n": t.size}, exp=(ev, terms, 0, True))
            src, terms = acc32, (ev,)
        mults, shifts = self.update_multipliers(pname, x_in)
        ch, inner = self.layout[pname]
        wbits = {"i8": 8, "i16": 16, "i32": 32, "i64": 64}[t.dtype]
        args = {"wbits": wbits, "channels": ch, "inner": inner, "mult": tuple(mults),
                "shift": tuple(shifts), "e": terms, "sat": self.site("update " + pname),
                **self.momentum_args(pname)}
        st = (args["state"],) if "beta_mult" in args else ()
        self.emit("sgd_pc", (pname, src) + st, (pname,) + st, node, args)

    def update_multipliers(self, pname, x_in):
        """QAS: integer step = lr * G / s_param, G = acc * s_acc * 2^e with s_acc = s_x for
        weights (dL/dW = gy x^T) and 1 for biases (dL/db = gy): per channel (mult, shift)."""
        s_acc = self.a_scale(x_in) if self.tensors[pname].param_kind == "weight" else 1.0
        lr = float(self.cfg.lr)
        mults, shifts = zip(*[_multiplier(lr * s_acc / float(s)) for s in self.scales[pname]])
        return tuple(mults), tuple(shifts)

    def weight_update(self, n, s, pname, gy, x_in, ey):
        """Weight gradient and SGD one output channel (row) at a time: the accumulator is one
        row (inner values), not the whole tensor — same integers, same update order, a fraction
        of the memory. The row's exponent adds the row's int64 -> int32 narrowing (int16)."""
        bits = self.bits
        ch, inner = self.layout[pname]
        acc = self.add(pname + GRAD + "__row", (inner,), _adt(bits))
        outs = (pname, acc)
        if bits == 16:
            outs += (self.add(pname + GRAD + "__row32", (inner,), "i32"),)
        mults, shifts = self.update_multipliers(pname, x_in)
        t = self.tensors[pname]
        args = {"wbits": {"i8": 8, "i16": 16}[t.dtype], "channels": ch, "inner": inner,
                "mult": mults, "shift": shifts, "e": (ey,), "sat": self.site("update " + pname),
                **self.momentum_args(pname)}
        if "beta_mult" in args:
            outs += (args["state"],)
        if s.op == "Gemm":
            nn, k = self.shape(s.fwd_inputs[0])
            if nn != 1:
                raise ExportError(f"internal: Gemm {n.name!r} with {nn} rows in a batch-1 program")
            args.update(op="gemm", k=k, m=ch)
        else:
            cp = conv_params(n, self.shape(s.fwd_inputs[0]), self.shape(s.fwd_inputs[1]),
                             self.shape(n.outputs[0]))
            cin_g, cout_g = cp["in_c"] // cp["groups"], cp["out_c"] // cp["groups"]
            row = dict(cp, in_c=cin_g, out_c=1, groups=1)
            args.update(op="conv", conv_row=row, cout_g=cout_g,
                        x_stride=cin_g * cp["in_h"] * cp["in_w"], gy_stride=cp["out_h"] * cp["out_w"])
        ins = (gy, x_in, pname) + ((args["state"],) if "beta_mult" in args else ())
        self.emit("bwd_w_update", ins, outs, n.name, args)

    def momentum_args(self, pname) -> dict:
        """Momentum: an int32 velocity per parameter (opt_state), in weight LSBs with 16
        fractional bits, beta = beta_mult / 2^31."""
        if self.cfg.optimizer != "momentum":
            return {}
        st = self.add(pname + "__mom", self.tensors[pname].shape, "i32", TensorRole.OPT_STATE)
        return {"state": st, "beta_mult": min(int(round(self.cfg.momentum * (1 << 31))),
                                              (1 << 31) - 1)}

    def zo_spec(self) -> dict:
        """Fixed-point SPSA (module doc of zeroth_order.py for the float form): per tensor t an
        integer step eps_t = max(1, round(zo_eps / s_t)) LSBs, so the real perturbation is about
        zo_eps everywhere; weights live in a guard band |w| <= qmax - eps_t * max|z| so
        w + eps z never saturates and perturb / restore are exact integer adds. Update (QAS,
        the float-equivalent step): w_t -= lr * d / (2 eps_t s_t^2 n) * z with d = L+ - L- in
        Q24, or lr * sign(d) / (s_t n) * z for sign-SPSA, as c_t = tt_zo_coef(d) in 2^-16
        LSB units and a stochastically rounded tt_zo_update, applied for k = 0..n-1 after all
        n pairs ran (as in fp32). --sam-rho: the pairs run at w + a, a = sum_k s_k sam_t[m] z_k
        of the previous step (s_k = sign(d_k), m of them nonzero), added before and subtracted
        after them — exact integer adds inside the guard band."""
        cfg, p = self.cfg, self.p
        # integer z: Rademacher +-1, or Irwin-Hall of 4 bytes (sd 147.8 = sqrt(21845), max 510);
        # eps is in LSBs per unit of z's sd, the estimate divides by the variance
        zmax, zsd = (1, 1.0) if cfg.zo_dist == "rademacher" else (510, math.sqrt(21845.0))
        n = int(cfg.perturbations)
        sign = cfg.zo_estimator == "sign"
        # sharpness-aware point (zeroth_order.py): ascent c = rho / sqrt(m D) per unit of z
        # along the m nonzero signs of the previous step, one integer step per (tensor, m)
        rho = float(getattr(cfg, "zo_sam_rho", 0.0) or 0.0)
        total = sum(self.tensors[q].size for q in p.fg_params)
        params = []
        for name in p.fg_params:
            t = self.tensors[name]
            wb = {"i8": 8, "i16": 16, "i32": 32, "i64": 64}[t.dtype]
            s = float(self.scales[name][0])
            if not np.all(self.scales[name] == s):
                raise ExportError(f"internal: zo parameter {name!r} has per-channel scales")
            eps = int(round(cfg.zo_eps / (s * zsd)))
            if eps < 1:
                self.warnings.append(
                    f"zo: eps {cfg.zo_eps:g} is {cfg.zo_eps / (s * zsd):.2f} LSB of {name!r} "
                    f"({t.dtype}, scale {s:.3g}{', per unit of z' if zsd > 1 else ''}); it would "
                    f"round to zero, 1 LSB is used (a real perturbation of {s * zsd:.3g})")
                eps = 1
            qmax = (1 << (wb - 1)) - 1
            # the kernels take |eps| <= 65535 (8/16-bit), 2^24 (int32), 2^30 (int64) and the
            # C passes -2 eps; wide biases also keep their guard band within a quarter range
            cap = {8: 32767, 16: 32767, 32: 1 << 23, 64: 1 << 29}[wb]
            if wb > 16:
                cap = min(cap, (qmax // 4) // zmax)
            if eps > cap:
                self.warnings.append(
                    f"zo: eps {cfg.zo_eps:g} is {eps} LSB of {name!r} ({t.dtype}); capped at "
                    f"{cap} (a real perturbation of {cap * s * zsd:.3g})")
                eps = cap
            sam = ()
            if rho:
                sam = tuple(min(cap, int(round(rho / (math.sqrt(m * total) * s * zsd))))
                            for m in range(1, n + 1))
                if sam[-1] < 1:
                    self.warnings.append(
                        f"zo: the sharpness-aware ascent rho {rho:g} is "
                        f"{rho / (math.sqrt(n * total) * s * zsd):.2f} LSB of {name!r} per "
                        f"unit of z with {n} signs; it rounds to 0 there (raise --sam-rho)")
            # the ascent is in place while the pairs run: the band covers both
            guard = (eps + n * (sam[0] if sam else 0)) * zmax
            if wb <= 16 and guard > qmax // 4:
                raise ConfigError(f"zo: the perturbation of {name!r} ({guard} LSB with eps "
                                  f"{eps}{f' and ascent {sam[0]}' if sam else ''}) takes more "
                                  f"than a quarter of its {t.dtype} range; lower --eps"
                                  f"{' / --sam-rho' if sam else ''} or use rademacher "
                                  "perturbations")
            lo, hi = -qmax + guard, qmax - guard
            self.initial[name] = np.clip(self.initial[name], lo, hi)
            # eps schedule: one (eps, mult, shift) row per halving h, eps_h = max(1, eps >> h);
            # the coefficient uses eps_h itself, so a floored eps stays exact
            halvings = int(cfg.zo_eps_halvings) if cfg.zo_eps_halve_every else 0
            rows = []
            for h in range(halvings + 1):
                eh = max(1, eps >> h)
                real = (cfg.lr / (s * n * zsd)) if sign else \
                    (cfg.lr / (2.0 * eh * s * s * n * zsd * zsd))
                rows.append((eh,) + _multiplier(real * 2.0 ** -24))
            eps_t, mult, shift = zip(*rows)
            params.append({"name": name, "wbits": wb, "size": t.size, "eps": tuple(eps_t),
                           "lo": lo, "hi": hi, "mult": tuple(mult), "shift": tuple(shift),
                           "sam": sam, "sat": self.site("zo " + name)})
        if self.q.bits == 8 and cfg.zo_eps < 5e-3:
            self.warnings.append(
                f"zo: eps {cfg.zo_eps:g} with int8 activations: the loss difference L+ - L- "
                "is mostly activation rounding noise at this size; zo_eps around 1e-2 trains "
                "(digits MLP last layer: 74 % -> 85 % at 1e-2, no gain at 1e-3)")
        if any(q["wbits"] == 8 for q in params):
            self.warnings.append(
                "zo with 8-bit weights (8w8a): most updates are below one LSB and happen only "
                "through stochastic rounding; QZO-FF found 8-bit weights too coarse for zo to "
                "converge. The default 16w8a keeps int8 activations with int16 weights.")
        logits = self.alias.get(p.logits, p.logits)
        m, sh = fx.quantize_multiplier(self.a_scale(logits))
        return {"n": n, "dist": 0 if cfg.zo_dist == "rademacher" else 1, "sign": sign,
                "sam": bool(rho),
                "halve_every": int(cfg.zo_eps_halve_every),
                "halvings": int(cfg.zo_eps_halvings) if cfg.zo_eps_halve_every else 0,
                "frac_bits": ZO_FRAC_BITS, "params": params,
                "loss": {"rows": self.shape(p.logits)[0], "cols": self.shape(p.logits)[1],
                         "x_mult": m, "x_shift": sh, "logits": logits},
                "sat": self.site("zo loss difference")}

    # ---- forward mode (jvp) -------------------------------------------------------------------
    def jvp_spec(self, fwd) -> dict:
        """Fixed-point forward mode: per direction k one pass that interleaves each node's
        forward calls with its tangent calls (so a value and its tangent are live together:
        the arena stays near twice the inference arena). Tangents are integers with a runtime
        power-of-two exponent, like gradients. Parameter directions v are the zo integers z
        (Rademacher, or Irwin-Hall / sd 148 with unit variance) of stream (seed, step, k), each
        tensor's generator advanced past the earlier tensors' draws, so the update regenerates
        them exactly as zo does. A Gemm / Conv tangent joins three terms of different scales,
        t_x W (2^e_tx s_W), x V (s_x / sd z) and v_b (1 / sd z), in one fused kernel
        (tt_gemm_jvp_* / tt_conv2d_jvp_*) that recomputes the terms instead of storing them.
        The loss gives dL.v = sum g30 t (Q30 softmax gradient times the logits' tangent); the update is
        zo's with d in Q24: w -= lr d / (s_t n sd z) z, stochastically rounded."""
        cfg, p = self.cfg, self.p
        if self.layer_bits:
            raise ConfigError("fixed-point jvp runs one width per model; drop --layer-precision "
                              "or use --algo bp / zo")
        rad = cfg.zo_dist == "rademacher"
        zsd = 1.0 if rad else math.sqrt(21845.0)
        dist = 0 if rad else 1
        n = int(cfg.perturbations)
        skip = draw_offsets(p.fg_params, self.tensors, dist)   # the fp32 jvp's offsets
        tan: dict[str, str] = {}
        calls = list(fwd[:1])
        for node in self.g.nodes:
            a, b = self.spans[node.name]
            calls += fwd[a:b]
            self.calls = []
            self.bits = self.node_bits[node.name]
            self.tangent(node, tan, skip, dist, zsd)
            calls += self.calls
        logits = self.alias.get(p.logits, p.logits)
        t = tan.get(logits)
        if t is None:
            raise ExportError("internal: the logits carry no tangent in a jvp program")
        self.calls = []
        self.bits = self.tbits[logits]
        g30 = self.add("loss__q30", self.shape(p.logits), "i32")
        m, sh = fx.quantize_multiplier(self.a_scale(logits))
        self.emit("softmax_xent", (logits, p.label), (g30,), "loss",
                  {"rows": self.shape(p.logits)[0], "cols": self.shape(p.logits)[1],
                   "x_mult": m, "x_shift": sh})
        self.emit("dot_q30", (g30, t), (), "loss", {"n": self.tensors[t].size})
        calls += self.calls
        params = []
        for name in p.fg_params:
            tt = self.tensors[name]
            wb = {"i8": 8, "i16": 16, "i32": 32, "i64": 64}[tt.dtype]
            sc = float(self.scales[name][0])
            if not np.all(self.scales[name] == sc):
                raise ExportError(f"internal: jvp parameter {name!r} has per-channel scales")
            mult, shift = _multiplier(cfg.lr / (sc * n * zsd) * 2.0 ** -24)
            qmax = (1 << (wb - 1)) - 1
            params.append({"name": name, "wbits": wb, "size": tt.size, "mult": (mult,),
                           "shift": (shift,), "lo": -qmax, "hi": qmax,
                           "sat": self.site("jvp " + name)})
        if any(q["wbits"] == 8 for q in params):
            self.warnings.append(
                "jvp with 8-bit weights: most updates are below one LSB and land only through "
                "stochastic rounding (digits MLP, all layers: 73 % -> 79 %); the default 16w8a "
                "keeps int8 activations with int16 trained weights")
        self.calls = []
        return {"n": n, "dist": dist, "sign": cfg.zo_estimator == "sign",
                "frac_bits": ZO_FRAC_BITS, "params": params, "pass": tuple(calls),
                "tangent": t, "skip": skip, "sat": self.site("jvp directional derivative")}

    def tangent(self, node, tan, skip, dist, zsd):
        """The tangent calls of one node (nothing when no input carries a tangent and it has
        no trainable parameter)."""
        ins, y, op, bits = self.node_ins[node.name], node.outputs[0], node.op, self.bits
        size = self.tensors[y].size

        def out():
            ty = self.add(y + "__tan", self.shape(y), _sdt(bits))
            tan[y] = ty
            return ty

        if op in ("Gemm", "Conv"):
            x, w = ins[0], ins[1]
            bias = ins[2] if len(ins) > 2 and ins[2] else None
            tx = tan.get(x)
            vw, vb = w in self.fg_params, bias is not None and bias in self.fg_params
            if not (tx or vw or vb):
                return
            if op == "Gemm":
                nn, k = self.shape(node.inputs[0])
                geo = {"n": nn, "k": k, "m": self.shape(node.inputs[1])[0]}
            else:
                geo = {"conv": conv_params(node, self.shape(node.inputs[0]),
                                           self.shape(node.inputs[1]), self.shape(y))}
            scales = {}
            if tx:
                sw = self.scales[w]
                if not np.all(sw == sw[0]):
                    raise ExportError(f"internal: {w!r} has per-channel scales but its input "
                                      "carries a tangent")
                mult, ex = _mantissa(float(sw[0]))         # t_x W: 2^e_tx s_W
                scales.update(a_mult=mult, a_exp=(ex, (self.evar(tx),)))
            if vw:
                mult, ex = _mantissa(self.a_scale(x) / zsd)  # x V: s_x / sd z
                scales.update(b_mult=mult, b_exp=(ex, ()))
            if vb:
                mult, ex = _mantissa(1.0 / zsd)              # v_b: 1 / sd z
                scales.update(c_mult=mult, c_exp=(ex, ()))
            ty = out()
            outs = (ty,)
            if op == "Conv" and vw:       # one output channel's weight direction (scratch)
                cp = geo["conv"]
                row = (cp["in_c"] // cp["groups"]) * cp["k_h"] * cp["k_w"]
                outs += (self.add(y + "__zrow", (row,), "i16"),)
            self.emit(op.lower().replace("conv", "conv2d") + "_jvp",
                      tuple(v for v in (x if vw else None, tx, w if tx else None) if v), outs,
                      node.name,
                      {**geo, "has": (bool(tx), vw, vb), "scales": scales, "dist": dist,
                       "wbits": self.wbits(node),
                       "w": (w, skip[w]) if vw else None, "b": (bias, skip[bias]) if vb else None},
                      exp=(self.evar(ty), (), 0, False))
            return
        if op == "Add":
            ta, tb = tan.get(ins[0]), tan.get(ins[1])
            if not (ta or tb):
                return
            if tuple(self.shape(node.inputs[0])) != tuple(self.shape(node.inputs[1])):
                raise ExportError(f"node {node.name!r} (Add): fixed-point jvp joins tangents of "
                                  "equal shapes only (no broadcasting)")
            ty = out()
            first = ta or tb
            self.emit("copy", (first,), (ty,), node.name, {"n": size},
                      exp=(self.evar(ty), (self.evar(first),), 0, False))
            if ta and tb:
                self.emit("grad_join", (ty, tb), (ty,), node.name,
                          {"n": size, "sat": self.site("tangent " + y)},
                          exp=(self.evar(ty), (self.evar(ty), self.evar(tb)), 0, False))
            return
        tx = tan.get(ins[0])
        if not tx:
            return
        ty = out()
        same = (self.evar(ty), (self.evar(tx),), 0, False)
        if op == "Relu":
            # t_y = t_x (y > 0): elementwise, so it may overwrite t_x (the planner decides)
            self.emit("relu_bwd_x", (tx, y), (ty,), node.name, {"n": size}, exp=same,
                      kind="jvp", op="Relu")
        elif op in ("Sigmoid", "Tanh"):
            fn = op.lower()
            acc = self.add(y + "__tacc", self.shape(y), _adt(bits))
            self.emit("act_bwd_x", (tx, y), (acc,), node.name, {"fn": fn, "n": size})
            self.emit("grad_quant", (acc,), (ty,), node.name, {"n": size},
                      exp=(self.evar(ty), (self.evar(tx),), qact.bwd_exponent(fn, bits), True))
        elif op == "MaxPool":
            pp = pool_params(node, self.shape(node.inputs[0]), self.shape(y))
            self.emit("maxpool2d_jvp", (ins[0], tx), (ty,), node.name, {"pool": pp}, exp=same)
        elif op == "AveragePool":
            pp = pool_params(node, self.shape(node.inputs[0]), self.shape(y))
            self.emit("avgpool2d_fwd", (tx,), (ty,), node.name, {"pool": pp}, exp=same)
        elif op == "GlobalAveragePool":
            c, h, w = spatial(self.shape(node.inputs[0]))
            self.emit("global_avgpool_fwd", (tx,), (ty,), node.name, {"c": c, "hw": h * w},
                      exp=same)
        elif op == "Reshape":
            self.emit("copy", (tx,), (ty,), node.name, {"n": size}, exp=same, kind="fwd",
                      op="Reshape")
        else:
            raise ExportError(f"internal: no fixed-point tangent rule for {op}")

    def backward(self):
        p = self.p
        self.part = 0
        steps = p.train_steps[len(p.forward_steps):]
        loss = steps[0]
        if len(loss.outputs) < 2:
            return
        logits = self.alias.get(p.logits, p.logits)
        self.bits = bits = self.tbits[logits]
        g30 = self.add("loss__q30", self.shape(p.logits), "i32")
        m, sh = fx.quantize_multiplier(self.a_scale(logits))
        self.emit("softmax_xent", (logits, p.label), (g30,), "loss",
                  {"rows": self.shape(p.logits)[0], "cols": self.shape(p.logits)[1],
                   "x_mult": m, "x_shift": sh})
        gl = loss.outputs[1]
        self.add(gl, self.shape(p.logits), _sdt(bits), TensorRole.GRADIENT)
        self.emit("grad_quant", (g30,), (gl,), "loss", {"n": self.tensors[gl].size},
                  exp=(self.evar(gl), (), -30, True))
        node_of = {n.name: n for n in self.g.nodes}
        for s in steps[1:]:
            n = node_of[s.node]
            self.bits = bits = self.node_bits[n.name]
            gy = s.inputs[0]
            saved = dict(zip(s.needs, s.inputs[1:]))
            fx_in = self.node_ins[n.name]
            target = s.fwd_inputs[s.wrt]
            ey = self.evar(gy)
            acc_dt = _adt(bits)
            if target in self.trainable:           # parameter gradient -> update
                pname = target
                x_in = fx_in[0]
                if s.wrt == 1:
                    self.weight_update(n, s, pname, gy, x_in, ey)
                    continue
                acc = self.add(pname + GRAD + "__acc", self.tensors[pname].shape, acc_dt)
                if s.op == "Gemm":
                    nn, k = self.shape(s.fwd_inputs[0])
                    mm = self.shape(s.fwd_inputs[1])[0]
                    if s.wrt == 1:
                        self.emit("gemm_bwd_w", (gy, x_in), (acc,), n.name, {"n": nn, "k": k, "m": mm})
                    else:
                        self.emit("bias_bwd", (gy,), (acc,), n.name, {"outer": nn, "c": mm, "inner": 1})
                else:
                    cp = conv_params(n, self.shape(s.fwd_inputs[0]), self.shape(s.fwd_inputs[1]),
                                     self.shape(n.outputs[0]))
                    if s.wrt == 1:
                        self.emit("conv2d_bwd_w", (gy, x_in), (acc,), n.name, {"conv": cp})
                    else:
                        self.emit("bias_bwd", (gy,), (acc,), n.name,
                                  {"outer": 1, "c": cp["out_c"], "inner": cp["out_h"] * cp["out_w"]})
                self.update(n.name, pname, acc, (ey,), x_in)
                continue
            gx = s.outputs[0]
            primal, used = self.alias.get(target, target), fx_in[s.wrt]
            if used != primal:     # the layer read a width-converted copy (per-layer bits)
                dst, join = self.add(used + GRAD, self.shape(gx), _sdt(bits),
                                     TensorRole.GRADIENT), None
            else:
                dst, join = self.grad_target(gx, s.accumulate, n.name, bits)
            size = self.tensors[dst].size
            if s.op in ("Gemm", "Conv"):
                acc = self.add(gx + "__acc", self.shape(gx), acc_dt)
                w = fx_in[1]
                if s.op == "Gemm":
                    nn, k = self.shape(s.fwd_inputs[0])
                    self.emit("gemm_bwd_x", (gy, w), (acc,), n.name,
                              {"n": nn, "k": k, "m": self.shape(s.fwd_inputs[1])[0]})
                else:
                    cp = conv_params(n, self.shape(s.fwd_inputs[0]), self.shape(s.fwd_inputs[1]),
                                     self.shape(n.outputs[0]))
                    self.emit("conv2d_bwd_x", (gy, w), (acc,), n.name, {"conv": cp})
                sw = self.scales[w]
                if not np.all(sw == sw[0]):
                    raise ExportError(f"internal: {w!r} has per-channel scales but its layer "
                                      "passes gradients back")
                self.to_grad(n.name, acc, dst, float(sw[0]), (ey,))
            elif s.op == "Relu":
                y = saved[-1]
                if y in self.masks:
                    self.emit("relu_bwd_x_mask", (gy, self.masks[y]), (dst,), n.name,
                              {"n": size}, exp=(self.evar(dst), (ey,), 0, False), kind="vjp",
                              op="Relu")
                else:
                    self.emit("relu_bwd_x", (gy, self.alias.get(y, y)), (dst,), n.name,
                              {"n": size}, exp=(self.evar(dst), (ey,), 0, False), kind="vjp",
                              op="Relu")
            elif s.op in ("Sigmoid", "Tanh"):
                y = self.alias.get(saved[-1], saved[-1])
                acc = self.add(gx + "__acc", self.shape(gx), acc_dt)
                fn = s.op.lower()
                if y in self.codes:
                    c, codes = self.codes[y]
                    self.emit("act_bwd_x_code", (gy, c), (acc,), n.name,
                              {"fn": fn, "n": size, "codes": codes})
                else:
                    self.emit("act_bwd_x", (gy, y), (acc,), n.name, {"fn": fn, "n": size})
                self.emit("grad_quant", (acc,), (dst,), n.name, {"n": size},
                          exp=(self.evar(dst), (ey,), qact.bwd_exponent(fn, bits), True))
            elif s.op == "MaxPool":
                pp = pool_params(n, self.shape(s.fwd_inputs[0]), self.shape(n.outputs[0]))
                self.emit("maxpool2d_bwd_x", (gy, self.alias.get(saved[0], saved[0])), (dst,),
                          n.name, {"pool": pp, "sat": self.site("grad " + gx)},
                          exp=(self.evar(dst), (ey,), 0, False))
            elif s.op in ("AveragePool", "GlobalAveragePool"):
                acc = self.add(gx + "__acc", self.shape(gx), acc_dt)
                if s.op == "AveragePool":
                    pp = pool_params(n, self.shape(s.fwd_inputs[0]), self.shape(n.outputs[0]))
                    self.emit("avgpool2d_bwd_x", (gy,), (acc,), n.name,
                              {"pool": pp, "frac_bits": AVG_FRAC_BITS})
                else:
                    c, h, w = spatial(self.shape(s.fwd_inputs[0]))
                    self.emit("global_avgpool_bwd_x", (gy,), (acc,), n.name,
                              {"c": c, "hw": h * w, "frac_bits": AVG_FRAC_BITS})
                self.emit("grad_quant", (acc,), (dst,), n.name, {"n": size},
                          exp=(self.evar(dst), (ey,), -AVG_FRAC_BITS, True))
            elif s.op == "Reshape":
                self.emit("copy", (gy,), (dst,), n.name, {"n": size},
                          exp=(self.evar(dst), (ey,), 0, False), kind="vjp", op="Reshape",
                          accumulate=join is not None)
            elif s.op == "Add":
                if tuple(self.shape(gx)) == tuple(self.shape(gy)):
                    self.emit("copy", (gy,), (dst,), n.name, {"n": size},
                              exp=(self.evar(dst), (ey,), 0, False), kind="vjp", op="Add")
                else:
                    acc = self.add(gx + "__acc", self.shape(gx), acc_dt)
                    dims, sa, sb = bcast4(n.name, self.shape(s.fwd_inputs[0]),
                                          self.shape(s.fwd_inputs[1]), self.shape(gy))
                    self.emit("add_bwd", (gy,), (acc,), n.name,
                              {"dims": dims, "sa": sa, "sb": sb, "which": s.wrt, "len": size})
                    self.emit("grad_quant", (acc,), (dst,), n.name, {"n": size},
                              exp=(self.evar(dst), (ey,), 0, True))
            else:
                raise ExportError(f"internal: no fixed-point VJP for {s.op}")
            if join is not None:
                join()
            if used != primal:
                tb = self.tbits[primal]
                final, join = self.grad_target(gx, s.accumulate, n.name, tb)
                self.convert_grad(dst, final, n.name, bits, tb)
                if join is not None:
                    join()

    def run(self) -> FixedProgram:
        fwd = self.forward()
        self.calls = []
        zo = jvp = None
        if self.p.trainable and self.zo:
            zo = self.zo_spec()
        if self.p.trainable and self.jvp:
            jvp = self.jvp_spec(fwd)
        if self.p.trainable and not self.jvp and (not self.zo or self.cfg.hybrid_bp_layers):
            self.backward()       # hybrid: the backprop layers, from the unperturbed pass
        train = list(self.calls)
        for name in self.p.graph.params:      # parameters no call reads (still exported)
            if name not in self.tensors:
                raise ExportError(f"internal: parameter {name!r} was not lowered")
        trainable = tuple(t for t in self.p.trainable)
        self.add(self.p.input, self.shape(self.p.input), "f32", TensorRole.INPUT)
        self.add(self.p.label, self.p.tensors[self.p.label].shape, "i32", TensorRole.LABEL)
        return FixedProgram(
            program=self.p, qcfg=self.q, tensors=self.tensors, scales=self.scales,
            layout=self.layout, forward=tuple(fwd), train=tuple(train),
            sat_sites=tuple(self.sites), exps=tuple(self.exps), qinput=self.alias[self.p.input],
            logits=self.alias.get(self.p.logits, self.p.logits), trainable=trainable,
            input=self.p.input, label=self.p.label, seed=int(self.cfg.seed), lr=float(self.cfg.lr),
            initial=self.initial, zo=zo, jvp=jvp, warnings=tuple(self.warnings))
