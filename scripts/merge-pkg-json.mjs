// Merges the npm metadata of pkg.json into wasm-pack's generated <out>/package.json, and keeps
// the version equal to Cargo.toml's.
import { readFileSync, writeFileSync } from "node:fs";

const out = process.argv[2] || "pkg";
const generated = JSON.parse(readFileSync(`${out}/package.json`, "utf8"));
const meta = JSON.parse(readFileSync("pkg.json", "utf8"));
const cargo = readFileSync("Cargo.toml", "utf8");
const version = /^version\s*=\s*"([^"]+)"/m.exec(cargo.split("[package]")[1])[1];
if (meta.version && meta.version !== version) {
  console.error(`pkg.json version ${meta.version} differs from Cargo.toml ${version}`);
  process.exit(1);
}
const merged = { ...generated, ...meta, version };
writeFileSync(`${out}/package.json`, JSON.stringify(merged, null, 2) + "\n");
