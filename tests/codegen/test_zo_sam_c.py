"""zo sharpness-aware point (zo_sam_rho) in the generated fp32 C, against the numpy reference."""
import difflib
import re

import numpy as np
import pytest

from tinytrain.codegen.emit import TEMPLATES
from tinytrain.datasets import make_adaptation_data
from tinytrain.errors import NumericFaultError
from tinytrain.passes import TrainConfig
from tinytrain.pipeline import export
from tinytrain.reference import ReferenceTrainer
from tinytrain.sim.host import HostModel

from ..conftest import MODELS

SAM_TRACE = re.compile(r"tt_zo_sam|sharpness|sam-rho|sam_rho", re.IGNORECASE)


@pytest.fixture(scope="module")
def data():
    return make_adaptation_data(0)


def _batches(data, batch, steps):
    x, y = data["x_train"], data["y_train"]
    for s in range(steps):
        i = (s * batch) % (len(x) - batch + 1)
        yield x[i:i + batch], y[i:i + batch]


def _close(c, r, p):
    for k in p.trainable:
        err = np.linalg.norm(c.params[k] - r.params[k]) / np.linalg.norm(r.params[k])
        assert err <= 1e-4, (k, err)


# Pairwise cover of model x trainable x n x distribution x optimizer x batch x estimator,
# plus one hybrid case; lr inside each scenario's stable range (bench/forward_gradient.py).
CASES = [
    ("mlp", "last:1", 4, "rademacher", "sgd", 1, "spsa", 0, 3e-3),
    ("mlp", "all", 1, "gaussian", "momentum", 4, "sign", 0, 3e-4),
    ("mlp", "all", 4, "rademacher", "momentum", 1, "sign", 0, 3e-4),
    ("cnn", "last:1", 1, "rademacher", "momentum", 4, "spsa", 0, 3e-4),
    ("cnn", "all", 4, "gaussian", "sgd", 1, "sign", 0, 1e-4),
    ("cnn", "last:1", 4, "gaussian", "sgd", 4, "spsa", 0, 3e-4),
    ("cnn", "all", 4, "rademacher", "momentum", 2, "sign", 1, 1e-3),
]


@pytest.mark.parametrize("model,trainable,n,dist,opt,batch,est,hybrid,lr", CASES)
def test_c_sam_tracks_reference(tmp_path, data, model, trainable, n, dist, opt, batch, est,
                                hybrid, lr):
    """100 optimizer steps, generated C vs numpy: losses rel 1e-4, weights rel 1e-4 (the
    tolerance of the other fp32 zo C tests)."""
    cfg = TrainConfig(algo="zo", trainable=trainable, lr=lr, zo_eps=1e-2, perturbations=n,
                      zo_dist=dist, optimizer=opt, batch=batch, zo_estimator=est,
                      hybrid_bp_layers=hybrid, seed=11, zo_sam_rho=0.05)
    res, p, _ = export(MODELS / f"{model}.onnx", tmp_path / "sam", cfg, command="test")
    c, r = HostModel(res.out_dir), ReferenceTrainer(p)
    ascended = 0
    for xb, yb in _batches(data, batch, 100):
        ascended += bool(r._sam_ascent(r.step_count))
        lc, lref = c.train_step(xb, yb), r.train_step(xb, yb)
        assert lc == pytest.approx(lref, rel=1e-4, abs=1e-6)
        assert lref < 5
    assert c.step == r.step_count == 100
    assert ascended >= 95
    _close(c, r, p)


def _mlp_sam(tmp_path, rho=0.05, **kw):
    args = dict(algo="zo", trainable="last:1", lr=3e-3, zo_eps=1e-2, perturbations=2,
                optimizer="momentum", seed=2, zo_sam_rho=rho)
    args.update(kw)
    res, p, _ = export(MODELS / "mlp.onnx", tmp_path / f"sam{rho}", TrainConfig(**args),
                       command="test")
    return res, p


def test_c_reset_and_checkpoint_load_forget_the_signs(tmp_path, data):
    """tt_init and a checkpoint load of an earlier step: the next step runs without ascent,
    as ReferenceTrainer.reset / restore."""
    res, p = _mlp_sam(tmp_path)
    c, r = HostModel(res.out_dir), ReferenceTrainer(p)
    xs = list(_batches(data, 1, 40))
    for xb, yb in xs[:5]:
        c.train_step(xb, yb), r.train_step(xb, yb)
    c.save_checkpoint(tmp_path / "ck.bin")
    snap = ({q: r.weights[q].copy() for q in p.trainable},
            {n: v.copy() for n, v in r.state.items()}, r.step_count)
    for xb, yb in xs[5:10]:
        c.train_step(xb, yb), r.train_step(xb, yb)
    c.load_checkpoint(tmp_path / "ck.bin")
    r.restore(*snap)
    assert c.step == r.step_count == 5 and not r._sam_ascent(5)
    for xb, yb in xs[10:20]:
        assert c.train_step(xb, yb) == pytest.approx(r.train_step(xb, yb), rel=1e-4, abs=1e-6)
    _close(c, r, p)
    c.reset()
    r.reset()
    for xb, yb in xs[20:40]:
        assert c.train_step(xb, yb) == pytest.approx(r.train_step(xb, yb), rel=1e-4, abs=1e-6)
    _close(c, r, p)


@pytest.mark.skipif(
    "{% for st in zo.sam.reset" not in
    (TEMPLATES / "tt_model.c.j2").read_text(),
    reason="tt_model.c.j2 does not run zo.sam.reset in tt_init / tt_checkpoint_load yet")
def test_c_checkpoint_load_of_the_same_step_forgets_the_signs(tmp_path, data):
    """Save at step 5 and load it straight back: the signs of step 4 would still match the
    step, so only tt_checkpoint_load clearing them keeps C = numpy."""
    res, p = _mlp_sam(tmp_path)
    c, r = HostModel(res.out_dir), ReferenceTrainer(p)
    xs = list(_batches(data, 1, 15))
    for xb, yb in xs[:5]:
        c.train_step(xb, yb), r.train_step(xb, yb)
    c.save_checkpoint(tmp_path / "ck.bin")
    c.load_checkpoint(tmp_path / "ck.bin")
    r.restore({q: r.weights[q].copy() for q in p.trainable},
              {n: v.copy() for n, v in r.state.items()}, r.step_count)
    for xb, yb in xs[5:]:
        assert c.train_step(xb, yb) == pytest.approx(r.train_step(xb, yb), rel=1e-4, abs=1e-6)
    _close(c, r, p)


def test_c_nonfinite_at_the_ascended_point_drops_the_batch(tmp_path, data):
    res, p = _mlp_sam(tmp_path, batch=2)
    c, r = HostModel(res.out_dir), ReferenceTrainer(p)
    xs = list(_batches(data, 2, 12))
    for xb, yb in xs[:3]:
        c.train_step(xb, yb), r.train_step(xb, yb)
    before = c.params
    bad = xs[3][0].copy()
    bad[1, 0, 0, 0] = np.nan                        # the second sample of the batch
    for m in (c, r):
        with pytest.raises(NumericFaultError):
            m.train_step(bad, xs[3][1])
    assert c.step == r.step_count == 3 and c.ctx.nonfinite == 1
    for q in p.trainable:    # ascent and pairs removed: the round trips only (a few ulp)
        assert np.all(np.abs(c.params[q] - before[q]) <= 16 * np.spacing(np.abs(before[q]) + 0.25))
    for xb, yb in xs[4:]:
        assert c.train_step(xb, yb) == pytest.approx(r.train_step(xb, yb), rel=1e-4, abs=1e-6)
    _close(c, r, p)


def test_rho_0_emits_no_sam_code(tmp_path):
    """rho = 0 is the C of before: no trace of the ascent; rho > 0 only adds lines."""
    off, _ = _mlp_sam(tmp_path, rho=0.0)
    on, _ = _mlp_sam(tmp_path, rho=0.05)
    for name in off.files:
        f = off.out_dir / name
        if f.suffix in (".c", ".h", ".md") or name == "Makefile":
            assert not SAM_TRACE.search(f.read_text()), name
    a = (off.out_dir / "tt_model.c").read_text().splitlines()
    b = (on.out_dir / "tt_model.c").read_text().splitlines()
    removed = [ln for ln in difflib.ndiff(a, b) if ln.startswith("- ")]
    assert all("model hash" in ln or "TT_MODEL_HASH" in ln for ln in removed), removed
    assert SAM_TRACE.search("\n".join(b))
