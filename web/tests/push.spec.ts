// Called back on the phone: the person turns notifications on (the page subscribes with the
// server's VAPID key and hands the subscription over), a plan waiting for review is pushed to
// the local push endpoint, which checks the VAPID signature and decrypts exactly what the
// service worker will show; delivered to the service worker, it shows a notification naming
// the task with an "Approve plan" action, and that action approves the plan.
import { expect, test } from "./fixtures";
import { PushEndpoint, type Subscription } from "./push-endpoint";

let endpoint: PushEndpoint;
test.beforeAll(async () => {
  endpoint = new PushEndpoint();
  await endpoint.start();
});
test.afterAll(async () => endpoint?.stop());

test("a push subscription, a plan review pushed to it, approved from the notification", async ({ page, context, seed, request, baseURL }) => {
  const subscription = endpoint.subscribe();
  await context.grantPermissions(["notifications"]);
  // Chromium's own push service (Google's) cannot be reached from here, so the page's
  // pushManager hands out the local endpoint's subscription, as a browser's would.
  await page.addInitScript((sub: Subscription) => {
    const given = { endpoint: sub.endpoint, expirationTime: null, toJSON: () => ({ ...sub, expirationTime: null }),
      unsubscribe: async () => true };
    let current: typeof given | null = null;
    PushManager.prototype.subscribe = async function (options?: PushSubscriptionOptionsInit) {
      const key = new Uint8Array(options?.applicationServerKey as ArrayBuffer);
      (window as unknown as { serverKey: string }).serverKey = btoa(String.fromCharCode(...key));
      current = given;
      return given as unknown as PushSubscription;
    };
    PushManager.prototype.getSubscription = async () => current as unknown as PushSubscription;
  }, subscription);
  await page.goto("/");
  await expect(page.getByTestId("connection")).toHaveAttribute("data-state", "live");

  const handedOver = page.waitForResponse((r) => r.url().endsWith("/push/subscriptions") && r.request().method() === "POST");
  await page.getByTestId("push-toggle").click();
  expect((await handedOver).status()).toBe(201);
  await expect(page.getByTestId("push-toggle")).toHaveAttribute("data-state", "on");
  const { public_key } = await (await request.get("/push/key")).json();
  const usedKey = await page.evaluate(() => (window as unknown as { serverKey: string }).serverKey);
  expect(Buffer.from(usedKey, "base64").toString("base64url")).toBe(public_key);

  const task = await seed({ status: "waiting_plan_review", description: "Add rate limiting", plan: "# Plan\n1. Limit" });
  await expect.poll(() => endpoint.received(subscription.endpoint).length, { timeout: 60_000 }).toBe(1);
  const pushed = endpoint.received(subscription.endpoint)[0] as Record<string, unknown>;
  expect(pushed).toEqual({
    title: "mainloop: A plan to review", body: "Review plan: Add rate limiting", kind: "plan_review",
    task_id: task, item_id: pushed.item_id, plan_revision: 1,
  });
  expect(endpoint.refusals).toEqual([]);

  // What the push service would hand the browser, handed to its service worker.
  // Delivered once the DevTools protocol itself reports our registration's worker activated and
  // running (a push to a worker it is still starting can be dropped).
  const cdp = await context.newCDPSession(page);
  let ours: string | null = null;
  const ready = new Promise<string>((resolve) => {
    type Version = { versionId: string; registrationId: string; status: string; runningStatus: string };
    const versions = new Map<string, Version>();
    const check = () => {
      const live = [...versions.values()].find((v) => v.registrationId === ours && v.status === "activated" && v.runningStatus === "running");
      if (live && ours) resolve(ours);
    };
    cdp.on("ServiceWorker.workerRegistrationUpdated", ({ registrations }) => {
      const found = registrations.find((r: { scopeURL: string; isDeleted: boolean }) => r.scopeURL === `${baseURL}/` && !r.isDeleted);
      if (found) ours = found.registrationId;
      check();
    });
    cdp.on("ServiceWorker.workerVersionUpdated", ({ versions: updated }) => {
      for (const version of updated as Version[]) versions.set(version.versionId, version);
      check();
    });
  });
  await cdp.send("ServiceWorker.enable");
  await cdp.send("ServiceWorker.startWorker", { scopeURL: `${baseURL}/` });
  const registrationId = await ready;
  const shown = () => page.evaluate(async () => {
    const notifications = await (await navigator.serviceWorker.ready).getNotifications();
    return notifications.map((n) => ({ title: n.title, body: n.body, tag: n.tag, actions: (n as unknown as { actions: { action: string }[] }).actions.map((a) => a.action) }));
  });
  // A loaded Chromium can drop a delivery to a worker it is restarting (one run in 600 did); the
  // push service would deliver again, so does this. The notification's tag makes a repeat
  // replace, not add.
  await expect(async () => {
    await cdp.send("ServiceWorker.deliverPushMessage", { origin: `${baseURL}/`, registrationId, data: JSON.stringify(pushed) });
    await expect.poll(shown, { timeout: 10_000 }).toEqual([{ title: "mainloop: A plan to review", body: "Review plan: Add rate limiting", tag: pushed.item_id, actions: ["approve"] }]);
  }).toPass({ timeout: 60_000 });

  // The notification's "Approve plan" button, pressed.
  const worker = context.serviceWorkers()[0] ?? (await context.waitForEvent("serviceworker"));
  await worker.evaluate(async () => {
    const scope = self as unknown as ServiceWorkerGlobalScope;
    const [notification] = await scope.registration.getNotifications();
    scope.dispatchEvent(new NotificationEvent("notificationclick", { notification, action: "approve" }));
  });
  await expect.poll(async () => (await (await request.get(`/tasks/${task}`)).json()).status).toBe("ready_to_implement");
});
