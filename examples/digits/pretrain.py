"""Pretrain the four bundled digits models on CLEAN digits and export them to ONNX.

Run once by developers (needs torch); users only need the resulting files:

    python examples/digits/pretrain.py

Writes examples/digits/models/{mlp,cnn,dscnn,resnet8}.onnx and
examples/digits/models/README.md (accuracy table).  Deterministic: fixed seeds,
single thread, torch deterministic algorithms.  Takes well under a minute on
2 CPU cores.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))  # tinytrain without installing it
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import nets  # noqa: E402
from tinytrain.datasets import load_digits_split, make_adaptation_data  # noqa: E402

MODELS_DIR = HERE / "models"
DEVICE_SEEDS = (0, 1, 2, 3, 4)

# Label smoothing matters here: with plain cross-entropy the pretrained nets are
# over-confident and, once BatchNorm is folded away, so sharp that plain SGD at
# lr 0.05 on the shifted device data blows the conv nets up (collapse to 10 %
# accuracy).  With smoothing 0.1 the same fine-tuning recovers cleanly.
LABEL_SMOOTHING = 0.1

# (epochs, lr, weight_decay) per model; Adam, batch 32, cosine decay.
RECIPES = {
    "mlp": (60, 1e-2, 1e-4),
    "cnn": (40, 1e-2, 1e-4),
    "dscnn": (40, 1e-2, 1e-4),
    "resnet8": (30, 1e-2, 1e-4),
}


def set_determinism(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, lr: float, wd: float,
          seed: int, batch: int = 32) -> None:
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd)
    steps = epochs * ((len(x) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(seed)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=LABEL_SMOOTHING)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch):
            idx = perm[i:i + batch]
            if len(idx) < 2:  # BatchNorm needs >1 sample
                continue
            opt.zero_grad()
            loss_fn(model(xt[idx]), yt[idx]).backward()
            opt.step()
            sched.step()
    model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    model.eval()
    return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def export(model: nn.Module, path: Path) -> None:
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.zeros(1, 1, 8, 8), str(path), dynamo=False,
                          opset_version=17, input_names=["x"], output_names=["logits"],
                          do_constant_folding=True)
    m = onnx.load(str(path))
    onnx.checker.check_model(m)


def verify_onnx(model: nn.Module, path: Path, x: np.ndarray) -> float:
    """Run every sample (batch 1) through onnxruntime; return max |logit diff| vs torch."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["x"]
    assert list(sess.get_inputs()[0].shape) == [1, 1, 8, 8]
    assert [o.name for o in sess.get_outputs()] == ["logits"]
    ref = model(torch.from_numpy(x)).detach().numpy()
    got = np.concatenate([sess.run(["logits"], {"x": x[i:i + 1]})[0] for i in range(len(x))])
    err = float(np.abs(got - ref).max())
    if err > 1e-4 or not np.array_equal(got.argmax(1), ref.argmax(1)):
        raise SystemExit(f"{path.name}: onnxruntime disagrees with torch (max err {err:.2e})")
    return err


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=MODELS_DIR)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    x_tr, y_tr, x_te, y_te = load_digits_split(0)
    devices = {s: make_adaptation_data(s) for s in DEVICE_SEEDS}

    rows = []
    t_all = time.time()
    for name, builder in nets.MODELS.items():
        t0 = time.time()
        set_determinism(args.seed)
        model = builder(bn=True)
        epochs, lr, wd = RECIPES[name]
        train(model, x_tr, y_tr, epochs, lr, wd, seed=args.seed)
        path = args.out / f"{name}.onnx"
        export(model, path)
        err = verify_onnx(model, path, x_te)
        ops = sorted({n.op_type for n in onnx.load(str(path)).graph.node})
        clean = accuracy(model, x_te, y_te)
        shifted = [accuracy(model, d["x_test"], d["y_test"]) for d in devices.values()]
        rows.append(dict(name=name, params=nets.n_params(model),
                         params_onnx=nets.n_params(builder(bn=False)),
                         bytes=path.stat().st_size, clean=clean, dev0=shifted[0],
                         dev_mean=float(np.mean(shifted)), ops=ops))
        print(f"{name:8s} clean {clean:6.2%}  shifted dev0 {shifted[0]:6.2%}  "
              f"(devices 0-4 mean {np.mean(shifted):6.2%})  ort max err {err:.1e}  "
              f"{time.time() - t0:5.1f}s", flush=True)

    table = [
        "| model | params (torch / ONNX, BN folded) | ONNX bytes | clean test | "
        "shifted test, device 0 | drop (pp) | shifted, devices 0-4 mean |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        table.append(f"| {r['name']} | {r['params']} / {r['params_onnx']} | {r['bytes']} | "
                     f"{r['clean']:.2%} | {r['dev0']:.2%} | {100 * (r['clean'] - r['dev0']):.1f} | "
                     f"{r['dev_mean']:.2%} |")
    print()
    print("\n".join(table))
    print(f"\ntotal {time.time() - t_all:.1f}s")
    write_readme(args.out / "README.md", table, rows)
    return 0


def write_readme(path: Path, table, rows) -> None:
    ops = "\n".join(f"- `{r['name']}.onnx`: {', '.join(r['ops'])}" for r in rows)
    text = f"""# Pretrained digits models

Generated by `python examples/digits/pretrain.py` (torch {torch.__version__.split('+')[0]},
seed 0, single thread, deterministic algorithms). Do not edit by hand; rerun the
script to regenerate the `.onnx` files and this file.

- Data: scikit-learn `digits` (8x8 grayscale, scaled to [0, 1]), fixed
  stratified 70/30 split `tinytrain.datasets.load_digits_split(0)`: 1257 train,
  540 test. Pretraining uses the **clean** train split only, no augmentation.
- Training: Adam, batch 32, cosine LR decay, weight decay 1e-4 (epochs/LR per
  model in `RECIPES` in `pretrain.py`); cross-entropy with label smoothing 0.1.
  The smoothing keeps the models from being over-confident: without it, the
  BN-folded conv nets blow up under plain SGD at lr 0.05 on the shifted data.
- Export: `torch.onnx.export(..., dynamo=False, opset_version=17)`, eval mode,
  fixed input `x` of shape `[1, 1, 8, 8]`, output `logits` `[1, 10]`. The exporter
  folds each Conv+BatchNorm pair into the Conv weights/bias, so the ONNX graphs
  contain no BatchNormalization nodes. Every file is checked against
  onnxruntime on all 540 test samples (max |logit diff| < 1e-4).
- "Shifted" = the device domain shift `tinytrain.datasets.shift_digits`
  (rotation + shear + sub-pixel offset, gain/offset, sensor noise), evaluated on
  the shifted test split from `make_adaptation_data(seed)["x_test"]`.
  Device 0 is the one used by the examples.

{chr(10).join(table)}

Architectures (definitions in `examples/digits/nets.py`):

- `mlp`: Flatten -> Linear(64, 32) -> ReLU -> Linear(32, 10).
- `cnn`: [Conv 3x3 1->8, BN, ReLU, MaxPool 2] -> [Conv 3x3 8->16, BN, ReLU, MaxPool 2] -> Flatten -> Linear(64, 10).
- `dscnn`: Conv 3x3 1->16 -> depthwise 3x3 (16) -> pointwise 16->32 -> depthwise 3x3 stride 2 (32) -> pointwise 32->32 (each + BN + ReLU) -> global average pool -> Linear(32, 10).
- `resnet8`: stem Conv 3x3 1->16 + BN + ReLU; 3 residual blocks of 16 channels (conv-BN-ReLU-conv-BN, Add, ReLU): identity shortcut, stride-2 block with 1x1 conv+BN shortcut, identity shortcut; global average pool -> Linear(16, 10).

ONNX operators used:

{ops}
"""
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
