"""PyTorch models exported with both ONNX exporters import into the IR and reproduce
onnxruntime's outputs (float64 reference executor, relative error <= 1e-5)."""
import numpy as np
import pytest

from tinytrain.frontend import import_onnx
from tinytrain.ir import TensorRole

from ._models import EXPORTERS, TORCH_MODELS, assert_close, op_types, ort_run, torch_onnx, tt_run

# Every exporter variant must give the same IR: BatchNorm folded into the conv before it,
# Flatten / view / Squeeze+Unsqueeze chains as one Reshape, ReduceMean as GlobalAveragePool.
EXPECTED_OPS = {
    "mlp": ["Reshape", "Gemm", "Relu", "Gemm"],
    "cnn": ["Conv", "Relu", "MaxPool", "Conv", "Relu", "MaxPool", "Reshape", "Gemm"],
    "dscnn": ["Conv", "Clip"] * 5 + ["GlobalAveragePool", "Reshape", "Gemm"],
    "resnet8": ["Conv", "Relu", "Conv", "Relu", "Conv", "Add", "Relu", "Conv", "Relu", "Conv",
                "Conv", "Add", "Relu", "GlobalAveragePool", "Reshape", "Gemm"],
    "conv1d": ["Conv", "Relu", "MaxPool", "Conv", "Relu", "GlobalAveragePool", "Reshape", "Gemm"],
    "activations": ["Conv", "Sigmoid", "AveragePool", "Conv", "Tanh", "Reshape", "Gemm",
                    "LeakyRelu", "Gemm", "Softmax"],
}

# Layers (Conv/Gemm) per model: each ends up with a weight and a bias (BatchNorm adds one).
LAYERS = {"mlp": 2, "cnn": 3, "dscnn": 6, "resnet8": 7, "conv1d": 3, "activations": 4}

# What torch 2.13's dynamo=True exporter (opset 18, default optimiser) emits for each model:
# the patterns the importer maps (ReduceMean -> GlobalAveragePool, Reshape with a constant
# [batch, -1]-style shape, Clip with constant bounds for ReLU6, Unsqueeze/ReduceMean/Squeeze for
# 1-D adaptive pooling). BatchNorm is already folded by the exporter's optimiser.
DYNAMO_EMITS = {
    "mlp": {"Reshape", "Gemm", "Relu"},
    "cnn": {"Conv", "Relu", "MaxPool", "Reshape", "Gemm"},
    "dscnn": {"Conv", "Clip", "ReduceMean", "Reshape", "Gemm"},
    "resnet8": {"Conv", "Relu", "Add", "ReduceMean", "Reshape", "Gemm"},
    "conv1d": {"Conv", "Relu", "MaxPool", "Unsqueeze", "ReduceMean", "Squeeze", "Reshape", "Gemm"},
    "activations": {"Conv", "Sigmoid", "AveragePool", "Tanh", "Reshape", "Gemm", "LeakyRelu",
                    "Softmax"},
}


@pytest.mark.parametrize("exporter", list(EXPORTERS))
@pytest.mark.parametrize("name", list(TORCH_MODELS))
def test_torch_model_matches_onnxruntime(name, exporter):
    data = torch_onnx(name, exporter)
    sample = TORCH_MODELS[name][1]
    g = import_onnx(data, batch=3)
    assert g.tensors[g.inputs[0]].shape == (3,) + sample
    assert [n.op for n in g.nodes] == EXPECTED_OPS[name]
    params = [g.tensors[p] for p in g.params]
    kinds = sorted(t.param_kind for t in params)
    assert kinds == ["bias"] * LAYERS[name] + ["weight"] * LAYERS[name]
    assert all(t.role is not TensorRole.CONST for t in g.tensors.values())  # nothing left over
    # dynamo exports have a static batch of 2 (the example input); the IR works for any batch.
    if name == "dscnn":  # nn.ReLU6 -> Clip(0, 6) with float bounds
        assert {tuple(sorted(n.attrs.items())) for n in g.nodes if n.op == "Clip"} == {
            (("max", 6.0), ("min", 0.0))}
    x = np.random.default_rng(5).standard_normal((2,) + sample).astype(np.float32)
    assert_close(tt_run(g, x), ort_run(data, x), what=f"{name}/{exporter}")


@pytest.mark.parametrize("name", list(TORCH_MODELS))
def test_dynamo_export_patterns(name):
    """Documents what torch's dynamo exporter emits (torch is pinned, so this is stable)."""
    assert set(op_types(torch_onnx(name, "dynamo18"))) == DYNAMO_EMITS[name]


def test_legacy_without_folding_really_has_batchnorm():
    ops = op_types(torch_onnx("cnn", "legacy13-nofold"))
    assert ops.count("BatchNormalization") == 2
    ops = op_types(torch_onnx("dscnn", "dynamo18-noopt"))
    assert ops.count("BatchNormalization") == 5 and "Expand" in ops and "CastLike" in ops


def test_parameter_names_are_kept():
    g = import_onnx(torch_onnx("mlp", "legacy17"))
    assert g.params == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert g.tensors["fc1.weight"].shape == (16, 20)
    assert [n.name for n in g.nodes][1:] == ["/fc1/Gemm", "/Relu", "/fc2/Gemm"]
    g = import_onnx(torch_onnx("resnet8", "dynamo18"))
    assert "stem.0.weight" in g.params and "fc.bias" in g.params


def test_batchnorm_folds_into_conv_weights():
    """legacy13-nofold keeps BatchNormalization; after import the conv without a bias got one,
    and the weights equal torch's own eval-mode fold."""
    import torch

    from ._models import build_torch
    g = import_onnx(torch_onnx("cnn", "legacy13-nofold"))
    model, _ = build_torch("cnn")
    conv, bn = model[0], model[1]
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    w = conv.weight.detach().numpy() * scale.detach().numpy()[:, None, None, None]
    b = (bn.bias - bn.running_mean * scale).detach().numpy()
    first = g.nodes[0]
    assert first.op == "Conv" and len(first.inputs) == 3
    np.testing.assert_allclose(g.initializers[first.inputs[1]], w, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(g.initializers[first.inputs[2]], b, rtol=1e-6, atol=1e-7)
    assert g.tensors[first.inputs[2]].param_kind == "bias"
