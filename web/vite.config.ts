// Builds the client into `dist/` (or MAINLOOP_WEB_OUT, where the gateway's build script asks),
// which the gateway compiles into the binary. `npm run dev` proxies the API to a running
// `mainloop up` (MAINLOOP_URL, default http://127.0.0.1:8080).
import { defineConfig } from "vite";
import { svelte } from "@sveltejs/vite-plugin-svelte";

const api = process.env.MAINLOOP_URL ?? "http://127.0.0.1:8080";
const routes = ["/chat", "/conversations", "/tasks", "/queue", "/projects", "/events", "/login", "/logout", "/push", "/api"];

export default defineConfig({
  plugins: [svelte()],
  build: {
    outDir: process.env.MAINLOOP_WEB_OUT ?? "dist",
    emptyOutDir: true,
    target: "es2022",
    // Hashed file names under /assets/: the gateway serves them as immutable.
    assetsDir: "assets",
  },
  server: { proxy: Object.fromEntries(routes.map((r) => [r, { target: api, changeOrigin: false }])) },
});
