/* Pointer input on the canvas, mouse and touch alike: a drag draws a box, a click selects one,
 * a selected box moves or resizes by its handles (fingers get bigger targets), Space+drag or the
 * middle button pans, two fingers pinch-zoom, the wheel zooms at the pointer. */
import { $, clamp, round2 } from "./util.js";
import { S, boxState, boxById, selectedBox, setLocal } from "./state.js";
import { canvas, A, HANDLE_EDGES, HANDLE_CURSOR, toImage, pointOf, zoomAt, draw, hitHandle, inside,
  hitBox, rectFrom, validRect, cancelDrag } from "./canvas.js";
import { createBox, changeBox } from "./edits.js";
import { refreshAnnot } from "./panel.js";

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
