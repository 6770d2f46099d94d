"""emit_project_fp16: Fp16Program (passes/lower_fp16.py) -> a C project, binary16 storage.

Prints the lowered call list as C, one statement per Call with its arguments in order (the
numpy reference, tinytrain/reference_fp16.py, reads the same arguments), so the generated
training step is bit-identical to the reference. The public API is the float API of every
export (tt_model.h), so the host simulator and the CLI drive it unchanged; the halves are
reachable through tt_param_read_raw and the checkpoint.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import ExportError
from ..passes.lower_fp16 import (COEF, COS_PI_COEFFS, DL_OUT, LOSS_OUT, LR, MU, PI_F32, STREAM,
                                 ZSTATE, Call, Fp16Program, Gen, Ref, Struct, Sym, lower_fp16)
from .cfloat import c_float
from .emit import (MANIFEST, EmitCtx, EmitResult, _runtime_files, checkpoint_bytes, file_banner,
                   placement_note, prepare_out_dir, render, write_project)
from .names import CNames

TEMPLATES = {"tt_model.h": "tt_model.h.j2", "tt_model.c": "tt_model_fp16.c.j2",
             "main.c": "main.c.j2", "Makefile": "Makefile.j2", "README.md": "README.md.j2"}
SECTION = {"params_rw": "tt_params_rw", "params_ro": "tt_params_ro", "grads": "tt_grads",
           "arena": "tt_arena"}
ITEM = {"f16": 2, "f32": 4}


def _hex_array(values, per_line: int = 12) -> str:
    flat = [f"0x{int(v):04X}" for v in np.asarray(values, np.uint16).reshape(-1)]
    if not flat:
        return "0"
    return ",\n    ".join(", ".join(flat[i:i + per_line]) for i in range(0, len(flat), per_line))


def _section_halves(lp: Fp16Program, section: str) -> np.ndarray:
    """The initial contents of a parameter section, as halves at their planned offsets."""
    plan = lp.plan
    buf = np.zeros(max(plan.section_bytes[section] // 2, 1), np.uint16)
    for name, pl in plan.placements.items():
        if pl.section == section:
            h = lp.init[name]
            buf[pl.offset // 2: pl.offset // 2 + h.size] = h
    return buf


def _opt_state_layout(lp: Fp16Program) -> dict:
    """opt_state holds fp32 tensors (master weights, fp32 momentum) and, with fp16_state,
    half momentum; lower_fp16 lists the fp32 ones first, so the section is a struct of a float
    array and a uint16_t array (no cast between element types: strict-aliasing clean)."""
    plan, tensors = lp.plan, lp.tensors
    items = sorted((pl.offset, name) for name, pl in plan.placements.items()
                   if pl.section == "opt_state")
    dts = [tensors[n].dtype for _, n in items]
    total = plan.section_bytes["opt_state"]
    n32 = sum(tensors[n].nbytes for _, n in items if tensors[n].dtype == "f32")
    n16 = sum(tensors[n].nbytes for _, n in items if tensors[n].dtype == "f16")
    doc = []
    if lp.masters:
        doc.append(f"fp32 master weights ({sum(tensors[m].nbytes for m in lp.masters.values())} "
                   "bytes)")
    moms = [n for _, n in items if n not in set(lp.masters.values())]
    if moms:
        doc.append(f"{'half' if lp.fp16_state else 'fp32'} momentum "
                   f"({sum(tensors[n].nbytes for n in moms)} bytes)")
    doc = ", ".join(doc) or "none (plain SGD without master weights)"
    if "f16" in dts and "f32" in dts:
        first16 = dts.index("f16")
        if "f32" in dts[first16:]:
            raise ExportError("internal: opt_state mixes fp32 tensors after halves")
        start = items[first16][0]
        return {"kind": "mixed", "f16_start": start, "f32_words": start // 4,
                "f16_halves": (total - start) // 2, "doc": doc, "f32_bytes": n32,
                "f16_bytes": n16}
    return {"kind": "f16" if "f16" in dts else "f32", "f16_start": 0 if "f16" in dts else total,
            "doc": doc, "f32_bytes": n32, "f16_bytes": n16}


def _comment(c: Call, plan) -> str:
    what = {"cast": "input float -> half", "fwd": "forward", "loss": "loss",
            "vjp": f"backward wrt input {c.wrt}", "update": f"{c.op} update",
            "zo": f"zo {c.op.lower()}", "gen": "tangent generator at its first draw",
            "tangent": "parameter tangent, drawn, as halves", "jvp": "tangent",
            "loss_jvp": "dL.v in fp32"}[c.kind]
    if c.kernel == "view":
        what += ", a view: same bytes, nothing to do"
    elif c.accumulate:
        what += ", accumulating"
    note = placement_note(c.outputs, plan)
    return f"{c.node} ({c.op}, {what}){': ' + note if note else ''}".replace("*/", "* /")


class _Printer:
    def __init__(self, ctx: EmitCtx):
        self.ctx = ctx

    def arg(self, a) -> str:
        if a is None:
            return "NULL"
        if isinstance(a, Ref):
            return self.ctx.ptr(a.name)
        if isinstance(a, Gen):
            return "&" + a.var
        if isinstance(a, Struct):
            vals = ["{" + ", ".join(map(str, v)) + "}" if isinstance(v, tuple) else str(v)
                    for v in a.values]
            return "&" + self.ctx.const_struct(a.ctype, a.key, vals)
        if a is LR:
            return "lr"
        if a is LOSS_OUT:
            return "&l"
        if a is ZSTATE:
            return "&z"
        if a is COEF:
            return "a"
        if a is MU:
            return "mu"
        if a is STREAM:
            return "stream"
        if a is DL_OUT:
            return "&dl"
        if isinstance(a, Sym):
            raise ExportError(f"internal: unknown run-time argument {a.name!r}")
        if isinstance(a, (np.floating, float)):
            return c_float(a)
        if isinstance(a, (bool, np.bool_)):
            raise ExportError("internal: boolean kernel argument")
        if isinstance(a, np.unsignedinteger):   # seeds, draw counts: unsigned C literals
            return f"{int(a)}u"
        return str(int(a))

    def call(self, c: Call) -> list[str]:
        if c.kernel == "view":
            return []
        if c.kernel == "copy":
            dst, src, n = c.args
            return [f"(memcpy({self.arg(dst)}, {self.arg(src)}, {n} * sizeof(uint16_t)), TT_OK)"]
        return [f"{c.kernel}({', '.join(self.arg(a) for a in c.args)})"]


def _cos_horner() -> str:
    c = [c_float(v) for v in COS_PI_COEFFS]
    expr = c[-1]
    for k in reversed(c[:-1]):
        expr = f"{k} + x2 * ({expr})"
    return expr


def emit_context_fp16(lp: Fp16Program, *, model_hash: int, command: str) -> dict:
    plan = lp.plan
    ctx = EmitCtx(lp, plan, CNames())
    pr = _Printer(ctx)
    cfg = lp.config
    tensors = lp.tensors
    layout = _opt_state_layout(lp)

    macros = []
    for name, pl in plan.placements.items():
        if pl.section.startswith("external:"):
            raise ExportError(f"internal: {name} is a view of a caller buffer in an fp16 program")
        dt = tensors[name].dtype
        if pl.offset % ITEM[dt]:
            raise ExportError(f"internal: {name} is not {ITEM[dt]}-byte aligned")
        if pl.section == "opt_state":
            if layout["kind"] == "mixed":
                base = "tt_opt_state.f32" if dt == "f32" else "tt_opt_state.f16"
                off = pl.offset if dt == "f32" else pl.offset - layout["f16_start"]
            else:
                base, off = "tt_opt_state", pl.offset
        else:
            if dt != "f16":
                raise ExportError(f"internal: {name} ({dt}) in the half section {pl.section}")
            base, off = SECTION[pl.section], pl.offset
        comment = (f" /* {tensors[name].shape} steps {pl.first}..{pl.last} */"
                   if pl.section == "arena" else "")
        macros.append({"macro": ctx.ptr(name), "expr": f"({base} + {off // ITEM[dt]})",
                       "comment": comment})

    def calls(call_list):
        return [{"comment": _comment(c, plan), "calls": pr.call(c)} for c in call_list]

    forward = calls(lp.forward_calls)
    loss = {"comment": "", "call": ""}
    backward = []
    if lp.sample_calls:
        ls = lp.sample_calls[0]
        loss = {"comment": _comment(ls, plan), "call": pr.call(ls)[0]}
        backward = calls(lp.sample_calls[1:])
    updates = [{"comment": _comment(u, plan), "call": pr.call(u)[0]} for u in lp.update_calls]
    zo = fg = jvp = None
    one = lambda cl: [{"comment": _comment(c, plan), "call": pr.call(c)[0]}  # noqa: E731
                      for c in cl]
    if lp.fg is not None:
        f = lp.fg
        fg = {"n": f.n, "seed": f.seed, "params": list(f.params), "n_f": c_float(f.n_f),
              "sign": f.sign, "momentum": None if f.momentum is None else c_float(f.momentum),
              "update_calls": one(f.update), "apply_calls": one(f.apply),
              # the C of FgSpec.coef's scale: ZoSpec.scale / batch_f
              "scale": "(2.0f * eps * (float)TT_BATCH)" if lp.zo else "(float)TT_BATCH",
              "scale_doc": "(2 eps batch)" if lp.zo else "batch",
              "dsum_doc": ("sum over the batch of L+ - L-" if lp.zo
                           else "sum over the batch of dL . v (fp32)")}
    if lp.zo is not None:
        zs = lp.zo
        zo = {"eps": c_float(zs.eps), "halve_every": zs.halve_every, "halvings": zs.halvings,
              "perturb_calls": one(zs.perturb), "restore_calls": one(zs.restore),
              "loss": {"comment": _comment(zs.loss, plan), "call": pr.call(zs.loss)[0]}}
    if lp.jvp is not None:
        jvp = {"calls": calls(lp.jvp.calls), "gens": list(lp.jvp.gens)}

    params = []
    for name in lp.params + tuple(n for n in lp.init if n not in lp.params):
        t = tensors[name]
        m = lp.masters.get(name)
        params.append({"name": name, "macro": ctx.ptr(name), "size": t.size,
                       "shape": list(t.shape), "trainable": name in lp.trainable,
                       "master": ctx.ptr(m) if m else "NULL"})
    masters = [{"param": ctx.ptr(p), "master": ctx.ptr(m), "size": tensors[p].size}
               for p, m in lp.masters.items()]
    mem = dict(plan.section_bytes)
    ck = checkpoint_bytes(mem)
    banner = file_banner(model_hash, command)
    in_t, out_t = tensors[lp.input], tensors[lp.logits]
    fp16 = {"loss_scale": c_float(lp.loss_scale), "grad_scale": c_float(lp.grad_scale),
            "inv_scale": c_float(lp.inv_scale), "master_weights": bool(lp.masters),
            "fp16_state": lp.fp16_state}
    return {
        "banner": banner, "model_hash": model_hash, "loss": "SoftmaxCrossEntropy",
        "training": lp.training, "algo": "zo" if zo else "jvp" if jvp else "bp",
        "backprop": fg is None, "fg": fg, "zo": zo, "jvp": jvp, "input_size": in_t.size,
        "input_shape": list(in_t.shape),
        "output_size": out_t.size, "output_shape": list(out_t.shape), "batch": int(cfg.batch),
        "params": params,
        "trainable_floats": sum(p["size"] for p in params if p["trainable"]),
        "mem": mem, "checkpoint_bytes": ck, "tensor_macros": macros,
        "const_structs": list(ctx.structs.values()),
        "params_init": _hex_array(_section_halves(lp, "params_rw")),
        "params_ro": _hex_array(_section_halves(lp, "params_ro")),
        "opt_state": layout, "masters": masters,
        "forward": forward, "backward": backward, "loss_step": loss, "updates": updates,
        "schedule": cfg.schedule, "lr": c_float(cfg.lr), "gamma": c_float(cfg.gamma),
        "total_steps": max(int(cfg.total_steps), 1), "step_size": max(int(cfg.step_size), 1),
        "cos": {"pi": c_float(PI_F32), "horner": _cos_horner()},
        "logits_macro": ctx.ptr(lp.logits), "label_arg": "label", "fp16": fp16,
    }


_README_FP16 = """
## FP16
Parameters, activations and gradients are IEEE binary16 (`uint16_t` bit patterns); every kernel
computes in fp32 and rounds to half once per stored value, in a fixed order (`tt_fp16.h`), so
the host build, Cortex-M and RISC-V targets and the numpy reference produce the same bits.
Static loss scale {loss_scale}: the logit gradient is multiplied by loss scale / batch before
it is stored as a half, the update divides it out in fp32.
{master}{state}
{nonfinite}
`tt_param_read_raw` returns the halves of a parameter.
"""

_NONFINITE_BP = """A step with an Inf/NaN gradient (an overflow of the scaled gradients) is skipped: the batch is
dropped, the weights are untouched and `tt_train_step` returns `TT_ERR_NAN`."""
_NONFINITE_ZO = """zo: the perturbed halves are half(master + eps z) and the restore is half(master), exact; the
update is applied to the fp32 masters. A NaN/Inf perturbed loss drops the batch with the weights
restored, and `tt_train_step` returns `TT_ERR_NAN`. The loss scale is unused (no gradients)."""
_NONFINITE_JVP = """jvp: tangents are halves beside the activations (each rounded once, when stored),
dL.v is fp32, and the update is applied to the fp32 masters. A NaN/Inf loss or dL.v (e.g. a
tangent that overflows the half range) drops the batch with the weights untouched, and
`tt_train_step` returns `TT_ERR_NAN`. The loss scale is unused (no gradients)."""


def emit_project_fp16(program, out_dir, *, model_hash: int, command: str = "",
                      force: bool = False, cfg=None) -> EmitResult:
    """Write the C project of an Fp16Program (or of a TrainingProgram, lowered here with
    cfg's fp16 options). Same directory rules as emit_project."""
    lp = program if isinstance(program, Fp16Program) else lower_fp16(program, cfg)
    out = Path(out_dir)
    old_files = prepare_out_dir(out, force)
    ctx = emit_context_fp16(lp, model_hash=model_hash, command=command)
    rendered = render(ctx, TEMPLATES)
    master_bytes = sum(lp.tensors[m].nbytes for m in lp.masters.values())
    rendered["README.md"] += _README_FP16.format(
        loss_scale=ctx["fp16"]["loss_scale"].rstrip("f"),
        master=(f"Trainable parameters keep fp32 master weights in the optimizer state\n"
                f"({master_bytes} bytes): the update is applied to them and rounded to the "
                "half the forward\npass reads." if lp.masters
                else "No master weights: updates apply to the halves."),
        state=("\nMomentum state: " + ("halves." if lp.fp16_state else "fp32.")
               if lp.config.optimizer == "momentum" else ""),
        nonfinite=(_NONFINITE_ZO if lp.zo is not None else _NONFINITE_JVP if lp.jvp is not None
                   else _NONFINITE_BP))
    files = write_project(out, old_files, rendered, _runtime_files("fp16"))
    cfg = lp.config
    manifest = {
        "tinytrain": __version__, "model_hash": f"{model_hash:08x}", "command": command,
        "precision": "fp16", "algo": ctx["algo"], "training": ctx["training"],
        "input": {"name": lp.input, "shape": ctx["input_shape"]},
        "output": {"name": lp.logits, "shape": ctx["output_shape"]},
        "loss": "SoftmaxCrossEntropy", "label_dtype": "i32", "batch": int(cfg.batch),
        "optimizer": cfg.optimizer, "lr": cfg.lr, "schedule": cfg.schedule,
        "trainable": list(lp.trainable),
        "params": [dict({k: p[k] for k in ("name", "shape", "size", "trainable")},
                        dtype="f16", bytes=2 * p["size"]) for p in ctx["params"]],
        "trainable_floats": ctx["trainable_floats"], "checkpoint_bytes": ctx["checkpoint_bytes"],
        "memory": lp.plan.report(),
        "fp16": {"loss_scale": lp.loss_scale, "master_weights": bool(lp.masters),
                 "master_section": "opt_state" if lp.masters else None,
                 "master_bytes": master_bytes,
                 "momentum_state": (("f16" if lp.fp16_state else "f32")
                                    if cfg.optimizer == "momentum" else None)},
        "zo": None if lp.zo is None else {
            "perturbations": lp.zo.fg.n, "eps": cfg.zo_eps, "dist": cfg.zo_dist,
            "estimator": cfg.zo_estimator, "seed": lp.zo.fg.seed, "params": list(lp.zo.fg.params),
            "eps_halve_every": lp.zo.halve_every, "eps_halvings": lp.zo.halvings},
        "jvp": None if lp.jvp is None else {
            "perturbations": lp.jvp.fg.n, "dist": cfg.zo_dist, "estimator": cfg.zo_estimator,
            "seed": lp.jvp.fg.seed, "params": list(lp.jvp.fg.params),
            "tangent_dtype": "f16"},
        "sources": sorted(f for f in files if f.endswith(".c") and f != "main.c"),
        "files": sorted(files),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return EmitResult(out, tuple(sorted(files)), manifest)
