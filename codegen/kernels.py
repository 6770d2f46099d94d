"""The f32 kernel table: IR step -> C statement(s) calling runtime_c.

Each entry gets the step and an EmitCtx (pointer expressions, shapes, a place to declare
constant parameter structs) and returns the C statements. Shapes are the batch-1 IR shapes.
"""
from __future__ import annotations

from dataclasses import replace
from math import prod

from ..ops.geometry import (CONV_FIELDS, POOL_FIELDS, bcast4, conv_geometry, pool_geometry,
                             spatial)
from .cfloat import c_float


def _n(shape) -> int:
    return int(prod(shape)) if shape else 1


def _acc(step) -> str:
    return "1" if step.accumulate else "0"


_spatial = spatial


def _conv_params(ctx, step, x, w, y):
    p = conv_geometry(step.attrs, ctx.shape(x), ctx.shape(w), ctx.shape(y))
    return ctx.const_struct("tt_conv2d_params", "conv_" + step.node, [p[k] for k in CONV_FIELDS])


def _pool_params(ctx, step, x, y):
    p = pool_geometry(step.node, step.attrs, ctx.shape(x), ctx.shape(y))
    return ctx.const_struct("tt_pool2d_params", "pool_" + step.node, [p[k] for k in POOL_FIELDS])


def _bcast(ctx, step, a, b, y):
    dims, sa, sb = bcast4(step.node, ctx.shape(a), ctx.shape(b), ctx.shape(y))
    return ctx.const_struct("tt_bcast4", "bcast_" + step.node,
                            ["{" + ", ".join(map(str, v)) + "}" for v in (dims, sa, sb)])


# ---------------------------------------------------------------- forward
def fwd_gemm(s, ctx):
    x, w = s.inputs[0], s.inputs[1]
    b = ctx.ptr(s.inputs[2]) if len(s.inputs) > 2 and s.inputs[2] else "NULL"
    n, k = ctx.shape(x)
    m = ctx.shape(w)[0]
    return [f"tt_gemm_fwd_f32({ctx.ptr(x)}, {ctx.ptr(w)}, {b}, {ctx.ptr(s.outputs[0])}, {n}, {k}, {m})"]


def fwd_conv(s, ctx):
    x, w, y = s.inputs[0], s.inputs[1], s.outputs[0]
    b = ctx.ptr(s.inputs[2]) if len(s.inputs) > 2 and s.inputs[2] else "NULL"
    p = _conv_params(ctx, s, x, w, y)
    return [f"tt_conv2d_fwd_f32(&{p}, {ctx.ptr(x)}, {ctx.ptr(w)}, {b}, {ctx.ptr(y)})"]


def _unary(kernel, extra=lambda s: []):
    def f(s, ctx):
        x, y = s.inputs[0], s.outputs[0]
        args = [ctx.ptr(x), ctx.ptr(y), str(_n(ctx.shape(x)))] + extra(s)
        return [f"{kernel}({', '.join(args)})"]
    return f


def _clip_args(s):
    lo, hi = float(s.attrs["min"]), float(s.attrs["max"])
    # ONNX: min(max(x, lo), hi), so lo > hi gives hi everywhere; the kernel wants lo <= hi.
    return [c_float(min(lo, hi)), c_float(hi)]


def fwd_pool(kernel):
    def f(s, ctx):
        x, y = s.inputs[0], s.outputs[0]
        return [f"{kernel}(&{_pool_params(ctx, s, x, y)}, {ctx.ptr(x)}, {ctx.ptr(y)})"]
    return f


def fwd_gap(s, ctx):
    x, y = s.inputs[0], s.outputs[0]
    c, h, w = _spatial(ctx.shape(x))
    return [f"tt_global_avgpool_fwd_f32({ctx.ptr(x)}, {ctx.ptr(y)}, {c}, {h * w})"]


def fwd_binary(kernel):
    def f(s, ctx):
        a, b, y = s.inputs[0], s.inputs[1], s.outputs[0]
        d = _bcast(ctx, s, a, b, y)
        return [f"{kernel}(&{d}, {ctx.ptr(a)}, {ctx.ptr(b)}, {ctx.ptr(y)})"]
    return f


def fwd_reshape(s, ctx):
    if ctx.same_bytes(s.inputs[0], s.outputs[0]):
        return []  # a view: same bytes
    n = _n(ctx.shape(s.inputs[0]))
    return [f"(memcpy({ctx.ptr(s.outputs[0])}, {ctx.ptr(s.inputs[0])}, {n} * sizeof(float)), TT_OK)"]


def fwd_softmax(s, ctx):
    sh = ctx.shape(s.inputs[0])
    cols = sh[-1]
    return [f"tt_softmax_fwd_f32({ctx.ptr(s.inputs[0])}, {ctx.ptr(s.outputs[0])}, "
            f"{_n(sh) // cols}, {cols})"]


FORWARD = {
    "Gemm": fwd_gemm, "Conv": fwd_conv,
    "Relu": _unary("tt_relu_fwd_f32"), "Sigmoid": _unary("tt_sigmoid_fwd_f32"),
    "Tanh": _unary("tt_tanh_fwd_f32"), "Clip": _unary("tt_clip_fwd_f32", _clip_args),
    "LeakyRelu": _unary("tt_leaky_relu_fwd_f32", lambda s: [c_float(s.attrs.get("alpha", 0.01))]),
    "MaxPool": fwd_pool("tt_maxpool2d_fwd_f32"), "AveragePool": fwd_pool("tt_avgpool2d_fwd_f32"),
    "GlobalAveragePool": fwd_gap, "Add": fwd_binary("tt_add_fwd_f32"),
    "Mul": fwd_binary("tt_mul_fwd_f32"), "Reshape": fwd_reshape, "Softmax": fwd_softmax,
}


# ---------------------------------------------------------------- backward (VJP)
def _vjp_io(s):
    """(gy, {forward input index or -1: tensor}, gx)"""
    return s.inputs[0], dict(zip(s.needs, s.inputs[1:])), s.outputs[0]


def vjp_gemm(s, ctx):
    gy, saved, gx = _vjp_io(s)
    x, w = s.fwd_inputs[0], s.fwd_inputs[1]
    n, k = ctx.shape(x)
    m = ctx.shape(w)[0]
    if s.wrt == 0:
        return [f"tt_gemm_bwd_x_f32({ctx.ptr(gy)}, {ctx.ptr(saved[1])}, {ctx.ptr(gx)}, {n}, {k}, {m}, {_acc(s)})"]
    if s.wrt == 1:
        return [f"tt_gemm_bwd_w_f32({ctx.ptr(gy)}, {ctx.ptr(saved[0])}, {ctx.ptr(gx)}, {n}, {k}, {m}, {_acc(s)})"]
    return [f"tt_bias_bwd_f32({ctx.ptr(gy)}, {ctx.ptr(gx)}, {n}, {m}, 1, {_acc(s)})"]


def vjp_conv(s, ctx):
    gy, saved, gx = _vjp_io(s)
    x, w = s.fwd_inputs[0], s.fwd_inputs[1]
    y = gy  # same shape as the output
    p = _conv_params(ctx, s, x, w, y)
    if s.wrt == 0:
        return [f"tt_conv2d_bwd_x_f32(&{p}, {ctx.ptr(gy)}, {ctx.ptr(saved[1])}, {ctx.ptr(gx)}, {_acc(s)})"]
    if s.wrt == 1:
        return [f"tt_conv2d_bwd_w_f32(&{p}, {ctx.ptr(gy)}, {ctx.ptr(saved[0])}, {ctx.ptr(gx)}, {_acc(s)})"]
    oc, oh, ow = _spatial(ctx.shape(gy))
    return [f"tt_bias_bwd_f32({ctx.ptr(gy)}, {ctx.ptr(gx)}, 1, {oc}, {oh * ow}, {_acc(s)})"]


def _vjp_unary(kernel, saved_index, extra=lambda s: []):
    def f(s, ctx):
        gy, saved, gx = _vjp_io(s)
        args = [ctx.ptr(gy), ctx.ptr(saved[saved_index]), ctx.ptr(gx), str(_n(ctx.shape(gy)))]
        return [f"{kernel}({', '.join(args + extra(s) + [_acc(s)])})"]
    return f


def vjp_pool_max(s, ctx):
    gy, saved, gx = _vjp_io(s)
    x = s.fwd_inputs[0]
    p = _pool_params(ctx, s, x, gy)
    return [f"tt_maxpool2d_bwd_x_f32(&{p}, {ctx.ptr(gy)}, {ctx.ptr(saved[0])}, {ctx.ptr(gx)}, {_acc(s)})"]


def vjp_pool_avg(s, ctx):
    gy, saved, gx = _vjp_io(s)
    p = _pool_params(ctx, s, s.fwd_inputs[0], gy)
    return [f"tt_avgpool2d_bwd_x_f32(&{p}, {ctx.ptr(gy)}, {ctx.ptr(gx)}, {_acc(s)})"]


def vjp_gap(s, ctx):
    gy, saved, gx = _vjp_io(s)
    c, h, w = _spatial(ctx.shape(s.fwd_inputs[0]))
    return [f"tt_global_avgpool_bwd_x_f32({ctx.ptr(gy)}, {ctx.ptr(gx)}, {c}, {h * w}, {_acc(s)})"]


def vjp_add(s, ctx):
    gy, saved, gx = _vjp_io(s)
    a, b = s.fwd_inputs
    d = _bcast(ctx, s, a, b, gy)
    if ctx.same_bytes(gy, gx) and not s.accumulate:
        return []  # the gradient of a same-shape Add operand is gy itself, already in place
    return [f"tt_add_bwd_f32(&{d}, {ctx.ptr(gy)}, {ctx.ptr(gx)}, {s.wrt}, {_acc(s)})"]


def vjp_mul(s, ctx):
    gy, saved, gx = _vjp_io(s)
    a, b = s.fwd_inputs
    d = _bcast(ctx, s, a, b, gy)
    other = saved[1 - s.wrt]
    return [f"tt_mul_bwd_f32(&{d}, {ctx.ptr(gy)}, {ctx.ptr(other)}, {ctx.ptr(gx)}, {s.wrt}, {_acc(s)})"]


def vjp_reshape(s, ctx):
    gy, saved, gx = _vjp_io(s)
    if ctx.same_bytes(gy, gx):
        return []
    n = _n(ctx.shape(gy))
    if s.accumulate:
        d = ctx.const_struct("tt_bcast4", "bcast_acc_" + s.node, ["{1, 1, 1, %d}" % n, "{0, 0, 0, 1}", "{0, 0, 0, 1}"])
        return [f"tt_add_bwd_f32(&{d}, {ctx.ptr(gy)}, {ctx.ptr(gx)}, 0, 1)"]
    return [f"(memcpy({ctx.ptr(gx)}, {ctx.ptr(gy)}, {n} * sizeof(float)), TT_OK)"]


def vjp_softmax(s, ctx):
    gy, saved, gx = _vjp_io(s)
    sh = ctx.shape(gy)
    cols = sh[-1]
    return [f"tt_softmax_bwd_x_f32({ctx.ptr(gy)}, {ctx.ptr(saved[-1])}, {ctx.ptr(gx)}, "
            f"{_n(sh) // cols}, {cols}, {_acc(s)})"]


def scale_lr(s, ctx):
    """Fused SGD: the layer's output gradient times -lr (checked finite before any update)."""
    n = _n(ctx.shape(s.inputs[0]))
    return [f"tt_scale_f32({ctx.ptr(s.inputs[0])}, {ctx.ptr(s.outputs[0])}, {n}, -lr)"]


VJP = {
    "Scale": scale_lr,
    "Gemm": vjp_gemm, "Conv": vjp_conv,
    "Relu": _vjp_unary("tt_relu_bwd_x_f32", -1),
    "Sigmoid": _vjp_unary("tt_sigmoid_bwd_x_f32", -1),
    "Tanh": _vjp_unary("tt_tanh_bwd_x_f32", -1),
    "Clip": _vjp_unary("tt_clip_bwd_x_f32", -1, _clip_args),
    "LeakyRelu": _vjp_unary("tt_leaky_relu_bwd_x_f32", 0,
                            lambda s: [c_float(s.attrs.get("alpha", 0.01))]),
    "MaxPool": vjp_pool_max, "AveragePool": vjp_pool_avg, "GlobalAveragePool": vjp_gap,
    "Add": vjp_add, "Mul": vjp_mul, "Reshape": vjp_reshape, "Softmax": vjp_softmax,
}


def loss_call(s, ctx, scale: str, loss_var: str):
    pred, label = s.inputs
    g = ctx.ptr(s.outputs[1]) if len(s.outputs) > 1 else "NULL"
    sh = ctx.shape(pred)
    if s.op == "SoftmaxCrossEntropy":
        return (f"tt_softmax_xent_f32({ctx.ptr(pred)}, label, {sh[0]}, {sh[1]}, {scale}, "
                f"&{loss_var}, {g})")
    return f"tt_mse_f32({ctx.ptr(pred)}, target, {_n(sh)}, {scale}, &{loss_var}, {g})"


def update_call(s, ctx, lr: str, cfg, t: str):
    p, g, *st = s.inputs
    n = _n(ctx.shape(p))
    wd = c_float(cfg.weight_decay)
    if s.op == "sgd":
        return f"tt_sgd_upd_f32({ctx.ptr(p)}, {ctx.ptr(g)}, {n}, {lr}, {wd})"
    if s.op == "momentum":
        return (f"tt_momentum_upd_f32({ctx.ptr(p)}, {ctx.ptr(g)}, {ctx.ptr(st[0])}, {n}, {lr}, "
                f"{c_float(cfg.momentum)}, {wd})")
    return (f"tt_adam_upd_f32({ctx.ptr(p)}, {ctx.ptr(g)}, {ctx.ptr(st[0])}, {ctx.ptr(st[1])}, {n}, "
            f"{lr}, {c_float(cfg.beta1)}, {c_float(cfg.beta2)}, {c_float(cfg.eps)}, {wd}, {t})")


# ---------------------------------------------------------------- forward mode (JVP)
# One pass of tt_jvp_pass: forward steps, their tangents, the loss and dL.v. Parameter tangents
# are drawn by generators (tt_tangent, tt_jvp.h) positioned at each parameter's first draw
# of the (seed, step, k) stream; ctx.fg holds the seed, distribution and draw offsets.

def _gen(ctx, var, param):
    fg = ctx.fg
    ctx.gens.add(var)
    return (f"tt_tangent_init(&{var}, {fg['seed']}u, stream, {fg['offsets'][param]}u, "
            f"{fg['dist']})")


def _tan_io(s):
    """(tangent tensor per forward input index, forward values read per index / OUT)."""
    nt = len(s.tangents)
    return dict(zip(s.tangents, s.inputs[:nt])), dict(zip(s.needs, s.inputs[nt:]))


def _layer_jvp(kernel, head):
    """Gemm / Conv: t_y = t_x W^T + x V^T + v_b in one kernel call."""
    def f(s, ctx):
        tans, _ = _tan_io(s)
        if set(tans) - {0}:
            from ..errors import ExportError
            raise ExportError(f"node {s.node!r} ({s.op}): a tangent on a non-parameter weight "
                              "or bias input has no C kernel")
        out = []
        gens = {1: "NULL", 2: "NULL"}
        for i, var in ((1, "v_w"), (2, "v_b")):
            if i in s.generated:
                out.append(_gen(ctx, var, s.fwd_inputs[i]))
                gens[i] = "&" + var
        tx = ctx.ptr(tans[0]) if 0 in tans else "NULL"
        x = ctx.ptr(s.fwd_inputs[0]) if 1 in s.generated else "NULL"
        w = ctx.ptr(s.fwd_inputs[1]) if 0 in tans else "NULL"
        args = head(s, ctx) + [x, tx, w, ctx.ptr(s.outputs[0])]
        tail = [] if kernel == "tt_conv2d_jvp_f32" else _gemm_dims(s, ctx)
        out.append(f"{kernel}({', '.join(args + tail + [gens[1], gens[2]])})")
        return out
    return f


def _gemm_dims(s, ctx):
    n, k = ctx.shape(s.fwd_inputs[0])
    return [str(n), str(k), str(ctx.shape(s.fwd_inputs[1])[0])]


def _conv_head(s, ctx):
    x, w = s.fwd_inputs[0], s.fwd_inputs[1]
    return ["&" + _conv_params(ctx, s, x, w, s.outputs[0])]


def jvp_maxpool(s, ctx):
    tans, saved = _tan_io(s)
    p = _pool_params(ctx, s, s.fwd_inputs[0], s.outputs[0])
    return [f"tt_maxpool2d_jvp_f32(&{p}, {ctx.ptr(saved[0])}, {ctx.ptr(tans[0])}, "
            f"{ctx.ptr(s.outputs[0])})"]


def jvp_add(s, ctx):
    tans, _ = _tan_io(s)
    a, b = s.fwd_inputs
    d = _bcast(ctx, s, a, b, s.outputs[0])
    ta = ctx.ptr(tans[0]) if 0 in tans else "NULL"
    tb = ctx.ptr(tans[1]) if 1 in tans else "NULL"
    return [f"tt_add_jvp_f32(&{d}, {ta}, {tb}, {ctx.ptr(s.outputs[0])})"]


def jvp_mul(s, ctx):
    tans, saved = _tan_io(s)
    a, b = s.fwd_inputs
    d = _bcast(ctx, s, a, b, s.outputs[0])
    pa = ctx.ptr(saved[0]) if 0 in saved else "NULL"
    pb = ctx.ptr(saved[1]) if 1 in saved else "NULL"
    ta = ctx.ptr(tans[0]) if 0 in tans else "NULL"
    tb = ctx.ptr(tans[1]) if 1 in tans else "NULL"
    return [f"tt_mul_jvp_f32(&{d}, {pa}, {pb}, {ta}, {tb}, {ctx.ptr(s.outputs[0])})"]


def _linear_jvp(fwd):
    """A linear op's tangent is the op itself on the tangent (AveragePool, GAP, Reshape)."""
    def f(s, ctx):
        tans, _ = _tan_io(s)
        return fwd(replace(s, kind="fwd", inputs=(tans[0],)), ctx)
    return f


# Elementwise ops and Softmax have symmetric Jacobians: the VJP kernel with the tangent in the
# cotangent's place is the JVP (a jvp step has the vjp step's layout: tangent, then `needs`).
JVP = {
    "Gemm": _layer_jvp("tt_gemm_jvp_f32", lambda s, ctx: []),
    "Conv": _layer_jvp("tt_conv2d_jvp_f32", _conv_head),
    "Relu": VJP["Relu"], "Sigmoid": VJP["Sigmoid"], "Tanh": VJP["Tanh"], "Clip": VJP["Clip"],
    "LeakyRelu": VJP["LeakyRelu"], "Softmax": VJP["Softmax"],
    "MaxPool": jvp_maxpool, "AveragePool": _linear_jvp(FORWARD["AveragePool"]),
    "GlobalAveragePool": _linear_jvp(FORWARD["GlobalAveragePool"]),
    "Reshape": _linear_jvp(fwd_reshape), "Add": jvp_add, "Mul": jvp_mul,
}


def jvp_pass_calls(s, ctx):
    from ..errors import ExportError
    if s.kind == "fwd":
        return FORWARD[s.op](s, ctx)
    if s.kind == "tangent":
        p = s.node
        return [_gen(ctx, "v_p", p),
                f"tt_tangent_fill_f32(&v_p, {ctx.ptr(s.outputs[0])}, {_n(ctx.shape(p))})"]
    if s.kind == "jvp":
        fn = JVP.get(s.op)
        if fn is None:
            raise ExportError(f"node {s.node!r} ({s.op}): no fp32 C tangent kernel for this op")
        return fn(s, ctx)
    if s.kind == "loss_jvp":
        # The loss gradient is written over the logits (they die here; the kernel may run in
        # place), then dL.v = <dL/dlogits, t_logits>. scale 1: the device sums samples.
        pred, label, tpred = s.inputs
        sh = ctx.shape(pred)
        g = ctx.ptr(pred)
        if s.op == "SoftmaxCrossEntropy":
            first = f"tt_softmax_xent_f32({g}, label, {sh[0]}, {sh[1]}, 1.0f, l, {g})"
        else:
            first = f"tt_mse_f32({g}, target, {_n(sh)}, 1.0f, l, {g})"
        return [first, f"tt_dot_f32({g}, {ctx.ptr(tpred)}, {_n(sh)}, dl)"]
    raise ExportError(f"internal: step kind {s.kind!r} in a jvp pass")
