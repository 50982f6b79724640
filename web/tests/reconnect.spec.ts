// The feed drops (the device goes offline) while tasks move on: when it is back, the browser
// resumes the feed from the last event it had (Last-Event-ID) and the moves arrive, without
// the lists being loaded again, and the text typed into another card is still there.
import { expect, openInbox, test } from "./fixtures";

test("a dropped feed resumes without losing events or the draft", async ({ app: page, context, mobile, seed, request }) => {
  const moving = await seed({ status: "waiting_plan_review", description: "Cancelled while offline", plan: "# Plan" });
  const staying = await seed({ status: "waiting_plan_review", description: "Being reviewed", plan: "# Plan" });
  await openInbox(page, mobile);
  await expect(page.locator(`[data-task-id="${moving}"]`).getByTestId("task-badge")).toHaveText("REVIEW PLAN");
  const draft = page.locator(`[data-task-id="${staying}"]`).getByTestId("revision-input");
  await draft.fill("half-typed feedback");

  const lists: string[] = [];
  page.on("request", (r) => {
    const path = new URL(r.url()).pathname;
    if (path === "/tasks" || path === "/queue") lists.push(r.url());
  });
  await context.setOffline(true);
  await expect(page.getByTestId("connection")).toHaveAttribute("data-state", "lost");
  expect((await request.post(`/tasks/${moving}/cancel`)).ok()).toBeTruthy();
  const arrived = await seed({ status: "waiting_plan_review", description: "Arrived while offline", plan: "# Plan" });
  await context.setOffline(false);

  await expect(page.getByTestId("connection")).toHaveAttribute("data-state", "live", { timeout: 60_000 });
  await expect(page.locator(`[data-task-id="${arrived}"]`).getByTestId("task-badge")).toHaveText("REVIEW PLAN");
  await expect(page.locator(`[data-task-id="${moving}"]`).getByTestId("task-badge")).toHaveText("CANCELLED");
  await expect(draft).toHaveValue("half-typed feedback");
  expect(lists).toEqual([]);
});
