"""The large-graph paths stay linear: counted function calls, not timings (issue #17: benchmarks unchanged
or better; bench/bench_recipes.py measures the seconds).

For the edit path (fold_constants + cleanup, sorted on import and export), the fp16 recipe (conversion,
type repair, validity checks, strict checker/shape inference) and the plain edits, the number of Python
and C function calls on a reversed chain (every sort does real work) must grow like the node count:
4x the nodes → at most ~4.4x the calls. A pass re-run per node, a per-node re-sort or re-validation, or a
per-node rebuild of a name index shows up here as 8-16x.

What this cannot see: quadratic work inside one call (``x in some_list`` in a loop, a native library's
own algorithm: ``edit.validate`` is 39 calls at any size, all checker/shape inference/ORT). The
benchmark's CPU-time growth rows cover those.
"""
from __future__ import annotations

import cProfile
import io
import pstats

import onnx
import pytest

import workbench as wb
import workbench.edit as E
from workbench.synthetic import chain_model

SMALL, LARGE = 500, 2000
LIMIT = (LARGE / SMALL) * 1.1  # linear, with 10 % for fixed per-call costs growing with log n


def _reversed_chain(n: int) -> onnx.ModelProto:
    p = chain_model(n)
    nodes = list(p.graph.node)[::-1]
    del p.graph.node[:]
    p.graph.node.extend(nodes)
    return p


def _calls(fn) -> int:
    pr = cProfile.Profile()
    pr.enable()
    fn()
    pr.disable()
    return pstats.Stats(pr, stream=io.StringIO()).total_calls


def _growth(make) -> tuple[float, int, int]:
    small, large = make(_reversed_chain(SMALL)), make(_reversed_chain(LARGE))
    small(), large()  # first-call costs (imports, caches) out of the count
    a, b = _calls(small), _calls(large)
    return b / a, a, b


def _fold(proto):
    m = wb.load(proto)
    return lambda: E.cleanup(E.fold_constants(m))


def _fp16(proto):
    from workbench.precision import make_variant

    m = wb.load(proto)
    return lambda: make_variant(m, "fp16", ort_check=False, progress=False)


def _toposort(proto):
    m = wb.load(proto)
    return lambda: E.toposort(m)


@pytest.mark.parametrize("name,make", [("fold_constants+cleanup", _fold), ("fp16 recipe", _fp16),
                                       ("toposort", _toposort)])
def test_calls_grow_linearly_with_the_graph(name, make):
    g, a, b = _growth(make)
    assert g <= LIMIT, f"{name}: {a} calls at {SMALL} nodes, {b} at {LARGE} ({g:.2f}x for 4x the nodes)"
    assert b > a  # the count sees the work at all


def test_the_count_catches_a_quadratic_pass(monkeypatch):
    """The guard fails when a pass runs once per node (here: cleanup re-sorting the graph per node)."""
    import workbench.edit.ops as ops

    real = ops.cleanup

    def per_node_cleanup(model, *a, **k):
        out = real(model, *a, **k)
        for _ in range(len(out.graph.node) // 50):
            E.toposort(out)
        return out

    monkeypatch.setattr(E, "cleanup", per_node_cleanup)
    g, a, b = _growth(_fold)
    assert g > LIMIT, (a, b)


def test_structure_check_runs_once_per_model(monkeypatch):
    """Every recipe calls Model.check_structure (shape inference + a cycle search over the whole graph):
    a model that passed is not checked again (build_variants runs several recipes on one model), one
    that failed fails every time, and a derived model is checked afresh."""
    import workbench.model as M
    from workbench.errors import ModelLoadError
    from workbench.precision import make_variant

    seen = []
    real = M.graph_cycle
    monkeypatch.setattr(M, "graph_cycle", lambda g, *a: seen.append(g) or real(g, *a))
    m = wb.load(_reversed_chain(200))
    for p in ("fp16", "bf16"):
        make_variant(m, p, ort_check=False, progress=False)
    m.check_structure()
    assert len(seen) == 1
    E.toposort(m).check_structure()  # a new Model: checked
    assert len(seen) == 2

    bad = _reversed_chain(200)
    bad.graph.node[0].input.append(bad.graph.node[0].output[0])  # the node reads its own output: a cycle
    b = wb.load(bad)
    for _ in range(2):
        with pytest.raises(ModelLoadError, match="dependency cycle"):
            b.check_structure()
