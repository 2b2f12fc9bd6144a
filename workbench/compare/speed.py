"""Why is this variant slower (or faster) than fp32? Attribute the per-layer time difference.

    from workbench.compare.speed import explain_speed
    ex = explain_speed(fp32_layers, int8_layers, variant=int8_variant)   # per-layer profile frames
    ex.table        # tidy: category, op_type, fp32_ms, variant_ms, delta_ms, share_of_delta, onnx_node_count
    ex.summary()    # one line per category: "inserted Cast +0.41 ms", ...
    ex.figure()     # plotly waterfall fp32 total → per-category deltas → variant total

Inputs are the tidy frames of :func:`workbench.measure.layers.profile_layers` (columns ``layer,
layer_type, onnx_nodes, onnx_node, time_ms``) for the fp32 engine and for the variant engine on the same
backend and inputs. Every variant layer's time goes to the ONNX nodes it ran (``onnx_nodes``); a layer that
fused a Q/DQ pair into its compute op counts for the compute op. Categories:

==================  ==============================================================================
lowered             a source node computed at the variant's precision (int8 / fp16 / ...), by op type
kept fp32           a source node the recipe kept in fp32 (``recipe["kept_high_precision"]``)
removed             a source node the variant graph no longer has (e.g. a Relu folded into Q/DQ)
inserted Cast       a Cast the recipe added (not in the fp32 graph), timed as its own layer
unfused Q/DQ        QuantizeLinear / DequantizeLinear that ran as their own layer (not fused)
recipe op           other nodes the recipe added (e.g. SmoothQuant's Mul)
backend overhead    layers the profiler could not map to an ONNX node (layout reorders, copies)
==================  ==============================================================================

``delta_ms`` = variant time − fp32 time of the same nodes (fp32 time of a source node comes from the fp32
profile; inserted nodes have none). The deltas sum to the difference of the two profiles' totals.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
PLUMBING = QDQ_OPS + ("Cast", "CastLike")
CATEGORIES = ("lowered", "kept fp32", "removed", "inserted Cast", "unfused Q/DQ", "recipe op", "backend overhead")
COLUMNS = ["category", "op_type", "fp32_ms", "variant_ms", "delta_ms", "share_of_delta", "onnx_node_count"]


def _nodes_of(row) -> list[str]:
    nodes = row.get("onnx_nodes")
    if nodes is None or (isinstance(nodes, float)):
        nodes = []
    if isinstance(nodes, str):
        nodes = [x for x in nodes.replace(";", ",").split(",") if x]
    nodes = list(nodes)
    if not nodes and isinstance(row.get("onnx_node"), str) and not row["onnx_node"].startswith("<"):
        nodes = [row["onnx_node"]]
    return nodes


def _per_node(df, op_of: dict[str, str]) -> tuple[dict[str, float], float]:
    """node → time (ms) from a layer frame; a fused layer's time goes to its compute (non-plumbing) nodes;
    unmapped time is returned separately."""
    per: dict[str, float] = {}
    unmapped = 0.0
    for row in df.to_dict(orient="records"):
        t = row.get("time_ms")
        t = float(t) if t is not None and math.isfinite(float(t)) else 0.0  # a row with no time adds nothing
        nodes = _nodes_of(row)
        if not nodes:
            unmapped += t
            continue
        compute = [n for n in nodes if op_of.get(n) not in PLUMBING]
        anchor = row.get("onnx_node")
        # a fused layer (Conv+Relu, QLinearConv with its Q/DQ) counts for its anchor node when that computes
        targets = [anchor] if anchor in compute else (compute or nodes)
        for n in targets:
            per[n] = per.get(n, 0.0) + t / len(targets)
    return per, unmapped


@dataclass
class SpeedAttribution:
    """The attribution table and the totals it reconciles."""

    table: Any  # pandas DataFrame, COLUMNS
    fp32_total_ms: float
    variant_total_ms: float
    variant: str = ""
    precision: str = ""

    @property
    def delta_ms(self) -> float:
        return self.variant_total_ms - self.fp32_total_ms

    @property
    def speedup(self) -> float:
        return self.fp32_total_ms / self.variant_total_ms if self.variant_total_ms > 0 else float("nan")

    def by_category(self):
        """delta_ms (and fp32/variant ms) per category, in :data:`CATEGORIES` order."""
        import pandas as pd
        g = self.table.groupby("category")[["fp32_ms", "variant_ms", "delta_ms"]].sum()
        g = g.reindex([c for c in CATEGORIES if c in g.index])
        return g.reset_index() if len(g) else pd.DataFrame(columns=["category", "fp32_ms", "variant_ms", "delta_ms"])

    def summary(self) -> list[str]:
        """Plain sentences: the verdict, then each category's contribution (largest first)."""
        word = "faster" if self.delta_ms < 0 else "slower"
        lines = [f"{self.variant or 'variant'} ({self.precision}) is {abs(self.delta_ms):.3g} ms {word} than fp32 "
                 f"({self.fp32_total_ms:.3g} → {self.variant_total_ms:.3g} ms per run, {self.speedup:.2f}x)"]
        cat = self.by_category()
        for r in sorted(cat.to_dict(orient="records"), key=lambda r: -abs(r["delta_ms"])):
            if abs(r["delta_ms"]) < 1e-9:
                continue
            top = self.table[self.table.category == r["category"]].sort_values("delta_ms", key=abs, ascending=False)
            ops = ", ".join(f"{o} {d:+.3g}" for o, d in zip(top.op_type.head(3), top.delta_ms.head(3)))
            lines.append(f"{r['category']}: {r['delta_ms']:+.3g} ms ({ops})")
        return lines

    def to_json(self) -> dict:
        from .metrics import json_number
        return {"variant": self.variant, "precision": self.precision, "fp32_total_ms": self.fp32_total_ms,
                "variant_total_ms": self.variant_total_ms, "delta_ms": self.delta_ms,
                "speedup": json_number(self.speedup), "summary": self.summary(),
                "rows": [{k: json_number(v) for k, v in r.items()} for r in self.table.to_dict(orient="records")]}

    def figure(self, top: int = 12):
        """Plotly waterfall: fp32 total, the ``top`` largest (category, op type) deltas, the rest, variant total."""
        import plotly.graph_objects as go

        t = self.table.sort_values("delta_ms", key=abs, ascending=False)
        head, rest = t.head(top), t.iloc[top:]
        labels = ["fp32 total"] + [f"{c}: {o}" for c, o in zip(head.category, head.op_type)]
        values = [self.fp32_total_ms] + list(head.delta_ms)
        measure = ["absolute"] + ["relative"] * len(head)
        if len(rest):
            labels.append(f"{len(rest)} more")
            values.append(float(rest.delta_ms.sum()))
            measure.append("relative")
        labels.append(f"{self.precision or 'variant'} total")
        values.append(self.variant_total_ms)
        measure.append("total")
        fig = go.Figure(go.Waterfall(x=labels, y=values, measure=measure,
                                     decreasing={"marker": {"color": "#2a9d8f"}},
                                     increasing={"marker": {"color": "#e76f51"}},
                                     totals={"marker": {"color": "#264653"}}))
        fig.update_layout(title=f"Why {self.variant or self.precision} is {'faster' if self.delta_ms < 0 else 'slower'}"
                                f" than fp32 ({self.speedup:.2f}x)", yaxis_title="ms per run",
                          template="plotly_white", showlegend=False, margin={"l": 60, "r": 20, "t": 60, "b": 120})
        return fig


def explain_speed(fp32_layers, variant_layers, *, variant: Any = None, model: Any = None,
                  kept: Iterable[str] | None = None, source_nodes: Iterable[str] | None = None,
                  precision: str | None = None) -> SpeedAttribution:
    """Attribute ``variant total − fp32 total`` (per-layer profiles) to op types, inserted Casts, unfused
    Q/DQ pairs and layers kept in fp32. ``variant``: the :class:`~workbench.variant.Variant` (its graph gives
    node op types and the source node names; its recipe the kept list); or give ``kept`` / ``source_nodes``.
    ``model``: the fp32 model (op types of nodes the variant removed)."""
    import pandas as pd

    op_of: dict[str, str] = {}
    variant_nodes: set[str] | None = None
    if model is not None:
        from ..model import load
        for n in load(model).proto.graph.node:
            if n.name:
                op_of[n.name] = n.op_type
    if variant is not None:
        variant_nodes = {n.name for n in variant.model.proto.graph.node if n.name}
        for n in variant.model.proto.graph.node:
            if n.name:
                op_of[n.name] = n.op_type
        rec = variant.recipe or {}
        kept = set(kept or rec.get("kept_high_precision", []) or [])
        precision = precision or variant.precision
    kept = set(kept or [])
    # op types the profiles report for nodes we have no graph for
    for df in (fp32_layers, variant_layers):
        for row in df.to_dict(orient="records"):
            nodes = _nodes_of(row)
            if len(nodes) == 1 and nodes[0] not in op_of and isinstance(row.get("layer_type"), str):
                op_of[nodes[0]] = row["layer_type"]
    f32, f32_unmapped = _per_node(fp32_layers, op_of)
    var, var_unmapped = _per_node(variant_layers, op_of)
    src = set(source_nodes) if source_nodes is not None else set(f32)
    acc: dict[tuple[str, str], dict] = {}

    def add(cat: str, op: str, a: float, b: float, node: str | None) -> None:
        r = acc.setdefault((cat, op), {"fp32_ms": 0.0, "variant_ms": 0.0, "onnx_node_count": 0})
        r["fp32_ms"] += a
        r["variant_ms"] += b
        r["onnx_node_count"] += 1 if node else 0

    for node in set(f32) | set(var):
        op = op_of.get(node, "?")
        a, b = f32.get(node, 0.0), var.get(node, 0.0)
        if node in src and node in f32 and variant_nodes is not None and node not in variant_nodes:
            cat = "removed"
        elif node in src and node in f32:
            cat = "kept fp32" if node in kept else "lowered"
        elif op == "Cast":
            cat = "inserted Cast"
        elif op in QDQ_OPS:
            cat = "unfused Q/DQ"
        elif node in src:
            cat = "kept fp32" if node in kept else "lowered"
        else:
            cat = "recipe op"
        add(cat, op, a, b, node)
    if f32_unmapped or var_unmapped:
        add("backend overhead", "(unmapped)", f32_unmapped, var_unmapped, None)
    rows = [{"category": c, "op_type": o, **v, "delta_ms": v["variant_ms"] - v["fp32_ms"]} for (c, o), v in acc.items()]
    df = pd.DataFrame(rows, columns=["category", "op_type", "fp32_ms", "variant_ms", "delta_ms", "onnx_node_count"])
    f_total = float(fp32_layers["time_ms"].sum()) if len(fp32_layers) else 0.0
    v_total = float(variant_layers["time_ms"].sum()) if len(variant_layers) else 0.0
    delta = v_total - f_total
    df["share_of_delta"] = df["delta_ms"] / delta if abs(delta) > 1e-12 else 0.0
    df = df[COLUMNS].sort_values("delta_ms", key=abs, ascending=False, kind="stable").reset_index(drop=True)
    name = getattr(variant, "name", "") if variant is not None else ""
    return SpeedAttribution(df, f_total, v_total, variant=name, precision=precision or "")


def explain_profiles(layers, *, reference: str = "fp32", variants: dict | None = None,
                     model: Any = None) -> dict[str, SpeedAttribution]:
    """For a combined layer frame (column ``precision`` or ``variant``): one :class:`SpeedAttribution` per
    non-reference variant against the ``reference`` precision's rows, on the same backend.
    ``variants``: variant name → :class:`~workbench.variant.Variant` (for kept lists and op types)."""
    out: dict[str, SpeedAttribution] = {}
    if layers is None or not len(layers):
        return out
    for backend, sub in layers.groupby("backend", sort=False) if "backend" in layers.columns else [("", layers)]:
        ref = sub[sub.precision == reference]
        if ref.empty:
            continue
        for name, v in sub[sub.precision != reference].groupby("variant", sort=False):
            var = (variants or {}).get(name)
            key = f"{name}@{backend}" if backend else name
            out[key] = explain_speed(ref, v, variant=var, model=model, precision=str(v.precision.iloc[0]))
    return out


def explain_flow(fr) -> dict[str, SpeedAttribution]:
    """:func:`explain_profiles` for a :class:`~workbench.flow.FlowResult` (its ``layers`` frame, the variants
    of its build sets, its model): one attribution per non-fp32 variant and backend."""
    variants: dict = {}
    for bs in getattr(fr, "buildsets", None) or []:
        variants.update(getattr(bs, "variants", {}) or {})
    return explain_profiles(getattr(fr, "layers", None), variants=variants, model=getattr(fr, "model", None))


def attribution_frame(explanations: dict[str, SpeedAttribution]):
    """One tidy frame of several attributions: ``variant, precision, fp32_total_ms, variant_total_ms`` + COLUMNS
    (for the report's and dashboard's tables)."""
    import pandas as pd

    frames = []
    for key, ex in explanations.items():
        t = ex.table.copy()
        t.insert(0, "variant", key)
        t.insert(1, "precision", ex.precision)
        t["fp32_total_ms"] = ex.fp32_total_ms
        t["variant_total_ms"] = ex.variant_total_ms
        frames.append(t)
    cols = ["variant", "precision", *COLUMNS, "fp32_total_ms", "variant_total_ms"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


def speed_section_html(fr, table_html, *, max_figures: int = 4) -> str:
    """The report section "Why faster / slower than fp32" for a FlowResult: per variant the summary sentences
    and a waterfall, then the tidy attribution table. Empty string when there is nothing to attribute (no
    per-layer profiles, no fp32 reference on the backend); an attribution error is shown, not raised."""
    import html

    try:
        ex = explain_flow(fr)
    except Exception as e:  # noqa: BLE001 - a report section must not break the report
        return f"<h3>Why faster / slower than fp32</h3><p class='err'>attribution failed: {html.escape(str(e))}</p>"
    if not ex:
        return ""
    parts = ["<h3 id='why-speed'>Why faster / slower than fp32</h3>",
             "<p class='meta'>per-layer time of each variant minus fp32 on the same backend, attributed to the "
             "ONNX nodes each layer ran (workbench.compare.speed.explain_flow)</p>"]
    for i, (key, a) in enumerate(ex.items()):
        lines = a.summary()
        parts.append(f"<p><b>{html.escape(lines[0])}</b></p><ul>"
                     + "".join(f"<li>{html.escape(x)}</li>" for x in lines[1:]) + "</ul>")
        if i < max_figures:
            parts.append("<div class='figure'>" + a.figure().to_html(
                full_html=False, include_plotlyjs=False, div_id=f"fig-why-{i}",
                config={"displaylogo": False, "responsive": True}) + "</div>")
    parts.append(table_html(attribution_frame(ex), max_rows=80))
    return "\n".join(parts)
