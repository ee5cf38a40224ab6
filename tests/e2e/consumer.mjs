// A consumer app for the toolchain, TypeScript, SSR and lint tests: the package packed with
// `npm pack` (exactly what npm would publish) and installed into a fresh folder, as a user gets it.

import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { ROOT } from "./helpers.mjs";

/** Packs pkg/ into a new temporary folder. Returns `{ work, tarball }`. */
export function packTarball(prefix) {
  const work = mkdtempSync(path.join(tmpdir(), `${prefix}-`));
  execFileSync("npm", ["pack", path.join(ROOT, "pkg"), "--pack-destination", work, "--silent"], { cwd: work, stdio: "pipe" });
  const tarball = path.join(work, readdirSync(work).find((f) => f.endsWith(".tgz")));
  return { work, tarball };
}

/** Creates <work>/<name>/ with a package.json depending on the tarball, and installs it. */
export function consumerApp(work, tarball, name = "app") {
  const app = path.join(work, name);
  mkdirSync(app, { recursive: true });
  writeFileSync(path.join(app, "package.json"), JSON.stringify({
    name: `consumer-${name}`, private: true, type: "module",
    dependencies: { "speech-token-client": `file:${tarball}` },
  }, null, 2));
  execFileSync("npm", ["install", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"], { cwd: app, stdio: "pipe" });
  return app;
}
