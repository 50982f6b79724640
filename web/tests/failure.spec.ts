// A task that fails (the fake GitHub refuses its repository's clone with a 403, as GitHub does
// when the token lost access) shows the failure with its error, and one click retries it: the
// task goes back to work. The refusal answers one clone only, so the retried task gets on
// (a refusal that lasted would fail the retry too, and a new failure would take the old one's
// place).
import { expect, openChat, openInbox, test } from "./fixtures";

test("a failure retried in one click", async ({ app: page, mobile, request, user }) => {
  const repo = `fragile-${Date.now()}-${Math.floor(Math.random() * 1e6)}`;
  const github = process.env.MAINLOOP_GITHUB_URL;
  expect((await request.post(`${github}/_control/repos`, { data: { owner: "acme", name: repo } })).ok()).toBeTruthy();
  const fault = { route: `GIT /acme/${repo}`, status: 403, message: "Permission denied", times: 1 };
  expect((await request.post(`${github}/_control/faults`, { data: fault })).ok()).toBeTruthy();

  await openChat(page, mobile);
  const input = page.getByTestId("command-input");
  await input.fill(`add a quick start section to the README of https://github.com/acme/${repo}`);
  await input.press("Enter");
  await expect(page.getByText("Shall I go ahead?")).toBeVisible();
  await input.fill("yes");
  await input.press("Enter");
  await expect(page.getByText("I'll plan it in a GitHub issue")).toBeVisible();

  await openInbox(page, mobile);
  const card = page.getByTestId("task-card").first();
  await expect(card.getByTestId("task-badge")).toHaveText("FAILED", { timeout: 120_000 });
  const failure = page.locator('[data-testid="queue-item"][data-type="error"]');
  await expect(failure).toBeVisible();
  const task = await card.getAttribute("data-task-id");
  await failure.getByRole("button", { name: "Retry" }).click();
  await expect(failure).toHaveCount(0);
  await expect(card.getByTestId("task-badge")).not.toHaveText("FAILED");
  await expect.poll(async () => {
    const history = await (await request.get(`/tasks/${task}/history`, { headers: { "X-User-ID": user } })).json();
    return history.map((h: { event_type: string }) => h.event_type);
  }).toContain("TaskRetried");
});
