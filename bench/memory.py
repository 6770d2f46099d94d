"""Training memory per model and trainable set: tinytrain's planned memory (RAM sections +
frozen parameters in flash) vs the naive total (every tensor its own buffer) vs PyTorch:
"PyTorch saved" is measured (parameters, gradients, optimizer state, and the tensors autograd
saves for backward via saved-tensor hooks, plus the logits) and leaves out the transient
forward buffers; "all acts + grads" is the conventional autograd footprint (every forward
activation kept, plus parameters, gradients and state).

    python bench/memory.py
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "examples" / "digits" / "models"


def torch_training_bytes(graph, trainable, optimizer="sgd"):
    import torch
    from tinytrain.oracles.torch_ir import TorchModel
    tm = TorchModel(graph, trainable)
    x = torch.zeros((1,) + tuple(graph.tensors[graph.inputs[0]].shape[1:]))
    saved = {}

    def pack(t):
        saved[(t.data_ptr(), t.numel())] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = tm(x)
        loss = torch.nn.functional.cross_entropy(out, torch.zeros(1, dtype=torch.long))
    params = {id(p): p for p in tm.parameters()}
    param_bytes = sum(p.numel() * 4 for p in params.values())
    # parameters themselves appear among saved tensors (weights for input grads): count once
    saved_acts = sum(b for (ptr, n), b in saved.items()
                     if ptr not in {p.data_ptr() for p in params.values()})
    grad_bytes = sum(p.numel() * 4 for p in params.values() if p.requires_grad)
    state = {"sgd": 0, "momentum": 1, "adam": 2}[optimizer] * grad_bytes
    loss.backward()
    all_acts = sum(t.nbytes for n, t in graph.tensors.items()
                   if t.role.value == "activation") + int(np.prod(x.shape)) * 4
    return (param_bytes + grad_bytes + state + saved_acts + out.numel() * 4,
            param_bytes + grad_bytes + state + all_acts)


def main():
    from rich.console import Console
    from rich.table import Table
    from tinytrain.passes import TrainConfig, build_training_program
    from tinytrain.passes.memory_plan import plan_arena
    from tinytrain.pipeline import load_model

    tab = Table(title="training memory, fp32, SGD, batch 1 (bytes)", title_justify="left")
    for c in ("model", "trainable", "arena", "RAM (arena+params+grads+state)", "flash params",
              "naive total", "PyTorch saved", "all acts + grads", "naive / ours",
              "all acts / ours"):
        tab.add_column(c, justify="left" if c in ("model", "trainable") else "right")
    for name in ("mlp", "cnn", "dscnn", "resnet8"):
        g = load_model(MODELS / f"{name}.onnx")
        for tr in ("all", "last:1", "bias"):
            p = build_training_program(g, TrainConfig(trainable=tr))
            plan = plan_arena(p)
            ours = plan.ram_bytes + plan.section_bytes["params_ro"]
            saved, full = torch_training_bytes(g, p.trainable)
            tab.add_row(name, tr, f"{plan.arena_bytes:,}", f"{plan.ram_bytes:,}",
                        f"{plan.section_bytes['params_ro']:,}", f"{plan.naive_bytes:,}",
                        f"{saved:,}", f"{full:,}", f"{plan.naive_bytes / ours:.2f}x",
                        f"{full / ours:.2f}x")
    Console(width=None if sys.stdout.isatty() else 140).print(tab)
    return 0


if __name__ == "__main__":
    sys.exit(main())
