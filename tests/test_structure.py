"""Structure rules of issue 17, checked on the source: they fail when someone reintroduces the leak.

* measure/, builds.py, backends/cache.py and flow.py never dispatch on what attributes an engine or a
  backend has (``hasattr(engine, ...)``) or on a product flag (``is_rtx``): they read the protocol's
  declarations. (``hasattr`` on other objects, e.g. a dict-or-Series row, is not dispatch.)
* No module imports another workbench module's private (``_name``) functions.
* One engine-building path: only builds.py (and the engine cache it drives) calls ``backend.build``.
* The layers of docs/architecture.md: a module's top-level imports go down the layer list, never up;
  a module missing from the list fails (add it to the doc and to ``LAYERS``). ``import workbench`` loads
  no heavy optional package.
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


#: docs/architecture.md, "Layers" (lowest first); a module may import, at its top, only lower layers
LAYERS = [["errors", "logs"], ["fsutil"], ["model"], ["data", "records", "variant", "shapes", "synthetic"],
          ["inspect", "edit", "colors"], ["precision", "graph", "device"], ["backends", "variantcache"], ["builds"],
          ["run", "measure", "compare"], ["flow", "sweeps"], ["plots", "report"], ["widgets", "commands", "cli"]]


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _top_level_imports(p: Path) -> list[tuple[str, int]]:
    """(workbench unit imported, line) for the module-level imports of ``p`` (not those inside functions)."""
    rel = p.relative_to(ROOT.parent).with_suffix("").parts
    pkg = list(rel if p.name == "__init__.py" else rel[:-1])
    if p.name == "__init__.py":
        pkg = pkg[:-1] if pkg[-1] == "__init__" else pkg
    out = []
    for node in _tree(p).body:
        if isinstance(node, ast.ImportFrom) and node.level:
            base = pkg[:len(pkg) - (node.level - 1)]
            if node.module:
                out.append((_unit(".".join(base + [node.module])), node.lineno))
            else:
                out += [(_unit(".".join(base + [a.name])), node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("workbench."):
            out.append((_unit(node.module), node.lineno))
        elif isinstance(node, ast.Import):
            out += [(_unit(a.name), node.lineno) for a in node.names if a.name.startswith("workbench.")]
    return out


def test_imports_follow_the_documented_layers():
    rank = {u: k for k, layer in enumerate(LAYERS) for u in layer}
    doc = (ROOT.parent / "docs" / "architecture.md").read_text()
    layer_text = doc.split("## Layers", 1)[1].split("```")[1].replace("\n", " ")
    documented = [[item.strip().split(" ")[0] for item in part.split(",")] for part in layer_text.split("→")]
    assert documented == LAYERS, "docs/architecture.md's layer list and LAYERS differ"
    bad, missing = [], set()
    for p in sorted(ROOT.rglob("*.py")):
        if "static" in p.parts or p.name == "__main__.py" or p == ROOT / "__init__.py":
            continue
        me = _unit(".".join(p.relative_to(ROOT.parent).with_suffix("").parts))
        if me not in rank:
            missing.add(me)
            continue
        for dep, line in _top_level_imports(p):
            if dep == me or dep == "__init__":
                continue
            if dep not in rank:
                missing.add(dep)
            elif rank[dep] >= rank[me]:
                bad.append(f"{p.relative_to(ROOT.parent)}:{line} {me} imports {dep} at the top")
    assert not missing, f"modules not in the documented layers: {sorted(missing)}"
    assert not bad, bad


def test_import_workbench_loads_no_heavy_optional_package():
    import subprocess
    import sys

    heavy = ["tensorrt", "tensorrt_rtx", "torch", "plotly", "anywidget", "ipywidgets", "ray", "modelopt",
             "onnxruntime", "pandas", "onnx_graphsurgeon", "cuda"]
    code = f"import sys, workbench; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT.parent).stdout.strip()
    assert out == "[]", out
