"""A small Python builder for IR graphs (tests, examples, models not coming from ONNX)."""
from __future__ import annotations

import numpy as np

from ..ir import Graph, Node, Tensor, TensorRole, get_op


class GraphBuilder:
    def __init__(self, name: str = "model", seed: int = 0):
        self.name = name
        self.tensors: dict[str, Tensor] = {}
        self.nodes: list[Node] = []
        self.inputs: list[str] = []
        self.init: dict[str, np.ndarray] = {}
        self.rng = np.random.default_rng(seed)

    def input(self, name: str, shape) -> str:
        self.tensors[name] = Tensor(name, tuple(shape), "f32", TensorRole.INPUT)
        self.inputs.append(name)
        return name

    def param(self, name: str, value, kind: str = "weight", const: bool = False) -> str:
        v = np.asarray(value, dtype=np.float32)
        role = TensorRole.CONST if const else TensorRole.PARAM
        self.tensors[name] = Tensor(name, v.shape, "f32", role, None if const else kind)
        self.init[name] = v
        return name

    def op(self, op: str, inputs, attrs=None, name: str | None = None) -> str:
        attrs = dict(attrs or {})
        name = name or f"{op.lower()}{len(self.nodes)}"
        out = name + ".out" if not name.endswith(".out") else name
        shape = get_op(op).shape([self.tensors[i].shape for i in inputs], attrs)
        self.tensors[out] = Tensor(out, tuple(shape), "f32", TensorRole.ACTIVATION)
        self.nodes.append(Node(name, op, tuple(inputs), (out,), attrs))
        return out

    # ---- layers with He-initialised parameters -------------------------------------------
    def gemm(self, x: str, out_features: int, name: str, bias: bool = True) -> str:
        k = self.tensors[x].shape[1]
        w = self.param(f"{name}.weight", self.rng.normal(0, np.sqrt(2 / k), (out_features, k)))
        ins = [x, w]
        if bias:
            ins.append(self.param(f"{name}.bias", np.zeros(out_features), "bias"))
        return self.op("Gemm", ins, name=name)

    def conv(self, x: str, out_channels: int, k: int, name: str, stride=1, pad=0, group=1,
             bias: bool = True) -> str:
        shp = self.tensors[x].shape
        c = shp[1]
        rank = len(shp) - 2
        fan = c // group * k ** rank
        w = self.param(f"{name}.weight", self.rng.normal(0, np.sqrt(2 / fan),
                                                          (out_channels, c // group) + (k,) * rank))
        ins = [x, w]
        if bias:
            ins.append(self.param(f"{name}.bias", self.rng.normal(0, 0.05, out_channels), "bias"))
        pads = pad if isinstance(pad, (tuple, list)) else (pad,) * (2 * rank)
        strides = stride if isinstance(stride, (tuple, list)) else (stride,) * rank
        return self.op("Conv", ins, {"strides": tuple(strides), "pads": tuple(pads),
                                     "group": group}, name=name)

    def build(self, outputs) -> Graph:
        outputs = [outputs] if isinstance(outputs, str) else list(outputs)
        return Graph(dict(self.tensors), tuple(self.nodes), tuple(self.inputs), tuple(outputs),
                     dict(self.init), self.name).toposorted().validate()
