"""Tests written against mutants of workbench/compare/sensitivity.py that survived `make mutate` (issue 23).

The search itself (greedy re-ranking, bisection, ranking order, attribution) is checked on planted cases where
the responsible nodes are known: ``build`` and ``evaluate`` are replaced by functions of the keep list whose
answer the test chooses, and the layerwise frame behind the ranking is written by hand. The end-to-end
search on real models stays in tests/test_sensitivity.py.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from onnx import TensorProto, helper

import workbench as wb
from workbench.compare import sensitivity as S
from workbench.compare.sensitivity import MixedPrecisionResult, Target, attribute_noise
from workbench.errors import UsageError

from conftest import DrawnBars


class _Bar:
    def __init__(self):
        self.n = 0

    def update(self, k):
        self.n += k


# ------------------------------------------------------------------------------------------ Target
@pytest.mark.parametrize("spec,want", [
    ("cosine>=0.999", ("cosine", ">=", 0.999)), (" snr_db > 30 ", ("snr_db", ">", 30.0)),
    ("top1_drop<=0.5", ("top1_drop", "<=", 0.5)), ("max_abs<1e-3", ("max_abs", "<", 1e-3)),
    ("rmse<=inf", ("rmse", "<=", math.inf)), ("max_abs<1E-3", ("max_abs", "<", 1e-3)), ("snr_db>=-5", ("snr_db", ">=", -5.0)),
    (("top1", ">=", "0.9"), ("top1", ">=", 0.9)), ({"metric": "cosine", "value": 0.5}, ("cosine", ">=", 0.5)),
    ({"metric": "snr_db", "op": "<", "value": 9}, ("snr_db", "<", 9.0)),
])
def test_target_parse_forms(spec, want):
    t = Target.parse(spec)
    assert (t.metric, t.op, t.value) == want and Target.parse(t) is t


@pytest.mark.parametrize("spec,msg", [
    ("cosine=0.9", "bad target"), ("Cosine>=0.9", "bad target"), ("psnr>=3", "unknown target metric 'psnr'"),
    (("cosine", "==", 1.0), "unknown target operator '=='"), ("cosine>=1.5", r"cannot be met: cosine lies in \[-1, 1\]"),
    ("top1>=98", r"top1 lies in \[0, 1\]"), ("top1_agreement>=-0.1", r"lies in \[0, 1\]"),
    ("cosine>=-1.01", "cannot be met"), (3.0, "target must be a string like 'cosine>=0.999', not float"),
    (("cosine", ">="), "not tuple"),
])
def test_target_parse_refusals(spec, msg):
    with pytest.raises(UsageError, match=msg):
        Target.parse(spec)


def test_target_bounds_are_inclusive_and_hint_given():
    assert Target.parse("cosine>=1").value == 1.0 and Target.parse("cosine>=-1").value == -1.0
    assert Target.parse("top1>=0").value == 0.0 and Target.parse("top1_agreement<=1").value == 1.0
    with pytest.raises(UsageError) as e:
        Target.parse("top1>=2")
    assert "fractions, e.g. top1>=0.98" in str(e.value)


def test_target_met_and_labels():
    assert Target("snr_db", ">", 30.0).met(30.5) and not Target("snr_db", ">", 30.0).met(30.0)
    assert Target("snr_db", ">=", 30.0).met(30.0) and not Target("snr_db", ">=", 30.0).met(29.9)
    assert Target("max_abs", "<", 1.0).met(0.5) and not Target("max_abs", "<", 1.0).met(1.0)
    assert Target("max_abs", "<=", 1.0).met(1.0) and not Target("max_abs", "<=", 1.0).met(1.1)
    assert not Target("max_abs", "<=", 1.0).met(math.nan) and not Target("cosine", ">=", 0.0).met(math.nan)
    assert Target("max_abs", "<=", 1.0).met(1) is True  # an int value is compared, not mistaken for NaN
    assert Target("top1_drop", "<=", 1.0).needs_labels and Target("top1", ">=", 0.5).needs_labels
    assert not Target("top1_agreement", ">=", 0.5).needs_labels and not Target("cosine", ">=", 0.5).needs_labels
    assert str(Target("cosine", ">=", 0.9990)) == "cosine>=0.999" and str(Target("rmse", "<", 2.0)) == "rmse<2"


class _Cmp:
    """The two things Target.value_of reads from a Comparison: the metrics frame and the reference's value."""

    def __init__(self, rows, ref_top1=None):
        self.metrics = pd.DataFrame(rows, columns=["variant", "output", "metric", "value"])
        self.reference = "ref"
        self._ref_top1 = ref_top1

    def value(self, variant, metric):
        assert variant == "ref" and metric == "top1"
        return self._ref_top1


def test_target_value_of_reads_the_right_aggregate():
    rows = [("v", "a", "cosine", 0.99), ("v", "b", "cosine", 0.95), ("w", "a", "cosine", 0.5),
            ("v", "a", "snr_db", 30.0), ("v", "b", "snr_db", 20.0),
            ("v", "a", "max_abs", 0.1), ("v", "b", "max_abs", 0.3), ("v", "a", "rmse", 0.2), ("v", "b", "rmse", 0.05),
            ("v", "a", "top1", 0.9), ("v", "a", "top1_agreement", 0.8)]
    cmp = _Cmp(rows, ref_top1=0.925)
    assert Target("cosine", ">=", 0).value_of(cmp, "v") == 0.95      # worst output = min
    assert Target("snr_db", ">=", 0).value_of(cmp, "v") == 20.0
    assert Target("max_abs", "<=", 1).value_of(cmp, "v") == 0.3     # worst output = max
    assert Target("rmse", "<=", 1).value_of(cmp, "v") == 0.2
    assert Target("top1", ">=", 0).value_of(cmp, "v") == 0.9
    assert Target("top1_agreement", ">=", 0).value_of(cmp, "v") == 0.8
    assert Target("top1_drop", "<=", 1).value_of(cmp, "v") == pytest.approx(100 * (0.925 - 0.9))  # points
    assert Target("cosine", ">=", 0).value_of(cmp, "w") == 0.5


# ------------------------------------------------------------------------------------------ search on a planted case
def _planted(values_by_keep):
    """build/evaluate whose metric depends only on the keep list (a frozenset lookup, default 0)."""
    built = []

    def build(keep):
        built.append(list(keep))
        return f"var{len(built)}", frozenset(keep)

    def evaluate(engine):
        return values_by_keep.get(engine, 0.0)

    return build, evaluate, built


def test_greedy_reranks_on_each_new_variant_and_stops_when_met(monkeypatch):
    """The ranking on the low variant says A first; once A is kept, the re-ranking on the new variant says C
    (not B, the second of the first ranking): a greedy search that never re-ranks would keep B."""
    rankings = {"low": [("A", 9.0), ("B", 5.0), ("C", 1.0)], "var1": [("C", 7.0), ("B", 2.0)]}
    seen = []

    def fake_rank(model, var, batches, candidates, exclude, progress):
        seen.append((var, set(exclude)))
        return [(n, s) for n, s in rankings[var] if n not in exclude]

    monkeypatch.setattr(S, "_rank", fake_rank)
    build, evaluate, built = _planted({frozenset("A"): 0.5, frozenset("AC"): 0.99, frozenset("AB"): 0.7})
    t = Target("cosine", ">=", 0.98)
    steps, bar = [], _Bar()
    res = S._greedy("model", t, "low", ["A", "B", "C"], [], build, evaluate, steps, 5, 1, bar, False)
    assert built == [["A"], ["A", "C"]]
    assert seen == [("low", set()), ("var1", {"A"})]
    assert res[0] == ["A", "C"] and res[1] == "var2" and res[3] == 0.99
    assert [s["step"] for s in steps] == [1, 2] and [s["added_onnx_nodes"] for s in steps] == [["A"], ["C"]]
    assert [s["n_kept"] for s in steps] == [1, 2] and [s["met"] for s in steps] == [False, True]
    assert steps[1]["kept_onnx_nodes"] == ["A", "C"] and steps[0]["value"] == 0.5 and steps[0]["metric"] == "cosine"
    assert bar.n == 2


def test_greedy_step_size_budget_and_exhaustion(monkeypatch):
    monkeypatch.setattr(S, "_rank", lambda m, v, b, c, ex, p: [(n, 1.0) for n in "ABCDE" if n not in ex])
    build, evaluate, built = _planted({})
    steps = []
    res = S._greedy("m", Target("cosine", ">=", 0.9), "low", list("ABCDE"), [], build, evaluate, steps, 2, 2,
                    _Bar(), False)
    assert built == [["A", "B"], ["A", "B", "C", "D"]] and len(steps) == 2  # max_steps spent, never met
    assert res[0] == ["A", "B", "C", "D"]
    built.clear()
    steps = []
    res = S._greedy("m", Target("cosine", ">=", 0.9), "low", list("ABCDE"), [], build, evaluate, steps, 9, 2,
                    _Bar(), False)
    assert built == [["A", "B"], ["A", "B", "C", "D"], ["A", "B", "C", "D", "E"]]  # candidates run out
    monkeypatch.setattr(S, "_rank", lambda *a: [])
    assert S._greedy("m", Target("cosine", ">=", 0.9), "low", [], [], build, evaluate, [], 3, 1, _Bar(), False) is None


def test_bisect_finds_the_smallest_prefix(monkeypatch):
    order = [("n1", 5.0), ("n2", 4.0), ("n3", 3.0), ("n4", 2.0), ("n5", 1.0)]
    monkeypatch.setattr(S, "_rank", lambda m, v, b, c, ex, p: order)
    # the target is met once the first three are kept
    met = {frozenset(["n1", "n2", "n3"] + extra): 1.0 for extra in ([], ["n4"], ["n4", "n5"])}
    build, evaluate, built = _planted(met)
    steps, bar = [{"step": 0}], _Bar()
    res = S._bisect("m", Target("cosine", ">=", 0.9), "low", [n for n, _ in order], [], build, evaluate, steps, 8,
                    bar, False)
    assert res[0] == ["n1", "n2", "n3"] and res[3] == 1.0
    assert built[0] == ["n1", "n2", "n3", "n4", "n5"]  # first: can everything kept meet it?
    assert [len(b) for b in built] == [5, 2, 3]      # then bisect: 0 fails, 5 meets -> 2 fails -> 3 meets
    assert [s["step"] for s in steps] == [0, 1, 2, 3] and [s["n_kept"] for s in steps[1:]] == [5, 2, 3]
    assert [s["met"] for s in steps[1:]] == [True, False, True] and steps[2]["added_onnx_nodes"] == []
    assert bar.n == 3


def test_bisect_budget_and_unreachable(monkeypatch):
    order = [(f"n{i}", float(10 - i)) for i in range(8)]
    monkeypatch.setattr(S, "_rank", lambda *a: order)
    build, evaluate, built = _planted({frozenset(n for n, _ in order[:k]): 1.0 for k in range(7, 9)})
    steps = [{"step": 0}]
    res = S._bisect("m", Target("cosine", ">=", 0.9), "low", [n for n, _ in order], [], build, evaluate, steps, 2,
                    _Bar(), False)
    assert len(steps) - 1 == 2 and [len(b) for b in built] == [8, 4]  # budget of 2 builds: no third try
    assert len(res[0]) == 8  # the best that met: all 8
    build, evaluate, built = _planted({})
    res = S._bisect("m", Target("cosine", ">=", 0.9), "low", [n for n, _ in order], [], build, evaluate,
                    [{"step": 0}], 8, _Bar(), False)
    assert built == [[n for n, _ in order]] and len(res[0]) == 8 and res[3] == 0.0  # closest try reported


def test_rank_orders_by_attributed_noise_descending(monkeypatch):
    frame = pd.DataFrame({"onnx_node": ["a", "b", "c", "d"], "local_noise": [0.1, 0.7, 0.3, 0.0]})
    monkeypatch.setattr(S, "layerwise", lambda model, variant, data, progress, limit: frame)
    monkeypatch.setattr(S, "attribute_noise", lambda model, df, cands: {"a": 0.1, "b": 0.7, "c": 0.3, "d": 0.0})
    assert S._rank("m", "v", [], ["a", "b", "c", "d"], set(), False) == [("b", 0.7), ("c", 0.3), ("a", 0.1), ("d", 0.0)]
    assert S._rank("m", "v", [], ["a", "b", "c"], {"b"}, False) == [("c", 0.3), ("a", 0.1)]


def _chain_model():
    """x -> Conv(c1) -> Relu(r1) -> Conv(c2) -> Relu(r2) -> Add(add, with x2) ; a side MatMul(m) on x2."""
    w = helper.make_tensor("w", TensorProto.FLOAT, [1, 1, 1, 1], [1.0])
    nodes = [helper.make_node("Conv", ["x", "w"], ["t1"], name="c1"),
             helper.make_node("Relu", ["t1"], ["t2"], name="r1"),
             helper.make_node("Conv", ["t2", "w"], ["t3"], name="c2"),
             helper.make_node("Relu", ["t3"], ["t4"], name="r2"),
             helper.make_node("Add", ["t4", "t1"], ["y"], name="add")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 2, 2])], [w])
    return wb.load(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString(), name="chain")


def test_attribute_noise_gives_followers_error_to_their_candidate():
    model = _chain_model()
    frame = pd.DataFrame({"onnx_node": ["c1", "r1", "r1", "c2", "r2", "add"],
                          "local_noise": [1.0, 10.0, 20.0, 100.0, 1000.0, 10000.0]})
    score = attribute_noise(model, frame, ["c1", "c2"])
    # c1 owns itself + r1 (max of its rows: 20); c2 owns itself + r2 + add (add's first input is r2's output)
    assert score == {"c1": 21.0, "c2": 11100.0}
    only_c1 = attribute_noise(model, frame, ["c1"])  # without c2 as a candidate, the chain continues to c1
    assert only_c1 == {"c1": 11121.0}
    assert attribute_noise(model, frame, []) == {}
    missing = attribute_noise(model, frame[frame.onnx_node != "r1"], ["c1", "c2"])
    assert missing == {"c1": 1.0, "c2": 11100.0}  # a node without a row adds 0


# ------------------------------------------------------------------------------------------ result record
def _result(latency):
    from workbench.variant import Variant

    var = Variant.of(_chain_model())
    return MixedPrecisionResult(precision="int8", target=Target("cosine", ">=", 0.99), keep_nodes=["c1"],
                                steps=pd.DataFrame([{"step": 0, "value": math.nan}, {"step": 1, "value": 0.995}]),
                                variant=var, baseline_value=0.5, verified_value=math.inf, met=True, comparison=None,
                                latency=latency, candidates=["c1", "c2"])


def test_result_speed_cost_json_and_repr():
    lat = pd.DataFrame({"role": ["fp32", "low", "mixed"], "p50_ms": [4.0, 2.0, 3.0]})
    r = _result(lat)
    assert r.speed_cost == pytest.approx(3.0 / 2.0)
    assert _result(None).speed_cost is None and _result(pd.DataFrame()).speed_cost is None
    assert _result(pd.DataFrame({"role": ["fp32", "mixed"], "p50_ms": [1.0, 2.0]})).speed_cost is None
    assert _result(pd.DataFrame({"role": ["low", "mixed"], "p50_ms": [0.0, 2.0]})).speed_cost is None
    js = r.to_json()
    assert js["precision"] == "int8" and js["target"] == "cosine>=0.99" and js["keep_nodes"] == ["c1"]
    assert js["baseline_value"] == 0.5 and js["verified_value"] == "inf" and js["met"] is True
    assert js["variant"] == r.variant.name and js["candidates"] == ["c1", "c2"] and js["speed_cost"] == 1.5
    assert js["steps"] == [{"step": 0, "value": None}, {"step": 1, "value": 0.995}]
    assert js["latency"][1] == {"role": "low", "p50_ms": 2.0}
    assert _result(None).to_json()["latency"] is None and _result(None).to_json()["speed_cost"] is None
    assert repr(r) == "<MixedPrecisionResult int8 cosine>=0.99: keep ['c1'] → cosine=inf met=True>"


def test_latency_keeps_the_median_round_per_role(monkeypatch):
    import workbench.measure.latency as L

    p50s = iter([5.0, 2.0, 3.0,   1.0, 9.0, 4.0,   3.0, 6.0, 8.0])  # rounds of (fp32, low, mixed)
    calls = []

    def fake_measure(engine, feeds, warmup, iterations):
        assert feeds == {"x": "FEEDS"} and type(warmup) is int
        calls.append((engine, warmup, iterations))
        return L.LatencyResult(variant=engine, times_ms=[next(p50s)])

    monkeypatch.setattr(L, "measure_latency", fake_measure)
    df = S._latency("E32", "ELOW", "EMIX", {"x": "FEEDS"}, iterations=40)
    assert [c[0] for c in calls] == ["E32", "ELOW", "EMIX"] * 3  # interleaved rounds
    assert {c[1] for c in calls} == {4} and {c[2] for c in calls} == {40}  # warm-up max(3, 40 // 10)
    got = dict(zip(df["role"], df["p50_ms"]))
    assert got == {"fp32": 3.0, "low": 6.0, "mixed": 4.0}  # the median of each role's three p50s
    assert df["rounds"].tolist() == [3, 3, 3] and df.columns[0] == "role" and df.index.tolist() == [0, 1, 2]
    calls.clear()
    p50s = iter([1.0] * 3)
    S._latency("a", "b", "c", {"x": "FEEDS"}, iterations=10, rounds=1)
    assert [c[1] for c in calls] == [3, 3, 3]  # warm-up at least 3
    p50s = iter([5.0, 1.0, 4.0, 2.0, 3.0] * 3)
    five = S._latency("a", "b", "c", {"x": "FEEDS"}, iterations=10, rounds=5)
    assert five.loc[five.role == "fp32", "p50_ms"].iloc[0] == 3.0  # the median of five rounds


# ------------------------------------------------------------------------------------------ argument checks
@pytest.mark.parametrize("kw,msg", [({"strategy": "random"}, "unknown strategy 'random'"),
                                    ({"max_steps": 0}, "max_steps and step_size must be >= 1"),
                                    ({"step_size": 0}, "max_steps and step_size must be >= 1"),
                                    ({"target": "top1>=0.5"}, "needs labels"),
                                    ({"precision": "fp32"}, "already full precision")])
def test_propose_refuses_bad_arguments_before_building(kw, msg):
    args = {"precision": "int8", "target": "cosine>=0.9"}
    args.update(kw)
    with pytest.raises(UsageError, match=msg):
        S.propose_mixed_precision(_chain_model(), args.pop("precision"), data=None, progress=False, **args)


def test_lowered_nodes_int8_and_fp16(tmp_path):
    from workbench.precision import make_variant

    model = _chain_model()
    calib = [{"x": np.random.default_rng(s).standard_normal((1, 1, 2, 2)).astype(np.float32)} for s in range(4)]
    i8 = make_variant(model, "int8", calib=calib, progress=False)
    assert S.lowered_nodes(model, i8) == ["c1", "c2"]  # the nodes reading a dequantized constant weight
    f16 = make_variant(model, "fp16", progress=False)
    low16 = S.lowered_nodes(model, f16)
    assert low16 and set(low16) <= {"c1", "r1", "c2", "r2", "add"} and "c1" in low16
    assert low16 == [n for n in ["c1", "r1", "c2", "r2", "add"] if n in low16]  # topological order


# ------------------------------------------------------------------------------------------ survivors of the first run
def test_search_passes_its_inputs_to_the_ranking(monkeypatch):
    calls = []

    def fake_rank(model, var, batches, candidates, exclude, progress):
        calls.append((model, var, batches, list(candidates), set(exclude), progress))
        return [(n, 1.0) for n in candidates if n not in exclude]

    monkeypatch.setattr(S, "_rank", fake_rank)
    build, evaluate, _ = _planted({})
    batches = [{"x": 1}]
    res = S._greedy("M", Target("cosine", ">=", 0.9), "low", ["A", "B"], batches, build, evaluate, [], 5, 1,
                    _Bar(), False)
    assert calls[0] == ("M", "low", batches, ["A", "B"], set(), False)
    assert calls[1] == ("M", "var1", batches, ["A", "B"], {"A"}, False)
    assert res[0] == ["A", "B"]  # candidates ran out: the last try is still returned
    calls.clear()
    steps = [{"step": 0}]
    S._bisect("M", Target("cosine", ">=", 0.9), "low", ["A", "B"], batches, build, evaluate, steps, 5, _Bar(), False)
    assert calls == [("M", "low", batches, ["A", "B"], set(), False)]
    assert steps[1] == {"step": 1, "kept_onnx_nodes": ["A", "B"], "n_kept": 2, "added_onnx_nodes": [],
                        "metric": "cosine", "value": 0.0, "met": False}


def test_bisect_narrows_a_gap_of_two():
    order = [(f"n{i}", float(10 - i)) for i in range(5)]
    S_rank = S._rank
    try:
        S._rank = lambda *a: order
        met = {frozenset(n for n, _ in order[:k]): 1.0 for k in (4, 5)}
        build, evaluate, built = _planted(met)
        res = S._bisect("m", Target("cosine", ">=", 0.9), "low", [n for n, _ in order], [], build, evaluate,
                        [{"step": 0}], 8, _Bar(), False)
    finally:
        S._rank = S_rank
    assert len(res[0]) == 4 and [len(b) for b in built] == [5, 2, 3, 4]


def test_rank_passes_model_variant_data_and_candidates(monkeypatch):
    seen = {}

    def fake_layerwise(model, variant, data, progress, limit):
        seen["lw"] = (model, variant, data, progress, limit)
        return "FRAME"

    def fake_attr(model, df, cands):
        seen["attr"] = (model, df, list(cands))
        return {c: 1.0 for c in cands}

    monkeypatch.setattr(S, "layerwise", fake_layerwise)
    monkeypatch.setattr(S, "attribute_noise", fake_attr)
    S._rank("M", "V", ["b"], ["a", "c"], set(), True)
    assert seen == {"lw": ("M", "V", ["b"], True, None), "attr": ("M", "FRAME", ["a", "c"])}


def test_value_of_top1_reads_the_first_row():
    rows = [("v", "a", "top1", 0.9), ("v", "b", "top1", 0.95), ("v", "a", "top1_agreement", 0.7),
            ("v", "b", "top1_agreement", 0.8)]
    cmp = _Cmp(rows)
    assert Target("top1", ">=", 0).value_of(cmp, "v") == 0.9
    assert Target("top1_agreement", ">=", 0).value_of(cmp, "v") == 0.7


# ------------------------------------------------------------------------------------------ the whole search, for real
def _mlp():
    """x (N, 8) -> MatMul m1 -> Relu r1 -> MatMul m2 -> y (N, 4), random weights: int8 lowers m1 and m2."""
    from onnx import numpy_helper

    rng = np.random.default_rng(0)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="m1"), helper.make_node("Relu", ["h"], ["r"], name="r1"),
             helper.make_node("MatMul", ["r", "w2"], ["y"], name="m2")]
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
                          [numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32), "w1"),
                           numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "w2")])
    return wb.load(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), name="mlp")


def _snr_by_hand(model, variant_model, batches):
    """snr_db of ``y`` over ``batches``, from two plain ORT sessions and numpy."""
    import onnxruntime as ort

    def run(m):
        s = ort.InferenceSession(m.proto_with_data().SerializeToString(), providers=["CPUExecutionProvider"])
        return np.concatenate([s.run(["y"], b)[0] for b in batches]).astype(np.float64)

    ref, var = run(model), run(variant_model)
    return 10 * math.log10((ref ** 2).sum() / ((var - ref) ** 2).sum()) if (var != ref).any() else math.inf


@pytest.mark.filterwarnings("ignore:the int8 variant")
def test_propose_mixed_precision_on_a_tiny_mlp(tmp_path):
    """A target only fp32 meets (snr >= 200 dB): the search must keep both lowered MatMuls, one per greedy step,
    and each step's value is the snr of that variant, computed here from plain ORT runs (calib = the data).
    search_limit counts samples (of an .npz here; of a list of feed dicts too, see test_mut_npz)."""
    from workbench.precision import make_variant

    model = _mlp()
    x = np.random.default_rng(1).standard_normal((16, 8)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x)
    data = [{"x": x[:8]}, {"x": x[8:]}]

    def snr(keep, batches):
        # the Q/DQ form the search builds for ORT CPU (uint8 activations: backend="onnxruntime")
        v = make_variant(model, "int8", calib=data, keep_nodes=keep, backend="onnxruntime", progress=False)
        return _snr_by_hand(model, v.model, batches)

    res = S.propose_mixed_precision(model, "int8", target="snr_db>=200", data=tmp_path / "d.npz", batch_size=8,
                                    search_limit=8, latency=False, progress=False)
    steps = res.steps
    assert res.candidates == ["m1", "m2"] and sorted(res.keep_nodes) == ["m1", "m2"] and res.met
    assert list(steps.n_kept) == [0, 1, 2] and list(steps.met) == [False, False, True]
    assert steps.kept_onnx_nodes[1] == steps.added_onnx_nodes[1] and len(steps.added_onnx_nodes[1]) == 1
    # the search sees the first 8 samples (search_limit); the verification all 16
    assert res.baseline_value == pytest.approx(snr([], data[:1]), rel=1e-9)
    assert steps.value[1] == pytest.approx(snr(steps.kept_onnx_nodes[1], data[:1]), rel=1e-9)
    assert 30 < res.baseline_value < steps.value[1] < 200 and res.verified_value == math.inf
    assert res.comparison.samples == 16 and res.latency is None
    # bisect: everything kept first (met), then one node (not met); latency of the three roles
    res = S.propose_mixed_precision(model, "int8", target="snr_db>=200", data=data, strategy="bisect", latency=True,
                                    latency_iterations=3, progress=False)
    assert list(res.steps.n_kept) == [0, 2, 1] and list(res.steps.met) == [False, True, False]
    assert sorted(res.keep_nodes) == ["m1", "m2"] and res.verified_value == math.inf
    assert res.baseline_value == pytest.approx(snr([], data), rel=1e-9)
    assert list(res.latency.role) == ["fp32", "low", "mixed"]
    # a target the int8 variant already meets: no search, nothing kept, the verified value is the baseline
    res = S.propose_mixed_precision(model, "int8", target="snr_db>=30", data=data, latency=False, progress=False)
    assert res.keep_nodes == [] and len(res.steps) == 1 and res.met
    assert res.verified_value == res.baseline_value == pytest.approx(snr([], data), rel=1e-9)
    # candidates restrict the search; one step of budget keeps one node, and the target stays unmet
    res = S.propose_mixed_precision(model, "int8", target="snr_db>=200", data=data, candidates=["m2"], max_steps=1,
                                    latency=False, progress=False)
    assert res.keep_nodes == ["m2"] and res.candidates == ["m2"] and not res.met
    assert res.verified_value == pytest.approx(snr(["m2"], data), rel=1e-9)
    with pytest.raises(UsageError, match="not lowered nodes"):
        S.propose_mixed_precision(model, "int8", target="snr_db>=200", data=data, candidates=["r1"], latency=False,
                                  progress=False)


class _Drawn(DrawnBars):
    """The bars a user sees, by description."""

    def bars(self) -> dict[str, list[str]]:
        import re

        self.text = text = self.take()
        out = {}
        for frame in text.split("\r"):
            desc = frame.split(":")[0].strip()
            if desc and not desc.startswith("\x1b"):
                out.setdefault(desc, []).append(frame)
        return {d: sorted({m.group(0) for f in fs for m in [re.search(r"\d+/\d+ \[", f)] if m},
                          key=lambda c: int(c.split("/")[0]))
                for d, fs in out.items()} | ({"": [text]} if text and not out else {})


@pytest.mark.filterwarnings("ignore:the int8 variant")
def test_propose_defaults_progress_labels_and_result(tmp_path, monkeypatch):
    """Defaults (int8, 8 steps, latency of 50 runs, layerwise on the first 64 samples), the bars it draws (and none
    with progress=False), a model path, labels for a top-1 target, shapes for synthetic data."""
    import onnx
    import onnxruntime as ort

    from workbench.precision import make_variant

    model = _mlp()
    onnx.save(model.proto_with_data(), tmp_path / "mlp.onnx")
    x = np.random.default_rng(2).standard_normal((72, 8)).astype(np.float32)
    labels = np.random.default_rng(3).integers(0, 4, 72)
    np.savez(tmp_path / "d.npz", x=x)
    drawn = _Drawn(monkeypatch)
    res = S.propose_mixed_precision(str(tmp_path / "mlp.onnx"), target="snr_db>=200", data=tmp_path / "d.npz",
                                    batch_size=8)
    bars = drawn.bars()
    # the search bar: 1 + max_steps (8) builds at most; three made (low, one kept, both kept)
    assert bars["mixed int8 snr_db>=200"] == ["0/9 [", "1/9 [", "2/9 [", "3/9 ["]
    # the ranking runs layerwise on the first 64 samples: 8 runs of 8; the variants are calibrated on all 72
    assert bars["layerwise mlp-int8"][-1] == "8/8 [" and bars["layerwise mlp-int8-mixed"][-1] == "8/8 ["
    assert bars["calibrating mlp (minmax)"][-1] == "72/72 ["
    assert set(bars) == {"mixed int8 snr_db>=200", "layerwise mlp-int8", "layerwise mlp-int8-mixed",
                         "calibrating mlp (minmax)"}  # no comparison bars: their progress stays off
    assert drawn.text.endswith("\r") and not drawn.text.split("\r")[-2].strip()  # the search bar is erased, not left
    assert res.precision == "int8" and res.target == Target("snr_db", ">=", 200.0)
    assert res.variant.name == "mlp-int8-mixed" and res.variant.precision == "int8"
    assert list(res.steps.columns) == ["step", "kept_onnx_nodes", "n_kept", "added_onnx_nodes", "metric", "value", "met"]
    assert list(res.steps.step) == [0, 1, 2] and res.steps.kept_onnx_nodes[0] == [] == res.steps.added_onnx_nodes[0]
    assert list(res.steps.metric) == ["snr_db"] * 3 and res.steps.value[0] == res.baseline_value
    assert list(res.latency.role) == ["fp32", "low", "mixed"]
    assert (res.latency.batch == 8).all() and (res.latency.iterations == 50).all()
    # bisect draws its layerwise ranking too
    res = S.propose_mixed_precision(model, target="snr_db>=200", data=tmp_path / "d.npz", batch_size=8,
                                    strategy="bisect", latency=False)
    assert drawn.bars()["layerwise mlp-int8"][-1] == "8/8 [" and sorted(res.keep_nodes) == ["m1", "m2"]
    # progress=False: nothing drawn; a top-1 target reads the labels in the search and in the verification
    res = S.propose_mixed_precision(model, target="top1_drop<=100", data=tmp_path / "d.npz", labels=labels,
                                    batch_size=8, search_limit=64, latency=False, progress=False)
    assert drawn.bars() == {}

    def top1(m, n):
        s = ort.InferenceSession(m.proto_with_data().SerializeToString(), providers=["CPUExecutionProvider"])
        return float((s.run(["y"], {"x": x[:n]})[0].argmax(1) == labels[:n]).mean())

    low = make_variant(model, "int8", calib=[{"x": x}], backend="onnxruntime", progress=False).model
    assert res.keep_nodes == [] and res.met
    assert res.baseline_value == pytest.approx(100 * (top1(model, 64) - top1(low, 64)), abs=1e-9)
    assert res.verified_value == pytest.approx(100 * (top1(model, 72) - top1(low, 72)), abs=1e-9)
    # no data: synthetic samples of the shapes given, for the search and the verification alike
    res = S.propose_mixed_precision(model, target="snr_db>=0", shapes="x:3x8", search_limit=3, latency=False,
                                    progress=False)
    assert res.comparison.samples == 3 and res.baseline_value == res.verified_value


@pytest.mark.filterwarnings("ignore:the int8 variant")
def test_propose_latency_uses_the_first_batch():
    model = _mlp()
    rng = np.random.default_rng(4)
    data = [{"x": rng.standard_normal((16, 8)).astype(np.float32)}, {"x": rng.standard_normal((8, 8)).astype(np.float32)}]
    res = S.propose_mixed_precision(model, target="snr_db>=0", data=data, latency_iterations=2, progress=False)
    assert (res.latency.batch == 16).all() and (res.latency.iterations == 2).all()


def test_attribute_noise_follows_unnamed_nodes():
    """Unnamed nodes are labelled ``<op>#<index>`` in the layerwise frame: the candidate m owns both Relus after it."""
    from onnx import numpy_helper

    nodes = [helper.make_node("Mul", ["x", "w"], ["t1"], name="m"), helper.make_node("Relu", ["t1"], ["t2"]),
             helper.make_node("Relu", ["t2"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
                          [numpy_helper.from_array(np.ones(2, np.float32), "w")])
    model = wb.load(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), name="unnamed")
    frame = pd.DataFrame({"onnx_node": ["m", "Relu#1", "Relu#2"], "local_noise": [1.0, 10.0, 100.0]})
    assert attribute_noise(model, frame, ["m"]) == {"m": 111.0}


def test_lowered_nodes_reads_weights_from_constant_nodes():
    """A Q/DQ variant whose quantized weight is a Constant node (not an initializer): the MatMul reading its
    DequantizeLinear is lowered."""
    from onnx import numpy_helper

    from workbench.variant import Variant

    f = TensorProto.FLOAT
    w = numpy_helper.from_array(np.ones((2, 2), np.float32), "w")
    ref = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "ref",
                            [helper.make_tensor_value_info("x", f, [1, 2])], [helper.make_tensor_value_info("y", f, [1, 2])], [w])
    q = [numpy_helper.from_array(np.array(0.1, np.float32), "sc"), numpy_helper.from_array(np.array(0, np.int8), "zp")]
    var = helper.make_graph([helper.make_node("Constant", [], ["wq"], name="k",
                                              value=numpy_helper.from_array(np.full((2, 2), 10, np.int8), "wq")),
                             helper.make_node("DequantizeLinear", ["wq", "sc", "zp"], ["wd"], name="dq"),
                             helper.make_node("MatMul", ["x", "wd"], ["y"], name="mm")], "var",
                            [helper.make_tensor_value_info("x", f, [1, 2])], [helper.make_tensor_value_info("y", f, [1, 2])], q)
    op = [helper.make_opsetid("", 17)]
    model = wb.load(helper.make_model(ref, opset_imports=op), name="mm")
    v = Variant(model=model.derive(helper.make_model(var, opset_imports=op), name="mm-int8"), precision="int8")
    assert S.lowered_nodes(model, v) == ["mm"]


@pytest.mark.filterwarnings("ignore:calibrating")
@pytest.mark.filterwarnings("ignore:the int8 variant")
def test_propose_passes_variant_options_to_the_build():
    """``**variant_opts`` reach make_variant: num_calib=4 calibrates the searched variant on the first 4 of 16
    samples, and its value is the snr of a variant made by hand with the same option (not with all 16)."""
    from workbench.precision import make_variant

    model = _mlp()
    x = np.random.default_rng(5).standard_normal((16, 8)).astype(np.float32)
    x[8:] *= 20  # the last samples widen the activation ranges: calibrating on 4 or 16 samples differs
    data = [{"x": x[:8]}, {"x": x[8:]}]
    res = S.propose_mixed_precision(model, "int8", target="snr_db>=0", data=data, num_calib=4, latency=False,
                                    progress=False)
    assert res.variant.recipe["calibration"]["num_samples"] == 4
    four = make_variant(model, "int8", calib=data, num_calib=4, backend="onnxruntime", progress=False)
    every = make_variant(model, "int8", calib=data, backend="onnxruntime", progress=False)
    assert res.baseline_value == pytest.approx(_snr_by_hand(model, four.model, data), rel=1e-9)
    assert _snr_by_hand(model, four.model, data) != pytest.approx(_snr_by_hand(model, every.model, data), rel=1e-3)
