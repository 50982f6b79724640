// Starting `mainloop up` for the browser suite: on a port that was free a moment ago (another
// server started meanwhile may take it, and then another port is tried), with its own data
// directory, resolved once it says it is running.
import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface Running { child: ChildProcess; url: string; printed: string; stop: () => Promise<void> }

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function start(binary: string, port: number, dataDir: string, args: string[]): { child: ChildProcess; ready: Promise<string> } {
  const env = { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "warn" };
  delete env.NATS_URL;
  delete env.DATABASE_URL;
  const child = spawn(binary, ["up", "--http-addr", `127.0.0.1:${port}`, "--data-dir", dataDir, ...args], {
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  let errors = "";
  child.stderr?.on("data", (chunk) => {
    errors += chunk;
    if (process.env.MAINLOOP_LOGS) process.stderr.write(chunk);
  });
  const ready = new Promise<string>((resolve, reject) => {
    child.stdout?.on("data", (chunk) => {
      output += chunk;
      if (output.includes("mainloop is running")) resolve(output);
    });
    child.on("error", reject);
    child.on("exit", (code) => reject(new Error(`mainloop up exited with ${code}:\n${output}\n${errors.slice(-4000)}`)));
  });
  return { child, ready };
}

export async function startMainloop(args: string[]): Promise<Running> {
  const binary = process.env.MAINLOOP_BIN;
  if (!binary) throw new Error("MAINLOOP_BIN must name the mainloop binary (make test-web sets it)");
  const dataDir = mkdtempSync(join(tmpdir(), "mainloop-browser-"));
  chmodSync(dataDir, 0o755);
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const { child, ready } = start(binary, port, dataDir, args);
    try {
      const printed = await ready;
      const stop = async () => {
        if (child.exitCode === null) {
          const exited = new Promise((resolve) => child.on("exit", resolve));
          child.kill("SIGINT");
          await exited;
        }
        rmSync(dataDir, { recursive: true, force: true });
      };
      return { child, url: `http://127.0.0.1:${port}`, printed, stop };
    } catch (error) {
      if (attempt < 3 && /Address already in use/.test(String(error))) continue;
      rmSync(dataDir, { recursive: true, force: true });
      throw error;
    }
  }
}
