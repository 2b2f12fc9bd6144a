"""Shared pieces of the browser tests (Debian's /usr/bin/chromium through Playwright, no browser download):
the Chromium arguments, a JupyterLab / Notebook 7 server on 127.0.0.1 for one test or module, and small page
helpers. The fixtures built on them (``artifacts``, ``browser``, ``page``) are in tests/conftest.py."""
from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

#: where screenshots go: ``$WB_ARTIFACTS`` or a pytest temporary folder (set by the ``artifacts`` fixture)
ARTIFACTS: Path | None = None


def shot(page, name: str) -> Path:
    """Screenshot of ``page`` into the artifacts folder (never the repository)."""
    if ARTIFACTS is None:
        raise RuntimeError("the `artifacts` fixture (tests/conftest.py) sets the screenshot folder: request it")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path))
    return path


def open_page(page, html_path: Path) -> None:
    """Open an offline graph page and wait until the viewer is ready."""
    page.goto(html_path.as_uri())
    page.wait_for_selector(".wbg-root[data-ready='1']", timeout=30_000)


def click_item(page, name: str) -> None:
    """Centre a graph item in the view and click it with the mouse (hit-testing on the canvas)."""
    assert page.evaluate("(n) => window.__wbgraph.center(n)", name)
    page.wait_for_timeout(50)
    pos = page.evaluate("(n) => window.__wbgraph.screenPos(n)", name)
    page.mouse.click(pos["x"], pos["y"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def jupyter_server(root: Path, rundir: Path, *, app: str = "jupyterlab", env: dict | None = None,
                   timeout: float = 120) -> Iterator[tuple[str, str, Path]]:
    """JupyterLab 4 (``app="jupyterlab"``) or Notebook 7 (``"notebook"``) serving ``root`` on 127.0.0.1 at a
    free port with a random token; its config, settings, workspaces and runtime files under ``rundir`` (never
    the user's); kernels import this checkout (``PYTHONPATH``). Yields ``(url, token, log path)`` and stops the
    server afterwards. The lab exposes ``window.jupyterapp`` for the tests."""
    rundir.mkdir(parents=True, exist_ok=True)
    port, token = free_port(), secrets.token_hex(16)
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "JUPYTER_CONFIG_DIR": str(rundir / "cfg"),
                "JUPYTERLAB_SETTINGS_DIR": str(rundir / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(rundir / "ws"),
                "JUPYTER_RUNTIME_DIR": str(rundir / "rt"), **(env or {})}
    cmd = [sys.executable, "-m", app, "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.extension_manager=readonly"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log_path = rundir / f"{app}.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(cmd, cwd=root, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    tail = log_path.read_text(errors="replace")[-2000:]
                    why = f"exited with {proc.returncode}" if proc.poll() is not None else f"no answer in {timeout} s"
                    raise AssertionError(f"{app} did not start ({why}):\n{tail}") from None
                time.sleep(0.5)
        yield url, token, log_path
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
