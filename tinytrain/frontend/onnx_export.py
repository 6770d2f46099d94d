"""IR -> ONNX export: give users their trained weights back as a standard ONNX model.

``export_onnx(graph, params, path, opset=17)`` writes the forward graph with ``params``
(trained values; any parameter not given keeps the graph's initial value). Each IR op becomes
the ONNX op it came from: Gemm with transB=1 (W is [out, in]), Conv/pools with explicit pads,
Reshape with a shape initializer whose batch entry is -1, Clip with min/max inputs, Softmax over
the last axis. The batch dimension of the input and output is symbolic ("N"). The result is
checked with ``onnx.checker`` (full check, i.e. with shape inference) before it is written.
"""
from __future__ import annotations

import os
from typing import Mapping

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import ExportError
from ..ir import Graph, TensorRole

MIN_OPSET, MAX_OPSET = 13, 21
_BATCH = "N"


def _conv_like(node, kernel):
    return {"kernel_shape": [int(k) for k in kernel],
            "strides": [int(s) for s in node.attrs["strides"]],
            "pads": [int(p) for p in node.attrs["pads"]]}


def export_onnx(graph: Graph, params: Mapping[str, np.ndarray] | None, path, opset: int = 17,
                producer: str = "tinytrain") -> onnx.ModelProto:
    """Write ``graph`` with ``params`` as an ONNX model at ``path`` (None: do not write).
    Returns the ModelProto. Raises ExportError for ops or values ONNX cannot express."""
    if not MIN_OPSET <= int(opset) <= MAX_OPSET:
        raise ExportError(f"export_onnx writes opsets {MIN_OPSET} to {MAX_OPSET}, not {opset}.")
    params = dict(params or {})
    unknown = sorted(set(params) - set(graph.initializers))
    if unknown:
        raise ExportError(f"params {unknown[:5]} are not parameters of graph {graph.name!r}; "
                          f"its parameters are {graph.params}.")
    inits: list[onnx.TensorProto] = []
    for name, v0 in graph.initializers.items():
        v = np.asarray(params.get(name, v0))
        if v.shape != tuple(v0.shape):
            raise ExportError(f"parameter {name!r} has shape {v.shape}, the graph expects "
                              f"{tuple(v0.shape)}.")
        if not np.all(np.isfinite(v)):
            raise ExportError(f"parameter {name!r} holds NaN or Inf; refusing to export it.")
        inits.append(numpy_helper.from_array(np.ascontiguousarray(v, dtype=np.float32), name))

    taken = set(graph.tensors) | {n.name for n in graph.nodes}

    def fresh(base):
        name, k = base, 1
        while name in taken:
            k += 1
            name = f"{base}_{k}"
        taken.add(name)
        return name

    nodes: list[onnx.NodeProto] = []
    for n in graph.nodes:
        ins, outs = list(n.inputs), list(n.outputs)
        a = n.attrs
        if n.op == "Gemm":
            nodes.append(helper.make_node("Gemm", ins, outs, n.name, transB=1))
        elif n.op == "Conv":
            w = graph.tensors[ins[1]].shape
            nodes.append(helper.make_node("Conv", ins, outs, n.name, group=int(a.get("group", 1)),
                                          dilations=[1] * (len(w) - 2), **_conv_like(n, w[2:])))
        elif n.op in ("MaxPool", "AveragePool"):
            kw = _conv_like(n, a["kernel_shape"])
            kw["ceil_mode"] = int(a.get("ceil_mode", 0))
            if n.op == "AveragePool":
                kw["count_include_pad"] = int(a.get("count_include_pad", 0))
            nodes.append(helper.make_node(n.op, ins, outs, n.name, **kw))
        elif n.op in ("GlobalAveragePool", "Relu", "Sigmoid", "Tanh", "Add", "Mul"):
            nodes.append(helper.make_node(n.op, ins, outs, n.name))
        elif n.op == "LeakyRelu":
            nodes.append(helper.make_node("LeakyRelu", ins, outs, n.name, alpha=float(a["alpha"])))
        elif n.op == "Clip":
            lo, hi = fresh(f"{n.name}__min"), fresh(f"{n.name}__max")
            inits.append(numpy_helper.from_array(np.array(a["min"], dtype=np.float32), lo))
            inits.append(numpy_helper.from_array(np.array(a["max"], dtype=np.float32), hi))
            nodes.append(helper.make_node("Clip", [ins[0], lo, hi], outs, n.name))
        elif n.op == "Reshape":
            sh = fresh(f"{n.name}__shape")
            inits.append(numpy_helper.from_array(
                np.array((-1,) + tuple(int(d) for d in a["shape"]), dtype=np.int64), sh))
            nodes.append(helper.make_node("Reshape", [ins[0], sh], outs, n.name))
        elif n.op == "Softmax":
            rank = len(graph.tensors[ins[0]].shape)
            nodes.append(helper.make_node("Softmax", ins, outs, n.name, axis=rank - 1))
        else:
            raise ExportError(
                f"node {n.name!r} ({n.op}) cannot be exported to ONNX: export_onnx writes the "
                "forward graph (Gemm, Conv, pools, activations, Reshape, Add, Mul, Softmax); "
                "export the graph before losses or training steps are added.")

    def vi(name):
        t = graph.tensors[name]
        return helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT,
                                             [_BATCH] + list(t.shape[1:]))

    value_info = [vi(o) for n in graph.nodes for o in n.outputs if o not in graph.outputs]
    for name in graph.inputs:
        if graph.tensors[name].role is not TensorRole.INPUT:
            raise ExportError(f"graph input {name!r} is not an input tensor.")
    g = helper.make_graph(nodes, graph.name or "model", [vi(i) for i in graph.inputs],
                          [vi(o) for o in graph.outputs], inits, value_info=value_info)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", int(opset))],
                              producer_name=producer)
    # The oldest IR version that carries this opset, so older runtimes load the file.
    model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:
        raise ExportError(f"the exported ONNX model does not pass onnx.checker: "
                          f"{str(e).strip().splitlines()[0] if str(e).strip() else e}") from None
    if path is not None:
        try:
            d = os.path.dirname(os.fspath(path))
            if d:
                os.makedirs(d, exist_ok=True)
            onnx.save(model, os.fspath(path))
        except OSError as e:
            raise ExportError(f"cannot write {os.fspath(path)!r}: {e.strerror or e}.") from None
    return model
