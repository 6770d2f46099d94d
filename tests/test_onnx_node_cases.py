"""ONNX's own backend node tests, run through import_onnx + the numpy reference executor.

onnx 1.23 builds the node cases in memory (``onnx.backend.test.loader.load_model_tests(kind=
"node")`` imports ``onnx.backend.test.case.node`` and returns TestCases with the model and the
expected outputs); the ``pytorch-converted`` cases are read from the wheel's data directory.

Harness: the first graph input is the data (its dimension 0 is the batch, so the model is imported
with ``batch`` = that size); every further graph input (weights, bias, shape, axes, Clip bounds,
BatchNorm statistics, Dropout ratio) becomes an initializer holding the case's value, as it would
be in a trained model. Outputs are compared in float64 with relative error <= 1e-5
(max|got - want| / max|want|).

Every case of the op families the importer claims is listed below, explicitly: RUN cases must
match; SKIP cases say why. A skip marked REFUSED is something tinytrain cannot express, and the
test first checks that import_onnx refuses it with a TinytrainError (never a wrong answer or a
raw traceback); N_A cases are not single-input float tensor models at all.
"""
from __future__ import annotations

import functools
import glob
import os
import re
import warnings

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from tinytrain.errors import TinytrainError
from tinytrain.frontend import import_onnx
from tinytrain.reference import run_forward

RTOL = 1e-5

FAMILIES = re.compile(
    r"^test_(?:conv|gemm|matmul|relu|clip|leakyrelu|sigmoid|tanh|maxpool|averagepool|"
    r"globalaveragepool|globalmaxpool|flatten|reshape|add|mul|sub|div|softmax|batchnorm|identity|"
    r"dropout|squeeze|unsqueeze|reduce_mean)(?:_.*)?$")

REFUSED, N_A = "refused", "n/a"

RUN = [
    "test_add_bcast",
    "test_averagepool_1d_default", "test_averagepool_2d_ceil",
    "test_averagepool_2d_ceil_last_window_starts_on_pad", "test_averagepool_2d_default",
    "test_averagepool_2d_pads", "test_averagepool_2d_pads_count_include_pad",
    "test_averagepool_2d_precomputed_pads",
    "test_averagepool_2d_precomputed_pads_count_include_pad",
    "test_averagepool_2d_precomputed_same_upper", "test_averagepool_2d_precomputed_strides",
    "test_averagepool_2d_same_lower", "test_averagepool_2d_same_upper",
    "test_averagepool_2d_strides",
    "test_batchnorm_epsilon", "test_batchnorm_example",
    "test_clip", "test_clip_default_inbounds", "test_clip_default_inbounds_expanded",
    "test_clip_default_max", "test_clip_default_min", "test_clip_example", "test_clip_inbounds",
    "test_clip_min_greater_than_max", "test_clip_outbounds", "test_clip_splitbounds",
    "test_conv_with_autopad_same", "test_conv_with_strides_and_asymmetric_padding",
    "test_conv_with_strides_no_padding", "test_conv_with_strides_padding",
    "test_div_bcast",
    "test_dropout_default", "test_dropout_default_old", "test_dropout_default_ratio",
    "test_dropout_random_old",
    "test_flatten_axis1", "test_flatten_default_axis", "test_flatten_negative_axis3",
    "test_gemm_alpha", "test_gemm_beta", "test_gemm_default_no_bias",
    "test_gemm_default_scalar_bias", "test_gemm_default_single_elem_vector_bias",
    "test_gemm_default_vector_bias", "test_gemm_default_zero_bias", "test_gemm_transposeB",
    "test_globalaveragepool", "test_globalaveragepool_precomputed",
    "test_globalmaxpool", "test_globalmaxpool_precomputed",
    "test_identity",
    "test_leakyrelu", "test_leakyrelu_default", "test_leakyrelu_example",
    "test_matmul_2d",
    "test_maxpool_1d_default", "test_maxpool_2d_ceil",
    "test_maxpool_2d_ceil_output_size_reduce_by_one", "test_maxpool_2d_default",
    "test_maxpool_2d_pads", "test_maxpool_2d_precomputed_pads",
    "test_maxpool_2d_precomputed_same_upper", "test_maxpool_2d_precomputed_strides",
    "test_maxpool_2d_same_lower", "test_maxpool_2d_same_upper", "test_maxpool_2d_strides",
    "test_mul_bcast",
    "test_relu",
    "test_reshape_extended_dims", "test_reshape_negative_dim", "test_reshape_reduced_dims",
    "test_reshape_reordered_last_dims", "test_reshape_zero_and_negative_dim",
    "test_reshape_zero_dim",
    "test_sigmoid", "test_sigmoid_example",
    "test_softmax_axis_2", "test_softmax_default_axis", "test_softmax_example",
    "test_softmax_large_number", "test_softmax_negative_axis",
    "test_squeeze_negative_axes",
    "test_sub_bcast",
    "test_tanh", "test_tanh_example",
    "test_unsqueeze_axis_1", "test_unsqueeze_axis_2", "test_unsqueeze_negative_axes",
    "test_unsqueeze_three_axes", "test_unsqueeze_two_axes", "test_unsqueeze_unsorted_axes",
]

# The expected output of this case is written out by hand with 4 decimals; onnxruntime and
# onnx.reference agree with tinytrain to 1e-7.
LOOSE = {"test_averagepool_2d_ceil_last_window_starts_on_pad": 1e-3}

_INT = "integer tensors: tinytrain imports float32 models (quantization is its own pass)"
_TWO_DATA = ("both operands are data tensors of the batch's shape; tinytrain graphs have one "
             "data input, and as a constant the second operand would vary along the batch")
_EXPANDED = "function-expanded form built from ops tinytrain does not import ({})"
_3D = "3-D (5-D tensor) pooling; tinytrain pools 1-D and 2-D inputs"
SKIP = {
    **{f"test_{op}_{t}": (REFUSED, _INT) for op in ("add", "sub", "mul", "div")
       for t in ("int16", "int8", "uint16", "uint32", "uint64", "uint8")},
    "test_div_int32_trunc": (REFUSED, _INT),
    "test_maxpool_2d_uint8": (REFUSED, _INT),
    **{f"test_clip_default_int8_{t}": (REFUSED, _INT)
       for t in ("inbounds", "inbounds_expanded", "max", "max_expanded", "min", "min_expanded")},
    **{f"test_{op}": (REFUSED, _TWO_DATA) for op in ("add", "sub", "mul", "div")},
    **{f"test_{op}_example": (REFUSED, _TWO_DATA) for op in ("sub", "mul", "div")},
    **{f"test_clip_{t}_expanded": (REFUSED, _EXPANDED.format("Less, Where"))
       for t in ("default_max", "default_min", "example", "inbounds", "min_greater_than_max",
                 "outbounds", "splitbounds")},
    "test_clip_expanded": (REFUSED, _EXPANDED.format("Less, Where")),
    **{f"test_leakyrelu{t}_expanded": (REFUSED, _EXPANDED.format("Less, Where"))
       for t in ("", "_default", "_example")},
    "test_relu_expanded_ver18": (REFUSED, _EXPANDED.format("Max")),
    **{f"test_softmax_{t}_expanded{v}": (REFUSED, _EXPANDED.format("ReduceMax, Exp, ReduceSum"))
       for t in ("axis_0", "axis_1", "axis_2", "default_axis", "example", "large_number",
                 "negative_axis") for v in ("", "_ver18")},
    "test_averagepool_2d_dilations": (REFUSED, "dilations > 1"),
    "test_maxpool_2d_dilations": (REFUSED, "dilations > 1"),
    "test_averagepool_3d_default": (REFUSED, _3D),
    "test_averagepool_3d_dilations_small": (REFUSED, _3D),
    **{f"test_averagepool_3d_dilations_large_count_include_pad_is_{c}_ceil_mode_is_{m}":
       (REFUSED, _3D) for c in (0, 1) for m in ("False", "True")},
    "test_maxpool_3d_default": (REFUSED, _3D),
    "test_maxpool_3d_dilations": (REFUSED, _3D),
    "test_maxpool_3d_dilations_use_ref_impl": (REFUSED, _3D),
    "test_maxpool_3d_dilations_use_ref_impl_large": (REFUSED, _3D),
    "test_maxpool_with_argmax_2d_precomputed_pads":
        (REFUSED, "MaxPool's Indices output is a second graph output"),
    "test_maxpool_with_argmax_2d_precomputed_strides":
        (REFUSED, "MaxPool's Indices output is a second graph output"),
    "test_batchnorm_epsilon_training_mode":
        (REFUSED, "BatchNormalization in training mode (batch statistics, 3 outputs)"),
    "test_batchnorm_example_training_mode":
        (REFUSED, "BatchNormalization in training mode (batch statistics, 3 outputs)"),
    "test_dropout_default_mask": (REFUSED, "Dropout's mask is a second graph output"),
    "test_dropout_default_mask_ratio": (REFUSED, "Dropout's mask is a second graph output"),
    "test_flatten_axis0": (REFUSED, "Flatten(axis=0) merges the batch into one row"),
    "test_flatten_negative_axis4": (REFUSED, "Flatten(axis=-4 = 0) merges the batch into one row"),
    "test_flatten_axis2": (REFUSED, "Flatten(axis=2) merges the batch with dimension 1"),
    "test_flatten_negative_axis2": (REFUSED, "Flatten(axis=-2 = 2) merges the batch with dim 1"),
    "test_flatten_axis3": (REFUSED, "Flatten(axis=3) merges the batch with dimensions 1-2"),
    "test_flatten_negative_axis1": (REFUSED, "Flatten(axis=-1 = 3) merges the batch with dims 1-2"),
    "test_gemm_all_attributes": (REFUSED, "transA=1: the batch is A's second dimension"),
    "test_gemm_transposeA": (REFUSED, "transA=1: the batch is A's second dimension"),
    "test_gemm_default_matrix_bias": (REFUSED, "bias C [3, 4] varies along the batch"),
    "test_matmul_1d_1d": (REFUSED, "1-D MatMul (a dot product over the batch)"),
    "test_matmul_1d_3d": (REFUSED, "1-D MatMul input; tinytrain's Gemm takes [batch, features]"),
    "test_matmul_3d": (REFUSED, "batched 3-D MatMul; tinytrain's Gemm takes [batch, features]"),
    "test_matmul_4d": (REFUSED, "batched 4-D MatMul; tinytrain's Gemm takes [batch, features]"),
    "test_matmul_4d_1d": (REFUSED, "4-D MatMul; tinytrain's Gemm takes [batch, features]"),
    "test_matmul_bcast": (REFUSED, "broadcast 4-D MatMul; tinytrain's Gemm takes [batch, "
                                   "features]"),
    **{f"test_reduce_mean_{t}": (REFUSED, "ReduceMean over the channel axis or over all axes "
                                 "(incl. the batch); only global average pooling is imported")
       for t in ("default_axes_keepdims_example", "default_axes_keepdims_random",
                 "do_not_keepdims_example", "do_not_keepdims_random", "keepdims_example",
                 "keepdims_random", "negative_axes_keepdims_example",
                 "negative_axes_keepdims_random")},
    "test_reshape_negative_extended_dims": (REFUSED, "reshape [2,3,4] -> [1,2,3,4] moves the "
                                                     "batch"),
    "test_reshape_one_dim": (REFUSED, "reshape [2,3,4] -> [24] merges the batch"),
    "test_reshape_reordered_all_dims": (REFUSED, "reshape [2,3,4] -> [4,2,3] changes dimension 0"),
    "test_reshape_allowzero_reordered": (N_A, "the data has batch size 0 (an empty tensor)"),
    "test_softmax_axis_0": (REFUSED, "softmax across the batch (axis 0)"),
    "test_softmax_axis_1": (REFUSED, "opset-13 softmax over a middle axis (1 of 3)"),
    "test_squeeze": (REFUSED, "Squeeze removes dimension 0 (the batch)"),
    "test_unsqueeze_axis_0": (REFUSED, "Unsqueeze puts a new dimension in front of the batch"),
    "test_identity_opt": (N_A, "the input is an optional, not a tensor"),
    "test_identity_sequence": (N_A, "the input is a sequence, not a tensor"),
}

# ---- pytorch-converted (old opset-6 models, converted to opset 13 by onnx.version_converter)
PT_RUN = [
    "test_AvgPool1d", "test_AvgPool1d_stride", "test_AvgPool2d", "test_AvgPool2d_stride",
    "test_BatchNorm1d_3d_input_eval", "test_BatchNorm2d_eval", "test_BatchNorm2d_momentum_eval",
    "test_BatchNorm3d_eval", "test_BatchNorm3d_momentum_eval",
    "test_Conv1d", "test_Conv1d_groups", "test_Conv1d_pad1", "test_Conv1d_pad1size1",
    "test_Conv1d_pad2", "test_Conv1d_pad2size1", "test_Conv1d_stride",
    "test_Conv2d", "test_Conv2d_depthwise", "test_Conv2d_depthwise_padded",
    "test_Conv2d_depthwise_strided", "test_Conv2d_depthwise_with_multiplier", "test_Conv2d_groups",
    "test_Conv2d_groups_thnn", "test_Conv2d_no_bias", "test_Conv2d_padding", "test_Conv2d_strided",
    "test_LeakyReLU", "test_LeakyReLU_with_negval", "test_Linear", "test_Linear_no_bias",
    "test_MaxPool1d", "test_MaxPool1d_stride", "test_MaxPool2d",
    "test_ReLU", "test_Sigmoid", "test_Softmax", "test_Tanh", "test_softmax_functional_dim3",
    "test_softmax_lastdim",
]
_UNSUPPORTED = "op not supported by tinytrain ({})"
PT_SKIP = {
    **{f"test_{n}": (REFUSED, "3-D convolution / pooling") for n in (
        "AvgPool3d", "AvgPool3d_stride", "AvgPool3d_stride1_pad0_gpu_input", "Conv3d",
        "Conv3d_dilated", "Conv3d_dilated_strided", "Conv3d_groups", "Conv3d_no_bias",
        "Conv3d_stride", "Conv3d_stride_padding", "MaxPool3d", "MaxPool3d_stride",
        "MaxPool3d_stride_padding")},
    **{f"test_{n}": (REFUSED, "dilations > 1") for n in (
        "Conv1d_dilated", "Conv2d_dilated", "MaxPool1d_stride_padding_dilation",
        "MaxPool2d_stride_padding_dilation")},
    "test_ConvTranspose2d": (REFUSED, _UNSUPPORTED.format("ConvTranspose")),
    "test_ConvTranspose2d_no_bias": (REFUSED, _UNSUPPORTED.format("ConvTranspose")),
    "test_ConstantPad2d": (REFUSED, _UNSUPPORTED.format("Pad")),
    "test_ReflectionPad2d": (REFUSED, _UNSUPPORTED.format("Pad")),
    "test_ReplicationPad2d": (REFUSED, _UNSUPPORTED.format("Pad")),
    "test_ZeroPad2d": (REFUSED, _UNSUPPORTED.format("Pad")),
    "test_ELU": (REFUSED, _UNSUPPORTED.format("Elu")),
    "test_SELU": (REFUSED, _UNSUPPORTED.format("Selu")),
    "test_Softplus": (REFUSED, _UNSUPPORTED.format("Softplus")),
    "test_Softsign": (REFUSED, _UNSUPPORTED.format("Abs")),
    "test_Softmin": (REFUSED, _UNSUPPORTED.format("Neg")),
    "test_GLU": (REFUSED, _UNSUPPORTED.format("Split")),
    "test_GLU_dim": (REFUSED, _UNSUPPORTED.format("Split")),
    "test_LogSoftmax": (REFUSED, _UNSUPPORTED.format("LogSoftmax")),
    "test_log_softmax_dim3": (REFUSED, _UNSUPPORTED.format("LogSoftmax")),
    "test_log_softmax_lastdim": (REFUSED, _UNSUPPORTED.format("LogSoftmax")),
    **{f"test_PReLU_{n}": (REFUSED, _UNSUPPORTED.format("PRelu"))
       for n in ("1d", "1d_multiparam", "2d", "2d_multiparam", "3d", "3d_multiparam")},
    "test_PixelShuffle": (REFUSED, _UNSUPPORTED.format("Transpose")),
    "test_PoissonNLLLLoss_no_reduce": (REFUSED, _UNSUPPORTED.format("Exp")),
    "test_Embedding": (REFUSED, "integer (index) input"),
    "test_Embedding_sparse": (REFUSED, "integer (index) input"),
}


# ---- loading --------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _node_cases() -> dict:
    from onnx.backend.test.loader import load_model_tests
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        cases = load_model_tests(kind="node")
    return {c.name: c for c in cases if FAMILIES.match(c.name)}


@functools.lru_cache(maxsize=None)
def _pt_cases() -> dict:
    from onnx.backend.test.loader import DATA_DIR, load_model_tests
    if not os.path.isdir(os.path.join(DATA_DIR, "pytorch-converted")):
        return {}
    return {c.name: c for c in load_model_tests(kind="pytorch-converted")}


def _as_single_input(model: onnx.ModelProto, inputs) -> tuple[onnx.ModelProto, np.ndarray]:
    """Graph inputs after the first become initializers with the case's values."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    init = {t.name for t in g.initializer}
    real = [vi for vi in g.input if vi.name not in init]
    for vi, value in list(zip(real, inputs))[1:]:
        g.initializer.append(numpy_helper.from_array(np.asarray(value), vi.name))
        g.input.remove(vi)
    return m, np.asarray(inputs[0])


def _node_case(name):
    case = _node_cases().get(name)
    if case is None:
        pytest.fail(f"{name} is not among onnx's node test cases any more")
    (inputs, outputs), = case.data_sets
    model, x = _as_single_input(case.model, inputs)
    return model, x, [np.asarray(o) for o in outputs]


def _pt_case(name):
    case = _pt_cases().get(name)
    if case is None:
        pytest.skip("onnx's pytorch-converted test data is not installed")
    model = onnx.load(os.path.join(case.model_dir, "model.onnx"))
    if model.opset_import[0].version < 11:
        model = onnx.version_converter.convert_version(model, 13)
        model.ir_version = max(model.ir_version, 7)
    d = os.path.join(case.model_dir, "test_data_set_0")
    load = lambda pat: [numpy_helper.to_array(onnx.load_tensor(p))  # noqa: E731
                        for p in sorted(glob.glob(os.path.join(d, pat)))]
    model, x = _as_single_input(model, load("input_*.pb"))
    return model, x, load("output_*.pb")


def _run(model, x):
    g = import_onnx(model, batch=x.shape[0])
    got = run_forward(g, {g.inputs[0]: x}, dtype=np.float64)[g.outputs[0]]
    return g, got


def _compare(name, got, want, rtol):
    assert got.shape == want.shape, f"{name}: shape {got.shape} != {want.shape}"
    scale = max(float(np.abs(want).max(initial=0.0)), 1e-30)
    err = float(np.abs(got - want.astype(np.float64)).max(initial=0.0)) / scale
    assert err <= rtol, f"{name}: relative error {err:.3g} > {rtol}"


def _check_refused(model, x):
    with pytest.raises(TinytrainError) as ei:
        import_onnx(model, batch=max(int(x.shape[0]) if x.ndim else 1, 1))
    msg = str(ei.value)
    assert msg and "\n" not in msg
    assert any(w in msg for w in ("node '", "graph input", "graph outputs")), msg


# ---- the tests --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", RUN)
def test_node_case(name):
    model, x, outputs = _node_case(name)
    _, got = _run(model, x)
    _compare(name, got, outputs[0], LOOSE.get(name, RTOL))
    if name in LOOSE:  # the reference value is imprecise: check against onnxruntime too
        import onnxruntime as ort
        sess = ort.InferenceSession(model.SerializeToString())
        _compare(name, got, sess.run(None, {sess.get_inputs()[0].name: x})[0], RTOL)


@pytest.mark.parametrize("name", sorted(SKIP))
def test_node_case_skipped(name):
    kind, reason = SKIP[name]
    if kind == REFUSED:
        model, x, _ = _node_case(name)
        _check_refused(model, x)
    pytest.skip(f"{kind}: {reason}")


@pytest.mark.parametrize("name", PT_RUN)
def test_pytorch_converted_case(name):
    model, x, outputs = _pt_case(name)
    _, got = _run(model, x)
    _compare(name, got, outputs[0], RTOL)


@pytest.mark.parametrize("name", sorted(PT_SKIP))
def test_pytorch_converted_skipped(name):
    kind, reason = PT_SKIP[name]
    model, x, _ = _pt_case(name)
    if kind == REFUSED:
        _check_refused(model, x)
    pytest.skip(f"{kind}: {reason}")


def test_case_lists_cover_every_case():
    """Every node case of the claimed op families is classified, exactly once."""
    have = set(_node_cases())
    assert not set(RUN) & set(SKIP)
    assert have == set(RUN) | set(SKIP), {
        "unclassified": sorted(have - set(RUN) - set(SKIP)),
        "gone": sorted((set(RUN) | set(SKIP)) - have)}
    pt = set(_pt_cases())
    if pt:
        assert not set(PT_RUN) & set(PT_SKIP)
        assert pt == set(PT_RUN) | set(PT_SKIP), sorted(pt ^ (set(PT_RUN) | set(PT_SKIP)))
