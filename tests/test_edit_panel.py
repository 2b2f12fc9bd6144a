"""EditPanel: selection from a real GraphView fills the forms; apply/undo/redo go through History;
errors stay inline; the code shown is the public call."""
from __future__ import annotations

import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("anywidget")

import workbench.edit as ed  # noqa: E402
from workbench.widgets.edit_panel import EditPanel  # noqa: E402
from workbench.widgets.graph_view import GraphView  # noqa: E402


def test_panel_selection_apply_undo_errors(sample):
    path = sample("digits_cnn.onnx")
    view = GraphView(path)
    panel = EditPanel(path, view=view)
    assert panel.undo_button.disabled and panel.redo_button.disabled
    view.selected = ["/classifier/relu/Relu"]
    assert panel.fields["node"].value == "/classifier/relu/Relu"
    v = panel.apply()
    assert v is not None and v.op == "remove_node" and len(panel.history) == 2
    assert "wb.edit.remove_node(m, node=&#x27;/classifier/relu/Relu&#x27;, mode=&#x27;bypass&#x27;)" in panel.code.value
    assert "removed" in panel.diff_table.value and not panel.undo_button.disabled
    # a breaking edit: rejected, shown inline, history unchanged
    panel.op.value = "set_input"
    panel.fields["name"].value = "image"
    panel.fields["dtype"].value = "int64"
    assert panel.apply() is None and len(panel.history) == 2
    assert "rejected" in panel.errors.value
    # a later success does not make the error vanish
    panel.op.value = "toposort"
    assert panel.apply() is not None
    assert "rejected" in panel.errors.value and len(panel.error_log) == 1
    panel.undo_button.click()
    assert panel.history.current.index == 1 and not panel.redo_button.disabled
    panel.redo_button.click()
    assert panel.history.current.index == 2
    assert "wb.edit.toposort(m)" in panel.show_script()
    diff_view = panel.show_diff()
    assert isinstance(diff_view, GraphView)
    panel.clear_errors()
    assert panel.errors.value == "" and panel.error_log == []


def test_panel_input_selection_fills_tensor_fields(sample):
    path = sample("digits_cnn.onnx")
    view = GraphView(path)
    panel = EditPanel(ed.History(path), view=view)
    panel.op.value = "set_input"
    view.selected = ["input:image"]
    assert panel.fields["name"].value == "image"
    panel.fields["shape"].value = "2x1x8x8"
    v = panel.apply()
    assert v is not None and v.params == {"name": "image", "shape": [2, 1, 8, 8]}
    panel.op.value = "insert_node"
    panel.fields["attrs"].value = "{not json"
    assert panel.apply() is None and "cannot read" in panel.errors.value


def test_view_follows_apply_undo_redo(light):
    """GraphView.set_model: the bound view shows each version; open groups kept, vanished selection dropped."""
    path = light("squeezenet")
    view = GraphView(path)
    panel = EditPanel(path, view=view)
    node = next(n.name for n in panel.history.model.graph.node if n.op_type == "Relu" and n.name)
    before = len(view.payload.recs)
    view.selected = [node]
    assert view._details and node in view.payload.name_to_id
    expanded = list(view.expanded)
    assert panel.apply() is not None  # remove_node(node) by bypass, prefilled from the selection
    assert node not in view.payload.name_to_id and len(view.payload.recs) == before - 1
    assert view.selected == [] and view._details == {}
    assert all(g in expanded or g not in view.payload.groups for g in view.expanded)
    assert set(expanded) & set(view.payload.groups) <= set(view.expanded)
    panel.undo_button.click()
    assert node in view.payload.name_to_id and len(view.payload.recs) == before
    panel.redo_button.click()
    assert node not in view.payload.name_to_id


def test_set_model_keeps_expanded_groups_and_selection(sample):
    import workbench.edit as edit

    path = sample("transformer_block.onnx")
    view = GraphView(path)
    groups = [g for g in view.payload.groups if g]
    assert groups
    view.collapse(*groups)
    view.expand(groups[-1])
    opened = list(view.expanded)
    keep = next(n for n in view.payload.name_to_id if not n.startswith(("input:", "output:")))
    view.selected = [keep]
    with_overlay = view.set_overlay({keep: 1.0}, label="ms")
    m = edit.History(path)
    m.apply("set_input", name="x", shape=[2, 8, 64])
    view.set_model(m.model)
    assert set(opened) <= set(view.expanded) | {g for g in opened if g not in view.payload.groups}
    assert view.selected == [keep] and view._details  # the kept selection shows the new version's details
    assert view.payload.details(view.payload.node_id("input:x"))["outputs"][0]["shape"] == [2, 8, 64]
    view.selected = ["input:x"]
    assert view._details["outputs"][0]["shape"] == [2, 8, 64]
    assert view.legend != with_overlay and view.legend == view.payload.legend  # old overlay cleared
