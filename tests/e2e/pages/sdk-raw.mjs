// Drives the real Microsoft Speech SDK (browser bundle, global `SpeechSDK`) against the broker's
// fake Speech service, without the wasm client. Used by tests/e2e/fake-speech.test.mjs through
// `window.sdkRaw`. Never logs tokens.

const violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  violations.push({ directive: e.violatedDirective, blocked: String(e.blockedURI).slice(0, 80) });
});

/** A 16 kHz, 16-bit, mono PCM WAV: `seconds` of a sine tone. */
export function makeWav(seconds = 2, rate = 16000, freq = 440) {
  const samples = Math.round(seconds * rate);
  const buf = new ArrayBuffer(44 + samples * 2);
  const v = new DataView(buf);
  const str = (off, s) => { for (let i = 0; i < s.length; i++) v.setUint8(off + i, s.charCodeAt(i)); };
  str(0, "RIFF"); v.setUint32(4, 36 + samples * 2, true); str(8, "WAVE");
  str(12, "fmt "); v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true);
  v.setUint32(24, rate, true); v.setUint32(28, rate * 2, true); v.setUint16(32, 2, true); v.setUint16(34, 16, true);
  str(36, "data"); v.setUint32(40, samples * 2, true);
  for (let i = 0; i < samples; i++) {
    v.setInt16(44 + i * 2, Math.round(Math.sin((2 * Math.PI * freq * i) / rate) * 0.3 * 32767), true);
  }
  return buf;
}

/** GET /api/speech-token (same origin, never cached). Returns the parsed JSON. */
export async function fetchToken() {
  const r = await fetch("/api/speech-token", { cache: "no-store", credentials: "same-origin" });
  if (!r.ok) throw new Error(`broker answered ${r.status}`);
  return r.json();
}

/** One recognizeOnceAsync over the generated WAV with the given token and endpoint. */
export async function recognize({ token, endpoint, timeoutMs = 30000 }) {
  const sdk = window.SpeechSDK;
  const config = sdk.SpeechConfig.fromEndpoint(new URL(endpoint));
  config.authorizationToken = token;
  config.speechRecognitionLanguage = "en-US";
  const audio = sdk.AudioConfig.fromWavFileInput(new File([makeWav(2)], "a.wav"));
  const recognizer = new sdk.SpeechRecognizer(config, audio);
  try {
    const result = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("recognition timed out")), timeoutMs);
      recognizer.recognizeOnceAsync(
        (r) => { clearTimeout(timer); resolve(r); },
        (e) => { clearTimeout(timer); reject(new Error(String(e))); },
      );
    });
    const out = { reason: sdk.ResultReason[result.reason], text: result.text ?? "" };
    if (result.reason === sdk.ResultReason.Canceled) {
      const details = sdk.CancellationDetails.fromResult(result);
      out.cancellation = sdk.CancellationReason[details.reason];
      out.errorCode = sdk.CancellationErrorCode[details.ErrorCode];
      // error details carry the URL, which carries the token: report only the status part
      out.statusCode = /StatusCode: (\d+)/.exec(details.errorDetails ?? "")?.[1] ?? null;
    }
    return out;
  } finally {
    recognizer.close();
  }
}

/**
 * Continuous recognition of a `seconds`-long WAV for `runMs`, counting recognized phrases and
 * cancellations (reconnects after service-side closes happen inside the SDK).
 */
export async function continuous({ token, endpoint, seconds = 20, runMs = 6000 }) {
  const sdk = window.SpeechSDK;
  const config = sdk.SpeechConfig.fromEndpoint(new URL(endpoint));
  config.authorizationToken = token;
  config.speechRecognitionLanguage = "en-US";
  const audio = sdk.AudioConfig.fromWavFileInput(new File([makeWav(seconds)], "long.wav"));
  const recognizer = new sdk.SpeechRecognizer(config, audio);
  const texts = [];
  const canceled = [];
  recognizer.recognized = (_s, e) => {
    if (e.result.reason === sdk.ResultReason.RecognizedSpeech) texts.push(e.result.text);
  };
  recognizer.canceled = (_s, e) => canceled.push(sdk.CancellationReason[e.reason]);
  try {
    await new Promise((res, rej) => recognizer.startContinuousRecognitionAsync(res, (e) => rej(new Error(String(e)))));
    await sleep(runMs);
    await new Promise((res) => recognizer.stopContinuousRecognitionAsync(res, res));
  } finally {
    recognizer.close();
  }
  return { texts, canceled };
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

window.sdkRaw = { makeWav, fetchToken, recognize, continuous, sleep, violations, sdkLoaded: typeof window.SpeechSDK === "object" };
document.getElementById("status").textContent = window.sdkRaw.sdkLoaded ? "ready" : "SpeechSDK missing";
