"""One layerwise comparison in its own process, so bench_accuracy can read its peak RSS.

    python _layerwise_child.py ours|polygraphy REF.onnx VARIANT.onnx DATA.npz SAMPLES BATCH [BUDGET]

Prints one JSON line: seconds (the comparison itself, imports excluded), cpu_seconds (user+sys of the
whole process), tensors compared. Data: the first SAMPLES samples of every array in DATA.npz, fed in
batches of BATCH (the same feeds for both tools).
"""
from __future__ import annotations

import json
import resource
import sys
import time

import numpy as np


def batches(path: str, samples: int, batch: int) -> list[dict]:
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k][:samples].astype(np.float32) for k in z.files if z[k].dtype.kind == "f"}
    n = min(len(v) for v in arrays.values())
    return [{k: v[s:s + batch] for k, v in arrays.items()} for s in range(0, n, batch)]


def ours(ref: str, var: str, feeds: list[dict], budget: str | None) -> int:
    import workbench as wb
    from workbench.compare import layerwise
    from workbench.data import input_specs

    m = wb.load(ref)
    v = wb.Variant(model=m.derive(wb.load(var).proto_with_data(), name=m.name), precision="custom")
    feeds = [{k: f[k] for k in (s.name for s in input_specs(m))} for f in feeds]
    kw = {} if budget is None else {"memory_budget": budget}
    df = layerwise(m, v, data=feeds, limit=None, progress=False, **kw)
    return int(df.attrs["counts"]["compared"])


def polygraphy(ref: str, var: str, feeds: list[dict]) -> int:
    import onnx
    from polygraphy import constants
    from polygraphy.backend.onnx import BytesFromOnnx, ModifyOutputs
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
    from polygraphy.comparator import Comparator, CompareFunc
    from polygraphy.logger import G_LOGGER

    G_LOGGER.module_severity = G_LOGGER.CRITICAL

    def runner(path, name):
        return OnnxrtRunner(SessionFromOnnx(BytesFromOnnx(ModifyOutputs(onnx.load(path), outputs=constants.MARK_ALL))),
                            name=name)

    names = {i.name for i in onnx.load(ref, load_external_data=False).graph.input}
    feeds = [{k: v for k, v in f.items() if k in names} for f in feeds]
    results = Comparator.run([runner(ref, "ref"), runner(var, "var")], data_loader=feeds)
    acc = Comparator.compare_accuracy(results, compare_func=CompareFunc.simple(atol=1e-3, rtol=1e-3))
    try:  # recent Polygraphy: AccuracyResults (a list, one per compare function)
        return len(acc.output_names())
    except AttributeError:  # older: one AccuracyResult {(runner, runner): [per-iteration {output: result}]}
        return len(next(iter(acc.values()))[0]) if acc else 0


def main() -> None:
    tool, ref, var, data, samples, batch = sys.argv[1:7]
    budget = sys.argv[7] if len(sys.argv) > 7 else None
    feeds = batches(data, int(samples), int(batch))
    t0 = time.perf_counter()
    n = ours(ref, var, feeds, budget) if tool == "ours" else polygraphy(ref, var, feeds)
    dt = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"seconds": dt, "cpu_seconds": ru.ru_utime + ru.ru_stime, "tensors": n}))


if __name__ == "__main__":
    main()
