"""The README's notebook example runs as written (keeps the README true)."""
from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_example_runs(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README has no python example"
    monkeypatch.chdir(ROOT / "notebooks")  # where `make lab` opens: the workshop's working folder
    ns: dict = {}
    for code in blocks:
        exec(compile(code, "README.md", "exec"), ns)  # noqa: S102 - our own README, not user input
    # The example's objects are real results, not placeholders.
    assert ns["builds"].to_frame()["status"].isin(["ok", "cached"]).all()
    assert ns["lat"].stats["p50_ms"] > 0
    assert set(ns["cmp"].summary()["precision"]) >= {"fp16", "int8"}
    assert set(ns["fr"].summary()["speed"]) >= {"reference"} and not ns["fr"].accuracy.empty
    assert os.path.exists(ROOT / "sample_models" / "digits_cnn.onnx")
