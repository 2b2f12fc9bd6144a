"""`Workbench`: the dashboard — one object, eight tabs, each action one public call.

    import workbench as wb
    wbx = wb.Workbench("sample_models/digits_cnn.onnx", data="sample_models/digits_test.npz",
                       labels="label", calib="sample_models/digits_calib.npz")
    wbx                       # tabs: Model, Graph, Edit, Build, Profile, Accuracy, Report, Sweep
    wbx.build(); wbx.wait()   # the same calls the buttons make, usable from code
    wbx.result                # the FlowResult (tidy frames) behind every plot

Tabs and the public call each button runs:

* Model — ``wb.inspect(m)``; Graph — ``wb.GraphView(m)`` with latency / error overlays
  (``view.set_overlay``); Edit — ``EditPanel`` over ``wb.History`` (the dashboard builds the history's
  current model);
* Build — ``wb.build_stage``; Profile — ``wb.profile_stage``; Accuracy — ``wb.accuracy_stage``;
  Report — ``fr.save`` + ``wb.write_report``; Sweep — ``wb.sweep`` (``SweepPanel``: the table fills in as
  cells finish).

Every button describes its call once, as a :class:`~workbench.widgets.calls.Snippet`: the dashboard runs
that call and shows the snippet's text, which is self-contained (it loads the model, replays the edits
and the earlier steps) and runs when pasted into a fresh cell. Long calls run in a worker thread (the
notebook stays responsive); their tqdm bars and prints land in the log pane; errors are caught in the
worker and shown with their message and hint (in the error list and in the log) until "Clear errors".
Plots are ``plotly`` ``FigureWidget`` s, replaced by fresh ones when results arrive (nothing of the
previous figure, such as a "no data" note, survives).
"""
from __future__ import annotations

import contextvars
import html
import threading
from pathlib import Path
from typing import Any, Callable

import ipywidgets as w

from ..errors import UsageError, WorkbenchError
from ..variant import PRECISIONS
from .calls import Call, Ref, Snippet, error_html

TABS = ("Model", "Graph", "Edit", "Build", "Profile", "Accuracy", "Report", "Sweep")
_STYLE = {"description_width": "130px"}


def _text(value: Any, description: str, placeholder: str = "") -> w.Text:
    return w.Text(value="" if value is None else str(value), description=description, placeholder=placeholder,
                  style=_STYLE, layout=w.Layout(width="70%"))


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
        self.snippets: dict[str, Snippet] = {}  # action -> the snippet it last ran (and showed)
        self._steps: list[Call] = []  # the calls that made self.result (build, then profile / accuracy)
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self._error_log: list[str] = []
        backend = backend or _default_backend()

        # shared panes: status, cancel, code, errors, log (captures tqdm bars and prints)
        self.status = w.HTML("<b>ready</b>")
        self.cancel_button = w.Button(description="Cancel", icon="stop", disabled=True,
                                      tooltip="stop before the next step (a running build finishes first)")
        self.cancel_button.on_click(lambda _: self.cancel())
        self.code = w.Textarea(value="", description="code of the last call", style=_STYLE,
                               layout=w.Layout(width="98%", height="120px"))
        self.errors = w.HTML()
        clear = w.Button(description="Clear errors", icon="times")
        clear.on_click(lambda _: self.clear_errors())
        self.log_output = w.Output(layout=w.Layout(min_height="60px", max_height="240px", overflow="auto",
                                                   border="1px solid #ccc", padding="2px 6px", width="98%"))
        log_title = w.HTML("<b>log</b> <span style='color:#666'>(progress bars, messages and errors of the "
                           "running action)</span>")

        # figures: each in its own box, replaced by a fresh FigureWidget on update
        empty = flow_figures(FlowResult.empty())
        self.figures: dict[str, Any] = {k: _figure_widget(f) for k, f in empty.items()}
        self._retired: list = []  # replaced figure widgets, closed at the next update
        self._figure_specs: dict[str, str] = {k: f.to_json() for k, f in empty.items()}
        self._figure_boxes = {k: w.Box([f], layout=w.Layout(width="100%")) for k, f in self.figures.items()}

        # Model
        self.model_html = w.HTML()
        refresh = w.Button(description="Inspect current version", icon="refresh", layout=w.Layout(width="auto"))
        refresh.on_click(lambda _: self.inspect())
        model_tab = w.VBox([refresh, self.model_html])

        # Graph
        self.view = None
        self.overlay = w.Dropdown(options=["none", "fp16 safety"], description="overlay", style=_STYLE,
                                  layout=w.Layout(width="60%"))
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
        build_tab = w.VBox([self.backend, w.HBox([w.Label("precisions", layout=w.Layout(width="130px")),
                                                  *self.precision_boxes.values()]),
                            self.shapes, self.data, self.labels, self.calib, self.limit,
                            w.HBox([self.build_button]), self.build_table, self._figure_boxes["builds"]])

        # Profile
        self.iterations = w.BoundedIntText(value=100, min=1, max=100000, description="iterations", style=_STYLE)
        self.layer_iterations = w.BoundedIntText(value=20, min=1, max=10000, description="layer iterations",
                                                 style=_STYLE)
        self.top_k = w.IntSlider(value=15, min=3, max=50, description="top-K layers", style=_STYLE)
        self.top_k.observe(lambda _: self._update_figures(("layers",)), names="value")
        self.profile_button = w.Button(description="Profile", button_style="primary", icon="clock-o")
        self.profile_button.on_click(lambda _: self.profile())
        self.latency_note = w.HTML()
        self.why_speed = w.HTML()  # why each variant is faster/slower than fp32 (compare.speed.explain_flow)
        profile_tab = w.VBox([w.HBox([self.iterations, self.layer_iterations]), self.profile_button,
                              self.latency_note, self._figure_boxes["latency"], self.why_speed, self.top_k,
                              self._figure_boxes["layers"], self._figure_boxes["op_share"],
                              self._figure_boxes["heatmap"]])

        # Accuracy
        self.accuracy_button = w.Button(description="Compare with FP32", button_style="primary", icon="balance-scale",
                                        layout=w.Layout(width="auto"))
        self.accuracy_button.on_click(lambda _: self.compare())
        self.accuracy_table = w.HTML()
        accuracy_tab = w.VBox([self.accuracy_button, self.accuracy_table, self._figure_boxes["pareto"],
                               self._figure_boxes["layer_error"]])

        # Report
        self.report_path = _text("report.html", "report file")
        self.report_button = w.Button(description="Write report", button_style="primary", icon="file")
        self.report_button.on_click(lambda _: self.write_report())
        self.report_html = w.HTML()
        report_tab = w.VBox([self.report_path, self.report_button, self.report_html])

        # Sweep (models × backends × precisions × batch sizes; widgets/sweep_panel.py, one call: wb.sweep)
        from .sweep_panel import SweepPanel

        src = self.source.source
        self.sweep_panel = SweepPanel([str(src)] if src is not None else [], data=str(data) if data else None,
                                      calib=str(calib) if calib else None)

        self.tabs = w.Tab(children=[model_tab, graph_tab, edit_tab, build_tab, profile_tab, accuracy_tab, report_tab,
                                    self.sweep_panel])
        for i, t in enumerate(TABS):
            self.tabs.set_title(i, t)
        self._buttons = [self.build_button, self.profile_button, self.accuracy_button, self.report_button]
        super().__init__([self.tabs, w.HBox([self.status, self.cancel_button, clear]), self.errors, log_title,
                          self.log_output, self.code])
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
        line = error_html(what, e)
        self._error_log.append(line)
        self.errors.value = "".join(self._error_log)
        msg = f"✖ {what}: {e}" if isinstance(e, WorkbenchError) else f"✖ {what}: {type(e).__name__}: {e} (a bug)"
        self.log_output.append_stdout(msg + "\n")

    # ------------------------------------------------------------------ snippets
    def model_lines(self) -> list:
        """The snippet lines that make ``m``, the version Build builds: load the source, replay the edits."""
        src = self.source.source
        lines: list = [Call("wb.load", (str(src),), target="m") if src is not None
                       else "m = wb.load(MODEL)  # MODEL: the model given to wb.Workbench (it has no file)"]
        lines += [self.history[i].code for i in range(1, self.history.current.index + 1)]
        return lines

    def _namespace(self) -> dict:
        import workbench

        return {"wb": workbench, "m": self.model, "fr": self.result, "h": self.history, "view": self.view}

    def _show(self, what: str, snippet: Snippet) -> None:
        self.snippets[what] = snippet
        text = snippet.text()
        self.code.value = text
        self.code.layout.height = f"{min(24, text.count(chr(10)) + 2) * 18 + 8}px"

    # ------------------------------------------------------------------ running
    def _run(self, what: str, make: Callable[[], tuple[Snippet, int]], done: Callable[[Any], None], *,
             background: bool = True) -> None:
        """``make()`` checks the settings and returns (snippet, number of trailing calls to run); the
        snippet is shown, its last calls run (in a worker thread), then ``done(result)``. Every error
        is caught in the worker and shown inline and in the log."""
        if self.busy:
            self._error(what, UsageError(f"another action is running ({html.unescape(self.status.value)}); "
                                         "wait for it or press Cancel"))
            return
        try:
            snippet, count = make()
        except WorkbenchError as e:
            self._error(what, e)
            self.status.value = f"<b style='color:#a00'>{html.escape(what)}: not started</b>"
            return
        self._show(what, snippet)
        self._cancel.clear()
        self.status.value = f"<b>{html.escape(what)}…</b>"
        for b in self._buttons:
            b.disabled = True
        self.cancel_button.disabled = False
        ns = self._namespace()

        def work() -> None:
            try:
                failure = None
                with self.log_output:  # the Output context would swallow an exception: keep it ourselves
                    try:
                        result = snippet.run_tail(ns, count)
                    except BaseException as e:  # noqa: BLE001 - shown inline below
                        failure = e
                if failure is not None:
                    raise failure
                done(result)
                self.status.value = f"<b>{html.escape(what)}: done</b>"
            except BaseException as e:  # noqa: BLE001 - every error is shown inline
                self._error(what, e)
                self.status.value = f"<b style='color:#a00'>{html.escape(what)}: failed</b>"
            finally:
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
        """Model tab: ``wb.inspect`` and the shape doctor ``wb.shapes.check`` of the current version."""
        snip = Snippet([*self.model_lines(), Call("wb.inspect", (Ref("m"),), target="ins"),
                        Call("wb.shapes.check", (Ref("m"),), target="doctor")], show="doctor")
        try:
            ns = self._namespace()
            doctor = snip.run_tail(ns, 2)
            self.model_html.value = (ns["ins"]._repr_html_() + "<h4>shape doctor (wb.shapes.check)</h4>"
                                     + doctor.to_html(index=False, na_rep=""))
            self._show("inspect", snip)
        except Exception as e:  # noqa: BLE001
            self._error("inspect", e)

    def _precisions(self) -> list[str]:
        return [p for p, b in self.precision_boxes.items() if b.value]

    def build(self, *, background: bool = True) -> None:
        """Build tab: ``wb.build_stage`` with the tab's settings."""
        def make():
            precs = self._precisions()
            if not precs:
                raise UsageError("no precision is ticked", hint="tick at least one precision, e.g. fp32")
            kw = {"data": self.data.value.strip() or None, "labels": self.labels.value.strip() or None,
                  "calib": self.calib.value.strip() or None, "shapes": self.shapes.value.strip() or None,
                  "accuracy_limit": self.limit.value if self.limit.value > 0 else None}
            if kw["labels"] and not kw["data"]:
                raise UsageError("a labels key needs a data file", hint="fill 'data (.npz)' or clear 'labels key'")
            call = Call("wb.build_stage", (Ref("m"), precs, self.backend.value),
                        {k: v for k, v in kw.items() if v is not None}, target="fr", hidden={"cancel": self._cancel})
            return Snippet([*self.model_lines(), call], show="fr.builds"), 1

        def done(fr):
            self.result = fr
            self._steps = [self.snippets["build"].last()]
            self._update_all()

        self._run("build", make, done, background=background)

    def _flow_lines(self) -> list:
        if self.result is None or not self._steps:
            raise UsageError("nothing built yet", hint="press Build first")
        return [*self.model_lines(), *self._steps]

    def profile(self, *, background: bool = True) -> None:
        """Profile tab: ``wb.profile_stage`` on the built engines."""
        def make():
            lines = self._flow_lines()
            call = Call("wb.profile_stage", (Ref("fr"),), {"iterations": self.iterations.value,
                                                          "layer_iterations": self.layer_iterations.value},
                        hidden={"cancel": self._cancel})
            return Snippet([*lines, call], show="fr.latency"), 1

        def done(_):
            self._steps = [s for s in self._steps if s.func != "wb.profile_stage"] + [self.snippets["profile"].last()]
            self._update_all()

        self._run("profile", make, done, background=background)

    def compare(self, *, background: bool = True) -> None:
        """Accuracy tab: ``wb.accuracy_stage`` against the FP32 ONNX Runtime reference."""
        def make():
            lines = self._flow_lines()
            call = Call("wb.accuracy_stage", (Ref("fr"),), hidden={"cancel": self._cancel})
            return Snippet([*lines, call], show="fr.summary()"), 1

        def done(_):
            self._steps = [s for s in self._steps if s.func != "wb.accuracy_stage"] + [self.snippets["accuracy"].last()]
            self._update_all()

        self._run("accuracy", make, done, background=background)

    def write_report(self, path: str | None = None, *, background: bool = True) -> None:
        """Report tab: save the JSON records and write the self-contained HTML report."""
        from ..report import records_dir_for

        path = path or self.report_path.value.strip() or "report.html"
        rec = records_dir_for(path)

        def make():
            lines = self._flow_lines()
            if Path(path).suffix.lower() not in (".html", ".htm"):
                raise UsageError(f"report file must end in .html, got {path}", hint="e.g. report.html")
            calls = [Call("fr.save", (str(rec),)),
                     Call("wb.write_report", (Ref("fr"), str(path)), {"records_link": rec.name + "/"})]
            return Snippet([*lines, *calls]), 2

        def done(p):
            self.report_html.value = (f"wrote <code>{html.escape(str(p))}</code> and "
                                      f"<code>{html.escape(str(rec))}/</code>")

        self._run("report", make, done, background=background)

    # ------------------------------------------------------------------ views
    def _update_all(self) -> None:
        self._update_figures()
        self._update_tables()
        self._update_overlays()

    def _update_figures(self, names=None) -> None:
        from .. import plots

        fr = self.result
        if fr is None:
            return
        # widgets replaced by the previous update are closed now; those replaced here stay open until
        # the next update (closing a widget whose front-end model is still initializing is an error there)
        for old in self._retired:
            old.close()
        self._retired = []
        for name, fig in plots.flow_figures(fr, top_k=self.top_k.value).items():
            if names is None or name in names:
                spec = fig.to_json()
                if spec == self._figure_specs.get(name):
                    continue  # unchanged (e.g. still empty): keep the widget, no front-end churn
                self._figure_specs[name] = spec
                self._retired.append(self.figures[name])
                self.figures[name] = _figure_widget(fig)
                self._figure_boxes[name].children = (self.figures[name],)

    def _update_tables(self) -> None:
        from ..report import accuracy_note, latency_note, summary_html, table_html

        fr = self.result
        if fr is None:
            return
        self.build_table.value = table_html(fr.builds, columns=["variant", "backend", "precision", "status",
                                                                "build_time_s", "reason"])
        self.latency_note.value = latency_note(fr) if not fr.latency.empty else ""
        if not fr.layers.empty:
            from ..compare.speed import speed_section_html

            self.why_speed.value = speed_section_html(fr, table_html, max_figures=0)
        if not fr.accuracy.empty:
            self.accuracy_table.value = summary_html(fr) + accuracy_note(fr)
        if fr.errors:
            for e in fr.errors:
                msg = f"{e['stage']} {e['variant']} ({e['backend']})"
                line = f"<div class='wb-error' style='color:#a00'>✖ <b>{html.escape(msg)}</b>: {html.escape(e['error'])}</div>"
                if line not in self._error_log:
                    self._error_log.append(line)
            self.errors.value = "".join(self._error_log)

    def _update_overlays(self) -> None:
        from .graph_view import overlay_calls

        opts = ["none", *overlay_calls(self.result)]  # the graph view's overlay menu
        keep = self.overlay.value if self.overlay.value in opts else "none"
        self.overlay.options = opts
        self.overlay.value = keep

    def show_overlay(self, choice: str) -> None:
        """Colour the graph by an entry of the graph view's overlay menu (``graph_view.overlay_calls``):
        fp16 safety of the current version, or per-node time or error of one variant (``view.set_overlay``)."""
        from .graph_view import overlay_calls

        if self.view is None:
            return
        try:
            if choice == "none":
                self.view.clear_overlay()
                return
            call = overlay_calls(self.result)[choice]
            lines = self.model_lines() if choice == "fp16 safety" else self._flow_lines()
            snip = Snippet([*lines, Call("wb.GraphView", (Ref("m"),), target="view"), call], show="view")
            snip.run_tail(self._namespace())
            self._show("overlay", snip)
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
