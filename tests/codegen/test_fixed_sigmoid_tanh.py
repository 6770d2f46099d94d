"""Sigmoid and Tanh in fixed-point training programs: table forward (output scale fixed by
the function), backward from the saved output, and --few-bit-backward K (a K-bit interval code
replaces the saved output; piecewise-constant derivative, numerics/qact.py). C == numpy bit
for bit for 100 steps; the codes shrink the arena and still train."""
import numpy as np
import pytest

from tinytrain.datasets import make_adaptation_data
from tinytrain.fixed_reference import FixedTrainer
from tinytrain.frontend.builder import GraphBuilder
from tinytrain.passes import TrainConfig, build_training_program
from tinytrain.passes.quantize import QuantConfig
from tinytrain.pipeline import export
from tinytrain.reference import ReferenceTrainer
from tinytrain.sim.host import HostModel

from .fixed_lockstep import lockstep

STEPS = 100


@pytest.fixture(scope="module")
def data():
    return make_adaptation_data(0)


@pytest.fixture(scope="module")
def model(data):
    """64-32 (tanh) -16 (sigmoid) -10 MLP, pretrained in float on clean digits (~94 %; ~74 %
    on the shifted sensor the tests adapt it to)."""
    b = GraphBuilder("sig_tanh_mlp", seed=0)
    x = b.op("Reshape", [b.input("x", (1, 1, 8, 8))], {"shape": (64,)}, name="flat")
    h = b.op("Tanh", [b.gemm(x, 32, "fc1")], name="act1")
    h = b.op("Sigmoid", [b.gemm(h, 16, "fc2")], name="act2")
    g = b.build(b.gemm(h, 10, "fc3"))
    tr = ReferenceTrainer(build_training_program(g, TrainConfig(optimizer="momentum", lr=0.02)))
    x, y = data["x_clean_test"], data["y_clean_test"]
    for epoch in range(8):
        for i in np.random.default_rng(epoch).permutation(len(y)):
            tr.train_step(x[i:i + 1], y[i:i + 1])
    return g.replace(initializers={**g.initializers, **{p: tr.weights[p] for p in g.params}})


def _export(tmp_path, data, model, bits, k, trainable="all", **kw):
    cfg = TrainConfig(lr=0.02, trainable=trainable, **kw)
    return export(model, tmp_path / f"q{bits}_k{k}_{trainable}", cfg, precision=f"int{bits}",
                  calibration=data["x_train"], command="test",
                  quant=QuantConfig(bits=bits, fewbit_codes=k))


@pytest.mark.parametrize("bits,k,trainable", [(8, 0, "all"), (8, 2, "bias"), (8, 3, "bias"),
                                               (16, 0, "all"), (16, 4, "bias"), (8, 2, "all")])
def test_sigmoid_tanh_training_bit_exact_100_steps(tmp_path, data, model, bits, k, trainable):
    """Codes replace the output only where nothing else reads it: with every layer trainable
    the next Gemm's weight gradient needs the output itself (and the codes are not used)."""
    res, fp, plan = _export(tmp_path, data, model, bits, k, trainable)
    fns = {c.fn for c in fp.forward + fp.train}
    coded = k and trainable == "bias"
    assert ("act_code_fwd" in fns and "act_bwd_x_code" in fns) if coded else \
        ("act_fwd" in fns and "act_bwd_x" in fns and "act_code_fwd" not in fns)
    c, ref = HostModel(res.out_dir), FixedTrainer(fp)
    x, y = data["x_train"], data["y_train"]
    lockstep(c, ref, x, y, STEPS)
    np.testing.assert_array_equal(c.infer(x[:16]), ref.infer(x[:16]))


@pytest.mark.parametrize("bits", [8, 16])
def test_fixed_forward_tracks_the_float_model(tmp_path, data, model, bits):
    from tinytrain.reference import run_forward
    _, fp, _ = _export(tmp_path, data, model, bits, 0)
    x = data["x_test"][:200]
    want = run_forward(model, {model.inputs[0]: x})[model.outputs[0]]
    got = FixedTrainer(fp).infer(x)
    agree = float((got.argmax(1) == want.argmax(1)).mean())
    assert agree >= (0.95 if bits == 8 else 0.99), agree


def test_few_bit_codes_shrink_the_arena_and_still_train(tmp_path, data, model):
    """Saved activations for the backward pass: 8-bit outputs vs 2-bit codes (int8, bias
    training: the backward pass crosses both activations, no weight gradient reads them);
    both runs adapt the model to the shifted digits."""
    arenas, accs = {}, {}
    x, y = data["x_train"], data["y_train"]
    for k in (0, 2):
        res, fp, plan = _export(tmp_path, data, model, 8, k, "bias")
        arenas[k] = plan.arena_bytes
        c = HostModel(res.out_dir)
        before = float((c.infer(data["x_test"]).argmax(1) == data["y_test"]).mean())
        for i in np.random.default_rng(0).permutation(len(y)):
            c.train_step(x[i], y[i])
        accs[k] = float((c.infer(data["x_test"]).argmax(1) == data["y_test"]).mean())
        assert accs[k] >= before + 0.03, (k, before, accs[k])
    assert arenas[2] < arenas[0], arenas
    assert abs(accs[2] - accs[0]) <= 0.03, accs


def test_sigmoid_tanh_zo_bit_exact(tmp_path, data, model):
    res, fp, _ = _export(tmp_path, data, model, 8, 0, trainable="last:2", algo="zo",
                         perturbations=2, zo_eps=1e-2)
    c, ref = HostModel(res.out_dir), FixedTrainer(fp)
    for i in range(30):
        assert c.train_step(data["x_train"][i], data["y_train"][i]) == \
            ref.train_step(data["x_train"][i], data["y_train"][i])
    for p, v in ref.raw_params.items():
        np.testing.assert_array_equal(c.raw_params[p], v)
