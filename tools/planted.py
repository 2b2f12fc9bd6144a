"""`make planted`: re-plant known bugs one at a time and check that the suite catches each one.

Issue #23 began with an audit that planted 23 bugs one at a time and found 13 uncaught. This tool keeps that
audit repeatable: every entry of :data:`PLANTS` is one small source change that makes the library lie or break
(an exact ``old`` text in a file and its ``new`` replacement), plus the test files a developer would run for
that module. For each plant the tool copies the repository into a scratch folder, applies the plant, runs those
test files, and records whether they fail (caught) or pass (missed). Before any plant it runs every selection on
the unplanted copy: a selection that already fails cannot judge a plant.

    python tools/planted.py                  # every plant; writes docs/planted.json and the table in docs/testing.md
    python tools/planted.py p99-is-p90 ...   # some plants (no doc writes)
    python tools/planted.py --list           # ids, files, what each plant does

The first thirteen are the bugs the issue's audit reports as uncaught, written against today's code; the rest
are further lies of the same kinds (numbers, verdicts, safety checks, recipe choices). A plant whose ``old``
text no longer occurs exactly once is reported as ``stale`` (the code moved: update the plant), never as caught.

Outcome per plant: ``caught`` (pytest exit 1: a test failed), ``missed`` (exit 0), ``error`` (pytest could not run:
exit 2-4; counted as not caught), ``stale``. Mutation testing (tools/mutate.py) explores many small mutants per
function; this is the complementary check that the bugs users would actually suffer are caught by the tests.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mutate import copy_repo  # noqa: E402  (the same scratch copy of the repository as make mutate)

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "planted.json"
DOC = ROOT / "docs" / "testing.md"
WORK = Path(os.environ.get("WB_PLANTED_DIR") or Path.home() / ".cache" / "trt-workbench" / "planted")
MARKS = "not browser and not notebook and not gpu and not trt"


@dataclass(frozen=True)
class Plant:
    id: str
    what: str          # the bug, as a user would suffer it
    file: str
    old: str
    new: str
    tests: tuple[str, ...]
    marks: str = MARKS
    from_issue: bool = False


LATENCY = ("tests/test_latency.py", "tests/test_mut_latency.py", "tests/test_oracles.py")
SUMMARY = ("tests/test_mut_summary.py", "tests/test_oracles.py", "tests/test_report.py")
SENS = ("tests/test_sensitivity.py", "tests/test_mut_sensitivity.py")
LAYERWISE = ("tests/test_layerwise.py", "tests/test_mut_layerwise.py")
FP16 = ("tests/test_fp16_safety.py", "tests/test_mut_fp16.py")
MODEL = ("tests/test_model.py", "tests/test_mut_model.py", "tests/test_oracles.py")
METRICS = ("tests/test_compare.py", "tests/test_verdicts.py", "tests/test_mut_metrics.py")

PLANTS: list[Plant] = [
    # ---------------------------------------------------------------- the issue's uncaught thirteen
    Plant("p99-is-p90", "p99 silently equal to p90", "workbench/measure/latency.py",
          '"p99_ms": float(p99)', '"p99_ms": float(p90)', LATENCY, from_issue=True),
    Plant("warmup-skipped", "warm-up runs skipped", "workbench/measure/latency.py",
          "            for _ in range(warmup):\n                fn(*args)",
          "            for _ in range(0):\n                fn(*args)", LATENCY, from_issue=True),
    Plant("coverage-goal-0.5", "per-layer coverage goal 0.9 changed to 0.5", "workbench/measure/layers.py",
          "COVERAGE_GOAL = 0.9", "COVERAGE_GOAL = 0.5", ("tests/test_layers.py", "tests/test_oracles.py"),
          from_issue=True),
    Plant("speedup-inverted", "speedup inverted (variant p50 / fp32 p50) in summary and report",
          "workbench/measure/repeat.py", 'row["speedup"] = float(rr["p50_ms"]) / float(r["p50_ms"])',
          'row["speedup"] = float(r["p50_ms"]) / float(rr["p50_ms"])', SUMMARY, from_issue=True),
    Plant("first-variant-accuracy", "every variant shown with the first variant's accuracy", "workbench/flow.py",
          "                    r = sel.iloc[0]\n                    row[\"top1\"]",
          "                    r = acc.iloc[0]\n                    row[\"top1\"]", SUMMARY, from_issue=True),
    Plant("ranking-reversed", "mixed-precision ranking reversed (least noisy node kept first)",
          "workbench/compare/sensitivity.py", "return sorted(ranked, key=lambda t: -t[1])",
          "return sorted(ranked, key=lambda t: t[1])", SENS, from_issue=True),
    Plant("greedy-never-reranks", "greedy search never re-ranks on the new mixed variant",
          "workbench/compare/sensitivity.py", "ranked = _rank(model, var, lw_batches, lowered, set(keep), progress)",
          "ranked = _rank(model, low_var, lw_batches, lowered, set(keep), progress)", SENS, from_issue=True),
    Plant("local-noise-is-total", "layerwise local noise computed from total noise", "workbench/compare/layerwise.py",
          'r["local_noise"] = max(0.0, acc.noise_ratio - max(upstream, default=0.0))',
          'r["local_noise"] = acc.noise_ratio', LAYERWISE, from_issue=True),
    Plant("fp16-underflow-off", "the fp16 underflow check switched off", "workbench/precision/floating.py",
          "if tiny and tiny / nz.size > underflow_fraction:", "if False:", FP16, from_issue=True),
    Plant("dotdot-check-removed", "the '..' external-data check removed", "workbench/model.py",
          'if ".." in Path(loc.replace("\\\\", "/")).parts:', "if False:", MODEL, from_issue=True),
    Plant("inspector-misspelled", "a misspelled TensorRT inspector call", "workbench/backends/tensorrt.py",
          "self.engine.create_engine_inspector()", "self.engine.create_engine_inspecter()",
          ("tests/test_trt_api_names.py", "tests/test_layers.py", "tests/test_trt_runtime.py"), from_issue=True),
    Plant("buffers-never-grow", "device buffers that never grow", "workbench/backends/trt_runtime.py",
          "            if ptr and nbytes <= size:\n                return ptr\n            if ptr:\n"
          "                cuda_check(self.rt.cudaFree(ptr), \"cudaFree\")",
          "            if ptr:\n                return ptr\n            if ptr:\n"
          "                cuda_check(self.rt.cudaFree(ptr), \"cudaFree\")",
          ("tests/test_trt_runtime.py",), from_issue=True),
    Plant("viewer-upstream-walks-down", "the viewer's Upstream button walks downstream",
          "workbench/widgets/static/graph_view.js",
          'E("Upstream","highlight what feeds the selection",()=>Ce(-1))',
          'E("Upstream","highlight what feeds the selection",()=>Ce(1))',
          ("tests/test_graph_browser.py::test_upstream_downstream_are_exactly_the_ancestors_and_descendants",
           "tests/test_graph_browser.py::test_upstream_downstream_over_closed_groups"),
          marks="browser", from_issue=True),
    # ---------------------------------------------------------------- more of the same kinds
    Plant("engine-call-misspelled", "a misspelled call on our TensorRT engine in the GPU-only profiler",
          "workbench/measure/layers.py", "parse_trt_layer_info(engine.inspector_json())",
          "parse_trt_layer_info(engine.inspector_jsn())", ("tests/test_trt_api_names.py", "tests/test_layers.py")),
    Plant("noise-floor-ignored", "a 1 % speed difference reported as 'faster' (noise floor ignored)",
          "workbench/measure/repeat.py", "if abs(speedup - 1.0) <= NOISE_FLOOR or (blocks > 1 and lo <= 1.0 <= hi):",
          "if blocks > 1 and lo <= 1.0 <= hi:", SUMMARY + ("tests/test_latency.py",)),
    Plant("block-range-ignored", "'faster' although some blocks were slower (range containing 1 ignored)",
          "workbench/measure/repeat.py", "if abs(speedup - 1.0) <= NOISE_FLOOR or (blocks > 1 and lo <= 1.0 <= hi):",
          "if abs(speedup - 1.0) <= NOISE_FLOOR:", SUMMARY + ("tests/test_latency.py",)),
    Plant("cosine-unnormalized", "cosine similarity not normalized by the second norm", "workbench/compare/metrics.py",
          "return float(max(-1.0, min(1.0, dot / (math.sqrt(rr) * math.sqrt(xx)))))",
          "return float(max(-1.0, min(1.0, dot / (math.sqrt(rr) * math.sqrt(rr)))))", METRICS),
    Plant("int8-ignores-backend", "the int8 recipe gives ORT CPU TensorRT's (slow there) form",
          "workbench/precision/quantize.py", 'if backend in ("onnxruntime", "onnxruntime-cpu", "ort", "cpu"):',
          'if backend in ("onnxruntime-cpu", "ort", "cpu"):',
          ("tests/test_recipe_validity.py", "tests/test_precision.py")),
    Plant("output-escape-allowed", "an output path may resolve outside the chosen folder", "workbench/fsutil.py",
          "    return child == root or root in child.parents", "    return True",
          ("tests/test_model.py", "tests/test_mut_model.py", "tests/test_oracles.py", "tests/test_e2e_cli.py",
           "tests/test_output_paths.py")),
    Plant("symlinked-data-allowed", "external data symlinked out of the model's folder is read", "workbench/model.py",
          "        if real != base_real and base_real not in real.parents:", "        if False:", MODEL),
]


def _pytest(work: Path, tests: tuple[str, ...], marks: str, timeout: float) -> tuple[int, float, str]:
    env = {**os.environ, "PYTHONPATH": str(work), "WB_REPO_GUARD": "off", "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:randomly", "-p", "no:cacheprovider",
           "-m", marks, *tests]
    t = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, time.perf_counter() - t, "timeout"
    tail = [ln for ln in (p.stdout + p.stderr).splitlines() if ln.strip()]
    failed = next((ln for ln in tail if ln.startswith("FAILED ") or ln.startswith("ERROR ")), "")
    return p.returncode, time.perf_counter() - t, failed or (tail[-1] if tail else "")


def _outcome(rc: int) -> str:
    return {0: "missed", 1: "caught"}.get(rc, "error")


def run(plants: list[Plant], timeout: float, progress=print) -> dict:
    work = WORK / "repo"
    copy_repo(work)
    results: dict = {}
    baseline: dict[tuple, tuple[int, str]] = {}
    for pl in plants:
        key = (pl.tests, pl.marks)
        if key not in baseline:
            rc, secs, tail = _pytest(work, pl.tests, pl.marks, timeout)
            baseline[key] = (rc, tail)
            progress(f"baseline {' '.join(pl.tests)}: exit {rc} ({secs:.0f} s)")
    for pl in plants:
        path = work / pl.file
        text = (ROOT / pl.file).read_text()
        row = {"what": pl.what, "file": pl.file, "tests": list(pl.tests), "from_issue": pl.from_issue}
        base_rc, base_tail = baseline[(pl.tests, pl.marks)]
        if text.count(pl.old) != 1:
            row.update(outcome="stale", detail=f"the planted text occurs {text.count(pl.old)} times in {pl.file}")
        elif base_rc != 0:
            row.update(outcome="error", detail=f"the selection fails without the plant (exit {base_rc}): {base_tail}")
        else:
            planted = text.replace(pl.old, pl.new)
            if pl.file.endswith(".py"):
                compile(planted, pl.file, "exec")  # a plant must be valid code, or "caught" means nothing
            path.write_text(planted)
            try:
                rc, secs, tail = _pytest(work, pl.tests, pl.marks, timeout)
            finally:
                path.write_text(text)
            row.update(outcome=_outcome(rc), exit=rc, seconds=round(secs, 1), detail=tail)
        results[pl.id] = row
        progress(f"{pl.id:<28} {row['outcome']:<7} {row.get('detail', '')[:110]}")
    return results


def table(doc: dict) -> str:
    lines = ["| plant | the bug | from the issue's audit | outcome | caught by |", "|---|---|---|---|---|"]
    for pid, r in doc["plants"].items():
        detail = r.get("detail", "")
        by = re.sub(r"^(FAILED|ERROR) ", "", detail).split(" - ")[0] if r["outcome"] == "caught" else ""
        outcome = f"**{r['outcome']}**" + (f" ({detail})" if r["outcome"] != "caught" and detail else "")
        lines.append(f"| `{pid}` | {r['what']} | {'yes' if r['from_issue'] else ''} | {outcome} | "
                     f"{('`' + by + '`') if by else ''} |")
    return "\n".join(lines)


def _write_doc(doc: dict) -> None:
    text = DOC.read_text()
    start, end = "<!-- planted-table: written by tools/planted.py -->", "<!-- /planted-table -->"
    caught = sum(r["outcome"] == "caught" for r in doc["plants"].values())
    body = (f"{start}\n{caught} of {len(doc['plants'])} caught ({doc['date']}, {doc['machine']}, "
            f"{doc['minutes']} min, `{doc['command']}`).\n\n{table(doc)}\n{end}")
    if start in text:
        text = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: body, text, flags=re.S)
    else:
        text += "\n" + body + "\n"
    DOC.write_text(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ids", nargs="*", help="plant ids (default: all)")
    ap.add_argument("--list", action="store_true", help="list the plants")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per pytest run (default 900)")
    a = ap.parse_args(argv)
    if a.list:
        for p in PLANTS:
            print(f"{p.id:<28} {p.file:<40} {p.what}")
        return 0
    known = {p.id: p for p in PLANTS}
    unknown = [i for i in a.ids if i not in known]
    if unknown:
        ap.error(f"unknown plant(s) {unknown}; see --list")
    plants = [known[i] for i in a.ids] if a.ids else PLANTS
    t = time.perf_counter()
    results = run(plants, a.timeout)
    caught = sum(r["outcome"] == "caught" for r in results.values())
    print(f"{caught} of {len(results)} plants caught")
    if not a.ids:
        import platform
        doc = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               "machine": f"{os.cpu_count()} cores, Python {platform.python_version()}",
               "minutes": round((time.perf_counter() - t) / 60, 1), "command": "python tools/planted.py",
               "load_at_start": round(os.getloadavg()[0], 1), "plants": results}
        OUT.write_text(json.dumps(doc, indent=1) + "\n")
        _write_doc(doc)
    return 0 if caught == len(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
