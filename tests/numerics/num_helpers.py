"""Shared strategies and float64 references for the numerics tests (independent of the code
under test: torch for convolutions, direct loops for pooling)."""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st


@st.composite
def conv_params(draw, max_hw=9, max_c=4):
    """tt_conv2d_params dicts: groups incl. depthwise, strides, asymmetric pads (the implied
    bottom / right padding may be negative: rows the windows never reach)."""
    groups = draw(st.integers(1, 3))
    depthwise = draw(st.booleans())
    cin_g = 1 if depthwise else draw(st.integers(1, max_c))
    cout_g = draw(st.integers(1, max_c))
    k_h, k_w = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    s_h, s_w = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    in_h = draw(st.integers(1, max_hw))
    in_w = draw(st.integers(1, max_hw))
    pt, pl = draw(st.integers(0, k_h - 1)), draw(st.integers(0, k_w - 1))
    pb, pr = draw(st.integers(-1, k_h - 1)), draw(st.integers(-1, k_w - 1))
    out_h = (in_h + pt + pb - k_h) // s_h + 1
    out_w = (in_w + pl + pr - k_w) // s_w + 1
    if out_h < 1 or out_w < 1:
        pt = pb = pl = pr = 0
        k_h, k_w = min(k_h, in_h), min(k_w, in_w)
        out_h = (in_h - k_h) // s_h + 1
        out_w = (in_w - k_w) // s_w + 1
    return dict(in_c=groups * cin_g, in_h=in_h, in_w=in_w, out_c=groups * cout_g, out_h=out_h,
                out_w=out_w, k_h=k_h, k_w=k_w, stride_h=s_h, stride_w=s_w, pad_top=pt,
                pad_left=pl, groups=groups)


@st.composite
def pool_params(draw, max_hw=9):
    k_h, k_w = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    s_h, s_w = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    in_h = draw(st.integers(k_h, max_hw))
    in_w = draw(st.integers(k_w, max_hw))
    pt, pl = draw(st.integers(0, k_h - 1)), draw(st.integers(0, k_w - 1))
    pb, pr = draw(st.integers(0, k_h - 1)), draw(st.integers(0, k_w - 1))
    out_h = (in_h + pt + pb - k_h) // s_h + 1
    out_w = (in_w + pl + pr - k_w) // s_w + 1
    # every window must start inside the input
    while (out_h - 1) * s_h - pt >= in_h:
        out_h -= 1
    while (out_w - 1) * s_w - pl >= in_w:
        out_w -= 1
    return dict(c=draw(st.integers(1, 3)), in_h=in_h, in_w=in_w, out_h=out_h, out_w=out_w,
                k_h=k_h, k_w=k_w, stride_h=s_h, stride_w=s_w, pad_top=pt, pad_left=pl,
                count_include_pad=draw(st.integers(0, 1)))


def shapes(p):
    cin_g = p["in_c"] // p["groups"]
    return ((p["in_c"], p["in_h"], p["in_w"]), (p["out_c"], cin_g, p["k_h"], p["k_w"]),
            (p["out_c"], p["out_h"], p["out_w"]))


def torch_conv(p, x, w, b=None, gy=None):
    """float64 torch reference: (y, gx, gw) for x [C,H,W], w, optional gy [OC,OH,OW]."""
    import torch
    import torch.nn.functional as F
    xt = torch.tensor(np.asarray(x, np.float64)[None], requires_grad=True)
    wt = torch.tensor(np.asarray(w, np.float64), requires_grad=True)
    pb = (p["out_h"] - 1) * p["stride_h"] + p["k_h"] - p["in_h"] - p["pad_top"]
    pr = (p["out_w"] - 1) * p["stride_w"] + p["k_w"] - p["in_w"] - p["pad_left"]
    xp = F.pad(xt, (p["pad_left"], pr, p["pad_top"], pb))
    bt = None if b is None else torch.tensor(np.asarray(b, np.float64))
    y = F.conv2d(xp, wt, bt, stride=(p["stride_h"], p["stride_w"]), groups=p["groups"])
    assert tuple(y.shape[2:]) == (p["out_h"], p["out_w"])
    gx = gw = None
    if gy is not None:
        y.backward(torch.tensor(np.asarray(gy, np.float64)[None]))
        gx, gw = xt.grad[0].numpy(), wt.grad.numpy()
    return y.detach()[0].numpy(), gx, gw


def pool_ref(p, x, kind):
    """float64 reference: max (first max) or avg with the documented divisor; returns
    (y [c,oh,ow], argmax flat index or None)."""
    c = p["c"]
    x = np.asarray(x, np.float64).reshape(c, p["in_h"], p["in_w"])
    y = np.zeros((c, p["out_h"], p["out_w"]))
    arg = np.zeros((c, p["out_h"], p["out_w"]), np.int64)
    for oh in range(p["out_h"]):
        for ow in range(p["out_w"]):
            hs, ws = oh * p["stride_h"] - p["pad_top"], ow * p["stride_w"] - p["pad_left"]
            h0, h1 = max(hs, 0), min(hs + p["k_h"], p["in_h"])
            w0, w1 = max(ws, 0), min(ws + p["k_w"], p["in_w"])
            win = x[:, h0:h1, w0:w1].reshape(c, -1)
            if kind == "max":
                a = np.argmax(win, axis=1)
                y[:, oh, ow] = win[np.arange(c), a]
                arg[:, oh, ow] = (h0 + a // (w1 - w0)) * p["in_w"] + w0 + a % (w1 - w0)
            else:
                d = p["k_h"] * p["k_w"] if p["count_include_pad"] else win.shape[1]
                y[:, oh, ow] = win.sum(axis=1) / d
    return y, arg
