// mainloop's web client: chat on the left, the inbox (queue items and task cards) on the right,
// kept live by the /events feed. Everything from models and GitHub is shown as text, never as
// HTML, so nothing in a plan or a reply can run in the page.
"use strict";

const BADGES = {
  pending: "PENDING", planning: "PLANNING", waiting_questions: "NEEDS INPUT", waiting_plan_review: "REVIEW PLAN",
  ready_to_implement: "READY", implementing: "IMPLEMENTING", under_review: "REVIEW", completed: "DONE",
  failed: "FAILED", cancelled: "CANCELLED",
};
const ACTIVE = new Set(["pending", "planning", "waiting_questions", "waiting_plan_review", "ready_to_implement", "implementing", "under_review"]);
let conversationId = null;

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "onclick") node.addEventListener("click", value);
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: options.body ? { "content-type": "application/json" } : {},
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    $("status").textContent = body.detail || `request failed (${response.status})`;
    throw new Error(body.detail || response.statusText);
  }
  $("status").textContent = "";
  return body;
}

function showMessage(role, content) {
  const who = role === "user" ? "$ user@mainloop" : "> claude@mainloop";
  const node = el("div", { class: `message ${role}`, "data-testid": `message-${role}` }, el("span", { class: "who", text: who }), el("span", { text: content }));
  $("messages").append(node);
  node.scrollIntoView({ block: "end" });
  return node;
}

async function loadChat() {
  const { conversations } = await api("/conversations");
  if (!conversations.length) return;
  conversationId = conversations[0].id;
  const { messages } = await api(`/conversations/${conversationId}`);
  for (const m of messages) showMessage(m.role, m.content);
}

// The reply being written: the bubble that shows "processing _" until its first words arrive.
let waiting = null;

/// The bubble of reply `id`: the one already showing it, else the waiting one, now named.
function replyBubble(id) {
  const shown = document.querySelector(`[data-message-id="${CSS.escape(id)}"]`);
  if (shown) return shown;
  if (!waiting) return null;
  const bubble = waiting;
  waiting = null;
  bubble.dataset.messageId = id;
  bubble.lastChild.textContent = "";
  return bubble;
}

function showReply(message) {
  const bubble = replyBubble(message.id) || showMessage("assistant", "");
  bubble.dataset.messageId = message.id;
  bubble.lastChild.textContent = message.content;
  bubble.scrollIntoView({ block: "end" });
}

async function send(event) {
  event.preventDefault();
  const text = $("input").value.trim();
  if (!text) return;
  $("input").value = "";
  const mine = showMessage("user", text);
  waiting = showMessage("assistant", "processing _");
  try {
    const reply = await api("/chat", { method: "POST", body: JSON.stringify({ message: text, conversation_id: conversationId ?? undefined }) });
    conversationId = reply.conversation_id;
    showReply(reply.message);
    refreshProjects();
  } catch (error) {
    if (waiting) waiting.remove();
    waiting = null;
    mine.append(el("span", { class: "muted", text: "  (not sent: " + error.message + ")" }));
  }
}

function link(href, label) {
  return href ? el("a", { href, target: "_blank", rel: "noopener", text: label }) : null;
}

function taskCard(task) {
  const card = el("div", { class: "card task", "data-testid": "task-card", "data-status": task.status },
    el("div", { class: "row" },
      el("span", { class: `badge ${task.status}`, "data-testid": "task-badge", text: BADGES[task.status] || task.status }),
      el("span", { text: task.description.slice(0, 60) })),
    el("div", { class: "row muted" },
      el("span", { text: (task.repo_url || "").replace("https://github.com/", "") }),
      link(task.issue_url, `Issue #${task.issue_number}`),
      link(task.pr_url, `PR #${task.pr_number}`)));
  if (task.status === "waiting_plan_review" && task.plan_text) {
    const revision = el("input", { placeholder: "What should change?", "data-testid": "revision-input" });
    card.append(
      el("pre", { "data-testid": "plan", text: task.plan_text }),
      el("div", { class: "row" },
        el("button", { class: "primary", "data-testid": "approve-plan", text: "Approve Plan",
          onclick: () => act(`/tasks/${task.id}/approve-plan?action=approve&plan_revision=${task.plan_revision}`) }),
        revision,
        el("button", { text: "Revise", onclick: () => revision.value.trim() &&
          act(`/tasks/${task.id}/approve-plan?action=revise&plan_revision=${task.plan_revision}&revision_text=${encodeURIComponent(revision.value)}`) })));
  }
  if (task.waiting_for) {
    card.append(el("div", { class: "row muted", "data-testid": "waiting-for", text: "⏳ " + task.waiting_for }));
  }
  if (task.status === "waiting_questions" && task.pending_questions) card.append(questions(task));
  if (task.status === "failed") {
    card.append(el("div", { class: "row" }, el("span", { class: "muted", text: task.error || "" }),
      el("button", { text: "Retry", onclick: () => act(`/tasks/${task.id}/retry`) })));
  }
  if (ACTIVE.has(task.status)) {
    card.append(el("div", { class: "row" }, el("button", { text: "Cancel", "data-testid": "cancel-task",
      onclick: () => confirm("Cancel this task?") && act(`/tasks/${task.id}/cancel`) })));
  }
  return card;
}

function questions(task) {
  const answers = {};
  const box = el("div", { "data-testid": "questions" });
  for (const q of task.pending_questions) {
    const chosen = el("span", { class: "muted" });
    const custom = el("input", { placeholder: "Or type an answer" });
    custom.addEventListener("change", () => { answers[q.id] = custom.value; chosen.textContent = "✓ " + custom.value; });
    box.append(el("p", { text: q.question }), el("div", { class: "row" },
      ...q.options.map((o) => el("button", { text: o.label, onclick: () => { answers[q.id] = o.label; chosen.textContent = "✓ " + o.label; } })),
      custom, chosen));
  }
  box.append(el("button", { class: "primary", text: "Continue →", onclick: () =>
    act(`/tasks/${task.id}/answer-questions`, { answers, action: "answer" }) }));
  return box;
}

function queueItem(item) {
  const card = el("div", { class: `card priority-${item.priority}`, "data-testid": "queue-item", "data-type": item.item_type },
    el("strong", { text: item.title }));
  if (item.item_type === "plan_review") card.append(el("pre", { text: item.content }));
  else card.append(el("div", { class: "muted", text: item.content }));
  const row = el("div", { class: "row" }, link(item.context && item.context.pr_url, "View PR"));
  for (const option of item.options || []) {
    if (option === "Request changes") continue;
    row.append(el("button", { text: option, onclick: () => act(`/queue/${item.id}/respond`, { response: option }) }));
  }
  card.append(row);
  return card;
}

async function act(path, body) {
  try {
    await api(path, { method: "POST", body: body ? JSON.stringify(body) : undefined });
  } finally {
    refresh();
  }
}

async function refreshTasks() {
  const tasks = await api("/tasks");
  const recent = tasks.filter((t) => ACTIVE.has(t.status) || t.status === "failed" ||
    (t.completed_at && Date.now() - new Date(t.completed_at) < 30 * 60 * 1000));
  $("tasks").replaceChildren(...recent.map(taskCard));
  const active = tasks.filter((t) => ACTIVE.has(t.status)).length;
  $("attention").hidden = active === 0;
  $("attention").textContent = active > 99 ? "99+" : String(active);
  return recent.length;
}

// Items that need nothing from the person; folded away below what does.
const NOTIFICATIONS = new Set(["notification", "feedback_addressed"]);

function notificationList(items) {
  const folded = el("details", { "data-testid": "notifications" },
    el("summary", { class: "muted", text: `Notifications (${items.length})` }));
  for (const item of items) {
    folded.append(el("div", { class: "card notification", "data-testid": "notification", "data-type": item.item_type },
      el("strong", { text: item.title }), el("div", { class: "muted", text: item.content })));
  }
  return folded;
}

async function refreshQueue() {
  const all = await api("/queue?status=pending");
  const items = all.filter((item) => !NOTIFICATIONS.has(item.item_type));
  const notes = all.filter((item) => NOTIFICATIONS.has(item.item_type));
  $("queue").replaceChildren(...items.map(queueItem), ...(notes.length ? [notificationList(notes)] : []));
  const { count } = await api("/queue/unread/count");
  $("unread").textContent = count ? `(${count})` : "";
  return items.length;
}

async function refreshProjects() {
  const projects = await api("/projects");
  $("projects").replaceChildren(...projects.map((p) => el("li", { text: p.full_name })));
}

async function refresh() {
  const [queued, shown] = await Promise.all([refreshQueue(), refreshTasks()]);
  $("empty").hidden = queued + shown > 0;
}

function listen() {
  const events = new EventSource("/events");
  // A new task may bring a new project, which the inbox records a moment after the chat's reply.
  events.addEventListener("task:updated", () => { refresh(); refreshProjects().catch(() => {}); });
  events.addEventListener("inbox:updated", () => refresh());
  // The reply as it is written, then once whole.
  events.addEventListener("chat:delta", (event) => {
    const delta = JSON.parse(event.data);
    if (conversationId && delta.conversation_id !== conversationId) return;
    const bubble = replyBubble(delta.message_id);
    if (!bubble) return;
    bubble.lastChild.textContent += delta.text;
    bubble.scrollIntoView({ block: "end" });
  });
  events.addEventListener("chat:message", (event) => {
    const done = JSON.parse(event.data);
    if (!conversationId || done.conversation_id === conversationId) showReply(done.message);
  });
}

$("composer").addEventListener("submit", send);
$("input").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) send(event);
});
listen();
loadChat().catch(() => {});
refresh().catch(() => {});
refreshProjects().catch(() => {});
