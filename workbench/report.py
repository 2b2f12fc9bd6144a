"""One self-contained HTML report of a flow: every plot and table, plotly's JavaScript inlined once.

    from workbench.flow import run_flow
    from workbench.report import write_report
    fr = run_flow("model.onnx", "fp32,fp16,int8", data="test.npz", labels="label")
    write_report(fr, "report.html")            # opens offline: no <script src=...>, no CDN

The report reads only the frames of a :class:`~workbench.flow.FlowResult`, so a flow loaded back from
its JSON records (``FlowResult.load``) renders the same report.
"""
from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from .fsutil import atomic_write_text

FIGURE_TITLES = {
    "latency": "Latency", "pareto": "Accuracy vs latency", "layers": "Per-layer time (top nodes)",
    "heatmap": "Per-layer time (every node)", "op_share": "Time share by op type",
    "layer_error": "Per-layer error", "builds": "Builds",
}
_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0 auto;max-width:1180px;padding:1em 2em;
color:#222}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}
.meta{color:#666;font-size:.9em}nav a{margin-right:1em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.note{background:#f7f7fb;border-left:3px solid #99c;padding:.4em .8em;margin:.5em 0;font-size:.9em}
.err{color:#a00}.ok{color:#070}.figure{margin:1em 0}details{margin:.5em 0}
code{background:#f4f4f4;padding:1px 4px}
"""


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if math.isnan(v):
            return ""
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e6):
            return f"{v:.3e}"
        return f"{v:.4f}".rstrip("0").rstrip(".") if abs(v) < 100 else f"{v:,.1f}"
    if isinstance(v, (list, tuple)):
        return ", ".join(map(str, v))
    if isinstance(v, dict):
        return json.dumps(v, default=str)
    return str(v)


def table_html(df: pd.DataFrame | None, *, max_rows: int | None = None, columns: list[str] | None = None) -> str:
    """An HTML table of ``df`` with readable numbers (escaped cells)."""
    if df is None or df.empty:
        return "<p class='meta'>(no rows)</p>"
    d = df[[c for c in columns if c in df.columns]] if columns else df
    more = ""
    if max_rows is not None and len(d) > max_rows:
        more = f"<p class='meta'>first {max_rows} of {len(d)} rows (all rows are in the JSON records)</p>"
        d = d.head(max_rows)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in d.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>"
                   for row in d.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}"


def _pct(v, digits: int = 2) -> str | None:
    return None if v is None or v != v else f"{100 * v:.{digits}f} %"


def environment(fr) -> dict:
    """Where and with what the numbers were measured, from the build records: device(s), backend
    versions, threads, Python, platform."""
    devices, versions, threads, host = [], {}, set(), {}
    for rec in (fr.build_records or {}).values():
        dev = rec.get("device") or {}
        name = dev.get("name") or dev.get("type") or ""
        if dev.get("type") == "cpu":
            name = f"CPU {name} ({dev.get('cores', '?')} cores)"
        elif dev.get("type"):
            name = f"{dev.get('type').upper()} {dev.get('name', '')}".strip()
        if name and name not in devices:
            devices.append(name)
        versions.update({k: str(v) for k, v in (rec.get("versions") or {}).items()})
        if rec.get("backend") and rec.get("backend_version"):
            versions.setdefault(rec["backend"], str(rec["backend_version"]))
        t = (rec.get("options") or {}).get("threads")
        threads.add("backend default" if not t else str(t))
        host = rec.get("host") or host
    return {"device": ", ".join(devices) or "unknown", "versions": versions,
            "threads": ", ".join(sorted(threads)) or "unknown", "python": host.get("python", ""),
            "platform": host.get("platform", ""), "cpu_count": host.get("cpu_count", "")}


def environment_html(fr) -> str:
    env = environment(fr)
    vers = ", ".join(f"{k} {v}" for k, v in env["versions"].items()) or "unknown"
    thr = env["threads"]
    if thr == "backend default":
        thr = "backend default (ONNX Runtime: one intra-op thread per physical core)"
    return (f"<p class='meta env'>measured on <b>{html.escape(env['device'])}</b> · threads: {html.escape(thr)}"
            f" · {html.escape(vers)} · Python {html.escape(env['python'])} · {html.escape(env['platform'])}</p>")


def summary_frame(fr) -> pd.DataFrame:
    """The flow summary with units in the column names and readable values."""
    s = fr.summary()
    out = pd.DataFrame({
        "variant": s["variant"], "backend": s["backend"], "precision": s["precision"], "status": s["status"],
        "p50 (ms)": s["p50_ms"],
        "speedup vs fp32": s["speedup"].map(lambda v: None if v is None or v != v else f"{v:.2f}×"),
        "range over blocks": [None if lo is None or lo != lo else f"{lo:.2f}–{hi:.2f}×"
                              for lo, hi in zip(s["speedup_lo"], s["speedup_hi"])],
        "speed": s["speed"],
        "top-1 (%)": s["top1"].map(lambda v: _pct(v)),
        "cosine (min)": s["cosine"].map(lambda v: None if v is None or v != v else f"{v:.6f}"),
        "reason": s["reason"]})
    return out


def summary_html(fr) -> str:
    return table_html(summary_frame(fr))


_summary_html = summary_html  # the report's name for it


def latency_note(fr) -> str:
    """How latency was measured and what can be concluded: blocks, spread, p99 outliers, verdicts."""
    lat = fr.latency
    if lat is None or lat.empty:
        return ""
    cfg = fr.config or {}
    blocks = int(lat["blocks"].max()) if "blocks" in lat.columns and lat["blocks"].notna().any() else 1
    n = int(lat["iterations"].max()) if "iterations" in lat.columns else cfg.get("iterations")
    batch = int(lat["batch"].iloc[0]) if "batch" in lat.columns else "?"
    parts = [f"Latency: {n} timed runs per variant (batch {batch}) in {blocks} interleaved block(s) "
             f"(fp32 int8 fp16 fp32 int8 fp16 …, so every variant sees the same load); p50 over all runs; "
             "the speedup range is the min–max over blocks of the per-block speedup. "
             f"“within noise”: the range contains 1× or the speedup is within ±3 % of 1×: no claim either way."]
    spread = (lat["p99_ms"] / lat["p50_ms"].where(lat["p50_ms"] > 0))
    noisy = [f"{v} (p99 = {x:.0f}× p50)" for v, x in zip(lat["variant"], spread) if x == x and x > 5]
    if noisy:
        parts.append("<b>Outliers:</b> " + ", ".join(html.escape(t) for t in noisy) +
                     ": a few runs were much slower (other processes, a busy or throttling machine). Compare p50s "
                     "and the block ranges, not p99 or the mean.")
    s = fr.summary()
    slower = s[s["speed"] == "slower"]
    if not slower.empty:
        parts.append("<b>Slower than fp32:</b> " + ", ".join(html.escape(v) for v in slower["variant"]) +
                     " (see the op-share plot for where the time goes).")
    return "<div class='note'>" + "<br>".join(parts) + "</div>"


def accuracy_frame(fr) -> pd.DataFrame:
    """The accuracy rows with units: top-1 in %, its change in percentage points."""
    a = fr.accuracy
    if a is None or a.empty:
        return pd.DataFrame()
    cols = {"variant": a["variant"], "backend": a.get("backend"), "precision": a.get("precision")}
    if "top1" in a.columns:
        cols["top-1 (%)"] = a["top1"].map(lambda v: _pct(v))
    if "top1_delta" in a.columns:
        cols["Δ top-1 (points)"] = a["top1_delta"].map(lambda v: None if v != v else f"{v:+.2f}")
    for src, dst in (("topk_agreement", "top-k agreement (%)"),):
        if src in a.columns:
            cols[dst] = a[src].map(lambda v: _pct(v, 1))
    for src, dst in (("cosine_min", "cosine (min)"), ("snr_db_min", "SNR (dB, min)"), ("max_abs", "max |Δ|")):
        if src in a.columns:
            cols[dst] = a[src]
    if "passed" in a.columns:
        cols["verdict"] = a["passed"].map(lambda v: "pass" if bool(v) else "FAIL")
    if "rule" in a.columns:
        cols["stated tolerance"] = a["rule"]
    if "why" in a.columns and "passed" in a.columns:
        cols["why"] = [("" if bool(ok) else str(w)) for ok, w in zip(a["passed"], a["why"])]
    if "allclose" in a.columns:
        cols["allclose (info)"] = a["allclose"]
    return pd.DataFrame({k: v for k, v in cols.items() if v is not None})


def accuracy_note(fr) -> str:
    """What the accuracy columns mean, with the tolerances actually used."""
    if fr.accuracy is None or fr.accuracy.empty:
        return ""
    cfg = fr.config or {}
    atol, rtol = cfg.get("atol", 1e-3), cfg.get("rtol", 1e-3)
    rules = []
    if "rule" in fr.accuracy.columns:
        rules = list(dict.fromkeys(str(r) for r in fr.accuracy["rule"].dropna()))
    stated = ("<b>verdict</b>: each precision's stated tolerance on robust metrics — " +
              "; ".join(html.escape(r) for r in rules) + " (workbench.compare.metrics.DEFAULT_TOLERANCES). "
              if rules else "")
    return ("<div class='note'>Against the FP32 ONNX Runtime CPU reference on the same inputs. "
            "top-1 in % of samples; Δ top-1 in percentage points (+0.22 = 0.22 % more samples right); "
            "cosine and SNR are the minimum over outputs. " + stated +
            f"<b>allclose</b> (information only): every element within atol + rtol·|ref|, atol = {atol:g}, "
            f"rtol = {rtol:g} — fp16 usually fails it while its cosine is 1.0 and its top-1 is unchanged.</div>")


def _flops_label(ins: dict) -> str:
    if ins.get("assumed_batch"):
        return "FLOPs per sample (dynamic batch: 1 assumed)"
    if ins.get("shapes"):
        return "FLOPs at " + ", ".join(f"{k}:{'x'.join(map(str, v))}" for k, v in ins["shapes"].items())
    return "FLOPs"


def _flops_value(ins: dict) -> str:
    from .inspect import human_number as _human

    fl = float(ins.get("flops") or 0.0)
    unknown = int(ins.get("flops_unknown_nodes") or 0)
    if unknown:
        return f">= {_human(fl)} ({unknown} node(s) with unknown shapes: give shapes=)"
    return _human(fl)


def _run_facts(fr) -> str:
    """Samples per stage (the sample budget and why) and seconds per stage, in one line."""
    c = fr.config
    acc, lw = c.get("accuracy_samples"), c.get("layerwise_samples")
    parts = []
    if acc is not None:
        parts.append(f"accuracy on {acc} samples" + (f" (sample budget {c['accuracy_limit']}: output metrics settle "
                                                      "with a few dozen samples; --limit changes it)"
                                                      if c.get("accuracy_limit") else ""))
    if lw is not None:
        parts.append(f"per-node error on {lw} sample{'' if lw == 1 else 's'} (every tensor of both graphs is compared"
                     + (f"; {c['layerwise_reason']}, --layerwise-budget)" if c.get("layerwise_reason") else ")"))
    if c.get("latency_batch"):
        parts.append("latency and per-layer profiling on " + ("one-sample runs" if c["latency_batch"] == 1 else
                                                  f"runs of {c['latency_batch']} samples")
                     + (" (--latency-samples)" if c.get("latency_samples") else ""))
    if c.get("time_budget_s"):
        parts.append(f"latency and per-layer profiling: as many runs as fit in {c['time_budget_s']:g} s per variant")
    if fr.timings:
        parts.append("stage seconds: " + ", ".join(f"{k} {float(v):.1f}" for k, v in fr.timings.items()))
    return "; ".join(parts)


def _inspection_html(ins: dict) -> str:
    if not ins:
        return "<p class='meta'>(not inspected)</p>"
    io = lambda items: ", ".join(f"{i.get('name')} {i.get('dtype', '')} {i.get('shape', '')}" for i in items)  # noqa: E731
    facts = [("model", ins.get("name")), ("opset", ins.get("opset")), ("nodes", ins.get("nodes")),
             ("op types", ", ".join(f"{k} {v}" for k, v in sorted((ins.get("ops") or {}).items(), key=lambda kv: -kv[1]))),
             ("parameters", f"{ins.get('params', 0):,}"), ("inputs", io(ins.get("inputs") or [])),
             ("outputs", io(ins.get("outputs") or [])), (_flops_label(ins), _flops_value(ins)),
             ("producer", f"{ins.get('producer_name', '')} {ins.get('producer_version', '')}")]
    return table_html(pd.DataFrame(facts, columns=["fact", "value"]))


def report_html(fr, *, title: str | None = None, figures: dict | None = None, records_link: str | None = None) -> str:
    """The report as one HTML string (plotly.js inlined once)."""
    import plotly.offline

    from .plots import flow_figures

    figures = figures if figures is not None else flow_figures(fr)
    title = title or f"trt-workbench report: {fr.model_name}"
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_CSS}</style>",
             f"<script type='text/javascript'>{plotly.offline.get_plotlyjs()}</script></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             f"<p class='meta'>model hash {html.escape(str(fr.model_hash)[:16])} · created {html.escape(fr.created)}"
             f" · backends {html.escape(', '.join(fr.config.get('backends', [])))}"
             f" · precisions {html.escape(', '.join(fr.config.get('precisions', [])))}</p>", environment_html(fr)]
    nav = ["summary", *figures, "tables"]
    parts.append("<nav>" + "".join(f"<a href='#{n}'>{html.escape(FIGURE_TITLES.get(n, n))}</a>" for n in nav) + "</nav>")
    parts.append("<h2 id='summary'>Summary</h2>")
    parts.append("<p class='meta'>speedup: the backend's fp32 p50 divided by the variant's p50; top-1 and cosine "
                 "against the FP32 ONNX Runtime CPU reference on the same data.</p>")
    parts.append(_summary_html(fr))
    parts.append(latency_note(fr))
    parts.append(accuracy_note(fr))
    parts.append(f"<p class='meta'>{html.escape(_run_facts(fr))}</p>")
    if fr.errors:
        parts.append("<h3 class='err'>Errors</h3><ul>" + "".join(
            f"<li class='err'>{html.escape(e.get('stage', ''))} · {html.escape(e.get('variant', ''))} · "
            f"{html.escape(e.get('backend', ''))}: {html.escape(e.get('error', ''))}</li>" for e in fr.errors) + "</ul>")
    for i, (name, fig) in enumerate(figures.items()):
        div = fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"fig-{name}",
                          config={"displaylogo": False, "responsive": True})
        parts.append(f"<h2 id='{html.escape(name)}'>{html.escape(FIGURE_TITLES.get(name, name))}</h2>"
                     f"<div class='figure'>{div}</div>")
    parts.append("<h2 id='tables'>Tables</h2>")
    parts.append("<h3>Model</h3>" + _inspection_html(fr.inspection))
    parts.append("<h3>Configuration</h3>" + table_html(pd.DataFrame(
        [(k, v) for k, v in fr.config.items()], columns=["setting", "value"])))
    parts.append("<h3>Builds</h3>" + table_html(fr.builds))
    parts.append("<h3>Latency</h3>" + table_html(fr.latency))
    parts.append("<h3>Accuracy</h3>" + table_html(accuracy_frame(fr)))
    parts.append("<h3>Per-layer time</h3>" + table_html(
        fr.layers, max_rows=60, columns=["variant", "backend", "precision", "layer", "layer_type", "onnx_node",
                                         "time_ms", "share"]))
    from .compare.speed import speed_section_html  # recipes (#14): why each variant is faster/slower

    parts.append(speed_section_html(fr, table_html))
    parts.append("<h3>Per-layer error</h3>" + table_html(
        fr.layerwise, max_rows=80, columns=["variant", "order", "onnx_node", "op_type", "cosine", "snr_db", "max_abs",
                                            "diverged", "first_divergent"]))
    if len(fr.layerwise_unmatched):  # tensors the per-layer error could not pair (and why)
        parts.append("<h4>Tensors not compared</h4>" + table_html(fr.layerwise_unmatched, max_rows=40))
    parts.append("<h3>Variant configurations</h3>" + table_html(pd.DataFrame(
        [(k, v.get("precision"), json.dumps(v.get("recipe", {}), default=str), json.dumps(v.get("backend_flags", {})),
          str(v.get("hash", ""))[:12]) for k, v in fr.variants.items()],
        columns=["variant@backend", "precision", "recipe", "backend flags", "hash"])))
    if fr.timings:
        parts.append("<h3>Stage times</h3>" + table_html(stage_frame(fr)))
    if records_link:
        parts.append(f"<p class='meta'>JSON records: <code>{html.escape(records_link)}</code> "
                     "(load with <code>workbench.flow.FlowResult.load</code>)</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def stage_frame(fr) -> pd.DataFrame:
    """One row per stage: wall seconds, CPU seconds (this process, all threads: what a shared machine does
    not inflate) and what was reused instead of redone."""
    cpu = (fr.config or {}).get("stage_cpu_s") or {}
    reused = (fr.config or {}).get("reused") or {}
    rows = [{"stage": k, "seconds": float(v), "cpu seconds": cpu.get(k), "reused": reused.get(k, "")}
            for k, v in fr.timings.items()]
    return pd.DataFrame(rows, columns=["stage", "seconds", "cpu seconds", "reused"])


def write_report(fr, path: str | os.PathLike, *, title: str | None = None, figures: dict | None = None,
                 records_link: str | None = None) -> Path:
    """Write the report of ``fr`` to ``path`` atomically; returns the path."""
    return atomic_write_text(path, report_html(fr, title=title, figures=figures, records_link=records_link))


def records_dir_for(report_path: str | os.PathLike) -> Path:
    """Where ``workbench report`` keeps the JSON records of ``report.html``: ``report-records/`` beside it."""
    p = Path(report_path)
    return p.with_name(f"{p.stem}-records")
