"""Small bundled datasets for examples and tests (numpy + scikit-learn only).

The "last mile" scenario
------------------------
A model is pretrained offline on clean data, then deployed to a device whose
sensor sees the world slightly differently (a *domain shift*).  The device
collects a small labelled adaptation set and fine-tunes on-device.  This module
provides the data for that scenario, built from scikit-learn's bundled
``digits`` dataset (1797 8x8 grayscale images, 10 classes; no download).

Sample layout is NCHW float32 ``(N, 1, 8, 8)`` with values in ``[0, 1]``;
labels are int64 class indices ``0..9``.

npz format
----------
Datasets are exchanged as plain numpy ``.npz`` archives (see :func:`save_npz`,
:func:`load_npz`) with these keys:

``x_train``  float32, shape ``(N, *sample_shape)``  (required)
``y_train``  int64,   shape ``(N,)``                (required, class indices)
``x_test``   float32, shape ``(M, *sample_shape)``  (optional)
``y_test``   int64,   shape ``(M,)``                (optional; only with ``x_test``)

``sample_shape`` is the model input shape without the batch dimension, e.g.
``(1, 8, 8)`` for the digits models.  Extra keys are allowed and ignored by
consumers that do not know them.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "load_digits_split",
    "device_params",
    "shift_digits",
    "make_adaptation_data",
    "save_npz",
    "load_npz",
]

_IMG = 8  # digits images are 8x8


def load_digits_split(seed: int = 0):
    """Clean digits, fixed stratified 70/30 split.

    Returns ``(x_train, y_train, x_test, y_test)`` with ``x`` float32 of shape
    ``(N, 1, 8, 8)`` scaled to ``[0, 1]`` (raw pixel values are 0..16) and
    ``y`` int64.  The split is deterministic for a given ``seed``
    (1257 train / 540 test samples).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images.astype(np.float32) / np.float32(16.0)).reshape(-1, 1, _IMG, _IMG)
    y = d.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=0.3, stratify=y, random_state=seed, shuffle=True
    )
    return (np.ascontiguousarray(x_tr), np.ascontiguousarray(y_tr),
            np.ascontiguousarray(x_te), np.ascontiguousarray(y_te))


def device_params(seed: int = 0) -> dict:
    """The fixed sensor properties of device ``seed`` (see :func:`shift_digits`).

    Drawn once from ``seed`` with magnitudes kept in a narrow band so every
    device is "similarly bad":

    * ``angle_deg``: rotation, ``+-[10, 14]`` degrees (random sign)
    * ``shear``: horizontal shear factor, ``+-[0.10, 0.20]`` (random sign)
    * ``shift_px``: (dy, dx) sub-pixel translation, each ``+-[0.3, 0.6]`` px
    * ``gain``: contrast gain, ``[0.60, 0.70]``
    * ``offset``: dark level / black offset, ``[0.15, 0.22]``
    * ``noise_std``: per-sample gaussian read noise std, ``0.05``
    """
    rng = np.random.default_rng([int(seed), 0x5E5])

    def signed(lo, hi):
        return float(rng.choice([-1.0, 1.0]) * rng.uniform(lo, hi))

    return {
        "angle_deg": signed(10.0, 14.0),
        "shear": signed(0.10, 0.20),
        "shift_px": (signed(0.3, 0.6), signed(0.3, 0.6)),
        "gain": float(rng.uniform(0.60, 0.70)),
        "offset": float(rng.uniform(0.15, 0.22)),
        "noise_std": 0.05,
    }


def _affine_bilinear(x: np.ndarray, mat: np.ndarray, shift) -> np.ndarray:
    """Warp images ``x[..., H, W]`` by ``out(p) = in(mat^-1 (p - c - shift) + c)``.

    ``p`` are (row, col) pixel-centre coordinates, ``c`` the image centre.
    Bilinear interpolation, zero (background) outside the image.
    """
    h, w = x.shape[-2:]
    c = np.array([(h - 1) / 2.0, (w - 1) / 2.0])
    rr, cc = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64),
                         indexing="ij")
    dst = np.stack([rr.ravel(), cc.ravel()])                      # (2, H*W)
    src = np.linalg.inv(mat) @ (dst - c[:, None] - np.asarray(shift, float)[:, None]) + c[:, None]
    sy, sx = src
    y0 = np.floor(sy).astype(np.int64)
    x0 = np.floor(sx).astype(np.int64)
    fy = sy - y0
    fx = sx - x0
    pad = 2
    xp = np.pad(x.astype(np.float64), [(0, 0)] * (x.ndim - 2) + [(pad, pad), (pad, pad)])

    def at(yy, xx):  # out-of-range indices land in the zero padding
        yy = np.clip(yy + pad, 0, h + 2 * pad - 1)
        xx = np.clip(xx + pad, 0, w + 2 * pad - 1)
        return xp[..., yy, xx]

    out = (at(y0, x0) * (1 - fy) * (1 - fx) + at(y0, x0 + 1) * (1 - fy) * fx
           + at(y0 + 1, x0) * fy * (1 - fx) + at(y0 + 1, x0 + 1) * fy * fx)
    return out.reshape(x.shape)


def shift_digits(x: np.ndarray, seed: int = 0, *, noise_seed=None) -> np.ndarray:
    """Apply the "device sensor" domain shift of device ``seed`` to clean digits.

    ``x``: float array ``(..., 8, 8)`` in ``[0, 1]`` (e.g. ``(N, 1, 8, 8)``).
    Returns a float32 array of the same shape, in ``[0, 1]``.

    The transform models a badly mounted, badly calibrated camera.  With
    ``p = device_params(seed)`` it is, in order:

    1. **Geometry (fixed per device):** the lens/mounting error.  Each image is
       warped by the affine map ``R(angle_deg) @ [[1, 0], [shear, 1]]`` about the
       image centre (rows are y, columns are x: the shear slants columns
       horizontally), followed by a sub-pixel translation ``shift_px`` (dy, dx).
       Resampling is bilinear (pure numpy), background (0) outside the frame.
    2. **Photometry (fixed per device):** ``v = gain * v + offset`` -- a
       washed-out, low-contrast sensor with a raised black level.
    3. **Read noise (per sample):** i.i.d. gaussian, std ``noise_std``, added
       per pixel.  Drawn from ``noise_seed`` (default: derived from ``seed``);
       use different noise seeds for different sample sets of the same device.
    4. Clip to ``[0, 1]`` (the sensor's ADC range).

    Steps 1-2 are the same for every sample of a device, so the shift is
    learnable from a few hundred labelled samples; step 3 differs per sample.
    Deterministic for a given ``(seed, noise_seed)``.
    """
    p = device_params(seed)
    x = np.asarray(x, dtype=np.float32)
    a = np.deg2rad(p["angle_deg"])
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    shear = np.array([[1.0, 0.0], [p["shear"], 1.0]])
    out = _affine_bilinear(x, rot @ shear, p["shift_px"])
    out = p["gain"] * out + p["offset"]
    nrng = np.random.default_rng([int(seed), 0x401, 0 if noise_seed is None else 1,
                                  0 if noise_seed is None else int(noise_seed)])
    out = out + nrng.normal(0.0, p["noise_std"], size=out.shape)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def make_adaptation_data(seed: int = 0, n_adapt: int = 300) -> dict:
    """The on-device adaptation scenario for device ``seed``.

    Returns a dict of numpy arrays:

    ``x_train, y_train``  ``n_adapt`` (default 300, stratified: 30 per class)
                          samples of the clean *train* split, passed through
                          the device shift -- the small labelled set the
                          device collects and fine-tunes on.
    ``x_test, y_test``    the whole clean *test* split (540) through the same
                          device shift (different noise draws) -- the
                          deployment accuracy.
    ``x_clean_test, y_clean_test``  the unshifted test split (to check how
                          much clean accuracy is kept/forgotten).

    The clean split is always ``load_digits_split(0)`` (the split the bundled
    models were pretrained on), so adaptation samples never overlap the test
    set; ``seed`` selects the device and the adaptation subset.
    """
    x_tr, y_tr, x_te, y_te = load_digits_split(0)
    rng = np.random.default_rng([int(seed), 0xADA])
    classes = np.unique(y_tr)
    per = n_adapt // len(classes)
    idx = []
    for k in classes:
        idx.append(rng.choice(np.flatnonzero(y_tr == k), size=per, replace=False))
    rest = n_adapt - per * len(classes)
    if rest:
        remaining = np.setdiff1d(np.arange(len(y_tr)), np.concatenate(idx))
        idx.append(rng.choice(remaining, size=rest, replace=False))
    idx = rng.permutation(np.concatenate(idx))
    return {
        "x_train": shift_digits(x_tr[idx], seed, noise_seed=1),
        "y_train": y_tr[idx].astype(np.int64),
        "x_test": shift_digits(x_te, seed, noise_seed=2),
        "y_test": y_te.astype(np.int64),
        "x_clean_test": x_te,
        "y_clean_test": y_te.astype(np.int64),
    }


def _check(arrays: dict) -> dict:
    if "x_train" not in arrays or "y_train" not in arrays:
        raise ValueError("npz dataset needs at least 'x_train' and 'y_train'")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise ValueError("'x_test' and 'y_test' must be given together")
    out = dict(arrays)
    for split in ("train", "test"):
        if f"x_{split}" not in arrays:
            continue
        x = np.asarray(arrays[f"x_{split}"])
        y = np.asarray(arrays[f"y_{split}"])
        if x.ndim < 2:
            raise ValueError(f"x_{split} must be (N, *sample_shape), got shape {x.shape}")
        if y.shape != (x.shape[0],):
            raise ValueError(f"y_{split} must have shape ({x.shape[0]},), got {y.shape}")
        if not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"y_{split} must hold integer class indices, got {y.dtype}")
        out[f"x_{split}"] = np.ascontiguousarray(x, dtype=np.float32)
        out[f"y_{split}"] = y.astype(np.int64)
    if "x_test" in out and out["x_test"].shape[1:] != out["x_train"].shape[1:]:
        raise ValueError("x_train and x_test sample shapes differ: "
                         f"{out['x_train'].shape[1:]} vs {out['x_test'].shape[1:]}")
    return out


def save_npz(path, **arrays) -> None:
    """Write a dataset in the npz format described in the module docstring.

    ``x_*`` are cast to float32 and ``y_*`` to int64; shapes are validated.
    Extra keyword arrays are stored unchanged.
    """
    np.savez(path, **_check(arrays))


def read_npz(path) -> dict:
    """Every array of an npz file; a missing or unreadable file is a TinytrainError that says
    what is wrong (no traceback from zipfile)."""
    from pathlib import Path

    from .errors import TinytrainError
    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise TinytrainError(f"data file {p} does not exist") from None
    except Exception as e:  # zipfile / format errors
        raise TinytrainError(f"cannot read data file {p}: {e}. It must be a .npz with arrays "
                             "x_train, y_train (and optionally x_test, y_test).") from None


def load_npz(path) -> dict:
    """Read and validate a classification npz dataset; returns a dict of arrays."""
    return _check(read_npz(path))
