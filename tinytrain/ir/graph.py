"""The forward graph: ordered nodes over named tensors, plus initial parameter values.

Nodes are immutable and keep their inputs as ordered tuples so every pass and the emitted C are
reproducible. A Graph is never mutated in place: passes build a new one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from ..errors import GraphError, ShapeError
from .registry import get_op
from .tensor import Tensor, TensorRole


@dataclass(frozen=True)
class Node:
    name: str
    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))


@dataclass(frozen=True)
class Graph:
    tensors: Mapping[str, Tensor]
    nodes: tuple[Node, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    initializers: Mapping[str, np.ndarray]
    name: str = "model"

    # ---- queries -------------------------------------------------------------------------
    def producer(self, tensor: str) -> Node | None:
        for n in self.nodes:
            if tensor in n.outputs:
                return n
        return None

    def consumers(self, tensor: str) -> list[Node]:
        return [n for n in self.nodes if tensor in n.inputs]

    @property
    def params(self) -> list[str]:
        return [t.name for t in self.tensors.values() if t.role is TensorRole.PARAM]

    def param_nodes(self) -> list[Node]:
        """Nodes that own parameters ("layers"), in execution order."""
        ps = set(self.params)
        return [n for n in self.nodes if any(i in ps for i in n.inputs)]

    # ---- construction helpers ----------------------------------------------------------------
    def replace(self, **kw) -> "Graph":
        d = dict(tensors=self.tensors, nodes=self.nodes, inputs=self.inputs,
                 outputs=self.outputs, initializers=self.initializers, name=self.name)
        d.update(kw)
        return Graph(**d)

    def toposorted(self) -> "Graph":
        """Kahn's algorithm, stable: among ready nodes the earliest in the current order runs
        first, so an already-sorted graph is unchanged."""
        produced_by = {}
        for n in self.nodes:
            for o in n.outputs:
                if o in produced_by:
                    raise GraphError(f"tensor {o!r} is produced by two nodes: "
                                     f"{produced_by[o].name!r} and {n.name!r}")
                produced_by[o] = n
        done: set[str] = set()
        order: list[Node] = []
        pending = list(self.nodes)
        available = set(self.inputs) | set(self.initializers) | {
            t.name for t in self.tensors.values() if t.role in (TensorRole.PARAM, TensorRole.CONST, TensorRole.LABEL)}
        while pending:
            for idx, n in enumerate(pending):
                if all(i in available or i == "" for i in n.inputs):
                    order.append(n)
                    available.update(n.outputs)
                    done.add(n.name)
                    del pending[idx]
                    break
            else:
                missing = {i for n in pending for i in n.inputs if i not in available}
                cyclic = sorted(i for i in missing if i in produced_by)
                if cyclic:
                    names = ", ".join(f"{n.name!r} ({n.op})" for n in pending[:6])
                    raise GraphError(
                        f"the graph has a cycle: nodes {names} each wait for an output of "
                        f"another (tensors {', '.join(map(repr, cyclic[:6]))}). tinytrain "
                        "trains feed-forward graphs only (no loops or recurrent edges).")
                n = next(n for n in pending if any(i in missing for i in n.inputs))
                bad = next(i for i in n.inputs if i in missing)
                raise GraphError(f"node {n.name!r} ({n.op}) reads tensor {bad!r}, which no node "
                                 "produces and which is neither a graph input nor an initializer.")
        return self.replace(nodes=tuple(order))

    def validate(self) -> "Graph":
        """Check names, topological order, and that every node's shape rule agrees with the
        recorded output shapes. Returns self so it can end a pass."""
        seen = set(self.inputs) | set(self.initializers) | {
            t.name for t in self.tensors.values() if t.role in (TensorRole.PARAM, TensorRole.CONST, TensorRole.LABEL)}
        names = set()
        for n in self.nodes:
            if n.name in names:
                raise GraphError(f"two nodes are named {n.name!r}")
            names.add(n.name)
            op = get_op(n.op)
            for i in n.inputs:
                if i not in self.tensors:
                    raise GraphError(f"node {n.name!r} ({n.op}) reads unknown tensor {i!r}")
                if i not in seen:
                    raise GraphError(f"node {n.name!r} ({n.op}) reads {i!r} before it is produced")
            shapes = [self.tensors[i].shape for i in n.inputs]
            try:
                out = op.shape(shapes, n.attrs)
            except ShapeError as e:
                raise ShapeError(f"node {n.name!r} ({n.op}): {e}") from None
            rec = self.tensors[n.outputs[0]].shape
            if tuple(out) != tuple(rec):
                raise ShapeError(f"node {n.name!r} ({n.op}): output {n.outputs[0]!r} is recorded "
                                 f"as {rec} but the inputs {shapes} give {tuple(out)}")
            seen.update(n.outputs)
        for o in self.outputs:
            if o not in seen:
                raise GraphError(f"graph output {o!r} is never produced")
        for p, v in self.initializers.items():
            t = self.tensors.get(p)
            if t is None or tuple(v.shape) != t.shape:
                raise ShapeError(f"initializer {p!r} has shape {v.shape}, tensor says "
                                 f"{None if t is None else t.shape}")
        return self
