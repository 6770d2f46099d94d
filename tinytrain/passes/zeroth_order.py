"""Zeroth-order forward-gradient training (SPSA), numpy twin of the generated C.

Per optimizer step t and perturbation k = 0..n-1, z_k is regenerated from the shared PRNG
(PCG32 seeded with (seed, stream_id(t, k))), walking the trainable parameters in order:

    w += eps z_k;  L+ = loss      w -= 2 eps z_k;  L- = loss      w += eps z_k   (restore)
    d_k = (L+ - L-) / (2 eps)                      (magnitude SPSA)
    d_k = sign(L+ - L-)                            (sign-SPSA)
    g   = sum_k d_k z_k / n                        never stored: applied per k as w -= lr d_k/n z_k
                                                   (momentum: v = mu v + g; w -= lr v)

L+ and L- are batch means, accumulated sample by sample on the device. Only forward passes
run, so the arena is the inference arena; z costs no memory. In fp32 the perturb/restore
round trip is not bit-exact (each add rounds): the drift is below one ulp per cycle, far under
the update itself; the fixed-point formats restore exactly.
"""
from __future__ import annotations

import numpy as np

from ..numerics.prng import Pcg32, stream_id

RADEMACHER, GAUSS = 0, 1
DISTS = {"rademacher": RADEMACHER, "gaussian": GAUSS}
GAUSS_SCALE = np.float32(1 / np.sqrt(21845))


def eps_halvings(cfg, step: int) -> int:
    """How many times eps has halved at optimizer step `step` (the eps schedule)."""
    n = int(cfg.zo_eps_halve_every)
    return min(int(step) // n, int(cfg.zo_eps_halvings)) if n > 0 else 0


def eps_at(cfg, step: int) -> np.float32:
    """float32 eps of optimizer step `step`: zo_eps * 2^-h, exact (what tt_zo_eps_at computes)."""
    return np.float32(np.float32(cfg.zo_eps) * np.float32(2.0 ** -eps_halvings(cfg, step)))


def zo_axpy(y: np.ndarray, a: float, gen: Pcg32, dist: int) -> None:
    """y += a * z in place, z drawn from gen exactly as tt_zo_axpy_f32 draws it."""
    flat = y.reshape(-1)
    a = np.float32(a)
    if dist == RADEMACHER:
        z = gen.rademacher(flat.size)
        flat += np.where(z < 0, -a, a).astype(np.float32)
    else:
        z = gen.gauss(flat.size).astype(np.float32) * GAUSS_SCALE
        flat += a * z


def perturb(weights: dict, names, seed: int, step: int, k: int, a: float, dist: int) -> None:
    gen = Pcg32(seed, stream_id(step, k))
    for p in names:
        zo_axpy(weights[p], a, gen, dist)
