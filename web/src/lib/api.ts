// The gateway's REST API, typed. Every call goes to this origin with the session cookie; an
// error comes back as an ApiError carrying the server's own `detail`; a 401 also tells the
// session that a login is needed.
import { session } from "./session.svelte";

export type TaskStatus =
  | "pending" | "planning" | "waiting_questions" | "waiting_plan_review" | "ready_to_implement"
  | "implementing" | "under_review" | "completed" | "failed" | "cancelled";

export interface QuestionOption { label: string; description: string | null }
export interface Question {
  id: string; header: string; question: string; options: QuestionOption[];
  multi_select: boolean; response: string | null;
}

export interface Task {
  id: string; description: string; status: TaskStatus; repo_url: string | null;
  project_id: string | null; created_at: string; completed_at: string | null;
  error: string | null; issue_url: string | null; issue_number: number | null;
  pr_url: string | null; pr_number: number | null; pending_questions: Question[] | null;
  plan_text: string | null; plan_revision: number; waiting_for: string | null;
  updated_at?: string;
}

export type Priority = "urgent" | "high" | "normal" | "low";
export interface QueueItem {
  id: string; task_id: string | null; item_type: string; priority: Priority; title: string;
  content: string; context: Record<string, unknown>; options: string[] | null;
  status: string; response: string | null; read_at: string | null; created_at: string;
}

export interface Project {
  id: string; owner: string; name: string; full_name: string; description: string | null;
  avatar_url: string | null; html_url: string; last_used_at: string; open_pr_count: number;
  open_issue_count: number;
}
export interface PullSummary {
  number: number; title: string; state: string; author: string; url: string; is_mainloop: boolean;
  created_at: string; updated_at: string;
}
export interface CommitSummary { sha: string; message: string; author: string; date: string; url: string }
export interface ProjectDetail {
  project: Project; open_prs: PullSummary[]; recent_commits: CommitSummary[]; tasks: Task[];
  /// Why the pull requests and commits are missing, when GitHub could not be asked.
  github_error: string | null;
}

export interface Conversation {
  id: string; title: string | null; message_count: number; created_at: string; updated_at: string;
}
export interface Message {
  id: string; conversation_id: string; role: "user" | "assistant"; content: string; created_at: string;
}
export interface ChatReply { conversation_id: string; message: Message }

export class ApiError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  let response: Response;
  try {
    response = await fetch(path, {
      method,
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
  } catch {
    throw new ApiError(0, "mainloop cannot be reached");
  }
  const text = await response.text();
  const parsed = text ? safeJson(text) : undefined;
  if (response.status === 401) session.needed = true;
  if (!response.ok) {
    const detail = (parsed as { detail?: unknown } | undefined)?.detail;
    throw new ApiError(response.status, typeof detail === "string" ? detail : `request failed (${response.status})`);
  }
  return parsed as T;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

const q = (params: Record<string, string | number | undefined | null>) => {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) if (value != null && value !== "") search.set(key, String(value));
  const text = search.toString();
  return text ? `?${text}` : "";
};
const id = encodeURIComponent;

export const PAGE = 50;

export const api = {
  conversations: () => request<{ conversations: Conversation[]; total: number }>("GET", "/conversations"),
  createConversation: (title?: string) => request<Conversation>("POST", "/conversations", title ? { title } : {}),
  renameConversation: (conversation: string, title: string) =>
    request<Conversation>("PATCH", `/conversations/${id(conversation)}`, { title }),
  searchConversations: (text: string) => request<{ results: SearchHit[] }>("GET", `/conversations/search${q({ q: text })}`),
  conversation: (conversation: string) =>
    request<{ conversation: Conversation; messages: Message[] }>("GET", `/conversations/${id(conversation)}`),
  chat: (message: string, conversation_id?: string) => request<ChatReply>("POST", "/chat", { message, conversation_id }),

  tasks: (params: { project_id?: string | null; before?: string }) =>
    request<Task[]>("GET", `/tasks${q({ ...params, limit: PAGE })}`),
  task: (task: string) => request<Task>("GET", `/tasks/${id(task)}`),
  logs: (task: string) => request<{ logs: string; source: string; task_status: string }>("GET", `/tasks/${id(task)}/logs${q({ tail: 200 })}`),
  cancel: (task: string) => request<unknown>("POST", `/tasks/${id(task)}/cancel`),
  retry: (task: string) => request<unknown>("POST", `/tasks/${id(task)}/retry`),
  startImplementation: (task: string) => request<unknown>("POST", `/tasks/${id(task)}/start-implementation`),
  answer: (task: string, answers: Record<string, string>, action: "answer" | "cancel" = "answer") =>
    request<unknown>("POST", `/tasks/${id(task)}/answer-questions`, { answers, action }),
  reviewPlan: (task: string, action: "approve" | "revise" | "cancel", planRevision: number, revisionText?: string) =>
    request<unknown>("POST", `/tasks/${id(task)}/approve-plan${q({ action, plan_revision: planRevision, revision_text: revisionText })}`),

  queue: (before?: string) => request<QueueItem[]>("GET", `/queue${q({ status: "pending", limit: PAGE, before })}`),
  queueItem: (item: string) => request<QueueItem>("GET", `/queue/${id(item)}`),
  unreadCount: () => request<{ count: number }>("GET", "/queue/unread/count"),
  respond: (item: string, response: string) => request<unknown>("POST", `/queue/${id(item)}/respond`, { response }),

  projects: () => request<Project[]>("GET", "/projects"),
  projectDetail: (project: string) => request<ProjectDetail>("GET", `/projects/${id(project)}/detail`),
  refreshProject: (project: string) => request<unknown>("POST", `/projects/${id(project)}/refresh`),
  logout: () => request<unknown>("POST", "/logout"),
  pushKey: () => request<{ public_key: string }>("GET", "/push/key"),
  subscribePush: (subscription: PushSubscriptionJSON) => request<unknown>("POST", "/push/subscriptions", subscription),
  unsubscribePush: (endpoint: string) => request<unknown>("DELETE", "/push/subscriptions", { endpoint }),
  /// What the gateway says about itself, the way it authenticates included.
  about: () => request<{ version: string; auth_mode?: string }>("GET", "/api"),
};

export interface SearchHit {
  conversation_id: string; conversation_title: string | null; message_id: string;
  role: "user" | "assistant"; created_at: string; snippet: string;
}
