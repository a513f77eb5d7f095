// The Transaction Manager page: sign in with a token (kept in
// sessionStorage), list transactions through /api/v1, open a subscription's
// history and lines, and take the actions the principal's role allows.
// Plain DOM, no framework, no network beyond this server.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { token: null, me: null, cursor: null, subscription: null, order: null, line: null };

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function say(text, isError) {
  const m = $("message");
  m.textContent = text || "";
  m.className = isError ? "message error" : "message";
}

async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + state.token };
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    headers["Idempotency-Key"] = (self.crypto && crypto.randomUUID) ? crypto.randomUUID() : String(Date.now()) + Math.random();
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  let data = null;
  try { data = await res.json(); } catch (_) { data = null; }
  if (res.status === 401) { signOut("Your token was not accepted (unknown, expired or revoked). Sign in again."); throw new Error("unauthenticated"); }
  return { status: res.status, ok: res.ok, data };
}

function when(t) { return t ? t.replace("T", " ").replace(/\.\d+/, "").replace("+00:00", "Z") : ""; }

function statusCell(row) {
  const td = el("td");
  const label = { success: "Success", failed: "Failed", pending: "Pending" }[row.status] || row.status;
  const span = el("span", label, "status-" + row.status);
  td.appendChild(span);
  if (row.status === "failed" && row.reason) td.appendChild(el("span", row.reason, "reason"));
  return td;
}

async function loadTransactions(cursor) {
  const f = new URLSearchParams();
  const type = $("f-type").value; if (type) f.set("type", type);
  const sub = $("f-subscription").value.trim(); if (sub) f.set("subscription", sub);
  const st = $("f-status").value; if (st) f.set("status", st);
  if ($("f-since").value) f.set("since", $("f-since").value);
  if ($("f-until").value) f.set("until", $("f-until").value + "T23:59:59Z");
  f.set("limit", "25");
  if (cursor) f.set("cursor", cursor);
  const r = await api("GET", "/api/v1/transactions?" + f.toString());
  if (!r.ok) { say((r.data && r.data.detail) || "The search failed.", true); return; }
  const body = $("transactions").querySelector("tbody");
  body.replaceChildren();
  for (const row of r.data.items) {
    const tr = el("tr");
    tr.tabIndex = 0;
    tr.dataset.subscription = row.subscription_id;
    tr.dataset.order = row.order_id;
    tr.dataset.line = row.line_id;
    tr.appendChild(el("td", when(row.submitted_at)));
    tr.appendChild(el("td", row.subscription_id));
    tr.appendChild(el("td", row.order_id + " / " + row.line_id));
    tr.appendChild(el("td", row.type_label || row.type));
    tr.appendChild(statusCell(row));
    tr.appendChild(el("td", row.submitted_by));
    const change = row.new_email ? (row.old_email || "") + " → " + row.new_email + (row.applied_to_all_lines ? " (all lines)" : "") : (row.detail || "");
    tr.appendChild(el("td", change));
    tr.setAttribute("aria-label", row.subscription_id + ", " + (row.type_label || row.type) + ", " + row.status + ": open the subscription");
    tr.addEventListener("click", () => openSubscription(row.subscription_id, row.order_id, row.line_id, tr));
    tr.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); openSubscription(row.subscription_id, row.order_id, row.line_id, tr); } });
    body.appendChild(tr);
  }
  state.cursor = r.data.next_cursor;
  // A counter of finished searches, for scripts (and the browser test) to wait on.
  document.body.dataset.searches = String(Number(document.body.dataset.searches || 0) + 1);
  $("next-page").disabled = !r.data.next_cursor;
  $("first-page").disabled = !cursor;
  say(r.data.items.length ? r.data.items.length + " transaction(s) shown." : "No transactions match.");
}

function summary(ev) {
  const p = ev.payload || {};
  switch (ev.event_type) {
    case "ProvisioningContactChanged": return "Contact changed " + (p.old_email || "") + " → " + (p.new_email || "");
    case "CommandRefused": return "Refused: " + (p.reason || "");
    case "ProvisioningEmailResent": return "Email resent to " + (p.to || "");
    case "InitialEmailSent": return "Initial email sent to " + (p.to || "");
    default: return ev.event_type;
  }
}

async function openSubscription(sub, order, line, tr) {
  for (const r of document.querySelectorAll("#transactions tr.selected")) r.classList.remove("selected");
  if (tr) tr.classList.add("selected");
  state.subscription = sub; state.order = order; state.line = line;
  const [h, l] = await Promise.all([
    api("GET", "/api/v1/subscriptions/" + encodeURIComponent(sub) + "/history"),
    api("GET", "/api/v1/lines?subscription=" + encodeURIComponent(sub)),
  ]);
  if (!h.ok) { say((h.data && h.data.detail) || "Cannot open " + sub, true); return; }
  $("detail-title").textContent = "Subscription " + sub + " (order " + order + ", line " + line + ")";
  const lb = $("lines").querySelector("tbody");
  lb.replaceChildren();
  for (const row of (l.ok ? l.data : [])) {
    const tr2 = el("tr");
    tr2.appendChild(el("td", row.order_id + " / " + row.line_id));
    tr2.appendChild(el("td", row.offer));
    tr2.appendChild(el("td", row.rsd));
    tr2.appendChild(el("td", row.provisioning_contact));
    tr2.appendChild(el("td", row.status_label || row.status));
    lb.appendChild(tr2);
  }
  const hb = $("history").querySelector("tbody");
  hb.replaceChildren();
  for (const ev of h.data) {
    const tr3 = el("tr");
    tr3.appendChild(el("td", when(ev.occurred_at)));
    tr3.appendChild(el("td", ev.actor));
    tr3.appendChild(el("td", summary(ev)));
    const hash = el("td", ev.hash.slice(0, 16) + "…", "hash");
    hash.title = ev.hash;
    tr3.appendChild(hash);
    hb.appendChild(tr3);
  }
  $("detail").hidden = false;
  document.body.dataset.opened = String(Number(document.body.dataset.opened || 0) + 1);
  $("detail").focus();
}

async function act(method, path, body, what) {
  const r = await api(method, path, body);
  if (r.ok) {
    say(what + ": " + r.data.message);
  } else {
    say(what + " failed: " + ((r.data && r.data.detail) || ("HTTP " + r.status)), true);
  }
  await loadTransactions(null);
  if (state.subscription) await openSubscription(state.subscription, state.order, state.line, null);
  $("message").scrollIntoView({ block: "nearest" });
}

function showRole() {
  const role = state.me.role;
  $("who").textContent = state.me.user + " · " + role + (state.me.clock === "simulated" ? " · simulated clock" : "");
  $("who").hidden = false;
  $("signout").hidden = false;
  const auditor = role === "auditor";
  $("auditor-tools").hidden = !(auditor || role === "operator");
  $("evidence-tools").hidden = !(auditor || role === "operator");
  $("actions").hidden = auditor;
  const lineActions = role === "user" || role === "operator";
  $("contact-form").hidden = !lineActions;
  $("resend").parentElement.hidden = !lineActions;
  if (auditor) { $("actions").remove(); }
}

async function signIn(token) {
  state.token = token;
  let r;
  try { r = await api("GET", "/api/v1/me"); } catch (_) { return; }
  if (!r.ok) { signOut("Sign-in failed."); return; }
  state.me = r.data;
  sessionStorage.setItem("provledger-token", token);
  $("signin").hidden = true;
  $("manager").hidden = false;
  showRole();
  await loadTransactions(null);
  $("f-subscription").focus();
}

function signOut(why) {
  sessionStorage.removeItem("provledger-token");
  state.token = null; state.me = null;
  $("manager").hidden = true; $("signin").hidden = false;
  $("who").hidden = true; $("signout").hidden = true;
  $("token").value = "";
  say("");
  if (why) { const help = $("token-help"); help.textContent = why; }
}

$("signin-form").addEventListener("submit", (e) => { e.preventDefault(); signIn($("token").value.trim()); });
$("signout").addEventListener("click", () => { signOut(); location.reload(); });
$("filters").addEventListener("submit", (e) => { e.preventDefault(); loadTransactions(null); });
$("next-page").addEventListener("click", () => loadTransactions(state.cursor));
$("first-page").addEventListener("click", () => loadTransactions(null));
$("contact-form").addEventListener("submit", (e) => {
  e.preventDefault();
  act("POST", "/api/v1/orders/" + encodeURIComponent(state.order) + "/lines/" + encodeURIComponent(state.line) + "/contact",
      { email: $("new-email").value.trim(), all_lines: $("all-lines").checked }, "Change contact");
});
$("resend").addEventListener("click", () =>
  act("POST", "/api/v1/orders/" + encodeURIComponent(state.order) + "/lines/" + encodeURIComponent(state.line) + "/resend", {}, "Resend"));
$("case-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const note = $("case-note").value.trim();
  act("POST", "/api/v1/orders/" + encodeURIComponent(state.order) + "/cases",
      { line_id: state.line, type: $("case-type").value, note: note || null }, "Support case");
});
$("verify").addEventListener("click", async () => {
  const r = await api("GET", "/api/v1/verify");
  $("verify-result").textContent = r.ok
    ? (r.data.first_broken ? "Broken at position " + r.data.first_broken.position + ": " + r.data.first_broken.reason
                           : "Intact: " + r.data.events_checked + " events, head " + r.data.head_hash.slice(0, 16) + "…")
    : ((r.data && r.data.detail) || "Verification failed");
});
$("download-evidence").addEventListener("click", async () => {
  const r = await api("GET", "/api/v1/evidence/subscriptions/" + encodeURIComponent(state.subscription));
  if (!r.ok) { say((r.data && r.data.detail) || "No evidence", true); return; }
  const blob = new Blob([JSON.stringify(r.data, null, 2)], { type: "application/json" });
  const a = el("a");
  a.href = URL.createObjectURL(blob);
  a.download = "evidence-" + state.subscription + ".json";
  document.body.appendChild(a); a.click(); a.remove();
});

const saved = sessionStorage.getItem("provledger-token");
if (saved) signIn(saved);
