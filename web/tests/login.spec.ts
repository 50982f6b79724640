// Logging in from another device: `mainloop up --auth-mode token` prints a login URL; without
// it the API answers 401 and the app says how to log in; opening it trades the token (in the
// URL's fragment, never sent to the server) for a session cookie and lands on the app, whose
// requests then pass; logging out ends that. Its own mainloop, in token mode.
import { test, expect } from "@playwright/test";
import { startMainloop, type Running } from "./mainloop";

let mainloop: Running;

test.beforeAll(async () => {
  mainloop = await startMainloop(["--demo", "--auth-mode", "token"]);
});
test.afterAll(async () => {
  await mainloop?.stop();
});

test("login by URL, then the cookie; 401 without it", async ({ page, isMobile }) => {
  const base = mainloop.url;
  const url = mainloop.printed.match(/(http:\/\/\S+\/login#token=\S+)/)?.[1] ?? "";
  expect(url.startsWith(`${base}/login#token=`), mainloop.printed).toBeTruthy();
  const status = (path: string) => page.evaluate((p) => fetch(p).then((r) => r.status), path);

  await page.goto(`${base}/`);
  expect(await status("/tasks")).toBe(401);
  await expect(page.getByTestId("login-needed")).toBeVisible();

  const seen: string[] = [];
  page.on("request", (request) => seen.push(request.url()));
  await page.goto(url);
  await page.waitForURL(`${base}/`);
  if (isMobile) await page.getByTestId("tab-inbox").click();
  await expect(page.getByText("All caught up")).toBeVisible();
  await expect(page.getByTestId("login-needed")).toHaveCount(0);
  expect(await status("/tasks")).toBe(200);
  expect(seen.filter((address) => address.includes("token="))).toEqual([]);
  const session = (await page.context().cookies()).find((c) => c.name === "mainloop_session");
  expect(session?.httpOnly).toBe(true);
  expect(session?.sameSite).toBe("Strict");
  expect(await page.evaluate(() => document.cookie.includes("mainloop_session"))).toBe(false);

  await page.getByRole("button", { name: "Log out" }).click();
  await expect(page.getByTestId("login-needed")).toBeVisible();
  expect(await status("/tasks")).toBe(401);
});
