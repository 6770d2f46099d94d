"""Forward-mode (JVP) forward-gradient training: numpy reference, tangent kernels and generated C."""
import numpy as np
import pytest

from tinytrain.datasets import make_adaptation_data
from tinytrain.errors import ConfigError
from tinytrain.frontend.builder import GraphBuilder
from tinytrain.ir import get_op
from tinytrain.numerics.prng import Pcg32, stream_id
from tinytrain.passes import TrainConfig, build_training_program
from tinytrain.passes.forward_mode import draw_offsets, tangent
from tinytrain.passes.memory_plan import plan_arena
from tinytrain.passes.zeroth_order import DISTS, zo_axpy
from tinytrain.pipeline import export, load_model
from tinytrain.reference import ReferenceTrainer
from tinytrain.sim.host import HostModel

from ..conftest import MODELS

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def data():
    return make_adaptation_data(0)


def _cos(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def _bp_grad(g, trainable, x, y):
    p = build_training_program(g, TrainConfig(trainable=trainable, fuse_update=False))
    tr = ReferenceTrainer(p, np.float64)
    _, grads = tr.loss_and_grads(x, y)
    return np.concatenate([grads[k].ravel() for k in p.trainable])


def _v(p, step, k):
    """The tangent of every perturbed parameter, concatenated (what the update applies)."""
    cfg = p.config
    dist = DISTS[cfg.zo_dist]
    offs = draw_offsets(p.fg_params, p.tensors, dist)
    return np.concatenate([tangent(cfg.seed, step, k, offs[q], p.tensors[q].shape, dist).ravel()
                           for q in p.fg_params]).astype(np.float64)


def scaled_residual_net(seed=0):
    """Gemm, a trainable per-feature scale (Mul) and offset (Add), a residual join, Tanh,
    Softmax-free logits: exercises materialised parameter tangents and Add/Mul tangents."""
    b = GraphBuilder(seed=seed)
    x = b.input("x", (1, 6))
    h = b.op("Relu", [b.gemm(x, 8, "fc1")], name="act1")
    s = b.param("scale", 1 + 0.1 * b.rng.normal(size=(8,)))
    o = b.param("offset", 0.1 * b.rng.normal(size=(8,)), "bias")
    m = b.op("Mul", [h, s], name="mul")
    a = b.op("Add", [m, o], name="add")
    r = b.op("Add", [a, h], name="res")
    t = b.op("Tanh", [r], name="act2")
    return b.build(b.gemm(t, 4, "fc2"))


# ---------------------------------------------------------------------------- tangent draws
@pytest.mark.parametrize("dist", ["rademacher", "gaussian"])
def test_tangent_is_the_zo_perturbation(dist):
    """v of each parameter is exactly z of tt_zo_axpy_f32 (one stream walking the trainable
    parameters in order), so the update can regenerate it with the zo kernel."""
    g = load_model(MODELS / "cnn.onnx")
    p = build_training_program(g, TrainConfig(algo="jvp", zo_dist=dist, seed=5))
    gen = Pcg32(5, stream_id(3, 1))
    z = [np.zeros(p.tensors[q].shape, np.float32) for q in p.fg_params]
    for zz in z:
        zo_axpy(zz, 1.0, gen, DISTS[dist])
    np.testing.assert_array_equal(np.concatenate([a.ravel() for a in z]),
                                  _v(p, 3, 1).astype(np.float32))


# ---------------------------------------------------------------------------- unbiasedness
@pytest.mark.parametrize("dist", ["rademacher", "gaussian"])
def test_numpy_jvp_estimate_is_unbiased(data, dist):
    """Mean of 6,400 forward-gradient estimates (dL.v) v (float64, mlp last layer: 330
    parameters) vs the backprop gradient of the same batch: cosine similarity >= 0.95."""
    g = load_model(MODELS / "mlp.onnx")
    x, y = data["x_train"][:8], data["y_train"][:8]
    ref = _bp_grad(g, "last:1", x, y)
    p = build_training_program(g, TrainConfig(algo="jvp", trainable="last:1", zo_dist=dist))
    tr = ReferenceTrainer(p, np.float64)
    n = 6400
    est = np.zeros_like(ref)
    for k in range(n):
        _, d = tr.directional_derivative(x, y, k)
        v = _v(p, 0, k)
        assert d == pytest.approx(float(ref @ v), rel=1e-9, abs=1e-12)  # exact: JVP is linear
        est += d * v
    assert _cos(est / n, ref) >= 0.95


def test_c_jvp_updates_follow_the_gradient(tmp_path, data):
    """Generated C, SGD with a small lr: the total weight change over 100 steps x 64 tangents
    on one fixed batch of 4 (6,400 directions) points along -gradient (cosine >= 0.95)."""
    g = load_model(MODELS / "mlp.onnx")
    x, y = data["x_train"][:4], data["y_train"][:4]
    ref = _bp_grad(g, "last:1", x, y)
    cfg = TrainConfig(algo="jvp", trainable="last:1", lr=1e-4, perturbations=64, batch=4)
    res, p, plan = export(g, tmp_path / "jvp", cfg, command="test")
    c = HostModel(res.out_dir)
    w0 = np.concatenate([c.params[k].ravel() for k in p.trainable]).astype(np.float64)
    for _ in range(100):
        c.train_step(x, y)
    w1 = np.concatenate([c.params[k].ravel() for k in p.trainable]).astype(np.float64)
    assert c.step == 100
    assert _cos(-(w1 - w0), ref) >= 0.95


# ---------------------------------------------------------------------------- torch oracle
def _torch_dd(g, p, x, y, k):
    """dL.v of the whole model by torch.func.jvp in float64 (tinytrain.oracles.torch_ir)."""
    from tinytrain.oracles.torch_ir import TorchModel
    cfg = p.config
    dist = DISTS[cfg.zo_dist]
    offs = draw_offsets(p.fg_params, p.tensors, dist)
    model = TorchModel(g, dtype=torch.float64)
    names = list(p.fg_params)
    primals = tuple(model.tensor(q).detach() for q in names)
    tangents = tuple(torch.tensor(tangent(cfg.seed, 0, k, offs[q], p.tensors[q].shape, dist),
                                  dtype=torch.float64) for q in names)
    xt = torch.tensor(np.asarray(x, np.float64))
    yt = torch.tensor(np.asarray(y))

    def f(*ws):
        params = {model.names[q]: w for q, w in zip(names, ws)}
        z = torch.func.functional_call(model, params, (xt,))
        if cfg.loss == "mse":
            return torch.nn.functional.mse_loss(z, yt)
        return torch.nn.functional.cross_entropy(z, yt)

    loss, dd = torch.func.jvp(f, primals, tangents)
    return float(loss), float(dd)


@pytest.mark.parametrize("model,trainable,dist", [
    ("mlp", "all", "rademacher"), ("cnn", "all", "gaussian"), ("dscnn", "last:3", "rademacher"),
    ("resnet8", "all", "gaussian"), ("resnet8", "bias", "rademacher")])
def test_directional_derivative_matches_torch_jvp(data, model, trainable, dist):
    g = load_model(MODELS / f"{model}.onnx")
    p = build_training_program(g, TrainConfig(algo="jvp", trainable=trainable, zo_dist=dist,
                                              seed=11))
    tr = ReferenceTrainer(p, np.float64)
    x, y = data["x_train"][:3], data["y_train"][:3]
    for k in range(2):
        loss, d = tr.directional_derivative(x, y, k)
        tl, td = _torch_dd(g, p, x, y, k)
        assert loss == pytest.approx(tl, rel=1e-9)
        assert abs(d - td) <= 1e-6 * abs(td), (d, td)


def test_parameter_tangents_of_mul_and_add(rng):
    """Materialised tangents (a trainable Mul scale and Add offset), residual join, MSE."""
    g = scaled_residual_net(2)
    p = build_training_program(g, TrainConfig(algo="jvp", loss="mse", seed=4))
    assert [s.node for s in p.train_steps if s.kind == "tangent"] == ["scale", "offset"]
    tr = ReferenceTrainer(p, np.float64)
    x, y = rng.normal(size=(5, 6)), rng.normal(size=(5, 4))
    loss, d = tr.directional_derivative(x, y, 0)
    tl, td = _torch_dd(g, p, x, y, 0)
    assert loss == pytest.approx(tl, rel=1e-9)
    assert abs(d - td) <= 1e-6 * abs(td)


# ---------------------------------------------------------------------------- C kernels
@pytest.fixture(scope="module")
def jvp_lib(tmp_path_factory):
    """The fp32 runtime (incl. tt_jvp_f32.c) as a shared library, for kernel-level checks."""
    import cffi
    import subprocess
    from tinytrain.codegen.emit import RUNTIME
    from tinytrain.sim.host import HOST_CFLAGS, _compile_objects, find_cc
    cc = find_cc()
    srcs = sorted((RUNTIME / "src").glob("*_f32.c")) + [RUNTIME / "src" / n
                                                         for n in ("tt_prng.c", "tt_util.c")]
    objs = _compile_objects(cc, HOST_CFLAGS, srcs, RUNTIME / "include")
    so = tmp_path_factory.mktemp("jvp") / "libtt_jvp.so"
    subprocess.run([cc, "-shared", "-o", str(so), *map(str, objs), "-lm"], check=True)
    ffi = cffi.FFI()
    ffi.cdef("""
        typedef int tt_status;
        typedef struct { uint64_t state; uint64_t inc; } tt_prng;
        typedef struct { tt_prng st; uint32_t word; int bits; int dist; } tt_tangent;
        typedef struct { int in_c, in_h, in_w, out_c, out_h, out_w, k_h, k_w, stride_h,
                         stride_w, pad_top, pad_left, groups; } tt_conv2d_params;
        typedef struct { int c, in_h, in_w, out_h, out_w, k_h, k_w, stride_h, stride_w, pad_top,
                         pad_left; int count_include_pad; } tt_pool2d_params;
        typedef struct { int shape[4]; int a_stride[4]; int b_stride[4]; } tt_bcast4;
        tt_status tt_tangent_init(tt_tangent *g, uint64_t seed, uint64_t stream, uint32_t skip,
                                  int dist);
        tt_status tt_tangent_fill_f32(tt_tangent *g, float *v, int n);
        tt_status tt_gemm_jvp_f32(const float *x, const float *tx, const float *w, float *ty,
                                  int n, int k, int m, tt_tangent *vw, tt_tangent *vb);
        tt_status tt_conv2d_jvp_f32(const tt_conv2d_params *p, const float *x, const float *tx,
                                    const float *w, float *ty, tt_tangent *vw, tt_tangent *vb);
        tt_status tt_maxpool2d_jvp_f32(const tt_pool2d_params *p, const float *x,
                                       const float *tx, float *ty);
        tt_status tt_add_jvp_f32(const tt_bcast4 *p, const float *ta, const float *tb, float *ty);
        tt_status tt_mul_jvp_f32(const tt_bcast4 *p, const float *a, const float *b,
                                 const float *ta, const float *tb, float *ty);
    """)
    lib = ffi.dlopen(str(so))

    class L:
        pass
    o = L()
    o.ffi, o.lib = ffi, lib
    o.f = lambda a: ffi.cast("float *", ffi.from_buffer(a)) if a is not None else ffi.NULL

    def gen(seed, step, k, skip, dist):
        t = ffi.new("tt_tangent *")
        assert lib.tt_tangent_init(t, seed, stream_id(step, k), skip, DISTS[dist]) == 0
        return t
    o.gen = gen
    return o


@pytest.mark.parametrize("dist", ["rademacher", "gaussian"])
def test_c_tangent_draws_bit_exact(jvp_lib, dist):
    for skip, n in ((0, 1), (0, 100), (7, 33), (1000, 257)):
        v = np.empty(n, np.float32)
        assert jvp_lib.lib.tt_tangent_fill_f32(jvp_lib.gen(9, 4, 2, skip, dist), jvp_lib.f(v), n) == 0
        np.testing.assert_array_equal(v, tangent(9, 4, 2, skip, (n,), DISTS[dist]))


@pytest.mark.parametrize("dist", ["rademacher", "gaussian"])
@pytest.mark.parametrize("has", ["tx", "w", "b", "tx,w,b", "w,b"])
def test_c_gemm_jvp(jvp_lib, rng, dist, has):
    n, k, m = 2, 37, 5
    x, tx = rng.normal(size=(n, k)).astype(np.float32), rng.normal(size=(n, k)).astype(np.float32)
    w = rng.normal(size=(m, k)).astype(np.float32)
    vw, vb = tangent(1, 0, 0, 0, (m, k), DISTS[dist]), tangent(1, 0, 0, 50, (m,), DISTS[dist])
    use = has.split(",")
    ty = np.empty((n, m), np.float32)
    L = jvp_lib
    assert L.lib.tt_gemm_jvp_f32(L.f(x), L.f(tx) if "tx" in use else L.ffi.NULL, L.f(w),
                                 L.f(ty), n, k, m,
                                 L.gen(1, 0, 0, 0, dist) if "w" in use else L.ffi.NULL,
                                 L.gen(1, 0, 0, 50, dist) if "b" in use else L.ffi.NULL) == 0
    want = get_op("Gemm").jvp([x.astype(float), w.astype(float), None],
                              [tx if "tx" in use else None, vw if "w" in use else None,
                               vb if "b" in use else None], np.zeros((n, m)), {})
    np.testing.assert_allclose(ty, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("geom", [
    # (c, h, w, m, k, stride, pads (t, l, b, r), group)
    (3, 7, 6, 4, 3, 1, (1, 1, 1, 1), 1), (4, 8, 8, 4, 3, 2, (1, 0, 1, 2), 4),
    (2, 5, 9, 6, 1, 1, (0, 0, 0, 0), 2), (3, 9, 7, 2, 5, 3, (2, 2, 0, 1), 1)])
@pytest.mark.parametrize("has", ["tx,w,b", "w", "tx,b"])
def test_c_conv_jvp(jvp_lib, rng, geom, has):
    c, h, wd, m, k, s, pads, grp = geom
    attrs = {"strides": (s, s), "pads": pads, "group": grp}
    op = get_op("Conv")
    w = rng.normal(size=(m, c // grp, k, k)).astype(np.float32)
    x = rng.normal(size=(1, c, h, wd)).astype(np.float32)
    tx = rng.normal(size=x.shape).astype(np.float32)
    oshape = op.shape([x.shape, w.shape], attrs)
    use = has.split(",")
    vw, vb = tangent(2, 1, 0, 3, w.shape, 0), tangent(2, 1, 0, 500, (m,), 0)
    want = op.jvp([x, w], [tx if "tx" in use else None, vw if "w" in use else None,
                          vb if "b" in use else None], np.zeros(oshape, np.float32), attrs)
    p = jvp_lib.ffi.new("tt_conv2d_params *", dict(
        in_c=c, in_h=h, in_w=wd, out_c=m, out_h=oshape[2], out_w=oshape[3], k_h=k, k_w=k,
        stride_h=s, stride_w=s, pad_top=pads[0], pad_left=pads[1], groups=grp))
    ty = np.empty(oshape, np.float32)
    L = jvp_lib
    assert L.lib.tt_conv2d_jvp_f32(p, L.f(x), L.f(tx) if "tx" in use else L.ffi.NULL, L.f(w),
                                   L.f(ty), L.gen(2, 1, 0, 3, "rademacher") if "w" in use
                                   else L.ffi.NULL,
                                   L.gen(2, 1, 0, 500, "rademacher") if "b" in use
                                   else L.ffi.NULL) == 0
    np.testing.assert_allclose(ty, want, rtol=1e-5, atol=1e-5)


def test_c_maxpool_add_mul_jvp(jvp_lib, rng):
    L = jvp_lib
    x = rng.normal(size=(1, 3, 7, 6)).astype(np.float32)
    x[0, 1, 2, 2] = x[0, 1, 2, 3]                      # a tie: the first maximum wins
    tx = rng.normal(size=x.shape).astype(np.float32)
    attrs = {"kernel_shape": (3, 2), "strides": (2, 2), "pads": (1, 0, 1, 1)}
    op = get_op("MaxPool")
    y = op.forward([x], attrs)
    p = L.ffi.new("tt_pool2d_params *", dict(c=3, in_h=7, in_w=6, out_h=y.shape[2],
                                             out_w=y.shape[3], k_h=3, k_w=2, stride_h=2,
                                             stride_w=2, pad_top=1, pad_left=0))
    ty = np.empty(y.shape, np.float32)
    assert L.lib.tt_maxpool2d_jvp_f32(p, L.f(x), L.f(tx), L.f(ty)) == 0
    np.testing.assert_array_equal(ty, op.jvp([x], [tx], y, attrs))
    # [2, 3] with a broadcast [3] operand (strides 0 along rows)
    a, b = rng.normal(size=(2, 3)).astype(np.float32), rng.normal(size=(3,)).astype(np.float32)
    ta, tb = rng.normal(size=a.shape).astype(np.float32), rng.normal(size=b.shape).astype(np.float32)
    bc = L.ffi.new("tt_bcast4 *", {"shape": [1, 1, 2, 3], "a_stride": [0, 0, 3, 1],
                                   "b_stride": [0, 0, 0, 1]})
    for ua, ub in ((1, 1), (1, 0), (0, 1)):
        t_a, t_b = (ta if ua else None), (tb if ub else None)
        for name, fn in (("Add", lambda o: L.lib.tt_add_jvp_f32(bc, L.f(t_a), L.f(t_b), L.f(o))),
                         ("Mul", lambda o: L.lib.tt_mul_jvp_f32(bc, L.f(a), L.f(b), L.f(t_a),
                                                                L.f(t_b), L.f(o)))):
            out = np.empty((2, 3), np.float32)
            assert fn(out) == 0
            want = get_op(name).jvp([a, b], [t_a, t_b], np.zeros((2, 3), np.float32), {})
            np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------- generated C
@pytest.mark.parametrize("model", ["mlp", "cnn", "dscnn", "resnet8"])
def test_c_jvp_tracks_reference(tmp_path, data, model):
    """100 optimizer steps (batch 2, 2 tangents each, momentum, Gaussian tangents) of the
    generated C vs the numpy reference: losses and parameters within 1e-4."""
    # lr well inside the stable range: a diverging run amplifies rounding differences
    lr = {"mlp": 2e-4, "cnn": 2e-4, "dscnn": 3e-5, "resnet8": 2e-5}[model]
    cfg = TrainConfig(algo="jvp", trainable="all", lr=lr, perturbations=2, batch=2,
                      optimizer="momentum", zo_dist="gaussian", seed=7)
    res, p, plan = export(MODELS / f"{model}.onnx", tmp_path / "jvp", cfg, command="test")
    c = HostModel(res.out_dir)
    r = ReferenceTrainer(p)
    x, y = data["x_train"], data["y_train"]
    for i in range(0, 200, 2):
        lc = c.train_step(x[i:i + 2], y[i:i + 2])
        lr = r.train_step(x[i:i + 2], y[i:i + 2])
        assert lc == pytest.approx(lr, rel=1e-4, abs=1e-6)
    assert c.step == 100
    for k in p.trainable:
        err = np.linalg.norm(c.params[k] - r.params[k]) / np.linalg.norm(r.params[k])
        assert err <= 1e-4, (k, err)


def test_c_jvp_sgd_sign_sparse_and_mse(tmp_path, rng):
    """SGD + sign estimator, Rademacher, a sparse trainable set (fc1 bias, the Mul scale, fc2),
    MSE loss; the model has materialised Mul/Add tangents and a residual join."""
    g = scaled_residual_net(3)
    cfg = TrainConfig(algo="jvp", loss="mse", trainable=r"fc1\.bias,scale,fc2\..*", lr=0.01,
                      perturbations=3, zo_estimator="sign", seed=2)
    res, p, plan = export(g, tmp_path / "jvp", cfg, command="test")
    c = HostModel(res.out_dir)
    r = ReferenceTrainer(p)
    x, y = rng.normal(size=(100, 6)).astype(np.float32), rng.normal(size=(100, 4)).astype(np.float32)
    for i in range(100):
        assert c.train_step(x[i], y[i:i + 1]) == pytest.approx(r.train_step(x[i:i + 1], y[i:i + 1]),
                                                               rel=1e-4, abs=1e-6)
    for k in p.trainable:
        np.testing.assert_allclose(c.params[k], r.params[k], rtol=1e-4, atol=1e-6)
    assert not np.allclose(r.params["scale"], g.initializers["scale"])


# ---------------------------------------------------------------------------- memory
@pytest.mark.parametrize("model", ["mlp", "cnn", "dscnn", "resnet8"])
def test_jvp_arena_at_most_2_1x_inference(model):
    g = load_model(MODELS / f"{model}.onnx")
    p = build_training_program(g, TrainConfig(algo="jvp", trainable="all", optimizer="momentum"))
    jvp = plan_arena(p)
    infer = plan_arena(p, steps=p.forward_steps)
    assert jvp.arena_bytes <= 2.1 * infer.arena_bytes
    assert jvp.section_bytes["grads"] == 0
    # nothing saved for a backward pass: below backprop's arena + gradients
    bp = plan_arena(build_training_program(g, TrainConfig(trainable="all", optimizer="momentum",
                                                          batch=2)))
    assert jvp.ram_bytes < bp.ram_bytes
    # a sparse set computes no tangents before its first layer: nothing over inference
    last = build_training_program(g, TrainConfig(algo="jvp", trainable="last:1"))
    assert plan_arena(last).arena_bytes <= 1.25 * infer.arena_bytes


def test_jvp_adapts_the_digits_model(data):
    from tinytrain.trainloop import accuracy, fit
    g = load_model(MODELS / "cnn.onnx")
    p = build_training_program(g, TrainConfig(algo="jvp", trainable="all", lr=2e-4,
                                              perturbations=4, optimizer="momentum"))
    tr = ReferenceTrainer(p)
    before = accuracy(tr, data["x_test"], data["y_test"])
    fit(tr, data, epochs=2, batch=4, seed=0)
    assert accuracy(tr, data["x_test"], data["y_test"]) >= before + 0.2


def test_jvp_config_errors():
    with pytest.raises(ConfigError, match="sgd and momentum"):
        TrainConfig(algo="jvp", optimizer="adam")
    with pytest.raises(ConfigError, match="weight decay"):
        TrainConfig(algo="jvp", weight_decay=1e-4)
    with pytest.raises(ConfigError, match="bp, zo or jvp"):
        TrainConfig(algo="fwd")


@pytest.mark.parametrize("algo,model", [("jvp", "resnet8"), ("zo", "cnn")])
def test_forward_gradient_c_is_asan_ubsan_clean(tmp_path, algo, model):
    """jvp (all parameters: strided conv, residual tangents) and hybrid zo + backprop."""
    from tinytrain.sim.host import run_sanitized
    cfg = TrainConfig(algo=algo, trainable="all", lr=1e-5, perturbations=2, batch=2,
                      optimizer="momentum", hybrid_bp_layers=2 if algo == "zo" else 0)
    res, *_ = export(MODELS / f"{model}.onnx", tmp_path / "out", cfg, command="test")
    assert run_sanitized(res.out_dir, steps=4).startswith("ok 4 steps")


def test_cli_jvp_and_hybrid(tmp_path, data, capsys):
    import json
    from tinytrain.cli import main
    from tinytrain.datasets import save_npz
    npz = tmp_path / "d.npz"
    save_npz(npz, x_train=data["x_train"][:40], y_train=data["y_train"][:40],
             x_test=data["x_test"][:50], y_test=data["y_test"][:50])
    assert main(["inspect", str(MODELS / "cnn.onnx"), "--hybrid-bp-layers", "1"]) == 0
    out = capsys.readouterr().out
    assert "jvp (sgd)" in out and "zo + bp last 1 (sgd)" in out
    assert main(["export", str(MODELS / "mlp.onnx"), "-o", str(tmp_path / "p"), "--algo", "jvp",
                 "--perturbations", "2", "--lr", "1e-3"]) == 0
    assert json.loads((tmp_path / "p" / "tt_manifest.json").read_text())["algo"] == "jvp"
    assert main(["simulate", str(tmp_path / "p"), "--data", str(npz), "--epochs", "1"]) == 0
    assert main(["train", str(MODELS / "mlp.onnx"), "--data", str(npz), "--epochs", "1",
                 "--algo", "zo", "--hybrid-bp-layers", "1", "--eps", "0.01"]) == 0
    assert main(["train", str(MODELS / "mlp.onnx"), "--data", str(npz), "--epochs", "1",
                 "--algo", "bp", "--hybrid-bp-layers", "1"]) == 2
    assert "needs algo 'zo'" in capsys.readouterr().err


@pytest.mark.qemu
@pytest.mark.parametrize("board", ["qemu-cortex-m4", "qemu-rv32imafc"])
def test_jvp_and_hybrid_on_emulated_boards_bit_identical_to_host(tmp_path, data, board):
    """The generated jvp (CNN, Gaussian tangents, momentum) and hybrid zo (MLP, fused SGD)
    training steps on an emulated Cortex-M4F / RV32F: every loss and the trained parameters
    bit-identical to the host build (fmaf everywhere, -ffp-contract=off)."""
    from tinytrain.boards import load_board
    from tinytrain.device import run_on_board
    from tinytrain.sim.cross import toolchain_available
    from tinytrain.sim.qemu import qemu_available
    b = load_board(board)
    if not toolchain_available(b) or not qemu_available(b):
        pytest.skip(f"{board}: cross toolchain or QEMU not installed")
    x, y = data["x_train"][:6].astype(np.float32), data["y_train"][:6]
    for model, cfg in (("cnn", TrainConfig(algo="jvp", lr=1e-4, perturbations=2,
                                           optimizer="momentum", zo_dist="gaussian")),
                       ("mlp", TrainConfig(algo="zo", lr=1e-3, perturbations=2, zo_eps=1e-2,
                                           hybrid_bp_layers=1))):
        res, *_ = export(MODELS / f"{model}.onnx", tmp_path / model, cfg, command="test")
        host = HostModel(res.out_dir)
        losses = np.array([host.train_step(x[i], y[i:i + 1]) for i in range(6)], np.float32)
        run = run_on_board(res.out_dir, board, x, y, 6, timeout_s=300)
        np.testing.assert_array_equal(run.loss_bits, losses.view(np.uint32))
        for k, v in run.params.items():
            np.testing.assert_array_equal(v.view(np.uint32), host.params[k].view(np.uint32))
