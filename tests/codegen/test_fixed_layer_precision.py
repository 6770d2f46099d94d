"""Per-layer precision in fixed point (--layer-precision NODE=int8|int16): a Gemm / Conv keeps
its weights and output at its own width, tensors crossing widths are copied by
tt_act_convert_q and their gradients converted back (x256 exactly, or by a power of two that
fits int8). The generated C and the numpy interpreter agree bit for bit for 100 steps."""
from pathlib import Path

import numpy as np
import pytest

from tinytrain.datasets import make_adaptation_data
from tinytrain.errors import ConfigError
from tinytrain.fixed_reference import FixedTrainer
from tinytrain.passes import TrainConfig
from tinytrain.passes.quantize import QuantConfig
from tinytrain.pipeline import export
from tinytrain.sim.host import HostModel

from .fixed_lockstep import lockstep

MODELS = Path(__file__).resolve().parents[2] / "examples" / "digits" / "models"
STEPS = 100


@pytest.fixture(scope="module")
def data():
    return make_adaptation_data(0)


def _export(tmp_path, data, name, precision, layers, **kw):
    cfg = TrainConfig(**{"lr": 0.01, "trainable": "all", **kw})
    bits = int(precision[3:])
    return export(MODELS / f"{name}.onnx", tmp_path / name, cfg, precision=precision,
                  calibration=data["x_train"], command="test",
                  quant=QuantConfig(bits=bits, layer_bits=tuple(layers.items())))


CASES = [
    ("mlp", "int8", {"/3/Gemm": 16}, {}),                       # wide classifier
    ("mlp", "int8", {"/1/Gemm": 16}, {}),                       # input quantized at 16 bits
    ("cnn", "int8", {"/0/0.0/Conv": 16}, {"optimizer": "momentum"}),
    ("resnet8", "int8", {"/b1/b/b.0/Conv": 16}, {}),            # mixed-width residual Add
    ("dscnn", "int16", {"/7/Gemm": 8}, {"trainable": "last:2"}),
    ("mlp", "int8", {"/1/Gemm": 16}, {"algo": "zo", "perturbations": 2, "zo_eps": 1e-2}),
]


@pytest.mark.parametrize("name,precision,layers,kw", CASES)
def test_layer_precision_bit_exact_100_steps(tmp_path, data, name, precision, layers, kw):
    res, fp, plan = _export(tmp_path, data, name, precision, layers, **kw)
    calls = fp.forward + fp.train
    assert any(c.fn == "act_convert" for c in calls)
    if kw.get("algo") != "zo":
        assert any(c.fn in ("grad_widen", "grad_narrow") for c in fp.train) or \
            kw.get("trainable") == "last:2"
    node = {n.name: n for n in fp.program.graph.nodes}
    for layer, bits in layers.items():
        w = node[layer].inputs[1]
        want = {8: "i8", 16: "i16"}[bits]
        if kw.get("algo") == "zo" and w in fp.program.fg_params:
            want = "i16"                                          # zo's 16-bit weights
        assert fp.tensors[w].dtype == want
        assert fp.tensors[node[layer].outputs[0]].dtype == {8: "i8", 16: "i16"}[bits]
    c, ref = HostModel(res.out_dir), FixedTrainer(fp)
    x, y = data["x_train"], data["y_train"]
    rp = lockstep(c, ref, x, y, STEPS)
    np.testing.assert_array_equal(c.infer(x[:8]), ref.infer(x[:8]))
    assert any(not np.array_equal(rp[k].reshape(-1), fp.initial[k].reshape(-1))
               for k in fp.trainable)


def test_wider_layer_tracks_float_closer(tmp_path, data):
    """The point of an override: the int16 layer's output is closer to the float model's."""
    from tinytrain.pipeline import load_model
    from tinytrain.reference import run_forward
    g = load_model(MODELS / "mlp.onnx")
    x = data["x_test"][:64]
    want = run_forward(g, {g.inputs[0]: x})[g.outputs[0]]
    errs = {}
    for layers in ({}, {"/1/Gemm": 16, "/3/Gemm": 16}):
        _, fp, _ = _export(tmp_path / str(len(layers)), data, "mlp", "int8", layers)
        errs[len(layers)] = float(np.abs(FixedTrainer(fp).infer(x) - want).mean())
    assert errs[2] < 0.25 * errs[0], errs


def test_bad_layer_names_are_refused_clearly(tmp_path, data):
    with pytest.raises(ConfigError, match=r"'/2/Relu'.*Relu node.*/1/Gemm, /3/Gemm"):
        _export(tmp_path, data, "mlp", "int8", {"/2/Relu": 16})
    with pytest.raises(ConfigError, match="not a node of the model"):
        _export(tmp_path, data, "mlp", "int8", {"fc9": 16})
    with pytest.raises(ConfigError, match="8 | 16"):
        QuantConfig(layer_bits=(("/1/Gemm", 4),))
