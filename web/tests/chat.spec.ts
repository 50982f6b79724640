// A message written while the first reply of a new conversation is still on its way (its words
// shown from the feed, the POST not yet answered) goes to that same conversation: the page takes
// the conversation's id from the reply's first words. The first POST's answer is held here until
// the second message has been sent, so the race is made, not waited for.
import { expect, openChat, test } from "./fixtures";

test("a reply's words name its new conversation before the POST answers", async ({ app: page, mobile, request }) => {
  const repo = `race-${Date.now()}-${Math.floor(Math.random() * 1e6)}`;
  const github = process.env.MAINLOOP_GITHUB_URL;
  expect((await request.post(`${github}/_control/repos`, { data: { owner: "acme", name: repo } })).ok()).toBeTruthy();
  const sent: { conversation_id?: string }[] = [];
  let secondSent: () => void = () => {};
  const second = new Promise<void>((resolve) => (secondSent = resolve));
  await page.route("**/chat", async (route) => {
    if (route.request().method() !== "POST") return route.continue();
    sent.push(route.request().postDataJSON());
    if (sent.length === 1) {
      const answer = await route.fetch();
      await second;
      return route.fulfill({ response: answer });
    }
    secondSent();
    return route.continue();
  });

  await openChat(page, mobile);
  const input = page.getByTestId("command-input");
  await input.fill(`add a quick start section to the README of https://github.com/acme/${repo}`);
  await input.press("Enter");
  await expect(page.getByText("Shall I go ahead?")).toBeVisible();
  await input.fill("yes");
  await input.press("Enter");
  await expect(page.getByText("I'll plan it in a GitHub issue")).toBeVisible();
  expect(sent).toHaveLength(2);
  expect(sent[0].conversation_id ?? null).toBeNull();
  expect(sent[1].conversation_id).toMatch(/^[0-9a-f-]{36}$/);
  const conversations = await (await page.request.get("/conversations")).json();
  expect(conversations.conversations).toHaveLength(1);
});

// A reply may start before the server has confirmed the conversation it answers; when that
// start proves stale the server takes its words back (`chat:retract`) and the answer given
// follows. The page shows only the answer given. The feed here is played by the test: its
// frames are the ones the gateway sends, held until the message has been posted.
test("words taken back by the server leave the bubble before the answer given", async ({ page, mobile }) => {
  const conversation = "0190f5c2-7c4a-7000-8000-00000000c0de";
  const reply = "0190f5c2-7c4a-7000-8000-0000000000a1";
  let posted: () => void = () => {};
  const post = new Promise<void>((resolve) => (posted = resolve));
  let answer: () => void = () => {};
  const answered = new Promise<void>((resolve) => (answer = resolve));
  let feeds = 0;
  await page.route("**/events*", async (route) => {
    if (++feeds > 1) return route.continue();
    await post;
    const frame = (event: string, data: object) => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
    const said = { conversation_id: conversation, message_id: reply };
    return route.fulfill({
      status: 200,
      headers: { "content-type": "text/event-stream", "cache-control": "no-cache" },
      body: "retry: 600000\n\n" +
        frame("connected", { user_id: "someone", timestamp: new Date().toISOString() }) +
        frame("chat:delta", { ...said, seq: 1, text: "Early words." }) +
        frame("chat:retract", { ...said, seq: 2 }) +
        frame("chat:delta", { ...said, seq: 3, text: "The answer." }),
    });
  });
  await page.route("**/chat", async (route) => {
    if (route.request().method() !== "POST") return route.continue();
    posted();
    await answered;
    return route.fulfill({
      json: {
        conversation_id: conversation,
        message: { id: reply, role: "assistant", content: "The answer.", created_at: new Date().toISOString() },
      },
    });
  });

  await page.goto("/");
  await openChat(page, mobile);
  const input = page.getByTestId("command-input");
  await input.fill("what now?");
  await input.press("Enter");
  const bubble = page.getByTestId("message-assistant");
  await expect(bubble).toHaveAttribute("data-state", "writing");
  await expect(bubble.locator(".content")).toHaveText("The answer.");
  answer();
  await expect(bubble).toHaveAttribute("data-state", "done");
  await expect(bubble.locator(".content")).toHaveText("The answer.");
});
