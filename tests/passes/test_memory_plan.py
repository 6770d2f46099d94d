"""The planner is checked by an independent byte-ownership simulation, not by re-planning."""
import numpy as np
import pytest

from tinytrain.frontend.builder import GraphBuilder
from tinytrain.passes import TrainConfig, build_training_program
from tinytrain.passes.memory_plan import ALIGN, plan_arena


def residual_net():
    b = GraphBuilder(seed=1)
    x = b.input("x", (1, 8))
    h = b.op("Relu", [b.gemm(x, 16, "fc1")], name="a1")
    r = b.op("Relu", [b.gemm(h, 16, "fc2")], name="a2")
    s = b.op("Add", [h, r], name="join")
    f = b.op("Reshape", [s], {"shape": (4, 4)}, name="view")
    f = b.op("Reshape", [f], {"shape": (16,)}, name="flat")
    return b.build(b.gemm(f, 5, "fc3"))


def mlp():
    b = GraphBuilder()
    x = b.input("x", (1, 64))
    h = b.op("Relu", [b.gemm(x, 32, "fc1")], name="a1")
    return b.build(b.gemm(h, 10, "fc2"))


VIEW_OPS = {"Reshape"}


def check_plan(program, plan):
    """Replay the steps over a shadow of the arena: every byte remembers which tensors it
    currently holds. A read must find its tensor in every byte it covers."""
    arena = plan.section_bytes["arena"]
    owners = [set() for _ in range(arena)]

    def rng(t):
        pl = plan.placements[t]
        assert pl.offset % ALIGN == 0 or pl.section != "arena"
        return range(pl.offset, pl.offset + pl.nbytes)

    for i, s in enumerate(program.train_steps):
        for t in s.inputs:
            pl = plan.placements.get(t)
            if pl is None or pl.section != "arena":
                continue
            bad = [b for b in rng(t) if t not in owners[b]]
            assert not bad, f"step {i} ({s.node}) reads {t} but its bytes were overwritten"
        for t in s.outputs:
            pl = plan.placements.get(t)
            if pl is None or pl.section != "arena":
                continue
            assert pl.offset + pl.nbytes <= arena
            is_view = s.op in VIEW_OPS and not s.accumulate and \
                plan.placements.get(s.inputs[0]) is not None and \
                plan.placements[s.inputs[0]].offset == pl.offset
            for b in rng(t):
                if is_view or (s.accumulate and t in owners[b]):
                    owners[b].add(t)
                else:
                    owners[b] = {t}


@pytest.mark.parametrize("make", [mlp, residual_net])
@pytest.mark.parametrize("trainable", ["all", "last:1", "bias"])
@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_plan_is_valid_and_never_larger_than_naive(make, trainable, opt):
    p = build_training_program(make(), TrainConfig(trainable=trainable, optimizer=opt))
    plan = plan_arena(p)
    check_plan(p, plan)
    assert plan.ram_bytes + plan.section_bytes["params_ro"] <= plan.naive_bytes


def test_reuse_happens():
    p = build_training_program(mlp(), TrainConfig())
    plan = plan_arena(p)
    acts = sum(p.tensors[t].nbytes for t, pl in plan.placements.items() if pl.section == "arena")
    assert plan.arena_bytes < acts


def test_smaller_trainable_set_needs_less_memory():
    g = mlp()
    full = plan_arena(build_training_program(g, TrainConfig(trainable="all")))
    last = plan_arena(build_training_program(g, TrainConfig(trainable="last:1")))
    assert last.ram_bytes < full.ram_bytes


def test_sections_report():
    p = build_training_program(mlp(), TrainConfig(optimizer="adam", trainable="last:1"))
    rep = plan_arena(p).report()
    assert rep["params_rw"] == 4 * (32 * 10) + 4 * 10  # each tensor 8-aligned
    assert rep["grads"] == rep["params_rw"] and rep["opt_state"] == 2 * rep["params_rw"]
    assert rep["params_ro"] == 4 * (64 * 32 + 32)
