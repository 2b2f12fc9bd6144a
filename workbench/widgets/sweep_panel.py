"""A sweep tab: the grid of models × backends × precisions × batch sizes, filling in as cells finish.

    from workbench.widgets.sweep_panel import SweepPanel
    SweepPanel(["a.onnx", "b.onnx"])        # or the dashboard's "Sweep" tab

One public call, :func:`workbench.sweep`, run in a worker thread with ``on_cell`` feeding the live table and
heatmap; the code shown is that call's own text (:class:`~workbench.widgets.calls.Snippet`), runnable when
pasted into a fresh cell (it reuses the finished cells in the same ``out_dir``).
"""
from __future__ import annotations

import html
import threading
from typing import Any, Sequence

import ipywidgets as w

from .calls import Call, Snippet, error_html

_STYLE = {"description_width": "130px"}
_COLUMNS = ["model", "backend", "precision", "batch_size", "status", "p50_ms", "cosine", "reason"]


def _text(value, description, placeholder=""):
    return w.Text(value=value or "", description=description, placeholder=placeholder, style=_STYLE,
                  layout=w.Layout(width="70%"))


class SweepPanel(w.VBox):
    """Inputs, a Run button, a live table and heatmap, the code of the call and its errors."""

    def __init__(self, models: Sequence[str] | str = (), *, precisions: str = "fp32,fp16,int8",
                 backends: str = "onnxruntime", data: str | None = None, calib: str | None = None,
                 out_dir: str = "sweep"):
        models = [models] if isinstance(models, str) else [str(m) for m in models]
        self.models = w.Textarea(value="\n".join(models), description="models", placeholder="one .onnx path per line",
                                 style=_STYLE, layout=w.Layout(width="70%", height="70px"))
        self.backends = _text(backends, "backends", "comma list")
        self.precisions = _text(precisions, "precisions", "comma list")
        self.batches = _text("", "batch sizes", "e.g. 1,32 (empty: the data's batch)")
        self.data = _text(data, "data (.npz)", "inputs for latency and accuracy; empty: synthetic")
        self.calib = _text(calib, "calib (.npz)", "INT8/FP8 calibration inputs; empty: data")
        self.out_dir = _text(out_dir, "out folder", "cells are cached here; a rerun reuses them")
        self.executor = _text("", "Ray address", "empty: this process; local-ray; auto; HOST:PORT")
        self.run_button = w.Button(description="Run sweep", button_style="primary", icon="th")
        self.run_button.on_click(lambda _: self.run())
        self.status = w.HTML()
        self.table = w.HTML()
        self.figure_box = w.VBox()
        self.code = w.Textarea(layout=w.Layout(width="100%", height="90px"))
        self.errors = w.HTML()
        self.rows: list[dict] = []
        self.result = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        super().__init__([self.models, self.backends, self.precisions, self.batches, self.data, self.calib,
                          self.out_dir, self.executor, self.run_button, self.status, self.errors, self.table,
                          self.figure_box, w.HTML("<b>code of the last action</b>"), self.code])

    # ------------------------------------------------------------------ the call
    def snippet(self) -> Snippet:
        """The call the Run button makes, from the current inputs."""
        models = [m.strip() for m in self.models.value.splitlines() if m.strip()]
        kwargs: dict[str, Any] = {"precisions": self.precisions.value.strip(),
                                  "backends": self.backends.value.strip() or "onnxruntime"}
        if self.batches.value.strip():
            kwargs["batch_sizes"] = [int(b) for b in self.batches.value.split(",") if b.strip()]
        for key, box in (("data", self.data), ("calib", self.calib)):
            if box.value.strip():
                kwargs[key] = box.value.strip()
        kwargs["out_dir"] = self.out_dir.value.strip() or "sweep"
        if self.executor.value.strip():
            kwargs["executor"] = self.executor.value.strip()
        call = Call("wb.sweep", (models,), kwargs, target="res", hidden={"on_cell": self._on_cell, "progress": False})
        return Snippet([call], show="res.to_frame()")

    def run(self, background: bool = True) -> None:
        """Run the sweep (in a thread by default); the table fills in as each cell finishes."""
        if self._thread is not None and self._thread.is_alive():
            self.errors.value = error_html("Run sweep", RuntimeError("a sweep is already running"))
            return
        self.errors.value = ""
        try:
            snip = self.snippet()
        except (ValueError, Exception) as e:  # a bad batch list, a non-literal value
            self.errors.value = error_html("Run sweep", e)
            return
        self.code.value = snip.text()
        self.rows = []
        self._render()
        self.status.value = "running…"
        self.run_button.disabled = True

        def work():
            try:
                self.result = snip.run_last({})
                self.status.value = (f"done: {len(self.result.rows)} cells ({self.result.ran} ran, "
                                     f"{self.result.reused} reused) in {self.result.wall_s:.1f} s")
                self._figure()
            except Exception as e:  # WorkbenchError: message + hint; anything else is shown as a bug
                self.errors.value = error_html("Run sweep", e)
                self.status.value = "failed"
            finally:
                self.run_button.disabled = False

        if background:
            self._thread = threading.Thread(target=work, daemon=True)
            self._thread.start()
        else:
            work()

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    # ------------------------------------------------------------------ views
    def _on_cell(self, row: dict) -> None:
        with self._lock:
            self.rows.append(row)
        self.status.value = f"running… {len(self.rows)} cells finished"
        self._render()

    def _render(self) -> None:
        with self._lock:
            rows = list(self.rows)
        head = "".join(f"<th>{c}</th>" for c in _COLUMNS)
        body = []
        for r in rows:
            cells = []
            for c in _COLUMNS:
                v = r.get(c)
                v = "" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))
                cells.append(f"<td>{html.escape(v[:80])}</td>")
            body.append("<tr>" + "".join(cells) + "</tr>")
        self.table.value = (f"<table class='wb-sweep' style='font-size:12px'><tr>{head}</tr>{''.join(body)}</table>"
                            if rows else "")

    def _figure(self) -> None:
        import plotly.graph_objects as go

        res = self.result
        if res is None or not any(r.get("status") == "ok" for r in res.rows):
            self.figure_box.children = ()
            return
        self.figure_box.children = (go.FigureWidget(res.heatmap()), go.FigureWidget(res.pareto()))
