/* The Train view: start a training run of the open project (minutes of budget), follow it live
 * (server-sent events from .../runs/{r}/events; polling .../runs/{r} where an EventSource cannot
 * connect), the runs table (state, minutes, val mAP, mAP@0.5, the curves picture), Cancel for a
 * queued or running run, Resume for an interrupted one, "Propose boxes" and "Submit" for a
 * finished one. The server trains one run at a time and queues the rest (camp/jobs.py);
 * routes: camp/api_train.py. */
import { $, el, uuid, say } from "./util.js";
import { S, P } from "./state.js";
import { api, apiBlob, explain } from "./api.js";
import { stateTag, table, submitRun } from "./board.js";
import { go } from "./teams.js";

const ACTIVE = new Set(["queued", "running"]);
const num = (v, d = 3) => (typeof v === "number" && Number.isFinite(v) ? v.toFixed(d) : "—");
const runsOf = (d) => (Array.isArray(d) ? d : (d && d.runs) || []);
const T = { runs: [], live: null, source: null, poll: null, listTimer: null, curves: new Map() };

function say2(where, text, kind = "") { const out = $(where); out.className = `result ${kind}`; out.textContent = text; }
function clock(s) {
  if (typeof s !== "number" || !Number.isFinite(s)) return "—";
  s = Math.max(0, Math.round(s));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

/* live progress ------------------------------------------------------------------------------------ */
/** Show one progress line {epoch, step, steps_total?, seconds, budget_seconds, loss, val_map, ...}. */
function showProgress(run, p) {
  $("#train-live").hidden = false;
  $("#live-run").textContent = run;
  const state = p.state || "running";
  $("#live-state").replaceWith(Object.assign(stateTag(state), { id: "live-state" }));
  const frac = typeof p.budget_seconds === "number" && p.budget_seconds > 0 && typeof p.seconds === "number"
    ? p.seconds / p.budget_seconds : (p.steps_total ? p.step / p.steps_total : 0);
  $("#live-bar").style.width = `${Math.round(100 * Math.min(1, Math.max(0, state === "done" ? 1 : frac)))}%`;
  const stat = (zh, en, v) => [el("dt", {}, zh, " ", el("small", {}, en)), el("dd", {}, v)];
  $("#live-stats").replaceChildren(
    ...stat("轮", "epoch", p.epoch ?? "—"),
    ...stat("步", "steps", p.steps_total ? `${p.step ?? 0} / ${p.steps_total}` : String(p.step ?? "—")),
    ...stat("剩余时间", "time left", typeof p.budget_seconds === "number" && typeof p.seconds === "number"
      ? clock(p.budget_seconds - p.seconds) : "—"),
    ...stat("损失", "loss", num(p.loss)),
    ...stat("验证", "val mAP", num(p.val_map)),
    ...stat("验证", "mAP@0.5", num(p.val_map_50)));
  $("#train-live").dataset.state = state;
  if (!ACTIVE.has(state)) { stopFollowing(); loadRuns(); }
}
function stopFollowing() {
  if (T.source) { T.source.close(); T.source = null; }
  clearTimeout(T.poll); T.poll = null;
}
/** Follow run `run`: server-sent events, or polling GET .../runs/{run} when they fail. */
function follow(run) {
  if (T.live === run && (T.source || T.poll)) return;
  stopFollowing();
  T.live = run;
  let got = false;
  const es = new EventSource(P(`/runs/${encodeURIComponent(run)}/events`), { withCredentials: true });
  T.source = es;
  const onLine = (ev) => {
    got = true;
    let p;
    try { p = JSON.parse(ev.data); } catch (e) { return; }
    if (T.live === run) showProgress(run, p);
  };
  es.onmessage = onLine;
  es.addEventListener("progress", onLine);
  es.addEventListener("end", (ev) => {   // the run ended: its final state, then the table again
    if (T.source !== es) return;
    let end = {};
    try { end = JSON.parse(ev.data) || {}; } catch (e) { /* keep the last line's state */ }
    es.close(); T.source = null;
    if (end.state) $("#live-state").replaceWith(Object.assign(stateTag(end.state), { id: "live-state" }));
    loadRuns();
  });
  es.onerror = () => {   // the stream ended, or never opened (an older server, a missing cookie): poll
    if (T.source !== es) return;
    es.close(); T.source = null;
    if (T.live === run) pollRun(run, got ? 500 : 0);
  };
}
function pollRun(run, ms = 2500) {
  clearTimeout(T.poll);
  T.poll = setTimeout(async () => {
    if (S.view !== "train" || T.live !== run) return;
    try {
      const d = await api(P(`/runs/${encodeURIComponent(run)}`));
      const last = d.progress || d.last || (Array.isArray(d.history) && d.history[d.history.length - 1]) || {};
      showProgress(run, { ...last, state: d.state || last.state });
      if (ACTIVE.has(d.state || last.state)) pollRun(run);
    } catch (e) { T.poll = null; say2("#train-result", explain(e, "进度 Progress"), "error"); }
  }, ms);
}

/* the runs ----------------------------------------------------------------------------------------- */
function curvesCell(r) {
  if (r.state === "queued" || r.curves === false) return "—";
  const key = `${S.pid}/${r.run}/${r.state}`;
  const img = el("img", { class: "curves", alt: `${r.run} 曲线 curves`, loading: "lazy" });
  const link = el("a", { href: "#", title: "放大 Open full size", onclick: (e) => { e.preventDefault(); if (img.src) window.open(img.src, "_blank"); } }, img);
  let p = T.curves.get(key);
  if (!p) { p = apiBlob(P(`/runs/${encodeURIComponent(r.run)}/curves.png`)).then((b) => URL.createObjectURL(b)); T.curves.set(key, p); }
  p.then((u) => { img.src = u; }, () => { T.curves.delete(key); link.replaceWith("—"); });
  return link;
}
function actions(r) {
  const b = (text, f, cls = "btn small") => el("button", { class: cls, type: "button", onclick: f }, text);
  const out = [];
  if (ACTIVE.has(r.state)) out.push(b("取消 Cancel", () => cancel(r.run)));
  if (["failed", "cancelled", "interrupted"].includes(r.state)) out.push(b("继续 Resume", () => train(r.run)));
  if (r.state === "done") {
    out.push(b("生成建议框 Propose boxes", () => propose(r.run)));
    out.push(b("提交 Submit", () => submit(r.run), "btn small primary"));
  }
  return el("span", { class: "btn-row tight" }, ...out);
}
function renderRuns() {
  const tbl = $("#runs");
  if (!T.runs.length) { tbl.replaceChildren(el("caption", { class: "muted" }, "还没有训练。 No runs yet.")); return; }
  tbl.replaceChildren(...table(T.runs, [
    ["运行 Run", (r) => el("code", {}, r.run)],
    ["状态 State", (r) => el("span", {}, stateTag(r.state), typeof r.position === "number" && r.state === "queued"
      ? el("small", {}, ` 前面 ${r.position} 个 ${r.position} ahead`) : "", r.error ? el("br") : "", r.error ? el("small", { class: "error" }, r.error) : "")],
    ["分钟 Min", (r) => String(r.minutes ?? "—")],
    ["验证 val mAP", (r) => num(r.val_map)], ["mAP@0.5", (r) => num(r.val_map_50)],
    ["曲线 Curves", curvesCell], ["", actions],
  ], { row: (r) => ({ dataset: { run: r.run, state: r.state || "" } }) }));
}
export async function loadRuns() {
  const pid = S.pid;
  clearTimeout(T.listTimer);
  let d;
  try { d = await api(P("/runs")); } catch (e) {
    if (pid === S.pid) { T.runs = []; renderRuns(); say2("#runs-result", explain(e, "训练记录 Runs"), "error"); }
    return;
  }
  if (pid !== S.pid) return;
  say2("#runs-result", "");
  T.runs = runsOf(d).slice().sort((a, b) => String(b.run).localeCompare(String(a.run)));
  renderRuns();
  const active = T.runs.find((r) => r.state === "running") || T.runs.find((r) => r.state === "queued");
  const queued = T.runs.find((r) => r.state === "queued");
  if (active) {
    say2("#train-result", active.state === "running" ? `训练中 Training ${active.run}` : `排队中 Queued ${active.run}${typeof active.position === "number"
      ? `: 前面还有 ${active.position} 个 ${active.position} ahead` : ": 等另一个训练结束 waits for the training before it"}`);
    follow(active.run);
    if (S.view === "train") T.listTimer = setTimeout(loadRuns, queued ? 4000 : 10000);
  }
}

/* actions ------------------------------------------------------------------------------------------- */
async function train(resume = null) {
  const minutes = Number($("#train-minutes").value);
  if (!(minutes >= 1 && minutes <= 60)) { say2("#train-result", "时长要在 1 到 60 分钟之间 Minutes must be 1 to 60", "error"); return; }
  $("#train-btn").disabled = true;
  say2("#train-result", resume ? `继续 Resuming ${resume}…` : "正在开始训练… Starting");
  try {
    const r = await api(P("/train"), { method: "POST", json: { edit_id: uuid(), minutes, resume } });
    const pos = r && typeof r.position === "number" && r.position > 0 ? `，排队第 ${r.position} 位 queued, ${r.position} ahead` : "";
    say2("#train-result", `已开始 Started ${(r && r.run) || ""}${pos}`, "ok");
    if (r && r.run) { T.live = null; follow(r.run); }
  } catch (e) { say2("#train-result", explain(e, "没能开始训练 Training not started"), "error"); }
  $("#train-btn").disabled = false;
  loadRuns();
}
async function cancel(run) {
  try { await api(P(`/runs/${encodeURIComponent(run)}/cancel`), { method: "POST", json: { edit_id: uuid() } }); say(`已取消 Cancelled ${run}`, "ok"); }
  catch (e) { say(explain(e, "取消 Cancel"), "error"); }
  loadRuns();
}
async function propose(run) {
  const score_threshold = Number($("#propose-threshold").value) || 0.3;
  try {
    await api(P("/propose"), { method: "POST", json: { edit_id: uuid(), run, score_threshold } });
    say2("#runs-result", "模型正在给未标注的照片建议框；几分钟内在“照片”里筛选“模型建议”。 The model is proposing boxes on unlabelled photos; "
      + "filter Photos by “Proposed” in a few minutes.", "ok");
  } catch (e) { say2("#runs-result", explain(e, "建议框 Propose"), "error"); }
}
async function submit(run) {
  try { const s = await submitRun(run); say(`已提交 Submitted ${run}${s && s.id ? ` (#${s.id})` : ""}`, "ok"); go("board"); }
  catch (e) { say2("#runs-result", explain(e, "提交 Submit"), "error"); }
}
$("#train-form").addEventListener("submit", (e) => { e.preventDefault(); train(null); });

/** Show the Train view of the open project. */
export function renderTrain() {
  if (T.pid !== S.pid) { stopFollowing(); T.live = null; T.runs = []; T.pid = S.pid; $("#train-live").hidden = true; say2("#train-result", ""); }
  renderRuns(); loadRuns();
}
/** Leaving the view: stop the live stream and the polling. */
export function leaveTrain() { stopFollowing(); clearTimeout(T.listTimer); T.live = null; }
