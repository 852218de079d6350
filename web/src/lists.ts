// The inbox, runs (live logs, cancel) and automations (next fire times).
import type { Run } from "../../clients/typescript/src/index.js";
import { ago, clear, errorText, h } from "./dom.js";
import type { Console, Pane } from "./main.js";

export class InboxPane implements Pane {
  readonly id = "inbox";
  readonly title = "Inbox";
  readonly root = h("section", { class: "pane", "data-testid": "inbox" });
  private readonly list = h("ul", { class: "cards" });

  constructor(private readonly ui: Console) {
    this.root.append(h("h2", {}, "Inbox"), this.list);
    ui.client.on("inbox/itemAdded", () => void this.refresh());
  }

  async refresh(): Promise<void> {
    const { items } = await this.ui.client.call("inbox/list", { limit: 100 });
    this.ui.badge(this.id, items.filter((i) => !i.readAt).length);
    clear(this.list, ...items.map((i) => h("li", { class: `card ${i.readAt ? "read" : "unread"}` },
      h("div", { class: "meta" }, h("span", { class: "method" }, i.kind), h("span", {}, ago(i.createdAt))),
      h("div", { class: "name" }, i.title),
      h("pre", { class: "body" }, i.body),
      i.readAt ? null : h("div", { class: "actions" }, h("button", { onclick: async () => {
        await this.ui.client.call("inbox/markRead", { itemIds: [i.itemId] }).catch((e: unknown) => this.ui.flash(errorText(e), "error"));
        void this.refresh();
      } }, "Mark read")))));
    if (items.length === 0) this.list.append(h("li", { class: "empty" }, "The inbox is empty."));
  }
}

export class RunsPane implements Pane {
  readonly id = "runs";
  readonly title = "Runs";
  readonly root = h("section", { class: "pane split", "data-testid": "runs" });
  private readonly list = h("ul", { class: "list" });
  private readonly log = h("pre", { class: "log", "data-testid": "run-log" });
  private readonly head = h("h2", {}, "No run selected");
  private readonly cancel = h("button", { class: "decline", hidden: true }, "Cancel run");
  private selected: string | undefined;

  constructor(private readonly ui: Console) {
    this.root.append(h("aside", {}, this.list), h("div", { class: "run" }, h("div", { class: "thread-head" }, this.head, this.cancel), this.log));
    this.cancel.addEventListener("click", async () => {
      if (!this.selected) return;
      await this.ui.client.call("run/cancel", { runId: this.selected }).catch((e: unknown) => this.ui.flash(errorText(e), "error"));
    });
    ui.client.on("run/event", (p) => {
      if (p.runId === this.selected) this.line(p.type, p.data);
      if (["run.started", "run.completed", "run.failed", "run.canceled", "run.queued"].includes(p.type)) void this.loadList();
    });
  }

  async refresh(): Promise<void> {
    await this.loadList();
  }

  private async loadList(): Promise<void> {
    const { runs } = await this.ui.client.call("run/list", { limit: 100 });
    clear(this.list, ...runs.map((r: Run) => h("li", {
      class: r.runId === this.selected ? "active" : "",
      onclick: () => void this.open(r),
    }, h("div", { class: "name" }, `${r.request.provider} · ${r.status}`),
    h("div", { class: "sub" }, `${r.runId} · ${ago(r.createdAt)}`))));
    if (runs.length === 0) this.list.append(h("li", { class: "empty" }, "No runs."));
  }

  private async open(r: Run): Promise<void> {
    this.selected = r.runId;
    this.head.textContent = `${r.runId} (${r.status})`;
    this.cancel.hidden = !(r.status === "queued" || r.status === "running") || this.ui.role !== "operator";
    clear(this.log);
    const { events } = await this.ui.client.call("run/events", { runId: r.runId, afterSeq: 0, limit: 1000 });
    for (const e of events) this.line(e.type, e.data);
    void this.loadList();
  }

  private line(type: string, data: unknown): void {
    const d = data as { text?: string; line?: string } | null;
    this.log.append(`${type}${d?.text ?? d?.line ? `: ${d?.text ?? d?.line}` : ""}\n`);
    this.log.scrollTop = this.log.scrollHeight;
  }
}

export class AutomationsPane implements Pane {
  readonly id = "automations";
  readonly title = "Automations";
  readonly root = h("section", { class: "pane", "data-testid": "automations" });
  private readonly table = h("table", {});

  constructor(private readonly ui: Console) {
    this.root.append(h("h2", {}, "Automations"), this.table);
    ui.client.on("automation/changed", () => void this.refresh());
  }

  async refresh(): Promise<void> {
    const { automations } = await this.ui.client.call("automation/list");
    clear(this.table, h("tr", {}, h("th", {}, "name"), h("th", {}, "schedule"), h("th", {}, "status"), h("th", {}, "next")),
      ...automations.map((a) => h("tr", {},
        h("td", {}, a.automation.name), h("td", {}, h("code", {}, a.automation.rrule)),
        h("td", {}, a.automation.status ?? "ACTIVE"),
        h("td", {}, a.nextRunAt ? `${new Date(a.nextRunAt).toLocaleString()} (${ago(a.nextRunAt)})` : "-"))));
  }
}
