"""NVIDIA device facts through cuda-python (optional) and NVML (nvidia-ml-py, optional).

Nothing here is required: on a machine without a GPU or without those packages, the functions return
a dict with an ``error`` entry instead of raising.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any


def _check(err, what: str):
    # cuda-python returns (err, *values); err is a CUresult / cudaError_t enum with value 0 on success.
    code = int(getattr(err, "value", err))
    if code != 0:
        raise RuntimeError(f"{what} failed with {err}")


@lru_cache(maxsize=8)
def cuda_device_info(device_id: int = 0) -> dict[str, Any]:
    """{name, compute_capability "9.0", total_memory_bytes, driver_version, multiprocessors} or {error}."""
    try:
        from cuda.bindings import driver as cu  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cuda as cu  # older cuda-python
        except ImportError:
            return {"error": "cuda-python not installed (pip install cuda-python)"}
    try:
        (err,) = cu.cuInit(0)
        _check(err, "cuInit")
        err, n = cu.cuDeviceGetCount()
        _check(err, "cuDeviceGetCount")
        if device_id >= n:
            return {"error": f"no CUDA device {device_id} (found {n})"}
        err, dev = cu.cuDeviceGet(device_id)
        _check(err, "cuDeviceGet")
        err, name = cu.cuDeviceGetName(256, dev)
        _check(err, "cuDeviceGetName")
        attr = cu.CUdevice_attribute
        err, major = cu.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev)
        _check(err, "cuDeviceGetAttribute")
        err, minor = cu.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev)
        _check(err, "cuDeviceGetAttribute")
        err, sms = cu.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev)
        _check(err, "cuDeviceGetAttribute")
        err, mem = cu.cuDeviceTotalMem(dev)
        _check(err, "cuDeviceTotalMem")
        err, drv = cu.cuDriverGetVersion()
        _check(err, "cuDriverGetVersion")
    except Exception as e:  # no driver, no device
        return {"error": str(e)}
    return {
        "name": name.split(b"\0", 1)[0].decode(errors="replace"),
        "compute_capability": f"{major}.{minor}",
        "multiprocessors": int(sms),
        "total_memory_bytes": int(mem),
        "cuda_driver_version": f"{drv // 1000}.{(drv % 1000) // 10}",
    }


def gpu_memory_used(device_id: int = 0) -> dict[str, Any]:
    """GPU memory in use via NVML (nvidia-ml-py): {used_bytes, total_bytes, driver} or {error}."""
    try:
        import pynvml
    except ImportError:
        return {"error": "nvidia-ml-py not installed"}
    try:
        pynvml.nvmlInit()
        try:
            h = pynvml.nvmlDeviceGetHandleByIndex(device_id)
            m = pynvml.nvmlDeviceGetMemoryInfo(h)
            drv = pynvml.nvmlSystemGetDriverVersion()
            return {"used_bytes": int(m.used), "total_bytes": int(m.total),
                    "driver": drv.decode() if isinstance(drv, bytes) else str(drv)}
        finally:
            pynvml.nvmlShutdown()
    except Exception as e:
        return {"error": str(e)}
