"""FixedTrainer: runs a FixedProgram (passes/lower_fixed.py) with the numpy twins of the C
kernels. The generated C runs the very same call list, so after every step the two agree bit
for bit: parameters, loss and saturation counters (tests/passes/test_lower_fixed.py)."""
from __future__ import annotations

import numpy as np

from .errors import NumericFaultError, ShapeError, TinytrainError
from .ir import TensorRole
from .numerics import fixed as fx
from .numerics import qact as qa
from .numerics import qjvp as qj
from .numerics import qkernels as qk
from .numerics.prng import Pcg32, stream_id
from .passes.lower_fixed import UPDATE_STREAM

_NP = {"i8": np.int8, "i16": np.int16, "i32": np.int32, "i64": np.int64, "f32": np.float32,
       "u8": np.uint8}
LOSS_SCALE = np.float32(1.0 / (1 << 24))


def requant_of(rq: dict) -> fx.Requant:
    return fx.Requant(fx.RQ_TFLITE, tuple(rq["mult"]), tuple(rq["shift"]),
                      per_channel=bool(rq["per_channel"]), act_min=rq["act_min"])


class FixedTrainer:
    def __init__(self, fp):
        self.fp = fp
        self.bits = fp.bits
        self.rounding = qk.ROUND_STOCHASTIC if fp.qcfg.rounding == "stochastic" else qk.ROUND_NEAREST
        self.reset()

    def reset(self):
        fp = self.fp
        self.weights = {n: np.asarray(v).astype(_NP[fp.tensors[n].dtype]).reshape(-1)
                        for n, v in fp.initial.items()}
        self.sat = np.zeros(len(fp.sat_sites), np.int64)
        self.state = {n: np.zeros(t.size, np.int32) for n, t in fp.tensors.items()
                      if t.role is TensorRole.OPT_STATE}
        self.step = 0
        self.sam_signs: list[int] = []   # zo --sam-rho: signs of the last step (transient)

    # ---- views -------------------------------------------------------------------------------
    @property
    def raw_params(self) -> dict[str, np.ndarray]:
        return {n: v.reshape(self.fp.tensors[n].shape).copy() for n, v in self.weights.items()}

    @property
    def params(self) -> dict[str, np.ndarray]:
        """Dequantized as the C's tt_param_read does: (float)q * scale[channel] in fp32."""
        out = {}
        for n, v in self.weights.items():
            ch, inner = self.fp.layout[n]
            s = np.asarray(self.fp.scales[n], np.float32)
            out[n] = qk.dequantize_f32(v, s, ch, inner).reshape(self.fp.tensors[n].shape)
        return out

    @property
    def saturations(self) -> dict[str, int]:
        return {k: int(v) for k, v in zip(self.fp.sat_sites, self.sat)}

    # ---- execution ---------------------------------------------------------------------------
    def _run(self, calls, env, exps, rng):
        sat = self.sat
        for c in calls:
            a, fn = c.args, c.fn
            bits = a.get("bits", self.bits)      # per-layer precision: the call's width
            ins = [env[i] for i in c.inputs]
            out = None
            rs = 0
            if fn == "quantize":
                try:
                    out, n = qk.quantize_f32(ins[0], bits, np.float32(a["inv_scale"]))
                except ValueError:
                    raise NumericFaultError("the input sample contains NaN; it was discarded "
                                            "and nothing changed") from None
                sat[a["sat"]] += n
            elif fn == "gemm_fwd":
                b = ins[2] if len(ins) > 2 else None
                out, n = qk.gemm_fwd(ins[0], ins[1], b, a["n"], a["k"], a["m"],
                                     requant_of(a["rq"]), bits, wbits=a["wbits"])
                sat[a["sat"]] += n
            elif fn == "conv2d_fwd":
                b = ins[2] if len(ins) > 2 else None
                out, n = qk.conv2d_fwd(a["conv"], ins[0], ins[1], b, requant_of(a["rq"]), bits,
                                       wbits=a["wbits"])
                sat[a["sat"]] += n
            elif fn == "relu_fwd":
                out = qk.relu_fwd(ins[0])
            elif fn == "copy":
                out = ins[0].copy()
            elif fn == "maxpool2d_fwd":
                out = qk.maxpool2d_fwd(a["pool"], ins[0])
            elif fn == "avgpool2d_fwd":
                out = qk.avgpool2d_fwd(a["pool"], ins[0], bits)
            elif fn == "global_avgpool_fwd":
                out = qk.global_avgpool_fwd(ins[0], a["c"], a["hw"], bits)
            elif fn == "add_fwd":
                ap = a["add"]
                out, n = qk.add_fwd_act(a["dims"], a["sa"], a["sb"], ins[0], ins[1], ap,
                                        a["act_min"], None, bits)
                sat[a["sat"]] += n
            elif fn == "softmax_xent":
                loss, out = qk.softmax_xent(ins[0], ins[1], a["rows"], a["cols"], a["x_mult"],
                                            a["x_shift"])
                env["__loss_q24"] = loss
            elif fn in ("grad_quant", "narrow"):
                ob = {"i8": 8, "i16": 16, "i32": 32}[self.fp.tensors[c.outputs[0]].dtype]
                out, rs = fx.grad_quant_pow2(ins[0], ob)
            elif fn == "rescale":
                v, n = fx.rescale_q32(ins[0], a["mult"], 0)
                out = v.astype(np.int32)
                sat[a["sat"]] += n
            elif fn == "gemm_bwd_x":
                out = qk.gemm_bwd_x(ins[0], ins[1], a["n"], a["k"], a["m"], bits=bits)
            elif fn == "gemm_bwd_w":
                out = qk.gemm_bwd_w(ins[0], ins[1], a["n"], a["k"], a["m"], bits=bits)
            elif fn == "bias_bwd":
                out = qk.bias_bwd(ins[0], a["outer"], a["c"], a["inner"], bits=bits)
            elif fn == "conv2d_bwd_x":
                out = qk.conv2d_bwd_x(a["conv"], ins[0], ins[1], bits=bits)
            elif fn == "conv2d_bwd_w":
                out = qk.conv2d_bwd_w(a["conv"], ins[0], ins[1], bits=bits)
            elif fn == "relu_bwd_x":
                out = qk.relu_bwd_x(ins[0], ins[1])
            elif fn == "relu_mask_pack":
                out = qk.relu_mask_pack(ins[0])
            elif fn == "relu_bwd_x_mask":
                out = qk.relu_bwd_x_mask(ins[0], ins[1])
            elif fn == "maxpool2d_bwd_x":
                out, n = qk.maxpool2d_bwd_x(a["pool"], ins[0], ins[1], bits=bits)
                sat[a["sat"]] += n
            elif fn == "avgpool2d_bwd_x":
                out = qk.avgpool2d_bwd_x(a["pool"], ins[0], a["frac_bits"], bits=bits)
            elif fn == "global_avgpool_bwd_x":
                out = qk.global_avgpool_bwd_x(ins[0], a["c"], a["hw"], a["frac_bits"], bits=bits)
            elif fn == "add_bwd":
                out = qk.add_bwd(a["dims"], (a["sa"], a["sb"])[a["which"]], ins[0], a["len"],
                                 bits=bits)
            elif fn in ("gemm_jvp", "conv2d_jvp"):
                has_t, has_w, has_b = a["has"]
                it = iter(ins)
                x = next(it) if has_w else None
                tx, w = (next(it), next(it)) if has_t else (None, None)
                sc = {}
                for key in ("a", "b", "c"):
                    if key + "_mult" in a["scales"]:
                        ex, terms = a["scales"][key + "_exp"]
                        sc[key + "_mult"] = a["scales"][key + "_mult"]
                        sc[key + "_exp"] = ex + sum(exps[v] for v in terms)
                    else:
                        sc[key + "_mult"], sc[key + "_exp"] = 0, 0
                zw = self._direction(*a["w"]) if has_w else None
                zb = self._direction(*a["b"]) if has_b else None
                if fn == "gemm_jvp":
                    out, exps[c.exp[0]] = qj.gemm_jvp(x, tx, w, a["k"], a["m"], zw, zb, a["dist"],
                                                      sc, bits, wbits=a["wbits"])
                else:
                    out, exps[c.exp[0]] = qj.conv2d_jvp(a["conv"], x, tx, w, zw, zb, a["dist"],
                                                        sc, bits, wbits=a["wbits"])
                env[c.outputs[0]] = np.asarray(out).reshape(-1).astype(
                    _NP[self.fp.tensors[c.outputs[0]].dtype])
                continue
            elif fn == "maxpool2d_jvp":
                out = qj.maxpool2d_jvp(a["pool"], ins[0], ins[1], bits)
            elif fn == "dot_q30":
                self._dot = (qj.dot_q30(ins[0], ins[1], bits), exps["e:" + c.inputs[1]])
                continue
            elif fn == "act_fwd":
                out = getattr(qa, a["fn"] + "_fwd")(a["table"], ins[0])
            elif fn == "act_code_fwd":
                y, codes = getattr(qa, a["fn"] + "_code_fwd")(a["table"], a["codes"], ins[0])
                env[c.outputs[0]], env[c.outputs[1]] = y, codes.astype(np.uint8)
                continue
            elif fn == "act_bwd_x":
                out = getattr(qa, a["fn"] + "_bwd_x")(ins[0], ins[1], bits)
            elif fn == "act_bwd_x_code":
                k = a["codes"].k
                out = getattr(qa, a["fn"] + "_bwd_x_code")(ins[0], ins[1], a["codes"].levels, k,
                                                          bits)
            elif fn == "act_convert":
                out, n = qk.act_convert(ins[0], a["xbits"], bits, a["mult"], a["shift"])
                sat[a["sat"]] += n
            elif fn == "grad_widen":
                out = qk.grad_widen_q8_q16(ins[0])
            elif fn == "grad_narrow":
                out, rs = qk.grad_quant_pow2_q16_q8(ins[0])
            elif fn == "grad_join":
                ev = c.exp[0]
                out, exps[ev], n = qk.grad_join(ins[0], exps[ev], ins[1], exps[c.exp[1][1]], bits)
                sat[a["sat"]] += n
            elif fn == "bwd_w_update":
                self._bwd_w_update(c, ins, exps, rng)
                continue
            elif fn == "sgd_pc":
                e = sum(exps[v] for v in a["e"])
                if "beta_mult" in a:
                    st = a["state"]
                    out, self.state[st], n = qk.momentum_upd_pc(
                        ins[0], a["wbits"], ins[1], self.state[st], a["channels"], a["inner"],
                        a["mult"], a["shift"], e, a["beta_mult"], self.rounding, rng)
                else:
                    out, n = qk.sgd_upd_pc(ins[0], a["wbits"], ins[1], a["channels"], a["inner"],
                                           a["mult"], a["shift"], e, self.rounding, rng)
                sat[a["sat"]] += n
                self.weights[c.outputs[0]] = np.asarray(out).astype(self.weights[c.outputs[0]].dtype)
                continue
            else:
                raise TinytrainError(f"internal: no interpreter for fixed-point call {fn!r}")
            if c.exp is not None and fn != "grad_join":
                var, terms, const, adds_rs = c.exp
                exps[var] = sum(exps[t] for t in terms) + const + (rs if adds_rs else 0)
            dt = _NP[self.fp.tensors[c.outputs[0]].dtype]
            env[c.outputs[0]] = np.asarray(out).reshape(-1).astype(dt)

    def _zo_step(self, env, exps, rrng) -> float:
        """Fixed-point SPSA (lower_fixed._Lowering.zo_spec): perturb, two forward passes,
        exact restore, update — z regenerated from (seed, step, k) each time. A hybrid
        program first runs forward + backward at the unperturbed weights for its backprop
        layers (their updates draw from the same rounding stream first) and returns that loss."""
        fp, z = self.fp, self.fp.zo
        lz = z["loss"]
        rr = rrng if self.rounding == qk.ROUND_STOCHASTIC else None
        l0 = 0.0
        if fp.train:
            self._run(fp.forward, env, exps, rrng)
            self._run(fp.train, env, exps, rrng)
            l0 = float(np.float32(env["__loss_q24"]) * LOSS_SCALE)
            env.update(self.weights)                        # the updated backprop layers
        else:
            self._run(fp.forward[:1], env, exps, None)       # quantize the input once
        h = min(self.step // z["halve_every"], z["halvings"]) if z["halve_every"] else 0

        def apply(k, mul):
            zr = Pcg32(fp.seed, stream_id(self.step, k))
            for p in z["params"]:
                w, ns = qk.zo_perturb(self.weights[p["name"]], zr, mul * p["eps"][h], z["dist"],
                                      bits=p["wbits"])
                self.weights[p["name"]] = env[p["name"]] = np.asarray(w).reshape(-1)
                self.sat[p["sat"]] += ns

        def loss():
            self._run(fp.forward, env, exps, None)
            lq, _ = qk.softmax_xent(env[lz["logits"]], env[fp.label], lz["rows"], lz["cols"],
                                    lz["x_mult"], lz["x_shift"])
            return int(lq)

        def ascend(mul):
            """Sharpness-aware point: +- the previous step's signed directions (exact)."""
            m = sum(1 for v in self.sam_signs if v)
            for k, v in enumerate(self.sam_signs):
                if not v:
                    continue
                zr = Pcg32(fp.seed, stream_id(self.step - 1, k))
                for p in z["params"]:
                    w, ns = qk.zo_perturb(self.weights[p["name"]], zr, mul * v * p["sam"][m - 1],
                                          z["dist"], bits=p["wbits"])
                    self.weights[p["name"]] = env[p["name"]] = np.asarray(w).reshape(-1)
                    self.sat[p["sat"]] += ns

        ascended = z["sam"] and any(self.sam_signs)
        if ascended:
            ascend(1)
        ds = []
        for k in range(z["n"]):
            apply(k, 1)
            lp = loss()
            apply(k, -2)
            lm = loss()
            apply(k, 1)
            diff = lp - lm
            d = max(min(diff, (1 << 31) - 1), -(1 << 31))
            self.sat[z["sat"]] += int(d != diff)
            if k == 0 and not fp.train:
                l0 = float(np.float32(lp + lm) * np.float32(2.0 ** -25))
            if z["sign"]:
                d = (1 << 24) * ((d > 0) - (d < 0))
            ds.append(d)
        if ascended:
            ascend(-1)
        if z["sam"]:
            self.sam_signs = [(d > 0) - (d < 0) for d in ds]
        self._fg_update(z, ds, h, rr, env)
        return l0

    def _fg_update(self, spec, ds, h, rr, env):
        """w_t -= c_t(d_k) z_k for k = 0..n-1, z regenerated (zo and jvp share it)."""
        fp = self.fp
        for k, d in enumerate(ds):
            zr = Pcg32(fp.seed, stream_id(self.step, k))
            for p in spec["params"]:
                c, ns = qk.zo_coef(d, p["mult"][h], p["shift"][h], spec["frac_bits"])
                self.sat[p["sat"]] += ns
                w, ns = qk.zo_update(self.weights[p["name"]], zr, spec["dist"], c,
                                     spec["frac_bits"], self.rounding, rr, p["lo"], p["hi"],
                                     bits=p["wbits"])
                self.weights[p["name"]] = env[p["name"]] = np.asarray(w).reshape(-1)
                self.sat[p["sat"]] += ns

    def _direction(self, param, skip):
        """The generator of a parameter's direction: stream (seed, step, k) past `skip` draws
        (the earlier parameters')."""
        zr = Pcg32(self.fp.seed, stream_id(self.step, self._k))
        zr.advance(skip)
        return zr

    def directional_derivative(self, x, y, k: int = 0):
        """One jvp pass for direction k of the current step: (loss, dL.v) as floats (the
        integer dot product times 2^(e - 30)); nothing changes."""
        fp = self.fp
        env, xb = self._env(x)
        env.update(self.state)
        env[fp.input] = xb[0]
        env[fp.label] = np.array([int(np.asarray(y).reshape(-1)[0])], np.int32)
        self._k = k
        self._run(fp.jvp["pass"], env, {}, None)
        s, e = self._dot
        return float(env["__loss_q24"]) * 2.0 ** -24, float(s) * 2.0 ** (e - 30)

    def _jvp_step(self, env, exps, rrng) -> float:
        """Fixed-point forward mode (lower_fixed._Lowering.jvp_spec): n interleaved passes, then
        zo's update with d_k = dL.v_k in Q24 (clamped to int32, counted)."""
        j = self.fp.jvp
        rr = rrng if self.rounding == qk.ROUND_STOCHASTIC else None
        ds, l0 = [], 0.0
        for k in range(j["n"]):
            self._k = k
            self._run(j["pass"], env, exps, None)
            s, e = self._dot
            # Q24: s 2^(e - 30) 2^24, the shift clamped to tt_shift_round64's [-63, 62]
            full = int(fx.shift_round(np.int64(s), max(min(e - 6, 62), -63)))
            d = max(min(full, (1 << 31) - 1), -(1 << 31))
            self.sat[j["sat"]] += int(d != full)
            if k == 0:
                l0 = float(np.float32(env["__loss_q24"]) * LOSS_SCALE)
            if j["sign"]:
                d = (1 << 24) * ((d > 0) - (d < 0))
            ds.append(d)
        self._fg_update(j, ds, 0, rr, env)
        return l0

    def _bwd_w_update(self, c, ins, exps, rng):
        """Row by row: weight gradient of output channel r, then its SGD update."""
        a = c.args
        bits = a.get("bits", self.bits)
        gy, x, w = ins[:3]
        w = w.copy()
        mom = "beta_mult" in a
        inner = a["inner"]
        e = sum(exps[v] for v in a["e"])
        for r in range(a["channels"]):
            if a["op"] == "gemm":
                acc = qk.gemm_bwd_w(gy[r:r + 1], x, 1, a["k"], 1, bits=bits)
            else:
                g0 = (r // a["cout_g"]) * a["x_stride"]
                acc = qk.conv2d_bwd_w(a["conv_row"], gy[r * a["gy_stride"]:(r + 1) * a["gy_stride"]],
                                      x[g0:g0 + a["x_stride"]], bits=bits)
            rs = 0
            if bits == 16:
                acc, rs = fx.grad_quant_pow2(acc, 32)
            sl = slice(r * inner, (r + 1) * inner)
            if mom:
                v = self.state[a["state"]]
                w[sl], v[sl], n = qk.momentum_upd_pc(
                    w[sl], a["wbits"], acc, v[sl], 1, inner, a["mult"][r:r + 1],
                    a["shift"][r:r + 1], e + rs, a["beta_mult"], self.rounding, rng)
            else:
                w[sl], n = qk.sgd_upd_pc(w[sl], a["wbits"], acc, 1, inner, a["mult"][r:r + 1],
                                         a["shift"][r:r + 1], e + rs, self.rounding, rng)
            self.sat[a["sat"]] += n
        self.weights[c.outputs[0]] = w

    def _env(self, x):
        fp = self.fp
        shape = tuple(fp.tensors[fp.input].shape[1:])
        xa = np.asarray(x, np.float32)
        if xa.shape == shape:
            xa = xa[None]
        if tuple(xa.shape[1:]) != shape:
            raise ShapeError(f"input must have shape {shape} or (batch, {', '.join(map(str, shape))})"
                             f", got {np.shape(x)}")
        env = dict(self.weights)
        return env, xa.reshape(xa.shape[0], -1)

    def infer(self, x) -> np.ndarray:
        fp = self.fp
        env, xb = self._env(x)
        outs = []
        s = np.asarray(fp.scales[fp.logits], np.float32)
        for row in xb:
            env[fp.input] = row
            self._run(fp.forward, env, {}, None)
            outs.append(qk.dequantize_f32(env[fp.logits], s))
        return np.stack(outs).reshape((xb.shape[0],) + tuple(fp.tensors[fp.logits].shape[1:]))

    def train_step(self, x, y) -> float:
        """One sample (or several, one after the other): returns the mean loss as the C
        reports it ((float)loss_q24 * 2^-24)."""
        fp = self.fp
        if not fp.trainable:
            raise TinytrainError("nothing is trainable in this program")
        env, xb = self._env(x)
        labels = np.asarray(y).astype(np.int64).reshape(-1)
        if labels.shape[0] != xb.shape[0]:
            raise ShapeError(f"got {labels.shape[0]} labels for {xb.shape[0]} samples")
        total = 0.0
        for row, lab in zip(xb, labels):
            env = dict(self.weights)
            env.update(self.state)
            env[fp.input] = row
            env[fp.label] = np.array([lab], np.int32)
            exps: dict[str, int] = {}
            rng = Pcg32(fp.seed, stream_id(self.step, UPDATE_STREAM))
            if fp.zo is not None or fp.jvp is not None:
                total += (self._zo_step if fp.zo is not None else self._jvp_step)(env, exps, rng)
                self.step += 1
                continue
            self._run(fp.forward, env, exps, rng)
            self._run(fp.train, env, exps, rng)
            total += float(np.float32(env["__loss_q24"]) * LOSS_SCALE)
            self.step += 1
        return total / xb.shape[0]


def is_param(fp, name) -> bool:
    return fp.tensors[name].role in (TensorRole.PARAM, TensorRole.CONST)
