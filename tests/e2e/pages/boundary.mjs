// The packed package's JS boundary under the input plain-JS apps (and hostile pages) give it:
// non-string event names, options whose getters or proxy traps throw, proxies passed to
// attach(), and a relative brokerUrl in a worker. Driven by boundary.test.mjs.
import init, { TokenClient } from "/pkg/speech_token_client.js";

await init();

function describe(error) {
  return { name: error?.name, kind: error?.kind ?? null, message: String(error?.message ?? error) };
}

/** What `f()` threw (described), or `{ returned: true }`. */
function outcome(f) {
  try {
    f();
    return { returned: true };
  } catch (error) {
    return describe(error);
  }
}

/** Whether a client still works end to end: a token from the broker, then disposed. */
async function works(client) {
  try {
    const token = await client.getToken();
    return typeof token === "string" && token.length > 20 && client.status === "valid";
  } catch (error) {
    return describe(error);
  }
}

const OPTIONS = { brokerUrl: "/api/speech-token" };

window.boundary = {
  /** `client.on(event, fn)` with each non-string event `rounds` times; then is the module alive? */
  async onWithNonStrings(rounds) {
    const client = new TokenClient(OPTIONS);
    const events = [undefined, null, 123, {}, [], Symbol("token"), () => "token", true];
    const results = [];
    for (let round = 0; round < rounds; round++) {
      for (const event of events) results.push(outcome(() => client.on(event, () => {})));
    }
    const alive = await works(client);
    const fresh = new TokenClient(OPTIONS);
    const freshAlive = await works(fresh);
    client.dispose();
    fresh.dispose();
    return { results, alive, freshAlive };
  },

  /** Options whose reading throws, `rounds` times each; a client made before must live on. */
  async throwingOptions(rounds) {
    const before = new TokenClient(OPTIONS);
    const beforeToken = await works(before);
    const boom = () => { throw new Error("app getter boom"); };
    const makers = [
      () => ({ get brokerUrl() { return boom(); } }),
      () => ({ brokerUrl: "/api/speech-token", get refreshMargin() { return boom(); } }),
      () => ({ brokerUrl: "/api/speech-token", refreshMargin: { get a() { return boom(); } } }),
      () => ({ brokerUrl: "/api/speech-token", method: new Proxy({}, { ownKeys: boom, get: boom, has: boom }) }),
      () => new Proxy({ brokerUrl: "/api/speech-token" }, { get: boom }),
      () => new Proxy({ brokerUrl: "/api/speech-token" }, { ownKeys: boom }),
      () => new Proxy({ brokerUrl: "/api/speech-token" }, { getOwnPropertyDescriptor: boom }),
    ];
    const results = [];
    const deviations = [];
    for (let round = 0; round < rounds; round++) {
      makers.forEach((make, i) => {
        const result = outcome(() => new TokenClient(make()));
        if (round === 0) results.push(result);
        else if (JSON.stringify(result) !== JSON.stringify(results[i])) deviations.push(result);
      });
    }
    // Negative control: a proxy whose `has` trap throws is valid options (nothing asks `in`).
    const hasTrap = new TokenClient(new Proxy({ brokerUrl: "/api/speech-token" }, { has: boom }));
    const hasTrapAlive = await works(hasTrap);
    hasTrap.dispose();
    const afterAlive = await works(new TokenClient(OPTIONS));
    const beforeAlive = (await before.refreshNow().then(() => before.status, describe));
    before.dispose();
    return { beforeToken, results, deviations, hasTrapAlive, afterAlive, beforeAlive };
  },

  /** Options of a type JSON cannot even hold (bigint, symbol, function): each option's own message. */
  oddValues() {
    const base = { brokerUrl: "/api/speech-token" };
    return [
      outcome(() => new TokenClient({ ...base, refreshMargin: 10n })),
      outcome(() => new TokenClient({ ...base, method: Symbol("GET") })),
      outcome(() => new TokenClient({ ...base, shareAcrossTabs: () => true })),
      outcome(() => new TokenClient({ brokerUrl: new String("/api/speech-token") })),
    ];
  },

  /** attach() of proxies whose traps throw: a typed error or a no-op, never a raw throw. */
  async attachProxies(rounds) {
    const client = new TokenClient(OPTIONS);
    await client.getToken();
    const boom = () => { throw new Error("app trap boom"); };
    const target = { authorizationToken: "", close() {} };
    const traps = [{ getOwnPropertyDescriptor: boom }, { has: boom }, { get: boom }, { set: boom },
      { defineProperty: boom }, { ownKeys: boom }];
    const results = [];
    for (let round = 0; round < rounds; round++) {
      for (const trap of traps) {
        const result = outcome(() => client.attach(new Proxy({ ...target }, trap)));
        if (round === 0) results.push(result);
      }
    }
    const alive = await works(client);
    client.dispose();
    return { results, alive };
  },

  /** A relative brokerUrl in a module worker: resolved against the worker's own location. */
  worker() {
    return new Promise((resolve) => {
      const worker = new Worker("/boundary-worker.mjs", { type: "module" });
      worker.onmessage = (event) => { resolve(event.data); worker.terminate(); };
      worker.onerror = (event) => { resolve({ error: String(event.message) }); worker.terminate(); };
    });
  },
};
