"""Every way an import can fail gives a TinytrainError whose one-paragraph message names the
file / input / node at fault, the op type, the reason and what is supported; no onnx, protobuf
or numpy exception escapes."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tinytrain.errors import (ConfigError, GraphError, ModelImportError, ShapeError,
                              TinytrainError, UnsupportedOpError)
from tinytrain.frontend import import_onnx


def make(nodes, inits=(), x_shape=("N", 4), inputs=None, outputs=("y",), opset=17,
         x_type=TensorProto.FLOAT, y_shape=None):
    """A model; outputs without a shape are fine (the importer infers it)."""
    ins = inputs if inputs is not None else [
        helper.make_tensor_value_info("x", x_type, list(x_shape))]
    outs = [helper.make_tensor_value_info(o, x_type, y_shape) for o in outputs]
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in dict(inits).items()]
    g = helper.make_graph(nodes, "bad", ins, outs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def w(*shape):
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


def one_paragraph(msg):
    assert "\n" not in msg and "Traceback" not in msg
    return msg


def expect(exc, model, *words, batch=1):
    with pytest.raises(exc) as ei:
        import_onnx(model, batch=batch)
    msg = one_paragraph(str(ei.value))
    for word in words:
        assert word in msg, f"{word!r} not in: {msg}"
    return msg


# ---- files ----------------------------------------------------------------------------------

@pytest.fixture
def good_bytes():
    m = make([helper.make_node("Gemm", ["x", "W"], ["y"], "fc", transB=1)], {"W": w(3, 4)})
    return m.SerializeToString()


def test_missing_file(tmp_path):
    p = tmp_path / "nope.onnx"
    expect(ModelImportError, str(p), "nope.onnx", "does not exist")


def test_directory(tmp_path):
    expect(ModelImportError, tmp_path, "is a directory")


def test_truncated_file(tmp_path, good_bytes):
    p = tmp_path / "cut.onnx"
    p.write_bytes(good_bytes[: len(good_bytes) // 2])
    expect(ModelImportError, p, "cut.onnx", "not a valid ONNX protobuf", "truncated")


def test_garbage_file(tmp_path):
    p = tmp_path / "noise.onnx"
    p.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8)))
    expect(ModelImportError, p, "noise.onnx", "not a valid ONNX protobuf")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.onnx"
    p.write_bytes(b"")
    expect(ModelImportError, p, "empty.onnx", "empty")


def test_protobuf_that_is_not_a_model(tmp_path):
    p = tmp_path / "tensor.onnx"   # a valid protobuf message, but a TensorProto
    p.write_bytes(b"\x08\x07")
    expect(ModelImportError, p, "not an ONNX model", "no graph")


def test_wrong_argument_type():
    expect(ModelImportError, 42, "file path", "ModelProto")


def test_bad_batch(good_bytes):
    with pytest.raises(ConfigError, match="batch must be a positive integer"):
        import_onnx(good_bytes, batch=0)


def test_good_bytes_and_path_work(tmp_path, good_bytes):
    p = tmp_path / "ok.onnx"
    p.write_bytes(good_bytes)
    assert [n.op for n in import_onnx(p).nodes] == ["Gemm"]
    assert [n.op for n in import_onnx(good_bytes).nodes] == ["Gemm"]


def test_checker_failure():
    m = make([helper.make_node("Relu", ["x"], ["y"], "r", bogus=3)])
    expect(ModelImportError, m, "not a valid ONNX model", "onnx.checker")


# ---- graph structure --------------------------------------------------------------------------

def test_cycle():
    m = make([helper.make_node("Add", ["x", "z"], ["y"], "join"),
              helper.make_node("Relu", ["y"], ["z"], "loop_back")])
    expect(GraphError, m, "cycle", "'join' (Add)", "'loop_back' (Relu)", "feed-forward")


def test_dangling_tensor():
    m = make([helper.make_node("Relu", ["ghost"], ["y"], "r")])
    expect(GraphError, m, "'r' (Relu)", "'ghost'", "no node produces")


def test_unsorted_graph_is_fine():
    m = make([helper.make_node("Relu", ["h"], ["y"], "second"),
              helper.make_node("Gemm", ["x", "W"], ["h"], "first", transB=1)], {"W": w(3, 4)})
    assert [n.name for n in import_onnx(m).nodes] == ["first", "second"]


def test_two_inputs():
    ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 4]) for n in ("x", "x2")]
    m = make([helper.make_node("Add", ["x", "x2"], ["y"], "add")], inputs=ins)
    expect(ModelImportError, m, "2 graph inputs", "'x'", "'x2'", "exactly one input")


def test_two_outputs():
    m = make([helper.make_node("Relu", ["x"], ["y"], "r"),
              helper.make_node("Sigmoid", ["x"], ["y2"], "s")], outputs=("y", "y2"))
    expect(ModelImportError, m, "2 graph outputs", "'y'", "'y2'", "one output")


def test_int_input():
    m = make([helper.make_node("Relu", ["x"], ["y"], "r")], x_type=TensorProto.INT64)
    expect(ModelImportError, m, "'x'", "int64", "float32")


def test_dynamic_non_batch_dim():
    m = make([helper.make_node("Relu", ["x"], ["y"], "r")], x_shape=("N", "C", 4))
    expect(ShapeError, m, "'x'", "dimension 1", "'C'", "only the batch dimension")


def test_unknown_non_batch_dim():
    m = make([helper.make_node("Relu", ["x"], ["y"], "r")], x_shape=("N", None))
    expect(ShapeError, m, "'x'", "dimension 1", "only the batch dimension")


def test_old_and_new_opsets():
    expect(ModelImportError, make([helper.make_node("Relu", ["x"], ["y"], "r")], opset=9),
           "opset 9", "11 to 25", "opset_version")
    expect(ModelImportError, make([helper.make_node("Relu", ["x"], ["y"], "r")], opset=26),
           "opset 26", "11 to 25")


def test_output_does_not_depend_on_input():
    m = make([helper.make_node("Relu", ["x"], ["h"], "r"),
              helper.make_node("Identity", ["c"], ["y"], "i")], {"c": w(4)})
    expect(ModelImportError, m, "'y'", "does not depend on the input")


# ---- unsupported ops ---------------------------------------------------------------------

def _supported(msg):
    assert "supported" in msg and "Conv" in msg and "Gemm" in msg


def test_unsupported_op():
    m = make([helper.make_node("Transpose", ["x"], ["y"], "Transpose_3", perm=[1, 0])],
             x_shape=(4, 4))
    _supported(expect(UnsupportedOpError, m, "node 'Transpose_3' (Transpose)", "not supported"))


def test_unnamed_unsupported_op_gets_index_name():
    m = make([helper.make_node("Relu", ["x"], ["h"]), helper.make_node("Erf", ["h"], ["y"])])
    _supported(expect(UnsupportedOpError, m, "node 'Erf_1' (Erf)", "not supported"))


def test_control_flow_op():
    branch = lambda name, op: helper.make_graph(  # noqa: E731
        [helper.make_node(op, ["x"], [f"{name}_out"])], name, [],
        [helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, ["N", 4])])
    m = make([helper.make_node("If", ["cond"], ["y"], "If_7", then_branch=branch("a", "Relu"),
                               else_branch=branch("b", "Sigmoid"))],
             {"cond": np.array(True)})
    _supported(expect(UnsupportedOpError, m, "node 'If_7' (If)", "control flow"))


def test_custom_domain_op():
    m = make([helper.make_node("FusedGemm", ["x"], ["y"], "fg", domain="com.microsoft")],
             y_shape=["N", 4])
    m.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    _supported(expect(UnsupportedOpError, m, "node 'fg' (FusedGemm)", "com.microsoft"))


def test_conv_3d():
    m = make([helper.make_node("Conv", ["x", "W"], ["y"], "c3d")], {"W": w(2, 1, 2, 2, 2)},
             x_shape=("N", 1, 4, 4, 4))
    _supported(expect(UnsupportedOpError, m, "node 'c3d' (Conv)", "3-D convolution", "1-D and 2-D"))


def test_matmul_with_activation_weight():
    ins = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])]
    m = make([helper.make_node("Relu", ["x"], ["h"], "r"),
              helper.make_node("Transpose", ["h"], ["ht"], "t"),
              helper.make_node("MatMul", ["h", "ht"], ["y"], "mm")], inputs=ins)
    expect(UnsupportedOpError, m, "'t' (Transpose)")


def test_div_by_activation():
    m = make([helper.make_node("Relu", ["x"], ["h"], "r"),
              helper.make_node("Div", ["x", "h"], ["y"], "ratio")])
    _supported(expect(UnsupportedOpError, m, "node 'ratio' (Div)", "division by a constant"))


# ---- unsupported attribute values ---------------------------------------------------------

def test_conv_dilation():
    m = make([helper.make_node("Conv", ["x", "W"], ["y"], "dil", dilations=[2, 2])],
             {"W": w(2, 1, 3, 3)}, x_shape=("N", 1, 8, 8))
    _supported(expect(UnsupportedOpError, m, "node 'dil' (Conv)", "dilations (2, 2)",
                      "dilation 1 only"))


def test_maxpool_storage_order():
    m = make([helper.make_node("MaxPool", ["x"], ["y"], "mp", kernel_shape=[2, 2],
                               storage_order=1)], x_shape=("N", 1, 4, 4))
    _supported(expect(UnsupportedOpError, m, "node 'mp' (MaxPool)", "storage_order"))


def test_maxpool_indices_used():
    m = make([helper.make_node("MaxPool", ["x"], ["p", "idx"], "mp", kernel_shape=[2, 2]),
              helper.make_node("Cast", ["idx"], ["idxf"], "cast", to=TensorProto.FLOAT),
              helper.make_node("Add", ["p", "idxf"], ["y"], "add")], x_shape=("N", 1, 4, 4))
    _supported(expect(UnsupportedOpError, m, "node 'mp' (MaxPool)", "Indices output"))


def test_gemm_trans_a():
    m = make([helper.make_node("Gemm", ["x", "W"], ["y"], "ta", transA=1)], {"W": w(4, 3)},
             x_shape=(4, 4))
    _supported(expect(UnsupportedOpError, m, "node 'ta' (Gemm)", "transA=1"))


def test_gemm_bias_per_sample():
    m = make([helper.make_node("Gemm", ["x", "W", "C"], ["y"], "g", transB=1)],
             {"W": w(3, 4), "C": w(2, 3)}, x_shape=(2, 4))
    expect(ShapeError, m, "node 'g' (Gemm)", "'C'", "varies along the batch", batch=2)


def test_softmax_not_last_axis():
    m = make([helper.make_node("Softmax", ["x"], ["y"], "sm", axis=1)], x_shape=("N", 3, 4))
    _supported(expect(UnsupportedOpError, m, "node 'sm' (Softmax)", "axis 1", "last axis"))


def test_softmax_over_batch():
    m = make([helper.make_node("Softmax", ["x"], ["y"], "sm", axis=0)], x_shape=("N", 3))
    _supported(expect(UnsupportedOpError, m, "node 'sm' (Softmax)", "axis 0", "batch"))


def test_batchnorm_training_mode():
    inits = {k: np.ones(2, np.float32) for k in ("s", "b", "m", "v")}
    m = make([helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"],
                               ["y", "run_mean", "run_var"], "bn", training_mode=1)],
             inits, x_shape=("N", 2, 3))
    expect(ModelImportError, m, "node 'bn' (BatchNormalization)", "training mode", "eval")


def test_dropout_training_mode():
    m = make([helper.make_node("Dropout", ["x", "r", "t"], ["y"], "drop")],
             {"r": np.array(0.5, np.float32), "t": np.array(True)})
    expect(ModelImportError, m, "node 'drop' (Dropout)", "training mode")


def test_reduce_mean_over_channels():
    m = make([helper.make_node("ReduceMean", ["x", "axes"], ["y"], "rm")],
             {"axes": np.array([1], np.int64)}, x_shape=("N", 3, 4), opset=18)
    _supported(expect(UnsupportedOpError, m, "node 'rm' (ReduceMean)", "axes (1,)",
                      "spatial axes"))


def test_reshape_that_merges_the_batch():
    m = make([helper.make_node("Reshape", ["x", "s"], ["y"], "rs")],
             {"s": np.array([-1], np.int64)}, x_shape=("N", 3, 4))
    expect(ShapeError, m, "node 'rs' (Reshape)", "(N, 3, 4) into (N*12,)",
           "batch dimension (N)")


def test_flatten_axis_2():
    m = make([helper.make_node("Flatten", ["x"], ["y"], "fl", axis=2)], x_shape=("N", 3, 4))
    expect(ShapeError, m, "node 'fl' (Flatten)", "batch dimension")


def test_constant_operand_with_batch_dim():
    m = make([helper.make_node("Add", ["x", "c"], ["y"], "add")], {"c": w(2, 4)}, x_shape=(2, 4))
    expect(ShapeError, m, "node 'add' (Add)", "'c'", "varies along the batch", batch=2)


def test_value_computed_from_batch_size():
    """x / x.shape[0] depends on the batch size: refused, not silently baked in."""
    m = make([helper.make_node("Shape", ["x"], ["s"], "shape"),
              helper.make_node("Gather", ["s", "zero"], ["n"], "gather", axis=0),
              helper.make_node("Cast", ["n"], ["nf"], "cast", to=TensorProto.FLOAT),
              helper.make_node("Div", ["x", "nf"], ["y"], "per_batch")],
             {"zero": np.array(0, np.int64)})
    expect(ModelImportError, m, "node 'per_batch' (Div)", "batch size")


# ---- weights ------------------------------------------------------------------------------

def test_int64_gemm_weight():
    m = make([helper.make_node("Gemm", ["x", "W"], ["y"], "fc_int", transB=1)],
             {"W": np.ones((3, 4), np.int64)})
    expect(ModelImportError, m, "node 'fc_int' (Gemm)", "'W'", "int64", "float32 weights")


def test_int8_conv_weight():
    m = make([helper.make_node("Conv", ["x", "W"], ["y"], "qconv")],
             {"W": np.ones((2, 1, 3, 3), np.int8)}, x_shape=("N", 1, 5, 5))
    expect(ModelImportError, m, "node 'qconv' (Conv)", "int8")


def test_weight_computed_at_run_time():
    ins = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 5, 5])]
    m = make([helper.make_node("Relu", ["x"], ["h"], "r"),
              helper.make_node("Conv", ["x", "h"], ["y"], "dyn_w")], inputs=ins)
    expect(ModelImportError, m, "node 'dyn_w' (Conv)", "weight", "'h'", "run time")


def test_unexpected_internal_error_is_wrapped(monkeypatch):
    from tinytrain.frontend import onnx_import

    def boom(self, node):
        raise ValueError("kaboom")
    monkeypatch.setattr(onnx_import._Mapper, "_map_Relu", boom)
    m = make([helper.make_node("Relu", ["x"], ["y"], "r")])
    msg = expect(ModelImportError, m, "kaboom", "bug in tinytrain")
    assert "ValueError" in msg


def test_all_errors_are_tinytrain_errors():
    assert issubclass(UnsupportedOpError, ModelImportError)
    for e in (ModelImportError, ShapeError, GraphError, ConfigError):
        assert issubclass(e, TinytrainError)
