"""`make bench`: run every bench/bench_*.py, print a table, rewrite docs/benchmarks.md.

Each bench module defines ``run(quick: bool) -> list[dict]``; a row has keys
``benchmark, metric, unit, ours, peer, peer_name, ratio, goal, met, spread, notes``
(``peer``/``ratio`` None where there is no peer; ``ratio`` = ours / peer unless the row says otherwise
in ``notes``; ``met`` True/False/None against ``goal``). Timings are medians over repetitions after
warm-ups, with the min–max spread. Benchmarks never run inside ``make test``.

    python bench/run.py [--quick] [--only NAME[,NAME]] [--no-write]
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DOC = ROOT / "docs" / "benchmarks.md"
RAW = ROOT / "docs" / "benchmarks.json"  # rows of the last run of each bench, so --only can merge
COLUMNS = ["benchmark", "metric", "unit", "ours", "peer", "peer_name", "ratio", "goal", "met", "spread", "notes", "_run"]


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil
        mem = f"{psutil.virtual_memory().total / 2**30:.0f} GiB"
    except Exception:
        mem = "?"
    return f"{cpu}, {os.cpu_count()} cores, {mem} RAM, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def _versions() -> dict:
    out = {}
    from importlib import metadata

    for dist in ["onnx", "onnxruntime", "onnx-graphsurgeon", "polygraphy", "netron", "numpy",
                 "tensorrt-rtx-cu13", "playwright"]:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def _fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "**no**"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v).replace("|", "\\|")


def discover(only: list[str] | None):
    for p in sorted(HERE.glob("bench_*.py")):
        name = p.stem[len("bench_"):]
        if only and name not in only:
            continue
        spec = importlib.util.spec_from_file_location(f"bench_{name}", p)
        mod = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(HERE))
        spec.loader.exec_module(mod)
        yield name, mod


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="few repetitions: a smoke run, numbers are rough")
    ap.add_argument("--only", default="", help="comma-separated bench names (file names without bench_)")
    ap.add_argument("--no-write", action="store_true", help="do not rewrite docs/benchmarks.md")
    args = ap.parse_args(argv)
    only = [s for s in args.only.split(",") if s] or None
    rows, failures = [], []
    t0 = time.time()
    for name, mod in discover(only):
        print(f"== bench {name}", flush=True)
        t = time.time()
        try:
            got = mod.run(quick=args.quick)
            stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
            for r in got:
                r.setdefault("benchmark", name)
                r["_bench"], r["_run"] = name, stamp
                print("   " + json.dumps({k: r.get(k) for k in COLUMNS if r.get(k) is not None}, default=str), flush=True)
            rows.extend(got)
        except Exception as e:  # a failing bench is reported, the others still run
            traceback.print_exc()
            failures.append((name, f"{type(e).__name__}: {e}"))
        print(f"   ({time.time() - t:.1f} s)", flush=True)
    print()
    print(" | ".join(COLUMNS[:9]))
    for r in rows:
        print(" | ".join(_fmt(r.get(c)) for c in COLUMNS[:9]))
    if not args.no_write:
        if only and RAW.exists():  # keep the other benches' rows from their last run
            kept = [r for r in json.loads(RAW.read_text())["rows"] if r.get("_bench") not in only]
            rows = kept + rows
            rows.sort(key=lambda r: r.get("_bench", ""))
        RAW.write_text(json.dumps({"machine": _machine(), "rows": rows}, indent=1, default=str) + "\n")
        write_doc(rows, failures, quick=args.quick, elapsed=time.time() - t0, only=only)
        print(f"\nwrote {DOC.relative_to(ROOT)}")
    return 1 if failures else 0


def write_doc(rows, failures, *, quick, elapsed, only):
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except Exception:
        commit = "?"
    cmd = "python bench/run.py" + (" --quick" if quick else "") + (f" --only {','.join(only)}" if only else "")
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`bench/run.py`); do not edit by hand. Every row measures ours and the peer",
        "side by side in the same run on the same machine; `ratio` = ours / peer (lower is better for times",
        "and memory) unless the notes say otherwise. Medians over repetitions after warm-ups; `spread` is",
        "min–max of the repetitions. Wall-clock goals measured on an idle 2-core slice (this VM is often",
        "shared): [benchmarks-quiet.md](benchmarks-quiet.md).",
        "",
        f"- date: {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {_machine()}",
        f"- versions: {', '.join(f'{k} {v}' for k, v in _versions().items())}",
        f"- commit: {commit}",
        f"- command: `{cmd}` ({elapsed:.0f} s{', quick mode: rough numbers' if quick else ''})"
        + ("; rows of the other benches are from their last run (column `run`)" if only else ""),
        "",
        "| " + " | ".join(c.lstrip("_") for c in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c)) for c in COLUMNS) + " |")
    if failures:
        lines += ["", "## Benchmarks that failed in this run", ""]
        lines += [f"- `{n}`: {msg}" for n, msg in failures]
    lines += ["", "GPU results: see [benchmarks-gpu.md](benchmarks-gpu.md).", ""]
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
