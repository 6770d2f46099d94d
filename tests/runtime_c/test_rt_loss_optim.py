"""Losses (softmax cross-entropy, MSE) and optimizers (SGD, momentum, Adam) against torch."""
import numpy as np
import pytest
import torch

F32 = np.float32


def _t(a, grad=False):
    return torch.from_numpy(np.array(a)).double().requires_grad_(grad)


def _xent(rt, logits, labels, scale, glogits="new"):
    rows, cols = logits.shape
    loss = rt.ffi.new("float *")
    g = np.full_like(logits, np.nan) if isinstance(glogits, str) else glogits
    st = rt.lib.tt_softmax_xent_f32(rt.f32(logits), rt.i32(labels), rows, cols, scale, loss,
                                    rt.null if g is None else rt.f32(g))
    return st, loss[0], g


def _xent_loss64(logits, labels):
    """Mean cross-entropy in float64 without the cancellation of log-softmax for confident,
    correct rows (torch returns 0 there, the true value is ~1e-26)."""
    out = []
    for x, lab in zip(logits.astype(np.float64), labels):
        m = x.max()
        e = np.exp(x - m)
        if x[lab] == m:
            out.append(np.log1p(np.delete(e, lab).sum()))
        else:
            out.append(np.log(e.sum()) - (x[lab] - m))
    return float(np.mean(out))


def _xent_grad64(logits, labels):
    """d(mean loss)/d(logits) in float64 with p_label - 1 written as -(sum of the other p)."""
    x = logits.astype(np.float64)
    p = np.exp(x - x.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    for r, lab in enumerate(labels):
        p[r, lab] = -np.delete(p[r], lab).sum()
    return p / len(labels)


@pytest.mark.parametrize("rows,cols,temp", [(1, 10, 1.0), (3, 7, 2.0), (4, 2, 1.0), (1, 10, 30.0),
                                            (2, 5, 200.0)])
def test_softmax_xent(rt, rng, rows, cols, temp):
    logits = (rng.standard_normal((rows, cols)) * temp).astype(F32)
    labels = rng.integers(0, cols, rows).astype(np.int32)
    labels[0] = int(np.argmax(logits[0]))  # a confident, correct row: the log1p path
    scale = F32(0.25)
    st, loss, g = _xent(rt, logits, labels, scale)
    rt.ok(st)
    lt = _t(logits, True)
    ref = torch.nn.functional.cross_entropy(lt, torch.from_numpy(labels).long())
    ref.backward()
    assert loss == pytest.approx(_xent_loss64(logits, labels), rel=1e-5, abs=1e-37)
    assert loss == pytest.approx(ref.item(), rel=1e-5, abs=1e-12)
    g64 = _xent_grad64(logits, labels)
    rt.assert_close(g, g64 * float(scale))
    # the same gradient as torch, up to torch's cancellation in p_label - 1
    np.testing.assert_allclose(g64, lt.grad.numpy(), rtol=1e-9, atol=1e-15)
    # in place over the logits, and loss only
    g2 = logits.copy()
    st, loss2, _ = _xent(rt, g2, labels, scale, g2)
    rt.ok(st)
    assert loss2 == loss and np.array_equal(g2, g)
    st, loss3, _ = _xent(rt, logits, labels, scale, None)
    rt.ok(st)
    assert loss3 == loss


def test_softmax_xent_errors(rt):
    logits = np.zeros((2, 3), F32)
    g = np.full_like(logits, 7.0)
    for bad in ([0, 3], [-1, 0]):
        st, _, _ = _xent(rt, logits, np.array(bad, np.int32), F32(1), g)
        assert st == rt.lib.TT_ERR_ARG
        assert np.all(g == 7.0)  # nothing written
    logits[1, 1] = np.nan
    st, loss, _ = _xent(rt, logits, np.array([0, 0], np.int32), F32(1))
    assert st == rt.lib.TT_ERR_NAN and np.isnan(loss)


@pytest.mark.parametrize("n", [1, 10, 257])
def test_mse(rt, rng, n):
    pred = rng.standard_normal(n).astype(F32)
    target = rng.standard_normal(n).astype(F32)
    scale = F32(0.5)
    loss = rt.ffi.new("float *")
    g = np.full_like(pred, np.nan)
    rt.ok(rt.lib.tt_mse_f32(rt.f32(pred), rt.f32(target), n, scale, loss, rt.f32(g)))
    pt = _t(pred, True)
    ref = torch.nn.functional.mse_loss(pt, _t(target))
    ref.backward()
    assert loss[0] == pytest.approx(ref.item(), rel=1e-5)
    rt.assert_close(g, pt.grad.numpy() * float(scale))
    g2 = pred.copy()
    rt.ok(rt.lib.tt_mse_f32(rt.f32(g2), rt.f32(target), n, scale, loss, rt.f32(g2)))
    assert np.array_equal(g2, g)
    rt.ok(rt.lib.tt_mse_f32(rt.f32(pred), rt.f32(target), n, scale, rt.null, rt.null))
    assert rt.lib.tt_mse_f32(rt.f32(pred), rt.f32(target), 0, scale, loss, rt.null) == rt.lib.TT_ERR_ARG


# ------------------------------------------------------------------ optimizers

def _run_torch(opt_name, w0, grads, **kw):
    p = torch.nn.Parameter(torch.from_numpy(w0.copy()).double())
    opt = {"sgd": torch.optim.SGD, "momentum": torch.optim.SGD, "adam": torch.optim.Adam}[opt_name]
    o = opt([p], **kw)
    for g in grads:
        p.grad = torch.from_numpy(g.copy()).double()
        o.step()
    state = o.state[p]
    return p.detach().numpy(), state


def _f(v):
    return float(F32(v))  # hyper-parameters as the float32 the C code sees


@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_sgd(rt, rng, wd):
    n, lr = 37, 0.05
    w = rng.standard_normal(n).astype(F32)
    grads = [rng.standard_normal(n).astype(F32) for _ in range(3)]
    ref, _ = _run_torch("sgd", w, grads, lr=_f(lr), weight_decay=_f(wd))
    for g in grads:
        gc = g.copy()
        rt.ok(rt.lib.tt_sgd_upd_f32(rt.f32(w), rt.f32(gc), n, lr, wd))
        assert not gc.any()  # gradient zeroed
    rt.assert_close(w, ref)


@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_momentum(rt, rng, wd):
    n, lr, mu = 41, 0.05, 0.9
    w = rng.standard_normal(n).astype(F32)
    v = np.zeros(n, F32)
    grads = [rng.standard_normal(n).astype(F32) for _ in range(4)]
    ref, state = _run_torch("momentum", w, grads, lr=_f(lr), momentum=_f(mu), weight_decay=_f(wd))
    for g in grads:
        gc = g.copy()
        rt.ok(rt.lib.tt_momentum_upd_f32(rt.f32(w), rt.f32(gc), rt.f32(v), n, lr, mu, wd))
        assert not gc.any()
    rt.assert_close(w, ref)
    rt.assert_close(v, state["momentum_buffer"].numpy())


@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_adam(rt, rng, wd):
    n, lr, b1, b2, eps = 33, 0.01, 0.9, 0.999, 1e-8
    w = rng.standard_normal(n).astype(F32)
    m, v = np.zeros(n, F32), np.zeros(n, F32)
    grads = [rng.standard_normal(n).astype(F32) * F32(0.1) for _ in range(6)]
    ref, state = _run_torch("adam", w, grads, lr=_f(lr), betas=(_f(b1), _f(b2)), eps=_f(eps),
                            weight_decay=_f(wd))
    for t, g in enumerate(grads, start=1):
        gc = g.copy()
        rt.ok(rt.lib.tt_adam_upd_f32(rt.f32(w), rt.f32(gc), rt.f32(m), rt.f32(v), n, lr, b1, b2, eps,
                                     wd, t))
        assert not gc.any()
    rt.assert_close(w, ref)
    rt.assert_close(m, state["exp_avg"].numpy())
    rt.assert_close(v, state["exp_avg_sq"].numpy())


def test_adam_late_step_and_errors(rt, rng):
    # bias correction at a large step count (square-and-multiply beta^t)
    n = 8
    w = rng.standard_normal(n).astype(F32)
    m = rng.standard_normal(n).astype(F32) * F32(0.01)
    v = np.abs(rng.standard_normal(n)).astype(F32) * F32(1e-4)
    g = rng.standard_normal(n).astype(F32) * F32(0.01)
    t, lr, b1, b2, eps = 12345, 1e-3, 0.9, 0.999, 1e-8
    wd, md, vd, gd = (a.astype(np.float64) for a in (w, m, v, g))
    md = _f(b1) * md + (1 - _f(b1)) * gd
    vd = _f(b2) * vd + (1 - _f(b2)) * gd * gd
    ref = wd - lr / (1 - _f(b1) ** t) * md / (np.sqrt(vd) / np.sqrt(1 - _f(b2) ** t) + _f(eps))
    rt.ok(rt.lib.tt_adam_upd_f32(rt.f32(w), rt.f32(g), rt.f32(m), rt.f32(v), n, lr, b1, b2, eps, 0.0, t))
    rt.assert_close(w, ref)
    assert rt.lib.tt_adam_upd_f32(rt.f32(w), rt.f32(g), rt.f32(m), rt.f32(v), n, lr, b1, b2, eps,
                                  0.0, 0) == rt.lib.TT_ERR_ARG
    assert rt.lib.tt_sgd_upd_f32(rt.null, rt.f32(g), n, 0.1, 0.0) == rt.lib.TT_ERR_ARG
    assert rt.lib.tt_momentum_upd_f32(rt.f32(w), rt.f32(g), rt.f32(v), -1, 0.1, 0.9, 0.0) == rt.lib.TT_ERR_ARG
