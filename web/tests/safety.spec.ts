// What models and GitHub write is shown, never run: a plan and a chat message holding a
// <script>, an onerror image and javascript: links render as inert text and links without a
// target, and nothing in them executes.
import { expect, openChat, openInbox, test } from "./fixtures";

const HOSTILE = [
  "# Plan",
  "<script>window.__pwned = 'script'</script>",
  "<img src=x onerror=\"window.__pwned = 'img'\">",
  "[click me](javascript:window.__pwned='link')",
  "<a href=\"javascript:window.__pwned='raw'\">raw link</a>",
  "[a real link](https://example.com/docs)",
].join("\n\n");

test("script and javascript: links in a plan and in chat are inert", async ({ app: page, mobile, seed }) => {
  const task = await seed({ status: "waiting_plan_review", description: "Hostile plan", plan: HOSTILE });
  await openInbox(page, mobile);
  const plan = page.locator(`[data-testid="task-card"][data-task-id="${task}"]`).getByTestId("plan");
  await expect(plan).toContainText("<script>window.__pwned = 'script'</script>");
  await expect(plan.locator("script, img, iframe")).toHaveCount(0);
  await expect(plan.getByText("click me")).toBeVisible();
  expect(await plan.getByText("click me").getAttribute("href")).toBeNull();
  await expect(plan.getByRole("link", { name: "a real link" })).toHaveAttribute("href", "https://example.com/docs");
  await expect(plan.getByRole("link", { name: "a real link" })).toHaveAttribute("rel", "noopener noreferrer");
  await plan.getByText("click me").click();

  await openChat(page, mobile);
  await page.getByTestId("command-input").fill("<script>window.__pwned = 'chat'</script>\n\n[x](javascript:window.__pwned='chat-link')");
  await page.getByTestId("command-input").press("Enter");
  const mine = page.getByTestId("message-user").last();
  await expect(mine).toContainText("<script>window.__pwned = 'chat'</script>");
  await expect(mine.locator("script")).toHaveCount(0);
  expect(await mine.getByText("x", { exact: true }).getAttribute("href")).toBeNull();
  await mine.getByText("x", { exact: true }).click();
  await expect(page.getByTestId("message-assistant").last()).toHaveAttribute("data-state", "done");
  expect(await page.evaluate(() => (window as unknown as { __pwned?: string }).__pwned)).toBeUndefined();
});
