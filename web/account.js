// The account page (/ui/account/): the signed-in user's sessions (one per sign-in that still
// has a live refresh token), this browser's marked, each revocable, and all of them at once.

import {
  SIGNED_OUT,
  busy,
  element,
  resume,
  session,
  showError,
  showNotice,
  whenText,
} from "./common.js";

const $ = (id) => document.getElementById(id);

async function load() {
  const answer = await session.call("/api/account/sessions/");
  const mine = session.refreshId;
  const cards = (answer.sessions ?? []).map((each) => card(each, each.token_id === mine));
  if (cards.length === 0) cards.push(element("li", "No session is open.", { class: "hint" }));
  $("sessions").replaceChildren(...cards);
}

function card(each, current) {
  const item = element("li", null, { class: "card", "data-session-id": each.id });
  if (current) item.dataset.current = "true";
  const title = element("h2", `Session started ${whenText(each.started_at)}`);
  if (current) title.append(element("span", "this browser", { class: "badge" }));
  const facts = element("dl");
  const fact = (name, value) => facts.append(element("dt", name), element("dd", value));
  fact("Last used", whenText(each.last_used_at));
  fact("Expires", whenText(each.expires_at));
  fact("Client address", each.client_addr ?? "unknown");
  fact("User agent", each.user_agent ?? "unknown");
  const revoke = element("button", "Revoke", {
    type: "button",
    "aria-label": current ? "Revoke this browser's session" : `Revoke the session started ${each.started_at}`,
  });
  revoke.addEventListener("click", () => busy(revoke, () => revokeOne(each.id, current)));
  item.append(title, facts, revoke);
  return item;
}

async function revokeOne(id, current) {
  await session.call("/api/account/sessions/revoke/", { method: "POST", body: { id } });
  if (current) {
    signedOut("This browser's session was revoked: you are signed out.");
    return;
  }
  await load();
  showNotice("The session was revoked: its refresh token no longer works.");
}

async function revokeAll() {
  await session.logOutEverywhere();
  signedOut("Every session was revoked: you are signed out everywhere.");
}

function signedOut(message) {
  session.forget();
  $("account").hidden = true;
  $("need-sign-in").hidden = false;
  showNotice(message);
}

async function start() {
  $("reload").addEventListener("click", () => busy($("reload"), load));
  $("revoke-all").addEventListener("click", () => busy($("revoke-all"), revokeAll));
  if (!(await resume())) {
    $("need-sign-in").hidden = false;
    return;
  }
  $("account").hidden = false;
  try {
    await load();
  } catch (error) {
    if (error.status === 401) {
      session.forget();
      $("account").hidden = true;
      $("need-sign-in").hidden = false;
      showError(SIGNED_OUT);
      return;
    }
    showError(error.message);
  }
}

start();
