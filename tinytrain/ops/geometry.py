"""Kernel geometry from IR shapes and ONNX attributes: the numbers the C parameter structs
(tt_conv2d_params, tt_pool2d_params, tt_bcast4) hold. One definition for every back end: the
float emitter, the fixed-point and fp16 lowerings and their numpy interpreters."""
from __future__ import annotations

from ..errors import ExportError

# field order of tt_conv2d_params / tt_pool2d_params (runtime_c/include/tt_kernels.h)
CONV_FIELDS = ("in_c", "in_h", "in_w", "out_c", "out_h", "out_w", "k_h", "k_w", "stride_h",
               "stride_w", "pad_top", "pad_left", "groups")
POOL_FIELDS = ("c", "in_h", "in_w", "out_h", "out_w", "k_h", "k_w", "stride_h", "stride_w",
               "pad_top", "pad_left", "count_include_pad")


def spatial(shape):
    """[1, C, H, W] or [1, C, L] -> (C, H, W) with H = 1 for 1-D."""
    if len(shape) == 4:
        return shape[1], shape[2], shape[3]
    if len(shape) == 3:
        return shape[1], 1, shape[2]
    raise ExportError(f"expected a 3-D or 4-D activation, got shape {tuple(shape)}")


def _window(attrs, rank, kernel):
    kh, kw = (kernel[0], kernel[1]) if rank == 2 else (1, kernel[0])
    st = tuple(attrs.get("strides", (1,) * rank))
    sh, sw = (st[0], st[1]) if rank == 2 else (1, st[0])
    pads = tuple(attrs.get("pads", (0,) * (2 * rank)))
    pt, pl = (pads[0], pads[1]) if rank == 2 else (0, pads[0])
    return dict(k_h=kh, k_w=kw, stride_h=sh, stride_w=sw, pad_top=pt, pad_left=pl)


def conv_geometry(attrs, xs, ws, ys) -> dict:
    c, h, wd = spatial(xs)
    oc, oh, ow = spatial(ys)
    rank = len(ws) - 2
    return dict(in_c=c, in_h=h, in_w=wd, out_c=oc, out_h=oh, out_w=ow,
                **_window(attrs, rank, tuple(ws[2:])), groups=int(attrs.get("group", 1)))


def pool_geometry(node: str, attrs, xs, ys) -> dict:
    c, h, wd = spatial(xs)
    _, oh, ow = spatial(ys)
    ks = tuple(attrs["kernel_shape"])
    cip = int(attrs.get("count_include_pad", 0))
    if cip and int(attrs.get("ceil_mode", 0)):
        # The kernels divide by kh*kw whenever count_include_pad is set; ONNX excludes the
        # cells a ceil_mode window adds beyond the end padding. Refuse rather than differ.
        raise ExportError(f"node {node!r} (AveragePool): count_include_pad=1 together with "
                          "ceil_mode=1 is not supported by the C kernels; export the model with "
                          "ceil_mode=0 or count_include_pad=0")
    return dict(c=c, in_h=h, in_w=wd, out_h=oh, out_w=ow, **_window(attrs, len(ks), ks),
                count_include_pad=cip)


def bcast4(node, sa, sb, ys):
    """4-D broadcast descriptor (dims, a strides, b strides) for numpy broadcasting of shapes
    sa and sb to ys. Adjacent dimensions with the same broadcast pattern are merged first, so
    e.g. a [C,1,1,1] scale over a 5-D tensor still fits the kernel's four dimensions."""
    ys = list(ys)
    r = len(ys)
    sa = [1] * (r - len(sa)) + list(sa)
    sb = [1] * (r - len(sb)) + list(sb)
    dims = []  # (size, a broadcast?, b broadcast?)
    for n, da, db in zip(ys, sa, sb):
        if n == 1:
            continue
        pat = (da == 1, db == 1)
        if dims and (dims[-1][1], dims[-1][2]) == pat:
            dims[-1] = (dims[-1][0] * n, *pat)
        else:
            dims.append((n, *pat))
    if len(dims) > 4:
        raise ExportError(f"node {node!r}: broadcasting {tuple(sa)} with {tuple(sb)} needs "
                          f"{len(dims)} independent dimensions; the C kernels support 4")
    dims = [(1, False, False)] * (4 - len(dims)) + dims

    def strides(which):
        st, acc = [0] * 4, 1
        for i in range(3, -1, -1):
            n, ba, bb = dims[i]
            st[i] = 0 if (ba, bb)[which] and n != 1 else acc
            if not (ba, bb)[which]:
                acc *= n
        return st
    return [d[0] for d in dims], strides(0), strides(1)
