"""Outputs never escape the chosen folder: a name derived from a model that tries to, or a link planted in the
output folder that points out of it, is refused with OutputError and nothing outside is written."""
from __future__ import annotations

import os

import pytest

from workbench.errors import OutputError
from workbench.fsutil import child_path, guard_output


def test_child_path_refuses_names_that_leave_the_folder(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for bad in ("..", ".", "../x.onnx", "a/b.onnx", "a\\b.onnx", "", "x\0y"):
        with pytest.raises(OutputError):
            child_path(out, bad)
    assert child_path(out, "m-fp16.onnx") == out / "m-fp16.onnx"


def test_child_path_refuses_a_link_that_points_outside(tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    os.symlink(elsewhere / "victim.onnx", out / "m-fp16.onnx")           # dangling: would create the victim
    os.symlink(out / "real.onnx", out / "inside-link.onnx")            # points inside: allowed
    with pytest.raises(OutputError, match="outside the output folder"):
        child_path(out, "m-fp16.onnx")
    assert child_path(out, "inside-link.onnx") == out / "inside-link.onnx"


def test_guard_output_with_a_root_refuses_paths_resolving_outside(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(tmp_path, root / "up")
    with pytest.raises(OutputError, match="outside the output folder"):
        guard_output(root / "up" / "x.json", root=root)
    with pytest.raises(OutputError, match="outside the output folder"):
        guard_output(root / ".." / "x.json", root=root)
    assert guard_output(root / "sub" / "x.json", root=root) == root / "sub" / "x.json"


def test_build_refuses_a_planted_link_in_its_output_folder(sample, tmp_path):
    """`build_variants(..., out_dir=...)` writes <variant>.onnx through child_path: a link named like a variant
    that points out of the folder is refused, and the file it points at is never created."""
    from workbench.builds import build_variants

    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    os.symlink(elsewhere / "victim.onnx", out / "digits_cnn-fp32.onnx")
    with pytest.raises(OutputError, match="outside the output folder"):
        res = build_variants(sample("digits_cnn.onnx"), ["fp32"], "onnxruntime", out_dir=out, progress=False)
        res.results[0].raise_for_status()
    assert not (elsewhere / "victim.onnx").exists()
