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
