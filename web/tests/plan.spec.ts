// Reviewing a plan in the inbox: approved (the task is ready to implement, and says so), or
// sent back with what should change (the task plans again with that feedback).
import { expect, openInbox, screen, test } from "./fixtures";

const PLAN = "# Plan: rate limiting\n\n## Steps\n1. Add a limiter\n2. Test it\n\n`code` and **bold**";

test("a plan approved", async ({ app: page, mobile, seed }) => {
  const task = await seed({ status: "waiting_plan_review", description: "Add rate limiting", plan: PLAN });
  await openInbox(page, mobile);
  const card = page.locator(`[data-testid="task-card"][data-task-id="${task}"]`);
  await expect(card.getByTestId("task-badge")).toHaveText("REVIEW PLAN");
  await expect(card.getByTestId("plan").getByRole("heading", { name: "Plan: rate limiting" })).toBeVisible();
  await expect(card.getByTestId("plan").locator("ol li")).toHaveText(["Add a limiter", "Test it"]);
  await card.getByRole("button", { name: "Approve Plan" }).click();
  await expect(card.getByTestId("task-badge")).toHaveText("READY");
  await expect(card.getByRole("button", { name: "Start Implementation →" })).toBeVisible();
});

test("a plan revised", async ({ app: page, mobile, seed, request, user }) => {
  const task = await seed({ status: "waiting_plan_review", description: "Add rate limiting", plan: PLAN });
  await openInbox(page, mobile);
  const card = page.locator(`[data-testid="task-card"][data-task-id="${task}"]`);
  await card.getByTestId("revision-input").fill("Limit per API key, not per IP");
  const sent = page.waitForRequest((r) => r.url().includes(`/tasks/${task}/approve-plan`));
  await card.getByRole("button", { name: "Revise" }).click();
  const url = new URL((await sent).url());
  expect(url.searchParams.get("action")).toBe("revise");
  expect(url.searchParams.get("revision_text")).toBe("Limit per API key, not per IP");
  await expect(card.getByTestId("task-badge")).toHaveText("PLANNING");
  const history = await (await request.get(`/tasks/${task}/history`, { headers: { "X-User-ID": user } })).json();
  expect(history.map((h: { event_type: string }) => h.event_type)).toContain("PlanRevisionRequested");
});
