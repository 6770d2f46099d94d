"""Models for the frontend tests: small PyTorch nets exported to ONNX both ways (the legacy
TorchScript exporter and ``dynamo=True``), and the helpers that compare tinytrain's reference
executor with onnxruntime."""
from __future__ import annotations

import contextlib
import functools
import io
import logging
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from tinytrain.reference import run_forward

RTOL = 1e-5


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(20, 16)
        self.fc2 = nn.Linear(16, 5)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))


def cnn():
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(8 * 2 * 2, 10))


def dscnn():
    def block(cin, cout, k, stride, groups):
        return [nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False),
                nn.BatchNorm2d(cout), nn.ReLU6()]
    return nn.Sequential(
        *block(1, 8, 3, 1, 1),
        *block(8, 8, 3, 1, 8), *block(8, 16, 1, 1, 1),        # depthwise + pointwise
        *block(16, 16, 3, 2, 16), *block(16, 16, 1, 1, 1),    # strided depthwise + pointwise
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


class ResNet8(nn.Module):
    """Stem + two residual blocks (identity shortcut, strided 1x1-conv shortcut)."""

    def __init__(self):
        super().__init__()
        def cbr(cin, cout, stride=1, relu=True, k=3):
            layers = [nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2), nn.BatchNorm2d(cout)]
            return nn.Sequential(*(layers + [nn.ReLU()] if relu else layers))
        self.stem = cbr(1, 8)
        self.a = nn.Sequential(cbr(8, 8), cbr(8, 8, relu=False))
        self.b = nn.Sequential(cbr(8, 16, stride=2), cbr(16, 16, relu=False))
        self.short = cbr(8, 16, stride=2, relu=False, k=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(x + self.a(x))
        x = torch.relu(self.b(x) + self.short(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def conv1d():
    return nn.Sequential(
        nn.Conv1d(3, 8, 5, padding=2), nn.BatchNorm1d(8), nn.ReLU(), nn.MaxPool1d(2),
        nn.Conv1d(8, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
        nn.Linear(8, 4))


def activations():
    return nn.Sequential(
        nn.Conv2d(2, 4, 3), nn.Sigmoid(), nn.AvgPool2d(2), nn.Conv2d(4, 4, 1), nn.Tanh(),
        nn.Flatten(), nn.Linear(4 * 3 * 3, 8), nn.LeakyReLU(0.2), nn.Linear(8, 3),
        nn.Softmax(dim=1))


# name -> (builder, input shape of one sample)
TORCH_MODELS = {
    "mlp": (MLP, (4, 5)),
    "cnn": (cnn, (1, 8, 8)),
    "dscnn": (dscnn, (1, 8, 8)),
    "resnet8": (ResNet8, (1, 8, 8)),
    "conv1d": (conv1d, (3, 32)),
    "activations": (activations, (2, 8, 8)),
}

# exporter variants: (dynamo, opset, extra kwargs)
EXPORTERS = {
    # TorchScript exporter, dynamic batch; torch folds eval BatchNorm into the convs itself.
    "legacy17": (False, 17, {}),
    # No constant folding: BatchNormalization nodes and Constant nodes reach tinytrain.
    "legacy13-nofold": (False, 13, {"do_constant_folding": False}),
    # torch.export based exporter (static batch, onnxscript-optimised graph).
    "dynamo18": (True, 18, {}),
    # ... without the onnxscript optimiser: BatchNormalization, Shape/Expand/CastLike chains.
    "dynamo18-noopt": (True, 18, {"optimize": False}),
}


def build_torch(name: str) -> tuple[nn.Module, tuple]:
    torch.manual_seed(0)
    builder, shape = TORCH_MODELS[name]
    model = builder()
    # Non-trivial running statistics, so BatchNorm folding is really exercised.
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            with torch.no_grad():
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 2 - 1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) * 2 - 1)
    return model.eval(), shape


@functools.lru_cache(maxsize=None)
def torch_onnx(name: str, exporter: str, batch: int = 2) -> bytes:
    """The serialized ONNX model of TORCH_MODELS[name] exported with EXPORTERS[exporter]."""
    model, shape = build_torch(name)
    dynamo, opset, extra = EXPORTERS[exporter]
    x = torch.randn((batch,) + shape, generator=torch.Generator().manual_seed(2))
    quiet = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(quiet), \
            contextlib.redirect_stderr(quiet):
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            if dynamo:
                prog = torch.onnx.export(model, (x,), dynamo=True, opset_version=opset, **extra)
                return prog.model_proto.SerializeToString()
            buf = io.BytesIO()
            torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=opset,
                              input_names=["x"], output_names=["y"],
                              dynamic_axes={"x": {0: "N"}, "y": {0: "N"}}, **extra)
            return buf.getvalue()
        finally:
            logging.disable(logging.NOTSET)


def ort_run(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def tt_run(graph, x: np.ndarray) -> np.ndarray:
    return run_forward(graph, {graph.inputs[0]: x}, dtype=np.float64)[graph.outputs[0]]


def assert_close(got, want, rtol=RTOL, what=""):
    """Max-norm relative error: max|got - want| <= rtol * max|want|."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    scale = max(float(np.abs(want).max(initial=0.0)), 1e-30)
    err = float(np.abs(got - want).max(initial=0.0)) / scale
    assert err <= rtol, f"{what}: relative error {err:.3g} > {rtol}"


def op_types(model_bytes: bytes) -> list[str]:
    return [n.op_type for n in onnx.load_from_string(model_bytes).graph.node]
