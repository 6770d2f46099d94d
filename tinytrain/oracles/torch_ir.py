"""Run an IR graph with torch.nn.functional: the PyTorch twin of a tinytrain model.

Used as the gradient oracle for whole models (torch.autograd) and as the PyTorch column of the
benchmarks. Each IR op maps to one torch call; nothing here shares code with tinytrain.ops.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _conv(x, w, b, a):
    pads = tuple(a.get("pads", (0,) * (2 * (x.dim() - 2))))
    r = x.dim() - 2
    begin, end = pads[:r], pads[r:]
    if any(bp != ep for bp, ep in zip(begin, end)):
        fpad = []
        for i in reversed(range(r)):
            fpad += [begin[i], end[i]]
        x = F.pad(x, fpad)
        pad = 0
    else:
        pad = tuple(begin)
    f = F.conv2d if r == 2 else F.conv1d
    return f(x, w, b, stride=tuple(a.get("strides", (1,) * r)), padding=pad,
             groups=int(a.get("group", 1)))


def _pool(kind):
    def f(x, a):
        r = x.dim() - 2
        ks = tuple(a["kernel_shape"])
        st = tuple(a.get("strides", (1,) * r))
        pads = tuple(a.get("pads", (0,) * (2 * r)))
        begin, end = pads[:r], pads[r:]
        fpad = []
        for i in reversed(range(r)):
            fpad += [begin[i], end[i]]
        if kind == "max":
            x = F.pad(x, fpad, value=-float("inf"))
            fn = F.max_pool2d if r == 2 else F.max_pool1d
            return fn(x, ks, st, ceil_mode=bool(a.get("ceil_mode", 0)))
        if a.get("count_include_pad", 0) or not any(pads):
            x = F.pad(x, fpad)
            fn = F.avg_pool2d if r == 2 else F.avg_pool1d
            return fn(x, ks, st, ceil_mode=bool(a.get("ceil_mode", 0)))
        ones = torch.ones_like(x)
        fn = F.avg_pool2d if r == 2 else F.avg_pool1d
        s = fn(F.pad(x, fpad), ks, st, ceil_mode=bool(a.get("ceil_mode", 0)))
        c = fn(F.pad(ones, fpad), ks, st, ceil_mode=bool(a.get("ceil_mode", 0)))
        return s / c
    return f


OPS = {
    "Gemm": lambda xs, a: F.linear(xs[0], xs[1], xs[2] if len(xs) > 2 else None),
    "Conv": lambda xs, a: _conv(xs[0], xs[1], xs[2] if len(xs) > 2 else None, a),
    "Relu": lambda xs, a: F.relu(xs[0]),
    "Clip": lambda xs, a: F.hardtanh(xs[0], a["min"], a["max"]),
    "LeakyRelu": lambda xs, a: F.leaky_relu(xs[0], a.get("alpha", 0.01)),
    "Sigmoid": lambda xs, a: torch.sigmoid(xs[0]),
    "Tanh": lambda xs, a: torch.tanh(xs[0]),
    "MaxPool": lambda xs, a: _pool("max")(xs[0], a),
    "AveragePool": lambda xs, a: _pool("avg")(xs[0], a),
    "GlobalAveragePool": lambda xs, a: xs[0].mean(dim=tuple(range(2, xs[0].dim())), keepdim=True),
    "Add": lambda xs, a: xs[0] + xs[1],
    "Mul": lambda xs, a: xs[0] * xs[1],
    "Reshape": lambda xs, a: xs[0].reshape((xs[0].shape[0],) + tuple(a["shape"])),
    "Softmax": lambda xs, a: torch.softmax(xs[0], dim=-1),
}


class TorchModel(torch.nn.Module):
    def __init__(self, graph, trainable=None, dtype=torch.float32):
        super().__init__()
        self.graph = graph
        trainable = set(graph.params if trainable is None else trainable)
        self.names = {}
        for i, (k, v) in enumerate(graph.initializers.items()):
            p = torch.nn.Parameter(torch.tensor(np.asarray(v), dtype=dtype),
                                   requires_grad=k in trainable)
            self.register_parameter(f"p{i}", p)
            self.names[k] = f"p{i}"

    def tensor(self, name):
        return getattr(self, self.names[name])

    def forward(self, x):
        env = {self.graph.inputs[0]: x}
        for n in self.graph.nodes:
            xs = [env[i] if i in env else self.tensor(i) for i in n.inputs if i]
            env[n.outputs[0]] = OPS[n.op](xs, n.attrs)
        return env[self.graph.outputs[0]]

    def named_ir_params(self):
        return {k: self.tensor(k) for k in self.names}
