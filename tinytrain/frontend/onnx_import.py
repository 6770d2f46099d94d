"""ONNX -> IR import.

``import_onnx(model, batch=1)`` turns an inference ONNX model (opsets 11-25) into an IR
:class:`~tinytrain.ir.Graph` whose parameters are the model's weights:

1. load (path, bytes or ModelProto), put nodes in topological order, ``onnx.checker``;
2. one float input ``[batch, ...]``: a symbolic or static first dimension becomes ``batch``;
   every other dimension must be static;
3. constant folding and pass-through removal (:mod:`.fold`), shape inference;
4. mapping of each remaining ONNX node to IR ops with the project's attribute conventions;
5. fusions: BatchNormalization into the Conv/Gemm before it, a constant Add after a Gemm/Conv
   into its bias (the MatMul+Add fusion), chains of Reshapes into one;
6. tensor roles: weights feeding a layer's parameter inputs are PARAM ("weight"/"bias"), other
   float constants CONST; output shapes from the IR shape rules, checked against ONNX's.

Batch handling: the ONNX graph is folded with a concrete batch size N0 (the file's static batch,
or two probe values when it is symbolic, so that constants which depend on the batch size are
found). Every activation must keep the batch as dimension 0 and every IR op treats dimension 0
as independent samples, so the IR is valid for any batch; it is built for ``batch``.

Opsets 22-25 only widened the type lists of the ops imported here (bfloat16, float8, int4, ...;
MaxPool/AveragePool 22 document the ceil-mode window rule they already had), so they are
accepted along with 11-21.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import (ConfigError, ModelImportError, ShapeError, TinytrainError,
                      UnsupportedOpError)
from ..ir import Graph, Node, Tensor, TensorRole, get_op
from .fold import (DEFAULT_DOMAINS, OnnxGraph, _first_lines, attr, has_subgraph, node_label,
                   toposort)

MIN_OPSET, MAX_OPSET = 11, 25

# Probe batch sizes for a symbolic batch dimension: folding runs once with each, and a constant
# that differs between the two depends on the batch size. Small primes, unlikely to coincide
# with a real dimension.
_PROBE_BATCHES = (97, 89)

SUPPORTED_TEXT = (
    "tinytrain trains feed-forward graphs; supported ONNX ops: Conv (1-D/2-D, dilation 1), Gemm "
    "and MatMul (constant 2-D weights), BatchNormalization (inference), Relu, LeakyRelu, Sigmoid, "
    "Tanh, Clip, MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool (1-D/2-D), ReduceMean "
    "(over all spatial axes), Flatten/Reshape/Squeeze/Unsqueeze (keeping the batch as dimension "
    "0), Add, Mul, Sub, Div (by a constant) and Softmax (over the last axis); Identity, Dropout "
    "(inference), no-op Casts and any computation on constants are folded away at import")

# ONNX ops that may remain after folding (everything else must fold away).
MAPPED_OPS = ("Conv", "Gemm", "MatMul", "BatchNormalization", "Relu", "LeakyRelu", "Sigmoid",
              "Tanh", "Clip", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
              "ReduceMean", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Add", "Sub", "Mul",
              "Div", "Softmax", "Identity", "Dropout", "Cast", "CastLike")

# Inputs that hold layer weights: checked to be float before anything else runs.
_WEIGHT_INPUTS = {"Conv": (1, 2), "Gemm": (1, 2), "MatMul": (0, 1),
                  "BatchNormalization": (1, 2, 3, 4)}

# Parameter positions of IR ops, used when an op's registry entry does not list them.
_PARAM_FALLBACK = {"Gemm": {1: "weight", 2: "bias"}, "Conv": {1: "weight", 2: "bias"}}

_FLOAT_ELEMS = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
                onnx.TensorProto.BFLOAT16}


def _elem_name(elem: int) -> str:
    try:
        return onnx.TensorProto.DataType.Name(elem).lower()
    except ValueError:
        return f"type {elem}"


# ==============================================================================================
# public entry point
# ==============================================================================================
def import_onnx(model, batch: int = 1) -> Graph:
    """Import an ONNX model (a file path, the file's bytes, or an ``onnx.ModelProto``) as an IR
    graph for ``batch`` samples. Raises ModelImportError (or its UnsupportedOpError), ShapeError
    or GraphError with a message naming the node at fault and what is supported."""
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or int(batch) < 1:
        raise ConfigError(f"batch must be a positive integer, got {batch!r}")
    batch = int(batch)
    mp, source = _load(model)
    try:
        return _Importer(mp, source, batch).run()
    except TinytrainError:
        raise
    except Exception as e:  # never let a numpy/onnx traceback reach the user
        raise ModelImportError(
            f"importing {source} failed unexpectedly ({type(e).__name__}: {_first_lines(e)}). "
            "This is a bug in tinytrain; please report it together with the model.") from e


# ==============================================================================================
# loading and checking
# ==============================================================================================
def _load(model) -> tuple[onnx.ModelProto, str]:
    if isinstance(model, onnx.ModelProto):
        mp = onnx.ModelProto()
        mp.CopyFrom(model)
        source, base_dir = "the ONNX model", None
    elif isinstance(model, (bytes, bytearray, memoryview)):
        mp = _parse(bytes(model), "the ONNX model bytes")
        source, base_dir = "the ONNX model bytes", None
    elif isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        source = f"ONNX file {path!r}"
        if not os.path.exists(path):
            raise ModelImportError(f"cannot read {source}: the file does not exist.")
        if os.path.isdir(path):
            raise ModelImportError(f"cannot read {source}: it is a directory, not a file.")
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise ModelImportError(f"cannot read {source}: {e.strerror or e}.") from None
        mp = _parse(data, source)
        base_dir = os.path.dirname(os.path.abspath(path))
    else:
        raise ModelImportError(
            f"import_onnx takes a file path, the file's bytes or an onnx.ModelProto, not "
            f"{type(model).__name__}.")
    if not mp.HasField("graph") or mp.ir_version <= 0:
        raise ModelImportError(
            f"{source} is not an ONNX model: it holds no graph"
            f"{' (the file is empty)' if mp.ByteSize() == 0 else ' and no IR version'}.")
    if base_dir is not None and _uses_external_data(mp):
        try:
            from onnx.external_data_helper import load_external_data_for_model
            load_external_data_for_model(mp, base_dir)
        except Exception as e:
            raise ModelImportError(
                f"cannot read the external weight files of {source}: {_first_lines(e)}.") from None
    return mp, source


def _parse(data: bytes, source: str) -> onnx.ModelProto:
    if not data:
        raise ModelImportError(f"cannot read {source}: the file is empty.")
    try:
        return onnx.load_model_from_string(data)
    except Exception as e:  # google.protobuf.message.DecodeError and friends
        raise ModelImportError(
            f"cannot read {source}: it is not a valid ONNX protobuf ({len(data)} bytes; the "
            f"parser says: {_first_lines(e)}). The file is truncated, corrupt, or not an ONNX "
            "model.") from None


def _uses_external_data(mp: onnx.ModelProto) -> bool:
    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in mp.graph.initializer)


# ==============================================================================================
# intermediate node form used while mapping (mutable; becomes ir.Node at the end)
# ==============================================================================================
@dataclass
class _INode:
    name: str
    op: str
    inputs: list
    outputs: list
    attrs: dict = field(default_factory=dict)
    src: str = ""  # label of the ONNX node it came from, for messages

    def label(self) -> str:
        return self.src or f"node {self.name!r} ({self.op})"


class _Importer:
    def __init__(self, mp: onnx.ModelProto, source: str, batch: int):
        self.mp = mp
        self.source = source
        self.batch = batch

    # ---- pipeline ------------------------------------------------------------------------
    def run(self) -> Graph:
        mp = self.mp
        self._check_opset()
        g = mp.graph
        if len(g.node) == 0:
            raise ModelImportError(f"{self.source} has an empty graph (no nodes).")
        self._name_nodes()
        init_names = {t.name for t in g.initializer}
        avail = init_names | {i.name for i in g.input}
        sorted_nodes = [_copy(n) for n in toposort(list(g.node), avail)]
        del g.node[:]
        g.node.extend(sorted_nodes)
        _fill_output_types(mp)
        try:
            onnx.checker.check_model(mp)
        except Exception as e:
            raise ModelImportError(
                f"{self.source} is not a valid ONNX model (onnx.checker: {_first_lines(e)}).") \
                from None

        inp, in_shape, n0_static = self._the_input(init_names)
        out = self._the_output()
        consts = {}
        for t in g.initializer:
            try:
                consts[t.name] = numpy_helper.to_array(t)
            except Exception as e:
                raise ModelImportError(f"initializer {t.name!r} of {self.source} cannot be read: "
                                       f"{_first_lines(e)}.") from None
        self._prescan(consts, inp)

        def make(n0):
            og = OnnxGraph([_copy(n) for n in g.node], consts, inp.name, (n0,) + in_shape,
                           inp.type.tensor_type.elem_type, [out.name],
                           [o for o in mp.opset_import], mp.ir_version, g.name)
            og.output_elem[out.name] = out.type.tensor_type.elem_type
            og.fold_constants()
            return og

        if n0_static is not None:
            og = make(n0_static)
            batch_dep: set[str] = set()
        else:
            og = make(_PROBE_BATCHES[0])
            other = make(_PROBE_BATCHES[1])
            batch_dep = {k for k, v in og.consts.items()
                         if k not in other.consts or other.consts[k].shape != v.shape
                         or not np.array_equal(other.consts[k], v)}
        return _Mapper(og, batch_dep, self.batch, self.source,
                       probe=n0_static is None).run()

    def _check_opset(self):
        mp = self.mp
        ver = None
        for o in mp.opset_import:
            if o.domain in DEFAULT_DOMAINS:
                ver = o.version
        if ver is None:
            raise ModelImportError(f"{self.source} declares no opset for the default ONNX domain.")
        if ver < MIN_OPSET:
            raise ModelImportError(
                f"{self.source} uses opset {ver}; tinytrain imports opsets {MIN_OPSET} to "
                f"{MAX_OPSET}. Re-export it with a newer opset (torch.onnx.export(..., "
                "opset_version=17)) or convert it with onnx.version_converter.convert_version.")
        if ver > MAX_OPSET:
            raise ModelImportError(
                f"{self.source} uses opset {ver}, newer than the opsets tinytrain has checked "
                f"({MIN_OPSET} to {MAX_OPSET}). Export it with opset_version={MAX_OPSET} or "
                "lower.")

    def _name_nodes(self):
        used: set[str] = set()
        for k, n in enumerate(self.mp.graph.node):
            base = n.name or f"{n.op_type}_{k}"
            name, j = base, 1
            while name in used:
                j += 1
                name = f"{base}_{j}"
            used.add(name)
            n.name = name

    def _the_input(self, init_names):
        g = self.mp.graph
        real = [i for i in g.input if i.name not in init_names]
        if len(real) != 1:
            names = ", ".join(repr(i.name) for i in real) or "none"
            raise ModelImportError(
                f"{self.source} has {len(real)} graph inputs ({names}); tinytrain trains models "
                "with exactly one input (a batch of samples) and one output (the prediction). "
                "Weights must be initializers, not graph inputs.")
        inp = real[0]
        tt = inp.type.tensor_type if inp.type.HasField("tensor_type") else None
        if tt is None:
            raise ModelImportError(f"graph input {inp.name!r} is not a tensor; tinytrain takes one "
                                   "float32 tensor [batch, ...].")
        if tt.elem_type != onnx.TensorProto.FLOAT:
            raise ModelImportError(
                f"graph input {inp.name!r} is {_elem_name(tt.elem_type)}; tinytrain models take "
                "a float32 input (quantize with tinytrain's own passes, not in the ONNX file).")
        if not tt.HasField("shape") or len(tt.shape.dim) == 0:
            what = "has no shape" if not tt.HasField("shape") else "is a scalar"
            raise ShapeError(f"graph input {inp.name!r} {what}; tinytrain needs a static shape "
                             "[batch, ...] with the batch as dimension 0.")
        dims = list(tt.shape.dim)
        n0 = int(dims[0].dim_value) if dims[0].HasField("dim_value") else None
        if n0 == 0:
            n0 = None
        rest = []
        for k, d in enumerate(dims[1:], start=1):
            if not d.HasField("dim_value") or d.dim_value <= 0:
                label = repr(d.dim_param) if d.dim_param else "unknown"
                raise ShapeError(
                    f"graph input {inp.name!r} has a dynamic dimension {k} ({label}); only the "
                    "batch dimension (0) may be dynamic: tinytrain plans all memory at compile "
                    "time. Export the model with a fixed size for that dimension.")
            rest.append(int(d.dim_value))
        return inp, tuple(rest), n0

    def _the_output(self):
        outs = list(self.mp.graph.output)
        if len(outs) != 1:
            names = ", ".join(repr(o.name) for o in outs)
            raise ModelImportError(
                f"{self.source} has {len(outs)} graph outputs ({names}); tinytrain trains models "
                "with one input and one output (the prediction the loss is computed on). Remove "
                "the extra outputs, e.g. with onnx.utils.extract_model.")
        return outs[0]

    def _prescan(self, consts, inp):
        """Refuse early (with a clear message) what folding cannot remove: ops of other domains,
        control flow, unsupported ops on activations, non-float weights."""
        g = self.mp.graph
        const_like = set(consts)
        # Only nodes the output depends on matter (dead branches are dropped by folding).
        nodes = list(g.node)
        needed = {o.name for o in g.output}
        live = set()
        for k in range(len(nodes) - 1, -1, -1):
            if any(o in needed for o in nodes[k].output if o):
                live.add(k)
                needed.update(i for i in nodes[k].input if i)
        for k, n in enumerate(nodes):
            if k not in live:
                continue
            ins = [i for i in n.input if i]
            if n.domain not in DEFAULT_DOMAINS:
                raise UnsupportedOpError(
                    f"{node_label(n)} is from operator domain {n.domain!r}, which tinytrain does "
                    f"not support: {SUPPORTED_TEXT} (default ONNX domain only).")
            if has_subgraph(n):
                raise UnsupportedOpError(
                    f"{node_label(n)} is not supported: it runs a subgraph (control flow). "
                    f"{SUPPORTED_TEXT}.")
            foldable = (n.op_type in ("Shape", "Size") or all(i in const_like for i in ins)
                        or (n.op_type == "CastLike" and ins and ins[0] in const_like))
            if foldable:
                const_like.update(o for o in n.output if o)
            elif n.op_type not in MAPPED_OPS:
                raise UnsupportedOpError(f"{node_label(n)} is not supported. {SUPPORTED_TEXT}.")
            for k in _WEIGHT_INPUTS.get(n.op_type, ()):
                if k < len(n.input) and n.input[k] in consts:
                    a = consts[n.input[k]]
                    if a.dtype.kind != "f":
                        raise ModelImportError(
                            f"{node_label(n)}: its {'weight' if k == 1 else 'input ' + str(k)} "
                            f"{n.input[k]!r} is {a.dtype} ({_kind_word(a.dtype)}); tinytrain "
                            "trains float32 weights. Import the float model (quantization is "
                            "done by tinytrain's own passes).")


def _fill_output_types(mp: onnx.ModelProto) -> None:
    """Hand-built models often declare outputs without a shape, which onnx.checker rejects
    (onnxruntime does not): take it from shape inference so such models import."""
    missing = [o for o in mp.graph.output
               if o.type.HasField("tensor_type") and not o.type.tensor_type.HasField("shape")]
    if not missing:
        return
    try:
        inferred = onnx.shape_inference.infer_shapes(mp).graph
    except Exception:
        return  # the checker will report what is wrong
    found = {vi.name: vi for vi in list(inferred.output) + list(inferred.value_info)}
    for o in missing:
        vi = found.get(o.name)
        if vi is not None and vi.type.tensor_type.HasField("shape"):
            o.type.tensor_type.shape.CopyFrom(vi.type.tensor_type.shape)


def _kind_word(dt) -> str:
    return {"i": "integer", "u": "unsigned integer", "b": "boolean"}.get(dt.kind, "not float")


def _copy(n: onnx.NodeProto) -> onnx.NodeProto:
    c = onnx.NodeProto()
    c.CopyFrom(n)
    return c


# ==============================================================================================
# mapping ONNX nodes to IR ops
# ==============================================================================================
class _Mapper:
    def __init__(self, og: OnnxGraph, batch_dep: set[str], batch: int, source: str,
                 probe: bool = False):
        self.og = og
        self.n0 = og.input_shape[0]
        self.batch_dep = batch_dep
        self.probe = probe
        self.batch = batch
        self.source = source
        self.nodes: list[_INode] = []
        self.consts: dict[str, np.ndarray] = {}   # IR constants (float32)
        self.ps: dict[str, tuple] = {}            # per-sample shapes of activations
        self.names: set[str] = set(og.consts) | {og.input} | set(og.outputs)
        for n in og.nodes:
            self.names.update(n.output)
            self.names.update(n.input)
        self.node_names: set[str] = {n.name for n in og.nodes}

    # ---- helpers -------------------------------------------------------------------------
    def fresh(self, base: str) -> str:
        name, k = base, 1
        while name in self.names or name in self.consts:
            k += 1
            name = f"{base}_{k}"
        self.names.add(name)
        return name

    def fresh_node(self, base: str) -> str:
        name, k = base, 1
        while name in self.node_names:
            k += 1
            name = f"{base}_{k}"
        self.node_names.add(name)
        return name

    def fail(self, node, problem, cls=UnsupportedOpError, hint=None):
        raise cls(f"{node_label(node)} {problem}. {hint or SUPPORTED_TEXT}.")

    def fmt(self, shape) -> str:
        """A shape with the batch dimension shown as N (with a symbolic batch, any multiple of
        the probe batch size is shown as a multiple of N: it merged the batch)."""
        if shape is None:
            return "(unknown)"
        s = []
        for k, d in enumerate(shape):
            if k == 0 and d == self.n0:
                s.append("N")
            elif self.probe and d and d % self.n0 == 0:
                s.append("N" if d == self.n0 else f"N*{d // self.n0}")
            else:
                s.append(str(d))
        return "(" + ", ".join(s) + ("," if len(s) == 1 else "") + ")"

    def is_const(self, name) -> bool:
        return name in self.og.consts

    def shape(self, node, name) -> tuple:
        s = self.og.shapes.get(name)
        if s is None:
            raise ShapeError(
                f"{node_label(node)}: the shape of {name!r} cannot be determined statically "
                "(ONNX shape inference leaves it open). tinytrain needs every shape fixed at "
                "import; only the batch dimension may vary.")
        return s

    def act(self, node, k, what="input") -> str:
        """Input k must be an activation (carries the batch)."""
        name = node.input[k] if k < len(node.input) else ""
        if not name:
            self.fail(node, f"has no {what}", ModelImportError)
        if self.is_const(name):
            self.fail(node, f"has a constant {what} {name!r} where tinytrain expects data "
                      "flowing from the model input")
        if name not in self.ps:
            s = self.shape(node, name)
            if len(s) == 0 or s[0] != self.n0:
                self.fail(node, f"reads {name!r} of shape {self.fmt(s)}, whose first dimension "
                          "is not the batch", ShapeError)
            self.ps[name] = tuple(s[1:])
        return name

    def const(self, node, k, what, optional=False):
        """Input k must be a constant (after folding); returns (name, array) or (None, None)."""
        name = node.input[k] if k < len(node.input) else ""
        if not name:
            if optional:
                return None, None
            self.fail(node, f"has no {what}", ModelImportError)
        if not self.is_const(name):
            prod = self.og.producer(name)
            origin = f"computed by {node_label(prod)}" if prod is not None else "a graph input"
            self.fail(node, f"has a {what} ({name!r}) that is {origin} at run time; tinytrain "
                      f"needs it to be a constant stored in the model", ModelImportError)
        if name in self.batch_dep and not (node.op_type == "Reshape" and k == 1):
            self.fail(node, f"uses {name!r} ({what}), a value computed from the batch size; "
                      "tinytrain graphs must work for any batch size", ModelImportError)
        return name, np.asarray(self.og.consts[name])

    def float_const(self, node, name, arr, what) -> np.ndarray:
        if arr.dtype.kind != "f":
            self.fail(node, f"has a {what} {name!r} of type {arr.dtype}; tinytrain trains "
                      "float32 weights and constants", ModelImportError)
        return arr.astype(np.float64)

    def add_const(self, hint: str, value) -> str:
        """Register an IR constant under the ONNX name (or a derived one if that name already
        holds a different value); identical values share one tensor (weight tying)."""
        v = np.array(value, dtype=np.float32, order="C")  # keeps 0-d scalars 0-d
        name, k = hint, 1
        while True:
            old = self.consts.get(name)
            if old is None:
                if name not in self.names or name in self.og.consts:
                    break
            elif old.shape == v.shape and np.array_equal(old, v):
                return name
            k += 1
            name = f"{hint}__{k}"
        self.consts[name] = v
        self.names.add(name)
        return name

    def emit(self, node, op, inputs, outputs, attrs=None, name=None) -> _INode:
        n = _INode(name or node.name, op, list(inputs), list(outputs), dict(attrs or {}),
                   node_label(node))
        self.nodes.append(n)
        return n

    def out_ps(self, node, k=0) -> tuple:
        """Per-sample shape of output k, checking it keeps the batch as dimension 0."""
        name = node.output[k]
        s = self.shape(node, name)
        if len(s) == 0 or s[0] != self.n0:
            ins = [i for i in node.input if i and not self.is_const(i)]
            ins_s = ", ".join(self.fmt(self.og.shapes.get(i)) for i in ins)
            self.fail(node, f"turns input shape {ins_s} into {self.fmt(s)}: it moves or merges "
                      "the batch dimension (N). tinytrain runs every sample independently, so "
                      "each op must keep the batch as dimension 0", ShapeError)
        self.ps[name] = tuple(s[1:])
        return tuple(s[1:])

    # ---- driver --------------------------------------------------------------------------
    def run(self) -> Graph:
        og = self.og
        out = og.outputs[0]
        if out in og.consts:
            raise ModelImportError(
                f"the output {out!r} of {self.source} does not depend on the input "
                f"{og.input!r}: it folds to a constant. There is nothing to train.")
        if og.input not in {i for n in og.nodes for i in n.input} and out != og.input:
            raise ModelImportError(f"the output of {self.source} does not depend on its input "
                                   f"{og.input!r}.")
        in_shape = og.input_shape
        self.ps[og.input] = tuple(in_shape[1:])
        for node in og.nodes:
            handler = getattr(self, f"_map_{node.op_type}", None)
            if handler is None:
                self.fail(node, "is not supported")
            handler(node)
        self._fuse()
        return self._build()

    # ---- layers --------------------------------------------------------------------------
    def _map_Conv(self, node):
        x = self.act(node, 0)
        rank = len(self.ps[x]) + 1
        if rank not in (3, 4):
            self.fail(node, f"is a {rank - 2}-D convolution (input {self.fmt(self.shape(node, x))})"
                      "; tinytrain supports 1-D and 2-D Conv, inputs [N, C, L] or [N, C, H, W]")
        wn, w = self.const(node, 1, "weight")
        w = self.float_const(node, wn, w, "weight")
        bn, b = self.const(node, 2, "bias", optional=True)
        if b is not None:
            b = self.float_const(node, bn, b, "bias")
        sp = rank - 2
        if w.ndim != rank:
            self.fail(node, f"has a weight of shape {w.shape} for a {rank}-D input", ShapeError)
        dil = tuple(attr(node, "dilations", (1,) * sp))
        if any(d != 1 for d in dil):
            self.fail(node, f"uses dilations {dil}; tinytrain supports dilation 1 only")
        ks = attr(node, "kernel_shape")
        if ks is not None and tuple(ks) != tuple(w.shape[2:]):
            self.fail(node, f"has kernel_shape {tuple(ks)} but its weight is {w.shape}",
                      ShapeError)
        group = int(attr(node, "group", 1))
        cin = self.ps[x][0]
        if group < 1 or cin != w.shape[1] * group or w.shape[0] % group:
            self.fail(node, f"has {cin} input channels, weight {w.shape} and group {group}, "
                      "which do not fit together", ShapeError)
        strides = tuple(int(s) for s in attr(node, "strides", (1,) * sp))
        pads = self._pads(node, self.ps[x][1:], w.shape[2:], strides)
        self.out_ps(node)
        ins = [x, self.add_const(wn, w)]
        if b is not None:
            if b.shape != (w.shape[0],):
                self.fail(node, f"has a bias of shape {b.shape} for {w.shape[0]} output "
                          "channels", ShapeError)
            ins.append(self.add_const(bn, b))
        self.emit(node, "Conv", ins, [node.output[0]],
                  {"strides": strides, "pads": pads, "group": group})

    def _pads(self, node, spatial, kernel, strides) -> tuple:
        sp = len(spatial)
        auto = attr(node, "auto_pad", "NOTSET") or "NOTSET"
        if auto == "NOTSET":
            pads = tuple(int(p) for p in attr(node, "pads", (0,) * (2 * sp)))
            if len(pads) != 2 * sp or any(p < 0 for p in pads):
                self.fail(node, f"has pads {pads}; expected {2 * sp} non-negative values",
                          ShapeError)
            return pads
        if auto == "VALID":
            return (0,) * (2 * sp)
        if auto not in ("SAME_UPPER", "SAME_LOWER"):
            self.fail(node, f"has auto_pad {auto!r}; supported: NOTSET, VALID, SAME_UPPER, "
                      "SAME_LOWER", ModelImportError)
        begin, end = [], []
        for n, k, s in zip(spatial, kernel, strides):
            out = -(-n // s)
            total = max(0, (out - 1) * s + k - n)
            small, big = total // 2, total - total // 2
            # SAME_UPPER puts the odd padding at the end, SAME_LOWER at the beginning.
            begin.append(small if auto == "SAME_UPPER" else big)
            end.append(big if auto == "SAME_UPPER" else small)
        return tuple(begin + end)

    def _map_Gemm(self, node):
        if int(attr(node, "transA", 0)):
            self.fail(node, "has transA=1, which moves the batch out of dimension 0; tinytrain's "
                      "Gemm takes x [batch, in]")
        x = self.act(node, 0)
        if len(self.ps[x]) != 1:
            self.fail(node, f"has a {len(self.ps[x]) + 1}-D input", ShapeError)
        wn, w = self.const(node, 1, "weight")
        w = self.float_const(node, wn, w, "weight")
        if w.ndim != 2:
            self.fail(node, f"has a {w.ndim}-D weight", ShapeError)
        alpha, beta = float(attr(node, "alpha", 1.0)), float(attr(node, "beta", 1.0))
        w = (w if int(attr(node, "transB", 0)) else w.T) * alpha
        m = w.shape[0]
        ins = [x, self.add_const(wn, w)]
        cn, c = self.const(node, 2, "bias", optional=True)
        if c is not None and beta != 0.0:
            c = self.float_const(node, cn, c, "bias") * beta
            ins.append(self.add_const(cn, self._bias_vector(node, cn, c, m)))
        self.out_ps(node)
        self.emit(node, "Gemm", ins, [node.output[0]])

    def _bias_vector(self, node, name, c, m) -> np.ndarray:
        """A Gemm bias C broadcast to [N, M] as a vector [M], if it does not vary with N."""
        if c.ndim == 2 and c.shape[0] == 1:
            c = c[0]
        if c.ndim > 1 or (c.ndim == 1 and c.shape[0] not in (1, m)):
            self.fail(node, f"has a bias {name!r} of shape {c.shape} that varies along the batch "
                      f"(or does not fit {m} outputs); tinytrain's Gemm bias is a vector [{m}]",
                      ShapeError)
        return np.broadcast_to(c, (m,)).copy()

    def _map_MatMul(self, node):
        x = self.act(node, 0)
        if len(self.ps[x]) != 1:
            self.fail(node, f"multiplies a {len(self.ps[x]) + 1}-D input "
                      f"{self.fmt(self.shape(node, x))}; tinytrain maps MatMul to Gemm, which "
                      "takes x [batch, features] (flatten first)")
        wn, w = self.const(node, 1, "weight")
        w = self.float_const(node, wn, w, "weight")
        if w.ndim != 2:
            self.fail(node, f"has a {w.ndim}-D weight {w.shape}; tinytrain supports MatMul with "
                      "a constant 2-D weight [in, out]")
        self.out_ps(node)
        self.emit(node, "Gemm", [x, self.add_const(wn, w.T)], [node.output[0]])

    def _map_BatchNormalization(self, node):
        if int(attr(node, "training_mode", 0)):
            self.fail(node, "is in training mode (training_mode=1); export the model in eval mode "
                      "(model.eval()) so it uses its running statistics", ModelImportError)
        for o in node.output[1:]:
            if o and self.og.is_used(o):
                self.fail(node, f"has its training output {o!r} in use; tinytrain imports "
                          "BatchNormalization in inference mode only", ModelImportError)
        x = self.act(node, 0)
        ps = self.ps[x]
        if len(ps) < 1:
            self.fail(node, "has an input without a channel dimension", ShapeError)
        vals = []
        for k, what in ((1, "scale"), (2, "bias"), (3, "running mean"), (4, "running variance")):
            n, v = self.const(node, k, what)
            v = self.float_const(node, n, v, what)
            if v.shape != (ps[0],):
                self.fail(node, f"has a {what} of shape {v.shape} for {ps[0]} channels",
                          ShapeError)
            vals.append((n, v))
        eps = float(attr(node, "epsilon", 1e-5))
        (sn, scale), (bn, bias), (_, mean), (_, var) = vals
        a = scale / np.sqrt(var + eps)
        c = bias - mean * a
        self.out_ps(node)
        self.emit(node, "_BN", [x], [node.output[0]],
                  {"a": a, "c": c, "scale_name": sn, "bias_name": bn})

    # ---- activations ---------------------------------------------------------------------
    def _unary(self, node, op, attrs=None):
        x = self.act(node, 0)
        self.out_ps(node)
        self.emit(node, op, [x], [node.output[0]], attrs)

    def _map_Relu(self, node):
        self._unary(node, "Relu")

    def _map_Sigmoid(self, node):
        self._unary(node, "Sigmoid")

    def _map_Tanh(self, node):
        self._unary(node, "Tanh")

    def _map_LeakyRelu(self, node):
        self._unary(node, "LeakyRelu", {"alpha": float(attr(node, "alpha", 0.01))})

    def _map_Clip(self, node):
        bounds = []
        for k, what, default in ((1, "min", -np.inf), (2, "max", np.inf)):
            n, v = self.const(node, k, f"{what} bound", optional=True)
            if v is None:
                bounds.append(float(default))
                continue
            if v.size != 1:
                self.fail(node, f"has a {what} bound of shape {v.shape}; Clip bounds are scalars",
                          ShapeError)
            bounds.append(float(self.float_const(node, n, v, f"{what} bound").reshape(-1)[0]))
        self._unary(node, "Clip", {"min": bounds[0], "max": bounds[1]})

    # ---- pooling -------------------------------------------------------------------------
    def _pool_common(self, node, kind):
        x = self.act(node, 0)
        rank = len(self.ps[x]) + 1
        if rank not in (3, 4):
            self.fail(node, f"pools a {rank}-D input; tinytrain supports 1-D and 2-D pooling")
        sp = rank - 2
        for o in node.output[1:]:
            if o and self.og.is_used(o):
                self.fail(node, f"has its Indices output {o!r} in use; tinytrain supports the "
                          "pooled values (output Y) only")
        if int(attr(node, "storage_order", 0)) != 0:
            self.fail(node, "has storage_order=1; tinytrain supports row-major (0) only")
        dil = tuple(attr(node, "dilations", (1,) * sp))
        if any(d != 1 for d in dil):
            self.fail(node, f"uses dilations {dil}; tinytrain supports dilation 1 only")
        ks = tuple(int(k) for k in attr(node, "kernel_shape", ()))
        if len(ks) != sp:
            self.fail(node, f"has kernel_shape {ks} for a {sp}-D input", ShapeError)
        strides = tuple(int(s) for s in attr(node, "strides", (1,) * sp))
        pads = self._pads(node, self.ps[x][1:], ks, strides)
        attrs = {"kernel_shape": ks, "strides": strides, "pads": pads,
                 "ceil_mode": int(attr(node, "ceil_mode", 0))}
        if kind == "AveragePool":
            attrs["count_include_pad"] = int(attr(node, "count_include_pad", 0))
        self.out_ps(node)
        self.emit(node, kind, [x], [node.output[0]], attrs)

    def _map_MaxPool(self, node):
        self._pool_common(node, "MaxPool")

    def _map_AveragePool(self, node):
        self._pool_common(node, "AveragePool")

    def _map_GlobalAveragePool(self, node):
        x = self.act(node, 0)
        if len(self.ps[x]) + 1 not in (3, 4):
            self.fail(node, f"pools a {len(self.ps[x]) + 1}-D input; tinytrain supports 1-D and "
                      "2-D pooling")
        self.out_ps(node)
        self.emit(node, "GlobalAveragePool", [x], [node.output[0]])

    def _map_GlobalMaxPool(self, node):
        x = self.act(node, 0)
        sp = self.ps[x][1:]
        if len(sp) not in (1, 2):
            self.fail(node, f"pools a {len(sp) + 2}-D input; tinytrain supports 1-D and 2-D "
                      "pooling")
        self.out_ps(node)
        self.emit(node, "MaxPool", [x], [node.output[0]],
                  {"kernel_shape": tuple(sp), "strides": (1,) * len(sp), "pads": (0,) * 2 * len(sp),
                   "ceil_mode": 0})

    def _map_ReduceMean(self, node):
        x = self.act(node, 0)
        r = len(self.ps[x]) + 1
        if self.og.opset >= 18:
            _, ax = self.const(node, 1, "axes", optional=True)
            axes = () if ax is None else tuple(int(a) for a in ax.reshape(-1))
        else:
            axes = tuple(attr(node, "axes", ()))
        keep = int(attr(node, "keepdims", 1))
        if not axes:
            if int(attr(node, "noop_with_empty_axes", 0)) and self.og.opset >= 18:
                self._reshape_to(node, x, self.out_ps(node))
                return
            axes = tuple(range(r))
        axes = tuple(sorted(a % r for a in axes))
        if r in (3, 4) and axes == tuple(range(2, r)):
            out_ps = self.out_ps(node)
            if keep:
                self.emit(node, "GlobalAveragePool", [x], [node.output[0]])
            else:
                mid = self.fresh(f"{node.output[0]}__gap")
                self.ps[mid] = (self.ps[x][0],) + (1,) * (r - 2)
                self.emit(node, "GlobalAveragePool", [x], [mid])
                self.emit(node, "Reshape", [mid], [node.output[0]], {"shape": out_ps},
                          name=self.fresh_node(f"{node.name}__reshape"))
            return
        self.fail(node, f"averages over axes {axes} of a {r}-D tensor; tinytrain supports "
                  "ReduceMean over all spatial axes (2..) of [N, C, L] or [N, C, H, W], i.e. "
                  "global average pooling")

    # ---- shape ops -----------------------------------------------------------------------
    def _reshape_to(self, node, x, out_ps):
        self.emit(node, "Reshape", [x], [node.output[0]], {"shape": tuple(out_ps)})

    def _reshape_like(self, node, const_inputs=()):
        x = self.act(node, 0)
        for k, what in const_inputs:
            self.const(node, k, what, optional=(what == "axes"))
        out_s = self.shape(node, node.output[0])
        if 0 in out_s:
            self.fail(node, f"produces an empty tensor {self.fmt(out_s)}", ShapeError)
        self._reshape_to(node, x, self.out_ps(node))

    def _map_Reshape(self, node):
        self._reshape_like(node, ((1, "target shape"),))

    def _map_Flatten(self, node):
        self._reshape_like(node)

    def _map_Squeeze(self, node):
        self._reshape_like(node, ((1, "axes"),) if self.og.opset >= 13 else ())

    def _map_Unsqueeze(self, node):
        self._reshape_like(node, ((1, "axes"),) if self.og.opset >= 13 else ())

    # ---- elementwise ---------------------------------------------------------------------
    def _operand(self, node, k, out_rank):
        """(name, is_const) for an Add/Mul operand; constants lose a leading unit dimension so
        they broadcast per sample."""
        name = node.input[k]
        if not self.is_const(name):
            a = self.act(node, k)
            if len(self.ps[a]) + 1 != out_rank:
                self.fail(node, f"broadcasts {a!r} {self.fmt(self.shape(node, a))} against a "
                          "higher-rank tensor, which mixes its batch dimension with another "
                          "one", ShapeError)
            return a, None
        n, v = self.const(node, k, "constant operand")
        v = self.float_const(node, n, v, "constant operand")
        if v.ndim == out_rank:
            if v.shape[0] != 1:
                self.fail(node, f"has a constant operand {n!r} of shape {v.shape} that varies "
                          "along the batch dimension; constants must broadcast over the batch "
                          "(leading dimension 1 or absent)", ShapeError)
            v = v[0]
        return n, v

    def _binary(self, node):
        out_rank = len(self.shape(node, node.output[0]))
        a, av = self._operand(node, 0, out_rank)
        b, bv = self._operand(node, 1, out_rank)
        return a, av, b, bv

    def _emit_binary(self, node, op, a, av, b, bv, out=None, name=None):
        """Emit op(a, b) with the activation first (both ops are commutative)."""
        ins = []
        for n, v in ((a, av), (b, bv)):
            ins.append(self.add_const(n, v) if v is not None else n)
        if av is not None:
            ins.reverse()
        return self.emit(node, op, ins, [out or node.output[0]], name=name)

    def _map_Add(self, node):
        a, av, b, bv = self._binary(node)
        self.out_ps(node)
        self._emit_binary(node, "Add", a, av, b, bv)

    def _map_Mul(self, node):
        a, av, b, bv = self._binary(node)
        self.out_ps(node)
        self._emit_binary(node, "Mul", a, av, b, bv)

    def _map_Sub(self, node):
        a, av, b, bv = self._binary(node)
        out_ps = self.out_ps(node)
        if bv is not None:                     # x - c  ->  x + (-c)
            self._emit_binary(node, "Add", a, av, f"{b}__neg", -bv)
            return
        # a - y  ->  a + (-1 * y)
        neg = self.fresh(f"{b}__neg")
        self.ps[neg] = self.ps[b]
        self.emit(node, "Mul", [b, self.add_const(f"{node.name}__minus_one", np.float32(-1))],
                  [neg], name=self.fresh_node(f"{node.name}__neg"))
        self._emit_binary(node, "Add", a, av, neg, None)
        del out_ps

    def _map_Div(self, node):
        a, av, b, bv = self._binary(node)
        if bv is None:
            self.fail(node, f"divides by {b!r}, which is computed at run time; tinytrain "
                      "supports division by a constant only")
        if np.any(bv == 0):
            self.fail(node, f"divides by the constant {b!r}, which contains zeros",
                      ModelImportError)
        self.out_ps(node)
        self._emit_binary(node, "Mul", a, av, f"{b}__recip", 1.0 / bv)

    def _map_Softmax(self, node):
        x = self.act(node, 0)
        ps = self.ps[x]
        r = len(ps) + 1
        axis = int(attr(node, "axis", -1 if self.og.opset >= 13 else 1))
        axis = axis + r if axis < 0 else axis
        if axis == 0 or not 0 <= axis < r:
            self.fail(node, f"normalises over axis {axis} of a {r}-D tensor, i.e. across the "
                      "batch; tinytrain's Softmax normalises over the last axis of each sample")
        out_ps = self.out_ps(node)
        if axis == r - 1:
            self.emit(node, "Softmax", [x], [node.output[0]], {"axis": -1})
            return
        if self.og.opset >= 13:
            self.fail(node, f"normalises over axis {axis} of a {r}-D tensor; tinytrain's Softmax "
                      "normalises over the last axis only (transpose or reshape first)")
        # Opset < 13: softmax over the flattened dims axis..r-1, expressible as reshape ->
        # last-axis softmax -> reshape back.
        flat = tuple(ps[:axis - 1]) + (int(np.prod(ps[axis - 1:])),)
        t1, t2 = self.fresh(f"{x}__flat"), self.fresh(f"{node.output[0]}__flat")
        self.ps[t1], self.ps[t2] = flat, flat
        self.emit(node, "Reshape", [x], [t1], {"shape": flat},
                  name=self.fresh_node(f"{node.name}__flatten"))
        self.emit(node, "Softmax", [t1], [t2], {"axis": -1})
        self.emit(node, "Reshape", [t2], [node.output[0]], {"shape": out_ps},
                  name=self.fresh_node(f"{node.name}__unflatten"))

    def _map_Cast(self, node):
        self.fail(node, f"casts {node.input[0]!r} to {_elem_name(attr(node, 'to', 0))}; "
                  "tinytrain computes in float32 and only folds casts of constants")

    def _map_CastLike(self, node):
        self.fail(node, f"casts {node.input[0]!r} to another type; tinytrain computes in "
                  "float32 and only folds casts of constants")

    def _map_Dropout(self, node):  # only reached when folding could not prove inference mode
        self.fail(node, "could not be removed as an inference-mode Dropout", ModelImportError)

    def _map_Identity(self, node):
        self._reshape_to(node, self.act(node, 0), self.out_ps(node))

    # ==========================================================================================
    # fusions on the IR-level node list
    # ==========================================================================================
    def _consumers(self, t):
        return [n for n in self.nodes if t in n.inputs]

    def _const_uses(self, c) -> int:
        return sum(n.inputs.count(c) for n in self.nodes)

    def _private_output(self, n) -> bool:
        """n's output is read by exactly one node and is not the graph output."""
        t = n.outputs[0]
        return t not in self.og.outputs and len(self._consumers(t)) == 1

    def _producer(self, t):
        for n in self.nodes:
            if t in n.outputs:
                return n
        return None

    def _fuse(self):
        changed = True
        while changed:
            changed = False
            for n in list(self.nodes):
                if n.op == "Add" and self._fuse_bias(n):
                    changed = True
                    break
                if n.op == "_BN" and self._fold_bn(n):
                    changed = True
                    break
                if n.op == "Reshape" and self._fuse_reshape(n):
                    changed = True
                    break
                if n.op == "GlobalAveragePool" and self._fuse_gap(n):
                    changed = True
                    break
        for n in list(self.nodes):
            if n.op == "_BN":
                self._lower_bn(n)

    def _layer_before(self, n, private):
        """The Conv/Gemm whose output only n reads and whose inputs `private` (indices) are
        not shared with another node, or None."""
        p = self._producer(n.inputs[0])
        if p is None or p.op not in ("Conv", "Gemm") or not self._private_output(p):
            return None
        if any(self._const_uses(p.inputs[k]) != 1 for k in private if k < len(p.inputs)):
            return None
        return p

    def _fuse_bias(self, n) -> bool:
        consts = [i for i in n.inputs if i in self.consts]
        acts = [i for i in n.inputs if i not in self.consts]
        if len(consts) != 1 or len(acts) != 1 or n.inputs[0] != acts[0]:
            return False
        p = self._layer_before(n, (2,))
        if p is None:
            return False
        m = self.consts[p.inputs[1]].shape[0]
        ps = self.ps[p.outputs[0]]
        c = self.consts[consts[0]]
        cs = (1,) * (len(ps) - c.ndim) + c.shape
        if any(d != 1 for d in cs[1:]) or cs[0] not in (1, m):
            return False  # varies along a spatial axis, not a per-channel bias
        vec = np.broadcast_to(c.reshape(-1) if c.size else c, (m,)).astype(np.float64)
        if len(p.inputs) > 2:
            bname = p.inputs[2]
            self.consts[bname] = (self.consts[bname].astype(np.float64) + vec).astype(np.float32)
        else:
            c0 = consts[0]
            bname = c0 if self._const_uses(c0) == 1 else self.fresh(f"{c0}__bias")
            self.consts[bname] = vec.astype(np.float32)
            p.inputs.append(bname)
        self._drop_const_if_unused(consts[0], n)
        p.outputs[0] = n.outputs[0]
        self.nodes.remove(n)
        return True

    def _fold_bn(self, n) -> bool:
        p = self._layer_before(n, (1, 2))
        if p is None:
            return False
        a, c = n.attrs["a"], n.attrs["c"]
        wname = p.inputs[1]
        w = self.consts[wname].astype(np.float64)
        if w.shape[0] != a.shape[0]:
            return False
        self.consts[wname] = (w * a.reshape((-1,) + (1,) * (w.ndim - 1))).astype(np.float32)
        if len(p.inputs) > 2:
            bname = p.inputs[2]
            b = self.consts[bname].astype(np.float64)
            self.consts[bname] = (b * a + c).astype(np.float32)
        else:
            hint = n.attrs["bias_name"]
            bname = hint if hint not in self.consts else self.fresh(f"{hint}__folded")
            self.consts[bname] = c.astype(np.float32)
            self.names.add(bname)
            p.inputs.append(bname)
        p.outputs[0] = n.outputs[0]
        self.nodes.remove(n)
        return True

    def _lower_bn(self, n):
        """A BatchNormalization that cannot be folded: y = x * a + c with per-channel CONSTs
        shaped to broadcast over a sample ([C, 1, 1], [C, 1] or [C])."""
        x, y = n.inputs[0], n.outputs[0]
        ps = self.ps[x]
        shape = (ps[0],) + (1,) * (len(ps) - 1)
        a = self.add_const(f"{n.attrs['scale_name']}__bn_mul", n.attrs["a"].reshape(shape))
        c = self.add_const(f"{n.attrs['bias_name']}__bn_add", n.attrs["c"].reshape(shape))
        mid = self.fresh(f"{y}__bn_scaled")
        self.ps[mid] = ps
        k = self.nodes.index(n)
        mul = _INode(self.fresh_node(f"{n.name}__mul"), "Mul", [x, a], [mid], {}, n.src)
        add = _INode(n.name, "Add", [mid, c], [y], {}, n.src)
        self.nodes[k:k + 1] = [mul, add]

    def _fuse_reshape(self, n) -> bool:
        x = n.inputs[0]
        p = self._producer(x)
        if p is not None and p.op == "Reshape" and self._private_output(p):
            n.inputs[0] = p.inputs[0]
            self.nodes.remove(p)
            return True
        if tuple(n.attrs["shape"]) == tuple(self.ps[x]):
            y = n.outputs[0]
            if y in self.og.outputs:
                if p is None or x in self.og.outputs:
                    return False
                p.outputs[p.outputs.index(x)] = y
                for m in self.nodes:
                    m.inputs = [y if i == x else i for i in m.inputs]
            else:
                for m in self.nodes:
                    m.inputs = [x if i == y else i for i in m.inputs]
            self.nodes.remove(n)
            return True
        return False

    def _fuse_gap(self, n) -> bool:
        """GlobalAveragePool of a Reshape that keeps the channel dimension (torch's dynamo
        export runs 1-D adaptive pooling as Unsqueeze -> 2-D mean): each channel's elements are
        the same before and after, so pool the original tensor and reshape the result."""
        x = n.inputs[0]
        p = self._producer(x)
        if p is None or p.op != "Reshape" or not self._private_output(p):
            return False
        u = p.inputs[0]
        pu, px = self.ps[u], self.ps[x]
        if len(pu) not in (2, 3) or pu[0] != px[0]:
            return False
        y = n.outputs[0]
        mid = self.fresh(f"{y}__gap")
        self.ps[mid] = (pu[0],) + (1,) * (len(pu) - 1)
        self.nodes.remove(p)
        k = self.nodes.index(n)
        gap = _INode(n.name, "GlobalAveragePool", [u], [mid], {}, n.src)
        rs = _INode(self.fresh_node(f"{n.name}__reshape"), "Reshape", [mid], [y],
                    {"shape": tuple(self.ps[y])}, n.src)
        self.nodes[k:k + 1] = [gap, rs]
        return True

    def _drop_const_if_unused(self, c, removing):
        if sum(m.inputs.count(c) for m in self.nodes if m is not removing) == 0:
            self.consts.pop(c, None)

    # ==========================================================================================
    # building the IR graph
    # ==========================================================================================
    def _build(self) -> Graph:
        og, batch = self.og, self.batch
        used = {i for n in self.nodes for i in n.inputs}
        self.consts = {k: v for k, v in self.consts.items() if k in used}
        roles: dict[str, tuple] = {}
        for n in self.nodes:
            op = get_op(n.op)
            pk = dict(op.param_inputs) or _PARAM_FALLBACK.get(n.op, {})
            for k, i in enumerate(n.inputs):
                if i in self.consts:
                    kind = pk.get(k)
                    if kind is not None:
                        roles[i] = (TensorRole.PARAM, kind)
                    else:
                        roles.setdefault(i, (TensorRole.CONST, None))
        tensors: dict[str, Tensor] = {}
        tensors[og.input] = Tensor(og.input, (batch,) + self.ps[og.input], "f32", TensorRole.INPUT)
        # Constants in order of first use, so graph.params lists layers in execution order.
        order = list(dict.fromkeys(i for n in self.nodes for i in n.inputs if i in self.consts))
        for name in order:
            role, kind = roles[name]
            tensors[name] = Tensor(name, self.consts[name].shape, "f32", role, kind)
        shapes = {name: t.shape for name, t in tensors.items()}
        nodes: list[Node] = []
        seen: set[str] = set()
        for n in self.nodes:
            name = n.name
            k = 1
            while name in seen:
                k += 1
                name = f"{n.name}_{k}"
            seen.add(name)
            attrs = dict(n.attrs)
            op = get_op(n.op)
            in_shapes = [shapes[i] for i in n.inputs]
            try:
                out = tuple(int(d) for d in op.shape(in_shapes, attrs))
            except ShapeError as e:
                raise ShapeError(f"{n.label()}: {e}") from None
            y = n.outputs[0]
            want = (batch,) + tuple(self.ps[y]) if y in self.ps else None
            if want is not None and out != want:
                raise ShapeError(
                    f"{n.label()}: tinytrain's {n.op} gives output shape {out} for inputs "
                    f"{in_shapes}, but ONNX says {want} (batch {batch}). tinytrain does not "
                    "support this combination of attributes.")
            shapes[y] = out
            tensors[y] = Tensor(y, out, "f32", TensorRole.ACTIVATION)
            nodes.append(Node(name, n.op, tuple(n.inputs), (y,), attrs))
        initializers = {k: self.consts[k] for k in order}
        graph = Graph(tensors=tensors, nodes=tuple(nodes), inputs=(og.input,),
                      outputs=(og.outputs[0],), initializers=initializers,
                      name=og.name or "model")
        return graph.toposorted().validate()
