"""Whole-model int8 inference against an INDEPENDENT int8 implementation, bit for bit (issue 4
acceptance): the TFLite Micro interpreter (pip `tflite-micro`) running the equivalent int8
TFLite model of each digits example (mlp, cnn, dscnn).

The TFLite model is built from the int8 FixedProgram tinytrain exports (calibrated on the
adaptation x_train), never from the float model: for inference (trainable="none": per-channel
weight scales everywhere) and the forward pass of the training export (trainable="all": per-
tensor weight scales where a layer passes gradients back, activation headroom). It takes the
same int8 weights (fp.initial), the same int32 biases, the same weight scales and per-tensor
activation scales (as float32, the flatbuffer's type; zero points 0), so TFLM derives its own
requant multipliers from the scales. Op by op:

- Gemm -> FULLY_CONNECTED (per-channel weights), Conv -> CONV_2D, or DEPTHWISE_CONV_2D when
  groups == channels; a Relu fused in the requant (act_min = 0) -> fused RELU, else RELU.
- Conv / pool padding -> VALID or SAME when ONNX's pads mean the same thing; else an explicit
  PAD (real zeros, the zero point is 0) and a VALID conv. dscnn's stride-2 depthwise conv needs
  it: ONNX pads 1 on top / left, TFLite SAME would pad 0 there (the smaller half first).
- MaxPool -> MAX_POOL_2D, GlobalAveragePool -> AVERAGE_POOL_2D over the whole map (TFLite's
  int8 average rounds half away from zero, as ours; MEAN would requantize differently).
- Flatten -> RESHAPE, after a TRANSPOSE NHWC -> NCHW when the map has more than one channel
  and more than one pixel (cnn), so the FC weights stay byte for byte ours.

Both sides get the same int8 input (our quantization of the float sample, env[fp.qinput]).
Every layer output is compared, so a mismatch names the first layer that differs; the logits
must be identical to FixedTrainer's ints and to the generated C's (HostModel.infer returns
int8 * scale in float32; the same product of TFLM's ints is compared, which is exact: distinct
int8 values give distinct float32 products). No model is excluded.
"""
from pathlib import Path

import numpy as np
import pytest

import oracle_models as om
from tinytrain.datasets import make_adaptation_data
from tinytrain.fixed_reference import FixedTrainer
from tinytrain.passes import TrainConfig
from tinytrain.pipeline import export
from tinytrain.sim.host import HostModel

needs_tflm = pytest.mark.skipif(not om.tflm_available(),
                                reason="tflite-micro not installed (pip install tflite-micro)")
MODELS = Path(__file__).resolve().parents[2] / "examples" / "digits" / "models"
N_SAMPLES = 64


@pytest.fixture(scope="module")
def data():
    return make_adaptation_data(0)


def _nhwc(shape):
    return (shape[0], shape[2], shape[3], shape[1]) if len(shape) == 4 else tuple(shape)


def _ours(y):
    """A TFLM activation in our layout (NCHW / row-major), flat."""
    y = np.asarray(y)
    return (y.transpose(0, 3, 1, 2) if y.ndim == 4 else y).reshape(-1)


def _padding(n, k, s, before, out):
    """The TFLite padding type equal to ONNX's (pad before, output size), or None."""
    if before == 0 and out == (n - k) // s + 1:
        return "VALID"
    o, b = om.same_padding(n, k, s)
    return "SAME" if (o, b) == (out, before) else None


def _geometry(p, kind):
    """One padding type for both dims, or (None, pads) for an explicit PAD + VALID."""
    in_h, in_w = p["in_h"], p["in_w"]
    ph = _padding(in_h, p["k_h"], p["stride_h"], p["pad_top"], p["out_h"])
    pw = _padding(in_w, p["k_w"], p["stride_w"], p["pad_left"], p["out_w"])
    if ph is not None and ph == pw:
        return ph, None
    if kind != "conv":
        raise NotImplementedError(f"{kind} padding {p} has no TFLite equivalent here (a PAD "
                                  "before it would count or max the padded zeros)")
    bottom = max(0, (p["out_h"] - 1) * p["stride_h"] + p["k_h"] - in_h - p["pad_top"])
    right = max(0, (p["out_w"] - 1) * p["stride_w"] + p["k_w"] - in_w - p["pad_left"])
    return "VALID", (p["pad_top"], bottom, p["pad_left"], right)


def tflm_model(fp):
    """The int8 TFLite model equivalent to fp.forward. Returns (interpreter, input shape
    NHWC, [(call, tensor)] in output order)."""
    g = om.TflmGraph()
    h, outs = {}, []
    rq_relu = set()                  # outputs whose requant clamps at 0 (fused ReLU)

    def scale(t):
        return float(fp.scales[t][0])

    def w_b(c):
        w, b = c.inputs[1], (c.inputs[2] if len(c.inputs) > 2 else None)
        wq = np.asarray(fp.initial[w]).reshape(fp.tensors[w].shape)
        m = wq.shape[0]
        bq = np.asarray(fp.initial[b]) if b else np.zeros(m, np.int64)
        assert np.abs(bq).max(initial=0) < 2 ** 31 and np.abs(wq).max() <= 127
        return wq, bq, fp.scales[w]

    in_shape = None
    for c in fp.forward:
        a, y = c.args, c.outputs[0]
        x = h.get(c.inputs[0])
        if c.fn == "quantize":
            in_shape = _nhwc(fp.tensors[y].shape)
            h[y] = g.input(in_shape, scale(y))
            continue
        if c.fn == "gemm_fwd":
            assert a["wbits"] == 8 and len(x[0].shape) == 2
            wq, bq, sw = w_b(c)
            relu = a["rq"]["act_min"] == 0
            h[y] = g.fully_connected(x, wq, bq, sw, scale(y), relu)
        elif c.fn == "conv2d_fwd":
            assert a["wbits"] == 8
            p = a["conv"]
            if p["groups"] == 1:
                depthwise = False
            elif p["groups"] == p["in_c"]:
                depthwise = True
            else:
                raise NotImplementedError(f"grouped conv {c.node} (groups {p['groups']})")
            padding, pads = _geometry(p, "conv")
            if pads is not None:
                x = g.pad(x, *pads)
            wq, bq, sw = w_b(c)
            relu = a["rq"]["act_min"] == 0
            h[y] = g.conv2d(x, wq, bq, sw, scale(y), (p["stride_h"], p["stride_w"]), padding,
                            depthwise, relu)
        elif c.fn == "relu_fwd":
            if c.inputs[0] in rq_relu:           # already clamped by the producer's requant
                h[y] = x
                continue
            h[y] = g.relu(x)
        elif c.fn in ("maxpool2d_fwd", "avgpool2d_fwd"):
            p = a["pool"]
            padding, _ = _geometry(dict(p, in_c=p["c"]), "pool")
            h[y] = g.pool(x, "max" if c.fn == "maxpool2d_fwd" else "avg", (p["k_h"], p["k_w"]),
                          (p["stride_h"], p["stride_w"]), padding)
        elif c.fn == "global_avgpool_fwd":
            _, ih, iw, _ = x[0].shape
            h[y] = g.pool(x, "avg", (ih, iw), (1, 1), "VALID")
        elif c.fn == "copy":                     # Reshape / Flatten of an NCHW tensor
            shape = tuple(fp.tensors[y].shape)
            if len(shape) != 2:
                raise NotImplementedError(f"reshape {c.node} to {shape}")
            if len(x[0].shape) == 4 and x[0].shape[3] > 1 and x[0].shape[1] * x[0].shape[2] > 1:
                x = g.transpose(x, (0, 3, 1, 2))
            h[y] = g.reshape(x, shape)
        else:
            raise NotImplementedError(f"no TFLite equivalent built for {c.fn} ({c.node})")
        if c.fn in ("gemm_fwd", "conv2d_fwd") and a["rq"]["act_min"] == 0:
            rq_relu.add(y)
        g.mark_output(h[y])
        outs.append((c, y))
    assert outs[-1][1] == fp.logits
    return g.interpreter(), in_shape, outs


@needs_tflm
@pytest.mark.parametrize("trainable", ["none", "all"])
@pytest.mark.parametrize("name", ["mlp", "cnn", "dscnn"])
def test_int8_model_bit_exact_vs_tflm(tmp_path, data, name, trainable):
    res, fp, _ = export(MODELS / f"{name}.onnx", tmp_path / name, TrainConfig(trainable=trainable),
                        precision="int8", calibration=data["x_train"], command="test")
    assert (fp.trainable == ()) == (trainable == "none")
    it, in_shape, outs = tflm_model(fp)
    ref = FixedTrainer(fp)
    x = data["x_test"][:N_SAMPLES]
    logits_tflm = []
    for i in range(N_SAMPLES):
        env = dict(ref.weights)
        env[fp.input] = np.ascontiguousarray(x[i], np.float32).reshape(-1)
        ref._run(fp.forward, env, {}, None)
        q = env[fp.qinput].reshape(fp.tensors[fp.qinput].shape)
        got = om.run_interpreter(it, [np.ascontiguousarray(q.transpose(0, 2, 3, 1)
                                                           if q.ndim == 4 else q)
                                      .reshape(in_shape)], len(outs))
        for (c, t), yt in zip(outs, got):        # in program order: the first layer that differs
            ours, theirs = env[t], _ours(yt)
            bad = np.flatnonzero(ours != theirs)
            assert bad.size == 0, (
                f"{name} sample {i}: {c.fn} of node {c.node!r} ({t}) differs from TFLM in "
                f"{bad.size} of {ours.size} values; first at {bad[0]}: ours {ours[bad[0]]}, "
                f"TFLM {theirs[bad[0]]}")
        logits_tflm.append(_ours(got[-1]))
    logits_tflm = np.stack(logits_tflm)
    # not vacuous: the logits spread over the int8 range and classify far above chance (0.1;
    # the drifted adaptation test set: about 0.5 to 0.8 before any training)
    assert np.unique(logits_tflm).size > 40
    acc = float((logits_tflm.argmax(1) == data["y_test"][:N_SAMPLES]).mean())
    assert acc > 0.3, f"{name}: int8 accuracy {acc:.2f} on {N_SAMPLES} test samples"
    # the generated C: dequantized logits, int8 * scale in float32
    s = np.float32(fp.scales[fp.logits][0])
    y_c = HostModel(res.out_dir).infer(x).reshape(N_SAMPLES, -1)
    np.testing.assert_array_equal(y_c, logits_tflm.astype(np.float32) * s)
