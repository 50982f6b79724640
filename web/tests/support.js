// What the browser tests share: the binaries, and `mainloop up --demo` started on a free port.

import { spawn } from "node:child_process";
import { createServer } from "node:net";

export const MAINLOOP = process.env.MAINLOOP_BIN;
export const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
export const CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

function freePort() {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function startMainloop(port, dataDir, extra) {
  const env = { ...process.env, RUST_LOG: "warn" };
  delete env.NATS_URL;
  delete env.DATABASE_URL;
  const child = spawn(MAINLOOP, ["up", "--demo", "--http-addr", `127.0.0.1:${port}`, "--data-dir", dataDir, ...extra], {
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  let errors = "";
  child.stderr.on("data", (chunk) => {
    errors += chunk;
    process.stderr.write(chunk);
  });
  const ready = new Promise((resolve, reject) => {
    child.stdout.on("data", (chunk) => {
      output += chunk;
      if (output.includes("mainloop is running")) resolve(output);
    });
    child.on("exit", (code) => reject(new Error(`mainloop up exited with ${code}:\n${output}\n${errors}`)));
  });
  return { child, ready };
}

/// Starts mainloop on a port that was free a moment ago; another server started meanwhile (the
/// demo's own fakes bind random ports) may have taken it, and then another port is tried.
export async function startOnAFreePort(dataDir, extra = []) {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const { child, ready } = startMainloop(port, dataDir, extra);
    try {
      return { child, port, printed: await ready };
    } catch (err) {
      if (attempt < 3 && /Address already in use/.test(String(err))) continue;
      throw err;
    }
  }
}
