// `make bench` (via scripts/bench.sh): measures speech-token-client against peers in the same
// run, prints a table and writes BENCHMARKS.md. Benchmarks, not tests: no duration is asserted;
// the targets are printed next to the numbers. Loopback only.
//
//   node bench/run.mjs --pkg DIR --broker BIN --sim FILE --sim-worst FILE [--crates FILE]
//                      [--out BENCHMARKS.md] [--json FILE] [--quick]
//
// scripts/bench.sh prepares the inputs: a snapshot of pkg/, the release broker, the engine
// simulation's JSON (normal and worst-case throttling) and the per-crate size breakdown.

import { spawn, spawnSync, execFileSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";
import zlib from "node:zlib";
import { chromium } from "playwright-core";
import { startFakeEntra } from "../tests/e2e/fake-entra.mjs";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const PAGES = path.join(ROOT, "bench/pages");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

// ---------------------------------------------------------------- arguments and settings

const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : dflt;
};
const QUICK = argv.includes("--quick");
const PKG = path.resolve(ROOT, opt("--pkg", "pkg"));
const BROKER_BIN = path.resolve(ROOT, opt("--broker", "target/release/speech-token-broker"));
const RELAY_LOAD = opt("--relay-load");
const SIM = opt("--sim");
const SIM_WORST = opt("--sim-worst");
const CRATES = opt("--crates");
// The package built without the `cross-tab` cargo feature (scripts/bench.sh), and its breakdown.
const PKG_SOLO = opt("--pkg-solo") && path.resolve(ROOT, opt("--pkg-solo"));
const CRATES_SOLO = opt("--crates-solo");
const OUT = path.resolve(ROOT, opt("--out", "BENCHMARKS.md"));
const JSON_OUT = opt("--json");

const S = {
  hotRounds: QUICK ? 3 : 9, // interleaved rounds of every hot-path case
  hotBatchMs: QUICK ? 20 : 50, // minimum duration of one timed batch
  flightCallers: 10_000,
  sampleFlightCallers: 10_000,
  coldRuns: QUICK ? 3 : 10,
  reloadRuns: QUICK ? 2 : 5,
  memCycles: 10_000,
  wrkSeconds: QUICK ? 2 : 5,
  relaySessions: QUICK ? 200 : 1000,
  relaySeconds: QUICK ? 4 : 10,
  wrkThreads: 2,
  wrkConnections: 50,
  nodeClients: 1000,
};

const TARGETS = {
  sizeBytes: 18 * 1024,
  sizeIssueBytes: 32 * 1024, // issue 19's bar for the full build (the 18 KiB goal stays)
  tokenReadRatio: 3,
  getTokenOverMicrotaskNs: 1000,
  requestsPerLifetime: 1,
  exposureMs: 0,
  brokerRps: 20_000,
  brokerP99Ms: 5,
};

// ---------------------------------------------------------------- small helpers

const t0Bench = Date.now();
const log = (msg) => process.stderr.write(`[bench ${((Date.now() - t0Bench) / 1000).toFixed(0).padStart(3)}s] ${msg}\n`);
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const fmtInt = (n) => Math.round(n).toLocaleString("en-US").replace(/,/g, " ");
const fmtBytes = (n) => `${fmtInt(n)} B (${(n / 1024).toFixed(1)} KiB)`;
const fmtNs = (n) => (n < 10 ? n.toFixed(2) : n < 100 ? n.toFixed(1) : fmtInt(n)) + " ns";
const fmtMs = (n) => (Math.abs(n) < 10 ? n.toFixed(2) : n.toFixed(1)) + " ms";
/** A difference with its sign: "+1.60 ms", "−2.28 ms" (noise can make an added latency negative). */
const fmtDeltaMs = (n) => (n < 0 ? "−" + fmtMs(-n) : "+" + fmtMs(n));
const fmtX = (r) => r === 0 ? "0×" : r < 0.01 ? `1/${fmtInt(1 / r)}` : (r < 10 ? r.toFixed(2) : r < 100 ? r.toFixed(1) : fmtInt(r)) + "×";

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms / 1000} s`)), ms); }),
  ]);
}

function gzip9(file) {
  const r = spawnSync("gzip", ["-9c", file], { maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`gzip -9 ${file} failed`);
  return r.stdout.length;
}
const brotli = (file) => zlib.brotliCompressSync(readFileSync(file), {
  params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 11 },
}).length;

const results = { settings: S, targets: TARGETS, notMeasured: [] };
const failures = [];

async function step(name, fn) {
  log(`${name} ...`);
  const t = Date.now();
  try {
    await fn();
    log(`${name}: done in ${((Date.now() - t) / 1000).toFixed(1)} s`);
  } catch (e) {
    const msg = String(e?.message ?? e).split("\n")[0];
    log(`${name}: FAILED: ${msg}`);
    failures.push(name);
    results.notMeasured.push(`${name}: failed in this run (${msg})`);
  }
}

// ---------------------------------------------------------------- machine

function machine() {
  let cpu = "unknown";
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"));
    if (m) cpu = m[1].trim();
  } catch {}
  let nproc = os.availableParallelism?.() ?? os.cpus().length;
  try { nproc = Number(execFileSync("nproc", { encoding: "utf8" }).trim()); } catch {}
  return {
    nproc, cpu,
    memGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    date: new Date().toISOString().slice(0, 16).replace("T", " ") + " UTC",
    loadAtStart: os.loadavg().map((x) => x.toFixed(2)).join(" "),
  };
}

// ---------------------------------------------------------------- broker

let broker;

function startBroker(extraArgs = []) {
  const args = ["--mode", "dev", "--listen", "127.0.0.1:0", "--rate-limit", "0", "--www", PAGES, "--pkg", PKG, ...extraArgs];
  return new Promise((resolve, reject) => {
    const child = spawn(BROKER_BIN, args, { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, RUST_LOG: "warn" } });
    let err = "";
    child.stderr.on("data", (d) => { err += d; if (err.length > 20_000) err = err.slice(-10_000); });
    const timer = setTimeout(() => { child.kill("SIGKILL"); reject(new Error("the broker did not start within 20 s")); }, 20_000);
    const early = (code) => { clearTimeout(timer); reject(new Error(`the broker exited (${code}): ${err.trim()}`)); };
    child.once("exit", early);
    readline.createInterface({ input: child.stdout }).once("line", (line) => {
      clearTimeout(timer);
      child.off("exit", early);
      const m = /^listening on (http:\/\/127\.0\.0\.1:\d+)$/.exec(line);
      if (!m) { child.kill("SIGKILL"); reject(new Error(`unexpected broker line: ${line}`)); return; }
      resolve({ child, base: m[1] });
    });
  });
}

async function stopBroker(handle = broker) {
  const child = handle?.child;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  const t = setTimeout(() => child.kill("SIGKILL"), 5000);
  await exited;
  clearTimeout(t);
}

async function admin(p, method = "GET") {
  const r = await fetch(broker.base + p, method === "POST" ? { method, headers: { "content-type": "application/json" }, body: "{}" } : {});
  if (r.status !== 200) throw new Error(`${p} answered ${r.status}`);
  return r.json();
}
const resetBroker = () => admin("/admin/reset", "POST");
const stats = () => admin("/admin/stats");

// ---------------------------------------------------------------- browser

let browser;

async function openPage(context, file, readyFlag) {
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  await page.goto(`${broker.base}/${file}`);
  if (readyFlag) {
    await page.waitForFunction((f) => window[f] === true, readyFlag, { timeout: 30_000 }).catch((e) => {
      throw new Error(`${file} did not load: ${errors.join(" | ") || e.message}`);
    });
  }
  return { page, errors };
}

// ---------------------------------------------------------------- 1. size

async function measureSize() {
  const wasm = path.join(PKG, "speech_token_client_bg.wasm");
  const glue = path.join(PKG, "speech_token_client.js");
  const ours = {
    wasmRaw: statSync(wasm).size, glueRaw: statSync(glue).size,
    wasmGzip: gzip9(wasm), glueGzip: gzip9(glue),
    wasmBrotli: brotli(wasm), glueBrotli: brotli(glue),
  };
  ours.totalGzip = ours.wasmGzip + ours.glueGzip;
  ours.totalBrotli = ours.wasmBrotli + ours.glueBrotli;

  const nm = (p) => path.join(ROOT, "node_modules", p);
  const version = (pkg) => JSON.parse(readFileSync(nm(`${pkg}/package.json`), "utf8")).version;
  // Each peer's own minified browser bundle (whole library; an app bundler that tree-shakes
  // would ship less of it). If one ships no minified bundle, its ESM entry is measured instead.
  const peers = [
    { name: "@auth0/auth0-spa-js", candidates: ["dist/auth0-spa-js.production.js"], esm: "dist/auth0-spa-js.production.esm.js" },
    { name: "@azure/msal-browser", candidates: ["lib/msal-browser.min.js"], esm: "dist/index.mjs" },
    { name: "oidc-client-ts", candidates: ["dist/browser/oidc-client-ts.min.js"], esm: "dist/esm/oidc-client-ts.js" },
  ];
  const out = [];
  for (const p of peers) {
    if (!existsSync(nm(`${p.name}/package.json`))) {
      results.notMeasured.push(`size of ${p.name}: not installed (npm install)`);
      continue;
    }
    const found = p.candidates.find((c) => existsSync(nm(`${p.name}/${c}`)));
    const file = found ?? p.esm;
    const full = nm(`${p.name}/${file}`);
    out.push({
      name: p.name, version: version(p.name), file, minified: Boolean(found),
      raw: statSync(full).size, gzip: gzip9(full), brotli: brotli(full),
    });
  }
  results.size = { ours, peers: out };
  if (PKG_SOLO && existsSync(path.join(PKG_SOLO, "speech_token_client_bg.wasm"))) {
    const w = path.join(PKG_SOLO, "speech_token_client_bg.wasm");
    const g = path.join(PKG_SOLO, "speech_token_client.js");
    const solo = { wasmRaw: statSync(w).size, glueRaw: statSync(g).size, wasmGzip: gzip9(w), glueGzip: gzip9(g) };
    solo.totalGzip = solo.wasmGzip + solo.glueGzip;
    results.size.solo = solo;
    if (CRATES_SOLO && existsSync(CRATES_SOLO)) solo.crates = JSON.parse(readFileSync(CRATES_SOLO, "utf8"));
  } else if (PKG_SOLO) results.notMeasured.push("size without cross-tab: the package could not be built (see scripts/bench.sh output)");
  if (CRATES && existsSync(CRATES)) results.size.crates = JSON.parse(readFileSync(CRATES, "utf8"));
  else results.notMeasured.push("per-crate size breakdown: the named wasm could not be built (see scripts/bench.sh output)");
  log(`size: ours ${fmtBytes(ours.totalGzip)} gzip; ${out.map((p) => `${p.name} ${fmtBytes(p.gzip)}`).join(", ")}`);
}

// ---------------------------------------------------------------- 2. hot path (+ 4. single flight)

const HOT_CASES = ["variable", "jsGetter", "cookie", "token", "promiseResolve", "cookieAsync", "getToken"];

async function measureHotAndFlight() {
  const context = await browser.newContext();
  try {
    await resetBroker();
    const { page, errors } = await openPage(context, "hot.html", "benchReady");
    const setup = await page.evaluate(() => window.bench.setup());
    log(`hot path: token ${setup.tokenLength} chars, cookie header ${setup.cookieLength} chars; calibrating`);
    const plan = [];
    for (const name of HOT_CASES) {
      const n = await page.evaluate(([n, ms]) => window.bench.calibrate(n, ms), [name, S.hotBatchMs]);
      plan.push([name, n]);
    }
    const samples = Object.fromEntries(HOT_CASES.map((c) => [c, []]));
    for (let r = 0; r < S.hotRounds; r++) {
      // Rotate the order every round so that no case always runs right after the same one.
      const order = plan.map((_, i) => plan[(i + r) % plan.length]);
      const ns = await withTimeout(page.evaluate((o) => window.bench.round(o), order), 60_000, "hot-path round");
      for (const [k, v] of Object.entries(ns)) samples[k].push(v);
      log(`hot path: round ${r + 1}/${S.hotRounds}: ` + HOT_CASES.map((c) => `${c} ${fmtNs(ns[c])}`).join(", "));
    }
    const med = Object.fromEntries(HOT_CASES.map((c) => [c, median(samples[c])]));
    results.hot = {
      nsPerOp: med,
      spread: Object.fromEntries(HOT_CASES.map((c) => [c, [Math.min(...samples[c]), Math.max(...samples[c])]])),
      batchSizes: Object.fromEntries(plan),
      tokenLength: setup.tokenLength,
    };

    // 4. Single flight: a brand-new client, cold cache, 10 000 concurrent getToken().
    await resetBroker();
    const flight = await withTimeout(page.evaluate((n) => window.bench.flight(n), S.flightCallers), 60_000, "single flight");
    const st = await stats();
    results.flight = { ...flight, brokerTokenRequests: st.tokenRequests, brokerUpstreamRequests: st.upstreamRequests };
    log(`single flight: ${flight.callers} callers -> ${st.tokenRequests} broker request(s) in ${fmtMs(flight.ms)}`);

    // Peer: the sample's getTokenOrRefresh() from as many concurrent callers, no cookie yet.
    await resetBroker();
    log(`single flight: the sample's getTokenOrRefresh() from ${S.sampleFlightCallers} concurrent callers (each asks the broker) ...`);
    const sample = await withTimeout(page.evaluate((n) => window.bench.flightSample(n), S.sampleFlightCallers), 120_000, "sample flight");
    const st2 = await stats();
    results.flightSample = { ...sample, brokerTokenRequests: st2.tokenRequests, brokerUpstreamRequests: st2.upstreamRequests };
    log(`single flight (sample): ${sample.callers} callers -> ${st2.tokenRequests} broker requests, ${sample.failed} callers failed (${sample.failReasons.join("; ")}), ${fmtMs(sample.ms)}`);
    if (errors.length) log(`hot page console errors: ${errors.slice(0, 3).join(" | ")}`);
  } finally {
    await context.close();
  }
}

// ---------------------------------------------------------------- 3. cold start

async function measureCold() {
  const fresh = [];
  for (let i = 0; i < S.coldRuns; i++) {
    const context = await browser.newContext(); // empty HTTP cache, no compiled-code cache
    try {
      const { page } = await openPage(context, "cold.html");
      await page.waitForFunction(() => window.coldResult !== undefined, null, { timeout: 30_000 });
      const r = await page.evaluate(() => window.coldResult);
      if (r.error) throw new Error(`cold start: ${r.error}`);
      fresh.push(r);
      log(`cold start ${i + 1}/${S.coldRuns}: import ${fmtMs(r.importMs)}, init() ${fmtMs(r.initMs)}, first token ${fmtMs(r.firstTokenMs)}, total ${fmtMs(r.totalMs)}`);
    } finally {
      await context.close();
    }
  }
  // Repeat visits: the same context reloads the page (revalidated HTTP cache, code caches).
  const repeat = [];
  const context = await browser.newContext();
  try {
    const { page } = await openPage(context, "cold.html");
    await page.waitForFunction(() => window.coldResult !== undefined, null, { timeout: 30_000 });
    for (let i = 0; i < S.reloadRuns; i++) {
      await page.reload();
      await page.waitForFunction(() => window.coldResult !== undefined, null, { timeout: 30_000 });
      const r = await page.evaluate(() => window.coldResult);
      if (r.error) throw new Error(`cold start (reload): ${r.error}`);
      repeat.push(r);
    }
    log(`repeat visits: total ${repeat.map((r) => fmtMs(r.totalMs)).join(", ")}`);
  } finally {
    await context.close();
  }
  const summarize = (runs) => Object.fromEntries(["importMs", "initMs", "firstTokenMs", "totalMs", "sinceNavigationMs"]
    .map((k) => [k, { median: median(runs.map((r) => r[k])), min: Math.min(...runs.map((r) => r[k])), max: Math.max(...runs.map((r) => r[k])) }]));
  results.cold = { runs: fresh.length, fresh: summarize(fresh), repeat: summarize(repeat), memoryBytes: fresh[0]?.memoryBytes };
}

// ---------------------------------------------------------------- 6. memory

async function measureMemory() {
  const context = await browser.newContext();
  try {
    const { page, errors } = await openPage(context, "memory.html", "memReady");
    const setup = await page.evaluate(() => window.mem.setup());
    const points = [];
    let done = 0;
    for (const target of [10, 100, 1000, 2500, 5000, 7500, 10_000]) {
      const r = await withTimeout(page.evaluate((k) => window.mem.cycles(k), target - done), 120_000, "refresh cycles");
      done = target;
      if (!r.tokenMatches) throw new Error("client.token is not the last refreshed token");
      points.push(r);
      log(`memory: ${r.cycles} refresh cycles, wasm memory ${fmtBytes(r.bytes)} (${fmtMs(r.ms)} for this chunk)`);
    }
    const at = (c) => points.find((p) => p.cycles === c);
    results.memory = {
      afterInit: setup.afterInit, afterFirstToken: setup.afterFirstToken,
      after10: at(10).bytes, after10000: at(10_000).bytes,
      growth: at(10_000).bytes - at(10).bytes,
      points: points.map((p) => ({ cycles: p.cycles, bytes: p.bytes })),
      cycleMs: (points.reduce((s, p) => s + p.ms, 0)) / 10_000,
      fetches: points.at(-1).fetches,
    };
    if (errors.length) log(`memory page console errors: ${errors.slice(0, 3).join(" | ")}`);
  } finally {
    await context.close();
  }
}

// ---------------------------------------------------------------- 7. broker

function parseWrk(text) {
  const unit = (v, u) => +v * ({ us: 1e-3, ms: 1, s: 1000 }[u] ?? NaN);
  const lat = (p) => {
    const m = new RegExp(`^\\s*${p}%\\s+([\\d.]+)(us|ms|s)\\s*$`, "m").exec(text);
    return m ? unit(m[1], m[2]) : NaN;
  };
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(text);
  const total = /(\d+) requests in/.exec(text);
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(text);
  const sockErr = /Socket errors:(.*)/.exec(text);
  return {
    rps: rps ? +rps[1] : NaN, requests: total ? +total[1] : NaN,
    p50Ms: lat(50), p75Ms: lat(75), p90Ms: lat(90), p99Ms: lat(99),
    non2xx: non2xx ? +non2xx[1] : 0, socketErrors: sockErr ? sockErr[1].trim() : "",
  };
}

function runWrk(seconds, base = broker.base, headers = []) {
  const args = [`-t${S.wrkThreads}`, `-c${S.wrkConnections}`, `-d${seconds}s`, "--latency",
    ...headers.flatMap((h) => ["-H", h]), `${base}/api/speech-token`];
  const r = spawnSync("wrk", args, { encoding: "utf8", timeout: (seconds + 30) * 1000 });
  if (r.error) throw new Error(`wrk: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`wrk exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

async function measureBroker() {
  if (spawnSync("wrk", ["--version"]).error) {
    results.notMeasured.push("broker requests/s and latency: wrk is not installed (scripts/bench.sh installs it with apt-get)");
  } else {
    log("broker: wrk warm-up (1 s)");
    runWrk(1);
    await resetBroker();
    log(`broker: wrk -t${S.wrkThreads} -c${S.wrkConnections} -d${S.wrkSeconds}s --latency (cached tokens)`);
    const text = runWrk(S.wrkSeconds);
    const st = await stats();
    results.wrk = { ...parseWrk(text), brokerTokenRequests: st.tokenRequests, upstreamRequests: st.upstreamRequests, raw: text.trim() };
    log(`broker: ${fmtInt(results.wrk.rps)} req/s, p50 ${fmtMs(results.wrk.p50Ms)}, p99 ${fmtMs(results.wrk.p99Ms)}, upstream ${st.upstreamRequests}`);
  }

  // 1000 concurrent clients on a cold broker cache: how many upstream requests?
  await resetBroker();
  const t = performance.now();
  const answers = await withTimeout(Promise.all(Array.from({ length: S.nodeClients }, async () => {
    const r = await fetch(`${broker.base}/api/speech-token`, { cache: "no-store" });
    const body = await r.json();
    return { status: r.status, token: body.token };
  })), 60_000, "1000 concurrent clients");
  const ms = performance.now() - t;
  const st = await stats();
  results.concurrentClients = {
    clients: S.nodeClients, ms,
    ok: answers.filter((a) => a.status === 200).length,
    distinctTokens: new Set(answers.map((a) => a.token)).size,
    brokerTokenRequests: st.tokenRequests, upstreamRequests: st.upstreamRequests,
  };
  log(`broker: ${S.nodeClients} concurrent clients -> ${st.upstreamRequests} upstream request(s), ${results.concurrentClients.distinctTokens} distinct token(s)`);
}

// The same cached-token load with `--auth entra`: every request carries a user's Entra access
// token (RS256, 2048-bit key) that the broker validates (signature, iss, aud, exp/nbf, tid, scope)
// before answering. Keys come from a fake Entra ID on loopback and are cached after the first request.
async function measureBrokerAuth() {
  if (spawnSync("wrk", ["--version"]).error) {
    results.notMeasured.push("broker with --auth entra: wrk is not installed");
    return;
  }
  const entra = await startFakeEntra();
  let handle;
  try {
    handle = await startBroker(entra.brokerArgs);
    const userToken = entra.mint();
    const headers = [`Authorization: Bearer ${userToken}`];
    // The fake Entra ID runs in this process, whose event loop spawnSync(wrk) blocks: let the
    // broker download and cache the signing keys first (they are cached for 24 h).
    const first = await fetch(`${handle.base}/api/speech-token`, { headers: { authorization: `Bearer ${userToken}` } });
    if (first.status !== 200) throw new Error(`--auth entra broker answered ${first.status}: ${await first.text()}`);
    log("broker --auth entra: wrk warm-up (1 s)");
    runWrk(1, handle.base, headers);
    log(`broker --auth entra: wrk -t${S.wrkThreads} -c${S.wrkConnections} -d${S.wrkSeconds}s --latency (cached tokens, user token validated per request)`);
    const text = runWrk(S.wrkSeconds, handle.base, headers);
    const w = parseWrk(text);
    const base = results.wrk;
    // CPU time per request on this machine: the wrk runs keep every CPU busy (wrk + broker), so
    // the difference of 1/throughput × CPUs bounds the validation's CPU cost from above.
    const cpuUs = base ? (1e6 / w.rps - 1e6 / base.rps) * os.cpus().length : NaN;
    results.wrkEntra = { ...w, keyFetches: entra.keyFetches(), validationCpuUs: cpuUs,
      addedP50Ms: base ? w.p50Ms - base.p50Ms : NaN, raw: text.trim() };
    log(`broker --auth entra: ${fmtInt(w.rps)} req/s, p50 ${fmtMs(w.p50Ms)}, p99 ${fmtMs(w.p99Ms)}, non-2xx ${w.non2xx}, validation ≈ ${cpuUs.toFixed(0)} µs CPU/request, key downloads ${entra.keyFetches()}`);
  } finally {
    await stopBroker(handle);
    await entra.close();
  }
}

// The relay (--relay) under load: N concurrent sessions streaming 3200-byte audio frames every
// 100 ms, each frame a new turn that the fake Speech service answers at once. The same load runs
// directly against the fake service (the main dev broker) and through a --relay broker, in this
// run: the difference is the relay's added latency per frame. Memory: the relay broker's resident
// set with every session open, minus before, per session (it hosts both the relay and the fake
// service's end of each session).
async function measureRelay() {
  if (!RELAY_LOAD || !existsSync(RELAY_LOAD)) {
    results.notMeasured.push("relay load: the relay_load example was not built (scripts/bench.sh builds it)");
    return;
  }
  const run = (base, pid) => {
    const r = spawnSync(RELAY_LOAD, ["--base", base, "--sessions", String(S.relaySessions), "--seconds", String(S.relaySeconds), "--pid", String(pid)],
      { encoding: "utf8", timeout: (S.relaySeconds + 60) * 1000 });
    if (r.status !== 0) throw new Error(`relay_load exited ${r.status}: ${r.stderr}`);
    return JSON.parse(r.stdout.trim().split("\n").at(-1));
  };
  const speech = { replyAfterAudioFrames: 1, endTurn: false };
  await resetBroker();
  await fetch(broker.base + "/admin/speech", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(speech) });
  log(`relay: ${S.relaySessions} sessions × ${S.relaySeconds} s directly against the fake Speech service`);
  const direct = run(broker.base, broker.child.pid);
  let relayBroker;
  try {
    relayBroker = await startBroker(["--relay", "--relay-max-sessions", String(S.relaySessions * 2),
      "--relay-max-sessions-per-user", String(S.relaySessions * 2), "--max-connections", String(S.relaySessions * 4)]);
    await fetch(relayBroker.base + "/admin/speech", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(speech) });
    log(`relay: ${S.relaySessions} sessions × ${S.relaySeconds} s through --relay`);
    const relayed = run(relayBroker.base, relayBroker.child.pid);
    results.relay = { direct, relayed, addedP50Ms: relayed.p50Ms - direct.p50Ms, addedP99Ms: relayed.p99Ms - direct.p99Ms };
    log(`relay: held ${relayed.held}/${relayed.sessions}, p50 ${fmtMs(relayed.p50Ms)} (direct ${fmtMs(direct.p50Ms)}), p99 ${fmtMs(relayed.p99Ms)} (direct ${fmtMs(direct.p99Ms)}), ${relayed.perSessionKiB?.toFixed(1)} KiB/session`);
  } finally {
    await stopBroker(relayBroker);
    await resetBroker();
  }
}

// ---------------------------------------------------------------- 5. lifecycle

function readLifecycle() {
  const read = (f, what) => {
    if (!f || !existsSync(f)) { results.notMeasured.push(`lifecycle (${what}): no simulation output`); return undefined; }
    return JSON.parse(readFileSync(f, "utf8"));
  };
  results.lifecycle = { normal: read(SIM, "normal"), worst: read(SIM_WORST, "worst-case throttling") };
}

// ---------------------------------------------------------------- report

function ratioText(ours, peer) {
  return `${fmtX(ours / peer)}`;
}

function summaryRows() {
  const rows = [];
  const R = results;
  const row = (measure, ours, baseline, ratio, target, met) =>
    rows.push({ measure, ours, baseline, ratio, target, met: met === undefined ? "" : met ? "met" : "missed" });
  if (R.size) {
    const o = R.size.ours;
    for (const p of R.size.peers) {
      row(`size gzip -9 (wasm + JS glue) vs ${p.name}${p.minified ? "" : " (ESM, not minified)"}`,
        fmtBytes(o.totalGzip), fmtBytes(p.gzip), ratioText(o.totalGzip, p.gzip),
        p === R.size.peers[0] ? `≤ ${fmtBytes(TARGETS.sizeBytes)}` : "", p === R.size.peers[0] ? o.totalGzip <= TARGETS.sizeBytes : undefined);
    }
    row("size gzip -9, full build (issue 19's bar)", fmtBytes(o.totalGzip), "", "", `≤ ${fmtBytes(TARGETS.sizeIssueBytes)}`, o.totalGzip <= TARGETS.sizeIssueBytes);
    if (R.size.solo) {
      row("size gzip -9, build without cross-tab (`--no-default-features`)", fmtBytes(R.size.solo.totalGzip), fmtBytes(o.totalGzip) + " (full build)", ratioText(R.size.solo.totalGzip, o.totalGzip), "", undefined);
    }
  }
  if (R.hot) {
    const h = R.hot.nsPerOp;
    row("client.token (sync read) vs plain JS variable", fmtNs(h.token), fmtNs(h.variable), ratioText(h.token, h.variable),
      `≤ ${TARGETS.tokenReadRatio}× variable`, h.token <= TARGETS.tokenReadRatio * h.variable);
    row("client.token vs pure-JS getter, same expiry check", fmtNs(h.token), fmtNs(h.jsGetter), ratioText(h.token, h.jsGetter), "", undefined);
    row("client.token vs sample's cookie lookup", fmtNs(h.token), fmtNs(h.cookie), ratioText(h.token, h.cookie), "", undefined);
    row("await getToken() (warm) vs await Promise.resolve(x)", fmtNs(h.getToken), fmtNs(h.promiseResolve),
      `${ratioText(h.getToken, h.promiseResolve)} (+${fmtNs(h.getToken - h.promiseResolve)})`,
      "≤ 1 microtask + 1 µs", h.getToken - h.promiseResolve <= TARGETS.getTokenOverMicrotaskNs);
    row("await getToken() vs plain JS variable", fmtNs(h.getToken), fmtNs(h.variable), ratioText(h.getToken, h.variable), "", undefined);
    row("await getToken() vs sample's async cookie lookup", fmtNs(h.getToken), fmtNs(h.cookieAsync), ratioText(h.getToken, h.cookieAsync), "", undefined);
  }
  if (R.cold) {
    row("cold start: import → first token (median, fresh context)", fmtMs(R.cold.fresh.totalMs.median), "", "", "", undefined);
    row("wasm instantiate: init() (median, fresh context)", fmtMs(R.cold.fresh.initMs.median), "", "", "", undefined);
  }
  if (R.flight) {
    const s = R.flightSample;
    row(`single flight: broker requests for ${fmtInt(R.flight.callers)} concurrent getToken()`, String(R.flight.brokerTokenRequests),
      s ? `${fmtInt(s.brokerTokenRequests)} (sample's getTokenOrRefresh${s.failed ? `; ${fmtInt(s.failed)} callers failed` : ""})` : "", s ? `${R.flight.brokerTokenRequests} : ${fmtInt(s.brokerTokenRequests)}` : "",
      "1", R.flight.brokerTokenRequests === 1);
  }
  const L = R.lifecycle;
  for (const [label, sim] of [["", L?.normal], [" (worst-case throttling)", L?.worst]]) {
    if (!sim) continue;
    const e = sim.engine, f = sim.fixedInterval;
    row(`lifecycle${label}: broker requests per token lifetime`, e.requestsPerLifetime.toFixed(2), `${f.requestsPerLifetime.toFixed(2)} (fixed 9-min)`,
      ratioText(e.requestsPerLifetime, f.requestsPerLifetime), "1", e.requestsPerLifetime <= TARGETS.requestsPerLifetime + 1e-9);
    row(`lifecycle${label}: expired-token exposure per day`, `${fmtInt(e.exposureMs)} ms`, `${fmtInt(f.exposureMs)} ms (fixed 9-min)`,
      f.exposureMs ? ratioText(e.exposureMs, f.exposureMs) : "", "0 ms", e.exposureMs <= TARGETS.exposureMs);
    row(`lifecycle${label}: days with exposure`, `${e.daysWithExposure}/${sim.seeds}`, `${f.daysWithExposure}/${sim.seeds} (fixed 9-min)`, "", "0", e.daysWithExposure === 0);
  }
  if (R.memory) {
    row("wasm memory after 10 → 10 000 refresh cycles", `${(R.memory.after10 / 1024).toFixed(0)} KiB → ${(R.memory.after10000 / 1024).toFixed(0)} KiB`, "",
      `growth ${fmtInt(R.memory.growth)} B`, "", undefined);
  }
  if (R.wrk) {
    row(`broker: cached tokens, wrk ${S.wrkThreads} threads / ${S.wrkConnections} conns`, `${fmtInt(R.wrk.rps)} req/s`, "", "",
      `≥ ${fmtInt(TARGETS.brokerRps)} req/s`, R.wrk.rps >= TARGETS.brokerRps);
    row("broker: latency p50 / p99", `${fmtMs(R.wrk.p50Ms)} / ${fmtMs(R.wrk.p99Ms)}`, "", "", `p99 < ${TARGETS.brokerP99Ms} ms`, R.wrk.p99Ms < TARGETS.brokerP99Ms);
  }
  if (R.wrkEntra) {
    const e = R.wrkEntra;
    row(`broker --auth entra: cached tokens, user token validated per request`, `${fmtInt(e.rps)} req/s`, "", "",
      `≥ ${fmtInt(TARGETS.brokerRps / 4)} req/s`, e.rps >= TARGETS.brokerRps / 4 && e.non2xx === 0);
    row("broker --auth entra: latency p50 / p99", `${fmtMs(e.p50Ms)} / ${fmtMs(e.p99Ms)}`, "", "", `p99 < ${TARGETS.brokerP99Ms} ms`, e.p99Ms < TARGETS.brokerP99Ms);
    row("broker --auth entra: validation cost per request", `≈ ${e.validationCpuUs.toFixed(0)} µs CPU, ${fmtDeltaMs(e.addedP50Ms)} p50`, "", "", "", undefined);
  }
  if (R.relay) {
    const r = R.relay;
    row(`relay: concurrent sessions held (audio frames every 100 ms)`, `${fmtInt(r.relayed.held)} / ${fmtInt(r.relayed.sessions)}`, "", "",
      `${fmtInt(r.relayed.sessions)}`, r.relayed.held === r.relayed.sessions);
    row("relay: added latency per frame p50 / p99 (vs direct)", `${fmtDeltaMs(r.addedP50Ms)} / ${fmtDeltaMs(r.addedP99Ms)}`, "",
      `direct ${fmtMs(r.direct.p50Ms)} / ${fmtMs(r.direct.p99Ms)}`, "", undefined);
    row("relay: broker memory per session", r.relayed.perSessionKiB != null ? `${r.relayed.perSessionKiB.toFixed(1)} KiB` : "–", "", "", "", undefined);
  }
  if (R.concurrentClients) {
    row(`broker: upstream requests for ${fmtInt(R.concurrentClients.clients)} concurrent clients`, String(R.concurrentClients.upstreamRequests), "", "",
      "1", R.concurrentClients.upstreamRequests === 1);
  }
  if (R.tabs) {
    const t = R.tabs;
    row(`cross-tab: broker requests, ${t.tabs} tabs × ${t.runS} s of ${t.ttlS}-s tokens, shareAcrossTabs`, String(t.shared),
      `${t.alone} (each tab alone)`, ratioText(t.shared, t.alone), "", undefined);
  }
  return rows;
}

const COLS = [["measure", "measure"], ["ours", "ours"], ["baseline", "baseline / peer"], ["ratio", "ratio"], ["target", "target"], ["met", ""]];

function textTable(rows) {
  const widths = COLS.map(([k, h]) => Math.max(h.length, ...rows.map((r) => r[k].length)));
  const line = (cells) => cells.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd();
  return [line(COLS.map(([, h]) => h)), line(widths.map((w) => "-".repeat(w))), ...rows.map((r) => line(COLS.map(([k]) => r[k])))].join("\n");
}

function mdTable(header, rows) {
  const esc = (s) => String(s).replace(/\|/g, "\\|");
  return [`| ${header.join(" | ")} |`, `|${header.map(() => "---").join("|")}|`, ...rows.map((r) => `| ${r.map(esc).join(" | ")} |`)].join("\n");
}

function markdown(rows) {
  const R = results;
  const M = R.machine;
  const out = [];
  out.push("# Benchmarks", "");
  out.push("Generated by `make bench` (`scripts/bench.sh` → `bench/run.mjs`); every number below comes from one run on one machine.",
    "Ratios compare against peers measured **in the same run**, so they stay meaningful on a loaded machine; absolute numbers do not.",
    "Nothing here is asserted: targets are shown next to the numbers.", "");
  out.push(`**Machine:** ${M.nproc} CPUs (nproc), ${M.cpu}, ${M.memGiB} GiB RAM, ${M.os}; ${M.chromium}, headless; Node ${M.node}; ${M.date}; load average at start ${M.loadAtStart}${R.settings.quick ? " (quick mode)" : ""}.`, "");
  out.push("## Summary", "");
  out.push(mdTable(["measure", "ours", "baseline / peer", "ratio", "target", ""], rows.map((r) => COLS.map(([k]) => r[k]))), "");

  if (R.size) {
    const o = R.size.ours;
    out.push("## 1. Size", "");
    out.push("Bytes a browser downloads: our `pkg/` (wasm + the wasm-bindgen JS glue, minified by terser) against each peer's own minified browser bundle (the whole library: an app whose bundler tree-shakes ships somewhat less of a peer). `gzip -9` is the headline; brotli (quality 11) for reference.", "");
    const peerRows = R.size.peers.map((p) => [`${p.name} ${p.version}`, `\`${p.file}\`${p.minified ? "" : " (ESM, not minified: no minifier offline)"}`, fmtInt(p.raw), fmtInt(p.gzip), fmtInt(p.brotli), fmtX(o.totalGzip / p.gzip)]);
    out.push(mdTable(["package", "file", "raw B", "gzip -9 B", "brotli B", "ours ÷ peer (gzip)"], [
      ["speech-token-client (wasm)", "`speech_token_client_bg.wasm`", fmtInt(o.wasmRaw), fmtInt(o.wasmGzip), fmtInt(o.wasmBrotli), ""],
      ["speech-token-client (glue)", "`speech_token_client.js`", fmtInt(o.glueRaw), fmtInt(o.glueGzip), fmtInt(o.glueBrotli), ""],
      ["**speech-token-client total**", "", fmtInt(o.wasmRaw + o.glueRaw), `**${fmtInt(o.totalGzip)}**`, fmtInt(o.totalBrotli), ""],
      ...peerRows,
    ]), "");
    const auth0 = R.size.peers.find((p) => p.name === "@auth0/auth0-spa-js");
    if (auth0?.version === "2.27.0") out.push("`@auth0/auth0-spa-js` is pinned at 2.27.0: its newest release (2.28.3) depends on `@auth0/auth0-auth-js ^1.16.1`, which the npm registry reachable here does not serve.", "");
    out.push(`Target ≤ ${fmtBytes(TARGETS.sizeBytes)} gzip: ${o.totalGzip <= TARGETS.sizeBytes ? "met" : `missed, by ${fmtBytes(o.totalGzip - TARGETS.sizeBytes)}`}.`, "");
    if (R.size.solo) {
      const so = R.size.solo;
      out.push("**Without cross-tab** (`PKG_CARGO_ARGS=--no-default-features scripts/build-pkg.sh`: no `shareAcrossTabs` channel or lock; the option is accepted and the client fetches alone):", "");
      out.push(mdTable(["build", "wasm raw B", "wasm gzip -9 B", "glue gzip -9 B", "total gzip -9 B"], [
        ["full (default features)", fmtInt(o.wasmRaw), fmtInt(o.wasmGzip), fmtInt(o.glueGzip), fmtInt(o.totalGzip)],
        ["without cross-tab", fmtInt(so.wasmRaw), fmtInt(so.wasmGzip), fmtInt(so.glueGzip), fmtInt(so.totalGzip)],
      ]), "");
    }
    const steps = path.join(ROOT, "bench", "size-steps.md");
    if (existsSync(steps)) out.push(readFileSync(steps, "utf8").trim(), "");
    if (R.size.crates) {
      const c = R.size.crates;
      out.push("**Where the wasm bytes go** (`scripts/wasm-size.py --json` on a build of the same code with function names; sizes are code bytes per crate before compression):", "");
      const crateRows = Object.entries(c.crates).map(([k, v]) => [k, fmtInt(v), `${(100 * v / c.code).toFixed(1)} %`]);
      crateRows.push(["*data section*", fmtInt(c.sections?.data ?? 0), ""]);
      out.push(mdTable(["crate", "code B", "share of code"], crateRows), "");
      out.push(`Named build: ${fmtInt(c.total)} B in all, ${fmtInt(c.code)} B of code (the shipped wasm is the same code without the name section).`, "");
      const cs = R.size.solo?.crates;
      if (cs) {
        const names = [...new Set([...Object.keys(c.crates), ...Object.keys(cs.crates)])];
        out.push("Full build against the build without cross-tab, code bytes per crate:", "");
        out.push(mdTable(["crate", "full", "without cross-tab", "difference"], [
          ...names.map((k) => [k, fmtInt(c.crates[k] ?? 0), fmtInt(cs.crates[k] ?? 0), fmtInt((c.crates[k] ?? 0) - (cs.crates[k] ?? 0))]),
          ["*data section*", fmtInt(c.sections?.data ?? 0), fmtInt(cs.sections?.data ?? 0), fmtInt((c.sections?.data ?? 0) - (cs.sections?.data ?? 0))],
        ]), "");
      }
    }
  }

  if (R.hot) {
    const h = R.hot.nsPerOp, sp = R.hot.spread;
    out.push("## 2. Hot path (headless Chromium)", "");
    out.push(`Per-operation time in one page, all cases interleaved over ${R.settings.hotRounds} rounds of ≥ ${R.settings.hotBatchMs} ms batches; median ns/op (min–max over rounds). Every loop accumulates the length of what it read so the JIT cannot drop the read. Token: the broker's dev JWT, ${R.hot.tokenLength} characters.`, "");
    const desc = {
      variable: "plain JS property read (the floor)",
      jsGetter: "pure-JS getter with the same contract (Date.now + performance.now expiry check) — for reference",
      cookie: "Microsoft React sample's cookie lookup, sync (split `document.cookie` on `; `, find `speech-token`, decodeURIComponent, split `region:token`)",
      token: "**`client.token`** (sync)",
      promiseResolve: "`await Promise.resolve(x)` (one microtask)",
      cookieAsync: "the sample's `await getTokenOrRefresh()` with the cookie set (its console.log left out)",
      getToken: "**`await client.getToken()`**, warm cache",
    };
    out.push(mdTable(["case", "ns/op", "min–max", "÷ variable", "÷ cookie (sync)"], HOT_CASES.map((c) => [
      desc[c], fmtNs(h[c]), `${fmtNs(sp[c][0])} – ${fmtNs(sp[c][1])}`, fmtX(h[c] / h.variable), fmtX(h[c] / h.cookie),
    ])), "");
    out.push(`- \`client.token\`: ${fmtX(h.token / h.variable)} a plain variable read (target ≤ ${TARGETS.tokenReadRatio}×: ${h.token <= TARGETS.tokenReadRatio * h.variable ? "met" : "missed"}), ${fmtX(h.token / h.cookie)} the sample's cookie lookup. A read crosses into wasm and reads both clocks (never an expired token); the floor is a register-speed JIT load.`);
    out.push(`- \`await client.getToken()\` (warm): ${fmtNs(h.getToken)} vs ${fmtNs(h.promiseResolve)} for one microtask, i.e. ${fmtNs(h.getToken - h.promiseResolve)} above it (target ≤ 1 µs above: ${h.getToken - h.promiseResolve <= TARGETS.getTokenOverMicrotaskNs ? "met" : "missed"}); ${fmtX(h.getToken / h.cookieAsync)} the sample's async cookie lookup.`, "");
  }

  if (R.cold) {
    const f = R.cold.fresh, r = R.cold.repeat;
    out.push("## 3. Cold start", "");
    out.push(`A page whose module script does \`import()\` of the glue, \`await init()\`, \`new TokenClient\`, \`await getToken()\` against the local broker. Fresh: a new browser context per run (empty HTTP cache), ${R.cold.runs} runs. Repeat: reloads in one context (revalidated cache).`, "");
    const cell = (x) => `${fmtMs(x.median)} (${fmtMs(x.min)} – ${fmtMs(x.max)})`;
    out.push(mdTable(["phase", "fresh: median (min – max)", "repeat visit: median (min – max)"], [
      ["`import()` of the JS glue", cell(f.importMs), cell(r.importMs)],
      ["`init()`: wasm fetch + compile + instantiate", cell(f.initMs), cell(r.initMs)],
      ["`new TokenClient` → first token (one broker round trip)", cell(f.firstTokenMs), cell(r.firstTokenMs)],
      ["**import start → first token**", cell(f.totalMs), cell(r.totalMs)],
      ["navigation start → first token", cell(f.sinceNavigationMs), cell(r.sinceNavigationMs)],
    ]), "");
    if (R.cold.memoryBytes) out.push(`Wasm memory at first token: ${fmtBytes(R.cold.memoryBytes)}.`, "");
  }

  if (R.flight) {
    const fl = R.flight, s = R.flightSample;
    out.push("## 4. Single flight", "");
    out.push(`${fmtInt(fl.callers)} concurrent \`getToken()\` on a brand-new client (cold cache) against the real broker: **${fl.brokerTokenRequests} broker request(s)** (\`/admin/stats\` tokenRequests; target 1), ${fl.distinctTokens} distinct token(s) handed out, all callers served in ${fmtMs(fl.ms)}.`);
    if (s) out.push(`Peer: the Microsoft sample's \`getTokenOrRefresh()\` from ${fmtInt(s.callers)} concurrent callers with no cookie yet: **${fmtInt(s.brokerTokenRequests)} broker requests** (it has no single flight; every caller misses the cookie), ${fmtInt(s.served)} callers served with ${fmtInt(s.distinctTokens)} distinct token(s), ${fmtInt(s.failed)} failed${s.failed ? ` (${s.failReasons.join("; ")}: Chromium refuses requests beyond its in-flight limit)` : ""}, ${fmtMs(s.ms)}.`);
    out.push("");
  }

  const L = R.lifecycle;
  if (L?.normal || L?.worst) {
    out.push("## 5. Lifecycle (engine simulation)", "");
    out.push("`cargo run --release --example simulate -- --hours 24 --seeds 20 --json` (and `--worst-case-throttling`, where every timer in a hidden page waits a whole minute): the refresh engine against Microsoft's fixed 9-minute interval with no retry, over simulated days with 10-minute tokens, broker latency, failures, outages, sleeps and hidden periods (see DESIGN.md). Means over the seeds.", "");
    const rowsL = [];
    for (const [label, sim] of [["normal", L.normal], ["worst-case throttling", L.worst]]) {
      if (!sim) continue;
      for (const [who, x] of [["engine", sim.engine], ["fixed 9-min interval", sim.fixedInterval]]) {
        rowsL.push([label, who, x.requests.toFixed(1), x.requestsPerLifetime.toFixed(3), fmtInt(x.exposureMs), fmtInt(x.catchUpMs), `${x.daysWithExposure}/${sim.seeds}`, fmtInt(x.expiredHandedOut), fmtInt(x.worstLatenessMs)]);
      }
    }
    out.push(mdTable(["scenario", "policy", "requests/day", "requests per lifetime", "exposure ms/day", "post-wake catch-up ms/day", "days with exposure", "expired tokens handed out", "worst lateness ms"], rowsL), "");
    out.push("*Requests per lifetime* is requests per day ÷ token lifetimes per day (144 for 10-minute tokens). A client that refreshes *before* expiry cannot reach 1: refreshing at 80 % of the lifetime (the default 20 % margin) costs 1.25 by construction, the margin widened to half the lifetime while the page is hidden costs 2 during those periods, and retries after failures and catch-up after sleeps add the rest. The fixed interval lands near 1 only because its timer is frozen during sleeps and it never retries — and it hands out expired tokens every simulated day.", "");
  }

  if (R.memory) {
    const m = R.memory;
    out.push("## 6. Memory", "");
    out.push(`\`await client.refreshNow()\` in a loop against an in-page fake \`fetch\` that answers at once with a fresh JSON token (no network; ${fmtInt(m.fetches)} fetches, ${(m.cycleMs * 1000).toFixed(0)} µs per cycle). Wasm linear memory (\`out.memory.buffer.byteLength\`; it grows in 64 KiB pages and never shrinks, so this is the high-water mark):`, "");
    out.push(mdTable(["after", "wasm memory"], [
      ["init()", fmtBytes(m.afterInit)], ["first token", fmtBytes(m.afterFirstToken)],
      ...m.points.map((p) => [`${fmtInt(p.cycles)} refresh cycles`, fmtBytes(p.bytes)]),
    ]), "");
    out.push(`Growth from 10 to 10 000 cycles: **${fmtInt(m.growth)} B**.`, "");
  }

  if (R.wrk || R.wrkEntra || R.relay || R.concurrentClients) {
    out.push("## 7. Broker", "");
    if (R.wrk) {
      const w = R.wrk;
      out.push(`Release broker, dev mode, \`--rate-limit 0\`, logs at warn; \`wrk -t${R.settings.wrkThreads} -c${R.settings.wrkConnections} -d${R.settings.wrkSeconds}s --latency\` on \`GET /api/speech-token\` over loopback (cached token; wrk and the broker share the ${M.nproc} CPUs).`, "");
      out.push(mdTable(["requests/s", "p50", "p75", "p90", "p99", "requests", "non-2xx", "upstream requests during the run"], [[
        fmtInt(w.rps), fmtMs(w.p50Ms), fmtMs(w.p75Ms), fmtMs(w.p90Ms), fmtMs(w.p99Ms), fmtInt(w.requests), String(w.non2xx), String(w.upstreamRequests),
      ]]), "");
      out.push(`Targets: ≥ ${fmtInt(TARGETS.brokerRps)} req/s (${w.rps >= TARGETS.brokerRps ? "met" : "missed"}), p99 < ${TARGETS.brokerP99Ms} ms (${w.p99Ms < TARGETS.brokerP99Ms ? "met" : "missed"}).`, "");
    }
    if (R.wrkEntra) {
      const e = R.wrkEntra;
      out.push(`The same load with \`--auth entra\`: every request carries a user's Entra access token (RS256, 2048-bit key, from a fake Entra ID on loopback; ${e.keyFetches} key download(s) in the run) that the broker validates before answering (signature, \`iss\`, \`aud\`, \`exp\`/\`nbf\`, tenant, scope). The CPU cost per validation is estimated as (1/throughput with − 1/throughput without) × ${M.nproc} CPUs, an upper bound since wrk shares the CPUs.`, "");
      out.push(mdTable(["requests/s", "p50", "p75", "p90", "p99", "requests", "non-2xx", "validation CPU per request", "added p50"], [[
        fmtInt(e.rps), fmtMs(e.p50Ms), fmtMs(e.p75Ms), fmtMs(e.p90Ms), fmtMs(e.p99Ms), fmtInt(e.requests), String(e.non2xx), `${e.validationCpuUs.toFixed(0)} µs`, fmtMs(e.addedP50Ms),
      ]]), "");
    }
    if (R.relay) {
      const r = R.relay;
      out.push(`Relay (\`--relay\`): ${fmtInt(r.relayed.sessions)} concurrent WebSocket sessions (\`broker/examples/relay_load.rs\`), each sending a 3200-byte audio frame (100 ms of 16 kHz audio) every 100 ms for ${R.settings.relaySeconds} s, each frame a new turn the fake Speech service answers at once; round trip = frame sent → first answer received. Run directly against the fake service and through a \`--relay\` broker in the same run, on the same ${M.nproc} CPUs as the load generator. Memory = the relay broker's resident set with all sessions open minus before, per session (it hosts the relay and the fake service's end of every session).`, "");
      out.push(mdTable(["path", "sessions held", "frames", "p50", "p99", "RSS before → during", "per session"], [
        ["direct", `${r.direct.held} / ${r.direct.sessions}`, fmtInt(r.direct.frames), fmtMs(r.direct.p50Ms), fmtMs(r.direct.p99Ms), `${r.direct.rssBeforeKiB} → ${r.direct.rssDuringKiB} KiB`, r.direct.perSessionKiB != null ? `${r.direct.perSessionKiB.toFixed(1)} KiB` : "–"],
        ["relay", `${r.relayed.held} / ${r.relayed.sessions}`, fmtInt(r.relayed.frames), fmtMs(r.relayed.p50Ms), fmtMs(r.relayed.p99Ms), `${r.relayed.rssBeforeKiB} → ${r.relayed.rssDuringKiB} KiB`, r.relayed.perSessionKiB != null ? `${r.relayed.perSessionKiB.toFixed(1)} KiB` : "–"],
      ]), "");
    }
    if (R.concurrentClients) {
      const c = R.concurrentClients;
      out.push(`${fmtInt(c.clients)} concurrent clients (Node \`fetch\`) on a cold broker cache: **${c.upstreamRequests} upstream request(s)** (target 1), ${c.ok} answered 200, ${c.distinctTokens} distinct token(s), ${fmtMs(c.ms)}.`, "");
    }
  }

  out.push("## Not measured", "");
  const nm = [...R.notMeasured,
    "Peer clients' hot paths and refresh behaviour: auth0-spa-js, msal-browser and oidc-client-ts are OAuth/OIDC clients that need an identity provider's endpoints; the peer for behaviour is Microsoft's Speech sample (cookie + fixed interval), measured above.",
    "JS heap growth across refresh cycles (Chromium exposes only coarse `performance.memory`); the wasm memory above is where the token bytes live.",
  ];
  out.push(...nm.map((x) => `- ${x}`), "");
  out.push("## How to run", "", "```sh", "make bench              # builds pkg/ and the broker, then runs scripts/bench.sh", "bash scripts/bench.sh   # after scripts/build-pkg.sh; BENCH_QUICK=1 for a shorter run", "```", "");
  return out.join("\n");
}

// ---------------------------------------------------------------- 8. cross-tab

/**
 * Five tabs of one browser context over three token lifetimes (6 s tokens), with and without
 * `shareAcrossTabs`: broker token requests counted by the broker. Uses the end-to-end tabs page
 * (tests/e2e/pages/tabs.html), served by a broker of its own.
 */
async function measureTabs() {
  const TABS = 5, TTL = 6, RUN_MS = 3 * TTL * 1000;
  const args = ["--mode", "dev", "--listen", "127.0.0.1:0", "--rate-limit", "0", "--ttl", String(TTL),
    "--www", path.join(ROOT, "tests/e2e/pages"), "--pkg", PKG];
  const child = spawn(BROKER_BIN, args, { cwd: ROOT, stdio: ["ignore", "pipe", "ignore"], env: { ...process.env, RUST_LOG: "warn" } });
  const base = await withTimeout(new Promise((resolve) => readline.createInterface({ input: child.stdout })
    .once("line", (l) => resolve(l.replace("listening on ", "")))), 20_000, "tabs broker start");
  const call = async (p, body) => (await fetch(base + p, body === undefined ? {} : {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) })).json();
  const b = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 60_000 });
  try {
    const counts = {};
    for (const share of [true, false]) {
      const context = await b.newContext();
      await call("/admin/reset", {});
      const pages = [];
      for (let i = 0; i < TABS; i++) {
        const page = await context.newPage();
        await page.goto(`${base}/tabs.html?share=${share ? 1 : 0}`);
        await page.waitForFunction(() => window.tabs !== undefined, null, { timeout: 20_000 });
        await page.evaluate(() => window.tabs.start());
        pages.push(page);
      }
      await call("/admin/reset", {});
      await new Promise((r) => setTimeout(r, RUN_MS));
      counts[share ? "shared" : "alone"] = (await call("/admin/stats")).tokenRequests;
      await context.close();
    }
    results.tabs = { tabs: TABS, ttlS: TTL, runS: RUN_MS / 1000, ...counts };
  } finally {
    await b.close();
    child.kill("SIGTERM");
  }
}

// ---------------------------------------------------------------- main

async function main() {
  results.machine = machine();
  results.settings.quick = QUICK;
  log(`machine: ${results.machine.nproc} CPUs, ${results.machine.cpu}, load ${results.machine.loadAtStart}`);
  await step("size", measureSize);
  readLifecycle();

  broker = await startBroker();
  log(`broker at ${broker.base}`);
  try {
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 60_000 });
    results.machine.chromium = `Chromium ${browser.version()}`;
    log(`${results.machine.chromium}`);
    await step("hot path + single flight", measureHotAndFlight);
    await step("memory", measureMemory);
    await step("cold start", measureCold);
    await browser.close();
    browser = undefined;
    await step("broker", measureBroker);
    await step("broker --auth entra", measureBrokerAuth);
    await step("relay", measureRelay);
    await step("cross-tab", measureTabs);
  } finally {
    if (browser) await browser.close().catch(() => {});
    await stopBroker();
  }
  if (!results.machine.chromium) {
    const v = spawnSync(CHROMIUM, ["--version"], { encoding: "utf8" });
    results.machine.chromium = (v.stdout || "Chromium (version unknown)").trim();
  }

  const rows = summaryRows();
  writeFileSync(OUT, markdown(rows));
  if (JSON_OUT) writeFileSync(JSON_OUT, JSON.stringify(results, null, 2));
  const M = results.machine;
  process.stdout.write(`\nspeech-token-client benchmarks — ${M.nproc} CPUs (${M.cpu}), ${M.chromium}, ${M.date}\n\n`);
  process.stdout.write(textTable(rows) + "\n\n");
  if (results.notMeasured.length) process.stdout.write("not measured:\n" + results.notMeasured.map((x) => `  - ${x}\n`).join("") + "\n");
  process.stdout.write(`wrote ${path.relative(ROOT, OUT)}${JSON_OUT ? ` and ${path.relative(ROOT, path.resolve(JSON_OUT))}` : ""}\n`);
  if (failures.length) {
    process.stderr.write(`bench: ${failures.length} step(s) failed: ${failures.join(", ")}\n`);
    process.exitCode = 1;
  }
}

for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, async () => {
    log(`${sig}: stopping`);
    try { if (browser) await browser.close(); } catch {}
    await stopBroker().catch(() => {});
    process.exit(130);
  });
}

main().catch(async (e) => {
  process.stderr.write(`bench: ${e?.stack ?? e}\n`);
  try { if (browser) await browser.close(); } catch {}
  await stopBroker().catch(() => {});
  process.exit(1);
});
