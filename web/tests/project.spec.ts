// A project's page: its newest commits from GitHub (through the github-watcher, which keeps
// them a while), its tasks, and a refresh that asks GitHub again: with GitHub failing, the page
// opened again still shows what was kept, and only the refresh meets the failure.
import { expect, test } from "./fixtures";

test("the project page shows GitHub's commits and the tasks, and refreshes", async ({ app: page, seed, request }) => {
  const github = process.env.MAINLOOP_GITHUB_URL;
  const repo = `page-${Date.now()}-${Math.floor(Math.random() * 1e6)}`;
  expect((await request.post(`${github}/_control/repos`, { data: { owner: "acme", name: repo } })).ok()).toBeTruthy();
  const task = await seed({ status: "waiting_plan_review", description: "Tidy the docs", plan: "# Plan", repo_url: `https://github.com/acme/${repo}` });

  // The project appears once the inbox has recorded the task.
  const find = async () => {
    const projects = await (await request.get("/projects")).json();
    return projects.find((p: { full_name: string }) => p.full_name === `acme/${repo}`) as { id: string } | undefined;
  };
  await expect.poll(find).toBeTruthy();
  const project = (await find()) ?? { id: "" };
  await page.goto(`/#/projects/${project.id}`);
  const shown = page.getByTestId("project-page");
  await expect(shown.getByRole("heading", { name: `acme/${repo}` })).toBeVisible();
  await expect(shown.getByTestId("project-commits").locator("li")).toHaveText([/Initial commit/]);
  await expect(shown.getByTestId("project-prs")).toHaveText("none");
  await expect(shown.locator(`[data-task-id="${task}"]`)).toBeVisible();
  await expect(shown.getByTestId("github-error")).toHaveCount(0);

  const fault = { route: `GET /repos/acme/${repo}`, status: 502, message: "Server Error", for_ms: 120_000 };
  expect((await request.post(`${github}/_control/faults`, { data: fault })).ok()).toBeTruthy();
  await page.reload();
  await expect(shown.getByTestId("project-commits").locator("li")).toHaveText([/Initial commit/]);
  await expect(shown.getByTestId("github-error")).toHaveCount(0);
  await shown.getByTestId("refresh-project").click();
  await expect(shown.getByRole("alert")).toBeVisible();
});
