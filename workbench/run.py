"""Run a model once on a backend (ONNX Runtime CPU by default) and summarize its outputs.

``run_model(model, data=None, shapes=None, batch=None, seed=0)`` feeds synthetic inputs
(deterministic per seed) or the first batch of a ``.npz`` file / :class:`~workbench.data.NpzDataset`,
and returns a :class:`RunResult` with the outputs and per-output statistics.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from .data import NpzDataset, ShapeMap, first_batch_rows, synthetic_inputs
from .logs import captures_native_log
from .errors import DataError
from .model import ModelSource, load

__all__ = ["RunResult", "run_model", "output_stats"]


def output_stats(name: str, a: np.ndarray) -> dict:
    """``name, dtype, shape, min, max, mean, nan, inf`` of one array (stats None for non-numeric)."""
    row = {"name": name, "dtype": str(a.dtype), "shape": list(a.shape),
           "min": None, "max": None, "mean": None, "nan": 0, "inf": 0}
    if a.dtype.kind in "biuf" and a.size:
        x = a.astype(np.float64) if a.dtype.kind != "f" else a
        if x.dtype.kind == "f":
            row["nan"] = int(np.isnan(x).sum())
            row["inf"] = int(np.isinf(x).sum())
        finite = x[np.isfinite(x)] if x.dtype.kind == "f" else x
        if finite.size:
            row.update(min=float(finite.min()), max=float(finite.max()), mean=float(finite.mean(dtype=np.float64)))
    return row


@dataclass
class RunResult:
    """Outputs of one run plus where the inputs came from."""

    model: str
    backend: str
    inputs: dict[str, dict]  # name -> {dtype, shape}
    input_source: str  # "synthetic(seed=N)" or the .npz path
    outputs: dict[str, np.ndarray] = field(repr=False)

    @property
    def stats(self) -> list[dict]:
        return [output_stats(k, v) for k, v in self.outputs.items()]

    def to_json(self) -> dict:
        clean = lambda v: None if isinstance(v, float) and not math.isfinite(v) else v  # noqa: E731
        return {"model": self.model, "backend": self.backend, "input_source": self.input_source,
                "inputs": self.inputs, "outputs": [{k: clean(v) for k, v in s.items()} for s in self.stats]}

    def to_frame(self):
        """One row per output: ``output, dtype, shape, min, max, mean, nan, inf``."""
        import pandas as pd

        rows = [{"output": s["name"], **s} for s in self.stats]
        return pd.DataFrame(rows, columns=["output", "dtype", "shape", "min", "max", "mean", "nan", "inf"])

    def text(self) -> str:
        lines = [f"model   {self.model} on {self.backend}; inputs: {self.input_source}"]
        for k, v in self.inputs.items():
            lines.append(f"input   {k} {v['dtype']}{v['shape']}")
        for s in self.stats:
            if s["min"] is None:
                st = "no numeric stats"
            else:
                st = f"min {s['min']:.6g}  max {s['max']:.6g}  mean {s['mean']:.6g}  NaN {s['nan']}  Inf {s['inf']}"
            lines.append(f"output  {s['name']} {s['dtype']}{s['shape']}  {st}")
        return "\n".join(lines)


@captures_native_log
def run_model(model: ModelSource, *, data: "str | os.PathLike | NpzDataset | None" = None,
              shapes: ShapeMap | str | Mapping | None = None, batch: int | None = None, seed: int = 0,
              backend: str = "onnxruntime") -> RunResult:
    """Run ``model`` once and return its outputs with statistics.

    Inputs: the first batch (``batch`` samples, or the model's static batch) of ``data`` (a ``.npz``
    path, whose keys that are not inputs -- labels -- are ignored, or an :class:`NpzDataset`), else
    synthetic inputs from ``shapes``/``batch``/``seed``.

    Example::

        r = run_model("model.onnx", shapes="input:2x3x224x224", seed=1)
        r.to_frame()
    """
    from .backends import get_backend
    from .builds import build_engine

    m = load(model)
    if data is not None:
        ds = data if isinstance(data, NpzDataset) else NpzDataset(data, m, allow_extra=True,  # e.g. labels
                                                                      rows=first_batch_rows(m, batch))
        feeds = next(ds.batches(batch), None)
        if feeds is None:  # pragma: no cover - NpzDataset refuses empty data
            raise DataError("the data holds no complete batch")
        source = str(ds.path) if ds.path else "the given dataset"
    else:
        feeds = synthetic_inputs(m, shapes, seed=seed, batch=batch)
        source = f"synthetic(seed={seed})"
    be = get_backend(backend)
    _, engine = build_engine(m, "fp32", be, shapes=shapes, progress=False)
    try:
        outs = engine.run(feeds)
    finally:
        engine.close()
    return RunResult(model=m.name, backend=be.name, input_source=source,
                     inputs={k: {"dtype": str(v.dtype), "shape": list(v.shape)} for k, v in feeds.items()},
                     outputs=outs)
