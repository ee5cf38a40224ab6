// The packed package's lifetime as an app meets it: `new TokenClient()` before `await init()`,
// and `using` (explicit resource management) ending a client. Driven by lifetime.test.mjs.
import init, { TokenClient } from "/pkg/speech_token_client.js";

function describe(error) {
  return { name: error?.name, kind: error?.kind, message: String(error?.message ?? error) };
}

window.lifetime = {
  /** Construction before init(): the error the app sees. */
  beforeInit() {
    try {
      new TokenClient({ brokerUrl: "/api/speech-token" });
      return { constructed: true };
    } catch (error) {
      return describe(error);
    }
  },
  /** After init(): a client works (negative control for the check above). */
  async afterInit() {
    await init();
    const client = new TokenClient({ brokerUrl: "/api/speech-token" });
    try {
      const token = await client.getToken();
      return { ok: typeof token === "string" && token.length > 20 };
    } finally {
      client.dispose();
    }
  },
  /**
   * `using` a client for one block, with a getToken() still pending when the block ends: the
   * client is disposed and the pending call rejects with kind "disposed". Compiled at run time
   * (the page's CSP allows no eval, so `using` is written here directly).
   */
  async usingBlock() {
    await init();
    let pending;
    let kept;
    {
      using client = new TokenClient({ brokerUrl: "/api/speech-token" });
      kept = client;
      pending = client.getToken();
    }
    const status = kept.status;
    const outcome = await pending.then(() => ({ resolved: true }), describe);
    let later;
    try {
      await kept.getToken();
      later = { resolved: true };
    } catch (error) {
      later = describe(error);
    }
    return { status, outcome, later };
  },
};
