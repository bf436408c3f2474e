/* Projects and teams: the header's project picker and tab links, the project list, creating a
 * project, joining with a token (link, QR code or pasted), and the instructor's page of join
 * links with QR codes (printable). Tokens: the page keeps the one it joined with in
 * localStorage and sends it as a Bearer header; /api/join also sets a cookie for <img>/<a>. */
import { $, $$, el, say } from "./util.js";
import { S, TOKEN_KEY } from "./state.js";
import { ApiError, api, apiBlob, detailText } from "./api.js";

/* the header ------------------------------------------------------------------------------------- */
export function renderProjectSelect() {
  const sel = $("#project-select");
  const opts = [el("option", { value: "" }, "选择项目 Project…")];
  for (const p of S.projects) opts.push(el("option", { value: p.id }, `${p.name || p.id}`));
  sel.replaceChildren(...opts);
  sel.value = S.pid || "";
}
$("#project-select").addEventListener("change", (e) => {
  const pid = e.target.value;
  if (!pid) { location.hash = "#/"; return; }
  const view = ["photos", "label", "data", "train", "board"].includes(S.view) ? S.view : "photos";
  location.hash = `#/p/${encodeURIComponent(pid)}/${view}`;
});
export function updateTabs() {
  document.body.classList.toggle("no-project", !S.pid);
  for (const a of $$("#tabs a")) {
    const v = a.dataset.view;
    if (v !== "teams" && S.pid) a.href = `#/p/${encodeURIComponent(S.pid)}/${v}`;
    else if (v === "board") a.href = "#/board";
  }
}
/** Show `view` of project `pid` (or the project list / the teams page): a new history entry. */
export function go(view, pid = S.pid) {
  location.hash = view === "projects" ? "#/" : view === "teams" ? "#/teams" : `#/p/${encodeURIComponent(pid)}/${view}`;
}

/* projects ----------------------------------------------------------------------------------------- */
export async function loadProjects() {
  if (!S.me) { S.projects = []; renderProjectSelect(); return; }
  try { S.projects = await api("/api/projects"); } catch (e) { S.projects = []; if (e.status !== 401) say(e.message, "error"); }
  renderProjectSelect();
}
export function renderProjects() {
  const me = S.me;
  $("#who").textContent = !me ? "" : me.role === "instructor"
    ? `老师 Instructor · ${me.lan ? "局域网模式 LAN mode" : "本机模式 Local mode"}`
    : `队伍 Team · ${me.project}`;
  $("#join-form").hidden = !!me;
  const cards = S.projects.map((p) => {
    const pct = p.images ? Math.round((100 * p.labelled) / p.images) : 0;
    return el("a", { class: "card", href: `#/p/${encodeURIComponent(p.id)}/photos`, dataset: { project: p.id } },
      el("h2", {}, p.name || p.id, " ", el("small", {}, p.id)),
      p.kind === "test" ? el("div", { class: "hidden-test" }, "隐藏测试集：队伍看不到 Hidden test set: teams never see it") : null,
      el("div", { class: "classes" }, (p.classes || []).map((c) => (c.name_zh ? `${c.name_zh} ${c.name}` : c.name)).join(" · ") || "—"),
      el("div", { class: "stats" }, el("span", {}, "照片 ", el("b", {}, String(p.images || 0))),
        el("span", {}, "已标 ", el("b", {}, String(p.labelled || 0))), el("span", {}, "框 ", el("b", {}, String(p.boxes || 0)))),
      el("div", { class: "progress", title: `${pct}% labelled` }, el("i", { style: `width:${pct}%` })));
  });
  $("#project-cards").replaceChildren(...cards);
  if (!cards.length && me) $("#project-cards").append(el("p", { class: "muted" }, me.role === "instructor"
    ? "还没有项目，在下面新建一个。 No projects yet: create one below." : "没有可用的项目。 No project available."));
}
function parseClasses(text) {
  return text.split(/\n/).map((l) => l.trim()).filter(Boolean).map((l) => {
    const m = l.match(/^([^\s,，]+)[\s,，]*(.*)$/);
    return { name: m[1], name_zh: m[2].trim() };
  });
}
$("#new-project").addEventListener("submit", async (e) => {
  e.preventDefault();
  const out = $("#np-result");
  const body = { id: $("#np-id").value.trim(), name: $("#np-name").value.trim() || $("#np-id").value.trim(),
    classes: parseClasses($("#np-classes").value) };
  try {
    const p = await api("/api/projects", { method: "POST", json: body });
    out.className = "result ok";
    out.replaceChildren(`已创建 Created ${p.id}. `, p.token ? el("span", {}, "队伍口令（只显示一次）Team token (shown once): ", el("code", {}, p.token)) : "");
    e.target.reset();
    await loadProjects(); renderProjects();
  } catch (err) { out.className = "result error"; out.textContent = err.message; }
});
$("#join-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const v = $("#join-token").value.trim();
  let t = v;
  try { const u = new URL(v); t = u.searchParams.get("token") || v; } catch (err) { /* a bare token */ }
  if (t) await join(t);
});


/* joining ---------------------------------------------------------------------------------------- */
export async function join(token) {
  try {
    const j = await fetch(`/api/join?token=${encodeURIComponent(token)}`, { headers: { "X-Camp": "1" }, cache: "no-store" });
    const body = await j.json().catch(() => null);
    if (!j.ok) throw new ApiError(j.status, detailText(body, j.status), body);
    S.token = token; localStorage.setItem(TOKEN_KEY, token);
    say(body.project ? `已加入 Joined ${body.project}` : "已以老师身份登录 Signed in as instructor", "ok");
    await whoAmI();
    await loadProjects();
    if (body.project) location.hash = `#/p/${encodeURIComponent(body.project)}/photos`;
    else if (S.view === "projects") renderProjects();
    return true;
  } catch (e) {
    say(`加入失败 Could not join: ${e.message}`, "error");
    return false;
  }
}
export async function whoAmI() {
  try { S.me = await api("/api/me"); } catch (e) {
    S.me = null;
    if ((e.status === 401 || e.status === 403) && S.token) {   // a token from an earlier camp
      S.token = ""; localStorage.removeItem(TOKEN_KEY);
      try { S.me = await api("/api/me"); } catch (err) { S.me = null; }
    }
  }
  document.body.classList.toggle("is-instructor", !!(S.me && S.me.role === "instructor"));
}

/* teams: join links and QR codes (instructor) ---------------------------------------------------- */
export async function renderTeams() {
  const note = $("#lan-note");
  note.textContent = S.me && S.me.lan
    ? "手机扫码加入，每队一个码；码就是口令，别公开。 Phones scan a code to join (one per team). A code is a password: keep it in the room."
    : "本机模式：只有这台电脑能打开。要让手机加入，用 dlcamp camp serve --host 0.0.0.0 启动。 Local mode: only this computer can connect. Start with --host 0.0.0.0 so phones can join.";
  const box = $("#tokens");
  $("#print-codes").onclick = () => window.print();
  let list = [];
  try { list = await api("/api/tokens"); } catch (e) { box.replaceChildren(el("p", { class: "error" }, e.message)); return; }
  if (!list.length) { box.replaceChildren(el("p", { class: "muted" }, "还没有队伍口令。 No team tokens yet.")); return; }
  box.replaceChildren(...list.map((t) => {
    const img = el("img", { alt: `${t.project} 加入二维码 join QR code`, width: "200", height: "200" });
    apiBlob(`/api/qr?url=${encodeURIComponent(t.join_url)}`).then((b) => { img.src = URL.createObjectURL(b); }).catch(() => { img.alt = "QR ✗"; });
    const proj = S.projects.find((p) => p.id === t.project);
    const copy = el("button", { class: "btn small", type: "button", onclick: async () => {
      try { await navigator.clipboard.writeText(t.join_url); say("已复制 Copied", "ok"); }
      catch (e) { const r = document.createRange(); r.selectNodeContents(code); getSelection().removeAllRanges(); getSelection().addRange(r); }
    } }, "复制链接 Copy link");
    const code = el("code", {}, t.join_url);
    return el("div", { class: "token-card", dataset: { project: t.project || "" } },
      el("h2", {}, proj ? proj.name : t.project || "老师 Instructor"), img, code, copy);
  }));
}
