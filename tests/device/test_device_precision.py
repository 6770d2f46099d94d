"""fp16, int8 and int16 exports on the emulated boards: the unchanged firmware trains them and
every loss, every trained parameter and an inference after training are bit-identical to the
host simulator — on an FPU core (Cortex-M4F) and a core without one (RV32IMAC, soft float for
the API's float conversions)."""
from __future__ import annotations

import pytest

from tinytrain.datasets import make_adaptation_data
from tinytrain.device import run_on_board
from tinytrain.passes import TrainConfig
from tinytrain.passes.quantize import QuantConfig
from tinytrain.pipeline import export

from .devlib import MODELS_DIR, STEPS, adaptation_data, host_reference, mismatches, require_qemu

pytestmark = pytest.mark.qemu

CASES = [("cnn", "int8", dict(trainable="all")),
         ("resnet8", "int16", dict(trainable="last:2")),
         ("mlp", "int8", dict(trainable="last:1", algo="zo", zo_eps=1e-2, perturbations=2)),
         ("cnn", "fp16", dict(trainable="all", optimizer="momentum")),
         ("cnn", "fp16", dict(trainable="all", algo="jvp", perturbations=2)),
         ("cnn", "int8", dict(trainable="all", algo="jvp", perturbations=2)),
         # zo + backprop hybrid, sharpness-aware point, an int16 layer in an int8 model
         ("mlp", "int8", dict(trainable="all", algo="zo", hybrid_bp_layers=1, zo_sam_rho=0.05,
                              zo_eps=1e-2, perturbations=2,
                              quant=QuantConfig(bits=8, layer_bits=(("/1/Gemm", 16),))))]


@pytest.mark.parametrize("board", ["qemu-cortex-m4", "qemu-rv32imac"])
@pytest.mark.parametrize("model,precision,kw", CASES,
                         ids=[f"{m}-{p}-{k.get('algo', 'bp')}{'-hybrid' if 'quant' in k else ''}"
                              for m, p, k in CASES])
def test_precision_bit_identical_on_board(tmp_path, board, model, precision, kw):
    require_qemu(board)
    x, y = adaptation_data(STEPS)
    calib = make_adaptation_data(0)["x_train"] if precision.startswith("int") else None
    kw = dict(kw)
    quant = kw.pop("quant", None)
    res, _, _ = export(MODELS_DIR / f"{model}.onnx", tmp_path / "proj", TrainConfig(lr=0.01, **kw),
                       precision=precision, calibration=calib, command="test", quant=quant)
    ref = host_reference(res.out_dir, x, y, STEPS)
    run = run_on_board(res.out_dir, board, x, y, STEPS, timeout_s=600)
    assert not mismatches(run, ref)
