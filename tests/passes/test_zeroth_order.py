"""Zeroth-order (SPSA) forward-gradient training: numpy reference and generated C."""
import numpy as np
import pytest

from tinytrain.datasets import make_adaptation_data
from tinytrain.errors import ConfigError
from tinytrain.numerics.prng import Pcg32, stream_id
from tinytrain.passes import TrainConfig, build_training_program
from tinytrain.passes.memory_plan import plan_arena
from tinytrain.passes.zeroth_order import DISTS, zo_axpy
from tinytrain.pipeline import export, load_model
from tinytrain.reference import ReferenceTrainer
from tinytrain.sim.host import HostModel

from ..conftest import MODELS


@pytest.fixture(scope="module")
def data():
    return make_adaptation_data(0)


def _bp_grad(g, trainable, x, y):
    p = build_training_program(g, TrainConfig(trainable=trainable, fuse_update=False))
    tr = ReferenceTrainer(p, np.float64)
    _, grads = tr.loss_and_grads(x, y)
    return np.concatenate([grads[k].ravel() for k in p.trainable])


def _cos(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.mark.parametrize("dist", ["rademacher", "gaussian"])
def test_numpy_zo_estimate_is_unbiased(data, dist):
    """Mean of 6,400 SPSA estimates (Rademacher / Gaussian z, eps 1e-3, float64) vs the
    backprop gradient of the same batch: cosine similarity >= 0.95 (330 parameters)."""
    g = load_model(MODELS / "mlp.onnx")
    x, y = data["x_train"][:8], data["y_train"][:8]
    ref = _bp_grad(g, "last:1", x, y)
    p = build_training_program(g, TrainConfig(algo="zo", trainable="last:1", zo_eps=1e-3))
    tr = ReferenceTrainer(p, np.float64)
    est = np.zeros_like(ref)
    n = 6400
    for k in range(n):
        gen = Pcg32(0, stream_id(0, k))
        z = [np.zeros(tr.weights[q].size) for q in p.trainable]
        for zz in z:
            zo_axpy(zz, 1.0, gen, DISTS[dist])
        zc = np.concatenate(z)
        w0 = {q: tr.weights[q].copy() for q in p.trainable}
        off = 0
        for q in p.trainable:
            tr.weights[q] = w0[q] + 1e-3 * zc[off:off + w0[q].size].reshape(w0[q].shape)
            off += w0[q].size
        lp = tr.loss(x, y)
        off = 0
        for q in p.trainable:
            tr.weights[q] = w0[q] - 1e-3 * zc[off:off + w0[q].size].reshape(w0[q].shape)
            off += w0[q].size
        lm = tr.loss(x, y)
        tr.weights.update(w0)
        est += (lp - lm) / 2e-3 * zc
    assert _cos(est / n, ref) >= 0.95


def test_c_zo_updates_follow_the_gradient(tmp_path, data):
    """Generated C, SGD with a small lr: the total weight change over 100 steps x 64
    perturbations on one fixed batch points along -gradient (cosine >= 0.95)."""
    g = load_model(MODELS / "mlp.onnx")
    x, y = data["x_train"][:4], data["y_train"][:4]
    ref = _bp_grad(g, "last:1", x, y)
    cfg = TrainConfig(algo="zo", trainable="last:1", lr=1e-4, zo_eps=1e-2, perturbations=64,
                      batch=4)
    res, p, plan = export(g, tmp_path / "zo", cfg, command="test")
    c = HostModel(res.out_dir)
    w0 = np.concatenate([c.params[k].ravel() for k in p.trainable]).astype(np.float64)
    for _ in range(100):
        c.train_step(x, y)
    w1 = np.concatenate([c.params[k].ravel() for k in p.trainable]).astype(np.float64)
    assert c.step == 100
    assert _cos(-(w1 - w0), ref) >= 0.95


@pytest.mark.parametrize("model", ["mlp", "cnn", "dscnn", "resnet8"])
@pytest.mark.parametrize("opt,est", [("sgd", "spsa"), ("momentum", "sign")])
def test_c_zo_tracks_reference(tmp_path, data, model, opt, est):
    cfg = TrainConfig(algo="zo", trainable="last:2", lr=0.005, zo_eps=1e-2, perturbations=2,
                      optimizer=opt, zo_estimator=est, batch=2, seed=7)
    res, p, plan = export(MODELS / f"{model}.onnx", tmp_path / "zo", cfg, command="test")
    c = HostModel(res.out_dir)
    r = ReferenceTrainer(p)
    x, y = data["x_train"], data["y_train"]
    for i in range(0, 100, 2):
        lc = c.train_step(x[i:i + 2], y[i:i + 2])
        lr = r.train_step(x[i:i + 2], y[i:i + 2])
        assert lc == pytest.approx(lr, rel=1e-4, abs=1e-6)
    for k in p.trainable:
        err = np.linalg.norm(c.params[k] - r.params[k]) / np.linalg.norm(r.params[k])
        assert err <= 1e-4, (k, err)


def test_c_zo_eps_schedule_tracks_reference(tmp_path, data):
    """eps halves every 10 steps (at most twice): C and numpy use the same eps every step."""
    from tinytrain.passes.zeroth_order import eps_at
    cfg = TrainConfig(algo="zo", trainable="last:1", lr=0.005, zo_eps=1e-2, perturbations=2,
                      zo_eps_halve_every=10, zo_eps_halvings=2)
    assert [float(eps_at(cfg, t)) for t in (0, 9, 10, 20, 35)] == [
        float(np.float32(1e-2)), float(np.float32(1e-2)), float(np.float32(5e-3)),
        float(np.float32(2.5e-3)), float(np.float32(2.5e-3))]
    res, p, _ = export(MODELS / "mlp.onnx", tmp_path / "zo", cfg, command="test")
    c, r = HostModel(res.out_dir), ReferenceTrainer(p)
    x, y = data["x_train"], data["y_train"]
    for i in range(40):
        assert c.train_step(x[i:i + 1], y[i:i + 1]) == pytest.approx(
            r.train_step(x[i:i + 1], y[i:i + 1]), rel=1e-4, abs=1e-6)
    for k in p.trainable:
        err = np.linalg.norm(c.params[k] - r.params[k]) / np.linalg.norm(r.params[k])
        assert err <= 1e-4, (k, err)


@pytest.mark.parametrize("model", ["mlp", "cnn", "dscnn", "resnet8"])
def test_zo_arena_is_the_inference_arena(model):
    g = load_model(MODELS / f"{model}.onnx")
    p = build_training_program(g, TrainConfig(algo="zo", trainable="all", optimizer="momentum"))
    zo = plan_arena(p)
    infer = plan_arena(p, steps=p.forward_steps)
    assert zo.arena_bytes <= 1.05 * infer.arena_bytes
    assert zo.section_bytes["grads"] == 0
    bp = plan_arena(build_training_program(g, TrainConfig(trainable="all", optimizer="momentum")))
    assert zo.ram_bytes < bp.ram_bytes


def test_zo_adapts_the_digits_model(data):
    g = load_model(MODELS / "mlp.onnx")
    p = build_training_program(g, TrainConfig(algo="zo", trainable="last:1", lr=0.002,
                                              zo_eps=1e-2, perturbations=4, zo_estimator="sign",
                                              optimizer="momentum"))
    from tinytrain.trainloop import accuracy, fit
    tr = ReferenceTrainer(p)
    before = accuracy(tr, data["x_test"], data["y_test"])
    fit(tr, data, epochs=6, batch=4, seed=0)
    assert accuracy(tr, data["x_test"], data["y_test"]) >= before + 0.08


def test_zo_config_errors():
    with pytest.raises(ConfigError, match="sgd and momentum"):
        TrainConfig(algo="zo", optimizer="adam")
    with pytest.raises(ConfigError, match="perturbations"):
        TrainConfig(algo="zo", perturbations=0)
    with pytest.raises(ConfigError, match="distribution"):
        TrainConfig(algo="zo", zo_dist="uniform")
