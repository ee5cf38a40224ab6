// Cross-engine end-to-end helpers: one small page API over selenium-webdriver (npm) for Chromium,
// Firefox ESR and WebKitGTK, used by tests/e2e/engines/*.mjs. (Playwright drives only Chromium
// here: its own Firefox/WebKit builds cannot be downloaded, and its stock-Firefox mode fails
// against Firefox ESR 153 at newPage.)
//
// Engine from E2E_ENGINE: "chromium" | "firefox" | "webkit". Every driver is a local binary this
// file starts itself on a free loopback port, and selenium-webdriver only ever talks to it as a
// remote server (Builder.usingServer): Selenium Manager, which would download drivers and
// browsers, never runs (SE_OFFLINE is set as well, in case anything reached it).
//   chromium: /usr/bin/chromedriver + /usr/bin/chromium (headless)
//   firefox:  geckodriver (cargo install) + /usr/bin/firefox-esr (-headless); console messages over
//             WebDriver BiDi (log.entryAdded), subscribed before any page loads
//   webkit:   /usr/bin/WebKitWebDriver + WebKitGTK's MiniBrowser, which has no headless mode: run
//             under an X display (xvfb-run). WebKitWebDriver 2.50 has no BiDi, so console messages
//             are caught by a script hook installed right after each load (earlier ones are missed).

import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, readdirSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { stopChild, sleep } from "./helpers.mjs";

process.env.SE_OFFLINE = "true";
const { Builder } = await import("selenium-webdriver");

export const ENGINE = process.env.E2E_ENGINE ?? "firefox";
/** A page poll slower than this is reported in the test output (a driver holding a script). */
const SLOW_POLL_MS = 3_000;
/** What a poll that the driver still holds at the wait's deadline resolves to. */
const HELD = Symbol("held");
if (!["chromium", "firefox", "webkit"].includes(ENGINE)) throw new Error(`E2E_ENGINE=${ENGINE}: chromium, firefox or webkit`);

function which(cmd) {
  for (const dir of (process.env.PATH ?? "").split(":")) {
    const p = path.join(dir, cmd);
    if (dir && existsSync(p)) return p;
  }
  return undefined;
}

export function miniBrowser() {
  for (const base of ["/usr/lib", "/usr/libexec"]) {
    for (const sub of [".", ...(existsSync(base) ? readdirSync(base) : [])]) {
      const p = path.join(base, sub, "webkit2gtk-4.1/MiniBrowser");
      if (existsSync(p)) return p;
    }
  }
  throw new Error("WebKitGTK's MiniBrowser not found: bash scripts/setup.sh");
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

async function startDriver() {
  const port = await freePort();
  let bin;
  let args;
  if (ENGINE === "chromium") { bin = process.env.CHROMEDRIVER ?? "/usr/bin/chromedriver"; args = [`--port=${port}`]; }
  if (ENGINE === "firefox") {
    bin = process.env.GECKODRIVER ?? which("geckodriver");
    if (!bin) throw new Error("geckodriver not found on PATH: bash scripts/setup.sh");
    // BiDi on a free port: the default (9222) is one per machine, and tests may run side by side
    args = ["--port", String(port), "--host", "127.0.0.1", "--websocket-port", "0"];
  }
  if (ENGINE === "webkit") {
    bin = "/usr/bin/WebKitWebDriver";
    if (!process.env.DISPLAY) throw new Error("WebKit needs an X display: run under xvfb-run -a");
    args = [`--port=${port}`, "--host=127.0.0.1"];
  }
  let log = "";
  const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
  child.stdout.on("data", (d) => { log += d; });
  child.stderr.on("data", (d) => { log += d; });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) throw new Error(`${bin} exited (${child.exitCode}): ${log}`);
    try { if ((await fetch(`${url}/status`)).ok) return { child, url, log: () => log }; } catch { /* not yet */ }
    await sleep(100);
  }
  child.kill("SIGKILL");
  throw new Error(`${bin} did not answer on ${url}: ${log}`);
}

function capabilities(profileDir) {
  if (ENGINE === "chromium") {
    return {
      browserName: "chrome",
      "goog:chromeOptions": {
        binary: process.env.CHROMIUM ?? "/usr/bin/chromium",
        args: ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
          "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
          `--user-data-dir=${profileDir}`, "--window-size=1280,900"],
        // chromedriver adds these by default (so does Playwright): without removing them a hidden
        // page's timers are never throttled, and the measurement would not be Chrome's.
        excludeSwitches: ["disable-background-timer-throttling", "disable-backgrounding-occluded-windows"],
      },
      "goog:loggingPrefs": { browser: "ALL" },
    };
  }
  if (ENGINE === "firefox") {
    return {
      browserName: "firefox",
      webSocketUrl: true,
      "moz:firefoxOptions": {
        binary: process.env.FIREFOX ?? "/usr/bin/firefox-esr",
        args: ["-headless", "--window-size=1280,900"],
        prefs: {
          // no network beyond loopback: no update checks, telemetry, remote settings, captive portal
          "app.update.enabled": false, "datareporting.policy.dataSubmissionEnabled": false,
          "toolkit.telemetry.enabled": false, "network.captive-portal-service.enabled": false,
          "browser.safebrowsing.malware.enabled": false, "browser.safebrowsing.phishing.enabled": false,
          "extensions.update.enabled": false, "browser.shell.checkDefaultBrowser": false,
          "network.connectivity-service.enabled": false,
        },
      },
    };
  }
  return {
    browserName: "MiniBrowser",
    "webkitgtk:browserOptions": { binary: miniBrowser(), args: ["--automation"] },
  };
}

/**
 * Starts the engine's driver and one browser session. Resolves with
 * `{ engine, driver, newPage({ window }), pages, close() }`.
 */
export async function launch() {
  const server = await startDriver();
  const profileDir = mkdtempSync(path.join(tmpdir(), `stb-${ENGINE}-`));
  let driver;
  try {
    driver = await new Builder().usingServer(server.url).withCapabilities(capabilities(profileDir)).build();
    await driver.manage().setTimeouts({ script: 120_000, pageLoad: 30_000 });
  } catch (e) {
    await stopChild(server.child);
    rmSync(profileDir, { recursive: true, force: true });
    throw new Error(`${ENGINE}: no session (${e.message})\n${server.log()}`);
  }
  const pages = [];
  // Firefox: every console entry and JS error of every browsing context, by context id.
  const bidiLog = [];
  if (ENGINE === "firefox") {
    const { default: LogInspector } = await import("selenium-webdriver/bidi/logInspector.js");
    const inspector = await LogInspector(driver);
    await inspector.onConsoleEntry((e) => bidiLog.push({ context: e.source?.browsingContextId, type: e.level === "warn" ? "warning" : e.level, text: e.text ?? "" }));
    await inspector.onJavascriptLog((e) => bidiLog.push({ context: e.source?.browsingContextId, type: e.type === "javascript" && e.level === "error" ? "pageerror" : e.level, text: e.text ?? "" }));
  }
  const browser = {
    engine: ENGINE,
    driver,
    pages,
    /** The first page is the session's own window; later ones open a new window (or tab). */
    async newPage({ type = "window" } = {}) {
      let handle;
      if (pages.length === 0) handle = await driver.getWindowHandle();
      else { await driver.switchTo().newWindow(type); handle = await driver.getWindowHandle(); }
      const page = makePage(browser, handle, bidiLog);
      pages.push(page);
      return page;
    },
    /** Hides `page` (minimizes its window: visibilityState "hidden" in every engine here). */
    async hide(page) {
      await page.focus();
      await driver.manage().window().minimize();
    },
    /** Shows `page` again (restores its window). */
    async show(page) {
      await page.focus();
      await driver.manage().window().setRect({ width: 1280, height: 900 });
    },
    async close() {
      try { await driver.quit(); } catch { /* gone */ }
      await stopChild(server.child);
      rmSync(profileDir, { recursive: true, force: true });
    },
  };
  return browser;
}

let current;
function makePage(browser, handle, bidiLog) {
  const { driver } = browser;
  const hooked = []; // webkit/chromium: messages fetched from earlier loads of this page
  const page = {
    handle,
    closed: false,
    async focus() {
      if (current !== handle) { await driver.switchTo().window(handle); current = handle; }
    },
    async goto(url) {
      await page.focus();
      await page.drainConsole();
      await driver.get(url);
      if (ENGINE === "webkit") await installConsoleHook();
    },
    /** Runs `fn(...args)` in the page (awaits a returned promise) and returns its result. */
    async evaluate(fn, ...args) {
      await page.focus();
      return driver.executeScript(`return (${fn.toString()}).apply(null, arguments)`, ...args);
    },
    /**
     * Polls `fn` in the page until it returns something truthy. Each poll is bounded by the time
     * left: a driver that holds one script (as WebKitWebDriver can while a page navigates) fails
     * the wait with that said, instead of hanging until the test's own timeout.
     */
    async waitForFunction(fn, { timeoutMs = 20_000, message = "page condition" } = {}) {
      const end = Date.now() + timeoutMs;
      let last;
      while (Date.now() < end) {
        const called = Date.now();
        let timer;
        const held = new Promise((resolve) => { timer = setTimeout(resolve, end - called, HELD); });
        let got;
        try {
          got = await Promise.race([page.evaluate(fn), held]);
          if (got === HELD) {
            throw new Error(`${ENGINE}: one poll for ${message} still pending after ${Date.now() - called} ms (the driver held the script); the poll before: ${JSON.stringify(last)}`, { cause: HELD });
          }
          if (got) return got;
          last = got;
        } catch (e) {
          if (e.cause === HELD) throw e;
          last = String(e.message);
        } finally {
          clearTimeout(timer);
        }
        // a poll is one quick script: say so when the driver held it (diagnosis for CI logs)
        if (Date.now() - called > SLOW_POLL_MS) console.log(`# ${ENGINE}: one poll for ${message} took ${Date.now() - called} ms`);
        await sleep(150);
      }
      throw new Error(`${ENGINE}: timed out after ${timeoutMs} ms waiting for ${message}; last: ${JSON.stringify(last)}`);
    },
    /** Console messages and page errors: `[{ type, text }]` (webkit: since the hook went in). */
    async console() {
      await page.drainConsole();
      if (ENGINE === "firefox") {
        const ctx = handle;
        return bidiLog.filter((m) => m.context === ctx).map(({ type, text }) => ({ type, text }));
      }
      return [...hooked];
    },
    async drainConsole() {
      if (page.closed) return;
      if (ENGINE === "chromium") {
        await page.focus();
        for (const e of await driver.manage().logs().get("browser")) {
          hooked.push({ type: e.level.name === "SEVERE" ? "error" : e.level.name.toLowerCase(), text: e.message });
        }
      } else if (ENGINE === "webkit") {
        await page.focus();
        const got = await driver.executeScript("return window.__e2eConsole ? window.__e2eConsole.splice(0) : []").catch(() => []);
        hooked.push(...got);
      }
    },
    async close() {
      if (page.closed) return;
      await page.drainConsole().catch(() => {});
      await page.focus();
      await driver.close();
      page.closed = true;
      current = undefined;
      const rest = browser.pages.filter((p) => !p.closed);
      if (rest.length) await rest[0].focus();
    },
  };
  async function installConsoleHook() {
    await driver.executeScript(`
      if (!window.__e2eConsole) {
        const log = window.__e2eConsole = [];
        for (const type of ["log", "info", "warn", "error", "debug"]) {
          const orig = console[type].bind(console);
          console[type] = (...a) => { log.push({ type: type === "warn" ? "warning" : type, text: a.map(String).join(" ") }); orig(...a); };
        }
        addEventListener("error", (e) => log.push({ type: "pageerror", text: String(e.message) }));
        addEventListener("unhandledrejection", (e) => log.push({ type: "pageerror", text: String(e.reason && e.reason.stack || e.reason) }));
      }`);
  }
  return page;
}
