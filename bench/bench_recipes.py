"""Recipe and edit scaling on large unsorted graphs: the fp16 recipe and fold+cleanup on reversed chains of
2k / 8k / 32k nodes (nodes listed back to front, so every sort does real work).

* ``fp16 recipe``: ``make_variant(model, "fp16", ort_check=False)`` (conversion, repair, strict checker and
  shape inference, round-trip cleanup; the ONNX Runtime session check is ORT's own cost and left out).
  Peer: onnxconverter-common's ``convert_float_to_float16`` alone, as shipped (its ``sort_topology`` is
  quadratic); run at 2k and 8k only (32k would take ~10 min).
* ``fold+cleanup``: ``wb.edit.fold_constants`` then ``wb.edit.cleanup`` in-process (GraphSurgeon, sorted
  on import and export by ``workbench.edit.topo``).
* ``growth``: CPU time(32k) / CPU time(2k) / 16 — 1.0 is linear. CPU seconds (``time.process_time``,
  all threads), not wall time: the sizes run minutes apart, and on a shared machine the load (hence
  the wall time) changes in between; the wall-time growth is in the row's notes.
"""
from __future__ import annotations

import os
import time

from _util import timeit


def _reversed_chain(n: int):
    from workbench.synthetic import chain_model

    p = chain_model(n)
    nodes = list(p.graph.node)[::-1]
    del p.graph.node[:]
    p.graph.node.extend(nodes)
    return p


def _fp16(proto):
    import workbench as wb
    from workbench.precision import make_variant

    m = wb.load(proto)
    return lambda: make_variant(m, "fp16", ort_check=False, progress=False)


def _peer(proto):
    import onnx
    from onnxconverter_common import float16

    def go():
        p = onnx.ModelProto()
        p.CopyFrom(proto)
        float16.convert_float_to_float16(p, keep_io_types=True)
    return go


def _fold(proto):
    import workbench as wb
    import workbench.edit as E

    m = wb.load(proto)
    return lambda: E.cleanup(E.fold_constants(m))


def run(quick: bool) -> list[dict]:
    sizes = (2000,) if quick else (2000, 8000, 32000)
    repeat, warmup = (1, 0) if quick else (3, 1)
    rows: list[dict] = []
    times: dict[tuple[str, int], float] = {}
    cpus: dict[tuple[str, int], float] = {}
    for n in sizes:
        proto = _reversed_chain(n)
        for what, make in (("fp16 recipe", _fp16), ("fold+cleanup", _fold)):
            r = timeit(make(proto), repeat=repeat if n < 32000 else 1, warmup=warmup if n < 32000 else 0)
            times[(what, n)] = r["median"]
            cpus[(what, n)] = r["cpu"]
            peer = None
            if what == "fp16 recipe" and n <= 8000:
                t0 = time.perf_counter()
                _peer(proto)()
                peer = time.perf_counter() - t0
            rows.append({
                "benchmark": "recipes", "metric": f"{what}, reversed {n // 1000}k-node chain", "unit": "s",
                "ours": r["median"], "peer": peer,
                "peer_name": "onnxconverter-common convert_float_to_float16 (as shipped)" if peer else None,
                "ratio": (r["median"] / peer) if peer else None, "goal": "<= 1.0" if peer else None,
                "met": (r["median"] <= peer) if peer else None,
                "spread": f"{r['min']:.3g}–{r['max']:.3g}",
                "notes": ("in-process; ours includes strict validation" if what == "fp16 recipe" else "in-process")
                + ("; peer 1 run" if peer else "") + f"; CPU {r['cpu']:.2f} s; loadavg {os.getloadavg()[0]:.1f}",
            })
    if not quick:
        for what in ("fp16 recipe", "fold+cleanup"):
            g = cpus[(what, 32000)] / cpus[(what, 2000)] / 16.0
            wall_g = times[(what, 32000)] / times[(what, 2000)] / 16.0
            rows.append({"benchmark": "recipes", "metric": f"{what} growth 2k→32k (CPU-time ratio / node ratio)",
                         "unit": "x", "ours": g, "peer": None, "peer_name": None, "ratio": None,
                         "goal": "<= 2 (near linear)", "met": g <= 2.0, "spread": "",
                         "notes": (f"CPU {cpus[(what, 2000)]:.3g} s → {cpus[(what, 32000)]:.3g} s for 16x the nodes; "
                                   f"wall {times[(what, 2000)]:.3g} s → {times[(what, 32000)]:.3g} s "
                                   f"(wall growth {wall_g:.2f}, load-dependent)")})
    return rows


if __name__ == "__main__":
    import sys
    for row in run("--quick" in sys.argv):
        print(row)
