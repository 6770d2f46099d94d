"""Whole training steps composed from the numerics kernels, run twice - once through the C
library, once through the numpy twins - for an int8 MLP (QAS-scaled integer SGD with
stochastic rounding, dynamic power-of-two gradient exponents) and an FP16 MLP (loss scaling,
momentum, fp32 master weights): every weight, state word and loss is identical after every
step, for several seeds, and the loss goes down. This is the recipe a quantize / fp16 pass
emits (see docs/fixed-point.md, "Wiring a training step")."""
import numpy as np
import pytest

from tinytrain.numerics import fixed as fx, fp16, fp16_kernels as hk, qkernels as qk
from tinytrain.numerics.prng import Pcg32


def dataset(seed, n=96, d=8, c=3):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 1.5, (c, d))
    labels = rng.integers(0, c, n)
    x = centers[labels] + rng.normal(0, 0.6, (n, d))
    return x.astype(np.float32), labels.astype(np.int32)


# ---- int8 --------------------------------------------------------------------------------

class QC:
    """C backend (same call shapes as the numpy twins)."""

    def __init__(self, nl, seed):
        self.nl, self.rng = nl, nl.prng(seed, 99)

    def gemm_fwd(self, x, w, b, n, k, m, rq):
        nl, y, keep = self.nl, np.zeros(n * m, np.int8), []
        nl.ok(nl.lib.tt_gemm_fwd_q8(nl.ptr(x), nl.ptr(w), nl.ptr(b), nl.ptr(y), n, k, m,
                                    nl.requant(rq, 8, keep), nl.NULL))
        return y

    def xent(self, logits, label, c, m, sh):
        nl, lab = self.nl, np.array([label], np.int32)
        loss, g = nl.ffi.new("int32_t *"), np.zeros(c, np.int32)
        nl.ok(nl.lib.tt_softmax_xent_q8(nl.ptr(logits), nl.ptr(lab), 1, c, m, sh, loss, nl.ptr(g)))
        return loss[0], g

    def gquant(self, acc):
        nl, sh = self.nl, self.nl.ffi.new("int *")
        q = np.zeros(acc.size, np.int8)
        nl.ok(nl.lib.tt_grad_quant_pow2_q32_q8(nl.ptr(acc), nl.ptr(q), acc.size, sh))
        return q, sh[0]

    def bwd(self, gy, w, x, n, k, m):
        nl = self.nl
        gx, gw, gb = np.zeros(n * k, np.int32), np.zeros(m * k, np.int32), np.zeros(m, np.int32)
        nl.ok(nl.lib.tt_gemm_bwd_x_q8(nl.ptr(gy), nl.ptr(w), nl.ptr(gx), n, k, m, 0))
        nl.ok(nl.lib.tt_gemm_bwd_w_q8(nl.ptr(gy), nl.ptr(x), nl.ptr(gw), n, k, m, 0))
        nl.ok(nl.lib.tt_bias_bwd_q8(nl.ptr(gy), nl.ptr(gb), n, m, 1, 0))
        return gx, gw, gb

    def relu_bwd(self, g, y):
        nl, mask, out = self.nl, np.zeros((y.size + 7) // 8, np.uint8), np.zeros(g.size, np.int8)
        nl.ok(nl.lib.tt_relu_mask_pack_q8(nl.ptr(y), nl.ptr(mask), y.size))
        nl.ok(nl.lib.tt_relu_bwd_x_mask_q8(nl.ptr(g), nl.ptr(mask), nl.ptr(out), g.size))
        return out

    def sgd(self, w, g, m, sh, bits):
        nl, w, g = self.nl, w.copy(), g.copy()
        fn = nl.lib.tt_sgd_upd_q8 if bits == 8 else nl.lib.tt_sgd_upd_q32
        nl.ok(fn(nl.ptr(w), nl.ptr(g), w.size, m, sh, 1, self.rng, nl.NULL))
        return w


class QPy:
    def __init__(self, seed):
        self.rng = Pcg32(seed, 99)

    def gemm_fwd(self, x, w, b, n, k, m, rq):
        return qk.gemm_fwd(x, w, b, n, k, m, rq, 8)[0]

    def xent(self, logits, label, c, m, sh):
        return qk.softmax_xent(logits, [label], 1, c, m, sh)

    def gquant(self, acc):
        return fx.grad_quant_pow2(acc, 8)

    def bwd(self, gy, w, x, n, k, m):
        return (qk.gemm_bwd_x(gy, w, n, k, m), qk.gemm_bwd_w(gy, x, n, k, m),
                qk.bias_bwd(gy, n, m, 1))

    def relu_bwd(self, g, y):
        return qk.relu_bwd_x_mask(g, qk.relu_mask_pack(y))

    def sgd(self, w, g, m, sh, bits):
        return qk.sgd_upd(w.reshape(-1), g, m, sh, qk.ROUND_STOCHASTIC, self.rng, bits)[0].reshape(w.shape)


def q8_train(be, x_f, labels, seed, steps, lr=0.05):
    """Int8 MLP d -> h -> c. Static scales from float ranges (as a calibration would give);
    gradient exponents dynamic; updates QAS-scaled (fixed.qas_*), stochastic rounding."""
    rng = np.random.default_rng(seed)
    d, h, c = x_f.shape[1], 16, 3
    s_x = float(np.abs(x_f).max()) / 127
    s_w1, s_w2 = 0.5 / 127, 0.5 / 127
    s_y1, s_l = 4.0 / 127, 8.0 / 127
    w1 = rng.integers(-60, 61, (h, d)).astype(np.int8)
    w2 = rng.integers(-60, 61, (c, h)).astype(np.int8)
    b1, b2 = np.zeros(h, np.int32), np.zeros(c, np.int32)
    m1, sh1 = fx.tflite_output_multiplier(s_x, s_w1, s_y1)
    m2, sh2 = fx.tflite_output_multiplier(s_y1, s_w2, s_l)
    rq1 = fx.Requant(fx.RQ_TFLITE, (m1,), (sh1,), act_min=0)          # fused ReLU
    rq2 = fx.Requant(fx.RQ_TFLITE, (m2,), (sh2,))
    lm, lsh = fx.quantize_multiplier(s_l)
    losses, trace = [], []
    for step in range(steps):
        i = step % len(labels)
        x = np.clip(np.round(x_f[i] / s_x), -127, 127).astype(np.int8)
        y1 = be.gemm_fwd(x, w1, b1, 1, d, h, rq1)
        logits = be.gemm_fwd(y1, w2, b2, 1, h, c, rq2)
        loss, g30 = be.xent(logits, int(labels[i]), c, lm, lsh)
        gl, r_l = be.gquant(np.asarray(g30, np.int32))            # real dL/dlogit = gl*2^(r_l-30)
        e_l = r_l - 30
        gx2, gw2, gb2 = be.bwd(gl, w2, y1, 1, h, c)                # scales 2^e_l * (s_w2 | s_y1 | 1)
        gy1, r_1 = be.gquant(np.asarray(gx2, np.int32))
        gy1 = be.relu_bwd(gy1, y1)                                 # dL/dy1 real: gy1*2^(e_l+r_1)*s_w2
        _, gw1, gb1 = be.bwd(gy1, w1, x, 1, d, h)
        # QAS: integer step = lr * s_acc / s_W * A_W (weights), lr * s_acc / s_b * A_b (biases)
        e1 = e_l + r_1
        for (w, g, s_acc_static, e, s_w, s_in, bits, name) in (
                (w2, gw2, s_y1, e_l, s_w2, s_y1, 8, "w2"), (b2, gb2, 1.0, e_l, s_w2, s_y1, 32, "b2"),
                (w1, gw1, s_w2 * s_x, e1, s_w1, s_x, 8, "w1"), (b1, gb1, s_w2, e1, s_w1, s_x, 32, "b1")):
            if bits == 8:
                m, sh = fx.qas_weight_multiplier(lr * s_w * s_acc_static, s_w)
            else:
                m, sh = fx.qas_bias_multiplier(lr * s_w * s_in * s_acc_static, s_w, s_in)
            sh += e
            if sh < -31:                      # below the resolution of the update: skip
                continue
            new = be.sgd(w, np.asarray(g, np.int32), m, sh, bits)
            {"w2": w2, "b2": b2, "w1": w1, "b1": b1}[name][...] = new
        losses.append(loss / 2**24)
        trace.append((int(loss), w1.copy(), w2.copy(), b1.copy(), b2.copy()))
    return losses, trace


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_int8_mlp_steps_bit_exact_and_learning(nl, seed):
    x, labels = dataset(seed)
    steps = 3 * len(labels)
    l_c, t_c = q8_train(QC(nl, seed), x, labels, seed, steps)
    l_py, t_py = q8_train(QPy(seed), x, labels, seed, steps)
    for a, b in zip(t_c, t_py):
        assert a[0] == b[0]
        for u, v in zip(a[1:], b[1:]):
            np.testing.assert_array_equal(u, v)
    n = len(labels)
    assert np.mean(l_c[-n:]) < 0.7 * np.mean(l_c[:n]), (np.mean(l_c[:n]), np.mean(l_c[-n:]))


# ---- fp16 --------------------------------------------------------------------------------

def f16_train(nl, x_f, labels, seed, steps, use_c, lr=0.01, loss_scale=1024.0):
    rng = np.random.default_rng(seed)
    d, h, c = x_f.shape[1], 16, 3
    H = fp16.f32_to_f16
    w1m = (rng.normal(0, 0.3, (h, d))).astype(np.float32).reshape(-1)
    w2m = (rng.normal(0, 0.3, (c, h))).astype(np.float32).reshape(-1)
    w1, w2 = H(w1m), H(w2m)
    b1, b2 = np.zeros(h, np.uint16), np.zeros(c, np.uint16)
    v = {k: np.zeros(n, np.float32) for k, n in (("w1", h * d), ("w2", c * h), ("b1", h), ("b2", c))}
    masters = {"w1": w1m, "w2": w2m, "b1": np.zeros(h, np.float32), "b2": np.zeros(c, np.float32)}
    params = {"w1": w1, "w2": w2, "b1": b1, "b2": b2}
    losses, trace, clean, skipped = [], [], 0, 0
    for step in range(steps):
        i = step % len(labels)
        x = H(x_f[i])
        lab = np.array([labels[i]], np.int32)
        if use_c:
            L = nl.lib
            y1 = np.zeros(h, np.uint16)
            nl.ok(L.tt_gemm_fwd_f16(nl.ptr(x), nl.ptr(w1), nl.ptr(b1), nl.ptr(y1), 1, d, h))
            nl.ok(L.tt_relu_fwd_f16(nl.ptr(y1), nl.ptr(y1), h))
            lg = np.zeros(c, np.uint16)
            nl.ok(L.tt_gemm_fwd_f16(nl.ptr(y1), nl.ptr(w2), nl.ptr(b2), nl.ptr(lg), 1, h, c))
            lossp, gl = nl.ffi.new("float *"), np.zeros(c, np.uint16)
            nl.ok(L.tt_softmax_xent_f16(nl.ptr(lg), nl.ptr(lab), 1, c, loss_scale, lossp, nl.ptr(gl)))
            loss = np.float32(lossp[0])
            gw2, gb2, gx2 = np.zeros(c * h, np.uint16), np.zeros(c, np.uint16), np.zeros(h, np.uint16)
            nl.ok(L.tt_gemm_bwd_w_f16(nl.ptr(gl), nl.ptr(y1), nl.ptr(gw2), 1, h, c, 0))
            nl.ok(L.tt_bias_bwd_f16(nl.ptr(gl), nl.ptr(gb2), 1, c, 1, 0))
            nl.ok(L.tt_gemm_bwd_x_f16(nl.ptr(gl), nl.ptr(w2), nl.ptr(gx2), 1, h, c, 0))
            nl.ok(L.tt_relu_bwd_x_f16(nl.ptr(gx2), nl.ptr(y1), nl.ptr(gx2), h, 0))
            gw1, gb1 = np.zeros(h * d, np.uint16), np.zeros(h, np.uint16)
            nl.ok(L.tt_gemm_bwd_w_f16(nl.ptr(gx2), nl.ptr(x), nl.ptr(gw1), 1, d, h, 0))
            nl.ok(L.tt_bias_bwd_f16(nl.ptr(gx2), nl.ptr(gb1), 1, h, 1, 0))
            grads = {"w1": gw1, "w2": gw2, "b1": gb1, "b2": gb2}
            finite = all(L.tt_check_finite_f16(nl.ptr(g), g.size) == L.TT_OK
                         for g in grads.values())
            for k in params if finite else ():
                nl.ok(L.tt_momentum_upd_f16_v32(nl.ptr(params[k]), nl.ptr(grads[k]), nl.ptr(v[k]),
                                                nl.ptr(masters[k]), params[k].size, lr, 0.9, 0.0,
                                                1.0 / loss_scale))
        else:
            y1 = hk.relu_fwd(hk.gemm_fwd(x, w1, b1, 1, d, h))
            lg = hk.gemm_fwd(y1, w2, b2, 1, h, c)
            loss, gl, _ = hk.softmax_xent(lg, lab, 1, c, loss_scale)
            gw2, gb2 = hk.gemm_bwd_w(gl, y1, 1, h, c), hk.bias_bwd(gl, 1, c, 1)
            gx2 = hk.relu_bwd_x(hk.gemm_bwd_x(gl, w2, 1, h, c), y1)
            gw1, gb1 = hk.gemm_bwd_w(gx2, x, 1, d, h), hk.bias_bwd(gx2, 1, h, 1)
            grads = {"w1": gw1, "w2": gw2, "b1": gb1, "b2": gb2}
            finite = all(fp16.all_finite_f16(g) for g in grads.values())
            for k in params if finite else ():
                wn, vn, mn, ok = hk.momentum_upd(params[k], grads[k], v[k], masters[k], lr, 0.9,
                                                 0.0, 1.0 / loss_scale, True)
                assert ok
                params[k][...], v[k][...], masters[k][...] = wn, vn, mn
        # dynamic loss scaling: halve on overflow (the step is skipped), double after 32
        # clean steps; powers of two, so the scaling itself never rounds
        if finite:
            clean += 1
            if clean == 32 and loss_scale < 2.0**15:
                loss_scale, clean = loss_scale * 2, 0
        else:
            loss_scale, clean, skipped = loss_scale / 2, 0, skipped + 1
        losses.append(float(loss))
        trace.append((np.float32(loss).view(np.uint32), np.float32(loss_scale)) + tuple(p.copy() for p in params.values())
                     + tuple(m.view(np.uint32).copy() for m in masters.values()))
    assert skipped < steps // 4
    return losses, trace


@pytest.mark.parametrize("seed", [0, 1])
def test_fp16_mlp_steps_bit_exact_and_learning(nl, seed):
    x, labels = dataset(10 + seed)
    steps = 2 * len(labels)
    l_c, t_c = f16_train(nl, x, labels, seed, steps, True)
    l_py, t_py = f16_train(nl, x, labels, seed, steps, False)
    for a, b in zip(t_c, t_py):
        for u, w in zip(a, b):
            np.testing.assert_array_equal(u, w)
    n = len(labels)
    assert np.mean(l_c[-n:]) < 0.5 * np.mean(l_c[:n])
