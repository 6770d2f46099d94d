"""PyTorch definitions of the four bundled digits models (used by pretrain.py and
torch_baseline.py; not needed at run time by tinytrain users).

Every builder takes ``bn``: with ``bn=True`` (pretraining) each conv is
``Conv2d(bias=False) -> BatchNorm2d``; with ``bn=False`` the BatchNorm is
replaced by ``Identity`` and the conv gets a bias, which is exactly the graph
that the exported ONNX contains after the eval-mode Conv+BN fold (and what the
device trains).  Conv2d/Linear modules are registered in execution order, so the
ONNX Conv/Gemm nodes map onto ``param_layers(model)`` one-to-one.
"""
from __future__ import annotations

import torch
from torch import nn


def _cbr(cin, cout, k=3, stride=1, groups=1, bn=True, relu=True):
    layers = [nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=not bn)]
    layers.append(nn.BatchNorm2d(cout) if bn else nn.Identity())
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def mlp(bn=True):
    # 64-32-10, the size of the published MCU on-device training benchmark.
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def cnn(bn=True):
    return nn.Sequential(
        _cbr(1, 8, bn=bn), nn.MaxPool2d(2),          # 8x8x8 -> 8x4x4
        _cbr(8, 16, bn=bn), nn.MaxPool2d(2),         # 16x4x4 -> 16x2x2
        nn.Flatten(), nn.Linear(64, 10),
    )


def dscnn(bn=True):
    return nn.Sequential(
        _cbr(1, 16, bn=bn),                              # stem, 16x8x8
        _cbr(16, 16, groups=16, bn=bn),                  # depthwise 3x3
        _cbr(16, 32, k=1, bn=bn),                        # pointwise -> 32x8x8
        _cbr(32, 32, stride=2, groups=32, bn=bn),        # depthwise 3x3 stride 2 -> 32x4x4
        _cbr(32, 32, k=1, bn=bn),                        # pointwise
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
    )


class ResBlock(nn.Module):
    def __init__(self, cin, cout, stride=1, bn=True):
        super().__init__()
        self.a = _cbr(cin, cout, stride=stride, bn=bn)
        self.b = _cbr(cout, cout, bn=bn, relu=False)
        self.short = (nn.Identity() if (cin == cout and stride == 1)
                      else _cbr(cin, cout, k=1, stride=stride, bn=bn, relu=False))
        self.relu = nn.ReLU()

    def forward(self, x):
        # residual branch first, then shortcut: matches module registration order
        r = self.b(self.a(x))
        return self.relu(r + self.short(x))


class ResNet8(nn.Module):
    # 16 channels throughout keeps it at ~14.5k parameters (~58 KB of fp32
    # weights): wider (16/32/64 like MLPerf Tiny's ResNet-8) would not leave
    # room for weights + gradients in a typical MCU's RAM.
    def __init__(self, bn=True):
        super().__init__()
        self.stem = _cbr(1, 16, bn=bn)                    # 16x8x8
        self.b1 = ResBlock(16, 16, bn=bn)                 # identity shortcut
        self.b2 = ResBlock(16, 16, stride=2, bn=bn)       # 1x1 conv shortcut, 16x4x4
        self.b3 = ResBlock(16, 16, bn=bn)                 # identity shortcut
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.b3(self.b2(self.b1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def resnet8(bn=True):
    return ResNet8(bn=bn)


MODELS = {"mlp": mlp, "cnn": cnn, "dscnn": dscnn, "resnet8": resnet8}


def param_layers(model):
    """Conv2d/Linear modules in execution order (== ONNX Conv/Gemm node order)."""
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def n_params(model):
    return sum(p.numel() for p in model.parameters())
