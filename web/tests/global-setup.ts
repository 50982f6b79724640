// One mainloop for the whole suite: the demo (fakes of GitHub, Claude Code and the Anthropic
// API; real NATS, Postgres and every service) in test mode, where each request names its
// person with X-User-ID and the seed endpoints answer.
import { startMainloop } from "./mainloop";

export default async function globalSetup(): Promise<() => Promise<void>> {
  const mainloop = await startMainloop(["--demo", "--auth-mode", "test"]);
  process.env.MAINLOOP_URL = mainloop.url;
  process.env.MAINLOOP_GITHUB_URL = mainloop.printed.match(/fake, at (http:\/\/[0-9.:]+)/)?.[1] ?? "";
  process.env.MAINLOOP_ANTHROPIC_URL = mainloop.printed.match(/fake Anthropic API .*, at (http:\/\/[0-9.:]+)/)?.[1] ?? "";
  return mainloop.stop;
}
