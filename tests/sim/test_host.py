"""The compiled C (through the same API users call) against the numpy reference."""
import numpy as np
import pytest

from tinytrain.errors import CheckpointError, ExportError, ShapeError
from tinytrain.frontend.builder import GraphBuilder
from tinytrain.passes import TrainConfig
from tinytrain.pipeline import export
from tinytrain.reference import ReferenceTrainer
from tinytrain.sim.host import HostModel


def small_net(seed=0, act="Relu"):
    b = GraphBuilder(seed=seed)
    x = b.input("x", (1, 12))
    h = b.op(act, [b.gemm(x, 16, "fc1")], name="act1")
    r = b.op("Relu", [b.gemm(h, 16, "fc2")], name="act2")
    h = b.op("Add", [h, r], name="res")
    return b.build(b.gemm(h, 5, "fc3"))


def _data(rng, n, d=12, k=5):
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = (np.abs(x[:, :k]).argmax(axis=1)).astype(np.int64)
    return x, y


def _compare(a, b, rtol):
    for k in a:
        err = np.linalg.norm(a[k] - b[k]) / max(np.linalg.norm(b[k]), 1e-12)
        assert err <= rtol, f"{k}: relative error {err:.2e}"


@pytest.mark.parametrize("trainable", ["all", "last:1", "bias"])
@pytest.mark.parametrize("opt", ["sgd", "momentum", "adam"])
def test_c_tracks_reference_for_100_steps(tmp_path, rng, trainable, opt):
    g = small_net()
    cfg = TrainConfig(trainable=trainable, optimizer=opt, lr=0.01)
    res, program, plan = export(g, tmp_path / "out", cfg, command="test")
    m = HostModel(res.out_dir)
    ref = ReferenceTrainer(program)
    x, y = _data(rng, 100)
    for i in range(100):
        lc = m.train_step(x[i], y[i:i + 1])
        lr = ref.train_step(x[i:i + 1], y[i:i + 1])
        assert lc == pytest.approx(lr, rel=1e-4, abs=1e-6)
    _compare(m.params, ref.params, 1e-4)
    np.testing.assert_allclose(m.infer(x[:10]), ref.infer(x[:10]), rtol=1e-4, atol=1e-5)


def test_batch_accumulation_equals_reference_minibatch(tmp_path, rng):
    g = small_net(act="Tanh")
    cfg = TrainConfig(lr=0.05, batch=4, optimizer="momentum")
    res, program, plan = export(g, tmp_path / "out", cfg, command="test")
    m = HostModel(res.out_dir)
    ref = ReferenceTrainer(program)
    x, y = _data(rng, 40)
    for i in range(0, 40, 4):
        lc = m.train_step(x[i:i + 4], y[i:i + 4])
        lr = ref.train_step(x[i:i + 4], y[i:i + 4])
        assert lc == pytest.approx(lr, rel=1e-4)
    assert m.step == 10
    _compare(m.params, ref.params, 1e-4)


def test_checkpoint_roundtrip_and_corruption(tmp_path, rng):
    res, program, plan = export(small_net(), tmp_path / "out", TrainConfig(optimizer="adam"),
                                command="test")
    m = HostModel(res.out_dir)
    x, y = _data(rng, 20)
    m.train_step(x[:10], y[:10])
    ck = tmp_path / "ck.bin"
    m.save_checkpoint(ck)
    saved = m.params
    m.train_step(x[10:], y[10:])
    m.load_checkpoint(ck)
    _compare(m.params, saved, 0)
    data = bytearray(ck.read_bytes())
    data[40] ^= 0x10
    bad = tmp_path / "bad.bin"
    bad.write_bytes(bytes(data))
    before = m.params
    with pytest.raises(CheckpointError, match="CRC32.*corrupt.*unchanged"):
        m.load_checkpoint(bad)
    bad.write_bytes(bytes(data[:-9]))
    with pytest.raises(CheckpointError, match="truncated"):
        m.load_checkpoint(bad)
    _compare(m.params, before, 0)


def test_wrong_input_shape_is_a_clear_error(tmp_path):
    res, *_ = export(small_net(), tmp_path / "out", TrainConfig(), command="test")
    m = HostModel(res.out_dir)
    with pytest.raises(ShapeError, match=r"input must have shape \(12,\)"):
        m.infer(np.zeros((3, 7), np.float32))
    with pytest.raises(ShapeError, match="labels must be class indices"):
        m.train_step(np.zeros(12, np.float32), [9])


def test_export_refuses_foreign_directory_and_keeps_files(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="did not create.*notes.txt"):
        export(small_net(), out, TrainConfig(), command="test")
    assert (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_reexport_replaces_only_its_own_files(tmp_path):
    out = tmp_path / "out"
    export(small_net(), out, TrainConfig(), command="test")
    export(small_net(seed=1), out, TrainConfig(lr=0.5), command="test")  # ok: our own files
    (out / "user.c").write_text("int x;")
    with pytest.raises(ExportError, match="user.c"):
        export(small_net(), out, TrainConfig(), command="test")
    assert (out / "user.c").exists()


def test_missing_compiler_is_a_clear_error(tmp_path, monkeypatch):
    from tinytrain.errors import BuildError
    res, *_ = export(small_net(), tmp_path / "out", TrainConfig(), command="test")
    monkeypatch.setenv("CC", "/nonexistent/cc")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("TINYTRAIN_CACHE", str(tmp_path / "cache"))
    with pytest.raises(BuildError, match="no C compiler found"):
        HostModel(res.out_dir)


def test_nan_in_c_keeps_last_good_weights(tmp_path, rng):
    from tinytrain.errors import NumericFaultError
    res, *_ = export(small_net(), tmp_path / "out", TrainConfig(lr=0.1), command="test")
    m = HostModel(res.out_dir)
    x, y = _data(rng, 4)
    m.train_step(x[:2], y[:2])
    good = m.params
    x[2, 3] = np.inf
    with pytest.raises(NumericFaultError, match="last good"):
        m.train_step(x[2], y[2:3])
    _compare(m.params, good, 0)
    m.train_step(x[3], y[3:4])  # training continues after the fault
