/* The open project's data: loading it (classes, counts, the image list), and the Data view:
 * export (COCO, YOLO, VOC zips with images), import (all or nothing; a failure names the file and
 * line), and the class editor (append or rename; never removes a class in use). */
import { $, $$, el, uuid, say, fmtSize } from "./util.js";
import { S, P, classes } from "./state.js";
import { api } from "./api.js";
import { refreshAnnot } from "./panel.js";
import { renderThumbs, clearThumbs, renderCounts, scheduleCounts, schedulePoll, loadProposed } from "./gallery.js";
import { closeImage } from "./annotator.js";
import { renderProjectSelect, updateTabs, loadProjects } from "./teams.js";

/** Open project `pid`: its classes, counts and image list; starts polling for changes. */
export async function openProject(pid, force = false) {
  if (S.pid === pid && !force) return true;
  if (S.pid !== pid) { closeImage(); clearThumbs(); }
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
  if (!S.images.some((im) => typeof im.proposals === "number")) loadProposed();
  return true;
}

/* export, import, classes ------------------------------------------------------------------------ */
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
export function renderClassEditor() {
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
