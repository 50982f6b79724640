// The one EventSource on `/events`. The page loads its state over REST once the feed says
// `connected` (so nothing that happens in between is missed); after a drop the browser
// reconnects with Last-Event-ID and the gateway replays what was missed, in order, once. When
// the browser gives up (the server was gone, or said 401), a new feed is opened after a pause,
// resuming from the last id seen.
import { chat, type Delta, type Said } from "./chat.svelte";
import { inbox, type InboxUpdate, type TaskUpdate } from "./inbox.svelte";

class Live {
  state = $state<"connecting" | "live" | "lost">("connecting");
  private lastId: string | null = null;
  private source: EventSource | null = null;
  private retry = 1000;

  start(): void {
    const url = this.lastId ? `/events?last_event_id=${encodeURIComponent(this.lastId)}` : "/events";
    const source = new EventSource(url);
    this.source = source;
    let opened = false;
    source.addEventListener("connected", () => {
      opened = true;
      this.state = "live";
      this.retry = 1000;
      // With no id to resume from, events may have been missed: load the inbox again. Chat
      // replies are live only, so the conversation is read again after every (re)connection.
      if (this.lastId === null) inbox.load();
      chat.load();
    });
    on<TaskUpdate>(source, "task:updated", (update, id) => {
      this.seen(id);
      inbox.taskUpdated(update);
    });
    on<InboxUpdate>(source, "inbox:updated", (update, id) => {
      this.seen(id);
      inbox.inboxUpdated(update);
    });
    on<Delta>(source, "chat:delta", (delta) => chat.delta(delta));
    on<Said>(source, "chat:message", (said) => chat.completed(said));
    source.addEventListener("error", () => {
      this.state = "lost";
      // Refused before it ever said `connected`: perhaps a login is needed (a request says so).
      if (!opened) inbox.load();
      if (source.readyState === EventSource.CLOSED) {
        setTimeout(() => this.start(), this.retry);
        this.retry = Math.min(this.retry * 2, 30_000);
      }
    });
  }

  private seen(id: string): void {
    if (id) this.lastId = id;
  }
}

function on<T>(source: EventSource, name: string, handle: (data: T, id: string) => void): void {
  source.addEventListener(name, (event) => {
    const message = event as MessageEvent<string>;
    let data: T;
    try {
      data = JSON.parse(message.data) as T;
    } catch {
      console.warn(`mainloop: an unreadable ${name} event`, message.data);
      return;
    }
    handle(data, message.lastEventId);
  });
}

export const live = new Live();
