"""first_divergence (bisection over cut graphs), its Bisection record, PeakRSS, and the ORT session / variant
helpers of compare/layerwise.py (issue 23 part 1, target `bisect` of tools/mutate.py).

Every graph is a small real ONNX graph built with onnx.helper and run on ONNX Runtime CPU. The planted
chain is ``x -> Mul(c0) m0 -> Tanh t0 -> Mul(c1) m1 -> Tanh t1 -> ... -> Tanh y``: its candidate tensors in
topological order are ``m0, t0, m1, t1, ..., y`` (2n of them), and a variant whose constant ``c_k`` is
changed diverges from ``m_k`` on (Tanh of a changed value stays changed: the error does not heal). The
expected probe order is derived by hand from the documented search (last candidate first, then the range
[lo, hi] is halved at ``(lo + hi) // 2``); expected metrics are computed with numpy from the same float32
arrays.
"""
from __future__ import annotations

import dataclasses
import json
import math
import mmap
import re
import threading
import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from workbench.backends.onnxruntime import OnnxRuntimeBackend
from workbench.compare.layerwise import Bisection, PeakRSS, first_divergence
from workbench.errors import DataError, UnsupportedError, UsageError

from conftest import DrawnBars

C = 0.9       # every constant of the reference chain
PLANT = 1.4   # the planted constant of a variant


def _const(name, v, dtype=np.float32):
    return helper.make_node("Constant", [], [name], name=f"k_{name}",
                            value=numpy_helper.from_array(np.asarray(v, dtype), name))


def _runtime_swap(src, dst, tag):
    """Nodes turning ``src`` (N, 3, 4) into ``dst`` of run-time shape (N, 4, 3) (shape inference cannot tell:
    the target shape comes from Shape/Slice/Concat), and back into ``u<tag>`` (N, 3, 4)."""
    return [helper.make_node("Shape", [src], [f"shp{tag}"], name=f"shape{tag}"),
            _const(f"i0{tag}", [0], np.int64), _const(f"i1{tag}", [1], np.int64),
            _const(f"i2{tag}", [2], np.int64), _const(f"i3{tag}", [3], np.int64),
            helper.make_node("Slice", [f"shp{tag}", f"i0{tag}", f"i1{tag}"], [f"d0{tag}"], name=f"s0{tag}"),
            helper.make_node("Slice", [f"shp{tag}", f"i2{tag}", f"i3{tag}"], [f"d2{tag}"], name=f"s2{tag}"),
            helper.make_node("Slice", [f"shp{tag}", f"i1{tag}", f"i2{tag}"], [f"d1{tag}"], name=f"s1{tag}"),
            helper.make_node("Concat", [f"d0{tag}", f"d2{tag}", f"d1{tag}"], [f"ts{tag}"], name=f"cat{tag}", axis=0),
            helper.make_node("Reshape", [src, f"ts{tag}"], [dst], name=f"swap{tag}"),
            helper.make_node("Reshape", [dst, f"shp{tag}"], [f"u{tag}"], name=f"back{tag}")]


def chain(n=4, plant=None, swap=None, name=None, value=PLANT):
    """The planted chain of ``n`` Mul+Tanh pairs. ``plant``: index k whose constant becomes ``value``.
    ``swap``: tensor name(s) (``m<k>`` or ``t<k>``/``y``) that hold a transposed layout at run time only."""
    swaps = {swap} if isinstance(swap, str) or swap is None else set(swap)
    nodes, prev = [], "x"
    for k in range(n):
        nodes.append(_const(f"c{k}", value if k == plant else C))
        outs = {"m": f"m{k}", "t": "y" if k == n - 1 else f"t{k}"}
        for kind, op, ins in (("m", "Mul", lambda p: [p, f"c{k}"]), ("t", "Tanh", lambda p: [p])):
            out = outs[kind]
            if out in swaps:
                nodes.append(helper.make_node(op, ins(prev), [f"p{k}{kind}"], name=f"{op.lower()}{k}"))
                nodes += _runtime_swap(f"p{k}{kind}", out, f"{k}{kind}")
                prev = out if out == "y" else f"u{k}{kind}"
                if out == "y":
                    nodes.pop()  # the graph output itself keeps the transposed layout
            else:
                nodes.append(helper.make_node(op, ins(prev), [out], name=f"{op.lower()}{k}"))
                prev = out
    out_shape = ["N", "d1", "d2"] if "y" in swaps else ["N", 3, 4]
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(m)
    return wb.Model(m, name=name or ("chain" if plant is None and swap is None else f"chain-p{plant}-s{len(swaps)}"))


def cands(n):
    return [t for k in range(n) for t in (f"m{k}", "y" if k == n - 1 else f"t{k}")]


def _x(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 3, 4)).astype(np.float32)


def _np_chain(x, consts):
    """Every tensor of the chain computed with numpy (float32, as ORT computes it)."""
    out, prev = {}, x
    for k, c in enumerate(consts):
        out[f"m{k}"] = prev * np.float32(c)
        prev = out["y" if k == len(consts) - 1 else f"t{k}"] = np.tanh(out[f"m{k}"])
    return out


# ------------------------------------------------------------------ the search: node found, probe order, count
@pytest.mark.parametrize("n, plant, order", [
    # 8 candidates m0 t0 m1 t1 m2 t2 m3 y, first divergent at position 2 * plant
    (4, 0, [7, 3, 1, 0]),   # 7 bad; [0,7] mid 3 bad; [0,3] mid 1 bad; [0,1] mid 0 bad -> lo = hi = 0
    (4, 1, [7, 3, 1, 2]),   # 7 bad; mid 3 bad; [0,3] mid 1 good -> lo 2; [2,3] mid 2 bad -> hi 2
    (4, 2, [7, 3, 5, 4]),   # 7 bad; mid 3 good -> lo 4; [4,7] mid 5 bad; [4,5] mid 4 bad -> hi 4
    (4, 3, [7, 3, 5, 6]),   # 7 bad; mid 3 good; [4,7] mid 5 good -> lo 6; [6,7] mid 6 bad
    # 10 candidates: 9 bad; [0,9] mid 4 good -> lo 5; [5,9] mid 7 good -> lo 8; [8,9] mid 8 bad
    (5, 4, [9, 4, 7, 8]),
    # 10 candidates, plant 1 (position 2): 9 bad; mid 4 bad; [0,4] mid 2 bad; [0,2] mid 1 good -> lo 2 = hi
    (5, 1, [9, 4, 2, 1]),
])
def test_bisection_finds_the_planted_node_in_the_documented_probe_order(n, plant, order):
    ref, var = chain(n), chain(n, plant=plant)
    data = [{"x": _x(6, s)} for s in range(3)]  # 3 batches: metrics fold over all of them
    t0 = time.perf_counter()
    bis = first_divergence(ref, var, data=data, metric="max_abs", threshold=1e-4, progress=False)
    elapsed = time.perf_counter() - t0
    names = cands(n)
    d = 2 * plant
    assert (bis.first_divergent, bis.tensor, bis.variant_tensor) == (f"mul{plant}", f"m{plant}", f"m{plant}")
    assert [p["position"] for p in bis.probes] == order
    assert [p["tensor"] for p in bis.probes] == [names[i] for i in order]
    assert [p["variant_tensor"] for p in bis.probes] == [names[i] for i in order]
    assert [p["onnx_node"] for p in bis.probes] == [("mul" if i % 2 == 0 else "tanh") + str(i // 2) for i in order]
    assert [p["op_type"] for p in bis.probes] == ["Mul" if i % 2 == 0 else "Tanh" for i in order]
    assert [p["diverged"] for p in bis.probes] == [i >= d for i in order]
    assert bis.runs == len(order) <= math.ceil(math.log2(2 * n)) + 1
    assert bis.candidates == 2 * n and bis.samples == 18
    # the n Constant nodes (c0..c{n-1}) depend on no graph input: skipped, not candidates
    assert bis.counts == {"compared": len(order), "unmatched": 0, "skipped": n, "candidates": 2 * n}
    assert bis.unmatched == [] and (bis.metric, bis.threshold) == ("max_abs", 1e-4)
    assert bis.variant == f"{var.name}-custom" and bis.backend == bis.reference_backend == "onnxruntime"
    # metrics of each probe over all 18 samples, from numpy
    x = np.concatenate([b["x"] for b in data])
    r, v = _np_chain(x, [C] * n), _np_chain(x, [PLANT if k == plant else C for k in range(n)])
    for p in bis.probes:
        diff = np.abs(r[p["tensor"]].astype(np.float64) - v[p["tensor"]])
        assert p["max_abs"] == pytest.approx(diff.max(), rel=1e-5, abs=1e-6)
        assert p["mean_abs"] == pytest.approx(diff.mean(), rel=1e-5, abs=1e-6)
        assert p["nan_count"] == p["inf_count"] == 0 and "passed" not in p
        # each probe's wall time (two ORT sessions built and run: well over a millisecond), in ms resolution
        assert 0 < p["seconds"] <= bis.seconds and p["seconds"] == round(p["seconds"], 3)
    assert bis.row is bis.probes[order.index(d)] and bis.row["diverged"]
    assert sum(p["seconds"] for p in bis.probes) - 0.01 <= bis.seconds == round(bis.seconds, 3) <= elapsed + 1e-3
    assert bis.row["max_abs"] == pytest.approx(np.abs(r[f"m{plant}"].astype(np.float64) - v[f"m{plant}"]).max(),
                                               rel=1e-5)


def test_without_divergence_one_run_of_the_last_tensor_says_so():
    data = [{"x": _x(5)}]
    bis = first_divergence(chain(), chain(name="same"), data=data, metric="max_abs", threshold=1e-4, progress=False)
    assert bis.first_divergent is None and bis.tensor is None and bis.variant_tensor is None
    assert bis.runs == 1 and [p["tensor"] for p in bis.probes] == ["y"] and bis.row is None
    assert bis.probes[0]["max_abs"] == 0.0 and not bis.probes[0]["diverged"]
    assert bis.counts == {"compared": 1, "unmatched": 0, "skipped": 4, "candidates": 8}


def test_default_metric_is_cosine_at_0_999_and_snr_has_its_default():
    # a sign flip at mul2 (cosine -1 from m2 on, Tanh is odd) is what the cosine default sees ...
    x = _x(8)
    bis = first_divergence(chain(), chain(plant=2, value=-C), feeds={"x": x}, progress=False)
    assert (bis.metric, bis.threshold) == ("cosine", 0.999)
    assert bis.first_divergent == "mul2" and [p["position"] for p in bis.probes] == [7, 3, 5, 4]
    assert bis.row["cosine"] == pytest.approx(-1.0)
    # ... a pure scale (1.4 / 0.9 at m3) keeps cosine 1 there; the snr_db default (30 dB) flags it:
    # 20 log10(0.9 / 0.5) = 5.1 dB
    snr = first_divergence(chain(), chain(plant=3), feeds={"x": x}, metric="snr_db", progress=False)
    assert (snr.metric, snr.threshold, snr.first_divergent) == ("snr_db", 30.0, "mul3")
    assert snr.row["snr_db"] == pytest.approx(20 * math.log10(0.9 / 0.5), abs=1e-3)
    assert first_divergence(chain(), chain(plant=3), feeds={"x": x}, metric="snr_db", threshold=3.0,
                            progress=False).first_divergent is None  # 5.1 dB is above a 3 dB bar everywhere


# ------------------------------------------------------------------ shape mismatches found at run time
def test_a_mismatched_candidate_is_dropped_and_the_next_one_probed():
    # m2 holds (N, 4, 3) in the variant; plant 2: the first usable divergent tensor is t2.
    # 7 (y) bad; [0,7] mid 3 (t1) good -> lo 4; mid 5 (t2) bad -> hi t2; [4,5] mid 4 = m2: shape differs,
    # dropped; position 4 is now t2 itself (already known bad): the search ends at t2 with 3 runs.
    var = chain(plant=2, swap="m2")
    bis = first_divergence(chain(), var, feeds={"x": _x(5)}, metric="max_abs", threshold=1e-4, progress=False)
    assert (bis.first_divergent, bis.tensor) == ("tanh2", "t2")
    assert [(p["position"], p["tensor"]) for p in bis.probes] == [(7, "y"), (3, "t1"), (5, "t2")]
    assert bis.runs == 3 and bis.candidates == 7
    assert bis.unmatched == [{"onnx_node": "mul2", "op_type": "Mul", "tensor": "m2",
                              "reason": "shape (5, 3, 4) in the reference but (5, 4, 3) in the variant ('m2')"}]
    assert bis.counts == {"compared": 3, "unmatched": 1, "skipped": 4, "candidates": 7}


def test_a_mismatched_midpoint_moves_to_the_next_candidate():
    # t1 holds (N, 4, 3); plant 2 (position 4). 7 bad; mid 3 = t1 dropped -> position 3 is now m2: bad;
    # [0,3] mid 1 (t0) good -> lo 2; [2,3] mid 2 (m1) good -> lo 3 = hi: m2.
    bis = first_divergence(chain(), chain(plant=2, swap="t1"), feeds={"x": _x(4)}, metric="max_abs",
                           threshold=1e-4, progress=False)
    assert bis.first_divergent == "mul2"
    assert [(p["position"], p["tensor"]) for p in bis.probes] == [(7, "y"), (3, "m2"), (1, "t0"), (2, "m1")]
    assert [u["tensor"] for u in bis.unmatched] == ["t1"] and bis.candidates == 7


def test_a_mismatched_last_candidate_is_dropped_before_the_search():
    # the variant's graph output y is transposed: the search starts at m3 (position 6 of 7); plant 0:
    # 6 bad; [0,6] mid 3 bad; [0,3] mid 1 bad; [0,1] mid 0 bad
    bis = first_divergence(chain(), chain(plant=0, swap="y"), feeds={"x": _x(4)}, metric="max_abs",
                           threshold=1e-4, progress=False)
    assert [(p["position"], p["tensor"]) for p in bis.probes] == [(6, "m3"), (3, "t1"), (1, "t0"), (0, "m0")]
    assert bis.first_divergent == "mul0" and bis.candidates == 7
    assert bis.unmatched[0]["reason"] == "shape (4, 3, 4) in the reference but (4, 4, 3) in the variant ('y')"


def test_mismatched_candidates_up_to_the_known_divergent_one_do_not_end_the_search():
    # t1, m2, t2, m3 (positions 3-6) hold (N, 4, 3) in the variant; plant 0. 7 (y) bad; [0,7] mid 3: t1, m2,
    # t2, m3 are dropped one after the other and position 3 is now y itself (known bad). The divergence
    # lies in m0..t0 (positions 0-2 of m0 t0 m1 y), never probed yet: the search must go on in [0, 3]:
    # mid 1 (t0) bad; [0,1] mid 0 (m0) bad -> m0. (Fixed: the search used to stop here and report y.)
    bis = first_divergence(chain(), chain(plant=0, swap=("t1", "m2", "t2", "m3")), feeds={"x": _x(4)},
                           metric="max_abs", threshold=1e-4, progress=False)
    assert [u["tensor"] for u in bis.unmatched] == ["t1", "m2", "t2", "m3"]
    assert [(p["position"], p["tensor"]) for p in bis.probes] == [(7, "y"), (1, "t0"), (0, "m0")]
    assert (bis.first_divergent, bis.tensor, bis.candidates, bis.runs) == ("mul0", "m0", 4, 3)


def test_no_candidate_with_matching_shapes_is_refused():
    def tanh(swap):
        nodes = [helper.make_node("Tanh", ["x"], ["p" if swap else "y"], name="tanh")]
        if swap:  # y = the Tanh's output in the (N, 4, 3) layout: the only candidate differs in shape
            nodes += _runtime_swap("p", "y", "")[:-1]
        g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "a", "b"])])
        return wb.Model(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), name=f"t{swap}")

    with pytest.raises(DataError, match="no candidate tensor of the two graphs has matching shapes"):
        first_divergence(tanh(False), tanh(True), feeds={"x": _x(3)}, progress=False)


def test_no_matched_tensor_is_refused():
    def one(op, out):
        g = helper.make_graph([helper.make_node(op, ["x"], [out], name=op)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", 3])])
        return wb.Model(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), name=op)

    with pytest.raises(DataError, match="no intermediate tensor of Tanh could be matched in variant Sigmoid"):
        first_divergence(one("Tanh", "y"), one("Sigmoid", "z"), feeds={"x": np.ones((2, 3), np.float32)},
                         progress=False)


# ------------------------------------------------------------------ fp16 overflow (a planted inf)
def _overflow(cast):
    """x -> Mul(1e5) big -> [Cast fp16 -> Cast fp32] -> Mul(1e-5) small -> Add(1) y: in fp16, |big| > 65504
    is inf, so ``small`` holds infs where the reference holds |x| > 0.655."""
    nodes = [_const("k", 1e5), _const("s", 1e-5), _const("one", 1.0),
             helper.make_node("Mul", ["x", "k"], ["big"], name="scale_up")]
    src = "big"
    if cast:
        nodes += [helper.make_node("Cast", ["big"], ["h"], name="to16", to=TensorProto.FLOAT16),
                  helper.make_node("Cast", ["h"], ["hb"], name="to32", to=TensorProto.FLOAT)]
        src = "hb"
    nodes += [helper.make_node("Mul", [src, "s"], ["small"], name="scale_down"),
              helper.make_node("Add", ["small", "one"], ["y"], name="add")]
    g = helper.make_graph(nodes, "ovf", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])])
    return wb.Model(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]),
                    name="ovf16" if cast else "ovf")


def test_fp16_overflow_is_found_at_the_node_reading_the_inf_and_the_record_is_json():
    x = np.random.default_rng(3).standard_normal((16, 8)).astype(np.float32)
    bis = first_divergence(_overflow(False), _overflow(True), feeds={"x": x}, progress=False)
    # candidates big, small, y: 2 bad; [0,2] mid 1 (small) bad; [0,1] mid 0 (big, still fp32) good -> lo 1
    assert [p["tensor"] for p in bis.probes] == ["y", "small", "big"]
    assert bis.first_divergent == "scale_down" and bis.tensor == "small" and bis.runs == 3
    with np.errstate(over="ignore"):
        infs = int(np.isinf((x * np.float32(1e5)).astype(np.float16)).sum())
    assert infs > 0 and bis.row["inf_count"] == infs and bis.row["nan_count"] == 0
    big = bis.probes[2]
    assert big["max_abs"] == 0.0 and big["cosine"] == pytest.approx(1.0) and big["snr_db"] == math.inf
    # the record as JSON: strict JSON (no NaN/Infinity tokens), same values as the record
    j = bis.to_json()
    text = json.dumps(j, allow_nan=False)
    back = json.loads(text)
    assert back == j
    assert set(j) == {f.name for f in dataclasses.fields(Bisection)}
    for k in set(j) - {"probes"}:
        assert back[k] == getattr(bis, k), k
    assert back["probes"][2]["snr_db"] == "inf" and back["probes"][2]["err_p99"] is None  # no percentiles
    assert back["probes"][1]["inf_count"] == infs and back["probes"][0]["tensor"] == "y"
    assert [p["position"] for p in back["probes"]] == [2, 1, 0]
    df = bis.to_frame()
    assert list(df["tensor"]) == ["y", "small", "big"] and list(df.columns) == list(bis.probes[0])
    assert list(df["diverged"]) == [True, True, False]


# ------------------------------------------------------------------ refusals
@pytest.mark.parametrize("kwargs, err, match", [
    ({"metric": "max_abs"}, UsageError, "needs an explicit threshold"),
    ({"metric": "psnr"}, UsageError, "unknown layerwise metric"),
    ({"threshold": 1.5}, UsageError, "cosine threshold must lie in"),
    ({"backend": "no-such-backend"}, UsageError, "unknown backend"),
    ({"reference_backend": "no-such-backend"}, UsageError, "unknown backend"),
    ({"data": []}, DataError, "no data batches"),
])
def test_refusals(kwargs, err, match):
    kw = {"feeds": {"x": _x(2)}, **kwargs}
    if "data" in kw:
        del kw["feeds"]
    with pytest.raises(err, match=match):
        first_divergence(chain(), chain(plant=1), progress=False, **kw)


def test_a_variant_that_is_not_a_variant_is_refused():
    with pytest.raises(UsageError, match="variant must be a Variant, a Model or a precision name, not int"):
        first_divergence(chain(), 42, feeds={"x": _x(2)}, progress=False)


# ------------------------------------------------------------------ what is built, on which backend, with what
class _Spy(OnnxRuntimeBackend):
    """The real ONNX Runtime CPU backend, recording what it is asked to build and what each engine runs."""

    def __init__(self, name="onnxruntime"):
        super().__init__()
        self.name = name
        self.built, self.runs = [], []

    def build(self, variant, shapes=None, options=None):
        self.built.append((variant.model.name, variant.precision, dict(variant.recipe), dict(variant.backend_flags),
                           shapes, options.progress if options else None))
        eng = super().build(variant, shapes=shapes, options=options)
        run = eng.run

        def spy_run(feeds, output_names=None):
            self.runs.append({k: (v.shape, v.dtype) for k, v in feeds.items()})
            return run(feeds, output_names)

        eng.run = spy_run
        return eng


def test_reference_and_variant_cut_graphs_are_built_on_their_own_backends():
    ref_be, var_be = _Spy("ort-reference"), _Spy("ort-variant")
    ref, var = chain(name="R"), chain(plant=1, name="V")
    data = [{"x": _x(3, s).astype(np.float64)} for s in range(2)]  # float64 data: cast to the input type
    bis = first_divergence(ref, var, data=data, backend=var_be, reference_backend=ref_be, metric="max_abs",
                           threshold=1e-4, progress=False)
    assert (bis.backend, bis.reference_backend) == ("ort-variant", "ort-reference")
    assert bis.first_divergent == "mul1" and bis.runs == 4
    # one cut graph per probe on each side, named after its model; the user's Model variant builds as fp32
    assert ref_be.built == [("R-cut", "fp32", {"tool": "none"}, {"tf32": False}, {}, False)] * 4
    assert var_be.built == [("V-cut", "fp32", {"tool": "user"}, {}, {}, False)] * 4
    # every probe streams both batches through both engines, as float32
    assert ref_be.runs == var_be.runs == [{"x": ((3, 3, 4), np.float32)}] * 8
    assert bis.samples == 6


def test_a_precision_name_makes_the_variant_and_shapes_reach_the_build():
    ref_be, var_be = _Spy(), _Spy()
    shapes = {"x": (2, 3, 4)}
    bis = first_divergence(chain(name="R"), "fp16", shapes=shapes, backend=var_be, reference_backend=ref_be,
                           metric="max_abs", threshold=1.0, progress=False)
    # no data: one synthetic batch of the given shape; fp16 agrees with fp32 within 1.0 at the output
    assert bis.first_divergent is None and bis.samples == 2 and bis.variant == "R-fp16"
    (name, prec, recipe, flags, got_shapes, prog), = var_be.built
    assert (name, prec, prog) == ("R-cut", "fp16", False)
    assert {k: r.opt for k, r in got_shapes.items()} == shapes  # the fixed shape (2, 3, 4) as a range
    assert recipe.get("tool") and recipe != {"tool": "none"}
    assert ref_be.built[0][:2] == ("R-cut", "fp32") and {k: r.opt for k, r in ref_be.built[0][4].items()} == shapes
    assert var_be.runs == [{"x": ((2, 3, 4), np.float32)}]


def _matmul(name="M"):
    """x (N, 4) -> MatMul(W) m -> Tanh y: a node the int8 recipe quantizes (so it calibrates)."""
    w = np.random.default_rng(4).standard_normal((4, 4)).astype(np.float32)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"),
                           helper.make_node("Tanh", ["m"], ["y"], name="th")], "mm",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
                          [numpy_helper.from_array(w, "w")])
    return wb.Model(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), name=name)


@pytest.mark.filterwarnings("ignore:calibrating:UserWarning")
@pytest.mark.parametrize("progress", [True, False])
def test_int8_by_name_is_calibrated_on_the_given_calib_data(monkeypatch, progress):
    var_be = _Spy()
    calib = [{"x": np.random.default_rng(5).standard_normal((7, 4)).astype(np.float32)}]
    bar = _Bar(monkeypatch)
    bis = first_divergence(_matmul(), "int8", calib=calib, feeds={"x": calib[0]["x"][:3]}, backend=var_be,
                           metric="max_abs", threshold=1.0, progress=progress)
    assert bis.variant == "M-int8" and var_be.built[0][1] == "int8" and bis.first_divergent is None
    assert var_be.built[0][2]["calibration"]["num_samples"] == 7  # the 7 samples given, not synthetic data
    assert var_be.built[0][2]["calibration"]["synthetic"] is False
    # progress reaches the calibration too (its bar counts samples), and progress=False draws nothing at all
    text = bar.buf.getvalue()
    assert (("/7 [" in text and "bisect M-int8" in text) if progress else text == "")


def _two_inputs(half):
    """a = Tanh(x1); b = a * x2; y = Tanh(b). ``half``: x1 is declared float16 and cast to float inside (a
    variant whose input type differs); ``c`` scales x2 in the variant (planted at b)."""
    nodes = [helper.make_node("Tanh", ["x1f" if half else "x1"], ["a"], name="ta"),
             helper.make_node("Mul", ["a", "x2s" if half else "x2"], ["b"], name="mb"),
             helper.make_node("Tanh", ["b"], ["y"], name="tb")]
    if half:
        nodes[:0] = [helper.make_node("Cast", ["x1"], ["x1f"], name="up", to=TensorProto.FLOAT),
                     _const("c", 1.5), helper.make_node("Mul", ["x2", "c"], ["x2s"], name="scale")]
    t1 = TensorProto.FLOAT16 if half else TensorProto.FLOAT
    g = helper.make_graph(nodes, "two", [helper.make_tensor_value_info("x1", t1, ["N", 4]),
                                         helper.make_tensor_value_info("x2", TensorProto.FLOAT, ["N", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    return wb.Model(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), name=f"two{half}")


def test_each_cut_graph_gets_only_its_inputs_in_its_own_types():
    ref_be, var_be = _Spy(), _Spy()
    rng = np.random.default_rng(2)
    x1 = rng.standard_normal((5, 4)).astype(np.float16).astype(np.float64)  # exact in fp16
    feeds = {"x1": x1, "x2": rng.standard_normal((5, 4))}  # float64 data
    bis = first_divergence(_two_inputs(False), _two_inputs(True), feeds=feeds, backend=var_be,
                           reference_backend=ref_be, metric="max_abs", threshold=1e-4, progress=False)
    # candidates a, b, y: 2 bad; [0,2] mid 1 (b) bad; [0,1] mid 0 (a, exact: x1 is fp16-exact) good
    assert [p["tensor"] for p in bis.probes] == ["y", "b", "a"] and bis.first_divergent == "mb"
    assert bis.probes[2]["max_abs"] == 0.0
    a = np.tanh(x1.astype(np.float32))
    assert bis.row["max_abs"] == pytest.approx(np.abs(a * feeds["x2"].astype(np.float32) * 0.5).max(), rel=1e-5)
    f32, f16 = np.dtype(np.float32), np.dtype(np.float16)
    both_ref = {"x1": ((5, 4), f32), "x2": ((5, 4), f32)}
    assert ref_be.runs == [both_ref, both_ref, {"x1": ((5, 4), f32)}]  # the cut at a needs x1 only
    assert var_be.runs == [{"x1": ((5, 4), f16), "x2": ((5, 4), f32)}] * 2 + [{"x1": ((5, 4), f16)}]


def test_the_variant_s_backend_flags_reach_its_build():
    var_be = _Spy()
    v = wb.Variant(model=chain(plant=1, name="V"), precision="custom", recipe={"tool": "user"},
                   backend_flags={"tf32": True})
    bis = first_divergence(chain(), v, feeds={"x": _x(2)}, backend=var_be, metric="max_abs", threshold=1e-4,
                           progress=False)
    assert bis.first_divergent == "mul1" and bis.variant == "V-custom"
    assert {b[3]["tf32"] for b in var_be.built} == {True} and len(var_be.built) == bis.runs


@pytest.mark.parametrize("limit, batch_size, samples, runs", [
    (64, None, 64, [32, 32]),      # the defaults: batches of 32, limited to 64 samples
    (25, 10, 25, [10, 10, 5]),
    (None, 40, 100, [40, 40, 20]),
])
def test_npz_data_limit_and_batch_size(tmp_path, limit, batch_size, samples, runs):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.random.default_rng(1).standard_normal((100, 3, 4)).astype(np.float32))
    ref_be, var_be = _Spy(), _Spy()
    kw = {} if limit == 64 else {"limit": limit}
    bis = first_divergence(chain(), chain(plant=3), data=str(path), batch_size=batch_size, backend=var_be,
                           reference_backend=ref_be, metric="max_abs", threshold=1e-4, progress=False, **kw)
    assert bis.samples == samples
    per_probe = [r["x"][0][0] for r in var_be.runs[:len(var_be.runs) // bis.runs]]
    assert per_probe == runs and len(var_be.runs) == bis.runs * len(runs)


def test_synthetic_data_uses_the_default_batch_and_the_model_may_be_a_path(tmp_path):
    ref = chain(name="R")
    path = tmp_path / "r.onnx"
    onnx.save(ref.proto_with_data(), str(path))
    bis = first_divergence(str(path), chain(plant=0), metric="max_abs", threshold=1e-4, progress=False)
    assert bis.samples == 32 and bis.first_divergent == "mul0"


def test_tensor_map_from_the_caller_and_the_recipe():
    # the variant computes m1 as t0 / c1 in a node "other" writing "renamed": no name, node-output or
    # structural rule pairs m1 (op type differs), so without a map m1 is unmatched and the search finds t1
    proto = chain(plant=1, value=1 / PLANT).proto_with_data()
    for n in proto.graph.node:
        n.input[:] = ["renamed" if i == "m1" else i for i in n.input]
        n.output[:] = ["renamed" if o == "m1" else o for o in n.output]
        if n.name == "mul1":
            n.name, n.op_type = "other", "Div"
    var = wb.Model(proto, name="renamed")
    feeds = {"x": _x(4)}
    kw = {"feeds": feeds, "metric": "max_abs", "threshold": 1e-4, "progress": False}
    plain = first_divergence(chain(), var, **kw)
    assert (plain.candidates, plain.tensor, plain.first_divergent) == (7, "t1", "tanh1")
    mapped = first_divergence(chain(), var, tensor_map={"m1": "renamed"}, **kw)
    assert (mapped.candidates, mapped.tensor, mapped.variant_tensor) == (8, "m1", "renamed")
    v = wb.Variant(model=var, precision="custom", recipe={"tool": "test", "tensor_map": {"m1": "renamed"}})
    rec = first_divergence(chain(), v, **kw)
    assert (rec.tensor, rec.variant_tensor, rec.candidates, rec.variant) == ("m1", "renamed", 8, v.name)
    # the caller's map wins over the recipe's: m1 -> t0, a tensor already paired with t0, so m1 stays unmatched
    other = first_divergence(chain(), v, tensor_map={"m1": "t0"}, **kw)
    assert (other.candidates, other.first_divergent) == (7, "tanh1")
    assert [u["tensor"] for u in other.unmatched] == ["m1"]
    assert "renamed" not in {p["variant_tensor"] for p in other.probes}


# ------------------------------------------------------------------ the progress bar
_Bar = DrawnBars


def test_progress_bar_counts_runs_up_to_log2_plus_one(monkeypatch):
    bar = _Bar(monkeypatch)
    var = chain(plant=2, name="V")
    bis = first_divergence(chain(), var, feeds={"x": _x(3)}, metric="max_abs", threshold=1e-4)  # progress on
    text = bar.buf.getvalue()
    frames = [f for f in text.split("\r") if f.strip()]
    assert frames and all(f.startswith("bisect V-custom") for f in frames)
    total = math.ceil(math.log2(8)) + 1
    counts = [int(c) for c in re.findall(rf"(\d+)/{total} \[", text)]
    assert sorted(set(counts)) == list(range(bis.runs + 1)) == list(range(total + 1))
    assert "run/s" in text
    assert text.endswith("\r") and not text.split("\r")[-2].strip()  # leave=False: erased at the end


def test_no_progress_bar_when_asked(monkeypatch, capfd):
    bar = _Bar(monkeypatch)
    first_divergence(chain(), chain(plant=2), feeds={"x": _x(3)}, metric="max_abs", threshold=1e-4, progress=False)
    assert bar.buf.getvalue() == "" and capfd.readouterr().err == ""


def test_one_candidate_is_one_run_on_the_bar(monkeypatch):
    def one(k):
        g = helper.make_graph([_const("k", k), helper.make_node("Mul", ["x", "k"], ["y"], name="mul")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])])
        return wb.Model(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), name=f"one{k}")

    bar = _Bar(monkeypatch)
    bis = first_divergence(one(1.0), one(2.0), feeds={"x": np.ones((2, 3), np.float32)}, metric="max_abs",
                           threshold=1e-4)
    assert (bis.candidates, bis.runs, bis.first_divergent) == (1, 1, "mul")  # log2(1) + 1 = 1 run
    counts = re.findall(r"(\d+)/(\d+) \[", bar.buf.getvalue())
    assert counts and {t for _, t in counts} == {"1"} and {c for c, _ in counts} == {"0", "1"}


# ------------------------------------------------------------------ PeakRSS
def _vm_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_peak_rss_current_is_the_kernels_resident_size():
    cur, ref = PeakRSS.current(), _vm_rss()
    assert ref > 0 and abs(cur - ref) <= 4 * 1024 ** 2


def _resident(size):
    """``size`` bytes of fresh anonymous memory (mmap: never recycled from the heap, which may already be
    resident), every page touched; close it to give the pages back."""
    buf = mmap.mmap(-1, size)
    view = np.frombuffer(buf, dtype=np.uint8)
    view[::mmap.PAGESIZE] = 1
    del view
    return buf


def test_peak_rss_sees_memory_freed_before_the_block_ends():
    size = 96 * 1024 ** 2
    with PeakRSS() as rss:
        assert 0 < rss.start <= rss.peak
        sampler = [t for t in threading.enumerate() if t.name == "workbench-peak-rss"]
        assert len(sampler) == 1 and sampler[0].daemon  # never keeps the interpreter alive
        buf = _resident(size)
        deadline = time.monotonic() + 10  # the sampler (every 5 ms) sees it; a loaded machine may delay it
        while rss.peak < rss.start + size * 0.9 and time.monotonic() < deadline:
            time.sleep(0.01)
        buf.close()
        assert PeakRSS.current() < rss.start + size * 0.5  # given back before the block ends
    assert rss.peak >= rss.start + size * 0.9
    assert "workbench-peak-rss" not in {t.name for t in threading.enumerate()}  # stopped and joined


def test_peak_rss_takes_a_last_sample_on_exit():
    size = 96 * 1024 ** 2
    with PeakRSS(interval=60.0) as rss:  # the thread never samples in time
        buf = _resident(size)
    assert rss.peak >= rss.start + size * 0.9
    buf.close()


def test_peak_rss_before_use_and_without_proc(monkeypatch):
    r = PeakRSS()
    assert (r.peak, r.start, r.interval) == (0, 0, 0.005)
    import builtins

    real_open = builtins.open

    def no_proc(path, *a, **k):
        if str(path).startswith("/proc/"):
            raise FileNotFoundError(path)
        return real_open(path, *a, **k)

    monkeypatch.setattr(builtins, "open", no_proc)
    assert PeakRSS.current() == 0  # documented: 0 where /proc is not available


def test_peak_rss_waits_for_its_sampler_on_exit():
    class Slow(PeakRSS):  # a sample that takes 0.3 s: exit must wait for the sampling thread to end
        started = threading.Event()

        @staticmethod
        def current():
            if threading.current_thread().name == "workbench-peak-rss":
                Slow.started.set()
                time.sleep(0.3)
            return PeakRSS.current()

    with Slow(interval=0.001) as rss:
        assert Slow.started.wait(5)
    assert not rss._thread.is_alive()


def test_bisection_records_its_peak_rss():
    bis = first_divergence(chain(), chain(plant=1), feeds={"x": _x(2)}, metric="max_abs", threshold=1e-4,
                           progress=False)
    assert bis.peak_rss_bytes >= 10 * 1024 ** 2  # this Python with numpy, onnx and ORT loaded


# ------------------------------------------------------------------ _session (layerwise's ORT CPU sessions)
def test_session_options_and_cpu_provider(capfd):
    import warnings

    import onnxruntime as ort

    from workbench.compare.layerwise import _session

    proto = chain().proto_with_data()
    for level, want in (("disable", "ORT_DISABLE_ALL"), ("basic", "ORT_ENABLE_BASIC"),
                        ("extended", "ORT_ENABLE_EXTENDED"), ("all", "ORT_ENABLE_ALL")):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # e.g. ORT's "provider ... is not in available provider names"
            s = _session(proto, level)
        assert capfd.readouterr() == ("", "")  # no "EP Error ... falling back" printed either
        so = s.get_session_options()
        assert so.graph_optimization_level == getattr(ort.GraphOptimizationLevel, want)
        assert so.log_severity_level == 3 and s.get_providers() == ["CPUExecutionProvider"]
        y = s.run(["y"], {"x": _x(2)})[0]
        assert np.allclose(y, _np_chain(_x(2), [C] * 4)["y"], atol=1e-6)


def test_a_model_ort_cannot_load_is_unsupported_with_ort_s_last_line():
    import onnxruntime as ort

    from workbench.compare.layerwise import _session

    g = helper.make_graph([helper.make_node("NoSuchOp", ["x"], ["y"], name="n", domain="my.domain")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("my.domain", 1)])
    with pytest.raises(Exception) as direct:
        ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    last = str(direct.value).strip().splitlines()[-1]
    with pytest.raises(UnsupportedError) as e:
        _session(proto, "disable")
    assert str(e.value).startswith(f"layerwise comparison runs on ONNX Runtime CPU, which cannot load this model: {last}")
    assert e.value.hint == "layerwise works for variants ORT CPU runs (fp32, fp16, int8)"
    assert e.value.__cause__ is not None


def test_an_ort_error_without_a_message_is_named_by_its_type(monkeypatch):
    import onnxruntime as ort

    from workbench.compare.layerwise import _session

    class Quiet(Exception):
        pass

    def refuse(*a, **k):
        raise Quiet()

    monkeypatch.setattr(ort, "InferenceSession", refuse)  # stands in for ORT's loader only: its error text is empty
    with pytest.raises(UnsupportedError, match=r"cannot load this model: Quiet \("):
        _session(chain().proto_with_data(), "disable")


def test_candidates_are_planned_at_the_real_input_shapes():
    """The variant's tensor ``r`` is Concat(t, t) on axis 0: (2N, 3, 4) against the reference's (N, 3, 4).
    Symbolically both are (?, 3, 4); only at the batch's real shape (N = 3) does the plan see 3 vs 6, and
    then pairs ``r`` with the variant's Tanh output by structure instead (same op, same input). The variant's
    y is doubled, so the search probes r too."""
    def model(variant):
        nodes = [helper.make_node("Tanh", ["x"], ["tt" if variant else "r"], name="tanh"),
                 helper.make_node("Neg", ["tt" if variant else "r"], ["ny" if variant else "y"], name="neg")]
        if variant:
            nodes += [helper.make_node("Concat", ["tt", "tt"], ["r"], name="twice", axis=0), _const("two", 2.0),
                      helper.make_node("Mul", ["ny", "two"], ["y"], name="double")]
        g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 4])])
        return wb.Model(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), name=f"g{variant}")

    bis = first_divergence(model(False), model(True), feeds={"x": _x(3)}, metric="max_abs", threshold=1e-4,
                           progress=False)
    assert bis.unmatched == [] and bis.candidates == 2 and bis.first_divergent == "neg"
    assert [(p["tensor"], p["variant_tensor"], p["diverged"]) for p in bis.probes] == [("y", "y", True),
                                                                                      ("r", "tt", False)]
    from workbench.compare.layerwise import match_tensors

    plan = match_tensors(model(False).proto, model(True).proto, input_shapes={"x": (3, 3, 4)})
    assert {p.tensor: p.variant_tensor for p in plan.pairs} == {"r": "tt", "y": "y"}
