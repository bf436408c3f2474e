/* A trained model's proposed boxes in the annotator. They come with the image's boxes marked
 * `proposed: true` (and the model's `score`), are drawn dashed with that score (canvas.js), and
 * count nowhere until a person accepts them: A accepts the selected one (and selects the next),
 * Shift+A all of the photo's, editing one (move, resize, class) accepts it through the ordinary
 * PUT, Del rejects it (the ordinary DELETE). Accepting is an edit in the queue (api.js: kind
 * "accept", POST .../images/{i}/accept); it cannot be undone, since the server keeps no way back. */
import { say } from "./util.js";
import { S, selectedBox, updateEntry } from "./state.js";
import { enqueue } from "./api.js";
import { canvas } from "./canvas.js";
import { afterEdit, deleteSelected } from "./edits.js";
import { refreshAnnot } from "./panel.js";

const openProposals = () => (S.cur ? S.cur.boxes.filter((b) => b.proposed) : []);

/** Accept the boxes `ids` of the open photo (null: all its open proposals). */
function accept(ids) {
  const list = openProposals().filter((b) => !ids || ids.includes(b.id));
  if (!list.length) return 0;
  for (const b of list) b.proposed = false;
  enqueue({ kind: "accept", img: S.cur.id, box_ids: list.map((b) => b.id) });
  updateEntry(); afterEdit();
  return list.length;
}

/** Select the next open proposal after the selected box (wrapping); false when there is none. */
export function selectNextProposal() {
  const all = S.cur ? S.cur.boxes : [];
  const i = all.findIndex((b) => b.id === S.selected);
  const next = [...all.slice(i + 1), ...all.slice(0, i + 1)].find((b) => b.proposed);
  if (!next) return false;
  S.selected = next.id; S.curClass = next.label; refreshAnnot();
  return true;
}

/** Key A: accept the selected proposal and go on to the next one; with no proposal selected,
 *  select the first. Returns false when the photo has no open proposals (A then means
 *  "previous photo", as before). */
export function acceptKey() {
  if (!openProposals().length) return false;
  const b = selectedBox();
  if (b && b.proposed) {
    accept([b.id]);
    if (!selectNextProposal()) say("本图的建议都处理完了 All proposals of this photo done", "ok");
  } else {
    selectNextProposal();
    say("A 接受选中的建议，Del 拒绝，Shift+A 全部接受 A accepts the selected proposal, Del rejects, Shift+A accepts all");
  }
  return true;
}
export function acceptSelected() {
  const b = selectedBox();
  if (!b || !b.proposed) { say("先点选一个建议框 Select a proposed box first"); return; }
  acceptKey();
}
/** Shift+A: accept every open proposal of the photo. */
export function acceptAll() {
  const n = accept(null);
  say(n ? `接受了 ${n} 个建议框 Accepted ${n} proposed boxes` : "这张图没有建议框 No proposals on this photo", n ? "ok" : "info");
}
/** Del on a proposal rejects it; then the next proposal is selected. */
export function deleteOrReject() {
  const b = selectedBox();
  deleteSelected();
  if (b && b.proposed) selectNextProposal();
}

document.getElementById("accept-one").addEventListener("click", (e) => {
  acceptSelected(); if (e.detail > 0) canvas.focus({ preventScroll: true });
});
document.getElementById("accept-all").addEventListener("click", (e) => {
  acceptAll(); if (e.detail > 0) canvas.focus({ preventScroll: true });
});
