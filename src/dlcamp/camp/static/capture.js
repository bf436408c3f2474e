/* Getting photos in: the file inputs (a phone's opens its camera), a folder, drag and drop of
 * files and folders anywhere on the page, the webcam (getUserMedia), and the upload queue that
 * sends them two at a time with progress, retries and a per-file answer (done, duplicate, why
 * not). A retry sends the same bytes, so the server's hash check never stores a copy. */
import { $, el, say, fmtSize } from "./util.js";
import { S } from "./state.js";
import { authHeaders, detailText } from "./api.js";
import { renderThumbs, scheduleCounts, upsertImage } from "./gallery.js";
import { gotoImage } from "./annotator.js";
import { go } from "./teams.js";

const MAX_UPLOAD = 25 * 1024 * 1024;
const IMAGE_EXT = /\.(jpe?g|jfif|png|webp|bmp|gif|tiff?|heic|heif)$/i;

/* the upload queue --------------------------------------------------------------------------------- */
const U = { items: [], active: 0, next: 1 };

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
