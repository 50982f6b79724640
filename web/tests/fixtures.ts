// What every browser test starts from: its own person (X-User-ID on every request the page
// and its service worker make, the event feeds included), the app open and showing its inbox, and helpers to seed
// tasks through the test-mode endpoints and to save screenshots.
import { test as base, expect, type Page } from "@playwright/test";

export interface SeedQuestion { id?: string; header?: string; question: string; options: { label: string; description?: string }[]; multi_select?: boolean }
export interface Seed { status: string; description: string; repo_url?: string; plan?: string; questions?: SeedQuestion[] }

interface Fixtures {
  user: string;
  app: Page;
  seed: (seed: Seed) => Promise<string>;
  mobile: boolean;
}

export const test = base.extend<Fixtures>({
  baseURL: async ({}, use) => use(process.env.MAINLOOP_URL),
  user: async ({}, use) => use(`test-${Date.now()}-${Math.random().toString(36).slice(2, 11)}`),
  mobile: async ({ isMobile }, use) => use(isMobile),
  // On every request of the browser context: its pages, event feeds and service worker.
  extraHTTPHeaders: async ({ user }, use) => use({ "X-User-ID": user }),
  app: async ({ page }, use) => {
    await page.goto("/");
    await expect(page.getByRole("heading", { name: "$ mainloop" })).toBeVisible();
    await expect(page.getByTestId("connection")).toHaveAttribute("data-state", "live");
    await use(page);
  },
  seed: async ({ request, user }, use) => {
    await use(async (seed) => {
      const post = () => request.post("/internal/test/seed-task", {
        headers: { "X-User-ID": user },
        data: { task_type: "feature", repo_url: "https://github.com/test/repo", ...seed },
      });
      let response = await post();
      // A person's commands are rate-limited; a suite seeding many waits as asked.
      while (response.status() === 429) {
        await new Promise((resolve) => setTimeout(resolve, 1000 * Number(response.headers()["retry-after"] ?? 1)));
        response = await post();
      }
      expect(response.ok(), await response.text()).toBeTruthy();
      const { task_id } = await response.json();
      return task_id as string;
    });
  },
});

/// Shows the inbox: on a phone, its tab; on a desktop it is always there.
export async function openInbox(page: Page, mobile: boolean): Promise<void> {
  if (mobile) await page.getByTestId("tab-inbox").click();
  await expect(page.getByRole("heading", { name: "[INBOX]" })).toBeVisible();
}

export async function openChat(page: Page, mobile: boolean): Promise<void> {
  if (mobile) await page.getByTestId("tab-chat").click();
  await expect(page.getByTestId("command-input")).toBeVisible();
}

/// Saves a screenshot of what the page shows now as test-results/screens/<name>-<project>.png.
export async function screen(page: Page, name: string): Promise<void> {
  const project = test.info().project.name;
  await page.screenshot({ path: `test-results/screens/${name}-${project}.png`, fullPage: false });
}

export { expect };
