// The console's shell: who is logged in, the nav, and hash routing (#/board, #/alerts/12, #/log?channel=sms).
// Each page module exports {title, minRole?, isPublic?, render(main, route, ctx)}; ctx.signal aborts the
// page's requests when it is left and ctx.onLeave registers clean-ups (event streams, timers).

import { api, explain, onUnauthorized, setCsrf } from "./api.js";
import { fill, h, message } from "./dom.js";
import { can, ROLE_LABELS } from "./format.js";
import alertPage from "./alert.js";
import approvalsPage from "./approvals.js";
import boardPage from "./board.js";
import composerPage from "./composer.js";
import configPage from "./config.js";
import dashboardPage from "./dashboard.js";
import logPage from "./log.js";
import loginPage from "./login.js";
import subscribersPage from "./subscribers.js";
import templatesPage from "./templates.js";

const PAGES = {
  login: loginPage,
  board: boardPage,
  alerts: alertPage,
  compose: composerPage,
  approvals: approvalsPage,
  log: logPage,
  dashboard: dashboardPage,
  subscribers: subscribersPage,
  templates: templatesPage,
  config: configPage,
};
const HOME = "#/board";

const main = document.getElementById("main");
const topbar = document.getElementById("topbar");
const nav = document.getElementById("nav");
const menuToggle = document.getElementById("menu-toggle");
const noticeBar = document.getElementById("notice");

const session = { user: null, role: null, roleLabel: null, principal: null };
let leaving = [];
let controller = null;

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, search = ""] = raw.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return {
    name: parts[0] || "",
    params: parts.slice(1),
    query: Object.fromEntries(new URLSearchParams(search)),
    hash: location.hash,
  };
}

/** Where to go after logging in: a hash of this console, nothing else. */
function safeNext(next) {
  return next && /^#\/[a-z]/.test(next) && !next.startsWith("#/login") ? next : HOME;
}

function setSession(data) {
  session.user = data.user;
  session.role = data.role;
  session.roleLabel = data.role_label || ROLE_LABELS[data.role] || data.role;
  session.principal = data.principal;
  setCsrf(data.csrf_token);
  document.getElementById("who-name").textContent = session.user;
  document.getElementById("who-role").textContent = session.roleLabel;
  for (const link of nav.querySelectorAll("[data-min-role]")) link.hidden = !can(session.role, link.dataset.minRole);
  topbar.hidden = false;
  watchPending();
}

function clearSession() {
  session.user = session.role = session.roleLabel = session.principal = null;
  setCsrf(null);
  topbar.hidden = true;
  clearTimeout(pendingTimer);
  setPending(null);
}

const PENDING_EVERY = 30_000; // ms between looks at how many broadcasts wait for approval (the nav badge)
let pendingTimer = null;

/** The nav badge: how many broadcasts wait for a second person, looked at now and every PENDING_EVERY. */
async function watchPending() {
  clearTimeout(pendingTimer);
  if (!session.user) return;
  try {
    const { data } = await api("/api/v1/broadcasts", { query: { status: "pending" } });
    setPending((data.broadcasts || []).length);
  } catch {
    // the badge is a hint; the approvals page shows any error
  }
  if (session.user) pendingTimer = setTimeout(watchPending, PENDING_EVERY);
}

function setPending(count) {
  const badge = document.getElementById("pending-badge");
  badge.hidden = !count;
  badge.textContent = count ? String(count) : "";
  badge.setAttribute("aria-label", count ? `${count} 条待审批` : "");
}

let noticeRoutes = 0; // how many more page changes the notice bar survives

/** A message above the page that survives the next page change (e.g. "已解除" before showing the result). */
function notice(kind, text) {
  noticeRoutes = text ? 1 : 0;
  noticeBar.hidden = !text;
  noticeBar.className = `notice-bar msg-${kind}`;
  noticeBar.textContent = text || "";
}

function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function leave() {
  if (controller) controller.abort();
  for (const fn of leaving) {
    try {
      fn();
    } catch (error) {
      console.error(error);
    }
  }
  leaving = [];
}

async function route() {
  leave();
  if (noticeRoutes > 0) noticeRoutes -= 1;
  else notice("info", "");
  menuToggle.setAttribute("aria-expanded", "false");
  nav.classList.remove("open");
  const current = parseHash();
  if (!current.name) return go(session.user ? HOME : "#/login");
  const page = PAGES[current.name];
  if (!session.user && !(page && page.isPublic)) {
    return go(`#/login?next=${encodeURIComponent(current.hash)}`);
  }
  if (session.user && current.name === "login") return go(safeNext(current.query.next));
  for (const link of nav.querySelectorAll("a[data-page]")) {
    if (link.dataset.page === current.name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (!page) {
    document.title = "页面不存在 · 预警发布值班台";
    fill(
      main,
      h(
        "section",
        { class: "page" },
        h("h1", null, "页面不存在"),
        h("p", null, h("a", { href: HOME }, "回到值班看板")),
      ),
    );
    return;
  }
  document.title = `${page.title} · 预警发布值班台`;
  if (page.minRole && !can(session.role, page.minRole)) {
    fill(
      main,
      h(
        "section",
        { class: "page" },
        h("h1", null, page.title),
        message("warn", `您的角色（${session.roleLabel}）不能使用此页面：需要${ROLE_LABELS[page.minRole]}或更高角色。`),
      ),
    );
    return;
  }
  controller = new AbortController();
  const ctx = {
    session,
    signal: controller.signal,
    onLeave: (fn) => leaving.push(fn),
    go,
    setPending,
    refreshPending: watchPending,
    notice,
    login: (data) => {
      setSession(data);
      notice("info", "");
    },
    can: (needed) => can(session.role, needed),
  };
  fill(main, h("p", { class: "loading" }, "正在加载…"));
  try {
    await page.render(main, current, ctx);
  } catch (error) {
    if (error && error.name === "AbortError") return;
    console.error(error);
    fill(main, h("section", { class: "page" }, h("h1", null, page.title), message("error", explain(error))));
  }
}

async function logout() {
  try {
    await api("/api/v1/session", { method: "DELETE" });
  } catch (error) {
    if (error.status !== 401) {
      notice("error", `退出失败：${explain(error)}`);
      return;
    }
  }
  leave();
  clearSession();
  notice("info", "已退出登录。");
  go("#/login");
}

async function boot() {
  menuToggle.addEventListener("click", () => {
    const open = !nav.classList.contains("open");
    nav.classList.toggle("open", open);
    menuToggle.setAttribute("aria-expanded", String(open));
  });
  document.getElementById("logout").addEventListener("click", logout);
  onUnauthorized(() => {
    if (!session.user) return;
    leave();
    clearSession();
    notice("warn", "登录已过期或已在别处退出，请重新登录。");
    const current = parseHash();
    go(`#/login?next=${encodeURIComponent(current.hash)}`);
  });
  try {
    const { data } = await api("/api/v1/session");
    if (data.kind === "session") setSession(data);
  } catch (error) {
    if (error.status !== 401) notice("error", explain(error));
  }
  window.addEventListener("hashchange", route);
  await route();
}

boot();
