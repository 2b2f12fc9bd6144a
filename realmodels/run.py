"""Run the whole pipeline on every corpus model through the public CLI and print a pass/fail table.

    python realmodels/run.py [--models all|ci|NAME,...] [--out out/realmodels] [--write-docs]

Per model: ``workbench inspect`` → ``workbench build`` on ONNX Runtime (fp32, fp16, int8) and on
TensorRT-RTX (fp32, fp16, int8; TensorRT-RTX parses and builds on CPU) → ``workbench profile``
(ONNX Runtime CPU, the three precisions) → ``workbench compare`` (fp16, int8 against fp32) →
``workbench report``. Every step is the CLI a user would type, run as a subprocess with the model's
real data file (``--data``/``--calib``) and TensorRT profile (``--shapes``).

A step is ``pass`` only when the command exits 0 and, for builds, the precision's variant has status
ok; anything else is ``FAIL`` with the one-line reason the tool printed. Running TensorRT-RTX engines
needs an NVIDIA GPU: profile/compare/report run on ONNX Runtime only, and the table says so.

Writes ``<out>/results.json`` (every cell, the exact command, seconds, the reason) and
``<out>/results.md``; ``--write-docs`` also puts the table into docs/realmodels.md between its
markers. Exit status: 0 when every cell passed, 1 when any failed, 2 when the cache is missing.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from realmodels.corpus import KNOWN_FAILURES, Model, cache_dir, select  # noqa: E402

PRECISIONS = ("fp32", "fp16", "int8")
COMPARED = ("fp16", "int8")
COLUMNS = ["inspect"] + [f"ort {p}" for p in PRECISIONS] + [f"rtx {p}" for p in PRECISIONS] + \
          [f"profile {p}" for p in PRECISIONS] + [f"compare {p}" for p in COMPARED] + ["report"]
DOC_BEGIN = "<!-- realmodels-table:begin -->"
DOC_END = "<!-- realmodels-table:end -->"


def _one_line(text: str, limit: int = 240) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    # prefer the CLI's own error line ("workbench <cmd>: ...") over progress noise
    picked = next((ln for ln in reversed(lines) if ln.startswith("workbench")), lines[-1] if lines else "")
    return picked if len(picked) <= limit else picked[: limit - 1] + "…"


def _cli(args: list[str], timeout: float) -> tuple[int, str, str, float]:
    cmd = [sys.executable, "-m", "workbench", *args]
    t0 = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        rc, out, err = 124, (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or ""), \
            f"timed out after {timeout:.0f} s"
    return rc, out, err, time.perf_counter() - t0


def _cell(status: str, reason: str = "", seconds: float = 0.0, cmd: str = "", detail: dict | None = None) -> dict:
    return {"status": status, "reason": reason, "seconds": round(seconds, 2), "command": cmd, "detail": detail or {}}


def _quote(args: list[str]) -> str:
    import shlex

    return "workbench " + " ".join(shlex.quote(a) for a in args)


def _build(m: Model, backend: str, out: Path, timeout: float) -> dict[str, dict]:
    args = ["build", str(m.path), "--backend", backend, "--precision", ",".join(PRECISIONS),
            "--calib", str(m.data), "--out", str(out), "--no-progress", "--json"]
    if backend == "tensorrt-rtx":
        args += ["--shapes", m.shapes]
    rc, so, se, dt = _cli(args, timeout)
    cmd = _quote(args)
    try:
        doc = json.loads(so)
        by_prec = {v["precision"]: v for v in doc.get("variants", [])}
    except (json.JSONDecodeError, AttributeError, KeyError, TypeError):
        by_prec = {}
    cells = {}
    for p in PRECISIONS:
        v = by_prec.get(p)
        if v is None:
            cells[p] = _cell("FAIL", f"exit {rc}: {_one_line(se) or 'no JSON result'}", dt, cmd)
        elif v.get("status") in ("ok", "cached"):
            rec = v.get("record") or {}
            cells[p] = _cell("pass", "", dt, cmd,  # seconds: the whole command (recipe + build, 3 precisions)
                             {"build_time_s": rec.get("build_time_s"), "engine_bytes": rec.get("engine_bytes"),
                              "notes": v.get("reason", "")})
        else:
            cells[p] = _cell("FAIL", f"{v.get('status')}: {_one_line(v.get('reason', ''))}", dt, cmd)
    return cells


def _cli_json(args: list[str], timeout: float, kind: type):
    """Run the CLI expecting a JSON ``kind`` on stdout: ``(doc, None, cmd, seconds)``, or ``(None, FAIL cell, cmd,
    seconds)`` when it exits non-zero or prints something else."""
    rc, so, se, dt = _cli(args, timeout)
    cmd = _quote(args)
    try:
        doc = json.loads(so)
    except json.JSONDecodeError:
        doc = None
    if rc != 0 or not isinstance(doc, kind):
        return None, _cell("FAIL", f"exit {rc}: {_one_line(se)}", dt, cmd), cmd, dt
    return doc, None, cmd, dt


def _profile(m: Model, precision: str, out: Path, timeout: float) -> dict:
    args = ["profile", str(m.path), "--precision", precision, "--data", str(m.data),
            "--calib", str(m.data), "--batch", str(m.batch), "--iterations", "20", "--warmup", "3",
            "--layer-iterations", "3", "--out", str(out), "--no-progress", "--json"]
    entries, failed, cmd, dt = _cli_json(args, timeout, list)
    if failed:
        return failed
    bad = [f"{e.get('precision')}: {e.get('status')} {e.get('reason', '')}".strip() for e in entries
           if e.get("status") != "ok"]
    p50 = {e.get("precision"): round(float(e["p50_ms"]), 3) for e in entries if e.get("p50_ms") is not None}
    if bad or not entries:
        return _cell("FAIL", "; ".join(bad) or "no profile entry", dt, cmd, {"p50_ms": p50})
    cov = (entries[0].get("coverage") or {}).get("coverage")
    return _cell("pass", "", dt, cmd, {"p50_ms": p50.get(precision), "layers": entries[0].get("layers"),
                                       "layer_coverage": round(cov, 3) if isinstance(cov, (int, float)) else None})


def _compare(m: Model, precision: str, timeout: float) -> dict:
    args = ["compare", str(m.path), "--precision", precision, "--data", str(m.data), "--calib", str(m.data),
            "--batch", str(m.batch), "--limit", str(m.limit), "--json"]
    if m.labels:
        args += ["--labels", m.labels]
    doc, failed, cmd, dt = _cli_json(args, timeout, dict)
    if failed:
        return failed
    acc = {}
    for name, v in (doc.get("variants") or {}).items():
        if v.get("precision") != precision:
            continue
        cos = [o.get("cosine") for o in (v.get("outputs") or {}).values() if o.get("cosine") is not None]
        acc = {"min_cosine": round(min(cos), 5) if cos else None, "samples": doc.get("samples"),
               "top1_agreement": v.get("top1_agreement"), "top1": v.get("top1")}
    skipped = doc.get("skipped") or {}
    if skipped:
        return _cell("FAIL", "; ".join(f"{k}: {v}" for k, v in skipped.items()), dt, cmd, acc)
    if not acc:
        return _cell("FAIL", f"no {precision} variant in the comparison", dt, cmd)
    return _cell("pass", "", dt, cmd, acc)


#: The report's sample budget: accuracy on ``m.limit`` samples, the per-node (layerwise) error on 4, latency and
#: per-layer profiling on runs of at most 4 samples for at most 2 s per variant. Every step of the report still
#: runs; the budget only bounds how many samples each one sees (the report prints it, the cell records it).
REPORT_BUDGET = {"layerwise_limit": 4, "latency_samples": 4, "time_budget_s": 2}


def _report(m: Model, out: Path, timeout: float) -> dict:
    html = out / f"{m.name}.html"
    b = REPORT_BUDGET
    args = ["report", str(m.path), "--backend", "onnxruntime", "--precision", ",".join(PRECISIONS),
            "--data", str(m.data), "--calib", str(m.data), "--out", str(html), "--iterations", "10",
            "--warmup", "2", "--layer-iterations", "2", "--limit", str(m.limit),
            "--layerwise-limit", str(b["layerwise_limit"]), "--latency-samples", str(min(m.batch, b["latency_samples"])),
            "--time-budget", str(b["time_budget_s"]), "--no-progress"]
    if m.labels:
        args += ["--labels", m.labels]
    rc, so, se, dt = _cli(args, timeout)
    cmd = _quote(args)
    budget = next((ln.strip() for ln in so.splitlines() if ln.strip().startswith("samples:")), "")
    detail = {"budget": budget} if budget else {}
    if rc != 0:
        why = _one_line(se)
        if rc == 124:  # say what the report was asked to do in that time
            why += (f" (budget: accuracy {m.limit} samples, layerwise {b['layerwise_limit']}, latency runs of "
                    f"{min(m.batch, b['latency_samples'])} samples, <= {b['time_budget_s']} s per variant)")
        return _cell("FAIL", f"exit {rc}: {why}", dt, cmd, detail)
    if not html.exists() or html.stat().st_size == 0:
        return _cell("FAIL", "exit 0 but no report file", dt, cmd, detail)
    return _cell("pass", "", dt, cmd, {"html": str(html), "bytes": html.stat().st_size, **detail})


CI_SKIP_REASON = "left out of the CI subset for time (make realmodels runs it)"


def run_model(m: Model, out: Path, timeout: float = 900.0, steps: set[str] | None = None, log=print,
              ci: bool = False) -> dict:
    """Every cell of one model's row (``COLUMNS`` → cell dict). ``ci``: leave out ``m.ci_skip`` steps."""
    row: dict[str, dict] = {}
    mdir = out / m.name
    mdir.mkdir(parents=True, exist_ok=True)
    if not m.path.exists() or not m.data.exists():
        miss = m.path if not m.path.exists() else m.data
        return {c: _cell("FAIL", f"not in the cache: {miss} (run realmodels/fetch.py)") for c in COLUMNS}
    want = set(steps or {"inspect", "ort", "rtx", "profile", "compare", "report"})
    if ci:
        want -= set(m.ci_skip)
        for col in COLUMNS:
            if col.split()[0] in m.ci_skip:
                row[col] = _cell("not run", CI_SKIP_REASON)

    def note(col: str) -> None:
        c = row[col]
        log(f"  {m.name:20s} {col:9s} {c['status']:4s} {c['seconds']:7.1f}s {c['reason']}")

    if "inspect" in want:
        args = ["inspect", str(m.path), "--json"]
        rc, so, se, dt = _cli(args, timeout)
        ok = rc == 0
        try:
            json.loads(so)
        except json.JSONDecodeError:
            ok = False
        row["inspect"] = _cell("pass" if ok else "FAIL", "" if ok else f"exit {rc}: {_one_line(se)}", dt, _quote(args))
        note("inspect")
    for key, backend in (("ort", "onnxruntime"), ("rtx", "tensorrt-rtx")):
        if key in want:
            for p, c in _build(m, backend, mdir / f"build-{key}", timeout).items():
                row[f"{key} {p}"] = c
                note(f"{key} {p}")
    if "profile" in want:
        for p in PRECISIONS:
            row[f"profile {p}"] = _profile(m, p, mdir / "profile", timeout)
            note(f"profile {p}")
    if "compare" in want:
        for p in COMPARED:
            row[f"compare {p}"] = _compare(m, p, timeout)
            note(f"compare {p}")
    if "report" in want:
        row["report"] = _report(m, mdir, timeout)
        note("report")
    return {c: row.get(c) or _cell("not run", "step not requested") for c in COLUMNS}


def markdown(results: dict) -> str:
    rows = results["models"]
    head = "| model | covers | " + " | ".join(COLUMNS) + " |\n|" + "---|" * (len(COLUMNS) + 2) + "\n"
    body = []
    reasons = []
    notes: list[str] = []
    for name, r in rows.items():
        cells = []
        for c in COLUMNS:
            cell = r["cells"][c]
            if cell["status"] == "pass":
                cells.append("pass")
            elif cell["status"] == "FAIL":
                known = KNOWN_FAILURES.get((name, c))
                tag = f" — known, owner: {known[1]}" if known and known[0] in cell["reason"] else ""
                reasons.append(f"- **{name} / {c}**: {cell['reason']}{tag}")
                cells.append(f"**FAIL** [{len(reasons)}]")
            else:
                cells.append(f"{cell['status']}*")
                if cell["reason"] not in notes:
                    notes.append(cell["reason"])
        body.append(f"| {name} | {r['covers']} | " + " | ".join(cells) + " |")
    n_pass = sum(c["status"] == "pass" for r in rows.values() for c in r["cells"].values())
    n_all = sum(c["status"] != "not run" for r in rows.values() for c in r["cells"].values())
    meta = results["meta"]
    load = meta.get("load") or []
    shared = (f", shared with other jobs (1-min load average {load[0]:.1f} at the start, {load[-1]:.1f} at the end)"
              if load else "")
    text = (f"Run {meta['finished']} on {meta['machine']}{shared} (git {meta['git']}): **{n_pass}/{n_all} cells pass**. "
            f"ort = ONNX Runtime CPU build; rtx = TensorRT-RTX build (CPU, no engine run: no GPU here); "
            f"profile/compare/report on ONNX Runtime CPU.\n\n")
    gits = sorted({r.get("git") for r in rows.values() if r.get("git")})
    if len(gits) > 1:  # the tree changed during a long run: say which model ran on which commit
        text += "Commits differ between models (the tree changed during the run): " + ", ".join(
            f"{n} @{r.get('git')}" for n, r in rows.items()) + ".\n\n"
    text += head + "\n".join(body) + "\n"
    if notes:
        text += "\n" + "".join(f"\\* {n}\n" for n in notes)
    if reasons:
        text += "\nFailures (the tool's own one-line reason):\n\n" + "\n".join(
            f"{i}. {line[2:]}" for i, line in enumerate(reasons, 1)) + "\n"
    acc = []
    for name, r in rows.items():
        p50 = [r["cells"][f"profile {p}"].get("detail", {}).get("p50_ms") for p in PRECISIONS]
        cmp = [r["cells"][f"compare {p}"].get("detail", {}) for p in COMPARED]
        if any(v is not None for v in p50) or any(cmp):
            fmt = lambda v: "" if v is None else str(v)  # noqa: E731
            acc.append(f"| {name} | " + " | ".join(fmt(v) for v in p50) + " | "
                       + " | ".join(fmt(c.get("min_cosine")) for c in cmp) + " | "
                       + " | ".join(fmt(c.get("top1_agreement")) for c in cmp) + " |")
    if acc:
        text += ("\nMeasured (ONNX Runtime CPU, busy shared 2-core machine: latencies are noisy):\n\n"
                 "| model | p50 ms fp32 | p50 ms fp16 | p50 ms int8 | min cosine fp16 | min cosine int8 "
                 "| top-1 agreement fp16 | top-1 agreement int8 |\n|---|---|---|---|---|---|---|---|\n"
                 + "\n".join(acc) + "\n")
    return text


def _load() -> list[float]:
    try:
        return [round(os.getloadavg()[0], 1)]
    except OSError:  # pragma: no cover - no load average on this platform
        return []


def _git() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=ROOT, timeout=10).stdout.strip() or "?"
    except OSError:
        return "?"


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_docs(md: str, doc: Path = ROOT / "docs" / "realmodels.md") -> None:
    text = doc.read_text()
    if DOC_BEGIN not in text or DOC_END not in text:
        raise SystemExit(f"{doc}: markers {DOC_BEGIN} / {DOC_END} missing")
    a, rest = text.split(DOC_BEGIN, 1)
    _, b = rest.split(DOC_END, 1)
    _atomic_write(doc, a + DOC_BEGIN + "\n" + md + DOC_END + b)


def run(models: list[Model], out: Path, timeout: float = 900.0, steps: set[str] | None = None, log=print,
        ci: bool = False) -> dict:
    started = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    results = {"meta": {"started": started, "machine": f"{platform.machine()} {os.cpu_count()} cores, no GPU",
                        "git": _git(), "cache": str(cache_dir()), "columns": COLUMNS, "load": _load(),
                        "report_budget": REPORT_BUDGET},
               "models": {}}
    for m in models:
        log(f"{m.name}: {m.covers}")
        cells = run_model(m, out, timeout, steps, log, ci=ci)
        results["models"][m.name] = {"covers": m.covers, "producer": m.producer, "shapes": m.shapes, "git": _git(),
                                     "path": str(m.path), "data": str(m.data), "cells": cells}
        results["meta"]["finished"] = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
        _atomic_write(out / "results.json", json.dumps(results, indent=2))  # progress survives a kill
    results["meta"]["finished"] = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    results["meta"]["load"] = results["meta"]["load"][:1] + _load()
    md = markdown(results)
    _atomic_write(out / "results.json", json.dumps(results, indent=2))
    _atomic_write(out / "results.md", md)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="all", help="all, ci, or comma-separated names")
    ap.add_argument("--out", default=str(ROOT / "out" / "realmodels"), help="output folder (default out/realmodels)")
    ap.add_argument("--steps", default=None, help="subset of inspect,ort,rtx,profile,compare,report")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per CLI call (default 900)")
    ap.add_argument("--write-docs", action="store_true", help="put the table into docs/realmodels.md")
    a = ap.parse_args(argv)
    models = select(a.models)
    missing = [m.name for m in models if not (m.path.exists() and m.data.exists())]
    if missing:
        print(f"realmodels: not in the cache {cache_dir()}: {', '.join(missing)}; run `python realmodels/fetch.py`",
              file=sys.stderr)
        return 2
    steps = set(a.steps.split(",")) if a.steps else None
    results = run(models, Path(a.out), a.timeout, steps, ci=a.models == "ci")
    md = markdown(results)
    print()
    print(md)
    if a.write_docs:
        write_docs(md)
    failed = any(c["status"] == "FAIL" for r in results["models"].values() for c in r["cells"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
