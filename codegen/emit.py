"""emit_project: TrainingProgram + MemoryPlan -> a folder of C99 sources.

The folder is self-contained: generated tt_model.{h,c}, the runtime_c kernels it calls, a host
Makefile, an example main.c, a README of the API and tt_manifest.json (what the host simulator
and the board builder read; also the list of files export created, so a re-export never touches
anything else).
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from math import prod
from pathlib import Path

import jinja2
import numpy as np

from .. import __version__
from ..errors import ExportError
from ..ir import TensorRole
from ..passes.training import Step
from . import kernels
from .cfloat import c_float, c_float_array
from .names import CNames

TEMPLATES = Path(__file__).parent / "templates"
RUNTIME = Path(__file__).resolve().parent.parent / "runtime_c"
if not RUNTIME.exists():  # installed layout: runtime_c shipped inside the package
    RUNTIME = Path(__file__).resolve().parent / "runtime_c"
MANIFEST = "tt_manifest.json"
SECTION_ARRAY = {"params_rw": "tt_params_rw", "params_ro": "tt_params_ro",
                 "grads": "tt_grads", "opt_state": "tt_opt_state", "arena": "tt_arena"}


@dataclass(frozen=True)
class EmitResult:
    out_dir: Path
    files: tuple[str, ...]
    manifest: dict


class EmitCtx:
    def __init__(self, program, plan, names):
        self.program, self.plan, self.names = program, plan, names
        self.structs: dict[str, dict] = {}
        self.fg: dict | None = None   # jvp: seed, dist, draw offsets of the tangents
        self.gens: set[str] = set()   # jvp: tt_tangent generators the pass declares

    def shape(self, name):
        return self.program.tensors[name].shape

    def ptr(self, name) -> str:
        pl = self.plan.placements.get(name)
        if pl is not None and pl.section.startswith("external:"):
            name = pl.section.split(":", 1)[1]
        if name == self.program.input:
            return "x"
        if name == self.program.label:
            return "label" if self.program.tensors[name].dtype == "i32" else "target"
        return "t_" + self.names(name)

    def same_bytes(self, a, b) -> bool:
        """True when two tensors are views of one buffer (the planner aliased them)."""
        def where(n):
            pl = self.plan.placements.get(n)
            if pl is None:
                return ("external", n)
            if pl.section.startswith("external:"):
                return ("external", pl.section.split(":", 1)[1])
            return (pl.section, pl.offset)
        return where(a) == where(b)

    def const_struct(self, ctype, key, values) -> str:
        name = "k_" + self.names("struct:" + key).replace("struct_", "", 1)
        vals = ", ".join(str(v) for v in values)
        prev = self.structs.get(name)
        if prev is None:
            self.structs[name] = {"type": ctype, "name": name, "init": vals}
        elif prev["init"] != vals:  # same node, different geometry: should never happen
            raise ExportError(f"internal: two descriptors named {name}")
        return name


def placement_note(outputs, plan) -> str:
    """'name -> arena[a:b]' for each output in the arena (the generated code's comments)."""
    outs = []
    for o in outputs:
        pl = plan.placements.get(o)
        if pl is not None and pl.section == "arena":
            outs.append(f"{o} -> arena[{pl.offset}:{pl.offset + pl.nbytes}]")
        else:
            outs.append(o)
    return ", ".join(outs)


def _step_comment(s, ctx) -> str:
    what = {"fwd": "forward", "vjp": f"backward wrt input {s.wrt}", "loss": "loss",
            "update": "update", "scale": "gradient x -lr, fused SGD",
            "tangent": "parameter tangent, drawn", "loss_jvp": "loss and dL.v",
            "jvp": "tangent" + (f", draws the tangent of input(s) {list(s.generated)}"
                                if s.generated else "")}[s.kind]
    return f"{s.node} ({s.op}, {what}): {placement_note(s.outputs, ctx.plan)}".replace("*/", "* /")


def loss_op_of(program) -> str:
    return next(s.op for s in program.train_steps if s.kind in ("loss", "loss_jvp"))


def _fg_context(program, ctx) -> dict:
    """What the forward-gradient update (tt_fg_update.c.j2) needs: the perturbed parameters,
    in export order (the order their directions are drawn in), and the optimizer."""
    from ..passes.forward_mode import draw_offsets
    from ..passes.zeroth_order import DISTS
    cfg, tensors = program.config, program.tensors
    mom = cfg.optimizer == "momentum"
    return {"n": int(cfg.perturbations), "seed": int(cfg.seed),
            "dist": {"rademacher": "TT_ZO_RADEMACHER", "gaussian": "TT_ZO_GAUSS"}[cfg.zo_dist],
            "estimator": cfg.zo_estimator, "momentum": c_float(cfg.momentum) if mom else None,
            "offsets": draw_offsets(program.fg_params, tensors, DISTS[cfg.zo_dist]),
            "params": [{"macro": ctx.ptr(p), "size": tensors[p].size,
                        "state": ctx.ptr(p + "__mom") if mom else "NULL"}
                       for p in program.fg_params]}


def emit_context(program, plan, *, model_hash: int, command: str) -> dict:
    names = CNames()
    ctx = EmitCtx(program, plan, names)
    cfg = program.config
    tensors = program.tensors

    macros = []
    for name, pl in plan.placements.items():
        if pl.section.startswith("external:"):
            continue
        arr = SECTION_ARRAY[pl.section]
        if pl.offset % 4:
            raise ExportError(f"internal: {name} is not 4-byte aligned")
        comment = ""
        if pl.section == "arena":
            comment = f" /* {tensors[name].shape} steps {pl.first}..{pl.last} */"
        macros.append({"macro": ctx.ptr(name), "expr": f"({arr} + {pl.offset // 4})",
                       "comment": comment})

    def pack(section):
        n = plan.section_bytes[section] // 4
        buf = np.zeros(max(n, 1), np.float32)
        for name, pl in plan.placements.items():
            if pl.section == section:
                v = np.asarray(program.graph.initializers[name], np.float32).reshape(-1)
                if not np.all(np.isfinite(v)):
                    raise ExportError(f"parameter {name!r} contains NaN or Inf; cannot export")
                buf[pl.offset // 4: pl.offset // 4 + v.size] = v
        return c_float_array(buf[:max(n, 1)])

    def calls(step_list, table):
        out = []
        for s in step_list:
            fn = table.get(s.op)
            if fn is None:
                raise ExportError(f"node {s.node!r} ({s.op}): no fp32 C kernel for this op")
            out.append({"comment": _step_comment(s, ctx), "calls": fn(s, ctx)})
        return out

    forward = calls(program.forward_steps, kernels.FORWARD)
    rest = program.train_steps[len(program.forward_steps):]
    backprop = cfg.algo == "bp" or bool(cfg.hybrid_bp_layers)
    fg = zo = jvp = zo_loss = None
    loss = backward = None
    if backprop:
        loss_step = rest[0]
        training = len(loss_step.outputs) > 1
        if not training and program.trainable:
            raise ExportError("nothing to train: no trainable parameter influences the loss "
                              "(check --trainable)")
        backward = calls(rest[1:], kernels.VJP)
        loss = {"comment": _step_comment(loss_step, ctx),
                "call": kernels.loss_call(loss_step, ctx, f"(1.0f / {cfg.batch})", "l")
                if training else ""}
    if cfg.algo in ("zo", "jvp"):
        training = True
        fg = _fg_context(program, ctx)
    if cfg.algo == "zo":
        zo = {"eps0": c_float(cfg.zo_eps), "eps": "eps", "halve_every": int(cfg.zo_eps_halve_every),
              "halvings": int(cfg.zo_eps_halvings)}
        fg["coef"] = "d / (2.0f * tt_zo_eps_at(ctx->step) * (float)TT_BATCH) / (float)TT_FG_N"
        fg["dsum_doc"] = "sum over the batch of L+ - L-"
        lstep = Step("loss", loss_op_of(program), (program.logits, program.label),
                     (program.loss,), loss_op_of(program))
        zo_loss = {"comment": _step_comment(lstep, ctx),
                   "call": kernels.loss_call(lstep, ctx, "1.0f", "(*l)")}
    elif cfg.algo == "jvp":
        fg["coef"] = "d / (float)TT_BATCH / (float)TT_FG_N"
        fg["dsum_doc"] = "sum over the batch of dL . v"
        ctx.fg = fg
        jsteps = [{"comment": _step_comment(s, ctx), "calls": kernels.jvp_pass_calls(s, ctx)}
                  for s in program.train_steps]
        jvp = {"steps": jsteps, "gens": sorted(ctx.gens)}
    if loss is None:
        loss = {"comment": "", "call": ""}
    if backward is None:
        backward = []
    updates = [kernels.update_call(s, ctx, "lr", cfg, "(int)ctx->step + 1")
               for s in program.update_steps]

    params = []
    for name in program.graph.params + [n for n, t in tensors.items() if t.role is TensorRole.CONST]:
        t = tensors[name]
        params.append({"name": name, "macro": ctx.ptr(name), "size": t.size,
                       "shape": list(t.shape), "trainable": name in program.trainable})
    mem = dict(plan.section_bytes)
    ck = 20 + mem["params_rw"] + mem["opt_state"] + 4
    banner = ("/* Generated by tinytrain {v} -- do not edit.\n"
              " * model hash 0x{h:08X}\n * command: {c}\n */").format(
        v=__version__, h=model_hash, c=command.replace("*/", "* /"))
    out_t = tensors[program.logits]
    in_t = tensors[program.input]
    return {
        "banner": banner, "model_hash": model_hash, "loss": loss_op_of(program), "training": training,
        "algo": cfg.algo, "zo": zo, "fg": fg, "jvp": jvp, "zo_loss": zo_loss,
        "backprop": backprop,
        "input_size": in_t.size, "input_shape": list(in_t.shape),
        "output_size": out_t.size, "output_shape": list(out_t.shape),
        "batch": cfg.batch, "params": params,
        "trainable_floats": mem["params_rw"] // 4, "mem": mem, "checkpoint_bytes": ck,
        "tensor_macros": macros, "const_structs": list(ctx.structs.values()),
        "params_init": pack("params_rw"), "params_ro": pack("params_ro"),
        "forward": forward, "backward": backward, "loss_step": loss, "updates": updates,
        "schedule": cfg.schedule, "lr": c_float(cfg.lr), "gamma": c_float(cfg.gamma),
        "total_steps": int(cfg.total_steps), "step_size": int(cfg.step_size),
        "logits_macro": ctx.ptr(program.logits),
        "label_arg": "label" if loss_op_of(program) == "SoftmaxCrossEntropy" else "target",
    }


# Runtime files a project of each precision needs (board/stream support is added by the
# board builder, not here).
RUNTIME_FILES = {
    "fp32": (("include", "tt_status.h"), ("include", "tt_kernels.h"), ("src", "tt_util.c"),
             ("src", "*_f32.c"), ("include", "tt_prng.h"), ("src", "tt_prng.c"),
             ("include", "tt_zo.h"), ("include", "tt_jvp.h")),
    # binary16 storage, fp32 arithmetic (codegen/emit_fp16.py); tt_util.c brings the status
    # strings, CRC32 and the pool geometry check the f16 kernels call; the PRNG draws the zo
    # perturbations (tt_zo_f16.c)
    "fp16": (("include", "tt_status.h"), ("include", "tt_kernels.h"), ("include", "tt_fp16.h"),
             ("include", "tt_prng.h"), ("src", "tt_util.c"), ("src", "tt_fp16.c"),
             ("src", "tt_prng.c"), ("src", "*_f16.c")),
}


def _runtime_files(precision: str = "fp32") -> list[Path]:
    out: list[Path] = []
    for sub, pattern in RUNTIME_FILES[precision]:
        out += sorted((RUNTIME / sub).glob(pattern))
    return out


def prepare_out_dir(out: Path, force: bool) -> list[str]:
    """Refuse a non-empty directory tinytrain did not create; return the files the previous
    export listed in its manifest (the only ones a re-export may replace)."""
    old_files: list[str] = []
    if out.exists():
        if not out.is_dir():
            raise ExportError(f"{out} exists and is not a directory")
        existing = sorted(p.name for p in out.iterdir())
        if existing:
            mf = out / MANIFEST
            if not mf.exists():
                raise ExportError(
                    f"{out} already holds files tinytrain did not create ({', '.join(existing[:5])}"
                    f"{', ...' if len(existing) > 5 else ''}); choose an empty or new directory. "
                    "Nothing was written.")
            try:
                old_files = json.loads(mf.read_text())["files"]
            except (ValueError, KeyError):
                raise ExportError(f"{mf} is not a tinytrain manifest; refusing to overwrite "
                                  f"{out}. Nothing was written.") from None
            # build/ (firmware) and loss_curve.png (simulate) are written by tinytrain's own
            # commands into the project: they are ours to keep, not foreign.
            foreign = [e for e in existing if e not in old_files and e != MANIFEST
                       and e not in ("build", "loss_curve.png", "tt_demo", "libtt_model.so")]
            if foreign and not force:
                raise ExportError(
                    f"{out} holds files from an earlier export plus files tinytrain did not "
                    f"create ({', '.join(foreign[:5])}); move them away or export elsewhere. "
                    "Nothing was written.")
    return old_files


def write_project(out: Path, old_files, rendered: dict, runtime_files) -> list[str]:
    """Write the rendered sources and copy the runtime files; remove only files the previous
    export created that this one does not. Returns the file names written."""
    out.mkdir(parents=True, exist_ok=True)
    keep = set(rendered) | {f.name for f in runtime_files}
    for stale in old_files:  # only what our previous export created
        p = out / stale
        if p.is_file() and stale not in keep:
            p.unlink()
    files = []
    for name, text in rendered.items():
        (out / name).write_text(text)
        files.append(name)
    for f in runtime_files:
        shutil.copyfile(f, out / f.name)
        files.append(f.name)
    return files


def render(ctx: dict, templates: dict) -> dict:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             autoescape=False)
    return {name: env.get_template(t).render(**ctx) for name, t in templates.items()}


PROJECT_TEMPLATES = {"tt_model.h": "tt_model.h.j2", "tt_model.c": "tt_model.c.j2",
                     "main.c": "main.c.j2", "Makefile": "Makefile.j2",
                     "README.md": "README.md.j2"}


def emit_project(program, plan, out_dir, *, model_hash: int, command: str = "",
                 force: bool = False) -> EmitResult:
    """Write the C project. Refuses a non-empty directory that tinytrain did not create;
    on re-export it replaces only the files listed in the previous manifest."""
    out = Path(out_dir)
    old_files = prepare_out_dir(out, force)
    ctx = emit_context(program, plan, model_hash=model_hash, command=command)
    files = write_project(out, old_files, render(ctx, PROJECT_TEMPLATES), _runtime_files())
    cfg = program.config
    manifest = {
        "tinytrain": __version__, "model_hash": f"{model_hash:08x}", "command": command,
        "precision": "fp32", "algo": cfg.algo, "training": ctx["training"],
        "input": {"name": program.input, "shape": ctx["input_shape"]},
        "output": {"name": program.logits, "shape": ctx["output_shape"]},
        "loss": ctx["loss"], "label_dtype": program.tensors[program.label].dtype,
        "batch": cfg.batch, "optimizer": cfg.optimizer, "lr": cfg.lr, "schedule": cfg.schedule,
        "trainable": list(program.trainable),
        "params": [{k: p[k] for k in ("name", "shape", "size", "trainable")} for p in ctx["params"]],
        "trainable_floats": ctx["trainable_floats"], "checkpoint_bytes": ctx["checkpoint_bytes"],
        "memory": plan.report(),
        "sources": sorted(f for f in files if f.endswith(".c") and f != "main.c"),
        "files": sorted(files),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return EmitResult(out, tuple(sorted(files)), manifest)
