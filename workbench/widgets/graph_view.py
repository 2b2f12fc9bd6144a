"""`GraphView`: the notebook graph viewer (anywidget), and the same viewer as an offline HTML page.

    from workbench.widgets.graph_view import GraphView
    view = GraphView("model.onnx")          # a path, bytes, onnx.ModelProto or workbench.Model
    view                                    # shows it (JupyterLab 4, Notebook 7, VS Code)
    view.selected                           # node names clicked in the view (shift-click adds)
    view.set_overlay({"/conv1/Conv": 0.8, ...}, label="latency ms", thresholds=[0.1, 0.5])
    view.with_overlay_menu(fr)              # the view under its overlay menu (fp16 safety, time, error)
    view.set_model(edited_model)            # show a new version; open groups and selection are kept
    GraphView.diff(original, edited)        # one view, nodes coloured added / removed / changed
    export_html("model.onnx", "model.html") # offline page with every node

The JavaScript (``static/graph_view.js``, built from ``js/``) lays out only what is visible; Python
holds the whole graph (:class:`~workbench.graph.GraphPayload`) and sends the visible
subset when a group opens or closes, so a 100k-node model stays responsive.
"""
from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any, Mapping

import anywidget
import traitlets as t

from ..errors import UsageError
from ..fsutil import atomic_write_text
from ..graph import DEFAULT_BUDGET, GraphPayload

STATIC = Path(__file__).parent / "static"
ESM = STATIC / "graph_view.js"
CSS = STATIC / "graph_view.css"


def overlay_values(values: Any, value: str | None = None, reduce: str = "sum") -> dict[str, float]:
    """A node-name → float mapping from a dict, or from a DataFrame with ``onnx_node`` (a node's rows
    combined by ``reduce``: ``sum`` for times, ``max`` for scores such as a worst finding) or a per-layer
    ``onnx_nodes`` list column (each layer's value split evenly over its nodes) and a value column
    (``value`` or the one named)."""
    if isinstance(values, Mapping):
        return {str(k): float(v) for k, v in values.items() if v is not None}
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover
        pd = None
    if pd is None or not isinstance(values, pd.DataFrame):
        raise UsageError(f"overlay values must be a dict or a pandas DataFrame, not {type(values).__name__}")
    df = values
    col = value or next((c for c in ("value", "time_ms", "error") if c in df.columns), None)
    if col is None or col not in df.columns:
        raise UsageError(f"overlay DataFrame has no value column {value or 'value'!r} (columns: {list(df.columns)})",
                         hint="pass value='<column>'")
    out: dict[str, float] = {}
    if reduce not in ("sum", "max"):
        raise UsageError(f"reduce must be sum or max, not {reduce!r}")
    if "onnx_node" in df.columns:
        for k, v in df.groupby("onnx_node")[col].agg(reduce).items():
            out[str(k)] = float(v)
        return out
    if "onnx_nodes" in df.columns:
        for nodes, v in zip(df["onnx_nodes"], df[col]):
            nodes = [nodes] if isinstance(nodes, str) else (list(nodes) if nodes is not None else [])
            for n in nodes:
                out[str(n)] = out.get(str(n), 0.0) + float(v) / len(nodes)
        return out
    raise UsageError(f"overlay DataFrame needs an onnx_node (or onnx_nodes) column (columns: {list(df.columns)})")


def overlay_notes(values: Any, note: str | None) -> dict[str, str] | None:
    """node name → text from a DataFrame's ``note`` column (a node's distinct texts joined with "; ")."""
    if note is None:
        return None
    if getattr(values, "columns", None) is None or note not in values.columns or "onnx_node" not in values.columns:
        raise UsageError(f"note={note!r} names a column of an overlay DataFrame with onnx_node",
                         hint="pass the DataFrame whose column holds the text")
    out: dict[str, str] = {}
    for k, texts in values.groupby("onnx_node")[note]:
        out[str(k)] = "; ".join(dict.fromkeys(str(t) for t in texts if isinstance(t, str) and t))
    return out


# ------------------------------------------------------------------------------------- overlay menu
#: what the fp16-safety overlay's three colours mean (``precision.fp16safety``: 1 info, 2 handled, 3 risk)
FP16_SAFETY_LABELS = ["info (fp16-safe when its input is bounded)", "handled by the fp16 recipe (kept fp32 / clamped)",
                      "risk left in fp16"]
#: their colours: green, amber, red (a pale yellow "handled" was hard to see on the light op colours)
FP16_SAFETY_COLORS = ["#1a9850", "#f0a30a", "#d73027"]


def overlay_calls(result: Any = None, *, model: str = "m", result_ref: str = "fr") -> dict[str, Any]:
    """The entries of the graph view's overlay menu: menu text → the public call it makes
    (a :class:`~workbench.widgets.calls.Call` on ``view``; its text is the code the menu shows).

    Always: ``"fp16 safety"`` — ``view.set_overlay(wb.fp16_safety(m).assign(note=...), value="value",
    reduce="max", note="note", ...)``: every node the fp16-safety check flags
    (``precision.fp16safety.fp16_safety``) coloured by its worst finding (green info, amber handled by the
    recipe, red risk left in fp16), each finding's check, action and reason in the node's details. With a :class:`~workbench.flow.FlowResult`
    ``result``: ``"time ms: <variant>"`` per profiled variant and ``"error (1 - cosine): <variant>"`` per
    variant with a layerwise comparison. ``model`` / ``result_ref``: the names the code uses."""
    from .calls import Call, Ref

    out: dict[str, Any] = {"fp16 safety": Call(
        "view.set_overlay",
        (Ref(f"wb.fp16_safety({model}).assign(note=lambda d: d.check + ': ' + d.detail + '. Recipe: ' + d.action)"),),
        {"value": "value", "reduce": "max", "note": "note", "label": "fp16 safety (worst finding per node)",
         "thresholds": [1.5, 2.5], "labels": FP16_SAFETY_LABELS, "colormap": FP16_SAFETY_COLORS})}
    layers = getattr(result, "layers", None)
    if layers is not None and not layers.empty:
        for v in dict.fromkeys(layers.variant):
            out[f"time ms: {v}"] = Call("view.set_overlay", (Ref(f"{result_ref}.layers[{result_ref}.layers.variant == {v!r}]"),),
                                        {"label": f"ms ({v})", "value": "time_ms"})
    lw = getattr(result, "layerwise", None)
    if lw is not None and not lw.empty:
        for v in dict.fromkeys(lw.variant):
            out[f"error (1 - cosine): {v}"] = Call(
                "view.set_overlay", (Ref(f"{result_ref}.layerwise[{result_ref}.layerwise.variant == {v!r}]"
                                         ".assign(error=lambda d: 1 - d.cosine)"),),
                {"label": f"1 - cosine ({v})", "value": "error"})
    return out


class GraphView(anywidget.AnyWidget):
    """The graph of an ONNX model in the notebook: groups by name scope / subgraph, details on
    click, search, upstream/downstream highlight, overlays, and a diff mode.

    Traitlets synced with the browser: ``selected`` (list of node names), ``expanded`` (group ids
    that are open), ``height`` (pixels).
    """

    _esm = ESM
    _css = CSS
    selected = t.List(t.Unicode()).tag(sync=True)
    expanded = t.List(t.Unicode()).tag(sync=True)
    height = t.Int(620).tag(sync=True)
    legend = t.Dict(allow_none=True, default_value=None).tag(sync=True)
    _view = t.Dict().tag(sync=True)
    _details = t.Dict().tag(sync=True)
    _search = t.Unicode("").tag(sync=True)
    _search_results = t.List().tag(sync=True)

    def __init__(self, model=None, *, payload: GraphPayload | None = None, height: int = 620,
                 budget: int = DEFAULT_BUDGET, **kw):
        if payload is None:
            if model is None:
                raise UsageError("GraphView needs a model (path, bytes, onnx.ModelProto or workbench.Model)")
            payload = GraphPayload.from_model(model)
        self.payload = payload
        self.model = model  # what the view was made from (the overlay menu's fp16-safety check reads it)
        self._budget = budget
        expanded = payload.default_expanded(budget)
        super().__init__(height=height, expanded=expanded, legend=payload.legend,
                         _view=payload.visible(expanded), **kw)
        self.observe(self._on_expanded, names="expanded")
        self.observe(self._on_selected, names="selected")
        self.observe(self._on_search, names="_search")

    # -------------------------------------------------------------- constructors
    @classmethod
    def diff(cls, model_a, model_b, **kw) -> "GraphView":
        """One view of two versions: B's graph plus A's removed nodes; added nodes green, removed
        red (dashed), changed orange (op, attributes or tensor names differ), unchanged grey."""
        return cls(payload=GraphPayload.diff(model_a, model_b), **kw)

    @classmethod
    def side_by_side(cls, model_a, model_b, *, height: int = 560, sync_selection: bool = True):
        """Two panes in an ``ipywidgets.HBox``; selecting a node name in one selects it in the other."""
        import ipywidgets as w

        a, b = cls(model_a, height=height), cls(model_b, height=height)
        if sync_selection:
            def link(src, dst):
                def on(change):
                    names = [n for n in change["new"] if n in dst.payload.name_to_id]
                    if names != list(dst.selected):
                        dst.selected = names
                src.observe(on, names="selected")
            link(a, b)
            link(b, a)
        box = w.HBox([a, b], layout=w.Layout(width="100%"))
        a.layout = w.Layout(width="50%")
        b.layout = w.Layout(width="50%")
        box.panes = (a, b)
        return box

    # -------------------------------------------------------------- public calls
    def set_overlay(self, values, label: str = "value", thresholds=None, colormap="traffic",
                    agg: str = "max", value: str | None = None, labels=None, reduce: str = "sum",
                    note: str | None = None) -> dict:
        """Colour nodes by a value per node (dict name → float, or a DataFrame, see
        :func:`overlay_values`; ``reduce``: how a node's rows combine); returns the legend. ``thresholds``:
        ascending bin edges, else a gradient between min and max; ``labels``: legend text per bin;
        ``note``: a column of the DataFrame whose text the details panel shows under a node's value.
        Groups show ``agg`` (max / sum / mean) of their nodes."""
        lg = self.payload.set_overlay(overlay_values(values, value, reduce), label=label, thresholds=thresholds,
                                      colormap=colormap, agg=agg, labels=labels, notes=overlay_notes(values, note))
        self.legend = lg
        self._refresh()
        return lg

    def set_model(self, model) -> None:
        """Show another version of the graph (e.g. after an edit), keeping the view's state.

        Groups that were open and still exist stay open; groups new in this version open as a fresh
        view would open them; selected nodes that no longer exist are dropped from ``selected``.
        An overlay is cleared (its values belong to the previous version; call :meth:`set_overlay`
        again).
        """
        payload = GraphPayload.from_model(model)
        self.model = model
        old_groups = set(self.payload.groups)
        kept = [g for g in self.expanded if g in payload.groups]
        fresh = [g for g in payload.default_expanded(self._budget) if g not in old_groups and g not in kept]
        selected = [n for n in self.selected if n in payload.name_to_id]
        with self.hold_sync():
            self.payload = payload
            self.legend = payload.legend
            self.expanded = kept + fresh
            self.selected = selected
            self._refresh()
            self._on_selected({"new": selected})
            self._on_search({"new": self._search})

    def with_overlay_menu(self, result: Any = None):
        """This view under its overlay menu (an ``ipywidgets.VBox``: menu, the call's code, the view).
        Picking an entry of :func:`overlay_calls` runs that one public call on this view and shows its
        code (runnable when pasted, with ``m`` the model, ``fr`` the ``result`` and ``view`` this view);
        "none" calls ``view.clear_overlay()``."""
        import ipywidgets as w

        calls = overlay_calls(result)
        menu = w.Dropdown(options=["none", *calls], description="overlay", layout=w.Layout(width="60%"))
        code = w.HTML()
        box = w.VBox([menu, code, self])
        box.menu, box.code, box.calls = menu, code, calls

        def pick(change) -> None:
            from .calls import Snippet

            choice = change["new"]
            try:
                if choice == "none":
                    self.clear_overlay()
                    code.value = "<pre>view.clear_overlay()</pre>"
                    return
                snip = Snippet([*self._model_lines(), calls[choice]], show="view")
                snip.run_last({"m": self.model, "fr": result, "view": self})
                code.value = f"<pre>{html.escape(snip.text())}</pre>"
            except Exception as e:  # noqa: BLE001 - shown in the widget, like every widget action's error
                code.value = f"<pre style='color:#a00'>{html.escape(type(e).__name__ + ': ' + str(e))}</pre>"

        menu.observe(pick, names="value")
        return box

    def _model_lines(self) -> list:
        """The code that makes ``m`` and ``view`` (a menu's snippet runs when pasted into a fresh cell)."""
        from ..model import Model
        from .calls import Call, Ref

        src = self.model.source if isinstance(self.model, Model) else self.model
        if isinstance(src, (str, os.PathLike)):
            load = Call("wb.load", (str(src),), target="m")
        else:
            load = "m = wb.load(MODEL)  # MODEL: the model this view was made from (it has no file)"
        return [load, Call("wb.GraphView", (Ref("m"),), target="view")]

    def clear_overlay(self) -> None:
        self.payload.clear_overlay()
        self.legend = self.payload.legend
        self._refresh()

    def expand(self, *groups: str) -> None:
        """Open groups (ids such as ``/encoder/layer.0``); their parents open too."""
        cur = list(self.expanded)
        for g in groups:
            if g not in self.payload.groups:
                raise UsageError(f"no group {g!r} in this graph")
            chain = []
            k = self.payload.group_index[g]
            while k > 0:
                chain.append(self.payload.group_ids[k])
                k = int(self.payload.group_parent[k])
            cur += [c for c in reversed(chain) if c not in cur]
        self.expanded = cur

    def collapse(self, *groups: str) -> None:
        """Close groups (and everything inside them)."""
        drop = set(groups)
        self.expanded = [g for g in self.expanded if g not in drop and not any(g.startswith(d + "/") for d in drop)]

    def to_html(self, path: str | os.PathLike | None = None) -> str:
        """This view as one offline HTML page (every node, overlay and expansion state included)."""
        return export_html(self.payload, path, expanded=list(self.expanded))

    # -------------------------------------------------------------- syncing
    def _refresh(self) -> None:
        self._view = self.payload.visible(self.expanded)

    def _on_expanded(self, change) -> None:
        self._refresh()

    def _on_selected(self, change) -> None:
        names = [n for n in change["new"] if n in self.payload.name_to_id]
        if not names:
            self._details = {}
            return
        i = self.payload.node_id(names[0])
        need = [g for g in self.payload.ancestors(i) if g not in self.expanded]
        if need:
            self.expanded = list(self.expanded) + need
        self._details = self.payload.details(i)

    def _on_search(self, change) -> None:
        self._search_results = self.payload.search(change["new"])



# ---------------------------------------------------------------------------------------- HTML export
def _script_json(obj: Any) -> str:
    """JSON safe inside <script>: no '</script>', no '<!--'."""
    return json.dumps(obj, separators=(",", ":"), default=str).replace("<", "\\u003c").replace(">", "\\u003e") \
        .replace("&", "\\u0026").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline' blob:; style-src 'unsafe-inline'; img-src data:">
<title>{title}</title>
<style>html,body{{margin:0;height:100%;}} body{{padding:8px;box-sizing:border-box;}} #wb-graph{{height:100%;}}
{css}</style></head>
<body><div id="wb-graph"></div>
<script type="application/json" id="wb-graph-data">{data}</script>
<script type="application/json" id="wb-graph-esm">{esm}</script>
<script type="module">
const code = JSON.parse(document.getElementById("wb-graph-esm").textContent);
const data = JSON.parse(document.getElementById("wb-graph-data").textContent);
const url = URL.createObjectURL(new Blob([code], {{type: "text/javascript"}}));
const mod = await import(url);
const el = document.getElementById("wb-graph");
mod.mountStandalone(el, data.graph, {{expanded: data.expanded, height: Math.max(400, window.innerHeight - 16)}});
</script></body></html>
"""


def export_html(model, path: str | os.PathLike | None = None, *, expanded: list[str] | None = None,
                overlay: Mapping[str, float] | Any | None = None, label: str = "value", thresholds=None,
                colormap="traffic", budget: int = DEFAULT_BUDGET) -> str:
    """The viewer as one self-contained HTML page (JS, CSS and every node inline; no network).

    ``model`` is anything :func:`workbench.load` takes, or a :class:`GraphPayload` (e.g. a diff).
    Writes ``path`` atomically when given; returns the HTML.
    """
    if not isinstance(model, GraphPayload):
        from ..model import load

        model = load(model)
        if path is not None:
            model.check_output_path(path, what="the HTML page")
    payload = model if isinstance(model, GraphPayload) else GraphPayload.from_model(model)
    if overlay is not None:
        payload.set_overlay(overlay_values(overlay), label=label, thresholds=thresholds, colormap=colormap)
    exp = payload.default_expanded(budget) if expanded is None else expanded
    page = _PAGE.format(title=html.escape(f"{payload.title} · workbench graph"), css=CSS.read_text(),
                        data=_script_json({"graph": payload.full(), "expanded": exp}),
                        esm=_script_json(ESM.read_text()))
    if path is not None:
        atomic_write_text(path, page)
    return page
