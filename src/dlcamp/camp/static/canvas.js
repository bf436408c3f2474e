/* The annotation canvas: the view transform (zoom, pan, fit), drawing the photo, its boxes, the
 * box being drawn, the touch magnifier and the crosshair, and hit tests in screen pixels.
 * Screen point (CSS px, relative to the canvas) = (tx + x * scale, ty + y * scale) for an image
 * point (x, y) in working-copy pixels. `A` holds the view and what the pointer is doing; the
 * input handlers that change it are in pointer.js and keys.js. */
import { $, clamp, round2 } from "./util.js";
import { S, className, colour, selectedBox, setLocal } from "./state.js";

export const canvas = $("#canvas");
const ctx = canvas.getContext("2d");
export const A = { scale: 1, tx: 0, ty: 0, fit: true, img: null, drag: null, pointers: new Map(),
  hover: null, space: false, nudge: null, frame: 0 };
export const HANDLE_EDGES = [["x1", "y1"], ["y1"], ["x2", "y1"], ["x2"], ["x2", "y2"], ["y2"], ["x1", "y2"], ["x1"]];
export const HANDLE_CURSOR = ["nwse-resize", "ns-resize", "nesw-resize", "ew-resize", "nwse-resize", "ns-resize", "nesw-resize", "ew-resize"];

const toScreen = (x, y) => ({ x: A.tx + x * A.scale, y: A.ty + y * A.scale });
export const toImage = (p) => ({ x: (p.x - A.tx) / A.scale, y: (p.y - A.ty) / A.scale });
export function pointOf(e) { const r = canvas.getBoundingClientRect(); return { x: e.clientX - r.left, y: e.clientY - r.top }; }
function handlePoints(b) {
  const a = toScreen(b.x1, b.y1), c = toScreen(b.x2, b.y2), mx = (a.x + c.x) / 2, my = (a.y + c.y) / 2;
  return [[a.x, a.y], [mx, a.y], [c.x, a.y], [c.x, my], [c.x, c.y], [mx, c.y], [a.x, c.y], [a.x, my]];
}

export function fitView() {
  if (!S.cur) return;
  const W = canvas.clientWidth, H = canvas.clientHeight;
  if (!W || !H) return;
  A.scale = Math.min(W / S.cur.width, H / S.cur.height) * 0.96;
  A.tx = (W - S.cur.width * A.scale) / 2; A.ty = (H - S.cur.height * A.scale) / 2;
  A.fit = true; draw();
}
export function zoomAt(p, factor) {
  if (!S.cur) return;
  const fit = Math.min(canvas.clientWidth / S.cur.width, canvas.clientHeight / S.cur.height);
  const s = clamp(A.scale * factor, fit * 0.5, 40);
  const q = toImage(p);
  A.scale = s; A.tx = p.x - q.x * s; A.ty = p.y - q.y * s; A.fit = false; draw();
}
export const zoomCentre = (f) => zoomAt({ x: canvas.clientWidth / 2, y: canvas.clientHeight / 2 }, f);

export function draw() { if (!A.frame) A.frame = requestAnimationFrame(render); }
function render() {
  A.frame = 0;
  const dpr = window.devicePixelRatio || 1, W = canvas.clientWidth, H = canvas.clientHeight;
  if (canvas.width !== Math.round(W * dpr) || canvas.height !== Math.round(H * dpr)) {
    canvas.width = Math.round(W * dpr); canvas.height = Math.round(H * dpr);
  }
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.fillStyle = "#2a2f36"; ctx.fillRect(0, 0, W, H);
  // For tests and tools: screen = (tx + x * scale, ty + y * scale), CSS px from the canvas corner.
  canvas.dataset.view = `${A.scale.toFixed(6)},${A.tx.toFixed(2)},${A.ty.toFixed(2)}`;
  if (!S.cur) return;
  const w = S.cur.width * A.scale, h = S.cur.height * A.scale;
  if (A.img) {
    ctx.imageSmoothingEnabled = A.scale < 3;
    ctx.drawImage(A.img, A.tx, A.ty, w, h);
  } else {
    ctx.fillStyle = "#3a414b"; ctx.fillRect(A.tx, A.ty, w, h);
    ctx.fillStyle = "#c9d1db"; ctx.font = "14px system-ui, sans-serif"; ctx.textAlign = "center";
    ctx.fillText("加载中… loading", A.tx + w / 2, A.ty + h / 2); ctx.textAlign = "start";
  }
  const sel = selectedBox();
  for (const b of S.cur.boxes) if (b !== sel) drawBox(b, false);
  if (sel) drawBox(sel, true);
  const d = A.drag;
  if (d && d.mode === "draw" && d.moved) {
    const r = rectFrom(d.startImg, toImage(d.cur));
    const a = toScreen(r.x1, r.y1), c = toScreen(r.x2, r.y2);
    ctx.setLineDash([6, 4]); ctx.lineWidth = 2; ctx.strokeStyle = colour(S.curClass);
    ctx.strokeRect(a.x, a.y, c.x - a.x, c.y - a.y); ctx.setLineDash([]);
    drawTag(`${className(S.curClass)} ${Math.round(r.x2 - r.x1)}×${Math.round(r.y2 - r.y1)}`, a.x, a.y, colour(S.curClass));
  }
  if (d && d.touch && d.cur && (d.mode === "resize" || (d.mode === "draw" && d.moved))) drawLoupe(d);
  if (A.hover && !d && A.img) {   // crosshair guides help aim the first corner
    const p = A.hover;
    if (p.x >= A.tx && p.x <= A.tx + w && p.y >= A.ty && p.y <= A.ty + h) {
      ctx.strokeStyle = "rgba(255,255,255,.55)"; ctx.lineWidth = 1; ctx.setLineDash([4, 4]);
      ctx.beginPath(); ctx.moveTo(A.tx, p.y + .5); ctx.lineTo(A.tx + w, p.y + .5);
      ctx.moveTo(p.x + .5, A.ty); ctx.lineTo(p.x + .5, A.ty + h); ctx.stroke(); ctx.setLineDash([]);
    }
  }
}
/** A finger hides what it points at: show the spot under it magnified in a corner. */
function drawLoupe(d) {
  if (!A.img) return;
  const R = 58, Z = 2.5, W = canvas.clientWidth, p = d.cur;
  const cx = p.x < W / 2 && p.y < 2 * R + 40 ? W - R - 12 : R + 12, cy = R + 12;
  const s = A.scale * Z, q = toImage(p), X = (x) => cx + (x - q.x) * s, Y = (y) => cy + (y - q.y) * s;
  ctx.save();
  ctx.beginPath(); ctx.arc(cx, cy, R, 0, Math.PI * 2); ctx.clip();
  ctx.fillStyle = "#2a2f36"; ctx.fillRect(cx - R, cy - R, 2 * R, 2 * R);
  ctx.imageSmoothingEnabled = s < 3;
  ctx.drawImage(A.img, X(0), Y(0), S.cur.width * s, S.cur.height * s);
  ctx.lineWidth = 2;
  for (const b of S.cur.boxes) { ctx.strokeStyle = colour(b.label); ctx.strokeRect(X(b.x1), Y(b.y1), (b.x2 - b.x1) * s, (b.y2 - b.y1) * s); }
  if (d.mode === "draw") {
    const r = rectFrom(d.startImg, q);
    ctx.strokeStyle = colour(S.curClass); ctx.strokeRect(X(r.x1), Y(r.y1), (r.x2 - r.x1) * s, (r.y2 - r.y1) * s);
  }
  ctx.strokeStyle = "rgba(255,255,255,.9)"; ctx.lineWidth = 1;
  ctx.beginPath(); ctx.moveTo(cx - R, cy + .5); ctx.lineTo(cx + R, cy + .5); ctx.moveTo(cx + .5, cy - R); ctx.lineTo(cx + .5, cy + R); ctx.stroke();
  ctx.restore();
  ctx.beginPath(); ctx.arc(cx, cy, R, 0, Math.PI * 2); ctx.lineWidth = 3; ctx.strokeStyle = "#fff"; ctx.stroke();
}
function drawTag(text, x, y, col) {
  ctx.font = "600 12px system-ui, 'Noto Sans CJK SC', 'WenQuanYi Micro Hei', sans-serif";
  const tw = ctx.measureText(text).width + 8, th = 17;
  const ty = y - th >= 0 ? y - th : y;
  ctx.fillStyle = col; ctx.fillRect(x, ty, tw, th);
  ctx.fillStyle = "#fff"; ctx.fillText(text, x + 4, ty + 13);
}
function drawBox(b, selected) {
  const a = toScreen(b.x1, b.y1), c = toScreen(b.x2, b.y2), col = colour(b.label);
  ctx.lineWidth = selected ? 3 : 2;
  if (b.proposed) ctx.setLineDash([7, 5]);   // a model's proposal: dashed until someone accepts it
  ctx.strokeStyle = "rgba(0,0,0,.55)"; ctx.strokeRect(a.x - 1, a.y - 1, c.x - a.x + 2, c.y - a.y + 2);
  ctx.strokeStyle = col; ctx.strokeRect(a.x, a.y, c.x - a.x, c.y - a.y);
  ctx.setLineDash([]);
  if (selected) { ctx.fillStyle = col + "26"; ctx.fillRect(a.x, a.y, c.x - a.x, c.y - a.y); }
  const score = b.proposed && typeof b.score === "number" ? ` ${b.score.toFixed(2)}` : "";
  drawTag(b.proposed ? `? 建议 ${className(b.label)}${score}` : className(b.label), a.x, a.y, col);
  if (!selected) return;
  for (const [x, y] of handlePoints(b)) {
    ctx.fillStyle = "#fff"; ctx.strokeStyle = col; ctx.lineWidth = 2;
    ctx.fillRect(x - 5, y - 5, 10, 10); ctx.strokeRect(x - 5, y - 5, 10, 10);
  }
}

/* hit tests (screen px; fingers get bigger targets) */
export function hitHandle(b, p, touch) {
  const r = touch ? 22 : 10;
  let best = -1, bestD = Infinity;
  handlePoints(b).forEach(([x, y], i) => {
    const dd = Math.hypot(p.x - x, p.y - y);
    if (dd <= r && dd < bestD) { best = i; bestD = dd; }
  });
  return best;
}
export function inside(b, p, pad = 0) {
  const a = toScreen(b.x1, b.y1), c = toScreen(b.x2, b.y2);
  return p.x >= a.x - pad && p.x <= c.x + pad && p.y >= a.y - pad && p.y <= c.y + pad;
}
export function hitBox(p) {   // the smallest box under p
  let best = null;
  for (const b of S.cur.boxes) {
    if (!inside(b, p, 3)) continue;
    if (!best || (b.x2 - b.x1) * (b.y2 - b.y1) < (best.x2 - best.x1) * (best.y2 - best.y1)) best = b;
  }
  return best;
}
export function rectFrom(a, b) {
  const W = S.cur.width, H = S.cur.height;
  const x1 = clamp(Math.min(a.x, b.x), 0, W), x2 = clamp(Math.max(a.x, b.x), 0, W);
  const y1 = clamp(Math.min(a.y, b.y), 0, H), y2 = clamp(Math.max(a.y, b.y), 0, H);
  return { x1: round2(x1), y1: round2(y1), x2: round2(x2), y2: round2(y2) };
}
export const validRect = (r) => r.x2 - r.x1 >= 1 && r.y2 - r.y1 >= 1;

/** Drop what the pointer was doing; a box being moved or resized goes back where it was. */
export function cancelDrag() {
  const d = A.drag;
  if (d && (d.mode === "move" || d.mode === "resize")) setLocal(d.id, d.orig);
  A.drag = null; draw();
}
new ResizeObserver(() => { if (A.fit) fitView(); else draw(); }).observe($("#canvas-wrap"));
