/* The project's photos: thumbnails (fetched lazily, a few at a time) in the Photos grid and the
 * annotator's strip, the status filters, the counts bar, and polling /changes so teammates'
 * uploads and edits show up. Opening a photo from a thumbnail is wired in annotator.js. */
import { $, $$, el } from "./util.js";
import { S, versions, imgVersions, P, classes, className, colour, boxCountOf, proposalsOf, statusOf,
  matches, boxView, setLocal } from "./state.js";
import { api, apiBlob, Q, pendingFor } from "./api.js";
import { A } from "./canvas.js";
import { refreshAnnot, renderClassList } from "./panel.js";
import { renderProjectSelect } from "./teams.js";

const STATUS_TEXT = {
  unlabelled: ["未标", "unlabelled"], no_objects: ["无目标", "no objects"],
  labelled: ["已标", "labelled"], reviewed: ["已审", "reviewed"], needs_fix: ["待改", "needs fix"],
};

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
    t = el("button", { class: "thumb", type: "button", dataset: { id: String(im.id) } },
      pic, el("span", { class: "badge" }), el("span", { class: "pbadge" }), el("span", { class: "cap" }));
    thumbEls[where].set(key, t);
  }
  const st = statusOf(im), n = boxCountOf(im), [zh, en] = STATUS_TEXT[st];
  t.dataset.status = st;
  t.dataset.unsaved = pendingFor(im.id) ? "true" : "false";
  $(".badge", t).textContent = n > 0 && st !== "needs_fix" ? `${zh} ${n}` : zh;
  $(".cap", t).textContent = im.file_name;
  const open = proposalsOf(im);   // a model's proposals waiting for a person
  t.dataset.proposals = String(open);
  $(".pbadge", t).textContent = open ? `建议 ${open > 0 ? open : ""}`.trim() : "";
  t.title = `${im.file_name} · ${zh} ${en}${n ? ` · ${n} 框 boxes` : ""}${open ? " · 有模型建议 has proposals" : ""}`;
  t.setAttribute("aria-label", t.title);
  t.classList.toggle("current", !!(S.cur && S.cur.id === im.id));
  return t;
}
export function refreshThumb(id) {
  const im = S.byId.get(id);
  if (!im) return;
  for (const where of ["thumbs", "strip"]) if (thumbEls[where].has(`${S.pid}/${id}`)) thumbFor(where, im);
}
export function renderThumbs() {
  for (const [where, filter] of [["thumbs", $("#filter").value], ["strip", $("#strip-filter").value]]) {
    const box = $("#" + where);
    const want = S.images.filter((im) => matches(im, filter) || (where === "strip" && S.cur && S.cur.id === im.id));
    const nodes = want.map((im) => thumbFor(where, im));
    const same = box.children.length === nodes.length && nodes.every((n, i) => box.children[i] === n);
    if (!same) box.replaceChildren(...nodes);
  }
  $("#thumbs-empty").hidden = S.images.length > 0;
}
/** Forget the thumbnails of the project that was open. */
export function clearThumbs() {
  thumbEls.thumbs.clear(); thumbEls.strip.clear();
  $("#thumbs").replaceChildren(); $("#strip").replaceChildren();
}
function syncFilters(value) { $("#filter").value = value; $("#strip-filter").value = value; renderThumbs(); }
$("#filter").addEventListener("change", (e) => syncFilters(e.target.value));
$("#strip-filter").addEventListener("change", (e) => syncFilters(e.target.value));

export function renderCounts() {
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
export function scheduleCounts(ms = 400) {
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
export function schedulePoll(ms = 3000) { clearTimeout(pollTimer); pollTimer = setTimeout(poll, ms); }
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
    if ((versions.get(b.id) || 0) < b.version) { versions.set(b.id, b.version); setLocal(b.id, boxView(b)); changed = true; }
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
export function upsertImage(im) {
  const entry = S.byId.get(im.id);
  const fields = { ...im, boxes: boxCountOf(im) };
  if (Array.isArray(im.boxes)) {
    fields.proposals = proposalsOf(im);
    if (fields.proposals) S.proposedIds.add(im.id); else S.proposedIds.delete(im.id);
  }
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

/** Which photos have a model's open proposals (GET ?status=proposed), for the gallery's badges when
 *  the image list does not count them. An older server without the filter: none. */
export async function loadProposed() {
  const pid = S.pid, ids = new Set();
  try {
    for (let offset = 0; ;) {
      const r = await api(P(`/images?status=proposed&offset=${offset}&limit=1000`));
      for (const im of r.images) ids.add(im.id);
      offset += r.images.length;
      if (!r.images.length || offset >= r.total) break;
    }
  } catch (e) { return; }
  if (pid !== S.pid) return;
  S.proposedIds = ids;
  renderThumbs();
}
