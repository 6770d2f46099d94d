"""ONNX-level clean-up that runs before the mapping to IR ops.

Works on a small mutable view of the ONNX graph (:class:`OnnxGraph`): nodes in topological order,
constants as numpy arrays, one graph input with a concrete shape (the batch dimension already
fixed), and shapes from ONNX shape inference. :func:`fold_constants` then repeats, until nothing
changes:

- shape inference (``onnx.shape_inference``, strict, with data propagation);
- constant folding: every node whose inputs are all constants (Constant, Cast of a weight, the
  ``Shape -> Gather -> Unsqueeze -> Concat`` chains that feed a Reshape, ...) is run once with
  ``onnx.reference`` and replaced by its value; ``Shape``/``Size`` of a tensor with a known
  static shape become constants;
- pass-through removal: Identity, Dropout in inference mode, Cast/CastLike to the type the
  tensor already has;
- dead-code elimination (nodes and initializers that do not reach the graph output).

Everything here is ONNX semantics; nothing knows about tinytrain's op set.
"""
from __future__ import annotations

import warnings

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import GraphError, ModelImportError

DEFAULT_DOMAINS = ("", "ai.onnx")

# Never folded even when every input is constant: results differ from run to run.
NONDETERMINISTIC = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
                    "Multinomial", "Bernoulli"}

MAX_FOLD_ITERATIONS = 16


def node_label(node: onnx.NodeProto) -> str:
    return f"node {node.name!r} ({node.op_type})"


def attr(node: onnx.NodeProto, name: str, default=None):
    """Attribute value as a Python object (ints, floats, str, tuples, numpy arrays)."""
    for a in node.attribute:
        if a.name == name:
            v = helper.get_attribute_value(a)
            if isinstance(v, bytes):
                return v.decode("utf-8", "replace")
            if isinstance(v, onnx.TensorProto):
                return numpy_helper.to_array(v)
            if isinstance(v, list):
                return tuple(x.decode() if isinstance(x, bytes) else x for x in v)
            return v
    return default


def has_subgraph(node: onnx.NodeProto) -> bool:
    return any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
               for a in node.attribute)


def toposort(nodes: list[onnx.NodeProto], available: set[str]) -> list[onnx.NodeProto]:
    """Stable topological order (ONNX requires one; some tools write nodes out of order).
    Raises GraphError naming the nodes of a cycle, or the node reading a tensor nobody makes."""
    produced = {}
    for n in nodes:
        for o in n.output:
            if o:
                produced[o] = n
    ready = set(available)
    order: list[onnx.NodeProto] = []
    pending = list(nodes)
    while pending:
        for k, n in enumerate(pending):
            if all((not i) or i in ready for i in n.input):
                order.append(n)
                ready.update(o for o in n.output if o)
                del pending[k]
                break
        else:
            missing = [(n, i) for n in pending for i in n.input if i and i not in ready]
            dangling = [(n, i) for n, i in missing if i not in produced]
            if dangling:
                n, i = dangling[0]
                raise GraphError(
                    f"{node_label(n)} reads tensor {i!r}, which no node produces and which is "
                    "neither a graph input nor an initializer: the ONNX file is incomplete.")
            cycle = _find_cycle(pending, produced)
            path = " -> ".join(f"{n.name!r} ({n.op_type})" for n in cycle)
            raise GraphError(
                f"the graph has a cycle: {path} -> {cycle[0].name!r}; each of these nodes waits "
                "for an output of the next. tinytrain trains feed-forward graphs only (no "
                "loops or recurrent edges); export the model unrolled.")
    return order


def _find_cycle(pending, produced):
    pend = {id(n) for n in pending}
    n = pending[0]
    seen: list = []
    while id(n) not in {id(s) for s in seen}:
        seen.append(n)
        n = next(produced[i] for i in n.input
                 if i in produced and id(produced[i]) in pend)
    start = next(k for k, s in enumerate(seen) if s is n)
    # `seen` follows "reads from" edges; print the cycle in data-flow order.
    return list(reversed(seen[start:]))


def _shape_of(vi: onnx.ValueInfoProto):
    t = vi.type
    if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return None
    dims = []
    for d in t.tensor_type.shape.dim:
        if not d.HasField("dim_value"):
            return None
        dims.append(int(d.dim_value))
    return tuple(dims)


class OnnxGraph:
    """A mutable, topologically ordered view of one ONNX graph with one data input."""

    def __init__(self, nodes, consts, input_name, input_shape, input_elem, outputs, opsets,
                 ir_version, name):
        self.nodes: list[onnx.NodeProto] = list(nodes)
        self.consts: dict[str, np.ndarray] = dict(consts)
        self.input = input_name
        self.input_shape = tuple(input_shape)
        self.input_elem = input_elem
        self.outputs: list[str] = list(outputs)
        self.output_elem: dict[str, int] = {}
        self.opsets = list(opsets)
        # IR < 4 requires every initializer to be listed as a graph input; the rebuilt graphs
        # here keep constants as initializers only, so they are written as IR 7 (opset 12's).
        self.ir_version = max(int(ir_version), 7)
        self.name = name
        self.shapes: dict[str, tuple | None] = {}
        self.elems: dict[str, int] = {}

    @property
    def opset(self) -> int:
        return next(o.version for o in self.opsets if o.domain in DEFAULT_DOMAINS)

    # ---- queries -------------------------------------------------------------------------
    def producer(self, name):
        for n in self.nodes:
            if name in n.output:
                return n
        return None

    def consumers(self, name):
        return [n for n in self.nodes if name in n.input]

    def is_used(self, name) -> bool:
        return name in self.outputs or any(name in n.input for n in self.nodes)

    # ---- ONNX round trip -----------------------------------------------------------------
    def to_model(self, cut: dict | None = None) -> onnx.ModelProto:
        """The graph as a ModelProto. `cut` maps node outputs to shapes: those nodes are left
        out and their outputs become graph inputs of that shape (see infer)."""
        cut = cut or {}
        inputs = [helper.make_tensor_value_info(self.input, self.input_elem, self.input_shape)]
        nodes = []
        for n in self.nodes:
            if n.output[0] in cut:
                for k, o in enumerate(n.output):
                    if o:
                        elem = self.input_elem if k == 0 else onnx.TensorProto.INT64
                        inputs.append(helper.make_tensor_value_info(o, elem, cut[n.output[0]]))
            else:
                nodes.append(n)
        outputs = [helper.make_tensor_value_info(o, self.output_elem.get(o, self.input_elem), None)
                   for o in self.outputs]
        inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in self.consts.items()]
        g = helper.make_graph(nodes, self.name or "model", inputs, outputs, inits)
        return helper.make_model(g, opset_imports=self.opsets, ir_version=self.ir_version)

    def infer(self) -> None:
        """Run ONNX shape inference; fill self.shapes / self.elems (None = not static).

        Before opset 22, ONNX's shape inference for ceil-mode MaxPool/AveragePool kept a last
        window that starts past the input and its begin padding, which onnxruntime, the
        reference evaluator and PyTorch all drop (opset 22 documents the rule). Such pool nodes
        are cut out and their outputs fed in with the runtime shape, one at a time."""
        cut: dict[str, tuple] = {}
        if self.opset < 22 and any(n.op_type in ("MaxPool", "AveragePool")
                                   and attr(n, "ceil_mode", 0) for n in self.nodes):
            # Lenient passes first: the wrong size may make a later node fail strict inference.
            for _ in range(len(self.nodes) + 1):
                fix = self._ceil_pool_fix(self._infer_once(cut, strict=False)[0], cut)
                if fix is None:
                    break
                cut[fix[0]] = fix[1]
        self.shapes, self.elems = self._infer_once(cut)

    def _infer_once(self, cut, strict=True):
        model = self.to_model(cut)
        try:
            inferred = onnx.shape_inference.infer_shapes(model, check_type=strict,
                                                         strict_mode=strict, data_prop=True)
        except Exception as e:  # InferenceError, ValidationError, ...
            raise ModelImportError(
                "ONNX shape inference failed on the model (with the batch dimension fixed to "
                f"{self.input_shape[0]}): {_first_lines(e)}. The model is inconsistent or "
                "uses an op or attribute this onnx version cannot type-check.") from None
        g = inferred.graph
        shapes, elems = {}, {}
        for vi in list(g.input) + list(g.value_info) + list(g.output):
            if vi.type.HasField("tensor_type"):
                shapes[vi.name] = _shape_of(vi)
                elems[vi.name] = vi.type.tensor_type.elem_type
        for k, v in self.consts.items():
            shapes[k] = tuple(np.asarray(v).shape)
            elems[k] = helper.np_dtype_to_tensor_dtype(np.asarray(v).dtype)
        for k, v in cut.items():
            shapes[k] = tuple(v)
        return shapes, elems

    def _ceil_pool_fix(self, shapes, cut):
        if self.opset >= 22:
            return None
        for n in self.nodes:
            auto = attr(n, "auto_pad", "NOTSET")
            if n.op_type not in ("MaxPool", "AveragePool") or not attr(n, "ceil_mode", 0) \
                    or n.output[0] in cut or auto not in ("NOTSET", "VALID"):
                continue
            x = shapes.get(n.input[0])
            if x is None or len(x) < 3:
                continue
            sp = len(x) - 2
            if any(d != 1 for d in attr(n, "dilations", (1,) * sp)):
                continue
            ks = attr(n, "kernel_shape", ())
            st = attr(n, "strides", (1,) * sp)
            pads = (0,) * 2 * sp if auto == "VALID" else attr(n, "pads", (0,) * 2 * sp)
            out = tuple(x[:2]) + tuple(
                ceil_pool_len(x[2 + i], ks[i], st[i], pads[i], pads[i + sp]) for i in range(sp))
            if shapes.get(n.output[0]) != out:
                return n.output[0], out
        return None

    # ---- rewriting -----------------------------------------------------------------------
    def rename_everywhere(self, old: str, new: str) -> None:
        for n in self.nodes:
            for k, i in enumerate(n.input):
                if i == old:
                    n.input[k] = new
            for k, o in enumerate(n.output):
                if o == old:
                    n.output[k] = new
        self.outputs = [new if o == old else o for o in self.outputs]

    def bypass(self, src: str, dst: str) -> None:
        """Remove a pass-through node dst = f(src) == src (the node itself is dropped by the
        caller). A graph output keeps its name: the producer of src is renamed instead."""
        if dst in self.outputs and src not in self.outputs and src != self.input \
                and src not in self.consts:
            self.rename_everywhere(src, dst)
            return
        for n in self.nodes:
            for k, i in enumerate(n.input):
                if i == dst:
                    n.input[k] = src
        self.outputs = [src if o == dst else o for o in self.outputs]

    def eliminate_dead_code(self) -> None:
        used = set(self.outputs)
        keep = []
        for n in reversed(self.nodes):
            if any(o in used for o in n.output if o):
                keep.append(n)
                used.update(i for i in n.input if i)
        self.nodes = keep[::-1]
        self.consts = {k: v for k, v in self.consts.items() if k in used}

    # ---- constant folding ----------------------------------------------------------------
    def _evaluate(self, node: onnx.NodeProto) -> list[np.ndarray]:
        from onnx.reference import ReferenceEvaluator

        feeds = {i: self.consts[i] for i in node.input if i}
        ins = [helper.make_tensor_value_info(i, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
               for i, v in feeds.items()]
        outs = [helper.make_empty_tensor_value_info(o) for o in node.output if o]
        g = helper.make_graph([node], "fold", ins, outs)
        m = helper.make_model(g, opset_imports=self.opsets, ir_version=self.ir_version)
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                res = ReferenceEvaluator(m).run(None, feeds)
        except Exception as e:
            raise ModelImportError(
                f"{node_label(node)} computes a constant, but evaluating it failed: "
                f"{_first_lines(e)}. Check the node's inputs and attributes.") from None
        return [np.asarray(r) for r in res]

    def _fold_pass(self) -> bool:
        changed = False
        kept: list[onnx.NodeProto] = []
        for node in list(self.nodes):
            op = node.op_type
            if node.domain not in DEFAULT_DOMAINS or has_subgraph(node):
                kept.append(node)
                continue
            ins = [i for i in node.input if i]
            if op in ("Shape", "Size") and ins and ins[0] not in self.consts:
                shape = self.shapes.get(ins[0])
                if shape is not None:
                    if op == "Shape":
                        start, end = attr(node, "start", 0), attr(node, "end", None)
                        val = np.array(shape[start:end], dtype=np.int64)
                    else:
                        val = np.array(int(np.prod(shape, dtype=np.int64)), dtype=np.int64)
                    self.consts[node.output[0]] = val
                    changed = True
                    continue
            if op == "CastLike" and ins[0] in self.consts and ins[1] not in self.consts \
                    and self.elems.get(ins[1]):
                # Only the type of the second input matters (torch's dynamo exporter casts
                # constants "like" the model input).
                to = self.elems[ins[1]]
                cast = helper.make_node("Cast", [ins[0]], [node.output[0]], node.name, to=to)
                self.consts[node.output[0]] = self._evaluate(cast)[0]
                changed = True
                continue
            if op not in NONDETERMINISTIC and all(i in self.consts for i in ins):
                outs = [o for o in node.output if o]
                for o, v in zip(outs, self._evaluate(node)):
                    self.consts[o] = v
                changed = True
                continue
            src = self._pass_through_source(node)
            if src is not None:
                # The node is dropped here, so bypass() only rewires the others.
                self.nodes = [n for n in self.nodes if n is not node]
                self.bypass(src, node.output[0])
                changed = True
                continue
            kept.append(node)
        self.nodes = kept
        self.eliminate_dead_code()
        return changed

    def _pass_through_source(self, node: onnx.NodeProto) -> str | None:
        op = node.op_type
        if op == "Identity":
            return node.input[0]
        if op == "Dropout":
            if len(node.output) > 1 and node.output[1] and self.is_used(node.output[1]):
                raise ModelImportError(
                    f"{node_label(node)}: its mask output {node.output[1]!r} is used by the "
                    "model; tinytrain imports Dropout in inference mode only (an identity), "
                    "where the mask is not defined. Export the model in eval mode.")
            if len(node.input) > 2 and node.input[2]:
                tm = self.consts.get(node.input[2])
                if tm is None or bool(np.asarray(tm).reshape(-1)[0]):
                    raise ModelImportError(
                        f"{node_label(node)} runs in training mode (training_mode is "
                        f"{'computed at run time' if tm is None else 'true'}); tinytrain imports "
                        "Dropout in inference mode only. Export the model in eval mode "
                        "(model.eval()).")
            return node.input[0]
        if op == "Cast":
            src = node.input[0]
            if self.elems.get(src) == attr(node, "to"):
                return src
        if op == "CastLike":
            src = node.input[0]
            like = self.elems.get(node.input[1])
            if like is not None and self.elems.get(src) == like:
                return src
        return None

    def fold_constants(self) -> None:
        for _ in range(MAX_FOLD_ITERATIONS):
            self.infer()
            if not self._fold_pass():
                break
        self.infer()


def ceil_pool_len(n: int, k: int, s: int, begin: int, end: int) -> int:
    """Output length of a ceil-mode pool: windows may run past the end padding, but none may
    start beyond the input and its begin padding."""
    o = -(-(n + begin + end - k) // s) + 1
    if (o - 1) * s >= n + begin:
        o -= 1
    return o


def _first_lines(e: BaseException, n: int = 3) -> str:
    text = str(e).strip() or type(e).__name__
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " ".join(lines[:n])
