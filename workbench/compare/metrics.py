"""Output-difference metrics: pure numpy, float64 accumulation.

Every function takes the reference ``ref`` and the candidate ``x`` (same shape, any float/int dtype),
casts both to float64 and flattens them. ``d = x - ref``; ``n`` = number of elements.

=============  ==========================================================================
max_abs        ``max |d|``
mean_abs       ``sum |d| / n``
max_rel        ``max |d| / max(|ref|, eps)`` with ``eps = 1e-12`` (so a non-zero error where
               ``ref == 0`` gives a huge relative error, as it should)
rmse           ``sqrt(sum d^2 / n)``
cosine         ``sum(ref*x) / (sqrt(sum ref^2) * sqrt(sum x^2))``; defined as 1.0 when both
               vectors are all zero (identical) and 0.0 when exactly one of them is
snr_db         ``10 * log10(sum ref^2 / sum d^2)``; ``+inf`` for an exact match, ``-inf`` when
               ``ref`` is all zero and ``x`` is not
nan_count      number of NaN values in ``x``;  inf_count: number of +-Inf values in ``x``
err_p99        99th percentile of ``|d|`` (from a fixed log-spaced histogram: bounded memory,
               within one bin = 2.3 %); err_p999: the 99.9th percentile
allclose       no NaN/Inf in ``x`` and ``|d| <= atol + rtol * |ref|`` everywhere (numpy's
               ``allclose`` rule; shown, never the verdict: relative error on near-zero
               reference values says nothing about a model)
passed         the verdict of the accumulator's :class:`Tolerance` (robust metrics, see
               :func:`verdict`): no NaN/Inf, ``cosine >= cosine_min``, ``snr_db >= snr_db_min``
=============  ==========================================================================

Non-finite values: the error metrics are computed over the positions where *both* ``ref`` and ``x``
are finite; ``nan_count`` / ``inf_count`` report the rest, and any NaN/Inf in ``x`` fails ``passed``.

:class:`ErrorAccumulator` computes the same metrics over a stream of batches exactly (it accumulates
sums, dot products and squared norms, never an average of per-batch cosines).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

EPS = 1e-12
_CHUNK = 1 << 15  # elements per step of ErrorAccumulator.update (float64 temporaries stay in L2)

#: Metric names, in report order.
METRICS = ("max_abs", "mean_abs", "max_rel", "rmse", "cosine", "snr_db", "nan_count", "inf_count", "passed")
#: Extra metrics every accumulator reports (not per layer).
EXTRA_METRICS = ("err_p99", "err_p999", "allclose")


# ---------------------------------------------------------------------------------------------- verdicts
@dataclass(frozen=True)
class Tolerance:
    """A stated pass/fail rule on robust metrics against the FP32 reference.

    ``cosine_min`` and ``snr_db_min`` apply to every output (whole-tensor cosine similarity and
    signal-to-noise ratio, accumulated over all samples); ``top1_drop_max`` (points of top-1 accuracy
    lost vs the reference) applies when labels exist. NaN/Inf in a variant's output always fails.
    """

    name: str
    cosine_min: float
    snr_db_min: float
    top1_drop_max: float | None = None

    def rule(self, *, with_labels: bool = False) -> str:
        parts = [f"cosine >= {self.cosine_min:g}", f"SNR >= {self.snr_db_min:g} dB", "no NaN/Inf"]
        if with_labels and self.top1_drop_max is not None:
            parts.append(f"top-1 drop <= {self.top1_drop_max:g} pt")
        return f"{self.name}: " + " and ".join(parts)

    def to_json(self) -> dict:
        return {"name": self.name, "cosine_min": self.cosine_min, "snr_db_min": self.snr_db_min,
                "top1_drop_max": self.top1_drop_max}


#: Default tolerances per precision (docs/accuracy.md says why each number). fp16 keeps ~11 significant
#: bits: a correct fp16 model is at cosine > 0.9999 and 40-60 dB; int8 has ~8 bits per tensor: 15-25 dB.
DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance("fp32", 0.99999, 60.0, 0.0),
    "tf32": Tolerance("tf32", 0.9999, 35.0, 0.5),
    "fp16": Tolerance("fp16", 0.999, 30.0, 0.5),
    "bf16": Tolerance("bf16", 0.995, 20.0, 1.0),
    "int8": Tolerance("int8", 0.98, 14.0, 1.0),
    "fp8": Tolerance("fp8", 0.98, 14.0, 1.5),
}
GENERIC_TOLERANCE = Tolerance("default", 0.999, 30.0, 0.5)


def tolerance_for(precision: str | None, overrides: dict | None = None) -> Tolerance:
    """The default :class:`Tolerance` of a precision (``overrides``: field → value)."""
    base = DEFAULT_TOLERANCES.get(str(precision or "").lower(), GENERIC_TOLERANCE)
    if overrides:
        from dataclasses import replace
        base = replace(base, **overrides)
    return base


@dataclass(frozen=True)
class Verdict:
    """``passed`` and why: the rule applied, the clauses that failed (with the measured values)."""

    passed: bool
    rule: str
    failed: tuple[str, ...] = ()
    tolerance: Tolerance | None = None

    @property
    def why(self) -> str:
        return "passes " + self.rule if self.passed else "fails: " + "; ".join(self.failed)

    def to_json(self) -> dict:
        return {"passed": self.passed, "rule": self.rule, "failed": list(self.failed),
                "tolerance": self.tolerance.to_json() if self.tolerance else None}


def verdict(tol: Tolerance, *, cosine: float, snr_db: float, nan_count: int = 0, inf_count: int = 0,
            top1_drop: float | None = None) -> Verdict:
    """Apply ``tol`` to measured values (the worst output's cosine/SNR; ``top1_drop`` in points, > 0 = worse)."""
    failed = []
    if nan_count or inf_count:
        failed.append(f"{int(nan_count)} NaN / {int(inf_count)} Inf in the output")
    if not cosine >= tol.cosine_min:  # NaN-safe
        failed.append(f"cosine {cosine:.6g} < {tol.cosine_min:g}")
    if not snr_db >= tol.snr_db_min:
        failed.append(f"SNR {snr_db:.3g} dB < {tol.snr_db_min:g} dB")
    with_labels = top1_drop is not None
    if with_labels and tol.top1_drop_max is not None and not top1_drop <= tol.top1_drop_max + 1e-9:
        failed.append(f"top-1 drop {top1_drop:.3g} pt > {tol.top1_drop_max:g} pt")
    return Verdict(not failed, tol.rule(with_labels=with_labels), tuple(failed), tol)


# log-spaced |error| histogram: 1e-12 .. 1e12, 100 bins per decade (bin width ~2.3 %)
_H_LO, _H_DECADES, _H_PER = -12, 24, 100
_H_BINS = _H_DECADES * _H_PER


def _hist_add(hist: np.ndarray, ad: np.ndarray) -> None:
    with np.errstate(divide="ignore"):
        idx = np.floor((np.log10(np.maximum(ad, 1e-300)) - _H_LO) * _H_PER).astype(np.int64)
    np.clip(idx, -1, _H_BINS, out=idx)
    counts = np.bincount(idx + 1, minlength=_H_BINS + 2)
    hist += counts[: _H_BINS + 2]


def _hist_quantile(hist: np.ndarray, q: float) -> float:
    total = hist.sum()
    if total == 0:
        return 0.0
    k = int(np.searchsorted(np.cumsum(hist), q * total, side="left"))
    if k == 0:
        return 0.0  # below 1e-12: exact
    if k >= _H_BINS + 1:
        return float(10.0 ** (_H_LO + _H_DECADES))
    return float(10.0 ** (_H_LO + k / _H_PER))  # upper edge of the bin


def _pair(ref, x) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(ref).astype(np.float64, copy=False).ravel()
    v = np.asarray(x).astype(np.float64, copy=False).ravel()
    if r.shape != v.shape:
        raise ValueError(f"shapes differ: {np.shape(ref)} vs {np.shape(x)}")
    ok = np.isfinite(r) & np.isfinite(v)
    if not ok.all():
        r, v = r[ok], v[ok]
    return r, v


def max_abs_error(ref, x) -> float:
    """``max |x - ref|`` (0.0 for empty input)."""
    r, v = _pair(ref, x)
    return float(np.max(np.abs(v - r))) if r.size else 0.0


def mean_abs_error(ref, x) -> float:
    """``sum |x - ref| / n``."""
    r, v = _pair(ref, x)
    return float(np.abs(v - r).sum() / r.size) if r.size else 0.0


def max_rel_error(ref, x, eps: float = EPS) -> float:
    """``max |x - ref| / max(|ref|, eps)``."""
    r, v = _pair(ref, x)
    return float(np.max(np.abs(v - r) / np.maximum(np.abs(r), eps))) if r.size else 0.0


def rmse(ref, x) -> float:
    """``sqrt(sum (x - ref)^2 / n)``."""
    r, v = _pair(ref, x)
    return float(math.sqrt(np.square(v - r).sum() / r.size)) if r.size else 0.0


def _cosine(dot: float, rr: float, xx: float) -> float:
    if rr == 0.0 and xx == 0.0:
        return 1.0
    if rr == 0.0 or xx == 0.0:
        return 0.0
    return float(max(-1.0, min(1.0, dot / (math.sqrt(rr) * math.sqrt(xx)))))


def cosine_similarity(ref, x) -> float:
    """``sum(ref*x) / (||ref|| * ||x||)``; 1.0 if both all-zero, 0.0 if exactly one is."""
    r, v = _pair(ref, x)
    return _cosine(float(r @ v), float(r @ r), float(v @ v))


def _snr(signal: float, noise: float) -> float:
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def snr_db(ref, x) -> float:
    """``10 * log10(sum ref^2 / sum (ref - x)^2)``; +inf for an exact match."""
    r, v = _pair(ref, x)
    d = v - r
    return _snr(float(r @ r), float(d @ d))


def nan_count(x) -> int:
    """Number of NaN values in ``x``."""
    a = np.asarray(x)
    return int(np.isnan(a).sum()) if a.dtype.kind in "fc" or a.dtype.kind == "V" else 0


def inf_count(x) -> int:
    """Number of +-Inf values in ``x``."""
    a = np.asarray(x)
    return int(np.isinf(a).sum()) if a.dtype.kind in "fc" or a.dtype.kind == "V" else 0


def allclose(ref, x, atol: float, rtol: float) -> bool:
    """``|x - ref| <= atol + rtol * |ref|`` everywhere and no NaN/Inf in ``x`` (nor in ``ref``: a finite value is
    not close to an infinite reference, as in ``numpy.allclose``)."""
    v = np.asarray(x).astype(np.float64, copy=False)
    if not np.isfinite(v).all():
        return False
    r = np.asarray(ref).astype(np.float64, copy=False)
    if not np.isfinite(r).all():  # |x - inf| <= rtol * inf would hold
        return False
    return bool(np.all(np.abs(v - r) <= atol + rtol * np.abs(r)))


def top1_accuracy(logits, labels) -> float:
    """Fraction of samples whose argmax over the last axis equals the integer label."""
    pred = np.argmax(np.asarray(logits).reshape(len(labels), -1), axis=-1)
    return float(np.mean(pred == np.asarray(labels).reshape(-1)))


def topk_agreement(ref_logits, logits, k: int) -> float:
    """Mean over samples of ``|topk(ref) ∩ topk(x)| / k`` (k clipped to the number of classes); 1.0 for
    no samples."""
    if len(ref_logits) == 0:  # reshape(0, -1) cannot infer the class axis
        return 1.0
    r = np.asarray(ref_logits, dtype=np.float64).reshape(len(ref_logits), -1)
    v = np.asarray(logits, dtype=np.float64).reshape(len(logits), -1)
    return float(np.mean(topk_overlap(r, v, k)))


def topk_overlap(r: np.ndarray, v: np.ndarray, k: int) -> np.ndarray:
    k = max(1, min(k, r.shape[-1]))
    tr = np.argsort(-r, axis=-1, kind="stable")[:, :k]
    tv = np.argsort(-v, axis=-1, kind="stable")[:, :k]
    return np.array([len(set(a) & set(b)) / k for a, b in zip(tr.tolist(), tv.tolist())], dtype=np.float64)


def output_metrics(ref, x, *, atol: float = 1e-3, rtol: float = 1e-3) -> dict[str, float]:
    """All metrics of :data:`METRICS` for one pair of arrays."""
    acc = ErrorAccumulator(atol=atol, rtol=rtol)
    acc.update(ref, x)
    return acc.result()


@dataclass
class ErrorAccumulator:
    """Streams batches of (ref, x) and returns the metrics of their concatenation.

    Sums are float64: ``sum |d|``, ``sum d^2``, ``sum ref^2``, ``sum x^2``, ``sum ref*x``, element
    counts, running maxima, NaN/Inf counts, and the allclose verdict. ``percentiles=False`` skips the
    |error| histogram (err_p99/err_p999 are then NaN): the layerwise scan folds gigabytes and does not
    report them, and the histogram's log10 per element would triple its cost.
    """

    atol: float = 1e-3
    rtol: float = 1e-3
    tolerance: Tolerance = GENERIC_TOLERANCE
    n: int = 0
    sum_abs: float = 0.0
    sum_sq: float = 0.0
    ref_sq: float = 0.0
    x_sq: float = 0.0
    dot: float = 0.0
    max_abs: float = 0.0
    max_rel: float = 0.0
    nans: int = 0
    infs: int = 0
    close: bool = True
    hist: np.ndarray | None = None
    percentiles: bool = True

    def update(self, ref, x) -> None:
        if np.shape(ref) != np.shape(x):
            raise ValueError(f"shapes differ: {np.shape(ref)} vs {np.shape(x)}")
        ra, xa = np.asarray(ref).reshape(-1), np.asarray(x).reshape(-1)
        for s in range(0, ra.size, _CHUNK):  # chunks keep the float64 temporaries small and cache-warm
            r = ra[s:s + _CHUNK].astype(np.float64)
            v = xa[s:s + _CHUNK].astype(np.float64)
            d = np.subtract(v, r, out=v)
            if np.isfinite(d).all():  # both finite everywhere: no NaN/Inf to count or mask
                self._update_finite(r, d)
            else:
                self._update_general(ra[s:s + _CHUNK], xa[s:s + _CHUNK])

    def _update_finite(self, r: np.ndarray, d: np.ndarray) -> None:
        """The sums of :meth:`_update_general` for an all-finite chunk (``d = x - ref``), with fewer
        passes over memory: ``x.x = r.r + 2 r.d + d.d`` and ``r.x = r.r + r.d``."""
        # einsum, not vdot/@: BLAS may hand a 32K dot to its thread pool, which spins on a busy machine
        rr, rd, dd = (float(np.einsum("i,i->", r, r)), float(np.einsum("i,i->", r, d)),
                      float(np.einsum("i,i->", d, d)))
        self.n += r.size
        self.sum_sq += dd
        self.ref_sq += rr
        self.x_sq += max(0.0, rr + 2.0 * rd + dd)
        self.dot += rr + rd
        ad = np.abs(d, out=d)
        self.sum_abs += float(ad.sum())
        self.max_abs = max(self.max_abs, float(ad.max()))
        self._hist(ad)
        ar = np.abs(r, out=r)
        if self.close:
            thr = ar * self.rtol
            thr += self.atol
            self.close = bool(np.all(ad <= thr))
        np.maximum(ar, EPS, out=ar)
        np.divide(ad, ar, out=ar)
        self.max_rel = max(self.max_rel, float(ar.max()))

    def _update_general(self, ref, x) -> None:
        self.nans += nan_count(x)
        self.infs += inf_count(x)
        if self.close:
            self.close = allclose(ref, x, self.atol, self.rtol)
        r, v = _pair(ref, x)
        if not r.size:
            return
        d = v - r
        ad = np.abs(d)
        self.n += r.size
        self.sum_abs += float(ad.sum())
        self.sum_sq += float(d @ d)
        self.ref_sq += float(r @ r)
        self.x_sq += float(v @ v)
        self.dot += float(r @ v)
        self.max_abs = max(self.max_abs, float(ad.max()))
        self.max_rel = max(self.max_rel, float(np.max(ad / np.maximum(np.abs(r), EPS))))
        self._hist(ad)

    def _hist(self, ad: np.ndarray) -> None:
        if not self.percentiles:
            return
        if self.hist is None:
            self.hist = np.zeros(_H_BINS + 2, dtype=np.int64)
        _hist_add(self.hist, ad)

    def result(self) -> dict[str, float]:
        n = max(self.n, 1)
        cos = _cosine(self.dot, self.ref_sq, self.x_sq)
        snr = _snr(self.ref_sq, self.sum_sq)
        hist = self.hist if self.hist is not None else np.zeros(_H_BINS + 2, dtype=np.int64)
        return {
            "max_abs": self.max_abs,
            "mean_abs": self.sum_abs / n,
            "max_rel": self.max_rel,
            "rmse": math.sqrt(self.sum_sq / n),
            "cosine": cos,
            "snr_db": snr,
            "nan_count": self.nans,
            "inf_count": self.infs,
            "passed": self.verdict().passed,
            "err_p99": min(_hist_quantile(hist, 0.99), self.max_abs) if self.percentiles else math.nan,
            "err_p999": min(_hist_quantile(hist, 0.999), self.max_abs) if self.percentiles else math.nan,
            "allclose": bool(self.close and self.nans == 0 and self.infs == 0),
        }

    def verdict(self) -> Verdict:
        """This output's :class:`Verdict` under ``self.tolerance``."""
        return verdict(self.tolerance, cosine=_cosine(self.dot, self.ref_sq, self.x_sq),
                       snr_db=_snr(self.ref_sq, self.sum_sq), nan_count=self.nans, inf_count=self.infs)

    @property
    def noise_ratio(self) -> float:
        """``sum d^2 / sum ref^2`` (= ``10^(-snr_db/10)``): relative error energy, used for ranking."""
        if self.sum_sq == 0.0:
            return 0.0
        return self.sum_sq / self.ref_sq if self.ref_sq else math.inf


def json_number(v):
    """A JSON-safe value under the one JSON policy (:func:`workbench.fsutil.json_number`): NaN -> null,
    +-Inf -> "inf" / "-inf"."""
    from ..fsutil import json_number as policy

    return policy(v)
