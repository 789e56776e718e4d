// The JSON API (docs/console.md): the session cookie goes along by itself; every state-changing request also
// carries X-CSRF-Token from the login answer (kept in memory only). Errors become ApiError with the server's
// message, which pages show as it is.

const CSRF_HEADER = "X-CSRF-Token";
let csrfToken = null;
const unauthorizedHandlers = new Set();

export class ApiError extends Error {
  constructor(status, message, data) {
    super(message);
    this.status = status;
    this.data = data;
  }
}

export function setCsrf(token) {
  csrfToken = token || null;
}

/** Called when the server says the session is gone (401 on anything but the login). */
export function onUnauthorized(handler) {
  unauthorizedHandlers.add(handler);
}

/** A query string from an object, leaving out empty values. */
export function queryString(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== null && value !== undefined && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

/** ``await api("/api/v1/alerts")`` → {status, data}; throws ApiError for a 4xx/5xx or no connection. ``body`` is
 * sent as JSON, or as it is (a file's text, a Blob) when ``contentType`` names its type (e.g. text/csv). */
export async function api(path, { method = "GET", body, query, signal, contentType } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = contentType || "application/json";
  if (method !== "GET" && method !== "HEAD" && csrfToken) headers[CSRF_HEADER] = csrfToken;
  let response;
  try {
    response = await fetch(path + queryString(query), {
      method,
      headers,
      body: body === undefined || contentType ? body : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
      signal,
    });
  } catch (error) {
    if (error && error.name === "AbortError") throw error;
    throw new ApiError(0, "无法连接服务器，请检查网络或 warnd 是否在运行");
  }
  let data = null;
  if ((response.headers.get("Content-Type") || "").includes("json")) {
    try {
      data = await response.json();
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const text = data && typeof data.error === "string" ? data.error : `服务器返回 ${response.status}`;
    const error = new ApiError(response.status, text, data);
    const isLogin = path === "/api/v1/session" && method === "POST";
    if (response.status === 401 && !isLogin) for (const handler of unauthorizedHandlers) handler(error);
    throw error;
  }
  return { status: response.status, data };
}

const ROLE_WORDS = { viewer: "查看员", operator: "值班员", approver: "审批人", admin: "管理员" };

/** What to tell the person about a failed request, in Chinese first, with the server's own words. */
export function explain(error) {
  if (!(error instanceof ApiError)) return `出错了：${error && error.message ? error.message : error}`;
  const text = error.message;
  const role = /needs role (\w+)/.exec(text);
  if (error.status === 403 && role) return `权限不足：此操作需要${ROLE_WORDS[role[1]] || role[1]}或更高角色（${text}）`;
  if (error.status === 403 && text.includes(CSRF_HEADER)) return `会话校验失败，请刷新页面后重试（${text}）`;
  if (error.status === 401) return "登录已失效，请重新登录";
  if ((error.status === 404 && text === "Not Found") || error.status === 405) {
    return `服务器尚未提供此接口（${error.status} ${text}）`;
  }
  return text;
}
