"""Graph editing with ONNX GraphSurgeon: pure operations and a validated history.

    import workbench as wb
    import workbench.edit
    m2 = wb.edit.fold_constants(wb.load("model.onnx"))        # a new Model; the input is unchanged
    h = wb.edit.History("model.onnx")                          # validated versions with undo/redo
    h.apply("cleanup", remove_unused_graph_inputs=True)

See docs/editing.md for every operation and its pitfalls.
"""
from __future__ import annotations

from .diff import diff_models, summarize
from .history import History, Version
from .ops import (
    REGISTRY,
    OpSpec,
    Param,
    add_outputs,
    cleanup,
    extract,
    fold_constants,
    insert_node,
    insert_qdq,
    remove_node,
    rename,
    render_call,
    replace_op,
    replace_pattern,
    set_attrs,
    set_batch,
    set_input,
    simplify,
    toposort,
)
from .validate import Validation, validate

__all__ = [
    "History", "Version", "Validation", "validate", "diff_models", "summarize", "REGISTRY", "OpSpec", "Param",
    "render_call", "remove_node", "replace_op", "set_attrs", "insert_node", "insert_qdq", "rename", "set_input",
    "set_batch", "extract", "add_outputs", "fold_constants", "cleanup", "toposort", "simplify", "replace_pattern",
]
