"""Already-quantized ONNX models (onnxruntime quantize_static, QDQ and QOperator formats,
symmetric int8, per channel and per tensor) import with their scales: the int8 export holds
the ONNX file's weight integers exactly, its forward agrees with onnxruntime on the quantized
model, it trains bit-exactly in C and numpy, and asymmetric models are refused."""
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from tinytrain.datasets import make_adaptation_data
from tinytrain.errors import ModelImportError
from tinytrain.fixed_reference import FixedTrainer
from tinytrain.frontend.onnx_quant import import_quantized_onnx, missing_scales
from tinytrain.passes import TrainConfig
from tinytrain.pipeline import export, load_model
from tinytrain.reference import run_forward

ort = pytest.importorskip("onnxruntime")
oq = pytest.importorskip("onnxruntime.quantization")

MODELS = Path(__file__).resolve().parents[2] / "examples" / "digits" / "models"
SYMMETRIC = {"ActivationSymmetric": True, "WeightSymmetric": True}
CASES = [(m, f, pc) for m in ("mlp", "cnn") for f in ("QDQ", "QOperator") for pc in (True, False)]
# onnxruntime requantizes in float (round half to even), tinytrain with TFLite's integer
# multipliers: measured at most 1 output LSB (MLP) and 2 (CNN) on 200 samples.
MAX_LSB = 3


class _Reader(oq.CalibrationDataReader):
    def __init__(self, x):
        self.it = iter([{"x": x[i:i + 1].astype(np.float32)} for i in range(len(x))])

    def get_next(self):
        return next(self.it, None)


def _quantize(src, dst, x, fmt="QDQ", per_channel=True, act=None, weight=None, extra=None):
    oq.quantize_static(str(src), str(dst), _Reader(x), quant_format=getattr(oq.QuantFormat, fmt),
                       activation_type=act or oq.QuantType.QInt8,
                       weight_type=weight or oq.QuantType.QInt8, per_channel=per_channel,
                       extra_options=SYMMETRIC if extra is None else extra)
    return dst


@pytest.fixture(scope="module")
def data():
    return make_adaptation_data(0)


@pytest.fixture(scope="module")
def qmodels(tmp_path_factory, data):
    d = tmp_path_factory.mktemp("quantized")
    return {c: _quantize(MODELS / f"{c[0]}.onnx", d / f"{c[0]}_{c[1]}_{int(c[2])}.onnx",
                         data["x_train"][:60], c[1], c[2]) for c in CASES}


def _inits(path):
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


def _int8_export(path, tmp_path, **kw):
    cfg = TrainConfig(lr=0.01, trainable="last:1", **kw)
    return export(path, tmp_path / "out", cfg, precision="int8", command="test")  # no calibration


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}-{'pc' if c[2] else 'pt'}")
def test_scales_weights_and_forward_match_onnxruntime(case, qmodels, data, tmp_path):
    path = qmodels[case]
    ints = _inits(path)
    graph, scales = import_quantized_onnx(path)
    assert missing_scales(graph, scales) == []
    # (a) scales are the file's, float32-exact: weights by parameter, activations by tensor
    weights = [p for p in graph.params if graph.tensors[p].param_kind == "weight"]
    assert weights
    for p in weights:
        np.testing.assert_array_equal(np.float32(scales[p]).reshape(-1),
                                      ints[f"{p}_scale"].reshape(-1))
    acts = [t for t in scales if t not in graph.initializers]
    for t in acts:
        if f"{t}_scale" in ints:
            assert np.float32(scales[t]) == ints[f"{t}_scale"], t
    assert np.float32(scales["logits"]) == ints["logits_scale"]
    first = "x" if case[0] == "cnn" else "/0/Flatten_output_0"
    assert np.float32(scales[graph.inputs[0]]) == ints[f"{first}_scale"]
    # (b) the int8 export holds the ONNX integers exactly
    res, fp, _ = _int8_export(path, tmp_path)
    for p in weights:
        np.testing.assert_array_equal(fp.initial[p].reshape(-1),
                                      ints[f"{p}_quantized"].reshape(-1).astype(np.int64))
    for p in graph.params:
        if graph.tensors[p].param_kind == "bias" and f"{p}_quantized" in ints:
            np.testing.assert_array_equal(fp.initial[p], ints[f"{p}_quantized"])
    # (c) forward agrees with onnxruntime running the quantized model
    x = data["x_test"][:200].astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = np.concatenate([sess.run(None, {"x": x[i:i + 1]})[0] for i in range(len(x))])
    got = FixedTrainer(fp).infer(x)
    lsb = float(fp.scales[fp.logits][0])
    assert (want.argmax(1) == got.argmax(1)).mean() >= 0.97
    assert np.abs(want - got).max() <= MAX_LSB * lsb * (1 + 1e-5)


@pytest.mark.parametrize("fmt", ["QDQ", "QOperator"])
def test_matmul_add_model(fmt, data, tmp_path):
    """MatMul + Add (QLinearMatMul + QLinearAdd): per-channel scales on axis 1 of the [in, out]
    weight, the constant Add folded into the Gemm bias."""
    from onnx import TensorProto, helper
    w = _inits(MODELS / "mlp.onnx")
    nodes = [helper.make_node("Flatten", ["x"], ["f"]),
             helper.make_node("MatMul", ["f", "w1"], ["m1"]),
             helper.make_node("Add", ["m1", "b1"], ["a1"]),
             helper.make_node("Relu", ["a1"], ["r1"]),
             helper.make_node("MatMul", ["r1", "w2"], ["m2"]),
             helper.make_node("Add", ["m2", "b2"], ["logits"])]
    inits = [numpy_helper.from_array(w["1.weight"].T.copy(), "w1"),
             numpy_helper.from_array(w["1.bias"], "b1"),
             numpy_helper.from_array(w["3.weight"].T.copy(), "w2"),
             numpy_helper.from_array(w["3.bias"], "b2")]
    g = helper.make_graph(nodes, "mm", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                       [1, 1, 8, 8])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
                          inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(tmp_path / "mm.onnx"))
    path = _quantize(tmp_path / "mm.onnx", tmp_path / "q.onnx", data["x_train"][:60], fmt, True)
    ints = _inits(path)
    res, fp, _ = _int8_export(path, tmp_path)
    for p in ("w1", "w2"):
        np.testing.assert_array_equal(fp.initial[p], ints[f"{p}_quantized"].T)
        np.testing.assert_array_equal(np.float32(fp.scales[p]), ints[f"{p}_scale"])
    x = data["x_test"][:200].astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = np.concatenate([sess.run(None, {"x": x[i:i + 1]})[0] for i in range(len(x))])
    got = FixedTrainer(fp).infer(x)
    assert (want.argmax(1) == got.argmax(1)).mean() >= 0.97        # measured 98.5 %
    assert np.abs(want - got).max() <= MAX_LSB * float(fp.scales[fp.logits][0]) * (1 + 1e-5)


@pytest.mark.parametrize("case", [("mlp", "QDQ", True), ("cnn", "QOperator", True)],
                         ids=["mlp-QDQ-pc", "cnn-QOperator-pc"])
def test_imported_int8_model_trains_bit_exact_in_c(case, qmodels, data, tmp_path):
    from tinytrain.sim.host import HostModel
    res, fp, _ = _int8_export(qmodels[case], tmp_path)
    c, ref = HostModel(res.out_dir), FixedTrainer(fp)
    x, y = data["x_train"], data["y_train"]
    for i in range(100):
        assert c.train_step(x[i], y[i]) == ref.train_step(x[i], y[i]), f"loss at step {i}"
    for k, v in ref.raw_params.items():
        np.testing.assert_array_equal(c.raw_params[k], v, err_msg=k)
    assert any(not np.array_equal(ref.raw_params[k], fp.initial[k].reshape(ref.raw_params[k].shape))
               for k in fp.trainable)
    np.testing.assert_array_equal(c.infer(data["x_test"][:40]), ref.infer(data["x_test"][:40]))


def test_float_precisions_use_the_dequantized_model(qmodels, data):
    """load_model (fp32 / fp16 exports) gives the dequantized float model: its forward is the
    float model's within the quantization error."""
    path = qmodels[("cnn", "QDQ", True)]
    g, g32 = load_model(path), load_model(MODELS / "cnn.onnx")
    x = data["x_test"][:50].astype(np.float32)
    a = run_forward(g, {"x": x})[g.outputs[0]]
    b = run_forward(g32, {"x": x})[g32.outputs[0]]
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.9
    assert np.abs(a - b).max() < 0.5


def test_per_channel_layers_that_backprop_fall_back_to_per_tensor(qmodels, tmp_path):
    """Fixed-point backprop needs one weight scale in a layer that passes gradients back: the
    last layer's per-channel scales are replaced (with a warning), the first layer keeps its."""
    res, fp, _ = export(qmodels[("mlp", "QDQ", True)], tmp_path / "o",
                        TrainConfig(lr=0.01, trainable="all"), precision="int8", command="t")
    _, scales = import_quantized_onnx(qmodels[("mlp", "QDQ", True)])
    assert any("'3.weight'" in w and "per-tensor" in w for w in fp.warnings)
    assert len(set(fp.scales["3.weight"].tolist())) == 1
    np.testing.assert_array_equal(fp.scales["1.weight"], np.float64(scales["1.weight"]))


@pytest.mark.parametrize("act,weight,sym,msg", [
    ("QUInt8", "QUInt8", False, "zero point"),             # onnxruntime's default: uint8 asym
    ("QInt8", "QInt8", False, "zero point"),               # int8, asymmetric activations
    ("QUInt8", "QUInt8", True, "zero point 128"),          # uint8 "symmetric": zero point 128
])
def test_asymmetric_models_are_refused(tmp_path, data, act, weight, sym, msg):
    path = _quantize(MODELS / "mlp.onnx", tmp_path / "a.onnx", data["x_train"][:20], "QDQ", False,
                     getattr(oq.QuantType, act), getattr(oq.QuantType, weight),
                     {"ActivationSymmetric": sym, "WeightSymmetric": sym})
    with pytest.raises(ModelImportError) as e:
        import_quantized_onnx(path)
    text = str(e.value)
    assert msg in text and "node '" in text and "symmetric" in text
    assert "Linear)" in text          # names the op type: (QuantizeLinear) / (DequantizeLinear)


def test_per_axis_on_input_channels_and_unknown_qops_are_refused(qmodels, tmp_path):
    mp = onnx.load(str(qmodels[("cnn", "QDQ", True)]))
    for t in mp.graph.initializer:               # second conv: 8 scales along axis 1
        if t.name in ("onnx::Conv_29_scale", "onnx::Conv_29_zero_point"):
            a = numpy_helper.to_array(t)
            t.CopyFrom(numpy_helper.from_array(
                np.full(8, 0.01, a.dtype) if a.dtype == np.float32 else np.zeros(8, a.dtype),
                t.name))
    for n in mp.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] == "onnx::Conv_29_quantized":
            n.attribute[0].i = 1
    with pytest.raises(ModelImportError, match="per axis 1.*output channels are axis 0"):
        import_quantized_onnx(mp)
    mp = onnx.load(str(qmodels[("mlp", "QOperator", True)]))
    for n in mp.graph.node:
        if n.op_type == "QGemm":
            n.op_type = "QLinearMul"
    with pytest.raises(ModelImportError, match=r"\(QLinearMul\) is a quantized op"):
        import_quantized_onnx(mp)
