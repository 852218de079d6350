// Threads: the list, a new thread in a granted workspace, and one thread's transcript with its
// live turn (agent text painted delta by delta) and a prompt box.
import type { AppServerNotifications } from "../../clients/typescript/src/index.js";
import { ago, append, clear, errorText, h } from "./dom.js";
import type { Console, Pane } from "./main.js";

type Item = AppServerNotifications["item/completed"]["item"];
type Turn = AppServerNotifications["turn/completed"]["turn"];

export class ThreadsPane implements Pane {
  readonly id = "threads";
  readonly title = "Threads";
  readonly root = h("section", { class: "pane split", "data-testid": "threads" });
  private readonly list = h("ul", { class: "list" });
  private readonly cwd = h("select", { "data-testid": "new-thread-cwd" });
  private readonly transcript = h("div", { class: "transcript", "data-testid": "transcript" });
  private readonly title_ = h("h2", {}, "No thread selected");
  private readonly state = h("span", { class: "turn-state", "data-testid": "turn-state" });
  private readonly prompt = h("textarea", { rows: 3, placeholder: "Ask Codex… (Ctrl+Enter sends)", "data-testid": "prompt" });
  private readonly send = h("button", { class: "primary", "data-testid": "send" }, "Send");
  private threadId: string | undefined;
  private scrollPending = false;
  /** Streamed text not painted yet, by item id (flushed at the next animation frame). */
  private readonly pendingText = new Map<string, string>();
  private flushPending = false;
  /** The element of each item on screen, by item id (deltas append to it). */
  private readonly items = new Map<string, HTMLElement>();

  constructor(private readonly ui: Console) {
    const newThread = h("form", { class: "new-thread", onsubmit: (ev: Event) => {
      ev.preventDefault();
      void this.create();
    } }, this.cwd, h("button", { type: "submit", "data-testid": "new-thread" }, "New thread"));
    this.root.append(
      h("aside", {}, newThread, this.list),
      h("div", { class: "thread" }, h("div", { class: "thread-head" }, this.title_, this.state),
        this.transcript,
        h("form", { class: "composer", onsubmit: (ev: Event) => {
          ev.preventDefault();
          void this.submit();
        } }, this.prompt, this.send)));
    this.prompt.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) void this.submit();
    });
    const c = ui.client;
    c.on("thread/started", () => void this.loadList());
    c.on("turn/started", (p) => this.mine(p.threadId) && this.setState("working…"));
    c.on("turn/completed", (p) => {
      if (!this.mine(p.threadId)) return;
      this.setState(p.turn.status === "completed" ? "" : String(p.turn.status));
      void this.loadList();
    });
    c.on("item/started", (p) => this.mine(p.threadId) && this.showItem(p.item, true));
    c.on("item/completed", (p) => this.mine(p.threadId) && this.showItem(p.item, false));
    c.on("item/agentMessage/delta", (p) => {
      if (!this.mine(p.threadId)) return;
      // Deltas are painted once per frame, however many arrive in it.
      this.pendingText.set(p.itemId, (this.pendingText.get(p.itemId) ?? "") + p.delta);
      if (!this.flushPending) {
        this.flushPending = true;
        requestAnimationFrame(() => this.flushDeltas());
      }
    });
  }

  private flushDeltas(): void {
    this.flushPending = false;
    for (const [itemId, text] of this.pendingText) {
      let el = this.items.get(itemId);
      if (!el) {
        el = this.bubble("agent", "");
        this.items.set(itemId, el);
      }
      (el.firstElementChild ?? el).appendChild(document.createTextNode(text));
      el.classList.add("streaming");
    }
    this.pendingText.clear();
    this.scroll();
  }

  private mine(threadId: string): boolean {
    return threadId === this.threadId;
  }

  async refresh(): Promise<void> {
    const [dirs] = await Promise.all([this.ui.workspaces(), this.loadList()]);
    clear(this.cwd, ...dirs.map((d) => h("option", { value: d }, d)));
    if (dirs.length === 0) clear(this.cwd, h("option", { value: "" }, "no workspace: codexctl workspace add DIR"));
  }

  private async loadList(): Promise<void> {
    const { data } = await this.ui.client.call("thread/list", { limit: 50 });
    clear(this.list, ...data.map((t) => h("li", {
      class: t.id === this.threadId ? "active" : "",
      "data-thread": t.id,
      onclick: () => void this.open(t.id),
    }, h("div", { class: "name" }, t.name || t.preview || "(new thread)"),
    h("div", { class: "sub" }, `${t.cwd} · ${ago(t.updatedAt * 1000)}`))));
    if (data.length === 0) this.list.append(h("li", { class: "empty" }, "No threads yet."));
  }

  private async create(): Promise<void> {
    const cwd = this.cwd.value;
    if (!cwd) return this.ui.flash("Grant a workspace first: codexctl workspace add DIR", "error");
    try {
      const { thread } = await this.ui.client.call("thread/start", { cwd });
      this.show(thread.id, thread.name || "New thread", []);
      void this.loadList();
      this.prompt.focus();
    } catch (err) {
      this.ui.flash(errorText(err), "error");
    }
  }

  private async open(threadId: string): Promise<void> {
    try {
      const { thread } = await this.ui.client.call("thread/resume", { threadId });
      this.show(thread.id, thread.name || thread.preview || thread.id, thread.turns);
    } catch {
      try { // not resumable here (another process owns it): read it
        const { thread } = await this.ui.client.call("thread/read", { threadId, includeTurns: true });
        this.show(thread.id, thread.name || thread.preview || thread.id, thread.turns);
      } catch (err) {
        this.ui.flash(errorText(err), "error");
      }
    }
    void this.loadList();
  }

  private show(threadId: string, title: string, turns: Turn[]): void {
    this.threadId = threadId;
    this.items.clear();
    this.pendingText.clear();
    this.title_.textContent = title;
    this.root.dataset.thread = threadId;
    clear(this.transcript);
    for (const t of turns) for (const item of t.items) this.showItem(item, false);
    this.setState("");
  }

  private setState(text: string): boolean {
    this.state.textContent = text;
    return true;
  }

  private async submit(): Promise<void> {
    const text = this.prompt.value.trim();
    if (!text || !this.threadId) return;
    this.send.disabled = true;
    try {
      await this.ui.client.call("turn/start", {
        threadId: this.threadId, input: [{ type: "text", text, text_elements: [] }] });
      this.prompt.value = "";
    } catch (err) {
      this.ui.flash(errorText(err), "error");
    } finally {
      this.send.disabled = false;
    }
  }

  private bubble(kind: string, text: string, ...extra: Array<Node | null>): HTMLElement {
    const el = h("div", { class: `item ${kind}` }, h("div", { class: "text" }, text), ...extra);
    this.transcript.append(el);
    this.scroll();
    return el;
  }

  private showItem(item: Item, started: boolean): boolean {
    const existing = this.items.get(item.id);
    let el: HTMLElement | undefined;
    switch (item.type) {
      case "userMessage":
        el = this.make(existing, "user", item.content.map((c) => ("text" in c ? c.text : `[${c.type}]`)).join(" "));
        break;
      case "agentMessage":
        if (started && existing) return true;
        if (!started) this.pendingText.delete(item.id); // the whole text replaces the deltas
        el = this.make(existing, "agent", item.text);
        if (!started) el.classList.remove("streaming");
        el.dataset.testid = started ? "" : "agent-message";
        break;
      case "commandExecution": {
        const out = item.aggregatedOutput ? h("pre", { class: "output" }, item.aggregatedOutput) : null;
        el = this.make(existing, "command", `$ ${item.command}`, out,
          h("div", { class: "sub" }, item.exitCode === null ? String(item.status) : `exit ${item.exitCode}`));
        break;
      }
      case "fileChange":
        el = this.make(existing, "files", `changed ${item.changes.map((c) => c.path).join(", ")}`);
        break;
      default:
        return true; // reasoning and the rest: not shown
    }
    this.items.set(item.id, el);
    return true;
  }

  private make(existing: HTMLElement | undefined, kind: string, text: string, ...extra: Array<Node | null>): HTMLElement {
    if (!existing) return this.bubble(kind, text, ...extra);
    clear(existing, h("div", { class: "text" }, text));
    append(existing, ...extra);
    return existing;
  }

  /** Scroll to the end once per frame: a layout per delta would cap the stream's rate. */
  private scroll(): void {
    if (this.scrollPending) return;
    this.scrollPending = true;
    requestAnimationFrame(() => {
      this.scrollPending = false;
      this.transcript.scrollTop = this.transcript.scrollHeight;
    });
  }
}
