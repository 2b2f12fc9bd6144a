"""Output comparison: every precision variant against the FP32 reference, over a whole dataset.

``compare_outputs`` builds the variants (``workbench.precision.make_variant``) on a backend, builds the
FP32 reference on ``reference_backend`` (ONNX Runtime CPU by default), and hands the engines to
``compare_engines``, which also serves callers that already hold built engines (the dashboard).
Metrics accumulate over all batches (sums of squares and dot products, see
:class:`~workbench.compare.metrics.ErrorAccumulator`), never as an average of per-batch values.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..data import cast_feeds, feeds_batch, resolve_data
from ..errors import DataError, UsageError
from ..logs import captures_native_log
from ..model import Model, load
from ..variant import Variant
from .metrics import METRICS, ErrorAccumulator, json_number, tolerance_for, topk_overlap, verdict

#: Columns of :attr:`Comparison.metrics`.
COLUMNS = ["variant", "precision", "backend", "output", "metric", "value"]


@dataclass
class Comparison:
    """Result of :func:`compare_outputs` / :func:`compare_engines`.

    ``metrics``: tidy frame ``variant, precision, backend, output, metric, value``. Per output: the
    metrics of :data:`~workbench.compare.metrics.METRICS`. With labels, on the label output: ``top1``
    (accuracy of each variant, the reference included), ``top1_agreement`` (argmax equals the
    reference's) and ``topk_agreement`` (mean ``|topk(ref) ∩ topk(x)| / k``).
    """

    metrics: pd.DataFrame
    reference: str
    variants: list[str]
    samples: int
    label_output: str | None = None
    topk: int = 5
    atol: float = 1e-3
    rtol: float = 1e-3
    skipped: dict[str, str] = field(default_factory=dict)
    layerwise: dict[str, pd.DataFrame] = field(default_factory=dict)
    bisections: dict[str, Any] = field(default_factory=dict)  # variant name -> layerwise.Bisection
    built: dict[str, Variant] = field(default_factory=dict)  # variant name -> the Variant compared
    reference_info: dict[str, str] = field(default_factory=dict)  # precision, backend of the reference

    def value(self, variant: str, metric: str, output: str | None = None):
        """One metric value (the only/label output when ``output`` is None)."""
        m = self.metrics
        sel = m[(m.variant == variant) & (m.metric == metric)]
        if output is not None:
            sel = sel[sel.output == output]
        if sel.empty:
            raise KeyError(f"no {metric!r} for {variant!r}" + (f" / {output!r}" if output else ""))
        return sel.iloc[0]["value"]

    def summary(self) -> pd.DataFrame:
        """One row per variant: ``top1`` (if labels), ``top1_delta`` (points vs the reference), minimum
        cosine and SNR over outputs, maximum ``max_abs``, NaN/Inf totals, ``passed`` (every output)."""
        rows = []
        m = self.metrics
        for name in [self.reference, *self.variants]:
            sub = m[m.variant == name]
            if sub.empty and name != self.reference:
                continue
            info = self.reference_info if name == self.reference else {"precision": sub.precision.iloc[0],
                                                                       "backend": sub.backend.iloc[0]}
            row = {"variant": name, **info}
            get = lambda k: sub[sub.metric == k]["value"]  # noqa: E731
            if self.label_output is not None:
                row["top1"] = float(get("top1").iloc[0])
                row["top1_delta"] = 100.0 * (row["top1"] - float(self.value(self.reference, "top1")))
                if name != self.reference:
                    row["topk_agreement"] = float(get("topk_agreement").iloc[0])
            if name != self.reference:
                row["cosine_min"] = float(get("cosine").astype(float).min())
                row["snr_db_min"] = float(get("snr_db").astype(float).min())
                row["max_abs"] = float(get("max_abs").astype(float).max())
                row["nan_count"] = int(get("nan_count").sum())
                row["inf_count"] = int(get("inf_count").sum())
                v = self.verdict(name)
                row["passed"] = v.passed
                row["rule"] = v.rule
                row["why"] = v.why
            rows.append(row)
        return pd.DataFrame(rows)

    def verdict(self, variant: str):
        """The :class:`~workbench.compare.metrics.Verdict` of one variant: its precision's default
        :class:`~workbench.compare.metrics.Tolerance` applied to the worst output's cosine and SNR, NaN/Inf
        totals and (with labels) the top-1 drop vs the reference."""
        m = self.metrics
        sub = m[m.variant == variant]
        if sub.empty:
            raise KeyError(f"no variant {variant!r}")
        get = lambda k: sub[sub.metric == k]["value"]  # noqa: E731
        drop = None
        if self.label_output is not None and not get("top1").empty:
            drop = 100.0 * (float(self.value(self.reference, "top1")) - float(get("top1").iloc[0]))
        return verdict(tolerance_for(sub.precision.iloc[0]), cosine=float(get("cosine").astype(float).min()),
                       snr_db=float(get("snr_db").astype(float).min()), nan_count=int(get("nan_count").sum()),
                       inf_count=int(get("inf_count").sum()), top1_drop=drop)

    def verdicts(self) -> pd.DataFrame:
        """One row per variant: variant, precision, passed, rule (the stated tolerance), why (failed clauses)."""
        rows = []
        for name in self.variants:
            if (self.metrics.variant == name).any():
                v = self.verdict(name)
                prec = self.metrics[self.metrics.variant == name].precision.iloc[0]
                rows.append({"variant": name, "precision": prec, "passed": v.passed, "rule": v.rule, "why": v.why})
        return pd.DataFrame(rows, columns=["variant", "precision", "passed", "rule", "why"])

    def to_json(self) -> dict:
        """``{reference, samples, atol, rtol, variants: {name: {precision, backend, outputs: {out: {metric:
        value}}, top1?, topk_agreement?}}, skipped, layerwise?}``; non-finite numbers under the JSON policy (NaN null, Inf "inf")."""
        out: dict[str, Any] = {"reference": self.reference,
                               **{f"reference_{k}": v for k, v in self.reference_info.items()},
                               "samples": self.samples, "atol": self.atol, "rtol": self.rtol, "topk": self.topk,
                               "label_output": self.label_output, "variants": {}, "skipped": self.skipped}
        for name, sub in self.metrics.groupby("variant", sort=False):
            v = out["variants"].setdefault(name, {"precision": sub.precision.iloc[0],
                                                  "backend": sub.backend.iloc[0], "outputs": {}})
            if name != self.reference:
                v["verdict"] = self.verdict(name).to_json()
            for r in sub.itertuples():
                if r.metric in ("top1", "top1_agreement", "topk_agreement"):
                    v[r.metric] = json_number(r.value)
                else:
                    v["outputs"].setdefault(r.output, {})[r.metric] = json_number(r.value)
        if self.layerwise:
            out["layerwise"] = {}
            for name, df in self.layerwise.items():
                nodes = [{k: json_number(v) for k, v in rec.items()}
                         for rec in df.drop(columns=["variant", "precision"]).to_dict(orient="records")]
                from .layerwise import layerwise_summary

                info = {k: json_number(v) for k, v in layerwise_summary(df).items() if k not in ("unmatched", "skipped")}
                out["layerwise"][name] = {**info, "unmatched": df.attrs.get("unmatched", []),
                                          "skipped": df.attrs.get("skipped", {}), "nodes": nodes}
        if self.bisections:
            out["bisections"] = {name: b.to_json() for name, b in self.bisections.items()}
        return out


# ---------------------------------------------------------------------------------------------- engines
def _label_output(names: Sequence[str], sample: Mapping[str, np.ndarray], requested: str | None) -> str:
    if requested is not None:
        if requested not in names:
            raise DataError(f"label output {requested!r} is not an output; outputs are {list(names)}")
        return requested
    for n in names:
        if np.ndim(sample[n]) >= 2:
            return n
    raise DataError(f"no output looks like class scores (rank >= 2) among {list(names)}",
                    hint="name it with label_output=")


@captures_native_log
def compare_engines(reference_engine: Any, engines: Sequence[Any], data: Any, *, labels: np.ndarray | None = None,
                    atol: float = 1e-3, rtol: float = 1e-3, topk: int = 5, label_output: str | None = None,
                    progress: bool = True) -> Comparison:
    """Compare built engines against a built reference engine over ``data`` (a list of feed dicts).

    ``labels``: integer class ids, one per sample (in batch order), for ``top1`` / agreement metrics.
    Every engine must expose the reference's output names with the same shapes (``DataError`` if not).
    """
    if isinstance(data, Mapping):
        data = [data]
    ref_name = f"{reference_engine.variant.name} (reference)"
    ref_outputs = list(reference_engine.output_names)
    names = []
    for e in engines:
        n = e.variant.name
        while n in names or n == ref_name:
            n += "'"
        names.append(n)
        missing = [o for o in ref_outputs if o not in e.output_names]
        if missing:
            raise DataError(f"variant {n} lacks output(s) {missing} of the reference ({ref_outputs})")
    accs = {n: {o: ErrorAccumulator(atol=atol, rtol=rtol, tolerance=tolerance_for(e.variant.precision))
                for o in ref_outputs} for n, e in zip(names, engines)}
    preds: dict[str, list[np.ndarray]] = {n: [] for n in [ref_name, *names]}
    overlap: dict[str, list[np.ndarray]] = {n: [] for n in names}
    lab_out = None
    samples = 0
    from tqdm.auto import tqdm

    for feeds in tqdm(data, desc="compare", disable=not progress, leave=False):
        ref = reference_engine.run(cast_feeds(feeds, reference_engine.variant.model))
        if lab_out is None and labels is not None:
            lab_out = _label_output(ref_outputs, ref, label_output)
        if lab_out is not None:
            r = np.asarray(ref[lab_out], dtype=np.float64)
            r = r.reshape(r.shape[0], -1)
            preds[ref_name].append(np.argmax(r, axis=-1))
        for n, e in zip(names, engines):
            # the reference engine itself among the engines (the flow's fp32 build): its outputs, not a second run
            out = ref if e is reference_engine else e.run(cast_feeds(feeds, e.variant.model))
            for o in ref_outputs:
                if np.shape(out[o]) != np.shape(ref[o]):
                    raise DataError(f"output {o!r} has shape {np.shape(out[o])} in {n} but {np.shape(ref[o])} "
                                    f"in the reference {ref_name}; variants must keep output shapes")
                accs[n][o].update(ref[o], out[o])
            if lab_out is not None:
                v = np.asarray(out[lab_out], dtype=np.float64).reshape(r.shape[0], -1)
                preds[n].append(np.argmax(v, axis=-1))
                overlap[n].append(topk_overlap(r, v, topk))
        samples += feeds_batch(feeds, reference_engine.variant.model)
    if samples == 0:
        raise DataError("no data to compare")

    rows = []
    ref_var = reference_engine.variant
    if lab_out is not None:
        if len(labels) != samples:
            raise DataError(f"{len(labels)} labels for {samples} samples")
        rows.append((ref_name, ref_var.precision, reference_engine.backend.name, lab_out, "top1",
                     float(np.mean(np.concatenate(preds[ref_name]) == labels))))
    ref_pred = np.concatenate(preds[ref_name]) if lab_out is not None else None
    for n, e in zip(names, engines):
        prec, be = e.variant.precision, e.backend.name
        for o in ref_outputs:
            for k, v in accs[n][o].result().items():
                rows.append((n, prec, be, o, k, v))
        if lab_out is not None:
            p = np.concatenate(preds[n])
            rows.append((n, prec, be, lab_out, "top1", float(np.mean(p == labels))))
            rows.append((n, prec, be, lab_out, "top1_agreement", float(np.mean(p == ref_pred))))
            rows.append((n, prec, be, lab_out, "topk_agreement", float(np.mean(np.concatenate(overlap[n])))))
    df = pd.DataFrame(rows, columns=COLUMNS)
    return Comparison(metrics=df, reference=ref_name, variants=names, samples=samples, label_output=lab_out,
                      topk=topk, atol=atol, rtol=rtol, built={n: e.variant for n, e in zip(names, engines)},
                      reference_info={"precision": ref_var.precision, "backend": reference_engine.backend.name})


# ---------------------------------------------------------------------------------------------- top level
def build_variant_engine(model: Model, precision: str | Variant, backend: Any, *, calib: Any = None,
                         shapes: Any = None, progress: bool = True, **variant_opts):
    """``(variant, engine)`` for a precision name (via ``make_variant``) or a ready :class:`Variant`, through
    the one build path (:func:`workbench.builds.build_engine`: engine cache, kernel fallback, records)."""
    from ..builds import build_engine

    return build_engine(model, precision, backend, calib=calib, shapes=shapes, progress=progress, **variant_opts)


@captures_native_log
def compare_outputs(model: Any, precisions: str | Sequence[str | Variant], backend: Any = "onnxruntime", *,
                    data: Any = None, labels: Any = None, calib: Any = None, shapes: Any = None,
                    reference_backend: Any = "onnxruntime", atol: float = 1e-3, rtol: float = 1e-3,
                    batch_size: int | None = None, limit: int | None = None, topk: int = 5,
                    label_output: str | None = None, progress: bool = True) -> Comparison:
    """Compare precision variants of ``model`` with the FP32 reference.

    Args:
        model: path or :class:`~workbench.Model`.
        precisions: ``"fp16,int8"`` or a list of precision names / ready :class:`~workbench.Variant` s.
        backend: backend the variants run on; ``reference_backend``: where FP32 runs (ORT CPU).
        data: ``.npz`` path (keys = input names), :class:`~workbench.NpzDataset`, iterable of feed dicts,
            or None (one synthetic batch; ``shapes`` fixes dynamic dims).
        labels: the ``.npz`` key holding integer labels, or an array (one label per sample).
        calib: calibration data for int8/fp8 (defaults to ``data``'s inputs when ``data`` is an npz path).
        atol / rtol: per-element tolerance for ``passed`` (``|x - ref| <= atol + rtol*|ref|``).
        batch_size: samples per run for models with a dynamic batch (default 32); ``limit``: use at
            most this many samples of an npz dataset.
        topk: k of ``topk_agreement``.

    Precisions the backend cannot run are skipped with a warning and listed in ``.skipped``.
    """
    model = model if isinstance(model, Model) else load(model)
    model.require_inputs("compare")
    from ..precision import calibrated, parse_precisions

    if isinstance(precisions, str):
        precisions = [p.strip().lower() for p in precisions.split(",") if p.strip()]
    if not precisions:
        raise UsageError("give at least one precision to compare")
    names = [p for p in precisions if isinstance(p, str)]
    if names:
        parse_precisions(names)  # unknown names: UsageError naming the registered precisions
    batches, label_arr = resolve_data(model, data, labels, shapes=shapes, batch_size=batch_size, limit=limit)
    from ..backends import get_backend

    be = get_backend(backend)
    todo, skipped = [], {}
    for p in precisions:
        name = p.precision if isinstance(p, Variant) else p
        ok, why = be.supports(name)
        if not ok:
            skipped[name] = why
            # stacklevel 3: past the @captures_native_log wrapper, at the caller
            warnings.warn(f"skipping {name} on {be.name}: {why}", stacklevel=3)
            continue
        todo.append(p)
    if calib is None and data is not None and calibrated(todo):  # only variants that will be built and compared
        warnings.warn("int8/fp8 calibrated on the evaluation data itself (no calib= given): accuracy is optimistic",
                      stacklevel=3)
        calib = batches
    _, ref_engine = build_variant_engine(model, "fp32", reference_backend, shapes=shapes, progress=progress)
    engines = [build_variant_engine(model, p, be, calib=calib, shapes=shapes, progress=progress)[1] for p in todo]
    cmp = compare_engines(ref_engine, engines, batches, labels=label_arr, atol=atol, rtol=rtol, topk=topk,
                          label_output=label_output, progress=progress)
    cmp.skipped = skipped
    return cmp


def as_batches(model: Model, data: Any, *, batch_size: int | None = None, limit: int | None = None,
               shapes: Any = None) -> list[dict[str, np.ndarray]]:
    """Feed batches as a list (re-iterable), with compare's default batch size."""
    return resolve_data(model, data, None, shapes=shapes, batch_size=batch_size, limit=limit)[0]


__all__ = ["Comparison", "compare_engines", "compare_outputs", "resolve_data", "as_batches",
                          "build_variant_engine", "METRICS"]
