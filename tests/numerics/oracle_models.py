"""One-op models for the independent int8 oracles: TFLite Micro (the `tflite-micro` wheel's
Python interpreter; models built with its model_editor, NHWC) and onnxruntime (QLinear ops,
NCHW). Used by test_int8_oracle.py; every function returns the oracle's output in our CHW /
row-major layout."""
from __future__ import annotations

import numpy as np


def tflm_available() -> bool:
    try:
        from tflite_micro.python.tflite_micro import runtime  # noqa: F401
        from tflite_micro.tensorflow.lite.micro.compression import model_editor  # noqa: F401,F811
        return True
    except Exception:
        return False


def _tfl():
    from tflite_micro.python.tflite_micro import runtime
    from tflite_micro.tensorflow.lite.micro.compression import model_editor as me
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as tfl
    return runtime, me, tfl


def _run(sg, inputs):
    runtime, me, _ = _tfl()
    model = me.Model(subgraphs=[sg])
    it = runtime.Interpreter.from_bytes(bytes(model.build()), arena_size=1 << 20)
    for i, v in enumerate(inputs):
        it.set_input(v, i)
    it.invoke()
    return it.get_output(0)


def _act_type(tfl, bits):
    return tfl.TensorType.INT8 if bits == 8 else tfl.TensorType.INT16


def _options(op, tfl, kind, **fields):
    op._fb.builtinOptionsType = getattr(tfl.BuiltinOptions, kind)
    o = getattr(tfl, kind + "T")()
    for k, v in fields.items():
        setattr(o, k, v)
    op._fb.builtinOptions = o


def _relu(tfl, relu):
    return tfl.ActivationFunctionType.RELU if relu else tfl.ActivationFunctionType.NONE


def tflm_fully_connected(x, w, b, sx, sw, sy, bits=8, relu=False):
    """x [n][k] (int8 or int16), w [m][k] int8, b int32 (int64 for 16-bit) -> y [n][m]."""
    _, me, tfl = _tfl()
    n, k = x.shape
    m = w.shape[0]
    T = tfl.TensorType
    sg = me.Subgraph()
    xt = sg.add_tensor(shape=(n, k), dtype=_act_type(tfl, bits),
                       quantization=me.Quantization(sx, 0))
    wt = sg.add_tensor(shape=(m, k), dtype=T.INT8, data=w.astype(np.int8),
                       quantization=me.Quantization(sw, 0))
    bt = sg.add_tensor(shape=(m,), dtype=T.INT32 if bits == 8 else T.INT64, data=b,
                       quantization=me.Quantization(sx * sw, 0))
    yt = sg.add_tensor(shape=(n, m), dtype=_act_type(tfl, bits),
                       quantization=me.Quantization(sy, 0))
    op = sg.add_operator(opcode=tfl.BuiltinOperator.FULLY_CONNECTED, inputs=[xt, wt, bt],
                         outputs=[yt])
    _options(op, tfl, "FullyConnectedOptions", fusedActivationFunction=_relu(tfl, relu))
    sg.inputs, sg.outputs = [xt], [yt]
    return _run(sg, [x])


def same_padding(n, k, s):
    """TFLite SAME: out = ceil(n / s), pad_total = max((out-1)*s + k - n, 0), the smaller half
    first. Returns (out, pad_before)."""
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return out, total // 2


def tflm_conv2d(x, w, b, sx, sw, sy, stride, padding, depthwise=False, relu=False):
    """x [c][h][w] int8, w [oc][cin_g][kh][kw] int8 (depthwise: cin_g = 1, oc = c * mult),
    per-channel sw. Returns y [oc][oh][ow] in CHW."""
    _, me, tfl = _tfl()
    T = tfl.TensorType
    c, h, wd = x.shape
    oc, _, kh, kw = w.shape
    sg = me.Subgraph()
    xt = sg.add_tensor(shape=(1, h, wd, c), dtype=T.INT8, quantization=me.Quantization(sx, 0))
    if depthwise:
        wdata = np.ascontiguousarray(w[:, 0].transpose(1, 2, 0))[None]        # [1][kh][kw][oc]
        wq = me.Quantization([float(v) for v in sw], [0] * oc, axis=3)
    else:
        wdata = np.ascontiguousarray(w.transpose(0, 2, 3, 1))                  # OHWI
        wq = me.Quantization([float(v) for v in sw], [0] * oc, axis=0)
    wt = sg.add_tensor(shape=wdata.shape, dtype=T.INT8, data=wdata.astype(np.int8), quantization=wq)
    bt = sg.add_tensor(shape=(oc,), dtype=T.INT32, data=b.astype(np.int32),
                       quantization=me.Quantization([float(sx * v) for v in sw], [0] * oc, axis=0))
    if padding == "SAME":
        oh, ow = -(-h // stride[0]), -(-wd // stride[1])
    else:
        oh, ow = (h - kh) // stride[0] + 1, (wd - kw) // stride[1] + 1
    yt = sg.add_tensor(shape=(1, oh, ow, oc), dtype=T.INT8, quantization=me.Quantization(sy, 0))
    pad = tfl.Padding.SAME if padding == "SAME" else tfl.Padding.VALID
    if depthwise:
        op = sg.add_operator(opcode=tfl.BuiltinOperator.DEPTHWISE_CONV_2D, inputs=[xt, wt, bt],
                             outputs=[yt])
        _options(op, tfl, "DepthwiseConv2DOptions", padding=pad, strideH=stride[0],
                 strideW=stride[1], depthMultiplier=oc // c, dilationHFactor=1,
                 dilationWFactor=1, fusedActivationFunction=_relu(tfl, relu))
    else:
        op = sg.add_operator(opcode=tfl.BuiltinOperator.CONV_2D, inputs=[xt, wt, bt], outputs=[yt])
        _options(op, tfl, "Conv2DOptions", padding=pad, strideH=stride[0], strideW=stride[1],
                 dilationHFactor=1, dilationWFactor=1, fusedActivationFunction=_relu(tfl, relu))
    sg.inputs, sg.outputs = [xt], [yt]
    y = _run(sg, [np.ascontiguousarray(x.transpose(1, 2, 0))[None]])
    return y[0].transpose(2, 0, 1)


def tflm_add(a, b, sa, sb, sy, bits=8):
    _, me, tfl = _tfl()
    sg = me.Subgraph()
    at = sg.add_tensor(shape=a.shape, dtype=_act_type(tfl, bits),
                       quantization=me.Quantization(sa, 0))
    bt = sg.add_tensor(shape=b.shape, dtype=_act_type(tfl, bits),
                       quantization=me.Quantization(sb, 0))
    yt = sg.add_tensor(shape=a.shape, dtype=_act_type(tfl, bits),
                       quantization=me.Quantization(sy, 0))
    op = sg.add_operator(opcode=tfl.BuiltinOperator.ADD, inputs=[at, bt], outputs=[yt])
    _options(op, tfl, "AddOptions", fusedActivationFunction=0, potScaleInt16=False)
    sg.inputs, sg.outputs = [at, bt], [yt]
    return _run(sg, [a, b])


def tflm_pool(x, kind, k, stride, padding, s=0.05):
    """x [c][h][w] int8 -> [c][oh][ow]; same scale in and out (TFLite's requirement)."""
    _, me, tfl = _tfl()
    c, h, wd = x.shape
    sg = me.Subgraph()
    xt = sg.add_tensor(shape=(1, h, wd, c), dtype=tfl.TensorType.INT8,
                       quantization=me.Quantization(s, 0))
    if padding == "SAME":
        oh, ow = -(-h // stride[0]), -(-wd // stride[1])
    else:
        oh, ow = (h - k[0]) // stride[0] + 1, (wd - k[1]) // stride[1] + 1
    yt = sg.add_tensor(shape=(1, oh, ow, c), dtype=tfl.TensorType.INT8,
                       quantization=me.Quantization(s, 0))
    code = tfl.BuiltinOperator.MAX_POOL_2D if kind == "max" else tfl.BuiltinOperator.AVERAGE_POOL_2D
    op = sg.add_operator(opcode=code, inputs=[xt], outputs=[yt])
    pad = tfl.Padding.SAME if padding == "SAME" else tfl.Padding.VALID
    _options(op, tfl, "Pool2DOptions", padding=pad, strideH=stride[0], strideW=stride[1],
             filterHeight=k[0], filterWidth=k[1],
             fusedActivationFunction=0)
    sg.inputs, sg.outputs = [xt], [yt]
    y = _run(sg, [np.ascontiguousarray(x.transpose(1, 2, 0))[None]])
    return y[0].transpose(2, 0, 1)


# ---- onnxruntime ---------------------------------------------------------------------------

def _ort_run(nodes, inputs, inits):
    import onnxruntime as ort
    from onnx import TensorProto, helper
    g = helper.make_graph(nodes, "g",
                          [helper.make_tensor_value_info(k, TensorProto.INT8, list(v.shape))
                           for k, v in inputs.items()],
                          [helper.make_tensor_value_info("Y", TensorProto.INT8, None)], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, inputs)[0]


def _scalar_inits(**vals):
    from onnx import numpy_helper
    return [numpy_helper.from_array(np.asarray(v), k) for k, v in vals.items()]


def ort_qlinear_matmul(a, b_km, sa, sb, sy):
    """a [n][k] int8, b [k][m] int8, zero points 0 -> y [n][m] int8."""
    from onnx import helper, numpy_helper
    f, z = np.float32, np.int8(0)
    inits = _scalar_inits(sa=f(sa), za=z, sb=f(sb), zb=z, sy=f(sy), zy=z)
    inits.append(numpy_helper.from_array(b_km, "B"))
    node = helper.make_node("QLinearMatMul", ["A", "sa", "za", "B", "sb", "zb", "sy", "zy"], ["Y"])
    return _ort_run([node], {"A": a}, inits)


def ort_qlinear_conv(x, w, bias, sx, sw, sy, strides, pads, group):
    """x [c][h][w] int8, w [oc][cin_g][kh][kw] int8, per-channel sw, int32 bias; pads in ONNX
    order (top, left, bottom, right) -> y [oc][oh][ow]."""
    from onnx import helper, numpy_helper
    f = np.float32
    inits = _scalar_inits(sx=f(sx), zx=np.int8(0), sy=f(sy), zy=np.int8(0))
    inits += [numpy_helper.from_array(np.asarray(sw, f), "sw"),
              numpy_helper.from_array(np.zeros(len(sw), np.int8), "zw"),
              numpy_helper.from_array(w, "W"), numpy_helper.from_array(bias.astype(np.int32), "Bi")]
    node = helper.make_node("QLinearConv", ["X", "sx", "zx", "W", "sw", "zw", "sy", "zy", "Bi"],
                            ["Y"], strides=list(strides), pads=list(pads), group=group)
    return _ort_run([node], {"X": x[None]}, inits)[0]
