"""Tests written against mutants of workbench/compare/metrics.py that survived `make mutate` (issue 23).

Every expected value is computed here with numpy (or by hand) from arrays the test builds — never with the
module's own helpers for the same quantity.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from workbench.compare import metrics as M
from workbench.compare.metrics import ErrorAccumulator, Tolerance, verdict


def _pair(seed=0, n=1000):
    rng = np.random.default_rng(seed)
    ref = rng.standard_normal(n)
    x = ref + rng.normal(0, 0.05, n)
    return ref, x


def test_elementwise_metrics_match_numpy():
    ref, x = _pair()
    d = x - ref
    assert M.max_abs_error(ref, x) == pytest.approx(np.abs(d).max())
    assert M.mean_abs_error(ref, x) == pytest.approx(np.abs(d).mean())
    assert M.max_rel_error(ref, x) == pytest.approx((np.abs(d) / np.abs(ref)).max())
    assert M.rmse(ref, x) == pytest.approx(np.sqrt((d ** 2).mean()))
    cos = ref @ x / (np.linalg.norm(ref) * np.linalg.norm(x))
    assert M.cosine_similarity(ref, x) == pytest.approx(cos)
    assert M.snr_db(ref, x) == pytest.approx(10 * np.log10((ref ** 2).sum() / (d ** 2).sum()))


def test_metrics_ignore_positions_where_either_side_is_not_finite():
    ref = np.array([1.0, 2.0, np.nan, 4.0, 5.0])
    x = np.array([1.5, 2.0, 3.0, np.inf, 4.0])
    r, v = np.array([1.0, 2.0, 5.0]), np.array([1.5, 2.0, 4.0])  # the finite positions, by hand
    assert M.max_abs_error(ref, x) == 1.0
    assert M.mean_abs_error(ref, x) == pytest.approx(1.5 / 3)
    assert M.max_rel_error(ref, x) == pytest.approx(0.5)
    assert M.rmse(ref, x) == pytest.approx(math.sqrt(1.25 / 3))
    assert M.cosine_similarity(ref, x) == pytest.approx(r @ v / (np.linalg.norm(r) * np.linalg.norm(v)))
    assert M.nan_count(x) == 0 and M.inf_count(x) == 1 and M.nan_count(ref) == 1


def test_empty_and_all_nonfinite_inputs_give_zero_errors():
    for f in (M.max_abs_error, M.mean_abs_error, M.max_rel_error, M.rmse):
        assert f([], []) == 0.0
        assert f([np.nan], [1.0]) == 0.0


def test_max_rel_uses_eps_for_zero_reference():
    assert M.max_rel_error([0.0, 1.0], [1e-6, 1.0]) == pytest.approx(1e-6 / 1e-12)
    assert M.max_rel_error([0.0], [1e-6], eps=1e-3) == pytest.approx(1e-3)
    assert M.EPS == 1e-12


def test_shapes_must_match():
    with pytest.raises(ValueError, match=r"shapes differ: \(2,\) vs \(3,\)"):
        M.max_abs_error(np.zeros(2), np.zeros(3))
    with pytest.raises(ValueError, match="shapes differ"):
        ErrorAccumulator().update(np.zeros((2, 2)), np.zeros(4))
    assert M.max_abs_error(np.zeros((2, 3)), np.ones((2, 3))) == 1.0  # same shape, any rank


def test_cosine_edge_cases_by_hand():
    assert M.cosine_similarity([0.0, 0.0], [0.0, 0.0]) == 1.0
    assert M.cosine_similarity([0.0, 0.0], [1.0, 0.0]) == 0.0
    assert M.cosine_similarity([1.0, 0.0], [0.0, 0.0]) == 0.0
    assert M.cosine_similarity([1.0, 0.0], [-2.0, 0.0]) == -1.0
    assert M.cosine_similarity([1.0, 0.0], [1.0, 1.0]) == pytest.approx(1 / math.sqrt(2))
    assert M.cosine_similarity([3.0, 4.0], [3.0, 4.0]) == 1.0  # clipped to 1.0 even if rounding overshoots
    big = np.full(7, 0.1)
    assert M.cosine_similarity(big, big) <= 1.0 and M.cosine_similarity(big, -big) >= -1.0


def test_snr_edge_cases_by_hand():
    assert M.snr_db([1.0, 2.0], [1.0, 2.0]) == math.inf
    assert M.snr_db([0.0, 0.0], [1.0, 0.0]) == -math.inf
    assert M.snr_db([0.0], [0.0]) == math.inf
    assert M.snr_db([10.0], [11.0]) == pytest.approx(20.0)  # 10 log10(100 / 1)
    assert M.snr_db([1.0], [1.1]) == pytest.approx(10 * math.log10(1 / 0.01))


def test_nan_inf_counts_by_dtype():
    assert M.nan_count(np.array([1, 2, 3])) == 0 and M.inf_count(np.array([1, 2])) == 0
    assert M.nan_count(np.array([np.nan, 1.0, np.nan], np.float16)) == 2
    assert M.inf_count(np.array([np.inf, -np.inf, 0.0], np.float32)) == 2
    assert M.nan_count(np.array([complex(np.nan, 0), 1j])) == 1
    assert M.inf_count(np.array([complex(np.inf, 0), 1j])) == 1
    assert type(M.nan_count(np.array([np.nan]))) is int and type(M.inf_count(np.array([np.inf]))) is int


def test_allclose_rule_and_its_boundary():
    ref = np.array([1.0, -2.0, 0.0])
    tol = 1e-3 + 1e-2 * np.abs(ref)  # atol + rtol*|ref| by hand
    assert M.allclose(ref, ref + tol * 0.5, atol=1e-3, rtol=1e-2)
    assert M.allclose(ref, ref + tol * 2.0 ** -1, atol=1e-3, rtol=1e-2)
    assert not M.allclose(ref, ref + tol * 1.5, atol=1e-3, rtol=1e-2)
    assert M.allclose([4.0], [4.5], atol=0.5, rtol=0.0)  # exactly on the boundary passes (<=)
    assert M.allclose([4.0], [5.0], atol=0.0, rtol=0.25)  # rtol scales |ref|
    assert not M.allclose([4.0], [5.0], atol=0.0, rtol=0.24)
    assert not M.allclose([1.0], [np.nan], atol=1.0, rtol=1.0)
    assert not M.allclose([1.0], [np.inf], atol=1.0, rtol=1.0)
    assert M.allclose([np.nan], [1.0], atol=1.0, rtol=1.0) is False  # NaN reference never compares close


def test_top1_and_topk_by_hand():
    logits = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.0, 0.0, 1.0]])
    assert M.top1_accuracy(logits, [1, 0, 1, 2]) == 0.75
    assert M.top1_accuracy(logits.reshape(4, 1, 3), np.array([[1], [0], [2], [2]])) == 1.0
    ref = np.array([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0]])
    x = np.array([[3.0, 1.0, 2.0, 0.0], [3.0, 2.0, 1.0, 0.0]])
    # top-2 of ref: {0,1} and {3,2}; of x: {0,2} and {0,1} -> overlaps 1/2 and 0/2
    assert M.topk_agreement(ref, x, 2) == pytest.approx(0.25)
    assert M.topk_agreement(ref, x, 1) == pytest.approx(0.5)
    assert M.topk_agreement(ref, x, 99) == 1.0  # k clipped to the 4 classes
    assert M.topk_agreement(ref, x, 0) == pytest.approx(0.5)  # k at least 1
    assert M.topk_agreement(np.zeros((0, 3)), np.zeros((0, 3)), 5) == 1.0
    ties = np.array([[1.0, 1.0, 0.0]])
    assert M.topk_overlap(ties, np.array([[1.0, 0.0, 1.0]]), 1).tolist() == [1.0]  # stable: index 0 first both


def _concat_oracle(pairs):
    r = np.concatenate([p[0].ravel() for p in pairs]).astype(np.float64)
    x = np.concatenate([p[1].ravel() for p in pairs]).astype(np.float64)
    ok = np.isfinite(r) & np.isfinite(x)
    d = x[ok] - r[ok]
    return r, x, ok, d


@pytest.mark.parametrize("nonfinite", [False, True])
def test_accumulator_over_batches_equals_metrics_of_the_concatenation(nonfinite):
    rng = np.random.default_rng(3)
    pairs = []
    for n in (40_000, 7, 33_000):  # crosses the 32K chunk boundary inside one update
        r = rng.standard_normal(n).astype(np.float32)
        x = (r + rng.normal(0, 0.01, n)).astype(np.float32)
        pairs.append((r, x))
    if nonfinite:
        pairs[2][1][5] = np.nan
        pairs[2][1][9] = np.inf
        pairs[0][0][100] = np.nan  # a NaN in the reference: excluded, not counted against x
    acc = ErrorAccumulator(atol=1e-2, rtol=0.0)
    for r, x in pairs:
        acc.update(r, x)
    res = acc.result()
    r, x, ok, d = _concat_oracle(pairs)
    rr, xx = r[ok], x[ok]
    assert res["max_abs"] == pytest.approx(np.abs(d).max())
    assert res["mean_abs"] == pytest.approx(np.abs(d).mean())
    assert res["max_rel"] == pytest.approx((np.abs(d) / np.maximum(np.abs(rr), 1e-12)).max())
    assert res["rmse"] == pytest.approx(np.sqrt((d ** 2).mean()))
    assert res["cosine"] == pytest.approx(rr @ xx / (np.linalg.norm(rr) * np.linalg.norm(xx)), abs=1e-12)
    assert res["snr_db"] == pytest.approx(10 * np.log10((rr @ rr) / (d @ d)), rel=1e-9)
    assert res["nan_count"] == (1 if nonfinite else 0) and res["inf_count"] == (1 if nonfinite else 0)
    assert acc.n == ok.sum()
    assert acc.x_sq == pytest.approx(xx @ xx) and acc.dot == pytest.approx(rr @ xx) and acc.ref_sq == pytest.approx(rr @ rr)
    p99 = np.percentile(np.abs(d), 99)
    assert res["err_p99"] == pytest.approx(p99, rel=0.024)
    assert res["err_p999"] == pytest.approx(np.percentile(np.abs(d), 99.9), rel=0.024)
    assert res["err_p99"] <= res["err_p999"] <= res["max_abs"]
    assert res["allclose"] is (not nonfinite and bool(np.all(np.abs(d) <= 1e-2)))
    assert res["passed"] is (not nonfinite)


def test_accumulator_allclose_uses_its_atol_and_rtol():
    ref = np.array([1.0, 2.0, 4.0])
    x = ref + np.array([0.125, 0.25, 0.5])  # |d| = |ref| / 8, exact in binary
    for (atol, rtol), want in [((0.0, 0.125), True), ((0.0, 0.12), False), ((0.5, 0.0), True), ((0.49, 0.0), False),
                               ((0.25, 0.0625), True), ((0.0625, 0.0625), False)]:
        a = ErrorAccumulator(atol=atol, rtol=rtol)
        a.update(ref, x)
        assert a.result()["allclose"] is want, (atol, rtol)
        b = ErrorAccumulator(atol=atol, rtol=rtol)  # a NaN reference never compares close (numpy's rule)
        b.update(np.append(ref, np.nan), np.append(x, 0.0))
        assert b.result()["allclose"] is False and b.result()["max_abs"] == 0.5, (atol, rtol)
    a = ErrorAccumulator(atol=1.0, rtol=0.0)
    a.update([0.0], [5.0])
    a.update([0.0], [0.0])  # once not close, later close batches do not reset it
    assert a.result()["allclose"] is False
    g = ErrorAccumulator(atol=1.0, rtol=0.0)
    g.update([0.0, np.nan], [5.0, 0.0])
    g.update([0.0, np.nan], [0.0, 0.0])
    assert g.result()["allclose"] is False


def test_accumulator_nan_in_x_only_fails_allclose_and_verdict():
    a = ErrorAccumulator(atol=10.0, rtol=10.0)
    a.update([1.0, 2.0], [1.0, np.nan])
    res = a.result()
    assert res["nan_count"] == 1 and res["allclose"] is False and res["passed"] is False
    assert res["max_abs"] == 0.0 and a.n == 1


def test_accumulator_all_nonfinite_chunk_adds_nothing():
    a = ErrorAccumulator()
    a.update([np.nan, np.nan], [1.0, 2.0])
    assert a.n == 0 and a.sum_abs == 0.0 and a.result()["rmse"] == 0.0 and a.result()["mean_abs"] == 0.0


def test_accumulator_without_percentiles():
    a = ErrorAccumulator(percentiles=False)
    a.update([1.0, 2.0], [1.5, 2.0])
    res = a.result()
    assert math.isnan(res["err_p99"]) and math.isnan(res["err_p999"]) and a.hist is None
    assert res["max_abs"] == 0.5


def test_accumulator_verdict_uses_its_tolerance():
    ref, x = _pair(1)
    strict = ErrorAccumulator(tolerance=Tolerance("t", 0.999999, 80.0))
    loose = ErrorAccumulator(tolerance=Tolerance("t", 0.9, 10.0))
    for a in (strict, loose):
        a.update(ref, x)
    assert strict.verdict().passed is False and loose.verdict().passed is True
    assert strict.result()["passed"] is False and loose.result()["passed"] is True
    assert strict.verdict().tolerance.name == "t"


def test_noise_ratio_by_hand():
    a = ErrorAccumulator()
    assert a.noise_ratio == 0.0
    a.update([3.0, 4.0], [3.0, 5.0])  # sum d^2 = 1, sum ref^2 = 25
    assert a.noise_ratio == pytest.approx(1 / 25)
    z = ErrorAccumulator()
    z.update([0.0], [1.0])
    assert z.noise_ratio == math.inf


def test_histogram_quantiles_edges():
    assert M._hist_quantile(np.zeros(M._H_BINS + 2, np.int64), 0.99) == 0.0
    a = ErrorAccumulator()
    a.update(np.ones(100), np.ones(100) + 1e-14)  # below 1e-12: reported as exact
    assert a.result()["err_p99"] == 0.0
    b = ErrorAccumulator()
    b.update(np.zeros(10), np.full(10, 1e14))  # above the top bin: capped at 1e12, then min with max_abs
    assert M._hist_quantile(b.hist, 0.99) == 1e12 and b.result()["err_p99"] == 1e12
    c = ErrorAccumulator()
    c.update(np.zeros(1000), np.linspace(0.001, 1.0, 1000))
    p = np.percentile(np.linspace(0.001, 1.0, 1000), 99)
    assert p <= c.result()["err_p99"] <= p * 1.024  # upper edge of its bin, within one bin width
    assert M._H_BINS == 2400


def test_output_metrics_is_one_accumulator():
    ref, x = _pair(2, 50)
    res = M.output_metrics(ref, x, atol=1.0, rtol=0.0)
    assert set(M.METRICS) | set(M.EXTRA_METRICS) == set(res)
    assert res["allclose"] is True and res["max_abs"] == pytest.approx(np.abs(x - ref).max())
    assert M.output_metrics(ref, x, atol=0.0, rtol=0.0)["allclose"] is False
    assert M.output_metrics([1.0], [1.0005])["allclose"] is True  # defaults atol = rtol = 1e-3
    assert M.output_metrics([1.0], [1.0021])["allclose"] is False


# ------------------------------------------------------------------------------------------ verdicts
def test_verdict_clauses_and_boundaries():
    tol = Tolerance("int8", 0.98, 14.0, 1.0)
    ok = verdict(tol, cosine=0.98, snr_db=14.0)
    assert ok.passed and ok.failed == () and ok.rule == "int8: cosine >= 0.98 and SNR >= 14 dB and no NaN/Inf"
    assert ok.why == "passes int8: cosine >= 0.98 and SNR >= 14 dB and no NaN/Inf"
    bad = verdict(tol, cosine=0.5, snr_db=3.0, nan_count=2, inf_count=1, top1_drop=2.5)
    assert not bad.passed
    assert bad.failed == ("2 NaN / 1 Inf in the output", "cosine 0.5 < 0.98", "SNR 3 dB < 14 dB",
                          "top-1 drop 2.5 pt > 1 pt")
    assert bad.why == "fails: " + "; ".join(bad.failed)
    assert bad.rule.endswith("and top-1 drop <= 1 pt") and bad.tolerance is tol
    assert verdict(tol, cosine=math.nan, snr_db=20.0).failed == ("cosine nan < 0.98",)
    assert verdict(tol, cosine=0.99, snr_db=math.nan).passed is False
    assert verdict(tol, cosine=0.99, snr_db=20.0, inf_count=1).failed == ("0 NaN / 1 Inf in the output",)
    assert verdict(tol, cosine=0.99, snr_db=20.0, nan_count=1).passed is False
    assert verdict(tol, cosine=0.99, snr_db=20.0, top1_drop=1.0).passed  # exactly at the limit
    assert verdict(tol, cosine=0.99, snr_db=20.0, top1_drop=1.0 + 1e-10).passed  # within 1e-9
    assert not verdict(tol, cosine=0.99, snr_db=20.0, top1_drop=1.001).passed
    assert verdict(tol, cosine=0.99, snr_db=13.99).failed == ("SNR 14 dB < 14 dB",)
    no_top1 = Tolerance("x", 0.9, 10.0, None)
    v = verdict(no_top1, cosine=0.95, snr_db=20.0, top1_drop=50.0)
    assert v.passed and v.rule == "x: cosine >= 0.9 and SNR >= 10 dB and no NaN/Inf"


def test_verdict_json():
    tol = Tolerance("fp16", 0.999, 30.0, 0.5)
    v = verdict(tol, cosine=0.5, snr_db=40.0)
    assert v.to_json() == {"passed": False, "rule": tol.rule(), "failed": ["cosine 0.5 < 0.999"],
                           "tolerance": {"name": "fp16", "cosine_min": 0.999, "snr_db_min": 30.0,
                                         "top1_drop_max": 0.5}}
    assert M.Verdict(True, "r").to_json()["tolerance"] is None
    assert tol.rule(with_labels=True) == "fp16: cosine >= 0.999 and SNR >= 30 dB and no NaN/Inf and top-1 drop <= 0.5 pt"


def test_default_tolerances_and_lookup():
    assert M.tolerance_for("INT8") is M.DEFAULT_TOLERANCES["int8"]
    assert M.tolerance_for(None) is M.GENERIC_TOLERANCE and M.tolerance_for("weird") is M.GENERIC_TOLERANCE
    t = M.tolerance_for("fp16", {"cosine_min": 0.5})
    assert t.cosine_min == 0.5 and t.snr_db_min == 30.0 and t.name == "fp16"
    assert M.tolerance_for("fp16", {}) is M.DEFAULT_TOLERANCES["fp16"]
    table = {k: (t.cosine_min, t.snr_db_min, t.top1_drop_max) for k, t in M.DEFAULT_TOLERANCES.items()}
    assert table == {"fp32": (0.99999, 60.0, 0.0), "tf32": (0.9999, 35.0, 0.5), "fp16": (0.999, 30.0, 0.5),
                     "bf16": (0.995, 20.0, 1.0), "int8": (0.98, 14.0, 1.0), "fp8": (0.98, 14.0, 1.5)}
    assert all(k == t.name for k, t in M.DEFAULT_TOLERANCES.items())
    g = M.GENERIC_TOLERANCE
    assert (g.name, g.cosine_min, g.snr_db_min, g.top1_drop_max) == ("default", 0.999, 30.0, 0.5)


def test_json_number_policy():
    assert M.json_number(math.nan) is None and M.json_number(math.inf) == "inf"
    assert M.json_number(-math.inf) == "-inf" and M.json_number(1.5) == 1.5


def test_topk_on_unsigned_logits_orders_by_value():
    """uint8 logits (a quantized classifier's raw output): negating them in uint8 would wrap around."""
    ref = np.array([[1, 5, 3, 0]], np.uint8)
    assert M.topk_agreement(ref, ref.astype(np.float32), 1) == 1.0
    assert M.topk_agreement(ref.astype(np.float32), ref, 1) == 1.0
    assert M.topk_agreement(ref, ref, 2) == 1.0


def test_topk_ties_break_by_index_on_long_rows():
    """Ties are broken by class index (a stable sort), also past the 16 elements numpy sorts by insertion."""
    rng = np.random.default_rng(7)
    r = rng.integers(0, 4, size=(50, 64)).astype(np.float64)  # many ties
    v = r.copy()
    v[:, ::2] += 0.5  # even classes win their ties in x
    k = 5

    def top(a):  # the oracle: sort by (-value, index)
        return [sorted(range(a.shape[1]), key=lambda j: (-a[i, j], j))[:k] for i in range(a.shape[0])]

    want = np.mean([len(set(a) & set(b)) / k for a, b in zip(top(r), top(v))])
    assert M.topk_agreement(r, v, k) == pytest.approx(want)
    assert M.topk_overlap(r, r, k).tolist() == [1.0] * 50


def test_output_metrics_passes_rtol():
    assert M.output_metrics([1.0], [1.0005], atol=0.0, rtol=0.0)["allclose"] is False
    assert M.output_metrics([1.0], [1.0005], atol=0.0, rtol=1e-3)["allclose"] is True


def test_counts_on_non_float_and_bfloat16_arrays():
    import ml_dtypes

    assert M.nan_count(np.array(["a", "b"])) == 0 and M.inf_count(np.array(["a"])) == 0  # no isnan on strings
    assert M.nan_count(np.array([True, False])) == 0
    b = np.array([np.nan, 1.0, np.inf, -np.inf], dtype=ml_dtypes.bfloat16)  # numpy kind "V"
    assert M.nan_count(b) == 1 and M.inf_count(b) == 2


def test_accumulator_counts_nans_over_batches():
    a = ErrorAccumulator()
    a.update([1.0, 2.0], [np.nan, -np.inf])
    a.update([1.0, 2.0], [np.nan, np.inf])
    res = a.result()
    assert res["nan_count"] == 2 and res["inf_count"] == 2


def test_allclose_against_an_infinite_reference_is_false_like_numpy():
    assert M.allclose([np.inf, 1.0], [5.0, 1.0], atol=1e-3, rtol=1e-3) is False
    a = ErrorAccumulator(atol=1e-3, rtol=1e-3)
    a.update([np.inf, 1.0], [5.0, 1.0])
    assert a.result()["allclose"] is False


def test_accumulator_relative_error_uses_eps_for_zero_reference():
    a = ErrorAccumulator()
    a.update([0.0, 1.0], [1e-6, 1.0])  # all finite: the fast path
    assert a.result()["max_rel"] == pytest.approx(1e-6 / 1e-12)
    b = ErrorAccumulator()
    b.update([0.0, 1.0, np.nan], [1e-6, 1.0, 0.0])  # the general path agrees
    assert b.result()["max_rel"] == pytest.approx(1e-6 / 1e-12)


def test_cosine_is_clipped_to_its_range():
    assert M._cosine(2.0, 1.0, 1.0) == 1.0 and M._cosine(-2.0, 1.0, 1.0) == -1.0  # rounding can overshoot


def test_single_element_accumulator():
    a = ErrorAccumulator()
    a.update([2.0], [2.5])
    res = a.result()
    assert res["mean_abs"] == 0.5 and res["rmse"] == 0.5 and res["max_abs"] == 0.5
    assert res["err_p99"] == pytest.approx(0.5, rel=0.024) and res["err_p99"] > 0


def test_histogram_top_bins_are_not_capped_early():
    h = np.zeros(M._H_BINS + 2, np.int64)
    M._hist_add(h, np.array([9.6e11]))  # second-to-last bin below 1e12
    q = M._hist_quantile(h, 0.5)
    assert 9.6e11 <= q < 1e12


def test_top1_drop_limit_includes_its_tolerance():
    tol = Tolerance("t", 0.9, 10.0, 1.0)
    assert verdict(tol, cosine=0.99, snr_db=20.0, top1_drop=1.0 + 1e-9).passed


def test_accumulator_inf_in_x_fails_the_verdict():
    a = ErrorAccumulator(tolerance=Tolerance("t", 0.0, -100.0))
    a.update([1.0, 2.0], [1.0, np.inf])
    assert a.verdict().passed is False and a.verdict().failed == ("0 NaN / 1 Inf in the output",)
