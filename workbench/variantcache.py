"""Variant cache: reuse a precision variant (a recipe's ONNX output) when nothing that shapes it changed.

A second ``workbench report`` (or ``build_variants(..., variant_cache=...)``) on the same model, data
and precisions takes its fp16/int8 variants from here instead of converting and calibrating again
(INT8 calibration of a 672-node detector: 20-40 s).

Key = sha256 of: the source model's content hash, the precision, the recipe's arguments (keep lists,
options, the backend the Q/DQ form is chosen for), the calibration data's *content* (calibrated recipes
only: the bytes of the .npz file or of every array), the recipe code (the source of
``workbench/precision``) and the versions of the tools (workbench, onnx, onnxruntime,
onnxconverter-common). Calibration data that can only be read once (a generator) is not cached.

An entry is ``<key>.onnx`` plus ``<key>.json`` (the variant's name, recipe, backend flags and the ONNX
file's sha256 and size). Every lookup re-hashes the ONNX file; a missing, truncated or altered entry is
removed and counted as ``invalid`` — never trusted. Writes are atomic (ONNX first, record last).
"""
from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from .errors import CacheError, WorkbenchError
from .fsutil import atomic_write_bytes, atomic_write_json
from .model import Model
from .variant import Variant

FORMAT = 1


@lru_cache(maxsize=1)
def recipe_code_hash() -> str:
    """sha256 over the source files of ``workbench.precision`` (a recipe change invalidates entries)."""
    h = hashlib.sha256()
    folder = Path(__file__).resolve().parent / "precision"
    for p in sorted(folder.glob("*.py")):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def _versions() -> dict[str, str]:
    from . import __version__
    from .precision.base import version_of

    return {"workbench": __version__, **{d: version_of(d) for d in ("onnx", "onnxruntime", "onnxconverter-common")}}


def _hash_arrays(h, feeds: Mapping[str, Any]) -> None:
    for name in sorted(feeds):
        a = np.ascontiguousarray(np.asarray(feeds[name]))
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(memoryview(a).cast("B") if a.size else b"")


def data_fingerprint(data: Any) -> str | None:
    """Content hash of calibration data, or None when it cannot be hashed without consuming it."""
    from .data import Batches, NpzDataset
    from .precision.calibration import CalibrationData

    h = hashlib.sha256()
    if isinstance(data, CalibrationData):
        inner = data_fingerprint(data.source)
        if inner is None:
            return None
        h.update(json.dumps([inner, data.min_samples, str(data.batch_axis)]).encode())
        return h.hexdigest()
    if isinstance(data, str) and data == "synthetic":
        return "synthetic"
    if isinstance(data, (str, os.PathLike)):
        from .fsutil import open_input

        # a regular file, opened non-blocking (a FIFO fails at once instead of hanging the key)
        f, _ = open_input(data, "calibration data")
        with f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return "file:" + h.hexdigest()
    if isinstance(data, Batches):  # another stage's batches of an NpzDataset (the report's data)
        inner = data_fingerprint(data.dataset)
        h.update(json.dumps([inner, data.size, data.stop, list(data.starts)[:1], len(data.starts)]).encode())
        return "batches:" + h.hexdigest()
    if isinstance(data, NpzDataset):
        if data.path is not None:
            inner = data_fingerprint(data.path)
        else:
            for b in data.batch_list(None):  # one sample at a time: bounded memory
                _hash_arrays(h, b)
            inner = h.hexdigest()
        return "dataset:" + hashlib.sha256(json.dumps([inner, str(data.batch_axis_override)]).encode()).hexdigest()
    if isinstance(data, (list, tuple)) and all(isinstance(b, Mapping) for b in data):
        for b in data:
            _hash_arrays(h, b)
            h.update(b"|batch|")
        return "arrays:" + h.hexdigest()
    return None  # a generator or another one-shot iterable


def variant_key(model: Model, precision: str, *, calib: Any = None, keep_nodes: Iterable[str] = (),
                keep_op_types: Iterable[str] = (), options: Mapping | None = None) -> str | None:
    """The cache key of ``make_variant(model, precision, calib=..., keep_..., **options)``; None when the
    calibration data cannot be fingerprinted."""
    from .precision import get_recipe

    recipe = get_recipe(precision)
    calib_fp = None
    if recipe.needs_calibration:
        calib_fp = data_fingerprint(calib)
        if calib_fp is None:
            return None
    payload = {"format": FORMAT, "source": model.hash, "precision": precision, "calib": calib_fp,
               "keep_nodes": list(keep_nodes), "keep_op_types": list(keep_op_types),
               "options": dict(options or {}), "code": recipe_code_hash(), "versions": _versions()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class VariantCache:
    """A folder of validated precision variants; ``get(key, model)`` / ``put(key, variant)``.

    Counters: ``hits``, ``misses``, ``invalid`` (entries found corrupt and removed); ``last_reason`` says
    why the last lookup missed.
    """

    def __init__(self, directory: str | os.PathLike):
        self.dir = Path(directory)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CacheError(f"cannot create variant cache folder {self.dir}: {e}") from None
        self.hits = self.misses = self.invalid = 0
        self.last_reason = ""

    def __repr__(self) -> str:
        return f"<VariantCache {str(self.dir)!r} hits={self.hits} misses={self.misses} invalid={self.invalid}>"

    def paths(self, key: str) -> tuple[Path, Path]:
        return self.dir / f"{key}.onnx", self.dir / f"{key}.json"

    def _drop(self, key: str) -> None:
        for p in self.paths(key):
            p.unlink(missing_ok=True)

    def get(self, key: str | None, source: Model) -> Variant | None:
        """The cached variant of ``source`` under ``key`` (its model derived from ``source``), else None."""
        if key is None:
            self.misses += 1
            self.last_reason = "calibration data cannot be fingerprinted (a one-shot iterable)"
            return None
        onnx_path, rec_path = self.paths(key)
        if not rec_path.exists():
            self.misses += 1
            self.last_reason = "not in cache"
            return None
        try:
            rec = json.loads(rec_path.read_text())
            data = onnx_path.read_bytes()
            ok = (rec.get("format") == FORMAT and len(data) == rec.get("onnx_bytes")
                  and hashlib.sha256(data).hexdigest() == rec.get("onnx_sha256"))
        except (OSError, ValueError, AttributeError) as e:
            ok, rec = False, {"error": str(e)}
        if not ok:
            self.invalid += 1
            self.misses += 1
            self.last_reason = "cache entry unreadable or altered; removed and remade"
            self._drop(key)
            return None
        import onnx

        try:
            model = source.derive(onnx.load_from_string(data), name=rec["model_name"])
        except Exception as e:  # noqa: BLE001 - a bad entry is a miss, never an error
            self.invalid += 1
            self.misses += 1
            self.last_reason = f"cache entry does not load ({type(e).__name__}); removed and remade"
            self._drop(key)
            return None
        self.hits += 1
        recipe = dict(rec["recipe"])
        return Variant(model=model, precision=rec["precision"], source_hash=source.hash, recipe=recipe,
                       backend_flags=dict(rec["backend_flags"]), name=rec["name"])

    def put(self, key: str | None, variant: Variant) -> bool:
        """Store ``variant`` (atomic; the record after the ONNX file). False when it cannot be stored
        (no key, or a model over 2 GB that has no single-file form)."""
        if key is None:
            return False
        try:
            data = variant.model.to_bytes()
        except (ValueError, WorkbenchError):  # > 2 GB protobuf limit
            return False
        onnx_path, rec_path = self.paths(key)
        atomic_write_bytes(onnx_path, data)
        atomic_write_json(rec_path, {"format": FORMAT, "key": key, "name": variant.name,
                                     "precision": variant.precision, "model_name": variant.model.name,
                                     "recipe": variant.recipe, "backend_flags": variant.backend_flags,
                                     "onnx_sha256": hashlib.sha256(data).hexdigest(), "onnx_bytes": len(data)})
        return True

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "invalid": self.invalid}
