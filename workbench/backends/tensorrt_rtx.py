"""TensorRT for RTX (``tensorrt-rtx``, module ``tensorrt_rtx``): the TensorRT base with RTX's differences.

* Builds need no GPU: CPU-only ahead-of-time compilation (``builds_without_gpu``); without a GPU the
  device is ``cpu-aot`` and the engine cache keys on that.
* Engines run on compute capability 7.5 / 8.6 / 8.9 / 12.x (:meth:`TensorRTRTXBackend.runs_on`; the
  TensorRT-RTX 1.x support matrix: Turing, Ampere *RTX* 8.6, Ada, Blackwell — not the data-center 8.0,
  9.0 or 10.0 parts, although the 1.7 bindings list an ``SM80`` target); a default build is portable
  across :data:`RTX_DEFAULT_TARGETS` (8.6, 8.9, 12.0 — not Turing), other targets are chosen with
  ``BuildOptions.extra["compute_capabilities"] = ["7.5", ...]``, and loading an engine on a GPU it was
  not built for fails with a rebuild hint (:func:`rtx_engine_targets`).
* No BF16 and no INT8 on Turing (TensorRT-RTX support matrix): minimum compute capability 8.0 for both.
* Contexts are created with an ``IRuntimeConfig``: RTX compiles shape-specialized kernels at run time
  (lazily by default, so timed iterations could mix fallback and specialized kernels); the workbench asks
  for ``EAGER`` specialization and keeps a runtime cache (``BuildOptions.extra["runtime_cache"]`` names
  its file; else it lives with the engine object), both recorded in ``TrtEngine.runtime_facts``.
* The timing-cache API is a deprecated no-op that forces a GPU query, so it is not used
  (``uses_timing_cache`` False).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

from ..device import cuda_device_info
from ..errors import RunError
from ..fsutil import atomic_write_bytes
from ..records import BuildRecord
from .base import register_backend
from .tensorrt import TensorRTBase, TrtEngine, cc_value

log = logging.getLogger("workbench.tensorrt")

#: Compute capabilities an RTX engine built with default settings runs on (NVIDIA's support matrix).
RTX_DEFAULT_TARGETS = ("8.6", "8.9", "12.0")
#: Precisions whose minimum compute capability on RTX is higher than the tensor-core minimum (no Turing).
RTX_MIN_CC = {"bf16": 8.0, "int8": 8.0}


def rtx_runs_on(cc: float) -> bool:
    """TensorRT-RTX engines execute on Turing (7.5), Ampere RTX (8.6), Ada (8.9) and Blackwell RTX (12.x):
    the compute capabilities of the TensorRT-RTX 1.x support matrix (A100 8.0, H100/H200 9.0 and B200
    10.0 are not among them)."""
    return cc in (7.5, 8.6, 8.9) or cc >= 12.0


def rtx_engine_targets(cc: float, applied: Mapping) -> bool | None:
    """Does an RTX engine built with ``applied["compute_capabilities"]`` target a GPU of compute capability
    ``cc``? Default builds cover 8.6/8.9/12.0 but not Turing (7.5), which must be targeted explicitly
    (TensorRT-RTX support matrix and "CPU-only AOT" docs). None when unknown (``current`` or no record)."""
    targets = applied.get("compute_capabilities")
    if isinstance(targets, str) and targets.startswith("default"):
        return cc in (8.6, 8.9) or cc >= 12.0
    if not isinstance(targets, list) or any(str(t).lower() == "current" for t in targets):
        return None
    wanted = {cc_value(t) for t in targets if not str(t).endswith("x")}
    return cc in wanted or (cc >= 12.0 and any(str(t).startswith("12") for t in targets))


class TensorRTRTXBackend(TensorRTBase):
    """TensorRT for RTX: builds ahead of time without a GPU; runs on RTX-class compute capabilities."""

    module_name = "tensorrt_rtx"
    name = "tensorrt-rtx"
    builds_without_gpu = True
    uses_timing_cache = False

    def runs_on(self, cc: float) -> bool:
        return rtx_runs_on(cc)

    def min_compute_capability(self, precision: str) -> float | None:
        need = super().min_compute_capability(precision)
        floor = RTX_MIN_CC.get(precision)
        if floor is None:
            return need
        return floor if need is None else max(need, floor)

    def device_without_gpu(self) -> dict[str, Any]:
        return {"type": "cpu-aot", "name": "cpu-aot", "targets": list(RTX_DEFAULT_TARGETS),
                "note": cuda_device_info(self.device_id).get("error", "no GPU")}

    def default_targets(self) -> str | None:
        return "default (" + ", ".join(RTX_DEFAULT_TARGETS) + ")"

    def timing_cache_note(self) -> str:
        return ("not used: TensorRT-RTX timing cache is a deprecated no-op and forces a GPU query "
                "(prevents CPU-only AOT builds)")

    def check_engine_targets(self, engine: TrtEngine) -> None:
        gpu = self._gpu() or {}
        cc = cc_value(gpu.get("compute_capability"))
        applied = (engine.record.options or {}).get("applied", {}) if engine.record is not None else {}
        if cc is not None and rtx_engine_targets(cc, applied) is False:
            raise RunError(f"the TensorRT-RTX engine of {engine.variant.name} was built for compute capabilities "
                           f"{applied.get('compute_capabilities')}, not for {gpu.get('name')} "
                           f"({gpu.get('compute_capability')})",
                           hint=f"rebuild with BuildOptions(extra={{'compute_capabilities': "
                                f"['{gpu.get('compute_capability')}']}})")


    def runtime_config(self, engine, record: BuildRecord | None) -> tuple[Any, dict]:
        """EAGER kernel specialization (no lazy recompiles inside timed runs) and a runtime cache."""
        trt = self.trt
        if not hasattr(engine, "create_runtime_config"):
            return None, {"kernel_specialization": "not supported by this version"}
        config = engine.create_runtime_config()
        facts: dict[str, Any] = {}
        strategy = getattr(trt, "DynamicShapesKernelSpecializationStrategy", None)
        if strategy is not None and hasattr(config, "dynamic_shapes_kernel_specialization_strategy"):
            config.dynamic_shapes_kernel_specialization_strategy = strategy.EAGER
            facts["kernel_specialization"] = "EAGER"
        if hasattr(config, "create_runtime_cache"):
            cache = config.create_runtime_cache()
            path = ((record.options or {}).get("extra", {}) if record is not None else {}).get("runtime_cache")
            if path and Path(path).is_file():
                data = Path(path).read_bytes()
                if not cache.deserialize(data):
                    log.warning("runtime cache %s is unreadable; starting an empty one", path)
                facts["runtime_cache_loaded_bytes"] = len(data)
            if not config.set_runtime_cache(cache):
                raise RunError("TensorRT-RTX refused its runtime cache")
            facts["runtime_cache"] = str(path) if path else "in memory (set BuildOptions.extra['runtime_cache'] to keep it)"
            facts["_cache"] = cache
        return config, facts

    def save_runtime_cache(self, runtime_config, facts: dict) -> None:
        cache, path = facts.get("_cache"), facts.get("runtime_cache", "")
        if cache is None or not path or path.startswith("in memory"):
            return
        data = bytes(memoryview(cache.serialize()))
        atomic_write_bytes(Path(path), data)
        facts["runtime_cache_saved_bytes"] = len(data)


register_backend("tensorrt-rtx", lambda **kw: TensorRTRTXBackend(**kw))
