// How quickly the page follows the system, and what it costs to load.
//
// 1. Badge latency: N seeded tasks are cancelled one at a time from the page; for each, the time
//    from the request to the task's badge saying CANCELLED (MutationObserver), beside the time the
//    same `task:updated` event reaches a bare EventSource in the same page: the baseline, the
//    pipeline alone (gateway → scheduler → TASKS → inbox → INBOX → gateway → browser). Their ratio
//    is what the app's own handling (a refetch of the task, the render) adds.
// 2. Size: the JavaScript and CSS of the built app, gzipped.
// 3. First load as a Pixel 5 on a throttled mobile profile (150 ms round trips, 1.6 Mbit/s down,
//    750 kbit/s up, CPU 4× slower), beside the same load unthrottled in the same run.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { devices } from "@playwright/test";
import { test } from "../tests/fixtures";

const TASKS = Number(process.env.BENCH_TASKS ?? 60);

const quantile = (values: number[], q: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
};
const ms = (value: number) => `${value.toFixed(1)} ms`;

test("badge latency, size, throttled first load", async ({ app: page, seed, browser, baseURL }) => {
  const ids: string[] = [];
  for (let i = 0; i < TASKS; i++) ids.push(await seed({ status: "waiting_plan_review", description: `bench task ${i}`, plan: "# Plan" }));
  await page.locator(`[data-task-id="${ids[TASKS - 1]}"]`).waitFor();

  const samples = await page.evaluate(async (tasks: string[]) => {
    const feed = new EventSource("/events");
    const arrived = new Map<string, number>();
    feed.addEventListener("task:updated", (event) => {
      const update = JSON.parse((event as MessageEvent<string>).data);
      if (update.status === "cancelled" && !arrived.has(update.task_id)) arrived.set(update.task_id, performance.now());
    });
    await new Promise((resolve) => feed.addEventListener("connected", resolve, { once: true }));
    const results: { badge: number; feed: number }[] = [];
    for (const id of tasks) {
      const changed = new Promise<number>((resolve) => {
        const done = () => document.querySelector(`[data-task-id="${id}"] [data-testid="task-badge"]`)?.textContent === "CANCELLED";
        const observer = new MutationObserver(() => {
          if (done()) {
            observer.disconnect();
            resolve(performance.now());
          }
        });
        observer.observe(document.body, { subtree: true, childList: true, characterData: true });
      });
      // Commands are rate-limited per person (60 at once, 2 a second after): wait as told.
      let start = performance.now();
      while ((await fetch(`/tasks/${id}/cancel`, { method: "POST" })).status === 429) {
        await new Promise((resolve) => setTimeout(resolve, 500));
        start = performance.now();
      }
      const badge = await changed;
      while (!arrived.has(id)) await new Promise((resolve) => setTimeout(resolve, 1));
      results.push({ badge: badge - start, feed: (arrived.get(id) ?? badge) - start });
    }
    feed.close();
    return results;
  }, ids);
  const badge = samples.map((s) => s.badge);
  const feed = samples.map((s) => s.feed);
  console.log(`\nbadge latency over ${TASKS} cancellations, from the request to the badge:`);
  console.log(`  badge in the page     p50 ${ms(quantile(badge, 0.5))}  p99 ${ms(quantile(badge, 0.99))}`);
  console.log(`  event at a bare feed  p50 ${ms(quantile(feed, 0.5))}  p99 ${ms(quantile(feed, 0.99))}  (baseline)`);
  console.log(`  ratio                 p50 ${(quantile(badge, 0.5) / quantile(feed, 0.5)).toFixed(2)}  p99 ${(quantile(badge, 0.99) / quantile(feed, 0.99)).toFixed(2)}`);

  const built = process.env.MAINLOOP_WEB_DIST_DIR ?? "dist";
  const assets = readdirSync(join(built, "assets"));
  const gz = (ext: string) => assets.filter((f) => f.endsWith(ext)).reduce((sum, f) => sum + gzipSync(readFileSync(join(built, "assets", f))).length, 0);
  console.log(`\nbuilt app: JavaScript ${(gz(".js") / 1024).toFixed(1)} KB gzipped (goal ≤ 150 KB), CSS ${(gz(".css") / 1024).toFixed(1)} KB gzipped`);

  const load = async (throttled: boolean) => {
    const context = await browser.newContext({ ...devices["Pixel 5"], baseURL, extraHTTPHeaders: { "X-User-ID": `bench-load-${throttled}` } });
    const fresh = await context.newPage();
    const cdp = await context.newCDPSession(fresh);
    await cdp.send("Network.enable");
    await cdp.send("Network.setCacheDisabled", { cacheDisabled: true });
    if (throttled) {
      await cdp.send("Network.emulateNetworkConditions", { offline: false, latency: 150, downloadThroughput: (1.6 * 1024 * 1024) / 8, uploadThroughput: (750 * 1024) / 8 });
      await cdp.send("Emulation.setCPUThrottlingRate", { rate: 4 });
    }
    const start = Date.now();
    await fresh.goto("/");
    await fresh.getByRole("heading", { name: "$ mainloop" }).waitFor();
    const painted = Date.now() - start;
    await fresh.locator('[data-testid="connection"][data-state="live"]').waitFor();
    const live = Date.now() - start;
    await context.close();
    return { painted, live };
  };
  await load(false);
  const plain = await load(false);
  const slow = await load(true);
  console.log(`\nfirst load as a Pixel 5 (no cache): app shown / live`);
  console.log(`  unthrottled      ${ms(plain.painted)} / ${ms(plain.live)}  (baseline)`);
  console.log(`  throttled mobile ${ms(slow.painted)} / ${ms(slow.live)}  (ratio ${(slow.live / plain.live).toFixed(1)})`);
});
