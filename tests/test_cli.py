"""The command line as a user runs it."""
import subprocess
import sys

import numpy as np
import pytest

from tinytrain.cli import main
from tinytrain.datasets import make_adaptation_data, save_npz

from .conftest import MODELS


@pytest.fixture(scope="module")
def device_npz(tmp_path_factory):
    p = tmp_path_factory.mktemp("data") / "device.npz"
    d = make_adaptation_data(0)
    save_npz(p, x_train=d["x_train"][:60], y_train=d["y_train"][:60],
             x_test=d["x_test"][:100], y_test=d["y_test"][:100])
    return p


def test_help_reads_like_a_manual():
    r = subprocess.run([sys.executable, "-m", "tinytrain.cli", "--help"], capture_output=True,
                       text=True)
    assert r.returncode == 0
    for word in ("inspect", "train", "export", "simulate", "trainable sets", "exit status"):
        assert word in r.stdout
    for sub in ("inspect", "train", "export", "simulate"):
        r = subprocess.run([sys.executable, "-m", "tinytrain.cli", sub, "--help"],
                           capture_output=True, text=True)
        assert r.returncode == 0 and len(r.stdout) > 300


def test_inspect_prints_layer_table_and_memory(capsys):
    assert main(["inspect", str(MODELS / "cnn.onnx"), "--trainable", "last:1"]) == 0
    out = capsys.readouterr().out
    assert "Conv" in out and "Gemm" in out and "fwd MACs" in out
    assert "arena" in out and "RAM total" in out


def test_train_writes_a_valid_onnx(tmp_path, device_npz, capsys):
    import onnxruntime as ort
    out = tmp_path / "tuned.onnx"
    assert main(["train", str(MODELS / "mlp.onnx"), "--data", str(device_npz), "--epochs", "2",
                 "--lr", "0.05", "-o", str(out)]) == 0
    assert "test acc" in capsys.readouterr().out
    sess = ort.InferenceSession(str(out))
    x = np.random.default_rng(0).random((1, 1, 8, 8), dtype=np.float32)
    y = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    assert y.shape == (1, 10)


def test_export_then_simulate(tmp_path, device_npz, capsys):
    out = tmp_path / "proj"
    assert main(["export", str(MODELS / "mlp.onnx"), "-o", str(out), "--trainable", "last:1",
                 "--lr", "0.05"]) == 0
    assert (out / "tt_model.c").exists() and (out / "Makefile").exists()
    assert main(["simulate", str(out), "--data", str(device_npz), "--epochs", "2",
                 "--checkpoint", str(tmp_path / "ck.bin")]) == 0
    txt = capsys.readouterr().out
    assert "host-simulated training" in txt
    assert (out / "loss_curve.png").stat().st_size > 1000
    assert (tmp_path / "ck.bin").exists()


def test_errors_exit_2_with_a_message(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    assert main(["inspect", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "error" in err and "bad.onnx" in err
    assert main(["inspect", str(MODELS / "mlp.onnx"), "--trainable", "nothing.*"]) == 2
    assert "matches no parameter" in capsys.readouterr().err


def test_generated_project_builds_with_its_makefile(tmp_path):
    import shutil
    if not shutil.which("make"):
        pytest.skip("make not installed")
    out = tmp_path / "proj"
    assert main(["export", str(MODELS / "cnn.onnx"), "-o", str(out)]) == 0
    r = subprocess.run(["make", "-s"], cwd=out, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(["./tt_demo"], cwd=out, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "arena" in r.stdout


def test_export_int8_with_a_wide_layer_then_simulate(tmp_path, device_npz, capsys):
    out = tmp_path / "q"
    assert main(["export", str(MODELS / "mlp.onnx"), "-o", str(out), "--precision", "int8",
                 "--calibration", str(device_npz), "--layer-precision", "/3/Gemm=int16",
                 "--trainable", "last:1", "--lr", "0.05"]) == 0
    text = capsys.readouterr().out
    assert "int8 vs fp32" in text and "RAM total" in text
    import json
    man = json.loads((out / "tt_manifest.json").read_text())
    assert man["quantization"]["layer_bits"] == {"/3/Gemm": 16}
    assert main(["simulate", str(out), "--data", str(device_npz), "--epochs", "1"]) == 0
    assert "test acc" in capsys.readouterr().out


@pytest.mark.parametrize("args,msg", [
    (["--precision", "int8", "--layer-precision", "/3/Gemm"], "expected LAYER=int8"),
    (["--precision", "int8", "--layer-precision", "/2/Relu=int16"], "Relu node"),
    (["--layer-precision", "/3/Gemm=int16"], "fixed-point export"),
])
def test_layer_precision_errors_are_clear(tmp_path, device_npz, capsys, args, msg):
    cal = ["--calibration", str(device_npz)] if "int8" in args else []
    assert main(["export", str(MODELS / "mlp.onnx"), "-o", str(tmp_path / "p")] + args + cal) == 2
    assert msg in capsys.readouterr().err
