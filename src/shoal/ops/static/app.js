// The cluster page: fetches one page of nodes from /api/cluster and redraws it whenever
// /api/stream announces a new snapshot version (with a slow poll as a fallback).
"use strict";

const state = { page: 0, perPage: 48, q: "", filter: "", version: -1, loading: false, again: false };
const $ = (id) => document.getElementById(id);

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(n < 10 ? 1 : 0)) + " " + units[i];
}

function fill(bar, used, total) {
  const pct = total > 0 ? Math.min(100, (100 * used) / total) : 0;
  bar.style.width = pct + "%";
  bar.classList.toggle("full", pct >= 95);
}

function chips(target, counts, order) {
  target.replaceChildren();
  for (const key of order || Object.keys(counts)) {
    const n = counts[key] || 0;
    if (!n && order) continue;
    const chip = el("span", "chip s-" + key);
    chip.append(el("b", "", String(n)), " " + key);
    target.append(chip);
  }
}

function bar(kind, used, total, text) {
  const row = [el("span", "", kind)];
  const outer = el("div", "bar " + (kind === "MEM" ? "mem" : "cpu"));
  const inner = el("span");
  outer.append(inner);
  fill(inner, used, total);
  row.push(outer, el("span", "", text));
  return row;
}

function card(node) {
  const c = el("article", "card s-" + node.state);
  c.dataset.node = node.name;
  c.dataset.state = node.state;
  const head = el("div", "card-head");
  head.append(el("span", "name", node.name), el("span", "addr", node.addr),
              el("span", "badge s-" + node.state, node.state));
  c.append(head);
  if (node.error && node.state !== "healthy") c.append(el("div", "error", node.error));
  const res = el("div", "res");
  res.append(...bar("CPU", node.reserved_cpus, node.cpus, node.reserved_cpus + " / " + node.cpus));
  res.append(...bar("MEM", node.reserved_memory, node.memory,
                    bytes(node.reserved_memory) + " / " + bytes(node.memory)));
  c.append(res);
  const list = el("ul", "list");
  for (const ct of node.containers) {
    const li = el("li");
    li.dataset.container = ct.name;
    li.dataset.state = ct.state;
    li.title = ct.id + " · " + ct.state;
    li.append(el("span", "cstate s-" + ct.state), el("span", "cname", ct.name),
              el("span", "cimage", ct.image));
    list.append(li);
  }
  if (!node.containers.length) list.append(el("li", "none", "no containers"));
  c.append(list);
  const hidden = node.container_count - node.containers.length;
  if (hidden > 0) c.append(el("div", "more", "and " + hidden + " more"));
  return c;
}

function render(data) {
  state.version = data.version;
  state.page = data.page;
  $("primary").textContent = data.primary || "–";
  $("role").textContent = data.role;
  $("strategy").textContent = data.strategy;
  const t = data.totals;
  $("nodes-total").textContent = t.nodes;
  chips($("nodes-states"), t.engines, ["healthy", "unhealthy", "pending", "disconnected"]);
  const cs = t.containers;
  $("containers-total").textContent = Object.values(cs).reduce((a, b) => a + b, 0);
  chips($("containers-states"), cs, Object.keys(cs));
  fill($("cpu-fill"), t.reserved_cpus, t.cpus);
  $("cpu-text").textContent = t.reserved_cpus + " of " + t.cpus + " CPUs";
  fill($("mem-fill"), t.reserved_memory, t.memory);
  $("mem-text").textContent = bytes(t.reserved_memory) + " of " + bytes(t.memory);

  const squares = $("overview");
  const frag = document.createDocumentFragment();
  for (const [name, st, count] of data.overview) {
    const sq = el("span", "sq s-" + st);
    sq.title = name + " · " + st + " · " + count + " containers";
    sq.dataset.name = name;
    frag.append(sq);
  }
  squares.replaceChildren(frag);

  const grid = $("grid");
  grid.replaceChildren(...data.nodes.map(card));
  $("empty").hidden = data.nodes.length > 0;
  const first = data.matched ? data.page * data.per_page + 1 : 0;
  const last = Math.min(data.matched, (data.page + 1) * data.per_page);
  $("page-text").textContent = first + "–" + last + " of " + data.matched;
  $("prev").disabled = data.page <= 0;
  $("next").disabled = data.page >= data.pages - 1;
  $("live-text").textContent = "updated " + new Date(data.taken_at * 1000).toLocaleTimeString();
}

async function refresh() {
  if (state.loading) { state.again = true; return; }
  state.loading = true;
  try {
    const params = new URLSearchParams({ page: state.page, per_page: state.perPage });
    if (state.q) params.set("q", state.q);
    if (state.filter) params.set("state", state.filter);
    const resp = await fetch("/api/cluster?" + params, { cache: "no-store" });
    if (resp.ok) render(await resp.json());
  } catch (err) {
    $("live-dot").classList.add("off");
    $("live-text").textContent = "manager unreachable";
  } finally {
    state.loading = false;
    if (state.again) { state.again = false; refresh(); }
  }
}

function connect() {
  const source = new EventSource("/api/stream");
  source.addEventListener("version", (ev) => {
    $("live-dot").classList.remove("off");
    if (Number(ev.data) !== state.version) refresh();
  });
  source.onerror = () => { $("live-dot").classList.add("off"); $("live-text").textContent = "reconnecting…"; };
}

let typing = 0;
$("search").addEventListener("input", (ev) => {
  clearTimeout(typing);
  typing = setTimeout(() => { state.q = ev.target.value.trim(); state.page = 0; refresh(); }, 200);
});
$("state").addEventListener("change", (ev) => { state.filter = ev.target.value; state.page = 0; refresh(); });
$("prev").addEventListener("click", () => { state.page = Math.max(0, state.page - 1); refresh(); });
$("next").addEventListener("click", () => { state.page += 1; refresh(); });
$("overview").addEventListener("click", (ev) => {
  const name = ev.target.dataset && ev.target.dataset.name;
  if (!name) return;
  $("search").value = name; state.q = name; state.filter = ""; $("state").value = ""; state.page = 0;
  refresh();
});

refresh();
connect();
setInterval(refresh, 10000);  // a safety net if the stream is blocked by a proxy
