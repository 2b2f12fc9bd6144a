"""Shared fixtures: real model files (sample models, the onnx wheel's light models) and guards.

Light models ship in the onnx wheel (onnx/backend/test/data/light): real architectures with generated
constant weights — structure and timings are real, accuracy on them is meaningless.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
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


# ------------------------------------------------------------------ nothing written into the repository
# Tests write only under pytest's tmp_path or $WB_ARTIFACTS. The session compares the checkout's untracked,
# ignored and modified files (git status) before and after: anything new or changed is listed at the end.
# It fails the run in CI (CI set) or with WB_REPO_GUARD=fail; WB_REPO_GUARD=off skips the check. Locally it
# only warns: other jobs (a benchmark, a merge) may write into a shared checkout during a run.
_NOT_ARTIFACTS = (".venv", ".git", ".pytest_cache", ".ruff_cache", "node_modules")


def _repo_files() -> dict[str, tuple] | None:
    try:
        r = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain=v1", "-z", "--untracked-files=all",
                            "--ignored", "--", ".", ":(exclude).venv", ":(exclude)js/node_modules"],
                           capture_output=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return None
    if r.returncode != 0:
        return None
    out: dict[str, tuple] = {}
    for entry in r.stdout.decode(errors="replace").split("\0"):
        if len(entry) < 4:
            continue
        rel = entry[3:]
        parts = Path(rel).parts
        if not parts or parts[0] in _NOT_ARTIFACTS or "__pycache__" in parts or rel.endswith(".pyc"):
            continue
        try:
            st = (ROOT / rel).stat()
            out[rel] = (entry[:2], st.st_size, st.st_mtime_ns)
        except OSError:
            out[rel] = (entry[:2], None, None)
    return out


def _repo_guard_mode() -> str:
    mode = os.environ.get("WB_REPO_GUARD", "").lower()
    if mode in ("off", "warn", "fail"):
        return mode
    return "fail" if os.environ.get("CI") else "warn"


def pytest_sessionstart(session):
    """Print the random-order seed even under -q (pytest-randomly's own header line is hidden by -q);
    note the repository's state for the write check."""
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None:
        tr.write_line(_random_order_line(session.config))
    session.config._wb_repo_before = _repo_files() if _repo_guard_mode() != "off" else None


def pytest_sessionfinish(session, exitstatus):
    before = getattr(session.config, "_wb_repo_before", None)
    if before is None:
        return
    after = _repo_files() or {}
    written = sorted(p for p, st in after.items() if before.get(p) != st)
    session.config._wb_repo_written = written
    if written and _repo_guard_mode() == "fail" and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Repeat the seed at the end, next to the failures, so a failing order can be replayed; list any
    file the run wrote into the repository."""
    written = getattr(config, "_wb_repo_written", None)
    if written:
        verdict = "FAILED" if _repo_guard_mode() == "fail" else "warning"
        terminalreporter.write_line(f"{verdict}: the tests wrote into the repository (artifacts belong in tmp_path "
                                    f"or $WB_ARTIFACTS): " + ", ".join(written[:20])
                                    + (f" and {len(written) - 20} more" if len(written) > 20 else ""),
                                    red=True, bold=True)
    terminalreporter.write_line(_random_order_line(config))


class DrawnBars:
    """tqdm.auto.tqdm drawing every update (mininterval 0) into a buffer: what a user's terminal shows (the
    mutation tests' progress-bar assertions)."""

    def __init__(self, monkeypatch):
        import functools
        import io

        import tqdm.auto

        self.buf = io.StringIO()
        monkeypatch.setattr(tqdm.auto, "tqdm", functools.partial(tqdm.auto.tqdm, file=self.buf, mininterval=0))

    def take(self) -> str:
        """The text drawn since the last take (the buffer is emptied)."""
        text = self.buf.getvalue()
        self.buf.seek(0)
        self.buf.truncate()
        return text


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


# ------------------------------------------------------------------ browser tests (tests/_browser.py)
@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> Path:
    """Screenshot folder: ``$WB_ARTIFACTS`` when set (CI can keep it), else a pytest temporary folder."""
    import _browser

    env = os.environ.get("WB_ARTIFACTS")
    d = Path(env) if env else tmp_path_factory.mktemp("screenshots")
    d.mkdir(parents=True, exist_ok=True)
    _browser.ARTIFACTS = d
    return d


@pytest.fixture(scope="module")
def browser(artifacts):
    """Debian's Chromium driven by Playwright, one per test module; skips (saying why) where either is missing."""
    from _browser import CHROMIUM, CHROMIUM_ARGS

    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (python) not installed")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A fresh 1400×900 page; the test fails if the page raised a JavaScript error."""
    pg = browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.errors = errors
    yield pg
    pg.close()
    assert not errors, f"JavaScript errors: {errors}"
