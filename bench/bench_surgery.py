"""Import → edit (fold constants + cleanup) → export: `workbench surgery MODEL --fold-constants --cleanup`
against `polygraphy surgeon sanitize MODEL --fold-constants`, both as subprocesses of the same Python
(interpreter start and imports included on both sides), on light DenseNet-121 (1,746 nodes) and a
generated 20k-node graph (5,000 blocks of const-Mul → Add → Relu plus a dead Neg branch).

Ours runs GraphSurgeon's fold_constants (toposort first) and cleanup, and by default validates each
edit (onnx.checker full check, strict shape inference, an ONNX Runtime session): the `--no-validate`
row shows the edit cost alone. Polygraphy's sanitize runs ONNX shape inference and repeated folding
passes and does not build an ORT session. A third row times our edits in-process
(`wb.edit.fold_constants` + `cleanup` + serialization, no validation; no peer).

Each row's notes carry CPU seconds (user+system of the child / of this process) and the load average:
on a shared machine wall time follows the load, so code changes are judged on CPU seconds.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from _util import PY, run_cmd, timeit

POLYGRAPHY = Path(sys.executable).parent / "polygraphy"


def _light(name: str) -> Path:
    import onnx

    return Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / f"light_{name}.onnx"


def synthetic_chain(n_nodes: int, path: Path) -> Path:
    """A chain of ``n_nodes // 4`` blocks: Mul(const, const) → Add → Relu, and a dead Neg per block."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, cur = [], [], "x"
    for i in range(n_nodes // 4):
        inits.append(numpy_helper.from_array(np.full((1, 64), 0.001 * (i % 7), np.float32), f"a{i}"))
        inits.append(numpy_helper.from_array(np.ones((1, 64), np.float32), f"b{i}"))
        nodes += [helper.make_node("Mul", [f"a{i}", f"b{i}"], [f"c{i}"], name=f"blk{i}/const_mul"),
                  helper.make_node("Add", [cur, f"c{i}"], [f"s{i}"], name=f"blk{i}/add"),
                  helper.make_node("Relu", [f"s{i}"], [f"r{i}"], name=f"blk{i}/relu"),
                  helper.make_node("Neg", [f"r{i}"], [f"dead{i}"], name=f"blk{i}/dead")]
        cur = f"r{i}"
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
                          [helper.make_tensor_value_info(cur, TensorProto.FLOAT, ["N", 64])], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def _load() -> str:
    """The 1-minute load average: wall times inflate with it (CPU seconds hardly do)."""
    return f"loadavg {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


def _nodes(path: Path) -> int:
    import onnx

    return len(onnx.load(str(path), load_external_data=False).graph.node)


def _in_process(path: Path):
    """A no-argument function doing our edit pipeline once, in this process."""
    import onnxruntime
    from onnx_graphsurgeon.logger import G_LOGGER

    import workbench as wb
    import workbench.edit as ed

    G_LOGGER.severity = G_LOGGER.ERROR  # as the CLI does
    onnxruntime.set_default_logger_severity(3)

    def once():
        ed.cleanup(ed.fold_constants(wb.load(path))).to_bytes()

    return once


def run(quick: bool) -> list[dict]:
    repeat, warmup = (1, 0) if quick else (3, 1)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-surgery-") as tmp:
        tmp = Path(tmp)
        models = [("light DenseNet-121", _light("densenet121")),
                  ("synthetic 20k-node chain", synthetic_chain(20000, tmp / "chain20k.onnx"))]
        for label, path in models:
            if not path.exists():
                continue
            before = _nodes(path)
            ours_out, plain_out, peer_out = tmp / "ours.onnx", tmp / "ours_nv.onnx", tmp / "peer.onnx"
            peer = run_cmd([PY, str(POLYGRAPHY), "surgeon", "sanitize", str(path), "--fold-constants",
                            "-o", str(peer_out), "--silent"], repeat=repeat, warmup=warmup)
            peer_nodes = _nodes(peer_out)
            for variant, extra, out in (("validated", [], ours_out), ("--no-validate", ["--no-validate"], plain_out)):
                ours = run_cmd([PY, "-m", "workbench.cli", "surgery", str(path), "--fold-constants", "--cleanup",
                                *extra, "--out", str(out)], repeat=repeat, warmup=warmup)
                o, p = ours["median"], peer["median"]
                rows.append({
                    "benchmark": "surgery", "metric": f"fold+cleanup {label} wall time ({variant})", "unit": "s",
                    "ours": o, "peer": p, "peer_name": "polygraphy surgeon sanitize --fold-constants",
                    "ratio": o / p, "goal": "<= 1.0", "met": o / p <= 1.0,
                    "spread": f"ours {ours['min']:.3g}–{ours['max']:.3g}, peer {peer['min']:.3g}–{peer['max']:.3g}",
                    "notes": (f"subprocesses, {repeat} runs after {warmup} warm-up; nodes {before} → ours "
                              f"{_nodes(out)}, polygraphy {peer_nodes}; peak RSS ours {ours['peak_rss'] / 2**20:.0f} MiB, "
                              f"peer {peer['peak_rss'] / 2**20:.0f} MiB; CPU s ours {ours['cpu']:.2f}, peer "
                              f"{peer['cpu']:.2f} (CPU ratio {ours['cpu'] / peer['cpu']:.2f}); {_load()}"),
                })
            t = timeit(_in_process(path), repeat=repeat, warmup=warmup)
            rows.append({
                "benchmark": "surgery", "metric": f"fold+cleanup {label} in-process (no validation)", "unit": "s",
                "ours": t["median"], "peer": None, "peer_name": None, "ratio": None, "goal": None, "met": None,
                "spread": f"{t['min']:.3g}–{t['max']:.3g}",
                "notes": (f"wb.load → wb.edit.fold_constants → wb.edit.cleanup → to_bytes in one process; "
                          f"CPU {t['cpu']:.2f} s; {_load()}"),
            })
    return rows


if __name__ == "__main__":
    import json

    for r in run(quick="--quick" in sys.argv):
        print(json.dumps(r))
