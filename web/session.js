// The session page (/ui/): sign in, then the access token's claims with a live countdown,
// Refresh, Log out and Log out everywhere. While signed in it asks doorman every 5 seconds
// whether the session still stands, so a session ended elsewhere (another tab, another
// device, an administrator) ends here visibly too.

import {
  CallError,
  SIGNED_OUT,
  TIME_CLAIMS,
  busy,
  call,
  clearMessages,
  cookieMode,
  element,
  inWords,
  resume,
  session,
  showError,
  showNotice,
  utc,
} from "./common.js";

const CHECK_EVERY_MS = 5000;

const $ = (id) => document.getElementById(id);
let ticking = null;
let checking = null;

function showSignIn() {
  stopTimers();
  $("session").hidden = true;
  $("sign-in").hidden = false;
  $("username").focus();
}

function showSession() {
  $("sign-in").hidden = true;
  $("session").hidden = false;
  $("who").textContent = session.username ?? `user ${session.claims?.user_id ?? "?"}`;
  $("keeping").textContent = cookieMode
    ? "The refresh token is in an HttpOnly cookie that scripts can't read."
    : "The refresh token is kept in this tab's sessionStorage, gone when the tab closes.";
  renderClaims();
  tick();
  stopTimers();
  ticking = setInterval(tick, 1000);
  checking = setInterval(check, CHECK_EVERY_MS);
}

function stopTimers() {
  clearInterval(ticking);
  clearInterval(checking);
  ticking = checking = null;
}

function renderClaims() {
  const rows = Object.entries(session.claims ?? {}).map(([name, value]) => {
    const row = element("tr", null, { "data-claim": name });
    row.append(element("th", name, { scope: "row" }));
    const cell = element("td");
    cell.append(element("code", typeof value === "string" ? value : JSON.stringify(value)));
    if (TIME_CLAIMS.includes(name) && typeof value === "number") {
      cell.append(element("span", null, { class: "when", "data-time": String(value) }));
    }
    row.append(cell);
    return row;
  });
  $("claims").tBodies[0].replaceChildren(...rows);
}

/** Once a second: the countdown and the times in words. */
function tick() {
  const now = Date.now() / 1000;
  for (const span of document.querySelectorAll("[data-time]")) {
    const seconds = Number(span.dataset.time);
    span.textContent = `${inWords(seconds, now)} · ${utc(seconds)}`;
  }
  const exp = session.claims?.exp;
  const countdown = $("countdown");
  if (typeof exp !== "number") {
    countdown.textContent = "The access token has no expiry.";
    return;
  }
  const left = Math.floor(exp - now);
  countdown.classList.toggle("soon", left < 30);
  if (left > 0) {
    const minutes = Math.floor(left / 60);
    const seconds = String(left % 60).padStart(2, "0");
    countdown.textContent = `Access token expires in ${minutes}:${seconds} (${utc(exp)})`;
  } else {
    countdown.textContent = `Access token expired ${inWords(exp, now)}; the next check refreshes it.`;
  }
}

/** Does the session still stand? `/hello/` says; a refused access token gets one refresh. */
async function check() {
  if (!session.access) return;
  try {
    await call("/hello/", { access: session.access });
    return;
  } catch (error) {
    if (error.status === 0) {
      showError(error.message);
      return;
    }
    if (error.status !== 401) return;
  }
  try {
    await session.refresh();
    renderClaims();
    tick();
    clearMessages();
  } catch (error) {
    if (error.status === 0) {
      showError(error.message);
      return;
    }
    signedOut(SIGNED_OUT);
  }
}

function signedOut(message) {
  session.forget();
  showSignIn();
  showError(message);
}

async function signIn(event) {
  event.preventDefault();
  clearMessages();
  await busy($("sign-in-button"), async () => {
    await session.signIn($("username").value, $("password").value);
    $("password").value = "";
    showSession();
  });
}

async function refresh() {
  await busy($("refresh"), async () => {
    try {
      await session.refresh();
    } catch (error) {
      if (error instanceof CallError && error.status === 401) {
        signedOut(SIGNED_OUT);
        return;
      }
      throw error;
    }
    renderClaims();
    tick();
    showNotice("A new access token was issued.");
  });
}

async function logOut() {
  await busy($("logout"), async () => {
    await session.logOut();
    showSignIn();
    showNotice("Logged out: the refresh token is blacklisted.");
  });
}

async function logOutEverywhere() {
  await busy($("logout-everywhere"), async () => {
    await session.logOutEverywhere();
    showSignIn();
    showNotice("Logged out everywhere: every session of yours has ended.");
  });
}

async function start() {
  $("sign-in-form").addEventListener("submit", signIn);
  $("refresh").addEventListener("click", refresh);
  $("logout").addEventListener("click", logOut);
  $("logout-everywhere").addEventListener("click", logOutEverywhere);
  if (await resume()) {
    showSession();
  } else {
    showSignIn();
  }
}

start();
