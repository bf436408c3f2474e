/* The leaderboard view: the ranking (public while the event is open, the private final once the
 * instructor freezes it; the instructor sees both), the open project's submissions with their
 * status and shift report (validation mAP vs hidden-test mAP, the gap, AP per class, mAP per
 * condition tag, the picture of the worst mistakes when the server shows it), submitting a run or
 * a checkpoint.pt / predictions.json; and the instructor's part: uploading the hidden test set,
 * the event's settings (submission limit, freeze, release the images) and the CSV export.
 * Routes: api_board.py (GET /api/leaderboard, /api/event, /api/testset, .../submissions). */
import { $, el, uuid, say, fmtSize } from "./util.js";
import { S, P } from "./state.js";
import { api, apiBlob, explain } from "./api.js";

const num = (v, d = 3) => (typeof v === "number" && Number.isFinite(v) ? v.toFixed(d) : "—");
const when = (t) => {
  if (t === null || t === undefined || t === "") return "—";
  const d = typeof t === "number" ? new Date(t * (t < 1e12 ? 1000 : 1)) : new Date(t);
  return Number.isNaN(d.getTime()) ? String(t) : d.toLocaleString([], { month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" });
};
const STATE_TEXT = { queued: "排队 queued", scoring: "评分中 scoring", done: "完成 done", failed: "失败 failed",
  running: "训练中 running", cancelled: "已取消 cancelled", interrupted: "中断 interrupted", open: "进行中 open", frozen: "已冻结 frozen" };
export const stateTag = (s) => el("span", { class: "state-tag", dataset: { state: s || "" } }, STATE_TEXT[s] || s || "—");
const isInstructor = () => !!(S.me && S.me.role === "instructor");
let event = null;

/** A table from rows and columns [[header, cell(row) -> text | Node], ...]. */
export function table(rows, cols, attrs = {}) {
  return [el("thead", {}, el("tr", {}, ...cols.map(([h]) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, ...rows.map((r) => el("tr", typeof attrs.row === "function" ? attrs.row(r) : {},
      ...cols.map(([, f]) => el("td", {}, f(r))))))];
}

/* ranking ----------------------------------------------------------------------------------------- */
const RANK_COLS = [["public_map", "公开榜 mAP public"], ["private_map", "最终 mAP private"], ["map", "mAP"],
  ["map_50", "mAP@0.5"], ["val_map", "验证 val mAP"], ["gap", "差距 gap"], ["submissions", "提交 subs"]];
function rankingTable(rows, title) {
  const keys = RANK_COLS.filter(([k]) => rows.some((r) => r[k] !== undefined && r[k] !== null));
  const cols = [["#", (r) => String(r.rank || rows.indexOf(r) + 1)],
    ["队伍 Team", (r) => r.name || r.team || r.project || "—"],
    ...keys.map(([k, h]) => [h, (r) => (k === "submissions" ? String(r[k]) : num(r[k]))])];
  return el("div", { class: "table-wrap" }, el("h3", {}, title),
    el("table", { class: "table ranking" }, ...table(rows, cols, { row: (r) => ({ dataset: { project: r.project || "" },
      class: r.project && r.project === S.pid ? "mine" : null }) })));
}
async function renderRanking() {
  const box = $("#ranking");
  let data;
  try { data = await api("/api/leaderboard"); } catch (e) {
    box.replaceChildren(el("p", { class: "error" }, explain(e, "排行榜 Leaderboard"))); return;
  }
  const state = (data && data.state) || (event && event.state) || "open";
  $("#board-state").replaceChildren(stateTag(state));
  $("#board-note").textContent = state === "frozen"
    ? "比赛已冻结：这是用另一半测试图片算出的最终排名。 Frozen: the final ranking, on the private half of the test set."
    : "进行中：公开榜只用一半测试图片；最终排名用另一半。 Open: the public ranking uses half of the test set; the final one uses the other half.";
  const parts = [];
  const list = Array.isArray(data) ? data : null;
  if (list) parts.push(rankingTable(list, "排名 Ranking"));
  else {
    const final = Array.isArray(data.final) ? data.final : data.private;
    const finalTable = Array.isArray(final) && rankingTable(final, state === "frozen"
      ? "最终排名（私有一半） Final ranking (private half)" : "最终排名预览（只有老师看得到） Final ranking preview (instructor only)");
    if (finalTable && state === "frozen") parts.push(finalTable);
    if (Array.isArray(data.public)) parts.push(rankingTable(data.public, "公开榜（公开一半） Public ranking (public half)"));
    if (finalTable && state !== "frozen") parts.push(finalTable);
    const rows = data.rows || data.ranking || data.teams;
    if (Array.isArray(rows)) parts.push(rankingTable(rows, state === "frozen" ? "最终排名 Final ranking" : "公开榜 Public ranking"));
  }
  if (!parts.length || parts.every((p) => !$("tbody tr", p))) parts.splice(0, parts.length, el("p", { class: "muted" }, "还没有评分的提交。 No scored submissions yet."));
  box.replaceChildren(...parts);
}

/* the team's submissions ------------------------------------------------------------------------- */
let submissions = [];
const reportOf = (s) => {
  const r = s.report || s.result;
  if (typeof r !== "string") return r || null;
  try { return JSON.parse(r); } catch (e) { return null; }
};
async function renderSubmissions() {
  const tbl = $("#submissions");
  if (!S.pid) { $("#team-board").hidden = true; return; }
  $("#team-board").hidden = false;
  try {
    const data = await api(P("/submissions"));
    submissions = Array.isArray(data) ? data : (data.submissions || []);
    const max = (data && data.max_submissions) || (event && event.max_submissions);
    const left = data && typeof data.left === "number" ? data.left : (max ? max - submissions.length : null);
    $("#sub-left").textContent = left === null ? "" : `还能提交 ${left} 次 ${left} left`;
  } catch (e) {
    tbl.replaceChildren(); $("#submit-result").className = "result error";
    $("#submit-result").textContent = explain(e, "提交 Submissions"); return;
  }
  if (!submissions.length) { tbl.replaceChildren(el("caption", { class: "muted" }, "还没有提交。 No submissions yet.")); return; }
  const frozen = (event && event.state) === "frozen";
  const test = (s) => (frozen && typeof s.private_map === "number" ? s.private_map : s.public_map);
  tbl.replaceChildren(...table(submissions, [
    ["#", (s) => String(s.id)], ["时间 When", (s) => when(s.created)],
    ["来源 Source", (s) => `${s.kind || ""} ${s.source || s.run || ""}`.trim()],
    ["状态 Status", (s) => (s.error ? el("span", {}, stateTag(s.status), el("br"), el("small", { class: "error" }, s.error)) : stateTag(s.status))],
    ["验证 val mAP", (s) => num(s.val_map)], [frozen ? "测试 test mAP (final)" : "测试 test mAP (public)", (s) => num(test(s))],
    ["差距 gap", (s) => (typeof s.val_map === "number" && typeof test(s) === "number" ? num(s.val_map - test(s)) : "—")],
    ["", (s) => el("span", { class: "btn-row tight" },
      s.status === "done" ? el("button", { class: "btn small", type: "button", onclick: () => openReport(s) }, "报告 Report") : null,
      s.selected ? el("span", { class: "state-tag", dataset: { state: "done" } }, "✓ 最终 final")
        : s.status === "done" ? el("button", { class: "btn small", type: "button", onclick: () => select(s) }, "选为最终 Select") : null)],
  ], { row: (s) => ({ dataset: { id: String(s.id), status: s.status || "" } }) }));
  if (submissions.some((s) => s.status === "queued" || s.status === "scoring")) later(renderSubmissions, 3000);
}
let laterTimer = null;
function later(f, ms) { clearTimeout(laterTimer); laterTimer = setTimeout(() => { if (S.view === "board") f(); }, ms); }
async function select(s) {
  try {
    await api(P(`/submissions/${s.id}/select`), { method: "POST", json: { edit_id: uuid() } });
    say(`提交 #${s.id} 选为最终 Submission #${s.id} selected for the final ranking`, "ok");
  } catch (e) { say(explain(e, "选择 Select"), "error"); }
  renderSubmissions();
}

/** Fetch submission `s` whole (the list's rows carry no report) and show its report. */
async function openReport(s) {
  try { showReport(await api(P(`/submissions/${s.id}`))); }
  catch (e) { const box = $("#report"); box.replaceChildren(el("p", { class: "result error" }, explain(e, "报告 Report"))); box.hidden = false; }
}

/** The shift report of a scored submission (scoring.py's report: map, map_50, per_class,
 *  conditions, public/private halves, val, gap, picture): validation vs hidden test, per class,
 *  per condition, and the picture of the worst mistakes when the server shows it. */
function showReport(s) {
  const r = reportOf(s) || {};
  const frozen = (event && event.state) === "frozen";
  const half = frozen ? r.private : r.public;   // what this stage of the event ranks by
  const blk = half && typeof half.map === "number" ? half : r;
  const testMap = typeof blk.map === "number" ? blk.map : (frozen ? s.private_map : s.public_map);
  const val = r.val && typeof r.val.map === "number" ? r.val.map : s.val_map;
  const gap = typeof val === "number" && typeof testMap === "number" ? val - testMap : r.gap;
  const which = blk === r ? "全部测试图片 whole test set" : frozen ? "私有一半 private half" : "公开一半 public half";
  const box = $("#report");
  const parts = [el("h3", {}, `提交 #${s.id} 的偏移报告 `, el("small", {}, "Shift report")),
    el("dl", { class: "stats-grid" },
      el("dt", {}, "验证 val mAP (你们的照片 your photos)"), el("dd", {}, num(val)),
      el("dt", {}, `测试 test mAP (${which})`), el("dd", {}, num(testMap)),
      el("dt", {}, "测试 test mAP@0.5"), el("dd", {}, num(blk.map_50)),
      el("dt", {}, "差距 gap = val − test"), el("dd", { class: typeof gap === "number" && gap > 0.05 ? "bad" : "" }, num(gap))),
    el("p", { class: "muted small" }, "差距大说明测试照片和你们的照片不一样（背景、光线、距离…）：这就是分布偏移。 "
      + "A large gap means the test photos differ from yours (background, lighting, distance…): covariate shift.")];
  if (Array.isArray(r.unmatched_classes) && r.unmatched_classes.length)
    parts.push(el("p", { class: "note small" }, `测试集里没有这些类别 Classes not in the test set: ${r.unmatched_classes.join(", ")}`));
  const perClass = blk.per_class || r.per_class;
  if (perClass && typeof perClass === "object") {
    const rows = Array.isArray(perClass) ? perClass : Object.entries(perClass).map(([name, v]) => ({ name, ...(v || {}) }));
    parts.push(el("h4", {}, "每类 AP ", el("small", {}, "AP per class")), el("div", { class: "table-wrap" },
      el("table", { class: "table per-class" }, ...table(rows, [["类别 Class", (c) => c.name || "—"],
        ["AP", (c) => num(c.ap)], ["AP@0.5", (c) => num(c.ap50 ?? c.ap_50)]]))));
  }
  const cond = blk.conditions && Object.keys(blk.conditions).length ? blk.conditions : r.conditions;
  if (cond && typeof cond === "object" && Object.keys(cond).length) {
    const rows = Array.isArray(cond) ? cond : Object.entries(cond).flatMap(([tag, values]) => (Array.isArray(values)
      ? values.map((v) => ({ tag, ...v })) : Object.entries(values || {}).map(([value, v]) => ({ tag, value, ...v }))));
    parts.push(el("h4", {}, "每种条件的 mAP ", el("small", {}, "mAP per condition")), el("div", { class: "table-wrap" },
      el("table", { class: "table conditions" }, ...table(rows, [["条件 Tag", (c) => c.tag || "—"],
        ["值 Value", (c) => String(c.value ?? "—")], ["图片 Images", (c) => String(c.images ?? "—")],
        ["框 Boxes", (c) => String(c.boxes ?? "—")], ["mAP", (c) => num(c.map)], ["mAP@0.5", (c) => num(c.map_50)]]))));
  }
  if (typeof r.picture === "string" && r.picture) {
    const img = el("img", { class: "report-pic", alt: "最差的误检与漏检 Worst false positives / negatives" });
    parts.push(el("h4", {}, "最差的错误 ", el("small", {}, "Worst false positives / negatives")), img);
    const url = r.picture.startsWith("/") ? r.picture : P(`/submissions/${s.id}/worst.png`);
    apiBlob(url).then((b) => { img.src = URL.createObjectURL(b); })
      .catch((e) => img.replaceWith(el("p", { class: "muted small" }, explain(e, "图片 Picture"))));
  } else {
    parts.push(el("p", { class: "muted small" }, "全部测试集的分数和错误图片在比赛冻结后显示。 "
      + `The whole test set's scores and the picture of the worst mistakes show once the event is frozen.${r.hidden ? ` (${r.hidden})` : ""}`));
  }
  box.replaceChildren(...parts);
  box.hidden = false; box.dataset.id = String(s.id);
  box.scrollIntoView({ block: "nearest", behavior: "smooth" });
}

/** Submit run `run` of the open project for scoring (the Train view's "Submit" uses it too). */
export async function submitRun(run) {
  return api(P("/submissions"), { method: "POST", json: { edit_id: uuid(), run } });
}
async function runsForSubmit() {
  const sel = $("#submit-run");
  let runs = [];
  try { const d = await api(P("/runs")); runs = (Array.isArray(d) ? d : d.runs || []).filter((r) => r.state === "done"); } catch (e) { /* no training here */ }
  sel.replaceChildren(...(runs.length ? runs.reverse().map((r) => el("option", { value: r.run },
    `${r.run} · val mAP ${num(r.val_map)}`)) : [el("option", { value: "" }, "没有训练好的模型 No finished run")]));
  sel.disabled = !runs.length;
}
function result(text, kind) { const out = $("#submit-result"); out.className = `result ${kind || ""}`; out.textContent = text; }
$("#submit-run-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const run = $("#submit-run").value;
  if (!run) { result("先训练一个模型 Train a model first (Train tab)", "error"); return; }
  result("正在提交… Submitting");
  try { const s = await submitRun(run); result(`已提交 Submitted${s && s.id ? ` #${s.id}` : ""}: 正在评分 scoring…`, "ok"); }
  catch (err) { result(explain(err, "提交失败 Not submitted"), "error"); }
  renderSubmissions();
});
$("#submit-file-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const file = $("#submit-file").files[0];
  if (!file) { result("选一个 checkpoint.pt 或 predictions.json Choose a checkpoint.pt or predictions.json", "error"); return; }
  const form = new FormData();
  form.append("edit_id", uuid()); form.append("file", file, file.name);
  result(`正在上传 Uploading ${file.name} (${fmtSize(file.size)})…`);
  try { const s = await api(P("/submissions"), { method: "POST", body: form }); result(`已提交 Submitted${s && s.id ? ` #${s.id}` : ""}`, "ok"); e.target.reset(); }
  catch (err) { result(explain(err, "提交失败 Not submitted"), "error"); }
  renderSubmissions();
});

/* the instructor's part --------------------------------------------------------------------------- */
async function renderInstructor() {
  const sum = $("#testset-summary");
  try {
    const t = await api("/api/testset");
    if (!t || t.test === null || !t.images) sum.textContent = "还没有测试集。 No test set yet.";
    else {
      const tags = Object.entries(t.conditions || {}).map(([k, v]) => `${k}: ${(v || []).join("/")}`).join("; ");
      sum.textContent = `当前测试集 Current test set ${t.project || ""}: ${t.images} 张图片 images `
        + `(公开 public ${t.public ?? "?"} / 私有 private ${t.private ?? "?"}), ${t.boxes ?? "?"} 个框 boxes, `
        + `类别 classes ${Array.isArray(t.classes) ? t.classes.join(", ") : t.classes}${tags ? `; 条件 conditions ${tags}` : ""}`;
    }
  } catch (e) { sum.textContent = e.status === 404 && e.message !== "Not Found" ? "还没有测试集。 No test set yet." : explain(e, "测试集 Test set"); }
  if (event) {
    $("#ev-max").value = event.max_submissions ?? 10;
    $("#ev-state").value = event.state === "frozen" ? "frozen" : "open";
    $("#ev-release").checked = !!event.release_images;
  }
}
$("#testset-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const out = $("#testset-result"), file = $("#testset-file").files[0];
  if (!file) return;
  const form = new FormData();
  form.append("file", file, file.name);
  $("#testset-btn").disabled = true; out.className = "result"; out.textContent = "正在导入测试集… Importing the test set";
  try {
    const r = await api(`/api/testset?format=${encodeURIComponent($("#testset-format").value)}`, { method: "POST", body: form });
    out.className = "result ok";
    out.textContent = `已导入 Imported: ${r.images_added ?? r.images ?? "?"} 张图片 images, ${r.boxes_added ?? r.boxes ?? "?"} 个框 boxes`
      + `${r.tagged ? `, ${r.tagged} 张有条件标签 tagged` : ""}`;
    e.target.reset(); renderBoard();
  } catch (err) { out.className = "result error"; out.textContent = explain(err, "导入失败 Import failed"); }
  $("#testset-btn").disabled = false;
});
$("#event-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const out = $("#event-result");
  const body = { edit_id: uuid(), max_submissions: Number($("#ev-max").value), state: $("#ev-state").value,
    release_images: $("#ev-release").checked };
  try {
    event = await api("/api/event", { method: "PUT", json: body }) || { ...event, ...body };
    out.className = "result ok"; out.textContent = "已保存 Saved";
    renderRanking();
  } catch (err) { out.className = "result error"; out.textContent = explain(err, "没保存 Not saved"); }
});
$("#csv-btn").addEventListener("click", async () => {
  const out = $("#event-result");
  try {
    const blob = await (await api("/api/leaderboard.csv", { raw: true })).blob();
    const a = el("a", { href: URL.createObjectURL(blob), download: "leaderboard.csv" });
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 60000);
    out.className = "result ok"; out.textContent = `已下载 Downloaded leaderboard.csv (${fmtSize(blob.size)})`;
  } catch (err) { out.className = "result error"; out.textContent = explain(err, "CSV"); }
});

/** Show the leaderboard view (the open project's submissions when one is open). */
export async function renderBoard() {
  $("#report").hidden = true;
  try { event = await api("/api/event"); } catch (e) { event = null; }
  const tasks = [renderRanking(), renderSubmissions(), runsForSubmit()];
  if (isInstructor()) tasks.push(renderInstructor());
  await Promise.all(tasks.map((t) => t.catch((e) => console.error(e))));
}
