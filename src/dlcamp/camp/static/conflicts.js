/* Conflicts: the server answered 409 because a teammate changed the same box or image first.
 * An image flag nobody else touched merges silently; otherwise the user picks "keep theirs" or
 * "use mine" in a small dialog, and the queue (api.js) goes on with the answer: mine is resent on
 * top of their version (a deleted box is re-created under a fresh id), theirs replaces mine here. */
import { $, uuid, say } from "./util.js";
import { S, versions, imgVersions, className, boxState, setLocal } from "./state.js";
import { Q, saveQueue, acknowledge } from "./api.js";
import { renameBox } from "./edits.js";
import { refreshAnnot } from "./panel.js";
import { renderThumbs } from "./gallery.js";
import { reloadCurrent } from "./annotator.js";

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

/** Settle the 409 answer `body` ({detail, current}) to the queue's head op `op`. */
export async function resolveConflict(op, body) {
  const current = body.current === undefined ? null : body.current;
  const here = S.cur && S.cur.id === op.img && op.pid === S.pid;
  if (op.kind === "copy") { Q.ops.shift(); saveQueue(); say(body.detail || "复制失败 copy failed", "error"); return; }
  if (op.kind === "accept") {   // a teammate edited or removed a proposal first: show the server's state
    Q.ops.shift(); saveQueue(); say(`没能接受 Not accepted: ${body.detail || "conflict"}`, "error");
    if (here && !Q.ops.some((o) => o.img === op.img)) reloadCurrent();
    return;
  }
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
