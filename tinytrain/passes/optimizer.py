"""Optimizers and learning-rate schedules, specified once for the numpy reference; the C
kernels (tt_*_upd_f32) implement the same formulas in the same order.

Update rules (torch.optim semantics, L2 weight decay added to the gradient):
  sgd       w -= lr * (g + wd*w)
  momentum  v = mu*v + (g + wd*w);  w -= lr*v
  adam      g' = g + wd*w; m = b1*m + (1-b1)*g'; v = b2*v + (1-b2)*g'^2;
            w -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)
Every update zeroes the gradient afterwards: gradients accumulate over the samples of a batch.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError

OPTIMIZERS = {"sgd": (), "momentum": ("mom",), "adam": ("m", "v")}
SCHEDULES = ("constant", "cosine", "step")


def state_names(optimizer: str) -> tuple[str, ...]:
    try:
        return OPTIMIZERS[optimizer]
    except KeyError:
        raise ConfigError(f"unknown optimizer {optimizer!r}; choose one of "
                          f"{', '.join(OPTIMIZERS)}") from None


def lr_at(cfg, t: int, dtype=np.float32) -> float:
    """Learning rate for optimizer step t (0-based), computed in `dtype` the way the C code
    computes it in float (step decay by repeated multiplication)."""
    f = np.dtype(dtype).type
    lr = f(cfg.lr)
    if cfg.schedule == "constant":
        return float(lr)
    if cfg.schedule == "cosine":
        total = max(int(cfg.total_steps), 1)
        frac = f(min(t, total)) / f(total)
        return float(f(0.5) * lr * (f(1) + f(math.cos(math.pi * frac))))
    if cfg.schedule == "step":
        for _ in range(t // max(int(cfg.step_size), 1)):
            lr = lr * f(cfg.gamma)
        return float(lr)
    raise ConfigError(f"unknown learning-rate schedule {cfg.schedule!r}; choose one of "
                      f"{', '.join(SCHEDULES)}")


def apply_update(optimizer: str, cfg, w: np.ndarray, g: np.ndarray, state: list[np.ndarray],
                 t: int) -> None:
    """In-place update of w (and state), then g is zeroed. t is the 0-based step index."""
    f = w.dtype.type
    lr, wd = f(lr_at(cfg, t, w.dtype)), f(cfg.weight_decay)
    gg = g + wd * w if cfg.weight_decay else g
    if optimizer == "sgd":
        w -= lr * gg
    elif optimizer == "momentum":
        (v,) = state
        v *= f(cfg.momentum)
        v += gg
        w -= lr * v
    elif optimizer == "adam":
        m, v = state
        b1, b2 = f(cfg.beta1), f(cfg.beta2)
        m *= b1
        m += (f(1) - b1) * gg
        v *= b2
        v += (f(1) - b2) * gg * gg
        step = t + 1
        mhat = m / (f(1) - b1 ** step)
        vhat = v / (f(1) - b2 ** step)
        w -= lr * mhat / (np.sqrt(vhat) + f(cfg.eps))
    else:
        state_names(optimizer)
    g[...] = 0
