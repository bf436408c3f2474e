/* The user's edits as undoable actions, and what the server's answers mean for the open image.
 *
 * An action is {img, changes: [{h, before, after}], image?: {before, after}} where h is a handle
 * ({id}) shared by every action on the same box: when undo re-creates a deleted box it gets a new
 * id (the old one is a tombstone on the server) and the handle follows it. Undo applies each
 * change's `before`, redo its `after`, both as ordinary queued edits (api.js). Stacks are per
 * image (state.js). */
import { $, uuid, say, clamp } from "./util.js";
import { S, versions, classes, boxCountOf, stack, boxState, sameState, boxById, selectedBox,
  setLocal, updateEntry } from "./state.js";
import { Q, enqueue, pendingBox } from "./api.js";
import { A, draw } from "./canvas.js";
import { refreshAnnot } from "./panel.js";
import { refreshThumb, renderThumbs, scheduleCounts } from "./gallery.js";

const handles = new Map();
function handle(id) { let h = handles.get(id); if (!h) { h = { id }; handles.set(id, h); } return h; }

/* actions, undo/redo ---------------------------------------------------------------------------- */
/** Make box h's state `target` here and on the server (queued edits). */
function applyBox(h, target) {
  const cur = boxById(h.id);
  if (target === null) {
    if (!cur) return;
    setLocal(h.id, null);
    enqueue({ kind: "del", img: S.cur.id, box: h.id });
  } else if (cur) {
    if (cur.proposed) cur.proposed = false;   // the server takes an edit of a proposal as accepting it
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
export function undo() {
  if (!S.cur) return;
  const st = stack(S.cur.id), a = st.undo.pop();
  if (!a) { say("没有可撤销的 Nothing to undo"); return; }
  run(a, "before"); st.redo.push(a); afterEdit();
}
export function redo() {
  if (!S.cur) return;
  const st = stack(S.cur.id), a = st.redo.pop();
  if (!a) { say("没有可重做的 Nothing to redo"); return; }
  run(a, "after"); st.undo.push(a); afterEdit();
}
export function afterEdit() {
  refreshAnnot(); updateEntry();
  if ($("#filter").value === "all" && $("#strip-filter").value === "all") refreshThumb(S.cur.id);
  else renderThumbs();   // the image may have joined or left a filtered list
}

/* the user's edits ---------------------------------------------------------------------------- */
export function createBox(rect) {
  if (!classes().length) { say("先在“数据”里添加类别 Add classes first (under Data)", "error"); return; }
  const id = uuid();
  const after = { label: S.curClass, ...rect };
  const action = { changes: [{ h: handle(id), before: null, after }] };
  if (S.cur.no_objects) action.image = { before: { no_objects: true }, after: { no_objects: false } };
  commit(action);
  S.selected = id; refreshAnnot();
}
export function changeBox(id, before, after) {
  if (sameState(before, after)) return;
  commit({ changes: [{ h: handle(id), before, after }] });
}
export function deleteSelected() {
  const b = selectedBox();
  if (!b) { say("先点选一个框 Select a box first"); return; }
  commit({ changes: [{ h: handle(b.id), before: boxState(b), after: null }] });
}
export function setClass(i) {
  if (i < 0 || i >= classes().length) { say(`没有第 ${i + 1} 类 No class ${i + 1}`); return; }
  S.curClass = i;
  const b = selectedBox();
  if (b && b.label !== i) changeBox(b.id, boxState(b), { ...boxState(b), label: i });
  refreshAnnot();
}
export function toggleNoObjects() {
  if (!S.cur) return;
  if (!S.cur.no_objects && S.cur.boxes.length) {
    say("这张图有框：先删除框再标“无目标” This image has boxes: delete them first", "error"); return;
  }
  const v = !S.cur.no_objects;
  commit({ changes: [], image: { before: { no_objects: !v }, after: { no_objects: v } } });
  say(v ? "已标为无目标 Marked: no objects" : "已取消无目标 No longer 'no objects'");
}
export function setReview(value) {
  if (!S.cur) return;
  const next = S.cur.review === value ? "todo" : value;
  commit({ changes: [], image: { before: { review: S.cur.review }, after: { review: next } } });
}
export function copyPrev() {
  if (!S.cur) return;
  const i = S.images.findIndex((im) => im.id === S.cur.id);
  if (i <= 0) { say("没有上一张 No previous image"); return; }
  const src = S.images[i - 1];
  if (boxCountOf(src) === 0) { say("上一张没有框 The previous image has no boxes"); return; }
  if (Q.ops.some((o) => o.kind === "copy" && o.img === S.cur.id)) return;
  enqueue({ kind: "copy", img: S.cur.id, src: src.id });
  say("正在复制上一张的框… Copying boxes from the previous image");
}

/** Shift+arrow: move the selected box by 1 px; one undoable edit once the keys rest. */
export function nudge(dx, dy) {
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
export function flushNudge() {
  const n = A.nudge; A.nudge = null;
  if (!n) return;
  clearTimeout(n.timer);
  const b = boxById(n.id);
  if (b) changeBox(n.id, n.orig, boxState(b));
}

/* the server's answers ---------------------------------------------------------------------------- */
/** The server acknowledged op (api.js has recorded the versions): show what it means here. */
export function acknowledged(op, res) {
  if (op.kind === "patch" && res) {   // res: the whole image now, a teammate's fields included
    const fields = { no_objects: !!res.no_objects, review: res.review, version: res.version };
    const settled = !Q.ops.some((o) => o.kind === "patch" && o.img === op.img);
    const entry = S.byId.get(op.img);
    if (entry && settled) Object.assign(entry, fields);
    if (S.cur && S.cur.id === op.img && op.pid === S.pid) {
      if (settled) { Object.assign(S.cur, fields); refreshAnnot(); refreshThumb(op.img); } else S.cur.version = res.version;
    }
  }
  if (op.kind === "copy" && res) copied(op, res.boxes || []);
  if (op.kind === "accept" && res && S.cur && S.cur.id === op.img && op.pid === S.pid) {
    const ids = op.box_ids ? new Set(op.box_ids) : null;   // the server's word on what is accepted now
    for (const b of res.boxes || []) {
      const mine = boxById(b.id);
      if (mine && (!ids || ids.has(b.id)) && !b.proposed) mine.proposed = false;
    }
    updateEntry(); refreshAnnot(); refreshThumb(op.img);
  }
  if (op.pid === S.pid) scheduleCounts();
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
/** Give box `old` the id `nid` everywhere: queued ops, the open image, undo handles. */
export function renameBox(old, nid) {
  for (const o of Q.ops) if (o.box === old) o.box = nid;
  if (S.cur) { const b = S.cur.boxes.find((x) => x.id === old); if (b) b.id = nid; }
  if (S.selected === old) S.selected = nid;
  const h = handles.get(old);
  if (h) { handles.delete(old); h.id = nid; handles.set(nid, h); }
  versions.set(nid, 0);
}
