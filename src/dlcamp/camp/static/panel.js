/* The annotator's panel: everything around the canvas that mirrors the open image (name and
 * position, tool states, the status badge, the class chips with live counts, the box list).
 * Rendering only; what a class chip does when pressed is wired in keys.js. */
import { $, el } from "./util.js";
import { S, classes, className, colour, stack, selectedBox } from "./state.js";
import { canvas, draw } from "./canvas.js";

/** Redraw everything around the canvas from S.cur (cheap; called after every change). */
export function refreshAnnot() {
  const cur = S.cur;
  canvas.dataset.boxCount = cur ? String(cur.boxes.length) : "0";
  canvas.dataset.selected = S.selected || "";
  $("#canvas-empty").hidden = !!cur || !S.pid;
  $("#img-name").textContent = cur ? cur.file_name : "—";
  const i = cur ? S.images.findIndex((im) => im.id === cur.id) : -1;
  $("#img-pos").textContent = cur ? `${i + 1} / ${S.images.length}` : "";
  const st = cur ? stack(cur.id) : { undo: [], redo: [] };
  $("#undo").disabled = !st.undo.length; $("#redo").disabled = !st.redo.length;
  $("#delete").disabled = !selectedBox();
  for (const b of ["#copy-prev", "#no-objects", "#review-done", "#review-fix", "#prev", "#next"]) $(b).disabled = !cur;
  $("#no-objects").setAttribute("aria-pressed", String(!!(cur && cur.no_objects)));
  $("#review-done").setAttribute("aria-pressed", String(!!(cur && cur.review === "done")));
  $("#review-fix").setAttribute("aria-pressed", String(!!(cur && cur.review === "needs_fix")));
  const badge = $("#img-badge");
  if (cur && (cur.no_objects || cur.review !== "todo")) {
    badge.hidden = false;
    badge.textContent = [cur.no_objects ? "无目标 No objects" : "",
      cur.review === "done" ? "✓ 已审核 Reviewed" : cur.review === "needs_fix" ? "待修改 Needs fix" : ""]
      .filter(Boolean).join(" · ");
  } else badge.hidden = true;
  renderProposalBar();
  renderClassList(); renderBoxList(); draw();
}
/** The bar over the canvas while the photo has a model's open proposals: how many, accept. */
function renderProposalBar() {
  const open = S.cur ? S.cur.boxes.filter((b) => b.proposed).length : 0;
  const sel = selectedBox();
  $("#proposal-bar").hidden = !open;
  canvas.dataset.proposals = String(open);
  if (!open) return;
  $("#proposal-count").textContent = `${open} 个建议框 proposed`;
  $("#accept-one").disabled = !(sel && sel.proposed);
}

export function renderClassList() {
  const list = $("#class-list");
  const per = (S.project && S.project.counts && S.project.counts.per_class) || [];
  const sel = selectedBox();
  const active = sel ? sel.label : S.curClass;
  list.replaceChildren(...classes().map((c, i) => el("button", {
    class: "class", type: "button", dataset: { label: String(i) },
    "aria-pressed": String(i === active), title: `${className(i)}${i < 9 ? ` (${i + 1})` : ""}`,
  }, el("span", { class: "key" }, i < 9 ? String(i + 1) : ""),
  el("span", { class: "swatch", style: `background:${colour(i)}` }),
  el("span", { class: "nm" }, className(i)),
  el("span", { class: "n", "aria-label": `${per[i] || 0} 个框 boxes` }, String(per[i] || 0)))));
  if (!classes().length) list.append(el("p", { class: "muted small" }, "还没有类别：到“数据”里添加 No classes yet: add them under Data"));
  const on = $(".class[aria-pressed='true']", list);   // on a phone the chips scroll sideways
  if (on && S.view === "label" && list.scrollWidth > list.clientWidth) {
    const left = on.offsetLeft - list.offsetLeft, right = left + on.offsetWidth;
    if (left < list.scrollLeft || right > list.scrollLeft + list.clientWidth) list.scrollLeft = left - 8;
  }
}
function renderBoxList() {
  const ul = $("#box-list");
  if (!S.cur || !S.cur.boxes.length) {
    ul.replaceChildren(el("li", { class: "muted small" }, S.cur && S.cur.no_objects ? "无目标 No objects" : "还没有框 No boxes yet"));
    return;
  }
  ul.replaceChildren(...S.cur.boxes.map((b) => el("li", { dataset: { proposed: String(!!b.proposed) } }, el("button", {
    type: "button", "aria-current": String(b.id === S.selected),
    onclick: () => { S.selected = b.id; S.curClass = b.label; refreshAnnot(); canvas.focus({ preventScroll: true }); },
  }, el("span", { class: "swatch", style: `background:${colour(b.label)}` }), className(b.label),
  b.proposed ? el("span", { class: "prop-tag", title: "模型建议，未接受 Proposed by the model, not accepted yet" },
    `建议 proposed${typeof b.score === "number" ? ` ${b.score.toFixed(2)}` : ""}`) : null,
  el("span", { class: "sz" }, `${Math.round(b.x2 - b.x1)}×${Math.round(b.y2 - b.y1)}`)))));
}
