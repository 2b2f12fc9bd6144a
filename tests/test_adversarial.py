"""The safety contract under attack (docs/security.md): ~1,000 generated hostile cases through every CLI
subcommand and the public API, plus real subprocess runs for exit codes, stderr lines, memory and
special files.

The generated cases run in worker processes (tests/_adversarial.py) so that a native crash in a
runtime is reported as a failing case instead of killing pytest; each worker runs its cases
in-process through ``workbench.cli.main``. The case count is printed (``-s`` shows it; it is also in
the assertion message).
"""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import _adversarial as adv  # noqa: E402 - after the sys.path line that makes it importable

SEED = int(os.environ.get("WORKBENCH_ADVERSARIAL_SEED", "0"))
WORKERS = 2
CASE_TIMEOUT_S = 180


def _env(tmp: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp), "PYTHONWARNINGS": "ignore",
           "OMP_NUM_THREADS": "1"}
    return env


def _run_range(root: Path, start: int, stop: int, results: dict, crashes: list) -> None:
    """Run cases [start, stop) in worker processes; a worker that dies or hangs costs its current case."""
    i = start
    while i < stop:
        proc = subprocess.Popen([sys.executable, str(HERE / "_adversarial.py"), str(root), str(SEED), str(i), str(stop)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(root / "tmp"))
        current = None
        timer = None
        try:
            for line in proc.stdout:
                if timer:
                    timer.cancel()
                msg = json.loads(line)
                if "start" in msg:
                    current = msg["start"]
                    timer = threading.Timer(CASE_TIMEOUT_S, proc.kill)
                    timer.start()
                    continue
                results[msg["index"]] = msg
                current = None
        finally:
            if timer:
                timer.cancel()
        proc.wait()
        if current is None:  # finished its range (or died between cases: continue after the last result)
            done = [k for k in results if start <= k < stop]
            nxt = max(done) + 1 if done else start
            if nxt >= stop or proc.returncode == 0:
                return
            crashes.append({"index": nxt, "problems": [f"worker exited {proc.returncode} before the case"],
                            "stderr": proc.stderr.read()[-400:]})
            i = nxt + 1
            continue
        err = proc.stderr.read()[-600:]
        results[current] = {"index": current, "id": f"#{current}", "rc": proc.returncode,
                            "problems": [f"worker died (signal/exit {proc.returncode}) or hung"], "stderr": err}
        i = current + 1


@pytest.fixture(scope="module")
def adversarial_results(tmp_path_factory):
    root = tmp_path_factory.mktemp("adversarial")
    (root / "tmp").mkdir()
    assets = adv.make_assets(root / "assets")
    cases = adv.build_cases(assets, SEED)
    n = len(cases)
    results: dict[int, dict] = {}
    crashes: list = []
    bounds = [(k * n // WORKERS, (k + 1) * n // WORKERS) for k in range(WORKERS)]
    t0 = time.monotonic()
    threads = [threading.Thread(target=_run_range, args=(root, a, b, results, crashes)) for a, b in bounds]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    secs = time.monotonic() - t0
    for k, r in results.items():
        if r.get("id", "").startswith("#"):
            r["id"] = cases[k].id
    # `import onnxruntime` itself keeps a small `.ses` id file in TMPDIR (rewritten, not accumulated)
    leftovers = [p.name for p in (root / "tmp").iterdir() if p.name != ".ses"]
    print(f"\nadversarial: {len(results)} of {n} cases ran in {secs:.0f} s "
          f"(seed {SEED}, {sum(1 for r in results.values() if r['rc'] == 0)} exit 0, "
          f"{sum(1 for r in results.values() if r['rc'] == 2)} exit 2)")
    return {"cases": cases, "results": results, "crashes": crashes, "secs": secs, "tmp_leftovers": leftovers}


#: open breaks, named (docs/security.md "Open"): printed by the suite, not failing it, until fixed
KNOWN_OPEN: dict[str, str] = {}  # case id -> why it is still open (printed, not failing)


def _failures(res, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(res["results"]):
        r = res["results"][k]
        if r["id"] in KNOWN_OPEN:
            print(f"known open: {r['id']}: {KNOWN_OPEN[r['id']]} -> {r['problems']}")
            continue
        if r["id"].startswith(prefix) and r["problems"]:
            out.append(f"{r['id']}: {'; '.join(r['problems'])} (rc={r['rc']}) {r.get('stderr', '')[:300]}")
    return out


CLASSES = ["collide/", "input/", "model/", "numbers/", "npz/", "api/", "fuzz/bytes/", "fuzz/proto/", "newcmd/"]


@pytest.mark.parametrize("prefix", CLASSES)
def test_contract_holds(adversarial_results, prefix):
    res = adversarial_results
    ran = [r for r in res["results"].values() if r["id"].startswith(prefix)]
    expected = [c for c in res["cases"] if c.id.startswith(prefix)]
    if prefix == "newcmd/" and not expected:
        pytest.skip("every subcommand has its own cases")
    assert len(ran) == len(expected) > 0, f"{prefix}: ran {len(ran)} of {len(expected)} cases"
    fails = _failures(res, prefix)
    assert not fails, f"{len(fails)} of {len(ran)} {prefix} cases broke the contract:\n" + "\n".join(fails[:40])


def test_case_count_and_workers(adversarial_results):
    res = adversarial_results
    n = len(res["results"])
    assert n >= 500 and n == len(res["cases"]), f"{n} cases ran of {len(res['cases'])}"
    assert not res["crashes"], res["crashes"]
    # the session temp folder (runtime copies of in-memory models) is removed when a worker exits
    assert res["tmp_leftovers"] == [], res["tmp_leftovers"]
    print(f"adversarial case count: {n}")


def test_collisions_are_refused_not_written(adversarial_results):
    """The classes the issue found: an output named like the model / its data is refused with exit 2."""
    res = {r["id"]: r for r in adversarial_results["results"].values()}
    for cmd in ("view", "surgery", "build", "profile", "report"):
        r = res[f"collide/{cmd}/model_named_out"]
        assert r["rc"] == 2 and "source model" in r["stderr"], r
    for cmd in ("build", "profile", "report"):
        r = res[f"collide/{cmd}/data_named_out"]
        assert r["rc"] == 2 and "refusing" in r["stderr"], r
    r = res["collide/build/external_data_variant"]
    assert r["rc"] == 2 and "external data" in r["stderr"], r
    for cmd in ("view", "surgery", "report"):
        assert res[f"collide/{cmd}/out_is_fifo"]["rc"] == 2
        assert "FIFO" in res[f"collide/{cmd}/out_is_fifo"]["stderr"]
        assert "character device" in res[f"collide/{cmd}/out_is_devnull"]["stderr"]


def test_named_breaks_are_exit_2(adversarial_results):
    """Each exit-1 class the issue listed now ends with exit 2 and one line."""
    res = {r["id"]: r for r in adversarial_results["results"].values()}
    for cid in ["model/cyclic/build", "model/cyclic/report", "model/cyclic/profile", "model/dim2_31/run",
                "numbers/shapes_1e23/run", "numbers/batch_1e21/run", "model/ext_offset_abc/inspect",
                "npz/header_1e12/compare", "npz/header_1e12/report", "model/no_input/report", "model/no_input/compare",
                "npz/fewer_than_batch/run", "npz/fewer_than_batch/profile", "input/inspect/model/long",
                "input/inspect/model/devzero", "input/inspect/model/fifo", "input/run/data/fifo"]:
        assert res[cid]["rc"] == 2, res[cid]


# ---------------------------------------------------------------------------------------------- subprocesses
CMD = [sys.executable, "-m", "workbench"]


def _cli(args, cwd, timeout=120, **kw):
    t0 = time.monotonic()
    proc = subprocess.Popen(CMD + [str(a) for a in args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env(Path(cwd)), **kw)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"{args} hung for {timeout} s")
    return proc.returncode, out, err, time.monotonic() - t0


#: A small launcher between pytest and the measured command. ru_maxrss of a direct child carries the parent's
#: high-water mark across fork/vfork + exec (Linux records the old mm's peak at exec), and pytest's own process
#: can be over 1 GB late in a random-order run (a CI run measured 1483 MB for a command that uses ~60). The
#: launcher (`python -I -S`, ~10 MB) forks the command and reports its grandchild's rusage, which starts clean.
_LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
_, status, ru = os.wait4(pid, 0)
sys.stderr.write("\\n__WB_MAXRSS_KB__ %d\\n" % ru.ru_maxrss)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _rusage_run(args, cwd, timeout=120):
    """Exit code, stderr and peak RSS (MB) of one CLI run in a grandchild process (see _LAUNCHER)."""
    proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", _LAUNCHER] + CMD + [str(a) for a in args], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env(Path(cwd)),
                            start_new_session=True)
    killer = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))  # launcher and command
    killer.start()
    err = proc.stderr.read().decode()
    proc.wait()
    killer.cancel()
    kb = [int(line.split()[1]) for line in err.splitlines() if line.startswith("__WB_MAXRSS_KB__")]
    err = "\n".join(line for line in err.splitlines() if not line.startswith("__WB_MAXRSS_KB__")).rstrip("\n")
    return proc.returncode, err, (kb[-1] / 1024 if kb else float("inf"))


@pytest.fixture
def world(tmp_path):
    adv.make_assets(tmp_path)
    return tmp_path


def _one_line(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.strip()]


def test_zip_bomb_run_reads_one_batch(world):
    """A 1 MB npz that decompresses to 1.1 GB: `run --data` reads one batch, not the whole array."""
    bomb = adv.zip_bomb(world / "bomb.npz")
    assert bomb.stat().st_size < 2 << 20
    rc, err, base = _rusage_run(["run", "tiny.onnx"], world)
    assert rc == 0, err
    rc, err, peak = _rusage_run(["run", "tiny.onnx", "--data", "bomb.npz", "--json"], world)
    assert rc == 0, err
    assert peak - base < 100, f"zip bomb cost {peak - base:.0f} MB over a plain run ({base:.0f} MB)"


@pytest.mark.parametrize("cmd", [["compare", "tiny.onnx", "--precision", "fp16", "--limit", "64"],
                                 ["report", "tiny.onnx", "--precision", "fp32", "--out", "r.html"] + adv.PROF + adv.FAST])
def test_zip_bomb_compare_and_report_stream(world, cmd):
    """compare and report read the bomb one batch at a time (they read the whole array before: 1.1 GB)."""
    adv.zip_bomb(world / "bomb.npz")
    rc, err, base = _rusage_run(cmd, world, timeout=300)
    assert rc == 0, err
    rc, err, peak = _rusage_run(cmd + ["--data", "bomb.npz"], world, timeout=300)
    assert rc == 0, err
    assert peak - base < 100, f"zip bomb cost {peak - base:.0f} MB over a run without data ({base:.0f} MB)"


def test_npz_header_lies_are_refused_before_allocation(world):
    adv.npz_with(world / "huge.npz", {"x.npy": adv._npy_bytes((10**12, 16), body=bytes(256))})
    rc, err, peak = _rusage_run(["compare", "tiny.onnx", "--precision", "fp16", "--data", "huge.npz"], world)
    assert rc == 2 and len(_one_line(err)) == 1 and "holds only 256 bytes" in err, err
    assert peak < 1000


@pytest.mark.parametrize("role", ["model", "data"])
def test_fifo_input_fails_fast(world, role):
    os.mkfifo(world / "fifo")
    args = ["inspect", "fifo"] if role == "model" else ["run", "tiny.onnx", "--data", "fifo"]
    rc, out, err, secs = _cli(args, world, timeout=60)
    assert rc == 2 and len(_one_line(err)) == 1 and "FIFO" in err, err
    assert secs < 30


def test_dev_zero_fails_fast(world):
    rc, out, err, secs = _cli(["inspect", "/dev/zero"], world, timeout=60)
    assert rc == 2 and "character device" in err and len(_one_line(err)) == 1


def test_output_fifo_is_not_replaced(world):
    os.mkfifo(world / "pipe")
    rc, out, err, _ = _cli(["view", "tiny.onnx", "--html", "pipe"], world)
    assert rc == 2 and len(_one_line(err)) == 1
    assert stat.S_ISFIFO(os.stat(world / "pipe").st_mode)


def test_report_over_its_own_model_keeps_the_model(world):
    (world / "m.html").write_bytes((world / "tiny.onnx").read_bytes())
    before = (world / "m.html").read_bytes()
    rc, out, err, _ = _cli(["report", "m.html", "--out", "m.html", "--precision", "fp32"] + adv.PROF + adv.FAST, world)
    assert rc == 2 and "refusing to overwrite the source model" in err and len(_one_line(err)) == 1, err
    assert (world / "m.html").read_bytes() == before
    assert not (world / "m-records").exists()  # refused before the flow ran


def test_native_logs_are_held_back_and_counted(world):
    """A native library writing to fd 2 during a failing command: one line, with the count of hidden lines;
    --verbose lets them through."""
    script = ("import os, sys\n"
              "from workbench import cli\n"
              "from workbench.errors import DataError\n"
              "def boom(args):\n"
              "    os.write(2, b'\\x1b[31mE native: No execution plans support the graph\\x1b[0m\\n' * 300)\n"
              "    raise DataError('bad input')\n"
              "p = cli.build_parser\n"
              "def patched():\n"
              "    parser = p()\n"
              "    for a in parser._subparsers._group_actions[0].choices.values():\n"
              "        a.set_defaults(_run=boom)\n"
              "    return parser\n"
              "cli.build_parser = patched\n"
              "sys.exit(cli.main(sys.argv[1:]))\n")
    r = subprocess.run([sys.executable, "-c", script, "inspect", "tiny.onnx"], cwd=world, capture_output=True,
                       text=True, env=_env(world), timeout=60)
    lines = _one_line(r.stderr)
    assert r.returncode == 2 and len(lines) == 1, r.stderr[:500]
    assert "bad input" in lines[0] and "300 native log lines hidden" in lines[0]
    r = subprocess.run([sys.executable, "-c", script, "--verbose", "inspect", "tiny.onnx"], cwd=world,
                       capture_output=True, text=True, env=_env(world), timeout=60)
    assert r.returncode == 2 and r.stderr.count("No execution plans") == 300


def test_success_keeps_stderr_quiet_and_progress_visible(world):
    rc, out, err, _ = _cli(["build", "tiny.onnx", "--precision", "fp32,fp16", "--out", "b", "--no-progress"], world)
    assert rc == 0 and _one_line(err) == [], err
    rc, out, err, _ = _cli(["run", "tiny.onnx", "--json"], world)
    assert rc == 0 and _one_line(err) == [] and json.loads(out)


def test_debug_shows_the_traceback(world):
    rc, out, err, _ = _cli(["--debug", "inspect", "/dev/zero"], world)
    assert rc == 2 and "Traceback" in err


def test_temp_folders_are_removed_at_exit(world):
    """A model given as bytes reaches ONNX Runtime through a session temp copy; it is gone after exit."""
    tmp = world / "t"
    tmp.mkdir()
    code = ("import workbench as wb, onnx\n"
            "m = wb.load(open('tiny.onnx','rb').read())\n"
            "p = m.path_for_runtime()\n"
            "assert p.exists(), p\n"
            "print(p)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=world, capture_output=True, text=True,
                       env={**_env(world), "TMPDIR": str(tmp)}, timeout=60)
    assert r.returncode == 0, r.stderr
    assert str(tmp) in r.stdout
    assert [p.name for p in tmp.iterdir() if p.name != ".ses"] == []  # .ses: written by `import onnxruntime`


def test_no_umask_games():
    src = (ROOT / "workbench" / "fsutil.py").read_text()
    assert "os.umask(" not in src


# ---------------------------------------------------------------------------------------------- Netron
def _get(url: str, host: str | None = None):
    import http.client
    from urllib.parse import urlsplit

    u = urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    c.putrequest("GET", u.path or "/", skip_host=True)
    c.putheader("Host", host if host is not None else f"{u.hostname}:{u.port}")
    c.endheaders()
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body


def test_netron_serves_only_the_model(world):
    pytest.importorskip("netron")
    from workbench.widgets.netron import serve_netron

    with serve_netron(world / "digits_cnn.onnx") as srv:
        assert srv.address[0] == "127.0.0.1" and srv.address[1] > 0
        status, body = _get(srv.url + "/")
        assert status == 200 and b"<html" in body.lower()
        status, body = _get(srv.url + "/data/digits_cnn.onnx")
        assert status == 200 and body == (world / "digits_cnn.onnx").read_bytes()
        for path in ("/data/digits_calib.npz", "/data/tiny.onnx", "/data/../tiny.onnx", "/data/%2e%2e/tiny.npz",
                     "/../../etc/passwd", "/data/ext/big-fp16.onnx"):
            status, _ = _get(srv.url + path)
            assert status in (403, 404), (path, status)
        for host in ("evil.example", "127.0.0.1.evil.example:80", ""):
            status, _ = _get(srv.url + "/", host=host)
            assert status == 403, (host, status)
        for host in ("localhost", f"localhost:{srv.address[1]}", f"127.0.0.1:{srv.address[1]}", "[::1]"):
            status, _ = _get(srv.url + "/", host=host)
            assert status == 200, (host, status)


def test_netron_random_port_by_default(world):
    pytest.importorskip("netron")
    from workbench.widgets.netron import serve_netron

    with serve_netron(world / "tiny.onnx") as a, serve_netron(world / "tiny.onnx") as b:
        assert a.address[1] != b.address[1]
        assert a.address[1] != 8080
