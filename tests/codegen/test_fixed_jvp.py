"""Forward-mode (jvp) training in fixed point: integer tangents with runtime power-of-two
exponents, parameter directions regenerated inside the kernels, zo's update. The generated C
and the numpy interpreter agree bit for bit for 100 steps; the directional derivatives track
the float ones; the estimate is unbiased; the arena stays within 2.1x the inference arena."""
from pathlib import Path

import numpy as np
import pytest

from tinytrain.datasets import make_adaptation_data
from tinytrain.errors import ConfigError
from tinytrain.fixed_reference import FixedTrainer
from tinytrain.numerics.prng import Pcg32, stream_id
from tinytrain.numerics.qkernels import _zo_z
from tinytrain.passes import TrainConfig, build_training_program
from tinytrain.passes.memory_plan import plan_arena
from tinytrain.passes.quantize import QuantConfig
from tinytrain.pipeline import export, load_model
from tinytrain.reference import ReferenceTrainer
from tinytrain.sim.host import HostModel

from .fixed_lockstep import lockstep

MODELS = Path(__file__).resolve().parents[2] / "examples" / "digits" / "models"
STEPS = 100


@pytest.fixture(scope="module")
def data():
    return make_adaptation_data(0)


def _export(tmp_path, data, name, precision, trainable, wbits=16, **kw):
    cfg = TrainConfig(algo="jvp", trainable=trainable, **{"lr": 0.01, **kw})
    return export(MODELS / f"{name}.onnx", tmp_path / f"{name}_{precision}_{wbits}_jvp", cfg,
                  precision=precision, calibration=data["x_train"], command="test",
                  quant=QuantConfig(bits=int(precision[3:]), zo_weight_bits=wbits))


CASES = [("mlp", "int8", "last:1", {}),
         ("mlp", "int8", "all", {"wbits": 8}),                    # 8w8a (warned about)
         ("cnn", "int8", "last:2", {"wbits": 8, "zo_dist": "gaussian"}),
         ("mlp", "int8", "all", {"zo_dist": "gaussian", "perturbations": 2}),
         ("cnn", "int8", "all", {"perturbations": 2}),
         ("dscnn", "int8", "last:2", {"zo_estimator": "sign"}),
         ("resnet8", "int16", "last:3", {}),
         ("cnn", "int16", "bias", {"perturbations": 4})]


@pytest.mark.parametrize("name,precision,trainable,kw", CASES)
def test_jvp_c_matches_numpy_bit_for_bit_100_steps(tmp_path, data, name, precision, trainable,
                                                   kw):
    res, fp, _ = _export(tmp_path, data, name, precision, trainable, **kw)
    assert fp.jvp is not None and not fp.train
    weights = [p for p in fp.trainable if fp.tensors[p].param_kind == "weight"]
    want = {"int8": "i16" if kw.get("wbits", 16) == 16 else "i8", "int16": "i16"}[precision]
    assert all(fp.tensors[p].dtype == want for p in weights)
    assert any("8-bit weights" in w for w in fp.warnings) == (want == "i8" and bool(weights))
    c, ref = HostModel(res.out_dir), FixedTrainer(fp)
    rp = lockstep(c, ref, data["x_train"], data["y_train"], STEPS)
    np.testing.assert_array_equal(c.infer(data["x_test"][:16]), ref.infer(data["x_test"][:16]))
    assert any(not np.array_equal(rp[k].reshape(-1), fp.initial[k].reshape(-1))
               for k in fp.trainable)


def _float_twin(fp, trainer, cfg):
    """The fp32 jvp program of the same model at the fixed program's dequantized weights."""
    g = fp.program.graph
    ft = ReferenceTrainer(build_training_program(g, cfg))
    for k, v in trainer.params.items():
        ft.weights[k] = np.asarray(v, np.float32).reshape(ft.weights[k].shape)
    return ft


@pytest.mark.parametrize("name,precision,trainable", [("mlp", "int8", "all"),
                                                      ("cnn", "int8", "last:2"),
                                                      ("cnn", "int16", "all")])
def test_directional_derivatives_track_float(tmp_path, data, name, precision, trainable):
    """dL.v of the integer pass against the fp32 jvp pass at the same (dequantized) weights,
    for the same directions: correlated over 48 directions, close in magnitude."""
    cfg = TrainConfig(algo="jvp", trainable=trainable, lr=0.01)
    _, fp, _ = _export(tmp_path, data, name, precision, trainable)
    q = FixedTrainer(fp)
    f = _float_twin(fp, q, cfg)
    x, y = data["x_train"][3:4], data["y_train"][3:4]
    dq = np.array([q.directional_derivative(x, y, k)[1] for k in range(48)])
    df = np.array([f.directional_derivative(x, y, k)[1] for k in range(48)])
    corr = float(np.corrcoef(dq, df)[0, 1])
    assert corr >= (0.95 if precision == "int8" else 0.999), corr
    assert 0.7 <= float(np.linalg.norm(dq) / np.linalg.norm(df)) <= 1.3


def test_estimate_is_unbiased(tmp_path, data):
    """Mean of d_k v_k over 3000 directions vs the float backprop gradient at the same weights
    (digits MLP, bias training, one sample): cosine >= 0.95."""
    _, fp, _ = _export(tmp_path, data, "mlp", "int8", "bias")
    q = FixedTrainer(fp)
    x, y = data["x_train"][:1], data["y_train"][:1]
    names = list(fp.program.fg_params)
    skip = fp.jvp["skip"]
    est = {p: np.zeros(fp.tensors[p].size) for p in names}
    K = 3000
    for k in range(K):
        d = q.directional_derivative(x, y, k)[1]
        for p in names:
            gen = Pcg32(fp.seed, stream_id(0, k))
            gen.advance(skip[p])
            est[p] += d * _zo_z(gen, fp.tensors[p].size, 0)
    f = ReferenceTrainer(build_training_program(fp.program.graph,
                                                TrainConfig(trainable="bias", lr=0.01,
                                                            fuse_update=False)))
    for p, v in q.params.items():
        f.weights[p] = np.asarray(v, np.float32).reshape(f.weights[p].shape)
    _, grads = f.loss_and_grads(x, y)
    a = np.concatenate([est[p] / K for p in names])
    b = np.concatenate([grads[p].reshape(-1) for p in names])
    cos = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    assert cos >= 0.95, cos


@pytest.mark.parametrize("name", ["mlp", "cnn", "dscnn", "resnet8"])
@pytest.mark.parametrize("precision", ["int8", "int16"])
def test_jvp_arena_within_2_1x_inference(tmp_path, data, name, precision):
    _, fp, plan = _export(tmp_path, data, name, precision, "all")
    inference = plan_arena(fp, fp.forward)
    assert plan.arena_bytes <= 2.1 * inference.arena_bytes, (plan.arena_bytes,
                                                             inference.arena_bytes)
    assert plan.section_bytes["grads"] == 0 and plan.section_bytes["opt_state"] == 0


def test_jvp_learns(tmp_path, data):
    res, fp, _ = _export(tmp_path, data, "mlp", "int8", "last:1", perturbations=4, lr=0.01)
    c = HostModel(res.out_dir)
    acc = lambda: float((c.infer(data["x_test"]).argmax(1) == data["y_test"]).mean())  # noqa: E731
    before = acc()
    order = np.random.default_rng(0).permutation(len(data["y_train"]))
    for i in np.concatenate([order, order]):
        c.train_step(data["x_train"][i], data["y_train"][i])
    assert acc() >= before + 0.06, (before, acc())


def test_jvp_refusals(tmp_path, data):
    with pytest.raises(ConfigError, match="sgd"):
        _export(tmp_path, data, "mlp", "int8", "last:1", optimizer="momentum")
    with pytest.raises(ConfigError, match="one width per model"):
        export(MODELS / "mlp.onnx", tmp_path / "w", TrainConfig(algo="jvp", trainable="all"),
               precision="int8", calibration=data["x_train"], command="t",
               quant=QuantConfig(bits=8, layer_bits=(("/1/Gemm", 16),)))
    assert load_model(MODELS / "mlp.onnx")       # the model itself is fine


def test_16w8a_is_what_lets_int8_jvp_train_every_layer(tmp_path, data):
    """int8 jvp on the whole MLP: with 8-bit weights most updates are below one LSB (measured
    73.5 % -> 67.6 %, one epoch); the default 16w8a keeps int16 trained weights (-> 84.4 %)."""
    accs = {}
    for wbits in (8, 16):
        res, fp, _ = _export(tmp_path, data, "mlp", "int8", "all", wbits=wbits, perturbations=4,
                             lr=1e-3)
        c = HostModel(res.out_dir)
        for i in np.random.default_rng(0).permutation(len(data["y_train"])):
            c.train_step(data["x_train"][i], data["y_train"][i])
        accs[wbits] = float((c.infer(data["x_test"]).argmax(1) == data["y_test"]).mean())
    assert accs[16] >= 0.80 and accs[16] >= accs[8] + 0.08, accs
