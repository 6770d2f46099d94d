"""Import of already-quantized ONNX models (QDQ and QOperator formats).

``import_quantized_onnx(model, batch=1) -> (Graph, scales)`` turns a quantized model back into
its float model and keeps the quantization as known scales for the fixed-point export
(``passes.lower_fixed(..., scales=)``):

- QDQ (QuantizeLinear / DequantizeLinear around float ops, onnxruntime's QuantFormat.QDQ): the
  Q/DQ nodes are removed, each DequantizeLinear of an initializer becomes a float initializer
  holding the dequantized value ``q * s`` (float32, as onnxruntime computes it), so requantizing
  with the same scale gives back exactly the stored integers. Int32 biases are dequantized the
  same way (their scale s_x * s_w is derived again by the lowering).
- QOperator (QLinearConv, QLinearMatMul, com.microsoft QGemm / QLinearAdd /
  QLinearGlobalAveragePool / QLinearAveragePool, QuantizeLinear at the inputs,
  DequantizeLinear at the outputs): each op becomes its float op (Conv, MatMul, Gemm, Add,
  GlobalAveragePool, AveragePool) on dequantized weights.

``scales`` maps each float activation tensor that a Q/DQ pair sits on (or a QLinear op reads
or writes) to its float scale, and each weight parameter to its scale (a float per tensor, a
float32 array per output channel). Activation scales are also copied backwards through ops
whose output scale is their input's in tinytrain (Relu, MaxPool, pooling, Reshape) to an input
that has none — e.g. the graph input of a model that quantizes after a Flatten.

The float model then goes through the normal importer (``import_onnx``), so folding, BN folding,
the MatMul+Add fusion and validation happen exactly once. A weight whose value the importer
changes (a BatchNormalization folded into it, a Gemm alpha) loses its imported scale and is
requantized from its new value.

Refused, with the node named: non-zero zero points (asymmetric quantization, e.g. uint8
activations with zero point 128), uint8 / int16 / int4 tensors, weights holding -128, per-axis
scales on an axis that is not the layer's output channel, per-axis activation scales, blocked
quantization, and quantized ops tinytrain has no float twin for.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import ModelImportError, TinytrainError, UnsupportedOpError
from ..ir import Graph, TensorRole
from .fold import DEFAULT_DOMAINS, _first_lines, attr, node_label, toposort
from .onnx_import import _load, import_onnx

MS_DOMAIN = "com.microsoft"

# QLinear ops with a float twin here (op type -> domains it is accepted from).
QLINEAR_OPS = {"QLinearConv": DEFAULT_DOMAINS, "QLinearMatMul": DEFAULT_DOMAINS,
               "QGemm": (MS_DOMAIN,), "QLinearAdd": (MS_DOMAIN,),
               "QLinearGlobalAveragePool": (MS_DOMAIN,), "QLinearAveragePool": (MS_DOMAIN,)}

# Other quantized ops that mark a model as quantized (refused with a clear message).
OTHER_QUANT_OPS = ("ConvInteger", "MatMulInteger", "DynamicQuantizeLinear", "QAttention",
                   "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "DynamicQuantizeLSTM",
                   "QOrderedMatMul", "MatMulNBits", "QuickGelu")

SUPPORTED_QUANT_TEXT = (
    "tinytrain imports symmetric int8 quantization (zero point 0; int8 activations with one "
    "scale per tensor, int8 weights in [-127, 127] with one scale per tensor or per output "
    "channel, int32 biases) in the QDQ format (QuantizeLinear / DequantizeLinear) or the "
    "QOperator format (QLinearConv, QLinearMatMul and com.microsoft QGemm, QLinearAdd, "
    "QLinearGlobalAveragePool, QLinearAveragePool)")

REQUANTIZE_HINT = (
    "tinytrain's fixed point is symmetric (real = scale * q, zero point 0): re-quantize with "
    "symmetric int8 activations and weights, e.g. onnxruntime.quantization.quantize_static(..., "
    "activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, extra_options="
    "{'ActivationSymmetric': True, 'WeightSymmetric': True}), or import the float model and "
    "let tinytrain calibrate")

# Ops whose output scale is their input's scale in the fixed-point lowering.
_PASS_THROUGH = ("Relu", "MaxPool", "AveragePool", "GlobalAveragePool", "Reshape")


def _is_quant_node(n: onnx.NodeProto) -> bool:
    return (n.op_type in ("QuantizeLinear", "DequantizeLinear") or n.op_type.startswith("QLinear")
            or n.op_type in QLINEAR_OPS or n.op_type in OTHER_QUANT_OPS)


def is_quantized_onnx(model) -> bool:
    """True if the model (path, bytes or ModelProto) holds a QuantizeLinear, DequantizeLinear,
    QLinear* or other quantized op. Unreadable models give False (import_onnx reports why)."""
    try:
        mp, _ = _load(model)
    except TinytrainError:
        return False
    return any(_is_quant_node(n) for n in mp.graph.node)


def import_quantized_onnx(model, batch: int = 1) -> tuple[Graph, dict]:
    """Import a quantized ONNX model (path, bytes or ModelProto) as its dequantized float IR
    graph plus the known scales {activation tensor: float, weight parameter: float or float32
    array [out channels]} for ``lower_fixed(..., scales=)``. See the module doc."""
    mp, source = _load(model)
    try:
        float_mp, acts, weights = _Dequantizer(mp, source).run()
    except TinytrainError:
        raise
    except Exception as e:  # never let a numpy/onnx traceback reach the user
        raise ModelImportError(
            f"dequantizing {source} failed unexpectedly ({type(e).__name__}: {_first_lines(e)}). "
            "This is a bug in tinytrain; please report it together with the model.") from e
    graph = import_onnx(float_mp, batch=batch)
    return graph, _ir_scales(graph, acts, weights)


def missing_scales(graph: Graph, scales) -> list[str]:
    """Tensors the fixed-point lowering needs a scale for (the input, every Gemm / Conv / Add
    output) that ``scales`` does not hold: these are calibrated."""
    scales = scales or {}
    need = [graph.inputs[0]] + [n.outputs[0] for n in graph.nodes
                                if n.op in ("Gemm", "Conv", "Add")]
    return [t for t in need if t not in scales]


# ==============================================================================================
# ONNX level: quantized model -> float model + scales by ONNX tensor name
# ==============================================================================================
class _Dequantizer:
    def __init__(self, mp: onnx.ModelProto, source: str):
        self.mp, self.source = mp, source
        g = mp.graph
        self.inits: dict[str, np.ndarray] = {}
        for t in g.initializer:
            try:
                self.inits[t.name] = numpy_helper.to_array(t)
            except Exception as e:
                raise ModelImportError(f"initializer {t.name!r} of {source} cannot be read: "
                                       f"{_first_lines(e)}.") from None
        self.names = {t.name for t in g.initializer} | {i.name for i in g.input}
        for n in g.node:
            self.names.update(i for i in n.input if i)
            self.names.update(o for o in n.output if o)
        self.alias: dict[str, str] = {}        # quantized / DQ'd tensor -> its float tensor
        self.qtype: dict[str, np.dtype] = {}   # quantized activation tensor -> integer type
        self.acts: dict[str, tuple] = {}       # float tensor -> (np.float32 scale, node label)
        self.weights: dict[str, tuple] = {}    # float initializer -> (scale, axis, node label)
        self.new_inits: dict[str, np.ndarray] = {}
        self.nodes: list[onnx.NodeProto] = []

    def f(self, t: str) -> str:
        return self.alias.get(t, t)

    def fail(self, node, problem, hint=REQUANTIZE_HINT, cls=ModelImportError):
        raise cls(f"{node_label(node)} {problem}. {hint}.")

    # ---- driver --------------------------------------------------------------------------
    def run(self):
        g = self.mp.graph
        nodes = []
        for n in g.node:          # Constant nodes holding scales / zero points -> initializers
            v = attr(n, "value") if n.op_type == "Constant" and n.domain in DEFAULT_DOMAINS \
                else None
            if isinstance(v, np.ndarray) and len(n.output) == 1:
                self.inits[n.output[0]] = v
            else:
                nodes.append(n)
        avail = set(self.inits) | {i.name for i in g.input}
        nodes = toposort(nodes, avail)
        # the float name of a QLinear op's output: the output of a DequantizeLinear reading it
        self.dq_name: dict[str, str] = {}
        for n in nodes:
            if n.op_type == "DequantizeLinear" and n.input[0] not in self.inits:
                self.dq_name.setdefault(n.input[0], n.output[0])
        for n in nodes:
            self.visit(n)
        self.check_weight_axes()
        return self.build(), self.acts, self.weights

    def visit(self, n):
        op, dom = n.op_type, n.domain
        if op == "QuantizeLinear" and dom in DEFAULT_DOMAINS:
            return self.quantize(n)
        if op == "DequantizeLinear" and dom in DEFAULT_DOMAINS:
            return self.dequantize(n)
        if op in QLINEAR_OPS:
            if dom not in QLINEAR_OPS[op]:
                self.fail(n, f"is from domain {dom!r}; expected "
                          f"{QLINEAR_OPS[op][0] or 'the default ONNX domain'}",
                          SUPPORTED_QUANT_TEXT, UnsupportedOpError)
            return getattr(self, f"op_{op}")(n)
        if _is_quant_node(n) or (dom == MS_DOMAIN and op.startswith("Q")):
            self.fail(n, "is a quantized op tinytrain has no float twin for",
                      SUPPORTED_QUANT_TEXT + "; re-quantize with those op types only (e.g. "
                      "quantize_static(..., op_types_to_quantize=['Conv', 'Gemm', 'MatMul', "
                      "'Add']))", UnsupportedOpError)
        c = onnx.NodeProto()
        c.CopyFrom(n)
        del c.input[:]
        c.input.extend(self.f(i) if i else i for i in n.input)
        self.nodes.append(c)

    # ---- operands ------------------------------------------------------------------------
    def const_in(self, n, k, what) -> np.ndarray:
        name = n.input[k] if k < len(n.input) else ""
        if not name:
            self.fail(n, f"has no {what}", SUPPORTED_QUANT_TEXT)
        if name not in self.inits:
            self.fail(n, f"has a {what} ({name!r}) computed at run time; tinytrain needs "
                      "scales and zero points stored in the model", SUPPORTED_QUANT_TEXT)
        return self.inits[name]

    def scale(self, n, k, per_axis_ok=False) -> np.ndarray:
        s = self.const_in(n, k, "scale")
        if s.dtype != np.float32:
            self.fail(n, f"has a {s.dtype} scale {n.input[k]!r}; tinytrain reads float32 scales",
                      SUPPORTED_QUANT_TEXT)
        if s.size > 1 and not per_axis_ok:
            self.fail(n, f"quantizes the activation {n.input[k - 1]!r} with {s.size} scales "
                      "(per axis); tinytrain uses one scale per activation tensor",
                      REQUANTIZE_HINT)
        if not np.all(np.isfinite(s)) or np.any(s <= 0):
            self.fail(n, f"has a scale {n.input[k]!r} that is not positive and finite",
                      SUPPORTED_QUANT_TEXT)
        return s

    def zero_point(self, n, k, dtype_default, what):
        """Integer type of the quantized tensor, checking the zero point is 0."""
        name = n.input[k] if k < len(n.input) else ""
        if name:
            zp = self.const_in(n, k, "zero point")
            dt = zp.dtype
            if np.any(zp != 0):
                nz = zp.reshape(-1)[np.flatnonzero(zp.reshape(-1))[0]]
                self.fail(n, f"quantizes {what} with zero point {int(nz)} ({dt}): asymmetric "
                          "quantization, which tinytrain cannot represent")
        else:
            dt = np.dtype(dtype_default)
        return np.dtype(dt)

    def check_type(self, n, dt, what, allowed=(np.int8,)):
        if dt not in [np.dtype(a) for a in allowed]:
            kind = ", ".join(np.dtype(a).name for a in allowed)
            self.fail(n, f"quantizes {what} as {dt}; tinytrain imports {kind} here",
                      REQUANTIZE_HINT if dt == np.uint8 else SUPPORTED_QUANT_TEXT)

    def record(self, n, tensor, s):
        s = np.float32(np.asarray(s, np.float32).reshape(-1)[0])
        old = self.acts.get(tensor)
        if old is not None and old[0] != s:
            self.fail(n, f"quantizes {tensor!r} with scale {float(s):.9g}, but {old[1]} uses "
                      f"{float(old[0]):.9g}; tinytrain keeps one scale per tensor",
                      SUPPORTED_QUANT_TEXT)
        if old is None:
            self.acts[tensor] = (s, node_label(n))

    def float_init_name(self, q_name, out_name) -> str:
        base = q_name[:-len("_quantized")] if q_name.endswith("_quantized") else None
        if base and (base == out_name or base not in self.names):
            return base
        return out_name

    def dequant_init(self, n, q_name, s, axis, out_name, is_weight=True) -> str:
        """Float initializer q * s (float32, like onnxruntime) for the integer initializer."""
        q = self.inits[q_name]
        if s.size > 1:
            ax = axis + q.ndim if axis < 0 else axis
            if not 0 <= ax < q.ndim or q.shape[ax] != s.size:
                self.fail(n, f"has {s.size} scales for axis {axis} of {q_name!r} {q.shape}",
                          SUPPORTED_QUANT_TEXT)
            shape = [1] * q.ndim
            shape[ax] = s.size
            v = q.astype(np.float32) * s.reshape(shape)
        else:
            ax = None
            v = q.astype(np.float32) * s.reshape(())
        name = self.float_init_name(q_name, out_name)
        self.new_inits[name] = v.astype(np.float32)
        self.names.add(name)
        if is_weight and q.dtype == np.int8:
            self.weights[name] = (s.astype(np.float32), ax, node_label(n))
        return name

    # ---- Q / DQ --------------------------------------------------------------------------
    def quantize(self, n):
        x, y = n.input[0], n.output[0]
        block = attr(n, "block_size", 0)
        if block:
            self.fail(n, f"uses blocked quantization (block_size {block})", SUPPORTED_QUANT_TEXT)
        to = attr(n, "output_dtype", 0)
        default = helper.tensor_dtype_to_np_dtype(to) if to else np.uint8
        dt = self.zero_point(n, 2, default, repr(x))
        if x in self.inits:                      # a float constant quantized in the graph
            s = self.scale(n, 1, per_axis_ok=True)
            self.check_type(n, dt, f"the constant {x!r}", (np.int8, np.int32))
            axis = int(attr(n, "axis", 1))
            v = np.asarray(self.inits[x], np.float32)
            shape = [1] * v.ndim
            if s.size > 1:
                shape[axis + v.ndim if axis < 0 else axis] = s.size
            info = np.iinfo(dt)
            self.inits[y] = np.clip(np.rint(v / s.reshape(shape)), info.min, info.max).astype(dt)
            return
        s = self.scale(n, 1)
        self.check_type(n, dt, f"the activation {x!r}")
        fx = self.f(x)
        self.alias[y] = fx
        self.qtype[y] = dt
        self.record(n, fx, s)

    def dequantize(self, n):
        xq, y = n.input[0], n.output[0]
        block = attr(n, "block_size", 0)
        if block:
            self.fail(n, f"uses blocked quantization (block_size {block})", SUPPORTED_QUANT_TEXT)
        if xq in self.inits:
            q = self.inits[xq]
            s = self.scale(n, 1, per_axis_ok=True)
            dt = self.zero_point(n, 2, q.dtype, f"the initializer {xq!r}")
            if q.dtype != dt:
                self.fail(n, f"has a zero point of type {dt} for the {q.dtype} initializer {xq!r}",
                          SUPPORTED_QUANT_TEXT)
            self.check_type(n, q.dtype, f"the initializer {xq!r}", (np.int8, np.int32))
            if q.dtype == np.int8 and q.size and q.min() == -128:
                self.fail(n, f"dequantizes the weight {xq!r}, which holds -128; tinytrain's int8 "
                          "weights are symmetric, in [-127, 127] (onnxruntime's WeightSymmetric="
                          "True gives that range)")
            self.alias[y] = self.dequant_init(n, xq, s, int(attr(n, "axis", 1)), y)
            return
        if xq not in self.qtype:
            self.fail(n, f"dequantizes {xq!r}, which is neither an initializer nor the output of "
                      "a QuantizeLinear or QLinear op (an integer graph input?); tinytrain models "
                      "take a float32 input", SUPPORTED_QUANT_TEXT)
        s = self.scale(n, 1)
        dt = self.zero_point(n, 2, self.qtype[xq], repr(xq))
        self.check_type(n, dt, f"the activation {xq!r}")
        fx = self.f(xq)
        self.alias[y] = fx
        self.record(n, fx, s)

    # ---- QOperator ops -------------------------------------------------------------------
    def act_in(self, n, k) -> tuple[str, np.ndarray]:
        """Quantized operand k (with its scale k+1 and zero point k+2) -> (float name, scale)."""
        xq = n.input[k]
        s = self.scale(n, k + 1, per_axis_ok=xq in self.inits)
        if xq in self.inits:
            q = self.inits[xq]
            dt = self.zero_point(n, k + 2, q.dtype, f"the constant {xq!r}")
            self.check_type(n, q.dtype, f"the constant {xq!r}")
            return self.dequant_init(n, xq, s, 1, f"{xq}__dequantized", is_weight=False), s
        dt = self.zero_point(n, k + 2, np.uint8, repr(xq))
        self.check_type(n, dt, f"the activation {xq!r}")
        fx = self.f(xq)
        self.record(n, fx, s)
        return fx, s

    def weight_in(self, n, k, axis) -> tuple[str, np.ndarray]:
        wq = n.input[k]
        if wq not in self.inits:
            self.fail(n, f"has a weight {wq!r} computed at run time; tinytrain trains constant "
                      "weights", SUPPORTED_QUANT_TEXT)
        q = self.inits[wq]
        s = self.scale(n, k + 1, per_axis_ok=True)
        self.zero_point(n, k + 2, q.dtype, f"the weight {wq!r}")
        self.check_type(n, q.dtype, f"the weight {wq!r}")
        if q.size and q.min() == -128:
            self.fail(n, f"has the weight {wq!r}, which holds -128; tinytrain's int8 weights are "
                      "symmetric, in [-127, 127] (onnxruntime's WeightSymmetric=True gives that "
                      "range)")
        return self.dequant_init(n, wq, s, axis, f"{wq}__dequantized"), s

    def bias_in(self, n, k, scale) -> str | None:
        bq = n.input[k] if k < len(n.input) else ""
        if not bq:
            return None
        b = self.const_in(n, k, "bias")
        self.check_type(n, b.dtype, f"the bias {bq!r}", (np.int32,))
        name = self.float_init_name(bq, f"{bq}__dequantized")
        self.new_inits[name] = (b.astype(np.float64) * scale).astype(np.float32)
        self.names.add(name)
        return name

    def act_out(self, n, ks) -> str:
        yq = n.output[0]
        name = self.dq_name.get(yq, yq)
        if ks is not None and ks < len(n.input) and n.input[ks]:
            s = self.scale(n, ks)
            dt = self.zero_point(n, ks + 1, np.uint8, f"its output {yq!r}")
            self.check_type(n, dt, f"its output {yq!r}")
            self.qtype[yq] = dt
            self.record(n, name, s)
        self.alias[yq] = name
        return name

    def emit(self, n, op, inputs, out, attrs):
        self.nodes.append(helper.make_node(op, [i or "" for i in inputs], [out],
                                           name=n.name or None, **attrs))

    def _attrs(self, n, drop=()):
        return {a.name: helper.get_attribute_value(a) for a in n.attribute if a.name not in drop}

    def op_QLinearConv(self, n):
        x, sx = self.act_in(n, 0)
        w, sw = self.weight_in(n, 3, 0)
        # B is int32 at scale s_x * s_w[c]
        b = self.bias_in(n, 8, np.float64(sx.reshape(-1)[0]) * sw.reshape(-1).astype(np.float64))
        y = self.act_out(n, 6)
        self.emit(n, "Conv", [x, w] + ([b] if b else []), y, self._attrs(n))

    def op_QLinearMatMul(self, n):
        x, _ = self.act_in(n, 0)
        if n.input[3] not in self.inits or self.inits[n.input[3]].ndim != 2:
            self.fail(n, "multiplies by a second operand that is not a constant 2-D weight",
                      SUPPORTED_QUANT_TEXT)
        w, _ = self.weight_in(n, 3, 1)
        y = self.act_out(n, 6)
        self.emit(n, "MatMul", [x, w], y, {})

    def op_QGemm(self, n):
        if int(attr(n, "transA", 0)):
            self.fail(n, "has transA=1", SUPPORTED_QUANT_TEXT)
        alpha = float(attr(n, "alpha", 1.0))
        trans_b = int(attr(n, "transB", 0))
        x, sx = self.act_in(n, 0)
        w, sw = self.weight_in(n, 3, 0 if trans_b else 1)
        # C is int32 at scale alpha * s_a * s_b (com.microsoft.QGemm); real bias = that * C
        b = self.bias_in(n, 6, alpha * np.float64(sx.reshape(-1)[0])
                         * sw.reshape(-1).astype(np.float64)) if len(n.input) > 6 else None
        y = self.act_out(n, 7 if len(n.input) > 7 and n.input[7] else None)
        self.emit(n, "Gemm", [x, w] + ([b] if b else []), y,
                  {"alpha": alpha, "beta": 1.0, "transB": trans_b})

    def op_QLinearAdd(self, n):
        a, _ = self.act_in(n, 0)
        b, _ = self.act_in(n, 3)
        y = self.act_out(n, 6)
        self.emit(n, "Add", [a, b], y, {})

    def _channels_first(self, n):
        if int(attr(n, "channels_last", 0)):
            self.fail(n, "works on channels-last data; tinytrain pools [N, C, H, W] tensors",
                      SUPPORTED_QUANT_TEXT)

    def op_QLinearGlobalAveragePool(self, n):
        self._channels_first(n)
        x, _ = self.act_in(n, 0)
        y = self.act_out(n, 3)
        self.emit(n, "GlobalAveragePool", [x], y, {})

    def op_QLinearAveragePool(self, n):
        self._channels_first(n)
        x, _ = self.act_in(n, 0)
        y = self.act_out(n, 3)
        self.emit(n, "AveragePool", [x], y, self._attrs(n, drop=("channels_last",)))

    # ---- checks and the float model ------------------------------------------------------
    def check_weight_axes(self):
        """Per-axis weight scales must be per output channel of the layer reading them."""
        for n in self.nodes:
            if n.op_type not in ("Conv", "Gemm", "MatMul") or len(n.input) < 2:
                continue
            w = n.input[1]
            if w not in self.weights or self.weights[w][1] is None:
                continue
            _, axis, src = self.weights[w]
            ndim = self.new_inits[w].ndim
            want = {"Conv": 0, "MatMul": ndim - 1,
                    "Gemm": 0 if int(attr(n, "transB", 0)) else 1}[n.op_type]
            if axis != want:
                raise ModelImportError(
                    f"{src} quantizes the weight {w!r} of {node_label(n)} per axis {axis}, but "
                    f"the layer's output channels are axis {want}; tinytrain's per-channel "
                    "weight scales are per output channel. Re-quantize with per_channel=True "
                    "on the output channel axis (onnxruntime's default) or per_channel=False.")

    def build(self) -> onnx.ModelProto:
        mp = onnx.ModelProto()
        mp.CopyFrom(self.mp)
        g = mp.graph
        # the graph output keeps its name: rename the float tensor it aliases to it
        for o in g.output:
            src = self.f(o.name)
            if src != o.name:
                for n in self.nodes:
                    for lst in (n.input, n.output):
                        for k, t in enumerate(lst):
                            if t == src:
                                lst[k] = o.name
                if src in self.acts:
                    self.acts[o.name] = self.acts.pop(src)
            if o.type.HasField("tensor_type"):
                o.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
        del g.node[:]
        g.node.extend(self.nodes)
        used = {i for n in self.nodes for i in n.input if i}
        inits = [numpy_helper.from_array(v, k) for k, v in self.new_inits.items() if k in used]
        inits += [numpy_helper.from_array(np.asarray(v), k) for k, v in self.inits.items()
                  if k in used and k not in self.new_inits]
        del g.initializer[:]
        g.initializer.extend(inits)
        keep = [i for i in g.input if i.name not in self.inits or i.name in used]
        del g.input[:]
        g.input.extend(keep)
        del g.value_info[:]                       # integer types of renamed tensors
        if not any(n.domain == MS_DOMAIN for n in self.nodes):
            ops = [o for o in mp.opset_import if o.domain != MS_DOMAIN]
            del mp.opset_import[:]
            mp.opset_import.extend(ops)
        return mp


# ==============================================================================================
# IR level: scales by IR tensor / parameter name
# ==============================================================================================
def _ir_scales(graph: Graph, acts: dict, weights: dict) -> dict:
    scales: dict = {}
    for name, (s, _) in acts.items():
        t = graph.tensors.get(name)
        if t is not None and t.role in (TensorRole.INPUT, TensorRole.ACTIVATION):
            scales[name] = float(s)
    changed = True
    while changed:          # back through ops whose output scale is their input's
        changed = False
        for n in graph.nodes:
            if n.op in _PASS_THROUGH and n.outputs[0] in scales and n.inputs[0] not in scales:
                scales[n.inputs[0]] = scales[n.outputs[0]]
                changed = True
    for name, (s, _, _) in weights.items():
        t = graph.tensors.get(name)
        if t is None or t.role is not TensorRole.PARAM or t.param_kind != "weight":
            continue
        v = np.asarray(graph.initializers[name], np.float64)
        c = v.shape[0]
        if s.size not in (1, c):
            continue
        sc = np.broadcast_to(s.astype(np.float64).reshape(-1), (c,))
        q = v / sc.reshape((c,) + (1,) * (v.ndim - 1))
        if v.size and (np.abs(q - np.rint(q)).max() > 1e-3 or np.abs(q).max() > 127.5):
            continue        # the importer changed the value (BN folded in, Gemm alpha)
        scales[name] = float(s.reshape(-1)[0]) if s.size == 1 else s.reshape(-1).copy()
    return scales
