// Installable and usable offline: the manifest names the app, the service worker takes over,
// and with the network gone the app's shell still opens (and says it is not live).
import { expect, test } from "./fixtures";

test("a manifest, a service worker, and the shell offline", async ({ app: page, context, request }) => {
  const manifest = await (await request.get("/manifest.webmanifest")).json();
  expect([manifest.name, manifest.display, manifest.start_url]).toEqual(["mainloop", "standalone", "/"]);
  await expect.poll(() => page.evaluate(async () => Boolean((await navigator.serviceWorker.ready).active))).toBe(true);
  // The worker controls the page from its next load on.
  await page.reload();
  await expect.poll(() => page.evaluate(() => Boolean(navigator.serviceWorker.controller))).toBe(true);
  await context.setOffline(true);
  await page.reload();
  await expect(page.getByRole("heading", { name: "$ mainloop" })).toBeVisible();
  await expect(page.getByTestId("connection")).not.toHaveAttribute("data-state", "live");
  await context.setOffline(false);
  await expect(page.getByTestId("connection")).toHaveAttribute("data-state", "live", { timeout: 60_000 });
});
