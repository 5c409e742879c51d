// jvideo studio page: plain JavaScript, no build step, nothing loaded from elsewhere.
// Every piece of user or library text goes into the page through textContent (never innerHTML).
"use strict";

const $ = (id) => document.getElementById(id);
// Re-plan once typing pauses this long: a re-plan costs tens of ms on the server, so the pause
// only saves work on every keystroke; it is part of the 0.5 s edit-to-storyboard budget.
const TYPING_PAUSE_MS = 150;
let editSeq = 0;          // number of the latest script edit sent
let shownSeq = 0;         // edit whose storyboard is on screen
let typingTimer = null;
let filmUrl = null;
let exportWaiting = false;
let board = null;         // the storyboard on screen

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") node.textContent = v;
    else if (k === "cls") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) if (c) node.appendChild(c);
  return node;
}

async function api(method, path, data) {
  const opts = { method, headers: {} };
  if (data !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(data);
  }
  const resp = await fetch(path, opts);
  let out = null;
  try { out = await resp.json(); } catch (e) { out = { error: resp.statusText }; }
  if (!resp.ok) throw new Error(out && out.error ? out.error : `HTTP ${resp.status}`);
  return out;
}

function say(text) { $("message").textContent = text || ""; }

// -- script -----------------------------------------------------------------------------
function scheduleReplan() {
  clearTimeout(typingTimer);
  typingTimer = setTimeout(sendScript, TYPING_PAUSE_MS);
}

async function sendScript() {
  const seq = ++editSeq;
  const t0 = performance.now();
  try {
    const sb = await api("POST", "/api/script", { script: $("script").value });
    if (seq < shownSeq) return;               // an older answer arriving late
    shownSeq = seq;
    say("");
    drawStoryboard(sb, performance.now() - t0);
  } catch (e) { say(e.message); }
}

// -- storyboard -------------------------------------------------------------------------
function fmt(t) { const m = Math.floor(t / 60); return `${m}:${(t - 60 * m).toFixed(1).padStart(4, "0")}`; }

function thumb(src, alt) {
  return src ? el("img", { src, alt: alt || "", loading: "lazy" }) : el("div", { cls: "titlecard", text: alt || "" });
}

function shotTile(s) {
  if (s.kind === "title") return el("div", { cls: "shot" }, el("div", { cls: "titlecard", text: s.title }), el("div", { text: "title card" }));
  return el("div", { cls: "shot", title: s.text },
    thumb(s.thumb, s.text),
    el("div", { text: `${s.source_kind} · score ${s.score.toFixed(2)}` }),
    el("div", { cls: "muted", text: `${s.source} ${s.in.toFixed(1)}–${s.out.toFixed(1)} s` }));
}

function candidateTile(u, c, chosen) {
  const cls = ["candidate"];
  if (chosen.has(c.shot_id)) cls.push("current");
  if (u.pinned === c.shot_id) cls.push("pinned");
  const pinned = u.pinned === c.shot_id;
  return el("div", { cls: cls.join(" "), title: c.text, "data-shot": c.shot_id },
    thumb(c.thumb, c.text),
    el("div", { text: `#${c.shot_id} · ${c.score.toFixed(2)}` }),
    el("div", { cls: "actions" },
      el("button", { type: "button", cls: pinned ? "unpin" : "pin", text: pinned ? "unpin" : "pin",
                     onclick: () => act("/api/pin", { unit: u.index, text: u.text, shot_id: pinned ? null : c.shot_id }) }),
      el("button", { type: "button", cls: "never", text: "never", title: "never use this shot",
                     onclick: () => act("/api/never-use", { shot_id: c.shot_id, never: true }) })));
}

function unitRow(u) {
  const cls = ["unit", u.kind === "title" ? "title" : u.match];
  if (u.changed) cls.push("changed");
  const head = el("div", { cls: "unit-head" },
    el("span", { cls: "muted", text: `${u.index + 1} · ${fmt(u.start)}` }),
    el("span", { cls: "unit-text", text: u.text }));
  if (u.kind === "text") {
    const best = u.shots.filter((s) => s.kind === "shot").map((s) => s.similarity);
    const label = u.match + (best.length ? ` · sim ${Math.max(...best).toFixed(2)}` : "");
    head.appendChild(el("span", { cls: "badge", text: label }));
    const genLabel = u.generated ? "generated (undo)" : u.generate ? "generate requested (undo)" : "generate";
    head.appendChild(el("button", { type: "button", cls: "generate", text: genLabel,
      title: "generate this shot with the video model instead of using the library",
      onclick: () => act("/api/generate", { unit: u.index, text: u.text, generate: !u.generate }) }));
  }
  const row = el("div", { cls: cls.join(" "), "data-index": u.index, "data-key": u.key }, head);
  const body = el("div", { cls: "unit-body" }, el("div", { cls: "strip shots" }, ...u.shots.map(shotTile)));
  if (u.kind === "text" && u.candidates.length) {
    const chosen = new Set(u.shots.map((s) => s.shot_id));
    body.appendChild(el("div", { cls: "cands" },
      el("div", { cls: "candidates-label", text: "top candidates: pin one, or never use it" }),
      el("div", { cls: "strip candidates" }, ...u.candidates.map((c) => candidateTile(u, c, chosen)))));
  }
  row.appendChild(body);
  if (u.note) row.appendChild(el("div", { cls: "muted", text: u.note }));
  return row;
}

function drawStoryboard(sb, ms) {
  board = sb;
  const box = $("storyboard");
  // Units whose content is unchanged keep their DOM nodes (and loaded images).
  const old = new Map();
  for (const n of box.children) old.set(n.dataset.sig, n);
  const rows = sb.units.map((u) => {
    const sig = JSON.stringify([u.key, u.index, u.pinned, u.generate, u.generated, u.match, u.shots.map((s) => s.shot_id),
                                u.candidates.map((c) => c.shot_id)]);
    let n = old.get(sig);
    if (!n) { n = unitRow(u); n.dataset.sig = sig; }
    n.classList.toggle("changed", u.changed);
    return n;
  });
  box.replaceChildren(...rows);
  const info = sb.units.length
    ? `${sb.units.length} units · ${sb.duration.toFixed(1)} s · re-planned from unit ${Math.min(sb.replanned_from + 1, sb.units.length)} in ${(sb.update_seconds * 1000).toFixed(0)} ms` + (ms ? ` (${ms.toFixed(0)} ms round trip)` : "")
    : "empty script";
  $("plan-info").textContent = info;
  for (const [k, v] of Object.entries(sb.settings || {})) {
    const c = $(k);
    if (!c) continue;
    if (c.type === "checkbox") c.checked = !!v; else c.value = v;
  }
}

async function act(path, data) {
  try { drawStoryboard(await api("POST", path, data)); say(""); }
  catch (e) { say(e.message); }
}

// -- render, export ---------------------------------------------------------------------
async function poll() {
  try {
    const st = await api("GET", "/api/status");
    const r = st.render;
    const pct = r.total ? Math.round(100 * r.done / r.total) : (r.state === "done" ? 100 : 0);
    $("render-bar").style.width = `${r.state === "assembling" ? 100 : pct}%`;
    let msg = r.state === "rendering" ? `rendering ${r.done}/${r.total} shots` : r.message || r.state;
    if (r.state === "done" && !r.current) msg += " (updating…)";
    $("render-info").textContent = msg;
    if (r.film && r.film !== filmUrl) {
      filmUrl = r.film;
      const p = $("player");
      const at = p.currentTime || 0;
      p.src = filmUrl;
      p.addEventListener("loadedmetadata", () => { if (at < p.duration) p.currentTime = at; }, { once: true });
    }
    if (exportWaiting && (r.current || (r.state === "error" && r.version === st.version))) {
      exportWaiting = false; doExport(["mp4"]);
    }
    const g = st.generate;
    $("generate-info").textContent = g.state === "idle" ? "" :
      `generation ${g.state}: ${g.message}` + (g.state === "running" && g.total ? ` (${g.done}/${g.total} shots)` : "");
    if (g.state === "done" && g.version !== poll.generateSeen) { poll.generateSeen = g.version; refresh(); }
    const ix = st.index;
    $("index-bar").style.width = `${ix.total ? Math.round(100 * ix.done / ix.total) : (ix.state === "done" ? 100 : 0)}%`;
    $("index-info").textContent = ix.state === "idle" ? "" : `${ix.state}: ${ix.message} ${ix.total ? `(${ix.done}/${ix.total} files)` : ""}`;
    $("library-info").textContent = st.library.folder ? `${st.library.shots} shots` : "no library yet";
    if (ix.state === "done" && ix.version !== poll.indexSeen) { poll.indexSeen = ix.version; refresh(); }
  } catch (e) { /* server restarting: try again next tick */ }
  setTimeout(poll, 500);
}

function showExports(out) {
  const box = $("exports");
  for (const [fmtName, url] of Object.entries(out.files)) {
    let a = box.querySelector(`a[data-format="${fmtName}"]`);
    if (!a) { a = el("a", { "data-format": fmtName, download: "" }); box.appendChild(a); }
    a.href = url;
    a.textContent = fmtName.toUpperCase();
  }
  if (out.pending.length) box.appendChild(el("span", { cls: "muted pending", text: " MP4 follows when the film is rendered…" }));
  else box.querySelectorAll(".pending").forEach((n) => n.remove());
}

async function doExport(formats) {
  try {
    const out = await api("POST", "/api/export", formats ? { formats } : {});
    showExports(out);
    if (out.pending.includes("mp4")) exportWaiting = true;
    const failed = Object.entries(out.errors || {}).map(([f, m]) => `${f.toUpperCase()}: ${m}`);
    say(failed.join("; "));
  } catch (e) { say(e.message); }
}

// -- library ----------------------------------------------------------------------------
async function search(ev) {
  ev.preventDefault();
  const q = $("search").value;
  try {
    const out = await api("GET", `/api/search?q=${encodeURIComponent(q)}&k=24`);
    $("results").replaceChildren(...out.results.map((r) => el("div", { cls: "result" + (r.never_use ? " never" : ""), title: r.text },
      thumb(r.thumb, r.text),
      el("div", { text: `#${r.shot_id} · ${r.score.toFixed(2)} · ${r.source}` }),
      el("div", { cls: "caption muted", text: r.text }),
      el("button", { type: "button", text: r.never_use ? "allow" : "never use",
        onclick: async () => { await act("/api/never-use", { shot_id: r.shot_id, never: !r.never_use }); search(ev); } }))));
    say(out.results.length ? "" : "no shots");
  } catch (e) { say(e.message); }
}

async function indexFolder(ev) {
  ev.preventDefault();
  try { await api("POST", "/api/index", { folder: $("index-folder").value }); say(""); }
  catch (e) { say(e.message); }
}

async function refresh() {
  try { drawStoryboard(await api("GET", "/api/storyboard")); } catch (e) { say(e.message); }
}

// -- start ------------------------------------------------------------------------------
async function start() {
  const p = await api("GET", "/api/project");
  $("project").textContent = p.path;
  $("script").value = p.script;
  $("script").maxLength = p.max_script_chars;
  $("script").addEventListener("input", scheduleReplan);
  for (const c of document.querySelectorAll("[data-setting]")) {
    c.addEventListener("change", () => act("/api/settings", { [c.dataset.setting]: c.type === "checkbox" ? c.checked : c.value }));
  }
  $("save").addEventListener("click", async () => {
    try { const r = await api("POST", "/api/save", {}); say(`saved ${r.saved}`); } catch (e) { say(e.message); }
  });
  $("export").addEventListener("click", () => doExport(null));
  $("library-toggle").addEventListener("click", () => { $("library").hidden = !$("library").hidden; });
  $("search-form").addEventListener("submit", search);
  $("index-form").addEventListener("submit", indexFolder);
  await refresh();
  poll();
}

document.addEventListener("DOMContentLoaded", start);
