"""100 training steps of every example model through the generated C track the numpy
reference (loss and parameters, relative error <= 1e-4), for each trainable-set option."""
import numpy as np
import pytest

from tinytrain.datasets import make_adaptation_data
from tinytrain.passes import TrainConfig
from tinytrain.pipeline import export
from tinytrain.reference import ReferenceTrainer
from tinytrain.sim.host import HostModel

from ..conftest import MODELS

RTOL = 1e-4


@pytest.fixture(scope="module")
def data():
    return make_adaptation_data(0)


@pytest.mark.parametrize("model", ["mlp", "cnn", "dscnn", "resnet8"])
@pytest.mark.parametrize("trainable", ["all", "last:2", "bias"])
def test_100_steps_track_reference(tmp_path, data, model, trainable):
    cfg = TrainConfig(trainable=trainable, optimizer="momentum", lr=0.01)
    res, program, plan = export(MODELS / f"{model}.onnx", tmp_path / "out", cfg, command="test")
    c = HostModel(res.out_dir)
    ref = ReferenceTrainer(program)
    x, y = data["x_train"], data["y_train"]
    lc, lr = [], []
    for i in range(100):
        lc.append(c.train_step(x[i], y[i:i + 1]))
        lr.append(ref.train_step(x[i:i + 1], y[i:i + 1]))
    np.testing.assert_allclose(lc, lr, rtol=RTOL, atol=1e-6)
    pc = c.params
    for k, v in ref.params.items():
        err = np.linalg.norm(pc[k] - v) / max(np.linalg.norm(v), 1e-12)
        assert err <= RTOL, f"{k}: relative error {err:.2e}"
