"""Every example model's generated C is warning-free (-pedantic) and clean under ASan + UBSan."""
import pytest

from tinytrain.passes import TrainConfig
from tinytrain.pipeline import export
from tinytrain.sim.host import run_sanitized

from ..conftest import MODELS


@pytest.mark.parametrize("model", ["mlp", "cnn", "dscnn", "resnet8"])
@pytest.mark.parametrize("trainable,opt", [("all", "adam"), ("last:1", "momentum"), ("bias", "sgd")])
def test_asan_ubsan_clean(tmp_path, model, trainable, opt):
    res, *_ = export(MODELS / f"{model}.onnx", tmp_path / "out",
                     TrainConfig(trainable=trainable, optimizer=opt, batch=2), command="test")
    out = run_sanitized(res.out_dir, steps=6)
    assert out.startswith("ok 6 steps")
