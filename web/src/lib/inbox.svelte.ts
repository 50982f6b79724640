// What the inbox shows, kept live: the person's tasks and pending queue items, the unread count
// and the projects. Loaded over REST a page at a time, then patched from each SSE event (one
// task or one item refetched, never the whole list), so what the person is typing survives.
import { api, PAGE, type Project, type QueueItem, type Task, type TaskStatus } from "./api";

export const ACTIVE: ReadonlySet<TaskStatus> = new Set([
  "pending", "planning", "waiting_questions", "waiting_plan_review", "ready_to_implement", "implementing", "under_review",
]);
/// Items that need nothing from the person; folded away below what does.
export const NOTIFICATIONS: ReadonlySet<string> = new Set(["notification", "feedback_addressed"]);
const PRIORITY = { urgent: 0, high: 1, normal: 2, low: 3 } as const;

export interface TaskUpdate { task_id: string; status: TaskStatus; description?: string; issue_url?: string | null; pr_url?: string | null; error?: string | null }
export interface InboxUpdate { item_id?: string; change?: "added" | "resolved" | "read"; unread_count?: number | null }

class Inbox {
  tasks = $state<Task[]>([]);
  items = $state<QueueItem[]>([]);
  unread = $state(0);
  projects = $state<Project[]>([]);
  /// The project the inbox is narrowed to, or null for all.
  project = $state<string | null>(null);
  moreTasks = $state(false);
  moreItems = $state(false);
  loaded = $state(false);
  /// The task a notification opened: its card opens and scrolls into view.
  focus = $state<string | null>(null);
  error = $state<string | null>(null);

  attention = $derived(this.tasks.filter((t) => ACTIVE.has(t.status)).length + this.unread);

  async load(): Promise<void> {
    try {
      const [tasks, items, unread, projects] = await Promise.all([
        api.tasks({ project_id: this.project }), api.queue(), api.unreadCount(), api.projects(),
      ]);
      this.tasks = tasks;
      this.moreTasks = tasks.length === PAGE;
      this.items = sortItems(items);
      this.moreItems = items.length === PAGE;
      this.unread = unread.count;
      this.projects = projects;
      this.error = null;
      this.loaded = true;
    } catch (error) {
      this.error = (error as Error).message;
    }
  }

  async filter(project: string | null): Promise<void> {
    this.project = project;
    const tasks = await api.tasks({ project_id: project });
    if (this.project !== project) return;
    this.tasks = tasks;
    this.moreTasks = tasks.length === PAGE;
  }

  async olderTasks(): Promise<void> {
    const last = this.tasks.at(-1);
    if (!last) return;
    const page = await api.tasks({ project_id: this.project, before: last.id });
    this.tasks = [...this.tasks, ...page.filter((t) => !this.tasks.some((known) => known.id === t.id))];
    this.moreTasks = page.length === PAGE;
  }

  async olderItems(): Promise<void> {
    const last = this.items.at(-1);
    if (!last) return;
    const page = await api.queue(last.id);
    this.items = sortItems([...this.items, ...page.filter((i) => !this.items.some((known) => known.id === i.id))]);
    this.moreItems = page.length === PAGE;
  }

  async refreshProjects(): Promise<void> {
    this.projects = await api.projects();
  }

  /// A `task:updated` event: the status changes at once, then the whole task is fetched.
  async taskUpdated(update: TaskUpdate): Promise<void> {
    const index = this.tasks.findIndex((t) => t.id === update.task_id);
    if (index >= 0) this.tasks[index] = { ...this.tasks[index], status: update.status };
    let task: Task;
    try {
      task = await api.task(update.task_id);
    } catch {
      return;
    }
    if (this.project && task.project_id !== this.project) return;
    const now = this.tasks.findIndex((t) => t.id === task.id);
    // Two fetches may answer out of order: the newer version of the task wins.
    if (now >= 0 && (this.tasks[now].updated_at ?? "") > (task.updated_at ?? "")) return;
    if (now >= 0) this.tasks[now] = task;
    else {
      this.tasks = [task, ...this.tasks].sort((a, b) => b.created_at.localeCompare(a.created_at));
      if (!this.projects.some((p) => p.id === task.project_id)) this.refreshProjects().catch(() => {});
    }
  }

  /// An `inbox:updated` event: one item added, resolved or read.
  async inboxUpdated(update: InboxUpdate): Promise<void> {
    if (typeof update.unread_count === "number") this.unread = update.unread_count;
    const id = update.item_id;
    if (!id) return;
    if (update.change === "resolved") {
      this.items = this.items.filter((i) => i.id !== id);
      return;
    }
    let item: QueueItem;
    try {
      item = await api.queueItem(id);
    } catch {
      return;
    }
    const rest = this.items.filter((i) => i.id !== id);
    this.items = item.status === "pending" ? sortItems([...rest, item]) : rest;
  }

  /// Takes an item out at once when the person answers it (the event confirms it later).
  settled(item: string): void {
    this.items = this.items.filter((i) => i.id !== item);
  }
}

function sortItems(items: QueueItem[]): QueueItem[] {
  return items.sort((a, b) => PRIORITY[a.priority] - PRIORITY[b.priority] || b.created_at.localeCompare(a.created_at));
}

export const inbox = new Inbox();
