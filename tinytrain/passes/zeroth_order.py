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

Sharpness-aware point (zo_sam_rho = rho > 0; SAM, Foret et al. 2021, lagged): the previous
step's zo estimate is the ascent direction, so it costs no extra forward pass. At optimizer
step t > 0 every loss evaluation of step t is taken at w + a_t instead of w:

    s_k = sign(D_k) in {-1, 0, +1}      D_k = sum over the batch of (L+ - L-) of direction k
                                        at step t-1 (tt_fg_dsum[k] at its update)
    m   = number of nonzero s_k         D = number of zo-perturbed parameter values
    c_t = rho / sqrt(m D)               float32: f32(rho) / sqrt(f32(m) * f32(D)), each op
                                        rounded once (C reads it from an export-time table
                                        indexed by m, printed exactly)
    a_t = c_t sum_k s_k z_k(t-1)        z_k(t-1) regenerated from (seed, t-1, k) over the
                                        same parameters; |a_t| ~ rho in L2 (z has unit variance)

Per training sample (per train_step call on the device, per batch in numpy): for k = 0..n-1
with s_k != 0, w += (c s_k) z_k(t-1) (ascent); the n perturbation pairs run exactly as above;
then, for k in the same order, w += (-(c s_k)) z_k(t-1) (remove) before anything else, so the
hybrid backprop pass and the optimizer update see the un-ascended w. c s_k and its negation
are exact float32 values; numpy and C run the same float operations in the same order. As
with perturb/restore, the fp32 ascend/remove round trip is not bit-exact (below one ulp per
cycle). No ascent at t == 0 or when m == 0. A non-finite loss at the ascended point drops the
batch as before, after the ascent is removed (weights untouched).

The signs are recorded at the optimizer update of step t-1 (from the batch-summed differences,
before they are cleared; with the sign estimator s_k is still sign(D_k); momentum works
unchanged) and kept for step t only: storage is n int8 signs plus the uint32 step they belong
to (n + 4 bytes of RAM, plus the n-float table of c in flash), independent of the model size.
They are transient and not in the checkpoint: tt_init, ReferenceTrainer.reset/restore and a
checkpoint load clear them, so the next step runs without ascent. (In C the step tag alone
already voids them after tt_init and after loading any step but tt_zo_sam_step + 1; for that
one tt_init / tt_checkpoint_load run the emit context's zo.sam.reset statement.) A batch
dropped for a non-finite value keeps them (the retried step t still belongs to them).
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


def sam_scale(rho: float, m: int, size: int) -> np.float32:
    """c = rho / sqrt(m D) in float32, each operation rounded once (tt_zo_sam_c[m - 1])."""
    f = np.float32
    return f(f(rho) / np.sqrt(f(m) * f(size)))


def sam_table(rho: float, n: int, size: int) -> list[np.float32]:
    """c for m = 1..n nonzero signs: the table the generated C indexes by m - 1."""
    return [sam_scale(rho, m, size) for m in range(1, n + 1)]


def sam_coefs(signs, rho: float, size: int) -> list[tuple[int, np.float32]]:
    """(k, c s_k) for every nonzero sign, in k order: the ascent a = sum_k (c s_k) z_k; remove
    it with the negated coefficients in the same order. Empty when every sign is 0."""
    m = sum(1 for s in signs if s)
    if m == 0:
        return []
    c = sam_scale(rho, m, size)
    return [(k, c if s > 0 else -c) for k, s in enumerate(signs) if s]
