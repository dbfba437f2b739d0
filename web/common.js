// What doorman's pages share: where the tokens are kept, calling the JSON API, turning its
// errors into sentences, decoding tokens and saying times in words.
//
// The access token lives in memory only: a script injected into the page could read storage,
// and an access token is enough to act as the user. The refresh token is kept in
// sessionStorage (this tab only, gone when the tab closes) so that a reload keeps the session;
// when doorman runs in cookie mode the page never sees it: an HttpOnly cookie carries it to
// the refresh and blacklist views, and the page keeps only its id (not a secret) to recognise
// its own session.

/** Whether the server keeps the refresh token in an HttpOnly cookie (filled in as it serves). */
export const cookieMode = document.documentElement.dataset.tokenCookies === "on";

const REFRESH_KEY = "doorman.refresh";
const REFRESH_ID_KEY = "doorman.refresh_jti";
const USERNAME_KEY = "doorman.username";

export const UNREACHABLE = "Can't reach the server: check your connection and try again.";
export const SIGNED_OUT = "Signed out: this session was ended (logged out everywhere, or revoked)";
export const NOT_SUPERUSER = "You need a superuser account to see this page.";

/** A failed call: `status` 0 when the server couldn't be reached. */
export class CallError extends Error {
  constructor(message, status, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

/**
 * Calls doorman's API (same origin only). `body` is sent as JSON; `access` as the Bearer.
 * Resolves to the JSON answer, or throws a CallError whose message can be shown as it is.
 */
export async function call(path, { method = "GET", body, access } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (access) headers.Authorization = `Bearer ${access}`;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch {
    throw new CallError(UNREACHABLE, 0, null);
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    throw new CallError(describe(response, data), response.status, data);
  }
  return data;
}

/** A refused call in one sentence: the throttle's wait, DRF's detail or its field errors. */
function describe(response, data) {
  if (response.status === 429) {
    let wait = Number.parseInt(response.headers.get("Retry-After") ?? "", 10);
    if (!(wait > 0)) {
      const said = /(\d+) seconds?/.exec(typeof data?.detail === "string" ? data.detail : "");
      wait = said ? Number(said[1]) : 0;
    }
    return wait > 0
      ? `Too many attempts: try again in ${wait} ${wait === 1 ? "second" : "seconds"}.`
      : "Too many attempts: try again later.";
  }
  if (data && typeof data === "object" && !Array.isArray(data)) {
    if (typeof data.detail === "string") return data.detail;
    const parts = [];
    for (const [field, messages] of Object.entries(data)) {
      const text = Array.isArray(messages) ? messages.join(" ") : String(messages);
      parts.push(field === "non_field_errors" ? text : `${field}: ${text}`);
    }
    if (parts.length > 0) return parts.join(" ");
  }
  return `The server answered ${response.status}${response.statusText ? ` ${response.statusText}` : ""}.`;
}

/** The signed-in user of this tab, and the tokens that keep them signed in. */
class Session {
  constructor() {
    this.access = null;
    this.claims = null;
    this.refreshing = null;
  }

  get username() {
    return sessionStorage.getItem(USERNAME_KEY);
  }

  /** The `jti` of this tab's refresh token, to recognise its own session in a list. */
  get refreshId() {
    if (cookieMode) return sessionStorage.getItem(REFRESH_ID_KEY);
    const refresh = sessionStorage.getItem(REFRESH_KEY);
    return refresh ? decodeToken(refresh).claims?.jti ?? null : null;
  }

  /** Whether there is anything to resume a session from after a reload. */
  get resumable() {
    return cookieMode || sessionStorage.getItem(REFRESH_KEY) !== null;
  }

  async signIn(username, password) {
    const answer = await call("/api/token/", { method: "POST", body: { username, password } });
    sessionStorage.setItem(USERNAME_KEY, username);
    this.keep(answer);
  }

  /** A new access token from the refresh token; one request at a time. */
  refresh() {
    if (!this.refreshing) {
      this.refreshing = this.refreshOnce().finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  async refreshOnce() {
    let body = {};
    if (!cookieMode) {
      const refresh = sessionStorage.getItem(REFRESH_KEY);
      if (!refresh) throw new CallError("You aren't signed in.", 401, null);
      body = { refresh };
    }
    this.keep(await call("/api/token/refresh/", { method: "POST", body }));
  }

  /** An access token that is good for a few more seconds, refreshed when it isn't. */
  async accessToken() {
    const now = Date.now() / 1000;
    if (!this.access || !(this.claims?.exp > now + 5)) await this.refresh();
    return this.access;
  }

  /** Calls the API as the user; an access token refused as expired is refreshed once. */
  async call(path, options = {}) {
    const access = await this.accessToken();
    try {
      return await call(path, { ...options, access });
    } catch (error) {
      if (error.status !== 401) throw error;
      await this.refresh();
      return call(path, { ...options, access: this.access });
    }
  }

  async logOut() {
    const body = cookieMode ? {} : { refresh: sessionStorage.getItem(REFRESH_KEY) ?? "" };
    try {
      await call("/api/token/blacklist/", { method: "POST", body });
    } catch (error) {
      // A token the server refuses is over anyway; one it couldn't look at still works.
      if (error.status === 0 || error.status >= 500) throw error;
    }
    this.forget();
  }

  async logOutEverywhere() {
    const access = await this.accessToken();
    await call("/api/token/revoke-all/", { method: "POST", access });
    this.forget();
  }

  keep(answer) {
    this.access = answer.access;
    this.claims = decodeToken(answer.access).claims;
    if (typeof answer.refresh === "string") {
      if (cookieMode) {
        const id = decodeToken(answer.refresh).claims?.jti;
        if (id) sessionStorage.setItem(REFRESH_ID_KEY, String(id));
      } else {
        sessionStorage.setItem(REFRESH_KEY, answer.refresh);
      }
    }
  }

  forget() {
    this.access = null;
    this.claims = null;
    for (const key of [REFRESH_KEY, REFRESH_ID_KEY, USERNAME_KEY]) sessionStorage.removeItem(key);
  }
}

export const session = new Session();

/** A token's header and claims as JSON objects, each `null` when that part isn't one. */
export function decodeToken(token) {
  const parts = token.trim().split(".");
  return {
    parts: parts.length,
    header: parts.length === 3 ? decodePart(parts[0]) : null,
    claims: parts.length === 3 ? decodePart(parts[1]) : null,
  };
}

function decodePart(part) {
  try {
    const base64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const binary = atob(base64 + "=".repeat((4 - (base64.length % 4)) % 4));
    const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    const value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
    return value !== null && typeof value === "object" && !Array.isArray(value) ? value : null;
  } catch {
    return null;
  }
}

/** The claims that hold times (seconds since 1970). */
export const TIME_CLAIMS = ["exp", "iat", "nbf", "refresh_exp"];

const UNITS = [
  ["year", 365 * 86400],
  ["day", 86400],
  ["hour", 3600],
  ["minute", 60],
  ["second", 1],
];

/** "in 4 minutes", "2 hours ago". */
export function inWords(seconds, now = Date.now() / 1000) {
  const diff = Math.round(seconds - now);
  const gap = Math.abs(diff);
  if (gap < 1) return "now";
  const [unit, size] = UNITS.find(([, size]) => gap >= size);
  const count = Math.floor(gap / size);
  const text = `${count} ${unit}${count === 1 ? "" : "s"}`;
  return diff > 0 ? `in ${text}` : `${text} ago`;
}

/** "2026-12-07 13:05:00 UTC". */
export function utc(seconds) {
  const date = new Date(seconds * 1000);
  if (!Number.isFinite(seconds) || Number.isNaN(date.getTime())) return "not a valid time";
  return date.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}

/** A time claim's value in words and in UTC. */
export function when(seconds) {
  return typeof seconds === "number" ? `${inWords(seconds)} (${utc(seconds)})` : "not a number";
}

/** An RFC 3339 time from the API, in words and in UTC. */
export function whenText(text) {
  if (!text) return "never";
  const seconds = Date.parse(text) / 1000;
  return Number.isNaN(seconds) ? text : when(seconds);
}

/** The page's message regions. */
export function showError(message) {
  document.getElementById("notice")?.replaceChildren();
  document.getElementById("alert").textContent = message;
}

export function showNotice(message) {
  document.getElementById("alert").replaceChildren();
  const notice = document.getElementById("notice");
  if (notice) notice.textContent = message;
}

export function clearMessages() {
  document.getElementById("alert").replaceChildren();
  document.getElementById("notice")?.replaceChildren();
}

/** An element with text (never HTML: everything shown comes from the server or a token). */
export function element(tag, text, attributes = {}) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

/** Runs `action` with `button` disabled, showing a failure in the alert region. */
export async function busy(button, action) {
  button.disabled = true;
  try {
    await action();
  } catch (error) {
    showError(error instanceof CallError ? error.message : `Something went wrong: ${error}`);
  } finally {
    button.disabled = false;
  }
}

/**
 * Resumes this tab's session for a page that needs one: true when signed in. Shows why not
 * otherwise (a network failure is said as such; a refused refresh just means "sign in").
 */
export async function resume() {
  if (!session.resumable) return false;
  try {
    await session.accessToken();
    return true;
  } catch (error) {
    if (error.status === 0) {
      showError(error.message);
    } else if (!cookieMode) {
      session.forget();
    }
    return false;
  }
}
