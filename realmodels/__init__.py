"""Real trained ONNX models shipped in PyPI packages, and the pipeline run over them (docs/realmodels.md)."""
