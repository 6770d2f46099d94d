"""Forward-mode forward-gradient training ("Gradients without Backpropagation"): the step list
and the tangent draws, shared by the numpy reference, the planner and the C generator.

Per optimizer step t and perturbation k = 0..n-1, a tangent v_k is drawn for every trainable
parameter from the shared PRNG keyed (seed, stream_id(t, k)), with exactly the values
tt_zo_axpy_f32 adds for z (passes/zeroth_order.py): the trainable parameters are walked in
export order, each tensor starting on a fresh draw. ONE forward pass then carries a tangent
beside every activation that depends on a trainable parameter:

    t_y = J_x t_x + J_w v_w (+ v_b)      the op's registry JVP (tinytrain/ops)
    d_k = dL . v_k = JVP of the loss      (a batch mean; the device sums samples, then / batch)
    g   = sum_k d_k v_k / n               never stored: applied per k as w -= lr d_k/n v_k
                                          (momentum: m = mu m + g; w -= lr m), as zo does

E[(dL . v) v] = dL for Rademacher and unit-variance Gaussian v (E[v v^T] = I), so g is an
unbiased gradient estimate; unlike SPSA it has no eps and no finite-difference error.

Memory. Nothing is saved for a backward pass: a tangent lives exactly as long as its
activation, so the planner (liveness, in-place elementwise tangents, Reshape views) gives an
arena of about twice the inference arena. Parameter tangents of Gemm and Conv are not stored
at all: their JVP kernels draw v_w in weight memory order while they accumulate x . v_w, each
value once (a weight-stationary loop), and v_b likewise -- materialising v_w, even one
tensor at a time, would cost the largest trainable tensor (8 KB for the digits MLP, 50x its
inference arena). Trainable parameters of other ops (a scale in Mul, an offset in Add) are
small and are materialised as ``<param>__tan`` arena tensors by a "tangent" step just before
their use. Tangents of frozen parameters are zero and never drawn; activations before the
first trainable layer carry no tangent at all, so their JVP work is skipped.

Sparse perturbation: the trainable set (--trainable last:N, bias, names/regexes) is the set of
perturbed parameters: v is drawn only for those, which both cuts the estimator's variance
(it grows with the number of perturbed parameters) and the tangent work.

What each JVP step reads: the tangent of input i is J_i t_i, and J_i reads the same forward
values as the VJP with respect to input i (it is the same Jacobian block), so a JVP step reads
the union of ``vjp_needs[i]`` over its tangent inputs (Gemm with t_x reads W, with v_w reads x;
ReLU reads its output; MaxPool its input). The elementwise kernels are symmetric, so the C
reuses the VJP kernels with the tangent in place of the cotangent.
"""
from __future__ import annotations

import numpy as np

from ..ir import OUT, Tensor, TensorRole, get_op
from ..numerics.prng import Pcg32, stream_id
from .zeroth_order import GAUSS, GAUSS_SCALE, RADEMACHER

TAN = "__tan"
# Ops whose JVP kernels draw their own parameter tangents (weight-stationary, nothing stored).
GENERATES = {"Gemm": (1, 2), "Conv": (1, 2)}


def draws_of(size: int, dist: int) -> int:
    """PRNG draws one tensor of `size` values consumes (tt_zo_axpy_f32 / tt_tangent_fill_f32)."""
    return (int(size) + 31) // 32 if dist == RADEMACHER else int(size)


def draw_offsets(trainable, tensors, dist: int) -> dict[str, int]:
    """Draws to skip from the start of the (seed, step, k) stream to reach each trainable
    parameter's first tangent value (tt_prng_advance)."""
    out, off = {}, 0
    for p in trainable:
        out[p] = off
        off += draws_of(tensors[p].size, dist)
    return out


def tangent(seed: int, step: int, k: int, skip: int, shape, dist: int) -> np.ndarray:
    """The float32 tangent of one parameter, value for value what tt_tangent_fill_f32 writes."""
    n = int(np.prod(shape, dtype=np.int64)) if len(shape) else 1
    gen = Pcg32(seed, stream_id(step, k))
    gen.advance(skip)
    if dist == RADEMACHER:
        v = gen.rademacher(n).astype(np.float32)
    elif dist == GAUSS:
        v = gen.gauss(n).astype(np.float32) * GAUSS_SCALE
    else:
        raise ValueError(f"unknown tangent distribution {dist}")
    return v.reshape(shape)


def build_jvp_steps(graph, trainable, tensors, step_cls, loss_op, logits, label, loss):
    """Forward steps interleaved with tangent steps, then the loss and its tangent.

    Returns (forward_steps, train_steps). ``tensors`` gains the tangent tensors (``__tan``).
    Step kinds: "fwd"; "tangent" (materialise a small parameter tangent); "jvp" (inputs: the
    tangent tensors of ``tangents`` in order, the forward values of ``needs``, then the
    parameters of ``generated``, whose tangents the kernel draws); "loss_jvp" (loss, dL.v)."""
    train = set(trainable)
    has_tan: set[str] = set()
    fwd, steps = [], []

    def tan(name):
        t = name + TAN
        if t not in tensors:
            src = tensors[name]
            tensors[t] = Tensor(t, src.shape, src.dtype, TensorRole.ACTIVATION)
        return t

    for n in graph.nodes:
        s = step_cls("fwd", n.op, n.inputs, n.outputs, n.name, n.attrs)
        fwd.append(s)
        steps.append(s)
        op = get_op(n.op)
        tangents, generated = [], []
        for i in op.differentiable:
            if i >= len(n.inputs) or not n.inputs[i]:
                continue
            x = n.inputs[i]
            if x in train:
                if i in GENERATES.get(n.op, ()):
                    generated.append(i)
                else:
                    # inputs name the parameter (for shape and liveness; its values are
                    # not read: the tangent is drawn)
                    steps.append(step_cls("tangent", "Tangent", (x,), (tan(x),), x))
                    tangents.append(i)
            elif x in has_tan:
                tangents.append(i)
        if not tangents and not generated:
            continue
        needs: list[int] = []
        for i in sorted(tangents + generated):
            for j in op.vjp_needs[i]:
                if j not in needs:
                    needs.append(j)
        needs.sort(key=lambda j: (j == OUT, j))
        y = n.outputs[0]
        reads = tuple(y if j == OUT else n.inputs[j] for j in needs)
        drawn = tuple(n.inputs[i] for i in generated)
        steps.append(step_cls("jvp", n.op,
                              tuple(tan(n.inputs[i]) for i in tangents) + reads + drawn,
                              (tan(y),), n.name, n.attrs, needs=tuple(needs),
                              fwd_inputs=n.inputs, tangents=tuple(tangents),
                              generated=tuple(generated)))
        has_tan.add(y)
    if logits not in has_tan:
        from ..errors import ConfigError
        raise ConfigError("jvp training: no trainable parameter influences the loss "
                          "(check --trainable)")
    steps.append(step_cls("loss_jvp", loss_op, (logits, label, tan(logits)),
                          (loss, loss + TAN), loss_op))
    return tuple(fwd), tuple(steps)
