/* dlcamp camp page: capture photos, draw boxes, never lose an edit.
 *
 * Plain JS, no framework, nothing fetched from outside this server (camps run offline).
 * Talks to the HTTP API of src/dlcamp/camp/api.py (contract: docs and camp_spec). Every edit is
 * one small idempotent request: a fresh edit_id, the object's base_version; edits go through one
 * ordered queue that retries network failures with the SAME edit_id, shows "unsaved" until the
 * server acknowledges, and asks the user on a 409 conflict. Undo/redo are inverse edits.
 * Box coordinates are WORKING-copy pixels [x1, y1, x2, y2] (the image json's width x height).
 */
"use strict";
(() => {
const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

/** Make an element: el("button", {class: "x", onclick: f}, "text", child). */
function el(tag, attrs = {}, ...kids) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k === "style") node.style.cssText = v;   // CSSOM: allowed by the page's CSP
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat()) if (kid !== null && kid !== undefined && kid !== false)
    node.append(kid instanceof Node ? kid : String(kid));
  return node;
}
const svgIcon = (id) => {
  const s = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  const u = document.createElementNS("http://www.w3.org/2000/svg", "use");
  u.setAttribute("href", "#" + id); s.append(u); s.setAttribute("aria-hidden", "true");
  return s;
};

/** A UUID v4; crypto.randomUUID exists only in secure contexts (a LAN camp is plain http). */
function uuid() {
  if (window.crypto && crypto.randomUUID && window.isSecureContext) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const TOKEN_KEY = "dlcamp-camp-token";
const QUEUE_KEY = "dlcamp-camp-queue";
const PALETTE = ["#e03131", "#2f9e44", "#1971c2", "#f08c00", "#9c36b5", "#0c8599", "#846358",
  "#e64980", "#5c940d", "#364fc7"];   // neighbours differ in hue; white text reads on each
const MAX_UPLOAD = 25 * 1024 * 1024;
const IMAGE_EXT = /\.(jpe?g|jfif|png|webp|bmp|gif|tiff?|heic|heif)$/i;
const STATUS_TEXT = {
  unlabelled: ["未标", "unlabelled"], no_objects: ["无目标", "no objects"],
  labelled: ["已标", "labelled"], reviewed: ["已审", "reviewed"], needs_fix: ["待改", "needs fix"],
};

/* state ------------------------------------------------------------------------------------- */
const S = {
  token: localStorage.getItem(TOKEN_KEY) || "",
  me: null,            // {role, project, lan}
  projects: [],        // GET /api/projects
  pid: null,           // open project id
  project: null,       // GET /api/projects/{p} (classes, counts, seq)
  images: [],          // image json, sorted by id
  byId: new Map(),
  seq: 0,              // last change seq merged
  view: "loading",
  cur: null,           // open image: {id, file_name, width, height, version, no_objects, review, boxes}
  curClass: 0,
  selected: null,      // selected box id
};
const versions = new Map();     // box id -> version the server acknowledged (0: never created)
const imgVersions = new Map();  // image id -> version the server acknowledged

/* messages ---------------------------------------------------------------------------------- */
let statusTimer = null;
/** Show a short message in #status (kind: info | ok | error); it fades after a while. */
function say(text, kind = "info") {
  const box = $("#status");
  box.textContent = text; box.dataset.kind = kind; box.classList.remove("faded");
  clearTimeout(statusTimer);
  statusTimer = setTimeout(() => box.classList.add("faded"), kind === "error" ? 9000 : 4000);
}

/* HTTP -------------------------------------------------------------------------------------- */
class ApiError extends Error {
  constructor(status, detail, body) { super(detail); this.status = status; this.body = body; }
}
function detailText(body, status) {
  const d = body && body.detail;
  if (typeof d === "string") return d;
  if (Array.isArray(d)) return d.map((x) => `${(x.loc || []).slice(1).join(".")}: ${x.msg}`).join("; ");
  return `HTTP ${status}`;
}
function authHeaders() {
  const h = { "X-Camp": "1" };
  if (S.token) h.Authorization = "Bearer " + S.token;
  return h;
}
/** Call the API. Resolves to the parsed JSON (or the Response when raw); throws ApiError
 *  (status 0 = network failure or timeout). */
async function api(path, { method = "GET", json, body, raw = false, timeout = 0 } = {}) {
  const headers = authHeaders();
  if (json !== undefined) { headers["Content-Type"] = "application/json"; body = JSON.stringify(json); }
  const ctl = new AbortController();
  const timer = timeout ? setTimeout(() => ctl.abort(), timeout) : null;
  let r;
  try {
    r = await fetch(path, { method, headers, body, signal: ctl.signal, cache: raw ? "default" : "no-store" });
  } catch (e) {
    throw new ApiError(0, "网络不通 network error", null);
  } finally { clearTimeout(timer); }
  if (raw && r.ok) return r;
  let data = null;
  try { data = await r.json(); } catch (e) { data = null; }
  if (!r.ok) throw new ApiError(r.status, detailText(data, r.status), data);
  return data;
}
/** GET a binary resource with the auth header (img src cannot send one) -> Blob. */
async function apiBlob(path) { return (await api(path, { raw: true })).blob(); }
const P = (rest = "") => `/api/projects/${encodeURIComponent(S.pid)}${rest}`;

/* classes and image status ------------------------------------------------------------------- */
function classes() { return (S.project && S.project.classes) || []; }
function className(i) {
  const c = classes()[i];
  if (!c) return `#${i}`;
  return c.name_zh ? `${c.name_zh} ${c.name}` : c.name;
}
const colour = (i) => PALETTE[((i % PALETTE.length) + PALETTE.length) % PALETTE.length];
function boxCountOf(im) {
  if (S.cur && S.cur.id === im.id) return S.cur.boxes.length;
  return typeof im.boxes === "number" ? im.boxes : (im.boxes || []).length;
}
/** The badge an image shows: needs_fix > reviewed > labelled > no_objects > unlabelled. */
function statusOf(im) {
  const live = S.cur && S.cur.id === im.id ? S.cur : im;
  if (live.review === "needs_fix") return "needs_fix";
  if (live.review === "done") return "reviewed";
  if (boxCountOf(im) > 0) return "labelled";
  return live.no_objects ? "no_objects" : "unlabelled";
}
function matches(im, filter) {
  const live = S.cur && S.cur.id === im.id ? S.cur : im;
  const n = boxCountOf(im);
  switch (filter) {
    case "unlabelled": return n === 0 && !live.no_objects;
    case "no_objects": return n === 0 && !!live.no_objects;
    case "labelled": return n > 0;
    case "reviewed": return live.review === "done";
    case "needs_fix": return live.review === "needs_fix";
    default: return true;
  }
}

/* the edit queue ------------------------------------------------------------------------------
 * Ops are plain data: {kind: put|del|patch|copy, pid, img, box?, label/x1.., fields?, src?,
 * edit_id, base?}. They are sent one at a time, in order, so an op's base_version is read when it
 * is first sent (after every earlier op on the same box was acknowledged) and then kept for every
 * retry, like its edit_id. The queue survives a reload (sessionStorage) and resends the same
 * edit_ids, which the server answers from its idempotency table. */
const Q = { ops: [], busy: false, timer: null, delay: 0, acks: 0, blocked: false, failing: false };

function saveQueue() {
  const ids = new Set(Q.ops.map((o) => o.box).filter(Boolean));
  const imgs = new Set(Q.ops.map((o) => o.img));
  const snap = {
    ops: Q.ops,
    versions: [...ids].filter((id) => versions.has(id)).map((id) => [id, versions.get(id)]),
    imgVersions: [...imgs].filter((i) => imgVersions.has(i)).map((i) => [i, imgVersions.get(i)]),
  };
  try { sessionStorage.setItem(QUEUE_KEY, JSON.stringify(snap)); } catch (e) { /* private mode */ }
}
function loadQueue() {
  try {
    const snap = JSON.parse(sessionStorage.getItem(QUEUE_KEY) || "null");
    if (!snap || !Array.isArray(snap.ops)) return;
    Q.ops = snap.ops.filter((o) => o && o.edit_id && o.pid && o.img);
    for (const [id, v] of snap.versions || []) versions.set(id, v);
    for (const [i, v] of snap.imgVersions || []) imgVersions.set(i, v);
    if (Q.ops.length) say(`重新发送 ${Q.ops.length} 个未保存的修改 Resending ${Q.ops.length} unsaved edits`);
  } catch (e) { Q.ops = []; }
}

function enqueue(op) {
  op.edit_id = uuid();
  op.pid = op.pid || S.pid;
  Q.ops.push(op);
  saveQueue(); syncUI(); pump();
}
const pendingFor = (img) => Q.ops.some((o) => o.img === img);
const pendingBox = (id) => Q.ops.some((o) => o.box === id);

function baseFor(op) {
  if (op.kind === "put") return op.create ? 0 : (versions.get(op.box) || 0);
  if (op.kind === "del") return versions.get(op.box) || 0;
  if (op.kind === "patch") return imgVersions.get(op.img) || 0;
  return null;
}

function sendOp(op) {
  const base = `/api/projects/${encodeURIComponent(op.pid)}/images/${op.img}`;
  const t = 20000;
  if (op.kind === "put") {
    return api(`${base}/boxes/${encodeURIComponent(op.box)}`, { method: "PUT", timeout: t, json: {
      edit_id: op.edit_id, base_version: op.base, label: op.label,
      x1: op.x1, y1: op.y1, x2: op.x2, y2: op.y2 } });
  }
  if (op.kind === "del") {
    const q = `edit_id=${encodeURIComponent(op.edit_id)}&base_version=${op.base}`;
    return api(`${base}/boxes/${encodeURIComponent(op.box)}?${q}`, { method: "DELETE", timeout: t });
  }
  if (op.kind === "patch") {
    return api(base, { method: "PATCH", timeout: t,
      json: { edit_id: op.edit_id, base_version: op.base, ...op.fields } });
  }
  return api(`${base}/copy_from/${op.src}`, { method: "POST", timeout: t, json: { edit_id: op.edit_id } });
}
// Worth retrying with the same edit_id: no network, a timeout, a busy or restarting server, and a
// token the server no longer takes (the edit waits for the team to rejoin instead of being lost).
const retryable = (e) => [0, 401, 403, 408, 429].includes(e.status) || e.status >= 500;

/** Send the head of the queue; on success the next; on a network error retry later. */
async function pump() {
  if (Q.busy || Q.blocked || !Q.ops.length) return;
  clearTimeout(Q.timer); Q.timer = null;
  Q.busy = true;
  const op = Q.ops[0];
  let res = null, failure = null;
  try {
    if (op.base === undefined) { op.base = baseFor(op); saveQueue(); }
    if (!(op.kind === "del" && !op.base)) res = await sendOp(op);   // a del of a never-made box
  } catch (e) {
    failure = e instanceof ApiError ? e : new ApiError(-1, String(e), null);
  }
  let again = true;
  if (!failure) {
    Q.delay = 0; Q.failing = false;
    try { acknowledge(op, res); } catch (e) { console.error(e); }   // never leave the queue busy
  } else if (failure.status === 409) {
    Q.blocked = true; syncUI();
    try { await resolveConflict(op, failure.body || {}); } catch (e) { console.error(e); } finally { Q.blocked = false; }
  } else if (retryable(failure)) {
    Q.failing = true; again = false;
    Q.delay = Math.min(Q.delay ? Q.delay * 2 : 1000, 15000);
    Q.timer = setTimeout(pump, Q.delay);
    if (Q.delay >= 4000 || failure.status === 401) say(`未保存，正在重试 Not saved yet, retrying: ${failure.message}`, "error");
  } else {
    Q.ops.shift(); saveQueue();
    say(`修改被拒绝 Edit refused: ${failure.message}`, "error");
    if (S.cur && S.cur.id === op.img && op.pid === S.pid && !pendingFor(op.img)) reloadCurrent();
  }
  Q.busy = false;
  syncUI();
  if (again) pump();
}

/** The server acknowledged op (res: its JSON answer): record versions, drop it from the queue. */
function acknowledge(op, res) {
  Q.ops.shift(); Q.acks += 1; saveQueue();
  if (op.kind === "put" && res) versions.set(op.box, res.version);
  if (op.kind === "del") versions.set(op.box, (op.base || 0) + 1);
  if (op.kind === "patch" && res) {   // res: the whole image now, a teammate's fields included
    imgVersions.set(op.img, res.version);
    const fields = { no_objects: !!res.no_objects, review: res.review, version: res.version };
    const settled = !Q.ops.some((o) => o.kind === "patch" && o.img === op.img);
    const entry = S.byId.get(op.img);
    if (entry && settled) Object.assign(entry, fields);
    if (S.cur && S.cur.id === op.img && op.pid === S.pid) {
      if (settled) { Object.assign(S.cur, fields); refreshAnnot(); refreshThumb(op.img); } else S.cur.version = res.version;
    }
  }
  if (op.kind === "copy" && res) copied(op, res.boxes || []);
  if (op.pid === S.pid) scheduleCounts();
}

/* conflicts ---------------------------------------------------------------------------------- */
function describeBox(b) {
  if (!b) return "已删除 deleted";
  const w = Math.round(b.x2 - b.x1), h = Math.round(b.y2 - b.y1);
  return `${className(b.label)} @ ${Math.round(b.x1)},${Math.round(b.y1)} ${w}×${h}`;
}
/** Ask "keep theirs / use mine" in a small modal dialog -> "theirs" | "mine". */
function askConflict(title, text) {
  const dlg = $("#conflict-dialog");
  $("#conflict-title").textContent = title;
  $("#conflict-text").textContent = text;
  return new Promise((resolve) => {
    dlg.returnValue = "";
    dlg.addEventListener("close", () => resolve(dlg.returnValue === "mine" ? "mine" : "theirs"), { once: true });
    dlg.showModal();
  });
}

async function resolveConflict(op, body) {
  const current = body.current === undefined ? null : body.current;
  const here = S.cur && S.cur.id === op.img && op.pid === S.pid;
  if (op.kind === "copy") { Q.ops.shift(); saveQueue(); say(body.detail || "复制失败 copy failed", "error"); return; }
  if (op.kind === "patch") {
    // Nobody touched the fields this op changes: merge silently with their version.
    if (current && op.expect && Object.keys(op.expect).every((k) => current[k] === op.expect[k])) {
      op.base = current.version; op.edit_id = uuid(); saveQueue(); return;
    }
    const choice = await askConflict("队友改了这张图的状态 A teammate changed this image",
      `他们的 Theirs: ${current ? `${current.no_objects ? "无目标 no objects, " : ""}review=${current.review}` : "?"}\n` +
      `你的 Yours: ${Object.entries(op.fields).map(([k, v]) => `${k}=${v}`).join(", ")}`);
    if (choice === "mine" && current) { op.base = current.version; op.edit_id = uuid(); saveQueue(); return; }
    Q.ops = Q.ops.filter((o) => !(o.kind === "patch" && o.img === op.img)); saveQueue();
    if (current) {
      imgVersions.set(op.img, current.version);
      const entry = S.byId.get(op.img);
      if (entry) Object.assign(entry, { no_objects: current.no_objects, review: current.review, version: current.version });
      if (here) Object.assign(S.cur, { no_objects: current.no_objects, review: current.review, version: current.version });
    }
    refreshAnnot(); renderThumbs();
    return;
  }
  if (op.kind === "del" && !current) { acknowledge(op, null); return; }  // already gone
  const mine = op.kind === "del" ? null : op;
  const choice = await askConflict("队友改了这个框 A teammate changed this box",
    `他们的 Theirs: ${describeBox(current)}\n你的 Yours: ${describeBox(mine)}`);
  if (choice === "theirs") {
    Q.ops = Q.ops.filter((o) => o.box !== op.box); saveQueue();
    versions.set(op.box, current ? current.version : (versions.get(op.box) || 0) + 1);
    if (here) { setLocal(op.box, current ? boxState(current) : null); refreshAnnot(); }
    return;
  }
  if (current) { op.base = current.version; op.edit_id = uuid(); saveQueue(); return; }
  // Theirs is deleted and the id is a tombstone: re-create mine under a fresh id.
  const nid = uuid();
  renameBox(op.box, nid);
  op.base = 0; op.create = true; op.edit_id = uuid(); saveQueue();
  if (here) refreshAnnot();
}
/** Give box `old` the id `nid` everywhere: queued ops, the open image, undo handles. */
function renameBox(old, nid) {
  for (const o of Q.ops) if (o.box === old) o.box = nid;
  if (S.cur) { const b = S.cur.boxes.find((x) => x.id === old); if (b) b.id = nid; }
  if (S.selected === old) S.selected = nid;
  const h = handles.get(old);
  if (h) { handles.delete(old); h.id = nid; handles.set(nid, h); }
  versions.set(nid, 0);
}

/* sync indicator ------------------------------------------------------------------------------ */
function syncUI() {
  const n = Q.ops.length;
  const state = n === 0 ? "saved" : (Q.failing || Q.blocked ? "unsaved" : "saving");
  const sync = $("#sync");
  sync.dataset.state = state;
  const txt = { saved: "已保存", saving: `保存中 ${n}`, unsaved: `未保存 ${n}` }[state];
  const title = { saved: "已保存 All saved", saving: `保存中 Saving ${n}`,
    unsaved: `未保存 ${n} 个修改，正在重试 ${n} unsaved edits, retrying` }[state];
  $(".txt", sync).textContent = txt;
  sync.title = title; sync.setAttribute("aria-label", title);
  $("#canvas").dataset.saved = n === 0 ? "true" : "false";
  const dirty = new Set(Q.ops.map((o) => o.img));
  for (const t of $$(".thumb")) t.dataset.unsaved = dirty.has(+t.dataset.id) ? "true" : "false";
}
window.addEventListener("beforeunload", (e) => {
  if (Q.ops.length) { saveQueue(); e.preventDefault(); e.returnValue = ""; }
});
window.addEventListener("online", () => { Q.delay = 0; pump(); });

/* local box state, actions, undo/redo ----------------------------------------------------------
 * An action is {img, changes: [{h, before, after}], image?: {before, after}} where h is a handle
 * ({id}) shared by every action on the same box: when undo re-creates a deleted box it gets a new
 * id (the old one is a tombstone on the server) and the handle follows it. Undo applies each
 * change's `before`, redo its `after`, both as ordinary queued edits. Stacks are per image. */
const handles = new Map();
const stacks = new Map();   // image id -> {undo: [], redo: []}
function handle(id) { let h = handles.get(id); if (!h) { h = { id }; handles.set(id, h); } return h; }
function stack(img) { let s = stacks.get(img); if (!s) { s = { undo: [], redo: [] }; stacks.set(img, s); } return s; }
const round2 = (v) => Math.round(v * 100) / 100;
const boxState = (b) => ({ label: b.label, x1: b.x1, y1: b.y1, x2: b.x2, y2: b.y2 });
const sameState = (a, b) => !!a && !!b && ["label", "x1", "y1", "x2", "y2"].every((k) => a[k] === b[k]);
function boxById(id) { return S.cur ? S.cur.boxes.find((b) => b.id === id) : null; }
function selectedBox() { return S.selected ? boxById(S.selected) : null; }

/** Set the open image's box `id` to `state` ({label, x1..y2}) or remove it (null). Local only. */
function setLocal(id, state) {
  const i = S.cur.boxes.findIndex((b) => b.id === id);
  if (state === null) {
    if (i >= 0) S.cur.boxes.splice(i, 1);
    if (S.selected === id) S.selected = null;
  } else if (i >= 0) Object.assign(S.cur.boxes[i], state);
  else S.cur.boxes.push({ id, ...state });
}

/** Make box h's state `target` here and on the server (queued edits). */
function applyBox(h, target) {
  const cur = boxById(h.id);
  if (target === null) {
    if (!cur) return;
    setLocal(h.id, null);
    enqueue({ kind: "del", img: S.cur.id, box: h.id });
  } else if (cur) {
    setLocal(h.id, target);
    enqueue({ kind: "put", img: S.cur.id, box: h.id, ...target });
  } else {
    const fresh = !versions.get(h.id) && !pendingBox(h.id);
    if (!fresh) { handles.delete(h.id); h.id = uuid(); handles.set(h.id, h); }
    setLocal(h.id, target);
    enqueue({ kind: "put", img: S.cur.id, box: h.id, create: true, ...target });
  }
}
function applyImage(fields, expect) {
  Object.assign(S.cur, fields);
  const entry = S.byId.get(S.cur.id);
  if (entry) Object.assign(entry, fields);
  enqueue({ kind: "patch", img: S.cur.id, fields: { ...fields }, expect });
}
/** Redo order: image fields, then boxes; undo: the exact reverse. */
function run(action, dir) {
  const list = dir === "after" ? action.changes : [...action.changes].reverse();
  if (action.image && dir === "after") applyImage(action.image.after, action.image.before);
  for (const c of list) applyBox(c.h, c[dir]);
  if (action.image && dir === "before") applyImage(action.image.before, action.image.after);
}
/** Record and perform an action on the open image (the local state may already be `after`). */
function commit(action) {
  if (!S.cur) return;
  action.img = S.cur.id;
  run(action, "after");
  const st = stack(S.cur.id);
  st.undo.push(action); st.redo.length = 0;
  if (st.undo.length > 200) st.undo.shift();
  afterEdit();
}
function undo() {
  if (!S.cur) return;
  const st = stack(S.cur.id), a = st.undo.pop();
  if (!a) { say("没有可撤销的 Nothing to undo"); return; }
  run(a, "before"); st.redo.push(a); afterEdit();
}
function redo() {
  if (!S.cur) return;
  const st = stack(S.cur.id), a = st.redo.pop();
  if (!a) { say("没有可重做的 Nothing to redo"); return; }
  run(a, "after"); st.undo.push(a); afterEdit();
}
function afterEdit() {
  refreshAnnot(); updateEntry();
  if ($("#filter").value === "all" && $("#strip-filter").value === "all") refreshThumb(S.cur.id);
  else renderThumbs();   // the image may have joined or left a filtered list
}

/* the user's edits ---------------------------------------------------------------------------- */
function createBox(rect) {
  if (!classes().length) { say("先在“数据”里添加类别 Add classes first (under Data)", "error"); return; }
  const id = uuid();
  const after = { label: S.curClass, ...rect };
  const action = { changes: [{ h: handle(id), before: null, after }] };
  if (S.cur.no_objects) action.image = { before: { no_objects: true }, after: { no_objects: false } };
  commit(action);
  S.selected = id; refreshAnnot();
}
function changeBox(id, before, after) {
  if (sameState(before, after)) return;
  commit({ changes: [{ h: handle(id), before, after }] });
}
function deleteSelected() {
  const b = selectedBox();
  if (!b) { say("先点选一个框 Select a box first"); return; }
  commit({ changes: [{ h: handle(b.id), before: boxState(b), after: null }] });
}
function setClass(i) {
  if (i < 0 || i >= classes().length) { say(`没有第 ${i + 1} 类 No class ${i + 1}`); return; }
  S.curClass = i;
  const b = selectedBox();
  if (b && b.label !== i) changeBox(b.id, boxState(b), { ...boxState(b), label: i });
  refreshAnnot();
}
function toggleNoObjects() {
  if (!S.cur) return;
  if (!S.cur.no_objects && S.cur.boxes.length) {
    say("这张图有框：先删除框再标“无目标” This image has boxes: delete them first", "error"); return;
  }
  const v = !S.cur.no_objects;
  commit({ changes: [], image: { before: { no_objects: !v }, after: { no_objects: v } } });
  say(v ? "已标为无目标 Marked: no objects" : "已取消无目标 No longer 'no objects'");
}
function setReview(value) {
  if (!S.cur) return;
  const next = S.cur.review === value ? "todo" : value;
  commit({ changes: [], image: { before: { review: S.cur.review }, after: { review: next } } });
}
function copyPrev() {
  if (!S.cur) return;
  const i = S.images.findIndex((im) => im.id === S.cur.id);
  if (i <= 0) { say("没有上一张 No previous image"); return; }
  const src = S.images[i - 1];
  if (boxCountOf(src) === 0) { say("上一张没有框 The previous image has no boxes"); return; }
  if (Q.ops.some((o) => o.kind === "copy" && o.img === S.cur.id)) return;
  enqueue({ kind: "copy", img: S.cur.id, src: src.id });
  say("正在复制上一张的框… Copying boxes from the previous image");
}
/** The server answered a copy: show the new boxes and make the copy one undoable action. */
function copied(op, boxes) {
  for (const b of boxes) versions.set(b.id, b.version);
  if (!(S.cur && S.cur.id === op.img && op.pid === S.pid)) return;
  const changes = [];
  for (const b of boxes) {
    if (!boxById(b.id)) setLocal(b.id, boxState(b));
    changes.push({ h: handle(b.id), before: null, after: boxState(b) });
  }
  const st = stack(op.img);
  st.undo.push({ img: op.img, changes }); st.redo.length = 0;
  say(`复制了 ${boxes.length} 个框 Copied ${boxes.length} boxes`, "ok");
  afterEdit();
}

/* the canvas: view transform, drawing, pointer input -------------------------------------------
 * Screen point (CSS px, relative to the canvas) = (tx + x * scale, ty + y * scale) for an image
 * point (x, y) in working-copy pixels. */
const canvas = $("#canvas");
const ctx = canvas.getContext("2d");
const A = { scale: 1, tx: 0, ty: 0, fit: true, img: null, drag: null, pointers: new Map(),
  hover: null, space: false, nudge: null, frame: 0 };
const HANDLE_EDGES = [["x1", "y1"], ["y1"], ["x2", "y1"], ["x2"], ["x2", "y2"], ["y2"], ["x1", "y2"], ["x1"]];
const HANDLE_CURSOR = ["nwse-resize", "ns-resize", "nesw-resize", "ew-resize", "nwse-resize", "ns-resize", "nesw-resize", "ew-resize"];

const toScreen = (x, y) => ({ x: A.tx + x * A.scale, y: A.ty + y * A.scale });
const toImage = (p) => ({ x: (p.x - A.tx) / A.scale, y: (p.y - A.ty) / A.scale });
const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
function pointOf(e) { const r = canvas.getBoundingClientRect(); return { x: e.clientX - r.left, y: e.clientY - r.top }; }
function handlePoints(b) {
  const a = toScreen(b.x1, b.y1), c = toScreen(b.x2, b.y2), mx = (a.x + c.x) / 2, my = (a.y + c.y) / 2;
  return [[a.x, a.y], [mx, a.y], [c.x, a.y], [c.x, my], [c.x, c.y], [mx, c.y], [a.x, c.y], [a.x, my]];
}

function fitView() {
  if (!S.cur) return;
  const W = canvas.clientWidth, H = canvas.clientHeight;
  if (!W || !H) return;
  A.scale = Math.min(W / S.cur.width, H / S.cur.height) * 0.96;
  A.tx = (W - S.cur.width * A.scale) / 2; A.ty = (H - S.cur.height * A.scale) / 2;
  A.fit = true; draw();
}
function zoomAt(p, factor) {
  if (!S.cur) return;
  const fit = Math.min(canvas.clientWidth / S.cur.width, canvas.clientHeight / S.cur.height);
  const s = clamp(A.scale * factor, fit * 0.5, 40);
  const q = toImage(p);
  A.scale = s; A.tx = p.x - q.x * s; A.ty = p.y - q.y * s; A.fit = false; draw();
}
const zoomCentre = (f) => zoomAt({ x: canvas.clientWidth / 2, y: canvas.clientHeight / 2 }, f);

function draw() { if (!A.frame) A.frame = requestAnimationFrame(render); }
function render() {
  A.frame = 0;
  const dpr = window.devicePixelRatio || 1, W = canvas.clientWidth, H = canvas.clientHeight;
  if (canvas.width !== Math.round(W * dpr) || canvas.height !== Math.round(H * dpr)) {
    canvas.width = Math.round(W * dpr); canvas.height = Math.round(H * dpr);
  }
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.fillStyle = "#2a2f36"; ctx.fillRect(0, 0, W, H);
  // For tests and tools: screen = (tx + x * scale, ty + y * scale), CSS px from the canvas corner.
  canvas.dataset.view = `${A.scale.toFixed(6)},${A.tx.toFixed(2)},${A.ty.toFixed(2)}`;
  if (!S.cur) return;
  const w = S.cur.width * A.scale, h = S.cur.height * A.scale;
  if (A.img) {
    ctx.imageSmoothingEnabled = A.scale < 3;
    ctx.drawImage(A.img, A.tx, A.ty, w, h);
  } else {
    ctx.fillStyle = "#3a414b"; ctx.fillRect(A.tx, A.ty, w, h);
    ctx.fillStyle = "#c9d1db"; ctx.font = "14px system-ui, sans-serif"; ctx.textAlign = "center";
    ctx.fillText("加载中… loading", A.tx + w / 2, A.ty + h / 2); ctx.textAlign = "start";
  }
  const sel = selectedBox();
  for (const b of S.cur.boxes) if (b !== sel) drawBox(b, false);
  if (sel) drawBox(sel, true);
  const d = A.drag;
  if (d && d.mode === "draw" && d.moved) {
    const r = rectFrom(d.startImg, toImage(d.cur));
    const a = toScreen(r.x1, r.y1), c = toScreen(r.x2, r.y2);
    ctx.setLineDash([6, 4]); ctx.lineWidth = 2; ctx.strokeStyle = colour(S.curClass);
    ctx.strokeRect(a.x, a.y, c.x - a.x, c.y - a.y); ctx.setLineDash([]);
    drawTag(`${className(S.curClass)} ${Math.round(r.x2 - r.x1)}×${Math.round(r.y2 - r.y1)}`, a.x, a.y, colour(S.curClass));
  }
  if (d && d.touch && d.cur && (d.mode === "resize" || (d.mode === "draw" && d.moved))) drawLoupe(d);
  if (A.hover && !d && A.img) {   // crosshair guides help aim the first corner
    const p = A.hover;
    if (p.x >= A.tx && p.x <= A.tx + w && p.y >= A.ty && p.y <= A.ty + h) {
      ctx.strokeStyle = "rgba(255,255,255,.55)"; ctx.lineWidth = 1; ctx.setLineDash([4, 4]);
      ctx.beginPath(); ctx.moveTo(A.tx, p.y + .5); ctx.lineTo(A.tx + w, p.y + .5);
      ctx.moveTo(p.x + .5, A.ty); ctx.lineTo(p.x + .5, A.ty + h); ctx.stroke(); ctx.setLineDash([]);
    }
  }
}
/** A finger hides what it points at: show the spot under it magnified in a corner. */
function drawLoupe(d) {
  if (!A.img) return;
  const R = 58, Z = 2.5, W = canvas.clientWidth, p = d.cur;
  const cx = p.x < W / 2 && p.y < 2 * R + 40 ? W - R - 12 : R + 12, cy = R + 12;
  const s = A.scale * Z, q = toImage(p), X = (x) => cx + (x - q.x) * s, Y = (y) => cy + (y - q.y) * s;
  ctx.save();
  ctx.beginPath(); ctx.arc(cx, cy, R, 0, Math.PI * 2); ctx.clip();
  ctx.fillStyle = "#2a2f36"; ctx.fillRect(cx - R, cy - R, 2 * R, 2 * R);
  ctx.imageSmoothingEnabled = s < 3;
  ctx.drawImage(A.img, X(0), Y(0), S.cur.width * s, S.cur.height * s);
  ctx.lineWidth = 2;
  for (const b of S.cur.boxes) { ctx.strokeStyle = colour(b.label); ctx.strokeRect(X(b.x1), Y(b.y1), (b.x2 - b.x1) * s, (b.y2 - b.y1) * s); }
  if (d.mode === "draw") {
    const r = rectFrom(d.startImg, q);
    ctx.strokeStyle = colour(S.curClass); ctx.strokeRect(X(r.x1), Y(r.y1), (r.x2 - r.x1) * s, (r.y2 - r.y1) * s);
  }
  ctx.strokeStyle = "rgba(255,255,255,.9)"; ctx.lineWidth = 1;
  ctx.beginPath(); ctx.moveTo(cx - R, cy + .5); ctx.lineTo(cx + R, cy + .5); ctx.moveTo(cx + .5, cy - R); ctx.lineTo(cx + .5, cy + R); ctx.stroke();
  ctx.restore();
  ctx.beginPath(); ctx.arc(cx, cy, R, 0, Math.PI * 2); ctx.lineWidth = 3; ctx.strokeStyle = "#fff"; ctx.stroke();
}
function drawTag(text, x, y, col) {
  ctx.font = "600 12px system-ui, 'Noto Sans CJK SC', 'WenQuanYi Micro Hei', sans-serif";
  const tw = ctx.measureText(text).width + 8, th = 17;
  const ty = y - th >= 0 ? y - th : y;
  ctx.fillStyle = col; ctx.fillRect(x, ty, tw, th);
  ctx.fillStyle = "#fff"; ctx.fillText(text, x + 4, ty + 13);
}
function drawBox(b, selected) {
  const a = toScreen(b.x1, b.y1), c = toScreen(b.x2, b.y2), col = colour(b.label);
  ctx.lineWidth = selected ? 3 : 2;
  ctx.strokeStyle = "rgba(0,0,0,.55)"; ctx.strokeRect(a.x - 1, a.y - 1, c.x - a.x + 2, c.y - a.y + 2);
  ctx.strokeStyle = col; ctx.strokeRect(a.x, a.y, c.x - a.x, c.y - a.y);
  if (selected) { ctx.fillStyle = col + "26"; ctx.fillRect(a.x, a.y, c.x - a.x, c.y - a.y); }
  drawTag(className(b.label), a.x, a.y, col);
  if (!selected) return;
  for (const [x, y] of handlePoints(b)) {
    ctx.fillStyle = "#fff"; ctx.strokeStyle = col; ctx.lineWidth = 2;
    ctx.fillRect(x - 5, y - 5, 10, 10); ctx.strokeRect(x - 5, y - 5, 10, 10);
  }
}

/* hit tests (screen px; fingers get bigger targets) */
function hitHandle(b, p, touch) {
  const r = touch ? 22 : 10;
  let best = -1, bestD = Infinity;
  handlePoints(b).forEach(([x, y], i) => {
    const dd = Math.hypot(p.x - x, p.y - y);
    if (dd <= r && dd < bestD) { best = i; bestD = dd; }
  });
  return best;
}
function inside(b, p, pad = 0) {
  const a = toScreen(b.x1, b.y1), c = toScreen(b.x2, b.y2);
  return p.x >= a.x - pad && p.x <= c.x + pad && p.y >= a.y - pad && p.y <= c.y + pad;
}
function hitBox(p) {   // the smallest box under p
  let best = null;
  for (const b of S.cur.boxes) {
    if (!inside(b, p, 3)) continue;
    if (!best || (b.x2 - b.x1) * (b.y2 - b.y1) < (best.x2 - best.x1) * (best.y2 - best.y1)) best = b;
  }
  return best;
}
function rectFrom(a, b) {
  const W = S.cur.width, H = S.cur.height;
  const x1 = clamp(Math.min(a.x, b.x), 0, W), x2 = clamp(Math.max(a.x, b.x), 0, W);
  const y1 = clamp(Math.min(a.y, b.y), 0, H), y2 = clamp(Math.max(a.y, b.y), 0, H);
  return { x1: round2(x1), y1: round2(y1), x2: round2(x2), y2: round2(y2) };
}
const validRect = (r) => r.x2 - r.x1 >= 1 && r.y2 - r.y1 >= 1;

/* pointer input: draw / select / move / resize / pan / pinch --------------------------------- */
function cancelDrag() {
  const d = A.drag;
  if (d && (d.mode === "move" || d.mode === "resize")) setLocal(d.id, d.orig);
  A.drag = null; draw();
}
function onDown(e) {
  if (!S.cur || $("dialog[open]")) return;
  const p = pointOf(e);
  A.pointers.set(e.pointerId, p);
  try { canvas.setPointerCapture(e.pointerId); } catch (err) { /* synthetic events */ }
  if (document.activeElement !== canvas) canvas.focus({ preventScroll: true });
  if (A.pointers.size === 2) {   // a second finger: pinch-zoom and pan, drop what the first began
    cancelDrag();
    const [a, b] = [...A.pointers.values()];
    A.drag = { mode: "pinch", d0: Math.hypot(a.x - b.x, a.y - b.y) || 1, m0: { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 },
      s0: A.scale, tx0: A.tx, ty0: A.ty };
    return;
  }
  if (A.pointers.size > 2 || A.drag) return;
  if (e.button === 1 || (e.button === 0 && A.space)) {
    e.preventDefault();
    A.drag = { mode: "pan", start: p, tx0: A.tx, ty0: A.ty }; canvas.classList.add("panning"); return;
  }
  if (e.button !== 0) return;
  const touch = e.pointerType !== "mouse";
  const sel = selectedBox();
  if (sel) {
    const h = hitHandle(sel, p, touch);
    if (h >= 0) { A.drag = { mode: "resize", id: sel.id, handle: h, orig: boxState(sel), start: p, touch }; return; }
    if (inside(sel, p, touch ? 8 : 2)) { A.drag = { mode: "move", id: sel.id, orig: boxState(sel), start: p }; return; }
  }
  // Elsewhere: a drag draws a new box (also inside other boxes); a click selects the box under it.
  const hit = hitBox(p);
  A.drag = { mode: "draw", start: p, cur: p, startImg: toImage(p), hit: hit ? hit.id : null, moved: false, touch };
}
function onMove(e) {
  const p = pointOf(e);
  if (A.pointers.has(e.pointerId)) A.pointers.set(e.pointerId, p);
  const d = A.drag;
  if (!d) {
    if (e.pointerType === "mouse") { A.hover = p; hoverCursor(p); draw(); }
    return;
  }
  if (d.mode === "pinch") {
    if (A.pointers.size < 2) return;
    const [a, b] = [...A.pointers.values()];
    const dist = Math.hypot(a.x - b.x, a.y - b.y), m = { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 };
    const fit = Math.min(canvas.clientWidth / S.cur.width, canvas.clientHeight / S.cur.height);
    const s = clamp(d.s0 * dist / d.d0, fit * 0.5, 40);
    const ix = (d.m0.x - d.tx0) / d.s0, iy = (d.m0.y - d.ty0) / d.s0;
    A.scale = s; A.tx = m.x - ix * s; A.ty = m.y - iy * s; A.fit = false; draw(); return;
  }
  if (d.mode === "pan") { A.tx = d.tx0 + p.x - d.start.x; A.ty = d.ty0 + p.y - d.start.y; A.fit = false; draw(); return; }
  if (d.mode === "draw") {
    d.cur = p;
    if (Math.hypot(p.x - d.start.x, p.y - d.start.y) > 4) d.moved = true;
    draw(); return;
  }
  const W = S.cur.width, H = S.cur.height, o = d.orig;
  d.cur = p;
  if (d.mode === "move") {
    const dx = clamp((p.x - d.start.x) / A.scale, -o.x1, W - o.x2), dy = clamp((p.y - d.start.y) / A.scale, -o.y1, H - o.y2);
    setLocal(d.id, { ...o, x1: round2(o.x1 + dx), x2: round2(o.x2 + dx), y1: round2(o.y1 + dy), y2: round2(o.y2 + dy) });
  } else if (d.mode === "resize") {
    const q = toImage(p), next = { ...o };
    for (const k of HANDLE_EDGES[d.handle]) next[k] = k[0] === "x" ? clamp(q.x, 0, W) : clamp(q.y, 0, H);
    const r = rectFrom({ x: next.x1, y: next.y1 }, { x: next.x2, y: next.y2 });
    setLocal(d.id, { ...o, ...r });
  }
  draw();
}
function onUp(e) {
  A.pointers.delete(e.pointerId);
  const d = A.drag;
  if (!d) return;
  if (d.mode === "pinch") { if (A.pointers.size === 0) A.drag = null; return; }
  if (A.pointers.size) return;
  A.drag = null; canvas.classList.remove("panning");
  if (d.mode === "draw") {
    const r = d.moved ? rectFrom(d.startImg, toImage(d.cur)) : null;
    if (r && validRect(r) && (r.x2 - r.x1) * A.scale >= 3 && (r.y2 - r.y1) * A.scale >= 3) createBox(r);
    else { S.selected = d.hit; if (d.hit) S.curClass = boxById(d.hit).label; refreshAnnot(); }
  } else if (d.mode === "move" || d.mode === "resize") {
    const b = boxById(d.id);
    if (b && validRect(b)) changeBox(d.id, d.orig, boxState(b));
    else if (b) { setLocal(d.id, d.orig); refreshAnnot(); }
  }
  draw();
}
function hoverCursor(p) {
  let c = A.space ? "grab" : "crosshair";
  const sel = selectedBox();
  if (sel && !A.space) {
    const h = hitHandle(sel, p, false);
    if (h >= 0) c = HANDLE_CURSOR[h]; else if (inside(sel, p, 2)) c = "move";
  }
  canvas.style.cursor = c;
}
canvas.addEventListener("pointerdown", onDown);
canvas.addEventListener("pointermove", onMove);
canvas.addEventListener("pointerup", onUp);
canvas.addEventListener("pointercancel", (e) => { A.pointers.delete(e.pointerId); if (!A.pointers.size) cancelDrag(); });
canvas.addEventListener("pointerleave", () => { A.hover = null; draw(); });
canvas.addEventListener("contextmenu", (e) => e.preventDefault());
canvas.addEventListener("wheel", (e) => {
  e.preventDefault();
  const unit = e.deltaMode === 1 ? 16 : e.deltaMode === 2 ? 400 : 1;
  zoomAt(pointOf(e), Math.exp(-clamp(e.deltaY * unit, -300, 300) * 0.0015));
}, { passive: false });
new ResizeObserver(() => { if (A.fit) fitView(); else draw(); }).observe($("#canvas-wrap"));

/** Shift+arrow: move the selected box by 1 px; one undoable edit once the keys rest. */
function nudge(dx, dy) {
  const b = selectedBox();
  if (!b) return;
  if (!A.nudge || A.nudge.id !== b.id) A.nudge = { id: b.id, orig: boxState(b) };
  const W = S.cur.width, H = S.cur.height;
  const mx = clamp(dx, -b.x1, W - b.x2), my = clamp(dy, -b.y1, H - b.y2);
  setLocal(b.id, { x1: b.x1 + mx, x2: b.x2 + mx, y1: b.y1 + my, y2: b.y2 + my });
  draw();
  clearTimeout(A.nudge.timer);
  A.nudge.timer = setTimeout(flushNudge, 500);
}
function flushNudge() {
  const n = A.nudge; A.nudge = null;
  if (!n) return;
  clearTimeout(n.timer);
  const b = boxById(n.id);
  if (b) changeBox(n.id, n.orig, boxState(b));
}

/* the annotator around the canvas -------------------------------------------------------------- */
let openSeq = 0;
const workCache = new Map();   // image id -> Promise<HTMLImageElement>, a few most recent

function loadWork(id) {
  const key = `${S.pid}/${id}`;
  if (workCache.has(key)) return workCache.get(key);
  const p = apiBlob(P(`/images/${id}/work`)).then((blob) => new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("图片无法显示 the image cannot be shown"));
    img.src = URL.createObjectURL(blob);
  }));
  p.catch(() => workCache.delete(key));
  workCache.set(key, p);
  while (workCache.size > 6) {
    const [k, old] = workCache.entries().next().value;
    workCache.delete(k); old.then((img) => URL.revokeObjectURL(img.src), () => {});
  }
  return p;
}

/** Replay still-queued edits of image `id` onto freshly fetched server state. */
function replayPending(id) {
  for (const o of Q.ops) {
    if (o.img !== id || o.pid !== S.pid) continue;
    if (o.kind === "put") setLocal(o.box, boxState(o));
    else if (o.kind === "del") setLocal(o.box, null);
    else if (o.kind === "patch") Object.assign(S.cur, o.fields);
  }
}

/** Open image `id` in the annotator (fetches its boxes, then its working copy). */
async function openImage(id) {
  flushNudge();
  if (A.drag) cancelDrag();
  updateEntry();
  const seq = ++openSeq;
  if (!id) { S.cur = null; refreshAnnot(); draw(); return; }
  const entry = S.byId.get(id);
  let data;
  try { data = await api(P(`/images/${id}`)); } catch (e) {
    if (seq === openSeq) say(`打不开这张图 Cannot open image ${id}: ${e.message}`, "error");
    return;
  }
  if (seq !== openSeq) return;
  S.cur = { id, file_name: data.file_name, width: data.width, height: data.height, version: data.version,
    no_objects: !!data.no_objects, review: data.review || "todo",
    boxes: (data.boxes || []).map((b) => ({ id: b.id, ...boxState(b) })) };
  for (const b of data.boxes || []) if ((versions.get(b.id) || 0) < b.version) versions.set(b.id, b.version);
  if ((imgVersions.get(id) || 0) < data.version) imgVersions.set(id, data.version);
  replayPending(id);
  if (entry) Object.assign(entry, { no_objects: S.cur.no_objects, review: S.cur.review });
  S.selected = null; A.img = null; A.hover = null;
  canvas.dataset.imageId = String(id); canvas.dataset.loaded = "false";
  fitView(); refreshAnnot(); renderThumbs();
  try {
    const img = await loadWork(id);
    if (seq !== openSeq) return;
    A.img = img; canvas.dataset.loaded = "true";
    if (img.naturalWidth !== S.cur.width || img.naturalHeight !== S.cur.height)
      console.warn("working copy size differs from the image json", img.naturalWidth, img.naturalHeight);
    draw();
  } catch (e) { if (seq === openSeq) say(`${e.message}`, "error"); }
  const i = S.images.findIndex((im) => im.id === id);   // warm the neighbours
  for (const j of [i + 1, i - 1]) if (S.images[j]) loadWork(S.images[j].id).catch(() => {});
  const strip = $(`#strip .thumb[data-id="${id}"]`);
  if (strip) strip.scrollIntoView({ block: "nearest" });
}
function reloadCurrent() { if (S.cur) openImage(S.cur.id); }

/** Write the open image's live state into its list entry (counts, badges). */
function updateEntry() {
  if (!S.cur) return;
  const entry = S.byId.get(S.cur.id);
  if (entry) Object.assign(entry, { boxes: S.cur.boxes.length, no_objects: S.cur.no_objects, review: S.cur.review });
}

function gotoImage(id) {
  if (!id) return;
  const hash = `#/p/${encodeURIComponent(S.pid)}/label/${id}`;
  if (S.view !== "label") { location.hash = hash; return; }   // a new history entry: Back returns
  history.replaceState(null, "", hash);                       // stepping through photos does not
  openImage(id);
}
function step(delta) {
  if (!S.images.length) return;
  const i = S.cur ? S.images.findIndex((im) => im.id === S.cur.id) : -1;
  const j = i + delta;
  if (j < 0 || j >= S.images.length) { say(delta > 0 ? "已是最后一张 Last image" : "已是第一张 First image"); return; }
  gotoImage(S.images[j].id);
}
async function nextUnlabelled(from = S.cur ? S.cur.id : 0) {
  if (!S.pid) return;
  try {
    const im = await api(P(`/next?after=${from}&status=unlabelled`));
    if (S.cur && im.id === S.cur.id && S.view === "label") throw new ApiError(404, "none left", null);
    gotoImage(im.id);
  } catch (e) {
    if (e.status === 404) {
      say("没有未标注的照片了 No unlabelled photos left", "ok");
      if (S.view !== "label" && S.images.length) gotoImage(S.images[0].id);
    } else say(e.message, "error");
  }
}

/** Redraw everything around the canvas from S.cur (cheap; called after every change). */
function refreshAnnot() {
  const cur = S.cur;
  canvas.dataset.boxCount = cur ? String(cur.boxes.length) : "0";
  canvas.dataset.selected = S.selected || "";
  $("#canvas-empty").hidden = !!cur || !S.pid;
  $("#img-name").textContent = cur ? cur.file_name : "—";
  const i = cur ? S.images.findIndex((im) => im.id === cur.id) : -1;
  $("#img-pos").textContent = cur ? `${i + 1} / ${S.images.length}` : "";
  const st = cur ? stack(cur.id) : { undo: [], redo: [] };
  $("#undo").disabled = !st.undo.length; $("#redo").disabled = !st.redo.length;
  $("#delete").disabled = !selectedBox();
  for (const b of ["#copy-prev", "#no-objects", "#review-done", "#review-fix", "#prev", "#next"]) $(b).disabled = !cur;
  $("#no-objects").setAttribute("aria-pressed", String(!!(cur && cur.no_objects)));
  $("#review-done").setAttribute("aria-pressed", String(!!(cur && cur.review === "done")));
  $("#review-fix").setAttribute("aria-pressed", String(!!(cur && cur.review === "needs_fix")));
  const badge = $("#img-badge");
  if (cur && (cur.no_objects || cur.review !== "todo")) {
    badge.hidden = false;
    badge.textContent = [cur.no_objects ? "无目标 No objects" : "",
      cur.review === "done" ? "✓ 已审核 Reviewed" : cur.review === "needs_fix" ? "待修改 Needs fix" : ""]
      .filter(Boolean).join(" · ");
  } else badge.hidden = true;
  renderClassList(); renderBoxList(); draw();
}

function renderClassList() {
  const list = $("#class-list");
  const per = (S.project && S.project.counts && S.project.counts.per_class) || [];
  const sel = selectedBox();
  const active = sel ? sel.label : S.curClass;
  list.replaceChildren(...classes().map((c, i) => el("button", {
    class: "class", type: "button", dataset: { label: String(i) },
    "aria-pressed": String(i === active), title: `${className(i)}${i < 9 ? ` (${i + 1})` : ""}`,
    onclick: () => { setClass(i); canvas.focus({ preventScroll: true }); },
  }, el("span", { class: "key" }, i < 9 ? String(i + 1) : ""),
  el("span", { class: "swatch", style: `background:${colour(i)}` }),
  el("span", { class: "nm" }, className(i)),
  el("span", { class: "n", "aria-label": `${per[i] || 0} 个框 boxes` }, String(per[i] || 0)))));
  if (!classes().length) list.append(el("p", { class: "muted small" }, "还没有类别：到“数据”里添加 No classes yet: add them under Data"));
  const on = $(".class[aria-pressed='true']", list);   // on a phone the chips scroll sideways
  if (on && S.view === "label" && list.scrollWidth > list.clientWidth) {
    const left = on.offsetLeft - list.offsetLeft, right = left + on.offsetWidth;
    if (left < list.scrollLeft || right > list.scrollLeft + list.clientWidth) list.scrollLeft = left - 8;
  }
}
function renderBoxList() {
  const ul = $("#box-list");
  if (!S.cur || !S.cur.boxes.length) {
    ul.replaceChildren(el("li", { class: "muted small" }, S.cur && S.cur.no_objects ? "无目标 No objects" : "还没有框 No boxes yet"));
    return;
  }
  ul.replaceChildren(...S.cur.boxes.map((b) => el("li", {}, el("button", {
    type: "button", "aria-current": String(b.id === S.selected),
    onclick: () => { S.selected = b.id; S.curClass = b.label; refreshAnnot(); canvas.focus({ preventScroll: true }); },
  }, el("span", { class: "swatch", style: `background:${colour(b.label)}` }), className(b.label),
  el("span", { class: "sz" }, `${Math.round(b.x2 - b.x1)}×${Math.round(b.y2 - b.y1)}`)))));
}

/* keyboard ----------------------------------------------------------------------------------- */
const KEYS = [
  [["拖动 drag"], "画框；拖动选中的框或角点来移动、调整大小", "Draw a box; drag a selected box or its handles to move / resize"],
  [["点击 click"], "选中框（再拖动可移动）", "Select a box (then drag to move it)"],
  [["1", "…", "9"], "选择类别（也改选中框的类别）", "Pick a class (also changes the selected box)"],
  [["Del", "Backspace"], "删除选中的框", "Delete the selected box"],
  [["Ctrl+Z"], "撤销", "Undo"],
  [["Ctrl+Shift+Z", "Ctrl+Y"], "重做", "Redo"],
  [["N"], "下一张未标注的照片", "Next unlabelled photo"],
  [["A", "←"], "上一张", "Previous photo"],
  [["D", "→"], "下一张", "Next photo"],
  [["C"], "复制上一张照片的框", "Copy the boxes of the previous photo"],
  [["0", "E"], "标为“无目标”（导出时保留）", "Mark 'no objects' (kept in exports)"],
  [["R"], "标为已审核（再按取消）", "Mark reviewed (again: undo the mark)"],
  [["X"], "标为需要修改", "Mark needs fix"],
  [["Shift+← ↑ → ↓"], "把选中的框移动 1 像素", "Nudge the selected box by 1 pixel"],
  [["Tab", "Shift+Tab"], "在画布上：选下一个 / 上一个框", "On the canvas: select the next / previous box"],
  [["Esc"], "取消选择或取消正在画的框", "Deselect, or cancel the box being drawn"],
  [["+", "−", "F"], "放大 / 缩小 / 适应窗口", "Zoom in / out / fit"],
  [["滚轮 wheel"], "以指针为中心缩放", "Zoom at the pointer"],
  [["Space+拖动 drag", "中键 middle drag"], "平移", "Pan"],
  [["双指 two fingers"], "手机上：捏合缩放，拖动平移", "On a phone: pinch to zoom, drag to pan"],
  [["?"], "显示快捷键", "Show this list"],
];
function openHelp() {
  $("#help-table").replaceChildren(...KEYS.map(([keys, zh, en]) => el("div", { class: "key-row" },
    el("span", { class: "k" }, ...keys.map((k) => el("kbd", {}, k))), el("span", {}, zh, el("br"), el("small", {}, en)))));
  $("#help-dialog").showModal();
}
function typing(t) { return t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName)); }
document.addEventListener("keydown", (e) => {
  if (typing(e.target) || $("dialog[open]")) return;
  const k = e.key, mod = e.ctrlKey || e.metaKey;
  if (k === "?") { e.preventDefault(); openHelp(); return; }
  if (S.view !== "label") return;
  if (mod && (k === "z" || k === "Z")) { e.preventDefault(); flushNudge(); if (e.shiftKey) redo(); else undo(); return; }
  if (mod && (k === "y" || k === "Y")) { e.preventDefault(); flushNudge(); redo(); return; }
  if (mod || e.altKey) return;
  if (k === " " && (e.target === canvas || e.target === document.body)) {
    e.preventDefault(); A.space = true; canvas.style.cursor = "grab"; return;
  }
  if (e.shiftKey && k.startsWith("Arrow") && selectedBox()) {
    e.preventDefault();
    nudge(k === "ArrowLeft" ? -1 : k === "ArrowRight" ? 1 : 0, k === "ArrowUp" ? -1 : k === "ArrowDown" ? 1 : 0);
    return;
  }
  if (k === "Tab" && e.target === canvas && S.cur && S.cur.boxes.length) {
    const ids = S.cur.boxes.map((b) => b.id), i = ids.indexOf(S.selected);
    const j = e.shiftKey ? (i < 0 ? ids.length - 1 : i - 1) : i + 1;
    if (j >= 0 && j < ids.length) { e.preventDefault(); S.selected = ids[j]; S.curClass = boxById(ids[j]).label; refreshAnnot(); }
    else { S.selected = null; refreshAnnot(); }
    return;
  }
  let done = true;
  if (/^[1-9]$/.test(k)) setClass(+k - 1);
  else if (k === "0" || k === "e" || k === "E") toggleNoObjects();
  else if (k === "Delete" || k === "Backspace") deleteSelected();
  else if (k === "n" || k === "N") nextUnlabelled();
  else if (k === "ArrowLeft" || k === "a" || k === "A") step(-1);
  else if (k === "ArrowRight" || k === "d" || k === "D") step(1);
  else if (k === "c" || k === "C") copyPrev();
  else if (k === "r" || k === "R") setReview("done");
  else if (k === "x" || k === "X") setReview("needs_fix");
  else if (k === "f" || k === "F") fitView();
  else if (k === "+" || k === "=") zoomCentre(1.25);
  else if (k === "-" || k === "_") zoomCentre(0.8);
  else if (k === "Escape") { if (A.drag) cancelDrag(); else { S.selected = null; refreshAnnot(); } }
  else done = false;
  if (done) e.preventDefault();
});
document.addEventListener("keyup", (e) => {
  if (e.key === " ") { A.space = false; canvas.style.cursor = ""; }
});
window.addEventListener("blur", () => { A.space = false; });

$("#undo").addEventListener("click", undo);
$("#redo").addEventListener("click", redo);
$("#delete").addEventListener("click", deleteSelected);
$("#copy-prev").addEventListener("click", copyPrev);
$("#no-objects").addEventListener("click", toggleNoObjects);
$("#review-done").addEventListener("click", () => setReview("done"));
$("#review-fix").addEventListener("click", () => setReview("needs_fix"));
$("#prev").addEventListener("click", () => step(-1));
$("#next").addEventListener("click", () => step(1));
$("#next-unlabelled").addEventListener("click", () => nextUnlabelled());
$("#zoom-in").addEventListener("click", () => zoomCentre(1.25));
$("#zoom-out").addEventListener("click", () => zoomCentre(0.8));
$("#zoom-fit").addEventListener("click", fitView);
$("#help-btn").addEventListener("click", openHelp);
// After a mouse or touch press on a tool, give the keys back to the canvas (Space must pan, not
// press the tool again); keyboard users (detail === 0) keep their focus where it is.
for (const bar of [$("#tools"), $(".imgbar"), $(".zoom-ctl")]) {
  bar.addEventListener("click", (e) => { if (e.detail > 0 && S.view === "label") canvas.focus({ preventScroll: true }); });
}

/* thumbnails and counts ------------------------------------------------------------------------- */
const thumbUrls = new Map();   // "pid/id" -> object URL
const thumbWait = [];
let thumbActive = 0;
const seen = new IntersectionObserver((entries) => {
  for (const en of entries) if (en.isIntersecting) { seen.unobserve(en.target); wantThumb(en.target); }
}, { rootMargin: "200px" });
function wantThumb(img) { thumbWait.push(img); pumpThumbs(); }
function pumpThumbs() {
  while (thumbActive < 4 && thumbWait.length) {
    const img = thumbWait.shift(), key = img.dataset.key;
    if (thumbUrls.has(key)) { img.src = thumbUrls.get(key); continue; }
    thumbActive++;
    apiBlob(`/api/projects/${encodeURIComponent(img.dataset.pid)}/images/${img.dataset.img}/thumb`)
      .then((blob) => { const u = URL.createObjectURL(blob); thumbUrls.set(key, u); for (const x of $$(`img.pic[data-key="${key}"]`)) x.src = u; })
      .catch(() => {})
      .finally(() => { thumbActive--; pumpThumbs(); });
  }
}
const thumbEls = { thumbs: new Map(), strip: new Map() };
function thumbFor(where, im) {
  const key = `${S.pid}/${im.id}`;
  let t = thumbEls[where].get(key);
  if (!t) {
    const pic = el("img", { class: "pic", alt: "", draggable: "false", dataset: { key, pid: S.pid, img: String(im.id) } });
    if (thumbUrls.has(key)) pic.src = thumbUrls.get(key); else seen.observe(pic);
    t = el("button", { class: "thumb", type: "button", dataset: { id: String(im.id) }, onclick: () => gotoImage(im.id) },
      pic, el("span", { class: "badge" }), el("span", { class: "cap" }));
    thumbEls[where].set(key, t);
  }
  const st = statusOf(im), n = boxCountOf(im), [zh, en] = STATUS_TEXT[st];
  t.dataset.status = st;
  t.dataset.unsaved = pendingFor(im.id) ? "true" : "false";
  $(".badge", t).textContent = n > 0 && st !== "needs_fix" ? `${zh} ${n}` : zh;
  $(".cap", t).textContent = im.file_name;
  t.title = `${im.file_name} · ${zh} ${en}${n ? ` · ${n} 框 boxes` : ""}`;
  t.setAttribute("aria-label", t.title);
  t.classList.toggle("current", !!(S.cur && S.cur.id === im.id));
  return t;
}
function refreshThumb(id) {
  const im = S.byId.get(id);
  if (!im) return;
  for (const where of ["thumbs", "strip"]) if (thumbEls[where].has(`${S.pid}/${id}`)) thumbFor(where, im);
}
function renderThumbs() {
  for (const [where, filter] of [["thumbs", $("#filter").value], ["strip", $("#strip-filter").value]]) {
    const box = $("#" + where);
    const want = S.images.filter((im) => matches(im, filter) || (where === "strip" && S.cur && S.cur.id === im.id));
    const nodes = want.map((im) => thumbFor(where, im));
    const same = box.children.length === nodes.length && nodes.every((n, i) => box.children[i] === n);
    if (!same) box.replaceChildren(...nodes);
  }
  $("#thumbs-empty").hidden = S.images.length > 0;
}
function syncFilters(value) { $("#filter").value = value; $("#strip-filter").value = value; renderThumbs(); }
$("#filter").addEventListener("change", (e) => syncFilters(e.target.value));
$("#strip-filter").addEventListener("change", (e) => syncFilters(e.target.value));
$("#start-labelling").addEventListener("click", () => nextUnlabelled(0));

function renderCounts() {
  const c = (S.project && S.project.counts) || {};
  const per = c.per_class || [];
  const stat = (key, zh, en) => el("span", { class: "stat", dataset: { stat: key, n: String(c[key] || 0) } },
    `${zh} `, el("small", {}, en), el("b", {}, String(c[key] || 0)));
  $("#counts").replaceChildren(
    stat("images", "照片", "photos"), stat("unlabelled", "未标", "unlabelled"), stat("labelled", "已标", "labelled"),
    stat("no_objects", "无目标", "no objects"), stat("reviewed", "已审", "reviewed"),
    ...classes().map((_, i) => el("span", { class: "count", dataset: { label: String(i), n: String(per[i] || 0) } },
      el("span", { class: "swatch", style: `background:${colour(i)}` }), className(i), el("b", {}, String(per[i] || 0)))));
}
let countsTimer = null;
/** Refresh the project's counts from the server soon (debounced). */
function scheduleCounts(ms = 400) {
  clearTimeout(countsTimer);
  countsTimer = setTimeout(async () => {
    if (!S.pid) return;
    const pid = S.pid;
    try {
      const p = await api(P());
      if (pid !== S.pid) return;
      S.project = p; renderCounts(); renderClassList(); renderProjectSelect();
    } catch (e) { /* the next edit or poll tries again */ }
  }, ms);
}

/* polling for teammates' edits ---------------------------------------------------------------- */
let pollTimer = null;
function schedulePoll(ms = 3000) { clearTimeout(pollTimer); pollTimer = setTimeout(poll, ms); }
async function poll() {
  if (!S.pid || document.hidden) { schedulePoll(); return; }
  const pid = S.pid, acks = Q.acks;
  try {
    const r = await api(P(`/changes?since=${S.seq}`));
    if (pid !== S.pid) return;
    let deferred = false, touched = false;
    for (const im of r.images || []) {
      if (S.cur && im.id === S.cur.id) {
        if (Q.acks !== acks || pendingFor(im.id) || A.drag || A.nudge) { deferred = true; continue; }
        mergeCurrent(im);
      }
      upsertImage(im); touched = true;
    }
    if (!deferred) S.seq = r.seq;
    if (touched) { renderThumbs(); scheduleCounts(0); }
  } catch (e) { /* offline: try again later */ }
  schedulePoll();
}
/** A teammate's version of the open image: take every box they changed that we are not editing. */
function mergeCurrent(im) {
  if (!Array.isArray(im.boxes)) return;
  const theirs = new Map(im.boxes.map((b) => [b.id, b]));
  let changed = false;
  for (const b of im.boxes) {
    if ((versions.get(b.id) || 0) < b.version) { versions.set(b.id, b.version); setLocal(b.id, boxState(b)); changed = true; }
  }
  for (const b of [...S.cur.boxes]) {
    if (!theirs.has(b.id) && (versions.get(b.id) || 0) > 0) { setLocal(b.id, null); changed = true; }
  }
  if (im.version > (imgVersions.get(im.id) || 0)) {
    imgVersions.set(im.id, im.version);
    Object.assign(S.cur, { no_objects: !!im.no_objects, review: im.review, version: im.version });
    changed = true;
  }
  if (changed) refreshAnnot();
}
function upsertImage(im) {
  const n = Array.isArray(im.boxes) ? im.boxes.length : im.boxes;
  const entry = S.byId.get(im.id);
  const fields = { ...im, boxes: n };
  if (entry) {
    if (S.cur && S.cur.id === im.id) return;
    if (pendingFor(im.id)) return;
    Object.assign(entry, fields);
  } else {
    S.byId.set(im.id, fields);
    S.images.push(fields);
    S.images.sort((a, b) => a.id - b.id);
  }
}
document.addEventListener("visibilitychange", () => { if (!document.hidden && S.pid) schedulePoll(50); });

/* capture: file inputs, drag and drop of files and folders, webcam, the upload queue ------------- */
const U = { items: [], active: 0, next: 1 };
function fmtSize(n) { return n > 1048576 ? `${(n / 1048576).toFixed(1)} MB` : `${Math.max(1, Math.round(n / 1024))} KB`; }

/** Queue files for upload to the open project (checks the size cap before sending). */
function addFiles(files, skipped = 0) {
  if (!S.pid) { say("先选择一个项目 Choose a project first", "error"); return; }
  files = [...files];
  if (!files.length && !skipped) return;
  for (const file of files) {
    const it = { id: U.next++, file, pid: S.pid, name: file.name || "photo.jpg", state: "waiting", progress: 0, msg: "", tries: 0 };
    if (file.size > MAX_UPLOAD) { it.state = "error"; it.msg = `太大 too big: ${fmtSize(file.size)} > 25 MB`; }
    U.items.push(it);
  }
  if (skipped) say(`跳过 ${skipped} 个非图片文件 Skipped ${skipped} files that are not images`);
  renderQueue(); pumpUploads();
}
function pumpUploads() {
  while (U.active < 2) {
    const it = U.items.find((x) => x.state === "waiting");
    if (!it) break;
    U.active++; it.state = "uploading"; renderQueueItem(it);
    uploadOne(it).finally(() => { U.active--; renderQueueSummary(); pumpUploads(); });
  }
  renderQueueSummary();
}
function uploadOne(it) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/api/projects/${encodeURIComponent(it.pid)}/images`);
    for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) { it.progress = e.loaded / e.total; renderQueueItem(it); } };
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
      const r = body && Array.isArray(body.images) ? body.images[0] : null;
      if (r && r.error) { it.state = "error"; it.msg = r.error; }
      else if (r && r.image) {
        it.image = r.image.id;
        it.state = r.duplicate ? "duplicate" : "done";
        it.msg = r.duplicate ? `重复：已有这张照片 Duplicate of ${r.image.file_name}` : `${r.image.width}×${r.image.height}`;
        if (it.pid === S.pid) { upsertImage(r.image); renderThumbs(); scheduleCounts(); }
      } else { it.state = "error"; it.msg = detailText(body, xhr.status); }
      it.progress = 1; renderQueueItem(it); resolve();
    };
    const failed = (why) => {
      it.tries++;
      if (it.tries < 4) {   // same bytes -> same sha256: a retry can never store a copy
        it.state = "waiting"; it.msg = `${why}，重试 retrying (${it.tries}/3)`;
        renderQueueItem(it); setTimeout(resolve, 1000 * 2 ** it.tries);
      } else { it.state = "error"; it.msg = `${why} 网络错误 network error`; renderQueueItem(it); resolve(); }
    };
    xhr.onerror = () => failed("上传失败 upload failed");
    xhr.ontimeout = () => failed("超时 timed out");
    const form = new FormData();
    form.append("files", it.file, it.name);
    xhr.send(form);
  });
}
const STATE_TEXT = { waiting: "等待 waiting", uploading: "上传中 uploading", done: "完成 done",
  duplicate: "重复 duplicate", error: "失败 failed" };
function renderQueueItem(it) {
  let li = $(`#queue li[data-item="${it.id}"]`);
  if (!li) {
    li = el("li", { dataset: { item: String(it.id) } });
    $("#queue").prepend(li);
  }
  li.dataset.state = it.state;
  const kids = [el("span", { class: "name", title: it.name }, it.name, el("small", {}, ` · ${fmtSize(it.file.size)}`)),
    el("span", { class: "state-tag" }, STATE_TEXT[it.state])];
  if (it.state === "uploading" || it.state === "waiting")
    kids.push(el("div", { class: "progress", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100",
      "aria-valuenow": String(Math.round(it.progress * 100)) }, el("i", { style: `width:${Math.round(it.progress * 100)}%` })));
  const msg = el("span", { class: "msg" }, it.msg);
  if (it.image && it.pid === S.pid) msg.append(" ", el("button", { class: "btn small", type: "button", onclick: () => gotoImage(it.image) }, "标注 Label →"));
  if (it.msg || it.image) kids.push(msg);
  li.replaceChildren(...kids);
  $("#queue-box").hidden = false;
}
function renderQueue() { for (const it of U.items) renderQueueItem(it); renderQueueSummary(); }
function renderQueueSummary() {
  const n = (s) => U.items.filter((x) => x.state === s).length;
  const busy = n("waiting") + n("uploading");
  $("#queue-summary").textContent = [`完成 ${n("done")}/${U.items.length} done`,
    busy ? `进行中 ${busy} in progress` : "", n("duplicate") ? `重复 ${n("duplicate")} duplicate` : "",
    n("error") ? `失败 ${n("error")} failed` : ""].filter(Boolean).join(" · ");
  $("#queue-box").hidden = U.items.length === 0;
}
$("#queue-clear").addEventListener("click", () => {
  U.items = U.items.filter((x) => x.state === "waiting" || x.state === "uploading");
  $("#queue").replaceChildren(); renderQueue();
});
for (const id of ["#upload-input", "#camera-input", "#folder-input"]) {
  $(id).addEventListener("change", (e) => {
    const all = [...e.target.files];
    const keep = id === "#folder-input" ? all.filter(looksLikeImage) : all;
    addFiles(keep, all.length - keep.length);
    e.target.value = "";
  });
}
function looksLikeImage(f) { return !f.name.startsWith(".") && (IMAGE_EXT.test(f.name) || (f.type || "").startsWith("image/")); }

/* drop anywhere while a project is open; folders are walked (webkitGetAsEntry) */
async function walkEntry(entry, out, depth = 0) {
  if (entry.isFile) {
    try { out.push(await new Promise((res, rej) => entry.file(res, rej))); } catch (e) { /* unreadable */ }
  } else if (entry.isDirectory && depth < 10) {
    const reader = entry.createReader();
    for (;;) {
      const batch = await new Promise((res, rej) => reader.readEntries(res, rej)).catch(() => []);
      if (!batch.length) break;
      for (const e of batch) await walkEntry(e, out, depth + 1);
    }
  }
}
let dragDepth = 0;
document.addEventListener("dragenter", (e) => {
  if (!S.pid || !e.dataTransfer || ![...e.dataTransfer.types].includes("Files")) return;
  dragDepth++; $("#dropzone").classList.add("over");
});
document.addEventListener("dragleave", () => { if (--dragDepth <= 0) { dragDepth = 0; $("#dropzone").classList.remove("over"); } });
document.addEventListener("dragover", (e) => { if (S.pid && e.dataTransfer) { e.preventDefault(); e.dataTransfer.dropEffect = "copy"; } });
document.addEventListener("drop", async (e) => {
  if (!S.pid || !e.dataTransfer) return;
  e.preventDefault(); dragDepth = 0; $("#dropzone").classList.remove("over");
  // Entries must be taken now: the DataTransfer is emptied once this handler awaits.
  const items = [...(e.dataTransfer.items || [])].filter((i) => i.kind === "file");
  const entries = items.map((i) => (i.webkitGetAsEntry ? i.webkitGetAsEntry() : null));
  const plain = [...e.dataTransfer.files];
  if (!entries.length || entries.some((x) => !x)) { addFiles(plain); return; }
  const hasDir = entries.some((x) => x.isDirectory);
  const out = [];
  for (const entry of entries) await walkEntry(entry, out);
  const keep = hasDir ? out.filter(looksLikeImage) : out;
  addFiles(keep, out.length - keep.length);
  if (S.view !== "photos" && S.view !== "label") go("photos");
});

/* webcam (getUserMedia needs https or localhost) */
let stream = null, snaps = 0;
if (navigator.mediaDevices && navigator.mediaDevices.getUserMedia) $("#webcam-btn").hidden = false;
$("#webcam-btn").addEventListener("click", async () => {
  const dlg = $("#webcam-dialog");
  $("#webcam-info").textContent = "正在打开摄像头… Opening the camera";
  dlg.showModal();
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: false,
      video: { facingMode: { ideal: "environment" }, width: { ideal: 1920 }, height: { ideal: 1080 } } });
    $("#webcam-video").srcObject = stream;
    $("#webcam-info").textContent = "对准物体，点“拍摄” Aim at the objects, then Snap";
  } catch (e) {
    $("#webcam-info").textContent = `打不开摄像头 Cannot open the camera: ${e.name || e}. 可以用“拍照”按钮 Use "Take photo" instead.`;
  }
});
$("#webcam-snap").addEventListener("click", () => {
  const v = $("#webcam-video");
  if (!stream || !v.videoWidth) return;
  const c = el("canvas", { width: v.videoWidth, height: v.videoHeight });
  c.getContext("2d").drawImage(v, 0, 0);
  c.toBlob((blob) => {
    if (!blob) return;
    const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\..*/, "").replace("T", "-");
    addFiles([new File([blob], `webcam-${stamp}-${++snaps}.jpg`, { type: "image/jpeg" })]);
    $("#webcam-info").textContent = `已拍 ${snaps} 张，正在上传 ${snaps} taken, uploading`;
  }, "image/jpeg", 0.92);
});
function stopWebcam() { if (stream) for (const t of stream.getTracks()) t.stop(); stream = null; $("#webcam-video").srcObject = null; }
$("#webcam-close").addEventListener("click", () => $("#webcam-dialog").close());
$("#webcam-dialog").addEventListener("close", stopWebcam);

/* projects ----------------------------------------------------------------------------------------- */
function renderProjectSelect() {
  const sel = $("#project-select");
  const opts = [el("option", { value: "" }, "选择项目 Project…")];
  for (const p of S.projects) opts.push(el("option", { value: p.id }, `${p.name || p.id}`));
  sel.replaceChildren(...opts);
  sel.value = S.pid || "";
}
$("#project-select").addEventListener("change", (e) => {
  const pid = e.target.value;
  if (!pid) { location.hash = "#/"; return; }
  const view = ["photos", "label", "data"].includes(S.view) ? S.view : "photos";
  location.hash = `#/p/${encodeURIComponent(pid)}/${view}`;
});
async function loadProjects() {
  if (!S.me) { S.projects = []; renderProjectSelect(); return; }
  try { S.projects = await api("/api/projects"); } catch (e) { S.projects = []; if (e.status !== 401) say(e.message, "error"); }
  renderProjectSelect();
}
function renderProjects() {
  const me = S.me;
  $("#who").textContent = !me ? "" : me.role === "instructor"
    ? `老师 Instructor · ${me.lan ? "局域网模式 LAN mode" : "本机模式 Local mode"}`
    : `队伍 Team · ${me.project}`;
  $("#join-form").hidden = !!me;
  const cards = S.projects.map((p) => {
    const pct = p.images ? Math.round((100 * p.labelled) / p.images) : 0;
    return el("a", { class: "card", href: `#/p/${encodeURIComponent(p.id)}/photos`, dataset: { project: p.id } },
      el("h2", {}, p.name || p.id, " ", el("small", {}, p.id)),
      el("div", { class: "classes" }, (p.classes || []).map((c) => (c.name_zh ? `${c.name_zh} ${c.name}` : c.name)).join(" · ") || "—"),
      el("div", { class: "stats" }, el("span", {}, "照片 ", el("b", {}, String(p.images || 0))),
        el("span", {}, "已标 ", el("b", {}, String(p.labelled || 0))), el("span", {}, "框 ", el("b", {}, String(p.boxes || 0)))),
      el("div", { class: "progress", title: `${pct}% labelled` }, el("i", { style: `width:${pct}%` })));
  });
  $("#project-cards").replaceChildren(...cards);
  if (!cards.length && me) $("#project-cards").append(el("p", { class: "muted" }, me.role === "instructor"
    ? "还没有项目，在下面新建一个。 No projects yet: create one below." : "没有可用的项目。 No project available."));
}
function parseClasses(text) {
  return text.split(/\n/).map((l) => l.trim()).filter(Boolean).map((l) => {
    const m = l.match(/^([^\s,，]+)[\s,，]*(.*)$/);
    return { name: m[1], name_zh: m[2].trim() };
  });
}
$("#new-project").addEventListener("submit", async (e) => {
  e.preventDefault();
  const out = $("#np-result");
  const body = { id: $("#np-id").value.trim(), name: $("#np-name").value.trim() || $("#np-id").value.trim(),
    classes: parseClasses($("#np-classes").value) };
  try {
    const p = await api("/api/projects", { method: "POST", json: body });
    out.className = "result ok";
    out.replaceChildren(`已创建 Created ${p.id}. `, p.token ? el("span", {}, "队伍口令（只显示一次）Team token (shown once): ", el("code", {}, p.token)) : "");
    e.target.reset();
    await loadProjects(); renderProjects();
  } catch (err) { out.className = "result error"; out.textContent = err.message; }
});
$("#join-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const v = $("#join-token").value.trim();
  let t = v;
  try { const u = new URL(v); t = u.searchParams.get("token") || v; } catch (err) { /* a bare token */ }
  if (t) await join(t);
});

/* data: export, import, classes ------------------------------------------------------------------ */
async function exportZip(fmt, btn) {
  const out = $("#export-result");
  btn.disabled = true; out.className = "result"; out.textContent = `正在导出 ${fmt.toUpperCase()}… Exporting`;
  try {
    const r = await api(P(`/export?format=${fmt}`), { raw: true });
    const cd = r.headers.get("Content-Disposition") || "";
    const m = cd.match(/filename\*?=(?:UTF-8'')?"?([^";]+)"?/i);
    const blob = await r.blob();
    const a = el("a", { href: URL.createObjectURL(blob), download: m ? decodeURIComponent(m[1]) : `${S.pid}-${fmt}.zip` });
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 60000);
    out.className = "result ok"; out.textContent = `已下载 Downloaded ${a.download} (${fmtSize(blob.size)})`;
  } catch (e) { out.className = "result error"; out.textContent = `导出失败 Export failed: ${e.message}`; }
  btn.disabled = false;
}
for (const fmt of ["coco", "yolo", "voc"]) {
  const btn = $(`#export-${fmt}`);
  btn.addEventListener("click", () => exportZip(fmt, btn));
}
$("#import-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const out = $("#import-result"), file = $("#import-file").files[0];
  if (!file) return;
  const form = new FormData();
  form.append("file", file, file.name);
  $("#import-btn").disabled = true; out.className = "result"; out.textContent = "正在导入… Importing";
  try {
    const r = await api(P(`/import?format=${encodeURIComponent($("#import-format").value)}`), { method: "POST", body: form });
    out.className = "result ok";
    out.textContent = `导入 Imported: ${r.images_added} 张照片 images, ${r.boxes_added} 个框 boxes, ${r.duplicates} 张重复 duplicates`;
    e.target.reset();
    await openProject(S.pid, true);
  } catch (err) { out.className = "result error"; out.textContent = `导入失败，什么都没改 Import failed, nothing stored: ${err.message}`; }
  $("#import-btn").disabled = false;
});
function renderClassEditor() {
  const rows = classes().map((c, i) => classRow(c, i));
  $("#class-editor").replaceChildren(...rows);
}
function classRow(c, i) {
  return el("li", {},
    el("input", { class: "cn", value: c.name, "aria-label": `类别 ${i + 1} 英文名 English name`, placeholder: "cup", required: true }),
    el("input", { class: "cz", value: c.name_zh || "", "aria-label": `类别 ${i + 1} 中文名 Chinese name`, placeholder: "杯子" }));
}
$("#class-add").addEventListener("click", () => {
  const li = classRow({ name: "", name_zh: "" }, $("#class-editor").children.length);
  $("#class-editor").append(li); $("input", li).focus();
});
$("#classes-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const out = $("#classes-result");
  const list = $$("#class-editor li").map((li) => ({ name: $(".cn", li).value.trim(), name_zh: $(".cz", li).value.trim() }))
    .filter((c, i) => c.name || i < classes().length);
  try {
    const p = await api(P("/classes"), { method: "PUT", json: { edit_id: uuid(), classes: list } });
    if (p && p.classes) S.project.classes = p.classes; else S.project.classes = list;
    out.className = "result ok"; out.textContent = "已保存 Saved";
    renderClassEditor(); renderCounts(); refreshAnnot(); scheduleCounts(0);
  } catch (err) { out.className = "result error"; out.textContent = err.message; }
});

/* teams: join links and QR codes (instructor) ---------------------------------------------------- */
async function renderTeams() {
  const note = $("#lan-note");
  note.textContent = S.me && S.me.lan
    ? "手机扫码加入，每队一个码；码就是口令，别公开。 Phones scan a code to join (one per team). A code is a password: keep it in the room."
    : "本机模式：只有这台电脑能打开。要让手机加入，用 dlcamp camp serve --host 0.0.0.0 启动。 Local mode: only this computer can connect. Start with --host 0.0.0.0 so phones can join.";
  const box = $("#tokens");
  $("#print-codes").onclick = () => window.print();
  let list = [];
  try { list = await api("/api/tokens"); } catch (e) { box.replaceChildren(el("p", { class: "error" }, e.message)); return; }
  if (!list.length) { box.replaceChildren(el("p", { class: "muted" }, "还没有队伍口令。 No team tokens yet.")); return; }
  box.replaceChildren(...list.map((t) => {
    const img = el("img", { alt: `${t.project} 加入二维码 join QR code`, width: "200", height: "200" });
    apiBlob(`/api/qr?url=${encodeURIComponent(t.join_url)}`).then((b) => { img.src = URL.createObjectURL(b); }).catch(() => { img.alt = "QR ✗"; });
    const proj = S.projects.find((p) => p.id === t.project);
    const copy = el("button", { class: "btn small", type: "button", onclick: async () => {
      try { await navigator.clipboard.writeText(t.join_url); say("已复制 Copied", "ok"); }
      catch (e) { const r = document.createRange(); r.selectNodeContents(code); getSelection().removeAllRanges(); getSelection().addRange(r); }
    } }, "复制链接 Copy link");
    const code = el("code", {}, t.join_url);
    return el("div", { class: "token-card", dataset: { project: t.project || "" } },
      el("h2", {}, proj ? proj.name : t.project || "老师 Instructor"), img, code, copy);
  }));
}

/* routing: #/ · #/teams · #/p/<project>/<photos|label|data>[/<image id>] ---------------------------- */
function parseHash() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "teams") return { view: "teams" };
  if (parts[0] === "p" && parts[1]) {
    const view = ["photos", "label", "data"].includes(parts[2]) ? parts[2] : "photos";
    return { view, pid: parts[1], image: parts[3] ? Number(parts[3]) || null : null };
  }
  return { view: "projects" };
}
function go(view, pid = S.pid) {
  location.hash = view === "projects" ? "#/" : view === "teams" ? "#/teams" : `#/p/${encodeURIComponent(pid)}/${view}`;
}
function setView(view) {
  if (S.view === "label" && view !== "label") { flushNudge(); updateEntry(); }
  S.view = view;
  document.body.dataset.view = view;
  for (const a of $$("#tabs a")) {
    if (a.dataset.view === view) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  const names = { projects: "项目 Projects", photos: "照片 Photos", label: "标注 Label", data: "数据 Data", teams: "队伍 Teams" };
  document.title = `${names[view] || ""} · ${S.project && S.pid ? `${S.project.name} · ` : ""}dlcamp 营地`;
}
function updateTabs() {
  document.body.classList.toggle("no-project", !S.pid);
  for (const a of $$("#tabs a")) {
    const v = a.dataset.view;
    if (v !== "teams" && S.pid) a.href = `#/p/${encodeURIComponent(S.pid)}/${v}`;
  }
}

/** Open project `pid`: its classes, counts and image list; starts polling for changes. */
async function openProject(pid, force = false) {
  if (S.pid === pid && !force) return true;
  if (S.pid !== pid) {
    openSeq++; S.cur = null; S.selected = null; S.curClass = 0;
    thumbEls.thumbs.clear(); thumbEls.strip.clear();
    $("#thumbs").replaceChildren(); $("#strip").replaceChildren();
  }
  const prev = S.pid;
  S.pid = pid;
  try {
    const project = await api(P());
    const imgs = [];
    for (let offset = 0; ;) {
      const r = await api(P(`/images?status=all&offset=${offset}&limit=500`));
      imgs.push(...r.images); offset += r.images.length;
      if (!r.images.length || offset >= r.total) break;
    }
    if (S.pid !== pid) return false;
    if (!S.projects.some((p) => p.id === pid)) await loadProjects();   // made since we last looked
    S.project = project; S.seq = project.seq || 0;
    S.images = imgs.sort((a, b) => a.id - b.id);
    S.byId = new Map(imgs.map((im) => [im.id, im]));
  } catch (e) {
    say(`打不开项目 Cannot open project ${pid}: ${e.message}`, "error");
    S.pid = prev === pid ? null : prev; updateTabs(); renderProjectSelect();
    return false;
  }
  renderProjectSelect(); renderCounts(); renderClassEditor(); renderThumbs(); refreshAnnot(); updateTabs();
  schedulePoll();
  return true;
}

let routing = Promise.resolve();
function route() { routing = routing.then(routeNow, routeNow); return routing; }
async function routeNow() {
  const r = parseHash();
  if (r.pid && !(await openProject(r.pid))) { history.replaceState(null, "", "#/"); setView("projects"); renderProjects(); return; }
  setView(r.view);
  if (r.view === "projects") { await loadProjects(); renderProjects(); }
  else if (r.view === "teams") { if (!S.projects.length) await loadProjects(); renderTeams(); }
  else if (r.view === "data") renderClassEditor();
  else if (r.view === "photos") renderThumbs();
  else if (r.view === "label") {
    const firstTodo = S.images.find((im) => matches(im, "unlabelled"));
    const id = r.image || (S.cur && S.cur.id) || (firstTodo && firstTodo.id) || (S.images[0] && S.images[0].id) || null;
    if (id && r.image !== id) history.replaceState(null, "", `#/p/${encodeURIComponent(S.pid)}/label/${id}`);
    if (!S.cur || S.cur.id !== id) await openImage(id); else { refreshAnnot(); renderThumbs(); }
    canvas.focus({ preventScroll: true });
  }
}

/* joining and start-up ------------------------------------------------------------------------------ */
async function join(token) {
  try {
    const j = await fetch(`/api/join?token=${encodeURIComponent(token)}`, { headers: { "X-Camp": "1" }, cache: "no-store" });
    const body = await j.json().catch(() => null);
    if (!j.ok) throw new ApiError(j.status, detailText(body, j.status), body);
    S.token = token; localStorage.setItem(TOKEN_KEY, token);
    say(body.project ? `已加入 Joined ${body.project}` : "已以老师身份登录 Signed in as instructor", "ok");
    await whoAmI();
    await loadProjects();
    if (body.project) location.hash = `#/p/${encodeURIComponent(body.project)}/photos`;
    else if (S.view === "projects") renderProjects();
    return true;
  } catch (e) {
    say(`加入失败 Could not join: ${e.message}`, "error");
    return false;
  }
}
async function whoAmI() {
  try { S.me = await api("/api/me"); } catch (e) {
    S.me = null;
    if ((e.status === 401 || e.status === 403) && S.token) {   // a token from an earlier camp
      S.token = ""; localStorage.removeItem(TOKEN_KEY);
      try { S.me = await api("/api/me"); } catch (err) { S.me = null; }
    }
  }
  document.body.classList.toggle("is-instructor", !!(S.me && S.me.role === "instructor"));
}
async function boot() {
  loadQueue();
  const params = new URLSearchParams(location.search);
  const token = params.get("token");
  if (token) {   // take the token out of the address bar (and of the history, screenshots, shoulder-surfers)
    params.delete("token");
    const q = params.toString();
    history.replaceState(null, "", location.pathname + (q ? `?${q}` : "") + location.hash);
    await join(token);
  } else await whoAmI();
  if (!S.me) say("需要加入码：扫老师的二维码 You need a join link: scan your instructor's QR code", "error");
  await loadProjects();
  const bare = !location.hash || location.hash === "#" || location.hash === "#/";
  if (bare && S.me && S.me.role === "team" && S.me.project) history.replaceState(null, "", `#/p/${encodeURIComponent(S.me.project)}/photos`);
  window.addEventListener("hashchange", route);
  updateTabs(); syncUI();
  await route();
  pump();
}
boot();
})();
