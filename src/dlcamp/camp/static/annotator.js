/* Opening photos in the annotator: fetch an image's boxes and working copy (a few cached, the
 * neighbours warmed), replay edits still queued for it, and move between photos (previous, next,
 * next unlabelled, a thumbnail's click). Drawing is canvas.js; the panel is panel.js. */
import { $, say } from "./util.js";
import { S, versions, imgVersions, P, boxState, boxView, setLocal, updateEntry, boxById } from "./state.js";
import { ApiError, api, apiBlob, Q } from "./api.js";
import { canvas, A, fitView, draw, cancelDrag } from "./canvas.js";
import { flushNudge } from "./edits.js";
import { refreshAnnot } from "./panel.js";
import { renderThumbs } from "./gallery.js";

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
    if (o.kind === "put") { setLocal(o.box, boxState(o)); const b = boxById(o.box); if (b) b.proposed = false; }
    else if (o.kind === "del") setLocal(o.box, null);
    else if (o.kind === "patch") Object.assign(S.cur, o.fields);
    else if (o.kind === "accept") for (const b of S.cur.boxes) if (!o.box_ids || o.box_ids.includes(b.id)) b.proposed = false;
  }
}

/** Open image `id` in the annotator (fetches its boxes, then its working copy). */
export async function openImage(id) {
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
    boxes: (data.boxes || []).map((b) => ({ id: b.id, ...boxView(b) })) };
  for (const b of data.boxes || []) if ((versions.get(b.id) || 0) < b.version) versions.set(b.id, b.version);
  if ((imgVersions.get(id) || 0) < data.version) imgVersions.set(id, data.version);
  replayPending(id);
  updateEntry();
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
/** Close the open image (another project opens): an answer for it still on its way is dropped. */
export function closeImage() { openSeq++; S.cur = null; S.selected = null; S.curClass = 0; }
export function reloadCurrent() { if (S.cur) openImage(S.cur.id); }

export function gotoImage(id) {
  if (!id) return;
  const hash = `#/p/${encodeURIComponent(S.pid)}/label/${id}`;
  if (S.view !== "label") { location.hash = hash; return; }   // a new history entry: Back returns
  history.replaceState(null, "", hash);                       // stepping through photos does not
  openImage(id);
}
export function step(delta) {
  if (!S.images.length) return;
  const i = S.cur ? S.images.findIndex((im) => im.id === S.cur.id) : -1;
  const j = i + delta;
  if (j < 0 || j >= S.images.length) { say(delta > 0 ? "已是最后一张 Last image" : "已是第一张 First image"); return; }
  gotoImage(S.images[j].id);
}
export async function nextUnlabelled(from = S.cur ? S.cur.id : 0) {
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

for (const where of ["#thumbs", "#strip"]) {   // a thumbnail opens its photo
  $(where).addEventListener("click", (e) => {
    const t = e.target.closest(".thumb");
    if (t) gotoImage(+t.dataset.id);
  });
}
$("#start-labelling").addEventListener("click", () => nextUnlabelled(0));
