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


def _random_order_line(config) -> str:
    seed = getattr(config.option, "randomly_seed", None)
    if seed is None or not config.pluginmanager.has_plugin("randomly"):
        return "test order: file order (pytest-randomly not active: pip install pytest-randomly, or -p no:randomly was given)"
    return (f"test order: random, pytest-randomly seed {seed} (same order again: -p randomly --randomly-seed={seed}; "
            "file order: -p no:randomly)")


def pytest_sessionstart(session):
    """Print the random-order seed even under -q (pytest-randomly's own header line is hidden by -q)."""
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None:
        tr.write_line(_random_order_line(session.config))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Repeat it at the end, next to the failures, so a failing order can be replayed."""
    terminalreporter.write_line(_random_order_line(config))


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
