"""`workbench inspect MODEL --json` against `polygraphy inspect model MODEL`, as subprocesses of the same
Python: median wall time and peak RSS on light ResNet-50 and DenseNet-121 (goal: ratio <= 1.0).

Two peers per model: plain `polygraphy inspect model` (the goal's peer: it prints IO and counts but runs no
shape inference and counts no FLOPs), and `polygraphy inspect model --shape-inference
--no-onnxruntime-shape-inference --show layers`, which does the work ours does (ONNX shape inference,
per-layer shapes). Our run includes shape inference, FLOPs/bytes per node and the content hash.
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

from _util import PY, run_cmd

ROOT = Path(__file__).resolve().parents[1]
POLYGRAPHY = Path(sys.executable).parent / "polygraphy"
MODELS = ["resnet50", "densenet121"]


def _light(name: str) -> Path:
    import onnx

    return Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / f"light_{name}.onnx"


def _interleaved(cmds: list[list[str]], repeat: int, warmup: int) -> list[dict]:
    """run_cmd for several commands, one run of each in turn, so machine load hits them alike."""
    for c in cmds:
        if warmup:
            run_cmd(c, repeat=warmup, warmup=0)
    runs: list[list[dict]] = [[] for _ in cmds]
    for _ in range(repeat):
        for i, c in enumerate(cmds):
            runs[i].append(run_cmd(c, repeat=1, warmup=0))
    return [{"median": statistics.median(r["median"] for r in rs), "min": min(r["min"] for r in rs),
             "max": max(r["max"] for r in rs), "peak_rss": max(r["peak_rss"] for r in rs)} for rs in runs]


def run(quick: bool) -> list[dict]:
    repeat, warmup = (3, 1) if quick else (9, 2)
    rows = []
    for name in MODELS:
        path = _light(name)
        if not path.exists():
            continue
        peers = [("polygraphy inspect model", []),
                 ("polygraphy inspect model --shape-inference (ONNX) --show layers",
                  ["--shape-inference", "--no-onnxruntime-shape-inference", "--show", "layers"])]
        ours, *measured = _interleaved(
            [[PY, "-m", "workbench.cli", "inspect", str(path), "--json"]]
            + [[PY, str(POLYGRAPHY), "inspect", "model", str(path), *extra] for _, extra in peers], repeat, warmup)
        for (peer_name, _), peer in zip(peers, measured):
            for metric, unit, key, scale in (("wall time", "s", "median", 1.0), ("peak RSS", "MiB", "peak_rss", 2**-20)):
                o, p = ours[key] * scale, peer[key] * scale
                spread = (f"ours {ours['min']:.3g}–{ours['max']:.3g}, peer {peer['min']:.3g}–{peer['max']:.3g}"
                          if key == "median" else None)
                rows.append({"benchmark": "inspect", "metric": f"inspect light {name} {metric}", "unit": unit,
                             "ours": o, "peer": p, "peer_name": peer_name, "ratio": o / p, "goal": "<= 1.0",
                             "met": o / p <= 1.0, "spread": spread,
                             "notes": f"`workbench inspect --json`, {repeat} runs after {warmup} warm-up, "
                                      "interleaved with the peers"})
    return rows


if __name__ == "__main__":
    import json

    for r in run(quick="--quick" in sys.argv):
        print(json.dumps(r))
