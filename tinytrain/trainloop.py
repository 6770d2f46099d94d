"""One training loop for every executor (numpy reference, host-compiled C, emulated board):
anything with ``infer(x)`` and ``train_step(x, y) -> loss`` trains here."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import NumericFaultError


@dataclass
class History:
    epoch_loss: list = field(default_factory=list)
    step_loss: list = field(default_factory=list)
    train_acc: list = field(default_factory=list)
    test_acc: list = field(default_factory=list)
    stopped: str | None = None


def accuracy(model, x, y, chunk: int = 256) -> float:
    if x is None or len(x) == 0:
        return float("nan")
    pred = np.concatenate([np.asarray(model.infer(x[i:i + chunk])).reshape(len(x[i:i + chunk]), -1)
                           .argmax(axis=1) for i in range(0, len(x), chunk)])
    return float((pred == np.asarray(y).reshape(-1)).mean())


def fit(model, data: dict, *, epochs: int, batch: int, seed: int = 0, classify: bool = True,
        progress=None, on_epoch=None) -> History:
    """Train for `epochs` passes over data["x_train"], minibatches of `batch` samples (the
    last partial batch is dropped so every optimizer step sees `batch` samples, as on the
    device). Stops cleanly on a numeric fault, keeping the last good weights."""
    x, y = data["x_train"], data["y_train"]
    xt, yt = data.get("x_test"), data.get("y_test")
    rng = np.random.default_rng(seed)
    h = History()
    nb = len(x) // batch
    task = progress.add_task("training", total=epochs * nb) if progress is not None else None
    for ep in range(epochs):
        order = rng.permutation(len(x))
        losses = []
        try:
            for b in range(nb):
                idx = order[b * batch:(b + 1) * batch]
                losses.append(model.train_step(x[idx], y[idx]))
                if task is not None:
                    progress.update(task, advance=1)
        except NumericFaultError as e:
            h.stopped = str(e)
            break
        finally:
            h.step_loss += losses
        h.epoch_loss.append(float(np.mean(losses)) if losses else float("nan"))
        if classify:
            h.train_acc.append(accuracy(model, x, y))
            h.test_acc.append(accuracy(model, xt, yt) if xt is not None else float("nan"))
        if on_epoch is not None:
            on_epoch(ep, h)
    return h


def plot_history(h: History, path, title: str = "training loss"):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 2 if h.test_acc else 1, figsize=(10 if h.test_acc else 6, 4))
    ax = np.atleast_1d(ax)
    steps = np.arange(1, len(h.step_loss) + 1)
    ax[0].plot(steps, h.step_loss, lw=0.6, alpha=0.4, label="per step")
    if len(h.step_loss) > 10:
        k = max(len(h.step_loss) // 50, 2)
        sm = np.convolve(h.step_loss, np.ones(k) / k, mode="valid")
        ax[0].plot(steps[k - 1:], sm, lw=1.5, label=f"mean of {k}")
    ax[0].set_xlabel("optimizer step")
    ax[0].set_ylabel("loss")
    ax[0].set_title(title)
    ax[0].legend()
    if h.test_acc:
        ep = np.arange(1, len(h.test_acc) + 1)
        ax[1].plot(ep, np.array(h.train_acc) * 100, "o-", label="train")
        ax[1].plot(ep, np.array(h.test_acc) * 100, "s-", label="test")
        ax[1].set_xlabel("epoch")
        ax[1].set_ylabel("accuracy (%)")
        ax[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
