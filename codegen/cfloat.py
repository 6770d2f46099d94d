"""Exact float literals: '%.9g' round-trips every float32, so weights keep all their bits."""
import math

import numpy as np


def c_float(v) -> str:
    f = float(np.float32(v))
    if math.isnan(f) or math.isinf(f):
        if math.isinf(f):
            return "(-TT_INF)" if f < 0 else "TT_INF"
        raise ValueError("NaN cannot be emitted as a constant")
    s = format(f, ".9g")
    if "e" not in s and "." not in s and "n" not in s:
        s += ".0"
    return s + "f"


def c_float_array(values, per_line: int = 8) -> str:
    flat = np.asarray(values, dtype=np.float32).reshape(-1)
    if flat.size == 0:
        return "0.0f"
    items = [c_float(v) for v in flat]
    lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    return ",\n    ".join(lines)
