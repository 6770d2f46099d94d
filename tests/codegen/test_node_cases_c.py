"""ONNX's backend node cases (the same list as tests/test_onnx_node_cases.py) through the
generated C: import with batch 1, export for inference, run every sample through tt_infer."""
import numpy as np
import pytest

from tinytrain.errors import ExportError
from tinytrain.frontend import import_onnx
from tinytrain.passes import TrainConfig
from tinytrain.pipeline import export
from tinytrain.sim.host import HostModel

from ..test_onnx_node_cases import LOOSE, PT_RUN, RUN, _compare, _node_case, _pt_case

C_RTOL = 1e-5


def _run_c(tmp_path, model, x):
    g = import_onnx(model, batch=1)
    try:
        res, *_ = export(g, tmp_path / "out", TrainConfig(trainable="none", loss="mse"),
                         command="node case")
    except ExportError as e:  # refused clearly at export: say so rather than compute wrong
        pytest.skip(f"refused by the C exporter: {e}")
    m = HostModel(res.out_dir)
    return np.concatenate([m.infer(x[i:i + 1]) for i in range(x.shape[0])]).astype(np.float64)


@pytest.mark.parametrize("name", RUN)
def test_node_case_in_c(tmp_path, name):
    model, x, outputs = _node_case(name)
    _compare(name, _run_c(tmp_path, model, x), outputs[0], max(LOOSE.get(name, 0), C_RTOL))


@pytest.mark.parametrize("name", PT_RUN)
def test_pytorch_converted_case_in_c(tmp_path, name):
    model, x, outputs = _pt_case(name)
    _compare(name, _run_c(tmp_path, model, x), outputs[0], C_RTOL)
