"""Training steps per second at batch 1: generated C on this host vs the numpy reference vs
PyTorch CPU (same model from the same ONNX file, same optimizer, one thread each).

    python bench/host_speed.py [--steps 300]

A benchmark, not a test: it prints a table and the ratios; numbers depend on the machine.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "examples" / "digits" / "models"


def _rate(fn, steps, warmup=10):
    for i in range(warmup):
        fn(i)
    t0 = time.perf_counter()
    for i in range(steps):
        fn(i)
    return steps / (time.perf_counter() - t0)


def main(argv=None):
    import torch
    from rich.console import Console
    from rich.table import Table

    from tinytrain.datasets import make_adaptation_data
    from tinytrain.oracles.torch_ir import TorchModel
    from tinytrain.passes import TrainConfig
    from tinytrain.pipeline import export, load_model
    from tinytrain.reference import ReferenceTrainer
    from tinytrain.sim.host import HostModel

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--models", default="mlp,cnn,dscnn,resnet8")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    data = make_adaptation_data(0)
    x, y = data["x_train"].astype(np.float32), data["y_train"]
    n = len(x)
    tab = Table(title=f"training steps/s, batch 1, SGD, all parameters trainable "
                f"({args.steps} steps, 1 thread)", title_justify="left")
    for c in ("model", "host C", "numpy ref", "PyTorch", "C / numpy", "C / PyTorch"):
        tab.add_column(c, justify="right" if c != "model" else "left")
    tmp = Path(tempfile.mkdtemp(prefix="tt_bench_"))
    for name in args.models.split(","):
        g = load_model(MODELS / f"{name}.onnx")
        cfg = TrainConfig(lr=0.01)
        res, program, plan = export(g, tmp / name, cfg, command="bench/host_speed.py")
        c = HostModel(res.out_dir)
        ref = ReferenceTrainer(program)
        tm = TorchModel(g)
        opt = torch.optim.SGD(tm.parameters(), lr=0.01)
        xt = torch.tensor(x)
        yt = torch.tensor(y)

        def c_step(i):
            c.train_step(x[i % n], y[i % n:i % n + 1])

        def ref_step(i):
            ref.train_step(x[i % n:i % n + 1], y[i % n:i % n + 1])

        def torch_step(i):
            j = i % n
            opt.zero_grad()
            torch.nn.functional.cross_entropy(tm(xt[j:j + 1]), yt[j:j + 1]).backward()
            opt.step()

        rc, rn, rt = _rate(c_step, args.steps), _rate(ref_step, args.steps), _rate(torch_step, args.steps)
        tab.add_row(name, f"{rc:,.0f}", f"{rn:,.0f}", f"{rt:,.0f}", f"{rc / rn:.1f}x", f"{rc / rt:.1f}x")
    Console(width=None if sys.stdout.isatty() else 140).print(tab)
    return 0


if __name__ == "__main__":
    sys.exit(main())
