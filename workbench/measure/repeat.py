"""Latency of several engines in interleaved repeated blocks, and an honest "faster / slower / within
noise" verdict.

    from workbench.measure.repeat import measure_blocks, speed_verdicts
    results = measure_blocks([(eng32, feeds), (eng8, feeds)], blocks=5, iterations=100)
    df = blocks_frame(results)          # latency_frame columns + blocks, block_p50_ms, p50_lo_ms, p50_hi_ms
    speed_verdicts(df)                  # speedup vs fp32, its range over blocks, verdict

One long run per variant measures each variant at a different time; on a shared or throttling machine
the load changes between them and the conclusion can flip from run to run. Here every variant runs
``blocks`` times, in turns (A B C A B C ...), ``iterations / blocks`` timed runs each time. A variant's
p50 is over all its runs; its spread is the range of its per-block medians. The speedup against fp32
is computed per block (the two ran seconds apart, under the same load) and its range over blocks is
reported: when the range contains 1 (or the speedup is within :data:`NOISE_FLOOR` of 1) the verdict
is "within noise" — no claim either way.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from .latency import LatencyResult, latency_frame, latency_stats, measure_latency

#: Speedups closer to 1 than this are "within noise" even when every block agrees (a 2 % difference is
#: not something to act on from a CPU measurement).
NOISE_FLOOR = 0.03
#: Default number of interleaved blocks.
DEFAULT_BLOCKS = 5


def measure_blocks(runs: Sequence[tuple[Any, dict]], *, blocks: int = DEFAULT_BLOCKS, iterations: int = 100,
                   warmup: int = 10, progress: bool = False) -> list[tuple[LatencyResult | None, Any]]:
    """Time each ``(engine, feeds)`` in ``blocks`` interleaved blocks of ``ceil(iterations / blocks)``
    runs (``warmup`` untimed runs before each engine's first block, 2 before later blocks).

    Returns one ``(LatencyResult over all runs, per-block p50 list)`` per engine, in order; an engine
    whose run raised a :class:`~workbench.errors.WorkbenchError` gives ``(None, that error)`` and is
    left out of the later blocks."""
    from ..errors import WorkbenchError

    blocks = max(1, int(blocks))
    per = max(1, math.ceil(iterations / blocks))
    state: list[dict] = [{"first": None, "times": [], "medians": [], "error": None} for _ in runs]
    bar = _bar(blocks * len(runs), progress)
    try:
        for b in range(blocks):
            for k, (eng, feeds) in enumerate(runs):
                st = state[k]
                if st["error"] is None:
                    try:
                        r = measure_latency(eng, feeds, warmup=warmup if b == 0 else min(2, warmup), iterations=per)
                    except WorkbenchError as e:
                        st["error"] = e
                    else:
                        st["first"] = st["first"] or r
                        st["times"].extend(r.times_ms)
                        st["medians"].append(float(np.median(r.times_ms)))
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    results: list = []
    for st in state:
        if st["error"] is not None:
            results.append((None, st["error"]))
            continue
        first = st["first"]
        first.times_ms = st["times"]
        first.requested_iterations = per * blocks
        first.stats = latency_stats(st["times"], first.batch)
        results.append((first, st["medians"]))
    return results


def _bar(total: int, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a core dependency
        return None
    return tqdm(total=total, desc="latency blocks", unit="block", leave=True)


def blocks_frame(results: Sequence[tuple[LatencyResult, list[float]]]):
    """:func:`~workbench.measure.latency.latency_frame` of the results plus ``blocks``, ``block_p50_ms``
    (list), ``p50_lo_ms`` / ``p50_hi_ms`` (min / max of the block medians)."""
    results = [(r, m) for r, m in results if r is not None]
    df = latency_frame([r for r, _ in results])
    df["blocks"] = [len(m) for _, m in results]
    df["block_p50_ms"] = [list(m) for _, m in results]
    df["p50_lo_ms"] = [min(m) for _, m in results]
    df["p50_hi_ms"] = [max(m) for _, m in results]
    return df


def _verdict(speedup: float, lo: float, hi: float, blocks: int) -> str:
    if not (speedup == speedup):
        return ""
    if abs(speedup - 1.0) <= NOISE_FLOOR or (blocks > 1 and lo <= 1.0 <= hi):
        return "within noise"
    if blocks < 2:
        return "faster (one block: no spread)" if speedup > 1 else "slower (one block: no spread)"
    return "faster" if speedup > 1 else "slower"


def speed_verdicts(latency) -> "Any":
    """One row per latency row: ``variant, backend, precision, speedup`` (the backend's fp32 p50 / this
    p50), ``speedup_lo`` / ``speedup_hi`` (min / max over blocks of the per-block ratio), ``verdict``
    ("faster", "slower", "within noise", "reference", or "" without an fp32 row)."""
    import pandas as pd

    cols = ["variant", "backend", "precision", "speedup", "speedup_lo", "speedup_hi", "verdict"]
    if latency is None or latency.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for r in latency.to_dict("records"):
        ref = latency[(latency.backend == r["backend"]) & (latency.precision == "fp32")]
        row = {"variant": r["variant"], "backend": r["backend"], "precision": r["precision"], "speedup": math.nan,
               "speedup_lo": math.nan, "speedup_hi": math.nan, "verdict": ""}
        if not ref.empty and r["p50_ms"] and r["p50_ms"] > 0:
            rr = ref.iloc[0]
            row["speedup"] = float(rr["p50_ms"]) / float(r["p50_ms"])
            mine, theirs = _blocks(r), _blocks(rr)
            if mine and theirs and len(mine) == len(theirs):
                ratios = [a / b for a, b in zip(theirs, mine) if b > 0]
                row["speedup_lo"], row["speedup_hi"] = min(ratios), max(ratios)
            else:
                row["speedup_lo"] = row["speedup_hi"] = row["speedup"]
            if rr["variant"] == r["variant"]:
                row["verdict"] = "reference"
            else:
                row["verdict"] = _verdict(row["speedup"], row["speedup_lo"], row["speedup_hi"], len(mine or []))
        rows.append(row)
    return pd.DataFrame(rows, columns=cols)


def _blocks(row) -> list[float]:
    v = row.get("block_p50_ms") if hasattr(row, "get") else None
    if isinstance(v, (list, tuple, np.ndarray)) and len(v):
        return [float(x) for x in v]
    return []
