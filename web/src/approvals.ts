// Pending approvals (server requests) from every thread: the command, cwd and reason, answered
// with one click; one answered anywhere else disappears here at once.
import type { Approval } from "../../clients/typescript/src/index.js";
import { ago, clear, errorText, h } from "./dom.js";
import type { Console, Pane } from "./main.js";

interface RequestParams {
  command?: string | string[];
  cwd?: string;
  reason?: string | null;
  justification?: string;
  changes?: unknown;
}

export class ApprovalsPane implements Pane {
  readonly id = "approvals";
  readonly title = "Approvals";
  readonly root = h("section", { class: "pane", "data-testid": "approvals" });
  private readonly list = h("ul", { class: "cards" });
  private pending = new Map<number, Approval>();

  constructor(private readonly ui: Console) {
    this.root.append(h("h2", {}, "Pending approvals"), this.list);
    ui.client.on("serverRequest/resolved", (p) => {
      this.pending.delete(p.approvalId);
      this.render();
    });
  }

  async refresh(): Promise<void> {
    const { approvals } = await this.ui.client.call("approval/list", { status: "pending" });
    this.pending = new Map(approvals.map((a) => [a.approvalId, a]));
    this.render();
  }

  private render(): void {
    this.ui.badge(this.id, this.pending.size);
    if (this.pending.size === 0) {
      clear(this.list, h("li", { class: "empty" }, "Nothing is waiting for an answer."));
      return;
    }
    clear(this.list, ...[...this.pending.values()].map((a) => this.card(a)));
  }

  private card(a: Approval): HTMLElement {
    const p = (a.params ?? {}) as RequestParams;
    const command = Array.isArray(p.command) ? p.command.join(" ") : p.command;
    const answer = (decision: string) => async (ev: Event) => {
      (ev.target as HTMLButtonElement).disabled = true;
      try {
        await this.ui.client.call("approval/respond", { approvalId: a.approvalId, result: { decision } });
        this.pending.delete(a.approvalId);
        this.render();
      } catch (err) {
        this.ui.flash(errorText(err), "error");
        void this.refresh();
      }
    };
    const canAnswer = this.ui.role !== "observer";
    return h("li", { class: "card approval", "data-approval": a.approvalId },
      h("div", { class: "meta" }, h("span", { class: "method" }, a.method.replace(/^item\//, "")),
        h("span", {}, ago(Date.parse(a.createdAt)))),
      command ? h("pre", { class: "command", "data-testid": "approval-command" }, command) : null,
      p.cwd ? h("div", { class: "cwd" }, "in ", h("code", {}, p.cwd)) : null,
      p.reason || p.justification ? h("div", { class: "reason" }, p.reason ?? p.justification ?? "") : null,
      canAnswer ? h("div", { class: "actions" },
        h("button", { class: "accept", onclick: answer("accept") }, "Approve"),
        h("button", { onclick: answer("acceptForSession") }, "Approve for session"),
        h("button", { class: "decline", onclick: answer("decline") }, "Decline")) : null);
  }
}
