// Starts the app: the shell, the live feed (which loads the state once connected) and, where
// the browser can, the service worker that makes mainloop installable and reachable offline.
import { mount } from "svelte";
import App from "./App.svelte";
import { live } from "./lib/live.svelte";
import "./app.css";

const target = document.getElementById("app");
if (target) mount(App, { target });
live.start();
live.watch();

if ("serviceWorker" in navigator && window.isSecureContext) {
  navigator.serviceWorker.register("/sw.js").catch((error) => console.warn("mainloop: no service worker", error));
}
