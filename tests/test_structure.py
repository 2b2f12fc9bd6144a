"""Structure rules of issue 17, checked on the source: they fail when someone reintroduces the leak.

* measure/, builds.py, backends/cache.py and flow.py never dispatch on what attributes an engine or a
  backend has (``hasattr(engine, ...)``) or on a product flag (``is_rtx``): they read the protocol's
  declarations. (``hasattr`` on other objects, e.g. a dict-or-Series row, is not dispatch.)
* No module imports another workbench module's private (``_name``) functions.
* One engine-building path: only builds.py (and the engine cache it drives) calls ``backend.build``.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import workbench

ROOT = Path(workbench.__file__).parent
DECLARED_ONLY = [*sorted((ROOT / "measure").glob("*.py")), ROOT / "builds.py", ROOT / "backends" / "cache.py",
                 ROOT / "flow.py"]


def _tree(p: Path) -> ast.AST:
    return ast.parse(p.read_text(), filename=str(p))


def test_no_attribute_sniffing_where_capabilities_are_declared():
    hits = []
    for p in DECLARED_ONLY:
        for n in ast.walk(_tree(p)):
            if (isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "hasattr" and n.args
                    and re.search(r"engine|backend|\bbe\b|\beng\b|session", ast.unparse(n.args[0]))):
                hits.append(f"{p.relative_to(ROOT)}:{n.lineno} hasattr({ast.unparse(n.args[0])}, ...)")
            if isinstance(n, ast.Attribute) and n.attr == "is_rtx":
                hits.append(f"{p.relative_to(ROOT)}:{n.lineno} is_rtx")
            if (isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "getattr"
                    and len(n.args) >= 2 and isinstance(n.args[1], ast.Constant)
                    and n.args[1].value in ("load_engine", "stage", "session", "is_rtx", "session_options",
                                            "inspector_json", "enqueue", "save")):
                hits.append(f"{p.relative_to(ROOT)}:{n.lineno} getattr {n.args[1].value}")
    assert not hits, hits
    assert not any(n.attr == "is_rtx" for p in (ROOT / "backends").glob("*.py") for n in ast.walk(_tree(p))
                   if isinstance(n, ast.Attribute))


def test_no_private_names_imported_across_modules():
    hits = []
    for p in ROOT.rglob("*.py"):
        for n in ast.walk(_tree(p)):
            if isinstance(n, ast.ImportFrom) and (n.level > 0 or (n.module or "").startswith("workbench")):
                hits += [f"{p.relative_to(ROOT)}:{n.lineno} {a.name}" for a in n.names
                         if a.name.startswith("_") and not a.name.startswith("__")]
    assert not hits, hits


def test_only_the_build_path_calls_backend_build():
    allowed = {ROOT / "builds.py", ROOT / "backends" / "cache.py"}
    hits = []
    for p in ROOT.rglob("*.py"):
        if p in allowed or p.parent.name == "backends":
            continue
        for n in ast.walk(_tree(p)):
            if (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "build"
                    and isinstance(n.func.value, (ast.Name, ast.Attribute, ast.Call))):
                recv = ast.unparse(n.func.value)
                if "backend" in recv or recv in ("be", "b") or "get_backend" in recv:
                    hits.append(f"{p.relative_to(ROOT)}:{n.lineno} {recv}.build(...)")
    assert not hits, hits
