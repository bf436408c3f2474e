/* The page's shared state: what the server told us (projects, images, versions), the open
 * image and its boxes, the undo stacks; and the small questions asked of it (a class's name and
 * colour, an image's status). Box coordinates are WORKING-copy pixels [x1, y1, x2, y2] (the image
 * json's width x height). Only plain data and pure functions: nothing here draws or fetches. */

export const TOKEN_KEY = "dlcamp-camp-token";
const PALETTE = ["#e03131", "#2f9e44", "#1971c2", "#f08c00", "#9c36b5", "#0c8599", "#846358",
  "#e64980", "#5c940d", "#364fc7"];   // neighbours differ in hue; white text reads on each

export const S = {
  token: localStorage.getItem(TOKEN_KEY) || "",
  me: null,            // {role, project, lan}
  projects: [],        // GET /api/projects
  pid: null,           // open project id
  project: null,       // GET /api/projects/{p} (classes, counts, seq)
  images: [],          // image json, sorted by id
  byId: new Map(),
  seq: 0,              // last change seq merged
  view: "loading",
  cur: null,           // open image: {id, file_name, width, height, version, no_objects, review, boxes}
  curClass: 0,
  selected: null,      // selected box id
  proposedIds: new Set(),   // images with open proposals (?status=proposed), when the list lacks counts
};
export const versions = new Map();     // box id -> version the server acknowledged (0: never created)
export const imgVersions = new Map();  // image id -> version the server acknowledged
/** The API path of the open project, plus `rest` ("/images/3", "?x=1"). */
export const P = (rest = "") => `/api/projects/${encodeURIComponent(S.pid)}${rest}`;

/* classes and image status ------------------------------------------------------------------- */
export function classes() { return (S.project && S.project.classes) || []; }
export function className(i) {
  const c = classes()[i];
  if (!c) return `#${i}`;
  return c.name_zh ? `${c.name_zh} ${c.name}` : c.name;
}
export const colour = (i) => PALETTE[((i % PALETTE.length) + PALETTE.length) % PALETTE.length];
/** Accepted boxes of an image (a model's open proposals do not count as labels). */
export function boxCountOf(im) {
  if (S.cur && S.cur.id === im.id) return S.cur.boxes.filter((b) => !b.proposed).length;
  if (Array.isArray(im.boxes)) return im.boxes.filter((b) => !b.proposed).length;
  return typeof im.boxes === "number" ? im.boxes : 0;
}
/** Open proposals of an image: a count, or -1 when only known to be some (the list said so). */
export function proposalsOf(im) {
  if (S.cur && S.cur.id === im.id) return S.cur.boxes.filter((b) => b.proposed).length;
  if (Array.isArray(im.boxes)) return im.boxes.filter((b) => b.proposed).length;
  if (typeof im.proposals === "number") return im.proposals;
  return S.proposedIds.has(im.id) ? -1 : 0;
}
/** The badge an image shows: needs_fix > reviewed > labelled > no_objects > unlabelled. */
export function statusOf(im) {
  const live = S.cur && S.cur.id === im.id ? S.cur : im;
  if (live.review === "needs_fix") return "needs_fix";
  if (live.review === "done") return "reviewed";
  if (boxCountOf(im) > 0) return "labelled";
  return live.no_objects ? "no_objects" : "unlabelled";
}
export function matches(im, filter) {
  const live = S.cur && S.cur.id === im.id ? S.cur : im;
  const n = boxCountOf(im);
  switch (filter) {
    case "unlabelled": return n === 0 && !live.no_objects;
    case "no_objects": return n === 0 && !!live.no_objects;
    case "labelled": return n > 0;
    case "reviewed": return live.review === "done";
    case "needs_fix": return live.review === "needs_fix";
    case "proposed": return proposalsOf(im) !== 0;
    default: return true;
  }
}

/* the undo stacks (per image) and the open image's boxes -------------------------------------- */
const stacks = new Map();   // image id -> {undo: [], redo: []}
export function stack(img) { let s = stacks.get(img); if (!s) { s = { undo: [], redo: [] }; stacks.set(img, s); } return s; }
export const boxState = (b) => ({ label: b.label, x1: b.x1, y1: b.y1, x2: b.x2, y2: b.y2 });
/** A server box as the page holds it: its state plus whether a model proposed it (and the
 *  model's score). Undo stacks keep boxState only: accepting cannot be undone. */
export const boxView = (b) => ({ ...boxState(b), proposed: !!b.proposed,
  score: typeof b.score === "number" ? b.score : null });
export const sameState = (a, b) => !!a && !!b && ["label", "x1", "y1", "x2", "y2"].every((k) => a[k] === b[k]);
export function boxById(id) { return S.cur ? S.cur.boxes.find((b) => b.id === id) : null; }
export function selectedBox() { return S.selected ? boxById(S.selected) : null; }

/** Set the open image's box `id` to `state` ({label, x1..y2}) or remove it (null). Local only. */
export function setLocal(id, state) {
  const i = S.cur.boxes.findIndex((b) => b.id === id);
  if (state === null) {
    if (i >= 0) S.cur.boxes.splice(i, 1);
    if (S.selected === id) S.selected = null;
  } else if (i >= 0) Object.assign(S.cur.boxes[i], state);
  else S.cur.boxes.push({ id, ...state });
}

/** Write the open image's live state into its list entry (counts, badges). */
export function updateEntry() {
  if (!S.cur) return;
  const entry = S.byId.get(S.cur.id);
  if (!entry) return;
  const open = S.cur.boxes.filter((b) => b.proposed).length;
  Object.assign(entry, { boxes: S.cur.boxes.length - open, proposals: open, no_objects: S.cur.no_objects,
    review: S.cur.review });
  if (open) S.proposedIds.add(S.cur.id); else S.proposedIds.delete(S.cur.id);
}
