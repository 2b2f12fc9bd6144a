"""`Workbench`: the dashboard — one object, seven tabs, each action one public call.

    import workbench as wb
    wbx = wb.Workbench("sample_models/digits_cnn.onnx", data="sample_models/digits_test.npz",
                       labels="label", calib="sample_models/digits_calib.npz")
    wbx                       # tabs: Model, Graph, Edit, Build, Profile, Accuracy, Report
    wbx.build(); wbx.wait()   # the same calls the buttons make, usable from code
    wbx.result                # the FlowResult (tidy frames) behind every plot

Tabs and the public call each button runs (shown, copyable, under the button):

* Model — ``workbench.inspect(model)``; Graph — ``GraphView(model)`` with latency / error overlays;
  Edit — ``EditPanel`` over ``workbench.edit.History`` (the dashboard builds the history's current model);
* Build — ``workbench.flow.build_stage``; Profile — ``workbench.flow.profile_stage``;
  Accuracy — ``workbench.flow.accuracy_stage``; Report — ``FlowResult.save`` + ``workbench.report.write_report``.

Long calls run in a worker thread (the notebook stays responsive); their tqdm bars and prints are
captured in the log pane; errors stay on screen until "clear errors". Plots are ``plotly``
``FigureWidget`` s updated in place when results arrive.
"""
from __future__ import annotations

import contextvars
import html
import threading
import traceback
from pathlib import Path
from typing import Any, Callable

import ipywidgets as w

from ..errors import UsageError, WorkbenchError
from ..variant import PRECISIONS

TABS = ("Model", "Graph", "Edit", "Build", "Profile", "Accuracy", "Report")
_WIDE = w.Layout(width="98%")
_STYLE = {"description_width": "120px"}


def _text(value: Any, description: str, placeholder: str = "") -> w.Text:
    return w.Text(value="" if value is None else str(value), description=description, placeholder=placeholder,
                  style=_STYLE, layout=w.Layout(width="60%"))


def _arg(v: Any) -> str:
    return repr(str(v)) if v not in (None, "") else "None"


class Workbench(w.VBox):
    """The dashboard over one model. Optional ``data`` (.npz), ``labels`` (key), ``calib`` (.npz) and
    ``shapes`` prefill the Build tab; ``backend`` defaults to TensorRT when usable, else ONNX Runtime."""

    def __init__(self, model, *, data=None, labels=None, calib=None, shapes=None, backend: str | None = None,
                 precisions=("fp32", "fp16", "int8"), graph: bool = True):
        from ..edit import History
        from ..model import load
        from ..plots import flow_figures
        from ..flow import FlowResult

        self.source = load(model)
        self.history = History(self.source)
        self.result = None
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self._error_log: list[str] = []
        backend = backend or _default_backend()

        # shared panes: status, progress, log (captures tqdm), code, errors
        self.status = w.HTML("<b>ready</b>")
        self.progress = w.IntProgress(value=0, min=0, max=1, description="", layout=w.Layout(width="40%"))
        self.cancel_button = w.Button(description="Cancel", icon="stop", disabled=True)
        self.cancel_button.on_click(lambda _: self.cancel())
        self.log_output = w.Output(layout=w.Layout(max_height="160px", overflow="auto", border="1px solid #eee"))
        self.code = w.Textarea(value="", description="code", layout=w.Layout(width="98%", height="90px"),
                               style=_STYLE)
        self.errors = w.HTML()
        clear = w.Button(description="Clear errors", icon="times")
        clear.on_click(lambda _: self.clear_errors())

        # figures (updated in place)
        empty = flow_figures(FlowResult.empty())
        self.figures: dict[str, Any] = {k: _figure_widget(f) for k, f in empty.items()}

        # Model
        self.model_html = w.HTML()
        refresh = w.Button(description="Inspect current version", icon="refresh")
        refresh.on_click(lambda _: self.inspect())
        model_tab = w.VBox([refresh, self.model_html])

        # Graph
        self.view = None
        self.overlay = w.Dropdown(options=["none"], description="overlay", style=_STYLE)
        self.overlay.observe(lambda ch: self.show_overlay(ch["new"]), names="value")
        if graph:
            from .graph_view import GraphView

            self.view = GraphView(self.source)
            graph_tab = w.VBox([self.overlay, self.view])
        else:
            graph_tab = w.HTML("graph view disabled (graph=False)")

        # Edit
        from .edit_panel import EditPanel

        self.edit_panel = EditPanel(self.history, view=self.view)
        edit_tab = self.edit_panel

        # Build
        from ..backends import backend_names

        self.backend = w.Dropdown(options=backend_names(), value=backend, description="backend", style=_STYLE)
        self.precision_boxes = {p: w.Checkbox(value=p in precisions, description=p, indent=False,
                                              layout=w.Layout(width="80px")) for p in PRECISIONS}
        self.shapes = _text(shapes, "shapes", "input:1x3x224x224 or min/opt/max")
        self.data = _text(data, "data (.npz)", "inputs for latency + accuracy; empty: synthetic")
        self.labels = _text(labels, "labels key", "e.g. label")
        self.calib = _text(calib, "calib (.npz)", "INT8/FP8 calibration inputs; empty: data")
        self.limit = w.IntText(value=32, description="max samples",  # sample budget: see docs/accuracy.md
                               description_tooltip="0 = all samples; 32 by default: output metrics settle with a few "
                                                   "dozen samples and a 700-node model stays interactive on a laptop",
                               style=_STYLE)
        self.build_button = w.Button(description="Build", button_style="primary", icon="cogs")
        self.build_button.on_click(lambda _: self.build())
        self.build_table = w.HTML()
        build_tab = w.VBox([self.backend, w.HBox([w.Label("precisions", layout=w.Layout(width="120px")),
                                                  *self.precision_boxes.values()]),
                            self.shapes, self.data, self.labels, self.calib, self.limit,
                            w.HBox([self.build_button]), self.build_table, self.figures["builds"]])

        # Profile
        self.iterations = w.BoundedIntText(value=100, min=1, max=100000, description="iterations", style=_STYLE)
        self.layer_iterations = w.BoundedIntText(value=20, min=1, max=10000, description="layer iterations",
                                                 style=_STYLE)
        self.top_k = w.IntSlider(value=15, min=3, max=50, description="top-K layers", style=_STYLE)
        self.top_k.observe(lambda _: self._update_figures(), names="value")
        self.profile_button = w.Button(description="Profile", button_style="primary", icon="clock-o")
        self.profile_button.on_click(lambda _: self.profile())
        profile_tab = w.VBox([w.HBox([self.iterations, self.layer_iterations]), self.profile_button,
                              self.figures["latency"], self.top_k, self.figures["layers"], self.figures["op_share"],
                              self.figures["heatmap"]])

        # Accuracy
        self.accuracy_button = w.Button(description="Compare with FP32", button_style="primary", icon="balance-scale")
        self.accuracy_button.on_click(lambda _: self.compare())
        self.accuracy_table = w.HTML()
        accuracy_tab = w.VBox([self.accuracy_button, self.accuracy_table, self.figures["pareto"],
                               self.figures["layer_error"]])

        # Report
        self.report_path = _text("report.html", "report file")
        self.report_button = w.Button(description="Write report", button_style="primary", icon="file")
        self.report_button.on_click(lambda _: self.write_report())
        self.report_html = w.HTML()
        report_tab = w.VBox([self.report_path, self.report_button, self.report_html])

        self.tabs = w.Tab(children=[model_tab, graph_tab, edit_tab, build_tab, profile_tab, accuracy_tab, report_tab])
        for i, t in enumerate(TABS):
            self.tabs.set_title(i, t)
        self._buttons = [self.build_button, self.profile_button, self.accuracy_button, self.report_button]
        super().__init__([self.tabs, w.HBox([self.status, self.progress, self.cancel_button, clear]), self.code,
                          self.errors, self.log_output])
        self.inspect()

    # ------------------------------------------------------------------ state
    @property
    def model(self):
        """The current version of the edit history (what Build builds)."""
        return self.history.model

    def wait(self, timeout: float | None = None) -> "Workbench":
        """Block until the running action finishes (for scripts and tests)."""
        t = self._thread
        if t is not None:
            t.join(timeout)
        return self

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def cancel(self) -> None:
        """Ask the running action to stop before its next step."""
        self._cancel.set()
        self.status.value = "<b>cancelling…</b>"

    def clear_errors(self) -> None:
        self._error_log.clear()
        self.errors.value = ""

    def _error(self, what: str, e: BaseException) -> None:
        if isinstance(e, WorkbenchError):
            body = html.escape(str(e))
        else:
            body = (f"{html.escape(type(e).__name__)}: {html.escape(str(e))} (a bug: please report it)"
                    f"<details><summary>traceback</summary><pre>{html.escape(traceback.format_exc())}</pre></details>")
        self._error_log.append(f"<div style='color:#a00'>✖ <b>{html.escape(what)}</b>: {body}</div>")
        self.errors.value = "".join(self._error_log)

    def _run(self, what: str, code: str, fn: Callable[[], Any], done: Callable[[Any], None], *,
             steps: int = 1, background: bool = True) -> None:
        """Show ``code``, run ``fn`` (in a worker thread), then ``done(result)``; errors stay inline."""
        if self.busy:
            self._error(what, UsageError(f"another action is running ({self.status.value}); wait or cancel it"))
            return
        self.code.value = code
        self._cancel.clear()
        self.progress.max, self.progress.value = max(1, steps), 0
        self.status.value = f"<b>{html.escape(what)}…</b>"
        for b in self._buttons:
            b.disabled = True
        self.cancel_button.disabled = False

        def work() -> None:
            try:
                with self.log_output:
                    result = fn()
                done(result)
                self.status.value = f"<b>{html.escape(what)}: done</b>"
            except BaseException as e:  # noqa: BLE001 - every error is shown inline
                self._error(what, e)
                self.status.value = f"<b style='color:#a00'>{html.escape(what)}: failed</b>"
            finally:
                self.progress.value = self.progress.max
                for b in self._buttons:
                    b.disabled = False
                self.cancel_button.disabled = True

        if background:
            ctx = contextvars.copy_context()  # keeps the kernel's parent message: output lands in self.log_output
            self._thread = threading.Thread(target=ctx.run, args=(work,), name=f"workbench-{what}", daemon=True)
            self._thread.start()
        else:
            work()

    # ------------------------------------------------------------------ actions
    def inspect(self) -> None:
        """Model tab: ``workbench.inspect`` of the current version."""
        from ..inspect import inspect

        try:
            self.model_html.value = inspect(self.model)._repr_html_()
            self.code.value = "import workbench as wb\nwb.inspect(model)"
        except Exception as e:  # noqa: BLE001
            self._error("inspect", e)

    def _precisions(self) -> list[str]:
        return [p for p, b in self.precision_boxes.items() if b.value]

    def build(self, *, background: bool = True) -> None:
        """Build tab: ``workbench.flow.build_stage`` with the tab's settings."""
        from ..flow import build_stage

        precs = self._precisions()
        be = self.backend.value
        data, labels, calib, shapes = (self.data.value.strip() or None, self.labels.value.strip() or None,
                                       self.calib.value.strip() or None, self.shapes.value.strip() or None)
        limit = self.limit.value if self.limit.value > 0 else None
        code = ("from workbench.flow import build_stage\n"
                f"fr = build_stage(model, {precs!r}, {be!r}, data={_arg(data)}, labels={_arg(labels)}, "
                f"calib={_arg(calib)}, shapes={_arg(shapes)}, accuracy_limit={limit!r})\nfr.builds")

        def fn():
            if not precs:
                raise UsageError("tick at least one precision")
            return build_stage(self.model, precs, be, data=data, labels=labels, calib=calib, shapes=shapes,
                               accuracy_limit=limit, cancel=self._cancel)

        def done(fr):
            self.result = fr
            self.progress.value = 1
            self._update_all()

        self._run("build", code, fn, done, background=background)

    def profile(self, *, background: bool = True) -> None:
        """Profile tab: ``workbench.flow.profile_stage`` on the built engines."""
        from ..flow import profile_stage

        it, lit = self.iterations.value, self.layer_iterations.value
        code = ("from workbench.flow import profile_stage\n"
                f"profile_stage(fr, iterations={it}, layer_iterations={lit})\nfr.latency, fr.layers")

        def fn():
            if self.result is None:
                raise UsageError("nothing built yet", hint="press Build first")
            return profile_stage(self.result, iterations=it, layer_iterations=lit, cancel=self._cancel)

        self._run("profile", code, fn, lambda fr: self._update_all(), background=background)

    def compare(self, *, background: bool = True) -> None:
        """Accuracy tab: ``workbench.flow.accuracy_stage`` against the FP32 ONNX Runtime reference."""
        from ..flow import accuracy_stage

        code = "from workbench.flow import accuracy_stage\naccuracy_stage(fr)\nfr.accuracy, fr.layerwise"

        def fn():
            if self.result is None:
                raise UsageError("nothing built yet", hint="press Build first")
            return accuracy_stage(self.result, cancel=self._cancel)

        self._run("accuracy", code, fn, lambda fr: self._update_all(), background=background)

    def write_report(self, path: str | None = None, *, background: bool = True) -> None:
        """Report tab: save the JSON records and write the self-contained HTML report."""
        from ..report import records_dir_for, write_report

        path = path or self.report_path.value.strip() or "report.html"
        rec = records_dir_for(path)
        code = ("from workbench.report import write_report\n"
                f"fr.save({str(rec)!r})\nwrite_report(fr, {path!r})")

        def fn():
            if self.result is None:
                raise UsageError("nothing built yet", hint="press Build first")
            if Path(path).suffix.lower() not in (".html", ".htm"):
                raise UsageError(f"report file must end in .html, got {path}")
            self.result.save(rec)
            return write_report(self.result, path, records_link=rec.name + "/")

        def done(p):
            self.report_html.value = (f"wrote <code>{html.escape(str(p))}</code> and "
                                      f"<code>{html.escape(str(rec))}/</code>")

        self._run("report", code, fn, done, background=background)

    # ------------------------------------------------------------------ views
    def _update_all(self) -> None:
        self._update_figures()
        self._update_tables()
        self._update_overlays()

    def _update_figures(self) -> None:
        from .. import plots

        fr = self.result
        if fr is None:
            return
        for name, fig in plots.flow_figures(fr, top_k=self.top_k.value).items():
            _replace(self.figures[name], fig)

    def _update_tables(self) -> None:
        from ..report import table_html

        fr = self.result
        if fr is None:
            return
        self.build_table.value = table_html(fr.builds, columns=["variant", "backend", "precision", "status",
                                                                "build_time_s", "reason"])
        if not fr.accuracy.empty:
            self.accuracy_table.value = table_html(fr.summary())
        if fr.errors:
            for e in fr.errors:
                msg = f"{e['stage']} {e['variant']} ({e['backend']})"
                line = f"<div style='color:#a00'>✖ <b>{html.escape(msg)}</b>: {html.escape(e['error'])}</div>"
                if line not in self._error_log:
                    self._error_log.append(line)
            self.errors.value = "".join(self._error_log)

    def _update_overlays(self) -> None:
        fr = self.result
        opts = ["none"]
        if fr is not None:
            if not fr.layers.empty:
                opts += [f"time ms: {v}" for v in dict.fromkeys(fr.layers.variant)]
            if not fr.layerwise.empty:
                opts += [f"error (1 - cosine): {v}" for v in dict.fromkeys(fr.layerwise.variant)]
        keep = self.overlay.value if self.overlay.value in opts else "none"
        self.overlay.options = opts
        self.overlay.value = keep

    def show_overlay(self, choice: str) -> None:
        """Colour the graph by per-node time or error of one variant (``GraphView.set_overlay``)."""
        if self.view is None or self.result is None:
            return
        try:
            if choice == "none":
                self.view.clear_overlay()
                return
            kind, variant = choice.split(": ", 1)
            if kind.startswith("time"):
                d = self.result.layers[self.result.layers.variant == variant]
                self.view.set_overlay(d[["onnx_nodes", "time_ms"]], label=f"ms ({variant})", value="time_ms")
                self.code.value = (f"view.set_overlay(fr.layers[fr.layers.variant == {variant!r}][['onnx_nodes', "
                                   "'time_ms']], label='ms', value='time_ms')")
            else:
                d = self.result.layerwise[self.result.layerwise.variant == variant].copy()
                d["error"] = 1.0 - d["cosine"].astype(float)
                self.view.set_overlay(d[["node", "error"]], label=f"1 - cosine ({variant})", value="error")
                self.code.value = (f"d = fr.layerwise[fr.layerwise.variant == {variant!r}]\n"
                                   "view.set_overlay(dict(zip(d.node, 1 - d.cosine)), label='1 - cosine')")
        except Exception as e:  # noqa: BLE001
            self._error("overlay", e)


def _default_backend() -> str:
    from ..backends import get_backend

    try:
        if get_backend("tensorrt").available()[0]:
            return "tensorrt"
    except Exception:  # noqa: BLE001 - an unusable optional backend is just not the default
        pass
    return "onnxruntime"


def _figure_widget(fig):
    import plotly.graph_objects as go

    return go.FigureWidget(fig)


def _stale(old: dict, new: dict, prefix: str = "") -> dict:
    """Dotted layout paths set in ``old`` but not in ``new``, mapped to None (reset to the default) or to
    an empty list (annotations, shapes)."""
    out: dict = {}
    for k, v in old.items():
        if k == "template":
            continue
        path = f"{prefix}{k}"
        if k not in new:
            out[path] = [] if isinstance(v, (list, tuple)) else None
        elif isinstance(v, dict) and isinstance(new[k], dict):
            out.update(_stale(v, new[k], path + "."))
    return out


def _replace(fw, fig) -> None:
    """Replace the traces and layout of FigureWidget ``fw`` with ``fig``'s, in place (stale layout keys,
    such as the "no data" annotation of the empty figure, are reset in the browser too)."""
    new = fig.layout.to_plotly_json()
    stale = _stale(fw.layout.to_plotly_json(), new)
    if stale:
        fw.plotly_relayout(stale)  # its own message, before the new layout
    with fw.batch_update():
        for path, v in stale.items():
            if v == []:
                fw.layout[path] = []  # the Python side keeps [Annotation()] after relayout(annotations=[])
        fw.data = []
        fw.update_layout(new)
        if fig.data:
            fw.add_traces(list(fig.data))
