// Layered DAG layout (Sugiyama style), linear-ish in the size of the visible graph:
//   1. order: Kahn topological sort; a cycle (possible between collapsed groups) is broken at the
//      smallest remaining item index;
//   2. layers: longest path from the sources, then sources are pulled down next to their first consumer;
//   3. edges spanning several layers get dummy points (capped), so they route around boxes;
//   4. crossing reduction: 4 barycentric sweeps (down, up, down, up), stable sorts;
//   5. x: barycentre of neighbours, then a left-to-right and a right-to-left pass that keep the
//      minimum gap, averaged (both satisfy the gap, so their mean does); y: layer by layer.
// Cost: O((V + E + dummies) * sweeps + per-layer sorts): a 10k-node chain lays out in ~10-30 ms.

const GAP_X = 24;
const GAP_Y = 34;

export function itemSize(it) {
  if (it.k === "group") {
    const chars = Math.max((it.n || "").length, Math.min(32, (it.ops || "").length * 0.8));
    return [Math.min(300, Math.max(130, chars * 7 + 36)), 46];
  }
  const chars = (it.o || "").length;
  return [Math.min(220, Math.max(64, chars * 7.4 + 22)), 28];
}

// frameParent: Map frame id -> parent frame id (or -1); items carry their frame in `p`. Members of one
// open group are kept next to each other within each layer, so group frames overlap less.
export function layout(items, edges, frameParent = null) {
  const n = items.length;
  const index = new Map();
  for (let k = 0; k < n; k++) index.set(items[k].i, k);
  const w = new Float64Array(n), h = new Float64Array(n);
  for (let k = 0; k < n; k++) {
    const [a, b] = itemSize(items[k]);
    w[k] = a; h[k] = b;
  }
  // adjacency (deduplicated by the payload already)
  const E = [];
  for (const e of edges) {
    const a = index.get(e[0]), b = index.get(e[1]);
    if (a === undefined || b === undefined || a === b) continue;
    E.push([a, b, e]);
  }
  const out = Array.from({ length: n }, () => []);
  const inn = Array.from({ length: n }, () => []);
  for (const [a, b] of E) { out[a].push(b); inn[b].push(a); }

  // 1. topological order with cycle breaking
  const indeg = new Int32Array(n);
  for (const [, b] of E) indeg[b]++;
  const ord = new Int32Array(n).fill(-1);
  const queue = [];
  for (let k = 0; k < n; k++) if (indeg[k] === 0) queue.push(k);
  let head = 0, next = 0, scan = 0;
  while (next < n) {
    if (head === queue.length) {
      while (ord[scan] !== -1) scan++;
      queue.push(scan);
      indeg[scan] = 0;
    }
    const v = queue[head++];
    if (ord[v] !== -1) continue;
    ord[v] = next++;
    for (const u of out[v]) if (ord[u] === -1 && --indeg[u] === 0) queue.push(u);
  }
  const byOrd = new Int32Array(n);
  for (let k = 0; k < n; k++) byOrd[ord[k]] = k;

  // 2. longest-path layers over forward edges (backward ones are reversed)
  const layer = new Int32Array(n);
  const fwd = (a, b) => ord[a] < ord[b];
  for (let t = 0; t < n; t++) {
    const v = byOrd[t];
    for (const u of out[v]) if (fwd(v, u) && layer[u] < layer[v] + 1) layer[u] = layer[v] + 1;
    for (const u of inn[v]) if (!fwd(u, v) && layer[u] < layer[v] + 1) layer[u] = layer[v] + 1;
  }
  // pull sources (constants, inputs) down to just above their first consumer
  for (let k = 0; k < n; k++) {
    if (inn[k].length === 0 && out[k].length > 0) {
      let m = Infinity;
      for (const u of out[k]) m = Math.min(m, layer[u]);
      if (m !== Infinity && m - 1 > layer[k]) layer[k] = m - 1;
    }
  }
  let L = 0;
  for (let k = 0; k < n; k++) L = Math.max(L, layer[k] + 1);

  // 3. dummies for long edges (capped, beyond the cap edges are drawn straight)
  const nodeLayer = Array.from(layer);
  const up = Array.from({ length: n }, (_, k) => []);   // neighbour lists for the sweeps (incl. dummies)
  const down = Array.from({ length: n }, (_, k) => []);
  const chains = [];
  // group path (outermost first) of every item; a long-edge dummy takes the common prefix of its ends
  const gpath = [];
  for (let k = 0; k < n; k++) {
    const path = [];
    let p = items[k].p;
    while (frameParent && p !== undefined && p >= 0) { path.push(p); p = frameParent.get(p); }
    gpath.push(path.reverse());
  }
  const common = (x, y) => { let j = 0; while (j < x.length && j < y.length && x[j] === y[j]) j++; return x.slice(0, j); };
  let budget = 4 * n + 2000;
  const link = (a, b) => { down[a].push(b); up[b].push(a); };
  for (const [a0, b0, e] of E) {
    let a = a0, b = b0;
    if (nodeLayer[a] > nodeLayer[b]) { a = b0; b = a0; }
    const span = nodeLayer[b] - nodeLayer[a];
    const chain = [];
    if (span > 1 && budget >= span - 1) {
      budget -= span - 1;
      let prev = a;
      const cp = common(gpath[a], gpath[b]);
      for (let l = nodeLayer[a] + 1; l < nodeLayer[b]; l++) {
        gpath.push(cp);
        const d = nodeLayer.length;
        nodeLayer.push(l); up.push([]); down.push([]);
        link(prev, d); chain.push(d); prev = d;
      }
      link(prev, b);
    } else if (span >= 1) {
      link(a, b);
    }
    chains.push({ a: a0, b: b0, chain: a === a0 ? chain : chain.slice().reverse(), e });
  }
  const total = nodeLayer.length;
  const W = new Float64Array(total), H = new Float64Array(total);
  for (let k = 0; k < total; k++) { W[k] = k < n ? w[k] : 8; H[k] = k < n ? h[k] : 8; }

  // 4. ordering
  const layers = Array.from({ length: L }, () => []);
  const seen = new Uint8Array(total);
  // initial order: depth-first from items in topological order, so branches stay together
  const stack = [];
  for (let t = 0; t < n; t++) {
    const s = byOrd[t];
    if (seen[s]) continue;
    stack.push(s);
    while (stack.length) {
      const v = stack.pop();
      if (seen[v]) continue;
      seen[v] = 1;
      layers[nodeLayer[v]].push(v);
      for (let j = down[v].length - 1; j >= 0; j--) if (!seen[down[v][j]]) stack.push(down[v][j]);
    }
  }
  const pos = new Float64Array(total);
  const setPos = (l) => { const a = layers[l]; for (let j = 0; j < a.length; j++) pos[a[j]] = j; };
  for (let l = 0; l < L; l++) setPos(l);
  const bary = new Float64Array(total);
  const grouped = gpath.some((g) => g.length > 0);
  const sweep = (dir) => {
    const from = dir > 0 ? 1 : L - 2, to = dir > 0 ? L : -1;
    for (let l = from; l !== to; l += dir) {
      const a = layers[l];
      if (a.length < 2) continue;
      for (const v of a) {
        const nb = dir > 0 ? up[v] : down[v];
        if (nb.length === 0) { bary[v] = pos[v]; continue; }
        let s = 0;
        for (const u of nb) s += pos[u];
        bary[v] = s / nb.length;
      }
      if (grouped) {
        // mean barycentre of each group's members in this layer; compare at the first differing level
        const sum = new Map(), cnt = new Map();
        for (const v of a) for (const g of gpath[v]) { sum.set(g, (sum.get(g) || 0) + bary[v]); cnt.set(g, (cnt.get(g) || 0) + 1); }
        const key = (v, j) => (j < gpath[v].length ? sum.get(gpath[v][j]) / cnt.get(gpath[v][j]) : bary[v]);
        a.sort((x, y) => {
          const px = gpath[x], py = gpath[y];
          let j = 0;
          while (j < px.length && j < py.length && px[j] === py[j]) j++;
          return key(x, j) - key(y, j) || bary[x] - bary[y] || pos[x] - pos[y];
        });
      } else a.sort((x, y) => bary[x] - bary[y] || pos[x] - pos[y]);
      setPos(l);
    }
  };
  if (total < 200000) { sweep(1); sweep(-1); sweep(1); sweep(-1); }

  // 5. coordinates
  const x = new Float64Array(total);
  for (let l = 0; l < L; l++) {
    const a = layers[l];
    let cx = 0;
    for (const v of a) { x[v] = cx + W[v] / 2; cx += W[v] + GAP_X; }
    const shift = cx / 2;
    for (const v of a) x[v] -= shift;
  }
  const desired = new Float64Array(total);
  const place = (l, useUp, useDown) => {
    const a = layers[l];
    for (const v of a) {
      let s = 0, c = 0;
      if (useUp) {
        // sources (weights, constants) follow their consumer rather than pull it sideways
        for (const u of up[v]) if (!(u < n && inn[u].length === 0)) { s += x[u]; c++; }
        if (!c) for (const u of up[v]) { s += x[u]; c++; }
      }
      if (useDown) for (const u of down[v]) { s += x[u]; c++; }
      desired[v] = c ? s / c : x[v];
    }
    const m = a.length;
    if (m === 1) { x[a[0]] = desired[a[0]]; return; }
    if (m > 400) {  // wide layer: averaged left/right packing, O(m)
      const left = new Float64Array(m), right = new Float64Array(m);
      for (let j = 0; j < m; j++) {
        const v = a[j];
        left[j] = j === 0 ? desired[v] : Math.max(desired[v], left[j - 1] + (W[a[j - 1]] + W[v]) / 2 + GAP_X);
      }
      for (let j = m - 1; j >= 0; j--) {
        const v = a[j];
        right[j] = j === m - 1 ? desired[v] : Math.min(desired[v], right[j + 1] - (W[a[j + 1]] + W[v]) / 2 - GAP_X);
      }
      for (let j = 0; j < m; j++) x[a[j]] = (left[j] + right[j]) / 2;
      return;
    }
    // priority method: real nodes first, then long-edge dummies, then sources (weights, constants);
    // each takes its desired x within the room left by the nodes already placed.
    const pre = new Float64Array(m + 1);
    for (let j = 0; j < m; j++) pre[j + 1] = pre[j] + W[a[j]] + GAP_X;
    const prio = a.map((v, j) => [v < n ? (inn[v].length === 0 ? 0 : 100 + up[v].length + down[v].length) : 50, j]);
    prio.sort((p, q) => q[0] - p[0] || p[1] - q[1]);
    const fixed = new Uint8Array(m);
    for (const [, j] of prio) {
      const v = a[j];
      let lo = -Infinity, hi = Infinity;
      for (let k = j - 1; k >= 0; k--) if (fixed[k]) { lo = x[a[k]] - W[a[k]] / 2 + (pre[j] - pre[k]) + W[v] / 2; break; }
      for (let k = j + 1; k < m; k++) if (fixed[k]) { hi = x[a[k]] + W[a[k]] / 2 - (pre[k + 1] - pre[j + 1]) - W[v] / 2; break; }
      x[v] = Math.min(Math.max(desired[v], lo), Math.max(lo, hi));
      fixed[j] = 1;
    }
  };
  for (let it = 0; it < 3; it++) {
    for (let l = 1; l < L; l++) place(l, true, false);
    for (let l = L - 2; l >= 0; l--) place(l, false, true);
  }
  for (let l = 0; l < L; l++) place(l, true, true);
  const layerY = new Float64Array(L + 1);
  for (let l = 0; l < L; l++) {
    let mh = 8;
    for (const v of layers[l]) mh = Math.max(mh, H[v]);
    layerY[l + 1] = layerY[l] + mh + GAP_Y;
  }
  const y = new Float64Array(total);
  for (let k = 0; k < total; k++) {
    const l = nodeLayer[k];
    y[k] = layerY[l] + (layerY[l + 1] - layerY[l] - GAP_Y) / 2;
  }
  // edge polylines: bottom of source → dummies → top of target
  const paths = chains.map(({ a, b, chain, e }) => {
    const pts = [x[a], y[a] + (y[a] <= y[b] ? h[a] / 2 : -h[a] / 2)];
    for (const d of chain) pts.push(x[d], y[d]);
    pts.push(x[b], y[b] + (y[a] <= y[b] ? -h[b] / 2 : h[b] / 2));
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (let j = 0; j < pts.length; j += 2) {
      x0 = Math.min(x0, pts[j]); x1 = Math.max(x1, pts[j]);
      y0 = Math.min(y0, pts[j + 1]); y1 = Math.max(y1, pts[j + 1]);
    }
    return { a, b, pts, e, box: [x0, y0, x1, y1] };
  });
  return { n, x: x.subarray(0, n), y: y.subarray(0, n), w, h, paths, layers: L, index };
}
