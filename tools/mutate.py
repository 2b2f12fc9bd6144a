"""`make mutate`: mutation testing of the core modules with mutmut 3 (why mutmut: maintained, pytest-native,
incremental, runs mutants in forked processes and only the tests that cover the mutated function).

Each core module is mutated in a scratch copy of the repository with only its own test files selected (a full
suite per mutant does not fit 2 cores), and the score (killed / (killed + survived)) goes to
docs/mutation.json; docs/testing.md quotes it.

    python tools/mutate.py [MODULE ...] [--max-children N]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: module -> the test files that own its behaviour
PLAN = {
    "workbench/measure/latency.py": ["tests/test_latency.py", "tests/test_oracles.py"],
    "workbench/compare/metrics.py": ["tests/test_compare.py", "tests/test_oracles.py"],
    "workbench/data.py": ["tests/test_data.py"],
    "workbench/model.py": ["tests/test_model.py", "tests/test_oracles.py"],
    "workbench/builds.py": ["tests/test_builds_fallback.py", "tests/test_build_cli.py"],
    "workbench/precision/base.py": ["tests/test_precision.py"],
    "workbench/measure/layers.py": ["tests/test_layers.py", "tests/test_oracles.py"],
}


def run(module: str, tests: list[str], max_children: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="wbmut") as td:
        work = Path(td) / "repo"
        shutil.copytree(ROOT, work, ignore=shutil.ignore_patterns(".git", ".venv", "mutants", "out", "*.egg-info",
                                                                     "node_modules", "test-artifacts", ".gpu*", ".wheels*"))
        with open(work / "pyproject.toml", "a") as f:  # the scratch copy's config only
            f.write("\n[tool.mutmut]\nsource_paths = [\"workbench/\"]\n"
                    f"only_mutate = [\"{module}\"]\n"
                    f"pytest_add_cli_args_test_selection = {json.dumps(tests)}\n"
                    "also_copy = [\"sample_models/\", \"bench/\", \"notebooks/\", \"docs/\"]\n"
                    "pytest_add_cli_args = [\"-p\", \"no:cacheprovider\"]\n")
        p = subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children)], cwd=work,
                           capture_output=True, text=True)
        r = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=work,
                           capture_output=True, text=True)
        text = r.stdout
        counts = {k: len(re.findall(rf":\s*{k}\b", text)) for k in ("killed", "survived", "timeout", "suspicious",
                                                                    "no tests", "skipped")}
        survived = [line.split(":")[0].strip() for line in text.splitlines() if line.strip().endswith("survived")]
        done = counts["killed"] + counts["survived"] + counts["timeout"]
        return {"module": module, "tests": tests, **counts,
                "score": (counts["killed"] + counts["timeout"]) / done if done else None,
                "survivors": survived[:50], "run_rc": p.returncode, "tail": p.stdout[-600:] + p.stderr[-600:]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("modules", nargs="*")
    ap.add_argument("--max-children", type=int, default=2)
    a = ap.parse_args()
    out = ROOT / "docs" / "mutation.json"
    results = json.loads(out.read_text()) if out.exists() else {}
    for m in a.modules or list(PLAN):
        res = run(m, PLAN[m], a.max_children)
        res["date"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        results[m] = res
        print(f"{m}: score {res['score']}, killed {res['killed']}, survived {res['survived']}, timeout {res['timeout']}")
        out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
