"""`EditPanel`: forms for the ``workbench.edit`` operations, bound to a graph view's selection.

    import workbench.edit as ed
    from workbench.widgets.graph_view import GraphView
    from workbench.widgets.edit_panel import EditPanel
    view = GraphView("model.onnx")
    panel = EditPanel("model.onnx", view=view)      # or EditPanel(ed.History(...), view=view)
    display(view, panel)

Clicking nodes in the view fills the node / tensor fields of the chosen operation. *Apply* runs
``History.apply`` (validated); the panel shows the code it ran as a self-contained snippet (``h =
wb.History(path)`` and every apply / undo / redo made so far, the last one being this call: one
:class:`~workbench.widgets.calls.Call` gives both the call and its text), keeps every error inline
until *clear errors* is pressed, and shows the diff of the last edit as a table. *Show in graph*
opens the graph view's diff mode (``GraphView.diff``) for the previous and current versions. After
every apply / undo / redo the bound view shows the current version (``GraphView.set_model``). The
panel holds no editing logic of its own: everything goes through :class:`workbench.edit.History`.
"""
from __future__ import annotations

import html
import json
from typing import Any

import ipywidgets as w

from ..edit import History
from ..edit.ops import REGISTRY, Param, parse_dims
from ..errors import UsageError, WorkbenchError
from .calls import Call, Snippet, error_html

_SELECTION_KINDS = ("node", "tensor", "tensors")
_MISSING = object()


def _field(p: Param) -> w.Widget:
    common = dict(description=p.name + (" *" if p.required else ""), description_tooltip=p.help, style={"description_width": "150px"},
                  layout=w.Layout(width="95%"))
    if p.kind == "bool":
        return w.Checkbox(value=bool(p.default) if not p.required else False, indent=False, **common)
    if p.kind == "choice":
        return w.Dropdown(options=list(p.choices), value=p.default if not p.required else p.choices[0], **common)
    default = "" if p.required or p.default is None else (
        json.dumps(p.default) if p.kind in ("json", "number_or_list") else str(p.default))
    return w.Text(value=default, placeholder=p.help[:80], **common)


def parse_field(p: Param, value: Any) -> Any:
    """Turn a form value into the operation's parameter (``_MISSING`` for an empty optional field)."""
    if p.kind in ("bool", "choice"):
        return value
    text = str(value).strip()
    if not text:
        if p.required:
            raise UsageError(f"{p.name} is required")
        return _MISSING
    try:
        if p.kind in ("node", "tensor", "str"):
            return text
        if p.kind == "tensors":
            return [s.strip() for s in text.split(",") if s.strip()]
        if p.kind == "int":
            return int(text)
        if p.kind == "float":
            return float(text)
        if p.kind == "int_or_str":
            return int(text) if text.lstrip("-").isdigit() else text
        if p.kind == "shape":
            return parse_dims(text)
        if p.kind in ("json", "number_or_list"):
            return json.loads(text)
    except (ValueError, json.JSONDecodeError) as e:
        raise UsageError(f"{p.name}: cannot read {text!r} as {p.kind} ({e})") from None
    raise UsageError(f"{p.name}: unknown field kind {p.kind!r}")


class EditPanel(w.VBox):
    """Edit forms + undo/redo + code + errors + diff over a :class:`~workbench.edit.History`.

    ``source`` is a History or anything ``History`` accepts (path, bytes, ModelProto, Model).
    ``view`` (optional) is a ``GraphView``; its ``selected`` node names fill the forms.
    """

    def __init__(self, source, view=None, *, validate: bool = True):
        self.history = source if isinstance(source, History) else History(source, validate=validate)
        self.view = view
        self.selection: list[str] = []
        self.op = w.Dropdown(options=list(REGISTRY), value="remove_node", description="operation",
                             style={"description_width": "150px"})
        self.summary = w.HTML()
        self.form = w.VBox()
        self.fields: dict[str, w.Widget] = {}
        self.force = w.Checkbox(value=False, description="force (keep even if invalid)", indent=False)
        self.apply_button = w.Button(description="Apply", button_style="primary", icon="check")
        self.undo_button = w.Button(description="Undo", icon="undo")
        self.redo_button = w.Button(description="Redo", icon="repeat")
        self.show_button = w.Button(description="Show diff in graph", icon="code-fork")
        self.script_button = w.Button(description="Show script", icon="file-code-o")
        self.clear_button = w.Button(description="Clear errors", icon="times")
        self.status = w.HTML()
        self.code = w.HTML()
        self.errors = w.HTML()
        self.error_log: list[str] = []
        self.snippet: Snippet | None = None  # the code last shown (runs as-is in a fresh namespace)
        self.script = w.Textarea(layout=w.Layout(width="100%", height="180px", display="none"))
        self.diff_table = w.HTML()
        self.graph_out = w.Output()
        self.op.observe(lambda _: self._build_form(), names="value")
        self.apply_button.on_click(lambda _: self.apply())
        self.undo_button.on_click(lambda _: self.undo())
        self.redo_button.on_click(lambda _: self.redo())
        self.show_button.on_click(lambda _: self.show_diff())
        self.script_button.on_click(lambda _: self.show_script())
        self.clear_button.on_click(lambda _: self.clear_errors())
        super().__init__([
            self.status, self.op, self.summary, self.form, self.force,
            w.HBox([self.apply_button, self.undo_button, self.redo_button, self.show_button,
                    self.script_button, self.clear_button]),
            self.code, self.errors, self.script, self.diff_table, self.graph_out,
        ])
        # the calls that made the current state, replayed by every snippet shown
        self._calls: list[Call] = [Call("h.apply", (v.op,), dict(v.params, **({"force": True} if v.forced else {})))
                                   for v in (self.history[i] for i in range(1, self.history.current.index + 1))]
        if view is not None:
            view.observe(self._on_selected, names="selected")
            self.selection = list(getattr(view, "selected", []))
        self._build_form()
        self._refresh()

    # ------------------------------------------------------------------ selection
    def _refs(self, names: list[str]) -> tuple[list[str], list[str]]:
        """Viewer node names → (node refs for the ops, tensor names): graph inputs/outputs map to
        their tensor, unnamed nodes to their first output."""
        payload = getattr(self.view, "payload", None)
        nodes, tensors = [], []
        for name in names:
            rec = payload.recs[payload.name_to_id[name]] if payload is not None and name in payload.name_to_id else None
            if rec is None:
                nodes.append(name)
                continue
            if rec.kind == "input":
                tensors += rec.outputs
            elif rec.kind == "output":
                tensors += rec.inputs
            else:
                nodes.append(rec.proto.name if rec.proto is not None and rec.proto.name else (rec.outputs or [name])[0])
                tensors += [o for o in rec.outputs if o]
        return nodes, tensors

    def _on_selected(self, change) -> None:
        self.selection = list(change["new"])
        self._fill_selection()

    def _fill_selection(self) -> None:
        nodes, tensors = self._refs(self.selection)
        for p in REGISTRY[self.op.value].params:
            f = self.fields.get(p.name)
            if f is None or p.kind not in _SELECTION_KINDS:
                continue
            if p.kind == "node" and nodes:
                f.value = nodes[0]
            elif p.kind == "tensor" and tensors:
                f.value = tensors[0]
            elif p.kind == "tensors" and tensors and p.name in ("inputs", "outputs", "tensors"):
                f.value = ", ".join(tensors)

    # ------------------------------------------------------------------ forms
    def _build_form(self) -> None:
        spec = REGISTRY[self.op.value]
        self.summary.value = f"<i>{html.escape(spec.summary)}</i>"
        self.fields = {p.name: _field(p) for p in spec.params}
        self.form.children = list(self.fields.values())
        self._fill_selection()

    def params(self) -> dict[str, Any]:
        """The current form as operation parameters (empty optional fields left out)."""
        out = {}
        for p in REGISTRY[self.op.value].params:
            v = parse_field(p, self.fields[p.name].value)
            if v is not _MISSING:
                out[p.name] = v
        return out

    # ------------------------------------------------------------------ actions
    def _history_lines(self) -> list:
        src = self.history.source.source
        head = (Call("wb.History", (str(src),), target="h") if src is not None
                else "h = wb.History(MODEL)  # MODEL: the in-memory model this panel edits")
        return [head, *self._calls]

    def _run(self, what: str, call: Call, comment: str | None = None):
        """Run ``call`` on this panel's history (``h``); on success record it and show the snippet."""
        snippet = Snippet([*self._history_lines(), call] + ([comment] if comment else []))
        try:
            out = call.run({"h": self.history})
        except Exception as e:  # noqa: BLE001 - WorkbenchErrors show message + hint, others a traceback
            self._error(what, e)
            return None
        self._calls.append(call)
        self.snippet = snippet
        self._show_code(snippet)
        self._refresh()
        self._update_view()
        return out

    def apply(self):
        """Run the selected operation with the form's parameters through ``History.apply``."""
        name = self.op.value
        try:
            params = self.params()
        except WorkbenchError as e:
            self._error(name, e)
            return None
        kw = dict(params, **({"force": True} if self.force.value else {}))
        from ..edit.ops import render_call

        try:
            same = "# the same edit as a function: m = " + render_call(name, params)
        except WorkbenchError:
            same = None
        return self._run(name, Call("h.apply", (name,), kw), same)

    def undo(self):
        """``h.undo()``: back to the previous version."""
        return self._run("undo", Call("h.undo"))

    def redo(self):
        """``h.redo()``: forward again."""
        return self._run("redo", Call("h.redo"))

    def _update_view(self) -> None:
        """Show the current version in the bound graph view (``GraphView.set_model``)."""
        if self.view is not None and hasattr(self.view, "set_model"):
            self.view.set_model(self.history.current.model)

    def show_diff(self):
        """Open the graph view's diff mode for the previous → current version (``History.show_diff``)."""
        if self.view is None:
            self._error("show diff", UsageError("no graph view bound to this panel"))
            return None
        try:
            diff_view = self.history.show_diff(self.view)
        except WorkbenchError as e:
            self._error("show diff", e)
            return None
        self.graph_out.clear_output()
        with self.graph_out:
            from IPython.display import display

            display(diff_view)
        return diff_view

    def show_script(self) -> str:
        """Fill the script box with ``History.to_script()`` (a runnable replay of the edits)."""
        self.script.value = self.history.to_script()
        self.script.layout.display = ""
        return self.script.value

    def clear_errors(self) -> None:
        self.error_log.clear()
        self.errors.value = ""

    # ------------------------------------------------------------------ rendering
    def _error(self, what: str, e: Exception) -> None:
        self.error_log.append(error_html(what, e))
        self.errors.value = "<div><b>errors</b> (kept until Clear errors)" + "".join(self.error_log) + "</div>"

    def _show_code(self, snippet: Snippet) -> None:
        self.code.value = ("<div><b>ran</b> (paste into a cell: it runs as-is)"
                           f"<pre style='user-select:all;background:#f6f6f6;padding:4px'>"
                           f"{html.escape(snippet.text())}</pre></div>")

    def _refresh(self) -> None:
        h = self.history
        cur = h.current
        if cur.valid is None:
            valid = "not validated (the file as loaded)"
        elif cur.valid:
            valid = "valid"
        else:
            valid = "<span style='color:#b00020'>INVALID" + (" (kept with force=True)" if cur.forced else "") + "</span>"
        what = "original model, no edits yet" if cur.index == 0 else f"version {cur.index} of {len(h) - 1}: {html.escape(cur.op)}"
        self.status.value = (f"<b>{what}</b> · {len(cur.model.graph.node)} nodes · {valid} · "
                             f"<code>{cur.model.short_hash}</code>")
        self.undo_button.disabled = not h.can_undo
        self.redo_button.disabled = not h.can_redo
        d = h.diff()
        self.diff_table.value = ("<b>diff: previous → current</b>" +
                                 (d.to_html(index=False, max_rows=200, na_rep="") if len(d) else "<p>no changes</p>"))
        if self.script.layout.display != "none":
            self.script.value = h.to_script()
