"""Engine cache: reuse a built engine when nothing that shapes it has changed.

Key = sha256 of (variant hash, backend name, backend version, device identity, build options that
change the engine (``BuildOptions.cache_json()``), shapes). The device identity is the GPU name and
compute capability, or ``cpu-aot`` for TensorRT-RTX builds made without a GPU.

An entry is ``<key>.engine`` plus ``<key>.json`` (the BuildRecord, holding the engine's sha256 and
size). Every lookup re-hashes the engine file; a missing, truncated or altered entry is deleted and
counted as a miss — never trusted. Writes are atomic (engine first, record last: a record only exists
for a complete engine).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

from ..data import ShapeMap
from ..errors import CacheError, WorkbenchError
from ..fsutil import atomic_write_bytes
from ..records import BuildRecord
from ..variant import Variant
from .base import Backend, BuildOptions, Engine


def device_key(backend: Backend) -> str:
    """GPU name + compute capability, or ``cpu-aot`` (RTX without a GPU), or the device type."""
    dev = backend.device()
    if dev.get("type") == "cpu-aot":
        return "cpu-aot"
    if dev.get("compute_capability"):
        return f"{dev.get('name', '?')} sm{dev['compute_capability']}"
    return f"{dev.get('type', '?')}:{dev.get('name', '?')}"


def cache_key(variant: Variant, backend: Backend, shapes: ShapeMap | str | Mapping | None,
              options: BuildOptions) -> str:
    payload = {
        "variant_hash": variant.hash,
        "backend": backend.name,
        "backend_version": backend.version(),
        "device": device_key(backend),
        "options": options.cache_json(),
        "shapes": ShapeMap.parse(shapes).to_json(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class EngineCache:
    """A folder of validated engines. ``get_or_build(backend, variant, shapes, options)`` is the entry point.

    Counters: ``hits``, ``misses``, ``invalid`` (entries found corrupt and removed); ``last_reason``
    says why the last lookup missed.
    """

    def __init__(self, directory: str | os.PathLike):
        self.dir = Path(directory)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CacheError(f"cannot create engine cache folder {self.dir}: {e}") from None
        self.hits = 0
        self.misses = 0
        self.invalid = 0
        self.last_reason = ""

    def __repr__(self) -> str:
        return f"<EngineCache {str(self.dir)!r} hits={self.hits} misses={self.misses} invalid={self.invalid}>"

    def paths(self, key: str) -> tuple[Path, Path]:
        return self.dir / f"{key}.engine", self.dir / f"{key}.json"

    def _drop(self, key: str) -> None:
        for p in self.paths(key):
            try:
                p.unlink()
            except FileNotFoundError:
                pass

    def lookup(self, key: str) -> tuple[bytes, BuildRecord] | None:
        """(engine bytes, record) of a valid entry, else None (a bad entry is removed; see ``last_reason``)."""
        eng_path, rec_path = self.paths(key)
        if not rec_path.exists():
            self.last_reason = "not in cache"
            return None
        try:
            record = BuildRecord.load(rec_path)
            data = eng_path.read_bytes()
        except (WorkbenchError, OSError, TypeError) as e:
            self.invalid += 1
            self.last_reason = f"cache entry unreadable ({e}); rebuilt"
            self._drop(key)
            return None
        digest = hashlib.sha256(data).hexdigest()
        if len(data) != record.engine_bytes or digest != record.engine_sha256 or record.cache_key not in ("", key):
            self.invalid += 1
            self.last_reason = (f"cache entry corrupt: engine has {len(data)} bytes sha256 {digest[:12]}, record "
                                f"says {record.engine_bytes} bytes sha256 {record.engine_sha256[:12]}; removed and rebuilt")
            self._drop(key)
            return None
        return data, record

    def put(self, key: str, serialized: bytes, record: BuildRecord) -> Path:
        """Store an engine and its record (atomic; the record is written after the engine)."""
        eng_path, rec_path = self.paths(key)
        digest = hashlib.sha256(serialized).hexdigest()
        if record.engine_sha256 and record.engine_sha256 != digest:
            raise CacheError("engine bytes do not match their record's sha256; not caching")
        stored = BuildRecord.from_json({**record.to_json(), "cache_key": key, "cache_hit": False, "status": "ok",
                                        "engine_sha256": digest, "engine_bytes": len(serialized),
                                        "engine_file": eng_path.name})
        atomic_write_bytes(eng_path, serialized)
        stored.save(rec_path)
        return eng_path

    def get_or_build(self, backend: Backend, variant: Variant, shapes: ShapeMap | str | Mapping | None = None,
                     options: BuildOptions | None = None, **build_kw: Any) -> Engine:
        """A cached engine (``record.cache_hit=True``, status ``cached``) or a fresh build stored here.

        The backend must declare ``serializes_engines`` (``load_engine`` and ``engine.serialized``).
        """
        options = options or BuildOptions()
        if not backend.serializes_engines:
            raise CacheError(f"backend {backend.name} has no serialized engines to cache")
        key = cache_key(variant, backend, shapes, options)
        found = self.lookup(key)
        if found is not None:
            data, stored = found
            self.hits += 1
            record = BuildRecord.from_json({**stored.to_json(), "variant": variant.name, "cache_hit": True,
                                            "status": "cached", "cache_key": key, "reason": ""})
            return backend.load_engine(variant, data, record)
        self.misses += 1
        reason = self.last_reason
        engine = backend.build(variant, shapes, options, **build_kw)
        engine.record.cache_key = key
        engine.record.cache_hit = False
        if reason and reason != "not in cache":
            engine.record.reason = reason
        self.put(key, engine.serialized, engine.record)
        return engine

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "invalid": self.invalid}
