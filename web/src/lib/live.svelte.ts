// The one EventSource on `/events`. The page loads its state over REST once the feed says
// `connected` (so nothing that happens in between is missed); after a drop the browser
// reconnects with Last-Event-ID and the gateway replays what was missed, in order, once. When
// the browser gives up (the server was gone, or said 401), when the device goes offline, or when
// the feed has been silent past two heartbeats (a connection dead without anyone noticing, as on
// a phone changing networks), a new feed is opened, resuming from the last id seen.
import { chat, type Delta, type Retract, type Said } from "./chat.svelte";
import { inbox, type InboxUpdate, type TaskUpdate } from "./inbox.svelte";

/// The gateway says `heartbeat` after 30 s of quiet; twice that and more with nothing is a dead feed.
const SILENCE_MS = 75_000;

class Live {
  state = $state<"connecting" | "live" | "lost">("connecting");
  private lastId: string | null = null;
  private source: EventSource | null = null;
  private retry = 1000;
  private heard = Date.now();

  start(): void {
    this.source?.close();
    const url = this.lastId ? `/events?last_event_id=${encodeURIComponent(this.lastId)}` : "/events";
    const source = new EventSource(url);
    this.source = source;
    let opened = false;
    source.addEventListener("connected", () => {
      opened = true;
      this.heard = Date.now();
      this.state = "live";
      this.retry = 1000;
      // With no id to resume from, events may have been missed: load the inbox again. Chat
      // replies are live only, so the conversation is read again after every (re)connection.
      if (this.lastId === null) inbox.load();
      chat.load();
    });
    source.addEventListener("heartbeat", () => (this.heard = Date.now()));
    on<TaskUpdate>(source, "task:updated", (update, id) => {
      this.seen(id);
      inbox.taskUpdated(update);
    });
    on<InboxUpdate>(source, "inbox:updated", (update, id) => {
      this.seen(id);
      inbox.inboxUpdated(update);
    });
    on<Delta>(source, "chat:delta", (delta) => {
      this.heard = Date.now();
      chat.delta(delta);
    });
    on<Retract>(source, "chat:retract", (retract) => chat.retract(retract));
    on<Said>(source, "chat:message", (said) => chat.completed(said));
    source.addEventListener("error", () => {
      if (source !== this.source) return;
      this.state = "lost";
      // Refused before it ever said `connected`: perhaps a login is needed (a request says so).
      if (!opened) inbox.load();
      if (source.readyState === EventSource.CLOSED) this.again();
    });
  }

  /// Watches the device's connection and the feed's silence; call once.
  watch(): void {
    window.addEventListener("offline", () => {
      this.source?.close();
      this.state = "lost";
    });
    window.addEventListener("online", () => this.start());
    setInterval(() => {
      if (this.state === "live" && Date.now() - this.heard > SILENCE_MS) this.start();
    }, 15_000);
  }

  private again(): void {
    setTimeout(() => this.start(), this.retry);
    this.retry = Math.min(this.retry * 2, 30_000);
  }

  private seen(id: string): void {
    this.heard = Date.now();
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
