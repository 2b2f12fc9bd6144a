"""Accuracy verdicts from stated tolerances on robust metrics, not elementwise rtol (issue #14 part 5)."""
from __future__ import annotations

import json

import numpy as np
import pytest

import workbench as wb
from workbench.compare import metrics
from workbench.compare.outputs import compare_outputs


def test_near_zero_reference_does_not_fail_a_good_fp16_output():
    """The MiniLM case: cosine 0.9999997 but max_rel 759 because some reference values are ~1e-7."""
    rng = np.random.default_rng(0)
    ref = rng.normal(size=10_000)
    ref[:50] = 1e-8  # near-zero reference values
    x = (ref + rng.normal(scale=2e-3, size=ref.shape)).astype(np.float16).astype(np.float64)
    acc = metrics.ErrorAccumulator(tolerance=metrics.tolerance_for("fp16"))
    acc.update(ref, x)
    r = acc.result()
    assert r["max_rel"] > 100 and r["allclose"] is False  # the old rule says "fail"
    assert r["cosine"] > 0.9999 and r["passed"] is True
    v = acc.verdict()
    assert v.passed and "cosine >= 0.999" in v.rule and "SNR >= 30 dB" in v.rule


def test_verdict_names_failed_clauses():
    tol = metrics.tolerance_for("int8")
    v = metrics.verdict(tol, cosine=0.767, snr_db=3.6)
    assert not v.passed
    assert v.failed == ("cosine 0.767 < 0.98", "SNR 3.6 dB < 14 dB")
    assert metrics.verdict(tol, cosine=0.99, snr_db=20.0, top1_drop=2.0).failed == ("top-1 drop 2 pt > 1 pt",)
    assert not metrics.verdict(tol, cosine=float("nan"), snr_db=float("nan")).passed
    assert not metrics.verdict(tol, cosine=1.0, snr_db=99, nan_count=1).passed
    assert metrics.tolerance_for("fp16", {"cosine_min": 0.9}).cosine_min == 0.9


def test_error_percentiles_from_bounded_histogram():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=200_000)
    d = rng.exponential(scale=1e-3, size=ref.shape)
    acc = metrics.ErrorAccumulator()
    for i in range(0, len(ref), 30_000):
        acc.update(ref[i:i + 30_000], ref[i:i + 30_000] + d[i:i + 30_000])
    r = acc.result()
    assert r["err_p99"] == pytest.approx(np.quantile(d, 0.99), rel=0.03)
    assert r["err_p999"] == pytest.approx(np.quantile(d, 0.999), rel=0.03)
    assert acc.hist.nbytes < 32_000  # bounded, whatever the data size


def test_comparison_shows_verdict_and_rule(sample):
    model = wb.load(sample("digits_cnn.onnx"))
    cmp = compare_outputs(model, ["fp16"], data=sample("digits_test.npz"), labels="label", limit=64, progress=False)
    s = cmp.summary()
    row = s.iloc[1]
    assert bool(row.passed) and row.rule.startswith("fp16: cosine >= 0.999") and "top-1 drop" in row.rule
    vt = cmp.verdicts()
    assert list(vt.columns) == ["variant", "precision", "passed", "rule", "why"] and bool(vt.passed.iloc[0])
    js = cmp.to_json()
    ver = js["variants"][cmp.variants[0]]["verdict"]
    assert ver["passed"] is True and ver["tolerance"]["cosine_min"] == 0.999
    json.dumps(js, allow_nan=False)
