"""Latency measurement fidelity and per-layer coverage (ONNX Runtime CPU).

1. Fidelity: ``measure_latency`` p50 vs a bare ``for`` loop of ``session.run`` timed with
   ``time.perf_counter`` over the *same* session and the same prepared inputs (the peer). The two run
   in short alternating blocks (~0.25 s each, order flipped every round) to cancel drift from other
   processes; the row compares the p50 over all of each side's iterations, ``spread`` gives the
   min–max of the per-block ratios.
   Goal: ratio <= 1.03 (the workbench adds at most 3 % to p50). Models: sample digits CNN (batch 32)
   and the onnx wheel's light ResNet-50 (batch 1). Sessions use one intra-op thread so the 2-core
   machine's other load disturbs both sides less.
2. Coverage: Σ per-layer time (``profile_layers``, separate profiled run) / end-to-end mean latency
   of a latency run, same models. No peer; goal >= 0.9. ``notes`` gives Σ layers / the profiled run's
   own mean ``model_run`` time (kernel time vs framework time, free of drift between the two runs).
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def _models():
    return [("digits_cnn (batch 32)", ROOT / "sample_models" / "digits_cnn.onnx", 32),
            ("light ResNet-50 (batch 1)", LIGHT / "light_resnet50.onnx", 1)]


def _engine(path: Path, batch: int):
    from workbench.backends import get_backend
    from workbench.backends.base import BuildOptions
    from workbench.data import synthetic_inputs
    from workbench.model import load
    from workbench.variant import Variant

    m = load(path)
    eng = get_backend("onnxruntime").build(Variant.of(m), None, BuildOptions(threads=1, progress=False))
    return eng, synthetic_inputs(m, batch=batch)


def _bare_times(sess, feeds, n: int) -> list[float]:
    """The peer: the plainest loop a user would write. Per-iteration times in ms."""
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        sess.run(None, feeds)
        ts.append((time.perf_counter() - t0) * 1e3)
    return ts


def run(quick: bool) -> list[dict]:
    from workbench.measure.latency import measure_latency
    from workbench.measure.layers import coverage, profile_layers

    rounds = 4 if quick else 16
    rows = []
    for label, path, batch in _models():
        eng, feeds = _engine(path, batch)
        prepared = {k: np.ascontiguousarray(v) for k, v in feeds.items()}
        once = measure_latency(eng, feeds, warmup=5, iterations=5).stats["p50_ms"]
        n = max(5, min(100, int(250 / max(once, 1e-3))))  # ~0.25 s per block
        ours, bare, ratios = [], [], []
        for r in range(rounds):
            for side in ((0, 1) if r % 2 == 0 else (1, 0)):  # alternate the order too
                if side == 0:
                    t = measure_latency(eng, feeds, warmup=2, iterations=n).times_ms
                    ours.extend(t)
                else:
                    _bare_times(eng.session, prepared, 2)
                    t = _bare_times(eng.session, prepared, n)
                    bare.extend(t)
            ratios.append(float(np.median(ours[-n:]) / np.median(bare[-n:])))
        o, b = float(np.median(ours)), float(np.median(bare))
        ratio = o / b
        rows.append({"benchmark": "latency", "metric": f"p50 fidelity, {label}", "unit": "ms",
                     "ours": o, "peer": b, "peer_name": "bare perf_counter loop over the same session", "ratio": ratio,
                     "goal": "<= 1.03", "met": ratio <= 1.03,
                     "spread": f"{min(ratios):.3f}–{max(ratios):.3f} (per-block ratio)",
                     "notes": f"{rounds} alternated blocks × {n} iterations per side; p50 over all blocks"})

        covs, in_run = [], []
        for _ in range(1 if quick else 3):
            lat = measure_latency(eng, feeds, warmup=3, iterations=2 * n)
            layers = profile_layers(eng, feeds, iterations=n, warmup=2)
            c = coverage(layers, lat)
            covs.append(c.ratio)
            in_run.append(c.in_run)
        cov = statistics.median(covs)
        rows.append({"benchmark": "latency", "metric": f"per-layer coverage Σlayers/e2e, {label}", "unit": "ratio",
                     "ours": cov, "peer": None, "peer_name": None, "ratio": None, "goal": ">= 0.9",
                     "met": cov >= 0.9, "spread": f"{min(covs):.3f}–{max(covs):.3f}",
                     "notes": f"Σlayers / profiled run's own model_run: {statistics.median(in_run):.3f}; "
                              f"e2e = mean of a separate latency run"})
        eng.close()
    return rows


if __name__ == "__main__":  # pragma: no cover
    for row in run(quick=True):
        print(row)
