"""tools/mutate.py (`make mutate`) keeps its scores honest: a run whose unmutated tests fail records nothing, and
every function of the issue's core modules is mutated by some target or excused with a reason
(`python tools/mutate.py --coverage`). Running mutmut itself is `make mutate` (minutes), not part of the suite."""
from __future__ import annotations

import ast
import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("mutate_tool", ROOT / "tools" / "mutate.py")
mutate = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("mutate_tool", mutate)  # dataclasses look their module up by name
_spec.loader.exec_module(mutate)


@pytest.mark.parametrize("message", ["Failed to run clean test", "failed to collect stats. runner returned 1"])
def test_a_run_mutmut_could_not_start_records_nothing(tmp_path, monkeypatch, capsys, message):
    out = tmp_path / "mutation.json"
    out.write_text(json.dumps({"latency": {"score": 0.97}}))
    before = out.read_text()
    monkeypatch.setattr(mutate, "OUT", out)
    monkeypatch.setattr(mutate, "DOC", tmp_path / "testing.md")
    fake = {"module": "m", "functions": "all", "note": "", "tests": [], "killed": 0, "timeout": 0, "survived": 0,
            "no tests": 0, "suspicious": 0, "skipped": 0, "not checked": 435, "mutants": 435, "score": None,
            "undetected": [], "run_rc": 1, "minutes": 0.1, "tail": f"...\n{message}\n"}
    monkeypatch.setattr(mutate, "run", lambda *a, **k: dict(fake))
    monkeypatch.setattr(sys, "argv", ["mutate.py", "latency"])
    with pytest.raises(SystemExit) as e:
        mutate.main()
    assert "latency" in str(e.value) and out.read_text() == before
    assert "nothing recorded" in capsys.readouterr().out


def test_a_finished_run_is_recorded(tmp_path, monkeypatch):
    out = tmp_path / "mutation.json"
    monkeypatch.setattr(mutate, "OUT", out)
    monkeypatch.setattr(mutate, "DOC", tmp_path / "testing.md")
    monkeypatch.setattr(mutate, "WORK", tmp_path / "work")
    fake = {"module": "m", "functions": "all", "note": "", "tests": [], "killed": 9, "timeout": 0, "survived": 1,
            "no tests": 0, "suspicious": 0, "skipped": 0, "not checked": 0, "mutants": 10, "score": 0.9,
            "undetected": ["x"], "run_rc": 0, "minutes": 0.1, "tail": ""}
    monkeypatch.setattr(mutate, "run", lambda *a, **k: dict(fake))
    monkeypatch.setattr(sys, "argv", ["mutate.py", "latency"])
    mutate.main()
    rec = json.loads(out.read_text())["latency"]
    assert rec["score"] == 0.9 and rec["unexplained"] == ["x"] and rec["tool"] == "mutmut 3.8.1"


def test_functions_are_named_as_mutmut_names_them():
    """Module-level functions are x_NAME, methods xǁCLASSǁNAME; nested functions belong to their holder."""
    names = mutate._functions("workbench/measure/latency.py")
    tree = ast.parse((ROOT / "workbench/measure/latency.py").read_text())
    tops = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert tops and all(f"x_{n}" in names for n in tops)
    assert "xǁLatencyResultǁto_row" in names  # a method named in EXPLAINED keys
    assert not any("ǁ" not in n and not n.startswith("x_") for n in names)


def test_every_core_function_is_mutated_or_excused():
    cov = mutate.coverage()
    assert {m.split("/")[1] for m in cov} >= {"measure", "compare", "precision", "model.py", "data.py", "builds.py"}
    unexcused = [f"{m}:{f}" for m, c in cov.items() for f in c["uncovered"] if f"{m}:{f}" not in mutate.NOT_MUTATED]
    assert not unexcused, "add a target or a reason in tools/mutate.py NOT_MUTATED"
    stale = [k for k in mutate.NOT_MUTATED
             if k.split(":")[1] not in cov.get(k.split(":")[0], {}).get("uncovered", [])]
    assert not stale, "NOT_MUTATED names functions that are mutated now (or no longer exist)"


def test_rerun_also_takes_every_mutant_of_a_function_whose_source_changed(tmp_path):
    """mutmut resets a changed function's results only when it regenerates its mutants, after --rerun has
    chosen what to run; the tool therefore compares the scratch copy's function hashes with mutmut's."""
    from mutmut.mutation.file_mutation import compute_function_hashes

    t = mutate.Target("pkg/m.py", [])
    src = "def f(x):\n    return x + 1\n\n\ndef g(x):\n    return x * 2\n"
    (tmp_path / "pkg").mkdir()
    (tmp_path / "mutants" / "pkg").mkdir(parents=True)
    (tmp_path / "mutants" / "pkg" / "m.py.meta").write_text(json.dumps(
        {"hash_by_function_name": compute_function_hashes(src), "exit_code_by_key": {}}))
    (tmp_path / "pkg" / "m.py").write_text(src)
    assert mutate._changed_functions(t, tmp_path) == set()
    (tmp_path / "pkg" / "m.py").write_text(src.replace("x * 2", "x * 3"))
    assert mutate._changed_functions(t, tmp_path) == {"x_g"}
    assert mutate._short("workbench.data.xǁBatchesǁbounds__mutmut_3") == "xǁBatchesǁbounds"
