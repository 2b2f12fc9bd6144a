"""`workbench demo` end to end (digits sample, fp32/fp16/int8 on ONNX Runtime CPU, report + records) as a
subprocess: median wall time and peak RSS (goal: <= 60 s on 2 cores). No peer: no other tool runs this
flow (inspect → variants → builds → latency → per-layer → accuracy → HTML) in one command.

Also what the demo itself reports, read back from each run's records: the int8 speedup over fp32 from the demo's
own latency stage (5 interleaved blocks; its range over the blocks and the verdict), and the top-1 of each
variant on the 450 held-out digits. Issue #14: `make demo` must show a real int8 speedup on a 2-core CPU
(goal here: >= 1.5x with the verdict "faster", i.e. every block faster, in every run) at <= 1 point top-1 drop."""
from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from _util import PY, run_cmd

GOAL_SPEEDUP = 1.5


def _demo_rows(out: Path):
    from workbench.flow import FlowResult
    from workbench.report import records_dir_for

    s = FlowResult.load(records_dir_for(out / "report.html")).summary()
    return {r["precision"]: r for r in s.to_dict("records") if r["backend"] == "onnxruntime"}


def run(quick: bool) -> list[dict]:
    import os

    load0 = os.getloadavg()[0]
    repeat, warmup = (1, 0) if quick else (3, 1)
    runs: list[dict] = []
    with tempfile.TemporaryDirectory() as d:
        out = Path(d)

        def after_each():
            runs.append(_demo_rows(out))

        r = run_cmd([PY, "-m", "workbench.cli", "demo", "--out", d, "--no-progress"], repeat=repeat, warmup=warmup,
                    after=after_each)
    from workbench.commands.demo import DEMO_BATCH, FILES

    notes = (f"{FILES[0]}, batch {DEMO_BATCH}, 200 timed iterations per variant in 5 interleaved blocks, 20 profiled "
             "runs; includes Python start-up and imports")
    rows = [
        {"benchmark": "demo", "metric": "workbench demo wall time", "unit": "s", "ours": r["median"], "peer": None,
         "peer_name": None, "ratio": None, "goal": "<= 60 s", "met": r["median"] <= 60,
         "spread": f"{r['min']:.3g}–{r['max']:.3g}", "notes": notes},
        {"benchmark": "demo", "metric": "workbench demo peak RSS", "unit": "MiB", "ours": r["peak_rss"] / 2**20,
         "peer": None, "peer_name": None, "ratio": None, "goal": None, "met": None, "spread": None, "notes": ""},
    ]
    for prec in ("int8", "fp16"):
        sp = [x[prec]["speedup"] for x in runs]
        lo = [x[prec]["speedup_lo"] for x in runs]
        hi = [x[prec]["speedup_hi"] for x in runs]
        verdicts = [x[prec]["speed"] for x in runs]
        goal = GOAL_SPEEDUP if prec == "int8" else None
        rows.append({
            "benchmark": "demo", "metric": f"demo's own {prec} speedup vs fp32 (its latency stage, ORT CPU)",
            "unit": "x", "ours": statistics.median(sp), "peer": None, "peer_name": "fp32 in the same blocks",
            "ratio": None, "goal": f">= {goal:g}x, verdict 'faster' in every run" if goal else None,
            "met": (min(sp) >= goal and all(v == "faster" for v in verdicts)) if goal else None,
            "spread": f"{min(sp):.2f}–{max(sp):.2f}",
            "notes": ("per run: " + "; ".join(f"{s:.2f}x (blocks {a:.2f}–{b:.2f}, {v})"
                                               for s, a, b, v in zip(sp, lo, hi, verdicts))
                      + f"; loadavg {load0:.1f} on {os.cpu_count()} cores at the start (other jobs slow the two-thread"
                        " fp32 more than int8 and inflate the ratio; docs/benchmarks-quiet.md has it on an idle"
                        " 2-core slice)")})
    for prec in ("int8", "fp16"):
        drop = [(x["fp32"]["top1"] - x[prec]["top1"]) * 100 for x in runs]
        rows.append({
            "benchmark": "demo", "metric": f"demo's {prec} top-1 drop vs fp32 (450 held-out digits)", "unit": "points",
            "ours": max(drop), "peer": None, "peer_name": None, "ratio": None,
            "goal": "<= 1 point" if prec == "int8" else None, "met": (max(drop) <= 1.0) if prec == "int8" else None,
            "spread": None, "notes": f"fp32 top-1 {runs[-1]['fp32']['top1'] * 100:.2f} %"})
    return rows
