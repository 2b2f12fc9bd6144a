"""workbench.edit.History: validation, rejection, force, undo/redo, diff, script replay, JSON, save."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

import workbench as wb
import workbench.edit as ed
from workbench.errors import EditError, UsageError

from conftest import sha256


@pytest.fixture
def digits(sample):
    return sample("digits_cnn.onnx")


def test_apply_undo_redo_and_versions_table(digits):
    h = ed.History(digits)
    v0 = h.current
    assert v0.op == "load" and v0.valid is None  # not checked until asked
    assert h.check(0).ok and h[0].valid
    v1 = h.apply("insert_node", tensor="logits", op_type="Identity", name="probe")
    v2 = h.apply(ed.remove_node, node="probe")
    assert [v.index for v in (v0, v1, v2)] == [0, 1, 2] and h.current is v2
    t = h.versions
    assert list(t.columns) == ["index", "op", "params", "valid", "forced", "node_count", "hash", "current", "reasons"]
    assert list(t.op) == ["load", "insert_node", "remove_node"]
    assert json.loads(t.params[2]) == {"node": "probe"}
    assert list(t.node_count) == [12, 13, 12] and list(t.current) == [False, False, True]
    assert h.undo() is v1 and h.undo() is h[0] and h.model is v0.model
    with pytest.raises(EditError, match="nothing to undo"):
        h.undo()
    assert h.redo() is v1
    # a new edit after an undo discards the redo branch
    v2b = h.apply("toposort")
    assert v2b.index == 2 and len(h) == 3 and not h.can_redo
    with pytest.raises(EditError, match="nothing to redo"):
        h.redo()


def test_undo_to_start_is_the_original_model_byte_identical(digits, tmp_path):
    original_bytes = digits.read_bytes()
    h = ed.History(digits)
    h.apply("fold_constants")
    h.apply("rename", nodes={"/classifier/fc2/Gemm": "head"})
    h.undo()
    h.undo()
    assert h.model is h.source and h.model.hash == wb.load(digits).hash
    assert h.model.proto.SerializeToString() == original_bytes
    out = h.save(tmp_path / "same.onnx")
    assert out.read_bytes() == original_bytes


def test_rejected_edit_keeps_current_and_force_marks_invalid(digits):
    h = ed.History(digits)
    h.apply("toposort")
    before = h.current
    # /features/relu1/Relu's output feeds conv2: deleting it (no bypass) leaves conv2 without input.
    with pytest.raises(EditError, match="rejected.*version 1.*not output of any previous nodes|rejected.*version 1"):
        h.apply("remove_node", node="/features/relu1/Relu", mode="delete")
    assert h.current is before and len(h) == 2
    with pytest.raises(EditError, match="rejected"):
        h.apply("set_input", name="image", dtype="int64")  # Conv has no int64 kernel / type
    assert h.current is before
    v = h.apply("set_input", name="image", dtype="int64", force=True)
    assert not v.valid and v.forced and v.validation.reasons
    t = h.versions
    assert t.valid.tolist() == [None, True, False] and t.forced.tolist() == [False, False, True]
    # the next edit on the invalid version says the model was already invalid
    with pytest.raises(EditError, match="already invalid before this edit"):
        h.apply("set_input", name="image", shape=[1, 1, 8, 8])
    assert "shape inference" in t.reasons[2] or "onnxruntime" in t.reasons[2]


def test_node_with_several_consumers_delete_rejected_bypass_ok(sample):
    h = ed.History(sample("transformer_block.onnx"))
    ln = "/encoder/layer.0/ln1/LayerNormalization"
    out = next(n for n in h.model.graph.node if n.name == ln).output[0]
    assert sum(out in n.input for n in h.model.graph.node) >= 2  # q, k and v projections read it
    with pytest.raises(EditError, match="rejected"):
        h.apply("remove_node", node=ln, mode="delete")
    assert h.current.index == 0
    v = h.apply("remove_node", node=ln)  # bypass: the projections read the block input instead
    assert v.valid and ln not in {n.name for n in v.model.graph.node}


def test_diff_lists_added_removed_changed(digits):
    h = ed.History(digits)
    h.apply("insert_node", tensor="logits", op_type="Identity", name="probe")
    d = h.diff()
    assert list(d.columns) == ["change", "kind", "onnx_node", "tensor", "before", "after"]
    assert ("added", "node", "probe") in set(zip(d.change, d.kind, d.onnx_node))
    h.apply("replace_op", node="/classifier/relu/Relu", op_type="LeakyRelu", attrs={"alpha": 0.1})
    d = h.diff()
    row = d[(d.change == "changed") & (d.onnx_node == "/classifier/relu/Relu")]
    assert len(row) == 1 and row.before.iloc[0].startswith("Relu(") and row.after.iloc[0].startswith("LeakyRelu(")
    h.apply("remove_node", node="probe")
    d = h.diff()
    assert ("removed", "node", "probe") in set(zip(d.change, d.kind, d.onnx_node))
    h.apply("set_batch", batch=2)
    d = h.diff(0, -1)
    shapes = d[d.change == "shape"]
    assert {"input", "output", "tensor"} == set(shapes.kind) and "float[2,1,8,8]" in set(shapes.after)
    assert not any("?" in a for a in shapes.after)  # intermediate shapes are re-inferred, not dropped
    assert ed.summarize(d)["changed node"] == 1


def test_show_diff_calls_the_view_with_both_models(digits):
    calls = []

    class View:  # records what the panel/history passes to GraphView.diff
        def diff(self, a, b):
            calls.append((a, b))

    h = ed.History(digits)
    h.apply("toposort")
    h.show_diff(View())
    assert calls == [(h[0].model, h[1].model)]


def test_script_replay_reproduces_hash(digits, tmp_path):
    h = ed.History(digits)
    h.apply("fold_constants")
    h.apply("insert_node", tensor="logits", op_type="Identity", name="probe")
    h.apply("rename", tensors={"image": "pixels"})
    h.apply("set_batch", batch="N")
    script = h.to_script()
    assert "wb.edit.rename(m, tensors={'image': 'pixels'})" in script
    p = tmp_path / "replay.py"
    p.write_text(script)
    r = subprocess.run([sys.executable, str(p)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == h.model.hash


def test_json_and_save(digits, tmp_path):
    src_hash = sha256(digits)
    h = ed.History(digits)
    h.apply("cleanup", remove_unused_graph_inputs=True)
    h.apply("set_batch", batch=1)
    j = h.to_json()
    assert j["schema_version"] == 1 and j["kind"] == "edit_history" and j["current"] == 2
    assert [v["op"] for v in j["versions"]] == ["load", "cleanup", "set_batch"]
    assert j["versions"][2]["hash"] == h.model.hash
    json.dumps(j)
    with pytest.raises(EditError, match="source model"):
        h.save(digits)
    out = h.save(tmp_path / "out" / "edited.onnx")
    assert wb.load(out).hash == h.model.hash
    assert sha256(digits) == src_hash  # the source file never changes


def test_apply_rejects_unknown_ops_and_params(digits):
    h = ed.History(digits)
    with pytest.raises(UsageError, match="unknown edit operation"):
        h.apply("fold")
    with pytest.raises(UsageError, match="no parameter"):
        h.apply("cleanup", aggressive=True)
    with pytest.raises(UsageError, match="unknown edit operation"):
        h.apply(lambda m: m)
    assert len(h) == 1
