"""Fixed-point zeroth-order training (SPSA, z regenerated, never stored): the generated C and
the numpy interpreter agree bit for bit for 100 steps on every example model in 16w8a (the
default), 16w16a and 8w8a; the arena is the inference arena; the 8w8a / sub-LSB warnings fire;
training learns."""
from pathlib import Path

import numpy as np
import pytest

from tinytrain.datasets import make_adaptation_data
from tinytrain.fixed_reference import FixedTrainer
from tinytrain.passes import TrainConfig
from tinytrain.passes.memory_plan import plan_arena
from tinytrain.passes.quantize import QuantConfig
from tinytrain.pipeline import export
from tinytrain.sim.host import HostModel

from .fixed_lockstep import lockstep

MODELS = Path(__file__).resolve().parents[2] / "examples" / "digits" / "models"
STEPS = 100


@pytest.fixture(scope="module")
def data():
    return make_adaptation_data(0)


def _export(tmp_path, data, name, precision, trainable, wbits=16, **kw):
    cfg = TrainConfig(algo="zo", trainable=trainable, **{"lr": 0.01, "zo_eps": 1e-3, **kw})
    bits = int(precision[3:])
    return export(MODELS / f"{name}.onnx", tmp_path / f"{name}_{precision}_zo", cfg,
                  precision=precision, calibration=data["x_train"], command="test",
                  quant=QuantConfig(bits=bits, zo_weight_bits=wbits))


CASES = [(m, "int8", 16, "last:1") for m in ("mlp", "cnn", "dscnn", "resnet8")]
CASES += [("cnn", "int16", 16, "all"), ("mlp", "int8", 8, "last:1"), ("mlp", "int8", 16, "bias"),
          ("resnet8", "int8", 16, "last:2")]


@pytest.mark.parametrize("name,precision,wbits,trainable", CASES)
def test_zo_c_matches_numpy_bit_for_bit_100_steps(tmp_path, data, name, precision, wbits,
                                                  trainable):
    res, fp, plan = _export(tmp_path, data, name, precision, trainable, wbits,
                            perturbations=2, zo_dist="rademacher" if name != "cnn" else "gaussian")
    rp = _lockstep(res, fp, data, STEPS)
    moved = [k for k in fp.trainable if not np.array_equal(rp[k].reshape(-1), fp.initial[k].reshape(-1))]
    assert moved
    # the perturbed weights have the format asked for
    for p in fp.zo["params"]:
        if fp.tensors[p["name"]].param_kind == "weight":
            assert p["wbits"] == (wbits if precision == "int8" else 16)


@pytest.mark.parametrize("name", ["mlp", "cnn", "dscnn", "resnet8"])
@pytest.mark.parametrize("precision", ["int8", "int16"])
def test_zo_arena_is_the_inference_arena(tmp_path, data, name, precision):
    _, fp, plan = _export(tmp_path, data, name, precision, "all")
    inference = plan_arena(fp, fp.forward)
    assert plan.arena_bytes <= 1.05 * inference.arena_bytes
    assert plan.section_bytes["grads"] == 0 and plan.section_bytes["opt_state"] == 0


def test_8w8a_and_sub_lsb_eps_warn(tmp_path, data):
    _, fp, _ = _export(tmp_path, data, "mlp", "int8", "last:1", wbits=8)
    assert any("8-bit weights" in w for w in fp.warnings)
    assert any("round to zero" in w for w in fp.warnings)   # 1e-3 is < 1 LSB of int8 weights
    _, fp16w, _ = _export(tmp_path, data, "mlp", "int8", "3.weight", wbits=16)
    assert not any("8-bit" in w or "round to zero" in w for w in fp16w.warnings)


def test_zo_16w8a_learns(tmp_path, data):
    """Fine-tuning the last layer of the MLP by fixed-point zo raises test accuracy."""
    res, fp, _ = _export(tmp_path, data, "mlp", "int8", "last:1", perturbations=4, lr=0.01,
                         zo_eps=1e-2)
    c = HostModel(res.out_dir)
    acc = lambda: float((c.infer(data["x_test"]).argmax(1) == data["y_test"]).mean())  # noqa: E731
    before = acc()
    order = np.random.default_rng(0).permutation(len(data["y_train"]))
    for i in np.concatenate([order, order]):
        c.train_step(data["x_train"][i], data["y_train"][i])
    assert acc() >= before + 0.06, (before, acc())        # measured 74.3 % -> 85 % (3 epochs)


def test_eps_schedule_bit_exact_and_halving(tmp_path, data):
    """--eps-halve-every: eps (in LSBs) halves every N steps, the update multiplier follows
    the actual integer eps; C == numpy through the changes of row."""
    res, fp, _ = _export(tmp_path, data, "mlp", "int8", "last:1", perturbations=2, zo_eps=2e-2,
                         zo_eps_halve_every=10, zo_eps_halvings=3)
    eps = fp.zo["params"][0]["eps"]
    assert len(eps) == 4 and all(a >= b for a, b in zip(eps, eps[1:])) and eps[-1] >= 1
    c, ref = HostModel(res.out_dir), FixedTrainer(fp)
    for i in range(45):
        assert c.train_step(data["x_train"][i], data["y_train"][i]) == \
            ref.train_step(data["x_train"][i], data["y_train"][i])
    for k, v in ref.raw_params.items():
        np.testing.assert_array_equal(c.raw_params[k], v)


def _lockstep(res, fp, data, steps):
    return lockstep(HostModel(res.out_dir), FixedTrainer(fp), data["x_train"], data["y_train"],
                    steps)


@pytest.mark.parametrize("name,precision,trainable", [("mlp", "int8", "all"),
                                                      ("cnn", "int8", "all"),
                                                      ("resnet8", "int16", "last:3")])
def test_hybrid_zo_bp_bit_exact_100_steps(tmp_path, data, name, precision, trainable):
    """ElasticZO-style hybrid in fixed point: the last layer trains by integer backprop from
    the unperturbed pass (int8 weights, per-channel scales allowed), the earlier trainable
    layers by zo in 16w8a; C == numpy bit for bit, both parts move."""
    res, fp, _ = _export(tmp_path, data, name, precision, trainable, perturbations=2,
                         hybrid_bp_layers=1)
    zo = {p["name"] for p in fp.zo["params"]}
    bp = set(fp.trainable) - zo
    assert zo and bp and set(fp.program.fg_params) == zo
    for p in bp:
        assert fp.tensors[p].dtype in ({"int8": "i8", "int16": "i16"}[precision], "i32", "i64")
    rp = _lockstep(res, fp, data, STEPS)
    for group in (zo, bp):
        assert any(not np.array_equal(rp[k].reshape(-1), fp.initial[k].reshape(-1))
                   for k in group)


def test_hybrid_beats_plain_zo(tmp_path, data):
    """The point of the hybrid: backprop on the last layer + zo before it learns more than zo on
    everything, for about the arena of the backprop part (digits MLP, all trainable)."""
    accs, arenas = {}, {}
    for hy in (0, 1):
        res, fp, plan = _export(tmp_path / str(hy), data, "mlp", "int8", "all", perturbations=4,
                                zo_eps=1e-2, hybrid_bp_layers=hy)
        c = HostModel(res.out_dir)
        order = np.random.default_rng(0).permutation(len(data["y_train"]))
        for i in order:
            c.train_step(data["x_train"][i], data["y_train"][i])
        accs[hy] = float((c.infer(data["x_test"]).argmax(1) == data["y_test"]).mean())
        arenas[hy] = plan.arena_bytes
    assert accs[1] >= accs[0] + 0.02, accs
    assert arenas[1] <= 4 * arenas[0] + 1024, arenas


@pytest.mark.parametrize("name,trainable,kw", [
    ("mlp", "last:1", {"perturbations": 2}),
    ("cnn", "last:1", {"perturbations": 4, "zo_estimator": "sign"}),
    ("mlp", "all", {"perturbations": 2, "hybrid_bp_layers": 1})])
def test_sharpness_aware_point_bit_exact_100_steps(tmp_path, data, name, trainable, kw):
    """--sam-rho in fixed point: the pairs of step t run at w + sum_k s_k rho[m] z_k(t-1),
    added and removed as exact integer adds; C == numpy bit for bit (weights, losses,
    saturation counters) for 100 steps."""
    res, fp, _ = _export(tmp_path, data, name, "int8", trainable, zo_eps=1e-2, zo_sam_rho=0.05,
                         **kw)
    assert fp.zo["sam"] and all(min(p["sam"]) >= 1 for p in fp.zo["params"]
                                if fp.tensors[p["name"]].param_kind == "weight")
    _lockstep(res, fp, data, STEPS)


def test_sharpness_aware_point_moves_the_evaluation_and_restores_exactly(tmp_path, data):
    x, y = data["x_train"], data["y_train"]
    runs = {}
    for rho in (0.0, 0.05):
        _, fp, _ = _export(tmp_path / str(rho), data, "mlp", "int8", "last:1", perturbations=2,
                           zo_eps=1e-2, zo_sam_rho=rho)
        ref = FixedTrainer(fp)
        runs[rho] = [ref.train_step(x[i], y[i]) for i in range(3)]
    # step 0 has no previous estimate: identical; step 1 is evaluated elsewhere
    assert runs[0.0][0] == runs[0.05][0] and runs[0.0][1:] != runs[0.05][1:]
    # no update (lr so small the coefficient is 0): ascent + removal leave w untouched
    res, fp, _ = _export(tmp_path / "frozen", data, "mlp", "int8", "last:1", perturbations=3,
                         zo_eps=1e-2, zo_sam_rho=0.2, lr=1e-12)
    ref = FixedTrainer(fp)
    for i in range(50):
        ref.train_step(x[i], y[i])
    assert any(ref.sam_signs)
    for k, v in ref.raw_params.items():
        np.testing.assert_array_equal(v.reshape(-1), fp.initial[k].reshape(-1))
    # Gaussian z is an integer with sd 148: a small ascent rounds to 0 LSB per unit, said so
    _, fp, _ = _export(tmp_path / "g", data, "cnn", "int8", "last:1", perturbations=4,
                       zo_eps=1e-2, zo_sam_rho=0.01, zo_dist="gaussian")
    assert any("rounds to 0" in w and "--sam-rho" in w for w in fp.warnings)
