// Bundled by esbuild in tests/e2e/pipeline.test.mjs: the real @azure/core-rest-pipeline with its
// bearerTokenAuthenticationPolicy, fed by the packed client's tokenCredential().
import { bearerTokenAuthenticationPolicy, createEmptyPipeline, createHttpHeaders, createPipelineRequest } from "@azure/core-rest-pipeline";
import init, { TokenClient } from "/pkg/speech_token_client.js";

/** A transport that never touches the network: the test is about getting the token. */
const transport = {
  async sendRequest(request) {
    return { status: 200, headers: createHttpHeaders(), request, bodyAsText: "" };
  },
};

window.pipeline = {
  /**
   * One pipeline request whose abortSignal fires after `abortAfterMs` (or is aborted before the
   * call when `abortAfterMs` is 0) while the broker is slowed; a second request without abort
   * shares the broker request. Reports what each saw and when.
   */
  async run(abortAfterMs) {
    await init();
    const client = new TokenClient({ brokerUrl: "/api/speech-token" });
    const pipeline = createEmptyPipeline();
    pipeline.addPolicy(bearerTokenAuthenticationPolicy({
      credential: client.tokenCredential(),
      scopes: "https://cognitiveservices.azure.com/.default",
    }));
    const controller = new AbortController();
    if (abortAfterMs === 0) controller.abort();
    else setTimeout(() => controller.abort(), abortAfterMs);
    const started = performance.now();
    const aborted = pipeline
      .sendRequest(transport, createPipelineRequest({ url: "https://speech.invalid/x", abortSignal: controller.signal }))
      .then(
        (r) => ({ ok: true, authorization: Boolean(r.request.headers.get("authorization")), ms: performance.now() - started }),
        (e) => ({ ok: false, name: e?.name, ms: performance.now() - started }),
      );
    const other = client.getToken().then((t) => ({ ok: true, ms: performance.now() - started, length: t.length }), (e) => ({ ok: false, kind: e.kind }));
    const a = await aborted;
    const b = await other;
    client.dispose();
    return { aborted: a, other: b };
  },
};
