"""Plotly figures, each built from the tidy frames of the flow (one function per figure).

    from workbench import plots
    plots.latency_figure(fr.latency)                  # p50 bars, p90 ticks, whiskers to p99
    plots.layer_figure(fr.layers, top_k=10)           # per-layer time side by side, aligned by ONNX node
    plots.layer_heatmap(fr.layers)                    # every ONNX node x variant
    plots.op_share_figure(fr.layers)                  # time share by op type, stacked, per variant
    plots.pareto_figure(fr.latency, fr.accuracy)      # accuracy vs latency, one point per variant
    plots.layer_error_figure(fr.layerwise)            # per-node error along the topological order
    plots.build_figure(fr.builds)                     # build time and engine (or ONNX) size

Every figure colours a variant by its precision through :data:`PRECISION_COLORS`, so fp16 has the same
colour in all of them. Inputs are the frames' stable columns (see docs/architecture.md); the functions
work the same on frames loaded back from JSON (``FlowResult.load``).
"""
from __future__ import annotations

import json
from typing import Any, Callable, Sequence

import pandas as pd

OTHER_COLOR = "#7F7F7F"
#: Colours for op types in the stacked share plot (cycled): light tints, so no op type can be mistaken
#: for a precision (the precision colours above are saturated; tests check the two sets stay apart).
OP_COLORS = ["#8DD3C7", "#FFFFB3", "#BEBADA", "#FB8072", "#80B1D3", "#FDB462", "#B3DE69", "#FCCDE5",
             "#D9D9D9", "#BC80BD", "#CCEBC5", "#FFED6F"]
TEMPLATE = "plotly_white"


def precision_colors() -> dict[str, str]:
    """One colour per registered precision (``Recipe.color`` in the precision registry; the built-ins use
    the Okabe-Ito palette: colour-blind safe), used by every figure."""
    from .precision import REGISTRY

    return {name: r.color for name, r in REGISTRY.items()}


def __getattr__(name: str):
    # ``PRECISION_COLORS``: {precision: colour}, read from the precision registry.
    if name == "PRECISION_COLORS":
        return precision_colors()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def precision_color(precision: str) -> str:
    """The colour of ``precision`` (grey for unknown ones)."""
    from .precision import get_recipe

    r = get_recipe(str(precision), missing_ok=True)
    return r.color if r is not None else OTHER_COLOR


def _go():
    import plotly.graph_objects as go

    return go


def _labels(df: pd.DataFrame) -> pd.Series:
    """Variant names, suffixed with the backend when the frame holds more than one backend."""
    if "backend" in df.columns and df["backend"].nunique() > 1:
        return df["variant"].astype(str) + " · " + df["backend"].astype(str)
    return df["variant"].astype(str)


def _empty(title: str, why: str):
    go = _go()
    fig = go.Figure(layout={"template": TEMPLATE, "title": {"text": title}})
    fig.add_annotation(text=why, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper", font={"size": 14})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def _layout(fig, title: str, x: str, y: str, **kw):
    fig.update_layout(template=TEMPLATE, title={"text": title}, xaxis_title=x, yaxis_title=y,
                      legend_title_text=kw.pop("legend", "precision"),
                      margin=kw.pop("margin", {"t": 70, "l": 60, "r": 20, "b": 60}),
                      hoverlabel={"align": "left"}, **kw)
    return fig


def _precisions(df: pd.DataFrame) -> list[str]:
    order = list(precision_colors())
    seen = list(dict.fromkeys(df["precision"].astype(str)))
    return sorted(seen, key=lambda p: (order.index(p) if p in order else len(order), p))


# -------------------------------------------------------------------------------------------- latency
def latency_figure(latency: pd.DataFrame, *, title: str = "Latency by precision and backend"):
    """p50 latency bars per variant (and backend) on a linear axis from 0 (bar length = time); a whisker
    over the range of the per-block medians (``p50_lo_ms`` / ``p50_hi_ms`` from interleaved blocks, when
    measured), a tick at p90 and a diamond at p99. The axis stops a little above the largest p90: a p99
    beyond it (a few outlier runs) is named in a note instead of squashing the bars.

    ``latency``: ``measure_latency`` rows (``variant, backend, precision, p50_ms, p90_ms, p99_ms``)."""
    if latency is None or latency.empty:
        return _empty(title, "no latency measured")
    go = _go()
    df = latency.copy()
    df["label"] = _labels(df)
    has_blocks = {"p50_lo_ms", "p50_hi_ms"} <= set(df.columns) and df["p50_lo_ms"].notna().any()
    fig = go.Figure()
    for p in _precisions(df):
        d = df[df.precision.astype(str) == p]
        hover = []
        for r in d.itertuples():
            n = int(r.iterations) if r.iterations == r.iterations else "?"
            blk = (f"<br>block medians {r.p50_lo_ms:.4f}–{r.p50_hi_ms:.4f} ms ({int(r.blocks)} blocks)"
                   if has_blocks and r.p50_lo_ms == r.p50_lo_ms else "")
            hover.append(f"<b>{r.label}</b><br>backend {r.backend}<br>p50 {r.p50_ms:.4f} ms{blk}"
                         f"<br>p90 {r.p90_ms:.4f} ms<br>p99 {r.p99_ms:.4f} ms<br>n = {n} runs")
        err = None
        if has_blocks:
            err = {"type": "data", "symmetric": False, "array": (d.p50_hi_ms - d.p50_ms).clip(lower=0).tolist(),
                   "arrayminus": (d.p50_ms - d.p50_lo_ms).clip(lower=0).tolist(), "color": "#333",
                   "thickness": 1.5, "width": 8}
        fig.add_trace(go.Bar(x=d.label, y=d.p50_ms, name=p, legendgroup=p, marker_color=precision_color(p),
                             error_y=err, hovertext=hover, hoverinfo="text"))
    fig.add_trace(go.Scatter(x=df.label, y=df.p90_ms, mode="markers", name="p90",
                             marker={"symbol": "line-ew-open", "size": 22, "color": "#222", "line": {"width": 2}},
                             hovertemplate="%{x}<br>p90 %{y:.4f} ms<extra></extra>"))
    top = float(max(df.p90_ms.max(), df.get("p50_hi_ms", df.p50_ms).max(), df.p50_ms.max())) * 1.25
    shown = df[df.p99_ms <= top]
    fig.add_trace(go.Scatter(x=shown.label, y=shown.p99_ms, mode="markers", name="p99",
                             marker={"symbol": "diamond-open", "size": 9, "color": "#555"},
                             hovertemplate="%{x}<br>p99 %{y:.4f} ms<extra></extra>"))
    fig.update_layout(barmode="overlay")
    fig.update_yaxes(type="linear", rangemode="tozero", range=[0, top])
    off = df[df.p99_ms > top]
    if not off.empty:
        txt = "p99 above the axis: " + ", ".join(f"{r.label} {r.p99_ms:.2f} ms" for r in off.itertuples()) + \
              " (outlier runs: compare p50s)"
        fig.add_annotation(text=txt, showarrow=False, x=0, y=1.0, xref="paper", yref="paper", xanchor="left",
                           yanchor="bottom", font={"size": 11, "color": "#666"})
    ytitle = "latency p50 (ms)" + (" · whisker: block range" if has_blocks else "") + " · tick p90 · ◇ p99"
    return _layout(fig, title, "variant", ytitle)


# ------------------------------------------------------------------------------------------ per-layer
def _node_column(layers: pd.DataFrame) -> pd.Series:
    if "onnx_node" in layers.columns:
        s = layers["onnx_node"].astype(object)
        return s.where(s.notna() & (s.astype(str) != ""), "(unmapped)").astype(str)
    return layers["layer"].astype(str)


def time_basis_label(layers: pd.DataFrame) -> str:
    """Axis text naming what the per-layer times are (the table's ``time_basis`` column, issue 18)."""
    b = set(layers["time_basis"].dropna().astype(str)) if "time_basis" in layers.columns else set()
    if "cupti-gpu" in b:
        return "GPU time per run (ms, CUPTI)" + (" · CPU-provider nodes: host ms" if "host" in b else "")
    if "tensorrt-iprofiler" in b:
        return "GPU time per run (ms, TensorRT IProfiler)"
    if "host-launch" in b:
        return "host launch time per run (ms), not GPU time"
    return "time per run (ms)"


def layers_by_node(layers: pd.DataFrame) -> pd.DataFrame:
    """Per-layer rows summed per ONNX node (``onnx_node``): ``label, onnx_node, time_ms, precision, layers``.

    This aligns the layers of different precisions: an INT8 QLinearConv and an FP16 Conv that come from
    the same ONNX node land on the same row."""
    df = layers.copy()
    df["label"] = _labels(df)
    df["onnx_node"] = _node_column(df)
    agg = {"time_ms": ("time_ms", "sum"), "precision": ("precision", "first"), "layers": ("layer", "count")}
    if "kernels" in df.columns:  # CUPTI tables: the GPU kernels that ran for the node (drill-down in hovers)
        agg["kernels"] = ("kernels", lambda k: "; ".join(str(x) for x in k if isinstance(x, str) and x))
    g = df.groupby(["label", "onnx_node"], sort=False).agg(**agg).reset_index()
    return g


def _kernel_hover(text) -> str:
    """At most three kernel names (shortened) for a hover line; empty without CUPTI kernels."""
    if not isinstance(text, str) or not text:
        return ""
    parts = [t.strip() for t in text.split(";") if t.strip() and not t.strip().startswith("…")]
    short = [(t[:70] + "…") if len(t) > 71 else t for t in parts[:3]]
    more = f"<br>… {len(parts) - 3} more" if len(parts) > 3 else ""
    return "<br>kernels: " + "<br>  ".join(short) + more


def layer_figure(layers: pd.DataFrame, *, top_k: int = 15, title: str | None = None):
    """Grouped bars: time per ONNX node for the ``top_k`` nodes (by their largest time in any variant),
    one bar per variant coloured by precision."""
    title = title or f"Per-layer time, top {top_k} ONNX nodes, side by side"
    if layers is None or layers.empty:
        return _empty(title, "no per-layer profile")
    go = _go()
    g = layers_by_node(layers)
    top = g.groupby("onnx_node").time_ms.max().sort_values(ascending=False).head(top_k).index.tolist()
    g = g[g.onnx_node.isin(top)]
    fig = go.Figure()
    for label in dict.fromkeys(g.label):
        d = g[g.label == label].set_index("onnx_node").reindex(top)
        p = str(d.precision.dropna().iloc[0])
        kern = d["kernels"].map(_kernel_hover) if "kernels" in d.columns else pd.Series("", index=d.index)
        fig.add_trace(go.Bar(x=top, y=d.time_ms, name=label, legendgroup=p, marker_color=precision_color(p),
                             customdata=list(zip(d.layers.fillna(0).astype(int), kern.fillna(""))),
                             hovertemplate=f"<b>{label}</b> ({p})<br>%{{x}}<br>%{{y:.4f}} ms in %{{customdata[0]}} "
                                           "layer(s)%{customdata[1]}<extra></extra>"))
    fig.update_layout(barmode="group")
    fig.update_xaxes(tickangle=-30)
    return _layout(fig, title, "ONNX node", time_basis_label(layers), legend="variant")


def layer_heatmap(layers: pd.DataFrame, *, order: Sequence[str] | None = None, title: str = "Per-layer time, every ONNX node"):
    """Heatmap of time per ONNX node (rows) and variant (columns). ``order``: node names in topological
    order (e.g. ``[n.name for n in model.graph.node]``); default: by total time."""
    if layers is None or layers.empty:
        return _empty(title, "no per-layer profile")
    go = _go()
    g = layers_by_node(layers)
    piv = g.pivot_table(index="onnx_node", columns="label", values="time_ms", aggfunc="sum")
    cols = list(dict.fromkeys(g.label))
    piv = piv.reindex(columns=cols)
    if order:
        rank = {n: i for i, n in enumerate(order)}
        rows = sorted(piv.index, key=lambda n: (rank.get(n, len(rank)), n))
    else:
        rows = piv.sum(axis=1).sort_values(ascending=False).index.tolist()
    piv = piv.reindex(rows)
    unit = "GPU ms" if time_basis_label(layers).startswith("GPU") else "ms"
    fig = go.Figure(go.Heatmap(z=piv.values, x=cols, y=rows, colorscale="Viridis", colorbar={"title": {"text": unit}},
                               hovertemplate="%{y}<br>%{x}<br>%{z:.4f} ms<extra></extra>", hoverongaps=False))
    fig.update_yaxes(autorange="reversed", tickfont={"size": 10})
    return _layout(fig, title, "variant", "ONNX node", height=max(360, 18 * len(rows) + 140), legend="")


def op_share_figure(layers: pd.DataFrame, *, top_ops: int = 10, title: str = "Time share by op type"):
    """Stacked bars: each variant's per-layer time split by layer type (percent; the ``top_ops`` largest
    types, the rest as "other")."""
    if layers is None or layers.empty:
        return _empty(title, "no per-layer profile")
    go = _go()
    df = layers.copy()
    df["label"] = _labels(df)
    tot = df.groupby("label", sort=False).time_ms.transform("sum")
    df["pct"] = 100.0 * df.time_ms / tot.where(tot > 0)
    keep = df.groupby("layer_type").time_ms.sum().sort_values(ascending=False).head(top_ops).index.tolist()
    df["op"] = df.layer_type.where(df.layer_type.isin(keep), "other")
    g = df.groupby(["label", "op"], sort=False).agg(pct=("pct", "sum"), ms=("time_ms", "sum")).reset_index()
    labels = list(dict.fromkeys(df.label))
    prec = df.groupby("label", sort=False).precision.first()
    fig = go.Figure()
    for i, op in enumerate(keep + (["other"] if (df.op == "other").any() else [])):
        d = g[g.op == op].set_index("label").reindex(labels)
        fig.add_trace(go.Bar(x=labels, y=d.pct.fillna(0.0), name=op, marker_color=OP_COLORS[i % len(OP_COLORS)] if op != "other"
                             else OTHER_COLOR, customdata=d.ms.fillna(0.0),
                             hovertemplate=f"{op}<br>%{{x}}<br>%{{y:.1f}} %% (%{{customdata:.4f}} ms)<extra></extra>"))
    fig.update_layout(barmode="stack")
    # one line per variant saying where most of its time goes (and how much is format conversion)
    notes = []
    for lbl in labels:
        d = df[df.label == lbl].groupby("layer_type").pct.sum().sort_values(ascending=False)
        if d.empty or d.iloc[0] != d.iloc[0]:
            continue
        qdq = float(d[d.index.isin(["QuantizeLinear", "DequantizeLinear", "Cast"])].sum())
        txt = f"{lbl}: {d.iloc[0]:.0f} % {d.index[0]}"
        if qdq >= 10 and d.index[0] not in ("QuantizeLinear", "DequantizeLinear", "Cast"):
            txt += f", {qdq:.0f} % in Quantize/Dequantize/Cast"
        elif d.index[0] in ("QuantizeLinear", "DequantizeLinear", "Cast"):
            txt += f" ({qdq:.0f} % in Quantize/Dequantize/Cast: format conversions, not math)"
        notes.append(txt)
    if notes:
        title = f"{title}<br><sup>{' · '.join(notes)}</sup>"
    # tick labels coloured by precision keep the precision colours visible here too
    fig.update_xaxes(tickmode="array", tickvals=labels,
                     ticktext=[f"<span style='color:{precision_color(prec[lbl])}'>{lbl}</span>" for lbl in labels])
    return _layout(fig, title, "variant", "share of per-layer time (%)", legend="op type")


# ------------------------------------------------------------------------------------------ accuracy
ACCURACY_METRICS = {"top1": ("top-1 accuracy (%)", 100.0), "cosine_min": ("cosine similarity (min over outputs)", 1.0),
                    "snr_db_min": ("SNR (dB, min over outputs)", 1.0)}
#: Differences in accuracy smaller than this are noise (in the plotted unit): top-1 half a point (one
#: sample of a few hundred, the binomial standard error at 99 % on 450 samples is ~0.5 points), cosine
#: 1e-4, SNR 1 dB. Latency differences are noise when the block ranges overlap (or within 3 %).
ACCURACY_NOISE = {"top1": 0.5, "cosine_min": 1e-4, "snr_db_min": 1.0}
#: The smallest y span of the accuracy-vs-latency plot, so noise-sized differences do not fill the axis.
ACCURACY_MIN_SPAN = {"top1": 4.0, "cosine_min": 1e-3, "snr_db_min": 10.0}


def pareto_front(points: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Rows not dominated by another (lower ``x`` and higher ``y`` are better), sorted by ``x``."""
    pts = points.dropna(subset=[x, y]).sort_values([x, y], ascending=[True, False])
    front, best = [], float("-inf")
    for r in pts.itertuples(index=False):
        yv = getattr(r, y)
        if yv > best:
            front.append(r)
            best = yv
    return pd.DataFrame(front, columns=pts.columns)


def _latency_apart(a, b) -> bool:
    """True when two latency rows differ beyond noise: their block ranges do not overlap (when
    measured) and their p50s differ by more than 3 %."""
    lo_a, hi_a = getattr(a, "p50_lo_ms", a.p50_ms), getattr(a, "p50_hi_ms", a.p50_ms)
    lo_b, hi_b = getattr(b, "p50_lo_ms", b.p50_ms), getattr(b, "p50_hi_ms", b.p50_ms)
    overlap = lo_a == lo_a and lo_b == lo_b and not (hi_a < lo_b or hi_b < lo_a)
    return not overlap and abs(a.p50_ms - b.p50_ms) > 0.03 * min(a.p50_ms, b.p50_ms)


def tradeoffs(df: pd.DataFrame, metric: str, x: str = "p50_ms", y: str = "y") -> pd.DataFrame:
    """The Pareto front of ``df`` (lower ``x``, higher ``y``) keeping only real trade-offs: consecutive
    front points must differ in latency beyond noise (:func:`_latency_apart`) and in accuracy by more than
    :data:`ACCURACY_NOISE`. Fewer than two rows: no trade-off to show."""
    front = pareto_front(df, x, y)
    noise = ACCURACY_NOISE.get(metric, 0.0)
    keep = []
    for r in front.itertuples(index=False):
        if keep and not (_latency_apart(keep[-1], r) and abs(getattr(r, y) - getattr(keep[-1], y)) > noise):
            continue
        keep.append(r)
    return pd.DataFrame(keep, columns=front.columns) if len(keep) > 1 else front.iloc[0:0]


def pareto_figure(latency: pd.DataFrame, accuracy: pd.DataFrame, *, metric: str | None = None,
                  configs: dict | None = None, title: str = "Accuracy vs latency"):
    """One point per variant: x = p50 latency (whisker: block range), y = ``metric`` (``top1`` in %
    when present, else ``cosine_min``). The Pareto front is drawn only for trade-offs beyond noise
    (:func:`tradeoffs`); otherwise a note says there is none. The y axis spans at least
    :data:`ACCURACY_MIN_SPAN`, so a one-sample difference does not look like a cliff. Hover shows the
    variant's configuration (``configs``: ``{"variant@backend": Variant.to_json()}``)."""
    if latency is None or latency.empty or accuracy is None or accuracy.empty:
        return _empty(title, "needs latency and accuracy results")
    if metric is None:
        metric = "top1" if "top1" in accuracy.columns and accuracy["top1"].notna().any() else "cosine_min"
    name, scale = ACCURACY_METRICS.get(metric, (metric, 1.0))
    go = _go()
    acc = accuracy[["variant", "backend", metric]].copy()
    df = latency.merge(acc, on=["variant", "backend"], how="inner")
    if df.empty:
        return _empty(title, "no variant has both latency and accuracy")
    df["label"] = _labels(df)
    df["y"] = pd.to_numeric(df[metric], errors="coerce") * scale
    has_blocks = {"p50_lo_ms", "p50_hi_ms"} <= set(df.columns)
    configs = configs or {}
    # labels of neighbouring points alternate above / below, so close points do not overprint
    rank = {lbl: k for k, lbl in enumerate(df.sort_values("p50_ms").label)}
    fig = go.Figure()
    for p in _precisions(df):
        d = df[df.precision.astype(str) == p]
        positions = ["top center" if rank[lbl] % 2 == 0 else "bottom center" for lbl in d.label]
        hover = []
        for r in d.itertuples():
            cfg = configs.get(f"{r.variant}@{r.backend}", {})
            recipe = json.dumps(cfg.get("recipe", {}), default=str)
            if len(recipe) > 300:
                recipe = recipe[:300] + "…"
            hover.append(f"<b>{r.label}</b><br>backend {r.backend}, precision {p}<br>p50 {r.p50_ms:.4f} ms"
                         f"<br>{name}: {r.y:.4f}<br>recipe: {recipe}"
                         + (f"<br>flags: {json.dumps(cfg.get('backend_flags', {}))}" if cfg else ""))
        err = None
        if has_blocks:
            err = {"type": "data", "symmetric": False, "array": (d.p50_hi_ms - d.p50_ms).clip(lower=0).tolist(),
                   "arrayminus": (d.p50_ms - d.p50_lo_ms).clip(lower=0).tolist(), "color": "#555", "width": 5}
        fig.add_trace(go.Scatter(x=d.p50_ms, y=d.y, mode="markers+text", name=p, text=d.label,
                                 textposition=positions, error_x=err,
                                 marker={"color": precision_color(p), "size": 14, "line": {"color": "#222", "width": 1}},
                                 hovertext=hover, hoverinfo="text", cliponaxis=False))
    front = tradeoffs(df, metric)
    if len(front) > 1:
        fig.add_trace(go.Scatter(x=front.p50_ms, y=front.y, mode="lines", name="Pareto front (beyond noise)",
                                 line={"dash": "dash", "color": "#888"}, hoverinfo="skip"))
    else:
        fig.add_annotation(text=f"no trade-off beyond noise (accuracy within {ACCURACY_NOISE.get(metric, 0):g} "
                                f"{'points' if metric == 'top1' else ''}, or latency ranges overlap)".replace(" )", ")"),
                           showarrow=False, x=0, y=1.0, xref="paper", yref="paper", xanchor="left", yanchor="bottom",
                           font={"size": 11, "color": "#666"})
    lo, hi = float(df.y.min()), float(df.y.max())
    span = max(hi - lo, ACCURACY_MIN_SPAN.get(metric, 0.0))
    mid = (lo + hi) / 2
    yr = [mid - span * 0.6, mid + span * 0.6]
    if metric == "top1":
        yr = [max(0.0, yr[0]), min(100.0 + span * 0.15, yr[1])]
    xs = pd.concat([df.p50_ms, df.get("p50_lo_ms", df.p50_ms), df.get("p50_hi_ms", df.p50_ms)])
    xlo, xhi = float(xs.min()), float(xs.max())
    pad = max((xhi - xlo) * 0.15, xhi * 0.05)
    fig.update_xaxes(range=[max(0.0, xlo - pad), xhi + pad])
    fig.update_yaxes(range=yr)
    return _layout(fig, title, "latency p50 (ms)", name, margin={"t": 80, "l": 70, "r": 40, "b": 60})


def layer_error_figure(layerwise: pd.DataFrame, *, metric: str = "snr_db", title: str | None = None):
    """Per-node error of each variant along the topological order (``compare.layerwise`` rows): one line
    per variant coloured by precision; the first diverging node is circled."""
    title = title or f"Per-layer error along the graph ({metric})"
    if layerwise is None or layerwise.empty:
        return _empty(title, "no layerwise comparison")
    go = _go()
    unit = {"snr_db": "SNR (dB, higher is better)", "cosine": "cosine similarity (higher is better)"}.get(metric, metric)
    fig = go.Figure()
    for v in dict.fromkeys(layerwise.variant):
        d = layerwise[layerwise.variant == v].sort_values("order")
        p = str(d.precision.iloc[0])
        y = pd.to_numeric(d[metric], errors="coerce")
        fig.add_trace(go.Scatter(x=d.order, y=y, mode="lines+markers", name=v, legendgroup=p,
                                 line={"color": precision_color(p)}, marker={"color": precision_color(p), "size": 7},
                                 customdata=list(zip(d.onnx_node, d.op_type)),
                                 hovertemplate=f"<b>{v}</b><br>#%{{x}} %{{customdata[0]}} (%{{customdata[1]}})"
                                               f"<br>{metric} %{{y:.4f}}<extra></extra>"))
        first = d[d.first_divergent.astype(bool)] if "first_divergent" in d.columns else d.iloc[0:0]
        if not first.empty:
            fig.add_trace(go.Scatter(x=first.order, y=pd.to_numeric(first[metric], errors="coerce"), mode="markers",
                                     name=f"{v}: first divergent", legendgroup=p, showlegend=False,
                                     marker={"symbol": "circle-open", "size": 18, "color": "#D62728",
                                             "line": {"width": 2}},
                                     hovertemplate=f"first divergent node of {v}<br>%{{x}}<extra></extra>"))
    return _layout(fig, title, "node index in topological order", unit, legend="variant")


# --------------------------------------------------------------------------------------------- builds
def build_figure(builds: pd.DataFrame, *, title: str = "Build time and engine size"):
    """Two panels: build time (s) and artefact size (MiB) per variant. The size is the serialized engine
    when the backend writes one (TensorRT), else the variant's ONNX file (ONNX Runtime)."""
    if builds is None or builds.empty:
        return _empty(title, "no builds")
    go = _go()
    from plotly.subplots import make_subplots

    df = builds[builds.status.isin(["ok", "cached"])].copy()
    if df.empty:
        return _empty(title, "no variant was built")
    df["label"] = _labels(df)
    eng = pd.to_numeric(df.get("engine_bytes"), errors="coerce").fillna(0)
    onnx = pd.to_numeric(df.get("onnx_bytes", pd.Series(0, index=df.index)), errors="coerce").fillna(0)
    df["size_mib"] = eng.where(eng > 0, onnx) / 2**20
    df["artifact"] = ["engine" if e > 0 else "ONNX" for e in eng]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("build time", "engine / ONNX size"))
    for p in _precisions(df):
        d = df[df.precision.astype(str) == p]
        fig.add_trace(go.Bar(x=d.label, y=d.build_time_s, name=p, legendgroup=p, marker_color=precision_color(p),
                             customdata=d.cache_hit, hovertemplate="%{x}<br>%{y:.3f} s (cache hit: %{customdata})"
                                                                   "<extra></extra>"), row=1, col=1)
        fig.add_trace(go.Bar(x=d.label, y=d.size_mib, name=p, legendgroup=p, showlegend=False,
                             marker_color=precision_color(p), customdata=d.artifact,
                             hovertemplate="%{x}<br>%{y:.3f} MiB (%{customdata})<extra></extra>"), row=1, col=2)
    _layout(fig, title, "", "")
    fig.update_yaxes(title_text="build time (s)", row=1, col=1)
    fig.update_yaxes(title_text="size (MiB)", row=1, col=2)
    fig.update_xaxes(title_text="variant", row=1, col=1)
    fig.update_xaxes(title_text="variant", row=1, col=2)
    return fig


#: extra figures of a FlowResult, by name: ``fn(flow_result) -> plotly Figure`` (see :func:`register_figure`)
FIGURES: dict[str, Callable[[Any], Any]] = {}


def register_figure(name: str, fn: Callable[[Any], Any]) -> None:
    """Add a figure ``fn(flow_result) -> Figure`` to :func:`flow_figures` (so the report and the dashboard
    show it), after the built-in ones. See docs/extending.md."""
    FIGURES[str(name)] = fn


def flow_figures(fr: Any, *, top_k: int = 15) -> dict[str, Any]:
    """Every figure of a :class:`~workbench.flow.FlowResult`, by name (report and dashboard order):
    the built-in ones, then the registered ones (:data:`FIGURES`)."""
    order = list(getattr(fr, "node_order", None) or []) or None
    figs = {
        "latency": latency_figure(fr.latency),
        "pareto": pareto_figure(fr.latency, fr.accuracy, configs=fr.variants),
        "layers": layer_figure(fr.layers, top_k=top_k),
        "heatmap": layer_heatmap(fr.layers, order=order),
        "op_share": op_share_figure(fr.layers),
        "layer_error": layer_error_figure(fr.layerwise),
        "builds": build_figure(fr.builds),
    }
    for name, fn in FIGURES.items():
        figs.setdefault(name, fn(fr))
    return figs
