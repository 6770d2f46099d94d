"""export_onnx: import -> (train) -> export gives a valid ONNX model that onnxruntime runs to the
same outputs as tinytrain's reference executor, with the trained parameter values."""
import numpy as np
import onnx
import pytest

from tinytrain.errors import ExportError
from tinytrain.frontend import export_onnx, import_onnx
from tinytrain.reference import run_forward

from ._models import TORCH_MODELS, assert_close, ort_run, torch_onnx, tt_run
from .test_helper_models import conv_model, dense_model, old_softmax_model, shape_model


def _x(shape, batch=3, seed=0):
    return np.random.default_rng(seed).standard_normal((batch,) + tuple(shape)).astype(np.float32)


@pytest.mark.parametrize("name", list(TORCH_MODELS))
def test_export_round_trip_torch_models(name, tmp_path):
    data = torch_onnx(name, "legacy17")
    g = import_onnx(data)
    path = tmp_path / f"{name}.onnx"
    model = export_onnx(g, {}, path, opset=17)
    assert path.exists()
    onnx.checker.check_model(str(path), full_check=True)
    x = _x(TORCH_MODELS[name][1])
    out = ort_run(path.read_bytes(), x)          # the batch stays dynamic
    assert_close(out, ort_run(data, x), what=name)
    assert_close(tt_run(g, x), out, what=name)
    # The exported model imports back to the same IR.
    g2 = import_onnx(model)
    assert [n.op for n in g2.nodes] == [n.op for n in g.nodes]
    assert g2.params == g.params
    for n1, n2 in zip(g.nodes, g2.nodes):
        assert n1.attrs == n2.attrs


@pytest.mark.parametrize("opset", [13, 17, 21])
def test_export_trained_parameters(opset, tmp_path):
    g = import_onnx(conv_model(17))
    rng = np.random.default_rng(opset)
    trained = {p: (g.initializers[p] * 1.1 + rng.normal(0, 0.01, g.initializers[p].shape))
               .astype(np.float32) for p in g.params}
    model = export_onnx(g, trained, tmp_path / "trained.onnx", opset=opset)
    assert model.opset_import[0].version == opset
    x = _x((3, 7, 7))
    want = run_forward(g, {"x": x}, params=trained, dtype=np.float64)[g.outputs[0]]
    assert_close(ort_run(model.SerializeToString(), x), want)
    stored = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    for p, v in trained.items():
        np.testing.assert_array_equal(stored[p], v)


@pytest.mark.parametrize("build", [dense_model, shape_model, old_softmax_model],
                         ids=["dense", "shape", "old_softmax"])
def test_export_helper_models(build):
    m = build(13) if build is not old_softmax_model else build()
    g = import_onnx(m, batch=2)
    model = export_onnx(g, None, None)
    shape = tuple(d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim[1:])
    x = _x(shape, batch=5)
    assert_close(ort_run(model.SerializeToString(), x), ort_run(m.SerializeToString(), x))


def test_export_errors(tmp_path):
    g = import_onnx(dense_model(17))
    with pytest.raises(ExportError, match="opsets 13 to 21"):
        export_onnx(g, {}, None, opset=11)
    with pytest.raises(ExportError, match="not parameters"):
        export_onnx(g, {"nope": np.zeros(3)}, None)
    with pytest.raises(ExportError, match="shape"):
        export_onnx(g, {"fc2.bias": np.zeros(4)}, None)
    bad = dict(g.initializers)
    bad["fc2.bias"] = np.full(6, np.nan, np.float32)
    with pytest.raises(ExportError, match="NaN"):
        export_onnx(g, {"fc2.bias": bad["fc2.bias"]}, None)
    from tinytrain.ir import Node
    lossy = g.replace(nodes=g.nodes + (Node("loss", "MSE", (g.outputs[0], g.outputs[0]), ("l",)),))
    with pytest.raises(ExportError, match="'loss' \\(MSE\\) cannot be exported"):
        export_onnx(lossy, {}, None)
