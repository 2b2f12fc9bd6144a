"""Atomic file writes: a temp file in the same folder, fsync, then ``os.replace``.

A crash or error mid-write leaves the previous file (or none) — never a half-written one.
An output path that cannot be written (unwritable folder, a file in the way, a folder given where
a file is expected) raises :class:`~workbench.errors.OutputError` (a ``WorkbenchError`` and an
``OSError``) naming the path.
"""
from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .errors import OutputError


def _why(e: OSError) -> str:
    return e.strerror or str(e)


def ensure_dir(path: str | os.PathLike) -> Path:
    """Create folder ``path`` (and parents) if needed; :class:`OutputError` when it cannot be."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"cannot use {path} as an output folder: it is a file", hint="give a folder path")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create output folder {path}: {_why(e)}") from e
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder", hint="give a file path")
    ensure_dir(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise OutputError(f"cannot write {path}: {_why(e)}") from e
    try:
        # mkstemp creates 0600; give the file the permissions a plain open() would (0666 & ~umask).
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError):
            raise OutputError(f"cannot write {path}: {_why(e)}") from e
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


# ------------------------------------------------------------------------------ the JSON policy
# One serialization policy for every record, frame and CLI output (strict JSON: parsers reject the
# NaN/Infinity literals): NaN (and pandas NA) -> null, +-Inf -> the strings "inf" / "-inf", numpy
# scalars -> Python numbers, numpy arrays and tuples -> lists. Readers turn "inf"/"-inf"/null back into
# floats with :func:`json_float`. Tables are written by :func:`workbench.records.frame_to_json`.
def json_number(v: Any) -> Any:
    """One scalar under the JSON policy (bools stay bools, numpy numbers become Python numbers)."""
    if isinstance(v, bool) or type(v).__name__ == "bool_":
        return bool(v)
    return json_safe(v)


def json_float(v: Any) -> float:
    """A float back from the JSON policy: null -> NaN, "inf"/"-inf" -> +-Inf (also reads the older
    ``{"$float": "inf"}`` and ``"nan"`` spellings)."""
    if v is None:
        return math.nan
    if isinstance(v, dict) and set(v) == {"$float"}:
        v = v["$float"]
    if isinstance(v, str):
        return float(v)  # "inf", "-inf", "nan"
    return float(v)


def json_safe(obj: Any) -> Any:
    """``obj`` under the JSON policy: NaN → null, ±Inf → ``"inf"`` / ``"-inf"``, numpy scalars → Python
    numbers, numpy arrays / tuples → lists. Strict parsers reject the NaN/Infinity literals."""
    if isinstance(obj, float):
        if math.isnan(obj):
            return None
        if math.isinf(obj):
            return "inf" if obj > 0 else "-inf"
        return obj
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):  # numpy scalar
        return json_safe(obj.item())
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if _is_pandas_na(obj):
        return None
    return obj


def _is_pandas_na(obj: Any) -> bool:
    """pandas.NA / NaT (checked only when pandas is already imported; never imports it)."""
    pd = sys.modules.get("pandas")
    return pd is not None and (obj is pd.NA or obj is pd.NaT)


def dumps_json(obj: Any, *, indent: int | None = 2) -> str:
    """Strict JSON text (no NaN/Infinity literals); unknown objects become ``str(obj)``."""
    return json.dumps(json_safe(obj), indent=indent, sort_keys=False, default=str, allow_nan=False)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, dumps_json(obj) + "\n")
