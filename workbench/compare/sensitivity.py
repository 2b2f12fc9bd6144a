"""Sensitivity → mixed precision: find the nodes to keep in FP32 so a low-precision variant meets a target.

Algorithm (:func:`propose_mixed_precision`):

1. Build the full low-precision variant and measure the target metric against the FP32 reference
   (step 0). If it already meets the target, the keep list is empty.
2. Candidates are the original nodes that the recipe lowered: nodes fed by a ``DequantizeLinear``
   (int8/fp8) or computing in fp16/bf16 (fp16/bf16), restricted to ``candidates`` when given.
3. Rank candidates by the error each one *adds* (``local_noise`` from :func:`layerwise`: its output's
   relative error energy ``sum d^2 / sum ref^2`` minus the largest among its inputs), plus the error
   added by the non-candidate nodes right after it (:func:`attribute_noise`: the Q/DQ that ONNX
   Runtime puts on a Conv's output shows up as error of the following Relu).
   - ``greedy``: each step keeps the ``step_size`` worst remaining candidates, rebuilds the variant with
     ``make_variant(..., keep_nodes=keep)``, re-measures, and re-ranks on the new variant (layerwise
     again), until the target is met or ``max_steps`` is spent.
   - ``bisect``: ranks once, checks that keeping every candidate meets the target, then bisects the
     smallest prefix of the ranking that meets it (assumes more kept nodes never hurt).
4. Verify: the chosen variant is compared again on the *whole* dataset (the search may use a subset,
   ``search_limit``), and its latency is measured next to FP32 and the full low-precision variant with
   :func:`workbench.measure.latency.measure_latency`.
"""
from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import onnx
import pandas as pd

from ..errors import UsageError
from ..logs import captures_native_log
from ..model import Model, load
from ..variant import Variant
from .layerwise import layerwise, node_label
from .metrics import json_number
from ..data import head_batches, resolve_data
from .outputs import Comparison, build_variant_engine, compare_engines

_OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}
#: target metric → how it is read from a comparison of one variant (see :meth:`Target.value_of`)
TARGET_METRICS = {
    "top1_drop": "points of top-1 accuracy lost vs the FP32 reference (needs labels)",
    "top1": "top-1 accuracy of the variant (needs labels)",
    "top1_agreement": "fraction of samples whose argmax equals the reference's",
    "cosine": "minimum cosine similarity over outputs",
    "snr_db": "minimum SNR (dB) over outputs",
    "max_abs": "maximum absolute error over outputs",
    "rmse": "maximum RMSE over outputs",
}

#: Metrics with a bounded range: a target outside it can never be met (a typo such as cosine>=2).
_BOUNDS = {"cosine": (-1.0, 1.0), "top1": (0.0, 1.0), "top1_agreement": (0.0, 1.0)}


@dataclass(frozen=True)
class Target:
    """``metric op value``, e.g. ``Target.parse("top1_drop<=0.5")`` or ``"cosine>=0.999"``."""

    metric: str
    op: str
    value: float

    @classmethod
    def parse(cls, spec: "str | Target | dict | tuple") -> "Target":
        if isinstance(spec, Target):
            t = spec
        elif isinstance(spec, dict):
            t = cls(str(spec["metric"]), str(spec.get("op", ">=")), float(spec["value"]))
        elif isinstance(spec, tuple) and len(spec) == 3:
            t = cls(str(spec[0]), str(spec[1]), float(spec[2]))
        elif isinstance(spec, str):
            m = re.fullmatch(r"\s*([a-z0-9_]+)\s*(<=|>=|<|>)\s*([-+0-9.eE]+|inf)\s*", spec)
            if not m:
                raise UsageError(f"bad target {spec!r}: write METRIC OP VALUE, e.g. top1_drop<=0.5 or cosine>=0.999")
            t = cls(m.group(1), m.group(2), float(m.group(3)))
        else:
            raise UsageError(f"target must be a string like 'cosine>=0.999', not {type(spec).__name__}")
        if t.metric not in TARGET_METRICS:
            raise UsageError(f"unknown target metric {t.metric!r}; choose from {', '.join(TARGET_METRICS)}")
        if t.op not in _OPS:
            raise UsageError(f"unknown target operator {t.op!r}; use <=, >=, < or >")
        lo, hi = _BOUNDS.get(t.metric, (-math.inf, math.inf))
        if not lo <= t.value <= hi:
            raise UsageError(f"target {t.metric}{t.op}{t.value:g} cannot be met: {t.metric} lies in [{lo:g}, {hi:g}]",
                             hint="top1 and top1_agreement are fractions, e.g. top1>=0.98")
        return t

    @property
    def needs_labels(self) -> bool:
        return self.metric in ("top1_drop", "top1")

    def met(self, value: float) -> bool:
        return bool(not (isinstance(value, float) and math.isnan(value)) and _OPS[self.op](value, self.value))

    def value_of(self, cmp: Comparison, variant: str) -> float:
        m = cmp.metrics[cmp.metrics.variant == variant]
        col = lambda k: m[m.metric == k]["value"].astype(float)  # noqa: E731
        if self.metric == "top1_drop":
            return 100.0 * (float(cmp.value(cmp.reference, "top1")) - float(col("top1").iloc[0]))
        if self.metric in ("top1", "top1_agreement"):
            return float(col(self.metric).iloc[0])
        if self.metric in ("cosine", "snr_db"):
            return float(col(self.metric).min())
        return float(col(self.metric).max())

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"


@dataclass
class MixedPrecisionResult:
    """What :func:`propose_mixed_precision` found.

    ``keep_nodes``: nodes kept in FP32; ``steps``: DataFrame ``step, kept_onnx_nodes, n_kept, added_onnx_nodes, metric, value,
    met``; ``variant``: the mixed variant; ``verified_value`` / ``met``: the target metric re-measured on
    the whole dataset; ``baseline_value``: the full low-precision variant's value; ``latency``: DataFrame
    (roles fp32, low, mixed; measure_latency rows, median round of 3 interleaved rounds); ``speed_cost``:
    mixed p50 / full-low p50.
    """

    precision: str
    target: Target
    keep_nodes: list[str]
    steps: pd.DataFrame
    variant: Variant
    baseline_value: float
    verified_value: float
    met: bool
    comparison: Comparison
    latency: pd.DataFrame | None = None
    candidates: list[str] = field(default_factory=list)

    @property
    def speed_cost(self) -> float | None:
        """p50 latency of the mixed variant divided by the full low-precision variant's (>1 = slower)."""
        if self.latency is None or self.latency.empty:
            return None
        p = dict(zip(self.latency["role"], self.latency["p50_ms"]))
        return float(p["mixed"] / p["low"]) if p.get("low") else None

    def to_json(self) -> dict:
        steps = self.steps.copy()
        return {"precision": self.precision, "target": str(self.target), "keep_nodes": self.keep_nodes,
                "baseline_value": json_number(self.baseline_value), "verified_value": json_number(self.verified_value),
                "met": self.met, "variant": self.variant.name, "candidates": self.candidates,
                "steps": [{k: json_number(v) for k, v in r.items()} for r in steps.to_dict(orient="records")],
                "latency": None if self.latency is None else
                [{k: json_number(v) for k, v in r.items()} for r in self.latency.to_dict(orient="records")],
                "speed_cost": json_number(self.speed_cost)}

    def __repr__(self) -> str:
        return (f"<MixedPrecisionResult {self.precision} {self.target}: keep {self.keep_nodes} → "
                f"{self.target.metric}={self.verified_value:.6g} met={self.met}>")


def lowered_nodes(original: Model, variant: Variant) -> list[str]:
    """Original node names (topological order) that the recipe lowered and a keep list can restore:
    nodes reading a ``DequantizeLinear`` of a constant weight (int8/fp8: Conv, Gemm, MatMul, ...), or
    producing a float16/bfloat16 tensor (fp16/bf16)."""
    vp = variant.model.proto_with_data()
    vg = vp.graph
    consts = {i.name for i in vg.initializer} | {o for n in vg.node if n.op_type == "Constant" for o in n.output}
    weight_dq = {n.output[0] for n in vg.node if n.op_type == "DequantizeLinear" and n.input[0] in consts}
    low_types = {onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}
    try:
        inferred = onnx.shape_inference.infer_shapes(vp).graph
        types = {vi.name: vi.type.tensor_type.elem_type for vi in inferred.value_info}
    except Exception:  # noqa: BLE001
        types = {}
    lowered = set()
    for n in vg.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear", "Cast") or not n.name:
            continue
        if any(i in weight_dq for i in n.input) or any(types.get(o) in low_types for o in n.output):
            lowered.add(n.name)
    return [n.name for n in original.graph.node if n.name in lowered]


def attribute_noise(original: Model, frame: pd.DataFrame, candidates: Sequence[str]) -> dict[str, float]:
    """Score of each candidate: its own ``local_noise`` plus that of the non-candidate nodes it feeds
    (transitively, through their first input). In Q/DQ graphs the quantization of a Conv's output shows up
    as error added by the Relu after it; keeping the Conv removes that Q/DQ, so the error is the Conv's."""
    cand = set(candidates)
    local = frame.groupby("onnx_node", sort=False)["local_noise"].max().to_dict()
    producer = {o: node_label(n, i) for i, n in enumerate(original.graph.node) for o in n.output if o}
    owner: dict[str, str | None] = {}
    score = {c: 0.0 for c in candidates}
    for i, n in enumerate(original.graph.node):
        label = node_label(n, i)
        if label in cand:
            owner[label] = label
        else:
            src = next((producer[x] for x in n.input if x in producer and producer[x] in owner), None)
            owner[label] = owner.get(src) if src else None
        o = owner[label]
        if o is not None:
            score[o] += float(local.get(label, 0.0))
    return score


def _rank(model: Model, variant: Variant, batches: list, candidates: Sequence[str], exclude: set[str],
          progress: bool) -> list[tuple[str, float]]:
    df = layerwise(model, variant, data=batches, progress=progress, limit=None)
    score = attribute_noise(model, df, candidates)
    ranked = [(n, score[n]) for n in candidates if n not in exclude]
    return sorted(ranked, key=lambda t: -t[1])


@captures_native_log
def propose_mixed_precision(model: Any, precision: str = "int8", *, target: Any, data: Any = None,
                            labels: Any = None, calib: Any = None, strategy: str = "greedy", max_steps: int = 8,
                            step_size: int = 1, candidates: Sequence[str] | None = None,
                            backend: Any = "onnxruntime", shapes: Any = None, batch_size: int | None = None,
                            search_limit: int | None = None, layerwise_limit: int = 64, latency: bool = True,
                            latency_iterations: int = 50, progress: bool = True,
                            **variant_opts) -> MixedPrecisionResult:
    """Find nodes to keep in FP32 so that the ``precision`` variant meets ``target``; verify; time it.

    Args:
        target: ``"top1_drop<=0.5"`` (points, needs ``labels``), ``"cosine>=0.999"``, ``"snr_db>=30"``, ...
            (see :data:`TARGET_METRICS`), or a :class:`Target`.
        data / labels / calib / shapes / batch_size: as in :func:`~workbench.compare.compare_outputs`.
        strategy: ``greedy`` (re-rank after each step) or ``bisect`` (rank once, bisect the prefix).
        max_steps: most variants built during the search (step 0 excluded).
        step_size: candidates added per greedy step.
        candidates: restrict the search to these node names (default: every lowered node).
        search_limit: samples used during the search (the verification uses all of ``data``).
        layerwise_limit: samples used for the layerwise ranking.
        latency: measure fp32 / full low / mixed latency (``latency_iterations`` runs each).
        **variant_opts: passed to ``make_variant`` (e.g. ``num_calib``).
    """
    t = Target.parse(target)
    if strategy not in ("greedy", "bisect"):
        raise UsageError(f"unknown strategy {strategy!r}; choose greedy or bisect")
    if max_steps < 1 or step_size < 1:
        raise UsageError("max_steps and step_size must be >= 1")
    if t.needs_labels and labels is None:
        raise UsageError(f"target {t} needs labels (labels=KEY or an array)")
    model = model if isinstance(model, Model) else load(model)
    from ..precision import keeps_graph

    if keeps_graph(precision):
        raise UsageError(f"{precision} is already full precision; nothing to mix")
    all_batches, all_labels = resolve_data(model, data, labels, shapes=shapes, batch_size=batch_size)
    search_batches, search_labels = all_batches, all_labels
    if search_limit is not None:
        search_batches, search_labels = resolve_data(model, data, labels, shapes=shapes, batch_size=batch_size,
                                                     limit=search_limit)
    lw_batches = head_batches(all_batches, layerwise_limit)
    if calib is None:
        calib = all_batches
    _, ref_engine = build_variant_engine(model, "fp32", backend, shapes=shapes, progress=progress)

    def build(keep: Sequence[str]):
        return build_variant_engine(model, precision, backend, calib=calib, keep_nodes=list(keep), shapes=shapes,
                                    progress=progress, **variant_opts)

    def evaluate(engine) -> float:
        cmp = compare_engines(ref_engine, [engine], search_batches, labels=search_labels, progress=False)
        return t.value_of(cmp, cmp.variants[0])

    from tqdm.auto import tqdm

    bar = tqdm(total=max_steps + 1, desc=f"mixed {precision} {t}", disable=not progress, leave=False)
    low_var, low_engine = build(())
    baseline = evaluate(low_engine)
    bar.update(1)
    steps = [{"step": 0, "kept_onnx_nodes": [], "n_kept": 0, "added_onnx_nodes": [], "metric": t.metric, "value": baseline,
              "met": t.met(baseline)}]
    lowered = lowered_nodes(model, low_var)
    if candidates is not None:
        unknown = [c for c in candidates if c not in lowered]
        if unknown:
            raise UsageError(f"candidates {unknown} are not lowered nodes of the {precision} variant; "
                             f"lowered nodes are {lowered}")
        lowered = [c for c in lowered if c in set(candidates)]
    best = (list(), low_var, low_engine, baseline)
    if not t.met(baseline):
        if not lowered:
            raise UsageError(f"the {precision} variant has no lowered node to keep in fp32")
        if strategy == "greedy":
            best = _greedy(model, t, low_var, lowered, lw_batches, build, evaluate, steps, max_steps, step_size,
                           bar, progress) or best
        else:
            best = _bisect(model, t, low_var, lowered, lw_batches, build, evaluate, steps, max_steps,
                           bar, progress) or best
    bar.close()
    keep, var, engine, _ = best
    final = compare_engines(ref_engine, [engine], all_batches, labels=all_labels, progress=False)
    verified = t.value_of(final, final.variants[0])
    lat = _latency(ref_engine, low_engine, engine, all_batches[0], latency_iterations) if latency else None
    return MixedPrecisionResult(precision=precision, target=t, keep_nodes=list(keep), steps=pd.DataFrame(steps),
                                variant=var, baseline_value=baseline, verified_value=verified,
                                met=t.met(verified), comparison=final, latency=lat, candidates=lowered)


def _greedy(model, t, low_var, lowered, lw_batches, build, evaluate, steps, max_steps, step_size, bar, progress):
    keep: list[str] = []
    var = low_var
    result = None
    for step in range(1, max_steps + 1):
        ranked = _rank(model, var, lw_batches, lowered, set(keep), progress)
        if not ranked:
            break
        added = [n for n, _ in ranked[:step_size]]
        keep = keep + added
        var, engine = build(keep)
        value = evaluate(engine)
        bar.update(1)
        steps.append({"step": step, "kept_onnx_nodes": list(keep), "n_kept": len(keep), "added_onnx_nodes": added, "metric": t.metric,
                      "value": value, "met": t.met(value)})
        result = (list(keep), var, engine, value)
        if t.met(value):
            break
    return result


def _bisect(model, t, low_var, lowered, lw_batches, build, evaluate, steps, max_steps, bar, progress):
    order = [n for n, _ in _rank(model, low_var, lw_batches, lowered, set(), progress)]
    tried: dict[int, tuple] = {}

    def trial(k: int):
        keep = order[:k]
        var, engine = build(keep)
        value = evaluate(engine)
        bar.update(1)
        steps.append({"step": len(steps), "kept_onnx_nodes": list(keep), "n_kept": k, "added_onnx_nodes": [], "metric": t.metric,
                      "value": value, "met": t.met(value)})
        tried[k] = (list(keep), var, engine, value)
        return t.met(value)

    if not trial(len(order)):
        return tried[len(order)]  # unreachable with these candidates: report the closest try
    lo, hi = 0, len(order)  # lo fails (step 0), hi meets
    while hi - lo > 1 and len(steps) - 1 < max_steps:
        mid = (lo + hi) // 2
        if trial(mid):
            hi = mid
        else:
            lo = mid
    return tried[hi]


def _latency(ref_engine, low_engine, mixed_engine, feeds, iterations: int, rounds: int = 3) -> pd.DataFrame:
    """measure_latency of the three engines, interleaved over ``rounds`` rounds (so load from other
    processes hits all three alike); per role, the round with the median p50 is kept."""
    from ..measure.latency import measure_latency

    engines = (("fp32", ref_engine), ("low", low_engine), ("mixed", mixed_engine))
    runs: dict[str, list] = {role: [] for role, _ in engines}
    for _ in range(rounds):
        for role, e in engines:
            runs[role].append(measure_latency(e, feeds, warmup=max(3, iterations // 10), iterations=iterations))
    frames = []
    for role, results in runs.items():
        res = sorted(results, key=lambda r: r.p50_ms)[len(results) // 2]
        f = res.to_frame()
        f.insert(0, "role", role)
        f["rounds"] = rounds
        frames.append(f)
    return pd.concat(frames, ignore_index=True)
