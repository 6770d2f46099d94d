"""The one module that sees every stage: ONNX -> IR -> training program -> plan -> C.

CLI commands and examples go through these functions so they share one path.
"""
from __future__ import annotations

import shlex
import sys
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np

from .errors import ConfigError, TinytrainError
from .ir import Graph
from .passes import TrainConfig, build_training_program
from .passes.memory_plan import plan_arena


def load_model(path, batch: int = 1) -> Graph:
    """An already-quantized ONNX (QDQ / QLinear ops) loads as its dequantized float model; its
    scales are used by the int8 export only (load_model_with_scales)."""
    return load_model_with_scales(path, batch)[0]


def load_model_with_scales(path, batch: int = 1) -> tuple[Graph, dict | None]:
    """(graph, scales): scales (activation tensor -> float, weight -> float or per-output-
    channel array) when the ONNX file is already quantized (frontend/onnx_quant.py), else
    None. fp32 / fp16 exports of a quantized model train its dequantized float model."""
    from .frontend import import_onnx
    from .frontend.onnx_quant import import_quantized_onnx, is_quantized_onnx
    if is_quantized_onnx(path):
        return import_quantized_onnx(path, batch=batch)
    return import_onnx(path, batch=batch), None


def fit_imported_scales(graph: Graph, cfg: TrainConfig, scales):
    """Imported weight scales the fixed-point lowering can keep: a layer that passes gradients
    back (bp) or whose parameters zo perturbs needs one scale per weight tensor, so imported
    per-channel scales of such layers are dropped (the weight is requantized per tensor).
    Returns (scales, notes)."""
    if not scales:
        return scales, []
    program = build_training_program(graph, replace(cfg, fuse_update=False))
    trainable = set(program.trainable)
    if cfg.algo == "zo":
        whole = {n.name for n in graph.nodes
                 if any(i in trainable for i in n.inputs[1:])}
    else:
        whole = {s.node for s in program.train_steps if s.kind == "vjp" and s.wrt == 0}
    scales, notes = dict(scales), []
    for n in graph.nodes:
        if n.name in whole and len(n.inputs) > 1 and n.inputs[1] in scales:
            s = np.asarray(scales[n.inputs[1]]).reshape(-1)
            if s.size > 1 and not np.all(s == s[0]):
                del scales[n.inputs[1]]
                why = "zo perturbs the layer" if cfg.algo == "zo" else \
                    "its layer passes gradients back"
                notes.append(f"{n.inputs[1]!r}: its imported per-channel scales are replaced by "
                             f"one per-tensor scale ({why}), so its int8 values differ from the "
                             "ONNX file's")
    return scales, notes


def model_hash(graph: Graph, cfg: TrainConfig) -> int:
    """CRC32 over the structure, parameter bytes and training config: checkpoints carry it so
    a checkpoint of another model or configuration is refused."""
    crc = 0
    for n in graph.nodes:
        crc = zlib.crc32(f"{n.op}{n.inputs}{n.outputs}{sorted(n.attrs.items())}".encode(), crc)
    for k in sorted(graph.initializers):
        crc = zlib.crc32(k.encode(), crc)
        crc = zlib.crc32(np.ascontiguousarray(graph.initializers[k], np.float32).tobytes(), crc)
    crc = zlib.crc32(repr(cfg).encode(), crc)
    return crc & 0xFFFFFFFF


def make_program(graph: Graph, cfg: TrainConfig):
    program = build_training_program(graph, cfg)
    return program, plan_arena(program)


def export(model, out_dir, cfg: TrainConfig, *, precision: str = "fp32", algo: str | None = None,
           command: str | None = None, calibration=None, quant=None, force: bool = False):
    """Export a model (path or Graph) as a C project. Returns (EmitResult, program, plan)."""
    from .codegen import emit_project
    if precision in ("int8", "int16"):
        return export_fixed(model, out_dir, cfg, precision=precision, algo=algo, command=command,
                            calibration=calibration, quant=quant, force=force)
    if precision == "fp16":
        return export_fp16(model, out_dir, cfg, algo=algo, command=command, force=force)
    if precision != "fp32":
        raise ConfigError(f"precision {precision!r} is not available; choose fp32, fp16, int8 "
                          "or int16")
    algo = algo or cfg.algo
    if algo not in ("bp", "zo", "jvp"):
        raise ConfigError(f"training algorithm {algo!r} is not available yet; this build "
                          "exports bp, zo and jvp")
    if algo != cfg.algo:
        cfg = replace(cfg, algo=algo)
    graph = load_model(model) if not isinstance(model, Graph) else model
    program, plan = make_program(graph, cfg)
    cmd = command if command is not None else " ".join(shlex.quote(a) for a in sys.argv)
    res = emit_project(program, plan, out_dir, model_hash=model_hash(graph, cfg), command=cmd)
    return res, program, plan


def load_npz(path) -> dict:
    """Training data: x_train, y_train (and optionally x_test, y_test)."""
    from .datasets import read_npz
    p = Path(path)
    d = read_npz(p)
    for k in ("x_train", "y_train"):
        if k not in d:
            raise TinytrainError(f"data file {p} has no array {k!r} (it has {sorted(d)}); "
                                 "expected x_train, y_train and optionally x_test, y_test")
    if len(d["x_train"]) != len(d["y_train"]):
        raise TinytrainError(f"data file {p}: x_train has {len(d['x_train'])} samples but "
                             f"y_train has {len(d['y_train'])}")
    return d


def make_fixed_program(graph: Graph, cfg: TrainConfig, precision: str, calibration, quant=None,
                       scales=None):
    """Quantize (calibrating on `calibration`, samples shaped like the model input) and lower
    to a fixed-point program; returns (FixedProgram, MemoryPlan)."""
    from .passes.lower_fixed import lower_fixed
    from .passes.quantize import QuantConfig
    bits = {"int8": 8, "int16": 16}[precision]
    if quant is None:
        quant = QuantConfig(bits=bits)
    elif quant.bits != bits:
        quant = replace(quant, bits=bits)
    if calibration is None and not scales:
        raise ConfigError(f"{precision} export needs calibration samples to choose the "
                          "activation scales: pass --calibration data.npz (its x_train is used)")
    fp = lower_fixed(graph, cfg, quant, calibration, scales)
    return fp, plan_arena(fp, fp.train_steps)


def export_fixed(model, out_dir, cfg: TrainConfig, *, precision: str, algo=None, command=None,
                 calibration=None, quant=None, force: bool = False):
    from .codegen.emit_fixed import emit_project_fixed
    if algo is not None and algo != cfg.algo:
        cfg = replace(cfg, algo=algo)
    scales = None
    if isinstance(model, Graph):
        graph = model
    else:
        graph, scales = load_model_with_scales(model)
    notes = []
    if scales and precision != "int8":
        scales = None       # int8 scales would put int16 values on the int8 grid: calibrate
    elif scales:
        # an already-quantized model: its scales replace calibration (which, if given, covers
        # only the tensors without one)
        from .frontend.onnx_quant import missing_scales
        missing = missing_scales(graph, scales)
        if missing and calibration is None:
            raise ConfigError("the quantized model has no scale for "
                              f"{', '.join(map(repr, missing))}: pass calibration samples "
                              "(--calibration) for those tensors")
        scales, notes = fit_imported_scales(graph, cfg, scales)
    fp, plan = make_fixed_program(graph, cfg, precision, calibration, quant, scales)
    if notes:
        fp.warnings = tuple(fp.warnings) + tuple(notes)
    cmd = command if command is not None else " ".join(shlex.quote(a) for a in sys.argv)
    h = model_hash(graph, cfg) ^ zlib.crc32(repr(fp.qcfg).encode())
    res = emit_project_fixed(fp, plan, out_dir, model_hash=h, command=cmd, force=force)
    return res, fp, plan


def export_fp16(model, out_dir, cfg: TrainConfig, *, algo=None, command=None,
                force: bool = False):
    """FP16 export (passes/lower_fp16.py): cfg may be an Fp16Config (loss_scale,
    master_weights, fp16_state). Returns (EmitResult, Fp16Program, MemoryPlan)."""
    from .codegen.emit_fp16 import emit_project_fp16
    from .passes.lower_fp16 import lower_fp16
    if algo is not None and algo != cfg.algo:
        cfg = replace(cfg, algo=algo)
    if cfg.zo_sam_rho:
        raise ConfigError("the zo sharpness-aware point (--sam-rho) is not available in "
                          "fp16; export fp32 or drop --sam-rho")
    graph = load_model(model) if not isinstance(model, Graph) else model
    lowered = lower_fp16(build_training_program(graph, replace(cfg, fuse_update=False)), cfg)
    cmd = command if command is not None else " ".join(shlex.quote(a) for a in sys.argv)
    h = zlib.crc32(b"fp16", model_hash(graph, cfg))   # an fp32 checkpoint is refused
    res = emit_project_fp16(lowered, out_dir, model_hash=h, command=cmd, force=force)
    return res, lowered, lowered.plan
