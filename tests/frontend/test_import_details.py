"""Details of import_onnx: names, roles, fusions, folding, batch handling, external data."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tinytrain.frontend import import_onnx
from tinytrain.ir import TensorRole

from ._models import assert_close, ort_run, tt_run


def model(nodes, inits=None, x_shape=("N", 4), out="y", opset=17, y_shape=None):
    g = helper.make_graph(
        nodes, "details", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, y_shape)],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def rnd(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def check_against_ort(m, g, shape, batch=3):
    x = rnd(batch, *shape, seed=7)
    assert_close(tt_run(g, x), ort_run(m.SerializeToString(), x))


def test_batch_sets_the_shapes():
    m = model([helper.make_node("Gemm", ["x", "W", "b"], ["y"], "fc", transB=1)],
              {"W": rnd(3, 4), "b": rnd(3)})
    for batch in (1, 5):
        g = import_onnx(m, batch=batch)
        assert g.tensors["x"].shape == (batch, 4) and g.tensors["y"].shape == (batch, 3)
        assert g.tensors["W"].role is TensorRole.PARAM and g.tensors["W"].param_kind == "weight"
        assert g.tensors["b"].param_kind == "bias"


def test_static_batch_in_the_file_is_replaced():
    m = model([helper.make_node("Reshape", ["x", "s"], ["h"], "view"),
               helper.make_node("Gemm", ["h", "W"], ["y"], "fc", transB=1)],
              {"s": np.array([2, 12], np.int64), "W": rnd(3, 12)}, x_shape=(2, 3, 4))
    g = import_onnx(m, batch=7)   # like a dynamo export with example batch 2
    assert g.nodes[0].attrs == {"shape": (12,)}
    assert g.tensors["y"].shape == (7, 3)


def test_output_name_survives_trailing_identity_and_dropout():
    m = model([helper.make_node("Gemm", ["x", "W"], ["h"], "fc", transB=1),
               helper.make_node("Dropout", ["h"], ["d"], "drop"),
               helper.make_node("Identity", ["d"], ["logits"], "id")], {"W": rnd(3, 4)},
              out="logits")
    g = import_onnx(m)
    assert g.outputs == ("logits",)
    assert [(n.name, n.outputs) for n in g.nodes] == [("fc", ("logits",))]


def test_matmul_add_fusion_keeps_names():
    m = model([helper.make_node("MatMul", ["x", "fc.weight"], ["h"], "fc"),
               helper.make_node("Add", ["fc.bias", "h"], ["y"], "fc_add")],
              {"fc.weight": rnd(4, 3), "fc.bias": rnd(1, 3)})
    g = import_onnx(m)
    assert [n.op for n in g.nodes] == ["Gemm"] and g.nodes[0].name == "fc"
    assert g.params == ["fc.weight", "fc.bias"]
    np.testing.assert_array_equal(g.initializers["fc.weight"], rnd(4, 3).T)   # [out, in]
    assert g.tensors["fc.bias"].shape == (3,)
    check_against_ort(m, g, (4,))


def test_conv_add_bias_fusion():
    m = model([helper.make_node("Conv", ["x", "W"], ["h"], "conv", pads=[1, 1, 1, 1]),
               helper.make_node("Add", ["h", "B"], ["y"], "bias")],
              {"W": rnd(3, 2, 3, 3), "B": rnd(1, 3, 1, 1)}, x_shape=("N", 2, 5, 5))
    g = import_onnx(m)
    assert [n.op for n in g.nodes] == ["Conv"]
    assert g.tensors["B"].shape == (3,) and g.tensors["B"].param_kind == "bias"
    check_against_ort(m, g, (2, 5, 5))


def test_add_varying_along_space_is_not_a_bias():
    m = model([helper.make_node("Conv", ["x", "W"], ["h"], "conv"),
               helper.make_node("Add", ["h", "P"], ["y"], "pos")],
              {"W": rnd(3, 2, 1, 1), "P": rnd(3, 5, 5)}, x_shape=("N", 2, 5, 5))
    g = import_onnx(m)
    assert [n.op for n in g.nodes] == ["Conv", "Add"]
    assert g.tensors["P"].role is TensorRole.CONST
    check_against_ort(m, g, (2, 5, 5))


def test_shared_weight_is_one_parameter_and_blocks_bn_folding():
    bn = {f"bn.{k}": rnd(4, seed=i) for i, k in enumerate("sbm")}
    bn["bn.v"] = np.full(4, 2.0, np.float32)
    m = model([helper.make_node("Gemm", ["x", "W"], ["h1"], "fc1", transB=1),
               helper.make_node("BatchNormalization", ["h1", "bn.s", "bn.b", "bn.m", "bn.v"],
                                ["h2"], "bn"),
               helper.make_node("Relu", ["h2"], ["h3"], "relu"),
               helper.make_node("Gemm", ["h3", "W2"], ["h4"], "fc2", transB=1),
               helper.make_node("Gemm", ["h4", "W"], ["y"], "fc3", transB=1)],
              {"W": rnd(4, 4), "W2": rnd(4, 4, seed=1), **bn})
    g = import_onnx(m)
    assert [n.op for n in g.nodes] == ["Gemm", "Mul", "Add", "Relu", "Gemm", "Gemm"]
    assert g.params == ["W", "W2"]
    assert g.nodes[0].inputs[1] == g.nodes[-1].inputs[1] == "W"
    assert g.tensors["bn.s__bn_mul"].shape == (4,)
    assert g.tensors["bn.s__bn_mul"].role is TensorRole.CONST
    check_against_ort(m, g, (4,))


def test_weights_from_constant_nodes_and_casts():
    w16 = rnd(3, 4).astype(np.float16)
    m = model([helper.make_node("Constant", [], ["Wc"], "const_w",
                                value=numpy_helper.from_array(w16)),
               helper.make_node("Cast", ["Wc"], ["W"], "cast_w", to=TensorProto.FLOAT),
               helper.make_node("Gemm", ["x", "W"], ["h"], "fc", transB=1),
               helper.make_node("Mul", ["h", "scale"], ["y"], "scale")],
              {"scale": np.array(0.5, np.float32)})
    g = import_onnx(m)
    assert [n.op for n in g.nodes] == ["Gemm", "Mul"]
    assert g.tensors["W"].role is TensorRole.PARAM and g.initializers["W"].dtype == np.float32
    assert g.tensors["scale"].role is TensorRole.CONST and g.tensors["scale"].shape == ()
    check_against_ort(m, g, (4,))


def test_shape_gather_concat_reshape_chain_folds():
    """torch's legacy x.view(x.size(0), -1) pattern with a dynamic batch."""
    m = model([helper.make_node("Relu", ["x"], ["r"], "relu"),
               helper.make_node("Shape", ["r"], ["s"], "shape"),
               helper.make_node("Gather", ["s", "zero"], ["n"], "gather", axis=0),
               helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"], "unsq"),
               helper.make_node("Concat", ["n1", "minus_one"], ["target"], "concat", axis=0),
               helper.make_node("Reshape", ["r", "target"], ["y"], "view")],
              {"zero": np.array(0, np.int64), "axes0": np.array([0], np.int64),
               "minus_one": np.array([-1], np.int64)}, x_shape=("batch", 2, 3, 4))
    g = import_onnx(m, batch=2)
    assert [n.op for n in g.nodes] == ["Relu", "Reshape"]
    assert g.nodes[1].attrs == {"shape": (24,)}
    assert set(g.tensors) == {"x", "r", "y"}  # the int64 shape constants are gone
    check_against_ort(m, g, (2, 3, 4))


def test_duplicate_and_missing_node_names():
    m = model([helper.make_node("Relu", ["x"], ["a"], "act"),
               helper.make_node("Sigmoid", ["a"], ["b"], "act"),
               helper.make_node("Tanh", ["b"], ["y"])])
    assert [n.name for n in import_onnx(m).nodes] == ["act", "act_2", "Tanh_2"]


def test_unused_unsupported_branch_is_ignored():
    m = model([helper.make_node("Relu", ["x"], ["y"], "relu"),
               helper.make_node("Erf", ["x"], ["unused"], "dead")])
    assert [n.op for n in import_onnx(m).nodes] == ["Relu"]


def test_external_data(tmp_path):
    m = model([helper.make_node("Gemm", ["x", "W"], ["y"], "fc", transB=1)], {"W": rnd(64, 4)})
    path = tmp_path / "ext.onnx"
    onnx.save_model(m, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="ext.weights", size_threshold=0)
    assert (tmp_path / "ext.weights").exists()
    g = import_onnx(path)
    np.testing.assert_array_equal(g.initializers["W"], rnd(64, 4))
    (tmp_path / "ext.weights").unlink()
    from tinytrain.errors import ModelImportError
    with pytest.raises(ModelImportError, match="external weight files"):
        import_onnx(path)


def test_caller_model_is_not_modified():
    m = model([helper.make_node("Relu", ["h"], ["y"]),
               helper.make_node("Gemm", ["x", "W"], ["h"], transB=1)], {"W": rnd(3, 4)})
    before = m.SerializeToString()
    import_onnx(m)
    assert m.SerializeToString() == before


def test_old_opset_attribute_forms():
    """Opset 11: Clip bounds as inputs, Squeeze/Unsqueeze/ReduceMean axes as attributes."""
    m = model([helper.make_node("Unsqueeze", ["x"], ["u"], "unsq", axes=[3]),
               helper.make_node("ReduceMean", ["u"], ["r"], "mean", axes=[2, 3], keepdims=1),
               helper.make_node("Squeeze", ["r"], ["s"], "sq", axes=[2, 3]),
               helper.make_node("Clip", ["s", "lo", ""], ["y"], "clip")],
              {"lo": np.array(0.0, np.float32)}, x_shape=("N", 3, 5), opset=11)
    g = import_onnx(m)
    assert [n.op for n in g.nodes] == ["GlobalAveragePool", "Reshape", "Clip"]
    assert g.nodes[2].attrs == {"min": 0.0, "max": float("inf")}
    check_against_ort(m, g, (3, 5))


def test_ceil_mode_pool_uses_the_runtime_output_size():
    """Before opset 22, ONNX shape inference keeps a ceil-mode window that starts past the
    input (length 3, kernel 1, stride 3 -> 2 windows); onnx.reference, onnxruntime and PyTorch
    compute 1 (onnxruntime even refuses to load the opset-17 model below, whose Gemm is sized
    for the runtime shape). tinytrain imports both opsets with the runtime size."""
    graphs = {}
    for opset in (17, 22):
        m = model([helper.make_node("MaxPool", ["x"], ["p"], "pool", kernel_shape=[1],
                                    strides=[3], ceil_mode=1),
                   helper.make_node("Flatten", ["p"], ["f"], "flat"),
                   helper.make_node("Gemm", ["f", "W"], ["y"], "fc", transB=1)],
                  {"W": rnd(2, 4)}, x_shape=("N", 4, 3), opset=opset, y_shape=["N", 2])
        m.ir_version = 10
        graphs[opset] = g = import_onnx(m)
        assert g.tensors["p"].shape == (1, 4, 1)
    check_against_ort(m, graphs[22], (4, 3))
    x = rnd(3, 4, 3)
    np.testing.assert_array_equal(tt_run(graphs[17], x), tt_run(graphs[22], x))
