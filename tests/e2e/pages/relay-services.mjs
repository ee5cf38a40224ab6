// Recognition, translation, synthesis and upstream failures with the real Speech SDK through the broker's
// relay (--relay). Used by tests/e2e/relay.test.mjs through `window.rs`. Each run returns plain
// data; SDK error details carry the WebSocket URL (and so the ticket): only the status code and
// the "websocket error code" are kept.

import init, { TokenClient } from "/pkg/speech_token_client.js";
import { makeWav, sleep } from "/speech-client.mjs";

/** Every credential this page held (tickets from the client or fetched raw). */
const tokens = new Set();

/** No SDK outcome within this long is a hang (the test fails on "timeout"). */
const HANG_MS = 45_000;

function details(text) {
  const s = String(text ?? "");
  return {
    statusCode: /StatusCode: (\d+)/.exec(s)?.[1] ?? null,
    wsCode: /websocket error code: (\d+)/.exec(s)?.[1] ?? null,
    text: s.replace(/wss?:\/\/\S+/g, "<url>").slice(0, 300),
  };
}

/**
 * A real-time PCM push stream (16 kHz, 16-bit, mono): 100 ms of a 440 Hz tone every 100 ms, so
 * the SDK keeps sending audio across reconnects.
 */
function livePushStream(sdk) {
  const stream = sdk.AudioInputStream.createPushStream(sdk.AudioStreamFormat.getWaveFormatPCM(16000, 16, 1));
  let phase = 0;
  const feed = () => {
    const buf = new ArrayBuffer(3200);
    const v = new DataView(buf);
    for (let i = 0; i < 1600; i++, phase++) v.setInt16(i * 2, Math.round(Math.sin((2 * Math.PI * 440 * phase) / 16000) * 0.3 * 32767), true);
    stream.write(buf);
  };
  feed();
  const timer = setInterval(feed, 100);
  return {
    audio: sdk.AudioConfig.fromStreamInput(stream),
    stop() { clearInterval(timer); try { stream.close(); } catch { /* closed */ } },
  };
}

/** A raw grant from the token route (no client), for the negative controls. */
async function rawGrant() {
  const r = await fetch("/api/speech-token", { cache: "no-store" });
  const g = await r.json();
  tokens.add(g.token);
  return g;
}

function tamper(ticket) {
  const i = ticket.length - 3;
  return ticket.slice(0, i) + (ticket[i] === "A" ? "B" : "A") + ticket.slice(i + 1);
}

/**
 * A configured SDK config of `kind` ("SpeechConfig" | "SpeechTranslationConfig"):
 *   credential "client":   the module's speechConfig()/speechTranslationConfig() (+ { endpoint })
 *   credential "tampered": a fetched ticket with one character changed, set once
 *   credential "expired":  a fetched ticket used after `waitMs`
 */
async function configFor(sdk, kind, { credential = "client", path, waitMs = 0, plain = false }) {
  if (credential === "client") {
    const client = new TokenClient({ brokerUrl: "/api/speech-token" });
    client.on("token", () => { if (client.token) tokens.add(client.token); });
    let options;
    if (path || plain) {
      await client.getToken();
      // plain: a key/entra-mode broker names wss:// (it expects a TLS proxy); here it is plain
      const endpoint = new URL(path ?? client.endpoint, client.endpoint).href;
      options = { endpoint: plain ? endpoint.replace(/^wss:/, "ws:") : endpoint };
    }
    const config = kind === "SpeechConfig"
      ? await client.speechConfig(sdk, options)
      : await client.speechTranslationConfig(sdk, options);
    return { config, client, endpoint: options?.endpoint ?? client.endpoint };
  }
  const grant = await rawGrant();
  const endpoint = path ? new URL(path, grant.endpoint).href : grant.endpoint;
  if (waitMs) await sleep(waitMs);
  const config = sdk[kind].fromEndpoint(new URL(endpoint));
  config.authorizationToken = credential === "tampered" ? tamper(grant.token) : grant.token;
  return { config, client: null, endpoint };
}

/** SpeechRecognizer.recognizeOnceAsync through the relay: the module's speechConfig() as is. */
export async function recognizeOnce() {
  const sdk = window.SpeechSDK;
  const { config, client, endpoint } = await configFor(sdk, "SpeechConfig", {});
  config.speechRecognitionLanguage = "en-US";
  const recognizer = new sdk.SpeechRecognizer(config, sdk.AudioConfig.fromWavFileInput(new File([makeWav(2)], "a.wav")));
  client.attach(recognizer);
  try {
    const r = await Promise.race([
      new Promise((res, rej) => recognizer.recognizeOnceAsync(res, (e) => rej(new Error(String(e).slice(0, 200))))),
      sleep(HANG_MS).then(() => "timeout"),
    ]);
    if (r === "timeout") return { outcome: "timeout" };
    return { outcome: sdk.ResultReason[r.reason], text: r.text ?? null, endpointPath: new URL(endpoint).pathname };
  } finally {
    try { recognizer.close(); } catch { /* closed */ }
    client.dispose();
  }
}

/** TranslationRecognizer.recognizeOnceAsync through the relay; `to`: target languages. */
export async function translate({ credential = "client", path, waitMs, to = ["de", "fr"] } = {}) {
  const sdk = window.SpeechSDK;
  const { config, client, endpoint } = await configFor(sdk, "SpeechTranslationConfig", { credential, path, waitMs });
  config.speechRecognitionLanguage = "en-US";
  for (const l of to) config.addTargetLanguage(l);
  const recognizer = new sdk.TranslationRecognizer(config, sdk.AudioConfig.fromWavFileInput(new File([makeWav(2)], "a.wav")));
  client?.attach(recognizer);
  const canceled = [];
  recognizer.canceled = (_s, e) => canceled.push({ reason: sdk.CancellationReason[e.reason], code: sdk.CancellationErrorCode[e.errorCode], ...details(e.errorDetails) });
  try {
    const r = await Promise.race([
      new Promise((res, rej) => recognizer.recognizeOnceAsync(res, (e) => rej(new Error(String(e).slice(0, 200))))),
      sleep(HANG_MS).then(() => "timeout"),
    ]);
    if (r === "timeout") return { outcome: "timeout", canceled };
    const translations = {};
    for (const l of to) translations[l] = r.translations?.get(l) ?? null;
    const cancel = r.reason === sdk.ResultReason.Canceled ? sdk.CancellationDetails.fromResult(r) : null;
    return {
      outcome: sdk.ResultReason[r.reason], text: r.text ?? null, translations, canceled,
      cancel: cancel && { reason: sdk.CancellationReason[cancel.reason], code: sdk.CancellationErrorCode[cancel.ErrorCode], ...details(cancel.errorDetails) },
      endpointPath: new URL(endpoint).pathname,
    };
  } finally {
    try { recognizer.close(); } catch { /* closed */ }
    client?.dispose();
  }
}

/** SpeechSynthesizer.speakTextAsync (no audio output: the bytes come back in the result). */
export async function synthesize({ credential = "client", path = "/relay/tts/cognitiveservices/websocket/v1", waitMs, plain, text = "Hello world.", times = 1, gapMs = 0 } = {}) {
  const sdk = window.SpeechSDK;
  const { config, client, endpoint } = await configFor(sdk, "SpeechConfig", { credential, path, waitMs, plain });
  const synthesizer = new sdk.SpeechSynthesizer(config, null);
  client?.attach(synthesizer);
  let synthesizing = 0;
  synthesizer.synthesizing = () => { synthesizing++; };
  const speak = async () => {
    const r = await Promise.race([
      new Promise((res, rej) => synthesizer.speakTextAsync(text, res, (e) => rej(new Error(String(e).slice(0, 200))))),
      sleep(HANG_MS).then(() => "timeout"),
    ]);
    if (r === "timeout") return { outcome: "timeout" };
    const cancel = r.reason === sdk.ResultReason.Canceled ? sdk.CancellationDetails.fromResult(r) : null;
    return {
      outcome: sdk.ResultReason[r.reason],
      bytes: r.audioData?.byteLength ?? 0,
      cancel: cancel && { reason: sdk.CancellationReason[cancel.reason], code: sdk.CancellationErrorCode[cancel.ErrorCode], ...details(cancel.errorDetails) },
    };
  };
  try {
    // times > 1: speak again after gapMs (tickets expire and the service closes the connection
    // meanwhile: the SDK reconnects with the ticket attach() keeps fresh)
    const runs = [];
    for (let i = 0; i < times; i++) {
      if (i > 0) await sleep(gapMs);
      runs.push(await speak());
    }
    return { ...runs[0], runs, synthesizing, endpointPath: new URL(endpoint).pathname };
  } finally {
    try { synthesizer.close(); } catch { /* closed */ }
    client?.dispose();
  }
}

/**
 * Continuous recognition through the relay until the SDK cancels (or `runMs` passes: then
 * "no-cancel"), for upstream failures: the fake closing with an error code, or refusing.
 */
export async function recognizeUntilCanceled({ runMs = 40_000, plain } = {}) {
  const sdk = window.SpeechSDK;
  const { config, client } = await configFor(sdk, "SpeechConfig", { plain });
  config.speechRecognitionLanguage = "en-US";
  const source = livePushStream(sdk);
  const recognizer = new sdk.SpeechRecognizer(config, source.audio);
  client.attach(recognizer);
  const t0 = performance.now();
  let phrases = 0;
  recognizer.recognized = () => { phrases++; };
  const canceled = new Promise((res) => {
    recognizer.canceled = (_s, e) => res({ reason: sdk.CancellationReason[e.reason], code: sdk.CancellationErrorCode[e.errorCode], ...details(e.errorDetails), at: Math.round(performance.now() - t0) });
  });
  try {
    recognizer.startContinuousRecognitionAsync(() => {}, () => {});
    const c = await Promise.race([canceled, sleep(runMs).then(() => "no-cancel")]);
    return { outcome: c === "no-cancel" ? c : "canceled", cancel: c === "no-cancel" ? null : c, phrases };
  } finally {
    source.stop();
    await Promise.race([new Promise((res) => recognizer.stopContinuousRecognitionAsync(res, res)), sleep(3000)]);
    try { recognizer.close(); } catch { /* closed */ }
    client.dispose();
  }
}

/**
 * Continuous translation for `runMs` with client.speechTranslationConfig(SpeechSDK) + attach(),
 * from a real-time push stream (so the SDK keeps sending audio across reconnects).
 */
export async function translateContinuously({ runMs = 16_000, to = ["de"] } = {}) {
  const sdk = window.SpeechSDK;
  const { config, client } = await configFor(sdk, "SpeechTranslationConfig", {});
  let ticketEvents = 0;
  client.on("token", () => { ticketEvents++; });
  config.speechRecognitionLanguage = "en-US";
  for (const l of to) config.addTargetLanguage(l);
  const source = livePushStream(sdk);
  const recognizer = new sdk.TranslationRecognizer(config, source.audio);
  client.attach(recognizer);
  const t0 = performance.now();
  const phrases = [];
  const canceled = [];
  recognizer.recognized = (_s, e) => {
    if (e.result.reason === sdk.ResultReason.TranslatedSpeech) {
      phrases.push({ at: Math.round(performance.now() - t0), de: e.result.translations.get("de") });
    }
  };
  recognizer.canceled = (_s, e) => canceled.push({ reason: sdk.CancellationReason[e.reason], code: sdk.CancellationErrorCode[e.errorCode], ...details(e.errorDetails) });
  try {
    await new Promise((res, rej) => recognizer.startContinuousRecognitionAsync(res, (e) => rej(new Error(String(e).slice(0, 200)))));
    await sleep(runMs);
    await Promise.race([new Promise((res) => recognizer.stopContinuousRecognitionAsync(res, res)), sleep(5000)]);
  } finally {
    source.stop();
    try { recognizer.close(); } catch { /* closed */ }
    client.dispose();
  }
  return { phrases, canceled, ticketEvents };
}

await init();
window.rs = { recognizeOnce, translate, translateContinuously, synthesize, recognizeUntilCanceled, tokens: () => [...tokens] };
document.getElementById("status").textContent = typeof window.SpeechSDK === "object" ? "ready" : "SpeechSDK missing";
