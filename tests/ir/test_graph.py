import numpy as np
import pytest

from tinytrain.errors import GraphError, ShapeError, UnsupportedOpError
from tinytrain.frontend.builder import GraphBuilder
from tinytrain.ir import Graph, Node, Tensor, TensorRole, get_op, supported_ops


def _mlp():
    b = GraphBuilder()
    x = b.input("x", (1, 4))
    h = b.op("Relu", [b.gemm(x, 8, "fc1")], name="act")
    return b.build(b.gemm(h, 3, "fc2"))


def test_registry_lists_every_op_once():
    ops = supported_ops()
    assert len(ops) == len(set(ops))
    for name in ("Gemm", "Relu", "SoftmaxCrossEntropy", "MSE"):
        assert name in ops


def test_unknown_op_error_lists_supported():
    with pytest.raises(UnsupportedOpError, match="supported: .*Gemm"):
        get_op("Loop")


def test_toposort_is_stable_and_fixes_order():
    g = _mlp()
    shuffled = g.replace(nodes=tuple(reversed(g.nodes)))
    assert [n.name for n in shuffled.toposorted().nodes] == [n.name for n in g.nodes]


def test_cycle_is_reported_with_node_names():
    t = {n: Tensor(n, (1, 4)) for n in ("x", "a", "b")}
    g = Graph(t, (Node("n1", "Relu", ("b",), ("a",)), Node("n2", "Relu", ("a",), ("b",))),
              ("x",), ("b",), {})
    with pytest.raises(GraphError, match="cycle.*'n1'"):
        g.toposorted()


def test_validate_catches_wrong_recorded_shape():
    g = _mlp()
    bad = dict(g.tensors)
    bad["fc2.out"] = bad["fc2.out"].with_(shape=(1, 5))
    with pytest.raises(ShapeError, match="fc2.*recorded"):
        g.replace(tensors=bad).validate()


def test_tensor_bytes_and_roles():
    t = Tensor("w", (3, 4), "f32", TensorRole.PARAM, "weight")
    assert t.nbytes == 48 and t.size == 12
    with pytest.raises(ValueError):
        Tensor("w", (1,), "f64")
