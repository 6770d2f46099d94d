"""Property test: random Conv / MaxPool / AveragePool attribute combinations (1-D and 2-D,
strides, explicit asymmetric pads or auto_pad, groups, ceil_mode, count_include_pad) import to
IR nodes that reproduce onnxruntime."""
import numpy as np
import onnx
from hypothesis import HealthCheck, assume, given, settings, strategies as st
from onnx import TensorProto, helper, numpy_helper

from tinytrain.frontend import import_onnx

from ._models import assert_close, ort_run, tt_run

AUTO = st.sampled_from(["NOTSET", "NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"])


@st.composite
def layer(draw):
    nsp = draw(st.sampled_from([1, 2]))
    spatial = tuple(draw(st.integers(3, 9)) for _ in range(nsp))
    kernel = tuple(draw(st.integers(1, min(4, s))) for s in spatial)
    strides = tuple(draw(st.integers(1, 3)) for _ in range(nsp))
    auto = draw(AUTO)
    pads = tuple(draw(st.integers(0, k - 1)) for k in kernel * 2)
    if auto.startswith("SAME"):
        # onnxruntime computes a negative (invalid) SAME padding when the stride skips input
        # cells, (ceil(n/s) - 1) * s + k < n, instead of clamping it to 0 as ONNX specifies.
        assume(all((-(-n // s) - 1) * s + k >= n for n, k, s in zip(spatial, kernel, strides)))
    return nsp, spatial, kernel, strides, auto, pads


def _model(node, x_shape, inits):
    g = helper.make_graph([node], "prop",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _pad_attrs(auto, pads):
    return {"pads": list(pads)} if auto == "NOTSET" else {"auto_pad": auto}


def _check(m, x_shape):
    g = import_onnx(m, batch=x_shape[0])
    x = np.random.default_rng(0).standard_normal(x_shape).astype(np.float32)
    assert_close(tt_run(g, x), ort_run(m.SerializeToString(), x))
    return g


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layer(), st.sampled_from([(1, 1, 4), (2, 2, 4), (4, 4, 4), (4, 4, 8), (6, 3, 6)]),
       st.booleans())
def test_conv_attributes(spec, channels, bias):
    nsp, spatial, kernel, strides, auto, pads = spec
    cin, cout = channels[0], channels[2]
    group = channels[0] // channels[1]
    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array(
        rng.standard_normal((cout, cin // group) + kernel).astype(np.float32), "W")]
    ins = ["x", "W"]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(cout).astype(np.float32), "B"))
        ins.append("B")
    node = helper.make_node("Conv", ins, ["y"], "conv", strides=list(strides), group=group,
                            kernel_shape=list(kernel), **_pad_attrs(auto, pads))
    x_shape = [2, cin, *spatial]
    g = _check(_model(node, x_shape, inits), x_shape)
    assert g.nodes[0].attrs["group"] == group and len(g.nodes[0].attrs["pads"]) == 2 * nsp


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layer(), st.sampled_from(["MaxPool", "AveragePool"]), st.booleans(), st.booleans())
def test_pool_attributes(spec, op, ceil, include_pad):
    nsp, spatial, kernel, strides, auto, pads = spec
    attrs = {"kernel_shape": list(kernel), "strides": list(strides), **_pad_attrs(auto, pads)}
    if auto == "NOTSET":
        attrs["ceil_mode"] = int(ceil)
    if op == "AveragePool":
        attrs["count_include_pad"] = int(include_pad)
    x_shape = [2, 3, *spatial]
    _check(_model(helper.make_node(op, ["x"], ["y"], "pool", **attrs), x_shape, []), x_shape)
