// mainloop's service worker. It keeps the app's shell so the page opens offline (the last
// index.html, and the hashed, never-changing files under /assets/), leaves every API call to
// the network, and shows Web Push notifications for items that need the person: a click opens
// the task, and a plan review's "Approve" action approves that revision of the plan.
const SHELL = "mainloop-shell-v1";

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(SHELL).then((cache) => cache.addAll(["/", "/theme.js", "/manifest.webmanifest", "/icon.svg"])));
  self.skipWaiting();
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((key) => key !== SHELL).map((key) => caches.delete(key))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (request.mode === "navigate") {
    // The newest page when online, the last one kept when not.
    event.respondWith(
      fetch(request)
        .then((response) => {
          if (response.ok && url.pathname === "/") caches.open(SHELL).then((cache) => cache.put("/", response.clone()));
          return response;
        })
        .catch(() => caches.match("/")),
    );
  } else if (url.pathname.startsWith("/assets/")) {
    event.respondWith(
      caches.match(request).then((kept) => kept || fetch(request).then((response) => {
        if (response.ok) caches.open(SHELL).then((cache) => cache.put(request, response.clone()));
        return response;
      })),
    );
  }
});

self.addEventListener("push", (event) => {
  let said = {};
  try {
    said = event.data ? event.data.json() : {};
  } catch {
    said = { title: "mainloop", body: event.data ? event.data.text() : "" };
  }
  const actions = said.kind === "plan_review" && said.task_id ? [{ action: "approve", title: "Approve plan" }] : [];
  event.waitUntil(
    self.registration.showNotification(said.title || "mainloop needs you", {
      body: said.body || "",
      tag: said.item_id || said.task_id || "mainloop",
      icon: "/icon.svg",
      data: said,
      actions,
    }),
  );
});

self.addEventListener("notificationclick", (event) => {
  const said = event.notification.data || {};
  event.notification.close();
  if (event.action === "approve" && said.task_id) {
    const query = new URLSearchParams({ action: "approve", plan_revision: String(said.plan_revision ?? 0) });
    event.waitUntil(
      fetch(`/tasks/${encodeURIComponent(said.task_id)}/approve-plan?${query}`, { method: "POST", credentials: "same-origin" }),
    );
    return;
  }
  const target = said.task_id ? `/#/tasks/${encodeURIComponent(said.task_id)}` : "/";
  event.waitUntil(
    self.clients.matchAll({ type: "window", includeUncontrolled: true }).then((windows) => {
      const open = windows.find((w) => new URL(w.url).origin === self.location.origin);
      if (open) return open.focus().then((w) => w.navigate(target));
      return self.clients.openWindow(target);
    }),
  );
});
