"""FP16 forward-mode export (precision="fp16", algo "jvp") through the generated C and the public
API (HostModel): 100 steps bit-identical to the numpy reference (Fp16Trainer) - every loss, half
parameter, fp32 master and momentum word -; the fp16 directional derivative is the float64 one
within fp16 accuracy and the mean of many fp16 estimates points along the backprop gradient; the
arena is planned as fp32 jvp's (<= 2.1x the fp16 inference arena); a NaN input drops the batch
with the weights untouched; the MLP adapts; the export runs clean under ASan + UBSan."""
import numpy as np
import pytest

from tinytrain.cli import main
from tinytrain.datasets import make_adaptation_data
from tinytrain.errors import ConfigError, ExportError, NumericFaultError
from tinytrain.frontend.builder import GraphBuilder
from tinytrain.passes import TrainConfig, build_training_program
from tinytrain.passes.forward_mode import draw_offsets, tangent
from tinytrain.passes.lower_fp16 import Fp16Config, _PlanInput, lower_fp16
from tinytrain.passes.memory_plan import plan_arena
from tinytrain.pipeline import export, load_model
from tinytrain.reference import ReferenceTrainer
from tinytrain.reference_fp16 import Fp16Trainer
from tinytrain.sim.host import HostModel, run_sanitized

from ..conftest import MODELS
from .test_fp16_export import Raw, assert_same_state, fp16_export


@pytest.fixture(scope="module")
def data():
    return make_adaptation_data(0)


def jvp(**kw):
    base = dict(algo="jvp", lr=1e-3, seed=7)
    base.update(kw)
    return Fp16Config(**base)


# A covering set of mlp / cnn x all / last:1 x n 1 / 4 x rademacher / gaussian x spsa / sign
# (each factor both ways on each model), with sgd and momentum (fp32 and half state), batch 2
# and the step / cosine schedules; the bias set (conv tangents without a weight tangent);
# dscnn and resnet8 once each.
CASES = [
    ("mlp", jvp(trainable="last:1", perturbations=1, zo_dist="rademacher", lr=5e-3)),
    ("mlp", jvp(trainable="all", perturbations=4, zo_dist="gaussian", zo_estimator="sign",
                optimizer="momentum", lr=2e-4)),
    ("mlp", jvp(trainable="all", perturbations=1, zo_dist="gaussian", batch=2,
                optimizer="momentum", fp16_state=True, schedule="cosine", total_steps=60)),
    ("mlp", jvp(trainable="last:1", perturbations=4, zo_estimator="sign", schedule="step",
                step_size=30, gamma=0.5)),
    ("cnn", jvp(trainable="all", perturbations=4, optimizer="momentum", lr=1e-4)),
    ("cnn", jvp(trainable="last:1", perturbations=1, zo_dist="gaussian", zo_estimator="sign",
                lr=2e-3)),
    ("cnn", jvp(trainable="all", perturbations=1, zo_dist="gaussian", batch=2, lr=2e-4)),
    ("cnn", jvp(trainable="last:1", perturbations=4, zo_estimator="sign", optimizer="momentum",
                fp16_state=True, lr=5e-4)),
    ("cnn", jvp(trainable="bias", perturbations=2, zo_dist="gaussian", lr=1e-3)),
    ("dscnn", jvp(trainable="all", perturbations=1, optimizer="momentum", lr=3e-5)),
    ("resnet8", jvp(trainable="all", perturbations=1, zo_dist="gaussian", lr=2e-5)),
]


@pytest.mark.parametrize("model,cfg", CASES,
                         ids=[f"{m}-{c.trainable}-n{c.perturbations}-{c.zo_dist}-"
                              f"{c.zo_estimator}-{c.optimizer}-b{c.batch}" for m, c in CASES])
def test_100_jvp_steps_bit_identical_to_numpy(tmp_path, data, model, cfg):
    host, ref, res = fp16_export(tmp_path, model, cfg)
    m = res.manifest
    assert m["algo"] == "jvp" and m["memory"]["grads"] == 0 and m["jvp"]["tangent_dtype"] == "f16"
    raw = Raw(host)
    x, y = data["x_train"], data["y_train"]
    for i in range(100 * cfg.batch):
        lc = host.train_step(x[i], y[i:i + 1])
        lr = ref.train_step(x[i], y[i:i + 1])
        assert np.float32(lc).view(np.uint32) == np.float32(lr).view(np.uint32), (i, lc, lr)
        if i % 20 == 19:
            rc, rr = raw(), ref.raw_params
            for k in rr:
                np.testing.assert_array_equal(rc[k], rr[k], err_msg=f"sample {i}: {k}")
    assert ref.step == 100 and ref.nonfinite == 0
    assert_same_state(host, raw, ref, tmp_path, "after 100 steps")   # masters, momentum
    init = {p: ref.lowered.init[p] for p in ref.lowered.trainable}
    assert all(not np.array_equal(ref.state[p], init[p]) for p in init), "every tensor trained"


def test_zoo_net_bit_identical_to_numpy(tmp_path):
    """Tangents through padded average / max pooling, an Add of a trainable per-channel
    parameter (a materialised half tangent), an Add of a frozen constant (one tangent), an Add
    of two tangents, Reshape views (tests/passes/test_lower_fp16.py zoo_graph)."""
    from ..passes.test_lower_fp16 import zoo_graph
    cfg = jvp(trainable="all", optimizer="momentum", lr=2e-3, batch=2, perturbations=2,
              zo_dist="gaussian")
    res, lowered, _ = export(zoo_graph(), tmp_path / "out", cfg, precision="fp16", command="test")
    kernels = {c.kernel for c in lowered.jvp.calls}
    assert {"tt_tangent_fill_f16", "tt_add_jvp_f16", "tt_maxpool2d_jvp_f16",
            "tt_avgpool2d_fwd_f16", "tt_conv2d_jvp_f16", "tt_gemm_jvp_f16"} <= kernels
    host, ref = HostModel(res.out_dir), Fp16Trainer(lowered)
    rng = np.random.default_rng(0)
    x = rng.random((60, 2, 8, 8)).astype(np.float32)
    y = rng.integers(0, 5, 60)
    for i in range(0, 60, 2):
        assert host.train_step(x[i:i + 2], y[i:i + 2]) == ref.train_step(x[i:i + 2], y[i:i + 2])
    assert_same_state(host, Raw(host), ref, tmp_path, "end")
    np.testing.assert_array_equal(host.infer(x[:5]), ref.infer(x[:5]))


# measured aggregate relative error sqrt(sum (d16 - d64)^2 / sum d64^2) over 8 samples x 4
# gaussian directions, trainable all: mlp 4e-4, cnn 5e-4, dscnn 6e-3, resnet8 1.2e-2. Each
# stored half rounds by <= 2^-11 relative; the deep models' larger numbers come from single
# ReLU units whose pre-activation is within rounding of 0 (the half forward flips the mask, so
# that unit's tangent switches on or off): samples without a flip agree to <= 0.5 %.
DD_TOL = {"mlp": 2e-3, "cnn": 2e-3, "dscnn": 2e-2, "resnet8": 4e-2}


@pytest.mark.parametrize("model", list(DD_TOL))
def test_directional_derivative_matches_float64(data, model):
    """Independent of the C: dL.v of the fp16 pass vs the float64 reference's
    (ReferenceTrainer.directional_derivative) on the same half weights and the same v."""
    cfg = jvp(trainable="all", zo_dist="gaussian")
    prog = build_training_program(load_model(MODELS / f"{model}.onnx"), cfg)
    r16, r64 = Fp16Trainer(prog, cfg), ReferenceTrainer(prog, dtype=np.float64)
    for q, v in r16.params.items():
        r64.weights[q] = v.astype(np.float64)
    x, y = data["x_train"], data["y_train"]
    num = den = 0.0
    for i in range(8):
        for k in range(4):
            l16, d16 = r16.directional_derivative(x[i], y[i:i + 1], k=k)
            l64, d64 = r64.directional_derivative(x[i:i + 1], y[i:i + 1], k=k)
            assert isinstance(d16, np.float32)
            assert abs(l16 - l64) <= 5e-3 * max(1.0, l64)
            num += (float(d16) - d64) ** 2
            den += d64 ** 2
    assert np.sqrt(num / den) < DD_TOL[model], np.sqrt(num / den)


def test_mean_of_fp16_estimates_is_the_backprop_gradient(data):
    """Unbiasedness: the mean of N = 2000 fp16 estimates (dL.v_k) v_k, rademacher, one sample,
    MLP trainable "bias" (42 values, both layers), has cosine >= 0.95 with the fp32 backprop
    gradient (measured 0.99; a mean of N unbiased rademacher estimates of d values has cosine
    about 1 / sqrt(1 + (d - 1) / N)), and is the fp32 jvp's mean with the same directions
    (cosine >= 0.9999: fp16 storage adds no bias)."""
    g = load_model(MODELS / "mlp.onnx")
    cfg = jvp(trainable="bias", seed=5)
    prog = build_training_program(g, cfg)
    r16, r32 = Fp16Trainer(prog, cfg), ReferenceTrainer(prog)
    bp = ReferenceTrainer(build_training_program(g, TrainConfig(trainable="bias",
                                                                fuse_update=False)))
    for q, v in r16.params.items():
        r32.weights[q] = v.copy()
        bp.weights[q] = v.copy()
    x, y = data["x_train"][3:4], data["y_train"][3:4]
    _, grads = bp.loss_and_grads(x, y)
    gtrue = np.concatenate([grads[p].reshape(-1) for p in prog.fg_params]).astype(np.float64)
    offs = draw_offsets(prog.fg_params, prog.tensors, 0)
    n = 2000
    est16, est32 = np.zeros_like(gtrue), np.zeros_like(gtrue)
    for k in range(n):
        v = np.concatenate([tangent(cfg.seed, 0, k, offs[p], prog.tensors[p].shape, 0).ravel()
                            for p in prog.fg_params])
        est16 += float(r16.directional_derivative(x, y, k=k)[1]) * v
        est32 += float(r32.directional_derivative(x, y, k=k)[1]) * v

    def cos(a, b):
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    assert cos(est16, gtrue) >= 0.95, cos(est16, gtrue)
    assert cos(est16, est32) >= 0.9999, cos(est16, est32)


# measured (trainable all): fp16 inference / jvp arena, bytes: mlp 192 / 256, cnn 1280 / 2560,
# dscnn 6144 / 12288, resnet8 6144 / 12288
@pytest.mark.parametrize("model", ["mlp", "cnn", "dscnn", "resnet8"])
def test_arena_at_most_2_1x_fp16_inference(model):
    g = load_model(MODELS / f"{model}.onnx")
    cfg = jvp(trainable="all", optimizer="momentum")
    lp = lower_fp16(build_training_program(g, cfg), cfg)
    infer = plan_arena(_PlanInput(lp.tensors, lp.trainable, lp.input, lp.label, lp.loss,
                                  lp.forward_calls))
    rep = lp.plan.report()
    assert rep["arena"] <= 2.1 * infer.section_bytes["arena"], (rep["arena"], infer.section_bytes)
    assert rep["grads"] == 0
    # nothing saved for a backward pass: below fp16 backprop's arena + gradients
    bp = lower_fp16(build_training_program(g, Fp16Config(trainable="all", optimizer="momentum",
                                                         batch=2)))
    assert rep["ram_total"] < bp.plan.report()["ram_total"]
    # a sparse set carries no tangents before its first layer: the inference arena
    last = lower_fp16(build_training_program(g, jvp(trainable="last:1")))
    assert last.plan.section_bytes["arena"] <= 1.25 * infer.section_bytes["arena"]


def test_nan_input_drops_the_batch_weights_untouched(tmp_path, data):
    host, ref, _ = fp16_export(tmp_path, "mlp", jvp(trainable="all", batch=2, perturbations=2,
                                                    optimizer="momentum", lr=2e-4))
    raw = Raw(host)
    x, y = data["x_train"], data["y_train"]
    for i in range(5):                               # 2 steps and half a batch
        assert host.train_step(x[i], y[i:i + 1]) == ref.train_step(x[i], y[i:i + 1])
    before = raw()
    bad = x[5].copy()
    bad[0, 2, 3] = np.nan
    for t in (host, ref):
        with pytest.raises(NumericFaultError, match="NaN/Inf"):
            t.train_step(bad, y[5:6])
    assert host.ctx.nonfinite == 1 and host.ctx.samples == 0 and host.step == 2
    for k, v in raw().items():
        np.testing.assert_array_equal(v, before[k])
    assert_same_state(host, raw, ref, tmp_path, "after NaN")
    for i in range(6, 10):                           # and training goes on, bit-identical
        assert host.train_step(x[i], y[i:i + 1]) == ref.train_step(x[i], y[i:i + 1])
    assert_same_state(host, raw, ref, tmp_path, "after NaN + 4")


def test_mlp_adapts(tmp_path, data):
    """Digits adaptation through the generated C, MLP last:1, n = 4, rademacher, sgd
    lr 0.01, batch 1: 74.3 -> 85.2 % test accuracy in 2 epochs of 300 samples (fp32 jvp with
    the same settings: 74.1 -> 85.2 %; docs/fp16.md)."""
    host, _, _ = fp16_export(tmp_path, "mlp", jvp(trainable="last:1", perturbations=4, lr=0.01,
                                                  seed=1))
    x, y = data["x_train"], data["y_train"]

    def acc():
        return float((host.infer(data["x_test"]).argmax(-1) == data["y_test"]).mean())
    a0 = acc()
    for ep in range(2):
        for i in np.random.default_rng(ep).permutation(len(x)):
            host.train_step(x[i], y[i:i + 1])
    assert acc() >= a0 + 0.08, (a0, acc())


def test_cli_export_and_sanitizers(tmp_path, capsys):
    """`tinytrain export --precision fp16 --algo jvp`, then the project under ASan + UBSan."""
    out = tmp_path / "cli"
    assert main(["export", str(MODELS / "cnn.onnx"), "-o", str(out), "--precision", "fp16",
                 "--algo", "jvp", "--trainable", "all", "--optimizer", "momentum",
                 "--perturbations", "2"]) == 0
    assert "memory plan (fp16)" in capsys.readouterr().out
    host = HostModel(out)
    assert host.manifest["precision"] == "fp16" and host.manifest["algo"] == "jvp"
    assert run_sanitized(out, steps=4).startswith("ok 4 steps")


def test_refusals_name_what_is_supported(tmp_path):
    g = load_model(MODELS / "mlp.onnx")
    with pytest.raises(ConfigError, match="master weights"):
        lower_fp16(build_training_program(g, jvp(master_weights=False)),
                   jvp(master_weights=False))
    with pytest.raises(ConfigError, match="hybrid_bp_layers"):
        jvp(hybrid_bp_layers=1)
    with pytest.raises(ConfigError, match="sgd and momentum"):
        jvp(optimizer="adam")
    b = GraphBuilder()
    x = b.input("x", (1, 4))
    sg = b.build(b.gemm(b.op("Sigmoid", [b.gemm(x, 4, "a")], name="sig"), 3, "b"))
    with pytest.raises(ExportError, match=r"'sig' \(Sigmoid\).*Gemm, Conv, Relu"):
        export(sg, tmp_path / "x", jvp(), precision="fp16", command="test")
    b = GraphBuilder(seed=1)                         # a Gemm whose weight is computed
    x = b.input("x", (1, 4))
    wr = b.op("Relu", [b.param("w", b.rng.normal(0, 0.5, (3, 4)))], name="wr")
    mm = b.build(b.op("Gemm", [x, wr], {"transB": 1}, name="mm"))
    with pytest.raises(ExportError, match=r"'mm' \(Gemm\): a tangent on a weight"):
        export(mm, tmp_path / "x", jvp(), precision="fp16", command="test")
    assert not (tmp_path / "x").exists()
