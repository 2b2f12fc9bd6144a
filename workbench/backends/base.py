"""The backend protocol (in the style of Polygraphy's runners): declared capabilities, no attribute sniffing.

``backend.build(variant, shapes, options) -> Engine`` and ``engine.run(feeds) -> {name: array}``.

A :class:`Backend` *declares* what it can do, and callers (``builds``, ``backends.cache``, ``measure``,
``flow``) read only these declarations:

* ``serializes_engines``: builds produce bytes (``engine.serialized``, ``engine.save(path)``) that
  ``load_engine(variant, data, record)`` turns back into an engine; the engine cache and ``out_dir``
  engine files apply.
* ``uses_timing_cache``: builds read/write a timing cache file (``BuildOptions.timing_cache``).
* ``builds_without_gpu``: a build needs no GPU (ahead-of-time compilation).
* ``device_kind``: ``"cpu"`` or ``"cuda"``: where engines run.
* ``supports(precision) -> (ok, reason)``: from the precision registry's backend facts plus what this
  backend finds on this machine.

An :class:`Engine` implements its own measurement:

* ``timed_call(feeds) -> TimedCall``: inputs prepared once (device buffers, IOBinding), then the one
  call a latency iteration makes, which timer brackets it and on which CUDA stream;
* ``synchronize()``: wait for queued work (no-op on host backends);
* ``profile_layers(feeds, ...)``: the per-layer table (``workbench.measure.layers``) or
  ``BackendUnavailable`` when the engine has no per-layer profiler.

Backends register by name (:func:`register_backend`); the CLI's ``--backend`` choices are
:func:`backend_names`. docs/extending.md shows a new backend in one file.
"""
from __future__ import annotations

import abc
import json
import os
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, ClassVar, Mapping

import numpy as np

from ..data import ShapeMap
from ..errors import BackendUnavailable, UnsupportedError, UsageError
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


@dataclass
class TimedCall:
    """What one latency iteration calls: ``fn(*args)``, bracketed by ``timer`` on ``stream``.

    ``timer``: ``"host"`` (perf_counter around the call), ``"host-sync"`` (host timers around a call
    that synchronizes its stream before returning) or ``"cuda-events"`` (CUDA events recorded on
    ``stream`` around an asynchronous enqueue). ``cleanup`` releases what the preparation allocated."""

    fn: Callable
    args: tuple = ()
    timer: str = "host"
    stream: Any = 0
    cleanup: Callable | None = None
    #: what the timed interval covers, in words (recorded with the latency result)
    scope: str = ""


class Engine(abc.ABC):
    """A built, runnable variant. Implements its own timing (:meth:`timed_call`) and per-layer profiling
    (:meth:`profile_layers`); ``measure`` calls these and never inspects the engine's attributes."""

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

    def timed_call(self, feeds: Mapping[str, np.ndarray]) -> TimedCall:
        """Prepare ``feeds`` once and return the call one timed iteration makes (default: host timers
        around :meth:`run`)."""
        prepared = dict(feeds)
        return TimedCall(self.run, (prepared,), "host")

    def synchronize(self) -> None:
        """Wait until queued work is done (no-op for engines whose calls return when done)."""

    def profile_layers(self, feeds: Mapping[str, np.ndarray], *, iterations: int = 20, warmup: int = 3,
                       progress: bool = False, **opts):
        """Per-layer timings as a tidy DataFrame (see :func:`workbench.measure.layers.profile_layers`)."""
        raise BackendUnavailable(f"per-layer profiling is not available for {type(self).__name__}",
                                 hint="supported: ONNX Runtime and TensorRT engines")

    def save(self, path: str | os.PathLike):
        """Write the serialized engine (backends with ``serializes_engines``)."""
        raise UnsupportedError(f"{self.backend.name} engines are not serialized; nothing to save")

    def close(self) -> None:  # pragma: no cover - default no-op
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.variant.name} on {self.backend.name}>"


class Backend(abc.ABC):
    """A way to build and run variants. Subclasses set the declared capabilities below."""

    name: str = "?"
    #: builds produce bytes: ``engine.serialized`` / ``engine.save()`` / :meth:`load_engine` (engine cache, files)
    serializes_engines: ClassVar[bool] = False
    #: builds use a timing cache file (``BuildOptions.timing_cache``)
    uses_timing_cache: ClassVar[bool] = False
    #: a build needs no GPU (ahead-of-time compilation)
    builds_without_gpu: ClassVar[bool] = True
    #: where engines run: "cpu" or "cuda"
    device_kind: str = "cpu"

    @abc.abstractmethod
    def available(self) -> tuple[bool, str]:
        """(usable here?, reason/what to install if not)."""

    @abc.abstractmethod
    def version(self) -> str: ...

    @abc.abstractmethod
    def device(self) -> dict[str, Any]:
        """Device facts for records and cache keys (name, compute capability, ...)."""

    def supports(self, precision: str) -> tuple[bool, str]:
        """(can build/run this precision here?, reason if not or a "supported, but..." note).

        Default: the precision registry's facts for this backend (``Recipe.unsupported_on`` /
        ``Recipe.notes_on``, keyed by backend name)."""
        from ..precision import get_recipe

        recipe = get_recipe(precision, missing_ok=True)
        if recipe is None:
            return False, f"unknown precision {precision!r}"
        if self.name in recipe.unsupported_on:
            return False, recipe.unsupported_on[self.name]
        return True, recipe.notes_on.get(self.name, "")

    def load_engine(self, variant: Variant, serialized: bytes, record: BuildRecord) -> Engine:
        """An engine around already-built bytes (engine cache hits, files); ``serializes_engines`` backends."""
        raise UnsupportedError(f"backend {self.name} has no serialized engines to load")

    def unsupported_op_type(self, error: Exception, precision: str) -> str | None:
        """The op type a failed build says has no kernel in ``precision`` on this backend, when the backend
        can tell; ``build_variants`` then keeps that op type in fp32 through the recipe and rebuilds."""
        return None

    def check_can_build(self, variant: Variant) -> None:
        """Raise BackendUnavailable / UnsupportedError (with the reason) before any build work starts."""
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
    """Registered backend names, in registration order (the CLI's ``--backend`` choices)."""
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
