// The page holds still and works without a mouse: a task arriving while the person types in
// another card's box moves neither the box nor its text; every control has a name a screen
// reader can say; a plan can be approved from the keyboard alone.
import { expect, openInbox, test } from "./fixtures";

test("new work lands without moving what the person is typing in", async ({ app: page, mobile, seed }) => {
  const reading = await seed({ status: "waiting_plan_review", description: "Being read", plan: "# Plan\n\nSome steps." });
  await openInbox(page, mobile);
  const box = page.locator(`[data-task-id="${reading}"]`).getByTestId("revision-input");
  await box.fill("my thoughts so far");
  await box.focus();
  const before = await box.boundingBox();
  const arrived = await seed({ status: "waiting_plan_review", description: "Arrived meanwhile", plan: "# Plan" });
  await expect(page.locator(`[data-task-id="${arrived}"]`)).toBeVisible();
  expect(await box.boundingBox()).toEqual(before);
  await expect(box).toBeFocused();
  await expect(box).toHaveValue("my thoughts so far");
});

test("every control is named, and a plan is approved with the keyboard", async ({ app: page, mobile, seed }) => {
  const task = await seed({ status: "waiting_plan_review", description: "Keyboard review", plan: "# Plan" });
  await openInbox(page, mobile);
  const card = page.locator(`[data-task-id="${task}"]`);
  await expect(card.getByTestId("task-badge")).toHaveText("REVIEW PLAN");
  const unnamed = await page.evaluate(() => {
    const controls = [...document.querySelectorAll("button, input, select, textarea, a[href]")] as HTMLElement[];
    const named = (el: HTMLElement) => {
      const labelled = el.getAttribute("aria-label") || el.getAttribute("title") || el.textContent?.trim();
      const label = (el as HTMLInputElement).labels?.[0]?.textContent?.trim();
      return Boolean(labelled || label);
    };
    return controls.filter((el) => el.offsetParent !== null && !named(el)).map((el) => el.outerHTML.slice(0, 120));
  });
  expect(unnamed).toEqual([]);

  // From the revision box, Shift+Tab reaches Cancel then Approve Plan; Enter approves.
  await card.getByTestId("revision-input").focus();
  await page.keyboard.press("Shift+Tab");
  await page.keyboard.press("Shift+Tab");
  await expect(card.getByRole("button", { name: "Approve Plan" })).toBeFocused();
  await page.keyboard.press("Enter");
  await expect(card.getByTestId("task-badge")).toHaveText("READY");
});
