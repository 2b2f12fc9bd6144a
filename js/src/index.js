// workbench graph viewer: anywidget ESM (render) + standalone page (mountStandalone).
// State lives in a model with get/set/on/save_changes: the Python widget's traitlets, or the
// LocalModel shim (local.js) in the offline HTML page. Both feed the same render().
import { layout } from "./layout.js";
import { LocalModel } from "./local.js";

const OP_COLORS = {
  Conv: "#dbe9f6", ConvTranspose: "#dbe9f6", Gemm: "#dbe9f6", MatMul: "#dbe9f6", MatMulInteger: "#dbe9f6",
  QLinearConv: "#dbe9f6", QLinearMatMul: "#dbe9f6",
  Relu: "#fde2e1", Sigmoid: "#fde2e1", Tanh: "#fde2e1", Gelu: "#fde2e1", Softmax: "#fde2e1", Erf: "#fde2e1",
  BatchNormalization: "#e3f1df", LayerNormalization: "#e3f1df", InstanceNormalization: "#e3f1df",
  QuantizeLinear: "#efe3f6", DequantizeLinear: "#efe3f6",
  Reshape: "#eeeeee", Transpose: "#eeeeee", Concat: "#eeeeee", Split: "#eeeeee", Gather: "#eeeeee",
  Slice: "#eeeeee", Squeeze: "#eeeeee", Unsqueeze: "#eeeeee", Flatten: "#eeeeee", Shape: "#eeeeee",
  Constant: "#f6f1dc", ConstantOfShape: "#f6f1dc", Input: "#fff3c4", Output: "#fff3c4",
};
const GROUP_FILL = "#f3f0ff";

function h(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of kids) if (c != null) e.append(c.nodeType ? c : document.createTextNode(String(c)));
  return e;
}

function fmt(v) {
  if (v === null || v === undefined || (typeof v === "number" && Number.isNaN(v))) return "–";
  if (typeof v !== "number") return String(v);
  if (v !== 0 && (Math.abs(v) < 1e-3 || Math.abs(v) >= 1e5)) return v.toExponential(3);
  return String(Math.round(v * 1e4) / 1e4);
}

function render({ model, el }) {
  const root = h("div", { class: "wbg-root" });
  root.style.height = (model.get("height") || 600) + "px";
  el.append(root);
  const title = h("span", { class: "wbg-title" });
  const search = h("input", { class: "wbg-search", type: "search", placeholder: "search name or op type…" });
  const results = h("div", { class: "wbg-results" });
  const btn = (label, tip, fn) => h("button", { class: "wbg-btn", title: tip, onclick: fn }, label);
  const toolbar = h("div", { class: "wbg-toolbar" }, title,
    h("span", { class: "wbg-searchbox" }, search, results),
    btn("Fit", "fit the graph in the view", () => { fit(); }),
    btn("+", "zoom in", () => zoomBy(1.25)),
    btn("−", "zoom out", () => zoomBy(0.8)),
    btn("Upstream", "highlight what feeds the selection", () => highlight(-1)),
    btn("Downstream", "highlight what the selection feeds", () => highlight(1)),
    btn("Clear", "clear selection and highlights", () => { hl = new Set(); setSelected([]); draw(); }),
    btn("Collapse all", "collapse every group", () => { needFit = true; setExpanded([]); }),
  );
  const canvas = h("canvas", { class: "wbg-canvas" });
  const legend = h("div", { class: "wbg-legend" });
  const status = h("div", { class: "wbg-status" });
  const stage = h("div", { class: "wbg-stage" }, canvas, legend, status);
  const panel = h("div", { class: "wbg-panel" }, h("div", { class: "wbg-hint" }, "Click a node for its details; double-click a group to open it."));
  root.append(toolbar, h("div", { class: "wbg-main" }, stage, panel));
  const ctx = canvas.getContext("2d");

  let view = null, L = null, items = [], byId = new Map(), frames = [];
  let scale = 1, tx = 0, ty = 0, cssW = 1, cssH = 1;
  let selectedIds = new Set(), hl = new Set(), matches = new Set();
  let grid = null, pending = false, firstPaint = false, lastDrawn = 0;
  // needFit: fit the graph as soon as the canvas has a real size (set while hidden: another tab, a
  // cell not yet on screen, and by Collapse all). lastSig: the boxes of the last layout.
  let needFit = true, fitted = 0, lastSig = "";
  const t0 = performance.now();
  const hook = {
    get nodeCount() { return items.length; },
    get drawnCount() { return lastDrawn; },
    get totalNodes() { return view ? view.n_nodes : 0; },
    items: () => items.map((it) => ({ i: it.i, name: it.n, op: it.o, kind: it.k, id: it.id })),
    screenPos: (name) => {
      const it = items.find((t) => t.n === name || t.id === name);
      if (!it) return null;
      const r = canvas.getBoundingClientRect();
      return { x: r.left + it.x * scale + tx, y: r.top + it.y * scale + ty };
    },
    center: (name) => { const it = items.find((t) => t.n === name || t.id === name); if (it) centerOn(it); return !!it; },
    select: (name) => setSelected([name]),
    toggle: (gid) => new Promise((res) => { afterLayout = res; toggleGroup(gid); }),
    fit: () => fit(),
    // what the Upstream / Downstream buttons highlighted: node names, "input:x" / "output:y", group ids
    highlighted: () => [...hl].map((i) => byId.get(i)).filter(Boolean).map((it) => (it.k === "group" ? it.id : it.n)),
    expanded: () => [...(model.get("expanded") || [])],
    selected: () => [...(model.get("selected") || [])],
    get fits() { return fitted; },
    get scale() { return scale; },
    visibleBox: () => visibleBox(),
  };
  let afterLayout = null;
  window.__wbgraphs = window.__wbgraphs || [];
  window.__wbgraphs.push(hook);
  window.__wbgraph = hook;

  // ------------------------------------------------------------------ state from the model
  function setExpanded(list) {
    model.set("expanded", list);
    model.save_changes();
  }
  function setSelected(names) {
    selectedIds = new Set(items.filter((it) => names.includes(it.n) && it.k !== "group").map((it) => it.i));
    model.set("selected", names);
    model.save_changes();
    draw();
  }
  function toggleGroup(gid) {
    const cur = model.get("expanded") || [];
    if (cur.includes(gid)) setExpanded(cur.filter((g) => g !== gid && !g.startsWith(gid + "/")));
    else setExpanded([...cur, gid]);
  }

  function onView() {
    view = model.get("_view");
    if (!view || !view.items) return;
    title.textContent = `${view.title} · ${view.n_nodes.toLocaleString()} nodes`;
    const keepCenter = items.length > 0;
    const cx = (cssW / 2 - tx) / scale, cy = (cssH / 2 - ty) / scale;
    items = view.items.map((it) => ({ ...it }));
    L = layout(items, view.edges, new Map(view.frames.map((f) => [f.i, f.p])));
    byId = new Map();
    items.forEach((it, k) => { it.x = L.x[k]; it.y = L.y[k]; it.w = L.w[k]; it.h = L.h[k]; byId.set(it.i, it); });
    // frames of open groups: the bounding box of their members (nested frames include children)
    const fmap = new Map(view.frames.map((f) => [f.i, { ...f, x0: Infinity, y0: Infinity, x1: -Infinity, y1: -Infinity, depth: 0 }]));
    for (const f of fmap.values()) { let p = f.p, d = 0; while (p >= 0 && fmap.has(p)) { d++; p = fmap.get(p).p; } f.depth = d; }
    // a frame wraps its own items, then (deepest first) each frame grows its parent: nested labels
    // get their own line instead of overlapping
    for (const it of items) {
      const f = fmap.get(it.p);
      if (!f) continue;
      f.x0 = Math.min(f.x0, it.x - it.w / 2); f.x1 = Math.max(f.x1, it.x + it.w / 2);
      f.y0 = Math.min(f.y0, it.y - it.h / 2); f.y1 = Math.max(f.y1, it.y + it.h / 2);
    }
    frames = [...fmap.values()].sort((a, b) => b.depth - a.depth);
    for (const f of frames) {
      if (f.x0 === Infinity) continue;
      f.x0 -= 8; f.x1 += 8; f.y0 -= 14; f.y1 += 6;
      const p = fmap.get(f.p);
      if (p) { p.x0 = Math.min(p.x0, f.x0); p.x1 = Math.max(p.x1, f.x1); p.y0 = Math.min(p.y0, f.y0); p.y1 = Math.max(p.y1, f.y1); }
    }
    frames = frames.filter((f) => f.x0 < Infinity).reverse();
    const sel = model.get("selected") || [];
    selectedIds = new Set(items.filter((it) => sel.includes(it.n) && it.k !== "group").map((it) => it.i));
    buildGrid();
    // a new set of boxes (first view, a group opened or closed, Collapse all, another model version):
    // fit the whole graph; the same boxes recoloured (an overlay): keep the user's pan and zoom
    const sig = items.map((it) => it.id === undefined ? it.i : it.id).join("|");
    if (!keepCenter || needFit || sig !== lastSig) fit();
    else { tx = cssW / 2 - cx * scale; ty = cssH / 2 - cy * scale; }
    lastSig = sig;
    status.textContent = `${items.length.toLocaleString()} items · ${view.edges.length.toLocaleString()} edges drawn from ${view.n_nodes.toLocaleString()} nodes`;
    drawNow();
    root.dataset.items = String(items.length);
    if (afterLayout) { const f = afterLayout; afterLayout = null; f(items.length); }
  }

  function onLegend() {
    const lg = model.get("legend");
    legend.replaceChildren();
    if (!lg || !lg.kind) { legend.style.display = "none"; return; }
    legend.style.display = "block";
    legend.append(h("div", { class: "wbg-legend-title" }, lg.label + (lg.agg ? ` (groups: ${lg.agg})` : "")));
    if (lg.kind === "gradient") {
      const bar = h("div", { class: "wbg-gradient" });
      bar.style.background = `linear-gradient(to right, ${lg.stops.join(",")})`;
      legend.append(bar, h("div", { class: "wbg-gradient-labels" }, h("span", {}, fmt(lg.lo)), h("span", {}, fmt(lg.hi))));
    } else {
      for (const it of lg.items) {
        const sw = h("span", { class: "wbg-swatch" });
        sw.style.background = it.color;
        legend.append(h("div", { class: "wbg-legend-item" }, sw, it.label));
      }
    }
  }

  function onDetails() {
    const d = model.get("_details");
    panel.replaceChildren();
    if (!d || d.name === undefined) {
      panel.append(h("div", { class: "wbg-hint" }, "Click a node for its details; double-click a group to open it."));
      return;
    }
    panel.append(h("div", { class: "wbg-d-op" }, (d.op || d.kind || "node") + (d.status ? ` · ${d.status}` : "")),
      h("div", { class: "wbg-d-name", title: d.name }, d.name));
    if (d.scope) panel.append(h("div", { class: "wbg-d-scope" }, d.scope));
    if (d.overlay) panel.append(h("div", { class: "wbg-d-overlay" }, `${d.overlay.label}: ${fmt(d.overlay.value)}`));
    if (d.overlay && d.overlay.note) panel.append(h("div", { class: "wbg-d-note" }, d.overlay.note));
    const table = (rows) => h("table", { class: "wbg-d-table" }, ...rows.map((r) => h("tr", {}, ...r.map((c) => h("td", {}, c)))));
    const attrs = Object.entries(d.attributes || {}).map(([k, v]) => [k, v === null || v === undefined ? "–" : String(v)]);
    if (attrs.length) panel.append(h("h4", {}, "Attributes"), table(attrs));
    const tensorRows = (list, out) => list.map((t) => {
      const shape = Array.isArray(t.shape) ? "[" + t.shape.map((x) => (x === null || x === undefined || x === "" ? "?" : x)).join(", ") + "]" : "shape unknown";
      let extra = "";
      if (t.stats && t.stats.min !== undefined) extra = `min ${fmt(t.stats.min)} max ${fmt(t.stats.max)} mean ${fmt(t.stats.mean)} std ${fmt(t.stats.std)} zeros ${fmt(t.stats.zeros * 100)}%`;
      else if (t.stats && t.stats.skipped) extra = `stats skipped: ${t.stats.skipped}`;
      const who = out ? (t.consumers && t.consumers.length ? "→ " + t.consumers.slice(0, 4).join(", ") + (t.consumers.length > 4 ? " …" : "") : "")
        : (t.initializer ? "initializer" : (t.producer ? "← " + t.producer : "graph input"));
      return [h("span", { class: "wbg-tname", title: t.name }, t.name), `${t.dtype && t.dtype !== "?" ? t.dtype : "dtype unknown"} ${shape}`, h("span", { class: "wbg-small" }, [who, extra].filter(Boolean).join(" · "))];
    });
    if ((d.inputs || []).length) panel.append(h("h4", {}, "Inputs"), table(tensorRows(d.inputs, false)));
    if ((d.outputs || []).length) panel.append(h("h4", {}, "Outputs"), table(tensorRows(d.outputs, true)));
  }

  function showGroup(it) {
    panel.replaceChildren(
      h("div", { class: "wbg-d-op" }, `group · ${it.gk}`),
      h("div", { class: "wbg-d-name", title: it.id }, it.n),
      h("div", { class: "wbg-d-scope" }, it.id),
      h("div", {}, `${it.size.toLocaleString()} nodes: ${it.ops}`),
      it.v !== undefined ? h("div", { class: "wbg-d-overlay" }, `${(model.get("legend") || {}).label || "value"}: ${fmt(it.v)}`) : null,
      h("button", { class: "wbg-btn", onclick: () => toggleGroup(it.id) }, "Expand"));
    panel.dataset.group = it.id;
  }

  // ------------------------------------------------------------------ drawing
  function resize() {
    const r = canvas.getBoundingClientRect();
    const wasHidden = cssW <= 8 || cssH <= 8;
    cssW = Math.max(1, r.width); cssH = Math.max(1, r.height);
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(cssW * dpr); canvas.height = Math.round(cssH * dpr);
    if ((needFit || wasHidden) && visible()) fit(); else draw();
  }
  const MIN_LABEL_PX = 10;  // labels are never drawn smaller than this on screen
  function bounds() {
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (const it of items) {
      x0 = Math.min(x0, it.x - it.w / 2); x1 = Math.max(x1, it.x + it.w / 2);
      y0 = Math.min(y0, it.y - it.h / 2); y1 = Math.max(y1, it.y + it.h / 2);
    }
    for (const f of frames) { x0 = Math.min(x0, f.x0); x1 = Math.max(x1, f.x1); y0 = Math.min(y0, f.y0); y1 = Math.max(y1, f.y1); }
    return [x0, y0, x1, y1];
  }
  function visible() { const r = canvas.getBoundingClientRect(); return r.width > 8 && r.height > 8 && canvas.isConnected; }
  function fitScale() {
    if (!items.length) return 1;
    const [x0, y0, x1, y1] = bounds();
    return Math.min(1.5, (cssW - 24) / Math.max(1, x1 - x0), (cssH - 24) / Math.max(1, y1 - y0));
  }
  // the whole graph in the canvas, both dimensions (labels keep a minimum size, see drawNow)
  function fit() {
    if (!items.length) return;
    if (!visible()) { needFit = true; return; }  // hidden (another tab, collapsed output): fit when shown
    const r = canvas.getBoundingClientRect();
    cssW = r.width; cssH = r.height;
    const [x0, y0, x1, y1] = bounds();
    scale = Math.max(0.02, fitScale());
    tx = cssW / 2 - ((x0 + x1) / 2) * scale;
    ty = cssH / 2 - ((y0 + y1) / 2) * scale;
    needFit = false;
    fitted++;
    root.dataset.fits = String(fitted);
    draw();
  }
  function visibleBox() {
    const r = canvas.getBoundingClientRect();
    const [x0, y0, x1, y1] = bounds();
    return { canvas: { left: r.left, top: r.top, right: r.right, bottom: r.bottom },
      graph: { left: r.left + x0 * scale + tx, top: r.top + y0 * scale + ty, right: r.left + x1 * scale + tx, bottom: r.top + y1 * scale + ty },
      scale, fits: fitted };
  }
  function zoomBy(f, px = cssW / 2, py = cssH / 2) {
    const ns = Math.min(4, Math.max(0.01, scale * f));
    tx = px - (px - tx) * (ns / scale); ty = py - (py - ty) * (ns / scale); scale = ns;
    draw();
  }
  function centerOn(it) { tx = cssW / 2 - it.x * scale; ty = cssH / 2 - it.y * scale; draw(); }
  function draw() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; drawNow(); });
  }
  function drawNow() {
    const dpr = window.devicePixelRatio || 1;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    if (!L) return;
    ctx.setTransform(dpr * scale, 0, 0, dpr * scale, dpr * tx, dpr * ty);
    const vx0 = -tx / scale, vy0 = -ty / scale, vx1 = (cssW - tx) / scale, vy1 = (cssH - ty) / scale;
    const inView = (a, b, c, d) => c >= vx0 && a <= vx1 && d >= vy0 && b <= vy1;
    // labels: natural size when zoomed in, never below MIN_LABEL_PX on screen; hidden only when the
    // boxes themselves are too small to hold one line
    const text = scale * 28 >= MIN_LABEL_PX + 1;
    const px = (n) => Math.max(n, MIN_LABEL_PX / scale);
    // frames
    for (const f of frames) {
      if (!inView(f.x0, f.y0, f.x1, f.y1)) continue;
      ctx.fillStyle = f.depth % 2 ? "rgba(120,100,200,0.06)" : "rgba(120,100,200,0.08)";
      ctx.strokeStyle = "rgba(120,100,200,0.45)";
      ctx.lineWidth = 1 / Math.max(scale, 0.5);
      ctx.fillRect(f.x0, f.y0, f.x1 - f.x0, f.y1 - f.y0);
      ctx.strokeRect(f.x0, f.y0, f.x1 - f.x0, f.y1 - f.y0);
      // a frame's name needs its 14-unit header to hold a 10 px label; smaller, the boxes inside speak
      if (scale * 14 >= MIN_LABEL_PX) { ctx.fillStyle = "#5a4a9c"; ctx.font = `${px(10)}px sans-serif`; ctx.textBaseline = "top"; ctx.fillText(clip("▾ " + f.l, f.x1 - f.x0, px(10)), f.x0 + 3, f.y0 + 1); }
    }
    // edges
    ctx.lineWidth = 1 / Math.max(scale, 0.6);
    for (const p of L.paths) {
      const b = p.box;
      if (!inView(b[0], b[1], b[2], b[3])) continue;
      const hot = hl.has(items[p.a].i) && hl.has(items[p.b].i);
      ctx.strokeStyle = hot ? "#e07b00" : "#9aa0a6";
      ctx.lineWidth = (hot ? 2.2 : p.e[2] > 1 ? 1.6 : 1) / Math.max(scale, 0.6);
      const q = p.pts;
      ctx.beginPath();
      ctx.moveTo(q[0], q[1]);
      if (q.length === 4) {
        const my = (q[1] + q[3]) / 2;
        ctx.bezierCurveTo(q[0], my, q[2], my, q[2], q[3]);
      } else {
        for (let j = 2; j < q.length - 2; j += 2) {
          const mx = (q[j] + q[j + 2]) / 2, my = (q[j + 1] + q[j + 3]) / 2;
          ctx.quadraticCurveTo(q[j], q[j + 1], mx, my);
        }
        ctx.lineTo(q[q.length - 2], q[q.length - 1]);
      }
      ctx.stroke();
      // arrow head
      if (scale > 0.25) {
        const ex = q[q.length - 2], ey = q[q.length - 1], dir = q[q.length - 1] >= q[q.length - 3] ? 1 : -1;
        ctx.fillStyle = ctx.strokeStyle;
        ctx.beginPath(); ctx.moveTo(ex, ey); ctx.lineTo(ex - 3.5, ey - 7 * dir); ctx.lineTo(ex + 3.5, ey - 7 * dir); ctx.fill();
      }
      if (text && scale > 0.8 && p.e[2] > 1) {
        ctx.fillStyle = "#666"; ctx.font = `${px(10)}px sans-serif`; ctx.textBaseline = "middle";
        ctx.fillText("×" + p.e[2], (q[0] + q[q.length - 2]) / 2 + 4, (q[1] + q[q.length - 1]) / 2);
      }
    }
    // nodes
    let drawn = 0;
    ctx.textBaseline = "middle";
    ctx.textAlign = "center";
    for (const it of items) {
      const x0 = it.x - it.w / 2, y0 = it.y - it.h / 2;
      if (!inView(x0, y0, x0 + it.w, y0 + it.h)) continue;
      drawn++;
      const group = it.k === "group";
      ctx.fillStyle = it.c || (group ? GROUP_FILL : OP_COLORS[it.o] || "#f5f7fa");
      ctx.beginPath();
      if (ctx.roundRect) ctx.roundRect(x0, y0, it.w, it.h, group ? 7 : 5); else ctx.rect(x0, y0, it.w, it.h);
      ctx.fill();
      const sel = selectedIds.has(it.i), hot = hl.has(it.i), found = matches.has(it.i);
      ctx.lineWidth = (sel ? 3 : hot || found ? 2.4 : group ? 1.4 : 1) / Math.max(scale, 0.5);
      ctx.strokeStyle = sel ? "#1565c0" : found ? "#d4a000" : hot ? "#e07b00" : group ? "#7b68c8" : "#8a94a0";
      if (it.s === "removed") ctx.setLineDash([4, 3]);
      ctx.stroke();
      ctx.setLineDash([]);
      if (!text) continue;
      ctx.fillStyle = it.c && darkish(it.c) ? "#ffffff" : "#1d2125";
      if (group) {
        const big = px(12), small = px(10);
        ctx.font = `bold ${big}px sans-serif`;
        ctx.fillText(clip(it.n, it.w, big), it.x, it.y - (small * 0.9 > 9 ? small * 0.9 : 8));
        ctx.font = `${small}px sans-serif`;
        ctx.fillText(clip(`${it.size.toLocaleString()} · ${it.ops}`, it.w, small), it.x, it.y + (small > 10 ? small : 9));
      } else {
        const f = px(12);
        ctx.font = `${f}px sans-serif`;
        ctx.fillText(clip(it.o, it.w, f), it.x, it.y);
      }
    }
    ctx.textAlign = "start";
    lastDrawn = drawn;
    root.dataset.drawnNodes = String(drawn);
    root.dataset.labelPx = text ? String(Math.round(Math.max(12 * scale, MIN_LABEL_PX))) : "0";
    if (!firstPaint && items.length) {
      firstPaint = true;
      // ms since navigation start (performance.timeOrigin), and since render() began
      root.dataset.firstPaintMs = performance.now().toFixed(1);
      root.dataset.renderMs = (performance.now() - t0).toFixed(1);
      try { performance.mark("wbg-first-paint"); } catch (e) { /* old browsers */ }
      root.dataset.ready = "1";
    }
  }
  function clip(s, w, font = 12) {
    const max = Math.max(3, Math.floor((w - 10) / (0.55 * font)));
    return s.length > max ? s.slice(0, max - 1) + "…" : s;
  }
  function darkish(c) {
    if (c[0] !== "#" || c.length < 7) return false;
    const r = parseInt(c.slice(1, 3), 16), g = parseInt(c.slice(3, 5), 16), b = parseInt(c.slice(5, 7), 16);
    return 0.299 * r + 0.587 * g + 0.114 * b < 110;
  }

  // ------------------------------------------------------------------ hit testing
  const CELL = 256;
  function buildGrid() {
    grid = new Map();
    for (const it of items) {
      const cx0 = Math.floor((it.x - it.w / 2) / CELL), cx1 = Math.floor((it.x + it.w / 2) / CELL);
      const cy0 = Math.floor((it.y - it.h / 2) / CELL), cy1 = Math.floor((it.y + it.h / 2) / CELL);
      for (let a = cx0; a <= cx1; a++) for (let b = cy0; b <= cy1; b++) {
        const k = a + ":" + b;
        let cell = grid.get(k);
        if (!cell) grid.set(k, (cell = []));
        cell.push(it);
      }
    }
  }
  function hit(px, py) {
    const wx = (px - tx) / scale, wy = (py - ty) / scale;
    const cell = grid && grid.get(Math.floor(wx / CELL) + ":" + Math.floor(wy / CELL));
    if (cell) for (const it of cell) if (Math.abs(wx - it.x) <= it.w / 2 && Math.abs(wy - it.y) <= it.h / 2) return { item: it };
    for (let j = frames.length - 1; j >= 0; j--) {
      const f = frames[j];
      if (wx >= f.x0 && wx <= f.x1 && wy >= f.y0 && wy <= f.y0 + 12) return { frame: f };
    }
    return null;
  }

  // ------------------------------------------------------------------ highlight & search
  function highlight(dir) {
    const adj = new Map();
    for (const e of view.edges) {
      const [a, b] = dir > 0 ? [e[0], e[1]] : [e[1], e[0]];
      if (!adj.has(a)) adj.set(a, []);
      adj.get(a).push(b);
    }
    hl = new Set(selectedIds);
    const stack = [...selectedIds];
    while (stack.length) {
      const v = stack.pop();
      for (const u of adj.get(v) || []) if (!hl.has(u)) { hl.add(u); stack.push(u); }
    }
    root.dataset.highlighted = String(hl.size);
    draw();
  }
  let searchTimer = null;
  search.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => { model.set("_search", search.value); model.save_changes(); }, 150);
  });
  search.addEventListener("keydown", (ev) => { if (ev.key === "Enter") { const first = results.querySelector(".wbg-result"); if (first) first.click(); } });
  function onResults() {
    const res = model.get("_search_results") || [];
    results.replaceChildren();
    const q = (model.get("_search") || "").toLowerCase();
    matches = new Set(items.filter((it) => q && it.k !== "group" && (it.n.toLowerCase().includes(q) || (it.o || "").toLowerCase() === q)).map((it) => it.i));
    results.style.display = res.length || q ? "block" : "none";
    if (q && !res.length) results.append(h("div", { class: "wbg-result wbg-small" }, "no match"));
    for (const r of res) {
      results.append(h("div", {
        class: "wbg-result", title: r.path.join(" › "),
        onclick: () => {
          results.style.display = "none";
          const exp = new Set(model.get("expanded") || []);
          const missing = r.path.filter((g) => !exp.has(g));
          const go = () => { setSelected([r.n]); const it = items.find((t) => t.n === r.n); if (it) { if (scale < 0.6) scale = 1; centerOn(it); } };
          if (missing.length) { afterLayout = go; setExpanded([...exp, ...missing]); } else go();
        },
      }, h("b", {}, r.o), " ", r.n));
    }
    draw();
  }

  // ------------------------------------------------------------------ mouse
  let drag = null;
  canvas.addEventListener("mousedown", (ev) => { drag = { x: ev.clientX, y: ev.clientY, tx, ty, moved: false }; });
  window.addEventListener("mousemove", (ev) => {
    if (!drag) return;
    const dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
    tx = drag.tx + dx; ty = drag.ty + dy; draw();
  });
  window.addEventListener("mouseup", () => { setTimeout(() => { drag = null; }, 0); });
  canvas.addEventListener("click", (ev) => {
    if (drag && drag.moved) return;
    const r = canvas.getBoundingClientRect();
    const got = hit(ev.clientX - r.left, ev.clientY - r.top);
    if (!got) return;
    if (got.frame) { toggleGroup(got.frame.id); return; }
    const it = got.item;
    if (it.k === "group") { selectedIds = new Set([it.i]); showGroup(it); draw(); return; }
    const cur = model.get("selected") || [];
    setSelected(ev.shiftKey ? [...new Set([...cur, it.n])] : [it.n]);
  });
  canvas.addEventListener("dblclick", (ev) => {
    const r = canvas.getBoundingClientRect();
    const got = hit(ev.clientX - r.left, ev.clientY - r.top);
    if (got && got.item && got.item.k === "group") toggleGroup(got.item.id);
  });
  canvas.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    const r = canvas.getBoundingClientRect();
    zoomBy(Math.exp(-ev.deltaY * 0.0015), ev.clientX - r.left, ev.clientY - r.top);
  }, { passive: false });

  const listeners = [["change:_view", onView], ["change:legend", onLegend], ["change:_details", onDetails],
    ["change:_search_results", onResults],
    ["change:selected", () => { const s = model.get("selected") || []; selectedIds = new Set(items.filter((it) => s.includes(it.n) && it.k !== "group").map((it) => it.i)); draw(); }]];
  for (const [e, f] of listeners) model.on(e, f);
  const ro = new ResizeObserver(() => resize());
  ro.observe(stage);
  // first visibility (a dashboard tab selected, a cell scrolled into view after Run All): fit then
  const io = typeof IntersectionObserver === "function" ? new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) { resize(); if (needFit) fit(); }
  }) : null;
  if (io) io.observe(root);
  resize();
  onLegend();
  onView();
  onDetails();
  return () => {
    ro.disconnect();
    if (io) io.disconnect();
    for (const [e, f] of listeners) model.off(e, f);
    const k = window.__wbgraphs.indexOf(hook);
    if (k >= 0) window.__wbgraphs.splice(k, 1);
  };
}

// Offline page: the whole graph is in `data`; LocalModel answers what Python answers in the widget.
export function mountStandalone(el, data, opts = {}) {
  const model = new LocalModel(data, opts);
  return render({ model, el });
}

export default { render };
