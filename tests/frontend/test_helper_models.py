"""Hand-built ONNX models (onnx.helper) for opsets 11, 13, 17 and 21: Gemm with transB=0 and
alpha/beta, MatMul+Add fusion, Clip with min/max inputs, Flatten axis=1, Reshape with -1 and 0,
auto_pad SAME_UPPER/SAME_LOWER, grouped conv, pools, BatchNormalization that folds (after Gemm)
and one that cannot (after an Add), Sub/Div by constants, Squeeze/Unsqueeze/ReduceMean in their
attribute (opset < 13 / < 18) and input forms, old-style Softmax. Checked against onnxruntime."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tinytrain.frontend import import_onnx

from ._models import assert_close, ort_run, tt_run

OPSETS = [11, 13, 17, 21]


class _B:
    """Tiny graph builder: constants become initializers, node names are given explicitly."""

    def __init__(self, opset, seed=0):
        self.opset = opset
        self.nodes, self.inits = [], []
        self.rng = np.random.default_rng(seed)
        self.k = 0

    def const(self, name, value, dtype=np.float32):
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def rand(self, name, shape, scale=0.5):
        return self.const(name, self.rng.standard_normal(shape) * scale)

    def ints(self, name, values):
        return self.const(name, values, np.int64)

    def node(self, op, inputs, name=None, **attrs):
        self.k += 1
        out = f"t{self.k}"
        self.nodes.append(helper.make_node(op, inputs, [out], name or f"{op.lower()}{self.k}",
                                           **attrs))
        return out

    def axes(self, op, x, axes, **attrs):
        """Squeeze / Unsqueeze / ReduceMean with axes as an attribute or an input."""
        as_input = self.opset >= (18 if op == "ReduceMean" else 13)
        if as_input:
            return self.node(op, [x, self.ints(f"{op}{self.k}_axes", axes)], **attrs)
        return self.node(op, [x], axes=list(axes), **attrs)

    def model(self, x_shape, out, batch="N"):
        g = helper.make_graph(
            self.nodes, "helper_model",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch] + list(x_shape))],
            [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", self.opset)])
        m.ir_version = 7 if self.opset < 15 else 8 if self.opset < 18 else 10
        m = onnx.shape_inference.infer_shapes(m, strict_mode=True)  # fills the output's type
        del m.graph.value_info[:]
        onnx.checker.check_model(m)
        return m


def dense_model(opset):
    b = _B(opset)
    t = b.node("Flatten", ["x"], axis=1)                                   # [N, 24]
    # Gemm with B stored [K, M] (transB=0) and alpha/beta, bias [1, M]
    t = b.node("Gemm", [t, b.rand("gemm.B", (24, 10)), b.rand("gemm.C", (1, 10))], "fc1",
               alpha=0.5, beta=2.0, transB=0)
    t = b.node("Clip", [t, b.const("lo", -0.75), b.const("hi", 0.8)], "clip")
    t = b.node("MatMul", [t, b.rand("fc2.weight", (10, 6))], "fc2")            # MatMul + Add
    t = b.node("Add", [t, b.rand("fc2.bias", (6,))], "fc2_bias")
    t = b.node("BatchNormalization", [t, b.rand("bn.s", (6,)), b.rand("bn.b", (6,)),
                                      b.rand("bn.m", (6,)),
                                      b.const("bn.v", np.linspace(0.5, 2, 6))],
               "bn", epsilon=1e-3)                                        # folds into fc2
    t = b.node("Reshape", [t, b.ints("shape", [-1, 2, 3])], "reshape")      # [N, 2, 3]
    t = b.node("Sub", [t, b.rand("offset", (3,))], "sub")
    t = b.node("Div", [t, b.const("temperature", 0.7)], "div")
    t = b.node("Softmax", [t], "softmax", axis=2 if opset < 13 else -1)
    return b.model((2, 3, 4), t)


def conv_model(opset):
    b = _B(opset, seed=1)
    t = b.node("Conv", ["x", b.rand("c1.w", (4, 3, 3, 3)), b.rand("c1.b", (4,))], "c1",
               auto_pad="SAME_UPPER", strides=[2, 2])                       # 7x7 -> 4x4
    t = b.node("Relu", [t])
    t = b.node("Conv", [t, b.rand("c2.w", (8, 1, 2, 3))], "c2", group=4, pads=[0, 1, 1, 0])
    t = b.node("LeakyRelu", [t], alpha=0.1)
    u = b.node("Conv", [t, b.rand("c3.w", (8, 8, 1, 1))], "c3")             # residual branch
    t = b.node("Add", [t, u], "residual")
    t = b.node("BatchNormalization", [t, b.rand("bn2.s", (8,)), b.rand("bn2.b", (8,)),
                                      b.rand("bn2.m", (8,)), b.const("bn2.v", np.full(8, 1.5))],
               "bn2")                                                     # after Add: Mul + Add
    t = b.node("MaxPool", [t], kernel_shape=[2, 2], auto_pad="SAME_LOWER", strides=[2, 2])
    t = b.node("AveragePool", [t], kernel_shape=[2, 2], strides=[1, 1], pads=[1, 1, 0, 0],
               count_include_pad=1, ceil_mode=1)
    t = b.node("Sigmoid", [t])
    t = b.axes("ReduceMean", t, [2, 3], keepdims=0)                        # -> [N, 8]
    t = b.node("Gemm", [t, b.rand("fc.w", (3, 8)), b.rand("fc.b", (3,))], "fc", transB=1)
    t = b.node("Tanh", [t])
    return b.model((3, 7, 7), t)


def shape_model(opset):
    """1-D conv, Unsqueeze/Squeeze, Reshape with 0, GlobalAveragePool, Mul by a constant."""
    b = _B(opset, seed=2)
    t = b.node("Conv", ["x", b.rand("c.w", (4, 2, 3))], "c", auto_pad="SAME_UPPER")  # [N,4,9]
    t = b.axes("Unsqueeze", t, [2])                                        # [N, 4, 1, 9]
    t = b.node("GlobalAveragePool", [t])                                   # [N, 4, 1, 1]
    t = b.axes("Squeeze", t, [3])                                          # [N, 4, 1]
    t = b.node("Mul", [t, b.rand("scale", (1, 4, 1))], "scale")
    t = b.node("Reshape", [t, b.ints("shape", [0, -1])], "flatten")         # [N, 4]
    t = b.node("Softmax", [t], "softmax")
    return b.model((2, 9), t)


def old_softmax_model():
    """Opset 11 Softmax(axis=1) normalises over the flattened dims 1..: imported as
    Reshape -> last-axis Softmax -> Reshape."""
    b = _B(11)
    t = b.node("Softmax", ["x"], "softmax", axis=1)
    return b.model((3, 4), t)


MODELS = {"dense": dense_model, "conv": conv_model, "shape": shape_model}


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("kind", list(MODELS))
def test_helper_model_matches_onnxruntime(kind, opset):
    m = MODELS[kind](opset)
    g = import_onnx(m, batch=4)
    x = np.random.default_rng(opset).standard_normal(
        (4,) + tuple(d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim[1:]))
    x = x.astype(np.float32)
    assert_close(tt_run(g, x), ort_run(m.SerializeToString(), x), what=f"{kind}/opset {opset}")


@pytest.mark.parametrize("opset", OPSETS)
def test_dense_model_structure(opset):
    g = import_onnx(dense_model(opset))
    # Flatten -> Reshape; Gemm(transB=0, alpha, beta); Clip; MatMul+Add+BatchNorm -> one Gemm;
    # Reshape; Sub/Div by constants -> Add/Mul; Softmax.
    assert [n.op for n in g.nodes] == ["Reshape", "Gemm", "Clip", "Gemm", "Reshape", "Add",
                                       "Mul", "Softmax"]
    assert g.params == ["gemm.B", "gemm.C", "fc2.weight", "fc2.bias"]
    assert g.tensors["gemm.B"].shape == (10, 24)           # transposed to [out, in]
    assert g.tensors["fc2.weight"].shape == (6, 10) and g.tensors["fc2.bias"].shape == (6,)
    clip = g.nodes[2]
    assert clip.attrs == {"min": -0.75, "max": pytest.approx(0.8)}
    assert isinstance(clip.attrs["max"], float)
    assert g.nodes[4].attrs == {"shape": (2, 3)}
    consts = [t for t in g.tensors.values() if t.role.value == "const"]
    assert sorted(t.name for t in consts) == ["offset__neg", "temperature__recip"]
    assert g.nodes[1].name == "fc1" and g.nodes[3].name == "fc2"


def test_conv_model_structure():
    g = import_onnx(conv_model(17))
    ops = [n.op for n in g.nodes]
    assert ops == ["Conv", "Relu", "Conv", "LeakyRelu", "Conv", "Add", "Mul", "Add", "MaxPool",
                   "AveragePool", "Sigmoid", "GlobalAveragePool", "Reshape", "Gemm", "Tanh"]
    c1 = g.nodes[0].attrs
    assert c1 == {"strides": (2, 2), "pads": (1, 1, 1, 1), "group": 1}       # SAME_UPPER, 7 -> 4
    assert g.nodes[2].attrs == {"strides": (1, 1), "pads": (0, 1, 1, 0), "group": 4}
    # SAME_LOWER on 4x3: no padding along H, the odd one along W goes to the beginning.
    assert g.nodes[8].attrs == {"kernel_shape": (2, 2), "strides": (2, 2), "pads": (0, 1, 0, 0),
                                "ceil_mode": 0}
    assert g.nodes[9].attrs["count_include_pad"] == 1 and g.nodes[9].attrs["ceil_mode"] == 1
    mul, add = g.nodes[6], g.nodes[7]
    assert g.tensors[mul.inputs[1]].shape == (8, 1, 1)        # BN that cannot fold: [C, 1, 1]
    assert g.tensors[mul.inputs[1]].role.value == "const"
    assert add.name == "bn2"
    assert g.tensors["c3.w"].param_kind == "weight"
    assert "c2.w__bias" not in g.tensors                      # c2 keeps no bias


def test_same_lower_with_odd_padding():
    b = _B(17)
    t = b.node("Conv", ["x", b.rand("w", (2, 1, 4, 4))], "c", auto_pad="SAME_LOWER")
    m = b.model((1, 5, 5), t)
    g = import_onnx(m)
    assert g.nodes[0].attrs["pads"] == (2, 2, 1, 1)
    x = np.random.default_rng(0).standard_normal((2, 1, 5, 5)).astype(np.float32)
    assert_close(tt_run(g, x), ort_run(m.SerializeToString(), x))


def test_old_softmax_axis_is_coerced():
    m = old_softmax_model()
    g = import_onnx(m, batch=2)
    assert [n.op for n in g.nodes] == ["Reshape", "Softmax", "Reshape"]
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    assert_close(tt_run(g, x), ort_run(m.SerializeToString(), x))


def test_shape_model_structure():
    g = import_onnx(shape_model(13))
    # Unsqueeze + 2-D GlobalAveragePool + Squeeze -> 1-D GlobalAveragePool ([N, 4, 1]).
    assert [n.op for n in g.nodes] == ["Conv", "GlobalAveragePool", "Mul", "Reshape", "Softmax"]
    assert g.tensors["scale"].shape == (4, 1) and g.tensors["scale"].role.value == "const"
