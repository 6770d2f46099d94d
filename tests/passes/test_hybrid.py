"""Hybrid zo + backprop (ElasticZO-style): the last N layers by backprop, the rest by zo."""
import numpy as np
import pytest

from tinytrain.datasets import make_adaptation_data
from tinytrain.errors import ConfigError
from tinytrain.passes import TrainConfig, build_training_program
from tinytrain.passes.memory_plan import plan_arena
from tinytrain.pipeline import export, load_model
from tinytrain.reference import ReferenceTrainer
from tinytrain.sim.host import HostModel

from ..conftest import MODELS


@pytest.fixture(scope="module")
def data():
    return make_adaptation_data(0)


def test_hybrid_program_splits_the_trainable_set():
    g = load_model(MODELS / "cnn.onnx")
    p = build_training_program(g, TrainConfig(algo="zo", trainable="all", hybrid_bp_layers=1,
                                              batch=2, optimizer="momentum"))
    assert p.fg_params == ("onnx::Conv_26", "onnx::Conv_27", "onnx::Conv_29", "onnx::Conv_30")
    assert p.trainable == tuple(g.params)
    vjps = [s for s in p.train_steps if s.kind == "vjp"]
    # backward through the classifier only: its weight and bias, no input gradient
    assert {(s.node, s.wrt) for s in vjps} == {("/5/Gemm", 1), ("/5/Gemm", 2)}
    assert {u.inputs[0] for u in p.update_steps} == {"5.weight", "5.bias"}
    # momentum state for every trainable parameter; gradient buffers only for backprop ones
    plan = plan_arena(p)
    assert plan.section_bytes["grads"] == (640 + 10) * 4
    assert plan.section_bytes["opt_state"] == sum(g.tensors[q].nbytes for q in g.params)


@pytest.mark.parametrize("model", ["mlp", "cnn", "dscnn", "resnet8"])
def test_hybrid_memory_overhead_is_small(model):
    """The arena of hybrid zo (last layer by backprop) stays the inference arena plus the last
    layer's saved input; RAM is zo's plus that layer's gradient buffer at most."""
    g = load_model(MODELS / f"{model}.onnx")
    zo = build_training_program(g, TrainConfig(algo="zo", trainable="all"))
    hy = build_training_program(g, TrainConfig(algo="zo", trainable="all", hybrid_bp_layers=1))
    bp = build_training_program(g, TrainConfig(trainable="all", batch=2))
    pz, ph, pb = plan_arena(zo), plan_arena(hy), plan_arena(bp)
    infer = plan_arena(zo, steps=zo.forward_steps)
    assert ph.arena_bytes <= infer.arena_bytes + 2 * 1024
    assert ph.ram_bytes - pz.ram_bytes <= ph.arena_bytes - pz.arena_bytes + 2640   # fused or
    assert ph.ram_bytes < pb.ram_bytes                                             # grads


@pytest.mark.parametrize("model,opt,est,batch,lr", [
    ("mlp", "sgd", "spsa", 1, 2e-3), ("cnn", "momentum", "sign", 2, 2e-3),
    ("dscnn", "sgd", "spsa", 2, 2e-4), ("resnet8", "momentum", "spsa", 1, 2e-5)])
def test_c_hybrid_tracks_reference(tmp_path, data, model, opt, est, batch, lr):
    # lr inside the stable range: a diverging run amplifies rounding differences
    cfg = TrainConfig(algo="zo", trainable="all", hybrid_bp_layers=1, lr=lr, zo_eps=1e-2,
                      perturbations=2, optimizer=opt, zo_estimator=est, batch=batch, seed=5)
    res, p, plan = export(MODELS / f"{model}.onnx", tmp_path / "hy", cfg, command="test")
    assert (batch == 1 and opt == "sgd") == bool(p.fused)
    c = HostModel(res.out_dir)
    r = ReferenceTrainer(p)
    x, y = data["x_train"], data["y_train"]
    for i in range(0, 100, batch):
        lc = c.train_step(x[i:i + batch], y[i:i + batch])
        lref = r.train_step(x[i:i + batch], y[i:i + batch])
        assert lc == pytest.approx(lref, rel=1e-4, abs=1e-6)
        assert lref < 5
    assert c.step == 100 // batch
    for k in p.trainable:
        err = np.linalg.norm(c.params[k] - r.params[k]) / np.linalg.norm(r.params[k])
        assert err <= 1e-4, (k, err)


def test_hybrid_recovers_more_than_zo(data):
    """Digits adaptation, CNN, all parameters trainable, equal steps (2 epochs, batch 4) and
    equal zo settings: backprop on the classifier recovers clearly more accuracy."""
    from tinytrain.trainloop import accuracy, fit
    g = load_model(MODELS / "cnn.onnx")
    acc = {}
    for n in (0, 1):
        cfg = TrainConfig(algo="zo", trainable="all", lr=0.002, zo_eps=1e-2, perturbations=4,
                          zo_estimator="sign", optimizer="momentum", hybrid_bp_layers=n)
        tr = ReferenceTrainer(build_training_program(g, cfg))
        fit(tr, data, epochs=2, batch=4, seed=0)
        acc[n] = accuracy(tr, data["x_test"], data["y_test"])
    assert acc[1] >= acc[0] + 0.05, acc


def test_hybrid_config_errors():
    g = load_model(MODELS / "mlp.onnx")
    with pytest.raises(ConfigError, match="needs algo 'zo'"):
        TrainConfig(hybrid_bp_layers=1)
    with pytest.raises(ConfigError, match="nothing is left for zo"):
        build_training_program(g, TrainConfig(algo="zo", trainable="last:1", hybrid_bp_layers=1))
    with pytest.raises(ConfigError, match="none of the last 1 layers"):
        build_training_program(g, TrainConfig(algo="zo", trainable=r"1\..*", hybrid_bp_layers=1))
    with pytest.raises(ConfigError, match="only 2 layers"):
        build_training_program(g, TrainConfig(algo="zo", hybrid_bp_layers=3))
