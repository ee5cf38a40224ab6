// Real Speech SDK objects (browser bundle, global `SpeechSDK`) attached to the packed client and
// closed: driven by tests/e2e/sdk-objects.test.mjs through `window.objects`.
import init, { TokenClient } from "/pkg/speech_token_client.js";

const SpeechSDK = window.SpeechSDK;

window.objects = {
  /**
   * Attaches a SpeechRecognizer, a SpeechSynthesizer and a TranslationRecognizer (plus, as a
   * control, a fourth recognizer that stays open), closes the three, and reports what the client
   * saw. `close` is called the way apps do (callbacks), and awaited.
   */
  async closeThree() {
    await init();
    const client = new TokenClient({ brokerUrl: "/api/speech-token" });
    const detached = [];
    client.on("detach", ({ target, reason }) => detached.push({ kind: target.constructor?.name, reason }));
    const speechConfig = await client.speechConfig(SpeechSDK);
    const translationConfig = await client.speechTranslationConfig(SpeechSDK);
    translationConfig.speechRecognitionLanguage = "en-US";
    translationConfig.addTargetLanguage("de");
    const audio = () => SpeechSDK.AudioConfig.fromStreamInput(SpeechSDK.AudioInputStream.createPushStream());
    const recognizer = new SpeechSDK.SpeechRecognizer(speechConfig, audio());
    const synthesizer = new SpeechSDK.SpeechSynthesizer(speechConfig, null);
    const translator = new SpeechSDK.TranslationRecognizer(translationConfig, audio());
    const open = new SpeechSDK.SpeechRecognizer(speechConfig, audio());
    for (const o of [recognizer, synthesizer, translator, open]) client.attach(o);
    const attachedBefore = client.attachedCount;
    const close = (o) => new Promise((resolve) => o.close(() => resolve("ok"), (e) => resolve("error " + e)));
    const closed = [await close(recognizer), await close(synthesizer), await close(translator)];
    const attachedAfter = client.attachedCount;
    // A marker on every object: the refresh below overwrites it only on attached ones (the dev
    // broker may answer the same cached token, so comparing tokens would prove nothing).
    for (const o of [recognizer, synthesizer, translator, open]) o.authorizationToken = "marker";
    const token = await client.refreshNow();
    const openGotIt = open.authorizationToken === token;
    const closedGotIt = [recognizer, synthesizer, translator].map((o) => o.authorizationToken === token);
    let secondClose;
    try { recognizer.close(); secondClose = "no throw"; } catch (e) { secondClose = String(e.message ?? e); }
    const detachedWhileOpen = [...detached];
    open.close();
    client.dispose();
    return { attachedBefore, attachedAfter, closed, detached: detachedWhileOpen, openGotIt, closedGotIt, secondClose };
  },
};
