// The conversation on screen: its messages, the person's messages on their way (shown at once,
// with an error and a retry when sending fails), and the reply being written, streamed from
// `chat:delta` events into one bubble that `chat:message` (or the POST's answer) completes. A
// `chat:retract` empties the bubble: the words were of an answer the server dropped (it had
// started before the conversation was confirmed), and the answer that replaces it follows.
import { api, ApiError, type Conversation, type Message } from "./api";

export interface Shown {
  /// The message id once the server knows it; a local id before.
  key: string;
  role: "user" | "assistant";
  content: string;
  created_at: string;
  /// Only for the person's messages: on the way, or failed with this error.
  state?: "sending" | "failed";
  error?: string;
  /// Only for a reply: still being written.
  writing?: boolean;
}

export interface Delta { conversation_id: string; message_id: string; seq?: number; text: string }
export interface Retract { conversation_id: string; message_id: string; seq?: number }
export interface Said { conversation_id: string; message: Message }

let local = 0;

class Chat {
  conversations = $state<Conversation[]>([]);
  current = $state<string | null>(null);
  messages = $state<Shown[]>([]);
  /// The draft in the composer, kept across tabs and pages.
  draft = $state("");
  error = $state<string | null>(null);
  /// The reply bubble waiting for its first words, if any.
  private waiting: Shown | null = null;

  async load(): Promise<void> {
    try {
      const { conversations } = await api.conversations();
      this.conversations = conversations;
      if (this.current === null && conversations.length) this.current = conversations[0].id;
      if (this.current) await this.open(this.current);
    } catch (error) {
      this.error = (error as Error).message;
    }
  }

  async open(conversation: string): Promise<void> {
    this.current = conversation;
    const { messages } = await api.conversation(conversation);
    if (this.current !== conversation) return;
    const sending = this.messages.filter((m) => m.state);
    this.messages = [...messages.map(shown), ...sending];
    this.waiting = null;
  }

  async startNew(): Promise<void> {
    const conversation = await api.createConversation();
    this.conversations = [conversation, ...this.conversations];
    this.current = conversation.id;
    this.messages = [];
  }

  async rename(conversation: string, title: string): Promise<void> {
    const renamed = await api.renameConversation(conversation, title);
    this.conversations = this.conversations.map((c) => (c.id === renamed.id ? { ...c, title: renamed.title } : c));
  }

  /// Sends `text` (or resends a failed message): shown at once, then the reply streams in.
  async send(text: string, retry?: Shown): Promise<void> {
    const mine: Shown = retry ?? { key: `local-${++local}`, role: "user", content: text, created_at: new Date().toISOString() };
    mine.state = "sending";
    mine.error = undefined;
    if (!retry) this.messages.push(mine);
    const reply: Shown = { key: `local-${++local}`, role: "assistant", content: "", created_at: new Date().toISOString(), writing: true };
    this.messages.push(reply);
    this.waiting = this.messages.at(-1) ?? null;
    const sentTo = this.current;
    try {
      const answer = await api.chat(text, sentTo ?? undefined);
      this.sent(this.find(mine.key), answer.conversation_id);
      this.completed({ conversation_id: answer.conversation_id, message: answer.message });
    } catch (error) {
      const failed = this.find(mine.key);
      if (failed) {
        failed.state = "failed";
        failed.error = error instanceof ApiError ? error.message : "not sent";
      }
      this.messages = this.messages.filter((m) => !(m.writing && m.content === "" && m.key === reply.key));
      this.waiting = null;
    }
  }

  private sent(mine: Shown | undefined, conversation: string): void {
    if (mine) mine.state = undefined;
    if (this.current === null) this.current = conversation;
    if (!this.conversations.some((c) => c.id === conversation)) {
      api.conversations().then(({ conversations }) => (this.conversations = conversations)).catch(() => {});
    }
  }

  /// A message sent to a new conversation learns the conversation's id from its reply's first
  /// words, which may come before the POST's answer: a message written meanwhile then goes to
  /// the same conversation, not to another new one.
  private adopt(conversation: string): void {
    if (this.current === null && this.waiting) this.current = conversation;
  }

  /// A `chat:delta` event: more words of a reply.
  delta(delta: Delta): void {
    this.adopt(delta.conversation_id);
    if (this.current && delta.conversation_id !== this.current) return;
    const bubble = this.find(delta.message_id) ?? this.claimWaiting(delta.message_id);
    if (!bubble || !bubble.writing) return;
    bubble.content += delta.text;
  }

  /// A `chat:retract` event: the reply's words so far are taken back.
  retract(retract: Retract): void {
    if (this.current && retract.conversation_id !== this.current) return;
    const bubble = this.find(retract.message_id);
    if (bubble?.writing) bubble.content = "";
  }

  /// A `chat:message` event or the POST's answer: the reply, whole.
  completed(said: Said): void {
    this.adopt(said.conversation_id);
    if (this.current && said.conversation_id !== this.current) return;
    const bubble = this.find(said.message.id) ?? this.claimWaiting(said.message.id);
    if (bubble) {
      bubble.content = said.message.content;
      bubble.created_at = said.message.created_at;
      bubble.writing = false;
    } else if (said.message.role === "assistant") {
      this.messages.push(shown(said.message));
    }
  }

  private claimWaiting(id: string): Shown | undefined {
    const waiting = this.waiting;
    if (!waiting) return undefined;
    this.waiting = null;
    const bubble = this.find(waiting.key);
    if (bubble) bubble.key = id;
    return bubble;
  }

  private find(key: string): Shown | undefined {
    return this.messages.find((m) => m.key === key);
  }
}

function shown(message: Message): Shown {
  return { key: message.id, role: message.role, content: message.content, created_at: message.created_at };
}

export const chat = new Chat();
