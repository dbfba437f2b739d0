// The administration page (/ui/admin/), for superusers: the users (search, create, and per
// user deactivate / activate / unlock / revoke) and the audit trail, newest first. The API
// decides who may: a normal user's 403 is shown as such and nothing else is.

import {
  NOT_SUPERUSER,
  busy,
  element,
  resume,
  session,
  showError,
  showNotice,
  whenText,
} from "./common.js";

const $ = (id) => document.getElementById(id);
const PAGE = 50;

let nextUsers = null;
let nextAudit = null;

/** The path and query of a pagination link: the pages only ever talk to their own origin. */
function local(url) {
  const parsed = new URL(url, location.href);
  return parsed.pathname + parsed.search;
}

async function loadUsers(more = false) {
  const path = more
    ? local(nextUsers)
    : `/api/admin/users/?limit=${PAGE}&search=${encodeURIComponent($("search").value.trim())}`;
  const answer = await session.call(path);
  const rows = answer.results.map(userRow);
  if (more) {
    $("users").tBodies[0].append(...rows);
  } else {
    $("users").tBodies[0].replaceChildren(...rows);
  }
  $("user-count").textContent = `${answer.count} ${answer.count === 1 ? "user" : "users"}`;
  nextUsers = answer.next;
  $("more-users").hidden = !nextUsers;
}

function cell(label, text) {
  return element("td", text, { "data-label": label });
}

function userRow(user) {
  const row = element("tr", null, { "data-username": user.username });
  const actions = element("td", null, { "data-label": "Actions", class: "row-actions" });
  const action = (name, label) => {
    const button = element("button", label, {
      type: "button",
      "data-action": name,
      "aria-label": `${label} ${user.username}`,
    });
    button.addEventListener("click", () => busy(button, () => act(name, user.username, row)));
    actions.append(button);
  };
  if (user.is_active) action("deactivate", "Deactivate");
  else action("activate", "Activate");
  action("unlock", "Unlock");
  action("revoke", "Revoke tokens");
  row.append(
    cell("Username", user.username),
    cell("Active", user.is_active ? "yes" : "no"),
    cell("Superuser", user.is_superuser ? "yes" : "no"),
    cell("Last login", whenText(user.last_login)),
    cell("Joined", whenText(user.date_joined)),
    actions,
  );
  return row;
}

const DONE = {
  deactivate: "deactivated",
  activate: "activated",
  unlock: "unlocked",
  revoke: "logged out everywhere",
};

async function act(name, username, row) {
  const answer = await session.call(`/api/admin/users/${name}/`, {
    method: "POST",
    body: { username },
  });
  row.replaceWith(userRow(answer));
  let said = `${username} ${DONE[name]}.`;
  if (typeof answer.blacklisted === "number") said += ` Tokens blacklisted: ${answer.blacklisted}.`;
  if (typeof answer.cleared === "number") said += ` Failed-login counters cleared: ${answer.cleared}.`;
  showNotice(said);
  await loadAudit();
}

async function create(event) {
  event.preventDefault();
  await busy($("create"), async () => {
    const user = await session.call("/api/admin/users/", {
      method: "POST",
      body: {
        username: $("new-username").value,
        password: $("new-password").value,
        is_superuser: $("new-superuser").checked,
      },
    });
    $("create-form").reset();
    showNotice(`${user.username} was created.`);
    await loadUsers();
    await loadAudit();
  });
}

async function loadAudit(more = false) {
  const answer = await session.call(more ? local(nextAudit) : `/api/admin/audit/?limit=${PAGE}`);
  const rows = answer.results.map((event) => {
    const row = element("tr", null, { "data-event": String(event.id) });
    row.append(
      cell("When", whenText(event.at)),
      cell("Event", event.kind),
      cell("User", event.username ?? (event.user_id === null ? "" : `id ${event.user_id}`)),
      cell("Client", [event.client_addr, event.user_agent].filter(Boolean).join(" · ")),
      cell("Detail", event.detail === null || event.detail === undefined ? "" : JSON.stringify(event.detail)),
    );
    return row;
  });
  if (more) {
    $("audit").tBodies[0].append(...rows);
  } else {
    $("audit").tBodies[0].replaceChildren(...rows);
  }
  nextAudit = answer.next;
  $("more-audit").hidden = !nextAudit;
}

async function start() {
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    busy(event.submitter ?? $("search"), () => loadUsers());
  });
  $("more-users").addEventListener("click", () => busy($("more-users"), () => loadUsers(true)));
  $("more-audit").addEventListener("click", () => busy($("more-audit"), () => loadAudit(true)));
  $("create-form").addEventListener("submit", create);
  if (!(await resume())) {
    $("need-sign-in").hidden = false;
    return;
  }
  try {
    await loadUsers();
  } catch (error) {
    showError(error.status === 403 ? NOT_SUPERUSER : error.message);
    return;
  }
  $("admin").hidden = false;
  try {
    await loadAudit();
  } catch (error) {
    showError(error.message);
  }
}

start();
