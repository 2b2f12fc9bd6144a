// Layout time of ours vs dagre on synthetic chains / residual graphs (Node.js, no rendering).
// Run: npm install --no-save @dagrejs/dagre@1 && node bench-dagre.mjs
import dagre from "@dagrejs/dagre";
import { layout } from "./src/layout.js";
function chain(n) {
  const items = [], edges = [];
  for (let k = 0; k < n; k++) items.push({ i: k, o: "Conv", k: "op" });
  for (let k = 1; k < n; k++) edges.push([k - 1, k, 1, null]);
  return { items, edges };
}
function branchy(n) { // residual blocks: each block of 4 has a skip edge
  const items = [], edges = [];
  for (let k = 0; k < n; k++) items.push({ i: k, o: "Add", k: "op" });
  for (let k = 1; k < n; k++) edges.push([k - 1, k, 1, null]);
  for (let k = 4; k < n; k += 4) edges.push([k - 4, k, 1, null]);
  return { items, edges };
}
for (const [name, gen] of [["chain", chain], ["residual", branchy]]) {
  for (const n of [500, 1000, 2000, 10000]) {
    const { items, edges } = gen(n);
    let t = performance.now(); layout(items, edges); const ours = performance.now() - t;
    let d = null;
    if (n <= 2000) { try {
      const g = new dagre.graphlib.Graph(); g.setGraph({ rankdir: "TB" }); g.setDefaultEdgeLabel(() => ({}));
      for (const it of items) g.setNode(String(it.i), { width: 80, height: 28 });
      for (const e of edges) g.setEdge(String(e[0]), String(e[1]));
      t = performance.now(); dagre.layout(g); d = performance.now() - t; } catch (e) { d = "fails: " + e.constructor.name; }
    }
    console.log(JSON.stringify({ graph: name, n, ours_ms: Math.round(ours), dagre_ms: d && Math.round(d) }));
  }
}
