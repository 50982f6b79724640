// Answering a task's questions in the inbox: one at a time ("1 of 2"), an option answers and
// moves on, a multi-select question takes several options and OK, an answer can be changed
// before Continue →, and what is sent is exactly what was chosen. The task then plans again.
import { expect, openInbox, screen, test } from "./fixtures";

const QUESTIONS = [
  { id: "q1", header: "Authentication Method", question: "Which authentication method should we use?",
    options: [{ label: "JWT tokens" }, { label: "Session cookies" }, { label: "OAuth 2.0" }] },
  { id: "q2", header: "Rate Limiting", question: "Which limits should we add?", multi_select: true,
    options: [{ label: "Per user" }, { label: "Per IP" }, { label: "Add later" }] },
];

test("questions answered through the wizard, multi-select included", async ({ app: page, mobile, seed, request, user }) => {
  const task = await seed({ status: "waiting_questions", description: "Add an API with auth", questions: QUESTIONS });
  await openInbox(page, mobile);
  const card = page.locator(`[data-testid="task-card"][data-task-id="${task}"]`);
  await expect(card.getByTestId("task-badge")).toHaveText("NEEDS INPUT");
  const wizard = card.getByTestId("questions");
  await expect(wizard.getByTestId("question-progress")).toHaveText("1 of 2");
  await screen(page, "questions");

  await wizard.getByRole("button", { name: "JWT tokens" }).click();
  await expect(wizard.getByTestId("question-progress")).toHaveText("2 of 2");
  await wizard.getByRole("checkbox", { name: "Per user" }).check();
  await wizard.getByRole("checkbox", { name: "Add later" }).check();
  await wizard.getByTestId("choose-selected").click();
  await expect(wizard.getByTestId("answered")).toHaveText([/✓ JWT tokens/, /✓ Per user, Add later/]);

  // Changed before submitting: the first answer becomes a custom one.
  await wizard.getByRole("button", { name: "Change the answer to Authentication Method" }).click();
  await expect(wizard.getByTestId("question-progress")).toHaveText("1 of 2");
  await wizard.getByTestId("custom-answer").fill("OAuth 2.0 with PKCE");
  await wizard.getByTestId("custom-answer").press("Enter");

  const sent = page.waitForRequest((r) => r.url().includes(`/tasks/${task}/answer-questions`));
  await wizard.getByRole("button", { name: "Continue →" }).click();
  expect((await sent).postDataJSON()).toEqual({
    answers: { q1: "OAuth 2.0 with PKCE", q2: "Per user, Add later" },
    action: "answer",
  });
  await expect(card.getByTestId("task-badge")).toHaveText("PLANNING");
  const stored = await (await request.get(`/tasks/${task}`, { headers: { "X-User-ID": user } })).json();
  expect(stored.pending_questions).toBeNull();
  const history = await (await request.get(`/tasks/${task}/history`, { headers: { "X-User-ID": user } })).json();
  expect(history.map((h: { event_type: string }) => h.event_type)).toContain("QuestionsAnswered");
});
