"""Measurement: end-to-end latency (``latency``), per-layer timings (``layers``) and their mapping
back to ONNX nodes (``mapping``). See docs/profiling.md."""
from .latency import LatencyResult, latency_frame, measure_latency  # noqa: F401
from .layers import Coverage, Profile, coverage, profile, profile_layers, save_layers_csv  # noqa: F401
from .mapping import UNMAPPED, spread  # noqa: F401

__all__ = ["measure_latency", "LatencyResult", "latency_frame", "profile_layers", "profile", "Profile",
           "coverage", "Coverage", "save_layers_csv", "spread", "UNMAPPED"]
