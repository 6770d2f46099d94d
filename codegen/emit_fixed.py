"""emit_project_fixed: FixedProgram + MemoryPlan -> a C project (int8 / int16).

Prints the lowered call list (passes/lower_fixed.py) as C: one statement per QCall, with the
integer constants as `static const` tables (flash). The public API is the float API of every
export (tt_model.h), so the host simulator, the firmware and the CLI drive it unchanged; the
integers are reachable through tt_param_read_raw and tt_saturations.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import ExportError
from ..ir import TensorRole
from ..ops.geometry import CONV_FIELDS, POOL_FIELDS
from .cfloat import c_float
from .emit import (MANIFEST, RUNTIME, EmitResult, checkpoint_bytes, file_banner,
                   placement_note, prepare_out_dir, render, write_project)
from .names import CNames

CTYPE = {"i8": "int8_t", "i16": "int16_t", "i32": "int32_t", "i64": "int64_t", "f32": "float",
         "u8": "uint8_t"}
SUF = {8: "_q8", 16: "_q16"}
SECTION = {"params_rw": "tt_params_rw", "arena": "tt_arena", "grads": "tt_grads",
           "opt_state": "tt_opt_state"}
RUNTIME_FIXED = (("include", "tt_status.h"), ("include", "tt_kernels.h"),
                 ("include", "tt_fixed.h"), ("include", "tt_qkernels.h"), ("include", "tt_qact.h"),
                 ("include", "tt_qjvp.h"),
                 ("include", "tt_prng.h"), ("src", "tt_util.c"), ("src", "tt_fixed.c"),
                 ("src", "tt_prng.c"), ("src", "*_q.c"), ("src", "tt_train_q.c"))
TEMPLATES = {"tt_model.h": "tt_model.h.j2", "tt_model.c": "tt_model_fixed.c.j2",
             "main.c": "main.c.j2", "Makefile": "Makefile.j2", "README.md": "README.md.j2"}


def runtime_files_fixed() -> list[Path]:
    out: list[Path] = []
    for sub, pat in RUNTIME_FIXED:
        for f in sorted((RUNTIME / sub).glob(pat)):
            if f not in out:
                out.append(f)
    return out


def _int_array(values, per_line=16) -> str:
    flat = [str(int(v)) for v in np.asarray(values).reshape(-1)]
    if not flat:
        return "0"
    return ",\n    ".join(", ".join(flat[i:i + per_line]) for i in range(0, len(flat), per_line))


class _CEmit:
    def __init__(self, fp, plan):
        self.fp, self.plan, self.names = fp, plan, CNames()
        self.consts: list[str] = []
        self._seen: set[str] = set()
        # width of the logits (per-layer precision may differ from the model's)
        self.logits_bits = {"i8": 8, "i16": 16}[fp.tensors[fp.logits].dtype]

    def const(self, decl_name, text):
        if decl_name not in self._seen:
            self._seen.add(decl_name)
            self.consts.append(text)
        return decl_name

    def ptr(self, name) -> str:
        fp = self.fp
        if name == fp.input:
            return "x"
        if name == fp.label:
            return "label"
        return "t_" + self.names(name)

    def same_bytes(self, a, b) -> bool:
        pa, pb = self.plan.placements.get(a), self.plan.placements.get(b)
        return pa is not None and pb is not None and (pa.section, pa.offset) == (pb.section, pb.offset)

    def evar(self, v) -> str:
        return f"e_{self.fp.exps.index(v)}"

    def sat(self, a) -> str:
        return f"&tt_sat[{a['sat']}]"

    def struct(self, ctype, key, fields) -> str:
        name = "k_" + self.names("struct:" + key).replace("struct_", "", 1)
        return self.const(name, f"static const {ctype} {name} = {{ {', '.join(map(str, fields))} }};")

    def conv(self, node, p) -> str:
        return self.struct("tt_conv2d_params", "conv_" + node, [p[k] for k in CONV_FIELDS])

    def pool(self, node, p) -> str:
        return self.struct("tt_pool2d_params", "pool_" + node, [p[k] for k in POOL_FIELDS])

    def bcast(self, node, a) -> str:
        return self.struct("tt_bcast4", "bcast_" + node,
                           ["{" + ", ".join(map(str, v)) + "}" for v in (a["dims"], a["sa"], a["sb"])])

    def i32_table(self, key, values) -> str:
        name = "k_" + self.names("tab:" + key).replace("tab_", "", 1)
        vals = list(values)
        return self.const(name, f"static const int32_t {name}[{len(vals)}] = {{ {_int_array(vals)} }};")

    def requant(self, key, rq, bits) -> str:
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        m = self.i32_table("rq_mult_" + key, rq["mult"])
        s = self.i32_table("rq_shift_" + key, rq["shift"])
        amin = lo if rq["act_min"] is None else rq["act_min"]
        return self.struct("tt_requant", "rq_" + key,
                           ["TT_RQ_TFLITE", int(rq["per_channel"]), m, s, "NULL", amin, hi])

    # ---- one call -> C statements: ("try", expr) | ("raw", stmt) --------------------------
    def call(self, c) -> list[tuple[str, str]]:
        a, P, fn = c.args, self.ptr, c.fn
        bits = a.get("bits", self.fp.bits)       # per-layer precision: the call's width
        sfx = SUF[bits]
        ins = [P(i) for i in c.inputs]
        out = P(c.outputs[0]) if c.outputs else None
        T = []
        if fn == "quantize":
            inv = self.const("k_in_inv", f"static const float k_in_inv = {c_float(a['inv_scale'])};")
            T.append(("try", f"tt_quantize_f32({ins[0]}, {out}, {bits}, "
                             f"{self.fp.tensors[c.outputs[0]].size}, &{inv}, 1, 1, {self.sat(a)})"))
        elif fn == "gemm_fwd":
            b = ins[2] if len(ins) > 2 else "NULL"
            rq = self.requant(c.outputs[0], a["rq"], bits)
            fsfx = "_w16a8" if a["wbits"] != bits else sfx
            T.append(("try", f"tt_gemm_fwd{fsfx}({ins[0]}, {ins[1]}, {b}, {out}, {a['n']}, {a['k']}, "
                             f"{a['m']}, &{rq}, {self.sat(a)})"))
        elif fn == "conv2d_fwd":
            b = ins[2] if len(ins) > 2 else "NULL"
            rq = self.requant(c.outputs[0], a["rq"], bits)
            fsfx = "_w16a8" if a["wbits"] != bits else sfx
            T.append(("try", f"tt_conv2d_fwd{fsfx}(&{self.conv(c.node, a['conv'])}, {ins[0]}, "
                             f"{ins[1]}, {b}, {out}, &{rq}, {self.sat(a)})"))
        elif fn == "relu_fwd":
            T.append(("try", f"tt_relu_fwd{sfx}({ins[0]}, {out}, {a['n']})"))
        elif fn == "copy":
            if not self.same_bytes(c.inputs[0], c.outputs[0]):
                nb = self.fp.tensors[c.outputs[0]].nbytes
                T.append(("raw", f"memcpy({out}, {ins[0]}, {nb});"))
        elif fn in ("maxpool2d_fwd", "avgpool2d_fwd"):
            T.append(("try", f"tt_{fn}{sfx}(&{self.pool(c.node, a['pool'])}, {ins[0]}, {out})"))
        elif fn == "global_avgpool_fwd":
            T.append(("try", f"tt_global_avgpool_fwd{sfx}({ins[0]}, {out}, {a['c']}, {a['hw']})"))
        elif fn == "add_fwd":
            ap = a["add"]
            lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
            amin = lo if a["act_min"] is None else a["act_min"]
            q = self.struct("tt_qadd_params", "qadd_" + c.node,
                            [ap.left_shift, ap.a_mult, ap.a_shift, ap.b_mult, ap.b_shift,
                             ap.y_mult, ap.y_shift, amin, hi])
            T.append(("try", f"tt_add_fwd{sfx}(&{self.bcast(c.node, a)}, &{q}, {ins[0]}, {ins[1]}, "
                             f"{out}, {self.sat(a)})"))
        elif fn == "softmax_xent":
            T.append(("try", f"tt_softmax_xent{sfx}({ins[0]}, label, {a['rows']}, {a['cols']}, "
                             f"{a['x_mult']}, {a['x_shift']}, &lq, {out})"))
        elif fn in ("grad_quant", "narrow"):
            src = self.fp.tensors[c.inputs[0]].dtype
            dst = self.fp.tensors[c.outputs[0]].dtype
            k = {("i32", "i8"): "q32_q8", ("i32", "i16"): "q32_q16", ("i64", "i16"): "q64_q16",
                 ("i64", "i32"): "q64_q32"}[(src, dst)]
            T.append(("try", f"tt_grad_quant_pow2_{k}({ins[0]}, {out}, "
                             f"{self.fp.tensors[c.outputs[0]].size}, &rs)"))
        elif fn == "rescale":
            T.append(("try", f"tt_rescale_q32({ins[0]}, {out}, {a['n']}, {a['mult']}, 0, {self.sat(a)})"))
        elif fn in ("gemm_bwd_x", "gemm_bwd_w"):
            T.append(("try", f"tt_{fn}{sfx}({ins[0]}, {ins[1]}, {out}, {a['n']}, {a['k']}, {a['m']}, 0)"))
        elif fn == "bias_bwd":
            T.append(("try", f"tt_bias_bwd{sfx}({ins[0]}, {out}, {a['outer']}, {a['c']}, {a['inner']}, 0)"))
        elif fn in ("conv2d_bwd_x", "conv2d_bwd_w"):
            T.append(("try", f"tt_{fn}{sfx}(&{self.conv(c.node, a['conv'])}, {ins[0]}, {ins[1]}, {out}, 0)"))
        elif fn == "relu_bwd_x":
            T.append(("try", f"tt_relu_bwd_x{sfx}({ins[0]}, {ins[1]}, {out}, {a['n']})"))
        elif fn == "relu_mask_pack":
            T.append(("try", f"tt_relu_mask_pack{sfx}({ins[0]}, {out}, {a['n']})"))
        elif fn == "relu_bwd_x_mask":
            T.append(("try", f"tt_relu_bwd_x_mask{sfx}({ins[0]}, {ins[1]}, {out}, {a['n']})"))
        elif fn == "maxpool2d_bwd_x":
            T.append(("try", f"tt_maxpool2d_bwd_x{sfx}(&{self.pool(c.node, a['pool'])}, {ins[0]}, "
                             f"{ins[1]}, {out}, 0, {self.sat(a)})"))
        elif fn == "avgpool2d_bwd_x":
            T.append(("try", f"tt_avgpool2d_bwd_x{sfx}(&{self.pool(c.node, a['pool'])}, {ins[0]}, "
                             f"{out}, {a['frac_bits']}, 0)"))
        elif fn == "global_avgpool_bwd_x":
            T.append(("try", f"tt_global_avgpool_bwd_x{sfx}({ins[0]}, {out}, {a['c']}, {a['hw']}, "
                             f"{a['frac_bits']}, 0)"))
        elif fn == "add_bwd":
            T.append(("try", f"tt_add_bwd{sfx}(&{self.bcast(c.node, a)}, {ins[0]}, {out}, "
                             f"{a['which']}, 0)"))
        elif fn in ("act_fwd", "act_code_fwd"):
            tab = a["table"]
            key = self.names("lut:" + c.node).replace("lut_", "", 1)
            if bits == 8:
                lut = self.const(f"k_lut_{key}", f"static const int8_t k_lut_{key}[256] = "
                                 f"{{\n    {_int_array(tab.table)}\n}};")
            else:
                arr = self.const(f"k_lutv_{key}", f"static const uint16_t k_lutv_{key}"
                                 f"[{len(tab.table)}] = {{\n    {_int_array(tab.table)}\n}};")
                lut = "&" + self.const(f"k_lut_{key}", f"static const tt_act_lut16 k_lut_{key} = "
                                       f"{{ {arr}, {tab.n_seg}, {tab.mult}, {tab.shift} }};")
            if fn == "act_fwd":
                T.append(("try", f"tt_{a['fn']}_fwd{sfx}({lut}, {ins[0]}, {out}, {a['n']})"))
            else:
                cd = a["codes"]
                src = cd.code_table if bits == 8 else cd.thresholds
                ct = "uint8_t" if bits == 8 else "int32_t"
                cname = self.const(f"k_code_{key}", f"static const {ct} k_code_{key}[{len(src)}] = "
                                   f"{{\n    {_int_array(src)}\n}};")
                T.append(("try", f"tt_{a['fn']}_code_fwd{sfx}({lut}, {cname}, {ins[0]}, {out}, "
                                 f"{P(c.outputs[1])}, {a['n']}, {cd.k})"))
        elif fn == "act_bwd_x":
            T.append(("try", f"tt_{a['fn']}_bwd_x{sfx}({ins[0]}, {ins[1]}, {out}, {a['n']})"))
        elif fn == "act_bwd_x_code":
            cd = a["codes"]
            lv = self.i32_table("levels_" + c.node, cd.levels)
            T.append(("try", f"tt_{a['fn']}_bwd_x_code{sfx}({ins[0]}, {ins[1]}, {lv}, {out}, "
                             f"{a['n']}, {cd.k})"))
        elif fn in ("gemm_jvp", "conv2d_jvp"):
            has_t, has_w, has_b = a["has"]
            it = iter(ins)
            x = next(it) if has_w else "NULL"
            tx, w = (next(it), next(it)) if has_t else ("NULL", "NULL")
            fields = []
            for key in ("a", "b", "c"):
                if key + "_mult" in a["scales"]:
                    ex, terms = a["scales"][key + "_exp"]
                    e = " + ".join([str(ex)] + [self.evar(v) for v in terms])
                    fields += [str(a["scales"][key + "_mult"]), e]
                else:
                    fields += ["0", "0"]
            T.append(("raw", "{"))
            T.append(("raw", f"    const tt_jvp_scales sc_ = {{ {', '.join(fields)} }};"))
            gens = []
            for var, spec in (("zq", a["w"]), ("zb", a["b"])):
                if spec is None:
                    gens.append("NULL")
                    continue
                # the parameter's direction: stream (seed, step, k) past the earlier tensors'
                T.append(("raw", f"    tt_prng_seed(&{var}, {self.fp.seed}u, "
                                 f"tt_prng_stream_id(step, k));"))
                T.append(("raw", f"    tt_prng_advance(&{var}, {spec[1]}u); /* {spec[0]} */"))
                gens.append("&" + var)
            ev = "&" + self.evar(c.exp[0])
            sfx = "_w16a8" if a["wbits"] != bits else sfx
            if fn == "gemm_jvp":
                call = (f"tt_gemm_jvp{sfx}({x}, {tx}, {w}, {out}, {a['k']}, {a['m']}, "
                        f"{gens[0]}, {gens[1]}, {a['dist']}, &sc_, {ev})")
            else:
                zrow = P(c.outputs[1]) if len(c.outputs) > 1 else "NULL"
                call = (f"tt_conv2d_jvp{sfx}(&{self.conv(c.node, a['conv'])}, {x}, {tx}, {w}, "
                        f"{out}, {gens[0]}, {gens[1]}, {a['dist']}, &sc_, {ev}, {zrow})")
            T.append(("try", call))
            T.append(("raw", "}"))
            return T
        elif fn == "maxpool2d_jvp":
            T.append(("try", f"tt_maxpool2d_jvp{sfx}(&{self.pool(c.node, a['pool'])}, {ins[0]}, "
                             f"{ins[1]}, {out})"))
        elif fn == "dot_q30":
            T.append(("try", f"tt_dot_q30{sfx}({ins[0]}, {ins[1]}, {a['n']}, dot)"))
            T.append(("raw", f"*e_dot = {self.evar('e:' + c.inputs[1])};"))
            return T
        elif fn == "act_convert":
            T.append(("try", f"tt_act_convert_q({ins[0]}, {a['xbits']}, {out}, {bits}, {a['n']}, "
                             f"{a['mult']}, {a['shift']}, {self.sat(a)})"))
        elif fn == "grad_widen":
            T.append(("try", f"tt_grad_widen_q8_q16({ins[0]}, {out}, {a['n']})"))
        elif fn == "grad_narrow":
            T.append(("try", f"tt_grad_quant_pow2_q16_q8({ins[0]}, {out}, {a['n']}, &rs)"))
        elif fn == "grad_join":
            T.append(("try", f"tt_grad_join{sfx}({ins[0]}, &{self.evar(c.exp[0])}, {ins[1]}, "
                             f"{self.evar(c.exp[1][1])}, {a['n']}, {self.sat(a)})"))
            return T
        elif fn == "bwd_w_update":
            p = c.outputs[0]
            m = self.i32_table("upd_mult_" + p, a["mult"])
            s = self.i32_table("upd_shift_" + p, a["shift"])
            e = " + ".join(self.evar(v) for v in a["e"])
            rnd = "TT_ROUND_STOCHASTIC" if self.fp.qcfg.rounding == "stochastic" else "TT_ROUND_NEAREST"
            gy, x, w = ins[:3]
            acc = P(c.outputs[1])
            narrow = self.fp.tensors[c.outputs[1]].dtype == "i64"   # int16 model: int64 rows
            g32 = P(c.outputs[2]) if narrow else acc
            inner = a["inner"]
            if a["op"] == "gemm":
                bw = f"tt_gemm_bwd_w{sfx}({gy} + c_, {x}, {acc}, 1, {a['k']}, 1, 0)"
            else:
                row = self.conv(c.node + "_row", a["conv_row"])
                bw = (f"tt_conv2d_bwd_w{sfx}(&{row}, {gy} + c_ * {a['gy_stride']}, {x} + "
                      f"(c_ / {a['cout_g']}) * {a['x_stride']}, {acc}, 0)")
            T.append(("raw", f"for (c_ = 0; c_ < {a['channels']}; ++c_) {{"))
            T.append(("try", bw))
            if narrow:
                T.append(("try", f"tt_grad_quant_pow2_q64_q32({acc}, {g32}, {inner}, &rs)"))
                e += " + rs"
            if "beta_mult" in a:
                T.append(("try", f"tt_momentum_upd_pc({w} + c_ * {inner}, {a['wbits']}, {g32}, "
                                 f"{P(a['state'])} + c_ * {inner}, 1, {inner}, {m} + c_, "
                                 f"{s} + c_, {e}, {a['beta_mult']}, {rnd}, &rng, {self.sat(a)})"))
            else:
                T.append(("try", f"tt_sgd_upd_pc({w} + c_ * {inner}, {a['wbits']}, {g32}, 1, "
                                 f"{inner}, {m} + c_, {s} + c_, {e}, {rnd}, &rng, {self.sat(a)})"))
            T.append(("raw", "}"))
            return T
        elif fn == "sgd_pc":
            p = c.outputs[0]
            m = self.i32_table("upd_mult_" + p, a["mult"])
            s = self.i32_table("upd_shift_" + p, a["shift"])
            e = " + ".join(self.evar(v) for v in a["e"]) or "0"
            rnd = "TT_ROUND_STOCHASTIC" if self.fp.qcfg.rounding == "stochastic" else "TT_ROUND_NEAREST"
            if "beta_mult" in a:
                T.append(("try", f"tt_momentum_upd_pc({P(p)}, {a['wbits']}, {ins[1]}, "
                                 f"{P(a['state'])}, {a['channels']}, {a['inner']}, {m}, {s}, {e}, "
                                 f"{a['beta_mult']}, {rnd}, &rng, {self.sat(a)})"))
            else:
                T.append(("try", f"tt_sgd_upd_pc({P(p)}, {a['wbits']}, {ins[1]}, {a['channels']}, "
                                 f"{a['inner']}, {m}, {s}, {e}, {rnd}, &rng, {self.sat(a)})"))
        else:
            raise ExportError(f"internal: no C emission for fixed-point call {fn!r}")
        if c.exp is not None:
            var, terms, const, adds_rs = c.exp
            parts = [self.evar(t) for t in terms] + ([str(const)] if const else []) + \
                (["rs"] if adds_rs else [])
            T.append(("raw", f"{self.evar(var)} = {' + '.join(parts) or '0'};"))
        return T


def _comment(c, plan) -> str:
    return f"{c.node} ({c.fn}): {placement_note(c.outputs, plan)}".replace("*/", "* /")


def _algo(fp) -> str:
    return "zo" if fp.zo is not None else ("jvp" if fp.jvp is not None else "bp")


def _readme_fg(fp):
    spec = fp.zo if fp.zo is not None else fp.jvp
    if spec is None:
        return None
    return {"n": spec["n"], "seed": fp.seed, "params": [p["name"] for p in spec["params"]]}


def emit_context_fixed(fp, plan, *, model_hash: int, command: str) -> dict:
    ce = _CEmit(fp, plan)
    tensors = fp.tensors
    macros = []
    for name, pl in plan.placements.items():
        t = tensors[name]
        ct = CTYPE[t.dtype]
        if pl.section.startswith("external:"):
            raise ExportError(f"internal: {name} is a view of a caller buffer in a fixed program")
        if pl.section == "params_ro":
            continue
        if pl.offset % 8 and t.dtype == "i64":
            raise ExportError(f"internal: {name} is not 8-byte aligned")
        macros.append({"macro": ce.ptr(name),
                       "expr": f"(({ct} *)((uint8_t *){SECTION[pl.section]} + {pl.offset}))",
                       "comment": f" /* {t.shape} steps {pl.first}..{pl.last} */"
                       if pl.section == "arena" else ""})
    params, ro_arrays, init_arrays = [], [], []
    for name in fp.program.graph.params + [n for n, t in fp.program.tensors.items()
                                           if t.role is TensorRole.CONST]:
        t = tensors[name]
        ct = CTYPE[t.dtype]
        vals = _int_array(fp.initial[name])
        ch, inner = fp.layout[name]
        scale = np.asarray(fp.scales[name], np.float32)
        sname = ce.const(f"k_scale_{ce.names(name)}",
                         f"static const float k_scale_{ce.names(name)}[{ch}] = "
                         f"{{ {', '.join(c_float(v) for v in scale)} }};")
        iname = ce.const(f"k_inv_{ce.names(name)}",
                         f"static const float k_inv_{ce.names(name)}[{ch}] = "
                         f"{{ {', '.join(c_float(np.float32(1.0 / float(v))) for v in fp.scales[name])} }};")
        trainable = name in fp.trainable
        if trainable:
            init = f"k_init_{ce.names(name)}"
            init_arrays.append(f"static const {ct} {init}[{t.size}] = {{\n    {vals}\n}};")
        else:
            init = None
            ro_arrays.append(f"static const {ct} {ce.ptr(name)}[{t.size}] = {{\n    {vals}\n}};")
        bits = {"i8": 8, "i16": 16, "i32": 32, "i64": 64}[t.dtype]
        params.append({"name": name, "macro": ce.ptr(name), "size": t.size, "shape": list(t.shape),
                       "trainable": trainable, "init": init, "bits": bits, "bytes": t.nbytes,
                       "channels": ch, "inner": inner, "scale": sname, "inv": iname,
                       "dtype": t.dtype})

    def stmts(calls):
        return [{"comment": _comment(c, plan), "stmts": ce.call(c)} for c in calls]

    quantize_input = stmts(fp.forward[:1])
    forward = stmts(fp.forward[1:])
    train = stmts(fp.train)
    zo = None
    if fp.zo is not None:
        z = fp.zo
        lz = z["loss"]
        zo = {"n": z["n"], "dist": "TT_ZO_GAUSS" if z["dist"] else "TT_ZO_RADEMACHER",
              "sign": z["sign"], "frac_bits": z["frac_bits"], "sat": z["sat"], "sam": z["sam"],
              "loss": f"tt_softmax_xent{SUF[ce.logits_bits]}({ce.ptr(lz['logits'])}, label, {lz['rows']}, "
                      f"{lz['cols']}, {lz['x_mult']}, {lz['x_shift']}, lq, NULL)",
              "params": [{"ptr": ce.ptr(q["name"]), "sfx": f"_q{q['wbits']}", "size": q["size"],
                          "eps": ce.i32_table("zo_eps_" + q["name"], q["eps"]),
                          "sam": ce.i32_table("zo_sam_" + q["name"], q["sam"]) if q["sam"] else None,
                          "sat": q["sat"], "name": q["name"]}
                         for q in z["params"]]}
    jvp = None
    if fp.jvp is not None:
        j = fp.jvp
        jvp = {"n": j["n"], "sign": j["sign"], "sat": j["sat"], "pass": stmts(j["pass"])}
    upd = None
    spec = fp.zo if fp.zo is not None else fp.jvp
    if spec is not None:
        upd = {"dist": "TT_ZO_GAUSS" if spec["dist"] else "TT_ZO_RADEMACHER",
               "frac_bits": spec["frac_bits"], "halve_every": spec.get("halve_every", 0),
               "halvings": spec.get("halvings", 0),
               "params": [{"ptr": ce.ptr(q["name"]), "sfx": f"_q{q['wbits']}", "size": q["size"],
                           "lo": q["lo"], "hi": q["hi"], "sat": q["sat"], "name": q["name"],
                           "mult": ce.i32_table("zo_mult_" + q["name"], q["mult"]),
                           "shift": ce.i32_table("zo_shift_" + q["name"], q["shift"])}
                          for q in spec["params"]]}
        for table in upd["params"]:
            if table["sfx"] == "_q64":   # int64 bounds as C literals of the right type
                table["lo"], table["hi"] = (f"(-INT64_C({-table['lo']}))",
                                            f"INT64_C({table['hi']})")
    mem = dict(plan.section_bytes)
    ck = checkpoint_bytes(mem)
    banner = file_banner(model_hash, command)
    in_t, out_t = tensors[fp.input], tensors[fp.logits]
    cfg = fp.program.config
    out_scale = ce.const("k_out_scale", f"static const float k_out_scale = "
                         f"{c_float(fp.scales[fp.logits][0])};")
    return {
        "banner": banner, "model_hash": model_hash, "loss": "SoftmaxCrossEntropy",
        "training": bool(fp.trainable), "algo": _algo(fp),
        "backprop": fp.zo is None and fp.jvp is None, "fg": _readme_fg(fp),
        "input_size": in_t.size, "input_shape": list(in_t.shape),
        "output_size": out_t.size, "output_shape": list(out_t.shape), "batch": 1,
        "params": params, "trainable_floats": sum(p["size"] for p in params if p["trainable"]),
        "mem": mem, "checkpoint_bytes": ck, "tensor_macros": macros,
        "consts": ce.consts, "ro_arrays": ro_arrays, "init_arrays": init_arrays,
        "quantize_input": quantize_input, "forward": forward, "train": train, "zo": zo,
        "jvp": jvp, "upd": upd, "exps": [f"e_{i}" for i in range(len(fp.exps))],
        "n_sat": max(len(fp.sat_sites), 1), "sat_sites": list(fp.sat_sites),
        "bits": ce.logits_bits, "seed": fp.seed, "logits_macro": ce.ptr(fp.logits),
        "out_scale": out_scale, "label_arg": "label",
        "fixed": {"precision": fp.qcfg.precision, "n_sat": max(len(fp.sat_sites), 1)},
        "lr": c_float(cfg.lr),
        "rounding": "STOCHASTIC" if fp.qcfg.rounding == "stochastic" else "NEAREST",
    }


def emit_project_fixed(fp, plan, out_dir, *, model_hash: int, command: str = "",
                       force: bool = False) -> EmitResult:
    out = Path(out_dir)
    old_files = prepare_out_dir(out, force)
    ctx = emit_context_fixed(fp, plan, model_hash=model_hash, command=command)
    files = write_project(out, old_files, render(ctx, TEMPLATES), runtime_files_fixed())
    cfg = fp.program.config
    manifest = {
        "tinytrain": __version__, "model_hash": f"{model_hash:08x}", "command": command,
        "precision": fp.qcfg.precision, "algo": _algo(fp),
        "training": ctx["training"], "warnings": list(fp.warnings),
        "input": {"name": fp.input, "shape": ctx["input_shape"]},
        "output": {"name": fp.program.logits, "shape": ctx["output_shape"]},
        "loss": "SoftmaxCrossEntropy", "label_dtype": "i32", "batch": 1,
        "optimizer": cfg.optimizer, "lr": cfg.lr, "schedule": cfg.schedule,
        "trainable": list(fp.trainable),
        "params": [{k: p[k] for k in ("name", "shape", "size", "trainable", "dtype", "bytes")}
                   for p in ctx["params"]],
        "trainable_floats": ctx["trainable_floats"], "checkpoint_bytes": ctx["checkpoint_bytes"],
        "memory": plan.report(), "saturation_counters": list(fp.sat_sites),
        "quantization": {"bits": fp.bits, "layer_bits": dict(fp.qcfg.layer_bits),
                         "calibration": fp.qcfg.calibration,
                         "per_channel": fp.qcfg.per_channel, "rounding": fp.qcfg.rounding,
                         "input_scale": float(fp.scales[fp.qinput][0]),
                         "output_scale": float(fp.scales[fp.logits][0])},
        "sources": sorted(f for f in files if f.endswith(".c") and f != "main.c"),
        "files": sorted(files),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return EmitResult(out, tuple(sorted(files)), manifest)
