"""plan_arena: liveness over the training step list, then offsets in one static arena.

Sections (each a separate static array in the generated C, so a board can place them):
  params_rw   trainable parameters (RAM)
  params_ro   frozen parameters and constants (``const``: flash)
  grads       parameter gradients (RAM; they accumulate over the samples of a batch)
  opt_state   optimizer state (RAM)
  arena       activations and activation gradients, reused over the step by liveness
The graph input and the label are the caller's buffers and take no arena space.

Buffers: tensors that may share bytes are grouped into one buffer:
  - Reshape output and its gradient are views (same bytes, no copy);
  - an in-place op (elementwise activations, Add, Mul, and their VJPs) writes its output over
    input 0 when no later step reads any tensor of that input's buffer.
Buffers are then placed largest-first at the lowest 8-byte-aligned offset that does not overlap
a buffer whose live range intersects (TFLM-style greedy).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError
from ..ir import TensorRole, get_op
from .training import GRAD, TrainingProgram

ALIGN = 8


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclass(frozen=True)
class Placement:
    section: str
    offset: int      # bytes from the start of the section
    nbytes: int
    first: int = -1  # live range in steps (arena only), inclusive
    last: int = -1


@dataclass(frozen=True)
class MemoryPlan:
    placements: dict            # tensor name -> Placement
    section_bytes: dict         # section -> bytes
    naive_bytes: int            # every tensor its own buffer
    n_steps: int
    buffers: tuple = field(default=())   # (offset, nbytes, first, last, tensor names)

    @property
    def arena_bytes(self) -> int:
        return self.section_bytes["arena"]

    @property
    def ram_bytes(self) -> int:
        return sum(self.section_bytes[s] for s in ("params_rw", "grads", "opt_state", "arena"))

    def report(self) -> dict:
        d = dict(self.section_bytes)
        d["ram_total"] = self.ram_bytes
        d["naive_total"] = self.naive_bytes
        return d

    def ascii_map(self, width: int = 64) -> str:
        """One row per arena buffer: its bytes along the arena (#) over time (steps)."""
        total = max(self.arena_bytes, 1)
        rows = []
        for off, nb, first, last, names in sorted(self.buffers):
            a = off * width // total
            b = max(a + 1, (off + nb) * width // total)
            rows.append(f"{'.' * a}{'#' * (b - a)}{'.' * (width - b)} "
                        f"[{off:>6}, {off + nb:>6}) steps {first:>3}..{last:<3} {names[0]}"
                        + (f" (+{len(names) - 1} views)" if len(names) > 1 else ""))
        return "\n".join(rows)


# Kernels whose output may overwrite input 0 element by element (same shape, same index).
def _may_overwrite_input0(step, tensors) -> bool:
    if step.kind == "scale":
        return True
    if step.kind == "fwd":
        return get_op(step.op).inplace and tensors[step.inputs[0]].shape == tensors[step.outputs[0]].shape
    if step.kind in ("vjp", "jvp") and not step.accumulate:
        op = get_op(step.op)
        # Elementwise VJPs read gy[i] (and saved y[i]/x[i]) and write gx[i]: safe over gy.
        # Their JVPs (the same kernels, tangent for cotangent) likewise over the tangent t_x.
        return op.inplace and tensors[step.inputs[0]].shape == tensors[step.outputs[0]].shape
    return False


def plan_arena(program: TrainingProgram, steps=None) -> MemoryPlan:
    steps = list(program.train_steps if steps is None else steps)
    tensors = program.tensors
    trainable = set(program.trainable)
    placements: dict[str, Placement] = {}
    sections = {"params_rw": 0, "params_ro": 0, "grads": 0, "opt_state": 0, "arena": 0}

    def put(section, name):
        nb = tensors[name].nbytes
        placements[name] = Placement(section, sections[section], nb)
        sections[section] += _align(nb)

    for name, t in tensors.items():
        if t.role in (TensorRole.PARAM, TensorRole.CONST):
            put("params_rw" if name in trainable else "params_ro", name)
    for p in program.trainable:
        if p + GRAD in tensors:
            put("grads", p + GRAD)
    for name, t in tensors.items():
        if t.role is TensorRole.OPT_STATE:
            put("opt_state", name)

    external = {program.input, program.label, program.loss}
    in_arena = lambda n: n in tensors and n not in placements and n not in external  # noqa: E731

    # Liveness of every arena tensor: first write .. last read.
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for i, s in enumerate(steps):
        for n in s.outputs:
            if in_arena(n):
                first.setdefault(n, i)
                last[n] = max(last.get(n, i), i)
        for n in s.inputs:
            if in_arena(n):
                if n not in first:
                    raise ConfigError(f"internal: step {i} ({s.op}) reads {n!r} before it is written")
                last[n] = max(last[n], i)
    # The logits are the inference result: keep them to the end of the forward pass at least.

    # Group into buffers (union-find keyed by tensor name).
    parent: dict[str, str] = {n: n for n in first}

    def find(n):
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    def members(root):
        return [n for n in parent if find(n) == root]

    def buffer_last(root):
        return max(last[n] for n in members(root))

    external_views: dict[str, str] = {}  # tensor -> external buffer it is a view of
    for i, s in enumerate(steps):
        if not s.outputs or not s.inputs or not in_arena(s.outputs[0]):
            continue              # (a step that reads nothing cannot alias an input)
        out = s.outputs[0]
        src = s.inputs[0]
        view = (s.op == "Reshape" and (s.kind in ("fwd", "jvp")
                                       or (s.kind == "vjp" and not s.accumulate)))
        if view:
            if in_arena(src):
                parent[find(out)] = find(src)
            else:                      # a view of the caller's input: no bytes at all
                external_views[out] = external_views.get(src, src)
            continue
        if in_arena(src) and src in external_views:
            continue
        if (_may_overwrite_input0(s, tensors) and in_arena(src)
                and buffer_last(find(src)) == i and find(out) != find(src)
                and tensors[src].nbytes == tensors[out].nbytes):
            parent[find(out)] = find(src)

    # A view of the external input must never be written in place (the input is const).
    roots: dict[str, list[str]] = {}
    for n in parent:
        if n in external_views:
            continue
        roots.setdefault(find(n), []).append(n)

    bufs = []
    for root, names in roots.items():
        names.sort(key=lambda n: first[n])
        nb = max(tensors[n].nbytes for n in names)
        bufs.append([_align(nb), min(first[n] for n in names), max(last[n] for n in names), names])
    bufs.sort(key=lambda b: (-b[0], b[1]))
    placed = []
    for nb, f, l, names in bufs:
        busy = sorted((o, o + pb) for o, pb, pf, pl, _ in placed if not (pl < f or l < pf))
        off = 0
        for a, b in busy:
            if off + nb <= a:
                break
            off = max(off, b)
        placed.append((off, nb, f, l, tuple(names)))
        for n in names:
            placements[n] = Placement("arena", off, tensors[n].nbytes, first[n], last[n])
    sections["arena"] = max((o + nb for o, nb, *_ in placed), default=0)
    for n, src in external_views.items():
        placements[n] = Placement("external:" + src, 0, tensors[n].nbytes, first[n], last[n])

    naive = sum(_align(tensors[n].nbytes) for n in first) + sum(
        sections[s] for s in ("params_rw", "params_ro", "grads", "opt_state"))
    return MemoryPlan(placements=placements, section_bytes=sections, naive_bytes=naive,
                      n_steps=len(steps), buffers=tuple(sorted(placed)))
