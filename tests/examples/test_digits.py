"""Training works on real data (scikit-learn digits, bundled with the package)."""
import numpy as np
import pytest

from tinytrain.datasets import load_digits_split, make_adaptation_data
from tinytrain.frontend.builder import GraphBuilder
from tinytrain.passes import TrainConfig, build_training_program
from tinytrain.reference import ReferenceTrainer
from tinytrain.trainloop import accuracy, fit

from ..conftest import MODELS


def test_reference_trains_mlp_from_scratch_to_96_percent():
    xtr, ytr, xte, yte = load_digits_split(0)
    b = GraphBuilder(seed=0)
    x = b.input("x", (1, 1, 8, 8))
    f = b.op("Reshape", [x], {"shape": (64,)}, name="flatten")
    h = b.op("Relu", [b.gemm(f, 32, "fc1")], name="relu")
    g = b.build(b.gemm(h, 10, "fc2"))
    tr = ReferenceTrainer(build_training_program(g, TrainConfig(optimizer="momentum", lr=0.05,
                                                               batch=16)))
    h = fit(tr, {"x_train": xtr, "y_train": ytr, "x_test": xte, "y_test": yte}, epochs=30,
            batch=16, seed=0)
    assert h.test_acc[-1] >= 0.96, h.test_acc


def test_adaptation_recovers_shifted_accuracy():
    from tinytrain.pipeline import load_model
    data = make_adaptation_data(0)
    g = load_model(MODELS / "mlp.onnx")
    tr = ReferenceTrainer(build_training_program(g, TrainConfig(lr=0.05)))
    before = accuracy(tr, data["x_test"], data["y_test"])
    fit(tr, data, epochs=8, batch=1, seed=0)
    after = accuracy(tr, data["x_test"], data["y_test"])
    assert before < 0.80 and after >= before + 0.10, (before, after)
