"""Quantization: calibrate activation ranges on sample data and choose symmetric scales.

Scales are host-side numbers (float64 here, float32 where they reach the device as dequant
tables); the device only ever sees the integer multipliers and shifts derived from them by the
fixed-point lowering (passes/lower_fixed.py).

Rules (docs/fixed-point.md, "Quantizing a model"):
- activations: one scale per tensor, ``range / qmax`` with range = max|x| over the calibration
  samples ("minmax") or the given percentile of |x| ("percentile", clips rare outliers). A tensor
  whose every consumer is a ReLU is calibrated on its positive side only: its negative values
  are zeroed anyway, so the whole integer range goes to the values that survive.
- weights: per output channel (``max|W[c]| / qmax``) where the integer backward pass does not
  need one common scale, i.e. for layers whose input gradient is not computed (the frozen
  feature extractor and the first trainable layer); per tensor for layers that pass gradients
  back (the integer bwd_x sums gy[j] * W[j][k] over output channels j, which is only a real
  dot product when every channel shares one scale).
- biases: int32 (int8 models) / int64 (int16 models) at scale s_x * s_w[c].
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

CALIBRATIONS = ("minmax", "percentile")
ROUNDINGS = ("stochastic", "nearest")


@dataclass(frozen=True)
class QuantConfig:
    bits: int = 8                     # 8: int8 storage / int32 accumulators; 16: int16 / int64
    calibration: str = "minmax"
    percentile: float = 99.99
    per_channel: bool = True          # where the backward pass allows it (see module doc)
    rounding: str = "stochastic"      # weight updates: stochastic (unbiased) or nearest
    # Trainable weights may grow during training: their scale covers headroom * max|W| so they
    # do not saturate at once (1.0 = no headroom). Saturations are counted either way.
    trainable_headroom: float = 1.0
    # 16-bit trainable weights: their scale covers this many times max|W| (2 of 15 bits), so
    # they can grow during training without saturating (8-bit ones use trainable_headroom)
    wide_headroom: float = 4.0
    # Activations downstream of a trainable parameter grow while the model adapts (measured:
    # a conv output 3.3 -> 5.5, logits 3.3 -> 14 in 8 epochs): their scales cover this many
    # times the calibrated range — 2x (1 bit) for int8, 8x (3 of 15 bits) for int16. The
    # logits get at least logits_headroom.
    act_headroom_8: float = 2.0
    act_headroom_16: float = 8.0
    logits_headroom: float = 4.0

    calibration_samples: int = 512
    # zo (SPSA) and jvp with 8-bit activations: bits of the trained weights. 16 = the 16w8a
    # format (int16 weights, int8 activations, mixed kernels), the default: an 8-bit weight
    # cannot hold a perturbation or an update below one LSB. 8 = 8w8a (warned about).
    zo_weight_bits: int = 16
    # Keep a ReLU output for the backward pass as a 1-bit mask (y > 0) where nothing else in
    # the backward pass reads it: exact, 1 bit instead of 8 / 16 per element.
    relu_mask: bool = False
    # Per-layer precision: ((node name, 8 | 16), ...) for Gemm / Conv layers whose weights and
    # output are stored at other than `bits`; tensors crossing between widths are copied by
    # tt_act_convert_q (and their gradients converted back).
    layer_bits: tuple = ()
    # Few-Bit Backward (Novikov et al. 2022): keep a Sigmoid / Tanh output for the backward
    # pass as a k-bit code of the input's interval (1..4; 0 = keep the output itself); the
    # derivative becomes piecewise constant (numerics/qact.py: RMS error halves per bit).
    fewbit_codes: int = 0

    def act_headroom(self, bits: int | None = None) -> float:
        return self.act_headroom_8 if (bits or self.bits) == 8 else self.act_headroom_16

    def __post_init__(self):
        if self.bits not in (8, 16):
            raise ConfigError(f"fixed-point storage must be 8 or 16 bits, got {self.bits}")
        if self.calibration not in CALIBRATIONS:
            raise ConfigError(f"unknown calibration {self.calibration!r}; choose "
                              f"{' or '.join(CALIBRATIONS)}")
        if not 50.0 < float(self.percentile) <= 100.0:
            raise ConfigError(f"calibration percentile must be in (50, 100], got {self.percentile}")
        if self.rounding not in ROUNDINGS:
            raise ConfigError(f"unknown rounding {self.rounding!r}; choose "
                              f"{' or '.join(ROUNDINGS)}")
        if self.zo_weight_bits not in (8, 16):
            raise ConfigError(f"zo weight bits must be 8 or 16, got {self.zo_weight_bits}")
        for item in self.layer_bits:
            if len(item) != 2 or item[1] not in (8, 16):
                raise ConfigError(f"per-layer precision must be (layer, 8 | 16) pairs, got "
                                  f"{item!r}")
        if self.fewbit_codes not in (0, 1, 2, 3, 4):
            raise ConfigError(f"few-bit backward codes take 1..4 bits (0 = off), got "
                              f"{self.fewbit_codes}")
        if not self.trainable_headroom >= 1.0:
            raise ConfigError(f"trainable_headroom must be >= 1, got {self.trainable_headroom}")

    @property
    def qmax(self) -> int:
        return (1 << (self.bits - 1)) - 1

    @property
    def precision(self) -> str:
        return f"int{self.bits}"


def relu_only(graph, tensor: str) -> bool:
    cons = graph.consumers(tensor)
    return bool(cons) and all(n.op == "Relu" for n in cons) and tensor not in graph.outputs


def calibrate(graph, samples, qcfg: QuantConfig) -> dict[str, float]:
    """Range of every activation tensor (incl. the graph input) over the samples, as the
    float reference computes them: {tensor: range >= 0}."""
    from ..reference import run_forward
    x = np.asarray(samples, np.float32)
    in_shape = tuple(graph.tensors[graph.inputs[0]].shape[1:])
    if x.ndim == len(in_shape):
        x = x[None]
    if tuple(x.shape[1:]) != in_shape:
        raise ConfigError(f"calibration samples must have shape (N, {', '.join(map(str, in_shape))}),"
                          f" got {x.shape}")
    if x.shape[0] == 0:
        raise ConfigError("calibration needs at least one sample")
    if not np.all(np.isfinite(x)):
        raise ConfigError("calibration samples contain NaN or Inf")
    x = x[: qcfg.calibration_samples]
    names = [graph.inputs[0]] + [o for n in graph.nodes for o in n.outputs]
    values: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for i in range(0, x.shape[0], 128):
        env = run_forward(graph, {graph.inputs[0]: x[i:i + 128]}, keep_all=True)
        for n in names:
            v = np.asarray(env[n], np.float64)
            values[n].append(np.maximum(v, 0.0) if relu_only(graph, n) else np.abs(v))
    out = {}
    for n, parts in values.items():
        a = np.concatenate([p.reshape(-1) for p in parts])
        if qcfg.calibration == "minmax" or a.size == 0:
            out[n] = float(a.max()) if a.size else 0.0
        else:
            out[n] = float(np.percentile(a, qcfg.percentile))
    return out


def activation_scale(rng: float, qcfg: QuantConfig) -> float:
    return (rng if rng > 0 else 1.0) / qcfg.qmax


def weight_scales(w: np.ndarray, per_channel: bool, headroom: float, qcfg: QuantConfig):
    """Per output channel (dim 0) scales, float64 [C]; one repeated value when per tensor."""
    w = np.asarray(w, np.float64)
    c = w.shape[0]
    m = np.abs(w.reshape(c, -1)).max(axis=1) if w.size else np.zeros(c)
    if not per_channel:
        m = np.full(c, m.max() if m.size else 0.0)
    fallback = m.max() if m.size and m.max() > 0 else 1.0
    m = np.where(m > 0, m, fallback)
    return m * headroom / qcfg.qmax


def quantize_values(v: np.ndarray, scales: np.ndarray, bits: int, symmetric_max: bool = True):
    """round-half-even(v / s[c]) clamped; per channel along dim 0."""
    v = np.asarray(v, np.float64)
    c = v.shape[0] if v.ndim else 1
    s = np.asarray(scales, np.float64).reshape((c,) + (1,) * max(v.ndim - 1, 0))
    q = np.rint(v / s)
    hi = (1 << (bits - 1)) - 1
    lo = -hi if symmetric_max else -hi - 1
    return np.clip(q, lo, hi).astype(np.int64)
