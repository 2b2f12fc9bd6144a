"""Shared fixtures: real model files (sample models, the onnx wheel's light models) and guards.

Light models ship in the onnx wheel (onnx/backend/test/data/light): real architectures with generated
constant weights — structure and timings are real, accuracy on them is meaningless.
"""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import onnx
import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_models"
LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def light_path(name: str) -> Path:
    """Path of ``light_<name>.onnx`` (resnet50, densenet121, inception_v1, squeezenet, ...)."""
    p = LIGHT / f"light_{name}.onnx"
    if not p.exists():
        pytest.skip(f"{p} not shipped with this onnx version")
    return p


@pytest.fixture
def light(tmp_path):
    """Copy a light model into tmp_path (tests must not touch site-packages): light('resnet50')."""
    def get(name: str) -> Path:
        dst = tmp_path / f"light_{name}.onnx"
        shutil.copy(light_path(name), dst)
        return dst
    return get


@pytest.fixture
def sample(tmp_path):
    """Copy a committed sample model (and any .npz with the same stem prefix) into tmp_path."""
    def get(name: str) -> Path:
        src = SAMPLES / name
        if not src.exists():
            pytest.fail(f"sample model {src} missing: run `make samples`")
        dst = tmp_path / src.name
        shutil.copy(src, dst)
        return dst
    return get


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def trt_backend():
    """The `tensorrt` backend where it can run engines (TensorRT + an NVIDIA GPU); skips with the reason elsewhere."""
    pytest.importorskip("tensorrt", reason="`tensorrt` not installed (pip install 'trt-workbench[trt]' on a GPU machine)")
    from workbench.backends import get_backend

    b = get_backend("tensorrt")
    ok, why = b.can_run()
    if not ok:
        pytest.skip(f"TensorRT cannot run here: {why}")
    return b
