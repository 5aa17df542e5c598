// The session and every call to the REST API: the console uses only the public API.
// The login (OAuth password grant) is kept in sessionStorage (this tab); the access token is
// refreshed a minute before it expires; logout revokes the refresh token (POST /oauth/revoke).

const KEY = "roost.session";
const REFRESH_MARGIN_S = 60;

export class ApiError extends Error {
  constructor(status, message, retryAfter) {
    super(message);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

function claims(jwt) {
  try {
    const part = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part));
  } catch {
    return {};
  }
}

async function errorOf(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) message = body.error.message;
  } catch {
    // not JSON: keep the status line
  }
  const retry = response.headers.get("Retry-After");
  return new ApiError(response.status, message, retry === null ? null : Number(retry));
}

class Session {
  constructor() {
    this.state = null;
    this.timer = null;
    this.listeners = new Set();
    this.refreshing = null;
    const saved = sessionStorage.getItem(KEY);
    if (saved) {
      try {
        this.state = JSON.parse(saved);
        this.schedule();
      } catch {
        sessionStorage.removeItem(KEY);
      }
    }
  }

  get user() { return this.state ? this.state.user : null; }
  get token() { return this.state ? this.state.access : null; }
  get loggedIn() { return this.state !== null; }

  onChange(listener) { this.listeners.add(listener); }

  save(answer) {
    const user = claims(answer.access_token).usr;
    this.state = {
      user,
      access: answer.access_token,
      refresh: answer.refresh_token,
      expires: Date.now() + answer.expires_in * 1000,
    };
    sessionStorage.setItem(KEY, JSON.stringify(this.state));
    this.schedule();
  }

  schedule() {
    clearTimeout(this.timer);
    if (!this.state) return;
    const wait = Math.max(0, this.state.expires - Date.now() - REFRESH_MARGIN_S * 1000);
    this.timer = setTimeout(() => this.refresh().catch(() => this.clear()), wait);
  }

  clear() {
    clearTimeout(this.timer);
    this.state = null;
    sessionStorage.removeItem(KEY);
    for (const listener of this.listeners) listener();
  }

  async grant(form) {
    const response = await fetch("/oauth/token", {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams(form),
    });
    if (!response.ok) throw await errorOf(response);
    return response.json();
  }

  async login(username, password) {
    this.save(await this.grant({ grant_type: "password", username, password }));
    for (const listener of this.listeners) listener();
  }

  // one refresh at a time: concurrent callers share it
  refresh() {
    if (!this.refreshing) {
      const token = this.state && this.state.refresh;
      this.refreshing = this.grant({ grant_type: "refresh_token", refresh_token: token })
        .then((answer) => this.save(answer))
        .finally(() => { this.refreshing = null; });
    }
    return this.refreshing;
  }

  async logout() {
    const token = this.state && this.state.refresh;
    this.clear();
    if (token) {
      const response = await fetch("/oauth/revoke", {
        method: "POST",
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ token, token_type_hint: "refresh_token" }),
      });
      if (!response.ok) throw await errorOf(response);
    }
  }
}

export const session = new Session();

// a call to the API; JSON in and out. A 401 refreshes once and retries, then logs out.
export async function api(method, path, body, retried = false) {
  if (session.loggedIn && session.state.expires - Date.now() < REFRESH_MARGIN_S * 1000) {
    await session.refresh().catch(() => session.clear());
  }
  const headers = {};
  if (session.token) headers.Authorization = `Bearer ${session.token}`;
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 401 && session.loggedIn && !retried) {
    try {
      await session.refresh();
    } catch {
      session.clear();
      throw await errorOf(response);
    }
    return api(method, path, body, true);
  }
  if (!response.ok) throw await errorOf(response);
  const text = await response.text();
  if (!text) return null;
  // JSON, or the text itself (an endpoint call answers with its target's body, JSON or not)
  const type = response.headers.get("Content-Type") || "";
  return type.includes("json") ? JSON.parse(text) : text;
}

// the user tree of a path: /v1/users/{user}...
export function userPath(version, rest = "") {
  return `/${version}/users/${encodeURIComponent(session.user)}${rest}`;
}

export function enc(id) { return encodeURIComponent(id); }

// a URL for WebSocket or EventSource, which cannot send headers: the token in ?authorization=
export function liveUrl(path, scheme) {
  const url = new URL(path, location.href);
  if (scheme === "ws") url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  url.searchParams.set("authorization", session.token);
  return url.toString();
}
