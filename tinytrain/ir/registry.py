"""The op registry: every op is defined once, here-registered from its module in tinytrain/ops.

An OpDef carries everything each stage needs, so adding an op means writing one module
(see docs/adding-an-op.md):

- ``shape(in_shapes, attrs) -> out_shape``  shape rule (raise ShapeError with a readable reason)
- ``forward(xs, attrs) -> y``               numpy reference, batch-generic (leading dim = batch)
- ``vjp(wrt, gy, xs, y, attrs, x_shapes) -> gx``  reverse-mode rule for input ``wrt``. Only the
  inputs listed in ``vjp_needs[wrt]`` are given (others are None) so the memory planner knows
  exactly which activations a backward pass keeps alive; ``OUT`` in that list means the op's
  output ``y`` is needed.
- ``jvp(xs, txs, y, attrs) -> ty``          forward-mode tangent; ``txs[i]`` is None for inputs
  that carry no tangent.
- ``macs(in_shapes, out_shape, attrs)``     forward multiply-accumulates (cost tables)
- ``vjp_macs(wrt, in_shapes, out_shape, attrs)`` backward cost of one VJP

The C calls for each op and pass live in the code generator's kernel table (codegen/kernels.py),
keyed by op name, so this package stays numpy-only. ``x_shapes`` holds the actual runtime
shapes (real batch). ``jvp`` is called only when at least one input carries a tangent.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from ..errors import UnsupportedOpError

OUT = -1


@dataclass(frozen=True)
class OpDef:
    name: str
    shape: Callable
    forward: Callable
    vjp: Callable
    vjp_needs: Mapping[int, tuple[int, ...]]
    jvp: Callable
    macs: Callable
    differentiable: tuple[int, ...]
    doc: str = ""
    # Output may reuse input 0's buffer when input 0 dies at this op (elementwise ops).
    inplace: bool = False
    vjp_macs: Callable | None = None
    # Parameter input positions and their kinds, e.g. {1: "weight", 2: "bias"}.
    param_inputs: Mapping[int, str] = field(default_factory=dict)

    def backward_macs(self, wrt, in_shapes, out_shape, attrs) -> int:
        if self.vjp_macs is not None:
            return int(self.vjp_macs(wrt, in_shapes, out_shape, attrs))
        return int(self.macs(in_shapes, out_shape, attrs))


_REGISTRY: dict[str, OpDef] = {}


def register_op(op: OpDef) -> OpDef:
    if op.name in _REGISTRY:
        raise RuntimeError(f"op {op.name!r} registered twice")
    _REGISTRY[op.name] = op
    return op


def get_op(name: str) -> OpDef:
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnsupportedOpError(
            f"op {name!r} is not in tinytrain's op registry; supported: "
            f"{', '.join(supported_ops())}") from None


def supported_ops() -> list[str]:
    _ensure_loaded()
    return sorted(_REGISTRY)


def _ensure_loaded():
    # Importing the package registers every op module exactly once.
    from .. import ops  # noqa: F401
