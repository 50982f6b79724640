// Logging in from another device, in a real browser: `mainloop up --auth-mode token` prints a
// login URL; without it the API answers 401; opening it trades the token (in the URL's fragment,
// never sent to the server) for a session cookie and lands on the app, whose requests then pass;
// logging out ends that.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, chmodSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { CHROMIUM, CHROMIUM_ARGS, MAINLOOP, startOnAFreePort } from "./support.js";

test("login by URL, then the cookie; 401 without it", { timeout: 120_000 }, async () => {
  assert.ok(MAINLOOP, "MAINLOOP_BIN must point at the mainloop binary");
  const dataDir = mkdtempSync(join(tmpdir(), "mainloop-login-"));
  chmodSync(dataDir, 0o755);
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  let child;
  try {
    const mainloop = await startOnAFreePort(dataDir, ["--auth-mode", "token"]);
    child = mainloop.child;
    const base = `http://127.0.0.1:${mainloop.port}`;
    const url = mainloop.printed.match(/(http:\/\/\S+\/login#token=\S+)/)?.[1];
    assert.ok(url?.startsWith(`${base}/login#token=`), `a login URL is printed:\n${mainloop.printed}`);

    const page = await browser.newPage();
    page.setDefaultTimeout(60_000);
    const status = (path) => page.evaluate((p) => fetch(p).then((r) => r.status), path);
    await page.goto(`${base}/`);
    assert.equal(await status("/tasks"), 401, "nothing without logging in");

    const seen = [];
    page.on("request", (request) => seen.push(request.url()));
    await page.goto(url);
    await page.waitForURL(`${base}/`);
    await page.getByText("All caught up").waitFor();
    assert.equal(await status("/tasks"), 200, "the cookie lets the app in");
    assert.ok(seen.every((address) => !address.includes("token=")), `the token never went over the wire: ${seen}`);
    const cookies = await page.context().cookies();
    const session = cookies.find((c) => c.name === "mainloop_session");
    assert.ok(session?.httpOnly && session.sameSite === "Strict", JSON.stringify(cookies));
    assert.equal(await page.evaluate(() => document.cookie.includes("mainloop_session")), false, "scripts cannot read it");

    assert.equal(await page.evaluate(() => fetch("/logout", { method: "POST" }).then((r) => r.status)), 204);
    assert.equal(await status("/tasks"), 401, "logged out");
  } finally {
    await browser.close();
    if (child) {
      child.kill("SIGINT");
      await new Promise((resolve) => child.on("exit", resolve));
    }
    rmSync(dataDir, { recursive: true, force: true });
  }
});
