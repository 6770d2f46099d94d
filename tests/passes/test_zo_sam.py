"""zo sharpness-aware point (zo_sam_rho, passes/zeroth_order.py): numpy reference, config, CLI."""
import numpy as np
import pytest

from tinytrain.cli import main
from tinytrain.datasets import make_adaptation_data
from tinytrain.errors import ConfigError
from tinytrain.numerics.prng import Pcg32, stream_id
from tinytrain.passes import TrainConfig, build_training_program
from tinytrain.passes.zeroth_order import DISTS, sam_scale, zo_axpy
from tinytrain.pipeline import export, load_model
from tinytrain.reference import ReferenceTrainer

from ..conftest import MODELS


@pytest.fixture(scope="module")
def data():
    return make_adaptation_data(0)


def _trainer(rho, **kw):
    args = dict(algo="zo", trainable="last:1", lr=3e-3, zo_eps=1e-2, perturbations=2, batch=2,
                seed=3)
    args.update(kw)
    return ReferenceTrainer(build_training_program(load_model(MODELS / "mlp.onnx"),
                                                   TrainConfig(zo_sam_rho=rho, **args)))


def _z(p, cfg, step, k):
    """z_k(step) over fg_params, float64, drawn independently of the trainer."""
    gen = Pcg32(cfg.seed, stream_id(step, k))
    out = {}
    for q in p.fg_params:
        z = np.zeros(p.tensors[q].size, np.float32)
        zo_axpy(z, 1.0, gen, DISTS[cfg.zo_dist])
        out[q] = z.astype(np.float64).reshape(p.tensors[q].shape)
    return out


def _loss64(r, w, x, y):
    """Batch-mean loss at weights w, float64."""
    r64 = ReferenceTrainer(r.program, np.float64)
    r64.weights.update({q: v.astype(np.float64) for q, v in w.items()})
    return r64.loss(x, y)


@pytest.mark.parametrize("dist", ["rademacher", "gaussian"])
def test_losses_are_taken_at_the_ascended_point(data, dist):
    """Step 1's perturbation pairs run at w + a with a = rho / sqrt(m D) sum_k s_k z_k(0),
    rebuilt here by hand from the PRNG draws and step 0's loss differences (float64)."""
    rho = 0.5
    r = _trainer(rho, zo_dist=dist, perturbations=4)
    p, cfg = r.program, r.program.config
    x, y = data["x_train"], data["y_train"]
    w_before0 = {q: r.weights[q].astype(np.float64) for q in p.fg_params}
    eps = float(np.float32(cfg.zo_eps))
    # step 0 (no ascent): its signs, from float64 losses at w +- eps z_k(0)
    signs0 = []
    for k in range(4):
        z = _z(p, cfg, 0, k)
        lp = _loss64(r, {q: w_before0[q] + eps * z[q] for q in z}, x[:2], y[:2])
        lm = _loss64(r, {q: w_before0[q] - eps * z[q] for q in z}, x[:2], y[:2])
        signs0.append(int(np.sign(lp - lm)))
    r.train_step(x[:2], y[:2])
    assert r.sam_signs == (0, tuple(signs0))
    m = sum(1 for s in signs0 if s)
    d = sum(p.tensors[q].size for q in p.fg_params)
    a = {q: np.zeros(p.tensors[q].shape) for q in p.fg_params}
    for k, s in enumerate(signs0):
        z = _z(p, cfg, 0, k)
        for q in a:
            a[q] += rho / np.sqrt(m * d) * s * z[q]
    norm = np.sqrt(sum(float((v ** 2).sum()) for v in a.values()))
    assert 0.7 * rho <= norm <= 1.3 * rho       # |a| ~ rho: z has unit variance
    w = {q: r.weights[q].astype(np.float64) for q in p.fg_params}
    z0 = _z(p, cfg, 1, 0)
    lp = _loss64(r, {q: w[q] + a[q] + eps * z0[q] for q in w}, x[2:4], y[2:4])
    lm = _loss64(r, {q: w[q] + a[q] - eps * z0[q] for q in w}, x[2:4], y[2:4])
    plain = 0.5 * (_loss64(r, {q: w[q] + eps * z0[q] for q in w}, x[2:4], y[2:4])
                   + _loss64(r, {q: w[q] - eps * z0[q] for q in w}, x[2:4], y[2:4]))
    got = r.train_step(x[2:4], y[2:4])
    assert got == pytest.approx(0.5 * (lp + lm), rel=2e-5)
    assert abs(got - plain) > 100 * 2e-5 * abs(plain)    # the ascent is visible


@pytest.mark.parametrize("hybrid", [0, 1])
def test_the_update_sees_the_unascended_weights(data, monkeypatch, hybrid):
    """After the pairs the ascent is removed: the backprop pass (hybrid) and the zo update
    start from the pre-ascent weights, up to the fp32 round trip (a few ulp)."""
    kw = dict(trainable="all", hybrid_bp_layers=1, optimizer="momentum") if hybrid else {}
    r = _trainer(0.1, perturbations=4, **kw)
    x, y = data["x_train"], data["y_train"]
    seen = {}
    for name in ("_fg_update", "_bp_update"):
        orig = getattr(r, name)

        def spy(*a, _orig=orig, _name=name, **k):
            seen[_name] = {q: r.weights[q].copy() for q in r.program.trainable}
            return _orig(*a, **k)
        monkeypatch.setattr(r, name, spy)
    for i in range(0, 16, 2):
        before = {q: r.weights[q].copy() for q in r.program.trainable}
        ascents = len(r._sam_ascent(r.step_count))
        r.train_step(x[i:i + 2], y[i:i + 2])
        assert (ascents == 0) == (i == 0)
        # the backprop pass sees every weight as it was; the zo update the zo parameters
        # (the backprop layers have had their update by then)
        for name, qs in (("_fg_update", r.program.fg_params),) + (
                (("_bp_update", r.program.trainable),) if hybrid else ()):
            for q in qs:
                w0 = before[q]
                # each add of the n pairs and of the ascent rounds once: <= (2n + 2m) ulp
                tol = 16 * np.spacing(np.abs(w0) + 0.25).astype(np.float32)
                assert np.all(np.abs(seen[name][q] - w0) <= tol), (i, name, q)


def test_no_ascent_at_step_0_or_when_every_sign_is_0(data):
    r0, r = _trainer(0.0), _trainer(0.2)
    x, y = data["x_train"], data["y_train"]
    assert r.train_step(x[:2], y[:2]) == r0.train_step(x[:2], y[:2])
    for q in r.program.trainable:
        assert np.array_equal(r.weights[q], r0.weights[q])
    r.sam_signs = (0, (0, 0))           # m == 0
    assert r.train_step(x[2:4], y[2:4]) == r0.train_step(x[2:4], y[2:4])
    for q in r.program.trainable:
        assert np.array_equal(r.weights[q], r0.weights[q])
    assert r.sam_signs[0] == 1 and r.step_count == 2
    r.sam_signs = (0, r.sam_signs[1])   # signs of another step than t - 1: ignored
    assert r._sam_ascent(2) == []


def test_signs_are_cleared_by_reset_and_restore(data):
    """reset (tt_init) and restore (checkpoint load) forget the signs: the next step runs
    without ascent, exactly like a rho = 0 trainer from the same state."""
    x, y = data["x_train"], data["y_train"]
    r = _trainer(0.2, optimizer="momentum")
    for i in range(0, 10, 2):
        r.train_step(x[i:i + 2], y[i:i + 2])
    snap = ({q: r.weights[q].copy() for q in r.program.trainable},
            {n: v.copy() for n, v in r.state.items()}, r.step_count)
    assert r.sam_signs[0] == 4 and r._sam_ascent(5)
    with_ascent = ReferenceTrainer(r.program)
    with_ascent.restore(*snap)
    with_ascent.sam_signs = r.sam_signs
    l_sam = with_ascent.train_step(x[10:12], y[10:12])
    r.restore(*snap)
    assert r.sam_signs is None and r.step_count == 5
    plain = _trainer(0.0, optimizer="momentum")
    plain.restore(*snap)
    l_r = r.train_step(x[10:12], y[10:12])
    assert l_r == plain.train_step(x[10:12], y[10:12]) != l_sam
    for q in r.program.trainable:
        assert np.array_equal(r.weights[q], plain.weights[q])
    r.reset()
    assert r.sam_signs is None and r.step_count == 0
    fresh = _trainer(0.2, optimizer="momentum")
    for i in range(0, 6, 2):
        assert r.train_step(x[i:i + 2], y[i:i + 2]) == fresh.train_step(x[i:i + 2], y[i:i + 2])


def test_nonfinite_loss_at_the_ascended_point_drops_the_batch(data):
    from tinytrain.errors import NumericFaultError
    r = _trainer(0.2)
    x, y = data["x_train"], data["y_train"]
    r.train_step(x[:2], y[:2])
    before = {q: r.weights[q].copy() for q in r.program.trainable}
    signs = r.sam_signs
    bad = x[2:4].copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(NumericFaultError):
        r.train_step(bad, y[2:4])
    assert r.step_count == 1 and r.sam_signs == signs    # the retried step keeps its signs
    for q, w0 in before.items():
        assert np.all(np.abs(r.weights[q] - w0) <= 16 * np.spacing(np.abs(w0) + 0.25))


def test_sam_scale_is_float32_rho_over_sqrt_m_d():
    c = sam_scale(0.05, 3, 330)
    assert c.dtype == np.float32
    assert c == np.float32(np.float32(0.05) / np.sqrt(np.float32(3) * np.float32(330)))
    assert float(c) == pytest.approx(0.05 / np.sqrt(990), rel=1e-7)


def test_config_errors():
    with pytest.raises(ConfigError, match="zo_sam_rho.*>= 0"):
        TrainConfig(algo="zo", zo_sam_rho=-0.1)
    with pytest.raises(ConfigError, match="zo_sam_rho"):
        TrainConfig(algo="zo", zo_sam_rho=float("nan"))
    for algo in ("bp", "jvp"):
        with pytest.raises(ConfigError, match="--sam-rho.*needs algo 'zo'"):
            TrainConfig(algo=algo, zo_sam_rho=0.05)
    assert TrainConfig(algo="zo", zo_sam_rho=0.05).zo_sam_rho == 0.05


def test_fp16_export_refuses_it(tmp_path):
    with pytest.raises(ConfigError, match="--sam-rho.*fp16"):
        export(MODELS / "mlp.onnx", tmp_path / "h", TrainConfig(algo="zo", zo_sam_rho=0.05),
               precision="fp16", command="test")


def test_cli_option(tmp_path, capsys):
    m = str(MODELS / "mlp.onnx")
    assert main(["export", m, "-o", str(tmp_path / "bp"), "--sam-rho", "0.05"]) == 2
    assert "--sam-rho" in capsys.readouterr().err
    assert main(["export", m, "-o", str(tmp_path / "neg"), "--algo", "zo",
                 "--sam-rho", "-1"]) == 2
    assert "--sam-rho" in capsys.readouterr().err
    assert main(["export", m, "-o", str(tmp_path / "zo"), "--algo", "zo", "--trainable",
                 "last:1", "--perturbations", "2", "--sam-rho", "0.05"]) == 0
    src = (tmp_path / "zo" / "tt_model.c").read_text()
    assert "tt_zo_sam_shift" in src
    assert main(["inspect", m, "--sam-rho", "0.05"]) == 0
