// The token debugger (/ui/debugger/): jwt.io's, kept at home. A pasted token is decoded in
// the page (header and claims, times in words) and sent to this doorman's inspector for its
// verdict: same origin only (the policy's `connect-src 'self'`), in a POST body, never in the
// address bar, never stored.

import { TIME_CLAIMS, call, clearMessages, decodeToken, element, showError, when } from "./common.js";

const $ = (id) => document.getElementById(id);
const INSPECT_AFTER_MS = 300;

const VERDICTS = {
  valid: "Valid",
  malformed: "Malformed",
  unknown_key: "Unknown key",
  bad_signature: "Bad signature",
  expired: "Expired",
  not_yet_valid: "Not yet valid",
  wrong_type: "Wrong type",
  blacklisted: "Blacklisted",
  revoked: "Revoked",
  invalid: "Invalid",
};

let pending = null;
let asked = 0;

/** What the page itself can say: the decoded header and claims. */
function decode() {
  const token = $("token").value.trim();
  $("result").hidden = token === "";
  if (token === "") return;
  const { header, claims } = decodeToken(token);
  $("header").textContent = header ? JSON.stringify(header, null, 2) : "Not a decodable JOSE header.";
  $("payload").textContent = claims ? JSON.stringify(claims, null, 2) : "Not decodable claims.";
  const times = TIME_CLAIMS.filter((name) => claims && name in claims).map((name) =>
    element("li", `${name}: ${when(claims[name])}`, { "data-claim": name }),
  );
  $("times").replaceChildren(...times);
}

/** What doorman says of it. Only the latest question's answer is shown. */
async function inspect() {
  const token = $("token").value.trim();
  if (token === "") return;
  const question = ++asked;
  const verdict = $("verdict");
  verdict.removeAttribute("data-verdict");
  verdict.classList.remove("refused");
  verdict.textContent = "Asking doorman...";
  const body = { token };
  if ($("expect").value) body.expect = $("expect").value;
  try {
    const answer = await call("/api/token/inspect/", { method: "POST", body });
    if (question !== asked) return;
    clearMessages();
    verdict.dataset.verdict = answer.verdict;
    verdict.classList.toggle("refused", answer.verdict !== "valid");
    verdict.replaceChildren(
      element("strong", VERDICTS[answer.verdict] ?? answer.verdict),
      element("span", answer.reason),
    );
  } catch (error) {
    if (question !== asked) return;
    verdict.textContent = "No verdict.";
    showError(error.message);
  }
}

function changed() {
  decode();
  clearTimeout(pending);
  pending = setTimeout(inspect, INSPECT_AFTER_MS);
}

$("token").addEventListener("input", changed);
$("expect").addEventListener("change", changed);
$("debugger-form").addEventListener("submit", (event) => {
  event.preventDefault();
  clearTimeout(pending);
  decode();
  inspect();
});
$("clear").addEventListener("click", () => {
  $("token").value = "";
  asked++;
  clearMessages();
  decode();
  $("token").focus();
});
decode();
