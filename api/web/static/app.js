// The pages' only script (issue #13). No build step, no library, no external URL.
//
// The user's Ed25519 key is made here with WebCrypto as NON-EXTRACTABLE and kept in
// IndexedDB: this page can ask it to sign, nobody (this page included) can read it out.
// Sign-in is the CLI's key login (ledger/login.py); each entry is signed here over
//   "reserve-ledger/entry/v2\n" || log_id || "\n" || JCS(body)      (ledger/entries.py)
// with JCS = RFC 8785 (ledger/canonical.py) and text in NFC (ledger/bodies.py).

const ENTRY_DOMAIN = "reserve-ledger/entry/v2\n";
const LOGIN_DOMAIN = "reserve-ledger/login/v1\n";
const TOKEN = "reserve.token";
const FLASH = "reserve.flash";
const enc = new TextEncoder();

// -- encodings ---------------------------------------------------------------------------

export function nfc(value) {
  if (typeof value === "string") return value.normalize("NFC");
  if (Array.isArray(value)) return value.map(nfc);
  if (value !== null && typeof value === "object") {
    const out = {};
    for (const k of Object.keys(value)) out[nfc(k)] = nfc(value[k]);
    return out;
  }
  return value;
}

// RFC 8785: members sorted by UTF-16 code units (JS's default sort, section 3.2.3);
// strings as ECMAScript JSON.stringify writes them (3.2.2.2); numbers as ECMAScript's
// Number.prototype.toString (3.2.2.3: what String() gives). Entries hold integers only;
// a location's coordinates are the only fractions a page ever canonicalises.
export function jcs(value) {
  if (value === null || typeof value === "boolean") return JSON.stringify(value);
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new Error("NaN and infinities have no JSON form");
    return String(value);
  }
  if (typeof value === "string") return JSON.stringify(value);
  if (Array.isArray(value)) return "[" + value.map(jcs).join(",") + "]";
  if (typeof value === "object") {
    const keys = Object.keys(value).sort();
    return "{" + keys.map((k) => JSON.stringify(k) + ":" + jcs(value[k])).join(",") + "}";
  }
  throw new Error("value cannot be signed");
}

const hex = (buf) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, "0")).join("");
const b64 = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf)));
const unb64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
const concat = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let i = 0;
  for (const p of parts) { out.set(p, i); i += p.length; }
  return out;
};
export async function sha256Hex(bytes) { return hex(await crypto.subtle.digest("SHA-256", bytes)); }

// -- the key store (IndexedDB) ------------------------------------------------------------

function db() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open("reserve-ledger", 1);
    req.onupgradeneeded = () => req.result.createObjectStore("keys", { keyPath: "user" });
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}
async function store(mode, fn) {
  const d = await db();
  return new Promise((resolve, reject) => {
    const tx = d.transaction("keys", mode);
    const req = fn(tx.objectStore("keys"));
    tx.oncomplete = () => resolve(req.result);
    tx.onerror = () => reject(tx.error);
  });
}
export const getKey = (user) => store("readonly", (s) => s.get(user));

export async function makeKey(user) {
  // extractable = false: the private key can sign, never be exported (exportKey rejects).
  const pair = await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
  const pub = hex(await crypto.subtle.exportKey("raw", pair.publicKey));
  await store("readwrite", (s) => s.put({ user, privateKey: pair.privateKey, publicKey: pub }));
  return pub;
}

async function signBytes(rec, message) {
  return b64(await crypto.subtle.sign({ name: "Ed25519" }, rec.privateKey, message));
}

export async function signEntry(rec, body, logId) {
  const message = concat(enc.encode(ENTRY_DOMAIN + logId + "\n"), enc.encode(jcs(body)));
  return { pub: rec.publicKey, sig: await signBytes(rec, message) };
}

// -- the API --------------------------------------------------------------------------------

class Problem extends Error {
  constructor(status, doc) {
    super((doc && (doc.detail || doc.title)) || `request refused (${status})`);
    this.status = status;
    this.doc = doc || {};
  }
}

export async function api(method, path, body, { token = sessionStorage.getItem(TOKEN), idem = false } = {}) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (idem) headers["Idempotency-Key"] = crypto.randomUUID();
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), redirect: "error" });
  const doc = (resp.headers.get("content-type") || "").includes("json") ? await resp.json() : null;
  if (!resp.ok) {
    if (resp.status === 401 && path !== "/auth/token") {
      sessionStorage.removeItem(TOKEN);
    }
    throw new Problem(resp.status, doc);
  }
  return doc;
}

async function openSession(token) {
  const me = await api("POST", "/web/session", undefined, { token });
  sessionStorage.setItem(TOKEN, token);
  location.assign(me.home);
}

// -- small page helpers ------------------------------------------------------------------------

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

function say(text, kind = "info") {
  const el = $("#status");
  if (!el) return;
  el.textContent = text;
  el.className = kind;
  el.setAttribute("role", kind === "error" ? "alert" : "status");
  if (kind === "error") el.scrollIntoView({ block: "center" });  // the form may be far below
}

function fieldError(form, name, text) {
  const el = $(`#${form.id}-${name}-error`);
  const input = $(`#${form.id}-${name}`);
  if (input) input.setAttribute("aria-invalid", "true");
  // A message beside a field nobody can see (the hidden approve form) goes to the page's line.
  if (el && !el.closest("[hidden]")) { el.textContent = text; return true; }
  return false;
}

function clearErrors(form) {
  $$(".field-error", form).forEach((e) => { e.textContent = ""; });
  $$("[aria-invalid]", form).forEach((e) => e.removeAttribute("aria-invalid"));
}

// The API names a field as "entry.quantity", "quantity" or "entry.evidence[0].reason":
// the form's input is the first name after "entry." (evidence inputs share one message).
function showProblem(form, err, prefix = "Not recorded") {
  const doc = err.doc || {};
  const detail = doc.detail || err.message;
  if (form && doc.field) {
    let name = String(doc.field).replace(/^entry\./, "").replace(/^fields\./, "");
    name = name.split(/[.[]/)[0];
    // "sigs": the entry lacks a signature (a count beyond tolerance needs a second
    // officer's): said beside the form's co-signer input, where the user can act on it.
    const proposal = $("[data-proposal]", form);
    if (name === "sigs" && proposal) name = proposal.name;
    if (fieldError(form, name, detail)) {
      say(`${prefix}: ${detail}`, "error");
      const input = $(`#${form.id}-${name}`);
      if (input) input.focus();
      return;
    }
  }
  say(`${prefix}: ${detail}`, "error");
}

function confirmDialog(how, shown) {
  const dlg = $("#confirm");
  $("#confirm-how").textContent = how;
  $("#confirm-body").textContent = JSON.stringify(shown, null, 2);
  return new Promise((resolve) => {
    const done = (ok) => { dlg.close(); resolve(ok); };
    $("#confirm-sign").onclick = () => done(true);
    $("#confirm-cancel").onclick = () => done(false);
    dlg.oncancel = () => resolve(false);
    dlg.showModal();
    $("#confirm-sign").focus();
  });
}

function currentUser() { const m = $("main"); return m ? m.dataset.user : undefined; }

function flashAndReload(text) {
  sessionStorage.setItem(FLASH, text);
  location.reload();
}

// -- forms that make an entry -------------------------------------------------------------------

function formFields(form) {
  const fields = {};
  const evidence = [];
  for (const el of form.elements) {
    if (!el.name || el.type === "submit" || el.type === "file") continue;
    if (el.dataset.type === "multi") {
      fields[el.name] = fields[el.name] || [];
      if (el.checked) fields[el.name].push(el.value);
      continue;
    }
    if (el.dataset.type === "bool") { fields[el.name] = el.checked; continue; }
    const v = el.value.trim();
    if (el.dataset.evidence) {
      if (v === "") continue;
      const t = el.dataset.evidence;
      if (t === "exhaustion_declaration") evidence.push({ type: t, document_sha256: v.toLowerCase() });
      else if (t === "price_observation") evidence.push({ type: t, observation: v });
      else evidence.push({ type: t, reason: v });
      continue;
    }
    if (el.dataset.list) { fields[el.name] = v === "" ? [] : v.split(",").map((s) => s.trim()).filter(Boolean); continue; }
    if (v === "" && !el.required && !el.dataset.keepEmpty) continue;
    fields[el.name] = v;
  }
  if (evidence.length) fields.evidence = evidence;
  return fields;
}

// A signed body names entries by their full id; people type a seq or an id prefix
// (issue #12). Inputs marked data-ref are resolved by the API's own resolver
// (GET /registry/refs/{ref}?kind=...) before the body is prepared, so the dialog shows,
// and the key signs, the id itself. A refusal is the resolver's, beside the input.
async function resolveRefs(form, fields) {
  for (const el of $$("[data-ref]", form)) {
    const v = fields[el.name];
    if (typeof v !== "string" || v === "" || /^[0-9a-f]{32}$/.test(v)) continue;
    const kinds = el.dataset.ref === "*" ? "" : `?kind=${encodeURIComponent(el.dataset.ref)}`;
    try {
      fields[el.name] = (await api("GET", `/registry/refs/${encodeURIComponent(v)}${kinds}`)).entry_id;
    } catch (err) {
      err.doc = { ...(err.doc || {}), field: el.name };
      throw err;
    }
  }
}

async function submitEntry(form) {
  clearErrors(form);
  say("Preparing the entry…");
  const fields = formFields(form);
  const user = currentUser();
  const rec = user ? await getKey(user) : undefined;
  // Co-signers named (a count beyond tolerance) open a proposal instead (POST
  // /proposals): the entry waits there for their signatures. None named: not sent.
  const proposal = $("[data-proposal]", form);
  const cosigners = proposal ? fields[proposal.name] || [] : [];
  if (proposal && (rec || !cosigners.length)) delete fields[proposal.name];
  try {
    await resolveRefs(form, fields);
    if (rec) {
      // Own key: the service builds the unsigned body (units, schema); we show it, sign
      // its RFC 8785 form here and send it to POST /entries.
      const prepared = await api("POST", "/web/prepare", { kind: form.dataset.kind, fields });
      const body = nfc(prepared.entry);
      const waits = cosigners.length ? ` It then waits for the co-signature of ${cosigners.join(", ")}.` : "";
      const ok = await confirmDialog(
        `Signed in this browser with your key ${rec.publicKey.slice(0, 16)}… for log ${prepared.log_id}.${waits} Exactly this entry is signed:`,
        body,
      );
      if (!ok) { say("Nothing was signed."); return; }
      const sig = await signEntry(rec, body, prepared.log_id);
      if (cosigners.length) {
        const res = await api("POST", "/proposals", { entry: body, sigs: [sig], cosigners });
        flashAndReload(`Proposed ${res.kind}: proposal ${res.id}, waiting for ${res.waiting_for.join(", ")}`);
        return;
      }
      const res = await api("POST", "/entries", { entry: body, sigs: [sig] }, { idem: true });
      flashAndReload(`Recorded ${res.kind}: seq ${res.seq}, entry id ${res.entry_id}`);
    } else {
      // No key of yours in this browser: the demo's custodial route signs with the key the
      // service holds for you (a demo ledger only; refused elsewhere).
      let route = form.dataset.custodial;
      const body = { ...fields };
      route = route.replace(/\{(\w+)\}/g, (_, name) => { const v = body[name]; delete body[name]; return encodeURIComponent(v || ""); });
      const ok = await confirmDialog(
        "No key of yours is in this browser: the service signs this with the custodial key it holds for you (demo ledgers only). Fields sent:",
        body,
      );
      if (!ok) { say("Nothing was signed."); return; }
      const res = await api("POST", route, body, { idem: true });
      flashAndReload(`Recorded ${res.kind}: seq ${res.seq}, entry id ${res.entry_id}`);
    }
  } catch (err) {
    showProblem(form, err);
  }
}

async function cosign(pid) {
  say("Fetching the proposal…");
  const user = currentUser();
  const rec = user ? await getKey(user) : undefined;
  try {
    const prop = await api("GET", `/proposals/${encodeURIComponent(pid)}`);
    const body = nfc(prop.entry);
    const ok = await confirmDialog(
      rec ? `Co-sign with your key for log ${prop.log_id}. Exactly this entry is signed:` : "The service co-signs with your custodial key (demo). The entry:",
      body,
    );
    if (!ok) { say("Nothing was signed."); return; }
    const sent = rec ? { sig: await signEntry(rec, body, prop.log_id) } : {};
    const res = await api("POST", `/proposals/${encodeURIComponent(pid)}/cosign`, sent);
    flashAndReload(`Co-signed: ${res.status || "done"}`);
  } catch (err) {
    showProblem(null, err);
  }
}

// -- page wiring ---------------------------------------------------------------------------------

async function keyLogin(form) {
  const user = $("#login-user").value.trim();
  $("#login-user-error").textContent = "";
  const rec = await getKey(user);
  if (!rec) {
    $("#login-user-error").textContent = "No key for this user in this browser: make one first (link below).";
    $("#login-user").focus();
    return;
  }
  try {
    const ch = await api("POST", "/auth/challenge", { user }, { token: null });
    const message = enc.encode(LOGIN_DOMAIN + ch.log_id + "\n" + ch.nonce);
    const signature = await signBytes(rec, message);
    const tok = await api("POST", "/auth/token", { nonce: ch.nonce, public_key: rec.publicKey, signature }, { token: null });
    await openSession(tok.access_token);
  } catch (err) {
    $("#login-user-error").textContent = err.doc && err.doc.detail ? err.doc.detail : err.message;
  }
}

async function demoLogin() {
  const user = $("#demo-user").value.trim();
  $("#demo-user-error").textContent = "";
  try {
    const tok = await api("POST", "/auth/demo-login", { user }, { token: null });
    await openSession(tok.access_token);
  } catch (err) {
    $("#demo-user-error").textContent = err.doc && err.doc.detail ? err.doc.detail : err.message;
  }
}

async function enrol() {
  const user = $("#enrol-user").value.trim();
  $("#enrol-user-error").textContent = "";
  if (!/^[a-z0-9][a-z0-9._-]{0,63}$/.test(user)) {
    $("#enrol-user-error").textContent = "1 to 64 characters: a-z, 0-9, '.', '_', '-', starting with a letter or digit.";
    return;
  }
  if (await getKey(user)) {
    $("#enrol-user-error").textContent = "This browser already holds a key for this user.";
    return;
  }
  const pub = await makeKey(user);
  $("#enrol-result-user").textContent = user;
  $("#public-key").textContent = pub;
  $("#key-id").textContent = await sha256Hex(Uint8Array.from(pub.match(/../g).map((h) => parseInt(h, 16))));
  $("#enrol-result").hidden = false;
}

async function reveal(form) {
  const site = $("#reveal-site").value;
  const purpose = $("#reveal-purpose").value.trim();
  clearErrors(form);
  try {
    const r = await api("POST", `/sites/${encodeURIComponent(site)}/reveal`, { purpose });
    const signed = $("#reveal-site").selectedOptions[0].dataset.commitment;
    const got = await sha256Hex(concat(unb64(r.salt), enc.encode(jcs(nfc(r.location)))));
    $("#reveal-code").textContent = r.site;
    const dl = $("#reveal-location");
    dl.replaceChildren();
    for (const [k, v] of Object.entries(r.location)) {
      const dt = document.createElement("dt"); dt.textContent = k;
      const dd = document.createElement("dd"); dd.textContent = v === null ? "" : String(v);
      dl.append(dt, dd);
    }
    $("#reveal-check").textContent = got === signed && got === r.commitment
      ? "Checked: this location is the one committed to in the signed log."
      : "WARNING: this location does not match the commitment signed in the log.";
    $("#reveal-result").hidden = false;
  } catch (err) {
    if (!(err.doc && err.doc.field && fieldError(form, String(err.doc.field).split(".").pop(), err.doc.detail))) showProblem(null, err, "Refused");
  }
}

async function downloadBundle() {
  const status = $("#bundle-status");
  status.textContent = "Preparing…";
  const resp = await fetch("/log/bundle", { headers: { Authorization: `Bearer ${sessionStorage.getItem(TOKEN)}` } });
  if (!resp.ok) { status.textContent = `Refused (${resp.status})`; return; }
  const blob = await resp.blob();
  const a = document.createElement("a");
  const name = (resp.headers.get("content-disposition") || "").match(/filename="([^"]+)"/);
  a.href = URL.createObjectURL(blob);
  a.download = name ? name[1] : "bundle.tar";
  document.body.append(a);
  a.click();
  a.remove();
  status.textContent = `Downloaded ${a.download} (${blob.size} bytes).`;
}

function prefill(btn) {
  const form = $(`#${btn.dataset.form}`);
  if (!form) return;
  for (const [k, v] of Object.entries(btn.dataset)) {
    if (k === "form") continue;
    const input = $(`#${form.id}-${k === "override" ? "confirm_override" : k}`);
    if (!input) continue;
    if (input.type === "checkbox") input.checked = v === "1";
    else input.value = v;
  }
  const details = form.closest("details");
  if (details) details.open = true;
  form.scrollIntoView({ block: "start" });
  const first = $("input:not([type=hidden]), select, textarea", form);
  if (first) first.focus();
}

function wire() {
  const flash = sessionStorage.getItem(FLASH);
  if (flash) { sessionStorage.removeItem(FLASH); say(flash, "ok"); }
  const on = (sel, ev, fn) => { const el = $(sel); if (el) el.addEventListener(ev, fn); };
  on("#key-login", "submit", (e) => { e.preventDefault(); keyLogin(e.target); });
  on("#demo-login", "submit", (e) => { e.preventDefault(); demoLogin(); });
  on("#enrol-form", "submit", (e) => { e.preventDefault(); enrol(); });
  on("#reveal", "submit", (e) => { e.preventDefault(); reveal(e.target); });
  on("#bundle-download", "click", () => downloadBundle());
  on("#signout", "click", async () => {
    // The token is denied from now on (POST /tokens/revoke, its own jti), not just forgotten.
    const token = sessionStorage.getItem(TOKEN);
    try {
      const claims = JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
      await api("POST", "/tokens/revoke", { jti: claims.jti });
    } catch (err) { /* no token here, or already invalid: nothing to deny */ }
    sessionStorage.removeItem(TOKEN);
    await fetch("/web/logout", { method: "POST" });
    location.assign("/");
  });
  $$("form.entry").forEach((f) => f.addEventListener("submit", (e) => { e.preventDefault(); submitEntry(f); }));
  $$("button.prefill").forEach((b) => b.addEventListener("click", () => prefill(b)));
  $$("button.cosign").forEach((b) => b.addEventListener("click", () => cosign(b.dataset.proposal)));
  $$("button.approve").forEach((b) => b.addEventListener("click", () => {
    const f = $("#approve");
    $("#approve-request").value = b.dataset.request;
    f.requestSubmit();
  }));
  $$("input[data-hash-into]").forEach((i) => i.addEventListener("change", async () => {
    const file = i.files[0];
    if (file) $(`#${i.dataset.hashInto}`).value = await sha256Hex(await file.arrayBuffer());
  }));
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", wire);
else wire();
