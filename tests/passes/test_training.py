import numpy as np
import pytest

from tinytrain.errors import ConfigError
from tinytrain.frontend.builder import GraphBuilder
from tinytrain.passes import TrainConfig, build_training_program, select_trainable
from tinytrain.reference import ReferenceTrainer

torch = pytest.importorskip("torch")


def mlp(seed=0):
    b = GraphBuilder(seed=seed)
    x = b.input("x", (1, 6))
    h = b.op("Relu", [b.gemm(x, 8, "fc1")], name="act1")
    h = b.op("Tanh", [b.gemm(h, 7, "fc2")], name="act2")
    return b.build(b.gemm(h, 4, "fc3"))


def test_trainable_sets():
    g = mlp()
    assert select_trainable(g, "all") == tuple(g.params)
    assert select_trainable(g, "last:1") == ("fc3.weight", "fc3.bias")
    assert select_trainable(g, "last:2") == ("fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias")
    assert select_trainable(g, "bias") == ("fc1.bias", "fc2.bias", "fc3.bias")
    assert select_trainable(g, r"fc1\..*,fc3.bias") == ("fc1.weight", "fc1.bias", "fc3.bias")
    assert select_trainable(g, ["fc2.weight"]) == ("fc2.weight",)
    with pytest.raises(ConfigError, match="matches no parameter.*fc1.weight"):
        select_trainable(g, "conv.*")
    with pytest.raises(ConfigError, match="3 layers"):
        select_trainable(g, "last:4")


def test_bad_config_is_refused():
    with pytest.raises(ConfigError, match="optimizer"):
        TrainConfig(optimizer="lion")
    with pytest.raises(ConfigError, match="learning rate"):
        TrainConfig(lr=0)
    with pytest.raises(ConfigError, match="loss"):
        TrainConfig(loss="hinge")


def test_frozen_prefix_computes_no_input_gradients_and_saves_nothing():
    p = build_training_program(mlp(), TrainConfig(trainable="last:1"))
    vjps = [s for s in p.train_steps if s.kind == "vjp"]
    # only fc3's weight and bias: no gradient flows into fc2 or earlier
    assert {(s.node, s.wrt) for s in vjps} == {("fc3", 1), ("fc3", 2)}
    read = {t for s in vjps for t in s.inputs}
    assert "x" not in read and "fc1.out" not in read and "act1.out" not in read


def test_bias_only_keeps_no_layer_inputs_for_weight_gradients():
    p = build_training_program(mlp(), TrainConfig(trainable="bias"))
    vjps = [s for s in p.train_steps if s.kind == "vjp"]
    assert not any(s.wrt == 1 for s in vjps)          # no weight gradients
    read = {t for s in vjps for t in s.inputs[1:]}
    # only activation outputs for their own derivative (ReLU mask, tanh) and weights
    assert read == {"act1.out", "act2.out", "fc2.weight", "fc3.weight"}


def _torch_grads(g, x, y, trainable):
    params = {k: torch.tensor(np.asarray(v, np.float64), requires_grad=k in trainable)
              for k, v in g.initializers.items()}
    h = torch.tensor(x, dtype=torch.float64)
    h = torch.relu(h @ params["fc1.weight"].T + params["fc1.bias"])
    h = torch.tanh(h @ params["fc2.weight"].T + params["fc2.bias"])
    z = h @ params["fc3.weight"].T + params["fc3.bias"]
    loss = torch.nn.functional.cross_entropy(z, torch.tensor(y))
    loss.backward()
    return float(loss.detach()), {k: params[k].grad.numpy() for k in trainable}


@pytest.mark.parametrize("trainable", ["all", "last:2", "bias"])
def test_reference_gradients_match_torch(trainable):
    g = mlp(seed=3)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 6))
    y = rng.integers(0, 4, 5)
    p = build_training_program(g, TrainConfig(trainable=trainable, fuse_update=False))
    tr = ReferenceTrainer(p, dtype=np.float64)
    loss, grads = tr.loss_and_grads(x, y)
    tloss, tgrads = _torch_grads(g, x, y, p.trainable)
    assert loss == pytest.approx(tloss, rel=1e-12)
    for k in p.trainable:
        np.testing.assert_allclose(grads[k], tgrads[k], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("opt,kw", [("sgd", {}), ("momentum", {"momentum": 0.8}),
                                    ("adam", {}), ("adam", {"weight_decay": 0.01}),
                                    ("sgd", {"weight_decay": 0.1})])
def test_optimizer_steps_match_torch(opt, kw):
    g = mlp(seed=4)
    rng = np.random.default_rng(2)
    cfg = TrainConfig(optimizer=opt, lr=0.05, **kw)
    tr = ReferenceTrainer(build_training_program(g, cfg), dtype=np.float64)
    params = {k: torch.tensor(np.asarray(v, np.float64), requires_grad=True)
              for k, v in g.initializers.items()}
    order = list(params)
    wd = kw.get("weight_decay", 0.0)
    topt = {"sgd": lambda ps: torch.optim.SGD(ps, lr=0.05, weight_decay=wd),
            "momentum": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=kw.get("momentum", 0.9),
                                                   weight_decay=wd),
            "adam": lambda ps: torch.optim.Adam(ps, lr=0.05, weight_decay=wd)}[opt]([params[k] for k in order])
    for _ in range(5):
        x = rng.normal(size=(3, 6))
        y = rng.integers(0, 4, 3)
        tr.train_step(x, y)
        topt.zero_grad()
        h = torch.tensor(x)
        h = torch.relu(h @ params["fc1.weight"].T + params["fc1.bias"])
        h = torch.tanh(h @ params["fc2.weight"].T + params["fc2.bias"])
        z = h @ params["fc3.weight"].T + params["fc3.bias"]
        torch.nn.functional.cross_entropy(z, torch.tensor(y)).backward()
        topt.step()
    for k in order:
        np.testing.assert_allclose(tr.weights[k], params[k].detach().numpy(), rtol=1e-9, atol=1e-11)


def test_lr_schedules():
    from tinytrain.passes.optimizer import lr_at
    c = TrainConfig(lr=0.1, schedule="cosine", total_steps=10)
    assert lr_at(c, 0) == pytest.approx(0.1) and lr_at(c, 10) == pytest.approx(0, abs=1e-8)
    assert lr_at(c, 5) == pytest.approx(0.05, rel=1e-6)
    s = TrainConfig(lr=0.1, schedule="step", step_size=3, gamma=0.5)
    assert [round(lr_at(s, t), 6) for t in (0, 2, 3, 6)] == [0.1, 0.1, 0.05, 0.025]


def test_nan_keeps_last_good_weights():
    from tinytrain.errors import NumericFaultError
    g = mlp()
    tr = ReferenceTrainer(build_training_program(g, TrainConfig(lr=0.1)))
    x = np.ones((2, 6), np.float32)
    tr.train_step(x, [0, 1])
    good = {k: v.copy() for k, v in tr.weights.items()}
    x[0, 0] = np.nan
    with pytest.raises(NumericFaultError, match="last good"):
        tr.train_step(x, [0, 1])
    for k in good:
        np.testing.assert_array_equal(tr.weights[k], good[k])


@pytest.mark.parametrize("trainable", ["all", "last:2", "bias"])
def test_fused_sgd_equals_sgd_with_gradient_buffers(trainable):
    g = mlp(seed=5)
    rng = np.random.default_rng(3)
    cfg = dict(trainable=trainable, lr=0.1, schedule="step", step_size=3, gamma=0.5)
    fused = build_training_program(g, TrainConfig(**cfg))
    plain = build_training_program(g, TrainConfig(fuse_update=False, **cfg))
    assert set(fused.fused) == set(fused.trainable) and not plain.fused
    assert not fused.update_steps and not any(t.endswith("__grad") and t[:-6] in fused.trainable
                                              for t in fused.tensors)
    a, b = ReferenceTrainer(fused, np.float64), ReferenceTrainer(plain, np.float64)
    for _ in range(10):
        x = rng.normal(size=(1, 6))
        y = rng.integers(0, 4, 1)
        assert a.train_step(x, y) == pytest.approx(b.train_step(x, y), rel=1e-12)
    for k in fused.trainable:
        np.testing.assert_allclose(a.weights[k], b.weights[k], rtol=1e-12, atol=1e-14)


def test_fusion_needs_batch_1_plain_sgd():
    g = mlp()
    assert not build_training_program(g, TrainConfig(batch=2)).fused
    assert not build_training_program(g, TrainConfig(optimizer="momentum")).fused
    assert not build_training_program(g, TrainConfig(weight_decay=1e-3)).fused
