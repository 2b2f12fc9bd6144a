"""The one small backend interface.

``backend.build(variant, shapes, options) -> Engine`` and ``engine.run(feeds) -> {name: array}``.
Profiling hooks (``Engine.profile_layers``) are added by ``workbench.measure``.
"""
from __future__ import annotations

import abc
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping

import numpy as np

from ..data import ShapeMap
from ..errors import UsageError
from ..records import BuildRecord
from ..variant import Variant


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
    except (TypeError, ValueError):
        return False
    return True


@dataclass
class BuildOptions:
    """Options shared by all backends; each backend reads the ones it knows.

    workspace_mb: TensorRT workspace pool limit. opt_level: TensorRT builder optimization level (0-5).
    threads: ONNX Runtime intra-op threads (0 = ORT default). timing_cache: path of a TensorRT timing
    cache file (created, then reused). progress: show a progress bar. extra: backend-specific.
    """

    workspace_mb: int | None = None
    opt_level: int | None = None
    threads: int = 0
    timing_cache: str | None = None
    progress: bool = True
    profiling: bool = False
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """JSON-able fields; ``extra`` entries that are runtime objects (e.g. a cancel Event) are left out."""
        extra = self.extra
        d = asdict(replace(self, extra={}))
        d["extra"] = {k: v for k, v in extra.items() if _jsonable(v)}
        return d

    def cache_json(self) -> dict:
        """The options that change what is built (for cache keys): not progress/profiling/cache paths."""
        d = self.to_json()
        for k in ("progress", "timing_cache", "profiling"):
            d.pop(k, None)
        return d


class Engine(abc.ABC):
    """A built, runnable variant."""

    backend: "Backend"
    variant: Variant
    record: BuildRecord

    @property
    @abc.abstractmethod
    def input_names(self) -> list[str]: ...

    @property
    @abc.abstractmethod
    def output_names(self) -> list[str]: ...

    @abc.abstractmethod
    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once; returns host numpy arrays keyed by output name."""

    def close(self) -> None:  # pragma: no cover - default no-op
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.variant.name} on {self.backend.name}>"


class Backend(abc.ABC):
    name: str = "?"

    @abc.abstractmethod
    def available(self) -> tuple[bool, str]:
        """(usable here?, reason/what to install if not)."""

    @abc.abstractmethod
    def version(self) -> str: ...

    @abc.abstractmethod
    def device(self) -> dict[str, Any]:
        """Device facts for records and cache keys (name, compute capability, ...)."""

    def supports(self, precision: str) -> tuple[bool, str]:
        """(can build/run this precision here?, reason if not)."""
        return True, ""

    def unsupported_op_type(self, error: Exception, precision: str) -> str | None:
        """The op type a failed build says has no kernel in ``precision`` on this backend, when the backend
        can tell; ``build_variants`` then keeps that op type in fp32 through the recipe and rebuilds."""
        return None

    def check_can_build(self, variant: Variant) -> None:
        """Raise BackendUnavailable / UnsupportedError (with the reason) before any build work starts."""
        from ..errors import BackendUnavailable, UnsupportedError

        ok, why = self.available()
        if not ok:
            raise BackendUnavailable(why)
        ok, why = self.supports(variant.precision)
        if not ok:
            raise UnsupportedError(f"{variant.precision} on {self.name}: {why}")

    @abc.abstractmethod
    def build(self, variant: Variant, shapes: ShapeMap | str | Mapping | None = None,
              options: BuildOptions | None = None) -> Engine: ...

    def __repr__(self) -> str:
        return f"<workbench backend {self.name}>"


_REGISTRY: dict[str, Any] = {}


def register_backend(name: str, factory) -> None:
    _REGISTRY[name] = factory


def backend_names() -> list[str]:
    return list(_REGISTRY)


def get_backend(name: str | Backend, **kwargs) -> Backend:
    """Backend by name: ``onnxruntime`` (CPU), ``onnxruntime-cuda``, ``tensorrt``, ``tensorrt-rtx``."""
    if isinstance(name, Backend):
        return name
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise UsageError(f"unknown backend {name!r}; choose from {', '.join(_REGISTRY)}") from None
    return factory(**kwargs)
