"""Plain dataclass records with versioned JSON.

Every record carries ``schema_version`` and ``kind``; :func:`load_record` reads any of them back.
Each record class has its own ``version`` (default :data:`SCHEMA_VERSION`); when its layout changes the
class raises ``version`` and implements ``migrate(d, from_version)``, which rewrites older JSON into the
current layout before the fields are read. Readers ignore unknown fields (forward compatible), so a
record written by a newer workbench or with another TensorRT version still loads.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Type, TypeVar

from .errors import WorkbenchError
from .fsutil import atomic_write_json, json_float, json_safe

SCHEMA_VERSION = 1
T = TypeVar("T", bound="Record")
_KINDS: dict[str, Type["Record"]] = {}


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class Record:
    """Base: ``to_json()`` / ``from_json()`` / ``save()`` / ``load()`` with a schema version."""

    kind: ClassVar[str] = "record"
    #: the layout version this class writes; older JSON goes through :meth:`migrate` when read
    version: ClassVar[int] = SCHEMA_VERSION

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        _KINDS[cls.kind] = cls

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {"schema_version": self.version, "kind": self.kind, **d}

    @classmethod
    def migrate(cls, d: dict[str, Any], from_version: int) -> dict[str, Any]:
        """Rewrite JSON of an older ``schema_version`` into this version's layout (a copy)."""
        return d

    @classmethod
    def from_json(cls: Type[T], d: dict[str, Any]) -> T:
        v = d.get("schema_version")
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise WorkbenchError(f"record has no valid schema_version: {v!r}")
        if v < cls.version:
            d = cls.migrate(json.loads(json.dumps(d)), v)  # a deep copy: the caller's dict stays as read
        # v > cls.version: a newer writer; read the fields we know, ignore the rest
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: val for k, val in d.items() if k in names})

    def save(self, path: str | os.PathLike) -> Path:
        return atomic_write_json(path, self.to_json())

    @classmethod
    def load(cls: Type[T], path: str | os.PathLike) -> T:
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise WorkbenchError(f"cannot read record {path}: {e}") from None
        return cls.from_json(d)


def load_record(path_or_dict: str | os.PathLike | dict) -> Record:
    """Load any record, dispatching on its ``kind`` field."""
    d = path_or_dict if isinstance(path_or_dict, dict) else json.loads(Path(path_or_dict).read_text())
    cls = _KINDS.get(d.get("kind", ""))
    if cls is None:
        raise WorkbenchError(f"unknown record kind {d.get('kind')!r}")
    return cls.from_json(d)


def frame_to_json(df) -> dict[str, Any]:
    """A tidy DataFrame as ``{"columns", "dtypes", "rows"}`` under the JSON policy (NaN null, Inf "inf");
    list cells (such as ``onnx_nodes``) stay lists. Metadata belongs in columns or in the record that holds
    the frame, not in ``DataFrame.attrs`` (which ``pd.concat`` drops and this does not write)."""
    return {"columns": [str(c) for c in df.columns], "dtypes": {str(c): str(t) for c, t in df.dtypes.items()},
            "rows": [[json_safe(v) for v in row] for row in df.itertuples(index=False, name=None)]}


def frame_from_json(d: dict | None):
    """The DataFrame of :func:`frame_to_json` (numeric and bool columns restored; "inf" back to inf)."""
    import pandas as pd

    if not d:
        return pd.DataFrame()
    df = pd.DataFrame(d.get("rows") or [], columns=d.get("columns") or None)
    for c, t in (d.get("dtypes") or {}).items():
        if c in df.columns and (t.startswith("float") or t.startswith("int")):
            df[c] = pd.to_numeric(df[c].map(_number_cell), errors="coerce")
        elif c in df.columns and t == "bool":
            df[c] = df[c].astype(bool)
        elif c in df.columns and t == "object" and _numbers_with_inf(df[c]):
            df[c] = df[c].map(lambda v: json_float(v) if isinstance(v, str) else v)  # mixed numbers/bools column
    return df


def _numbers_with_inf(col) -> bool:
    """An object column of numbers/bools in which the policy wrote infinities as "inf" / "-inf"."""
    seen_inf = False
    for v in col:
        if isinstance(v, str):
            if v not in ("inf", "-inf"):
                return False
            seen_inf = True
        elif v is not None and not isinstance(v, (int, float, bool)):
            return False
    return seen_inf


def _number_cell(v):
    if v is None or isinstance(v, (str, dict)):
        try:
            return json_float(v)
        except (TypeError, ValueError, KeyError):
            return math.nan
    return v


def host_info() -> dict[str, str]:
    return {"python": platform.python_version(), "platform": platform.platform(), "machine": platform.machine(),
            "processor": platform.processor() or platform.machine(), "cpu_count": str(os.cpu_count())}


@dataclass
class BuildRecord(Record):
    """What was built, how, and with which software: one per (variant, backend) build."""

    kind: ClassVar[str] = "build"
    variant: str = ""
    precision: str = ""
    variant_hash: str = ""
    source_hash: str = ""
    backend: str = ""
    backend_version: str = ""
    device: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    shapes: dict = field(default_factory=dict)
    status: str = "ok"  # ok | skipped | failed | cached
    reason: str = ""
    build_time_s: float = 0.0
    engine_file: str = ""
    engine_bytes: int = 0
    engine_sha256: str = ""
    onnx_file: str = ""
    cache_key: str = ""
    cache_hit: bool = False
    native_log: list = field(default_factory=list)  # native library lines written during the build (workbench.logs)
    created: str = field(default_factory=now_iso)
    host: dict = field(default_factory=host_info)
    versions: dict = field(default_factory=dict)
