/* What each key, tool button and class chip does, and the shortcut list (the ? panel). Keys act
 * on the annotator only while it is the view and nobody is typing in a field or a dialog. */
import { $, el } from "./util.js";
import { S, boxById, selectedBox } from "./state.js";
import { canvas, A, fitView, zoomCentre, cancelDrag } from "./canvas.js";
import { undo, redo, setClass, toggleNoObjects, setReview, copyPrev, nudge,
  flushNudge } from "./edits.js";
import { refreshAnnot } from "./panel.js";
import { step, nextUnlabelled } from "./annotator.js";
import { acceptKey, acceptAll, deleteOrReject } from "./proposals.js";

const KEYS = [
  [["拖动 drag"], "画框；拖动选中的框或角点来移动、调整大小", "Draw a box; drag a selected box or its handles to move / resize"],
  [["点击 click"], "选中框（再拖动可移动）", "Select a box (then drag to move it)"],
  [["1", "…", "9"], "选择类别（也改选中框的类别）", "Pick a class (also changes the selected box)"],
  [["Del", "Backspace"], "删除选中的框", "Delete the selected box"],
  [["Ctrl+Z"], "撤销", "Undo"],
  [["Ctrl+Shift+Z", "Ctrl+Y"], "重做", "Redo"],
  [["N"], "下一张未标注的照片", "Next unlabelled photo"],
  [["A"], "接受选中的模型建议框，再选下一个（没有建议时：上一张）", "Accept the selected proposed box, select the next (no proposals: previous photo)"],
  [["Shift+A"], "接受本图全部建议框", "Accept all proposed boxes of the photo"],
  [["Del"], "在建议框上：拒绝它", "On a proposed box: reject it"],
  [["编辑 edit"], "移动、调整或改类别也会接受建议框", "Moving, resizing or relabelling a proposed box accepts it"],
  [["←", "A"], "上一张", "Previous photo"],
  [["D", "→"], "下一张", "Next photo"],
  [["C"], "复制上一张照片的框", "Copy the boxes of the previous photo"],
  [["0", "E"], "标为“无目标”（导出时保留）", "Mark 'no objects' (kept in exports)"],
  [["R"], "标为已审核（再按取消）", "Mark reviewed (again: undo the mark)"],
  [["X"], "标为需要修改", "Mark needs fix"],
  [["Shift+← ↑ → ↓"], "把选中的框移动 1 像素", "Nudge the selected box by 1 pixel"],
  [["Tab", "Shift+Tab"], "在画布上：选下一个 / 上一个框", "On the canvas: select the next / previous box"],
  [["Esc"], "取消选择或取消正在画的框", "Deselect, or cancel the box being drawn"],
  [["+", "−", "F"], "放大 / 缩小 / 适应窗口", "Zoom in / out / fit"],
  [["滚轮 wheel"], "以指针为中心缩放", "Zoom at the pointer"],
  [["Space+拖动 drag", "中键 middle drag"], "平移", "Pan"],
  [["双指 two fingers"], "手机上：捏合缩放，拖动平移", "On a phone: pinch to zoom, drag to pan"],
  [["?"], "显示快捷键", "Show this list"],
];
function openHelp() {
  $("#help-table").replaceChildren(...KEYS.map(([keys, zh, en]) => el("div", { class: "key-row" },
    el("span", { class: "k" }, ...keys.map((k) => el("kbd", {}, k))), el("span", {}, zh, el("br"), el("small", {}, en)))));
  $("#help-dialog").showModal();
}
function typing(t) { return t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName)); }
document.addEventListener("keydown", (e) => {
  if (typing(e.target) || $("dialog[open]")) return;
  const k = e.key, mod = e.ctrlKey || e.metaKey;
  if (k === "?") { e.preventDefault(); openHelp(); return; }
  if (S.view !== "label") return;
  if (mod && (k === "z" || k === "Z")) { e.preventDefault(); flushNudge(); if (e.shiftKey) redo(); else undo(); return; }
  if (mod && (k === "y" || k === "Y")) { e.preventDefault(); flushNudge(); redo(); return; }
  if (mod || e.altKey) return;
  if (k === " " && (e.target === canvas || e.target === document.body)) {
    e.preventDefault(); A.space = true; canvas.style.cursor = "grab"; return;
  }
  if (e.shiftKey && k.startsWith("Arrow") && selectedBox()) {
    e.preventDefault();
    nudge(k === "ArrowLeft" ? -1 : k === "ArrowRight" ? 1 : 0, k === "ArrowUp" ? -1 : k === "ArrowDown" ? 1 : 0);
    return;
  }
  if (k === "Tab" && e.target === canvas && S.cur && S.cur.boxes.length) {
    const ids = S.cur.boxes.map((b) => b.id), i = ids.indexOf(S.selected);
    const j = e.shiftKey ? (i < 0 ? ids.length - 1 : i - 1) : i + 1;
    if (j >= 0 && j < ids.length) { e.preventDefault(); S.selected = ids[j]; S.curClass = boxById(ids[j]).label; refreshAnnot(); }
    else { S.selected = null; refreshAnnot(); }
    return;
  }
  let done = true;
  if (/^[1-9]$/.test(k)) setClass(+k - 1);
  else if (k === "0" || k === "e" || k === "E") toggleNoObjects();
  else if (k === "Delete" || k === "Backspace") deleteOrReject();
  else if (k === "n" || k === "N") nextUnlabelled();
  else if ((k === "a" || k === "A") && e.shiftKey) acceptAll();
  else if ((k === "a" || k === "A") && acceptKey()) { /* a proposal accepted or selected */ }
  else if (k === "ArrowLeft" || k === "a" || k === "A") step(-1);
  else if (k === "ArrowRight" || k === "d" || k === "D") step(1);
  else if (k === "c" || k === "C") copyPrev();
  else if (k === "r" || k === "R") setReview("done");
  else if (k === "x" || k === "X") setReview("needs_fix");
  else if (k === "f" || k === "F") fitView();
  else if (k === "+" || k === "=") zoomCentre(1.25);
  else if (k === "-" || k === "_") zoomCentre(0.8);
  else if (k === "Escape") { if (A.drag) cancelDrag(); else { S.selected = null; refreshAnnot(); } }
  else done = false;
  if (done) e.preventDefault();
});
document.addEventListener("keyup", (e) => {
  if (e.key === " ") { A.space = false; canvas.style.cursor = ""; }
});
window.addEventListener("blur", () => { A.space = false; });

$("#undo").addEventListener("click", undo);
$("#redo").addEventListener("click", redo);
$("#delete").addEventListener("click", deleteOrReject);
$("#copy-prev").addEventListener("click", copyPrev);
$("#no-objects").addEventListener("click", toggleNoObjects);
$("#review-done").addEventListener("click", () => setReview("done"));
$("#review-fix").addEventListener("click", () => setReview("needs_fix"));
$("#prev").addEventListener("click", () => step(-1));
$("#next").addEventListener("click", () => step(1));
$("#next-unlabelled").addEventListener("click", () => nextUnlabelled());
$("#zoom-in").addEventListener("click", () => zoomCentre(1.25));
$("#zoom-out").addEventListener("click", () => zoomCentre(0.8));
$("#zoom-fit").addEventListener("click", fitView);
$("#help-btn").addEventListener("click", openHelp);
$("#class-list").addEventListener("click", (e) => {
  const chip = e.target.closest(".class");
  if (chip) { setClass(+chip.dataset.label); canvas.focus({ preventScroll: true }); }
});
// After a mouse or touch press on a tool, give the keys back to the canvas (Space must pan, not
// press the tool again); keyboard users (detail === 0) keep their focus where it is.
for (const bar of [$("#tools"), $(".imgbar"), $(".zoom-ctl")]) {
  bar.addEventListener("click", (e) => { if (e.detail > 0 && S.view === "label") canvas.focus({ preventScroll: true }); });
}
