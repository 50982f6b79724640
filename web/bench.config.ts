// The web app's benchmark (`make bench`): Playwright against `mainloop up --demo --auth-mode
// test`, one worker, printing its numbers. Not a test: it asserts nothing about time.
import { defineConfig } from "@playwright/test";
import base from "./playwright.config";

export default defineConfig({
  ...base,
  testDir: "bench",
  testMatch: /.*\.bench\.ts/,
  workers: 1,
  timeout: 600_000,
  projects: [{ name: "bench", use: base.projects?.[0]?.use }],
});
