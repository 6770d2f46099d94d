"""Fixed-point (int8 / int16) exports: the generated C and the numpy interpreter of the same
lowered program agree bit for bit — every loss, every integer parameter and every saturation
counter after every one of 100 training steps — on each example model; the C is sanitizer-
clean; bad input gives clear errors and changes nothing."""
import numpy as np
import pytest

from tinytrain.datasets import make_adaptation_data
from tinytrain.errors import ConfigError, ExportError, NumericFaultError
from tinytrain.fixed_reference import FixedTrainer
from tinytrain.passes import TrainConfig
from tinytrain.pipeline import export
from tinytrain.sim.host import HostModel, run_sanitized

from .fixed_lockstep import lockstep
from pathlib import Path

MODELS = Path(__file__).resolve().parents[2] / "examples" / "digits" / "models"

STEPS = 100


@pytest.fixture(scope="module")
def data():
    return make_adaptation_data(0)


def _export(tmp_path, data, name, precision, trainable="all", lr=0.02, quant=None, **kw):
    res, fp, plan = export(MODELS / f"{name}.onnx", tmp_path / f"{name}_{precision}",
                           TrainConfig(lr=lr, trainable=trainable, **kw), precision=precision,
                           calibration=data["x_train"], command="test", quant=quant)
    return res, fp, plan


CASES = [(m, p, "all") for m in ("mlp", "cnn", "dscnn", "resnet8") for p in ("int8", "int16")]
CASES += [(m, "int8", t) for m in ("mlp", "cnn") for t in ("last:2", "bias")]
CASES = [c + ("sgd",) for c in CASES]
CASES += [("cnn", "int8", "all", "momentum"), ("resnet8", "int16", "last:2", "momentum"),
          ("mlp", "int16", "bias", "momentum")]


@pytest.mark.parametrize("name,precision,trainable,optimizer", CASES)
def test_c_matches_numpy_bit_for_bit_100_steps(tmp_path, data, name, precision, trainable,
                                               optimizer):
    res, fp, _ = _export(tmp_path, data, name, precision, trainable, optimizer=optimizer)
    c, ref = HostModel(res.out_dir), FixedTrainer(fp)
    rp = lockstep(c, ref, data["x_train"], data["y_train"], STEPS)
    np.testing.assert_array_equal(c.infer(data["x_test"][:40]), ref.infer(data["x_test"][:40]))
    for k, v in ref.params.items():                     # dequantized views agree too
        np.testing.assert_array_equal(c.params[k], v)
    # the parameters did move (the test would pass vacuously on a frozen model)
    moved = [k for k in fp.trainable if not np.array_equal(rp[k], fp.initial[k].reshape(rp[k].shape))]
    assert moved


@pytest.mark.parametrize("precision", ["int8", "int16"])
def test_int_training_learns_the_adaptation(tmp_path, data, precision):
    """One epoch of on-device adaptation in fixed point moves test accuracy up (MLP, all)."""
    res, fp, _ = _export(tmp_path, data, "mlp", precision, lr=0.05)
    c = HostModel(res.out_dir)
    acc = lambda: float((c.infer(data["x_test"]).argmax(1) == data["y_test"]).mean())  # noqa: E731
    before = acc()
    order = np.random.default_rng(0).permutation(len(data["y_train"]))
    for i in order:
        c.train_step(data["x_train"][i], data["y_train"][i])
    after = acc()
    assert after >= before + 0.08, (before, after)


def test_memory_per_precision(tmp_path, data):
    """int8 parameters are a quarter of fp32's bytes (biases stay int32), int16 half; weight
    gradients are formed one output row at a time, so the int8 arena stays near fp32's fused
    one and the whole int8 training RAM is well below fp32's."""
    from tinytrain.pipeline import load_model, make_program
    g = load_model(MODELS / "cnn.onnx")
    _, plan32 = make_program(g, TrainConfig(trainable="all", lr=0.02))
    _, _, p8 = _export(tmp_path, data, "cnn", "int8")
    _, _, p16 = _export(tmp_path, data, "cnn", "int16")
    w32 = plan32.section_bytes["params_rw"]
    assert p8.section_bytes["params_rw"] < 0.4 * w32
    assert p16.section_bytes["params_rw"] < 0.6 * w32
    assert p8.section_bytes["arena"] < 1.1 * plan32.section_bytes["arena"]
    assert p8.ram_bytes < 0.7 * plan32.ram_bytes


def test_sanitizers_clean(tmp_path, data):
    for name, prec in (("cnn", "int8"), ("resnet8", "int16")):
        res, _, _ = _export(tmp_path, data, name, prec)
        assert "ok" in run_sanitized(res.out_dir, steps=8)


def test_nan_input_is_refused_and_changes_nothing(tmp_path, data):
    res, _, _ = _export(tmp_path, data, "mlp", "int8")
    c = HostModel(res.out_dir)
    c.train_step(data["x_train"][0], data["y_train"][0])
    before, sat = c.raw_params, c.saturations
    x = data["x_train"][1].copy()
    x.reshape(-1)[3] = np.nan
    with pytest.raises(NumericFaultError):
        c.train_step(x, data["y_train"][1])
    for k, v in c.raw_params.items():
        np.testing.assert_array_equal(v, before[k])
    assert c.saturations == sat and c.step == 1


def test_checkpoint_round_trip(tmp_path, data):
    res, fp, _ = _export(tmp_path, data, "cnn", "int8", trainable="last:2")
    c = HostModel(res.out_dir)
    for i in range(5):
        c.train_step(data["x_train"][i], data["y_train"][i])
    c.save_checkpoint(tmp_path / "ck.bin")
    saved = c.raw_params
    for i in range(5, 9):
        c.train_step(data["x_train"][i], data["y_train"][i])
    c.load_checkpoint(tmp_path / "ck.bin")
    for k, v in c.raw_params.items():
        np.testing.assert_array_equal(v, saved[k])
    assert c.step == 5


@pytest.mark.parametrize("kw,msg", [
    ({"optimizer": "adam"}, "sgd and momentum"),
    ({"batch": 4}, "batch 1"),
    ({"schedule": "cosine"}, "constant schedule"),
    ({"loss": "mse"}, "cross_entropy"),
    ({"algo": "jvp", "optimizer": "momentum"}, "zo and jvp: sgd"),
])
def test_unsupported_configs_are_refused(tmp_path, data, kw, msg):
    with pytest.raises(ConfigError, match=msg):
        _export(tmp_path, data, "mlp", "int8", **kw)


def test_missing_calibration_and_unsupported_op(tmp_path, data):
    with pytest.raises(ConfigError, match="calibration"):
        export(MODELS / "mlp.onnx", tmp_path / "a", TrainConfig(), precision="int8", command="t")
    from tinytrain.frontend.builder import GraphBuilder
    b = GraphBuilder("sig")
    x = b.input("x", (1, 4))
    y = b.op("Clip", [b.gemm(x, 3, name="fc")], {"min": 0.0, "max": 6.0}, name="act")
    g = b.build([b.gemm(y, 2, name="out")])
    with pytest.raises(ExportError, match=r"'act' has op type Clip.*supports Gemm, Conv"):
        export(g, tmp_path / "b", TrainConfig(), precision="int8",
               calibration=np.zeros((4, 4), np.float32), command="t")


@pytest.mark.parametrize("name,precision", [("dscnn", "int8"), ("resnet8", "int16")])
def test_relu_masks_are_exact_and_save_arena(tmp_path, data, name, precision):
    """--relu-mask: 1 bit per ReLU output kept for the backward pass; the C still matches
    numpy bit for bit, and training is identical to the unmasked program (the mask is exact)."""
    from tinytrain.passes.quantize import QuantConfig
    bits = int(precision[3:])
    res, fp, plan = _export(tmp_path, data, name, precision, "bias",
                            quant=QuantConfig(bits=bits, relu_mask=True))
    _, fp0, plan0 = _export(tmp_path / "nomask", data, name, precision, "bias")
    assert any(t.endswith("__mask") for t in fp.tensors)
    assert plan.arena_bytes < 0.85 * plan0.arena_bytes      # dscnn int8: 14,848 -> 11,264 B
    c, ref, ref0 = HostModel(res.out_dir), FixedTrainer(fp), FixedTrainer(fp0)
    x, y = data["x_train"], data["y_train"]
    for i in range(30):
        lc = c.train_step(x[i], y[i])
        assert lc == ref.train_step(x[i], y[i]) == ref0.train_step(x[i], y[i])
    for k, v in ref.raw_params.items():
        np.testing.assert_array_equal(c.raw_params[k], v)
        np.testing.assert_array_equal(ref0.raw_params[k], v)
