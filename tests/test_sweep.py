"""Sweeps (workbench.sweeps): the grid on ONNX Runtime CPU, locally and on a real Ray cluster.

The Ray tests start a real Ray head on 127.0.0.1 (``ray start --head``, one per module, stopped at the end);
nothing of Ray is mocked. A worker death is a real ``os._exit`` of the Ray worker process (fault injection
through ``WB_SWEEP_CRASH_ONCE``), retried by Ray itself.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

import workbench as wb
from workbench.sweeps import COLUMNS

from conftest import SAMPLES

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    for name in ("digits_cnn.onnx", "resize_concat.onnx", "digits_test.npz", "digits_calib.npz"):
        shutil.copy(SAMPLES / name, d / name)
    return d


def _grid(models, out, **kw):
    return wb.sweep([models / "digits_cnn.onnx", models / "resize_concat.onnx"], "fp32,fp16", "onnxruntime",
                    out_dir=out, iterations=5, warmup=1, progress=False, **kw)


@pytest.fixture(scope="module")
def local(models, tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    return out, _grid(models, out)


def test_local_sweep_rows_files_and_speedup(local):
    out, res = local
    df = res.to_frame()
    assert list(df.columns) == COLUMNS
    assert len(df) == 4 and set(df["status"]) == {"ok"}, df[["model", "precision", "status", "reason"]]
    assert set(df["model"]) == {"digits_cnn", "resize_concat"} and set(df["precision"]) == {"fp32", "fp16"}
    # speedup = the same model's fp32 p50 / this cell's p50, recomputed here from the rows
    for _, r in df.iterrows():
        fp32 = df[(df["model"] == r["model"]) & (df["precision"] == "fp32")]["p50_ms"].iloc[0]
        assert r["speedup"] == pytest.approx(fp32 / r["p50_ms"])
    fp32 = df[df["precision"] == "fp32"]
    assert (fp32["cosine"] > 0.999999).all()             # fp32 against its own reference
    assert (df["p50_ms"] > 0).all() and (df["pid"] == os.getpid()).all()
    saved = json.loads((out / "sweep.json").read_text())
    assert saved["kind"] == "sweep" and saved["cells"] == 4 and len(saved["rows"]) == 4
    assert (out / "sweep.csv").read_text().count("\n") == 5
    html = (out / "sweep.html").read_text()
    assert "plotly" in html.lower() and "digits_cnn" in html
    cells = sorted(p.name for p in (out / "cells").iterdir())
    assert len(cells) == 4 and all(re.fullmatch(r"[0-9a-f]{32}\.json", c) for c in cells)


def test_rerun_reuses_every_cell(models, local):
    out, first = local
    t0 = time.perf_counter()
    again = _grid(models, out)
    assert (again.reused, again.ran) == (4, 0)
    a, b = first.to_frame(), again.to_frame()
    assert a[["model", "precision", "p50_ms", "cosine"]].equals(b[["model", "precision", "p50_ms", "cosine"]])
    assert time.perf_counter() - t0 < first.wall_s


def test_other_settings_are_other_cells(models, local, tmp_path):
    # a copy of the shared sweep folder: sweeping into `local` itself rewrote its sweep.json with one cell,
    # so test_local_sweep_rows_files_and_speedup failed whenever it ran after this test (random order)
    out = shutil.copytree(local[0], tmp_path / "local")
    res = wb.sweep([models / "digits_cnn.onnx"], "fp32", "onnxruntime", out_dir=out, iterations=6, warmup=1,
                   progress=False)
    assert (res.reused, res.ran) == (0, 1)   # iterations are part of the key


def test_failed_skipped_and_unloadable_cells_do_not_stop_the_sweep(models, tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"this is not an onnx model")
    from onnx import TensorProto, helper
    import onnx

    g = helper.make_graph([helper.make_node("NoSuchOp", ["x"], ["y"], domain="nowhere")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    unknown = tmp_path / "unknown_op.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("nowhere", 1)]),
              unknown)
    res = wb.sweep([bad, unknown, models / "digits_cnn.onnx"], "fp32,bf16", "onnxruntime", out_dir=tmp_path / "o",
                   iterations=3, warmup=1, progress=False)
    df = res.to_frame().set_index(["model", "precision"])
    assert df.loc[("broken", "fp32"), "status"] == "failed" and "cannot load" in df.loc[("broken", "fp32"), "reason"]
    assert df.loc[("unknown_op", "fp32"), "status"] == "failed" and "NoSuchOp" in df.loc[("unknown_op", "fp32"), "reason"]
    assert df.loc[("digits_cnn", "bf16"), "status"] == "skipped" and "bfloat16" in df.loc[("digits_cnn", "bf16"), "reason"]
    assert df.loc[("digits_cnn", "fp32"), "status"] == "ok"


def test_cli_sweep(models, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "workbench", "sweep", str(models / "digits_cnn.onnx"), "--precision", "fp32,int8",
           "--data", str(models / "digits_test.npz"), "--labels", "label", "--calib", str(models / "digits_calib.npz"),
           "--iterations", "5", "--limit", "32", "--out", str(tmp_path / "s"), "--json"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr
    rows = {r["precision"]: r for r in json.loads(p.stdout)["rows"]}
    assert rows["int8"]["status"] == "ok" and 0.9 < rows["int8"]["cosine"] <= 1.0
    assert rows["fp32"]["top1"] == rows["int8"]["top1"] or abs(rows["fp32"]["top1"] - rows["int8"]["top1"]) < 0.1
    bad = subprocess.run([*cmd[:5], "--backend", "nope", "--out", str(tmp_path / "x")], capture_output=True,
                         text=True, env=env, timeout=120)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "nope" in bad.stderr


def test_killed_sweep_resumes(models, tmp_path):
    """The driver is killed (SIGKILL) after its first cell: a rerun reuses what finished and runs the rest."""
    out = tmp_path / "s"
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "workbench", "sweep", str(models / "digits_cnn.onnx"), str(models / "resize_concat.onnx"),
           "--precision", "fp32,fp16", "--iterations", "200", "--out", str(out), "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 300
    while time.time() < deadline and not (out / "cells").is_dir() or not any((out / "cells").glob("*.json")):
        if proc.poll() is not None or time.time() > deadline:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list((out / "cells").glob("*.json")))
    assert 1 <= done < 4, done
    res = wb.sweep([models / "digits_cnn.onnx", models / "resize_concat.onnx"], "fp32,fp16", "onnxruntime",
                   out_dir=out, iterations=200, progress=False)
    assert res.reused == done and res.ran == 4 - done
    assert set(res.to_frame()["status"]) == {"ok"}


# ------------------------------------------------------------------------------------------ Ray
@pytest.fixture(scope="module")
def ray_cluster():
    """A real Ray head on 127.0.0.1 for this module (2 CPUs), stopped afterwards."""
    pytest.importorskip("ray", reason="ray not installed: pip install 'trt-workbench[cluster]'")
    ray_bin = Path(sys.executable).with_name("ray")
    tmp = tempfile.mkdtemp(prefix="wbray")  # short: Ray's socket paths have a length limit
    # token authentication off for this loopback test cluster AND for the drivers that join it (this process):
    # with a ~/.ray/auth_token left by an earlier local run, the two sides would otherwise disagree
    saved_auth = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "RAY_USAGE_STATS_ENABLED": "0"}
    p = subprocess.run([str(ray_bin), "start", "--head", "--node-ip-address=127.0.0.1", "--port=0",
                        "--include-dashboard=false", "--num-cpus=2", "--num-gpus=0", f"--temp-dir={tmp}",
                        "--disable-usage-stats"], capture_output=True, text=True, env=env, timeout=300)
    m = re.search(r"--address='([^']+)'", p.stdout + p.stderr)
    try:
        if p.returncode != 0 or not m:
            pytest.fail(f"ray start failed ({p.returncode}): {(p.stdout + p.stderr)[-1500:]}")
        yield m.group(1)
    finally:
        _stop_cluster(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        if saved_auth is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved_auth


def _stop_cluster(tmp: str) -> None:
    """Stop only the Ray processes of this test's cluster (their command lines name its temp dir): never
    ``ray stop``, which ends every Ray cluster of the user on the machine."""
    import psutil

    procs: dict[int, psutil.Process] = {}
    for p in psutil.process_iter(["cmdline"]):
        try:
            if p.pid != os.getpid() and any(tmp in part for part in (p.info["cmdline"] or [])):
                procs[p.pid] = p
                for c in p.children(recursive=True):  # agents rename themselves (ray::DashboardAgent)
                    procs[c.pid] = c
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    procs = list(procs.values())
    for p in procs:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=15)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


def test_ray_gives_the_same_cells_as_local(models, local, ray_cluster, tmp_path):
    _, loc = local
    res = _grid(models, tmp_path / "ray", executor=ray_cluster)
    a, b = loc.to_frame(), res.to_frame()
    assert list(a["key"]) == list(b["key"])                       # the same cells, in the same order
    assert list(b["status"]) == ["ok"] * 4
    np.testing.assert_allclose(b["cosine"].astype(float), a["cosine"].astype(float), rtol=1e-6)
    assert (b["p50_ms"] > 0).all()
    assert (b["pid"] != os.getpid()).all() and b["ray_node"].astype(bool).all()   # ran in Ray workers
    assert res.executor == ray_cluster


def test_ray_retries_a_worker_that_dies(models, ray_cluster, tmp_path, monkeypatch):
    marker = tmp_path / "crashed"
    monkeypatch.setenv("WB_SWEEP_CRASH_ONCE", str(marker))
    res = wb.sweep([models / "digits_cnn.onnx"], "fp32,fp16", "onnxruntime", out_dir=tmp_path / "s",
                   executor=ray_cluster, iterations=3, warmup=1, progress=False)
    assert marker.exists()                                        # a worker really died mid-cell
    assert list(res.to_frame()["status"]) == ["ok", "ok"]         # and Ray's retry finished it
