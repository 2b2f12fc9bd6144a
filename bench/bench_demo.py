"""`workbench demo` end to end (digits sample, fp32/fp16/int8 on ONNX Runtime CPU, report + records) as a
subprocess: median wall time and peak RSS (goal: <= 60 s on 2 cores). No peer: no other tool runs this
flow (inspect → variants → builds → latency → per-layer → accuracy → HTML) in one command."""
from __future__ import annotations

import tempfile

from _util import PY, run_cmd


def run(quick: bool) -> list[dict]:
    repeat, warmup = (1, 0) if quick else (3, 1)
    with tempfile.TemporaryDirectory() as d:
        r = run_cmd([PY, "-m", "workbench.cli", "demo", "--out", d, "--no-progress"], repeat=repeat, warmup=warmup)
    notes = "batch 256 (demo default since #14), 200 timed iterations per variant, 20 profiled runs; includes Python start-up and imports"
    return [
        {"benchmark": "demo", "metric": "workbench demo wall time", "unit": "s", "ours": r["median"], "peer": None,
         "peer_name": None, "ratio": None, "goal": "<= 60 s", "met": r["median"] <= 60,
         "spread": f"{r['min']:.3g}–{r['max']:.3g}", "notes": notes},
        {"benchmark": "demo", "metric": "workbench demo peak RSS", "unit": "MiB", "ours": r["peak_rss"] / 2**20,
         "peer": None, "peer_name": None, "ratio": None, "goal": None, "met": None, "spread": None, "notes": ""},
    ]
