// The journey in a real browser: Debian's Chromium, driven by Playwright, against
// `mainloop up --demo` (fakes for GitHub, Claude Code and the Anthropic API; real NATS,
// Postgres and every service). The person chats, confirms, approves the plan in the inbox,
// merges the pull request on the (fake) GitHub page, and sees the task reach DONE.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, chmodSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { CHROMIUM, CHROMIUM_ARGS, MAINLOOP, startOnAFreePort } from "./support.js";

test("chat, confirm, approve, merge: the task reaches DONE", { timeout: 240_000 }, async () => {
  assert.ok(MAINLOOP, "MAINLOOP_BIN must point at the mainloop binary");
  const dataDir = mkdtempSync(join(tmpdir(), "mainloop-browser-"));
  chmodSync(dataDir, 0o755);
  const started = startOnAFreePort(dataDir);
  let child;
  let port;
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  try {
    const mainloop = await started;
    child = mainloop.child;
    port = mainloop.port;
    const printed = mainloop.printed;
    const githubUrl = printed.match(/fake, at (http:\/\/[0-9.:]+)/)[1];
    const page = await browser.newPage();
    page.setDefaultTimeout(60_000);
    await page.goto(`http://127.0.0.1:${port}/`);
    await page.getByText("All caught up").waitFor();

    await page.getByTestId("chat-input").fill("add a quick start section to the README of https://github.com/acme/widgets");
    await page.getByTestId("send").click();
    await page.getByText("Shall I go ahead?").waitFor();
    await page.getByTestId("chat-input").fill("yes");
    await page.getByTestId("chat-input").press("Enter");
    await page.getByTestId("projects-list").getByText("acme/widgets").waitFor();
    await page.getByTestId("task-card").first().waitFor();
    // Each reply is one bubble (streamed into, then completed), never a second copy.
    await page.getByText("I'll plan it in a GitHub issue").waitFor();
    const replies = page.getByTestId("message-assistant");
    assert.equal(await replies.count(), 2);
    assert.ok(await replies.nth(1).getAttribute("data-message-id"));

    // The plan arrives live (no reload) and is approved in the inbox.
    await page.getByTestId("task-badge").getByText("REVIEW PLAN").waitFor();
    await page.getByTestId("plan").getByText("# Plan:").waitFor();
    await page.getByTestId("approve-plan").click();

    // Implementation, red CI, fix, green CI: the inbox says the code is ready, with the PR.
    await page.locator('[data-testid="queue-item"][data-type="code_ready"]').waitFor({ timeout: 120_000 });
    const pr = page.locator('[data-testid="queue-item"][data-type="code_ready"] a', { hasText: "View PR" });
    const prUrl = await pr.getAttribute("href");
    assert.ok(prUrl.startsWith(githubUrl), prUrl);
    await page.getByTestId("task-badge").getByText("REVIEW").waitFor();

    // Merge on the (fake) GitHub page, as a person would.
    const github = await browser.newPage();
    await github.goto(prUrl);
    await github.locator("#merge").click();
    await github.locator("#status", { hasText: "merged" }).waitFor();

    await page.getByTestId("task-badge").getByText("DONE").waitFor({ timeout: 60_000 });
    await page.locator('[data-testid="queue-item"]').first().waitFor({ state: "detached" });
    await page.screenshot({ path: join(tmpdir(), "mainloop-journey-done.png"), fullPage: true });
  } catch (error) {
    // Say what the page and the API showed, so a failure can be understood from the log.
    const pages = browser.contexts().flatMap((c) => c.pages());
    const shown = pages.length ? await pages[0].locator("body").innerText().catch(() => "?") : "no page";
    const tasks = await fetch(`http://127.0.0.1:${port}/tasks`).then((r) => r.text()).catch((e) => String(e));
    console.error(`page showed:\n${shown}\n/tasks: ${tasks}`);
    throw error;
  } finally {
    await browser.close();
    if (child) {
      child.kill("SIGINT");
      await new Promise((resolve) => child.on("exit", resolve));
    }
    rmSync(dataDir, { recursive: true, force: true });
  }
});
