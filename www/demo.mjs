// speech-token-client live demo. Plain ES module, same-origin only (no CDN), no inline code.
// Reads the client's own numbers (status, expiresAt, nextRefreshAt, requestCount, region,
// endpoint) and listens to its events. Never displays, logs or stores a token: a token is
// identified by the first 8 hex digits of its SHA-256.

import init, { TokenClient } from "/pkg/speech_token_client.js";

const $ = (id) => document.getElementById(id);
const SVG_NS = "http://www.w3.org/2000/svg";
const HISTORY_MS = 30 * 60_000;
const RING_C = 2 * Math.PI * 52;

// ---------------------------------------------------------------- CSP violations
let cspViolations = 0;
document.addEventListener("securitypolicyviolation", () => {
  cspViolations++;
  $("csp-count").textContent = String(cspViolations);
  $("csp-count").dataset.value = String(cspViolations);
});

// ---------------------------------------------------------------- formatting
const pad = (n, w = 2) => String(n).padStart(w, "0");
function clock(ms) {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
function clockMs(ms) {
  return `${clock(ms)}.${pad(new Date(ms).getMilliseconds(), 3)}`;
}
function duration(ms) {
  if (ms <= 0) return "0 s";
  const s = ms / 1000;
  if (s < 10) return `${s.toFixed(1)} s`;
  if (s < 120) return `${Math.round(s)} s`;
  const m = Math.floor(s / 60);
  return `${m}:${pad(Math.floor(s % 60))}`;
}
function relative(ms) {
  const d = ms - Date.now();
  return d >= 0 ? `in ${duration(d)}` : `${duration(-d)} ago`;
}

/** First 8 hex digits of SHA-256(token): enough to tell tokens apart, useless to an attacker. */
async function fingerprint(token) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(token));
  return [...new Uint8Array(digest).slice(0, 4)].map((b) => pad(b.toString(16))).join("");
}

// ---------------------------------------------------------------- state kept for the dashboard
const history = {
  tokens: [], // { fp, start, expiresAt, plannedRefresh, reserved }
  requests: [], // { at, retry }
  errors: [], // { at, kind, status }
  speech: [], // { at, count }
  expired: [], // { at }
};
let tokenEvents = 0;
let lastRequestCount = 0;
let lastOutcomeError = false;
let currentFp = null;
let isDev = false;
let speechConfig = null; // attached for the page's lifetime: it receives every token
let windowChoice = "auto";

function prune(now) {
  const cut = now - HISTORY_MS;
  history.tokens = history.tokens.filter((t) => t.expiresAt > cut);
  for (const k of ["requests", "errors", "speech", "expired"]) history[k] = history[k].filter((e) => e.at > cut);
}

// ---------------------------------------------------------------- event log
const MAX_LOG = 200;
function log(kind, text) {
  const li = document.createElement("li");
  li.className = `ev ev-${kind}`;
  li.dataset.event = kind;
  const t = document.createElement("time");
  t.textContent = clockMs(Date.now());
  const k = document.createElement("span");
  k.className = "ev-kind";
  k.textContent = kind;
  const d = document.createElement("span");
  d.className = "ev-text";
  d.textContent = text;
  li.append(t, k, d);
  const list = $("log");
  list.prepend(li);
  while (list.children.length > MAX_LOG) list.lastElementChild.remove();
}

// ---------------------------------------------------------------- user sign-in (MSAL stand-in)
// With `--dev-entra` the dev broker authenticates token requests with the user's Entra access
// token (`--auth entra`) and serves a stand-in for Entra ID. This object plays
// @azure/msal-browser's acquireTokenSilent(): it returns a cached access token for the broker's
// API and gets a new one when less than 5 minutes are left. The client calls the async `headers`
// provider before every broker request, exactly as an app using MSAL would.
async function devMsal() {
  const r = await fetch("/dev-entra/msal-config", { cache: "no-store" }).catch(() => null);
  if (!r || r.status !== 200) return null;
  const config = await r.json();
  let cached = null; // { accessToken, expiresAt }
  return {
    config,
    async acquireTokenSilent({ scopes }) {
      if (cached && cached.expiresAt - Date.now() > 5 * 60_000) return cached;
      const t = await fetch(config.tokenEndpoint, {
        method: "POST", cache: "no-store",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ scope: scopes.join(" ") }),
      });
      if (t.status !== 200) throw new Error(`sign-in failed (${t.status})`);
      const j = await t.json();
      cached = { accessToken: j.access_token, expiresAt: Date.now() + j.expires_in * 1000 };
      return cached;
    },
  };
}

// ---------------------------------------------------------------- client
await init();
const msal = await devMsal();
// The relay switch (a broker started with --relay): on, the broker answers a relay ticket and
// relays the Speech SDK's WebSocket, so this page holds no Azure credential at all; off (dev
// only), it answers a plain Speech token for comparison.
const relayOff = new URLSearchParams(location.search).get("relay") === "off";
const client = new TokenClient({
  brokerUrl: relayOff ? "/api/speech-token?relay=0" : "/api/speech-token",
  ...(msal ? {
    headers: async () => {
      const r = await msal.acquireTokenSilent({ scopes: msal.config.scopes });
      return { Authorization: `Bearer ${r.accessToken}` };
    },
  } : {}),
});

client.on("token", async (d) => {
  syncRequests();
  const now = Date.now();
  tokenEvents++;
  const token = client.token; // read in the listener, never put in the detail
  const fp = token ? await fingerprint(token) : "?";
  const prev = history.tokens.at(-1);
  const reserved = prev !== undefined && prev.fp === fp;
  if (reserved) {
    prev.reserved = (prev.reserved ?? 0) + 1;
    prev.plannedRefresh = client.nextRefreshAt;
  } else {
    history.tokens.push({ fp, start: now, expiresAt: d.expiresAt, plannedRefresh: client.nextRefreshAt });
  }
  currentFp = fp;
  if (lastOutcomeError) {
    $("last-error").dataset.recovered = "true";
    $("last-error-time").textContent += ` · recovered ${clock(now)}`;
  }
  lastOutcomeError = false;
  const attached = client.attachedCount;
  if (attached > 0) history.speech.push({ at: now, count: attached });
  log("token", `${reserved ? "same token again (broker cache) " : "new token "}${fp} · expires ${clock(d.expiresAt)} (${relative(d.expiresAt)})`
    + (attached ? ` · set on ${attached} Speech object${attached > 1 ? "s" : ""}` : ""));
  if (tokenEvents === 1) onFirstToken(d);
  scanStorage();
  render();
});
client.on("refreshing", () => {
  syncRequests();
  log("refreshing", lastOutcomeError ? "retrying the broker" : "refreshing ahead of expiry");
});
client.on("error", (d) => {
  syncRequests();
  const e = d.error;
  lastOutcomeError = true;
  history.errors.push({ at: Date.now(), kind: e.kind, status: e.status });
  const extra = [e.status ? `HTTP ${e.status}` : "", e.retryAfter ? `retry after ${e.retryAfter} s` : ""].filter(Boolean).join(", ");
  log("error", `${e.kind}${extra ? ` (${extra})` : ""}: ${e.message}`);
  $("last-error").hidden = false;
  $("no-error").hidden = true;
  $("last-error").dataset.kind = e.kind;
  $("last-error").dataset.recovered = "false";
  $("last-error-kind").textContent = e.kind;
  $("last-error-text").textContent = `${e.message}${extra ? ` — ${extra}` : ""}`;
  $("last-error-time").textContent = clock(Date.now());
  render();
});
client.on("expired", () => {
  history.expired.push({ at: Date.now() });
  currentFp = null;
  log("expired", "the token expired before a new one arrived");
  render();
});
client.on("status", (d) => { syncRequests(); log("status", d.status); });
client.on("detach", () => log("detach", "a closed Speech object was detached"));

// ---------------------------------------------------------------- first token: mode, speech, dev
function onFirstToken(d) {
  const relayed = (client.token ?? "").startsWith("rt1.");
  if (relayed || relayOff) {
    const sw = $("relay-switch");
    sw.hidden = false;
    sw.dataset.relay = relayed ? "on" : "off";
    sw.textContent = relayed ? "relay: on · page holds a ticket only" : "relay: off · page holds a Speech token";
    sw.href = relayed ? "?relay=off" : "?relay=on";
    sw.title = relayed ? "switch to plain Speech tokens" : "switch to the relay";
    log("status", relayed
      ? "relay: this page holds only a 60-s relay ticket; the broker connects to Speech with its own credential"
      : "relay off: this page holds a Speech token (compare with the relay)");
  }
  if (msal) log("status", `signed in (dev Entra stand-in): broker requests carry the user's access token for ${msal.config.scopes[0]}`);
  const endpoint = d.endpoint ?? client.endpoint;
  const region = d.region ?? client.region;
  isDev = region === "local" || /^wss?:\/\/(127\.0\.0\.1|localhost|\[::1\])(:\d+)?\//.test(endpoint ?? "");
  $("mode-pill").textContent = isDev ? "dev broker · fake Speech service" : `Azure · ${region ?? "custom endpoint"}`;
  $("mode-pill").dataset.mode = isDev ? "dev" : "azure";
  $("speech-target").textContent = endpoint ? new URL(endpoint).host : `${region}.stt.speech.microsoft.com`;
  $("speech-explain").textContent = isDev
    ? "Dev mode: recognizes a generated WAV tone against the broker's fake Speech endpoint, which answers with a canned phrase."
    : "Recognizes one phrase from your microphone against Azure Speech.";
  $("recognize").disabled = false;
  $("dev-controls").hidden = !isDev;
  $("dev-unavailable").hidden = isDev;
  if (isDev) pollBroker();
  buildSpeechConfig();
}

async function buildSpeechConfig() {
  const sdk = await waitForSdk();
  if (!sdk) {
    $("speech-explain").textContent = "The Speech SDK bundle did not load from /vendor/.";
    $("recognize").disabled = true;
    return;
  }
  try {
    speechConfig = await client.speechConfig(sdk);
    speechConfig.speechRecognitionLanguage = "en-US";
    log("attach", "SpeechConfig built by client.speechConfig(SpeechSDK) and attached");
  } catch (e) {
    log("error", `speechConfig: ${e.kind ?? "error"}: ${e.message}`);
  }
  render();
}

async function waitForSdk() {
  for (let i = 0; i < 100 && typeof window.SpeechSDK !== "object"; i++) await new Promise((r) => setTimeout(r, 50));
  return typeof window.SpeechSDK === "object" ? window.SpeechSDK : null;
}

// ---------------------------------------------------------------- speech
function makeWav(seconds = 2, rate = 16000, freq = 440) {
  const n = Math.round(seconds * rate);
  const buf = new ArrayBuffer(44 + n * 2);
  const v = new DataView(buf);
  const str = (o, s) => { for (let i = 0; i < s.length; i++) v.setUint8(o + i, s.charCodeAt(i)); };
  str(0, "RIFF"); v.setUint32(4, 36 + n * 2, true); str(8, "WAVE"); str(12, "fmt ");
  v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true);
  v.setUint32(24, rate, true); v.setUint32(28, rate * 2, true); v.setUint16(32, 2, true); v.setUint16(34, 16, true);
  str(36, "data"); v.setUint32(40, n * 2, true);
  for (let i = 0; i < n; i++) v.setInt16(44 + i * 2, Math.round(Math.sin((2 * Math.PI * freq * i) / rate) * 0.3 * 32767), true);
  return buf;
}

async function recognize() {
  const sdk = await waitForSdk();
  if (!sdk || !speechConfig) return;
  const button = $("recognize");
  const result = $("speech-result");
  button.disabled = true;
  $("recognize-label").textContent = isDev ? "Recognizing…" : "Listening…";
  result.dataset.state = "running";
  $("speech-text").textContent = "…";
  $("speech-meta").textContent = "";
  const audio = isDev
    ? sdk.AudioConfig.fromWavFileInput(new File([makeWav(2)], "tone.wav"))
    : sdk.AudioConfig.fromDefaultMicrophoneInput();
  const recognizer = new sdk.SpeechRecognizer(speechConfig, audio);
  client.attach(recognizer);
  const started = performance.now();
  render();
  try {
    const r = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("timed out after 30 s")), 30_000);
      recognizer.recognizeOnceAsync((x) => { clearTimeout(timer); resolve(x); }, (e) => { clearTimeout(timer); reject(new Error(String(e))); });
    });
    const ms = Math.round(performance.now() - started);
    if (r.reason === sdk.ResultReason.RecognizedSpeech) {
      result.dataset.state = "recognized";
      $("speech-text").textContent = r.text;
      $("speech-meta").textContent = `RecognizedSpeech · ${ms} ms`;
      log("speech", `recognized "${r.text}" in ${ms} ms`);
    } else if (r.reason === sdk.ResultReason.Canceled) {
      const c = sdk.CancellationDetails.fromResult(r);
      // errorDetails can carry the WebSocket URL, which carries the token: show only the code
      const code = /StatusCode: (\d+)/.exec(c.errorDetails ?? "")?.[1];
      result.dataset.state = "canceled";
      $("speech-text").textContent = "Canceled";
      $("speech-meta").textContent = `${sdk.CancellationErrorCode[c.ErrorCode] ?? "error"}${code ? ` · status ${code}` : ""}`;
      log("speech", `canceled${code ? ` (status ${code})` : ""}`);
    } else {
      result.dataset.state = "nomatch";
      $("speech-text").textContent = "No speech recognized";
      $("speech-meta").textContent = sdk.ResultReason[r.reason];
    }
  } catch (e) {
    result.dataset.state = "failed";
    $("speech-text").textContent = "Failed";
    $("speech-meta").textContent = String(e.message).slice(0, 80);
  } finally {
    client.detach(recognizer);
    recognizer.close();
    button.disabled = false;
    $("recognize-label").textContent = "Recognize";
    render();
  }
}
$("recognize").addEventListener("click", recognize);

// ---------------------------------------------------------------- storage audit
async function scanStorage() {
  const counts = {};
  try { counts.localStorage = localStorage.length; } catch { counts.localStorage = "n/a"; }
  try { counts.sessionStorage = sessionStorage.length; } catch { counts.sessionStorage = "n/a"; }
  counts.cookies = document.cookie ? document.cookie.split(";").filter((c) => c.trim()).length : 0;
  try {
    counts.indexedDB = indexedDB.databases ? (await indexedDB.databases()).length : "n/a";
  } catch { counts.indexedDB = "n/a"; }
  try {
    let n = 0;
    if (typeof caches === "undefined") n = "n/a";
    else for (const name of await caches.keys()) n += (await (await caches.open(name)).keys()).length + 1;
    counts.cacheStorage = n;
  } catch { counts.cacheStorage = "n/a"; }
  let total = 0;
  for (const [k, n] of Object.entries(counts)) {
    const cell = $(`st-${k}`);
    cell.textContent = String(n);
    cell.dataset.value = String(n);
    cell.parentElement.dataset.state = n === 0 ? "empty" : n === "n/a" ? "na" : "found";
    if (typeof n === "number") total += n;
  }
  $("storage-total").textContent = String(total);
  $("storage-total").dataset.value = String(total);
  $("storage-badge").textContent = total === 0 ? "nothing stored" : `${total} entries found`;
  $("storage-badge").className = `badge ${total === 0 ? "badge-ok" : "badge-bad"}`;
  $("storage-time").textContent = clock(Date.now());
}
setInterval(scanStorage, 3000);
scanStorage();

// ---------------------------------------------------------------- dev broker controls
async function adminPost(path, body) {
  const r = await fetch(path, {
    method: "POST", cache: "no-store", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
  });
  if (!r.ok) throw new Error(`${path} answered ${r.status}`);
  return r.json();
}
function adminMsg(text, ok = true) {
  $("admin-msg").textContent = text;
  $("admin-msg").dataset.ok = String(ok);
}
async function control(label, fn) {
  try { adminMsg(await fn(), true); } catch (e) { adminMsg(`${label}: ${e.message}`, false); }
  pollBroker();
}
$("form-ttl").addEventListener("submit", (e) => {
  e.preventDefault();
  const seconds = Number($("ttl").value);
  control("TTL", async () => {
    await adminPost("/admin/ttl", { seconds });
    log("control", `broker TTL set to ${seconds} s; refreshing now`);
    client.refreshNow().catch(() => {});
    return `New tokens live ${seconds} s.`;
  });
});
$("form-outage").addEventListener("submit", (e) => {
  e.preventDefault();
  const seconds = Number($("outage").value);
  control("Outage", async () => {
    await adminPost("/admin/outage", { seconds });
    log("control", `simulated broker outage for ${seconds} s (503 + Retry-After: 1)`);
    return `Broker answers 503 for ${seconds} s.`;
  });
});
$("outage-end").addEventListener("click", () => control("Outage", async () => {
  await adminPost("/admin/outage", { seconds: 0 });
  log("control", "outage ended");
  return "Outage ended.";
}));
$("form-slow").addEventListener("submit", (e) => {
  e.preventDefault();
  const ms = Number($("slow").value);
  control("Slow", async () => {
    await adminPost("/admin/slow", { ms });
    log("control", ms ? `broker answers delayed by ${ms} ms` : "broker delay off");
    return ms ? `Every token answer is delayed by ${ms} ms.` : "Broker delay off.";
  });
});
$("slow-off").addEventListener("click", () => control("Slow", async () => {
  await adminPost("/admin/slow", { ms: 0 });
  log("control", "broker delay off");
  return "Broker delay off.";
}));
$("force-refresh").addEventListener("click", () => {
  log("control", "refreshNow()");
  client.refreshNow().then(() => adminMsg("Refreshed.", true), (e) => adminMsg(`refreshNow: ${e.kind}: ${e.message}`, false));
});

let ttlShown = false;
let brokerPoll = null;
async function pollBroker() {
  if (!isDev) return;
  clearTimeout(brokerPoll);
  try {
    const r = await fetch("/admin/stats", { cache: "no-store" });
    if (r.ok) {
      const s = await r.json();
      const state = s.outage ? "outage (503)" : s.slowMs ? `slow (${s.slowMs} ms)` : "healthy";
      $("broker-state").textContent = state;
      $("broker-state").dataset.state = s.outage ? "outage" : s.slowMs ? "slow" : "ok";
      $("broker-requests").textContent = String(s.tokenRequests);
      $("broker-upstream").textContent = String(s.upstreamRequests);
      if (!ttlShown && s.ttl) { $("ttl").value = String(s.ttl); ttlShown = true; }
    }
  } catch { /* broker gone: the client's errors tell the story */ }
  brokerPoll = setTimeout(pollBroker, 2000);
}

// ---------------------------------------------------------------- timeline
for (const b of $("window-buttons").querySelectorAll("button")) {
  b.addEventListener("click", () => {
    windowChoice = b.dataset.window;
    for (const o of $("window-buttons").querySelectorAll("button")) o.classList.toggle("on", o === b);
    render();
  });
}

function windowMs() {
  if (windowChoice !== "auto") return Number(windowChoice) * 1000;
  // auto: about eight token lifetimes, but no wider than the history so far (at least 1 min)
  const last = history.tokens.at(-1);
  const life = last ? last.expiresAt - last.start : 600_000;
  const elapsed = history.tokens.length ? (Date.now() - history.tokens[0].start) * 1.15 : 0;
  return Math.min(HISTORY_MS, Math.max(60_000, Math.min(8 * life, elapsed)));
}

function el(name, attrs, parent, text) {
  const e = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  parent?.append(e);
  return e;
}

/** Lapses: stretches since the first token with no unexpired token. */
function lapses(now) {
  const spans = history.tokens.map((t) => [t.start, t.expiresAt]).sort((a, b) => a[0] - b[0]);
  const out = [];
  if (!spans.length) return out;
  let covered = spans[0][1];
  for (const [s, e] of spans.slice(1)) {
    if (s > covered) out.push([covered, Math.min(s, now)]);
    covered = Math.max(covered, e);
  }
  if (covered < now) out.push([covered, now]);
  return out.filter(([a, b]) => b - a > 50);
}

function drawTimeline(now) {
  const svg = $("timeline");
  const W = Math.max(480, Math.round($("timeline-wrap").clientWidth));
  const H = 212;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("width", String(W));
  svg.setAttribute("height", String(H));
  svg.replaceChildren();
  const L = 118, R = W - 14, span = windowMs(), t0 = now - span;
  const x = (t) => L + ((t - t0) / span) * (R - L);
  const lanes = { tokens: 14, requests: 88, errors: 108, speech: 132, coverage: 160 };

  // grid + axis
  const grid = el("g", { class: "tl-grid" }, svg);
  const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600].map((s) => s * 1000);
  const step = steps.find((s) => span / s <= 8) ?? 600_000;
  for (let t = Math.ceil(t0 / step) * step; t <= now; t += step) {
    el("line", { x1: x(t), x2: x(t), y1: 6, y2: H - 24, class: "tl-gridline" }, grid);
    el("text", { x: x(t), y: H - 8, class: "tl-axis", "text-anchor": "middle" }, grid, clock(t));
  }
  const labels = el("g", { class: "tl-labels" }, svg);
  el("text", { x: 10, y: lanes.tokens + 30, class: "tl-lane" }, labels, "Tokens");
  el("text", { x: 10, y: lanes.requests + 11, class: "tl-lane" }, labels, "Requests");
  el("text", { x: 10, y: lanes.errors + 9, class: "tl-lane" }, labels, "Errors");
  el("text", { x: 10, y: lanes.speech + 10, class: "tl-lane" }, labels, "Speech SDK");
  el("text", { x: 10, y: lanes.coverage + 12, class: "tl-lane" }, labels, "Coverage");

  // clip to the plot area
  const clipId = "tl-clip";
  const defs = el("defs", {}, svg);
  const clip = el("clipPath", { id: clipId }, defs);
  el("rect", { x: L, y: 0, width: R - L, height: H }, clip);
  const plot = el("g", { "clip-path": `url(#${clipId})` }, svg);

  // token windows in three staggered rows, so overlaps show
  const visible = history.tokens.filter((t) => t.expiresAt > t0);
  history.tokens.forEach((t, i) => {
    if (t.expiresAt <= t0) return;
    const row = i % 3;
    const y = lanes.tokens + row * 24;
    const g = el("g", { class: `tl-token${t.reserved ? " reserved" : ""}`, "data-fp": t.fp }, plot);
    el("rect", { x: x(t.start), y, width: Math.max(2, x(t.expiresAt) - x(t.start)), height: 18, rx: 4, class: "tl-bar" }, g);
    if (t.plannedRefresh && t.plannedRefresh < t.expiresAt) {
      el("line", { x1: x(t.plannedRefresh), x2: x(t.plannedRefresh), y1: y - 2, y2: y + 20, class: "tl-planned" }, g);
    }
    const w = x(t.expiresAt) - x(t.start);
    if (w > 70) el("text", { x: x(t.start) + 6, y: y + 13, class: "tl-fp" }, g, t.fp + (t.reserved ? " ×" + (t.reserved + 1) : ""));
  });
  // requests: refreshes and retries
  for (const r of history.requests) {
    if (r.at < t0) continue;
    el("rect", { x: x(r.at) - 1.5, y: lanes.requests, width: 3, height: 14, rx: 1.5, class: r.retry ? "tl-retry" : "tl-refresh" }, plot);
  }
  for (const e of history.errors) {
    if (e.at < t0) continue;
    const cx = x(e.at), cy = lanes.errors + 5;
    el("path", { d: `M${cx - 4} ${cy - 4} L${cx + 4} ${cy + 4} M${cx + 4} ${cy - 4} L${cx - 4} ${cy + 4}`, class: "tl-error" }, plot);
  }
  // speech objects receiving a token
  for (const s of history.speech) {
    if (s.at < t0) continue;
    el("circle", { cx: x(s.at), cy: lanes.speech + 6, r: 5, class: "tl-speech" }, plot);
  }
  // coverage: green while a token is valid, red where none was
  if (history.tokens.length) {
    const first = Math.max(history.tokens[0].start, t0);
    el("rect", { x: x(first), y: lanes.coverage, width: Math.max(0, x(now) - x(first)), height: 18, rx: 4, class: "tl-covered" }, plot);
    for (const [a, b] of lapses(now)) {
      if (b < t0) continue;
      el("rect", { x: x(Math.max(a, t0)), y: lanes.coverage, width: Math.max(3, x(b) - x(Math.max(a, t0))), height: 18, class: "tl-lapse" }, plot);
    }
  }
  el("line", { x1: x(now), x2: x(now), y1: 4, y2: H - 24, class: "tl-now" }, svg);
  svg.dataset.tokens = String(visible.length);
  svg.dataset.requests = String(history.requests.length);
  svg.dataset.retries = String(history.requests.filter((r) => r.retry).length);
  svg.dataset.errors = String(history.errors.length);
  svg.dataset.speech = String(history.speech.length);
}

// ---------------------------------------------------------------- render loop
/** Broker requests, from the client's own counter: each increment is one request. */
function syncRequests() {
  const rc = client.requestCount;
  while (lastRequestCount < rc) {
    lastRequestCount++;
    history.requests.push({ at: Date.now(), retry: lastOutcomeError });
  }
  return rc;
}

function render() {
  const now = Date.now();
  prune(now);
  const rc = syncRequests();
  const status = client.status;
  const badge = $("status-badge");
  badge.textContent = status;
  badge.dataset.status = status;
  const exp = client.expiresAt;
  const next = client.nextRefreshAt;
  const last = history.tokens.at(-1);
  if (exp && status !== "expired" && status !== "idle" && status !== "disposed") {
    const life = last ? Math.max(1, last.expiresAt - last.start) : 1;
    const left = Math.max(0, exp - now);
    const frac = Math.min(1, left / life);
    $("countdown").textContent = duration(left);
    $("ring-value").setAttribute("stroke-dasharray", `${RING_C}`);
    $("ring-value").setAttribute("stroke-dashoffset", `${RING_C * (1 - frac)}`);
    $("ring-value").dataset.level = frac > 0.5 ? "ok" : frac > 0.2 ? "warn" : "low";
    // the refresh point, marked on the ring
    if (next && next < exp) {
      const rf = Math.min(1, Math.max(0, (exp - next) / life));
      $("ring-refresh").setAttribute("stroke-dasharray", `2 ${RING_C}`);
      $("ring-refresh").setAttribute("stroke-dashoffset", `${-RING_C * (1 - rf)}`);
    }
    $("expires-at").textContent = `${clock(exp)} (${relative(exp)})`;
  } else {
    $("countdown").textContent = "–";
    $("ring-value").setAttribute("stroke-dashoffset", `${RING_C}`);
    $("expires-at").textContent = "–";
  }
  $("next-refresh").textContent = next ? `${clock(next)} (${relative(next)})` : "–";
  const endpoint = client.endpoint;
  $("where-label").textContent = endpoint ? "Endpoint" : "Region";
  $("where").textContent = endpoint ?? client.region ?? "–";
  $("where").title = endpoint ?? "";
  const refreshes = Math.max(0, tokenEvents - 1);
  $("refreshes").textContent = String(refreshes);
  $("refreshes").dataset.value = String(refreshes);
  $("requests").textContent = String(rc);
  $("requests").dataset.value = String(rc);
  $("fingerprint").textContent = currentFp && client.token ? `sha256 ${currentFp}…` : "–";
  $("attached").textContent = String(client.attachedCount);
  const lp = lapses(now);
  const cov = $("coverage");
  cov.dataset.lapses = String(lp.length);
  if (!history.tokens.length) cov.textContent = "no token yet";
  else {
    cov.textContent = lp.length === 0
      ? `covered continuously since ${clock(history.tokens[0].start)} · 0 lapses`
      : `${lp.length} lapse${lp.length > 1 ? "s" : ""} (${duration(lp.reduce((s, [a, b]) => s + b - a, 0))} without a valid token)`;
    cov.dataset.state = lp.length === 0 ? "ok" : "bad";
  }
  $("clock").textContent = clock(now);
  drawTimeline(now);
}
setInterval(render, 250);
window.addEventListener("resize", render);

// ---------------------------------------------------------------- start
log("init", "wasm module loaded; asking the broker for a token");
client.getToken().catch((e) => log("error", `first token: ${e.kind}: ${e.message}`));
render();
document.documentElement.dataset.ready = "true";
