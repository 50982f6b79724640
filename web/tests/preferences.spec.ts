// The theme is remembered across reloads, and the project filter narrows the inbox to one
// repository's tasks, each choice showing its count of active tasks.
import { expect, openInbox, test } from "./fixtures";

test("the theme kept after reload", async ({ app: page }) => {
  await expect(page.locator("html")).toHaveClass("theme-eighties");
  await page.getByTestId("theme-select").selectOption("nord");
  await expect(page.locator("html")).toHaveClass("theme-nord");
  await page.reload();
  await expect(page.locator("html")).toHaveClass("theme-nord");
  await expect(page.getByTestId("theme-select")).toHaveValue("nord");
  const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  expect(background).toBe("rgb(46, 52, 64)");
});

test("the project filter", async ({ app: page, mobile, seed }) => {
  const first = await seed({ status: "waiting_plan_review", description: "Widgets task", plan: "# Plan", repo_url: "https://github.com/test/widgets" });
  const second = await seed({ status: "waiting_plan_review", description: "Gadgets task", plan: "# Plan", repo_url: "https://github.com/test/gadgets" });
  await openInbox(page, mobile);
  const cards = page.getByTestId("task-card");
  await expect(cards).toHaveCount(2);
  await page.getByRole("button", { name: "All Projects" }).click();
  const menu = page.getByTestId("project-filter-menu");
  await expect(menu.getByRole("button", { name: "test/gadgets (1)" })).toBeVisible();
  await menu.getByRole("button", { name: "test/gadgets (1)" }).click();
  await expect(cards).toHaveCount(1);
  await expect(page.locator(`[data-task-id="${second}"]`)).toBeVisible();
  await expect(page.locator(`[data-task-id="${first}"]`)).toHaveCount(0);
  await page.getByTestId("project-filter").click();
  await menu.getByRole("button", { name: /All projects/ }).click();
  await expect(cards).toHaveCount(2);
});
