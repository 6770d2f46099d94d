"""One-op models for the independent int8 oracles: TFLite Micro (the `tflite-micro` wheel's
Python interpreter; models built with its model_editor, NHWC) and onnxruntime (QLinear ops,
NCHW). Used by test_int8_oracle.py; every function returns the oracle's output in our CHW /
row-major layout. TflmGraph builds whole int8 models for test_model_int8_oracle.py."""
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


# ---- multi-op TFLM graphs --------------------------------------------------------------------

class TflmGraph:
    """A whole int8 model as one TFLite subgraph (NHWC, zero points 0), built op by op and run
    in the TFLM interpreter. Weights come in our layouts (FC [m][k], conv OIHW) with per-channel
    float scales; every op returns a handle `(tensor, scale)`. Any handle can be marked as an
    extra subgraph output, so a mismatch can be located layer by layer."""

    def __init__(self):
        _, self.me, self.tfl = _tfl()
        self.sg = self.me.Subgraph()
        self.ins, self.outs = [], []

    def _act(self, shape, scale):
        t = self.sg.add_tensor(shape=tuple(shape), dtype=self.tfl.TensorType.INT8,
                               quantization=self.me.Quantization(float(scale), 0))
        return t, float(scale)

    def _const(self, a, dtype, quant=None):
        return self.sg.add_tensor(shape=a.shape, dtype=dtype, data=np.ascontiguousarray(a),
                                  quantization=quant)

    def _per_channel(self, scales, axis):
        s = [float(v) for v in np.asarray(scales, np.float64).reshape(-1)]
        return self.me.Quantization(s, [0] * len(s), axis=axis)

    def _op(self, code, inputs, outputs, kind=None, **fields):
        op = self.sg.add_operator(opcode=getattr(self.tfl.BuiltinOperator, code),
                                  inputs=list(inputs), outputs=list(outputs))
        if kind is not None:
            _options(op, self.tfl, kind, **fields)

    def input(self, shape, scale):
        h = self._act(shape, scale)
        self.ins.append(h[0])
        return h

    def mark_output(self, h):
        self.outs.append(h[0])
        return len(self.outs) - 1

    def fully_connected(self, x, w, b, sw, sy, relu=False):
        """x [n][k]; w [m][k] int8, b int32 [m], sw [m] (or one) weight scales."""
        T = self.tfl.TensorType
        m = w.shape[0]
        sw = np.broadcast_to(np.asarray(sw, np.float64).reshape(-1), (m,))
        wt = self._const(w.astype(np.int8), T.INT8, self._per_channel(sw, 0))
        bt = self._const(b.astype(np.int32), T.INT32, self._per_channel(x[1] * sw, 0))
        y = self._act((x[0].shape[0], m), sy)
        self._op("FULLY_CONNECTED", [x[0], wt, bt], [y[0]], "FullyConnectedOptions",
                 fusedActivationFunction=_relu(self.tfl, relu))
        return y

    def conv2d(self, x, w, b, sw, sy, stride, padding, depthwise=False, relu=False):
        """x [1][h][w][c]; w OIHW int8 (depthwise: [c * mult][1][kh][kw]), per-channel sw."""
        T = self.tfl.TensorType
        _, h, wd, c = x[0].shape
        oc, _, kh, kw = w.shape
        sw = np.broadcast_to(np.asarray(sw, np.float64).reshape(-1), (oc,))
        if depthwise:
            wdata, axis = np.ascontiguousarray(w[:, 0].transpose(1, 2, 0))[None], 3
        else:
            wdata, axis = np.ascontiguousarray(w.transpose(0, 2, 3, 1)), 0        # OHWI
        wt = self._const(wdata.astype(np.int8), T.INT8, self._per_channel(sw, axis))
        bt = self._const(b.astype(np.int32), T.INT32, self._per_channel(x[1] * sw, 0))
        if padding == "SAME":
            oh, ow = -(-h // stride[0]), -(-wd // stride[1])
        else:
            oh, ow = (h - kh) // stride[0] + 1, (wd - kw) // stride[1] + 1
        y = self._act((1, oh, ow, oc), sy)
        pad = getattr(self.tfl.Padding, padding)
        common = dict(padding=pad, strideH=stride[0], strideW=stride[1], dilationHFactor=1,
                      dilationWFactor=1, fusedActivationFunction=_relu(self.tfl, relu))
        if depthwise:
            self._op("DEPTHWISE_CONV_2D", [x[0], wt, bt], [y[0]], "DepthwiseConv2DOptions",
                     depthMultiplier=oc // c, **common)
        else:
            self._op("CONV_2D", [x[0], wt, bt], [y[0]], "Conv2DOptions", **common)
        return y

    def pad(self, x, top, bottom, left, right):
        """Explicit zero padding (the zero point is 0, so it pads real zeros)."""
        _, h, wd, c = x[0].shape
        p = np.array([[0, 0], [top, bottom], [left, right], [0, 0]], np.int32)
        y = self._act((1, h + top + bottom, wd + left + right, c), x[1])
        self._op("PAD", [x[0], self._const(p, self.tfl.TensorType.INT32)], [y[0]])
        return y

    def pool(self, x, kind, k, stride, padding):
        _, h, wd, c = x[0].shape
        if padding == "SAME":
            oh, ow = -(-h // stride[0]), -(-wd // stride[1])
        else:
            oh, ow = (h - k[0]) // stride[0] + 1, (wd - k[1]) // stride[1] + 1
        y = self._act((1, oh, ow, c), x[1])
        self._op("MAX_POOL_2D" if kind == "max" else "AVERAGE_POOL_2D", [x[0]], [y[0]],
                 "Pool2DOptions", padding=getattr(self.tfl.Padding, padding), strideH=stride[0],
                 strideW=stride[1], filterHeight=k[0], filterWidth=k[1],
                 fusedActivationFunction=0)
        return y

    def relu(self, x):
        y = self._act(x[0].shape, x[1])
        self._op("RELU", [x[0]], [y[0]])
        return y

    def transpose(self, x, perm):
        y = self._act(tuple(x[0].shape[p] for p in perm), x[1])
        self._op("TRANSPOSE", [x[0], self._const(np.array(perm, np.int32),
                                                 self.tfl.TensorType.INT32)], [y[0]])
        return y

    def reshape(self, x, shape):
        y = self._act(shape, x[1])
        self._op("RESHAPE", [x[0], self._const(np.array(shape, np.int32),
                                               self.tfl.TensorType.INT32)], [y[0]],
                 "ReshapeOptions", newShape=list(shape))
        return y

    def interpreter(self):
        """Compile once; run with `run_interpreter` for every sample."""
        runtime, _, _ = _tfl()
        self.sg.inputs, self.sg.outputs = list(self.ins), list(self.outs)
        model = self.me.Model(subgraphs=[self.sg])
        return runtime.Interpreter.from_bytes(bytes(model.build()), arena_size=1 << 20)


def run_interpreter(it, inputs, n_outputs):
    for i, v in enumerate(inputs):
        it.set_input(v, i)
    it.invoke()
    return [np.array(it.get_output(i)) for i in range(n_outputs)]


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
