"""Measurement: end-to-end latency (``latency``), per-layer timings (``layers``) and their mapping
back to ONNX nodes (``mapping``)."""
