"""TensorRT-RTX ahead-of-time build times (CPU only) per model and precision, and engine-cache hits.

Rows: build time of each sample model and light ResNet-50 at fp32/fp16 (no peer: trtexec and
Polygraphy need full TensorRT and a GPU); an engine-cache hit against an uncached build of ResNet-50.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from _util import spread, timeit

ROOT = Path(__file__).resolve().parents[1]

MODELS = [
    ("digits_cnn", ROOT / "sample_models" / "digits_cnn.onnx", "image:1x1x8x8/32x1x8x8/64x1x8x8"),
    ("transformer_block", ROOT / "sample_models" / "transformer_block.onnx", "x:1x8x64/4x32x64/8x128x64"),
    ("resize_concat", ROOT / "sample_models" / "resize_concat.onnx", "x:1x3x32x32/4x3x32x32/8x3x32x32"),
    ("light_resnet50", None, None),
]


def _light(name: str) -> Path:
    import onnx

    return Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / f"light_{name}.onnx"


def run(quick: bool) -> list[dict]:
    try:
        import tensorrt_rtx  # noqa: F401
    except ImportError:
        return [{"benchmark": "build", "metric": "tensorrt-rtx build", "unit": "s", "ours": None,
                 "notes": "tensorrt_rtx not installed"}]
    import workbench
    from workbench.backends import get_backend
    from workbench.backends.base import BuildOptions
    from workbench.backends.cache import EngineCache
    from workbench.precision import make_variant
    from workbench.variant import Variant

    rows = []
    backend = get_backend("tensorrt-rtx")
    repeat = 1 if quick else 3
    opts = BuildOptions(progress=False)
    for name, path, shapes in MODELS:
        path = path or _light(name.removeprefix("light_"))
        if not path.exists():
            continue
        model = workbench.load(path)
        for prec in ("fp32", "fp16"):
            v = Variant.of(model) if prec == "fp32" else make_variant(model, prec, progress=False)
            t = timeit(lambda: backend.build(v, shapes, opts), repeat=repeat, warmup=0 if quick else 1)
            size = backend.build(v, shapes, opts).nbytes
            rows.append({"metric": f"RTX AOT build {name} {prec}", "unit": "s", "ours": t["median"],
                         "spread": spread(t), "notes": f"engine {size / 2**20:.2f} MiB, {len(model.graph.node)} nodes"})
    # engine cache: a validated hit (sha256 of the file) against an uncached build
    model = workbench.load(_light("resnet50"))
    v = Variant.of(model)
    d = Path(tempfile.mkdtemp(prefix="wb-bench-cache-"))
    try:
        cache = EngineCache(d)
        cache.get_or_build(backend, v, None, opts)
        hit = timeit(lambda: cache.get_or_build(backend, v, None, opts), repeat=repeat * 3, warmup=1)
        build = timeit(lambda: backend.build(v, None, opts), repeat=repeat, warmup=0)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    rows.append({"metric": "engine cache hit, light ResNet-50", "unit": "s", "ours": hit["median"],
                 "peer": build["median"], "peer_name": "uncached RTX build", "ratio": hit["median"] / build["median"],
                 "goal": "ratio < 0.1", "met": hit["median"] / build["median"] < 0.1, "spread": spread(hit),
                 "notes": "hit re-hashes the engine file before trusting it"})
    return rows
