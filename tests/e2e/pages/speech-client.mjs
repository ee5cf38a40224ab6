// Drives the wasm client (served at /pkg/) together with the real Microsoft Speech SDK (browser
// bundle at /vendor/, global `SpeechSDK`) against the broker's fake Speech service. Used by
// tests/e2e/speech-sdk.test.mjs through `window.sc`. This page never logs a token: the tokens it
// records (window.sc.tokens) exist only so that the test can search the console for them.

import init, { TokenClient } from "/pkg/speech_token_client.js";

const violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  violations.push({ directive: e.violatedDirective, blocked: String(e.blockedURI).slice(0, 80) });
});

/** Every token this page has seen (from client.token on "token" events, credential answers…). */
const tokens = new Set();

const RATE = 16000;

/** `ms` of a 440 Hz tone as 16 kHz, 16-bit, mono little-endian PCM. */
function pcmChunk(ms, phase) {
  const samples = Math.round((RATE * ms) / 1000);
  const buf = new ArrayBuffer(samples * 2);
  const v = new DataView(buf);
  for (let i = 0; i < samples; i++) {
    v.setInt16(i * 2, Math.round(Math.sin((2 * Math.PI * 440 * (phase + i)) / RATE) * 0.3 * 32767), true);
  }
  return { buf, next: phase + samples };
}

/** A 16 kHz, 16-bit, mono PCM WAV of `seconds` of tone. */
export function makeWav(seconds = 2) {
  const { buf: pcm } = pcmChunk(seconds * 1000, 0);
  const out = new ArrayBuffer(44 + pcm.byteLength);
  const v = new DataView(out);
  const str = (off, s) => { for (let i = 0; i < s.length; i++) v.setUint8(off + i, s.charCodeAt(i)); };
  str(0, "RIFF"); v.setUint32(4, 36 + pcm.byteLength, true); str(8, "WAVE");
  str(12, "fmt "); v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true);
  v.setUint32(24, RATE, true); v.setUint32(28, RATE * 2, true); v.setUint16(32, 2, true); v.setUint16(34, 16, true);
  str(36, "data"); v.setUint32(40, pcm.byteLength, true);
  new Uint8Array(out, 44).set(new Uint8Array(pcm));
  return out;
}

/**
 * An audio source that keeps sending across reconnects.
 *  - "push": an AudioInputStream push stream fed 100 ms of tone every 100 ms (real time);
 *  - "mic":  the default microphone (Chromium's fake device, fed from a looping WAV file);
 *  - "wav":  AudioConfig.fromWavFileInput (sends ~5 s, then only headers after reconnects).
 */
function audioSource(sdk, kind, seconds) {
  if (kind === "mic") return { audio: sdk.AudioConfig.fromDefaultMicrophoneInput(), stop() {} };
  if (kind === "wav") return { audio: sdk.AudioConfig.fromWavFileInput(new File([makeWav(seconds)], "a.wav")), stop() {} };
  const stream = sdk.AudioInputStream.createPushStream(sdk.AudioStreamFormat.getWaveFormatPCM(RATE, 16, 1));
  let phase = 0;
  const feed = () => { const c = pcmChunk(100, phase); phase = c.next; stream.write(c.buf); };
  feed();
  const timer = setInterval(feed, 100);
  return {
    audio: sdk.AudioConfig.fromStreamInput(stream),
    stop() { clearInterval(timer); try { stream.close(); } catch { /* closed */ } },
  };
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Continuous recognition for `runMs`.
 *  mode "attach":     client.speechConfig(SpeechSDK) + recognizer + client.attach(recognizer)
 *  mode "credential": SpeechConfig.fromEndpoint(new URL(endpoint), client.tokenCredential())
 *  mode "static":     one token fetched once (no client), set once on the config
 * Returns the phrases and cancellations with their times (ms since start) and the client's numbers.
 */
export async function run({ mode = "attach", runMs = 22000, audio = "push", seconds = 30 } = {}) {
  const sdk = window.SpeechSDK;
  const t0 = performance.now();
  const at = () => Math.round(performance.now() - t0);
  const phrases = [];
  const canceled = [];
  const sessions = [];
  const events = { token: 0, refreshing: 0, error: 0, expired: 0, detach: 0 };
  const errorKinds = [];
  const lifetimes = []; // seconds of life each "token" event announced (expiresAt - now)
  let credentialCalls = 0;
  let client = null;
  let config;
  let recognizer;

  if (mode === "static") {
    const r = await fetch("/api/speech-token", { cache: "no-store" });
    const grant = await r.json();
    tokens.add(grant.token);
    config = sdk.SpeechConfig.fromEndpoint(new URL(grant.endpoint));
    config.authorizationToken = grant.token;
  } else {
    client = new TokenClient({ brokerUrl: "/api/speech-token" });
    client.on("token", (d) => {
      events.token++;
      lifetimes.push(Math.round((d.expiresAt - Date.now()) / 100) / 10);
      const t = client.token;
      if (t) tokens.add(t);
    });
    client.on("refreshing", () => { events.refreshing++; });
    client.on("error", (d) => { events.error++; errorKinds.push(d.error.kind); });
    client.on("expired", () => { events.expired++; });
    client.on("detach", () => { events.detach++; });
    if (mode === "attach") {
      config = await client.speechConfig(sdk);
    } else {
      await client.getToken();
      const inner = client.tokenCredential();
      const credential = {
        async getToken(scopes, options) {
          credentialCalls++;
          const answer = await inner.getToken(scopes, options);
          if (answer?.token) tokens.add(answer.token);
          return answer;
        },
      };
      config = sdk.SpeechConfig.fromEndpoint(new URL(client.endpoint), credential);
    }
  }
  config.speechRecognitionLanguage = "en-US";
  const source = audioSource(sdk, audio, seconds);
  recognizer = new sdk.SpeechRecognizer(config, source.audio);
  if (mode === "attach") client.attach(recognizer);
  const attachedCount = client ? client.attachedCount : 0;

  recognizer.recognized = (_s, e) => {
    if (e.result.reason === sdk.ResultReason.RecognizedSpeech) phrases.push({ at: at(), text: e.result.text });
  };
  recognizer.canceled = (_s, e) => {
    // errorDetails carry the WebSocket URL, which carries the token: keep only the status code
    canceled.push({
      at: at(),
      reason: sdk.CancellationReason[e.reason],
      code: sdk.CancellationErrorCode[e.errorCode],
      statusCode: /StatusCode: (\d+)/.exec(e.errorDetails ?? "")?.[1] ?? null,
    });
  };
  recognizer.sessionStarted = () => sessions.push({ at: at(), type: "start" });
  recognizer.sessionStopped = () => sessions.push({ at: at(), type: "stop" });

  try {
    await new Promise((res, rej) => recognizer.startContinuousRecognitionAsync(res, (e) => rej(new Error(String(e).slice(0, 200)))));
    await sleep(runMs);
    await Promise.race([
      new Promise((res) => recognizer.stopContinuousRecognitionAsync(res, res)),
      sleep(5000),
    ]);
  } finally {
    source.stop();
    try { recognizer.close(); } catch { /* closed */ }
  }
  const out = {
    mode, runMs, phrases, canceled, sessions, events, errorKinds, lifetimes, credentialCalls, attachedCount,
    requestCount: client?.requestCount ?? 0,
    status: client?.status ?? null,
  };
  client?.dispose();
  return out;
}

await init();
window.sc = {
  run, sleep, makeWav, violations,
  tokens: () => [...tokens],
  sdkLoaded: typeof window.SpeechSDK === "object",
};
document.getElementById("status").textContent = window.sc.sdkLoaded ? "ready" : "SpeechSDK missing";
