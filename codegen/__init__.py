"""C code generation: a TrainingProgram + MemoryPlan become a self-contained C99 folder.

Templates read only the plan context built here (``emit_context``); per-op C calls come from the
kernel table in ``codegen.kernels``.
"""
from .emit import emit_project, EmitResult

__all__ = ["emit_project", "EmitResult"]
