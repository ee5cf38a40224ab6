// A custom-domain endpoint given without a path, as `speechConfig(SpeechSDK, { endpoint })`:
// the real SDK probes `https://<host>/stt/speech/universal/v2?GenerateRedirectResponse=true`
// and connects where the answer points. Driven by tests/e2e/custom-domain.test.mjs.
import init, { TokenClient } from "/pkg/speech_token_client.js";

/** `seconds` of a 440 Hz tone as a 16 kHz, 16-bit, mono PCM WAV (the fake answers on audio). */
function makeWav(seconds) {
  const rate = 16000;
  const samples = rate * seconds;
  const out = new ArrayBuffer(44 + samples * 2);
  const v = new DataView(out);
  const str = (off, s) => { for (let i = 0; i < s.length; i++) v.setUint8(off + i, s.charCodeAt(i)); };
  str(0, "RIFF"); v.setUint32(4, 36 + samples * 2, true); str(8, "WAVE");
  str(12, "fmt "); v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true);
  v.setUint32(24, rate, true); v.setUint32(28, rate * 2, true); v.setUint16(32, 2, true); v.setUint16(34, 16, true);
  str(36, "data"); v.setUint32(40, samples * 2, true);
  for (let i = 0; i < samples; i++) v.setInt16(44 + i * 2, Math.round(Math.sin((2 * Math.PI * 440 * i) / rate) * 0.3 * 32767), true);
  return out;
}

const SpeechSDK = window.SpeechSDK;

window.custom = {
  async recognize(endpoint) {
    await init();
    const client = new TokenClient({ brokerUrl: "/api/speech-token" });
    try {
      const config = await client.speechConfig(SpeechSDK, { endpoint });
      config.speechRecognitionLanguage = "en-US";
      const audio = SpeechSDK.AudioConfig.fromWavFileInput(new File([makeWav(3)], "tone.wav"));
      const recognizer = new SpeechSDK.SpeechRecognizer(config, audio);
      client.attach(recognizer);
      const result = await new Promise((resolve, reject) => recognizer.recognizeOnceAsync(resolve, reject));
      recognizer.close();
      return { text: result.text, reason: SpeechSDK.ResultReason[result.reason] };
    } catch (e) {
      return { error: String(e) };
    } finally {
      client.dispose();
    }
  },
};
