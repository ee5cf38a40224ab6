// A fake Microsoft Entra ID tenant for the end-to-end tests and the benchmark: the tenant's
// OpenID configuration and JWKS on loopback (shapes from Microsoft's documentation:
// `/{tenant}/v2.0/.well-known/openid-configuration` → `jwks_uri`), an RS256 key pair generated per
// run, and a minter for user access tokens as MSAL would receive them for the broker's API.

import { createServer } from "node:http";
import { generateKeyPairSync, sign as rsaSign, randomUUID } from "node:crypto";

export const API_APP_ID_URI = "api://speech-broker";
export const SCOPE = "Speech.Token";

const b64url = (buf) => Buffer.from(buf).toString("base64url");

/**
 * Starts the fake on 127.0.0.1. Returns `{ base, tenant, apiClientId, brokerArgs, keyFetches(),
 * mint(overrides), close() }`; `brokerArgs` are the broker flags for `--auth entra` against it.
 */
export async function startFakeEntra() {
  const tenant = randomUUID();
  const apiClientId = randomUUID();
  const kid = `kid-${randomUUID()}`;
  const { publicKey, privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const jwk = { ...publicKey.export({ format: "jwk" }), kid, use: "sig", alg: "RS256" };
  let keyFetches = 0;
  const server = createServer((req, res) => {
    const address = server.address();
    if (!address) { res.writeHead(503); res.end(); return; } // closing
    const base = `http://127.0.0.1:${address.port}`;
    const send = (body) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    if (req.url === `/${tenant}/v2.0/.well-known/openid-configuration`) {
      send({ issuer: `${base}/${tenant}/v2.0`, jwks_uri: `${base}/${tenant}/discovery/v2.0/keys`,
        id_token_signing_alg_values_supported: ["RS256"] });
    } else if (req.url === `/${tenant}/discovery/v2.0/keys`) {
      keyFetches += 1;
      send({ keys: [jwk] });
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const base = `http://127.0.0.1:${server.address().port}`;
  return {
    base,
    tenant,
    apiClientId,
    brokerArgs: ["--auth", "entra", "--auth-authority", base, "--auth-tenant", tenant,
      "--auth-audience", apiClientId, "--auth-audience", API_APP_ID_URI, "--auth-scope", SCOPE],
    keyFetches: () => keyFetches,
    /** A v2 access token for the broker API, valid for an hour; `overrides` replace claims. */
    mint(overrides = {}) {
      const now = Math.floor(Date.now() / 1000);
      const claims = {
        aud: apiClientId, iss: `${base}/${tenant}/v2.0`, iat: now, nbf: now - 5, exp: now + 3600,
        tid: tenant, oid: "00000000-0000-0000-0000-00000000e2e1", scp: SCOPE, ver: "2.0",
        ...overrides,
      };
      const head = b64url(JSON.stringify({ alg: "RS256", typ: "JWT", kid }));
      const body = b64url(JSON.stringify(claims));
      const sig = rsaSign("sha256", Buffer.from(`${head}.${body}`), privateKey);
      return `${head}.${body}.${b64url(sig)}`;
    },
    close: () => new Promise((r) => server.close(r)),
  };
}
