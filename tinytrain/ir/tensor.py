"""Typed tensors of the IR."""
from __future__ import annotations

import enum
from dataclasses import dataclass, replace

import numpy as np


class TensorRole(enum.Enum):
    INPUT = "input"
    LABEL = "label"
    PARAM = "param"
    # Non-trainable constant (e.g. a folded scale): lives in flash, never gets a gradient.
    CONST = "const"
    ACTIVATION = "activation"
    GRADIENT = "gradient"
    OPT_STATE = "opt_state"
    LOSS = "loss"


# Storage formats a tensor can have. Arithmetic format is derived from it by each pass.
DTYPES = ("f32", "f16", "i8", "i16", "i32", "i64", "u8")
_NP = {"f32": np.float32, "f16": np.float16, "i8": np.int8, "i16": np.int16, "i32": np.int32,
       "i64": np.int64, "u8": np.uint8}


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: str = "f32"
    role: TensorRole = TensorRole.ACTIVATION
    # For params: "weight" or "bias" (decides the `bias` trainable set and quantization rules).
    param_kind: str | None = None

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ValueError(f"tensor {self.name!r}: unknown dtype {self.dtype!r}")
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def itemsize(self) -> int:
        return np.dtype(_NP[self.dtype]).itemsize

    @property
    def nbytes(self) -> int:
        return self.size * self.itemsize

    def with_(self, **kw) -> "Tensor":
        return replace(self, **kw)
