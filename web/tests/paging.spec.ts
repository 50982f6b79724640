// Lists come a page at a time and nothing is cut off: with more tasks than a page holds, the
// oldest are one press away ("Show older tasks"), each shown once.
import { expect, openInbox, test } from "./fixtures";

test("more than fifty tasks: the older ones are a press away", async ({ app: page, mobile, seed, request }) => {
  const ids: string[] = [];
  for (let i = 0; i < 53; i++) ids.push(await seed({ status: "waiting_plan_review", description: `Task number ${i}`, plan: "# Plan" }));
  // Every task recorded (and its moves done) before the page loads its first page.
  await expect.poll(async () => {
    const tasks = await (await request.get("/tasks?limit=200")).json();
    return tasks.filter((t: { status: string }) => t.status === "waiting_plan_review").length;
  }).toBe(53);
  await page.reload();
  await openInbox(page, mobile);
  const cards = page.getByTestId("task-card");
  await expect(cards).toHaveCount(50);
  await expect(page.locator(`[data-task-id="${ids[0]}"]`)).toHaveCount(0);
  await page.getByTestId("older-tasks").click();
  await expect(cards).toHaveCount(53);
  await expect(page.locator(`[data-task-id="${ids[0]}"]`)).toHaveCount(1);
  await expect(page.getByTestId("older-tasks")).toHaveCount(0);
});
