// The whole journey against the demo: the person chats (the reply streams into one bubble),
// confirms, approves the plan, follows the live log, sees the code ready with its pull request,
// merges it on the (fake) GitHub page, and the task reaches DONE.
import { expect, openChat, openInbox, screen, test } from "./fixtures";

test("chat, confirm, approve, follow the log, merge: the task reaches DONE", async ({ app: page, mobile, browser, request }) => {
  await openInbox(page, mobile);
  await expect(page.getByText("All caught up")).toBeVisible();
  await openChat(page, mobile);

  const input = page.getByTestId("command-input");
  // Every text the reply's bubble shows on its way, to see it grow as it streams.
  await page.evaluate(() => {
    const seen: string[] = [];
    (window as unknown as { replyTexts: string[] }).replyTexts = seen;
    new MutationObserver(() => {
      const text = document.querySelector('[data-testid="message-assistant"] .content')?.textContent ?? "";
      if (text && seen.at(-1) !== text) seen.push(text);
    }).observe(document.body, { subtree: true, childList: true, characterData: true });
  });
  // The fake model holds its answer to this message after the first words until released, so
  // the page is seen showing part of the reply however loaded the machine is.
  const anthropic = process.env.MAINLOOP_ANTHROPIC_URL;
  const marker = `(journey ${Date.now()}-${Math.random().toString(36).slice(2, 8)})`;
  expect((await request.post(`${anthropic}/_control/hold`, { data: { contains: marker } })).ok()).toBeTruthy();
  await input.fill(`add a quick start section to the README of https://github.com/acme/widgets ${marker}`);
  await page.getByRole("button", { name: "EXEC" }).click();
  const bubble = page.getByTestId("message-assistant").locator(".content");
  await expect(bubble).not.toBeEmpty();
  await expect(bubble).not.toContainText("Shall I go ahead?");
  expect((await request.post(`${anthropic}/_control/release`, { data: { contains: marker } })).ok()).toBeTruthy();
  await expect(page.getByText("Shall I go ahead?")).toBeVisible();
  const texts = await page.evaluate(() => (window as unknown as { replyTexts: string[] }).replyTexts);
  expect(texts.length, texts.join(" | ")).toBeGreaterThan(1);
  // The same bubble grew from its first words to the whole reply.
  expect(texts.at(-1)?.startsWith(texts[0].trim()), texts.join(" | ")).toBe(true);
  expect(texts[0].length).toBeLessThan(texts.at(-1)?.length ?? 0);
  expect(texts.at(-1)).toContain("Shall I go ahead?");
  await input.fill("yes");
  await input.press("Enter");
  await expect(page.getByText("I'll plan it in a GitHub issue")).toBeVisible();
  // Each reply is one bubble (streamed into, then completed), never a second copy.
  const replies = page.getByTestId("message-assistant");
  await expect(replies).toHaveCount(2);
  await expect(replies.nth(1)).toHaveAttribute("data-message-id", /.+/);
  await expect(replies.nth(1)).toHaveAttribute("data-state", "done");
  await screen(page, "chat");

  // The plan arrives live (no reload), rendered, and is approved in the inbox.
  await openInbox(page, mobile);
  if (!mobile) await expect(page.getByTestId("projects-list").getByText("acme/widgets")).toBeVisible();
  const card = page.getByTestId("task-card").first();
  await expect(card.getByTestId("task-badge")).toHaveText("REVIEW PLAN", { timeout: 120_000 });
  await expect(card.getByTestId("plan").getByRole("heading").first()).toContainText("Plan");
  await screen(page, "plan-review");

  // The planning job's log, opened before approving, keeps following: the implementation's
  // lines arrive in the same (never reloaded) log.
  await card.getByTestId("show-log").click();
  const log = card.getByTestId("task-log");
  await expect(log.locator(".line").first()).toBeVisible();
  const planned = await log.locator(".line").count();
  await log.evaluate((node) => node.setAttribute("data-opened-before-approval", "yes"));
  await card.getByTestId("approve-plan").click();
  await expect(card.getByTestId("task-badge")).toHaveText(/IMPLEMENTING|REVIEW/);
  await expect.poll(() => log.locator(".line").count(), { timeout: 120_000 }).toBeGreaterThan(planned);
  await expect(log).toHaveAttribute("data-opened-before-approval", "yes");
  await screen(page, "live-log");

  // Red CI, a fix, green CI: the inbox says the code is ready, with the PR.
  const ready = page.locator('[data-testid="queue-item"][data-type="code_ready"]');
  await expect(ready).toBeVisible({ timeout: 180_000 });
  const prUrl = await ready.getByRole("link", { name: "View PR" }).getAttribute("href");
  expect(prUrl?.startsWith(process.env.MAINLOOP_GITHUB_URL ?? "-")).toBeTruthy();
  await expect(card.getByTestId("task-badge")).toHaveText("REVIEW");
  await expect(ready.getByTestId("ci-state")).toHaveText("passed");
  await expect(ready.getByTestId("files-changed").locator("li")).toHaveText([/^README\.md \+\d+ −\d+$/]);
  await screen(page, "code-ready");

  // Merged on the (fake) GitHub page, as a person would.
  const github = await browser.newPage();
  await github.goto(prUrl ?? "");
  await github.locator("#merge").click();
  await expect(github.locator("#status")).toContainText("merged");
  await github.close();

  await expect(page.getByTestId("task-card").first().getByTestId("task-badge")).toHaveText("DONE", { timeout: 60_000 });
  await expect(ready).toHaveCount(0);
});
