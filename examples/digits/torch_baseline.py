"""PyTorch oracle for the digits "last mile" adaptation scenario.

For each bundled model: load the pretrained weights *from the ONNX file* into the
BN-folded torch twin of the network (``nets.<model>(bn=False)``: Conv with bias,
no BatchNorm -- the exact graph in the ONNX file and what the device trains),
check it against onnxruntime, then fine-tune ALL parameters on the shifted
adaptation set of device ``--device`` with plain SGD (lr 0.05, no momentum,
no weight decay) and report shifted-test accuracy before/after (plus clean
test accuracy, to show how much is forgotten).

Why reload from ONNX instead of retraining here: the oracle then starts from
bit-identical weights to the on-device/numpy runner, and the exporter has
already folded BatchNorm, so there are no BN running statistics whose
train/eval behaviour could differ from the device.

    python examples/digits/torch_baseline.py [--epochs 20] [--batch 16] [--lr 0.05] [--device 0]
                                             [--trainable all|last:K] [--models mlp cnn ...]

Default (batch 16, lr 0.05, 20 epochs, all layers), device 0:

    model    shifted before -> after   clean before -> after
    mlp          74.1 % -> 93.9 %         98.7 % -> 94.1 %
    cnn          46.7 % -> 95.6 %         98.9 % -> 94.1 %
    dscnn        44.1 % -> 93.7 %         99.4 % -> 73.5 %
    resnet8      44.8 % -> 97.4 %         99.6 % -> 95.7 %

Notes: the loss is the batch-mean cross-entropy.  With batch 1, lr 0.05 is too
large for the BN-folded conv nets (dscnn and resnet8 collapse to ~10 %); use
lr 0.005-0.01 for batch 1 (e.g. ``--batch 1 --lr 0.005 --epochs 5``).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
from onnx import numpy_helper  # noqa: E402
from torch import nn  # noqa: E402

import nets  # noqa: E402
from tinytrain.datasets import make_adaptation_data  # noqa: E402

MODELS_DIR = HERE / "models"


def load_from_onnx(name: str, path: Path) -> nn.Module:
    """Build the BN-folded torch model and copy the ONNX Conv/Gemm weights into it."""
    m = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    weighted = [n for n in m.graph.node if n.op_type in ("Conv", "Gemm")]
    model = nets.MODELS[name](bn=False)
    layers = nets.param_layers(model)
    if len(weighted) != len(layers):
        raise ValueError(f"{path.name}: {len(weighted)} Conv/Gemm nodes but {len(layers)} torch layers")
    with torch.no_grad():
        for node, layer in zip(weighted, layers):
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            w = inits[node.input[1]]
            if node.op_type == "Gemm":
                if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
                    raise ValueError(f"unsupported Gemm attributes {attrs}")
                if not attrs.get("transB", 0):
                    w = w.T
            if tuple(w.shape) != tuple(layer.weight.shape):
                raise ValueError(f"{node.name}: shape {w.shape} vs torch {tuple(layer.weight.shape)}")
            layer.weight.copy_(torch.tensor(np.array(w)))
            if len(node.input) > 2 and node.input[2]:
                layer.bias.copy_(torch.tensor(np.array(inits[node.input[2]])))
            else:
                layer.bias.zero_()
    return model.eval()


def check_against_ort(model: nn.Module, path: Path, x: np.ndarray) -> float:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = np.concatenate([sess.run(None, {"x": x[i:i + 1]})[0] for i in range(len(x))])
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    err = float(np.abs(got - ref).max())
    if err > 1e-4:
        raise SystemExit(f"{path.name}: reloaded torch model disagrees with onnxruntime ({err:.2e})")
    return err


@torch.no_grad()
def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def set_trainable(model: nn.Module, trainable: str) -> None:
    """``all`` or ``last:K`` (only the last K Conv/Linear layers, weights + biases)."""
    if trainable == "all":
        return
    if not trainable.startswith("last:"):
        raise ValueError(f"--trainable must be 'all' or 'last:K', got {trainable!r}")
    k = int(trainable.split(":", 1)[1])
    for p in model.parameters():
        p.requires_grad_(False)
    for layer in nets.param_layers(model)[-k:]:
        for p in layer.parameters():
            p.requires_grad_(True)


def finetune(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, batch: int,
             lr: float, seed: int) -> None:
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr)
    gen = torch.Generator().manual_seed(seed)
    loss_fn = nn.CrossEntropyLoss()  # mean over the batch
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch):
            idx = perm[i:i + batch]
            opt.zero_grad()
            loss_fn(model(xt[idx]), yt[idx]).backward()
            opt.step()
    model.eval()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", type=int, default=0, help="device seed for the domain shift")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--trainable", default="all", help="'all' or 'last:K' (last K Conv/Linear layers)")
    ap.add_argument("--models", nargs="*", default=list(nets.MODELS))
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    data = make_adaptation_data(args.device)
    print(f"device {args.device}: {len(data['y_train'])} adaptation samples, "
          f"{len(data['y_test'])} shifted test samples; SGD lr {args.lr}, batch {args.batch}, "
          f"{args.epochs} epochs, trainable {args.trainable}\n")
    print("| model | shifted before | shifted after | gain (pp) | clean before | clean after | time |")
    print("|---|---|---|---|---|---|---|")
    for name in args.models:
        t0 = time.time()
        torch.manual_seed(args.seed)
        path = MODELS_DIR / f"{name}.onnx"
        model = load_from_onnx(name, path)
        check_against_ort(model, path, data["x_clean_test"][:64])
        sb = accuracy(model, data["x_test"], data["y_test"])
        cb = accuracy(model, data["x_clean_test"], data["y_clean_test"])
        set_trainable(model, args.trainable)
        finetune(model, data["x_train"], data["y_train"], args.epochs, args.batch, args.lr, args.seed)
        sa = accuracy(model, data["x_test"], data["y_test"])
        ca = accuracy(model, data["x_clean_test"], data["y_clean_test"])
        print(f"| {name} | {sb:.2%} | {sa:.2%} | {100 * (sa - sb):+.1f} | {cb:.2%} | {ca:.2%} | "
              f"{time.time() - t0:.1f}s |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
