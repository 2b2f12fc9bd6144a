// LocalModel: the model-like shim (get/set/on/off/save_changes) of the offline HTML page.
// It answers what the Python widget answers (graph_payload.GraphPayload): the visible subset for a
// set of expanded groups, search results, and node details, from the full graph embedded in the page.

export class LocalModel {
  constructor(data, opts = {}) {
    this.d = data;
    this.N = data.nodes.length;
    this.state = {
      height: opts.height || 640, expanded: opts.expanded || [], selected: [], legend: data.legend || null,
      _search: "", _search_results: [], _details: {}, _view: null,
    };
    this.handlers = new Map();
    this.dirty = new Set();
    // children: nodes per group (in node order)
    this.nodesOf = Array.from({ length: data.groups.length }, () => []);
    data.nodes.forEach((n, i) => this.nodesOf[n.g].push(i));
    this.byName = new Map(data.nodes.map((n, i) => [n.n, i]));
    this.state._view = this.visible(this.state.expanded);
  }
  get(k) { return this.state[k]; }
  set(k, v) { this.state[k] = v; this.dirty.add(k); }
  on(ev, f) { if (!this.handlers.has(ev)) this.handlers.set(ev, []); this.handlers.get(ev).push(f); }
  off(ev, f) { const a = this.handlers.get(ev) || []; const k = a.indexOf(f); if (k >= 0) a.splice(k, 1); }
  emit(k) { for (const f of this.handlers.get("change:" + k) || []) f(); }
  save_changes() {
    const changed = [...this.dirty];
    this.dirty.clear();
    for (const k of changed) {
      if (k === "expanded") { this.state._view = this.visible(this.state.expanded); this.emit("_view"); }
      if (k === "selected") this.onSelected();
      if (k === "_search") { this.state._search_results = this.search(this.state._search); this.emit("_search_results"); }
    }
  }
  onSelected() {
    const names = this.state.selected || [];
    const i = names.length ? this.byName.get(names[0]) : undefined;
    this.state._details = i === undefined ? {} : this.d.details[i];
    this.emit("_details");
  }
  ancestors(i) {
    const out = [];
    let k = this.d.nodes[i].g;
    while (k > 0) { out.push(this.d.groups[k].id); k = this.d.groups[k].p; }
    return out.reverse();
  }
  search(q) {
    q = (q || "").trim().toLowerCase();
    if (!q) return [];
    const out = [];
    for (let i = 0; i < this.N && out.length < 50; i++) {
      const n = this.d.nodes[i];
      if (n.n.toLowerCase().includes(q) || n.o.toLowerCase() === q) out.push({ i, n: n.n, o: n.o, path: this.ancestors(i) });
    }
    return out;
  }
  visible(expanded) {
    const { groups, nodes, edges, tensors } = this.d;
    const N = this.N, G = groups.length;
    const idx = new Map(groups.map((g, k) => [g.id, k]));
    const exp = new Set([0]);
    for (const g of expanded) if (idx.has(g)) exp.add(idx.get(g));
    const rep = new Int32Array(G).fill(-1);
    for (let k = 1; k < G; k++) {
      const p = groups[k].p;
      if (rep[p] !== -1) rep[k] = rep[p];
      else if (!exp.has(k)) rep[k] = k;
    }
    const openParent = (k) => { const p = groups[k].p; return p <= 0 ? -1 : N + p; };
    const items = [], frames = [];
    for (let k = 0; k < G; k++) {
      const g = groups[k];
      if (k > 0 && rep[k] === k) {
        const it = { i: N + k, n: g.l, id: g.id, k: "group", gk: g.gk, size: g.size, ops: g.ops, p: openParent(k) };
        if (g.c) it.c = g.c;
        if (g.v !== undefined) it.v = g.v;
        items.push(it);
      } else if (rep[k] === -1) {
        if (k > 0) frames.push({ i: N + k, id: g.id, l: g.l, p: openParent(k) });
        for (const i of this.nodesOf[k]) { const n = nodes[i]; const it = { ...n }; delete it.g; items.push(it); }
      }
    }
    const nodeRep = (i) => { const r = rep[nodes[i].g]; return r === -1 ? i : N + r; };
    const agg = new Map();
    const [src, dst, ten] = edges;
    for (let e = 0; e < src.length; e++) {
      const a = nodeRep(src[e]), b = nodeRep(dst[e]);
      if (a === b) continue;
      const key = a * (N + G) + b;
      const cur = agg.get(key);
      if (cur) cur[2]++;
      else agg.set(key, [a, b, 1, tensors[ten[e]]]);
    }
    const out = [];
    for (const v of agg.values()) { if (v[2] > 1 || v[0] >= N || v[1] >= N) v[3] = null; out.push(v); }
    return { title: this.d.title, n_nodes: this.d.n_nodes, items, frames, edges: out, expanded: [...expanded] };
  }
}
