// The browser client against a broker running `--auth entra`: the app hands the client an
// MSAL-style async `headers` provider that acquires the user's access token for the broker's API
// before each broker request (as `msalInstance.acquireTokenSilent({ scopes })` does), and the
// real Speech SDK recognizes through the fake Speech service with the token it got.
// `window.msalAcquireTokenSilent` is provided by the test (Playwright exposeFunction): it plays
// MSAL, minting tokens signed by the test's fake Entra ID.

import init, { TokenClient } from "/pkg/speech_token_client.js";
import { makeWav } from "/speech-client.mjs";

const API_SCOPE = "api://speech-broker/Speech.Token";

/** The app's side of MSAL: one async call per broker request, never cached by this page. */
async function msalHeaders() {
  const result = await window.msalAcquireTokenSilent({ scopes: [API_SCOPE] });
  return { Authorization: `Bearer ${result.accessToken}` };
}

async function run({ recognize = false } = {}) {
  let providerCalls = 0;
  const client = new TokenClient({
    brokerUrl: "/api/speech-token",
    headers: async () => {
      providerCalls += 1;
      return msalHeaders();
    },
  });
  const out = { providerCalls: 0 };
  try {
    const token = await client.getToken();
    out.ok = typeof token === "string" && token.length > 20;
    if (recognize) {
      const sdk = window.SpeechSDK;
      const config = await client.speechConfig(sdk);
      const audio = sdk.AudioConfig.fromWavFileInput(new File([makeWav(2)], "a.wav"));
      const recognizer = new sdk.SpeechRecognizer(config, audio);
      client.attach(recognizer);
      out.recognized = await new Promise((resolve) => {
        recognizer.recognizeOnceAsync(
          (r) => resolve({ reason: sdk.ResultReason[r.reason], text: r.text }),
          (e) => resolve({ error: String(e) }),
        );
      });
      recognizer.close();
    }
  } catch (e) {
    out.error = { name: e.name, kind: e.kind, status: e.status, message: String(e.message) };
  }
  out.providerCalls = providerCalls;
  client.dispose();
  return out;
}

await init();
window.auth = { run };
document.getElementById("status").textContent = "ready";
