"""Colour scales for graph overlays: gradients between stops and discrete threshold bins."""
from __future__ import annotations

from .errors import UsageError

#: colour stops (low → high). "traffic": green → yellow → red (latency, error); "viridis"; "blues".
COLORMAPS: dict[str, list[str]] = {
    "traffic": ["#1a9850", "#91cf60", "#fee08b", "#fc8d59", "#d73027"],
    "viridis": ["#440154", "#3b528b", "#21918c", "#5ec962", "#fde725"],
    "blues": ["#deebf7", "#9ecae1", "#4292c6", "#08519c", "#08306b"],
}


def _stops(colormap: str | list[str]) -> list[str]:
    if isinstance(colormap, (list, tuple)):
        if len(colormap) < 2:
            raise UsageError("a custom colormap needs at least two colours")
        return list(colormap)
    try:
        return COLORMAPS[colormap]
    except KeyError:
        raise UsageError(f"unknown colormap {colormap!r}; choose from {', '.join(COLORMAPS)} "
                         "or give a list of '#rrggbb' colours") from None


def _rgb(h: str) -> tuple[int, int, int]:
    h = h.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def sample(colormap, t: float) -> str:
    """Colour at ``t`` in [0, 1] (clamped), linear between stops."""
    stops = _stops(colormap)
    t = min(1.0, max(0.0, t))
    x = t * (len(stops) - 1)
    k = min(int(x), len(stops) - 2)
    f = x - k
    a, b = _rgb(stops[k]), _rgb(stops[k + 1])
    return "#" + "".join(f"{round(a[j] + (b[j] - a[j]) * f):02x}" for j in range(3))


def gradient_color(x: float, lo: float, hi: float, colormap) -> str:
    return sample(colormap, 0.0 if hi <= lo else (x - lo) / (hi - lo))


def bin_index(x: float, thresholds: list[float]) -> int:
    """0 below the first threshold, len(thresholds) at or above the last."""
    k = 0
    while k < len(thresholds) and x >= thresholds[k]:
        k += 1
    return k


def bin_colors(x: float, thresholds: list[float], colormap) -> str:
    n = len(thresholds)
    return sample(colormap, bin_index(x, thresholds) / n)


def legend(label: str, lo: float, hi: float, thresholds: list[float] | None, colormap, agg: str,
           labels: list[str] | None = None) -> dict:
    """What the legend shows: a gradient (lo, hi, stops) or bins with their ranges (or ``labels``, one per
    bin, e.g. what each severity means) and colours."""
    if thresholds is None:
        return {"label": label, "kind": "gradient", "lo": lo, "hi": hi,
                "stops": [sample(colormap, k / 8) for k in range(9)], "agg": agg}
    edges = [None] + list(thresholds) + [None]
    items = []
    for k in range(len(thresholds) + 1):
        a, b = edges[k], edges[k + 1]
        text = f"< {b:g}" if a is None else (f"≥ {a:g}" if b is None else f"{a:g} – {b:g}")
        if labels is not None:
            text = str(labels[k])
        items.append({"label": text, "color": sample(colormap, k / len(thresholds))})
    return {"label": label, "kind": "bins", "items": items, "agg": agg}
