/* dlcamp camp page: capture photos, draw boxes, never lose an edit. This module starts it.
 *
 * Plain JS modules, no framework, no bundler, nothing fetched from outside this server (camps run
 * offline). Talks to the HTTP API of src/dlcamp/camp/api.py (its docstring lists the routes).
 * Every edit is one small idempotent request: a fresh edit_id, the object's base_version; edits
 * go through one ordered queue that retries network failures with the SAME edit_id, shows
 * "unsaved" until the server acknowledges, and asks the user on a 409 conflict. Undo/redo are
 * inverse edits. Box coordinates are WORKING-copy pixels [x1, y1, x2, y2].
 *
 * The modules, in order; each imports only modules above it (no import cycles):
 *   util.js       DOM helpers, ids, the status line
 *   state.js      the shared state S and questions about it
 *   api.js        the fetch wrapper and the edit queue
 *   canvas.js     view transform, drawing, hit tests
 *   panel.js      the annotator's panel around the canvas
 *   teams.js      header, projects, joining, team join links
 *   gallery.js    thumbnails, filters, counts, polling for teammates' edits
 *   edits.js      the user's edits as undoable actions; what acknowledgements mean
 *   annotator.js  opening photos and stepping through them
 *   conflicts.js  409s: keep theirs or use mine
 *   data.js       opening a project; export, import, the class editor
 *   proposals.js  a trained model's proposed boxes: accept (A, Shift+A), reject
 *   board.js      the leaderboard, submissions and their shift reports; the instructor's test set
 *   train.js      training runs: start, live progress (server-sent events), resume, propose
 *   pointer.js    mouse and touch on the canvas
 *   keys.js       keys, tool buttons, the shortcut list
 *   capture.js    file inputs, drop, folders, webcam, the upload queue
 *   main.js       routing (#/ · #/teams · #/board · #/p/<project>/<photos|label|data|train|board>[/<image id>]),
 *                 start-up
 */
import { $$, say } from "./util.js";
import { S, matches, updateEntry } from "./state.js";
import { loadQueue, onQueue, pump, syncUI } from "./api.js";
import { canvas } from "./canvas.js";
import { refreshAnnot } from "./panel.js";
import { updateTabs, loadProjects, renderProjects, join, whoAmI, renderTeams } from "./teams.js";
import { renderThumbs } from "./gallery.js";
import { flushNudge, acknowledged } from "./edits.js";
import { resolveConflict } from "./conflicts.js";
import { openImage, reloadCurrent } from "./annotator.js";
import { openProject, renderClassEditor } from "./data.js";
import { renderTrain, leaveTrain } from "./train.js";
import { renderBoard } from "./board.js";
import "./pointer.js";
import "./keys.js";
import "./capture.js";

onQueue({ acknowledged, conflict: resolveConflict, refused: reloadCurrent });

/* routing ------------------------------------------------------------------------------------------ */
function parseHash() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "teams") return { view: "teams" };
  if (parts[0] === "board") return { view: "board" };
  if (parts[0] === "p" && parts[1]) {
    const view = ["photos", "label", "data", "train", "board"].includes(parts[2]) ? parts[2] : "photos";
    return { view, pid: parts[1], image: parts[3] ? Number(parts[3]) || null : null };
  }
  return { view: "projects" };
}
function setView(view) {
  if (S.view === "label" && view !== "label") { flushNudge(); updateEntry(); }
  if (S.view === "train" && view !== "train") leaveTrain();
  S.view = view;
  document.body.dataset.view = view;
  for (const a of $$("#tabs a")) {
    if (a.dataset.view === view) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  const names = { projects: "项目 Projects", photos: "照片 Photos", label: "标注 Label", data: "数据 Data",
    train: "训练 Train", board: "排行榜 Leaderboard", teams: "队伍 Teams" };
  document.title = `${names[view] || ""} · ${S.project && S.pid ? `${S.project.name} · ` : ""}dlcamp 营地`;
}

let routing = Promise.resolve();
function route() { routing = routing.then(routeNow, routeNow); return routing; }
async function routeNow() {
  const r = parseHash();
  if (r.pid && !(await openProject(r.pid))) { history.replaceState(null, "", "#/"); setView("projects"); renderProjects(); return; }
  setView(r.view);
  if (r.view === "projects") { await loadProjects(); renderProjects(); }
  else if (r.view === "teams") { if (!S.projects.length) await loadProjects(); renderTeams(); }
  else if (r.view === "data") renderClassEditor();
  else if (r.view === "photos") renderThumbs();
  else if (r.view === "train") renderTrain();
  else if (r.view === "board") { if (!S.projects.length) await loadProjects(); renderBoard(!!r.pid); }
  else if (r.view === "label") {
    const firstTodo = S.images.find((im) => matches(im, "unlabelled"));
    const id = r.image || (S.cur && S.cur.id) || (firstTodo && firstTodo.id) || (S.images[0] && S.images[0].id) || null;
    if (id && r.image !== id) history.replaceState(null, "", `#/p/${encodeURIComponent(S.pid)}/label/${id}`);
    if (!S.cur || S.cur.id !== id) await openImage(id); else { refreshAnnot(); renderThumbs(); }
    canvas.focus({ preventScroll: true });
  }
}

/* start-up ----------------------------------------------------------------------------------------- */
async function boot() {
  loadQueue();
  const params = new URLSearchParams(location.search);
  const token = params.get("token");
  if (token) {   // take the token out of the address bar (and of the history, screenshots, shoulder-surfers)
    params.delete("token");
    const q = params.toString();
    history.replaceState(null, "", location.pathname + (q ? `?${q}` : "") + location.hash);
    await join(token);
  } else await whoAmI();
  if (!S.me) say("需要加入码：扫老师的二维码 You need a join link: scan your instructor's QR code", "error");
  await loadProjects();
  const bare = !location.hash || location.hash === "#" || location.hash === "#/";
  if (bare && S.me && S.me.role === "team" && S.me.project) history.replaceState(null, "", `#/p/${encodeURIComponent(S.me.project)}/photos`);
  window.addEventListener("hashchange", route);
  updateTabs(); syncUI();
  await route();
  pump();
}
boot();
