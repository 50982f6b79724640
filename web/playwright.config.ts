// The browser suite: Playwright driving Debian's Chromium (never a downloaded browser) against
// one `mainloop up --demo --auth-mode test` that the global set-up starts, at a desktop size and
// as a Pixel 5. Each test is its own person (X-User-ID), so tests run side by side. Screenshots
// of the main screens land in test-results/screens/.
import { defineConfig, devices } from "@playwright/test";

const chromium = {
  executablePath: process.env.CHROMIUM_BIN ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
};

export default defineConfig({
  testDir: "tests",
  globalSetup: "./tests/global-setup.ts",
  fullyParallel: true,
  workers: Number(process.env.PLAYWRIGHT_WORKERS ?? 2),
  // A state is waited for, never a time; the generous limits are for a loaded machine.
  timeout: 240_000,
  expect: { timeout: 30_000 },
  retries: 0,
  reporter: [["list"]],
  use: {
    launchOptions: chromium,
    actionTimeout: 30_000,
    navigationTimeout: 30_000,
    trace: "retain-on-failure",
    screenshot: "only-on-failure",
  },
  projects: [
    { name: "desktop", use: { ...devices["Desktop Chrome"], viewport: { width: 1280, height: 800 }, launchOptions: chromium } },
    { name: "pixel-5", use: { ...devices["Pixel 5"], launchOptions: chromium } },
  ],
});
