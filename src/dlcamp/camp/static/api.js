/* Talking to the server: the fetch wrapper (auth and CSRF headers, readable errors) and the edit
 * queue that never loses an edit.
 *
 * Every edit is one small idempotent request: a fresh edit_id, the object's base_version; edits go
 * through one ordered queue that retries network failures with the SAME edit_id, shows "unsaved"
 * until the server acknowledges, and hands a 409 conflict to the resolver main.js sets
 * (conflicts.js). What an acknowledged edit means for the page is edits.js's business: the queue
 * only records versions and calls back. */
import { $, $$, uuid, say } from "./util.js";
import { S, versions, imgVersions } from "./state.js";

const QUEUE_KEY = "dlcamp-camp-queue";

/* HTTP -------------------------------------------------------------------------------------- */
export class ApiError extends Error {
  constructor(status, detail, body) { super(detail); this.status = status; this.body = body; }
}
export function detailText(body, status) {
  const d = body && body.detail;
  if (typeof d === "string") return d;
  if (Array.isArray(d)) return d.map((x) => `${(x.loc || []).slice(1).join(".")}: ${x.msg}`).join("; ");
  return `HTTP ${status}`;
}
export function authHeaders() {
  const h = { "X-Camp": "1" };
  if (S.token) h.Authorization = "Bearer " + S.token;
  return h;
}
/** Call the API. Resolves to the parsed JSON (or the Response when raw); throws ApiError
 *  (status 0 = network failure or timeout). */
export async function api(path, { method = "GET", json, body, raw = false, timeout = 0 } = {}) {
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
/** An API error as a line for the page; a route this server lacks (an older dlcamp, or a part not
 *  installed) says so instead of a bare "Not Found". */
export function explain(e, what = "") {
  if (e && e.status === 404 && (e.message === "Not Found" || e.message === "HTTP 404"))
    return `${what ? `${what}: ` : ""}这个服务器还没有这项功能 this server does not offer this yet (404)`;
  if (e && e.status === 405) return `${what ? `${what}: ` : ""}这个服务器不支持 not supported by this server (405)`;
  return `${what ? `${what}: ` : ""}${e && e.message ? e.message : String(e)}`;
}
/** GET a binary resource with the auth header (img src cannot send one) -> Blob. */
export async function apiBlob(path) { return (await api(path, { raw: true })).blob(); }

/* the edit queue ------------------------------------------------------------------------------
 * Ops are plain data: {kind: put|del|patch|copy|accept, pid, img, box?, label/x1.., fields?, src?, box_ids?,
 * edit_id, base?}. They are sent one at a time, in order, so an op's base_version is read when it
 * is first sent (after every earlier op on the same box was acknowledged) and then kept for every
 * retry, like its edit_id. The queue survives a reload (sessionStorage) and resends the same
 * edit_ids, which the server answers from its idempotency table. */
export const Q = { ops: [], busy: false, timer: null, delay: 0, acks: 0, blocked: false, failing: false };
const on = { acknowledged: () => {}, conflict: async () => {}, refused: () => {} };
/** Say what the page does when the server acknowledged an op (acknowledged(op, res), after the
 *  versions are recorded), answered 409 (conflict(op, body): the queue waits for its promise, then
 *  sends the head op again unless the resolver removed it), or refused an op of the open image
 *  for good (refused(op): show the server's state again). */
export function onQueue(handlers) { Object.assign(on, handlers); }

export function saveQueue() {
  const ids = new Set(Q.ops.map((o) => o.box).filter(Boolean));
  const imgs = new Set(Q.ops.map((o) => o.img));
  const snap = {
    ops: Q.ops,
    versions: [...ids].filter((id) => versions.has(id)).map((id) => [id, versions.get(id)]),
    imgVersions: [...imgs].filter((i) => imgVersions.has(i)).map((i) => [i, imgVersions.get(i)]),
  };
  try { sessionStorage.setItem(QUEUE_KEY, JSON.stringify(snap)); } catch (e) { /* private mode */ }
}
export function loadQueue() {
  try {
    const snap = JSON.parse(sessionStorage.getItem(QUEUE_KEY) || "null");
    if (!snap || !Array.isArray(snap.ops)) return;
    Q.ops = snap.ops.filter((o) => o && o.edit_id && o.pid && o.img);
    for (const [id, v] of snap.versions || []) versions.set(id, v);
    for (const [i, v] of snap.imgVersions || []) imgVersions.set(i, v);
    if (Q.ops.length) say(`重新发送 ${Q.ops.length} 个未保存的修改 Resending ${Q.ops.length} unsaved edits`);
  } catch (e) { Q.ops = []; }
}

export function enqueue(op) {
  op.edit_id = uuid();
  op.pid = op.pid || S.pid;
  Q.ops.push(op);
  saveQueue(); syncUI(); pump();
}
export const pendingFor = (img) => Q.ops.some((o) => o.img === img);
export const pendingBox = (id) => Q.ops.some((o) => o.box === id);

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
  if (op.kind === "accept") return sendAccept(base, op, t);
  return api(`${base}/copy_from/${op.src}`, { method: "POST", timeout: t, json: { edit_id: op.edit_id } });
}
/** Accept a model's proposals (box_ids, or all of the image's): the answer must give the boxes'
 *  new versions before the next op is sent, so when it does not list them, read the image. */
async function sendAccept(base, op, t) {
  const res = await api(`${base}/accept`, { method: "POST", timeout: t, json: { edit_id: op.edit_id,
    ...(op.box_ids ? { box_ids: op.box_ids } : {}) } });
  if (res && Array.isArray(res.boxes)) return res;
  if (Array.isArray(res)) return { boxes: res };
  return api(base, { timeout: t });
}
// Worth retrying with the same edit_id: no network, a timeout, a busy or restarting server, and a
// token the server no longer takes (the edit waits for the team to rejoin instead of being lost).
const retryable = (e) => [0, 401, 403, 408, 429].includes(e.status) || e.status >= 500;

/** Send the head of the queue; on success the next; on a network error retry later. */
export async function pump() {
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
    try { await on.conflict(op, failure.body || {}); } catch (e) { console.error(e); } finally { Q.blocked = false; }
  } else if (retryable(failure)) {
    Q.failing = true; again = false;
    Q.delay = Math.min(Q.delay ? Q.delay * 2 : 1000, 15000);
    Q.timer = setTimeout(pump, Q.delay);
    if (Q.delay >= 4000 || failure.status === 401) say(`未保存，正在重试 Not saved yet, retrying: ${failure.message}`, "error");
  } else {
    Q.ops.shift(); saveQueue();
    say(`修改被拒绝 Edit refused: ${failure.message}`, "error");
    if (S.cur && S.cur.id === op.img && op.pid === S.pid && !pendingFor(op.img)) on.refused(op);
  }
  Q.busy = false;
  syncUI();
  if (again) pump();
}

/** The server acknowledged op (res: its JSON answer): record versions, drop it from the queue,
 *  tell the page. */
export function acknowledge(op, res) {
  Q.ops.shift(); Q.acks += 1; saveQueue();
  if (op.kind === "put" && res) versions.set(op.box, res.version);
  if (op.kind === "del") versions.set(op.box, (op.base || 0) + 1);
  if (op.kind === "patch" && res) imgVersions.set(op.img, res.version);
  if (op.kind === "accept" && res) {
    for (const b of res.boxes || []) if (b && b.id && (versions.get(b.id) || 0) < b.version) versions.set(b.id, b.version);
  }
  on.acknowledged(op, res);
}

/* sync indicator ------------------------------------------------------------------------------ */
export function syncUI() {
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
